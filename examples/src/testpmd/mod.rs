//! rdk-testpmd: dpdk-testpmd's forwarding test on rdk ports.
//!
//! [`run`] creates the ports from `--vdev` arguments, one mbuf pool (hugepages when the
//! machine has them free, else plain memory, said in the output), configures every port with
//! one queue pair per forwarding core, starts them, pins one thread per forwarding core, prints
//! statistics every period in testpmd's shape, and at the end prints the forward statistics,
//! the rates and the number of mbufs leaked (which must be 0).

pub mod cli;
pub mod display;
pub mod fwd;
pub mod pkt;
pub mod ports;

use cli::{Args, ForwardMode};
use display::{PortSummary, Rates};
use fwd::{Engine, Stream};
use ports::{AnyPort, AnyRx, AnyTx};
use rdk_core::ethdev::{PortConfig, PortStats, RxQueueConfig, TxQueueConfig};
use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};
use rdk_os_linux::{HugePageSize, IovaMode, LinuxOs, MemoryConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Per port: id, instance name, final statistics, packets dropped by the engine.
    pub ports: Vec<PortSummary>,
    /// How long forwarding ran.
    pub elapsed: Duration,
    /// Mbufs not back in the pool after everything was closed (must be 0).
    pub mbufs_leaked: i64,
    /// Where the mbufs lived ("hugepages (2 MiB, memfd)" or "plain memory").
    pub memory: String,
    /// Bytes of DMA memory the pool took.
    pub pool_bytes: usize,
}

/// Mbufs needed for every descriptor, cache and burst (dpdk-testpmd's default rule, rounded).
fn default_mbufs(args: &Args, nb_ports: usize) -> usize {
    let per_port = args.rxd as usize * args.nb_rxq() as usize
        + args.txd as usize * args.nb_txq() as usize
        + args.nb_cores as usize * (args.mbcache as usize + fwd::MAX_BURST);
    (per_port * nb_ports).max(8192)
}

/// Builds the mbuf pool: 2 MiB hugepages if they can be had, else plain memory.
fn make_pool(count: usize) -> Result<(PktMbufPool, String, usize), String> {
    let cfg = PktMbufPoolConfig::new("testpmd", count);
    if let Ok(os) = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Va)) {
        if let Ok(pool) = PktMbufPool::create(&os, &cfg) {
            let bytes = pool.bytes_per_mbuf() * count;
            return Ok((pool, "hugepages (2 MiB, memfd)".into(), bytes));
        }
    }
    let os = LinuxOs::plain();
    let pool = PktMbufPool::create(&os, &cfg).map_err(|e| format!("mbuf pool: {e}"))?;
    let bytes = pool.bytes_per_mbuf() * count;
    Ok((
        pool,
        "plain memory (no free 2 MiB hugepages; raise /proc/sys/vm/nr_hugepages for DMA-ready memory)"
            .into(),
        bytes,
    ))
}

