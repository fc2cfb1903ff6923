//! The packet-socket calls the Linux host PMDs (AF_PACKET, AF_XDP) share: socket options, the
//! zero-length send that wakes a TX ring, and rings the kernel shares through `mmap` of the
//! socket.
//!
//! Functions take a [`RawFd`]: a descriptor that is closed or not a socket only makes the call
//! fail with an errno (`EBADF`, `ENOTSOCK`); no memory is touched through it.
#![allow(unsafe_code)] // setsockopt, getsockopt, sendto, mmap, munmap.

use nix::errno::Errno;
use std::os::fd::RawFd;
use std::ptr::NonNull;

/// A value a socket option reads or writes: plain `#[repr(C)]` data the kernel may fill with
/// any bytes.
///
/// # Safety
/// Every bit pattern of the type's size must be a valid value (no references, `bool`s, enums
/// or niches), since [`get_opt`] lets the kernel write it.
pub unsafe trait SockOpt: Copy {}

// SAFETY: integers are valid for every bit pattern.
unsafe impl SockOpt for i32 {}
// SAFETY: as above.
unsafe impl SockOpt for u32 {}
// SAFETY: as above.
unsafe impl SockOpt for u64 {}
// SAFETY: an array of such values is valid for every bit pattern too.
unsafe impl<T: SockOpt, const N: usize> SockOpt for [T; N] {}

/// `setsockopt(fd, level, opt, &value)`.
pub fn set_opt<T: SockOpt>(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: &T,
) -> Result<(), Errno> {
    // SAFETY: `value` is a live T of the size passed; the kernel only reads it.
    Errno::result(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(fd, level, opt)` into a zeroed `T`: the value and the length the kernel wrote
/// (shorter than `T` on kernels with an older layout).
pub fn get_opt<T: SockOpt>(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
) -> Result<(T, usize), Errno> {
    // SAFETY: all-zero is a valid T (`SockOpt`: every bit pattern is).
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, valid for any bytes (`SockOpt`).
    Errno::result(unsafe {
        libc::getsockopt(fd, level, opt, (&mut v as *mut T).cast(), &mut len)
    })?;
    Ok((v, len as usize))
}

/// Whether a send on a packet or XDP socket failed because its interface is gone or down
/// (`ENXIO`, `ENODEV`, `ENETDOWN`): the queue's port reports it and stops sending.
#[inline]
pub fn send_error_means_gone(e: Errno) -> bool {
    matches!(e, Errno::ENXIO | Errno::ENODEV | Errno::ENETDOWN)
}

/// A zero-length, non-blocking `sendto` with no buffer and no address: how AF_PACKET and
/// AF_XDP are told to send what is in a TX ring (once per burst). The errno is the caller's
/// to read (`EAGAIN`, `ENOBUFS`, … mean different things to each socket family).
///
/// Made with `syscall(2)`, not libc's `sendto`, which brackets the call with the bookkeeping
/// of a thread-cancellation point (nothing here waits: `MSG_DONTWAIT`); at one kick per burst
/// that bookkeeping is about half of the kick's user-space cost.
#[inline]
pub fn kick(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: no buffer (length 0) and no address: the kernel reads no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd as libc::c_long,
            std::ptr::null::<u8>(),
            0 as libc::size_t,
            libc::MSG_DONTWAIT as libc::c_long,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::c_long,
        )
    };
    Errno::result(r).map(drop)
}

/// A ring shared with the kernel: `len` bytes of a socket mapped read-write and
/// `MAP_SHARED`, prefaulted, unmapped on drop.
#[derive(Debug)]
pub struct RingMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by one queue at a time; every access goes through the queue's
// `&mut self` or atomics on the words the kernel shares.
unsafe impl Send for RingMap {}

impl RingMap {
    /// Maps `len` bytes of the ring at page offset `pgoff` of socket `fd`; `locked` adds
    /// `MAP_LOCKED` (the pages stay in RAM).
    pub fn map(fd: RawFd, len: usize, pgoff: i64, locked: bool) -> Result<Self, Errno> {
        let lock = if locked { libc::MAP_LOCKED } else { 0 };
        // SAFETY: a fresh shared mapping of the socket's ring at an address the kernel picks;
        // no memory Rust knows about is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE | lock,
                fd,
                pgoff,
            )
        };
        Self::own(p, len)
    }

    /// `len` bytes of private anonymous memory in place of a kernel ring (tests play the
    /// kernel's side).
    pub fn anon(len: usize) -> Result<Self, Errno> {
        // SAFETY: a fresh private anonymous mapping at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        Self::own(p, len)
    }

    fn own(p: *mut libc::c_void, len: usize) -> Result<Self, Errno> {
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(Self {
            base: NonNull::new(p.cast()).ok_or(Errno::ENOMEM)?,
            len,
        })
    }

    /// The first byte.
    #[inline]
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: `mmap` refuses a zero length).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing points into it once its queue is gone.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    #[test]
    fn options_round_trip_and_bad_fds_are_errnos() {
        // SAFETY: socket(2) with constant arguments; the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor, ours.
        let s = unsafe { OwnedFd::from_raw_fd(fd) };
        set_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &65536i32).unwrap();
        let (v, len) = get_opt::<i32>(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap();
        assert_eq!(len, 4);
        assert!(v >= 65536, "the kernel doubles SO_RCVBUF: {v}");
        assert_eq!(
            set_opt(-1, libc::SOL_SOCKET, libc::SO_RCVBUF, &1i32),
            Err(Errno::EBADF)
        );
        assert_eq!(kick(-1), Err(Errno::EBADF));
        assert_eq!(RingMap::map(-1, 4096, 0, false).unwrap_err(), Errno::EBADF);
        let m = RingMap::anon(4096).unwrap();
        assert_eq!(m.len(), 4096);
        assert!(!m.is_empty());
    }
}
