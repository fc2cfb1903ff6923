//! Threaded mode, as in the seed UDPDK: one poller thread owns the [`Stack`] and alone touches
//! the port; application threads hold [`UdpSocket`]s and talk to it through rings.
//!
//! [`threaded`] splits a stack into a [`Poller`] (for the thread that drives the port: call
//! [`Poller::poll`] in its loop) and a [`UdpService`] (cloned into every application thread:
//! [`UdpService::socket`] opens a socket). Each socket has two single-producer,
//! single-consumer exchange rings of mbufs ([`PktRing`]):
//!
//! - **receive**: the poller puts each datagram for the socket on it, the mbuf trimmed to the
//!   payload and the sender in its dynamic fields ([`peer`](super::peer)); the socket takes
//!   it off in [`recv_from`](UdpSocket::recv_from) (a copy) or
//!   [`recv_mbuf`](UdpSocket::recv_mbuf) (the mbuf itself). A full ring drops the datagram
//!   and counts it (`socket_queue_full`), as a full kernel socket buffer does.
//! - **transmit**: [`send_to`](UdpSocket::send_to) copies the payload into an mbuf from the
//!   service's pool, [`send_mbuf`](UdpSocket::send_mbuf) takes the application's own, and
//!   either goes on the ring with its destination; the poller prepends the headers, resolves
//!   the next hop and sends it. The checks a send can fail (destination port, length,
//!   route, mbuf shape) are made on the application's side, so the error reaches the caller.
//!
//! Control calls (open, bind, options, close) are rare: they queue a request the poller serves
//! at the top of its next poll (one relaxed load per poll when there is none), and the caller
//! waits for the answer. Sockets are blocking by default: a receive sleeps on the socket's
//! receive event when [`ServiceConfig::events`] makes one (an eventfd on Linux), and spins
//! otherwise; [`set_nonblocking`](UdpSocket::set_nonblocking) turns both receive and a send on
//! a full ring into [`UdpError::WouldBlock`], and
//! [`set_read_timeout`](UdpSocket::set_read_timeout) bounds a blocking receive.
//!
//! A socket is one thread's (it is `Send`, not `Sync`): its rings have one producer and one
//! consumer each. Threads that share a port number open one socket each with
//! [`SocketOptions::reuse_port`] and get flows spread over them.

use super::{check_dst, check_len, check_mbuf, set_peer, SocketId, SocketOptions, Stack, UdpError};
use super::{DropStats, IfaceConfig};
use crate::ethdev::{RxQueue, TxQueue};
use crate::mbuf::{Mbuf, PktMbufPool};
use crate::os::{Clock, EventError, EventNotifier, Instant};
use crate::pktring::{PktConsumer, PktProducer, PktRing};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

/// Datagrams the poller takes off one socket's transmit ring per poll at most.
const BURST: usize = 32;
/// The longest a blocking receive sleeps before it looks whether the poller is still there.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Makes one event handle (a socket's receive event).
pub type EventFactory = dyn Fn() -> Result<Box<dyn EventNotifier>, EventError> + Send + Sync;

/// How the service runs.
#[derive(Clone)]
pub struct ServiceConfig {
    /// Datagrams each of a socket's two exchange rings holds.
    pub ring_size: usize,
    /// Makes each socket's receive event, so a blocking receive sleeps until the poller
    /// delivers (an eventfd on Linux: `LinuxOs::event_create`). `None`: it spins.
    pub events: Option<Arc<EventFactory>>,
    /// What a waiting application thread does between two looks (a spinning receive, a send
    /// on a full ring, a control call): `core::hint::spin_loop` by default;
    /// `std::thread::yield_now` shares a core better.
    pub relax: fn(),
    /// How long a blocking receive polls its ring before it sleeps on the event (the socket
    /// option `SO_BUSY_POLL`): a datagram due within microseconds is taken without the cost of
    /// a wake-up. Zero (the default) sleeps at once.
    pub busy_poll: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            ring_size: 1024,
            events: None,
            relax: core::hint::spin_loop,
            busy_poll: Duration::ZERO,
        }
    }
}

impl fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("ring_size", &self.ring_size)
            .field("events", &self.events.is_some())
            .field("busy_poll", &self.busy_poll)
            .finish()
    }
}

enum Op {
    Open { rx: PktProducer, tx: PktConsumer },
    Bind { id: SocketId, addr: SocketAddrV4 },
    SetOptions { id: SocketId, opts: SocketOptions },
    Close { id: SocketId },
    Stats,
}

