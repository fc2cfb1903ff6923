//! The split virtqueue (virtio 1.2 §2.7), driver side.
//!
//! The driver keeps its own copy of everything it needs to trust: the free-descriptor links,
//! the chain each id heads (descriptor count, writable bytes, whether it is in flight) and the
//! order chains were made available. The descriptor table is only ever written; the used ring
//! is read and every element checked against that shadow.

use super::format::{avail_flags, desc_flags, used_flags, SplitDesc, SplitLayout, UsedElem};
use super::queue::{
    check_size, complete_by_popping, mem, need_event, Anomaly, Buf, Completion, Health, QueueAreas,
    Slot, VirtqError, Virtqueue,
};
use crate::os::DmaRegion;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

/// A split virtqueue over the DMA region `R`, which it owns.
pub struct SplitQueue<R: DmaRegion> {
    region: R,
    layout: SplitLayout,
    areas: QueueAreas,
    mask: u16,
    /// Free descriptors, a FIFO list through `next` (kept FIFO so that with `IN_ORDER` chains
    /// stay consecutive in the table, as §2.7.9 asks).
    free_head: u16,
    free_tail: u16,
    num_free: u16,
    /// Shadow of the descriptors' `next` links.
    next: Vec<u16>,
    slots: Vec<Slot>,
    /// Chain ids in the order they were made available (indexed by avail position).
    order: Vec<u16>,
    avail_idx: u16,
    published: u16,
    last_used: u16,
    /// The used index as last read: elements up to it are read without touching the index
    /// (a line the device keeps writing) again.
    used_seen: u16,
    /// Chains made available and not yet returned.
    in_flight: u16,
    /// Completions so far (with `IN_ORDER`: `order[completed]` is the next one due).
    completed: u16,
    /// With `IN_ORDER`, a used element that stood for a batch of chains (§2.7.9): the last
    /// chain it named and its length; the chains before it complete first, in order.
    batch: Option<(u16, u32)>,
    event_idx: bool,
    in_order: bool,
    health: Health,
}

impl<R: DmaRegion> SplitQueue<R> {
    /// A queue of `size` entries in `region` (at least [`SplitLayout::total`] bytes,
    /// IOVA-contiguous, 16-byte aligned, zeroed). `event_idx` and `in_order` say which of
    /// those features were negotiated.
    pub fn new(region: R, size: u16, event_idx: bool, in_order: bool) -> Result<Self, VirtqError> {
        Self::with_layout(region, SplitLayout::new(size), event_idx, in_order)
    }

    /// The same in the legacy layout ([`SplitLayout::legacy`]), for a device driven through
    /// a legacy transport (no `VERSION_1`).
    pub fn new_legacy(
        region: R,
        size: u16,
        event_idx: bool,
        in_order: bool,
    ) -> Result<Self, VirtqError> {
        Self::with_layout(region, SplitLayout::legacy(size), event_idx, in_order)
    }

