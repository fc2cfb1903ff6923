//! The UDP stack in threaded mode: a poller thread owns the stack and the port, application
//! threads hold sockets that talk to it through exchange rings. The far end of a `net_ring`
//! pair is a single-thread stack echoing datagrams (driven by the same poller thread), so
//! every test sees real round trips: blocking receives that sleep on an eventfd, non-blocking
//! and timed receives, zero-copy both ways, SO_REUSEPORT across threads, close flushing what
//! was handed over, errors, the poller going away, and every mbuf back in its pool.

use core::net::{Ipv4Addr, SocketAddrV4};
use rdk_core::ethdev::Port;
use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};
use rdk_core::os::{EventNotifier, Events};
use rdk_core::udp::threaded::EventFactory;
use rdk_core::udp::{
    threaded, DropStats, IfaceConfig, Poller, ServiceConfig, SocketOptions, Stack, StackLimits,
    UdpError, UdpService, UdpSocket,
};
use rdk_os_linux::{LinuxClock, LinuxOs};
use rdk_pmd_ring::RingDriver;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const IP_APP: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 1);
const IP_ECHO: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 2);
const ECHO: SocketAddrV4 = SocketAddrV4::new(IP_ECHO, 7);
const POOL: usize = 2048;

fn cfg(last: u8, ip: Ipv4Addr) -> IfaceConfig {
    rdk_tests::port::iface([2, 0, 0, 0, 7, last], ip)
}

fn started(d: RingDriver, pool: &PktMbufPool) -> Port<RingDriver> {
    rdk_tests::port::started(d, pool, 512)
}

fn eventfds() -> Arc<EventFactory> {
    Arc::new(|| {
        LinuxOs::plain()
            .event_create()
            .map(|e| Box::new(e) as Box<dyn EventNotifier>)
    })
}

/// A poller thread serving the application's stack, plus an echo stack on the other end of
/// the ring pair: port 7 echoes at once, port 8 after `DELAY`, port 9 from one of `FLOWS`
/// source ports.
struct Rig {
    service: UdpService,
    pool: PktMbufPool,
    stop: Arc<AtomicBool>,
    poller: Option<thread::JoinHandle<DropStats>>,
}

const DELAYED: SocketAddrV4 = SocketAddrV4::new(IP_ECHO, 8);
/// Port 9 answers a datagram whose first byte is `i` from port `9000 + i % FLOWS`.
const FAN: SocketAddrV4 = SocketAddrV4::new(IP_ECHO, 9);
const FLOWS: u16 = 16;
const DELAY: Duration = Duration::from_millis(300);

/// The application's stack (10.7.0.1 on the ring pair) with `limits`, allocating from `pool`.
fn app_stack(pool: &PktMbufPool, limits: StackLimits) -> Stack<LinuxClock> {
    Stack::new(cfg(1, IP_APP), limits, pool.clone(), LinuxClock::new()).unwrap()
}

impl Rig {
    fn new(events: bool) -> Rig {
        Self::with(ServiceConfig {
            events: events.then(eventfds),
            relax: thread::yield_now,
            ..ServiceConfig::default()
        })
    }

