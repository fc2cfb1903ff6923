//! UDP (RFC 768).

use super::checksum;
use super::{be16, put16, WireError};
use core::net::Ipv4Addr;

/// Bytes of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram whose length field was checked against the buffer.
#[derive(Clone, Copy, Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// A view after checking the header fits and `8 <= length <= buffer`.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = be16(b, 4) as usize;
        if len < HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if len > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// Length field (header + payload).
    pub fn len(&self) -> usize {
        be16(self.buf.as_ref(), 4) as usize
    }

    /// Whether the datagram has no payload.
    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    /// Checksum field (0: none was computed).
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..self.len()]
    }

    /// Whether the checksum verifies for this pseudo-header (a zero field means "none" and
    /// verifies, as RFC 768 allows over IPv4).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let ph = checksum::pseudo_header(src, dst, 17, len as u16);
        !checksum::fold(checksum::sum(&self.buf.as_ref()[..len], ph)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Computes and writes the checksum (a computed 0 is sent as 0xffff).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = self.len();
        let b = self.buf.as_mut();
        put16(b, 6, 0);
        let ph = checksum::pseudo_header(src, dst, 17, len as u16);
        let c = !checksum::fold(checksum::sum(&b[..len], ph));
        put16(b, 6, if c == 0 { 0xffff } else { c });
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        &mut self.buf.as_mut()[HEADER_LEN..len]
    }
}

/// A UDP header as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload bytes.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Reads a datagram, verifying its checksum against the pseudo-header.
    pub fn parse<T: AsRef<[u8]>>(
        p: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Self, WireError> {
        if !p.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        Ok(Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.len() - HEADER_LEN,
        })
    }

    /// Writes the header at the start of `buf` (whose payload must already be in place if
    /// `checksum` is given the addresses to compute it; `None` leaves the field 0, for a port
    /// that computes it).
    pub fn emit(
        &self,
        buf: &mut [u8],
        checksum: Option<(Ipv4Addr, Ipv4Addr)>,
    ) -> Result<(), WireError> {
        let len = HEADER_LEN
            .checked_add(self.payload_len)
            .ok_or(WireError::BadLength)?;
        let len16 = u16::try_from(len).map_err(|_| WireError::BadLength)?;
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        put16(b, 0, self.src_port);
        put16(b, 2, self.dst_port);
        put16(b, 4, len16);
        put16(b, 6, 0);
        if let Some((s, d)) = checksum {
            UdpPacket { buf: b }.fill_checksum(s, d);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const D: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn lengths_and_checksums() {
        let mut b = [0u8; 16];
        b[8..13].copy_from_slice(b"hello");
        let r = UdpRepr {
            src_port: 1000,
            dst_port: 2000,
            payload_len: 5,
        };
        r.emit(&mut b, Some((S, D))).unwrap();
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), b"hello", "the padding byte is not payload");
        assert_eq!(UdpRepr::parse(&p, S, D).unwrap(), r);
        assert_eq!(
            UdpRepr::parse(&p, S, Ipv4Addr::new(10, 0, 0, 3)).unwrap_err(),
            WireError::BadChecksum
        );
        let mut none = b;
        put16(&mut none, 6, 0);
        assert!(
            UdpPacket::new_checked(&none[..])
                .unwrap()
                .verify_checksum(S, S),
            "0 = no checksum"
        );
        for n in 0..13 {
            assert!(UdpPacket::new_checked(&b[..n]).is_err(), "prefix {n}");
        }
        let mut small = b;
        put16(&mut small, 4, 7);
        assert_eq!(
            UdpPacket::new_checked(&small[..]).unwrap_err(),
            WireError::BadLength
        );
    }

    #[test]
    fn emit_refuses_any_length_past_16_bits() {
        let mut b = [0u8; 8];
        for len in [65_528, usize::MAX - 7, usize::MAX] {
            let r = UdpRepr {
                src_port: 1,
                dst_port: 2,
                payload_len: len,
            };
            assert_eq!(r.emit(&mut b, None), Err(WireError::BadLength), "{len}");
        }
        assert_eq!(b, [0; 8], "nothing written");
    }

    proptest! {
        // Miri cannot persist failures (no file system) and is slow: a few cases there.
        #![proptest_config(ProptestConfig {
            cases: if cfg!(miri) { 2 } else { 256 },
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..600), sp in any::<u16>(), dp in any::<u16>()) {
            let mut b = std::vec![0u8; HEADER_LEN + payload.len()];
            b[HEADER_LEN..].copy_from_slice(&payload);
            let r = UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() };
            r.emit(&mut b, Some((S, D))).unwrap();
            let p = UdpPacket::new_checked(&b[..]).unwrap();
            prop_assert_eq!(UdpRepr::parse(&p, S, D).unwrap(), r);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_ne!(p.checksum(), 0);
        }
    }
}
