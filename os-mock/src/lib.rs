//! # rdk-os-mock: the OS traits in memory
//!
//! Drivers written against [`rdk_core::os`] run here with no hardware, no root and no
//! nondeterminism, and any address they get wrong shows up as a failure instead of silently
//! working.
//!
//! - [`MockOs`] is one operating system instance. It implements
//!   [`DmaAlloc`](rdk_core::os::DmaAlloc), [`Events`](rdk_core::os::Events) and
//!   [`Clock`](rdk_core::os::Clock); configure it with [`MockOs::builder`] (page size, memory
//!   limit, [`IovaLayout`], event limit, clock).
//! - [`MockRegion`] is a DMA region: zeroed heap memory mapped in a mock IOMMU at IOVAs that
//!   never equal its VA, differ for every region, never touch another mapping and are never
//!   reused. With [`IovaLayout::Scattered`] each page of a region sits at its own IOVA, so
//!   translation must go page by page.
//! - [`DeviceMemory`] is the device's side of memory and the only way device models reach it:
//!   by IOVA, through the map. An access outside every live mapping is not performed; it is
//!   returned and recorded as a [`Fault`], and [`DeviceMemory::assert_no_faults`] at the end of
//!   a test turns any into a failure.
//! - [`MockEvent`] is an eventfd-like counter that can be closed; [`MockClock`] is time that
//!   moves when the test says so.
//!
//! - [`pci::MockPciDevice`] is a PCI function with a capability list and BARs a device model
//!   serves; [`virtio::MockVirtioNet`] is such a model: a virtio-net device (modern PCI
//!   transport, split and packed rings) with hostile modes.
//!
//! Every safe access to DMA memory in this crate (device side and [`MockRegion::read_at`] /
//! [`MockRegion::write_at`]) is made of atomic loads and stores, so a device-model thread and
//! the driver's thread can share memory without undefined behaviour; see `atomic_copy`.
#![deny(missing_docs)]

mod atomic_copy;
mod clock;
mod device_mem;
mod event;
mod iommu;
mod memory;
mod os;
pub mod pci;
pub mod virtio;

pub use clock::MockClock;
pub use device_mem::{DeviceMemory, Fault, FaultKind};
pub use event::MockEvent;
pub use memory::{MockRegion, OutOfRegion};
pub use os::{IovaLayout, MockOs, MockOsBuilder};
