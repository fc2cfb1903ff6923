//! [`MockClock`]: time that moves only when the test says so (or, on request, with real time).

use rdk_core::os::{Clock, Instant};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A monotonic clock for tests; cheap to clone, clones share one time.
///
/// Three kinds, chosen at construction:
/// - manual ([`new`](Self::new), [`starting_at`](Self::starting_at)): time stands still until
///   [`advance`](Self::advance) or [`set`](Self::set); fully deterministic;
/// - stepping ([`stepping`](Self::stepping)): every reading moves time on by a fixed step, so a
///   driver loop that polls until a deadline ends without a second thread;
/// - real time ([`real_time`](Self::real_time)): follows `std::time::Instant`, and
///   [`advance`](Self::advance) still jumps ahead on top of it.
///
/// Time never goes back in any kind.
#[derive(Clone, Debug)]
pub struct MockClock {
    inner: Arc<ClockInner>,
}

#[derive(Debug)]
struct ClockInner {
    /// Manual nanoseconds (added to real elapsed time in real-time mode).
    offset: AtomicU64,
    /// Nanoseconds added by every reading.
    step: u64,
    /// Where real time is counted from, in real-time mode.
    origin: Option<std::time::Instant>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl MockClock {
    /// A manual clock at zero.
    pub fn new() -> Self {
        Self::starting_at(Instant::from_nanos(0))
    }

    /// A manual clock at `start`.
    pub fn starting_at(start: Instant) -> Self {
        Self::with(start.as_nanos(), 0, None)
    }

    /// A clock at `start` that moves on by `step` after every reading: readings are `start`,
    /// `start + step`, `start + 2 * step`, …
    pub fn stepping(start: Instant, step: Duration) -> Self {
        Self::with(start.as_nanos(), nanos(step), None)
    }

    /// A clock that follows real time from zero at its creation.
    pub fn real_time() -> Self {
        Self::with(0, 0, Some(std::time::Instant::now()))
    }

    fn with(offset: u64, step: u64, origin: Option<std::time::Instant>) -> Self {
        Self {
            inner: Arc::new(ClockInner {
                offset: AtomicU64::new(offset),
                step,
                origin,
            }),
        }
    }

    /// Whether this clock follows real time.
    pub fn is_real_time(&self) -> bool {
        self.inner.origin.is_some()
    }

    /// Moves time on by `d` (saturating at the end of time).
    pub fn advance(&self, d: Duration) {
        let d = nanos(d);
        // The closure always returns Some, so fetch_update cannot fail.
        let _ = self
            .inner
            .offset
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                Some(o.saturating_add(d))
            });
    }

    /// Moves time on to `t`.
    ///
    /// # Panics
    /// If `t` is earlier than now: a monotonic clock never goes back, and a test that asks for
    /// it has a bug.
    #[track_caller]
    pub fn set(&self, t: Instant) {
        let result = self
            .inner
            .offset
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                let elapsed = self.real_elapsed();
                let target = t.as_nanos().checked_sub(elapsed)?;
                (target >= o).then_some(target)
            });
        if let Err(o) = result {
            panic!(
                "MockClock::set: {} ns is before now ({} ns); a monotonic clock never goes back",
                t.as_nanos(),
                o.saturating_add(self.real_elapsed())
            );
        }
    }

    fn real_elapsed(&self) -> u64 {
        self.inner.origin.map_or(0, |o| nanos(o.elapsed()))
    }
}

impl Default for MockClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MockClock {
    fn now(&self) -> Instant {
        let offset = if self.inner.step == 0 {
            self.inner.offset.load(Ordering::Acquire)
        } else {
            let step = self.inner.step;
            // The closure always returns Some; Err is unreachable and carries the same value.
            self.inner
                .offset
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                    Some(o.saturating_add(step))
                })
                .unwrap_or_else(|o| o)
        };
        Instant::from_nanos(offset.saturating_add(self.real_elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_time_moves_only_when_told() {
        let c = MockClock::new();
        assert_eq!(c.now(), Instant::from_nanos(0));
        assert_eq!(c.now(), Instant::from_nanos(0));
        c.advance(Duration::from_millis(3));
        assert_eq!(c.now().as_nanos(), 3_000_000);
        c.set(Instant::from_nanos(5_000_000));
        assert_eq!(c.now().as_nanos(), 5_000_000);
        c.set(Instant::from_nanos(5_000_000));
        assert_eq!(c.now().as_nanos(), 5_000_000);
        assert!(!c.is_real_time());
    }

    #[test]
    fn clones_share_time() {
        let c = MockClock::starting_at(Instant::from_nanos(10));
        let d = c.clone();
        d.advance(Duration::from_nanos(5));
        assert_eq!(c.now().as_nanos(), 15);
    }

    #[test]
    fn advance_saturates() {
        let c = MockClock::starting_at(Instant::from_nanos(u64::MAX - 1));
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now().as_nanos(), u64::MAX);
        c.advance(Duration::MAX);
        assert_eq!(c.now().as_nanos(), u64::MAX);
    }

    #[test]
    #[should_panic(expected = "never goes back")]
    fn set_backwards_panics() {
        let c = MockClock::starting_at(Instant::from_nanos(100));
        c.set(Instant::from_nanos(99));
    }

    #[test]
    fn stepping_moves_on_every_reading() {
        let c = MockClock::stepping(Instant::from_nanos(7), Duration::from_nanos(10));
        let readings: Vec<u64> = (0..4).map(|_| c.now().as_nanos()).collect();
        assert_eq!(readings, [7, 17, 27, 37]);
        c.advance(Duration::from_nanos(100));
        assert_eq!(c.now().as_nanos(), 147);
    }

    #[test]
    fn real_time_follows_the_wall_and_can_jump() {
        let c = MockClock::real_time();
        assert!(c.is_real_time());
        let a = c.now();
        std::thread::sleep(Duration::from_millis(5));
        let b = c.now();
        assert!(
            b.saturating_duration_since(a) >= Duration::from_millis(5),
            "{a:?} {b:?}"
        );
        c.advance(Duration::from_secs(3600));
        let h = c.now();
        assert!(h.saturating_duration_since(b) >= Duration::from_secs(3600));
        c.set(h.saturating_add(Duration::from_secs(60)));
        assert!(c.now() >= h.saturating_add(Duration::from_secs(60)));
    }
}
