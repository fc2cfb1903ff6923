//! Freeing: DPDK's prefree step per segment, then the segments back to their pools in
//! batches — into a cache when it belongs to the segment's pool, else into that pool's ring.

use super::header::MbufHeader;
use crate::mempool::{MempoolCache, ObjPtr, PoolCore};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// Segments gathered before one put.
const BATCH: usize = 32;

/// Drops one reference to a segment (`rte_pktmbuf_prefree_seg`). Returns whether it was the
/// last one, in which case the segment is left as a free object must be (refcnt 1, no next,
/// one segment) and belongs to the caller, to put back into its pool.
///
/// # Safety
/// The caller holds one reference to `seg` and gives it up; if `false` is returned the caller
/// must not touch `seg` again.
#[inline(always)]
unsafe fn prefree(seg: NonNull<MbufHeader>) -> bool {
    let h = seg.as_ptr();
    // SAFETY: the caller's reference keeps the segment alive; refcnt is atomic.
    let refcnt = unsafe { &(*h).refcnt };
    // Sole owner: no atomic read-modify-write (DPDK's fast path). Acquire pairs with the
    // Release decrement of an owner that left earlier, so its reads happen before our reuse.
    if refcnt.load(Ordering::Acquire) != 1 {
        // Release publishes our last reads to whoever frees; Acquire, for the one who does,
        // receives everybody else's.
        if refcnt.fetch_sub(1, Ordering::AcqRel) != 1 {
            return false;
        }
        refcnt.store(1, Ordering::Relaxed);
    }
    // SAFETY: the last reference was ours: nobody else reads or writes this header now.
    unsafe {
        // Only write what differs, like DPDK: `next` is on the second cache line.
        if (*h).next.is_some() {
            (*h).next = None;
        }
        if (*h).nb_segs != 1 {
            (*h).nb_segs = 1;
        }
    }
    true
}

/// Free segments on their way back to their pools.
pub(super) struct FreeBatch<'c> {
    /// Where segments of the cache's pool go; `None`: every segment goes to its pool's ring.
    cache: Option<&'c mut MempoolCache>,
    /// The pool of the gathered segments.
    pool: Option<NonNull<PoolCore>>,
    objs: [MaybeUninit<ObjPtr>; BATCH],
    len: usize,
}

impl<'c> FreeBatch<'c> {
    #[inline(always)]
    pub(super) fn new(cache: Option<&'c mut MempoolCache>) -> Self {
        Self {
            cache,
            pool: None,
            objs: [MaybeUninit::uninit(); BATCH],
            len: 0,
        }
    }

    /// Frees a chain: each segment whose last reference this was goes to the batch.
    ///
    /// # Safety
    /// The caller gives up one reference to the chain at `head` (a consumed [`Mbuf`]
    /// handle).
    ///
    /// [`Mbuf`]: super::Mbuf
    #[inline(always)]
    pub(super) unsafe fn free_chain(&mut self, head: NonNull<MbufHeader>) {
        let mut cur = Some(head);
        while let Some(seg) = cur {
            let h = seg.as_ptr();
            // Read before giving up our reference: afterwards another owner may free it.
            // SAFETY: we still hold a reference to seg.
            cur = unsafe { (*h).next };
            // SAFETY: caller contract; seg is not touched after a false.
            if unsafe { prefree(seg) } {
                // SAFETY: seg is ours now (last reference).
                let pool = unsafe { (*h).pool };
                self.push(pool, ObjPtr::new(seg.cast()));
            }
        }
    }

    #[inline(always)]
    fn push(&mut self, pool: NonNull<PoolCore>, obj: ObjPtr) {
        if self.len == BATCH || (self.len > 0 && self.pool != Some(pool)) {
            self.flush();
        }
        self.pool = Some(pool);
        if let Some(slot) = self.objs.get_mut(self.len) {
            *slot = MaybeUninit::new(obj);
            self.len += 1;
        }
    }

    /// Puts the gathered segments back.
    #[inline]
    fn flush(&mut self) {
        let (Some(pool), n) = (self.pool, self.len) else {
            return;
        };
        if n == 0 {
            return;
        }
        self.len = 0;
        // SAFETY: slots [0, n) were written by push; MaybeUninit<ObjPtr> has ObjPtr's layout.
        let objs = unsafe { core::slice::from_raw_parts(self.objs.as_ptr().cast::<ObjPtr>(), n) };
        match self.cache.as_deref_mut() {
            Some(cache) if cache.pool().core_ptr() == pool => {
                // SAFETY: free segments of the cache's own pool, owned by nobody else.
                unsafe { cache.put_bulk(objs) }
            }
            _ => {
                // SAFETY: these objects are out of their pool, and a pool's memory is never
                // released while any object is out (Mempool's Drop leaks it instead), so the
                // pool header the segments recorded is alive (see the module doc).
                let core = unsafe { pool.as_ref() };
                core.check_put_or_panic(objs);
                core.ring_put(objs);
            }
        }
    }
}

impl Drop for FreeBatch<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.flush();
    }
}
