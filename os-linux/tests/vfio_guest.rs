//! VFIO against real (emulated) PCI devices, inside the VM lab's QEMU guest
//! (/work/shared/lab/vm): virtio-net, e1000e and igb behind an intel-iommu, and an e1000e and a
//! transitional virtio-net (legacy + modern) in no-IOMMU mode. `tests/run.sh` (tier `vm`)
//! builds the guests, boots them and runs this binary with the filter `viommu_` (IOMMU guest)
//! or `noiommu_` (no-IOMMU guest). The virtio tests drive rdk-pmd-virtio over VFIO against
//! QEMU's device model, with the guest kernel's virtio-net as the peer (`vfio_guest/virtio_pmd.rs`).
//!
//! Outside the lab (`VMLAB_E1000E_BDF` unset) every test prints why it skips and passes, so a
//! host `cargo test` stays green, under `CI=true` too: the lab is not a prerequisite of the
//! host tiers but the guest itself, and the `vm` tier (which fails under `CI=true` when QEMU or
//! the guest cannot be built) is what runs these. Inside the lab a test in the wrong guest
//! fails.
//!
//! e1000e facts (Intel 82574 datasheet; the lab's vfio-probe.c): register offsets below,
//! legacy 16-byte TX/RX descriptors, STATUS = 0x00080283 after reset with link up.

mod common;
#[path = "vfio_guest/virtio_pmd.rs"]
mod virtio_pmd;

use rdk_core::os::pci::{IrqKind, Mmio, PciDevice};
use rdk_core::os::{DmaAlloc, DmaRegion, DmaRequest, EventNotifier};
use rdk_core::pci::caps::{self, id as cap_id, CapIter};
use rdk_core::pci::config::{command, DeviceConfig, COMMAND};
use rdk_core::pci::{MsixInfo, PciAddr, PciId};
use rdk_core::virtio::Features;
use rdk_os_linux::pci::{bind_to_driver, bind_to_vfio, scan_one, VFIO_PCI_DRIVER};
use rdk_os_linux::vfio::{IommuKind, Vfio, VfioBar, VfioDevice, VfioError, VfioOs, VfioRegion};
use rdk_os_linux::{HugePageSize, IovaMode, LinuxOs, MemoryConfig, SysRoots};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// e1000e registers (82574 datasheet §10.2).
mod reg {
    pub const CTRL: usize = 0x0;
    pub const STATUS: usize = 0x8;
    pub const ICR: usize = 0xc0;
    pub const ICS: usize = 0xc8;
    pub const IMS: usize = 0xd0;
    pub const IMC: usize = 0xd8;
    pub const IVAR: usize = 0xe4;
    pub const TCTL: usize = 0x400;
    pub const TIPG: usize = 0x410;
    pub const TDBAL: usize = 0x3800;
    pub const TDBAH: usize = 0x3804;
    pub const TDLEN: usize = 0x3808;
    pub const TDH: usize = 0x3810;
    pub const TDT: usize = 0x3818;
    pub const RAL0: usize = 0x5400;
    pub const RAH0: usize = 0x5404;
    /// I/O BAR: IOADDR selects a register, IODATA accesses it (§10.2.1).
    pub const IOADDR: usize = 0x0;
    pub const IODATA: usize = 0x4;
    pub const CTRL_RST: u32 = 1 << 26;
    pub const CTRL_SLU: u32 = 1 << 6;
    pub const ICR_LSC: u32 = 1 << 2;
    pub const ICR_OTHER: u32 = 1 << 24;
    /// TCTL: EN | PSP | CT=0xf | COLD=0x3f.
    pub const TCTL_ON: u32 = (1 << 1) | (1 << 3) | (0x0f << 4) | (0x3f << 12);
    /// TX descriptor command: EOP | IFCS | RS.
    pub const TXD_CMD: u8 = 0x01 | 0x02 | 0x08;
    pub const TXD_STAT_DD: u8 = 0x01;
}

const STATUS_AFTER_RESET: u32 = 0x0008_0283;
const TX_RING: usize = 8;
/// An IOVA the tests never map (vfio-probe uses the same): a DMA there must fault.
const UNMAPPED_IOVA: u64 = 0x7f00_0000;

struct Lab {
    e1000e: PciAddr,
    virtio: Option<PciAddr>,
    igb: Option<PciAddr>,
    peer: Option<String>,
}

