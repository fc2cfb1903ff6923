//! Feature bits: the virtio bits a vhost-user backend offers in `GET_FEATURES`, and the
//! vhost-user protocol bits of `GET_PROTOCOL_FEATURES`.
//!
//! Numbers from linux/virtio_config.h, linux/virtio_net.h, linux/virtio_ring.h,
//! linux/vhost_types.h and DPDK's rte_vhost.h.

use std::fmt;

/// Virtio and vhost-user feature bit numbers (`GET_FEATURES` / `SET_FEATURES`).
pub mod virtio {
    /// VIRTIO_NET_F_CSUM: the device handles packets with partial checksums.
    pub const NET_F_CSUM: u32 = 0;
    /// VIRTIO_NET_F_GUEST_CSUM: the driver handles packets with partial checksums.
    pub const NET_F_GUEST_CSUM: u32 = 1;
    /// VIRTIO_NET_F_MTU: the device advises an MTU.
    pub const NET_F_MTU: u32 = 3;
    /// VIRTIO_NET_F_MAC: the device has a MAC address.
    pub const NET_F_MAC: u32 = 5;
    /// VIRTIO_NET_F_GSO: the device handles packets with any GSO type.
    pub const NET_F_GSO: u32 = 6;
    /// VIRTIO_NET_F_GUEST_TSO4: the driver takes TSOv4 packets.
    pub const NET_F_GUEST_TSO4: u32 = 7;
    /// VIRTIO_NET_F_GUEST_TSO6: the driver takes TSOv6 packets.
    pub const NET_F_GUEST_TSO6: u32 = 8;
    /// VIRTIO_NET_F_GUEST_ECN: the driver takes TSO packets with ECN.
    pub const NET_F_GUEST_ECN: u32 = 9;
    /// VIRTIO_NET_F_GUEST_UFO: the driver takes UFO packets.
    pub const NET_F_GUEST_UFO: u32 = 10;
    /// VIRTIO_NET_F_HOST_TSO4: the device takes TSOv4 packets.
    pub const NET_F_HOST_TSO4: u32 = 11;
    /// VIRTIO_NET_F_HOST_TSO6: the device takes TSOv6 packets.
    pub const NET_F_HOST_TSO6: u32 = 12;
    /// VIRTIO_NET_F_HOST_ECN: the device takes TSO packets with ECN.
    pub const NET_F_HOST_ECN: u32 = 13;
    /// VIRTIO_NET_F_HOST_UFO: the device takes UFO packets.
    pub const NET_F_HOST_UFO: u32 = 14;
    /// VIRTIO_NET_F_MRG_RXBUF: the device may merge receive buffers.
    pub const NET_F_MRG_RXBUF: u32 = 15;
    /// VIRTIO_NET_F_STATUS: link status in the config space.
    pub const NET_F_STATUS: u32 = 16;
    /// VIRTIO_NET_F_CTRL_VQ: a control queue.
    pub const NET_F_CTRL_VQ: u32 = 17;
    /// VIRTIO_NET_F_CTRL_RX: RX mode control on the control queue.
    pub const NET_F_CTRL_RX: u32 = 18;
    /// VIRTIO_NET_F_GUEST_ANNOUNCE: the driver can announce itself (gratuitous ARP).
    pub const NET_F_GUEST_ANNOUNCE: u32 = 21;
    /// VIRTIO_NET_F_MQ: several queue pairs.
    pub const NET_F_MQ: u32 = 22;
    /// VIRTIO_F_NOTIFY_ON_EMPTY.
    pub const F_NOTIFY_ON_EMPTY: u32 = 24;
    /// VHOST_F_LOG_ALL: dirty-page logging for live migration.
    pub const F_LOG_ALL: u32 = 26;
    /// VIRTIO_F_ANY_LAYOUT.
    pub const F_ANY_LAYOUT: u32 = 27;
    /// VIRTIO_RING_F_INDIRECT_DESC.
    pub const RING_F_INDIRECT_DESC: u32 = 28;
    /// VIRTIO_RING_F_EVENT_IDX.
    pub const RING_F_EVENT_IDX: u32 = 29;
    /// VHOST_USER_F_PROTOCOL_FEATURES: the backend has protocol features (and rings start
    /// disabled until `SET_VRING_ENABLE`).
    pub const USER_F_PROTOCOL_FEATURES: u32 = 30;
    /// VIRTIO_F_VERSION_1: virtio 1.0 (little-endian rings, 12-byte net header).
    pub const F_VERSION_1: u32 = 32;
    /// VIRTIO_F_ACCESS_PLATFORM (IOMMU_PLATFORM): addresses go through an IOTLB.
    pub const F_ACCESS_PLATFORM: u32 = 33;
    /// VIRTIO_F_RING_PACKED: packed virtqueues.
    pub const F_RING_PACKED: u32 = 34;
    /// VIRTIO_F_IN_ORDER: buffers are used in the order they were made available.
    pub const F_IN_ORDER: u32 = 35;
}

