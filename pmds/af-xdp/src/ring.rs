//! The four single-producer/single-consumer rings an AF_XDP socket shares with the kernel.
//!
//! Each ring is a power-of-two array of descriptors plus a producer index, a consumer index
//! and a flags word, all free-running `u32`s (a slot is `index & mask`). rdk is the producer of
//! the fill and TX rings and the consumer of the RX and completion rings; it keeps its own side
//! in a local copy and never reads it back from shared memory. The other side's index is the
//! kernel's word: it is read with Acquire (pairs with the kernel's release of the descriptors)
//! and checked — a producer claiming more entries than the ring holds, or a consumer claiming
//! to have consumed more than was produced, is an anomaly: counted, and the ring is treated as
//! empty (full) rather than trusted. Descriptor slots are always `index & mask`, so no value
//! the kernel writes can make an access leave the ring.
#![allow(unsafe_code)] // atomics and descriptor accesses inside the checked mapping.

use crate::sys::{RingMap, RingOffset};
use nix::errno::Errno;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Entries the other side may have made visible: `prod - cons`, or `None` if that is more
/// than the ring holds (a lying or corrupted index).
#[inline(always)]
pub(crate) fn filled(prod: u32, cons: u32, size: u32) -> Option<u32> {
    let n = prod.wrapping_sub(cons);
    (n <= size).then_some(n)
}

/// Free slots for a producer at `prod` when the consumer is at `cons`, or `None` if the
/// consumer claims to be ahead of the producer or further behind than the ring holds.
#[inline(always)]
pub(crate) fn free_slots(prod: u32, cons: u32, size: u32) -> Option<u32> {
    filled(prod, cons, size).map(|used| size - used)
}

/// A mapped ring of `T` descriptors.
#[derive(Debug)]
pub(crate) struct Ring<T> {
    map: RingMap,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    mask: u32,
    /// Our side's index (producer or consumer, depending on the ring).
    local: u32,
    /// The kernel's index as last read (checked when read): re-read only when what it
    /// allows runs out, so an idle or steady queue does not pull the kernel's cache line
    /// over on every burst.
    other: u32,
    _t: PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    /// Maps a ring of `size` entries (a power of two) at `pgoff` of `fd`, laid out as `off`.
    pub(crate) fn map(
        fd: &OwnedFd,
        off: &RingOffset,
        size: u32,
        pgoff: i64,
    ) -> Result<Self, Errno> {
        let bytes = (size as u64)
            .checked_mul(std::mem::size_of::<T>() as u64)
            .and_then(|b| b.checked_add(off.desc))
            .ok_or(Errno::EINVAL)?;
        let idx_ok =
            |o: u64| o.is_multiple_of(4) && o.checked_add(4).is_some_and(|e| e <= off.desc);
        if !size.is_power_of_two()
            || !idx_ok(off.producer)
            || !idx_ok(off.consumer)
            || !idx_ok(off.flags)
            || !off.desc.is_multiple_of(std::mem::align_of::<T>() as u64)
        {
            return Err(Errno::EINVAL);
        }
        let map = RingMap::map(fd.as_raw_fd(), bytes as usize, pgoff, false)?;
        Ok(Self::on(map, off, size))
    }

    /// A ring over `map`, laid out as `off` (checked by the caller).
    fn on(map: RingMap, off: &RingOffset, size: u32) -> Self {
        Self {
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            flags: off.flags as usize,
            desc: off.desc as usize,
            mask: size - 1,
            local: 0,
            other: 0,
            map,
            _t: PhantomData,
        }
    }

    /// A ring of `size` entries in anonymous memory, for tests that play the kernel: returns
    /// the ring and its base address (producer at 0, consumer at 64, flags at 128,
    /// descriptors at 192).
    #[cfg(test)]
    pub(crate) fn fake(size: u32) -> (Self, usize) {
        let off = RingOffset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        let map = RingMap::anon(192 + size as usize * std::mem::size_of::<T>())
            .expect("anonymous memory");
        let base = map.base() as usize;
        (Self::on(map, &off, size), base)
    }