// `Stats` is the large one: a rare control answer, copied once per call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
enum Answer {
    Opened(SocketId),
    Bound(SocketAddrV4),
    Stats(DropStats),
    Done,
}

type Reply = Arc<spin::Once<Result<Answer, UdpError>>>;

struct Request {
    op: Op,
    /// Where the answer goes; `None` when nobody waits (a socket dropped without `close`).
    reply: Option<Reply>,
}

/// What the poller and the applications share.
struct Shared {
    iface: IfaceConfig,
    pool: PktMbufPool,
    cfg: ServiceConfig,
    clock: Box<dyn Clock + Send + Sync>,
    requests: spin::Mutex<VecDeque<Request>>,
    pending: AtomicBool,
    gone: AtomicBool,
}

impl Shared {
    fn submit(&self, op: Op, reply: Option<Reply>) {
        let mut q = self.requests.lock();
        q.push_back(Request { op, reply });
        self.pending.store(true, Ordering::Release);
    }

    /// Queues `op` and waits for the poller's answer.
    fn call(&self, op: Op) -> Result<Answer, UdpError> {
        if self.gone.load(Ordering::Acquire) {
            return Err(UdpError::PollerGone);
        }
        let reply: Reply = Arc::new(spin::Once::new());
        self.submit(op, Some(reply.clone()));
        loop {
            if let Some(r) = reply.get() {
                return *r;
            }
            if self.gone.load(Ordering::Acquire) {
                // The poller answers everything queued before it leaves.
                return reply.get().copied().unwrap_or(Err(UdpError::PollerGone));
            }
            (self.cfg.relax)();
        }
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }
}

/// Splits `stack` into the poller that drives it and the service applications open sockets
/// on. `ring_size` is checked here.
pub fn threaded<C>(stack: Stack<C>, cfg: ServiceConfig) -> Result<(Poller<C>, UdpService), UdpError>
where
    C: Clock + Clone + Send + Sync + 'static,
{
    if cfg.ring_size == 0 || PktRing::new("udp-check", cfg.ring_size).is_err() {
        return Err(UdpError::BadRingSize {
            size: cfg.ring_size,
        });
    }
    let shared = Arc::new(Shared {
        iface: *stack.config(),
        pool: stack.pool().clone(),
        clock: Box::new(stack.clock().clone()),
        cfg,
        requests: spin::Mutex::new(VecDeque::new()),
        pending: AtomicBool::new(false),
        gone: AtomicBool::new(false),
    });
    let service = UdpService {
        shared: shared.clone(),
    };
    Ok((
        Poller {
            stack,
            shared,
            tx: Vec::new(),
            next: 0,
            closing: Vec::new(),
        },
        service,
    ))
}

/// The side that owns the stack and drives the port (see the [module docs](self)).
pub struct Poller<C: Clock> {
    stack: Stack<C>,
    shared: Arc<Shared>,
    /// Each open socket's transmit ring (the poller consumes).
    tx: Vec<(SocketId, PktConsumer)>,
    /// The socket whose ring the next poll takes from first (round robin).
    next: usize,
    /// Closed sockets whose transmit rings still hold datagrams, with the local port they
    /// go out from: drained as the backlog has room, as a kernel socket's queued datagrams
    /// still leave after `close`.
    closing: Vec<(u16, PktConsumer)>,
}

impl<C: Clock> Poller<C> {
    /// One round: serves pending control requests, takes what sockets handed over for
    /// sending, then [`Stack::poll`]s the port (receive, deliver to socket rings, transmit).
    /// Returns the frames received.
    #[inline]
    pub fn poll<R: RxQueue, T: TxQueue>(&mut self, rx: &mut R, tx: &mut T) -> usize {
        if self.shared.pending.load(Ordering::Acquire) {
            self.serve();
        }
        self.collect();
        self.stack.poll(rx, tx)
    }

    /// The stack (configuration, counters, drop statistics).
    pub fn stack(&self) -> &Stack<C> {
        &self.stack
    }

    /// Another handle on the service.
    pub fn service(&self) -> UdpService {
        UdpService {
            shared: self.shared.clone(),
        }
    }

    /// Sockets open.
    pub fn socket_count(&self) -> usize {
        self.tx.len()
    }

