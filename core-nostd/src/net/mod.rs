//! Packet headers as zero-copy views: Ethernet, ARP, IPv4, ICMPv4, UDP, and the Internet
//! checksum; with `alloc`, transmit offload requests checked against their frame
//! (`offload`).
//!
//! Each header is a view `Packet<T: AsRef<[u8]>>` over a buffer (an mbuf's data, a slice):
//! `new_checked` validates once what the accessors then rely on, so a malformed or truncated
//! frame is an `Err(WireError)`, never a panic and never a read past the buffer. Setters exist
//! for `T: AsMut<[u8]>`. Where a header has a validated value form (`Ipv4Repr`, `UdpRepr`,
//! `ArpRepr`), `parse` reads it from a view and `emit` writes it into one — the layering the
//! UDP stack builds on. All fields are big-endian on the wire; accessors return host values.
//! Addresses are `core::net::Ipv4Addr` and `ethdev::MacAddr`-compatible `[u8; 6]`.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
#[cfg(feature = "alloc")]
pub mod offload;
pub mod udp;

pub use arp::{ArpOp, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame};
pub use icmp::Icmpv4Packet;
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use udp::{UdpPacket, UdpRepr};

use core::fmt;

/// Why a buffer is not a valid header of the kind asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the header (or than a length field says).
    Truncated,
    /// A version, type or format field this code does not handle (IPv4 version ≠ 4, ARP for
    /// a hardware or protocol type other than Ethernet/IPv4).
    Unsupported,
    /// A header-length field below its minimum or past the buffer.
    BadHeaderLength,
    /// A total-length field inconsistent with the header or the buffer.
    BadLength,
    /// The checksum does not verify.
    BadChecksum,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated: the buffer is shorter than the header says",
            WireError::Unsupported => "unsupported version or format",
            WireError::BadHeaderLength => "bad header length field",
            WireError::BadLength => "bad total length field",
            WireError::BadChecksum => "checksum does not verify",
        })
    }
}

impl core::error::Error for WireError {}

/// Reads a big-endian u16 at `at` (the caller checked the bounds).
#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Writes a big-endian u16 at `at` (the caller checked the bounds).
#[inline(always)]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
