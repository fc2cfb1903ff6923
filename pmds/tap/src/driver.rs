//! The `net_tap` device: its arguments, the interface's life, and the control operations.

use crate::queue::{Drops, RxCore, TapRx, TapTx};
use crate::tun::{open_queue, TunError};
use rdk_core::ethdev::{
    queue_cache, DescLimits, DevArgs, DevArgsError, DevInfo, DeviceReason, Driver, EthError,
    LinkStatus, MacAddr, PerQueue, PortConfig, QueueCounters, RssHashTypes, RxOffload,
    RxQueueConfig, TxOffload, TxQueueConfig, XStat,
};
use rdk_core::mbuf::{PktMbufPool, PORT_INVALID};
use rdk_os_linux::netif::{flags, NetIf, NetIfError};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Most queue pairs (DPDK's `RTE_PMD_TAP_MAX_QUEUES`).
pub const MAX_QUEUES: u16 = 16;

/// The device arguments `net_tap` accepts.
pub const DEVARGS_KEYS: &[&str] = &["iface", "mac"];

/// Link speed reported (DPDK's net_tap reports 10G).
const SPEED_MBPS: u32 = 10_000;

/// Mbufs a receive queue's own cache holds at most.
const RX_CACHE_SIZE: usize = 256;

/// Ethernet header plus one VLAN tag: what a frame adds to the MTU (TAP frames carry no FCS).
pub(crate) const L2_OVERHEAD: u32 = 18;

const DESC_LIMITS: DescLimits = DescLimits {
    min: 1,
    max: 4096,
    align: 1,
};

/// A `net_tap` device: a TAP interface of the kernel, one file descriptor per queue pair
/// (receive and transmit queue `i` share descriptor `i`).
#[derive(Debug)]
pub struct TapDriver {
    iface: String,
    mac: Option<MacAddr>,
    fds: Vec<Arc<OwnedFd>>,
    netif: Option<NetIf>,
    /// Whether rdk created the interface (then it disappears when the last queue closes).
    created: bool,
    gone: Arc<AtomicBool>,
    mtu: u16,
    /// The longest frame the MTU allows, shared with the queues so that a later `set_mtu`
    /// reaches them.
    max_frame: Arc<AtomicU32>,
    port_id: u16,
    rx_drops: PerQueue<Drops>,
    tx_drops: PerQueue<Drops>,
    /// The queues are open with `IFF_VNET_HDR` (TCP/UDP checksum offload asked for).
    vnet: bool,
    /// The port's transmit offloads (queues may add their own).
    tx_offloads: TxOffload,
    /// The port's receive offloads (queues may add their own).
    rx_offloads: RxOffload,
}

/// The receive offloads checked in software.
const RX_CSUM_OFFLOADS: RxOffload = RxOffload::IPV4_CKSUM
    .union(RxOffload::UDP_CKSUM)
    .union(RxOffload::TCP_CKSUM);

/// The transmit offloads that need the kernel (a net header in front of every frame).
const KERNEL_TX_OFFLOADS: TxOffload = TxOffload::UDP_CKSUM
    .union(TxOffload::TCP_CKSUM)
    .union(TxOffload::TCP_TSO);

fn vnet_mode_fixed(op: &'static str) -> EthError {
    EthError::Device {
        op,
        reason: DeviceReason {
            text: "TCP/UDP checksum and TCP segmentation offloads put a header in front of every frame on all the \
                   TAP's queues, fixed when they open: ask for it in the port's first \
                   configure (PortConfig::tx_offloads), or close the port and create it again",
            code: 0,
        },
    }
}

fn tun_error(op: &'static str, e: TunError) -> EthError {
    let text = match e {
        TunError::Permission => "permission denied: run as root or grant CAP_NET_ADMIN",
        TunError::NoTunDevice => "/dev/net/tun is missing: load the tun module",
        TunError::NotMultiQueueTap { .. } => {
            "the interface exists but is not a multi-queue TAP; pick another name"
        }
        TunError::Name(_) => "bad interface name: 1 to 15 bytes",
        TunError::HeaderModeDiffers { .. } => {
            "the interface's other queues are open in the other net-header mode: give this \
             port the same TCP/UDP checksum and segmentation offloads, or use another interface"
        }
        TunError::Os { .. } => "opening the TAP queue failed",
    };
    let code = match e {
        TunError::Os { errno, .. } => errno as i32,
        _ => 0,
    };
    EthError::Device {
        op,
        reason: DeviceReason { text, code },
    }
}

impl TapDriver {
    /// A port on TAP interface `iface`, created on configure if it does not exist, attached
    /// if it does (it must then be a multi-queue TAP).
    pub fn new(iface: &str) -> Self {
        Self {
            iface: iface.to_string(),
            mac: None,
            fds: Vec::new(),
            netif: None,
            created: false,
            gone: Arc::new(AtomicBool::new(false)),
            mtu: 1500,
            max_frame: Arc::new(AtomicU32::new(1500 + L2_OVERHEAD)),
            port_id: PORT_INVALID,
            rx_drops: PerQueue::default(),
            tx_drops: PerQueue::default(),
            vnet: false,
            tx_offloads: TxOffload::empty(),
            rx_offloads: RxOffload::empty(),
        }
    }

    /// A device from `net_tapN[,iface=NAME][,mac=xx:xx:xx:xx:xx:xx]`. Without `iface` the
    /// interface is named `dtapN`, as DPDK names it.
    pub fn from_devargs(args: &DevArgs) -> Result<Self, DevArgsError> {
        args.check_keys(DEVARGS_KEYS)?;
        let iface = match args.get("iface") {
            Some(i) => i.to_string(),
            None => format!(
                "dtap{}",
                args.name.trim_start_matches(|c: char| !c.is_ascii_digit())
            ),
        };
        rdk_os_linux::netif::ifname(&iface).map_err(|_| DevArgsError::BadValue {
            key: "iface".into(),
            value: iface.clone(),
            expected: "an interface name of 1 to 15 bytes",
        })?;
        let mut d = Self::new(&iface);
        if let Some(m) = args.get("mac") {
            d.mac = Some(parse_mac(m).ok_or(DevArgsError::BadValue {
                key: "mac".into(),
                value: m.to_string(),
                expected: "a unicast MAC address, xx:xx:xx:xx:xx:xx",
            })?);
        }
        Ok(d)
    }

    /// Stamps received mbufs with input port `id`.
    pub fn with_port_id(mut self, id: u16) -> Self {
        self.port_id = id;
        self
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Whether rdk created the interface (it is removed when the port closes).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether the interface disappeared under the port.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    fn netif(&self, op: &'static str) -> Result<&NetIf, EthError> {
        self.netif.as_ref().ok_or(EthError::Device {
            op,
            reason: DeviceReason {
                text: "the interface is not open yet; configure the port first",
                code: 0,
            },
        })
    }

    fn max_frame(&self) -> u32 {
        self.mtu as u32 + L2_OVERHEAD
    }
}

/// Parses `xx:xx:xx:xx:xx:xx` into a unicast address.
fn parse_mac(s: &str) -> Option<MacAddr> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    let m = MacAddr(mac);
    (parts.next().is_none() && m.is_valid_unicast()).then_some(m)
}

impl Driver for TapDriver {
    type Rx = TapRx;
    type Tx = TapTx;

    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: "net_tap",
            max_rx_queues: MAX_QUEUES,
            max_tx_queues: MAX_QUEUES,
            rx_desc_lim: DESC_LIMITS,
            tx_desc_lim: DESC_LIMITS,
            min_mtu: 68,
            max_mtu: 9000,
            rx_offload_capa: RxOffload::SCATTER.union(RX_CSUM_OFFLOADS),
            tx_offload_capa: TxOffload::MULTI_SEGS
                | TxOffload::IPV4_CKSUM
                | TxOffload::UDP_CKSUM
                | TxOffload::TCP_CKSUM
                | TxOffload::TCP_TSO,
            rss_hash_types: RssHashTypes::empty(),
            speed_mbps: SPEED_MBPS,
        }
    }

    /// Opens one TAP queue per queue pair (creating the interface with the first if needed),
    /// sets the MAC from `mac=` and the MTU from the configuration.
    fn configure(&mut self, config: &PortConfig) -> Result<(), EthError> {
        let want = config.nb_rxq.max(config.nb_txq) as usize;
        let vnet = config.tx_offloads.intersects(KERNEL_TX_OFFLOADS);
        if self.fds.is_empty() {
            self.created = !NetIf::exists(&self.iface);
            self.vnet = vnet;
        } else if vnet != self.vnet {
            return Err(vnet_mode_fixed("configure"));
        }
        self.tx_offloads = config.tx_offloads;
        self.rx_offloads = config.rx_offloads;
        while self.fds.len() < want {
            let fd = open_queue(&self.iface, self.vnet).map_err(|e| tun_error("configure", e))?;
            self.fds.push(Arc::new(fd));
        }
        // Fewer queues than before: the kernel detaches the queues whose fds close.
        self.fds.truncate(want.max(1));
        let netif = NetIf::open(&self.iface).map_err(|e| e.to_eth("configure"))?;
        if let Some(mac) = self.mac {
            netif
                .set_mac(mac.0)
                .map_err(|e| e.to_eth("configure (set MAC)"))?;
        }
        self.mtu = rdk_os_linux::netif::ethdev::configure_mtu(&netif, config.mtu)?;
        self.max_frame.store(self.max_frame(), Ordering::Relaxed);
        self.netif = Some(netif);
        self.gone.store(false, Ordering::Relaxed);
        // The port's counters start afresh with a configure; so do the drop reasons. A queue
        // set up again keeps its counters, and so its drop reasons (`PerQueue::kept`).
        self.rx_drops = PerQueue::default();
        self.tx_drops = PerQueue::default();
        Ok(())
    }

    fn rx_queue_setup(
        &mut self,
        queue: u16,
        _nb_desc: u16,
        pool: &PktMbufPool,
        config: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<TapRx, EthError> {
        let verify = (self.rx_offloads | config.offloads).intersects(RX_CSUM_OFFLOADS);
        let fd = self
            .fds
            .get(queue as usize)
            .cloned()
            .ok_or(EthError::Device {
                op: "rx_queue_setup",
                reason: DeviceReason {
                    text: "no TAP queue for this id; configure the port first",
                    code: 0,
                },
            })?;
        // A fresh mbuf's tailroom: the data room (which excludes the headroom).
        let room = pool.data_room() as u32;
        if room == 0 {
            return Err(EthError::BuffersTooSmall {
                data_room: pool.data_room(),
                needed: self.max_frame(),
            });
        }
        let cache = queue_cache(pool, RX_CACHE_SIZE, "rx_queue_setup")?;
        let drops = self.rx_drops.kept(queue);
        Ok(TapRx::new(
            RxCore {
                fd,
                counters,
                drops,
                room,
                max_frame: self.max_frame.clone(),
                seen_max: 0,
                segs: 1,
                port_id: self.port_id,
                gone: self.gone.clone(),
                vnet: self.vnet,
                verify,
            },
            pool.clone(),
            cache,
        ))
    }

    fn tx_queue_setup(
        &mut self,
        queue: u16,
        _nb_desc: u16,
        config: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<TapTx, EthError> {
        let offloads = self.tx_offloads | config.offloads;
        if offloads.intersects(KERNEL_TX_OFFLOADS) && !self.vnet {
            return Err(vnet_mode_fixed("tx_queue_setup"));
        }
        let fd = self
            .fds
            .get(queue as usize)
            .cloned()
            .ok_or(EthError::Device {
                op: "tx_queue_setup",
                reason: DeviceReason {
                    text: "no TAP queue for this id; configure the port first",
                    code: 0,
                },
            })?;
        let drops = self.tx_drops.kept(queue);
        Ok(TapTx::new(
            fd,
            counters,
            drops,
            self.max_frame.clone(),
            self.gone.clone(),
            self.vnet,
            offloads & (KERNEL_TX_OFFLOADS | TxOffload::IPV4_CKSUM),
        ))
    }

    /// Brings the interface up (as DPDK's tap does on start).
    fn start(&mut self, _rx: &mut [TapRx], _tx: &mut [TapTx]) -> Result<(), EthError> {
        self.netif("start")?
            .set_flags(flags::UP, true)
            .map_err(|e| e.to_eth("start"))
    }

    /// Takes the interface down; an interface that vanished is already down.
    fn stop(&mut self, _rx: &mut [TapRx], _tx: &mut [TapTx]) -> Result<(), EthError> {
        match self.netif("stop")?.set_flags(flags::UP, false) {
            Ok(()) | Err(NetIfError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_eth("stop")),
        }
    }

    /// Closes the queues: an interface rdk created disappears with them.
    fn close(&mut self) {
        self.netif = None;
        self.fds.clear();
    }

    fn link(&self) -> LinkStatus {
        let up = !self.is_gone()
            && self
                .netif
                .as_ref()
                .and_then(|n| n.is_running().ok())
                .unwrap_or(false);
        LinkStatus {
            up,
            speed_mbps: if up { SPEED_MBPS } else { 0 },
            full_duplex: up,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.netif
            .as_ref()
            .and_then(|n| n.mac().ok())
            .map(MacAddr)
            .or(self.mac)
            .unwrap_or(MacAddr([0; 6]))
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), EthError> {
        self.netif("set_mac_addr")?
            .set_mac(mac.0)
            .map_err(|e| e.to_eth("set_mac_addr"))?;
        self.mac = Some(mac);
        Ok(())
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), EthError> {
        self.netif("set_mtu")?
            .set_mtu(mtu)
            .map_err(|e| e.to_eth("set_mtu"))?;
        self.mtu = mtu;
        self.max_frame.store(self.max_frame(), Ordering::Relaxed);
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), EthError> {
        self.netif("set_promiscuous")?
            .set_flags(flags::PROMISC, on)
            .map_err(|e| e.to_eth("set_promiscuous"))
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), EthError> {
        self.netif("set_allmulticast")?
            .set_flags(flags::ALLMULTI, on)
            .map_err(|e| e.to_eth("set_allmulticast"))
    }

    fn xstats(&self, out: &mut Vec<XStat>) {
        XStat::extend(
            out,
            &[
                ("rx_frames_too_big", self.rx_drops.sum(|d| &d.rx_too_big)),
                ("tx_frames_too_big", self.tx_drops.sum(|d| &d.tx_too_big)),
                (
                    "tx_too_many_segments",
                    self.tx_drops.sum(|d| &d.tx_too_many_segs),
                ),
                ("tx_kernel_queue_full", self.tx_drops.sum(|d| &d.tx_full)),
                ("rx_bad_net_header", self.rx_drops.sum(|d| &d.bad_offload)),
                (
                    "tx_bad_offload_request",
                    self.tx_drops.sum(|d| &d.bad_offload),
                ),
                ("interface_gone", self.is_gone() as u64),
            ],
        );
    }

    /// Zeroes the drop reasons with the port's counters they break down (`interface_gone`
    /// is a state, not a count: it stays).
    fn stats_reset(&self) {
        self.rx_drops
            .iter()
            .chain(self.tx_drops.iter())
            .for_each(Drops::reset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devargs() {
        let a = DevArgs::parse("net_tap3,iface=foo0,mac=02:00:00:00:00:01").unwrap();
        let d = TapDriver::from_devargs(&a).unwrap();
        assert_eq!(d.iface(), "foo0");
        assert_eq!(d.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        let d = TapDriver::from_devargs(&DevArgs::parse("net_tap3").unwrap()).unwrap();
        assert_eq!(d.iface(), "dtap3", "DPDK's default name");
        for bad in [
            "net_tap0,iface=this-name-is-too-long",
            "net_tap0,mac=01:00:00:00:00:01",
            "net_tap0,mac=zz",
            "net_tap0,remote=eth0",
        ] {
            let e = TapDriver::from_devargs(&DevArgs::parse(bad).unwrap()).unwrap_err();
            assert!(!e.to_string().is_empty(), "{bad}");
        }
    }
}
