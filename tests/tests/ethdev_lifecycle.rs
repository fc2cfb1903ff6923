//! The port lifecycle through real drivers (`net_null`, `net_ring`): every wrong move gets its
//! exact error, the right ones work (including restarts), statistics are exact after known
//! traffic, and every mbuf is back in its pool at the end of every scenario.
//!
//! Pools live in `MockOs` memory: a pool's region is released only once every mbuf is back, so
//! `os.live_regions() == 0` after dropping everything proves nothing leaked.

use rdk_core::ethdev::Port;
use rdk_core::ethdev::{
    DescLimits, DevArgs, DevArgsError, DevInfo, Dir, Driver, EthError, LinkStatus, MacAddr,
    PortConfig, PortRegistry, PortState, QueueCounters, RssConfig, RssHashTypes, RxOffload,
    RxQueue, RxQueueConfig, TxOffload, TxQueue, TxQueueConfig, XStat,
};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_os_mock::MockOs;
use rdk_pmd_null::{NullDriver, NullRx, NullTx};
use rdk_pmd_ring::{PktRing, RingDriver};
use std::sync::{Arc, Mutex};

fn pool(os: &MockOs, n: usize) -> PktMbufPool {
    PktMbufPool::create(os, &PktMbufPoolConfig::new("lifecycle", n)).unwrap()
}

fn null() -> Port<NullDriver> {
    Port::new(0, NullDriver::new(64, false))
}

/// Configures `nrx`/`ntx` queues and sets all of them up.
fn set_up<D: Driver>(p: &mut Port<D>, pool: &PktMbufPool, nrx: u16, ntx: u16) {
    p.configure(&PortConfig::queues(nrx, ntx)).unwrap();
    for q in 0..nrx {
        p.rx_queue_setup(q, 256, pool, &RxQueueConfig::default())
            .unwrap();
    }
    for q in 0..ntx {
        p.tx_queue_setup(q, 256, &TxQueueConfig::default()).unwrap();
    }
}

/// Set up and started.
fn started<D: Driver>(d: D, pool: &PktMbufPool, nrx: u16, ntx: u16) -> Port<D> {
    let mut p = Port::new(0, d);
    set_up(&mut p, pool, nrx, ntx);
    p.start().unwrap();
    p
}

/// Drops the pool and checks its memory went back, which only happens when every mbuf did.
fn all_home(os: &MockOs, pool: PktMbufPool) {
    assert_eq!(pool.available(), pool.size(), "every mbuf back in the pool");
    drop(pool);
    assert_eq!(os.live_regions(), 0, "pool memory released");
}

fn wrong(op: &'static str, state: PortState, hint: &'static str) -> EthError {
    EthError::WrongState { op, state, hint }
}

/// `net_null` with stricter limits, so the checks its own generous limits never trigger can be
/// reached: descriptors 32..=1024 in steps of 8.
struct Strict(NullDriver);

const STRICT_DESC: DescLimits = DescLimits {
    min: 32,
    max: 1024,
    align: 8,
};

impl Driver for Strict {
    type Rx = NullRx;
    type Tx = NullTx;
    fn info(&self) -> DevInfo {
        DevInfo {
            rx_desc_lim: STRICT_DESC,
            tx_desc_lim: STRICT_DESC,
            ..self.0.info()
        }
    }
    fn configure(&mut self, c: &PortConfig) -> Result<(), EthError> {
        self.0.configure(c)
    }
    fn rx_queue_setup(
        &mut self,
        q: u16,
        n: u16,
        pool: &PktMbufPool,
        c: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<NullRx, EthError> {
        self.0.rx_queue_setup(q, n, pool, c, counters)
    }
    fn tx_queue_setup(
        &mut self,
        q: u16,
        n: u16,
        c: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<NullTx, EthError> {
        self.0.tx_queue_setup(q, n, c, counters)
    }
    fn start(&mut self, rx: &mut [NullRx], tx: &mut [NullTx]) -> Result<(), EthError> {
        self.0.start(rx, tx)
    }
    fn stop(&mut self, rx: &mut [NullRx], tx: &mut [NullTx]) -> Result<(), EthError> {
        self.0.stop(rx, tx)
    }
    fn link(&self) -> LinkStatus {
        self.0.link()
    }
    fn mac_addr(&self) -> MacAddr {
        self.0.mac_addr()
    }
}

// ---- wrong order ----

#[test]
fn queue_setup_before_configure() {
    let os = MockOs::new();
    let pool = pool(&os, 64);
    let mut p = null();
    let e = p
        .rx_queue_setup(0, 256, &pool, &RxQueueConfig::default())
        .unwrap_err();
    assert_eq!(
        e,
        wrong(
            "set up an rx queue",
            PortState::Unconfigured,
            "call configure first"
        )
    );
    assert_eq!(
        e.to_string(),
        "cannot set up an rx queue: the port is unconfigured; call configure first"
    );
    let e = p
        .tx_queue_setup(0, 256, &TxQueueConfig::default())
        .unwrap_err();
    assert_eq!(
        e,
        wrong(
            "set up a tx queue",
            PortState::Unconfigured,
            "call configure first"
        )
    );
    assert_eq!(p.state(), PortState::Unconfigured);
    drop(p);
    all_home(&os, pool);
}

#[test]
fn start_before_configure() {
    let mut p = null();
    let e = p.start().unwrap_err();
    assert_eq!(
        e,
        wrong(
            "start",
            PortState::Unconfigured,
            "configure and set up queues first"
        )
    );
    assert_eq!(
        e.to_string(),
        "cannot start: the port is unconfigured; configure and set up queues first"
    );
}

#[test]
fn start_with_a_queue_not_set_up() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = null();
    p.configure(&PortConfig::queues(2, 2)).unwrap();
    p.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default())
        .unwrap();
    let e = p.start().unwrap_err();
    assert_eq!(
        e,
        EthError::QueueNotSetUp {
            dir: Dir::Rx,
            queue: 1
        }
    );
    assert_eq!(
        e.to_string(),
        "rx queue 1 was configured but not set up; call rx_queue_setup before start"
    );
    p.rx_queue_setup(1, 256, &pool, &RxQueueConfig::default())
        .unwrap();
    p.tx_queue_setup(1, 256, &TxQueueConfig::default()).unwrap();
    assert_eq!(
        p.start().unwrap_err(),
        EthError::QueueNotSetUp {
            dir: Dir::Tx,
            queue: 0
        }
    );
    assert_eq!(
        p.state(),
        PortState::Configured,
        "a failed start changes nothing"
    );
    p.tx_queue_setup(0, 256, &TxQueueConfig::default()).unwrap();
    p.start().unwrap();
    drop(p);
    all_home(&os, pool);
}

