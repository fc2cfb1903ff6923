//! [`Transport`]: how a virtio driver reaches its device (virtio 1.2 §4), whatever carries it.
//!
//! Modern PCI reaches registers in a BAR and rings by DMA; vhost-user sends the same
//! operations as messages over a Unix socket and shares memory by file descriptor. A driver
//! written against this trait runs over both. Control-path methods take `&mut self`; the hot
//! path is a queue's own [`QueueNotify`], owned by the core that runs the queue.
//!
//! The initialisation order a driver follows (§3.1.1): [`reset`](Transport::reset),
//! `ACKNOWLEDGE`, `DRIVER`, [`device_features`](Transport::device_features),
//! [`set_driver_features`](Transport::set_driver_features), `FEATURES_OK` (then check it
//! stuck), [`setup_interrupts`](Transport::setup_interrupts), per queue
//! [`setup_queue`](Transport::setup_queue) and [`enable_queue`](Transport::enable_queue),
//! `DRIVER_OK`.

use super::features::{DeviceStatus, Features};
use super::queue::QueueAreas;
use crate::addr::VirtAddr;
use crate::os::pci::PciError;
use crate::os::{EventError, EventNotifier};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// Why a transport operation failed, and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// PCI access failed.
    Pci(PciError),
    /// An event handle failed.
    Event(EventError),
    /// The device described itself in a way that cannot be right.
    Malformed {
        /// What was wrong.
        what: &'static str,
    },
    /// The device has no queue with that index.
    NoSuchQueue {
        /// The queue asked for.
        queue: u16,
    },
    /// The device did not finish a reset in time.
    ResetTimeout,
    /// The device (or backend) refused a request.
    Refused {
        /// What was refused and what to do.
        what: &'static str,
    },
    /// An OS call failed (the vhost-user socket, a memory mapping).
    Os {
        /// What was attempted.
        op: &'static str,
        /// The OS's error code (errno on Linux).
        code: i32,
    },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Pci(e) => write!(f, "virtio over PCI: {e}"),
            TransportError::Event(e) => write!(f, "virtio interrupt event: {e}"),
            TransportError::Malformed { what } => write!(
                f,
                "virtio device reports nonsense: {what}; reset it or leave it unused"
            ),
            TransportError::NoSuchQueue { queue } => write!(
                f,
                "virtio device has no queue {queue}; use fewer queue pairs"
            ),
            TransportError::ResetTimeout => write!(
                f,
                "virtio device did not come out of reset; it is hung — reset the function"
            ),
            TransportError::Refused { what } => write!(f, "virtio device refused: {what}"),
            TransportError::Os { op, code } => write!(f, "{op} failed with OS error {code}"),
        }
    }
}

impl core::error::Error for TransportError {}

impl From<PciError> for TransportError {
    fn from(e: PciError) -> Self {
        TransportError::Pci(e)
    }
}

impl From<EventError> for TransportError {
    fn from(e: EventError) -> Self {
        TransportError::Event(e)
    }
}

/// One queue's doorbell, owned by the core that runs the queue.
pub trait QueueNotify: Send {
    /// Tells the device there is new work on the queue (one call per burst).
    fn notify(&self);
}

/// Interrupt events connected by [`Transport::setup_interrupts`].
#[derive(Debug)]
pub struct Interrupts<E> {
    /// Configuration changes (link status, `DEVICE_NEEDS_RESET`).
    pub config: Arc<E>,
    /// One per queue asked for, in the order asked.
    pub queues: Vec<Arc<E>>,
}

/// How a virtio driver reaches its device.
pub trait Transport: Send {
    /// A queue's doorbell.
    type Notify: QueueNotify + 'static;
    /// An interrupt event (per queue, and one for configuration changes).
    type Irq: EventNotifier + 'static;

    /// Resets the device: status 0, then waits (bounded) until it reads back 0.
    fn reset(&mut self) -> Result<(), TransportError>;

    /// The device status register.
    fn status(&mut self) -> Result<DeviceStatus, TransportError>;

    /// Writes the device status register (the driver only ever adds bits, or resets).
    fn set_status(&mut self, status: DeviceStatus) -> Result<(), TransportError>;

    /// The features the device offers (all 64 bits).
    fn device_features(&mut self) -> Result<Features, TransportError>;

    /// Writes the features the driver accepts (a subset of what was offered).
    fn set_driver_features(&mut self, features: Features) -> Result<(), TransportError>;

    /// How many virtqueues the device has.
    fn num_queues(&mut self) -> Result<u16, TransportError>;

    /// The largest size queue `queue` may have (0: the queue is not available).
    fn max_queue_size(&mut self, queue: u16) -> Result<u16, TransportError>;

    /// Connects interrupts: one event for configuration changes and one per entry of
    /// `queues` (queue indices); the transport routes each queue's interrupt to its event when
    /// the queue is set up. `Ok(None)`: this transport or device has no interrupts (poll).
    /// Called after `FEATURES_OK`, before [`setup_queue`](Self::setup_queue).
    fn setup_interrupts(
        &mut self,
        queues: &[u16],
    ) -> Result<Option<Interrupts<Self::Irq>>, TransportError>;

    /// Checks that the device can reach the `len` bytes at `va`, memory the driver will post
    /// buffers from (a receive queue's mempool), so that a queue fails at setup instead of
    /// handing the device buffers it cannot translate. A transport that shares memory
    /// selectively says no with [`TransportError::Refused`] (vhost-user: only the regions of
    /// its memory table reach the backend); the default accepts, for devices that reach all
    /// DMA memory.
    fn check_reachable(&mut self, va: VirtAddr, len: usize) -> Result<(), TransportError> {
        let _ = (va, len);
        Ok(())
    }

    /// Tells the device where queue `queue`'s rings are (IOVAs) and its size.
    fn setup_queue(&mut self, queue: u16, areas: &QueueAreas) -> Result<(), TransportError>;

    /// Enables queue `queue` (after [`setup_queue`](Self::setup_queue)).
    fn enable_queue(&mut self, queue: u16) -> Result<(), TransportError>;

    /// The doorbell of queue `queue`, for the core that runs it.
    fn queue_notify(&mut self, queue: u16) -> Result<Self::Notify, TransportError>;

    /// The configuration generation counter (§2.5.1): read before and after reading device
    /// config; a change means the read may be torn and must be repeated.
    fn config_generation(&mut self) -> Result<u8, TransportError>;

    /// Reads `buf.len()` bytes of device-specific configuration at `offset`.
    fn read_config(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError>;

    /// Reads and clears the interrupt status (bit 0: a queue, bit 1: configuration), where
    /// the transport has one; 0 otherwise.
    fn interrupt_status(&mut self) -> Result<u8, TransportError> {
        Ok(0)
    }

    /// Whether this is a legacy interface (virtio 1.2 §4.1.4.8 and the "Legacy Interface"
    /// sections): 32 feature bits, so never `VERSION_1`; the legacy split-ring layout
    /// ([`SplitLayout::legacy`](crate::virtio::format::SplitLayout::legacy)); queue sizes
    /// fixed by the device. A driver refuses a device without `VERSION_1` on any other.
    fn is_legacy(&self) -> bool {
        false
    }

    /// Whether the device serves every queue pair whose queues are enabled, so that several
    /// pairs need no `MQ` command on a control queue (vhost-user: the backend processes each
    /// enabled ring). Devices that follow the spec's control queue (virtio-pci) say no.
    fn pairs_follow_enabled_queues(&self) -> bool {
        false
    }
}
