//! The bursts: a dequeue or an enqueue, and one counter add.

use alloc::sync::Arc;
use rdk_core::ethdev::{DeviceReason, EthError, QueueCounters, RxQueue, TxQueue};
use rdk_core::mbuf::Mbuf;
use rdk_core::os::{EventError, WaitHandle};
use rdk_core::pktring::{PktConsumer, PktProducer, PktRing};

/// A `net_ring` receive queue: the consumer of one ring.
#[derive(Debug)]
pub struct RingRx {
    ring: PktConsumer,
    counters: Arc<QueueCounters>,
    shared: Arc<PktRing>,
}

/// A `net_ring` transmit queue: the producer of one ring.
#[derive(Debug)]
pub struct RingTx {
    ring: PktProducer,
    counters: Arc<QueueCounters>,
}

impl RingRx {
    pub(crate) fn new(
        ring: PktConsumer,
        counters: Arc<QueueCounters>,
        shared: Arc<PktRing>,
    ) -> Self {
        Self {
            ring,
            counters,
            shared,
        }
    }
}

fn intr_error(op: &'static str, e: EventError) -> EthError {
    match e {
        EventError::Closed => EthError::NotSupported {
            op: "rx queue interrupts (create the port with RingDriver::with_rx_events)",
        },
        EventError::Os { code, .. } => EthError::Device {
            op,
            reason: DeviceReason {
                text: "the queue's event handle failed",
                code,
            },
        },
        _ => EthError::Device {
            op,
            reason: DeviceReason {
                text: "the queue's event handle failed",
                code: 0,
            },
        },
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

    fn intr_enable(&mut self) -> Result<(), EthError> {
        self.shared
            .rx_intr_enable()
            .map_err(|e| intr_error("rx_intr_enable", e))
    }

    fn intr_disable(&mut self) -> Result<(), EthError> {
        self.shared
            .rx_intr_disable()
            .map_err(|e| intr_error("rx_intr_disable", e))
    }

    fn intr_handle(&self) -> Option<WaitHandle> {
        self.shared.rx_wait_handle()
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
