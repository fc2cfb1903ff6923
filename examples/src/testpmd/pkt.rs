//! The packets txonly and flowgen send: Ethernet / IPv4 / UDP with correct checksums, and the
//! header rewrites of the mac and macswap modes.

/// Ethernet + IPv4 (no options) + UDP header bytes.
pub const HDR_LEN: usize = 14 + 20 + 8;

/// One's-complement sum of 16-bit big-endian words (RFC 1071), not yet folded.
fn sum16(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        s += u32::from(*b) << 8;
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The IPv4 header checksum of `hdr` (its checksum field counted as zero or as is: call with
/// the field zeroed to compute, or as received to verify — a valid header gives 0).
pub fn ipv4_checksum(hdr: &[u8]) -> u16 {
    fold(sum16(hdr))
}

/// The UDP checksum over the IPv4 pseudo-header and `udp` (header + payload, checksum field
/// zeroed to compute; as received to verify, where a valid datagram gives 0).
pub fn udp_checksum(src: [u8; 4], dst: [u8; 4], udp: &[u8]) -> u16 {
    let mut s = sum16(&src) + sum16(&dst) + 17 + udp.len() as u32;
    s += sum16(udp);
    let c = fold(s);
    // RFC 768: a computed zero is sent as all ones.
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// Addresses of generated packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address.
    pub src_ip: [u8; 4],
    /// Destination IPv4 address.
    pub dst_ip: [u8; 4],
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
}

impl Default for Template {
    /// dpdk-testpmd's txonly defaults: 198.18.0.1 → 198.18.0.2 (RFC 2544 range), ports 9 → 9.
    fn default() -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_ip: [198, 18, 0, 1],
            dst_ip: [198, 18, 0, 2],
            src_port: 9,
            dst_port: 9,
        }
    }
}

