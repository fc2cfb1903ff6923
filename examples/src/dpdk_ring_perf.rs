//! DPDK's `ring_perf_autotest`: its case matrix, running it, and reading its output as cycles
//! per object.
//!
//! The matrix and units follow DPDK 22.11's `app/test/test_ring_perf.c` (as summarised by
//! `dpdk-anchors/summarize_ring_perf.py`): one ring of 4096 slots; per element size ("legacy"
//! 8-byte pointers and 16-byte elements), one core doing enqueue then dequeue of 1 object
//! (2^24 times), of n = 8 and 32 objects by burst and by bulk (2^23 times), a bulk dequeue of 8
//! from the empty ring (2^26 times), and two cores, one enqueuing and one dequeuing bulks of n
//! (2^15 times each), first SP/SC then MP/MC. What DPDK prints is turned into cycles per object:
//! single figures are already per object, one-core burst/bulk figures are per enqueue+dequeue
//! of n (so / n), the empty-dequeue figure is per call, and the two-core figure is the
//! enqueuing core's cycles per object plus the dequeuing core's.

use crate::dpdk_anchor::EAL_ARGS;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Slots in DPDK's test ring (`RING_SIZE`); capacity is one less.
pub const RING_SIZE: usize = 4096;
/// Iterations of the single-object loop (`1 << 24`).
pub const SINGLE_ITERS: u64 = 1 << 24;
/// Iterations of each one-core burst/bulk loop (`1 << 23`).
pub const BULK_ITERS: u64 = 1 << 23;
/// Iterations of the empty-ring dequeue loop (`1 << 26`).
pub const EMPTY_ITERS: u64 = 1 << 26;
/// Iterations of each two-core loop (`1 << 15`).
pub const TWO_CORE_ITERS: u64 = 1 << 15;
/// The burst/bulk sizes (`bulk_sizes[]`).
pub const SIZES: [u32; 2] = [8, 32];
/// The name `dpdk-test` knows the test by.
pub const TEST_NAME: &str = "ring_perf_autotest";

/// Element kind: DPDK's legacy API moves 8-byte pointers, its `_elem` API here 16-byte elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Elem {
    /// 8-byte objects (DPDK: `void *`; rdk: `u64`).
    Ptr8,
    /// 16-byte objects (DPDK: `esize` 16; rdk: `[u64; 2]`).
    Bytes16,
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Elem::Ptr8 => "8B",
            Elem::Bytes16 => "16B",
        })
    }
}

/// Sync mode of both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Single producer, single consumer.
    SpSc,
    /// Multi producer, multi consumer.
    MpMc,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::SpSc => "SP/SC",
            Mode::MpMc => "MP/MC",
        })
    }
}

/// What one case measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// One core: enqueue one object, dequeue it.
    Single,
    /// One core: burst-enqueue n, burst-dequeue n.
    Burst(u32),
    /// One core: bulk-enqueue n, bulk-dequeue n.
    Bulk(u32),
    /// One core: bulk-dequeue n from the empty ring (cycles per call, not per object).
    EmptyDequeue(u32),
    /// Two cores: one bulk-enqueues n, the other bulk-dequeues n.
    TwoCoreBulk(u32),
}

/// One row of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Case {
    /// Element size.
    pub elem: Elem,
    /// Sync mode.
    pub sync: Mode,
    /// What is timed.
    pub op: Op,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (e, s) = (self.elem, self.sync);
        match self.op {
            Op::Single => write!(f, "{e:>3} 1 core  {s} single"),
            Op::Burst(n) => write!(f, "{e:>3} 1 core  {s} burst n={n}"),
            Op::Bulk(n) => write!(f, "{e:>3} 1 core  {s} bulk n={n}"),
            Op::EmptyDequeue(n) => write!(f, "{e:>3} 1 core  {s} empty deq n={n} (per call)"),
            Op::TwoCoreBulk(n) => write!(f, "{e:>3} 2 cores {s} bulk n={n}"),
        }
    }
}

/// Every case, in DPDK's order.
pub fn matrix() -> Vec<Case> {
    let mut v = Vec::new();
    for elem in [Elem::Ptr8, Elem::Bytes16] {
        let mut ops = vec![Op::Single];
        ops.extend(SIZES.map(Op::Burst));
        ops.extend(SIZES.map(Op::Bulk));
        ops.push(Op::EmptyDequeue(SIZES[0]));
        ops.extend(SIZES.map(Op::TwoCoreBulk));
        for op in ops {
            for sync in [Mode::SpSc, Mode::MpMc] {
                v.push(Case { elem, sync, op });
            }
        }
    }
    v
}