#[test]
fn configure_and_queue_setup_while_started() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = started(NullDriver::new(64, false), &pool, 1, 1);
    let e = p.configure(&PortConfig::queues(1, 1)).unwrap_err();
    assert_eq!(
        e,
        wrong("configure", PortState::Started, "stop the port first")
    );
    assert_eq!(
        e.to_string(),
        "cannot configure: the port is started; stop the port first"
    );
    assert_eq!(
        p.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default()),
        Err(wrong(
            "set up an rx queue",
            PortState::Started,
            "stop the port first"
        ))
    );
    assert_eq!(
        p.tx_queue_setup(0, 256, &TxQueueConfig::default()),
        Err(wrong(
            "set up a tx queue",
            PortState::Started,
            "stop the port first"
        ))
    );
    assert_eq!(p.state(), PortState::Started);
    assert!(p.queues().is_ok(), "still running");
    drop(p);
    all_home(&os, pool);
}

#[test]
fn stop_when_not_started() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = null();
    let stop = |s| wrong("stop", s, "only a started port can be stopped");
    assert_eq!(p.stop(), Err(stop(PortState::Unconfigured)));
    set_up(&mut p, &pool, 1, 1);
    assert_eq!(p.stop(), Err(stop(PortState::Configured)));
    p.start().unwrap();
    p.stop().unwrap();
    let e = p.stop().unwrap_err();
    assert_eq!(e, stop(PortState::Stopped));
    assert_eq!(
        e.to_string(),
        "cannot stop: the port is stopped; only a started port can be stopped"
    );
    drop(p);
    all_home(&os, pool);
}

#[test]
fn start_twice() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = started(NullDriver::new(64, false), &pool, 1, 1);
    let e = p.start().unwrap_err();
    assert_eq!(
        e,
        wrong("start", PortState::Started, "it is already started")
    );
    assert_eq!(
        e.to_string(),
        "cannot start: the port is started; it is already started"
    );
    drop(p);
    all_home(&os, pool);
}

#[test]
fn close_twice_and_anything_after_close() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = started(NullDriver::new(64, false), &pool, 1, 1);
    p.close().unwrap();
    assert_eq!(p.state(), PortState::Closed);
    assert!(!p.link_update().up, "closing stopped the device");
    let closed = |op| wrong(op, PortState::Closed, "create a new port");
    let e = p.close().unwrap_err();
    assert_eq!(e, wrong("close", PortState::Closed, "it is already closed"));
    assert_eq!(
        e.to_string(),
        "cannot close: the port is closed; it is already closed"
    );
    let e = p.configure(&PortConfig::queues(1, 1)).unwrap_err();
    assert_eq!(e, closed("configure"));
    assert_eq!(
        e.to_string(),
        "cannot configure: the port is closed; create a new port"
    );
    assert_eq!(
        p.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default()),
        Err(closed("set up an rx queue"))
    );
    assert_eq!(
        p.tx_queue_setup(0, 256, &TxQueueConfig::default()),
        Err(closed("set up a tx queue"))
    );
    assert_eq!(p.start(), Err(closed("start")));
    assert_eq!(
        p.stop(),
        Err(wrong(
            "stop",
            PortState::Closed,
            "only a started port can be stopped"
        ))
    );
    assert_eq!(
        p.queues().err(),
        Some(wrong(
            "burst",
            PortState::Closed,
            "start the port before bursting"
        ))
    );
    assert_eq!(
        p.set_mac_addr(MacAddr([2, 0, 0, 0, 0, 1])),
        Err(closed("set the MAC address"))
    );
    assert_eq!(p.set_mtu(1500), Err(closed("set the MTU")));
    assert_eq!(
        p.set_promiscuous(true),
        Err(closed("change promiscuous mode"))
    );
    assert_eq!(
        p.set_allmulticast(true),
        Err(closed("change all-multicast mode"))
    );
    // The queues and their caches went with the close.
    all_home(&os, pool);
    drop(p);
}

#[test]
fn closing_an_unused_port_is_fine_once() {
    let mut p = null();
    p.close().unwrap();
    assert_eq!(
        p.close(),
        Err(wrong("close", PortState::Closed, "it is already closed"))
    );
}

