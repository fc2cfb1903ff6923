//! The bursts: one `readv` or `writev` per frame (the TAP interface has no ring to share), one
//! counter update per burst.

use crate::tun::{read_frame, write_frame, MAX_IOV, MAX_SEGS, TX_MAX_SEGS, VNET_HDR};
use nix::errno::Errno;
use rdk_core::ethdev::TxOffload;
use rdk_core::ethdev::{Counter, EthError, QueueCounters, RxQueue, TxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache, PktMbufPool, RxCksum};
use rdk_core::net::checksum::verify_chain_checksums;
use rdk_core::net::offload::{TxRequest, MAX_REWRITE};
use rdk_core::os::WaitHandle;
use rdk_core::virtio::format::net_hdr_flags;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Per-queue drop reasons beyond the generic counters (reported as xstats).
#[derive(Debug, Default)]
pub(crate) struct Drops {
    /// Receive: frames longer than the buffers could hold (truncated by the kernel, dropped).
    pub rx_too_big: Counter,
    /// Transmit: frames longer than the MTU allows.
    pub tx_too_big: Counter,
    /// Transmit: chains of more segments than one `writev` takes.
    pub tx_too_many_segs: Counter,
    /// Transmit: bursts cut short because the kernel queue was full.
    pub tx_full: Counter,
    /// Receive: frames behind a net header rdk did not ask for (GSO, or shorter than the
    /// header). Transmit: offload requests that do not fit the frame (`TxRequest::check`).
    pub bad_offload: Counter,
}

impl Drops {
    /// Zeroes every reason (every field: a new one that is not zeroed here does not build).
    pub fn reset(&self) {
        rdk_core::reset_counters!(
            self,
            Drops {
                rx_too_big,
                tx_too_big,
                tx_too_many_segs,
                tx_full,
                bad_offload
            }
        );
    }
}

/// Reads one receive burst makes at most, per slot of its array: room for dropped frames
/// beside the ones it returns, but a bound (DPDK's virtio PMD takes at most `nb_pkts` used
/// descriptors per burst, the runts it drops among them).
const RX_READS_PER_SLOT: usize = 4;

/// Errors that mean the interface is gone (deleted under us).
fn is_gone(e: Errno) -> bool {
    matches!(e, Errno::EBADFD | Errno::EIO | Errno::ENODEV | Errno::ENXIO)
}

/// A `net_tap` receive queue.
#[derive(Debug)]
pub struct TapRx {
    core: RxCore,
    pool: PktMbufPool,
    cache: MbufCache,
}

/// What a receive needs besides the cache it allocates from.
#[derive(Debug)]
pub(crate) struct RxCore {
    pub fd: Arc<OwnedFd>,
    pub counters: Arc<QueueCounters>,
    pub drops: Arc<Drops>,
    /// Bytes of data one mbuf of the pool takes.
    pub room: u32,
    /// The longest frame the port's MTU allows now (the driver updates it on `set_mtu`).
    pub max_frame: Arc<AtomicU32>,
    /// The `max_frame` that [`segs`](Self::segs) was worked out for (0: not yet).
    pub seen_max: u32,
    /// Segments one frame may need at `seen_max`.
    pub segs: usize,
    pub port_id: u16,
    pub gone: Arc<AtomicBool>,
    /// Frames arrive behind a net header (the queues were opened with `IFF_VNET_HDR`).
    pub vnet: bool,
    /// Checksums are checked in software (receive checksum offloads enabled).
    pub verify: bool,
}

impl TapRx {
    pub(crate) fn new(core: RxCore, pool: PktMbufPool, cache: MbufCache) -> Self {
        Self { core, pool, cache }
    }

    fn burst(&mut self, out: &mut [Option<Mbuf>], other: Option<&mut MbufCache>) -> usize {
        // The core's cache is used when it holds this queue's pool; else our own.
        let cache = match other {
            Some(c) if c.mempool().same_pool(self.pool.mempool()) => c,
            _ => &mut self.cache,
        };
        self.core.burst(out, cache)
    }
}

impl RxCore {
    /// Segments one frame may need at the MTU now: 1 unless it exceeds one buffer. Worked
    /// out again only when the MTU changed (`set_mtu` on a started port reaches the queue at
    /// its next burst).
    #[inline(always)]
    fn segs(&mut self) -> usize {
        let max = self.max_frame.load(Ordering::Relaxed);
        if max != self.seen_max {
            self.recount(max);
        }
        self.segs
    }

