//! Receive: the TPACKET_V3 ring, block by block.
//!
//! The kernel fills whole blocks of variable-size frames and hands a block over by setting
//! `TP_STATUS_USER` in its descriptor (or when the block timer retires a partly filled one).
//! Everything in a block is the kernel's word and is checked before use: the packet count, the
//! offset of the first packet, each packet's next-offset, MAC offset and snap length must stay
//! inside the block, or the rest of the block is dropped and counted as an anomaly. Frames are
//! copied into mbufs (the ring is the kernel's memory), into a chain when one buffer is too
//! small, and the block goes back to the kernel with one release store.
#![allow(unsafe_code)] // reads of the kernel-shared ring at checked offsets.

use crate::sys::RingMap;
use rdk_core::ethdev::{Counter, EthError, QueueCounters, RxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache, PktMbufPool, RxCksum};
use rdk_core::os::WaitHandle;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// `struct tpacket_block_desc`: block_status at 8, num_pkts at 12, offset_to_first_pkt at 16.
const BD_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_FIRST: usize = 16;
const BD_SIZE: usize = 48;
/// `struct tpacket3_hdr`: tp_next_offset at 0, tp_snaplen at 12, tp_len at 16, tp_mac at 24.
const H_NEXT: usize = 0;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
/// `tp_status` bits of a received frame: the L4 checksum holds only the pseudo-header sum
/// (a local sender with checksum offload, e.g. across a veth), or the kernel validated it.
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;
const H_MAC: usize = 24;
const H_SIZE: usize = 48;

/// Receive-side reasons a frame was not delivered (xstats).
#[derive(Debug, Default)]
pub(crate) struct RxDrops {
    /// Frames the kernel cut (`tp_snaplen < tp_len`): larger than a block.
    pub truncated: Counter,
    /// Blocks with offsets or counts that do not fit: the rest of the block was dropped.
    pub ring_anomalies: Counter,
}

impl RxDrops {
    /// Zeroes every reason (every field: a new one that is not zeroed here does not build).
    pub fn reset(&self) {
        rdk_core::reset_counters!(
            self,
            RxDrops {
                truncated,
                ring_anomalies
            }
        );
    }
}

/// The first wait before reading an open block's descriptor again.
const RECHECK_MIN: Duration = Duration::from_micros(1);
/// The longest wait: added latency stays far below the block timeout (1 ms by default).
const RECHECK_MAX: Duration = Duration::from_micros(64);

/// When the queue next reads the descriptor of a block the kernel is still filling.
///
/// The kernel updates the descriptor's cache line (packet count, block length) for every frame
/// it adds to the open block. Each read of `block_status` from the polling core takes that line
/// away, and the kernel's next update has to fetch it back: a cross-core miss per frame on the
/// core that runs the kernel's receive path — on a veth, the sender's core, so it slowed the
/// sender itself (a fifth of its time went to those two stores under a busy-polling reader).
/// So a block found still open is read again only after a wait that doubles while it stays
/// open (from [`RECHECK_MIN`] up to [`RECHECK_MAX`]) and halves once a block is found handed
/// over; under load that is a few reads per block instead of one per poll. The latency it adds
/// to a block is at most the current wait; `rxversion=2` has no block and no wait.
#[derive(Clone, Copy, Debug)]
struct Recheck {
    at: Option<Instant>,
    wait: Duration,
}

impl Recheck {
    const fn new() -> Self {
        Self {
            at: None,
            wait: RECHECK_MIN,
        }
    }

    /// Whether the descriptor may be read now (the clock is read only while waiting).
    fn due(&self, now: impl FnOnce() -> Instant) -> bool {
        self.at.is_none_or(|t| now() >= t)
    }

    /// The block was still open at `now`: wait longer before the next read.
    fn still_open(&mut self, now: Instant) {
        self.at = Some(now + self.wait);
        self.wait = (self.wait * 2).min(RECHECK_MAX);
    }

    /// The next poll reads the descriptor whatever the wait (the socket said a block is ready).
    fn read_next_poll(&mut self) {
        self.at = None;
    }

    /// The block was handed over: the next one may be read at once, and sooner next time.
    fn handed_over(&mut self) {
        self.at = None;
        self.wait = (self.wait / 2).max(RECHECK_MIN);
    }
}

/// Where the queue is inside the block it owns.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    remaining: u32,
    off: usize,
}

/// A `net_af_packet` receive queue.
#[derive(Debug)]
pub struct AfPacketRx {
    ring: RxRing,
    pool: PktMbufPool,
    cache: MbufCache,
}

