//! Offload flags (`ol_flags`) and packet types (`packet_type`), with DPDK 22.11's bit values
//! (`rte_mbuf_core.h`, `rte_mbuf_ptype.h`), so a value means the same on both sides.
//!
//! Several `ol_flags` values are multi-bit fields rather than flags: the RX checksum states
//! (two bits each), the TX L4 checksum kind (two bits) and the TX tunnel type (four bits).
//! Testing them with `contains` is a classic bug (a `_NONE` state contains both `_GOOD` and
//! `_BAD`); read them with [`OlFlags::rx_ip_cksum`], [`OlFlags::tx_l4_cksum`],
//! [`OlFlags::tx_tunnel`] and friends instead.

use core::fmt;

bitflags::bitflags! {
    /// Offload flags: what the NIC reported on RX, what the application asks for on TX.
    ///
    /// Multi-bit values are declared before the single bits they span, so formatting names the
    /// value (`TX_UDP_CKSUM`) rather than its bits.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
    #[repr(transparent)]
    pub struct OlFlags: u64 {
        /// RX: the packet had an 802.1Q tag; its TCI is in `vlan_tci`.
        const RX_VLAN = 1 << 0;
        /// RX: the `hash` field holds the RSS hash.
        const RX_RSS_HASH = 1 << 1;
        /// RX: a flow-director filter matched.
        const RX_FDIR = 1 << 2;
        /// RX: the L4 checksum state is "not correct in the data, but the L4 data was
        /// verified" (`RX_L4_CKSUM_NONE`, both state bits).
        const RX_L4_CKSUM_NONE = (1 << 3) | (1 << 8);
        /// RX: the L4 checksum is wrong.
        const RX_L4_CKSUM_BAD = 1 << 3;
        /// RX: the IP checksum state is "not correct in the data, but the header was
        /// verified" (`RX_IP_CKSUM_NONE`, both state bits).
        const RX_IP_CKSUM_NONE = (1 << 4) | (1 << 7);
        /// RX: the IP checksum is wrong.
        const RX_IP_CKSUM_BAD = 1 << 4;
        /// RX: the outermost IP checksum is wrong.
        const RX_OUTER_IP_CKSUM_BAD = 1 << 5;
        /// RX: the VLAN tag was stripped from the data (then `RX_VLAN` is set too).
        const RX_VLAN_STRIPPED = 1 << 6;
        /// RX: the IP checksum is valid.
        const RX_IP_CKSUM_GOOD = 1 << 7;
        /// RX: the L4 checksum is valid.
        const RX_L4_CKSUM_GOOD = 1 << 8;
        /// RX: an IEEE 1588 PTP frame.
        const RX_IEEE1588_PTP = 1 << 9;
        /// RX: an IEEE 1588 timestamped packet.
        const RX_IEEE1588_TMST = 1 << 10;
        /// RX: the flow-director id is in `hash.fdir.hi`.
        const RX_FDIR_ID = 1 << 13;
        /// RX: flow-director flexible bytes are in `hash.fdir`.
        const RX_FDIR_FLX = 1 << 14;
        /// RX: the outer VLAN was stripped; its TCI is in `vlan_tci_outer`.
        const RX_QINQ_STRIPPED = 1 << 15;
        /// RX: packets were coalesced (LRO); `tso_segsz` holds the original segment size.
        const RX_LRO = 1 << 16;
        /// RX: security offload was applied.
        const RX_SEC_OFFLOAD = 1 << 18;
        /// RX: security offload failed.
        const RX_SEC_OFFLOAD_FAILED = 1 << 19;
        /// RX: a double-tagged packet; the outer TCI is in `vlan_tci_outer`.
        const RX_QINQ = 1 << 20;
        /// RX: the outer L4 checksum state is invalid (both state bits).
        const RX_OUTER_L4_CKSUM_INVALID = (1 << 21) | (1 << 22);
        /// RX: the outer L4 checksum is wrong.
        const RX_OUTER_L4_CKSUM_BAD = 1 << 21;
        /// RX: the outer L4 checksum is valid.
        const RX_OUTER_L4_CKSUM_GOOD = 1 << 22;

        /// TX: compute the outer UDP checksum (tunnels).
        const TX_OUTER_UDP_CKSUM = 1 << 41;
        /// TX: UDP fragmentation offload; `tso_segsz` is the fragment size.
        const TX_UDP_SEG = 1 << 42;
        /// TX: apply security offload.
        const TX_SEC_OFFLOAD = 1 << 43;
        /// TX: apply MACsec.
        const TX_MACSEC = 1 << 44;
        /// TX: insert both VLAN tags (`vlan_tci`, `vlan_tci_outer`).
        const TX_QINQ = 1 << 49;
        /// TX: TCP segmentation offload (implies `TX_TCP_CKSUM`; needs the lengths and
        /// `tso_segsz`).
        const TX_TCP_SEG = 1 << 50;
        /// TX: timestamp this IEEE 1588 packet.
        const TX_IEEE1588_TMST = 1 << 51;
        /// TX: compute the UDP checksum (L4 field value 3).
        const TX_UDP_CKSUM = 3 << 52;
        /// TX: compute the TCP checksum (L4 field value 1).
        const TX_TCP_CKSUM = 1 << 52;
        /// TX: compute the SCTP checksum (L4 field value 2).
        const TX_SCTP_CKSUM = 2 << 52;
        /// TX: compute the IP header checksum (needs `l2_len`, `l3_len`).
        const TX_IP_CKSUM = 1 << 54;
        /// TX: the (inner) packet is IPv4.
        const TX_IPV4 = 1 << 55;
        /// TX: the (inner) packet is IPv6.
        const TX_IPV6 = 1 << 56;
        /// TX: insert the VLAN tag in `vlan_tci`.
        const TX_VLAN = 1 << 57;
        /// TX: compute the outer IP checksum.
        const TX_OUTER_IP_CKSUM = 1 << 58;
        /// TX: the outer header is IPv4.
        const TX_OUTER_IPV4 = 1 << 59;
        /// TX: the outer header is IPv6.
        const TX_OUTER_IPV6 = 1 << 60;

        /// An external buffer is attached (never set by rdk, whose mbufs own their buffer).
        const EXTERNAL = 1 << 61;
        /// An indirect (cloned) mbuf (never set by rdk: sharing uses the reference count).
        const INDIRECT = 1 << 62;

        // Bits DPDK hands out as dynamic flags, and the tunnel field: kept, not named.
        const _ = !0;
    }
}