/// The lab's NICs, or `None` (with the reason printed) outside the lab.
fn lab(test: &str) -> Option<Lab> {
    let bdf = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse::<PciAddr>().ok())
    };
    let Some(e1000e) = bdf("VMLAB_E1000E_BDF") else {
        common::note(
            test,
            "SKIPPED: not in the VM lab (VMLAB_E1000E_BDF unset); `STEPS=vm bash \
             tests/run.sh` boots the guest and runs it there",
        );
        return None;
    };
    Some(Lab {
        e1000e,
        virtio: bdf("VMLAB_VIRTIO_BDF"),
        igb: bdf("VMLAB_IGB_BDF"),
        peer: std::env::var("VMLAB_PEER_IF")
            .ok()
            .filter(|s| !s.is_empty()),
    })
}

fn noiommu_guest() -> bool {
    std::fs::read_dir("/dev/vfio")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("noiommu-"))
        })
        .unwrap_or(false)
}

fn vfio_os(mode: IovaMode) -> VfioOs {
    let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, mode))
        .expect("2 MiB hugepages (the lab's /init reserves 16)");
    VfioOs::new(os, Vfio::new().expect("open /dev/vfio/vfio"))
}

fn peer_rx(peer: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{peer}/statistics/rx_packets"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `f` every millisecond until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}

/// The capability ids of `dev`, walked with rdk-core's loop-proof iterator.
fn cap_ids(dev: &VfioDevice) -> Vec<u8> {
    let cfg = DeviceConfig(dev);
    CapIter::new(&cfg).unwrap().map(|c| c.unwrap().id).collect()
}

/// An e1000e with a TX ring in `mem` (a 2 MiB region: ring at +0, frame buffer at +0x2000).
struct E1000e<'a> {
    bar: VfioBar,
    mem: &'a VfioRegion,
    next: usize,
}

impl<'a> E1000e<'a> {
    /// Resets the NIC (CTRL.RST) and sets up transmit into `mem`.
    fn new(dev: &VfioDevice, mem: &'a VfioRegion) -> Self {
        dev.set_bus_master(true).unwrap();
        let bar = dev.map_bar(0).unwrap();
        bar.write32(reg::IMC, u32::MAX);
        bar.write32(reg::CTRL, bar.read32(reg::CTRL) | reg::CTRL_RST);
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            wait_for(Duration::from_millis(200), || bar.read32(reg::CTRL)
                & reg::CTRL_RST
                == 0),
            "CTRL.RST did not self-clear"
        );
        bar.write32(reg::IMC, u32::MAX);
        let _ = bar.read32(reg::ICR);
        bar.write32(reg::CTRL, bar.read32(reg::CTRL) | reg::CTRL_SLU);
        let ring = mem.iova_at(0).unwrap().get();
        bar.write32(reg::TDBAL, ring as u32);
        bar.write32(reg::TDBAH, (ring >> 32) as u32);
        bar.write32(reg::TDLEN, (TX_RING * 16) as u32);
        bar.write32(reg::TDH, 0);
        bar.write32(reg::TDT, 0);
        bar.write32(reg::TIPG, 0x0060_200a);
        bar.write32(reg::TCTL, reg::TCTL_ON);
        Self { bar, mem, next: 0 }
    }

    fn mac(&self) -> [u8; 6] {
        let (l, h) = (self.bar.read32(reg::RAL0), self.bar.read32(reg::RAH0));
        let (l, h) = (l.to_le_bytes(), h.to_le_bytes());
        [l[0], l[1], l[2], l[3], h[0], h[1]]
    }

    /// Queues one 60-byte frame read from `buf_iova` and returns the descriptor's status
    /// byte once the device wrote DD back (or 0 after `timeout`).
    fn send(&mut self, buf_iova: u64, timeout: Duration) -> u8 {
        assert!(self.next < TX_RING - 1);
        let d = self.next;
        let desc = self.mem.as_ptr().wrapping_add(d * 16);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&buf_iova.to_le_bytes());
        bytes[8..10].copy_from_slice(&60u16.to_le_bytes());
        bytes[11] = reg::TXD_CMD;
        // SAFETY: descriptor `d` (16 bytes at d*16 < 0x80) lies inside the 2 MiB region,
        // which lives as long as `self`; the device does not own it until TDT moves past it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), desc, 16) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.next += 1;
        self.bar.write32(reg::TDT, self.next as u32);
        let status = desc.wrapping_add(12);
        let mut seen = 0;
        wait_for(timeout, || {
            // SAFETY: the status byte of the descriptor above, written by the device; read
            // volatile because the device, not this thread, changes it.
            seen = unsafe { status.read_volatile() };
            seen & reg::TXD_STAT_DD != 0
        });
        seen
    }

    /// Writes a broadcast frame (ethertype 0x88b5, local experimental) at region offset
    /// `off` and returns its IOVA.
    fn frame(&self, off: usize, text: &[u8]) -> u64 {
        let mut f = [0u8; 60];
        f[..6].fill(0xff);
        f[6..12].copy_from_slice(&self.mac());
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f[14..14 + text.len()].copy_from_slice(text);
        assert!(off + 60 <= self.mem.len());
        // SAFETY: off..off+60 is inside the region (asserted) and no descriptor points there
        // yet, so the device is not reading it.
        unsafe {
            std::ptr::copy_nonoverlapping(f.as_ptr(), self.mem.as_ptr().wrapping_add(off), 60)
        };
        self.mem.iova_at(off).unwrap().get()
    }

    /// Routes the LSC interrupt to `kind` vector 0 and raises it through ICS.
    fn raise_lsc(&self, kind: IrqKind) {
        self.bar.write32(reg::IMC, u32::MAX);
        let _ = self.bar.read32(reg::ICR);
        if kind == IrqKind::Msix {
            // IVAR "other" cause → vector 0, valid bit (82574 §10.2.4.9).
            self.bar.write32(reg::IVAR, 0x8 << 16);
        }
        self.bar.write32(reg::IMS, reg::ICR_LSC | reg::ICR_OTHER);
        self.bar.write32(reg::ICS, reg::ICR_LSC);
    }

    fn quiet(&self) {
        self.bar.write32(reg::IMC, u32::MAX);
        let _ = self.bar.read32(reg::ICR);
    }
}

