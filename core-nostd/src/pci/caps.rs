//! The capability-list walk (PCI Local Bus 3.0 §6.7) and the MSI-X capability (§6.8.2).
//!
//! The list is written by the device, so the walk defends itself: a pointer below the header or
//! past config space ends it with an error, as does a pointer seen before (a loop) or more
//! entries than fit. Each pointer's two low bits are reserved and masked, as the spec says.

use super::config::{status, ConfigRead, CAPABILITIES_PTR, HEADER_END, STATUS};
use crate::os::pci::PciError;

/// Capability ids used by rdk's drivers.
pub mod id {
    /// Power management.
    pub const POWER_MANAGEMENT: u8 = 0x01;
    /// MSI.
    pub const MSI: u8 = 0x05;
    /// Vendor-specific (virtio's structure locations).
    pub const VENDOR: u8 = 0x09;
    /// PCI Express.
    pub const PCI_EXPRESS: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// One entry of the capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability id (see [`id`]).
    pub id: u8,
    /// Config-space offset of the entry (its id byte).
    pub offset: u16,
}

/// Iterator over the capability list; yields `Err` once and stops if the list is malformed.
pub struct CapIter<'a, C: ConfigRead + ?Sized> {
    cfg: &'a C,
    next: u16,
    /// One bit per dword of the first 256 bytes: entries already visited.
    seen: [u64; 1],
    done: bool,
}

/// At most this many entries fit between the header and the end of the 256-byte space.
const MAX_CAPS: u32 = (256 - HEADER_END as u32) / 4;

impl<'a, C: ConfigRead + ?Sized> CapIter<'a, C> {
    /// Starts a walk; an empty iterator if the device has no capability list.
    pub fn new(cfg: &'a C) -> Result<Self, PciError> {
        let has = cfg.read_u16(STATUS)? & status::CAP_LIST != 0;
        let next = if has {
            (cfg.read_u8(CAPABILITIES_PTR)? & !3) as u16
        } else {
            0
        };
        Ok(Self {
            cfg,
            next,
            seen: [0],
            done: !has,
        })
    }

    fn step(&mut self) -> Result<Option<Capability>, PciError> {
        let off = self.next;
        if off == 0 {
            return Ok(None);
        }
        if !(HEADER_END..=254).contains(&off) {
            return Err(PciError::Malformed {
                what: "capability pointer outside 0x40..0xff",
                offset: off as u64,
            });
        }
        let dword = (off - HEADER_END) / 4;
        if dword as u32 >= MAX_CAPS || self.seen[0] & (1 << dword) != 0 {
            return Err(PciError::Malformed {
                what: "capability list loops back on itself",
                offset: off as u64,
            });
        }
        self.seen[0] |= 1 << dword;
        let id = self.cfg.read_u8(off)?;
        self.next = (self.cfg.read_u8(off + 1)? & !3) as u16;
        Ok(Some(Capability { id, offset: off }))
    }
}

impl<C: ConfigRead + ?Sized> Iterator for CapIter<'_, C> {
    type Item = Result<Capability, PciError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(c)) => Some(Ok(c)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The first capability with id `cap_id`, if any; a malformed list is an error.
pub fn find<C: ConfigRead + ?Sized>(cfg: &C, cap_id: u8) -> Result<Option<Capability>, PciError> {
    for cap in CapIter::new(cfg)? {
        let cap = cap?;
        if cap.id == cap_id {
            return Ok(Some(cap));
        }
    }
    Ok(None)
}

/// Where a device's MSI-X table and pending-bit array live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixInfo {
    /// Config-space offset of the capability.
    pub cap_offset: u16,
    /// Number of vectors (table entries), 1..=2048.
    pub table_size: u16,
    /// BAR holding the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR.
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the PBA in that BAR.
    pub pba_offset: u32,
}

impl MsixInfo {
    /// Bytes one table entry takes (§6.8.2.6).
    pub const ENTRY_SIZE: u32 = 16;

    /// Reads the MSI-X capability at `cap_offset`; a BAR indicator above 5 is malformed.
    pub fn read<C: ConfigRead + ?Sized>(cfg: &C, cap_offset: u16) -> Result<Self, PciError> {
        let control = cfg.read_u16(cap_offset + 2)?;
        let table = cfg.read_u32(cap_offset + 4)?;
        let pba = cfg.read_u32(cap_offset + 8)?;
        let (table_bar, pba_bar) = ((table & 7) as u8, (pba & 7) as u8);
        if table_bar > 5 || pba_bar > 5 {
            return Err(PciError::Malformed {
                what: "MSI-X table or PBA in BAR indicator 6 or 7 (reserved)",
                offset: cap_offset as u64,
            });
        }
        Ok(Self {
            cap_offset,
            table_size: (control & 0x7ff) + 1,
            table_bar,
            table_offset: table & !7,
            pba_bar,
            pba_offset: pba & !7,
        })
    }

