//! Event handles: Linux eventfds.

use crate::clock::LinuxClock;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd as NixEventFd};
use rdk_core::os::{Clock, EventError, EventNotifier, WaitHandle};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// An eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`): a 64-bit counter the kernel makes pollable.
///
/// It is the handle VFIO signals a device interrupt into (`VFIO_DEVICE_SET_IRQS`) and the one
/// vhost-user peers kick each other through; [`as_raw_fd`](AsRawFd::as_raw_fd) is what an
/// epoll thread registers.
pub struct EventFd {
    fd: NixEventFd,
}

impl EventFd {
    /// A new eventfd with a count of zero.
    pub fn new() -> Result<Self, EventError> {
        NixEventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map(|fd| Self { fd })
            .map_err(|e| event_error("eventfd", e))
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for EventFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFd")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl EventNotifier for EventFd {
    fn signal(&self) -> Result<(), EventError> {
        match self.fd.write(1) {
            // EAGAIN: the counter is at its maximum, so the handle is ready anyway.
            Ok(_) | Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(event_error("eventfd write", e)),
        }
    }

    fn ack(&self) -> Result<u64, EventError> {
        match self.fd.read() {
            Ok(n) => Ok(n),
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(event_error("eventfd read", e)),
        }
    }

    fn wait_handle(&self) -> Option<WaitHandle> {
        Some(WaitHandle(self.as_raw_fd().into()))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<bool, EventError> {
        let clock = LinuxClock::new();
        let deadline = timeout.map(|t| clock.now().saturating_add(t));
        loop {
            let remaining = match deadline {
                None => PollTimeout::NONE,
                Some(d) => poll_timeout(d.saturating_duration_since(clock.now())),
            };
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, remaining) {
                Ok(0) => {}
                Ok(_) => {
                    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                    if revents.contains(PollFlags::POLLIN) {
                        return Ok(true);
                    }
                    if revents
                        .intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
                    {
                        return Err(EventError::Closed);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(event_error("poll", e)),
            }
            // Timed out (or interrupted): stop once the deadline has passed. A timeout longer
            // than poll's limit (about 24 days) comes back here and polls again.
            if deadline.is_some_and(|d| clock.now() >= d) {
                return Ok(false);
            }
        }
    }
}

/// `d` in whole milliseconds for poll, rounded up (so a wait never ends early), capped at
/// poll's maximum.
fn poll_timeout(d: Duration) -> PollTimeout {
    let ms = d.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

fn event_error(op: &'static str, e: Errno) -> EventError {
    match e {
        Errno::EMFILE | Errno::ENFILE => EventError::Exhausted {
            hint: "raise the open-file limit (ulimit -n) or use fewer queues with interrupts",
        },
        Errno::EBADF => EventError::Closed,
        _ => EventError::Os { op, code: e as i32 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn signal_ack_counts() {
        let e = EventFd::new().unwrap();
        assert_eq!(e.ack().unwrap(), 0, "nothing pending, and no blocking");
        e.signal().unwrap();
        e.signal().unwrap();
        e.signal().unwrap();
        assert_eq!(e.ack().unwrap(), 3);
        assert_eq!(e.ack().unwrap(), 0);
        e.arm().unwrap();
    }

    #[test]
    fn wait_times_out_when_idle() {
        let e = EventFd::new().unwrap();
        let start = std::time::Instant::now();
        assert!(!e.wait(Some(Duration::from_millis(30))).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(!e.wait(Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn wait_sees_a_pending_count_and_leaves_it() {
        let e = EventFd::new().unwrap();
        e.signal().unwrap();
        assert!(e.wait(Some(Duration::ZERO)).unwrap());
        assert!(e.wait(None).unwrap());
        assert_eq!(e.ack().unwrap(), 1);
    }

    #[test]
    fn another_thread_wakes_a_waiter() {
        let e = Arc::new(EventFd::new().unwrap());
        let peer = Arc::clone(&e);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            peer.signal().unwrap();
        });
        assert!(e.wait(Some(Duration::from_secs(10))).unwrap());
        t.join().unwrap();
        assert_eq!(e.ack().unwrap(), 1);
    }

    #[test]
    fn a_saturated_counter_still_signals() {
        let e = EventFd::new().unwrap();
        e.fd.write(u64::MAX - 1).unwrap();
        e.signal().unwrap();
        assert_eq!(e.ack().unwrap(), u64::MAX - 1);
    }

    #[test]
    fn timeouts_round_up() {
        assert_eq!(
            poll_timeout(Duration::from_micros(1)),
            PollTimeout::from(1u8)
        );
        assert_eq!(poll_timeout(Duration::ZERO), PollTimeout::ZERO);
        assert_eq!(poll_timeout(Duration::MAX), PollTimeout::MAX);
        assert!(!EventFd::new().unwrap().as_raw_fd().is_negative());
    }
}