/// The figures of one `ring_perf_autotest` run, in cycles per object (per call for
/// [`Op::EmptyDequeue`]). Lines it does not know are skipped; so are the hyperthread, NUMA
/// and all-lcore sections, which have no rdk counterpart here.
pub fn parse(output: &str) -> Vec<(Case, f64)> {
    let mut section = "";
    let mut out = Vec::new();
    for line in output.lines().map(str::trim) {
        if let Some(s) = line
            .strip_prefix("### ")
            .and_then(|l| l.strip_suffix(" ###"))
        {
            section = s;
            continue;
        }
        let (elem, rest) = if let Some(r) = line.strip_prefix("legacy APIs: ") {
            (Elem::Ptr8, r)
        } else if let Some(r) = line.strip_prefix("elem APIs: element size 16B: ") {
            (Elem::Bytes16, r)
        } else {
            continue;
        };
        let Some((sync, rest)) = rest.split_once(": ") else {
            continue;
        };
        let sync = match sync {
            "SP/SC" => Mode::SpSc,
            "MP/MC" => Mode::MpMc,
            _ => continue,
        };
        let Some((what, value)) = rest.rsplit_once(": ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let size = what
            .split_once("(size: ")
            .and_then(|(_, s)| s.strip_suffix(')'))
            .and_then(|s| s.parse::<u32>().ok());
        let (op, per_obj) = match (section, what, size) {
            (s, "single", _) if s.starts_with("Testing single") => (Op::Single, value),
            (s, w, Some(n)) if s.starts_with("Testing burst") && w.starts_with("burst") => {
                (Op::Burst(n), value / f64::from(n))
            }
            (s, w, Some(n)) if s.starts_with("Testing bulk") && w.starts_with("bulk") => {
                (Op::Bulk(n), value / f64::from(n))
            }
            (s, _, Some(n)) if s.starts_with("Testing empty") => (Op::EmptyDequeue(n), value),
            (s, _, Some(n)) if s.contains("two physical cores") => (Op::TwoCoreBulk(n), value),
            _ => continue,
        };
        out.push((Case { elem, sync, op }, per_obj));
    }
    out
}

/// The label `summarize_ring_perf.py` gives a case: `(api column, case column)`.
pub fn summary_label(case: &Case) -> (&'static str, String) {
    let api = match case.elem {
        Elem::Ptr8 => "legacy(8B ptr)",
        Elem::Bytes16 => "elem 16B",
    };
    let s = case.sync;
    let label = match case.op {
        Op::Single => format!("1 core, enq+deq, {s} single"),
        Op::Burst(n) => format!("1 core, enq+deq, {s} burst n={n}"),
        Op::Bulk(n) => format!("1 core, enq+deq, {s} bulk n={n}"),
        Op::EmptyDequeue(n) => format!("1 core, empty-ring dequeue call, {s} n={n} (per call)"),
        Op::TwoCoreBulk(n) => format!("2 cores (enq core + deq core), {s} bulk n={n}"),
    };
    (api, label)
}

/// The median figures of a `summarize_ring_perf.py` summary (such as the anchors'
/// `reference/ring_perf_summary.txt`), for the cases of [`matrix`] it has.
pub fn parse_summary(text: &str) -> Vec<(Case, f64)> {
    matrix()
        .into_iter()
        .filter_map(|case| {
            let (api, label) = summary_label(&case);
            let prefix = format!("{api:<15} {label}");
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(&prefix)?;
                rest.starts_with(char::is_whitespace)
                    .then(|| rest.split_whitespace().next()?.parse::<f64>().ok())
                    .flatten()
                    .map(|v| (case, v))
            })
        })
        .collect()
}

/// The command line the anchors run (`ring_perf.sh`), for printing.
pub fn command_line(dpdk_test: &Path) -> String {
    format!(
        "DPDK_TEST={TEST_NAME} {} {}",
        dpdk_test.display(),
        EAL_ARGS.join(" ")
    )
}

