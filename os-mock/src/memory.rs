//! DMA regions from the heap: [`MockRegion`].
//!
//! A region is zeroed heap memory, rounded up to the OS's page size, mapped in the mock IOMMU at
//! IOVAs that never equal its VA. Contiguous regions get one fresh IOVA run each; in
//! [`IovaLayout::Scattered`] every page gets its own, in descending order with gaps, so a driver
//! that assumes `iova(offset) = iova(0) + offset`, or that IOVAs grow with VAs, is caught.

use crate::atomic_copy::{copy_in, copy_out};
use crate::iommu::{HeapPtr, Iommu};
use crate::os::{IovaLayout, Shared};
use rdk_core::addr::Iova;
use rdk_core::os::dma::validate_request;
use rdk_core::os::{DmaError, DmaRegion, DmaRequest};
use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// ENOMEM, reported when the heap itself refuses an allocation.
const ENOMEM: i32 = 12;

/// A CPU-side access outside a region (see [`MockRegion::read_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRegion {
    /// First byte of the access.
    pub offset: usize,
    /// Its length.
    pub len: usize,
    /// The region's length.
    pub region_len: usize,
}

impl fmt::Display for OutOfRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at offset {} do not fit in a region of {} bytes; check the offset and \
             length against DmaRegion::len",
            self.len, self.offset, self.region_len
        )
    }
}

impl std::error::Error for OutOfRegion {}

/// Where a region's bytes are in IOVA space.
#[derive(Debug)]
enum IovaPlacement {
    /// One run: byte `o` is at `base + o`.
    Contiguous(u64),
    /// Page `p` starts at `pages[p]`; byte `o` is at `pages[o / page_size] + o % page_size`.
    Pages { page_size: usize, pages: Box<[u64]> },
}

impl IovaPlacement {
    /// Reserves IOVAs for `len` bytes at `va`: one run, or (if `scattered`) one per page of
    /// `page_size`, assigned last page first so IOVAs descend as VAs ascend. The first byte's
    /// IOVA is aligned to `align`. `None` once the IOVA space is used up.
    fn assign(
        iommu: &mut Iommu,
        len: usize,
        page_size: usize,
        scattered: bool,
        align: usize,
        va: usize,
    ) -> Option<Self> {
        if !scattered {
            return iommu.assign(len, align, va).map(IovaPlacement::Contiguous);
        }
        let mut pages = vec![0u64; len / page_size];
        for (p, slot) in pages.iter_mut().enumerate().rev() {
            let align = if p == 0 { align } else { page_size };
            *slot = iommu.assign(page_size, align, va + p * page_size)?;
        }
        Some(IovaPlacement::Pages {
            page_size,
            pages: pages.into_boxed_slice(),
        })
    }

    /// The first IOVA of every mapping the region has, with its length and its offset in the
    /// region.
    fn runs(&self, region_len: usize) -> Vec<(u64, usize, usize)> {
        match self {
            IovaPlacement::Contiguous(base) => vec![(*base, region_len, 0)],
            IovaPlacement::Pages { page_size, pages } => pages
                .iter()
                .enumerate()
                .map(|(i, &iova)| (iova, *page_size, i * page_size))
                .collect(),
        }
    }
}

/// A DMA region of a [`MockOs`](crate::MockOs): zeroed heap memory with its own IOVAs.
///
/// Dropping it unmaps its IOVAs (waiting for device accesses in flight) and then frees the
/// memory; a later device access to those IOVAs faults as [`FaultKind::Freed`], and the IOVAs
/// are never handed out again.
///
/// [`FaultKind::Freed`]: crate::FaultKind::Freed
pub struct MockRegion {
    shared: Arc<Shared>,
    base: HeapPtr,
    layout: Layout,
    pages: usize,
    placement: IovaPlacement,
    name: Box<str>,
}

