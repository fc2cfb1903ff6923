//! PCI device access: config space, BAR register windows, bus mastering, interrupt vectors.
//!
//! A hardware PMD is generic over [`PciDevice`] and never learns how the device is reached:
//! VFIO on Linux (`rdk-os-linux`), a device model in `rdk-os-mock`, the host bridge of a
//! unikernel. Parsing what the device says (capability lists, BAR flags, id tables) is
//! OS-independent and lives in [`crate::pci`].
//!
//! Everything read from a device is untrusted. Register windows therefore never fault: an
//! access outside a window or at a misaligned offset reads as all ones (what a PCI read that
//! no device claims returns) and a write there is dropped. Such an access is a driver bug —
//! a driver validates every device-supplied offset once, with [`Mmio::check`], when it sets
//! up — and `rdk-os-mock` records it as a fault so tests catch it.

use crate::os::event::EventNotifier;
use crate::pci::{BarInfo, PciAddr};
use core::fmt;

/// The interrupt mechanisms a PCI function may offer (PCI Local Bus 3.0 §6.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IrqKind {
    /// The shared legacy INTx line; masked by the OS after each interrupt until unmasked.
    Intx,
    /// Message-signalled interrupts (up to 32 vectors, allocated as one block).
    Msi,
    /// MSI-X (up to 2048 vectors, each with its own table entry).
    Msix,
}

impl fmt::Display for IrqKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IrqKind::Intx => "INTx",
            IrqKind::Msi => "MSI",
            IrqKind::Msix => "MSI-X",
        })
    }
}

/// Why a PCI operation failed, and what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PciError {
    /// No device at that address (or it went away).
    NotFound {
        /// The address asked for.
        addr: PciAddr,
    },
    /// The process may not do this.
    Permission {
        /// What was attempted.
        op: &'static str,
        /// How to obtain the right.
        hint: &'static str,
    },
    /// A config-space or register access outside its window or misaligned.
    OutOfRange {
        /// Byte offset asked for.
        offset: u64,
        /// Access width in bytes.
        width: usize,
        /// Size of the window.
        limit: u64,
    },
    /// The BAR does not exist or is not implemented by the device.
    NoSuchBar {
        /// BAR index (0..=5).
        bar: u8,
    },
    /// The BAR exists but cannot be reached the way it was asked.
    BarUnusable {
        /// BAR index (0..=5).
        bar: u8,
        /// Why, and what to do.
        reason: &'static str,
    },
    /// The device does not offer this interrupt kind, or not that many vectors.
    IrqUnsupported {
        /// The kind asked for.
        kind: IrqKind,
        /// Vectors asked for.
        wanted: u32,
        /// Vectors the device offers (0: the kind is absent).
        available: u32,
    },
    /// The device described itself in a way that cannot be right (a capability list that
    /// loops or points outside config space, a BAR of impossible size, …).
    Malformed {
        /// What was wrong.
        what: &'static str,
        /// Where, as a config-space offset or BAR offset.
        offset: u64,
    },
    /// This OS or device cannot do the operation at all.
    Unsupported {
        /// What was asked.
        op: &'static str,
    },
    /// The OS refused for another reason.
    Os {
        /// What was attempted.
        op: &'static str,
        /// The OS's error code (errno on Linux).
        code: i32,
    },
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PciError::NotFound { addr } => write!(
                f,
                "no PCI device at {addr}; check the address with lspci and that it is bound to \
                 the expected driver"
            ),
            PciError::Permission { op, hint } => write!(f, "{op}: permission denied; {hint}"),
            PciError::OutOfRange {
                offset,
                width,
                limit,
            } => write!(
                f,
                "{width}-byte access at offset {offset:#x} is outside a {limit:#x}-byte window \
                 or misaligned (driver bug: validate device-supplied offsets at setup)"
            ),
            PciError::NoSuchBar { bar } => {
                write!(f, "BAR{bar} is not implemented by this device")
            }
            PciError::BarUnusable { bar, reason } => write!(f, "BAR{bar} cannot be used: {reason}"),
            PciError::IrqUnsupported {
                kind,
                wanted,
                available,
            } => write!(
                f,
                "{kind}: {wanted} vectors wanted, device offers {available}; use fewer queues \
                 or another interrupt kind"
            ),
            PciError::Malformed { what, offset } => write!(
                f,
                "device reports nonsense at {offset:#x}: {what}; the device (or its emulation) \
                 is broken — reset it or leave it unused"
            ),
            PciError::Unsupported { op } => write!(f, "{op} is not supported here"),
            PciError::Os { op, code } => write!(f, "{op} failed with OS error {code}"),
        }
    }
}

