//! The `net_virtio` device: negotiation, configuration, queue lifecycle, link and control.

use crate::ctrl::{CtrlQueue, CTRL_BUF, CTRL_SIZE};
use crate::recover::{Recovery, Slot};
use crate::rx::{RxHandoff, VirtioRx, HDR};
use crate::stats::{anomaly_xstats, RxStats, TxStats};
use crate::tx::VirtioTx;
use alloc::sync::Arc;
use alloc::vec::Vec;
use rdk_core::ethdev::{
    DescLimits, DevArgs, DevArgsError, DevInfo, DeviceReason, Driver, EthError, LinkStatus,
    MacAddr, PerQueue, PortConfig, QueueCounters, RssHashTypes, RxOffload, RxQueueConfig,
    TxOffload, TxQueueConfig, XStat,
};
use rdk_core::mbuf::{PktMbufPool, PORT_INVALID};
use rdk_core::os::{DmaAlloc, DmaRegion, DmaRequest, EventNotifier};
use rdk_core::virtio::format::{ctrl, net_cfg};
use rdk_core::virtio::{
    net_status, AnyQueue, DeviceStatus, Features, Interrupts, QueueAreas, QueueNotify, Transport,
    TransportError,
};
use spin::Mutex;

/// The features this driver knows how to use; it accepts the ones the device offers too.
pub const SUPPORTED: Features = Features::VERSION_1
    .union(Features::ACCESS_PLATFORM)
    .union(Features::RING_PACKED)
    .union(Features::IN_ORDER)
    .union(Features::EVENT_IDX)
    .union(Features::NET_MAC)
    .union(Features::NET_STATUS)
    .union(Features::NET_MTU)
    .union(Features::NET_MRG_RXBUF)
    .union(Features::NET_CSUM)
    .union(Features::NET_GUEST_CSUM)
    .union(Features::NET_CTRL_VQ)
    .union(Features::NET_CTRL_RX)
    .union(Features::NET_CTRL_MAC_ADDR)
    .union(Features::NET_MQ);

/// Link speed reported (virtio-net without `SPEED_DUPLEX` says nothing).
const SPEED_MBPS: u32 = 10_000;

/// How a [`VirtioNet`] is set up.
#[derive(Clone, Copy, Debug)]
pub struct VirtioNetConfig {
    /// Features the driver may accept (intersected with [`SUPPORTED`] and the offer).
    pub features: Features,
    /// Input port stamped on received mbufs.
    pub port_id: u16,
}

/// The device arguments `net_virtio` accepts (a `1` allows a feature if the device offers
/// it, a `0` refuses it; the names are those of DPDK's virtio-user), and `force_legacy`,
/// which [`AnyPciTransport::from_devargs`](crate::AnyPciTransport::from_devargs) reads.
/// Every feature is allowed by default except `event_idx`: a polling port gains nothing
/// from it and pays a cache-line transfer per burst for the event index (split-ring
/// transmit to DPDK's vhost: 23 -> 24 Mpps without it); DPDK's net_virtio never negotiates
/// it. Interrupt-mode receive works either way.
pub const DEVARGS_KEYS: &[&str] = &[
    "packed_vq",
    "in_order",
    "mrg_rxbuf",
    "event_idx",
    "mq",
    "force_legacy",
];

impl VirtioNetConfig {
    /// The configuration `net_virtioN[,packed_vq=0|1][,in_order=0|1][,mrg_rxbuf=0|1]
    /// [,event_idx=0|1][,mq=0|1]` asks for (every feature allowed by default but
    /// `event_idx`; see [`DEVARGS_KEYS`]).
    pub fn from_devargs(args: &DevArgs) -> Result<Self, DevArgsError> {
        args.check_keys(DEVARGS_KEYS)?;
        Self::features_from_devargs(args)
    }

    /// [`from_devargs`](Self::from_devargs) without checking for unknown keys: for a port
    /// whose transport reads keys of its own (virtio-user's `path`, `queues`, …); the caller
    /// checks the union of both lists.
    pub fn features_from_devargs(args: &DevArgs) -> Result<Self, DevArgsError> {
        let mut features = SUPPORTED;
        for (key, f, default) in [
            ("packed_vq", Features::RING_PACKED, true),
            ("in_order", Features::IN_ORDER, true),
            ("mrg_rxbuf", Features::NET_MRG_RXBUF, true),
            ("event_idx", Features::EVENT_IDX, false),
            ("mq", Features::NET_MQ, true),
        ] {
            if !args.get_bool(key, default)? {
                features -= f;
            }
        }
        Ok(Self {
            features,
            ..Self::default()
        })
    }
}

impl Default for VirtioNetConfig {
    fn default() -> Self {
        Self {
            features: SUPPORTED,
            port_id: PORT_INVALID,
        }
    }
}

/// The receive queue type of a [`VirtioNet`].
pub type Rx<T, D> =
    VirtioRx<<D as DmaAlloc>::Region, <T as Transport>::Notify, <T as Transport>::Irq>;
