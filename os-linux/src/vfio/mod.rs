//! PCI devices through VFIO (Linux Documentation/driver-api/vfio.rst), with the group and
//! container API (`/dev/vfio/vfio`, `/dev/vfio/N`).
//!
//! - [`VfioContainer`]: one IOMMU context, shared by every device a [`Vfio`] opens; it
//!   chooses TYPE1v2, TYPE1 or NOIOMMU, reads the allowed IOVA ranges and maps DMA memory.
//! - [`VfioGroup`]: a group, checked for viability (the error lists the devices to unbind).
//! - [`VfioDevice`]: one function, implementing rdk-core's
//!   [`PciDevice`](rdk_core::os::PciDevice): region info (sparse mmap, MSI-X mappable), BAR
//!   windows ([`VfioBar`]) with the parts the kernel keeps unmapped served by `pread`/`pwrite`,
//!   config space, interrupts to eventfds, reset.
//! - [`VfioOs`]: a [`LinuxOs`](crate::LinuxOs) whose DMA regions are all mapped into the
//!   container ([`VfioRegion`]), and which opens devices ([`Pci`]); what a
//!   hardware PMD is generic over on Linux.
//!
//! There is no global state: two [`Vfio`] instances have two containers.

mod bar;
mod container;
mod device;
mod dma;
mod group;
mod iova;
mod sys;

pub use bar::VfioBar;
pub use container::{IommuInfo, IommuKind, VfioContainer};
pub use device::{DeviceInfo, IrqInfo, RegionInfo, VfioDevice};
pub use dma::{VfioOs, VfioRegion};
pub use group::{group_blockers, VfioGroup};
pub use iova::IovaRange;

