//! DMA memory on Linux: hugepages from a memfd or a hugetlbfs file, or plain memory, each with
//! its IOVAs.
//!
//! What DPDK's EAL does at start-up for the whole process, this does per region and per
//! [`LinuxOs`](crate::LinuxOs) instance: create a hugetlb-backed file (`memfd_create` with
//! `MFD_HUGETLB`, as EAL's `--in-memory`, or a file in a hugetlbfs mount, as its default
//! mode), size it with `ftruncate`, map it `MAP_SHARED | MAP_POPULATE`, lock it, and in
//! [`IovaMode::Pa`] read each page's physical address from `/proc/self/pagemap`.
//!
//! The file descriptor is kept for the region's life ([`LinuxRegion::fd`]): a vhost-user
//! backend shares guest-visible memory by passing that fd to its peer.
#![allow(unsafe_code)] // `unsafe impl DmaRegion` only; mapping lives in `mapping.rs`.

use crate::hugepage::{self, HugePageSize, HugetlbfsMount};
use crate::mapping::Mapping;
use crate::pagemap::{base_page_size, Pagemap, PagemapError, PFN_HINT};
use crate::roots::SysRoots;
use nix::errno::Errno;
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use rdk_core::addr::{Iova, PhysAddr};
use rdk_core::os::{DmaError, DmaRegion, DmaRequest};
use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a device puts on the bus to reach a region's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IovaMode {
    /// IOVA = physical address, read per page from `/proc/self/pagemap` (needs root). For
    /// devices without an IOMMU, VFIO's no-IOMMU mode or UIO. A region of several hugepages is
    /// IOVA-contiguous only where the pages happen to be physically adjacent.
    Pa,
    /// IOVA = virtual address, for when VFIO maps the region into the device's IOMMU domain at
    /// its own virtual address (DPDK's `--iova-mode=va`). Always contiguous.
    Va,
}

impl fmt::Display for IovaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IovaMode::Pa => "IOVA = PA",
            IovaMode::Va => "IOVA = VA",
        })
    }
}

/// Where region memory comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An anonymous hugetlb file per region (`memfd_create(MFD_HUGETLB | MFD_HUGE_<size>)`):
    /// needs no mount, leaves nothing behind when the process dies.
    Memfd {
        /// The page size.
        page_size: HugePageSize,
    },
    /// A file per region in a hugetlbfs mount, unlinked as soon as it is open (so a crash
    /// leaks nothing), for systems that pool hugepages per mount (`size=` options).
    Hugetlbfs {
        /// The page size.
        page_size: HugePageSize,
        /// The mount to use; `None` picks the first mount with this page size.
        mount: Option<PathBuf>,
    },
    /// Ordinary 4 KiB pages from a non-hugetlb memfd, IOVA = VA: for host PMDs that do no
    /// device DMA (null, ring, TAP, AF_PACKET, vhost-user). Needs no root and no hugepages.
    Plain,
}

/// How a [`LinuxOs`](crate::LinuxOs) allocates DMA memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Where the memory comes from.
    pub backend: Backend,
    /// How IOVAs are derived; [`Backend::Plain`] needs [`IovaMode::Va`].
    pub iova_mode: IovaMode,
}

impl MemoryConfig {
    /// Hugepages from memfds.
    pub fn memfd(page_size: HugePageSize, iova_mode: IovaMode) -> Self {
        Self {
            backend: Backend::Memfd { page_size },
            iova_mode,
        }
    }

    /// Hugepages from files in the first hugetlbfs mount with this page size.
    pub fn hugetlbfs(page_size: HugePageSize, iova_mode: IovaMode) -> Self {
        Self {
            backend: Backend::Hugetlbfs {
                page_size,
                mount: None,
            },
            iova_mode,
        }
    }

    /// Plain memory, IOVA = VA.
    pub fn plain() -> Self {
        Self {
            backend: Backend::Plain,
            iova_mode: IovaMode::Va,
        }
    }
}

