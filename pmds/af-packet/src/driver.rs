//! The `net_af_packet` device: arguments, socket and ring set-up, control operations.

use crate::rx::{AfPacketRx, RxDrops, RxRing, V2Ring, V3Ring};
use crate::sys::{self, TpacketReq3};
use crate::tx::{AfPacketTx, TxDrops, TX_DATA_OFF};
use nix::errno::Errno;
use rdk_core::ethdev::{
    queue_cache, DescLimits, DevArgs, DevArgsError, DevInfo, DeviceReason, Driver, EthError,
    LinkStatus, MacAddr, PerQueue, PortConfig, QueueCounters, RssHashTypes, RxOffload,
    RxQueueConfig, TxOffload, TxQueueConfig, XStat,
};
use rdk_core::mbuf::{PktMbufPool, PORT_INVALID};
use rdk_os_linux::netif::{self, NetIf};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most queue pairs.
pub const MAX_QUEUES: u16 = 16;

/// The device arguments `net_af_packet` accepts (DPDK's, plus `blocktimeout`).
pub const DEVARGS_KEYS: &[&str] = &[
    "iface",
    "qpairs",
    "blocksz",
    "framesz",
    "framecnt",
    "qdisc_bypass",
    "blocktimeout",
    "rxversion",
];

/// Link speed reported while the interface runs (as DPDK's af_packet: 10G).
const SPEED_MBPS: u32 = 10_000;
const RX_CACHE_SIZE: usize = 256;
const PACKET_LOSS: libc::c_int = 14;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_VNET_HDR: libc::c_int = 15;
const L2_OVERHEAD: u32 = crate::tx::MTU_L2_OVERHEAD;

/// Ring geometry from the device arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    /// Bytes per block (a multiple of the page size; power of two).
    pub block_size: u32,
    /// Bytes per frame slot (TX) and nominal frame (RX accounting), a multiple of 16.
    pub frame_size: u32,
    /// Frames per ring.
    pub frame_count: u32,
    /// Milliseconds before the kernel hands over a partly filled RX block.
    pub block_timeout_ms: u32,
}

impl Default for RingGeometry {
    /// DPDK's defaults (blocksz 4096, framesz 2048, framecnt 512) for TX; RX uses 64 KiB
    /// blocks over the same memory, with a 1 ms block timeout so a quiet link is not slow.
    fn default() -> Self {
        Self {
            block_size: 4096,
            frame_size: 2048,
            frame_count: 512,
            block_timeout_ms: 1,
        }
    }
}

/// A `net_af_packet` device.
#[derive(Debug)]
pub struct AfPacketDriver {
    iface: String,
    qpairs: u16,
    geo: RingGeometry,
    qdisc_bypass: bool,
    rx_v2: bool,
    netif: Option<NetIf>,
    ifindex: u32,
    /// The hash fanout group of the receive sockets: picked by the kernel (unique in the
    /// namespace) when the first one joins after a configure.
    fanout_id: Option<u16>,
    multi_rx: bool,
    promisc: bool,
    rx_socks: Vec<Arc<OwnedFd>>,
    rx_drops: PerQueue<RxDrops>,
    tx_drops: PerQueue<TxDrops>,
    kernel_drops: AtomicU64,
    stats_lock: Mutex<()>,
    gone: Arc<AtomicBool>,
    mtu: u16,
    /// The MTU as the transmit queues read it (they refuse longer frames).
    tx_mtu: Arc<AtomicU32>,
    port_id: u16,
    /// The port's transmit offloads (queues may add their own).
    tx_offloads: TxOffload,
}

/// The offloads the transmit queues do (behind their `PACKET_VNET_HDR` headers).
const CSUM_OFFLOADS: TxOffload = TxOffload::IPV4_CKSUM
    .union(TxOffload::UDP_CKSUM)
    .union(TxOffload::TCP_CKSUM)
    .union(TxOffload::TCP_TSO);

