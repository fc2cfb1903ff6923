//! # rdk-pmd-af-packet: DPDK's `net_af_packet`
//!
//! A port on any Linux interface (a veth, a physical NIC the kernel drives) through
//! memory-mapped `AF_PACKET` rings: no system call per frame.
//!
//! ```text
//! net_af_packet0,iface=veth0,qpairs=2,qdisc_bypass=1
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `iface` | required | the interface |
//! | `qpairs` | 1 | queue pairs; several receive queues form a `PACKET_FANOUT_HASH` group |
//! | `blocksz` | 4096 | ring block size (TX; RX blocks are at least 64 KiB and hold an MTU frame) |
//! | `framesz` | 2048 | TX slot size (grown to hold an MTU frame) |
//! | `framecnt` | 512 | frames per ring (sets the ring memory: framesz × framecnt) |
//! | `qdisc_bypass` | 1 | 1: `PACKET_QDISC_BYPASS` on the TX sockets (frames go straight to the driver, as DPDK's default); 0: through the interface's qdisc (traffic control applies) |
//! | `blocktimeout` | 1 | ms before the kernel hands over a partly filled RX block |
//! | `rxversion` | 3 | 2: a `TPACKET_V2` RX ring, one slot per frame handed over at once (lowest latency: no block timer); 3: `TPACKET_V3` blocks (fewer wake-ups under load) |
//!
//! Receive uses `TPACKET_V3` (block-based: the kernel fills a block with many frames and hands
//! it over at once; everything it wrote is checked, see [`rx`](crate::AfPacketRx)). A block the
//! kernel is still filling is looked at again only after a wait that doubles while it stays
//! open (1 to 64 µs): the kernel updates that block's descriptor for every frame, and a
//! busy-polling reader pulling the line away on each poll cost the core running the kernel's
//! receive path a miss per frame (64 B on veth, rx fed by dpdk-testpmd: 1.24 -> 1.45 Mpps). Transmit
//! uses `TPACKET_V2` slots and one `sendto` kick per burst, with `PACKET_LOSS` so a malformed
//! frame is skipped, not stalled on, and `PACKET_VNET_HDR`: each frame goes behind a
//! virtio-net header whose `hdr_len` asks the kernel to copy the frame (up to 2 KiB) into the
//! socket buffer rather than attach the ring's pages, which a veth or any forwarding path
//! must copy into a fresh page per frame before the slot is released (64 B on veth:
//! 1.67 -> 2.04 Mpps). The same header carries TCP/UDP checksum offload (`NEEDS_CSUM` where
//! the mbuf asks for it, the field holding the pseudo-header sum; the kernel finishes the sum
//! when the frame leaves the host), and `IPV4_CKSUM` is filled into the frame's copy in the
//! ring — DPDK's `net_af_packet` offers neither. TCP segmentation offload (`TCP_TSO`, not in
//! DPDK's either): a request larger than a slot goes on a second, ring-less socket of the
//! queue behind a GSO net header (up to 64 KiB, chains of up to 64 segments, one `writev`,
//! after the ring's frames queued before it), and the kernel cuts it where it has to. Every
//! request is checked against its frame first (`rdk_core::net::offload::TxRequest`); one that
//! does not fit is dropped and counted (`tx_bad_offload_request`). Promiscuous mode is a
//! `PACKET_MR_PROMISC` membership per
//! receive socket. Every frame is counted: received, sent, or dropped by reason (xstats
//! `rx_kernel_ring_drops` from `PACKET_STATISTICS`, `rx_truncated`, `rx_ring_anomalies`,
//! `tx_frames_too_big` (longer than the MTU, plus Ethernet header and VLAN tag, allows),
//! `tx_frames_too_small`, `tx_ring_full`). Each
//! receive socket is its queue's interrupt handle.
#![deny(missing_docs)]

mod driver;
mod rx;
mod sys;
mod tx;

pub use driver::{AfPacketDriver, RingGeometry, DEVARGS_KEYS, MAX_QUEUES};
pub use rx::AfPacketRx;
pub use tx::AfPacketTx;
