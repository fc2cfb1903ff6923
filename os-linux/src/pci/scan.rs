//! Reading `/sys/bus/pci/devices/<address>/`.

use super::{io_err, SysfsPciError};
use crate::roots::SysRoots;
use rdk_core::pci::{PciAddr, PciId, PciIdMatch};
use std::fs;
use std::io;
use std::path::Path;

/// `IORESOURCE_IO`, `IORESOURCE_MEM`, `IORESOURCE_PREFETCH`, `IORESOURCE_MEM_64`
/// (include/linux/ioport.h): the flag bits of a sysfs `resource` line.
const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;
const IORESOURCE_PREFETCH: u64 = 0x2000;
const IORESOURCE_MEM_64: u64 = 0x0010_0000;

/// One BAR as the kernel assigned it (a line of the sysfs `resource` file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarResource {
    /// Bus address of the window.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// An I/O-port BAR (else memory).
    pub io: bool,
    /// A 64-bit memory BAR.
    pub mem64: bool,
    /// Prefetchable memory.
    pub prefetchable: bool,
}

/// A PCI function as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysPciDevice {
    /// Its address.
    pub addr: PciAddr,
    /// Vendor, device, subsystem ids, class and revision.
    pub id: PciId,
    /// Its NUMA node, if the platform says (`numa_node` is -1 when it does not).
    pub numa_node: Option<u32>,
    /// BARs 0..=5; `None` for an unimplemented one (or the upper half of a 64-bit BAR).
    pub bars: [Option<BarResource>; 6],
    /// The bound driver's name.
    pub driver: Option<String>,
    /// Its IOMMU group, if the IOMMU (or VFIO's no-IOMMU mode) put it in one.
    pub iommu_group: Option<u32>,
}

impl SysPciDevice {
    /// Whether any row of `table` matches the device.
    pub fn matches(&self, table: &[PciIdMatch]) -> bool {
        PciIdMatch::lookup(table, &self.id).is_some()
    }
}

