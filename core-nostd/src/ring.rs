//! The lock-free ring, with `rte_ring` semantics.
//!
//! A fixed, power-of-two number of slots indexed by free-running `u32` head/tail counters, one
//! pair for producers and one for consumers, each on its own cache lines. Enqueue moves the
//! producer head to reserve slots, copies the objects in, then publishes them by moving the
//! producer tail (Release); dequeue does the same on the consumer side, reading the producer
//! tail with Acquire. With several producers the head moves by compare-and-swap and each
//! producer waits for the ones before it to publish, so the tail moves in order.
//!
//! The sync mode of each side is a type parameter ([`Single`] or [`Multi`]):
//! - a [`Multi`] side is used directly through `&self` ([`Ring::enqueue_bulk`], …);
//! - a [`Single`] side has no such methods: the one producer (or consumer) claims a
//!   [`Producer`] (or [`Consumer`]) handle, and only the handle can enqueue (or dequeue). So an
//!   SP/SC ring cannot be used as if it were MP/MC, and two threads cannot both act as the
//!   single producer: the second claim fails. The single side also keeps a private copy of the
//!   other side's tail and reads the shared one only when that copy says the ring is full (or
//!   empty), which saves a cache-line transfer per operation between two cores.
//!
//! Operations come in DPDK's three shapes: *bulk* (all `n` or nothing), *burst* (as many as fit,
//! up to `n`) and single object. The single side also has a zero-copy API
//! ([`Producer::enqueue_zc_start`], [`Consumer::dequeue_zc_start`]) that lends out the slots
//! themselves.
//!
//! Storage is a [`Slots`] implementation: [`Inline`] (a const-generic array inside the ring),
//! [`RawSlots`] (caller-provided memory, e.g. a DMA region) or, with the `alloc` feature,
//! [`BoxedSlots`].

use crate::sync::{spin_hint, AtomicBool, AtomicU32, CachePadded, Ordering};
use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ops::Deref;
use core::ptr::NonNull;

/// Largest slot count a ring may have (DPDK's `RTE_RING_SZ_MASK` + 1).
pub const MAX_SIZE: usize = 1 << 31;

mod sealed {
    pub trait Sealed {}
}

/// A side's sync mode: [`Single`] or [`Multi`].
pub trait SyncMode: sealed::Sealed + Send + Sync + 'static {
    /// Whether only one thread acts on this side.
    const SINGLE: bool;
}

/// One thread acts on this side (SP or SC), through a claimed handle.
#[derive(Debug)]
pub enum Single {}
/// Any number of threads act on this side (MP or MC), through `&self`.
#[derive(Debug)]
pub enum Multi {}

impl sealed::Sealed for Single {}
impl sealed::Sealed for Multi {}
impl SyncMode for Single {
    const SINGLE: bool = true;
}
impl SyncMode for Multi {
    const SINGLE: bool = false;
}

/// Why a ring could not be made or a handle claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingError {
    /// The slot count is not a power of two.
    SizeNotPowerOfTwo {
        /// The slot count given.
        size: usize,
    },
    /// The slot count is zero or larger than [`MAX_SIZE`].
    SizeOutOfRange {
        /// The slot count given.
        size: usize,
    },
    /// The requested capacity does not fit in the slots.
    CapacityTooLarge {
        /// Capacity asked for.
        capacity: usize,
        /// Slots available.
        size: usize,
    },
    /// The single producer handle is already claimed.
    ProducerClaimed,
    /// The single consumer handle is already claimed.
    ConsumerClaimed,
    /// Caller-provided memory is null or misaligned for the element type.
    BadMemory,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RingError::SizeNotPowerOfTwo { size } => write!(
                f,
                "ring size {size} is not a power of two; use {} slots, or ask for an exact \
                 capacity with Ring::with_capacity",
                size.checked_next_power_of_two().unwrap_or(MAX_SIZE)
            ),
            RingError::SizeOutOfRange { size } => {
                write!(f, "ring size {size} is out of range 1..={MAX_SIZE}")
            }
            RingError::CapacityTooLarge { capacity, size } => write!(
                f,
                "capacity {capacity} does not fit in {size} slots; give the ring at least \
                 {} slots",
                (capacity as u64 + 1).next_power_of_two()
            ),
            RingError::ProducerClaimed => write!(
                f,
                "the ring's single producer is already claimed; drop that handle first or use \
                 a multi-producer ring"
            ),
            RingError::ConsumerClaimed => write!(
                f,
                "the ring's single consumer is already claimed; drop that handle first or use \
                 a multi-consumer ring"
            ),
            RingError::BadMemory => {
                write!(f, "ring memory is null or not aligned for the element type")
            }
        }
    }
}

impl core::error::Error for RingError {}

/// Where a ring keeps its slots.
///
/// # Safety
/// `len()` is a constant power of two ≥ 1, and `base()` points to `len()` properly aligned,
/// writable `T`-sized slots that stay valid and unaliased (except through the ring) for the
/// storage's life.
pub unsafe trait Slots<T>: Send + Sync {
    /// Number of slots.
    fn len(&self) -> usize;
    /// Pointer to the first slot.
    fn base(&self) -> *mut T;
    /// Whether there are no slots (never, for valid storage).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes slot `idx` (loom builds only: lets the model checker track slot accesses).
    ///
    /// # Safety
    /// `idx < len()` and the slot is reserved for the caller.
    #[cfg(loom)]
    #[doc(hidden)]
    unsafe fn loom_write(&self, idx: usize, v: T) {
        // SAFETY: caller contract.
        unsafe { self.base().add(idx).write(v) }
    }

    /// Reads slot `idx` (loom builds only).
    ///
    /// # Safety
    /// `idx < len()`, the slot is reserved for the caller and initialised.
    #[cfg(loom)]
    #[doc(hidden)]
    unsafe fn loom_read(&self, idx: usize) -> T {
        // SAFETY: caller contract.
        unsafe { self.base().add(idx).read() }
    }
}

/// Slots inside the ring itself: `N` must be a power of two.
pub struct Inline<T, const N: usize> {
    #[cfg(not(loom))]
    cells: core::cell::UnsafeCell<[MaybeUninit<T>; N]>,
    // Under loom each slot is a tracked cell, so the model checker sees data races on slots.
    #[cfg(loom)]
    cells: [loom::cell::UnsafeCell<MaybeUninit<T>>; N],
}