/// A two-bit RX checksum state (`RTE_MBUF_F_RX_{IP,L4}_CKSUM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RxCksum {
    /// The NIC says nothing (`_UNKNOWN`, neither bit).
    Unknown,
    /// The checksum is wrong (`_BAD`).
    Bad,
    /// The checksum is valid (`_GOOD`).
    Good,
    /// The checksum field is not correct in the data, but the NIC verified the header or
    /// payload integrity (`_NONE`, both bits).
    Verified,
}

/// The outer L4 checksum state (`RTE_MBUF_F_RX_OUTER_L4_CKSUM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RxOuterL4Cksum {
    /// No information (`_UNKNOWN`).
    Unknown,
    /// Wrong (`_BAD`).
    Bad,
    /// Valid (`_GOOD`).
    Good,
    /// An invalid state (`_INVALID`, both bits).
    Invalid,
}

/// Which L4 checksum a NIC should compute on TX (`RTE_MBUF_F_TX_L4_MASK` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxL4Cksum {
    /// None (`TX_L4_NO_CKSUM`, value 0).
    Off,
    /// TCP (value 1).
    Tcp,
    /// SCTP (value 2).
    Sctp,
    /// UDP (value 3).
    Udp,
}

/// The tunnel type of a TX packet (`RTE_MBUF_F_TX_TUNNEL_MASK` field, bits 45–48).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TxTunnel {
    /// VXLAN.
    Vxlan = 0x1,
    /// GRE.
    Gre = 0x2,
    /// IP in IP.
    Ipip = 0x3,
    /// Geneve.
    Geneve = 0x4,
    /// MPLS in UDP (RFC 7510).
    MplsInUdp = 0x5,
    /// VXLAN-GPE.
    VxlanGpe = 0x6,
    /// GTP.
    Gtp = 0x7,
    /// ESP.
    Esp = 0x8,
    /// A generic IP-encapsulated tunnel.
    Ip = 0xd,
    /// A generic UDP-encapsulated tunnel.
    Udp = 0xe,
}

