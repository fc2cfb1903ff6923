//! `mempool_perf`: rdk's mempool get/put throughput next to DPDK's, and bytes per packet mbuf.
//!
//! Run: `cargo run --release -p rdk-examples --bin mempool_perf` (as root, for hugepages and
//! DPDK). One invocation measures both sides on the same CPUs:
//!
//! - **rdk**: the pools and the loop of `../shared/dpdk-anchors/mempool_perf.c` (DPDK 22.11's
//!   `mempool_perf_autotest`, reduced grid) reproduced with rdk's [`Mempool`]: 2048-byte
//!   objects, `2 * (512 + 512) - 1` of them (DPDK sizes its pools for its 2 lcores for every
//!   case), no cache (get/put straight on the pool's ring) or one 512-object [`MempoolCache`]
//!   per worker, a loop that gets `keep` objects in bulks of `bulk` and puts them back,
//!   65536 objects per loop call, workers pinned to CPU 0 (and 1) and started together.
//!   Rate = objects got and put back per second, summed over cores, with the harness's
//!   formula (loop calls begun before the deadline × 65536 / seconds).
//! - **DPDK**: `mempool_perf.c` built with `gcc -O3 … $(pkg-config --cflags --libs libdpdk)` and
//!   run as `mempool_perf --no-pci -l 0-1 --in-memory -- TIME_S`; its fixed grid is cache
//!   {0, 512} × cores {1, 2} × bulk {1, 4, 32} × keep {32, 128}.
//!
//! The two sides alternate in rounds (rdk then DPDK, then DPDK then rdk, …). Before each run
//! the benchmark waits (a while) for quiet CPUs, and it measures the CPU time other processes
//! used during every case; a case so disturbed is measured again (`--retries`, as the anchors
//! re-run a disturbed measurement). Each side reports its best undisturbed figure per case.
//!
//! The memory section compares bytes per packet mbuf of a default packet pool (8191 mbufs,
//! 128-byte header + 128 headroom + 2048 data room, priv 0): rdk's from its
//! [`PktMbufPool::bytes_per_mbuf`] and the DMA memory the pool asked for, DPDK's measured by a
//! small C program (embedded below, built like the harness) that creates the pool with
//! `rte_pktmbuf_pool_create` and reports its object layout, ring and memzones.
//!
//! Flags: `--time-s S` per case (default 2, like the anchor), `--quick` (0.3 s, headline grid,
//! one round: a CI smoke run), `--rounds N`, `--no-dpdk`, `--case C,K,B,P` (only that rdk
//! case; for profiling), `--quiet-wait-s S`. Under `CI=true` a missing prerequisite (root, gcc,
//! pkg-config, libdpdk, hugepages, the anchors) fails the run, and so does a DPDK side that
//! fails.

use clap::Parser;
use rdk_core::mbuf::{MbufCache, PktMbufPool, PktMbufPoolConfig};
use rdk_core::mempool::{Mempool, MempoolCache, MempoolConfig, ObjPtr, CACHE_MAX_SIZE};
use rdk_core::os::{DmaAlloc, DmaError, DmaRegion, DmaRequest};
use rdk_examples::cpu::{self, ForeignCpu};
use rdk_examples::dpdk_anchor::{self as anchor, Missing, TempDir};
use rdk_os_linux::{HugePageSize, IovaMode, LinuxOs, MemoryConfig, PoolGrowth};
use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Objects per loop call (`N` of the harness).
const N: usize = 65536;
/// Bytes per object (`MEMPOOL_ELT_SIZE`).
const ELT_SIZE: usize = 2048;
/// Largest `keep` (`MAX_KEEP`).
const MAX_KEEP: usize = 512;
/// The cache size of the cached pool (`RTE_MEMPOOL_CACHE_MAX_SIZE`).
const CACHE_SIZE: usize = CACHE_MAX_SIZE;
/// The CPUs workers run on, as DPDK's `-l 0-1` (main lcore on CPU 0, worker on CPU 1).
const CPUS: [usize; 2] = [0, 1];
/// Pool size: `lcores * (MAX_KEEP + cache max) - 1`, for DPDK's 2 lcores in every case.
const POOL_SIZE: usize = CPUS.len() * (MAX_KEEP + CACHE_SIZE) - 1;
/// A case during which other processes kept more than this many CPUs busy is marked as
/// disturbed (`lib.sh`'s `FOREIGN_MAX`: 25 % of a CPU).
const FOREIGN_MAX: f64 = 0.25;
/// Mbufs in the pool of the memory comparison (as `rte_pktmbuf_pool_create("m", 8191, …)`).
const MBUF_COUNT: usize = 8191;
/// Hugepages rdk's pools take at most (two ~4 MiB perf pools, one ~19 MiB mbuf pool).
const RDK_HUGEPAGES: u64 = 24;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "rdk mempool get/put throughput and bytes per mbuf, next to DPDK's")]
struct Args {
    /// Seconds per case on both sides (default 2, like the anchor; DPDK's harness takes whole
    /// seconds, so it runs this rounded up).
    #[arg(long)]
    time_s: Option<f64>,
    /// CI smoke run: 0.3 s per case, the headline grid, one round.
    #[arg(long)]
    quick: bool,
    /// Rounds; rdk and DPDK alternate (ABBA) and each side reports its best round per case
    /// (default 2, 1 with --quick).
    #[arg(long)]
    rounds: Option<u32>,
    /// Re-measure a case whose figure another process disturbed, up to this many times (rdk:
    /// that case; DPDK: its whole grid) (default 2, 0 with --quick).
    #[arg(long)]
    retries: Option<u32>,
    /// Measure rdk only.
    #[arg(long)]
    no_dpdk: bool,
    /// Only these rdk cases, as CACHE,CORES,BULK,KEEP (repeatable; for profiling one case).
    #[arg(long = "case", value_parser = parse_case)]
    only: Vec<Case>,
    /// Before each run, wait at most this long for the CPUs to be quiet (default 60, 5 with
    /// --quick).
    #[arg(long)]
    quiet_wait_s: Option<f64>,
}

