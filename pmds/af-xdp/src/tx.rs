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
use nix::errno::Errno;
use rdk_core::ethdev::{Counter, QueueCounters, TxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache, PktMbufPool};
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
}

/// A `net_af_xdp` transmit queue.
#[derive(Debug)]
pub struct AfXdpTx {
    pub(crate) nb_desc: u32,
    counters: Arc<QueueCounters>,
    drops: Arc<TxDrops>,
    gone: Arc<AtomicBool>,
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
        max_frame: u32,
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
            max_frame,
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
    ) -> Self {
        Self {
            nb_desc,
            counters,
            drops,
            gone,
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
        for slot in pkts.iter_mut() {
            let Some(m) = slot.take() else { break };
            let len = m.pkt_len();
            if !(MIN_FRAME..=l.max_frame).contains(&len) {
                if len > l.max_frame {
                    self.drops.too_big.add(1);
                } else {
                    self.drops.too_small.add(1);
                }
                errors += 1;
                free_into(&mut cache, m);
                taken += 1;
                continue;
            }
            if queued == room {
                self.drops.ring_full.add(1);
                *slot = Some(m);
                break;
            }
            // By address if the data is one segment inside a UMEM buffer not already in flight.
            let direct = (m.nb_segs() == 1)
                .then(|| l.umem.tx_addr(m.data().as_ptr() as usize, len as usize))
                .flatten()
                .filter(|&(i, _)| !l.inflight[i]);
            let (i, addr, raw) = match direct {
                Some((i, addr)) => {
                    let raw = m.into_raw();
                    if l.umem.object(i) != raw {
                        // The data is in object i but the header is another's (cannot happen
                        // with rdk's mbufs); send a copy instead.
                        // SAFETY: from into_raw just above.
                        let m = unsafe { Mbuf::from_raw(raw) };
                        match copy_out(l, &m) {
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
                None => match copy_out(l, &m) {
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
            debug_assert_eq!(raw, l.umem.object(i));
            l.inflight[i] = true;
            l.tx.write(
                start.wrapping_add(queued),
                XdpDesc {
                    addr,
                    len,
                    options: 0,
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
                        if matches!(e, Errno::ENXIO | Errno::ENODEV | Errno::ENETDOWN) {
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

/// Copies `m` (any pool, any chain) into a fresh single-segment mbuf of the UMEM's pool and
/// returns its object, descriptor address and header; `None` if the pool is empty.
fn copy_out(
    l: &mut TxLive,
    m: &Mbuf,
) -> Option<(usize, u64, std::ptr::NonNull<rdk_core::mbuf::MbufHeader>)> {
    let mut c = l.cache.alloc()?;
    let len = m.pkt_len() as usize;
    // pkt_len <= max_frame <= the pool's data room (checked at start).
    let dst = c.append(len as u16).ok()?;
    m.copy_to(dst).ok()?;
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

    /// The test plays the kernel: it reads TX descriptors, checks the bytes at their
    /// addresses and completes them — with lies in between.
    #[test]
    fn by_address_copies_and_hostile_completions() {
        let os = rdk_os_linux::LinuxOs::plain();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("htx", 128)).unwrap();
        let other = PktMbufPool::create(&os, &PktMbufPoolConfig::new("htx2", 16)).unwrap();
        let umem = crate::umem::Umem::of_pool(&pool).unwrap();
        let fd: OwnedFd = std::os::unix::net::UnixDatagram::unbound().unwrap().into();
        let sock = Arc::new(XskSock::new(fd, pool.clone()));
        let (txr, tb) = Ring::<XdpDesc>::fake(8);
        let (comp, cb) = Ring::<u64>::fake(8);
        let (ktx, kcomp) = (
            KernelSide::<XdpDesc>::new(tb, 8),
            KernelSide::<u64>::new(cb, 8),
        );
        let counters = Arc::new(QueueCounters::new());
        let drops = Arc::new(TxDrops::default());
        let mut q = AfXdpTx::new(8, counters.clone(), drops.clone(), Arc::default());
        let cache = pool.cache(16).unwrap();
        q.attach(TxLive::new(
            sock,
            txr,
            comp,
            umem,
            pool.clone(),
            cache,
            1518,
        ));

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
}