/// The receive ring of either version.
#[derive(Debug)]
pub(crate) enum RxRing {
    /// Blocks of frames (the default).
    V3(V3Ring),
    /// One slot per frame (`rxversion=2`).
    V2(V2Ring),
}

/// The ring and where the queue is in it.
#[derive(Debug)]
pub(crate) struct V3Ring {
    pub sock: Arc<OwnedFd>,
    pub map: RingMap,
    pub block_size: usize,
    pub block_nr: usize,
    pub counters: Arc<QueueCounters>,
    pub drops: Arc<RxDrops>,
    pub port_id: u16,
    block: usize,
    cursor: Option<Cursor>,
    recheck: Recheck,
}

impl V3Ring {
    /// A ring of `block_nr` blocks of `block_size` bytes mapped at `map`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sock: Arc<OwnedFd>,
        map: RingMap,
        block_size: usize,
        block_nr: usize,
        counters: Arc<QueueCounters>,
        drops: Arc<RxDrops>,
        port_id: u16,
    ) -> Self {
        assert!(block_size * block_nr <= map.len() && block_size >= BD_SIZE + H_SIZE);
        Self {
            sock,
            map,
            block_size,
            block_nr,
            counters,
            drops,
            port_id,
            block: 0,
            cursor: None,
            recheck: Recheck::new(),
        }
    }
}

impl AfPacketRx {
    pub(crate) fn new(ring: RxRing, pool: PktMbufPool, cache: MbufCache) -> Self {
        Self { ring, pool, cache }
    }

    fn burst(&mut self, out: &mut [Option<Mbuf>], other: Option<&mut MbufCache>) -> usize {
        let cache = match other {
            Some(c) if c.mempool().same_pool(self.pool.mempool()) => c,
            _ => &mut self.cache,
        };
        match &mut self.ring {
            RxRing::V3(r) => r.burst(out, cache),
            RxRing::V2(r) => r.burst(out, cache),
        }
    }
}

impl V3Ring {
    fn block_ptr(&self) -> *mut u8 {
        // In bounds: block < block_nr and block_size * block_nr <= ring length.
        self.map.base().wrapping_add(self.block * self.block_size)
    }

    /// A u32 of the current block at `off`, which the caller checked is inside it.
    fn read_u32(&self, off: usize) -> u32 {
        debug_assert!(off + 4 <= self.block_size);
        // SAFETY: inside the block (checked by the caller), which we own while its status is
        // USER; read_unaligned because a lying kernel could hand out odd offsets.
        unsafe { self.block_ptr().add(off).cast::<u32>().read_unaligned() }
    }

    fn read_u16(&self, off: usize) -> u16 {
        debug_assert!(off + 2 <= self.block_size);
        // SAFETY: as in read_u32.
        unsafe { self.block_ptr().add(off).cast::<u16>().read_unaligned() }
    }

    fn status(&self) -> &AtomicU32 {
        // SAFETY: the status word of the current block descriptor: 4-aligned (blocks are
        // page-aligned), inside the mapping, and only ever accessed atomically by both sides.
        unsafe { AtomicU32::from_ptr(self.block_ptr().add(BD_STATUS).cast()) }
    }

    /// Gives the current block back and moves to the next.
    fn release(&mut self) {
        self.status().store(TP_STATUS_KERNEL, Ordering::Release);
        self.block = if self.block + 1 == self.block_nr {
            0
        } else {
            self.block + 1
        };
        self.cursor = None;
    }

