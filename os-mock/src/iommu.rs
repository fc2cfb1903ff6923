//! The mock IOMMU: which IOVA ranges map to which heap bytes, which used to, and the IOVA
//! allocator.
//!
//! IOVAs come from a bump allocator that never reuses an address, with an unmapped guard gap
//! after every mapping. So no two mappings touch (an access that runs off the end of one always
//! lands in unmapped space), and a stale IOVA of a freed region can never reach new memory.

use crate::device_mem::FaultKind;
use std::collections::BTreeMap;
use std::ptr::NonNull;

/// The first IOVA handed out (64 GiB). Heap and mmap addresses on Linux lie many terabytes
/// higher, so a VA misused as an IOVA lands in unmapped space.
pub(crate) const IOVA_BASE: u64 = 0x10_0000_0000;

/// The address of heap memory owned by a [`MockRegion`](crate::MockRegion).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeapPtr(NonNull<u8>);

// SAFETY: a HeapPtr is only an address; holding or sending one grants no access. Every
// dereference is an `unsafe` block of its own that justifies validity (the region is alive
// because the IOMMU lock is held) and race-freedom (all accesses are atomic, see atomic_copy).
unsafe impl Send for HeapPtr {}
// SAFETY: as for Send: sharing the address is harmless; each use is justified where it happens.
unsafe impl Sync for HeapPtr {}

impl HeapPtr {
    /// Wraps the start of a heap block.
    pub(crate) fn new(ptr: NonNull<u8>) -> Self {
        Self(ptr)
    }

    /// The raw pointer.
    pub(crate) fn as_ptr(self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// The address `offset` bytes further (keeps the pointer's provenance).
    pub(crate) fn at(self, offset: usize) -> *mut u8 {
        self.0.as_ptr().wrapping_add(offset)
    }
}

/// One mapped IOVA run: `iova..end` reaches the heap bytes from `base + offset` on.
#[derive(Debug)]
struct Mapping {
    end: u64,
    base: HeapPtr,
    offset: usize,
}

/// The IOVA map, the IOVA allocator and the page accounting of one `MockOs`.
#[derive(Debug)]
pub(crate) struct Iommu {
    /// Live mappings, by first IOVA; never overlapping, never adjacent.
    mappings: BTreeMap<u64, Mapping>,
    /// Mappings that existed once (first IOVA → end), to tell a stale address from a wild one.
    freed: BTreeMap<u64, u64>,
    /// The next IOVA the bump allocator may hand out.
    next: u64,
    /// Unmapped bytes left after every mapping.
    guard: u64,
    pages_in_use: usize,
    regions: usize,
}

impl Iommu {
    /// An empty map whose mappings are separated by `guard` unmapped bytes.
    pub(crate) fn new(guard: u64) -> Self {
        Self {
            mappings: BTreeMap::new(),
            freed: BTreeMap::new(),
            next: IOVA_BASE,
            guard,
            pages_in_use: 0,
            regions: 0,
        }
    }

    /// Accounts a new region of `pages` pages, or says how many pages are missing under
    /// `limit`.
    pub(crate) fn admit(&mut self, pages: usize, limit: Option<usize>) -> Result<(), usize> {
        if let Some(limit) = limit {
            let free = limit.saturating_sub(self.pages_in_use);
            if pages > free {
                return Err(pages - free);
            }
        }
        self.pages_in_use += pages;
        self.regions += 1;
        Ok(())
    }

    /// Undoes [`admit`](Self::admit) for a region of `pages` pages.
    pub(crate) fn retire(&mut self, pages: usize) {
        self.pages_in_use -= pages;
        self.regions -= 1;
    }

    /// Pages held by live regions.
    pub(crate) fn pages_in_use(&self) -> usize {
        self.pages_in_use
    }

    /// Live regions.
    pub(crate) fn regions(&self) -> usize {
        self.regions
    }

    /// Reserves `len` bytes of IOVA space aligned to `align` (a power of two) and not starting
    /// at the number `avoid` (the VA of the same bytes: IOVA must never equal VA). `None` once
    /// the 64-bit IOVA space is used up.
    pub(crate) fn assign(&mut self, len: usize, align: usize, avoid: usize) -> Option<u64> {
        let align = u64::try_from(align).ok()?;
        let mut start = self.next.checked_next_multiple_of(align)?;
        if u64::try_from(avoid) == Ok(start) {
            start = start.checked_add(1)?.checked_next_multiple_of(align)?;
        }
        let end = start.checked_add(u64::try_from(len).ok()?)?;
        self.next = end.checked_add(self.guard)?;
        Some(start)
    }

