//! A virtio-net device model behind a [`MockPciDevice`](crate::pci::MockPciDevice): the modern
//! PCI transport (virtio 1.2 §4.1) and the device side of split and packed rings, reaching
//! guest memory only by IOVA through [`DeviceMemory`](crate::DeviceMemory).
//!
//! A test builds one with [`MockVirtioNet::new`], hands the PCI device to the driver, and
//! drives the wire through the [`MockVirtioNet`] handle: [`deliver`](MockVirtioNet::deliver)
//! frames to the driver, [`take_sent`](MockVirtioNet::take_sent) what it transmitted, change
//! the link, and switch on a [`Hostile`] mode to see the driver cope with a lying device.

mod net;
mod ring;

pub use net::{Hostile, MockVirtioNet, NetDevConfig, RxCsum, SentFrame, VirtioNetCounters};
pub use ring::UsedLie;
