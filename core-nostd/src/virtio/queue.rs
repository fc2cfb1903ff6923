//! What both ring layouts share: buffers in, completions out, the anomaly bookkeeping that
//! turns a misbehaving device into counters instead of a crash, and the [`Virtqueue`] trait
//! a driver is written against.

// Without `alloc` only the types are public; the helpers serve the queues.
#![cfg_attr(not(feature = "alloc"), allow(dead_code))]

use crate::addr::{Iova, VirtAddr};
use crate::os::DmaRegion;
use core::fmt;

/// One buffer of a chain the driver makes available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    /// Where it is, as the device addresses it.
    pub iova: Iova,
    /// Bytes.
    pub len: u32,
    /// Device-writable (receive) or device-readable (transmit).
    pub writable: bool,
}

impl Buf {
    /// A buffer the device reads.
    #[inline(always)]
    pub const fn readable(iova: Iova, len: u32) -> Self {
        Self {
            iova,
            len,
            writable: false,
        }
    }

    /// A buffer the device writes.
    #[inline(always)]
    pub const fn writable(iova: Iova, len: u32) -> Self {
        Self {
            iova,
            len,
            writable: true,
        }
    }
}

/// A chain the device is done with, validated: `id` was in flight and `len` fits the
/// chain's writable bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// The id [`Virtqueue::add`] returned for the chain.
    pub id: u16,
    /// Bytes the device wrote into it.
    pub len: u32,
}

/// Something the device wrote that cannot be right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Anomaly {
    /// A used id at or past the queue size.
    UnknownId = 0,
    /// A used id the driver has not made available (or already got back).
    NotInFlight = 1,
    /// A used length larger than the chain's writable bytes.
    LenTooLong = 2,
    /// A used index that moved further than there are buffers in flight.
    IndexJump = 3,
    /// A packed-ring descriptor marked used with the wrong wrap counter.
    BadWrap = 4,
    /// With `IN_ORDER`, a used element naming a chain in flight but not among those the
    /// device returned (it skipped ahead of the order the chains were made available in).
    OutOfOrder = 5,
}

impl Anomaly {
    /// How many kinds there are.
    pub const COUNT: usize = 6;

    /// Every kind, in counter order.
    pub const ALL: [Anomaly; Anomaly::COUNT] = [
        Anomaly::UnknownId,
        Anomaly::NotInFlight,
        Anomaly::LenTooLong,
        Anomaly::IndexJump,
        Anomaly::BadWrap,
        Anomaly::OutOfOrder,
    ];

    /// A short name for statistics.
    pub const fn name(self) -> &'static str {
        match self {
            Anomaly::UnknownId => "used_id_out_of_range",
            Anomaly::NotInFlight => "used_id_not_in_flight",
            Anomaly::LenTooLong => "used_len_too_long",
            Anomaly::IndexJump => "used_idx_jump",
            Anomaly::BadWrap => "used_bad_wrap_counter",
            Anomaly::OutOfOrder => "used_out_of_order",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`Virtqueue::pop_used`] hands back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// A chain came back, valid.
    Done(Used),
    /// The device wrote an anomaly; it was counted. With `id`, that chain came back anyway and
    /// its buffers are the caller's again (to free, not to use: its contents are suspect).
    Dropped {
        /// The chain reclaimed, if one could be identified.
        id: Option<u16>,
        /// What was wrong.
        anomaly: Anomaly,
    },
}

/// Anomalies allowed before a queue declares itself broken, unless set otherwise.
pub const DEFAULT_BROKEN_THRESHOLD: u32 = 16;

/// Per-kind anomaly counts, and whether the queue gave up on its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    counts: [u32; Anomaly::COUNT],
    threshold: u32,
    broken: bool,
}

impl Health {
    pub(crate) const fn new() -> Self {
        Self {
            counts: [0; Anomaly::COUNT],
            threshold: DEFAULT_BROKEN_THRESHOLD,
            broken: false,
        }
    }

    #[cold]
    pub(crate) fn record(&mut self, a: Anomaly) {
        let c = &mut self.counts[a as usize];
        *c = c.saturating_add(1);
        if self.total() >= self.threshold {
            self.broken = true;
        }
    }

    /// How many anomalies of kind `a` were seen.
    pub fn count(&self, a: Anomaly) -> u32 {
        self.counts[a as usize]
    }

