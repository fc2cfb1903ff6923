//! The port: one lifecycle, validated once for every driver.
//!
//! A driver implements [`Driver`] (the mechanics: set up a queue, start, stop, report link)
//! and [`RxQueue`] / [`TxQueue`] (the bursts). [`Port`] wraps it and enforces the rules DPDK
//! leaves to each driver (or to luck): the order configure → queue setup → start → stop →
//! close, queue ids inside the configured range, descriptor counts inside the device's limits,
//! offloads the device has, an MTU in range. Every wrong move is an [`EthError`] saying what
//! to do instead.
//!
//! Queues are lent out only by a started port ([`Port::queues`]), as a borrow of it: a
//! stopped port cannot be bursted and a port cannot be stopped, reconfigured or closed while a
//! core holds one of its queues — the compiler says so. Statistics stay readable meanwhile
//! through a [`StatsReader`].

use super::config::{check_mtu, PortConfig, RxQueueConfig, TxQueueConfig};
use super::error::{Dir, EthError, PortState};
use super::info::{DescLimits, DevInfo, LinkStatus, MacAddr};
use super::stats::{PortStats, QueueCounters, XStat};
use crate::mbuf::{Mbuf, MbufCache, PktMbufPool};
use crate::os::WaitHandle;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// A receive queue: owned by one core.
pub trait RxQueue: Send {
    /// Receives up to `out.len()` packets into `out[0..n]` and returns `n`. Slots that held an
    /// mbuf are overwritten (the old mbuf is freed).
    fn rx_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize;

    /// As [`rx_burst`](Self::rx_burst), taking replacement buffers from the calling core's
    /// `cache` where it belongs to the queue's pool.
    ///
    /// This is rdk's explicit form of DPDK's per-lcore mempool cache: a core that allocates,
    /// receives and frees through one cache keeps reusing the same few (cache-hot) mbufs,
    /// instead of cycling every mbuf through the pool's ring between a receive queue's cache
    /// and a transmit queue's. Drivers that allocate nothing keep the default.
    #[inline(always)]
    fn rx_burst_cached(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        let _ = cache;
        self.rx_burst(out)
    }

    /// Enables the queue's receive interrupt: its [`intr_handle`](Self::intr_handle) becomes
    /// ready when a packet arrives (DPDK's `rte_eth_dev_rx_intr_enable`). A driver delivers
    /// one wake-up per enable at most; the waiter disables, polls, and enables again when it
    /// wants to sleep. The default: not supported.
    fn intr_enable(&mut self) -> Result<(), EthError> {
        Err(EthError::NotSupported {
            op: "rx queue interrupts",
        })
    }

    /// Disables the receive interrupt and acknowledges a pending one, so the handle is not
    /// ready any more.
    fn intr_disable(&mut self) -> Result<(), EthError> {
        Err(EthError::NotSupported {
            op: "rx queue interrupts",
        })
    }

    /// What a thread waits on for this queue's interrupt (see [`crate::os::WaitHandle`]);
    /// `None` if the queue has no interrupt.
    fn intr_handle(&self) -> Option<WaitHandle> {
        None
    }
}

/// A transmit queue: owned by one core.
pub trait TxQueue: Send {
    /// Sends packets from the front of `pkts`, taking them (`Some` → `None`), and returns how
    /// many were taken. The rest stay with the caller, who may retry or free them. A `None`
    /// slot ends the burst.
    fn tx_burst(&mut self, pkts: &mut [Option<Mbuf>]) -> usize;

    /// As [`tx_burst`](Self::tx_burst), freeing completed mbufs into the calling core's
    /// `cache` (see [`RxQueue::rx_burst_cached`]). Drivers that free nothing keep the default.
    #[inline(always)]
    fn tx_burst_cached(&mut self, pkts: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        let _ = cache;
        self.tx_burst(pkts)
    }
}

/// What a driver implements. [`Port`] calls it only in valid states with validated arguments.
pub trait Driver: Send {
    /// The receive queue type.
    type Rx: RxQueue;
    /// The transmit queue type.
    type Tx: TxQueue;

    /// What the device can do.
    fn info(&self) -> DevInfo;

    /// Applies a validated port configuration.
    fn configure(&mut self, config: &PortConfig) -> Result<(), EthError>;

