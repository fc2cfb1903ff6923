//! The AF_XDP socket calls (linux/if_xdp.h, Documentation/networking/af_xdp.rst).
#![allow(unsafe_code)] // socket, setsockopt, getsockopt, bind, mmap, sendto, recvfrom on our fds.

use nix::errno::Errno;
use rdk_os_linux::sock::{self, SockOpt};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

pub(crate) use rdk_os_linux::sock::RingMap;

/// `AF_XDP` / `PF_XDP` (linux/socket.h).
pub(crate) const AF_XDP: libc::c_int = 44;
/// `SOL_XDP` (linux/socket.h).
const SOL_XDP: libc::c_int = 283;
pub(crate) const XDP_MMAP_OFFSETS: libc::c_int = 1;
pub(crate) const XDP_RX_RING: libc::c_int = 2;
pub(crate) const XDP_TX_RING: libc::c_int = 3;
pub(crate) const XDP_UMEM_REG: libc::c_int = 4;
pub(crate) const XDP_UMEM_FILL_RING: libc::c_int = 5;
pub(crate) const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
/// `sxdp_flags`.
pub(crate) const XDP_COPY: u16 = 1 << 1;
pub(crate) const XDP_ZEROCOPY: u16 = 1 << 2;
pub(crate) const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
/// `xdp_umem_reg.flags`: fill addresses are byte offsets, not chunk-aligned.
pub(crate) const XDP_UMEM_UNALIGNED_CHUNK_FLAG: u32 = 1;
/// `xdp_umem_reg.flags`: `tx_metadata_len` bytes in front of each TX frame are its
/// metadata (required from 6.11; 6.8 to 6.10 take `tx_metadata_len` without it).
pub(crate) const XDP_UMEM_TX_METADATA_LEN: u32 = 1 << 2;
/// `xdp_desc.options`: the frame carries TX metadata (6.8+).
pub(crate) const XDP_TX_METADATA: u32 = 1 << 1;
/// `xsk_tx_metadata.flags`: complete the checksum at `csum_start + csum_offset`.
pub(crate) const XDP_TXMD_FLAGS_CHECKSUM: u64 = 1 << 1;
/// Bytes of TX metadata rdk reserves: `union xsk_tx_metadata` (flags, csum_start,
/// csum_offset, launch_time; a multiple of 8 as the kernel requires).
pub(crate) const TX_METADATA_LEN: u32 = 24;
/// Ring `flags` word: the kernel needs a system call to make progress.
pub(crate) const XDP_RING_NEED_WAKEUP: u32 = 1;
/// mmap page offsets of the four rings.
pub(crate) const XDP_PGOFF_RX_RING: i64 = 0;
pub(crate) const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
pub(crate) const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
pub(crate) const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;
/// Unaligned mode: a descriptor address carries the chunk base in its low 48 bits and the
/// data offset from it in the high 16 (`XSK_UNALIGNED_BUF_OFFSET_SHIFT`).
pub(crate) const XSK_UNALIGNED_BUF_OFFSET_SHIFT: u32 = 48;
pub(crate) const XSK_UNALIGNED_BUF_ADDR_MASK: u64 = (1 << XSK_UNALIGNED_BUF_OFFSET_SHIFT) - 1;
/// Headroom the kernel leaves in front of a received frame in a chunk (`XDP_PACKET_HEADROOM`).
pub(crate) const XDP_PACKET_HEADROOM: usize = 256;
/// Smallest chunk the kernel accepts (`XDP_UMEM_MIN_CHUNK_SIZE`).
pub(crate) const XDP_UMEM_MIN_CHUNK_SIZE: usize = 2048;

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MmapOffsets {
    pub rx: RingOffset,
    pub tx: RingOffset,
    pub fr: RingOffset,
    pub cr: RingOffset,
}

/// `struct xdp_umem_reg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UmemReg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    pub tx_metadata_len: u32,
}

/// `struct xdp_desc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// `struct xdp_statistics`: the kernel's per-socket drop counters (cumulative).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Frames dropped for other reasons.
    pub rx_dropped: u64,
    /// Fill descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when woken.
    pub tx_ring_empty_descs: u64,
}

// SAFETY: plain `#[repr(C)]` integers: every bit pattern is a value.
unsafe impl SockOpt for MmapOffsets {}
// SAFETY: as above.
unsafe impl SockOpt for UmemReg {}
// SAFETY: as above.
unsafe impl SockOpt for XdpStatistics {}

fn check(r: libc::c_int) -> Result<libc::c_int, Errno> {
    Errno::result(r)
}