/// Protocol feature bit numbers (`GET_PROTOCOL_FEATURES` / `SET_PROTOCOL_FEATURES`).
pub mod protocol {
    /// Several queues; enables `GET_QUEUE_NUM`.
    pub const MQ: u32 = 0;
    /// Dirty log in shared memory.
    pub const LOG_SHMFD: u32 = 1;
    /// `SEND_RARP` after migration.
    pub const RARP: u32 = 2;
    /// `NEED_REPLY`: the backend acknowledges any request on demand.
    pub const REPLY_ACK: u32 = 3;
    /// `NET_SET_MTU`.
    pub const NET_MTU: u32 = 4;
    /// A backend-to-frontend channel (`SET_SLAVE_REQ_FD`).
    pub const SLAVE_REQ: u32 = 5;
    /// Crypto sessions.
    pub const CRYPTO_SESSION: u32 = 7;
    /// Postcopy page faults.
    pub const PAGEFAULT: u32 = 8;
    /// `GET_CONFIG` / `SET_CONFIG`.
    pub const CONFIG: u32 = 9;
    /// File descriptors on the backend channel.
    pub const SLAVE_SEND_FD: u32 = 10;
    /// Host notifiers (doorbells mapped into the guest).
    pub const HOST_NOTIFIER: u32 = 11;
    /// Inflight descriptor tracking in shared memory.
    pub const INFLIGHT_SHMFD: u32 = 12;
    /// `SET_STATUS` / `GET_STATUS` (a backend that has it waits for `DRIVER_OK`).
    pub const STATUS: u32 = 16;
}

/// The protocol features this frontend implements and may acknowledge: `MQ`, `REPLY_ACK`
/// and `STATUS`. The others need channels or messages it does not have.
pub const FRONTEND_PROTOCOL_FEATURES: u64 =
    1 << protocol::MQ | 1 << protocol::REPLY_ACK | 1 << protocol::STATUS;

/// Which feature word a bit set belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureSet {
    /// Virtio (and vhost-user) features.
    Virtio,
    /// Vhost-user protocol features.
    Protocol,
}

