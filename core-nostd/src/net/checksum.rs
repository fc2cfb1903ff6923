//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

use core::net::Ipv4Addr;

/// Adds `data` to a running 32-bit one's-complement sum `acc` (16-bit big-endian words, an odd
/// last byte padded with zero). Sums of separate pieces can be added if each piece but the
/// last has even length.
#[inline]
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u16::from_be_bytes([c[0], c[1]]) as u32);
        // Fold early enough that the u32 never overflows (2^16 additions of 0xffff).
        if acc >= 0xffff_0000 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add((*last as u32) << 8);
    }
    acc
}

/// Folds a running sum to 16 bits (end-around carry).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data`: the one's complement of its one's-complement sum. A buffer that
/// contains its own correct checksum sums to `0xffff`, so this returns 0 for it.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// The IPv4 pseudo-header sum for a transport checksum (RFC 768, RFC 793).
#[inline]
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let (s, d) = (src.octets(), dst.octets());
    sum(&s, 0) + sum(&d, 0) + protocol as u32 + len as u32
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word of the covered data changed from `old`
/// to `new`, without summing the data again (a TTL decrement, a NAT rewrite).
#[inline]
pub fn update(cksum: u16, old: u16, new: u16) -> u16 {
    !fold((!cksum) as u32 + (!old) as u32 + new as u32)
}

/// Fills in the checksum of the IPv4 header `l2` bytes into `frame`, `l3` bytes long: what an
/// mbuf's `TX_IP_CKSUM` asks a device to do, for a PMD doing it in software. `false` (and
/// `frame` untouched) if that is not an IPv4 header of at least 20 bytes inside `frame`.
pub fn fill_ipv4_header_checksum(frame: &mut [u8], l2: usize, l3: usize) -> bool {
    let end = l2.saturating_add(l3);
    if l3 < 20 || end > frame.len() || frame[l2] >> 4 != 4 {
        return false;
    }
    frame[l2 + 10..l2 + 12].fill(0);
    let c = checksum(&frame[l2..end]);
    frame[l2 + 10..l2 + 12].copy_from_slice(&c.to_be_bytes());
    true
}

/// What a software receive check finds in Ethernet frame `frame` (DPDK's `RX_IP_CKSUM_*` and
/// `RX_L4_CKSUM_*` states, as a PMD without checksum hardware reports them): the IPv4 header
/// checksum, then the TCP or UDP checksum over the pseudo-header and segment. `Unknown` for
/// what cannot be checked: not IPv4 (one VLAN tag is looked through), lengths the frame does
/// not hold, a fragment, another protocol, a UDP checksum of zero (none was sent, RFC 768),
/// or any L4 when the IPv4 header is bad.
pub fn verify_frame_checksums(frame: &[u8]) -> (crate::mbuf::RxCksum, crate::mbuf::RxCksum) {
    verify_chain_checksums(core::iter::once(frame))
}

/// [`verify_frame_checksums`] of a frame held in pieces, in order (an mbuf chain's segments):
/// the TCP/UDP sum runs across them, pieces of any length. The headers it reads (Ethernet,
/// IPv4, and the first 8 bytes of UDP or 20 of TCP) must be in the first piece; if they are
/// not, the verdicts it cannot reach are `Unknown`.
pub fn verify_chain_checksums<'a, I>(pieces: I) -> (crate::mbuf::RxCksum, crate::mbuf::RxCksum)
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    use crate::mbuf::RxCksum::{Bad, Good, Unknown};
    let verdict = |ok: bool| if ok { Good } else { Bad };
    let Some(frame) = pieces.clone().next() else {
        return (Unknown, Unknown);
    };
    let frame_len: usize = pieces.clone().map(<[u8]>::len).sum();
    let mut l3 = 14;
    let mut ethertype = match frame.get(12..14) {
        Some(t) => u16::from_be_bytes([t[0], t[1]]),
        None => return (Unknown, Unknown),
    };
    if ethertype == 0x8100 {
        l3 = 18;
        ethertype = match frame.get(16..18) {
            Some(t) => u16::from_be_bytes([t[0], t[1]]),
            None => return (Unknown, Unknown),
        };
    }
    if ethertype != 0x0800 {
        return (Unknown, Unknown);
    }
    let Some(&vihl) = frame.get(l3) else {
        return (Unknown, Unknown);
    };
    let ihl = (vihl & 0x0f) as usize * 4;
    let Some(ip) = frame
        .get(l3..l3 + ihl)
        .filter(|_| vihl >> 4 == 4 && ihl >= 20)
    else {
        return (Unknown, Unknown);
    };
    if checksum(ip) != 0 {
        return (Bad, Unknown);
    }
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let l4_at = l3 + ihl;
    if total < ihl || l3 + total > frame_len || fragment {
        return (Good, Unknown);
    }
    let seg_len = total - ihl;
    let (src, dst) = (
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
    );
    let pseudo = |proto: u8, len: usize| {
        pseudo_header(Ipv4Addr::from(src), Ipv4Addr::from(dst), proto, len as u16)
    };
    let l4 = match ip[9] {
        17 if seg_len >= 8 => match frame.get(l4_at..l4_at + 8) {
            Some(u) => {
                let len = u16::from_be_bytes([u[4], u[5]]) as usize;
                if u[6..8] == [0, 0] || len < 8 || len > seg_len {
                    Unknown
                } else {
                    let s = sum_span(pieces, l4_at, l4_at + len, pseudo(17, len));
                    verdict(fold(s) == 0xffff)
                }
            }
            None => Unknown,
        },
        6 if seg_len >= 20 => match frame.get(l4_at..l4_at + 20) {
            Some(_) => {
                let s = sum_span(pieces, l4_at, l4_at + seg_len, pseudo(6, seg_len));
                verdict(fold(s) == 0xffff)
            }
            None => Unknown,
        },
        _ => Unknown,
    };
    (Good, l4)
}