/// Which backend a region came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Hugepages from a memfd.
    Memfd(HugePageSize),
    /// Hugepages from an (unlinked) hugetlbfs file.
    Hugetlbfs(HugePageSize),
    /// Plain memory, not for device DMA.
    Plain,
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionKind::Memfd(size) => write!(f, "hugepage memory (memfd, {size} pages)"),
            RegionKind::Hugetlbfs(size) => write!(f, "hugepage memory (hugetlbfs, {size} pages)"),
            RegionKind::Plain => f.write_str("plain memory (no DMA)"),
        }
    }
}

/// How offsets become IOVAs.
enum Translation {
    /// IOVA = VA.
    Va,
    /// IOVA = PA, page by page.
    Pa {
        /// The physical address of each page.
        pages: Box<[PhysAddr]>,
        /// For each page, the index one past the last page of the physically contiguous run
        /// it belongs to.
        run_end: Box<[usize]>,
    },
}

/// A pinned, zeroed region of DMA memory (or of plain memory, see [`is_plain`]).
///
/// Dropping it unmaps the memory and closes its file; the pages go back to the kernel once no
/// other process maps the file either.
///
/// [`is_plain`]: LinuxRegion::is_plain
pub struct LinuxRegion {
    map: Mapping,
    file: File,
    kind: RegionKind,
    iova: Translation,
    page_shift: u32,
    name: String,
}

impl LinuxRegion {
    /// The file holding the memory, for sharing it with another process (vhost-user passes it
    /// over a Unix socket). The region starts at [`fd_offset`](Self::fd_offset) in it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Where the region starts in [`fd`](Self::fd): 0, as every region has a file of its own.
    pub fn fd_offset(&self) -> u64 {
        0
    }

    /// The backing page size in bytes.
    pub fn page_size(&self) -> usize {
        1 << self.page_shift
    }

    /// Which backend the region came from.
    pub fn kind(&self) -> RegionKind {
        self.kind
    }

    /// Whether this is plain memory: its IOVA is its VA, and no device may be pointed at it.
    pub fn is_plain(&self) -> bool {
        self.kind == RegionKind::Plain
    }

    /// How IOVAs are derived.
    pub fn iova_mode(&self) -> IovaMode {
        match self.iova {
            Translation::Va => IovaMode::Va,
            Translation::Pa { .. } => IovaMode::Pa,
        }
    }

    /// Whether the pages are `mlock`ed. Always true for hugepages; for plain memory it is
    /// best effort (an unprivileged process may lock only `RLIMIT_MEMLOCK` bytes).
    pub fn is_locked(&self) -> bool {
        self.map.is_locked()
    }

    /// The name given at allocation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many IOVA-contiguous runs the region consists of (1 for IOVA = VA).
    pub fn contiguous_runs(&self) -> usize {
        match &self.iova {
            Translation::Va => 1,
            Translation::Pa { run_end, .. } => run_starts(run_end).count(),
        }
    }
}

// SAFETY: the promises of DmaRegion, one by one:
// - `va()..va()+len()` is `self.map`, a MAP_SHARED read-write mapping this region owns and
//   unmaps only on drop; the region hands out no Rust references into it, only addresses.
//   It is pinned: `map_shared` prefaults it and `alloc` mlocks it (hugetlb pages are never
//   swapped in any case). Plain memory may stay unlocked (see `is_locked`), but it is never
//   given to a device (IOVA = VA, no IOMMU mapping), so swapping it is invisible to its users.
// - it was zeroed: every region maps a file created for it (memfd or O_EXCL hugetlbfs file)
//   and sized with ftruncate, and the kernel zero-fills file pages on first fault.
// - `iova_at` and `contiguous_from` follow `self.iova`: in VA mode the identity, in PA mode the
//   per-page physical addresses read from pagemap after locking, with runs computed from
//   exact adjacency (`run_ends`), so a run is never overstated. A hugepage is physically
//   contiguous inside itself (the kernel allocates it as one compound page).
unsafe impl DmaRegion for LinuxRegion {
    #[inline]
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    #[inline]
    fn len(&self) -> usize {
        self.map.len()
    }

