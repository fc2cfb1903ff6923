//! RX-queue interrupts end to end on Linux: a `net_ring` port whose receive queues have
//! eventfds, a receiver thread that sleeps in [`HybridRx`] and wakes when the peer port sends.

use rdk_core::ethdev::{
    EthError, Port, PortConfig, RxQueue, RxQueueConfig, TxQueue, TxQueueConfig,
};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_core::os::EventNotifier;
use rdk_os_linux::intr::{HybridRx, RxIntrWaiter};
use rdk_os_linux::{EventFd, LinuxOs};
use rdk_pmd_ring::RingDriver;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn with_events(d: RingDriver) -> RingDriver {
    d.with_rx_events(|| Ok(Box::new(EventFd::new()?) as Box<dyn EventNotifier>))
}

fn start(d: RingDriver, pool: &PktMbufPool) -> Port<RingDriver> {
    let mut p = Port::new(0, d);
    p.configure(&PortConfig::queues(1, 1)).unwrap();
    p.rx_queue_setup(0, 256, pool, &RxQueueConfig::default())
        .unwrap();
    p.tx_queue_setup(0, 256, &TxQueueConfig::default()).unwrap();
    p.start().unwrap();
    p
}

#[test]
fn queues_without_events_say_so() {
    let os = LinuxOs::plain();
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("nointr", 64)).unwrap();
    let (a, _b) = RingDriver::pair();
    let mut a = start(a, &pool);
    let q = a.queues().unwrap();
    assert!(q.rx[0].intr_handle().is_none());
    assert!(matches!(
        q.rx[0].intr_enable(),
        Err(EthError::NotSupported { .. })
    ));
}

#[test]
fn enable_with_packets_waiting_wakes_at_once_and_disable_acks() {
    let os = LinuxOs::plain();
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("intr1", 64)).unwrap();
    let (a, b) = RingDriver::pair();
    let (mut a, mut b) = (start(with_events(a), &pool), start(b, &pool));
    let mut waiter = RxIntrWaiter::new().unwrap();
    let handle = a.queues().unwrap().rx[0].intr_handle().unwrap();
    waiter.add(handle, 7).unwrap();
    let mut ready = Vec::new();
    // Armed and idle: nothing wakes.
    a.queues().unwrap().rx[0].intr_enable().unwrap();
    assert_eq!(
        waiter
            .wait(Some(Duration::from_millis(20)), &mut ready)
            .unwrap(),
        0
    );
    // The peer sends: one wake-up for the whole run of bursts.
    for _ in 0..3 {
        let mut pkts = [pool.alloc()];
        assert_eq!(b.queues().unwrap().tx[0].tx_burst(&mut pkts), 1);
    }
    assert_eq!(
        waiter
            .wait(Some(Duration::from_secs(5)), &mut ready)
            .unwrap(),
        1
    );
    assert_eq!(ready, [7]);
    a.queues().unwrap().rx[0].intr_disable().unwrap();
    ready.clear();
    assert_eq!(
        waiter.wait(Some(Duration::ZERO), &mut ready).unwrap(),
        0,
        "acked"
    );
    // Enabling while packets wait signals immediately, so nobody sleeps on a full ring.
    a.queues().unwrap().rx[0].intr_enable().unwrap();
    assert_eq!(waiter.wait(Some(Duration::ZERO), &mut ready).unwrap(), 1);
    a.queues().unwrap().rx[0].intr_disable().unwrap();
    let mut out: [Option<Mbuf>; 8] = Default::default();
    assert_eq!(a.queues().unwrap().rx[0].rx_burst(&mut out), 3);
    drop(out);
    drop((a, b));
    assert_eq!(pool.available(), pool.size());
}

/// A receiver sleeps between sparse bursts, is woken by the interrupt (not the timeout), and
/// still gets every packet.
#[test]
fn hybrid_receiver_sleeps_when_idle_and_wakes_on_traffic() {
    const BURSTS: u64 = 50;
    let os = LinuxOs::plain();
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("intr2", 512)).unwrap();
    let (a, b) = RingDriver::pair();
    let (mut a, mut b) = (start(with_events(a), &pool), start(b, &pool));
    let received = Arc::new(AtomicU64::new(0));
    let got = received.clone();
    let rx_pool = pool.clone();
    let receiver = std::thread::spawn(move || {
        let q = a.queues().unwrap();
        let rxq = &mut q.rx[0];
        let mut hybrid = HybridRx::new(rxq, 16, Duration::from_secs(5)).unwrap();
        let mut out: [Option<Mbuf>; 32] = Default::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.load(Ordering::SeqCst) < BURSTS * 4 && Instant::now() < deadline {
            let n = hybrid.rx_burst(rxq, &mut out).unwrap();
            got.fetch_add(n as u64, Ordering::SeqCst);
        }
        drop(out);
        let (sleeps, wakeups) = (hybrid.sleeps(), hybrid.wakeups());
        drop(a);
        drop(rx_pool);
        (sleeps, wakeups)
    });
    for _ in 0..BURSTS {
        // Sparse: long enough for the receiver to give up polling and sleep.
        std::thread::sleep(Duration::from_millis(2));
        let mut pkts = [pool.alloc(), pool.alloc(), pool.alloc(), pool.alloc()];
        assert_eq!(b.queues().unwrap().tx[0].tx_burst(&mut pkts), 4);
    }
    let (sleeps, wakeups) = receiver.join().unwrap();
    assert_eq!(
        received.load(Ordering::SeqCst),
        BURSTS * 4,
        "every packet received"
    );
    assert!(sleeps >= BURSTS / 2, "it slept between bursts ({sleeps})");
    assert!(
        wakeups >= BURSTS / 2,
        "woken by the interrupt, not the timeout ({wakeups})"
    );
    drop(b);
    assert_eq!(pool.available(), pool.size());
}
