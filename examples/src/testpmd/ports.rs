//! The drivers rdk-testpmd links, behind one enum so the data path stays statically dispatched:
//! a burst costs one `match`, never a virtual call per packet.

use rdk_core::ethdev::{
    DevArgs, DevArgsError, Driver, EthError, MacAddr, Port, PortRegistry, PortState, RxQueue,
    RxQueueConfig, StatsReader, TxQueue, TxQueueConfig,
};
use rdk_core::mbuf::{Mbuf, MbufCache, PktMbufPool};
use rdk_os_linux::vhost_user::{
    SharedMemory, VhostUserTransport, VirtioUserConfig, VIRTIO_USER_KEYS,
};
use rdk_pmd_af_packet::AfPacketDriver;
use rdk_pmd_af_xdp::AfXdpDriver;
use rdk_pmd_null::NullDriver;
use rdk_pmd_ring::RingDriver;
use rdk_pmd_tap::TapDriver;
use rdk_pmd_virtio::{VirtioNet, VirtioNetConfig};

type NullRx = <NullDriver as Driver>::Rx;
type NullTx = <NullDriver as Driver>::Tx;
type RingRx = <RingDriver as Driver>::Rx;
type RingTx = <RingDriver as Driver>::Tx;
type TapRx = <TapDriver as Driver>::Rx;
type TapTx = <TapDriver as Driver>::Tx;
type AfpRx = <AfPacketDriver as Driver>::Rx;
type AfpTx = <AfPacketDriver as Driver>::Tx;
type AfxRx = <AfXdpDriver as Driver>::Rx;
type AfxTx = <AfXdpDriver as Driver>::Tx;
/// `net_virtio_user`: the virtio-net PMD over a vhost-user transport.
pub type VirtioUserDriver = VirtioNet<VhostUserTransport, SharedMemory>;
type VuRx = <VirtioUserDriver as Driver>::Rx;
type VuTx = <VirtioUserDriver as Driver>::Tx;

/// A port of any linked driver.
pub enum AnyPort {
    /// `net_null`.
    Null(Port<NullDriver>),
    /// `net_ring`.
    Ring(Port<RingDriver>),
    /// `net_tap`.
    Tap(Port<TapDriver>),
    /// `net_af_packet`.
    AfPacket(Port<AfPacketDriver>),
    /// `net_af_xdp`.
    AfXdp(Port<AfXdpDriver>),
    /// `net_virtio_user`.
    VirtioUser(Box<Port<VirtioUserDriver>>),
}