impl TxTunnel {
    const ALL: [TxTunnel; 10] = [
        TxTunnel::Vxlan,
        TxTunnel::Gre,
        TxTunnel::Ipip,
        TxTunnel::Geneve,
        TxTunnel::MplsInUdp,
        TxTunnel::VxlanGpe,
        TxTunnel::Gtp,
        TxTunnel::Esp,
        TxTunnel::Ip,
        TxTunnel::Udp,
    ];
}

const TUNNEL_SHIFT: u32 = 45;

impl OlFlags {
    /// The RX IP checksum state bits.
    pub const RX_IP_CKSUM_MASK: Self = Self::RX_IP_CKSUM_NONE;
    /// The RX L4 checksum state bits.
    pub const RX_L4_CKSUM_MASK: Self = Self::RX_L4_CKSUM_NONE;
    /// The RX outer L4 checksum state bits.
    pub const RX_OUTER_L4_CKSUM_MASK: Self = Self::RX_OUTER_L4_CKSUM_INVALID;
    /// The TX L4 checksum field.
    pub const TX_L4_MASK: Self = Self::TX_UDP_CKSUM;
    /// The TX tunnel-type field.
    pub const TX_TUNNEL_MASK: Self = Self::from_bits_retain(0xf << TUNNEL_SHIFT);
    /// Every TX offload request (`RTE_MBUF_F_TX_OFFLOAD_MASK`): a PMD checks a packet's flags
    /// against this and its own capabilities.
    pub const TX_OFFLOAD_MASK: Self = Self::from_bits_retain(
        Self::TX_OUTER_IPV6.bits()
            | Self::TX_OUTER_IPV4.bits()
            | Self::TX_OUTER_IP_CKSUM.bits()
            | Self::TX_VLAN.bits()
            | Self::TX_IPV6.bits()
            | Self::TX_IPV4.bits()
            | Self::TX_IP_CKSUM.bits()
            | Self::TX_L4_MASK.bits()
            | Self::TX_IEEE1588_TMST.bits()
            | Self::TX_TCP_SEG.bits()
            | Self::TX_QINQ.bits()
            | Self::TX_TUNNEL_MASK.bits()
            | Self::TX_MACSEC.bits()
            | Self::TX_SEC_OFFLOAD.bits()
            | Self::TX_UDP_SEG.bits()
            | Self::TX_OUTER_UDP_CKSUM.bits(),
    );

    fn two_bit_state(self, bad: Self, good: Self) -> (bool, bool) {
        (self.intersects(bad), self.intersects(good))
    }

    /// The RX IP checksum state.
    #[inline]
    pub fn rx_ip_cksum(self) -> RxCksum {
        rx_cksum(self.two_bit_state(Self::RX_IP_CKSUM_BAD, Self::RX_IP_CKSUM_GOOD))
    }

    /// The RX L4 checksum state.
    #[inline]
    pub fn rx_l4_cksum(self) -> RxCksum {
        rx_cksum(self.two_bit_state(Self::RX_L4_CKSUM_BAD, Self::RX_L4_CKSUM_GOOD))
    }

    /// The RX outer L4 checksum state.
    #[inline]
    pub fn rx_outer_l4_cksum(self) -> RxOuterL4Cksum {
        match self.two_bit_state(Self::RX_OUTER_L4_CKSUM_BAD, Self::RX_OUTER_L4_CKSUM_GOOD) {
            (false, false) => RxOuterL4Cksum::Unknown,
            (true, false) => RxOuterL4Cksum::Bad,
            (false, true) => RxOuterL4Cksum::Good,
            (true, true) => RxOuterL4Cksum::Invalid,
        }
    }

