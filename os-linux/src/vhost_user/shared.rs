//! [`SharedMemory`]: a DMA allocator whose every region a vhost-user backend can map.
//!
//! A vhost-user backend reaches only memory listed in `SET_MEM_TABLE`, at most eight regions.
//! Everything a virtio driver hands the device — rings, header areas, the control buffer and
//! the mbuf pools — must therefore be in a region the frontend knows of. `SharedMemory` is the
//! one allocator for all of it: the virtio-user port allocates its rings from it, and the
//! application creates its mbuf pools from it (`PktMbufPool::create(&shared, ..)`); each
//! region it hands out is recorded, and [`regions`](SharedMemory::regions) lists those still
//! alive for the memory table.
//!
//! Small requests (rings, header areas) are carved from shared 2 MiB arenas, so a port with
//! several queue pairs costs one table entry for all its rings rather than three per pair;
//! large ones (pools) get a region of their own. Memory comes from memfd-backed hugepages with
//! IOVA = VA (a backend translates descriptor addresses through the table, so IOVAs need not
//! be physical), or from plain memfd pages when hugepages run out (the backend maps either
//! kind; hugepages only make its address translation cheaper).

#![allow(unsafe_code)] // `unsafe impl DmaRegion for SharedRegion`, reasoned next to it.

use crate::dma::{IovaMode, LinuxRegion, MemoryConfig};
use crate::hugepage::HugePageSize;
use crate::os::LinuxOs;
use rdk_core::addr::Iova;
use rdk_core::os::dma::validate_request;
use rdk_core::os::{DmaAlloc, DmaError, DmaRegion, DmaRequest};
use std::sync::{Arc, Mutex, Weak};

/// Bytes of one arena for small allocations (one 2 MiB hugepage).
const ARENA: usize = 2 << 20;
/// Requests up to this size are carved from an arena.
const SMALL: usize = 256 << 10;

#[derive(Debug)]
struct Inner {
    os: LinuxOs,
    /// Plain memfd pages, for when `os` has no hugepages left.
    plain: LinuxOs,
    /// Every backing region handed out (weakly: a region dropped by its users is gone).
    regions: Vec<Weak<LinuxRegion>>,
    /// The arena small requests come from now, and how much of it is used.
    arena: Option<(Arc<LinuxRegion>, usize)>,
}

/// A DMA allocator for memory shared with a vhost-user backend. Clones share the allocator
/// (and its record of regions).
#[derive(Clone, Debug)]
pub struct SharedMemory {
    inner: Arc<Mutex<Inner>>,
}

impl SharedMemory {
    /// Memory from 2 MiB memfd hugepages if the machine has them free, else plain memfd pages
    /// (either can be shared; hugepages make the backend's address translation cheaper).
    pub fn new() -> Self {
        let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Va))
            .unwrap_or_else(|_| LinuxOs::plain());
        Self::with_os(os)
    }

    /// Memory from `os`, which must hand out IOVA-contiguous regions with a file behind them
    /// (memfd or hugetlbfs, IOVA = VA).
    pub fn with_os(os: LinuxOs) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                os,
                plain: LinuxOs::plain(),
                regions: Vec::new(),
                arena: None,
            })),
        }
    }

    /// Whether every region handed out so far is hugepage memory.
    pub fn is_hugepages(&self) -> bool {
        self.regions().iter().all(|r| !r.is_plain())
    }

    /// Every backing region still in use, in allocation order: what `SET_MEM_TABLE` must
    /// list.
    pub fn regions(&self) -> Vec<Arc<LinuxRegion>> {
        let mut inner = self.lock();
        inner.regions.retain(|w| w.strong_count() > 0);
        inner.regions.iter().filter_map(Weak::upgrade).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the record consistent (pushes are atomic).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for SharedMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    fn backing(&mut self, req: &DmaRequest<'_>) -> Result<Arc<LinuxRegion>, DmaError> {
        let r = match self.os.dma_alloc(req) {
            Err(DmaError::Exhausted { .. }) if !self.os.is_plain() => self.plain.dma_alloc(req)?,
            r => r?,
        };
        let r = Arc::new(r);
        self.regions.push(Arc::downgrade(&r));
        Ok(r)
    }
}

impl DmaAlloc for SharedMemory {
    type Region = SharedRegion;

    fn dma_alloc(&self, req: &DmaRequest<'_>) -> Result<SharedRegion, DmaError> {
        validate_request(req)?;
        let mut inner = self.lock();
        if req.len > SMALL || req.align > SMALL {
            let base = inner.backing(&req.contiguous())?;
            let len = base.len();
            return Ok(SharedRegion { base, off: 0, len });
        }
        // Carve from the current arena; a fresh one when it is full. Never reused, so every
        // carved piece is still zero from the kernel.
        let fits = |(a, used): &(Arc<LinuxRegion>, usize)| {
            let off = used.next_multiple_of(req.align);
            (off + req.len <= a.len()).then_some(off)
        };
        let off = match inner.arena.as_ref().and_then(fits) {
            Some(off) => off,
            None => {
                let a = inner.backing(&DmaRequest::new("vhost-user arena", ARENA).contiguous())?;
                inner.arena = Some((a, 0));
                0
            }
        };
        let Some((a, used)) = inner.arena.as_mut() else {
            return Err(DmaError::BadRequest {
                reason: "arena vanished",
            });
        };
        *used = off + req.len;
        Ok(SharedRegion {
            base: a.clone(),
            off,
            len: req.len,
        })
    }
}

/// A piece of memory from [`SharedMemory`]: all of a backing region, or a slice of an arena.
#[derive(Debug)]
pub struct SharedRegion {
    base: Arc<LinuxRegion>,
    off: usize,
    len: usize,
}

impl SharedRegion {
    /// The backing region (what the memory table lists).
    pub fn backing(&self) -> &Arc<LinuxRegion> {
        &self.base
    }
}

// SAFETY: a SharedRegion is the range off..off+len of `base`, inside it (checked when carved:
// off + len <= base.len()), and no other SharedRegion overlaps it (arena offsets only grow).
// - validity, pinning and aliasing: `base` is a LinuxRegion (whose own impl promises them) and
//   the Arc keeps it mapped while this region lives; only addresses are handed out.
// - zeroed: a carved range was never handed out before, so it is as the kernel zeroed it.
// - `iova_at`/`contiguous_from` forward to `base` shifted by `off`, capped at `len`.
unsafe impl DmaRegion for SharedRegion {
    #[inline]
    fn as_ptr(&self) -> *mut u8 {
        // The offset is within the base region (see above).
        self.base.as_ptr().wrapping_add(self.off)
    }

    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn iova_at(&self, offset: usize) -> Option<Iova> {
        if offset >= self.len {
            return None;
        }
        self.base.iova_at(self.off + offset)
    }

    #[inline]
    fn contiguous_from(&self, offset: usize) -> usize {
        if offset >= self.len {
            return 0;
        }
        self.base
            .contiguous_from(self.off + offset)
            .min(self.len - offset)
    }
}
