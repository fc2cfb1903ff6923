//! The mempool: `N` fixed-size objects carved from one DMA region, with explicit caches.
//!
//! One region holds everything, in this order: the pool header (its counters, the backing MP/MC
//! [`Ring`] of free objects and the region handle itself), the ring's slots, then the objects.
//! So the pool needs no heap, works in a unikernel, and the header's address (which an mbuf
//! records as its `pool`) is stable for the pool's life.
//!
//! Objects never straddle an IOVA discontinuity of the region: each object is contiguous for
//! the device, and its IOVA is computed from the region (arithmetic when the whole region is
//! contiguous).
//!
//! [`Mempool`] is a cheap, clonable handle (a reference count in the header). The memory is
//! freed when the last handle is dropped *and* every object is back; if objects are still out
//! at that point (an application bug) the region is deliberately leaked rather than freed under
//! them.
//!
//! Per-core caches are explicit [`MempoolCache`] objects, one per core or queue, because a
//! `no_std` core has no thread-locals (see [`cache`]).
//!
//! With the `checked` cargo feature each object carries an 8-byte trailer cookie recording
//! whether it is free or in use, so a double put or a put of a pointer that is not one of the
//! pool's objects is detected and reported (the fast `put` panics with the reason; `try_put`
//! returns it as an error). Without the feature there is no per-object overhead beyond the
//! object and its ring slot.

pub mod cache;

pub use cache::{MempoolCache, CACHE_MAX_SIZE};

use crate::addr::{Iova, VirtAddr};
use crate::os::{DmaAlloc, DmaError, DmaRegion, DmaRequest};
use crate::ring::{MpmcRing, RawSlots, Ring};
use crate::sync::{AtomicUsize, Ordering};
use core::fmt;
use core::mem::{align_of, size_of, ManuallyDrop};
use core::ptr::NonNull;

/// Longest pool name kept (longer names are rejected).
pub const NAME_MAX: usize = 31;

/// A pointer to one pool object. Plain data: it carries no ownership by itself.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct ObjPtr(NonNull<u8>);

// SAFETY: an ObjPtr is an address; what may be done through it is governed by the pool's
// protocol (one owner at a time), not by the thread holding it.
unsafe impl Send for ObjPtr {}
// SAFETY: as above.
unsafe impl Sync for ObjPtr {}

impl ObjPtr {
    /// Wraps a raw object pointer.
    #[inline(always)]
    pub const fn new(p: NonNull<u8>) -> Self {
        Self(p)
    }

    /// The raw pointer.
    #[inline(always)]
    pub const fn as_ptr(self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// The pointer as a `NonNull`.
    #[inline(always)]
    pub const fn as_non_null(self) -> NonNull<u8> {
        self.0
    }

    /// The object's virtual address.
    #[inline(always)]
    pub fn va(self) -> VirtAddr {
        VirtAddr::from_ptr(self.0.as_ptr())
    }
}

impl fmt::Debug for ObjPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjPtr({:p})", self.0)
    }
}

/// How to build a pool.
#[derive(Clone, Copy, Debug)]
pub struct MempoolConfig<'a> {
    /// Name, for diagnostics (at most [`NAME_MAX`] bytes).
    pub name: &'a str,
    /// Number of objects.
    pub count: usize,
    /// Bytes per object.
    pub elt_size: usize,
    /// Alignment of every object, a power of two ≥ 8 (default 64: one cache line).
    pub align: usize,
    /// Two words of pool-wide data for the layer above (the mbuf pool keeps its headroom and
    /// data room there).
    pub user: [u64; 2],
    /// With `align` 64, pad each object to an odd number of cache lines (default off), so
    /// that the same line of consecutive objects — an mbuf's header, its data — falls into
    /// every cache set instead of a fraction of them (a stride of 36 lines uses every fourth
    /// L1 set), as DPDK's mempool does unless told not to. Off by default because measured
    /// here it cuts both ways: for 2 KiB mbufs over virtio-user, packed-ring receive rose
    /// 20.9 -> 28.5 Mpps but packed-ring transmit fell 26 -> 22 (split rings: no change).
    pub spread: bool,
}

impl<'a> MempoolConfig<'a> {
    /// `count` objects of `elt_size` bytes, cache-line aligned.
    pub const fn new(name: &'a str, count: usize, elt_size: usize) -> Self {
        Self {
            name,
            count,
            elt_size,
            align: 64,
            user: [0; 2],
            spread: false,
        }
    }
}

/// What the per-object initialiser sees.
#[derive(Debug)]
pub struct ObjInit<'a> {
    /// The object's index in the pool (0-based, in address order).
    pub index: usize,
    /// The object's bytes (zeroed).
    pub obj: &'a mut [u8],
    /// The object's IOVA.
    pub iova: Iova,
    /// The pool's header, already in place (the mbuf pool records it in each mbuf's `pool`).
    pub(crate) pool: NonNull<PoolCore>,
}

/// Why a pool operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MempoolError {
    /// The configuration is unusable.
    BadConfig {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The DMA memory could not be had.
    Dma(DmaError),
    /// The pool already has [`MAX_CACHES`] caches.
    TooManyCaches,
    /// A cache size outside 2..=[`CACHE_MAX_SIZE`], or larger than the pool.
    BadCacheSize {
        /// The size asked for.
        size: usize,
        /// The largest size allowed for this pool.
        max: usize,
    },
    /// A put of a pointer that is not one of this pool's objects.
    ForeignObject {
        /// The pointer.
        addr: usize,
    },
    /// A put of an object that is already in the pool (a double free).
    DoublePut {
        /// The object.
        addr: usize,
    },
    /// An object's cookie is neither free nor in use: memory was overwritten past an object's
    /// end, or the pointer is inside an object rather than at its start.
    Corrupt {
        /// The object.
        addr: usize,
    },
}

