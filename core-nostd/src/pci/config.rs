//! The type-0 config-space header (PCI Local Bus 3.0 §6.1) and a reader abstraction.

use crate::os::pci::{PciDevice, PciError};

/// Vendor id (u16).
pub const VENDOR_ID: u16 = 0x00;
/// Device id (u16).
pub const DEVICE_ID: u16 = 0x02;
/// Command register (u16), bits in [`command`].
pub const COMMAND: u16 = 0x04;
/// Status register (u16), bits in [`status`].
pub const STATUS: u16 = 0x06;
/// Revision id (u8).
pub const REVISION_ID: u16 = 0x08;
/// Class code: programming interface (u8) at 0x09, subclass at 0x0a, base class at 0x0b.
pub const CLASS_PROG_IF: u16 = 0x09;
/// Header type (u8); bit 7 marks a multi-function device.
pub const HEADER_TYPE: u16 = 0x0e;
/// BAR 0 (u32); BAR `n` is at `BAR0 + 4 * n`, n in 0..=5.
pub const BAR0: u16 = 0x10;
/// Subsystem vendor id (u16).
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
/// Subsystem id (u16).
pub const SUBSYSTEM_ID: u16 = 0x2e;
/// Capabilities pointer (u8), valid when [`status::CAP_LIST`] is set.
pub const CAPABILITIES_PTR: u16 = 0x34;
/// Interrupt pin (u8); 0 means no INTx.
pub const INTERRUPT_PIN: u16 = 0x3d;
/// First byte after the type-0 header; capabilities live at or above it.
pub const HEADER_END: u16 = 0x40;

/// Command register bits.
pub mod command {
    /// Decode I/O-space accesses.
    pub const IO_SPACE: u16 = 1 << 0;
    /// Decode memory-space accesses.
    pub const MEMORY_SPACE: u16 = 1 << 1;
    /// Allow the device to master the bus (DMA, MSI writes).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// Disable the INTx line.
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register bits.
pub mod status {
    /// The INTx line is asserted.
    pub const INTERRUPT: u16 = 1 << 3;
    /// A capability list is present at [`super::CAPABILITIES_PTR`].
    pub const CAP_LIST: u16 = 1 << 4;
}

/// Anything config space can be read from: an open device, or a snapshot of its bytes (a sysfs
/// `config` file, a test fixture).
pub trait ConfigRead {
    /// Size of config space in bytes.
    fn config_size(&self) -> u16;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<(), PciError>;

    /// Reads a byte.
    fn read_u8(&self, offset: u16) -> Result<u8, PciError> {
        let mut b = [0u8; 1];
        self.read_config(offset, &mut b)?;
        Ok(b[0])
    }
    /// Reads a little-endian `u16`.
    fn read_u16(&self, offset: u16) -> Result<u16, PciError> {
        let mut b = [0u8; 2];
        self.read_config(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// Reads a little-endian `u32`.
    fn read_u32(&self, offset: u16) -> Result<u32, PciError> {
        let mut b = [0u8; 4];
        self.read_config(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

impl ConfigRead for [u8] {
    fn config_size(&self) -> u16 {
        self.len().min(4096) as u16
    }

    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<(), PciError> {
        let start = offset as usize;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(PciError::OutOfRange {
                offset: offset as u64,
                width: buf.len(),
                limit: self.len() as u64,
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Config space of an open device, read through its [`PciDevice`] methods.
pub struct DeviceConfig<'a, D: PciDevice + ?Sized>(pub &'a D);

impl<D: PciDevice + ?Sized> ConfigRead for DeviceConfig<'_, D> {
    fn config_size(&self) -> u16 {
        self.0.config_len()
    }

    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<(), PciError> {
        let end = offset as usize + buf.len();
        if end > self.config_size() as usize {
            return Err(PciError::OutOfRange {
                offset: offset as u64,
                width: buf.len(),
                limit: self.config_size() as u64,
            });
        }
        self.0.config_read(offset, buf)
    }
}
