//! The packed virtqueue (virtio 1.2 §2.8), driver side.
//!
//! One ring of descriptors; the driver marks a descriptor available by setting its `AVAIL`
//! flag to its wrap counter and `USED` to the inverse, the device marks it used by setting
//! both to its own. The driver keeps a shadow per buffer id (descriptor count, writable bytes,
//! in flight) and checks every used descriptor against it and against the wrap counter.

use super::format::{desc_flags, event_flags, PackedDesc, PackedLayout};
use super::queue::{
    check_size, mem, need_event, Anomaly, Buf, Completion, Health, QueueAreas, Slot, VirtqError,
    Virtqueue,
};
use crate::os::DmaRegion;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

/// Offset of `flags` in a packed descriptor.
const FLAGS: usize = 14;

/// A packed virtqueue over the DMA region `R`, which it owns.
pub struct PackedQueue<R: DmaRegion> {
    region: R,
    layout: PackedLayout,
    areas: QueueAreas,
    next_avail: u16,
    avail_wrap: bool,
    next_used: u16,
    used_wrap: bool,
    num_free: u16,
    /// Free buffer ids: a FIFO ring of `size` entries (`free_ids[free_pos..free_pos+free]`).
    free_ids: Vec<u16>,
    free_pos: u16,
    free_count: u16,
    slots: Vec<Slot>,
    /// Ids in the order they were made available (for `IN_ORDER`).
    order: Vec<u16>,
    posted: u16,
    completed: u16,
    /// With `IN_ORDER`, a used descriptor that named a later buffer: the batch up to it is
    /// being completed.
    batch: Option<(u16, u32)>,
    /// Descriptors made available since the last kick.
    added: u16,
    event_idx: bool,
    in_order: bool,
    health: Health,
}

impl<R: DmaRegion> PackedQueue<R> {
    /// A queue of `size` entries in `region` (at least [`PackedLayout::total`] bytes,
    /// IOVA-contiguous, 16-byte aligned, zeroed).
    pub fn new(region: R, size: u16, event_idx: bool, in_order: bool) -> Result<Self, VirtqError> {
        check_size(size)?;
        let layout = PackedLayout::new(size);
        if region.len() < layout.total {
            return Err(VirtqError::RegionTooSmall {
                need: layout.total,
                have: region.len(),
            });
        }
        let areas = QueueAreas::of(
            &region,
            size,
            [
                (layout.desc, layout.driver),
                (layout.driver, 4),
                (layout.device, 4),
            ],
        )?;
        let n = size as usize;
        Ok(Self {
            region,
            layout,
            areas,
            next_avail: 0,
            avail_wrap: true,
            next_used: 0,
            used_wrap: true,
            num_free: size,
            free_ids: (0..size).collect(),
            free_pos: 0,
            free_count: size,
            slots: vec![Slot::default(); n],
            order: vec![0; n],
            posted: 0,
            completed: 0,
            batch: None,
            added: 0,
            event_idx,
            in_order,
            health: Health::new(),
        })
    }

    /// The ring memory.
    pub fn region(&self) -> &R {
        &self.region
    }

    /// Gives the ring memory back (to zero and reuse after a device reset).
    pub fn into_region(self) -> R {
        self.region
    }

    #[inline(always)]
    fn base(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    #[inline(always)]
    fn mask(&self) -> u16 {
        self.layout.size - 1
    }

    /// Gives chain `id` back: its descriptors, its id, and the ring position past it.
    #[inline]
    fn reclaim(&mut self, id: u16) {
        let slot = &mut self.slots[id as usize];
        slot.in_flight = false;
        let descs = slot.descs;
        self.num_free += descs;
        let end = self.free_pos.wrapping_add(self.free_count) & self.mask();
        self.free_ids[end as usize] = id;
        self.free_count += 1;
        self.completed = self.completed.wrapping_add(1);
        self.advance_used(descs);
    }

    #[inline(always)]
    fn advance_used(&mut self, n: u16) {
        let next = self.next_used as u32 + n as u32;
        if next >= self.layout.size as u32 {
            self.used_wrap = !self.used_wrap;
        }
        self.next_used = (next % self.layout.size as u32) as u16;
    }

    /// The next chain due with `IN_ORDER`.
    #[inline(always)]
    fn due(&self) -> u16 {
        self.order[(self.completed & self.mask()) as usize]
    }

    /// Completes `id` (in flight) with `len`, checking the length.
    #[inline]
    fn finish(&mut self, id: u16, len: u32) -> Completion {
        let write_len = self.slots[id as usize].write_len;
        self.reclaim(id);
        self.health.finish(id, len, write_len)
    }

    #[cold]
    fn dropped(&mut self, id: Option<u16>, anomaly: Anomaly) -> Completion {
        self.health.dropped(id, anomaly)
    }
}

impl<R: DmaRegion> Virtqueue for PackedQueue<R> {
    #[inline(always)]
    fn size(&self) -> u16 {
        self.layout.size
    }

