//! Transmitting: mbuf chains out as descriptor chains, completions reclaimed in batches.

use crate::recover::{QueueSync, Recovery, Step};
use crate::rx::HDR;
use crate::stats::TxStats;
use alloc::sync::Arc;
use alloc::vec::Vec;
use rdk_core::addr::Iova;
use rdk_core::ethdev::{EthError, QueueCounters, TxOffload, TxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache};
use rdk_core::net::offload::TxRequest;
use rdk_core::os::DmaRegion;
use rdk_core::virtio::format::net_hdr_flags;
use rdk_core::virtio::{Anomaly, AnyQueue, Buf, Features, QueueNotify, Virtqueue};

/// Most descriptors one packet may take (its segments, plus a header descriptor).
pub const MAX_TX_SEGS: usize = 64;
/// Completions freed per batch.
const FREE_BATCH: usize = 32;
/// Bytes per slot of the header area (a net header, padded).
const HDR_SLOT: usize = 16;

/// The checksum offloads a `NET_CSUM` queue hands the device.
const CSUM_OFFLOADS: TxOffload = TxOffload::UDP_CKSUM.union(TxOffload::TCP_CKSUM);

/// The net header for a packet: all zero, or `NEEDS_CSUM` with the span of the TCP or UDP
/// checksum it asks for, checked against the frame (the device completes it from
/// `l2_len + l3_len` on; as on every NIC with this offload, the checksum field holds the
/// pseudo-header sum, §5.1.6.2).
#[inline(always)]
fn header(csum: Option<(u16, u16)>) -> [u8; HDR as usize] {
    let mut h = [0u8; HDR as usize];
    let Some((start, field)) = csum else {
        return h;
    };
    h[0] = net_hdr_flags::NEEDS_CSUM;
    h[6..8].copy_from_slice(&start.to_le_bytes());
    h[8..10].copy_from_slice(&field.to_le_bytes());
    h
}

/// Writes `hdr` into `at` unless it is there already — in a recycled mbuf it mostly is (all
/// zero): the line then stays shared with the device, which read it last time, instead of
/// being taken back from it (a cache-line transfer per packet).
#[inline(always)]
fn put_header(at: &mut [u8], hdr: &[u8; HDR as usize]) {
    if at != hdr {
        at.copy_from_slice(hdr);
    }
}

/// A virtio-net transmit queue.
pub struct VirtioTx<R: DmaRegion, N: QueueNotify> {
    pub(crate) q: Option<AnyQueue<R>>,
    pub(crate) region: Option<R>,
    /// One net header slot per chain id, for packets whose headroom cannot take one.
    hdrs: R,
    pub(crate) size: u16,
    mbufs: Vec<Option<Mbuf>>,
    pub(crate) notify: Option<N>,
    /// `NET_CSUM` negotiated: checksum requests in `ol_flags` become `NEEDS_CSUM` headers.
    pub(crate) csum: bool,
    free_thresh: u16,
    seen: (u32, [u32; Anomaly::COUNT]),
    counters: Arc<QueueCounters>,
    stats: Arc<TxStats>,
    /// The features of the last start, for a rebuild in a recovery.
    features: Features,
    /// A recovery's handoff: the new doorbell.
    pub(crate) sync: QueueSync<N>,
}

impl<R: DmaRegion, N: QueueNotify> VirtioTx<R, N> {
    pub(crate) fn new(
        region: R,
        hdrs: R,
        size: u16,
        counters: Arc<QueueCounters>,
        stats: Arc<TxStats>,
        rec: Arc<Recovery>,
    ) -> Self {
        Self {
            q: None,
            region: Some(region),
            hdrs,
            size,
            mbufs: (0..size).map(|_| None).collect(),
            notify: None,
            csum: false,
            free_thresh: (size / 2).max(1),
            seen: (0, [0; Anomaly::COUNT]),
            counters,
            stats,
            features: Features::empty(),
            sync: QueueSync::new(rec),
        }
    }

    /// Reclaims completions when fewer than `n` descriptors are free (DPDK's
    /// `tx_free_thresh`; default half the ring).
    pub fn set_free_thresh(&mut self, n: u16) {
        self.free_thresh = n.clamp(1, self.size);
    }

    /// Bytes of header area a queue of `size` needs.
    pub(crate) const fn hdr_bytes(size: u16) -> usize {
        size as usize * HDR_SLOT
    }

    /// Frees every packet in flight and rebuilds an empty ring for a reset device, at a
    /// start.
    pub(crate) fn rebuild(&mut self, features: Features) -> Result<&AnyQueue<R>, EthError> {
        self.notify = None;
        self.features = features;
        self.sync.started();
        self.reset_ring()
    }