    fn with(svc: ServiceConfig) -> Rig {
        let pool =
            PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("udpt", POOL)).unwrap();
        let (da, db) = RingDriver::pair();
        let (mut pa, mut pb) = (started(da, &pool), started(db, &pool));
        let app = app_stack(&pool, StackLimits::default());
        let mut echo = Stack::new(
            cfg(2, IP_ECHO),
            StackLimits::default(),
            pool.clone(),
            LinuxClock::new(),
        )
        .unwrap();
        let (mut poller, service) = threaded(app, svc).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let poller = thread::spawn(move || {
            let now = echo.socket().unwrap();
            echo.bind(now, ECHO).unwrap();
            let later = echo.socket().unwrap();
            echo.bind(later, DELAYED).unwrap();
            let fan = echo.socket().unwrap();
            echo.bind(fan, FAN).unwrap();
            let fans: Vec<_> = (0..FLOWS)
                .map(|i| {
                    let f = echo.socket().unwrap();
                    echo.bind(f, SocketAddrV4::new(IP_ECHO, 9000 + i)).unwrap();
                    f
                })
                .collect();
            let mut waiting: Vec<(Instant, Vec<u8>, SocketAddrV4)> = Vec::new();
            let mut buf = vec![0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let q = pa.queues().unwrap();
                poller.poll(&mut q.rx[0], &mut q.tx[0]);
                let q = pb.queues().unwrap();
                echo.poll(&mut q.rx[0], &mut q.tx[0]);
                while let Ok((n, from, _)) = echo.recv_from(now, &mut buf) {
                    echo.send_to(now, &buf[..n], from).unwrap();
                }
                while let Ok((n, from, _)) = echo.recv_from(fan, &mut buf) {
                    let f = fans[usize::from(buf[0]) % fans.len()];
                    echo.send_to(f, &buf[..n], from).unwrap();
                }
                while let Ok((n, from, _)) = echo.recv_from(later, &mut buf) {
                    waiting.push((Instant::now() + DELAY, buf[..n].to_vec(), from));
                }
                waiting.retain(|(at, p, to)| {
                    let due = Instant::now() >= *at;
                    if due {
                        echo.send_to(later, p, *to).unwrap();
                    }
                    !due
                });
                thread::yield_now();
            }
            assert_eq!(
                quiet(echo.stats()),
                DropStats::default(),
                "the echo side dropped"
            );
            quiet(poller.stack().stats())
        });
        Rig {
            service,
            pool,
            stop,
            poller: Some(poller),
        }
    }

    /// Stops the poller (the stacks and ports go with it), checks every mbuf is back in the
    /// pool, and returns the application stack's drop counters.
    fn finish(mut self) -> DropStats {
        self.stop.store(true, Ordering::Relaxed);
        let stats = self.poller.take().unwrap().join().unwrap();
        drop(self.service);
        assert_eq!(self.pool.available(), POOL, "an mbuf was lost");
        stats
    }
}

/// Drop counters without the one expected drop: each side ignores the other's gratuitous
/// ARP announcement at start (not for it, and about nobody it knows).
fn quiet(mut s: DropStats) -> DropStats {
    assert!(s.arp_ignored <= 1, "{s:?}");
    s.arp_ignored = 0;
    s
}

fn payload(tag: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32 * 31 + tag) as u8).collect()
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn blocking_sockets_in_threads_get_byte_exact_echoes() {
    let rig = Rig::new(true);
    let handles: Vec<_> = (0..2u16)
        .map(|t| {
            let svc = rig.service.clone();
            thread::spawn(move || {
                let mut s = svc.socket().unwrap();
                s.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 20000 + t))
                    .unwrap();
                // A bound on every wait, so a lost datagram fails the test instead of hanging.
                s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = vec![0u8; 2048];
                for i in 0..300u32 {
                    let len = 1 + (i as usize * 7) % 1472;
                    let p = payload(i + u32::from(t) * 1000, len);
                    assert_eq!(s.send_to(&p, ECHO).unwrap(), len);
                    let (n, from, trunc) = s.recv_from(&mut buf).unwrap();
                    assert_eq!(from, ECHO);
                    assert!(!trunc);
                    assert_eq!(&buf[..n], &p[..], "datagram {i} of thread {t}");
                }
                s.close().unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(rig.finish(), DropStats::default());
}

#[test]
fn a_blocking_receive_sleeps_on_its_event_and_a_spinning_one_does_not() {
    // (event, busy-poll window): sleeps at once; spins (no event); spins for the window first.
    for (events, busy) in [
        (true, Duration::ZERO),
        (false, Duration::ZERO),
        (true, Duration::from_secs(1)),
    ] {
        // A spinning wait that only yields can starve on a loaded machine; spin for real.
        let rig = Rig::with(ServiceConfig {
            events: events.then(eventfds),
            relax: core::hint::spin_loop,
            busy_poll: busy,
            ..ServiceConfig::default()
        });
        let mut s = rig.service.socket().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5)));
        s.send_to(b"later", DELAYED).unwrap();
        let (cpu0, t0) = (thread_cpu(), Instant::now());
        let mut buf = [0u8; 16];
        let (n, from, _) = s.recv_from(&mut buf).unwrap();
        let (cpu, wall) = (thread_cpu() - cpu0, t0.elapsed());
        assert_eq!((&buf[..n], from), (&b"later"[..], DELAYED));
        assert!(wall >= DELAY - Duration::from_millis(20), "{wall:?}");
        // Other tests' pollers share the two CPUs, so a spinning thread gets only part of a
        // core; a sleeping one should use next to nothing.
        if events && busy.is_zero() {
            assert!(
                cpu < Duration::from_millis(15),
                "a receive with an event should sleep: {cpu:?} of CPU in {wall:?}"
            );
        } else {
            assert!(
                cpu > Duration::from_millis(20),
                "without an event, or within the busy-poll window, the receive spins \
                 {cpu:?} of CPU in {wall:?} (event {events}, busy {busy:?})"
            );
        }
        drop(s);
        assert_eq!(rig.finish(), DropStats::default());
    }
}