use crate::pci::{scan_one, SysfsPciError};
use crate::roots::SysRoots;
use nix::errno::Errno;
use rdk_core::os::pci::{Pci, PciError};
use rdk_core::pci::PciAddr;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// Why a VFIO operation failed, and what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum VfioError {
    /// A VFIO device node could not be opened.
    Open {
        /// The node.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
    /// The kernel speaks another VFIO API version.
    ApiVersion {
        /// What it reported.
        version: i32,
    },
    /// No usable IOMMU model.
    NoIommuModel {
        /// Whether a no-IOMMU model was looked for.
        noiommu: bool,
    },
    /// The device is in no IOMMU group.
    NoGroup {
        /// The device.
        addr: PciAddr,
    },
    /// The device is not bound to vfio-pci, so VFIO cannot open it.
    NotBound {
        /// The device.
        addr: PciAddr,
        /// Its driver, if any.
        driver: Option<String>,
    },
    /// The group is not viable: other devices in it are bound to host drivers.
    NotViable {
        /// The group.
        group: u32,
        /// The devices to unbind (or bind to vfio-pci), with their current drivers.
        blockers: Vec<(PciAddr, String)>,
    },
    /// A no-IOMMU group and an IOMMU group in one container.
    MixedIommu {
        /// The group that did not fit.
        group: u32,
    },
    /// An ioctl failed.
    Ioctl {
        /// Which.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
    /// `VFIO_IOMMU_MAP_DMA` failed.
    DmaMap {
        /// The IOVA.
        iova: u64,
        /// The length.
        len: u64,
        /// The error.
        errno: Errno,
    },
    /// No free IOVA range of that size.
    IovaExhausted {
        /// Bytes asked for.
        len: u64,
    },
    /// A mapping made before the IOMMU reported its ranges falls outside them.
    IovaOutOfRange {
        /// The IOVA.
        iova: u64,
        /// The length.
        len: u64,
    },
    /// No mapping at that IOVA.
    NotMapped {
        /// The IOVA.
        iova: u64,
    },
    /// A no-IOMMU container translates nothing, so there is nothing to map.
    NoIommuHasNoMapping,
    /// The memory's IOVA mode does not fit the group (PA needs no-IOMMU, VA an IOMMU).
    IovaModeMismatch {
        /// Whether the group is a no-IOMMU group.
        noiommu: bool,
    },
    /// The device is not a PCI device (VFIO platform device).
    NotPci {
        /// The address used.
        addr: PciAddr,
    },
    /// vfio-pci reports no usable config-space region.
    NoConfigRegion {
        /// The device.
        addr: PciAddr,
    },
    /// Reading sysfs failed.
    Sysfs(SysfsPciError),
}

impl VfioError {
    pub(crate) fn ioctl(op: &'static str, errno: Errno) -> Self {
        VfioError::Ioctl { op, errno }
    }

    pub(crate) fn open(path: &Path, e: &std::io::Error) -> Self {
        VfioError::Open {
            path: path.to_owned(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

impl fmt::Display for VfioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VfioError::Open { path, errno } => {
                write!(f, "open {}: {}", path.display(), errno.desc())?;
                f.write_str(match errno {
                    Errno::ENOENT => {
                        "; load vfio-pci (modprobe vfio-pci) and bind the device to it \
                         (rdk_os_linux::pci::bind_to_vfio)"
                    }
                    Errno::EACCES | Errno::EPERM => "; run as root or chown the node",
                    Errno::EBUSY => "; another process (or another Vfio instance) has the group",
                    _ => "",
                })
            }
            VfioError::ApiVersion { version } => write!(
                f,
                "VFIO API version {version}, this code speaks {}; use a matching kernel",
                sys::API_VERSION
            ),
            VfioError::NoIommuModel { noiommu: true } => f.write_str(
                "the kernel offers no VFIO_NOIOMMU_IOMMU; load vfio with \
                 enable_unsafe_noiommu_mode=1 (needs CONFIG_VFIO_NOIOMMU)",
            ),
            VfioError::NoIommuModel { noiommu: false } => f.write_str(
                "the kernel offers neither VFIO_TYPE1v2_IOMMU nor VFIO_TYPE1_IOMMU; load \
                 vfio_iommu_type1",
            ),
            VfioError::NoGroup { addr } => write!(
                f,
                "{addr} is in no IOMMU group; enable the IOMMU (intel_iommu=on / amd_iommu=on) \
                 or use no-IOMMU mode (vfio.enable_unsafe_noiommu_mode=1)"
            ),
            VfioError::NotBound { addr, driver } => write!(
                f,
                "{addr} is bound to {}, not vfio-pci; bind it first \
                 (rdk_os_linux::pci::bind_to_vfio, or dpdk-devbind.py -b vfio-pci {addr})",
                driver.as_deref().unwrap_or("no driver")
            ),
            VfioError::NotViable { group, blockers } => {
                write!(
                    f,
                    "IOMMU group {group} is not viable: every device in it must be bound to \
                     vfio-pci or to no driver; unbind"
                )?;
                if blockers.is_empty() {
                    f.write_str(" the other devices in /sys/kernel/iommu_groups/")?;
                    return write!(f, "{group}/devices");
                }
                for (i, (addr, drv)) in blockers.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}{addr} (bound to {drv})")?;
                }
                Ok(())
            }
            VfioError::MixedIommu { group } => write!(
                f,
                "group {group} does not fit this container (no-IOMMU and IOMMU groups cannot \
                 share one); use a second Vfio instance"
            ),
            VfioError::Ioctl { op, errno } => write!(f, "{op}: {}", errno.desc()),
            VfioError::DmaMap { iova, len, errno } => {
                write!(
                    f,
                    "VFIO_IOMMU_MAP_DMA of {len:#x} bytes at IOVA {iova:#x}: {}",
                    errno.desc()
                )?;
                if *errno == Errno::ENOMEM {
                    f.write_str(
                        " (the kernel pins mapped pages: raise RLIMIT_MEMLOCK or \
                         vfio_iommu_type1.dma_entry_limit)",
                    )?;
                }
                Ok(())
            }
            VfioError::IovaExhausted { len } => write!(
                f,
                "no free IOVA range of {len:#x} bytes in the IOMMU's allowed ranges; free DMA \
                 memory or allocate smaller regions"
            ),
            VfioError::IovaOutOfRange { iova, len } => write!(
                f,
                "memory mapped at IOVA {iova:#x}+{len:#x} before the device was opened lies \
                 outside what the IOMMU allows; open a device before allocating DMA memory"
            ),
            VfioError::NotMapped { iova } => write!(f, "no DMA mapping at IOVA {iova:#x}"),
            VfioError::NoIommuHasNoMapping => f.write_str(
                "a no-IOMMU container maps nothing: the device uses physical addresses \
                 (configure IovaMode::Pa)",
            ),
            VfioError::IovaModeMismatch { noiommu: true } => f.write_str(
                "the group is a no-IOMMU group, so the device needs physical addresses: \
                 configure the memory with IovaMode::Pa",
            ),
            VfioError::IovaModeMismatch { noiommu: false } => f.write_str(
                "the group is behind an IOMMU, which maps memory at IOVAs of its own: \
                 configure the memory with IovaMode::Va",
            ),
            VfioError::NotPci { addr } => write!(f, "{addr}: VFIO says this is not a PCI device"),
            VfioError::NoConfigRegion { addr } => {
                write!(
                    f,
                    "{addr}: vfio-pci reports no readable config space region"
                )
            }
            VfioError::Sysfs(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for VfioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VfioError::Sysfs(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SysfsPciError> for VfioError {
    fn from(e: SysfsPciError) -> Self {
        VfioError::Sysfs(e)
    }
}

impl From<VfioError> for PciError {
    /// The trait's error has no room for lists or paths; [`Vfio::open`] returns the full
    /// [`VfioError`].
    fn from(e: VfioError) -> Self {
        let errno = |op, e: Errno| device::os_err(op, e);
        match e {
            VfioError::Open { errno: e, .. } => errno("open a VFIO device node", e),
            VfioError::Ioctl { op, errno: e } => errno(op, e),
            VfioError::DmaMap { errno: e, .. } => errno("VFIO_IOMMU_MAP_DMA", e),
            VfioError::NotViable { .. } => PciError::Permission {
                op: "use the device's IOMMU group",
                hint: "other devices in the group are bound to host drivers; bind them to \
                       vfio-pci or unbind them (Vfio::open names them)",
            },
            VfioError::NotBound { .. } => PciError::Permission {
                op: "open the device through VFIO",
                hint: "bind it to vfio-pci first (rdk_os_linux::pci::bind_to_vfio)",
            },
            VfioError::NoGroup { .. } => PciError::Unsupported {
                op: "VFIO without an IOMMU group (enable the IOMMU or no-IOMMU mode)",
            },
            VfioError::Sysfs(SysfsPciError::NoDevice { addr }) => PciError::NotFound { addr },
            _ => PciError::Unsupported {
                op: "opening the device through VFIO (see Vfio::open for why)",
            },
        }
    }
}

/// The VFIO state of one application instance: a container and the groups opened into it.
#[derive(Debug)]
pub struct Vfio {
    roots: SysRoots,
    dev_vfio: PathBuf,
    container: Arc<VfioContainer>,
    /// Groups by number. The kernel lets a group be opened once, so devices of one group
    /// share it; a group closes when its last device does.
    groups: Mutex<HashMap<u32, Weak<VfioGroup>>>,
}

impl Vfio {
    /// Opens a container on this machine.
    pub fn new() -> Result<Self, VfioError> {
        Self::with_paths(SysRoots::host(), Path::new("/dev/vfio"))
    }

    /// Opens a container from `dev_vfio` (normally `/dev/vfio`), reading sysfs under `roots`.
    pub fn with_paths(roots: SysRoots, dev_vfio: &Path) -> Result<Self, VfioError> {
        let container = VfioContainer::open_path(&dev_vfio.join("vfio"))?;
        Ok(Self {
            roots,
            dev_vfio: dev_vfio.to_owned(),
            container: Arc::new(container),
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// The shared container.
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    /// The sysfs roots in use.
    pub fn roots(&self) -> &SysRoots {
        &self.roots
    }

    /// The group of the device at `addr`, opened (and attached) on first use.
    pub fn group_of(&self, addr: PciAddr) -> Result<Arc<VfioGroup>, VfioError> {
        let dev = scan_one(&self.roots, addr)?;
        if dev.driver.as_deref() != Some(crate::pci::VFIO_PCI_DRIVER) {
            return Err(VfioError::NotBound {
                addr,
                driver: dev.driver,
            });
        }
        let number = dev.iommu_group.ok_or(VfioError::NoGroup { addr })?;
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = groups.get(&number).and_then(Weak::upgrade) {
            return Ok(g);
        }
        let g = Arc::new(VfioGroup::open(
            &self.roots,
            &self.dev_vfio,
            number,
            self.container.clone(),
        )?);
        groups.insert(number, Arc::downgrade(&g));
        Ok(g)
    }

    /// Opens the device at `addr` (bound to vfio-pci) into this instance's container.
    pub fn open(&self, addr: PciAddr) -> Result<VfioDevice, VfioError> {
        let group = self.group_of(addr)?;
        VfioDevice::open(group, addr)
    }
}

impl Pci for Vfio {
    type Device = VfioDevice;

    fn pci_open(&self, addr: PciAddr) -> Result<VfioDevice, PciError> {
        self.open(addr).map_err(PciError::from)
    }
}
