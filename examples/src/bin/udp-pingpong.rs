//! `udp-pingpong`: the UDPDK seed's PING/PONG over rdk's UDP stack, measuring round-trip time.
//!
//! With no arguments it runs over two built-in ring ports in one process: a PONG side (port
//! 10001) on one thread echoes every datagram back, a PING side (port 10000) on another sends
//! one datagram, waits for its echo and records the round trip, `--count` times or for
//! `--duration` seconds. Each side owns its stack and busy-polls it (the single-thread mode a
//! unikernel uses); PING runs on CPU 1, PONG on CPU 0. It prints RTT p50/p99/max and round
//! trips per second, and how many datagrams PONG received, echoed and left unanswered (an echo
//! its stack refused: a spoofed off-link or port-0 sender, no buffer). Unanswered datagrams
//! do not fail the run: PING's own losses show as `lost`; the exit status is failure only on
//! an error or when no round trip completed.
//!
//! `--port af_packet` (root; `--veth` is the same): the benchmark of the UDP issue (#8). It
//! builds two network namespaces joined by a veth pair and runs the same ping-pong with each
//! stack on a `net_af_packet` port (`rxversion=2`: no block timer) on its end, then two kernel
//! UDP sockets (blocking `recv_from`, as applications use them) over the same veth pair with
//! the same CPU placement, and prints both and the ratio (target: rdk p50 <= 0.5x the
//! kernel's).
//!
//! `--port af_xdp` (root): the same over `net_af_xdp` (rdk's XDP program redirects each veth
//! end's frames to an AF_XDP socket; copy mode, as veth has no zero-copy).
//!
//! `--port virtio_user` (root, `dpdk-testpmd`): each stack on a `net_virtio_user` port whose
//! vhost-user backend is one of two `net_vhost` ports of a `dpdk-testpmd` forwarding io
//! between them: DPDK's vhost is the switch. There is no kernel on the path to compare with.
//!
//! `--port tap` (root): each namespace gets a bridge holding its veth end and a TAP interface
//! rdk's `net_tap` made; the stacks run on the TAPs, the kernel's sockets on the bridges.
//!
//! `--threaded`: both sides run the stack in threaded mode (the seed's model): a poller thread
//! per side busy-polls the port, and the PING and PONG application threads hold blocking
//! sockets that sleep on an eventfd until the poller hands them a datagram through the
//! socket's exchange ring. The round trip then includes two wake-ups.

use clap::Parser;
use core::net::{Ipv4Addr, SocketAddrV4};
use rdk_core::ethdev::{DevArgs, Driver, Port, PortConfig, RxQueueConfig, TxQueueConfig};
use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};
use rdk_core::os::{EventNotifier, Events};
use rdk_core::udp::{
    threaded, IfaceConfig, ServiceConfig, Stack, StackLimits, UdpError, UdpService,
};
use rdk_examples::cpu;
use rdk_os_linux::vhost_user::{SharedMemory, VhostUserTransport, VirtioUserConfig};
use rdk_os_linux::{LinuxClock, LinuxOs};
use rdk_pmd_af_packet::AfPacketDriver;
use rdk_pmd_af_xdp::AfXdpDriver;
use rdk_pmd_ring::RingDriver;
use rdk_pmd_tap::TapDriver;
use rdk_pmd_virtio::{VirtioNet, VirtioNetConfig};
use rdk_tests::netns::{unique_name, Netns, Veth};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "UDP ping-pong over rdk's stack (two ring ports by default), with RTT figures")]
struct Args {
    /// Round trips to measure (0: until --duration ends).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Seconds at most (per run).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Payload bytes per datagram.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// The ports the stacks run on: `ring` (two ring ports in one process), or, over a veth
    /// pair between two namespaces (root, with the kernel's UDP sockets on the same pair for
    /// comparison), `af_packet`, `af_xdp` or `tap`; or `virtio_user` (root, dpdk-testpmd's
    /// vhost as the switch).
    #[arg(long, value_enum, default_value_t = PortKind::Ring)]
    port: PortKind,
    /// Same as `--port af_packet`.
    #[arg(long)]
    veth: bool,
    /// Threaded mode: a poller thread per side, the application threads on blocking sockets.
    #[arg(long)]
    threaded: bool,
    /// Threaded mode: microseconds a blocking receive polls before it sleeps (SO_BUSY_POLL).
    #[arg(long, default_value_t = 0)]
    busy_poll: u64,
    /// Single-thread mode: a side whose poll found nothing yields its CPU (for runs with more
    /// busy threads than CPUs; set for `--port virtio_user`, whose vhost switch is a third).
    #[arg(long)]
    yield_idle: bool,
}

