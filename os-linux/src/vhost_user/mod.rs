//! A vhost-user frontend: this process owns the memory and the virtqueues, and a backend in
//! another process (DPDK's vhost library behind `net_vhost`, a vhost-user-net daemon) moves
//! packets in and out of them.
//!
//! The protocol, in the order a session uses it (the vhost-user specification, "Front-end
//! message types"):
//!
//! 1. `GET_FEATURES`, then (if bit 30, `VHOST_USER_F_PROTOCOL_FEATURES`, is offered)
//!    `GET_PROTOCOL_FEATURES` / `SET_PROTOCOL_FEATURES`; `SET_OWNER`; `SET_FEATURES`.
//! 2. `SET_MEM_TABLE`: up to eight fd-backed regions ([`MemRegion::of`] a hugepage
//!    [`LinuxRegion`](crate::LinuxRegion)). The backend maps them and translates ring
//!    addresses through each region's user address (this process's VA) and descriptor
//!    addresses through its guest-physical address (the region's IOVA).
//! 3. Per ring: `SET_VRING_NUM`, `SET_VRING_BASE`, `SET_VRING_ADDR`, `SET_VRING_KICK`,
//!    `SET_VRING_CALL`, and with protocol features `SET_VRING_ENABLE` (rings start disabled).
//! 4. With the `STATUS` protocol feature, `SET_STATUS` with `DRIVER_OK`: a backend that
//!    negotiated it (DPDK does) starts the device only then.
//! 5. `GET_VRING_BASE` stops a ring and says where it stopped.
//!
//! Layers: [`msg`] is the wire format (both directions), [`conn`] moves whole messages over
//! the socket with deadlines, [`VhostUserFrontend`] is the request API with checked replies
//! and the remembered session that [`VhostUserFrontend::reconnect`] replays.
//!
//! On top: [`VhostUserTransport`], a virtio `Transport` over a frontend (virtio-user: the
//! virtio-net PMD of `rdk-pmd-virtio` against a vhost-user backend), and [`SharedMemory`],
//! the allocator its rings and the application's mbuf pools come from so that all of them
//! are in the memory table:
//!
//! ```text
//! let mem = SharedMemory::new();
//! let t = VhostUserTransport::connect(VirtioUserConfig::new("/tmp/vhost.sock"), mem.clone())?;
//! let dev = VirtioNet::new(t, mem.clone(), VirtioNetConfig::default())?;
//! let pool = PktMbufPool::create(&mem, &PktMbufPoolConfig::new("pool", 8192))?;
//! ```
//!
//! The backend reaches only that memory. A receive queue given a pool from elsewhere is
//! refused at setup; a transmitted mbuf from elsewhere cannot be caught without a cost per
//! packet, and it stalls the transmit ring for good (the backend stops at a descriptor it
//! cannot map): send only mbufs from pools of the same [`SharedMemory`].

pub mod conn;
mod error;
#[cfg(test)]
mod fake;
pub mod features;
mod frontend;
mod memory;
pub mod msg;
mod shared;
mod state;
mod transport;

pub use error::{MemTableProblem, VhostUserError};
pub use features::{FeatureSet, FRONTEND_PROTOCOL_FEATURES};
pub use frontend::{VhostUserFrontend, DEFAULT_TIMEOUT, MAX_VRING_INDEX, MAX_VRING_SIZE};
pub use memory::MemRegion;
pub use shared::{SharedMemory, SharedRegion};
pub use state::VringAddrs;
pub use transport::{
    VhostUserNotify, VhostUserTransport, VirtioUserConfig, DEFAULT_QUEUE_SIZE, VIRTIO_USER_KEYS,
};
