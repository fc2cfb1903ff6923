//! The 128-byte mbuf header, field for field DPDK 22.11's `struct rte_mbuf`
//! (`lib/mbuf/rte_mbuf_core.h`, 64-bit layout with the IOVA field present).
//!
//! The first cache line holds what RX and TX touch per packet (addresses, lengths, flags,
//! packet type, hash, pool); the second what only the slow path and TX offloads need. Every
//! offset is checked at compile time below, so a vector driver or a shared-memory peer written
//! against DPDK's layout reads the same bytes.
//!
//! The fields are private: their consistency (`data_off + data_len <= buf_len`, `pkt_len` the
//! sum of the segments, `refcnt`, `next`, `pool`) is what makes the safe API sound. They are
//! read through [`Mbuf`](super::Mbuf) and [`Segment`](super::Segment) and written through the
//! checked operations there.

use crate::addr::Iova;
use crate::mempool::PoolCore;
use core::ffi::c_void;
use core::mem::{align_of, offset_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::AtomicU16;

/// Bytes of the header, before the private area and the buffer (`sizeof(struct rte_mbuf)`).
pub const HEADER_SIZE: usize = 128;

/// The port number of an mbuf not (yet) tied to a port (`RTE_MBUF_PORT_INVALID`).
pub const PORT_INVALID: u16 = u16::MAX;

/// The most segments one chain may have (`RTE_MBUF_MAX_NB_SEGS`: `nb_segs` is 16 bits).
pub const MAX_SEGS: u16 = u16::MAX;

/// One mbuf header: the layout of DPDK's `struct rte_mbuf`.
///
/// There is no way to hold one by value or by reference outside this module's checked API; the
/// type exists so the layout can be named (`size_of::<MbufHeader>() == 128`) and so raw mbuf
/// pointers ([`Mbuf::into_raw`](super::Mbuf::into_raw)) have a type.
#[repr(C, align(64))]
pub struct MbufHeader {
    /// Virtual address of the segment's buffer (the start of the headroom).
    pub(super) buf_addr: *mut u8,
    /// IOVA of the same byte: what a device is given. Computed once at pool creation.
    pub(super) buf_iova: Iova,
    /// Offset of the data from `buf_addr` (the headroom in use).
    pub(super) data_off: u16,
    /// References to this segment: 1 when one handle owns it (and while it is free).
    pub(super) refcnt: AtomicU16,
    /// Segments in the chain (valid in the first segment only).
    pub(super) nb_segs: u16,
    /// Input port, or [`PORT_INVALID`].
    pub(super) port: u16,
    /// Offload flags ([`OlFlags`](super::OlFlags) bits).
    pub(super) ol_flags: u64,
    /// Packet type ([`PacketType`](super::PacketType) bits).
    pub(super) packet_type: u32,
    /// Bytes in the whole chain (valid in the first segment only).
    pub(super) pkt_len: u32,
    /// Bytes of data in this segment.
    pub(super) data_len: u16,
    /// VLAN TCI in CPU order, valid with `RX_VLAN` / for `TX_VLAN`.
    pub(super) vlan_tci: u16,
    /// RSS hash, flow-director id, scheduler or event data.
    pub(super) hash: MbufHash,
    /// Outer VLAN TCI in CPU order, valid with `RX_QINQ` / for `TX_QINQ`.
    pub(super) vlan_tci_outer: u16,
    /// Bytes in the segment's buffer (headroom + data room).
    pub(super) buf_len: u16,
    /// The pool the mbuf returns to: the mempool's header (`Mempool::core_ptr`).
    pub(super) pool: NonNull<PoolCore>,
    /// The next segment, `None` in the last one.
    pub(super) next: Option<NonNull<MbufHeader>>,
    /// TX offload lengths ([`TxOffload`](super::TxOffload) bits).
    pub(super) tx_offload: u64,
    /// External-buffer information; always null (rdk mbufs own their buffer).
    pub(super) shinfo: *mut c_void,
    /// Bytes of the private area between the header and the buffer.
    pub(super) priv_size: u16,
    /// IEEE 1588 timesync flags.
    pub(super) timesync: u16,
    /// Space DPDK hands out as dynamic fields.
    pub(super) dynfield1: [u32; 9],
}

// The layout contract with DPDK (rte_mbuf_core.h, 64-bit targets).
const _: () = assert!(size_of::<MbufHeader>() == HEADER_SIZE);
const _: () = assert!(align_of::<MbufHeader>() == 64);
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(MbufHeader, buf_addr) == 0);
    assert!(offset_of!(MbufHeader, buf_iova) == 8);
    assert!(offset_of!(MbufHeader, data_off) == 16);
    assert!(offset_of!(MbufHeader, refcnt) == 18);
    assert!(offset_of!(MbufHeader, nb_segs) == 20);
    assert!(offset_of!(MbufHeader, port) == 22);
    assert!(offset_of!(MbufHeader, ol_flags) == 24);
    assert!(offset_of!(MbufHeader, packet_type) == 32);
    assert!(offset_of!(MbufHeader, pkt_len) == 36);
    assert!(offset_of!(MbufHeader, data_len) == 40);
    assert!(offset_of!(MbufHeader, vlan_tci) == 42);
    assert!(offset_of!(MbufHeader, hash) == 44);
    assert!(size_of::<MbufHash>() == 8);
    assert!(offset_of!(MbufHeader, vlan_tci_outer) == 52);
    assert!(offset_of!(MbufHeader, buf_len) == 54);
    assert!(offset_of!(MbufHeader, pool) == 56);
    assert!(offset_of!(MbufHeader, next) == 64);
    assert!(offset_of!(MbufHeader, tx_offload) == 72);
    assert!(offset_of!(MbufHeader, shinfo) == 80);
    assert!(offset_of!(MbufHeader, priv_size) == 88);
    assert!(offset_of!(MbufHeader, timesync) == 90);
    assert!(offset_of!(MbufHeader, dynfield1) == 92);
    assert!(offset_of!(MbufHeader, dynfield1) + size_of::<[u32; 9]>() == HEADER_SIZE);
    assert!(size_of::<AtomicU16>() == 2);
};

