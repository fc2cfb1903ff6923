//! Transmit: the TPACKET_V2 ring, fixed-size frame slots.
//!
//! A slot is ours while its status is `TP_STATUS_AVAILABLE`: the frame is copied in (all
//! segments of a chain), its length written, then the status set to `TP_STATUS_SEND_REQUEST`
//! with a release store; after the burst one `sendto` asks the kernel to send everything
//! marked. A slot still marked for sending means the ring is full: the burst stops there and
//! the rest stays with the caller. With `PACKET_LOSS` set the kernel skips a frame it finds
//! malformed (the slot goes back to available, nothing says so), so every frame the kernel
//! would refuse is refused here first and counted: shorter than an Ethernet header, longer
//! than the MTU allows (plus Ethernet header and one VLAN tag, as the kernel and veth check)
//! or than a slot.
#![allow(unsafe_code)] // writes into the kernel-shared ring inside a checked slot.

use crate::sys::{kick, RingMap};
use nix::errno::Errno;
use rdk_core::ethdev::{Counter, QueueCounters, TxOffload, TxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache, OlFlags};
use rdk_core::net::offload::{TxRequest, MAX_REWRITE};
use rdk_os_linux::sock::send_error_means_gone;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
/// `struct tpacket2_hdr`: tp_status at 0, tp_len at 4, tp_snaplen at 8.
const H_LEN: usize = 4;
const H_SNAPLEN: usize = 8;
/// Where the kernel reads a TX frame: TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)
/// (`tpacket_fill_skb` without PACKET_TX_HAS_OFF).
pub(crate) const TX_DATA_OFF: usize = 32;
/// The smallest frame the kernel accepts: an Ethernet header.
const MIN_FRAME: u32 = 14;
/// What a frame may have beyond the MTU: an Ethernet header and one VLAN tag.
pub(crate) const MTU_L2_OVERHEAD: u32 = 18;
/// `struct virtio_net_hdr` in front of each frame on a `PACKET_VNET_HDR` socket: flags,
/// gso_type, hdr_len (u16, little-endian: the bytes copied into the socket buffer), gso_size,
/// csum_start, csum_offset.
pub(crate) const VNET_HDR: usize = 10;
const VNET_HDR_LEN: usize = 2;
/// The most of a frame the kernel is asked to copy (`hdr_len`); the rest of a larger frame
/// it attaches as the ring's pages, so a jumbo frame does not need one large allocation.
const LINEAR_MAX: u32 = 2048;
/// Most segments of a segmentation request (64 KiB in 2 KiB mbufs takes 33).
const GSO_MAX_SEGS: usize = 64;

/// Transmit-side drop reasons (xstats).
#[derive(Debug, Default)]
pub(crate) struct TxDrops {
    /// Frames longer than the MTU allows (plus Ethernet header and VLAN tag), or than a ring
    /// slot.
    pub too_big: Counter,
    /// Frames shorter than an Ethernet header.
    pub too_small: Counter,
    /// Bursts cut short by a full ring.
    pub ring_full: Counter,
    /// Checksum requests whose `l2_len`/`l3_len` do not fit the frame (dropped).
    pub bad_offload: Counter,
}

impl TxDrops {
    /// Zeroes every reason (every field: a new one that is not zeroed here does not build).
    pub fn reset(&self) {
        rdk_core::reset_counters!(
            self,
            TxDrops {
                too_big,
                too_small,
                ring_full,
                bad_offload
            }
        );
    }
}

/// How the transmit ring is cut: slot size and count, and whether frames go behind a
/// virtio-net header.
#[derive(Clone, Debug)]
pub(crate) struct TxSlots {
    /// Bytes per slot.
    pub frame_size: usize,
    /// Slots in the ring.
    pub frame_nr: usize,
    /// `PACKET_VNET_HDR` is on.
    pub vnet: bool,
    /// Checksum and segmentation offloads to do (TCP/UDP and TSO only with `vnet`).
    pub offloads: TxOffload,
    /// The port's MTU, shared with the driver (which changes it): frames must fit it, and a
    /// segmentation request's segments.
    pub mtu: Arc<AtomicU32>,
}

/// A `net_af_packet` transmit queue.
#[derive(Debug)]
pub struct AfPacketTx {
    sock: Arc<OwnedFd>,
    map: RingMap,
    frame_size: usize,
    frame_nr: usize,
    /// Frames go behind a virtio-net header (`PACKET_VNET_HDR`): copied whole by the kernel.
    vnet: bool,
    /// Checksum offloads: IPv4 filled in the slot by rdk, TCP/UDP finished by the kernel.
    offloads: TxOffload,
    mtu: Arc<AtomicU32>,
    /// A ring-less socket for segmentation requests (larger than a slot): one `writev` each.
    gso: Option<OwnedFd>,
    head: usize,
    counters: Arc<QueueCounters>,
    drops: Arc<TxDrops>,
    gone: Arc<AtomicBool>,
}