/// The transmit queue type of a [`VirtioNet`].
pub type Tx<T, D> = VirtioTx<<D as DmaAlloc>::Region, <T as Transport>::Notify>;

/// A virtio-net device, over transport `T`, with DMA memory from `D`.
pub struct VirtioNet<T: Transport, D: DmaAlloc> {
    t: Mutex<T>,
    dma: D,
    want: Features,
    features: Features,
    mac: MacAddr,
    mtu: u16,
    max_pairs: u16,
    pairs: u16,
    port_id: u16,
    rx_interrupts: bool,
    /// The port asked for receive checksum offload (`RxOffload::{UDP,TCP}_CKSUM`): only then
    /// is the net header of a received frame read for its checksum flags (as DPDK's
    /// `has_rx_offload`), which spares a cache line per frame otherwise.
    rx_cksum: bool,
    /// The port or one of its transmit queues asked for checksum offload
    /// (`TxOffload::{UDP,TCP}_CKSUM`).
    tx_cksum: bool,
    /// The features in use since the last start: [`features`](Self::features) less the
    /// checksum offloads the port did not ask for.
    active: Features,
    irqs: Mutex<Option<Interrupts<T::Irq>>>,
    ctrl: Mutex<Option<CtrlQueue<D::Region, T::Notify>>>,
    promisc: bool,
    allmulti: bool,
    mac_set: bool,
    started: bool,
    rx_stats: PerQueue<RxStats>,
    tx_stats: PerQueue<TxStats>,
    /// The epochs the queues follow (see [`crate::recover`]).
    rec: Arc<Recovery>,
    /// The running queues as the control path knows them, and a recovery in progress.
    run: Mutex<Run<T::Notify, T::Irq>>,
}

/// A started queue as the control path knows it: its ring areas and its recovery slot.
type Started<H> = (QueueAreas, Arc<Slot<H>>);

/// What the control path keeps of the queues of the last start, to bring the device up
/// again over their rings without touching the queues themselves.
struct Run<N, E> {
    rx: Vec<Started<RxHandoff<N, E>>>,
    tx: Vec<Started<N>>,
    /// The epoch of the recovery in progress: the device was reset, the queues are asked to
    /// rebuild their rings.
    recovering: Option<u32>,
    /// The recovery cannot succeed (the device changed its features): stop and start.
    stuck: bool,
    /// Why the last bring-up in a recovery failed.
    error: Option<EthError>,
}

impl<N, E> Run<N, E> {
    const fn new() -> Self {
        Self {
            rx: Vec::new(),
            tx: Vec::new(),
            recovering: None,
            stuck: false,
            error: None,
        }
    }

    fn all_acked(&self, epoch: u32) -> bool {
        self.rx.iter().all(|(_, s)| s.acked(epoch)) && self.tx.iter().all(|(_, s)| s.acked(epoch))
    }
}

/// What [`VirtioNet::connect_queues`] set up: interrupts and each data queue's doorbell.
struct Up<T: Transport> {
    irqs: Option<Interrupts<T::Irq>>,
    rx: Vec<T::Notify>,
    tx: Vec<T::Notify>,
}

pub(crate) fn lost_ring() -> EthError {
    device(
        "queue setup",
        "the queue lost its ring memory; set the queue up again",
    )
}

fn device(op: &'static str, text: &'static str) -> EthError {
    EthError::Device {
        op,
        reason: DeviceReason { text, code: 0 },
    }
}

/// A transport error as a port error (the text of the most common causes).
fn tr(op: &'static str, e: TransportError) -> EthError {
    let text = match e {
        TransportError::Pci(_) => "PCI access to the virtio device failed",
        TransportError::Event(_) => "an interrupt event failed",
        TransportError::Malformed { what } => what,
        TransportError::NoSuchQueue { .. } => "the device has fewer queues than asked for",
        TransportError::ResetTimeout => "the device did not come out of reset",
        TransportError::Refused { what } => what,
        TransportError::Os { op, .. } => op,
        _ => "virtio transport failure",
    };
    let code = match e {
        TransportError::Os { code, .. } => code,
        _ => 0,
    };
    EthError::Device {
        op,
        reason: DeviceReason { text, code },
    }
}

/// Zeroes a ring region and builds a queue over it, with the device's interrupts for it off.
///
/// Zeroed rings ask for interrupts (avail flags 0, driver event flags `ENABLE`), so without
/// this a device would signal every used update of a polled queue: a wasted syscall per burst
/// in a vhost-user backend, and a stale count in an rx queue's eventfd that ends its first
/// interrupt sleep early. DPDK's `virtio_init_vring` does the same; `intr_enable` turns them
/// on where wanted.
pub(crate) fn fresh_queue<R: DmaRegion>(
    region: R,
    size: u16,
    features: Features,
) -> Result<AnyQueue<R>, EthError> {
    // SAFETY: the region is ours and the device was reset (or never told of it), so nothing
    // else reads or writes it.
    unsafe { core::ptr::write_bytes(region.as_ptr(), 0, region.len()) };
    use rdk_core::virtio::Virtqueue;
    let mut q = AnyQueue::new(region, size, features)
        .map_err(|_| device("queue setup", "ring memory is too small or not contiguous"))?;
    q.disable_interrupts();
    Ok(q)
}

