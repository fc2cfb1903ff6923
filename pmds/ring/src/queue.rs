//! The bursts: a dequeue or an enqueue, and one counter add.

use crate::pktring::{PktConsumer, PktProducer};
use alloc::sync::Arc;
use rdk_core::ethdev::{QueueCounters, RxQueue, TxQueue};
use rdk_core::mbuf::Mbuf;

/// A `net_ring` receive queue: the consumer of one ring.
#[derive(Debug)]
pub struct RingRx {
    ring: PktConsumer,
    counters: Arc<QueueCounters>,
}

/// A `net_ring` transmit queue: the producer of one ring.
#[derive(Debug)]
pub struct RingTx {
    ring: PktProducer,
    counters: Arc<QueueCounters>,
}

impl RingRx {
    pub(crate) fn new(ring: PktConsumer, counters: Arc<QueueCounters>) -> Self {
        Self { ring, counters }
    }
}

impl RingTx {
    pub(crate) fn new(ring: PktProducer, counters: Arc<QueueCounters>) -> Self {
        Self { ring, counters }
    }
}

impl RxQueue for RingRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        let n = self.ring.dequeue_burst(out);
        self.counters.add_packets(n as u64);
        n
    }
}

impl TxQueue for RingTx {
    /// Packets that do not fit in the ring stay with the caller and are not counted: the
    /// caller decides whether they are retried or dropped.
    #[inline]
    fn tx_burst(&mut self, pkts: &mut [Option<Mbuf>]) -> usize {
        let n = self.ring.enqueue_burst(pkts);
        self.counters.add_packets(n as u64);
        n
    }
}
