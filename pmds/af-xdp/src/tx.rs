//! Transmit: mbufs of the UMEM's pool go out by address; everything else is copied into one.
//!
//! A single-segment mbuf whose data lies in the UMEM is handed to the kernel as is (its
//! address is a UMEM offset) and parked in a shadow (`inflight`, one flag per object) until
//! its address comes back on the completion ring, when it is freed. A chain, an mbuf of
//! another pool, or one whose object is already in flight (a shared mbuf sent twice) is copied
//! into a fresh mbuf of the UMEM's pool first. Completions are checked against the shadow: an
//! address rdk did not send is counted and ignored.
#![allow(unsafe_code)] // taking back mbufs the shadow says are in flight.

use crate::ring::Ring;
use crate::sys::{self, XdpDesc};
use crate::umem::Umem;
use crate::xsk::XskSock;
use rdk_core::ethdev::{Counter, QueueCounters, TxOffload, TxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache, PktMbufPool};
use rdk_core::net::offload::TxRequest;
use rdk_os_linux::sock::send_error_means_gone;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Smallest frame sent: an Ethernet header.
const MIN_FRAME: u32 = 14;

/// Transmit-side drop reasons (xstats).
#[derive(Debug, Default)]
pub(crate) struct TxDrops {
    /// Frames larger than the MTU allows or a chunk holds.
    pub too_big: Counter,
    /// Frames shorter than an Ethernet header.
    pub too_small: Counter,
    /// Bursts cut short by a full TX ring.
    pub ring_full: Counter,
    /// Bursts cut short because no mbuf was free to copy a frame into.
    pub no_buffer: Counter,
    /// Frames copied (chains, other pools) rather than sent by address.
    pub copied: Counter,
    /// Completion addresses naming nothing rdk sent.
    pub bad_completion: Counter,
    /// Ring indices the kernel published that cannot be.
    pub ring_anomalies: Counter,
    /// Offload requests that do not fit their frame (`TxRequest::check`).
    pub bad_offload: Counter,
    /// TCP/UDP checksums rdk completed itself (the kernel or device could not).
    pub sw_checksums: Counter,
}

impl TxDrops {
    /// Zeroes every counter (every field: a new one that is not zeroed here does not build).
    pub fn reset(&self) {
        rdk_core::reset_counters!(
            self,
            TxDrops {
                too_big,
                too_small,
                ring_full,
                no_buffer,
                copied,
                bad_completion,
                ring_anomalies,
                bad_offload,
                sw_checksums
            }
        );
    }
}

/// What a bound transmit queue sends: its largest frame, the checksum offloads it does, and
/// who completes TCP/UDP checksums.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxSetup {
    /// Largest frame (L2 included).
    pub max_frame: u32,
    /// Offloads asked for.
    pub offloads: TxOffload,
    /// The kernel or device, from TX metadata (else rdk).
    pub by_kernel: bool,
}

/// A `net_af_xdp` transmit queue.
#[derive(Debug)]
pub struct AfXdpTx {
    pub(crate) nb_desc: u32,
    counters: Arc<QueueCounters>,
    drops: Arc<TxDrops>,
    gone: Arc<AtomicBool>,
    /// Checksum offloads asked for (configure and queue setup).
    pub(crate) offloads: TxOffload,
    live: Option<TxLive>,
}

/// The bound half.
#[derive(Debug)]
pub(crate) struct TxLive {
    tx: Ring<XdpDesc>,
    comp: Ring<u64>,
    umem: Umem,
    pool: PktMbufPool,
    cache: MbufCache,
    inflight: Vec<bool>,
    pending: u32,
    max_frame: u32,
    /// Checksum offloads the queue does.
    offloads: TxOffload,
    /// TCP/UDP checksums go to the kernel (or device) as TX metadata; else rdk completes
    /// them.
    kernel_csum: bool,
    /// Last, so it drops after the rings (see `RxLive`).
    sock: Arc<XskSock>,
}