impl Template {
    /// Writes a whole frame of `frame.len()` bytes (≥ [`HDR_LEN`]): headers with correct
    /// checksums, then a zero payload.
    pub fn write(&self, frame: &mut [u8]) {
        assert!(frame.len() >= HDR_LEN, "frame shorter than its headers");
        let total = frame.len();
        frame[HDR_LEN..].fill(0);
        frame[0..6].copy_from_slice(&self.dst_mac);
        frame[6..12].copy_from_slice(&self.src_mac);
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut frame[14..34];
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&((total - 14) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0u16.to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = 17;
        ip[10..12].fill(0);
        ip[12..16].copy_from_slice(&self.src_ip);
        ip[16..20].copy_from_slice(&self.dst_ip);
        let c = ipv4_checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let udp_len = (total - 34) as u16;
        let udp = &mut frame[34..];
        udp[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[6..8].fill(0);
        let c = udp_checksum(self.src_ip, self.dst_ip, udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    }
}

/// Updates a 16-bit one's-complement checksum for one 16-bit word changing from `old` to
/// `new` (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
fn csum_update(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Rewrites the IPv4 source address of a frame made by [`Template::write`], updating the IP
/// and UDP checksums incrementally instead of summing the frame again.
pub fn set_src_ip(frame: &mut [u8], ip: [u8; 4]) {
    if frame.len() < HDR_LEN {
        return;
    }
    let mut ip_sum = u16::from_be_bytes([frame[24], frame[25]]);
    let mut udp_sum = u16::from_be_bytes([frame[40], frame[41]]);
    for w in 0..2 {
        let at = 26 + 2 * w;
        let old = u16::from_be_bytes([frame[at], frame[at + 1]]);
        let new = u16::from_be_bytes([ip[2 * w], ip[2 * w + 1]]);
        ip_sum = csum_update(ip_sum, old, new);
        if udp_sum != 0 {
            udp_sum = csum_update(udp_sum, old, new);
        }
        frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
    }
    // A UDP checksum that comes out as zero is sent as all ones (RFC 768).
    if udp_sum == 0 && u16::from_be_bytes([frame[40], frame[41]]) != 0 {
        udp_sum = 0xffff;
    }
    frame[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    frame[40..42].copy_from_slice(&udp_sum.to_be_bytes());
}

/// Swaps source and destination MAC addresses (macswap mode); frames shorter than an
/// Ethernet header are left alone.
#[inline]
pub fn swap_macs(frame: &mut [u8]) {
    if frame.len() >= 12 {
        let (dst, rest) = frame.split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }
}

/// Sets source and destination MAC addresses (mac mode).
#[inline]
pub fn set_macs(frame: &mut [u8], src: [u8; 6], dst: [u8; 6]) {
    if frame.len() >= 12 {
        frame[0..6].copy_from_slice(&dst);
        frame[6..12].copy_from_slice(&src);
    }
}

/// Whether `frame` is a well-formed Ethernet/IPv4/UDP frame whose IP and UDP checksums verify.
pub fn verify(frame: &[u8]) -> bool {
    if frame.len() < HDR_LEN || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &frame[14..34];
    if ip[0] != 0x45 || ip[9] != 17 || ipv4_checksum(ip) != 0 {
        return false;
    }
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if tot < 20 + 8 || tot + 14 > frame.len() {
        return false;
    }
    let udp = &frame[34..14 + tot];
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if ulen != udp.len() {
        return false;
    }
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    // Verifying over a datagram with its checksum gives 0, which udp_checksum reports as 0xffff.
    udp_checksum(src, dst, udp) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ipv4_checksum() {
        // The example header from RFC 1071 discussions / Wikipedia: checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(ipv4_checksum(&h), 0);
    }

    #[test]
    fn generated_frames_verify_and_corruption_is_caught() {
        for len in [60usize, 64, 65, 128, 1514] {
            let mut f = vec![0u8; len];
            Template::default().write(&mut f);
            assert!(verify(&f), "len {len}");
            let mut bad = f.clone();
            bad[40] ^= 1;
            assert!(!verify(&bad), "udp corruption at len {len}");
            let mut bad = f.clone();
            bad[22] ^= 1;
            assert!(!verify(&bad), "ip corruption at len {len}");
        }
    }

    #[test]
    fn a_total_length_shorter_than_the_headers_is_not_well_formed() {
        let mut f = vec![0u8; 64];
        Template::default().write(&mut f);
        for tot in [0u16, 19, 20, 27] {
            let mut bad = f.clone();
            bad[16..18].copy_from_slice(&tot.to_be_bytes());
            bad[24..26].fill(0);
            let c = ipv4_checksum(&bad[14..34]);
            bad[24..26].copy_from_slice(&c.to_be_bytes());
            assert!(!verify(&bad), "total length {tot}");
        }
    }

    #[test]
    fn incremental_source_ip_update_matches_a_full_rebuild() {
        for len in [60usize, 64, 333] {
            let mut f = vec![0u8; len];
            let mut t = Template::default();
            t.write(&mut f);
            for flow in [0u32, 1, 255, 1023, 0xfffe] {
                let b = flow.to_be_bytes();
                let ip = [198, 18, b[2], b[3]];
                set_src_ip(&mut f, ip);
                t.src_ip = ip;
                let mut want = vec![0u8; len];
                t.write(&mut want);
                assert!(verify(&f), "len {len} flow {flow}");
                assert_eq!(&f[26..30], &ip);
                // Equal up to the 0x0000/0xffff ambiguity of one's complement.
                assert_eq!(f[..40], want[..40], "len {len} flow {flow}");
            }
        }
    }

    #[test]
    fn mac_rewrites() {
        let mut f = vec![0u8; 64];
        Template::default().write(&mut f);
        swap_macs(&mut f);
        assert_eq!(&f[0..6], &Template::default().src_mac);
        assert_eq!(&f[6..12], &Template::default().dst_mac);
        set_macs(&mut f, [1; 6], [2; 6]);
        assert_eq!((&f[0..6], &f[6..12]), (&[2u8; 6][..], &[1u8; 6][..]));
        assert!(verify(&f), "MAC rewrites keep the IP/UDP checksums valid");
        let mut short = [1u8, 2, 3];
        swap_macs(&mut short);
        assert_eq!(short, [1, 2, 3]);
    }
}