impl fmt::Display for MempoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MempoolError::BadConfig { reason } => write!(f, "bad mempool configuration: {reason}"),
            MempoolError::Dma(e) => write!(f, "mempool memory: {e}"),
            MempoolError::BadCacheSize { size, max } => write!(
                f,
                "mempool cache size {size} is not in 2..={max}; pick an even size in that range"
            ),
            MempoolError::TooManyCaches => write!(
                f,
                "the pool already has {MAX_CACHES} caches; share one per core, or drop unused ones"
            ),
            MempoolError::ForeignObject { addr } => write!(
                f,
                "put of {addr:#x}, which is not an object of this pool; return each object to \
                 the pool it came from"
            ),
            MempoolError::DoublePut { addr } => write!(
                f,
                "object {addr:#x} put back twice (double free); the second owner must not free it"
            ),
            MempoolError::Corrupt { addr } => write!(
                f,
                "object {addr:#x} has a corrupt cookie: something wrote past the previous \
                 object's end, or the pointer is not an object start"
            ),
        }
    }
}

impl core::error::Error for MempoolError {}

impl From<DmaError> for MempoolError {
    fn from(e: DmaError) -> Self {
        MempoolError::Dma(e)
    }
}

#[cfg(feature = "checked")]
const COOKIE_FREE: u64 = 0x7e57_f4ee_0b1e_c7f0;
#[cfg(feature = "checked")]
const COOKIE_USED: u64 = 0x7e57_05ed_0b1e_c7f0;
/// Bytes the checked-mode trailer adds to each object.
const TRAILER: usize = if cfg!(feature = "checked") { 8 } else { 0 };

/// Most caches one pool can have at once.
pub const MAX_CACHES: usize = 64;

/// A cache's published length, alone on its cache line.
#[repr(C, align(64))]
struct CacheSlot {
    len: AtomicUsize,
    claimed: crate::sync::AtomicBool,
}

impl CacheSlot {
    fn new() -> Self {
        Self {
            len: AtomicUsize::new(0),
            claimed: crate::sync::AtomicBool::new(false),
        }
    }
}

/// The non-generic part of a pool header, at the start of its region. Everything the fast
/// paths touch lives here; mbufs point at it.
#[repr(C, align(64))]
pub(crate) struct PoolCore {
    ring: MpmcRing<ObjPtr, RawSlots<ObjPtr>>,
    /// Handles alive (Mempool values, including those inside caches).
    refs: AtomicUsize,
    /// One slot per cache: its length, published with a plain store after each operation so
    /// `in_caches` can sum them without any shared write on the fast path.
    cache_slots: [CacheSlot; MAX_CACHES],
    count: usize,
    elt_size: usize,
    stride: usize,
    obj_start: usize,
    obj_end: usize,
    /// Whether every object lies on the grid `obj_start + k * stride` (no contiguity gap was
    /// skipped while placing them), so an address off that grid is no object.
    uniform: bool,
    /// `iova - va` when the whole object area is IOVA-contiguous.
    iova_delta: Option<u64>,
    /// Offset of the region start from this header (0: the header is the region start).
    region_va: usize,
    user: [u64; 2],
    name: heapless::String<NAME_MAX>,
    iova_fn: unsafe fn(NonNull<PoolCore>, usize) -> Option<Iova>,
    drop_fn: unsafe fn(NonNull<PoolCore>),
}

/// The full header: the core, then the region handle it owns.
#[repr(C)]
struct PoolHeader<R> {
    core: PoolCore,
    region: ManuallyDrop<R>,
}

/// Translates a region offset through the region stored after the core.
///
/// # Safety
/// `core` must be the core of a live `PoolHeader<R>`.
unsafe fn iova_via_region<R: DmaRegion>(core: NonNull<PoolCore>, offset: usize) -> Option<Iova> {
    // SAFETY: caller contract: core starts a PoolHeader<R> (repr(C), core first).
    let hdr = unsafe { core.cast::<PoolHeader<R>>().as_ref() };
    hdr.region.iova_at(offset)
}

/// Frees the region holding the pool.
///
/// # Safety
/// `core` must be the core of a live `PoolHeader<R>` nobody uses any more.
unsafe fn drop_region<R: DmaRegion>(core: NonNull<PoolCore>) {
    let hdr = core.cast::<PoolHeader<R>>().as_ptr();
    // SAFETY: caller contract; the region is moved out before it frees the memory holding it,
    // and nothing touches the header afterwards.
    unsafe {
        let region = ManuallyDrop::take(&mut (*hdr).region);
        drop(region);
    }
}

/// A handle to a mempool. Clones share the pool.
pub struct Mempool {
    core: NonNull<PoolCore>,
}

// SAFETY: the core is shared through atomics (ring, counters) and immutable fields only.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

const fn round_up(v: usize, a: usize) -> usize {
    (v + a - 1) & !(a - 1)
}