    #[cold]
    fn recount(&mut self, max: u32) {
        self.seen_max = max;
        self.segs = (max.div_ceil(self.room.max(1)) as usize).clamp(1, MAX_SEGS);
    }

    /// Receives one frame into at most `segs` mbufs from `cache`. `Ok(None)`: nothing
    /// waiting.
    #[inline]
    fn recv_one(&self, cache: &mut MbufCache, segs: usize) -> Result<Option<Mbuf>, RxStop> {
        if segs == 1 {
            let mut m = cache.alloc().ok_or(RxStop::NoMbuf)?;
            let room = m.tailroom();
            let mut hdr = [0u8; VNET_HDR];
            let r = match m.append(room) {
                Ok(buf) if self.vnet => read_frame(self.fd.as_raw_fd(), &mut [&mut hdr[..], buf]),
                Ok(buf) => read_frame(self.fd.as_raw_fd(), &mut [buf]),
                Err(_) => return Err(RxStop::NoMbuf),
            };
            let r = r.map(|n| n.map(|n| self.frame_len(n)));
            return match r {
                Ok(None) => {
                    cache.free(m);
                    Ok(None)
                }
                Ok(Some(Some(n))) if n <= room as usize => {
                    // Cannot fail: n <= room bytes were appended.
                    let _ = m.trim(room - n as u16);
                    self.finish(m, &hdr, cache)
                }
                Ok(Some(Some(_))) => {
                    cache.free(m);
                    self.drops.rx_too_big.add(1);
                    Err(RxStop::Dropped)
                }
                Ok(Some(None)) => {
                    cache.free(m);
                    self.drops.bad_offload.add(1);
                    Err(RxStop::Dropped)
                }
                Err(e) => {
                    cache.free(m);
                    Err(RxStop::Error(e))
                }
            };
        }
        self.recv_chain(cache, segs)
    }

    /// Frame bytes of a read of `n`: all of it, or what follows the net header (`None`: a
    /// read shorter than the header).
    #[inline(always)]
    fn frame_len(&self, n: usize) -> Option<usize> {
        if self.vnet {
            n.checked_sub(VNET_HDR)
        } else {
            Some(n)
        }
    }

    /// Stamps the port and the checksum states: what the software check found (receive
    /// checksum offloads on), or, behind a net header, what the kernel said (`DATA_VALID`:
    /// verified, `NEEDS_CSUM`: intact but the L4 field partial). A header announcing GSO,
    /// which these queues never ask the kernel for (no `TUNSETOFFLOAD`), drops the frame.
    #[inline(always)]
    fn finish(
        &self,
        mut m: Mbuf,
        hdr: &[u8; VNET_HDR],
        cache: &mut MbufCache,
    ) -> Result<Option<Mbuf>, RxStop> {
        if self.vnet && hdr[1] != 0 {
            cache.free(m);
            self.drops.bad_offload.add(1);
            return Err(RxStop::Dropped);
        }
        let flags = if self.vnet { hdr[0] } else { 0 };
        // Checked in software as DPDK's tap does, across a chain's segments.
        let (ip, l4) = if self.verify {
            verify_chain_checksums(m.segments().map(|s| s.data()))
        } else {
            (RxCksum::Unknown, RxCksum::Unknown)
        };
        if let Ok(mut meta) = m.meta_mut() {
            meta.set_port(self.port_id);
            let l4 = if flags & net_hdr_flags::DATA_VALID != 0 {
                RxCksum::Good
            } else if flags & net_hdr_flags::NEEDS_CSUM != 0 {
                // A frame of this host whose checksum is still to be completed: the field
                // holds a partial sum, the data is intact (virtio 1.2 §5.1.6.4; what rdk's
                // virtio PMD and DPDK's report as L4_CKSUM_NONE).
                RxCksum::Verified
            } else {
                l4
            };
            if ip != RxCksum::Unknown || l4 != RxCksum::Unknown {
                let f = meta.ol_flags().with_rx_ip_cksum(ip).with_rx_l4_cksum(l4);
                meta.set_ol_flags(f);
            }
        }
        Ok(Some(m))
    }

