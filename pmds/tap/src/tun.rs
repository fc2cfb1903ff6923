//! Opening a TAP queue: `/dev/net/tun` plus `TUNSETIFF` (Documentation/networking/tuntap.rst).
#![allow(unsafe_code)] // open, ioctl(TUNSETIFF), read, readv, writev on the queue fds.

use nix::errno::Errno;
use rdk_os_linux::netif::{ifname, NetIfError};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Why a TAP queue could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunError {
    /// The interface name is unusable.
    Name(NetIfError),
    /// `/dev/net/tun` is missing.
    NoTunDevice,
    /// The caller may not create or attach TAP interfaces.
    Permission,
    /// The interface exists but is not a multi-queue TAP (a TUN, a single-queue TAP, another
    /// kind of device).
    NotMultiQueueTap {
        /// The interface.
        name: String,
    },
    /// The interface's other queues are open in the other net-header mode (`IFF_VNET_HDR`
    /// on or off): a multi-queue TAP keeps the mode of its first queue for every queue
    /// attached later, whatever that queue asked for.
    HeaderModeDiffers {
        /// The interface.
        name: String,
        /// Whether the interface's queues carry the header.
        vnet: bool,
    },
    /// Another errno.
    Os {
        /// What failed.
        op: &'static str,
        /// errno.
        errno: Errno,
    },
}

impl std::fmt::Display for TunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunError::Name(e) => e.fmt(f),
            TunError::NoTunDevice => write!(
                f,
                "/dev/net/tun does not exist; load the tun module (modprobe tun)"
            ),
            TunError::Permission => write!(
                f,
                "creating or attaching a TAP interface: permission denied; run as root or \
                 grant CAP_NET_ADMIN"
            ),
            TunError::NotMultiQueueTap { name } => write!(
                f,
                "{name} exists but is not a multi-queue TAP interface; pick another name or \
                 recreate it with `ip tuntap add {name} mode tap multi_queue`"
            ),
            TunError::HeaderModeDiffers { name, vnet } => write!(
                f,
                "{name}'s other queues are open {} a virtio-net header (IFF_VNET_HDR); open \
                 this port with the same TCP/UDP checksum and segmentation offloads, or use \
                 another interface",
                if *vnet { "with" } else { "without" }
            ),
            TunError::Os { op, errno } => write!(f, "{op} failed: {errno}"),
        }
    }
}

impl std::error::Error for TunError {}

/// `struct virtio_net_hdr` in front of every frame read or written when the queues are opened
/// with `vnet` (`IFF_VNET_HDR`, its size set with `TUNSETVNETHDRSZ`).
pub(crate) const VNET_HDR: usize = 10;

/// Opens one queue of TAP interface `name` (creating the interface if it does not exist):
/// non-blocking, no packet-information header, multi-queue; with `vnet`, every frame goes
/// behind a [`VNET_HDR`]-byte virtio-net header both ways (the interface's flag: every queue
/// of it must agree).
pub(crate) fn open_queue(name: &str, vnet: bool) -> Result<OwnedFd, TunError> {
    let raw = ifname(name).map_err(TunError::Name)?;
    const PATH: &CStr = c"/dev/net/tun";
    // SAFETY: open(2) with a valid C string; the fd is owned right away.
    let fd = unsafe {
        libc::open(
            PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(match Errno::last() {
            Errno::ENOENT | Errno::ENODEV => TunError::NoTunDevice,
            Errno::EPERM | Errno::EACCES => TunError::Permission,
            errno => TunError::Os {
                op: "open /dev/net/tun",
                errno,
            },
        });
    }
    // SAFETY: fd is fresh and ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = raw;
    let vnet_flag = if vnet { libc::IFF_VNET_HDR } else { 0 };
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | vnet_flag) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF as _,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(match Errno::last() {
            Errno::EPERM | Errno::EACCES => TunError::Permission,
            Errno::EINVAL | Errno::EBUSY => TunError::NotMultiQueueTap {
                name: name.to_string(),
            },
            errno => TunError::Os {
                op: "ioctl(TUNSETIFF)",
                errno,
            },
        });
    }
    // Attached to an interface whose other queues are open, the queue gets their flags, not
    // the ones asked for: read back the header mode it really has.
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut got: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one `struct ifreq`.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETIFF as _,
            &mut got as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(TunError::Os {
            op: "ioctl(TUNGETIFF)",
            errno: Errno::last(),
        });
    }
    // SAFETY: TUNGETIFF filled in the flags member of the union.
    let has_vnet = unsafe { got.ifr_ifru.ifru_flags } as libc::c_int & libc::IFF_VNET_HDR != 0;
    if has_vnet != vnet {
        return Err(TunError::HeaderModeDiffers {
            name: name.to_string(),
            vnet: has_vnet,
        });
    }
    if vnet {
        let sz = VNET_HDR as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ as _, &sz) };
        if rc < 0 {
            return Err(TunError::Os {
                op: "ioctl(TUNSETVNETHDRSZ)",
                errno: Errno::last(),
            });
        }
    }
    Ok(fd)
}

