//! [`MemRegion`]: memory shared with the backend, and the checks a memory table must pass
//! before it is sent.

use super::error::{MemTableProblem, VhostUserError};
use super::msg::{RegionDesc, MAX_MEM_REGIONS};
use crate::dma::LinuxRegion;
use rdk_core::addr::{Iova, VirtAddr};
use rdk_core::os::DmaRegion;
use std::os::fd::{BorrowedFd, OwnedFd};

/// One region of shared memory, as `SET_MEM_TABLE` describes it.
///
/// The backend maps `size` bytes of `fd` from `mmap_offset` and then translates two kinds of
/// address through the table: descriptor addresses through `guest_phys_addr` (DPDK's "guest
/// physical"), and ring addresses (`SET_VRING_ADDR`) through `user_addr` (DPDK's "QEMU virtual
/// address"). A user-space driver gives its own virtual addresses for the rings, so
/// `user_addr` is where this process maps the region; `guest_phys_addr` is whatever the
/// driver writes into descriptors, normally the region's IOVA (= its VA with IOVA = VA).
#[derive(Clone, Copy, Debug)]
pub struct MemRegion<'a> {
    /// What descriptors use to address the region's first byte.
    pub guest_phys_addr: Iova,
    /// Bytes in the region.
    pub size: u64,
    /// Where this process has the region mapped.
    pub user_addr: VirtAddr,
    /// Where the region starts in `fd`.
    pub mmap_offset: u64,
    /// The file holding the memory (memfd or hugetlbfs file).
    pub fd: BorrowedFd<'a>,
}

impl<'a> MemRegion<'a> {
    /// The whole of a DMA region: its IOVA as the guest-physical address, its VA as the user
    /// address, its file and offset. Fails if the region is not IOVA-contiguous (allocate with
    /// IOVA = VA; vhost-user needs no physical addresses).
    ///
    /// The backend maps the file for as long as the table is in force: keep `region` alive
    /// until the frontend is reset or dropped.
    pub fn of(region: &'a LinuxRegion) -> Result<MemRegion<'a>, VhostUserError> {
        let not_contiguous = VhostUserError::MemTable {
            reason: MemTableProblem::NotContiguous,
        };
        if region.contiguous_from(0) < region.len() {
            return Err(not_contiguous);
        }
        let iova = region.iova_at(0).ok_or(not_contiguous)?;
        Ok(MemRegion {
            guest_phys_addr: iova,
            size: region.len() as u64,
            user_addr: region.va(),
            mmap_offset: region.fd_offset(),
            fd: region.fd(),
        })
    }

    /// The wire description.
    pub fn desc(&self) -> RegionDesc {
        RegionDesc {
            guest_phys_addr: self.guest_phys_addr.get(),
            memory_size: self.size,
            userspace_addr: self.user_addr.get() as u64,
            mmap_offset: self.mmap_offset,
        }
    }
}

/// A region remembered for replay after a reconnect, holding its own copy of the descriptor.
#[derive(Debug)]
pub(crate) struct SavedRegion {
    pub(crate) desc: RegionDesc,
    pub(crate) fd: OwnedFd,
}

/// Checks a table: 1..=8 regions, none empty or wrapping past 2^64 (in guest-physical, user
/// or file offsets), none overlapping another in guest-physical or user addresses.
pub(crate) fn check_table(regions: &[RegionDesc]) -> Result<(), MemTableProblem> {
    if regions.is_empty() {
        return Err(MemTableProblem::Empty);
    }
    if regions.len() > MAX_MEM_REGIONS {
        return Err(MemTableProblem::TooManyRegions {
            count: regions.len(),
        });
    }
    for (i, r) in regions.iter().enumerate() {
        if r.memory_size == 0 {
            return Err(MemTableProblem::ZeroSize { region: i });
        }
        let last = r.memory_size - 1;
        if r.guest_phys_addr.checked_add(last).is_none()
            || r.userspace_addr.checked_add(last).is_none()
            || r.mmap_offset.checked_add(last).is_none()
        {
            return Err(MemTableProblem::Overflow { region: i });
        }
    }
    // Ranges are inclusive of their last byte, so a region ending at 2^64-1 is fine.
    let overlap =
        |a0: u64, b0: u64, len_a: u64, len_b: u64| a0 <= b0 + (len_b - 1) && b0 <= a0 + (len_a - 1);
    for (i, a) in regions.iter().enumerate() {
        for (j, b) in regions.iter().enumerate().skip(i + 1) {
            if overlap(
                a.guest_phys_addr,
                b.guest_phys_addr,
                a.memory_size,
                b.memory_size,
            ) || overlap(
                a.userspace_addr,
                b.userspace_addr,
                a.memory_size,
                b.memory_size,
            ) {
                return Err(MemTableProblem::Overlap { a: i, b: j });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(gpa: u64, size: u64, ua: u64) -> RegionDesc {
        RegionDesc {
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: ua,
            mmap_offset: 0,
        }
    }

    #[test]
    fn tables_are_checked_before_sending() {
        assert_eq!(check_table(&[]), Err(MemTableProblem::Empty));
        assert_eq!(check_table(&[r(0, 4096, 0x1000)]), Ok(()));
        assert_eq!(
            check_table(&[r(0, 4096, 0x1000), r(4096, 4096, 0x2000)]),
            Ok(()),
            "adjacent is not overlapping"
        );
        assert_eq!(
            check_table(&[r(0, 4096, 0x1000), r(4095, 4096, 0x9000)]),
            Err(MemTableProblem::Overlap { a: 0, b: 1 })
        );
        assert_eq!(
            check_table(&[r(0, 4096, 0x1000), r(8192, 4096, 0x1fff)]),
            Err(MemTableProblem::Overlap { a: 0, b: 1 }),
            "user addresses overlap"
        );
        assert_eq!(
            check_table(&[r(0, 0, 0)]),
            Err(MemTableProblem::ZeroSize { region: 0 })
        );
        assert_eq!(
            check_table(&[r(u64::MAX, 1, 0)]),
            Ok(()),
            "last byte of the space"
        );
        assert_eq!(
            check_table(&[r(u64::MAX, 2, 0)]),
            Err(MemTableProblem::Overflow { region: 0 })
        );
        let mut off = r(0, 2, 0);
        off.mmap_offset = u64::MAX;
        assert_eq!(
            check_table(&[off]),
            Err(MemTableProblem::Overflow { region: 0 })
        );
        let nine: Vec<_> = (0..9).map(|i| r(i << 20, 4096, i << 20)).collect();
        assert_eq!(
            check_table(&nine),
            Err(MemTableProblem::TooManyRegions { count: 9 })
        );
        assert_eq!(check_table(&nine[..8]), Ok(()));
    }
}