/// Runs rdk-testpmd with `args`, printing as it goes (`quiet` silences the periodic blocks).
pub fn run(args: &Args, quiet: bool) -> Result<Outcome, String> {
    if !args.pci.is_empty() {
        return Err(format!(
            "PCI devices ({}) need the VFIO-based PMDs, which are not in this build yet; use \
             --vdev",
            args.pci.join(", ")
        ));
    }
    let mut reg = ports::registry();
    for v in &args.vdev {
        reg.create(v).map_err(|e| format!("--vdev {v}: {e}"))?;
    }
    let nb_ports = reg.len() as u16;
    if nb_ports == 0 {
        return Err("no ports: give at least one --vdev".into());
    }
    let names: Vec<String> = (0..nb_ports)
        .map(|i| reg.name(i).unwrap_or("?").to_string())
        .collect();
    let count = args
        .total_num_mbufs
        .map(|n| n as usize)
        .unwrap_or_else(|| default_mbufs(args, nb_ports as usize));
    let shared = reg.ports_mut().find_map(|p| p.shared_memory());
    let (pool, memory, pool_bytes) = match shared {
        // virtio-user: the backend reaches only the memory in its table.
        Some(mem) => {
            let pool = PktMbufPool::create(&mem, &PktMbufPoolConfig::new("testpmd", count))
                .map_err(|e| format!("mbuf pool in vhost-user shared memory: {e}"))?;
            let bytes = pool.bytes_per_mbuf() * count;
            let kind = if mem.is_hugepages() {
                "hugepages (2 MiB, memfd)"
            } else {
                "plain memory (memfd)"
            };
            (
                pool,
                format!("{kind}, shared with the vhost-user backend"),
                bytes,
            )
        }
        None => make_pool(count)?,
    };
    // The segments generated packets are made of: txonly and --tx-first chain --txpkts'
    // segments; flowgen sends one mbuf of --txpkts less the 4-byte FCS, as dpdk-testpmd's
    // flowgen does (pkt_size = tx_pkt_length - 4), so both programs count the same bytes.
    let segs: Vec<u16> = if args.forward_mode == ForwardMode::Flowgen {
        vec![args.txpkts.total() - 4]
    } else {
        args.txpkts.segments().to_vec()
    };
    // dpdk-testpmd gives up on a segment longer than an mbuf's data room; without this check
    // txonly, flowgen and --tx-first would generate nothing and say nothing.
    let generates = matches!(
        args.forward_mode,
        ForwardMode::Txonly | ForwardMode::Flowgen
    ) || args.tx_first;
    let room = pool.data_room();
    if let Some((i, len)) = segs.iter().enumerate().find(|(_, &n)| n > room) {
        if generates {
            return Err(format!(
                "--txpkts {}: segment {i} of {len} bytes does not fit an mbuf, which holds \
                 {room} bytes of data; use segments of {room} bytes or less (X,Y,…){}",
                args.txpkts,
                if args.forward_mode == ForwardMode::Flowgen {
                    ", and flowgen sends one-segment packets"
                } else {
                    ""
                }
            ));
        }
    }
    let (nb_rxq, nb_txq) = (args.nb_rxq(), args.nb_txq());
    if nb_rxq < args.nb_cores || nb_txq < args.nb_cores {
        return Err(format!(
            "--nb-cores {} needs at least that many rx and tx queues per port (have {nb_rxq} \
             rx, {nb_txq} tx)",
            args.nb_cores
        ));
    }
    let mut ports: Vec<AnyPort> = reg.into_ports();
    for (i, p) in ports.iter_mut().enumerate() {
        let ctx = |e| format!("port {i} ({}): {e}", names[i]);
        p.configure(&PortConfig::queues(nb_rxq, nb_txq))
            .map_err(ctx)?;
        for q in 0..nb_rxq {
            p.rx_queue_setup(q, args.rxd, &pool, &RxQueueConfig::default())
                .map_err(ctx)?;
        }
        for q in 0..nb_txq {
            p.tx_queue_setup(
                q,
                args.txd,
                &TxQueueConfig {
                    free_thresh: args.txfreet,
                    ..TxQueueConfig::default()
                },
            )
            .map_err(ctx)?;
        }
        p.start().map_err(ctx)?;
    }
    let readers: Vec<_> = ports.iter().map(|p| p.stats_reader()).collect();
    let macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac_addr().0).collect();
    if !quiet {
        println!(
            "rdk-testpmd: {} port(s), forward mode {:?}, {} core(s), burst {}, {} mbufs in {}",
            nb_ports, args.forward_mode, args.nb_cores, args.burst, count, memory
        );
        for (i, p) in ports.iter().enumerate() {
            println!(
                "  port {i}: {} ({}), MAC {}",
                names[i],
                p.driver_name(),
                p.mac_addr()
            );
        }
    }

    let stop = AtomicBool::new(false);
    let mut dropped = vec![0u64; nb_ports as usize];
    let started = Instant::now();
    let elapsed;
    {
        // Lend every queue out, then deal streams to cores: stream (p, q) → (peer(p), q).
        let mut rxs: Vec<Vec<Option<AnyRx<'_>>>> = Vec::new();
        let mut txs: Vec<Vec<Option<AnyTx<'_>>>> = Vec::new();
        for p in ports.iter_mut() {
            let (r, t) = p.queues().map_err(|e| e.to_string())?;
            rxs.push(r.into_iter().map(Some).collect());
            txs.push(t.into_iter().map(Some).collect());
        }
        let mut per_core: Vec<Vec<Stream<AnyRx<'_>, AnyTx<'_>>>> =
            (0..args.nb_cores).map(|_| Vec::new()).collect();
        let mut k = 0usize;
        for q in 0..nb_rxq {
            for p in 0..nb_ports {
                let peer = args.peer_port(p, nb_ports);
                let tq = q % nb_txq;
                let (Some(rx), Some(tx)) = (
                    rxs[p as usize][q as usize].take(),
                    txs[peer as usize][tq as usize].take(),
                ) else {
                    return Err(format!(
                        "topology maps two streams onto tx queue {tq} of port {peer}; use \
                         --txq {nb_rxq}"
                    ));
                };
                per_core[k % args.nb_cores as usize].push(Stream {
                    rx_port: p,
                    tx_port: peer,
                    rx,
                    tx,
                    tx_mac: macs[peer as usize],
                    peer_mac: [0x02, 0, 0, 0, 0, peer as u8],
                    tx_dropped: 0,
                });
                k += 1;
            }
        }
        let ncpu = rdk_examples_cpu_count();
        let main_cpu = args.main_cpu;
        let cache_size = (args.mbcache as usize).clamp(2, 512).min(count);
        let results = std::thread::scope(|s| {
            let mut handles = Vec::new();
            for (c, mut streams) in per_core.into_iter().enumerate() {
                let stop = &stop;
                let pool = &pool;
                let mode = args.forward_mode;
                let (burst, tx_first) = (args.burst as usize, args.tx_first);
                let (total, segs) = (segs.iter().sum(), segs.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("rdk-fwd-{c}"))
                    .spawn_scoped(s, move || -> Result<Vec<(u16, u64)>, String> {
                        // Core c runs on the CPU c+1 after the main one (which prints
                        // statistics), as dpdk-testpmd's forwarding lcores follow its main lcore.
                        // (Reduced first: a --main-cpu near usize::MAX must not overflow.)
                        let cpu = (main_cpu % ncpu + 1 + c) % ncpu;
                        let _ = crate::cpu::pin_current_thread(cpu);
                        let cache = pool.cache(cache_size).map_err(|e| e.to_string())?;
                        let mut eng = Engine {
                            mode,
                            burst,
                            cache,
                            stop,
                            frame: Engine::make_frame(total),
                            segs,
                            flow: 0,
                        };
                        if tx_first {
                            eng.tx_first(&mut streams);
                        }
                        eng.run(&mut streams);
                        Ok(streams.iter().map(|s| (s.tx_port, s.tx_dropped)).collect())
                    });
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        // Stop the cores already running before reporting.
                        stop.store(true, Ordering::Relaxed);
                        return vec![Err(format!("cannot start forwarding core {c}: {e}"))];
                    }
                }
            }
            let _ = crate::cpu::pin_current_thread(main_cpu % ncpu);
            stats_loop(args, &readers, &stop, quiet);
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| "a forwarding core panicked".to_string())
                })
                .collect::<Vec<_>>()
        });
        elapsed = started.elapsed();
        for r in results {
            for (port, d) in r?? {
                dropped[port as usize] += d;
            }
        }
    }
    let summaries: Vec<PortSummary> = (0..nb_ports)
        .map(|i| PortSummary {
            id: i,
            name: names[i as usize].clone(),
            stats: readers[i as usize].stats(),
            tx_dropped: dropped[i as usize],
        })
        .collect();
    for p in ports.iter_mut() {
        p.stop().map_err(|e| e.to_string())?;
        p.close().map_err(|e| e.to_string())?;
    }
    drop(ports);
    let mbufs_leaked = pool.size() as i64 - pool.available() as i64 - pool.in_caches() as i64;
    let out = Outcome {
        ports: summaries,
        elapsed,
        mbufs_leaked,
        memory,
        pool_bytes,
    };
    if !quiet || mbufs_leaked != 0 {
        print!(
            "{}",
            display::summary(&out.ports, out.elapsed, out.mbufs_leaked)
        );
    }
    Ok(out)
}

