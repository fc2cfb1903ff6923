//! UDP sockets over any rdk port: ARP, IPv4, ICMP echo and UDP, as the seed UDPDK offers them,
//! on top of the [`net`](crate::net) views.
//!
//! [`Stack`] owns one interface: its configuration ([`IfaceConfig`]), an ARP cache with
//! timeouts and a bounded queue of packets waiting for a resolution ([`arp`]), the socket table
//! with its port switching table ([`socket`]), and a drop counter per reason
//! ([`DropStats`]). It never touches a NIC by itself: [`Stack::poll`] takes the port's receive
//! and transmit queues, generically (no `dyn` on the packet path), receives a burst, handles
//! every frame (delivering datagrams to socket queues, answering ARP and echo requests), sends
//! what is ready and retries ARP. This is the single-thread mode a unikernel uses (the
//! application calls `poll` between its own socket calls); a poller thread driving the same
//! `poll` while applications talk to it through exchange rings builds on it.
//!
//! Scope and choices: IPv4 only; fragments are dropped and counted (not reassembled); frames
//! must fit one mbuf segment (the interface MTU is at most the pool's data room); UDP checksums
//! are always generated and verified (0 means none, as RFC 768 allows), or trusted when the
//! port marked the frame `RxCksum::Verified`. No packet is lost silently: every frame is
//! delivered, answered, or counted in [`DropStats`] under one reason.

pub mod arp;
pub mod socket;
mod stack;
pub mod stats;

pub use socket::{SocketId, SocketOptions};
pub use stack::{IfaceConfig, Stack, StackCounters, StackLimits};
pub use stats::DropStats;

use core::fmt;
use core::net::SocketAddrV4;

/// Why a socket call failed, and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UdpError {
    /// The address and port are taken by another socket without the reuse options.
    AddrInUse {
        /// The address asked for.
        addr: SocketAddrV4,
    },
    /// The address is not this interface's (nor `0.0.0.0`).
    AddrNotAvailable {
        /// The address asked for.
        addr: SocketAddrV4,
    },
    /// Every ephemeral port is in use.
    NoEphemeralPort,
    /// The datagram does not fit one frame of the interface's MTU.
    MessageTooLong {
        /// Payload bytes given.
        len: usize,
        /// Most payload bytes a datagram may carry.
        max: usize,
    },
    /// The socket has no local address (receive needs one).
    NotBound,
    /// The socket table is full.
    TableFull {
        /// Its size.
        max: usize,
    },
    /// Nothing to receive (non-blocking socket), or no buffer to send from.
    WouldBlock,
    /// No such socket (closed, or never opened).
    BadSocket,
    /// The socket is bound already.
    AlreadyBound,
    /// No route: the destination is off-link and no gateway is configured.
    NoRoute {
        /// The destination.
        dst: core::net::Ipv4Addr,
    },
    /// The packet pool is empty.
    NoBuffers,
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpError::AddrInUse { addr } => write!(
                f,
                "{addr} is in use; pick another port, or set reuse_addr / reuse_port on every \
                 socket that shares it"
            ),
            UdpError::AddrNotAvailable { addr } => write!(
                f,
                "{} is not an address of this interface; bind to it or to 0.0.0.0",
                addr.ip()
            ),
            UdpError::NoEphemeralPort => write!(
                f,
                "no free ephemeral port (49152..=65535); close sockets or bind explicitly"
            ),
            UdpError::MessageTooLong { len, max } => write!(
                f,
                "a {len}-byte datagram exceeds the {max} bytes one frame carries; send less \
                 (fragmentation is not supported)"
            ),
            UdpError::NotBound => write!(f, "the socket is not bound; bind it first"),
            UdpError::TableFull { max } => write!(
                f,
                "all {max} sockets are open; close one or raise StackLimits::max_sockets"
            ),
            UdpError::WouldBlock => write!(f, "would block: nothing ready; poll and retry"),
            UdpError::BadSocket => write!(f, "no such socket (closed?)"),
            UdpError::AlreadyBound => write!(f, "the socket is bound already"),
            UdpError::NoRoute { dst } => write!(
                f,
                "no route to {dst}: it is off-link and no gateway is configured"
            ),
            UdpError::NoBuffers => write!(
                f,
                "the packet pool is empty; receive (or let sends complete) to free buffers"
            ),
        }
    }
}

impl core::error::Error for UdpError {}
