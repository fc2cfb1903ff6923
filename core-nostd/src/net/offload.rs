//! Transmit offload requests checked against their frame, for PMDs that finish them in
//! software or hand them to the kernel behind a virtio-net header (TAP, AF_PACKET).
//!
//! An mbuf asks for offloads with its `ol_flags` and describes its headers with its
//! `tx_offload` lengths, as in DPDK. Those are the application's word, not facts about the
//! frame: [`TxRequest::check`] reads them once, checks them against the frame's bytes and the
//! port's configured offloads, and either returns what to do or a [`TxRequestError`] that
//! says what was wrong. A PMD then
//! - writes [`TxRequest::net_hdr`] in front of the frame (virtio-net header: the TCP/UDP
//!   checksum to complete, the TCP segmentation to do), and
//! - rewrites a *copy* of the frame's first [`TxRequest::rewrite_len`] bytes with
//!   [`TxRequest::rewrite`] (the IPv4 header checksum; under segmentation the IP length and
//!   the TCP checksum seed), so a shared mbuf is never written.
//!
//! Conventions, as DPDK's: for a TCP/UDP checksum the field holds the pseudo-header sum
//! (including the L4 length); under TCP segmentation (`TX_TCP_SEG`, which implies the TCP
//! checksum) it holds the pseudo-header sum *without* the length (`rte_ipv4_phdr_cksum` with
//! the TSO flag), the IPv4 header checksum and length are the device's to produce, and
//! `tso_segsz` is the TCP payload per segment. Linux's segmentation wants the seed with the
//! super-frame's length and a correct IP length and checksum on the super-frame; `rewrite`
//! bridges the two. Over IPv6, `l3_len` covers the extension headers: segmentation walks
//! them (hop-by-hop, routing, destination options, as Linux's GSO and DPDK's
//! `rte_net_skip_ip6_ext` do) and takes only TCP right at `l3_len`.

use core::fmt;

use super::checksum::{checksum, fold, sum};
use crate::ethdev::TxOffload;
use crate::mbuf::{Mbuf, OlFlags, TxL4Cksum};
use crate::virtio::format::{net_hdr_flags, NetHdr};
use zerocopy::IntoBytes;

/// Most bytes [`TxRequest::rewrite_len`] may be: the headers rewritten in a copy (PMDs keep
/// that copy on the stack). Longer headers are refused ([`TxRequestError::HeadersTooLong`]).
pub const MAX_REWRITE: usize = 256;

/// Bytes of the virtio-net header without `num_buffers` ([`TxRequest::net_hdr_bytes`]).
pub const NET_HDR_LEN: usize = 10;

/// virtio-net header GSO types (§5.1.6).
pub mod gso_type {
    /// No segmentation.
    pub const NONE: u8 = 0;
    /// TCP over IPv4.
    pub const TCPV4: u8 = 1;
    /// TCP over IPv6.
    pub const TCPV6: u8 = 4;
}

/// TCP segmentation a frame asks for (`TX_TCP_SEG`), checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tso {
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// L2 header length.
    pub l2: u16,
    /// L3 header length.
    pub l3: u16,
    /// TCP header length (the header's data offset).
    pub l4: u16,
    /// TCP payload bytes per segment.
    pub mss: u16,
}

impl Tso {
    /// Bytes of headers each segment repeats (L2 + L3 + TCP).
    pub const fn hdr_len(&self) -> u16 {
        self.l2 + self.l3 + self.l4
    }
}

/// What a frame asks of the transmit path, checked against the frame. `Default`: nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxRequest {
    /// The TCP/UDP checksum to complete: `(csum_start, csum_offset)` — where checksumming
    /// starts (after L2 and L3) and where from there the field is.
    pub csum: Option<(u16, u16)>,
    /// The IPv4 header whose checksum to fill: `(l2_len, l3_len)`.
    pub ipv4: Option<(u16, u16)>,
    /// TCP segmentation; `None` also when the payload fits one segment (then the frame
    /// goes as it is, its checksum completed).
    pub tso: Option<Tso>,
    /// The frame asked for segmentation (even if it fits one segment): its TCP seed lacks
    /// the length, which `rewrite` adds.
    seed_without_len: bool,
    /// The L3 header is IPv6 (for the length `rewrite` sets under segmentation).
    ipv6: bool,
    /// `l2_len` (where `rewrite` finds the IP header under segmentation).
    l2: u16,
}

