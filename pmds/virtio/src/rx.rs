//! Receiving: buffers from the queue's mempool in a virtqueue, frames out as mbufs.

use crate::recover::{QueueSync, Recovery, Step};
use crate::stats::RxStats;
use alloc::sync::Arc;
use alloc::vec::Vec;
use rdk_core::ethdev::{EthError, QueueCounters, RxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache, PktMbufPool, RxCksum};
use rdk_core::os::{DmaRegion, EventNotifier, WaitHandle};
use rdk_core::virtio::format::{net_hdr_flags, NetHdr};
use rdk_core::virtio::{Anomaly, AnyQueue, Buf, Completion, Features, QueueNotify, Virtqueue};
use zerocopy::{FromBytes, FromZeros};

/// Bytes of the net header (`VERSION_1`).
pub(crate) const HDR: u16 = 12;
/// Buffers allocated per refill step.
const REFILL_BATCH: usize = 32;
/// Completions taken from the ring before their frames are looked at.
const POP_BATCH: usize = 32;

/// What the driver leaves a receive queue when the device is back after a recovery: its
/// doorbell and interrupt event.
pub(crate) type RxHandoff<N, E> = (N, Option<Arc<E>>);

/// A virtio-net receive queue.
pub struct VirtioRx<R: DmaRegion, N: QueueNotify, E: EventNotifier> {
    pub(crate) q: Option<AnyQueue<R>>,
    pub(crate) region: Option<R>,
    pub(crate) size: u16,
    mbufs: Vec<Option<Mbuf>>,
    pool: PktMbufPool,
    pub(crate) notify: Option<N>,
    pub(crate) irq: Option<Arc<E>>,
    mrg: bool,
    csum: bool,
    port: u16,
    /// A merged frame still collecting buffers: head, buffers still to come.
    pending: Option<(Mbuf, u16)>,
    /// Buffers still to come of a merged frame that was dropped: discarded on arrival.
    skip: u16,
    refill_thresh: u16,
    seen: (u32, [u32; Anomaly::COUNT]),
    counters: Arc<QueueCounters>,
    stats: Arc<RxStats>,
    /// The features and checksum choice of the last start, for a rebuild in a recovery.
    features: Features,
    rx_cksum: bool,
    pub(crate) sync: QueueSync<RxHandoff<N, E>>,
}

impl<R: DmaRegion, N: QueueNotify, E: EventNotifier> VirtioRx<R, N, E> {
    pub(crate) fn new(
        region: R,
        size: u16,
        pool: PktMbufPool,
        port: u16,
        counters: Arc<QueueCounters>,
        stats: Arc<RxStats>,
        rec: Arc<Recovery>,
    ) -> Self {
        Self {
            q: None,
            region: Some(region),
            size,
            mbufs: (0..size).map(|_| None).collect(),
            pool,
            notify: None,
            irq: None,
            mrg: false,
            csum: false,
            port,
            pending: None,
            skip: 0,
            refill_thresh: (size / 4).clamp(1, REFILL_BATCH as u16),
            seen: (0, [0; Anomaly::COUNT]),
            counters,
            stats,
            features: Features::empty(),
            rx_cksum: false,
            sync: QueueSync::new(rec),
        }
    }

    /// Frees every buffer and rebuilds an empty ring for a device that was just reset, at a
    /// start; checksum flags are reported when `GUEST_CSUM` was negotiated and `rx_cksum`
    /// asked.
    pub(crate) fn rebuild(
        &mut self,
        features: Features,
        rx_cksum: bool,
    ) -> Result<&AnyQueue<R>, EthError> {
        self.notify = None;
        self.irq = None;
        self.features = features;
        self.rx_cksum = rx_cksum;
        self.sync.started();
        self.reset_ring()
    }

    /// Frees every buffer (a merged frame still collecting is dropped, counted in
    /// `reset_dropped`) and rebuilds the ring empty in the same memory, with the features of
    /// the last start.
    fn reset_ring(&mut self) -> Result<&AnyQueue<R>, EthError> {
        self.mbufs.iter_mut().for_each(|m| *m = None);
        if self.pending.take().is_some() {
            self.stats.reset_dropped.add(1);
        }
        self.skip = 0;
        self.seen = (0, [0; Anomaly::COUNT]);
        let features = self.features;
        self.mrg = features.contains(Features::NET_MRG_RXBUF);
        self.csum = self.rx_cksum && features.contains(Features::NET_GUEST_CSUM);
        let region = match self.q.take() {
            Some(q) => q.into_region(),
            None => self.region.take().ok_or(crate::driver::lost_ring())?,
        };
        let q = crate::driver::fresh_queue(region, self.size, features)?;
        Ok(self.q.insert(q))
    }

