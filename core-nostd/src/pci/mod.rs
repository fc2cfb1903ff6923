//! PCI as data: addresses, config-space layout, the capability-list walk, BAR decoding and
//! id tables. Nothing here touches a device; [`crate::os::pci`] is how a device is reached.
//!
//! Everything parsed here comes from a device and is untrusted: the capability walk cannot
//! loop or leave config space, and BAR flags are decoded, never assumed.

pub mod addr;
pub mod bar;
pub mod caps;
pub mod config;
pub mod ids;

pub use addr::{PciAddr, PciAddrError};
pub use bar::{BarInfo, BarKind};
pub use caps::{CapIter, Capability, MsixInfo};
pub use config::ConfigRead;
pub use ids::{PciId, PciIdMatch, PCI_ANY_ID};