    #[inline]
    fn iova_at(&self, offset: usize) -> Option<Iova> {
        if offset >= self.map.len() {
            return None;
        }
        match &self.iova {
            Translation::Va => Some(Iova::from_virt_identity(
                self.map.addr().wrapping_add(offset),
            )),
            Translation::Pa { pages, .. } => {
                let page = pages.get(offset >> self.page_shift)?;
                let within = offset & (self.page_size() - 1);
                Some(Iova::from_phys_identity(page.wrapping_add(within as u64)))
            }
        }
    }

    #[inline]
    fn contiguous_from(&self, offset: usize) -> usize {
        if offset >= self.map.len() {
            return 0;
        }
        match &self.iova {
            Translation::Va => self.map.len() - offset,
            Translation::Pa { run_end, .. } => run_end
                .get(offset >> self.page_shift)
                .map_or(0, |&end| (end << self.page_shift) - offset),
        }
    }
}

impl fmt::Display for LinuxRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {}, {} bytes at {}, {}",
            self.name,
            self.kind,
            self.len(),
            self.va(),
            self.iova_mode()
        )?;
        if let Translation::Pa { .. } = self.iova {
            write!(f, " in {} contiguous run(s)", self.contiguous_runs())?;
        }
        Ok(())
    }
}

impl fmt::Debug for LinuxRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinuxRegion")
            .field("name", &self.name)
            .field("memory", &format_args!("{}", self.kind))
            .field("va", &self.va())
            .field("len", &self.len())
            .field("iova_mode", &self.iova_mode())
            .field("contiguous_runs", &self.contiguous_runs())
            .field("locked", &self.is_locked())
            .finish()
    }
}

/// Where pages for one allocation come from, resolved from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Memfd(HugePageSize),
    Hugetlbfs(HugePageSize, PathBuf),
    Plain,
}

/// The allocation machinery of one [`LinuxOs`](crate::LinuxOs).
#[derive(Debug)]
pub(crate) struct Allocator {
    source: Source,
    iova_mode: IovaMode,
    roots: SysRoots,
    /// Hugepage sizes the kernel supports (for per-allocation page sizes).
    supported: Vec<HugePageSize>,
    /// Hugetlbfs mounts seen at construction.
    mounts: Vec<HugetlbfsMount>,
    /// Numbers hugetlbfs file names; per instance, retried past names in use.
    next_file: AtomicU64,
}

impl Allocator {
    pub(crate) fn new(
        source: Source,
        iova_mode: IovaMode,
        roots: SysRoots,
        supported: Vec<HugePageSize>,
        mounts: Vec<HugetlbfsMount>,
    ) -> Self {
        Self {
            source,
            iova_mode,
            roots,
            supported,
            mounts,
            next_file: AtomicU64::new(0),
        }
    }

    pub(crate) fn source(&self) -> &Source {
        &self.source
    }

    pub(crate) fn iova_mode(&self) -> IovaMode {
        self.iova_mode
    }

