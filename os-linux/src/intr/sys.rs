//! The few raw system calls of the interrupt thread: `epoll_ctl` on file descriptors owned by
//! callers (so only a raw number is at hand when a source goes away), and `read` of a source's
//! counter.
#![allow(unsafe_code)]

use nix::errno::Errno;
use std::os::fd::RawFd;

/// Adds `fd` to the epoll set with `events` and `data`.
pub(crate) fn epoll_add(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> Result<(), Errno> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: epoll_ctl only reads `ev`; a bad `fd` is reported as EBADF, not UB.
    let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    Errno::result(r).map(drop)
}

/// Changes the events and data of `fd` in the epoll set.
pub(crate) fn epoll_mod(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> Result<(), Errno> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: as for epoll_add.
    let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, fd, &mut ev) };
    Errno::result(r).map(drop)
}

/// Removes `fd` from the epoll set. A closed `fd` (EBADF) or one already gone (ENOENT) is not
/// an error: closing a file removes it from every epoll set by itself.
pub(crate) fn epoll_del(epfd: RawFd, fd: RawFd) -> Result<(), Errno> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: as above; Linux ignores `ev` for DEL (older kernels needed it non-null).
    let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, &mut ev) };
    match Errno::result(r) {
        Ok(_) | Err(Errno::EBADF) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Waits for up to `out.len()` events; `timeout_ms` -1 waits forever.
pub(crate) fn epoll_wait(
    epfd: RawFd,
    out: &mut [libc::epoll_event],
    timeout_ms: i32,
) -> Result<usize, Errno> {
    let max = i32::try_from(out.len()).unwrap_or(i32::MAX);
    // SAFETY: the kernel writes at most `max` events into `out`, which has room for them.
    let r = unsafe { libc::epoll_wait(epfd, out.as_mut_ptr(), max, timeout_ms) };
    Errno::result(r).map(|n| n as usize)
}

/// Reads the 8-byte counter of an eventfd, timerfd or VFIO interrupt eventfd. `Ok(None)`: the
/// read found nothing (EAGAIN: another reader was first) — not an error.
pub(crate) fn read_counter(fd: RawFd) -> Result<Option<u64>, Errno> {
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: the kernel writes at most 8 bytes into `buf`.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(r) {
            Ok(8) => return Ok(Some(u64::from_ne_bytes(buf))),
            // End of file (a pipe whose writer closed) or a short read: the source is broken.
            Ok(_) => return Err(Errno::EPIPE),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
