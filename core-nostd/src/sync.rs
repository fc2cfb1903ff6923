//! The atomics and cells the lock-free code uses, swapped for loom's under `--cfg loom` so the
//! same source is model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// An Acquire fence (pairs with Release decrements of a reference count).
#[inline(always)]
pub(crate) fn fence_acquire() {
    fence(Ordering::Acquire);
}

/// Tells the CPU (or loom's scheduler) that this thread is waiting for another.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Aligns a value to its own pair of cache lines, so a producer's and a consumer's hot fields
/// never share a line (x86 prefetches lines in adjacent pairs, hence 128 bytes).
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(pub T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
