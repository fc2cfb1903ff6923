//! [`Connection`]: one end of a vhost-user Unix socket, moving whole messages (header, payload
//! and file descriptors) with a deadline on every read.
//!
//! It checks framing only (the bytes arrive, in time, with or without descriptors); what the
//! header says is for the caller to judge, since the frontend and a test backend expect
//! different things.
#![allow(unsafe_code)] // recvmsg, and adopting the descriptors it installed (`OwnedFd::from_raw_fd`).

use super::msg::{Header, HEADER_SIZE};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, recv, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The kernel's limit on descriptors in one `SCM_RIGHTS` message (`SCM_MAX_FD`). Receiving
/// with room for that many means a peer cannot make the control data overflow and so leak
/// descriptors the frontend never saw.
const SCM_MAX_FD: usize = 253;

/// Why reading from the peer failed.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The peer closed the socket after `got` of the wanted bytes (0: between messages).
    Closed {
        /// Bytes received before the end.
        got: usize,
    },
    /// Nothing (or not everything) arrived before the deadline.
    Timeout,
    /// The control data was cut short (`MSG_CTRUNC`).
    ControlTruncated,
    /// A socket call failed.
    Io {
        /// The call.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

/// Why sending to the peer failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The peer closed the socket (EPIPE, ECONNRESET).
    Closed,
    /// The socket buffer stayed full past the send timeout.
    Timeout,
    /// sendmsg failed otherwise.
    Io(Errno),
}

/// What a non-blocking look at the socket shows.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Connected, nothing pending.
    Quiet,
    /// The peer hung up or the socket is in error.
    Closed,
    /// Bytes are waiting that nobody asked for.
    Unsolicited,
}

/// A connected vhost-user socket.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
}

impl Connection {
    /// Connects to the socket at `path`; sends block at most `send_timeout`.
    ///
    /// The connect itself never blocks: a backend that listens but no longer accepts (hung,
    /// stopped) fills its listen queue, and a blocking `connect` on a full queue waits for as
    /// long as the backend does. Such a backend is `EAGAIN` here (try again later).
    pub fn connect(path: &Path, send_timeout: Duration) -> Result<Connection, Errno> {
        let addr = UnixAddr::new(path)?;
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        loop {
            match connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        // A Unix stream connect that did not fail is complete; `from_stream` makes the
        // socket blocking again.
        Connection::from_stream(UnixStream::from(fd), send_timeout)
    }

    /// Wraps an already connected stream (a test backend's accepted socket, a socketpair).
    pub fn from_stream(stream: UnixStream, send_timeout: Duration) -> Result<Connection, Errno> {
        stream.set_nonblocking(false).map_err(io_errno)?;
        let c = Connection { stream };
        c.set_send_timeout(send_timeout)?;
        Ok(c)
    }

    /// How long a send may block on a full socket buffer.
    pub fn set_send_timeout(&self, timeout: Duration) -> Result<(), Errno> {
        // A zero duration means "no timeout" to the kernel; keep at least a millisecond.
        let t = timeout.max(Duration::from_millis(1));
        self.stream.set_write_timeout(Some(t)).map_err(io_errno)
    }

    /// Sends `header`, `payload` and `fds` as one message. The descriptors go with the first
    /// byte, as backends expect them with the header.
    pub fn send(
        &self,
        header: Header,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), SendError> {
        let mut bytes = Vec::with_capacity(HEADER_SIZE + payload.len());
        bytes.extend_from_slice(&header.to_bytes());
        bytes.extend_from_slice(payload);
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut sent = 0;
        while sent < bytes.len() {
            let iov = [IoSlice::new(&bytes[sent..])];
            let rights = [ControlMessage::ScmRights(&raw)];
            let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raw.is_empty() {
                &rights
            } else {
                &[]
            };
            match sendmsg::<UnixAddr>(
                self.stream.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => sent += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN) => {
                    return Err(SendError::Closed)
                }
                Err(Errno::EAGAIN) => return Err(SendError::Timeout),
                Err(e) => return Err(SendError::Io(e)),
            }
        }
        Ok(())
    }