/// One measurement configuration of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Case {
    cache: usize,
    cores: usize,
    bulk: usize,
    keep: usize,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cache={} cores={} bulk={} keep={}",
            self.cache, self.cores, self.bulk, self.keep
        )
    }
}

/// Parses `CACHE,CORES,BULK,KEEP`.
fn parse_case(s: &str) -> Result<Case, String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|f| f.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s}: {e}"))?;
    let [cache, cores, bulk, keep] = v[..] else {
        return Err(format!("{s}: want CACHE,CORES,BULK,KEEP"));
    };
    if cache != 0 && cache != CACHE_SIZE {
        return Err(format!(
            "cache {cache}: the pools have cache 0 or {CACHE_SIZE}"
        ));
    }
    if cores == 0 || cores > CPUS.len() {
        return Err(format!("cores {cores}: 1..={}", CPUS.len()));
    }
    check_shape(keep, bulk)?;
    Ok(Case {
        cache,
        cores,
        bulk,
        keep,
    })
}

/// The grid in DPDK's order; `headline` keeps bulk {1, 32} × keep 128 only.
fn grid(headline: bool) -> Vec<Case> {
    let (bulks, keeps): (&[usize], &[usize]) = if headline {
        (&[1, 32], &[128])
    } else {
        (&[1, 4, 32], &[32, 128])
    };
    let mut g = Vec::new();
    for cache in [0, CACHE_SIZE] {
        for cores in 1..=CPUS.len() {
            for &bulk in bulks {
                for &keep in keeps {
                    g.push(Case {
                        cache,
                        cores,
                        bulk,
                        keep,
                    });
                }
            }
        }
    }
    g
}

/// One measured figure: the rate and the foreign CPU use meanwhile.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rate: f64,
    foreign: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Rdk,
    Dpdk,
}

/// Where the loop gets objects and puts them back: the pool itself (the harness's cache=0,
/// `rte_mempool_generic_get(mp, …, NULL)`) or one core's cache.
trait Objects {
    fn get_bulk(&mut self, out: &mut [ObjPtr]) -> bool;
    /// # Safety
    /// The objects came from `get_bulk` of the same pool and are not used afterwards.
    unsafe fn put_bulk(&mut self, objs: &[ObjPtr]);
}

struct NoCache<'a>(&'a Mempool);

impl Objects for NoCache<'_> {
    #[inline(always)]
    fn get_bulk(&mut self, out: &mut [ObjPtr]) -> bool {
        self.0.get_bulk(out)
    }
    #[inline(always)]
    unsafe fn put_bulk(&mut self, objs: &[ObjPtr]) {
        // SAFETY: forwarded contract.
        unsafe { self.0.put_bulk(objs) }
    }
}

impl Objects for &mut MempoolCache {
    #[inline(always)]
    fn get_bulk(&mut self, out: &mut [ObjPtr]) -> bool {
        MempoolCache::get_bulk(self, out)
    }
    #[inline(always)]
    unsafe fn put_bulk(&mut self, objs: &[ObjPtr]) {
        // SAFETY: forwarded contract.
        unsafe { MempoolCache::put_bulk(self, objs) }
    }
}

/// The harness's `obj_table`, cache-line aligned as there (`__rte_cache_aligned`).
#[repr(C, align(64))]
struct Table([ObjPtr; MAX_KEEP]);

