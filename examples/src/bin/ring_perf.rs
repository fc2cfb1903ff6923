//! ring_perf: rdk's ring against DPDK's `ring_perf_autotest`, measured in the same run.
//!
//! The rdk side reproduces `app/test/test_ring_perf.c` (DPDK 22.11) loop for loop: a ring of
//! 4096 slots; enqueue then dequeue on one core (single object, bursts and bulks of 8 and 32),
//! bulk dequeue from the empty ring, and bulks of 8 and 32 between two pinned cores (enqueue on
//! CPU 0, dequeue on CPU 1), for 8-byte and 16-byte objects, SP/SC and MP/MC, timed with
//! `rdtsc` around the same iteration counts. The DPDK side runs the anchors' command line
//! (`DPDK_TEST=ring_perf_autotest dpdk-test --no-pci -l 0-1 --in-memory`, needing root and 256
//! free 2 MiB hugepages, which it sets up and gives back). The two sides alternate `--reps`
//! times; the table shows medians, ranges and the ratio rdk/DPDK (lower is better), and the
//! last lines the headline targets with PASS or MISS.
//!
//! Usage: `cargo run --release -p rdk-examples --bin ring_perf [-- --reps N --no-dpdk --quick]`

use clap::Parser;
use rdk_core::ring::{BoxedSlots, Consumer, MpmcRing, Producer, Ring, Single, SpscRing};
use rdk_examples::dpdk_ring_perf::{self as drp, Case, Elem, Mode, Op};
use rdk_examples::{cpu, dpdk_anchor, tsc};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "rdk ring vs DPDK ring_perf_autotest, cycles per object, in one run")]
struct Args {
    /// Runs of each side, alternating rdk and DPDK; figures are medians over the runs
    /// [default: 5, or 1 with --quick].
    #[arg(long)]
    reps: Option<usize>,
    /// Measure rdk only (no DPDK, no root needed); ratios are then against the anchors'
    /// reference figures, not a same-run measurement.
    #[arg(long)]
    no_dpdk: bool,
    /// rdk loops 1/16 as long (a CI smoke run); DPDK's own iteration counts are fixed.
    #[arg(long)]
    quick: bool,
    /// The dpdk-test program.
    #[arg(long, default_value = "dpdk-test")]
    dpdk_test: PathBuf,
}

/// The headline targets: (case, rdk/DPDK ratio to stay at or under, the anchors' DPDK figure).
const TARGETS: [(Case, f64, f64); 3] = [
    (
        Case {
            elem: Elem::Ptr8,
            sync: Mode::SpSc,
            op: Op::Bulk(32),
        },
        0.9,
        1.36,
    ),
    (
        Case {
            elem: Elem::Ptr8,
            sync: Mode::MpMc,
            op: Op::Bulk(32),
        },
        0.9,
        1.81,
    ),
    (
        Case {
            elem: Elem::Ptr8,
            sync: Mode::SpSc,
            op: Op::TwoCoreBulk(32),
        },
        1.0,
        4.32,
    ),
];

/// An object type the benchmark moves: 8 bytes (DPDK's pointers) or 16 bytes.
trait Obj: Copy + Default + Send + Sync + 'static {
    const ELEM: Elem;
}
impl Obj for u64 {
    const ELEM: Elem = Elem::Ptr8;
}
impl Obj for [u64; 2] {
    const ELEM: Elem = Elem::Bytes16;
}

/// The enqueue side of a ring, however it is reached (SP handle or MP ring).
trait Enq<T> {
    fn one(&mut self, obj: T) -> bool;
    fn burst(&mut self, objs: &[T]) -> usize;
    fn bulk(&mut self, objs: &[T]) -> bool;
}

/// The dequeue side of a ring.
trait Deq<T> {
    fn one(&mut self) -> Option<T>;
    fn burst(&mut self, out: &mut [T]) -> usize;
    fn bulk(&mut self, out: &mut [T]) -> bool;
}

type Spsc<T> = SpscRing<T, BoxedSlots<T>>;
type Mpmc<T> = MpmcRing<T, BoxedSlots<T>>;

