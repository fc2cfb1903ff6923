//! ARP for IPv4 over Ethernet (RFC 826): the only hardware/protocol pair rdk's stack speaks.

use super::{be16, put16, WireError};
use core::net::Ipv4Addr;

/// Bytes of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArpOp {
    /// Who has `dst_ip`? Tell `src_ip`.
    Request,
    /// `src_ip` is at `src_mac`.
    Reply,
}

/// A view of an ARP packet, checked to be Ethernet/IPv4.
#[derive(Clone, Copy, Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// A view after checking length and the Ethernet/IPv4 format fields.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        // htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4.
        if be16(b, 0) != 1 || be16(b, 2) != 0x0800 || b[4] != 6 || b[5] != 4 {
            return Err(WireError::Unsupported);
        }
        Ok(Self { buf })
    }

    /// The operation code (1 request, 2 reply; others exist).
    pub fn oper(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    fn mac(&self, at: usize) -> [u8; 6] {
        self.buf.as_ref()[at..at + 6].try_into().unwrap_or([0; 6])
    }

    fn ip(&self, at: usize) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }

    /// Sender hardware address.
    pub fn sha(&self) -> [u8; 6] {
        self.mac(8)
    }

    /// Sender protocol address.
    pub fn spa(&self) -> Ipv4Addr {
        self.ip(14)
    }

    /// Target hardware address.
    pub fn tha(&self) -> [u8; 6] {
        self.mac(18)
    }

    /// Target protocol address.
    pub fn tpa(&self) -> Ipv4Addr {
        self.ip(24)
    }
}

/// An ARP message as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub op: ArpOp,
    /// Sender MAC.
    pub src_mac: [u8; 6],
    /// Sender IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Target MAC (zero in a request).
    pub dst_mac: [u8; 6],
    /// Target IPv4 address.
    pub dst_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads a request or reply; other operations are `Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self, WireError> {
        let op = match p.oper() {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            _ => return Err(WireError::Unsupported),
        };
        Ok(Self {
            op,
            src_mac: p.sha(),
            src_ip: p.spa(),
            dst_mac: p.tha(),
            dst_ip: p.tpa(),
        })
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf.get_mut(..PACKET_LEN).ok_or(WireError::Truncated)?;
        put16(b, 0, 1);
        put16(b, 2, 0x0800);
        b[4] = 6;
        b[5] = 4;
        put16(b, 6, if self.op == ArpOp::Request { 1 } else { 2 });
        b[8..14].copy_from_slice(&self.src_mac);
        b[14..18].copy_from_slice(&self.src_ip.octets());
        b[18..24].copy_from_slice(&self.dst_mac);
        b[24..28].copy_from_slice(&self.dst_ip.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let r = ArpRepr {
            op: ArpOp::Request,
            src_mac: [2, 0, 0, 0, 0, 1],
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_mac: [0; 6],
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
        };
        let mut b = [0u8; PACKET_LEN];
        r.emit(&mut b).unwrap();
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap(),
            r
        );
        for n in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&b[..n]).unwrap_err(),
                WireError::Truncated
            );
        }
        let mut bad = b;
        bad[1] = 6; // htype IEEE 802
        assert_eq!(
            ArpPacket::new_checked(&bad[..]).unwrap_err(),
            WireError::Unsupported
        );
        let mut op3 = b;
        op3[7] = 3;
        let p = ArpPacket::new_checked(&op3[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p).unwrap_err(), WireError::Unsupported);
        assert!(r.emit(&mut [0u8; 27]).is_err());
    }
}
