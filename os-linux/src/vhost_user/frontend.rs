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
        let end = Instant::now() + wait;
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

    /// Sets how long a reply may take; applies from the next connection for sends.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
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
            return Err(self.fail(VhostUserError::Payload {
                request: Request::GetVringBase,
                error: super::msg::PayloadError::Size { got: 0, want: 8 },
            }));
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
            self.fail(VhostUserError::Payload {
                request: Request::GetStatus,
                error: super::msg::PayloadError::Size { got: 8, want: 1 },
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
    /// order a fresh session needs: features, owner, protocol features, memory table, then
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
        let end = Instant::now() + wait;
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
        if old.owner {
            self.set_owner()?;
        }
        if let Some(p) = old.protocol_features {
            self.get_protocol_features()?;
            self.set_protocol_features(p)?;
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
            _ => Err(self.fail(VhostUserError::Payload {
                request,
                error: super::msg::PayloadError::Size { got: 0, want: 8 },
            })),
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
        let deadline = Instant::now() + self.timeout;
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

/// A connection refused or a socket not there yet: worth another try.
fn retryable(e: &VhostUserError) -> bool {
    matches!(
        e,
        VhostUserError::Connect {
            errno: Errno::ENOENT | Errno::ECONNREFUSED,
            ..
        }
    )
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
