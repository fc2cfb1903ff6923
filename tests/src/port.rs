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
    try_started_with(driver, pool, ring, &PortConfig::queues(1, 1))
}

/// A started port 0 over `driver` configured with `cfg`: each of its queues with `ring`
/// descriptors, receiving into `pool`; or the first error on the way.
pub fn try_started_with<D: Driver>(
    driver: D,
    pool: &PktMbufPool,
    ring: u16,
    cfg: &PortConfig,
) -> Result<Port<D>, EthError> {
    let mut p = Port::new(0, driver);
    set_up(&mut p, pool, ring, cfg)?;
    p.start()?;
    Ok(p)
}

/// Configures `port` with `cfg` and sets up each of its queues with `ring` descriptors,
/// receiving into `pool` (default queue configurations); does not start it. The first error
/// on the way is returned.
pub fn set_up<D: Driver>(
    port: &mut Port<D>,
    pool: &PktMbufPool,
    ring: u16,
    cfg: &PortConfig,
) -> Result<(), EthError> {
    port.configure(cfg)?;
    for q in 0..cfg.nb_rxq {
        port.rx_queue_setup(q, ring, pool, &RxQueueConfig::default())?;
    }
    for q in 0..cfg.nb_txq {
        port.tx_queue_setup(q, ring, &TxQueueConfig::default())?;
    }
    Ok(())
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

/// RX-queue interrupts against a real sender: a thread receives on `port`'s queue 0 through
/// `HybridRx` (asleep on the queue's wait handle between bursts) while `send(i)` has the peer
/// send datagram `[i]`, for `i` in `0..count`, 30 ms apart. Frames `payload` finds nothing in
/// (the kernel's own traffic) are dropped. Asserts that every datagram arrived, in order, and
/// that the receiver slept and was woken by the interrupt in at least half of the gaps;
/// returns the port.
pub fn sleepy_receive<D: Driver + Send>(
    port: Port<D>,
    count: u8,
    payload: fn(&rdk_core::mbuf::Mbuf) -> Option<Vec<u8>>,
    send: impl Fn(u8),
) -> Port<D> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    let stop = &stop;
    std::thread::scope(|s| {
        let receiver = s.spawn(move || {
            let mut port = port;
            let q = port.queues().unwrap();
            let rxq = &mut q.rx[0];
            let mut hybrid =
                rdk_os_linux::intr::HybridRx::new(rxq, 8, Duration::from_secs(5)).unwrap();
            let mut payloads: Vec<Vec<u8>> = Vec::new();
            let mut burst: [Option<rdk_core::mbuf::Mbuf>; 32] = Default::default();
            while payloads.len() < count as usize && !stop.load(Ordering::Relaxed) {
                let n = hybrid.rx_burst(rxq, &mut burst).unwrap();
                for m in burst[..n].iter_mut().filter_map(Option::take) {
                    payloads.extend(payload(&m));
                }
            }
            let (sleeps, wakeups) = (hybrid.sleeps(), hybrid.wakeups());
            (payloads, sleeps, wakeups, port)
        });
        for i in 0..count {
            std::thread::sleep(Duration::from_millis(30));
            send(i);
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let (payloads, sleeps, wakeups, port) = receiver.join().unwrap();
        assert_eq!(payloads, (0..count).map(|i| vec![i]).collect::<Vec<_>>());
        assert!(
            sleeps >= count as u64 / 2 && wakeups >= count as u64 / 2,
            "slept {sleeps}, woken {wakeups}"
        );
        port
    })
}

/// The value of `port`'s extended statistic `name`, or `None` if it has no such xstat.
pub fn xstat<D: Driver>(port: &Port<D>, name: &str) -> Option<u64> {
    port.xstats()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.value)
}

/// Checks that the driver's transmit drop reason `reason` (an xstat) follows the generic
/// `tx_errors` it breaks down: both carry on across the queues being set up again (stop, set
/// up with `ring` descriptors into `pool`, start), and a statistics reset zeroes both.
/// `send_bad` makes one transmit that the port refuses for `reason`. Leaves the port started.
pub fn assert_tx_drop_reason_follows_errors<D: Driver>(
    port: &mut Port<D>,
    pool: &PktMbufPool,
    ring: u16,
    reason: &str,
    mut send_bad: impl FnMut(&mut Port<D>),
) {
    let both = |port: &Port<D>| (xstat(port, "tx_errors"), xstat(port, reason));
    let start = both(port);
    assert_eq!(
        start,
        (Some(0), Some(0)),
        "a fresh port: tx_errors, {reason}"
    );
    send_bad(port);
    assert_eq!(both(port), (Some(1), Some(1)), "tx_errors, {reason}");
    port.stop().unwrap();
    port.rx_queue_setup(0, ring, pool, &RxQueueConfig::default())
        .unwrap();
    port.tx_queue_setup(0, ring, &TxQueueConfig::default())
        .unwrap();
    port.start().unwrap();
    assert_eq!(
        both(port),
        (Some(1), Some(1)),
        "set up again: {reason} stays with the error it explains"
    );
    send_bad(port);
    assert_eq!(both(port), (Some(2), Some(2)));
    port.stats_reset();
    assert_eq!(both(port), (Some(0), Some(0)), "a reset zeroes both");
    send_bad(port);
    assert_eq!(both(port), (Some(1), Some(1)));
}
