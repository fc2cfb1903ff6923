//! VFIO groups: the unit of isolation the IOMMU gives, opened as `/dev/vfio/N` (or
//! `/dev/vfio/noiommu-N`).

use super::container::VfioContainer;
use super::sys::{self, ArgBuf};
use super::VfioError;
use crate::pci::{group_members, scan_one, VFIO_PCI_DRIVER};
use crate::roots::SysRoots;
use rdk_core::pci::PciAddr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

/// Drivers that leave a group viable (Documentation/driver-api/vfio.rst: every device must be
/// bound to a VFIO driver, pci-stub, or nothing).
const HARMLESS_DRIVERS: [&str; 2] = [VFIO_PCI_DRIVER, "pci-stub"];

/// An open, viable group attached to a container.
#[derive(Debug)]
pub struct VfioGroup {
    number: u32,
    noiommu: bool,
    file: File,
    container: Arc<VfioContainer>,
}

impl Drop for VfioGroup {
    fn drop(&mut self) {
        // Explicitly, so the container knows when its last group left (closing the fd
        // would detach it too, but behind the container's back).
        self.container.detach(self.file.as_fd());
    }
}

impl VfioGroup {
    /// Opens group `number` from `dev_vfio` (normally `/dev/vfio`), checks that it is viable
    /// and attaches it to `container`.
    pub fn open(
        roots: &SysRoots,
        dev_vfio: &Path,
        number: u32,
        container: Arc<VfioContainer>,
    ) -> Result<Self, VfioError> {
        let plain = dev_vfio.join(number.to_string());
        let noiommu_path = dev_vfio.join(format!("noiommu-{number}"));
        let (path, noiommu) = if plain.exists() || !noiommu_path.exists() {
            (plain, false)
        } else {
            (noiommu_path, true)
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| VfioError::open(&path, &e))?;
        let mut st = ArgBuf::new(8); // argsz, flags
        sys::ioctl_buf(file.as_fd(), sys::GROUP_GET_STATUS, &mut st)
            .map_err(|e| VfioError::ioctl("VFIO_GROUP_GET_STATUS", e))?;
        if st.u32_at(4).unwrap_or(0) & sys::GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioError::NotViable {
                group: number,
                blockers: group_blockers(roots, number),
            });
        }
        container.attach(number, file.as_fd(), noiommu)?;
        Ok(Self {
            number,
            noiommu,
            file,
            container,
        })
    }

    /// The group number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether this is a no-IOMMU group.
    pub fn is_noiommu(&self) -> bool {
        self.noiommu
    }

    /// The container it is attached to.
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The devices of `group` bound to a driver that keeps the group from being viable, with
/// that driver (unreadable entries are listed with `"?"`, so nothing is silently dropped).
pub fn group_blockers(roots: &SysRoots, group: u32) -> Vec<(PciAddr, String)> {
    let Ok(members) = group_members(roots, group) else {
        return Vec::new();
    };
    members
        .into_iter()
        .filter_map(|addr| match scan_one(roots, addr) {
            Ok(d) => match d.driver {
                Some(drv) if !HARMLESS_DRIVERS.contains(&drv.as_str()) => Some((addr, drv)),
                _ => None,
            },
            Err(_) => Some((addr, "?".to_owned())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::{FakeDevice, FakePci};

    #[test]
    fn blockers_are_the_group_members_on_other_drivers() {
        let t = FakePci::new();
        t.add(
            FakeDevice::e1000e("0000:03:00.0")
                .driver(VFIO_PCI_DRIVER)
                .group(7),
        );
        t.add(FakeDevice::e1000e("0000:03:00.1").driver("e1000e").group(7));
        t.add(FakeDevice::e1000e("0000:03:00.2").group(7));
        t.add(FakeDevice::e1000e("0000:04:00.0").driver("e1000e").group(8));
        let b = group_blockers(&t.roots(), 7);
        assert_eq!(b, vec![("0000:03:00.1".parse().unwrap(), "e1000e".into())]);
        let e = VfioError::NotViable {
            group: 7,
            blockers: b,
        };
        let s = e.to_string();
        assert!(
            s.contains("0000:03:00.1 (bound to e1000e)") && !s.contains("03:00.2"),
            "{s}"
        );
        assert!(s.contains("group 7"), "{s}");
    }
}