impl<T, const N: usize> Inline<T, N> {
    /// Uninitialised slots.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            cells: core::cell::UnsafeCell::new([const { MaybeUninit::uninit() }; N]),
        }
    }

    /// Uninitialised slots.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            cells: core::array::from_fn(|_| loom::cell::UnsafeCell::new(MaybeUninit::uninit())),
        }
    }
}

impl<T, const N: usize> Default for Inline<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the ring's head/tail protocol gives each slot to one thread at a time; the cells are
// only reached through the ring.
unsafe impl<T: Send, const N: usize> Sync for Inline<T, N> {}

#[cfg(not(loom))]
// SAFETY: N slots of T live inside self; N is checked to be a power of two by Ring::with_slots.
unsafe impl<T: Send, const N: usize> Slots<T> for Inline<T, N> {
    #[inline(always)]
    fn len(&self) -> usize {
        N
    }
    #[inline(always)]
    fn base(&self) -> *mut T {
        self.cells.get().cast()
    }
}

#[cfg(loom)]
// SAFETY: under loom, slot access goes through loom_write/loom_read, which use the tracked
// cells; base() is only used by the zero-copy API, which loom builds leave out.
unsafe impl<T: Send, const N: usize> Slots<T> for Inline<T, N> {
    fn len(&self) -> usize {
        N
    }
    fn base(&self) -> *mut T {
        core::ptr::null_mut()
    }
    unsafe fn loom_write(&self, idx: usize, v: T) {
        // SAFETY: the slot is reserved for this thread; loom checks that claim.
        self.cells[idx].with_mut(|p| unsafe { (*p).write(v) });
    }
    unsafe fn loom_read(&self, idx: usize) -> T {
        // SAFETY: the slot is reserved for this thread and was written by a producer.
        self.cells[idx].with(|p| unsafe { (*p).assume_init_read() })
    }
}

/// Slots in caller-provided memory, such as a DMA region.
pub struct RawSlots<T> {
    base: NonNull<T>,
    len: usize,
}

impl<T> RawSlots<T> {
    /// Slots at `base`, `len` of them.
    ///
    /// # Safety
    /// `base` must point to `len` writable, `T`-aligned slots that outlive the returned value
    /// (and every ring built on it) and are reached by nothing else meanwhile.
    pub unsafe fn new(base: NonNull<T>, len: usize) -> Result<Self, RingError> {
        if !(base.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()) {
            return Err(RingError::BadMemory);
        }
        Ok(Self { base, len })
    }

    /// Bytes of memory `len` slots of `T` take.
    pub const fn bytes_for(len: usize) -> usize {
        len * core::mem::size_of::<T>()
    }
}

// SAFETY: the memory is owned by the ring for its life (constructor contract); the head/tail
// protocol gives each slot to one thread at a time.
unsafe impl<T: Send> Send for RawSlots<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for RawSlots<T> {}

// SAFETY: the constructor's contract provides the promised memory; the power-of-two length is
// checked by Ring::with_slots.
unsafe impl<T: Send> Slots<T> for RawSlots<T> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }
    #[inline(always)]
    fn base(&self) -> *mut T {
        self.base.as_ptr()
    }
}

/// Slots on the heap.
#[cfg(feature = "alloc")]
pub struct BoxedSlots<T> {
    cells: alloc::boxed::Box<[core::cell::UnsafeCell<MaybeUninit<T>>]>,
}

#[cfg(feature = "alloc")]
impl<T> BoxedSlots<T> {
    /// `len` uninitialised slots.
    pub fn new(len: usize) -> Self {
        let mut v = alloc::vec::Vec::with_capacity(len);
        v.resize_with(len, || core::cell::UnsafeCell::new(MaybeUninit::uninit()));
        Self {
            cells: v.into_boxed_slice(),
        }
    }
}

#[cfg(feature = "alloc")]
// SAFETY: the head/tail protocol gives each slot to one thread at a time.
unsafe impl<T: Send> Sync for BoxedSlots<T> {}

#[cfg(feature = "alloc")]
// SAFETY: `len` cells of T live in the box, which the ring owns; UnsafeCell<MaybeUninit<T>> has
// T's layout, so the cells form a T array.
unsafe impl<T: Send> Slots<T> for BoxedSlots<T> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.cells.len()
    }
    #[inline(always)]
    fn base(&self) -> *mut T {
        self.cells.as_ptr() as *mut T
    }
}

/// One side's counters. `head` is where the next operation on this side starts; `tail` is how
/// far the other side may go. `other_tail` is the single side's private copy of the other
/// side's tail (unused in multi mode); `claimed` marks a claimed single handle.
#[derive(Debug)]
struct HeadTail {
    head: AtomicU32,
    tail: AtomicU32,
    other_tail: AtomicU32,
    claimed: AtomicBool,
}

impl HeadTail {
    fn new(other_tail: u32) -> Self {
        Self {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            other_tail: AtomicU32::new(other_tail),
            claimed: AtomicBool::new(false),
        }
    }
}

/// Variance/auto-trait marker for the type parameters a ring or handle only names.
type Marker<A, B, C> = PhantomData<fn() -> (A, B, C)>;

/// How many objects an operation moves when fewer than asked are possible.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behavior {
    /// All or nothing.
    Fixed,
    /// As many as possible.
    Variable,
}

/// A lock-free ring of `T`, with producer sync mode `P`, consumer sync mode `C` and storage `S`.
#[repr(C)]
pub struct Ring<T, P: SyncMode, C: SyncMode, S: Slots<T>> {
    prod: CachePadded<HeadTail>,
    cons: CachePadded<HeadTail>,
    mask: u32,
    capacity: u32,
    slots: S,
    _marker: Marker<T, P, C>,
}

/// A single-producer, single-consumer ring.
pub type SpscRing<T, S> = Ring<T, Single, Single, S>;
/// A multi-producer, multi-consumer ring.
pub type MpmcRing<T, S> = Ring<T, Multi, Multi, S>;

// SAFETY: all shared state is atomics plus slots handed out one thread at a time by the
// head/tail protocol; elements cross threads, hence T: Send.
unsafe impl<T: Send, P: SyncMode, C: SyncMode, S: Slots<T>> Sync for Ring<T, P, C, S> {}
// SAFETY: as above.
unsafe impl<T: Send, P: SyncMode, C: SyncMode, S: Slots<T> + Send> Send for Ring<T, P, C, S> {}