#[test]
fn non_blocking_and_timed_receives() {
    let rig = Rig::new(true);
    let mut s = rig.service.socket().unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(s.recv_from(&mut buf).unwrap_err(), UdpError::NotBound);
    s.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let local = s.local_addr().unwrap();
    assert!(local.port() >= 49152, "{local}");
    s.set_nonblocking(true);
    assert_eq!(s.recv_from(&mut buf).unwrap_err(), UdpError::WouldBlock);
    s.send_to(b"ping", ECHO).unwrap();
    let got = loop {
        match s.recv_from(&mut buf) {
            Ok(r) => break r,
            Err(UdpError::WouldBlock) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!((&buf[..got.0], got.1, got.2), (&b"ping"[..], ECHO, false));
    // Truncation is reported; the rest of the datagram is gone.
    s.set_nonblocking(false);
    s.set_read_timeout(Some(Duration::from_secs(5)));
    s.send_to(&payload(5, 100), ECHO).unwrap();
    let mut small = [0u8; 10];
    let (n, _, trunc) = s.recv_from(&mut small).unwrap();
    assert_eq!((n, trunc), (10, true));
    assert_eq!(&small[..], &payload(5, 100)[..10]);
    // A timed receive gives up.
    s.set_read_timeout(Some(Duration::from_millis(80)));
    let t0 = Instant::now();
    assert_eq!(s.recv_from(&mut buf).unwrap_err(), UdpError::WouldBlock);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(80) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // ... and a late datagram still arrives afterwards.
    s.set_read_timeout(Some(Duration::from_secs(5)));
    s.send_to(b"slow", DELAYED).unwrap();
    let (n, from, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"slow"[..], DELAYED));
    drop(s);
    assert_eq!(rig.finish(), DropStats::default());
}

#[test]
fn zero_copy_both_ways() {
    let rig = Rig::new(true);
    let mut s = rig.service.socket().unwrap();
    s.bind(SocketAddrV4::new(IP_APP, 30000)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5)));
    for i in 0..50u32 {
        let p = payload(i, 64 + i as usize);
        let mut m = rig.service.pool().alloc().unwrap();
        m.append(p.len() as u16).unwrap().copy_from_slice(&p);
        assert_eq!(s.send_mbuf(m, ECHO).unwrap(), p.len());
        let (m, from) = s.recv_mbuf().unwrap();
        assert_eq!(from, ECHO);
        assert_eq!(m.data(), &p[..], "the mbuf holds just the payload");
        assert_eq!(m.nb_segs(), 1);
    }
    // Mbufs that cannot carry headers are refused with the reason, and go back to the pool.
    let mut m = rig.service.pool().alloc().unwrap();
    m.append(10).unwrap();
    m.adj(0).unwrap();
    let mut bare = rig.service.pool().alloc().unwrap();
    bare.append(rig.service.pool().data_room() - rig.service.pool().headroom())
        .unwrap();
    bare.prepend(rig.service.pool().headroom() - 10).unwrap();
    assert_eq!(
        s.send_mbuf(bare, ECHO).unwrap_err(),
        UdpError::NoHeadroom { need: 42, have: 10 }
    );
    let mut tail = rig.service.pool().alloc().unwrap();
    tail.append(10).unwrap();
    m.chain(tail).unwrap();
    assert_eq!(
        s.send_mbuf(m, ECHO).unwrap_err(),
        UdpError::MultiSegment { segs: 2 }
    );
    let shared = rig.service.pool().alloc().unwrap();
    let other = shared.share().unwrap();
    assert_eq!(s.send_mbuf(shared, ECHO).unwrap_err(), UdpError::SharedMbuf);
    drop(other);
    drop(s);
    assert_eq!(rig.finish(), DropStats::default());
}