impl Mempool {
    /// Creates a pool in a fresh DMA region from `os`, calling `init` once per object.
    pub fn create<D: DmaAlloc>(
        os: &D,
        cfg: &MempoolConfig<'_>,
        mut init: impl FnMut(ObjInit<'_>),
    ) -> Result<Mempool, MempoolError> {
        if cfg.count == 0 {
            return Err(MempoolError::BadConfig {
                reason: "count is zero; a pool needs at least one object",
            });
        }
        if cfg.elt_size == 0 {
            return Err(MempoolError::BadConfig {
                reason: "elt_size is zero",
            });
        }
        if !cfg.align.is_power_of_two() || cfg.align < 8 {
            return Err(MempoolError::BadConfig {
                reason: "align must be a power of two of at least 8",
            });
        }
        let name = heapless::String::<NAME_MAX>::try_from(cfg.name).map_err(|_| {
            MempoolError::BadConfig {
                reason: "name longer than 31 bytes",
            }
        })?;
        let ring_size = MpmcRing::<ObjPtr, RawSlots<ObjPtr>>::size_for_capacity(cfg.count)
            .map_err(|_| MempoolError::BadConfig {
                reason: "count too large for one ring (at most 2^31 - 1 objects)",
            })?;
        let mut stride = round_up(round_up(cfg.elt_size, 8) + TRAILER, cfg.align);
        if cfg.spread && cfg.align == 64 && (stride / 64).is_multiple_of(2) {
            stride += 64;
        }
        let hdr_len = round_up(size_of::<PoolHeader<D::Region>>(), 64);
        let slots_off = hdr_len;
        let objs_off = round_up(
            slots_off + ring_size * size_of::<ObjPtr>(),
            cfg.align.max(64),
        );
        let need = cfg
            .count
            .checked_mul(stride)
            .and_then(|b| b.checked_add(objs_off))
            .ok_or(MempoolError::BadConfig {
                reason: "count * elt_size overflows the address space",
            })?;

        // Objects may not straddle a contiguity boundary, so a scattered region can need a
        // little more than `need`; grow and retry a few times.
        let mut len = need;
        for _ in 0..4 {
            let req = DmaRequest::new(cfg.name, len)
                .align(cfg.align.max(align_of::<PoolHeader<D::Region>>()));
            let region = os.dma_alloc(&req)?;
            let placed = count_placeable(&region, objs_off, stride, cfg.count);
            if placed >= cfg.count {
                // SAFETY: the region is fresh, zeroed and at least `need` long; layout checked.
                return Ok(unsafe {
                    Self::build(
                        region, cfg, name, ring_size, slots_off, objs_off, stride, &mut init,
                    )
                });
            }
            let missing = cfg.count - placed;
            len =
                region.len() + missing * stride + missing.div_ceil(placed.max(1)) * stride + stride;
        }
        Err(MempoolError::Dma(DmaError::NotContiguous {
            requested: stride,
            longest_run: 0,
        }))
    }

    /// Lays the pool out in `region`.
    ///
    /// # Safety
    /// `region` is fresh (zeroed, unaliased), and `count_placeable` found room for every object.
    #[allow(clippy::too_many_arguments)]
    unsafe fn build<R: DmaRegion + 'static>(
        region: R,
        cfg: &MempoolConfig<'_>,
        name: heapless::String<NAME_MAX>,
        ring_size: usize,
        slots_off: usize,
        objs_off: usize,
        stride: usize,
        init: &mut impl FnMut(ObjInit<'_>),
    ) -> Mempool {
        let base = region.as_ptr();
        let len = region.len();
        debug_assert!((base as usize).is_multiple_of(align_of::<PoolHeader<R>>()));
        // SAFETY: slots_off + ring_size * 8 <= objs_off <= len, inside the region, 8-aligned.
        let slots = unsafe {
            RawSlots::new(
                NonNull::new_unchecked(base.add(slots_off).cast::<ObjPtr>()),
                ring_size,
            )
        }
        .unwrap_or_else(|_| unreachable!("slots are 64-byte aligned"));
        let ring = match Ring::with_slots(slots, cfg.count) {
            Ok(r) => r,
            Err(_) => unreachable!("size_for_capacity gave a fitting size"),
        };
        let whole_contig = region.contiguous_from(0) >= len;
        let iova_delta = if whole_contig {
            region
                .iova_at(0)
                .map(|i| i.get().wrapping_sub(base as usize as u64))
        } else {
            None
        };
        let hdr = base.cast::<PoolHeader<R>>();
        let core = PoolCore {
            ring,
            refs: AtomicUsize::new(1),
            cache_slots: core::array::from_fn(|_| CacheSlot::new()),
            count: cfg.count,
            elt_size: cfg.elt_size,
            stride,
            obj_start: base as usize + objs_off,
            obj_end: base as usize + objs_off,
            uniform: false,
            iova_delta,
            region_va: base as usize,
            user: cfg.user,
            name,
            iova_fn: iova_via_region::<R>,
            drop_fn: drop_region::<R>,
        };
        // SAFETY: the header fits before slots_off (hdr_len) and the region is aligned for it.
        unsafe {
            hdr.write(PoolHeader {
                core,
                region: ManuallyDrop::new(region),
            })
        };
        // SAFETY: just written.
        let core_ptr = unsafe { NonNull::new_unchecked(hdr.cast::<PoolCore>()) };
        let pool = Mempool { core: core_ptr };
        // Place objects, skipping to the next contiguous run where one would straddle.
        // SAFETY: just written; the region lives inside the header.
        let region_ref: &R = unsafe { &(*hdr).region };
        let mut off = objs_off;
        let mut batch = [ObjPtr(NonNull::dangling()); 64];
        let mut nb = 0;
        let mut end = objs_off;
        for index in 0..cfg.count {
            off = next_fit(region_ref, off, stride).unwrap_or_else(|| unreachable!("counted"));
            let iova = region_ref
                .iova_at(off)
                .unwrap_or_else(|| unreachable!("inside the region"));
            // SAFETY: [off, off + stride) is inside the region, owned by the pool, unaliased.
            let obj = unsafe { core::slice::from_raw_parts_mut(base.add(off), cfg.elt_size) };
            init(ObjInit {
                index,
                obj,
                iova,
                pool: core_ptr,
            });
            // SAFETY: as above; base + off is non-null.
            let p = ObjPtr(unsafe { NonNull::new_unchecked(base.add(off)) });
            #[cfg(feature = "checked")]
            // SAFETY: the trailer is inside the object's stride.
            unsafe {
                cookie_ptr(p, pool.core().elt_size).write(COOKIE_FREE)
            };
            batch[nb] = p;
            nb += 1;
            if nb == batch.len() {
                pool.core().ring.enqueue_bulk(&batch[..nb]);
                nb = 0;
            }
            off += stride;
            end = off;
        }
        pool.core().ring.enqueue_bulk(&batch[..nb]);
        // SAFETY: nobody else has the header yet.
        unsafe {
            (*hdr).core.obj_end = base as usize + end;
            (*hdr).core.uniform = end - objs_off == cfg.count * stride;
        }
        pool
    }

    /// Rebuilds a handle from a core pointer an object recorded (an mbuf's `pool` field),
    /// taking a new reference.
    ///
    /// # Safety
    /// `core` must come from [`Mempool::core_ptr`] of a pool that is still alive.
    ///
    /// If every handle may already be gone, no other thread may be dropping one: a drop that
    /// took the count to zero and is still checking the ring could free the region after this
    /// handle's own last drop did (a double free). The mbuf layer therefore does not call it;
    /// only tests do, to reclaim an orphaned pool.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) unsafe fn from_core(core: NonNull<PoolCore>) -> Mempool {
        // SAFETY: caller contract.
        unsafe { core.as_ref() }
            .refs
            .fetch_add(1, Ordering::Relaxed);
        Mempool { core }
    }

