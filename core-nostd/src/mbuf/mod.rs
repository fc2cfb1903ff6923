//! The packet buffer: DPDK's `rte_mbuf`, with ownership.
//!
//! - [`header`](MbufHeader): the 128-byte header, field for field `struct rte_mbuf`, every
//!   offset asserted at compile time.
//! - [`PktMbufPool`]: mbufs carved from one [`Mempool`](crate::mempool::Mempool) (header,
//!   private area, headroom 128, data room 2048 by default), and [`MbufCache`] for one core.
//! - [`Mbuf`]: the owned handle to a chain of segments. It is one pointer (so a burst array
//!   `[Option<Mbuf>; 32]` is 256 bytes), `Send`, not `Clone`; dropping it frees the chain into
//!   the segments' pools. Reading: [`data`](Mbuf::data), [`segments`](Mbuf::segments),
//!   [`read`](Mbuf::read); editing: [`prepend`](Mbuf::prepend), [`append`](Mbuf::append),
//!   [`adj`](Mbuf::adj), [`trim`](Mbuf::trim), [`chain`](Mbuf::chain),
//!   [`meta_mut`](Mbuf::meta_mut); sharing: [`share`](Mbuf::share).
//! - [`OlFlags`], [`PacketType`], [`TxOffload`]: the offload words, with DPDK 22.11's values.
//!
//! ```
//! use rdk_core::mbuf::{Mbuf, OlFlags, PktMbufPool, PktMbufPoolConfig};
//! # fn demo<D: rdk_core::os::DmaAlloc>(os: &D) -> Result<(), Box<dyn core::error::Error>> {
//! let pool = PktMbufPool::create(os, &PktMbufPoolConfig::new("rx0", 4096))?;
//! let mut cache = pool.cache(256)?;
//! let mut m = cache.alloc().ok_or("pool empty")?;
//! m.append(6)?.copy_from_slice(b"\xff\xff\xff\xff\xff\xff");
//! m.meta_mut()?.set_ol_flags(OlFlags::TX_IPV4 | OlFlags::TX_IP_CKSUM);
//! let mut burst: [Option<Mbuf>; 1] = [Some(m)];
//! cache.free_bulk(&mut burst); // or just drop it
//! # Ok(()) }
//! ```
//!
//! # Safety story
//!
//! The safe API cannot double-free, use after free, write a buffer another handle reads, or
//! reach outside a buffer. What holds it up:
//!
//! 1. **One handle, one reference.** Each segment has a reference count (`refcnt`). An
//!    [`Mbuf`] owns one reference to every segment of its chain; it is neither `Clone` nor
//!    `Copy`, and [`share`](Mbuf::share) adds one reference per segment for the new handle.
//!    Dropping a handle gives its references up (DPDK's prefree: a count of 1 needs no atomic
//!    operation; otherwise an atomic decrement, and only the owner that takes it to zero
//!    frees). So a segment goes back to its pool exactly once, and only when nobody holds it.
//!    Chains are only ever built by `chain`, which refuses shared chains, so every segment of
//!    a chain has the same count as its head and no cycle can form.
//! 2. **Writes need exclusivity.** Everything that writes a header or a buffer takes
//!    `&mut Mbuf` *and* checks `refcnt == 1` with Acquire ordering (which pairs with the
//!    Release decrement of the last other owner): no other handle exists, and `&mut` excludes
//!    every borrow of this one. While shared, data and header are read-only
//!    ([`MbufError::Shared`]); the count itself is atomic.
//! 3. **Lengths stay inside the buffer.** Every header keeps `data_off + data_len <= buf_len`
//!    and the head's `pkt_len` is the sum of its segments' `data_len`; the edits check room
//!    before moving either, so the slices handed out never leave the buffer.
//! 4. **The pool outlives its mbufs.** The header's `pool` is the mempool's header address
//!    (`Mempool::core_ptr`), at the start of the pool's DMA region. The mempool releases that
//!    region only when the last `Mempool` handle is dropped *and* every object is back in its
//!    ring; if objects are still out then, it leaks the region rather than free it under them
//!    (caches hold a `Mempool` handle, so mbufs in caches count as home). So while a segment is
//!    held, dereferencing its `pool` is valid, and freeing after every pool handle was dropped
//!    is fine: the segment returns to the orphaned pool's ring. The last thing a free does with
//!    the pool is the ring's Release store of its tail; a concurrent final `Mempool` drop reads
//!    the ring count with Acquire before releasing the memory, as `Arc` does.
//! 5. **Provenance.** Buffer and private-area pointers are derived from the segment pointer
//!    (which comes from the pool region) at the address recorded in `buf_addr`, never from a
//!    `&MbufHeader`, whose provenance ends at the header's 128 bytes.
//! 6. **IOVA.** `buf_iova` is the mempool's IOVA for the object plus the buffer's offset,
//!    computed once at pool creation; an object never straddles an IOVA discontinuity, so
//!    `data_iova()` is an addition. The virtual address is never used as an IOVA.