    #[inline(always)]
    fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: off + 4 <= desc <= mapping length and 4-aligned (checked in `map`; the
        // mapping is page-aligned); the word is only ever accessed atomically by both sides.
        unsafe { AtomicU32::from_ptr(self.map.base().add(off).cast()) }
    }

    /// Entries in the ring.
    #[inline(always)]
    pub(crate) fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Whether the kernel asked for a wake-up system call.
    #[inline(always)]
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.word(self.flags).load(Ordering::Relaxed) & crate::sys::XDP_RING_NEED_WAKEUP != 0
    }

    #[inline(always)]
    fn slot(&self, i: u32) -> *mut T {
        let i = (i & self.mask) as usize;
        // In bounds: desc + size * size_of::<T>() is the mapping length (see `map`).
        self.map
            .base()
            .wrapping_add(self.desc + i * std::mem::size_of::<T>())
            .cast()
    }

    /// The descriptor at free-running index `i`.
    #[inline(always)]
    pub(crate) fn read(&self, i: u32) -> T {
        // SAFETY: inside the mapping (masked); read_volatile: the other side may write it.
        unsafe { self.slot(i).read_volatile() }
    }

    /// Writes the descriptor at free-running index `i` (a slot we reserved).
    #[inline(always)]
    pub(crate) fn write(&mut self, i: u32, v: T) {
        // SAFETY: inside the mapping (masked), a slot the kernel does not own until published.
        unsafe { self.slot(i).write_volatile(v) }
    }

    /// Our index.
    #[inline(always)]
    pub(crate) fn local(&self) -> u32 {
        self.local
    }

    // --- consumer side (RX, completion) ---

    /// Entries ready to consume, at most `max`; `None` if the kernel's producer index is
    /// impossible.
    #[inline(always)]
    pub(crate) fn peek(&mut self, max: u32) -> Option<u32> {
        let cached = self.other.wrapping_sub(self.local);
        if cached >= max && cached <= self.size() {
            return Some(max);
        }
        let prod = self.word(self.producer).load(Ordering::Acquire);
        let n = filled(prod, self.local, self.size())?;
        self.other = prod;
        Some(n.min(max))
    }

    /// Gives `n` consumed entries back to the kernel.
    #[inline(always)]
    pub(crate) fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.word(self.consumer)
            .store(self.local, Ordering::Release);
    }

    // --- producer side (fill, TX) ---

    /// Free slots, at most `max`; `None` if the kernel's consumer index is impossible.
    #[inline(always)]
    pub(crate) fn free(&mut self, max: u32) -> Option<u32> {
        if let Some(n) = free_slots(self.local, self.other, self.size()) {
            if n >= max {
                return Some(max);
            }
        }
        let cons = self.word(self.consumer).load(Ordering::Acquire);
        let n = free_slots(self.local, cons, self.size())?;
        self.other = cons;
        Some(n.min(max))
    }

    /// Entries produced that the kernel has not consumed yet (0 if its index is impossible).
    pub(crate) fn outstanding(&self) -> u32 {
        let cons = self.word(self.consumer).load(Ordering::Acquire);
        filled(self.local, cons, self.size()).unwrap_or(0)
    }

    /// Publishes `n` written entries.
    #[inline(always)]
    pub(crate) fn submit(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.word(self.producer)
            .store(self.local, Ordering::Release);
    }
}

/// The kernel's side of a [`Ring::fake`], for tests.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelSide<T> {
    pub base: usize,
    pub size: u32,
    pub _t: PhantomData<T>,
}