#[test]
fn queues_only_from_a_started_port() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = null();
    let burst = |s| wrong("burst", s, "start the port before bursting");
    assert_eq!(p.queues().err(), Some(burst(PortState::Unconfigured)));
    set_up(&mut p, &pool, 1, 1);
    let e = p.queues().err().unwrap();
    assert_eq!(e, burst(PortState::Configured));
    assert_eq!(
        e.to_string(),
        "cannot burst: the port is configured; start the port before bursting"
    );
    p.start().unwrap();
    assert_eq!(
        p.queues().map(|q| (q.rx.len(), q.tx.len())).ok(),
        Some((1, 1))
    );
    p.stop().unwrap();
    assert_eq!(p.queues().err(), Some(burst(PortState::Stopped)));
    drop(p);
    all_home(&os, pool);
}

// ---- bad arguments ----

#[test]
fn queue_ids_out_of_range() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = null();
    p.configure(&PortConfig::queues(2, 3)).unwrap();
    let e = p
        .rx_queue_setup(2, 256, &pool, &RxQueueConfig::default())
        .unwrap_err();
    assert_eq!(
        e,
        EthError::QueueOutOfRange {
            dir: Dir::Rx,
            queue: 2,
            configured: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "rx queue 2 does not exist: the port was configured with 2 (ids 0..2)"
    );
    let e = p
        .tx_queue_setup(7, 256, &TxQueueConfig::default())
        .unwrap_err();
    assert_eq!(
        e,
        EthError::QueueOutOfRange {
            dir: Dir::Tx,
            queue: 7,
            configured: 3
        }
    );
    assert_eq!(
        e.to_string(),
        "tx queue 7 does not exist: the port was configured with 3 (ids 0..3)"
    );
    drop(p);
    all_home(&os, pool);
}

#[test]
fn descriptor_counts_outside_the_limits() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    // net_null's own limits: 1..=4096, any count.
    let mut p = null();
    p.configure(&PortConfig::queues(1, 1)).unwrap();
    let null_lim = |dir, nb_desc| EthError::DescOutOfRange {
        dir,
        nb_desc,
        min: 1,
        max: 4096,
        align: 1,
    };
    assert_eq!(
        p.rx_queue_setup(0, 0, &pool, &RxQueueConfig::default()),
        Err(null_lim(Dir::Rx, 0))
    );
    assert_eq!(
        p.tx_queue_setup(0, 4097, &TxQueueConfig::default()),
        Err(null_lim(Dir::Tx, 4097))
    );
    // Stricter limits: below min, above max, not a multiple.
    let mut p = Port::new(1, Strict(NullDriver::new(64, false)));
    p.configure(&PortConfig::queues(1, 1)).unwrap();
    let strict = |dir, nb_desc| EthError::DescOutOfRange {
        dir,
        nb_desc,
        min: 32,
        max: 1024,
        align: 8,
    };
    for n in [31, 1025, 100] {
        assert_eq!(
            p.rx_queue_setup(0, n, &pool, &RxQueueConfig::default()),
            Err(strict(Dir::Rx, n)),
            "rx {n}"
        );
        assert_eq!(
            p.tx_queue_setup(0, n, &TxQueueConfig::default()),
            Err(strict(Dir::Tx, n)),
            "tx {n}"
        );
    }
    assert_eq!(
        strict(Dir::Rx, 100).to_string(),
        "100 rx descriptors is outside the device's limits: 32..=1024, multiple of 8"
    );
    for n in [32, 104, 1024] {
        p.rx_queue_setup(0, n, &pool, &RxQueueConfig::default())
            .unwrap();
        p.tx_queue_setup(0, n, &TxQueueConfig::default()).unwrap();
    }
    p.start().unwrap();
    drop(p);
    all_home(&os, pool);
}

#[test]
fn offloads_the_device_lacks() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = null();
    // Port level.
    let mut cfg = PortConfig::queues(1, 1);
    cfg.rx_offloads = RxOffload::TCP_LRO;
    let e = p.configure(&cfg).unwrap_err();
    assert_eq!(
        e,
        EthError::RxOffloadUnsupported {
            missing: RxOffload::TCP_LRO
        }
    );
    assert!(
        e.to_string()
            .starts_with("rx offloads not supported by the device: ")
            && e.to_string().contains("TCP_LRO"),
        "{e}"
    );
    let mut cfg = PortConfig::queues(1, 1);
    cfg.tx_offloads = TxOffload::MULTI_SEGS | TxOffload::TCP_TSO;
    let e = p.configure(&cfg).unwrap_err();
    assert_eq!(
        e,
        EthError::TxOffloadUnsupported {
            missing: TxOffload::TCP_TSO
        },
        "only the missing one is named"
    );
    assert_eq!(p.state(), PortState::Unconfigured);
    // What it has is accepted.
    cfg.tx_offloads = TxOffload::MULTI_SEGS;
    p.configure(&cfg).unwrap();
    // Queue level.
    let rxc = RxQueueConfig {
        offloads: RxOffload::VLAN_STRIP,
        ..Default::default()
    };
    assert_eq!(
        p.rx_queue_setup(0, 256, &pool, &rxc),
        Err(EthError::RxOffloadUnsupported {
            missing: RxOffload::VLAN_STRIP
        })
    );
    let txc = TxQueueConfig {
        offloads: TxOffload::IPV4_CKSUM | TxOffload::MULTI_SEGS,
        ..Default::default()
    };
    let e = p.tx_queue_setup(0, 256, &txc).unwrap_err();
    assert_eq!(
        e,
        EthError::TxOffloadUnsupported {
            missing: TxOffload::IPV4_CKSUM
        }
    );
    assert!(e.to_string().contains("IPV4_CKSUM"), "{e}");
    // net_ring has SCATTER and MULTI_SEGS, and no RSS.
    let mut r = Port::new(1, RingDriver::loopback("off", 1, 7).unwrap());
    let mut cfg = PortConfig::queues(1, 1);
    cfg.rx_offloads = RxOffload::SCATTER;
    cfg.tx_offloads = TxOffload::MULTI_SEGS;
    r.configure(&cfg).unwrap();
    cfg.rss = Some(RssConfig {
        hash_types: RssHashTypes::IPV4,
        key: None,
    });
    assert_eq!(r.configure(&cfg), Err(EthError::RssUnsupported));
    p.configure(&cfg).unwrap_err(); // null has no SCATTER
    cfg.rx_offloads = RxOffload::empty();
    p.configure(&cfg)
        .expect("net_null accepts (and ignores) RSS");
    drop(p);
    all_home(&os, pool);
}