impl Drop for E1000e<'_> {
    fn drop(&mut self) {
        self.bar.write32(reg::TCTL, 0);
        self.quiet();
    }
}

/// Enables `kind` with one eventfd, raises LSC, and returns how long delivery took.
fn interrupt_roundtrip(dev: &VfioDevice, nic: &E1000e<'_>, kind: IrqKind) -> Duration {
    let ev = dev.irq_event().unwrap();
    dev.irq_enable(kind, &[&ev]).unwrap();
    let t0 = Instant::now();
    nic.raise_lsc(kind);
    let fired = ev.wait(Some(Duration::from_secs(3))).unwrap();
    let took = t0.elapsed();
    assert!(
        fired,
        "{kind} interrupt not delivered to the eventfd within 3 s"
    );
    assert!(ev.ack().unwrap() >= 1);
    nic.quiet();
    if kind == IrqKind::Intx {
        dev.irq_unmask(IrqKind::Intx).unwrap();
    }
    dev.irq_disable(kind).unwrap();
    took
}

/// The kernel log line reporting an IOMMU fault at `iova`, if any (as vfio-probe finds it).
fn iommu_fault_line(iova: u64) -> Option<String> {
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: SYSLOG_ACTION_READ_ALL (3) writes at most `len` bytes into `buf`, which is
    // that long and lives for the call.
    let n = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), buf.len() as libc::c_int) };
    let n = usize::try_from(n).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let needle = format!("{iova:x}");
    text.lines()
        .rev()
        .find(|l| l.find(&needle).is_some_and(|at| l[..at].contains("ault")))
        .map(str::to_owned)
}