    /// Anomalies of every kind.
    pub fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |s, c| s.saturating_add(*c))
    }

    /// Whether the queue stopped trusting its device: it takes no buffers and returns no
    /// completions until it is rebuilt (after a device reset).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub(crate) fn set_threshold(&mut self, t: u32) {
        self.threshold = t.max(1);
    }

    /// Counts `anomaly` and says what the completion became.
    #[cold]
    pub(crate) fn dropped(&mut self, id: Option<u16>, anomaly: Anomaly) -> Completion {
        self.record(anomaly);
        Completion::Dropped { id, anomaly }
    }

    /// The checks every `add` makes first: the queue is trusted, the chain is not empty, and
    /// `n` descriptors are free (`slots_free`: the queue also has a chain id to give).
    #[inline(always)]
    pub(crate) fn check_add(
        &self,
        n: usize,
        num_free: u16,
        slots_free: bool,
    ) -> Result<(), VirtqError> {
        if self.broken {
            return Err(VirtqError::Broken);
        }
        if n == 0 {
            return Err(VirtqError::NoBuffers);
        }
        if n > num_free as usize || !slots_free {
            return Err(VirtqError::Full {
                need: n,
                free: num_free,
            });
        }
        Ok(())
    }

    /// A returned chain `id` of `len` written bytes, for a chain that offered `write_len`:
    /// a read-only chain reads as 0 whatever the device wrote (DPDK's packed dequeue writes
    /// the bytes it read there; nothing rests on it); more than was offered is an anomaly.
    #[inline(always)]
    pub(crate) fn finish(&mut self, id: u16, len: u32, write_len: u32) -> Completion {
        if write_len == 0 {
            return Completion::Done(Used { id, len: 0 });
        }
        if len > write_len {
            return self.dropped(Some(id), Anomaly::LenTooLong);
        }
        Completion::Done(Used { id, len })
    }
}

/// Why a queue cannot be built or take a chain, and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VirtqError {
    /// The size is not a power of two in 1..=32768.
    BadSize {
        /// The size asked for.
        size: u16,
    },
    /// The region is smaller than the ring.
    RegionTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// A ring area is not IOVA-contiguous or not aligned.
    BadRegion {
        /// Which area.
        area: &'static str,
    },
    /// An empty chain.
    NoBuffers,
    /// Not enough free descriptors for the chain.
    Full {
        /// Descriptors the chain needs.
        need: usize,
        /// Descriptors free.
        free: u16,
    },
    /// The queue saw too many anomalies from its device and stopped.
    Broken,
}

impl fmt::Display for VirtqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VirtqError::BadSize { size } => write!(
                f,
                "virtqueue size {size} is not a power of two in 1..=32768; pick one the device \
                 allows"
            ),
            VirtqError::RegionTooSmall { need, have } => write!(
                f,
                "virtqueue needs {need} bytes of DMA memory, the region has {have}; allocate a \
                 larger region"
            ),
            VirtqError::BadRegion { area } => write!(
                f,
                "the {area} area of the virtqueue is not IOVA-contiguous or not 16-byte \
                 aligned; allocate the ring memory IOVA-contiguous"
            ),
            VirtqError::NoBuffers => write!(f, "a chain needs at least one buffer"),
            VirtqError::Full { need, free } => write!(
                f,
                "chain of {need} descriptors does not fit ({free} free); reclaim completions \
                 first or use shorter chains"
            ),
            VirtqError::Broken => write!(
                f,
                "the virtqueue stopped after repeated device anomalies; reset the device and \
                 rebuild the queue"
            ),
        }
    }
}

impl core::error::Error for VirtqError {}

/// The three addresses the device is told for a queue (§4.1.4.3 `queue_desc`, `queue_driver`,
/// `queue_device`), and where the same bytes are in the driver's address space (what a
/// vhost-user frontend sends in `SET_VRING_ADDR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueAreas {
    /// Entries.
    pub size: u16,
    /// Descriptor area.
    pub desc: Iova,
    /// Driver area (split: available ring; packed: driver event suppression).
    pub driver: Iova,
    /// Device area (split: used ring; packed: device event suppression).
    pub device: Iova,
    /// The descriptor area's virtual address.
    pub desc_va: VirtAddr,
    /// The driver area's virtual address.
    pub driver_va: VirtAddr,
    /// The device area's virtual address.
    pub device_va: VirtAddr,
}

