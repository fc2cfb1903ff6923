//! A fake sysfs PCI tree for tests: device directories, driver and group links, bus files.

use crate::roots::SysRoots;
use rdk_core::pci::PciAddr;
use std::fs;
use std::path::PathBuf;

/// A device to put in a [`FakePci`].
pub(crate) struct FakeDevice {
    addr: PciAddr,
    vendor: u16,
    device: u16,
    class: u32,
    numa: i32,
    resource: String,
    driver: Option<&'static str>,
    group: Option<u32>,
}

impl FakeDevice {
    pub(crate) fn new(addr: &str, vendor: u16, device: u16, class: u32) -> Self {
        Self {
            addr: addr.parse().unwrap(),
            vendor,
            device,
            class,
            numa: -1,
            resource: "0x0 0x0 0x0\n".repeat(13),
            driver: None,
            group: None,
        }
    }

    /// QEMU's e1000e: BAR0 128 KiB memory, BAR2 32-byte I/O, BAR3 16 KiB memory (MSI-X).
    pub(crate) fn e1000e(addr: &str) -> Self {
        let mut d = Self::new(addr, 0x8086, 0x10d3, 0x020000);
        d.resource = [
            "0x00000000fe800000 0x00000000fe81ffff 0x0000000000040200",
            "0x0000000000000000 0x0000000000000000 0x0000000000000000",
            "0x000000000000c000 0x000000000000c01f 0x0000000000040101",
            "0x00000000fe820000 0x00000000fe823fff 0x0000000000040200",
            "0x0000000000000000 0x0000000000000000 0x0000000000000000",
            "0x0000000000000000 0x0000000000000000 0x0000000000000000",
            "0x00000000fe780000 0x00000000fe7fffff 0x0000000000046200",
        ]
        .join("\n")
            + "\n";
        d
    }

    pub(crate) fn driver(mut self, name: &'static str) -> Self {
        self.driver = Some(name);
        self
    }

    pub(crate) fn group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }

    pub(crate) fn numa(mut self, node: i32) -> Self {
        self.numa = node;
        self
    }
}

/// A temporary sysfs with `bus/pci/{devices,drivers,drivers_probe}` and
/// `kernel/iommu_groups`.
pub(crate) struct FakePci {
    dir: tempfile::TempDir,
}

impl FakePci {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = dir.path().join("sys/bus/pci");
        fs::create_dir_all(bus.join("devices")).unwrap();
        fs::create_dir_all(bus.join("drivers")).unwrap();
        fs::write(bus.join("drivers_probe"), "").unwrap();
        fs::create_dir_all(dir.path().join("sys/kernel/iommu_groups")).unwrap();
        Self { dir }
    }

    pub(crate) fn roots(&self) -> SysRoots {
        SysRoots::new(self.dir.path().join("sys"), self.dir.path().join("proc"))
    }

    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    pub(crate) fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.sys().join("bus/pci/devices").join(addr.to_string())
    }

    /// Adds a driver directory with `bind` and `unbind` files.
    pub(crate) fn add_driver(&self, name: &str) -> PathBuf {
        let d = self.sys().join("bus/pci/drivers").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("bind"), "").unwrap();
        fs::write(d.join("unbind"), "").unwrap();
        d
    }

    pub(crate) fn add(&self, d: FakeDevice) {
        let dir = self.device_dir(d.addr);
        fs::create_dir_all(&dir).unwrap();
        let hex4 = |v: u16| format!("0x{v:04x}\n");
        fs::write(dir.join("vendor"), hex4(d.vendor)).unwrap();
        fs::write(dir.join("device"), hex4(d.device)).unwrap();
        fs::write(dir.join("subsystem_vendor"), hex4(0x1af4)).unwrap();
        fs::write(dir.join("subsystem_device"), hex4(0x1100)).unwrap();
        fs::write(dir.join("class"), format!("0x{:06x}\n", d.class)).unwrap();
        fs::write(dir.join("revision"), "0x00\n").unwrap();
        fs::write(dir.join("numa_node"), format!("{}\n", d.numa)).unwrap();
        fs::write(dir.join("resource"), &d.resource).unwrap();
        fs::write(dir.join("driver_override"), "(null)\n").unwrap();
        if let Some(name) = d.driver {
            self.set_driver(d.addr, Some(name));
        }
        if let Some(g) = d.group {
            let gdir = self.sys().join("kernel/iommu_groups").join(g.to_string());
            fs::create_dir_all(gdir.join("devices")).unwrap();
            std::os::unix::fs::symlink(&gdir, dir.join("iommu_group")).unwrap();
            std::os::unix::fs::symlink(&dir, gdir.join("devices").join(d.addr.to_string()))
                .unwrap();
        }
    }

    /// Points the device's `driver` link at `name` (adding the driver), or removes it.
    pub(crate) fn set_driver(&self, addr: PciAddr, name: Option<&str>) {
        let link = self.device_dir(addr).join("driver");
        let _ = fs::remove_file(&link);
        if let Some(name) = name {
            let d = self.add_driver(name);
            std::os::unix::fs::symlink(d, link).unwrap();
        }
    }

    pub(crate) fn write(&self, addr: PciAddr, file: &str, content: &str) {
        fs::write(self.device_dir(addr).join(file), content).unwrap();
    }

    pub(crate) fn read_bus(&self, rel: &str) -> String {
        fs::read_to_string(self.sys().join("bus/pci").join(rel)).unwrap()
    }
}
