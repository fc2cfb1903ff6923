//! The `net_af_xdp` device: arguments, sockets, UMEMs, the XDP program, control operations.
//!
//! Sockets live from `start` to `stop`: start builds one socket per queue pair (UMEM = the rx
//! queue's pool, four rings, bind), puts them in an `XSKMAP` and attaches the redirect program;
//! stop detaches the program and closes the sockets, which returns every mbuf the kernel held
//! to the pool. So a stopped port holds no kernel resources and no mbufs but its caches'.

use crate::bpf;
use crate::error::AfXdpError;
use crate::netlink::{
    Rtnl, XDP_FLAGS_DRV_MODE, XDP_FLAGS_REPLACE, XDP_FLAGS_SKB_MODE, XDP_FLAGS_UPDATE_IF_NOEXIST,
};
use crate::ring::Ring;
use crate::rx::{AfXdpRx, RxDrops, RxLive};
use crate::sys::{self, XdpStatistics};
use crate::tx::{AfXdpTx, TxDrops, TxLive};
use crate::umem::Umem;
use crate::xsk::XskSock;
use nix::errno::Errno;
use rdk_core::ethdev::{
    queue_cache, DescLimits, DevArgs, DevArgsError, DevInfo, Driver, EthError, LinkStatus, MacAddr,
    PerQueue, PortConfig, QueueCounters, RssHashTypes, RxOffload, RxQueueConfig, TxOffload,
    TxQueueConfig, XStat,
};
use rdk_core::mbuf::{PktMbufPool, PORT_INVALID};
use rdk_os_linux::netif::{self, NetIf, NetIfError};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Most queues.
pub const MAX_QUEUES: u16 = 16;

/// The device arguments `net_af_xdp` accepts (DPDK's names where they exist).
pub const DEVARGS_KEYS: &[&str] = &[
    "iface",
    "start_queue",
    "queue_count",
    "xdp_mode",
    "force_copy",
    "busy_budget",
    "tx_sw_csum",
];

const SPEED_MBPS: u32 = 10_000;
const L2_OVERHEAD: u32 = 18;
const CACHE_SIZE: usize = 256;
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// The kernel's choice: the driver's hook if it has one, else generic.
    Auto,
    /// The driver's hook (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// The generic hook after skb allocation (`XDP_FLAGS_SKB_MODE`), any interface.
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Auto => 0,
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

/// How the sockets ended up bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// Not started.
    Unbound,
    /// Zero-copy: the NIC DMAs straight into the mbufs.
    ZeroCopy,
    /// Copy mode: the kernel copies each frame into the mbuf.
    Copy {
        /// Why not zero-copy (`force_copy=1`, or the kernel's refusal).
        reason: String,
    },
}

impl BindMode {
    /// A port's mode from its queues' (in queue order): zero-copy only if every queue is;
    /// copy if any is, with the reason they share, or each copy-mode queue's when they differ.
    fn of_queues(queues: &[BindMode]) -> BindMode {
        let copies: Vec<(usize, &str)> = queues
            .iter()
            .enumerate()
            .filter_map(|(q, m)| match m {
                BindMode::Copy { reason } => Some((q, reason.as_str())),
                _ => None,
            })
            .collect();
        match copies.first() {
            None if queues.is_empty() => BindMode::Unbound,
            None => BindMode::ZeroCopy,
            Some(&(_, first))
                if copies.len() == queues.len() && copies.iter().all(|c| c.1 == first) =>
            {
                BindMode::Copy {
                    reason: first.to_string(),
                }
            }
            Some(_) => {
                let each: Vec<String> = copies
                    .iter()
                    .map(|(q, r)| format!("queue {q}: {r}"))
                    .collect();
                BindMode::Copy {
                    reason: format!(
                        "{} of {} queues in copy mode ({})",
                        copies.len(),
                        queues.len(),
                        each.join("; ")
                    ),
                }
            }
        }
    }
}

/// The attached program, its map, and how to take it off again.
#[derive(Debug)]
struct Attachment {
    prog: OwnedFd,
    map: OwnedFd,
    /// The mode flag it ended up in (for the detach).
    mode: u32,
}

/// A `net_af_xdp` device.
#[derive(Debug)]
pub struct AfXdpDriver {
    iface: String,
    start_queue: u32,
    queue_count: u16,
    xdp_mode: XdpMode,
    force_copy: bool,
    busy_budget: u32,
    /// TCP/UDP checksum offload done by rdk even where TX metadata would do it.
    tx_sw_csum: bool,
    netif: Option<NetIf>,
    rtnl: Option<Rtnl>,
    ifindex: u32,
    mtu: u16,
    port_id: u16,
    socks: Vec<Arc<XskSock>>,
    prog: Option<Attachment>,
    /// How each queue pair's socket is bound, by queue id.
    bind_modes: Vec<BindMode>,
    /// What they add up to ([`AfXdpDriver::bind_mode`]).
    bind_mode: BindMode,
    rx_drops: PerQueue<RxDrops>,
    tx_drops: PerQueue<TxDrops>,
    /// Kernel counters of sockets already closed, added to the live ones.
    closed_stats: Mutex<XdpStatistics>,
    gone: Arc<AtomicBool>,
    replaced_leftover: Option<u32>,
    last_error: Option<AfXdpError>,
    /// The port's transmit offloads (queues may add their own).
    tx_offloads: TxOffload,
    /// Where TCP/UDP checksum offload requests go, once started: `Some(true)` to the kernel
    /// or device as TX metadata, `Some(false)` done by rdk.
    tx_csum_by_kernel: Option<bool>,
    /// Interface flags (`IFF_PROMISC`, `IFF_ALLMULTI`) this port turned on, turned off again
    /// at close; never one that was already on.
    flags_turned_on: u32,
}

