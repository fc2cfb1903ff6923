//! Copies to and from memory that another thread may be touching at the same time.
//!
//! The driver under test and the device models run on different threads and share DMA memory,
//! as a CPU and a device share RAM. Every access this crate makes through a safe API is built
//! from atomic loads and stores, so two safe accesses racing on the same bytes are a benign race
//! (one of the values wins), never undefined behaviour; only a driver's own `unsafe` plain
//! accesses can turn a race into one. Naturally aligned words are moved whole, so an aligned
//! index or flag written by one side is never seen torn by the other, as on real hardware.
//!
//! Ordering is that of a DMA transaction: a write publishes everything its thread did before it
//! (Release), a read sees everything published before what it read (Acquire).

use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Copies `src` to `dst` with Release semantics.
///
/// # Safety
/// `dst..dst + src.len()` must be valid for writes for the whole call, and every access to those
/// bytes that may run concurrently with it must be atomic.
pub(crate) unsafe fn copy_in(dst: *mut u8, src: &[u8]) {
    fence(Ordering::Release);
    let mut i = 0;
    while i < src.len() {
        let p = dst.wrapping_add(i);
        match src.get(i..i + 8) {
            Some(word) if p.cast::<AtomicU64>().is_aligned() => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(word);
                // SAFETY: p..p+8 lies inside dst..dst+src.len() (the slice had 8 bytes from i),
                // which the caller guarantees is valid and only accessed atomically; p is aligned
                // for AtomicU64 (checked in the guard).
                let cell = unsafe { AtomicU64::from_ptr(p.cast()) };
                cell.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
                i += 8;
            }
            _ => {
                // SAFETY: i < src.len(), so p is inside the caller's valid, atomically accessed
                // range; a u8 cell has no alignment requirement.
                let cell = unsafe { AtomicU8::from_ptr(p) };
                cell.store(src[i], Ordering::Relaxed);
                i += 1;
            }
        }
    }
}

/// Copies `src..src + dst.len()` into `dst` with Acquire semantics.
///
/// # Safety
/// `src..src + dst.len()` must be valid for reads for the whole call, and every access to those
/// bytes that may run concurrently with it must be atomic.
pub(crate) unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    let mut i = 0;
    while i < dst.len() {
        let p = src.wrapping_add(i).cast_mut();
        match dst.get_mut(i..i + 8) {
            Some(word) if p.cast::<AtomicU64>().is_aligned() => {
                // SAFETY: p..p+8 lies inside the caller's valid, atomically accessed range (dst
                // had 8 bytes from i); p is aligned for AtomicU64 (checked in the guard).
                let cell = unsafe { AtomicU64::from_ptr(p.cast()) };
                word.copy_from_slice(&cell.load(Ordering::Relaxed).to_ne_bytes());
                i += 8;
            }
            _ => {
                // SAFETY: i < dst.len(), so p is inside the caller's valid, atomically accessed
                // range; a u8 cell has no alignment requirement.
                let cell = unsafe { AtomicU8::from_ptr(p) };
                dst[i] = cell.load(Ordering::Relaxed);
                i += 1;
            }
        }
    }
    fence(Ordering::Acquire);
}

/// A little-endian integer a device reads or writes in one access.
pub(crate) trait LeWord: Copy {
    /// Size in bytes.
    const SIZE: usize;

    /// Reads the value at `p` (Acquire), in one atomic access where `p` is naturally aligned.
    ///
    /// # Safety
    /// `p..p + SIZE` must be valid for reads, and every concurrent access to it must be atomic.
    unsafe fn load_le(p: *const u8) -> Self;

    /// Writes the value at `p` (Release), in one atomic access where `p` is naturally aligned.
    ///
    /// # Safety
    /// `p..p + SIZE` must be valid for writes, and every concurrent access to it must be atomic.
    unsafe fn store_le(self, p: *mut u8);
}

