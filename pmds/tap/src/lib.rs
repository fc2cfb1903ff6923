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
//! 32 segments; chains of up to 64 segments are sent with one `writev`. Every frame is accounted for: received,
//! sent, or dropped and counted (`rx_frames_too_big`, `tx_frames_too_big`,
//! `tx_too_many_segments`, buffer shortage as `rx_nombuf`, kernel errors as `ierrors` /
//! `oerrors`); a burst that meets a full kernel queue stops and leaves the rest with the
//! caller (`tx_kernel_queue_full`). These reasons live as long as the counters they break
//! down: a queue set up again carries on with both, `stats_reset` and `configure` zero both.
//!
//! The link is up while the interface is up and running; start brings it up and stop down, as
//! DPDK does. An interface deleted under the port is seen by the next burst (the kernel
//! answers `EBADFD`): the link reads down, `interface_gone` is 1, and stop and close still
//! work. Each receive queue's fd is its interrupt handle
//! ([`RxQueue::intr_handle`](rdk_core::ethdev::RxQueue::intr_handle)).
//!
//! Transmit checksum offloads, as DPDK's `net_tap` has them: `IPV4_CKSUM` is done by rdk (the
//! first segment's headers go out as a rewritten copy, so a shared mbuf is not touched);
//! `UDP_CKSUM` and `TCP_CKSUM` are left to the kernel, which a port asking for either at its
//! first configure tells by opening the queues with `IFF_VNET_HDR`: each frame then goes
//! behind a virtio-net header with `NEEDS_CSUM` where the mbuf asks for it (the field holding
//! the pseudo-header sum, as with any NIC), and the kernel completes the checksum when the
//! frame leaves the host or trusts it when delivered locally — DPDK's tap computes it in
//! software. Received frames then carry a header too; `DATA_VALID` in it becomes
//! `RX_L4_CKSUM_GOOD`, and `NEEDS_CSUM` (a frame of this host whose checksum the kernel left
//! to the device, seen only if some opener of the interface set `TUNSETOFFLOAD`)
//! `RX_L4_CKSUM_NONE`: the field is partial, the data intact, as rdk's virtio PMD says. Receive checksum offloads (`IPV4_CKSUM`, `UDP_CKSUM`, `TCP_CKSUM`) are
//! checked in software, as DPDK's tap does: `RX_IP_CKSUM_*` and `RX_L4_CKSUM_*` say GOOD or
//! BAD for IPv4 (one VLAN tag looked through) and its TCP/UDP; what cannot be checked (other
//! protocols, fragments, no UDP checksum sent) stays UNKNOWN; a chained frame (an MTU above
//! the data room) is summed across its segments. The header mode belongs to the interface (every queue of it, whoever
//! opened it), so it is fixed when the queues open and a later configure cannot change it;
//! the non-offload path stays a plain `write`/`read`.
//!
//! TCP segmentation offload (`TCP_TSO`, DPDK's tap does it in software with its GSO library)
//! hands the kernel the whole request behind the same header (`GSO_TCPV4`/`GSO_TCPV6`,
//! `gso_size` = `tso_segsz`): up to 64 KiB in chains of up to 64 segments; the kernel cuts
//! it into segments only where a frame has to (a device without TSO on the way out), and
//! passes it whole where it can. rdk rewrites a copy of the headers: IP length and header
//! checksum, and the TCP seed, which DPDK's convention leaves without the length Linux's
//! segmentation expects. Every request is checked against its frame first
//! (`rdk_core::net::offload::TxRequest`): one that does not fit (lengths past the frame or
//! its first segment, not TCP, `l4_len` not the TCP header's, a `tso_segsz` whose segments
//! would exceed the MTU) is dropped and counted (`tx_bad_offload_request`), a received header
//! announcing GSO too (`rx_bad_net_header`).
#![deny(missing_docs)]

mod driver;
mod queue;
mod tun;

pub use driver::{TapDriver, DEVARGS_KEYS, MAX_QUEUES};
pub use queue::{TapRx, TapTx};
pub use tun::TunError;
