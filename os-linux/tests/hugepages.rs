//! Hugepage DMA memory on the real kernel, as root: both backends, both IOVA modes, physical
//! addresses checked against pagemap, exhaustion, memzones.
//!
//! Each test grows the hugepage pool by what it needs and gives it back; a missing
//! prerequisite is a skip, or a failure under `CI=true` (see `common::require`).

mod common;

use common::{available, hugepages, note, require, TempHugetlbfs};
use rdk_core::addr::{PhysAddr, VirtAddr};
use rdk_core::os::{DmaAlloc, DmaError, DmaRegion, DmaRequest};
use rdk_os_linux::{
    Backend, HugePageSize, IovaMode, LinuxOs, LinuxRegion, MemoryConfig, MemzoneError,
    MemzoneFlags, Pagemap, RegionKind, SysRoots,
};

const MIB2: usize = 2 << 20;

/// A hugetlbfs-backed OS on `mount`.
fn hugetlbfs_os(size: HugePageSize, mount: &TempHugetlbfs, iova_mode: IovaMode) -> LinuxOs {
    LinuxOs::new(MemoryConfig {
        backend: Backend::Hugetlbfs {
            page_size: size,
            mount: Some(mount.path().to_path_buf()),
        },
        iova_mode,
    })
    .unwrap()
}

/// The region's memory as words. The tests are the only users of the memory meanwhile.
fn words(r: &mut LinuxRegion) -> &mut [u64] {
    // SAFETY: va..va+len is the region's live, writable mapping (DmaRegion contract), 8-byte
    // aligned (page aligned); the slice borrows `r` exclusively, so it cannot outlive it or
    // alias another slice; no device uses it.
    unsafe { std::slice::from_raw_parts_mut(r.as_ptr().cast::<u64>(), r.len() / 8) }
}

/// Zeroed on arrival, then every word written and read back.
fn check_zeroed_and_writable(r: &mut LinuxRegion) {
    let r_name = r.to_string();
    let w = words(r);
    assert!(w.iter().all(|&x| x == 0), "{r_name}: not zeroed");
    for (i, x) in w.iter_mut().enumerate() {
        *x = i as u64 ^ 0x5a5a_5a5a_5a5a_5a5a;
    }
    assert!(
        w.iter()
            .enumerate()
            .all(|(i, &x)| x == i as u64 ^ 0x5a5a_5a5a_5a5a_5a5a),
        "{r_name}: write/read-back mismatch"
    );
}

/// Physical addresses of `r` (IOVA = PA) against pagemap read independently: non-zero,
/// aligned to the hugepage, equal to `iova_at`, contiguous inside each hugepage (several 4 KiB
/// entries of one hugepage map to its base plus the offset), and `contiguous_from` exact.
/// Returns the physical address of each hugepage.
fn check_physical(r: &LinuxRegion) -> Vec<PhysAddr> {
    let pm = Pagemap::open(&SysRoots::host()).unwrap();
    let ps = r.page_size();
    assert_eq!(r.len() % ps, 0);
    let va = |off: usize| VirtAddr::new(r.va().get() + off);
    let bases: Vec<PhysAddr> = (0..r.len() / ps)
        .map(|i| pm.phys_addr(va(i * ps)).unwrap())
        .collect();
    let offsets = [
        0,
        4096,
        8192 + 123,
        ps / 2,
        ps / 2 + 4096 * 3 + 7,
        ps - 4096,
        ps - 1,
    ];
    for (i, &base) in bases.iter().enumerate() {
        assert_ne!(base.get(), 0, "page {i}: physical address 0");
        assert!(base.is_aligned(ps as u64), "page {i}: {base:?} not aligned");
        for off in offsets {
            let pa = pm.phys_addr(va(i * ps + off)).unwrap();
            assert_eq!(
                pa,
                base.wrapping_add(off as u64),
                "page {i} offset {off:#x}"
            );
            assert_eq!(
                r.iova_at(i * ps + off).unwrap().get(),
                pa.get(),
                "iova_at disagrees with pagemap at page {i} offset {off:#x}"
            );
        }
    }
    // contiguous_from against a naive walk over the pagemap addresses.
    for i in 0..bases.len() {
        let run = 1
            + (i + 1..bases.len())
                .take_while(|&j| bases[j].get() == bases[j - 1].get() + ps as u64)
                .count();
        for off in [0, 1, ps / 3, ps - 1] {
            assert_eq!(
                r.contiguous_from(i * ps + off),
                run * ps - off,
                "contiguous_from(page {i} + {off:#x})"
            );
        }
    }
    assert_eq!(r.contiguous_from(r.len()), 0);
    assert_eq!(r.iova_at(r.len()), None);
    bases
}