    /// Takes the next block if the kernel has handed it over.
    fn open_block(&mut self) -> Option<Cursor> {
        if !self.recheck.due(Instant::now) {
            return None;
        }
        if self.status().load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            self.recheck.still_open(Instant::now());
            return None;
        }
        self.recheck.handed_over();
        let num = self.read_u32(BD_NUM_PKTS);
        let first = self.read_u32(BD_FIRST) as usize;
        let max_pkts = (self.block_size / H_SIZE) as u32;
        if first < BD_SIZE || first >= self.block_size || num > max_pkts {
            self.drops.ring_anomalies.add(1);
            self.release();
            return None;
        }
        Some(Cursor {
            remaining: num,
            off: first,
        })
    }

    /// Copies `len` bytes at block offset `at` into mbufs (see [`copy_frame`]).
    fn copy_out(&self, cache: &mut MbufCache, at: usize, len: usize, status: u32) -> Option<Mbuf> {
        // SAFETY: at + len <= block_size (checked by the caller) and the block is ours while
        // its status is USER.
        let src = unsafe { std::slice::from_raw_parts(self.block_ptr().add(at), len) };
        copy_frame(cache, src, status, self.port_id)
    }

    fn burst(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        let (mut n, mut bytes) = (0, 0u64);
        while n < out.len() {
            let cur = match self.cursor {
                Some(c) => c,
                None => match self.open_block() {
                    Some(c) => {
                        self.cursor = Some(c);
                        c
                    }
                    None => break,
                },
            };
            if cur.remaining == 0 {
                self.release();
                continue;
            }
            let off = cur.off;
            if off.checked_add(H_SIZE).is_none_or(|e| e > self.block_size) {
                self.drops.ring_anomalies.add(1);
                self.release();
                continue;
            }
            let next = self.read_u32(off + H_NEXT) as usize;
            let snap = self.read_u32(off + H_SNAPLEN) as usize;
            let wire = self.read_u32(off + H_LEN) as usize;
            let mac = self.read_u16(off + H_MAC) as usize;
            let status = self.read_u32(off + H_STATUS);
            let data = off + mac;
            let fits =
                mac >= H_SIZE && data.checked_add(snap).is_some_and(|e| e <= self.block_size);
            let more = cur.remaining > 1;
            if !fits || (more && (next == 0 || off + next + H_SIZE > self.block_size)) {
                self.drops.ring_anomalies.add(1);
                self.release();
                continue;
            }
            if snap < wire {
                self.drops.truncated.add(1);
                self.counters.add_errors(1);
            } else {
                let m = self.copy_out(cache, data, snap, status);
                let Some(m) = m else {
                    // No buffer: leave the frame in the ring for the next burst.
                    self.counters.add_nombuf(1);
                    break;
                };
                bytes += snap as u64;
                out[n] = Some(m);
                n += 1;
            }
            self.cursor = Some(Cursor {
                remaining: cur.remaining - 1,
                off: off + next,
            });
        }
        self.counters.add(n as u64, bytes);
        n
    }
}

/// Copies a frame out of the ring into one mbuf, or a chain when one buffer is too small,
/// with the input port and the L4 checksum state the kernel reported in `status`. `None` if
/// the pool ran dry (what was taken goes back).
fn copy_frame(cache: &mut MbufCache, src: &[u8], status: u32, port_id: u16) -> Option<Mbuf> {
    let mut head: Option<Mbuf> = None;
    let mut done = 0;
    while done < src.len() || head.is_none() {
        let mut m = cache.alloc()?;
        let take = (src.len() - done).min(m.tailroom() as usize);
        m.append(take as u16)
            .ok()?
            .copy_from_slice(&src[done..done + take]);
        done += take;
        match head.as_mut() {
            None => head = Some(m),
            Some(h) => h.chain(m).ok()?,
        }
        if take == 0 {
            break;
        }
    }
    if let Some(h) = head.as_mut() {
        if let Ok(mut meta) = h.meta_mut() {
            meta.set_port(port_id);
            // DPDK's RX_L4_CKSUM_NONE: the field is not a full checksum, but the data is
            // intact (it never left the host); GOOD: the kernel checked it.
            let ck = if status & TP_STATUS_CSUMNOTREADY != 0 {
                Some(RxCksum::Verified)
            } else if status & TP_STATUS_CSUM_VALID != 0 {
                Some(RxCksum::Good)
            } else {
                None
            };
            if let Some(ck) = ck {
                let f = meta.ol_flags().with_rx_l4_cksum(ck);
                meta.set_ol_flags(f);
            }
        }
    }
    head
}

/// The TPACKET_V2 receive ring: fixed frame slots, each handed over on its own — no block
/// timer, so a lone frame is visible at once (the low-latency choice, `rxversion=2`).
#[derive(Debug)]
pub(crate) struct V2Ring {
    pub sock: Arc<OwnedFd>,
    pub map: RingMap,
    pub frame_size: usize,
    pub frame_nr: usize,
    pub counters: Arc<QueueCounters>,
    pub drops: Arc<RxDrops>,
    pub port_id: u16,
    head: usize,
}

/// `struct tpacket2_hdr`: tp_status at 0, tp_len at 4, tp_snaplen at 8, tp_mac at 12.
const V2_LEN: usize = 4;
const V2_SNAPLEN: usize = 8;
const V2_MAC: usize = 12;
const V2_HDR: usize = 32;

impl V2Ring {
    /// A ring of `frame_nr` slots of `frame_size` bytes mapped at `map`.
    pub(crate) fn new(
        sock: Arc<OwnedFd>,
        map: RingMap,
        frame_size: usize,
        frame_nr: usize,
        counters: Arc<QueueCounters>,
        drops: Arc<RxDrops>,
        port_id: u16,
    ) -> Self {
        assert!(frame_size * frame_nr <= map.len() && frame_size > V2_HDR);
        Self {
            sock,
            map,
            frame_size,
            frame_nr,
            counters,
            drops,
            port_id,
            head: 0,
        }
    }