    /// The scatter path: a frame spread over up to `segs` mbufs, chained.
    #[cold]
    fn recv_chain(&self, cache: &mut MbufCache, segs: usize) -> Result<Option<Mbuf>, RxStop> {
        let mut ms: [Option<Mbuf>; MAX_SEGS] = std::array::from_fn(|_| None);
        let ms = &mut ms[..segs.min(MAX_SEGS)];
        for slot in ms.iter_mut() {
            match cache.alloc() {
                Some(m) => *slot = Some(m),
                None => {
                    for m in ms.iter_mut().filter_map(Option::take) {
                        cache.free(m);
                    }
                    return Err(RxStop::NoMbuf);
                }
            }
        }
        let room = ms[0].as_ref().map_or(0, |m| m.tailroom()) as usize;
        let mut hdr = [0u8; VNET_HDR];
        let r = {
            let mut bufs: [&mut [u8]; MAX_IOV] = std::array::from_fn(|_| <&mut [u8]>::default());
            let mut k = 0;
            if self.vnet {
                bufs[0] = &mut hdr[..];
                k = 1;
            }
            for m in ms.iter_mut().flatten() {
                match m.append(room as u16) {
                    Ok(b) => {
                        bufs[k] = b;
                        k += 1;
                    }
                    Err(_) => break,
                }
            }
            read_frame(self.fd.as_raw_fd(), &mut bufs[..k])
        };
        let n = match r.map(|n| n.map(|n| self.frame_len(n))) {
            Ok(Some(Some(n))) if n <= room * ms.len() => n,
            other => {
                for m in ms.iter_mut().filter_map(Option::take) {
                    cache.free(m);
                }
                return match other {
                    Ok(None) => Ok(None),
                    Ok(Some(Some(_))) => {
                        self.drops.rx_too_big.add(1);
                        Err(RxStop::Dropped)
                    }
                    Ok(Some(None)) => {
                        self.drops.bad_offload.add(1);
                        Err(RxStop::Dropped)
                    }
                    Err(e) => Err(RxStop::Error(e)),
                };
            }
        };
        let used = n.div_ceil(room).max(1);
        let mut head: Option<Mbuf> = None;
        for (i, slot) in ms.iter_mut().enumerate() {
            let Some(mut m) = slot.take() else { continue };
            if i >= used {
                cache.free(m);
                continue;
            }
            let len = (n - i * room).min(room);
            let _ = m.trim((room - len) as u16);
            match head.as_mut() {
                None => head = Some(m),
                // Cannot fail: at most MAX_SEGS segments of one pool.
                Some(h) => {
                    if let Err(e) = h.chain(m) {
                        drop(e);
                    }
                }
            }
        }
        match head {
            Some(h) => self.finish(h, &hdr, cache),
            None => Ok(None),
        }
    }

    fn burst(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        let mut n = 0;
        let mut bytes = 0u64;
        let segs = self.segs();
        // Frames dropped (too big, bad header) do not fill `out`: without a bound a flood of
        // them would keep one burst reading as long as the kernel has frames.
        let mut reads = out.len().saturating_mul(RX_READS_PER_SLOT);
        while n < out.len() && reads > 0 {
            reads -= 1;
            match self.recv_one(cache, segs) {
                Ok(Some(m)) => {
                    bytes += m.pkt_len() as u64;
                    out[n] = Some(m);
                    n += 1;
                }
                Ok(None) => break,
                Err(RxStop::Dropped) => self.counters.add_errors(1),
                Err(RxStop::NoMbuf) => {
                    self.counters.add_nombuf(1);
                    break;
                }
                Err(RxStop::Error(e)) => {
                    if is_gone(e) {
                        // No frame was taken: the queue is detached, every poll says so.
                        self.gone.store(true, Ordering::Relaxed);
                    } else {
                        self.counters.add_errors(1);
                    }
                    break;
                }
            }
        }
        self.counters.add(n as u64, bytes);
        n
    }
}

enum RxStop {
    NoMbuf,
    Dropped,
    Error(Errno),
}

impl RxQueue for TapRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        self.burst(out, None)
    }

    #[inline]
    fn rx_burst_cached(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        self.burst(out, Some(cache))
    }

    /// A TAP queue's fd is readable when a frame waits: it is its own interrupt, so enabling
    /// and disabling need nothing.
    fn intr_enable(&mut self) -> Result<(), EthError> {
        Ok(())
    }

    fn intr_disable(&mut self) -> Result<(), EthError> {
        Ok(())
    }

    fn intr_handle(&self) -> Option<WaitHandle> {
        Some(WaitHandle(self.core.fd.as_raw_fd().into()))
    }
}

