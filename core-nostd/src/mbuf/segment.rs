//! Reading a packet: one segment at a time, or a byte range across segments.

use super::header::MbufHeader;
use super::{Mbuf, MbufError};
use crate::addr::{Iova, VirtAddr};
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// The start of a segment's buffer, derived from the segment pointer so it keeps the pool
/// region's provenance (a pointer derived from `&MbufHeader` may only reach the 128 header
/// bytes).
#[inline(always)]
pub(super) fn buf_ptr(seg: NonNull<MbufHeader>, h: &MbufHeader) -> *mut u8 {
    seg.as_ptr().cast::<u8>().with_addr(h.buf_addr.addr())
}

/// A read-only view of one segment of a held mbuf chain.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    ptr: NonNull<MbufHeader>,
    _held: PhantomData<&'a Mbuf>,
}

impl<'a> Segment<'a> {
    /// # Safety
    /// `ptr` is a segment of a chain held (one reference) for at least `'a`, and nothing writes
    /// its header or data during `'a` other than its reference count.
    #[inline(always)]
    pub(super) unsafe fn new(ptr: NonNull<MbufHeader>) -> Self {
        Self {
            ptr,
            _held: PhantomData,
        }
    }

    #[inline(always)]
    pub(super) fn hdr(self) -> &'a MbufHeader {
        // SAFETY: `new`'s contract: live and unwritten (but for the atomic refcnt) during 'a.
        unsafe { self.ptr.as_ref() }
    }

    /// The segment's data bytes.
    #[inline]
    pub fn data(self) -> &'a [u8] {
        let h = self.hdr();
        let p = buf_ptr(self.ptr, h);
        // SAFETY: data_off + data_len <= buf_len (a header invariant), so the range is inside
        // the segment's buffer, which is part of the pool region and not written during 'a.
        unsafe { core::slice::from_raw_parts(p.add(h.data_off as usize), h.data_len as usize) }
    }

    /// Bytes of data in this segment.
    #[inline(always)]
    pub fn data_len(self) -> u16 {
        self.hdr().data_len
    }

    /// Offset of the data from the buffer start.
    #[inline(always)]
    pub fn data_off(self) -> u16 {
        self.hdr().data_off
    }

    /// Bytes before the data (equal to `data_off`).
    #[inline(always)]
    pub fn headroom(self) -> u16 {
        self.hdr().data_off
    }

    /// Bytes after the data.
    #[inline(always)]
    pub fn tailroom(self) -> u16 {
        self.hdr().tailroom()
    }

    /// Bytes in the buffer.
    #[inline(always)]
    pub fn buf_len(self) -> u16 {
        self.hdr().buf_len
    }

    /// The buffer's virtual address.
    #[inline(always)]
    pub fn buf_addr(self) -> VirtAddr {
        VirtAddr::new(self.hdr().buf_addr.addr())
    }

    /// The buffer's IOVA (what a device is given).
    #[inline(always)]
    pub fn buf_iova(self) -> Iova {
        self.hdr().buf_iova
    }

    /// The IOVA of the first data byte (`buf_iova + data_off`): a TX descriptor's address.
    #[inline(always)]
    pub fn data_iova(self) -> Iova {
        let h = self.hdr();
        h.buf_iova.wrapping_add(h.data_off as u64)
    }

    /// The segment's reference count.
    #[inline(always)]
    pub fn refcnt(self) -> u16 {
        self.hdr()
            .refcnt
            .load(core::sync::atomic::Ordering::Relaxed)
    }
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("data_off", &self.data_off())
            .field("data_len", &self.data_len())
            .field("buf_len", &self.buf_len())
            .field("buf_iova", &self.buf_iova())
            .finish()
    }
}

/// The segments of a chain, first to last.
#[derive(Clone)]
pub struct Segments<'a> {
    next: Option<NonNull<MbufHeader>>,
    /// The head's `nb_segs` still to go: bounds the walk even if `next` were corrupted.
    left: u16,
    _held: PhantomData<&'a Mbuf>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    #[inline]
    fn next(&mut self) -> Option<Segment<'a>> {
        if self.left == 0 {
            return None;
        }
        let p = self.next?;
        // SAFETY: p is a segment of the chain the `&'a Mbuf` holds.
        let s = unsafe { Segment::new(p) };
        self.next = s.hdr().next;
        self.left -= 1;
        Some(s)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

impl fmt::Debug for Segments<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segments")
            .field("left", &self.left)
            .finish()
    }
}

