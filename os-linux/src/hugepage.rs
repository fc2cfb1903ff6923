//! Hugepage discovery: which sizes the kernel offers, how many pages of each are free (in total
//! and per NUMA node), and where hugetlbfs is mounted.
//!
//! The sources are the ones DPDK's EAL reads at start-up (kernel
//! `Documentation/admin-guide/mm/hugetlbpage.rst`):
//! - `/sys/kernel/mm/hugepages/hugepages-<N>kB/{nr,free,resv,surplus}_hugepages` and
//!   `nr_overcommit_hugepages`, one directory per supported size;
//! - `/sys/devices/system/node/node<K>/hugepages/hugepages-<N>kB/`, the same per NUMA node;
//! - `/proc/mounts` for hugetlbfs mounts, whose `pagesize=` option (or, without one, the
//!   `Hugepagesize:` line of `/proc/meminfo`) gives the page size of files created there.
//!
//! Every function takes a [`SysRoots`], so tests run against a fake tree.

use crate::roots::SysRoots;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A hugepage size this crate allocates from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HugePageSize {
    /// 2 MiB pages (x86 PMD level).
    Size2M,
    /// 1 GiB pages (x86 PUD level).
    Size1G,
}

impl HugePageSize {
    /// Both sizes, small first.
    pub const ALL: [HugePageSize; 2] = [HugePageSize::Size2M, HugePageSize::Size1G];

    /// The size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            HugePageSize::Size2M => 2 << 20,
            HugePageSize::Size1G => 1 << 30,
        }
    }

    /// The size with this many bytes, if it is one of ours.
    pub const fn from_bytes(bytes: u64) -> Option<Self> {
        match bytes {
            0x20_0000 => Some(HugePageSize::Size2M),
            0x4000_0000 => Some(HugePageSize::Size1G),
            _ => None,
        }
    }
}

impl fmt::Display for HugePageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HugePageSize::Size2M => "2 MiB",
            HugePageSize::Size1G => "1 GiB",
        })
    }
}

/// The system-wide counters of one hugepage size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HugepageCounts {
    /// Pages in the pool (`nr_hugepages`).
    pub total: u64,
    /// Pages not mapped by anyone (`free_hugepages`); includes reserved ones.
    pub free: u64,
    /// Free pages promised to mappings that have not touched them yet (`resv_hugepages`).
    pub reserved: u64,
    /// Pages allocated above the pool size under overcommit (`surplus_hugepages`).
    pub surplus: u64,
    /// How many surplus pages may exist at most (`nr_overcommit_hugepages`).
    pub overcommit: u64,
}

impl HugepageCounts {
    /// Pages a new mapping can still get: free and unreserved ones, plus the overcommit headroom.
    pub fn available(&self) -> u64 {
        // `nr_overcommit_hugepages` may be set as high as u64::MAX ("no limit").
        self.free
            .saturating_sub(self.reserved)
            .saturating_add(self.overcommit.saturating_sub(self.surplus))
    }
}

/// The counters of one hugepage size on one NUMA node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeCounts {
    /// The node number (`K` in `node<K>`).
    pub node: u32,
    /// Pages in the node's pool.
    pub total: u64,
    /// Pages free on the node.
    pub free: u64,
    /// Surplus pages on the node.
    pub surplus: u64,
}

/// One hugepage size the kernel supports, with its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSizeInfo {
    /// Page size in bytes.
    pub size: u64,
    /// System-wide counters.
    pub counts: HugepageCounts,
    /// Per-node counters, by node number (empty on a kernel without NUMA sysfs).
    pub nodes: Vec<NodeCounts>,
}

/// A mounted hugetlbfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugetlbfsMount {
    /// Where it is mounted.
    pub path: PathBuf,
    /// The page size of files created in it, in bytes.
    pub page_size: u64,
}

/// Everything discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugepageInfo {
    /// Supported sizes, smallest first (empty if the kernel has no hugetlb support).
    pub sizes: Vec<PageSizeInfo>,
    /// The default size (`Hugepagesize:` in `/proc/meminfo`), if the kernel reports one.
    pub default_size: Option<u64>,
    /// Writable hugetlbfs mounts, in `/proc/mounts` order.
    pub mounts: Vec<HugetlbfsMount>,
}

