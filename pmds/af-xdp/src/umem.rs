//! The UMEM: an rdk mbuf pool's object area, registered with the kernel as is.
//!
//! Every mbuf of the pool is one UMEM chunk, at the mbuf's own address, in unaligned-chunk mode
//! (`XDP_UMEM_UNALIGNED_CHUNK_FLAG`): a fill address is a byte offset into the UMEM, chosen so
//! that the kernel — which writes a frame `XDP_PACKET_HEADROOM` (256) bytes after the address
//! it was given — writes it exactly at the mbuf's usual data offset. Receiving is then handing
//! out the mbuf; no byte is copied by rdk. A transmitted mbuf of the pool goes out by address
//! the same way.
//!
//! ```text
//! object:  | mbuf header 128 | priv | headroom | data room ............ |
//! fill:                    ^ addr = buf_addr + headroom − 256 (≥ object start)
//! frame:                              ^ addr + 256 = the mbuf's data
//! chunk:                   |<------------- chunk_size ---------------->| (to the object's end)
//! ```
//!
//! Every address the kernel gives back is checked here before it becomes an mbuf: it must be
//! a chunk start rdk posted (an exact object), and offset plus length must stay in the chunk.

use crate::sys::{XDP_PACKET_HEADROOM, XDP_UMEM_MIN_CHUNK_SIZE, XSK_UNALIGNED_BUF_ADDR_MASK};
use rdk_core::mbuf::{MbufHeader, PktMbufPool, HEADER_SIZE};
use rdk_core::mempool::ObjPtr;
use std::ptr::NonNull;

/// Largest chunk the kernel accepts outside hugepage-backed UMEMs (`PAGE_SIZE`).
const MAX_CHUNK: usize = 4096;
const PAGE: usize = 4096;

/// Why a pool cannot serve as a UMEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UmemError {
    /// The pool's objects could not be located (an empty pool).
    NoObjects,
    /// Chunks would be smaller than the kernel's minimum.
    ChunkTooSmall {
        /// Bytes a chunk would have.
        chunk: usize,
    },
}

impl std::fmt::Display for UmemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UmemError::NoObjects => write!(
                f,
                "the mbuf pool has no free mbuf to locate its memory with; give the rx queue a \
                 pool with free mbufs"
            ),
            UmemError::ChunkTooSmall { chunk } => write!(
                f,
                "mbufs of this pool give UMEM chunks of {chunk} bytes, under the kernel's \
                 minimum of {XDP_UMEM_MIN_CHUNK_SIZE}; create the pool with a data room of at \
                 least 2048"
            ),
        }
    }
}

/// Division by a divisor fixed at set-up, with a multiply instead of a `div` (Lemire, Kaser
/// and Kurz, "Faster Remainder by Direct Computation", 2019): for a divisor `d` of 2 to
/// 2^32 - 1 and `m` = ceil(2^64 / d), `n / d` is the high 64 bits of `m * n` for every `n`
/// below 2^32. Larger dividends (a UMEM past 4 GiB) take a real division. The UMEM address
/// checks divide by the object stride once or twice per frame; a 32-bit `div` costs more
/// than the rest of the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DivBy {
    d: usize,
    /// ceil(2^64 / d); 0 when `d` is out of the method's range (every division is real).
    m: u64,
}

impl DivBy {
    /// Division by `d` (at least 1).
    pub(crate) fn new(d: usize) -> Self {
        assert!(d > 0, "division by zero");
        let m = if (2..=u32::MAX as usize).contains(&d) {
            u64::MAX / d as u64 + 1
        } else {
            0
        };
        Self { d, m }
    }

    /// `(n / d, n % d)`.
    #[inline(always)]
    pub(crate) fn div_rem(self, n: usize) -> (usize, usize) {
        if self.m != 0 && n <= u32::MAX as usize {
            let q = ((self.m as u128 * n as u128) >> 64) as usize;
            (q, n - q * self.d)
        } else {
            (n / self.d, n % self.d)
        }
    }
}

