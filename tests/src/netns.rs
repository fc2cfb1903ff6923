//! Network namespaces, veth pairs and TAP devices that a test creates and always removes.
//!
//! Host-PMD tests run against the real kernel, but only inside namespaces they own: every
//! object here is named after the test process (`rdk<pid>…`, unique across parallel runs),
//! created with `ip`, and removed by `Drop` — also when the test panics. Nothing is ever given
//! an address outside these namespaces.
//!
//! [`prerequisite`] is the one place that decides what a missing prerequisite means: a skip
//! with the reason printed, or, under `CI=true`, a failure.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Why the harness could not set something up.
#[derive(Debug)]
pub struct HarnessError {
    /// The command or step that failed.
    pub what: String,
    /// What it printed, or the OS error.
    pub detail: String,
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.what, self.detail.trim())
    }
}

impl std::error::Error for HarnessError {}

/// Whether this run is CI (`CI=true`), where missing prerequisites fail instead of skipping.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Checks a prerequisite. Returns `true` if it holds; otherwise prints why the test is
/// skipped and returns `false`, or panics under `CI=true`.
pub fn prerequisite(test: &str, holds: bool, missing: &str) -> bool {
    if holds {
        return true;
    }
    if is_ci() {
        panic!("{test}: prerequisite missing under CI=true: {missing}");
    }
    eprintln!("SKIP {test}: {missing}");
    false
}

/// Whether the process runs as root (network namespaces and raw sockets need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The usual check for kernel tests: root and the `ip` tool.
pub fn need_netns(test: &str) -> bool {
    prerequisite(
        test,
        is_root(),
        "needs root (network namespaces, veth, TAP)",
    ) && prerequisite(
        test,
        Command::new("ip").arg("-V").output().is_ok(),
        "needs the `ip` tool (Debian package iproute2)",
    )
}

