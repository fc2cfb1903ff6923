//! What an unprivileged process gets: plain memory works, IOVA = VA hugepages work, and
//! IOVA = PA fails with a clear "needs CAP_SYS_ADMIN" rather than physical address 0.
//!
//! Run as root, the parent test copies this test binary somewhere any user can execute it and
//! runs its ignored `child_as_nobody` test as user `nobody` with a 4 MiB `RLIMIT_MEMLOCK`.

mod common;

use common::{hugepages, note, require};
use rdk_core::addr::VirtAddr;
use rdk_core::os::{DmaAlloc, DmaError, DmaRegion, DmaRequest};
use rdk_os_linux::pagemap::PagemapError;
use rdk_os_linux::{
    HugePageSize, IovaMode, LinuxOs, LinuxRegion, MemoryConfig, MemzoneError, MemzoneFlags,
    Pagemap, SysRoots,
};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

const CHILD_ENV: &str = "RDK_UNPRIVILEGED_CHILD";
const CHILD_HUGEPAGES_ENV: &str = "RDK_UNPRIVILEGED_CHILD_HUGEPAGES";
const NOBODY: u32 = 65534;
const MEMLOCK_LIMIT: u64 = 4 << 20;

#[test]
fn plain_memory_and_hidden_pfns_without_root() {
    const TEST: &str = "plain_memory_and_hidden_pfns_without_root";
    let Some(()) = require(TEST, common::root()) else {
        return;
    };
    // One free 2 MiB page for the child's hugepage checks; without hugepage support those
    // checks are left out (the plain-memory part needs none).
    let env = match hugepages(HugePageSize::Size2M, 1) {
        Ok(env) => Some(env),
        Err(why) if common::in_ci() => panic!("{TEST}: CI=true and no free 2 MiB page: {why}"),
        Err(why) => {
            note(TEST, &format!("SKIPPED (child's hugepage checks): {why}"));
            None
        }
    };

    let dir = tempfile::Builder::new()
        .prefix("rdk-unprivileged-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = Command::new(&exe)
        .args([
            "--ignored",
            "--exact",
            "child_as_nobody",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env(CHILD_HUGEPAGES_ENV, if env.is_some() { "1" } else { "0" })
        .current_dir(dir.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    note(TEST, &format!("child output:\n{stdout}{stderr}"));
    assert!(out.status.success(), "child failed: {}", out.status);
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run: {stdout}"
    );
}

/// The region's bytes; the child is the memory's only user.
fn bytes(r: &mut LinuxRegion) -> &mut [u8] {
    // SAFETY: va..va+len is the region's live, writable mapping (DmaRegion contract); the
    // slice borrows `r` exclusively, so it cannot outlive it or alias another slice; no device
    // uses it.
    unsafe { std::slice::from_raw_parts_mut(r.as_ptr(), r.len()) }
}

fn check_zeroed_and_writable(r: &mut LinuxRegion) {
    let name = r.to_string();
    let b = bytes(r);
    assert!(b.iter().all(|&x| x == 0), "{name}: not zeroed");
    b.fill(0xc3);
    assert!(b.iter().all(|&x| x == 0xc3), "{name}: not writable");
}

/// The unprivileged half; runs only when started by the test above.
#[test]
#[ignore = "started as user nobody by plain_memory_and_hidden_pfns_without_root"]
fn child_as_nobody() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("1") {
        note(
            "child_as_nobody",
            "not started by plain_memory_and_hidden_pfns_without_root; nothing to do",
        );
        return;
    }
    assert!(
        !nix::unistd::geteuid().is_root(),
        "the child must not be root"
    );
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_MEMLOCK,
        MEMLOCK_LIMIT,
        MEMLOCK_LIMIT,
    )
    .unwrap();

    // Plain memory: works, says what it is, IOVA = VA.
    let os = LinuxOs::plain();
    let mut small = os.dma_alloc(&DmaRequest::new("small", 64 << 10)).unwrap();
    assert!(small.is_plain() && small.is_locked());
    assert!(
        small.to_string().contains("plain memory (no DMA)"),
        "{small}"
    );
    assert_eq!(
        small.iova_at(100).unwrap().get(),
        small.va().get() as u64 + 100
    );
    check_zeroed_and_writable(&mut small);
    // Beyond RLIMIT_MEMLOCK: still usable, just not locked.
    let mut big = os.dma_alloc(&DmaRequest::new("big", 16 << 20)).unwrap();
    assert!(
        !big.is_locked(),
        "16 MiB cannot be locked under a 4 MiB limit"
    );
    check_zeroed_and_writable(&mut big);
    println!("plain: {small}; {big:?}");

    // Memzones on plain memory.
    let z = os
        .memzone_reserve("ring", 4096, 4096, MemzoneFlags::NONE)
        .unwrap();
    assert!(matches!(
        os.memzone_reserve("ring", 4096, 4096, MemzoneFlags::NONE),
        Err(MemzoneError::Duplicate { .. })
    ));
    assert!(os.memzone_lookup("ring").unwrap().same_zone(&z));
    os.memzone_free(z).unwrap();
    assert!(os.memzone_lookup("ring").is_none());

    // Pagemap hides physical addresses from us: an error, not address 0.
    let pm = Pagemap::open(&SysRoots::host()).unwrap();
    let e = pm
        .phys_addr(VirtAddr::from_ptr(small.as_ptr()))
        .unwrap_err();
    assert!(matches!(e, PagemapError::PfnHidden { .. }), "{e:?}");

    if std::env::var(CHILD_HUGEPAGES_ENV).as_deref() != Ok("1") {
        println!("hugepage checks left out: the parent could not provide a free 2 MiB page");
        return;
    }
    // IOVA = PA needs CAP_SYS_ADMIN, and says so.
    let pa = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Pa)).unwrap();
    let e = pa.dma_alloc(&DmaRequest::new("pa", 4096)).unwrap_err();
    assert!(matches!(e, DmaError::Permission { .. }), "{e}");
    assert!(
        e.to_string().contains("needs CAP_SYS_ADMIN (run as root)"),
        "{e}"
    );
    println!("IOVA = PA as nobody: {e}");
    // IOVA = VA hugepages need no privilege (2 MiB is within the lock limit).
    let va = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Va)).unwrap();
    let mut r = va.dma_alloc(&DmaRequest::new("va", 4096)).unwrap();
    assert!(r.is_locked() && r.is_iova_contiguous());
    check_zeroed_and_writable(&mut r);
    println!("IOVA = VA as nobody: {r}");
}
