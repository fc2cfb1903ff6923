//! The `net_ring` device: which rings a port's queues use, and its lifecycle.

use crate::queue::{RingRx, RingTx};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use rdk_core::ethdev::{
    DescLimits, DevArgs, DevArgsError, DevInfo, DeviceReason, Driver, EthError, LinkStatus,
    MacAddr, PortConfig, QueueCounters, RssHashTypes, RxOffload, RxQueueConfig, TxOffload,
    TxQueueConfig,
};
use rdk_core::mbuf::PktMbufPool;
use rdk_core::os::{EventError, EventNotifier};
use rdk_core::pktring::PktRing;
use rdk_core::ring::RingError;

impl fmt::Debug for RingDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingDriver")
            .field("name", &self.name)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("mac", &self.mac)
            .field("started", &self.started)
            .field("rx_events", &self.rx_events.is_some())
            .finish()
    }
}

/// Queues (and so rings) of a port made from device arguments or by [`RingDriver::pair`]
/// (DPDK's `RTE_PMD_RING_MAX_RX_RINGS`).
pub const MAX_QUEUES: u16 = 16;

/// Packets each ring made by the driver holds: a ring of 1024 slots (DPDK's `net_ring`
/// creates `rte_ring_create(name, 1024, …)`, which holds 1023).
pub const RING_CAPACITY: usize = 1023;

/// The device arguments `net_ring` accepts: none (see the crate documentation for DPDK's
/// `nodeaction` and what replaces it).
pub const DEVARGS_KEYS: &[&str] = &[];

/// Link speed reported while started (DPDK's `RTE_ETH_SPEED_NUM_10G`).
const SPEED_MBPS: u32 = 10_000;

/// Descriptor counts mean nothing here (a queue is as deep as its ring); these only keep
/// requests sane.
const DESC_LIMITS: DescLimits = DescLimits {
    min: 1,
    max: 4096,
    align: 1,
};

/// A `net_ring` device: receive queue `i` dequeues from `rx_rings()[i]`, transmit queue `i`
/// enqueues into `tx_rings()[i]`.
pub struct RingDriver {
    name: String,
    rx: Vec<Arc<PktRing>>,
    tx: Vec<Arc<PktRing>>,
    mac: MacAddr,
    started: bool,
    rx_events: Option<EventFactory>,
}

/// Makes a receive queue's interrupt event (an eventfd on Linux).
pub type EventFactory = Box<dyn Fn() -> Result<Box<dyn EventNotifier>, EventError> + Send>;

impl RingDriver {
    /// A loopback port from `net_ringN`: it gets [`MAX_QUEUES`] rings of its own, named
    /// `ETH_RXTX<i>_<name>` as DPDK names them, and queue `i` both receives from and sends into
    /// ring `i`, so what it sends it receives again. No key is accepted.
    pub fn from_devargs(args: &DevArgs) -> Result<Self, DevArgsError> {
        args.check_keys(DEVARGS_KEYS)?;
        Self::loopback(&args.name, MAX_QUEUES, RING_CAPACITY).map_err(|e| DevArgsError::Create {
            name: args.name.clone(),
            reason: format!("{e}"),
        })
    }

    /// A loopback port named `name` with `queues` rings of `capacity` packets.
    pub fn loopback(name: &str, queues: u16, capacity: usize) -> Result<Self, RingError> {
        let rings = make_rings(name, queues, capacity)?;
        Ok(Self::from_rings(name, rings.clone(), rings))
    }

    /// Two ports connected back to back, `net_ring_a` and `net_ring_b`, with [`MAX_QUEUES`]
    /// queues of [`RING_CAPACITY`] packets each way: what A sends on queue `i`, B receives on
    /// queue `i`, and the other way round.
    pub fn pair() -> (Self, Self) {
        // Only a capacity too large for a ring can fail, and this one is not.
        match Self::pair_with("net_ring_a", "net_ring_b", MAX_QUEUES, RING_CAPACITY) {
            Ok(p) => p,
            Err(e) => unreachable!("a ring of {RING_CAPACITY} packets: {e}"),
        }
    }

