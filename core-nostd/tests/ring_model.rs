//! Model-based test of the ring: random sequences of operations run against the ring and
//! against a `VecDeque` of the same capacity, and every observable result must agree.
//!
//! Covered: bulk/burst/single enqueue and dequeue with lengths from 0 to past the capacity,
//! zero-copy enqueue/dequeue with partial (and no) finish, and `count`/`free_count`/`is_empty`/
//! `is_full` after every step; on MP/MC, SP/SC (through handles), SP/MC and MP/SC rings; with
//! inline, caller-memory and (feature `alloc`) heap storage, default and exact capacities.
//! Small rings and long sequences wrap the slot index many times.

#![cfg(not(loom))]

use proptest::prelude::*;
use rdk_core::ring::{
    Consumer, Inline, MpmcRing, Multi, Producer, RawSlots, Ring, Single, Slots, SpscRing, SyncMode,
};
use std::collections::VecDeque;
use std::ptr::NonNull;

/// Value a failed or short operation must leave in the caller's buffer.
const UNTOUCHED: u64 = u64::MAX;

#[derive(Clone, Debug)]
enum Op {
    EnqBulk(usize),
    EnqBurst(usize),
    Enq,
    DeqBulk(usize),
    DeqBurst(usize),
    Deq,
    /// Lend `n` free slots (exactly `n` if `bulk`), write all, publish `finish` (None: drop).
    ZcEnq {
        n: usize,
        bulk: bool,
        finish: Option<usize>,
    },
    /// Lend `n` filled slots (exactly `n` if `bulk`), read all, take `finish`.
    ZcDeq {
        n: usize,
        bulk: bool,
        finish: usize,
    },
}

/// Operation lengths relative to the capacity, so that 0, exactly the capacity and more than
/// it all come up.
fn op_strategy(cap: usize) -> impl Strategy<Value = Op> {
    let len = 0..=cap + 3;
    prop_oneof![
        3 => len.clone().prop_map(Op::EnqBulk),
        3 => len.clone().prop_map(Op::EnqBurst),
        2 => Just(Op::Enq),
        3 => len.clone().prop_map(Op::DeqBulk),
        3 => len.clone().prop_map(Op::DeqBurst),
        2 => Just(Op::Deq),
        2 => (len.clone(), any::<bool>(), proptest::option::weighted(0.8, 0..=cap + 2))
            .prop_map(|(n, bulk, finish)| Op::ZcEnq { n, bulk, finish }),
        2 => (len, any::<bool>(), 0..=cap + 2)
            .prop_map(|(n, bulk, finish)| Op::ZcDeq { n, bulk, finish }),
    ]
}

/// The producer side of a ring under test, however it is reached.
trait ProdSide {
    /// Whether this side has the zero-copy API (single producers only).
    const ZC: bool;
    fn bulk(&mut self, objs: &[u64]) -> bool;
    fn burst(&mut self, objs: &[u64]) -> usize;
    fn one(&mut self, obj: u64) -> Result<(), u64>;
    /// Lends up to `n` slots, writes `first_val + i` into lent slot `i`, then publishes
    /// `finish` of them (or drops the loan). Returns (first run length, lent count).
    fn zc(
        &mut self,
        n: usize,
        bulk: bool,
        first_val: u64,
        finish: Option<usize>,
    ) -> Option<(usize, usize)>;
    fn count(&self) -> usize;
    fn free_count(&self) -> usize;
    fn is_empty(&self) -> bool;
    fn is_full(&self) -> bool;
}

/// The consumer side of a ring under test.
trait ConsSide {
    const ZC: bool;
    fn bulk(&mut self, out: &mut [u64]) -> bool;
    fn burst(&mut self, out: &mut [u64]) -> usize;
    fn one(&mut self) -> Option<u64>;
    /// Lends up to `n` filled slots, reads them all, then takes `finish` of them. Returns (first
    /// run length, the lent values).
    fn zc(&mut self, n: usize, bulk: bool, finish: usize) -> Option<(usize, Vec<u64>)>;
}

struct MultiProd<'a, C: SyncMode, S: Slots<u64>>(&'a Ring<u64, Multi, C, S>);
struct MultiCons<'a, P: SyncMode, S: Slots<u64>>(&'a Ring<u64, P, Multi, S>);

