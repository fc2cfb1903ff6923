//! Receiving from nothing: every burst is freshly allocated mbufs.

use crate::cache::SharedCache;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use rdk_core::ethdev::{QueueCounters, RxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache, PktMbufPool, PORT_INVALID};

/// A `net_null` receive queue.
pub struct NullRx {
    /// Shared with the transmit queue of the same id once the port starts; `None` only for a
    /// pool too small to have a cache (fewer than two mbufs).
    cache: Option<Arc<SharedCache>>,
    pool: PktMbufPool,
    size: u16,
    no_rx: bool,
    port_id: u16,
    /// Copy mode: the (zeroed) payload copied into every packet, `size` bytes.
    dummy: Option<Box<[u8]>>,
    counters: Arc<QueueCounters>,
}

impl NullRx {
    pub(crate) fn new(
        cache: Option<SharedCache>,
        pool: PktMbufPool,
        size: u16,
        copy: bool,
        no_rx: bool,
        port_id: u16,
        counters: Arc<QueueCounters>,
    ) -> Self {
        Self {
            cache: cache.map(Arc::new),
            pool,
            size,
            no_rx,
            port_id,
            dummy: copy.then(|| vec![0u8; size as usize].into_boxed_slice()),
            counters,
        }
    }

    /// The cache, for the transmit queue of the same id.
    pub(crate) fn shared_cache(&self) -> Option<Arc<SharedCache>> {
        self.cache.clone()
    }

    /// Fills the front of `out` with fresh mbufs; returns how many.
    #[inline(always)]
    fn alloc(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        let pool = &self.pool;
        if let Some(shared) = &self.cache {
            let got = shared.with(|c| {
                if c.alloc_bulk(out) {
                    out.len()
                } else {
                    alloc_some(out, || c.alloc())
                }
            });
            if let Some(n) = got {
                return n;
            }
        }
        if pool.alloc_bulk(out) {
            out.len()
        } else {
            alloc_some(out, || pool.alloc())
        }
    }
}

/// The pool could not fill a whole burst: takes what there is, one mbuf at a time.
#[cold]
#[inline(never)]
fn alloc_some(out: &mut [Option<Mbuf>], mut alloc: impl FnMut() -> Option<Mbuf>) -> usize {
    let mut n = 0;
    for slot in out.iter_mut() {
        let Some(m) = alloc() else { break };
        *slot = Some(m);
        n += 1;
    }
    n
}

impl NullRx {
    /// The burst, with `alloc` filling the front of `out` with fresh mbufs.
    #[inline(always)]
    fn burst(
        &mut self,
        out: &mut [Option<Mbuf>],
        alloc: impl FnOnce(&mut Self, &mut [Option<Mbuf>]) -> usize,
    ) -> usize {
        if self.no_rx {
            return 0;
        }
        let n = alloc(self, out);
        if n < out.len() {
            self.counters.add_nombuf((out.len() - n) as u64);
        }
        let (size, port) = (self.size, self.port_id);
        let dummy = self.dummy.as_deref();
        for m in out[..n].iter_mut().flatten() {
            // Cannot fail: setup checked that `size` fits the pool's data room, and a fresh
            // mbuf is unshared with all of it as tailroom.
            if let Ok(data) = m.append(size) {
                if let Some(d) = dummy {
                    let k = data.len().min(d.len());
                    data[..k].copy_from_slice(&d[..k]);
                }
            }
            if port != PORT_INVALID {
                if let Ok(mut meta) = m.meta_mut() {
                    meta.set_port(port);
                }
            }
        }
        self.counters.add(n as u64, n as u64 * size as u64);
        n
    }
}

impl RxQueue for NullRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        self.burst(out, |q, out| q.alloc(out))
    }

    /// Allocates from the caller's cache when it is a cache of this queue's pool, so a core
    /// that frees into the same cache keeps reusing hot mbufs.
    #[inline]
    fn rx_burst_cached(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        if !cache.mempool().same_pool(self.pool.mempool()) {
            return self.rx_burst(out);
        }
        self.burst(out, |_, out| {
            if cache.alloc_bulk(out) {
                out.len()
            } else {
                alloc_some(out, || cache.alloc())
            }
        })
    }
}