/// Which ports the stacks run on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PortKind {
    /// Two `net_ring` ports back to back.
    Ring,
    /// `net_af_packet` (TPACKET_V2 receive ring) on each end of a veth pair.
    #[value(name = "af_packet")]
    AfPacket,
    /// `net_tap` in a bridge with each end of a veth pair.
    Tap,
    /// `net_af_xdp` (copy mode: veth has no zero-copy) on each end of a veth pair.
    #[value(name = "af_xdp")]
    AfXdp,
    /// `net_virtio_user` on each side, with DPDK's vhost (`dpdk-testpmd`, two `net_vhost`
    /// ports forwarding io to each other) as the switch between them.
    #[value(name = "virtio_user")]
    VirtioUser,
}

const PING_PORT: u16 = 10000;
const PONG_PORT: u16 = 10001;
const PING_CPU: usize = 1;
const PONG_CPU: usize = 0;

/// Round-trip times in nanoseconds, and the wall time they took.
struct Rtts {
    ns: Vec<u64>,
    secs: f64,
    lost: u64,
}

impl Rtts {
    fn pct(&self, q: f64) -> f64 {
        self.ns[((self.ns.len() as f64 * q) as usize).min(self.ns.len() - 1)] as f64 / 1000.0
    }

    fn print(&self, what: &str) {
        println!(
            "{what:<34} round trips {:>7} ({:>8.0}/s)  lost {:>3}  RTT us p50 {:>8.2}  p99 {:>8.2}",
            self.ns.len(),
            self.ns.len() as f64 / self.secs,
            self.lost,
            self.pct(0.5),
            self.pct(0.99)
        );
    }
}

/// `net_virtio_user`: the virtio-net PMD over vhost-user.
type VirtioUserDriver = VirtioNet<VhostUserTransport, SharedMemory>;

fn start<D: Driver>(d: D, pool: &PktMbufPool) -> Result<Port<D>, String> {
    start_with(d, pool, 1024)
}

/// [`start`] with `ring` descriptors per queue.
fn start_with<D: Driver>(d: D, pool: &PktMbufPool, ring: u16) -> Result<Port<D>, String> {
    let e = |x: rdk_core::ethdev::EthError| x.to_string();
    let mut p = Port::new(0, d);
    p.configure(&PortConfig::queues(1, 1)).map_err(e)?;
    p.rx_queue_setup(0, ring, pool, &RxQueueConfig::default())
        .map_err(e)?;
    p.tx_queue_setup(0, ring, &TxQueueConfig::default())
        .map_err(e)?;
    p.start().map_err(e)?;
    Ok(p)
}

fn stack(mac_last: u8, ip: Ipv4Addr, pool: &PktMbufPool) -> Result<Stack<LinuxClock>, String> {
    let cfg = IfaceConfig {
        mac: [0x02, 0, 0, 0, 0x77, mac_last],
        ip,
        prefix_len: 24,
        gateway: None,
        mtu: 1500,
    };
    Stack::new(cfg, StackLimits::default(), pool.clone(), LinuxClock::new())
        .map_err(|e| e.to_string())
}

/// What a PONG did with the datagrams it received: each one is echoed or left unanswered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pong {
    /// Echoes sent.
    echoed: u64,
    /// Datagrams whose echo could not be sent: the sender is whatever the datagram says (a
    /// spoofed off-link source has no route, port 0 is no destination), or no buffer was free.
    unanswered: u64,
}

impl Pong {
    /// Counts one received datagram by what sending its echo returned.
    fn count<T, E>(&mut self, sent: &Result<T, E>) {
        match sent {
            Ok(_) => self.echoed += 1,
            Err(_) => self.unanswered += 1,
        }
    }

    /// Datagrams received.
    fn received(&self) -> u64 {
        self.echoed + self.unanswered
    }
}

impl std::fmt::Display for Pong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pong received {}: echoed {}, unanswered {}",
            self.received(),
            self.echoed,
            self.unanswered
        )
    }
}