#[test]
fn mtu_out_of_range() {
    let mut p = null();
    let mut cfg = PortConfig::queues(1, 1);
    cfg.mtu = Some(67);
    let e = p.configure(&cfg).unwrap_err();
    assert_eq!(
        e,
        EthError::MtuOutOfRange {
            mtu: 67,
            min: 68,
            max: 9600
        }
    );
    assert_eq!(
        e.to_string(),
        "MTU 67 is outside the device's range 68..=9600"
    );
    cfg.mtu = Some(9600);
    p.configure(&cfg).unwrap();
    assert_eq!(
        p.set_mtu(9601),
        Err(EthError::MtuOutOfRange {
            mtu: 9601,
            min: 68,
            max: 9600
        })
    );
    p.set_mtu(1500).unwrap();
    assert_eq!(p.config().mtu, Some(1500));
}

#[test]
fn bad_mac_addresses() {
    let mut p = null();
    for bad in [[0x01, 0, 0x5e, 0, 0, 1], [0; 6], [0xff; 6]] {
        let e = p.set_mac_addr(MacAddr(bad)).unwrap_err();
        assert_eq!(e, EthError::BadMac, "{bad:x?}");
        assert_eq!(
            e.to_string(),
            "MAC address is multicast or all zero; use a unicast station address"
        );
    }
    let before = p.mac_addr();
    assert!(before.is_valid_unicast());
    let mac = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    p.set_mac_addr(mac).unwrap();
    assert_eq!(p.mac_addr(), mac);
    assert_eq!(mac.to_string(), "02:11:22:33:44:55");
}

#[test]
fn too_many_queues() {
    let mut p = null();
    let e = p.configure(&PortConfig::queues(17, 1)).unwrap_err();
    assert_eq!(
        e,
        EthError::TooManyQueues {
            dir: Dir::Rx,
            requested: 17,
            max: 16
        }
    );
    assert_eq!(
        e.to_string(),
        "17 rx queues requested but the device has at most 16"
    );
    assert_eq!(
        p.configure(&PortConfig::queues(1, 20)),
        Err(EthError::TooManyQueues {
            dir: Dir::Tx,
            requested: 20,
            max: 16
        })
    );
    p.configure(&PortConfig::queues(16, 16)).unwrap();
    let mut r = Port::new(0, RingDriver::from_rings("two", Vec::new(), Vec::new()));
    assert_eq!(
        r.configure(&PortConfig::queues(1, 0)),
        Err(EthError::TooManyQueues {
            dir: Dir::Rx,
            requested: 1,
            max: 0
        }),
        "a ring port has as many queues as rings"
    );
}

// ---- device arguments ----

/// What a registry of both drivers stores.
enum AnyPort {
    Null(Port<NullDriver>),
    Ring(Port<RingDriver>),
}

fn registry() -> PortRegistry<AnyPort> {
    let mut r = PortRegistry::new();
    r.register_driver(
        "net_null",
        Box::new(|id, a: &DevArgs| Ok(AnyPort::Null(Port::new(id, NullDriver::from_devargs(a)?)))),
    );
    r.register_driver(
        "net_ring",
        Box::new(|id, a: &DevArgs| Ok(AnyPort::Ring(Port::new(id, RingDriver::from_devargs(a)?)))),
    );
    r
}

#[test]
fn devargs_create_ports_of_each_driver() {
    let mut r = registry();
    assert_eq!(r.create("net_null0,size=128,copy=1").unwrap(), 0);
    assert_eq!(r.create("net_ring0").unwrap(), 1);
    assert_eq!(r.create("net_null1").unwrap(), 2);
    match r.get(0) {
        Some(AnyPort::Null(p)) => {
            assert_eq!((p.driver().size(), p.driver().copy()), (128, true));
            assert_eq!(p.id(), 0);
            assert_eq!(p.info().driver_name, "net_null");
        }
        _ => panic!("port 0 is net_null"),
    }
    match r.get(1) {
        Some(AnyPort::Ring(p)) => {
            assert_eq!(p.driver().name(), "net_ring0");
            assert_eq!(p.info().max_rx_queues, 16);
        }
        _ => panic!("port 1 is net_ring"),
    }
    assert_eq!(r.name(2), Some("net_null1"));
    assert_eq!(
        r.create("net_null1,size=60"),
        Err(DevArgsError::DuplicateName {
            name: "net_null1".into()
        })
    );
}

#[test]
fn unknown_devargs_keys_name_the_key_and_the_accepted_ones() {
    let mut r = registry();
    let e = r.create("net_null0,size=64,sise=64").unwrap_err();
    assert_eq!(
        e,
        DevArgsError::UnknownKey {
            driver: "net_null".into(),
            key: "sise".into(),
            accepted: &["size", "copy", "no-rx"],
        }
    );
    assert_eq!(
        e.to_string(),
        "net_null does not accept 'sise'; accepted keys: size, copy, no-rx"
    );
    let e = r.create("net_ring0,nodeaction=r0:0:CREATE").unwrap_err();
    assert_eq!(
        e.to_string(),
        "net_ring does not accept 'nodeaction'; accepted keys: none"
    );
    let e = r.create("net_null0,size=huge").unwrap_err();
    assert_eq!(
        e,
        DevArgsError::BadValue {
            key: "size".into(),
            value: "huge".into(),
            expected: "a packet size in bytes, 0..=65535",
        }
    );
    assert_eq!(
        e.to_string(),
        "bad value 'huge' for 'size': expected a packet size in bytes, 0..=65535"
    );
    assert!(r.is_empty(), "nothing was created");
}

