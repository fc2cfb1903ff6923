//! DPDK's side of a benchmark: where `../shared/dpdk-anchors` is, what running DPDK needs,
//! hugepages for it, and building small C programs against libdpdk.
//!
//! The anchors (`../shared/dpdk-anchors/`) hold the DPDK command lines rdk's figures are
//! compared with; a benchmark runs them in the same invocation as its rdk side. Under `CI=true`
//! a missing prerequisite is a failure, elsewhere the benchmark says what is missing and runs
//! its rdk side alone.

use rdk_os_linux::{PoolGrowth, SysRoots};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The EAL arguments every anchor uses: no PCI scan, lcores 0 and 1 (main on CPU 0, worker on
/// CPU 1), hugepages from memfds and no files left behind.
pub const EAL_ARGS: [&str; 4] = ["--no-pci", "-l", "0-1", "--in-memory"];

/// Bytes in a 2 MiB hugepage.
pub const HUGEPAGE_2M: u64 = 2 << 20;

/// Free 2 MiB hugepages the anchors make sure of before running DPDK (`lib.sh`: `huge_setup 256`).
pub const ANCHOR_HUGEPAGES: u64 = 256;

/// Whether this is a CI run (`CI=true`), where a missing prerequisite fails the run.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A prerequisite that is not there, and how to get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// What is missing.
    pub what: String,
    /// How to get it.
    pub fix: String,
}

impl Missing {
    /// A missing `what`, fixed by `fix`.
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.fix)
    }
}

/// The shared directory beside the workspace: `$RDK_SHARED`, else `<workspace>/../shared` (where
/// CI clones it), else a `shared` directory beside the current directory or one of its parents.
pub fn shared_dir() -> Result<PathBuf, Missing> {
    if let Some(d) = std::env::var_os("RDK_SHARED") {
        let d = PathBuf::from(d);
        return if d.is_dir() {
            Ok(d)
        } else {
            Err(Missing::new(
                format!("$RDK_SHARED={} (not a directory)", d.display()),
                "point RDK_SHARED at the shared/ checkout, or unset it",
            ))
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates = vec![workspace.join("../shared")];
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|a| a.join("../shared")));
    }
    candidates
        .into_iter()
        .find(|c| c.join("dpdk-anchors").is_dir())
        .map(|c| c.canonicalize().unwrap_or(c))
        .ok_or_else(|| {
            Missing::new(
                format!(
                    "the shared/ directory with dpdk-anchors/ (looked in {})",
                    workspace.join("../shared").display()
                ),
                "clone shared/ beside the workspace, or set RDK_SHARED",
            )
        })
}

/// A file of `dpdk-anchors/`.
pub fn anchor_file(name: &str) -> Result<PathBuf, Missing> {
    let f = shared_dir()?.join("dpdk-anchors").join(name);
    if f.is_file() {
        Ok(f)
    } else {
        Err(Missing::new(
            format!("{} (not found)", f.display()),
            "update the shared/ checkout",
        ))
    }
}

/// Where `prog` is on `$PATH`, if it is.
pub fn find_in_path(prog: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The version of libdpdk that `pkg-config` knows, if any.
pub fn dpdk_version() -> Option<String> {
    let out = Command::new("pkg-config")
        .args(["--modversion", "libdpdk"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What building and running a C program against libdpdk needs and this machine lacks: root
/// (hugepages), gcc, pkg-config and libdpdk's development files.
pub fn missing_for_c_build() -> Vec<Missing> {
    let mut m = Vec::new();
    if !is_root() {
        m.push(Missing::new(
            "root",
            "DPDK needs root for hugepages; run the benchmark with sudo",
        ));
    }
    if find_in_path("gcc").is_none() {
        m.push(Missing::new("gcc", "apt-get install gcc libc6-dev"));
    }
    if find_in_path("pkg-config").is_none() {
        m.push(Missing::new("pkg-config", "apt-get install pkg-config"));
    } else if dpdk_version().is_none() {
        m.push(Missing::new(
            "libdpdk (pkg-config --modversion libdpdk fails)",
            "apt-get install dpdk dpdk-dev",
        ));
    }
    m
}

/// A directory under `/tmp`, removed with its contents when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `/tmp/<prefix>.<six random characters>` with `mkdtemp`.
    pub fn new(prefix: &str) -> io::Result<Self> {
        // mkdtemp(3) replaces a template's six trailing 'X' characters with random ones.
        let template = format!("/tmp/{prefix}.{}", "X".repeat(6));
        let mut buf = std::ffi::CString::new(template)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .into_bytes_with_nul();
        // SAFETY: buf is a writable, NUL-terminated template ending in six 'X', as mkdtemp needs.
        let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(io::Error::last_os_error());
        }
        buf.pop();
        let path = PathBuf::from(std::ffi::OsString::from(
            <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&buf),
        ));
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Compiles `src` into `out` the way the anchors do:
/// `gcc -O3 -o OUT SRC $(pkg-config --cflags --libs libdpdk)`. Returns the command line.
pub fn build_c(src: &Path, out: &Path) -> Result<String, String> {
    let pc = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libdpdk"])
        .output()
        .map_err(|e| format!("pkg-config: {e}"))?;
    if !pc.status.success() {
        return Err(format!(
            "pkg-config --cflags --libs libdpdk failed: {}",
            String::from_utf8_lossy(&pc.stderr).trim()
        ));
    }
    let flags = String::from_utf8_lossy(&pc.stdout).into_owned();
    let mut cmd = Command::new("gcc");
    cmd.arg("-O3").arg("-o").arg(out).arg(src);
    cmd.args(flags.split_whitespace());
    let res = cmd.output().map_err(|e| format!("gcc: {e}"))?;
    let line = format!(
        "gcc -O3 -o {} {} $(pkg-config --cflags --libs libdpdk)",
        out.display(),
        src.display()
    );
    if !res.status.success() {
        return Err(format!(
            "{line} failed:\n{}",
            String::from_utf8_lossy(&res.stderr)
        ));
    }
    Ok(line)
}

/// Makes sure at least `pages` 2 MiB hugepages are free, growing the pool if needed (as
/// `lib.sh`'s `huge_setup`); the pool shrinks back when the guard is dropped.
pub fn ensure_hugepages(pages: u64) -> Result<PoolGrowth, String> {
    PoolGrowth::ensure_available(&SysRoots::host(), HUGEPAGE_2M, pages).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dir_is_created_and_removed() {
        let d = TempDir::new("rdk_anchor_test").unwrap();
        let p = d.path().to_owned();
        assert!(p.is_dir());
        std::fs::write(p.join("x"), b"x").unwrap();
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn missing_says_how_to_fix() {
        let m = Missing::new("gcc", "apt-get install gcc");
        assert_eq!(m.to_string(), "gcc (apt-get install gcc)");
    }
}
