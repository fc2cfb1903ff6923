//! RX-queue interrupts for the thread that owns the queues: wait for several queues at once,
//! and the hybrid poll/sleep loop.
//!
//! A queue's [`intr_handle`](RxQueue::intr_handle) is a file descriptor on Linux (an eventfd,
//! a socket, a VFIO interrupt eventfd). The waiter never reads it — reading a socket would eat
//! packets — so a queue's [`intr_disable`](RxQueue::intr_disable) is what acknowledges it.

use super::sys;
use super::thread::IntrThreadError;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags};
use rdk_core::ethdev::{EthError, RxQueue};
use rdk_core::intr::{PollAction, PollSleep};
use rdk_core::mbuf::Mbuf;
use rdk_core::os::WaitHandle;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

fn handle_fd(h: WaitHandle) -> Result<RawFd, IntrThreadError> {
    RawFd::try_from(h.0).map_err(|_| IntrThreadError::Os {
        op: "wait handle is not a file descriptor",
        errno: Errno::EBADF,
    })
}

/// One thread's set of queue interrupts (DPDK's per-thread `rte_epoll_wait` on
/// `rte_eth_dev_rx_intr_ctl_q` handles). Each handle is added with a tag the caller chooses
/// (say `port << 16 | queue`), which [`wait`](Self::wait) reports back.
#[derive(Debug)]
pub struct RxIntrWaiter {
    epoll: Epoll,
    fds: Vec<RawFd>,
    events: Vec<libc::epoll_event>,
}

impl RxIntrWaiter {
    /// An empty set.
    pub fn new() -> Result<Self, IntrThreadError> {
        let epoll =
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|errno| IntrThreadError::Os {
                op: "epoll_create1",
                errno,
            })?;
        Ok(Self {
            epoll,
            fds: Vec::new(),
            events: Vec::new(),
        })
    }

    /// Adds a queue's handle under `tag`.
    pub fn add(&mut self, handle: WaitHandle, tag: u64) -> Result<(), IntrThreadError> {
        let fd = handle_fd(handle)?;
        sys::epoll_add(self.epoll.0.as_raw_fd(), fd, libc::EPOLLIN as u32, tag).map_err(
            |errno| IntrThreadError::Os {
                op: "epoll_ctl",
                errno,
            },
        )?;
        self.fds.push(fd);
        self.events.push(libc::epoll_event { events: 0, u64: 0 });
        Ok(())
    }

    /// Removes a handle.
    pub fn remove(&mut self, handle: WaitHandle) -> Result<(), IntrThreadError> {
        let fd = handle_fd(handle)?;
        let pos = self
            .fds
            .iter()
            .position(|&f| f == fd)
            .ok_or(IntrThreadError::NotRegistered)?;
        self.fds.swap_remove(pos);
        self.events.pop();
        sys::epoll_del(self.epoll.0.as_raw_fd(), fd).map_err(|errno| IntrThreadError::Os {
            op: "epoll_ctl",
            errno,
        })
    }

    /// Sleeps until at least one handle is ready or `timeout` passes (`None`: no limit), and
    /// appends the ready handles' tags to `ready`. Returns how many; 0 on timeout.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        ready: &mut Vec<u64>,
    ) -> Result<usize, IntrThreadError> {
        if self.events.is_empty() {
            self.events.push(libc::epoll_event { events: 0, u64: 0 });
        }
        let ms = match timeout {
            None => -1,
            Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        };
        let n = match sys::epoll_wait(self.epoll.0.as_raw_fd(), &mut self.events, ms) {
            Ok(n) => n,
            // A signal: report a spurious wake-up (0); the caller polls anyway.
            Err(Errno::EINTR) => 0,
            Err(errno) => {
                return Err(IntrThreadError::Os {
                    op: "epoll_wait",
                    errno,
                })
            }
        };
        ready.extend(self.events[..n].iter().map(|e| e.u64));
        Ok(n)
    }
}

/// The hybrid loop for one queue: poll while packets come; after `threshold` empty polls in a
/// row enable the interrupt, poll once more (a packet may have arrived just before), and sleep
/// until the interrupt fires or `max_sleep` passes; then disable it and poll again.
#[derive(Debug)]
pub struct HybridRx {
    policy: PollSleep,
    waiter: RxIntrWaiter,
    max_sleep: Duration,
    ready: Vec<u64>,
    wakeups: u64,
}

impl HybridRx {
    /// A loop for `queue`, which must have an interrupt handle.
    pub fn new<Q: RxQueue>(
        queue: &Q,
        threshold: u32,
        max_sleep: Duration,
    ) -> Result<Self, IntrThreadError> {
        let handle = queue.intr_handle().ok_or(IntrThreadError::NotRegistered)?;
        let mut waiter = RxIntrWaiter::new()?;
        waiter.add(handle, 0)?;
        Ok(Self {
            policy: PollSleep::new(threshold),
            waiter,
            max_sleep,
            ready: Vec::with_capacity(1),
            wakeups: 0,
        })
    }

    /// One step: a burst, and a sleep if the policy says so. Returns the packets received.
    #[inline]
    pub fn rx_burst<Q: RxQueue>(
        &mut self,
        queue: &mut Q,
        out: &mut [Option<Mbuf>],
    ) -> Result<usize, EthError> {
        let n = queue.rx_burst(out);
        if self.policy.after_poll(n) == PollAction::Poll {
            return Ok(n);
        }
        self.sleep(queue, out)
    }

    #[cold]
    fn sleep<Q: RxQueue>(
        &mut self,
        queue: &mut Q,
        out: &mut [Option<Mbuf>],
    ) -> Result<usize, EthError> {
        queue.intr_enable()?;
        let n = queue.rx_burst(out);
        if n == 0 {
            self.ready.clear();
            let woke = self
                .waiter
                .wait(Some(self.max_sleep), &mut self.ready)
                .map_err(|_| EthError::NotSupported {
                    op: "waiting for the rx interrupt (epoll_wait failed)",
                })?;
            self.wakeups += (woke > 0) as u64;
        }
        queue.intr_disable()?;
        if n > 0 {
            return Ok(n);
        }
        Ok(queue.rx_burst(out))
    }

    /// How many times the loop went to sleep.
    pub fn sleeps(&self) -> u64 {
        self.policy.sleeps()
    }

    /// How many sleeps ended by the interrupt (the rest timed out).
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }
}
