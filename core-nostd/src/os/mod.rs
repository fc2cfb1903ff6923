//! The OS traits: everything a driver needs from the system it runs on.
//!
//! Drivers are generic over these traits and hold an instance (`&self` everywhere), so two
//! processes, two tests or two unikernel instances never share hidden state. Linux implements
//! them with hugepages, pagemap, VFIO and eventfds (`rdk-os-linux`), `rdk-os-mock` in memory with
//! device models, and a unikernel with its own page tables and interrupt controller.
//!
//! - [`dma`]: pinned, zeroed, aligned memory a device can reach, with its IOVAs.
//! - [`event`]: a handle a device interrupt or a peer's kick makes ready.
//! - [`clock`]: a monotonic clock.
//! - [`pci`]: PCI functions: config space, BAR register windows, bus mastering, interrupt
//!   vectors.

pub mod clock;
pub mod dma;
pub mod event;
pub mod pci;
#[cfg(test)]
pub(crate) mod test_dma;

pub use clock::{Clock, Instant};
pub use dma::{DmaAlloc, DmaError, DmaRegion, DmaRequest};
pub use event::{EventError, EventNotifier, Events, WaitHandle};
pub use pci::{IrqKind, Mmio, Pci, PciDevice, PciError};
