//! [`VhostUserFrontend`]: the driver side of a vhost-user connection.

use super::conn::{Connection, PeerState, RecvError, SendError};
use super::error::VhostUserError;
use super::features::{protocol, virtio, FeatureSet, FRONTEND_PROTOCOL_FEATURES};
use super::memory::{check_table, MemRegion, SavedRegion};
use super::msg::{
    flags, Header, Payload, PayloadKind, RegionDesc, Request, VringAddr, VringState, HEADER_SIZE,
    VRING_INDEX_MASK, VRING_NOFD_MASK,
};
use super::state::{Notifier, Session, VringAddrs, VringRecord};
use nix::errno::Errno;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a reply may take unless [`VhostUserFrontend::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest vring index the protocol carries (kick/call put it in 8 bits).
pub const MAX_VRING_INDEX: u32 = VRING_INDEX_MASK as u32;

/// The largest ring size (virtio 1.x: "Queue Size ... maximum 32768").
pub const MAX_VRING_SIZE: u32 = 32768;

/// The frontend ("master") of a vhost-user connection: the side that owns the memory and the
/// rings and tells a backend (DPDK's vhost library, a vhost-user-net daemon) where they are.
///
/// Every request is checked before it is sent (ranges, negotiated features) and every reply
/// after it arrives (request id, flags, size, payload, stray descriptors), with a deadline on
/// every read. Each method maps to one request and says which in its documentation.
///
/// What the backend has been told is remembered, so that after the backend goes away
/// ([`VhostUserError::is_backend_closed`], [`check_connection`](Self::check_connection)),
/// [`reconnect`](Self::reconnect) can tell a restarted one the same: features, memory table
/// and each ring with its last known base.
#[derive(Debug)]
pub struct VhostUserFrontend {
    path: PathBuf,
    /// The socket, or why there is none usable.
    conn: Result<Connection, String>,
    timeout: Duration,
    offered: Option<u64>,
    offered_protocol: Option<u64>,
    queue_num: Option<u64>,
    session: Session,
}

impl VhostUserFrontend {
    /// Connects to a backend listening on `path` (DPDK: `--vdev
    /// net_vhost0,iface=PATH,client=0`). Nothing is sent yet.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, VhostUserError> {
        let path = path.as_ref().to_path_buf();
        let conn = open(&path, DEFAULT_TIMEOUT)?;
        Ok(Self {
            path,
            conn: Ok(conn),
            timeout: DEFAULT_TIMEOUT,
            offered: None,
            offered_protocol: None,
            queue_num: None,
            session: Session::default(),
        })
    }

    /// [`connect`](Self::connect), retrying every 20 ms for up to `wait` while the socket is
    /// missing or refuses (a backend still starting: DPDK binds the path before it listens).
    pub fn connect_within(path: impl AsRef<Path>, wait: Duration) -> Result<Self, VhostUserError> {
        let end = deadline_after(wait);
        loop {
            match Self::connect(path.as_ref()) {
                Err(e) if retryable(&e) && Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                r => return r,
            }
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long a reply (and a blocked send) may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets how long a reply (and a send into a full socket buffer) may take.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        if let Ok(c) = &self.conn {
            if let Err(errno) = c.set_send_timeout(timeout) {
                self.conn = Err(format!("setting the send timeout failed: {errno}"));
            }
        }
    }

    /// The socket, for an epoll thread to watch for a hang-up; `None` when disconnected.
    pub fn socket_fd(&self) -> Option<BorrowedFd<'_>> {
        self.conn.as_ref().ok().map(|c| c.as_fd())
    }

    /// Whether the connection is usable as far as the frontend knows (see
    /// [`check_connection`](Self::check_connection) to ask the socket).
    pub fn is_connected(&self) -> bool {
        self.conn.is_ok()
    }

    /// The feature bits offered in the last `GET_FEATURES`.
    pub fn offered_features(&self) -> Option<u64> {
        self.offered
    }

    /// The feature bits acknowledged with `SET_FEATURES`.
    pub fn acked_features(&self) -> Option<u64> {
        self.session.features
    }

    /// The protocol feature bits offered in the last `GET_PROTOCOL_FEATURES`.
    pub fn offered_protocol_features(&self) -> Option<u64> {
        self.offered_protocol
    }

    /// The protocol feature bits acknowledged with `SET_PROTOCOL_FEATURES`.
    pub fn acked_protocol_features(&self) -> Option<u64> {
        self.session.protocol_features
    }

    /// Whether protocol feature `bit` was acknowledged.
    pub fn has_protocol_feature(&self, bit: u32) -> bool {
        self.session
            .protocol_features
            .is_some_and(|p| p & (1 << bit) != 0)
    }

    /// The last known base of ring `index` (from `SET_VRING_BASE`, `GET_VRING_BASE` or
    /// [`note_vring_base`](Self::note_vring_base)).
    pub fn vring_base(&self, index: u32) -> Option<u32> {
        self.session.vrings.get(&index).and_then(|v| v.base)
    }

    /// `GET_FEATURES`: the feature bits the backend offers.
    pub fn get_features(&mut self) -> Result<u64, VhostUserError> {
        let v = self.get_u64(Request::GetFeatures)?;
        self.offered = Some(v);
        Ok(v)
    }

    /// `SET_FEATURES`: acknowledges `features`, which must all be offered (call
    /// [`get_features`](Self::get_features) first).
    pub fn set_features(&mut self, features: u64) -> Result<(), VhostUserError> {
        let offered = self.offered.ok_or(VhostUserError::OutOfOrder {
            request: Request::SetFeatures,
            needs: "get_features",
        })?;
        if features & !offered != 0 {
            return Err(VhostUserError::FeatureNotOffered {
                set: FeatureSet::Virtio,
                missing: features & !offered,
            });
        }
        self.request(Request::SetFeatures, &Payload::U64(features), &[])?;
        self.session.features = Some(features);
        Ok(())
    }

    /// `GET_PROTOCOL_FEATURES`: the protocol bits the backend offers. Needs
    /// `VHOST_USER_F_PROTOCOL_FEATURES` in the offered features.
    pub fn get_protocol_features(&mut self) -> Result<u64, VhostUserError> {
        self.need_offered(
            virtio::USER_F_PROTOCOL_FEATURES,
            Request::GetProtocolFeatures,
        )?;
        let v = self.get_u64(Request::GetProtocolFeatures)?;
        self.offered_protocol = Some(v);
        Ok(v)
    }

    /// `SET_PROTOCOL_FEATURES`: acknowledges protocol bits, which must be offered and
    /// implemented here ([`FRONTEND_PROTOCOL_FEATURES`]). With `REPLY_ACK` among them, every
    /// later request without a reply of its own asks for an acknowledgement.
    pub fn set_protocol_features(&mut self, bits: u64) -> Result<(), VhostUserError> {
        if bits & !FRONTEND_PROTOCOL_FEATURES != 0 {
            return Err(VhostUserError::FrontendUnsupported {
                bits: bits & !FRONTEND_PROTOCOL_FEATURES,
            });
        }
        let offered = self.offered_protocol.ok_or(VhostUserError::OutOfOrder {
            request: Request::SetProtocolFeatures,
            needs: "get_protocol_features",
        })?;
        if bits & !offered != 0 {
            return Err(VhostUserError::FeatureNotOffered {
                set: FeatureSet::Protocol,
                missing: bits & !offered,
            });
        }
        self.request(Request::SetProtocolFeatures, &Payload::U64(bits), &[])?;
        self.session.protocol_features = Some(bits);
        Ok(())
    }

    /// `GET_QUEUE_NUM`: how many queues the backend has (queue pairs for a net backend).
    /// Needs the `MQ` protocol feature.
    pub fn get_queue_num(&mut self) -> Result<u64, VhostUserError> {
        self.need_protocol(protocol::MQ, Request::GetQueueNum)?;
        let n = self.get_u64(Request::GetQueueNum)?;
        self.queue_num = Some(n);
        Ok(n)
    }

    /// `SET_OWNER`: claims the backend for this session.
    pub fn set_owner(&mut self) -> Result<(), VhostUserError> {
        self.request(Request::SetOwner, &Payload::Empty, &[])?;
        self.session.owner = true;
        Ok(())
    }

    /// `RESET_OWNER`: the backend drops the session (rings, memory table, features). What was
    /// remembered for a reconnect is forgotten as well.
    pub fn reset_owner(&mut self) -> Result<(), VhostUserError> {
        self.request(Request::ResetOwner, &Payload::Empty, &[])?;
        self.session = Session::default();
        Ok(())
    }

    /// `SET_MEM_TABLE`: the memory the rings and buffers live in; one descriptor per region
    /// goes with the message. The backend maps the files until the next table or the end of
    /// the session, so the regions must stay alive as long.
    pub fn set_mem_table(&mut self, regions: &[MemRegion<'_>]) -> Result<(), VhostUserError> {
        let descs: Vec<RegionDesc> = regions.iter().map(MemRegion::desc).collect();
        let fds: Vec<BorrowedFd<'_>> = regions.iter().map(|r| r.fd).collect();
        check_table(&descs).map_err(|reason| VhostUserError::MemTable { reason })?;
        let saved = regions
            .iter()
            .map(|r| {
                Ok(SavedRegion {
                    desc: r.desc(),
                    fd: r.fd.try_clone_to_owned().map_err(|e| io_err("dup", &e))?,
                })
            })
            .collect::<Result<Vec<_>, VhostUserError>>()?;
        self.request(Request::SetMemTable, &Payload::MemTable(descs), &fds)?;
        self.session.mem_table = saved;
        Ok(())
    }

    /// `SET_VRING_NUM`: ring `index` has `num` entries (a power of two for split rings).
    pub fn set_vring_num(&mut self, index: u32, num: u32) -> Result<(), VhostUserError> {
        check_index(index)?;
        let packed = self
            .session
            .features
            .is_some_and(|f| f & (1 << virtio::F_RING_PACKED) != 0);
        if num == 0 || num > MAX_VRING_SIZE || (!packed && !num.is_power_of_two()) {
            return Err(VhostUserError::VringSize { num, packed });
        }
        self.request(
            Request::SetVringNum,
            &Payload::VringState(VringState { index, num }),
            &[],
        )?;
        self.vring(index).num = Some(num);
        Ok(())
    }

    /// `SET_VRING_ADDR`: where ring `index` is, in this process's address space (the backend
    /// translates these through the memory table's user addresses).
    pub fn set_vring_addr(&mut self, index: u32, addrs: VringAddrs) -> Result<(), VhostUserError> {
        check_index(index)?;
        let payload = Payload::VringAddr(VringAddr {
            index,
            flags: 0,
            desc: addrs.desc.get() as u64,
            used: addrs.used.get() as u64,
            avail: addrs.avail.get() as u64,
            log: 0,
        });
        self.request(Request::SetVringAddr, &payload, &[])?;
        self.vring(index).addrs = Some(addrs);
        Ok(())
    }

    /// `SET_VRING_BASE`: the backend starts reading ring `index`'s available ring at `base`.
    pub fn set_vring_base(&mut self, index: u32, base: u32) -> Result<(), VhostUserError> {
        check_index(index)?;
        self.request(
            Request::SetVringBase,
            &Payload::VringState(VringState { index, num: base }),
            &[],
        )?;
        self.vring(index).base = Some(base);
        Ok(())
    }

    /// `GET_VRING_BASE`: stops ring `index` and returns where the backend would have read
    /// next. The backend forgets the ring's kick and call descriptors; set them again to
    /// restart it.
    pub fn get_vring_base(&mut self, index: u32) -> Result<u32, VhostUserError> {
        check_index(index)?;
        let reply = self.transact(
            Request::GetVringBase,
            &Payload::VringState(VringState { index, num: 0 }),
            &[],
        )?;
        let Payload::VringState(s) = reply else {
            return Err(self.fail(mismatched(Request::GetVringBase, &reply)));
        };
        if s.index != index {
            return Err(self.fail(VhostUserError::WrongVring {
                asked: index,
                got: s.index,
            }));
        }
        let v = self.vring(index);
        v.base = Some(s.num);
        v.running = false;
        Ok(s.num)
    }

    /// Records `base` as ring `index`'s last known base without telling the backend: for a
    /// driver that knows better than the last reply (its used index after the backend
    /// died), before [`reconnect`](Self::reconnect).
    pub fn note_vring_base(&mut self, index: u32, base: u32) -> Result<(), VhostUserError> {
        check_index(index)?;
        self.vring(index).base = Some(base);
        Ok(())
    }

    /// `SET_VRING_KICK`: the eventfd this process signals when it adds buffers to ring
    /// `index`; `None` for polling mode (the backend polls the ring). Starts the ring.
    pub fn set_vring_kick(
        &mut self,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), VhostUserError> {
        let n = self.set_notifier(Request::SetVringKick, index, fd)?;
        let v = self.vring(index);
        v.kick = Some(n);
        v.running = true;
        Ok(())
    }

    /// `SET_VRING_CALL`: the eventfd the backend signals when it uses buffers of ring
    /// `index`; `None` for none (this process polls the used ring).
    pub fn set_vring_call(
        &mut self,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), VhostUserError> {
        let n = self.set_notifier(Request::SetVringCall, index, fd)?;
        self.vring(index).call = Some(n);
        Ok(())
    }

    /// `SET_VRING_ERR`: the eventfd the backend signals ring errors through (`None`: none).
    pub fn set_vring_err(
        &mut self,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), VhostUserError> {
        let n = self.set_notifier(Request::SetVringErr, index, fd)?;
        self.vring(index).err = Some(n);
        Ok(())
    }

    /// `SET_VRING_ENABLE`: enables or disables ring `index`. With
    /// `VHOST_USER_F_PROTOCOL_FEATURES` acknowledged, rings start disabled and a backend
    /// processes none until this says so.
    pub fn set_vring_enable(&mut self, index: u32, enable: bool) -> Result<(), VhostUserError> {
        check_index(index)?;
        let acked = self
            .session
            .features
            .is_some_and(|f| f & (1 << virtio::USER_F_PROTOCOL_FEATURES) != 0);
        if !acked {
            return Err(VhostUserError::OutOfOrder {
                request: Request::SetVringEnable,
                needs: "set_features with VHOST_USER_F_PROTOCOL_FEATURES (bit 30)",
            });
        }
        self.request(
            Request::SetVringEnable,
            &Payload::VringState(VringState {
                index,
                num: u32::from(enable),
            }),
            &[],
        )?;
        self.vring(index).enabled = Some(enable);
        Ok(())
    }

    /// `SET_STATUS`: the virtio device status byte (`DRIVER_OK` = 4 starts a backend that
    /// negotiated `STATUS`). Needs the `STATUS` protocol feature.
    pub fn set_status(&mut self, status: u8) -> Result<(), VhostUserError> {
        self.need_protocol(protocol::STATUS, Request::SetStatus)?;
        self.request(Request::SetStatus, &Payload::U64(u64::from(status)), &[])?;
        self.session.status = Some(status);
        Ok(())
    }

    /// `GET_STATUS`: the backend's virtio device status byte. Needs the `STATUS` protocol
    /// feature.
    pub fn get_status(&mut self) -> Result<u8, VhostUserError> {
        self.need_protocol(protocol::STATUS, Request::GetStatus)?;
        let v = self.get_u64(Request::GetStatus)?;
        u8::try_from(v).map_err(|_| {
            self.fail(VhostUserError::BadValue {
                request: Request::GetStatus,
                value: v,
                want: "a status byte (0..=255)",
            })
        })
    }

    /// Asks the socket whether the backend is still there: `Ok` if so; otherwise the
    /// connection is marked unusable and the error says why ([`VhostUserError::BackendClosed`]
    /// for a hang-up).
    pub fn check_connection(&mut self) -> Result<(), VhostUserError> {
        let conn = self.usable()?;
        match conn.peer_state() {
            Ok(PeerState::Quiet) => Ok(()),
            Ok(PeerState::Closed) => {
                Err(self.fail(VhostUserError::BackendClosed { request: None }))
            }
            Ok(PeerState::Unsolicited) => Err(self.fail(VhostUserError::Disconnected {
                cause: "the backend sent a message nobody asked for".into(),
            })),
            Err(errno) => Err(self.fail(VhostUserError::Io {
                op: "poll",
                request: None,
                errno,
            })),
        }
    }

    /// Closes the socket. The backend ends the session (DPDK: the port goes down); what it
    /// was told is kept for [`reconnect`](Self::reconnect).
    pub fn disconnect(&mut self) {
        self.conn = Err("disconnected by the frontend".into());
    }

    /// Connects again (once) and tells the backend everything it was told before, in the
    /// order QEMU uses for a fresh session: features, protocol features, owner, acknowledged
    /// features, memory table, then
    /// per ring its size, last known base, addresses, and (for rings that were running) kick,
    /// call and enable state.
    ///
    /// Fails with [`VhostUserError::FeatureNotOffered`] if the new backend no longer offers
    /// what was acknowledged. On failure the remembered state is kept, so it can be retried.
    pub fn reconnect(&mut self) -> Result<(), VhostUserError> {
        self.conn = Err("reconnecting".into());
        let conn = open(&self.path, self.timeout)?;
        self.conn = Ok(conn);
        self.replay()
    }

    /// [`reconnect`](Self::reconnect), retrying the connection every 20 ms for up to `wait`
    /// while the socket is missing or refuses (a backend that is restarting).
    pub fn reconnect_within(&mut self, wait: Duration) -> Result<(), VhostUserError> {
        let end = deadline_after(wait);
        loop {
            match self.reconnect() {
                Err(e) if retryable(&e) && Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                r => return r,
            }
        }
    }

    /// Replays the remembered session on a fresh connection.
    fn replay(&mut self) -> Result<(), VhostUserError> {
        let old = std::mem::take(&mut self.session);
        let result = self.replay_from(&old);
        // The replayed session equals the old one where it succeeded; keep the old one
        // whole, so a failed replay can be retried.
        self.session = old;
        result
    }

    fn replay_from(&mut self, old: &Session) -> Result<(), VhostUserError> {
        self.offered = None;
        self.offered_protocol = None;
        self.queue_num = None;
        let offered = self.get_features()?;
        if let Some(f) = old.features {
            if f & !offered != 0 {
                return Err(VhostUserError::FeatureNotOffered {
                    set: FeatureSet::Virtio,
                    missing: f & !offered,
                });
            }
        }
        if let Some(p) = old.protocol_features {
            self.get_protocol_features()?;
            self.set_protocol_features(p)?;
        }
        if old.owner {
            self.set_owner()?;
        }
        if let Some(f) = old.features {
            self.set_features(f)?;
        }
        if !old.mem_table.is_empty() {
            let regions: Vec<MemRegion<'_>> = old
                .mem_table
                .iter()
                .map(|r| MemRegion {
                    guest_phys_addr: rdk_core::addr::Iova::new(r.desc.guest_phys_addr),
                    size: r.desc.memory_size,
                    user_addr: rdk_core::addr::VirtAddr::new(r.desc.userspace_addr as usize),
                    mmap_offset: r.desc.mmap_offset,
                    fd: r.fd.as_fd(),
                })
                .collect();
            self.set_mem_table(&regions)?;
        }
        for (&index, v) in &old.vrings {
            self.replay_vring(index, v)?;
        }
        if let Some(s) = old.status {
            self.set_status(s)?;
        }
        Ok(())
    }

    fn replay_vring(&mut self, index: u32, v: &VringRecord) -> Result<(), VhostUserError> {
        if let Some(num) = v.num {
            self.set_vring_num(index, num)?;
        }
        if let Some(base) = v.base {
            self.set_vring_base(index, base)?;
        }
        if let Some(addrs) = v.addrs {
            self.set_vring_addr(index, addrs)?;
        }
        if !v.running {
            return Ok(());
        }
        if let Some(k) = &v.kick {
            self.set_vring_kick(index, k.fd())?;
        }
        if let Some(c) = &v.call {
            self.set_vring_call(index, c.fd())?;
        }
        if let Some(e) = &v.err {
            self.set_vring_err(index, e.fd())?;
        }
        if let Some(en) = v.enabled {
            self.set_vring_enable(index, en)?;
        }
        Ok(())
    }

    fn vring(&mut self, index: u32) -> &mut VringRecord {
        self.session.vrings.entry(index).or_default()
    }

    fn need_offered(&self, bit: u32, request: Request) -> Result<(), VhostUserError> {
        let offered = self.offered.ok_or(VhostUserError::OutOfOrder {
            request,
            needs: "get_features",
        })?;
        if offered & (1 << bit) == 0 {
            return Err(VhostUserError::FeatureNotOffered {
                set: FeatureSet::Virtio,
                missing: 1 << bit,
            });
        }
        Ok(())
    }

    fn need_protocol(&self, bit: u32, request: Request) -> Result<(), VhostUserError> {
        if self.has_protocol_feature(bit) {
            Ok(())
        } else {
            Err(VhostUserError::NotNegotiated {
                request,
                feature: bit,
            })
        }
    }

    fn set_notifier(
        &mut self,
        request: Request,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<Notifier, VhostUserError> {
        check_index(index)?;
        let saved = Notifier::from_fd(fd).map_err(|e| io_err("dup", &e))?;
        let word = u64::from(index) | if fd.is_none() { VRING_NOFD_MASK } else { 0 };
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        self.request(request, &Payload::U64(word), &fds)?;
        Ok(saved)
    }

    fn get_u64(&mut self, request: Request) -> Result<u64, VhostUserError> {
        match self.transact(request, &Payload::Empty, &[])? {
            Payload::U64(v) => Ok(v),
            other => Err(self.fail(mismatched(request, &other))),
        }
    }

    /// Sends a request that has no reply of its own; with `REPLY_ACK` negotiated, asks for
    /// and checks the acknowledgement.
    fn request(
        &mut self,
        request: Request,
        payload: &Payload,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), VhostUserError> {
        self.transact(request, payload, fds).map(drop)
    }

    /// Sends `request` and reads its reply if it has one (or an acknowledgement was asked
    /// for). A fatal error closes the connection.
    fn transact(
        &mut self,
        request: Request,
        payload: &Payload,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Payload, VhostUserError> {
        let reply = request.reply_kind();
        let ack = reply.is_none() && self.has_protocol_feature(protocol::REPLY_ACK);
        let bytes = payload.encode();
        let header = Header {
            request: request as u32,
            flags: flags::VERSION | if ack { flags::NEED_REPLY } else { 0 },
            // At most a full memory table: 264 bytes.
            size: bytes.len() as u32,
        };
        let conn = self.usable()?;
        let sent = conn.send(header, &bytes, fds).map_err(|e| match e {
            SendError::Closed => VhostUserError::BackendClosed {
                request: Some(request),
            },
            SendError::Timeout => VhostUserError::Timeout {
                request,
                after: self.timeout,
            },
            SendError::Io(errno) => VhostUserError::Io {
                op: "sendmsg",
                request: Some(request),
                errno,
            },
        });
        if let Err(e) = sent {
            return Err(self.fail(e));
        }
        let kind = match (reply, ack) {
            (Some(kind), _) => kind,
            (None, true) => PayloadKind::U64,
            (None, false) => return Ok(Payload::Empty),
        };
        let got = self.recv_reply(request, kind);
        match got {
            Ok(Payload::U64(code)) if ack && code != 0 => {
                Err(VhostUserError::Nack { request, code })
            }
            Ok(_) if ack => Ok(Payload::Empty),
            Ok(p) => Ok(p),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reads and checks the reply to `request`.
    fn recv_reply(&self, request: Request, kind: PayloadKind) -> Result<Payload, VhostUserError> {
        let conn = self.usable()?;
        let deadline = deadline_after(self.timeout);
        let mut fds = Vec::new();
        let recv_err = |e: RecvError, before: usize, want: usize| match e {
            RecvError::Closed { got: 0 } if before == 0 => VhostUserError::BackendClosed {
                request: Some(request),
            },
            RecvError::Closed { got } => VhostUserError::Truncated {
                request,
                got: before + got,
                want,
            },
            RecvError::Timeout => VhostUserError::Timeout {
                request,
                after: self.timeout,
            },
            RecvError::ControlTruncated => VhostUserError::ControlTruncated { request },
            RecvError::Io { op, errno } => VhostUserError::Io {
                op,
                request: Some(request),
                errno,
            },
        };
        let header = conn
            .recv_header(deadline, &mut fds)
            .map_err(|e| recv_err(e, 0, HEADER_SIZE))?;
        if !fds.is_empty() {
            return Err(VhostUserError::UnexpectedFds {
                request,
                count: fds.len(),
            });
        }
        if header.request != request as u32 {
            return Err(VhostUserError::WrongReply {
                sent: request,
                got: header.request,
            });
        }
        let f = header.flags;
        if f & flags::VERSION_MASK != flags::VERSION
            || f & flags::REPLY == 0
            || f & !flags::KNOWN != 0
        {
            return Err(VhostUserError::BadReplyFlags { request, flags: f });
        }
        let size = kind.max_size();
        if header.size as usize != size {
            return Err(VhostUserError::PayloadSize {
                request,
                size: header.size,
                expected: size,
            });
        }
        let mut payload = vec![0u8; size];
        conn.read_exact(&mut payload, deadline, &mut fds)
            .map_err(|e| recv_err(e, HEADER_SIZE, HEADER_SIZE + size))?;
        if !fds.is_empty() {
            return Err(VhostUserError::UnexpectedFds {
                request,
                count: fds.len(),
            });
        }
        Payload::decode(kind, &payload).map_err(|error| VhostUserError::Payload { request, error })
    }

    fn usable(&self) -> Result<&Connection, VhostUserError> {
        self.conn
            .as_ref()
            .map_err(|cause| VhostUserError::Disconnected {
                cause: cause.clone(),
            })
    }

    /// Closes the connection if `e` leaves it out of step, and hands `e` back.
    fn fail(&mut self, e: VhostUserError) -> VhostUserError {
        if e.is_fatal() && self.conn.is_ok() {
            self.conn = Err(e.to_string());
        }
        e
    }
}

fn open(path: &Path, timeout: Duration) -> Result<Connection, VhostUserError> {
    Connection::connect(path, timeout).map_err(|errno| VhostUserError::Connect {
        path: path.to_path_buf(),
        errno,
    })
}

/// A reply decoded as another kind than the request's. Cannot happen (`recv_reply` decodes
/// as `reply_kind()`), but a wrong guess here must not panic.
fn mismatched(request: Request, got: &Payload) -> VhostUserError {
    VhostUserError::Payload {
        request,
        error: super::msg::PayloadError::Size {
            got: got.kind().max_size(),
            want: request.reply_kind().map_or(0, |k| k.max_size()),
        },
    }
}

/// A connection refused, a socket not there yet or a backend not accepting yet: worth
/// another try.
fn retryable(e: &VhostUserError) -> bool {
    matches!(
        e,
        VhostUserError::Connect {
            errno: Errno::ENOENT | Errno::ECONNREFUSED | Errno::EAGAIN,
            ..
        }
    )
}

/// `now + d`, or a point as good as never for a duration past what an `Instant` holds
/// (`Duration::MAX` as "wait forever": `Instant + Duration` panics on overflow).
fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(1 << 32)))
        .unwrap_or(now)
}

fn check_index(index: u32) -> Result<(), VhostUserError> {
    if index > MAX_VRING_INDEX {
        Err(VhostUserError::VringIndex { index })
    } else {
        Ok(())
    }
}

fn io_err(op: &'static str, e: &std::io::Error) -> VhostUserError {
    VhostUserError::Io {
        op,
        request: None,
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::MemTableProblem;
    use super::super::fake::{FakeBackend, Peer};
    use super::*;
    use crate::{EventFd, LinuxOs, MemoryConfig};
    use rdk_core::os::{DmaAlloc, DmaRegion, DmaRequest, EventNotifier};

    const V1: u64 = 1 << virtio::F_VERSION_1;
    const PF: u64 = 1 << virtio::USER_F_PROTOCOL_FEATURES;
    const MQ: u64 = 1 << protocol::MQ;
    const ACK: u64 = 1 << protocol::REPLY_ACK;

    /// A frontend on `fake`'s socket with a short timeout.
    fn frontend(fake: &FakeBackend) -> VhostUserFrontend {
        let mut fe = VhostUserFrontend::connect(fake.path()).unwrap();
        fe.set_timeout(Duration::from_millis(300));
        fe
    }

    /// A backend that answers `GET_FEATURES` with `reply` (header and payload as given).
    fn answering(header: Header, bytes: Vec<u8>) -> (FakeBackend, VhostUserFrontend) {
        let mut fake = FakeBackend::new();
        fake.serve(move |p| {
            p.expect(Request::GetFeatures);
            p.raw(header, &bytes, &[]);
            // Stay until the frontend gives up on the connection.
            p.expect_eof();
        });
        let fe = frontend(&fake);
        (fake, fe)
    }

    fn reply_header(request: Request, size: u32) -> Header {
        Header {
            request: request as u32,
            flags: flags::VERSION | flags::REPLY,
            size,
        }
    }

    /// After a fatal error the frontend sends nothing more and says why.
    fn assert_unusable(fe: &mut VhostUserFrontend) {
        assert!(!fe.is_connected());
        let e = fe.get_features().unwrap_err();
        assert!(matches!(e, VhostUserError::Disconnected { .. }), "{e:?}");
        assert!(e.to_string().contains("reconnect()"), "{e}");
    }

    #[test]
    fn a_reply_for_the_wrong_request_is_an_error_and_ends_the_session() {
        let (mut fake, mut fe) = answering(
            reply_header(Request::GetProtocolFeatures, 8),
            7u64.to_ne_bytes().to_vec(),
        );
        let e = fe.get_features().unwrap_err();
        assert!(
            matches!(
                e,
                VhostUserError::WrongReply {
                    sent: Request::GetFeatures,
                    got: 15
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("(VHOST_USER_GET_PROTOCOL_FEATURES) but VHOST_USER_GET_FEATURES"),
            "{e}"
        );
        assert!(e.is_fatal());
        assert_unusable(&mut fe);
        fake.join();
    }

    /// "Wait forever" as a timeout is a long wait, not a panic in the deadline arithmetic.
    #[test]
    fn the_longest_timeout_is_not_a_panic() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.features(V1);
            p.expect_eof();
        });
        let mut fe = frontend(&fake);
        fe.set_timeout(Duration::MAX);
        assert_eq!(fe.get_features().unwrap(), V1);
        drop(fe);
        fake.join();
    }

    #[test]
    fn an_oversized_size_field_is_refused_before_reading_it() {
        let (mut fake, mut fe) = answering(reply_header(Request::GetFeatures, u32::MAX), vec![]);
        let e = fe.get_features().unwrap_err();
        assert!(
            matches!(
                e,
                VhostUserError::PayloadSize {
                    size: u32::MAX,
                    expected: 8,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(
                "payload size 4294967295 invalid for the reply to VHOST_USER_GET_FEATURES"
            ),
            "{e}"
        );
        assert_unusable(&mut fe);
        fake.join();
    }

    #[test]
    fn a_short_size_field_is_refused_too() {
        let (mut fake, mut fe) = answering(reply_header(Request::GetFeatures, 4), vec![1, 2, 3, 4]);
        let e = fe.get_features().unwrap_err();
        assert!(
            matches!(e, VhostUserError::PayloadSize { size: 4, .. }),
            "{e:?}"
        );
        fake.join();
    }

    #[test]
    fn bad_reply_flags_are_refused() {
        for bad in [
            flags::VERSION,                       // no reply bit
            2 | flags::REPLY,                     // version 2
            flags::VERSION | flags::REPLY | 0x10, // reserved bit
        ] {
            let (mut fake, mut fe) = answering(
                Header {
                    request: 1,
                    flags: bad,
                    size: 8,
                },
                vec![0; 8],
            );
            let e = fe.get_features().unwrap_err();
            assert!(
                matches!(e, VhostUserError::BadReplyFlags { flags, .. } if flags == bad),
                "{bad:#x}: {e:?}"
            );
            fake.join();
        }
    }

    #[test]
    fn a_truncated_payload_then_a_close_is_truncated() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.expect(Request::GetFeatures);
            p.raw(reply_header(Request::GetFeatures, 8), &[1, 2, 3, 4], &[]);
        });
        let mut fe = frontend(&fake);
        let e = fe.get_features().unwrap_err();
        assert!(
            matches!(
                e,
                VhostUserError::Truncated {
                    got: 16,
                    want: 20,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.is_backend_closed());
        assert!(e.to_string().contains("after 16 of 20 bytes"), "{e}");
        assert_unusable(&mut fe);
        fake.join();
    }

    #[test]
    fn a_close_in_the_middle_of_the_header_is_truncated() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.expect(Request::GetFeatures);
            let h = reply_header(Request::GetFeatures, 8).to_bytes();
            p.conn.send_raw_for_test(&h[..6]);
        });
        let mut fe = frontend(&fake);
        let e = fe.get_features().unwrap_err();
        assert!(
            matches!(
                e,
                VhostUserError::Truncated {
                    got: 6,
                    want: 12,
                    ..
                }
            ),
            "{e:?}"
        );
        fake.join();
    }

    #[test]
    fn a_truncated_payload_that_never_ends_times_out() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.expect(Request::GetFeatures);
            p.raw(reply_header(Request::GetFeatures, 8), &[1, 2, 3, 4], &[]);
            p.expect_eof();
        });
        let mut fe = frontend(&fake);
        let start = Instant::now();
        let e = fe.get_features().unwrap_err();
        assert!(
            matches!(
                e,
                VhostUserError::Timeout {
                    request: Request::GetFeatures,
                    ..
                }
            ),
            "{e:?}"
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_unusable(&mut fe);
        fake.join();
    }

    #[test]
    fn silence_times_out_and_a_close_without_reply_is_backend_closed() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.expect(Request::GetFeatures);
            p.expect_eof();
        });
        let mut fe = frontend(&fake);
        let e = fe.get_features().unwrap_err();
        assert!(matches!(e, VhostUserError::Timeout { .. }), "{e:?}");
        fake.join();

        let mut fe = frontend(&fake);
        fake.serve(|p| {
            p.expect(Request::GetFeatures);
        });
        let e = fe.get_features().unwrap_err();
        assert!(
            matches!(
                e,
                VhostUserError::BackendClosed {
                    request: Some(Request::GetFeatures)
                }
            ),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .contains("closed the socket during VHOST_USER_GET_FEATURES"));
        fake.join();
    }

    #[test]
    fn descriptors_in_a_reply_are_closed_and_refused() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut fake = FakeBackend::new();
        fake.serve(move |p| {
            p.expect(Request::GetFeatures);
            p.raw(
                reply_header(Request::GetFeatures, 8),
                &0u64.to_ne_bytes(),
                &[r.as_fd()],
            );
            drop(r);
            p.expect_eof();
        });
        let mut fe = frontend(&fake);
        let e = fe.get_features().unwrap_err();
        assert!(
            matches!(e, VhostUserError::UnexpectedFds { count: 1, .. }),
            "{e:?}"
        );
        fake.join();
        // The read end came to this process and was closed: nobody reads the pipe any more.
        assert_eq!(nix::unistd::write(&w, b"x"), Err(Errno::EPIPE));
    }

    #[test]
    fn a_nack_is_an_error_but_the_session_goes_on() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.features(V1 | PF);
            assert_eq!(p.protocol(MQ | ACK), ACK);
            let r = p.expect(Request::SetOwner);
            assert_ne!(r.header.flags & flags::NEED_REPLY, 0, "REPLY_ACK asks");
            p.reply(Request::SetOwner, &Payload::U64(1));
            p.expect_acked(Request::SetFeatures);
            p.expect_eof();
        });
        let mut fe = frontend(&fake);
        fe.get_features().unwrap();
        fe.get_protocol_features().unwrap();
        fe.set_protocol_features(ACK).unwrap();
        let e = fe.set_owner().unwrap_err();
        assert!(
            matches!(
                e,
                VhostUserError::Nack {
                    request: Request::SetOwner,
                    code: 1
                }
            ),
            "{e:?}"
        );
        assert!(!e.is_fatal() && fe.is_connected());
        fe.set_features(V1).unwrap();
        assert_eq!(fe.acked_features(), Some(V1));
        drop(fe);
        fake.join();
    }

    #[test]
    fn a_vring_base_for_another_ring_is_refused() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.expect(Request::GetVringBase);
            p.reply(
                Request::GetVringBase,
                &Payload::VringState(VringState { index: 3, num: 9 }),
            );
            p.expect_eof();
        });
        let mut fe = frontend(&fake);
        let e = fe.get_vring_base(1).unwrap_err();
        assert!(
            matches!(e, VhostUserError::WrongVring { asked: 1, got: 3 }),
            "{e:?}"
        );
        assert_eq!(fe.vring_base(1), None);
        fake.join();
    }

    #[test]
    fn misuse_is_caught_before_anything_is_sent() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.features(V1);
            // Nothing else arrives: every call below fails in the frontend.
            p.expect_eof();
        });
        let mut fe = frontend(&fake);
        let e = fe.set_features(V1).unwrap_err();
        assert!(matches!(e, VhostUserError::OutOfOrder { .. }), "{e:?}");
        assert!(e.to_string().contains("get_features first"), "{e}");
        fe.get_features().unwrap();
        let e = fe.set_features(V1 | PF).unwrap_err();
        assert!(
            matches!(e, VhostUserError::FeatureNotOffered { missing: PF, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("does not support feature(s) VHOST_USER_F_PROTOCOL_FEATURES"),
            "{e}"
        );
        let e = fe.get_protocol_features().unwrap_err();
        assert!(
            matches!(e, VhostUserError::FeatureNotOffered { missing: PF, .. }),
            "{e:?}"
        );
        let e = fe
            .set_protocol_features(1 << protocol::SLAVE_REQ)
            .unwrap_err();
        assert!(
            matches!(e, VhostUserError::FrontendUnsupported { bits: 32 }),
            "{e:?}"
        );
        assert!(e.to_string().contains("SLAVE_REQ"), "{e}");
        let e = fe.get_queue_num().unwrap_err();
        assert!(
            matches!(e, VhostUserError::NotNegotiated { feature: 0, .. }),
            "{e:?}"
        );
        let e = fe.set_vring_enable(0, true).unwrap_err();
        assert!(matches!(e, VhostUserError::OutOfOrder { .. }), "{e:?}");
        assert!(matches!(
            fe.set_vring_num(256, 256),
            Err(VhostUserError::VringIndex { index: 256 })
        ));
        for bad in [0, 3, 65536] {
            assert!(matches!(
                fe.set_vring_num(0, bad),
                Err(VhostUserError::VringSize { .. })
            ));
        }
        assert!(matches!(
            fe.set_vring_kick(300, None),
            Err(VhostUserError::VringIndex { .. })
        ));
        assert!(matches!(
            fe.set_mem_table(&[]),
            Err(VhostUserError::MemTable {
                reason: MemTableProblem::Empty
            })
        ));
        assert!(fe.is_connected(), "none of these is fatal");
        drop(fe);
        fake.join();
    }

    #[test]
    fn reset_owner_forgets_the_session() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.features(V1);
            p.expect(Request::SetOwner);
            p.expect(Request::SetFeatures);
            p.expect(Request::ResetOwner);
        });
        let mut fe = frontend(&fake);
        fe.get_features().unwrap();
        fe.set_owner().unwrap();
        fe.set_features(V1).unwrap();
        fe.reset_owner().unwrap();
        assert_eq!(fe.acked_features(), None);
        fake.join();
        // Reconnecting after a reset replays nothing but the opening question.
        fake.serve(|p| {
            p.features(V1);
            p.expect_eof();
        });
        fe.reconnect().unwrap();
        fe.disconnect();
        fake.join();
    }

    #[test]
    fn a_status_beyond_a_byte_is_refused() {
        let mut fake = FakeBackend::new();
        fake.serve(|p| {
            p.features(PF);
            assert_eq!(p.protocol(1 << protocol::STATUS), 1 << protocol::STATUS);
            p.expect(Request::SetStatus);
            p.expect(Request::GetStatus);
            p.reply(Request::GetStatus, &Payload::U64(0x10f));
            p.expect_eof();
        });
        let mut fe = frontend(&fake);
        fe.get_features().unwrap();
        fe.get_protocol_features().unwrap();
        fe.set_protocol_features(1 << protocol::STATUS).unwrap();
        fe.set_status(0xf).unwrap();
        let e = fe.get_status().unwrap_err();
        assert!(
            matches!(e, VhostUserError::BadValue { value: 0x10f, .. }),
            "{e:?}"
        );
        assert!(!fe.is_connected());
        fake.join();
    }

    /// A full session against the fake: what arrives is exactly what was asked, with the
    /// descriptors where they belong; then the fake restarts and sees the same session again.
    #[test]
    fn a_session_arrives_as_sent_and_is_replayed_after_a_restart() {
        let os = LinuxOs::new(MemoryConfig::plain()).unwrap();
        let region = os.dma_alloc(&DmaRequest::new("vhost", 64 << 10)).unwrap();
        let va = region.va().get() as u64;
        let len = region.len() as u64;
        let kick = EventFd::new().unwrap();
        let addrs = VringAddrs {
            desc: region.va(),
            avail: region.va().wrapping_add(4096),
            used: region.va().wrapping_add(8192),
        };

        // What both sessions must show, after the opening; `base` differs.
        let session = move |p: &Peer, base: u32| {
            let r = p.expect_acked(Request::SetMemTable);
            assert_eq!(r.fds.len(), 1, "one descriptor per region");
            let Payload::MemTable(t) = r.payload else {
                panic!()
            };
            assert_eq!(
                t,
                [RegionDesc {
                    guest_phys_addr: va,
                    memory_size: len,
                    userspace_addr: va,
                    mmap_offset: 0
                }]
            );
            let r = p.expect_acked(Request::SetVringNum);
            assert_eq!(
                r.payload,
                Payload::VringState(VringState { index: 1, num: 256 })
            );
            let r = p.expect_acked(Request::SetVringBase);
            assert_eq!(
                r.payload,
                Payload::VringState(VringState {
                    index: 1,
                    num: base
                })
            );
            let r = p.expect_acked(Request::SetVringAddr);
            assert_eq!(
                r.payload,
                Payload::VringAddr(VringAddr {
                    index: 1,
                    flags: 0,
                    desc: va,
                    used: va + 8192,
                    avail: va + 4096,
                    log: 0
                })
            );
            let r = p.expect(Request::SetVringKick);
            assert_eq!(r.payload, Payload::U64(1));
            assert_eq!(r.fds.len(), 1);
            // The descriptor is the frontend's eventfd: kicked before the acknowledgement, which
            // the frontend waits for before it looks.
            nix::unistd::write(&r.fds[0], &1u64.to_ne_bytes()).unwrap();
            if r.header.flags & flags::NEED_REPLY != 0 {
                p.reply(Request::SetVringKick, &Payload::U64(0));
            }
            let r = p.expect_acked(Request::SetVringCall);
            assert_eq!(
                r.payload,
                Payload::U64(1 | VRING_NOFD_MASK),
                "polling: no fd"
            );
            assert!(r.fds.is_empty());
            let r = p.expect_acked(Request::SetVringEnable);
            assert_eq!(
                r.payload,
                Payload::VringState(VringState { index: 1, num: 1 })
            );
        };

        let mut fake = FakeBackend::new();
        fake.serve(move |p| {
            p.features(V1 | PF | 1 << 40);
            assert_eq!(p.protocol(MQ | ACK | 1 << 5), MQ | ACK);
            p.expect_acked(Request::SetOwner);
            let r = p.expect_acked(Request::SetFeatures);
            assert_eq!(r.payload, Payload::U64(V1 | PF));
            p.expect(Request::GetQueueNum);
            p.reply(Request::GetQueueNum, &Payload::U64(4));
            session(&p, 0);
            p.expect(Request::GetVringBase);
            p.reply(
                Request::GetVringBase,
                &Payload::VringState(VringState { index: 1, num: 5 }),
            );
            // Kick again (restart the ring), then the backend dies.
            p.expect_acked(Request::SetVringKick);
        });
        let mut fe = frontend(&fake);
        assert_eq!(fe.get_features().unwrap(), V1 | PF | 1 << 40);
        fe.get_protocol_features().unwrap();
        fe.set_protocol_features(MQ | ACK).unwrap();
        fe.set_owner().unwrap();
        fe.set_features(V1 | PF).unwrap();
        assert_eq!(fe.get_queue_num().unwrap(), 4);
        fe.set_mem_table(&[MemRegion::of(&region).unwrap()])
            .unwrap();
        fe.set_vring_num(1, 256).unwrap();
        fe.set_vring_base(1, 0).unwrap();
        fe.set_vring_addr(1, addrs).unwrap();
        fe.set_vring_kick(1, Some(kick.as_fd())).unwrap();
        assert_eq!(
            kick.ack().unwrap(),
            1,
            "the backend kicked through our eventfd"
        );
        fe.set_vring_call(1, None).unwrap();
        fe.set_vring_enable(1, true).unwrap();
        assert_eq!(fe.get_vring_base(1).unwrap(), 5);
        fe.set_vring_kick(1, Some(kick.as_fd())).unwrap();
        fake.join();
        fake.close();

        // Gone: the socket says so, and reconnecting fails (typed) while nobody listens.
        let e = fe.check_connection().unwrap_err();
        assert!(
            matches!(e, VhostUserError::BackendClosed { request: None }),
            "{e:?}"
        );
        let e = fe.reconnect().unwrap_err();
        assert!(matches!(e, VhostUserError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains("client=0"), "{e}");

        // Restarted: the same session, with the last base the backend reported.
        fake.reopen();
        fake.serve(move |p| {
            p.features(V1 | PF);
            assert_eq!(p.protocol(MQ | ACK), MQ | ACK);
            p.expect_acked(Request::SetOwner);
            let r = p.expect_acked(Request::SetFeatures);
            assert_eq!(r.payload, Payload::U64(V1 | PF));
            session(&p, 5);
            p.expect_eof();
        });
        fe.reconnect_within(Duration::from_secs(5)).unwrap();
        assert!(kick.wait(Some(Duration::from_secs(5))).unwrap());
        assert_eq!(kick.ack().unwrap(), 1);
        assert_eq!(fe.vring_base(1), Some(5));
        fe.disconnect();
        fake.join();

        // A restarted backend without a feature acknowledged before is refused.
        fake.serve(move |p| {
            p.features(V1);
            p.expect_eof();
        });
        let e = fe.reconnect().unwrap_err();
        assert!(
            matches!(e, VhostUserError::FeatureNotOffered { missing: PF, .. }),
            "{e:?}"
        );
        fe.disconnect();
        fake.join();
    }
}
