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
use crate::sync::{AtomicUsize, Ordering};
use core::mem::MaybeUninit;
use core::ptr::NonNull;

/// Largest cache size (DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`).
pub const CACHE_MAX_SIZE: usize = 512;

/// A cache of free objects in front of one pool, for one core or queue.
pub struct MempoolCache {
    pool: Mempool,
    /// This cache's length slot in the pool header (`cache_slots[slot].len`), kept as a pointer
    /// so publishing the length after each operation is one store.
    len_slot: NonNull<AtomicUsize>,
    slot: usize,
    len: usize,
    size: usize,
    objs: Slots,
}

/// The cache's stack of objects, cache-line aligned (as DPDK's `objs[]`): a burst then
/// starts on a line boundary whenever the length is a multiple of 8, and wide copies do not
/// split lines needlessly.
#[repr(C, align(64))]
struct Slots([MaybeUninit<ObjPtr>; CACHE_MAX_SIZE]);

impl core::ops::Deref for Slots {
    type Target = [MaybeUninit<ObjPtr>; CACHE_MAX_SIZE];
    #[inline(always)]
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl core::ops::DerefMut for Slots {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

// SAFETY: the only field that is not Send is `len_slot`, a pointer to an atomic in the pool
// header that the cache's own `pool` handle keeps alive, so moving the cache to another thread
// is as safe as moving the handle.
unsafe impl Send for MempoolCache {}
// SAFETY: as above; the pointee is an atomic (Sync) and every other field is Sync.
unsafe impl Sync for MempoolCache {}

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
        // claim_cache_slot returns an index into cache_slots.
        let len_slot = NonNull::from(&pool.core().cache_slots[slot].len);
        Ok(Self {
            pool,
            len_slot,
            slot,
            len: 0,
            size,
            objs: Slots([MaybeUninit::uninit(); CACHE_MAX_SIZE]),
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
            copy_objs(
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
        // SAFETY: len_slot points into the header of the pool that `self.pool` keeps alive.
        unsafe { self.len_slot.as_ref() }.store(self.len, Ordering::Relaxed);
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
        let (len, n) = (self.len, objs.len());
        // SAFETY: len + n <= size <= CACHE_MAX_SIZE; no overlap with objs.
        unsafe {
            copy_objs(
                objs.as_ptr(),
                self.objs.as_mut_ptr().add(len).cast::<ObjPtr>(),
                n,
            );
        }
        self.len = len + n;
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

/// Copies `n` object pointers from `src` to `dst`.
///
/// Up to 8 pointers are copied inline, with at most two overlapping fixed-size moves (as
/// `rte_memcpy` does): a call into the C library's `memcpy` costs more than such a copy (it was
/// half the time of a one-object get+put). Longer copies do call it: its wide-vector code beats
/// inline 16-byte moves at a 32-object burst, and `n > 8` is tested first so bursts pay one
/// branch.
///
/// # Safety
/// `src[..n]` is readable, `dst[..n]` is writable, and the two ranges do not overlap.
#[inline(always)]
unsafe fn copy_objs(src: *const ObjPtr, dst: *mut ObjPtr, n: usize) {
    /// Copies the first `K` and the last `K` of `n` pointers (`K <= n <= 2K`).
    ///
    /// # Safety
    /// As for `copy_objs`, and `K <= n`.
    #[inline(always)]
    unsafe fn ends<const K: usize>(src: *const ObjPtr, dst: *mut ObjPtr, n: usize) {
        // SAFETY: K <= n, so [0, K) and [n - K, n) are inside both ranges, which do not
        // overlap; where the two moves overlap in `dst` they write the same values.
        unsafe {
            core::ptr::copy_nonoverlapping(src, dst, K);
            core::ptr::copy_nonoverlapping(src.add(n - K), dst.add(n - K), K);
        }
    }
    // SAFETY: caller contract; every arm meets `ends`'s K <= n.
    unsafe {
        if n > 8 {
            core::ptr::copy_nonoverlapping(src, dst, n);
        } else if n == 1 {
            dst.write(src.read());
        } else if n >= 4 {
            ends::<4>(src, dst, n);
        } else if n >= 2 {
            ends::<2>(src, dst, n);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mempool::MempoolConfig;
    use crate::os::test_dma::TestDma;

    #[test]
    fn copy_objs_copies_every_length_exactly() {
        let bytes = [0u8; 48];
        let at = |i: usize| ObjPtr::new(NonNull::from(&bytes[i]));
        let src: [ObjPtr; 40] = core::array::from_fn(|i| at(i + 1));
        let guard = at(0);
        for n in 0..=40 {
            let mut dst = [guard; 42];
            // SAFETY: src has 40 >= n objects, dst[1..] has 41 >= n slots, distinct arrays.
            unsafe { copy_objs(src.as_ptr(), dst.as_mut_ptr().add(1), n) };
            assert_eq!(dst[0], guard, "n = {n}: wrote before the start");
            assert_eq!(&dst[1..=n], &src[..n], "n = {n}");
            assert!(
                dst[n + 1..].iter().all(|&p| p == guard),
                "n = {n}: wrote past n"
            );
        }
    }

    #[test]
    fn bursts_of_every_size_come_back_in_order() {
        let os = TestDma::contiguous();
        let p = Mempool::create(&os, &MempoolConfig::new("b", 1024, 64), |_| {}).unwrap();
        let mut c = p.cache(512).unwrap();
        let mut objs = [ObjPtr(NonNull::dangling()); 40];
        let mut back = [ObjPtr(NonNull::dangling()); 40];
        for n in 1..=40 {
            assert!(p.get_bulk(&mut objs[..n]));
            // SAFETY: the objects came from p.
            unsafe { c.put_bulk(&objs[..n]) };
            assert!(c.get_bulk(&mut back[..n]));
            assert_eq!(&back[..n], &objs[..n], "burst of {n}");
            // SAFETY: as above.
            unsafe { p.put_bulk(&back[..n]) };
        }
        drop(c);
        assert_eq!(p.available(), 1024);
    }
}