/// The harness's `test_loop`: `N / keep` times, get `keep` objects in bulks of `get`, then put
/// them back in bulks of `put`. False if a get failed.
#[inline(always)]
fn test_loop<O: Objects>(
    o: &mut O,
    table: &mut [ObjPtr; MAX_KEEP],
    keep: usize,
    get: usize,
    put: usize,
) -> bool {
    for _ in 0..N / keep {
        let mut idx = 0;
        while idx < keep {
            // SAFETY: check_shape: keep <= MAX_KEEP and get divides keep, so idx + get <= keep.
            let out = unsafe { table.get_unchecked_mut(idx..idx + get) };
            if !o.get_bulk(out) {
                return false;
            }
            idx += get;
        }
        let mut idx = 0;
        while idx < keep {
            // SAFETY: as above, for put; these objects were got just above and are not used
            // again until a later get overwrites the table.
            unsafe { o.put_bulk(table.get_unchecked(idx..idx + put)) };
            idx += put;
        }
    }
    black_box(&mut *table);
    true
}

/// The bounds `test_loop` relies on.
fn check_shape(keep: usize, bulk: usize) -> Result<(), String> {
    if keep == 0
        || keep > MAX_KEEP
        || bulk == 0
        || !keep.is_multiple_of(bulk)
        || !N.is_multiple_of(keep)
    {
        return Err(format!("bad case: keep {keep}, bulk {bulk}"));
    }
    Ok(())
}

/// One worker: loop calls until `time` has passed, like the harness's `per_lcore_test`.
/// Returns the objects counted (`N` per finished call), or `None` if a get failed.
fn per_core<O: Objects>(o: &mut O, case: Case, time: Duration) -> Option<u64> {
    let mut table = Table([ObjPtr::new(NonNull::dangling()); MAX_KEEP]);
    // Runtime values, as the harness's constant_n=0: nothing is specialised per case.
    let (keep, bulk) = (black_box(case.keep), black_box(case.bulk));
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < time {
        if !test_loop(o, &mut table.0, keep, bulk, bulk) {
            return None;
        }
        count += N as u64;
    }
    Some(count)
}

/// rdk's side: the two pools of the harness and one cache per CPU of the cached pool, kept for
/// the whole run (as DPDK's per-lcore default caches are).
struct RdkBench {
    // Field order is drop order: caches return their objects before the pools go.
    caches: Vec<MempoolCache>,
    no_cache: Mempool,
}

impl RdkBench {
    fn new<D: DmaAlloc>(os: &D) -> Result<Self, String> {
        let make = |name: &str| {
            Mempool::create(os, &MempoolConfig::new(name, POOL_SIZE, ELT_SIZE), |o| {
                // The harness's my_obj_init: zeroed object, its index in the first word.
                let idx = (o.index as u32).to_ne_bytes();
                o.obj[..4].copy_from_slice(&idx);
            })
            .map_err(|e| format!("rdk mempool {name}: {e}"))
        };
        let no_cache = make("perf_test_nocache")?;
        let cached = make("perf_test_cache")?;
        let caches = CPUS
            .iter()
            .map(|_| cached.cache(CACHE_SIZE))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("rdk mempool cache: {e}"))?;
        Ok(Self { caches, no_cache })
    }

    /// Runs one case on `case.cores` pinned threads started together; returns the rate.
    fn run(&mut self, case: Case, time: Duration) -> Result<Sample, String> {
        check_shape(case.keep, case.bulk)?;
        let start = AtomicBool::new(false);
        let ready = AtomicUsize::new(0);
        let no_cache = &self.no_cache;
        let (start, ready) = (&start, &ready);
        let (counts, foreign) = std::thread::scope(|s| {
            let workers: Vec<_> = self
                .caches
                .iter_mut()
                .zip(CPUS)
                .take(case.cores)
                .map(|(mut cache, cpu)| {
                    s.spawn(move || {
                        let pinned = cpu::pin_current_thread(cpu);
                        ready.fetch_add(1, Ordering::AcqRel);
                        pinned.map_err(|e| format!("pinning a worker to CPU {cpu}: {e}"))?;
                        while !start.load(Ordering::Acquire) {
                            std::hint::spin_loop();
                        }
                        let n = if case.cache == 0 {
                            per_core(&mut NoCache(no_cache), case, time)
                        } else {
                            per_core(&mut cache, case, time)
                        };
                        n.ok_or_else(|| format!("{case}: a get failed (pool exhausted)"))
                    })
                })
                .collect();
            while ready.load(Ordering::Acquire) < workers.len() {
                std::thread::yield_now();
            }
            let foreign = ForeignCpu::excluding_self();
            start.store(true, Ordering::Release);
            let counts: Vec<_> = workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Err("worker panicked".into())))
                .collect();
            (counts, foreign.stop())
        });
        let mut total = 0u64;
        for c in counts {
            total += c?;
        }
        Ok(Sample {
            rate: total as f64 / time.as_secs_f64(),
            foreign,
        })
    }
}

/// DPDK's side: the harness binary, built in a temporary directory.
struct DpdkBench {
    bin: std::path::PathBuf,
    build_line: String,
    time_s: u32,
}

