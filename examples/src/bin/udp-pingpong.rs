//! `udp-pingpong`: the UDPDK seed's PING/PONG over rdk's UDP stack, measuring round-trip time.
//!
//! With no arguments it runs over two built-in ring ports in one process: a PONG side (port
//! 10001) on one thread echoes every datagram back, a PING side (port 10000) on another sends
//! one datagram, waits for its echo and records the round trip, `--count` times or for
//! `--duration` seconds. Each side owns its stack and busy-polls it (the single-thread mode a
//! unikernel uses); PING runs on CPU 1, PONG on CPU 0. It prints RTT p50/p99/max and round
//! trips per second.
//!
//! `--veth` (root): the benchmark of the UDP issue (#8). It builds two network namespaces joined by a
//! veth pair and runs the same ping-pong with each stack on an `net_af_packet` port
//! (`rxversion=2`: no block timer) on its end, then two kernel UDP sockets (blocking
//! `recv_from`, as applications use them) over the same veth pair with the same CPU placement,
//! and prints both and the ratio (target: rdk p50 <= 0.5x the kernel's).

use clap::Parser;
use core::net::{Ipv4Addr, SocketAddrV4};
use rdk_core::ethdev::{Driver, Port, PortConfig, RxQueueConfig, TxQueueConfig};
use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};
use rdk_core::udp::{IfaceConfig, Stack, StackLimits, UdpError};
use rdk_examples::cpu;
use rdk_os_linux::{LinuxClock, LinuxOs};
use rdk_pmd_af_packet::AfPacketDriver;
use rdk_pmd_ring::RingDriver;
use rdk_tests::netns::{Netns, Veth};
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
    /// Over a veth pair between two namespaces (root): rdk on net_af_packet, then the kernel's
    /// UDP sockets, with the ratio.
    #[arg(long)]
    veth: bool,
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

fn start<D: Driver>(d: D, pool: &PktMbufPool) -> Result<Port<D>, String> {
    let e = |x: rdk_core::ethdev::EthError| x.to_string();
    let mut p = Port::new(0, d);
    p.configure(&PortConfig::queues(1, 1)).map_err(e)?;
    p.rx_queue_setup(0, 1024, pool, &RxQueueConfig::default())
        .map_err(e)?;
    p.tx_queue_setup(0, 1024, &TxQueueConfig::default())
        .map_err(e)?;
    p.start().map_err(e)?;
    Ok(p)
}

fn stack(mac_last: u8, ip: Ipv4Addr, pool: &PktMbufPool) -> Stack<LinuxClock> {
    let cfg = IfaceConfig {
        mac: [0x02, 0, 0, 0, 0x77, mac_last],
        ip,
        prefix_len: 24,
        gateway: None,
        mtu: 1500,
    };
    Stack::new(cfg, StackLimits::default(), pool.clone(), LinuxClock::new())
}