fn os_error(op: &'static str, e: Errno) -> EthError {
    let text = match e {
        Errno::EPERM | Errno::EACCES => "permission denied: run as root or grant CAP_NET_RAW",
        Errno::ENOMEM => "the kernel could not allocate the ring; use a smaller blocksz/framecnt",
        Errno::EINVAL => "the kernel refused the ring geometry; check blocksz/framesz/framecnt",
        Errno::ENODEV | Errno::ENXIO => "the interface is gone",
        _ => "an AF_PACKET call failed",
    };
    EthError::Device {
        op,
        reason: DeviceReason {
            text,
            code: e as i32,
        },
    }
}

impl AfPacketDriver {
    /// A port on `iface` with `qpairs` queue pairs and the default rings.
    pub fn new(iface: &str, qpairs: u16) -> Self {
        Self {
            iface: iface.to_string(),
            qpairs: qpairs.clamp(1, MAX_QUEUES),
            geo: RingGeometry::default(),
            // DPDK's net_af_packet has bypassed the qdisc layer by default since 2014.
            qdisc_bypass: true,
            rx_v2: false,
            netif: None,
            ifindex: 0,
            fanout_id: None,
            multi_rx: false,
            promisc: false,
            rx_socks: Vec::new(),
            rx_drops: PerQueue::default(),
            tx_drops: PerQueue::default(),
            kernel_drops: AtomicU64::new(0),
            stats_lock: Mutex::new(()),
            gone: Arc::new(AtomicBool::new(false)),
            mtu: 1500,
            tx_mtu: Arc::new(AtomicU32::new(1500)),
            port_id: PORT_INVALID,
            tx_offloads: TxOffload::empty(),
        }
    }

    /// A device from `net_af_packetN,iface=X[,qpairs=N][,blocksz=B][,framesz=F][,framecnt=C]
    /// [,qdisc_bypass=0|1][,blocktimeout=MS]`.
    pub fn from_devargs(args: &DevArgs) -> Result<Self, DevArgsError> {
        args.check_keys(DEVARGS_KEYS)?;
        let iface = args.get("iface").ok_or(DevArgsError::Required {
            driver: "net_af_packet".into(),
            key: "iface",
        })?;
        rdk_os_linux::netif::ifname(iface).map_err(|_| DevArgsError::BadValue {
            key: "iface".into(),
            value: iface.into(),
            expected: "an interface name of 1 to 15 bytes",
        })?;
        let qpairs: u16 = args.get_num("qpairs", 1, "a queue-pair count, 1..=16")?;
        if !(1..=MAX_QUEUES).contains(&qpairs) {
            return Err(DevArgsError::BadValue {
                key: "qpairs".into(),
                value: qpairs.to_string(),
                expected: "a queue-pair count, 1..=16",
            });
        }
        let d = RingGeometry::default();
        let geo = RingGeometry {
            block_size: args.get_num(
                "blocksz",
                d.block_size,
                "bytes per block, a power of two >= 4096",
            )?,
            frame_size: args.get_num(
                "framesz",
                d.frame_size,
                "bytes per frame, a multiple of 16",
            )?,
            frame_count: args.get_num("framecnt", d.frame_count, "frames per ring")?,
            block_timeout_ms: args.get_num("blocktimeout", d.block_timeout_ms, "milliseconds")?,
        };
        let bad = |key: &str, v: u32, expected: &'static str| DevArgsError::BadValue {
            key: key.into(),
            value: v.to_string(),
            expected,
        };
        if !geo.block_size.is_power_of_two() || geo.block_size < 4096 {
            return Err(bad("blocksz", geo.block_size, "a power of two >= 4096"));
        }
        if !geo.frame_size.is_multiple_of(16)
            || geo.frame_size <= TX_DATA_OFF as u32 + 14
            || geo.frame_size > geo.block_size
        {
            return Err(bad(
                "framesz",
                geo.frame_size,
                "a multiple of 16, above 46, at most blocksz",
            ));
        }
        if geo.frame_count == 0
            || !geo
                .frame_count
                .is_multiple_of(geo.block_size / geo.frame_size)
        {
            return Err(bad(
                "framecnt",
                geo.frame_count,
                "a positive multiple of blocksz / framesz",
            ));
        }
        let mut drv = Self::new(iface, qpairs);
        drv.geo = geo;
        drv.qdisc_bypass = args.get_bool("qdisc_bypass", true)?;
        drv.rx_v2 = match args.get_num::<u8>("rxversion", 3, "2 or 3")? {
            2 => true,
            3 => false,
            v => {
                return Err(DevArgsError::BadValue {
                    key: "rxversion".into(),
                    value: v.to_string(),
                    expected: "2 (a slot per frame, lowest latency) or 3 (blocks, the default)",
                })
            }
        };
        Ok(drv)
    }

    /// Receives through a `TPACKET_V2` ring (`rxversion=2`): every frame is handed over at
    /// once, where V3 waits for a full block or the block timer.
    pub fn with_rx_v2(mut self, on: bool) -> Self {
        self.rx_v2 = on;
        self
    }

    /// Stamps received mbufs with input port `id`.
    pub fn with_port_id(mut self, id: u16) -> Self {
        self.port_id = id;
        self
    }

    /// The interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Whether the interface disappeared under the port.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    fn max_frame(&self) -> u32 {
        self.mtu as u32 + L2_OVERHEAD
    }

    /// Reads (and resets) the kernel's drop counters of every receive socket into ours.
    fn collect_kernel_drops(&self) {
        let _g = self.stats_lock.lock();
        for s in &self.rx_socks {
            if let Ok(st) = sys::take_stats(s) {
                self.kernel_drops
                    .fetch_add(st.drops as u64, Ordering::Relaxed);
            }
        }
    }

    /// Frames the kernel dropped because a receive ring was full.
    pub fn kernel_drops(&self) -> u64 {
        self.collect_kernel_drops();
        self.kernel_drops.load(Ordering::Relaxed)
    }
}

