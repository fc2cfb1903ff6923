//! [`PktRing`]: an rdk ring of packets that owns what it holds.
//!
//! The lock-free ring ([`crate::ring`]) moves `Copy` values; an [`Mbuf`] is an owned
//! handle. So the ring stores each packet as its raw pointer ([`Mbuf::into_raw`]) in a private
//! `Copy` newtype that nothing outside this module can make or unmake: packets go in and come
//! out only through [`PktProducer`] and [`PktConsumer`], which turn handles into pointers and
//! back exactly once. A burst array `[Option<Mbuf>]` and the ring's slots have the same layout
//! (one nullable pointer each), so a burst is the ring's own bulk copy, nothing per packet.
//!
//! Packets still in the ring when its last owner lets go are freed then, not leaked.
//!
//! The ring is single-producer, single-consumer (DPDK's `RING_F_SP_ENQ | RING_F_SC_DEQ`, what
//! `net_ring` creates for itself): a port's queue is one core's, and the claimed handles make
//! a second producer or consumer impossible rather than a race.

use crate::mbuf::{Mbuf, MbufHeader};
use crate::os::{EventError, EventNotifier, WaitHandle};
use crate::ring::{BoxedSlots, Consumer, Producer, RingError, Single, SpscRing};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use core::mem::size_of;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicBool, Ordering};

/// One ring slot: a packet given up with [`Mbuf::into_raw`], or (only in a burst array seen
/// as slots) nothing.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Slot(Option<NonNull<MbufHeader>>);

// SAFETY: a slot in the ring is an owned mbuf handle in transit (Mbuf is Send); only this
// module turns it back into a handle, once, on the consuming side.
unsafe impl Send for Slot {}

// A burst array seen as slots: both are one nullable pointer, `None` being null.
const _: () = assert!(size_of::<Slot>() == size_of::<Option<Mbuf>>());

type Inner = SpscRing<Slot, BoxedSlots<Slot>>;

/// A ring of packets, shared by the ports (and the application) that use it.
pub struct PktRing {
    ring: Inner,
    name: String,
    wake: RxWake,
}

/// The consumer's receive interrupt: armed by the consumer before it sleeps, fired once by the
/// producer that next puts packets in.
///
/// The race between "the consumer checks the ring is empty and sleeps" and "the producer
/// enqueues" is closed Dekker-style: the consumer stores `armed`, then a SeqCst fence, then
/// looks at the ring; the producer publishes its packets, then a SeqCst fence, then looks at
/// `armed`. One of them must see the other's write, so either the consumer finds the packets
/// or the producer signals. Rings without an event pay nothing but one load per burst.
struct RxWake {
    armed: AtomicBool,
    event: spin::Once<Box<dyn EventNotifier>>,
}

impl RxWake {
    /// After an enqueue: signal the consumer if it is asleep (at most once per arming).
    #[inline(always)]
    fn after_enqueue(&self) {
        if self.event.is_completed() {
            self.fire();
        }
    }

    #[inline(never)]
    fn fire(&self) {
        fence(Ordering::SeqCst);
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::AcqRel) {
            if let Some(ev) = self.event.get() {
                // A failed signal cannot be reported from a burst; the consumer's bounded
                // sleep (HybridRx's timeout) recovers, and the error shows on its next wait.
                let _ = ev.signal();
            }
        }
    }
}

/// How handles reach the ring: through the shared [`PktRing`].
struct RingRef(Arc<PktRing>);

impl Deref for RingRef {
    type Target = Inner;
    #[inline(always)]
    fn deref(&self) -> &Inner {
        &self.0.ring
    }
}

impl PktRing {
    /// A ring named `name` (for diagnostics) holding up to `capacity` packets.
    pub fn new(name: &str, capacity: usize) -> Result<Arc<PktRing>, RingError> {
        Ok(Arc::new(PktRing {
            ring: Inner::with_capacity(capacity)?,
            name: String::from(name),
            wake: RxWake {
                armed: AtomicBool::new(false),
                event: spin::Once::new(),
            },
        }))
    }

