//! [`LinuxOs`]: the OS traits on Linux, as one instance.

use crate::clock::LinuxClock;
use crate::dma::{Allocator, Backend, IovaMode, LinuxRegion, MemoryConfig, Source};
use crate::eventfd::EventFd;
use crate::hugepage::{HugePageSize, HugepageError, HugepageInfo};
use crate::memzone::{Memzone, MemzoneError, MemzoneFlags, Memzones};
use crate::roots::SysRoots;
use rdk_core::os::{
    dma::validate_request, Clock, DmaAlloc, DmaError, DmaRequest, EventError, Events, Instant,
};
use std::fmt;
use std::path::PathBuf;

/// Why a [`LinuxOs`] could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// Hugepage discovery failed.
    Discovery(HugepageError),
    /// The kernel offers no hugepages of the configured size.
    PageSizeUnsupported {
        /// The configured size.
        size: HugePageSize,
        /// The sizes it does offer, in bytes (empty: no hugetlb support at all).
        offered: Vec<u64>,
    },
    /// No hugetlbfs is mounted with the configured page size.
    NoHugetlbfsMount {
        /// The configured size.
        size: HugePageSize,
    },
    /// The configured mount is not a writable hugetlbfs mount.
    NotHugetlbfs {
        /// The configured path.
        path: PathBuf,
    },
    /// The configured mount has another page size.
    MountPageSize {
        /// The configured path.
        path: PathBuf,
        /// Its page size in bytes.
        has: u64,
        /// The configured size.
        want: HugePageSize,
    },
    /// Plain memory was configured with [`IovaMode::Pa`].
    PlainNeedsVa,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Discovery(e) => write!(f, "hugepage discovery failed: {e}"),
            ConfigError::PageSizeUnsupported { size, offered } if offered.is_empty() => write!(
                f,
                "no {size} hugepages: this kernel has no hugetlb support; use plain memory \
                 (host PMDs only) or a kernel with CONFIG_HUGETLBFS"
            ),
            ConfigError::PageSizeUnsupported { size, offered } => {
                write!(f, "no {size} hugepages on this machine (it offers")?;
                for s in offered {
                    write!(f, " {} KiB", s / 1024)?;
                }
                f.write_str("); configure one of those sizes")
            }
            ConfigError::NoHugetlbfsMount { size } => {
                let opt = match size {
                    HugePageSize::Size2M => "2M",
                    HugePageSize::Size1G => "1G",
                };
                write!(
                    f,
                    "no writable hugetlbfs with {size} pages is mounted; mount one \
                     (mkdir -p /mnt/huge && mount -t hugetlbfs -o pagesize={opt} nodev \
                     /mnt/huge) or use the memfd backend"
                )
            }
            ConfigError::NotHugetlbfs { path } => write!(
                f,
                "{} is not a writable hugetlbfs mount (see /proc/mounts)",
                path.display()
            ),
            ConfigError::MountPageSize { path, has, want } => write!(
                f,
                "{} has {} KiB pages, not {want}; pick a mount with {want} pages",
                path.display(),
                has / 1024
            ),
            ConfigError::PlainNeedsVa => f.write_str(
                "plain memory has no physical addresses a device could use; configure \
                 IovaMode::Va with Backend::Plain, or a hugepage backend for IOVA = PA",
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Discovery(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HugepageError> for ConfigError {
    fn from(e: HugepageError) -> Self {
        ConfigError::Discovery(e)
    }
}

/// The OS traits on Linux: DMA memory ([`DmaAlloc`]), named reservations (memzones), eventfds
/// ([`Events`]) and `CLOCK_MONOTONIC` ([`Clock`]).
///
/// Everything is per instance: two instances share no names, no counters and no
/// configuration. Hugepage sizes and mounts are discovered once, at construction, where a
/// misconfiguration is reported ([`ConfigError`]); allocation reports only what can go wrong
/// at run time (exhaustion, contiguity, permissions).
pub struct LinuxOs {
    config: MemoryConfig,
    alloc: Allocator,
    memzones: Memzones<LinuxRegion>,
    clock: LinuxClock,
}

impl LinuxOs {
    /// An instance for `config` on this machine.
    pub fn new(config: MemoryConfig) -> Result<Self, ConfigError> {
        Self::with_roots(config, SysRoots::host())
    }

    /// An instance for `config` reading sysfs and procfs under `roots` (for tests).
    pub fn with_roots(config: MemoryConfig, roots: SysRoots) -> Result<Self, ConfigError> {
        let (source, supported, mounts) = match &config.backend {
            Backend::Plain if config.iova_mode == IovaMode::Pa => {
                return Err(ConfigError::PlainNeedsVa)
            }
            // Plain memory reads nothing from sysfs: it must work in any container.
            Backend::Plain => (Source::Plain, Vec::new(), Vec::new()),
            Backend::Memfd { page_size } | Backend::Hugetlbfs { page_size, .. } => {
                let info = HugepageInfo::discover(&roots)?;
                let size = *page_size;
                if info.size(size.bytes() as u64).is_none() {
                    return Err(ConfigError::PageSizeUnsupported {
                        size,
                        offered: info.sizes.iter().map(|s| s.size).collect(),
                    });
                }
                let source = match &config.backend {
                    Backend::Hugetlbfs { mount, .. } => {
                        Source::Hugetlbfs(size, pick_mount(&info, size, mount.as_ref())?)
                    }
                    _ => Source::Memfd(size),
                };
                let supported = info
                    .sizes
                    .iter()
                    .filter_map(|s| HugePageSize::from_bytes(s.size))
                    .collect();
                (source, supported, info.mounts)
            }
        };
        let alloc = Allocator::new(source, config.iova_mode, roots, supported, mounts);
        Ok(Self::from_parts(config, alloc))
    }

    /// Plain memory (IOVA = VA, no DMA), for host PMDs; needs no root and no hugepages.
    pub fn plain() -> Self {
        let alloc = Allocator::new(
            Source::Plain,
            IovaMode::Va,
            SysRoots::host(),
            Vec::new(),
            Vec::new(),
        );
        Self::from_parts(MemoryConfig::plain(), alloc)
    }

    fn from_parts(config: MemoryConfig, alloc: Allocator) -> Self {
        Self {
            config,
            alloc,
            memzones: Memzones::new(),
            clock: LinuxClock::new(),
        }
    }

    /// The configuration this instance was made with.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Whether this instance hands out plain memory (no DMA).
    pub fn is_plain(&self) -> bool {
        *self.alloc.source() == Source::Plain
    }

    /// The hugetlbfs mount in use, for the hugetlbfs backend.
    pub fn hugetlbfs_mount(&self) -> Option<&std::path::Path> {
        match self.alloc.source() {
            Source::Hugetlbfs(_, path) => Some(path),
            _ => None,
        }
    }

    /// Reserves a named zone of at least `len` bytes aligned to `align`.
    pub fn memzone_reserve(
        &self,
        name: &str,
        len: usize,
        align: usize,
        flags: MemzoneFlags,
    ) -> Result<Memzone<LinuxRegion>, MemzoneError> {
        let mut req = DmaRequest::new(name, len).align(align);
        if flags.is_contiguous() {
            req = req.contiguous();
        }
        validate_request(&req)?;
        self.memzones
            .reserve(name, || self.alloc.alloc(&req, flags.requested_page_size()))
    }

    /// The zone called `name`, if there is one.
    pub fn memzone_lookup(&self, name: &str) -> Option<Memzone<LinuxRegion>> {
        self.memzones.lookup(name)
    }

    /// Frees a zone (see [`Memzones::free`]).
    pub fn memzone_free(&self, zone: Memzone<LinuxRegion>) -> Result<(), MemzoneError> {
        self.memzones.free(zone)
    }

    /// The names of the reserved zones, sorted.
    pub fn memzone_names(&self) -> Vec<String> {
        self.memzones.names()
    }
}

/// The configured mount, checked, or the first one with `size` pages.
fn pick_mount(
    info: &HugepageInfo,
    size: HugePageSize,
    configured: Option<&PathBuf>,
) -> Result<PathBuf, ConfigError> {
    let Some(path) = configured else {
        return info
            .mount_for(size.bytes() as u64)
            .map(|m| m.path.clone())
            .ok_or(ConfigError::NoHugetlbfsMount { size });
    };
    // /proc/mounts lists canonical paths.
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
    let mount = info
        .mounts
        .iter()
        .find(|m| m.path == canonical)
        .ok_or_else(|| ConfigError::NotHugetlbfs { path: path.clone() })?;
    if mount.page_size != size.bytes() as u64 {
        return Err(ConfigError::MountPageSize {
            path: path.clone(),
            has: mount.page_size,
            want: size,
        });
    }
    Ok(mount.path.clone())
}

impl fmt::Debug for LinuxOs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let memory = match self.alloc.source() {
            Source::Plain => "plain memory (no DMA)".to_owned(),
            Source::Memfd(size) => format!("{size} hugepages (memfd)"),
            Source::Hugetlbfs(size, path) => {
                format!("{size} hugepages (hugetlbfs at {})", path.display())
            }
        };
        f.debug_struct("LinuxOs")
            .field("memory", &memory)
            .field("iova_mode", &self.alloc.iova_mode())
            .field("memzones", &self.memzones)
            .finish()
    }
}

