//! `intr_perf`: the interrupt thread's wake-up latency and registration cost, rdk next to
//! DPDK's EAL interrupt thread, in one run on the same CPUs.
//!
//! Run: `cargo run --release -p rdk-examples --bin intr_perf` (as root, for DPDK).
//!
//! - **Wake-up latency**: a thread pinned to CPU 1 stamps the TSC and writes 1 to an eventfd;
//!   the interrupt thread (on CPU 0) reads the count and runs the callback, which stamps the
//!   TSC again. The writer waits for the callback, then 100 µs so the thread is back asleep in
//!   `epoll_wait`, and repeats. p50 and p99 of the difference.
//! - **register + unregister**: one callback registered and unregistered on an otherwise idle
//!   eventfd, in a loop on CPU 1; mean time per pair.
//! - **DPDK**: `examples/bench/intr_perf_dpdk.c`, built with `gcc -O3 … $(pkg-config --cflags
//!   --libs libdpdk)` and run as `intr_perf_dpdk -l 1 --no-pci --no-huge -m 64
//!   --file-prefix …`: the main lcore (CPU 1) writes, the EAL interrupt thread runs on the
//!   remaining CPU 0, the handle is `RTE_INTR_HANDLE_VFIO_MSIX` on an eventfd so the EAL reads
//!   the 8-byte count as for a device, and registration is `rte_intr_callback_register` +
//!   `rte_intr_callback_unregister`.
//!
//! Flags: `--iters N` (latency samples, default 5000), `--pairs N` (default 20000), `--quick`
//! (1000 / 5000: a CI smoke run), `--no-dpdk`. Under `CI=true` a missing prerequisite (root,
//! gcc, pkg-config, libdpdk) fails the run.

use clap::Parser;
use rdk_core::os::EventNotifier;
use rdk_examples::cpu;
use rdk_examples::dpdk_anchor::{self as anchor, Missing, TempDir};
use rdk_examples::tsc;
use rdk_os_linux::intr::{InterruptThread, IntrConfig, IntrEvent, SourceKind};
use rdk_os_linux::EventFd;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "interrupt-thread wake-up latency and registration cost, rdk next to DPDK")]
struct Args {
    /// Latency samples.
    #[arg(long, default_value_t = 5000)]
    iters: usize,
    /// register + unregister pairs.
    #[arg(long, default_value_t = 20000)]
    pairs: usize,
    /// CI smoke run: fewer samples.
    #[arg(long)]
    quick: bool,
    /// Rounds (alternating which side runs first); figures are medians over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measure rdk only.
    #[arg(long)]
    no_dpdk: bool,
}

/// The busy-poll window of the second rdk run: longer than the 100 µs between events, so the
/// thread never sleeps during the measurement.
const BUSY_POLL: Duration = Duration::from_millis(1);

/// Per-figure median over rounds.
fn median(runs: &[Figures]) -> Option<Figures> {
    if runs.is_empty() {
        return None;
    }
    let med = |f: fn(&Figures) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some(Figures {
        p50_ns: med(|f| f.p50_ns),
        p99_ns: med(|f| f.p99_ns),
        regunreg_ns: med(|f| f.regunreg_ns),
    })
}

/// CPU of the writer / registering thread (DPDK's main lcore, `-l 1`).
const WRITER_CPU: usize = 1;
/// CPU of the interrupt thread (what the EAL gives its control threads: the non-lcore CPU).
const INTR_CPU: usize = 0;

#[derive(Clone, Copy, Debug)]
struct Figures {
    p50_ns: f64,
    p99_ns: f64,
    regunreg_ns: f64,
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn rdk(
    iters: usize,
    pairs: usize,
    ns_per_tick: f64,
    config: IntrConfig,
) -> Result<Figures, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let thread = InterruptThread::spawn_with(config).map_err(|e| err(&e))?;
    let h = thread.handle();
    // Pin the interrupt thread where the EAL puts its own.
    let pinned = Arc::new(AtomicU64::new(0));
    let p = pinned.clone();
    h.set_alarm(Duration::ZERO, move || {
        let ok = cpu::pin_current_thread(INTR_CPU).is_ok();
        p.store(1 + ok as u64, Ordering::SeqCst);
    })
    .map_err(|e| err(&e))?;
    while pinned.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    if pinned.load(Ordering::SeqCst) != 2 {
        return Err(format!("cannot pin the interrupt thread to CPU {INTR_CPU}"));
    }
    cpu::pin_current_thread(WRITER_CPU).map_err(|e| err(&e))?;

