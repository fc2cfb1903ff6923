//! Queue tests against a device played by the test: it reads and writes ring memory directly.

use super::format::*;
use super::*;
use crate::addr::Iova;
use crate::os::test_dma::{TestDma, TestRegion};
use crate::os::{DmaAlloc, DmaRegion, DmaRequest};
use alloc::vec::Vec;

fn region(len: usize) -> TestRegion {
    TestDma::contiguous()
        .dma_alloc(&DmaRequest::new("vq", len).align(4096).contiguous())
        .unwrap()
}

/// The ring memory as the test's device reaches it: the region's base pointer (taken once,
/// so the queue's own borrows of its struct do not invalidate it).
type Mem = *mut u8;

fn rd16(r: Mem, off: usize) -> u16 {
    // SAFETY: tests pass offsets inside the region, which outlives the test's queue use.
    u16::from_le(unsafe { r.add(off).cast::<u16>().read_volatile() })
}
fn wr16(r: Mem, off: usize, v: u16) {
    // SAFETY: as above.
    unsafe { r.add(off).cast::<u16>().write_volatile(v.to_le()) }
}
fn rd<T>(r: Mem, off: usize) -> T {
    // SAFETY: as above; T is plain data.
    unsafe { r.add(off).cast::<T>().read_volatile() }
}
fn wr<T>(r: Mem, off: usize, v: T) {
    // SAFETY: as above.
    unsafe { r.add(off).cast::<T>().write_volatile(v) }
}

/// The device side of a split ring.
struct SplitDev {
    l: SplitLayout,
    last_avail: u16,
    used_idx: u16,
}

impl SplitDev {
    fn new(size: u16) -> Self {
        Self {
            l: SplitLayout::new(size),
            last_avail: 0,
            used_idx: 0,
        }
    }
    /// The next available chain: head and its descriptors.
    fn take(&mut self, r: Mem) -> Option<(u16, Vec<SplitDesc>)> {
        if rd16(r, self.l.avail + 2) == self.last_avail {
            return None;
        }
        let head = rd16(r, self.l.avail_ring(self.last_avail % self.l.size));
        self.last_avail = self.last_avail.wrapping_add(1);
        let mut out = Vec::new();
        let mut d = head;
        loop {
            let desc: SplitDesc = rd(r, 16 * d as usize);
            out.push(desc);
            if desc.flags.get() & desc_flags::NEXT == 0 || out.len() > self.l.size as usize {
                break;
            }
            d = desc.next.get();
        }
        Some((head, out))
    }
    fn put(&mut self, r: Mem, id: u32, len: u32) {
        let pos = self.used_idx % self.l.size;
        wr(
            r,
            self.l.used_ring(pos),
            UsedElem {
                id: id.into(),
                len: len.into(),
            },
        );
        self.used_idx = self.used_idx.wrapping_add(1);
        wr16(r, self.l.used + 2, self.used_idx);
    }

    /// One element for a batch of `chains` chains (IN_ORDER, §2.7.9): written where the
    /// batch's first element goes, naming its last chain; the index moves past all of them.
    fn put_batch(&mut self, r: Mem, last: u32, len: u32, chains: u16) {
        self.put(r, last, len);
        self.used_idx = self.used_idx.wrapping_add(chains - 1);
        wr16(r, self.l.used + 2, self.used_idx);
    }
}

fn iova(n: u64) -> Iova {
    Iova::new(0x1000_0000 + n * 0x1000)
}

fn split(size: u16, event_idx: bool, in_order: bool) -> SplitQueue<TestRegion> {
    SplitQueue::new(
        region(SplitLayout::new(size).total),
        size,
        event_idx,
        in_order,
    )
    .unwrap()
}