impl HugepageInfo {
    /// Reads sizes, counters, per-node counters and mounts.
    pub fn discover(roots: &SysRoots) -> Result<Self, HugepageError> {
        let default_size = default_size(roots)?;
        let mut sizes = Vec::new();
        for size in supported_sizes(roots)? {
            sizes.push(PageSizeInfo {
                size,
                counts: counts(roots, size)?,
                nodes: node_counts(roots, size)?,
            });
        }
        Ok(Self {
            sizes,
            default_size,
            mounts: hugetlbfs_mounts(roots, default_size)?,
        })
    }

    /// The entry for pages of `size` bytes, if the kernel supports them.
    pub fn size(&self, size: u64) -> Option<&PageSizeInfo> {
        self.sizes.iter().find(|s| s.size == size)
    }

    /// The first mount whose files have pages of `size` bytes.
    pub fn mount_for(&self, size: u64) -> Option<&HugetlbfsMount> {
        self.mounts.iter().find(|m| m.page_size == size)
    }
}

/// Why discovery (or a pool change) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HugepageError {
    /// A file could not be read or written.
    Io {
        /// `"read"` or `"write"`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A file held something other than what the kernel writes there.
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending text.
        text: String,
    },
    /// The kernel could not grow the pool to the number of free pages asked for.
    Short {
        /// Page size in bytes.
        size: u64,
        /// Free pages wanted.
        wanted: u64,
        /// Free pages there are.
        available: u64,
    },
}

impl fmt::Display for HugepageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HugepageError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())?;
                if source.kind() == io::ErrorKind::PermissionDenied {
                    f.write_str(" (run as root)")?;
                }
                Ok(())
            }
            HugepageError::Parse { path, text } => {
                write!(f, "unexpected contents in {}: {text:?}", path.display())
            }
            HugepageError::Short {
                size,
                wanted,
                available,
            } => write!(
                f,
                "wanted {wanted} free {} KiB hugepages but the kernel could only provide \
                 {available} (memory too small or too fragmented); free some memory or reserve \
                 them at boot (hugepages= on the kernel command line)",
                size / 1024
            ),
        }
    }
}

impl std::error::Error for HugepageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HugepageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The sizes in bytes with a `hugepages-<N>kB` directory, smallest first.
pub fn supported_sizes(roots: &SysRoots) -> Result<Vec<u64>, HugepageError> {
    let mut sizes = size_dirs(&roots.hugepages_dir())?
        .into_iter()
        .map(|(size, _)| size)
        .collect::<Vec<_>>();
    sizes.sort_unstable();
    Ok(sizes)
}

/// The system-wide counters of pages of `size` bytes.
pub fn counts(roots: &SysRoots, size: u64) -> Result<HugepageCounts, HugepageError> {
    let dir = size_dir(&roots.hugepages_dir(), size);
    Ok(HugepageCounts {
        total: read_u64(&dir.join("nr_hugepages"))?,
        free: read_u64(&dir.join("free_hugepages"))?,
        reserved: read_u64(&dir.join("resv_hugepages"))?,
        surplus: read_u64(&dir.join("surplus_hugepages"))?,
        overcommit: read_u64(&dir.join("nr_overcommit_hugepages"))?,
    })
}

/// The per-node counters of pages of `size` bytes, by node number.
pub fn node_counts(roots: &SysRoots, size: u64) -> Result<Vec<NodeCounts>, HugepageError> {
    let nodes_dir = roots.nodes_dir();
    let entries = match fs::read_dir(&nodes_dir) {
        Ok(e) => e,
        // A kernel without CONFIG_NUMA has no node directory: no per-node view, not an error.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", &nodes_dir, e)),
    };
    let mut nodes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", &nodes_dir, e))?;
        let name = entry.file_name();
        let Some(node) = name
            .to_str()
            .and_then(|n| n.strip_prefix("node"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = size_dir(&entry.path().join("hugepages"), size);
        if !dir.is_dir() {
            continue;
        }
        nodes.push(NodeCounts {
            node,
            total: read_u64(&dir.join("nr_hugepages"))?,
            free: read_u64(&dir.join("free_hugepages"))?,
            surplus: read_u64(&dir.join("surplus_hugepages"))?,
        });
    }
    nodes.sort_unstable_by_key(|n| n.node);
    Ok(nodes)
}

/// The default hugepage size in bytes, from `Hugepagesize:` in `/proc/meminfo`.
pub fn default_size(roots: &SysRoots) -> Result<Option<u64>, HugepageError> {
    meminfo_bytes(roots, "Hugepagesize:")
}

/// Memory available for new allocations without swapping, in bytes (`MemAvailable:` in
/// `/proc/meminfo`).
pub fn mem_available(roots: &SysRoots) -> Result<u64, HugepageError> {
    let path = roots.meminfo();
    meminfo_bytes(roots, "MemAvailable:")?.ok_or_else(|| parse_error(&path, "no MemAvailable"))
}

/// The `/proc/meminfo` line starting with `key`, in bytes (the kernel writes kB).
fn meminfo_bytes(roots: &SysRoots, key: &str) -> Result<Option<u64>, HugepageError> {
    let path = roots.meminfo();
    let text = fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
    let Some(line) = text.lines().find(|l| l.starts_with(key)) else {
        return Ok(None);
    };
    let kib = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|kib| kib.checked_mul(1024))
        .ok_or_else(|| parse_error(&path, line))?;
    Ok(Some(kib))
}

