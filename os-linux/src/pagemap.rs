//! Virtual-to-physical translation through `/proc/self/pagemap`.
//!
//! The file holds one little 64-bit entry per base page of the process's address space, at
//! offset `(va / page_size) * 8` (kernel `Documentation/admin-guide/mm/pagemap.rst`):
//! bits 0–54 the page frame number when the page is present, bit 62 "swapped", bit 63
//! "present". Since Linux 4.0 the PFN reads as zero for a process without `CAP_SYS_ADMIN`; a
//! present page with PFN 0 is therefore reported as [`PagemapError::PfnHidden`], never as
//! physical address 0.

use crate::roots::SysRoots;
use rdk_core::addr::{PhysAddr, VirtAddr};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One pagemap entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagemapEntry(u64);

impl PagemapEntry {
    const PFN_MASK: u64 = (1 << 55) - 1;
    const SWAPPED: u64 = 1 << 62;
    const PRESENT: u64 = 1 << 63;

    /// The entry with this raw value.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether the page is in memory.
    pub const fn is_present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }

    /// Whether the page is swapped out.
    pub const fn is_swapped(self) -> bool {
        self.0 & Self::SWAPPED != 0
    }

    /// The page frame number, if the page is present (0 when the kernel hides it).
    pub const fn pfn(self) -> Option<u64> {
        if self.is_present() {
            Some(self.0 & Self::PFN_MASK)
        } else {
            None
        }
    }
}

/// Why a translation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PagemapError {
    /// The pagemap file could not be opened.
    Open {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The entry could not be read.
    Read {
        /// The address whose entry was read.
        va: VirtAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The page is not in memory (never touched, or swapped out).
    NotPresent {
        /// The address.
        va: VirtAddr,
    },
    /// The page is present but the kernel reports PFN 0: this process may not see physical
    /// addresses.
    PfnHidden {
        /// The address.
        va: VirtAddr,
    },
    /// The entry's frame number is beyond what a 64-bit physical address can hold: the file
    /// is not a pagemap, or the page size given for it is wrong.
    BadPfn {
        /// The address.
        va: VirtAddr,
        /// The frame number.
        pfn: u64,
    },
}

impl PagemapError {
    /// The errno behind the failure, where there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            PagemapError::Open { source, .. } | PagemapError::Read { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }

    /// Whether the failure is a missing privilege.
    pub fn is_permission(&self) -> bool {
        match self {
            PagemapError::PfnHidden { .. } => true,
            PagemapError::Open { source, .. } | PagemapError::Read { source, .. } => {
                source.kind() == io::ErrorKind::PermissionDenied
            }
            _ => false,
        }
    }
}

/// What to tell a user who hit [`PagemapError::PfnHidden`].
pub(crate) const PFN_HINT: &str =
    "needs CAP_SYS_ADMIN (run as root), or use IOVA mode VA with VFIO instead of physical addresses";

impl fmt::Display for PagemapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PagemapError::Open { path, source } => {
                write!(f, "cannot open {}: {source}", path.display())
            }
            PagemapError::Read { va, source } => {
                write!(f, "cannot read the pagemap entry of {va}: {source}")
            }
            PagemapError::NotPresent { va } => write!(
                f,
                "page at {va} is not in memory, so it has no physical address; touch and mlock \
                 it first"
            ),
            PagemapError::PfnHidden { va } => write!(
                f,
                "the kernel hides the physical address of {va} from this process: \
                 reading physical addresses {PFN_HINT}"
            ),
            PagemapError::BadPfn { va, pfn } => write!(
                f,
                "the pagemap entry of {va} holds frame number {pfn:#x}, beyond any physical \
                 address; is this a pagemap file with the right page size?"
            ),
        }
    }
}

impl std::error::Error for PagemapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PagemapError::Open { source, .. } | PagemapError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An open pagemap file.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
    page_shift: u32,
}

impl Pagemap {
    /// Opens `/proc/self/pagemap` under `roots`.
    pub fn open(roots: &SysRoots) -> Result<Self, PagemapError> {
        Self::open_path(&roots.pagemap(), base_page_size())
    }