#[test]
fn split_round_trip_with_chains_and_wraps() {
    let mut q = split(8, false, false);
    let mut dev = SplitDev::new(8);
    let r = q.region().as_ptr();
    // Many laps, so the free-running indices (two chains a round) wrap past 65535; under
    // Miri, a few laps.
    let rounds = if cfg!(miri) { 100 } else { 33_000u64 };
    for round in 0..rounds {
        let a = q
            .add(&[Buf::readable(iova(round), 12), Buf::readable(iova(1), 60)])
            .unwrap();
        let b = q.add(&[Buf::writable(iova(2), 1500)]).unwrap();
        assert!(q.kick_prepare());
        assert_eq!(q.num_free(), 5);
        let (ha, da) = dev.take(r).unwrap();
        let (hb, db) = dev.take(r).unwrap();
        assert_eq!((ha, hb), (a, b));
        assert_eq!(da.len(), 2);
        assert_eq!(da[0].addr.get(), iova(round).get());
        assert_eq!(db[0].flags.get(), desc_flags::WRITE);
        // Out of order.
        dev.put(r, hb as u32, 100);
        dev.put(r, ha as u32, 0);
        assert_eq!(
            q.pop_used(),
            Some(Completion::Done(Used { id: b, len: 100 }))
        );
        assert_eq!(q.pop_used(), Some(Completion::Done(Used { id: a, len: 0 })));
        assert_eq!(q.pop_used(), None);
        assert_eq!(q.num_free(), 8);
    }
    assert_eq!(q.health().total(), 0);
}

#[test]
fn split_full_and_empty_chains_are_refused() {
    let mut q = split(4, false, false);
    assert_eq!(q.add(&[]), Err(VirtqError::NoBuffers));
    let five = [Buf::readable(iova(0), 1); 5];
    assert_eq!(q.add(&five), Err(VirtqError::Full { need: 5, free: 4 }));
    q.add(&five[..4]).unwrap();
    assert!(q.add(&five[..1]).is_err());
    assert!(matches!(
        SplitQueue::new(region(64), 3, false, false),
        Err(VirtqError::BadSize { size: 3 })
    ));
    assert!(matches!(
        SplitQueue::new(region(64), 8, false, false),
        Err(VirtqError::RegionTooSmall { .. })
    ));
}

#[test]
fn split_notification_suppression() {
    let mut q = split(8, false, false);
    let l = SplitLayout::new(8);
    let r = q.region().as_ptr();
    assert!(!q.kick_prepare(), "nothing added");
    wr16(r, l.used, used_flags::NO_NOTIFY);
    q.add(&[Buf::readable(iova(0), 1)]).unwrap();
    assert!(!q.kick_prepare());
    assert_eq!(rd16(r, l.avail + 2), 1, "published anyway");
    q.disable_interrupts();
    assert_eq!(rd16(r, l.avail), avail_flags::NO_INTERRUPT);
    assert!(!q.enable_interrupts());
    assert_eq!(rd16(r, l.avail), 0);

    let mut q = split(8, true, false);
    let r = q.region().as_ptr();
    // The device wants to hear about index 2 only.
    wr16(r, l.avail_event(), 2);
    q.add(&[Buf::readable(iova(0), 1)]).unwrap();
    assert!(!q.kick_prepare(), "0..1 does not reach 2");
    q.add(&[Buf::readable(iova(0), 1)]).unwrap();
    q.add(&[Buf::readable(iova(0), 1)]).unwrap();
    assert!(q.kick_prepare(), "1..3 crosses 2");
    // Interrupt requests: used_event follows the last used index.
    assert!(!q.enable_interrupts());
    assert_eq!(rd16(r, l.avail), 0);
    assert_eq!(rd16(r, l.used_event()), 0);
    q.disable_interrupts();
    assert_eq!(rd16(r, l.avail), 0, "flags stay 0 with EVENT_IDX (2.7.7.2)");
    assert_eq!(rd16(r, l.used_event()), 0xffff, "as far behind as it gets");
}

#[test]
fn split_in_order_batches_complete_earlier_chains() {
    let mut q = split(8, false, true);
    let mut dev = SplitDev::new(8);
    let r = q.region().as_ptr();
    let ids: Vec<u16> = (0..3)
        .map(|i| q.add(&[Buf::readable(iova(i), 64)]).unwrap())
        .collect();
    assert_eq!(ids, [0, 1, 2], "descriptors taken in table order");
    q.kick_prepare();
    for _ in 0..3 {
        dev.take(r).unwrap();
    }
    // One used element for the batch, naming its last chain; the index moves by three.
    dev.put_batch(r, 2, 0, 3);
    let got: Vec<_> = core::iter::from_fn(|| q.pop_used()).collect();
    assert_eq!(
        got,
        [0, 1, 2].map(|id| Completion::Done(Used { id, len: 0 }))
    );
    assert_eq!(q.num_free(), 8);
    assert_eq!(q.health().total(), 0);
    // Chains stay consecutive across the table end.
    let ids: Vec<u16> = (0..6)
        .map(|i| q.add(&[Buf::readable(iova(i), 1)]).unwrap())
        .collect();
    assert_eq!(ids, [3, 4, 5, 6, 7, 0]);
}

