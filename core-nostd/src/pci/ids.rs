//! Device identity and id tables (what a driver claims).

use super::config::{
    ConfigRead, CLASS_PROG_IF, DEVICE_ID, REVISION_ID, SUBSYSTEM_ID, SUBSYSTEM_VENDOR_ID, VENDOR_ID,
};
use crate::os::pci::PciError;

/// Matches any value in a [`PciIdMatch`] field.
pub const PCI_ANY_ID: u16 = 0xffff;

/// What a function says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciId {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Subsystem vendor id.
    pub subsystem_vendor: u16,
    /// Subsystem id.
    pub subsystem_device: u16,
    /// Class code: base class << 16 | subclass << 8 | programming interface.
    pub class: u32,
    /// Revision id.
    pub revision: u8,
}

impl PciId {
    /// Reads the identity from config space.
    pub fn read<C: ConfigRead + ?Sized>(cfg: &C) -> Result<Self, PciError> {
        let class = cfg.read_u32(REVISION_ID)?;
        debug_assert_eq!(CLASS_PROG_IF, REVISION_ID + 1);
        Ok(Self {
            vendor: cfg.read_u16(VENDOR_ID)?,
            device: cfg.read_u16(DEVICE_ID)?,
            subsystem_vendor: cfg.read_u16(SUBSYSTEM_VENDOR_ID)?,
            subsystem_device: cfg.read_u16(SUBSYSTEM_ID)?,
            class: class >> 8,
            revision: class as u8,
        })
    }
}

/// One row of a driver's id table; [`PCI_ANY_ID`] fields match anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIdMatch {
    /// Vendor id or [`PCI_ANY_ID`].
    pub vendor: u16,
    /// Device id or [`PCI_ANY_ID`].
    pub device: u16,
    /// Subsystem vendor id or [`PCI_ANY_ID`].
    pub subsystem_vendor: u16,
    /// Subsystem id or [`PCI_ANY_ID`].
    pub subsystem_device: u16,
}

impl PciIdMatch {
    /// A row matching one vendor/device pair, any subsystem.
    pub const fn new(vendor: u16, device: u16) -> Self {
        Self {
            vendor,
            device,
            subsystem_vendor: PCI_ANY_ID,
            subsystem_device: PCI_ANY_ID,
        }
    }

    /// Whether `id` matches this row.
    pub fn matches(&self, id: &PciId) -> bool {
        let f = |want: u16, have: u16| want == PCI_ANY_ID || want == have;
        f(self.vendor, id.vendor)
            && f(self.device, id.device)
            && f(self.subsystem_vendor, id.subsystem_vendor)
            && f(self.subsystem_device, id.subsystem_device)
    }

    /// The first row of `table` matching `id`.
    pub fn lookup<'t>(table: &'t [PciIdMatch], id: &PciId) -> Option<&'t PciIdMatch> {
        table.iter().find(|row| row.matches(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_identity_and_matches() {
        let mut c = [0u8; 64];
        c[0..2].copy_from_slice(&0x8086u16.to_le_bytes());
        c[2..4].copy_from_slice(&0x10d3u16.to_le_bytes());
        c[8..12].copy_from_slice(&0x0200_0003u32.to_le_bytes());
        c[0x2c..0x2e].copy_from_slice(&0x8086u16.to_le_bytes());
        c[0x2e..0x30].copy_from_slice(&0x0000u16.to_le_bytes());
        let id = PciId::read(&c[..]).unwrap();
        assert_eq!(
            (id.vendor, id.device, id.class, id.revision),
            (0x8086, 0x10d3, 0x020000, 3)
        );
        let table = [
            PciIdMatch::new(0x1af4, 0x1041),
            PciIdMatch::new(0x8086, 0x10d3),
        ];
        assert_eq!(PciIdMatch::lookup(&table, &id), Some(&table[1]));
        let any = PciIdMatch::new(0x8086, PCI_ANY_ID);
        assert!(any.matches(&id));
        assert!(!PciIdMatch::new(0x8086, 0x10c9).matches(&id));
        assert!(PciId::read(&c[..16]).is_err());
    }
}