/// Reads device config `len` bytes at `off`, retrying while the generation changes.
fn read_config<T: Transport>(t: &mut T, off: usize, buf: &mut [u8]) -> Result<(), TransportError> {
    for _ in 0..64 {
        let g = t.config_generation()?;
        t.read_config(off, buf)?;
        if t.config_generation()? == g {
            return Ok(());
        }
    }
    Err(TransportError::Malformed {
        what: "the config generation never settles",
    })
}

/// Resets the device and negotiates features; leaves it at `FEATURES_OK`.
fn negotiate<T: Transport>(t: &mut T, want: Features) -> Result<Features, EthError> {
    let op = "virtio feature negotiation";
    t.reset().map_err(|e| tr(op, e))?;
    let s = DeviceStatus::ACKNOWLEDGE;
    t.set_status(s).map_err(|e| tr(op, e))?;
    let s = s | DeviceStatus::DRIVER;
    t.set_status(s).map_err(|e| tr(op, e))?;
    let offered = t.device_features().map_err(|e| tr(op, e))?;
    let legacy = t.is_legacy();
    if !legacy && !offered.contains(Features::VERSION_1) {
        let _ = t.set_status(s | DeviceStatus::FAILED);
        return Err(device(
            op,
            "the device is legacy-only (no VERSION_1); use a modern virtio device or the \
             legacy transport (LegacyPciTransport)",
        ));
    }
    let mut f = offered & want & SUPPORTED;
    if legacy {
        f = crate::legacy::legacy_features(offered, f).map_err(|what| {
            let _ = t.set_status(s | DeviceStatus::FAILED);
            device(op, what)
        })?;
    }
    t.set_driver_features(f).map_err(|e| tr(op, e))?;
    let s = s | DeviceStatus::FEATURES_OK;
    t.set_status(s).map_err(|e| tr(op, e))?;
    let st = t.status().map_err(|e| tr(op, e))?;
    if !st.contains(DeviceStatus::FEATURES_OK) {
        let _ = t.set_status(s | DeviceStatus::FAILED);
        return Err(device(
            op,
            "the device refused the features the driver accepted",
        ));
    }
    if t.device_features().map_err(|e| tr(op, e))? != offered {
        let _ = t.set_status(s | DeviceStatus::FAILED);
        return Err(device(
            op,
            "the device changed its features after FEATURES_OK; it is broken — reset it",
        ));
    }
    Ok(f)
}

impl<T: Transport, D: DmaAlloc + Send> VirtioNet<T, D> {
    /// Negotiates with the device behind `t` and reads its configuration.
    pub fn new(mut t: T, dma: D, cfg: VirtioNetConfig) -> Result<Self, EthError> {
        let features = negotiate(&mut t, cfg.features)?;
        let op = "read virtio-net config";
        let mut mac = MacAddr::local_from_name("net_virtio");
        if features.contains(Features::NET_MAC) {
            read_config(&mut t, net_cfg::MAC, &mut mac.0).map_err(|e| tr(op, e))?;
        }
        let mut b = [0u8; 2];
        let mut max_pairs = 1;
        if features.contains(Features::NET_MQ) {
            read_config(&mut t, net_cfg::MAX_VIRTQUEUE_PAIRS, &mut b).map_err(|e| tr(op, e))?;
            max_pairs = u16::from_le_bytes(b);
            // §5.1.4: 1..=0x8000; a device outside that is lying.
            if !(1..=0x8000).contains(&max_pairs) {
                return Err(device(op, "max_virtqueue_pairs outside 1..=32768"));
            }
        }
        let mut mtu = 1500;
        if features.contains(Features::NET_MTU) {
            read_config(&mut t, net_cfg::MTU, &mut b).map_err(|e| tr(op, e))?;
            mtu = u16::from_le_bytes(b).max(68);
        }
        let nq = t.num_queues().map_err(|e| tr(op, e))?;
        let ctrl_vq = features.contains(Features::NET_CTRL_VQ);
        if (nq as u32) < 2 * max_pairs as u32 + ctrl_vq as u32 {
            return Err(device(
                op,
                "the device has fewer queues than its queue pairs need",
            ));
        }
        Ok(Self {
            t: Mutex::new(t),
            dma,
            want: cfg.features,
            features,
            mac,
            mtu,
            max_pairs,
            pairs: 1,
            port_id: cfg.port_id,
            rx_interrupts: false,
            rx_cksum: false,
            tx_cksum: false,
            active: features,
            irqs: Mutex::new(None),
            ctrl: Mutex::new(None),
            promisc: false,
            allmulti: false,
            mac_set: false,
            started: false,
            rx_stats: PerQueue::default(),
            tx_stats: PerQueue::default(),
            rec: Arc::new(Recovery::default()),
            run: Mutex::new(Run::new()),
        })
    }