/// Adds bytes `start..end` of a frame held in `pieces` to the running sum `acc`. A piece that
/// starts at an odd offset of the span has its sum byte-swapped (RFC 1071 §2(B)).
fn sum_span<'a>(pieces: impl Iterator<Item = &'a [u8]>, start: usize, end: usize, acc: u32) -> u32 {
    let (mut at, mut acc, mut odd) = (0usize, acc, false);
    for p in pieces {
        let (a, b) = (at, at + p.len());
        at = b;
        if a >= end {
            break;
        }
        let (lo, hi) = (start.max(a), end.min(b));
        if lo >= hi {
            continue;
        }
        let piece = &p[lo - a..hi - a];
        let s = fold(sum(piece, 0)) as u32;
        acc += if odd { s.swap_bytes() >> 16 } else { s };
        if acc >= 0xffff_0000 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        odd ^= piece.len() % 2 == 1;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_checksums_verified_in_software() {
        use crate::mbuf::RxCksum::{Bad, Good, Unknown};
        // Ethernet + IPv4 (10.0.0.1 -> 10.0.0.2) + UDP 1234 -> 5678, payload "hi!".
        let payload = b"hi!";
        let udp_len = 8 + payload.len();
        let mut f = [0u8; 14].to_vec();
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = [
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        f.extend_from_slice(&ip);
        assert!(fill_ipv4_header_checksum(&mut f, 14, 20));
        let mut udp = [0x04, 0xd2, 0x16, 0x2e, 0, udp_len as u8, 0, 0].to_vec();
        udp.extend_from_slice(payload);
        let c = !fold(sum(
            &udp,
            pseudo_header(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                17,
                udp_len as u16,
            ),
        ));
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&udp);
        f.extend_from_slice(&[0; 7]); // Ethernet padding past the IP datagram
        assert_eq!(verify_frame_checksums(&f), (Good, Good));
        let mut bad = f.clone();
        bad[14 + 20 + 8] ^= 1;
        assert_eq!(
            verify_frame_checksums(&bad),
            (Good, Bad),
            "payload bit flipped"
        );
        let mut bad = f.clone();
        bad[14 + 8] ^= 1;
        assert_eq!(verify_frame_checksums(&bad), (Bad, Unknown), "TTL changed");
        let mut none = f.clone();
        none[14 + 26..14 + 28].fill(0);
        assert_eq!(
            verify_frame_checksums(&none),
            (Good, Unknown),
            "no UDP checksum sent"
        );
        assert_eq!(
            verify_frame_checksums(&f[..14 + 20 + 4]),
            (Good, Unknown),
            "cut short"
        );
        assert_eq!(verify_frame_checksums(&f[..13]), (Unknown, Unknown));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(verify_frame_checksums(&arp), (Unknown, Unknown));
        // The same datagram behind a VLAN tag.
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&f[12..]);
        assert_eq!(verify_frame_checksums(&tagged), (Good, Good));
        // TCP: a bare header with its checksum, then one wrong bit.
        let mut t = f[..14 + 20].to_vec();
        t[14 + 9] = 6;
        t[14 + 2..14 + 4].copy_from_slice(&40u16.to_be_bytes());
        assert!(fill_ipv4_header_checksum(&mut t, 14, 20));
        let mut tcp = [0u8; 20];
        tcp[12] = 0x50;
        let c = !fold(sum(
            &tcp,
            pseudo_header(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                6,
                20,
            ),
        ));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        t.extend_from_slice(&tcp);
        assert_eq!(verify_frame_checksums(&t), (Good, Good));
        t[14 + 20 + 4] ^= 0x80;
        assert_eq!(verify_frame_checksums(&t), (Good, Bad));
        // Any bytes at all: never a panic.
        for n in 0..f.len() {
            let _ = verify_frame_checksums(&f[..n]);
            let _ = verify_frame_checksums(&tagged[..n]);
        }
    }

    /// An Ethernet + IPv4 + UDP frame with `n` payload bytes and correct checksums.
    fn udp_frame(n: usize) -> alloc::vec::Vec<u8> {
        let udp_len = 8 + n;
        let mut f = alloc::vec![0u8; 14 + 20 + udp_len];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14..34].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f[16..18].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        assert!(fill_ipv4_header_checksum(&mut f, 14, 20));
        f[34..38].copy_from_slice(&[0x04, 0xd2, 0x16, 0x2e]);
        f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
        for (i, b) in f[42..].iter_mut().enumerate() {
            *b = (i * 37 + 11) as u8;
        }
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let c = !fold(sum(
            &f[34..],
            pseudo_header(src, Ipv4Addr::new(10, 0, 0, 2), 17, udp_len as u16),
        ));
        f[40..42].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// A frame in pieces gets the verdicts the whole frame gets, wherever the cuts fall (odd
    /// offsets included), and a flipped bit in a later piece is found.
    #[test]
    fn chained_frames_are_checked_across_their_pieces() {
        use crate::mbuf::RxCksum::{Bad, Good, Unknown};
        let f = udp_frame(301);
        assert_eq!(verify_frame_checksums(&f), (Good, Good));
        // Miri is slow: a sparser sweep there (odd and even cuts all the same).
        let (sa, sb) = if cfg!(miri) { (37, 61) } else { (1, 7) };
        for a in (42..f.len()).step_by(sa) {
            for b in (a..=f.len()).step_by(sb) {
                let pieces = [&f[..a], &f[a..b], &f[b..]];
                assert_eq!(
                    verify_chain_checksums(pieces.iter().copied()),
                    (Good, Good),
                    "cut at {a}, {b}"
                );
                let mut bad = f.clone();
                bad[f.len() - 1] ^= 0x10;
                let pieces = [&bad[..a], &bad[a..b], &bad[b..]];
                assert_eq!(
                    verify_chain_checksums(pieces.iter().copied()),
                    (Good, Bad),
                    "cut at {a}, {b}"
                );
            }
        }
        // Headers not all in the first piece: what cannot be read is Unknown.
        assert_eq!(
            verify_chain_checksums([&f[..38], &f[38..]].into_iter()),
            (Good, Unknown)
        );
        assert_eq!(
            verify_chain_checksums([&f[..20], &f[20..]].into_iter()),
            (Unknown, Unknown)
        );
        assert_eq!(
            verify_chain_checksums(core::iter::empty()),
            (Unknown, Unknown)
        );
    }

    #[test]
    fn ipv4_header_checksum_fill_checks_what_it_is_given() {
        let mut f = [0u8; 40];
        f[6..26].copy_from_slice(&[
            0x45, 0, 0, 0x1c, 0, 1, 0x40, 0, 64, 17, 0xaa, 0xbb, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        assert!(fill_ipv4_header_checksum(&mut f, 6, 20));
        assert_eq!(
            checksum(&f[6..26]),
            0,
            "a header with its checksum sums to 0xffff"
        );
        let before = f;
        assert!(
            !fill_ipv4_header_checksum(&mut f, 6, 19),
            "shorter than an IPv4 header"
        );
        assert!(!fill_ipv4_header_checksum(&mut f, 30, 20), "past the frame");
        assert!(
            !fill_ipv4_header_checksum(&mut f, usize::MAX, 20),
            "no overflow"
        );
        f[6] = 0x65;
        assert!(!fill_ipv4_header_checksum(&mut f, 6, 20), "not version 4");
        f[6] = 0x45;
        assert_eq!(f, before, "untouched when refused");
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn a_real_ipv4_header() {
        // 192.168.0.1 -> 192.168.0.199, UDP, checksum b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0, "a header with its checksum verifies");
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    proptest! {
        // Miri cannot persist failures (no file system) and is slow: a few cases there.
        #![proptest_config(ProptestConfig {
            cases: if cfg!(miri) { 2 } else { 256 },
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn incremental_update_matches_recomputation(
            mut data in proptest::collection::vec(any::<u8>(), 2..200),
            at in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            let i = at.index(data.len() / 2) * 2;
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            // One's complement has two zeros; RFC 1624's form never yields 0xffff from a
            // non-zero sum, so compare as values modulo that.
            let upd = update(before, old, new);
            prop_assert!(upd == after || (upd == 0xffff && after == 0) || (upd == 0 && after == 0xffff));
        }

        #[test]
        fn split_sums_add_up(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(data.len() & !1);
            let whole = fold(sum(&data, 0));
            let parts = fold(sum(&data[cut..], sum(&data[..cut], 0)));
            prop_assert_eq!(whole, parts);
        }
    }
}