    /// Reads a header, waiting until `deadline`. Descriptors that arrive with it are appended
    /// to `fds`.
    pub fn recv_header(
        &self,
        deadline: Instant,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Header, RecvError> {
        let mut b = [0u8; HEADER_SIZE];
        self.read_exact(&mut b, deadline, fds)?;
        Ok(Header::from_bytes(&b))
    }

    /// Reads exactly `buf.len()` bytes, waiting until `deadline`; descriptors that arrive are
    /// appended to `fds` (and so closed when the caller drops them).
    pub fn read_exact(
        &self,
        buf: &mut [u8],
        deadline: Instant,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<(), RecvError> {
        let mut got = 0;
        while got < buf.len() {
            self.wait_readable(deadline)?;
            let (n, truncated) = match self.recv_some(&mut buf[got..], fds) {
                Ok(r) => r,
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) => return Err(RecvError::Closed { got }),
                Err(errno) => {
                    return Err(RecvError::Io {
                        op: "recvmsg",
                        errno,
                    })
                }
            };
            if truncated {
                return Err(RecvError::ControlTruncated);
            }
            if n == 0 {
                return Err(RecvError::Closed { got });
            }
            got += n;
        }
        Ok(())
    }

    /// One `recvmsg` into `buf`: the bytes read and whether the control data was cut short
    /// (`MSG_CTRUNC`). Every descriptor the kernel installed is appended to `fds`, also when
    /// it reports `MSG_CTRUNC` (it then installed only those that fit: past `RLIMIT_NOFILE`
    /// the rest are dropped), which nix's `RecvMsg::cmsgs` refuses to walk, so that those
    /// installed descriptors would leak.
    fn recv_some(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<(usize, bool), Errno> {
        // Room for SCM_MAX_FD descriptors, in u64 words so that the cmsghdrs the kernel
        // writes there are aligned for reading.
        // SAFETY: CMSG_SPACE only computes a length.
        let space = unsafe { libc::CMSG_SPACE((SCM_MAX_FD * std::mem::size_of::<RawFd>()) as u32) };
        let mut cmsg = vec![0u64; (space as usize).div_ceil(8)];
        let cmsg_bytes = cmsg.len() * 8;
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is a valid empty one (no name, no iov, no control).
        let mut mhdr: libc::msghdr = unsafe { std::mem::zeroed() };
        mhdr.msg_iov = &mut iov;
        mhdr.msg_iovlen = 1;
        mhdr.msg_control = cmsg.as_mut_ptr().cast();
        mhdr.msg_controllen = cmsg_bytes as _;
        // SAFETY: `iov` points to `buf.len()` writable bytes of `buf` and `msg_control` to
        // `cmsg_bytes` writable, 8-aligned bytes of `cmsg`; both outlive the call, and the
        // kernel writes no more than those lengths.
        let r = unsafe {
            libc::recvmsg(
                self.stream.as_raw_fd(),
                &mut mhdr,
                libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
            )
        };
        let n = usize::try_from(Errno::result(r)?).unwrap_or(0);
        let control = cmsg.as_ptr() as usize;
        let control_end = control + (mhdr.msg_controllen as usize).min(cmsg_bytes);
        // SAFETY: the kernel filled `msg_controllen` bytes of `cmsg` with whole cmsghdrs
        // (put_cmsg and scm_detach_fds shorten `cmsg_len` to what fit); CMSG_FIRSTHDR and
        // CMSG_NXTHDR stay within `msg_controllen`, and the descriptor count is further
        // bounded by `control_end`, so every read is inside `cmsg`. The SCM_RIGHTS
        // descriptors were just installed in this process's table for this call; nothing
        // else knows them, so adopting each exactly once is sound.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&mhdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let end = (c as usize)
                        .saturating_add((*c).cmsg_len as usize)
                        .min(control_end);
                    let count = end.saturating_sub(data as usize) / std::mem::size_of::<RawFd>();
                    for i in 0..count {
                        let fd = data.cast::<RawFd>().add(i).read_unaligned();
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&mhdr, c);
            }
        }
        Ok((n, mhdr.msg_flags & libc::MSG_CTRUNC != 0))
    }