#[test]
fn unknown_driver() {
    let mut r = registry();
    let e = r.create("net_tap0,iface=x").unwrap_err();
    assert_eq!(
        e,
        DevArgsError::UnknownDriver {
            driver: "net_tap".into(),
            known: vec!["net_null", "net_ring"],
        }
    );
    assert_eq!(
        e.to_string(),
        "no driver named 'net_tap'; known drivers: net_null, net_ring"
    );
}

// ---- what works ----

/// Receives exactly `n` packets on `rx` and sends each burst on `tx`; returns how many `tx`
/// took.
fn forward<R: RxQueue, T: TxQueue>(rx: &mut R, tx: &mut T, n: usize) -> usize {
    let mut burst: [Option<Mbuf>; 32] = Default::default();
    let (mut got, mut sent) = (0, 0);
    while got < n {
        let want = (n - got).min(32);
        let k = rx.rx_burst(&mut burst[..want]);
        assert!(k > 0, "the source ran dry after {got}");
        got += k;
        sent += tx.tx_burst(&mut burst[..k]);
    }
    sent
}

#[test]
fn restart_after_stop_with_and_without_re_setup() {
    let os = MockOs::new();
    let pool = pool(&os, 512);
    let mut p = started(NullDriver::new(100, false), &pool, 1, 1);
    assert!(p.link().up);
    let q = p.queues().unwrap();
    assert_eq!(forward(&mut q.rx[0], &mut q.tx[0], 100), 100);
    p.stop().unwrap();
    assert!(!p.link_update().up, "link down after stop");
    // Restart as it was.
    p.start().unwrap();
    let q = p.queues().unwrap();
    assert_eq!(forward(&mut q.rx[0], &mut q.tx[0], 100), 100);
    p.stop().unwrap();
    // Restart with one queue replaced (the old one's cache goes back to the pool).
    p.rx_queue_setup(0, 128, &pool, &RxQueueConfig::default())
        .unwrap();
    p.start().unwrap();
    let q = p.queues().unwrap();
    assert_eq!(forward(&mut q.rx[0], &mut q.tx[0], 100), 100);
    let s = p.stats();
    assert_eq!(
        (s.ipackets, s.opackets),
        (300, 300),
        "counters survive restarts"
    );
    // Reconfiguring starts the counters afresh and needs new queues.
    p.stop().unwrap();
    p.configure(&PortConfig::queues(1, 2)).unwrap();
    assert_eq!(p.stats().ipackets, 0);
    assert_eq!(
        p.start(),
        Err(EthError::QueueNotSetUp {
            dir: Dir::Rx,
            queue: 0
        })
    );
    set_up(&mut p, &pool, 1, 2);
    p.start().unwrap();
    drop(p);
    all_home(&os, pool);
}

#[test]
fn link_changes_reach_callbacks() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let seen: Arc<Mutex<Vec<(u16, bool)>>> = Arc::default();
    let mut p = Port::new(5, NullDriver::new(64, false));
    let log = seen.clone();
    p.on_link_change(Box::new(move |id, l| log.lock().unwrap().push((id, l.up))));
    assert!(!p.link().up);
    set_up(&mut p, &pool, 1, 1);
    p.start().unwrap();
    assert_eq!(
        p.link(),
        LinkStatus {
            up: true,
            speed_mbps: 10_000,
            full_duplex: true
        }
    );
    assert_eq!(p.link().to_string(), "up, 10000 Mbps, full-duplex");
    p.stop().unwrap();
    assert!(!p.link().up, "stop reports the link down, as DPDK does");
    assert_eq!(*seen.lock().unwrap(), [(5, true), (5, false)]);
    p.set_promiscuous(true).unwrap();
    p.set_allmulticast(true).unwrap();
    assert!(p.promiscuous() && p.allmulticast());
    drop(p);
    all_home(&os, pool);
}

// ---- statistics ----

const N: usize = 1000;
const S: u16 = 100;

fn names(x: &[XStat]) -> Vec<&str> {
    x.iter().map(|s| s.name.as_str()).collect()
}

fn xstat(x: &[XStat], name: &str) -> u64 {
    x.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .value
}