#[test]
fn reuse_port_spreads_flows_over_threads() {
    let rig = Rig::new(true);
    let shared = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000);
    let mut owners = Vec::new();
    for _ in 0..2 {
        let mut s = rig.service.socket().unwrap();
        s.set_options(SocketOptions {
            reuse_port: true,
            ..Default::default()
        })
        .unwrap();
        s.bind(shared).unwrap();
        owners.push(s);
    }
    // A third socket without the option cannot join.
    let mut intruder = rig.service.socket().unwrap();
    assert_eq!(
        intruder.bind(shared).unwrap_err(),
        UdpError::AddrInUse { addr: shared }
    );
    drop(intruder);
    // One round trip first, so the burst below does not wait on ARP (whose pending queue
    // holds 16 datagrams, like a kernel's neighbour queue).
    let mut warm = rig.service.socket().unwrap();
    warm.set_read_timeout(Some(Duration::from_secs(5)));
    warm.send_to(b"arp", ECHO).unwrap();
    warm.recv_from(&mut [0u8; 8]).unwrap();
    drop(warm);
    // The fan answers from 16 source ports: 16 flows to port 4000, spread by flow hash.
    let rounds = 4;
    for r in 0..rounds {
        for i in 0..FLOWS as u8 {
            owners[0].send_to(&[i, r], FAN).unwrap();
        }
    }
    let readers: Vec<_> = owners
        .into_iter()
        .map(|mut s| {
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 64];
                let mut got = Vec::new();
                while let Ok((n, from, _)) = s.recv_from(&mut buf) {
                    assert_eq!(n, 2);
                    assert_eq!(from.port(), 9000 + u16::from(buf[0]));
                    got.push(from.port());
                }
                got
            })
        })
        .collect();
    let got: Vec<Vec<u16>> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        got[0].len() + got[1].len(),
        usize::from(FLOWS) * rounds as usize,
        "{:?}",
        rig.service.stats()
    );
    assert!(
        !got[0].is_empty() && !got[1].is_empty(),
        "no spread: {got:?}"
    );
    for port in &got[0] {
        assert!(
            !got[1].contains(port),
            "flow from {port} reached both sockets"
        );
    }
    assert_eq!(rig.finish(), DropStats::default());
}

#[test]
fn errors_are_typed_and_the_poller_going_away_is_reported() {
    let rig = Rig::new(true);
    let svc = rig.service.clone();
    let mut s = svc.socket().unwrap();
    assert_eq!(
        s.send_to(&[0; 1473], ECHO).unwrap_err(),
        UdpError::MessageTooLong {
            len: 1473,
            max: 1472
        }
    );
    let off_link = SocketAddrV4::new(Ipv4Addr::new(8, 8, 8, 8), 53);
    assert_eq!(
        s.send_to(b"x", off_link).unwrap_err(),
        UdpError::NoRoute {
            dst: *off_link.ip()
        }
    );
    // Port 0 is no destination (Linux: EINVAL), refused before the socket is bound.
    let zero = SocketAddrV4::new(IP_ECHO, 0);
    assert_eq!(
        s.send_to(b"x", zero).unwrap_err(),
        UdpError::ZeroDestinationPort { dst: zero }
    );
    let mut m = svc.pool().alloc().unwrap();
    m.append(1).unwrap();
    assert_eq!(
        s.send_mbuf(m, zero).unwrap_err(),
        UdpError::ZeroDestinationPort { dst: zero }
    );
    assert_eq!(s.local_addr(), None);
    let foreign = SocketAddrV4::new(Ipv4Addr::new(10, 7, 0, 99), 1);
    assert_eq!(
        s.bind(foreign).unwrap_err(),
        UdpError::AddrNotAvailable { addr: foreign }
    );
    s.bind(SocketAddrV4::new(IP_APP, 5000)).unwrap();
    assert_eq!(
        s.bind(SocketAddrV4::new(IP_APP, 5001)).unwrap_err(),
        UdpError::AlreadyBound
    );
    // Datagrams handed over just before close still go out (the echo comes back to a
    // socket that is gone: counted as an unknown port, not lost silently).
    let mut c = svc.socket().unwrap();
    c.bind(SocketAddrV4::new(IP_APP, 5002)).unwrap();
    for _ in 0..10 {
        c.send_to(b"bye", ECHO).unwrap();
    }
    c.close().unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(svc.stats().unwrap().udp_unknown_port, 10);
    let stats = rig.finish();
    assert_eq!(stats.udp_unknown_port, 10);
    assert_eq!(stats.total(), 10, "{stats:?}");
    assert!(svc.poller_gone());
    let mut buf = [0u8; 8];
    assert_eq!(s.recv_from(&mut buf).unwrap_err(), UdpError::PollerGone);
    assert_eq!(svc.socket().unwrap_err(), UdpError::PollerGone);
    let e = UdpError::PollerGone.to_string();
    assert!(e.contains("restart"), "{e}");
}