    #[inline(always)]
    fn num_free(&self) -> u16 {
        self.num_free
    }

    #[inline(always)]
    fn add(&mut self, bufs: &[Buf]) -> Result<u16, VirtqError> {
        let n = bufs.len();
        self.health
            .check_add(n, self.num_free, self.free_count != 0)?;
        let id = self.free_ids[self.free_pos as usize];
        self.free_pos = (self.free_pos + 1) & self.mask();
        self.free_count -= 1;
        let base = self.base();
        let head = self.next_avail;
        let mut head_flags = 0;
        let mut write_len = 0u32;
        for (i, b) in bufs.iter().enumerate() {
            let mut flags = if i + 1 < n { desc_flags::NEXT } else { 0 };
            if b.writable {
                flags |= desc_flags::WRITE;
                write_len = write_len.saturating_add(b.len);
            }
            flags |= if self.avail_wrap {
                desc_flags::AVAIL
            } else {
                desc_flags::USED
            };
            let off = self.layout.desc + 16 * self.next_avail as usize;
            if i == 0 {
                // The head's flags word may be polled by the device right now (it is the next
                // slot it looks at): leave it alone and store it last, atomically, below.
                // SAFETY: next_avail < size: inside the ring, which `new` checked lies in the
                // region; each field is naturally aligned.
                unsafe {
                    mem::write(base, off, b.iova.get().to_le());
                    mem::write(base, off + 8, b.len.to_le());
                    mem::write(base, off + 12, id.to_le());
                }
                head_flags = flags;
            } else {
                let desc = PackedDesc {
                    addr: b.iova.get().into(),
                    len: b.len.into(),
                    id: id.into(),
                    flags: flags.into(),
                };
                // SAFETY: as above; 16-aligned. The device reads this descriptor only after
                // the head's Release store makes the chain available.
                unsafe { mem::write(base, off, desc) };
            }
            self.next_avail += 1;
            if self.next_avail == self.layout.size {
                self.next_avail = 0;
                self.avail_wrap = !self.avail_wrap;
            }
        }
        // Release: the whole chain is visible before its head turns available (§2.8.21).
        // SAFETY: head < size; flags is 2-aligned inside the descriptor.
        unsafe {
            mem::store16(
                base,
                self.layout.desc + 16 * head as usize + FLAGS,
                head_flags,
                Ordering::Release,
            )
        };
        self.num_free -= n as u16;
        self.added = self.added.wrapping_add(n as u16);
        self.slots[id as usize] = Slot {
            descs: n as u16,
            write_len,
            in_flight: true,
        };
        let pos = self.posted & self.mask();
        self.order[pos as usize] = id;
        self.posted = self.posted.wrapping_add(1);
        Ok(id)
    }

    #[inline(always)]
    fn next_id(&self) -> Option<u16> {
        (self.free_count > 0 && self.num_free > 0).then(|| self.free_ids[self.free_pos as usize])
    }

    #[inline]
    fn kick_prepare(&mut self) -> bool {
        if self.added == 0 {
            return false;
        }
        // Heads are visible before the device's suppression word is read (§2.8.21.3).
        fence(Ordering::SeqCst);
        let base = self.base();
        // SAFETY: the device event suppression structure is inside the region, 4-aligned.
        let (off_wrap, flags) = unsafe {
            (
                mem::load16(base, self.layout.device, Ordering::Relaxed),
                mem::load16(base, self.layout.device + 2, Ordering::Relaxed),
            )
        };
        let new = self.next_avail;
        let old = new.wrapping_sub(self.added);
        self.added = 0;
        match flags {
            event_flags::DISABLE => false,
            event_flags::DESC if self.event_idx => {
                let mut event = off_wrap & 0x7fff;
                if (off_wrap >> 15 != 0) != self.avail_wrap {
                    event = event.wrapping_sub(self.layout.size);
                }
                need_event(event, new, old)
            }
            _ => true,
        }
    }

