//! [`VhostUserTransport`]: a virtio [`Transport`] over a vhost-user connection — DPDK's
//! virtio-user, so that the virtio-net driver (`rdk-pmd-virtio`) runs against a vhost-user
//! backend (DPDK's `net_vhost`, a vhost-user-net daemon) as it runs against virtio-pci.
//!
//! vhost-user has no registers; what virtio-pci keeps in the device, this transport emulates
//! on the frontend side and turns into messages where the backend needs to know:
//!
//! - Status: kept here. `FEATURES_OK` sends `SET_FEATURES`; `DRIVER_OK` sends `SET_STATUS`
//!   when the `STATUS` protocol feature is negotiated (DPDK then starts the device). A reset
//!   stops every running ring (`GET_VRING_BASE`) and ends the session (`RESET_OWNER`).
//! - Features: the backend's offer, narrowed to what travels over vhost-user (no
//!   `ACCESS_PLATFORM`: no IOTLB here), plus emulated `MAC`, `STATUS` and, with several
//!   pairs, `MQ`.
//! - Device config: the MAC (devarg `mac=`, else a random locally administered one), the
//!   link status (up while connected after `DRIVER_OK`), `max_virtqueue_pairs` (the backend's
//!   `GET_QUEUE_NUM` capped by `queues=`).
//! - Memory: every region of the [`SharedMemory`] the rings and the mbuf pools come from goes
//!   into `SET_MEM_TABLE` when the first queue is set up (at most eight; more is a typed
//!   error). Descriptors carry IOVAs (= VAs), ring addresses are VAs. The backend reaches
//!   nothing else: a buffer outside the table stalls its ring there for good (DPDK's vhost
//!   fails to map the descriptor and stops at it, without consuming it). An rx queue whose
//!   mbuf pool is not in this [`SharedMemory`] is therefore refused at `rx_queue_setup`
//!   ([`Transport::check_reachable`]). Transmitted mbufs cannot be checked without a cost per
//!   packet: create every pool whose mbufs are sent on the port from the same
//!   [`SharedMemory`] too (a frame received on another port and forwarded here is such an
//!   mbuf: copy it into one of these pools first).
//! - Doorbells: each ring's kick eventfd ([`VhostUserNotify`], one write per burst, and the
//!   backend usually suppresses even that); interrupts: a call eventfd per queue that asked
//!   for one, none (polling) for the others.
//! - Control queue: not offered. DPDK's virtio-user emulates a control queue in the
//!   frontend; what it does with it, rdk gets without one: the backend serves every enabled
//!   ring, so the number of queue pairs is the number the driver enables
//!   ([`Transport::pairs_follow_enabled_queues`]); a vhost-user backend delivers every frame
//!   it is given (always promiscuous), and the MAC is the frontend's own config.
//!
//! Reconnection is checked on every status read (the driver's link query): when the socket
//! hangs up, the link goes down and the config event fires; while it is down, each status read
//! tries once to connect again. For split rings the session is replayed at once, each ring's
//! base being its used index (what the backend had finished), and the link comes back up with
//! the same rings and buffers. Packed rings cannot resume where a dead backend stopped (its
//! position is not in shared memory), so the transport connects and reports
//! `DEVICE_NEEDS_RESET`. The driver (`rdk-pmd-virtio`) then recovers by itself while the port
//! runs, as DPDK's virtio-user resets packed queues on reconnect: it resets the device (on
//! the fresh connection, which has no session yet, that is all a reset does), each queue
//! rebuilds its ring empty in its own thread at its next burst, and the driver starts a
//! whole session again over the same ring memory — features, memory table, rings from base 0
//! with both wrap counters at 1, `DRIVER_OK` — and the link comes back. Where DPDK pauses
//! the data path and waits a millisecond, the driver waits until every queue has said it
//! let go of its ring. Interrupt events survive a reset (the same eventfds come back from
//! [`Transport::setup_interrupts`]), so an application asleep on one keeps its handle; the
//! kick eventfds are new for each session.