#[test]
fn viommu_open_every_nic_region_info_config_bars_in_one_container() {
    let Some(lab) = lab("viommu_open_every_nic_region_info_config_bars_in_one_container") else {
        return;
    };
    assert!(!noiommu_guest(), "this test needs the intel-iommu guest");
    let (Some(virtio), Some(igb)) = (lab.virtio, lab.igb) else {
        panic!("boot with --nics virtio,e1000e,igb");
    };
    let roots = SysRoots::host();
    let os = vfio_os(IovaMode::Va);
    let mut devs = Vec::new();
    for addr in [virtio, lab.e1000e, igb] {
        let sys = scan_one(&roots, addr).unwrap();
        assert_eq!(sys.driver.as_deref(), Some(VFIO_PCI_DRIVER), "{addr}");
        let dev = os.open(addr).unwrap();
        assert!(Arc::ptr_eq(dev.group().container(), os.vfio().container()));
        assert_eq!(Some(dev.group().number()), sys.iommu_group);
        let id = PciId::read(&DeviceConfig(&dev)).unwrap();
        assert_eq!(id, sys.id, "config space ids = sysfs ids for {addr}");
        assert!(dev.info().is_pci() && dev.config_len() >= 256);
        println!(
            "{addr}: {:04x}:{:04x} {:?}",
            id.vendor,
            id.device,
            dev.info()
        );
        devs.push(dev);
    }
    let iommu = os.vfio().container().iommu().unwrap();
    println!("container: {iommu:?}");
    assert!(matches!(iommu.kind, IommuKind::Type1v2 | IommuKind::Type1));
    assert!(!iommu.ranges.is_empty(), "intel-iommu reports IOVA ranges");
    assert!(os
        .vfio()
        .container()
        .usable_ranges()
        .iter()
        .all(|r| r.end < 0xfee0_0000 || r.start > 0xfeef_ffff));

    // e1000e: BAR0 128 KiB memory, BAR1 128 KiB flash, BAR2 I/O, BAR3 16 KiB with the MSI-X
    // table (5 vectors), no BAR4/5.
    let e = &devs[1];
    let bar0 = e.bar_info(0).unwrap().unwrap();
    assert_eq!(
        (bar0.size, bar0.kind.is_memory(), bar0.mappable),
        (0x2_0000, true, true)
    );
    let bar2 = e.bar_info(2).unwrap().unwrap();
    assert!(!bar2.kind.is_memory() && !bar2.mappable, "{bar2:?}");
    assert_eq!(e.bar_info(1).unwrap().unwrap().size, 0x2_0000);
    assert_eq!(e.bar_info(4).unwrap(), None);
    assert_eq!(e.bar_info(3).unwrap().unwrap().size, 0x4000);
    let msix: MsixInfo = e.msix().unwrap();
    assert_eq!((msix.table_bar, msix.table_size), (3, 5));
    assert_eq!(e.irq_count(IrqKind::Msix).unwrap(), 5);
    assert_eq!(e.irq_count(IrqKind::Msi).unwrap(), 1);
    assert_eq!(e.irq_count(IrqKind::Intx).unwrap(), 1);
    let r3 = e.region_info(3).unwrap();
    println!("e1000e BAR3 region: {r3:?}");
    assert!(cap_ids(e).contains(&cap_id::MSIX));
    assert_eq!(
        caps::find(&DeviceConfig(e), cap_id::MSIX)
            .unwrap()
            .unwrap()
            .offset,
        msix.cap_offset
    );
    let bar3 = e.map_bar(3).unwrap();
    println!("e1000e BAR3 mapped areas: {:?}", bar3.mapped_areas());
    // The MSI-X table is readable through the window either way (mapped or via pread).
    let ctrl = bar3.read32(msix.table_offset as usize + 12);
    assert_ne!(ctrl, u32::MAX, "vector control word of entry 0");
    // As an older kernel would have it: the table's page left out, served through the file.
    let holed = e.map_bar_without_msix_table(3).unwrap();
    let (ts, te) = msix.table_range();
    assert!(holed
        .mapped_areas()
        .iter()
        .all(|&(s, end)| end <= ts - ts % 4096 || s >= te));
    assert!(
        !holed.mapped_areas().is_empty(),
        "the PBA page stays mapped"
    );
    // Through the file, vfio-pci keeps the table to itself (reads all ones, drops writes);
    // the rest of the hole page reaches the device.
    for entry in 0..msix.table_size as usize {
        assert_eq!(holed.read32(ts as usize + entry * 16 + 12), u32::MAX);
    }
    let beyond = (te as usize).next_multiple_of(16) + 16;
    assert!(beyond < 4096);
    assert_eq!(
        holed.read32(beyond),
        bar3.read32(beyond),
        "hole via pread = via mmap"
    );
    let pba = msix.pba_offset as usize;
    assert_eq!(
        holed.read32(pba),
        bar3.read32(pba),
        "PBA through the mapping"
    );
    println!(
        "e1000e BAR3 without the MSI-X table: {:?}",
        holed.mapped_areas()
    );

    if e.info().can_reset() {
        e.reset().unwrap();
    }
    let bar = e.map_bar(0).unwrap();
    bar.write32(reg::CTRL, bar.read32(reg::CTRL) | reg::CTRL_RST);
    assert!(wait_for(Duration::from_millis(500), || bar
        .read32(reg::CTRL)
        & reg::CTRL_RST
        == 0));
    let status = bar.read32(reg::STATUS);
    println!("e1000e STATUS after reset: {status:#010x}");
    assert_eq!(status, STATUS_AFTER_RESET);
    // The same register through the I/O BAR (served by pread/pwrite on the region).
    let io = e.map_bar(2).unwrap();
    assert!(io.mapped_areas().is_empty());
    io.write32(reg::IOADDR, reg::STATUS as u32);
    assert_eq!(io.read32(reg::IODATA), status, "STATUS via IOADDR/IODATA");
    assert_eq!(bar.read32(0x2_0000), u32::MAX, "outside the window");

    e.set_bus_master(true).unwrap();
    let cmd = e.config_read_u16(COMMAND).unwrap();
    assert_eq!(cmd & command::BUS_MASTER, command::BUS_MASTER);
    e.set_bus_master(false).unwrap();
    assert_eq!(e.config_read_u16(COMMAND).unwrap() & command::BUS_MASTER, 0);

    // igb: 10 MSI-X vectors; STATUS readable.
    let g = &devs[2];
    assert_eq!(g.irq_count(IrqKind::Msix).unwrap(), 10);
    assert_ne!(g.map_bar(0).unwrap().read32(reg::STATUS), u32::MAX);

    // virtio-net (modern): the common-config capability points into a BAR; 3 queues.
    let v = &devs[0];
    let cfg = DeviceConfig(v);
    let common = CapIter::new(&cfg)
        .unwrap()
        .map(Result::unwrap)
        .filter(|c| c.id == cap_id::VENDOR)
        .find(|c| v.config_read_u8(c.offset + 3).unwrap() == 1)
        .expect("VIRTIO_PCI_CAP_COMMON_CFG");
    let vbar = v.config_read_u8(common.offset + 4).unwrap();
    let off = v.config_read_u32(common.offset + 8).unwrap() as usize;
    let win = v.map_bar(vbar).unwrap();
    win.check(off + 0x12, 2).unwrap();
    assert_eq!(win.read16(off + 0x12), 3, "num_queues: rx, tx, ctrl");
    win.write32(off, 1); // device_feature_select = 1: bits 32..63
    let hi = win.read32(off + 4);
    assert_eq!(hi & 0b11, 0b11, "VERSION_1 and ACCESS_PLATFORM");
}