/// Runs `DPDK_TEST=ring_perf_autotest <dpdk_test> --no-pci -l 0-1 --in-memory` with no input,
/// killing it if it runs past `timeout`, and returns its output (stdout then stderr). Fails if
/// it cannot start, times out, exits non-zero or does not report "Test OK".
pub fn run(dpdk_test: &Path, timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(dpdk_test)
        .args(EAL_ARGS)
        .env("DPDK_TEST", TEST_NAME)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", dpdk_test.display()))?;
    // Drain both pipes on their own threads so a full pipe never stalls the child.
    let drain = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) if t0.elapsed() > timeout => {
                // Our own child, by its handle: nothing else is signalled.
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(format!("waiting for it: {e}")),
        }
    };
    let text = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
    let tail = || {
        text.lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
    };
    let fail = |why: String| {
        format!(
            "{} {why}; last lines:\n  {}",
            command_line(dpdk_test),
            tail().collect::<Vec<_>>().join("\n  ")
        )
    };
    match status {
        Ok(st) if st.success() && text.contains("Test OK") => Ok(text),
        Ok(st) => Err(fail(format!("failed ({st})"))),
        Err(why) => Err(fail(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An excerpt of real `dpdk-test` 22.11 output (this machine, 2 vCPU EPYC).
    const SAMPLE: &str = "\
RTE>>ring_perf_autotest

### Testing single element enq/deq ###
legacy APIs: SP/SC: single: 17.33
legacy APIs: MP/MC: single: 18.81

### Testing burst enq/deq ###
legacy APIs: SP/SC: burst (size: 8): 28.75
legacy APIs: MP/MC: burst (size: 32): 69.43

### Testing bulk enq/deq ###
legacy APIs: SP/SC: bulk (size: 32): 69.54

### Testing empty bulk deq ###
legacy APIs: SP/SC: bulk (size: 8): 7.23

### Testing using two physical cores ###
legacy APIs: SP/SC: bulk (size: 8): 16.83
legacy APIs: MP/MC: bulk (size: 32): 12.18

### Testing using all worker nodes ###

Bulk enq/dequeue count on size 8
Core [0] count = 665731
Total count (size: 8): 1329435

### Testing single element enq/deq ###
elem APIs: element size 16B: SP/SC: single: 13.93

### Testing bulk enq/deq ###
elem APIs: element size 16B: MP/MC: bulk (size: 8): 33.85
Test OK
";

    #[test]
    fn parses_every_section_into_per_object_figures() {
        let got = parse(SAMPLE);
        let c = |elem, sync, op| Case { elem, sync, op };
        use Elem::*;
        use Mode::*;
        let want = vec![
            (c(Ptr8, SpSc, Op::Single), 17.33),
            (c(Ptr8, MpMc, Op::Single), 18.81),
            (c(Ptr8, SpSc, Op::Burst(8)), 28.75 / 8.0),
            (c(Ptr8, MpMc, Op::Burst(32)), 69.43 / 32.0),
            (c(Ptr8, SpSc, Op::Bulk(32)), 69.54 / 32.0),
            (c(Ptr8, SpSc, Op::EmptyDequeue(8)), 7.23),
            (c(Ptr8, SpSc, Op::TwoCoreBulk(8)), 16.83),
            (c(Ptr8, MpMc, Op::TwoCoreBulk(32)), 12.18),
            (c(Bytes16, SpSc, Op::Single), 13.93),
            (c(Bytes16, MpMc, Op::Bulk(8)), 33.85 / 8.0),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((gc, gv), (wc, wv)) in got.iter().zip(&want) {
            assert_eq!(gc, wc);
            assert!((gv - wv).abs() < 1e-9, "{gc}: {gv} vs {wv}");
        }
    }

    #[test]
    fn reads_the_anchor_summary_format() {
        let text = "\
api             case                                                             cyc/obj    ns/obj  range
legacy(8B ptr)  1 core, enq+deq, SP/SC bulk n=32                                   1.355     0.521  1.31..1.37
legacy(8B ptr)  1 core, empty-ring dequeue call, MP/MC n=8 (per call)              5.040     1.938  4.90..5.15
legacy(8B ptr)  2 cores (enq core + deq core), SP/SC bulk n=32                     4.320     1.662  3.85..46.27
elem 16B        1 core, enq+deq, MP/MC single                                     35.510    13.658  33.99..36.51
";
        let got = parse_summary(text);
        let c = |elem, sync, op| Case { elem, sync, op };
        assert_eq!(
            got,
            vec![
                (c(Elem::Ptr8, Mode::SpSc, Op::Bulk(32)), 1.355),
                (c(Elem::Ptr8, Mode::MpMc, Op::EmptyDequeue(8)), 5.04),
                (c(Elem::Ptr8, Mode::SpSc, Op::TwoCoreBulk(32)), 4.32),
                (c(Elem::Bytes16, Mode::MpMc, Op::Single), 35.51),
            ]
        );
    }

    #[test]
    fn matrix_covers_both_element_sizes_and_modes() {
        let m = matrix();
        assert_eq!(m.len(), 2 * 2 * (1 + 2 + 2 + 1 + 2));
        let parsed: Vec<Case> = parse(SAMPLE).into_iter().map(|(c, _)| c).collect();
        assert!(parsed.iter().all(|c| m.contains(c)));
    }
}