impl<T: Obj> Enq<T> for Producer<T, Single, BoxedSlots<T>, &Spsc<T>> {
    #[inline(always)]
    fn one(&mut self, obj: T) -> bool {
        self.enqueue(obj).is_ok()
    }
    #[inline(always)]
    fn burst(&mut self, objs: &[T]) -> usize {
        self.enqueue_burst(objs)
    }
    #[inline(always)]
    fn bulk(&mut self, objs: &[T]) -> bool {
        self.enqueue_bulk(objs)
    }
}

impl<T: Obj> Deq<T> for Consumer<T, Single, BoxedSlots<T>, &Spsc<T>> {
    #[inline(always)]
    fn one(&mut self) -> Option<T> {
        self.dequeue()
    }
    #[inline(always)]
    fn burst(&mut self, out: &mut [T]) -> usize {
        self.dequeue_burst(out)
    }
    #[inline(always)]
    fn bulk(&mut self, out: &mut [T]) -> bool {
        self.dequeue_bulk(out)
    }
}

impl<T: Obj> Enq<T> for &Mpmc<T> {
    #[inline(always)]
    fn one(&mut self, obj: T) -> bool {
        self.enqueue(obj).is_ok()
    }
    #[inline(always)]
    fn burst(&mut self, objs: &[T]) -> usize {
        self.enqueue_burst(objs)
    }
    #[inline(always)]
    fn bulk(&mut self, objs: &[T]) -> bool {
        self.enqueue_bulk(objs)
    }
}

impl<T: Obj> Deq<T> for &Mpmc<T> {
    #[inline(always)]
    fn one(&mut self) -> Option<T> {
        self.dequeue()
    }
    #[inline(always)]
    fn burst(&mut self, out: &mut [T]) -> usize {
        self.dequeue_burst(out)
    }
    #[inline(always)]
    fn bulk(&mut self, out: &mut [T]) -> bool {
        self.dequeue_bulk(out)
    }
}

/// `test_single_enqueue_dequeue`: cycles per enqueue+dequeue of one object.
#[inline(never)]
fn single<T: Obj>(e: &mut impl Enq<T>, d: &mut impl Deq<T>, iters: u64) -> f64 {
    let obj = black_box(T::default());
    let t0 = tsc::read();
    for _ in 0..iters {
        e.one(obj);
        black_box(d.one());
    }
    (tsc::read() - t0) as f64 / iters as f64
}

/// `test_burst_bulk_enqueue_dequeue`: cycles per object of enqueue n + dequeue n, by bulk
/// (`BULK`) or burst. `n` comes through `black_box`, like DPDK's `volatile` sizes, so the
/// loop cannot be specialised for it.
#[inline(never)]
fn enq_deq<const BULK: bool, T: Obj>(
    e: &mut impl Enq<T>,
    d: &mut impl Deq<T>,
    buf: &mut [T],
    n: usize,
    iters: u64,
) -> f64 {
    let n = black_box(n);
    let buf = &mut buf[..n];
    let t0 = tsc::read();
    for _ in 0..iters {
        if BULK {
            e.bulk(buf);
            d.bulk(buf);
        } else {
            e.burst(buf);
            d.burst(buf);
        }
    }
    let cycles = tsc::read() - t0;
    black_box(buf);
    cycles as f64 / (iters * n as u64) as f64
}

/// `test_empty_dequeue`: cycles per bulk-dequeue call on the empty ring.
#[inline(never)]
fn empty_deq<T: Obj>(d: &mut impl Deq<T>, buf: &mut [T], n: usize, iters: u64) -> f64 {
    let n = black_box(n);
    let buf = &mut buf[..n];
    let t0 = tsc::read();
    for _ in 0..iters {
        black_box(d.bulk(buf));
    }
    (tsc::read() - t0) as f64 / iters as f64
}