#[test]
fn viommu_e1000e_dma_msix_msi_intx_and_a_blocked_stray_dma() {
    let Some(lab) = lab("viommu_e1000e_dma_msix_msi_intx_and_a_blocked_stray_dma") else {
        return;
    };
    assert!(!noiommu_guest(), "this test needs the intel-iommu guest");
    let os = vfio_os(IovaMode::Va);
    let container = os.vfio().container().clone();
    // Allocated before any device is open: mapped when the first group is attached.
    let early = os.dma_alloc(&DmaRequest::new("early", 4096)).unwrap();
    assert!(container.iommu().is_none() && container.mapping_count() == 1);
    let dev = os.open(lab.e1000e).unwrap();
    let mem = os
        .dma_alloc(&DmaRequest::new("e1000e", 2 << 20).align(2 << 20))
        .unwrap();
    assert!(mem.is_iommu_mapped() && mem.is_iova_contiguous());
    assert_eq!(container.mapping_count(), 2);
    let iova = mem.iova_at(0).unwrap();
    println!(
        "region {mem:?} at IOVA {iova}, early at {:?}",
        early.iova_at(0)
    );
    assert!(iova.is_aligned(2 << 20));
    assert!(!container.is_mapped(rdk_core::addr::Iova::new(UNMAPPED_IOVA)));

    let mut nic = E1000e::new(&dev, &mem);
    let rx0 = lab.peer.as_deref().map(peer_rx);
    let frame_iova = nic.frame(0x2000, b"rdk vfio tx");
    // The same frame from the early region proves the deferred mapping too.
    // SAFETY: copies 60 bytes from the region (offset 0x2000, written above) into the early
    // region (4096 bytes); no descriptor points at the early region yet.
    unsafe { std::ptr::copy_nonoverlapping(mem.as_ptr().wrapping_add(0x2000), early.as_ptr(), 60) };
    let early_iova = early.iova_at(0).unwrap().get();
    let t0 = Instant::now();
    let st = nic.send(frame_iova, Duration::from_secs(5));
    assert_ne!(st & reg::TXD_STAT_DD, 0, "TX descriptor not written back");
    let st = nic.send(early_iova, Duration::from_secs(5));
    assert_ne!(st & reg::TXD_STAT_DD, 0, "TX from the early region");
    println!("two TX DMAs done in {:?}", t0.elapsed());
    if let (Some(peer), Some(rx0)) = (lab.peer.as_deref(), rx0) {
        assert!(
            wait_for(Duration::from_secs(2), || peer_rx(peer) >= rx0 + 2),
            "peer {peer} did not receive both frames ({rx0} -> {})",
            peer_rx(peer)
        );
    }

    for kind in [IrqKind::Msix, IrqKind::Msi, IrqKind::Intx] {
        let took = interrupt_roundtrip(&dev, &nic, kind);
        println!("{kind} interrupt delivered to the eventfd in {took:?}");
    }
    // The same MSI-X interrupt dispatched by the interrupt thread, as a driver receives it.
    {
        use rdk_os_linux::intr::{InterruptThread, IntrEvent, SourceKind};
        use std::os::fd::AsFd;
        let thread = InterruptThread::spawn().unwrap();
        let h = thread.handle();
        let ev = dev.irq_event().unwrap();
        dev.irq_enable(IrqKind::Msix, &[&ev]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let reg = h
            .register(ev.as_fd(), SourceKind::Vfio, move |e: &IntrEvent| {
                let _ = tx.lock().unwrap().send(e.count);
            })
            .unwrap();
        let t0 = Instant::now();
        nic.raise_lsc(IrqKind::Msix);
        let count = rx
            .recv_timeout(Duration::from_secs(3))
            .expect("MSI-X interrupt not dispatched by the interrupt thread within 3 s");
        assert!(count >= 1);
        println!(
            "MSI-X interrupt dispatched by the interrupt thread in {:?}",
            t0.elapsed()
        );
        nic.quiet();
        h.unregister_sync(reg).unwrap();
        dev.irq_disable(IrqKind::Msix).unwrap();
        thread.shutdown().unwrap();
    }
    // Three vectors enable, then shrink to one (the kernel needs a disable in between).
    let evs: Vec<_> = (0..3).map(|_| dev.irq_event().unwrap()).collect();
    dev.irq_enable(IrqKind::Msix, &evs.iter().collect::<Vec<_>>())
        .unwrap();
    dev.irq_enable(IrqKind::Msix, &[&evs[0]]).unwrap();
    assert!(matches!(
        dev.irq_enable(IrqKind::Msix, &[&evs[0]; 6]),
        Err(rdk_core::os::pci::PciError::IrqUnsupported { available: 5, .. })
    ));
    dev.irq_disable(IrqKind::Msix).unwrap();

    // A stray DMA: the vIOMMU must block it and the kernel log it. (QEMU's e1000e sets DD
    // even then, so the log line is the proof.)
    let _ = nic.send(UNMAPPED_IOVA, Duration::from_millis(300));
    let line = wait_for(Duration::from_secs(2), || {
        iommu_fault_line(UNMAPPED_IOVA).is_some()
    });
    assert!(
        line,
        "no DMAR fault for IOVA {UNMAPPED_IOVA:#x} in the kernel log"
    );
    println!("IOMMU fault: {}", iommu_fault_line(UNMAPPED_IOVA).unwrap());

    drop(nic);
    drop(mem);
    assert_eq!(container.mapping_count(), 1, "region unmapped on drop");
    drop(early);
    assert_eq!(container.mapping_count(), 0);
}

#[test]
fn viommu_virtio_net_pmd_traffic_both_ways_link_and_rx_interrupt() {
    let Some(lab) = lab("viommu_virtio_net_pmd_traffic_both_ways_link_and_rx_interrupt") else {
        return;
    };
    assert!(!noiommu_guest(), "this test needs the intel-iommu guest");
    let virtio = lab.virtio.expect("boot with --nics virtio,...");
    let peer = lab.peer.expect("boot with --peer virtio");
    let os = virtio_pmd::SharedOs(Arc::new(vfio_os(IovaMode::Va)));
    let dev = os.0.open(virtio).unwrap();
    let id = PciId::read(&DeviceConfig(&dev)).unwrap();
    assert_eq!(id.device, 0x1041, "the lab's virtio-net is modern-only");
    virtio_pmd::run(
        &os,
        dev,
        &peer,
        |d| rdk_pmd_virtio::PciTransport::new(d).expect("modern virtio-pci transport"),
        |f| {
            assert!(
                f.contains(Features::VERSION_1 | Features::ACCESS_PLATFORM),
                "VERSION_1 and ACCESS_PLATFORM negotiated (iommu_platform=on): {f:?}"
            )
        },
    );
    let container = os.0.vfio().container();
    assert_eq!(
        container.mapping_count(),
        0,
        "every ring and pool region unmapped once the port and pool are gone"
    );
    assert!(
        container.iommu().is_none(),
        "the last group left: the kernel released the IOMMU model"
    );
    // Opened again, the group attaches anew and the device negotiates from scratch.
    let dev = os.0.open(virtio).unwrap();
    assert!(container.iommu().is_some());
    let t = rdk_pmd_virtio::PciTransport::new(dev).unwrap();
    let again = rdk_pmd_virtio::VirtioNet::new(t, os.clone(), Default::default()).unwrap();
    assert!(again.features().contains(Features::ACCESS_PLATFORM));
}

/// The transitional boot (`tests/run.sh` vm): the lab's virtio NIC with `disable-legacy=off`
/// in the no-IOMMU guest. QEMU refuses `iommu_platform=on` on a device with a legacy
/// interface (a legacy driver cannot accept ACCESS_PLATFORM), so its DMA bypasses any vIOMMU
/// and only physical addresses are right: the no-IOMMU group, `IovaMode::Pa`. The same
/// device through its legacy I/O BAR0, then through its modern capabilities.
#[test]
fn noiommu_transitional_virtio_net_pmd_legacy_io_bar_then_modern() {
    let Some(lab) = lab("noiommu_transitional_virtio_net_pmd_legacy_io_bar_then_modern") else {
        return;
    };
    assert!(
        noiommu_guest(),
        "this test needs the no-IOMMU guest (VMLAB_NOIOMMU=1 build-guest.sh, --noiommu)"
    );
    let virtio = lab.virtio.expect("boot with --nics virtio");
    let peer = lab.peer.expect("boot with --peer virtio");
    let os = virtio_pmd::SharedOs(Arc::new(vfio_os(IovaMode::Pa)));
    let dev = os.0.open(virtio).unwrap();
    let id = PciId::read(&DeviceConfig(&dev)).unwrap();
    assert_eq!(
        id.device, 0x1000,
        "a transitional virtio-net (1af4:1000); boot it with disable-legacy=off"
    );
    let bar0 = dev.bar_info(0).unwrap().expect("BAR0");
    println!("legacy BAR0: {bar0:?}");
    assert!(
        !bar0.kind.is_memory(),
        "the legacy registers are in I/O space"
    );
    virtio_pmd::run(
        &os,
        dev,
        &peer,
        |d| {
            // A transitional device has both interfaces: the legacy one only when asked.
            let args = rdk_core::ethdev::DevArgs::parse("net_virtio0,force_legacy=1").unwrap();
            let t = rdk_pmd_virtio::AnyPciTransport::from_devargs(d, &args).unwrap();
            assert!(t.legacy(), "force_legacy=1 picks the legacy transport");
            t
        },
        |f| {
            assert!(!f.contains(Features::VERSION_1), "{f:?}");
            assert!(
                f.contains(Features::NET_MRG_RXBUF | rdk_pmd_virtio::ANY_LAYOUT),
                "{f:?}"
            );
        },
    );
    assert_eq!(os.0.vfio().container().mapping_count(), 0);
    // The same function through its modern interface, in the same boot: what rdk picks
    // unasked.
    let dev = os.0.open(virtio).unwrap();
    virtio_pmd::run(
        &os,
        dev,
        &peer,
        |d| {
            let t = rdk_pmd_virtio::AnyPciTransport::open(d, false).unwrap();
            assert!(
                !t.legacy(),
                "a device with modern capabilities is driven as modern"
            );
            t
        },
        |f| assert!(f.contains(Features::VERSION_1), "{f:?}"),
    );
    assert_eq!(os.0.vfio().container().mapping_count(), 0);
}

#[test]
fn viommu_igb_rebinds_to_its_kernel_driver_and_back_to_vfio() {
    let Some(lab) = lab("viommu_igb_rebinds_to_its_kernel_driver_and_back_to_vfio") else {
        return;
    };
    let igb = lab.igb.expect("boot with --nics virtio,e1000e,igb");
    let roots = SysRoots::host();
    if !std::path::Path::new("/sys/bus/pci/drivers/igb").exists() {
        let ok = std::process::Command::new("modprobe")
            .arg("igb")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "modprobe igb");
    }
    let b = bind_to_driver(&roots, igb, "igb").unwrap();
    assert!(b.changed && b.previous.as_deref() == Some(VFIO_PCI_DRIVER));
    assert_eq!(
        scan_one(&roots, igb).unwrap().driver.as_deref(),
        Some("igb")
    );
    // While igb drives it, VFIO must refuse the group and say why.
    let e = Vfio::new().unwrap().open(igb).unwrap_err();
    println!("open while on igb: {e}");
    assert!(
        matches!(&e, VfioError::NotBound { driver: Some(d), .. } if d == "igb"),
        "{e}"
    );
    b.undo(&roots).unwrap();
    assert_eq!(
        scan_one(&roots, igb).unwrap().driver.as_deref(),
        Some(VFIO_PCI_DRIVER)
    );
    let again = bind_to_vfio(&roots, igb).unwrap();
    assert!(!again.changed);
    let vfio = Vfio::new().unwrap();
    let dev = vfio.open(igb).unwrap();
    assert_eq!(dev.config_read_u16(0).unwrap(), 0x8086);
}

