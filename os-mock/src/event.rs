//! [`MockEvent`]: an eventfd-like counter, with a switch to make it closed.

use rdk_core::os::{EventError, EventNotifier};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// An event handle in memory: a counter that [`signal`](EventNotifier::signal) raises,
/// [`ack`](EventNotifier::ack) takes and [`wait`](EventNotifier::wait) blocks on.
///
/// Cheap to clone; clones are the same handle, so a test or a device model keeps one to signal
/// (an interrupt, a peer's kick) while the driver holds another. [`close`](Self::close) makes
/// every operation fail with [`EventError::Closed`] from then on, and wakes blocked waiters, to
/// test how a driver copes with a device or peer going away.
///
/// `wait` timeouts are real time (it blocks a thread), independent of any
/// [`MockClock`](crate::MockClock).
#[derive(Clone, Debug, Default)]
pub struct MockEvent {
    shared: Arc<EventShared>,
}

#[derive(Debug, Default)]
struct EventShared {
    state: Mutex<EventState>,
    ready: Condvar,
    /// Keeps the handle counted as live by its OS while any clone exists.
    _slot: Option<LiveSlot>,
}

#[derive(Debug, Default)]
struct EventState {
    count: u64,
    closed: bool,
    arms: u64,
}

/// One unit of a live-handle counter, given back on drop.
#[derive(Debug)]
pub(crate) struct LiveSlot(Arc<AtomicUsize>);

impl LiveSlot {
    /// Takes over one unit the caller has already added to `counter`.
    pub(crate) fn new(counter: Arc<AtomicUsize>) -> Self {
        Self(counter)
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl MockEvent {
    /// A handle with a count of zero that belongs to no OS.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle counted by its OS through `slot`.
    pub(crate) fn with_slot(slot: LiveSlot) -> Self {
        Self {
            shared: Arc::new(EventShared {
                _slot: Some(slot),
                ..EventShared::default()
            }),
        }
    }

    /// Closes the handle: every operation on it (and its clones) fails with
    /// [`EventError::Closed`] from now on, and threads blocked in `wait` return that error.
    pub fn close(&self) {
        self.lock().closed = true;
        self.shared.ready.notify_all();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The pending count, without taking it.
    pub fn pending(&self) -> u64 {
        self.lock().count
    }

    /// How many times [`arm`](EventNotifier::arm) succeeded (to check a driver re-arms its
    /// interrupt).
    pub fn arm_count(&self) -> u64 {
        self.lock().arms
    }

    fn lock(&self) -> MutexGuard<'_, EventState> {
        // The state is two counters and a flag, consistent after any panic.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, or `Closed`.
    fn open(&self) -> Result<MutexGuard<'_, EventState>, EventError> {
        let state = self.lock();
        if state.closed {
            Err(EventError::Closed)
        } else {
            Ok(state)
        }
    }
}

impl EventNotifier for MockEvent {
    fn signal(&self) -> Result<(), EventError> {
        let mut state = self.open()?;
        state.count = state.count.saturating_add(1);
        drop(state);
        self.shared.ready.notify_all();
        Ok(())
    }

    fn ack(&self) -> Result<u64, EventError> {
        Ok(std::mem::take(&mut self.open()?.count))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<bool, EventError> {
        let state = self.open()?;
        let unready = |s: &mut EventState| s.count == 0 && !s.closed;
        // A timeout too large to represent is no limit.
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        let state = match deadline {
            None => self
                .shared
                .ready
                .wait_while(state, unready)
                .unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let mut state = state;
                // Re-waits after spurious wake-ups with whatever time is left.
                while unready(&mut state) {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    state = self
                        .shared
                        .ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                state
            }
        };
        if state.closed {
            return Err(EventError::Closed);
        }
        Ok(state.count > 0)
    }

    fn arm(&self) -> Result<(), EventError> {
        self.open()?.arms += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn signals_add_up_and_ack_resets() {
        let e = MockEvent::new();
        assert_eq!(e.ack(), Ok(0));
        for _ in 0..3 {
            e.signal().unwrap();
        }
        assert_eq!(e.pending(), 3);
        assert_eq!(e.ack(), Ok(3));
        assert_eq!(e.ack(), Ok(0));
        e.signal().unwrap();
        assert_eq!(e.clone().ack(), Ok(1), "clones are the same handle");
    }

    #[test]
    fn wait_returns_at_once_when_pending_and_leaves_the_count() {
        let e = MockEvent::new();
        e.signal().unwrap();
        e.signal().unwrap();
        assert_eq!(e.wait(Some(Duration::ZERO)), Ok(true));
        assert_eq!(e.wait(None), Ok(true));
        assert_eq!(e.ack(), Ok(2));
    }

    #[test]
    fn wait_times_out() {
        let e = MockEvent::new();
        assert_eq!(e.wait(Some(Duration::ZERO)), Ok(false));
        let start = Instant::now();
        assert_eq!(e.wait(Some(Duration::from_millis(30))), Ok(false));
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn wait_wakes_when_another_thread_signals() {
        let e = MockEvent::new();
        let waiter = {
            let e = e.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                (e.wait(Some(Duration::from_secs(30))), start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        e.signal().unwrap();
        let (r, took) = waiter.join().unwrap();
        assert_eq!(r, Ok(true));
        assert!(took < Duration::from_secs(30), "{took:?}");
        assert_eq!(e.ack(), Ok(1));
        // With no limit, too.
        let waiter = {
            let e = e.clone();
            std::thread::spawn(move || e.wait(None))
        };
        std::thread::sleep(Duration::from_millis(10));
        e.signal().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(true));
    }

    #[test]
    fn huge_timeout_means_no_limit() {
        let e = MockEvent::new();
        e.signal().unwrap();
        assert_eq!(e.wait(Some(Duration::MAX)), Ok(true));
    }

    #[test]
    fn closed_fails_everything_and_wakes_waiters() {
        let e = MockEvent::new();
        let waiter = {
            let e = e.clone();
            std::thread::spawn(move || e.wait(None))
        };
        std::thread::sleep(Duration::from_millis(10));
        e.signal().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(true));
        e.ack().unwrap();
        let waiter = {
            let e = e.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                (e.wait(Some(Duration::from_secs(30))), start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(10));
        e.close();
        let (r, took) = waiter.join().unwrap();
        assert_eq!(r, Err(EventError::Closed));
        assert!(
            took < Duration::from_secs(10),
            "close woke the waiter: {took:?}"
        );
        assert!(e.is_closed());
        assert_eq!(e.signal(), Err(EventError::Closed));
        assert_eq!(e.ack(), Err(EventError::Closed));
        assert_eq!(e.wait(Some(Duration::ZERO)), Err(EventError::Closed));
        assert_eq!(e.arm(), Err(EventError::Closed));
    }

    #[test]
    fn arm_is_counted() {
        let e = MockEvent::new();
        assert_eq!(e.arm_count(), 0);
        e.arm().unwrap();
        e.arm().unwrap();
        assert_eq!(e.arm_count(), 2);
        assert_eq!(e.pending(), 0, "arming is not an event");
    }
}
