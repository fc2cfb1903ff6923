//! The virtio-net device: registers, queues, and what it does with frames.

use super::ring::{Chain, DevRing, RingError, UsedLie};
use crate::device_mem::DeviceMemory;
use crate::os::MockOs;
use crate::pci::{BarHandler, IrqLines, MockPciDevice};
use rdk_core::addr::Iova;
use rdk_core::virtio::format::{
    cfg_type, common, ctrl, net_hdr_flags, CommonCfg, NetConfig, NetHdr,
};
use rdk_core::virtio::{net_status, DeviceStatus, Features};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use zerocopy::IntoBytes;

/// The BAR holding every virtio structure.
const BAR: u8 = 4;
const BAR_SIZE: u64 = 0x4000;
const COMMON_OFF: u32 = 0x0000;
const ISR_OFF: u32 = 0x1000;
const DEVICE_OFF: u32 = 0x2000;
const NOTIFY_OFF: u32 = 0x3000;
/// Bytes between two queues' doorbells.
const NOTIFY_MULT: u32 = 4;
/// Frames kept for the driver while it has no receive buffers.
const BACKLOG: usize = 4096;
/// The legacy register block (BAR0, I/O space): common registers, the MSI-X vectors, then
/// device configuration (virtio 1.2 §4.1.4.8).
const LEGACY_BAR_SIZE: u64 = 0x40;
/// `VIRTIO_F_ANY_LAYOUT`, which the legacy model always offers (as QEMU does).
const ANY_LAYOUT: u64 = 1 << 27;

/// Ways the device lies, to test a driver's defences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Used elements lie as [`UsedLie`] says (on every queue, from now on).
    Used(UsedLie),
    /// The last capability points back at the first (built in).
    CapLoop,
    /// The common-configuration capability reaches past the end of its BAR (built in).
    CapOutsideBar,
    /// Device features read differently once `FEATURES_OK` is set.
    FeaturesChangeAfterOk,
    /// Control commands are never answered (a hung control path): the device ignores the
    /// control queue's doorbell until it is reset.
    CtrlSilent,
}

/// What the device offers and how it is set up.
#[derive(Clone, Copy, Debug)]
pub struct NetDevConfig {
    /// Features offered.
    pub features: Features,
    /// MAC address in config space.
    pub mac: [u8; 6],
    /// Maximum MTU in config space.
    pub mtu: u16,
    /// Queue pairs.
    pub max_pairs: u16,
    /// Largest queue size the device accepts.
    pub max_queue_size: u16,
    /// Link up at start.
    pub link_up: bool,
    /// Process transmit queues as soon as they are notified (otherwise on
    /// [`MockVirtioNet::process_tx`]).
    pub auto_tx: bool,
    /// A hostile mode present from the start.
    pub hostile: Option<Hostile>,
}

impl Default for NetDevConfig {
    fn default() -> Self {
        Self {
            features: Features::VERSION_1
                | Features::ACCESS_PLATFORM
                | Features::RING_PACKED
                | Features::EVENT_IDX
                | Features::NET_MAC
                | Features::NET_STATUS
                | Features::NET_MTU
                | Features::NET_MRG_RXBUF
                | Features::NET_CSUM
                | Features::NET_GUEST_CSUM
                | Features::NET_CTRL_VQ
                | Features::NET_CTRL_RX
                | Features::NET_CTRL_MAC_ADDR
                | Features::NET_MQ,
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            mtu: 1500,
            max_pairs: 4,
            max_queue_size: 256,
            link_up: true,
            auto_tx: true,
            hostile: None,
        }
    }
}

/// The receive checksum state the device reports in a delivered frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RxCsum {
    /// Nothing said (flags 0).
    #[default]
    None,
    /// `DATA_VALID`: the checksums were checked and are good.
    Valid,
    /// `NEEDS_CSUM`: partial checksum at `start + offset`.
    Partial {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
    },
}

/// A frame the driver transmitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentFrame {
    /// Transmit queue pair.
    pub pair: u16,
    /// The header the driver wrote.
    pub hdr: NetHdr,
    /// The frame after the header.
    pub data: Vec<u8>,
    /// Descriptors the chain used.
    pub descs: usize,
}

/// What the device counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetCounters {
    /// Frames written into receive buffers.
    pub rx_delivered: u64,
    /// Frames dropped: the driver not ready, or too large for its buffers.
    pub rx_dropped: u64,
    /// Frames taken from transmit queues.
    pub tx_frames: u64,
    /// Doorbell writes, all queues.
    pub notifies: u64,
    /// Interrupts raised, all vectors.
    pub interrupts: u64,
    /// Control commands handled.
    pub ctrl_commands: u64,
    /// Device resets (status written 0).
    pub resets: u64,
    /// Driver-side nonsense the device saw (malformed chains, faults).
    pub driver_errors: u64,
    /// Register accesses not of the field's natural width (virtio 1.2 §4.1.3.1).
    pub width_errors: u64,
}