#[test]
fn split_in_order_receive_batches_report_skipped_buffers_full() {
    let mut q = split(8, false, true);
    let mut dev = SplitDev::new(8);
    let r = q.region().as_ptr();
    for i in 0..4 {
        q.add(&[Buf::writable(iova(i), 100 + i as u32)]).unwrap();
    }
    q.kick_prepare();
    for _ in 0..4 {
        dev.take(r).unwrap();
    }
    // Two batches: chains 0-1 (the element names 1, 40 bytes), then 2-3 (names 3, 7 bytes).
    dev.put_batch(r, 1, 40, 2);
    dev.put_batch(r, 3, 7, 2);
    let got: Vec<_> = core::iter::from_fn(|| q.pop_used()).collect();
    assert_eq!(
        got,
        [(0, 100), (1, 40), (2, 102), (3, 7)].map(|(id, len)| Completion::Done(Used { id, len }))
    );
    assert_eq!((q.num_free(), q.health().total()), (8, 0));
}

#[test]
fn split_in_order_completion_by_index_reads_no_element() {
    for in_order in [true, false] {
        let mut q = split(8, false, in_order);
        let mut dev = SplitDev::new(8);
        let r = q.region().as_ptr();
        for round in 0..3u16 {
            let ids: Vec<u16> = (0..5)
                .map(|i| q.add(&[Buf::readable(iova(i), 60)]).unwrap())
                .collect();
            q.kick_prepare();
            for _ in 0..5 {
                dev.take(r).unwrap();
            }
            assert!(!q.ready_at_least(1), "nothing returned yet");
            if in_order {
                // Elements full of garbage: only the index may be read.
                dev.put_batch(r, 0xdead, 0xbeef, 3);
                dev.put_batch(r, 0xdead, 0xbeef, 1);
            } else {
                for &id in &ids[..4] {
                    dev.put(r, id as u32, 0);
                }
            }
            assert!(q.ready_at_least(4) && !q.ready_at_least(5), "round {round}");
            let mut done = [0u16; 3];
            assert_eq!(q.complete_readable(&mut done), 3, "as many as asked for");
            assert_eq!(done, ids[..3], "oldest first");
            let mut more = [0u16; 8];
            assert_eq!(q.complete_readable(&mut more), 1);
            assert_eq!(more[0], ids[3]);
            assert_eq!(q.num_free(), 7);
            // The last one alone, by pop_used this time (a true element now).
            dev.put(r, ids[4] as u32, 0);
            assert_eq!(
                q.pop_used(),
                Some(Completion::Done(Used { id: ids[4], len: 0 }))
            );
            assert_eq!(q.pop_used(), None);
            assert_eq!((q.num_free(), q.health().total()), (8, 0), "round {round}");
        }
    }
}

#[test]
fn split_in_order_index_jump_is_counted_by_index_completion_too() {
    let mut q = split(8, false, true);
    let mut dev = SplitDev::new(8);
    let r = q.region().as_ptr();
    q.add(&[Buf::readable(iova(0), 60)]).unwrap();
    q.kick_prepare();
    dev.take(r).unwrap();
    dev.put_batch(r, 0, 0, 5); // five chains back, one was out
    assert_eq!(q.complete_readable(&mut [0; 8]), 0, "nothing completes");
    assert_eq!(q.health().count(Anomaly::IndexJump), 1);
    assert_eq!(q.num_free(), 7);
}

#[test]
fn split_in_order_element_ahead_of_the_returned_chains_is_out_of_order() {
    let mut q = split(8, false, true);
    let mut dev = SplitDev::new(8);
    let r = q.region().as_ptr();
    for i in 0..4 {
        q.add(&[Buf::readable(iova(i), 60)]).unwrap();
    }
    q.kick_prepare();
    for _ in 0..4 {
        dev.take(r).unwrap();
    }
    // The index says one chain came back, the element names the fourth.
    dev.put(r, 3, 0);
    assert_eq!(
        q.pop_used(),
        Some(Completion::Dropped {
            id: None,
            anomaly: Anomaly::OutOfOrder
        })
    );
    assert_eq!(q.health().count(Anomaly::OutOfOrder), 1);
    assert_eq!(q.num_free(), 4, "nothing reclaimed on a lie");
}

