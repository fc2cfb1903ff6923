//! Editing a packet: the data in place, room at either end, and chains — each like its
//! `rte_pktmbuf_*` namesake, but refused with a typed error instead of a NULL, and refused on a
//! shared mbuf.

use super::header::{MbufHeader, MAX_SEGS};
use super::segment::buf_ptr;
use super::{exclusive, Mbuf, MbufError};
use core::fmt;
use core::ptr::NonNull;

/// A refused [`Mbuf::chain`]: why, and the chain that was to be appended, handed back.
pub struct ChainError {
    /// Why.
    pub error: MbufError,
    /// The chain that was not appended.
    pub tail: Mbuf,
}

impl fmt::Debug for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainError")
            .field("error", &self.error)
            .field("tail", &self.tail)
            .finish()
    }
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl core::error::Error for ChainError {}

/// A header this handle may write: it holds the only reference (checked by the caller with
/// [`exclusive`]) and `&mut Mbuf` excludes every borrow of the handle.
///
/// # Safety
/// `seg` is a segment of a chain the caller holds exclusively (refcnt 1, `&mut` handle), and no
/// other reference to this header is used while the returned one lives.
#[inline(always)]
unsafe fn hdr_mut<'a>(seg: NonNull<MbufHeader>) -> &'a mut MbufHeader {
    // SAFETY: caller contract.
    unsafe { &mut *seg.as_ptr() }
}

/// `len` bytes of `seg`'s buffer from `off`, writable.
///
/// # Safety
/// As for [`hdr_mut`], and `off + len <= buf_len`.
#[inline(always)]
unsafe fn buf_mut<'a>(seg: NonNull<MbufHeader>, off: u16, len: u16) -> &'a mut [u8] {
    // SAFETY: the header is only read, briefly; caller contract for exclusivity.
    let p = buf_ptr(seg, unsafe { seg.as_ref() });
    // SAFETY: inside the buffer (caller), owned exclusively by this handle, disjoint from the
    // header.
    unsafe { core::slice::from_raw_parts_mut(p.add(off as usize), len as usize) }
}

impl Mbuf {
    /// The first segment's data, writable. Refused while the mbuf is shared.
    #[inline]
    pub fn data_mut(&mut self) -> Result<&mut [u8], MbufError> {
        exclusive(self.ptr)?;
        let (off, len) = (self.data_off(), self.data_len());
        // SAFETY: exclusive (checked), data_off + data_len <= buf_len.
        Ok(unsafe { buf_mut(self.ptr, off, len) })
    }

    /// Asks the CPU to start loading the cache line `n` bytes in front of the data (`n` = 0:
    /// the first data byte) into its caches, without waiting for it and without touching the
    /// mbuf (`rte_prefetch0(rte_pktmbuf_mtod_offset(m, -n))`): a driver about to read the
    /// headers a device just wrote into several buffers issues these first, so that the
    /// line transfers overlap instead of following one another. Nothing happens if `n`
    /// reaches past the start of the buffer, or on targets without a prefetch hint.
    #[inline(always)]
    pub fn prefetch_front(&self, n: u16) {
        let h = self.hdr();
        let Some(off) = h.data_off.checked_sub(n) else {
            return;
        };
        let p = buf_ptr(self.ptr, h).wrapping_add(off as usize);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it never faults and changes no memory or state the
        // program can see, whatever the address; `p` is inside this mbuf's buffer anyway.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                p.cast_const().cast(),
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }

    /// The last `n` bytes of the first segment's headroom (those just in front of the data),
    /// writable, the mbuf left as it is (`rte_pktmbuf_mtod_offset(m, -n)`): for a driver that
    /// puts a device header there and hands the device the address `n` bytes before
    /// [`data_iova`](Self::data_iova), without the stores of a [`prepend`](Self::prepend)
    /// and an [`adj`](Self::adj) back. Refused while shared or if the headroom is smaller.
    #[inline]
    pub fn front_mut(&mut self, n: u16) -> Result<&mut [u8], MbufError> {
        exclusive(self.ptr)?;
        let off = self.data_off();
        if n > off {
            return Err(MbufError::NoHeadroom {
                requested: n,
                headroom: off,
            });
        }
        // SAFETY: exclusive (checked); [off - n, off) is inside the buffer's headroom.
        Ok(unsafe { buf_mut(self.ptr, off - n, n) })
    }