#[derive(Clone, Debug, Default)]
struct QueueRegs {
    size: u16,
    msix: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
    ring: Option<DevRing>,
}

struct State {
    cfg: NetDevConfig,
    /// Serving the legacy interface (BAR0) instead of the modern one.
    legacy: bool,
    hostile: Option<Hostile>,
    dfs: u32,
    gfs: u32,
    driver_features: u64,
    status: u8,
    generation: u8,
    config_msix: u16,
    queue_select: u16,
    isr: u8,
    queues: Vec<QueueRegs>,
    link_up: bool,
    mac: [u8; 6],
    promisc: bool,
    allmulti: bool,
    pairs: u16,
    backlog: Vec<VecDeque<(Vec<u8>, RxCsum)>>,
    sent: Vec<SentFrame>,
    n: VirtioNetCounters,
    last_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    mem: DeviceMemory,
    irqs: IrqLines,
}

/// The test's handle on a virtio-net device model (cheap to clone).
#[derive(Clone)]
pub struct MockVirtioNet {
    sh: Arc<Shared>,
}

impl MockVirtioNet {
    /// A device in `os`'s memory, and the PCI function a driver opens.
    pub fn new(os: &MockOs, cfg: NetDevConfig) -> (MockPciDevice, MockVirtioNet) {
        let sh = Self::shared(os, cfg, false);
        let nq = 2 * cfg.max_pairs as usize + 1;
        let irqs = sh.irqs.clone();
        let handler: Arc<dyn BarHandler> = Arc::new(Front(sh.clone()));
        let cap = |t: u8, off: u32, len: u32, extra: &[u8]| {
            let mut body = vec![(16 + extra.len()) as u8, t, BAR, 0, 0, 0];
            body.extend_from_slice(&off.to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(extra);
            body
        };
        let (common_off, common_len) = if cfg.hostile == Some(Hostile::CapOutsideBar) {
            (BAR_SIZE as u32 - 16, 56)
        } else {
            (COMMON_OFF, 56)
        };
        let mut b = MockPciDevice::builder(0x1af4, 0x1041)
            .bar(BAR, BAR_SIZE, handler)
            .irq_lines(irqs)
            .msix(nq as u32 + 1)
            .cap(0x09, &cap(cfg_type::COMMON, common_off, common_len, &[]))
            .cap(0x09, &cap(cfg_type::ISR, ISR_OFF, 4, &[]))
            .cap(0x09, &cap(cfg_type::DEVICE, DEVICE_OFF, 12, &[]))
            .cap(
                0x09,
                &cap(
                    cfg_type::NOTIFY,
                    NOTIFY_OFF,
                    NOTIFY_MULT * nq as u32,
                    &NOTIFY_MULT.to_le_bytes(),
                ),
            );
        if cfg.hostile == Some(Hostile::CapLoop) {
            b = b.last_cap_next(0x40);
        }
        (b.build(), MockVirtioNet { sh })
    }

    /// A transitional device driven through its legacy interface (`1af4:1000`, registers in
    /// I/O BAR0, an MSI-X capability in config space): only the low 32 feature bits of
    /// `cfg.features` (plus `ANY_LAYOUT`), a queue address as a page number, the legacy ring
    /// layout, queue sizes fixed at `cfg.max_queue_size`, a 10-byte net header without
    /// `MRG_RXBUF`.
    pub fn new_legacy(os: &MockOs, cfg: NetDevConfig) -> (MockPciDevice, MockVirtioNet) {
        let sh = Self::shared(os, cfg, true);
        let nq = 2 * cfg.max_pairs as u32 + 1;
        let handler: Arc<dyn BarHandler> = Arc::new(LegacyFront(sh.clone()));
        let pci = MockPciDevice::builder(0x1af4, 0x1000)
            .io_bar(0, LEGACY_BAR_SIZE, handler)
            .irq_lines(sh.irqs.clone())
            .msix(nq + 1)
            .msix_cap()
            .build();
        (pci, MockVirtioNet { sh })
    }

    fn shared(os: &MockOs, cfg: NetDevConfig, legacy: bool) -> Arc<Shared> {
        let nq = 2 * cfg.max_pairs as usize + 1;
        let state = State {
            cfg,
            legacy,
            hostile: cfg.hostile,
            dfs: 0,
            gfs: 0,
            driver_features: 0,
            status: 0,
            generation: 0,
            config_msix: common::NO_VECTOR,
            queue_select: 0,
            isr: 0,
            queues: vec![QueueRegs::default(); nq],
            link_up: cfg.link_up,
            mac: cfg.mac,
            promisc: false,
            allmulti: false,
            pairs: 1,
            backlog: vec![VecDeque::new(); cfg.max_pairs as usize],
            sent: Vec::new(),
            n: VirtioNetCounters::default(),
            last_error: None,
        };
        let sh = Arc::new(Shared {
            state: Mutex::new(state),
            mem: os.device_memory(),
            irqs: IrqLines::default(),
        });
        sh.lock().reset_queues();
        sh
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.sh.lock()
    }

    /// Sends `frame` to the driver on queue pair `pair`. Returns whether it went into receive
    /// buffers now; otherwise it waits in a backlog for buffers (or was dropped if the driver
    /// is not running or the frame can never fit).
    pub fn deliver(&self, pair: u16, frame: &[u8], csum: RxCsum) -> bool {
        let mut s = self.lock();
        let Some(q) = s.backlog.get_mut(pair as usize) else {
            s.n.rx_dropped += 1;
            return false;
        };
        if q.len() >= BACKLOG {
            s.n.rx_dropped += 1;
            return false;
        }
        q.push_back((frame.to_vec(), csum));
        let before = s.n.rx_delivered;
        self.sh.drain_rx(&mut s, pair);
        s.n.rx_delivered > before && s.backlog[pair as usize].is_empty()
    }

    /// Frames waiting for receive buffers on pair `pair`.
    pub fn backlog(&self, pair: u16) -> usize {
        self.lock()
            .backlog
            .get(pair as usize)
            .map_or(0, |q| q.len())
    }

    /// Takes the frames transmitted so far.
    pub fn take_sent(&self) -> Vec<SentFrame> {
        std::mem::take(&mut self.lock().sent)
    }

    /// Processes every transmit queue now (with `auto_tx` off).
    pub fn process_tx(&self) {
        let mut s = self.lock();
        for p in 0..s.pairs {
            self.sh.process(&mut s, 2 * p + 1);
        }
    }

    /// Sets the link and signals a configuration change.
    pub fn set_link(&self, up: bool) {
        let mut s = self.lock();
        s.link_up = up;
        s.generation = s.generation.wrapping_add(1);
        self.sh.config_interrupt(&mut s);
    }

    /// Sets `DEVICE_NEEDS_RESET` and signals a configuration change.
    pub fn set_needs_reset(&self) {
        let mut s = self.lock();
        s.status |= DeviceStatus::DEVICE_NEEDS_RESET.bits();
        self.sh.config_interrupt(&mut s);
    }

    /// Switches a hostile mode on (or off with `None`) from now on.
    pub fn set_hostile(&self, h: Option<Hostile>) {
        self.lock().hostile = h;
    }

    /// The counters.
    pub fn counters(&self) -> VirtioNetCounters {
        self.lock().n
    }

    /// What the driver last did wrong, as the device saw it.
    pub fn last_driver_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> Features {
        Features::from_bits_retain(self.lock().driver_features)
    }

    /// The device status register.
    pub fn status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.lock().status)
    }

    /// Receive modes set through the control queue: (promiscuous, all-multicast).
    pub fn rx_modes(&self) -> (bool, bool) {
        let s = self.lock();
        (s.promisc, s.allmulti)
    }

    /// The MAC address (as set through the control queue).
    pub fn mac(&self) -> [u8; 6] {
        self.lock().mac
    }

    /// Queue pairs in use (as set through the control queue).
    pub fn pairs(&self) -> u16 {
        self.lock().pairs
    }

    /// Size the driver gave queue `q`, and whether it is enabled.
    pub fn queue(&self, q: u16) -> Option<(u16, bool)> {
        self.lock()
            .queues
            .get(q as usize)
            .map(|r| (r.size, r.enabled))
    }
}