/// What every hugepage region of `pages` pages of `size` must show.
fn check_hugepage_region(test: &str, os: &LinuxOs, size: HugePageSize, pages: usize) {
    let ps = size.bytes();
    let want = (pages - 1) * ps + 1; // rounds up to `pages` pages
    let mut r = os.dma_alloc(&DmaRequest::new(test, want)).unwrap();
    assert_eq!(r.len(), pages * ps);
    assert_eq!(r.page_size(), ps);
    assert!(r.is_locked() && !r.is_plain());
    assert!(r.va().is_aligned(ps));
    check_zeroed_and_writable(&mut r);
    match os.config().iova_mode {
        IovaMode::Pa => {
            let bases = check_physical(&r);
            note(
                test,
                &format!("{r}; page PAs {bases:?}; runs {}", r.contiguous_runs()),
            );
        }
        IovaMode::Va => {
            assert!(r.is_iova_contiguous());
            for off in [0, 4096, ps + 17, r.len() - 1] {
                assert_eq!(r.iova_at(off).unwrap().get(), (r.va().get() + off) as u64);
            }
            note(test, &r.to_string());
        }
    }
}

#[test]
fn memfd_2m_pa() {
    let Some(_env) = require("memfd_2m_pa", hugepages(HugePageSize::Size2M, 3)) else {
        return;
    };
    let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Pa)).unwrap();
    check_hugepage_region("memfd_2m_pa", &os, HugePageSize::Size2M, 3);
    let r = os.dma_alloc(&DmaRequest::new("kind", 1)).unwrap();
    assert_eq!(r.kind(), RegionKind::Memfd(HugePageSize::Size2M));
}

#[test]
fn hugetlbfs_2m_pa() {
    let Some(_env) = require("hugetlbfs_2m_pa", hugepages(HugePageSize::Size2M, 3)) else {
        return;
    };
    let Some(mount) = require(
        "hugetlbfs_2m_pa",
        TempHugetlbfs::mount(HugePageSize::Size2M),
    ) else {
        return;
    };
    let os = hugetlbfs_os(HugePageSize::Size2M, &mount, IovaMode::Pa);
    check_hugepage_region("hugetlbfs_2m_pa", &os, HugePageSize::Size2M, 3);
    let r = os.dma_alloc(&DmaRequest::new("kind", 1)).unwrap();
    assert_eq!(r.kind(), RegionKind::Hugetlbfs(HugePageSize::Size2M));
    assert_eq!(
        std::fs::read_dir(mount.path()).unwrap().count(),
        0,
        "files are unlinked once open"
    );
}

#[test]
fn memfd_and_hugetlbfs_2m_va() {
    let Some(_env) = require(
        "memfd_and_hugetlbfs_2m_va",
        hugepages(HugePageSize::Size2M, 2),
    ) else {
        return;
    };
    let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Va)).unwrap();
    check_hugepage_region("memfd_2m_va", &os, HugePageSize::Size2M, 2);
    // An alignment above the page size costs an address-space reservation; VA and IOVA honour it.
    let r = os
        .dma_alloc(&DmaRequest::new("aligned", MIB2).align(64 << 20))
        .unwrap();
    assert!(r.va().is_aligned(64 << 20) && r.iova_at(0).unwrap().is_aligned(64 << 20));
    drop(r);
    let Some(mount) = require(
        "memfd_and_hugetlbfs_2m_va",
        TempHugetlbfs::mount(HugePageSize::Size2M),
    ) else {
        return;
    };
    let os = hugetlbfs_os(HugePageSize::Size2M, &mount, IovaMode::Va);
    check_hugepage_region("hugetlbfs_2m_va", &os, HugePageSize::Size2M, 2);
}

#[test]
fn one_gib_pages_if_the_machine_offers_them() {
    const TEST: &str = "one_gib_pages_if_the_machine_offers_them";
    // 2 MiB support is the prerequisite; 1 GiB pages are optional (not a CI failure).
    let Some(_) = require(TEST, common::root()) else {
        return;
    };
    let env = match hugepages(HugePageSize::Size1G, 1) {
        Ok(env) => env,
        Err(why) => {
            note(TEST, &format!("SKIPPED (1 GiB pages are optional): {why}"));
            return;
        }
    };
    note(TEST, &format!("1 GiB pool grown by {}", env.added()));
    let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size1G, IovaMode::Pa)).unwrap();
    check_hugepage_region("memfd_1g_pa", &os, HugePageSize::Size1G, 1);
    drop(os);
    let Some(mount) = require(TEST, TempHugetlbfs::mount(HugePageSize::Size1G)) else {
        return;
    };
    let os = hugetlbfs_os(HugePageSize::Size1G, &mount, IovaMode::Pa);
    check_hugepage_region("hugetlbfs_1g_pa", &os, HugePageSize::Size1G, 1);
}