    /// Builds receive queue `queue` with `nb_desc` descriptors (within limits), buffers from
    /// `pool`, counting into `counters`.
    fn rx_queue_setup(
        &mut self,
        queue: u16,
        nb_desc: u16,
        pool: &PktMbufPool,
        config: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<Self::Rx, EthError>;

    /// Builds transmit queue `queue` with `nb_desc` descriptors, counting into `counters`.
    fn tx_queue_setup(
        &mut self,
        queue: u16,
        nb_desc: u16,
        config: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<Self::Tx, EthError>;

    /// Starts the device with all queues set up.
    fn start(&mut self, rx: &mut [Self::Rx], tx: &mut [Self::Tx]) -> Result<(), EthError>;

    /// Stops the device; queues keep their mbufs until they are dropped or restarted.
    fn stop(&mut self, rx: &mut [Self::Rx], tx: &mut [Self::Tx]) -> Result<(), EthError>;

    /// Releases the device (queues are dropped by the port afterwards).
    fn close(&mut self) {}

    /// The current link state.
    fn link(&self) -> LinkStatus;

    /// The MAC address.
    fn mac_addr(&self) -> MacAddr;

    /// Sets the MAC address (already checked to be unicast).
    fn set_mac_addr(&mut self, _mac: MacAddr) -> Result<(), EthError> {
        Err(EthError::NotSupported { op: "set_mac_addr" })
    }

    /// Sets the MTU (already checked against the device's range).
    fn set_mtu(&mut self, _mtu: u16) -> Result<(), EthError> {
        Err(EthError::NotSupported { op: "set_mtu" })
    }

    /// Promiscuous mode on or off.
    fn set_promiscuous(&mut self, _on: bool) -> Result<(), EthError> {
        Err(EthError::NotSupported {
            op: "set_promiscuous",
        })
    }

    /// All-multicast mode on or off.
    fn set_allmulticast(&mut self, _on: bool) -> Result<(), EthError> {
        Err(EthError::NotSupported {
            op: "set_allmulticast",
        })
    }

    /// Driver-specific extended statistics, appended to `out`.
    fn xstats(&self, _out: &mut Vec<XStat>) {}

    /// Zeroes the driver's own counters (those [`xstats`](Self::xstats) reports), when the
    /// port's statistics are reset.
    fn stats_reset(&self) {}
}

/// A link-change callback: gets the port id and the new state.
pub type LinkCallback = Box<dyn FnMut(u16, LinkStatus) + Send>;

/// Queues lent out by a started port.
pub struct Queues<'a, D: Driver> {
    /// Receive queues, by id.
    pub rx: &'a mut [D::Rx],
    /// Transmit queues, by id.
    pub tx: &'a mut [D::Tx],
}

/// Reads a port's statistics while its queues are busy on other cores.
#[derive(Clone, Debug)]
pub struct StatsReader {
    rx: Vec<Arc<QueueCounters>>,
    tx: Vec<Arc<QueueCounters>>,
}

impl StatsReader {
    /// A snapshot of the port's statistics.
    pub fn stats(&self) -> PortStats {
        PortStats::from_queues(
            self.rx.iter().map(|c| c.snapshot()).collect(),
            self.tx.iter().map(|c| c.snapshot()).collect(),
        )
    }