impl<T: Copy + Send, P: SyncMode, C: SyncMode, const N: usize> Ring<T, P, C, Inline<T, N>> {
    /// A ring with `N` inline slots and capacity `N - 1` (DPDK's default).
    ///
    /// # Panics
    /// At compile time of the caller's monomorphisation if `N` is not a power of two ≥ 2.
    pub fn new() -> Self {
        const { assert!(N.is_power_of_two() && N >= 2 && N <= MAX_SIZE) };
        // A power-of-two N ≥ 2 always passes with_slots' checks.
        match Self::with_slots(Inline::new(), N - 1) {
            Ok(r) => r,
            Err(_) => unreachable!(),
        }
    }
}

impl<T: Copy + Send, P: SyncMode, C: SyncMode, const N: usize> Default
    for Ring<T, P, C, Inline<T, N>>
{
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "alloc")]
impl<T: Copy + Send, P: SyncMode, C: SyncMode> Ring<T, P, C, BoxedSlots<T>> {
    /// A heap-backed ring holding exactly `capacity` objects (DPDK's `RING_F_EXACT_SZ`): the
    /// slot count is the next power of two above `capacity`.
    pub fn with_capacity(capacity: usize) -> Result<Self, RingError> {
        let size = Self::size_for_capacity(capacity)?;
        Self::with_slots(BoxedSlots::new(size), capacity)
    }
}

impl<T: Copy + Send, P: SyncMode, C: SyncMode, S: Slots<T>> Ring<T, P, C, S> {
    /// A ring over `slots` holding at most `capacity` objects (`capacity < slots.len()`; pass
    /// `slots.len() - 1` for DPDK's default ring).
    pub fn with_slots(slots: S, capacity: usize) -> Result<Self, RingError> {
        let size = slots.len();
        if size == 0 || size > MAX_SIZE {
            return Err(RingError::SizeOutOfRange { size });
        }
        if !size.is_power_of_two() {
            return Err(RingError::SizeNotPowerOfTwo { size });
        }
        if capacity >= size {
            return Err(RingError::CapacityTooLarge { capacity, size });
        }
        let capacity = capacity as u32;
        Ok(Self {
            // Empty ring: the producer's copy of the consumer tail is 0 and the consumer's copy
            // of the producer tail is 0.
            prod: CachePadded(HeadTail::new(0)),
            cons: CachePadded(HeadTail::new(0)),
            mask: (size - 1) as u32,
            capacity,
            slots,
            _marker: PhantomData,
        })
    }

    /// The slot count a ring of exactly `capacity` objects needs.
    pub fn size_for_capacity(capacity: usize) -> Result<usize, RingError> {
        capacity
            .checked_add(1)
            .and_then(usize::checked_next_power_of_two)
            .filter(|&s| s <= MAX_SIZE)
            .ok_or(RingError::SizeOutOfRange { size: capacity })
    }

    /// How many objects the ring can hold.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Number of slots (a power of two, > capacity).
    #[inline(always)]
    pub fn size(&self) -> usize {
        self.mask as usize + 1
    }

    /// Objects in the ring now (a snapshot; may be stale by the time it is used).
    #[inline]
    pub fn count(&self) -> usize {
        // Consumer tail first: the producer tail read after it (both Acquire) is at least as
        // new as the one that consumer saw, so the difference never goes below zero. (Read the
        // other way round, a dequeue between the loads made an empty ring look full.)
        let cons_tail = self.cons.tail.load(Ordering::Acquire);
        let prod_tail = self.prod.tail.load(Ordering::Acquire);
        let n = prod_tail.wrapping_sub(cons_tail);
        // Enqueues between the two loads can still take it past capacity; clamp like DPDK.
        n.min(self.capacity) as usize
    }

    /// Free slots now (a snapshot).
    #[inline]
    pub fn free_count(&self) -> usize {
        self.capacity() - self.count()
    }

