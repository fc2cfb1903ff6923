//! An owned, shared, prefaulted mapping of a file: the one place this crate calls `mmap`,
//! `munmap` and `mlock`.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::sys::mman::{mlock, mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};
use rdk_core::addr::VirtAddr;
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

/// `len` bytes of a file mapped read-write and `MAP_SHARED` (so another process mapping the
/// same fd sees the same memory), unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
    locked: bool,
}

// SAFETY: a Mapping is an owned range of address space; it never reads or writes the memory
// itself, so moving it to or sharing it with another thread cannot race. Access to the bytes is
// the business of whoever holds the region, through raw pointers.
unsafe impl Send for Mapping {}
// SAFETY: see Send: `&Mapping` only exposes the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, prefaulted (`MAP_POPULATE`), at an address that
    /// is a multiple of `align` (a power of two). `page_size` is the page size of the file's
    /// memory; the kernel already aligns a mapping to it, so only a larger `align` costs an
    /// address-space reservation (as DPDK's `eal_get_virtual_area` does).
    pub(crate) fn map_shared(
        fd: BorrowedFd<'_>,
        len: usize,
        align: usize,
        page_size: usize,
    ) -> Result<Self, Errno> {
        let length = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        let flags = MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE;
        if align <= page_size {
            // SAFETY: no address hint and no MAP_FIXED: the kernel picks a range that overlaps
            // no existing mapping, so no memory Rust knows about is affected.
            let ptr = unsafe { mmap(None, length, prot, flags, fd, 0) }?;
            let map = Self {
                ptr,
                len,
                locked: false,
            };
            return if map.addr().is_aligned(align) {
                Ok(map)
            } else {
                Err(Errno::EINVAL)
            };
        }
        let span = len.checked_add(align).ok_or(Errno::ENOMEM)?;
        let span_nz = NonZeroUsize::new(span).ok_or(Errno::ENOMEM)?;
        // SAFETY: as above, a fresh kernel-chosen range; PROT_NONE and MAP_NORESERVE make it a
        // pure address-space reservation.
        let base = unsafe {
            mmap_anonymous(
                None,
                span_nz,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }?;
        let head = base.as_ptr().cast::<u8>().align_offset(align);
        // SAFETY: `head < align`, so `base + head` and the `len` bytes after it lie inside the
        // reservation of `len + align` bytes.
        let start = unsafe { base.as_ptr().cast::<u8>().add(head) };
        let hint = NonZeroUsize::new(start as usize).ok_or(Errno::EINVAL)?;
        // SAFETY: MAP_FIXED replaces only pages of the reservation made above, which this
        // function owns and nothing else refers to.
        let mapped = unsafe { mmap(Some(hint), length, prot, flags | MapFlags::MAP_FIXED, fd, 0) };
        let tail = span - head - len;
        match mapped {
            Ok(ptr) => {
                // SAFETY: the head and tail are the unused ends of our own reservation.
                unsafe {
                    unmap_range(base.as_ptr().cast(), head);
                    unmap_range(start.add(len), tail);
                }
                Ok(Self {
                    ptr,
                    len,
                    locked: false,
                })
            }
            Err(e) => {
                // SAFETY: the whole reservation is ours and nothing points into it.
                unsafe { unmap_range(base.as_ptr().cast(), span) };
                Err(e)
            }
        }
    }

    /// Locks the pages in memory (`mlock`), so the kernel neither swaps them out nor leaves
    /// them unfaulted.
    pub(crate) fn lock(&mut self) -> Result<(), Errno> {
        // SAFETY: the range is exactly this mapping; mlock changes residency, not contents.
        unsafe { mlock(self.ptr, self.len) }?;
        self.locked = true;
        Ok(())
    }

    /// Whether [`lock`](Self::lock) succeeded.
    pub(crate) fn is_locked(&self) -> bool {
        self.locked
    }

    /// The first byte's address.
    pub(crate) fn addr(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.ptr.as_ptr())
    }

    /// The first byte, with the mapping's provenance.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is this mapping, created in `map_shared` and unmapped only here;
        // regions hand out raw pointers only, and the DmaRegion contract makes users stop
        // using them (and stop devices) before the region is dropped.
        unsafe { unmap_range(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Unmaps `len` bytes at `start`; nothing if `len` is zero.
///
/// # Safety
/// The range must be mapped by the caller and no live reference may point into it.
unsafe fn unmap_range(start: *mut u8, len: usize) {
    if let (Some(ptr), true) = (NonNull::new(start.cast::<c_void>()), len > 0) {
        // munmap fails only for a range that is not page-aligned, which ours always are; a
        // failure would leave the range mapped (a leak), never free memory still in use.
        // SAFETY: forwarded from this function's contract.
        let _ = unsafe { munmap(ptr, len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagemap::base_page_size;
    use std::fs::File;
    use std::os::fd::AsFd;

    fn memfd(len: u64) -> File {
        let fd = nix::sys::memfd::memfd_create(
            c"rdk-mapping-test",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .unwrap();
        let f = File::from(fd);
        f.set_len(len).unwrap();
        f
    }

    #[test]
    fn large_alignment_is_honoured() {
        let page = base_page_size();
        let f = memfd(3 * page as u64);
        for align in [page, 64 << 10, 2 << 20, 16 << 20] {
            let m = Mapping::map_shared(f.as_fd(), 3 * page, align, page).unwrap();
            assert!(
                m.addr().is_aligned(align),
                "{:?} not aligned to {align:#x}",
                m.addr()
            );
            assert_eq!(m.len(), 3 * page);
        }
    }

    #[test]
    fn shared_mapping_shows_writes_through_the_fd() {
        use std::os::unix::fs::FileExt;
        let page = base_page_size();
        let f = memfd(page as u64);
        let m = Mapping::map_shared(f.as_fd(), page, 64, page).unwrap();
        f.write_all_at(b"rdk", 100).unwrap();
        // SAFETY: offset 100..103 is inside the one-page mapping, which lives until `m` drops.
        let seen = unsafe { std::slice::from_raw_parts(m.addr().as_ptr::<u8>().add(100), 3) };
        assert_eq!(seen, b"rdk");
    }

    #[test]
    fn zero_length_is_refused() {
        let f = memfd(4096);
        let e = Mapping::map_shared(f.as_fd(), 0, 64, 4096).unwrap_err();
        assert_eq!(e, Errno::EINVAL);
    }
}