/// Why a frame's offload request cannot be carried out. Each such frame is dropped and
/// counted by the PMD (`tx_bad_offload_request`); nothing is sent half-done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxRequestError {
    /// The TCP/UDP checksum field (`l2_len + l3_len` + 16 or 6, two bytes) lies past the
    /// frame's end.
    ChecksumPastFrame {
        /// Where checksumming starts.
        start: u16,
        /// Where from there the field is.
        offset: u16,
        /// The frame's length.
        pkt_len: u32,
    },
    /// `TX_IP_CKSUM` (or segmentation of `TX_IPV4`) on bytes that are not an IPv4 header of
    /// `l3_len` ≥ 20 at `l2_len`.
    NotIpv4 {
        /// `l2_len`.
        l2: u16,
        /// `l3_len`.
        l3: u16,
    },
    /// Segmentation of `TX_IPV6` on bytes that are not an IPv6 header (`l3_len` ≥ 40).
    NotIpv6 {
        /// `l2_len`.
        l2: u16,
        /// `l3_len`.
        l3: u16,
    },
    /// Segmentation of `TX_IPV6` whose extension headers (hop-by-hop first, routing,
    /// destination options; at most [`MAX_IPV6_EXT_HDRS`]) do not end exactly at `l3_len`.
    Ipv6ExtHeaders {
        /// `l2_len`.
        l2: u16,
        /// `l3_len`.
        l3: u16,
    },
    /// The headers to rewrite are not all in the first segment.
    HeadersPastFirstSegment {
        /// Header bytes the request needs.
        need: usize,
        /// Bytes of the first segment.
        first: usize,
    },
    /// The headers to rewrite are longer than [`MAX_REWRITE`].
    HeadersTooLong {
        /// Header bytes the request needs.
        need: usize,
    },
    /// `TX_TCP_SEG` without `TX_IPV4` or `TX_IPV6`, or on a protocol that is not TCP (over
    /// IPv6: after the extension headers; a fragment header, ESP or AH is not TCP).
    SegmentationNotTcp,
    /// `l4_len` is not the TCP header's length (its data offset × 4, at least 20).
    TcpHeaderLength {
        /// `l4_len`.
        l4_len: u16,
        /// The TCP header's own length.
        tcp: u16,
    },
    /// `tso_segsz` is zero, or a segment's IP packet (L3 + TCP headers + `tso_segsz`) would
    /// exceed the port's MTU.
    SegmentSize {
        /// `tso_segsz`.
        mss: u16,
        /// The largest `tso_segsz` the port's MTU allows.
        max: u32,
    },
    /// The frame is longer than IP's 16-bit length can describe.
    TooLongToSegment {
        /// The frame's length.
        pkt_len: u32,
    },
}

impl fmt::Display for TxRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TxRequestError::ChecksumPastFrame {
                start,
                offset,
                pkt_len,
            } => write!(
                f,
                "TCP/UDP checksum offload: the field at {start}+{offset} is past the \
                 {pkt_len}-byte frame; set l2_len and l3_len to the frame's header lengths"
            ),
            TxRequestError::NotIpv4 { l2, l3 } => write!(
                f,
                "IPv4 offload: no IPv4 header of {l3} bytes (at least 20) at offset {l2}; \
                 check l2_len, l3_len and the TX_IPV4 flag"
            ),
            TxRequestError::NotIpv6 { l2, l3 } => write!(
                f,
                "IPv6 segmentation: no IPv6 header of {l3} bytes (at least 40) at offset \
                 {l2}; check l2_len, l3_len and the TX_IPV6 flag"
            ),
            TxRequestError::Ipv6ExtHeaders { l2, l3 } => write!(
                f,
                "IPv6 segmentation: the extension headers of the IPv6 header at {l2} do not end \
                 at l3_len {l3} (hop-by-hop only first, routing and destination options, at \
                 most {MAX_IPV6_EXT_HDRS}); set l3_len to the IPv6 header and its extension \
                 headers"
            ),
            TxRequestError::HeadersPastFirstSegment { need, first } => write!(
                f,
                "offload: the {need} bytes of headers to rewrite are not all in the first \
                 segment ({first} bytes); put the headers in the first mbuf of the chain"
            ),
            TxRequestError::HeadersTooLong { need } => write!(
                f,
                "offload: {need} bytes of headers are more than this PMD rewrites \
                 ({MAX_REWRITE}); compute these checksums in software"
            ),
            TxRequestError::SegmentationNotTcp => f.write_str(
                "TCP segmentation: the frame is not TCP over IPv4 or IPv6; set TX_IPV4 or \
                 TX_IPV6 and send TCP, or segment other protocols in software",
            ),
            TxRequestError::TcpHeaderLength { l4_len, tcp } => write!(
                f,
                "TCP segmentation: l4_len {l4_len} is not the TCP header's length {tcp}; set \
                 l4_len to the data offset × 4"
            ),
            TxRequestError::SegmentSize { mss, max } => write!(
                f,
                "TCP segmentation: tso_segsz {mss} must be 1..={max} so each segment fits \
                 the port's MTU"
            ),
            TxRequestError::TooLongToSegment { pkt_len } => write!(
                f,
                "TCP segmentation: a {pkt_len}-byte frame is longer than IP's 16-bit \
                 length; send at most 64 KiB per request"
            ),
        }
    }
}

impl core::error::Error for TxRequestError {}

const TCP: u8 = 6;
/// IPv6 extension headers segmentation passes over to find TCP (Linux's GSO passes over
/// these, `ipv6_gso_pull_exthdrs`; DPDK's `rte_net_skip_ip6_ext` too).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const DEST_OPTS: u8 = 60;

/// Most IPv6 extension headers a segmentation request may have before TCP (DPDK's
/// `rte_net_skip_ip6_ext` walks as many).
pub const MAX_IPV6_EXT_HDRS: usize = 5;

