//! Loom models of the ring's concurrent paths (build with `RUSTFLAGS="--cfg loom"`).
//!
//! Under loom the ring's atomics are loom's and each inline slot is a loom-tracked cell, so a
//! missing happens-before between a slot write and its read (say, a producer tail published
//! with Relaxed) is reported as a causality violation, and every interleaving up to the
//! preemption bound is tried. Rings and thread counts are tiny to keep the state space small:
//! each model explores every schedule with at most `PREEMPTIONS` preemptions.
//!
//! All concurrent work runs on spawned threads; the main thread only builds the ring, joins and
//! checks. (With loom 0.7, ring operations on the main thread racing a spawned thread were run
//! in a single interleaving only, so nothing was checked; cf. tokio-rs/loom#392.)
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p rdk-core --release --test ring_loom`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use rdk_core::ring::{Inline, MpmcRing, Ring, SpscRing};

/// Preemption bound for every model: enough to interleave a head CAS, the slot copy and the
/// tail publication of two threads, small enough that the suite finishes in minutes.
const PREEMPTIONS: usize = 3;

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(PREEMPTIONS);
    }
    b.check(f);
}

/// Producer `p`'s `i`-th object: the producer in the high byte, its sequence number below.
fn obj(p: u32, i: u32) -> u32 {
    (p << 8) | i
}

/// Checks that `got` (each consumer's objects in the order it took them, the final drain last)
/// holds every object of `sent` exactly once, and that each producer's objects came out in
/// the order it sent them within every consumer.
fn check_exactly_once(sent: &[Vec<u32>], got: &[Vec<u32>]) {
    let mut all: Vec<u32> = got.iter().flatten().copied().collect();
    all.sort_unstable();
    let mut want: Vec<u32> = sent.iter().flatten().copied().collect();
    want.sort_unstable();
    assert_eq!(all, want, "every enqueued object dequeued exactly once");
    for seq in got {
        for p in 0..sent.len() as u32 {
            let mine: Vec<u32> = seq.iter().copied().filter(|v| v >> 8 == p).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "producer {p}'s objects out of order: {seq:?}"
            );
        }
    }
}

/// MP/MC: two producers (a burst of 2, and `singles` single enqueues), `consumers` consumers
/// each making `tries` attempts, then the main thread drains the rest. Producers do not wait
/// for room, so what they enqueued is what must come out.
fn mpmc<const N: usize>(singles: u32, consumers: usize, tries: usize) {
    model(move || {
        let r: Arc<MpmcRing<u32, Inline<u32, N>>> = Arc::new(Ring::new());
        let p0 = {
            let r = r.clone();
            thread::spawn(move || {
                let objs = [obj(0, 0), obj(0, 1)];
                let n = r.enqueue_burst(&objs);
                objs[..n].to_vec()
            })
        };
        let p1 = {
            let r = r.clone();
            thread::spawn(move || {
                let mut sent = Vec::new();
                for i in 0..singles {
                    if r.enqueue(obj(1, i)).is_ok() {
                        sent.push(obj(1, i));
                    }
                }
                sent
            })
        };
        let cons: Vec<_> = (0..consumers)
            .map(|c| {
                let r = r.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..tries {
                        if c == 0 {
                            let mut buf = [u32::MAX; 2];
                            let n = r.dequeue_burst(&mut buf);
                            got.extend_from_slice(&buf[..n]);
                        } else if let Some(v) = r.dequeue() {
                            got.push(v);
                        }
                    }
                    got
                })
            })
            .collect();
        let sent = vec![p0.join().unwrap(), p1.join().unwrap()];
        let mut got: Vec<Vec<u32>> = cons.into_iter().map(|c| c.join().unwrap()).collect();
        got.push(std::iter::from_fn(|| r.dequeue()).collect());
        check_exactly_once(&sent, &got);
        assert!(r.is_empty());
    });
}

#[test]
fn mpmc_two_producers_one_consumer_size_4() {
    mpmc::<4>(2, 1, 2);
}

#[test]
fn mpmc_two_producers_two_consumers_size_4() {
    // Four threads: one single on the second producer keeps the state space in bounds.
    mpmc::<4>(1, 2, 1);
}

#[test]
fn mpmc_two_producers_one_consumer_size_2_full() {
    // Capacity 1: producers race for the one slot and often find the ring full.
    mpmc::<2>(2, 1, 2);
}

/// SP/SC through handles on two threads: the producer sends `total` objects in bulks of
/// `bulk`, waiting while the ring is full; the consumer takes them one bulk at a time, waiting
/// while it is empty. A ring smaller than `total` forces the full ring and both cached-tail
/// refreshes. FIFO order and values must be exact.
fn spsc<const N: usize>(total: u32, bulk: usize) {
    model(move || {
        let r: Arc<SpscRing<u32, Inline<u32, N>>> = Arc::new(Ring::new());
        let mut p = Ring::producer(r.clone()).unwrap();
        let mut c = Ring::consumer(r.clone()).unwrap();
        let prod = thread::spawn(move || {
            let mut next = 0;
            while next < total {
                let objs: Vec<u32> = (next..total).take(bulk).collect();
                if p.enqueue_bulk(&objs) {
                    next += objs.len() as u32;
                } else {
                    assert!(objs.len() <= p.ring().capacity(), "bulk that can never fit");
                    thread::yield_now();
                }
            }
        });
        let cons = thread::spawn(move || {
            let mut want = 0;
            while want < total {
                let mut buf = vec![u32::MAX; bulk.min((total - want) as usize)];
                if c.dequeue_bulk(&mut buf) {
                    for v in buf {
                        assert_eq!(v, want, "FIFO order");
                        want += 1;
                    }
                } else {
                    thread::yield_now();
                }
            }
            c
        });
        prod.join().unwrap();
        let mut c = cons.join().unwrap();
        assert!(r.is_empty());
        assert_eq!(c.dequeue(), None);
    });
}

#[test]
fn spsc_singles_through_capacity_1_ring() {
    // Every object fills the ring: each enqueue after the first needs the consumer-tail refresh.
    spsc::<2>(3, 1);
}

#[test]
fn spsc_bulks_of_2_through_capacity_3_ring() {
    // 2 + 2 does not fit in 3 slots, so the producer waits on a full ring, and the wrap splits
    // a bulk across the end of the slot array.
    spsc::<4>(6, 2);
}

/// SP/SC with bursts: the producer enqueues whatever fits, the consumer takes whatever is
/// there; also the burst path of the cached tails.
#[test]
fn spsc_bursts_through_capacity_3_ring() {
    model(|| {
        const TOTAL: u32 = 5;
        let r: Arc<SpscRing<u32, Inline<u32, 4>>> = Arc::new(Ring::new());
        let mut p = Ring::producer(r.clone()).unwrap();
        let mut c = Ring::consumer(r.clone()).unwrap();
        let prod = thread::spawn(move || {
            let mut next = 0;
            while next < TOTAL {
                let objs: Vec<u32> = (next..TOTAL).collect();
                match p.enqueue_burst(&objs) {
                    0 => thread::yield_now(),
                    n => next += n as u32,
                }
            }
        });
        let cons = thread::spawn(move || {
            let mut want = 0;
            while want < TOTAL {
                let mut buf = [u32::MAX; 4];
                match c.dequeue_burst(&mut buf) {
                    0 => thread::yield_now(),
                    n => {
                        assert_eq!(buf[n..], [u32::MAX; 4][n..], "burst wrote past its count");
                        for v in &buf[..n] {
                            assert_eq!(*v, want, "FIFO order");
                            want += 1;
                        }
                    }
                }
            }
        });
        cons.join().unwrap();
        prod.join().unwrap();
        assert!(r.is_empty());
    });
}

/// Two producers race to bulk-enqueue 2 objects each into a ring with room for 3: exactly one
/// wins, and the ring holds exactly the winner's objects in order, never a mix or a part.
#[test]
fn mp_bulk_all_or_nothing_under_contention() {
    model(|| {
        let r: Arc<MpmcRing<u32, Inline<u32, 4>>> = Arc::new(Ring::new());
        let ps: Vec<_> = (0..2)
            .map(|p| {
                let r = r.clone();
                thread::spawn(move || r.enqueue_bulk(&[obj(p, 0), obj(p, 1)]))
            })
            .collect();
        let won: Vec<bool> = ps.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            won.iter().filter(|&&w| w).count(),
            1,
            "exactly one bulk fits"
        );
        let p = won.iter().position(|&w| w).unwrap() as u32;
        let mut out = [0; 2];
        assert!(r.dequeue_bulk(&mut out));
        assert_eq!(out, [obj(p, 0), obj(p, 1)]);
        assert!(r.is_empty());
    });
}

/// Two consumers race to bulk-dequeue 2 objects each from a ring holding 3: exactly one gets
/// the first two, in order; the other gets nothing and the third object stays.
#[test]
fn mc_bulk_all_or_nothing_under_contention() {
    model(|| {
        let r: Arc<MpmcRing<u32, Inline<u32, 4>>> = Arc::new(Ring::new());
        assert!(r.enqueue_bulk(&[10, 11, 12]));
        let cs: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                thread::spawn(move || {
                    let mut out = [u32::MAX; 2];
                    r.dequeue_bulk(&mut out).then_some(out)
                })
            })
            .collect();
        let got: Vec<Option<[u32; 2]>> = cs.into_iter().map(|h| h.join().unwrap()).collect();
        let wins: Vec<[u32; 2]> = got.iter().flatten().copied().collect();
        assert_eq!(
            wins,
            vec![[10, 11]],
            "exactly one bulk dequeue succeeds: {got:?}"
        );
        assert_eq!(r.dequeue(), Some(12));
        assert!(r.is_empty());
    });
}

/// A producer bulk-enqueues while a consumer bulk-dequeues 2 from a ring holding 1: the
/// consumer gets nothing or both the old and the first new object, never a part.
#[test]
fn bulk_enqueue_against_bulk_dequeue() {
    model(|| {
        let r: Arc<MpmcRing<u32, Inline<u32, 4>>> = Arc::new(Ring::new());
        assert!(r.enqueue(1).is_ok());
        let prod = {
            let r = r.clone();
            thread::spawn(move || r.enqueue_bulk(&[2, 3]))
        };
        let cons = {
            let r = r.clone();
            thread::spawn(move || {
                let mut out = [u32::MAX; 2];
                r.dequeue_bulk(&mut out).then_some(out)
            })
        };
        assert!(
            prod.join().unwrap(),
            "two free slots: the bulk enqueue must succeed"
        );
        let got = cons.join().unwrap();
        let rest: Vec<u32> = std::iter::from_fn(|| r.dequeue()).collect();
        match got {
            Some(out) => {
                assert_eq!(out, [1, 2]);
                assert_eq!(rest, [3]);
            }
            None => assert_eq!(rest, [1, 2, 3]),
        }
    });
}

/// `count` while one object passes through: the snapshot may be stale but never more than was
/// ever in the ring (reading the two tails in the wrong order made it report a full ring).
#[test]
fn count_snapshot_stays_within_what_was_there() {
    model(|| {
        let r: Arc<MpmcRing<u32, Inline<u32, 4>>> = Arc::new(Ring::new());
        let worker = {
            let r = r.clone();
            thread::spawn(move || {
                assert!(r.enqueue(7).is_ok());
                assert_eq!(r.dequeue(), Some(7));
            })
        };
        let observer = {
            let r = r.clone();
            thread::spawn(move || (r.count(), r.free_count(), r.is_full()))
        };
        let (count, free, full) = observer.join().unwrap();
        assert!(
            count <= 1,
            "count() = {count}, but at most 1 object was ever in the ring"
        );
        assert!(free >= r.capacity() - 1, "free_count() = {free}");
        assert!(
            !full,
            "is_full() on a ring that never held more than 1 of 3"
        );
        worker.join().unwrap();
        assert!(r.is_empty());
    });
}
