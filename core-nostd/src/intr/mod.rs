//! Interrupt and alarm bookkeeping as pure logic.
//!
//! The OS layer owns the waiting (epoll and timerfd on Linux, an interrupt controller in a
//! unikernel); this module owns the rules, so they are the same everywhere and tested without
//! an OS:
//! - [`sources`]: interrupt sources keyed by what the OS waits on, several callbacks each, and
//!   DPDK's pending-delete semantics so callbacks may unregister anything, themselves included;
//! - [`alarm`]: a deadline-ordered alarm list driving one OS timer;
//! - [`poll_sleep`]: when an RX loop should stop polling and wait for the queue interrupt.

pub mod alarm;
pub mod poll_sleep;
pub mod sources;

pub use alarm::{AlarmId, AlarmList};
pub use poll_sleep::{PollAction, PollSleep};
pub use sources::{CallbackId, DispatchEnd, IntrError, Registered, SourceTable, Unregistered};