    /// Runs `f` on the transport (for diagnostics; the driver's own state is not touched).
    pub fn with_transport<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.t.lock())
    }

    /// The features the device and the driver agreed on when the port was created: what the
    /// port can do ([`info`](Driver::info) reports offloads from them).
    pub fn features(&self) -> Features {
        self.features
    }

    /// The features negotiated at the last start: [`features`](Self::features) less
    /// `NET_CSUM` unless the port asked for transmit checksum offload and less
    /// `NET_GUEST_CSUM` unless it asked for receive checksum offload, as DPDK's net_virtio
    /// does. A device that may hand over partly checksummed frames, or that reads every
    /// transmit header for a checksum request, costs a cache line per packet; a port that
    /// did not ask gets complete checksums and the device reads nothing it need not.
    pub fn active_features(&self) -> Features {
        self.active
    }

    /// The checksum offloads the port did not ask for (see
    /// [`active_features`](Self::active_features)).
    fn unasked(&self) -> Features {
        let mut f = Features::empty();
        if !self.tx_cksum {
            f |= Features::NET_CSUM;
        }
        if !self.rx_cksum {
            f |= Features::NET_GUEST_CSUM;
        }
        f
    }

    /// The configuration-change interrupt (link changes, `DEVICE_NEEDS_RESET`), once the port
    /// started with `lsc_interrupt` or `rx_interrupts`. A recovery connects interrupts again:
    /// the transport may hand out a new event then (vhost-user keeps its events).
    pub fn config_irq(&self) -> Option<Arc<T::Irq>> {
        self.irqs.lock().as_ref().map(|i| i.config.clone())
    }

    /// Whether the device asked to be reset (`DEVICE_NEEDS_RESET`) and the port has not
    /// recovered yet. A started port recovers by itself (see [`link`](Driver::link)); a
    /// stop and start also does.
    pub fn needs_reset(&self) -> bool {
        // Not holding `run` while taking the transport: the link query takes them the
        // other way round.
        let recovering = self.run.lock().recovering.is_some();
        recovering
            || self
                .t
                .lock()
                .status()
                .is_ok_and(|s| s.contains(DeviceStatus::DEVICE_NEEDS_RESET))
    }

    /// Why the last attempt to bring the device up again after `DEVICE_NEEDS_RESET` failed
    /// (the port retries on the next [`link`](Driver::link) query unless the device changed
    /// its features, which only a stop and start can report properly).
    pub fn recovery_error(&self) -> Option<EthError> {
        self.run.lock().error.clone()
    }

    /// Acknowledges a configuration interrupt (and the ISR); returns the link now.
    pub fn config_changed(&self) -> LinkStatus {
        if let Some(i) = self.irqs.lock().as_ref() {
            let _ = i.config.ack();
        }
        let _ = self.t.lock().interrupt_status();
        self.link()
    }

    /// Runs a control command, when the control queue is up.
    fn command(&mut self, class: u8, cmd: u8, data: &[u8]) -> Result<(), EthError> {
        match self.ctrl.get_mut().as_mut() {
            Some(c) if self.started => c.command(class, cmd, data),
            _ => Ok(()),
        }
    }

    fn alloc(&self, name: &str, len: usize) -> Result<D::Region, EthError> {
        self.dma
            .dma_alloc(&DmaRequest::new(name, len).align(4096).contiguous())
            .map_err(|_| {
                device(
                    "allocate virtqueue memory",
                    "no IOVA-contiguous DMA memory for a ring; free memory or add hugepages",
                )
            })
    }

    /// Queue size for `nb_desc`: the largest power of two not above it nor above the
    /// device's maximum. That maximum need not be a power of two (a packed ring's may be any
    /// size, virtio 1.2 §2.8), and our rings are: round it down rather than refuse the queue.
    fn queue_size(&self, queue: u16, nb_desc: u16) -> Result<u16, EthError> {
        let max = self
            .t
            .lock()
            .max_queue_size(queue)
            .map_err(|e| tr("queue setup", e))?;
        let cap = nb_desc.max(1).min(max);
        if cap == 0 {
            return Err(device(
                "queue setup",
                "the device offers no usable queue size",
            ));
        }
        // cap >= 1, so at most 15 leading zeros: the highest set bit of cap.
        Ok(1u16 << (15 - cap.leading_zeros()))
    }

    /// Resets the device and negotiates the features of the last configuration: the same
    /// as when the port was created, or a typed error.
    fn negotiate_same(&self, t: &mut T) -> Result<Features, EthError> {
        let unasked = self.unasked();
        let f = negotiate(t, self.want - unasked)?;
        if f != self.features - unasked {
            let _ = t.set_status(
                DeviceStatus::ACKNOWLEDGE
                    | DeviceStatus::DRIVER
                    | DeviceStatus::FEATURES_OK
                    | DeviceStatus::FAILED,
            );
            return Err(device(
                "start",
                "the device offers different features than when the port was created; \
                 create the port again",
            ));
        }
        Ok(f)
    }

    /// Everything a start does after negotiating, but rebuilding the data queues: connects
    /// interrupts, tells the device where the rings (`rx`, `tx`: their areas) are, sets up
    /// the control queue, sets `DRIVER_OK` and replays the control-queue settings.
    fn connect_queues(
        &self,
        t: &mut T,
        f: Features,
        rx: &[QueueAreas],
        tx: &[QueueAreas],
    ) -> Result<Up<T>, EthError> {
        let irq_queues: Vec<u16> = if self.rx_interrupts {
            (0..rx.len() as u16).map(|i| 2 * i).collect()
        } else {
            Vec::new()
        };
        let irqs = t
            .setup_interrupts(&irq_queues)
            .map_err(|e| tr("interrupt setup", e))?;
        let attach = |t: &mut T, index: u16, areas: &QueueAreas| {
            let op = "virtqueue setup";
            t.setup_queue(index, areas).map_err(|e| tr(op, e))?;
            t.enable_queue(index).map_err(|e| tr(op, e))?;
            t.queue_notify(index).map_err(|e| tr(op, e))
        };
        let mut up = Up::<T> {
            irqs,
            rx: Vec::with_capacity(rx.len()),
            tx: Vec::with_capacity(tx.len()),
        };
        for (i, a) in rx.iter().enumerate() {
            up.rx.push(attach(t, 2 * i as u16, a)?);
        }
        for (i, a) in tx.iter().enumerate() {
            up.tx.push(attach(t, 2 * i as u16 + 1, a)?);
        }
        let mut ctrl = self.ctrl.lock();
        if let Some(c) = ctrl.as_mut() {
            let areas = rdk_core::virtio::Virtqueue::areas(c.rebuild(f)?);
            c.notify = Some(attach(t, 2 * self.max_pairs, &areas)?);
        }
        let s = DeviceStatus::ACKNOWLEDGE
            | DeviceStatus::DRIVER
            | DeviceStatus::FEATURES_OK
            | DeviceStatus::DRIVER_OK;
        t.set_status(s).map_err(|e| tr("start", e))?;
        if let Some(c) = ctrl.as_mut() {
            if f.contains(Features::NET_MQ) && self.pairs > 1 {
                let n = self.pairs.to_le_bytes();
                c.command(ctrl::CLASS_MQ, ctrl::MQ_VQ_PAIRS_SET, &n)?;
            }
            if f.contains(Features::NET_CTRL_RX) {
                let (p, a) = (self.promisc as u8, self.allmulti as u8);
                c.command(ctrl::CLASS_RX, ctrl::RX_PROMISC, &[p])?;
                c.command(ctrl::CLASS_RX, ctrl::RX_ALLMULTI, &[a])?;
            }
            if self.mac_set && f.contains(Features::NET_CTRL_MAC_ADDR) {
                c.command(ctrl::CLASS_MAC, ctrl::MAC_ADDR_SET, &self.mac.0)?;
            }
        }
        Ok(up)
    }

    fn start_inner(&mut self, rx: &mut [Rx<T, D>], tx: &mut [Tx<T, D>]) -> Result<(), EthError> {
        let mut guard = self.t.lock();
        let t = &mut *guard;
        let f = self.negotiate_same(t)?;
        let mut run = Run::new();
        for q in rx.iter_mut() {
            let areas = rdk_core::virtio::Virtqueue::areas(q.rebuild(f, self.rx_cksum)?);
            run.rx.push((areas, q.sync.slot.clone()));
        }
        for q in tx.iter_mut() {
            let areas = rdk_core::virtio::Virtqueue::areas(q.rebuild(f)?);
            run.tx.push((areas, q.sync.slot.clone()));
        }
        let rx_areas: Vec<QueueAreas> = run.rx.iter().map(|(a, _)| *a).collect();
        let tx_areas: Vec<QueueAreas> = run.tx.iter().map(|(a, _)| *a).collect();
        let up = self.connect_queues(t, f, &rx_areas, &tx_areas)?;
        drop(guard);
        for (i, (q, n)) in rx.iter_mut().zip(up.rx).enumerate() {
            q.notify = Some(n);
            q.irq = up
                .irqs
                .as_ref()
                .and_then(|irqs| irqs.queues.get(i).cloned());
        }
        for (q, n) in tx.iter_mut().zip(up.tx) {
            q.notify = Some(n);
        }
        *self.irqs.get_mut() = up.irqs;
        *self.run.get_mut() = run;
        self.rec.settle();
        self.active = f;
        self.started = true;
        for q in rx.iter_mut() {
            q.fill();
        }
        Ok(())
    }

    /// The link query's device check: `DEVICE_NEEDS_RESET` starts a recovery (see
    /// [`crate::recover`]), which this call continues once every queue acknowledged it.
    /// Returns whether the device runs (`DRIVER_OK`, no reset pending or in progress).
    fn poll_device(&self) -> bool {
        let mut t = self.t.lock();
        let mut run = self.run.lock();
        if let Some(epoch) = run.recovering {
            if run.stuck || !run.all_acked(epoch) {
                return false;
            }
            match self.revive(&mut t, &run, epoch) {
                Ok(()) => {
                    run.recovering = None;
                    run.error = None;
                }
                Err((e, retry)) => {
                    // Whatever the device saw of the rings, it sees no more; the queues
                    // rebuild again before the next attempt.
                    // A reset that does not complete leaves the device owning the rebuilt
                    // rings' buffers: the queues must not free them again.
                    let reset = t.reset();
                    run.error = Some(e);
                    run.stuck = !retry || reset.is_err();
                    if !run.stuck {
                        run.recovering = Some(self.rec.request());
                        self.wake_rx();
                    }
                    return false;
                }
            }
        }
        let st = t.status().unwrap_or(DeviceStatus::DEVICE_NEEDS_RESET);
        if st.contains(DeviceStatus::DEVICE_NEEDS_RESET) {
            // Reset first: from here on the device writes nothing into the rings, so the
            // queues may free their buffers.
            if let Err(e) = t.reset() {
                // The device may still write into every buffer it was given: the queues keep
                // them (no recovery is requested); the next link query tries again.
                run.error = Some(tr("recovery from DEVICE_NEEDS_RESET", e));
                return false;
            }
            run.recovering = Some(self.rec.request());
            self.wake_rx();
            return false;
        }
        st.contains(DeviceStatus::DRIVER_OK)
    }

    /// Signals every receive queue's interrupt event: a queue asleep on it wakes up, bursts
    /// and so takes its part in a recovery.
    fn wake_rx(&self) {
        if let Some(irqs) = self.irqs.lock().as_ref() {
            for e in &irqs.queues {
                let _ = e.signal();
            }
        }
    }

    /// Brings the device up again over the rings the queues rebuilt for `epoch`, as a start
    /// does; hands each queue its doorbell, kicks the receive queues once (their buffers are
    /// posted) and lets the queues run. An error says whether trying again may help.
    fn revive(
        &self,
        t: &mut T,
        run: &Run<T::Notify, T::Irq>,
        epoch: u32,
    ) -> Result<(), (EthError, bool)> {
        // A device that cannot be negotiated with now may come back (a vhost-user backend
        // restarting); one that agrees to other features is not the device the port was
        // set up for, and trying again will not change that.
        let f = negotiate(t, self.want - self.unasked()).map_err(|e| (e, true))?;
        if f != self.active {
            return Err((
                device(
                    "recovery from DEVICE_NEEDS_RESET",
                    "the device came back with other features; stop and start the port \
                     (or create it again)",
                ),
                false,
            ));
        }
        let rx: Vec<QueueAreas> = run.rx.iter().map(|(a, _)| *a).collect();
        let tx: Vec<QueueAreas> = run.tx.iter().map(|(a, _)| *a).collect();
        let up = self.connect_queues(t, f, &rx, &tx).map_err(|e| (e, true))?;
        let old = self.irqs.lock().take();
        for (i, ((_, slot), n)) in run.rx.iter().zip(up.rx).enumerate() {
            n.notify();
            let irq = up
                .irqs
                .as_ref()
                .and_then(|irqs| irqs.queues.get(i).cloned());
            slot.give((n, irq));
        }
        for ((_, slot), n) in run.tx.iter().zip(up.tx) {
            slot.give(n);
        }
        self.rec.go_live(epoch);
        // A queue asleep on its interrupt wakes up and finds the device back.
        for irqs in [old.as_ref(), up.irqs.as_ref()].into_iter().flatten() {
            for e in &irqs.queues {
                let _ = e.signal();
            }
        }
        *self.irqs.lock() = up.irqs;
        Ok(())
    }

    /// Forgets a recovery in progress (the port stops or closes; a start rebuilds every
    /// queue).
    fn end_run(&mut self) {
        *self.run.get_mut() = Run::new();
        *self.irqs.get_mut() = None;
        self.started = false;
    }
}