#[test]
fn exact_stats_through_null() {
    let os = MockOs::new();
    let pool = pool(&os, 1024);
    let mut p = started(NullDriver::new(S, false), &pool, 2, 2);
    let q = p.queues().unwrap();
    // 600 in on queue 0 and out on queue 1; 400 in on queue 1 and out on queue 0.
    assert_eq!(forward(&mut q.rx[0], &mut q.tx[1], 600), 600);
    let (rx, tx) = (&mut q.rx[1], &mut q.tx[0]);
    assert_eq!(forward(rx, tx, N - 600), N - 600);
    let s = p.stats();
    let n = N as u64;
    let bytes = n * S as u64;
    assert_eq!(
        (s.ipackets, s.opackets, s.ibytes, s.obytes),
        (n, n, bytes, bytes)
    );
    assert_eq!((s.imissed, s.ierrors, s.oerrors, s.rx_nombuf), (0, 0, 0, 0));
    let per_queue: Vec<(u64, u64)> = s.rx_queues.iter().map(|q| (q.packets, q.bytes)).collect();
    assert_eq!(per_queue, [(600, 60_000), (400, 40_000)]);
    let per_queue: Vec<(u64, u64)> = s.tx_queues.iter().map(|q| (q.packets, q.bytes)).collect();
    assert_eq!(per_queue, [(400, 40_000), (600, 60_000)]);
    let x = p.xstats();
    assert_eq!(
        names(&x),
        [
            "rx_good_packets",
            "tx_good_packets",
            "rx_good_bytes",
            "tx_good_bytes",
            "rx_missed_errors",
            "rx_errors",
            "tx_errors",
            "rx_mbuf_allocation_errors",
            "rx_q0_packets",
            "rx_q0_bytes",
            "rx_q0_errors",
            "rx_q1_packets",
            "rx_q1_bytes",
            "rx_q1_errors",
            "tx_q0_packets",
            "tx_q0_bytes",
            "tx_q1_packets",
            "tx_q1_bytes",
        ]
    );
    assert_eq!(xstat(&x, "rx_good_bytes"), bytes);
    assert_eq!(xstat(&x, "tx_q1_packets"), 600);
    assert_eq!(xstat(&x, "rx_q1_bytes"), 40_000);
    // A reader taken now sees later traffic and resets.
    let reader = p.stats_reader();
    p.stats_reset();
    assert_eq!(p.stats().ipackets, 0);
    assert!(p.xstats().iter().all(|s| s.value == 0));
    let q = p.queues().unwrap();
    assert_eq!(forward(&mut q.rx[0], &mut q.tx[0], 10), 10);
    assert_eq!(reader.stats().obytes, 10 * S as u64);
    reader.reset();
    assert_eq!(
        p.stats(),
        rdk_core::ethdev::PortStats {
            rx_queues: vec![Default::default(); 2],
            tx_queues: vec![Default::default(); 2],
            ..Default::default()
        }
    );
    drop(p);
    all_home(&os, pool);
}

#[test]
fn nombuf_when_the_pool_runs_dry() {
    let os = MockOs::new();
    let pool = pool(&os, 100);
    let mut p = started(NullDriver::new(64, false), &pool, 1, 1);
    let q = p.queues().unwrap();
    let mut held: Vec<[Option<Mbuf>; 32]> = Vec::new();
    let mut got = 0;
    for _ in 0..4 {
        let mut b: [Option<Mbuf>; 32] = Default::default();
        got += q.rx[0].rx_burst(&mut b);
        held.push(b);
    }
    assert_eq!(got, 100);
    let s = p.stats();
    assert_eq!((s.ipackets, s.rx_nombuf), (100, 28));
    assert_eq!(xstat(&p.xstats(), "rx_mbuf_allocation_errors"), 28);
    drop(held);
    drop(p);
    all_home(&os, pool);
}

/// Packet `i` of a test stream: `len` bytes, the first four the sequence number.
fn numbered(pool: &PktMbufPool, i: u32, len: u16) -> Mbuf {
    let mut m = pool.alloc().unwrap();
    let d = m.append(len).unwrap();
    for (j, b) in d.iter_mut().enumerate() {
        *b = (i as usize * 7 + j) as u8;
    }
    d[..4].copy_from_slice(&i.to_le_bytes());
    m
}

fn check_numbered(m: &Mbuf, i: u32, len: u16) {
    assert_eq!(m.pkt_len(), len as u32, "packet {i}");
    let d = m.data();
    assert_eq!(d[..4], i.to_le_bytes(), "packet {i} out of order");
    assert!(
        d.iter()
            .enumerate()
            .skip(4)
            .all(|(j, &b)| b == (i as usize * 7 + j) as u8),
        "packet {i} corrupted"
    );
}

/// Sends `N` numbered packets of varying sizes from `from` to `to` on queue `queue`, checking
/// each arrives in order and intact.
fn send_numbered(
    from: &mut Port<RingDriver>,
    to: &mut Port<RingDriver>,
    queue: usize,
    pool: &PktMbufPool,
) {
    let len = |i: u32| 60 + (i % 1400) as u16;
    let (qf, qt) = (from.queues().unwrap(), to.queues().unwrap());
    let mut burst: [Option<Mbuf>; 32] = Default::default();
    let mut out: [Option<Mbuf>; 32] = Default::default();
    let mut next_rx = 0u32;
    for start in (0..N as u32).step_by(32) {
        let k = (N as u32 - start).min(32) as usize;
        for (j, slot) in burst[..k].iter_mut().enumerate() {
            let i = start + j as u32;
            *slot = Some(numbered(pool, i, len(i)));
        }
        assert_eq!(qf.tx[queue].tx_burst(&mut burst[..k]), k);
        let got = qt.rx[queue].rx_burst(&mut out);
        assert_eq!(got, k);
        for m in out[..got].iter().flatten() {
            check_numbered(m, next_rx, len(next_rx));
            next_rx += 1;
        }
        Mbuf::free_bulk(&mut out);
    }
    assert_eq!(next_rx, N as u32);
}