/// A `net_tap` transmit queue.
#[derive(Debug)]
pub struct TapTx {
    fd: Arc<OwnedFd>,
    counters: Arc<QueueCounters>,
    drops: Arc<Drops>,
    /// The longest frame the port's MTU allows now (the driver updates it on `set_mtu`).
    max_frame: Arc<AtomicU32>,
    gone: Arc<AtomicBool>,
    /// The queues were opened with `IFF_VNET_HDR`: every frame goes behind a net header.
    vnet: bool,
    /// Checksum offloads this queue does (IPv4 header in software, TCP/UDP by the kernel).
    offloads: TxOffload,
    /// The rewritten copy of the current frame's headers ([`Front`]), kept here so that a
    /// frame does not zero and move a buffer of [`MAX_REWRITE`] bytes.
    heads: [u8; MAX_REWRITE],
}

/// What the offload path sends in front of a frame's own bytes: the net header, and (in the
/// queue's `heads` buffer) a rewritten copy of the first segment's headers (IPv4 checksum;
/// under segmentation the IP length and the TCP seed).
struct Front {
    hdr: [u8; VNET_HDR],
    /// Bytes of the queue's `heads` in use (0: the first segment goes as it is).
    heads_len: usize,
    /// A segmentation request: the kernel segments it, so the MTU bounds its segments, not
    /// the frame.
    segmented: bool,
}

impl TapTx {
    pub(crate) fn new(
        fd: Arc<OwnedFd>,
        counters: Arc<QueueCounters>,
        drops: Arc<Drops>,
        max_frame: Arc<AtomicU32>,
        gone: Arc<AtomicBool>,
        vnet: bool,
        offloads: TxOffload,
    ) -> Self {
        Self {
            fd,
            counters,
            drops,
            max_frame,
            gone,
            vnet,
            offloads,
            heads: [0; MAX_REWRITE],
        }
    }

    /// What goes in front of `m` for the offloads its `ol_flags` ask for (the rewritten
    /// headers into `self.heads`); `None` if the request does not fit the frame
    /// ([`TxRequest::check`]).
    fn front(&mut self, m: &Mbuf, max_frame: u32) -> Option<Front> {
        let mtu = max_frame.saturating_sub(crate::driver::L2_OVERHEAD);
        let r = TxRequest::check(m, self.offloads, mtu).ok()?;
        let heads_len = r.rewrite_len();
        if heads_len > 0 {
            // Checked: rewrite_len is within the first segment and MAX_REWRITE.
            let heads = &mut self.heads[..heads_len];
            heads.copy_from_slice(&m.data()[..heads_len]);
            r.rewrite(heads, m.pkt_len());
        }
        Some(Front {
            hdr: r.net_hdr_bytes(),
            heads_len,
            segmented: r.tso.is_some(),
        })
    }

    /// Writes `m` behind what `front` holds: one `writev`.
    fn write_offloaded(&self, m: &Mbuf, f: &Front) -> Result<bool, Errno> {
        let heads = &self.heads[..f.heads_len];
        let mut iov: [&[u8]; MAX_IOV] = [&[]; MAX_IOV];
        let mut k = 0;
        if self.vnet {
            iov[0] = &f.hdr;
            k = 1;
        }
        for (i, s) in m.segments().enumerate() {
            let d = s.data();
            if i == 0 && f.heads_len > 0 {
                iov[k] = heads;
                iov[k + 1] = &d[f.heads_len..];
                k += 2;
            } else {
                iov[k] = d;
                k += 1;
            }
        }
        write_frame(self.fd.as_raw_fd(), &iov[..k])
    }