/// Runs a command, returning its output or an error with what it printed.
pub fn run(cmd: &[&str]) -> Result<Output, HarnessError> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| HarnessError {
            what: cmd.join(" "),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(HarnessError {
            what: cmd.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// A name unique to this process and call, at most 15 bytes (the kernel's IFNAMSIZ - 1).
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(3)
        .collect();
    format!("rdk{}{tag}{n}", std::process::id() % 100_000)
}

/// A network namespace, deleted on drop (which also destroys every interface left in it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named after `tag` and brings its loopback up.
    pub fn new(tag: &str) -> Result<Self, HarnessError> {
        let ns = Self {
            name: unique_name(tag),
        };
        run(&["ip", "netns", "add", &ns.name])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Result<Output, HarnessError> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// A `Command` that runs `prog` inside the namespace (for long-running peers).
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// Moves the calling thread into the namespace until the guard drops. Threads it spawns
    /// meanwhile start inside the namespace too.
    pub fn enter(&self) -> Result<NetnsGuard, HarnessError> {
        let err = |what: &str, e: std::io::Error| HarnessError {
            what: format!("{what} ({})", self.name),
            detail: e.to_string(),
        };
        let home = File::open("/proc/thread-self/ns/net").map_err(|e| err("open own netns", e))?;
        let target = File::open(format!("/var/run/netns/{}", self.name))
            .map_err(|e| err("open netns", e))?;
        // SAFETY: setns on a namespace fd we own affects only the calling thread.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(err("setns", std::io::Error::last_os_error()));
        }
        Ok(NetnsGuard { home })
    }

    /// A counter of the namespace's `/proc/net/snmp` or `/proc/net/netstat` (`file`) in row
    /// group `table` (`Udp`, `IpExt`, ...) named `name`.
    pub fn snmp(&self, file: &str, table: &str, name: &str) -> Result<u64, HarnessError> {
        let out = self.exec(&["cat", file])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| l.split(':').next() == Some(table))
            .map(|l| l.split_whitespace().collect())
            .collect();
        let missing = || HarnessError {
            what: format!("{file}: {table} {name}"),
            detail: "no such counter".into(),
        };
        let [names, values] = rows.as_slice() else {
            return Err(missing());
        };
        let i = names.iter().position(|n| *n == name).ok_or_else(missing)?;
        values
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(missing)
    }

    /// Reads an interface counter (`/sys/class/net/IF/statistics/NAME`) inside the namespace.
    pub fn counter(&self, iface: &str, name: &str) -> Result<u64, HarnessError> {
        let path = format!("/sys/class/net/{iface}/statistics/{name}");
        let out = self.exec(&["cat", &path])?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e: std::num::ParseIntError| HarnessError {
                what: format!("parse {path}"),
                detail: e.to_string(),
            })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(&["ip", "netns", "del", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}

/// Returns the thread to the namespace it came from.
#[derive(Debug)]
pub struct NetnsGuard {
    home: File,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: as in `Netns::enter`; `home` is the namespace this thread started in.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // Staying in a namespace that is about to be deleted would break later tests on
            // this thread; there is no way to continue correctly.
            panic!(
                "cannot return to the original network namespace: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// A veth pair with each end in a namespace of the test's choosing, both ends up. Dropping it
/// deletes the pair (deleting one end removes both).
#[derive(Debug)]
pub struct Veth {
    /// Name of end A.
    pub a: String,
    /// Name of end B.
    pub b: String,
    a_ns: Option<String>,
}

impl Veth {
    /// Creates a pair; `a_ns` / `b_ns` place the ends (`None`: the caller's namespace).
    pub fn new(a_ns: Option<&Netns>, b_ns: Option<&Netns>) -> Result<Self, HarnessError> {
        Self::with_queues(a_ns, b_ns, 1)
    }

    /// As [`Veth::new`], each end with `queues` transmit and `queues` receive queues (a
    /// veth's queue ids are what a multi-queue AF_XDP port binds its sockets to).
    pub fn with_queues(
        a_ns: Option<&Netns>,
        b_ns: Option<&Netns>,
        queues: u16,
    ) -> Result<Self, HarnessError> {
        let (a, b) = (unique_name("va"), unique_name("vb"));
        let n = queues.to_string();
        let q = ["numtxqueues", &n, "numrxqueues", &n];
        let mut cmd = vec!["ip", "link", "add", &a];
        cmd.extend(q);
        cmd.extend(["type", "veth", "peer", "name", &b]);
        cmd.extend(q);
        run(&cmd)?;
        let veth = Self {
            a,
            b,
            a_ns: a_ns.map(|n| n.name.clone()),
        };
        for (end, ns) in [(&veth.a, a_ns), (&veth.b, b_ns)] {
            if let Some(ns) = ns {
                run(&["ip", "link", "set", end, "netns", &ns.name])?;
                ns.exec(&["ip", "link", "set", end, "up"])?;
            } else {
                run(&["ip", "link", "set", end, "up"])?;
            }
        }
        Ok(veth)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let r = match &self.a_ns {
            Some(ns) => run(&["ip", "-n", ns, "link", "del", &self.a]),
            None => run(&["ip", "link", "del", &self.a]),
        };
        // The namespace may already be gone, taking the pair with it.
        if let Err(e) = r {
            if !e.detail.contains("Cannot find device") && !e.detail.contains("No such") {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// Runs `f` on a thread of its own inside `ns` with no effective capabilities (they are per
/// thread on Linux), raising them back before the thread returns to its namespace.
pub fn without_capabilities<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let _inside = ns.enter().unwrap();
            set_effective_capabilities(false);
            let r = f();
            set_effective_capabilities(true);
            r
        })
        .join()
        .unwrap()
    })
}

/// Clears the calling thread's effective capabilities, or raises them back to the permitted
/// set (raw capset: this thread only).
pub fn set_effective_capabilities(on: bool) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset with a valid header and two data words, as the ABI wants.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()), 0);
        for w in d.iter_mut() {
            w.effective = if on { w.permitted } else { 0 };
        }
        assert_eq!(libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_differ() {
        let a = unique_name("veth-a");
        let b = unique_name("veth-a");
        assert!(a.len() <= 15 && b.len() <= 15, "{a} {b}");
        assert_ne!(a, b);
    }

    #[test]
    fn namespace_and_veth_come_and_go() {
        if !need_netns("namespace_and_veth_come_and_go") {
            return;
        }
        let (x, y) = (Netns::new("x").unwrap(), Netns::new("y").unwrap());
        let veth = Veth::new(Some(&x), Some(&y)).unwrap();
        x.exec(&["ip", "addr", "add", "10.99.0.1/24", "dev", &veth.a])
            .unwrap();
        y.exec(&["ip", "addr", "add", "10.99.0.2/24", "dev", &veth.b])
            .unwrap();
        x.exec(&["ping", "-c", "1", "-W", "2", "10.99.0.2"])
            .unwrap();
        assert!(y.counter(&veth.b, "rx_packets").unwrap() >= 1);
        {
            let _in = x.enter().unwrap();
            let links = run(&["ip", "link", "show", &veth.a]).unwrap();
            assert!(links.status.success());
        }
        // Back home: the end is not visible here.
        assert!(run(&["ip", "link", "show", &veth.a]).is_err());
        let name = x.name().to_string();
        drop(veth);
        drop(x);
        drop(y);
        assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists());
    }
}