    /// The pool header's address, as recorded in objects (an mbuf's `pool` field).
    #[inline(always)]
    pub(crate) fn core_ptr(&self) -> NonNull<PoolCore> {
        self.core
    }

    #[inline(always)]
    pub(crate) fn core(&self) -> &PoolCore {
        // SAFETY: the core lives as long as any handle (refcount).
        unsafe { self.core.as_ref() }
    }

    /// Whether `self` and `other` are handles to the same pool.
    #[inline(always)]
    pub fn same_pool(&self, other: &Mempool) -> bool {
        self.core == other.core
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// Number of objects.
    #[inline]
    pub fn size(&self) -> usize {
        self.core().count
    }

    /// Bytes per object (as configured).
    #[inline]
    pub fn elt_size(&self) -> usize {
        self.core().elt_size
    }

    /// Distance between consecutive objects in memory (object + padding + checked trailer).
    pub fn stride(&self) -> usize {
        self.core().stride
    }

    /// The pool-wide data given at creation ([`MempoolConfig::user`]).
    #[inline(always)]
    pub fn user(&self) -> [u64; 2] {
        self.core().user
    }

    /// Objects in the pool's ring now (not counting caches).
    pub fn available(&self) -> usize {
        self.core().ring.count()
    }

    /// Objects sitting in caches now (a snapshot; exact when no cache is in use meanwhile).
    pub fn in_caches(&self) -> usize {
        self.core()
            .cache_slots
            .iter()
            .map(|s| s.len.load(Ordering::Relaxed))
            .sum()
    }

    /// Objects held by the application now: size − available − in caches (a snapshot).
    pub fn in_use(&self) -> usize {
        self.size()
            .saturating_sub(self.available())
            .saturating_sub(self.in_caches())
    }

    /// Where the objects lie: the first one's address and the bytes up to the end of the last
    /// — the memory a device must reach to use them (a vhost-user transport checks it against
    /// the memory it shares with its backend).
    pub fn objects(&self) -> (VirtAddr, usize) {
        let core = self.core();
        (VirtAddr::new(core.obj_start), core.obj_end - core.obj_start)
    }

    /// Whether `p` lies inside the pool's object area (from the first object's start to the
    /// last one's end; [`objects`](Self::objects)). A put checks more: that `p` can be an
    /// object's start.
    pub fn contains(&self, p: ObjPtr) -> bool {
        self.core().contains(p.as_ptr() as usize)
    }

    /// The IOVA of object `p`, or `None` if `p` is not inside the pool's objects.
    #[inline]
    pub fn iova_of(&self, p: ObjPtr) -> Option<Iova> {
        let (core, addr) = (self.core(), p.as_ptr() as usize);
        if !core.contains(addr) {
            return None;
        }
        match core.iova_delta {
            Some(d) => Some(Iova::new((addr as u64).wrapping_add(d))),
            // SAFETY: self.core is the core of a live header of the type iova_fn was made for.
            // It is the handle's pointer, not one made from `&PoolCore`: only it carries the
            // provenance of the whole header, which iova_fn needs to reach the region handle
            // stored after the core (Miri's Stacked Borrows rejects the other).
            None => unsafe { (core.iova_fn)(self.core, addr - core.region_va) },
        }
    }

    /// Gets one object, or `None` if the pool is empty.
    #[inline]
    pub fn get(&self) -> Option<ObjPtr> {
        let mut one = [ObjPtr(NonNull::dangling())];
        self.get_bulk(&mut one).then_some(one[0])
    }

    /// Fills all of `out` with objects, or takes none and returns false.
    #[inline]
    pub fn get_bulk(&self, out: &mut [ObjPtr]) -> bool {
        let ok = self.core().ring.dequeue_bulk(out);
        if ok {
            self.core().mark_got(out);
        }
        ok
    }

    /// Returns one object.
    ///
    /// # Safety
    /// `obj` came from this pool's `get*` (or a cache of it) and is not used after this call.
    /// With the `checked` feature a violation is detected and panics with the reason.
    #[inline]
    pub unsafe fn put(&self, obj: ObjPtr) {
        // SAFETY: forwarded caller contract.
        unsafe { self.put_bulk(core::slice::from_ref(&obj)) }
    }

    /// Returns objects.
    ///
    /// # Safety
    /// As for [`put`](Self::put), for each object.
    #[inline]
    pub unsafe fn put_bulk(&self, objs: &[ObjPtr]) {
        self.core().check_put_or_panic(objs);
        self.core().ring_put(objs);
    }

    /// Returns objects after checking each one really is a free-able object of this pool (its
    /// address always; with the `checked` feature also its cookie, which catches double puts).
    /// On error nothing is returned.
    ///
    /// # Safety
    /// The objects are not used after a successful call.
    pub unsafe fn try_put_bulk(&self, objs: &[ObjPtr]) -> Result<(), MempoolError> {
        self.core().check_put(objs)?;
        self.core().ring_put(objs);
        Ok(())
    }

    /// A cache of `size` objects for one core or queue (see [`MempoolCache`]).
    pub fn cache(&self, size: usize) -> Result<MempoolCache, MempoolError> {
        MempoolCache::new(self.clone(), size)
    }
}

/// Next offset ≥ `off` where an object of `stride` bytes is contiguous, if any.
fn next_fit<R: DmaRegion>(region: &R, mut off: usize, stride: usize) -> Option<usize> {
    loop {
        if off.checked_add(stride)? > region.len() {
            return None;
        }
        let run = region.contiguous_from(off);
        if run >= stride {
            return Some(off);
        }
        if run == 0 {
            return None;
        }
        off += run;
    }
}

fn count_placeable<R: DmaRegion>(region: &R, objs_off: usize, stride: usize, want: usize) -> usize {
    let mut off = objs_off;
    let mut n = 0;
    while n < want {
        match next_fit(region, off, stride) {
            Some(o) => {
                n += 1;
                off = o + stride;
            }
            None => break,
        }
    }
    n
}

#[cfg(feature = "checked")]
#[inline(always)]
fn cookie_ptr(p: ObjPtr, elt_size: usize) -> *mut u64 {
    p.as_ptr().wrapping_add(round_up(elt_size, 8)).cast::<u64>()
}

impl PoolCore {
    #[inline(always)]
    fn contains(&self, addr: usize) -> bool {
        addr >= self.obj_start && addr < self.obj_end
    }