    /// Allocates a region for `req` (already validated), with pages of `page_size` if given
    /// instead of the configured size.
    pub(crate) fn alloc(
        &self,
        req: &DmaRequest<'_>,
        page_size: Option<HugePageSize>,
    ) -> Result<LinuxRegion, DmaError> {
        let source = match page_size {
            None => self.source.clone(),
            Some(size) => self.source_for(size)?,
        };
        let page = match source {
            Source::Memfd(size) | Source::Hugetlbfs(size, _) => size.bytes(),
            Source::Plain => base_page_size(),
        };
        if self.iova_mode == IovaMode::Pa && req.align > page {
            return Err(DmaError::BadRequest {
                reason: "alignment above the page size cannot be guaranteed for physical \
                         addresses; use larger pages or IOVA mode VA",
            });
        }
        let pages = req.len.div_ceil(page);
        let len = pages.checked_mul(page).ok_or(DmaError::BadRequest {
            reason: "length too large for the address space",
        })?;
        let (file, kind) = match &source {
            Source::Memfd(size) => (hugetlb_memfd(req.name, *size)?, RegionKind::Memfd(*size)),
            Source::Hugetlbfs(size, dir) => {
                (self.hugetlbfs_file(dir)?, RegionKind::Hugetlbfs(*size))
            }
            Source::Plain => (plain_memfd(req.name)?, RegionKind::Plain),
        };
        file.set_len(len as u64)
            .map_err(|e| io_to_dma("ftruncate the memory file", &e))?;
        let mut map = Mapping::map_shared(file.as_fd(), len, req.align, page)
            .map_err(|e| self.map_error(e, req.len, page, pages as u64, kind))?;
        match (kind, map.lock()) {
            (_, Ok(())) | (RegionKind::Plain, Err(_)) => {}
            (_, Err(e)) => {
                return Err(errno_to_dma(
                    "mlock hugepage memory",
                    e,
                    "raise RLIMIT_MEMLOCK (ulimit -l) or run as root (CAP_IPC_LOCK)",
                ))
            }
        }
        let iova = match (kind, self.iova_mode) {
            (RegionKind::Plain, _) | (_, IovaMode::Va) => Translation::Va,
            (_, IovaMode::Pa) => {
                let pages = phys_pages(&self.roots, &map, page)?;
                let run_end = run_ends(&pages, page as u64);
                Translation::Pa { pages, run_end }
            }
        };
        let region = LinuxRegion {
            map,
            file,
            kind,
            iova,
            page_shift: page.trailing_zeros(),
            name: req.name.to_owned(),
        };
        if req.iova_contiguous && region.contiguous_from(0) < req.len {
            return Err(DmaError::NotContiguous {
                requested: req.len,
                longest_run: longest_run(&region),
            });
        }
        Ok(region)
    }

    /// The source for pages of `size` instead of the configured size.
    fn source_for(&self, size: HugePageSize) -> Result<Source, DmaError> {
        match &self.source {
            Source::Plain => Err(DmaError::BadRequest {
                reason: "plain memory has base pages only; configure a hugepage backend to \
                         choose a page size",
            }),
            _ if !self.supported.contains(&size) => Err(DmaError::BadRequest {
                reason: "the kernel offers no hugepages of the requested size",
            }),
            Source::Memfd(_) => Ok(Source::Memfd(size)),
            Source::Hugetlbfs(own, dir) if *own == size => Ok(Source::Hugetlbfs(size, dir.clone())),
            Source::Hugetlbfs(..) => self
                .mounts
                .iter()
                .find(|m| m.page_size == size.bytes() as u64)
                .map(|m| Source::Hugetlbfs(size, m.path.clone()))
                .ok_or(DmaError::BadRequest {
                    reason: "no hugetlbfs is mounted with the requested page size; mount one \
                             (mount -t hugetlbfs -o pagesize=1G nodev DIR)",
                }),
        }
    }

    /// Creates a fresh file in a hugetlbfs mount and unlinks it at once: the open fd keeps the
    /// memory, and a crash cannot leave hugepages held by a forgotten file.
    fn hugetlbfs_file(&self, dir: &Path) -> Result<File, DmaError> {
        const ATTEMPTS: u32 = 64;
        for _ in 0..ATTEMPTS {
            let n = self.next_file.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("rdk-{}-{n}", std::process::id()));
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match opened {
                Ok(file) => {
                    std::fs::remove_file(&path)
                        .map_err(|e| io_to_dma("unlink the hugetlbfs file", &e))?;
                    return Ok(file);
                }
                // Another instance in this process, or a dead process with our pid, has it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_to_dma("create a file in the hugetlbfs mount", &e)),
            }
        }
        Err(DmaError::Os {
            op: "find an unused file name in the hugetlbfs mount",
            code: libc::EEXIST,
        })
    }

    /// Turns a failed mmap into an error saying how many pages are missing.
    fn map_error(
        &self,
        e: Errno,
        requested: usize,
        page: usize,
        pages: u64,
        kind: RegionKind,
    ) -> DmaError {
        const OP: &str = "mmap the memory file";
        if e == Errno::EEXIST {
            // From Mapping::map_shared: other threads' mappings took its place every time.
            return errno_to_dma(
                OP,
                e,
                "other threads kept mapping memory where the region was to go; try again",
            );
        }
        if e != Errno::ENOMEM {
            return errno_to_dma(OP, e, "run as root");
        }
        let available = match kind {
            RegionKind::Memfd(size) | RegionKind::Hugetlbfs(size) => {
                hugepage::counts(&self.roots, size.bytes() as u64)
                    .ok()
                    .map(|c| c.available())
            }
            RegionKind::Plain => hugepage::mem_available(&self.roots)
                .ok()
                .map(|bytes| bytes / page as u64),
        };
        match available {
            Some(available) => exhaustion(requested, page, pages, available),
            None => errno_to_dma(OP, e, ""),
        }
    }
}

