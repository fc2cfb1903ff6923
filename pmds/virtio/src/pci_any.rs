//! The virtio-pci transport rdk picks for a device: the modern one ([`PciTransport`]) when the
//! function has the virtio capabilities, the legacy one ([`LegacyPciTransport`]) when it has
//! none or when the device arguments say `force_legacy=1` (a transitional device offers both).

use crate::legacy::{LegacyNotify, LegacyPciTransport};
use crate::pci::{PciNotify, PciTransport};
use rdk_core::ethdev::{DevArgs, DevArgsError};
use rdk_core::os::pci::{Mmio, PciDevice};
use rdk_core::pci::caps::{id, CapIter};
use rdk_core::pci::config::DeviceConfig;
use rdk_core::virtio::format::cfg_type;
use rdk_core::virtio::{
    DeviceStatus, Features, Interrupts, QueueAreas, QueueNotify, Transport, TransportError,
};

/// Modern or legacy virtio over PCI, chosen by [`AnyPciTransport::open`].
pub enum AnyPciTransport<D: PciDevice> {
    /// Through the virtio capabilities (virtio 1.x).
    Modern(PciTransport<D>),
    /// Through the legacy register block in BAR0.
    Legacy(LegacyPciTransport<D>),
}

/// A queue's doorbell on either transport.
pub enum AnyPciNotify<B: Mmio> {
    /// The modern notify structure.
    Modern(PciNotify<B>),
    /// The legacy notify register.
    Legacy(LegacyNotify<B>),
}

impl<B: Mmio + 'static> QueueNotify for AnyPciNotify<B> {
    #[inline(always)]
    fn notify(&self) {
        // One predictable branch per burst, on the way to a register write.
        match self {
            AnyPciNotify::Modern(n) => n.notify(),
            AnyPciNotify::Legacy(n) => n.notify(),
        }
    }
}

/// Whether `dev` has a modern common-configuration capability (virtio 1.2 §4.1.4.3).
pub fn has_modern_caps<D: PciDevice>(dev: &D) -> Result<bool, TransportError> {
    let cfg = DeviceConfig(dev);
    for cap in CapIter::new(&cfg)? {
        let cap = cap?;
        if cap.id == id::VENDOR && dev.config_read_u8(cap.offset + 3)? == cfg_type::COMMON {
            return Ok(true);
        }
    }
    Ok(false)
}

impl<D: PciDevice> AnyPciTransport<D> {
    /// The modern transport if the device has its capabilities and `force_legacy` is off,
    /// else the legacy one.
    pub fn open(dev: D, force_legacy: bool) -> Result<Self, TransportError> {
        if !force_legacy && has_modern_caps(&dev)? {
            PciTransport::new(dev).map(Self::Modern)
        } else {
            LegacyPciTransport::new(dev).map(Self::Legacy)
        }
    }

    /// [`open`](Self::open) with `force_legacy` from the device arguments
    /// (`net_virtio0,force_legacy=1`; off by default).
    pub fn from_devargs(dev: D, args: &DevArgs) -> Result<Self, AnyPciError> {
        let force = args
            .get_bool("force_legacy", false)
            .map_err(AnyPciError::DevArgs)?;
        Self::open(dev, force).map_err(AnyPciError::Transport)
    }

    /// Whether the legacy transport was picked.
    pub fn legacy(&self) -> bool {
        matches!(self, Self::Legacy(_))
    }

    /// The PCI device.
    pub fn device(&self) -> &D {
        match self {
            Self::Modern(t) => t.device(),
            Self::Legacy(t) => t.device(),
        }
    }
}

/// Why [`AnyPciTransport::from_devargs`] failed.
#[derive(Debug)]
pub enum AnyPciError {
    /// `force_legacy` is not a boolean.
    DevArgs(DevArgsError),
    /// The chosen transport could not be set up.
    Transport(TransportError),
}

impl core::fmt::Display for AnyPciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::DevArgs(e) => write!(f, "net_virtio device arguments: {e}"),
            Self::Transport(e) => write!(f, "virtio-pci transport: {e}"),
        }
    }
}

macro_rules! each {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            AnyPciTransport::Modern($t) => $e,
            AnyPciTransport::Legacy($t) => $e,
        }
    };
}

impl<D: PciDevice> Transport for AnyPciTransport<D> {
    type Notify = AnyPciNotify<D::Bar>;
    type Irq = D::Irq;

    fn reset(&mut self) -> Result<(), TransportError> {
        each!(self, t => t.reset())
    }
    fn status(&mut self) -> Result<DeviceStatus, TransportError> {
        each!(self, t => t.status())
    }
    fn set_status(&mut self, status: DeviceStatus) -> Result<(), TransportError> {
        each!(self, t => t.set_status(status))
    }
    fn device_features(&mut self) -> Result<Features, TransportError> {
        each!(self, t => t.device_features())
    }
    fn set_driver_features(&mut self, features: Features) -> Result<(), TransportError> {
        each!(self, t => t.set_driver_features(features))
    }
    fn num_queues(&mut self) -> Result<u16, TransportError> {
        each!(self, t => t.num_queues())
    }
    fn max_queue_size(&mut self, queue: u16) -> Result<u16, TransportError> {
        each!(self, t => t.max_queue_size(queue))
    }
    fn setup_interrupts(
        &mut self,
        queues: &[u16],
    ) -> Result<Option<Interrupts<D::Irq>>, TransportError> {
        each!(self, t => t.setup_interrupts(queues))
    }
    fn check_reachable(
        &mut self,
        va: rdk_core::addr::VirtAddr,
        len: usize,
    ) -> Result<(), TransportError> {
        each!(self, t => t.check_reachable(va, len))
    }

    fn setup_queue(&mut self, queue: u16, areas: &QueueAreas) -> Result<(), TransportError> {
        each!(self, t => t.setup_queue(queue, areas))
    }
    fn enable_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        each!(self, t => t.enable_queue(queue))
    }
    fn queue_notify(&mut self, queue: u16) -> Result<AnyPciNotify<D::Bar>, TransportError> {
        match self {
            Self::Modern(t) => t.queue_notify(queue).map(AnyPciNotify::Modern),
            Self::Legacy(t) => t.queue_notify(queue).map(AnyPciNotify::Legacy),
        }
    }
    fn config_generation(&mut self) -> Result<u8, TransportError> {
        each!(self, t => t.config_generation())
    }
    fn read_config(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        each!(self, t => t.read_config(offset, buf))
    }
    fn interrupt_status(&mut self) -> Result<u8, TransportError> {
        each!(self, t => t.interrupt_status())
    }
    fn is_legacy(&self) -> bool {
        each!(self, t => t.is_legacy())
    }
}