impl FeatureSet {
    /// The name of bit `bit` in this set, if it has one.
    pub fn bit_name(self, bit: u32) -> Option<&'static str> {
        use protocol as p;
        use virtio as v;
        Some(match (self, bit) {
            (FeatureSet::Virtio, v::NET_F_CSUM) => "VIRTIO_NET_F_CSUM",
            (FeatureSet::Virtio, v::NET_F_GUEST_CSUM) => "VIRTIO_NET_F_GUEST_CSUM",
            (FeatureSet::Virtio, v::NET_F_MTU) => "VIRTIO_NET_F_MTU",
            (FeatureSet::Virtio, v::NET_F_MAC) => "VIRTIO_NET_F_MAC",
            (FeatureSet::Virtio, v::NET_F_GSO) => "VIRTIO_NET_F_GSO",
            (FeatureSet::Virtio, v::NET_F_GUEST_TSO4) => "VIRTIO_NET_F_GUEST_TSO4",
            (FeatureSet::Virtio, v::NET_F_GUEST_TSO6) => "VIRTIO_NET_F_GUEST_TSO6",
            (FeatureSet::Virtio, v::NET_F_GUEST_ECN) => "VIRTIO_NET_F_GUEST_ECN",
            (FeatureSet::Virtio, v::NET_F_GUEST_UFO) => "VIRTIO_NET_F_GUEST_UFO",
            (FeatureSet::Virtio, v::NET_F_HOST_TSO4) => "VIRTIO_NET_F_HOST_TSO4",
            (FeatureSet::Virtio, v::NET_F_HOST_TSO6) => "VIRTIO_NET_F_HOST_TSO6",
            (FeatureSet::Virtio, v::NET_F_HOST_ECN) => "VIRTIO_NET_F_HOST_ECN",
            (FeatureSet::Virtio, v::NET_F_HOST_UFO) => "VIRTIO_NET_F_HOST_UFO",
            (FeatureSet::Virtio, v::NET_F_CTRL_RX) => "VIRTIO_NET_F_CTRL_RX",
            (FeatureSet::Virtio, v::NET_F_MRG_RXBUF) => "VIRTIO_NET_F_MRG_RXBUF",
            (FeatureSet::Virtio, v::NET_F_STATUS) => "VIRTIO_NET_F_STATUS",
            (FeatureSet::Virtio, v::NET_F_CTRL_VQ) => "VIRTIO_NET_F_CTRL_VQ",
            (FeatureSet::Virtio, v::NET_F_GUEST_ANNOUNCE) => "VIRTIO_NET_F_GUEST_ANNOUNCE",
            (FeatureSet::Virtio, v::NET_F_MQ) => "VIRTIO_NET_F_MQ",
            (FeatureSet::Virtio, v::F_NOTIFY_ON_EMPTY) => "VIRTIO_F_NOTIFY_ON_EMPTY",
            (FeatureSet::Virtio, v::F_LOG_ALL) => "VHOST_F_LOG_ALL",
            (FeatureSet::Virtio, v::F_ANY_LAYOUT) => "VIRTIO_F_ANY_LAYOUT",
            (FeatureSet::Virtio, v::RING_F_INDIRECT_DESC) => "VIRTIO_RING_F_INDIRECT_DESC",
            (FeatureSet::Virtio, v::RING_F_EVENT_IDX) => "VIRTIO_RING_F_EVENT_IDX",
            (FeatureSet::Virtio, v::USER_F_PROTOCOL_FEATURES) => "VHOST_USER_F_PROTOCOL_FEATURES",
            (FeatureSet::Virtio, v::F_VERSION_1) => "VIRTIO_F_VERSION_1",
            (FeatureSet::Virtio, v::F_ACCESS_PLATFORM) => "VIRTIO_F_ACCESS_PLATFORM",
            (FeatureSet::Virtio, v::F_RING_PACKED) => "VIRTIO_F_RING_PACKED",
            (FeatureSet::Virtio, v::F_IN_ORDER) => "VIRTIO_F_IN_ORDER",
            (FeatureSet::Protocol, p::MQ) => "MQ",
            (FeatureSet::Protocol, p::LOG_SHMFD) => "LOG_SHMFD",
            (FeatureSet::Protocol, p::RARP) => "RARP",
            (FeatureSet::Protocol, p::REPLY_ACK) => "REPLY_ACK",
            (FeatureSet::Protocol, p::NET_MTU) => "NET_MTU",
            (FeatureSet::Protocol, p::SLAVE_REQ) => "SLAVE_REQ",
            (FeatureSet::Protocol, p::CRYPTO_SESSION) => "CRYPTO_SESSION",
            (FeatureSet::Protocol, p::PAGEFAULT) => "PAGEFAULT",
            (FeatureSet::Protocol, p::CONFIG) => "CONFIG",
            (FeatureSet::Protocol, p::SLAVE_SEND_FD) => "SLAVE_SEND_FD",
            (FeatureSet::Protocol, p::HOST_NOTIFIER) => "HOST_NOTIFIER",
            (FeatureSet::Protocol, p::INFLIGHT_SHMFD) => "INFLIGHT_SHMFD",
            (FeatureSet::Protocol, p::STATUS) => "STATUS",
            _ => return None,
        })
    }

    /// `bits` with each bit named (`VIRTIO_F_VERSION_1 | bit 45`), for messages and logs.
    pub fn describe(self, bits: u64) -> FeatureNames {
        FeatureNames { set: self, bits }
    }
}

/// A feature word shown bit by bit ([`FeatureSet::describe`]).
#[derive(Clone, Copy, Debug)]
pub struct FeatureNames {
    set: FeatureSet,
    bits: u64,
}

impl fmt::Display for FeatureNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bits == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for bit in (0..64).filter(|b| self.bits & (1 << b) != 0) {
            if !first {
                f.write_str(" | ")?;
            }
            first = false;
            match self.set.bit_name(bit) {
                Some(name) => f.write_str(name)?,
                None => write!(f, "bit {bit}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_known_bits_and_number_the_rest() {
        let s = FeatureSet::Virtio
            .describe(1 << virtio::F_VERSION_1 | 1 << 30 | 1 << 45)
            .to_string();
        assert_eq!(
            s,
            "VHOST_USER_F_PROTOCOL_FEATURES | VIRTIO_F_VERSION_1 | bit 45"
        );
        assert_eq!(FeatureSet::Protocol.describe(0).to_string(), "none");
        assert_eq!(
            FeatureSet::Protocol
                .describe(FRONTEND_PROTOCOL_FEATURES)
                .to_string(),
            "MQ | REPLY_ACK | STATUS"
        );
    }
}