    /// Frees every packet in flight (counted in `reset_dropped`: sent as far as the
    /// counters know, but the device may not have read them) and rebuilds the ring empty in
    /// the same memory, with the features of the last start.
    fn reset_ring(&mut self) -> Result<&AnyQueue<R>, EthError> {
        let mut dropped = 0;
        for m in self.mbufs.iter_mut() {
            dropped += m.take().is_some() as u64;
        }
        self.stats.reset_dropped.add(dropped);
        self.seen = (0, [0; Anomaly::COUNT]);
        self.csum = self.features.contains(Features::NET_CSUM);
        let region = match self.q.take() {
            Some(q) => q.into_region(),
            None => self.region.take().ok_or(crate::driver::lost_ring())?,
        };
        let q = crate::driver::fresh_queue(region, self.size, self.features)?;
        Ok(self.q.insert(q))
    }

    /// The port asked for a recovery (see [`crate::recover`]): rebuilds the ring once per
    /// epoch, then waits for the device. Returns whether the burst may go on.
    #[cold]
    #[inline(never)]
    fn resync(&mut self) -> bool {
        loop {
            match self.sync.step() {
                Step::Rebuild(epoch) => {
                    // What the device completed before it failed was sent: freed as such,
                    // so that `reset_dropped` counts only what it never finished.
                    self.reclaim();
                    if self.reset_ring().is_err() {
                        return false;
                    }
                    self.stats.resets.add(1);
                    self.sync.rebuilt(epoch);
                }
                Step::Wait => return false,
                Step::Resume(h) => {
                    if let Some(notify) = h {
                        self.notify = Some(notify);
                    }
                    return true;
                }
            }
        }
    }

    /// Whether the queue gave up on its device (too many anomalies).
    pub fn is_broken(&self) -> bool {
        self.q.as_ref().is_some_and(|q| q.health().is_broken())
    }

    /// Frees every completed packet now; returns how many came back.
    pub fn reclaim(&mut self) -> usize {
        self.reclaim_into(None)
    }

    /// [`reclaim`](Self::reclaim), into `cache` when given (mbufs of other pools still go
    /// to their own).
    fn reclaim_into(&mut self, mut cache: Option<&mut MbufCache>) -> usize {
        let Some(q) = self.q.as_mut() else { return 0 };
        let mut ids = [0u16; FREE_BATCH];
        let mut batch: [Option<Mbuf>; FREE_BATCH] = Default::default();
        let mut total = 0;
        loop {
            // Transmit chains are device-readable: completing them needs no length, so an
            // IN_ORDER split ring completes them from its used index alone.
            let n = q.complete_readable(&mut ids);
            let mut k = 0;
            for &id in &ids[..n] {
                if let Some(m) = self.mbufs.get_mut(id as usize).and_then(Option::take) {
                    batch[k] = Some(m);
                    k += 1;
                }
            }
            match cache.as_deref_mut() {
                Some(c) => c.free_bulk(&mut batch[..k]),
                None => Mbuf::free_bulk(&mut batch[..k]),
            }
            total += n;
            if n < FREE_BATCH {
                break;
            }
        }
        let (last, each) = &mut self.seen;
        crate::stats::sync_anomalies(q.health(), last, each, &self.stats.anomalies);
        total
    }

    /// The IOVA of header slot `id`.
    #[inline(always)]
    fn hdr_iova(&self, id: u16) -> Option<Iova> {
        self.hdrs.iova_at(id as usize * HDR_SLOT)
    }
}

impl<R: DmaRegion, N: QueueNotify> TxQueue for VirtioTx<R, N> {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut [Option<Mbuf>]) -> usize {
        self.burst(pkts, None)
    }

    #[inline]
    fn tx_burst_cached(&mut self, pkts: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        self.burst(pkts, Some(cache))
    }
}