    /// Whether a put may take `addr` as an object: a whole object fits from it to the end of
    /// the object area and, where the objects lie evenly, it is on their grid. (In a pool
    /// whose placement skipped a contiguity gap, an address inside an object still passes;
    /// the checked mode's cookie catches it there.)
    #[inline]
    fn may_be_object(&self, addr: usize) -> bool {
        addr >= self.obj_start
            && addr
                .checked_add(self.stride)
                .is_some_and(|end| end <= self.obj_end)
            && (!self.uniform || (addr - self.obj_start).is_multiple_of(self.stride))
    }

    /// Puts objects into the ring. Every object has a slot (capacity == count), so this
    /// cannot fail for the pool's own objects.
    #[inline(always)]
    pub(crate) fn ring_put(&self, objs: &[ObjPtr]) {
        let ok = self.ring.enqueue_bulk(objs);
        debug_assert!(
            ok,
            "mempool ring overflow: more objects put than the pool has"
        );
    }

    #[inline(always)]
    pub(crate) fn ring_get(&self, out: &mut [ObjPtr]) -> bool {
        self.ring.dequeue_bulk(out)
    }

    /// Claims a free cache slot.
    pub(crate) fn claim_cache_slot(&self) -> Option<usize> {
        self.cache_slots.iter().position(|s| {
            s.claimed
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Frees a cache slot (the cache is empty).
    pub(crate) fn release_cache_slot(&self, slot: usize) {
        if let Some(s) = self.cache_slots.get(slot) {
            s.len.store(0, Ordering::Relaxed);
            s.claimed.store(false, Ordering::Release);
        }
    }

    /// Validates a put; always checks addresses, and cookies in checked mode (marking the
    /// objects free on success; on failure every cookie is as it was).
    pub(crate) fn check_put(&self, objs: &[ObjPtr]) -> Result<(), MempoolError> {
        for (i, &p) in objs.iter().enumerate() {
            if let Err(e) = self.check_put_one(p) {
                // Objects before this one were marked free as they passed: mark them in use
                // again, since none of the batch is put.
                #[cfg(feature = "checked")]
                for &q in &objs[..i] {
                    // SAFETY: q passed check_put_one, so its trailer is inside the region.
                    unsafe { cookie_ptr(q, self.elt_size).write_unaligned(COOKIE_USED) };
                }
                #[cfg(not(feature = "checked"))]
                let _ = i;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Validates one object of a put and, in checked mode, marks it free at once: so the same
    /// object twice in one batch is a double put too, not two passes of the same check.
    #[inline]
    fn check_put_one(&self, p: ObjPtr) -> Result<(), MempoolError> {
        let a = p.as_ptr() as usize;
        if !self.may_be_object(a) {
            return Err(MempoolError::ForeignObject { addr: a });
        }
        #[cfg(feature = "checked")]
        {
            let cp = cookie_ptr(p, self.elt_size);
            // SAFETY: a whole stride from the address lies inside the object area
            // (may_be_object), and the trailer is inside the stride.
            match unsafe { cp.read_unaligned() } {
                // SAFETY: as above.
                COOKIE_USED => unsafe { cp.write_unaligned(COOKIE_FREE) },
                COOKIE_FREE => return Err(MempoolError::DoublePut { addr: a }),
                _ => return Err(MempoolError::Corrupt { addr: a }),
            }
        }
        Ok(())
    }

    /// The fast put's check: nothing without the `checked` feature; with it, a violation
    /// panics with the reason (the objects are not put back).
    #[inline(always)]
    pub(crate) fn check_put_or_panic(&self, objs: &[ObjPtr]) {
        #[cfg(feature = "checked")]
        if let Err(e) = self.check_put(objs) {
            panic!("mempool {}: {e}", self.name);
        }
        #[cfg(not(feature = "checked"))]
        let _ = objs;
    }

    /// Marks objects in use (checked mode); panics if one was not free, which means the pool
    /// memory was corrupted.
    #[inline(always)]
    pub(crate) fn mark_got(&self, objs: &[ObjPtr]) {
        #[cfg(feature = "checked")]
        for &p in objs {
            let cp = cookie_ptr(p, self.elt_size);
            // SAFETY: objects from the ring are this pool's, their trailer is inside the region.
            let c = unsafe { cp.read_unaligned() };
            if c != COOKIE_FREE {
                panic!(
                    "mempool {}: {}",
                    self.name,
                    MempoolError::Corrupt {
                        addr: p.as_ptr() as usize
                    }
                );
            }
            // SAFETY: as above.
            unsafe { cp.write_unaligned(COOKIE_USED) };
        }
        #[cfg(not(feature = "checked"))]
        let _ = objs;
    }
}

impl Clone for Mempool {
    fn clone(&self) -> Self {
        self.core().refs.fetch_add(1, Ordering::Relaxed);
        Mempool { core: self.core }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        let core = self.core();
        if core.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        crate::sync::fence_acquire();
        // Caches hold handles, so none exists now; every object must be back in the ring.
        if core.ring.count() != core.count {
            // Objects are still out: freeing would leave them dangling. Leak the region.
            return;
        }
        // SAFETY: last handle, all objects home: nobody can reach the region any more.
        unsafe { (core.drop_fn)(self.core) };
    }
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name())
            .field("size", &self.size())
            .field("elt_size", &self.elt_size())
            .field("available", &self.available())
            .field("in_caches", &self.in_caches())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::test_dma::TestDma;
    use std::vec::Vec;

    fn pool(os: &TestDma, count: usize, elt: usize) -> Mempool {
        Mempool::create(os, &MempoolConfig::new("t", count, elt), |_| {}).unwrap()
    }

    #[test]
    fn get_put_counts_and_distinct_objects() {
        let os = TestDma::contiguous();
        let p = pool(&os, 100, 200);
        assert_eq!((p.size(), p.available(), p.in_use()), (100, 100, 0));
        let mut objs = [ObjPtr(NonNull::dangling()); 100];
        assert!(p.get_bulk(&mut objs));
        assert!(p.get().is_none());
        assert_eq!(p.in_use(), 100);
        let mut sorted: Vec<usize> = objs.iter().map(|o| o.as_ptr() as usize).collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 100, "objects are distinct");
        for w in sorted.windows(2) {
            assert!(w[1] - w[0] >= 200, "objects do not overlap");
        }
        // SAFETY: objects from this pool, unused afterwards.
        unsafe { p.put_bulk(&objs) };
        assert_eq!(p.available(), 100);
    }

    #[test]
    fn strides_spread_over_an_odd_number_of_lines_unless_told_not_to() {
        let os = TestDma::contiguous();
        let trailer = if cfg!(feature = "checked") { 8 } else { 0 };
        let spread = |elt: usize| {
            let mut cfg = MempoolConfig::new("s", 4, elt);
            cfg.spread = true;
            Mempool::create(&os, &cfg, |_| {}).unwrap().stride()
        };
        // 36 lines of object: padded to 37; 37 lines: kept; 100 bytes: 2 lines, padded to 3.
        for (elt, lines) in [(2304 - trailer, 37), (2368 - trailer, 37), (100, 3)] {
            assert_eq!(spread(elt), 64 * lines, "elt {elt}");
        }
        assert_eq!(
            pool(&os, 4, 2304 - trailer).stride(),
            2304,
            "off by default"
        );
        let mut cfg = MempoolConfig::new("n", 4, 2304 - trailer);
        cfg.spread = true;
        // Another alignment: no padding (an odd line count would break it).
        cfg.align = 128;
        assert_eq!(Mempool::create(&os, &cfg, |_| {}).unwrap().stride(), 2304);
    }

    #[test]
    fn objects_are_aligned_and_iova_translates() {
        let os = TestDma::contiguous();
        let mut seen = Vec::new();
        let p = Mempool::create(&os, &MempoolConfig::new("a", 10, 100), |i| {
            assert!(i.obj.iter().all(|&b| b == 0));
            seen.push((i.index, i.obj.as_ptr() as usize, i.iova));
        })
        .unwrap();
        assert_eq!(seen.len(), 10);
        for (idx, va, iova) in &seen {
            assert_eq!(va % 64, 0);
            assert_ne!(iova.get(), *va as u64, "IOVA differs from VA in tests");
            let o = ObjPtr::new(NonNull::new(*va as *mut u8).unwrap());
            assert_eq!(p.iova_of(o), Some(*iova), "object {idx}");
        }
        let outside = ObjPtr::new(NonNull::from(&seen).cast());
        assert_eq!(p.iova_of(outside), None);
        assert!(!p.contains(outside));
    }

    #[test]
    fn scattered_region_objects_never_straddle_pages() {
        let os = TestDma::scattered(4096);
        let mut iovas = Vec::new();
        // 1000-byte objects: stride 1024, 4 per page, but the header and ring shift them.
        let p = Mempool::create(&os, &MempoolConfig::new("s", 50, 1000), |i| {
            iovas.push((i.obj.as_ptr() as usize, i.iova, i.obj.len()));
        })
        .unwrap();
        for &(va, iova, len) in &iovas {
            assert_eq!(va / 4096, (va + len - 1) / 4096, "object inside one page");
            let o = ObjPtr::new(NonNull::new(va as *mut u8).unwrap());
            assert_eq!(p.iova_of(o), Some(iova));
        }
        assert_eq!(p.available(), 50);
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let os = TestDma::contiguous();
        let e = |c: MempoolConfig| Mempool::create(&os, &c, |_| {}).unwrap_err();
        assert!(matches!(
            e(MempoolConfig::new("x", 0, 8)),
            MempoolError::BadConfig { .. }
        ));
        assert!(matches!(
            e(MempoolConfig::new("x", 8, 0)),
            MempoolError::BadConfig { .. }
        ));
        let mut c = MempoolConfig::new("x", 8, 8);
        c.align = 12;
        assert!(matches!(e(c), MempoolError::BadConfig { .. }));
        let long = "a-name-that-is-far-longer-than-thirty-one-bytes";
        assert!(matches!(
            e(MempoolConfig::new(long, 8, 8)),
            MempoolError::BadConfig { .. }
        ));
        let p = pool(&os, 8, 8);
        assert_eq!(
            p.cache(1).unwrap_err(),
            MempoolError::BadCacheSize { size: 1, max: 8 }
        );
        assert_eq!(
            p.cache(9).unwrap_err(),
            MempoolError::BadCacheSize { size: 9, max: 8 }
        );
    }

    #[test]
    fn foreign_put_is_refused() {
        let os = TestDma::contiguous();
        let p = pool(&os, 4, 64);
        let q = pool(&os, 4, 64);
        let o = q.get().unwrap();
        // SAFETY: try_put_bulk validates; o is not used after a successful put.
        let e = unsafe { p.try_put_bulk(&[o]) }.unwrap_err();
        assert_eq!(
            e,
            MempoolError::ForeignObject {
                addr: o.as_ptr() as usize
            }
        );
        assert_eq!(p.available(), 4, "nothing put on error");
        // SAFETY: o belongs to q.
        unsafe { q.try_put_bulk(&[o]) }.unwrap();
        assert_eq!(q.available(), 4);
    }

    #[test]
    fn put_refuses_addresses_that_are_not_object_starts() {
        let os = TestDma::contiguous();
        let p = pool(&os, 4, 64);
        let o = p.get().unwrap();
        let (start, len) = p.objects();
        let end = start.get() + len;
        let at = |a: usize| ObjPtr::new(NonNull::new(a as *mut u8).unwrap());
        // Inside the last object, whose checked-mode cookie would lie past the end of the
        // region, and inside a held object.
        for a in [end - 8, end - 1, o.as_ptr() as usize + 8] {
            // SAFETY: try_put_bulk validates; none of these is an object, nothing is put.
            let e = unsafe { p.try_put_bulk(&[at(a)]) }.unwrap_err();
            assert_eq!(e, MempoolError::ForeignObject { addr: a });
        }
        assert_eq!(p.available(), 3, "nothing put on error");
        // SAFETY: o is from p.
        unsafe { p.try_put_bulk(&[o]) }.unwrap();
        assert_eq!(p.available(), 4);
    }

    #[cfg(feature = "checked")]
    #[test]
    fn checked_mode_catches_double_put_and_interior_pointers() {
        let os = TestDma::contiguous();
        let p = pool(&os, 4, 64);
        let o = p.get().unwrap();
        // SAFETY: o is from p.
        unsafe { p.try_put_bulk(&[o]) }.unwrap();
        // SAFETY: the second put is the bug being detected; nothing is put.
        let e = unsafe { p.try_put_bulk(&[o]) }.unwrap_err();
        assert_eq!(
            e,
            MempoolError::DoublePut {
                addr: o.as_ptr() as usize
            }
        );
        let o = p.get().unwrap();
        let inner = ObjPtr::new(NonNull::new(o.as_ptr().wrapping_add(8)).unwrap());
        // SAFETY: detection of a bad pointer; nothing is put.
        let e = unsafe { p.try_put_bulk(&[inner]) }.unwrap_err();
        assert!(matches!(e, MempoolError::ForeignObject { .. }), "{e}");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut c = p.cache(2).unwrap();
            // SAFETY: o is from p.
            unsafe { c.put(o) };
            // SAFETY: deliberate double put through the fast path: must panic.
            unsafe { c.put(o) };
        }));
        let msg = r.unwrap_err();
        let msg = msg.downcast_ref::<std::string::String>().unwrap();
        assert!(msg.contains("double free"), "{msg}");
    }

    #[cfg(feature = "checked")]
    #[test]
    fn checked_mode_catches_a_double_put_within_one_batch() {
        let os = TestDma::contiguous();
        let p = pool(&os, 4, 64);
        let (a, b) = (p.get().unwrap(), p.get().unwrap());
        for batch in [[a, a, b], [a, b, a], [b, a, a]] {
            // SAFETY: the repeated object is the bug being detected; nothing is put.
            let e = unsafe { p.try_put_bulk(&batch) }.unwrap_err();
            assert_eq!(
                e,
                MempoolError::DoublePut {
                    addr: a.as_ptr() as usize
                },
                "{batch:?}"
            );
            assert_eq!(p.available(), 2, "nothing put on error");
        }
        // The refused batches left both objects in use: one correct put of each works.
        // SAFETY: a and b are from p, put once.
        unsafe { p.try_put_bulk(&[a, b]) }.unwrap();
        assert_eq!(p.available(), 4);
        let a = p.get().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut c = p.cache(4).unwrap();
            // SAFETY: deliberate double put in one call through the fast path: must panic.
            unsafe { c.put_bulk(&[a, a]) };
        }));
        let msg = r.unwrap_err();
        let msg = msg.downcast_ref::<std::string::String>().unwrap();
        assert!(msg.contains("double free"), "{msg}");
        // The refused put left `a` in use.
        // SAFETY: a is from p, put once.
        unsafe { p.put(a) };
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn cache_behaviour_matches_dpdk() {
        let os = TestDma::contiguous();
        let p = pool(&os, 1024, 64);
        let mut c = p.cache(64).unwrap();
        // Underflow: refill half (32), serve 1.
        let o = c.get().unwrap();
        assert_eq!((c.len(), p.available(), p.in_caches()), (31, 1024 - 32, 31));
        // SAFETY: o from p.
        unsafe { c.put(o) };
        assert_eq!(c.len(), 32);
        // Bypass: more than half goes straight to the ring.
        let mut big = [ObjPtr(NonNull::dangling()); 33];
        assert!(c.get_bulk(&mut big));
        assert_eq!((c.len(), p.available()), (32, 1024 - 32 - 33));
        // SAFETY: from p.
        unsafe { c.put_bulk(&big) };
        assert_eq!((c.len(), p.available()), (32, 1024 - 32));
        // Fill to capacity, then overflow flushes the coldest half.
        let mut more = [ObjPtr(NonNull::dangling()); 32];
        assert!(p.get_bulk(&mut more));
        // SAFETY: from p.
        unsafe { c.put_bulk(&more) };
        assert_eq!(c.len(), 64);
        let hot = more[31];
        let x = p.get().unwrap();
        // SAFETY: from p.
        unsafe { c.put(x) };
        assert_eq!(c.len(), 33, "64 - 32 flushed + 1");
        assert_eq!(c.get(), Some(x), "hottest first");
        assert_eq!(c.get(), Some(hot), "the hot half stayed");
        assert_eq!(p.in_use(), 2);
        assert_eq!(p.in_use() + p.available() + p.in_caches(), 1024);
        // SAFETY: from p.
        unsafe { p.put_bulk(&[x, hot]) };
        drop(c);
        assert_eq!(p.available(), 1024, "the cache returned everything on drop");
    }