    let ev = EventFd::new().map_err(|e| err(&e))?;
    let stamp = Arc::new(AtomicU64::new(0));
    let s = stamp.clone();
    h.register(ev.as_fd(), SourceKind::Vfio, move |_: &IntrEvent| {
        s.store(tsc::read(), Ordering::Release);
    })
    .map_err(|e| err(&e))?;
    std::thread::sleep(Duration::from_millis(20));
    let mut lat = Vec::with_capacity(iters);
    for _ in 0..iters {
        stamp.store(0, Ordering::Relaxed);
        let t0 = tsc::read();
        ev.signal().map_err(|e| err(&e))?;
        let t1 = loop {
            let t = stamp.load(Ordering::Acquire);
            if t != 0 {
                break t;
            }
            std::hint::spin_loop();
        };
        lat.push(t1.saturating_sub(t0));
        spin_for(Duration::from_micros(100));
    }
    lat.sort_unstable();

    let idle = EventFd::new().map_err(|e| err(&e))?;
    let t0 = tsc::read();
    for _ in 0..pairs {
        let r = h
            .register(idle.as_fd(), SourceKind::Vfio, |_: &IntrEvent| {})
            .map_err(|e| err(&e))?;
        h.unregister(r).map_err(|e| err(&e))?;
    }
    let per_pair = (tsc::read() - t0) as f64 * ns_per_tick / pairs as f64;
    thread.shutdown().map_err(|e| err(&e))?;
    Ok(Figures {
        p50_ns: percentile(&lat, 0.5) as f64 * ns_per_tick,
        p99_ns: percentile(&lat, 0.99) as f64 * ns_per_tick,
        regunreg_ns: per_pair,
    })
}

/// Runs [`rdk`] on a thread of its own: the pinning stays there, and the DPDK child started
/// from the main thread inherits the whole CPU set, as when it is run from a shell (a child
/// pinned to CPU 1 would put the EAL's interrupt thread on the writer's CPU).
fn rdk_pinned(
    iters: usize,
    pairs: usize,
    ns_per_tick: f64,
    config: IntrConfig,
) -> Result<Figures, String> {
    std::thread::spawn(move || rdk(iters, pairs, ns_per_tick, config))
        .join()
        .map_err(|_| "the rdk measurement thread panicked".to_string())?
}