#[test]
fn split_hostile_used_elements_are_counted_and_dropped() {
    let mut q = split(8, false, false);
    let mut dev = SplitDev::new(8);
    let r = q.region().as_ptr();
    let a = q.add(&[Buf::writable(iova(0), 100)]).unwrap();
    let b = q.add(&[Buf::writable(iova(1), 100)]).unwrap();
    q.kick_prepare();
    dev.put(r, 9999, 10); // out of range
    assert_eq!(
        q.pop_used(),
        Some(Completion::Dropped {
            id: None,
            anomaly: Anomaly::UnknownId
        })
    );
    dev.put(r, 5, 10); // never posted
    assert!(matches!(
        q.pop_used(),
        Some(Completion::Dropped {
            anomaly: Anomaly::NotInFlight,
            ..
        })
    ));
    dev.put(r, a as u32, 101); // longer than the buffer: the chain comes back, flagged
    assert_eq!(
        q.pop_used(),
        Some(Completion::Dropped {
            id: Some(a),
            anomaly: Anomaly::LenTooLong
        })
    );
    dev.put(r, a as u32, 1); // already returned
    assert!(matches!(
        q.pop_used(),
        Some(Completion::Dropped {
            anomaly: Anomaly::NotInFlight,
            ..
        })
    ));
    // The index jumps ahead of everything in flight (1 chain).
    wr16(
        r,
        SplitLayout::new(8).used + 2,
        dev.used_idx.wrapping_add(40),
    );
    assert_eq!(q.pop_used(), None);
    wr16(r, SplitLayout::new(8).used + 2, dev.used_idx);
    let h = *q.health();
    assert_eq!(
        Anomaly::ALL.map(|k| h.count(k)),
        [1, 2, 1, 1, 0, 0],
        "{h:?}"
    );
    assert!(!h.is_broken());
    dev.put(r, b as u32, 100);
    assert_eq!(
        q.pop_used(),
        Some(Completion::Done(Used { id: b, len: 100 }))
    );
}

#[test]
fn split_breaks_after_the_threshold_and_then_refuses_everything() {
    let mut q = split(4, false, false);
    q.set_broken_threshold(3);
    let mut dev = SplitDev::new(4);
    let r = q.region().as_ptr();
    q.add(&[Buf::writable(iova(0), 10)]).unwrap();
    q.kick_prepare();
    for _ in 0..3 {
        dev.put(r, 3, 1);
        q.pop_used();
    }
    assert!(q.health().is_broken());
    dev.put(r, 0, 1);
    assert_eq!(q.pop_used(), None);
    assert_eq!(
        q.add(&[Buf::writable(iova(0), 10)]),
        Err(VirtqError::Broken)
    );
}

/// xorshift, for garbage that is the same every run.
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn split_random_device_writes_never_break_the_invariants() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let rounds = if cfg!(miri) { 200 } else { 20_000 };
    let mut q = split(16, true, false);
    q.set_broken_threshold(u32::MAX);
    let l = SplitLayout::new(16);
    let r = q.region().as_ptr();
    let mut out = 0u32;
    for _ in 0..rounds {
        let x = rng(&mut seed);
        match x % 4 {
            0 => {
                if q.add(&[Buf::writable(iova(x % 7), 64)]).is_ok() {
                    out += 1;
                }
                q.kick_prepare();
            }
            1 => {
                let pos = (x >> 8) as u16 % 16;
                wr(
                    r,
                    l.used_ring(pos),
                    UsedElem {
                        id: ((x >> 16) as u32 % 20).into(),
                        len: ((x >> 32) as u32 % 80).into(),
                    },
                );
            }
            2 => wr16(
                r,
                l.used + 2,
                rd16(r, l.used + 2).wrapping_add((x >> 8) as u16 % 3),
            ),
            _ => {
                if let Some(Completion::Done(_) | Completion::Dropped { id: Some(_), .. }) =
                    q.pop_used()
                {
                    out -= 1;
                }
            }
        }
        assert_eq!(q.num_free() as u32 + out, 16, "descriptors conserved");
    }
}

/// The device side of a packed ring.
struct PackedDev {
    size: u16,
    avail_pos: u16,
    avail_wrap: bool,
    used_pos: u16,
    used_wrap: bool,
}

