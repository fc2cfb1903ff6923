//! Port helpers for tests against the kernel.

use rdk_core::ethdev::{Driver, Port};
use std::time::{Duration, Instant};

/// Polls `link_update` until the link is `up` (or not), failing after 5 s. The kernel applies
/// carrier and operational-state changes through linkwatch, which may lag by a second.
pub fn await_link<D: Driver>(port: &mut Port<D>, up: bool) {
    let t = Instant::now();
    while port.link_update().up != up {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the link never became {}",
            if up { "up" } else { "down" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
