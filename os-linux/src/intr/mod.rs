//! Interrupts on Linux: the interrupt thread (sources and alarms) and RX-queue interrupts.
//!
//! DPDK's EAL runs one interrupt thread per process that never exits and rebuilds its whole
//! epoll set (through a pipe write) on every registration. rdk keeps the design and drops
//! those weak spots:
//! - [`InterruptThread`] is an instance, not a global: the application creates it once and
//!   hands out [`IntrHandle`]s; [`InterruptThread::shutdown`] joins it and closes its fds.
//! - Registration is incremental: one `epoll_ctl` when a source appears or goes, none for a
//!   second callback on the same fd, no wake-up of the thread.
//! - The rules (several callbacks per source, pending-delete when a callback unregisters
//!   anything during dispatch, alarm order) are rdk-core's pure [`rdk_core::intr`] logic, so a
//!   unikernel gets the same semantics.
//! - A source whose read fails or hangs up is removed and its owner told (`on_removed`), the
//!   hot-unplug path; stale epoll events for a removed fd are recognised by a generation tag.
//! - Alarms share the thread, with one timerfd armed for the earliest deadline.
//!
//! [`rxq`] is the per-thread side: a thread that owns RX queues waits for their interrupts
//! itself ([`RxIntrWaiter`]), and [`HybridRx`] polls while traffic flows and sleeps after a
//! run of empty polls.

pub mod rxq;
mod sys;
pub mod thread;

pub use rxq::{HybridRx, RxIntrWaiter};
pub use thread::{
    InterruptThread, IntrConfig, IntrEvent, IntrHandle, IntrThreadError, Registration,
    RemovedReason, SourceKind, Unregistered,
};