/// A fresh AF_XDP socket.
pub(crate) fn xsk_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let fd = check(unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh descriptor, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(SOL_XDP, opt, &value)`.
pub(crate) fn set_opt<T: SockOpt>(fd: &OwnedFd, opt: libc::c_int, value: &T) -> Result<(), Errno> {
    sock::set_opt(fd.as_raw_fd(), SOL_XDP, opt, value)
}

/// `getsockopt(SOL_XDP, opt)` into a zeroed `T`; the length the kernel wrote.
fn get_opt<T: SockOpt>(fd: RawFd, opt: libc::c_int) -> Result<(T, usize), Errno> {
    sock::get_opt(fd, SOL_XDP, opt)
}

/// Where the producer, consumer, flags and descriptors of each ring are in its mapping.
pub(crate) fn mmap_offsets(fd: &OwnedFd) -> Result<MmapOffsets, Errno> {
    let (off, len) = get_opt::<MmapOffsets>(fd.as_raw_fd(), XDP_MMAP_OFFSETS)?;
    // Kernels before 5.4 have no flags word (so no need_wakeup); rdk needs one.
    if len < std::mem::size_of::<MmapOffsets>() {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(off)
}

/// The socket's drop counters.
pub(crate) fn statistics(fd: RawFd) -> Result<XdpStatistics, Errno> {
    get_opt::<XdpStatistics>(fd, XDP_STATISTICS).map(|(s, _)| s)
}

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// Binds the socket to queue `queue` of `ifindex`.
pub(crate) fn bind(fd: &OwnedFd, ifindex: u32, queue: u32, flags: u16) -> Result<(), Errno> {
    let sa = SockaddrXdp {
        family: AF_XDP as u16,
        flags,
        ifindex,
        queue_id: queue,
        shared_umem_fd: 0,
    };
    // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const SockaddrXdp).cast(),
            std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A spare copy-mode socket with a one-page UMEM, made next to a real one (so in its network
/// namespace), that tells whether a queue is free for a new socket: its bind fails with
/// `EBUSY` while the kernel still holds the buffer pool of a socket closed there (it releases
/// it, and a zero-copy driver's DMA mappings, from a work queue after the close).
#[derive(Debug)]
pub(crate) struct Probe {
    fd: Option<OwnedFd>,
    mem: NonNull<u8>,
}

// SAFETY: the mapping is only touched by the kernel (as a UMEM) and unmapped on drop.
unsafe impl Send for Probe {}
// SAFETY: as above; `&Probe` gives no access to the memory.
unsafe impl Sync for Probe {}

const PROBE_LEN: usize = 4096;

impl Probe {
    /// A probe socket in the current network namespace.
    pub(crate) fn new() -> Result<Self, Errno> {
        let fd = xsk_socket()?;
        // SAFETY: a fresh private anonymous mapping, unmapped on drop after the socket closes.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PROBE_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let probe = Self {
            fd: Some(fd),
            mem: NonNull::new(mem.cast()).ok_or(Errno::ENOMEM)?,
        };
        let fd = probe.fd.as_ref().ok_or(Errno::EBADF)?;
        let reg = UmemReg {
            addr: mem as u64,
            len: PROBE_LEN as u64,
            chunk_size: 2048,
            ..UmemReg::default()
        };
        set_opt(fd, XDP_UMEM_REG, &reg)?;
        set_opt(fd, XDP_UMEM_FILL_RING, &2u32)?;
        set_opt(fd, XDP_UMEM_COMPLETION_RING, &2u32)?;
        set_opt(fd, XDP_RX_RING, &2u32)?;
        Ok(probe)
    }

    /// Whether queue `queue` of `ifindex` can be bound now (`Ok(false)`: busy). A successful
    /// probe stays bound there until dropped.
    pub(crate) fn queue_is_free(&self, ifindex: u32, queue: u32) -> Result<bool, Errno> {
        let fd = self.fd.as_ref().ok_or(Errno::EBADF)?;
        match bind(fd, ifindex, queue, XDP_COPY) {
            Ok(()) => Ok(true),
            Err(Errno::EBUSY) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        drop(self.fd.take());
        // SAFETY: our mapping; the socket that registered it is closed.
        unsafe { libc::munmap(self.mem.as_ptr().cast(), PROBE_LEN) };
    }
}

/// What a TX kick left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kicked {
    /// The kernel took what it could.
    Done,
    /// The kernel sent one batch (copy mode: 32 frames) and has more in the ring: kick again.
    More,
}

/// Asks the kernel to send what is in the TX ring (once per burst, when it asked for it).
#[inline]
pub(crate) fn kick_tx(fd: RawFd) -> Result<Kicked, Errno> {
    match sock::kick(fd) {
        Ok(()) => Ok(Kicked::Done),
        // EAGAIN: a batch went and more wait, or the completion ring is full; EBUSY: another
        // sender is active; ENOBUFS: the device queue is full. The frames stay in the ring.
        Err(Errno::EAGAIN) | Err(Errno::EBUSY) => Ok(Kicked::More),
        Err(Errno::ENOBUFS) => Ok(Kicked::Done),
        Err(e) => Err(e),
    }
}

/// Tells the kernel the fill ring has new buffers (when it asked for it).
pub(crate) fn wake_rx(fd: RawFd) {
    // SAFETY: a zero-length non-blocking receive with no buffer: the documented fill wake-up.
    // Its result carries nothing (EAGAIN when nothing is waiting), so it is not looked at.
    unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}