    /// These flags with the RX IP checksum state replaced.
    #[inline]
    pub fn with_rx_ip_cksum(self, s: RxCksum) -> Self {
        let v = cksum_bits(s, Self::RX_IP_CKSUM_BAD, Self::RX_IP_CKSUM_GOOD);
        self.difference(Self::RX_IP_CKSUM_MASK).union(v)
    }

    /// These flags with the RX L4 checksum state replaced.
    #[inline]
    pub fn with_rx_l4_cksum(self, s: RxCksum) -> Self {
        let v = cksum_bits(s, Self::RX_L4_CKSUM_BAD, Self::RX_L4_CKSUM_GOOD);
        self.difference(Self::RX_L4_CKSUM_MASK).union(v)
    }

    /// The requested TX L4 checksum.
    #[inline]
    pub fn tx_l4_cksum(self) -> TxL4Cksum {
        match (self.bits() & Self::TX_L4_MASK.bits()) >> 52 {
            0 => TxL4Cksum::Off,
            1 => TxL4Cksum::Tcp,
            2 => TxL4Cksum::Sctp,
            _ => TxL4Cksum::Udp,
        }
    }

    /// These flags with the TX L4 checksum request replaced.
    #[inline]
    pub fn with_tx_l4_cksum(self, c: TxL4Cksum) -> Self {
        let v = match c {
            TxL4Cksum::Off => Self::empty(),
            TxL4Cksum::Tcp => Self::TX_TCP_CKSUM,
            TxL4Cksum::Sctp => Self::TX_SCTP_CKSUM,
            TxL4Cksum::Udp => Self::TX_UDP_CKSUM,
        };
        self.difference(Self::TX_L4_MASK).union(v)
    }

    /// The TX tunnel type: `Ok(None)` for none, `Err(code)` for a code DPDK does not define.
    #[inline]
    pub fn tx_tunnel(self) -> Result<Option<TxTunnel>, u8> {
        let code = ((self.bits() & Self::TX_TUNNEL_MASK.bits()) >> TUNNEL_SHIFT) as u8;
        if code == 0 {
            return Ok(None);
        }
        TxTunnel::ALL
            .iter()
            .find(|t| **t as u8 == code)
            .map(|t| Some(*t))
            .ok_or(code)
    }

    /// These flags with the TX tunnel type replaced (`None` clears it).
    #[inline]
    pub fn with_tx_tunnel(self, t: Option<TxTunnel>) -> Self {
        let v = t.map_or(0, |t| (t as u64) << TUNNEL_SHIFT);
        self.difference(Self::TX_TUNNEL_MASK)
            .union(Self::from_bits_retain(v))
    }
}

fn rx_cksum(bits: (bool, bool)) -> RxCksum {
    match bits {
        (false, false) => RxCksum::Unknown,
        (true, false) => RxCksum::Bad,
        (false, true) => RxCksum::Good,
        (true, true) => RxCksum::Verified,
    }
}

fn cksum_bits(s: RxCksum, bad: OlFlags, good: OlFlags) -> OlFlags {
    match s {
        RxCksum::Unknown => OlFlags::empty(),
        RxCksum::Bad => bad,
        RxCksum::Good => good,
        RxCksum::Verified => bad.union(good),
    }
}

impl fmt::Debug for OlFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OlFlags(")?;
        bitflags::parser::to_writer(self, &mut *f)?;
        write!(f, ")")
    }
}

/// A packet type (`packet_type`): outer L2/L3/L4, tunnel, inner L2/L3/L4, one nibble each
/// (`rte_mbuf_ptype.h`). It describes the data as it is in the buffer: with VLAN stripping on,
/// a tagged frame is `L2_ETHER`, not `L2_ETHER_VLAN`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct PacketType(u32);