impl MbufHeader {
    /// A free mbuf's header as the pool lays it out at creation (`rte_pktmbuf_init` plus the
    /// state `rte_pktmbuf_prefree_seg` leaves: refcnt 1, one segment, no next).
    pub(super) fn new_free(
        buf_addr: *mut u8,
        buf_iova: Iova,
        buf_len: u16,
        headroom: u16,
        pool: NonNull<PoolCore>,
        priv_size: u16,
    ) -> Self {
        Self {
            buf_addr,
            buf_iova,
            data_off: headroom.min(buf_len),
            refcnt: AtomicU16::new(1),
            nb_segs: 1,
            port: PORT_INVALID,
            ol_flags: 0,
            packet_type: 0,
            pkt_len: 0,
            data_len: 0,
            vlan_tci: 0,
            hash: MbufHash::ZERO,
            vlan_tci_outer: 0,
            buf_len,
            pool,
            next: None,
            tx_offload: 0,
            shinfo: core::ptr::null_mut(),
            priv_size,
            timesync: 0,
            dynfield1: [0; 9],
        }
    }

    /// Bytes after the data in this segment's buffer.
    #[inline(always)]
    pub(super) fn tailroom(&self) -> u16 {
        // data_off + data_len <= buf_len is an invariant of every header.
        self.buf_len - self.data_off - self.data_len
    }
}

/// The 8-byte hash union at offset 44: an RSS hash, a flow-director match, scheduler data, the
/// event TX adapter's queue, or a user tag — which one is meant follows from `ol_flags`
/// (`RX_RSS_HASH`, `RX_FDIR*`) or from the application.
///
/// Stored as two native-endian words; the 16- and 8-bit parts are read from their bytes the
/// way the C union overlays them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct MbufHash {
    words: [u32; 2],
}

impl MbufHash {
    /// All zeroes.
    pub const ZERO: Self = Self { words: [0; 2] };

    /// A hash holding an RSS result.
    #[inline(always)]
    pub const fn from_rss(rss: u32) -> Self {
        Self { words: [rss, 0] }
    }

    /// The raw words (`lo`, `hi`).
    #[inline(always)]
    pub const fn words(self) -> [u32; 2] {
        self.words
    }

    /// From raw words (`lo`, `hi`).
    #[inline(always)]
    pub const fn from_words(words: [u32; 2]) -> Self {
        Self { words }
    }

    /// The RSS hash (`hash.rss`), valid with `RX_RSS_HASH`.
    #[inline(always)]
    pub const fn rss(self) -> u32 {
        self.words[0]
    }

    /// The flow-director hash (`hash.fdir.hash`).
    #[inline(always)]
    pub const fn fdir_hash(self) -> u16 {
        let b = self.words[0].to_ne_bytes();
        u16::from_ne_bytes([b[0], b[1]])
    }

