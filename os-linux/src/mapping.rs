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
        // Another thread may take the hole (see `map_in_reservation`); then try elsewhere.
        for _ in 0..HOLE_ATTEMPTS {
            // SAFETY: as above, a fresh kernel-chosen range; PROT_NONE and MAP_NORESERVE make
            // it a pure address-space reservation.
            let base = unsafe {
                mmap_anonymous(
                    None,
                    span_nz,
                    ProtFlags::PROT_NONE,
                    MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
                )
            }?;
            // SAFETY: `base` is a reservation of `span = len + align` bytes made just above,
            // which nothing else knows of.
            match unsafe { map_in_reservation(base.as_ptr().cast(), span, align, fd, len) } {
                Err(Errno::EEXIST) => continue,
                Ok(ptr) => {
                    return Ok(Self {
                        ptr,
                        len,
                        locked: false,
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Err(Errno::EEXIST)
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

/// How often an over-aligned mapping is tried before another thread's mappings taking its
/// place every time is reported (as `EEXIST`).
const HOLE_ATTEMPTS: usize = 8;

/// Maps `len` bytes of `fd` (read-write, shared, prefaulted) at the first `align`-aligned
/// address of the reservation `base..base + span`, and gives the rest of the reservation back,
/// whether or not that works. `EEXIST`: another thread mapped something where the file was to
/// go; the caller may try again.
///
/// The file is not mapped over the reservation with `MAP_FIXED`: before Linux 6.12, an
/// `mmap` that fails after it has begun (a hugetlbfs file whose pages run out, a driver's
/// `mmap` refusing) has already unmapped what was there, and another thread's `mmap` can then
/// land in that hole; unmapping "the whole reservation" afterwards would take that thread's
/// memory away. Instead the hole is made on purpose and filled with `MAP_FIXED_NOREPLACE`, so
/// no call here replaces anything: whatever ends up in the hole besides our file is not ours
/// and is left alone, and the head and tail, which only a `MAP_FIXED` could replace, are
/// still ours to unmap.
///
/// # Safety
/// `base..base + span` must be a reservation the caller made and owns, with nothing
/// referring into it; `span >= len + align`, `align` a power of two.
unsafe fn map_in_reservation(
    base: *mut u8,
    span: usize,
    align: usize,
    fd: BorrowedFd<'_>,
    len: usize,
) -> Result<NonNull<c_void>, Errno> {
    let head = base.align_offset(align);
    // SAFETY: `head < align`, so `base + head` and the `len` bytes after it lie inside the
    // reservation of `len + align` bytes.
    let start = unsafe { base.add(head) };
    let tail = span - head - len;
    // SAFETY: the middle of our own reservation.
    unsafe { unmap_range(start, len) };
    #[cfg(test)]
    if let Some(f) = tests::IN_HOLE.with(std::cell::Cell::get) {
        f((base as usize, span, start as usize, len));
    }
    let length = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
    let hint = NonZeroUsize::new(start as usize).ok_or(Errno::EINVAL)?;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    let flags = MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE | MapFlags::MAP_FIXED_NOREPLACE;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping: it fails (EEXIST) if anything is
    // in the range, and a kernel before 4.17, which does not know the flag, takes the address
    // as a hint and maps elsewhere (handled below). No memory anyone uses is affected.
    let mapped = unsafe { mmap(Some(hint), length, prot, flags, fd, 0) };
    // SAFETY: the head and tail of our reservation: only MAP_FIXED could have replaced them,
    // and nothing here or elsewhere in this crate maps there.
    unsafe {
        unmap_range(base, head);
        unmap_range(start.add(len), tail);
    }
    match mapped {
        Ok(ptr) if ptr.as_ptr() == start.cast() => Ok(ptr),
        Ok(elsewhere) => {
            // SAFETY: a fresh mapping of ours, at an address the kernel chose instead.
            unsafe { unmap_range(elsewhere.as_ptr().cast(), len) };
            Err(Errno::EEXIST)
        }
        Err(e) => Err(e),
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
pub(super) mod tests {
    use super::*;
    use crate::pagemap::base_page_size;
    use std::cell::Cell;
    use std::fs::File;
    use std::os::fd::{AsFd, AsRawFd};

    /// (reservation, its length, hole, its length).
    type Hole = (usize, usize, usize, usize);

    thread_local! {
        /// Called by `map_in_reservation` once the hole is made, before the file is mapped
        /// into it.
        pub(super) static IN_HOLE: Cell<Option<fn(Hole)>> =
            const { Cell::new(None) };
        static SEEN: Cell<Hole> = const { Cell::new((0, 0, 0, 0)) };
    }

    fn record(seen: Hole) {
        SEEN.with(|s| s.set(seen));
    }

    /// The `(start, end, perms)` of every mapping in `/proc/self/maps` that overlaps
    /// `start..start + len`.
    fn maps_overlapping(start: usize, len: usize) -> Vec<(usize, usize, String)> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (lo, hi) = f.next()?.split_once('-')?;
                let lo = usize::from_str_radix(lo, 16).ok()?;
                let hi = usize::from_str_radix(hi, 16).ok()?;
                let perms = f.next()?.to_owned();
                (lo < start + len && start < hi).then_some((lo, hi, perms))
            })
            .collect()
    }

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

    /// Runs the test `name` alone in a child process (this binary, one test, one thread), so
    /// that no other test maps memory into a range it has just freed and checks in
    /// `/proc/self/maps`; `true` in that child.
    fn in_child(name: &str) -> bool {
        const CHILD: &str = "RDK_MAPPING_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return true;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{name} in a child process:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        false
    }

    #[test]
    fn a_failed_aligned_mapping_leaves_no_reservation_behind() {
        if !in_child("mapping::tests::a_failed_aligned_mapping_leaves_no_reservation_behind") {
            return;
        }
        let page = base_page_size();
        let f = memfd(4 * page as u64);
        // Read-only: a shared writable mapping of it is refused (EACCES).
        let ro = File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        IN_HOLE.with(|h| h.set(Some(record)));
        let e = Mapping::map_shared(ro.as_fd(), 4 * page, 2 << 20, page).unwrap_err();
        IN_HOLE.with(|h| h.set(None));
        assert_eq!(e, Errno::EACCES);
        let (base, span, _, _) = SEEN.with(Cell::get);
        assert!(span >= (2 << 20) + 4 * page, "the reservation was seen");
        assert_eq!(
            maps_overlapping(base, span),
            vec![],
            "nothing of the reservation is left"
        );
    }

    #[test]
    fn a_mapping_another_thread_put_in_the_hole_is_left_alone() {
        // Plays the other thread: maps a page of its own into the hole, which must survive.
        fn squat((_, _, hole, _): Hole) {
            let page = NonZeroUsize::new(base_page_size()).unwrap();
            // SAFETY: MAP_FIXED_NOREPLACE into the hole, which is unmapped at this point; the
            // test unmaps the page itself at the end.
            let p = unsafe {
                mmap_anonymous(
                    NonZeroUsize::new(hole),
                    page,
                    ProtFlags::PROT_READ,
                    MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED_NOREPLACE,
                )
            }
            .unwrap();
            assert_eq!(p.as_ptr() as usize, hole);
            SEEN.with(|s| s.set((hole, 0, 0, 0)));
            IN_HOLE.with(|h| h.set(None));
        }
        let page = base_page_size();
        let f = memfd(4 * page as u64);
        IN_HOLE.with(|h| h.set(Some(squat)));
        let m = Mapping::map_shared(f.as_fd(), 4 * page, 2 << 20, page).unwrap();
        let (squatter, _, _, _) = SEEN.with(Cell::get);
        assert!(m.addr().is_aligned(2 << 20));
        assert_ne!(
            m.as_ptr() as usize,
            squatter,
            "mapped elsewhere on the second try"
        );
        let left = maps_overlapping(squatter, page);
        assert!(
            left.iter().any(|(lo, hi, perms)| *lo <= squatter
                && squatter + page <= *hi
                && perms.starts_with("r--")),
            "the other thread's page is still mapped: {left:x?}"
        );
        // SAFETY: the page `squat` mapped, which nothing refers to.
        unsafe { unmap_range(squatter as *mut u8, page) };
    }
}