#[test]
fn ring_pair_is_byte_exact_both_ways_and_counts_packets() {
    let os = MockOs::new();
    let pool = pool(&os, 512);
    let (a, b) = RingDriver::pair();
    let mut a = started(a, &pool, 2, 2);
    let mut b = started(b, &pool, 2, 2);
    send_numbered(&mut a, &mut b, 0, &pool);
    send_numbered(&mut b, &mut a, 1, &pool);
    let n = N as u64;
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        (sa.opackets, sa.ipackets, sb.ipackets, sb.opackets),
        (n, n, n, n)
    );
    assert_eq!(
        (sa.obytes, sb.ibytes),
        (0, 0),
        "net_ring counts packets only"
    );
    assert_eq!((sa.tx_queues[0].packets, sa.tx_queues[1].packets), (n, 0));
    assert_eq!((sb.rx_queues[0].packets, sb.rx_queues[1].packets), (n, 0));
    assert_eq!(sa.rx_queues[1].packets, n);
    drop((a, b));
    all_home(&os, pool);
}

#[test]
fn a_full_ring_leaves_packets_with_the_caller() {
    let os = MockOs::new();
    let pool = pool(&os, 64);
    let mut p = started(RingDriver::loopback("full", 1, 15).unwrap(), &pool, 1, 1);
    let q = p.queues().unwrap();
    let mut burst: [Option<Mbuf>; 20] = Default::default();
    assert!(pool.alloc_bulk(&mut burst));
    assert_eq!(q.tx[0].tx_burst(&mut burst), 15);
    assert!(burst[15..].iter().all(Option::is_some));
    assert_eq!(q.tx[0].tx_burst(&mut burst[15..]), 0);
    let s = p.stats();
    assert_eq!((s.opackets, s.oerrors), (15, 0));
    drop(burst);
    drop(p);
    all_home(&os, pool);
}

#[test]
fn a_ring_port_dropped_with_packets_in_its_rings_frees_them() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = started(RingDriver::loopback("drop", 4, 63).unwrap(), &pool, 4, 4);
    let q = p.queues().unwrap();
    for tx in q.tx.iter_mut() {
        let mut burst: [Option<Mbuf>; 50] = [const { None }; 50];
        assert!(pool.alloc_bulk(&mut burst));
        assert_eq!(tx.tx_burst(&mut burst), 50);
    }
    assert_eq!(pool.available() + pool.in_caches(), 56);
    drop(p);
    all_home(&os, pool);
}

#[test]
fn a_ring_pair_half_dropped_keeps_the_shared_rings_until_the_other_goes() {
    let os = MockOs::new();
    let pool = pool(&os, 64);
    let (a, b) = RingDriver::pair_with("a", "b", 1, 63).unwrap();
    let mut a = started(a, &pool, 1, 1);
    let b = started(b, &pool, 1, 1);
    let mut burst: [Option<Mbuf>; 40] = [const { None }; 40];
    assert!(pool.alloc_bulk(&mut burst));
    assert_eq!(a.queues().unwrap().tx[0].tx_burst(&mut burst), 40);
    drop(a);
    assert_eq!(pool.available(), 24, "b still holds the ring a sent into");
    drop(b);
    all_home(&os, pool);
}

#[test]
fn application_rings_feed_and_drain_a_port() {
    let os = MockOs::new();
    let pool = pool(&os, 128);
    let (rx_ring, tx_ring) = (
        PktRing::new("in", 63).unwrap(),
        PktRing::new("out", 63).unwrap(),
    );
    let mut feed = rx_ring.producer().unwrap();
    let mut drain = tx_ring.consumer().unwrap();
    let d = RingDriver::from_rings("app", vec![rx_ring], vec![tx_ring]);
    let mut p = started(d, &pool, 1, 1);
    let mut burst: Vec<Option<Mbuf>> = (0..40).map(|i| Some(numbered(&pool, i, 64))).collect();
    assert_eq!(feed.enqueue_burst(&mut burst), 40);
    let q = p.queues().unwrap();
    assert_eq!(forward(&mut q.rx[0], &mut q.tx[0], 40), 40);
    let mut out: Vec<Option<Mbuf>> = (0..64).map(|_| None).collect();
    assert_eq!(drain.dequeue_burst(&mut out), 40);
    for (i, m) in out.iter().flatten().enumerate() {
        check_numbered(m, i as u32, 64);
    }
    drop((out, feed, drain, p));
    all_home(&os, pool);
}

#[test]
fn ring_pair_across_threads() {
    let os = MockOs::new();
    let pool = pool(&os, 2048);
    let (a, b) = RingDriver::pair_with("ta", "tb", 1, 1023).unwrap();
    let mut a = started(a, &pool, 1, 1);
    let mut b = started(b, &pool, 1, 1);
    let total: u32 = if cfg!(miri) { 1000 } else { 200_000 };
    std::thread::scope(|s| {
        let qa = a.queues().unwrap();
        let qb = b.queues().unwrap();
        let tx = &mut qa.tx[0];
        let rx = &mut qb.rx[0];
        let pool = &pool;
        s.spawn(move || {
            let mut burst: [Option<Mbuf>; 32] = Default::default();
            let mut i = 0u32;
            while i < total {
                let k = (total - i).min(32) as usize;
                for slot in burst[..k].iter_mut().filter(|s| s.is_none()) {
                    *slot = Some(numbered(pool, i, 64));
                    i += 1;
                }
                let mut off = 0;
                while off < k {
                    off += tx.tx_burst(&mut burst[off..k]);
                }
            }
        });
        s.spawn(move || {
            let mut out: [Option<Mbuf>; 32] = Default::default();
            let mut next = 0u32;
            while next < total {
                let n = rx.rx_burst(&mut out);
                for m in out[..n].iter().flatten() {
                    check_numbered(m, next, 64);
                    next += 1;
                }
                Mbuf::free_bulk(&mut out[..n]);
            }
        });
    });
    assert_eq!(a.stats().opackets, total as u64);
    assert_eq!(b.stats().ipackets, total as u64);
    drop((a, b));
    all_home(&os, pool);
}

