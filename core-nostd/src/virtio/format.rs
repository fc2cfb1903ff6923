//! The structures a virtio driver and device share, byte for byte (virtio 1.2 §2.7, §2.8,
//! §4.1.4, §5.1.6). All fields are little-endian; every size is asserted at compile time.

use core::mem::{offset_of, size_of};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Split-ring descriptor flags (§2.7.5).
pub mod desc_flags {
    /// The chain continues at `next`.
    pub const NEXT: u16 = 1;
    /// The buffer is device-writable (receive); otherwise device-readable.
    pub const WRITE: u16 = 2;
    /// The buffer holds a table of indirect descriptors.
    pub const INDIRECT: u16 = 4;
    /// Packed ring: the available bit (§2.8.1).
    pub const AVAIL: u16 = 1 << 7;
    /// Packed ring: the used bit.
    pub const USED: u16 = 1 << 15;
}

/// One split-ring descriptor (§2.7.5): 16 bytes in the descriptor table.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SplitDesc {
    /// Buffer address (an IOVA with `ACCESS_PLATFORM`).
    pub addr: U64,
    /// Buffer length in bytes.
    pub len: U32,
    /// [`desc_flags`].
    pub flags: U16,
    /// Next descriptor of the chain, when `flags` has `NEXT`.
    pub next: U16,
}

/// The header of the available ring (§2.7.6); `ring[queue_size]` of `u16` and `used_event`
/// follow it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AvailHeader {
    /// [`avail_flags`].
    pub flags: U16,
    /// Where the driver will put the next entry (free-running).
    pub idx: U16,
}

/// Available-ring flags.
pub mod avail_flags {
    /// The driver does not want interrupts (ignored with `EVENT_IDX`).
    pub const NO_INTERRUPT: u16 = 1;
}

/// The header of the used ring (§2.7.8); `ring[queue_size]` of [`UsedElem`] and
/// `avail_event` follow it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct UsedHeader {
    /// [`used_flags`].
    pub flags: U16,
    /// Where the device will put the next entry (free-running).
    pub idx: U16,
}

/// Used-ring flags.
pub mod used_flags {
    /// The device does not want notifications (ignored with `EVENT_IDX`).
    pub const NO_NOTIFY: u16 = 1;
}

/// One used-ring element: which chain the device is done with and how many bytes it wrote.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct UsedElem {
    /// Head descriptor index of the chain.
    pub id: U32,
    /// Bytes written into the chain's device-writable buffers.
    pub len: U32,
}

/// Where the three parts of a split ring of `size` entries sit in one allocation, with the
/// spec's alignments (descriptors 16, available ring 2, used ring 4; §2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitLayout {
    /// Entries.
    pub size: u16,
    /// Offset of the descriptor table (0).
    pub desc: usize,
    /// Offset of the available ring (the driver area).
    pub avail: usize,
    /// Offset of the used ring (the device area).
    pub used: usize,
    /// Bytes in all.
    pub total: usize,
}

/// The used-ring alignment of the legacy interface (virtio 1.2 §2.7.2, "Legacy Interfaces":
/// the legacy PCI transport's `QUEUE_ALIGN` of 4096, the device computes the used ring's
/// address from the descriptor table's).
pub const LEGACY_USED_ALIGN: usize = 4096;

impl SplitLayout {
    /// The layout for `size` entries.
    pub const fn new(size: u16) -> Self {
        Self::with_used_align(size, 4)
    }

    /// The legacy layout for `size` entries: the used ring starts at the next multiple of
    /// [`LEGACY_USED_ALIGN`] after the available ring.
    pub const fn legacy(size: u16) -> Self {
        Self::with_used_align(size, LEGACY_USED_ALIGN)
    }

    const fn with_used_align(size: u16, used_align: usize) -> Self {
        let n = size as usize;
        let avail = n * size_of::<SplitDesc>();
        let avail_len = size_of::<AvailHeader>() + 2 * n + 2;
        let used = (avail + avail_len).next_multiple_of(used_align);
        let used_len = size_of::<UsedHeader>() + size_of::<UsedElem>() * n + 2;
        Self {
            size,
            desc: 0,
            avail,
            used,
            total: used + used_len,
        }
    }

    /// Bytes of the descriptor table.
    pub const fn desc_len(&self) -> usize {
        self.size as usize * size_of::<SplitDesc>()
    }

    /// Offset of `ring[i]` in the available ring.
    pub const fn avail_ring(&self, i: u16) -> usize {
        self.avail + size_of::<AvailHeader>() + 2 * i as usize
    }