impl PackedDev {
    fn new(size: u16) -> Self {
        Self {
            size,
            avail_pos: 0,
            avail_wrap: true,
            used_pos: 0,
            used_wrap: true,
        }
    }
    fn take(&mut self, r: Mem) -> Option<(u16, Vec<PackedDesc>)> {
        let mut out = Vec::new();
        loop {
            let d: PackedDesc = rd(r, 16 * self.avail_pos as usize);
            let f = d.flags.get();
            let avail = f & desc_flags::AVAIL != 0;
            let used = f & desc_flags::USED != 0;
            if avail != self.avail_wrap || used == self.avail_wrap {
                assert!(out.is_empty(), "chain cut short");
                return None;
            }
            out.push(d);
            self.avail_pos += 1;
            if self.avail_pos == self.size {
                self.avail_pos = 0;
                self.avail_wrap = !self.avail_wrap;
            }
            if f & desc_flags::NEXT == 0 {
                return Some((d.id.get(), out));
            }
        }
    }
    fn put_raw(&mut self, r: Mem, id: u16, len: u32, descs: u16, wrap: bool) {
        let flags = if wrap {
            desc_flags::AVAIL | desc_flags::USED
        } else {
            0
        };
        let off = 16 * self.used_pos as usize;
        wr(r, off + 8, len.to_le());
        wr16(r, off + 12, id);
        wr16(r, off + 14, flags);
        let next = self.used_pos as u32 + descs as u32;
        if next >= self.size as u32 {
            self.used_wrap = !self.used_wrap;
        }
        self.used_pos = (next % self.size as u32) as u16;
    }
    fn put(&mut self, r: Mem, id: u16, len: u32, descs: u16) {
        let w = self.used_wrap;
        self.put_raw(r, id, len, descs, w)
    }
}

fn packed(size: u16, event_idx: bool, in_order: bool) -> PackedQueue<TestRegion> {
    PackedQueue::new(
        region(PackedLayout::new(size).total),
        size,
        event_idx,
        in_order,
    )
    .unwrap()
}

#[test]
fn packed_round_trip_with_chains_and_wraps() {
    let mut q = packed(8, false, false);
    let mut dev = PackedDev::new(8);
    let r = q.region().as_ptr();
    let rounds = if cfg!(miri) { 50 } else { 5_000u64 };
    for round in 0..rounds {
        let a = q
            .add(&[Buf::readable(iova(round), 12), Buf::readable(iova(1), 60)])
            .unwrap();
        let b = q.add(&[Buf::writable(iova(2), 1500)]).unwrap();
        let c = q
            .add(&[Buf::writable(iova(3), 10), Buf::writable(iova(4), 20)])
            .unwrap();
        assert!(q.kick_prepare());
        let (ia, da) = dev.take(r).unwrap();
        let (ib, _) = dev.take(r).unwrap();
        let (ic, dc) = dev.take(r).unwrap();
        assert!(dev.take(r).is_none());
        assert_eq!((ia, ib, ic), (a, b, c));
        assert_eq!(da[0].addr.get(), iova(round).get());
        assert_eq!(dc.len(), 2);
        dev.put(r, c, 30, 2);
        dev.put(r, a, 0, 2);
        dev.put(r, b, 1500, 1);
        assert_eq!(
            q.pop_used(),
            Some(Completion::Done(Used { id: c, len: 30 }))
        );
        assert_eq!(q.pop_used(), Some(Completion::Done(Used { id: a, len: 0 })));
        assert!(q.has_used());
        assert_eq!(
            q.pop_used(),
            Some(Completion::Done(Used { id: b, len: 1500 }))
        );
        assert_eq!(q.pop_used(), None);
        assert_eq!(q.num_free(), 8);
    }
    assert_eq!(q.health().total(), 0);
}