impl QueueAreas {
    /// The areas of a ring at offsets `desc`, `driver`, `device` of `r` with the given lengths,
    /// each checked to be IOVA-contiguous and aligned.
    pub(crate) fn of<R: DmaRegion>(
        r: &R,
        size: u16,
        [desc, driver, device]: [(usize, usize); 3],
    ) -> Result<Self, VirtqError> {
        Ok(Self {
            size,
            desc: area_iova(r, desc.0, desc.1, "descriptor")?,
            driver: area_iova(r, driver.0, driver.1, "driver")?,
            device: area_iova(r, device.0, device.1, "device")?,
            desc_va: r.va().wrapping_add(desc.0),
            driver_va: r.va().wrapping_add(driver.0),
            device_va: r.va().wrapping_add(device.0),
        })
    }
}

/// Whether an event at index `event` falls between `old` (exclusive) and `new` (inclusive),
/// all free-running `u16` (§2.7.10, the `EVENT_IDX` rule).
#[inline(always)]
pub const fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// A driver-side virtqueue: make chains available, learn which came back.
///
/// Implemented by [`SplitQueue`](super::SplitQueue) and [`PackedQueue`](super::PackedQueue)
/// (and [`AnyQueue`](super::AnyQueue), whichever was negotiated). Nothing here trusts the
/// device: every id, length and index it writes is checked against what was made available,
/// anomalies are counted in [`health`](Self::health), and after
/// [`DEFAULT_BROKEN_THRESHOLD`] of them the queue is broken.
pub trait Virtqueue {
    /// Entries.
    fn size(&self) -> u16;

    /// Descriptors free.
    fn num_free(&self) -> u16;

    /// Makes `bufs` available as one chain; returns its id (below [`size`](Self::size)),
    /// which [`pop_used`](Self::pop_used) returns when the device is done. The device sees
    /// it after [`kick_prepare`](Self::kick_prepare).
    fn add(&mut self, bufs: &[Buf]) -> Result<u16, VirtqError>;

    /// The id the next successful [`add`](Self::add) will return (`None` when no id is free),
    /// so a driver can place per-chain data (a transmit header) before adding.
    fn next_id(&self) -> Option<u16>;

    /// Publishes everything added since the last call; returns whether the device wants a
    /// notification (one doorbell write per burst).
    fn kick_prepare(&mut self) -> bool;

    /// The next chain the device is done with, validated; `None` if there is none (or the
    /// queue is broken).
    fn pop_used(&mut self) -> Option<Completion>;

    /// Completes up to `ids.len()` chains the device has returned, oldest first, writing
    /// their ids to `ids`; returns how many. For device-readable chains (transmit): no length
    /// is reported. With `IN_ORDER` on a split ring the used elements are not read at all —
    /// the used index counts every chain, even those a batch element skips (§2.7.9) — so
    /// reclaiming costs one read of the index, not a transfer of the device's element lines.
    /// Anomalies are counted as [`pop_used`](Self::pop_used) counts them, and a chain they
    /// return is listed too (its buffers are the caller's again).
    #[inline]
    fn complete_readable(&mut self, ids: &mut [u16]) -> usize
    where
        Self: Sized,
    {
        complete_by_popping(self, ids)
    }

    /// Whether the device has returned something not yet popped.
    fn has_used(&self) -> bool;

    /// Whether popping now would free at least `descs` descriptors (or every descriptor in
    /// flight, if fewer are). A hint for batching reclaims, so the driver does not read the
    /// device's lines one completion at a time; the default, where no cheap answer exists,
    /// is [`has_used`](Self::has_used). A queue may keep what it read for the pop or
    /// completion that follows (so the device's line is read once).
    #[inline]
    fn ready_at_least(&mut self, descs: u16) -> bool {
        let _ = descs;
        self.has_used()
    }

    /// Asks the device for an interrupt when the next chain is used; returns whether one is
    /// already there (then poll instead of sleeping).
    fn enable_interrupts(&mut self) -> bool;

    /// Asks the device for no interrupts (best effort: the device may still send some).
    fn disable_interrupts(&mut self);

    /// Anomaly counts and the broken flag.
    fn health(&self) -> &Health;

    /// Sets how many anomalies make the queue broken (at least 1).
    fn set_broken_threshold(&mut self, threshold: u32);