    /// The port asked for a recovery (see [`crate::recover`]): rebuilds the ring and posts
    /// fresh buffers (no doorbell: the device is reset) once per epoch, then waits for the
    /// device. Returns whether the burst may go on.
    #[cold]
    #[inline(never)]
    fn resync(&mut self) -> bool {
        loop {
            match self.sync.step() {
                Step::Rebuild(epoch) => {
                    if self.reset_ring().is_err() {
                        // Nothing to rebuild (a queue that lost its ring): never acknowledged,
                        // the link stays down until the port is started again.
                        return false;
                    }
                    self.refill(None);
                    // Publishes the buffers (the avail index of a split ring) for the device
                    // to find when it comes up; there is no device to notify yet.
                    if let Some(q) = self.q.as_mut() {
                        let _ = q.kick_prepare();
                    }
                    self.stats.resets.add(1);
                    self.sync.rebuilt(epoch);
                }
                Step::Wait => return false,
                Step::Resume(h) => {
                    if let Some((notify, irq)) = h {
                        self.notify = Some(notify);
                        self.irq = irq;
                    }
                    return true;
                }
            }
        }
    }

    /// Refills once at least `n` descriptors are free (DPDK's `rx_free_thresh`; default a
    /// quarter of the ring, at most 32).
    pub fn set_refill_thresh(&mut self, n: u16) {
        self.refill_thresh = n.clamp(1, self.size);
    }

    /// Fills every free descriptor with a fresh mbuf and tells the device.
    pub(crate) fn fill(&mut self) {
        self.refill(None);
        self.kick();
    }

    /// The interrupt event, when interrupts are set up.
    pub fn irq(&self) -> Option<&Arc<E>> {
        self.irq.as_ref()
    }

    /// Whether the queue gave up on its device (too many anomalies).
    pub fn is_broken(&self) -> bool {
        self.q.as_ref().is_some_and(|q| q.health().is_broken())
    }

    #[inline]
    fn kick(&mut self) {
        if let (Some(q), Some(n)) = (self.q.as_mut(), self.notify.as_ref()) {
            if q.kick_prepare() {
                n.notify();
            }
        }
    }

    /// Gives the device fresh buffers for every free descriptor the pool can fill, from
    /// `cache` when it is the pool's.
    #[inline]
    fn refill(&mut self, cache: Option<&mut MbufCache>) {
        let Some(q) = self.q.as_mut() else { return };
        let mut cache = cache.filter(|c| c.mempool().same_pool(self.pool.mempool()));
        let mut batch: [Option<Mbuf>; REFILL_BATCH] = Default::default();
        while q.num_free() > 0 {
            let want = (q.num_free() as usize).min(REFILL_BATCH);
            let bulk = match cache.as_deref_mut() {
                Some(c) => c.alloc_bulk(&mut batch[..want]),
                None => self.pool.alloc_bulk(&mut batch[..want]),
            };
            let got = if bulk {
                want
            } else {
                let mut k = 0;
                while k < want {
                    let one = match cache.as_deref_mut() {
                        Some(c) => c.alloc(),
                        None => self.pool.alloc(),
                    };
                    match one {
                        Some(m) => batch[k] = Some(m),
                        None => break,
                    }
                    k += 1;
                }
                k
            };
            let mut refused = false;
            for slot in &mut batch[..got] {
                let Some(m) = slot.take() else { continue };
                // The header goes into the headroom right before the data (checked at setup:
                // headroom >= 12), so the frame lands at the usual data offset.
                let buf = Buf::writable(
                    rdk_core::addr::Iova::new(m.data_iova().get() - HDR as u64),
                    m.tailroom() as u32 + HDR as u32,
                );
                match q.add(&[buf]) {
                    Ok(id) => self.mbufs[id as usize] = Some(m),
                    Err(_) => {
                        // A broken queue takes nothing, however many descriptors are free:
                        // stop (the mbufs left in `batch` go back to the pool on return).
                        refused = true;
                        break;
                    }
                }
            }
            if refused {
                return;
            }
            if got < want {
                self.counters.add_nombuf((want - got) as u64);
                break;
            }
        }
    }

