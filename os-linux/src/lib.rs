//! # rdk-os-linux: the OS traits on Linux
//!
//! [`LinuxOs`] implements the traits of [`rdk_core::os`] for a Linux process, without global
//! state: each instance has its own configuration, memzone names and file counters.
//!
//! The layers, bottom up:
//! - [`roots`]: where sysfs and procfs are ([`SysRoots`]), overridable so tests run against
//!   a fake tree.
//! - [`hugepage`]: hugepage discovery (sizes, free counts per size and per NUMA node,
//!   hugetlbfs mounts), and [`PoolGrowth`] for tests and tools that size the pool themselves.
//! - [`pagemap`]: virtual-to-physical translation through `/proc/self/pagemap`.
//! - [`dma`]: regions of hugepage memory (memfd or hugetlbfs) or plain memory, with IOVA = PA
//!   or IOVA = VA ([`LinuxRegion`], [`MemoryConfig`]).
//! - [`memzone`]: named reservations, per instance.
//! - [`eventfd`] and [`clock`]: event handles and `CLOCK_MONOTONIC`.
//! - [`netif`]: kernel network interfaces (index, flags, MAC, MTU) for the host PMDs.
//! - [`intr`]: the interrupt thread (epoll sources, alarms) and RX-queue interrupts.
//! - [`pci`] and [`vfio`]: sysfs PCI discovery and binding, and VFIO devices implementing
//!   rdk-core's PCI trait.
//!
//! `unsafe` lives in three places: `mapping` (mmap, munmap, mlock) and the `unsafe impl
//! DmaRegion` of [`LinuxRegion`] and [`Memzone`], each with its reasoning next to it.
#![deny(missing_docs, unsafe_code)]

pub mod clock;
pub mod dma;
pub mod eventfd;
pub mod hugepage;
pub mod intr;
mod mapping;
pub mod memzone;
pub mod netif;
mod os;
pub mod pagemap;
pub mod pci;
pub mod roots;
pub mod sock;
pub mod vfio;
pub mod vhost_user;

pub use clock::LinuxClock;
pub use dma::{Backend, IovaMode, LinuxRegion, MemoryConfig, RegionKind};
pub use eventfd::EventFd;
pub use hugepage::{HugePageSize, HugepageInfo, PoolGrowth};
pub use memzone::{Memzone, MemzoneError, MemzoneFlags};
pub use os::{ConfigError, LinuxOs};
pub use pagemap::Pagemap;
pub use roots::SysRoots;