#[test]
fn packed_hostile_device_is_counted() {
    let mut q = packed(8, false, false);
    let mut dev = PackedDev::new(8);
    let r = q.region().as_ptr();
    let a = q.add(&[Buf::writable(iova(0), 100)]).unwrap();
    let b = q.add(&[Buf::writable(iova(1), 100)]).unwrap();
    q.kick_prepare();
    dev.take(r).unwrap();
    dev.take(r).unwrap();
    // The wrong wrap counter on an in-flight descriptor: not taken, counted.
    let mut bad = PackedDev::new(8);
    bad.put_raw(r, a, 1, 1, false);
    assert_eq!(q.pop_used(), None);
    assert_eq!(q.health().count(Anomaly::BadWrap), 1);
    dev.put(r, 77, 1, 1);
    assert_eq!(
        q.pop_used(),
        Some(Completion::Dropped {
            id: None,
            anomaly: Anomaly::UnknownId
        })
    );
    dev.put(r, a, 101, 1);
    assert_eq!(
        q.pop_used(),
        Some(Completion::Dropped {
            id: Some(a),
            anomaly: Anomaly::LenTooLong
        })
    );
    assert_eq!(q.pop_used(), None, "nothing more used");
    assert_eq!(q.num_free(), 7, "b still out");
    dev.put(r, b, 100, 1);
    assert_eq!(
        q.pop_used(),
        Some(Completion::Done(Used { id: b, len: 100 }))
    );
    assert_eq!(q.num_free(), 8);
}

#[test]
fn packed_event_suppression() {
    let mut q = packed(8, true, false);
    let l = PackedLayout::new(8);
    let r = q.region().as_ptr();
    wr16(r, l.device + 2, event_flags::DISABLE);
    q.add(&[Buf::readable(iova(0), 1)]).unwrap();
    assert!(!q.kick_prepare());
    // Tell me when position 3 (this lap, wrap 1) is made available.
    wr16(r, l.device, 3 | 1 << 15);
    wr16(r, l.device + 2, event_flags::DESC);
    q.add(&[Buf::readable(iova(0), 1)]).unwrap();
    assert!(!q.kick_prepare(), "positions 1..2");
    q.add(&[Buf::readable(iova(0), 1)]).unwrap();
    q.add(&[Buf::readable(iova(0), 1)]).unwrap();
    assert!(q.kick_prepare(), "positions 2..4 cross 3");
    q.enable_interrupts();
    assert_eq!(rd16(r, l.driver + 2), event_flags::ENABLE);
    q.disable_interrupts();
    assert_eq!(rd16(r, l.driver + 2), event_flags::DISABLE);
}

#[test]
fn packed_in_order_batch() {
    let mut q = packed(4, false, true);
    let mut dev = PackedDev::new(4);
    let r = q.region().as_ptr();
    for lap in 0..10 {
        let ids: Vec<u16> = (0..3)
            .map(|i| q.add(&[Buf::readable(iova(i), 64)]).unwrap())
            .collect();
        q.kick_prepare();
        for _ in 0..3 {
            dev.take(r).unwrap();
        }
        // One used descriptor for all three, naming the last; the ring skips their slots.
        dev.put(r, ids[2], 0, 3);
        let got: Vec<_> = core::iter::from_fn(|| q.pop_used()).collect();
        assert_eq!(got.len(), 3, "lap {lap}");
        assert_eq!(q.num_free(), 4);
    }
    // Writable chains: those the batch element skips were written in full (as split, and
    // as Linux reads them); the named one has its own length.
    let ids: Vec<u16> = (0..3)
        .map(|i| q.add(&[Buf::writable(iova(i), 100 + i as u32)]).unwrap())
        .collect();
    q.kick_prepare();
    for _ in 0..3 {
        dev.take(r).unwrap();
    }
    dev.put(r, ids[2], 60, 3);
    let got: Vec<_> = core::iter::from_fn(|| q.pop_used()).collect();
    assert_eq!(
        got,
        [(ids[0], 100), (ids[1], 101), (ids[2], 60)]
            .map(|(id, len)| Completion::Done(Used { id, len }))
    );
}

#[test]
fn packed_random_device_writes_never_break_the_invariants() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let rounds = if cfg!(miri) { 200 } else { 20_000 };
    let mut q = packed(16, true, false);
    q.set_broken_threshold(u32::MAX);
    let r = q.region().as_ptr();
    let mut out = 0u32;
    for _ in 0..rounds {
        let x = rng(&mut seed);
        match x % 3 {
            0 => {
                let n = 1 + (x >> 40) as usize % 3;
                if q.add(&[Buf::writable(iova(x % 7), 64); 3][..n]).is_ok() {
                    out += n as u32;
                }
                q.kick_prepare();
            }
            1 => {
                let pos = (x >> 8) as usize % 16;
                wr16(r, 16 * pos + 12, (x >> 16) as u16 % 20);
                wr(r, 16 * pos + 8, ((x >> 24) as u32 % 300).to_le());
                wr16(r, 16 * pos + 14, (x >> 32) as u16 & 0x8083);
            }
            _ => {
                let before = q.num_free();
                let _ = q.pop_used();
                out -= (q.num_free() - before) as u32;
            }
        }
        assert_eq!(q.num_free() as u32 + out, 16, "descriptors conserved");
    }
}