impl MockRegion {
    /// Serves `req` from the heap and maps it (the body of `MockOs::dma_alloc`).
    pub(crate) fn allocate(shared: &Arc<Shared>, req: &DmaRequest<'_>) -> Result<Self, DmaError> {
        validate_request(req)?;
        let cfg = shared.config;
        let ps = cfg.page_size;
        let len = req
            .len
            .checked_next_multiple_of(ps)
            .ok_or(DmaError::BadRequest {
                reason: "length overflows when rounded up to the page size; ask for less",
            })?;
        let pages = len / ps;
        let scattered = cfg.layout == IovaLayout::Scattered && pages > 1;
        if scattered && req.iova_contiguous {
            return Err(DmaError::NotContiguous {
                requested: req.len,
                longest_run: ps,
            });
        }
        // Scattered pages start page-aligned in VA too, so a page of the region is a page of
        // memory (VA and IOVA agree modulo the page size), as with real hugepages.
        let va_align = match cfg.layout {
            IovaLayout::Contiguous => req.align,
            IovaLayout::Scattered => req.align.max(ps),
        };
        let layout = Layout::from_size_align(len, va_align).map_err(|_| DmaError::BadRequest {
            reason: "length plus alignment exceed the address space; ask for less",
        })?;

        let mut iommu = shared.iommu_mut();
        iommu
            .admit(pages, cfg.page_limit)
            .map_err(|pages_short| DmaError::Exhausted {
                requested: req.len,
                page_size: ps,
                pages_short,
            })?;
        // SAFETY: the layout's size is at least one page (len >= 1 rounded up), so non-zero.
        let Some(ptr) = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }) else {
            iommu.retire(pages);
            return Err(DmaError::Os {
                op: "heap allocation for a MockOs DMA region",
                code: ENOMEM,
            });
        };
        let base = HeapPtr::new(ptr);
        let va = ptr.as_ptr() as usize;
        let placement = IovaPlacement::assign(&mut iommu, len, ps, scattered, va_align, va);
        let Some(placement) = placement else {
            iommu.retire(pages);
            // SAFETY: ptr came from alloc_zeroed with this layout and nothing else refers to it.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
            return Err(DmaError::Os {
                op: "MockOs IOVA space (2^64 bytes, never reused) is used up",
                code: ENOMEM,
            });
        };
        for (iova, run_len, offset) in placement.runs(len) {
            iommu.map(iova, run_len, base, offset);
        }
        drop(iommu);
        Ok(Self {
            shared: shared.clone(),
            base,
            layout,
            pages,
            placement,
            name: req.name.into(),
        })
    }

    /// The name the region was requested with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The page size it is rounded up to (and, if scattered, mapped in).
    pub fn page_size(&self) -> usize {
        self.shared.config.page_size
    }

    /// The IOVA of its first byte.
    pub fn iova(&self) -> Iova {
        Iova::new(match &self.placement {
            IovaPlacement::Contiguous(base) => *base,
            IovaPlacement::Pages { pages, .. } => pages[0],
        })
    }

    /// Copies `buf.len()` bytes from `offset` into `buf`, as the CPU (the driver) sees them.
    ///
    /// The access is atomic per byte or aligned word, with Acquire order, so it is safe even
    /// while a device model writes the same bytes.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), OutOfRegion> {
        self.check(offset, buf.len())?;
        // SAFETY: check() proved offset..offset+len lies in the live region; every safe access
        // to region memory in this crate is atomic.
        unsafe { copy_out(self.base.at(offset), buf) };
        Ok(())
    }

    /// Copies `data` to `offset`, as the CPU (the driver) writes it.
    ///
    /// The access is atomic per byte or aligned word, with Release order, so it is safe even
    /// while a device model accesses the same bytes.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), OutOfRegion> {
        self.check(offset, data.len())?;
        // SAFETY: as in read_at.
        unsafe { copy_in(self.base.at(offset), data) };
        Ok(())
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), OutOfRegion> {
        match offset.checked_add(len) {
            Some(end) if end <= self.layout.size() => Ok(()),
            _ => Err(OutOfRegion {
                offset,
                len,
                region_len: self.layout.size(),
            }),
        }
    }
}

