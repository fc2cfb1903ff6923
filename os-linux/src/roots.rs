//! Where sysfs and procfs are, so that discovery can run against a fake tree in a test.

use std::path::{Path, PathBuf};

/// The roots of sysfs and procfs this crate reads (and, for [`PoolGrowth`], writes).
///
/// [`SysRoots::host`] is the real system; a test points them at a tree it built in a temporary
/// directory, so hugepage discovery and pagemap parsing are tested without root.
///
/// [`PoolGrowth`]: crate::hugepage::PoolGrowth
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysRoots {
    sys: PathBuf,
    proc: PathBuf,
}

impl SysRoots {
    /// The running system: `/sys` and `/proc`.
    pub fn host() -> Self {
        Self::new("/sys", "/proc")
    }

    /// Another sysfs root and procfs root (for tests).
    pub fn new(sys: impl Into<PathBuf>, proc: impl Into<PathBuf>) -> Self {
        Self {
            sys: sys.into(),
            proc: proc.into(),
        }
    }

    /// The sysfs root.
    pub fn sys(&self) -> &Path {
        &self.sys
    }

    /// The procfs root.
    pub fn proc(&self) -> &Path {
        &self.proc
    }

    /// `/sys/kernel/mm/hugepages`: one `hugepages-<N>kB` directory per supported size.
    pub(crate) fn hugepages_dir(&self) -> PathBuf {
        self.sys.join("kernel/mm/hugepages")
    }

    /// `/sys/devices/system/node`: one `node<N>` directory per NUMA node.
    pub(crate) fn nodes_dir(&self) -> PathBuf {
        self.sys.join("devices/system/node")
    }

    /// `/proc/mounts`.
    pub(crate) fn mounts(&self) -> PathBuf {
        self.proc.join("mounts")
    }

    /// `/proc/meminfo`.
    pub(crate) fn meminfo(&self) -> PathBuf {
        self.proc.join("meminfo")
    }

    /// `/sys/bus/pci/devices`: one entry per PCI function, named by its address.
    pub(crate) fn pci_devices_dir(&self) -> PathBuf {
        self.sys.join("bus/pci/devices")
    }

    /// `/sys/bus/pci`: `drivers/`, `drivers_probe`.
    pub(crate) fn pci_bus_dir(&self) -> PathBuf {
        self.sys.join("bus/pci")
    }

    /// `/sys/kernel/iommu_groups`: one `N/devices/` directory per IOMMU group.
    pub(crate) fn iommu_groups_dir(&self) -> PathBuf {
        self.sys.join("kernel/iommu_groups")
    }

    /// `/proc/self/pagemap`.
    pub(crate) fn pagemap(&self) -> PathBuf {
        self.proc.join("self/pagemap")
    }
}

impl Default for SysRoots {
    fn default() -> Self {
        Self::host()
    }
}