/// Walks the extension headers of the IPv6 header at the start of `l3` (`l3.len()` ≥ 40:
/// `l3_len` bytes): hop-by-hop (only right after the IPv6 header), routing and destination
/// options, each `(length + 1) * 8` bytes, at most [`MAX_IPV6_EXT_HDRS`]. Returns the
/// protocol after them and where it starts; `Err(())` if a header runs past `l3_len`, a
/// hop-by-hop header is not first, or there are more headers than that.
fn ipv6_upper_protocol(l3: &[u8]) -> Result<(u8, usize), ()> {
    let mut next = l3[6];
    let mut off = 40;
    for i in 0..=MAX_IPV6_EXT_HDRS {
        match next {
            ROUTING | DEST_OPTS if i < MAX_IPV6_EXT_HDRS => {}
            HOP_BY_HOP if i == 0 => {}
            HOP_BY_HOP | ROUTING | DEST_OPTS => return Err(()),
            upper => return Ok((upper, off)),
        }
        // Each header's next-header and length bytes, then its whole length, inside l3.
        let hdr = l3.get(off..off + 2).ok_or(())?;
        next = hdr[0];
        off += (hdr[1] as usize + 1) * 8;
        if off > l3.len() {
            return Err(());
        }
    }
    Err(())
}

impl TxRequest {
    /// Reads `m`'s request for the offloads in `offered` (the port's configured transmit
    /// offloads; flags for others are not acted on) and checks it against the frame.
    /// `mtu` is the port's MTU: each segment's IP packet must fit it.
    #[inline]
    pub fn check(m: &Mbuf, offered: TxOffload, mtu: u32) -> Result<Self, TxRequestError> {
        let mut r = TxRequest::default();
        let flags = m.ol_flags();
        let t = m.tx_offload();
        let (l2, l3) = (t.l2_len(), t.l3_len());
        let data = m.data();
        let pkt_len = m.pkt_len();
        let seg = offered.contains(TxOffload::TCP_TSO) && flags.contains(OlFlags::TX_TCP_SEG);
        if seg {
            let ipv6 = if flags.contains(OlFlags::TX_IPV4) {
                false
            } else if flags.contains(OlFlags::TX_IPV6) {
                true
            } else {
                return Err(TxRequestError::SegmentationNotTcp);
            };
            let need = (l2 + l3 + t.l4_len()) as usize;
            fits_first(need, data.len())?;
            let (l2u, l3u) = (l2 as usize, l3 as usize);
            if ipv6 {
                if l3 < 40 || data[l2u] >> 4 != 6 {
                    return Err(TxRequestError::NotIpv6 { l2, l3 });
                }
                // TCP after the extension headers, which end at l3_len; anything else (UDP, a
                // fragment, ESP) is never segmented as TCP.
                match ipv6_upper_protocol(&data[l2u..l2u + l3u]) {
                    Ok((TCP, at)) if at == l3u => {}
                    Ok((TCP, _)) | Err(()) => {
                        return Err(TxRequestError::Ipv6ExtHeaders { l2, l3 })
                    }
                    Ok(_) => return Err(TxRequestError::SegmentationNotTcp),
                }
            } else {
                if l3 < 20 || data[l2u] >> 4 != 4 {
                    return Err(TxRequestError::NotIpv4 { l2, l3 });
                }
                if data[l2u + 9] != TCP {
                    return Err(TxRequestError::SegmentationNotTcp);
                }
            }
            let tcp = if need >= l2u + l3u + 13 {
                (data[l2u + l3u + 12] >> 4) as u16 * 4
            } else {
                0
            };
            if t.l4_len() < 20 || tcp != t.l4_len() {
                return Err(TxRequestError::TcpHeaderLength {
                    l4_len: t.l4_len(),
                    tcp,
                });
            }
            let hdr = need as u32;
            let max = mtu.saturating_sub(hdr - l2 as u32);
            let mss = t.tso_segsz();
            if mss == 0 || mss as u32 > max {
                return Err(TxRequestError::SegmentSize { mss, max });
            }
            if pkt_len.saturating_sub(l2 as u32) > u16::MAX as u32 + if ipv6 { 40 } else { 0 } {
                return Err(TxRequestError::TooLongToSegment { pkt_len });
            }
            r.seed_without_len = true;
            r.ipv6 = ipv6;
            r.l2 = l2;
            r.csum = Some((l2 + l3, 16));
            if !ipv6 {
                r.ipv4 = Some((l2, l3));
            }
            if pkt_len > hdr + mss as u32 {
                r.tso = Some(Tso {
                    ipv6,
                    l2,
                    l3,
                    l4: t.l4_len(),
                    mss,
                });
            }
            return Ok(r);
        }
        if offered.intersects(TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM) {
            let field = match flags.tx_l4_cksum() {
                TxL4Cksum::Tcp if offered.contains(TxOffload::TCP_CKSUM) => Some(16u16),
                TxL4Cksum::Udp if offered.contains(TxOffload::UDP_CKSUM) => Some(6),
                _ => None,
            };
            if let Some(offset) = field {
                let start = l2 + l3;
                if start as u32 + offset as u32 + 2 > pkt_len {
                    return Err(TxRequestError::ChecksumPastFrame {
                        start,
                        offset,
                        pkt_len,
                    });
                }
                r.csum = Some((start, offset));
            }
        }
        if offered.contains(TxOffload::IPV4_CKSUM) && flags.contains(OlFlags::TX_IP_CKSUM) {
            let need = (l2 + l3) as usize;
            fits_first(need, data.len())?;
            if l3 < 20 || data[l2 as usize] >> 4 != 4 {
                return Err(TxRequestError::NotIpv4 { l2, l3 });
            }
            r.ipv4 = Some((l2, l3));
        }
        Ok(r)
    }

