//! Port helpers for tests.

use rdk_core::ethdev::{Driver, EthError, Port, PortConfig, RxQueueConfig, TxQueueConfig};
use rdk_core::mbuf::PktMbufPool;
use rdk_core::udp::IfaceConfig;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A started port 0 over `driver`: one queue pair of `ring` descriptors, receiving into `pool`.
pub fn started<D: Driver>(driver: D, pool: &PktMbufPool, ring: u16) -> Port<D> {
    try_started(driver, pool, ring).unwrap_or_else(|e| panic!("port start: {e}"))
}

/// [`started`], or the first error of configure, queue setup or start.
pub fn try_started<D: Driver>(
    driver: D,
    pool: &PktMbufPool,
    ring: u16,
) -> Result<Port<D>, EthError> {
    let mut p = Port::new(0, driver);
    p.configure(&PortConfig::queues(1, 1))?;
    p.rx_queue_setup(0, ring, pool, &RxQueueConfig::default())?;
    p.tx_queue_setup(0, ring, &TxQueueConfig::default())?;
    p.start()?;
    Ok(p)
}

/// A UDP stack's interface: `mac` and `ip` on a /24, no gateway, MTU 1500.
pub fn iface(mac: [u8; 6], ip: Ipv4Addr) -> IfaceConfig {
    IfaceConfig {
        mac,
        ip,
        prefix_len: 24,
        gateway: None,
        mtu: 1500,
    }
}

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