mod edit;
mod error;
mod flags;
mod free;
mod header;
mod meta;
mod pool;
mod segment;
mod tx_offload;

pub use edit::ChainError;
pub use error::MbufError;
pub use flags::{OlFlags, PacketType, RxCksum, RxOuterL4Cksum, TxL4Cksum, TxTunnel};
pub use header::{MbufHash, MbufHeader, HEADER_SIZE, MAX_SEGS, PORT_INVALID};
pub use meta::MetaMut;
pub use pool::{
    MbufCache, PktMbufPool, PktMbufPoolConfig, PktMbufPoolError, DEFAULT_DATA_ROOM,
    PKTMBUF_HEADROOM, PRIV_ALIGN,
};
pub use segment::{Segment, Segments};
pub use tx_offload::{TxOffload, TxOffloadError, TxOffloadField};

use crate::addr::Iova;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use free::FreeBatch;

/// An owned packet: one reference to a chain of segments, returned to the segments' pools on
/// drop.
///
/// One pointer wide, and `Option<Mbuf>` too. Not `Clone`: a second handle to the same packet
/// only comes from [`share`](Mbuf::share), which counts it. Ownership makes a double free
/// impossible:
///
/// ```compile_fail,E0382
/// fn twice(m: rdk_core::mbuf::Mbuf) {
///     drop(m);
///     drop(m); // use of moved value
/// }
/// ```
///
/// ```compile_fail,E0599
/// use rdk_core::mbuf::Mbuf;
/// fn copy(m: Mbuf) -> (Mbuf, Mbuf) {
///     (m.clone(), m) // Mbuf is not Clone
/// }
/// ```
#[repr(transparent)]
pub struct Mbuf {
    ptr: NonNull<MbufHeader>,
}

const _: () = assert!(size_of::<Option<Mbuf>>() == size_of::<usize>());

// SAFETY: a handle owns its references; the segments' headers and buffers are written only by
// the sole owner (refcnt 1, checked with Acquire) and the count is atomic, so the handle may
// move to another thread.
unsafe impl Send for Mbuf {}
// SAFETY: through `&Mbuf` only reads and the atomic count are reachable; writes need `&mut`.
unsafe impl Sync for Mbuf {}

/// Checks a segment may be written: this handle's reference is the only one.
#[inline(always)]
fn exclusive(seg: NonNull<MbufHeader>) -> Result<(), MbufError> {
    // SAFETY: seg is a segment of a chain the caller holds, so it is alive.
    let refcnt = unsafe { seg.as_ref() }.refcnt.load(Ordering::Acquire);
    if refcnt == 1 {
        Ok(())
    } else {
        Err(MbufError::Shared { refcnt })
    }
}

impl Mbuf {
    /// Gives up the handle without freeing: the caller now owns its reference, to be turned
    /// back into a handle with [`from_raw`](Self::from_raw) (a driver parking mbufs in its
    /// descriptor ring's shadow array, for instance).
    #[inline(always)]
    pub fn into_raw(self) -> NonNull<MbufHeader> {
        let p = self.ptr;
        core::mem::forget(self);
        p
    }

    /// Takes back a handle given up with [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and is turned back into a handle only once.
    #[inline(always)]
    pub unsafe fn from_raw(ptr: NonNull<MbufHeader>) -> Mbuf {
        Mbuf { ptr }
    }

    #[inline(always)]
    fn hdr(&self) -> &MbufHeader {
        self.first_segment().hdr()
    }

    /// The chain's last segment.
    #[inline]
    fn last_ptr(&self) -> NonNull<MbufHeader> {
        let mut p = self.ptr;
        // SAFETY: every segment of the held chain is alive; `next` is not written while
        // `&self` lives.
        while let Some(n) = unsafe { p.as_ref() }.next {
            p = n;
        }
        p
    }