impl AfPacketTx {
    pub(crate) fn new(
        sock: Arc<OwnedFd>,
        map: RingMap,
        slots: TxSlots,
        counters: Arc<QueueCounters>,
        drops: Arc<TxDrops>,
        gone: Arc<AtomicBool>,
        gso: Option<OwnedFd>,
    ) -> Self {
        let TxSlots {
            frame_size,
            frame_nr,
            vnet,
            offloads,
            mtu,
        } = slots;
        assert!(frame_size * frame_nr <= map.len() && frame_size > TX_DATA_OFF + VNET_HDR);
        Self {
            sock,
            map,
            frame_size,
            frame_nr,
            vnet,
            offloads,
            mtu,
            gso,
            head: 0,
            counters,
            drops,
            gone,
        }
    }

    fn slot(&self) -> *mut u8 {
        // In bounds: head < frame_nr and frame_size * frame_nr <= ring length.
        self.map.base().wrapping_add(self.head * self.frame_size)
    }

    fn status(&self) -> &AtomicU32 {
        // SAFETY: the status word at the start of the current slot: 16-aligned (slots are
        // TPACKET_ALIGNMENT multiples from a page-aligned base), inside the mapping, accessed
        // atomically by both sides.
        unsafe { AtomicU32::from_ptr(self.slot().cast()) }
    }

    /// The offloads `m` asks for that this queue does, checked against the frame
    /// ([`TxRequest::check`]); `None` if the request does not fit it. One branch on the plain
    /// path.
    #[inline(always)]
    fn offload_request(&self, m: &Mbuf, mtu: u32) -> Option<TxRequest> {
        if self.offloads.is_empty() {
            return Some(TxRequest::default());
        }
        TxRequest::check(m, self.offloads, mtu).ok()
    }