impl TxLive {
    pub(crate) fn new(
        sock: Arc<XskSock>,
        tx: Ring<XdpDesc>,
        comp: Ring<u64>,
        umem: Umem,
        pool: PktMbufPool,
        cache: MbufCache,
        setup: TxSetup,
    ) -> Self {
        Self {
            sock,
            tx,
            comp,
            inflight: vec![false; umem.count],
            umem,
            pool,
            cache,
            pending: 0,
            max_frame: setup.max_frame,
            offloads: setup.offloads,
            kernel_csum: setup.by_kernel,
        }
    }
}

impl TxLive {
    /// Frees what the completion ring returned, into `cache` if it is the pool's.
    fn reap(&mut self, cache: Option<&mut MbufCache>, drops: &TxDrops) {
        let cache = match cache {
            Some(c) if c.mempool().same_pool(self.pool.mempool()) => c,
            _ => &mut self.cache,
        };
        let Some(n) = self.comp.peek(u32::MAX) else {
            drops.ring_anomalies.add(1);
            return;
        };
        let start = self.comp.local();
        for k in 0..n {
            let addr = self.comp.read(start.wrapping_add(k));
            match self.umem.tx_object(addr).filter(|&i| self.inflight[i]) {
                Some(i) => {
                    self.inflight[i] = false;
                    self.pending -= 1;
                    // SAFETY: the shadow says object i was sent by `burst` from an mbuf
                    // given up with into_raw; its flag is now clear, so this is the only
                    // handle made from it.
                    cache.free(unsafe { Mbuf::from_raw(self.umem.object(i)) });
                }
                None => drops.bad_completion.add(1),
            }
        }
        if n > 0 {
            self.comp.release(n);
        }
    }
}

impl Drop for TxLive {
    fn drop(&mut self) {
        let u = self.umem;
        let parked = self
            .inflight
            .iter()
            .enumerate()
            .filter(|(_, &p)| p)
            .map(|(i, _)| u.object(i));
        self.sock.orphan(parked);
    }
}

impl AfXdpTx {
    pub(crate) fn new(
        nb_desc: u32,
        counters: Arc<QueueCounters>,
        drops: Arc<TxDrops>,
        gone: Arc<AtomicBool>,
        offloads: TxOffload,
    ) -> Self {
        Self {
            nb_desc,
            counters,
            drops,
            gone,
            offloads,
            live: None,
        }
    }

    pub(crate) fn attach(&mut self, live: TxLive) {
        self.live = Some(live);
    }

    /// Lets go of the socket: mbufs still in flight are freed once it is closed.
    pub(crate) fn detach(&mut self) {
        self.live = None;
    }

    /// Frames handed to the kernel and not completed yet.
    pub fn in_flight(&self) -> u32 {
        self.live.as_ref().map_or(0, |l| l.pending)
    }

    /// Frees what the completion ring returned.
    pub(crate) fn reap(&mut self, cache: Option<&mut MbufCache>) {
        if let Some(l) = self.live.as_mut() {
            l.reap(cache, &self.drops);
        }
    }