macro_rules! le_word {
    ($ty:ty, $atomic:ty) => {
        impl LeWord for $ty {
            const SIZE: usize = core::mem::size_of::<$ty>();

            unsafe fn load_le(p: *const u8) -> Self {
                let p = p.cast_mut();
                if p.cast::<$atomic>().is_aligned() {
                    // SAFETY: p is aligned for the atomic type (just checked); validity and
                    // atomic-only concurrent access are this function's contract.
                    let cell = unsafe { <$atomic>::from_ptr(p.cast()) };
                    <$ty>::from_le(cell.load(Ordering::Acquire))
                } else {
                    let mut bytes = [0u8; core::mem::size_of::<$ty>()];
                    // SAFETY: the same SIZE bytes, under this function's contract.
                    unsafe { copy_out(p, &mut bytes) };
                    <$ty>::from_le_bytes(bytes)
                }
            }

            unsafe fn store_le(self, p: *mut u8) {
                if p.cast::<$atomic>().is_aligned() {
                    // SAFETY: p is aligned for the atomic type (just checked); validity and
                    // atomic-only concurrent access are this function's contract.
                    let cell = unsafe { <$atomic>::from_ptr(p.cast()) };
                    cell.store(self.to_le(), Ordering::Release);
                } else {
                    // SAFETY: the same SIZE bytes, under this function's contract.
                    unsafe { copy_in(p, &self.to_le_bytes()) };
                }
            }
        }
    };
}

le_word!(u8, AtomicU8);
le_word!(u16, AtomicU16);
le_word!(u32, AtomicU32);
le_word!(u64, AtomicU64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_alignment_and_length() {
        // Source and destination offsets 0..8 exercise the byte head, the word middle and the
        // byte tail in every combination.
        let src: Vec<u8> = (0..64u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(1))
            .collect();
        for off in 0..8 {
            for len in 0..40 {
                let mut mem = vec![0u64; 8];
                let base = mem.as_mut_ptr().cast::<u8>();
                // SAFETY: off + len <= 47 < 64, the size of `mem`, which nothing else accesses.
                unsafe { copy_in(base.add(off), &src[..len]) };
                let mut back = vec![0xEEu8; len];
                // SAFETY: as above.
                unsafe { copy_out(base.add(off), &mut back) };
                assert_eq!(back, &src[..len], "off {off} len {len}");
                // Bytes around the copy are untouched.
                // SAFETY: `mem` is 64 bytes and is not otherwise borrowed here.
                let all = unsafe { std::slice::from_raw_parts(base, 64) };
                assert!(all[..off].iter().all(|&b| b == 0), "off {off} len {len}");
                assert!(
                    all[off + len..].iter().all(|&b| b == 0),
                    "off {off} len {len}"
                );
            }
        }
    }

    // Mixes access sizes on the same bytes on purpose (a device writes a u64, a driver reads a
    // u16 of it). Miri's weak-memory store buffers cannot model that and crash; run Miri with
    // -Zmiri-disable-weak-memory-emulation.
    #[test]
    fn words_are_little_endian_aligned_or_not() {
        let mut mem = [0u64; 4];
        let base = mem.as_mut_ptr().cast::<u8>();
        for off in [0usize, 1, 2, 3, 4, 7, 8] {
            // SAFETY: off + 8 <= 16 < 32 bytes of `mem`, accessed by nothing else.
            unsafe {
                0x1122_3344_5566_7788u64.store_le(base.add(off));
                assert_eq!(*base.add(off), 0x88, "off {off}");
                assert_eq!(*base.add(off + 7), 0x11, "off {off}");
                assert_eq!(u64::load_le(base.add(off)), 0x1122_3344_5566_7788);
                assert_eq!(u32::load_le(base.add(off)), 0x5566_7788);
                assert_eq!(u16::load_le(base.add(off)), 0x7788);
                assert_eq!(u8::load_le(base.add(off)), 0x88);
                0xA1B2u16.store_le(base.add(off));
                assert_eq!(*base.add(off), 0xB2);
                assert_eq!(*base.add(off + 1), 0xA1);
                0xCAFE_F00Du32.store_le(base.add(off));
                assert_eq!(u32::load_le(base.add(off)), 0xCAFE_F00D);
                assert_eq!(*base.add(off + 3), 0xCA);
            }
        }
        assert_eq!(<u32 as LeWord>::SIZE, 4);
    }
}