impl DpdkBench {
    /// Runs the whole fixed grid once; returns each case's rate and the foreign CPU use
    /// during it (sampled between the harness's output lines).
    fn run(&self) -> Result<Vec<(Case, Sample)>, String> {
        let mut child = Command::new(&self.bin)
            .args(anchor::EAL_ARGS)
            .arg("--")
            .arg(self.time_s.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        let pid = child.id();
        let mut err = child.stderr.take().map(BufReader::new);
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        // A watchdog, in case the harness hangs: 24 cases, plus generous start-up time.
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let deadline = Duration::from_secs(u64::from(self.time_s) * 24 * 2 + 120);
        let watchdog = {
            let done = done.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                while !done.load(Ordering::Acquire) {
                    if t0.elapsed() > deadline {
                        // SAFETY: kill has no memory preconditions; `pid` is our child, not yet
                        // reaped (we wait for it only after `done` is set), so not reused.
                        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let mut out = Vec::new();
        let mut log = String::new();
        let mut foreign = ForeignCpu::excluding(pid);
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                log.push_str(&line);
                log.push('\n');
                if line.starts_with("# mempool ops:") {
                    foreign = ForeignCpu::excluding(pid);
                } else if let Some(case_rate) = parse_dpdk_line(&line) {
                    let f = foreign.stop();
                    foreign = ForeignCpu::excluding(pid);
                    out.push((
                        case_rate.0,
                        Sample {
                            rate: case_rate.1,
                            foreign: f,
                        },
                    ));
                }
            }
        }
        done.store(true, Ordering::Release);
        let status = child.wait().map_err(|e| format!("waiting for DPDK: {e}"))?;
        let _ = watchdog.join();
        let stderr = err_thread.join().unwrap_or_default();
        if !status.success() || out.is_empty() {
            return Err(format!(
                "DPDK harness failed ({status}); its output:\n{log}{stderr}"
            ));
        }
        Ok(out)
    }
}

/// Parses `mempool_autotest cache=C cores=K n_get_bulk=B n_put_bulk=B n_keep=K … rate_persec=R`.
fn parse_dpdk_line(line: &str) -> Option<(Case, f64)> {
    let rest = line.strip_prefix("mempool_autotest ")?;
    let mut kv = HashMap::new();
    for tok in rest.split_whitespace() {
        let (k, v) = tok.split_once('=')?;
        kv.insert(k, v.parse::<u64>().ok()?);
    }
    let get = |k: &str| kv.get(k).map(|&v| v as usize);
    let bulk = get("n_get_bulk")?;
    if get("n_put_bulk")? != bulk {
        return None;
    }
    Some((
        Case {
            cache: get("cache")?,
            cores: get("cores")?,
            bulk,
            keep: get("n_keep")?,
        },
        *kv.get("rate_persec")? as f64,
    ))
}

/// A [`DmaAlloc`] that adds up what it was asked for and what it handed out.
struct CountingDma<'a, D> {
    inner: &'a D,
    requested: Cell<usize>,
    mapped: Cell<usize>,
}

impl<D: DmaAlloc> DmaAlloc for CountingDma<'_, D> {
    type Region = D::Region;

    fn dma_alloc(&self, req: &DmaRequest<'_>) -> Result<D::Region, DmaError> {
        let r = self.inner.dma_alloc(req)?;
        self.requested.set(self.requested.get() + req.len);
        self.mapped.set(self.mapped.get() + r.len());
        Ok(r)
    }
}

/// rdk's memory per packet mbuf, from a default [`PktMbufPool`] of [`MBUF_COUNT`] mbufs.
struct RdkMem {
    /// [`PktMbufPool::bytes_per_mbuf`]: object stride plus its share of the ring's slots.
    per_mbuf: usize,
    /// The mempool's object stride.
    stride: usize,
    /// DMA bytes the pool asked for (header, ring, objects).
    requested: usize,
    /// DMA bytes it was given (whole pages).
    mapped: usize,
}

fn rdk_mbuf_memory<D: DmaAlloc>(os: &D) -> Result<RdkMem, String> {
    let counting = CountingDma {
        inner: os,
        requested: Cell::new(0),
        mapped: Cell::new(0),
    };
    let pool = PktMbufPool::create(&counting, &PktMbufPoolConfig::new("m", MBUF_COUNT))
        .map_err(|e| format!("rdk packet mbuf pool: {e}"))?;
    Ok(RdkMem {
        per_mbuf: pool.bytes_per_mbuf(),
        stride: pool.mempool().stride(),
        requested: counting.requested.get(),
        mapped: counting.mapped.get(),
    })
}

/// The C program that measures DPDK's memory per packet mbuf.
const DPDK_MEM_C: &str = r#"/* rdk mempool_perf: DPDK's memory per packet mbuf. Creates a default pktmbuf
 * pool and reports its object layout, its ring and every memzone it reserved. */
#include <stdio.h>
#include <string.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_memzone.h>
#include <rte_ring.h>

#define MAX_MZ 256
static char before[MAX_MZ][RTE_MEMZONE_NAMESIZE];
static unsigned int n_before;