    #[inline(always)]
    fn burst(&mut self, pkts: &mut [Option<Mbuf>], mut cache: Option<&mut MbufCache>) -> usize {
        let Some(l) = self.live.as_mut() else {
            return 0;
        };
        l.reap(cache.as_deref_mut(), &self.drops);
        let room = match l.tx.free(pkts.len() as u32) {
            Some(r) => r,
            None => {
                self.drops.ring_anomalies.add(1);
                0
            }
        };
        let start = l.tx.local();
        let (mut taken, mut queued, mut bytes, mut errors) = (0usize, 0u32, 0u64, 0u64);
        // A frame that cannot go: counted under `$why` and as an error, freed, taken.
        macro_rules! refuse {
            ($why:ident, $m:expr) => {{
                self.drops.$why.add(1);
                errors += 1;
                free_into(&mut cache, $m);
                taken += 1;
                continue;
            }};
        }
        for slot in pkts.iter_mut() {
            let Some(mut m) = slot.take() else { break };
            let len = m.pkt_len();
            if len > l.max_frame {
                refuse!(too_big, m);
            }
            if len < MIN_FRAME {
                refuse!(too_small, m);
            }
            if queued == room {
                self.drops.ring_full.add(1);
                *slot = Some(m);
                break;
            }
            let (req, offload) = if l.offloads.is_empty() {
                (TxRequest::default(), Offload::default())
            } else {
                let Ok(r) = TxRequest::check(&m, l.offloads, u32::MAX) else {
                    refuse!(bad_offload, m);
                };
                (r, Offload::of(&r, l.kernel_csum))
            };
            // By address if the data is one segment inside a UMEM buffer not already in flight
            // (and, with offloads, ours to write: not shared, headroom for the metadata).
            let direct = (m.nb_segs() == 1)
                .then(|| l.umem.tx_addr(m.data().as_ptr() as usize, len as usize))
                .flatten()
                .filter(|&(i, _)| !l.inflight[i])
                .filter(|_| offload.is_none() || offload.apply(&req, &mut m));
            let (i, addr, raw) = match direct {
                Some((i, addr)) => {
                    let raw = m.into_raw();
                    if l.umem.object(i) != raw {
                        // The data is in object i but the header is another's (cannot happen
                        // with rdk's mbufs); send a copy instead.
                        // SAFETY: from into_raw just above.
                        let m = unsafe { Mbuf::from_raw(raw) };
                        match copy_out(l, &m, &req, offload) {
                            Some(c) => {
                                free_into(&mut cache, m);
                                c
                            }
                            None => {
                                self.drops.no_buffer.add(1);
                                *slot = Some(m);
                                break;
                            }
                        }
                    } else {
                        (i, addr, raw)
                    }
                }
                None => match copy_out(l, &m, &req, offload) {
                    Some(c) => {
                        self.drops.copied.add(1);
                        free_into(&mut cache, m);
                        c
                    }
                    None => {
                        self.drops.no_buffer.add(1);
                        *slot = Some(m);
                        break;
                    }
                },
            };
            if offload.software_l4 {
                self.drops.sw_checksums.add(1);
            }
            debug_assert_eq!(raw, l.umem.object(i));
            l.inflight[i] = true;
            l.tx.write(
                start.wrapping_add(queued),
                XdpDesc {
                    addr,
                    len,
                    options: if offload.metadata {
                        sys::XDP_TX_METADATA
                    } else {
                        0
                    },
                },
            );
            queued += 1;
            bytes += len as u64;
            taken += 1;
        }
        if queued > 0 {
            l.pending += queued;
            l.tx.submit(queued);
        }
        if (queued > 0 || l.tx.outstanding() > 0) && l.tx.needs_wakeup() {
            // Copy mode sends at most one batch per call: kick until the ring is drained or
            // the kernel stops making progress (bounded: one call per 32 frames, plus one).
            let mut tries = l.tx.size() / 32 + 2;
            loop {
                match sys::kick_tx(l.sock.fd()) {
                    Ok(sys::Kicked::More) if tries > 0 && l.tx.outstanding() > 0 => {
                        tries -= 1;
                        l.reap(cache.as_deref_mut(), &self.drops);
                    }
                    Ok(_) => break,
                    Err(e) => {
                        if send_error_means_gone(e) {
                            self.gone.store(true, Ordering::Relaxed);
                        }
                        // The frames stay in the ring for the next kick; count the failed kick.
                        errors += 1;
                        break;
                    }
                }
            }
        }
        self.counters.add(queued as u64, bytes);
        if errors > 0 {
            self.counters.add_errors(errors);
        }
        taken
    }
}

/// What a frame's offload request takes on the way out.
#[derive(Clone, Copy, Debug, Default)]
struct Offload {
    /// TX metadata in front of the frame asks the kernel (or device) for the TCP/UDP checksum.
    metadata: bool,
    /// rdk completes the TCP/UDP checksum.
    software_l4: bool,
    /// rdk rewrites the headers (IPv4 checksum).
    rewrite: bool,
}

impl Offload {
    #[inline(always)]
    fn of(req: &TxRequest, kernel_csum: bool) -> Self {
        let l4 = req.csum.is_some();
        Offload {
            metadata: l4 && kernel_csum,
            software_l4: l4 && !kernel_csum,
            rewrite: req.rewrite_len() > 0,
        }
    }

    #[inline(always)]
    fn is_none(&self) -> bool {
        !(self.metadata || self.software_l4 || self.rewrite)
    }

