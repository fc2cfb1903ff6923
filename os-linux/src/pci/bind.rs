//! Handing a device to another driver through `driver_override` (Linux
//! Documentation/ABI/testing/sysfs-bus-pci): set the override, unbind from the current driver,
//! ask the bus to probe. Unlike `new_id`, the override touches only this one device.

use super::scan::{link_name, scan_one};
use super::{io_err, SysfsPciError};
use crate::roots::SysRoots;
use rdk_core::pci::PciAddr;
use std::fs;

/// The VFIO PCI driver's name in sysfs.
pub const VFIO_PCI_DRIVER: &str = "vfio-pci";

/// What [`bind_to_driver`] did, so that [`undo`](Binding::undo) can put it back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "keep the binding to undo it, or say why it stays"]
pub struct Binding {
    /// The device.
    pub addr: PciAddr,
    /// The driver it is bound to now.
    pub driver: String,
    /// The driver it was bound to before, if any.
    pub previous: Option<String>,
    /// Whether anything was changed (false: it was bound to `driver` already).
    pub changed: bool,
}

impl Binding {
    /// Returns the device to its previous driver (through the same override sequence, so it
    /// works for drivers without an id table for the device, such as vfio-pci) or, if it had
    /// none, unbinds it; then clears the override. Does nothing if
    /// [`changed`](Self::changed) is false.
    pub fn undo(&self, roots: &SysRoots) -> Result<(), SysfsPciError> {
        if !self.changed {
            return Ok(());
        }
        let dev = roots.pci_devices_dir().join(self.addr.to_string());
        match &self.previous {
            Some(prev) => {
                let _back = bind_to_driver(roots, self.addr, prev)?;
            }
            None => {
                if link_name(&dev.join("driver")).is_some() {
                    write(&dev.join("driver/unbind"), &self.addr.to_string())?;
                }
            }
        }
        // An empty write clears the override; the binding stays (ABI: sysfs-bus-pci).
        write(&dev.join("driver_override"), "\n")
    }
}

/// Binds the device at `addr` to `vfio-pci` (see [`bind_to_driver`]).
pub fn bind_to_vfio(roots: &SysRoots, addr: PciAddr) -> Result<Binding, SysfsPciError> {
    bind_to_driver(roots, addr, VFIO_PCI_DRIVER)
}

/// Binds the device at `addr` to `driver`: sets `driver_override`, unbinds the current driver,
/// writes the address to `drivers_probe`, then checks the `driver` link.
///
/// The driver must be loaded. On [`SysfsPciError::DidNotBind`] the override stays set (the
/// kernel log says why the probe failed); clear it by writing a newline to `driver_override`.
pub fn bind_to_driver(
    roots: &SysRoots,
    addr: PciAddr,
    driver: &str,
) -> Result<Binding, SysfsPciError> {
    let current = scan_one(roots, addr)?.driver;
    if current.as_deref() == Some(driver) {
        return Ok(Binding {
            addr,
            driver: driver.to_owned(),
            previous: current,
            changed: false,
        });
    }
    if !roots.pci_bus_dir().join("drivers").join(driver).is_dir() {
        return Err(SysfsPciError::NoDriver {
            driver: driver.to_owned(),
        });
    }
    let dev = roots.pci_devices_dir().join(addr.to_string());
    let name = addr.to_string();
    // Override first, so nothing else can grab the device between unbind and probe.
    write(&dev.join("driver_override"), driver)?;
    if current.is_some() {
        write(&dev.join("driver/unbind"), &name)?;
    }
    write(&roots.pci_bus_dir().join("drivers_probe"), &name)?;
    let now = link_name(&dev.join("driver"));
    if now.as_deref() != Some(driver) {
        return Err(SysfsPciError::DidNotBind {
            addr,
            wanted: driver.to_owned(),
            now,
        });
    }
    Ok(Binding {
        addr,
        driver: driver.to_owned(),
        previous: current,
        changed: true,
    })
}

fn write(path: &std::path::Path, content: &str) -> Result<(), SysfsPciError> {
    fs::write(path, content).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::{FakeDevice, FakePci};

    fn e1000e() -> (FakePci, PciAddr) {
        let t = FakePci::new();
        t.add(FakeDevice::e1000e("0000:01:00.0").driver("e1000e").group(5));
        (t, "0000:01:00.0".parse().unwrap())
    }

    #[test]
    fn writes_override_unbind_and_probe_in_order_and_checks_the_result() {
        let (t, a) = e1000e();
        t.add_driver(VFIO_PCI_DRIVER);
        // The fake kernel binds nothing, so the check after probing must notice.
        let e = bind_to_vfio(&t.roots(), a).unwrap_err();
        assert!(
            matches!(&e, SysfsPciError::DidNotBind { now: Some(d), .. } if d == "e1000e"),
            "{e}"
        );
        assert!(e.to_string().contains("bound to e1000e"), "{e}");
        let dev = t.device_dir(a);
        assert_eq!(
            fs::read_to_string(dev.join("driver_override")).unwrap(),
            "vfio-pci"
        );
        assert_eq!(t.read_bus("drivers/e1000e/unbind"), "0000:01:00.0");
        assert_eq!(t.read_bus("drivers_probe"), "0000:01:00.0");
    }

    #[test]
    fn already_bound_changes_nothing_and_a_missing_driver_is_named() {
        let (t, a) = e1000e();
        let e = bind_to_vfio(&t.roots(), a).unwrap_err();
        assert!(matches!(e, SysfsPciError::NoDriver { .. }), "{e}");
        assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
        assert_eq!(t.read_bus("drivers/e1000e/unbind"), "", "nothing touched");

        t.set_driver(a, Some(VFIO_PCI_DRIVER));
        let b = bind_to_vfio(&t.roots(), a).unwrap();
        assert!(!b.changed);
        b.undo(&t.roots()).unwrap();
        assert_eq!(
            t.read_bus("drivers/vfio-pci/unbind"),
            "",
            "undo of no change"
        );
    }

    #[test]
    fn undo_rebinds_the_previous_driver_through_the_override_or_just_unbinds() {
        let (t, a) = e1000e();
        t.set_driver(a, Some(VFIO_PCI_DRIVER));
        let b = Binding {
            addr: a,
            driver: VFIO_PCI_DRIVER.into(),
            previous: Some("e1000e".into()),
            changed: true,
        };
        // The fake kernel does not rebind, and undo must notice rather than clear the override.
        let e = b.undo(&t.roots()).unwrap_err();
        assert!(matches!(e, SysfsPciError::DidNotBind { .. }), "{e}");
        let dev = t.device_dir(a);
        assert_eq!(
            fs::read_to_string(dev.join("driver_override")).unwrap(),
            "e1000e"
        );
        assert_eq!(t.read_bus("drivers/vfio-pci/unbind"), "0000:01:00.0");
        assert_eq!(t.read_bus("drivers_probe"), "0000:01:00.0");

        let unbound = Binding {
            previous: None,
            ..b
        };
        unbound.undo(&t.roots()).unwrap();
        assert_eq!(
            fs::read_to_string(dev.join("driver_override")).unwrap(),
            "\n"
        );
    }
}