    /// Maps `iova..iova + len` to the heap bytes from `base + offset` on.
    pub(crate) fn map(&mut self, iova: u64, len: usize, base: HeapPtr, offset: usize) {
        let end = iova + len as u64;
        self.mappings.insert(iova, Mapping { end, base, offset });
    }

    /// Removes the mapping that starts at `iova`.
    pub(crate) fn unmap(&mut self, iova: u64) {
        if let Some(m) = self.mappings.remove(&iova) {
            self.freed.insert(iova, m.end);
        }
    }

    /// Where the device access `iova..iova + len` lands, if all of it is mapped. The pointer is
    /// valid for `len` bytes for as long as the caller holds the lock around `self`. A
    /// zero-length access needs its first byte mapped.
    pub(crate) fn translate(&self, iova: u64, len: usize) -> Result<*mut u8, FaultKind> {
        let Some((&start, m)) = self
            .mappings
            .range(..=iova)
            .next_back()
            .filter(|(_, m)| iova < m.end)
        else {
            return Err(self.why_unmapped(iova));
        };
        let available = m.end - iova;
        if len as u64 > available {
            return Err(FaultKind::PastEnd {
                mapped: available as usize,
            });
        }
        Ok(m.base.at(m.offset + (iova - start) as usize))
    }

    /// Whether `iova` belonged to a mapping that has since been removed.
    fn why_unmapped(&self, iova: u64) -> FaultKind {
        match self.freed.range(..=iova).next_back() {
            Some((_, &end)) if iova < end => FaultKind::Freed,
            _ => FaultKind::Unmapped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dummy() -> HeapPtr {
        HeapPtr::new(NonNull::dangling())
    }

    #[test]
    fn assign_honours_alignment_guard_and_avoid() {
        let mut m = Iommu::new(0x1000);
        let a = m.assign(100, 64, 0).unwrap();
        assert_eq!(a, IOVA_BASE);
        let b = m.assign(100, 0x10000, 0).unwrap();
        assert_eq!(b % 0x10000, 0);
        assert!(b >= a + 100 + 0x1000, "guard gap kept: {a:#x} {b:#x}");
        // The next aligned start equals the VA to avoid: it is skipped.
        let next = (b + 100 + 0x1000).next_multiple_of(64);
        let c = m.assign(8, 64, next as usize).unwrap();
        assert_eq!(c, next + 64);
    }

    #[test]
    fn translate_classifies_every_miss() {
        let mut m = Iommu::new(0x1000);
        let a = m.assign(0x100, 64, 0).unwrap();
        m.map(a, 0x100, dummy(), 0);
        assert!(m.translate(a, 0x100).is_ok());
        assert!(m.translate(a + 0xff, 1).is_ok());
        assert_eq!(
            m.translate(a + 0xf0, 0x20),
            Err(FaultKind::PastEnd { mapped: 0x10 })
        );
        assert_eq!(
            m.translate(a + 0xf0, 0x11),
            Err(FaultKind::PastEnd { mapped: 0x10 })
        );
        assert_eq!(m.translate(a + 0x100, 1), Err(FaultKind::Unmapped));
        assert_eq!(m.translate(a - 1, 1), Err(FaultKind::Unmapped));
        assert_eq!(
            m.translate(a + 0x10, usize::MAX),
            Err(FaultKind::PastEnd { mapped: 0xf0 })
        );
        m.unmap(a);
        assert_eq!(m.translate(a + 0x10, 1), Err(FaultKind::Freed));
        assert_eq!(m.translate(a + 0x100, 1), Err(FaultKind::Unmapped));
    }

    #[test]
    fn admit_counts_pages_short() {
        let mut m = Iommu::new(0x1000);
        assert_eq!(m.admit(4, Some(10)), Ok(()));
        assert_eq!(m.admit(8, Some(10)), Err(2));
        assert_eq!(m.admit(6, Some(10)), Ok(()));
        assert_eq!((m.pages_in_use(), m.regions()), (10, 2));
        m.retire(4);
        assert_eq!((m.pages_in_use(), m.regions()), (6, 1));
        assert_eq!(m.admit(1000, None), Ok(()));
    }
}