impl<R: DmaRegion, N: QueueNotify> VirtioTx<R, N> {
    /// Transmits, reclaiming completions into `cache` when given.
    #[inline(always)]
    fn burst(&mut self, pkts: &mut [Option<Mbuf>], mut cache: Option<&mut MbufCache>) -> usize {
        if self.sync.moved() && !self.resync() {
            return 0;
        }
        let Some(q) = self.q.as_ref() else { return 0 };
        if q.health().is_broken() {
            let (last, each) = &mut self.seen;
            crate::stats::sync_anomalies(q.health(), last, each, &self.stats.anomalies);
            if self.stats.broken.get() == 0 {
                self.stats.broken.add(1);
            }
            return 0;
        }
        // Under back-pressure, reclaim and add in batches: the device then finds many new
        // chains at once, and its used entries are read once it has written a batch of them,
        // instead of both sides chasing each other one slot at a time (each costs a
        // cache-line transfer).
        let batch = (FREE_BATCH as u16).min(self.size / 4).max(1) as usize;
        let free_thresh = self.free_thresh;
        // Below the threshold, or too few free for this burst to go on (a `free_thresh`
        // set below `batch` would otherwise return 0 forever without reclaiming).
        let room = batch.min(pkts.len());
        if let Some(q) = self.q.as_mut() {
            if (q.num_free() < free_thresh || (q.num_free() as usize) < room)
                && q.ready_at_least(batch as u16)
            {
                self.reclaim_into(cache.as_deref_mut());
            }
        }
        if self
            .q
            .as_ref()
            .is_some_and(|q| (q.num_free() as usize) < room)
        {
            return 0;
        }
        let (mut taken, mut sent, mut bytes) = (0usize, 0u64, 0u64);
        for slot in pkts.iter_mut() {
            let Some(mut m) = slot.take() else { break };
            let len = m.pkt_len() as u64;
            // A checksum request must fit its frame; one that does not is dropped, counted.
            let csum = if self.csum {
                match TxRequest::check(&m, CSUM_OFFLOADS, u32::MAX) {
                    Ok(r) => r.csum,
                    Err(_) => {
                        self.stats.bad_offload.add(1);
                        self.counters.add_errors(1);
                        taken += 1;
                        continue;
                    }
                }
            } else {
                None
            };
            // Put the header in the headroom when the mbuf is ours alone (one descriptor
            // then for a one-segment packet); else a header descriptor from the queue's
            // header area.
            let push = !m.is_shared() && m.headroom() >= HDR;
            let need = m.nb_segs() as usize + !push as usize;
            if need > MAX_TX_SEGS {
                self.stats.too_many_segs.add(1);
                self.counters.add_errors(1);
                taken += 1;
                continue;
            }
            let Some(q) = self.q.as_mut() else { break };
            if (q.num_free() as usize) < need && q.ready_at_least((need.max(batch)) as u16) {
                self.reclaim_into(cache.as_deref_mut());
            }
            let added = if push && need == 1 {
                self.add_pushed(&mut m, csum)
            } else {
                self.add_chain(&mut m, push, csum)
            };
            match added {
                Some(id) => {
                    if let Some(s) = self.mbufs.get_mut(id as usize) {
                        *s = Some(m);
                    }
                    taken += 1;
                    sent += 1;
                    bytes += len;
                }
                None => {
                    *slot = Some(m);
                    break;
                }
            }
        }
        if sent > 0 {
            if let (Some(q), Some(n)) = (self.q.as_mut(), self.notify.as_ref()) {
                if q.kick_prepare() {
                    n.notify();
                }
            }
        }
        self.counters.add(sent, bytes);
        taken
    }

    /// A one-segment packet with its header pushed into its headroom: one descriptor.
    /// Returns its chain id, or `None` (the mbuf unchanged) if the queue is full.
    #[inline(always)]
    fn add_pushed(&mut self, m: &mut Mbuf, csum: Option<(u16, u16)>) -> Option<u16> {
        let q = self.q.as_mut()?;
        if q.num_free() == 0 {
            return None;
        }
        let hdr = header(csum);
        // Checked by the caller: not shared, headroom for the header. The mbuf itself is not
        // changed (no prepend): the descriptor starts HDR bytes before its data.
        put_header(m.front_mut(HDR).ok()?, &hdr);
        let at = Iova::new(m.data_iova().get().wrapping_sub(u64::from(HDR)));
        let buf = Buf::readable(at, u32::from(m.data_len()) + u32::from(HDR));
        q.add(core::slice::from_ref(&buf)).ok()
    }

    /// Any packet: its segments, the header pushed into the first one's headroom when
    /// `push`, else in a descriptor of its own from the header area. Returns its chain id, or
    /// `None` (the mbuf unchanged) if the queue has no room for it.
    #[inline(never)]
    fn add_chain(&mut self, m: &mut Mbuf, mut push: bool, csum: Option<(u16, u16)>) -> Option<u16> {
        let segs = m.nb_segs() as usize;
        let need = segs + !push as usize;
        let q = self.q.as_mut()?;
        let next = q.next_id().filter(|_| q.num_free() as usize >= need)?;
        let mut bufs = [Buf::readable(Iova::new(0), 0); MAX_TX_SEGS];
        let mut k = 0;
        let hdr = header(csum);
        if push {
            match m.prepend(HDR) {
                Ok(h) => put_header(h, &hdr),
                // Checked by the caller; were it refused, the header area serves.
                Err(_) => push = false,
            }
        }
        if !push {
            let iova = self.hdr_iova(next)?;
            // SAFETY: slot `next` is inside the area (hdr_iova found it) and belongs to an id
            // that is not in flight, so the device is not reading it.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    hdr.as_ptr(),
                    self.hdrs.as_ptr().add(next as usize * HDR_SLOT),
                    hdr.len(),
                )
            };
            bufs[0] = Buf::readable(iova, HDR as u32);
            k = 1;
        }
        for s in m.segments() {
            if s.data_len() == 0 {
                continue;
            }
            bufs[k] = Buf::readable(s.data_iova(), s.data_len() as u32);
            k += 1;
        }
        let q = self.q.as_mut()?;
        match q.add(&bufs[..k]) {
            Ok(id) => Some(id),
            Err(_) => {
                if push {
                    let _ = m.adj(HDR);
                }
                None
            }
        }
    }
}

impl<R: DmaRegion, N: QueueNotify> core::fmt::Debug for VirtioTx<R, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioTx")
            .field("size", &self.size)
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}