    fn burst(&mut self, pkts: &mut [Option<Mbuf>], mut cache: Option<&mut MbufCache>) -> usize {
        let (mut taken, mut sent, mut bytes, mut errors) = (0, 0u64, 0u64, 0u64);
        let mut free = |m: Mbuf| match cache.as_deref_mut() {
            Some(c) => c.free(m),
            None => drop(m),
        };
        let offload = self.vnet || !self.offloads.is_empty();
        let max_frame = self.max_frame.load(Ordering::Relaxed);
        // A frame that cannot go: counted under `$why` and as an error, freed, taken.
        macro_rules! refuse {
            ($why:ident, $m:expr) => {{
                self.drops.$why.add(1);
                errors += 1;
                free($m);
                taken += 1;
                continue;
            }};
        }
        for slot in pkts.iter_mut() {
            let Some(m) = slot.take() else { break };
            let front = if offload {
                match self.front(&m, max_frame) {
                    Some(f) => Some(f),
                    None => refuse!(bad_offload, m),
                }
            } else {
                None
            };
            let segmented = matches!(
                front,
                Some(Front {
                    segmented: true,
                    ..
                })
            );
            if m.pkt_len() > max_frame && !segmented {
                refuse!(tx_too_big, m);
            }
            if m.nb_segs() as usize > TX_MAX_SEGS {
                refuse!(tx_too_many_segs, m);
            }
            let r = match &front {
                Some(f) => self.write_offloaded(&m, f),
                None => {
                    let mut segs: [&[u8]; TX_MAX_SEGS] = [&[]; TX_MAX_SEGS];
                    let mut k = 0;
                    for s in m.segments() {
                        segs[k] = s.data();
                        k += 1;
                    }
                    write_frame(self.fd.as_raw_fd(), &segs[..k])
                }
            };
            match r {
                Ok(true) => {
                    sent += 1;
                    bytes += m.pkt_len() as u64;
                    free(m);
                    taken += 1;
                }
                Ok(false) => {
                    // The kernel queue is full: the rest stays with the caller.
                    self.drops.tx_full.add(1);
                    *slot = Some(m);
                    break;
                }
                Err(e) => {
                    if is_gone(e) {
                        self.gone.store(true, Ordering::Relaxed);
                    }
                    errors += 1;
                    free(m);
                    taken += 1;
                }
            }
        }
        self.counters.add(sent, bytes);
        if errors > 0 {
            self.counters.add_errors(errors);
        }
        taken
    }
}

impl TxQueue for TapTx {
    /// Frames are written one `writev` each; a frame longer than the MTU allows, or of more
    /// than 32 segments, is dropped and counted; a full kernel queue ends the burst and leaves
    /// the rest with the caller.
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
    use rdk_core::mbuf::PktMbufPoolConfig;
    use rdk_core::net::checksum::{fill_ipv4_header_checksum, fold, pseudo_header};
    use rdk_os_linux::LinuxOs;
    use std::net::Ipv4Addr;
    use std::os::unix::net::UnixDatagram;

    /// A receive queue reading from one end of a datagram socket pair (one datagram, one
    /// frame, as a TAP fd reads), and the other end to write frames into.
    struct Rig {
        rx: TapRx,
        peer: UnixDatagram,
        counters: Arc<QueueCounters>,
        drops: Arc<Drops>,
        max_frame: Arc<AtomicU32>,
        pool: PktMbufPool,
    }