// SAFETY: each promise of the trait, in turn:
// - va()..va()+len() is the heap block from alloc_zeroed(self.layout) with len() == layout.size();
//   it stays allocated until Drop and is only ever reached through raw pointers (read_at,
//   write_at and DeviceMemory copy through atomics; no reference to it is handed out). Heap
//   memory never moves. It is not mlocked, but nothing outside this process reads it: device
//   models reach it through the CPU, so paging is invisible to them.
// - It was allocated with alloc_zeroed.
// - iova_at / contiguous_from are computed from `placement`, the same table whose runs were put
//   into the IOVA map at allocation and stay there until Drop: DeviceMemory at iova_at(o)
//   reaches byte o. contiguous_from walks that table and counts a following page only if its
//   IOVA is exactly adjacent, so it never overstates.
unsafe impl DmaRegion for MockRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    fn len(&self) -> usize {
        self.layout.size()
    }

    fn iova_at(&self, offset: usize) -> Option<Iova> {
        if offset >= self.len() {
            return None;
        }
        let iova = match &self.placement {
            IovaPlacement::Contiguous(base) => base + offset as u64,
            IovaPlacement::Pages { page_size, pages } => {
                pages[offset / page_size] + (offset % page_size) as u64
            }
        };
        Some(Iova::new(iova))
    }

    fn contiguous_from(&self, offset: usize) -> usize {
        if offset >= self.len() {
            return 0;
        }
        match &self.placement {
            IovaPlacement::Contiguous(_) => self.len() - offset,
            IovaPlacement::Pages { page_size, pages } => {
                let mut page = offset / page_size;
                let mut run = page_size - offset % page_size;
                while page + 1 < pages.len() && pages[page + 1] == pages[page] + *page_size as u64 {
                    run += page_size;
                    page += 1;
                }
                run
            }
        }
    }
}

impl Drop for MockRegion {
    fn drop(&mut self) {
        // Unmap first, under the write lock: that waits for device accesses in flight (they
        // hold the read lock) and makes every later one fault, so the memory is unreachable
        // before it is freed.
        let mut iommu = self.shared.iommu_mut();
        for (iova, _, _) in self.placement.runs(self.layout.size()) {
            iommu.unmap(iova);
        }
        iommu.retire(self.pages);
        drop(iommu);
        // SAFETY: base came from alloc_zeroed(self.layout), is freed only here, and is no longer
        // reachable: its mappings are gone and the CPU-side accessors need &self.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

impl fmt::Debug for MockRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockRegion")
            .field("name", &self.name)
            .field("va", &self.va())
            .field("len", &self.len())
            .field("iova", &self.iova())
            .field("contiguous", &self.is_iova_contiguous())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FaultKind, MockOs};
    use rdk_core::addr::VirtAddr;
    use rdk_core::os::DmaAlloc;

    const PAGE: usize = 4096;

    fn os(layout: IovaLayout) -> MockOs {
        MockOs::builder()
            .page_size(PAGE)
            .iova_layout(layout)
            .build()
    }

    const LAYOUTS: [IovaLayout; 2] = [IovaLayout::Contiguous, IovaLayout::Scattered];