/// The writable hugetlbfs mounts in `/proc/mounts`; a mount without `pagesize=` has
/// `default_size` pages (and is left out when that is unknown).
pub fn hugetlbfs_mounts(
    roots: &SysRoots,
    default_size: Option<u64>,
) -> Result<Vec<HugetlbfsMount>, HugepageError> {
    let path = roots.mounts();
    let text = fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
    let mut mounts = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_source), Some(target), Some(fstype), Some(options)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if fstype != "hugetlbfs" {
            continue;
        }
        let mut page_size = default_size;
        let mut read_only = false;
        for opt in options.split(',') {
            if opt == "ro" {
                read_only = true;
            } else if let Some(v) = opt.strip_prefix("pagesize=") {
                page_size = Some(parse_size(v).ok_or_else(|| parse_error(&path, line))?);
            }
        }
        if let (false, Some(page_size)) = (read_only, page_size) {
            mounts.push(HugetlbfsMount {
                path: PathBuf::from(unescape_mount_field(target)),
                page_size,
            });
        }
    }
    Ok(mounts)
}

/// A temporary growth of the hugepage pool, given back on drop.
///
/// DPDK expects the administrator to size the pool; tests and tools that set up their own
/// environment (as `dpdk-anchors/lib.sh` does) use this instead of writing `nr_hugepages` by
/// hand. It remembers how many pages it added, not the old total, so that it gives back only
/// its own pages even if someone else changed the pool meanwhile. Needs root.
#[derive(Debug)]
#[must_use = "the pool shrinks back when this is dropped"]
pub struct PoolGrowth {
    nr_path: PathBuf,
    added: u64,
}

impl PoolGrowth {
    /// Grows the pool of pages of `size` bytes until at least `wanted` pages are available
    /// (see [`HugepageCounts::available`]); adds nothing if there are enough already.
    ///
    /// Fails with [`HugepageError::Short`] (after giving back what it added) if the kernel
    /// could not allocate enough pages; if the new pool size cannot be read back, the old one
    /// is written back and the read's error returned.
    pub fn ensure_available(
        roots: &SysRoots,
        size: u64,
        wanted: u64,
    ) -> Result<Self, HugepageError> {
        let before = counts(roots, size)?;
        let nr_path = size_dir(&roots.hugepages_dir(), size).join("nr_hugepages");
        let have = before.available();
        if have >= wanted {
            return Ok(Self { nr_path, added: 0 });
        }
        write_u64(&nr_path, before.total.saturating_add(wanted - have))?;
        let total = match read_u64(&nr_path) {
            Ok(total) => total,
            Err(e) => {
                // Without the new total there is no telling how many pages are ours, and no
                // growth to give them back on drop: put back the total seen before. If that
                // write fails too there is nothing more to try; the read's error is the cause.
                let _ = write_u64(&nr_path, before.total);
                return Err(e);
            }
        };
        let growth = Self {
            added: total.saturating_sub(before.total),
            nr_path,
        };
        let available = counts(roots, size)?.available();
        if available < wanted {
            growth.release()?;
            return Err(HugepageError::Short {
                size,
                wanted,
                available,
            });
        }
        Ok(growth)
    }

    /// How many pages this growth added to the pool.
    pub fn added(&self) -> u64 {
        self.added
    }

    /// Gives the added pages back now, reporting failure (dropping does the same silently).
    pub fn release(mut self) -> Result<(), HugepageError> {
        self.shrink()
    }