impl core::error::Error for PciError {}

/// The register window of one BAR: memory-mapped registers, or the I/O ports of an I/O BAR
/// (which an OS may reach by port instructions or, as VFIO does, through a file).
///
/// Accesses are volatile and little-endian (the PCI byte order), and never fault: outside the
/// window or misaligned, a read returns all ones and a write is dropped (see the module docs).
/// Memory ordering against DMA memory is the driver's job: a `Release` fence before a doorbell
/// write, an `Acquire` fence after a register read that publishes device writes.
pub trait Mmio: Send + Sync {
    /// Size of the window in bytes.
    fn len(&self) -> usize;

    /// Whether the window is empty (never, for a mapped BAR).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a byte.
    fn read8(&self, offset: usize) -> u8;
    /// Reads a little-endian `u16` at a 2-aligned offset.
    fn read16(&self, offset: usize) -> u16;
    /// Reads a little-endian `u32` at a 4-aligned offset.
    fn read32(&self, offset: usize) -> u32;
    /// Writes a byte.
    fn write8(&self, offset: usize, value: u8);
    /// Writes a little-endian `u16` at a 2-aligned offset.
    fn write16(&self, offset: usize, value: u16);
    /// Writes a little-endian `u32` at a 4-aligned offset.
    fn write32(&self, offset: usize, value: u32);

    /// Reads a `u64` as two 32-bit reads, low half first (the order the virtio spec and most
    /// devices accept; a device that needs one 64-bit access is driver-specific).
    fn read64(&self, offset: usize) -> u64 {
        let lo = self.read32(offset) as u64;
        let hi = self.read32(offset.wrapping_add(4)) as u64;
        lo | (hi << 32)
    }

    /// Writes a `u64` as two 32-bit writes, low half first.
    fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset.wrapping_add(4), (value >> 32) as u32);
    }

    /// Checks that `width` bytes at `offset` lie inside the window and are naturally aligned
    /// (`width` 1, 2, 4 or 8). Drivers call this once per device-supplied offset at setup.
    fn check(&self, offset: usize, width: usize) -> Result<(), PciError> {
        check_window(offset as u64, width, self.len() as u64)
    }
}

/// The check behind [`Mmio::check`] and config-space accessors: inside `limit`, aligned to a
/// power-of-two `width` of at most 8.
#[inline]
pub fn check_window(offset: u64, width: usize, limit: u64) -> Result<(), PciError> {
    let ok = matches!(width, 1 | 2 | 4 | 8)
        && offset.is_multiple_of(width as u64)
        && offset
            .checked_add(width as u64)
            .is_some_and(|end| end <= limit);
    if ok {
        Ok(())
    } else {
        Err(PciError::OutOfRange {
            offset,
            width,
            limit,
        })
    }
}

/// One PCI function, opened for a driver.
///
/// Dropping the device releases it (unmaps its BARs, disables its interrupts where the OS
/// does that on close). BAR windows handed out borrow nothing from the device; they stay
/// valid while they live.
pub trait PciDevice: Send + Sync {
    /// A BAR's register window.
    type Bar: Mmio + 'static;
    /// An interrupt vector's event handle.
    type Irq: EventNotifier + 'static;

    /// The device's address.
    fn addr(&self) -> PciAddr;