/// One side of `enqueue_dequeue_bulk_helper`: meets the other side, then moves `iters` bulks of
/// `n`, spinning while the ring is full (empty); returns its cycles per object.
#[inline(never)]
fn two_core_side<T: Obj>(
    start: &AtomicU32,
    n: usize,
    iters: u64,
    mut op: impl FnMut(&mut [T]) -> bool,
) -> f64 {
    let mut buf = vec![T::default(); n];
    start.fetch_add(1, Ordering::AcqRel);
    while start.load(Ordering::Acquire) != 2 {
        std::hint::spin_loop();
    }
    let n = black_box(n);
    let t0 = tsc::read();
    for _ in 0..iters {
        while !op(&mut buf[..n]) {
            std::hint::spin_loop();
        }
    }
    let cycles = tsc::read() - t0;
    black_box(&buf);
    cycles as f64 / (iters * n as u64) as f64
}

/// `run_on_core_pair`: enqueue on this thread (pinned to CPU 0), dequeue on a thread pinned to
/// CPU 1; the figure is the two sides' cycles per object added up, as DPDK prints it.
fn two_core<T: Obj, E: Enq<T> + Send, D: Deq<T> + Send>(
    mut e: E,
    mut d: D,
    n: usize,
    iters: u64,
) -> f64 {
    let start = AtomicU32::new(0);
    std::thread::scope(|s| {
        let deq = s.spawn(|| {
            cpu::pin_current_thread(1).expect("pin the dequeue thread to CPU 1");
            two_core_side::<T>(&start, n, iters, |b| d.bulk(b))
        });
        let enq = two_core_side::<T>(&start, n, iters, |b| e.bulk(b));
        enq + deq.join().expect("dequeue thread")
    })
}

/// Fills and drains a fresh ring once so its pages are touched before anything is timed.
fn prefault<T: Obj>(e: &mut impl Enq<T>, d: &mut impl Deq<T>) {
    let mut buf = vec![T::default(); drp::RING_SIZE - 1];
    assert!(e.bulk(&buf), "a fresh ring takes its capacity");
    assert!(d.bulk(&mut buf));
}

fn new_spsc<T: Obj>() -> Spsc<T> {
    Ring::with_slots(BoxedSlots::new(drp::RING_SIZE), drp::RING_SIZE - 1).expect("ring")
}

fn new_mpmc<T: Obj>() -> Mpmc<T> {
    Ring::with_slots(BoxedSlots::new(drp::RING_SIZE), drp::RING_SIZE - 1).expect("ring")
}

/// One pass over the matrix for object type `T`, `div` times shorter than DPDK's loops.
fn rdk_pass<T: Obj>(div: u64, two_cpus: bool, out: &mut HashMap<Case, f64>) {
    let case = |sync, op| Case {
        elem: T::ELEM,
        sync,
        op,
    };
    let mut buf = vec![T::default(); 32];
    let spsc = new_spsc::<T>();
    let mpmc = new_mpmc::<T>();
    {
        let mut p = Ring::producer(&spsc).expect("SP handle");
        let mut c = Ring::consumer(&spsc).expect("SC handle");
        let (mut mp, mut mc) = (&mpmc, &mpmc);
        prefault(&mut p, &mut c);
        prefault(&mut mp, &mut mc);
        let single_iters = drp::SINGLE_ITERS / div;
        out.insert(
            case(Mode::SpSc, Op::Single),
            single(&mut p, &mut c, single_iters),
        );
        out.insert(
            case(Mode::MpMc, Op::Single),
            single(&mut mp, &mut mc, single_iters),
        );
        let it = drp::BULK_ITERS / div;
        for n in drp::SIZES {
            let k = n as usize;
            let v = enq_deq::<false, T>(&mut p, &mut c, &mut buf, k, it);
            out.insert(case(Mode::SpSc, Op::Burst(n)), v);
            let v = enq_deq::<false, T>(&mut mp, &mut mc, &mut buf, k, it);
            out.insert(case(Mode::MpMc, Op::Burst(n)), v);
        }
        for n in drp::SIZES {
            let k = n as usize;
            let v = enq_deq::<true, T>(&mut p, &mut c, &mut buf, k, it);
            out.insert(case(Mode::SpSc, Op::Bulk(n)), v);
            let v = enq_deq::<true, T>(&mut mp, &mut mc, &mut buf, k, it);
            out.insert(case(Mode::MpMc, Op::Bulk(n)), v);
        }
        let n = drp::SIZES[0];
        let it = drp::EMPTY_ITERS / div;
        let v = empty_deq(&mut c, &mut buf, n as usize, it);
        out.insert(case(Mode::SpSc, Op::EmptyDequeue(n)), v);
        let v = empty_deq(&mut mc, &mut buf, n as usize, it);
        out.insert(case(Mode::MpMc, Op::EmptyDequeue(n)), v);
    }
    if !two_cpus {
        return;
    }
    // Fixed at DPDK's 2^15 even with --quick: the run is short already.
    for n in drp::SIZES {
        let (p, c) = (
            Ring::producer(&spsc).unwrap(),
            Ring::consumer(&spsc).unwrap(),
        );
        let v = two_core(p, c, n as usize, drp::TWO_CORE_ITERS);
        out.insert(case(Mode::SpSc, Op::TwoCoreBulk(n)), v);
        let v = two_core(&mpmc, &mpmc, n as usize, drp::TWO_CORE_ITERS);
        out.insert(case(Mode::MpMc, Op::TwoCoreBulk(n)), v);
    }
}