    /// Zeroes every queue counter (the driver's own are zeroed by [`Port::stats_reset`]).
    pub fn reset(&self) {
        self.rx.iter().chain(&self.tx).for_each(|c| c.reset());
    }
}

/// A port: a driver plus its lifecycle and counters.
pub struct Port<D: Driver> {
    id: u16,
    drv: D,
    info: DevInfo,
    state: PortState,
    config: PortConfig,
    rx_setup: Vec<Option<D::Rx>>,
    tx_setup: Vec<Option<D::Tx>>,
    rx: Vec<D::Rx>,
    tx: Vec<D::Tx>,
    rx_counters: Vec<Arc<QueueCounters>>,
    tx_counters: Vec<Arc<QueueCounters>>,
    link: LinkStatus,
    link_callbacks: Vec<LinkCallback>,
    promiscuous: bool,
    allmulticast: bool,
}

impl<D: Driver> Port<D> {
    /// Wraps a freshly created driver as port `id`.
    pub fn new(id: u16, drv: D) -> Self {
        let info = drv.info();
        let link = drv.link();
        Self {
            id,
            drv,
            info,
            state: PortState::Unconfigured,
            config: PortConfig::default(),
            rx_setup: Vec::new(),
            tx_setup: Vec::new(),
            rx: Vec::new(),
            tx: Vec::new(),
            rx_counters: Vec::new(),
            tx_counters: Vec::new(),
            link,
            link_callbacks: Vec::new(),
            promiscuous: false,
            allmulticast: false,
        }
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The lifecycle state.
    pub fn state(&self) -> PortState {
        self.state
    }

    /// What the device can do.
    pub fn info(&self) -> &DevInfo {
        &self.info
    }

    /// The configuration applied last.
    pub fn config(&self) -> &PortConfig {
        &self.config
    }

    /// The driver, for driver-specific control calls.
    pub fn driver(&self) -> &D {
        &self.drv
    }

    fn wrong(&self, op: &'static str, hint: &'static str) -> EthError {
        EthError::WrongState {
            op,
            state: self.state,
            hint,
        }
    }

    /// Configures queue counts, offloads, RSS, MTU. Allowed before start or after stop.
    ///
    /// A configuration the device cannot take (checked against [`DevInfo`]) changes nothing. One
    /// the driver fails to apply leaves the port unconfigured, its queues freed.
    pub fn configure(&mut self, config: &PortConfig) -> Result<(), EthError> {
        match self.state {
            PortState::Unconfigured | PortState::Configured | PortState::Stopped => {}
            PortState::Started => return Err(self.wrong("configure", "stop the port first")),
            PortState::Closed => return Err(self.wrong("configure", "create a new port")),
        }
        config.validate(&self.info)?;
        if let Err(e) = self.drv.configure(config) {
            // The driver may have applied part of it, so neither the old configuration and
            // queues nor the new ones hold: as in DPDK (`dev_configured` stays 0 until a
            // configure succeeds), the port must be configured again. Its queues are freed.
            self.rx.clear();
            self.tx.clear();
            self.rx_setup.clear();
            self.tx_setup.clear();
            self.state = PortState::Unconfigured;
            return Err(e);
        }
        self.config = *config;
        self.rx.clear();
        self.tx.clear();
        self.rx_setup = (0..config.nb_rxq).map(|_| None).collect();
        self.tx_setup = (0..config.nb_txq).map(|_| None).collect();
        self.rx_counters = (0..config.nb_rxq)
            .map(|_| Arc::new(QueueCounters::new()))
            .collect();
        self.tx_counters = (0..config.nb_txq)
            .map(|_| Arc::new(QueueCounters::new()))
            .collect();
        self.state = PortState::Configured;
        Ok(())
    }

    fn check_setup_state(&mut self, op: &'static str) -> Result<(), EthError> {
        match self.state {
            PortState::Configured => Ok(()),
            PortState::Stopped => {
                self.park_queues();
                Ok(())
            }
            PortState::Unconfigured => Err(self.wrong(op, "call configure first")),
            PortState::Started => Err(self.wrong(op, "stop the port first")),
            PortState::Closed => Err(self.wrong(op, "create a new port")),
        }
    }

    /// Moves started queues back to their set-up slots (ids are their positions).
    fn park_queues(&mut self) {
        for (i, q) in self.rx.drain(..).enumerate() {
            self.rx_setup[i] = Some(q);
        }
        for (i, q) in self.tx.drain(..).enumerate() {
            self.tx_setup[i] = Some(q);
        }
    }

    /// Sets up receive queue `queue` with `nb_desc` descriptors and buffers from `pool`.
    pub fn rx_queue_setup(
        &mut self,
        queue: u16,
        nb_desc: u16,
        pool: &PktMbufPool,
        config: &RxQueueConfig,
    ) -> Result<(), EthError> {
        self.check_setup_state("set up an rx queue")?;
        check_queue(
            Dir::Rx,
            queue,
            self.config.nb_rxq,
            nb_desc,
            self.info.rx_desc_lim,
        )?;
        let missing = config.offloads - self.info.rx_offload_capa;
        if !missing.is_empty() {
            return Err(EthError::RxOffloadUnsupported { missing });
        }
        // Replace any earlier queue first, so its mbufs are back before the new one fills.
        self.rx_setup[queue as usize] = None;
        let counters = self.rx_counters[queue as usize].clone();
        let q = self
            .drv
            .rx_queue_setup(queue, nb_desc, pool, config, counters)?;
        self.rx_setup[queue as usize] = Some(q);
        Ok(())
    }

    /// Sets up transmit queue `queue` with `nb_desc` descriptors.
    pub fn tx_queue_setup(
        &mut self,
        queue: u16,
        nb_desc: u16,
        config: &TxQueueConfig,
    ) -> Result<(), EthError> {
        self.check_setup_state("set up a tx queue")?;
        check_queue(
            Dir::Tx,
            queue,
            self.config.nb_txq,
            nb_desc,
            self.info.tx_desc_lim,
        )?;
        let missing = config.offloads - self.info.tx_offload_capa;
        if !missing.is_empty() {
            return Err(EthError::TxOffloadUnsupported { missing });
        }
        self.tx_setup[queue as usize] = None;
        let counters = self.tx_counters[queue as usize].clone();
        let q = self.drv.tx_queue_setup(queue, nb_desc, config, counters)?;
        self.tx_setup[queue as usize] = Some(q);
        Ok(())
    }

    /// Starts the port: every configured queue must be set up.
    pub fn start(&mut self) -> Result<(), EthError> {
        match self.state {
            PortState::Configured | PortState::Stopped => {}
            PortState::Unconfigured => {
                return Err(self.wrong("start", "configure and set up queues first"))
            }
            PortState::Started => return Err(self.wrong("start", "it is already started")),
            PortState::Closed => return Err(self.wrong("start", "create a new port")),
        }
        // After a stop the queues may be in either place: gather them in the set-up slots.
        self.park_queues();
        if let Some(q) = self.rx_setup.iter().position(Option::is_none) {
            return Err(EthError::QueueNotSetUp {
                dir: Dir::Rx,
                queue: q as u16,
            });
        }
        if let Some(q) = self.tx_setup.iter().position(Option::is_none) {
            return Err(EthError::QueueNotSetUp {
                dir: Dir::Tx,
                queue: q as u16,
            });
        }
        self.rx = self.rx_setup.iter_mut().filter_map(Option::take).collect();
        self.tx = self.tx_setup.iter_mut().filter_map(Option::take).collect();
        if let Err(e) = self.drv.start(&mut self.rx, &mut self.tx) {
            // Back to the set-up slots: a queue set up again before the next start must
            // replace these, not be replaced by them.
            self.park_queues();
            return Err(e);
        }
        self.state = PortState::Started;
        self.link_update();
        Ok(())
    }

    /// The queues of a started port, lent out for bursting.
    pub fn queues(&mut self) -> Result<Queues<'_, D>, EthError> {
        if self.state != PortState::Started {
            return Err(self.wrong("burst", "start the port before bursting"));
        }
        Ok(Queues {
            rx: &mut self.rx,
            tx: &mut self.tx,
        })
    }

