//! dpdk-testpmd's `--forward-mode=io` between two ports on one core, without testpmd: the
//! PMD, the mbuf pool and a minimal loop (receive a burst on one port, send it on the other;
//! then the other way). Prints forwarded Mpps (the sum of both ports' rx, as testpmd's
//! anchor figure) and TSC cycles per packet, both counted over the time the thread was on a
//! CPU, so a busy machine skews them less.
//!
//! ```text
//! cargo run --release -p rdk-pmd-null --example io_fwd -- null [seconds] [burst] [mbufs]
//! cargo run --release -p rdk-pmd-null --example io_fwd -- ring [seconds] [burst] [mbufs]
//! ```
//!
//! `null`: two `net_null` ports (DPDK anchor: testpmd net_null io, 169 Mpps on this machine
//! kind). `ring`: two loopback `net_ring` ports, one burst per port sent first (testpmd's
//! `--tx-first`; anchor 1310 Mpps).
//!
//! The null figure swings by a third with code placement alone: on the 2-vCPU EPYC anchor
//! machine the default build gives about 144 Mpps and one built with
//! `RUSTFLAGS="-C llvm-args=-align-loops=64"` about 200, from the same source.

use rdk_core::ethdev::{Driver, Port, PortConfig, RxQueue, RxQueueConfig, TxQueue, TxQueueConfig};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_os_linux::LinuxOs;
use rdk_pmd_null::NullDriver;
use rdk_pmd_ring::RingDriver;
use std::time::{Duration, Instant};

struct Opts {
    secs: f64,
    burst: usize,
    mbufs: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: f64| -> f64 { args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d) };
    let o = Opts {
        secs: num(2, 3.0),
        burst: num(3, 32.0) as usize,
        mbufs: num(4, 32768.0) as usize,
    };
    let os = LinuxOs::plain();
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("fwd", o.mbufs)).expect("pool");
    match args.get(1).map(String::as_str).unwrap_or("null") {
        "null" => {
            let ports = [0, 1].map(|_| NullDriver::new(64, false));
            run("null", ports, &pool, &o, false);
        }
        "ring" => {
            let ports = [0, 1].map(|i| RingDriver::loopback(&format!("r{i}"), 1, 1023).unwrap());
            run("ring", ports, &pool, &o, true);
        }
        other => panic!("unknown mode {other}; use null or ring"),
    }
    assert_eq!(pool.available(), pool.size(), "every mbuf back in the pool");
}

fn run<D: Driver>(name: &str, drivers: [D; 2], pool: &PktMbufPool, o: &Opts, tx_first: bool) {
    let mut ports = drivers.map(|d| {
        let mut p = Port::new(0, d);
        p.configure(&PortConfig::queues(1, 1)).unwrap();
        p.rx_queue_setup(0, 1024, pool, &RxQueueConfig::default())
            .unwrap();
        p.tx_queue_setup(0, 1024, &TxQueueConfig::default())
            .unwrap();
        p.start().unwrap();
        p
    });
    let [a, b] = &mut ports;
    let (qa, qb) = (a.queues().unwrap(), b.queues().unwrap());
    let (rx0, tx0) = (&mut qa.rx[0], &mut qa.tx[0]);
    let (rx1, tx1) = (&mut qb.rx[0], &mut qb.tx[0]);
    let mut pkts: Vec<Option<Mbuf>> = (0..o.burst).map(|_| None).collect();
    if tx_first {
        for tx in [&mut *tx0, &mut *tx1] {
            assert!(pool.alloc_bulk(&mut pkts));
            assert_eq!(tx.tx_burst(&mut pkts), o.burst);
        }
    }
    let mut dropped = 0u64;
    let mut fwd = 0u64;
    let until = Duration::from_secs_f64(o.secs);
    let t0 = Instant::now();
    let (c0, cpu0) = (tsc(), cpu_ns());
    while t0.elapsed() < until {
        for _ in 0..4096 {
            fwd += step(rx0, tx1, &mut pkts, &mut dropped);
            fwd += step(rx1, tx0, &mut pkts, &mut dropped);
        }
    }
    let (c1, cpu1, dt) = (tsc(), cpu_ns(), t0.elapsed());
    let on_cpu = (cpu1 - cpu0) as f64 / dt.as_nanos() as f64;
    println!(
        "{name} io fwd: {:.1} Mpps per CPU-second ({:.1} wall), {:.2} TSC cycles/pkt, \
         on CPU {:.0}%, burst {}, {} mbufs, dropped {dropped}",
        fwd as f64 / ((cpu1 - cpu0) as f64 / 1e9) / 1e6,
        fwd as f64 / dt.as_secs_f64() / 1e6,
        (c1 - c0) as f64 * on_cpu / fwd as f64,
        on_cpu * 100.0,
        o.burst,
        o.mbufs,
    );
}

/// One stream's turn: a burst received on `rx` is sent on `tx`; what `tx` refuses is freed.
#[inline(always)]
fn step<R: RxQueue, T: TxQueue>(
    rx: &mut R,
    tx: &mut T,
    pkts: &mut [Option<Mbuf>],
    dropped: &mut u64,
) -> u64 {
    let n = rx.rx_burst(pkts);
    if n > 0 {
        let sent = tx.tx_burst(&mut pkts[..n]);
        if sent < n {
            *dropped += (n - sent) as u64;
            Mbuf::free_bulk(&mut pkts[sent..n]);
        }
    }
    n as u64
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`, first field).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The time-stamp counter (`rte_rdtsc`).
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}
