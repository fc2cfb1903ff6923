//! One AF_XDP socket, shared by a queue pair, and the mbufs still in the kernel's hands when
//! the queues let go of it.
//!
//! A buffer posted to the fill ring or sent by address belongs to the kernel until it comes
//! back through the RX or completion ring — or until the socket is released and the kernel has
//! let go of its buffer pool: the close unbinds the socket and waits for copy-mode receives in
//! flight (`xsk_release`: `synchronize_net`), and the pool itself, with a zero-copy driver's
//! DMA mappings, is released from a work queue afterwards. So a queue that stops hands its
//! outstanding mbufs here, after unmapping its rings (a mapping holds the socket open as
//! surely as the descriptor); the last holder closes the descriptor, waits until the queue can
//! be bound again (the sign that the pool is gone), and only then frees them. If that cannot
//! be confirmed, they are leaked (and said so), never freed under a device.
#![allow(unsafe_code)] // turning parked mbuf pointers back into handles.

use crate::sys::Probe;
use rdk_core::mbuf::{Mbuf, MbufHeader, PktMbufPool};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Mutex;

/// Where a socket is bound, and a spare socket from its network namespace to probe the
/// queue with after the close.
#[derive(Debug)]
pub(crate) struct Bound {
    ifindex: u32,
    queue: u32,
    zero_copy: bool,
    probe: Probe,
}

/// A socket and the mbufs to free once it is closed.
#[derive(Debug)]
pub(crate) struct XskSock {
    fd: Option<OwnedFd>,
    raw: RawFd,
    orphans: Mutex<Vec<usize>>,
    /// Where it is bound (ifindex, queue id, zero-copy) and the probe to wait for the
    /// release with; `None` before the bind.
    bound: Mutex<Option<Bound>>,
    /// Keeps the pool the orphans belong to alive until they are back.
    _pool: PktMbufPool,
}

impl XskSock {
    pub(crate) fn new(fd: OwnedFd, pool: PktMbufPool) -> Self {
        Self {
            raw: fd.as_raw_fd(),
            fd: Some(fd),
            orphans: Mutex::new(Vec::new()),
            bound: Mutex::new(None),
            _pool: pool,
        }
    }

    /// The descriptor (valid while `self` lives).
    pub(crate) fn fd(&self) -> RawFd {
        self.raw
    }

    /// Records where the socket is bound.
    pub(crate) fn set_bound(&self, ifindex: u32, queue: u32, zero_copy: bool, probe: Probe) {
        *self.bound.lock().unwrap_or_else(|e| e.into_inner()) = Some(Bound {
            ifindex,
            queue,
            zero_copy,
            probe,
        });
    }

    /// Parks mbuf headers the kernel may still write, to free after the close.
    pub(crate) fn orphan(&self, mbufs: impl Iterator<Item = NonNull<MbufHeader>>) {
        let mut o = self.orphans.lock().unwrap_or_else(|e| e.into_inner());
        o.extend(mbufs.map(|p| p.as_ptr() as usize));
    }
}

/// Waits (up to a second) until queue `queue` of `ifindex` can be bound again: then the
/// kernel has released the closed socket's buffer pool.
fn released(probe: &Probe, ifindex: u32, queue: u32) -> bool {
    use nix::errno::Errno;
    for _ in 0..200 {
        match probe.queue_is_free(ifindex, queue) {
            Ok(false) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Ok(true) => return true,
            // The interface (or the queue) went away, and the pool with it.
            Err(Errno::ENODEV | Errno::ENXIO | Errno::EINVAL) => return true,
            // Cannot tell (no privilege, no memory): not confirmed.
            Err(_) => return false,
        }
    }
    false
}

impl Drop for XskSock {
    fn drop(&mut self) {
        // Close first: the kernel unbinds the socket and waits for receives in flight, so
        // nothing writes the buffers afterwards.
        drop(self.fd.take());
        let o = std::mem::take(self.orphans.get_mut().unwrap_or_else(|e| e.into_inner()));
        let bound = self
            .bound
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let (Some(b), false) = (bound, o.is_empty()) {
            // Copy mode: nothing writes the buffers after the close; the wait only spares the
            // next bind its retries. Zero-copy: the device may, until the pool is released.
            let (ifindex, queue) = (b.ifindex, b.queue);
            if !released(&b.probe, ifindex, queue) && b.zero_copy {
                eprintln!(
                    "net_af_xdp: the kernel did not release queue {queue} of interface \
                     {ifindex} within a second of the close; leaking {} mbufs it may still \
                     write rather than freeing them",
                    o.len()
                );
                return;
            }
        }
        for p in o {
            if let Some(p) = NonNull::new(p as *mut MbufHeader) {
                // SAFETY: each pointer was parked by a queue that gave up the handle with
                // into_raw and never used it again; parked once, freed once here.
                drop(unsafe { Mbuf::from_raw(p) });
            }
        }
    }
}