    /// Sends segmentation request `m` on the ring-less socket: its net header (GSO), a
    /// rewritten copy of its headers, the rest of its segments, in one `writev`. `Ok(false)`:
    /// the device queue is full (EAGAIN/ENOBUFS).
    fn send_gso(gso: &OwnedFd, m: &Mbuf, req: &TxRequest) -> Result<bool, Errno> {
        let hdr = req.net_hdr_bytes();
        let n = req.rewrite_len();
        let mut heads = [0u8; MAX_REWRITE];
        // Checked by TxRequest::check: the headers are in the first segment, n <= MAX_REWRITE.
        heads[..n].copy_from_slice(&m.data()[..n]);
        req.rewrite(&mut heads[..n], m.pkt_len());
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty; GSO_MAX_SEGS + 3];
        let mut k = 0;
        let mut push = |b: &[u8]| {
            if k < iov.len() {
                iov[k] = libc::iovec {
                    iov_base: b.as_ptr() as *mut _,
                    iov_len: b.len(),
                };
                k += 1;
            }
        };
        push(&hdr);
        push(&heads[..n]);
        for (i, s) in m.segments().enumerate() {
            push(if i == 0 { &s.data()[n..] } else { s.data() });
        }
        loop {
            // SAFETY: the iovecs describe `k` live slices (the header, the copy, the mbuf's
            // segments), only read by the kernel.
            let r = unsafe { libc::writev(gso.as_raw_fd(), iov.as_ptr(), k as libc::c_int) };
            match Errno::result(r) {
                Ok(_) => return Ok(true),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN | Errno::ENOBUFS) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    fn burst(&mut self, pkts: &mut [Option<Mbuf>], mut cache: Option<&mut MbufCache>) -> usize {
        let pre = if self.vnet { VNET_HDR } else { 0 };
        let room = (self.frame_size - TX_DATA_OFF - pre) as u32;
        let mtu = self.mtu.load(Ordering::Relaxed);
        let max_frame = mtu + MTU_L2_OVERHEAD;
        let (mut taken, mut queued, mut bytes, mut errors) = (0, 0u64, 0u64, 0u64);
        // Segmentation requests sent on the side socket; ring frames already kicked.
        let (mut sent_aside, mut unkicked_from) = (0u64, 0u64);
        let mut free = |m: Mbuf| match cache.as_deref_mut() {
            Some(c) => c.free(m),
            None => drop(m),
        };
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
        // Nothing if the current ring slot is ours; else the ring is full: `$m` goes back to
        // the caller (into `$entry`) and the burst ends.
        macro_rules! slot_free {
            ($entry:ident, $m:expr) => {{
                let st = self.status().load(Ordering::Acquire);
                if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
                    self.drops.ring_full.add(1);
                    *$entry = Some($m);
                    break;
                }
            }};
        }
        for slot in pkts.iter_mut() {
            let Some(m) = slot.take() else { break };
            let len = m.pkt_len();
            if len < MIN_FRAME {
                refuse!(too_small, m);
            }
            // A segmentation request goes on the side socket; any other frame needs the ring
            // slot, looked at first, so that a frame left with the caller by a full ring is
            // not checked again and again.
            let aside = self.gso.is_some() && m.ol_flags().contains(OlFlags::TX_TCP_SEG);
            if !aside {
                slot_free!(slot, m);
            }
            let Some(req) = self.offload_request(&m, mtu) else {
                refuse!(bad_offload, m);
            };
            if let (Some(_), Some(gso)) = (req.tso, self.gso.as_ref()) {
                if m.nb_segs() as usize > GSO_MAX_SEGS {
                    refuse!(bad_offload, m);
                }
                // In order: the frames already in the ring leave first.
                if queued > unkicked_from {
                    if kick(&self.sock).is_err() {
                        errors += 1;
                    }
                    unkicked_from = queued;
                }
                match Self::send_gso(gso, &m, &req) {
                    Ok(true) => {
                        sent_aside += 1;
                        bytes += len as u64;
                        free(m);
                        taken += 1;
                    }
                    Ok(false) => {
                        self.drops.ring_full.add(1);
                        *slot = Some(m);
                        break;
                    }
                    Err(e) => {
                        if send_error_means_gone(e) {
                            self.gone.store(true, Ordering::Relaxed);
                        }
                        errors += 1;
                        free(m);
                        taken += 1;
                    }
                }
                continue;
            }
            if len > room || len > max_frame {
                refuse!(too_big, m);
            }
            if aside {
                slot_free!(slot, m);
            }
            let base = self.slot();
            let mut at = TX_DATA_OFF;
            if self.vnet {
                let mut h = if req.is_empty() {
                    [0u8; VNET_HDR]
                } else {
                    req.net_hdr_bytes()
                };
                let linear = len.min(LINEAR_MAX) as u16;
                h[VNET_HDR_LEN..VNET_HDR_LEN + 2].copy_from_slice(&linear.to_le_bytes());
                // SAFETY: TX_DATA_OFF + VNET_HDR < frame_size (checked in new): inside this
                // slot, ours while its status is AVAILABLE.
                unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), base.add(at), VNET_HDR) };
                at += VNET_HDR;
            }
            let frame_at = at;
            for s in m.segments() {
                let d = s.data();
                // SAFETY: at + d.len() <= TX_DATA_OFF + pre + pkt_len <= frame_size: inside this
                // slot, which is ours while its status is AVAILABLE.
                unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), base.add(at), d.len()) };
                at += d.len();
            }
            let heads = req.rewrite_len();
            if heads > 0 {
                // SAFETY: the frame just copied; rewrite_len <= its first segment's length <=
                // len, and frame_at + len <= frame_size: in our slot.
                let frame = unsafe { std::slice::from_raw_parts_mut(base.add(frame_at), heads) };
                req.rewrite(frame, len);
            }
            let tp_len = len + pre as u32;
            // SAFETY: the header words of our slot, 4-aligned.
            unsafe {
                base.add(H_LEN).cast::<u32>().write_volatile(tp_len);
                base.add(H_SNAPLEN).cast::<u32>().write_volatile(tp_len);
            }
            self.status()
                .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.head = if self.head + 1 == self.frame_nr {
                0
            } else {
                self.head + 1
            };
            queued += 1;
            bytes += len as u64;
            free(m);
            taken += 1;
        }
        if queued > unkicked_from {
            if let Err(e) = kick(&self.sock) {
                if send_error_means_gone(e) {
                    self.gone.store(true, Ordering::Relaxed);
                }
                // The frames stay marked in the ring; the kernel sends them with the next kick
                // that works. Count the failed kick, not the frames.
                errors += 1;
            }
        }
        self.counters.add(queued + sent_aside, bytes);
        if errors > 0 {
            self.counters.add_errors(errors);
        }
        taken
    }

    /// Frames still marked for sending (for a clean stop).
    pub(crate) fn pending(&self) -> usize {
        (0..self.frame_nr)
            .filter(|i| {
                // SAFETY: the status word of slot i, as in `status`.
                let st =
                    unsafe { AtomicU32::from_ptr(self.map.base().add(i * self.frame_size).cast()) };
                st.load(Ordering::Acquire) & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0
            })
            .count()
    }
}

impl TxQueue for AfPacketTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut [Option<Mbuf>]) -> usize {
        self.burst(pkts, None)
    }

    #[inline]
    fn tx_burst_cached(&mut self, pkts: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        self.burst(pkts, Some(cache))
    }
}