impl AfXdpDriver {
    /// A port on queues `0..queue_count` of `iface`.
    pub fn new(iface: &str, queue_count: u16) -> Self {
        Self {
            iface: iface.to_string(),
            start_queue: 0,
            queue_count: queue_count.clamp(1, MAX_QUEUES),
            xdp_mode: XdpMode::Auto,
            force_copy: false,
            busy_budget: 0,
            tx_sw_csum: false,
            netif: None,
            rtnl: None,
            ifindex: 0,
            mtu: 1500,
            port_id: PORT_INVALID,
            socks: Vec::new(),
            prog: None,
            bind_modes: Vec::new(),
            bind_mode: BindMode::Unbound,
            rx_drops: PerQueue::default(),
            tx_drops: PerQueue::default(),
            closed_stats: Mutex::new(XdpStatistics::default()),
            gone: Arc::new(AtomicBool::new(false)),
            replaced_leftover: None,
            last_error: None,
            tx_offloads: TxOffload::empty(),
            tx_csum_by_kernel: None,
            flags_turned_on: 0,
        }
    }

    /// A device from `net_af_xdpN,iface=X[,start_queue=Q][,queue_count=N]
    /// [,xdp_mode=auto|native|generic][,force_copy=0|1][,busy_budget=B][,tx_sw_csum=0|1]`.
    pub fn from_devargs(args: &DevArgs) -> Result<Self, DevArgsError> {
        args.check_keys(DEVARGS_KEYS)?;
        let iface = args.get("iface").ok_or(DevArgsError::Required {
            driver: "net_af_xdp".into(),
            key: "iface",
        })?;
        rdk_os_linux::netif::ifname(iface).map_err(|_| DevArgsError::BadValue {
            key: "iface".into(),
            value: iface.into(),
            expected: "an interface name of 1 to 15 bytes",
        })?;
        let count: u16 = args.get_num("queue_count", 1, "a queue count, 1..=16")?;
        if !(1..=MAX_QUEUES).contains(&count) {
            return Err(DevArgsError::BadValue {
                key: "queue_count".into(),
                value: count.to_string(),
                expected: "a queue count, 1..=16",
            });
        }
        let start: u32 = args.get_num("start_queue", 0, "the first queue id, 0..=1023")?;
        if start > 1023 {
            return Err(DevArgsError::BadValue {
                key: "start_queue".into(),
                value: start.to_string(),
                expected: "the first queue id, 0..=1023",
            });
        }
        let mode = match args.get("xdp_mode").unwrap_or("auto") {
            "auto" => XdpMode::Auto,
            "native" | "drv" => XdpMode::Native,
            "generic" | "skb" => XdpMode::Generic,
            v => {
                return Err(DevArgsError::BadValue {
                    key: "xdp_mode".into(),
                    value: v.into(),
                    expected: "auto, native or generic",
                })
            }
        };
        let mut d = Self::new(iface, count);
        d.start_queue = start;
        d.xdp_mode = mode;
        d.force_copy = args.get_bool("force_copy", false)?;
        d.tx_sw_csum = args.get_bool("tx_sw_csum", false)?;
        d.busy_budget = args.get_num("busy_budget", 0, "frames per busy poll, 0 (off)..=1024")?;
        if d.busy_budget > 1024 {
            return Err(DevArgsError::BadValue {
                key: "busy_budget".into(),
                value: d.busy_budget.to_string(),
                expected: "frames per busy poll, 0 (off)..=1024",
            });
        }
        Ok(d)
    }

    /// Runs the program in `mode`.
    pub fn with_xdp_mode(mut self, mode: XdpMode) -> Self {
        self.xdp_mode = mode;
        self
    }