    /// The flow-director filter id (`hash.fdir.id`).
    #[inline(always)]
    pub const fn fdir_id(self) -> u16 {
        let b = self.words[0].to_ne_bytes();
        u16::from_ne_bytes([b[2], b[3]])
    }

    /// The flow-director high word (`hash.fdir.hi`): the FD id or flexible bytes, depending on
    /// `RX_FDIR_ID` / `RX_FDIR_FLX`.
    #[inline(always)]
    pub const fn fdir_hi(self) -> u32 {
        self.words[1]
    }

    /// The hierarchical scheduler's queue id (`hash.sched.queue_id`).
    #[inline(always)]
    pub const fn sched_queue_id(self) -> u32 {
        self.words[0]
    }

    /// The scheduler's traffic class (`hash.sched.traffic_class`).
    #[inline(always)]
    pub const fn sched_traffic_class(self) -> u8 {
        self.words[1].to_ne_bytes()[0]
    }

    /// The scheduler's color (`hash.sched.color`).
    #[inline(always)]
    pub const fn sched_color(self) -> u8 {
        self.words[1].to_ne_bytes()[1]
    }

    /// The event TX adapter's queue (`hash.txadapter.txq`).
    #[inline(always)]
    pub const fn txadapter_txq(self) -> u16 {
        let b = self.words[1].to_ne_bytes();
        u16::from_ne_bytes([b[2], b[3]])
    }

    /// The user tag (`hash.usr`).
    #[inline(always)]
    pub const fn usr(self) -> u32 {
        self.words[0]
    }
}

impl core::fmt::Debug for MbufHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MbufHash({:#x}, {:#x})", self.words[0], self.words[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_dpdk_s() {
        // Repeats the compile-time checks at run time, so a test report shows them.
        assert_eq!(size_of::<MbufHeader>(), 128);
        assert_eq!(align_of::<MbufHeader>(), 64);
        let offsets = [
            (offset_of!(MbufHeader, buf_addr), 0),
            (offset_of!(MbufHeader, buf_iova), 8),
            (offset_of!(MbufHeader, data_off), 16),
            (offset_of!(MbufHeader, refcnt), 18),
            (offset_of!(MbufHeader, nb_segs), 20),
            (offset_of!(MbufHeader, port), 22),
            (offset_of!(MbufHeader, ol_flags), 24),
            (offset_of!(MbufHeader, packet_type), 32),
            (offset_of!(MbufHeader, pkt_len), 36),
            (offset_of!(MbufHeader, data_len), 40),
            (offset_of!(MbufHeader, vlan_tci), 42),
            (offset_of!(MbufHeader, hash), 44),
            (offset_of!(MbufHeader, vlan_tci_outer), 52),
            (offset_of!(MbufHeader, buf_len), 54),
            (offset_of!(MbufHeader, pool), 56),
            (offset_of!(MbufHeader, next), 64),
            (offset_of!(MbufHeader, tx_offload), 72),
            (offset_of!(MbufHeader, shinfo), 80),
            (offset_of!(MbufHeader, priv_size), 88),
            (offset_of!(MbufHeader, timesync), 90),
            (offset_of!(MbufHeader, dynfield1), 92),
        ];
        for (i, (got, want)) in offsets.iter().enumerate() {
            assert_eq!(got, want, "field #{i}");
        }
    }

    #[test]
    fn hash_union_views_overlay_like_c() {
        let h = MbufHash::from_words([
            u32::from_ne_bytes([0x11, 0x22, 0x33, 0x44]),
            u32::from_ne_bytes([0x55, 0x66, 0x77, 0x88]),
        ]);
        assert_eq!(h.fdir_hash(), u16::from_ne_bytes([0x11, 0x22]));
        assert_eq!(h.fdir_id(), u16::from_ne_bytes([0x33, 0x44]));
        assert_eq!(h.fdir_hi(), u32::from_ne_bytes([0x55, 0x66, 0x77, 0x88]));
        assert_eq!(h.sched_traffic_class(), 0x55);
        assert_eq!(h.sched_color(), 0x66);
        assert_eq!(h.txadapter_txq(), u16::from_ne_bytes([0x77, 0x88]));
        assert_eq!(h.rss(), h.usr());
        assert_eq!(MbufHash::from_rss(7).rss(), 7);
        assert_eq!(MbufHash::default(), MbufHash::ZERO);
    }
}