    /// Whether the ring is empty now (a snapshot).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Whether the ring is full now (a snapshot).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.count() == self.capacity()
    }

    /// Reserves room for up to `n` objects on the producer side. Returns (old head, count).
    #[inline(always)]
    fn move_prod_head(&self, n: u32, behavior: Behavior) -> (u32, u32) {
        let cap = self.capacity;
        // Free slots: capacity minus what the consumer has not released yet.
        Self::move_head(
            P::SINGLE,
            &self.prod,
            &self.cons,
            cap,
            n,
            behavior,
            |head, cons_tail| cap.wrapping_add(cons_tail).wrapping_sub(head),
        )
    }

    /// Reserves up to `n` objects on the consumer side. Returns (old head, count).
    #[inline(always)]
    fn move_cons_head(&self, n: u32, behavior: Behavior) -> (u32, u32) {
        // Entries: what the producer has published beyond our head.
        Self::move_head(
            C::SINGLE,
            &self.cons,
            &self.prod,
            self.capacity,
            n,
            behavior,
            |head, prod_tail| prod_tail.wrapping_sub(head),
        )
    }

    /// Moves `me.head` forward by up to `n`, where `avail(head, other_tail)` is how far it may
    /// go given the other side's tail. The same algorithm serves both sides (as DPDK's
    /// `__rte_ring_move_prod_head` / `_cons_head` do). Returns (old head, count).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn move_head(
        single: bool,
        me: &HeadTail,
        other: &HeadTail,
        capacity: u32,
        n: u32,
        behavior: Behavior,
        avail: impl Fn(u32, u32) -> u32,
    ) -> (u32, u32) {
        if single {
            // Only this thread moves our head, so Relaxed reads of our own fields suffice; the
            // private copy of the other tail is refreshed only when it says "not enough".
            let head = me.head.load(Ordering::Relaxed);
            let mut have = avail(head, me.other_tail.load(Ordering::Relaxed));
            if have < n {
                // Acquire: the other side's slot accesses before its tail moved are done.
                let other_tail = other.tail.load(Ordering::Acquire);
                me.other_tail.store(other_tail, Ordering::Relaxed);
                have = avail(head, other_tail);
            }
            let n = clamp(n, have, behavior);
            if n != 0 {
                me.head.store(head.wrapping_add(n), Ordering::Relaxed);
            }
            return (head, n);
        }
        // The head read (Acquire) pairs with the Release of the CAS that moved head there, so
        // the other tail read below is at least as new as the one that thread saw. Without that
        // edge the tail read may be older, the count underflows and slots are overwritten or
        // read unpublished (DPDK a4ad0eba9d, "ring: establish safe partial order in default
        // mode").
        let mut head = me.head.load(Ordering::Acquire);
        loop {
            let other_tail = other.tail.load(Ordering::Acquire);
            // If the other tail is newer than head (head went stale), the figure exceeds
            // capacity and the CAS below fails, so it is never acted on.
            let n = clamp(n, avail(head, other_tail).min(capacity), behavior);
            if n == 0 {
                return (head, 0);
            }
            // Release on success, Acquire on failure: the pairing described above.
            match me.head.compare_exchange_weak(
                head,
                head.wrapping_add(n),
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => return (head, n),
                Err(now) => head = now,
            }
        }
    }

    /// Publishes `[old, new)` on one side: waits for earlier operations of the same side (multi
    /// mode), then moves the tail with Release so the other side sees the slots' contents.
    #[inline(always)]
    fn update_tail(ht: &HeadTail, old: u32, new: u32, single: bool) {
        if !single {
            // Acquire: an earlier operation's slot accesses happen before ours is published,
            // so the other side's Acquire of our tail covers theirs too.
            while ht.tail.load(Ordering::Acquire) != old {
                spin_hint();
            }
        }
        ht.tail.store(new, Ordering::Release);
    }

    /// Copies `src` into the slots starting at free-running index `head`.
    ///
    /// # Safety
    /// The slots `[head, head + src.len())` must be reserved by the caller.
    #[inline(always)]
    unsafe fn write_slots(&self, head: u32, src: &[T]) {
        #[cfg(not(loom))]
        {
            let (n, size) = (src.len(), self.size());
            let idx = (head & self.mask) as usize;
            let base = self.slots.base();
            // SAFETY: the slots are reserved for this thread (caller contract) and n <= size;
            // without a wrap [idx, idx + n) is inside the slots, with one [idx, size) and
            // [0, n - (size - idx)) are. src does not overlap ring storage: it is a shared
            // borrow the ring never hands out.
            unsafe {
                if idx + n <= size {
                    copy_objs(src.as_ptr(), base.add(idx), n);
                } else {
                    let first = size - idx;
                    copy_objs(src.as_ptr(), base.add(idx), first);
                    copy_objs(src.as_ptr().add(first), base, n - first);
                }
            }
        }
        #[cfg(loom)]
        for (i, v) in src.iter().enumerate() {
            let idx = (head.wrapping_add(i as u32) & self.mask) as usize;
            // SAFETY: the slot is reserved for this thread (caller contract).
            unsafe { self.slots.loom_write(idx, *v) };
        }
    }

    /// Copies slots starting at free-running index `head` into `dst`.
    ///
    /// # Safety
    /// The slots `[head, head + dst.len())` must be reserved by the caller and hold values
    /// written by a producer.
    #[inline(always)]
    unsafe fn read_slots(&self, head: u32, dst: &mut [T]) {
        #[cfg(not(loom))]
        {
            let (n, size) = (dst.len(), self.size());
            let idx = (head & self.mask) as usize;
            let base = self.slots.base();
            // SAFETY: bounds as in write_slots; the slots were initialised by the producer
            // whose tail publication we acquired, and dst is an exclusive borrow.
            unsafe {
                if idx + n <= size {
                    copy_objs(base.add(idx), dst.as_mut_ptr(), n);
                } else {
                    let first = size - idx;
                    copy_objs(base.add(idx), dst.as_mut_ptr(), first);
                    copy_objs(base, dst.as_mut_ptr().add(first), n - first);
                }
            }
        }
        #[cfg(loom)]
        for (i, d) in dst.iter_mut().enumerate() {
            let idx = (head.wrapping_add(i as u32) & self.mask) as usize;
            // SAFETY: the slot is reserved for this thread and initialised (caller contract).
            *d = unsafe { self.slots.loom_read(idx) };
        }
    }

    /// The enqueue algorithm shared by every producer-side method.
    ///
    /// # Safety
    /// If `P` is [`Single`], the caller is the one producer.
    #[inline(always)]
    unsafe fn do_enqueue(&self, objs: &[T], behavior: Behavior) -> usize {
        let want = objs.len().min(self.capacity as usize) as u32;
        if want == 0 || (behavior == Behavior::Fixed && objs.len() > self.capacity as usize) {
            return 0;
        }
        let (head, n) = self.move_prod_head(want, behavior);
        if n == 0 {
            return 0;
        }
        // SAFETY: move_prod_head reserved [head, head + n) for this thread.
        unsafe { self.write_slots(head, &objs[..n as usize]) };
        Self::update_tail(&self.prod, head, head.wrapping_add(n), P::SINGLE);
        n as usize
    }

    /// The dequeue algorithm shared by every consumer-side method.
    ///
    /// # Safety
    /// If `C` is [`Single`], the caller is the one consumer.
    #[inline(always)]
    unsafe fn do_dequeue(&self, out: &mut [T], behavior: Behavior) -> usize {
        let want = out.len().min(self.capacity as usize) as u32;
        if want == 0 || (behavior == Behavior::Fixed && out.len() > self.capacity as usize) {
            return 0;
        }
        let (head, n) = self.move_cons_head(want, behavior);
        if n == 0 {
            return 0;
        }
        // SAFETY: move_cons_head reserved [head, head + n) for this thread and the producer
        // tail we acquired covers them.
        unsafe { self.read_slots(head, &mut out[..n as usize]) };
        Self::update_tail(&self.cons, head, head.wrapping_add(n), C::SINGLE);
        n as usize
    }
}

/// Copies `n` objects between non-overlapping runs, four at a time as two pairs and then the
/// rest (DPDK's `__rte_ring_enqueue_elems_64` shape). A burst is a few dozen objects at most,
/// and for those a `memcpy` call of run-time length (two per operation, the second usually
/// empty) costs more than the copy: this stays inline. Moving pairs lets 8-byte objects go 16
/// bytes per instruction, and since no single store covers the loop's whole stride the
/// compiler does not turn the loop back into a `memcpy` call.
///
/// # Safety
/// `src` is valid for reading and `dst` for writing `n` objects, and the runs do not overlap.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn copy_objs<T: Copy>(src: *const T, dst: *mut T, n: usize) {
    /// Copies objects `i` and `i + 1` as one `[T; 2]` (same alignment as `T`).
    ///
    /// # Safety
    /// As for `copy_objs`, with `i + 2 <= n`.
    #[inline(always)]
    unsafe fn pair<T: Copy>(src: *const T, dst: *mut T, i: usize) {
        // SAFETY: objects i and i + 1 are inside both runs (caller contract); [T; 2] has T's
        // alignment, so the cast pointers are aligned.
        unsafe {
            dst.add(i)
                .cast::<[T; 2]>()
                .write(src.add(i).cast::<[T; 2]>().read())
        }
    }
    let mut i = 0;
    // SAFETY: every index below is < n (caller contract on both runs).
    unsafe {
        while i + 4 <= n {
            pair(src, dst, i);
            pair(src, dst, i + 2);
            i += 4;
        }
        match n - i {
            3 => {
                pair(src, dst, i);
                dst.add(i + 2).write(src.add(i + 2).read());
            }
            2 => pair(src, dst, i),
            1 => dst.add(i).write(src.add(i).read()),
            _ => {}
        }
    }
}