/// Echoes every datagram on `PONG_PORT` until `stop`.
fn pong<D: Driver>(
    mut port: Port<D>,
    mut s: Stack<LinuxClock>,
    stop: &AtomicBool,
    yield_idle: bool,
) -> Result<Pong, String> {
    let e = |x: UdpError| x.to_string();
    let sock = s.socket().map_err(e)?;
    s.bind(sock, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PONG_PORT))
        .map_err(e)?;
    let mut buf = vec![0u8; 2048];
    let mut done = Pong::default();
    while !stop.load(Ordering::Relaxed) {
        let q = port.queues().map_err(|x| x.to_string())?;
        if s.poll(&mut q.rx[0], &mut q.tx[0]) == 0 && yield_idle {
            std::thread::yield_now();
        }
        while let Ok((n, from, _)) = s.recv_from(sock, &mut buf) {
            // The sender is whatever the datagram says: an echo it cannot take (no route to
            // a spoofed off-link source, port 0, no buffer) is not sent but counted, and PONG
            // keeps serving.
            done.count(&s.send_to(sock, &buf[..n], from));
        }
    }
    Ok(done)
}

/// Sends to `to` and waits for each echo, `count` times or until `end`.
fn ping<D: Driver>(
    mut port: Port<D>,
    mut s: Stack<LinuxClock>,
    to: SocketAddrV4,
    args: &Args,
) -> Result<Rtts, String> {
    let e = |x: UdpError| x.to_string();
    let sock = s.socket().map_err(e)?;
    s.bind(sock, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PING_PORT))
        .map_err(e)?;
    let payload = vec![0x5au8; args.size.min(s.config().max_payload())];
    let mut buf = vec![0u8; 2048];
    measure(args, |t0| {
        s.send_to(sock, &payload, to).map_err(e)?;
        loop {
            let q = port.queues().map_err(|x| x.to_string())?;
            if s.poll(&mut q.rx[0], &mut q.tx[0]) == 0 && args.yield_idle {
                std::thread::yield_now();
            }
            match s.recv_from(sock, &mut buf) {
                Ok(_) => return Ok(true),
                Err(UdpError::WouldBlock) if t0.elapsed() < Duration::from_secs(1) => {}
                Err(UdpError::WouldBlock) => return Ok(false),
                Err(x) => return Err(x.to_string()),
            }
        }
    })
}

/// Times round trips, `args.count` of them or for `args.duration`: `round` sends one
/// datagram (the clock started at the `Instant` it gets) and says whether its echo came back.
fn measure(
    args: &Args,
    mut round: impl FnMut(Instant) -> Result<bool, String>,
) -> Result<Rtts, String> {
    let mut ns = Vec::with_capacity(args.count.min(10_000_000) as usize);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut lost = 0;
    while (args.count == 0 || (ns.len() as u64) < args.count) && Instant::now() < end {
        let t0 = Instant::now();
        if round(t0)? {
            ns.push(t0.elapsed().as_nanos() as u64);
        } else {
            lost += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if ns.is_empty() {
        return Err("no round trip completed".into());
    }
    ns.sort_unstable();
    Ok(Rtts { ns, secs, lost })
}

/// The stack in threaded mode: a poller thread (pinned to `cpu`) drives `port` until `stop`;
/// `app` runs on the calling thread with the service.
fn threaded_side<D: Driver + Send, R: Send>(
    mut port: Port<D>,
    s: Stack<LinuxClock>,
    args: &Args,
    cpu_no: usize,
    stop: &AtomicBool,
    app: impl FnOnce(UdpService) -> Result<R, String>,
) -> Result<R, String> {
    let svc_cfg = ServiceConfig {
        events: Some(Arc::new(|| {
            LinuxOs::plain()
                .event_create()
                .map(|e| Box::new(e) as Box<dyn EventNotifier>)
        })),
        busy_poll: Duration::from_micros(args.busy_poll),
        relax: std::thread::yield_now,
        ..ServiceConfig::default()
    };
    let (mut poller, service) = threaded(s, svc_cfg).map_err(|e| e.to_string())?;
    let poller_stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| -> Result<(), String> {
            let _ = cpu::pin_current_thread(cpu_no);
            while !poller_stop.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                let q = port.queues().map_err(|x| x.to_string())?;
                if poller.poll(&mut q.rx[0], &mut q.tx[0]) == 0 {
                    // Idle: let an application thread that shares this CPU run now rather
                    // than at the next scheduler tick (returns at once when none waits).
                    std::thread::yield_now();
                }
            }
            Ok(())
        });
        // The application sleeps between datagrams; let the scheduler wake it wherever.
        let _ = cpu::unpin_current_thread();
        let r = app(service);
        poller_stop.store(true, Ordering::Relaxed);
        h.join()
            .map_err(|_| "the poller thread panicked".to_string())??;
        r
    })
}