    /// Stops a started port.
    pub fn stop(&mut self) -> Result<(), EthError> {
        if self.state != PortState::Started {
            return Err(self.wrong("stop", "only a started port can be stopped"));
        }
        self.drv.stop(&mut self.rx, &mut self.tx)?;
        self.state = PortState::Stopped;
        // DPDK reports the link down once a port is stopped; tell the callbacks now.
        self.link_update();
        Ok(())
    }

    /// Closes the port (stopping it first if needed); its queues and their mbufs are freed.
    pub fn close(&mut self) -> Result<(), EthError> {
        match self.state {
            PortState::Closed => return Err(self.wrong("close", "it is already closed")),
            PortState::Started => self.stop()?,
            _ => {}
        }
        self.rx.clear();
        self.tx.clear();
        self.rx_setup.clear();
        self.tx_setup.clear();
        self.drv.close();
        self.state = PortState::Closed;
        Ok(())
    }

    /// A reader of this port's statistics, usable from any thread at any time.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader {
            rx: self.rx_counters.clone(),
            tx: self.tx_counters.clone(),
        }
    }

    /// A snapshot of the port's statistics.
    pub fn stats(&self) -> PortStats {
        self.stats_reader().stats()
    }

    /// Zeroes the port's statistics: the generic counters and the driver's extended ones
    /// (DPDK's `rte_eth_stats_reset`; there is no separate xstats reset).
    pub fn stats_reset(&self) {
        self.stats_reader().reset();
        self.drv.stats_reset();
    }

    /// Named extended statistics: the generic ones, per queue, then the driver's.
    pub fn xstats(&self) -> Vec<XStat> {
        use alloc::format;
        use alloc::string::ToString;
        let s = self.stats();
        let mut out = Vec::new();
        for (name, value) in [
            ("rx_good_packets", s.ipackets),
            ("tx_good_packets", s.opackets),
            ("rx_good_bytes", s.ibytes),
            ("tx_good_bytes", s.obytes),
            ("rx_missed_errors", s.imissed),
            ("rx_errors", s.ierrors),
            ("tx_errors", s.oerrors),
            ("rx_mbuf_allocation_errors", s.rx_nombuf),
        ] {
            out.push(XStat {
                name: name.to_string(),
                value,
            });
        }
        for (i, q) in s.rx_queues.iter().enumerate() {
            out.push(XStat {
                name: format!("rx_q{i}_packets"),
                value: q.packets,
            });
            out.push(XStat {
                name: format!("rx_q{i}_bytes"),
                value: q.bytes,
            });
            out.push(XStat {
                name: format!("rx_q{i}_errors"),
                value: q.errors,
            });
        }
        for (i, q) in s.tx_queues.iter().enumerate() {
            out.push(XStat {
                name: format!("tx_q{i}_packets"),
                value: q.packets,
            });
            out.push(XStat {
                name: format!("tx_q{i}_bytes"),
                value: q.bytes,
            });
        }
        self.drv.xstats(&mut out);
        out
    }

    /// The link state as last seen.
    pub fn link(&self) -> LinkStatus {
        self.link
    }

    /// Asks the driver for the link state; if it changed, calls every link-change callback.
    pub fn link_update(&mut self) -> LinkStatus {
        let now = self.drv.link();
        if now != self.link {
            self.link = now;
            for cb in &mut self.link_callbacks {
                cb(self.id, now);
            }
        }
        now
    }

    /// Registers a link-change callback.
    pub fn on_link_change(&mut self, cb: LinkCallback) {
        self.link_callbacks.push(cb);
    }

    /// The MAC address.
    pub fn mac_addr(&self) -> MacAddr {
        self.drv.mac_addr()
    }

    /// Sets the MAC address.
    pub fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), EthError> {
        self.check_open("set the MAC address")?;
        if !mac.is_valid_unicast() {
            return Err(EthError::BadMac);
        }
        self.drv.set_mac_addr(mac)
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, mtu: u16) -> Result<(), EthError> {
        self.check_open("set the MTU")?;
        check_mtu(mtu, &self.info)?;
        self.drv.set_mtu(mtu)?;
        self.config.mtu = Some(mtu);
        Ok(())
    }

    /// Promiscuous mode on or off.
    pub fn set_promiscuous(&mut self, on: bool) -> Result<(), EthError> {
        self.check_open("change promiscuous mode")?;
        self.drv.set_promiscuous(on)?;
        self.promiscuous = on;
        Ok(())
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        self.promiscuous
    }

    /// All-multicast mode on or off.
    pub fn set_allmulticast(&mut self, on: bool) -> Result<(), EthError> {
        self.check_open("change all-multicast mode")?;
        self.drv.set_allmulticast(on)?;
        self.allmulticast = on;
        Ok(())
    }

    /// Whether all-multicast mode is on.
    pub fn allmulticast(&self) -> bool {
        self.allmulticast
    }

    fn check_open(&self, op: &'static str) -> Result<(), EthError> {
        if self.state == PortState::Closed {
            return Err(self.wrong(op, "create a new port"));
        }
        Ok(())
    }
}

/// Checks a queue id against the configured count and a descriptor count against the limits.
fn check_queue(
    dir: Dir,
    queue: u16,
    configured: u16,
    nb_desc: u16,
    lim: DescLimits,
) -> Result<(), EthError> {
    if queue >= configured {
        return Err(EthError::QueueOutOfRange {
            dir,
            queue,
            configured,
        });
    }
    if !lim.allows(nb_desc) {
        return Err(EthError::DescOutOfRange {
            dir,
            nb_desc,
            min: lim.min,
            max: lim.max,
            align: lim.align,
        });
    }
    Ok(())
}

impl<D: Driver> Drop for Port<D> {
    fn drop(&mut self) {
        if self.state != PortState::Closed {
            // Best effort: a driver failing to stop still gets its queues dropped and freed.
            let _ = self.close();
        }
    }
}