#[test]
fn noiommu_e1000e_dma_with_physical_addresses() {
    let Some(lab) = lab("noiommu_e1000e_dma_with_physical_addresses") else {
        return;
    };
    assert!(
        noiommu_guest(),
        "this test needs the no-IOMMU guest (VMLAB_NOIOMMU=1 build-guest.sh, --noiommu)"
    );
    // VA memory cannot serve a no-IOMMU group: the open must say so.
    let wrong = vfio_os(IovaMode::Va);
    let e = wrong.open(lab.e1000e).unwrap_err();
    assert!(e.to_string().contains("IovaMode::Pa"), "{e}");
    drop(wrong);

    let os = vfio_os(IovaMode::Pa);
    let dev = os.open(lab.e1000e).unwrap();
    let info = os.vfio().container().iommu().unwrap();
    assert_eq!(info.kind, IommuKind::NoIommu);
    assert!(dev.group().is_noiommu());
    let mem = os
        .dma_alloc(&DmaRequest::new("e1000e-pa", 2 << 20))
        .unwrap();
    assert!(!mem.is_iommu_mapped());
    let pa = mem.iova_at(0).unwrap();
    assert!(pa.is_aligned(2 << 20) && pa.get() != 0, "hugepage PA {pa}");
    assert_eq!(os.vfio().container().mapping_count(), 0, "no MAP_DMA");
    println!("no-IOMMU DMA region at physical address {pa}");

    let mut nic = E1000e::new(&dev, &mem);
    assert_eq!(nic.bar.read32(reg::STATUS), STATUS_AFTER_RESET);
    let rx0 = lab.peer.as_deref().map(peer_rx);
    let st = nic.send(nic.frame(0x2000, b"rdk noiommu tx"), Duration::from_secs(5));
    assert_ne!(st & reg::TXD_STAT_DD, 0, "TX descriptor not written back");
    if let (Some(peer), Some(rx0)) = (lab.peer.as_deref(), rx0) {
        assert!(
            wait_for(Duration::from_secs(2), || peer_rx(peer) > rx0),
            "peer {peer} did not receive the frame"
        );
    }
    let took = interrupt_roundtrip(&dev, &nic, IrqKind::Msix);
    println!("no-IOMMU MSI-X interrupt in {took:?}");
}
