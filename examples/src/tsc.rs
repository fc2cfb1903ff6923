//! The time-stamp counter, the clock DPDK's micro-benchmarks count cycles with.
//!
//! `dpdk-test`'s perf tests read it with a bare `rdtsc` (`rte_rdtsc`), unserialised, around a
//! loop of millions of operations; rdk's benchmarks read it the same way so that "cycles" mean
//! the same thing on both sides of a comparison. On a CPU without a TSC the counter falls back
//! to nanoseconds of the monotonic clock, and [`mhz`] reports 1000.

use std::time::{Duration, Instant};

/// The current TSC value (`rdtsc`, not serialised, like `rte_rdtsc`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn read() -> u64 {
    // SAFETY: rdtsc has no preconditions and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Nanoseconds since the first call (no TSC on this architecture).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn read() -> u64 {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The counter's rate in MHz, measured against the monotonic clock over `over` (100 ms gives
/// about four significant digits).
pub fn mhz_over(over: Duration) -> f64 {
    let (t0, c0) = (Instant::now(), read());
    while t0.elapsed() < over {
        std::hint::spin_loop();
    }
    let (c1, dt) = (read(), t0.elapsed());
    (c1.wrapping_sub(c0)) as f64 / dt.as_secs_f64() / 1e6
}

/// The counter's rate in MHz, measured over 100 ms.
pub fn mhz() -> f64 {
    mhz_over(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_advances_at_a_plausible_rate() {
        let a = read();
        let b = read();
        assert!(b >= a);
        let f = mhz_over(Duration::from_millis(20));
        assert!((100.0..10_000.0).contains(&f), "TSC at {f} MHz");
    }
}