    #[test]
    fn iova_differs_from_va_and_between_regions() {
        for layout in LAYOUTS {
            let os = os(layout);
            let regions: Vec<MockRegion> = (0..8)
                .map(|i| os.dma_alloc(&DmaRequest::new("r", 100 + i * 3000)).unwrap())
                .collect();
            let mut starts = Vec::new();
            for r in &regions {
                for off in [0, r.len() / 2, r.len() - 1] {
                    let iova = r.iova_at(off).unwrap().get();
                    assert_ne!(iova, (r.va().get() + off) as u64, "{layout:?}");
                }
                starts.push(r.iova());
            }
            starts.sort();
            starts.dedup();
            assert_eq!(starts.len(), regions.len(), "{layout:?}: {starts:?}");
            // No IOVA of one region is an IOVA of another.
            for (i, a) in regions.iter().enumerate() {
                for b in &regions[i + 1..] {
                    for off in (0..b.len()).step_by(PAGE) {
                        let iova = b.iova_at(off).unwrap();
                        assert!(a.iova_at(0).is_some());
                        assert!(
                            (0..a.len())
                                .step_by(PAGE)
                                .all(|o| a.iova_at(o).unwrap().get() / PAGE as u64
                                    != iova.get() / PAGE as u64),
                            "{layout:?}: pages of two regions share an IOVA page"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn alignment_is_honoured_in_va_and_iova() {
        for layout in LAYOUTS {
            let os = os(layout);
            // An odd-sized region first, so the bump allocator is not aligned by accident.
            let _skew = os.dma_alloc(&DmaRequest::new("skew", 100)).unwrap();
            for shift in [0u32, 3, 6, 7, 12, 16, 21] {
                let align = 1usize << shift;
                let r = os
                    .dma_alloc(&DmaRequest::new("a", 5000).align(align))
                    .unwrap();
                assert!(r.va().is_aligned(align), "{layout:?} va align {align}");
                assert!(
                    r.iova().is_aligned(align as u64),
                    "{layout:?} iova align {align}"
                );
            }
        }
    }

    #[test]
    fn memory_is_zeroed_and_rounded_to_pages() {
        let os = os(IovaLayout::Contiguous);
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("dirty", 3 * PAGE)).unwrap();
        dev.write(r.iova(), &vec![0xA5; 3 * PAGE]).unwrap();
        drop(r);
        for req_len in [1, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE] {
            let r = os.dma_alloc(&DmaRequest::new("z", req_len)).unwrap();
            assert_eq!(r.len(), req_len.next_multiple_of(PAGE));
            let mut all = vec![0xFFu8; r.len()];
            r.read_at(0, &mut all).unwrap();
            assert!(all.iter().all(|&b| b == 0), "len {req_len}");
        }
        dev.assert_no_faults();
    }

    #[test]
    fn contiguous_translation_of_every_offset() {
        let os = os(IovaLayout::Contiguous);
        let r = os.dma_alloc(&DmaRequest::new("c", 3 * PAGE + 5)).unwrap();
        let base = r.iova();
        let len = r.len();
        assert_eq!(len, 4 * PAGE);
        for off in 0..len {
            assert_eq!(r.iova_at(off), Some(Iova::new(base.get() + off as u64)));
            assert_eq!(r.contiguous_from(off), len - off);
            assert_eq!(r.iova_of(r.va().wrapping_add(off)), r.iova_at(off));
        }
        assert!(r.is_iova_contiguous());
        assert_eq!(r.iova_at(len), None);
        assert_eq!(r.contiguous_from(len), 0);
        assert_eq!(r.iova_of(r.va().wrapping_add(len)), None);
        assert_eq!(r.iova_of(VirtAddr::new(r.va().get() - 1)), None);
    }

    #[test]
    fn scattered_translation_of_every_offset() {
        let os = os(IovaLayout::Scattered);
        let dev = os.device_memory();
        let pages = 5;
        let r = os.dma_alloc(&DmaRequest::new("s", pages * PAGE)).unwrap();
        assert!(!r.is_iova_contiguous());
        let starts: Vec<u64> = (0..pages)
            .map(|p| r.iova_at(p * PAGE).unwrap().get())
            .collect();
        for w in starts.windows(2) {
            // Descending, and never adjacent: each page is a run of its own.
            assert!(w[1] + PAGE as u64 <= w[0], "{starts:x?}");
            assert_ne!(w[1] + PAGE as u64, w[0]);
        }
        for off in 0..r.len() {
            let (p, within) = (off / PAGE, off % PAGE);
            assert_eq!(r.iova_at(off), Some(Iova::new(starts[p] + within as u64)));
            assert_eq!(r.contiguous_from(off), PAGE - within);
            assert_eq!(r.iova_of(r.va().wrapping_add(off)), r.iova_at(off));
        }
        assert_eq!(r.iova_at(r.len()), None);
        assert_eq!(r.contiguous_from(r.len()), 0);
        assert_eq!(r.iova_of(VirtAddr::new(r.va().get() - 1)), None);
        assert_eq!(r.iova_of(r.va().wrapping_add(r.len())), None);
        // The translation is the device's truth: a marker written by IOVA shows at the offset.
        for off in [0, 1, PAGE - 1, PAGE, 2 * PAGE + 17, r.len() - 1] {
            dev.write_u8(r.iova_at(off).unwrap(), 0x5A).unwrap();
            let mut b = [0u8];
            r.read_at(off, &mut b).unwrap();
            assert_eq!(b[0], 0x5A, "offset {off}");
        }
        dev.assert_no_faults();
    }

    #[test]
    fn scattered_single_page_is_contiguous() {
        let os = os(IovaLayout::Scattered);
        let r = os
            .dma_alloc(&DmaRequest::new("one", PAGE).contiguous())
            .unwrap();
        assert!(r.is_iova_contiguous());
        assert!(r.va().is_aligned(PAGE));
        assert_eq!(r.contiguous_from(10), PAGE - 10);
    }

    #[test]
    fn scattered_refuses_contiguous_requests_over_a_page() {
        let os = os(IovaLayout::Scattered);
        let err = os
            .dma_alloc(&DmaRequest::new("big", PAGE + 1).contiguous())
            .unwrap_err();
        assert_eq!(
            err,
            DmaError::NotContiguous {
                requested: PAGE + 1,
                longest_run: PAGE
            }
        );
        assert_eq!((os.live_regions(), os.pages_in_use()), (0, 0));
        // The contiguous layout serves the same request in one run.
        let c = MockOs::new()
            .dma_alloc(&DmaRequest::new("big", PAGE + 1).contiguous())
            .unwrap();
        assert!(c.is_iova_contiguous());
    }

    #[test]
    fn exhaustion_reports_pages_short() {
        let os = MockOs::builder()
            .page_size(PAGE)
            .memory_limit(10 * PAGE + 100)
            .build();
        let a = os.dma_alloc(&DmaRequest::new("a", 4 * PAGE)).unwrap();
        let err = os
            .dma_alloc(&DmaRequest::new("b", 7 * PAGE + 1))
            .unwrap_err();
        assert_eq!(
            err,
            DmaError::Exhausted {
                requested: 7 * PAGE + 1,
                page_size: PAGE,
                pages_short: 2
            }
        );
        assert_eq!((os.live_regions(), os.pages_in_use()), (1, 4));
        let b = os.dma_alloc(&DmaRequest::new("b", 6 * PAGE)).unwrap();
        assert_eq!(os.pages_in_use(), 10);
        assert!(matches!(
            os.dma_alloc(&DmaRequest::new("c", 1)),
            Err(DmaError::Exhausted { pages_short: 1, .. })
        ));
        drop(a);
        let c = os.dma_alloc(&DmaRequest::new("c", 4 * PAGE)).unwrap();
        drop((b, c));
        assert_eq!((os.live_regions(), os.pages_in_use()), (0, 0));
    }

    #[test]
    fn bad_requests_are_refused() {
        let os = MockOs::new();
        for req in [
            DmaRequest::new("zero", 0),
            DmaRequest::new("align", 64).align(48),
            DmaRequest::new("huge", usize::MAX),
            DmaRequest::new("huge-align", 4096).align(1 << 63),
        ] {
            assert!(
                matches!(os.dma_alloc(&req), Err(DmaError::BadRequest { .. })),
                "{req:?}"
            );
        }
        assert_eq!(os.live_regions(), 0);
    }

    #[test]
    fn drop_unmaps_and_frees() {
        let os = os(IovaLayout::Contiguous);
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("r", 2 * PAGE)).unwrap();
        let (first, last) = (r.iova(), r.iova_at(r.len() - 1).unwrap());
        assert!(dev.is_mapped(first, r.len()));
        assert_eq!(os.live_regions(), 1);
        os.dma_free(r);
        assert_eq!((os.live_regions(), os.pages_in_use()), (0, 0));
        assert!(!dev.is_mapped(first, 1) && !dev.is_mapped(last, 1));
        assert_eq!(dev.read_u8(last).unwrap_err().kind, FaultKind::Freed);
    }

    #[test]
    fn cpu_accessors_are_bounds_checked() {
        let os = MockOs::new();
        let r = os.dma_alloc(&DmaRequest::new("r", PAGE)).unwrap();
        r.write_at(PAGE - 2, &[1, 2]).unwrap();
        let err = r.write_at(PAGE - 1, &[1, 2]).unwrap_err();
        assert_eq!(
            err,
            OutOfRegion {
                offset: PAGE - 1,
                len: 2,
                region_len: PAGE
            }
        );
        assert!(r.read_at(usize::MAX, &mut [0u8; 2]).is_err());
        let mut b = [0u8; 3];
        r.read_at(PAGE - 3, &mut b).unwrap();
        assert_eq!(b, [0, 1, 2]);
        assert!(err
            .to_string()
            .contains("do not fit in a region of 4096 bytes"));
    }

    #[test]
    fn regions_are_send_sync_and_named() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MockRegion>();
        assert_send_sync::<MockOs>();
        assert_send_sync::<crate::DeviceMemory>();
        let os = MockOs::new();
        let r = os.dma_alloc(&DmaRequest::new("rxq0", 10)).unwrap();
        assert_eq!(r.name(), "rxq0");
        assert_eq!(r.page_size(), 4096);
        let dbg = format!("{r:?}");
        assert!(
            dbg.contains("rxq0") && dbg.contains("contiguous: true"),
            "{dbg}"
        );
    }
}