#[inline(always)]
fn clamp(want: u32, avail: u32, behavior: Behavior) -> u32 {
    if want <= avail {
        want
    } else if behavior == Behavior::Fixed {
        0
    } else {
        avail
    }
}

/// Producer-side operations of a multi-producer ring, through `&self`.
impl<T: Copy + Send, C: SyncMode, S: Slots<T>> Ring<T, Multi, C, S> {
    /// Enqueues all of `objs` or none; returns whether it did (trivially true for none).
    #[inline(always)]
    pub fn enqueue_bulk(&self, objs: &[T]) -> bool {
        // SAFETY: multi-producer mode needs no exclusivity.
        unsafe { self.do_enqueue(objs, Behavior::Fixed) == objs.len() }
    }

    /// Enqueues as many of `objs` as fit; returns how many (the first ones).
    #[inline(always)]
    pub fn enqueue_burst(&self, objs: &[T]) -> usize {
        // SAFETY: multi-producer mode needs no exclusivity.
        unsafe { self.do_enqueue(objs, Behavior::Variable) }
    }

    /// Enqueues one object, or gives it back if the ring is full.
    #[inline(always)]
    pub fn enqueue(&self, obj: T) -> Result<(), T> {
        if self.enqueue_burst(core::slice::from_ref(&obj)) == 1 {
            Ok(())
        } else {
            Err(obj)
        }
    }
}

/// Consumer-side operations of a multi-consumer ring, through `&self`.
impl<T: Copy + Send, P: SyncMode, S: Slots<T>> Ring<T, P, Multi, S> {
    /// Dequeues exactly `out.len()` objects or none; returns whether it did (true for none).
    #[inline(always)]
    pub fn dequeue_bulk(&self, out: &mut [T]) -> bool {
        let n = out.len();
        // SAFETY: multi-consumer mode needs no exclusivity.
        unsafe { self.do_dequeue(out, Behavior::Fixed) == n }
    }

    /// Dequeues up to `out.len()` objects into the front of `out`; returns how many.
    #[inline(always)]
    pub fn dequeue_burst(&self, out: &mut [T]) -> usize {
        // SAFETY: multi-consumer mode needs no exclusivity.
        unsafe { self.do_dequeue(out, Behavior::Variable) }
    }

    /// Dequeues one object, if any.
    #[inline(always)]
    pub fn dequeue(&self) -> Option<T> {
        let mut slot = MaybeUninit::<[T; 1]>::uninit();
        // SAFETY: a [T; 1] of Copy T read only after do_dequeue wrote it (n == 1).
        unsafe {
            let out = &mut *slot.as_mut_ptr();
            (self.do_dequeue(out, Behavior::Variable) == 1).then(|| out[0])
        }
    }
}

impl<T: Copy + Send, C: SyncMode, S: Slots<T>> Ring<T, Single, C, S> {
    /// Claims the single producer handle through `this` (a `&Ring`, an `Arc<Ring>`, …).
    pub fn producer<R: Deref<Target = Self>>(this: R) -> Result<Producer<T, C, S, R>, RingError> {
        if this.prod.claimed.swap(true, Ordering::Acquire) {
            return Err(RingError::ProducerClaimed);
        }
        Ok(Producer {
            ring: this,
            _marker: PhantomData,
        })
    }
}

impl<T: Copy + Send, P: SyncMode, S: Slots<T>> Ring<T, P, Single, S> {
    /// Claims the single consumer handle through `this` (a `&Ring`, an `Arc<Ring>`, …).
    pub fn consumer<R: Deref<Target = Self>>(this: R) -> Result<Consumer<T, P, S, R>, RingError> {
        if this.cons.claimed.swap(true, Ordering::Acquire) {
            return Err(RingError::ConsumerClaimed);
        }
        Ok(Consumer {
            ring: this,
            _marker: PhantomData,
        })
    }
}

/// The one producer of a single-producer ring. Dropping it lets another claim the role.
pub struct Producer<
    T: Copy + Send,
    C: SyncMode,
    S: Slots<T>,
    R: Deref<Target = Ring<T, Single, C, S>>,
> {
    ring: R,
    _marker: Marker<T, C, S>,
}

/// The one consumer of a single-consumer ring. Dropping it lets another claim the role.
pub struct Consumer<
    T: Copy + Send,
    P: SyncMode,
    S: Slots<T>,
    R: Deref<Target = Ring<T, P, Single, S>>,
> {
    ring: R,
    _marker: Marker<T, P, S>,
}

