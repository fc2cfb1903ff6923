//! A compact IOVA allocator for one container.
//!
//! Why not IOVA = VA: user virtual addresses sit near 2^47, above what some IOMMUs translate
//! (virtio-iommu and many VT-d implementations offer 39 bits; the container's IOVA-range
//! capability says so), and a mapping may land anywhere, including the x86 MSI window. Handing
//! out IOVAs from the bottom of the allowed ranges works with any address width, keeps
//! buffers below 4 GiB for devices with 32-bit DMA, and makes every region IOVA-contiguous.

use std::collections::BTreeMap;

/// The x86 interrupt window (Intel VT-d §3.13): a DMA write there is an MSI, never memory.
pub(crate) const MSI_WINDOW: IovaRange = IovaRange {
    start: 0xfee0_0000,
    end: 0xfeef_ffff,
};

/// The lowest IOVA handed out. IOVA 0 and the first MiB stay unmapped, so a descriptor a
/// driver forgot to fill (address 0) faults instead of reaching memory.
pub(crate) const FIRST_IOVA: u64 = 0x10_0000;

/// An inclusive range of IOVAs, as `vfio_iova_range` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First address.
    pub start: u64,
    /// Last address (inclusive).
    pub end: u64,
}

/// Which IOVAs a container may use, and which are taken.
#[derive(Debug)]
pub(crate) struct IovaSpace {
    ranges: Vec<IovaRange>,
    /// start → length of every allocation.
    used: BTreeMap<u64, u64>,
}

impl IovaSpace {
    /// Before the IOMMU says what it allows: 39 bits (the smallest width VT-d and
    /// virtio-iommu commonly offer), without the MSI window.
    pub(crate) fn assumed() -> Self {
        Self::new(&[IovaRange {
            start: 0,
            end: (1 << 39) - 1,
        }])
    }

    /// The allowed `ranges`, minus the MSI window and the first MiB.
    pub(crate) fn new(ranges: &[IovaRange]) -> Self {
        let mut out = Vec::new();
        for r in ranges {
            let start = r.start.max(FIRST_IOVA);
            if start > r.end {
                continue;
            }
            if start <= MSI_WINDOW.end && r.end >= MSI_WINDOW.start {
                if start < MSI_WINDOW.start {
                    out.push(IovaRange {
                        start,
                        end: MSI_WINDOW.start - 1,
                    });
                }
                if r.end > MSI_WINDOW.end {
                    out.push(IovaRange {
                        start: MSI_WINDOW.end + 1,
                        end: r.end,
                    });
                }
            } else {
                out.push(IovaRange { start, end: r.end });
            }
        }
        out.sort_by_key(|r| r.start);
        Self {
            ranges: out,
            used: BTreeMap::new(),
        }
    }

    /// The usable ranges.
    pub(crate) fn ranges(&self) -> &[IovaRange] {
        &self.ranges
    }

    /// Narrows to what the IOMMU reported; fails (changing nothing) if an existing allocation
    /// falls outside, returning it.
    pub(crate) fn restrict(&mut self, reported: &[IovaRange]) -> Result<(), (u64, u64)> {
        let next = Self::new(reported);
        for (&start, &len) in &self.used {
            if !next.fits(start, len) {
                return Err((start, len));
            }
        }
        self.ranges = next.ranges;
        Ok(())
    }

    fn fits(&self, start: u64, len: u64) -> bool {
        let Some(last) = start.checked_add(len - 1) else {
            return false;
        };
        self.ranges
            .iter()
            .any(|r| r.start <= start && last <= r.end)
    }

    /// The lowest free `len` bytes aligned to `align` (a power of two), first fit.
    pub(crate) fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        if len == 0 || !align.is_power_of_two() {
            return None;
        }
        for r in &self.ranges {
            let mut cand = r.start.checked_next_multiple_of(align)?;
            // Allocations are disjoint and sorted: step over each that overlaps the candidate.
            for (&s, &l) in self.used.range(..) {
                let end = s + l;
                if end <= cand {
                    continue;
                }
                if s >= cand.checked_add(len)? {
                    break;
                }
                cand = end.checked_next_multiple_of(align)?;
            }
            if cand.checked_add(len - 1).is_some_and(|last| last <= r.end) {
                self.used.insert(cand, len);
                return Some(cand);
            }
        }
        None
    }

    /// Gives back the allocation starting at `start`; returns its length.
    pub(crate) fn free(&mut self, start: u64) -> Option<u64> {
        self.used.remove(&start)
    }

    /// Whether `iova` lies inside an allocation.
    pub(crate) fn is_allocated(&self, iova: u64) -> bool {
        self.used
            .range(..=iova)
            .next_back()
            .is_some_and(|(&s, &l)| iova < s + l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VTD: [IovaRange; 2] = [
        IovaRange {
            start: 0,
            end: 0xfedf_ffff,
        },
        IovaRange {
            start: 0xfef0_0000,
            end: 0xffff_ffff_ffff,
        },
    ];

    #[test]
    fn allocations_are_aligned_disjoint_and_skip_the_first_mib() {
        let mut s = IovaSpace::new(&VTD);
        let a = s.alloc(0x20_0000, 0x20_0000).unwrap();
        let b = s.alloc(0x1000, 0x1000).unwrap();
        let c = s.alloc(0x40_0000, 0x20_0000).unwrap();
        assert_eq!(a, 0x20_0000, "first 2 MiB-aligned slot at or above 1 MiB");
        assert_eq!(b, 0x10_0000, "first fit fills the gap below");
        assert_eq!(c, 0x40_0000);
        assert!(s.is_allocated(0x10_0fff) && !s.is_allocated(0x10_1000));
        assert_eq!(s.free(a), Some(0x20_0000));
        assert_eq!(s.alloc(0x20_0000, 0x20_0000), Some(0x20_0000), "reused");
        assert_eq!(s.alloc(0, 8), None);
        assert_eq!(s.alloc(8, 3), None);
    }

    #[test]
    fn never_hands_out_the_msi_window() {
        let mut s = IovaSpace::new(&[IovaRange {
            start: 0xfe00_0000,
            end: 0xff00_0000,
        }]);
        for _ in 0..3 {
            let a = s.alloc(0x40_0000, 0x10_0000).unwrap();
            assert!(
                a + 0x40_0000 <= MSI_WINDOW.start || a > MSI_WINDOW.end,
                "{a:#x}"
            );
        }
        assert_eq!(s.alloc(0x40_0000, 0x10_0000), None, "full");
    }

    #[test]
    fn restrict_keeps_or_refuses_existing_allocations() {
        let mut s = IovaSpace::assumed();
        let a = s.alloc(0x20_0000, 0x20_0000).unwrap();
        assert!(s.restrict(&VTD).is_ok());
        assert_eq!(s.ranges().len(), 2);
        let mut t = IovaSpace::assumed();
        t.alloc(0x20_0000, 0x20_0000).unwrap();
        let high = [IovaRange {
            start: 1 << 32,
            end: 1 << 40,
        }];
        assert_eq!(t.restrict(&high), Err((a, 0x20_0000)));
    }
}