impl<C: SyncMode, S: Slots<u64>> ProdSide for MultiProd<'_, C, S> {
    const ZC: bool = false;
    fn bulk(&mut self, objs: &[u64]) -> bool {
        self.0.enqueue_bulk(objs)
    }
    fn burst(&mut self, objs: &[u64]) -> usize {
        self.0.enqueue_burst(objs)
    }
    fn one(&mut self, obj: u64) -> Result<(), u64> {
        self.0.enqueue(obj)
    }
    fn zc(&mut self, _: usize, _: bool, _: u64, _: Option<usize>) -> Option<(usize, usize)> {
        unreachable!("multi-producer rings have no zero-copy API")
    }
    fn count(&self) -> usize {
        self.0.count()
    }
    fn free_count(&self) -> usize {
        self.0.free_count()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn is_full(&self) -> bool {
        self.0.is_full()
    }
}

impl<P: SyncMode, S: Slots<u64>> ConsSide for MultiCons<'_, P, S> {
    const ZC: bool = false;
    fn bulk(&mut self, out: &mut [u64]) -> bool {
        self.0.dequeue_bulk(out)
    }
    fn burst(&mut self, out: &mut [u64]) -> usize {
        self.0.dequeue_burst(out)
    }
    fn one(&mut self) -> Option<u64> {
        self.0.dequeue()
    }
    fn zc(&mut self, _: usize, _: bool, _: usize) -> Option<(usize, Vec<u64>)> {
        unreachable!("multi-consumer rings have no zero-copy API")
    }
}

impl<C: SyncMode, S: Slots<u64>> ProdSide for Producer<u64, C, S, &Ring<u64, Single, C, S>> {
    const ZC: bool = true;
    fn bulk(&mut self, objs: &[u64]) -> bool {
        self.enqueue_bulk(objs)
    }
    fn burst(&mut self, objs: &[u64]) -> usize {
        self.enqueue_burst(objs)
    }
    fn one(&mut self, obj: u64) -> Result<(), u64> {
        self.enqueue(obj)
    }
    fn zc(
        &mut self,
        n: usize,
        bulk: bool,
        first_val: u64,
        finish: Option<usize>,
    ) -> Option<(usize, usize)> {
        let mut zc = self.enqueue_zc_start(n, bulk)?;
        let len = zc.len();
        let (a, b) = zc.slots();
        let first = a.len();
        assert_eq!(len, first + b.len());
        for (i, s) in a.iter_mut().chain(b.iter_mut()).enumerate() {
            s.write(first_val + i as u64);
        }
        if let Some(k) = finish {
            // SAFETY: every lent slot was written just above.
            unsafe { zc.finish(k) };
        }
        Some((first, len))
    }
    fn count(&self) -> usize {
        self.ring().count()
    }
    fn free_count(&self) -> usize {
        self.ring().free_count()
    }
    fn is_empty(&self) -> bool {
        self.ring().is_empty()
    }
    fn is_full(&self) -> bool {
        self.ring().is_full()
    }
}

impl<P: SyncMode, S: Slots<u64>> ConsSide for Consumer<u64, P, S, &Ring<u64, P, Single, S>> {
    const ZC: bool = true;
    fn bulk(&mut self, out: &mut [u64]) -> bool {
        self.dequeue_bulk(out)
    }
    fn burst(&mut self, out: &mut [u64]) -> usize {
        self.dequeue_burst(out)
    }
    fn one(&mut self) -> Option<u64> {
        self.dequeue()
    }
    fn zc(&mut self, n: usize, bulk: bool, finish: usize) -> Option<(usize, Vec<u64>)> {
        let zc = self.dequeue_zc_start(n, bulk)?;
        let vals: Vec<u64> = (0..zc.len()).map(|i| zc.get(i).unwrap()).collect();
        assert_eq!(zc.get(zc.len()), None, "get past the lent run");
        let first = zc.slots().0.len();
        zc.finish(finish);
        Some((first, vals))
    }
}

/// The reference: a bounded FIFO, plus the free-running producer/consumer counts that tell
/// where the ring's slot index stands.
struct Model {
    q: VecDeque<u64>,
    cap: usize,
    size: usize,
    enqueued: usize,
    dequeued: usize,
    next: u64,
}

impl Model {
    fn free(&self) -> usize {
        self.cap - self.q.len()
    }
    fn fresh(&mut self, n: usize) -> Vec<u64> {
        let v: Vec<u64> = (self.next..self.next + n as u64).collect();
        self.next += n as u64;
        v
    }
    fn push(&mut self, objs: &[u64]) {
        self.q.extend(objs);
        self.enqueued += objs.len();
    }
    fn pop(&mut self, n: usize) -> Vec<u64> {
        self.dequeued += n;
        self.q.drain(..n).collect()
    }
    /// How many objects an operation asking for `n` of `avail` moves.
    fn grant(n: usize, avail: usize, bulk: bool) -> usize {
        match (bulk, n <= avail) {
            (_, true) => n,
            (true, false) => 0,
            (false, false) => avail,
        }
    }
    /// Length of the run before the wrap, for `n` slots starting at free-running index `at`.
    fn first_run(&self, at: usize, n: usize) -> usize {
        n.min(self.size - at % self.size)
    }
}