/// The layout of a pool as a UMEM, and the address arithmetic both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Umem {
    /// Virtual address of UMEM offset 0 (page-aligned, at or before the first object).
    pub base: usize,
    /// UMEM length in bytes (page multiple).
    pub len: usize,
    /// Offset of the first object from `base`.
    pub first: usize,
    /// Distance between objects.
    pub stride: usize,
    /// Division by `stride`.
    pub by_stride: DivBy,
    /// Number of objects.
    pub count: usize,
    /// Offset of a chunk's (fill address's) start inside its object.
    pub fill_off: usize,
    /// The kernel's chunk size: from `fill_off` to the end of the object's buffer, at most a page.
    pub chunk: usize,
    /// Offset of an object's buffer (`buf_addr`) inside it.
    pub buf_off: usize,
    /// Buffer length of every mbuf (headroom + data room).
    pub buf_len: usize,
}

impl Umem {
    /// The layout of `pool`, found by bisection with [`rdk_core::mempool::Mempool::contains`]
    /// from one of its objects (so `pool` needs one free mbuf at the time).
    pub(crate) fn of_pool(pool: &PktMbufPool) -> Result<Self, UmemError> {
        let mp = pool.mempool();
        let probe = pool.alloc().ok_or(UmemError::NoObjects)?;
        let some = probe.into_raw().as_ptr() as usize;
        // SAFETY: from into_raw just above, turned back once; dropping frees it.
        drop(unsafe {
            rdk_core::mbuf::Mbuf::from_raw(
                NonNull::new(some as *mut MbufHeader).ok_or(UmemError::NoObjects)?,
            )
        });
        let inside =
            |a: usize| NonNull::new(a as *mut u8).is_some_and(|p| mp.contains(ObjPtr::new(p)));
        let span = mp.stride() * mp.size();
        // Lowest address inside: bisect [some - span, some].
        let (mut lo, mut hi) = (some.saturating_sub(span), some);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if inside(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let start = lo;
        Self::layout(
            start,
            mp.stride(),
            mp.size(),
            pool.priv_size() as usize,
            pool.headroom() as usize,
            pool.buf_len() as usize,
        )
    }

    /// The layout for objects at `start`, `stride` apart, with the given mbuf geometry.
    pub(crate) fn layout(
        start: usize,
        stride: usize,
        count: usize,
        priv_size: usize,
        headroom: usize,
        buf_len: usize,
    ) -> Result<Self, UmemError> {
        if count == 0 {
            return Err(UmemError::NoObjects);
        }
        let base = start & !(PAGE - 1);
        let buf_off = HEADER_SIZE + priv_size;
        // The kernel writes the frame 256 bytes after the fill address; aim it at the usual
        // data offset, or as close after it as the object allows.
        let fill_off = (buf_off + headroom).saturating_sub(XDP_PACKET_HEADROOM);
        let chunk = (buf_off + buf_len - fill_off).min(MAX_CHUNK);
        if chunk < XDP_UMEM_MIN_CHUNK_SIZE {
            return Err(UmemError::ChunkTooSmall { chunk });
        }
        let end = start + stride * (count - 1) + buf_off + buf_len;
        let len = (end - base).next_multiple_of(PAGE);
        Ok(Self {
            base,
            len,
            first: start - base,
            stride,
            by_stride: DivBy::new(stride),
            count,
            fill_off,
            chunk,
            buf_off,
            buf_len,
        })
    }

    /// Largest frame a chunk receives.
    pub(crate) fn max_rx_frame(&self) -> usize {
        self.chunk - XDP_PACKET_HEADROOM
    }

    /// The object index of mbuf header `m` (an object start of the pool).
    #[inline(always)]
    pub(crate) fn index_of(&self, m: NonNull<MbufHeader>) -> Option<usize> {
        let off = (m.as_ptr() as usize).checked_sub(self.base + self.first)?;
        let (i, r) = self.by_stride.div_rem(off);
        (r == 0 && i < self.count).then_some(i)
    }

    /// The mbuf header of object `i` (`i < count`).
    #[inline(always)]
    pub(crate) fn object(&self, i: usize) -> NonNull<MbufHeader> {
        debug_assert!(i < self.count);
        let a = self.base + self.first + i * self.stride;
        // Never null: a non-zero base plus an offset inside the pool.
        NonNull::new(a as *mut MbufHeader).unwrap_or(NonNull::dangling())
    }

    /// The fill address for object `i`.
    #[inline(always)]
    pub(crate) fn fill_addr(&self, i: usize) -> u64 {
        (self.first + i * self.stride + self.fill_off) as u64
    }

    /// The object a received descriptor names and the frame's data offset in its buffer, or
    /// `None` if the address is not a chunk start or the frame leaves the chunk.
    #[inline(always)]
    pub(crate) fn rx_frame(&self, addr: u64, len: u32) -> Option<(usize, u16)> {
        let i = self.rx_object(addr)?;
        let off = (addr >> crate::sys::XSK_UNALIGNED_BUF_OFFSET_SHIFT) as usize;
        if off + len as usize > self.chunk {
            return None;
        }
        // Where the frame starts relative to the buffer.
        let data_off = (self.fill_off + off).checked_sub(self.buf_off)?;
        (data_off + len as usize <= self.buf_len).then_some((i, data_off as u16))
    }

    /// The object whose chunk starts at a received descriptor's address (the frame in it not
    /// looked at), or `None` if the address is no chunk start.
    #[inline(always)]
    pub(crate) fn rx_object(&self, addr: u64) -> Option<usize> {
        let base = (addr & XSK_UNALIGNED_BUF_ADDR_MASK) as usize;
        let rel = base.checked_sub(self.first + self.fill_off)?;
        let (i, r) = self.by_stride.div_rem(rel);
        (r == 0 && i < self.count).then_some(i)
    }

    /// The TX descriptor address of `len` bytes at virtual address `va`, if they lie in one
    /// object's buffer.
    #[inline(always)]
    pub(crate) fn tx_addr(&self, va: usize, len: usize) -> Option<(usize, u64)> {
        let rel = va.checked_sub(self.base + self.first)?;
        let (i, in_obj) = self.by_stride.div_rem(rel);
        let ok = i < self.count
            && in_obj >= self.buf_off
            && in_obj + len <= self.buf_off + self.buf_len
            && len <= self.chunk;
        ok.then_some((i, (self.first + rel) as u64))
    }

    /// The object a completion address (as we posted it in `tx_addr`) belongs to.
    #[inline(always)]
    pub(crate) fn tx_object(&self, addr: u64) -> Option<usize> {
        let a = (addr & XSK_UNALIGNED_BUF_ADDR_MASK)
            + (addr >> crate::sys::XSK_UNALIGNED_BUF_OFFSET_SHIFT);
        let rel = (a as usize).checked_sub(self.first)?;
        let (i, in_obj) = self.by_stride.div_rem(rel);
        (i < self.count && in_obj >= self.buf_off).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_by_multiply_matches_div() {
        let mut divisors = vec![1, 2, 3, 7, 64, 127, 128, 2304, 2432, 4095, 4096, 65_537];
        divisors.extend([
            (1 << 31) - 1,
            1 << 31,
            u32::MAX as usize - 1,
            u32::MAX as usize,
        ]);
        divisors.extend([u32::MAX as usize + 1, 1 << 40]);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for &d in &divisors {
            let by = DivBy::new(d);
            let mut ns = vec![0, 1, d - 1, d, d + 1, 3 * d - 1, 3 * d];
            ns.extend([
                u32::MAX as usize - 1,
                u32::MAX as usize,
                u32::MAX as usize + 1,
            ]);
            ns.extend([usize::MAX, usize::MAX - 1]);
            let last_q = u32::MAX as usize / d;
            ns.extend([last_q * d, (last_q * d).wrapping_sub(1)]);
            for _ in 0..if cfg!(miri) { 50 } else { 20_000 } {
                // xorshift: dividends everywhere in 32 bits, and some past them.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ns.push((x as u32) as usize);
                ns.push((x >> 20) as usize);
            }
            for n in ns {
                assert_eq!(by.div_rem(n), (n / d, n % d), "{n} / {d}");
            }
        }
    }

    fn default_umem() -> Umem {
        // 64-byte aligned objects of 128 + 2176 bytes starting 0x2c0 into a page.
        Umem::layout(0x10_02c0, 2304, 100, 0, 128, 2176).unwrap()
    }

    #[test]
    fn fill_address_puts_the_frame_at_the_data_offset() {
        let u = default_umem();
        assert_eq!(u.base, 0x10_0000);
        assert_eq!(u.first, 0x2c0);
        assert_eq!(
            u.fill_off, 0,
            "128 + 128 - 256: the chunk starts at the object"
        );
        assert_eq!(u.chunk, 2304);
        assert_eq!(u.max_rx_frame(), 2048);
        let a = u.fill_addr(3);
        // The kernel reports base | 256 << 48 for a frame it put at base + 256.
        let (i, data_off) = u.rx_frame(a | (256 << 48), 1514).unwrap();
        assert_eq!((i, data_off), (3, 128));
        assert_eq!(u.object(3).as_ptr() as usize, 0x10_02c0 + 3 * 2304);
        assert_eq!(u.index_of(u.object(3)), Some(3));
        assert!(u.len >= 0x2c0 + 100 * 2304 && u.len.is_multiple_of(4096));
    }

    #[test]
    fn hostile_rx_descriptors_are_refused() {
        let u = default_umem();
        let a = u.fill_addr(5);
        assert_eq!(u.rx_frame(a + 8, 60), None, "not a chunk start");
        assert_eq!(
            u.rx_frame(u.fill_addr(99) + 2304, 60),
            None,
            "past the last object"
        );
        assert_eq!(
            u.rx_frame(a | (256 << 48), 2049),
            None,
            "frame leaves the chunk"
        );
        assert_eq!(
            u.rx_frame(a | (4000 << 48), 10),
            None,
            "offset leaves the chunk"
        );
        assert_eq!(u.rx_frame(0, 60), None);
        assert_eq!(u.rx_frame(u64::MAX, u32::MAX), None);
        assert_eq!(u.rx_frame(a, 60), None, "frame over the mbuf header");
        assert!(u.rx_frame(a | (256 << 48), 2048).is_some());
    }

    #[test]
    fn tx_addresses_round_trip_and_stay_inside_a_buffer() {
        let u = default_umem();
        let obj = u.object(7).as_ptr() as usize;
        let data = obj + 128 + 128;
        let (i, addr) = u.tx_addr(data, 60).unwrap();
        assert_eq!(i, 7);
        assert_eq!(u.base + addr as usize, data);
        assert_eq!(u.tx_object(addr), Some(7));
        assert_eq!(u.tx_addr(obj + 10, 60), None, "inside the mbuf header");
        assert_eq!(u.tx_addr(data, 2100), None, "past the buffer");
        assert_eq!(
            u.tx_addr(u.base + u.first - 1, 1),
            None,
            "before the first object"
        );
        assert_eq!(u.tx_addr(obj - 1, 2), None, "across two objects");
        assert_eq!(u.tx_object(u64::MAX), None);
        assert_eq!(
            u.tx_object(u.fill_addr(0)),
            None,
            "an object's header is no TX data"
        );
    }

    #[test]
    fn small_headroom_and_private_areas() {
        let u = Umem::layout(0x20_0000, 2368, 10, 64, 64, 2112).unwrap();
        // 128 + 64 + 64 - 256 = 0: the chunk is the object.
        assert_eq!(u.fill_off, 0);
        let (_, off) = u.rx_frame(u.fill_addr(1) | (256 << 48), 100).unwrap();
        assert_eq!(off, 64);
        let u = Umem::layout(0x20_0000, 2304, 10, 0, 0, 2176).unwrap();
        let (_, off) = u.rx_frame(u.fill_addr(1) | (256 << 48), 100).unwrap();
        assert_eq!(off, 128, "no headroom asked, the kernel's 256 leave 128");
        assert!(matches!(
            Umem::layout(0x20_0000, 1024, 10, 0, 128, 896),
            Err(UmemError::ChunkTooSmall { .. })
        ));
    }
}
