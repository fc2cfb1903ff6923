//! One AF_XDP socket, shared by a queue pair, and the mbufs still in the kernel's hands when
//! the queues let go of it.
//!
//! A buffer posted to the fill ring or sent by address belongs to the kernel until it comes
//! back through the RX or completion ring — or until the socket is released, which unbinds it
//! and waits for in-flight receives (`xsk_release`: `synchronize_net`). So a queue that stops
//! hands its outstanding mbufs here, and they are freed only after the last holder closes the
//! descriptor.
#![allow(unsafe_code)] // turning parked mbuf pointers back into handles.

use rdk_core::mbuf::{Mbuf, MbufHeader, PktMbufPool};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Mutex;

/// A socket and the mbufs to free once it is closed.
#[derive(Debug)]
pub(crate) struct XskSock {
    fd: Option<OwnedFd>,
    raw: RawFd,
    orphans: Mutex<Vec<usize>>,
    /// Keeps the pool the orphans belong to alive until they are back.
    _pool: PktMbufPool,
}

impl XskSock {
    pub(crate) fn new(fd: OwnedFd, pool: PktMbufPool) -> Self {
        Self {
            raw: fd.as_raw_fd(),
            fd: Some(fd),
            orphans: Mutex::new(Vec::new()),
            _pool: pool,
        }
    }

    /// The descriptor (valid while `self` lives).
    pub(crate) fn fd(&self) -> RawFd {
        self.raw
    }

    /// Parks mbuf headers the kernel may still write, to free after the close.
    pub(crate) fn orphan(&self, mbufs: impl Iterator<Item = NonNull<MbufHeader>>) {
        let mut o = self.orphans.lock().unwrap_or_else(|e| e.into_inner());
        o.extend(mbufs.map(|p| p.as_ptr() as usize));
    }
}

impl Drop for XskSock {
    fn drop(&mut self) {
        // Close first: the kernel unbinds the socket and waits for receives in flight, so
        // nothing writes the buffers afterwards.
        drop(self.fd.take());
        let o = std::mem::take(self.orphans.get_mut().unwrap_or_else(|e| e.into_inner()));
        for p in o {
            if let Some(p) = NonNull::new(p as *mut MbufHeader) {
                // SAFETY: each pointer was parked by a queue that gave up the handle with
                // into_raw and never used it again; parked once, freed once here.
                drop(unsafe { Mbuf::from_raw(p) });
            }
        }
    }
}