#[test]
fn contiguity_in_pa_mode_is_reported_honestly() {
    const TEST: &str = "contiguity_in_pa_mode_is_reported_honestly";
    let Some(_env) = require(TEST, hugepages(HugePageSize::Size2M, 4)) else {
        return;
    };
    let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Pa)).unwrap();
    // One hugepage is always contiguous.
    let one = os
        .dma_alloc(&DmaRequest::new("one", MIB2).contiguous())
        .unwrap();
    assert!(one.is_iova_contiguous());
    drop(one);
    // Three: contiguous only if the kernel handed out adjacent pages; either way the answer
    // must match pagemap.
    let want = 3 * MIB2;
    match os.dma_alloc(&DmaRequest::new("three", want).contiguous()) {
        Ok(r) => {
            let bases = check_physical(&r);
            assert!(r.is_iova_contiguous());
            assert!(bases
                .windows(2)
                .all(|w| w[1].get() == w[0].get() + MIB2 as u64));
            note(TEST, &format!("got a contiguous run: {r}"));
        }
        Err(DmaError::NotContiguous {
            requested,
            longest_run,
        }) => {
            assert_eq!(requested, want);
            assert!(longest_run >= MIB2 && longest_run < want && longest_run % MIB2 == 0);
            // The same pages without the requirement, to check the claim against pagemap.
            let r = os.dma_alloc(&DmaRequest::new("three", want)).unwrap();
            check_physical(&r);
            note(
                TEST,
                &format!("not contiguous (longest run {longest_run}), as pagemap agrees: {r}"),
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Asking for more pages than are available gives `Exhausted` with the exact shortfall.
fn check_exhaustion(test: &str, os: &LinuxOs) {
    let avail = available(HugePageSize::Size2M) as usize;
    let want = (avail + 3) * MIB2;
    let e = os.dma_alloc(&DmaRequest::new(test, want)).unwrap_err();
    assert_eq!(
        e,
        DmaError::Exhausted {
            requested: want,
            page_size: MIB2,
            pages_short: 3
        },
        "{e}"
    );
    let s = e.to_string();
    assert!(
        s.contains("need 3 more 2048 KiB pages") && s.contains("nr_hugepages by 3"),
        "{s}"
    );
    note(test, &s);
    assert_eq!(
        available(HugePageSize::Size2M) as usize,
        avail,
        "the failed attempt holds no pages"
    );
    os.dma_alloc(&DmaRequest::new(test, MIB2)).unwrap();
}

#[test]
fn exhaustion_names_the_shortfall() {
    const TEST: &str = "exhaustion_names_the_shortfall";
    let Some(_env) = require(TEST, hugepages(HugePageSize::Size2M, 2)) else {
        return;
    };
    let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Va)).unwrap();
    check_exhaustion("exhaustion (memfd)", &os);
    let Some(mount) = require(TEST, TempHugetlbfs::mount(HugePageSize::Size2M)) else {
        return;
    };
    check_exhaustion(
        "exhaustion (hugetlbfs)",
        &hugetlbfs_os(HugePageSize::Size2M, &mount, IovaMode::Va),
    );
}

#[test]
fn memzones_on_hugepages() {
    const TEST: &str = "memzones_on_hugepages";
    let Some(_env) = require(TEST, hugepages(HugePageSize::Size2M, 2)) else {
        return;
    };
    let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Pa)).unwrap();
    let ring = os
        .memzone_reserve("rxq0_ring", 64 << 10, 4096, MemzoneFlags::NONE.contiguous())
        .unwrap();
    assert_eq!(ring.len(), MIB2);
    assert!(ring.is_iova_contiguous());
    assert_eq!(ring.iova_at(0), ring.region().iova_at(0));
    assert_ne!(ring.iova_at(0).unwrap().get(), 0);
    assert_eq!(
        os.memzone_reserve("rxq0_ring", 4096, 64, MemzoneFlags::NONE)
            .unwrap_err(),
        MemzoneError::Duplicate {
            name: "rxq0_ring".into()
        }
    );
    let found = os.memzone_lookup("rxq0_ring").unwrap();
    assert!(found.same_zone(&ring));
    assert_eq!(found.va(), ring.va());

    let avail = available(HugePageSize::Size2M) as usize;
    let e = os
        .memzone_reserve("too_big", (avail + 2) * MIB2, 64, MemzoneFlags::NONE)
        .unwrap_err();
    assert!(
        matches!(
            e,
            MemzoneError::Dma(DmaError::Exhausted { pages_short: 2, .. })
        ),
        "{e}"
    );
    assert_eq!(os.memzone_names(), ["rxq0_ring"]);

    os.memzone_free(ring).unwrap();
    assert!(os.memzone_lookup("rxq0_ring").is_none());
    drop(found);
    assert_eq!(
        available(HugePageSize::Size2M) as usize,
        avail + 1,
        "page given back"
    );
    let again = os
        .memzone_reserve("rxq0_ring", 64 << 10, 4096, MemzoneFlags::NONE)
        .unwrap();
    assert!(os.memzone_lookup("rxq0_ring").unwrap().same_zone(&again));
}