/// Next power of two of at least `min` and `n`.
fn pow2_at_least(n: u32, min: u32) -> u32 {
    n.max(min).next_power_of_two()
}

impl Driver for AfPacketDriver {
    type Rx = AfPacketRx;
    type Tx = AfPacketTx;

    fn info(&self) -> DevInfo {
        let lim = DescLimits {
            min: 1,
            max: 4096,
            align: 1,
        };
        DevInfo {
            driver_name: "net_af_packet",
            max_rx_queues: self.qpairs,
            max_tx_queues: self.qpairs,
            rx_desc_lim: lim,
            tx_desc_lim: lim,
            min_mtu: 68,
            max_mtu: 9000,
            rx_offload_capa: RxOffload::SCATTER,
            tx_offload_capa: TxOffload::MULTI_SEGS.union(CSUM_OFFLOADS),
            rss_hash_types: RssHashTypes::empty(),
            speed_mbps: SPEED_MBPS,
        }
    }

    fn configure(&mut self, config: &PortConfig) -> Result<(), EthError> {
        let netif = NetIf::open(&self.iface).map_err(|e| e.to_eth("configure"))?;
        self.ifindex = netif.index().map_err(|e| e.to_eth("configure"))?;
        self.mtu = netif::ethdev::configure_mtu(&netif, config.mtu)?;
        self.tx_mtu.store(self.mtu as u32, Ordering::Relaxed);
        self.netif = Some(netif);
        self.multi_rx = config.nb_rxq > 1;
        self.tx_offloads = config.tx_offloads;
        self.collect_kernel_drops();
        self.rx_socks.clear();
        self.fanout_id = None;
        self.gone.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// A TPACKET_V3 socket (V2 with `rxversion=2`) bound to the interface, in a hash fanout
    /// group when there are several queues, ignoring the interface's outgoing frames.
    fn rx_queue_setup(
        &mut self,
        queue: u16,
        _nb_desc: u16,
        pool: &PktMbufPool,
        _config: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<AfPacketRx, EthError> {
        const OP: &str = "rx_queue_setup";
        let e = |x| os_error(OP, x);
        // Everything that can fail comes before the socket is recorded: a socket left in
        // `rx_socks` by a failed set-up would stay bound, in the fanout group, taking its
        // share of the traffic into a ring nobody reads.
        let cache = queue_cache(pool, RX_CACHE_SIZE, OP)?;
        let sock = sys::packet_socket().map_err(e)?;
        let total = self.geo.frame_size as u64 * self.geo.frame_count as u64;
        let (req, map_len) = if self.rx_v2 {
            sys::set_opt(&sock, sys::PACKET_VERSION, &sys::TPACKET_V2).map_err(e)?;
            // A slot holds the header, the kernel's alignment padding and an MTU frame.
            let frame_size = pow2_at_least(self.max_frame() + 128, self.geo.frame_size);
            let block_size = self.geo.block_size.max(frame_size);
            let block_nr = (total / block_size as u64).max(1) as u32;
            let req = TpacketReq3 {
                block_size,
                block_nr,
                frame_size,
                frame_nr: block_nr * (block_size / frame_size),
                ..TpacketReq3::default()
            };
            let v2 = [req.block_size, req.block_nr, req.frame_size, req.frame_nr];
            sys::set_opt(&sock, sys::PACKET_RX_RING, &v2).map_err(e)?;
            (req, block_size as usize * block_nr as usize)
        } else {
            sys::set_opt(&sock, sys::PACKET_VERSION, &sys::TPACKET_V3).map_err(e)?;
            // A frame must fit a block with its headers: blocks of at least the MTU, rounded.
            let block_size =
                pow2_at_least(self.max_frame() + 256, self.geo.block_size.max(1 << 16));
            let block_nr = (total / block_size as u64).clamp(4, 1024) as u32;
            let req = TpacketReq3 {
                block_size,
                block_nr,
                frame_size: self.geo.frame_size,
                frame_nr: block_nr * (block_size / self.geo.frame_size),
                retire_blk_tov: self.geo.block_timeout_ms,
                sizeof_priv: 0,
                feature_req_word: 0,
            };
            sys::set_opt(&sock, sys::PACKET_RX_RING, &req).map_err(e)?;
            (req, block_size as usize * block_nr as usize)
        };
        let map = sys::map_ring(&sock, map_len).map_err(e)?;
        // Our own transmissions (and the host's) leaving this interface are not received
        // frames; older kernels without the option deliver them, which is only extra traffic.
        let _ = sys::set_opt(&sock, PACKET_IGNORE_OUTGOING, &1i32);
        sys::bind(&sock, self.ifindex, true).map_err(e)?;
        if self.multi_rx {
            self.fanout_id = Some(sys::join_fanout(&sock, self.fanout_id).map_err(e)?);
        }
        if self.promisc {
            sys::promisc(&sock, self.ifindex, true).map_err(e)?;
        }
        let sock = Arc::new(sock);
        // The socket this one replaces: its drops so far still count.
        self.collect_kernel_drops();
        if self.rx_socks.len() <= queue as usize {
            self.rx_socks
                .resize_with(queue as usize + 1, || sock.clone());
        }
        self.rx_socks[queue as usize] = sock.clone();
        // Kept across setups: the reasons carry on with the errors they break down.
        let drops = self.rx_drops.kept(queue);
        let ring = if self.rx_v2 {
            RxRing::V2(V2Ring::new(
                sock,
                map,
                req.frame_size as usize,
                req.frame_nr as usize,
                counters,
                drops,
                self.port_id,
            ))
        } else {
            RxRing::V3(V3Ring::new(
                sock,
                map,
                req.block_size as usize,
                req.block_nr as usize,
                counters,
                drops,
                self.port_id,
            ))
        };
        Ok(AfPacketRx::new(ring, pool.clone(), cache))
    }

    /// A TPACKET_V2 socket with a TX ring (it receives nothing: bound to no protocol).
    fn tx_queue_setup(
        &mut self,
        queue: u16,
        _nb_desc: u16,
        config: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<AfPacketTx, EthError> {
        const OP: &str = "tx_queue_setup";
        let offloads = (self.tx_offloads | config.offloads) & CSUM_OFFLOADS;
        let e = |x| os_error(OP, x);
        let sock = sys::packet_socket().map_err(e)?;
        sys::set_opt(&sock, sys::PACKET_VERSION, &sys::TPACKET_V2).map_err(e)?;
        sys::set_opt(&sock, PACKET_LOSS, &1i32).map_err(e)?;
        // Each frame behind a virtio-net header whose hdr_len covers all of it: the kernel
        // then copies the frame into the socket buffer instead of attaching the ring's pages
        // to it, which a veth (or any forwarding) has to copy out again into a fresh page per
        // frame (skb_copy_ubufs) before the slot is released. Refused (an old kernel): plain
        // frames, zero-copy pages.
        let vnet = sys::set_opt(&sock, PACKET_VNET_HDR, &1i32).is_ok();
        let needs_vnet = TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM | TxOffload::TCP_TSO;
        if !vnet && offloads.intersects(needs_vnet) {
            return Err(EthError::Device {
                op: OP,
                reason: DeviceReason {
                    text: "this kernel refused PACKET_VNET_HDR, which TCP/UDP checksum and TCP \
                           segmentation offloads need; configure the port without them",
                    code: 0,
                },
            });
        }
        if self.qdisc_bypass {
            sys::set_opt(&sock, sys::PACKET_QDISC_BYPASS, &1i32).map_err(e)?;
        }
        // Slots big enough for an MTU-sized frame after the headers.
        let pre = if vnet { crate::tx::VNET_HDR as u32 } else { 0 };
        let frame_size = pow2_at_least(
            self.max_frame() + TX_DATA_OFF as u32 + pre,
            self.geo.frame_size,
        );
        let block_size = self.geo.block_size.max(frame_size);
        let total = self.geo.frame_size as u64 * self.geo.frame_count as u64;
        let block_nr = (total / block_size as u64).max(1) as u32;
        let frame_nr = block_nr * (block_size / frame_size);
        let req = TpacketReq3 {
            block_size,
            block_nr,
            frame_size,
            frame_nr,
            ..TpacketReq3::default()
        };
        // The V2 request is the first four fields of the V3 one.
        sys::set_opt(
            &sock,
            sys::PACKET_TX_RING,
            &[req.block_size, req.block_nr, req.frame_size, req.frame_nr],
        )
        .map_err(e)?;
        let map = sys::map_ring(&sock, block_size as usize * block_nr as usize).map_err(e)?;
        sys::bind(&sock, self.ifindex, false).map_err(e)?;
        // Segmentation requests are larger than a slot: they go on a second, ring-less socket
        // of the same kind, one writev each (after the ring's frames queued before them).
        let gso = if offloads.contains(TxOffload::TCP_TSO) {
            let g = sys::packet_socket().map_err(e)?;
            sys::set_opt(&g, PACKET_VNET_HDR, &1i32).map_err(e)?;
            if self.qdisc_bypass {
                sys::set_opt(&g, sys::PACKET_QDISC_BYPASS, &1i32).map_err(e)?;
            }
            sys::bind(&g, self.ifindex, false).map_err(e)?;
            Some(g)
        } else {
            None
        };
        let drops = self.tx_drops.kept(queue);
        Ok(AfPacketTx::new(
            Arc::new(sock),
            map,
            crate::tx::TxSlots {
                frame_size: frame_size as usize,
                frame_nr: frame_nr as usize,
                vnet,
                offloads,
                mtu: self.tx_mtu.clone(),
            },
            counters,
            drops,
            self.gone.clone(),
            gso,
        ))
    }

    fn start(&mut self, _rx: &mut [AfPacketRx], _tx: &mut [AfPacketTx]) -> Result<(), EthError> {
        Ok(())
    }

    /// Waits (briefly) for frames still marked in the TX rings to leave.
    fn stop(&mut self, _rx: &mut [AfPacketRx], tx: &mut [AfPacketTx]) -> Result<(), EthError> {
        for _ in 0..100 {
            if tx.iter().all(|q| q.pending() == 0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    fn close(&mut self) {
        self.collect_kernel_drops();
        self.rx_socks.clear();
        self.netif = None;
    }

    fn link(&self) -> LinkStatus {
        netif::ethdev::link(self.netif.as_ref(), &self.gone, SPEED_MBPS)
    }

    fn mac_addr(&self) -> MacAddr {
        netif::ethdev::mac_addr(self.netif.as_ref())
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), EthError> {
        netif::ethdev::set_mac_addr(self.netif.as_ref(), mac)
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), EthError> {
        netif::ethdev::set_mtu(self.netif.as_ref(), mtu)?;
        self.mtu = mtu;
        self.tx_mtu.store(mtu as u32, Ordering::Relaxed);
        Ok(())
    }

    /// Promiscuous through a `PACKET_MR_PROMISC` membership of each receive socket: the
    /// kernel counts memberships, so this never fights other users of the interface.
    /// Idempotent: a membership is a count in the kernel, so a second "on" would need a
    /// second "off", and an "off" without one fails (`EADDRNOTAVAIL`).
    fn set_promiscuous(&mut self, on: bool) -> Result<(), EthError> {
        if on == self.promisc {
            return Ok(());
        }
        for (i, s) in self.rx_socks.iter().enumerate() {
            // A socket in several slots (queues set up out of order) counts once.
            if self.rx_socks[..i].iter().any(|t| Arc::ptr_eq(s, t)) {
                continue;
            }
            if let Err(e) = sys::promisc(s, self.ifindex, on) {
                // Undo what this call did, so the sockets agree with `self.promisc` again.
                for (j, t) in self.rx_socks[..i].iter().enumerate() {
                    if !self.rx_socks[..j].iter().any(|u| Arc::ptr_eq(t, u)) {
                        let _ = sys::promisc(t, self.ifindex, !on);
                    }
                }
                return Err(os_error("set_promiscuous", e));
            }
        }
        self.promisc = on;
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), EthError> {
        // Promiscuous includes all multicast; without it, all-multicast needs the interface
        // flag (one switch for every user, as DPDK's af_packet does it).
        netif::ethdev::set_allmulticast(self.netif.as_ref(), on)
    }

    /// Zeroes the drop reasons and the kernel's receive-ring drops (those counted so far are
    /// taken from the kernel first, so they do not come back).
    fn stats_reset(&self) {
        self.collect_kernel_drops();
        self.kernel_drops.store(0, Ordering::Relaxed);
        self.rx_drops.iter().for_each(RxDrops::reset);
        self.tx_drops.iter().for_each(TxDrops::reset);
    }

    fn xstats(&self, out: &mut Vec<XStat>) {
        XStat::extend(
            out,
            &[
                ("rx_kernel_ring_drops", self.kernel_drops()),
                ("rx_truncated", self.rx_drops.sum(|d| &d.truncated)),
                (
                    "rx_ring_anomalies",
                    self.rx_drops.sum(|d| &d.ring_anomalies),
                ),
                ("tx_frames_too_big", self.tx_drops.sum(|d| &d.too_big)),
                ("tx_frames_too_small", self.tx_drops.sum(|d| &d.too_small)),
                ("tx_ring_full", self.tx_drops.sum(|d| &d.ring_full)),
                (
                    "tx_bad_offload_request",
                    self.tx_drops.sum(|d| &d.bad_offload),
                ),
                ("interface_gone", self.is_gone() as u64),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devargs() {
        let a = DevArgs::parse("net_af_packet0,iface=veth0,qpairs=2,qdisc_bypass=1").unwrap();
        let d = AfPacketDriver::from_devargs(&a).unwrap();
        assert_eq!((d.iface(), d.qpairs, d.qdisc_bypass), ("veth0", 2, true));
        // Bypass is the default, as in DPDK; 0 sends through the qdisc.
        let d = AfPacketDriver::from_devargs(&DevArgs::parse("net_af_packet0,iface=v").unwrap());
        assert!(d.unwrap().qdisc_bypass);
        let a = DevArgs::parse("net_af_packet0,iface=v,qdisc_bypass=0").unwrap();
        assert!(!AfPacketDriver::from_devargs(&a).unwrap().qdisc_bypass);
        for bad in [
            "net_af_packet0",
            "net_af_packet0,iface=x,qpairs=0",
            "net_af_packet0,iface=x,qpairs=17",
            "net_af_packet0,iface=x,blocksz=5000",
            "net_af_packet0,iface=x,framesz=100",
            "net_af_packet0,iface=x,framecnt=3",
            "net_af_packet0,iface=x,fanout=1",
            "net_af_packet0,iface=x,rxversion=1",
        ] {
            let r = AfPacketDriver::from_devargs(&DevArgs::parse(bad).unwrap());
            assert!(r.is_err(), "{bad}");
        }
    }
}