impl<T: Copy + Send, C: SyncMode, S: Slots<T>, R: Deref<Target = Ring<T, Single, C, S>>>
    Producer<T, C, S, R>
{
    /// The ring.
    #[inline(always)]
    pub fn ring(&self) -> &Ring<T, Single, C, S> {
        &self.ring
    }

    /// Enqueues all of `objs` or none; returns whether it did (trivially true for none).
    #[inline(always)]
    pub fn enqueue_bulk(&mut self, objs: &[T]) -> bool {
        // SAFETY: this handle is the one producer (claimed, and &mut self).
        unsafe { self.ring.do_enqueue(objs, Behavior::Fixed) == objs.len() }
    }

    /// Enqueues as many of `objs` as fit; returns how many (the first ones).
    #[inline(always)]
    pub fn enqueue_burst(&mut self, objs: &[T]) -> usize {
        // SAFETY: this handle is the one producer.
        unsafe { self.ring.do_enqueue(objs, Behavior::Variable) }
    }

    /// Enqueues one object, or gives it back if the ring is full.
    #[inline(always)]
    pub fn enqueue(&mut self, obj: T) -> Result<(), T> {
        if self.enqueue_burst(core::slice::from_ref(&obj)) == 1 {
            Ok(())
        } else {
            Err(obj)
        }
    }

    /// Lends out up to `n` free slots (exactly `n` or none if `bulk`) to be written in place;
    /// nothing is published until [`ZcEnqueue::finish`].
    #[cfg(not(loom))]
    #[inline]
    pub fn enqueue_zc_start(&mut self, n: usize, bulk: bool) -> Option<ZcEnqueue<'_, T>> {
        let ring: &Ring<T, Single, C, S> = &self.ring;
        let head = ring.prod.head.load(Ordering::Relaxed);
        let mut free = ring
            .capacity
            .wrapping_add(ring.prod.other_tail.load(Ordering::Relaxed))
            .wrapping_sub(head);
        let want = n.min(ring.capacity as usize) as u32;
        if free < want {
            let cons_tail = ring.cons.tail.load(Ordering::Acquire);
            ring.prod.other_tail.store(cons_tail, Ordering::Relaxed);
            free = ring.capacity.wrapping_add(cons_tail).wrapping_sub(head);
        }
        let behavior = if bulk {
            Behavior::Fixed
        } else {
            Behavior::Variable
        };
        if bulk && n > ring.capacity as usize {
            return None;
        }
        let got = clamp(want, free, behavior);
        if got == 0 {
            return None;
        }
        // SAFETY: [head, head + got) are free slots only this producer may touch until the
        // tail moves, which only finish() does.
        let (a, b) = unsafe { ring.zc_slices(head, got) };
        Some(ZcEnqueue {
            first: a,
            second: b,
            head,
            tail: &ring.prod.tail,
            prod_head: &ring.prod.head,
        })
    }
}

impl<T: Copy + Send, P: SyncMode, S: Slots<T>, R: Deref<Target = Ring<T, P, Single, S>>>
    Consumer<T, P, S, R>
{
    /// The ring.
    #[inline(always)]
    pub fn ring(&self) -> &Ring<T, P, Single, S> {
        &self.ring
    }

    /// Dequeues exactly `out.len()` objects or none; returns whether it did (true for none).
    #[inline(always)]
    pub fn dequeue_bulk(&mut self, out: &mut [T]) -> bool {
        let n = out.len();
        // SAFETY: this handle is the one consumer (claimed, and &mut self).
        unsafe { self.ring.do_dequeue(out, Behavior::Fixed) == n }
    }

    /// Dequeues up to `out.len()` objects into the front of `out`; returns how many.
    #[inline(always)]
    pub fn dequeue_burst(&mut self, out: &mut [T]) -> usize {
        // SAFETY: this handle is the one consumer.
        unsafe { self.ring.do_dequeue(out, Behavior::Variable) }
    }

    /// Dequeues one object, if any.
    #[inline(always)]
    pub fn dequeue(&mut self) -> Option<T> {
        let mut slot = MaybeUninit::<[T; 1]>::uninit();
        // SAFETY: a [T; 1] of Copy T read only after do_dequeue wrote it; we are the consumer.
        unsafe {
            let out = &mut *slot.as_mut_ptr();
            (self.ring.do_dequeue(out, Behavior::Variable) == 1).then(|| out[0])
        }
    }

    /// Lends out up to `n` filled slots (exactly `n` or none if `bulk`) to be read in place;
    /// they stay in the ring until [`ZcDequeue::finish`].
    #[cfg(not(loom))]
    #[inline]
    pub fn dequeue_zc_start(&mut self, n: usize, bulk: bool) -> Option<ZcDequeue<'_, T>> {
        let ring: &Ring<T, P, Single, S> = &self.ring;
        let head = ring.cons.head.load(Ordering::Relaxed);
        let want = n.min(ring.capacity as usize) as u32;
        let mut entries = ring
            .cons
            .other_tail
            .load(Ordering::Relaxed)
            .wrapping_sub(head);
        if entries < want {
            let prod_tail = ring.prod.tail.load(Ordering::Acquire);
            ring.cons.other_tail.store(prod_tail, Ordering::Relaxed);
            entries = prod_tail.wrapping_sub(head);
        }
        if bulk && n > ring.capacity as usize {
            return None;
        }
        let behavior = if bulk {
            Behavior::Fixed
        } else {
            Behavior::Variable
        };
        let got = clamp(want, entries, behavior);
        if got == 0 {
            return None;
        }
        // SAFETY: [head, head + got) hold published objects only this consumer may take.
        let (a, b) = unsafe { ring.zc_slices(head, got) };
        Some(ZcDequeue {
            first: a,
            second: b,
            head,
            tail: &ring.cons.tail,
            cons_head: &ring.cons.head,
        })
    }
}

#[cfg(not(loom))]
impl<T: Copy + Send, P: SyncMode, C: SyncMode, S: Slots<T>> Ring<T, P, C, S> {
    /// The slots `[head, head + n)` as up to two slices (the second after the wrap).
    ///
    /// # Safety
    /// Those slots must be reserved for the caller for the returned lifetime.
    #[allow(clippy::mut_from_ref)]
    unsafe fn zc_slices(
        &self,
        head: u32,
        n: u32,
    ) -> (&mut [MaybeUninit<T>], &mut [MaybeUninit<T>]) {
        let idx = (head & self.mask) as usize;
        let n = n as usize;
        let first = n.min(self.size() - idx);
        let base = self.slots.base().cast::<MaybeUninit<T>>();
        // SAFETY: both ranges are inside the slots, disjoint, and reserved for the caller.
        unsafe {
            (
                core::slice::from_raw_parts_mut(base.add(idx), first),
                core::slice::from_raw_parts_mut(base, n - first),
            )
        }
    }
}

/// Slots lent out by [`Producer::enqueue_zc_start`]: write objects into the two runs of
/// [`slots`](Self::slots), then call [`finish`](Self::finish) with how many were written.
/// Dropping it publishes none.
///
/// The runs are private, so they are always the ring's own lent slots: `finish` and `len`
/// count what was really lent, and a caller cannot swap in a longer run of its own.
///
/// ```compile_fail,E0616
/// fn forge(zc: &mut rdk_core::ring::ZcEnqueue<'static, u64>) {
///     zc.first = &mut []; // the lent runs cannot be replaced
/// }
/// ```
pub struct ZcEnqueue<'a, T> {
    first: &'a mut [MaybeUninit<T>],
    second: &'a mut [MaybeUninit<T>],
    head: u32,
    tail: &'a AtomicU32,
    prod_head: &'a AtomicU32,
}

