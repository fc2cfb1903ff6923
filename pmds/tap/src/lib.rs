//! # rdk-pmd-tap: DPDK's `net_tap`
//!
//! A port on a TAP interface of the Linux kernel: what rdk sends appears on the interface as
//! received frames, what the kernel sends out of the interface rdk receives.
//!
//! ```text
//! net_tap0,iface=dtap0,mac=02:00:00:00:00:01
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `iface` | `dtapN` | the interface; created if it does not exist (and removed when the port closes), attached if it does (it must be a multi-queue TAP) |
//! | `mac` | the kernel's | MAC address set on the interface at configure |
//!
//! Each queue pair is one file descriptor of the interface (`IFF_TAP | IFF_NO_PI |
//! IFF_MULTI_QUEUE`); the kernel spreads the frames it sends over them by flow. A TAP has no
//! shared ring, so every frame is one `readv`/`writev` — the same cost DPDK's `net_tap` pays;
//! what rdk saves is around it (one counter update per burst, per-queue mbuf caches, no
//! per-packet branches on offloads it does not have).
//!
//! Frames longer than one mbuf (an MTU above the data room) are received into chains of up to
//! 32 segments; chains are sent with one `writev`. Every frame is accounted for: received,
//! sent, or dropped and counted (`rx_frames_too_big`, `tx_frames_too_big`,
//! `tx_too_many_segments`, buffer shortage as `rx_nombuf`, kernel errors as `ierrors` /
//! `oerrors`); a burst that meets a full kernel queue stops and leaves the rest with the
//! caller (`tx_kernel_queue_full`).
//!
//! The link is up while the interface is up and running; start brings it up and stop down, as
//! DPDK does. An interface deleted under the port is seen by the next burst (the kernel
//! answers `EBADFD`): the link reads down, `interface_gone` is 1, and stop and close still
//! work. Each receive queue's fd is its interrupt handle
//! ([`RxQueue::intr_handle`](rdk_core::ethdev::RxQueue::intr_handle)).
#![deny(missing_docs)]

mod driver;
mod queue;
mod tun;

pub use driver::{TapDriver, DEVARGS_KEYS, MAX_QUEUES};
pub use queue::{TapRx, TapTx};
pub use tun::TunError;