    /// Uses queues from `start_queue` on.
    pub fn with_start_queue(mut self, start_queue: u32) -> Self {
        self.start_queue = start_queue;
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

    /// How the port's sockets are bound: zero-copy only if every queue's is; otherwise copy,
    /// with the reason (each copy-mode queue's when the queues differ). `Unbound` when stopped.
    pub fn bind_mode(&self) -> &BindMode {
        &self.bind_mode
    }

    /// How queue pair `queue`'s socket is bound; `None` when stopped or no such queue.
    pub fn queue_bind_mode(&self, queue: u16) -> Option<&BindMode> {
        self.bind_modes.get(queue as usize)
    }

    /// Records queue pair `q`'s bind (queues are opened in order, from 0).
    fn record_bind(&mut self, q: usize, mode: BindMode) {
        self.bind_modes.truncate(q);
        self.bind_modes.push(mode);
        self.bind_mode = BindMode::of_queues(&self.bind_modes);
    }

    /// TCP/UDP checksum offload done by rdk in software even where the kernel or device
    /// would do it from TX metadata (`tx_sw_csum=1`): a way around a device whose checksum
    /// offload misbehaves, as the kernel's `XDP_UMEM_TX_SW_CSUM` is.
    pub fn with_tx_sw_csum(mut self, on: bool) -> Self {
        self.tx_sw_csum = on;
        self
    }

    /// Where the TCP/UDP checksums of offload requests are completed, while the port is
    /// started with TCP or UDP checksum offload: `Some(true)` by the kernel (copy mode) or the
    /// device (zero-copy on a driver that implements AF_XDP TX checksums), from TX metadata,
    /// on every queue with the offload; `Some(false)` by rdk in software on at least one.
    /// `None` without those offloads or when stopped.
    pub fn tx_checksum_by_kernel(&self) -> Option<bool> {
        self.tx_csum_by_kernel
    }

    /// The last set-up failure in full (the ethdev error carries only a fixed text).
    pub fn last_error(&self) -> Option<&AfXdpError> {
        self.last_error.as_ref()
    }

    /// The id of a program of rdk's left behind on the interface (by a crashed run) that the
    /// last start replaced.
    pub fn replaced_leftover(&self) -> Option<u32> {
        self.replaced_leftover
    }

    /// The kernel's drop counters, summed over the queues (closed sockets included).
    pub fn kernel_stats(&self) -> XdpStatistics {
        let mut s = *self.closed_stats.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.socks {
            if let Ok(x) = sys::statistics(k.fd()) {
                add_stats(&mut s, &x);
            }
        }
        s
    }

    fn fail(&mut self, op: &'static str, e: AfXdpError) -> EthError {
        eprintln!("net_af_xdp {}: {op}: {e}", self.iface);
        let eth = e.to_eth(op);
        self.last_error = Some(e);
        eth
    }

    fn max_frame(&self) -> u32 {
        self.mtu as u32 + L2_OVERHEAD
    }

    /// One socket for queue pair `q`: UMEM from `rx`'s pool, rings, bind.
    fn open_queue(
        &mut self,
        q: usize,
        rx: &mut AfXdpRx,
        tx: Option<&mut AfXdpTx>,
    ) -> Result<(), AfXdpError> {
        let os = AfXdpError::os;
        let umem = Umem::of_pool(&rx.pool).map_err(AfXdpError::Umem)?;
        if (umem.max_rx_frame() as u32) < self.max_frame() {
            return Err(AfXdpError::Umem(crate::umem::UmemError::ChunkTooSmall {
                chunk: umem.chunk,
            }));
        }
        let fd = sys::xsk_socket().map_err(|e| os("socket(AF_XDP)", e))?;
        let l4 = TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM;
        let want_meta = tx.as_ref().is_some_and(|t| t.offloads.intersects(l4));
        let meta = register_umem(&fd, &umem, want_meta && kernel_at_least(6, 8))
            .map_err(|e| os("XDP_UMEM_REG", e))?;
        let rx_size = rx.nb_desc.next_power_of_two();
        let tx_size = tx.as_ref().map_or(64, |t| t.nb_desc.next_power_of_two());
        // The fill ring holds twice the RX ring (as libxdp and DPDK size it): while the
        // application holds a ring's worth of received mbufs, the kernel still has a full
        // ring of empty ones, and a receiver that is descheduled for a moment loses nothing.
        let fill_size = rx_size * 2;
        sys::set_opt(&fd, sys::XDP_UMEM_FILL_RING, &fill_size)
            .map_err(|e| os("XDP_UMEM_FILL_RING", e))?;
        sys::set_opt(&fd, sys::XDP_UMEM_COMPLETION_RING, &tx_size)
            .map_err(|e| os("XDP_UMEM_COMPLETION_RING", e))?;
        sys::set_opt(&fd, sys::XDP_RX_RING, &rx_size).map_err(|e| os("XDP_RX_RING", e))?;
        sys::set_opt(&fd, sys::XDP_TX_RING, &tx_size).map_err(|e| os("XDP_TX_RING", e))?;
        let off = sys::mmap_offsets(&fd).map_err(|e| os("XDP_MMAP_OFFSETS", e))?;
        let fill = Ring::<u64>::map(&fd, &off.fr, fill_size, sys::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(|e| os("mmap fill ring", e))?;
        let comp = Ring::<u64>::map(&fd, &off.cr, tx_size, sys::XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(|e| os("mmap completion ring", e))?;
        let rxr = Ring::map(&fd, &off.rx, rx_size, sys::XDP_PGOFF_RX_RING)
            .map_err(|e| os("mmap rx ring", e))?;
        let txr = Ring::map(&fd, &off.tx, tx_size, sys::XDP_PGOFF_TX_RING)
            .map_err(|e| os("mmap tx ring", e))?;
        if self.busy_budget > 0 {
            // Best effort: kernels before 5.11 lack preferred busy polling; polling still works.
            for (opt, v) in [
                (SO_PREFER_BUSY_POLL, 1),
                (SO_BUSY_POLL, 20),
                (SO_BUSY_POLL_BUDGET, self.busy_budget as libc::c_int),
            ] {
                let _ = set_sol_socket(&fd, opt, v);
            }
        }
        let queue = self.start_queue + q as u32;
        let copy = sys::XDP_USE_NEED_WAKEUP | sys::XDP_COPY;
        let mode = if self.force_copy {
            bind_retrying(&fd, self.ifindex, queue, copy).map_err(|e| os("bind", e))?;
            BindMode::Copy {
                reason: "force_copy=1".into(),
            }
        } else {
            let zc = sys::XDP_USE_NEED_WAKEUP | sys::XDP_ZEROCOPY;
            match bind_retrying(&fd, self.ifindex, queue, zc) {
                Ok(()) => BindMode::ZeroCopy,
                Err(e @ (Errno::EOPNOTSUPP | Errno::EINVAL | Errno::EPROTONOSUPPORT)) => {
                    bind_retrying(&fd, self.ifindex, queue, copy).map_err(|e| os("bind", e))?;
                    BindMode::Copy {
                        reason: zero_copy_refusal(&self.iface, self.ifindex, queue, e),
                    }
                }
                Err(e) => return Err(os("bind", e)),
            }
        };
        if let BindMode::Copy { reason } = &mode {
            // Once per port, and again for a queue that ended up unlike the first.
            if self.bind_modes.first() != Some(&mode) && !self.force_copy {
                eprintln!("net_af_xdp {}: copy mode: {reason}", self.iface);
            }
        }
        let probe = sys::Probe::new().map_err(|e| os("probe socket", e))?;
        let sock = Arc::new(XskSock::new(fd, rx.pool.clone()));
        sock.set_bound(
            self.ifindex,
            queue,
            matches!(mode, BindMode::ZeroCopy),
            probe,
        );
        rx.attach(RxLive::new(
            sock.clone(),
            rxr,
            fill,
            umem,
            rx_size,
            self.busy_budget > 0,
        ));
        if let Some(tx) = tx {
            // TCP/UDP checksums: the kernel does them from TX metadata in copy mode; a device in
            // zero-copy only if its driver says so (others ignore the metadata).
            let kernel_csum = meta
                && !self.tx_sw_csum
                && match mode {
                    BindMode::ZeroCopy => crate::netlink::dev_features(self.ifindex)
                        .is_ok_and(|f| f.xsk & crate::netlink::NETDEV_XSK_FLAGS_TX_CHECKSUM != 0),
                    // The name now: /sys/class/net follows renames.
                    _ => copy_mode_takes_checksums(
                        &self
                            .netif
                            .as_ref()
                            .and_then(|n| n.current_name().ok())
                            .unwrap_or_else(|| self.iface.clone()),
                    ),
                };
            if tx.offloads.intersects(l4) {
                self.tx_csum_by_kernel =
                    Some(self.tx_csum_by_kernel.unwrap_or(true) && kernel_csum);
            }
            // The tx queue copies foreign mbufs into mbufs of the rx pool, through a cache of
            // its own: a second cache of that pool per queue pair.
            let cache = queue_cache(&rx.pool, CACHE_SIZE, "start").map_err(AfXdpError::TxCache)?;
            let max = self.max_frame().min(rx.pool.data_room() as u32);
            tx.attach(TxLive::new(
                sock.clone(),
                txr,
                comp,
                umem,
                rx.pool.clone(),
                cache,
                crate::tx::TxSetup {
                    max_frame: max,
                    offloads: tx.offloads,
                    by_kernel: kernel_csum,
                },
            ));
        }
        self.socks.push(sock);
        self.record_bind(q, mode);
        Ok(())
    }

    /// Loads the program, fills its map, attaches it — replacing a leftover of rdk's, never
    /// someone else's.
    fn attach_program(&mut self) -> Result<(), AfXdpError> {
        let os = AfXdpError::os;
        let entries = self.start_queue + self.socks.len() as u32;
        let map = bpf::create_xskmap(entries).map_err(|e| os("BPF_MAP_CREATE (XSKMAP)", e))?;
        for (q, s) in self.socks.iter().enumerate() {
            bpf::xskmap_set(&map, self.start_queue + q as u32, s.fd())
                .map_err(|e| os("XSKMAP update", e))?;
        }
        let prog = bpf::load_xdp(&bpf::redirect_program(map.as_raw_fd()), bpf::PROG_NAME).map_err(
            |(e, log)| match e {
                Errno::EPERM => AfXdpError::Permission {
                    op: "BPF_PROG_LOAD",
                },
                e if log.is_empty() => os("BPF_PROG_LOAD", e),
                e => AfXdpError::Verifier {
                    code: e as i32,
                    log,
                },
            },
        )?;
        let (ifindex, iface, mode) = (self.ifindex, self.iface.clone(), self.xdp_mode.flags());
        let rtnl = self.rtnl.as_mut().ok_or(AfXdpError::Os {
            op: "netlink",
            code: libc::EBADF,
        })?;
        let now = rtnl.query(ifindex).map_err(|e| os("RTM_GETLINK", e))?;
        let mut attached_mode = mode;
        if now.prog_id != 0 {
            let fd = bpf::prog_fd_by_id(now.prog_id).map_err(|e| os("BPF_PROG_GET_FD_BY_ID", e))?;
            let (_, name) = bpf::prog_info(&fd).map_err(|e| os("BPF_OBJ_GET_INFO_BY_FD", e))?;
            if name != bpf::PROG_NAME {
                return Err(AfXdpError::ForeignProgram {
                    iface,
                    id: now.prog_id,
                    name,
                });
            }
            // rdk's, but held by a live port (this process's or another's): not a leftover.
            if let Some(pid) = bpf::prog_holder(now.prog_id, fd.as_raw_fd()) {
                return Err(AfXdpError::ProgramInUse {
                    iface,
                    id: now.prog_id,
                    pid,
                });
            }
            // Ours, from a run that did not clean up: replace exactly that program, in the
            // mode asked for. The kernel keeps native and generic programs exclusive
            // ("Native and generic XDP can't be active at the same time"), so a leftover in the
            // other mode (the atomic replace then finds no program to replace in this mode:
            // EEXIST) comes off in its own mode first, then ours goes on as a fresh attach.
            let old = now.prog_id;
            match rtnl.attach(
                ifindex,
                prog.as_raw_fd(),
                mode | XDP_FLAGS_REPLACE,
                Some(fd.as_raw_fd()),
            ) {
                Ok(()) => {}
                Err(Errno::EEXIST) if now.mode != 0 && now.mode != mode => {
                    rtnl.detach(ifindex, now.mode, fd.as_raw_fd())
                        .map_err(|e| os("RTM_SETLINK (detach leftover XDP program)", e))?;
                    Self::attach_fresh(rtnl, ifindex, &iface, &prog, mode)?;
                }
                Err(e) => return Err(os("RTM_SETLINK (replace leftover XDP program)", e)),
            }
            eprintln!(
                "net_af_xdp {iface}: replaced XDP program {old} left behind by an earlier rdk run"
            );
            self.replaced_leftover = Some(old);
        } else {
            Self::attach_fresh(rtnl, ifindex, &iface, &prog, mode)?;
        }
        if attached_mode == 0 {
            attached_mode = rtnl.query(ifindex).map(|a| a.mode).unwrap_or(0);
        }
        self.prog = Some(Attachment {
            prog,
            map,
            mode: attached_mode,
        });
        Ok(())
    }

    /// Attaches `prog` in `mode` where nothing is attached; a program that got there first
    /// (between the caller's query and now) is someone else's and stays.
    fn attach_fresh(
        rtnl: &mut Rtnl,
        ifindex: u32,
        iface: &str,
        prog: &OwnedFd,
        mode: u32,
    ) -> Result<(), AfXdpError> {
        let os = AfXdpError::os;
        match rtnl.attach(
            ifindex,
            prog.as_raw_fd(),
            mode | XDP_FLAGS_UPDATE_IF_NOEXIST,
            None,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST | Errno::EBUSY) => {
                let now = rtnl.query(ifindex).map_err(|e| os("RTM_GETLINK", e))?;
                let name = bpf::prog_fd_by_id(now.prog_id)
                    .and_then(|f| bpf::prog_info(&f))
                    .map(|(_, n)| n)
                    .unwrap_or_default();
                Err(AfXdpError::ForeignProgram {
                    iface: iface.to_string(),
                    id: now.prog_id,
                    name,
                })
            }
            Err(e) => Err(os("RTM_SETLINK (attach XDP program)", e)),
        }
    }

    /// Whether `flag` is on on the interface now (`None` if it cannot be read).
    fn iface_flag(&self, flag: u32) -> Option<bool> {
        let f = self.netif.as_ref()?.flags().ok()?;
        Some(f & flag != 0)
    }

    /// Records a successful switch of `flag` to `on` that found it `was`: turned on by this
    /// port only if it was off (a flag of unknown state is not claimed); turning it off,
    /// as asked, leaves nothing to restore.
    fn note_flag(&mut self, flag: u32, was: Option<bool>, on: bool) {
        if !on {
            self.flags_turned_on &= !flag;
        } else if was == Some(false) {
            self.flags_turned_on |= flag;
        }
    }

    /// Turns off the interface flags this port turned on (best effort: the interface may be
    /// gone).
    fn restore_flags(&mut self) {
        let mask = std::mem::take(&mut self.flags_turned_on);
        if let (Some(n), true) = (self.netif.as_ref(), mask != 0) {
            if let Err(e) = n.set_flags(mask, false) {
                if !matches!(e, NetIfError::NotFound { .. }) {
                    eprintln!(
                        "net_af_xdp {}: could not turn off the interface flags {mask:#x} rdk \
                         turned on: {e}",
                        self.iface
                    );
                }
            }
        }
    }

    /// Takes the program off (only if it is still ours) and closes every socket.
    fn teardown(&mut self, rx: &mut [AfXdpRx], tx: &mut [AfXdpTx]) {
        if let Some(a) = self.prog.take() {
            for q in 0..self.socks.len() {
                let _ = bpf::xskmap_clear(&a.map, self.start_queue + q as u32);
            }
            if let Some(rtnl) = self.rtnl.as_mut() {
                match rtnl.detach(self.ifindex, a.mode, a.prog.as_raw_fd()) {
                    Ok(()) | Err(Errno::ENODEV) => {}
                    Err(_) if self.is_gone() => {}
                    Err(e) => eprintln!(
                        "net_af_xdp {}: could not detach rdk's XDP program: {}; it is replaced \
                         on the next start, or remove it with `ip link set dev {} xdp off`",
                        self.iface,
                        e.desc(),
                        self.iface
                    ),
                }
            }
        }
        {
            let mut closed = self.closed_stats.lock().unwrap_or_else(|e| e.into_inner());
            for k in &self.socks {
                if let Ok(x) = sys::statistics(k.fd()) {
                    add_stats(&mut closed, &x);
                }
            }
        }
        self.socks.clear();
        for q in tx.iter_mut() {
            q.detach();
        }
        for q in rx.iter_mut() {
            q.detach();
        }
        self.bind_modes.clear();
        self.bind_mode = BindMode::Unbound;
        self.tx_csum_by_kernel = None;
    }
}

/// Binds, retrying while the queue is still busy with a socket closed a moment ago (the
/// kernel releases a closed socket's buffer pool from a work queue, `xp_release_deferred`).
/// Registers `umem` on `fd`; with `tx_metadata`, reserving TX metadata in front of each
/// frame (with the flag 6.11+ requires, then without it for 6.8 to 6.10; neither taken: no
/// metadata). Whether the metadata is on.
fn register_umem(fd: &OwnedFd, umem: &Umem, tx_metadata: bool) -> Result<bool, Errno> {
    let mut reg = sys::UmemReg {
        addr: umem.base as u64,
        len: umem.len as u64,
        chunk_size: umem.chunk as u32,
        headroom: 0,
        flags: sys::XDP_UMEM_UNALIGNED_CHUNK_FLAG,
        tx_metadata_len: 0,
    };
    if tx_metadata {
        reg.tx_metadata_len = sys::TX_METADATA_LEN;
        for flags in [sys::XDP_UMEM_TX_METADATA_LEN, 0] {
            reg.flags = sys::XDP_UMEM_UNALIGNED_CHUNK_FLAG | flags;
            match sys::set_opt(fd, sys::XDP_UMEM_REG, &reg) {
                Ok(()) => return Ok(true),
                Err(Errno::EINVAL) => continue,
                Err(e) => return Err(e),
            }
        }
        reg.flags = sys::XDP_UMEM_UNALIGNED_CHUNK_FLAG;
        reg.tx_metadata_len = 0;
    }
    sys::set_opt(fd, sys::XDP_UMEM_REG, &reg).map(|()| false)
}

/// Whether the kernel completes TX-metadata checksums of a copy-mode socket on `iface`. It
/// does from 6.8, except for drivers whose copy-mode frames it builds from UMEM pages
/// (`IFF_TX_SKB_NO_LINEAR`: virtio_net), where Linux 6.12 ignores the request (the frame
/// leaves with the seed; seen in the lab) and 6.18 honours it; rdk completes those itself on
/// kernels before 6.18.
fn copy_mode_takes_checksums(iface: &str) -> bool {
    let driver = std::fs::read_link(format!("/sys/class/net/{iface}/device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    driver.as_deref() != Some("virtio_net") || kernel_at_least(6, 18)
}

/// Whether the running kernel is `major.minor` or later (its release, as `uname -r` prints
/// it; `false` if it cannot be read).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(r) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    let (Some(Ok(a)), Some(Ok(b))) = (
        it.next().map(str::parse::<u32>),
        it.next().map(str::parse::<u32>),
    ) else {
        return false;
    };
    (a, b) >= (major, minor)
}

fn bind_retrying(fd: &OwnedFd, ifindex: u32, queue: u32, flags: u16) -> Result<(), Errno> {
    let mut left = 200;
    loop {
        match sys::bind(fd, ifindex, queue, flags) {
            Err(Errno::EBUSY) if left > 0 => {
                left -= 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// Why the kernel refused a zero-copy bind: a driver that does not advertise
/// `NETDEV_XDP_ACT_XSK_ZEROCOPY` is refused before it is asked, so say that when it is so.
fn zero_copy_refusal(iface: &str, ifindex: u32, queue: u32, e: Errno) -> String {
    match crate::netlink::xdp_features(ifindex) {
        Ok(f) if e == Errno::EOPNOTSUPP && f & crate::netlink::NETDEV_XDP_ACT_XSK_ZEROCOPY == 0 => {
            format!(
                "the driver of {iface} does not offer AF_XDP zero-copy (its XDP features \
                 {f:#x} lack xsk-zerocopy; the bind said: {})",
                e.desc()
            )
        }
        _ => format!(
            "the driver of {iface} refused zero-copy on queue {queue} ({})",
            e.desc()
        ),
    }
}

fn set_sol_socket(fd: &OwnedFd, opt: libc::c_int, v: libc::c_int) -> Result<(), Errno> {
    // SAFETY: a valid int of the size passed, read by the kernel only.
    Errno::result(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `s += x` (`sub`: `s -= x`), field by field, modulo 2^64: after a statistics reset the
/// closed sockets' part holds minus what the live sockets had counted, so the sum starts at 0.
fn add_stats_signed(s: &mut XdpStatistics, x: &XdpStatistics, sub: bool) {
    let op = |a: &mut u64, b: u64| {
        *a = if sub {
            a.wrapping_sub(b)
        } else {
            a.wrapping_add(b)
        }
    };
    let XdpStatistics {
        rx_dropped,
        rx_invalid_descs,
        tx_invalid_descs,
        rx_ring_full,
        rx_fill_ring_empty_descs,
        tx_ring_empty_descs,
    } = *x;
    op(&mut s.rx_dropped, rx_dropped);
    op(&mut s.rx_invalid_descs, rx_invalid_descs);
    op(&mut s.tx_invalid_descs, tx_invalid_descs);
    op(&mut s.rx_ring_full, rx_ring_full);
    op(&mut s.rx_fill_ring_empty_descs, rx_fill_ring_empty_descs);
    op(&mut s.tx_ring_empty_descs, tx_ring_empty_descs);
}

fn add_stats(s: &mut XdpStatistics, x: &XdpStatistics) {
    add_stats_signed(s, x, false)
}

impl Drop for AfXdpDriver {
    /// A driver dropped without a close still takes its program off the interface and turns
    /// off the flags it turned on.
    fn drop(&mut self) {
        self.teardown(&mut [], &mut []);
        self.restore_flags();
    }
}

impl Driver for AfXdpDriver {
    type Rx = AfXdpRx;
    type Tx = AfXdpTx;

    fn info(&self) -> DevInfo {
        let lim = DescLimits {
            min: 64,
            max: 4096,
            align: 1,
        };
        DevInfo {
            driver_name: "net_af_xdp",
            max_rx_queues: self.queue_count,
            max_tx_queues: self.queue_count,
            rx_desc_lim: lim,
            tx_desc_lim: lim,
            min_mtu: 68,
            // A frame is one chunk of at most a page, after the kernel's 256-byte headroom.
            max_mtu: (4096 - 256 - L2_OVERHEAD) as u16,
            rx_offload_capa: RxOffload::empty(),
            tx_offload_capa: TxOffload::MULTI_SEGS
                | TxOffload::IPV4_CKSUM
                | TxOffload::UDP_CKSUM
                | TxOffload::TCP_CKSUM,
            rss_hash_types: RssHashTypes::empty(),
            speed_mbps: SPEED_MBPS,
        }
    }

    fn configure(&mut self, config: &PortConfig) -> Result<(), EthError> {
        const OP: &str = "configure";
        if config.nb_txq > config.nb_rxq {
            let e = AfXdpError::QueuesUnpaired {
                rx: config.nb_rxq,
                tx: config.nb_txq,
            };
            return Err(self.fail(OP, e));
        }
        let netif = match NetIf::open(&self.iface) {
            Ok(n) => n,
            Err(NetIfError::NotFound { .. }) => {
                let iface = self.iface.clone();
                return Err(self.fail(OP, AfXdpError::InterfaceNotFound { iface }));
            }
            Err(e) => return Err(e.to_eth(OP)),
        };
        self.ifindex = match netif.index() {
            Ok(i) => i,
            Err(NetIfError::NotFound { .. }) => {
                let iface = self.iface.clone();
                return Err(self.fail(OP, AfXdpError::InterfaceNotFound { iface }));
            }
            Err(e) => return Err(e.to_eth(OP)),
        };
        // Fail early, with the right words, where AF_XDP or the privileges are missing.
        if let Err(e) = sys::xsk_socket() {
            return Err(self.fail(OP, AfXdpError::os("socket(AF_XDP)", e)));
        }
        let rtnl = match Rtnl::open() {
            Ok(r) => r,
            Err(e) => return Err(self.fail(OP, AfXdpError::os("netlink socket", e))),
        };
        // The MTU last: everything that can fail comes first, so a failed configure leaves
        // the interface as it was (DPDK: configure is all or nothing).
        self.mtu = netif::ethdev::configure_mtu(&netif, config.mtu)?;
        self.tx_offloads = config.tx_offloads;
        self.rtnl = Some(rtnl);
        // A configure that finds another interface under the name: the flags turned on
        // belong to the old one.
        if self
            .netif
            .as_ref()
            .is_some_and(|old| old.index().ok() != netif.index().ok())
        {
            self.restore_flags();
        }
        self.netif = Some(netif);
        self.gone.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn rx_queue_setup(
        &mut self,
        queue: u16,
        nb_desc: u16,
        pool: &PktMbufPool,
        _config: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<AfXdpRx, EthError> {
        let cache = queue_cache(pool, CACHE_SIZE, "rx_queue_setup")?;
        let need = self.max_frame();
        if (pool.data_room() as u32) < need {
            return Err(EthError::BuffersTooSmall {
                data_room: pool.data_room(),
                needed: need,
            });
        }
        Ok(AfXdpRx::new(
            pool.clone(),
            cache,
            nb_desc as u32,
            counters,
            // Kept across setups: the reasons carry on with the errors they break down.
            self.rx_drops.kept(queue),
            self.port_id,
        ))
    }

    fn tx_queue_setup(
        &mut self,
        queue: u16,
        nb_desc: u16,
        config: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<AfXdpTx, EthError> {
        let offloads = (self.tx_offloads | config.offloads)
            & (TxOffload::IPV4_CKSUM | TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM);
        Ok(AfXdpTx::new(
            nb_desc as u32,
            counters,
            self.tx_drops.kept(queue),
            self.gone.clone(),
            offloads,
        ))
    }

    /// Sockets, UMEMs and rings for every queue pair, then the program.
    fn start(&mut self, rx: &mut [AfXdpRx], tx: &mut [AfXdpTx]) -> Result<(), EthError> {
        self.replaced_leftover = None;
        let mut txs = tx.iter_mut();
        for (q, r) in rx.iter_mut().enumerate() {
            if let Err(e) = self.open_queue(q, r, txs.next()) {
                self.teardown(rx, tx);
                return Err(self.fail("start", e));
            }
        }
        if let Err(e) = self.attach_program() {
            self.teardown(rx, tx);
            return Err(self.fail("start", e));
        }
        Ok(())
    }

    /// Waits (briefly) for frames in flight, then detaches and closes: every mbuf comes back.
    fn stop(&mut self, rx: &mut [AfXdpRx], tx: &mut [AfXdpTx]) -> Result<(), EthError> {
        for _ in 0..100 {
            tx.iter_mut().for_each(|q| q.reap(None));
            if self.is_gone() || tx.iter().all(|q| q.in_flight() == 0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.teardown(rx, tx);
        Ok(())
    }

    fn close(&mut self) {
        self.teardown(&mut [], &mut []);
        self.restore_flags();
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
        Ok(())
    }

    /// The interface's promiscuous flag (as DPDK's af_xdp does), off again at close if this
    /// port turned it on.
    fn set_promiscuous(&mut self, on: bool) -> Result<(), EthError> {
        let was = self.iface_flag(netif::flags::PROMISC);
        netif::ethdev::set_promiscuous(self.netif.as_ref(), on)?;
        self.note_flag(netif::flags::PROMISC, was, on);
        Ok(())
    }

    /// The interface's all-multicast flag, off again at close if this port turned it on.
    fn set_allmulticast(&mut self, on: bool) -> Result<(), EthError> {
        let was = self.iface_flag(netif::flags::ALLMULTI);
        netif::ethdev::set_allmulticast(self.netif.as_ref(), on)?;
        self.note_flag(netif::flags::ALLMULTI, was, on);
        Ok(())
    }

    /// Zeroes the drop reasons and the kernel's counters (as seen from here: the kernel's own
    /// keep counting, and what they had is subtracted from now on).
    fn stats_reset(&self) {
        let now = self.kernel_stats();
        let mut closed = self.closed_stats.lock().unwrap_or_else(|e| e.into_inner());
        add_stats_signed(&mut closed, &now, true);
        drop(closed);
        self.rx_drops.iter().for_each(RxDrops::reset);
        self.tx_drops.iter().for_each(TxDrops::reset);
    }

    fn xstats(&self, out: &mut Vec<XStat>) {
        let k = self.kernel_stats();
        XStat::extend(
            out,
            &[
                ("rx_kernel_dropped", k.rx_dropped),
                ("rx_kernel_ring_full", k.rx_ring_full),
                ("rx_kernel_fill_ring_empty", k.rx_fill_ring_empty_descs),
                ("rx_kernel_invalid_descs", k.rx_invalid_descs),
                ("tx_kernel_invalid_descs", k.tx_invalid_descs),
                ("rx_bad_descs", self.rx_drops.sum(|d| &d.bad_desc)),
                (
                    "rx_ring_anomalies",
                    self.rx_drops.sum(|d| &d.ring_anomalies),
                ),
                ("rx_fill_no_mbuf", self.rx_drops.sum(|d| &d.fill_nombuf)),
                ("rx_fill_wakeups", self.rx_drops.sum(|d| &d.fill_wakeups)),
                ("tx_frames_too_big", self.tx_drops.sum(|d| &d.too_big)),
                ("tx_frames_too_small", self.tx_drops.sum(|d| &d.too_small)),
                ("tx_ring_full", self.tx_drops.sum(|d| &d.ring_full)),
                ("tx_no_buffer", self.tx_drops.sum(|d| &d.no_buffer)),
                ("tx_copied", self.tx_drops.sum(|d| &d.copied)),
                (
                    "tx_bad_offload_request",
                    self.tx_drops.sum(|d| &d.bad_offload),
                ),
                (
                    "tx_checksums_in_software",
                    self.tx_drops.sum(|d| &d.sw_checksums),
                ),
                (
                    "tx_bad_completions",
                    self.tx_drops.sum(|d| &d.bad_completion),
                ),
                (
                    "tx_ring_anomalies",
                    self.tx_drops.sum(|d| &d.ring_anomalies),
                ),
                // 1 only if every queue is zero-copy; each queue's below.
                (
                    "zero_copy",
                    matches!(self.bind_mode, BindMode::ZeroCopy) as u64,
                ),
                ("interface_gone", self.is_gone() as u64),
            ],
        );
        for (q, m) in self.bind_modes.iter().enumerate() {
            out.push(XStat {
                name: format!("zero_copy_q{q}"),
                value: matches!(m, BindMode::ZeroCopy) as u64,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devargs() {
        let a = DevArgs::parse(
            "net_af_xdp0,iface=veth0,start_queue=2,queue_count=3,xdp_mode=generic,force_copy=1,\
             tx_sw_csum=1",
        )
        .unwrap();
        let d = AfXdpDriver::from_devargs(&a).unwrap();
        assert_eq!(
            (
                d.iface(),
                d.start_queue,
                d.queue_count,
                d.xdp_mode,
                d.force_copy,
                d.tx_sw_csum
            ),
            ("veth0", 2, 3, XdpMode::Generic, true, true)
        );
        let d = AfXdpDriver::from_devargs(&DevArgs::parse("net_af_xdp0,iface=x").unwrap()).unwrap();
        assert_eq!(
            (d.start_queue, d.queue_count, d.xdp_mode),
            (0, 1, XdpMode::Auto)
        );
        for bad in [
            "net_af_xdp0",
            "net_af_xdp0,iface=x,queue_count=0",
            "net_af_xdp0,iface=x,queue_count=17",
            "net_af_xdp0,iface=x,start_queue=-1",
            "net_af_xdp0,iface=x,start_queue=5000",
            "net_af_xdp0,iface=x,xdp_mode=hw",
            "net_af_xdp0,iface=x,force_copy=maybe",
            "net_af_xdp0,iface=x,busy_budget=99999",
            "net_af_xdp0,iface=x,shared_umem=1",
            "net_af_xdp0,iface=a_name_longer_than_15",
        ] {
            let r = AfXdpDriver::from_devargs(&DevArgs::parse(bad).unwrap());
            assert!(r.is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pool_with_no_cache_slot_left_is_an_error_that_says_what_to_do() {
        let os = rdk_os_linux::LinuxOs::plain();
        let pool =
            PktMbufPool::create(&os, &rdk_core::mbuf::PktMbufPoolConfig::new("afxc", 256)).unwrap();
        let held: Vec<_> = (0..rdk_core::mempool::MAX_CACHES)
            .map(|_| pool.cache(2).unwrap())
            .collect();
        let mut d = AfXdpDriver::new("veth0", 1);
        let counters = Arc::new(QueueCounters::new());
        let e = d
            .rx_queue_setup(0, 256, &pool, &RxQueueConfig::default(), counters.clone())
            .unwrap_err();
        assert!(e.to_string().contains("pool of its own"), "{e}");
        drop(held);
        let q = d.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default(), counters);
        assert!(q.is_ok(), "{:?}", q.err());
    }

    fn xstat(d: &AfXdpDriver, name: &str) -> Option<u64> {
        let mut out = Vec::new();
        d.xstats(&mut out);
        out.iter().find(|x| x.name == name).map(|x| x.value)
    }

    /// Two queues bound differently (a zero-copy driver that refused one queue): the port's
    /// mode and xstats describe both, whichever was set up last.
    #[test]
    fn bind_mode_and_zero_copy_describe_every_queue() {
        let copy = |why: &str| BindMode::Copy {
            reason: why.to_string(),
        };
        for order in [[0, 1], [1, 0]] {
            let modes = [BindMode::ZeroCopy, copy("refused on queue 1")];
            let mut d = AfXdpDriver::new("veth0", 2);
            for q in 0..2 {
                d.record_bind(q, modes[order[q]].clone());
            }
            let copy_q = order.iter().position(|&i| i == 1).unwrap();
            assert_eq!(
                d.bind_mode(),
                &copy(&format!(
                    "1 of 2 queues in copy mode (queue {copy_q}: refused on queue 1)"
                )),
                "order {order:?}"
            );
            assert_eq!(
                xstat(&d, "zero_copy"),
                Some(0),
                "not every queue is zero-copy"
            );
            assert_eq!(xstat(&d, &format!("zero_copy_q{copy_q}")), Some(0));
            assert_eq!(xstat(&d, &format!("zero_copy_q{}", 1 - copy_q)), Some(1));
            assert_eq!(d.queue_bind_mode(copy_q as u16), Some(&modes[1]));
        }
        let mut d = AfXdpDriver::new("veth0", 2);
        d.record_bind(0, BindMode::ZeroCopy);
        d.record_bind(1, BindMode::ZeroCopy);
        assert_eq!(
            (d.bind_mode(), xstat(&d, "zero_copy")),
            (&BindMode::ZeroCopy, Some(1))
        );
        let mut d = AfXdpDriver::new("veth0", 2);
        d.record_bind(0, copy("force_copy=1"));
        d.record_bind(1, copy("force_copy=1"));
        assert_eq!(
            d.bind_mode(),
            &copy("force_copy=1"),
            "one shared reason, as before"
        );
        d.teardown(&mut [], &mut []);
        assert_eq!(
            (d.bind_mode(), d.queue_bind_mode(0)),
            (&BindMode::Unbound, None)
        );
        assert_eq!(xstat(&d, "zero_copy_q0"), None);
    }
}