    fn slot(&self) -> *mut u8 {
        // In bounds: head < frame_nr, frame_size * frame_nr <= ring length.
        self.map.base().wrapping_add(self.head * self.frame_size)
    }

    fn status(&self) -> &AtomicU32 {
        // SAFETY: the status word of the current slot: 16-aligned, inside the mapping, accessed
        // atomically by both sides.
        unsafe { AtomicU32::from_ptr(self.slot().cast()) }
    }

    fn read_u32(&self, off: usize) -> u32 {
        // SAFETY: a header word of the current slot (off + 4 <= V2_HDR < frame_size), ours
        // while its status is USER.
        unsafe { self.slot().add(off).cast::<u32>().read_unaligned() }
    }

    fn burst(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        let (mut n, mut bytes) = (0, 0u64);
        while n < out.len() {
            let st = self.status().load(Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                break;
            }
            let snap = self.read_u32(V2_SNAPLEN) as usize;
            let wire = self.read_u32(V2_LEN) as usize;
            // SAFETY: as in read_u32.
            let mac = unsafe { self.slot().add(V2_MAC).cast::<u16>().read_unaligned() } as usize;
            let fits = mac >= V2_HDR && mac.checked_add(snap).is_some_and(|e| e <= self.frame_size);
            if !fits {
                self.drops.ring_anomalies.add(1);
            } else if snap < wire {
                self.drops.truncated.add(1);
                self.counters.add_errors(1);
            } else {
                // SAFETY: mac + snap <= frame_size (checked), slot ours.
                let src = unsafe { std::slice::from_raw_parts(self.slot().add(mac), snap) };
                let Some(m) = copy_frame(cache, src, st, self.port_id) else {
                    self.counters.add_nombuf(1);
                    break;
                };
                bytes += snap as u64;
                out[n] = Some(m);
                n += 1;
            }
            self.status().store(TP_STATUS_KERNEL, Ordering::Release);
            self.head = if self.head + 1 == self.frame_nr {
                0
            } else {
                self.head + 1
            };
        }
        self.counters.add(n as u64, bytes);
        n
    }
}

impl RxQueue for AfPacketRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        self.burst(out, None)
    }

    #[inline]
    fn rx_burst_cached(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        self.burst(out, Some(cache))
    }

    /// The socket polls readable when a block is ready: it is its own interrupt.
    fn intr_enable(&mut self) -> Result<(), EthError> {
        Ok(())
    }

    /// Back from a sleep on the socket: the first burst reads the block at once, whatever is
    /// left of the wait before an open block is read again.
    fn intr_disable(&mut self) -> Result<(), EthError> {
        if let RxRing::V3(r) = &mut self.ring {
            r.recheck.read_next_poll();
        }
        Ok(())
    }

    fn intr_handle(&self) -> Option<WaitHandle> {
        let sock = match &self.ring {
            RxRing::V3(r) => &r.sock,
            RxRing::V2(r) => &r.sock,
        };
        Some(WaitHandle(sock.as_raw_fd().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_block_is_read_again_after_a_doubling_wait_and_at_once_after_a_handover() {
        let t0 = Instant::now();
        let at = |us: u64| move || t0 + Duration::from_micros(us);
        let mut r = Recheck::new();
        assert!(r.due(at(0)), "a fresh queue reads at once");
        r.still_open(t0);
        assert!(!r.due(at(0)), "not before the wait has passed");
        assert!(r.due(at(1)), "due once it has");
        assert_eq!(r.wait, RECHECK_MIN * 2, "the next wait is twice as long");
        let mut now = t0;
        for _ in 0..20 {
            now += r.wait;
            r.still_open(now);
        }
        assert_eq!(r.wait, RECHECK_MAX, "the wait is capped");
        let due = now + RECHECK_MAX;
        assert!(!r.due(|| due - Duration::from_nanos(1)));
        assert!(r.due(|| due));
        r.handed_over();
        assert!(
            r.due(|| t0),
            "after a handover the next block is read at once"
        );
        assert_eq!(r.wait, RECHECK_MAX / 2, "and the wait halves");
        for _ in 0..20 {
            r.handed_over();
        }
        assert_eq!(r.wait, RECHECK_MIN, "down to the minimum");
        r.still_open(t0);
        r.read_next_poll();
        assert!(r.due(at(0)), "woken by the socket: read at once");
        assert_eq!(r.wait, RECHECK_MIN * 2, "the wait itself is kept");
    }
}