    /// Drops the frame being merged, whose `rem` further buffers are still to come (one of
    /// which may be the one that failed: `arrived`).
    #[cold]
    fn drop_merged(&mut self, rem: u16, arrived: bool) {
        self.stats.broken_chain.add(1);
        self.counters.add_errors(1);
        self.skip = rem - arrived as u16;
    }
}

/// What `shape` does with the net header in front of a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hdr {
    /// Read it (its frame starts after it).
    Read,
    /// Skip it unread (its frame starts after it): nothing in it was asked for, and not
    /// touching it spares the cache line the device just wrote.
    Skip,
    /// None: a further buffer of a merged frame, data from its start.
    None,
}

/// Makes `m` hold the `len` bytes the device wrote from `HDR` bytes before its data offset;
/// returns the header when `hdr` is [`Hdr::Read`].
#[inline]
fn shape(m: &mut Mbuf, len: u32, hdr: Hdr) -> Result<Option<NetHdr>, ()> {
    let len = len as u16;
    if hdr != Hdr::None {
        let payload = len.checked_sub(HDR).ok_or(())?;
        m.append(payload).map_err(|_| ())?;
        if hdr == Hdr::Skip {
            return Ok(None);
        }
        let h = m.prepend(HDR).map_err(|_| ())?;
        let hdr = NetHdr::read_from_bytes(h).map_err(|_| ())?;
        m.adj(HDR).map_err(|_| ())?;
        Ok(Some(hdr))
    } else {
        m.prepend(HDR).map_err(|_| ())?;
        if len >= HDR {
            m.append(len - HDR).map_err(|_| ())?;
        } else {
            m.trim(HDR - len).map_err(|_| ())?;
        }
        Ok(None)
    }
}

impl<R: DmaRegion, N: QueueNotify, E: EventNotifier> RxQueue for VirtioRx<R, N, E> {
    #[inline]
    fn rx_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        self.burst(out, None)
    }

    #[inline]
    fn rx_burst_cached(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        self.burst(out, Some(cache))
    }

    fn intr_enable(&mut self) -> Result<(), EthError> {
        self.intr_on()
    }

    fn intr_disable(&mut self) -> Result<(), EthError> {
        self.intr_off()
    }

    fn intr_handle(&self) -> Option<WaitHandle> {
        self.irq.as_ref().and_then(|e| e.wait_handle())
    }
}

