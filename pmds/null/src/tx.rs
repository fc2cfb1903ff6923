//! Sending into nothing: every packet is counted and freed.

use crate::cache::SharedCache;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use rdk_core::ethdev::{QueueCounters, TxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache};

/// A `net_null` transmit queue.
pub struct NullTx {
    /// The cache of the receive queue with the same id, linked when the port starts; `None`:
    /// sent mbufs go straight back to their pools.
    cache: Option<Arc<SharedCache>>,
    /// Copy mode: the buffer each sent packet's first `size` bytes are copied into.
    sink: Option<Box<[u8]>>,
    counters: Arc<QueueCounters>,
}

impl NullTx {
    pub(crate) fn new(copy_size: Option<u16>, counters: Arc<QueueCounters>) -> Self {
        Self {
            cache: None,
            sink: copy_size.map(|n| vec![0u8; n as usize].into_boxed_slice()),
            counters,
        }
    }

    pub(crate) fn set_cache(&mut self, cache: Option<Arc<SharedCache>>) {
        self.cache = cache;
    }
}

impl NullTx {
    /// Counts, copies (copy mode) and hands the sent packets to `free`; returns how many.
    #[inline(always)]
    fn burst(
        &mut self,
        pkts: &mut [Option<Mbuf>],
        free: impl FnOnce(&mut Self, &mut [Option<Mbuf>]),
    ) -> usize {
        let mut n = 0;
        let mut bytes = 0u64;
        for slot in pkts.iter() {
            let Some(m) = slot else { break };
            bytes += m.pkt_len() as u64;
            n += 1;
        }
        let sent = &mut pkts[..n];
        if let Some(sink) = self.sink.as_deref_mut() {
            for m in sent.iter().flatten() {
                let d = m.data();
                let k = d.len().min(sink.len());
                sink[..k].copy_from_slice(&d[..k]);
            }
        }
        free(self, sent);
        self.counters.add(n as u64, bytes);
        n
    }
}

impl TxQueue for NullTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut [Option<Mbuf>]) -> usize {
        self.burst(pkts, |q, sent| {
            // Segments of the cache's pool go into the cache, any others to their own pool.
            let cached = match &q.cache {
                Some(c) => c.with(|c| c.free_bulk(sent)).is_some(),
                None => false,
            };
            if !cached {
                Mbuf::free_bulk(sent);
            }
        })
    }

    /// Frees into the caller's cache (segments of other pools go to their own pools).
    #[inline]
    fn tx_burst_cached(&mut self, pkts: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        self.burst(pkts, |_, sent| cache.free_bulk(sent))
    }
}

impl core::fmt::Debug for NullTx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NullTx")
            .field("copy", &self.sink.is_some())
            .field("cached", &self.cache.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};
    use rdk_os_mock::MockOs;

    fn filled(pool: &PktMbufPool, len: u16) -> Mbuf {
        let mut m = pool.alloc().unwrap();
        m.append(len).unwrap().fill(0x5a);
        m
    }

    #[test]
    fn frees_and_counts_packets_and_bytes_up_to_the_first_hole() {
        let os = MockOs::new();
        let p = PktMbufPool::create(&os, &PktMbufPoolConfig::new("tx", 16)).unwrap();
        let c = Arc::new(QueueCounters::new());
        let mut q = NullTx::new(None, c.clone());
        let mut chain = filled(&p, 100);
        chain.chain(filled(&p, 50)).unwrap();
        let mut burst = [
            Some(filled(&p, 60)),
            Some(chain),
            None,
            Some(filled(&p, 70)),
        ];
        assert_eq!(q.tx_burst(&mut burst), 2);
        assert!(burst[..3].iter().all(Option::is_none));
        assert!(burst[3].is_some(), "after the hole: still the caller's");
        let s = c.snapshot();
        assert_eq!((s.packets, s.bytes), (2, 210));
        assert_eq!(p.available(), 15);
        drop(burst);
        assert_eq!(p.available(), 16);
    }

    #[test]
    fn copy_mode_reads_the_payload_and_frees_through_the_shared_cache() {
        let os = MockOs::new();
        let p = PktMbufPool::create(&os, &PktMbufPoolConfig::new("tx", 16)).unwrap();
        let other = PktMbufPool::create(&os, &PktMbufPoolConfig::new("other", 4)).unwrap();
        let c = Arc::new(QueueCounters::new());
        let shared = Arc::new(SharedCache::new(p.cache(8).unwrap()));
        let mut q = NullTx::new(Some(64), c.clone());
        q.set_cache(Some(shared.clone()));
        let mut burst = [Some(filled(&p, 10)), Some(filled(&other, 200))];
        assert_eq!(q.tx_burst(&mut burst), 2);
        assert_eq!(q.sink.as_deref().map(|s| s[..10] == [0x5a; 10]), Some(true));
        assert_eq!(other.available(), 4, "a foreign mbuf went home");
        assert_eq!(
            p.available() + p.in_caches(),
            16,
            "ours went into the cache"
        );
        assert_eq!(c.snapshot().bytes, 210);
        drop(q);
        drop(shared);
        assert_eq!(p.available(), 16);
    }
}