/// Runs `ops` on the ring (through `p` and `c`) and on the model; panics on any difference.
fn check<Pd: ProdSide, Cs: ConsSide>(mut p: Pd, mut c: Cs, cap: usize, size: usize, ops: &[Op]) {
    let mut m = Model {
        q: VecDeque::with_capacity(cap),
        cap,
        size,
        enqueued: 0,
        dequeued: 0,
        next: 0,
    };
    assert_eq!(p.count(), 0);
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::EnqBulk(n) => {
                let objs = m.fresh(n);
                let ok = n <= m.free();
                assert_eq!(p.bulk(&objs), ok, "step {step}: {op:?}");
                if ok {
                    m.push(&objs);
                }
            }
            Op::EnqBurst(n) => {
                let objs = m.fresh(n);
                let k = n.min(m.free());
                assert_eq!(p.burst(&objs), k, "step {step}: {op:?}");
                m.push(&objs[..k]);
            }
            Op::Enq => {
                let v = m.fresh(1)[0];
                if m.free() > 0 {
                    assert_eq!(p.one(v), Ok(()), "step {step}");
                    m.push(&[v]);
                } else {
                    assert_eq!(p.one(v), Err(v), "step {step}: full ring gives it back");
                }
            }
            Op::DeqBulk(n) => {
                let mut out = vec![UNTOUCHED; n];
                let ok = n <= m.q.len();
                assert_eq!(c.bulk(&mut out), ok, "step {step}: {op:?}");
                if ok {
                    assert_eq!(out, m.pop(n), "step {step}: values");
                } else {
                    assert!(
                        out.iter().all(|&v| v == UNTOUCHED),
                        "step {step}: failed bulk wrote"
                    );
                }
            }
            Op::DeqBurst(n) => {
                let mut out = vec![UNTOUCHED; n];
                let k = n.min(m.q.len());
                assert_eq!(c.burst(&mut out), k, "step {step}: {op:?}");
                assert_eq!(out[..k], m.pop(k)[..], "step {step}: values");
                assert!(
                    out[k..].iter().all(|&v| v == UNTOUCHED),
                    "step {step}: wrote past"
                );
            }
            Op::Deq => {
                let want = (!m.q.is_empty()).then(|| m.pop(1)[0]);
                assert_eq!(c.one(), want, "step {step}");
            }
            Op::ZcEnq { n, bulk, finish } if Pd::ZC => {
                let lend = if bulk && n > cap {
                    0
                } else {
                    Model::grant(n, m.free(), bulk)
                };
                let got = p.zc(n, bulk, m.next, finish);
                let want = (lend > 0).then(|| (m.first_run(m.enqueued, lend), lend));
                assert_eq!(got, want, "step {step}: {op:?}");
                let objs = m.fresh(lend);
                m.push(&objs[..finish.map_or(0, |k| k.min(lend))]);
            }
            Op::ZcDeq { n, bulk, finish } if Cs::ZC => {
                let lend = if bulk && n > cap {
                    0
                } else {
                    Model::grant(n, m.q.len(), bulk)
                };
                let got = c.zc(n, bulk, finish);
                let want = (lend > 0).then(|| {
                    let vals: Vec<u64> = m.q.iter().take(lend).copied().collect();
                    (m.first_run(m.dequeued, lend), vals)
                });
                assert_eq!(got, want, "step {step}: {op:?}");
                m.pop(finish.min(lend));
            }
            Op::ZcEnq { .. } | Op::ZcDeq { .. } => {}
        }
        let len = m.q.len();
        assert_eq!(p.count(), len, "step {step}: count after {op:?}");
        assert_eq!(p.free_count(), cap - len, "step {step}: free_count");
        assert_eq!(p.is_empty(), len == 0, "step {step}: is_empty");
        assert_eq!(p.is_full(), len == cap, "step {step}: is_full");
    }
    // Drain: the ring must hold exactly what the model holds.
    let rest: Vec<u64> = std::iter::from_fn(|| c.one()).collect();
    assert_eq!(
        rest,
        m.q.iter().copied().collect::<Vec<_>>(),
        "final contents"
    );
    assert!(p.is_empty());
}