    fn rig(vnet: bool, verify: bool) -> Rig {
        let (ours, peer) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let pool =
            PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("taprx", 64)).unwrap();
        let counters = Arc::new(QueueCounters::new());
        let drops = Arc::new(Drops::default());
        let max_frame = Arc::new(AtomicU32::new(1518));
        let core = RxCore {
            fd: Arc::new(OwnedFd::from(ours)),
            counters: counters.clone(),
            drops: drops.clone(),
            room: pool.data_room() as u32,
            max_frame: max_frame.clone(),
            seen_max: 0,
            segs: 1,
            port_id: 0,
            gone: Arc::new(AtomicBool::new(false)),
            vnet,
            verify,
        };
        let cache = pool.cache(16).unwrap();
        Rig {
            rx: TapRx::new(core, pool.clone(), cache),
            peer,
            counters,
            drops,
            max_frame,
            pool,
        }
    }

    impl Rig {
        fn finish(self) {
            let pool = self.pool.clone();
            drop(self);
            assert_eq!(pool.available(), pool.size(), "every mbuf back");
        }
    }

    /// An Ethernet/IPv4/UDP frame of 10.0.0.1 → 10.0.0.2 with a correct IPv4 header
    /// checksum and, in the UDP checksum field, `udp_cksum`.
    fn udp_frame(payload: &[u8], udp_cksum: u16) -> Vec<u8> {
        let udp_len = 8 + payload.len() as u16;
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&1234u16.to_be_bytes());
        f.extend_from_slice(&5678u16.to_be_bytes());
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&udp_cksum.to_be_bytes());
        f.extend_from_slice(payload);
        assert!(fill_ipv4_header_checksum(&mut f, 14, 20));
        f
    }

    /// What a kernel sends for a locally made datagram whose checksum is left to the device
    /// (`CHECKSUM_PARTIAL`): `NEEDS_CSUM`, and the pseudo-header sum in the field.
    fn partial_udp(payload: &[u8]) -> Vec<u8> {
        let len = 8 + payload.len() as u16;
        let seed = fold(pseudo_header(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            len,
        ));
        let mut hdr = [0u8; VNET_HDR];
        hdr[0] = net_hdr_flags::NEEDS_CSUM;
        hdr[6..8].copy_from_slice(&34u16.to_le_bytes()); // csum_start: the UDP header
        hdr[8..10].copy_from_slice(&6u16.to_le_bytes()); // csum_offset: its checksum field
        let mut d = hdr.to_vec();
        d.extend(udp_frame(payload, seed));
        d
    }

    #[test]
    fn a_partial_checksum_is_reported_as_verified_not_good_or_unknown() {
        for verify in [false, true] {
            let mut r = rig(true, verify);
            r.peer.send(&partial_udp(&[0x5a; 101])).unwrap();
            let mut out: [Option<Mbuf>; 4] = Default::default();
            assert_eq!(r.rx.rx_burst(&mut out), 1);
            let m = out[0].take().unwrap();
            assert_eq!(m.pkt_len(), 14 + 20 + 8 + 101);
            let f = m.ol_flags();
            assert_eq!(
                f.rx_l4_cksum(),
                RxCksum::Verified,
                "NEEDS_CSUM (verify {verify}): the field is partial, the data intact, as \
                 rdk's virtio PMD says"
            );
            let ip = if verify {
                RxCksum::Good
            } else {
                RxCksum::Unknown
            };
            assert_eq!(f.rx_ip_cksum(), ip, "the IPv4 header is whole either way");
            drop(m);
            r.finish();
        }
    }

    #[test]
    fn a_flood_of_dropped_frames_does_not_hold_a_burst() {
        let mut r = rig(true, false);
        const FLOOD: usize = 100;
        for _ in 0..FLOOD {
            // Shorter than the net header: dropped and counted.
            r.peer.send(&[0u8; 4]).unwrap();
        }
        let mut out: [Option<Mbuf>; 4] = Default::default();
        assert_eq!(r.rx.rx_burst(&mut out), 0);
        let bound = (out.len() * RX_READS_PER_SLOT) as u64;
        assert_eq!(
            r.counters.snapshot().errors,
            bound,
            "one burst reads at most {bound} frames"
        );
        let mut bursts = 1;
        while r.rx.rx_burst(&mut out) == 0 && r.counters.snapshot().errors < FLOOD as u64 {
            bursts += 1;
            assert!(bursts <= FLOOD, "the flood drains");
        }
        assert_eq!(
            r.counters.snapshot().errors,
            FLOOD as u64,
            "every frame counted"
        );
        assert_eq!(r.drops.bad_offload.get(), FLOOD as u64);
        // A good frame behind the flood is still received.
        let mut hdr_frame = vec![0u8; VNET_HDR];
        hdr_frame.extend(udp_frame(&[1; 10], 0));
        r.peer.send(&hdr_frame).unwrap();
        assert_eq!(r.rx.rx_burst(&mut out), 1);
        drop(out);
        r.finish();
    }

    #[test]
    fn a_larger_mtu_reaches_a_queue_between_bursts() {
        let mut r = rig(false, false);
        let big = udp_frame(&[3; 3000], 0);
        let mut out: [Option<Mbuf>; 4] = Default::default();
        r.peer.send(&big[..1000]).unwrap();
        assert_eq!(r.rx.rx_burst(&mut out), 1);
        assert_eq!(out[0].take().map(|m| m.nb_segs()), Some(1));
        r.max_frame.store(9018, Ordering::Relaxed);
        r.peer.send(&big).unwrap();
        assert_eq!(r.rx.rx_burst(&mut out), 1);
        let m = out[0].take().unwrap();
        assert_eq!((m.nb_segs(), m.pkt_len() as usize), (2, big.len()));
        let s = r.counters.snapshot();
        assert_eq!((s.packets, s.errors, r.drops.rx_too_big.get()), (2, 0, 0));
        drop(m);
        r.finish();
    }
}