/// Echoes every datagram on `PONG_PORT` until `stop`.
fn pong<D: Driver>(
    mut port: Port<D>,
    mut s: Stack<LinuxClock>,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let e = |x: UdpError| x.to_string();
    let sock = s.socket().map_err(e)?;
    s.bind(sock, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PONG_PORT))
        .map_err(e)?;
    let mut buf = vec![0u8; 2048];
    let mut echoed = 0;
    while !stop.load(Ordering::Relaxed) {
        let q = port.queues().map_err(|x| x.to_string())?;
        s.poll(&mut q.rx[0], &mut q.tx[0]);
        while let Ok((n, from, _)) = s.recv_from(sock, &mut buf) {
            s.send_to(sock, &buf[..n], from).map_err(e)?;
            echoed += 1;
        }
    }
    Ok(echoed)
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
    let mut ns = Vec::with_capacity(args.count.min(10_000_000) as usize);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut lost = 0;
    while (args.count == 0 || (ns.len() as u64) < args.count) && Instant::now() < end {
        let t0 = Instant::now();
        s.send_to(sock, &payload, to).map_err(e)?;
        loop {
            let q = port.queues().map_err(|x| x.to_string())?;
            s.poll(&mut q.rx[0], &mut q.tx[0]);
            match s.recv_from(sock, &mut buf) {
                Ok(_) => {
                    ns.push(t0.elapsed().as_nanos() as u64);
                    break;
                }
                Err(UdpError::WouldBlock) if t0.elapsed() < Duration::from_secs(1) => {}
                Err(UdpError::WouldBlock) => {
                    lost += 1;
                    break;
                }
                Err(x) => return Err(x.to_string()),
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if ns.is_empty() {
        return Err("no round trip completed".into());
    }
    ns.sort_unstable();
    Ok(Rtts { ns, secs, lost })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = if args.veth { veth(&args) } else { ring(&args) };
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
    let (pa, pb) = (start(da, &pool)?, start(db, &pool)?);
    let (ping_ip, pong_ip) = (
        Ipv4Addr::new(192, 168, 77, 1),
        Ipv4Addr::new(192, 168, 77, 2),
    );
    println!(
        "udp-pingpong: PING {ping_ip}:{PING_PORT} <-> PONG {pong_ip}:{PONG_PORT} over net_ring, {} B",
        args.size
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (st, pp) = (stop.clone(), pool.clone());
    let pong_thread = std::thread::spawn(move || {
        let _ = cpu::pin_current_thread(PONG_CPU);
        pong(pb, stack(2, pong_ip, &pp), &st)
    });
    let _ = cpu::pin_current_thread(PING_CPU % cpu::online_cpus().max(1));
    let r = ping(
        pa,
        stack(1, ping_ip, &pool),
        SocketAddrV4::new(pong_ip, PONG_PORT),
        args,
    );
    stop.store(true, Ordering::Relaxed);
    let echoed = pong_thread
        .join()
        .map_err(|_| "the pong thread panicked".to_string())??;
    let r = r?;
    r.print("rdk, net_ring");
    println!("pong echoed {echoed}");
    Ok(())
}

/// rdk on af_packet over a veth pair, then the kernel's sockets over the same pair.
fn veth(args: &Args) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("--veth needs root (network namespaces, AF_PACKET)".into());
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
        "udp-pingpong --veth: {} B datagrams over veth {} <-> {} (two namespaces); PING on CPU {PING_CPU}, PONG on CPU {PONG_CPU}",
        args.size, veth.a, veth.b
    );

    // rdk: a stack on each end, on net_af_packet with the per-frame (V2) receive ring.
    let (ping_ip, pong_ip) = (Ipv4Addr::new(10, 80, 0, 1), Ipv4Addr::new(10, 80, 0, 2));
    let pool = pool("pingpong")?;
    let stop = AtomicBool::new(false);
    let (ours, echoed) = std::thread::scope(|sc| -> Result<(Rtts, u64), String> {
        let pong_thread = sc.spawn(|| -> Result<u64, String> {
            let _ = cpu::pin_current_thread(PONG_CPU);
            let _inside = nb.enter().map_err(|e| e.to_string())?;
            let port = start(AfPacketDriver::new(&veth.b, 1).with_rx_v2(true), &pool)?;
            pong(port, stack(2, pong_ip, &pool), &stop)
        });
        let r = sc
            .spawn(|| -> Result<Rtts, String> {
                let _ = cpu::pin_current_thread(PING_CPU);
                let _inside = na.enter().map_err(|e| e.to_string())?;
                let port = start(AfPacketDriver::new(&veth.a, 1).with_rx_v2(true), &pool)?;
                let to = SocketAddrV4::new(pong_ip, PONG_PORT);
                ping(port, stack(1, ping_ip, &pool), to, args)
            })
            .join()
            .map_err(|_| "the ping thread panicked".to_string())?;
        stop.store(true, Ordering::Relaxed);
        let echoed = pong_thread
            .join()
            .map_err(|_| "the pong thread panicked".to_string())??;
        Ok((r?, echoed))
    })?;

    // The kernel: two UDP sockets over the same veth, same CPUs.
    na.exec(&["ip", "addr", "add", "10.81.0.1/24", "dev", &veth.a])
        .map_err(err)?;
    nb.exec(&["ip", "addr", "add", "10.81.0.2/24", "dev", &veth.b])
        .map_err(err)?;
    let stop = AtomicBool::new(false);
    let kernel = std::thread::scope(|sc| -> Result<Rtts, String> {
        let kpong = sc.spawn(|| -> Result<(), String> {
            let _ = cpu::pin_current_thread(PONG_CPU);
            let _inside = nb.enter().map_err(|e| e.to_string())?;
            let s = std::net::UdpSocket::bind("10.81.0.2:10001").map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    s.send_to(&buf[..n], from).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
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
        kpong
            .join()
            .map_err(|_| "the kernel pong thread panicked".to_string())??;
        r
    })?;

    ours.print("rdk, net_af_packet (rxversion=2)");
    println!("  (pong echoed {echoed})");
    kernel.print("kernel UDP sockets");
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

fn kernel_ping(args: &Args) -> Result<Rtts, String> {
    let s = std::net::UdpSocket::bind("10.81.0.1:10000").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let payload = vec![0x5au8; args.size];
    let mut buf = [0u8; 2048];
    let mut ns = Vec::new();
    let mut lost = 0;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    while (args.count == 0 || (ns.len() as u64) < args.count) && Instant::now() < end {
        let t0 = Instant::now();
        s.send_to(&payload, "10.81.0.2:10001")
            .map_err(|e| e.to_string())?;
        match s.recv_from(&mut buf) {
            Ok(_) => ns.push(t0.elapsed().as_nanos() as u64),
            Err(_) => lost += 1,
        }
    }
    if ns.is_empty() {
        return Err("no kernel round trip completed".into());
    }
    ns.sort_unstable();
    Ok(Rtts {
        ns,
        secs: start.elapsed().as_secs_f64(),
        lost,
    })
}
