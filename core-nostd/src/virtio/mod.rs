//! Virtio (virtio 1.2): the formats a driver and a device share, the feature and status bits,
//! and the driver side of both ring layouts.
//!
//! - [`format`]: `#[repr(C)]` little-endian types — split descriptors, available and used
//!   rings, packed descriptors and event suppression, the network header, the PCI capability
//!   and common-configuration layout — with their sizes asserted at compile time.
//! - [`Features`], [`DeviceStatus`]: the bits negotiated at initialisation.
//! - [`SplitQueue`], [`PackedQueue`] (feature `alloc`): virtqueue state machines over a
//!   [DMA region](crate::os::DmaRegion). They keep a shadow of what was made available and
//!   check every id, length, index and wrap counter the device writes; anomalies are counted
//!   per kind ([`Health`]), the element is dropped, and past a threshold the queue is broken.
//!   Both implement [`Virtqueue`]; [`AnyQueue`] is whichever the device negotiated.
//!
//! - [`Transport`] (feature `alloc`): how a driver reaches its device — feature and status
//!   registers, queue setup, doorbells, interrupts, device config — so one network driver runs
//!   over modern PCI and vhost-user alike.
//!
//! Devices, transport implementations (PCI, vhost-user) and the network driver live elsewhere
//! (`rdk-pmd-virtio`); a device model for tests is in `rdk-os-mock`.

pub mod features;
pub mod format;
#[cfg(feature = "alloc")]
mod packed;
mod queue;
#[cfg(feature = "alloc")]
mod split;
#[cfg(all(test, feature = "alloc"))]
mod tests;
#[cfg(feature = "alloc")]
pub mod transport;

pub use features::{net_status, DeviceStatus, Features};
#[cfg(feature = "alloc")]
pub use packed::PackedQueue;
pub use queue::{
    need_event, Anomaly, Buf, Completion, Health, QueueAreas, Used, VirtqError, Virtqueue,
    DEFAULT_BROKEN_THRESHOLD,
};
#[cfg(feature = "alloc")]
pub use split::SplitQueue;
#[cfg(feature = "alloc")]
pub use transport::{Interrupts, QueueNotify, Transport, TransportError};

#[cfg(feature = "alloc")]
use crate::os::DmaRegion;

/// A split or a packed queue, whichever the device negotiated (`RING_PACKED`). One branch per
/// call, no `dyn`.
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub enum AnyQueue<R: DmaRegion> {
    /// Split layout.
    Split(SplitQueue<R>),
    /// Packed layout.
    Packed(PackedQueue<R>),
}

#[cfg(feature = "alloc")]
macro_rules! each {
    ($self:ident, $q:ident => $e:expr) => {
        match $self {
            AnyQueue::Split($q) => $e,
            AnyQueue::Packed($q) => $e,
        }
    };
}

#[cfg(feature = "alloc")]
impl<R: DmaRegion> AnyQueue<R> {
    /// A queue of `size` entries in `region`, of the layout `features` negotiated (without
    /// `VERSION_1`, the legacy split layout).
    pub fn new(region: R, size: u16, features: Features) -> Result<Self, VirtqError> {
        let event_idx = features.contains(Features::EVENT_IDX);
        let in_order = features.contains(Features::IN_ORDER);
        Ok(if features.contains(Features::RING_PACKED) {
            AnyQueue::Packed(PackedQueue::new(region, size, event_idx, in_order)?)
        } else if !features.contains(Features::VERSION_1) {
            AnyQueue::Split(SplitQueue::new_legacy(region, size, event_idx, in_order)?)
        } else {
            AnyQueue::Split(SplitQueue::new(region, size, event_idx, in_order)?)
        })
    }

    /// Gives the ring memory back.
    pub fn into_region(self) -> R {
        each!(self, q => q.into_region())
    }

    /// Bytes of DMA memory a queue of `size` entries needs with `features`.
    pub const fn bytes_needed(size: u16, features: Features) -> usize {
        if features.contains(Features::RING_PACKED) {
            format::PackedLayout::new(size).total
        } else if !features.contains(Features::VERSION_1) {
            format::SplitLayout::legacy(size).total
        } else {
            format::SplitLayout::new(size).total
        }
    }
}

#[cfg(feature = "alloc")]
impl<R: DmaRegion> Virtqueue for AnyQueue<R> {
    #[inline(always)]
    fn size(&self) -> u16 {
        each!(self, q => q.size())
    }
    #[inline(always)]
    fn num_free(&self) -> u16 {
        each!(self, q => q.num_free())
    }
    #[inline(always)]
    fn add(&mut self, bufs: &[Buf]) -> Result<u16, VirtqError> {
        each!(self, q => q.add(bufs))
    }
    #[inline(always)]
    fn next_id(&self) -> Option<u16> {
        each!(self, q => q.next_id())
    }
    #[inline(always)]
    fn kick_prepare(&mut self) -> bool {
        each!(self, q => q.kick_prepare())
    }
    #[inline(always)]
    fn pop_used(&mut self) -> Option<Completion> {
        each!(self, q => q.pop_used())
    }
    #[inline(always)]
    fn complete_readable(&mut self, ids: &mut [u16]) -> usize {
        each!(self, q => q.complete_readable(ids))
    }
    #[inline(always)]
    fn has_used(&self) -> bool {
        each!(self, q => q.has_used())
    }
    #[inline(always)]
    fn ready_at_least(&mut self, descs: u16) -> bool {
        each!(self, q => q.ready_at_least(descs))
    }
    fn enable_interrupts(&mut self) -> bool {
        each!(self, q => q.enable_interrupts())
    }
    fn disable_interrupts(&mut self) {
        each!(self, q => q.disable_interrupts())
    }
    fn health(&self) -> &Health {
        each!(self, q => q.health())
    }
    fn set_broken_threshold(&mut self, threshold: u32) {
        each!(self, q => q.set_broken_threshold(threshold))
    }
    fn areas(&self) -> QueueAreas {
        each!(self, q => q.areas())
    }
}