    /// Claims the ring's one producer (for a transmit queue, or an application feeding a
    /// port). Fails while another producer handle exists.
    pub fn producer(self: &Arc<Self>) -> Result<PktProducer, RingError> {
        Ok(PktProducer {
            inner: Inner::producer(RingRef(self.clone()))?,
            ring: self.clone(),
        })
    }

    /// Claims the ring's one consumer (for a receive queue, or an application draining a
    /// port). Fails while another consumer handle exists.
    pub fn consumer(self: &Arc<Self>) -> Result<PktConsumer, RingError> {
        Ok(PktConsumer {
            inner: Inner::consumer(RingRef(self.clone()))?,
        })
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Most packets the ring holds.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Packets in the ring now (a snapshot).
    pub fn count(&self) -> usize {
        self.ring.count()
    }

    /// Whether the ring is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Gives the ring a receive-interrupt event (once; later calls keep the first). From then
    /// on [`rx_intr_enable`](Self::rx_intr_enable) works. If `make` fails the ring stays
    /// without an event, so a later call can try again.
    pub fn set_rx_event(
        &self,
        make: impl FnOnce() -> Result<Box<dyn EventNotifier>, EventError>,
    ) -> Result<(), EventError> {
        self.wake.event.try_call_once(make).map(drop)
    }

    /// What to wait on for the receive interrupt, if the ring has an event.
    pub fn rx_wait_handle(&self) -> Option<WaitHandle> {
        self.wake.event.get().and_then(|e| e.wait_handle())
    }

    /// Arms the receive interrupt: the next enqueue signals the event. If packets are
    /// already waiting the event is signalled now, so a waiter never sleeps on a full ring.
    pub fn rx_intr_enable(&self) -> Result<(), EventError> {
        let Some(ev) = self.wake.event.get() else {
            return Err(EventError::Closed);
        };
        self.wake.armed.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !self.ring.is_empty() && self.wake.armed.swap(false, Ordering::AcqRel) {
            ev.signal()?;
        }
        Ok(())
    }

    /// Sleeps until the receive event fires or `timeout` passes, then takes the signal;
    /// returns whether it fired. Arm it with [`rx_intr_enable`](Self::rx_intr_enable) first
    /// (and look at the ring once more after arming), or the wait may sleep on packets that
    /// are already there.
    pub fn rx_wait(&self, timeout: Option<core::time::Duration>) -> Result<bool, EventError> {
        let Some(ev) = self.wake.event.get() else {
            return Err(EventError::Closed);
        };
        let fired = ev.wait(timeout)?;
        if fired {
            ev.ack()?;
        }
        Ok(fired)
    }

    /// Whether the ring has a receive event.
    pub fn has_rx_event(&self) -> bool {
        self.wake.event.get().is_some()
    }

    /// Disarms the receive interrupt and takes a pending signal, so the handle is idle.
    pub fn rx_intr_disable(&self) -> Result<(), EventError> {
        let Some(ev) = self.wake.event.get() else {
            return Err(EventError::Closed);
        };
        self.wake.armed.store(false, Ordering::Relaxed);
        ev.ack().map(drop)
    }
}

impl Drop for PktRing {
    /// Frees the packets still in the ring.
    fn drop(&mut self) {
        // Every handle holds an Arc of this ring, so none is left and the claim succeeds
        // (unless a handle was leaked with mem::forget; then its packets are leaked too).
        let Ok(mut c) = Inner::consumer(&self.ring) else {
            return;
        };
        let mut burst = [Slot(None); 32];
        loop {
            let n = c.dequeue_burst(&mut burst);
            if n == 0 {
                break;
            }
            for s in &mut burst[..n] {
                if let Some(p) = s.0.take() {
                    // SAFETY: every slot the ring hands out holds a handle given up with
                    // into_raw by a producer, taken back here exactly once.
                    drop(unsafe { Mbuf::from_raw(p) });
                }
            }
        }
    }
}

impl fmt::Debug for PktRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PktRing")
            .field("name", &self.name)
            .field("capacity", &self.capacity())
            .field("count", &self.count())
            .finish()
    }
}