impl<T> ZcEnqueue<'_, T> {
    /// How many slots were lent out.
    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    /// The lent slots, to be written in order: the first run, then the run after the wrap
    /// (may be empty).
    pub fn slots(&mut self) -> (&mut [MaybeUninit<T>], &mut [MaybeUninit<T>]) {
        (&mut *self.first, &mut *self.second)
    }

    /// Whether no slots were lent out (never, for a value returned by `enqueue_zc_start`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publishes the first `n` lent slots (at most [`len`](Self::len)).
    ///
    /// # Safety
    /// The first `n` lent slots (those of the first run, then of the second) must have been
    /// written.
    pub unsafe fn finish(self, n: usize) {
        let n = n.min(self.len()) as u32;
        let new = self.head.wrapping_add(n);
        self.prod_head.store(new, Ordering::Relaxed);
        self.tail.store(new, Ordering::Release);
    }
}

/// Slots lent out by [`Consumer::dequeue_zc_start`]: read objects with [`get`](Self::get) (or
/// from the two runs of [`slots`](Self::slots)), then call [`finish`](Self::finish) with how
/// many were taken. Dropping it takes none.
///
/// The runs are private: with a run of its own swapped in, safe code could make `get` read
/// uninitialised memory and `finish` move the consumer tail past objects never published.
///
/// ```compile_fail,E0616
/// use core::mem::MaybeUninit;
/// static FAKE: [MaybeUninit<u64>; 8] = [MaybeUninit::uninit(); 8];
/// fn forge(zc: &mut rdk_core::ring::ZcDequeue<'static, u64>) {
///     zc.first = &FAKE; // the lent runs cannot be replaced
/// }
/// ```
pub struct ZcDequeue<'a, T> {
    first: &'a [MaybeUninit<T>],
    second: &'a [MaybeUninit<T>],
    head: u32,
    tail: &'a AtomicU32,
    cons_head: &'a AtomicU32,
}

impl<T: Copy + Send> ZcDequeue<'_, T> {
    /// How many objects were lent out.
    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    /// The lent objects, in order: the first run, then the run after the wrap (may be
    /// empty). Every slot of both is initialised ([`get`](Self::get) reads them as `T`).
    pub fn slots(&self) -> (&[MaybeUninit<T>], &[MaybeUninit<T>]) {
        (self.first, self.second)
    }

    /// Whether no objects were lent out (never, for a value returned by `dequeue_zc_start`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Object `i` of the lent run, if `i < len()`.
    pub fn get(&self, i: usize) -> Option<T> {
        let s = if i < self.first.len() {
            self.first.get(i)
        } else {
            self.second.get(i - self.first.len())
        }?;
        // SAFETY: lent slots hold objects published by the producer.
        Some(unsafe { s.assume_init() })
    }

    /// Removes the first `n` lent objects (at most [`len`](Self::len)) from the ring.
    pub fn finish(self, n: usize) {
        let n = n.min(self.len()) as u32;
        let new = self.head.wrapping_add(n);
        self.cons_head.store(new, Ordering::Relaxed);
        self.tail.store(new, Ordering::Release);
    }
}

impl<T: Copy + Send, C: SyncMode, S: Slots<T>, R: Deref<Target = Ring<T, Single, C, S>>> Drop
    for Producer<T, C, S, R>
{
    fn drop(&mut self) {
        self.ring.prod.claimed.store(false, Ordering::Release);
    }
}

impl<T: Copy + Send, P: SyncMode, S: Slots<T>, R: Deref<Target = Ring<T, P, Single, S>>> Drop
    for Consumer<T, P, S, R>
{
    fn drop(&mut self) {
        self.ring.cons.claimed.store(false, Ordering::Release);
    }
}

// SAFETY: a handle only carries the ring reference R across threads; the claim makes it the
// sole producer wherever it goes.
unsafe impl<T: Copy + Send, C: SyncMode, S: Slots<T>, R: Deref<Target = Ring<T, Single, C, S>> + Send>
    Send for Producer<T, C, S, R>
{
}
// SAFETY: as for Producer.
unsafe impl<T: Copy + Send, P: SyncMode, S: Slots<T>, R: Deref<Target = Ring<T, P, Single, S>> + Send>
    Send for Consumer<T, P, S, R>
{
}

