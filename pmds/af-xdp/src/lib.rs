//! # rdk-pmd-af-xdp: DPDK's `net_af_xdp`
//!
//! A port on any Linux interface through AF_XDP sockets, whose UMEM is the receive queue's
//! rdk mbuf pool itself: the kernel writes received frames straight into mbuf data rooms and
//! sends mbufs of that pool by address — no copy by rdk on either path.
//!
//! ```text
//! net_af_xdp0,iface=veth0,start_queue=0,queue_count=2,xdp_mode=native
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `iface` | required | the interface |
//! | `start_queue` | 0 | the first of the interface's queues to take |
//! | `queue_count` | 1 | queue pairs (one AF_XDP socket each, on queues `start_queue..`) |
//! | `xdp_mode` | auto | `native` (driver hook), `generic` (skb hook), `auto` (the kernel's choice) |
//! | `force_copy` | 0 | 1: bind in copy mode without trying zero-copy |
//! | `busy_budget` | 0 | frames per preferred busy poll (`SO_PREFER_BUSY_POLL`); 0: off |
//! | `tx_sw_csum` | 0 | 1: TCP/UDP checksum offload done by rdk even where the kernel or device would do it |
//!
//! How it fits together:
//! - [`umem`] lays a pool's objects out as UMEM chunks in unaligned-chunk mode so
//!   the kernel's frame lands at the mbuf's data offset, and checks every address coming back.
//! - `ring`: the four shared rings, with the kernel's indices checked (wraparound, impossible
//!   values).
//! - [`bpf`]: the XSKMAP and a five-instruction redirect program written by hand (no libbpf),
//!   named [`bpf::PROG_NAME`] so a leftover of a crashed run is recognised and replaced, while
//!   anyone else's program is left alone ([`AfXdpError::ForeignProgram`]).
//! - [`netlink`]: attaching with `RTM_SETLINK`/`IFLA_XDP` (its docs say why not a BPF link).
//! - [`AfXdpRx`] / [`AfXdpTx`]: the bursts, with a shadow of every mbuf in the kernel's hands;
//!   stopping the port closes the sockets and so returns all of them to the pool.
//!
//! One socket per queue, each with its own UMEM over its rx queue's pool, rather than one
//! `XDP_SHARED_UMEM`: queues may have different pools, sockets on different queue ids need
//! their own fill and completion rings even when sharing, and registering one pool twice
//! only pins it twice. The bind tries zero-copy and falls back to copy mode (veth, most
//! virtual devices), saying why (per queue: [`AfXdpDriver::queue_bind_mode`], the
//! `zero_copy_qN` xstats; for the port: [`AfXdpDriver::bind_mode`] and the `zero_copy` xstat,
//! zero-copy only if every queue is; a log line): a driver that does not advertise zero-copy
//! in its XDP features ([`netlink::xdp_features`]) is named as such, any other refusal is
//! quoted. The fill ring is twice the RX ring; at most half the pool is posted.
//!
//! Tested (besides veth, copy mode, in tests/tests/af_xdp.rs): `tests/zc_guest.rs` in the VM
//! lab guest, on QEMU's virtio-net driven by Linux 6.12's `virtio_net` with the program in
//! native mode. That driver offers no zero-copy, which is reported; `tests/run.sh` also
//! rebuilds it with its zero-copy receive path switched on, and there frames arrive by DMA
//! into the pool's mbufs byte-exact at the usual data offset, and TX mbufs the kernel never
//! completed come back only after it released the pool. Zero-copy TX (and RX) runs in a
//! second guest with Debian's 6.18 kernel, on QEMU's igb and virtio-net with their stock
//! drivers (6.12's igb has no AF_XDP zero-copy, its `virtio_net` no zero-copy TX): frames of
//! 60 to 1514 bytes and chains each way byte-exact with exact counts, 1536 frames each way
//! wrapping every ring, the kernel's own view (`xsk_diag`, [`netlink::xsk_sockets`]) saying
//! zero-copy, a restart, every mbuf back.
//!
//! Transmit checksum offloads (`IPV4_CKSUM`, `UDP_CKSUM`, `TCP_CKSUM`; DPDK's `net_af_xdp`
//! has none): every request is checked against its frame (`rdk_core::net::offload`) and one
//! that does not fit is dropped and counted (`tx_bad_offload_request`). The IPv4 header
//! checksum is filled by rdk. TCP/UDP checksums go to the kernel as AF_XDP TX metadata
//! (`XDP_TXMD_FLAGS_CHECKSUM` in 24 bytes reserved in front of each frame, Linux 6.8+): in
//! copy mode the kernel completes them (or leaves them partial for a local receiver, as for
//! any socket) — but not before 6.18 on virtio_net, whose copy-mode frames the kernel builds
//! from UMEM pages and where 6.12 ignores the request; in zero-copy mode the device does if
//! its driver says it can (the `netdev` family's xsk features); otherwise rdk completes them
//! in software
//! (`tx_checksums_in_software`; [`AfXdpDriver::tx_checksum_by_kernel`] says which). Writing
//! the metadata or a checksum needs the mbuf to itself: a shared one is copied first.
//!
//! Known limits: no multi-buffer frames (the MTU must fit one chunk, at most 3822 bytes, and
//! the pool's data room); no checksum or other metadata from the kernel in copy mode (a
//! local sender with checksum offload delivers only the pseudo-header sum, as with any
//! AF_XDP socket). In zero-copy mode the kernel takes a fill address whose chunk crosses a
//! 4 KiB page only if the two pages are DMA-contiguous (it drops the others and counts them,
//! `rx_kernel_invalid_descs`; those mbufs come back at stop), so give a zero-copy port a
//! hugepage-backed pool. Mbufs the kernel held are freed at stop only after it has released the socket's
//! buffer pool (a probe bind on the queue stops failing with `EBUSY`), so not even a
//! zero-copy device can write a freed buffer.
//!
//! Every frame is counted: received, sent, or dropped by reason (xstats `rx_bad_descs`,
//! `rx_fill_no_mbuf`, `tx_frames_too_big`, `tx_ring_full`, `tx_no_buffer`, the kernel's own
//! `rx_kernel_*` from `XDP_STATISTICS`, …). Each receive queue's socket is its interrupt handle.
#![deny(missing_docs)]

pub mod bpf;
mod driver;
mod error;
pub mod netlink;
mod ring;
mod rx;
mod sys;
mod tx;
pub mod umem;
mod xsk;

pub use driver::{AfXdpDriver, BindMode, XdpMode, DEVARGS_KEYS, MAX_QUEUES};
pub use error::AfXdpError;
pub use rx::AfXdpRx;
pub use sys::XdpStatistics;
pub use tx::AfXdpTx;
