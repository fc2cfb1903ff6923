//! Port and queue statistics.
//!
//! Each queue owns a [`QueueCounters`] shared with its port (an `Arc`): the queue's core is its
//! only writer and adds with a plain load + store (no locked instruction), and the control
//! plane reads it at any time — also while the queue is bursting on another core.

use core::sync::atomic::{AtomicU64, Ordering};

/// One queue's counters. A queue updates only the direction it serves.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct QueueCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Receive: frames the device dropped for lack of descriptors. Transmit: unused.
    missed: AtomicU64,
    /// Receive: buffer allocation failures. Transmit: unused.
    nombuf: AtomicU64,
}

/// Adds to a counter that only the calling thread writes.
#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl QueueCounters {
    /// Zeroed counters.
    pub const fn new() -> Self {
        Self {
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            nombuf: AtomicU64::new(0),
        }
    }

    /// Counts `packets` packets of `bytes` bytes in total. Only the queue's own thread calls it.
    #[inline(always)]
    pub fn add(&self, packets: u64, bytes: u64) {
        bump(&self.packets, packets);
        bump(&self.bytes, bytes);
    }

    /// Counts `packets` packets whose bytes are not counted (for drivers that would have to
    /// touch every packet to know them, as `net_ring` would). Only the queue's own thread calls
    /// it.
    #[inline(always)]
    pub fn add_packets(&self, packets: u64) {
        bump(&self.packets, packets);
    }

    /// Counts errors (bad frames received, or frames the device refused to send).
    #[inline(always)]
    pub fn add_errors(&self, n: u64) {
        bump(&self.errors, n);
    }

    /// Counts frames dropped for lack of receive descriptors.
    #[inline(always)]
    pub fn add_missed(&self, n: u64) {
        bump(&self.missed, n);
    }

    /// Counts receive-buffer allocation failures.
    #[inline(always)]
    pub fn add_nombuf(&self, n: u64) {
        bump(&self.nombuf, n);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> QueueStats {
        QueueStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            missed: self.missed.load(Ordering::Relaxed),
            nombuf: self.nombuf.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the counters. Racy against a bursting queue (an update in flight may survive),
    /// as DPDK's stats reset is.
    pub fn reset(&self) {
        for c in [
            &self.packets,
            &self.bytes,
            &self.errors,
            &self.missed,
            &self.nombuf,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A snapshot of one queue's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Errors.
    pub errors: u64,
    /// Frames missed for lack of descriptors (receive).
    pub missed: u64,
    /// Buffer allocation failures (receive).
    pub nombuf: u64,
}

/// Port statistics (DPDK's `rte_eth_stats`), summed over queues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames dropped by the device for lack of receive descriptors.
    pub imissed: u64,
    /// Bad frames received.
    pub ierrors: u64,
    /// Frames that failed to send.
    pub oerrors: u64,
    /// Receive-buffer allocation failures.
    pub rx_nombuf: u64,
    /// Per receive queue.
    pub rx_queues: alloc::vec::Vec<QueueStats>,
    /// Per transmit queue.
    pub tx_queues: alloc::vec::Vec<QueueStats>,
}

impl PortStats {
    /// Sums queue snapshots into port statistics.
    pub fn from_queues(rx: alloc::vec::Vec<QueueStats>, tx: alloc::vec::Vec<QueueStats>) -> Self {
        let mut s = PortStats::default();
        for q in &rx {
            s.ipackets += q.packets;
            s.ibytes += q.bytes;
            s.ierrors += q.errors;
            s.imissed += q.missed;
            s.rx_nombuf += q.nombuf;
        }
        for q in &tx {
            s.opackets += q.packets;
            s.obytes += q.bytes;
            s.oerrors += q.errors;
        }
        s.rx_queues = rx;
        s.tx_queues = tx;
        s
    }
}

/// One named extended statistic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XStat {
    /// Name, DPDK style (`rx_good_packets`, `rx_q0_packets`, driver-specific ones).
    pub name: alloc::string::String,
    /// Value.
    pub value: u64,
}

impl XStat {
    /// Appends named values to `out` (a driver's `xstats`).
    pub fn extend(out: &mut alloc::vec::Vec<XStat>, items: &[(&str, u64)]) {
        out.extend(items.iter().map(|(name, value)| XStat {
            name: alloc::string::String::from(*name),
            value: *value,
        }));
    }
}

/// A counter one thread writes (a queue's core) and any thread reads: adding is a plain load
/// and store, no locked instruction. For a driver's own drop reasons next to [`QueueCounters`].
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread calls it.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        bump(&self.0, n);
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Zeroes the counter. Racy against its writer (an update in flight may survive), as
    /// [`QueueCounters::reset`] is.
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Zeroes every field of a struct of [`Counter`]s, named once: `reset_counters!(self,
/// Drops { a, b })`. The struct is destructured without `..`, so a field added later and not
/// named here is a compile error, not a counter a statistics reset forgets.
#[macro_export]
macro_rules! reset_counters {
    ($value:expr, $ty:ident { $($field:ident),+ $(,)? }) => {{
        let $ty { $($field),+ } = $value;
        $( $field.reset(); )+
    }};
}

/// Per-queue shared state a driver keeps for its statistics (one `Arc<T>` per queue id, the
/// queue holding the other reference), summed for xstats.
#[derive(Debug)]
pub struct PerQueue<T>(alloc::vec::Vec<alloc::sync::Arc<T>>);

impl<T> Default for PerQueue<T> {
    fn default() -> Self {
        Self(alloc::vec::Vec::new())
    }
}

impl<T: Default> PerQueue<T> {
    /// A fresh `T` for `queue` (replacing the one of an earlier setup), shared with the caller.
    pub fn fresh(&mut self, queue: u16) -> alloc::sync::Arc<T> {
        let q = queue as usize;
        if self.0.len() <= q {
            self.0.resize_with(q + 1, Default::default);
        }
        let t = alloc::sync::Arc::new(T::default());
        self.0[q] = t.clone();
        t
    }

    /// The `T` of `queue`, made at its first setup and kept by later ones, so that its
    /// counters carry on across a queue set up again, as the port's [`QueueCounters`] do.
    pub fn kept(&mut self, queue: u16) -> alloc::sync::Arc<T> {
        let q = queue as usize;
        if self.0.len() <= q {
            self.0.resize_with(q + 1, Default::default);
        }
        self.0[q].clone()
    }

    /// The sum over queues of the counter `f` picks.
    pub fn sum(&self, f: impl Fn(&T) -> &Counter) -> u64 {
        self.0.iter().map(|t| f(t).get()).sum()
    }

    /// Every queue's `T` (for a driver's statistics reset).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|t| &**t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn per_queue_counters_sum() {
        #[derive(Default)]
        struct D {
            a: Counter,
        }
        let mut p = PerQueue::<D>::default();
        p.fresh(2).a.add(5);
        let q0 = p.fresh(0);
        q0.a.add(1);
        q0.a.add(2);
        assert_eq!(p.sum(|d| &d.a), 8);
        p.fresh(2);
        assert_eq!(
            p.sum(|d| &d.a),
            3,
            "a new setup of queue 2 starts from zero"
        );
    }

    #[test]
    fn kept_counters_carry_on_across_setups_until_reset() {
        #[derive(Default)]
        struct D {
            a: Counter,
        }
        let mut p = PerQueue::<D>::default();
        p.kept(1).a.add(5);
        p.kept(0).a.add(1);
        let again = p.kept(1);
        again.a.add(2);
        assert_eq!(p.sum(|d| &d.a), 8, "queue 1 set up again keeps its count");
        p.iter().for_each(|d| d.a.reset());
        assert_eq!(p.sum(|d| &d.a), 0);
        again.a.add(3);
        assert_eq!(p.sum(|d| &d.a), 3, "the queue still counts into it");
    }

    #[test]
    fn counters_add_snapshot_reset() {
        let c = QueueCounters::new();
        c.add(3, 180);
        c.add(1, 60);
        c.add_errors(2);
        c.add_missed(5);
        c.add_nombuf(7);
        assert_eq!(
            c.snapshot(),
            QueueStats {
                packets: 4,
                bytes: 240,
                errors: 2,
                missed: 5,
                nombuf: 7
            }
        );
        c.reset();
        assert_eq!(c.snapshot(), QueueStats::default());
    }

    #[test]
    fn port_stats_sum_queues() {
        let rx = vec![
            QueueStats {
                packets: 1,
                bytes: 10,
                errors: 1,
                missed: 2,
                nombuf: 3,
            },
            QueueStats {
                packets: 2,
                bytes: 20,
                ..Default::default()
            },
        ];
        let tx = vec![QueueStats {
            packets: 5,
            bytes: 50,
            errors: 1,
            ..Default::default()
        }];
        let s = PortStats::from_queues(rx, tx);
        assert_eq!(
            (s.ipackets, s.ibytes, s.ierrors, s.imissed, s.rx_nombuf),
            (3, 30, 1, 2, 3)
        );
        assert_eq!((s.opackets, s.obytes, s.oerrors), (5, 50, 1));
    }
}