/// Every PCI function under `roots`, sorted by address.
pub fn scan(roots: &SysRoots) -> Result<Vec<SysPciDevice>, SysfsPciError> {
    let dir = roots.pci_devices_dir();
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        // Anything that is not an address is not a device (sysfs has none, a fake tree might).
        let Some(addr) = name.to_str().and_then(|n| n.parse::<PciAddr>().ok()) else {
            continue;
        };
        match scan_one(roots, addr) {
            Ok(dev) => out.push(dev),
            // Hot-unplugged between readdir and reading it.
            Err(SysfsPciError::NoDevice { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by_key(|d| d.addr);
    Ok(out)
}

/// The function at `addr`.
///
/// [`SysfsPciError::NoDevice`] also when the device is unplugged while its files are read:
/// the kernel removes its directory as a whole, so a file that is missing from a directory
/// that is gone too means the device went away, not that sysfs is malformed.
pub fn scan_one(roots: &SysRoots, addr: PciAddr) -> Result<SysPciDevice, SysfsPciError> {
    let dir = roots.pci_devices_dir().join(addr.to_string());
    if !dir.is_dir() {
        return Err(SysfsPciError::NoDevice { addr });
    }
    read_device(&dir, addr).map_err(|e| match e {
        SysfsPciError::Io { ref error, .. }
            if error.kind() == io::ErrorKind::NotFound && vanished(&dir) =>
        {
            SysfsPciError::NoDevice { addr }
        }
        e => e,
    })
}

/// Whether `dir` is gone (only `NotFound` counts: a directory we may not look at is an error to
/// report, not a device to skip).
fn vanished(dir: &Path) -> bool {
    matches!(fs::metadata(dir), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

fn read_device(dir: &Path, addr: PciAddr) -> Result<SysPciDevice, SysfsPciError> {
    let class: u32 = read_hex_as(&dir.join("class"))?;
    // The class code is three bytes, base class, subclass and programming interface
    // (PCI Local Bus 3.0, 6.2.1), printed by the kernel as "0x%06x".
    if class > 0x00ff_ffff {
        return Err(SysfsPciError::Parse {
            path: dir.join("class"),
            content: format!("{class:#x}"),
        });
    }
    let id = PciId {
        vendor: read_hex_as(&dir.join("vendor"))?,
        device: read_hex_as(&dir.join("device"))?,
        subsystem_vendor: read_hex_or(&dir.join("subsystem_vendor"), 0)?,
        subsystem_device: read_hex_or(&dir.join("subsystem_device"), 0)?,
        class,
        revision: read_hex_or(&dir.join("revision"), 0)?,
    };
    let numa_node = match read_trimmed(&dir.join("numa_node")) {
        Ok(s) => s.parse::<i64>().ok().and_then(|n| u32::try_from(n).ok()),
        Err(SysfsPciError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(SysPciDevice {
        addr,
        id,
        numa_node,
        bars: read_resources(&dir.join("resource"))?,
        driver: link_name(&dir.join("driver")),
        iommu_group: link_name(&dir.join("iommu_group")).and_then(|g| g.parse().ok()),
    })
}

/// The devices in IOMMU group `group` (`/sys/kernel/iommu_groups/N/devices`), sorted.
pub fn group_members(roots: &SysRoots, group: u32) -> Result<Vec<PciAddr>, SysfsPciError> {
    let dir = roots
        .iommu_groups_dir()
        .join(group.to_string())
        .join("devices");
    let mut out: Vec<PciAddr> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort();
    Ok(out)
}

/// The last component of the symlink at `path`, if it is one.
pub(crate) fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    Some(target.file_name()?.to_str()?.to_owned())
}

fn read_trimmed(path: &Path) -> Result<String, SysfsPciError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(io_err(path))
}

fn parse_hex(path: &Path, s: &str) -> Result<u64, SysfsPciError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    u64::from_str_radix(digits, 16).map_err(|_| SysfsPciError::Parse {
        path: path.to_owned(),
        content: s.to_owned(),
    })
}

/// A hex value that must fit in `T` (16-bit ids, an 8-bit revision): a wider one is a
/// [`SysfsPciError::Parse`] naming the file, never truncated to a different id.
fn read_hex_as<T: TryFrom<u64>>(path: &Path) -> Result<T, SysfsPciError> {
    let s = read_trimmed(path)?;
    T::try_from(parse_hex(path, &s)?).map_err(|_| SysfsPciError::Parse {
        path: path.to_owned(),
        content: s,
    })
}

/// Like [`read_hex_as`], with `default` for a file that does not exist (older kernels,
/// bridges).
fn read_hex_or<T: TryFrom<u64>>(path: &Path, default: T) -> Result<T, SysfsPciError> {
    match read_hex_as(path) {
        Err(SysfsPciError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            Ok(default)
        }
        r => r,
    }
}

/// Parses the first six lines of a `resource` file: `start end flags`, each `0x%016llx`.
fn read_resources(path: &Path) -> Result<[Option<BarResource>; 6], SysfsPciError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let mut bars = [None; 6];
    for (bar, line) in bars.iter_mut().zip(text.lines()) {
        let bad = || SysfsPciError::Parse {
            path: path.to_owned(),
            content: line.to_owned(),
        };
        let mut fields = line.split_whitespace().map(|f| parse_hex(path, f));
        let (Some(start), Some(end), Some(flags)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let (start, end, flags) = (start?, end?, flags?);
        if flags & (IORESOURCE_IO | IORESOURCE_MEM) == 0 || end < start {
            continue; // unimplemented, or the upper half of a 64-bit BAR
        }
        // The whole 64-bit space is not a window any BAR has (its size would not fit).
        let size = (end - start).checked_add(1).ok_or_else(bad)?;
        *bar = Some(BarResource {
            start,
            size,
            io: flags & IORESOURCE_IO != 0,
            mem64: flags & IORESOURCE_MEM_64 != 0,
            prefetchable: flags & IORESOURCE_PREFETCH != 0,
        });
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::{FakeDevice, FakePci};

    #[test]
    fn scans_ids_class_numa_resources_driver_and_group() {
        let t = FakePci::new();
        t.add(
            FakeDevice::e1000e("0000:01:00.0")
                .driver("vfio-pci")
                .group(5),
        );
        t.add(
            FakeDevice::new("0000:00:1f.2", 0x8086, 0x2922, 0x010601)
                .driver("ahci")
                .group(2)
                .numa(1),
        );
        t.add(FakeDevice::new("0000:00:1f.3", 0x8086, 0x2930, 0x0c0500).group(2));
        let devs = scan(&t.roots()).unwrap();
        assert_eq!(devs.len(), 3);
        let nic = &devs[2];
        assert_eq!(nic.addr.to_string(), "0000:01:00.0");
        assert_eq!((nic.id.vendor, nic.id.device), (0x8086, 0x10d3));
        assert_eq!(nic.id.class, 0x020000);
        assert_eq!(nic.numa_node, None, "-1 means unknown");
        assert_eq!(nic.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(nic.iommu_group, Some(5));
        let bar0 = nic.bars[0].unwrap();
        assert_eq!(
            (bar0.start, bar0.size, bar0.io),
            (0xfe80_0000, 0x2_0000, false)
        );
        assert!(nic.bars[1].is_none());
        assert!(nic.bars[2].unwrap().io);
        assert_eq!(nic.bars[3].unwrap().size, 0x4000);
        assert_eq!(devs[0].numa_node, Some(1));
        assert_eq!(devs[1].driver, None);
        assert!(nic.matches(&[PciIdMatch::new(0x8086, 0x10d3)]));
        assert!(!devs[0].matches(&[PciIdMatch::new(0x8086, 0x10d3)]));
        assert_eq!(
            group_members(&t.roots(), 2).unwrap().len(),
            2,
            "the ICH9 functions share a group"
        );
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let t = FakePci::new();
        t.add(FakeDevice::e1000e("0000:01:00.0"));
        let a: PciAddr = "0000:01:00.0".parse().unwrap();
        t.write(a, "vendor", "pizza\n");
        let e = scan_one(&t.roots(), a).unwrap_err();
        assert!(matches!(e, SysfsPciError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("pizza"), "{e}");
        let missing: PciAddr = "0000:09:00.0".parse().unwrap();
        assert!(matches!(
            scan_one(&t.roots(), missing),
            Err(SysfsPciError::NoDevice { .. })
        ));
        t.write(a, "vendor", "0x8086\n");
        // A window of the whole 64-bit space: its size does not fit in a u64.
        t.write(
            a,
            "resource",
            "0x0000000000000000 0xffffffffffffffff 0x0000000000040200\n",
        );
        assert!(matches!(
            scan_one(&t.roots(), a),
            Err(SysfsPciError::Parse { .. })
        ));
        t.write(a, "resource", "0x1 0x2\n");
        assert!(matches!(
            scan_one(&t.roots(), a),
            Err(SysfsPciError::Parse { .. })
        ));
    }

    #[test]
    fn ids_wider_than_their_field_are_parse_errors_naming_the_file() {
        let t = FakePci::new();
        t.add(FakeDevice::e1000e("0000:01:00.0"));
        let a: PciAddr = "0000:01:00.0".parse().unwrap();
        for (file, wide, good) in [
            ("vendor", "0x18086\n", "0x8086\n"),
            ("device", "0x110d3\n", "0x10d3\n"),
            ("subsystem_vendor", "0x11af4\n", "0x1af4\n"),
            ("subsystem_device", "0x11100\n", "0x1100\n"),
            ("revision", "0x100\n", "0x00\n"),
            ("class", "0x1020000\n", "0x020000\n"),
        ] {
            t.write(a, file, wide);
            let e = scan_one(&t.roots(), a).unwrap_err();
            assert!(
                matches!(&e, SysfsPciError::Parse { path, .. } if path.ends_with(file)),
                "{file}: {e}"
            );
            assert!(e.to_string().contains(file), "{e}");
            t.write(a, file, good);
        }
        assert_eq!(scan(&t.roots()).unwrap().len(), 1);
    }

    #[test]
    fn a_device_unplugged_mid_scan_is_skipped() {
        use std::os::unix::fs::OpenOptionsExt;
        let t = FakePci::new();
        t.add(FakeDevice::e1000e("0000:01:00.0"));
        t.add(FakeDevice::e1000e("0000:02:00.0"));
        let gone: PciAddr = "0000:02:00.0".parse().unwrap();
        // `class` is the first file read, after the directory was seen. As a FIFO it holds the
        // scan there: the writer's open returns once the scan has opened it, and the device is
        // removed (as the kernel does on unplug: the whole directory) before the scan gets EOF.
        let dir = t.device_dir(gone);
        let class = dir.join("class");
        fs::remove_file(&class).unwrap();
        nix::unistd::mkfifo(&class, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let unplug = {
            let (dir, class) = (dir.clone(), class.clone());
            std::thread::spawn(move || {
                let mut w = fs::OpenOptions::new().write(true).open(&class).unwrap();
                fs::remove_dir_all(&dir).unwrap();
                std::io::Write::write_all(&mut w, b"0x020000\n").unwrap();
            })
        };
        let devs = scan(&t.roots());
        // If the scan never opened the FIFO, let the writer's open return so the join does not
        // hang (the assertions below then fail).
        let _ = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&class);
        unplug.join().unwrap();
        let devs = devs.unwrap();
        assert_eq!(devs.len(), 1, "{devs:?}");
        assert_eq!(devs[0].addr.to_string(), "0000:01:00.0");
    }

    #[test]
    fn a_present_device_missing_a_file_is_still_an_error() {
        let t = FakePci::new();
        t.add(FakeDevice::e1000e("0000:01:00.0"));
        let a: PciAddr = "0000:01:00.0".parse().unwrap();
        fs::remove_file(t.device_dir(a).join("device")).unwrap();
        let e = scan(&t.roots()).unwrap_err();
        assert!(
            matches!(&e, SysfsPciError::Io { path, error }
                if path.ends_with("device") && error.kind() == io::ErrorKind::NotFound),
            "{e}"
        );
    }
}
