//! What the frontend has told the backend, kept so that [`reconnect`] can tell a restarted
//! backend the same again.
//!
//! [`reconnect`]: super::VhostUserFrontend::reconnect

use super::memory::SavedRegion;
use rdk_core::addr::VirtAddr;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Where a split ring's three parts are, in this process's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VringAddrs {
    /// The descriptor table (16-byte aligned).
    pub desc: VirtAddr,
    /// The available ring, the driver area (2-byte aligned).
    pub avail: VirtAddr,
    /// The used ring, the device area (4-byte aligned).
    pub used: VirtAddr,
}

/// A notifier remembered for a ring: an eventfd (our own duplicate), or polling mode.
#[derive(Debug)]
pub(crate) enum Notifier {
    Fd(OwnedFd),
    Polling,
}

impl Notifier {
    pub(crate) fn from_fd(fd: Option<BorrowedFd<'_>>) -> std::io::Result<Notifier> {
        Ok(match fd {
            Some(fd) => Notifier::Fd(fd.try_clone_to_owned()?),
            None => Notifier::Polling,
        })
    }

    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Notifier::Fd(fd) => Some(fd.as_fd()),
            Notifier::Polling => None,
        }
    }
}

/// One ring's set-up.
#[derive(Debug, Default)]
pub(crate) struct VringRecord {
    pub(crate) num: Option<u32>,
    pub(crate) base: Option<u32>,
    pub(crate) addrs: Option<VringAddrs>,
    pub(crate) kick: Option<Notifier>,
    pub(crate) call: Option<Notifier>,
    pub(crate) err: Option<Notifier>,
    pub(crate) enabled: Option<bool>,
    /// A kick was set since the last `GET_VRING_BASE` (which stops the ring).
    pub(crate) running: bool,
}

/// The session as the backend should see it.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub(crate) owner: bool,
    pub(crate) features: Option<u64>,
    pub(crate) protocol_features: Option<u64>,
    pub(crate) mem_table: Vec<SavedRegion>,
    pub(crate) vrings: BTreeMap<u32, VringRecord>,
    pub(crate) status: Option<u8>,
}