#[cfg(test)]
impl<T: Copy> KernelSide<T> {
    pub(crate) fn new(base: usize, size: u32) -> Self {
        Self {
            base,
            size,
            _t: PhantomData,
        }
    }
    fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: a 4-aligned index word of a live fake ring (tests keep the ring alive).
        unsafe { AtomicU32::from_ptr((self.base + off) as *mut u32) }
    }
    pub(crate) fn prod(&self) -> u32 {
        self.word(0).load(Ordering::Acquire)
    }
    pub(crate) fn set_prod(&self, v: u32) {
        self.word(0).store(v, Ordering::Release)
    }
    pub(crate) fn cons(&self) -> u32 {
        self.word(64).load(Ordering::Acquire)
    }
    pub(crate) fn set_cons(&self, v: u32) {
        self.word(64).store(v, Ordering::Release)
    }
    pub(crate) fn set_flags(&self, v: u32) {
        self.word(128).store(v, Ordering::Release)
    }
    fn slot(&self, i: u32) -> *mut T {
        (self.base + 192 + (i & (self.size - 1)) as usize * std::mem::size_of::<T>()) as *mut T
    }
    pub(crate) fn read(&self, i: u32) -> T {
        // SAFETY: a masked slot of the live fake ring.
        unsafe { self.slot(i).read_volatile() }
    }
    pub(crate) fn write(&self, i: u32, v: T) {
        // SAFETY: a masked slot of the live fake ring.
        unsafe { self.slot(i).write_volatile(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lying_kernel_index_reads_as_empty_or_full() {
        let (mut r, base) = Ring::<u64>::fake(8);
        let k = KernelSide::<u64>::new(base, 8);
        // Consumer side: the kernel claims 9 entries in an 8-entry ring.
        k.set_prod(9);
        assert_eq!(r.peek(32), None);
        k.set_prod(3);
        k.write(0, 10);
        k.write(1, 11);
        k.write(2, 12);
        assert_eq!(r.peek(32), Some(3));
        assert_eq!(
            (r.read(0), r.read(2), r.read(8)),
            (10, 12, 10),
            "indices are masked"
        );
        r.release(3);
        assert_eq!(k.cons(), 3);
        // Producer side on another ring: the kernel's consumer runs ahead of our producer.
        let (mut p, pbase) = Ring::<u64>::fake(8);
        let kp = KernelSide::<u64>::new(pbase, 8);
        assert_eq!(p.free(32), Some(8));
        p.write(0, 1);
        p.submit(1);
        assert_eq!(kp.prod(), 1);
        kp.set_cons(5);
        assert_eq!(p.free(32), None, "consumed more than produced");
        assert_eq!(p.outstanding(), 0);
        kp.set_cons(1);
        assert_eq!(p.free(32), Some(8));
        kp.set_flags(crate::sys::XDP_RING_NEED_WAKEUP);
        assert!(p.needs_wakeup());
    }

    #[test]
    fn filled_and_free_across_wraparound() {
        assert_eq!(filled(5, 5, 8), Some(0));
        assert_eq!(filled(13, 5, 8), Some(8));
        assert_eq!(
            filled(3, u32::MAX - 1, 8),
            Some(5),
            "producer wrapped past 2^32"
        );
        assert_eq!(free_slots(3, u32::MAX - 1, 8), Some(3));
        assert_eq!(free_slots(u32::MAX, u32::MAX, 8), Some(8));
        assert_eq!(free_slots(7u32.wrapping_add(u32::MAX), 6, 8), Some(8));
    }

    #[test]
    fn hostile_indices_are_refused() {
        // A producer more than a ring ahead, and a consumer ahead of the producer.
        assert_eq!(filled(14, 5, 8), None);
        assert_eq!(filled(4, 5, 8), None, "consumer ahead of producer");
        assert_eq!(free_slots(10, 11, 8), None);
        assert_eq!(free_slots(10, 1, 8), None);
        assert_eq!(filled(u32::MAX, 0, 4096), None);
        for prod in [0u32, 1, 7, 8, 9, 1 << 31, u32::MAX] {
            for cons in [0u32, 1, 8, 1 << 31, u32::MAX] {
                if let Some(n) = filled(prod, cons, 8) {
                    assert!(n <= 8);
                    assert_eq!(cons.wrapping_add(n), prod);
                }
                if let Some(n) = free_slots(prod, cons, 8) {
                    assert!(n <= 8);
                }
            }
        }
    }
}