static void note_mz(const struct rte_memzone *mz, void *arg)
{
	(void)arg;
	if (n_before < MAX_MZ)
		snprintf(before[n_before++], RTE_MEMZONE_NAMESIZE, "%s", mz->name);
}

static void new_mz(const struct rte_memzone *mz, void *arg)
{
	size_t *sum = arg;
	unsigned int i;

	for (i = 0; i < n_before; i++)
		if (strcmp(before[i], mz->name) == 0)
			return;
	printf("memzone name=%s len=%zu\n", mz->name, mz->len);
	*sum += mz->len;
}

static void chunk(struct rte_mempool *mp, void *arg, struct rte_mempool_memhdr *m,
		  unsigned int i)
{
	size_t *sum = arg;

	(void)mp;
	(void)i;
	*sum += m->len;
}

int main(int argc, char **argv)
{
	struct rte_mempool *mp;
	struct rte_mempool_objsz sz;
	struct rte_ring *r;
	size_t mz_bytes = 0, chunk_bytes = 0;
	uint32_t total;

	if (rte_eal_init(argc, argv) < 0)
		return 1;
	rte_memzone_walk(note_mz, NULL);
	mp = rte_pktmbuf_pool_create("m", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
	if (mp == NULL) {
		printf("error: rte_pktmbuf_pool_create: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	total = rte_mempool_calc_obj_size(mp->elt_size, mp->flags, &sz);
	rte_mempool_mem_iter(mp, chunk, &chunk_bytes);
	rte_memzone_walk(new_mz, &mz_bytes);
	r = mp->pool_data; /* the ring, for the default ring_mp_mc ops */
	printf("dpdk_mbuf_mem ops=%s count=%u cache=%u header_size=%u elt_size=%u "
	       "trailer_size=%u obj_total=%u calc_total=%u ring_size=%u ring_bytes=%zd "
	       "chunk_bytes=%zu memzone_bytes=%zu sizeof_mempool=%zu sizeof_cache=%zu "
	       "max_lcore=%d\n",
	       rte_mempool_get_ops(mp->ops_index)->name, mp->size, mp->cache_size,
	       mp->header_size, mp->elt_size, mp->trailer_size,
	       mp->header_size + mp->elt_size + mp->trailer_size, total, r->size,
	       rte_ring_get_memsize(r->size), chunk_bytes, mz_bytes,
	       sizeof(struct rte_mempool), sizeof(struct rte_mempool_cache), RTE_MAX_LCORE);
	rte_mempool_free(mp);
	rte_eal_cleanup();
	return 0;
}
"#;

/// DPDK's figures, as the C program printed them.
struct DpdkMem {
    fields: HashMap<String, String>,
    memzones: Vec<(String, usize)>,
}

impl DpdkMem {
    fn num(&self, k: &str) -> usize {
        self.fields.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

fn dpdk_mbuf_memory(dir: &Path) -> Result<DpdkMem, String> {
    let src = dir.join("mbuf_mem.c");
    let bin = dir.join("mbuf_mem");
    std::fs::write(&src, DPDK_MEM_C).map_err(|e| format!("writing {}: {e}", src.display()))?;
    anchor::build_c(&src, &bin)?;
    let out = Command::new(&bin)
        .args(anchor::EAL_ARGS)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut m = DpdkMem {
        fields: HashMap::new(),
        memzones: Vec::new(),
    };
    for line in text.lines() {
        let kv = |l: &str| -> HashMap<String, String> {
            l.split_whitespace()
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        if let Some(rest) = line.strip_prefix("memzone ") {
            let f = kv(rest);
            let name = f.get("name").cloned().unwrap_or_default();
            let len = f.get("len").and_then(|v| v.parse().ok()).unwrap_or(0);
            m.memzones.push((name, len));
        } else if let Some(rest) = line.strip_prefix("dpdk_mbuf_mem ") {
            m.fields = kv(rest);
        }
    }
    if !out.status.success() || m.fields.is_empty() {
        return Err(format!(
            "DPDK memory probe failed ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(m)
}

/// What the run collected.
#[derive(Default)]
struct Results {
    samples: HashMap<(Side, Case), Vec<Sample>>,
    warnings: Vec<String>,
    failures: Vec<String>,
}

impl Results {
    fn add(&mut self, side: Side, case: Case, s: Sample) {
        self.samples.entry((side, case)).or_default().push(s);
    }

    /// The best undisturbed figure, or the best disturbed one if all were (disturbance can
    /// raise a figure too: a preempted core contends less for the ring).
    fn best(&self, side: Side, case: Case) -> Option<Sample> {
        let v = self.samples.get(&(side, case))?;
        let best = |quiet_only: bool| {
            v.iter()
                .copied()
                .filter(|s| !quiet_only || s.foreign <= FOREIGN_MAX)
                .max_by(|a, b| a.rate.total_cmp(&b.rate))
        };
        best(true).or_else(|| best(false))
    }

    /// Whether the figure reported for `case` was disturbed by other processes.
    fn disturbed(&self, side: Side, case: Case) -> bool {
        self.best(side, case)
            .is_some_and(|s| s.foreign > FOREIGN_MAX)
    }
}

/// Runs rdk's `cases` once each, after waiting for quiet CPUs.
fn run_rdk(
    rdk: &mut RdkBench,
    cases: &[Case],
    time: Duration,
    label: &str,
    quiet_wait: Duration,
    res: &mut Results,
) -> Result<(), String> {
    settle(&format!("{label} rdk"), quiet_wait, res);
    for &case in cases {
        let s = rdk.run(case, time)?;
        eprintln!(
            "[{label} rdk ] {case}: {:.0} obj/s (foreign {:.2} CPU)",
            s.rate, s.foreign
        );
        res.add(Side::Rdk, case, s);
    }
    Ok(())
}

/// Runs DPDK's harness once (its whole grid), after waiting for quiet CPUs.
fn run_dpdk(d: &DpdkBench, label: &str, quiet_wait: Duration, res: &mut Results) {
    settle(&format!("{label} DPDK"), quiet_wait, res);
    eprintln!("[{label} DPDK] running the harness ...");
    match d.run() {
        Ok(v) => {
            for (case, s) in v {
                eprintln!(
                    "[{label} DPDK] {case}: {:.0} obj/s (foreign {:.2} CPU)",
                    s.rate, s.foreign
                );
                res.add(Side::Dpdk, case, s);
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            res.failures.push(e);
        }
    }
}

/// Waits for quiet CPUs before a run and records a warning if they did not get quiet.
fn settle(what: &str, max: Duration, res: &mut Results) {
    let threshold = 0.1 * cpu::online_cpus() as f64;
    let q = cpu::wait_quiet(max, threshold);
    if !q.quiet {
        let w = format!(
            "{what}: started on a busy machine ({:.2} CPUs busy after waiting {:.0} s; \
             loadavg {})",
            q.busy,
            q.waited.as_secs_f64(),
            cpu::loadavg()
        );
        eprintln!("warning: {w}");
        res.warnings.push(w);
    }
}

fn fmt_rate(r: Option<Sample>) -> String {
    r.map_or_else(|| "n/a".to_owned(), |s| format!("{:.0}", s.rate))
}

fn fmt_foreign(r: Option<Sample>) -> String {
    r.map_or_else(
        || "-".to_owned(),
        |s| {
            let mark = if s.foreign > FOREIGN_MAX { "!" } else { "" };
            format!("{:.2}{mark}", s.foreign)
        },
    )
}

fn ratio(a: Option<Sample>, b: Option<Sample>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.rate > 0.0 => Some(a.rate / b.rate),
        _ => None,
    }
}

/// The rdk memory source: hugepages (memfd, IOVA = PA like DPDK as root) when possible.
fn rdk_os(root: bool, notes: &mut Vec<String>) -> LinuxOs {
    if root {
        for mode in [IovaMode::Pa, IovaMode::Va] {
            match LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, mode)) {
                Ok(os) => {
                    notes.push(format!(
                        "rdk memory: rdk-os-linux LinuxOs, 2 MiB hugepages (memfd), {mode}"
                    ));
                    return os;
                }
                Err(e) => notes.push(format!("rdk memory: hugepages with {mode}: {e}")),
            }
        }
    }
    notes.push(
        "rdk memory: rdk-os-linux LinuxOs::plain() (4 KiB pages, not hugepages: not root)"
            .to_owned(),
    );
    LinuxOs::plain()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mempool_perf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let ci = anchor::is_ci();
    let time_s = args.time_s.unwrap_or(if args.quick { 0.3 } else { 2.0 });
    if !(time_s > 0.0 && time_s.is_finite()) {
        return Err(format!(
            "--time-s {time_s}: give a positive number of seconds"
        ));
    }
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 2 }).max(1);
    let retries = args.retries.unwrap_or(if args.quick { 0 } else { 2 });
    let quiet_wait = args
        .quiet_wait_s
        .unwrap_or(if args.quick { 5.0 } else { 60.0 });
    let quiet_wait = Duration::from_secs_f64(quiet_wait.clamp(0.0, 3600.0));
    let cases = if args.only.is_empty() {
        grid(args.quick)
    } else {
        args.only.clone()
    };
    let root = anchor::is_root();
    let mut res = Results::default();

    println!("mempool_perf: rdk mempool vs DPDK mempool (get+put throughput, bytes per mbuf)");
    println!(
        "machine: {} x {} CPUs; loadavg {}; {:.2} CPUs busy over 1 s before start",
        cpu::cpu_model(),
        cpu::online_cpus(),
        cpu::loadavg(),
        cpu::busy_cpus(Duration::from_secs(1))
    );

    // What the DPDK side needs.
    let mut missing: Vec<Missing> = Vec::new();
    let mut harness_src = None;
    if args.no_dpdk {
        println!("DPDK side: skipped (--no-dpdk); rdk figures only, no ratios");
    } else {
        missing = anchor::missing_for_c_build();
        match anchor::anchor_file("mempool_perf.c") {
            Ok(p) => harness_src = Some(p),
            Err(m) => missing.push(m),
        }
    }
    if args.no_dpdk && !root {
        missing.push(Missing::new(
            "root (rdk's pools use hugepages)",
            "run with sudo; using plain memory meanwhile",
        ));
    }

    // Hugepages for both sides, given back at the end (lib.sh's huge_setup/huge_cleanup).
    let mut growth: Option<PoolGrowth> = None;
    if root {
        let want = RDK_HUGEPAGES
            + if args.no_dpdk {
                0
            } else {
                anchor::ANCHOR_HUGEPAGES
            };
        match anchor::ensure_hugepages(want) {
            Ok(g) => {
                if g.added() > 0 {
                    println!(
                        "hugepages: added {} free 2 MiB pages for this run (given back at the end)",
                        g.added()
                    );
                }
                growth = Some(g);
            }
            Err(e) => missing.push(Missing::new(format!("{want} free 2 MiB hugepages"), e)),
        }
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
        println!("missing: {}", list.join("; "));
        if ci {
            println!("CI=true: a missing prerequisite fails the run");
            return Ok(ExitCode::FAILURE);
        }
    }
    let dpdk_ok = !args.no_dpdk && missing.is_empty();
    if !args.no_dpdk && !dpdk_ok {
        println!("DPDK side: skipped (see missing above); rdk figures only, no ratios");
    }

    let mut notes = Vec::new();
    let os = rdk_os(root && growth.is_some(), &mut notes);
    for n in &notes {
        println!("{n}");
    }
    let mut rdk = RdkBench::new(&os)?;

    let tmp = TempDir::new("rdk_mempool_perf").map_err(|e| format!("temp dir: {e}"))?;
    let dpdk = match (&harness_src, dpdk_ok) {
        (Some(src), true) => {
            let bin = tmp.path().join("mempool_perf");
            match anchor::build_c(src, &bin) {
                Ok(build_line) => Some(DpdkBench {
                    bin,
                    build_line,
                    time_s: time_s.ceil().max(1.0) as u32,
                }),
                Err(e) => {
                    res.failures.push(format!("building the DPDK harness: {e}"));
                    None
                }
            }
        }
        _ => None,
    };
    if let Some(d) = &dpdk {
        println!(
            "DPDK {}: {}",
            anchor::dpdk_version().unwrap_or_default(),
            d.build_line
        );
        println!(
            "DPDK run: mempool_perf {} -- {}",
            anchor::EAL_ARGS.join(" "),
            d.time_s
        );
        if f64::from(d.time_s) != time_s {
            println!(
                "note: DPDK's harness takes whole seconds: DPDK cases run {} s, rdk cases {time_s} s",
                d.time_s
            );
        }
    }
    println!(
        "plan: {} rdk cases x {time_s} s{}, {rounds} round(s) alternating rdk/DPDK, up to \
         {retries} re-run(s) of disturbed cases, workers on CPUs {:?}",
        cases.len(),
        if dpdk.is_some() {
            ", DPDK's 24-case grid"
        } else {
            ""
        },
        CPUS
    );

    let time = Duration::from_secs_f64(time_s);
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [Side::Rdk, Side::Dpdk]
        } else {
            [Side::Dpdk, Side::Rdk]
        };
        for side in order {
            let label = format!("round {round}");
            match (side, &dpdk) {
                (Side::Rdk, _) => run_rdk(&mut rdk, &cases, time, &label, quiet_wait, &mut res)?,
                (Side::Dpdk, Some(d)) => run_dpdk(d, &label, quiet_wait, &mut res),
                (Side::Dpdk, None) => {}
            }
        }
    }
    // As the anchors do, measure again what another process disturbed.
    for retry in 1..=retries {
        let label = format!("re-run {retry}");
        let again: Vec<Case> = cases
            .iter()
            .copied()
            .filter(|&c| res.disturbed(Side::Rdk, c))
            .collect();
        let dpdk_again = dpdk
            .as_ref()
            .filter(|_| cases.iter().any(|&c| res.disturbed(Side::Dpdk, c)));
        if again.is_empty() && dpdk_again.is_none() {
            break;
        }
        if !again.is_empty() {
            run_rdk(&mut rdk, &again, time, &label, quiet_wait, &mut res)?;
        }
        if let Some(d) = dpdk_again {
            run_dpdk(d, &label, quiet_wait, &mut res);
        }
    }

    // The table.
    println!();
    println!(
        "{:>5} {:>5} {:>4} {:>4} {:>14} {:>14} {:>9}  foreign CPUs rdk/DPDK",
        "cache", "cores", "bulk", "keep", "rdk obj/s", "DPDK obj/s", "rdk/DPDK"
    );
    for &case in &cases {
        let (r, d) = (res.best(Side::Rdk, case), res.best(Side::Dpdk, case));
        let q = ratio(r, d).map_or_else(|| "n/a".to_owned(), |q| format!("{q:.3}"));
        println!(
            "{:>5} {:>5} {:>4} {:>4} {:>14} {:>14} {:>9}  {}/{}",
            case.cache,
            case.cores,
            case.bulk,
            case.keep,
            fmt_rate(r),
            fmt_rate(d),
            q,
            fmt_foreign(r),
            fmt_foreign(d)
        );
    }
    println!(
        "(obj/s = objects got + put back per second, summed over cores; best of {rounds} \
         round(s) per side, re-runs included, undisturbed ones preferred; ratio: higher is \
         better; foreign CPUs: other processes' CPU use during that case, '!' = more than \
         {FOREIGN_MAX})"
    );

    // The target.
    println!();
    for cores in 1..=CPUS.len() {
        let case = Case {
            cache: CACHE_SIZE,
            cores,
            bulk: 32,
            keep: 128,
        };
        let (r, d) = (res.best(Side::Rdk, case), res.best(Side::Dpdk, case));
        let verdict = match ratio(r, d) {
            Some(q) if q >= 1.1 => format!("{q:.3}x  PASS (target >= 1.10x)"),
            Some(q) => format!("{q:.3}x  MISS (target >= 1.10x)"),
            None => "no DPDK figure in this run: not judged".to_owned(),
        };
        println!(
            "target: cache {CACHE_SIZE}, bulk 32, keep 128, {cores} core(s): rdk {} vs DPDK {} obj/s = {verdict}",
            fmt_rate(r),
            fmt_rate(d)
        );
    }

    // Memory per packet mbuf.
    println!();
    println!(
        "memory per packet mbuf (pool of {MBUF_COUNT}; 128 B mbuf header + 128 headroom + 2048 \
         data room, priv 0, 64-byte aligned):"
    );
    let rm = rdk_mbuf_memory(&os)?;
    let rdk_whole = rm.requested as f64 / MBUF_COUNT as f64;
    println!(
        "  rdk : PktMbufPool::bytes_per_mbuf() = {} B/mbuf (object stride {} + ring slots {}); \
         whole pool (header, ring, mbufs) {} B = {rdk_whole:.1} B/mbuf ({} B mapped in whole \
         pages); caches are separate objects, {} B each",
        rm.per_mbuf,
        rm.stride,
        rm.per_mbuf - rm.stride,
        rm.requested,
        rm.mapped,
        std::mem::size_of::<MbufCache>()
    );
    if dpdk.is_some() {
        match dpdk_mbuf_memory(tmp.path()) {
            Ok(m) => {
                let (obj, count) = (m.num("obj_total"), m.num("count").max(1));
                // The same formula as rdk's: object plus its share of the ring's slots.
                let slots = (m.num("ring_size") * std::mem::size_of::<usize>()).div_ceil(count);
                let dpdk_per = obj + slots;
                let mz = m.num("memzone_bytes");
                let dpdk_whole = mz as f64 / count as f64;
                let zones: Vec<String> =
                    m.memzones.iter().map(|(n, l)| format!("{n} {l}")).collect();
                println!(
                    "  DPDK: objhdr {} + elt {} + trailer {} = {obj} B + ring slots {slots} = \
                     {dpdk_per} B/mbuf; memzones ({}) {mz} B = {dpdk_whole:.1} B/mbuf (ring {} B \
                     for {} slots, ops {}; the pool header holds rte_mempool {} B + {} lcore \
                     caches x {} B, with padding)",
                    m.num("header_size"),
                    m.num("elt_size"),
                    m.num("trailer_size"),
                    zones.join(" + "),
                    m.num("ring_bytes"),
                    m.num("ring_size"),
                    m.fields.get("ops").map_or("?", |s| s.as_str()),
                    m.num("sizeof_mempool"),
                    m.num("max_lcore"),
                    m.num("sizeof_cache"),
                );
                println!(
                    "  rdk/DPDK: {:.3} per mbuf ({} vs {dpdk_per} B), {:.3} whole pool (lower is \
                     better)",
                    rm.per_mbuf as f64 / dpdk_per as f64,
                    rm.per_mbuf,
                    rdk_whole / dpdk_whole
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                res.failures.push(e);
            }
        }
    } else {
        println!("  DPDK: not measured in this run");
    }

    if !res.warnings.is_empty() || !res.failures.is_empty() {
        println!();
        for w in &res.warnings {
            println!("warning: {w}");
        }
        for f in &res.failures {
            println!("failure: {}", f.lines().next().unwrap_or(""));
        }
    }
    drop(rdk);
    drop(growth);
    if ci && !res.failures.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
