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
pub mod threaded;

pub use socket::{SocketId, SocketOptions};
pub use stack::{IfaceConfig, Stack, StackCounters, StackLimits};
pub use stats::DropStats;
pub use threaded::{threaded, Poller, ServiceConfig, UdpService, UdpSocket};

use crate::mbuf::Mbuf;
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
    /// A zero-copy send got an mbuf of several segments.
    MultiSegment {
        /// Its segments.
        segs: u16,
    },
    /// A zero-copy send got an mbuf whose headroom cannot take the headers.
    NoHeadroom {
        /// Header bytes needed in front of the payload.
        need: usize,
        /// Headroom the mbuf has.
        have: usize,
    },
    /// The poller serving this socket is gone (threaded mode).
    PollerGone,
    /// The exchange ring size is not one a ring can have.
    BadRingSize {
        /// The size asked for.
        size: usize,
    },
    /// A socket's receive event could not be made or used.
    Event(crate::os::EventError),
    /// A zero-copy send got an mbuf another handle shares (its headers cannot be written).
    SharedMbuf,
    /// A send to port 0, which no socket can be bound to (Linux's `udp_sendmsg` refuses it
    /// with `EINVAL`).
    ZeroDestinationPort {
        /// The destination asked for.
        dst: SocketAddrV4,
    },
    /// [`StackLimits::ephemeral`] is empty (its start past its end) or includes port 0.
    BadEphemeralRange {
        /// The range's first port.
        start: u16,
        /// The range's last port.
        end: u16,
    },
    /// A [`StackLimits`] size that must be at least 1 is 0: with it every datagram (or every
    /// frame to an unresolved neighbour) would be dropped, or no socket opened.
    ZeroLimit {
        /// The field of [`StackLimits`].
        limit: &'static str,
    },
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
                "no free ephemeral port (StackLimits::ephemeral, 49152..=65535 by default); close \
                 sockets, bind explicitly or widen the range"
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
            UdpError::MultiSegment { segs } => write!(
                f,
                "a zero-copy send takes one-segment mbufs, this one has {segs}; copy it into one \
                 buffer or use send_to"
            ),
            UdpError::NoHeadroom { need, have } => write!(
                f,
                "the mbuf has {have} bytes of headroom, the headers need {need}; allocate it from \
                 a pool (payload at the default headroom) or use send_to"
            ),
            UdpError::BadRingSize { size } => write!(
                f,
                "{size} is not a usable exchange ring size; give 1 to 2^31 - 1 datagrams (1024 is \
                 the default)"
            ),
            UdpError::Event(e) => write!(f, "the socket's receive event failed: {e}"),
            UdpError::SharedMbuf => write!(
                f,
                "the mbuf is shared with another handle, so its headers cannot be written; send \
                 a copy (send_to)"
            ),
            UdpError::PollerGone => write!(
                f,
                "the poller serving this socket has stopped; restart it and open a new socket"
            ),
            UdpError::NoBuffers => write!(
                f,
                "the packet pool is empty; receive (or let sends complete) to free buffers"
            ),
            UdpError::ZeroDestinationPort { dst } => write!(
                f,
                "cannot send to {dst}: port 0 is no destination; give the peer's port"
            ),
            UdpError::BadEphemeralRange { start, end } => write!(
                f,
                "the ephemeral port range {start}..={end} is empty or includes port 0; give \
                 StackLimits::ephemeral as lo..=hi with 1 <= lo <= hi (49152..=65535 by default)"
            ),
            UdpError::ZeroLimit { limit } => write!(
                f,
                "StackLimits::{limit} is 0, so nothing it sizes could ever be held; give at \
                 least 1 (StackLimits::default() has working values)"
            ),
        }
    }
}

impl core::error::Error for UdpError {}

/// Ethernet + IPv4 + UDP header bytes a datagram needs in front of its payload.
pub const HEADERS_LEN: usize = 14 + 20 + 8;

/// Checks a payload length against the interface MTU.
fn check_len(cfg: &IfaceConfig, len: usize) -> Result<(), UdpError> {
    let max = cfg.max_payload();
    if len > max {
        return Err(UdpError::MessageTooLong { len, max });
    }
    Ok(())
}

/// Checks a destination: port 0 is none (Linux's `udp_sendmsg` returns `EINVAL` for it).
fn check_dst(dst: SocketAddrV4) -> Result<(), UdpError> {
    if dst.port() == 0 {
        return Err(UdpError::ZeroDestinationPort { dst });
    }
    Ok(())
}

/// Checks an mbuf for a zero-copy send; returns its payload length.
fn check_mbuf(cfg: &IfaceConfig, m: &Mbuf) -> Result<usize, UdpError> {
    if m.nb_segs() != 1 {
        return Err(UdpError::MultiSegment { segs: m.nb_segs() });
    }
    if (m.headroom() as usize) < HEADERS_LEN {
        return Err(UdpError::NoHeadroom {
            need: HEADERS_LEN,
            have: m.headroom() as usize,
        });
    }
    if m.is_shared() {
        return Err(UdpError::SharedMbuf);
    }
    let len = m.data_len() as usize;
    check_len(cfg, len)?;
    Ok(len)
}

/// The peer of a datagram on an exchange ring (threaded mode): who sent a received one, where
/// a sent one goes. It rides in the mbuf's first two dynamic fields (DPDK's `dynfield1`):
/// the IPv4 address, and the port.
pub fn peer(m: &Mbuf) -> SocketAddrV4 {
    let f = m.dynfields();
    SocketAddrV4::new(core::net::Ipv4Addr::from(f[0]), f[1] as u16)
}

/// Sets the peer [`peer`] reads; refused (`SharedMbuf`) while another handle shares `m`.
pub fn set_peer(m: &mut Mbuf, addr: SocketAddrV4) -> Result<(), UdpError> {
    let mut w = m.meta_mut().map_err(|_| UdpError::SharedMbuf)?;
    let f = w.dynfields_mut();
    f[0] = u32::from(*addr.ip());
    f[1] = u32::from(addr.port());
    Ok(())
}
