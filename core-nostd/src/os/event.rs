//! Event notification: a handle that a device interrupt or a peer's kick makes ready.
//!
//! The model is a counter, as with Linux's eventfd: [`signal`](EventNotifier::signal) adds one,
//! [`ack`](EventNotifier::ack) takes the count and resets it, [`wait`](EventNotifier::wait)
//! blocks until the count is non-zero. [`arm`](EventNotifier::arm) re-enables delivery where
//! the source must be unmasked after each event (a device interrupt); for a plain counter it
//! does nothing.

use core::fmt;
use core::time::Duration;

/// Why an event operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The OS is out of event handles.
    Exhausted {
        /// How to get more.
        hint: &'static str,
    },
    /// The handle no longer works (its device went away, its peer hung up).
    Closed,
    /// The OS refused for another reason.
    Os {
        /// What was attempted.
        op: &'static str,
        /// The OS's error code (errno on Linux).
        code: i32,
    },
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EventError::Exhausted { hint } => write!(f, "out of event handles; {hint}"),
            EventError::Closed => write!(
                f,
                "event source closed (device removed or peer gone); re-create the queue or port"
            ),
            EventError::Os { op, code } => write!(f, "{op} failed with OS error {code}"),
        }
    }
}

impl core::error::Error for EventError {}

/// What an OS waits on for an event handle: a file descriptor on Linux, an interrupt vector or
/// a scheduler object elsewhere. Opaque to drivers; the OS layer that made it interprets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaitHandle(pub i64);

/// One event handle.
pub trait EventNotifier: Send + Sync {
    /// Makes the handle ready (adds one to its count).
    fn signal(&self) -> Result<(), EventError>;

    /// Takes the pending count, resetting it to zero; 0 if nothing was pending. Never blocks.
    fn ack(&self) -> Result<u64, EventError>;

    /// Blocks until the handle is ready or `timeout` passes (`None`: no limit). Returns whether
    /// it is ready; the count is left for [`ack`](Self::ack).
    fn wait(&self, timeout: Option<Duration>) -> Result<bool, EventError>;

    /// Re-enables delivery after an event, where the source needs it.
    fn arm(&self) -> Result<(), EventError> {
        Ok(())
    }

    /// What the OS waits on for this handle, so one thread can wait for several handles at
    /// once (an epoll set on Linux). `None` if the OS has no such thing.
    fn wait_handle(&self) -> Option<WaitHandle> {
        None
    }
}

/// An OS that creates event handles.
pub trait Events {
    /// The handle type.
    type Event: EventNotifier + 'static;

    /// A new handle with a count of zero.
    fn event_create(&self) -> Result<Self::Event, EventError>;
}