    #[inline]
    fn pop_used(&mut self) -> Option<Completion> {
        if self.health.is_broken() {
            return None;
        }
        if let Some((last, len)) = self.batch {
            let due = self.due();
            if due == last {
                self.batch = None;
                return Some(self.finish(last, len));
            }
            // The chains a batch element skips were used in full (as the split ring, §2.7.9,
            // and as Linux reads them).
            let all = self.slots[due as usize].write_len;
            return Some(self.finish(due, all));
        }
        if self.num_free == self.layout.size {
            // Nothing out: whatever the ring says is stale.
            return None;
        }
        let base = self.base();
        let off = self.layout.desc + 16 * self.next_used as usize;
        // Acquire: the descriptor's other fields are read after the flags that publish them.
        // SAFETY: next_used < size: inside the ring; 2-aligned.
        let flags = unsafe { mem::load16(base, off + FLAGS, Ordering::Acquire) };
        let avail = flags & desc_flags::AVAIL != 0;
        let used = flags & desc_flags::USED != 0;
        if avail != used {
            return None;
        }
        if used != self.used_wrap {
            // Both bits say "used in the other lap" on a descriptor made available in this one.
            self.health.record(Anomaly::BadWrap);
            return None;
        }
        // SAFETY: as above; 16-aligned.
        let d: PackedDesc = unsafe { mem::read(base, off) };
        let (id, len) = (d.id.get(), d.len.get());
        if id >= self.layout.size {
            self.advance_used(1);
            return Some(self.dropped(None, Anomaly::UnknownId));
        }
        if !self.slots[id as usize].in_flight {
            self.advance_used(1);
            return Some(self.dropped(None, Anomaly::NotInFlight));
        }
        if self.in_order {
            let due = self.due();
            if due != id {
                // §2.8.9: one used descriptor names the last buffer of a batch; the ones
                // before it were used in full.
                self.batch = Some((id, len));
                let all = self.slots[due as usize].write_len;
                return Some(self.finish(due, all));
            }
        }
        Some(self.finish(id, len))
    }

    #[inline]
    fn ready_at_least(&mut self, descs: u16) -> bool {
        if self.batch.is_some() {
            return true;
        }
        let size = self.layout.size;
        let in_use = size - self.num_free;
        if in_use == 0 {
            return false;
        }
        let want = descs.clamp(1, in_use) as u32;
        let chains = self.posted.wrapping_sub(self.completed);
        let base = self.base();
        let (mut pos, mut wrap, mut freed, mut counted) =
            (self.next_used, self.used_wrap, 0u32, 0u16);
        // Walk the used descriptors from the next one due, each standing for its chain (or,
        // with IN_ORDER, for every chain up to the one it names), as pop_used would.
        while freed < want && counted < chains {
            let off = self.layout.desc + 16 * pos as usize;
            // SAFETY: pos < size: inside the ring; 2-aligned.
            let flags = unsafe { mem::load16(base, off + FLAGS, Ordering::Acquire) };
            let (avail, used) = (
                flags & desc_flags::AVAIL != 0,
                flags & desc_flags::USED != 0,
            );
            if avail != used {
                return false;
            }
            if used != wrap {
                return true; // nonsense: pop_used counts it
            }
            // SAFETY: as above (the id field, 2-aligned).
            let id = unsafe { mem::load16(base, off + 12, Ordering::Relaxed) };
            if id >= size || !self.slots[id as usize].in_flight {
                return true; // nonsense: pop_used counts it
            }
            let mut step = 0u32;
            loop {
                let cid = if self.in_order {
                    self.order[(self.completed.wrapping_add(counted) & self.mask()) as usize]
                } else {
                    id
                };
                step += self.slots[cid as usize].descs as u32;
                counted += 1;
                if cid == id || counted >= chains {
                    break;
                }
            }
            freed += step;
            let next = pos as u32 + step;
            if next >= size as u32 {
                wrap = !wrap;
            }
            pos = (next % size as u32) as u16;
        }
        freed >= want
    }

    #[inline]
    fn has_used(&self) -> bool {
        if self.batch.is_some() {
            return true;
        }
        if self.num_free == self.layout.size {
            return false;
        }
        let off = self.layout.desc + 16 * self.next_used as usize + FLAGS;
        // SAFETY: next_used < size: inside the ring; 2-aligned.
        let flags = unsafe { mem::load16(self.base(), off, Ordering::Acquire) };
        let avail = flags & desc_flags::AVAIL != 0;
        let used = flags & desc_flags::USED != 0;
        avail == used && used == self.used_wrap
    }

    fn enable_interrupts(&mut self) -> bool {
        // SAFETY: the driver event suppression flags are inside the region, 2-aligned.
        unsafe {
            mem::store16(
                self.base(),
                self.layout.driver + 2,
                event_flags::ENABLE,
                Ordering::Relaxed,
            )
        };
        fence(Ordering::SeqCst);
        self.has_used()
    }

    fn disable_interrupts(&mut self) {
        // SAFETY: as above.
        unsafe {
            mem::store16(
                self.base(),
                self.layout.driver + 2,
                event_flags::DISABLE,
                Ordering::Relaxed,
            )
        };
    }

    fn health(&self) -> &Health {
        &self.health
    }

    fn set_broken_threshold(&mut self, threshold: u32) {
        self.health.set_threshold(threshold)
    }

    fn areas(&self) -> QueueAreas {
        self.areas
    }
}

impl<R: DmaRegion> core::fmt::Debug for PackedQueue<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PackedQueue")
            .field("size", &self.layout.size)
            .field("num_free", &self.num_free)
            .field("next_avail", &self.next_avail)
            .field("next_used", &self.next_used)
            .field("health", &self.health)
            .finish()
    }
}