impl DmaAlloc for LinuxOs {
    type Region = LinuxRegion;

    fn dma_alloc(&self, req: &DmaRequest<'_>) -> Result<LinuxRegion, DmaError> {
        validate_request(req)?;
        self.alloc.alloc(req, None)
    }
}

impl Events for LinuxOs {
    type Event = EventFd;

    fn event_create(&self) -> Result<EventFd, EventError> {
        EventFd::new()
    }
}

impl Clock for LinuxOs {
    #[inline]
    fn now(&self) -> Instant {
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hugepage::fake::FakeTree;
    use rdk_core::os::{DmaRegion, EventNotifier};

    const MOUNTS: &str = "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";

    fn tree() -> FakeTree {
        FakeTree::new(&[(2048, 8, 8, 0, 0, 0)], MOUNTS)
    }

    #[test]
    fn unsupported_page_size_lists_what_is_offered() {
        let t = tree();
        let e = LinuxOs::with_roots(
            MemoryConfig::memfd(HugePageSize::Size1G, IovaMode::Va),
            t.roots(),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("no 1 GiB hugepages") && s.contains("2048 KiB"),
            "{s}"
        );

        let bare = FakeTree::new(&[], "");
        let e = LinuxOs::with_roots(
            MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Va),
            bare.roots(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no hugetlb support"), "{e}");
    }

    #[test]
    fn hugetlbfs_backend_finds_or_checks_its_mount() {
        let t = tree();
        let os = LinuxOs::with_roots(
            MemoryConfig::hugetlbfs(HugePageSize::Size2M, IovaMode::Va),
            t.roots(),
        )
        .unwrap();
        assert_eq!(
            os.hugetlbfs_mount(),
            Some(std::path::Path::new("/dev/hugepages"))
        );
        assert!(format!("{os:?}").contains("hugetlbfs at /dev/hugepages"));

        let none = FakeTree::new(&[(2048, 8, 8, 0, 0, 0)], "");
        let e = LinuxOs::with_roots(
            MemoryConfig::hugetlbfs(HugePageSize::Size2M, IovaMode::Va),
            none.roots(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("mount -t hugetlbfs -o pagesize=2M"),
            "{e}"
        );

        let elsewhere = MemoryConfig {
            backend: Backend::Hugetlbfs {
                page_size: HugePageSize::Size2M,
                mount: Some(PathBuf::from("/definitely/not/a/mount")),
            },
            iova_mode: IovaMode::Va,
        };
        let e = LinuxOs::with_roots(elsewhere, t.roots()).unwrap_err();
        assert!(matches!(e, ConfigError::NotHugetlbfs { .. }), "{e}");

        let two_sizes = FakeTree::new(&[(2048, 8, 8, 0, 0, 0), (1048576, 1, 1, 0, 0, 0)], MOUNTS);
        let wrong = MemoryConfig {
            backend: Backend::Hugetlbfs {
                page_size: HugePageSize::Size1G,
                mount: Some(PathBuf::from("/dev/hugepages")),
            },
            iova_mode: IovaMode::Va,
        };
        let e = LinuxOs::with_roots(wrong, two_sizes.roots()).unwrap_err();
        assert!(
            matches!(e, ConfigError::MountPageSize { has: 0x20_0000, .. }),
            "{e}"
        );
    }

    #[test]
    fn plain_with_pa_is_refused() {
        let cfg = MemoryConfig {
            backend: Backend::Plain,
            iova_mode: IovaMode::Pa,
        };
        let e =
            LinuxOs::with_roots(cfg, SysRoots::new("/nonexistent", "/nonexistent")).unwrap_err();
        assert!(matches!(e, ConfigError::PlainNeedsVa));
        // Plain memory reads nothing from sysfs, so a missing tree does not matter.
        let os = LinuxOs::with_roots(MemoryConfig::plain(), SysRoots::new("/nonexistent", "/x"))
            .unwrap();
        assert!(os.is_plain());
        assert!(format!("{os:?}").contains("plain memory (no DMA)"));
    }

    #[test]
    fn plain_dma_alloc_validates_and_allocates() {
        let os = LinuxOs::plain();
        assert!(matches!(
            os.dma_alloc(&DmaRequest::new("x", 0)),
            Err(DmaError::BadRequest { .. })
        ));
        assert!(matches!(
            os.dma_alloc(&DmaRequest::new("x", 10).align(48)),
            Err(DmaError::BadRequest { .. })
        ));
        let r = os.dma_alloc(&DmaRequest::new("pool", 100_000)).unwrap();
        assert!(r.is_plain() && r.len() >= 100_000 && r.is_iova_contiguous());
        os.dma_free(r);
    }

    #[test]
    fn memzones_are_per_instance() {
        let a = LinuxOs::plain();
        let b = LinuxOs::plain();
        let za = a
            .memzone_reserve("rxq0_ring", 16 << 10, 4096, MemzoneFlags::NONE)
            .unwrap();
        let zb = b
            .memzone_reserve("rxq0_ring", 16 << 10, 4096, MemzoneFlags::NONE.contiguous())
            .unwrap();
        assert_ne!(za.va(), zb.va());
        assert!(za.va().is_aligned(4096));
        assert!(matches!(
            a.memzone_reserve("rxq0_ring", 1, 64, MemzoneFlags::NONE),
            Err(MemzoneError::Duplicate { .. })
        ));
        assert!(a.memzone_lookup("rxq0_ring").unwrap().same_zone(&za));
        assert_eq!(a.memzone_names(), ["rxq0_ring"]);
        a.memzone_free(za).unwrap();
        assert!(a.memzone_lookup("rxq0_ring").is_none());
        assert!(b.memzone_lookup("rxq0_ring").unwrap().same_zone(&zb));
        assert!(matches!(
            a.memzone_reserve("big", 0, 64, MemzoneFlags::NONE),
            Err(MemzoneError::Dma(DmaError::BadRequest { .. }))
        ));
        assert!(matches!(
            a.memzone_reserve(
                "big",
                1,
                64,
                MemzoneFlags::NONE.page_size(HugePageSize::Size2M)
            ),
            Err(MemzoneError::Dma(DmaError::BadRequest { .. }))
        ));
        assert!(
            a.memzone_names().is_empty(),
            "failed reservations leave no name"
        );
    }

    #[test]
    fn events_and_clock() {
        let os = LinuxOs::plain();
        let e = os.event_create().unwrap();
        e.signal().unwrap();
        assert_eq!(e.ack().unwrap(), 1);
        let t0 = os.now();
        assert!(os.now() >= t0);
    }
}