    fn shrink(&mut self) -> Result<(), HugepageError> {
        if self.added == 0 {
            return Ok(());
        }
        let now = read_u64(&self.nr_path)?;
        // Shrinking frees only unused pages; pages still mapped become surplus and are freed
        // when unmapped, so this is safe while regions are alive.
        write_u64(&self.nr_path, now.saturating_sub(self.added))?;
        self.added = 0;
        Ok(())
    }
}

impl Drop for PoolGrowth {
    fn drop(&mut self) {
        // Drop cannot report; `release` is there for callers who want to know.
        let _ = self.shrink();
    }
}

/// `hugepages-<kB>kB` under `dir`.
fn size_dir(dir: &Path, size: u64) -> PathBuf {
    dir.join(format!("hugepages-{}kB", size / 1024))
}

/// The `(size in bytes, path)` of every `hugepages-<N>kB` directory in `dir`; none if `dir`
/// does not exist (a kernel without hugetlb support).
fn size_dirs(dir: &Path) -> Result<Vec<(u64, PathBuf)>, HugepageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", dir, e))?;
        let name = entry.file_name();
        let kib = name
            .to_str()
            .and_then(|n| n.strip_prefix("hugepages-"))
            .and_then(|n| n.strip_suffix("kB"))
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|kib| kib.checked_mul(1024));
        if let Some(size) = kib {
            out.push((size, entry.path()));
        }
    }
    Ok(out)
}

