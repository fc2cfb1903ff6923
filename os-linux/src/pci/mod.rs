//! PCI devices as sysfs shows them: discovery ([`scan`]), id-table matching
//! ([`SysPciDevice::matches`]) and driver binding ([`bind_to_vfio`]).
//!
//! Everything reads and writes under a [`SysRoots`](crate::SysRoots), so the tests run against
//! a fake tree in a temporary directory. Opening a device for a driver is VFIO's job
//! ([`crate::vfio`]).

mod bind;
#[cfg(test)]
pub(crate) mod fake;
mod scan;

pub use bind::{bind_to_driver, bind_to_vfio, Binding, VFIO_PCI_DRIVER};
pub use scan::{group_members, scan, scan_one, BarResource, SysPciDevice};

use rdk_core::pci::PciAddr;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why reading or changing sysfs PCI state failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SysfsPciError {
    /// No device directory for that address.
    NoDevice {
        /// The address asked for.
        addr: PciAddr,
    },
    /// A sysfs file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: io::Error,
    },
    /// A sysfs file held something unexpected.
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// The driver to bind to is not loaded.
    NoDriver {
        /// The driver name.
        driver: String,
    },
    /// After the bind sequence the device is bound to something else (or nothing).
    DidNotBind {
        /// The device.
        addr: PciAddr,
        /// The driver wanted.
        wanted: String,
        /// What it is bound to now.
        now: Option<String>,
    },
}

impl fmt::Display for SysfsPciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysfsPciError::NoDevice { addr } => write!(
                f,
                "no PCI device {addr} in sysfs; list devices with lspci -D and check the address"
            ),
            SysfsPciError::Io { path, error } => {
                write!(f, "{}: {error}", path.display())?;
                if matches!(error.kind(), io::ErrorKind::PermissionDenied) {
                    f.write_str(" (run as root)")?;
                }
                Ok(())
            }
            SysfsPciError::Parse { path, content } => write!(
                f,
                "{} holds {content:?}, which is not what the kernel writes there",
                path.display()
            ),
            SysfsPciError::NoDriver { driver } => write!(
                f,
                "driver {driver} is not loaded (no /sys/bus/pci/drivers/{driver}); load it, \
                 for VFIO: modprobe vfio-pci"
            ),
            SysfsPciError::DidNotBind { addr, wanted, now } => write!(
                f,
                "{addr} is bound to {} after setting driver_override to {wanted}; check dmesg \
                 for the probe error (for vfio-pci: is the IOMMU on, intel_iommu=on?)",
                now.as_deref().unwrap_or("no driver")
            ),
        }
    }
}

impl std::error::Error for SysfsPciError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SysfsPciError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// An I/O error on `path` as a [`SysfsPciError`].
fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SysfsPciError {
    let path = path.into();
    move |error| SysfsPciError::Io { path, error }
}
