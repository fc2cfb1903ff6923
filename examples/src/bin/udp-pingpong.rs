//! `udp-pingpong`: the UDPDK seed's PING/PONG over rdk's UDP stack, measuring round-trip time.
//!
//! With no arguments it runs over two built-in ring ports in one process: a PONG side (port
//! 10001) on one thread echoes every datagram back, a PING side (port 10000) on another sends
//! one datagram, waits for its echo and records the round trip, `--count` times or for
//! `--duration` seconds. Each side owns its stack and polls it itself (the single-thread mode
//! a unikernel uses); both threads are pinned (PING on CPU 1, PONG on CPU 0 where there are
//! two). It prints the RTT p50/p99/max and datagrams per second.
//!
//! Ports other than the ring pair (TAP, AF_PACKET, AF_XDP, virtio-user) come with the
//! interop benchmark; they are not flags yet.

use clap::Parser;
use core::net::{Ipv4Addr, SocketAddrV4};
use rdk_core::ethdev::{Port, PortConfig, RxQueueConfig, TxQueueConfig};
use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};
use rdk_core::udp::{IfaceConfig, Stack, StackLimits, UdpError};
use rdk_examples::cpu;
use rdk_os_linux::{LinuxClock, LinuxOs};
use rdk_pmd_ring::RingDriver;
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
    /// Seconds at most.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Payload bytes per datagram.
    #[arg(long, default_value_t = 32)]
    size: usize,
}

const PING_PORT: u16 = 10000;
const PONG_PORT: u16 = 10001;
const PING_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const PONG_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);

fn port(d: RingDriver, pool: &PktMbufPool) -> Result<Port<RingDriver>, String> {
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

fn pct(sorted: &[u64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp-pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let os = LinuxOs::plain();
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("pingpong", 4096))
        .map_err(|e| e.to_string())?;
    let (da, db) = RingDriver::pair();
    let (mut pa, mut pb) = (port(da, &pool)?, port(db, &pool)?);
    let stop = Arc::new(AtomicBool::new(false));
    let ncpu = cpu::online_cpus();
    println!(
        "udp-pingpong: PING {PING_IP}:{PING_PORT} <-> PONG {PONG_IP}:{PONG_PORT} over net_ring, \
         {} B payload, {} CPUs",
        args.size, ncpu
    );

    let pong_pool = pool.clone();
    let pong_stop = stop.clone();
    let pong = std::thread::Builder::new()
        .name("pong".into())
        .spawn(move || -> Result<u64, String> {
            let _ = cpu::pin_current_thread(0);
            let mut s = stack(2, PONG_IP, &pong_pool);
            let sock = s.socket().map_err(|e| e.to_string())?;
            s.bind(sock, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PONG_PORT))
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 2048];
            let mut echoed = 0;
            while !pong_stop.load(Ordering::Relaxed) {
                let q = pb.queues().map_err(|e| e.to_string())?;
                s.poll(&mut q.rx[0], &mut q.tx[0]);
                while let Ok((n, from, _)) = s.recv_from(sock, &mut buf) {
                    s.send_to(sock, &buf[..n], from)
                        .map_err(|e| e.to_string())?;
                    echoed += 1;
                }
            }
            Ok(echoed)
        })
        .map_err(|e| e.to_string())?;

    let _ = cpu::pin_current_thread(1 % ncpu.max(1));
    let mut s = stack(1, PING_IP, &pool);
    let sock = s.socket().map_err(|e| e.to_string())?;
    s.bind(sock, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PING_PORT))
        .map_err(|e| e.to_string())?;
    let payload = vec![0x5au8; args.size.min(s.config().max_payload())];
    let mut buf = vec![0u8; 2048];
    let to = SocketAddrV4::new(PONG_IP, PONG_PORT);
    let mut rtts = Vec::with_capacity(args.count.min(10_000_000) as usize);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut lost = 0u64;
    'outer: while (args.count == 0 || (rtts.len() as u64) < args.count) && Instant::now() < end {
        let t0 = Instant::now();
        s.send_to(sock, &payload, to).map_err(|e| e.to_string())?;
        loop {
            let q = pa.queues().map_err(|e| e.to_string())?;
            s.poll(&mut q.rx[0], &mut q.tx[0]);
            match s.recv_from(sock, &mut buf) {
                Ok(_) => {
                    rtts.push(t0.elapsed().as_nanos() as u64);
                    break;
                }
                Err(UdpError::WouldBlock) => {}
                Err(e) => return Err(e.to_string()),
            }
            if t0.elapsed() > Duration::from_secs(1) {
                lost += 1;
                if Instant::now() >= end {
                    break 'outer;
                }
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let echoed = pong
        .join()
        .map_err(|_| "the pong thread panicked".to_string())??;
    if rtts.is_empty() {
        return Err("no round trip completed".into());
    }
    rtts.sort_unstable();
    println!(
        "round trips: {} in {secs:.2} s ({:.0} datagrams/s each way), lost {lost}, pong echoed {echoed}",
        rtts.len(),
        rtts.len() as f64 / secs
    );
    println!(
        "RTT us: p50 {:.2}  p99 {:.2}  max {:.2}",
        pct(&rtts, 0.5),
        pct(&rtts, 0.99),
        *rtts.last().unwrap_or(&0) as f64 / 1000.0
    );
    let st = s.stats();
    println!("PING drops: {} (by reason: {st:?})", st.total());
    drop(s);
    drop((pa,));
    Ok(())
}