    /// Size of config space: 256 for conventional PCI, 4096 for PCI Express.
    fn config_len(&self) -> u16;

    /// Reads `buf.len()` bytes of config space from `offset`.
    fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), PciError>;

    /// Writes `data` to config space at `offset`.
    fn config_write(&self, offset: u16, data: &[u8]) -> Result<(), PciError>;

    /// What BAR `bar` (0..=5) is, or `None` if the device does not implement it.
    fn bar_info(&self, bar: u8) -> Result<Option<BarInfo>, PciError>;

    /// Maps BAR `bar` and returns its register window.
    fn map_bar(&self, bar: u8) -> Result<Self::Bar, PciError>;

    /// How many vectors of `kind` the device offers (0 if none).
    fn irq_count(&self, kind: IrqKind) -> Result<u32, PciError>;

    /// A new event handle to connect to a vector with [`irq_enable`](Self::irq_enable).
    fn irq_event(&self) -> Result<Self::Irq, PciError>;

    /// Enables vectors `0..events.len()` of `kind`, vector `i` signalling `events[i]`,
    /// replacing any previous setting of that kind.
    fn irq_enable(&self, kind: IrqKind, events: &[&Self::Irq]) -> Result<(), PciError>;

    /// Disables every vector of `kind`.
    fn irq_disable(&self, kind: IrqKind) -> Result<(), PciError>;

    /// Unmasks `kind` after an interrupt where the OS masks it on delivery (INTx). The default
    /// does nothing, which is right for MSI and MSI-X.
    fn irq_unmask(&self, _kind: IrqKind) -> Result<(), PciError> {
        Ok(())
    }

    /// Resets the function (FLR or the OS's best reset), if the OS can.
    fn reset(&self) -> Result<(), PciError>;

    /// Reads a config-space byte.
    fn config_read_u8(&self, offset: u16) -> Result<u8, PciError> {
        let mut b = [0u8; 1];
        self.config_read(offset, &mut b)?;
        Ok(b[0])
    }

    /// Reads a little-endian config-space `u16`.
    fn config_read_u16(&self, offset: u16) -> Result<u16, PciError> {
        let mut b = [0u8; 2];
        self.config_read(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a little-endian config-space `u32`.
    fn config_read_u32(&self, offset: u16) -> Result<u32, PciError> {
        let mut b = [0u8; 4];
        self.config_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a little-endian config-space `u16`.
    fn config_write_u16(&self, offset: u16, value: u16) -> Result<(), PciError> {
        self.config_write(offset, &value.to_le_bytes())
    }

    /// Turns bus mastering (the device's right to DMA) on or off, with memory-space decoding
    /// kept on, through the command register (PCI Local Bus 3.0 §6.2.2).
    fn set_bus_master(&self, on: bool) -> Result<(), PciError> {
        use crate::pci::config::{command, COMMAND};
        let cmd = self.config_read_u16(COMMAND)?;
        let new = if on {
            cmd | command::BUS_MASTER | command::MEMORY_SPACE
        } else {
            cmd & !command::BUS_MASTER
        };
        if new != cmd {
            self.config_write_u16(COMMAND, new)?;
        }
        Ok(())
    }
}

/// An OS that opens PCI devices for drivers.
pub trait Pci {
    /// The device type.
    type Device: PciDevice + 'static;

    /// Opens the function at `addr` for exclusive use by one driver.
    fn pci_open(&self, addr: PciAddr) -> Result<Self::Device, PciError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_checks() {
        assert!(check_window(0, 4, 16).is_ok());
        assert!(check_window(12, 4, 16).is_ok());
        assert!(check_window(14, 4, 16).is_err(), "misaligned");
        assert!(check_window(16, 1, 16).is_err(), "past the end");
        assert!(check_window(u64::MAX - 1, 2, u64::MAX).is_err(), "overflow");
        assert!(check_window(0, 3, 16).is_err(), "odd width");
        assert!(check_window(8, 8, 16).is_ok());
    }
}