impl<T: Transport, D: DmaAlloc + Send> Driver for VirtioNet<T, D> {
    type Rx = Rx<T, D>;
    type Tx = Tx<T, D>;

    fn info(&self) -> DevInfo {
        let mut max_desc = self.t.lock().max_queue_size(0).unwrap_or(256);
        if max_desc == 0 {
            max_desc = 256;
        }
        let lim = DescLimits {
            min: 1,
            max: max_desc,
            align: 1,
        };
        let mut rx_off = RxOffload::empty();
        if self.features.contains(Features::NET_GUEST_CSUM) {
            rx_off |= RxOffload::UDP_CKSUM | RxOffload::TCP_CKSUM;
        }
        if self.features.contains(Features::NET_MRG_RXBUF) {
            rx_off |= RxOffload::SCATTER;
        }
        let mut tx_off = TxOffload::MULTI_SEGS;
        if self.features.contains(Features::NET_CSUM) {
            tx_off |= TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM;
        }
        DevInfo {
            driver_name: "net_virtio",
            max_rx_queues: self.max_pairs,
            max_tx_queues: self.max_pairs,
            rx_desc_lim: lim,
            tx_desc_lim: lim,
            min_mtu: 68,
            max_mtu: self.mtu,
            rx_offload_capa: rx_off,
            tx_offload_capa: tx_off,
            rss_hash_types: RssHashTypes::empty(),
            speed_mbps: SPEED_MBPS,
        }
    }

