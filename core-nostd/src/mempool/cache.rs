//! Per-core (or per-queue) mempool caches.
//!
//! A cache is a plain object owned by one core or one queue, so getting and putting through it
//! touches no shared cache line until it must refill or flush. Behaviour (as in DPDK 26.07):
//! - capacity = the cache size;
//! - put that would overflow: the coldest half (the bottom of the stack) goes back to the pool's
//!   ring first;
//! - get that cannot be served: half a cache of objects is fetched from the ring first;
//! - a request larger than half the cache bypasses it and goes straight to the ring.
//!
//! Objects are served hottest first (last put, first got). Dropping a cache returns everything
//! in it to the pool.

use super::{Mempool, MempoolError, ObjPtr};
use core::mem::MaybeUninit;
use core::ptr::NonNull;

/// Largest cache size (DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`).
pub const CACHE_MAX_SIZE: usize = 512;

/// A cache of free objects in front of one pool, for one core or queue.
pub struct MempoolCache {
    pool: Mempool,
    slot: usize,
    len: usize,
    size: usize,
    objs: [MaybeUninit<ObjPtr>; CACHE_MAX_SIZE],
}

impl MempoolCache {
    pub(super) fn new(pool: Mempool, size: usize) -> Result<Self, MempoolError> {
        let max = CACHE_MAX_SIZE.min(pool.size());
        if !(2..=max).contains(&size) {
            return Err(MempoolError::BadCacheSize { size, max });
        }
        let slot = pool
            .core()
            .claim_cache_slot()
            .ok_or(MempoolError::TooManyCaches)?;
        Ok(Self {
            pool,
            slot,
            len: 0,
            size,
            objs: [MaybeUninit::uninit(); CACHE_MAX_SIZE],
        })
    }

    /// The pool behind this cache.
    #[inline(always)]
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Objects in the cache now.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds nothing.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cache's capacity.
    #[inline(always)]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Gets one object, or `None` if neither the cache nor the pool has one.
    #[inline(always)]
    pub fn get(&mut self) -> Option<ObjPtr> {
        if self.len > 0 {
            self.len -= 1;
            self.publish_len();
            // SAFETY: slots below len are initialised.
            let p = unsafe { self.objs[self.len].assume_init() };
            self.pool.core().mark_got(core::slice::from_ref(&p));
            return Some(p);
        }
        let mut one = [ObjPtr(NonNull::dangling())];
        self.get_bulk(&mut one).then_some(one[0])
    }

    /// Fills all of `out` with objects, or takes none and returns false.
    #[inline(always)]
    pub fn get_bulk(&mut self, out: &mut [ObjPtr]) -> bool {
        let n = out.len();
        if n <= self.len {
            self.take_top(out);
            self.pool.core().mark_got(out);
            return true;
        }
        self.get_bulk_slow(out)
    }

    #[inline(always)]
    fn take_top(&mut self, out: &mut [ObjPtr]) {
        let n = out.len();
        let start = self.len - n;
        // SAFETY: slots [start, len) are initialised; MaybeUninit<ObjPtr> has ObjPtr's layout;
        // out does not overlap the cache's own array.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.objs.as_ptr().add(start).cast::<ObjPtr>(),
                out.as_mut_ptr(),
                n,
            );
        }
        self.len = start;
        self.publish_len();
    }

    #[inline(always)]
    fn publish_len(&self) {
        self.pool.core().set_cache_len(self.slot, self.len);
    }

    #[inline(never)]
    fn get_bulk_slow(&mut self, out: &mut [ObjPtr]) -> bool {
        let n = out.len();
        let half = self.size / 2;
        let core = self.pool.core();
        if n > half {
            // Bypass: larger than half a cache goes straight to the ring.
            let ok = core.ring_get(out);
            if ok {
                core.mark_got(out);
            }
            return ok;
        }
        // Refill half a cache on top of what is there (len < n <= half, so it fits).
        let refill = half;
        let dst = &mut self.objs[self.len..self.len + refill];
        // SAFETY: MaybeUninit<ObjPtr> has ObjPtr's layout and the ring only writes the slice.
        let dst = unsafe { &mut *(dst as *mut [MaybeUninit<ObjPtr>] as *mut [ObjPtr]) };
        if core.ring_get(dst) {
            self.len += refill;
        } else {
            // The ring has less than half a cache: take the shortfall alone, if it is there.
            let have = self.len;
            let (from_ring, from_cache) = out.split_at_mut(n - have);
            if !core.ring_get(from_ring) {
                return false;
            }
            self.take_top(from_cache);
            self.pool.core().mark_got(out);
            return true;
        }
        self.take_top(out);
        self.pool.core().mark_got(out);
        true
    }

    /// Returns one object through the cache.
    ///
    /// # Safety
    /// `obj` came from this cache's pool and is not used after this call (checked with the
    /// `checked` feature).
    #[inline(always)]
    pub unsafe fn put(&mut self, obj: ObjPtr) {
        // SAFETY: forwarded caller contract.
        unsafe { self.put_bulk(core::slice::from_ref(&obj)) }
    }

    /// Returns objects through the cache.
    ///
    /// # Safety
    /// As for [`put`](Self::put), for each object.
    #[inline(always)]
    pub unsafe fn put_bulk(&mut self, objs: &[ObjPtr]) {
        let n = objs.len();
        self.pool.core().check_put_or_panic(objs);
        if self.len + n <= self.size {
            self.push(objs);
            return;
        }
        self.put_bulk_slow(objs);
    }

    #[inline(always)]
    fn push(&mut self, objs: &[ObjPtr]) {
        // SAFETY: len + objs.len() <= size <= CACHE_MAX_SIZE; no overlap with objs.
        unsafe {
            core::ptr::copy_nonoverlapping(
                objs.as_ptr(),
                self.objs.as_mut_ptr().add(self.len).cast::<ObjPtr>(),
                objs.len(),
            );
        }
        self.len += objs.len();
        self.publish_len();
    }

    #[inline(never)]
    fn put_bulk_slow(&mut self, objs: &[ObjPtr]) {
        let half = self.size / 2;
        let core = self.pool.core();
        if objs.len() > half {
            core.ring_put(objs);
            return;
        }
        // Overflow: flush the coldest half (bottom of the stack), move the rest down.
        // len + n > size and n <= half imply len > half.
        // SAFETY: slots [0, half) are initialised (len > half).
        let cold =
            unsafe { &*(&self.objs[..half] as *const [MaybeUninit<ObjPtr>] as *const [ObjPtr]) };
        core.ring_put(cold);
        self.objs.copy_within(half..self.len, 0);
        self.len -= half;
        self.push(objs);
    }

    /// Returns everything in the cache to the pool.
    pub fn flush(&mut self) {
        let len = self.len;
        // SAFETY: slots [0, len) are initialised.
        let all =
            unsafe { &*(&self.objs[..len] as *const [MaybeUninit<ObjPtr>] as *const [ObjPtr]) };
        self.pool.core().ring_put(all);
        self.len = 0;
        self.publish_len();
    }
}

impl Drop for MempoolCache {
    fn drop(&mut self) {
        self.flush();
        self.pool.core().release_cache_slot(self.slot);
    }
}

impl core::fmt::Debug for MempoolCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MempoolCache")
            .field("pool", &self.pool.name())
            .field("len", &self.len)
            .field("size", &self.size)
            .finish()
    }
}