    /// Offset of `used_event` (after the available ring).
    pub const fn used_event(&self) -> usize {
        self.avail_ring(self.size)
    }

    /// Offset of `ring[i]` in the used ring.
    pub const fn used_ring(&self, i: u16) -> usize {
        self.used + size_of::<UsedHeader>() + size_of::<UsedElem>() * i as usize
    }

    /// Offset of `avail_event` (after the used ring).
    pub const fn avail_event(&self) -> usize {
        self.used_ring(self.size)
    }
}

/// One packed-ring descriptor (§2.8.13).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PackedDesc {
    /// Buffer address.
    pub addr: U64,
    /// Buffer length; in a used descriptor, bytes written.
    pub len: U32,
    /// Buffer id (driver-chosen; the device returns it in the used descriptor).
    pub id: U16,
    /// [`desc_flags`], with `AVAIL` and `USED` carrying the wrap counters.
    pub flags: U16,
}

/// A packed-ring event suppression structure (§2.8.14): the driver's (in the driver area)
/// or the device's (in the device area).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EventSuppress {
    /// Descriptor ring offset (bits 0..15) and wrap counter (bit 15), with `flags` = `DESC`.
    pub off_wrap: U16,
    /// [`event_flags`].
    pub flags: U16,
}

/// Packed-ring event suppression modes.
pub mod event_flags {
    /// Events wanted.
    pub const ENABLE: u16 = 0;
    /// No events.
    pub const DISABLE: u16 = 1;
    /// An event when the descriptor at `off_wrap` is reached (needs `EVENT_IDX`).
    pub const DESC: u16 = 2;
}

/// Where the parts of a packed ring of `size` entries sit in one allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedLayout {
    /// Entries.
    pub size: u16,
    /// Offset of the descriptor ring (0).
    pub desc: usize,
    /// Offset of the driver event suppression structure (the driver area).
    pub driver: usize,
    /// Offset of the device event suppression structure (the device area).
    pub device: usize,
    /// Bytes in all.
    pub total: usize,
}

impl PackedLayout {
    /// The layout for `size` entries.
    pub const fn new(size: u16) -> Self {
        let driver = size as usize * size_of::<PackedDesc>();
        let device = driver + size_of::<EventSuppress>();
        Self {
            size,
            desc: 0,
            driver,
            device,
            total: device + size_of::<EventSuppress>(),
        }
    }
}

/// The network packet header (§5.1.6) with `VERSION_1`: 12 bytes before every frame.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetHdr {
    /// [`net_hdr_flags`].
    pub flags: u8,
    /// GSO type (0: none).
    pub gso_type: u8,
    /// Length of the headers to copy into each segment (GSO).
    pub hdr_len: U16,
    /// Segment size (GSO).
    pub gso_size: U16,
    /// Where checksumming starts (`NEEDS_CSUM`).
    pub csum_start: U16,
    /// Where from `csum_start` the checksum goes (`NEEDS_CSUM`).
    pub csum_offset: U16,
    /// Receive with `MRG_RXBUF`: how many buffers this frame took.
    pub num_buffers: U16,
}

/// [`NetHdr::flags`] bits.
pub mod net_hdr_flags {
    /// The checksum at `csum_start + csum_offset` must be completed.
    pub const NEEDS_CSUM: u8 = 1;
    /// Receive: the checksums were validated.
    pub const DATA_VALID: u8 = 2;
}

/// Control-queue command header (§5.1.6.5).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CtrlHdr {
    /// Command class ([`ctrl`]).
    pub class: u8,
    /// Command within the class.
    pub cmd: u8,
}

/// Control-queue classes, commands and acknowledgements (§5.1.6.5).
pub mod ctrl {
    /// The acknowledgement byte: done.
    pub const OK: u8 = 0;
    /// The acknowledgement byte: refused.
    pub const ERR: u8 = 1;
    /// RX mode class.
    pub const CLASS_RX: u8 = 0;
    /// RX mode: promiscuous (one byte, 0 or 1).
    pub const RX_PROMISC: u8 = 0;
    /// RX mode: all-multicast (one byte, 0 or 1).
    pub const RX_ALLMULTI: u8 = 1;
    /// MAC class.
    pub const CLASS_MAC: u8 = 1;
    /// MAC: set the station address (six bytes).
    pub const MAC_ADDR_SET: u8 = 1;
    /// Multiqueue class.
    pub const CLASS_MQ: u8 = 4;
    /// Multiqueue: set the number of queue pairs (`u16` little-endian).
    pub const MQ_VQ_PAIRS_SET: u8 = 0;
}