#[test]
fn a_bad_ring_size_is_refused() {
    let pool = PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("udpr", 64)).unwrap();
    let st = Stack::new(
        cfg(1, IP_APP),
        StackLimits::default(),
        pool,
        LinuxClock::new(),
    )
    .unwrap();
    let e = threaded(
        st,
        ServiceConfig {
            ring_size: 0,
            ..ServiceConfig::default()
        },
    )
    .unwrap_err();
    assert_eq!(e, UdpError::BadRingSize { size: 0 });
}

/// A datagram whose UDP length is short of its IP payload reaches a threaded socket trimmed to
/// the UDP length (as Linux's `udp_rcv` trims it): the mbuf holds the payload and nothing of
/// what follows it in the IP packet or the frame.
#[test]
fn a_threaded_socket_gets_a_datagram_trimmed_to_its_udp_length() {
    use rdk_core::ethdev::TxQueue;
    use rdk_tests::frames::{ipv4_udp_frame, mbuf_of};
    let pool =
        PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("udptrim", 256)).unwrap();
    let (da, db) = RingDriver::pair();
    let (mut pa, mut pb) = (started(da, &pool), started(db, &pool));
    let app = app_stack(&pool, StackLimits::default());
    let (mut poller, service) = threaded(
        app,
        ServiceConfig {
            relax: thread::yield_now,
            ..ServiceConfig::default()
        },
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let h = thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            let q = pb.queues().unwrap();
            poller.poll(&mut q.rx[0], &mut q.tx[0]);
            thread::yield_now();
        }
        quiet(poller.stack().stats())
    });
    let mut s = service.socket().unwrap();
    s.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7777))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5)));
    let peer_mac = [2, 0, 0, 0, 7, 9];
    let mut f = ipv4_udp_frame(
        peer_mac,
        cfg(1, IP_APP).mac,
        IP_ECHO.octets(),
        IP_APP.octets(),
        5,
        7777,
        b"hello",
    );
    // Three bytes more in the IP packet, then Ethernet padding.
    f.extend_from_slice(b"PAD");
    let total = u16::from_be_bytes([f[16], f[17]]) + 3;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].fill(0);
    let c = rdk_tests::frames::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[0; 8]);
    let mut burst = [Some(mbuf_of(&pool, &f))];
    assert_eq!(pa.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    let (m, from) = s.recv_mbuf().unwrap();
    assert_eq!(
        (m.data(), from),
        (&b"hello"[..], SocketAddrV4::new(IP_ECHO, 5))
    );
    drop(m);
    drop(s);
    thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(h.join().unwrap(), DropStats::default());
    drop((pa, service));
    assert_eq!(pool.available(), 256, "an mbuf was lost");
}

/// A poller the test thread drives itself, one `poll` at a time, over a `net_ring` pair whose
/// far end (`b`) the test reads; the tx ring from `a` to `b` holds `ring` frames.
struct Stepped {
    poller: Poller<LinuxClock>,
    service: UdpService,
    a: Port<RingDriver>,
    b: Port<RingDriver>,
    pool: PktMbufPool,
}