/// The error for a mapping refused for lack of memory: `pages` were needed and `available` are
/// left.
pub(crate) fn exhaustion(requested: usize, page: usize, pages: u64, available: u64) -> DmaError {
    if pages > available {
        DmaError::Exhausted {
            requested,
            page_size: page,
            pages_short: usize::try_from(pages - available).unwrap_or(usize::MAX),
        }
    } else {
        // The pool has the pages but the kernel still said no.
        DmaError::Os {
            op: "mmap hugepages (enough are free: check the hugetlbfs size= limit, the hugetlb \
                 cgroup limit and the NUMA memory policy)",
            code: libc::ENOMEM,
        }
    }
}

/// A hugetlb memfd of `size` pages.
fn hugetlb_memfd(name: &str, size: HugePageSize) -> Result<File, DmaError> {
    let flags = MemFdCreateFlag::MFD_CLOEXEC
        | MemFdCreateFlag::MFD_HUGETLB
        | match size {
            HugePageSize::Size2M => MemFdCreateFlag::MFD_HUGE_2MB,
            HugePageSize::Size1G => MemFdCreateFlag::MFD_HUGE_1GB,
        };
    memfd_create(&memfd_name(name), flags)
        .map(File::from)
        .map_err(|e| errno_to_dma("memfd_create(MFD_HUGETLB)", e, "run as root"))
}

/// A plain (shmem) memfd: shareable by fd like the hugepage backends, no privileges needed.
fn plain_memfd(name: &str) -> Result<File, DmaError> {
    memfd_create(&memfd_name(name), MemFdCreateFlag::MFD_CLOEXEC)
        .map(File::from)
        .map_err(|e| errno_to_dma("memfd_create", e, ""))
}

/// `rdk:<name>`, without NULs and within the kernel's 249-byte limit (shows in
/// `/proc/<pid>/maps` as `/memfd:rdk:<name>`).
fn memfd_name(name: &str) -> CString {
    let bytes: Vec<u8> = b"rdk:"
        .iter()
        .chain(name.as_bytes())
        .copied()
        .filter(|&b| b != 0)
        .take(249)
        .collect();
    CString::new(bytes).unwrap_or_default()
}

/// Reads the physical address of each page of `map` (pages of `page` bytes).
fn phys_pages(roots: &SysRoots, map: &Mapping, page: usize) -> Result<Box<[PhysAddr]>, DmaError> {
    let pagemap = Pagemap::open(roots).map_err(pagemap_to_dma)?;
    (0..map.len() / page)
        .map(|i| {
            let pa = pagemap
                .phys_addr(map.addr().wrapping_add(i * page))
                .map_err(pagemap_to_dma)?;
            if pa.is_aligned(page as u64) {
                Ok(pa)
            } else {
                // A hugetlb page is naturally aligned; anything else means it is not one.
                Err(DmaError::Os {
                    op: "check hugepage physical alignment (page is not a hugepage)",
                    code: libc::EINVAL,
                })
            }
        })
        .collect()
}