impl Mbuf {
    /// The first segment.
    #[inline(always)]
    pub fn first_segment(&self) -> Segment<'_> {
        // SAFETY: the handle holds the chain for as long as `&self` lives, and writes need
        // `&mut self` (and refcnt 1, so no other handle exists).
        unsafe { Segment::new(self.ptr) }
    }

    /// The segments, first to last.
    #[inline]
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            next: Some(self.ptr),
            left: self.first_segment().hdr().nb_segs,
            _held: PhantomData,
        }
    }

    /// The last segment (where [`append`](Mbuf::append) and [`trim`](Mbuf::trim) work).
    #[inline]
    pub fn last_segment(&self) -> Segment<'_> {
        // SAFETY: as in first_segment, for the chain's last segment.
        unsafe { Segment::new(self.last_ptr()) }
    }

    /// Copies `buf.len()` packet bytes from `offset` on into `buf`, across segments.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MbufError> {
        let pkt_len = self.pkt_len();
        let out_of_range = MbufError::OutOfRange {
            offset,
            len: buf.len(),
            pkt_len,
        };
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > pkt_len as usize)
        {
            return Err(out_of_range);
        }
        let mut skip = offset;
        let mut out = buf;
        for seg in self.segments() {
            if out.is_empty() {
                break;
            }
            let d = seg.data();
            let Some(src) = d.get(skip..) else {
                skip -= d.len();
                continue;
            };
            let n = src.len().min(out.len());
            let (dst, rest) = out.split_at_mut(n);
            dst.copy_from_slice(&src[..n]);
            out = rest;
            skip = 0;
        }
        if out.is_empty() {
            Ok(())
        } else {
            // Only if pkt_len disagreed with the segments, which the API never lets happen.
            Err(out_of_range)
        }
    }

    /// Copies the whole packet into the front of `out`; returns its length.
    pub fn copy_to(&self, out: &mut [u8]) -> Result<usize, MbufError> {
        let (pkt_len, buf_len) = (self.pkt_len(), out.len());
        let dst = out
            .get_mut(..pkt_len as usize)
            .ok_or(MbufError::BufferTooSmall { pkt_len, buf_len })?;
        self.read(0, dst)?;
        Ok(pkt_len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{filled, pool_of};
    use crate::mbuf::MbufError;
    use crate::os::test_dma::TestDma;
    use std::vec;

    #[test]
    fn reads_cross_segment_boundaries() {
        let os = TestDma::scattered(4096);
        let p = pool_of(&os, 8);
        let mut m = filled(&p, 0, 100);
        m.chain(filled(&p, 100, 50)).unwrap();
        m.chain(filled(&p, 150, 1)).unwrap();
        m.chain(filled(&p, 151, 0)).unwrap();
        m.chain(filled(&p, 151, 30)).unwrap();
        assert_eq!((m.pkt_len(), m.nb_segs()), (181, 5));
        let lens: vec::Vec<u16> = m.segments().map(|s| s.data_len()).collect();
        assert_eq!(lens, [100, 50, 1, 0, 30]);
        let mut all = [0u8; 181];
        assert_eq!(m.copy_to(&mut all), Ok(181));
        assert!(all.iter().enumerate().all(|(i, &b)| b == i as u8));
        let mut mid = [0u8; 60];
        m.read(95, &mut mid).unwrap();
        assert!(mid.iter().enumerate().all(|(i, &b)| b == (95 + i) as u8));
        let mut tail = [0u8; 31];
        m.read(150, &mut tail).unwrap();
        assert_eq!(tail[0], 150);
        m.read(181, &mut []).unwrap();
        assert_eq!(
            m.read(170, &mut [0u8; 12]),
            Err(MbufError::OutOfRange {
                offset: 170,
                len: 12,
                pkt_len: 181
            })
        );
        assert_eq!(
            m.read(usize::MAX, &mut [0u8; 2]),
            Err(MbufError::OutOfRange {
                offset: usize::MAX,
                len: 2,
                pkt_len: 181
            })
        );
        assert_eq!(
            m.copy_to(&mut [0u8; 180]),
            Err(MbufError::BufferTooSmall {
                pkt_len: 181,
                buf_len: 180
            })
        );
        assert_eq!(m.last_segment().data_len(), 30);
        drop(m);
        assert_eq!(p.available(), 8);
    }

    #[test]
    fn segment_addresses_are_consistent() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 2);
        let mut m = p.alloc().unwrap();
        m.append(10).unwrap();
        let s = m.first_segment();
        assert_eq!(s.data_iova().get(), s.buf_iova().get() + 128);
        assert_eq!(s.headroom(), 128);
        assert_eq!(s.tailroom(), 2048 - 10);
        assert_eq!(
            s.data().as_ptr() as usize,
            s.buf_addr().get() + s.data_off() as usize
        );
    }
}
