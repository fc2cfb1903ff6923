//! Recovery from `DEVICE_NEEDS_RESET` while the port runs, without stopping it.
//!
//! The queues belong to data-path threads and the driver's control path never touches them,
//! so the two meet only here:
//!
//! 1. The control path sees `DEVICE_NEEDS_RESET` (in [`link`](rdk_core::ethdev::Driver::link)),
//!    resets the device — from then on it writes nothing into the rings — and raises the
//!    port's requested epoch ([`Recovery::request`]).
//! 2. Each queue, at the top of its next burst, sees the epoch move (one `Relaxed` load of a
//!    line that is only read in steady state), frees everything it had in flight, rebuilds
//!    its ring empty in the same memory (a receive queue posts fresh buffers, without a
//!    doorbell: there is no device yet), and acknowledges the epoch in its [`Slot`]
//!    (`Release`). Until the device is live again it returns 0 from every burst.
//! 3. Once every queue of the port acknowledged, the control path brings the device up
//!    again as a start does, over the same ring memory, leaves each queue its new doorbell
//!    (and interrupt event) in its slot, kicks the receive queues once and publishes the
//!    epoch as live ([`Recovery::go_live`], `Release`); the queues pick their doorbells up
//!    and carry on.
//!
//! A queue that is never polled never acknowledges, and the link stays down until it is (or
//! until the port is stopped and started).

use core::sync::atomic::{AtomicU32, Ordering};
use spin::Mutex;

/// A port's recovery epochs, shared by the driver and every queue of the port.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// The epoch the driver asks every queue to be at (raised once per device reset).
    requested: AtomicU32,
    /// The last epoch in which the device was brought up again over the rebuilt rings.
    live: AtomicU32,
}

impl Recovery {
    /// The epoch asked for; the data path's steady-state check.
    #[inline(always)]
    pub fn requested(&self) -> u32 {
        self.requested.load(Ordering::Relaxed)
    }

    /// Asks every queue to drop what it has in flight and rebuild its ring (the device was
    /// just reset); returns the new epoch.
    pub fn request(&self) -> u32 {
        self.requested
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1)
    }

    /// Says the device runs again over the rings rebuilt for `epoch`; the doorbells are in
    /// the slots (written before this `Release`).
    pub fn go_live(&self, epoch: u32) {
        self.live.store(epoch, Ordering::Release);
    }

    /// Whether the device runs over the rings rebuilt for `epoch`.
    pub fn is_live(&self, epoch: u32) -> bool {
        self.live.load(Ordering::Acquire) == epoch
    }

    /// After a start (which rebuilt every queue itself): the current epoch, live.
    pub fn settle(&self) -> u32 {
        let e = self.requested.load(Ordering::Acquire);
        self.live.store(e, Ordering::Release);
        e
    }
}

/// One queue's side of a recovery: the epoch it acknowledged and what the driver leaves it.
#[derive(Debug)]
pub(crate) struct Slot<H> {
    acked: AtomicU32,
    handoff: Mutex<Option<H>>,
}

impl<H> Slot<H> {
    /// A slot that acknowledged `epoch`.
    pub fn new(epoch: u32) -> Self {
        Self {
            acked: AtomicU32::new(epoch),
            handoff: Mutex::new(None),
        }
    }

    /// The queue rebuilt its ring for `epoch` and touches it no more until it is live.
    pub fn ack(&self, epoch: u32) {
        self.acked.store(epoch, Ordering::Release);
    }

    /// Whether the queue acknowledged `epoch`.
    pub fn acked(&self, epoch: u32) -> bool {
        self.acked.load(Ordering::Acquire) == epoch
    }

    /// Leaves the queue its new doorbell (and interrupt event).
    pub fn give(&self, h: H) {
        *self.handoff.lock() = Some(h);
    }

    /// Takes what the driver left, if anything.
    pub fn take(&self) -> Option<H> {
        self.handoff.lock().take()
    }
}

/// Where a queue stands against its port's [`Recovery`].
#[derive(Debug)]
pub(crate) struct QueueSync<H> {
    pub rec: alloc::sync::Arc<Recovery>,
    pub slot: alloc::sync::Arc<Slot<H>>,
    /// The epoch whose device the queue runs with.
    pub epoch: u32,
    /// The last epoch the queue rebuilt its ring for.
    pub rebuilt: u32,
}

/// What a queue does at the top of a burst whose epoch moved.
pub(crate) enum Step<H> {
    /// Rebuild the ring for this epoch, then ask again.
    Rebuild(u32),
    /// Rebuilt and acknowledged; the device is not back yet: return 0.
    Wait,
    /// The device is back: use this doorbell (if the driver left one) and go on.
    Resume(Option<H>),
}

impl<H> QueueSync<H> {
    pub fn new(rec: alloc::sync::Arc<Recovery>) -> Self {
        let e = rec.requested();
        Self {
            rec,
            slot: alloc::sync::Arc::new(Slot::new(e)),
            epoch: e,
            rebuilt: e,
        }
    }

    /// Whether the port asked for something this queue has not done (the hot-path check).
    #[inline(always)]
    pub fn moved(&self) -> bool {
        self.rec.requested() != self.epoch
    }

    /// The queue was rebuilt by a start: in step with the port, with nothing left over.
    pub fn started(&mut self) {
        let e = self.rec.requested();
        self.epoch = e;
        self.rebuilt = e;
        self.slot.take();
        self.slot.ack(e);
    }

    /// The next step once [`moved`](Self::moved).
    pub fn step(&mut self) -> Step<H> {
        let want = self
            .rec
            .requested
            .load(core::sync::atomic::Ordering::Acquire);
        if self.rebuilt != want {
            return Step::Rebuild(want);
        }
        if !self.rec.is_live(want) {
            return Step::Wait;
        }
        self.epoch = want;
        Step::Resume(self.slot.take())
    }

    /// The ring was rebuilt for `epoch`: acknowledge it.
    pub fn rebuilt(&mut self, epoch: u32) {
        self.rebuilt = epoch;
        self.slot.ack(epoch);
    }
}
