//! Multi-thread stress of the ring with exact accounting: every object enqueued is dequeued
//! exactly once, with its value intact; on SP/SC also in FIFO order.
//!
//! Each producer tags its objects with its id and a sequence number, so a lost, duplicated or
//! torn object shows up as a missing, doubled or unknown tag. Millions of objects per case in
//! release builds; fewer in debug builds and far fewer under Miri.
#![cfg(not(loom))]

use rdk_core::ring::{Inline, MpmcRing, Ring, SpscRing};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

/// Objects per producer in each case.
const PER_PRODUCER: u64 = if cfg!(miri) {
    60
} else if cfg!(debug_assertions) {
    100_000
} else {
    1_000_000
};

/// Burst sizes each case runs with.
const BURSTS: [usize; 3] = [1, 8, 32];

fn tag(producer: u64, seq: u64) -> u64 {
    (producer << 40) | seq
}

/// Sends `PER_PRODUCER` objects through `send`, which enqueues a prefix of what it is given and
/// returns how many it took; alternates bulk-sized and burst calls via `bulk`.
fn produce(id: u64, burst: usize, mut send: impl FnMut(&[u64], bool) -> usize) {
    let mut next = 0;
    let mut buf = vec![0u64; burst];
    let mut round = 0u64;
    while next < PER_PRODUCER {
        let n = burst.min((PER_PRODUCER - next) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = tag(id, next + i as u64);
        }
        let bulk = round.is_multiple_of(2);
        round += 1;
        match send(&buf[..n], bulk) {
            0 => thread::yield_now(),
            k => {
                assert!(!bulk || k == n, "bulk enqueue moved {k} of {n}");
                next += k as u64;
            }
        }
    }
}

/// Marks every tag in `got` as seen in `seen[producer][seq]`; panics on an unknown tag.
fn account(seen: &mut [Vec<u8>], got: &[u64]) {
    for &v in got {
        let (p, s) = ((v >> 40) as usize, v & ((1 << 40) - 1));
        assert!(
            p < seen.len() && s < PER_PRODUCER,
            "object {v:#x} was never enqueued"
        );
        seen[p][s as usize] += 1;
    }
}

fn assert_exactly_once(seen: &[Vec<u8>]) {
    for (p, marks) in seen.iter().enumerate() {
        if let Some(s) = marks.iter().position(|&m| m != 1) {
            panic!(
                "producer {p} object {s} dequeued {} times (expected exactly once)",
                marks[s]
            );
        }
    }
}

/// Two producers and two consumers on an MP/MC ring of `N` slots.
fn mpmc<const N: usize>(burst: usize) {
    const PRODUCERS: u64 = 2;
    let r: Arc<MpmcRing<u64, Inline<u64, N>>> = Arc::new(Ring::new());
    let total = (PRODUCERS * PER_PRODUCER) as usize;
    let taken = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let r = r.clone();
            thread::spawn(move || {
                produce(id, burst, |objs, bulk| {
                    if bulk {
                        if r.enqueue_bulk(objs) {
                            objs.len()
                        } else {
                            0
                        }
                    } else {
                        r.enqueue_burst(objs)
                    }
                })
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|c| {
            let (r, taken) = (r.clone(), taken.clone());
            thread::spawn(move || {
                let mut got = Vec::with_capacity(total);
                let mut buf = vec![u64::MAX; burst];
                let mut last = [None::<u64>; PRODUCERS as usize];
                while taken.load(Ordering::Relaxed) < total {
                    let n = if (got.len() + c) % 2 == 0 && r.dequeue_bulk(&mut buf) {
                        buf.len()
                    } else {
                        r.dequeue_burst(&mut buf)
                    };
                    if n == 0 {
                        thread::yield_now();
                        continue;
                    }
                    // One consumer sees each producer's objects in the order they were sent.
                    for &v in &buf[..n] {
                        let (p, s) = ((v >> 40) as usize, v & ((1 << 40) - 1));
                        if let Some(prev) = last.get(p).copied().flatten() {
                            assert!(s > prev, "producer {p}: {s} after {prev}");
                        }
                        if let Some(l) = last.get_mut(p) {
                            *l = Some(s);
                        }
                    }
                    got.extend_from_slice(&buf[..n]);
                    taken.fetch_add(n, Ordering::Relaxed);
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut seen = vec![vec![0u8; PER_PRODUCER as usize]; PRODUCERS as usize];
    for c in consumers {
        account(&mut seen, &c.join().unwrap());
    }
    assert_exactly_once(&seen);
    assert!(r.is_empty(), "objects left behind: {}", r.count());
}

/// One producer and one consumer on an SP/SC ring of `N` slots, through handles.
fn spsc<const N: usize>(burst: usize) {
    let r: Arc<SpscRing<u64, Inline<u64, N>>> = Arc::new(Ring::new());
    let mut p = Ring::producer(r.clone()).unwrap();
    let mut c = Ring::consumer(r.clone()).unwrap();
    let producer = thread::spawn(move || {
        produce(0, burst, |objs, bulk| {
            if bulk {
                if p.enqueue_bulk(objs) {
                    objs.len()
                } else {
                    0
                }
            } else {
                p.enqueue_burst(objs)
            }
        })
    });
    let consumer = thread::spawn(move || {
        let mut want = 0u64;
        let mut buf = vec![u64::MAX; burst];
        let mut round = 0u64;
        while want < PER_PRODUCER {
            let bulk_len = burst.min((PER_PRODUCER - want) as usize);
            round += 1;
            let n = if round.is_multiple_of(2) && c.dequeue_bulk(&mut buf[..bulk_len]) {
                bulk_len
            } else {
                c.dequeue_burst(&mut buf)
            };
            if n == 0 {
                thread::yield_now();
                continue;
            }
            for &v in &buf[..n] {
                assert_eq!(v, tag(0, want), "SP/SC FIFO order");
                want += 1;
            }
        }
        assert_eq!(c.dequeue(), None, "more objects than were sent");
    });
    producer.join().unwrap();
    consumer.join().unwrap();
    assert!(r.is_empty());
}

#[test]
fn mpmc_2p_2c_size_4() {
    for b in BURSTS {
        mpmc::<4>(b.min(3));
    }
}

#[test]
fn mpmc_2p_2c_size_64() {
    for b in BURSTS {
        mpmc::<64>(b);
    }
}

#[test]
fn mpmc_2p_2c_size_1024() {
    for b in BURSTS {
        mpmc::<1024>(b);
    }
}

#[test]
fn spsc_1p_1c_size_2() {
    spsc::<2>(1);
}

#[test]
fn spsc_1p_1c_size_64() {
    for b in BURSTS {
        spsc::<64>(b);
    }
}

#[test]
fn spsc_1p_1c_size_4096() {
    for b in BURSTS {
        spsc::<4096>(b);
    }
}