/// For each page, one past the last page of the physically contiguous run holding it.
pub(crate) fn run_ends(pages: &[PhysAddr], page: u64) -> Box<[usize]> {
    let mut ends = vec![0; pages.len()].into_boxed_slice();
    for i in (0..pages.len()).rev() {
        let joins_next = pages
            .get(i + 1)
            .is_some_and(|next| pages[i].checked_add(page) == Some(*next));
        ends[i] = if joins_next { ends[i + 1] } else { i + 1 };
    }
    ends
}

/// Indices where runs start.
fn run_starts(run_end: &[usize]) -> impl Iterator<Item = usize> + '_ {
    std::iter::successors((!run_end.is_empty()).then_some(0), |&i| {
        run_end.get(i).copied().filter(|&end| end < run_end.len())
    })
}

/// The longest IOVA-contiguous run in `region`, in bytes.
fn longest_run(region: &LinuxRegion) -> usize {
    match &region.iova {
        Translation::Va => region.len(),
        Translation::Pa { run_end, .. } => run_starts(run_end)
            .map(|start| (run_end[start] - start) << region.page_shift)
            .max()
            .unwrap_or(0),
    }
}

fn pagemap_to_dma(e: PagemapError) -> DmaError {
    const OP: &str = "read physical addresses from /proc/self/pagemap";
    if e.is_permission() {
        DmaError::Permission {
            op: OP,
            hint: PFN_HINT,
        }
    } else {
        DmaError::Os {
            op: OP,
            code: e.raw_os_error().unwrap_or(libc::EFAULT),
        }
    }
}

/// An errno as a DMA error: a permission error with `hint`, anything else as is.
fn errno_to_dma(op: &'static str, e: Errno, hint: &'static str) -> DmaError {
    match e {
        Errno::EPERM | Errno::EACCES => DmaError::Permission { op, hint },
        // mlock beyond RLIMIT_MEMLOCK says ENOMEM.
        Errno::ENOMEM if op.starts_with("mlock") => DmaError::Permission { op, hint },
        _ => DmaError::Os { op, code: e as i32 },
    }
}