    /// Writes what `req` needs into `m` itself (its headroom, its first segment); `false`,
    /// with `m` untouched, if `m` is shared or its headroom cannot hold the metadata.
    fn apply(&self, req: &TxRequest, m: &mut Mbuf) -> bool {
        if self.metadata {
            let Ok(meta) = m.front_mut(sys::TX_METADATA_LEN as u16) else {
                return false;
            };
            let (start, offset) = req.csum.unwrap_or_default();
            meta.fill(0);
            meta[..8].copy_from_slice(&sys::XDP_TXMD_FLAGS_CHECKSUM.to_le_bytes());
            meta[8..10].copy_from_slice(&start.to_le_bytes());
            meta[10..12].copy_from_slice(&offset.to_le_bytes());
        }
        if self.software_l4 || self.rewrite {
            let Ok(data) = m.data_mut() else {
                return false;
            };
            if self.software_l4 {
                // Checked by TxRequest::check: the request fits this (one-segment) frame.
                let _ = req.finish_in_software(data);
            } else {
                let len = data.len() as u32;
                req.rewrite(&mut data[..req.rewrite_len()], len);
            }
        }
        true
    }
}

/// Copies `m` (any pool, any chain) into a fresh single-segment mbuf of the UMEM's pool, does
/// `offload` on the copy, and returns its object, descriptor address and header; `None` if
/// the pool is empty.
fn copy_out(
    l: &mut TxLive,
    m: &Mbuf,
    req: &TxRequest,
    offload: Offload,
) -> Option<(usize, u64, std::ptr::NonNull<rdk_core::mbuf::MbufHeader>)> {
    let mut c = l.cache.alloc()?;
    let len = m.pkt_len() as usize;
    // pkt_len <= max_frame <= the pool's data room (checked at start).
    let dst = c.append(len as u16).ok()?;
    m.copy_to(dst).ok()?;
    // A fresh mbuf: ours alone, its headroom whole.
    if !offload.is_none() && !offload.apply(req, &mut c) {
        return None;
    }
    let (i, addr) = l.umem.tx_addr(c.data().as_ptr() as usize, len)?;
    if l.inflight[i] {
        return None;
    }
    Some((i, addr, c.into_raw()))
}

fn free_into(cache: &mut Option<&mut MbufCache>, m: Mbuf) {
    match cache.as_deref_mut() {
        Some(c) => c.free(m),
        None => drop(m),
    }
}