#[test]
fn null_ports_forward_into_each_other_like_testpmd_io() {
    let os = MockOs::new();
    let pool = pool(&os, 4096);
    let mut a = started(NullDriver::new(64, true), &pool, 1, 1);
    let mut b = started(NullDriver::new(64, false), &pool, 1, 1);
    let (qa, qb) = (a.queues().unwrap(), b.queues().unwrap());
    for _ in 0..100 {
        assert_eq!(forward(&mut qa.rx[0], &mut qb.tx[0], 32), 32);
        assert_eq!(forward(&mut qb.rx[0], &mut qa.tx[0], 32), 32);
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        (sa.ipackets, sa.opackets, sb.ipackets, sb.opackets),
        (3200, 3200, 3200, 3200)
    );
    assert_eq!(sa.obytes, 3200 * 64);
    drop((a, b));
    all_home(&os, pool);
}

/// A driver whose `n`-th start or configure fails (0: none), counted from 1: `net_ring`'s
/// first start failing as a TAP's does when its interface cannot be brought up, `net_null`'s
/// second configure failing as a TAP's does when its interface vanished, after it may have
/// applied part of the new configuration.
struct Faulty<D> {
    inner: D,
    fail_start: u32,
    fail_configure: u32,
    starts: u32,
    configures: u32,
}

impl<D> Faulty<D> {
    fn new(inner: D, fail_start: u32, fail_configure: u32) -> Self {
        Faulty {
            inner,
            fail_start,
            fail_configure,
            starts: 0,
            configures: 0,
        }
    }
}

impl<D: Driver> Driver for Faulty<D> {
    type Rx = D::Rx;
    type Tx = D::Tx;
    fn info(&self) -> DevInfo {
        self.inner.info()
    }
    fn configure(&mut self, c: &PortConfig) -> Result<(), EthError> {
        self.configures += 1;
        if self.configures == self.fail_configure {
            return Err(EthError::NotSupported { op: "configure" });
        }
        self.inner.configure(c)
    }
    fn rx_queue_setup(
        &mut self,
        q: u16,
        n: u16,
        pool: &PktMbufPool,
        c: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<Self::Rx, EthError> {
        self.inner.rx_queue_setup(q, n, pool, c, counters)
    }
    fn tx_queue_setup(
        &mut self,
        q: u16,
        n: u16,
        c: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<Self::Tx, EthError> {
        self.inner.tx_queue_setup(q, n, c, counters)
    }
    fn start(&mut self, rx: &mut [Self::Rx], tx: &mut [Self::Tx]) -> Result<(), EthError> {
        self.starts += 1;
        if self.starts == self.fail_start {
            return Err(EthError::NotSupported { op: "start" });
        }
        self.inner.start(rx, tx)
    }
    fn stop(&mut self, rx: &mut [Self::Rx], tx: &mut [Self::Tx]) -> Result<(), EthError> {
        self.inner.stop(rx, tx)
    }
    fn link(&self) -> LinkStatus {
        self.inner.link()
    }
    fn mac_addr(&self) -> MacAddr {
        self.inner.mac_addr()
    }
}

#[test]
fn a_queue_set_up_again_after_a_failed_start_is_the_one_that_runs() {
    let os = MockOs::new();
    let pool = pool(&os, 64);
    let d = Faulty::new(RingDriver::loopback("fs", 1, 15).unwrap(), 1, 0);
    let mut p = Port::new(0, d);
    set_up(&mut p, &pool, 1, 1);
    assert!(p.start().is_err());
    assert_eq!(p.state(), PortState::Configured);
    // Setting the queues up again (say, with another pool) replaces the earlier ones: their
    // ring ends are free again.
    p.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default())
        .expect("rx queue set up again after a failed start");
    p.tx_queue_setup(0, 256, &TxQueueConfig::default())
        .expect("tx queue set up again after a failed start");
    p.start().unwrap();
    let q = p.queues().unwrap();
    let mut burst: [Option<Mbuf>; 4] = Default::default();
    assert!(pool.alloc_bulk(&mut burst));
    assert_eq!(q.tx[0].tx_burst(&mut burst), 4);
    assert_eq!(q.rx[0].rx_burst(&mut burst), 4);
    drop(burst);
    drop(p);
    all_home(&os, pool);
}

#[test]
fn a_port_whose_driver_failed_to_configure_must_be_configured_again() {
    let os = MockOs::new();
    let pool = pool(&os, 256);
    let mut p = started(Faulty::new(NullDriver::new(64, false), 0, 2), &pool, 1, 1);
    p.stop().unwrap();
    // The driver failed half-way: neither the old configuration nor the new one holds. As in
    // DPDK (dev_configured stays 0 until a configure succeeds), the port is unconfigured, and
    // neither its old queues nor a start can be used.
    assert!(p.configure(&PortConfig::queues(2, 2)).is_err());
    assert_eq!(p.state(), PortState::Unconfigured);
    assert_eq!(
        p.start().unwrap_err(),
        wrong(
            "start",
            PortState::Unconfigured,
            "configure and set up queues first"
        )
    );
    assert_eq!(
        p.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default())
            .unwrap_err(),
        wrong(
            "set up an rx queue",
            PortState::Unconfigured,
            "call configure first"
        )
    );
    // A configure that validates but fails before reaching the driver changes nothing.
    set_up(&mut p, &pool, 1, 1);
    let e = p.configure(&PortConfig::queues(9999, 1)).unwrap_err();
    assert!(matches!(e, EthError::TooManyQueues { .. }), "{e}");
    assert_eq!(p.state(), PortState::Configured);
    p.start().unwrap();
    drop(p);
    all_home(&os, pool);
}