    /// The addresses to give the device.
    fn areas(&self) -> QueueAreas;
}

/// [`Virtqueue::complete_readable`] one [`pop_used`](Virtqueue::pop_used) at a time: for
/// rings whose used elements must be read.
#[inline]
pub(crate) fn complete_by_popping<Q: Virtqueue>(q: &mut Q, ids: &mut [u16]) -> usize {
    let mut n = 0;
    while n < ids.len() {
        let Some(c) = q.pop_used() else { break };
        let id = match c {
            Completion::Done(u) => Some(u.id),
            Completion::Dropped { id, .. } => id,
        };
        if let Some(id) = id {
            ids[n] = id;
            n += 1;
        }
    }
    n
}

/// Per chain id, what the driver made available.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    /// Descriptors the chain uses.
    pub descs: u16,
    /// Sum of its writable buffers' lengths: the most the device may report.
    pub write_len: u32,
    pub in_flight: bool,
}

/// Checks a queue size: a power of two in 1..=32768.
pub(crate) fn check_size(size: u16) -> Result<(), VirtqError> {
    if size == 0 || !size.is_power_of_two() {
        return Err(VirtqError::BadSize { size });
    }
    Ok(())
}

/// Checks that `len` bytes at `off` of `r` are IOVA-contiguous and 16-byte aligned (both VA
/// and IOVA), and returns their IOVA.
pub(crate) fn area_iova<R: DmaRegion>(
    r: &R,
    off: usize,
    len: usize,
    area: &'static str,
) -> Result<Iova, VirtqError> {
    let iova = r.iova_at(off).ok_or(VirtqError::BadRegion { area })?;
    let aligned = iova.get() % 4 == 0 && (r.as_ptr() as usize).is_multiple_of(16);
    if r.contiguous_from(off) < len || !aligned {
        return Err(VirtqError::BadRegion { area });
    }
    Ok(iova)
}

/// Volatile and atomic access to ring memory at offsets the layouts computed.
pub(crate) mod mem {
    use core::sync::atomic::{AtomicU16, Ordering};

    /// # Safety
    /// `base + off` is inside a live DMA region, aligned for `T`, and `T` is plain data.
    #[inline(always)]
    pub unsafe fn write<T>(base: *mut u8, off: usize, v: T) {
        // SAFETY: caller contract.
        unsafe { base.add(off).cast::<T>().write_volatile(v) }
    }

    /// # Safety
    /// As for [`write`]; every bit pattern is a valid `T`.
    #[inline(always)]
    pub unsafe fn read<T>(base: *mut u8, off: usize) -> T {
        // SAFETY: caller contract.
        unsafe { base.add(off).cast::<T>().read_volatile() }
    }

    /// # Safety
    /// `base + off` is inside a live DMA region and 2-aligned.
    #[inline(always)]
    pub unsafe fn load16(base: *mut u8, off: usize, o: Ordering) -> u16 {
        // SAFETY: caller contract; the device only touches this word with atomic or volatile
        // accesses of the same size.
        u16::from_le(unsafe { AtomicU16::from_ptr(base.add(off).cast::<u16>()) }.load(o))
    }

    /// # Safety
    /// As for [`load16`].
    #[inline(always)]
    pub unsafe fn store16(base: *mut u8, off: usize, v: u16, o: Ordering) {
        // SAFETY: caller contract.
        unsafe { AtomicU16::from_ptr(base.add(off).cast::<u16>()) }.store(v.to_le(), o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_matches_the_spec_examples() {
        // The device asked to be told when index 5 is made available.
        assert!(need_event(5, 6, 5));
        assert!(need_event(5, 10, 3));
        assert!(!need_event(5, 5, 3), "5 not yet published");
        assert!(!need_event(5, 12, 7), "already past it before this batch");
        // Across the u16 wrap.
        assert!(need_event(65535, 2, 65534));
        assert!(!need_event(1, 0, 65530));
    }

    #[test]
    fn health_breaks_at_the_threshold() {
        let mut h = Health::new();
        h.set_threshold(3);
        h.record(Anomaly::UnknownId);
        h.record(Anomaly::LenTooLong);
        assert!(!h.is_broken());
        h.record(Anomaly::LenTooLong);
        assert!(h.is_broken());
        assert_eq!(h.count(Anomaly::LenTooLong), 2);
        assert_eq!(h.total(), 3);
    }
}