/// PONG on a threaded stack: a blocking socket echoes until `stop`.
fn pong_threaded(svc: UdpService, stop: &AtomicBool) -> Result<Pong, String> {
    let e = |x: UdpError| x.to_string();
    let mut sock = svc.socket().map_err(e)?;
    sock.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PONG_PORT))
        .map_err(e)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut done = Pong::default();
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_mbuf() {
            // As in `pong`: a datagram whose sender cannot be answered goes unanswered (and
            // is counted); the poller gone ends PONG.
            Ok((m, from)) => {
                let sent = sock.send_mbuf(m, from);
                done.count(&sent);
                if let Err(x @ UdpError::PollerGone) = sent {
                    return Err(x.to_string());
                }
            }
            Err(UdpError::WouldBlock) => {}
            Err(x) => return Err(x.to_string()),
        }
    }
    Ok(done)
}

/// PING on a threaded stack: sends, then sleeps in a blocking receive for the echo.
fn ping_threaded(svc: UdpService, to: SocketAddrV4, args: &Args) -> Result<Rtts, String> {
    let e = |x: UdpError| x.to_string();
    let mut sock = svc.socket().map_err(e)?;
    sock.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PING_PORT))
        .map_err(e)?;
    sock.set_read_timeout(Some(Duration::from_secs(1)));
    let payload = vec![0x5au8; args.size.min(svc.config().max_payload())];
    let mut buf = vec![0u8; 2048];
    measure(args, |_| {
        sock.send_to(&payload, to).map_err(e)?;
        match sock.recv_from(&mut buf) {
            Ok(_) => Ok(true),
            Err(UdpError::WouldBlock) => Ok(false),
            Err(x) => Err(x.to_string()),
        }
    })
}

/// The CPU PING runs on: PING_CPU, except with virtio-user, where DPDK's vhost switch (which
/// never yields) has CPU 1 to itself and PING shares PONG's CPU, both yielding when idle.
fn ping_cpu(args: &Args) -> usize {
    if args.port == PortKind::VirtioUser {
        PONG_CPU
    } else {
        PING_CPU % cpu::online_cpus().max(1)
    }
}

