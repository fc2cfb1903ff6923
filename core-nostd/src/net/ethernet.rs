//! Ethernet II frames (IEEE 802.3 with an EtherType), no FCS.

use super::{be16, put16, WireError};

/// EtherType values rdk's stack uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// An 802.1Q VLAN tag follows.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
}

/// Bytes of the Ethernet header.
pub const HEADER_LEN: usize = 14;

/// A view of an Ethernet frame.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// A view after checking the buffer holds the header.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }

    /// The destination MAC address.
    pub fn dst(&self) -> [u8; 6] {
        self.buf.as_ref()[0..6].try_into().unwrap_or([0; 6])
    }

    /// The source MAC address.
    pub fn src(&self) -> [u8; 6] {
        self.buf.as_ref()[6..12].try_into().unwrap_or([0; 6])
    }

    /// The EtherType.
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buf.as_ref(), 12))
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[0..6].copy_from_slice(&mac);
    }

    /// Sets the source address.
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[6..12].copy_from_slice(&mac);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: EtherType) {
        put16(self.buf.as_mut(), 12, t.0);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_truncation() {
        let mut b = [0u8; 20];
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        f.set_dst([1, 2, 3, 4, 5, 6]);
        f.set_src([7, 8, 9, 10, 11, 12]);
        f.set_ethertype(EtherType::ARP);
        f.payload_mut()[0] = 0xaa;
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(
            (f.dst(), f.src(), f.ethertype()),
            ([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], EtherType::ARP)
        );
        assert_eq!(f.payload().len(), 6);
        for n in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&b[..n]).unwrap_err(),
                WireError::Truncated
            );
        }
    }
}