impl core::fmt::Debug for NullRx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NullRx")
            .field("size", &self.size)
            .field("copy", &self.dummy.is_some())
            .field("no_rx", &self.no_rx)
            .field("cached", &self.cache.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use rdk_core::mbuf::PktMbufPoolConfig;
    use rdk_os_mock::MockOs;

    fn pool(os: &MockOs, n: usize) -> PktMbufPool {
        PktMbufPool::create(os, &PktMbufPoolConfig::new("rx", n)).unwrap()
    }

    fn queue(pool: &PktMbufPool, size: u16, copy: bool) -> (NullRx, Arc<QueueCounters>) {
        let c = Arc::new(QueueCounters::new());
        let cache = SharedCache::new(pool.cache(32.min(pool.size())).unwrap());
        let q = NullRx::new(
            Some(cache),
            pool.clone(),
            size,
            copy,
            false,
            PORT_INVALID,
            c.clone(),
        );
        (q, c)
    }

    /// Writes `byte` over the data room of every mbuf of `pool`, so a later copy shows.
    fn dirty(pool: &PktMbufPool, byte: u8) {
        let ms: Vec<Mbuf> = (0..pool.size())
            .map(|_| {
                let mut m = pool.alloc().unwrap();
                m.append(pool.data_room()).unwrap().fill(byte);
                m
            })
            .collect();
        drop(ms);
    }

    #[test]
    fn packets_have_the_size_and_no_payload_is_touched() {
        let os = MockOs::new();
        let p = pool(&os, 64);
        dirty(&p, 0xaa);
        let (mut q, c) = queue(&p, 60, false);
        let mut burst: [Option<Mbuf>; 8] = Default::default();
        assert_eq!(q.rx_burst(&mut burst), 8);
        for m in burst.iter().flatten() {
            assert_eq!((m.pkt_len(), m.data_len(), m.nb_segs()), (60, 60, 1));
            assert_eq!(m.port(), PORT_INVALID);
            assert!(m.data().iter().all(|&b| b == 0xaa), "not copied into");
        }
        let s = c.snapshot();
        assert_eq!((s.packets, s.bytes, s.nombuf), (8, 480, 0));
        drop(burst);
        drop(q);
        assert_eq!(p.available(), 64);
    }

    #[test]
    fn copy_mode_copies_the_zeroed_dummy() {
        let os = MockOs::new();
        let p = pool(&os, 64);
        dirty(&p, 0xaa);
        let (mut q, _) = queue(&p, 100, true);
        let mut burst: [Option<Mbuf>; 4] = Default::default();
        assert_eq!(q.rx_burst(&mut burst), 4);
        for m in burst.iter().flatten() {
            assert_eq!(m.data().len(), 100);
            assert!(m.data().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn a_short_pool_gives_what_it_has_and_counts_the_rest() {
        let os = MockOs::new();
        let p = pool(&os, 40);
        let (mut q, c) = queue(&p, 64, false);
        let mut a: [Option<Mbuf>; 32] = Default::default();
        let mut b: [Option<Mbuf>; 32] = Default::default();
        assert_eq!(q.rx_burst(&mut a), 32);
        assert_eq!(q.rx_burst(&mut b), 8);
        assert!(b[..8].iter().all(Option::is_some) && b[8..].iter().all(Option::is_none));
        let mut e: [Option<Mbuf>; 4] = Default::default();
        assert_eq!(q.rx_burst(&mut e), 0);
        let s = c.snapshot();
        assert_eq!((s.packets, s.nombuf), (40, 24 + 4));
        drop((a, b));
        drop(q);
        assert_eq!(p.available(), 40);
    }

    #[test]
    fn stamps_the_port_and_can_receive_nothing() {
        let os = MockOs::new();
        let p = pool(&os, 16);
        let c = Arc::new(QueueCounters::new());
        let mut q = NullRx::new(None, p.clone(), 64, false, false, 7, c.clone());
        let mut burst: [Option<Mbuf>; 2] = Default::default();
        assert_eq!(q.rx_burst(&mut burst), 2);
        assert!(burst.iter().flatten().all(|m| m.port() == 7));
        let mut q = NullRx::new(None, p.clone(), 64, false, true, 7, c.clone());
        let mut more: [Option<Mbuf>; 2] = Default::default();
        assert_eq!(q.rx_burst(&mut more), 0);
        assert_eq!(c.snapshot().packets, 2);
        drop(burst);
        assert_eq!(p.available(), 16);
    }

    #[test]
    fn refilling_a_burst_array_frees_what_was_in_it() {
        let os = MockOs::new();
        let p = pool(&os, 32);
        let (mut q, _) = queue(&p, 64, false);
        let mut burst: [Option<Mbuf>; 8] = Default::default();
        for _ in 0..10 {
            assert_eq!(q.rx_burst(&mut burst), 8);
        }
        drop(burst);
        drop(q);
        assert_eq!(p.available(), 32);
    }
}