    fn configure(&mut self, config: &PortConfig) -> Result<(), EthError> {
        let pairs = config.nb_rxq.max(config.nb_txq).max(1);
        let by_enable = self.t.lock().pairs_follow_enabled_queues();
        if pairs > 1
            && !(self.features.contains(Features::NET_MQ)
                && (by_enable || self.features.contains(Features::NET_CTRL_VQ)))
        {
            return Err(device(
                "configure",
                "several queue pairs need the device's MQ and CTRL_VQ features",
            ));
        }

        if let Some(mtu) = config.mtu {
            self.mtu = mtu;
        }
        self.pairs = pairs;
        self.rx_interrupts = config.rx_interrupts;
        self.rx_cksum = config
            .rx_offloads
            .intersects(RxOffload::UDP_CKSUM | RxOffload::TCP_CKSUM);
        self.tx_cksum = config
            .tx_offloads
            .intersects(TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM);
        if self.features.contains(Features::NET_CTRL_VQ) && self.ctrl.get_mut().is_none() {
            let bytes = AnyQueue::<D::Region>::bytes_needed(CTRL_SIZE, self.features);
            let ring = self.alloc("virtio-ctrlq", bytes)?;
            let buf = self.alloc("virtio-ctrlbuf", CTRL_BUF)?;
            *self.ctrl.get_mut() = Some(CtrlQueue::new(ring, buf));
        }
        Ok(())
    }