/// Runs `ops` on all four sync-mode combinations of rings built by `make`.
macro_rules! all_modes {
    ($make:expr, $cap:expr, $size:expr, $ops:expr) => {{
        let (cap, size, ops) = ($cap, $size, $ops);
        {
            let r: MpmcRing<u64, _> = $make;
            check(MultiProd(&r), MultiCons(&r), cap, size, ops);
        }
        {
            let r: SpscRing<u64, _> = $make;
            let (p, c) = (Ring::producer(&r).unwrap(), Ring::consumer(&r).unwrap());
            check(p, c, cap, size, ops);
        }
        {
            let r: Ring<u64, Single, Multi, _> = $make;
            check(Ring::producer(&r).unwrap(), MultiCons(&r), cap, size, ops);
        }
        {
            let r: Ring<u64, Multi, Single, _> = $make;
            check(MultiProd(&r), Ring::consumer(&r).unwrap(), cap, size, ops);
        }
    }};
}

/// A sequence of operations for a ring of capacity `cap`; shorter under Miri, which is slow.
fn ops(cap: usize) -> impl Strategy<Value = Vec<Op>> {
    let max = if cfg!(miri) { 40 } else { 400 };
    proptest::collection::vec(op_strategy(cap), 1..max)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 256 },
        // Miri's isolation forbids the file system; elsewhere keep proptest's default.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            ProptestConfig::default().failure_persistence
        },
        ..ProptestConfig::default()
    }
}

/// Caller memory for a `RawSlots` ring; kept alive by the test body.
fn raw(mem: &mut [u64]) -> RawSlots<u64> {
    // SAFETY: every caller keeps `mem` alive, and untouched, for as long as the ring lives.
    unsafe { RawSlots::new(NonNull::new(mem.as_mut_ptr()).unwrap(), mem.len()) }.unwrap()
}

macro_rules! inline_model {
    ($name:ident, $n:expr) => {
        proptest! {
            #![proptest_config(config())]
            #[test]
            fn $name(ops in ops($n - 1)) {
                all_modes!(Ring::<_, _, _, Inline<u64, $n>>::new(), $n - 1, $n, &ops);
            }
        }
    };
}

inline_model!(inline_2_slots, 2);
inline_model!(inline_4_slots, 4);
inline_model!(inline_16_slots, 16);

proptest! {
    #![proptest_config(config())]

    /// Caller memory with any capacity below the slot count (exact-size rings included).
    #[test]
    fn raw_slots_any_capacity(
        (size, cap, ops) in (0u32..=6)
            .prop_flat_map(|shift| { let size = 1usize << shift; (Just(size), 0..size) })
            .prop_flat_map(|(size, cap)| (Just(size), Just(cap), ops(cap)))
    ) {
        let mut mem = vec![0u64; size];
        all_modes!(Ring::with_slots(raw(&mut mem), cap).unwrap(), cap, size, &ops);
    }
}

#[cfg(feature = "alloc")]
proptest! {
    #![proptest_config(config())]

    /// Heap rings of exactly the capacity asked for (`RING_F_EXACT_SZ`).
    #[test]
    fn boxed_exact_capacity((cap, ops) in (1usize..=40).prop_flat_map(|cap| (Just(cap), ops(cap)))) {
        let size = MpmcRing::<u64, rdk_core::ring::BoxedSlots<u64>>::size_for_capacity(cap).unwrap();
        all_modes!(Ring::with_capacity(cap).unwrap(), cap, size, &ops);
    }
}

/// A long deterministic run on the smallest useful ring: the slot index wraps thousands of
/// times through every operation shape, including zero-copy runs split at the wrap.
#[test]
fn long_run_wraps_slot_index_many_times() {
    let steps = if cfg!(miri) { 150 } else { 200_000 };
    let mut ops = Vec::with_capacity(steps);
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..steps {
        // xorshift32: a fixed sequence, no dependency on proptest's runner.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x >> 8) as usize % 6;
        ops.push(match x % 8 {
            0 => Op::EnqBulk(n),
            1 => Op::EnqBurst(n),
            2 => Op::Enq,
            3 => Op::DeqBulk(n),
            4 => Op::DeqBurst(n),
            5 => Op::Deq,
            6 => Op::ZcEnq {
                n,
                bulk: x & 0x100 != 0,
                finish: Some((x >> 12) as usize % 6),
            },
            _ => Op::ZcDeq {
                n,
                bulk: x & 0x100 != 0,
                finish: (x >> 12) as usize % 6,
            },
        });
    }
    all_modes!(Ring::<_, _, _, Inline<u64, 4>>::new(), 3, 4, &ops);
    let mut mem = vec![0u64; 8];
    all_modes!(Ring::with_slots(raw(&mut mem), 5).unwrap(), 5, 8, &ops);
}
