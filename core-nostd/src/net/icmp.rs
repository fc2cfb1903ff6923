//! ICMPv4 (RFC 792): enough for echo request and reply.

use super::checksum;
use super::{be16, put16, WireError};

/// Bytes of the ICMP header (type, code, checksum, rest-of-header).
pub const HEADER_LEN: usize = 8;
/// Echo reply type.
pub const ECHO_REPLY: u8 = 0;
/// Echo request type.
pub const ECHO_REQUEST: u8 = 8;

/// A view of an ICMPv4 message (the whole IP payload).
#[derive(Clone, Copy, Debug)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// A view after checking the header fits.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[0]
    }

    /// Code.
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[1]
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    /// Echo sequence number.
    pub fn echo_seq(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    /// The data after the header.
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buf.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Turns an echo request into its reply in place: type 0, same identifier, sequence and
    /// data, checksum updated incrementally (only the type word changed).
    pub fn make_echo_reply(&mut self) {
        let b = self.buf.as_mut();
        let old = be16(b, 0);
        b[0] = ECHO_REPLY;
        let new = be16(b, 0);
        let c = checksum::update(be16(b, 2), old, new);
        put16(b, 2, c);
    }

    /// Recomputes the checksum.
    pub fn fill_checksum(&mut self) {
        let b = self.buf.as_mut();
        put16(b, 2, 0);
        let c = checksum::checksum(b);
        put16(b, 2, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_reply_in_place() {
        let mut m = [
            ECHO_REQUEST,
            0,
            0,
            0,
            0x12,
            0x34,
            0,
            7,
            b'p',
            b'i',
            b'n',
            b'g',
            b'!',
        ];
        Icmpv4Packet::new_checked(&mut m[..])
            .unwrap()
            .fill_checksum();
        let mut p = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
        assert!(p.verify_checksum());
        p.make_echo_reply();
        assert!(p.verify_checksum(), "incremental update keeps it valid");
        assert_eq!(
            (p.msg_type(), p.echo_ident(), p.echo_seq(), p.data()),
            (0, 0x1234, 7, &b"ping!"[..])
        );
        for n in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&m[..n]).unwrap_err(),
                WireError::Truncated
            );
        }
    }
}