    /// Waits until the socket is readable (data or hang-up) or `deadline` passes.
    fn wait_readable(&self, deadline: Instant) -> Result<(), RecvError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_nanos().div_ceil(1_000_000);
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) if left.is_zero() => return Err(RecvError::Timeout),
                // Woken early (poll rounds to milliseconds): look at the clock again.
                Ok(0) => {}
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(errno) => return Err(RecvError::Io { op: "poll", errno }),
            }
        }
    }

    /// Looks at the socket without blocking: has the peer gone, or sent something unasked?
    pub fn peer_state(&self) -> Result<PeerState, Errno> {
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
        loop {
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(_) => break,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return Ok(PeerState::Closed);
        }
        if !revents.contains(PollFlags::POLLIN) {
            return Ok(PeerState::Quiet);
        }
        let mut b = [0u8; 1];
        match recv(
            self.stream.as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) | Err(Errno::ECONNRESET) => Ok(PeerState::Closed),
            Ok(_) => Ok(PeerState::Unsolicited),
            Err(Errno::EAGAIN) => Ok(PeerState::Quiet),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
impl Connection {
    /// Writes bytes as they are, framing or not (a test backend misbehaving).
    pub(crate) fn send_raw_for_test(&self, bytes: &[u8]) {
        nix::unistd::write(&self.stream, bytes).unwrap();
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventFd;

    fn pair() -> (Connection, Connection) {
        let (a, b) = UnixStream::pair().unwrap();
        (
            Connection::from_stream(a, Duration::from_secs(1)).unwrap(),
            Connection::from_stream(b, Duration::from_secs(1)).unwrap(),
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    /// A header of `request` with flags 1 (version 1) and `size` payload bytes.
    fn header(request: u32, size: u32) -> Header {
        Header {
            request,
            flags: 1,
            size,
        }
    }

    /// Sends a header of request 12 with `payload` from `a` to `b` over a new pair, two
    /// eventfds attached; returns the pair and the eventfds.
    fn send_two_eventfds(payload: &[u8]) -> (Connection, Connection, Header, [EventFd; 2]) {
        let (a, b) = pair();
        let e = [EventFd::new().unwrap(), EventFd::new().unwrap()];
        let h = header(12, payload.len() as u32);
        a.send(h, payload, &[e[0].as_fd(), e[1].as_fd()]).unwrap();
        (a, b, h, e)
    }

    #[test]
    fn a_message_and_its_descriptors_arrive_together() {
        let (_a, b, h, [e1, _e2]) = send_two_eventfds(&7u64.to_ne_bytes());
        let mut fds = Vec::new();
        assert_eq!(b.recv_header(soon(), &mut fds).unwrap(), h);
        assert_eq!(fds.len(), 2, "descriptors come with the header");
        let mut p = [0u8; 8];
        b.read_exact(&mut p, soon(), &mut fds).unwrap();
        assert_eq!(u64::from_ne_bytes(p), 7);
        assert_eq!(fds.len(), 2);
        // The received descriptor is the same eventfd.
        nix::unistd::write(&fds[0], &3u64.to_ne_bytes()).unwrap();
        use rdk_core::os::EventNotifier;
        assert_eq!(e1.ack().unwrap(), 3);
    }

    /// Past `RLIMIT_NOFILE` the kernel installs only the descriptors that fit and reports
    /// `MSG_CTRUNC`: the ones it installed are adopted (and so closed), not leaked.
    #[test]
    fn descriptors_installed_before_a_truncation_are_not_leaked() {
        let (_a, b, _, _e) = send_two_eventfds(&[]);
        // The limit is per process: lower it in a child, which reports by exit code only.
        // SAFETY: the child runs only this thread; it calls no locks that another thread of
        // the parent may have held (glibc resets malloc's at fork) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: F_GETFD on any number only asks whether it is open.
            let open = |fd: i32| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
            let first = (0..).find(|&fd| !open(fd)).unwrap_or(0);
            let second = (first + 1..).find(|&fd| !open(fd)).unwrap_or(0);
            // SAFETY: plain rlimit calls on a local struct.
            let code = unsafe {
                let mut lim = std::mem::zeroed::<libc::rlimit>();
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
                // Room for one new descriptor (at `first`), not two.
                lim.rlim_cur = second as libc::rlim_t;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                let mut fds = Vec::new();
                let r = b.recv_header(soon(), &mut fds);
                let adopted = fds.len();
                drop(fds);
                if r != Err(RecvError::ControlTruncated) {
                    2
                } else if adopted == 1 && !open(first) {
                    0
                } else {
                    1
                }
            };
            // SAFETY: ends the child without running the parent's test harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: the descriptor installed before MSG_CTRUNC leaked; 2: no truncation seen"
        );
    }

    /// A backend that stops accepting (its listen queue full) is an error at once, not a
    /// connect that waits for it forever.
    #[test]
    fn a_backend_that_does_not_accept_cannot_hang_a_connect() {
        use nix::sys::socket::{
            bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let l = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(l.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        // Backlog 0: one connection waits in the queue, the next finds it full.
        listen(&l, Backlog::new(0).unwrap()).unwrap();
        let _queued = UnixStream::connect(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Connection::connect(&p, Duration::from_secs(1)).map(drop));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(3))
            .expect("connect still blocked after 3 s on a backend that does not accept");
        assert_eq!(r, Err(Errno::EAGAIN));
    }

    #[test]
    fn silence_times_out_and_a_close_is_seen() {
        let (a, b) = pair();
        let mut fds = Vec::new();
        let start = Instant::now();
        let e = b
            .recv_header(Instant::now() + Duration::from_millis(50), &mut fds)
            .unwrap_err();
        assert_eq!(e, RecvError::Timeout);
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(b.peer_state().unwrap(), PeerState::Quiet);
        a.send(header(1, 0), &[], &[]).unwrap();
        assert_eq!(b.peer_state().unwrap(), PeerState::Unsolicited);
        b.recv_header(soon(), &mut fds).unwrap();
        // Half a header, then gone.
        nix::unistd::write(&a.stream, &[1, 2, 3]).unwrap();
        drop(a);
        assert_eq!(b.peer_state().unwrap(), PeerState::Closed);
        assert_eq!(
            b.recv_header(soon(), &mut fds).unwrap_err(),
            RecvError::Closed { got: 3 }
        );
        assert_eq!(
            b.send(header(1, 0), &[], &[]),
            Err(SendError::Closed),
            "EPIPE, not SIGPIPE"
        );
    }
}