    /// The first segment's data.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        self.first_segment().data()
    }

    /// Bytes in the first segment.
    #[inline(always)]
    pub fn data_len(&self) -> u16 {
        self.hdr().data_len
    }

    /// Bytes in the whole packet (all segments).
    #[inline(always)]
    pub fn pkt_len(&self) -> u32 {
        self.hdr().pkt_len
    }

    /// Segments in the chain.
    #[inline(always)]
    pub fn nb_segs(&self) -> u16 {
        self.hdr().nb_segs
    }

    /// Offset of the data in the first segment's buffer.
    #[inline(always)]
    pub fn data_off(&self) -> u16 {
        self.hdr().data_off
    }

    /// Room in front of the data (first segment), for [`prepend`](Self::prepend).
    #[inline(always)]
    pub fn headroom(&self) -> u16 {
        self.hdr().data_off
    }

    /// Room after the data of the *first* segment (`rte_pktmbuf_tailroom`); what
    /// [`append`](Self::append) can use is [`last_segment`](Self::last_segment)`().tailroom()`.
    #[inline(always)]
    pub fn tailroom(&self) -> u16 {
        self.hdr().tailroom()
    }

    /// Bytes in the first segment's buffer.
    #[inline(always)]
    pub fn buf_len(&self) -> u16 {
        self.hdr().buf_len
    }

    /// The first segment's buffer IOVA.
    #[inline(always)]
    pub fn buf_iova(&self) -> Iova {
        self.hdr().buf_iova
    }

    /// The IOVA of the first data byte (`rte_pktmbuf_iova`): what an RX descriptor gets after
    /// allocation, or a TX descriptor for the first segment.
    #[inline(always)]
    pub fn data_iova(&self) -> Iova {
        self.first_segment().data_iova()
    }

    /// The input port, or [`PORT_INVALID`].
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.hdr().port
    }

    /// The offload flags.
    #[inline(always)]
    pub fn ol_flags(&self) -> OlFlags {
        OlFlags::from_bits_retain(self.hdr().ol_flags)
    }

    /// The packet type.
    #[inline(always)]
    pub fn packet_type(&self) -> PacketType {
        PacketType::from_bits(self.hdr().packet_type)
    }

    /// The TX offload lengths.
    #[inline(always)]
    pub fn tx_offload(&self) -> TxOffload {
        TxOffload::from_bits(self.hdr().tx_offload)
    }

    /// The VLAN TCI (valid with `RX_VLAN`).
    #[inline(always)]
    pub fn vlan_tci(&self) -> u16 {
        self.hdr().vlan_tci
    }

    /// The outer VLAN TCI (valid with `RX_QINQ`).
    #[inline(always)]
    pub fn vlan_tci_outer(&self) -> u16 {
        self.hdr().vlan_tci_outer
    }

    /// The RSS hash (valid with `RX_RSS_HASH`).
    #[inline(always)]
    pub fn rss_hash(&self) -> u32 {
        self.hdr().hash.rss()
    }

    /// The whole hash union.
    #[inline(always)]
    pub fn hash(&self) -> MbufHash {
        self.hdr().hash
    }

    /// The IEEE 1588 timesync flags.
    #[inline(always)]
    pub fn timesync(&self) -> u16 {
        self.hdr().timesync
    }

    /// The dynamic-field words.
    #[inline(always)]
    pub fn dynfields(&self) -> &[u32; 9] {
        &self.hdr().dynfield1
    }

    /// The first segment's reference count: the number of handles to this packet.
    #[inline(always)]
    pub fn refcnt(&self) -> u16 {
        self.first_segment().refcnt()
    }

    /// Whether other handles to this packet exist (then it is read-only).
    #[inline(always)]
    pub fn is_shared(&self) -> bool {
        exclusive(self.ptr).is_err()
    }

    /// Another handle to the same packet (`rte_pktmbuf_refcnt_update(m, 1)`): every segment's
    /// count goes up by one, and the packet is read-only until all but one handle are gone.
    /// Refused if a count would pass 65535.
    pub fn share(&self) -> Result<Mbuf, MbufError> {
        for (done, seg) in self.segments().enumerate() {
            // Relaxed, as for Arc::clone: the new handle is derived from one we hold.
            let up = seg
                .hdr()
                .refcnt
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_add(1));
            if up.is_err() {
                for s in self.segments().take(done) {
                    // Cannot reach zero: our own reference is still counted.
                    s.hdr().refcnt.fetch_sub(1, Ordering::Relaxed);
                }
                return Err(MbufError::RefcntOverflow);
            }
        }
        Ok(Mbuf { ptr: self.ptr })
    }

    /// Frees every mbuf in `mbufs` (leaving `None`), batching segments by pool into each
    /// pool's ring (`rte_pktmbuf_free_bulk`). With a cache at hand,
    /// [`MbufCache::free_bulk`] is cheaper.
    #[inline]
    pub fn free_bulk(mbufs: &mut [Option<Mbuf>]) {
        let mut batch = FreeBatch::new(None);
        for m in mbufs.iter_mut().filter_map(Option::take) {
            // SAFETY: the handle is consumed; its reference is given up here.
            unsafe { batch.free_chain(m.into_raw()) };
        }
    }
}