/// A size as the kernel prints `pagesize=` (`2M`, `1G`, `64K`) or as a plain byte count.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Undoes the octal escapes (`\040` for a space, …) the kernel writes in `/proc/mounts`.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0')));
        match octal.and_then(|v| u8::try_from(v).ok()) {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_u64(path: &Path) -> Result<u64, HugepageError> {
    let text = fs::read_to_string(path).map_err(|e| io_error("read", path, e))?;
    text.trim()
        .parse::<u64>()
        .map_err(|_| parse_error(path, text.trim()))
}

fn write_u64(path: &Path, value: u64) -> Result<(), HugepageError> {
    fs::write(path, value.to_string()).map_err(|e| io_error("write", path, e))
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> HugepageError {
    HugepageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn parse_error(path: &Path, text: &str) -> HugepageError {
    HugepageError::Parse {
        path: path.to_path_buf(),
        text: text.to_owned(),
    }
}

/// A fake sysfs/procfs tree in a temporary directory, shared by this crate's unit tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    /// Counters to write for one size: (size in KiB, total, free, reserved, surplus, overcommit).
    pub(crate) type Size = (u64, u64, u64, u64, u64, u64);

    /// A tree with the given sizes, one NUMA node holding every page, and `mounts` as the
    /// contents of `/proc/mounts`.
    pub(crate) struct FakeTree {
        pub(crate) dir: tempfile::TempDir,
    }

    impl FakeTree {
        pub(crate) fn new(sizes: &[Size], mounts: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let tree = Self { dir };
            for &(kib, total, free, resv, surplus, overcommit) in sizes {
                let d = tree
                    .sys()
                    .join(format!("kernel/mm/hugepages/hugepages-{kib}kB"));
                fs::create_dir_all(&d).unwrap();
                for (file, v) in [
                    ("nr_hugepages", total),
                    ("free_hugepages", free),
                    ("resv_hugepages", resv),
                    ("surplus_hugepages", surplus),
                    ("nr_overcommit_hugepages", overcommit),
                ] {
                    fs::write(d.join(file), format!("{v}\n")).unwrap();
                }
                tree.set_node(0, kib, total, free);
            }
            fs::create_dir_all(tree.proc().join("self")).unwrap();
            fs::write(tree.proc().join("mounts"), mounts).unwrap();
            fs::write(
                tree.proc().join("meminfo"),
                "MemTotal:       24684084 kB\nMemAvailable:     100 kB\nHugepagesize:       2048 kB\n",
            )
            .unwrap();
            tree
        }

        pub(crate) fn set_node(&self, node: u32, kib: u64, total: u64, free: u64) {
            let d = self.sys().join(format!(
                "devices/system/node/node{node}/hugepages/hugepages-{kib}kB"
            ));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("nr_hugepages"), format!("{total}\n")).unwrap();
            fs::write(d.join("free_hugepages"), format!("{free}\n")).unwrap();
            fs::write(d.join("surplus_hugepages"), "0\n").unwrap();
        }

        pub(crate) fn sys(&self) -> PathBuf {
            self.dir.path().join("sys")
        }

        pub(crate) fn proc(&self) -> PathBuf {
            self.dir.path().join("proc")
        }

        pub(crate) fn roots(&self) -> SysRoots {
            SysRoots::new(self.sys(), self.proc())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeTree;
    use super::*;

    const MOUNTS: &str = "\
proc /proc proc rw,relatime 0 0
hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
nodev /mnt/huge\\0401G hugetlbfs rw,relatime,pagesize=1024M 0 0
nodev /mnt/old hugetlbfs rw,relatime 0 0
nodev /mnt/ro hugetlbfs ro,relatime,pagesize=2M 0 0
tmpfs /dev/shm tmpfs rw 0 0
";

    fn tree() -> FakeTree {
        FakeTree::new(&[(2048, 64, 40, 4, 0, 0), (1048576, 2, 1, 0, 0, 0)], MOUNTS)
    }

    #[test]
    fn discovers_sizes_counts_and_nodes() {
        let t = tree();
        t.set_node(1, 2048, 32, 8);
        let info = HugepageInfo::discover(&t.roots()).unwrap();
        assert_eq!(info.default_size, Some(2 << 20));
        assert_eq!(mem_available(&t.roots()).unwrap(), 100 << 10);
        let sizes: Vec<u64> = info.sizes.iter().map(|s| s.size).collect();
        assert_eq!(sizes, [2 << 20, 1 << 30]);
        let two = info.size(2 << 20).unwrap();
        assert_eq!(
            two.counts,
            HugepageCounts {
                total: 64,
                free: 40,
                reserved: 4,
                surplus: 0,
                overcommit: 0
            }
        );
        assert_eq!(two.counts.available(), 36);
        assert_eq!(two.nodes.len(), 2);
        assert_eq!((two.nodes[1].node, two.nodes[1].free), (1, 8));
        let one = info.size(1 << 30).unwrap();
        assert_eq!(one.nodes.len(), 1, "node1 has no 1 GiB directory");
        assert!(info.size(64 << 10).is_none());
    }

    #[test]
    fn parses_hugetlbfs_mounts() {
        let t = tree();
        let info = HugepageInfo::discover(&t.roots()).unwrap();
        let got: Vec<(&str, u64)> = info
            .mounts
            .iter()
            .map(|m| (m.path.to_str().unwrap(), m.page_size))
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/hugepages", 2 << 20),
                ("/mnt/huge 1G", 1 << 30),
                ("/mnt/old", 2 << 20), // no pagesize=: the default size
            ],
            "the read-only mount is left out"
        );
        assert_eq!(
            info.mount_for(1 << 30).unwrap().path,
            Path::new("/mnt/huge 1G")
        );
    }

    #[test]
    fn mount_without_pagesize_and_unknown_default_is_skipped() {
        let t = tree();
        let mounts = hugetlbfs_mounts(&t.roots(), None).unwrap();
        assert!(mounts.iter().all(|m| m.path != Path::new("/mnt/old")));
        assert_eq!(mounts.len(), 2);
    }

    #[test]
    fn garbage_is_a_parse_error_naming_the_file() {
        let t = tree();
        let f = t
            .sys()
            .join("kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
        fs::write(&f, "lots\n").unwrap();
        let e = HugepageInfo::discover(&t.roots()).unwrap_err();
        assert!(matches!(e, HugepageError::Parse { ref text, .. } if text == "lots"));
        assert!(e.to_string().contains("free_hugepages"), "{e}");
    }

    #[test]
    fn no_hugetlb_support_means_no_sizes() {
        let t = FakeTree::new(&[], "");
        let info = HugepageInfo::discover(&t.roots()).unwrap();
        assert!(info.sizes.is_empty() && info.mounts.is_empty());
    }

    #[test]
    fn unlimited_overcommit_and_huge_numbers_neither_panic_nor_wrap() {
        let c = HugepageCounts {
            total: 10,
            free: 3,
            reserved: 1,
            surplus: 0,
            overcommit: u64::MAX,
        };
        assert_eq!(c.available(), u64::MAX, "unlimited headroom, not 1");
        let t = tree();
        fs::write(
            t.proc().join("meminfo"),
            "Hugepagesize: 18446744073709551615 kB\n",
        )
        .unwrap();
        let e = default_size(&t.roots()).unwrap_err();
        assert!(matches!(e, HugepageError::Parse { .. }), "{e}");
        fs::create_dir_all(
            t.sys()
                .join("kernel/mm/hugepages/hugepages-18446744073709551615kB"),
        )
        .unwrap();
        assert_eq!(supported_sizes(&t.roots()).unwrap(), [2 << 20, 1 << 30]);
    }

    #[test]
    fn available_counts_overcommit_headroom() {
        let c = HugepageCounts {
            total: 10,
            free: 3,
            reserved: 1,
            surplus: 2,
            overcommit: 5,
        };
        assert_eq!(c.available(), 2 + 3);
    }

    #[test]
    fn sizes_and_escapes() {
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(unescape_mount_field(r"/a\040b\011c\134"), "/a b\tc\\");
        assert_eq!(unescape_mount_field(r"/a\04"), r"/a\04");
        assert_eq!(unescape_mount_field(r"/a\999"), r"/a\999");
        assert_eq!(
            HugePageSize::from_bytes(2 << 20),
            Some(HugePageSize::Size2M)
        );
        assert_eq!(
            HugePageSize::from_bytes(1 << 30),
            Some(HugePageSize::Size1G)
        );
        assert_eq!(HugePageSize::from_bytes(4096), None);
        assert_eq!(HugePageSize::Size1G.to_string(), "1 GiB");
    }

    #[test]
    fn pool_growth_does_nothing_when_enough_and_gives_back_on_shortage() {
        // The fake kernel allocates nothing: it only stores what is written. So it shows the
        // no-op path and the "kernel did not deliver" path; root tests show the real growth.
        let t = tree();
        let roots = t.roots();
        let nr = t
            .sys()
            .join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");

        let g = PoolGrowth::ensure_available(&roots, 2 << 20, 36).unwrap();
        assert_eq!(g.added(), 0, "36 available (40 free, 4 reserved)");
        drop(g);
        assert_eq!(read_u64(&nr).unwrap(), 64);

        let e = PoolGrowth::ensure_available(&roots, 2 << 20, 40).unwrap_err();
        assert!(
            matches!(
                e,
                HugepageError::Short {
                    wanted: 40,
                    available: 36,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("2048 KiB"), "{e}");
        assert_eq!(
            read_u64(&nr).unwrap(),
            64,
            "a failed growth gives its pages back"
        );
    }

    #[test]
    fn pool_growth_release_subtracts_only_its_own_pages() {
        let t = tree();
        let nr = t
            .sys()
            .join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
        let g = PoolGrowth {
            nr_path: nr.clone(),
            added: 4,
        };
        // Someone else raised the pool to 100 meanwhile.
        fs::write(&nr, "100\n").unwrap();
        g.release().unwrap();
        assert_eq!(read_u64(&nr).unwrap(), 96);
    }

    #[test]
    fn pool_growth_restores_the_pool_when_the_read_back_fails() {
        use std::io::{Read, Write};
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::mpsc;
        use std::time::Duration;
        let t = tree();
        let nr = t
            .sys()
            .join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
        // A FIFO plays the kernel's file, one open at a time: each open waits for its peer, so
        // the order is fixed without timing. It shows 64 pages, takes the growth, answers the
        // read-back with garbage, and reports what is written after that.
        fs::remove_file(&nr).unwrap();
        nix::unistd::mkfifo(&nr, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (tx, rx) = mpsc::channel();
        let kernel = {
            let nr = nr.clone();
            std::thread::spawn(move || {
                let show = |text: &str| {
                    let mut f = fs::OpenOptions::new().write(true).open(&nr).unwrap();
                    f.write_all(text.as_bytes()).unwrap();
                };
                let take = || {
                    let mut s = String::new();
                    let mut f = fs::File::open(&nr).unwrap();
                    f.read_to_string(&mut s).unwrap();
                    s
                };
                show("64\n");
                tx.send(take()).unwrap();
                show("pizza\n");
                tx.send(take()).unwrap();
            })
        };
        let e = PoolGrowth::ensure_available(&t.roots(), 2 << 20, 40).unwrap_err();
        assert!(
            matches!(&e, HugepageError::Parse { path, .. } if path.ends_with("nr_hugepages")),
            "{e}"
        );
        let wait = Duration::from_secs(10);
        assert_eq!(rx.recv_timeout(wait).as_deref(), Ok("68"), "the growth");
        let restored = rx.recv_timeout(wait);
        if restored.is_err() {
            // Nothing was written back: let the fake kernel's open return so it can end.
            let _ = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&nr);
        }
        assert_eq!(
            restored.as_deref(),
            Ok("64"),
            "the pages added must be given back when the new total cannot be read"
        );
        kernel.join().unwrap();
    }
}
