//! The AF_PACKET socket calls and the shared ring mapping (linux/if_packet.h,
//! Documentation/networking/packet_mmap.rst).
#![allow(unsafe_code)] // socket, setsockopt, bind, mmap, sendto on our own descriptors.

use nix::errno::Errno;
pub(crate) use rdk_os_linux::sock::RingMap;
use rdk_os_linux::sock::{self, SockOpt};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub(crate) const SOL_PACKET: libc::c_int = 263;
pub(crate) const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
pub(crate) const PACKET_DROP_MEMBERSHIP: libc::c_int = 2;
pub(crate) const PACKET_RX_RING: libc::c_int = 5;
pub(crate) const PACKET_STATISTICS: libc::c_int = 6;
pub(crate) const PACKET_VERSION: libc::c_int = 10;
pub(crate) const PACKET_TX_RING: libc::c_int = 13;
pub(crate) const PACKET_FANOUT: libc::c_int = 18;
pub(crate) const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub(crate) const TPACKET_V2: libc::c_int = 1;
pub(crate) const TPACKET_V3: libc::c_int = 2;
pub(crate) const PACKET_MR_PROMISC: libc::c_ushort = 1;
pub(crate) const PACKET_FANOUT_HASH: u32 = 0;
/// `PACKET_FANOUT_FLAG_UNIQUEID` (4.4+): the kernel picks an id no group of the namespace
/// has (the request's id must be 0).
pub(crate) const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const ETH_P_ALL: u16 = 0x0003;

/// `struct tpacket_req3` (also read as `struct tpacket_req` for V2: the first four fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TpacketReq3 {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    pub retire_blk_tov: u32,
    pub sizeof_priv: u32,
    pub feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TpacketStatsV3 {
    pub packets: u32,
    pub drops: u32,
    pub freeze_q_cnt: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PacketMreq {
    ifindex: libc::c_int,
    kind: libc::c_ushort,
    alen: libc::c_ushort,
    address: [u8; 8],
}

// SAFETY: plain `#[repr(C)]` integers: every bit pattern is a value.
unsafe impl SockOpt for TpacketReq3 {}
// SAFETY: as above.
unsafe impl SockOpt for TpacketStatsV3 {}
// SAFETY: as above.
unsafe impl SockOpt for PacketMreq {}

fn check(r: libc::c_int) -> Result<libc::c_int, Errno> {
    Errno::result(r)
}

/// A raw packet socket, non-blocking, that receives nothing until [`bind`] names its
/// interface and (for `rx`) the protocol: a socket made for `ETH_P_ALL` would take every
/// interface's frames into its ring from its creation to its bind.
pub(crate) fn packet_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fresh descriptor, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(SOL_PACKET, opt, &value)`.
pub(crate) fn set_opt<T: SockOpt>(fd: &OwnedFd, opt: libc::c_int, value: &T) -> Result<(), Errno> {
    sock::set_opt(fd.as_raw_fd(), SOL_PACKET, opt, value)
}

/// Reads and resets the socket's counters (`PACKET_STATISTICS`).
pub(crate) fn take_stats(fd: &OwnedFd) -> Result<TpacketStatsV3, Errno> {
    sock::get_opt(fd.as_raw_fd(), SOL_PACKET, PACKET_STATISTICS).map(|(s, _)| s)
}

/// Joins the hash fanout group `id`, or with `None` a new group whose id the kernel picks
/// (unique in the network namespace); returns the group's id.
pub(crate) fn join_fanout(fd: &OwnedFd, id: Option<u16>) -> Result<u16, Errno> {
    let arg = match id {
        Some(id) => id as u32 | (PACKET_FANOUT_HASH << 16),
        None => (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
    };
    set_opt(fd, PACKET_FANOUT, &arg)?;
    match id {
        Some(id) => Ok(id),
        // The low 16 bits of the answer are the group's id.
        None => {
            sock::get_opt::<u32>(fd.as_raw_fd(), SOL_PACKET, PACKET_FANOUT).map(|(v, _)| v as u16)
        }
    }
}

/// Turns promiscuous membership of `ifindex` on or off for this socket.
pub(crate) fn promisc(fd: &OwnedFd, ifindex: u32, on: bool) -> Result<(), Errno> {
    let m = PacketMreq {
        ifindex: ifindex as libc::c_int,
        kind: PACKET_MR_PROMISC,
        alen: 0,
        address: [0; 8],
    };
    let opt = if on {
        PACKET_ADD_MEMBERSHIP
    } else {
        PACKET_DROP_MEMBERSHIP
    };
    set_opt(fd, opt, &m)
}

/// Binds the socket to `ifindex`: all protocols if `rx`, none otherwise.
pub(crate) fn bind(fd: &OwnedFd, ifindex: u32, rx: bool) -> Result<(), Errno> {
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = if rx { ETH_P_ALL.to_be() } else { 0 };
    sa.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `sa` is a valid sockaddr_ll of the size passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Asks the kernel to send the frames marked in the TX ring (one call per burst).
#[inline]
pub(crate) fn kick(fd: &OwnedFd) -> Result<(), Errno> {
    match sock::kick(fd.as_raw_fd()) {
        // EAGAIN/ENOBUFS: the device queue is full; the frames stay marked and go with the
        // next kick.
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::ENOBUFS) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The rings shared with the kernel, mapped from the socket (`MAP_LOCKED`, offset 0).
pub(crate) fn map_ring(fd: &OwnedFd, len: usize) -> Result<RingMap, Errno> {
    RingMap::map(fd.as_raw_fd(), len, 0, true)
}