    /// Opens a pagemap-format file whose entries each describe `page_size` bytes (a power of
    /// two; the base page size for a real pagemap).
    pub fn open_path(path: &Path, page_size: usize) -> Result<Self, PagemapError> {
        let file = File::open(path).map_err(|source| PagemapError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            file,
            page_shift: page_size.trailing_zeros(),
        })
    }

    /// The entry of the page holding `va`.
    pub fn entry(&self, va: VirtAddr) -> Result<PagemapEntry, PagemapError> {
        let index = (va.get() >> self.page_shift) as u64;
        let mut raw = [0u8; 8];
        self.file
            .read_exact_at(&mut raw, index * 8)
            .map_err(|source| PagemapError::Read { va, source })?;
        Ok(PagemapEntry::from_raw(u64::from_le_bytes(raw)))
    }

    /// The physical address of `va`.
    pub fn phys_addr(&self, va: VirtAddr) -> Result<PhysAddr, PagemapError> {
        let entry = self.entry(va)?;
        match entry.pfn() {
            None => Err(PagemapError::NotPresent { va }),
            Some(0) => Err(PagemapError::PfnHidden { va }),
            Some(pfn) if pfn > u64::MAX >> self.page_shift => Err(PagemapError::BadPfn { va, pfn }),
            Some(pfn) => {
                let offset = va.get() as u64 & ((1u64 << self.page_shift) - 1);
                Ok(PhysAddr::new((pfn << self.page_shift) | offset))
            }
        }
    }
}

/// The base page size (4 KiB on x86), which pagemap's entries describe.
pub fn base_page_size() -> usize {
    // sysconf(_SC_PAGESIZE) cannot fail on Linux; 4096 is the right answer where it could.
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| v.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRESENT: u64 = 1 << 63;

    /// A pagemap file with the given entries at page indices 0.. (page size 4 KiB).
    fn fake(entries: &[u64]) -> (tempfile::NamedTempFile, Pagemap) {
        let f = tempfile::NamedTempFile::new().unwrap();
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        std::fs::write(f.path(), bytes).unwrap();
        let pm = Pagemap::open_path(f.path(), 4096).unwrap();
        (f, pm)
    }

    #[test]
    fn entry_bits() {
        let e = PagemapEntry::from_raw(PRESENT | (1 << 55) | 0x1234);
        assert!(e.is_present() && !e.is_swapped());
        assert_eq!(
            e.pfn(),
            Some(0x1234),
            "bit 55 (soft-dirty) is not part of the PFN"
        );
        let e = PagemapEntry::from_raw((1 << 62) | 0x77);
        assert!(e.is_swapped());
        assert_eq!(e.pfn(), None);
    }

    #[test]
    fn translates_with_the_offset_inside_the_page() {
        let (_f, pm) = fake(&[
            0,
            PRESENT | 0x5_0000,
            PRESENT | ((1 << 52) - 1),
            PRESENT | ((1 << 55) - 1),
        ]);
        assert_eq!(
            pm.phys_addr(VirtAddr::new(0x1abc)).unwrap(),
            PhysAddr::new(0x5000_0abc)
        );
        assert_eq!(
            pm.phys_addr(VirtAddr::new(0x2000)).unwrap(),
            PhysAddr::new(((1u64 << 52) - 1) << 12),
            "the highest frame a 64-bit address can hold"
        );
        // A frame number whose address does not fit 64 bits is an error, not an address with
        // its top bits cut off.
        let e = pm.phys_addr(VirtAddr::new(0x3000)).unwrap_err();
        assert!(matches!(e, PagemapError::BadPfn { .. }), "{e:?}");
    }

    #[test]
    fn hidden_pfn_is_a_permission_error_not_address_zero() {
        let (_f, pm) = fake(&[PRESENT]);
        let e = pm.phys_addr(VirtAddr::new(0x10)).unwrap_err();
        assert!(matches!(e, PagemapError::PfnHidden { .. }), "{e:?}");
        assert!(e.is_permission());
        assert!(
            e.to_string().contains("needs CAP_SYS_ADMIN (run as root)"),
            "{e}"
        );
    }

    #[test]
    fn absent_page_and_short_file() {
        let (_f, pm) = fake(&[0]);
        let e = pm.phys_addr(VirtAddr::new(0)).unwrap_err();
        assert!(matches!(e, PagemapError::NotPresent { .. }));
        assert!(!e.is_permission());
        let e = pm.phys_addr(VirtAddr::new(0x5000)).unwrap_err();
        assert!(matches!(e, PagemapError::Read { .. }), "{e:?}");
        assert_eq!(e.raw_os_error(), None, "an early EOF has no errno");
    }

    #[test]
    fn missing_file_is_an_open_error_naming_it() {
        let e = Pagemap::open_path(Path::new("/nonexistent/pagemap"), 4096).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/pagemap"), "{e}");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn own_pagemap_says_present_for_touched_memory() {
        // Works without root: presence is always reported, only the PFN may be hidden.
        let pm = Pagemap::open(&SysRoots::host()).unwrap();
        let v = vec![1u8; 3 * base_page_size()];
        let e = pm.entry(VirtAddr::from_ptr(&v[base_page_size()])).unwrap();
        assert!(e.is_present());
    }
}