fn dpdk(bin: &Path, iters: usize, pairs: usize) -> Result<Figures, String> {
    let prefix = format!("rdk_intr_perf_{}", std::process::id());
    let out = Command::new(bin)
        .args([
            "-l",
            &WRITER_CPU.to_string(),
            "--no-pci",
            "--no-huge",
            "-m",
            "64",
        ])
        .args(["--file-prefix", &prefix, "--log-level", "1", "--"])
        .args([iters.to_string(), pairs.to_string()])
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "intr_perf_dpdk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut f = Figures {
        p50_ns: f64::NAN,
        p99_ns: f64::NAN,
        regunreg_ns: f64::NAN,
    };
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["latency_ns", "p50", a, "p99", b] => {
                f.p50_ns = a.parse().unwrap_or(f64::NAN);
                f.p99_ns = b.parse().unwrap_or(f64::NAN);
            }
            ["regunreg_ns", a] => f.regunreg_ns = a.parse().unwrap_or(f64::NAN),
            _ => {}
        }
    }
    if f.p50_ns.is_nan() || f.regunreg_ns.is_nan() {
        return Err(format!("cannot parse intr_perf_dpdk output: {text}"));
    }
    Ok(f)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (iters, pairs, rounds) = if args.quick {
        (1000, 5000, 1)
    } else {
        (args.iters.max(100), args.pairs.max(100), args.rounds.max(1))
    };
    let ci = anchor::is_ci();
    let mhz = tsc::mhz();
    let ns_per_tick = 1000.0 / mhz;
    println!(
        "intr_perf: {} ({} CPUs), TSC {mhz:.0} MHz; writer on CPU {WRITER_CPU}, interrupt thread on CPU {INTR_CPU}",
        cpu::cpu_model(),
        cpu::online_cpus()
    );
    if cpu::online_cpus() < 2 {
        eprintln!("intr_perf needs 2 CPUs");
        return ExitCode::FAILURE;
    }

    let mut dpdk_bin = None;
    let tmp = TempDir::new("rdk-intr-perf");
    if !args.no_dpdk {
        let mut missing: Vec<Missing> = anchor::missing_for_c_build();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/intr_perf_dpdk.c");
        if missing.is_empty() {
            match &tmp {
                Ok(dir) => {
                    let bin = dir.path().join("intr_perf_dpdk");
                    match anchor::build_c(&src, &bin) {
                        Ok(line) => {
                            println!("DPDK harness: {line}");
                            dpdk_bin = Some(bin);
                        }
                        Err(e) => missing.push(Missing::new("the DPDK harness build", e)),
                    }
                }
                Err(e) => missing.push(Missing::new("a temporary directory", e.to_string())),
            }
        }
        if !missing.is_empty() {
            for m in &missing {
                eprintln!("missing: {m}");
            }
            if ci {
                eprintln!("CI=true: a missing prerequisite is a failure");
                return ExitCode::FAILURE;
            }
            eprintln!("measuring rdk only");
        }
    }

    // Rounds alternate the order (rdk, DPDK, busy-poll rdk; then the reverse), so neither
    // side always runs first on a CPU that has just been idle; each figure is the median over
    // rounds.
    let busy = IntrConfig {
        busy_poll: Some(BUSY_POLL),
    };
    let (mut ours, mut spinning, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut steps = [0, 1, 2];
        if round % 2 == 1 {
            steps.reverse();
        }
        for step in steps {
            let r = match step {
                0 => rdk_pinned(iters, pairs, ns_per_tick, IntrConfig::default())
                    .map(|f| ours.push(f)),
                1 => rdk_pinned(iters, pairs, ns_per_tick, busy).map(|f| spinning.push(f)),
                _ => match dpdk_bin.as_deref() {
                    Some(b) => dpdk(b, iters, pairs).map(|f| theirs.push(f)),
                    None => Ok(()),
                },
            };
            if let Err(e) = r {
                eprintln!("round {round}: {e}");
                if step < 2 || ci {
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let (ours, spinning, theirs) = (median(&ours), median(&spinning), median(&theirs));
    let (Some(ours), Some(spinning)) = (ours, spinning) else {
        return ExitCode::FAILURE;
    };
    println!(
        "{:<44} {:>10} {:>10} {:>8}   (median of {rounds} rounds)",
        "figure (ns)", "rdk", "DPDK", "ratio"
    );
    let row = |name: &str, a: f64, b: Option<f64>| match b {
        Some(b) => println!("{name:<44} {a:>10.0} {b:>10.0} {:>8.2}", a / b),
        None => println!("{name:<44} {a:>10.0} {:>10} {:>8}", "-", "-"),
    };
    row(
        "wake-up latency p50 (eventfd -> callback)",
        ours.p50_ns,
        theirs.map(|t| t.p50_ns),
    );
    row("wake-up latency p99", ours.p99_ns, theirs.map(|t| t.p99_ns));
    row(
        "register + unregister, per pair",
        ours.regunreg_ns,
        theirs.map(|t| t.regunreg_ns),
    );
    println!(
        "rdk with IntrConfig {{ busy_poll: {BUSY_POLL:?} }} (the thread spins between events; \
         DPDK has no such mode):"
    );
    row(
        "wake-up latency p50, busy poll",
        spinning.p50_ns,
        theirs.map(|t| t.p50_ns),
    );
    row(
        "wake-up latency p99, busy poll",
        spinning.p99_ns,
        theirs.map(|t| t.p99_ns),
    );
    ExitCode::SUCCESS
}