    /// Grows the data by `n` bytes at the front, into the first segment's headroom; returns
    /// the new bytes (`rte_pktmbuf_prepend`).
    #[inline]
    pub fn prepend(&mut self, n: u16) -> Result<&mut [u8], MbufError> {
        exclusive(self.ptr)?;
        // SAFETY: exclusive (checked).
        let h = unsafe { hdr_mut(self.ptr) };
        if n > h.data_off {
            return Err(MbufError::NoHeadroom {
                requested: n,
                headroom: h.data_off,
            });
        }
        h.data_off -= n;
        // data_off + data_len <= buf_len still holds, so neither sum overflows.
        h.data_len += n;
        h.pkt_len += n as u32;
        let off = h.data_off;
        // SAFETY: exclusive; [off, off + n) is inside the data just grown.
        Ok(unsafe { buf_mut(self.ptr, off, n) })
    }

    /// Grows the data by `n` bytes at the end, into the last segment's tailroom; returns the
    /// new bytes (`rte_pktmbuf_append`).
    #[inline]
    pub fn append(&mut self, n: u16) -> Result<&mut [u8], MbufError> {
        let last = self.last_ptr();
        exclusive(self.ptr)?;
        if last != self.ptr {
            exclusive(last)?;
        }
        // SAFETY: exclusive (checked); the head's header is not touched while this lives.
        let lh = unsafe { hdr_mut(last) };
        let tailroom = lh.tailroom();
        if n > tailroom {
            return Err(MbufError::NoTailroom {
                requested: n,
                tailroom,
            });
        }
        let off = lh.data_off + lh.data_len;
        lh.data_len += n;
        // SAFETY: exclusive; `lh` is no longer used (the head may be the same header).
        unsafe { hdr_mut(self.ptr) }.pkt_len += n as u32;
        // SAFETY: exclusive; [off, off + n) is the tailroom just taken.
        Ok(unsafe { buf_mut(last, off, n) })
    }

    /// Removes `n` bytes from the front of the first segment (`rte_pktmbuf_adj`).
    #[inline]
    pub fn adj(&mut self, n: u16) -> Result<(), MbufError> {
        exclusive(self.ptr)?;
        // SAFETY: exclusive (checked).
        let h = unsafe { hdr_mut(self.ptr) };
        if n > h.data_len {
            return Err(MbufError::AdjTooLong {
                requested: n,
                data_len: h.data_len,
            });
        }
        h.data_len -= n;
        h.data_off += n;
        h.pkt_len -= n as u32;
        Ok(())
    }

    /// Removes `n` bytes from the end of the last segment (`rte_pktmbuf_trim`: like DPDK, it
    /// does not reach into earlier segments).
    #[inline]
    pub fn trim(&mut self, n: u16) -> Result<(), MbufError> {
        let last = self.last_ptr();
        exclusive(self.ptr)?;
        if last != self.ptr {
            exclusive(last)?;
        }
        // SAFETY: exclusive (checked); the head is not touched while this lives.
        let lh = unsafe { hdr_mut(last) };
        if n > lh.data_len {
            return Err(MbufError::TrimTooLong {
                requested: n,
                data_len: lh.data_len,
            });
        }
        lh.data_len -= n;
        // SAFETY: exclusive; `lh` is no longer used.
        unsafe { hdr_mut(self.ptr) }.pkt_len -= n as u32;
        Ok(())
    }