/// Runs PONG on `pb` (pinned to PONG_CPU) until PING on `pa` (PING_CPU) is done, in the
/// chosen mode; returns PING's figures and what PONG did.
fn pingpong<D: Driver + Send>(
    make_a: impl FnOnce() -> Result<Port<D>, String> + Send,
    make_b: impl FnOnce() -> Result<Port<D>, String> + Send,
    stacks: (Stack<LinuxClock>, Stack<LinuxClock>),
    to: SocketAddrV4,
    args: &Args,
) -> Result<(Rtts, Pong), String> {
    let stop = AtomicBool::new(false);
    let (sa, sb) = stacks;
    std::thread::scope(|sc| -> Result<(Rtts, Pong), String> {
        let stop = &stop;
        let pong_thread = sc.spawn(move || -> Result<Pong, String> {
            let _ = cpu::pin_current_thread(PONG_CPU);
            let port = make_b()?;
            if args.threaded {
                threaded_side(port, sb, args, PONG_CPU, stop, |svc| {
                    pong_threaded(svc, stop)
                })
            } else {
                pong(port, sb, stop, args.yield_idle)
            }
        });
        let r = sc
            .spawn(move || -> Result<Rtts, String> {
                let _ = cpu::pin_current_thread(ping_cpu(args));
                let port = make_a()?;
                if args.threaded {
                    let never = AtomicBool::new(false);
                    threaded_side(port, sa, args, ping_cpu(args), &never, |svc| {
                        ping_threaded(svc, to, args)
                    })
                } else {
                    ping(port, sa, to, args)
                }
            })
            .join()
            .map_err(|_| "the ping thread panicked".to_string())?;
        stop.store(true, Ordering::Relaxed);
        let done = pong_thread
            .join()
            .map_err(|_| "the pong thread panicked".to_string())??;
        Ok((r?, done))
    })
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.veth {
        args.port = PortKind::AfPacket;
    }
    if args.port == PortKind::VirtioUser {
        args.yield_idle = true;
    }
    let r = match args.port {
        PortKind::Ring => ring(&args),
        PortKind::AfPacket | PortKind::Tap | PortKind::AfXdp => veth(&args),
        PortKind::VirtioUser => virtio_user(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp-pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pool(name: &str) -> Result<PktMbufPool, String> {
    PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new(name, 4096))
        .map_err(|e| e.to_string())
}

/// Two ring ports in one process.
fn ring(args: &Args) -> Result<(), String> {
    let pool = pool("pingpong")?;
    let (da, db) = RingDriver::pair();
    let (ping_ip, pong_ip) = (
        Ipv4Addr::new(192, 168, 77, 1),
        Ipv4Addr::new(192, 168, 77, 2),
    );
    println!(
        "udp-pingpong: PING {ping_ip}:{PING_PORT} <-> PONG {pong_ip}:{PONG_PORT} over net_ring, {} B{}",
        args.size,
        mode(args)
    );
    let (r, pong_done) = pingpong(
        || start(da, &pool),
        || start(db, &pool),
        (stack(1, ping_ip, &pool)?, stack(2, pong_ip, &pool)?),
        SocketAddrV4::new(pong_ip, PONG_PORT),
        args,
    )?;
    r.print(&format!("rdk, net_ring{}", mode(args)));
    println!("{pong_done}");
    Ok(())
}

fn mode(args: &Args) -> &'static str {
    if args.threaded {
        " (threaded)"
    } else {
        ""
    }
}

/// A started `net_tap` port on a new TAP `tap` in `ns`, in a bridge `br0` with `veth_end`.
fn tap_port(
    ns: &Netns,
    tap: &str,
    veth_end: &str,
    pool: &PktMbufPool,
) -> Result<Port<TapDriver>, String> {
    let err = |e: rdk_tests::netns::HarnessError| e.to_string();
    let port = {
        let _inside = ns.enter().map_err(|e| e.to_string())?;
        start(TapDriver::new(tap), pool)?
    };
    if ns.exec(&["ip", "link", "show", "br0"]).is_err() {
        ns.exec(&["ip", "link", "add", "br0", "type", "bridge"])
            .map_err(err)?;
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.br0.disable_ipv6=1"])
            .map_err(err)?;
        ns.exec(&["ip", "link", "set", veth_end, "master", "br0"])
            .map_err(err)?;
        ns.exec(&["ip", "link", "set", "br0", "up"]).map_err(err)?;
    }
    ns.exec(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{tap}.disable_ipv6=1"),
    ])
    .map_err(err)?;
    ns.exec(&["ip", "link", "set", tap, "master", "br0", "up"])
        .map_err(err)?;
    // A bridge forwards only once its port left the learning states (no STP here: at once).
    std::thread::sleep(Duration::from_millis(200));
    Ok(port)
}