/// The burst array seen as ring slots.
#[inline(always)]
fn as_slots(pkts: &[Option<Mbuf>]) -> &[Slot] {
    // SAFETY: Slot and Option<Mbuf> are both one nullable pointer (asserted above), so every
    // Option<Mbuf> is a valid Slot; the view is read-only and borrows `pkts`.
    unsafe { core::slice::from_raw_parts(pkts.as_ptr().cast::<Slot>(), pkts.len()) }
}

/// The slot's pointer as an address, 0 for `None`.
#[inline(always)]
fn addr(s: &Slot) -> usize {
    s.0.map_or(0, |p| p.as_ptr().addr())
}

/// How many packets lead `pkts` before the first `None` (the burst a transmit takes).
#[inline(always)]
fn leading_some(pkts: &[Option<Mbuf>]) -> usize {
    let slots = as_slots(pkts);
    // Fast path without a branch per packet: `addr - 1` has its top bit set for `None` (0)
    // and clear for any pointer below 2^63 (every user-space address), so one OR over the
    // burst says "all present". A pointer with the top bit set (a higher-half kernel address)
    // only sends the burst to the exact scan below.
    let flags = slots
        .iter()
        .fold(0usize, |acc, s| acc | addr(s).wrapping_sub(1));
    if flags >> (usize::BITS - 1) == 0 {
        return slots.len();
    }
    slots.iter().take_while(|s| s.0.is_some()).count()
}

/// Whether any slot of `pkts` holds a packet.
#[inline(always)]
fn any_some(pkts: &[Option<Mbuf>]) -> bool {
    as_slots(pkts).iter().fold(0usize, |acc, s| acc | addr(s)) != 0
}

/// The one producer of a [`PktRing`].
pub struct PktProducer {
    inner: Producer<Slot, Single, BoxedSlots<Slot>, RingRef>,
    ring: Arc<PktRing>,
}

impl PktProducer {
    /// Moves packets from the front of `pkts` into the ring (`Some` → `None`) until the ring
    /// is full or a `None` slot; returns how many. The rest stay in `pkts`.
    #[inline]
    pub fn enqueue_burst(&mut self, pkts: &mut [Option<Mbuf>]) -> usize {
        let k = leading_some(pkts);
        let n = self.inner.enqueue_burst(&as_slots(pkts)[..k]);
        for slot in &mut pkts[..n] {
            // The ring owns these now: clear the slot without dropping the handle.
            core::mem::forget(slot.take());
        }
        if n > 0 {
            self.ring.wake.after_enqueue();
        }
        n
    }

    /// Moves one packet into the ring, or hands it back if the ring is full.
    pub fn enqueue(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        let mut one = [Some(m)];
        match (self.enqueue_burst(&mut one), one) {
            (0, [Some(m)]) => Err(m),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for PktProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PktProducer")
            .field("ring", &self.inner.ring())
            .finish()
    }
}

/// The one consumer of a [`PktRing`].
pub struct PktConsumer {
    inner: Consumer<Slot, Single, BoxedSlots<Slot>, RingRef>,
}

impl PktConsumer {
    /// Moves up to `out.len()` packets from the ring into the front of `out`; returns how
    /// many. Packets that were in the slots it fills are freed first.
    #[inline]
    pub fn dequeue_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        // Slots normally arrive empty; checking costs a few vector ORs per burst.
        if any_some(out) {
            return self.dequeue_over(out);
        }
        // SAFETY: every Slot the ring writes is a valid Option<Mbuf> (same layout), holding
        // a handle given up by a producer that is taken over by `out` exactly once; the slots
        // held no handle (checked above), so nothing is overwritten unfreed. `out` is not
        // used while this view lives.
        let slots =
            unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<Slot>(), out.len()) };
        self.inner.dequeue_burst(slots)
    }

    /// A dequeue into slots that still hold packets: each is freed as it is replaced.
    #[cold]
    #[inline(never)]
    fn dequeue_over(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        let mut got = 0;
        for chunk in out.chunks_mut(32) {
            let mut burst = [Slot(None); 32];
            let want = chunk.len();
            let n = self.inner.dequeue_burst(&mut burst[..want]);
            for (dst, src) in chunk.iter_mut().zip(&burst[..n]) {
                // SAFETY: a handle given up by a producer, taken back exactly once.
                *dst = src.0.map(|p| unsafe { Mbuf::from_raw(p) });
            }
            got += n;
            if n < want {
                break;
            }
        }
        got
    }

    /// Takes one packet from the ring, if there is one.
    pub fn dequeue(&mut self) -> Option<Mbuf> {
        let mut one = [None];
        self.dequeue_burst(&mut one);
        let [m] = one;
        m
    }

    /// Packets in the ring now (a snapshot; only more can arrive while a producer lives).
    pub fn count(&self) -> usize {
        self.inner.ring().count()
    }
}