    /// Takes datagrams off the sockets' transmit rings, up to a burst each, as many as the
    /// stack's transmit backlog has room for (each makes at most one frame there): a port
    /// that cannot keep up pushes back onto the rings (and so onto blocking senders) instead
    /// of dropping. Each poll starts with the next socket, so when the backlog has room for
    /// less than every socket's burst, a busy socket does not keep the others waiting.
    #[inline]
    fn collect(&mut self) {
        if !self.closing.is_empty() {
            self.drain_closing();
        }
        let Self {
            stack, tx, next, ..
        } = self;
        let start = if *next < tx.len() { *next } else { 0 };
        *next = start + 1;
        let (before, from) = tx.split_at_mut(start);
        for (id, ring) in from.iter_mut().chain(before) {
            // A backlog shorter than a burst still gets its fill.
            let room = stack.backlog_room().min(BURST);
            if room == 0 {
                return;
            }
            let mut burst: [Option<Mbuf>; BURST] = Default::default();
            let n = ring.dequeue_burst(&mut burst[..room]);
            for m in burst[..n].iter_mut().filter_map(Option::take) {
                let dst = super::peer(&m);
                if stack.send_mbuf(*id, m, dst).is_err() {
                    stack.count_send_failed();
                }
            }
        }
    }

    /// Sends what closed sockets handed over, as the backlog has room; a ring left empty is
    /// done with.
    #[cold]
    fn drain_closing(&mut self) {
        let Self { stack, closing, .. } = self;
        for (port, ring) in closing.iter_mut() {
            loop {
                let room = stack.backlog_room().min(BURST);
                if room == 0 {
                    return;
                }
                let mut burst: [Option<Mbuf>; BURST] = Default::default();
                let n = ring.dequeue_burst(&mut burst[..room]);
                if n == 0 {
                    break;
                }
                for m in burst[..n].iter_mut().filter_map(Option::take) {
                    let dst = super::peer(&m);
                    if stack.send_from(*port, m, dst).is_err() {
                        stack.count_send_failed();
                    }
                }
            }
        }
        closing.retain(|(_, ring)| ring.count() > 0);
    }

    #[cold]
    fn serve(&mut self) {
        let reqs = {
            let mut q = self.shared.requests.lock();
            self.shared.pending.store(false, Ordering::Relaxed);
            core::mem::take(&mut *q)
        };
        for r in reqs {
            let answer = self.handle(r.op);
            if let Some(reply) = r.reply {
                reply.call_once(|| answer);
            }
        }
    }

    fn handle(&mut self, op: Op) -> Result<Answer, UdpError> {
        match op {
            Op::Open { rx, tx } => {
                let id = self.stack.socket()?;
                self.stack.attach_exchange(id, rx)?;
                self.tx.push((id, tx));
                Ok(Answer::Opened(id))
            }
            Op::Bind { id, addr } => self.stack.bind(id, addr).map(Answer::Bound),
            Op::SetOptions { id, opts } => self.stack.set_options(id, opts).map(|()| Answer::Done),
            Op::Close { id } => {
                // What the socket handed over before closing still goes out, over the next
                // polls as the backlog has room, from the port it was bound to (bound now if
                // it never was). Receiving stops at once.
                if let Some(i) = self.tx.iter().position(|(x, _)| *x == id) {
                    let (_, ring) = self.tx.swap_remove(i);
                    if ring.count() > 0 {
                        match self.stack.local_or_bind(id) {
                            Ok(local) => self.closing.push((local.port(), ring)),
                            Err(_) => {
                                // No port to send from: what it handed over is dropped.
                                for _ in 0..ring.count() {
                                    self.stack.count_send_failed();
                                }
                            }
                        }
                    }
                }
                self.stack.close(id).map(|()| Answer::Done)
            }
            Op::Stats => Ok(Answer::Stats(self.stack.stats())),
        }
    }
}

impl<C: Clock> Drop for Poller<C> {
    /// Tells every socket the poller is gone and answers what is queued.
    fn drop(&mut self) {
        self.shared.gone.store(true, Ordering::Release);
        let reqs = core::mem::take(&mut *self.shared.requests.lock());
        for r in reqs {
            if let Some(reply) = r.reply {
                reply.call_once(|| Err(UdpError::PollerGone));
            }
        }
    }
}

impl<C: Clock> fmt::Debug for Poller<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller")
            .field("sockets", &self.tx.len())
            .field("iface", self.stack.config())
            .finish()
    }
}

/// The applications' handle on a poller: opens sockets. Cheap to clone, one per thread.
#[derive(Clone)]
pub struct UdpService {
    shared: Arc<Shared>,
}