#![allow(unsafe_code)] // one volatile read of a used index from shared ring memory.

use super::error::{MemTableProblem, VhostUserError};
use super::features::{protocol, virtio};
use super::frontend::VhostUserFrontend;
use super::memory::MemRegion;
use super::shared::SharedMemory;
use super::state::VringAddrs;
use crate::dma::LinuxRegion;
use crate::eventfd::EventFd;
use rdk_core::addr::VirtAddr;
use rdk_core::ethdev::{DevArgs, DevArgsError, MacAddr};
use rdk_core::os::{DmaRegion, EventNotifier};
use rdk_core::virtio::format::net_cfg;
use rdk_core::virtio::{
    net_status, DeviceStatus, Features, Interrupts, QueueAreas, QueueNotify, Transport,
    TransportError,
};
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The device arguments of `net_virtio_user` this transport reads (the driver's own —
/// `packed_vq`, `mrg_rxbuf`, … — are read by `rdk-pmd-virtio`).
pub const VIRTIO_USER_KEYS: &[&str] = &["path", "queues", "queue_size", "mac"];

/// Ring size unless `queue_size=` says otherwise (DPDK's virtio-user default).
pub const DEFAULT_QUEUE_SIZE: u16 = 256;

/// Virtio features that mean the same over vhost-user as on a device.
const PASS: Features = Features::VERSION_1
    .union(Features::RING_PACKED)
    .union(Features::IN_ORDER)
    .union(Features::EVENT_IDX)
    .union(Features::NET_MRG_RXBUF)
    .union(Features::NET_CSUM)
    .union(Features::NET_GUEST_CSUM);

/// Bytes of the emulated virtio-net config: mac, status, max_virtqueue_pairs, mtu.
const CONFIG_LEN: usize = 12;

/// How a [`VhostUserTransport`] is set up.
#[derive(Clone, Debug)]
pub struct VirtioUserConfig {
    /// The backend's socket (`path=`).
    pub path: PathBuf,
    /// Queue pairs wanted at most (`queues=`, default 1).
    pub queues: u16,
    /// Ring size (`queue_size=`, default 256): the largest queue the driver may set up.
    pub queue_size: u16,
    /// The MAC address (`mac=`); random and locally administered if `None`.
    pub mac: Option<MacAddr>,
    /// How long to wait for the socket at creation (a backend still starting).
    pub connect_wait: Duration,
}

impl VirtioUserConfig {
    /// A configuration for the backend at `path`, every other field at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            queues: 1,
            queue_size: DEFAULT_QUEUE_SIZE,
            mac: None,
            connect_wait: Duration::from_secs(5),
        }
    }

    /// Reads `path=` (required), `queues=`, `queue_size=` and `mac=` from `args`; other keys
    /// are left to the caller (check them against the union of both key lists).
    pub fn from_devargs(args: &DevArgs) -> Result<Self, DevArgsError> {
        let mut c = Self::new(args.require("path")?);
        c.queues = args.get_num("queues", 1u16, "a number of queue pairs")?;
        c.queue_size = args.get_num("queue_size", DEFAULT_QUEUE_SIZE, "a ring size")?;
        let bad = |key: &str, value: &str, expected: &'static str| DevArgsError::BadValue {
            key: key.into(),
            value: value.into(),
            expected,
        };
        if c.queues == 0 || c.queues > 128 {
            return Err(bad("queues", &c.queues.to_string(), "1..=128 queue pairs"));
        }
        if !c.queue_size.is_power_of_two() {
            return Err(bad(
                "queue_size",
                &c.queue_size.to_string(),
                "a power of two up to 32768",
            ));
        }
        if let Some(m) = args.get("mac") {
            c.mac = Some(
                parse_mac(m)
                    .ok_or_else(|| bad("mac", m, "six hex bytes, e.g. 02:00:00:00:00:01"))?,
            );
        }
        Ok(c)
    }
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`).
fn parse_mac(s: &str) -> Option<MacAddr> {
    let mut m = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut m {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddr(m))
}

/// A random unicast, locally administered MAC (as DPDK's virtio-user picks one).
fn random_mac() -> MacAddr {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let r = h.finish().to_le_bytes();
    MacAddr([(r[0] & 0xfe) | 0x02, r[1], r[2], r[3], r[4], r[5]])
}

/// A ring's doorbell: its kick eventfd.
#[derive(Debug)]
pub struct VhostUserNotify {
    kick: Arc<EventFd>,
}

impl QueueNotify for VhostUserNotify {
    #[inline]
    fn notify(&self) {
        // A full counter means the backend has a wake-up pending anyway.
        let _ = self.kick.signal();
    }
}

/// The connection as the link sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Connected (the link is up once the driver is at `DRIVER_OK`).
    Connected,
    /// The backend went away; each status read tries to connect again.
    Lost,
    /// Connected again, but the rings cannot resume: the device needs a reset.
    NeedsReset,
}

/// One ring's frontend state.
#[derive(Debug)]
struct Ring {
    kick: Arc<EventFd>,
    areas: Option<QueueAreas>,
}

/// A virtio transport over vhost-user (module docs: what is emulated and how reconnection
/// works).
#[derive(Debug)]
pub struct VhostUserTransport {
    fe: VhostUserFrontend,
    mem: SharedMemory,
    cfg: VirtioUserConfig,
    mac: MacAddr,
    /// The backend's feature offer, read once per session.
    offered: Option<u64>,
    max_pairs: u16,
    driver: Features,
    status: DeviceStatus,
    session: bool,
    link: Link,
    generation: u8,
    rings: BTreeMap<u16, Ring>,
    calls: BTreeMap<u16, Arc<EventFd>>,
    config_irq: Option<Arc<EventFd>>,
    /// Every interrupt event handed out (config: `None`), kept across resets so that a
    /// driver connecting interrupts again — a recovery from `DEVICE_NEEDS_RESET` — gets the
    /// events its application already waits on.
    events: BTreeMap<Option<u16>, Arc<EventFd>>,
    /// The regions in the memory table, held so the backend's view stays mapped here too.
    table: Vec<Arc<LinuxRegion>>,
    last_error: Option<String>,
}

impl VhostUserTransport {
    /// Connects to the backend at `cfg.path` (waiting up to `cfg.connect_wait`), with ring
    /// memory to come from `mem` (give the driver a clone of [`memory`](Self::memory), and
    /// create the mbuf pools from it too).
    pub fn connect(cfg: VirtioUserConfig, mem: SharedMemory) -> Result<Self, VhostUserError> {
        // The fields are public: check here what `from_devargs` checks, as the queue count
        // bounds what the backend's GET_QUEUE_NUM is clamped to (and 2 * pairs must fit the
        // 8-bit vring index of SET_VRING_KICK/CALL).
        if !(1..=128).contains(&cfg.queues) {
            return Err(VhostUserError::Config {
                key: "queues",
                value: cfg.queues.into(),
                want: "1..=128 queue pairs",
            });
        }
        if !cfg.queue_size.is_power_of_two() {
            return Err(VhostUserError::Config {
                key: "queue_size",
                value: cfg.queue_size.into(),
                want: "a power of two up to 32768",
            });
        }
        let fe = VhostUserFrontend::connect_within(&cfg.path, cfg.connect_wait)?;
        Ok(Self {
            fe,
            mem,
            mac: cfg.mac.unwrap_or_else(random_mac),
            cfg,
            offered: None,
            max_pairs: 1,
            driver: Features::empty(),
            status: DeviceStatus::empty(),
            session: false,
            link: Link::Connected,
            generation: 0,
            rings: BTreeMap::new(),
            calls: BTreeMap::new(),
            config_irq: None,
            events: BTreeMap::new(),
            table: Vec::new(),
            last_error: None,
        })
    }

    /// The allocator every region the backend must reach comes from.
    pub fn memory(&self) -> &SharedMemory {
        &self.mem
    }

    /// The MAC address the emulated config reports.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The last vhost-user error, in full (the [`TransportError`] keeps only its kind).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Whether the backend is connected as far as the last check knows.
    pub fn is_connected(&self) -> bool {
        self.link != Link::Lost && self.fe.is_connected()
    }

    /// The frontend, for diagnostics.
    pub fn frontend(&self) -> &VhostUserFrontend {
        &self.fe
    }

    /// Records `e` and turns it into a transport error; a backend that went away marks the
    /// link lost.
    fn tr(&mut self, e: VhostUserError) -> TransportError {
        self.last_error = Some(e.to_string());
        if !self.fe.is_connected() && self.link == Link::Connected {
            self.lose();
        }
        match e {
            VhostUserError::Connect { errno, .. } => TransportError::Os {
                op: "connect to the vhost-user socket (start the backend)",
                code: errno as i32,
            },
            VhostUserError::Io { op, errno, .. } => TransportError::Os {
                op,
                code: errno as i32,
            },
            VhostUserError::MemTable {
                reason: MemTableProblem::TooManyRegions { .. },
            } => TransportError::Refused {
                what: "more than 8 memory regions to share with the vhost-user backend; \
                       use fewer (larger) mbuf pools",
            },
            VhostUserError::MemTable { .. } => TransportError::Refused {
                what: "memory that cannot be shared with the vhost-user backend; allocate \
                       rings and pools from the transport's SharedMemory",
            },
            VhostUserError::Nack { .. } => TransportError::Refused {
                what: "the vhost-user backend refused a request (see its log)",
            },
            e if e.is_backend_closed() => TransportError::Refused {
                what: "the vhost-user backend closed the connection; restart it",
            },
            VhostUserError::Disconnected { .. } => TransportError::Refused {
                what: "the vhost-user backend is not connected; restart it",
            },
            VhostUserError::Timeout { .. } => TransportError::Refused {
                what: "the vhost-user backend did not answer in time",
            },
            _ => TransportError::Malformed {
                what: "the vhost-user backend broke the protocol (see last_error)",
            },
        }
    }

    fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if let Some(e) = &self.config_irq {
            let _ = e.signal();
        }
    }

    fn lose(&mut self) {
        self.link = Link::Lost;
        self.changed();
    }

    /// Starts a session: features, protocol features, queue count, owner.
    fn begin_session(&mut self) -> Result<(), TransportError> {
        if self.session {
            return Ok(());
        }
        if !self.fe.is_connected() {
            self.try_connect();
        }
        let r = (|| -> Result<(u64, u16), VhostUserError> {
            let f = self.fe.get_features()?;
            let mut pairs = 1u64;
            if f & (1 << virtio::USER_F_PROTOCOL_FEATURES) != 0 {
                let p = self.fe.get_protocol_features()?;
                self.fe
                    .set_protocol_features(p & super::FRONTEND_PROTOCOL_FEATURES)?;
                if p & (1 << protocol::MQ) != 0 {
                    pairs = self.fe.get_queue_num()?;
                }
            }
            self.fe.set_owner()?;
            Ok((f, pairs.clamp(1, u64::from(self.cfg.queues)) as u16))
        })();
        let (f, pairs) = r.map_err(|e| self.tr(e))?;
        self.offered = Some(f);
        self.max_pairs = pairs;
        self.session = true;
        Ok(())
    }

    /// One attempt at a fresh connection (no session replayed).
    fn try_connect(&mut self) -> bool {
        match VhostUserFrontend::connect(&self.cfg.path) {
            Ok(fe) => {
                self.fe = fe;
                true
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                false
            }
        }
    }

    /// Checks the connection while the device runs, and tries to get a lost one back.
    fn poll_backend(&mut self) {
        if !self.status.contains(DeviceStatus::DRIVER_OK) {
            return;
        }
        match self.link {
            Link::Connected => {
                if let Err(e) = self.fe.check_connection() {
                    self.last_error = Some(e.to_string());
                    self.lose();
                }
            }
            Link::Lost if self.driver.contains(Features::RING_PACKED) => {
                if self.try_connect() {
                    self.session = false;
                    self.link = Link::NeedsReset;
                    self.changed();
                }
            }
            Link::Lost => self.resume_split(),
            Link::NeedsReset => {}
        }
    }

    /// Reconnects and replays the session, each split ring resuming at its used index.
    fn resume_split(&mut self) {
        let bases: Vec<(u16, u16)> = self
            .rings
            .iter()
            .filter_map(|(&i, r)| Some((i, self.used_idx(r.areas.as_ref()?)?)))
            .collect();
        for (i, base) in bases {
            let _ = self.fe.note_vring_base(u32::from(i), u32::from(base));
        }
        match self.fe.reconnect() {
            Ok(()) => {
                self.link = Link::Connected;
                self.changed();
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                self.fe.disconnect();
            }
        }
    }

    /// A split ring's used index, read from its used ring (which lies in a region of the
    /// memory table this transport holds).
    fn used_idx(&self, a: &QueueAreas) -> Option<u16> {
        let va = a.device_va.get().checked_add(2)?;
        let r = self.table.iter().find(|r| {
            let start = r.va().get();
            va >= start && va + 2 <= start + r.len()
        })?;
        let off = va - r.va().get();
        if off % 2 != 0 {
            return None;
        }
        // SAFETY: `off..off+2` is inside `r`, a region this transport keeps mapped (it holds
        // the Arc), and 2-aligned. The backend that wrote it is gone; a volatile read of a
        // plain u16 cannot tear into anything invalid.
        let v = unsafe { r.as_ptr().add(off).cast::<u16>().read_volatile() };
        Some(u16::from_le(v))
    }

    /// Sends the memory table: every live region of the shared memory.
    fn send_table(&mut self) -> Result<(), TransportError> {
        let regions = self.mem.regions();
        let r = regions
            .iter()
            .map(|r| MemRegion::of(r))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|descs| self.fe.set_mem_table(&descs));
        r.map_err(|e| self.tr(e))?;
        self.table = regions;
        Ok(())
    }

    /// The interrupt event of queue `q` (`None`: configuration changes), the one handed out
    /// before if there was one.
    fn event(&mut self, q: Option<u16>) -> Result<Arc<EventFd>, TransportError> {
        if let Some(e) = self.events.get(&q) {
            return Ok(e.clone());
        }
        let e = Arc::new(EventFd::new()?);
        self.events.insert(q, e.clone());
        Ok(e)
    }

    /// Whether `va..va+len` is inside the memory table.
    fn shared(&self, va: usize, len: usize) -> bool {
        covers(&self.table, va, len)
    }
}

/// Whether `va..va+len` lies inside one of `regions`.
fn covers(regions: &[Arc<LinuxRegion>], va: usize, len: usize) -> bool {
    regions.iter().any(|r| {
        let start = r.va().get();
        va >= start && va.saturating_add(len) <= start + r.len()
    })
}

impl Transport for VhostUserTransport {
    type Notify = VhostUserNotify;
    type Irq = EventFd;

    fn reset(&mut self) -> Result<(), TransportError> {
        if self.session && self.fe.is_connected() {
            // Stop every ring (the reply says the backend is done with it), then end the
            // session. A backend that is gone is as stopped as it gets.
            let running: Vec<u16> = self.rings.keys().copied().collect();
            for i in running {
                let _ = self.fe.get_vring_base(u32::from(i));
            }
            let _ = self.fe.reset_owner();
        }
        if !self.fe.is_connected() || self.link == Link::Lost {
            if self.try_connect() {
                self.link = Link::Connected;
            } else {
                self.link = Link::Lost;
            }
        } else if self.link == Link::NeedsReset {
            // The fresh connection made after the backend came back has no session yet: the
            // driver starts one on it (packed rings from the start, wrap counters at 1).
            self.link = Link::Connected;
        }
        self.session = false;
        self.offered = None;
        self.status = DeviceStatus::empty();
        self.driver = Features::empty();
        self.rings.clear();
        self.calls.clear();
        self.config_irq = None;
        self.table.clear();
        Ok(())
    }

    fn status(&mut self) -> Result<DeviceStatus, TransportError> {
        self.poll_backend();
        let mut s = self.status;
        if self.link == Link::NeedsReset {
            s |= DeviceStatus::DEVICE_NEEDS_RESET;
        }
        Ok(s)
    }

    fn set_status(&mut self, status: DeviceStatus) -> Result<(), TransportError> {
        if status.is_empty() {
            return self.reset();
        }
        let new = status - self.status;
        if new.contains(DeviceStatus::FEATURES_OK) {
            let offered = self.offered.unwrap_or(0);
            let mut f = self.driver.bits() & offered;
            f |= offered & (1 << virtio::USER_F_PROTOCOL_FEATURES);
            self.fe.set_features(f).map_err(|e| self.tr(e))?;
        }
        if new.contains(DeviceStatus::DRIVER_OK) {
            if self.fe.has_protocol_feature(protocol::STATUS) {
                self.fe.set_status(status.bits()).map_err(|e| self.tr(e))?;
            }
            self.changed();
        }
        self.status = status;
        Ok(())
    }

    fn device_features(&mut self) -> Result<Features, TransportError> {
        self.begin_session()?;
        let backend = Features::from_bits_retain(self.offered.unwrap_or(0));
        let mut f = (backend & PASS) | Features::NET_MAC | Features::NET_STATUS;
        if self.max_pairs > 1 {
            f |= Features::NET_MQ;
        }
        Ok(f)
    }

    fn set_driver_features(&mut self, features: Features) -> Result<(), TransportError> {
        if !self.device_features()?.contains(features) {
            return Err(TransportError::Refused {
                what: "the driver accepted features the vhost-user device did not offer",
            });
        }
        self.driver = features;
        Ok(())
    }

    fn num_queues(&mut self) -> Result<u16, TransportError> {
        self.begin_session()?;
        Ok(2 * self.max_pairs)
    }

    fn max_queue_size(&mut self, queue: u16) -> Result<u16, TransportError> {
        self.begin_session()?;
        Ok(if queue < 2 * self.max_pairs {
            self.cfg.queue_size
        } else {
            0
        })
    }

    fn setup_interrupts(
        &mut self,
        queues: &[u16],
    ) -> Result<Option<Interrupts<EventFd>>, TransportError> {
        let config = self.event(None)?;
        let mut irqs = Vec::with_capacity(queues.len());
        for &q in queues {
            let e = self.event(Some(q))?;
            self.calls.insert(q, e.clone());
            irqs.push(e);
        }
        self.config_irq = Some(config.clone());
        Ok(Some(Interrupts {
            config,
            queues: irqs,
        }))
    }

    fn check_reachable(&mut self, va: VirtAddr, len: usize) -> Result<(), TransportError> {
        if covers(&self.mem.regions(), va.get(), len) {
            return Ok(());
        }
        Err(TransportError::Refused {
            what: "the mbuf pool is not in the memory shared with the vhost-user backend, which \
                   could not reach its buffers; create the pool from the SharedMemory given to \
                   VhostUserTransport::connect",
        })
    }

    fn setup_queue(&mut self, queue: u16, areas: &QueueAreas) -> Result<(), TransportError> {
        if queue >= 2 * self.max_pairs {
            return Err(TransportError::NoSuchQueue { queue });
        }
        if self.table.is_empty() {
            self.send_table()?;
        }
        let packed = self.driver.contains(Features::RING_PACKED);
        let n = areas.size as usize;
        let (desc_len, drv_len, dev_len) = if packed {
            (16 * n, 4, 4)
        } else {
            (16 * n, 6 + 2 * n, 6 + 8 * n)
        };
        if !self.shared(areas.desc_va.get(), desc_len)
            || !self.shared(areas.driver_va.get(), drv_len)
            || !self.shared(areas.device_va.get(), dev_len)
        {
            return Err(TransportError::Refused {
                what: "ring memory is not in the vhost-user memory table; allocate it from \
                       the transport's SharedMemory",
            });
        }
        let kick = match self.rings.get(&queue) {
            Some(r) => r.kick.clone(),
            None => Arc::new(EventFd::new()?),
        };
        let call = self.calls.get(&queue).cloned();
        let i = u32::from(queue);
        // Packed rings start with both wrap counters at 1 (bit 15 of the base).
        let base = if packed { 1 << 15 } else { 0 };
        let addrs = VringAddrs {
            desc: areas.desc_va,
            avail: areas.driver_va,
            used: areas.device_va,
        };
        let r = (|| -> Result<(), VhostUserError> {
            self.fe.set_vring_num(i, u32::from(areas.size))?;
            self.fe.set_vring_base(i, base)?;
            self.fe.set_vring_addr(i, addrs)?;
            self.fe.set_vring_kick(i, Some(kick.as_fd()))?;
            self.fe
                .set_vring_call(i, call.as_ref().map(|c| c.as_fd()))?;
            Ok(())
        })();
        r.map_err(|e| self.tr(e))?;
        self.rings.insert(
            queue,
            Ring {
                kick,
                areas: Some(*areas),
            },
        );
        Ok(())
    }

    fn enable_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        let acked = self
            .fe
            .acked_features()
            .is_some_and(|f| f & (1 << virtio::USER_F_PROTOCOL_FEATURES) != 0);
        if acked {
            self.fe
                .set_vring_enable(u32::from(queue), true)
                .map_err(|e| self.tr(e))?;
        }
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) -> Result<VhostUserNotify, TransportError> {
        let r = self
            .rings
            .get(&queue)
            .ok_or(TransportError::NoSuchQueue { queue })?;
        Ok(VhostUserNotify {
            kick: r.kick.clone(),
        })
    }

    fn config_generation(&mut self) -> Result<u8, TransportError> {
        Ok(self.generation)
    }

    fn read_config(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        let mut c = [0u8; CONFIG_LEN];
        c[net_cfg::MAC..net_cfg::MAC + 6].copy_from_slice(&self.mac.0);
        let up = self.link == Link::Connected
            && self.fe.is_connected()
            && self.status.contains(DeviceStatus::DRIVER_OK);
        let st = if up { net_status::LINK_UP } else { 0 };
        c[net_cfg::STATUS..net_cfg::STATUS + 2].copy_from_slice(&st.to_le_bytes());
        c[net_cfg::MAX_VIRTQUEUE_PAIRS..net_cfg::MAX_VIRTQUEUE_PAIRS + 2]
            .copy_from_slice(&self.max_pairs.to_le_bytes());
        c[net_cfg::MTU..net_cfg::MTU + 2].copy_from_slice(&1500u16.to_le_bytes());
        let src = offset
            .checked_add(buf.len())
            .and_then(|end| c.get(offset..end))
            .ok_or(TransportError::Malformed {
                what: "a config read past the virtio-net config",
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn pairs_follow_enabled_queues(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeBackend;
    use super::*;
    use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};

    #[test]
    fn devargs_and_macs() {
        let a = DevArgs::parse("net_virtio_user0,path=/tmp/x.sock,queues=2,mac=02:00:00:00:00:07")
            .unwrap();
        let c = VirtioUserConfig::from_devargs(&a).unwrap();
        assert_eq!(c.path, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.queues, 2);
        assert_eq!(c.queue_size, DEFAULT_QUEUE_SIZE);
        assert_eq!(c.mac, Some(MacAddr([2, 0, 0, 0, 0, 7])));
        for bad in [
            "net_virtio_user0,queues=2",
            "net_virtio_user0,path=/x,queues=0",
            "net_virtio_user0,path=/x,queue_size=100",
            "net_virtio_user0,path=/x,mac=02:00:00:00:00",
            "net_virtio_user0,path=/x,mac=02:00:00:00:00:00:01",
            "net_virtio_user0,path=/x,mac=zz:00:00:00:00:01",
        ] {
            assert!(
                VirtioUserConfig::from_devargs(&DevArgs::parse(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
        let m = random_mac();
        assert_eq!(m.0[0] & 3, 2, "unicast, locally administered");
    }

    /// Settings out of range are a typed error at connect, not a panic (or a u16 overflow)
    /// once the backend answers: `queues` bounds the backend's queue count.
    #[test]
    fn settings_out_of_range_are_refused_at_connect() {
        use super::super::msg::Request;
        let mut fake = FakeBackend::new();
        // What a backend without protocol features says when the driver asks for features.
        fake.serve(|p| {
            p.features(1 << virtio::F_VERSION_1);
            p.expect(Request::SetOwner);
        });
        let mut cfg = VirtioUserConfig::new(fake.path());
        cfg.queues = 0;
        cfg.connect_wait = Duration::from_millis(100);
        match VhostUserTransport::connect(cfg, SharedMemory::new()) {
            Err(e) => {
                assert!(
                    matches!(e, VhostUserError::Config { key: "queues", .. }),
                    "{e:?}"
                );
                assert!(e.to_string().contains("queues=0"), "{e}");
            }
            Ok(mut t) => {
                let r = t.device_features();
                panic!("queues=0 accepted: {r:?}");
            }
        }
        let mut cfg = VirtioUserConfig::new(fake.path());
        cfg.queue_size = 100;
        assert!(matches!(
            VhostUserTransport::connect(cfg, SharedMemory::new()),
            Err(VhostUserError::Config {
                key: "queue_size",
                ..
            })
        ));
    }

    /// Buffers the backend could not reach are refused, saying what to do; those in the
    /// transport's memory pass. No request is sent for the check.
    #[test]
    fn pools_outside_the_shared_memory_are_refused() {
        let fake = FakeBackend::new();
        let mem = SharedMemory::new();
        let mut t =
            VhostUserTransport::connect(VirtioUserConfig::new(fake.path()), mem.clone()).unwrap();
        let span = |p: &PktMbufPool| p.mempool().objects();
        let shared = PktMbufPool::create(&mem, &PktMbufPoolConfig::new("shared", 512)).unwrap();
        let (va, len) = span(&shared);
        t.check_reachable(va, len).unwrap();
        // Running one byte past the pool's region is not inside it.
        let region = mem
            .regions()
            .into_iter()
            .find(|r| r.va().get() <= va.get() && va.get() < r.va().get() + r.len())
            .unwrap();
        let end = region.va().get() + region.len();
        assert!(t.check_reachable(va, end - va.get() + 1).is_err());
        let other = SharedMemory::new();
        let elsewhere = [
            PktMbufPool::create(&other, &PktMbufPoolConfig::new("other", 512)).unwrap(),
            PktMbufPool::create(
                &crate::LinuxOs::plain(),
                &PktMbufPoolConfig::new("plain", 512),
            )
            .unwrap(),
        ];
        for p in &elsewhere {
            let (va, len) = span(p);
            match t.check_reachable(va, len) {
                Err(TransportError::Refused { what }) => {
                    assert!(what.contains("not in the memory shared"), "{what}");
                    assert!(what.contains("SharedMemory given to"), "{what}");
                }
                r => panic!("{}: {r:?}", p.name()),
            }
        }
    }
}