impl TxQueue for AfXdpTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut [Option<Mbuf>]) -> usize {
        self.burst(pkts, None)
    }

    #[inline]
    fn tx_burst_cached(&mut self, pkts: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        self.burst(pkts, Some(cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::KernelSide;
    use rdk_core::mbuf::PktMbufPoolConfig;
    use std::os::fd::OwnedFd;

    fn mbuf_of(pool: &PktMbufPool, bytes: &[u8]) -> Mbuf {
        let mut m = pool.alloc().unwrap();
        m.append(bytes.len() as u16).unwrap().copy_from_slice(bytes);
        m
    }

    /// A bound 8-descriptor queue over `pool`'s UMEM whose rings the test plays the kernel
    /// of: the queue, the kernel's side of its TX and completion rings, its drop counters.
    fn fake_queue(
        pool: &PktMbufPool,
        offloads: TxOffload,
        by_kernel: bool,
    ) -> (AfXdpTx, KernelSide<XdpDesc>, KernelSide<u64>, Arc<TxDrops>) {
        let umem = crate::umem::Umem::of_pool(pool).unwrap();
        let fd: OwnedFd = std::os::unix::net::UnixDatagram::unbound().unwrap().into();
        let sock = Arc::new(XskSock::new(fd, pool.clone()));
        let (txr, tb) = Ring::<XdpDesc>::fake(8);
        let (comp, cb) = Ring::<u64>::fake(8);
        let drops = Arc::new(TxDrops::default());
        let counters = Arc::new(QueueCounters::new());
        let mut q = AfXdpTx::new(8, counters, drops.clone(), Arc::default(), offloads);
        let setup = TxSetup {
            max_frame: 1518,
            offloads,
            by_kernel,
        };
        let cache = pool.cache(16).unwrap();
        q.attach(TxLive::new(
            sock,
            txr,
            comp,
            umem,
            pool.clone(),
            cache,
            setup,
        ));
        (
            q,
            KernelSide::<XdpDesc>::new(tb, 8),
            KernelSide::<u64>::new(cb, 8),
            drops,
        )
    }

    /// The test plays the kernel: it reads TX descriptors, checks the bytes at their
    /// addresses and completes them — with lies in between.
    #[test]
    fn by_address_copies_and_hostile_completions() {
        let os = rdk_os_linux::LinuxOs::plain();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("htx", 128)).unwrap();
        let other = PktMbufPool::create(&os, &PktMbufPoolConfig::new("htx2", 16)).unwrap();
        let umem = crate::umem::Umem::of_pool(&pool).unwrap();
        let (mut q, ktx, kcomp, drops) = fake_queue(&pool, TxOffload::empty(), false);

        let frames: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 60 + i as usize]).collect();
        let mut chain = mbuf_of(&pool, &frames[2][..20]);
        chain.chain(mbuf_of(&pool, &frames[2][20..])).unwrap();
        let direct = mbuf_of(&pool, &frames[0]);
        let direct_at = direct.data().as_ptr() as usize;
        let mut burst = [
            Some(direct),
            Some(mbuf_of(&other, &frames[1])),
            Some(chain),
            Some(mbuf_of(&pool, &[0; 2000])),
            Some(mbuf_of(&pool, &[0; 5])),
        ];
        assert_eq!(q.tx_burst(&mut burst), 5);
        assert_eq!(
            (
                drops.too_big.get(),
                drops.too_small.get(),
                drops.copied.get()
            ),
            (1, 1, 2)
        );
        assert_eq!(ktx.prod(), 3);
        let descs: Vec<XdpDesc> = (0..3).map(|i| ktx.read(i)).collect();
        assert_eq!(
            umem.base + descs[0].addr as usize,
            direct_at,
            "sent by address"
        );
        for (x, f) in descs.iter().zip(&frames) {
            // SAFETY: the descriptor's bytes, inside the UMEM (checked by tx_addr).
            let got = unsafe {
                std::slice::from_raw_parts(
                    (umem.base + x.addr as usize) as *const u8,
                    x.len as usize,
                )
            };
            assert_eq!(got, &f[..]);
        }
        assert_eq!(
            other.available(),
            other.size(),
            "the copied-from mbuf was freed"
        );
        ktx.set_cons(3);
        assert_eq!(q.in_flight(), 3);
        for (i, a) in [
            descs[0].addr,
            u64::MAX,
            descs[0].addr,
            descs[1].addr + 4096 * 7,
            descs[1].addr,
        ]
        .iter()
        .enumerate()
        {
            kcomp.write(i as u32, *a);
        }
        kcomp.set_prod(5);
        assert_eq!(q.tx_burst(&mut []), 0);
        assert_eq!(
            drops.bad_completion.get(),
            3,
            "garbage, a duplicate, a stranger"
        );
        assert_eq!(q.in_flight(), 1, "the third frame is still out");
        assert_eq!(kcomp.cons(), 5);
        kcomp.set_prod(5 + 9);
        q.tx_burst(&mut []);
        assert_eq!(drops.ring_anomalies.get(), 1);
        q.detach();
        drop(q);
        assert_eq!(
            pool.available(),
            pool.size(),
            "the frame never completed came back too"
        );
    }

    /// Checksum offloads, the test playing the kernel: with kernel checksums the frame goes by
    /// address behind TX metadata (flags, csum_start, csum_offset in the 24 bytes before it,
    /// `XDP_TX_METADATA` in the descriptor) and its IPv4 header filled; without, rdk completes
    /// the UDP checksum itself. A shared mbuf is copied (its own bytes untouched), a request
    /// that does not fit is dropped and counted.
    #[test]
    fn checksum_offloads_by_metadata_or_in_software() {
        use rdk_core::mbuf::{OlFlags, RxCksum};
        use rdk_core::net::checksum::{fold, pseudo_header, verify_frame_checksums};
        let os = rdk_os_linux::LinuxOs::plain();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("ctx", 64)).unwrap();
        let umem = crate::umem::Umem::of_pool(&pool).unwrap();
        // A UDP datagram asking for IPv4 and UDP checksums (zero / the pseudo-header sum).
        let frame = |pool: &PktMbufPool, l3: u16| {
            let payload = b"offloaded!";
            let mut f = vec![0u8; 42 + payload.len()];
            f[12..14].copy_from_slice(&[8, 0]);
            f[14] = 0x45;
            f[16..18].copy_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
            f[22] = 64;
            f[23] = 17;
            f[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            f[34..38].copy_from_slice(&[0x13, 0x88, 0x27, 0x0f]);
            f[38..40].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            let seed = fold(pseudo_header(
                [10, 0, 0, 1].into(),
                [10, 0, 0, 2].into(),
                17,
                (8 + payload.len()) as u16,
            ));
            f[40..42].copy_from_slice(&seed.to_be_bytes());
            f[42..].copy_from_slice(payload);
            let mut m = mbuf_of(pool, &f);
            {
                let mut meta = m.meta_mut().unwrap();
                meta.set_ol_flags(OlFlags::TX_IPV4 | OlFlags::TX_IP_CKSUM | OlFlags::TX_UDP_CKSUM);
                let mut t = meta.tx_offload();
                t.set_l2_len(14).unwrap();
                t.set_l3_len(l3).unwrap();
                meta.set_tx_offload(t);
            }
            m
        };
        let offloads = TxOffload::IPV4_CKSUM | TxOffload::UDP_CKSUM;
        for kernel_csum in [true, false] {
            let (mut q, ktx, kcomp, drops) = fake_queue(&pool, offloads, kernel_csum);
            let own = frame(&pool, 20);
            let own_at = own.data().as_ptr() as usize;
            let shared = frame(&pool, 20);
            let keep = shared.share().unwrap();
            let mut burst = [Some(own), Some(shared), Some(frame(&pool, 60))];
            assert_eq!(q.tx_burst(&mut burst), 3);
            assert_eq!(drops.bad_offload.get(), 1, "l3_len past the frame");
            assert_eq!(drops.copied.get(), 1, "the shared mbuf");
            assert_eq!(drops.sw_checksums.get(), if kernel_csum { 0 } else { 2 });
            assert_eq!(ktx.prod(), 2);
            for k in 0..2 {
                let d = ktx.read(k);
                let at = umem.base + d.addr as usize;
                if k == 0 {
                    assert_eq!(at, own_at, "the unshared mbuf goes by address");
                }
                // SAFETY: the descriptor's bytes and the 24 in front, inside the UMEM mbuf.
                let (meta, f) = unsafe {
                    (
                        std::slice::from_raw_parts((at - 24) as *const u8, 24),
                        std::slice::from_raw_parts(at as *const u8, d.len as usize),
                    )
                };
                let (ip, l4) = verify_frame_checksums(f);
                assert_eq!(ip, RxCksum::Good, "IPv4 header filled");
                if kernel_csum {
                    assert_eq!(d.options, sys::XDP_TX_METADATA);
                    assert_eq!(&meta[..8], &sys::XDP_TXMD_FLAGS_CHECKSUM.to_le_bytes());
                    assert_eq!(&meta[8..12], &[34, 0, 6, 0], "csum_start 34, csum_offset 6");
                    assert_eq!(l4, RxCksum::Bad, "left to the kernel");
                } else {
                    assert_eq!(d.options, 0);
                    assert_eq!(l4, RxCksum::Good, "completed by rdk");
                }
            }
            assert_eq!(
                &keep.data()[24..26],
                &[0, 0],
                "the shared mbuf's bytes untouched"
            );
            drop(keep);
            ktx.set_cons(2);
            for k in 0..2 {
                kcomp.write(k, ktx.read(k).addr);
            }
            kcomp.set_prod(2);
            q.tx_burst(&mut []);
            assert_eq!(q.in_flight(), 0);
            q.detach();
        }
        assert_eq!(pool.available(), pool.size(), "every mbuf back");
    }
}
