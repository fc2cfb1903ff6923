//! Shared by the root tests: the "require or skip" rule, hugepage pool set-up and temporary
//! hugetlbfs mounts.
#![allow(dead_code)] // each test file uses a part of this

use rdk_os_linux::hugepage::{self, PoolGrowth};
use rdk_os_linux::{HugePageSize, SysRoots};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Whether `CI=true` is set: then a missing prerequisite is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The one place that decides what a missing prerequisite means: the value if `check`
/// succeeded; otherwise, under `CI=true`, a panic, and elsewhere a note and `None` (the test
/// then returns early and passes).
pub fn require<T>(test: &str, check: Result<T, String>) -> Option<T> {
    match check {
        Ok(v) => Some(v),
        Err(missing) if in_ci() => {
            panic!("{test}: missing prerequisite (a failure under CI=true): {missing}")
        }
        Err(missing) => {
            note(test, &format!("SKIPPED: missing prerequisite: {missing}"));
            None
        }
    }
}

/// Prints a line past the test harness's output capture, so a skip is visible in a normal run.
pub fn note(test: &str, text: &str) {
    let _ = writeln!(std::io::stderr(), "[{test}] {text}");
}

/// Root, or why not.
pub fn root() -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err("not root (these tests size the hugepage pool and read physical addresses)".into())
    }
}

/// Tests that size the pool run one at a time, so each sees the free count it set up.
static POOL: Mutex<()> = Mutex::new(());

/// A test's hugepage environment: the pool grown by what the test needs, given back on drop,
/// and exclusive use of the pool within this test binary.
pub struct HugeEnv {
    // Dropped in this order: pool first, then the lock.
    pool: PoolGrowth,
    _serial: MutexGuard<'static, ()>,
}

impl HugeEnv {
    /// Pages this environment added to the pool.
    pub fn added(&self) -> u64 {
        self.pool.added()
    }
}

/// Root, kernel support for `size` and at least `pages` available pages of it, or what is
/// missing.
pub fn hugepages(size: HugePageSize, pages: u64) -> Result<HugeEnv, String> {
    root()?;
    let roots = SysRoots::host();
    let sizes = hugepage::supported_sizes(&roots).map_err(|e| e.to_string())?;
    if !sizes.contains(&(size.bytes() as u64)) {
        return Err(format!(
            "the kernel offers no {size} hugepages (sizes: {sizes:?})"
        ));
    }
    let serial = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let pool = PoolGrowth::ensure_available(&roots, size.bytes() as u64, pages)
        .map_err(|e| format!("cannot make {pages} {size} hugepages available: {e}"))?;
    Ok(HugeEnv {
        pool,
        _serial: serial,
    })
}

/// Pages of `size` available right now.
pub fn available(size: HugePageSize) -> u64 {
    hugepage::counts(&SysRoots::host(), size.bytes() as u64)
        .unwrap()
        .available()
}

/// A hugetlbfs mounted on a fresh temporary directory; unmounted and removed on drop, also
/// when the test fails.
pub struct TempHugetlbfs {
    dir: tempfile::TempDir,
}

impl TempHugetlbfs {
    /// Mounts one with `size` pages.
    pub fn mount(size: HugePageSize) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("rdk-hugetlbfs-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let opt = match size {
            HugePageSize::Size2M => "pagesize=2M",
            HugePageSize::Size1G => "pagesize=1G",
        };
        nix::mount::mount(
            Some("nodev"),
            dir.path(),
            Some("hugetlbfs"),
            nix::mount::MsFlags::empty(),
            Some(opt),
        )
        .map_err(|e| {
            format!(
                "mount -t hugetlbfs -o {opt} on {}: {e}",
                dir.path().display()
            )
        })?;
        Ok(Self { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TempHugetlbfs {
    fn drop(&mut self) {
        // Lazy unmount: succeeds even if a file in it is still open; TempDir then removes the
        // (empty) directory.
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}