/// `readv` into `bufs`: bytes of the frame (which may exceed their total if it was too big),
/// or `Ok(None)` when the queue is empty.
pub(crate) fn read_frame(fd: RawFd, bufs: &mut [&mut [u8]]) -> Result<Option<usize>, Errno> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    let n = bufs.len().min(MAX_IOV);
    for (v, b) in iov.iter_mut().zip(bufs.iter_mut()) {
        v.iov_base = b.as_mut_ptr().cast();
        v.iov_len = b.len();
    }
    loop {
        let r = if n == 1 {
            // SAFETY: one live, writable slice borrowed for this call.
            unsafe { libc::syscall(libc::SYS_read, fd, iov[0].iov_base, iov[0].iov_len) }
        } else {
            // SAFETY: the iovecs describe `n` live, writable slices borrowed for this call.
            unsafe { libc::syscall(libc::SYS_readv, fd, iov.as_ptr(), n as libc::c_int) }
        };
        match Errno::result(r) {
            Ok(r) => return Ok(Some(r as usize)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Most segments of one received frame.
pub(crate) const MAX_SEGS: usize = 32;
/// Most segments of one transmitted frame: a 64 KiB TCP segmentation request in 2 KiB mbufs
/// takes 33.
pub(crate) const TX_MAX_SEGS: usize = 64;
/// Most pieces one `readv`/`writev` takes: a frame's segments, plus a net header and a
/// rewritten copy of the first segment's headers in front (offloads).
pub(crate) const MAX_IOV: usize = TX_MAX_SEGS + 3;

/// `writev` of one frame's segments (`write` for one segment). `Ok(false)`: the kernel queue
/// is full (EAGAIN).
///
/// Both here and in [`read_frame`] the system call is made directly (`syscall(2)`), not through
/// libc's `write`/`writev`: glibc makes those cancellation points, which wraps every call in
/// two more (enabling and disabling asynchronous cancellation) — 7% of a 64-byte transmit's
/// time in a profile — and a one-segment frame skips the kernel's iovec copy.
pub(crate) fn write_frame(fd: RawFd, segs: &[&[u8]]) -> Result<bool, Errno> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    let n = segs.len().min(MAX_IOV);
    for (v, s) in iov.iter_mut().zip(segs) {
        v.iov_base = s.as_ptr() as *mut _;
        v.iov_len = s.len();
    }
    loop {
        let r = if n == 1 {
            // SAFETY: one live slice, only read by the kernel.
            unsafe { libc::syscall(libc::SYS_write, fd, iov[0].iov_base, iov[0].iov_len) }
        } else {
            // SAFETY: the iovecs describe `n` live slices, only read by the kernel.
            unsafe { libc::syscall(libc::SYS_writev, fd, iov.as_ptr(), n as libc::c_int) }
        };
        match Errno::result(r) {
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}
