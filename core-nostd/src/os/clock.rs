//! A monotonic clock.

use core::time::Duration;

/// A point on a monotonic clock, in nanoseconds since an arbitrary origin fixed per clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The instant `nanos` nanoseconds after the clock's origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// This instant plus `d`, saturating at the clock's end.
    pub fn saturating_add(self, d: Duration) -> Instant {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ns))
    }
}

/// A monotonic clock: never goes backwards, not affected by wall-clock changes.
pub trait Clock {
    /// Now.
    fn now(&self) -> Instant;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let a = Instant::from_nanos(100);
        let b = a.saturating_add(Duration::from_nanos(50));
        assert_eq!(b.as_nanos(), 150);
        assert_eq!(b.saturating_duration_since(a), Duration::from_nanos(50));
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert_eq!(a.saturating_add(Duration::MAX).as_nanos(), u64::MAX);
    }
}