impl fmt::Debug for PktConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PktConsumer")
            .field("ring", &self.inner.ring())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::{PktMbufPool, PktMbufPoolConfig};
    use crate::os::test_dma::TestDma;
    use alloc::vec::Vec;

    fn pool(os: &TestDma, n: usize) -> PktMbufPool {
        PktMbufPool::create(os, &PktMbufPoolConfig::new("pr", n)).unwrap()
    }

    fn tagged(pool: &PktMbufPool, tag: u8) -> Mbuf {
        let mut m = pool.alloc().unwrap();
        m.append(1).unwrap()[0] = tag;
        m
    }

    #[test]
    fn bursts_move_packets_in_order_and_a_full_ring_hands_back_the_rest() {
        let os = TestDma::contiguous();
        let p = pool(&os, 16);
        let ring = PktRing::new("t", 3).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let mut burst: Vec<Option<Mbuf>> = (0..5).map(|i| Some(tagged(&p, i))).collect();
        assert_eq!(tx.enqueue_burst(&mut burst), 3);
        assert!(burst[..3].iter().all(Option::is_none));
        assert_eq!(burst[3].as_ref().map(|m| m.data()[0]), Some(3));
        assert_eq!(ring.count(), 3);
        let mut out: [Option<Mbuf>; 8] = Default::default();
        assert_eq!(rx.dequeue_burst(&mut out), 3);
        let tags: Vec<u8> = out.iter().flatten().map(|m| m.data()[0]).collect();
        assert_eq!(tags, [0, 1, 2]);
        assert!(out[3..].iter().all(Option::is_none));
        drop((burst, out));
        assert_eq!(p.available(), 16);
    }

    #[test]
    fn a_hole_ends_the_burst() {
        let os = TestDma::contiguous();
        let p = pool(&os, 32);
        for hole in [0, 1, 7, 8, 9, 16, 19] {
            let ring = PktRing::new("t", 64).unwrap();
            let mut tx = ring.producer().unwrap();
            let mut burst: Vec<Option<Mbuf>> = (0..20).map(|_| p.alloc()).collect();
            burst[hole] = None;
            assert_eq!(tx.enqueue_burst(&mut burst), hole, "hole at {hole}");
            assert_eq!(ring.count(), hole);
        }
        assert_eq!(
            p.available(),
            32,
            "rings dropped with packets in them freed them"
        );
    }

    #[test]
    fn dequeuing_over_held_packets_frees_them() {
        let os = TestDma::contiguous();
        let p = pool(&os, 80);
        let ring = PktRing::new("t", 63).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let mut burst: Vec<Option<Mbuf>> = (0..40).map(|i| Some(tagged(&p, i))).collect();
        assert_eq!(tx.enqueue_burst(&mut burst), 40);
        // 40 slots still holding old packets; 40 new ones replace them (two chunks of 32).
        let mut out: Vec<Option<Mbuf>> = (0..40).map(|_| p.alloc()).collect();
        assert_eq!(p.available(), 0);
        assert_eq!(rx.dequeue_burst(&mut out), 40);
        assert_eq!(p.available(), 40, "the replaced packets were freed");
        assert_eq!(out[39].as_ref().map(|m| m.data()[0]), Some(39));
        // With fewer in the ring than slots, the slots beyond keep their packets.
        let mut burst: Vec<Option<Mbuf>> = (0..2).map(|i| Some(tagged(&p, i))).collect();
        tx.enqueue_burst(&mut burst);
        assert_eq!(rx.dequeue_burst(&mut out[..4]), 2);
        assert!(out[2].is_some() && out[3].is_some());
        drop(out);
        assert_eq!(p.available(), 80);
    }

    #[test]
    fn one_at_a_time() {
        let os = TestDma::contiguous();
        let p = pool(&os, 4);
        let ring = PktRing::new("t", 1).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        assert!(rx.dequeue().is_none());
        tx.enqueue(tagged(&p, 9)).unwrap();
        let back = tx.enqueue(tagged(&p, 10)).unwrap_err();
        assert_eq!(back.data()[0], 10, "a full ring hands the packet back");
        assert_eq!(rx.dequeue().map(|m| m.data()[0]), Some(9));
        drop(back);
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn one_producer_and_one_consumer_at_a_time() {
        let ring = PktRing::new("t", 8).unwrap();
        let tx = ring.producer().unwrap();
        assert_eq!(ring.producer().unwrap_err(), RingError::ProducerClaimed);
        let rx = ring.consumer().unwrap();
        assert_eq!(ring.consumer().unwrap_err(), RingError::ConsumerClaimed);
        drop((tx, rx));
        assert!(ring.producer().is_ok() && ring.consumer().is_ok());
        assert_eq!(ring.name(), "t");
        assert_eq!(ring.capacity(), 8);
    }

    /// A counter event, as eventfd is.
    #[derive(Default)]
    struct Counting(core::sync::atomic::AtomicU64);

    impl EventNotifier for Counting {
        fn signal(&self) -> Result<(), EventError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn ack(&self) -> Result<u64, EventError> {
            Ok(self.0.swap(0, Ordering::Relaxed))
        }
        fn wait(&self, _timeout: Option<core::time::Duration>) -> Result<bool, EventError> {
            Ok(self.0.load(Ordering::Relaxed) > 0)
        }
    }

    #[test]
    fn a_failed_rx_event_leaves_none_and_a_retry_takes() {
        let os = TestDma::contiguous();
        let p = pool(&os, 4);
        let ring = PktRing::new("t", 8).unwrap();
        let fail = EventError::Os {
            op: "eventfd",
            code: 24,
        };
        assert_eq!(ring.set_rx_event(|| Err(fail)), Err(fail));
        assert!(!ring.has_rx_event(), "a failed call leaves no dead event");
        assert_eq!(ring.rx_intr_enable(), Err(EventError::Closed));
        // A retry (a queue set up again) gets a working event.
        ring.set_rx_event(|| Ok(Box::new(Counting::default())))
            .unwrap();
        assert!(ring.has_rx_event());
        ring.rx_intr_enable().unwrap();
        ring.producer()
            .unwrap()
            .enqueue(p.alloc().unwrap())
            .unwrap();
        assert_eq!(ring.rx_wait(None), Ok(true), "the enqueue signalled");
        // Once set, the event stays: a later maker is not even called.
        ring.set_rx_event(|| Err(fail)).unwrap();
        assert!(ring.has_rx_event());
        drop(ring);
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn the_last_owner_frees_what_is_left() {
        let os = TestDma::contiguous();
        let p = pool(&os, 100);
        let ring = PktRing::new("t", 127).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut burst: Vec<Option<Mbuf>> = (0..100).map(|_| p.alloc()).collect();
        assert_eq!(tx.enqueue_burst(&mut burst), 100);
        drop(ring);
        assert_eq!(p.available(), 0, "the producer still holds the ring");
        drop(tx);
        assert_eq!(p.available(), 100);
    }
}