/// PCI vendor capability structure types (§4.1.4).
pub mod cfg_type {
    /// Common configuration.
    pub const COMMON: u8 = 1;
    /// Notifications.
    pub const NOTIFY: u8 = 2;
    /// ISR status.
    pub const ISR: u8 = 3;
    /// Device-specific configuration.
    pub const DEVICE: u8 = 4;
    /// PCI configuration access window.
    pub const PCI_CFG: u8 = 5;
}

/// A virtio PCI vendor capability (§4.1.4): where one structure lives in which BAR.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PciCap {
    /// Capability id: 0x09, vendor-specific.
    pub cap_vndr: u8,
    /// Next capability pointer.
    pub cap_next: u8,
    /// Length of this capability (16, or 20 for the notify capability).
    pub cap_len: u8,
    /// Structure type ([`cfg_type`]).
    pub cfg_type: u8,
    /// BAR holding the structure.
    pub bar: u8,
    /// Identifies several capabilities of one type.
    pub id: u8,
    /// Padding.
    pub padding: [u8; 2],
    /// Offset of the structure in the BAR.
    pub offset: U32,
    /// Length of the structure.
    pub length: U32,
}

/// The notify capability: [`PciCap`] plus the queue notify offset multiplier.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PciNotifyCap {
    /// The common part.
    pub cap: PciCap,
    /// A queue's doorbell is at `offset + queue_notify_off * notify_off_multiplier`.
    pub notify_off_multiplier: U32,
}

/// The common configuration structure (§4.1.4.3), as registers in a BAR.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CommonCfg {
    /// Selects which 32 bits of device features `device_feature` shows.
    pub device_feature_select: U32,
    /// Device features, 32 bits at a time (read-only).
    pub device_feature: U32,
    /// Selects which 32 bits of driver features `driver_feature` takes.
    pub driver_feature_select: U32,
    /// Driver features, 32 bits at a time.
    pub driver_feature: U32,
    /// MSI-X vector for configuration changes.
    pub config_msix_vector: U16,
    /// Number of virtqueues (read-only).
    pub num_queues: U16,
    /// Device status ([`super::DeviceStatus`]); writing 0 resets.
    pub device_status: u8,
    /// Changes whenever device config changes (read-only).
    pub config_generation: u8,
    /// Selects the queue the `queue_*` registers refer to.
    pub queue_select: U16,
    /// Queue size (maximum on read; the driver may write a smaller power of two).
    pub queue_size: U16,
    /// MSI-X vector of the queue.
    pub queue_msix_vector: U16,
    /// Writing 1 enables the queue.
    pub queue_enable: U16,
    /// The queue's notify offset (read-only).
    pub queue_notify_off: U16,
    /// Descriptor area address.
    pub queue_desc: U64,
    /// Driver area address.
    pub queue_driver: U64,
    /// Device area address.
    pub queue_device: U64,
}

/// Byte offsets of the [`CommonCfg`] registers.
pub mod common {
    use super::CommonCfg;
    use core::mem::offset_of;
    /// `device_feature_select` (u32).
    pub const DEVICE_FEATURE_SELECT: usize = offset_of!(CommonCfg, device_feature_select);
    /// `device_feature` (u32).
    pub const DEVICE_FEATURE: usize = offset_of!(CommonCfg, device_feature);
    /// `driver_feature_select` (u32).
    pub const DRIVER_FEATURE_SELECT: usize = offset_of!(CommonCfg, driver_feature_select);
    /// `driver_feature` (u32).
    pub const DRIVER_FEATURE: usize = offset_of!(CommonCfg, driver_feature);
    /// `config_msix_vector` (u16).
    pub const CONFIG_MSIX_VECTOR: usize = offset_of!(CommonCfg, config_msix_vector);
    /// `num_queues` (u16).
    pub const NUM_QUEUES: usize = offset_of!(CommonCfg, num_queues);
    /// `device_status` (u8).
    pub const DEVICE_STATUS: usize = offset_of!(CommonCfg, device_status);
    /// `config_generation` (u8).
    pub const CONFIG_GENERATION: usize = offset_of!(CommonCfg, config_generation);
    /// `queue_select` (u16).
    pub const QUEUE_SELECT: usize = offset_of!(CommonCfg, queue_select);
    /// `queue_size` (u16).
    pub const QUEUE_SIZE: usize = offset_of!(CommonCfg, queue_size);
    /// `queue_msix_vector` (u16).
    pub const QUEUE_MSIX_VECTOR: usize = offset_of!(CommonCfg, queue_msix_vector);
    /// `queue_enable` (u16).
    pub const QUEUE_ENABLE: usize = offset_of!(CommonCfg, queue_enable);
    /// `queue_notify_off` (u16).
    pub const QUEUE_NOTIFY_OFF: usize = offset_of!(CommonCfg, queue_notify_off);
    /// `queue_desc` (u64).
    pub const QUEUE_DESC: usize = offset_of!(CommonCfg, queue_desc);
    /// `queue_driver` (u64).
    pub const QUEUE_DRIVER: usize = offset_of!(CommonCfg, queue_driver);
    /// `queue_device` (u64).
    pub const QUEUE_DEVICE: usize = offset_of!(CommonCfg, queue_device);
    /// The "no MSI-X vector" value of the vector registers.
    pub const NO_VECTOR: u16 = 0xffff;
}

