//! [`Connection`]: one end of a vhost-user Unix socket, moving whole messages (header, payload
//! and file descriptors) with a deadline on every read.
//!
//! It checks framing only (the bytes arrive, in time, with or without descriptors); what the
//! header says is for the caller to judge, since the frontend and a test backend expect
//! different things.
#![allow(unsafe_code)] // adopting descriptors the kernel just installed (`OwnedFd::from_raw_fd`).

use super::msg::{Header, HEADER_SIZE};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recv, recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr,
};
use std::io::{IoSlice, IoSliceMut};
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
    pub fn connect(path: &Path, send_timeout: Duration) -> Result<Connection, Errno> {
        let stream = UnixStream::connect(path).map_err(io_errno)?;
        Connection::from_stream(stream, send_timeout)
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
            let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
            let mut iov = [IoSliceMut::new(&mut buf[got..])];
            let (n, truncated) = match recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(msg) => {
                    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                // SAFETY: SCM_RIGHTS descriptors were just installed in this
                                // process's table by the kernel for this recvmsg; nothing else
                                // knows them, so adopting each one exactly once is sound.
                                fds.extend(
                                    raw.into_iter()
                                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                                );
                            }
                        }
                    }
                    (msg.bytes, truncated)
                }
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

    #[test]
    fn a_message_and_its_descriptors_arrive_together() {
        let (a, b) = pair();
        let e1 = EventFd::new().unwrap();
        let e2 = EventFd::new().unwrap();
        let h = Header {
            request: 12,
            flags: 1,
            size: 8,
        };
        a.send(h, &7u64.to_ne_bytes(), &[e1.as_fd(), e2.as_fd()])
            .unwrap();
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
        a.send(
            Header {
                request: 1,
                flags: 1,
                size: 0,
            },
            &[],
            &[],
        )
        .unwrap();
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
            b.send(
                Header {
                    request: 1,
                    flags: 1,
                    size: 0
                },
                &[],
                &[]
            ),
            Err(SendError::Closed),
            "EPIPE, not SIGPIPE"
        );
    }
}
