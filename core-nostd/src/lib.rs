//! # rdk-core: the `no_std` heart of the Rust Data-plane Kit
//!
//! Everything a poll-mode driver needs that does not depend on an operating system lives here,
//! so the same rings, pools and drivers run in a unikernel, on Linux and against the in-memory
//! OS of `rdk-os-mock`.
//!
//! The layers, bottom up:
//! - [`addr`]: the three address kinds ([`addr::VirtAddr`], [`addr::Iova`], [`addr::PhysAddr`]),
//!   never silently converted into each other.
//! - [`os`]: the traits a driver is written against (DMA memory, PCI access, event notification,
//!   clock).
//!   They take `&self`: there is no global state anywhere in rdk.
//! - [`ring`]: the lock-free ring with `rte_ring` semantics; the producer/consumer sync mode is a
//!   type parameter.
//! - [`mempool`]: fixed-size objects carved from one DMA region, backed by a ring, with explicit
//!   per-core caches.
//! - `intr` (feature `alloc`): interrupt-source and alarm bookkeeping for the OS layers.
//! - `udp` (feature `alloc`): UDP sockets over any port, with ARP, IPv4 and ICMP echo.
//! - [`mbuf`]: the packet buffer, in DPDK's 128-byte `rte_mbuf` layout.
//! - [`net`]: zero-copy views of Ethernet, ARP, IPv4, ICMPv4 and UDP headers, and the
//!   Internet checksum.
//! - [`pci`]: PCI addresses, config-space layout, the loop-proof capability walk, BAR decoding
//!   and id tables.
//! - [`virtio`]: virtio's shared formats and feature bits, and (feature `alloc`) the split and
//!   packed virtqueues, which check everything a device writes.
//!
//! Hot paths (ring, mempool get/put, bursts) are generic and inlined: no `dyn`, no locks, no
//! allocation. Anything a device or a peer writes is treated as untrusted input.
#![no_std]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod addr;
#[cfg(feature = "alloc")]
pub mod ethdev;
#[cfg(feature = "alloc")]
pub mod intr;
pub mod mbuf;
pub mod mempool;
pub mod net;
pub mod os;
pub mod pci;
#[cfg(feature = "alloc")]
pub mod pktring;
pub mod ring;
pub(crate) mod sync;
#[cfg(feature = "alloc")]
pub mod udp;
pub mod virtio;