    /// Appends the chain `tail` after this one's last segment (`rte_pktmbuf_chain`): `nb_segs`
    /// and `pkt_len` grow by the tail's. Refused (and `tail` handed back) if either chain is
    /// shared or the total would exceed 65535 segments.
    pub fn chain(&mut self, tail: Mbuf) -> Result<(), ChainError> {
        let last = self.last_ptr();
        let check = || {
            exclusive(self.ptr)?;
            exclusive(last)?;
            exclusive(tail.ptr)?;
            let head_segs = self.nb_segs();
            let tail_segs = tail.nb_segs();
            if head_segs as u32 + tail_segs as u32 > MAX_SEGS as u32 {
                return Err(MbufError::TooManySegments {
                    head: head_segs,
                    tail: tail_segs,
                });
            }
            Ok(())
        };
        if let Err(error) = check() {
            return Err(ChainError { error, tail });
        }
        let t = tail.into_raw();
        // SAFETY: `t` came from a handle now consumed, which held it exclusively.
        let th = unsafe { hdr_mut(t) };
        let (tail_segs, tail_len) = (th.nb_segs, th.pkt_len);
        // pkt_len is only meaningful in a head.
        th.pkt_len = th.data_len as u32;
        // SAFETY: exclusive (checked); no other header reference is live.
        unsafe { hdr_mut(last) }.next = Some(t);
        // SAFETY: as above.
        let h = unsafe { hdr_mut(self.ptr) };
        h.nb_segs += tail_segs;
        // At most 65535 segments of at most 65535 bytes: below 2^32.
        h.pkt_len += tail_len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{filled, pool_of};
    use crate::mbuf::{MbufError, PktMbufPool, PktMbufPoolConfig};
    use crate::os::test_dma::TestDma;
    use std::vec::Vec;

    #[test]
    fn prepend_append_adj_trim_and_their_limits() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 4);
        let mut m = p.alloc().unwrap();
        assert_eq!((m.headroom(), m.tailroom(), m.data_len()), (128, 2048, 0));
        m.append(10).unwrap().copy_from_slice(&[1; 10]);
        m.prepend(4).unwrap().copy_from_slice(&[2; 4]);
        assert_eq!(m.data(), &[2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!((m.pkt_len(), m.headroom(), m.tailroom()), (14, 124, 2038));
        assert_eq!(
            m.prepend(125).unwrap_err(),
            MbufError::NoHeadroom {
                requested: 125,
                headroom: 124
            }
        );
        assert_eq!(
            m.append(2039).unwrap_err(),
            MbufError::NoTailroom {
                requested: 2039,
                tailroom: 2038
            }
        );
        assert_eq!(
            m.adj(15).unwrap_err(),
            MbufError::AdjTooLong {
                requested: 15,
                data_len: 14
            }
        );
        assert_eq!(
            m.trim(15).unwrap_err(),
            MbufError::TrimTooLong {
                requested: 15,
                data_len: 14
            }
        );
        assert_eq!(m.pkt_len(), 14, "refused edits change nothing");
        m.adj(4).unwrap();
        assert_eq!((m.data(), m.headroom()), (&[1u8; 10][..], 128));
        m.trim(3).unwrap();
        assert_eq!((m.data_len(), m.pkt_len(), m.tailroom()), (7, 7, 2041));
        // Exactly the room there is works.
        m.prepend(128).unwrap();
        m.append(2041).unwrap();
        assert_eq!((m.headroom(), m.tailroom(), m.data_len()), (0, 0, 2176));
        m.adj(2176).unwrap();
        assert_eq!((m.data_len(), m.pkt_len()), (0, 0));
        m.data_mut().unwrap();
        drop(m);
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn front_mut_writes_before_the_data_and_leaves_the_mbuf_as_it_is() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 4);
        let mut m = p.alloc().unwrap();
        m.append(6).unwrap().copy_from_slice(&[1; 6]);
        m.front_mut(4).unwrap().copy_from_slice(&[2; 4]);
        assert_eq!(
            (m.data(), m.headroom(), m.pkt_len()),
            (&[1u8; 6][..], 128, 6)
        );
        // The bytes are those a prepend of the same size then shows.
        assert_eq!(m.prepend(4).unwrap(), &[2; 4]);
        assert_eq!(
            m.front_mut(125).unwrap_err(),
            MbufError::NoHeadroom {
                requested: 125,
                headroom: 124
            }
        );
        assert_eq!(m.front_mut(124).unwrap().len(), 124, "exactly the headroom");
        // A hint: the mbuf is the same after it, whatever the offset (past the buffer's
        // start it does nothing).
        for n in [0, 12, 124, 125, u16::MAX] {
            m.prefetch_front(n);
        }
        assert_eq!((m.headroom(), m.data_len()), (124, 10));
        let shared = m.share().unwrap();
        m.prefetch_front(12);
        assert!(m.front_mut(1).is_err(), "refused while shared");
        drop(shared);
        drop(m);
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn append_and_trim_use_the_last_segment_prepend_and_adj_the_first() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 4);
        let mut m = filled(&p, 0, 2000);
        m.chain(filled(&p, 0, 100)).unwrap();
        assert_eq!(m.tailroom(), 48, "first segment");
        assert_eq!(m.last_segment().tailroom(), 1948);
        m.append(1948).unwrap();
        assert_eq!(
            m.append(1).unwrap_err(),
            MbufError::NoTailroom {
                requested: 1,
                tailroom: 0
            }
        );
        assert_eq!(m.pkt_len(), 2000 + 100 + 1948);
        assert_eq!(
            m.trim(2049).unwrap_err(),
            MbufError::TrimTooLong {
                requested: 2049,
                data_len: 2048
            }
        );
        m.trim(2048).unwrap();
        assert_eq!((m.pkt_len(), m.last_segment().data_len()), (2000, 0));
        m.prepend(28).unwrap();
        m.adj(2028).unwrap();
        assert_eq!(
            m.adj(1).unwrap_err(),
            MbufError::AdjTooLong {
                requested: 1,
                data_len: 0
            }
        );
        assert_eq!((m.pkt_len(), m.nb_segs()), (0, 2));
        drop(m);
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn chains_keep_counts_and_free_whole() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 16);
        let mut a = filled(&p, 0, 10);
        let mut b = filled(&p, 10, 20);
        b.chain(filled(&p, 30, 30)).unwrap();
        assert_eq!((b.nb_segs(), b.pkt_len()), (2, 50));
        a.chain(b).unwrap();
        assert_eq!((a.nb_segs(), a.pkt_len()), (3, 60));
        let segs: Vec<u16> = a.segments().map(|s| s.data_len()).collect();
        assert_eq!(segs, [10, 20, 30]);
        assert_eq!(p.available(), 13);
        drop(a);
        assert_eq!(p.available(), 16, "the whole chain went back");
        // Freed segments come back as single, clean mbufs.
        let mut all: Vec<_> = (0..16).map(|_| p.alloc().unwrap()).collect();
        for m in &all {
            assert_eq!((m.nb_segs(), m.pkt_len(), m.data_len()), (1, 0, 0));
            assert!(m.segments().count() == 1);
        }
        all.clear();
        assert_eq!(p.available(), 16);
    }

    #[test]
    fn chain_spanning_pools_returns_each_segment_home() {
        let os = TestDma::scattered(4096);
        let p = pool_of(&os, 4);
        let mut cfg = PktMbufPoolConfig::new("small", 4);
        cfg.data_room = 256;
        let q = PktMbufPool::create(&os, &cfg).unwrap();
        let mut m = filled(&p, 0, 100);
        m.chain(filled(&q, 100, 100)).unwrap();
        m.chain(filled(&p, 200, 50)).unwrap();
        m.chain(filled(&q, 250, 6)).unwrap();
        assert_eq!((p.available(), q.available()), (2, 2));
        let mut buf = [0u8; 256];
        m.copy_to(&mut buf).unwrap();
        assert!(buf.iter().enumerate().all(|(i, &b)| b == i as u8));
        drop(m);
        assert_eq!((p.available(), q.available()), (4, 4));
    }

    #[test]
    fn chain_refuses_too_many_segments_and_hands_the_tail_back() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 4);
        let mut a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        // Pretend `a` already has 65535 segments (only the count is consulted).
        // SAFETY: a is exclusively held; the count is restored before anything walks it.
        unsafe { (*a.ptr.as_ptr()).nb_segs = u16::MAX };
        let e = a.chain(b).unwrap_err();
        assert_eq!(
            e.error,
            MbufError::TooManySegments {
                head: u16::MAX,
                tail: 1
            }
        );
        // SAFETY: as above.
        unsafe { (*a.ptr.as_ptr()).nb_segs = 1 };
        a.chain(e.tail).unwrap();
        assert_eq!(a.nb_segs(), 2);
        drop(a);
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn shared_mbufs_refuse_every_edit() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 4);
        let mut m = filled(&p, 0, 10);
        let s = m.share().unwrap();
        let shared = MbufError::Shared { refcnt: 2 };
        assert_eq!(m.data_mut().unwrap_err(), shared);
        assert_eq!(m.prepend(1).unwrap_err(), shared);
        assert_eq!(m.append(1).unwrap_err(), shared);
        assert_eq!(m.adj(1).unwrap_err(), shared);
        assert_eq!(m.trim(1).unwrap_err(), shared);
        assert_eq!(m.meta_mut().unwrap_err(), shared);
        assert_eq!(m.priv_data_mut().unwrap_err(), shared);
        let t = p.alloc().unwrap();
        let e = m.chain(t).unwrap_err();
        assert_eq!(e.error, shared);
        let mut t = e.tail;
        // A shared chain cannot become someone's tail either.
        assert_eq!(t.chain(s).unwrap_err().error, shared);
        drop(m);
        drop(t);
        assert_eq!(p.available(), 4);
    }
}
