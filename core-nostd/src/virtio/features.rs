//! Feature bits (virtio 1.2 §6 "Reserved Feature Bits", §5.1.3 network device) and device
//! status bits (§2.1).

use bitflags::bitflags;

bitflags! {
    /// Feature bits, device-independent and network-device ones, in one 64-bit word.
    ///
    /// Unknown bits a device offers are kept (`from_bits_retain`) so a driver can tell what it
    /// did not accept; a driver only ever writes back bits it understands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Features: u64 {
        /// Net: the device handles packets with partial checksum (TX checksum offload).
        const NET_CSUM = 1 << 0;
        /// Net: the driver handles packets with partial checksum (RX: `DATA_VALID`,
        /// `NEEDS_CSUM` in the header).
        const NET_GUEST_CSUM = 1 << 1;
        /// Net: the device reports its maximum MTU in config space.
        const NET_MTU = 1 << 3;
        /// Net: the device has a MAC address in config space.
        const NET_MAC = 1 << 5;
        /// Net: the driver can merge receive buffers (`num_buffers` in the header).
        const NET_MRG_RXBUF = 1 << 15;
        /// Net: the config-space `status` field is valid (link up, announce).
        const NET_STATUS = 1 << 16;
        /// Net: a control virtqueue exists.
        const NET_CTRL_VQ = 1 << 17;
        /// Net: the control queue takes RX mode commands (promiscuous, all-multicast).
        const NET_CTRL_RX = 1 << 18;
        /// Net: the control queue takes VLAN filter commands.
        const NET_CTRL_VLAN = 1 << 19;
        /// Net: the driver can send gratuitous packets when asked (announce).
        const NET_GUEST_ANNOUNCE = 1 << 21;
        /// Net: several receive/transmit queue pairs (`max_virtqueue_pairs` in config).
        const NET_MQ = 1 << 22;
        /// Net: the MAC address can be set through the control queue.
        const NET_CTRL_MAC_ADDR = 1 << 23;
        /// Descriptors may point to indirect descriptor tables.
        const INDIRECT_DESC = 1 << 28;
        /// `used_event` / `avail_event` notification suppression.
        const EVENT_IDX = 1 << 29;
        /// Virtio 1.0 or later (modern device; little-endian; 12-byte net header).
        const VERSION_1 = 1 << 32;
        /// The device reaches memory through a platform IOMMU: buffers are given as IOVAs.
        const ACCESS_PLATFORM = 1 << 33;
        /// Packed virtqueue layout.
        const RING_PACKED = 1 << 34;
        /// The device uses buffers in the order they were made available.
        const IN_ORDER = 1 << 35;
        /// Memory ordering as on real hardware (platform barriers needed).
        const ORDER_PLATFORM = 1 << 36;
        /// Notifications carry extra data (queue index plus position).
        const NOTIFICATION_DATA = 1 << 38;
    }
}

bitflags! {
    /// The device status register (§2.1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct DeviceStatus: u8 {
        /// The guest found the device.
        const ACKNOWLEDGE = 1;
        /// The guest knows how to drive it.
        const DRIVER = 2;
        /// The driver is ready to drive the device.
        const DRIVER_OK = 4;
        /// The driver acknowledged the features it understands; feature negotiation is over.
        const FEATURES_OK = 8;
        /// The device hit an error it cannot recover from without a reset.
        const DEVICE_NEEDS_RESET = 64;
        /// The guest gave up on the device.
        const FAILED = 128;
    }
}

/// The network device's config-space `status` bits (§5.1.4).
pub mod net_status {
    /// The link is up.
    pub const LINK_UP: u16 = 1;
    /// The driver should send a gratuitous packet (announce).
    pub const ANNOUNCE: u16 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_positions_match_the_spec() {
        assert_eq!(Features::VERSION_1.bits(), 1 << 32);
        assert_eq!(Features::RING_PACKED.bits(), 1 << 34);
        assert_eq!(Features::NET_MQ.bits(), 0x40_0000);
        assert_eq!(DeviceStatus::FEATURES_OK.bits(), 8);
        let f = Features::from_bits_retain(1 << 63 | 1);
        assert!(f.contains(Features::NET_CSUM));
        assert_eq!(f.bits() & (1 << 63), 1 << 63, "unknown bits are kept");
    }
}