/// One rdk pass over the whole matrix, on a thread pinned to CPU 0 (DPDK's main lcore), so the
/// process itself (and the dpdk-test it starts) keeps its full CPU mask.
fn rdk_run(div: u64, two_cpus: bool) -> HashMap<Case, f64> {
    std::thread::spawn(move || {
        cpu::pin_current_thread(0).expect("pin the rdk thread to CPU 0");
        let mut out = HashMap::new();
        rdk_pass::<u64>(div, two_cpus, &mut out);
        rdk_pass::<[u64; 2]>(div, two_cpus, &mut out);
        out
    })
    .join()
    .expect("rdk measurement thread")
}

/// CPU use by anyone but this process and its children (dpdk-test) over an interval, in CPUs
/// (1.0 = one CPU busy throughout): everything `/proc/stat` counts minus our `getrusage`.
struct Foreign {
    all: cpu::ForeignCpu,
    ours0: f64,
    t0: Instant,
}

impl Foreign {
    fn start() -> Self {
        Self {
            all: cpu::ForeignCpu::all(),
            ours0: own_cpu_secs(),
            t0: Instant::now(),
        }
    }

    fn stop(&self) -> f64 {
        let busy = self.all.stop();
        let wall = self.t0.elapsed().as_secs_f64().max(1e-3);
        (busy - (own_cpu_secs() - self.ours0) / wall).max(0.0)
    }
}

/// CPU seconds used by this process and its reaped children.
fn own_cpu_secs() -> f64 {
    let secs = |who| {
        // SAFETY: rusage is plain data; getrusage only writes the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage.
        if unsafe { libc::getrusage(who, &mut ru) } != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    secs(libc::RUSAGE_SELF) + secs(libc::RUSAGE_CHILDREN)
}

/// Median and range of some figures.
#[derive(Clone, Copy, Debug)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(v: &[f64]) -> Option<Stat> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    let median = if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    };
    Some(Stat {
        median,
        min: s[0],
        max: s[s.len() - 1],
    })
}