impl std::fmt::Debug for MockVirtioNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockVirtioNet")
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl State {
    fn reset_queues(&mut self) {
        let max = self.cfg.max_queue_size;
        for q in self.queues.iter_mut() {
            *q = QueueRegs {
                size: max,
                msix: common::NO_VECTOR,
                ..Default::default()
            };
        }
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.isr = 0;
        self.config_msix = common::NO_VECTOR;
        self.queue_select = 0;
        self.promisc = false;
        self.allmulti = false;
        self.pairs = 1;
        self.mac = self.cfg.mac;
        self.reset_queues();
        self.n.resets += 1;
    }

    fn live(&self) -> bool {
        self.status & DeviceStatus::DRIVER_OK.bits() != 0
            && self.status & DeviceStatus::DEVICE_NEEDS_RESET.bits() == 0
    }

    fn features(&self) -> Features {
        Features::from_bits_retain(self.driver_features)
    }

    fn offered(&self) -> u64 {
        let mut f = self.cfg.features.bits();
        if self.legacy {
            f = (f & 0xffff_ffff) | ANY_LAYOUT;
        }
        if self.hostile == Some(Hostile::FeaturesChangeAfterOk)
            && self.status & DeviceStatus::FEATURES_OK.bits() != 0
        {
            f ^ Features::NET_MRG_RXBUF.bits()
        } else {
            f
        }
    }

    /// Bytes of net header before each frame: 10 for a legacy driver without `MRG_RXBUF`
    /// (§5.1.6, legacy), else 12.
    fn hdr_len(&self) -> usize {
        if self.legacy && !self.features().contains(Features::NET_MRG_RXBUF) {
            10
        } else {
            12
        }
    }

    /// The legacy register block at `off` (`width` bytes); `msix`: whether MSI-X is enabled,
    /// which inserts the two vector registers before device configuration.
    fn legacy_read(&mut self, off: usize, width: usize, msix: bool) -> u32 {
        let sel = self.queue_select as usize;
        let q = self.queues.get(sel);
        let config = if msix { 0x18 } else { 0x14 };
        match off {
            0x00 => self.offered() as u32,
            0x04 => self.driver_features as u32,
            0x08 => q.map_or(0, |q| (q.desc >> 12) as u32),
            0x0c => q.map_or(0, |q| q.size) as u32,
            0x0e => self.queue_select as u32,
            0x12 => self.status as u32,
            0x13 => std::mem::take(&mut self.isr) as u32,
            0x14 if msix => self.config_msix as u32,
            0x16 if msix => q.map_or(common::NO_VECTOR, |q| q.msix) as u32,
            o if o >= config => {
                let img = self.device_image();
                let mut b = [0u8; 4];
                if let Some(src) = img.as_bytes().get(o - config..o - config + width) {
                    b[..width].copy_from_slice(src);
                }
                u32::from_le_bytes(b)
            }
            _ => 0,
        }
    }

    /// A legacy register write; returns a queue to process when it was a notify.
    fn legacy_write(&mut self, off: usize, v: u32, msix: bool) -> Option<u16> {
        let sel = self.queue_select as usize;
        match off {
            0x04 => self.driver_features = v as u64,
            0x08 => {
                let f = self.features();
                let q = self.queues.get_mut(sel)?;
                if v == 0 {
                    q.enabled = false;
                    q.ring = None;
                    q.desc = 0;
                    return None;
                }
                // The device derives the rings from the page number (legacy layout).
                let l = rdk_core::virtio::format::SplitLayout::legacy(q.size);
                q.desc = (v as u64) << 12;
                q.driver = q.desc + l.avail as u64;
                q.device = q.desc + l.used as u64;
                q.ring = Some(DevRing::new(
                    q.size,
                    [Iova::new(q.desc), Iova::new(q.driver), Iova::new(q.device)],
                    false,
                    f.contains(Features::EVENT_IDX),
                ));
                q.enabled = true;
            }
            0x0e => self.queue_select = v as u16,
            0x10 => {
                self.n.notifies += 1;
                return Some(v as u16);
            }
            0x12 => self.write_status(v as u8),
            0x14 if msix => self.config_msix = v as u16,
            0x16 if msix => {
                if let Some(q) = self.queues.get_mut(sel) {
                    q.msix = v as u16;
                }
            }
            _ => {}
        }
        None
    }

    fn lie(&self) -> Option<UsedLie> {
        match self.hostile {
            Some(Hostile::Used(l)) => Some(l),
            _ => None,
        }
    }

    fn common_image(&self) -> CommonCfg {
        let sel = self.queue_select as usize;
        let q = self.queues.get(sel);
        let feat = match self.dfs {
            0 => self.offered() as u32,
            1 => (self.offered() >> 32) as u32,
            _ => 0,
        };
        CommonCfg {
            device_feature_select: self.dfs.into(),
            device_feature: feat.into(),
            driver_feature_select: self.gfs.into(),
            driver_feature: match self.gfs {
                0 => self.driver_features as u32,
                1 => (self.driver_features >> 32) as u32,
                _ => 0,
            }
            .into(),
            config_msix_vector: self.config_msix.into(),
            num_queues: (self.queues.len() as u16).into(),
            device_status: self.status,
            config_generation: self.generation,
            queue_select: self.queue_select.into(),
            queue_size: q.map_or(0, |q| q.size).into(),
            queue_msix_vector: q.map_or(common::NO_VECTOR, |q| q.msix).into(),
            queue_enable: (q.is_some_and(|q| q.enabled) as u16).into(),
            queue_notify_off: (sel as u16).into(),
            queue_desc: q.map_or(0, |q| q.desc).into(),
            queue_driver: q.map_or(0, |q| q.driver).into(),
            queue_device: q.map_or(0, |q| q.device).into(),
        }
    }

    fn device_image(&self) -> NetConfig {
        NetConfig {
            mac: self.mac,
            status: if self.link_up { net_status::LINK_UP } else { 0 }.into(),
            max_virtqueue_pairs: self.cfg.max_pairs.into(),
            mtu: self.cfg.mtu.into(),
        }
    }

    fn write_common(&mut self, off: usize, width: usize, v: u32) {
        let sel = self.queue_select as usize;
        let set64 = |x: &mut u64, hi: bool| {
            if hi {
                *x = (*x & 0xffff_ffff) | (v as u64) << 32;
            } else if width == 8 {
                *x = v as u64;
            } else {
                *x = (*x & !0xffff_ffff) | v as u64;
            }
        };
        match off {
            common::DEVICE_FEATURE_SELECT => self.dfs = v,
            common::DRIVER_FEATURE_SELECT => self.gfs = v,
            common::DRIVER_FEATURE => {
                if self.status & DeviceStatus::FEATURES_OK.bits() == 0 {
                    let shift = 32 * self.gfs.min(2) as u64;
                    if shift < 64 {
                        self.driver_features = (self.driver_features & !(0xffff_ffffu64 << shift))
                            | (v as u64) << shift;
                    }
                }
            }
            common::CONFIG_MSIX_VECTOR => self.config_msix = v as u16,
            common::DEVICE_STATUS => self.write_status(v as u8),
            common::QUEUE_SELECT => self.queue_select = v as u16,
            _ => {
                let Some(q) = self.queues.get_mut(sel) else {
                    return;
                };
                if q.enabled {
                    return;
                }
                match off {
                    common::QUEUE_SIZE => {
                        let s = v as u16;
                        if s.is_power_of_two() && s <= self.cfg.max_queue_size {
                            q.size = s;
                        }
                    }
                    common::QUEUE_MSIX_VECTOR => q.msix = v as u16,
                    common::QUEUE_ENABLE if v == 1 => {
                        let f = Features::from_bits_retain(self.driver_features);
                        q.ring = Some(DevRing::new(
                            q.size,
                            [Iova::new(q.desc), Iova::new(q.driver), Iova::new(q.device)],
                            f.contains(Features::RING_PACKED),
                            f.contains(Features::EVENT_IDX),
                        ));
                        q.enabled = true;
                    }
                    o if o == common::QUEUE_DESC || o == common::QUEUE_DESC + 4 => {
                        set64(&mut q.desc, o != common::QUEUE_DESC)
                    }
                    o if o == common::QUEUE_DRIVER || o == common::QUEUE_DRIVER + 4 => {
                        set64(&mut q.driver, o != common::QUEUE_DRIVER)
                    }
                    o if o == common::QUEUE_DEVICE || o == common::QUEUE_DEVICE + 4 => {
                        set64(&mut q.device, o != common::QUEUE_DEVICE)
                    }
                    _ => {}
                }
            }
        }
    }

    fn write_status(&mut self, v: u8) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v;
        let fok = DeviceStatus::FEATURES_OK.bits();
        if v & fok != 0 && self.status & fok == 0 {
            // Refuse features that were not offered, or a modern driver without VERSION_1
            // (a legacy device has no FEATURES_OK handshake: it keeps the bit as written).
            let ok = self.driver_features & !self.offered() == 0
                && (self.legacy || self.features().contains(Features::VERSION_1));
            if !ok {
                v &= !fok;
            }
        }
        // The device keeps NEEDS_RESET until reset.
        self.status = v | (self.status & DeviceStatus::DEVICE_NEEDS_RESET.bits());
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn raise(&self, s: &mut State, vector: u16, isr: u8) {
        s.isr |= isr;
        if vector != common::NO_VECTOR && self.irqs.raise(vector) {
            s.n.interrupts += 1;
        }
    }

    fn config_interrupt(&self, s: &mut State) {
        let v = s.config_msix;
        self.raise(s, v, 2);
    }

    /// Handles a doorbell (or a test's nudge) on queue `q`.
    fn process(&self, s: &mut State, q: u16) {
        if !s.live() {
            return;
        }
        let ctrl_q = 2 * s.cfg.max_pairs;
        if q == ctrl_q {
            if s.hostile != Some(Hostile::CtrlSilent) {
                self.process_ctrl(s, q);
            }
        } else if q % 2 == 1 {
            self.process_tx_queue(s, q);
        } else {
            self.drain_rx(s, q / 2);
        }
    }

    /// The driver wrote nonsense: count it and stop the device until reset.
    fn driver_error(&self, s: &mut State, e: RingError) {
        s.n.driver_errors += 1;
        s.last_error = Some(e.to_string());
        s.status |= DeviceStatus::DEVICE_NEEDS_RESET.bits();
        self.config_interrupt(s);
    }

    fn ring(s: &mut State, q: u16) -> Option<&mut DevRing> {
        let r = s.queues.get_mut(q as usize)?;
        if !r.enabled {
            return None;
        }
        r.ring.as_mut()
    }

    fn notify_used(&self, s: &mut State, q: u16, old: u16) {
        let Some(r) = s.queues.get(q as usize) else {
            return;
        };
        let (vector, want) = match &r.ring {
            Some(ring) => (
                r.msix,
                ring.wants_interrupt(&self.mem, old).unwrap_or(false),
            ),
            None => return,
        };
        if want {
            self.raise(s, vector, 1);
        }
    }

    fn process_tx_queue(&self, s: &mut State, q: u16) {
        let lie = s.lie();
        let hl = s.hdr_len();
        let batch = lie.is_none() && s.features().contains(Features::IN_ORDER);
        let (mut batch_descs, mut batch_chains, mut last) = (0u16, 0u16, None);
        let mem = &self.mem;
        let Some(ring) = Self::ring(s, q) else {
            return;
        };
        let old = ring.used_mark();
        let mut frames = Vec::new();
        let mut err = None;
        loop {
            let chain = match ring.pop(mem) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            let mut bytes = Vec::new();
            let mut bad = false;
            for b in &chain.bufs {
                if b.writable {
                    bad = true;
                    break;
                }
                let at = bytes.len();
                bytes.resize(at + b.len as usize, 0);
                if let Err(f) = mem.read(b.iova, &mut bytes[at..]) {
                    err = Some(RingError::Fault(f));
                    bad = true;
                    break;
                }
            }
            if bad || bytes.len() < hl {
                err.get_or_insert(RingError::Malformed("transmit chain without a net header"));
                break;
            }
            let mut h = [0u8; 12];
            h[..hl].copy_from_slice(&bytes[..hl]);
            let hdr = <NetHdr as zerocopy::FromBytes>::read_from_bytes(&h).unwrap_or_default();
            frames.push(SentFrame {
                pair: q / 2,
                hdr,
                data: bytes[hl..].to_vec(),
                descs: chain.bufs.len(),
            });
            let n = chain.bufs.len() as u16;
            if batch {
                // IN_ORDER: one used entry for the whole batch, naming its last chain
                // (virtio 1.2 §2.7.9, §2.8.9); written once the ring is drained.
                batch_descs = batch_descs.wrapping_add(n);
                batch_chains += 1;
                last = Some(chain.id);
            } else if let Err(f) = ring.push(mem, chain.id, 0, n, lie) {
                err = Some(RingError::Fault(f));
                break;
            }
        }
        if let Some(id) = last {
            if let Err(f) = ring.push_batch(mem, id, 0, batch_chains, batch_descs) {
                err = Some(RingError::Fault(f));
            }
        }
        s.n.tx_frames += frames.len() as u64;
        s.sent.extend(frames);
        if let Some(e) = err {
            self.driver_error(s, e);
        }
        self.notify_used(s, q, old);
    }

    fn process_ctrl(&self, s: &mut State, q: u16) {
        let mem = self.mem.clone();
        let Some(ring) = Self::ring(s, q) else {
            return;
        };
        let old = ring.used_mark();
        let mut cmds = Vec::new();
        loop {
            match ring.pop(&mem) {
                Ok(Some(c)) => cmds.push(c),
                Ok(None) => break,
                Err(e) => {
                    self.driver_error(s, e);
                    return;
                }
            }
        }
        for c in cmds {
            let ack = self.ctrl_command(s, &mem, &c);
            let Some(status) = c.bufs.last().filter(|b| b.writable && b.len >= 1) else {
                self.driver_error(
                    s,
                    RingError::Malformed("control command without an ack byte"),
                );
                return;
            };
            let res = mem.write_u8(status.iova, ack).and_then(|_| {
                Self::ring(s, q)
                    .map(|r| r.push(&mem, c.id, 1, c.bufs.len() as u16, None))
                    .unwrap_or(Ok(()))
            });
            if let Err(f) = res {
                self.driver_error(s, RingError::Fault(f));
                return;
            }
            s.n.ctrl_commands += 1;
        }
        self.notify_used(s, q, old);
    }

    fn ctrl_command(&self, s: &mut State, mem: &DeviceMemory, c: &Chain) -> u8 {
        let mut cmd = Vec::new();
        for b in c.bufs.iter().filter(|b| !b.writable) {
            let at = cmd.len();
            cmd.resize(at + b.len as usize, 0);
            if mem.read(b.iova, &mut cmd[at..]).is_err() {
                return ctrl::ERR;
            }
        }
        let f = s.features();
        match (cmd.first(), cmd.get(1), &cmd[2.min(cmd.len())..]) {
            (Some(&ctrl::CLASS_RX), Some(&m), [on]) if f.contains(Features::NET_CTRL_RX) => {
                match m {
                    ctrl::RX_PROMISC => s.promisc = *on != 0,
                    ctrl::RX_ALLMULTI => s.allmulti = *on != 0,
                    _ => return ctrl::ERR,
                }
                ctrl::OK
            }
            (Some(&ctrl::CLASS_MAC), Some(&ctrl::MAC_ADDR_SET), mac)
                if mac.len() == 6 && f.contains(Features::NET_CTRL_MAC_ADDR) =>
            {
                s.mac.copy_from_slice(mac);
                ctrl::OK
            }
            (Some(&ctrl::CLASS_MQ), Some(&ctrl::MQ_VQ_PAIRS_SET), [lo, hi])
                if f.contains(Features::NET_MQ) =>
            {
                let n = u16::from_le_bytes([*lo, *hi]);
                if n == 0 || n > s.cfg.max_pairs {
                    return ctrl::ERR;
                }
                s.pairs = n;
                ctrl::OK
            }
            _ => ctrl::ERR,
        }
    }

    /// Writes backlogged frames for pair `pair` into receive buffers while there are any.
    fn drain_rx(&self, s: &mut State, pair: u16) {
        if !s.live() {
            // Nobody to receive: the backlog waits for a driver that starts.
            return;
        }
        let q = 2 * pair;
        let f = s.features();
        let mrg = f.contains(Features::NET_MRG_RXBUF);
        let lie = s.lie();
        let hl = s.hdr_len();
        let mem = self.mem.clone();
        let Some(old) = Self::ring(s, q).map(|r| r.used_mark()) else {
            return;
        };
        let mut delivered = 0;
        let mut dropped = 0;
        let mut err = None;
        while let Some((frame, csum)) = s.backlog[pair as usize].pop_front() {
            let Some(ring) = Self::ring(s, q) else {
                s.backlog[pair as usize].push_front((frame, csum));
                break;
            };
            let saved = ring.save();
            let need = frame.len() + hl;
            // Take chains until the frame fits (one without MRG_RXBUF).
            let mut chains: Vec<Chain> = Vec::new();
            let mut room = 0usize;
            let mut short = false;
            while room < need {
                match ring.pop(&mem) {
                    Ok(Some(c)) => {
                        let cap: usize = c
                            .bufs
                            .iter()
                            .filter(|b| b.writable)
                            .map(|b| b.len as usize)
                            .sum();
                        room += cap;
                        chains.push(c);
                        if !mrg {
                            break;
                        }
                    }
                    Ok(None) => {
                        short = true;
                        break;
                    }
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            if err.is_some() || (short && (mrg || chains.is_empty())) {
                // Wait for more buffers (or a reset).
                ring.restore(saved);
                s.backlog[pair as usize].push_front((frame, csum));
                break;
            }
            if room < need {
                // Never fits: the driver's buffers are too small for it. Give the chain back
                // empty, as a device that drops does.
                dropped += 1;
                for c in &chains {
                    if let Err(e) = ring.push(&mem, c.id, 0, c.bufs.len() as u16, lie) {
                        err = Some(RingError::Fault(e));
                    }
                }
                continue;
            }
            let mut hdr = NetHdr {
                num_buffers: (chains.len() as u16).into(),
                ..Default::default()
            };
            match csum {
                RxCsum::None => {}
                RxCsum::Valid => hdr.flags = net_hdr_flags::DATA_VALID,
                RxCsum::Partial { start, offset } => {
                    hdr.flags = net_hdr_flags::NEEDS_CSUM;
                    hdr.csum_start = start.into();
                    hdr.csum_offset = offset.into();
                }
            }
            let mut bytes = hdr.as_bytes()[..hl].to_vec();
            bytes.extend_from_slice(&frame);
            let mut at = 0usize;
            for c in &chains {
                let mut written = 0usize;
                for b in c.bufs.iter().filter(|b| b.writable) {
                    let n = (b.len as usize).min(bytes.len() - at);
                    if n == 0 {
                        break;
                    }
                    if let Err(e) = mem.write(b.iova, &bytes[at..at + n]) {
                        err = Some(RingError::Fault(e));
                    }
                    at += n;
                    written += n;
                }
                if let Err(e) = ring.push(&mem, c.id, written as u32, c.bufs.len() as u16, lie) {
                    err = Some(RingError::Fault(e));
                }
            }
            delivered += 1;
            if err.is_some() {
                break;
            }
        }
        s.n.rx_delivered += delivered;
        s.n.rx_dropped += dropped;
        if let Some(e) = err {
            self.driver_error(s, e);
        }
        if delivered + dropped > 0 {
            self.notify_used(s, q, old);
        }
    }
}

/// The natural access width of the register at `offset` of the BAR (§4.1.3.1: 64-bit
/// fields as two 32-bit halves), or `None` outside every structure.
fn natural_width(offset: usize) -> Option<usize> {
    let o = offset as u32;
    if (COMMON_OFF..COMMON_OFF + 56).contains(&o) {
        return Some(match (o - COMMON_OFF) as usize {
            0..16 => 4,
            16..20 => 2,
            20 | 21 => 1,
            22..32 => 2,
            _ => 4,
        });
    }
    if (DEVICE_OFF..DEVICE_OFF + 12).contains(&o) {
        return Some(if o - DEVICE_OFF < 6 { 1 } else { 2 });
    }
    if (ISR_OFF..ISR_OFF + 4).contains(&o) {
        return Some(1);
    }
    (o >= NOTIFY_OFF).then_some(2)
}

/// The BAR, as the driver sees it.
struct Front(Arc<Shared>);

impl Front {
    fn check_width(s: &mut State, offset: usize, width: usize) {
        if natural_width(offset).is_some_and(|w| w != width) {
            s.n.width_errors += 1;
        }
    }
}

impl BarHandler for Front {
    fn read(&self, offset: usize, width: usize) -> u32 {
        let mut s = self.0.lock();
        Self::check_width(&mut s, offset, width);
        let range = |img: &[u8], base: u32| -> u32 {
            let o = offset - base as usize;
            let mut b = [0u8; 4];
            if let Some(src) = img.get(o..o + width) {
                b[..width].copy_from_slice(src);
            }
            u32::from_le_bytes(b)
        };
        match offset as u32 {
            o if (COMMON_OFF..COMMON_OFF + 56).contains(&o) => {
                range(s.common_image().as_bytes(), COMMON_OFF)
            }
            o if (ISR_OFF..ISR_OFF + 4).contains(&o) => {
                // Reading the ISR clears it (§4.1.4.5).
                std::mem::take(&mut s.isr) as u32
            }
            o if (DEVICE_OFF..DEVICE_OFF + 12).contains(&o) => {
                range(s.device_image().as_bytes(), DEVICE_OFF)
            }
            _ => 0,
        }
    }

    fn write(&self, offset: usize, width: usize, value: u32) {
        let mut s = self.0.lock();
        Self::check_width(&mut s, offset, width);
        match offset as u32 {
            o if (COMMON_OFF..COMMON_OFF + 56).contains(&o) => {
                s.write_common(offset - COMMON_OFF as usize, width, value)
            }
            o if o >= NOTIFY_OFF && (o - NOTIFY_OFF).is_multiple_of(NOTIFY_MULT) => {
                let q = ((o - NOTIFY_OFF) / NOTIFY_MULT) as u16;
                s.n.notifies += 1;
                let ctrl_q = 2 * s.cfg.max_pairs;
                if q % 2 == 1 && q != ctrl_q && !s.cfg.auto_tx {
                    return;
                }
                self.0.process(&mut s, q);
            }
            _ => {}
        }
    }
}

/// The legacy register block (I/O BAR0), as the driver sees it.
struct LegacyFront(Arc<Shared>);

/// The natural width of the legacy register at `offset` (device configuration at `config`).
fn legacy_width(offset: usize, config: usize) -> usize {
    match offset {
        0x00..0x0c => 4,
        0x0c..0x12 => 2,
        0x12 | 0x13 => 1,
        o if o < config => 2,
        // virtio-net configuration: the MAC bytewise, the rest 16-bit fields.
        o if o - config < 6 => 1,
        _ => 2,
    }
}

impl LegacyFront {
    fn msix(&self) -> bool {
        self.0.irqs.connected() > 0
    }
}

impl BarHandler for LegacyFront {
    fn read(&self, offset: usize, width: usize) -> u32 {
        let msix = self.msix();
        let mut s = self.0.lock();
        let config = if msix { 0x18 } else { 0x14 };
        if legacy_width(offset, config) != width {
            s.n.width_errors += 1;
        }
        s.legacy_read(offset, width, msix)
    }

    fn write(&self, offset: usize, width: usize, value: u32) {
        let msix = self.msix();
        let mut s = self.0.lock();
        let config = if msix { 0x18 } else { 0x14 };
        if legacy_width(offset, config) != width {
            s.n.width_errors += 1;
        }
        if let Some(q) = s.legacy_write(offset, value, msix) {
            let ctrl_q = 2 * s.cfg.max_pairs;
            if q % 2 == 1 && q != ctrl_q && !s.cfg.auto_tx {
                return;
            }
            self.0.process(&mut s, q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdk_core::os::pci::{Mmio, PciDevice};
    use rdk_core::virtio::format::net_cfg;

    #[test]
    fn registers_negotiate_and_reset() {
        let os = MockOs::new();
        let (pci, dev) = MockVirtioNet::new(&os, NetDevConfig::default());
        let bar = pci.map_bar(BAR).unwrap();
        bar.write32(common::DEVICE_FEATURE_SELECT, 1);
        assert_eq!(bar.read32(common::DEVICE_FEATURE) & 1, 1, "VERSION_1");
        bar.write8(common::DEVICE_STATUS, 1 | 2);
        // Asks for a feature not offered: FEATURES_OK refused.
        bar.write32(common::DRIVER_FEATURE_SELECT, 1);
        bar.write32(common::DRIVER_FEATURE, 1 | 1 << 30);
        bar.write8(common::DEVICE_STATUS, 1 | 2 | 8);
        assert_eq!(bar.read8(common::DEVICE_STATUS) & 8, 0);
        bar.write8(common::DEVICE_STATUS, 0);
        assert_eq!(bar.read8(common::DEVICE_STATUS), 0);
        assert_eq!(dev.counters().resets, 1);
        assert_eq!(
            bar.read16(DEVICE_OFF as usize + net_cfg::MTU),
            1500,
            "device config"
        );
        assert_eq!(
            bar.read8(DEVICE_OFF as usize + net_cfg::MAC),
            0x52,
            "device config"
        );
        assert_eq!(bar.read16(common::NUM_QUEUES), 9);
        assert_eq!(pci.mmio_faults(), 0);
        assert_eq!(dev.counters().width_errors, 0);
        // The MTU is a 16-bit field: a byte read of it is a driver bug.
        bar.read8(DEVICE_OFF as usize + net_cfg::MTU);
        assert_eq!(dev.counters().width_errors, 1);
    }
}