impl<T, P: SyncMode, C: SyncMode, S: Slots<T>> fmt::Debug for Ring<T, P, C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("size", &(self.mask as usize + 1))
            .field("capacity", &self.capacity)
            .field("prod_head", &self.prod.head.load(Ordering::Relaxed))
            .field("prod_tail", &self.prod.tail.load(Ordering::Relaxed))
            .field("cons_head", &self.cons.head.load(Ordering::Relaxed))
            .field("cons_tail", &self.cons.tail.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn mpmc_bulk_burst_single() {
        let r: MpmcRing<u64, Inline<u64, 8>> = Ring::new();
        assert_eq!(r.capacity(), 7);
        assert!(r.enqueue_bulk(&[1, 2, 3]));
        assert!(
            !r.enqueue_bulk(&[4, 5, 6, 7, 8]),
            "bulk must be all or nothing"
        );
        assert_eq!(r.count(), 3);
        assert_eq!(r.enqueue_burst(&[4, 5, 6, 7, 8]), 4);
        assert!(r.is_full());
        assert_eq!(r.enqueue(9), Err(9));
        let mut out = [0u64; 5];
        assert!(!r.dequeue_bulk(&mut [0u64; 8]));
        assert!(r.dequeue_bulk(&mut out));
        assert_eq!(out, [1, 2, 3, 4, 5]);
        assert_eq!(r.dequeue_burst(&mut out), 2);
        assert_eq!(&out[..2], &[6, 7]);
        assert_eq!(r.dequeue(), None);
        assert!(r.is_empty());
        assert_eq!(r.free_count(), 7);
    }

    #[test]
    fn wraps_around_many_times() {
        let r: MpmcRing<u32, Inline<u32, 4>> = Ring::new();
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        for round in 0..1000u32 {
            let n = (round % 3) + 1;
            let objs: [u32; 3] = core::array::from_fn(|i| next_in + i as u32);
            assert!(r.enqueue_bulk(&objs[..n as usize]));
            next_in += n;
            let mut out = [0u32; 3];
            let got = r.dequeue_burst(&mut out);
            for v in &out[..got] {
                assert_eq!(*v, next_out);
                next_out += 1;
            }
        }
        while let Some(v) = r.dequeue() {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_in, next_out);
    }

    #[test]
    fn free_running_indices_cross_u32_wrap() {
        let r: SpscRing<u8, Inline<u8, 4>> = Ring::new();
        // Start just below the u32 wrap so the counters overflow during the test.
        for ht in [&r.prod, &r.cons] {
            ht.head.store(u32::MAX - 2, Ordering::Relaxed);
            ht.tail.store(u32::MAX - 2, Ordering::Relaxed);
        }
        r.prod.other_tail.store(u32::MAX - 2, Ordering::Relaxed);
        r.cons.other_tail.store(u32::MAX - 2, Ordering::Relaxed);
        let mut p = Ring::producer(&r).unwrap();
        let mut c = Ring::consumer(&r).unwrap();
        for i in 0..20u8 {
            assert!(p.enqueue_bulk(&[i, i.wrapping_add(100)]));
            let mut out = [0; 2];
            assert!(c.dequeue_bulk(&mut out));
            assert_eq!(out, [i, i.wrapping_add(100)]);
        }
        assert!(r.is_empty());
    }

    #[test]
    fn single_side_handles_are_exclusive() {
        let r: SpscRing<u32, Inline<u32, 16>> = Ring::new();
        let p = Ring::producer(&r).unwrap();
        assert_eq!(Ring::producer(&r).err(), Some(RingError::ProducerClaimed));
        drop(p);
        let _p = Ring::producer(&r).unwrap();
        let _c = Ring::consumer(&r).unwrap();
        assert_eq!(Ring::consumer(&r).err(), Some(RingError::ConsumerClaimed));
    }

    #[test]
    fn construction_errors() {
        let e = Ring::<u32, Multi, Multi, _>::with_slots(Inline::<u32, 8>::new(), 8);
        assert_eq!(
            e.err(),
            Some(RingError::CapacityTooLarge {
                capacity: 8,
                size: 8
            })
        );
        let mut mem = [0u64; 6];
        // SAFETY: mem outlives the ring attempt below.
        let slots = unsafe { RawSlots::new(NonNull::new(mem.as_mut_ptr()).unwrap(), 6) }.unwrap();
        let e = Ring::<u64, Multi, Multi, _>::with_slots(slots, 5);
        assert_eq!(e.err(), Some(RingError::SizeNotPowerOfTwo { size: 6 }));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn exact_capacity_ring_on_heap() {
        let r = MpmcRing::<u64, BoxedSlots<u64>>::with_capacity(5).unwrap();
        assert_eq!(r.capacity(), 5);
        assert_eq!(r.size(), 8);
        assert_eq!(r.enqueue_burst(&[0; 9]), 5);
    }

    #[test]
    fn ring_in_caller_memory() {
        let mut mem = [0u64; 16];
        // SAFETY: mem outlives the ring, and nothing else touches it meanwhile.
        let slots = unsafe { RawSlots::new(NonNull::new(mem.as_mut_ptr()).unwrap(), 16) }.unwrap();
        let r = MpmcRing::with_slots(slots, 15).unwrap();
        assert_eq!(r.enqueue_burst(&[7u64; 20]), 15);
        let mut out = [0u64; 15];
        assert!(r.dequeue_bulk(&mut out));
        assert!(out.iter().all(|&v| v == 7));
    }

    #[test]
    fn zero_copy_enqueue_and_dequeue_wrap() {
        let r: SpscRing<u32, Inline<u32, 8>> = Ring::new();
        let mut p = Ring::producer(&r).unwrap();
        let mut c = Ring::consumer(&r).unwrap();
        // Move the indices to 5 so a run of 5 wraps (3 + 2).
        assert!(p.enqueue_bulk(&[0; 5]));
        assert!(c.dequeue_bulk(&mut [0; 5]));
        let mut zc = p.enqueue_zc_start(5, true).unwrap();
        let (first, second) = zc.slots();
        assert_eq!((first.len(), second.len()), (3, 2));
        for (i, s) in first.iter_mut().chain(second.iter_mut()).enumerate() {
            s.write(i as u32 * 10);
        }
        // SAFETY: all 5 lent slots were written above; publish 4 of them.
        unsafe { zc.finish(4) };
        assert_eq!(r.count(), 4);
        assert!(p.enqueue_zc_start(4, true).is_none(), "only 3 free");
        let zc = c.dequeue_zc_start(8, false).unwrap();
        assert_eq!(zc.len(), 4);
        let got: [u32; 4] = core::array::from_fn(|i| zc.get(i).unwrap());
        assert_eq!(got, [0, 10, 20, 30]);
        assert_eq!(zc.get(4), None);
        zc.finish(3);
        assert_eq!(c.dequeue(), Some(30));
        // A dropped zero-copy enqueue publishes nothing.
        let lent = p.enqueue_zc_start(2, true).unwrap();
        assert_eq!(lent.len(), 2);
        let _ = lent;
        assert!(r.is_empty());
        assert!(p.enqueue_bulk(&[1, 2]));
        assert_eq!(c.dequeue(), Some(1));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn mpmc_threads_exact_accounting() {
        use std::sync::Arc;
        let r: Arc<MpmcRing<u64, BoxedSlots<u64>>> = Arc::new(Ring::with_capacity(64).unwrap());
        const PER: u64 = if cfg!(miri) { 200 } else { 20_000 };
        let producers: std::vec::Vec<_> = (0..2u64)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while i < PER {
                        let batch: [u64; 4] = core::array::from_fn(|k| (t << 32) | (i + k as u64));
                        let n = (PER - i).min(4) as usize;
                        i += r.enqueue_burst(&batch[..n]) as u64;
                    }
                })
            })
            .collect();
        // Consumers stop when every object is taken (an idle-count heuristic made this test
        // spin for minutes under Miri).
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let consumers: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let (r, taken) = (r.clone(), taken.clone());
                std::thread::spawn(move || {
                    let mut seen = std::vec::Vec::new();
                    let mut buf = [0u64; 8];
                    while taken.load(std::sync::atomic::Ordering::Relaxed) < 2 * PER {
                        let n = r.dequeue_burst(&mut buf);
                        if n == 0 {
                            std::thread::yield_now();
                        } else {
                            seen.extend_from_slice(&buf[..n]);
                            taken.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    seen
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: std::vec::Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        let want: std::vec::Vec<u64> = (0..2u64)
            .flat_map(|t| (0..PER).map(move |i| (t << 32) | i))
            .collect();
        assert_eq!(all, want, "every object dequeued exactly once");
    }
}