    /// The byte range `[start, end)` the table occupies in its BAR.
    pub fn table_range(&self) -> (u64, u64) {
        let start = self.table_offset as u64;
        (
            start,
            start + self.table_size as u64 * Self::ENTRY_SIZE as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate alloc;
    use alloc::vec::Vec;

    /// A 256-byte config space with a capability chain at the given offsets (id = index + 1).
    fn space(chain: &[(u8, u8, u8)]) -> [u8; 256] {
        let mut c = [0u8; 256];
        c[STATUS as usize] = status::CAP_LIST as u8;
        if let Some(first) = chain.first() {
            c[CAPABILITIES_PTR as usize] = first.0;
        }
        for &(off, id, next) in chain {
            c[off as usize] = id;
            c[off as usize + 1] = next;
        }
        c
    }

    fn walk(c: &[u8]) -> Vec<Result<Capability, PciError>> {
        CapIter::new(c).unwrap().collect()
    }

    #[test]
    fn walks_a_normal_list() {
        let c = space(&[
            (0x40, id::MSIX, 0x50),
            (0x50, id::VENDOR, 0x60),
            (0x60, id::VENDOR, 0),
        ]);
        let caps: Vec<_> = walk(&c).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(caps.len(), 3);
        assert_eq!(
            caps[1],
            Capability {
                id: id::VENDOR,
                offset: 0x50
            }
        );
        assert_eq!(find(&c[..], id::MSIX).unwrap().unwrap().offset, 0x40);
        assert_eq!(find(&c[..], id::PCI_EXPRESS).unwrap(), None);
    }

    #[test]
    fn no_list_without_the_status_bit() {
        let mut c = space(&[(0x40, id::MSIX, 0)]);
        c[STATUS as usize] = 0;
        assert!(walk(&c).is_empty());
    }

    #[test]
    fn loops_are_cut() {
        let c = space(&[(0x40, 1, 0x50), (0x50, 2, 0x40)]);
        let r = walk(&c);
        assert_eq!(r.len(), 3);
        assert!(matches!(
            r[2],
            Err(PciError::Malformed { offset: 0x40, .. })
        ));
        // A self-loop, with reserved low bits set in the pointer.
        let c = space(&[(0x44, 1, 0x47)]);
        let r = walk(&c);
        assert_eq!(r.len(), 2);
        assert!(r[1].is_err());
    }

    #[test]
    fn pointers_into_the_header_are_rejected() {
        let c = space(&[(0x40, 1, 0x10)]);
        let r = walk(&c);
        assert!(matches!(
            r[1],
            Err(PciError::Malformed { offset: 0x10, .. })
        ));
    }

    #[test]
    fn truncated_space_is_an_error_not_a_panic() {
        let c = space(&[(0x40, 1, 0xfc)]);
        let r = walk(&c[..0xfd]);
        assert!(r.iter().any(|x| x.is_err()));
    }

    #[test]
    fn every_possible_chain_terminates() {
        // Exhaustive over the next pointer of two entries: the walk never yields more than
        // MAX_CAPS entries plus one error.
        // Under Miri (a thousand times slower) a sample of the same space.
        let (sa, sb) = if cfg!(miri) { (17, 29) } else { (1, 3) };
        for a in (0..=255u8).step_by(sa) {
            for b in (0..=255u8).step_by(sb) {
                let c = space(&[(0x40, 1, a), (a & !3, 2, b)]);
                let r = walk(&c);
                assert!(r.len() <= MAX_CAPS as usize + 1);
            }
        }
    }

    #[test]
    fn msix_capability() {
        let mut c = space(&[(0x40, id::MSIX, 0)]);
        c[0x42..0x44].copy_from_slice(&(4u16 | 0x8000).to_le_bytes());
        c[0x44..0x48].copy_from_slice(&0x2003u32.to_le_bytes());
        c[0x48..0x4c].copy_from_slice(&0x3003u32.to_le_bytes());
        let m = MsixInfo::read(&c[..], 0x40).unwrap();
        assert_eq!((m.table_size, m.table_bar, m.table_offset), (5, 3, 0x2000));
        assert_eq!((m.pba_bar, m.pba_offset), (3, 0x3000));
        assert_eq!(m.table_range(), (0x2000, 0x2000 + 5 * 16));
        c[0x44] = 0x07;
        assert!(MsixInfo::read(&c[..], 0x40).is_err());
    }
}