    /// Two ports named `a` and `b` connected back to back with `queues` rings of `capacity`
    /// packets each way.
    pub fn pair_with(
        a: &str,
        b: &str,
        queues: u16,
        capacity: usize,
    ) -> Result<(Self, Self), RingError> {
        let a_to_b = make_rings(&format!("{a}_to_{b}"), queues, capacity)?;
        let b_to_a = make_rings(&format!("{b}_to_{a}"), queues, capacity)?;
        Ok((
            Self::from_rings(a, b_to_a.clone(), a_to_b.clone()),
            Self::from_rings(b, a_to_b, b_to_a),
        ))
    }

    /// A port over rings the application made (DPDK's `rte_eth_from_rings`): receive queue
    /// `i` dequeues from `rx[i]`, transmit queue `i` enqueues into `tx[i]`. The port claims a
    /// ring's consumer (or producer) when the queue is set up, so the application keeps the
    /// other side: it feeds the port by enqueuing into an rx ring and collects what the port
    /// sends by dequeuing from a tx ring. Only the first 65535 rings of each list are used.
    pub fn from_rings(name: &str, rx: Vec<Arc<PktRing>>, tx: Vec<Arc<PktRing>>) -> Self {
        Self {
            name: String::from(name),
            rx,
            tx,
            mac: MacAddr::local_from_name(name),
            started: false,
            rx_events: None,
        }
    }