    /// Nothing asked.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.csum.is_none() && self.ipv4.is_none()
    }

    /// Bytes at the frame's start that [`rewrite`](Self::rewrite) changes (0: none; the
    /// frame goes as it is). At most [`MAX_REWRITE`], within the first segment.
    #[inline]
    pub fn rewrite_len(&self) -> usize {
        if self.seed_without_len {
            // Checked in `check`: the TCP header is in the first segment.
            let (start, _) = self.csum.unwrap_or_default();
            start as usize + 20
        } else if let Some((l2, l3)) = self.ipv4 {
            (l2 + l3) as usize
        } else {
            0
        }
    }

    /// Rewrites `heads`, a copy of the first [`rewrite_len`](Self::rewrite_len) bytes of a
    /// `pkt_len`-byte frame: fills the IPv4 header checksum; under segmentation first sets
    /// the IP length to the frame's and adds the TCP length to the checksum seed (DPDK's
    /// convention to Linux's). `heads` shorter than `rewrite_len` is left as it is.
    #[inline]
    pub fn rewrite(&self, heads: &mut [u8], pkt_len: u32) {
        if heads.len() < self.rewrite_len() {
            return;
        }
        if self.seed_without_len {
            let (start, offset) = self.csum.unwrap_or_default();
            let (start, field) = (start as usize, (start + offset) as usize);
            let l2 = self.l2 as usize;
            if self.ipv6 {
                let payload = (pkt_len as usize).saturating_sub(l2 + 40) as u16;
                heads[l2 + 4..l2 + 6].copy_from_slice(&payload.to_be_bytes());
            } else {
                let total = (pkt_len as usize).saturating_sub(l2) as u16;
                heads[l2 + 2..l2 + 4].copy_from_slice(&total.to_be_bytes());
            }
            let l4_len = pkt_len.saturating_sub(start as u32);
            let seed = u16::from_be_bytes([heads[field], heads[field + 1]]);
            let seed = fold(seed as u32 + (l4_len >> 16) + (l4_len & 0xffff));
            heads[field..field + 2].copy_from_slice(&seed.to_be_bytes());
        }
        if let Some((l2, l3)) = self.ipv4 {
            let (l2, end) = (l2 as usize, (l2 + l3) as usize);
            heads[l2 + 10..l2 + 12].fill(0);
            let c = checksum(&heads[l2..end]);
            heads[l2 + 10..l2 + 12].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// The virtio-net header for the request: `NEEDS_CSUM` with the checksum span, and the
    /// GSO type, `hdr_len` and `gso_size` under segmentation (`hdr_len` 0 otherwise;
    /// a PMD that uses it as a copy hint sets its own). `num_buffers` 0.
    #[inline]
    pub fn net_hdr(&self) -> NetHdr {
        let mut h = NetHdr::default();
        if let Some((start, offset)) = self.csum {
            h.flags = net_hdr_flags::NEEDS_CSUM;
            h.csum_start = start.into();
            h.csum_offset = offset.into();
        }
        if let Some(t) = self.tso {
            h.gso_type = if t.ipv6 {
                gso_type::TCPV6
            } else {
                gso_type::TCPV4
            };
            h.hdr_len = t.hdr_len().into();
            h.gso_size = t.mss.into();
        }
        h
    }
}

impl TxRequest {
    /// Does the whole request on `frame`, a whole frame in one piece, as a device without
    /// offloads would have it done for it: the [`rewrite`](Self::rewrite) of the headers,
    /// then the TCP/UDP checksum completed over the segment (the field holds the seed; a UDP
    /// checksum that comes out 0 is sent as `0xffff`, RFC 768). Segmentation is not done
    /// here (a PMD that does not offer `TCP_TSO` never has it in a request). `false`, and
    /// nothing checksummed, if `frame` is shorter than the request needs.
    pub fn finish_in_software(&self, frame: &mut [u8]) -> bool {
        if frame.len() < self.rewrite_len() {
            return false;
        }
        if let Some((start, offset)) = self.csum {
            let (start, field) = (start as usize, (start + offset) as usize);
            if field + 2 > frame.len() {
                return false;
            }
            let len = frame.len() as u32;
            self.rewrite(frame, len);
            let mut c = !fold(sum(&frame[start..], 0));
            if offset == 6 && c == 0 {
                c = 0xffff;
            }
            frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
        } else {
            let len = frame.len() as u32;
            self.rewrite(frame, len);
        }
        true
    }
}

impl TxRequest {
    /// [`net_hdr`](Self::net_hdr) as the 10 bytes of the header without `num_buffers`, as
    /// Linux's TAP (`IFF_VNET_HDR`) and packet sockets (`PACKET_VNET_HDR`) take it
    /// (little-endian, the byte order of the hosts rdk runs on).
    #[inline]
    pub fn net_hdr_bytes(&self) -> [u8; NET_HDR_LEN] {
        let mut b = [0u8; NET_HDR_LEN];
        b.copy_from_slice(&self.net_hdr().as_bytes()[..NET_HDR_LEN]);
        b
    }
}

fn fits_first(need: usize, first: usize) -> Result<(), TxRequestError> {
    if need > MAX_REWRITE {
        return Err(TxRequestError::HeadersTooLong { need });
    }
    if need > first {
        return Err(TxRequestError::HeadersPastFirstSegment { need, first });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::RxCksum;
    use crate::mbuf::{PktMbufPool, PktMbufPoolConfig};
    use crate::net::checksum::{pseudo_header, verify_frame_checksums};
    use crate::os::test_dma::TestDma;
    use alloc::vec::Vec;

    const SRC: [u8; 4] = [10, 0, 0, 1];
    const DST: [u8; 4] = [10, 0, 0, 2];
    const ALL: TxOffload = TxOffload::IPV4_CKSUM
        .union(TxOffload::UDP_CKSUM)
        .union(TxOffload::TCP_CKSUM)
        .union(TxOffload::TCP_TSO);

    fn pool() -> PktMbufPool {
        PktMbufPool::create(&TestDma::contiguous(), &PktMbufPoolConfig::new("off", 128)).unwrap()
    }

    /// Ethernet + IPv4 (length and checksum zero, as DPDK's TSO leaves them) + TCP (data
    /// offset 5) with `payload` bytes; the TCP field holds the pseudo-header sum of `seed_len`.
    fn tcp4(payload: usize, seed_len: u16) -> Vec<u8> {
        let mut f = alloc::vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[22] = 64;
        f[23] = TCP;
        f[26..30].copy_from_slice(&SRC);
        f[30..34].copy_from_slice(&DST);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = 0x18;
        let seed = fold(pseudo_header(SRC.into(), DST.into(), TCP, seed_len));
        f[50..52].copy_from_slice(&seed.to_be_bytes());
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        f
    }

    /// `frame` in one mbuf, or split into chained mbufs at `first` bytes and then every 1 KiB.
    fn mbuf(p: &PktMbufPool, frame: &[u8], first: usize, flags: OlFlags, lens: [u16; 4]) -> Mbuf {
        let mut chunks = Vec::new();
        let (head, mut rest) = frame.split_at(first.min(frame.len()));
        chunks.push(head);
        while !rest.is_empty() {
            let (a, b) = rest.split_at(rest.len().min(1024));
            chunks.push(a);
            rest = b;
        }
        let mut m: Option<Mbuf> = None;
        for c in chunks {
            let mut s = p.alloc().unwrap();
            s.append(c.len() as u16).unwrap().copy_from_slice(c);
            match m.as_mut() {
                Some(m) => m.chain(s).unwrap(),
                None => m = Some(s),
            }
        }
        let mut m = m.unwrap();
        {
            let mut meta = m.meta_mut().unwrap();
            meta.set_ol_flags(flags);
            let mut t = meta.tx_offload();
            t.set_l2_len(lens[0]).unwrap();
            t.set_l3_len(lens[1]).unwrap();
            t.set_l4_len(lens[2]).unwrap();
            t.set_tso_segsz(lens[3]);
            meta.set_tx_offload(t);
        }
        m
    }

    const TSO4: OlFlags = OlFlags::TX_TCP_SEG
        .union(OlFlags::TX_TCP_CKSUM)
        .union(OlFlags::TX_IPV4)
        .union(OlFlags::TX_IP_CKSUM);

    /// Completes the checksum the way a device does for `NEEDS_CSUM`: sums from
    /// `csum_start` with the field holding the seed, stores the complement.
    fn complete(frame: &mut [u8], start: usize, offset: usize) {
        let c = !fold(sum(&frame[start..], 0));
        frame[start + offset..start + offset + 2].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn ipv4_segmentation_gets_linux_conventions_in_the_rewritten_headers() {
        let p = pool();
        let mut f = tcp4(3000, 0);
        let m = mbuf(&p, &f, 54, TSO4, [14, 20, 20, 1000]);
        let r = TxRequest::check(&m, ALL, 1500).unwrap();
        assert_eq!(r.csum, Some((34, 16)));
        assert_eq!(r.ipv4, Some((14, 20)));
        let t = r.tso.unwrap();
        assert_eq!((t.ipv6, t.hdr_len(), t.mss), (false, 54, 1000));
        let h = r.net_hdr();
        assert_eq!(h.flags, net_hdr_flags::NEEDS_CSUM);
        assert_eq!(h.gso_type, gso_type::TCPV4);
        assert_eq!((h.hdr_len.get(), h.gso_size.get()), (54, 1000));
        assert_eq!((h.csum_start.get(), h.csum_offset.get()), (34, 16));
        assert_eq!(r.rewrite_len(), 54);
        r.rewrite(&mut f[..54], m.pkt_len());
        // The IP length is the frame's, the header checksum right, and the TCP seed now the
        // full pseudo-header sum: completing it as a device does gives a valid segment.
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 3040);
        complete(&mut f, 34, 16);
        assert_eq!(verify_frame_checksums(&f), (RxCksum::Good, RxCksum::Good));
    }

    #[test]
    fn finishing_in_software_gives_what_the_receiver_checks() {
        let p = pool();
        let mut f = tcp4(333, 20 + 333);
        let flags = OlFlags::TX_TCP_CKSUM | OlFlags::TX_IPV4 | OlFlags::TX_IP_CKSUM;
        let m = mbuf(&p, &f, f.len(), flags, [14, 20, 20, 0]);
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        let r = TxRequest::check(&m, ALL, 1500).unwrap();
        assert!(r.finish_in_software(&mut f));
        assert_eq!(verify_frame_checksums(&f), (RxCksum::Good, RxCksum::Good));
        assert!(
            !r.finish_in_software(&mut f[..40]),
            "shorter than the request"
        );
        // UDP whose checksum comes out 0 is sent as 0xffff.
        let mut u = alloc::vec![0u8; 14 + 20 + 8 + 2];
        u[12..14].copy_from_slice(&[0x08, 0x00]);
        u[14] = 0x45;
        u[16..18].copy_from_slice(&30u16.to_be_bytes());
        u[23] = 17;
        u[38..40].copy_from_slice(&10u16.to_be_bytes());
        let seed = fold(pseudo_header([0; 4].into(), [0; 4].into(), 17, 10));
        u[40..42].copy_from_slice(&seed.to_be_bytes());
        // Payload chosen so the segment sums to 0xffff with the seed: checksum 0.
        let rest = !fold(seed as u32 + 10);
        u[42..44].copy_from_slice(&rest.to_be_bytes());
        let flags = OlFlags::TX_UDP_CKSUM | OlFlags::TX_IPV4 | OlFlags::TX_IP_CKSUM;
        let m = mbuf(&p, &u, u.len(), flags, [14, 20, 0, 0]);
        let r = TxRequest::check(&m, ALL, 1500).unwrap();
        assert!(r.finish_in_software(&mut u));
        assert_eq!(&u[40..42], &[0xff, 0xff]);
        assert_eq!(verify_frame_checksums(&u).1, RxCksum::Good);
    }

    #[test]
    fn a_segmentation_request_that_fits_one_segment_goes_whole_with_its_seed_fixed() {
        let p = pool();
        let mut f = tcp4(400, 0);
        let m = mbuf(&p, &f, f.len(), TSO4, [14, 20, 20, 1000]);
        let r = TxRequest::check(&m, ALL, 1500).unwrap();
        assert_eq!(r.tso, None);
        assert_eq!(r.net_hdr().gso_type, gso_type::NONE);
        assert_eq!(r.net_hdr().flags, net_hdr_flags::NEEDS_CSUM);
        r.rewrite(&mut f[..r.rewrite_len()], m.pkt_len());
        complete(&mut f, 34, 16);
        assert_eq!(verify_frame_checksums(&f), (RxCksum::Good, RxCksum::Good));
    }

    #[test]
    fn ipv6_segmentation_sets_the_payload_length_and_the_seed() {
        let p = pool();
        let (src, dst) = (
            [0x20u8, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20u8, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        );
        let payload = 5000;
        let mut f = alloc::vec![0u8; 14 + 40 + 20 + payload];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[20] = TCP;
        f[21] = 64;
        f[22..38].copy_from_slice(&src);
        f[38..54].copy_from_slice(&dst);
        f[66] = 5 << 4;
        let seed = fold(sum(&src, 0) + sum(&dst, 0) + TCP as u32);
        f[70..72].copy_from_slice(&seed.to_be_bytes());
        for (i, b) in f[74..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let flags = OlFlags::TX_TCP_SEG | OlFlags::TX_TCP_CKSUM | OlFlags::TX_IPV6;
        let m = mbuf(&p, &f, 74, flags, [14, 40, 20, 1400]);
        let r = TxRequest::check(&m, ALL, 1500).unwrap();
        assert_eq!(r.ipv4, None);
        assert_eq!(r.net_hdr().gso_type, gso_type::TCPV6);
        assert_eq!(r.rewrite_len(), 74);
        r.rewrite(&mut f[..74], m.pkt_len());
        let l4 = (20 + payload) as u32;
        assert_eq!(u16::from_be_bytes([f[18], f[19]]) as u32, l4);
        complete(&mut f, 54, 16);
        let whole = sum(&src, 0) + sum(&dst, 0) + TCP as u32 + l4 + sum(&f[54..], 0);
        assert_eq!(fold(whole), 0xffff, "the segment's checksum verifies");
    }

    const TSO6: OlFlags = OlFlags::TX_TCP_SEG
        .union(OlFlags::TX_TCP_CKSUM)
        .union(OlFlags::TX_IPV6);

    /// Ethernet + IPv6 + the extension headers `chain` (each its type and its length field:
    /// `(len + 1) * 8` bytes) + 20 bytes of `upper` that read as a TCP header (data offset 5;
    /// for UDP, a datagram whose payload's fifth byte is 0x50) + `payload` bytes; and the
    /// headers' length (`l3_len`).
    fn ip6(chain: &[(u8, u8)], upper: u8, payload: usize) -> (Vec<u8>, u16) {
        let mut f = alloc::vec![0u8; 14 + 40];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[20] = chain.first().map_or(upper, |h| h.0);
        f[21] = 64;
        f[22..38].fill(0x20);
        f[38..54].fill(0x30);
        for (i, &(_, len)) in chain.iter().enumerate() {
            let next = chain.get(i + 1).map_or(upper, |h| h.0);
            let mut h = alloc::vec![0u8; (len as usize + 1) * 8];
            h[0] = next;
            h[1] = len;
            f.extend_from_slice(&h);
        }
        let l3 = (f.len() - 14) as u16;
        let mut l4 = [0u8; 20];
        l4[12] = 5 << 4;
        f.extend_from_slice(&l4);
        f.extend((0..payload).map(|i| i as u8));
        (f, l3)
    }

    /// IPv6 segmentation checked the protocol only when `l3_len` was 40, so with extension
    /// headers a UDP payload was segmented as TCP. The extension headers Linux's GSO passes
    /// over (`ipv6_gso_pull_exthdrs`: hop-by-hop, routing, destination options) are walked,
    /// bounded as DPDK's `rte_net_skip_ip6_ext` (5) and each inside `l3_len`, to TCP exactly
    /// at `l3_len`; anything else is refused with the reason.
    #[test]
    fn ipv6_extension_headers_are_walked_to_tcp_or_refused() {
        const HBH: u8 = 0;
        const RT: u8 = 43;
        const DST: u8 = 60;
        const FRAG: u8 = 44;
        let p = pool();
        let check = |chain: &[(u8, u8)], upper: u8, l3: Option<u16>| {
            let (f, own) = ip6(chain, upper, 3000);
            let l3 = l3.unwrap_or(own);
            let hdrs = (14 + l3 + 20) as usize;
            let m = mbuf(&p, &f, hdrs.min(f.len()), TSO6, [14, l3, 20, 1000]);
            TxRequest::check(&m, ALL, 1500)
        };
        // TCP after the extension headers: segmented, the payload length covering them.
        for chain in [
            &[(DST, 0)][..],
            &[(HBH, 0), (RT, 2), (DST, 1)],
            &[(DST, 0); 5],
        ] {
            let r = check(chain, TCP, None).unwrap();
            let t = r.tso.unwrap();
            let (mut f, l3) = ip6(chain, TCP, 3000);
            assert_eq!((t.ipv6, t.l3, t.hdr_len()), (true, l3, 14 + l3 + 20));
            assert_eq!(r.csum, Some((14 + l3, 16)));
            assert_eq!(r.net_hdr().gso_type, gso_type::TCPV6);
            let n = r.rewrite_len();
            let pkt_len = f.len() as u32;
            r.rewrite(&mut f[..n], pkt_len);
            let want = (f.len() - 14 - 40) as u16;
            assert_eq!(u16::from_be_bytes([f[18], f[19]]), want, "{chain:?}");
        }
        let not_tcp = Err(TxRequestError::SegmentationNotTcp);
        let chain_err = |l3| Err(TxRequestError::Ipv6ExtHeaders { l2: 14, l3 });
        // Not TCP after them: UDP, or a fragment header (never segmented, as in Linux).
        assert_eq!(check(&[(DST, 0)], 17, None), not_tcp);
        assert_eq!(check(&[(HBH, 0), (RT, 0)], 17, None), not_tcp);
        assert_eq!(check(&[(FRAG, 0)], TCP, None), not_tcp);
        assert_eq!(check(&[], 17, None), not_tcp);
        // A chain that does not end at l3_len, runs past it, puts hop-by-hop later, or has
        // more than five headers.
        assert_eq!(check(&[(DST, 0)], TCP, Some(40)), chain_err(40));
        assert_eq!(check(&[(DST, 0)], TCP, Some(56)), chain_err(56));
        assert_eq!(check(&[(DST, 2)], TCP, Some(48)), chain_err(48));
        assert_eq!(check(&[(DST, 0), (HBH, 0)], TCP, None), chain_err(56));
        assert_eq!(check(&[(DST, 0); 6], TCP, None), chain_err(88));
        assert!(!alloc::format!("{}", chain_err(88).unwrap_err()).is_empty());
        assert_eq!(p.available(), p.size(), "every mbuf back");
    }

    /// Any `l3_len` over IPv6 headers with extension headers of any lengths, over any prefix:
    /// `check` answers, never reads past the frame.
    #[test]
    #[cfg_attr(miri, ignore = "a sweep for panics; slow under Miri")]
    fn any_ipv6_chain_never_panics() {
        let p = pool();
        let mut n = 0;
        for lens in [[0u8, 0], [1, 255], [255, 0], [3, 1]] {
            let (whole, _) = ip6(&[(0, lens[0]), (60, lens[1])], TCP, 40);
            for len in (54..whole.len().min(200)).step_by(5) {
                for l3 in (40u16..160).step_by(4) {
                    let m = mbuf(&p, &whole[..len], len, TSO6, [14, l3, 20, 8]);
                    if let Ok(r) = TxRequest::check(&m, ALL, 1500) {
                        assert!(r.rewrite_len() <= len);
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 0);
        assert_eq!(p.available(), p.size());
    }

    #[test]
    fn checksum_only_requests_match_what_they_ask_and_need_no_copy_without_ipv4() {
        let p = pool();
        let f = tcp4(100, 120);
        let m = mbuf(
            &p,
            &f,
            f.len(),
            OlFlags::TX_TCP_CKSUM | OlFlags::TX_IPV4,
            [14, 20, 0, 0],
        );
        let r = TxRequest::check(&m, ALL, 1500).unwrap();
        assert_eq!(
            (r.csum, r.ipv4, r.tso, r.rewrite_len()),
            (Some((34, 16)), None, None, 0)
        );
        let none = TxRequest::check(&m, TxOffload::UDP_CKSUM, 1500).unwrap();
        assert!(none.is_empty(), "TCP checksum not offered: nothing done");
        let m = mbuf(&p, &f, f.len(), TSO4, [14, 20, 20, 1000]);
        let r = TxRequest::check(&m, TxOffload::IPV4_CKSUM | TxOffload::TCP_CKSUM, 1500).unwrap();
        assert_eq!(
            (r.tso, r.ipv4, r.csum),
            (None, Some((14, 20)), Some((34, 16))),
            "no TSO offered"
        );
    }

    #[test]
    fn bad_requests_get_the_error_that_names_them() {
        let p = pool();
        let f = tcp4(3000, 0);
        let e = |frame: &[u8], first: usize, flags: OlFlags, lens: [u16; 4], max: u32| {
            TxRequest::check(&mbuf(&p, frame, first, flags, lens), ALL, max).unwrap_err()
        };
        let tso_no_ip = OlFlags::TX_TCP_SEG | OlFlags::TX_TCP_CKSUM;
        assert_eq!(
            e(&f, 54, tso_no_ip, [14, 20, 20, 1000], 1500),
            TxRequestError::SegmentationNotTcp
        );
        let mut udp = f.clone();
        udp[23] = 17;
        assert_eq!(
            e(&udp, 54, TSO4, [14, 20, 20, 1000], 1500),
            TxRequestError::SegmentationNotTcp
        );
        assert_eq!(
            e(&f, 100, TSO4, [14, 20, 24, 1000], 1500),
            TxRequestError::TcpHeaderLength {
                l4_len: 24,
                tcp: 20
            }
        );
        assert_eq!(
            e(&f, 54, TSO4, [14, 20, 20, 0], 1500),
            TxRequestError::SegmentSize { mss: 0, max: 1460 }
        );
        assert_eq!(
            e(&f, 54, TSO4, [14, 20, 20, 1461], 1500),
            TxRequestError::SegmentSize {
                mss: 1461,
                max: 1460
            }
        );
        assert_eq!(
            e(&f, 40, TSO4, [14, 20, 20, 1000], 1500),
            TxRequestError::HeadersPastFirstSegment {
                need: 54,
                first: 40
            }
        );
        let flags6 = OlFlags::TX_TCP_SEG | OlFlags::TX_TCP_CKSUM | OlFlags::TX_IPV6;
        assert_eq!(
            e(&f, 100, flags6, [14, 40, 20, 1000], 1500),
            TxRequestError::NotIpv6 { l2: 14, l3: 40 }
        );
        assert_eq!(
            e(&f, 100, TSO4, [14, 19, 20, 1000], 1500),
            TxRequestError::NotIpv4 { l2: 14, l3: 19 }
        );
        assert_eq!(
            e(
                &f,
                54,
                OlFlags::TX_IP_CKSUM | OlFlags::TX_IPV4,
                [14, 300, 0, 0],
                1500
            ),
            TxRequestError::HeadersTooLong { need: 314 }
        );
        let short = tcp4(0, 20);
        assert_eq!(
            e(&short, 54, OlFlags::TX_TCP_CKSUM, [14, 30, 0, 0], 1500),
            TxRequestError::ChecksumPastFrame {
                start: 44,
                offset: 16,
                pkt_len: 54
            }
        );
        let long = tcp4(66000, 0);
        assert_eq!(
            e(&long, 54, TSO4, [14, 20, 20, 1000], 1500),
            TxRequestError::TooLongToSegment { pkt_len: 66054 }
        );
        for err in [
            TxRequestError::SegmentationNotTcp,
            TxRequestError::HeadersTooLong { need: 314 },
        ] {
            assert!(!alloc::format!("{err}").is_empty());
        }
        assert_eq!(p.available(), p.size(), "every mbuf back");
    }

    /// Whatever lengths and bytes an application hands in, `check` answers and `rewrite`
    /// stays inside what it is given: every combination of small lengths over every frame
    /// prefix, with all requests on.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "a sweep for panics over code the other tests run under Miri; slow there"
    )]
    fn any_lengths_over_any_prefix_never_panic() {
        let p = pool();
        let whole = tcp4(64, 0);
        let mut n = 0;
        for len in (0..whole.len()).step_by(3) {
            for l2 in [0u16, 6, 14, 18, 60] {
                for l3 in [0u16, 19, 20, 24, 40, 60] {
                    for l4 in [0u16, 8, 20, 32] {
                        for flags in [
                            TSO4,
                            OlFlags::TX_TCP_SEG | OlFlags::TX_IPV6 | OlFlags::TX_TCP_CKSUM,
                            OlFlags::TX_UDP_CKSUM | OlFlags::TX_IP_CKSUM,
                        ] {
                            if len == 0 {
                                continue;
                            }
                            let m = mbuf(&p, &whole[..len], len, flags, [l2, l3, l4, 8]);
                            if let Ok(r) = TxRequest::check(&m, ALL, 1500) {
                                let mut heads = whole[..r.rewrite_len()].to_vec();
                                assert!(r.rewrite_len() <= len);
                                r.rewrite(&mut heads, m.pkt_len());
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(n > 0);
        assert_eq!(p.available(), p.size());
    }
}