fn io_to_dma(op: &'static str, e: &io::Error) -> DmaError {
    let code = e.raw_os_error().unwrap_or(libc::EIO);
    errno_to_dma(
        op,
        Errno::from_raw(code),
        "give this user write access to the hugetlbfs mount (mount -o uid=,gid=) or run as root",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdk_core::addr::VirtAddr;
    use std::os::unix::fs::FileExt;

    fn plain() -> Allocator {
        Allocator::new(
            Source::Plain,
            IovaMode::Va,
            SysRoots::host(),
            Vec::new(),
            Vec::new(),
        )
    }

    /// The region's bytes. Tests only: nothing else touches the memory meanwhile.
    fn bytes(r: &mut LinuxRegion) -> &mut [u8] {
        // SAFETY: va..va+len is the region's live mapping (DmaRegion contract); the slice
        // borrows `r` exclusively, so it cannot outlive the region or alias another slice, and
        // no device uses plain memory.
        unsafe { std::slice::from_raw_parts_mut(r.as_ptr(), r.len()) }
    }

    #[test]
    fn plain_region_is_zeroed_writable_and_says_what_it_is() {
        let mut r = plain().alloc(&DmaRequest::new("rx", 10_000), None).unwrap();
        assert!(r.is_plain());
        assert_eq!(r.kind(), RegionKind::Plain);
        assert_eq!(r.len(), 12_288, "rounded up to 4 KiB pages");
        assert_eq!(r.page_size(), base_page_size());
        assert!(bytes(&mut r).iter().all(|&b| b == 0));
        bytes(&mut r).fill(0xa5);
        assert!(bytes(&mut r).iter().all(|&b| b == 0xa5));
        let shown = r.to_string();
        assert!(shown.contains("plain memory (no DMA)"), "{shown}");
        assert!(shown.contains("IOVA = VA"), "{shown}");
        assert!(format!("{r:?}").contains("plain memory (no DMA)"));
    }

    #[test]
    fn plain_iova_is_va_and_contiguous() {
        let r = plain()
            .alloc(&DmaRequest::new("x", 3 * 4096).contiguous(), None)
            .unwrap();
        let va = r.va().get() as u64;
        assert_eq!(r.iova_at(0), Some(Iova::new(va)));
        assert_eq!(r.iova_at(5000), Some(Iova::new(va + 5000)));
        assert_eq!(r.iova_at(r.len()), None);
        assert_eq!(r.contiguous_from(100), r.len() - 100);
        assert_eq!(r.contiguous_from(r.len()), 0);
        assert!(r.is_iova_contiguous());
        assert_eq!(r.contiguous_runs(), 1);
        assert_eq!(r.iova_of(r.va().wrapping_add(7)), Some(Iova::new(va + 7)));
        assert_eq!(r.iova_of(VirtAddr::new(1)), None);
    }

    #[test]
    fn plain_alignment_beyond_the_page_is_honoured() {
        let a = plain();
        for align in [64, 4096, 1 << 16, 2 << 20] {
            let r = a
                .alloc(&DmaRequest::new("x", 100).align(align), None)
                .unwrap();
            assert!(r.va().is_aligned(align), "{r:?} align {align:#x}");
            assert!(r.iova_at(0).unwrap().is_aligned(align as u64));
        }
    }

    #[test]
    fn the_fd_shares_the_memory() {
        let mut r = plain()
            .alloc(&DmaRequest::new("shared", 4096), None)
            .unwrap();
        assert_eq!(r.fd_offset(), 0);
        let file = File::from(r.fd().try_clone_to_owned().unwrap());
        file.write_all_at(b"peer wrote this", 64).unwrap();
        assert_eq!(&bytes(&mut r)[64..79], b"peer wrote this");
        bytes(&mut r)[0] = 7;
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b[0], 7);
    }

    #[test]
    fn plain_memory_refuses_a_page_size() {
        let e = plain()
            .alloc(&DmaRequest::new("x", 1), Some(HugePageSize::Size2M))
            .unwrap_err();
        assert!(matches!(e, DmaError::BadRequest { .. }), "{e}");
    }

    #[test]
    fn page_size_override_needs_kernel_support_and_a_mount() {
        let a = Allocator::new(
            Source::Hugetlbfs(HugePageSize::Size2M, PathBuf::from("/mnt/2m")),
            IovaMode::Va,
            SysRoots::host(),
            vec![HugePageSize::Size2M, HugePageSize::Size1G],
            vec![HugetlbfsMount {
                path: PathBuf::from("/mnt/1g"),
                page_size: 1 << 30,
            }],
        );
        assert_eq!(
            a.source_for(HugePageSize::Size1G).unwrap(),
            Source::Hugetlbfs(HugePageSize::Size1G, PathBuf::from("/mnt/1g"))
        );
        assert_eq!(
            a.source_for(HugePageSize::Size2M).unwrap(),
            Source::Hugetlbfs(HugePageSize::Size2M, PathBuf::from("/mnt/2m"))
        );
        let no_mount = Allocator::new(
            Source::Hugetlbfs(HugePageSize::Size2M, PathBuf::from("/mnt/2m")),
            IovaMode::Va,
            SysRoots::host(),
            vec![HugePageSize::Size2M, HugePageSize::Size1G],
            Vec::new(),
        );
        assert!(no_mount.source_for(HugePageSize::Size1G).is_err());
        let memfd = Allocator::new(
            Source::Memfd(HugePageSize::Size2M),
            IovaMode::Va,
            SysRoots::host(),
            vec![HugePageSize::Size2M],
            Vec::new(),
        );
        let e = memfd.source_for(HugePageSize::Size1G).unwrap_err();
        assert!(
            e.to_string().contains("no hugepages of the requested size"),
            "{e}"
        );
    }

    #[test]
    fn pa_mode_refuses_alignment_above_the_page() {
        let a = Allocator::new(
            Source::Memfd(HugePageSize::Size2M),
            IovaMode::Pa,
            SysRoots::host(),
            vec![HugePageSize::Size2M],
            Vec::new(),
        );
        let e = a
            .alloc(&DmaRequest::new("x", 1).align(4 << 20), None)
            .unwrap_err();
        assert!(matches!(e, DmaError::BadRequest { .. }), "{e}");
    }

    #[test]
    fn exhaustion_counts_the_missing_pages() {
        let e = exhaustion(10 << 20, 2 << 20, 5, 2);
        assert_eq!(
            e,
            DmaError::Exhausted {
                requested: 10 << 20,
                page_size: 2 << 20,
                pages_short: 3
            }
        );
        let s = e.to_string();
        assert!(s.contains("need 3 more 2048 KiB pages"), "{s}");
        assert!(s.contains("nr_hugepages by 3"), "{s}");
        // Enough pages but ENOMEM anyway: say where else to look, do not claim a shortage.
        let e = exhaustion(2 << 20, 2 << 20, 1, 4);
        assert!(
            matches!(
                e,
                DmaError::Os {
                    code: libc::ENOMEM,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("cgroup"), "{e}");
    }

    #[test]
    fn runs_follow_physical_adjacency_exactly() {
        let p = |a: u64| PhysAddr::new(a << 21);
        let pages = [p(10), p(11), p(12), p(5), p(7), p(8)];
        let ends = run_ends(&pages, 2 << 20);
        assert_eq!(&*ends, &[3, 3, 3, 4, 6, 6]);
        assert_eq!(run_starts(&ends).collect::<Vec<_>>(), [0, 3, 4]);
        // Descending order is not contiguous.
        assert_eq!(&*run_ends(&[p(9), p(8)], 2 << 20), &[1, 2]);
        assert!(run_ends(&[], 2 << 20).is_empty());
        assert_eq!(run_starts(&[]).count(), 0);
    }

    #[test]
    fn pa_translation_is_exact_per_page() {
        // A region built by hand over plain memory, with made-up physical pages.
        let mut r = plain()
            .alloc(&DmaRequest::new("pa", 4 * 4096), None)
            .unwrap();
        let p = |a: u64| PhysAddr::new(a * 4096);
        let pages: Box<[PhysAddr]> = vec![p(100), p(101), p(50), p(51)].into();
        r.iova = Translation::Pa {
            run_end: run_ends(&pages, 4096),
            pages,
        };
        assert_eq!(r.iova_at(4096 + 12), Some(Iova::new(101 * 4096 + 12)));
        assert_eq!(r.iova_at(2 * 4096), Some(Iova::new(50 * 4096)));
        assert_eq!(r.contiguous_from(0), 2 * 4096);
        assert_eq!(r.contiguous_from(4096 + 1), 4096 - 1);
        assert_eq!(r.contiguous_from(2 * 4096 + 10), 2 * 4096 - 10);
        assert_eq!(r.contiguous_from(4 * 4096), 0);
        assert!(!r.is_iova_contiguous());
        assert_eq!(r.contiguous_runs(), 2);
        assert_eq!(longest_run(&r), 2 * 4096);
        assert!(
            r.to_string().contains("IOVA = PA in 2 contiguous run(s)"),
            "{r}"
        );
    }

    #[test]
    fn memfd_names_are_bounded_and_nul_free() {
        assert_eq!(memfd_name("rx\0q").to_bytes(), b"rdk:rxq");
        assert_eq!(memfd_name(&"a".repeat(400)).to_bytes().len(), 249);
    }

    #[test]
    fn permission_errors_carry_a_hint() {
        let e = errno_to_dma("mlock hugepage memory", Errno::ENOMEM, "ulimit -l");
        assert_eq!(
            e,
            DmaError::Permission {
                op: "mlock hugepage memory",
                hint: "ulimit -l"
            }
        );
        let e = errno_to_dma("mmap", Errno::ENOMEM, "x");
        assert!(matches!(
            e,
            DmaError::Os {
                code: libc::ENOMEM,
                ..
            }
        ));
        let e = pagemap_to_dma(PagemapError::PfnHidden {
            va: VirtAddr::new(0),
        });
        assert!(
            e.to_string().contains("needs CAP_SYS_ADMIN (run as root)"),
            "{e}"
        );
    }
}