    fn with_layout(
        region: R,
        layout: SplitLayout,
        event_idx: bool,
        in_order: bool,
    ) -> Result<Self, VirtqError> {
        let size = layout.size;
        check_size(size)?;
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
                (layout.desc, layout.desc_len()),
                (layout.avail, layout.used - layout.avail),
                (layout.used, layout.total - layout.used),
            ],
        )?;
        let n = size as usize;
        Ok(Self {
            region,
            layout,
            areas,
            mask: size - 1,
            free_head: 0,
            free_tail: size - 1,
            num_free: size,
            next: (0..n).map(|i| ((i + 1) % n) as u16).collect(),
            slots: vec![Slot::default(); n],
            order: vec![0; n],
            avail_idx: 0,
            published: 0,
            last_used: 0,
            used_seen: 0,
            in_flight: 0,
            completed: 0,
            batch: None,
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

    /// Returns chain `id`'s descriptors to the free list.
    #[inline]
    fn reclaim(&mut self, id: u16) {
        let slot = &mut self.slots[id as usize];
        slot.in_flight = false;
        let descs = slot.descs;
        let mut tail = id;
        for _ in 1..descs {
            tail = self.next[tail as usize];
        }
        if self.num_free == 0 {
            self.free_head = id;
        } else {
            self.next[self.free_tail as usize] = id;
        }
        self.free_tail = tail;
        self.num_free += descs;
        self.in_flight -= 1;
        self.completed = self.completed.wrapping_add(1);
    }

    /// The chain due next with `IN_ORDER`.
    #[inline(always)]
    fn due(&self) -> u16 {
        self.order[(self.completed & self.mask) as usize]
    }

    /// Reclaims chain `id` (in flight), which the device reported with `len` bytes written.
    #[inline]
    fn finish_chain(&mut self, id: u16, len: u32) -> Completion {
        let write_len = self.slots[id as usize].write_len;
        self.reclaim(id);
        self.health.finish(id, len, write_len)
    }

    /// Chains the device returned and the driver has not read, from the used index (read
    /// again only once the last reading is used up); `None` if none — or if the index moved
    /// further than there are chains in flight, which is counted.
    #[inline]
    fn ready(&mut self) -> Option<u16> {
        let mut ready = self.used_seen.wrapping_sub(self.last_used);
        if ready == 0 {
            // Acquire: the used elements are read after the index that publishes them.
            // SAFETY: used.idx is inside the region, 2-aligned.
            let used_idx =
                unsafe { mem::load16(self.base(), self.layout.used + 2, Ordering::Acquire) };
            self.used_seen = used_idx;
            ready = used_idx.wrapping_sub(self.last_used);
            if ready == 0 {
                return None;
            }
        }
        if ready > self.in_flight {
            // More returned than was ever out: nothing in the ring can be trusted this time.
            self.health.record(Anomaly::IndexJump);
            // Forget it: the next call reads the index afresh.
            self.used_seen = self.last_used;
            return None;
        }
        Some(ready)
    }

    /// With `IN_ORDER`: the element naming `id` stands for every chain from the one due up
    /// to `id`, all among the `ready` the used index returned (§2.7.9: the device writes one
    /// element per batch, at the batch's first position, and moves the index past all of
    /// it). How many chains that is, or `None` if `id` is not among them.
    #[inline]
    fn batch_len(&self, id: u16, ready: u16) -> Option<u16> {
        (0..ready)
            .find(|&j| self.order[(self.completed.wrapping_add(j) & self.mask) as usize] == id)
            .map(|j| j + 1)
    }

    #[cold]
    fn dropped(&mut self, id: Option<u16>, anomaly: Anomaly) -> Completion {
        self.health.dropped(id, anomaly)
    }
}

impl<R: DmaRegion> Virtqueue for SplitQueue<R> {
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
        self.health.check_add(n, self.num_free, true)?;
        let base = self.base();
        let head = self.free_head;
        let mut d = head;
        let mut write_len = 0u32;
        for (i, b) in bufs.iter().enumerate() {
            let more = i + 1 < n;
            let next = self.next[d as usize];
            let mut flags = if more { desc_flags::NEXT } else { 0 };
            if b.writable {
                flags |= desc_flags::WRITE;
                write_len = write_len.saturating_add(b.len);
            }
            let desc = SplitDesc {
                addr: b.iova.get().into(),
                len: b.len.into(),
                flags: flags.into(),
                next: if more { next } else { 0 }.into(),
            };
            // SAFETY: d < size, so the descriptor is inside the table, which `new` checked
            // lies in the region; the region is 16-aligned.
            unsafe { mem::write(base, self.layout.desc + 16 * d as usize, desc) };
            if more {
                d = next;
            } else {
                self.free_head = next;
            }
        }
        self.num_free -= n as u16;
        self.slots[head as usize] = Slot {
            descs: n as u16,
            write_len,
            in_flight: true,
        };
        let pos = self.avail_idx & self.mask;
        self.order[pos as usize] = head;
        let at = self.layout.avail_ring(pos);
        // With IN_ORDER the entry mostly holds `head` already from the previous lap: leave
        // the line clean then, so the device's copy stays valid.
        // SAFETY: pos < size: inside the available ring; 2-aligned; only the driver writes it.
        if unsafe { mem::load16(base, at, Ordering::Relaxed) } != head {
            // SAFETY: as above.
            unsafe { mem::write(base, at, head.to_le()) };
        }
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.in_flight += 1;
        Ok(head)
    }

    #[inline(always)]
    fn next_id(&self) -> Option<u16> {
        (self.num_free > 0).then_some(self.free_head)
    }

    #[inline]
    fn kick_prepare(&mut self) -> bool {
        let (old, new) = (self.published, self.avail_idx);
        if old == new {
            return false;
        }
        let base = self.base();
        // Release: the descriptors and ring entries are visible before the index (§2.7.13).
        // SAFETY: avail.idx is inside the region, 2-aligned.
        unsafe { mem::store16(base, self.layout.avail + 2, new, Ordering::Release) };
        self.published = new;
        // The index store must be visible before the suppression word is read (§2.7.13.4),
        // or a device that just went idle is never woken.
        fence(Ordering::SeqCst);
        if self.event_idx {
            // SAFETY: avail_event is inside the region, 2-aligned.
            let ev = unsafe { mem::load16(base, self.layout.avail_event(), Ordering::Relaxed) };
            need_event(ev, new, old)
        } else {
            // SAFETY: used.flags is inside the region, 2-aligned.
            let f = unsafe { mem::load16(base, self.layout.used, Ordering::Relaxed) };
            f & used_flags::NO_NOTIFY == 0
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
                return Some(self.finish_chain(due, len));
            }
            // §2.7.9: the chains a batch element skips were used in full.
            let all = self.slots[due as usize].write_len;
            return Some(self.finish_chain(due, all));
        }
        let ready = self.ready()?;
        let pos = self.last_used & self.mask;
        // SAFETY: pos < size: inside the used ring; 4-aligned.
        let e: UsedElem = unsafe { mem::read(self.base(), self.layout.used_ring(pos)) };
        let (id, len) = (e.id.get(), e.len.get());
        if id >= self.layout.size as u32 {
            self.last_used = self.last_used.wrapping_add(1);
            return Some(self.dropped(None, Anomaly::UnknownId));
        }
        let id = id as u16;
        if !self.slots[id as usize].in_flight {
            self.last_used = self.last_used.wrapping_add(1);
            return Some(self.dropped(None, Anomaly::NotInFlight));
        }
        if !self.in_order || self.due() == id {
            self.last_used = self.last_used.wrapping_add(1);
            return Some(self.finish_chain(id, len));
        }
        let Some(k) = self.batch_len(id, ready) else {
            self.last_used = self.last_used.wrapping_add(1);
            return Some(self.dropped(None, Anomaly::OutOfOrder));
        };
        self.last_used = self.last_used.wrapping_add(k);
        self.batch = Some((id, len));
        let due = self.due();
        let all = self.slots[due as usize].write_len;
        Some(self.finish_chain(due, all))
    }

    #[inline]
    fn complete_readable(&mut self, ids: &mut [u16]) -> usize {
        if !self.in_order {
            return complete_by_popping(self, ids);
        }
        if self.health.is_broken() {
            return 0;
        }
        let mut n = 0;
        // A batch pop_used began: its chains up to the one it named.
        while let Some((last, _)) = self.batch {
            if n == ids.len() {
                return n;
            }
            let due = self.due();
            self.reclaim(due);
            ids[n] = due;
            n += 1;
            if due == last {
                self.batch = None;
            }
        }
        // The used index counts every chain returned, in the order they were made available;
        // the elements are not needed. The index as last read (by ready_at_least, mostly)
        // serves until it is used up.
        let Some(ready) = self.ready() else { return n };
        let take = (ready as usize).min(ids.len() - n);
        for id in &mut ids[n..n + take] {
            let due = self.due();
            self.reclaim(due);
            *id = due;
        }
        self.last_used = self.last_used.wrapping_add(take as u16);
        n + take
    }

    #[inline]
    fn ready_at_least(&mut self, descs: u16) -> bool {
        if self.batch.is_some() {
            return true;
        }
        let in_use = self.layout.size - self.num_free;
        if in_use == 0 {
            return false;
        }
        let want = descs.clamp(1, in_use);
        // SAFETY: used.idx is inside the region, 2-aligned.
        let used_idx = unsafe { mem::load16(self.base(), self.layout.used + 2, Ordering::Acquire) };
        let ready = used_idx.wrapping_sub(self.last_used);
        if ready == 0 || ready > self.in_flight {
            // Nothing, or nonsense that pop_used will count.
            return ready != 0;
        }
        // Kept: the pop or completion that follows starts from this reading instead of
        // taking the device's line again (it moves on meanwhile; the next reading sees that).
        self.used_seen = used_idx;
        if !self.in_order {
            // Each element frees a chain of at least one descriptor.
            return ready >= want;
        }
        // IN_ORDER: the used index counts chains, and chains sit back to back in the table
        // from the one due: the ready ones end where the first chain not yet returned begins.
        if ready == self.in_flight {
            return true; // every chain out: `want` is at most all of them
        }
        let next = self.order[(self.completed.wrapping_add(ready) & self.mask) as usize];
        let freed = next.wrapping_sub(self.due()) & self.mask;
        freed >= want
    }

    #[inline]
    fn has_used(&self) -> bool {
        if self.batch.is_some() {
            return true;
        }
        // SAFETY: used.idx is inside the region, 2-aligned.
        let used_idx = unsafe { mem::load16(self.base(), self.layout.used + 2, Ordering::Acquire) };
        used_idx != self.last_used
    }

    fn enable_interrupts(&mut self) -> bool {
        let base = self.base();
        // SAFETY: avail.flags and used_event are inside the region, 2-aligned.
        unsafe {
            mem::store16(base, self.layout.avail, 0, Ordering::Relaxed);
            if self.event_idx {
                mem::store16(
                    base,
                    self.layout.used_event(),
                    self.last_used,
                    Ordering::Relaxed,
                );
            }
        }
        // The request is visible before the used index is checked again (§2.7.10).
        fence(Ordering::SeqCst);
        self.has_used()
    }

    fn disable_interrupts(&mut self) {
        let base = self.base();
        // SAFETY: as above.
        unsafe {
            if self.event_idx {
                // With EVENT_IDX the flags must stay 0 (§2.7.7.2): ask for the interrupt as
                // far behind as it gets instead (the device passes it only after 64 Ki more).
                let ev = self.last_used.wrapping_sub(1);
                mem::store16(base, self.layout.used_event(), ev, Ordering::Relaxed);
            } else {
                mem::store16(
                    base,
                    self.layout.avail,
                    avail_flags::NO_INTERRUPT,
                    Ordering::Relaxed,
                );
            }
        }
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

impl<R: DmaRegion> core::fmt::Debug for SplitQueue<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SplitQueue")
            .field("size", &self.layout.size)
            .field("num_free", &self.num_free)
            .field("avail_idx", &self.avail_idx)
            .field("last_used", &self.last_used)
            .field("health", &self.health)
            .finish()
    }
}
