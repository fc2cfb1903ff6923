//! Base address registers (PCI Local Bus 3.0 §6.2.5.1): what kind of window each BAR is.

use crate::os::pci::PciError;

/// The kind of window a BAR describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// Memory space, 32-bit address.
    Mem32 {
        /// Reads have no side effects (may be mapped write-combining).
        prefetchable: bool,
    },
    /// Memory space, 64-bit address: takes this BAR and the next.
    Mem64 {
        /// Reads have no side effects.
        prefetchable: bool,
    },
    /// I/O space (legacy port I/O).
    Io,
}

impl BarKind {
    /// Decodes the low bits of a BAR register value.
    pub fn decode(raw: u32, bar: u8) -> Result<Self, PciError> {
        if raw & 1 == 1 {
            return Ok(BarKind::Io);
        }
        let prefetchable = raw & 0b1000 != 0;
        match (raw >> 1) & 0b11 {
            0b00 => Ok(BarKind::Mem32 { prefetchable }),
            0b10 if bar < 5 => Ok(BarKind::Mem64 { prefetchable }),
            0b10 => Err(PciError::Malformed {
                what: "BAR5 claims to be the low half of a 64-bit BAR",
                offset: super::config::BAR0 as u64 + 4 * bar as u64,
            }),
            _ => Err(PciError::Malformed {
                what: "BAR type is reserved (below-1M memory or 0b11)",
                offset: super::config::BAR0 as u64 + 4 * bar as u64,
            }),
        }
    }

    /// Whether this is a memory BAR.
    pub fn is_memory(self) -> bool {
        !matches!(self, BarKind::Io)
    }
}

/// One implemented BAR as the OS reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// BAR index, 0..=5.
    pub index: u8,
    /// Its kind.
    pub kind: BarKind,
    /// Size of the window in bytes (a power of two for a real device).
    pub size: u64,
    /// Whether the OS lets the window be memory-mapped; when not, register accesses go
    /// through the OS (slower, fine for setup and per-burst doorbells).
    pub mappable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bar_kinds() {
        assert_eq!(
            BarKind::decode(0xfebc_0000, 0).unwrap(),
            BarKind::Mem32 {
                prefetchable: false
            }
        );
        assert_eq!(
            BarKind::decode(0xfe00_000c, 4).unwrap(),
            BarKind::Mem64 { prefetchable: true }
        );
        assert_eq!(BarKind::decode(0xc041, 2).unwrap(), BarKind::Io);
        assert!(
            BarKind::decode(0x4, 5).is_err(),
            "64-bit BAR5 has no upper half"
        );
        assert!(BarKind::decode(0x6, 0).is_err(), "reserved type");
        assert!(
            BarKind::decode(0x2, 0).is_err(),
            "below-1M type is reserved in PCI 3.0"
        );
    }
}