    /// Gives each receive queue an interrupt event made by `make` at queue setup (on Linux,
    /// an eventfd), so [`RxQueue::intr_enable`](rdk_core::ethdev::RxQueue::intr_enable) and a
    /// sleeping receiver work. Whoever enqueues into the ring (a peer port's transmit queue or
    /// the application) signals it on the first burst after the receiver armed it — one
    /// system call per sleep, never one per packet.
    pub fn with_rx_events(
        mut self,
        make: impl Fn() -> Result<Box<dyn EventNotifier>, EventError> + Send + 'static,
    ) -> Self {
        self.rx_events = Some(Box::new(make));
        self
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rings the receive queues dequeue from, by queue id.
    pub fn rx_rings(&self) -> &[Arc<PktRing>] {
        &self.rx
    }

    /// The rings the transmit queues enqueue into, by queue id.
    pub fn tx_rings(&self) -> &[Arc<PktRing>] {
        &self.tx
    }
}

/// `queues` rings named `ETH_RXTX<i>_<name>`.
fn make_rings(name: &str, queues: u16, capacity: usize) -> Result<Vec<Arc<PktRing>>, RingError> {
    (0..queues)
        .map(|i| PktRing::new(&format!("ETH_RXTX{i}_{name}"), capacity))
        .collect()
}

/// The error for a ring side another handle holds.
fn claimed(op: &'static str, e: RingError) -> EthError {
    let text = match e {
        RingError::ConsumerClaimed => {
            "the queue's ring already has a consumer (the application or another port); \
             drop that handle first"
        }
        RingError::ProducerClaimed => {
            "the queue's ring already has a producer (the application or another port); \
             drop that handle first"
        }
        _ => "the queue's ring refused the handle",
    };
    EthError::Device {
        op,
        reason: DeviceReason { text, code: 0 },
    }
}

/// The error for a queue id without a ring (cannot happen: [`Port`] checks ids against
/// `max_*_queues`, which are the ring counts).
///
/// [`Port`]: rdk_core::ethdev::Port
fn no_ring(op: &'static str) -> EthError {
    EthError::Device {
        op,
        reason: DeviceReason {
            text: "no ring for this queue id",
            code: 0,
        },
    }
}

fn queue_count(rings: &[Arc<PktRing>]) -> u16 {
    u16::try_from(rings.len()).unwrap_or(u16::MAX)
}

impl Driver for RingDriver {
    type Rx = RingRx;
    type Tx = RingTx;

    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: "net_ring",
            max_rx_queues: queue_count(&self.rx),
            max_tx_queues: queue_count(&self.tx),
            rx_desc_lim: DESC_LIMITS,
            tx_desc_lim: DESC_LIMITS,
            min_mtu: 68,
            // A ring carries any mbuf chain.
            max_mtu: u16::MAX,
            rx_offload_capa: RxOffload::SCATTER,
            tx_offload_capa: TxOffload::MULTI_SEGS,
            rss_hash_types: RssHashTypes::empty(),
            speed_mbps: SPEED_MBPS,
        }
    }

    fn configure(&mut self, _config: &PortConfig) -> Result<(), EthError> {
        Ok(())
    }

    fn rx_queue_setup(
        &mut self,
        queue: u16,
        _nb_desc: u16,
        _pool: &PktMbufPool,
        _config: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<RingRx, EthError> {
        const OP: &str = "rx_queue_setup";
        let ring = self.rx.get(queue as usize).ok_or(no_ring(OP))?;
        let consumer = ring.consumer().map_err(|e| claimed(OP, e))?;
        if let Some(make) = &self.rx_events {
            ring.set_rx_event(make).map_err(|e| EthError::Device {
                op: OP,
                reason: DeviceReason {
                    text: "could not create the queue's interrupt event",
                    code: match e {
                        EventError::Os { code, .. } => code,
                        _ => 0,
                    },
                },
            })?;
        }
        Ok(RingRx::new(consumer, counters, ring.clone()))
    }

    fn tx_queue_setup(
        &mut self,
        queue: u16,
        _nb_desc: u16,
        _config: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<RingTx, EthError> {
        const OP: &str = "tx_queue_setup";
        let ring = self.tx.get(queue as usize).ok_or(no_ring(OP))?;
        let producer = ring.producer().map_err(|e| claimed(OP, e))?;
        Ok(RingTx::new(producer, counters))
    }

    fn start(&mut self, _rx: &mut [RingRx], _tx: &mut [RingTx]) -> Result<(), EthError> {
        self.started = true;
        Ok(())
    }

    fn stop(&mut self, _rx: &mut [RingRx], _tx: &mut [RingTx]) -> Result<(), EthError> {
        self.started = false;
        Ok(())
    }

    /// Lets go of the rings; packets in them are freed once no port or application holds the
    /// ring any more.
    fn close(&mut self) {
        self.started = false;
        self.rx.clear();
        self.tx.clear();
    }

    fn link(&self) -> LinkStatus {
        LinkStatus {
            up: self.started,
            speed_mbps: SPEED_MBPS,
            full_duplex: true,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), EthError> {
        self.mac = mac;
        Ok(())
    }

    fn set_mtu(&mut self, _mtu: u16) -> Result<(), EthError> {
        Ok(())
    }

    fn set_promiscuous(&mut self, _on: bool) -> Result<(), EthError> {
        Ok(())
    }

    fn set_allmulticast(&mut self, _on: bool) -> Result<(), EthError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use rdk_core::ethdev::{Port, RxQueue, TxQueue};
    use rdk_core::mbuf::{Mbuf, PktMbufPoolConfig};
    use rdk_os_mock::MockOs;

    fn up(d: RingDriver, pool: &PktMbufPool, q: u16) -> Port<RingDriver> {
        let mut p = Port::new(0, d);
        p.configure(&PortConfig::queues(q, q)).unwrap();
        for i in 0..q {
            p.rx_queue_setup(i, 64, pool, &RxQueueConfig::default())
                .unwrap();
            p.tx_queue_setup(i, 64, &TxQueueConfig::default()).unwrap();
        }
        p.start().unwrap();
        p
    }

    #[test]
    fn devargs_port_is_a_loopback_with_dpdk_s_ring_names() {
        let d = RingDriver::from_devargs(&DevArgs::parse("net_ring0").unwrap()).unwrap();
        assert_eq!(d.rx_rings().len(), 16);
        assert_eq!(d.rx_rings()[3].name(), "ETH_RXTX3_net_ring0");
        assert_eq!(d.rx_rings()[0].capacity(), 1023);
        assert!(Arc::ptr_eq(&d.rx_rings()[5], &d.tx_rings()[5]));
        let info = d.info();
        assert_eq!((info.max_rx_queues, info.max_tx_queues), (16, 16));
        assert_eq!(info.driver_name, "net_ring");
        let e =
            RingDriver::from_devargs(&DevArgs::parse("net_ring0,nodeaction=r:0:CREATE").unwrap())
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "net_ring does not accept 'nodeaction'; accepted keys: none"
        );
    }

    #[test]
    fn loopback_receives_what_it_sends() {
        let os = MockOs::new();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("lb", 64)).unwrap();
        let mut p = up(RingDriver::loopback("lb", 2, 15).unwrap(), &pool, 2);
        assert!(p.link().up);
        let q = p.queues().unwrap();
        let mut burst: [Option<Mbuf>; 20] = Default::default();
        assert!(pool.alloc_bulk(&mut burst));
        assert_eq!(q.tx[1].tx_burst(&mut burst), 15, "ring capacity");
        let mut out: [Option<Mbuf>; 32] = Default::default();
        assert_eq!(q.rx[0].rx_burst(&mut out), 0, "queue 0 has its own ring");
        assert_eq!(q.rx[1].rx_burst(&mut out), 15);
        let s = p.stats();
        assert_eq!((s.ipackets, s.opackets, s.ibytes, s.obytes), (15, 15, 0, 0));
        assert_eq!((s.rx_queues[1].packets, s.tx_queues[1].packets), (15, 15));
        drop((burst, out));
        drop(p);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn a_ring_end_held_elsewhere_refuses_the_queue() {
        let os = MockOs::new();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("cl", 8)).unwrap();
        let ring = PktRing::new("app", 7).unwrap();
        let app_rx = ring.consumer().unwrap();
        let mut p = Port::new(
            0,
            RingDriver::from_rings("p", Vec::new(), alloc::vec![ring]),
        );
        p.configure(&PortConfig::queues(0, 1)).unwrap();
        let e = p.tx_queue_setup(0, 64, &TxQueueConfig::default());
        assert!(e.is_ok(), "the producer end is free");
        drop(app_rx);
        let ring = PktRing::new("app2", 7).unwrap();
        let _app_rx = ring.consumer().unwrap();
        let mut p = Port::new(
            0,
            RingDriver::from_rings("p", alloc::vec![ring], Vec::new()),
        );
        p.configure(&PortConfig::queues(1, 0)).unwrap();
        let e = p
            .rx_queue_setup(0, 64, &pool, &RxQueueConfig::default())
            .unwrap_err();
        assert!(
            matches!(
                e,
                EthError::Device {
                    op: "rx_queue_setup",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("already has a consumer"), "{e}");
    }

    #[test]
    fn close_lets_go_of_the_rings() {
        let os = MockOs::new();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("cl", 8)).unwrap();
        let mut p = up(RingDriver::loopback("c", 1, 7).unwrap(), &pool, 1);
        let ring = p.driver().rx_rings()[0].clone();
        let mut burst: [Option<Mbuf>; 4] = Default::default();
        assert!(pool.alloc_bulk(&mut burst));
        assert_eq!(p.queues().unwrap().tx[0].tx_burst(&mut burst), 4);
        p.close().unwrap();
        assert!(p.driver().rx_rings().is_empty());
        assert_eq!(ring.count(), 4, "still held by us");
        drop(ring);
        assert_eq!(pool.available(), 8);
    }
}