/// What the DPDK side needs and this machine lacks; also grows the hugepage pool (given back
/// when the returned guard drops).
fn dpdk_prereqs(
    dpdk_test: &Path,
) -> Result<(PathBuf, rdk_os_linux::PoolGrowth), Vec<dpdk_anchor::Missing>> {
    let mut missing = Vec::new();
    let bin = if dpdk_test.components().count() > 1 {
        dpdk_test.is_file().then(|| dpdk_test.to_owned())
    } else {
        dpdk_anchor::find_in_path(&dpdk_test.to_string_lossy())
    };
    if bin.is_none() {
        missing.push(dpdk_anchor::Missing::new(
            format!("{} (not found)", dpdk_test.display()),
            "apt-get install dpdk: Debian's DPDK 22.11 ships dpdk-test",
        ));
    }
    if !dpdk_anchor::is_root() {
        missing.push(dpdk_anchor::Missing::new(
            "root",
            "DPDK needs root for hugepages; run as root, or pass --no-dpdk",
        ));
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    match dpdk_anchor::ensure_hugepages(dpdk_anchor::ANCHOR_HUGEPAGES) {
        Ok(g) => Ok((bin.unwrap_or_default(), g)),
        Err(e) => Err(vec![dpdk_anchor::Missing::new(
            format!("{} free 2 MiB hugepages", dpdk_anchor::ANCHOR_HUGEPAGES),
            format!("could not grow the pool: {e}"),
        )]),
    }
}

/// The anchors' reference figures (`reference/ring_perf_summary.txt`), for `--no-dpdk`.
fn reference_figures() -> Option<(PathBuf, HashMap<Case, f64>)> {
    let f = dpdk_anchor::anchor_file("reference/ring_perf_summary.txt").ok()?;
    let text = std::fs::read_to_string(&f).ok()?;
    Some((f, drp::parse_summary(&text).into_iter().collect()))
}

fn fmt_stat(s: Option<Stat>) -> String {
    match s {
        Some(s) => format!("{:>7.2} ({:.2}..{:.2})", s.median, s.min, s.max),
        None => format!("{:>7} {:<12}", "-", ""),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 5 }).max(1);
    let div = if args.quick { 16 } else { 1 };
    let ci = dpdk_anchor::is_ci();
    let two_cpus = cpu::online_cpus() >= 2;
    let t_start = Instant::now();

    println!("# ring_perf: rdk ring vs DPDK ring_perf_autotest (cycles per object, rdtsc)");
    println!(
        "# cpu: {} x{}, TSC {:.0} MHz, loadavg {}",
        cpu::cpu_model(),
        cpu::online_cpus(),
        tsc::mhz(),
        cpu::loadavg()
    );
    println!(
        "# rdk: ring of {} slots (BoxedSlots), u64 and [u64; 2]; 1-core cases on CPU 0, \
         2-core cases enqueue on CPU 0 / dequeue on CPU 1{}",
        drp::RING_SIZE,
        if args.quick {
            "; --quick: 1-core loops 1/16 of DPDK's"
        } else {
            ""
        }
    );
    if !two_cpus {
        println!("# only one CPU: the 2-core cases are not run");
    }

    let mut dpdk: Option<(PathBuf, rdk_os_linux::PoolGrowth)> = None;
    if args.no_dpdk {
        println!("# --no-dpdk: DPDK side not run; ratios are against the anchors' reference");
    } else {
        match dpdk_prereqs(&args.dpdk_test) {
            Ok(d) => {
                println!("# dpdk: {}", drp::command_line(&d.0));
                if d.1.added() > 0 {
                    println!(
                        "# hugepages: added {} 2 MiB pages for DPDK (given back at exit)",
                        d.1.added()
                    );
                }
                dpdk = Some(d);
            }
            Err(missing) => {
                println!("# DPDK side cannot run; missing:");
                for m in &missing {
                    println!("#   - {m}");
                }
                if ci {
                    println!("# CI=true: a missing prerequisite is a failure");
                    return ExitCode::FAILURE;
                }
                println!("# measuring rdk only; ratios are against the anchors' reference");
            }
        }
    }

    let mut rdk_figs: HashMap<Case, Vec<f64>> = HashMap::new();
    let mut dpdk_figs: HashMap<Case, Vec<f64>> = HashMap::new();
    let mut busy_notes = Vec::new();
    for rep in 1..=reps {
        let q = cpu::wait_quiet(Duration::from_secs(if args.quick { 2 } else { 10 }), 0.3);
        if !q.quiet {
            busy_notes.push(format!(
                "rep {rep}: {:.1} CPUs busy beforehand (waited {} s)",
                q.busy,
                q.waited.as_secs()
            ));
        }
        let t = Instant::now();
        let foreign = Foreign::start();
        for (c, v) in rdk_run(div, two_cpus) {
            rdk_figs.entry(c).or_default().push(v);
        }
        let f = foreign.stop();
        eprintln!(
            "[{:>5.1}s] rep {rep}/{reps}: rdk pass took {:.1} s (foreign CPU {f:.2})",
            t_start.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        if f > 0.25 {
            busy_notes.push(format!(
                "rep {rep}: other processes used {f:.2} CPUs during rdk"
            ));
        }
        if let Some((bin, _)) = &dpdk {
            let t = Instant::now();
            let foreign = Foreign::start();
            match drp::run(bin, Duration::from_secs(180)) {
                Ok(text) => {
                    for (c, v) in drp::parse(&text) {
                        dpdk_figs.entry(c).or_default().push(v);
                    }
                }
                Err(e) => {
                    println!("# DPDK run {rep} failed: {e}");
                    if ci {
                        return ExitCode::FAILURE;
                    }
                }
            }
            let f = foreign.stop();
            eprintln!(
                "[{:>5.1}s] rep {rep}/{reps}: dpdk-test took {:.1} s (foreign CPU {f:.2})",
                t_start.elapsed().as_secs_f64(),
                t.elapsed().as_secs_f64()
            );
            if f > 0.25 {
                busy_notes.push(format!(
                    "rep {rep}: other processes used {f:.2} CPUs during DPDK"
                ));
            }
        }
    }
    // Give the hugepages back before printing.
    let same_run = dpdk.is_some() && !dpdk_figs.is_empty();
    drop(dpdk);

    let reference = if same_run { None } else { reference_figures() };
    let dpdk_of = |c: &Case| -> Option<Stat> {
        if same_run {
            stat(dpdk_figs.get(c).map_or(&[][..], |v| &v[..]))
        } else {
            let v = *reference.as_ref()?.1.get(c)?;
            Some(Stat {
                median: v,
                min: v,
                max: v,
            })
        }
    };
    let dpdk_label = if same_run {
        format!(
            "DPDK cyc/obj, {} run(s)",
            dpdk_figs.values().map(Vec::len).max().unwrap_or(0)
        )
    } else {
        "DPDK (anchor reference)".to_owned()
    };

    println!();
    if let (false, Some((f, _))) = (same_run, &reference) {
        println!(
            "# DPDK figures: {} (another day; not this run)",
            f.display()
        );
    }
    let rdk_of = |c: &Case| stat(rdk_figs.get(c).map_or(&[][..], |v| &v[..]));
    let ratio = |r: Option<Stat>, d: Option<Stat>| match (r, d) {
        (Some(r), Some(d)) if d.median > 0.0 => Some(r.median / d.median),
        _ => None,
    };
    let fmt_ratio = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.2}x"));
    println!(
        "{:<42} | {:<26} | {:<26} | rdk/DPDK",
        "case",
        format!("rdk cyc/obj, {reps} run(s)"),
        dpdk_label,
    );
    println!("{}", "-".repeat(42 + 3 + 26 + 3 + 26 + 3 + 8));
    for c in drp::matrix() {
        let (r, d) = (rdk_of(&c), dpdk_of(&c));
        println!(
            "{:<42} | {:<26} | {:<26} | {}",
            c.to_string(),
            fmt_stat(r),
            fmt_stat(d),
            fmt_ratio(ratio(r, d))
        );
    }
    println!();
    println!("# 2-core figures = enqueue core + dequeue core cycles/object (DPDK's unit); DPDK's");
    println!(
        "# run only 2^15 iterations and are bimodal on a VM: compare medians, mind the range."
    );
    for n in &busy_notes {
        println!("# warning: {n}");
    }
    println!("# total time {:.0} s", t_start.elapsed().as_secs_f64());
    println!();
    let against = if same_run {
        "DPDK (this run)"
    } else {
        "DPDK (anchor reference)"
    };
    for (c, max_ratio, anchor) in TARGETS {
        let (r, d) = (rdk_of(&c), dpdk_of(&c));
        let x = ratio(r, d);
        let verdict = match x {
            Some(x) if x <= max_ratio => "PASS",
            Some(_) => "MISS",
            None => "n/a",
        };
        let med = |s: Option<Stat>| s.map_or("-".to_owned(), |s| format!("{:.2}", s.median));
        println!(
            "target {:<32} rdk {} vs {against} {} cyc/obj = {} (target <= {max_ratio:.1}x; \
             anchor DPDK {anchor}) {verdict}",
            c.to_string().trim_start(),
            med(r),
            med(d),
            fmt_ratio(x)
        );
    }
    ExitCode::SUCCESS
}