/// rdk over a veth pair (on af_packet, or on TAPs bridged to it), then the kernel's sockets
/// over the same pair.
fn veth(args: &Args) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("--port af_packet/tap needs root (network namespaces, AF_PACKET, TAP)".into());
    }
    let err = |e: rdk_tests::netns::HarnessError| e.to_string();
    let (na, nb) = (
        Netns::new("ppa").map_err(err)?,
        Netns::new("ppb").map_err(err)?,
    );
    let veth = Veth::new(Some(&na), Some(&nb)).map_err(err)?;
    for (ns, end) in [(&na, &veth.a), (&nb, &veth.b)] {
        ns.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{end}.disable_ipv6=1"),
        ])
        .map_err(err)?;
    }
    println!(
        "udp-pingpong --port {:?}: {} B datagrams over veth {} <-> {} (two namespaces); PING on CPU {PING_CPU}, PONG on CPU {PONG_CPU}{}",
        args.port, args.size, veth.a, veth.b, mode(args)
    );

    let (ping_ip, pong_ip) = (Ipv4Addr::new(10, 80, 0, 1), Ipv4Addr::new(10, 80, 0, 2));
    // A pool per side, as on two machines (an AF_XDP port keeps up to half its pool posted).
    let (pa, pb) = (pool("ping")?, pool("pong")?);
    let stacks = (stack(1, ping_ip, &pa)?, stack(2, pong_ip, &pb)?);
    let to = SocketAddrV4::new(pong_ip, PONG_PORT);
    // The kernel's sockets use the veth ends, or the bridges the TAPs share with them.
    let (ka, kb, what) = match args.port {
        PortKind::Tap => {
            let (ta, tb) = (unique_name("ppt"), unique_name("ppt"));
            let (ours, pong_done) = pingpong(
                || tap_port(&na, &ta, &veth.a, &pa),
                || tap_port(&nb, &tb, &veth.b, &pb),
                stacks,
                to,
                args,
            )?;
            (
                "br0".to_string(),
                "br0".to_string(),
                (ours, pong_done, format!("rdk, net_tap{}", mode(args))),
            )
        }
        PortKind::AfXdp => {
            // A stack on each end, on an AF_XDP socket (and rdk's XDP program) per veth end.
            let (ours, pong_done) = pingpong(
                || {
                    let _inside = na.enter().map_err(|e| e.to_string())?;
                    start(AfXdpDriver::new(&veth.a, 1), &pa)
                },
                || {
                    let _inside = nb.enter().map_err(|e| e.to_string())?;
                    start(AfXdpDriver::new(&veth.b, 1), &pb)
                },
                stacks,
                to,
                args,
            )?;
            (
                veth.a.clone(),
                veth.b.clone(),
                (ours, pong_done, format!("rdk, net_af_xdp{}", mode(args))),
            )
        }
        _ => {
            // A stack on each end, on net_af_packet with the per-frame (V2) receive ring.
            let (ours, pong_done) = pingpong(
                || {
                    let _inside = na.enter().map_err(|e| e.to_string())?;
                    start(AfPacketDriver::new(&veth.a, 1).with_rx_v2(true), &pa)
                },
                || {
                    let _inside = nb.enter().map_err(|e| e.to_string())?;
                    start(AfPacketDriver::new(&veth.b, 1).with_rx_v2(true), &pb)
                },
                stacks,
                to,
                args,
            )?;
            (
                veth.a.clone(),
                veth.b.clone(),
                (
                    ours,
                    pong_done,
                    format!("rdk, net_af_packet (rxversion=2){}", mode(args)),
                ),
            )
        }
    };
    let (ours, pong_done, label) = what;

    // The kernel: two UDP sockets over the same veth, same CPUs.
    na.exec(&["ip", "addr", "add", "10.81.0.1/24", "dev", &ka])
        .map_err(err)?;
    nb.exec(&["ip", "addr", "add", "10.81.0.2/24", "dev", &kb])
        .map_err(err)?;
    let stop = AtomicBool::new(false);
    let (kernel, kdone) = std::thread::scope(|sc| -> Result<(Rtts, Pong), String> {
        let kpong = sc.spawn(|| -> Result<Pong, String> {
            let _ = cpu::pin_current_thread(PONG_CPU);
            let _inside = nb.enter().map_err(|e| e.to_string())?;
            let s = std::net::UdpSocket::bind("10.81.0.2:10001").map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2048];
            let mut done = Pong::default();
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    // As rdk's PONG: an echo the kernel refuses is counted, not fatal.
                    done.count(&s.send_to(&buf[..n], from));
                }
            }
            Ok(done)
        });
        // Give the pong socket time to bind before the first datagram.
        std::thread::sleep(Duration::from_millis(200));
        let r = sc
            .spawn(|| -> Result<Rtts, String> {
                let _ = cpu::pin_current_thread(PING_CPU);
                let _inside = na.enter().map_err(|e| e.to_string())?;
                kernel_ping(args)
            })
            .join()
            .map_err(|_| "the kernel ping thread panicked".to_string())?;
        stop.store(true, Ordering::Relaxed);
        let kdone = kpong
            .join()
            .map_err(|_| "the kernel pong thread panicked".to_string())??;
        Ok((r?, kdone))
    })?;

    ours.print(&label);
    println!("  ({pong_done})");
    kernel.print("kernel UDP sockets");
    println!("  (kernel {kdone})");
    let ratio = ours.pct(0.5) / kernel.pct(0.5);
    println!(
        "SUMMARY udp RTT p50: rdk {:.2} us, kernel {:.2} us, ratio {ratio:.2} (target <= 0.5: {}); p99 rdk {:.2} kernel {:.2}",
        ours.pct(0.5),
        kernel.pct(0.5),
        if ratio <= 0.5 { "PASS" } else { "MISS" },
        ours.pct(0.99),
        kernel.pct(0.99)
    );
    Ok(())
}