    #[test]
    fn refill_falls_back_when_ring_is_short() {
        let os = TestDma::contiguous();
        let p = pool(&os, 10, 64);
        let mut c = p.cache(8).unwrap();
        let mut held = [ObjPtr(NonNull::dangling()); 8];
        assert!(p.get_bulk(&mut held));
        // 2 left in the ring, cache empty: refill of 4 fails, a get of 2 still succeeds.
        let mut two = [ObjPtr(NonNull::dangling()); 2];
        assert!(c.get_bulk(&mut two));
        assert!(c.get().is_none());
        // SAFETY: from p.
        unsafe {
            c.put_bulk(&two);
            c.put_bulk(&held);
        }
        drop(c);
        assert_eq!(p.available(), 10);
    }

    #[test]
    fn too_many_caches() {
        let os = TestDma::contiguous();
        let p = pool(&os, 64, 8);
        let caches: Vec<_> = (0..MAX_CACHES).map(|_| p.cache(2).unwrap()).collect();
        assert_eq!(p.cache(2).unwrap_err(), MempoolError::TooManyCaches);
        drop(caches);
        assert!(p.cache(2).is_ok());
    }

    #[test]
    fn last_handle_frees_only_when_all_objects_are_home() {
        let os = TestDma::contiguous();
        let p = pool(&os, 4, 8);
        let q = p.clone();
        let o = q.get().unwrap();
        drop(p);
        // Still usable through q.
        // SAFETY: from q.
        unsafe { q.put(o) };
        assert_eq!(q.available(), 4);
        drop(q); // frees the region (Miri checks no leak/UAF here)
    }

    #[test]
    fn two_threads_with_caches_conserve_objects() {
        let os = TestDma::contiguous();
        let p = pool(&os, 512, 64);
        let iters = if cfg!(miri) { 50 } else { 20_000 };
        std::thread::scope(|s| {
            for t in 0..2 {
                let p = p.clone();
                s.spawn(move || {
                    let mut c = p.cache(32).unwrap();
                    let mut held = Vec::new();
                    for i in 0..iters {
                        let n = 1 + (i * 7 + t) % 40;
                        let mut buf = [ObjPtr(NonNull::dangling()); 40];
                        if c.get_bulk(&mut buf[..n]) {
                            held.extend_from_slice(&buf[..n]);
                        }
                        if held.len() > 100 || i % 3 == 0 {
                            // SAFETY: every held object came from p.
                            unsafe { c.put_bulk(&held) };
                            held.clear();
                        }
                    }
                    // SAFETY: as above.
                    unsafe { c.put_bulk(&held) };
                });
            }
        });
        assert_eq!(p.available(), 512);
        assert_eq!(p.in_caches(), 0);
    }
}