impl Stepped {
    fn new(limits: StackLimits, ring: usize) -> Stepped {
        let pool =
            PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("udps", POOL)).unwrap();
        let (da, db) = RingDriver::pair_with("a", "b", 1, ring).unwrap();
        let (a, b) = (started(da, &pool), started(db, &pool));
        let app = app_stack(&pool, limits);
        let (poller, service) = threaded(app, ServiceConfig::default()).unwrap();
        Stepped {
            poller,
            service,
            a,
            b,
            pool,
        }
    }

    /// A stack whose transmit backlog holds `frames`, over rings of 1023.
    fn with_backlog(frames: usize) -> Stepped {
        let limits = StackLimits {
            tx_backlog: frames,
            ..StackLimits::default()
        };
        Stepped::new(limits, 1023)
    }

    fn poll(&mut self) {
        let q = self.a.queues().unwrap();
        self.poller.poll(&mut q.rx[0], &mut q.tx[0]);
    }

    /// Runs `f` on a helper thread (a control call waits for the poller) while this thread
    /// polls until the helper is done; its result.
    fn polling_while<T: Send + 'static>(&mut self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let h = thread::spawn(f);
        while !h.is_finished() {
            self.poll();
            thread::yield_now();
        }
        h.join().unwrap()
    }

    /// A non-blocking socket bound to `port`, opened while polling.
    fn socket(&mut self, port: u16) -> UdpSocket {
        let svc = self.service.clone();
        self.polling_while(move || {
            let mut s = svc.socket().unwrap();
            s.bind(SocketAddrV4::new(IP_APP, port)).unwrap();
            s.set_nonblocking(true);
            s
        })
    }

    /// `polls` polls, and the source ports of what reached the far end meanwhile.
    fn poll_and_collect(&mut self, polls: usize) -> Vec<u16> {
        let mut seen = self.sent_from();
        for _ in 0..polls {
            self.poll();
            seen.extend(self.sent_from());
        }
        seen
    }

    /// The source ports of the UDP frames that reached the far end since the last call.
    fn sent_from(&mut self) -> Vec<u16> {
        use rdk_core::ethdev::RxQueue;
        let mut ports = Vec::new();
        let q = self.b.queues().unwrap();
        loop {
            let mut burst: [Option<rdk_core::mbuf::Mbuf>; 32] = Default::default();
            let n = q.rx[0].rx_burst(&mut burst);
            for m in burst[..n].iter().flatten() {
                let d = m.data();
                if d.len() >= 42 && d[12..14] == [0x08, 0x00] && d[23] == 17 {
                    ports.push(u16::from_be_bytes([d[34], d[35]]));
                }
            }
            if n == 0 {
                return ports;
            }
        }
    }

    fn finish(self) {
        let pool = self.pool.clone();
        drop(self);
        assert_eq!(pool.available(), POOL, "an mbuf was lost");
    }
}

/// The broadcast address of the application's /24: a destination that needs no ARP.
const BCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 7, 0, 255), 9);

/// A stack whose transmit backlog is shorter than the poller's burst still sends what its
/// sockets hand over: the poller takes as many as the backlog has room for.
#[test]
fn a_transmit_backlog_shorter_than_a_burst_still_sends() {
    let mut st = Stepped::with_backlog(16);
    let mut s = st.socket(5001);
    st.sent_from();
    for _ in 0..20 {
        s.send_to(b"x", BCAST).unwrap();
    }
    st.poll();
    assert_eq!(st.sent_from().len(), 16, "one backlog's worth per poll");
    st.poll();
    assert_eq!(st.sent_from().len(), 4);
    assert_eq!(st.poller.stack().stats(), DropStats::default());
    drop(s);
    st.finish();
}

/// What a socket handed over before it closed still goes out, all of it, over the polls the
/// backlog needs (as a kernel socket's queued datagrams leave after `close`), from its port.
#[test]
fn a_closed_sockets_datagrams_all_go_out_over_the_next_polls() {
    let mut st = Stepped::with_backlog(16);
    let mut s = st.socket(5003);
    st.sent_from();
    for _ in 0..40 {
        s.send_to(b"bye", BCAST).unwrap();
    }
    st.polling_while(move || s.close()).unwrap();
    assert_eq!(st.poller.socket_count(), 0, "closed at once");
    let seen = st.poll_and_collect(10);
    assert_eq!(
        seen, [5003; 40],
        "every datagram, from the closed socket's port"
    );
    assert_eq!(
        st.poller.stack().stats(),
        DropStats::default(),
        "nothing dropped"
    );
    st.finish();
}

/// When the backlog has room for one burst per poll, sockets take turns: one busy socket does
/// not keep another's datagrams waiting until it has nothing left to send.
#[test]
fn sockets_take_turns_when_the_backlog_is_the_bottleneck() {
    let mut st = Stepped::with_backlog(32);
    let mut busy = st.socket(5001);
    let mut quiet = st.socket(5002);
    st.sent_from();
    for _ in 0..300 {
        busy.send_to(b"busy", BCAST).unwrap();
    }
    quiet.send_to(b"quiet", BCAST).unwrap();
    let mut seen = Vec::new();
    for polls in 1..=2 {
        st.poll();
        seen.extend(st.sent_from());
        if seen.contains(&5002) {
            break;
        }
        assert!(
            polls < 2,
            "the quiet socket's datagram waited {polls} polls behind the busy one"
        );
    }
    // The rest of the busy socket's datagrams follow, none lost.
    seen.extend(st.poll_and_collect(20));
    assert_eq!(seen.iter().filter(|&&p| p == 5001).count(), 300);
    assert_eq!(seen.iter().filter(|&&p| p == 5002).count(), 1);
    assert_eq!(st.poller.stack().stats(), DropStats::default());
    drop((busy, quiet));
    st.finish();
}