impl UdpService {
    /// Opens a socket (blocking, unbound).
    pub fn socket(&self) -> Result<UdpSocket, UdpError> {
        let s = &self.shared;
        let bad = |_| UdpError::BadRingSize {
            size: s.cfg.ring_size,
        };
        let rx_ring = PktRing::new("udp-rx", s.cfg.ring_size).map_err(bad)?;
        let tx_ring = PktRing::new("udp-tx", s.cfg.ring_size).map_err(bad)?;
        if let Some(make) = &s.cfg.events {
            rx_ring.set_rx_event(|| make()).map_err(UdpError::Event)?;
        }
        // Fresh rings: their one producer and consumer are free.
        let (rx, rx_theirs, tx, tx_theirs) = (
            rx_ring.consumer().map_err(bad)?,
            rx_ring.producer().map_err(bad)?,
            tx_ring.producer().map_err(bad)?,
            tx_ring.consumer().map_err(bad)?,
        );
        let Answer::Opened(id) = s.call(Op::Open {
            rx: rx_theirs,
            tx: tx_theirs,
        })?
        else {
            return Err(UdpError::BadSocket);
        };
        Ok(UdpSocket {
            id,
            shared: s.clone(),
            rx,
            rx_ring,
            tx,
            local: None,
            nonblocking: false,
            timeout: None,
            closed: false,
        })
    }

    /// The interface the poller serves.
    pub fn config(&self) -> &IfaceConfig {
        &self.shared.iface
    }

    /// The pool `send_to` copies into; zero-copy senders allocate from it too.
    pub fn pool(&self) -> &PktMbufPool {
        &self.shared.pool
    }

    /// The stack's drop counters, asked of the poller.
    pub fn stats(&self) -> Result<DropStats, UdpError> {
        match self.shared.call(Op::Stats)? {
            Answer::Stats(s) => Ok(s),
            _ => Err(UdpError::BadSocket),
        }
    }

    /// Whether the poller has stopped.
    pub fn poller_gone(&self) -> bool {
        self.shared.gone.load(Ordering::Acquire)
    }
}

impl fmt::Debug for UdpService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpService")
            .field("iface", &self.shared.iface)
            .field("cfg", &self.shared.cfg)
            .finish()
    }
}

/// A socket in threaded mode (see the [module docs](self)). Dropping it closes it.
pub struct UdpSocket {
    id: SocketId,
    shared: Arc<Shared>,
    rx: PktConsumer,
    rx_ring: Arc<PktRing>,
    tx: PktProducer,
    local: Option<SocketAddrV4>,
    nonblocking: bool,
    timeout: Option<Duration>,
    closed: bool,
}

impl UdpSocket {
    /// The socket's id in the poller's stack.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// Binds to `addr` (the interface's address or `0.0.0.0`; port 0 picks an ephemeral
    /// port); returns the address bound.
    pub fn bind(&mut self, addr: SocketAddrV4) -> Result<SocketAddrV4, UdpError> {
        if !addr.ip().is_unspecified() && *addr.ip() != self.shared.iface.ip {
            return Err(UdpError::AddrNotAvailable { addr });
        }
        match self.shared.call(Op::Bind { id: self.id, addr })? {
            Answer::Bound(a) => {
                self.local = Some(a);
                Ok(a)
            }
            _ => Err(UdpError::BadSocket),
        }
    }

    /// Sets the socket's options (before `bind` for the reuse options to count).
    pub fn set_options(&mut self, opts: SocketOptions) -> Result<(), UdpError> {
        self.shared
            .call(Op::SetOptions { id: self.id, opts })
            .map(drop)
    }