/// A borrowed receive queue of any linked driver.
pub enum AnyRx<'a> {
    /// `net_null`.
    Null(&'a mut NullRx),
    /// `net_ring`.
    Ring(&'a mut RingRx),
    /// `net_tap`.
    Tap(&'a mut TapRx),
    /// `net_af_packet`.
    AfPacket(&'a mut AfpRx),
    /// `net_af_xdp`.
    AfXdp(&'a mut AfxRx),
    /// `net_virtio_user`.
    VirtioUser(&'a mut VuRx),
}

/// A borrowed transmit queue of any linked driver.
pub enum AnyTx<'a> {
    /// `net_null`.
    Null(&'a mut NullTx),
    /// `net_ring`.
    Ring(&'a mut RingTx),
    /// `net_tap`.
    Tap(&'a mut TapTx),
    /// `net_af_packet`.
    AfPacket(&'a mut AfpTx),
    /// `net_af_xdp`.
    AfXdp(&'a mut AfxTx),
    /// `net_virtio_user`.
    VirtioUser(&'a mut VuTx),
}

impl RxQueue for AnyRx<'_> {
    #[inline(always)]
    fn rx_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        match self {
            AnyRx::Null(q) => q.rx_burst(out),
            AnyRx::Ring(q) => q.rx_burst(out),
            AnyRx::Tap(q) => q.rx_burst(out),
            AnyRx::AfPacket(q) => q.rx_burst(out),
            AnyRx::AfXdp(q) => q.rx_burst(out),
            AnyRx::VirtioUser(q) => q.rx_burst(out),
        }
    }

    #[inline(always)]
    fn rx_burst_cached(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        match self {
            AnyRx::Null(q) => q.rx_burst_cached(out, cache),
            AnyRx::Ring(q) => q.rx_burst_cached(out, cache),
            AnyRx::Tap(q) => q.rx_burst_cached(out, cache),
            AnyRx::AfPacket(q) => q.rx_burst_cached(out, cache),
            AnyRx::AfXdp(q) => q.rx_burst_cached(out, cache),
            AnyRx::VirtioUser(q) => q.rx_burst_cached(out, cache),
        }
    }
}

impl TxQueue for AnyTx<'_> {
    #[inline(always)]
    fn tx_burst(&mut self, pkts: &mut [Option<Mbuf>]) -> usize {
        match self {
            AnyTx::Null(q) => q.tx_burst(pkts),
            AnyTx::Ring(q) => q.tx_burst(pkts),
            AnyTx::Tap(q) => q.tx_burst(pkts),
            AnyTx::AfPacket(q) => q.tx_burst(pkts),
            AnyTx::AfXdp(q) => q.tx_burst(pkts),
            AnyTx::VirtioUser(q) => q.tx_burst(pkts),
        }
    }

    #[inline(always)]
    fn tx_burst_cached(&mut self, pkts: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        match self {
            AnyTx::Null(q) => q.tx_burst_cached(pkts, cache),
            AnyTx::Ring(q) => q.tx_burst_cached(pkts, cache),
            AnyTx::Tap(q) => q.tx_burst_cached(pkts, cache),
            AnyTx::AfPacket(q) => q.tx_burst_cached(pkts, cache),
            AnyTx::AfXdp(q) => q.tx_burst_cached(pkts, cache),
            AnyTx::VirtioUser(q) => q.tx_burst_cached(pkts, cache),
        }
    }
}

/// Calls the same method on whichever port is inside.
macro_rules! each {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            AnyPort::Null($p) => $e,
            AnyPort::Ring($p) => $e,
            AnyPort::Tap($p) => $e,
            AnyPort::AfPacket($p) => $e,
            AnyPort::AfXdp($p) => $e,
            AnyPort::VirtioUser($p) => $e,
        }
    };
}

impl AnyPort {
    /// Configures queue counts.
    pub fn configure(&mut self, cfg: &rdk_core::ethdev::PortConfig) -> Result<(), EthError> {
        each!(self, p => p.configure(cfg))
    }

    /// Sets up an rx queue.
    pub fn rx_queue_setup(
        &mut self,
        q: u16,
        nb_desc: u16,
        pool: &PktMbufPool,
        cfg: &RxQueueConfig,
    ) -> Result<(), EthError> {
        each!(self, p => p.rx_queue_setup(q, nb_desc, pool, cfg))
    }

    /// Sets up a tx queue.
    pub fn tx_queue_setup(
        &mut self,
        q: u16,
        nb_desc: u16,
        cfg: &TxQueueConfig,
    ) -> Result<(), EthError> {
        each!(self, p => p.tx_queue_setup(q, nb_desc, cfg))
    }

    /// Starts the port.
    pub fn start(&mut self) -> Result<(), EthError> {
        each!(self, p => p.start())
    }

    /// Stops the port.
    pub fn stop(&mut self) -> Result<(), EthError> {
        each!(self, p => p.stop())
    }

    /// Closes the port.
    pub fn close(&mut self) -> Result<(), EthError> {
        each!(self, p => p.close())
    }

    /// The lifecycle state.
    pub fn state(&self) -> PortState {
        each!(self, p => p.state())
    }

    /// The MAC address.
    pub fn mac_addr(&self) -> MacAddr {
        each!(self, p => p.mac_addr())
    }

    /// A statistics reader usable while the queues run.
    pub fn stats_reader(&self) -> StatsReader {
        each!(self, p => p.stats_reader())
    }

    /// The driver's name.
    pub fn driver_name(&self) -> &'static str {
        each!(self, p => p.info().driver_name)
    }

    /// The memory a port's device reaches only if the mbufs come from it (virtio-user: the
    /// vhost-user memory table); `None` for ports that take any pool.
    pub fn shared_memory(&self) -> Option<SharedMemory> {
        match self {
            AnyPort::VirtioUser(p) => Some(p.driver().with_transport(|t| t.memory().clone())),
            _ => None,
        }
    }

    /// Lends out the queues of a started port.
    pub fn queues(&mut self) -> Result<(Vec<AnyRx<'_>>, Vec<AnyTx<'_>>), EthError> {
        Ok(match self {
            AnyPort::Null(p) => {
                let q = p.queues()?;
                (
                    q.rx.iter_mut().map(AnyRx::Null).collect(),
                    q.tx.iter_mut().map(AnyTx::Null).collect(),
                )
            }
            AnyPort::Ring(p) => {
                let q = p.queues()?;
                (
                    q.rx.iter_mut().map(AnyRx::Ring).collect(),
                    q.tx.iter_mut().map(AnyTx::Ring).collect(),
                )
            }
            AnyPort::Tap(p) => {
                let q = p.queues()?;
                (
                    q.rx.iter_mut().map(AnyRx::Tap).collect(),
                    q.tx.iter_mut().map(AnyTx::Tap).collect(),
                )
            }
            AnyPort::AfPacket(p) => {
                let q = p.queues()?;
                (
                    q.rx.iter_mut().map(AnyRx::AfPacket).collect(),
                    q.tx.iter_mut().map(AnyTx::AfPacket).collect(),
                )
            }
            AnyPort::AfXdp(p) => {
                let q = p.queues()?;
                (
                    q.rx.iter_mut().map(AnyRx::AfXdp).collect(),
                    q.tx.iter_mut().map(AnyTx::AfXdp).collect(),
                )
            }
            AnyPort::VirtioUser(p) => {
                let q = p.queues()?;
                (
                    q.rx.iter_mut().map(AnyRx::VirtioUser).collect(),
                    q.tx.iter_mut().map(AnyTx::VirtioUser).collect(),
                )
            }
        })
    }
}

/// A registry that knows every driver rdk-testpmd links.
pub fn registry() -> PortRegistry<AnyPort> {
    let mut r = PortRegistry::new();
    r.register_driver(
        "net_null",
        Box::new(|id, a: &DevArgs| -> Result<AnyPort, DevArgsError> {
            Ok(AnyPort::Null(Port::new(id, NullDriver::from_devargs(a)?)))
        }),
    );
    r.register_driver(
        "net_ring",
        Box::new(|id, a: &DevArgs| -> Result<AnyPort, DevArgsError> {
            Ok(AnyPort::Ring(Port::new(id, RingDriver::from_devargs(a)?)))
        }),
    );
    r.register_driver(
        "net_tap",
        Box::new(|id, a: &DevArgs| -> Result<AnyPort, DevArgsError> {
            let d = TapDriver::from_devargs(a)?.with_port_id(id);
            Ok(AnyPort::Tap(Port::new(id, d)))
        }),
    );
    r.register_driver(
        "net_af_packet",
        Box::new(|id, a: &DevArgs| -> Result<AnyPort, DevArgsError> {
            let d = AfPacketDriver::from_devargs(a)?.with_port_id(id);
            Ok(AnyPort::AfPacket(Port::new(id, d)))
        }),
    );
    r.register_driver(
        "net_af_xdp",
        Box::new(|id, a: &DevArgs| -> Result<AnyPort, DevArgsError> {
            let d = AfXdpDriver::from_devargs(a)?.with_port_id(id);
            Ok(AnyPort::AfXdp(Port::new(id, d)))
        }),
    );
    register_virtio_user(&mut r);
    r
}

/// The devargs `net_virtio_user` accepts: the transport's and the driver's.
const VIRTIO_USER_ALL_KEYS: &[&str] = &[
    "path",
    "queues",
    "queue_size",
    "mac",
    "packed_vq",
    "in_order",
    "mrg_rxbuf",
    "event_idx",
    "mq",
];

/// `net_virtio_userN,path=SOCK[,queues=N][,queue_size=N][,mac=..][,packed_vq=0|1]
/// [,mrg_rxbuf=0|1][,in_order=0|1]`: every such port shares one [`SharedMemory`], which the
/// mbuf pool must come from too ([`AnyPort::shared_memory`]).
fn register_virtio_user(r: &mut PortRegistry<AnyPort>) {
    debug_assert!(VIRTIO_USER_KEYS
        .iter()
        .all(|k| VIRTIO_USER_ALL_KEYS.contains(k)));
    let mem = std::sync::OnceLock::<SharedMemory>::new();
    r.register_driver(
        "net_virtio_user",
        Box::new(move |id, a: &DevArgs| -> Result<AnyPort, DevArgsError> {
            a.check_keys(VIRTIO_USER_ALL_KEYS)?;
            let tcfg = VirtioUserConfig::from_devargs(a)?;
            let mut cfg = VirtioNetConfig::features_from_devargs(a)?;
            cfg.port_id = id;
            let mem = mem.get_or_init(SharedMemory::new).clone();
            let path = tcfg.path.display().to_string();
            let failed = |e: String| DevArgsError::BadValue {
                key: "path".into(),
                value: format!("{path} ({e})"),
                expected: "the socket of a running vhost-user backend (net_vhost client=0)",
            };
            let t = VhostUserTransport::connect(tcfg, mem.clone())
                .map_err(|e| failed(e.to_string()))?;
            let d = VirtioNet::new(t, mem, cfg).map_err(|e| failed(e.to_string()))?;
            Ok(AnyPort::VirtioUser(Box::new(Port::new(id, d))))
        }),
    );
}
