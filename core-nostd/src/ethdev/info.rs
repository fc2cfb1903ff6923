//! What a device can do: queue and descriptor limits, MTU range, offloads, link.

use bitflags::bitflags;
use core::fmt;

bitflags! {
    /// Receive offloads (DPDK's `RTE_ETH_RX_OFFLOAD_*` bit positions).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RxOffload: u64 {
        /// Strip the VLAN tag into the mbuf's `vlan_tci`.
        const VLAN_STRIP = 1 << 0;
        /// Check IPv4 header checksums.
        const IPV4_CKSUM = 1 << 1;
        /// Check UDP checksums.
        const UDP_CKSUM = 1 << 2;
        /// Check TCP checksums.
        const TCP_CKSUM = 1 << 3;
        /// Large receive offload.
        const TCP_LRO = 1 << 4;
        /// Keep the Ethernet CRC.
        const KEEP_CRC = 1 << 16;
        /// Receive frames larger than one mbuf as chains.
        const SCATTER = 1 << 13;
        /// Report the RSS hash in the mbuf.
        const RSS_HASH = 1 << 19;
    }
}

bitflags! {
    /// Transmit offloads (DPDK's `RTE_ETH_TX_OFFLOAD_*` bit positions).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct TxOffload: u64 {
        /// Insert the VLAN tag from `vlan_tci`.
        const VLAN_INSERT = 1 << 0;
        /// Compute IPv4 header checksums.
        const IPV4_CKSUM = 1 << 1;
        /// Compute UDP checksums.
        const UDP_CKSUM = 1 << 2;
        /// Compute TCP checksums.
        const TCP_CKSUM = 1 << 3;
        /// TCP segmentation offload.
        const TCP_TSO = 1 << 5;
        /// Transmit mbuf chains (several segments per packet).
        const MULTI_SEGS = 1 << 15;
        /// The application promises mbufs are from one pool with refcnt 1 (fast free).
        const MBUF_FAST_FREE = 1 << 16;
    }
}

bitflags! {
    /// RSS hash types (DPDK's `RTE_ETH_RSS_*` bit positions).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RssHashTypes: u64 {
        /// IPv4 addresses.
        const IPV4 = 1 << 2;
        /// IPv4 + TCP ports.
        const NONFRAG_IPV4_TCP = 1 << 4;
        /// IPv4 + UDP ports.
        const NONFRAG_IPV4_UDP = 1 << 5;
        /// IPv6 addresses.
        const IPV6 = 1 << 8;
        /// IPv6 + TCP ports.
        const NONFRAG_IPV6_TCP = 1 << 10;
        /// IPv6 + UDP ports.
        const NONFRAG_IPV6_UDP = 1 << 11;
    }
}

/// Descriptor-count limits of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescLimits {
    /// Fewest descriptors.
    pub min: u16,
    /// Most descriptors.
    pub max: u16,
    /// The count must be a multiple of this.
    pub align: u16,
}

impl DescLimits {
    /// Whether `n` is allowed.
    pub fn allows(&self, n: u16) -> bool {
        n >= self.min && n <= self.max && self.align != 0 && n.is_multiple_of(self.align)
    }
}

/// What a device can do, as reported by its driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevInfo {
    /// The driver's name (`net_null`, `net_ring`, …).
    pub driver_name: &'static str,
    /// Most receive queues.
    pub max_rx_queues: u16,
    /// Most transmit queues.
    pub max_tx_queues: u16,
    /// Receive descriptor limits.
    pub rx_desc_lim: DescLimits,
    /// Transmit descriptor limits.
    pub tx_desc_lim: DescLimits,
    /// Smallest MTU.
    pub min_mtu: u16,
    /// Largest MTU.
    pub max_mtu: u16,
    /// Receive offloads the device has.
    pub rx_offload_capa: RxOffload,
    /// Transmit offloads the device has.
    pub tx_offload_capa: TxOffload,
    /// RSS hash types the device can use (empty: no RSS).
    pub rss_hash_types: RssHashTypes,
    /// Link speed in Mbit/s (0: unknown).
    pub speed_mbps: u32,
}

/// Link state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LinkStatus {
    /// Whether the link is up.
    pub up: bool,
    /// Speed in Mbit/s (0: unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.up {
            write!(
                f,
                "up, {} Mbps, {}",
                self.speed_mbps,
                if self.full_duplex {
                    "full-duplex"
                } else {
                    "half-duplex"
                }
            )
        } else {
            write!(f, "down")
        }
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether the group (multicast) bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether this is a usable unicast station address (not multicast, not all zero).
    pub fn is_valid_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }

    /// A locally administered unicast address derived from `name` (FNV-1a), the same on every
    /// run: for virtual devices that have no address of their own (DPDK gives them a random
    /// one; rdk has no randomness to draw from).
    pub fn local_from_name(name: &str) -> MacAddr {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        let b = h.to_le_bytes();
        // Bit 1 of the first byte: locally administered; bit 0 clear: unicast.
        MacAddr([0x02, b[4], b[0], b[1], b[2], b[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}