    fn rx_queue_setup(
        &mut self,
        queue: u16,
        nb_desc: u16,
        pool: &PktMbufPool,
        config: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<Self::Rx, EthError> {
        if pool.headroom() < HDR {
            return Err(device(
                "rx queue setup",
                "mbuf headroom is smaller than the 12-byte virtio-net header",
            ));
        }
        let frame = self.mtu as u32 + 14 + 4;
        if !self.features.contains(Features::NET_MRG_RXBUF) && (pool.data_room() as u32) < frame {
            return Err(EthError::BuffersTooSmall {
                data_room: pool.data_room(),
                needed: frame,
            });
        }
        // Here rather than per buffer: a device that cannot reach the pool would take its
        // buffers without a word and never fill one.
        let (va, len) = pool.mempool().objects();
        self.t
            .lock()
            .check_reachable(va, len)
            .map_err(|e| tr("rx queue setup", e))?;
        let size = self.queue_size(2 * queue, nb_desc)?;
        let bytes = AnyQueue::<D::Region>::bytes_needed(size, self.features);
        let region = self.alloc("virtio-rxq", bytes)?;
        let stats = self.rx_stats.fresh(queue);
        let mut q = VirtioRx::new(
            region,
            size,
            pool.clone(),
            self.port_id,
            counters,
            stats,
            self.rec.clone(),
        );
        if config.free_thresh != 0 {
            q.set_refill_thresh(config.free_thresh);
        }
        Ok(q)
    }

    fn tx_queue_setup(
        &mut self,
        queue: u16,
        nb_desc: u16,
        config: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<Self::Tx, EthError> {
        let size = self.queue_size(2 * queue + 1, nb_desc)?;
        let bytes = AnyQueue::<D::Region>::bytes_needed(size, self.features);
        let region = self.alloc("virtio-txq", bytes)?;
        let hdrs = self.alloc("virtio-txhdr", Tx::<T, D>::hdr_bytes(size))?;
        let stats = self.tx_stats.fresh(queue);
        self.tx_cksum |= config
            .offloads
            .intersects(TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM);
        let mut q = VirtioTx::new(region, hdrs, size, counters, stats, self.rec.clone());
        if config.free_thresh != 0 {
            q.set_free_thresh(config.free_thresh);
        }
        Ok(q)
    }

    fn start(&mut self, rx: &mut [Self::Rx], tx: &mut [Self::Tx]) -> Result<(), EthError> {
        let r = self.start_inner(rx, tx);
        if r.is_err() {
            self.end_run();
            let _ = self.t.get_mut().reset();
        }
        r
    }

    fn stop(&mut self, _rx: &mut [Self::Rx], tx: &mut [Self::Tx]) -> Result<(), EthError> {
        // Completed packets go home now; after the reset nothing more completes, and what is
        // still in flight is freed when the queues are rebuilt or dropped.
        // (During a recovery the device was reset already: the reclaim finds nothing new.)
        for q in tx.iter_mut() {
            q.reclaim();
        }
        self.end_run();
        self.t.get_mut().reset().map_err(|e| tr("stop", e))
    }

    fn close(&mut self) {
        self.end_run();
        let _ = self.t.get_mut().reset();
    }

    /// The link, from the config `status` field; `DEVICE_NEEDS_RESET` while started resets
    /// the device and starts a recovery, which the following calls carry on once every queue
    /// has been polled (a queue nobody polls keeps the link down; see the crate docs).
    fn link(&self) -> LinkStatus {
        let mut up = self.started && self.poll_device();
        if up && self.features.contains(Features::NET_STATUS) {
            let mut b = [0u8; 2];
            up = read_config(&mut *self.t.lock(), net_cfg::STATUS, &mut b).is_ok()
                && u16::from_le_bytes(b) & net_status::LINK_UP != 0;
        }
        LinkStatus {
            up,
            speed_mbps: SPEED_MBPS,
            full_duplex: true,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), EthError> {
        if !self.features.contains(Features::NET_CTRL_MAC_ADDR) {
            return Err(EthError::NotSupported {
                op: "set_mac_addr (the device lacks CTRL_MAC_ADDR)",
            });
        }
        self.command(ctrl::CLASS_MAC, ctrl::MAC_ADDR_SET, &mac.0)?;
        self.mac = mac;
        self.mac_set = true;
        Ok(())
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), EthError> {
        self.mtu = mtu;
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), EthError> {
        if !self.features.contains(Features::NET_CTRL_RX) {
            // Without CTRL_RX the device delivers everything (§5.1.6.5.1).
            return if on {
                Ok(())
            } else {
                Err(EthError::NotSupported {
                    op: "promiscuous off (the device lacks CTRL_RX)",
                })
            };
        }
        self.command(ctrl::CLASS_RX, ctrl::RX_PROMISC, &[on as u8])?;
        self.promisc = on;
        Ok(())
    }

    fn set_allmulticast(&mut self, on: bool) -> Result<(), EthError> {
        if !self.features.contains(Features::NET_CTRL_RX) {
            return if on {
                Ok(())
            } else {
                Err(EthError::NotSupported {
                    op: "all-multicast off (the device lacks CTRL_RX)",
                })
            };
        }
        self.command(ctrl::CLASS_RX, ctrl::RX_ALLMULTI, &[on as u8])?;
        self.allmulti = on;
        Ok(())
    }

    fn xstats(&self, out: &mut Vec<XStat>) {
        XStat::extend(
            out,
            &[
                ("rx_runt_errors", self.rx_stats.sum(|s| &s.runt)),
                (
                    "rx_bad_num_buffers_errors",
                    self.rx_stats.sum(|s| &s.bad_num_buffers),
                ),
                (
                    "rx_broken_chain_errors",
                    self.rx_stats.sum(|s| &s.broken_chain),
                ),
                ("rx_queues_broken", self.rx_stats.sum(|s| &s.broken)),
                (
                    "tx_too_many_segs_errors",
                    self.tx_stats.sum(|s| &s.too_many_segs),
                ),
                (
                    "tx_bad_offload_request",
                    self.tx_stats.sum(|s| &s.bad_offload),
                ),
                ("tx_queues_broken", self.tx_stats.sum(|s| &s.broken)),
                ("rx_queue_resets", self.rx_stats.sum(|s| &s.resets)),
                (
                    "rx_reset_dropped_frames",
                    self.rx_stats.sum(|s| &s.reset_dropped),
                ),
                ("tx_queue_resets", self.tx_stats.sum(|s| &s.resets)),
                (
                    "tx_reset_dropped_packets",
                    self.tx_stats.sum(|s| &s.reset_dropped),
                ),
            ],
        );
        anomaly_xstats(out, "rx_device_", |k| {
            self.rx_stats.sum(|s| &s.anomalies[k])
        });
        anomaly_xstats(out, "tx_device_", |k| {
            self.tx_stats.sum(|s| &s.anomalies[k])
        });
    }
}

impl<T: Transport, D: DmaAlloc> Drop for VirtioNet<T, D> {
    fn drop(&mut self) {
        // The device must stop using the control ring before its memory is freed.
        let _ = self.t.lock().reset();
    }
}

impl<T: Transport, D: DmaAlloc> core::fmt::Debug for VirtioNet<T, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("features", &self.features)
            .field("mac", &self.mac)
            .field("max_pairs", &self.max_pairs)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}