impl<R: DmaRegion, N: QueueNotify, E: EventNotifier> VirtioRx<R, N, E> {
    /// Receives, refilling from `cache` when given (and the pool's).
    #[inline(always)]
    fn burst(&mut self, out: &mut [Option<Mbuf>], cache: Option<&mut MbufCache>) -> usize {
        if self.sync.moved() && !self.resync() {
            return 0;
        }
        let Some(q) = self.q.as_mut() else { return 0 };
        if q.health().is_broken() {
            let (last, each) = &mut self.seen;
            crate::stats::sync_anomalies(q.health(), last, each, &self.stats.anomalies);
            if self.stats.broken.get() == 0 {
                self.stats.broken.add(1);
            }
            return 0;
        }
        let size = self.size;
        let mut n = 0;
        let mut bytes = 0u64;
        let read_hdr = self.mrg || self.csum;
        let mut comps = [Completion::Dropped {
            id: None,
            anomaly: Anomaly::UnknownId,
        }; POP_BATCH];
        while n < out.len() {
            // The completions first, then (when headers are read) a prefetch of every header
            // line the device just wrote, then the frames: the line transfers overlap instead
            // of each read waiting for the one before (packed mrg1 h2v 22.3 -> 24.8 Mpps, split
            // mrg1 23.1 -> 23.8 against DPDK's vhost). Prefetching the descriptors as well was
            // slower: it takes lines the device has not written yet away from it.
            // At most one frame per completion, so `out` has room for all of them.
            let want = (out.len() - n).min(POP_BATCH);
            let mut k = 0;
            if let Some(q) = self.q.as_mut() {
                while k < want {
                    let Some(c) = q.pop_used() else { break };
                    comps[k] = c;
                    k += 1;
                }
            }
            if read_hdr {
                for c in &comps[..k] {
                    if let Completion::Done(u) = c {
                        if let Some(Some(m)) = self.mbufs.get(u.id as usize) {
                            m.prefetch_front(HDR);
                        }
                    }
                }
            }
            for &c in &comps[..k] {
                let u = match c {
                    Completion::Done(u) => u,
                    Completion::Dropped { id, .. } => {
                        if let Some(id) = id {
                            self.mbufs[id as usize] = None;
                        }
                        if let Some((_, rem)) = self.pending.take() {
                            self.drop_merged(rem, true);
                        } else if self.skip > 0 {
                            self.skip -= 1;
                        } else {
                            self.counters.add_errors(1);
                        }
                        continue;
                    }
                };
                // Cannot be None: the queue returns only ids in flight, each with its mbuf.
                let Some(mut m) = self.mbufs[u.id as usize].take() else {
                    continue;
                };
                if self.skip > 0 {
                    self.skip -= 1;
                    continue;
                }
                if let Some((mut head, rem)) = self.pending.take() {
                    if shape(&mut m, u.len, Hdr::None).is_err() || head.chain(m).is_err() {
                        self.drop_merged(rem, true);
                        continue;
                    }
                    if rem > 1 {
                        self.pending = Some((head, rem - 1));
                        continue;
                    }
                    bytes += head.pkt_len() as u64;
                    out[n] = Some(head);
                    n += 1;
                    continue;
                }
                let how = if self.mrg || self.csum {
                    Hdr::Read
                } else {
                    Hdr::Skip
                };
                let hdr = match shape(&mut m, u.len, how) {
                    Ok(Some(h)) => h,
                    Ok(None) if how == Hdr::Skip => NetHdr::new_zeroed(),
                    _ => {
                        self.stats.runt.add(1);
                        self.counters.add_errors(1);
                        continue;
                    }
                };
                if let Ok(mut meta) = m.meta_mut() {
                    if self.csum {
                        let f = meta.ol_flags();
                        if hdr.flags & net_hdr_flags::DATA_VALID != 0 {
                            meta.set_ol_flags(f.with_rx_l4_cksum(RxCksum::Good));
                        } else if hdr.flags & net_hdr_flags::NEEDS_CSUM != 0 {
                            // The data is good; the checksum field is partial (§5.1.6.4).
                            meta.set_ol_flags(f.with_rx_l4_cksum(RxCksum::Verified));
                        }
                    }
                    if self.port != rdk_core::mbuf::PORT_INVALID {
                        meta.set_port(self.port);
                    }
                }
                let nbuf = if self.mrg { hdr.num_buffers.get() } else { 1 };
                if nbuf == 0 || nbuf > size {
                    self.stats.bad_num_buffers.add(1);
                    self.counters.add_errors(1);
                    continue;
                }
                if nbuf > 1 {
                    self.pending = Some((m, nbuf - 1));
                    continue;
                }
                bytes += m.pkt_len() as u64;
                out[n] = Some(m);
                n += 1;
            }
            if k < want {
                break;
            }
        }
        self.counters.add(n as u64, bytes);
        if let Some(q) = self.q.as_ref() {
            let (last, each) = &mut self.seen;
            crate::stats::sync_anomalies(q.health(), last, each, &self.stats.anomalies);
        }
        if self
            .q
            .as_ref()
            .is_some_and(|q| q.num_free() >= self.refill_thresh)
        {
            self.refill(cache);
            self.kick();
        }
        n
    }

    fn intr_on(&mut self) -> Result<(), EthError> {
        let (Some(q), Some(irq)) = (self.q.as_mut(), self.irq.as_ref()) else {
            return Err(EthError::NotSupported {
                op: "rx interrupts (configure the port with rx_interrupts)",
            });
        };
        // A count left from before (a device that signalled while the interrupt was being
        // turned off, or one that signals its first used update regardless, as DPDK's vhost
        // does with EVENT_IDX) would end the coming sleep at once; from here on a signal means
        // what it says. Cold path: once per sleep.
        let _ = irq.ack();
        if q.enable_interrupts() {
            // Something arrived meanwhile: wake the waiter now rather than never.
            let _ = irq.signal();
        }
        Ok(())
    }

    fn intr_off(&mut self) -> Result<(), EthError> {
        if let Some(q) = self.q.as_mut() {
            q.disable_interrupts();
        }
        if let Some(irq) = self.irq.as_ref() {
            let _ = irq.ack();
        }
        Ok(())
    }
}

impl<R: DmaRegion, N: QueueNotify, E: EventNotifier> core::fmt::Debug for VirtioRx<R, N, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioRx")
            .field("size", &self.size)
            .field("mrg", &self.mrg)
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}