macro_rules! ptypes {
    ($($(#[$doc:meta])* $name:ident = $v:expr;)*) => {
        impl PacketType {
            $($(#[$doc])* pub const $name: PacketType = PacketType($v);)*
        }
        /// Names of the values, for formatting (masks excluded).
        const PTYPE_NAMES: &[(&str, u32)] = &[$((stringify!($name), $v)),*];
    };
}

ptypes! {
    /// Nothing known.
    UNKNOWN = 0x0000_0000;
    /// Ethernet.
    L2_ETHER = 0x0000_0001;
    /// Ethernet, IEEE 1588 timesync.
    L2_ETHER_TIMESYNC = 0x0000_0002;
    /// Ethernet, ARP.
    L2_ETHER_ARP = 0x0000_0003;
    /// Ethernet, LLDP.
    L2_ETHER_LLDP = 0x0000_0004;
    /// Ethernet, NSH.
    L2_ETHER_NSH = 0x0000_0005;
    /// Ethernet with one VLAN tag.
    L2_ETHER_VLAN = 0x0000_0006;
    /// Ethernet with two VLAN tags.
    L2_ETHER_QINQ = 0x0000_0007;
    /// Ethernet, PPPoE.
    L2_ETHER_PPPOE = 0x0000_0008;
    /// Ethernet, FCoE.
    L2_ETHER_FCOE = 0x0000_0009;
    /// Ethernet, MPLS.
    L2_ETHER_MPLS = 0x0000_000a;
    /// IPv4 without options.
    L3_IPV4 = 0x0000_0010;
    /// IPv4 with options.
    L3_IPV4_EXT = 0x0000_0030;
    /// IPv6 without extension headers.
    L3_IPV6 = 0x0000_0040;
    /// IPv4, options unknown.
    L3_IPV4_EXT_UNKNOWN = 0x0000_0090;
    /// IPv6 with extension headers.
    L3_IPV6_EXT = 0x0000_00c0;
    /// IPv6, extension headers unknown.
    L3_IPV6_EXT_UNKNOWN = 0x0000_00e0;
    /// TCP.
    L4_TCP = 0x0000_0100;
    /// UDP.
    L4_UDP = 0x0000_0200;
    /// An IP fragment.
    L4_FRAG = 0x0000_0300;
    /// SCTP.
    L4_SCTP = 0x0000_0400;
    /// ICMP.
    L4_ICMP = 0x0000_0500;
    /// Not a fragment, L4 otherwise unknown.
    L4_NONFRAG = 0x0000_0600;
    /// IGMP.
    L4_IGMP = 0x0000_0700;
    /// IP in IP.
    TUNNEL_IP = 0x0000_1000;
    /// GRE.
    TUNNEL_GRE = 0x0000_2000;
    /// VXLAN.
    TUNNEL_VXLAN = 0x0000_3000;
    /// NVGRE.
    TUNNEL_NVGRE = 0x0000_4000;
    /// Geneve.
    TUNNEL_GENEVE = 0x0000_5000;
    /// Teredo, VXLAN or GRE with Ethernet inside.
    TUNNEL_GRENAT = 0x0000_6000;
    /// GTP-C.
    TUNNEL_GTPC = 0x0000_7000;
    /// GTP-U.
    TUNNEL_GTPU = 0x0000_8000;
    /// ESP.
    TUNNEL_ESP = 0x0000_9000;
    /// L2TP.
    TUNNEL_L2TP = 0x0000_a000;
    /// VXLAN-GPE.
    TUNNEL_VXLAN_GPE = 0x0000_b000;
    /// MPLS in GRE.
    TUNNEL_MPLS_IN_GRE = 0x0000_c000;
    /// MPLS in UDP.
    TUNNEL_MPLS_IN_UDP = 0x0000_d000;
    /// Inner Ethernet.
    INNER_L2_ETHER = 0x0001_0000;
    /// Inner Ethernet with one VLAN tag.
    INNER_L2_ETHER_VLAN = 0x0002_0000;
    /// Inner Ethernet with two VLAN tags.
    INNER_L2_ETHER_QINQ = 0x0003_0000;
    /// Inner IPv4.
    INNER_L3_IPV4 = 0x0010_0000;
    /// Inner IPv4 with options.
    INNER_L3_IPV4_EXT = 0x0020_0000;
    /// Inner IPv6.
    INNER_L3_IPV6 = 0x0030_0000;
    /// Inner IPv4, options unknown.
    INNER_L3_IPV4_EXT_UNKNOWN = 0x0040_0000;
    /// Inner IPv6 with extension headers.
    INNER_L3_IPV6_EXT = 0x0050_0000;
    /// Inner IPv6, extension headers unknown.
    INNER_L3_IPV6_EXT_UNKNOWN = 0x0060_0000;
    /// Inner TCP.
    INNER_L4_TCP = 0x0100_0000;
    /// Inner UDP.
    INNER_L4_UDP = 0x0200_0000;
    /// Inner IP fragment.
    INNER_L4_FRAG = 0x0300_0000;
    /// Inner SCTP.
    INNER_L4_SCTP = 0x0400_0000;
    /// Inner ICMP.
    INNER_L4_ICMP = 0x0500_0000;
    /// Inner, not a fragment.
    INNER_L4_NONFRAG = 0x0600_0000;
}

impl PacketType {
    /// The outer L2 nibble.
    pub const L2_MASK: PacketType = PacketType(0x0000_000f);
    /// The outer L3 nibble.
    pub const L3_MASK: PacketType = PacketType(0x0000_00f0);
    /// The outer L4 nibble.
    pub const L4_MASK: PacketType = PacketType(0x0000_0f00);
    /// The tunnel nibble.
    pub const TUNNEL_MASK: PacketType = PacketType(0x0000_f000);
    /// The inner L2 nibble.
    pub const INNER_L2_MASK: PacketType = PacketType(0x000f_0000);
    /// The inner L3 nibble.
    pub const INNER_L3_MASK: PacketType = PacketType(0x00f0_0000);
    /// The inner L4 nibble.
    pub const INNER_L4_MASK: PacketType = PacketType(0x0f00_0000);
    /// Every defined bit.
    pub const ALL_MASK: PacketType = PacketType(0x0fff_ffff);

    /// The value with these bits.
    #[inline(always)]
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The bits.
    #[inline(always)]
    pub const fn bits(self) -> u32 {
        self.0
    }

    #[inline(always)]
    const fn masked(self, m: PacketType) -> Self {
        Self(self.0 & m.0)
    }

    /// The outer L2 part (compare with `L2_*`).
    #[inline(always)]
    pub const fn l2(self) -> Self {
        self.masked(Self::L2_MASK)
    }

    /// The outer L3 part (compare with `L3_*`).
    #[inline(always)]
    pub const fn l3(self) -> Self {
        self.masked(Self::L3_MASK)
    }

    /// The outer L4 part (compare with `L4_*`).
    #[inline(always)]
    pub const fn l4(self) -> Self {
        self.masked(Self::L4_MASK)
    }

    /// The tunnel part (compare with `TUNNEL_*`).
    #[inline(always)]
    pub const fn tunnel(self) -> Self {
        self.masked(Self::TUNNEL_MASK)
    }

    /// The inner L2 part.
    #[inline(always)]
    pub const fn inner_l2(self) -> Self {
        self.masked(Self::INNER_L2_MASK)
    }

    /// The inner L3 part.
    #[inline(always)]
    pub const fn inner_l3(self) -> Self {
        self.masked(Self::INNER_L3_MASK)
    }

    /// The inner L4 part.
    #[inline(always)]
    pub const fn inner_l4(self) -> Self {
        self.masked(Self::INNER_L4_MASK)
    }

    /// Whether the outer L3 is some IPv4 (`RTE_ETH_IS_IPV4_HDR`: the IPv4 bit).
    #[inline(always)]
    pub const fn is_ipv4(self) -> bool {
        self.0 & Self::L3_IPV4.0 != 0
    }

    /// Whether the outer L3 is some IPv6 (`RTE_ETH_IS_IPV6_HDR`: the IPv6 bit).
    #[inline(always)]
    pub const fn is_ipv6(self) -> bool {
        self.0 & Self::L3_IPV6.0 != 0
    }

    /// Whether a tunnel was recognised.
    #[inline(always)]
    pub const fn is_tunnel(self) -> bool {
        self.0 & Self::TUNNEL_MASK.0 != 0
    }
}

impl core::ops::BitOr for PacketType {
    type Output = Self;
    #[inline(always)]
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for PacketType {
    #[inline(always)]
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for PacketType {
    /// Names each nibble (`L2_ETHER | L3_IPV4 | L4_UDP`); an undefined nibble shows in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "PacketType(UNKNOWN)");
        }
        write!(f, "PacketType(")?;
        let mut first = true;
        for shift in (0..32).step_by(4) {
            let part = self.0 & (0xf << shift);
            if part == 0 {
                continue;
            }
            if !first {
                write!(f, " | ")?;
            }
            first = false;
            match PTYPE_NAMES.iter().find(|(_, v)| *v == part) {
                Some((name, _)) => write!(f, "{name}")?,
                None => write!(f, "{part:#x}")?,
            }
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate alloc;
    use alloc::format;

    #[test]
    fn ol_flag_bits_are_dpdk_22_11() {
        let want: &[(OlFlags, u64)] = &[
            (OlFlags::RX_VLAN, 1 << 0),
            (OlFlags::RX_RSS_HASH, 1 << 1),
            (OlFlags::RX_FDIR, 1 << 2),
            (OlFlags::RX_L4_CKSUM_BAD, 1 << 3),
            (OlFlags::RX_IP_CKSUM_BAD, 1 << 4),
            (OlFlags::RX_OUTER_IP_CKSUM_BAD, 1 << 5),
            (OlFlags::RX_VLAN_STRIPPED, 1 << 6),
            (OlFlags::RX_IP_CKSUM_GOOD, 1 << 7),
            (OlFlags::RX_L4_CKSUM_GOOD, 1 << 8),
            (OlFlags::RX_IEEE1588_PTP, 1 << 9),
            (OlFlags::RX_IEEE1588_TMST, 1 << 10),
            (OlFlags::RX_FDIR_ID, 1 << 13),
            (OlFlags::RX_FDIR_FLX, 1 << 14),
            (OlFlags::RX_QINQ_STRIPPED, 1 << 15),
            (OlFlags::RX_LRO, 1 << 16),
            (OlFlags::RX_SEC_OFFLOAD, 1 << 18),
            (OlFlags::RX_SEC_OFFLOAD_FAILED, 1 << 19),
            (OlFlags::RX_QINQ, 1 << 20),
            (OlFlags::RX_OUTER_L4_CKSUM_BAD, 1 << 21),
            (OlFlags::RX_OUTER_L4_CKSUM_GOOD, 1 << 22),
            (OlFlags::TX_OUTER_UDP_CKSUM, 1 << 41),
            (OlFlags::TX_UDP_SEG, 1 << 42),
            (OlFlags::TX_SEC_OFFLOAD, 1 << 43),
            (OlFlags::TX_MACSEC, 1 << 44),
            (OlFlags::TX_QINQ, 1 << 49),
            (OlFlags::TX_TCP_SEG, 1 << 50),
            (OlFlags::TX_IEEE1588_TMST, 1 << 51),
            (OlFlags::TX_TCP_CKSUM, 1 << 52),
            (OlFlags::TX_SCTP_CKSUM, 2 << 52),
            (OlFlags::TX_UDP_CKSUM, 3 << 52),
            (OlFlags::TX_IP_CKSUM, 1 << 54),
            (OlFlags::TX_IPV4, 1 << 55),
            (OlFlags::TX_IPV6, 1 << 56),
            (OlFlags::TX_VLAN, 1 << 57),
            (OlFlags::TX_OUTER_IP_CKSUM, 1 << 58),
            (OlFlags::TX_OUTER_IPV4, 1 << 59),
            (OlFlags::TX_OUTER_IPV6, 1 << 60),
            (OlFlags::EXTERNAL, 1 << 61),
            (OlFlags::INDIRECT, 1 << 62),
        ];
        for (f, bits) in want {
            assert_eq!(f.bits(), *bits, "{f:?}");
        }
        assert_eq!(OlFlags::TX_TUNNEL_MASK.bits(), 0xf << 45);
        assert_eq!(OlFlags::TX_OFFLOAD_MASK.bits(), 0x1fff_fe00_0000_0000);
    }

    #[test]
    fn multi_bit_fields_read_as_states() {
        let f = OlFlags::RX_IP_CKSUM_NONE;
        assert!(
            f.contains(OlFlags::RX_IP_CKSUM_GOOD),
            "the trap the accessors avoid"
        );
        assert_eq!(f.rx_ip_cksum(), RxCksum::Verified);
        assert_eq!(OlFlags::RX_IP_CKSUM_BAD.rx_ip_cksum(), RxCksum::Bad);
        assert_eq!(OlFlags::RX_IP_CKSUM_GOOD.rx_ip_cksum(), RxCksum::Good);
        assert_eq!(OlFlags::empty().rx_l4_cksum(), RxCksum::Unknown);
        let g = OlFlags::RX_L4_CKSUM_BAD.with_rx_l4_cksum(RxCksum::Good);
        assert_eq!(g, OlFlags::RX_L4_CKSUM_GOOD);
        assert_eq!(
            OlFlags::empty().with_rx_ip_cksum(RxCksum::Verified),
            OlFlags::RX_IP_CKSUM_NONE
        );
        assert_eq!(
            OlFlags::RX_OUTER_L4_CKSUM_INVALID.rx_outer_l4_cksum(),
            RxOuterL4Cksum::Invalid
        );
        for c in [
            TxL4Cksum::Off,
            TxL4Cksum::Tcp,
            TxL4Cksum::Sctp,
            TxL4Cksum::Udp,
        ] {
            let f = OlFlags::TX_UDP_CKSUM.with_tx_l4_cksum(c);
            assert_eq!(f.tx_l4_cksum(), c);
        }
        for t in TxTunnel::ALL {
            let f = OlFlags::TX_IPV4.with_tx_tunnel(Some(t));
            assert_eq!(f.tx_tunnel(), Ok(Some(t)));
            assert!(f.contains(OlFlags::TX_IPV4));
        }
        assert_eq!(OlFlags::empty().tx_tunnel(), Ok(None));
        assert_eq!(
            OlFlags::from_bits_retain(0x9 << 45).tx_tunnel(),
            Err(9),
            "undefined code"
        );
        assert_eq!(
            format!("{:?}", OlFlags::TX_UDP_CKSUM | OlFlags::TX_IPV4),
            "OlFlags(TX_UDP_CKSUM | TX_IPV4)"
        );
    }

    #[test]
    fn packet_types_are_dpdk_s_and_split_by_nibble() {
        assert_eq!(PacketType::L2_ETHER.bits(), 0x1);
        assert_eq!(PacketType::L3_IPV4.bits(), 0x10);
        assert_eq!(PacketType::L3_IPV6.bits(), 0x40);
        assert_eq!(PacketType::L4_TCP.bits(), 0x100);
        assert_eq!(PacketType::L4_UDP.bits(), 0x200);
        assert_eq!(PacketType::TUNNEL_VXLAN.bits(), 0x3000);
        assert_eq!(PacketType::INNER_L4_UDP.bits(), 0x0200_0000);
        let p = PacketType::L2_ETHER | PacketType::L3_IPV4_EXT | PacketType::L4_UDP;
        assert_eq!(p.l2(), PacketType::L2_ETHER);
        assert_eq!(p.l3(), PacketType::L3_IPV4_EXT);
        assert_eq!(p.l4(), PacketType::L4_UDP);
        assert!(p.is_ipv4() && !p.is_ipv6() && !p.is_tunnel());
        assert!(PacketType::L3_IPV6_EXT_UNKNOWN.is_ipv6());
        assert_eq!(
            format!("{p:?}"),
            "PacketType(L2_ETHER | L3_IPV4_EXT | L4_UDP)"
        );
        assert_eq!(
            format!("{:?}", PacketType::default()),
            "PacketType(UNKNOWN)"
        );
    }
}
