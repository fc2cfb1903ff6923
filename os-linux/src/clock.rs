//! The monotonic clock: `CLOCK_MONOTONIC`.

use nix::time::{clock_gettime, ClockId};
use rdk_core::os::{Clock, Instant};

/// `CLOCK_MONOTONIC`: nanoseconds since boot, not counting suspend, never stepped by NTP or
/// `settimeofday`. Its instants compare with the kernel's own monotonic timestamps.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxClock;

impl LinuxClock {
    /// The clock.
    pub const fn new() -> Self {
        Self
    }
}

impl Clock for LinuxClock {
    #[inline]
    fn now(&self) -> Instant {
        // clock_gettime fails only for an unknown clock id or a bad pointer; neither can happen
        // here, so an error is a broken kernel, not something to handle.
        let ts =
            clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
        let nanos = u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec()).unwrap_or(0);
        Instant::from_nanos(nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn monotonic_and_in_step_with_std() {
        let c = LinuxClock::new();
        let a = c.now();
        let std_start = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let std_elapsed = std_start.elapsed();
        let b = c.now();
        assert!(b > a);
        let ours = b.saturating_duration_since(a);
        assert!(ours >= Duration::from_millis(20), "{ours:?}");
        // Both read CLOCK_MONOTONIC; ours brackets std's measurement.
        assert!(ours >= std_elapsed, "{ours:?} < {std_elapsed:?}");
        assert!(ours < std_elapsed + Duration::from_millis(50), "{ours:?}");
    }
}
