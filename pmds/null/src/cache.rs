//! The mbuf cache a receive queue and the transmit queue of the same id share.
//!
//! Why share: a null receive queue only allocates and a null transmit queue only frees. With a
//! cache each, every freed mbuf goes back through the pool's ring (FIFO) before it is
//! allocated again, so an mbuf comes back only after all the others have had their turn: with
//! a pool of 32 Ki mbufs every allocation touches two cold cache lines of an mbuf header.
//! DPDK's per-core mempool cache hands the mbufs a core just freed straight back (LIFO).
//! Sharing one cache between rx queue `i` and tx queue `i` gives the same reuse whenever a port
//! sends about as much as it receives, as in testpmd's io forwarding between two null ports:
//! measured there (one core, 32 Ki mbufs, `examples/io_fwd.rs`), 86 Mpps with a cache per
//! queue, 200 Mpps shared.
//!
//! The two queues may be lent to different cores, so the cache is taken with a try-lock: one
//! atomic swap per burst, never a wait. A burst that finds it taken (by the other queue, on
//! another core, at that very moment) goes to the pool's ring instead.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use rdk_core::mbuf::MbufCache;

/// An [`MbufCache`] two queues can use, one at a time.
pub(crate) struct SharedCache {
    busy: AtomicBool,
    cache: UnsafeCell<MbufCache>,
}

// SAFETY: the cache is only reached through `with`, which hands it to one caller at a time
// (the `busy` flag, taken with Acquire and released with Release, orders every use after the
// previous one), and MbufCache itself is Send.
unsafe impl Sync for SharedCache {}

impl SharedCache {
    pub(crate) fn new(cache: MbufCache) -> Self {
        Self {
            busy: AtomicBool::new(false),
            cache: UnsafeCell::new(cache),
        }
    }

    /// Runs `f` on the cache unless another thread is using it right now.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut MbufCache) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: the flag was clear and we set it, so no other reference to the cache exists
        // until we clear it below. (Were `f` to panic the flag would stay set: later bursts
        // take the slow path, nothing unsound.)
        let r = f(unsafe { &mut *self.cache.get() });
        self.busy.store(false, Ordering::Release);
        Some(r)
    }
}

impl core::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedCache")
            .field("busy", &self.busy.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};
    use rdk_os_mock::MockOs;

    #[test]
    fn one_user_at_a_time() {
        let os = MockOs::new();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("sc", 64)).unwrap();
        let shared = SharedCache::new(pool.cache(16).unwrap());
        let inner = shared.with(|c| {
            let m = c.alloc().unwrap();
            // A nested (or concurrent) user is turned away, not blocked.
            assert!(shared.with(|_| ()).is_none());
            c.free(m);
            c.len()
        });
        assert!(inner.is_some());
        assert!(shared.with(|_| ()).is_some(), "released after use");
        drop(shared);
        assert_eq!(pool.available(), 64);
    }
}