/// The virtio-user port on `sock` (a `net_vhost` server socket), its mbuf pool in the port's
/// shared memory, started and with its link up.
fn virtio_user_port(
    sock: &std::path::Path,
    mac_last: u8,
) -> Result<(Port<VirtioUserDriver>, PktMbufPool), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let mem = SharedMemory::new();
    let args = DevArgs::parse(&format!(
        "net_virtio_user0,path={},queues=1,mac=02:00:00:00:77:{mac_last:02x}",
        sock.display()
    ))
    .map_err(|x| e(&x))?;
    let mut tcfg = VirtioUserConfig::from_devargs(&args).map_err(|x| e(&x))?;
    tcfg.connect_wait = Duration::from_secs(30);
    let t = VhostUserTransport::connect(tcfg, mem.clone())
        .map_err(|x| format!("connect to {}: {x}", sock.display()))?;
    let cfg = VirtioNetConfig::features_from_devargs(&args).map_err(|x| e(&x))?;
    let d = VirtioNet::new(t, mem.clone(), cfg).map_err(|x| e(&x))?;
    let pool = PktMbufPool::create(
        &mem,
        &PktMbufPoolConfig::new(&format!("vu{mac_last}"), 4096),
    )
    .map_err(|x| e(&x))?;
    // A virtio-user ring holds 256 descriptors (DPDK's default queue size too).
    let mut port = start_with(d, &pool, 256)?;
    let end = Instant::now() + Duration::from_secs(10);
    while !port.link_update().up {
        if Instant::now() > end {
            return Err(format!("{}: the link never came up", sock.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((port, pool))
}

/// rdk on virtio-user on both sides, DPDK's vhost forwarding between them.
fn virtio_user(args: &Args) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("--port virtio_user needs root (dpdk-testpmd, hugepages)".into());
    }
    let dir = std::env::temp_dir();
    let tag = unique_name("pp");
    let socks = [
        dir.join(format!("{tag}-0.sock")),
        dir.join(format!("{tag}-1.sock")),
    ];
    for s in &socks {
        let _ = std::fs::remove_file(s);
    }
    let vdev = |i: usize| {
        format!(
            "net_vhost{i},iface={},queues=1,client=0",
            socks[i].display()
        )
    };
    // The switch: io forwarding between the two vhost ports, on the CPU PONG does not use.
    let mut switch = std::process::Command::new("dpdk-testpmd")
        .args(["--no-pci", "--no-huge", "-m", "512", "--no-shconf"])
        .args(["--file-prefix", &tag, "-l", "0-1"])
        .args(["--vdev", &vdev(0), "--vdev", &vdev(1), "--"])
        .args([
            "--forward-mode=io",
            "--port-topology=paired",
            "--nb-cores=1",
        ])
        .args(["--auto-start", "--stats-period=0", "--total-num-mbufs=8192"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|x| format!("start dpdk-testpmd: {x}"))?;
    let r = (|| -> Result<(), String> {
        let (ping_ip, pong_ip) = (Ipv4Addr::new(10, 82, 0, 1), Ipv4Addr::new(10, 82, 0, 2));
        let (pa, pool_a) = virtio_user_port(&socks[0], 1)?;
        let (pb, pool_b) = virtio_user_port(&socks[1], 2)?;
        println!(
            "udp-pingpong --port virtio_user: {} B datagrams, net_virtio_user <-> DPDK net_vhost io fwd <-> net_virtio_user; PING and PONG on CPU {PONG_CPU} (yielding when idle), testpmd's forwarding lcore on CPU 1{}",
            args.size,
            mode(args)
        );
        let (ours, pong_done) = pingpong(
            || Ok(pa),
            || Ok(pb),
            (stack(1, ping_ip, &pool_a)?, stack(2, pong_ip, &pool_b)?),
            SocketAddrV4::new(pong_ip, PONG_PORT),
            args,
        )?;
        ours.print(&format!("rdk, net_virtio_user{}", mode(args)));
        println!("  ({pong_done})");
        Ok(())
    })();
    let _ = switch.kill();
    let _ = switch.wait();
    for s in &socks {
        let _ = std::fs::remove_file(s);
    }
    r
}

fn kernel_ping(args: &Args) -> Result<Rtts, String> {
    let s = std::net::UdpSocket::bind("10.81.0.1:10000").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let payload = vec![0x5au8; args.size];
    let mut buf = [0u8; 2048];
    measure(args, |_| {
        s.send_to(&payload, "10.81.0.2:10001")
            .map_err(|e| e.to_string())?;
        Ok(s.recv_from(&mut buf).is_ok())
    })
    .map_err(|e| format!("kernel: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdk_core::ethdev::{RxQueue, TxQueue};
    use rdk_core::mbuf::Mbuf;
    use rdk_tests::frames::{ipv4_udp_frame, mbuf_of};

    #[test]
    fn every_datagram_is_echoed_or_counted_unanswered() {
        let mut p = Pong::default();
        p.count(&Ok::<usize, UdpError>(5));
        p.count(&Err::<usize, _>(UdpError::NoRoute {
            dst: Ipv4Addr::new(8, 8, 8, 8),
        }));
        p.count(&Err::<usize, _>(UdpError::NoBuffers));
        p.count(&Err::<(), _>(std::io::Error::other("refused")));
        assert_eq!(
            p,
            Pong {
                echoed: 1,
                unanswered: 3
            }
        );
        assert_eq!(p.received(), 4);
        assert_eq!(p.to_string(), "pong received 4: echoed 1, unanswered 3");
    }

    /// PONG on a ring port gets three datagrams: from an off-link source (no route back),
    /// from port 0 (no destination), and from PING's address. It echoes the last, counts the
    /// other two unanswered, and keeps serving.
    #[test]
    fn pong_counts_what_it_leaves_unanswered() {
        let pool = pool("pptest").unwrap();
        let (da, db) = RingDriver::pair();
        let mut pa = start(da, &pool).unwrap();
        let pb = start(db, &pool).unwrap();
        let pong_ip = Ipv4Addr::new(192, 168, 77, 2);
        let s = stack(2, pong_ip, &pool).unwrap();
        let pong_mac = s.config().mac;
        let stop = AtomicBool::new(false);
        let ping_mac = [0x02, 0, 0, 0, 0x77, 1];
        let udp = |src: [u8; 4], sport: u16| {
            ipv4_udp_frame(
                ping_mac,
                pong_mac,
                src,
                pong_ip.octets(),
                sport,
                PONG_PORT,
                b"hi",
            )
        };
        let done = std::thread::scope(|sc| {
            let h = sc.spawn(|| pong(pb, s, &stop, true));
            // The echo to PING's address goes out after an ARP request for it: once that
            // request is on the wire, all three (one burst) were handled.
            let frames = [
                udp([8, 8, 8, 8], 5),
                udp([192, 168, 77, 1], 0),
                udp([192, 168, 77, 1], PING_PORT),
            ];
            let mut burst: Vec<Option<Mbuf>> =
                frames.iter().map(|f| Some(mbuf_of(&pool, f))).collect();
            assert_eq!(pa.queues().unwrap().tx[0].tx_burst(&mut burst), 3);
            let end = Instant::now() + Duration::from_secs(10);
            let mut seen = false;
            while !seen && Instant::now() < end {
                let mut rx: [Option<Mbuf>; 8] = Default::default();
                let n = pa.queues().unwrap().rx[0].rx_burst(&mut rx);
                seen = rx[..n].iter().flatten().any(|m| {
                    let d = m.data();
                    d.len() >= 42 && d[12..14] == [0x08, 0x06] && d[38..42] == [192, 168, 77, 1]
                });
                std::thread::yield_now();
            }
            stop.store(true, Ordering::Relaxed);
            let done = h.join().unwrap().unwrap();
            assert!(seen, "PONG never asked for PING's address");
            done
        });
        assert_eq!(
            done,
            Pong {
                echoed: 1,
                unanswered: 2
            }
        );
        drop(pa);
        assert_eq!(pool.available(), pool.size(), "every mbuf back");
    }
}
