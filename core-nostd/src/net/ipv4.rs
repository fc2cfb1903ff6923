//! IPv4 headers (RFC 791).

use super::checksum;
use super::{be16, put16, WireError};
use core::net::Ipv4Addr;

/// Bytes of a header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// The protocol numbers rdk's stack handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// ICMP.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// TCP.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP.
    pub const UDP: IpProtocol = IpProtocol(17);
}

/// A view of an IPv4 packet whose version, header length and total length were checked
/// against the buffer: the header and `payload()` lie inside it. Link-layer padding after
/// the total length is excluded from the payload.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view after checking version 4, IHL >= 5, header and total length inside the buffer.
    /// The checksum is not checked here (see [`verify_checksum`](Self::verify_checksum)).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(WireError::Unsupported);
        }
        let hl = ((b[0] & 0x0f) as usize) * 4;
        if hl < MIN_HEADER_LEN || hl > b.len() {
            return Err(WireError::BadHeaderLength);
        }
        let total = be16(b, 2) as usize;
        if total < hl {
            return Err(WireError::BadLength);
        }
        if total > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        ((self.buf.as_ref()[0] & 0x0f) as usize) * 4
    }

    /// Total length (header + payload).
    pub fn total_len(&self) -> usize {
        be16(self.buf.as_ref(), 2) as usize
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.buf.as_ref()[6] & 0x40 != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.buf.as_ref()[6] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        ((be16(self.buf.as_ref(), 6) & 0x1fff) as usize) * 8
    }

    /// Whether this is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[8]
    }

    /// Protocol.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buf.as_ref()[9])
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buf.as_ref()[..self.header_len()]) == 0
    }

    /// The payload (up to the total length).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        put16(b, 10, 0);
        let c = checksum::checksum(&b[..hl]);
        put16(b, 10, c);
    }

    /// Decrements the TTL, updating the checksum incrementally (RFC 1624).
    pub fn decrement_ttl(&mut self) {
        let b = self.buf.as_mut();
        let old = be16(b, 8);
        b[8] = b[8].saturating_sub(1);
        let new = be16(b, 8);
        let c = checksum::update(be16(b, 10), old, new);
        put16(b, 10, c);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), self.total_len());
        &mut self.buf.as_mut()[hl..total]
    }
}

/// An IPv4 header as a value (no options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source.
    pub src: Ipv4Addr,
    /// Destination.
    pub dst: Ipv4Addr,
    /// Protocol.
    pub protocol: IpProtocol,
    /// Payload bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Don't fragment.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Reads a packet whose checksum verifies and which is not a fragment.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self, WireError> {
        if !p.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        if p.is_fragment() {
            return Err(WireError::Unsupported);
        }
        Ok(Self {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: p.total_len() - p.header_len(),
            ttl: p.ttl(),
            dont_frag: p.dont_frag(),
        })
    }

    /// Writes a 20-byte header (identification `ident`, checksum filled) at the start of
    /// `buf`.
    pub fn emit(&self, buf: &mut [u8], ident: u16) -> Result<(), WireError> {
        let total = MIN_HEADER_LEN
            .checked_add(self.payload_len)
            .and_then(|t| u16::try_from(t).ok())
            .ok_or(WireError::BadLength)?;
        let b = buf.get_mut(..MIN_HEADER_LEN).ok_or(WireError::Truncated)?;
        b[0] = 0x45;
        b[1] = 0;
        put16(b, 2, total);
        put16(b, 4, ident);
        put16(b, 6, if self.dont_frag { 0x4000 } else { 0 });
        b[8] = self.ttl;
        b[9] = self.protocol.0;
        put16(b, 10, 0);
        b[12..16].copy_from_slice(&self.src.octets());
        b[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(b);
        put16(b, 10, c);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(192, 168, 0, 1),
            dst: Ipv4Addr::new(192, 168, 0, 199),
            protocol: IpProtocol::UDP,
            payload_len: 8,
            ttl: 64,
            dont_frag: true,
        }
    }

    #[test]
    fn every_malformation_is_an_error() {
        let mut b = [0u8; 28];
        repr().emit(&mut b, 7).unwrap();
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().verify_checksum());
        for n in 0..28 {
            assert!(Ipv4Packet::new_checked(&b[..n]).is_err(), "prefix {n}");
        }
        let mut v6 = b;
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            WireError::Unsupported
        );
        let mut ihl = b;
        ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl[..]).unwrap_err(),
            WireError::BadHeaderLength
        );
        ihl[0] = 0x4f; // 60 bytes of header in a 28-byte buffer
        assert_eq!(
            Ipv4Packet::new_checked(&ihl[..]).unwrap_err(),
            WireError::BadHeaderLength
        );
        let mut short = b;
        put16(&mut short, 2, 19);
        assert_eq!(
            Ipv4Packet::new_checked(&short[..]).unwrap_err(),
            WireError::BadLength
        );
        let mut bad = b;
        bad[15] ^= 1;
        let p = Ipv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), WireError::BadChecksum);
        let mut frag = b;
        frag[6] = 0x20; // MF
        Ipv4Packet::new_checked(&mut frag[..])
            .unwrap()
            .fill_checksum();
        let p = Ipv4Packet::new_checked(&frag[..]).unwrap();
        assert!(p.is_fragment());
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), WireError::Unsupported);
    }

    #[test]
    fn emit_refuses_any_length_past_16_bits() {
        let mut b = [0u8; 20];
        for len in [65_516, usize::MAX - 19, usize::MAX] {
            let r = Ipv4Repr {
                payload_len: len,
                ..repr()
            };
            assert_eq!(r.emit(&mut b, 0), Err(WireError::BadLength), "{len}");
        }
        assert_eq!(b, [0; 20], "nothing written");
    }

    #[test]
    fn padding_is_not_payload_and_ttl_update_keeps_the_checksum() {
        let mut b = [0u8; 40];
        repr().emit(&mut b, 1).unwrap();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(
            p.payload().len(),
            8,
            "the 12 bytes of padding are not payload"
        );
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
    }

    proptest! {
        // Miri cannot persist failures (no file system) and is slow: a few cases there.
        #![proptest_config(ProptestConfig {
            cases: if cfg!(miri) { 2 } else { 256 },
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn emit_parse_round_trip(
            s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), proto in any::<u8>(),
            len in 0usize..1480, ttl in any::<u8>(), df in any::<bool>(), id in any::<u16>(),
        ) {
            let r = Ipv4Repr {
                src: Ipv4Addr::from(s), dst: Ipv4Addr::from(d), protocol: IpProtocol(proto),
                payload_len: len, ttl, dont_frag: df,
            };
            let mut b = [0u8; 1500];
            r.emit(&mut b, id).unwrap();
            let p = Ipv4Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
            prop_assert_eq!(p.ident(), id);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Ipv4Packet::new_checked(&data[..]) {
                let _ = (p.payload().len(), p.verify_checksum(), Ipv4Repr::parse(&p));
            }
        }
    }
}