impl Drop for Mbuf {
    /// Frees the chain (`rte_pktmbuf_free`): each segment whose last reference this was goes
    /// back to its own pool's ring.
    #[inline]
    fn drop(&mut self) {
        let mut batch = FreeBatch::new(None);
        // SAFETY: the handle is being dropped; its reference is given up here.
        unsafe { batch.free_chain(self.ptr) };
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("pkt_len", &self.pkt_len())
            .field("nb_segs", &self.nb_segs())
            .field("data_len", &self.data_len())
            .field("data_off", &self.data_off())
            .field("refcnt", &self.refcnt())
            .field("port", &self.port())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::os::test_dma::TestDma;

    /// A pool of `count` default mbufs.
    pub(crate) fn pool_of(os: &TestDma, count: usize) -> PktMbufPool {
        PktMbufPool::create(os, &PktMbufPoolConfig::new("test", count)).unwrap()
    }

    /// An mbuf holding `len` bytes counting up from `first` (mod 256).
    pub(crate) fn filled(pool: &PktMbufPool, first: usize, len: u16) -> Mbuf {
        let mut m = pool.alloc().unwrap();
        for (i, b) in m.append(len).unwrap().iter_mut().enumerate() {
            *b = (first + i) as u8;
        }
        m
    }

    #[test]
    fn handle_is_one_pointer_and_thread_safe() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Mbuf>();
        send_sync::<PktMbufPool>();
        send_sync::<MbufCache>();
        assert_eq!(size_of::<Option<Mbuf>>(), 8);
        assert_eq!(size_of::<[Option<Mbuf>; 32]>(), 256);
    }

    #[test]
    fn drop_returns_to_pool_and_into_raw_round_trips() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 3);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        let c = p.alloc().unwrap();
        assert!(p.alloc().is_none());
        assert_eq!((p.available(), p.in_use()), (0, 3));
        drop(a);
        assert_eq!(p.available(), 1);
        let raw = b.into_raw();
        assert_eq!(p.available(), 1, "into_raw does not free");
        // SAFETY: raw came from into_raw, used once.
        let b = unsafe { Mbuf::from_raw(raw) };
        let mut slots = [Some(b), None, Some(c)];
        Mbuf::free_bulk(&mut slots);
        assert!(slots.iter().all(Option::is_none));
        assert_eq!(p.available(), 3);
    }

    #[test]
    fn sharing_counts_and_last_owner_frees() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 2);
        let mut m = filled(&p, 0, 4);
        assert!(!m.is_shared());
        let s1 = m.share().unwrap();
        let s2 = s1.share().unwrap();
        assert_eq!((m.refcnt(), s2.refcnt()), (3, 3));
        assert!(m.is_shared() && s1.is_shared());
        assert_eq!(s2.data(), m.data());
        assert_eq!(m.data_mut().unwrap_err(), MbufError::Shared { refcnt: 3 });
        drop(s1);
        assert_eq!(p.available(), 1, "not freed while shared");
        drop(m);
        assert_eq!(p.available(), 1);
        let mut last = s2;
        assert_eq!(last.refcnt(), 1);
        last.data_mut().unwrap()[0] = 42;
        drop(last);
        assert_eq!(p.available(), 2, "the last owner freed it");
        let m = p.alloc().unwrap();
        assert_eq!(m.refcnt(), 1, "a recycled shared mbuf starts at refcnt 1");
    }

    #[test]
    fn debug_shows_the_counts() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 1);
        let m = filled(&p, 0, 7);
        let s = std::format!("{m:?}");
        assert!(s.contains("pkt_len: 7") && s.contains("refcnt: 1"), "{s}");
    }
}
