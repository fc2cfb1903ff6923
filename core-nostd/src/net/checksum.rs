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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