#[test]
fn any_queue_picks_the_layout() {
    let f = Features::VERSION_1 | Features::RING_PACKED;
    let n = AnyQueue::<TestRegion>::bytes_needed(8, f);
    assert_eq!(n, PackedLayout::new(8).total);
    let r = region(n);
    let va = r.va();
    let q = AnyQueue::new(r, 8, f).unwrap();
    assert!(matches!(q, AnyQueue::Packed(_)));
    let a = q.areas();
    assert_eq!(a.driver.get(), a.desc.get() + 128);
    assert_eq!((a.desc_va, a.driver_va), (va, va.wrapping_add(128)));
    assert_ne!(a.desc.get(), va.get() as u64, "IOVA is not the VA");
    let q = AnyQueue::new(region(4096), 8, Features::VERSION_1).unwrap();
    assert!(matches!(q, AnyQueue::Split(_)));
    // Without VERSION_1 (a legacy transport): the used ring on the next 4096-byte boundary.
    let legacy = Features::EVENT_IDX;
    let n = AnyQueue::<TestRegion>::bytes_needed(8, legacy);
    assert_eq!(n, SplitLayout::legacy(8).total);
    assert!(
        AnyQueue::new(region(4096), 8, legacy).is_err(),
        "too small for it"
    );
    let q = AnyQueue::new(region(n), 8, legacy).unwrap();
    let a = q.areas();
    assert_eq!(a.driver.get(), a.desc.get() + 128);
    assert_eq!(a.device.get(), a.desc.get() + 4096);
}

#[test]
fn split_ready_at_least_counts_descriptors_freed() {
    for in_order in [false, true] {
        let mut q = split(8, false, in_order);
        let mut dev = SplitDev::new(8);
        let r = q.region().as_ptr();
        assert!(!q.ready_at_least(1), "nothing in flight");
        let ids: Vec<u16> = (0..4)
            .map(|i| q.add(&[Buf::readable(iova(i), 10)]).unwrap())
            .collect();
        q.kick_prepare();
        assert!(!q.ready_at_least(1));
        dev.put(r, ids[0] as u32, 0);
        assert!(q.ready_at_least(1));
        assert!(!q.ready_at_least(2));
        if in_order {
            // One element for the batch of the next two chains: three descriptors in all.
            dev.put_batch(r, ids[2] as u32, 0, 2);
            assert!(q.ready_at_least(3));
            assert!(!q.ready_at_least(4));
        } else {
            dev.put(r, ids[1] as u32, 0);
            assert!(q.ready_at_least(2));
            assert!(!q.ready_at_least(3));
        }
        assert!(
            !q.ready_at_least(100),
            "capped at what is in flight, not reached"
        );
        while q.pop_used().is_some() {}
    }
}

#[test]
fn packed_ready_at_least_counts_descriptors_freed() {
    for in_order in [false, true] {
        let mut q = packed(8, false, in_order);
        let mut dev = PackedDev::new(8);
        let r = q.region().as_ptr();
        assert!(!q.ready_at_least(1), "nothing in flight");
        // Three chains of two descriptors.
        let ids: Vec<u16> = (0..3)
            .map(|i| {
                q.add(&[Buf::readable(iova(i), 10), Buf::readable(iova(i + 8), 10)])
                    .unwrap()
            })
            .collect();
        q.kick_prepare();
        for _ in 0..3 {
            dev.take(r).unwrap();
        }
        assert!(!q.ready_at_least(1));
        dev.put(r, ids[0], 0, 2);
        assert!(q.ready_at_least(2));
        assert!(!q.ready_at_least(3));
        if in_order {
            // One used descriptor for the next two chains.
            dev.put(r, ids[2], 0, 4);
        } else {
            dev.put(r, ids[1], 0, 2);
            dev.put(r, ids[2], 0, 2);
        }
        assert!(q.ready_at_least(6));
        assert!(q.ready_at_least(100), "capped at what is in flight");
        let mut n = 0;
        while q.pop_used().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert!(!q.ready_at_least(1));
        assert_eq!(q.health().total(), 0);
    }
}