fn rdk_examples_cpu_count() -> usize {
    crate::cpu::online_cpus().max(1)
}

/// Set by SIGINT/SIGTERM: forwarding stops early and the summary is still printed, as
/// dpdk-testpmd does on Ctrl-C.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to [`INTERRUPTED`].
fn catch_signals() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

/// Prints statistics every period until the duration is over, then sets `stop`.
fn stats_loop(
    args: &Args,
    readers: &[rdk_core::ethdev::StatsReader],
    stop: &AtomicBool,
    quiet: bool,
) {
    // Instants past what the clock can hold are `None`: never (the run ends on a signal).
    let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    };
    let start = Instant::now();
    let end = start.checked_add(args.duration());
    let period = Duration::from_secs(args.stats_period);
    let mut prev: Vec<PortStats> = readers.iter().map(|r| r.stats()).collect();
    let mut prev_t = Instant::now();
    let mut next = if period.is_zero() {
        end
    } else {
        earliest(start.checked_add(period), end)
    };
    catch_signals();
    loop {
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) || INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        // Short steps, so a signal ends the run promptly.
        let step = Duration::from_millis(100);
        match next {
            Some(n) if now >= n => {}
            Some(n) => {
                std::thread::sleep((n - now).min(step));
                continue;
            }
            None => {
                std::thread::sleep(step);
                continue;
            }
        }
        next = earliest(next.and_then(|n| n.checked_add(period)), end);
        if period.is_zero() || quiet {
            continue;
        }
        let t = Instant::now();
        let cur: Vec<PortStats> = readers.iter().map(|r| r.stats()).collect();
        let rows: Vec<_> = cur
            .iter()
            .zip(&prev)
            .enumerate()
            .map(|(i, (c, p))| (i as u16, c.clone(), Rates::between(p, c, t - prev_t)))
            .collect();
        print!("{}", display::periodic(&rows));
        prev = cur;
        prev_t = t;
    }
    stop.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("rdk-testpmd").chain(extra.iter().copied())).unwrap()
    }

    #[test]
    fn huge_durations_and_periods_do_not_overflow_the_clock() {
        // A period no clock can reach: the run still ends after its duration.
        let stop = AtomicBool::new(false);
        let a = args(&["--duration=0.05", &format!("--stats-period={}", u64::MAX)]);
        stats_loop(&a, &[], &stop, true);
        assert!(stop.load(Ordering::Relaxed));
        // Durations past the end of the clock run until interrupted (here: already).
        INTERRUPTED.store(true, Ordering::Relaxed);
        for d in ["--duration=inf", "--duration=1e19", "--duration=1e300"] {
            let stop = AtomicBool::new(false);
            stats_loop(&args(&[d]), &[], &stop, true);
            assert!(stop.load(Ordering::Relaxed), "{d}");
        }
        INTERRUPTED.store(false, Ordering::Relaxed);
    }
}