    /// The local address, if bound.
    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        self.local
    }

    /// Non-blocking mode: a receive with nothing queued, and a send on a full ring, return
    /// [`UdpError::WouldBlock`] at once.
    pub fn set_nonblocking(&mut self, on: bool) {
        self.nonblocking = on;
    }

    /// The longest a blocking receive waits (`None`: no limit); past it the receive returns
    /// [`UdpError::WouldBlock`], as `SO_RCVTIMEO` makes a kernel socket return `EAGAIN`.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Datagrams waiting on the receive ring.
    pub fn pending(&self) -> usize {
        self.rx_ring.count()
    }

    /// Sends `buf` to `dst`, copying it into an mbuf of the service's pool (binding an unbound
    /// socket to an ephemeral port first). Returns the bytes queued. A destination port 0 is
    /// refused ([`UdpError::ZeroDestinationPort`], Linux's `EINVAL`) before anything is bound.
    pub fn send_to(&mut self, buf: &[u8], dst: SocketAddrV4) -> Result<usize, UdpError> {
        check_dst(dst)?;
        check_len(&self.shared.iface, buf.len())?;
        let mut m = self.shared.pool.alloc().ok_or(UdpError::NoBuffers)?;
        m.append(buf.len() as u16)
            .map_err(|_| UdpError::NoBuffers)?
            .copy_from_slice(buf);
        self.send_mbuf(m, dst)
    }

    /// Sends the payload in `m` to `dst` without copying it: the poller writes the headers
    /// into its headroom. `m` must be one segment with 42 bytes of headroom (any mbuf fresh
    /// from a pool, payload appended). On an error `m` goes back to its pool. Returns the
    /// payload bytes queued.
    pub fn send_mbuf(&mut self, mut m: Mbuf, dst: SocketAddrV4) -> Result<usize, UdpError> {
        check_dst(dst)?;
        let iface = &self.shared.iface;
        let len = check_mbuf(iface, &m)?;
        iface.next_hop(*dst.ip())?;
        if self.local.is_none() {
            self.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        }
        set_peer(&mut m, dst)?;
        loop {
            m = match self.tx.enqueue(m) {
                Ok(()) => return Ok(len),
                Err(m) => m,
            };
            if self.nonblocking {
                return Err(UdpError::WouldBlock);
            }
            if self.shared.gone.load(Ordering::Acquire) {
                return Err(UdpError::PollerGone);
            }
            (self.shared.cfg.relax)();
        }
    }

    /// Takes the next datagram: copies its payload into `buf` and returns the bytes copied,
    /// the sender, and whether the datagram was longer than `buf` (the rest is discarded, as
    /// with `MSG_TRUNC`).
    pub fn recv_from(&mut self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4, bool), UdpError> {
        let (m, from) = self.recv_mbuf()?;
        let d = m.data();
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok((n, from, d.len() > buf.len()))
    }

    /// Takes the next datagram without copying: the mbuf, its data the payload, and the
    /// sender.
    pub fn recv_mbuf(&mut self) -> Result<(Mbuf, SocketAddrV4), UdpError> {
        if self.local.is_none() {
            return Err(UdpError::NotBound);
        }
        if let Some(m) = self.rx.dequeue() {
            let from = super::peer(&m);
            return Ok((m, from));
        }
        if self.nonblocking {
            return Err(UdpError::WouldBlock);
        }
        let m = self.wait()?;
        let from = super::peer(&m);
        Ok((m, from))
    }

    /// A blocking receive's wait: sleeps on the receive event if there is one, spins
    /// otherwise, until a datagram arrives, the timeout passes, or the poller goes.
    #[cold]
    fn wait(&mut self) -> Result<Mbuf, UdpError> {
        let start = self.shared.now();
        let deadline = self.timeout.map(|t| start.saturating_add(t));
        let sleeps = self.rx_ring.has_rx_event();
        let busy = self.shared.cfg.busy_poll;
        if sleeps && !busy.is_zero() {
            let until = start.saturating_add(match self.timeout {
                Some(t) => busy.min(t),
                None => busy,
            });
            while self.shared.now() < until {
                if let Some(m) = self.rx.dequeue() {
                    return Ok(m);
                }
                (self.shared.cfg.relax)();
            }
        }
        loop {
            let left = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(self.shared.now());
                    if left.is_zero() {
                        return Err(UdpError::WouldBlock);
                    }
                    left
                }
                None => MAX_SLEEP,
            };
            if self.shared.gone.load(Ordering::Acquire) {
                return self.rx.dequeue().ok_or(UdpError::PollerGone);
            }
            if sleeps {
                // Arm, look once more, then sleep: a datagram that lands in between either
                // is seen here or fires the event.
                self.rx_ring.rx_intr_enable().map_err(UdpError::Event)?;
                if let Some(m) = self.rx.dequeue() {
                    let _ = self.rx_ring.rx_intr_disable();
                    return Ok(m);
                }
                self.rx_ring
                    .rx_wait(Some(left.min(MAX_SLEEP)))
                    .map_err(UdpError::Event)?;
            } else {
                (self.shared.cfg.relax)();
            }
            if let Some(m) = self.rx.dequeue() {
                if sleeps {
                    let _ = self.rx_ring.rx_intr_disable();
                }
                return Ok(m);
            }
        }
    }

    /// Closes the socket: what it handed over still goes out, datagrams not yet received are
    /// freed.
    pub fn close(mut self) -> Result<(), UdpError> {
        self.closed = true;
        self.shared.call(Op::Close { id: self.id }).map(drop)
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        if !self.closed && !self.shared.gone.load(Ordering::Acquire) {
            self.shared.submit(Op::Close { id: self.id }, None);
        }
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("id", &self.id)
            .field("local", &self.local)
            .field("nonblocking", &self.nonblocking)
            .finish()
    }
}
