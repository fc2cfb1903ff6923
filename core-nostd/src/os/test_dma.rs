//! A heap-backed DMA allocator for rdk-core's own unit tests (the full in-memory OS with a
//! checked device accessor is `rdk-os-mock`, which builds on this crate and so cannot serve
//! its unit tests). IOVA ≠ VA; optionally scattered pages.

extern crate alloc;
use super::dma::{validate_request, DmaAlloc, DmaError, DmaRegion, DmaRequest};
use crate::addr::Iova;
use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::cell::Cell;

/// Test allocator: `page` = 0 gives contiguous regions; otherwise pages of that size are mapped
/// at scattered IOVAs (reverse order, with gaps).
pub(crate) struct TestDma {
    pub page: usize,
    next: Cell<u64>,
}

impl TestDma {
    pub fn contiguous() -> Self {
        Self {
            page: 0,
            next: Cell::new(0x40_0000_0000),
        }
    }
    pub fn scattered(page: usize) -> Self {
        Self {
            page,
            next: Cell::new(0x40_0000_0000),
        }
    }
}

pub(crate) struct TestRegion {
    ptr: *mut u8,
    layout: Layout,
    iova: u64,
    page: usize,
}

// SAFETY: the region owns its heap block.
unsafe impl Send for TestRegion {}
// SAFETY: no interior state besides the memory, which users synchronise.
unsafe impl Sync for TestRegion {}

// SAFETY: the block is allocated zeroed with the layout, freed only on drop; translation below
// matches the documented scheme exactly.
unsafe impl DmaRegion for TestRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
    fn len(&self) -> usize {
        self.layout.size()
    }
    fn iova_at(&self, offset: usize) -> Option<Iova> {
        if offset >= self.len() {
            return None;
        }
        if self.page == 0 {
            return Some(Iova::new(self.iova + offset as u64));
        }
        // Page k lives at iova + (npages - 1 - k) * 2 * page: reversed, with a gap between.
        let npages = self.len().div_ceil(self.page);
        let k = offset / self.page;
        let base = self.iova + ((npages - 1 - k) * 2 * self.page) as u64;
        Some(Iova::new(base + (offset % self.page) as u64))
    }
    fn contiguous_from(&self, offset: usize) -> usize {
        if offset >= self.len() {
            0
        } else if self.page == 0 {
            self.len() - offset
        } else {
            (self.page - offset % self.page).min(self.len() - offset)
        }
    }
}

impl Drop for TestRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in dma_alloc with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

impl DmaAlloc for TestDma {
    type Region = TestRegion;
    fn dma_alloc(&self, req: &DmaRequest<'_>) -> Result<TestRegion, DmaError> {
        validate_request(req)?;
        let align = req.align.max(self.page.max(1));
        let layout = Layout::from_size_align(req.len, align)
            .map_err(|_| DmaError::BadRequest { reason: "layout" })?;
        // SAFETY: non-zero size checked by validate_request.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(DmaError::Exhausted {
                requested: req.len,
                page_size: 4096,
                pages_short: req.len.div_ceil(4096),
            });
        }
        let iova = self.next.get();
        self.next
            .set(iova + (req.len as u64 * 2).next_multiple_of(1 << 30) + (1 << 30));
        Ok(TestRegion {
            ptr,
            layout,
            iova,
            page: self.page,
        })
    }
}