/// The network device's configuration (§5.1.4), in the DEVICE structure.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetConfig {
    /// MAC address (with `NET_MAC`).
    pub mac: [u8; 6],
    /// [`super::net_status`] bits (with `NET_STATUS`).
    pub status: U16,
    /// Queue pairs the device has (with `NET_MQ`).
    pub max_virtqueue_pairs: U16,
    /// Maximum MTU (with `NET_MTU`).
    pub mtu: U16,
}

/// Byte offsets of the [`NetConfig`] fields.
pub mod net_cfg {
    use super::NetConfig;
    use core::mem::offset_of;
    /// `mac` (6 bytes).
    pub const MAC: usize = offset_of!(NetConfig, mac);
    /// `status` (u16).
    pub const STATUS: usize = offset_of!(NetConfig, status);
    /// `max_virtqueue_pairs` (u16).
    pub const MAX_VIRTQUEUE_PAIRS: usize = offset_of!(NetConfig, max_virtqueue_pairs);
    /// `mtu` (u16).
    pub const MTU: usize = offset_of!(NetConfig, mtu);
}

// The layouts the spec fixes.
const _: () = {
    assert!(size_of::<SplitDesc>() == 16);
    assert!(size_of::<AvailHeader>() == 4);
    assert!(size_of::<UsedHeader>() == 4);
    assert!(size_of::<UsedElem>() == 8);
    assert!(size_of::<PackedDesc>() == 16);
    assert!(offset_of!(PackedDesc, id) == 12);
    assert!(offset_of!(PackedDesc, flags) == 14);
    assert!(size_of::<EventSuppress>() == 4);
    assert!(size_of::<NetHdr>() == 12);
    assert!(offset_of!(NetHdr, num_buffers) == 10);
    assert!(size_of::<CtrlHdr>() == 2);
    assert!(size_of::<PciCap>() == 16);
    assert!(size_of::<PciNotifyCap>() == 20);
    assert!(offset_of!(PciCap, offset) == 8);
    assert!(size_of::<CommonCfg>() == 56);
    assert!(common::DEVICE_STATUS == 20);
    assert!(common::QUEUE_SELECT == 22);
    assert!(common::QUEUE_ENABLE == 28);
    assert!(common::QUEUE_DESC == 32);
    assert!(common::QUEUE_DEVICE == 48);
    assert!(size_of::<NetConfig>() == 12);
    assert!(net_cfg::MTU == 10);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_layout_follows_the_alignments() {
        let l = SplitLayout::new(256);
        assert_eq!((l.desc, l.avail), (0, 4096));
        assert_eq!(l.used_event(), 4096 + 4 + 512);
        assert_eq!(l.used, (4096 + 4 + 512 + 2usize).next_multiple_of(4));
        assert_eq!(l.avail_event(), l.used + 4 + 8 * 256);
        assert_eq!(l.total, l.avail_event() + 2);
        let l = SplitLayout::new(1);
        assert_eq!(l.used % 4, 0);
        // Legacy: the used ring on the next page; the rest as before.
        let l = SplitLayout::legacy(256);
        assert_eq!((l.desc, l.avail, l.used), (0, 4096, 8192));
        assert_eq!(l.total, 8192 + 4 + 8 * 256 + 2);
        assert_eq!(SplitLayout::legacy(1).used, 4096);
    }

    #[test]
    fn packed_layout() {
        let l = PackedLayout::new(8);
        assert_eq!((l.driver, l.device, l.total), (128, 132, 136));
    }

    #[test]
    fn net_header_bytes() {
        let h = NetHdr {
            flags: net_hdr_flags::DATA_VALID,
            num_buffers: 3.into(),
            ..Default::default()
        };
        let b = h.as_bytes();
        assert_eq!(b[0], 2);
        assert_eq!(&b[10..12], &[3, 0]);
        assert_eq!(NetHdr::read_from_bytes(b).unwrap(), h);
    }
}
