//! [`MockOs`]: one in-memory operating system instance, and how to configure it.

use crate::clock::MockClock;
use crate::device_mem::{DeviceMemory, Fault};
use crate::event::{LiveSlot, MockEvent};
use crate::iommu::Iommu;
use crate::memory::MockRegion;
use rdk_core::os::{Clock, DmaAlloc, DmaError, DmaRequest, EventError, Events, Instant};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How a region's pages are placed in IOVA space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IovaLayout {
    /// Each region is one IOVA-contiguous run, as behind an IOMMU (VFIO).
    #[default]
    Contiguous,
    /// Each page of a region gets its own IOVA, in descending order with unmapped gaps between,
    /// as hugepages at scattered physical addresses without an IOMMU. Translation must go page
    /// by page ([`DmaRegion::contiguous_from`](rdk_core::os::DmaRegion::contiguous_from)).
    ///
    /// A request with `iova_contiguous` that spans more than one page fails with
    /// [`DmaError::NotContiguous`] (longest run: one page), as it would on such a system; one
    /// that fits in a page is served.
    Scattered,
}

/// Settings of one [`MockOs`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) page_size: usize,
    pub(crate) layout: IovaLayout,
    pub(crate) page_limit: Option<usize>,
    pub(crate) event_limit: Option<usize>,
}

/// The state every handle of one [`MockOs`] shares: its regions, map, fault log and clock.
pub(crate) struct Shared {
    pub(crate) config: Config,
    iommu: RwLock<Iommu>,
    faults: Mutex<Vec<Fault>>,
    live_events: Arc<AtomicUsize>,
    clock: MockClock,
}

impl Shared {
    /// The IOVA map, for translating (many readers at once).
    pub(crate) fn iommu(&self) -> RwLockReadGuard<'_, Iommu> {
        // A test that panicked while holding the lock left the map consistent (no operation
        // under it can panic half-way), so carry on rather than cascade the panic.
        self.iommu.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The IOVA map, for mapping and unmapping.
    pub(crate) fn iommu_mut(&self) -> RwLockWriteGuard<'_, Iommu> {
        self.iommu.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault log.
    pub(crate) fn faults(&self) -> MutexGuard<'_, Vec<Fault>> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An operating system in memory: DMA regions from the heap behind a mock IOMMU, event
/// handles, and a manual clock.
///
/// A `MockOs` is a cheap handle: clones share the same regions, map, fault log, events and
/// clock. It implements [`DmaAlloc`], [`Events`] and [`Clock`], so a driver generic over those
/// traits runs on it unchanged; device models reach its memory through
/// [`device_memory`](Self::device_memory).
///
/// ```
/// use rdk_core::os::{DmaAlloc, DmaRegion, DmaRequest};
/// use rdk_os_mock::MockOs;
///
/// let os = MockOs::new();
/// let dev = os.device_memory();
/// let ring = os.dma_alloc(&DmaRequest::new("ring", 4096)).unwrap();
/// let iova = ring.iova_at(16).unwrap();
/// assert_ne!(iova.get(), ring.va().get() as u64 + 16);
/// dev.write_u32(iova, 7).unwrap();
/// drop(ring);
/// assert!(dev.write_u32(iova, 7).is_err());
/// assert_eq!(dev.take_faults().len(), 1);
/// ```
#[derive(Clone)]
pub struct MockOs {
    shared: Arc<Shared>,
}

impl MockOs {
    /// An OS with the defaults of [`MockOsBuilder`]: 4 KiB pages, contiguous IOVA, no limits,
    /// a manual clock at zero.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for an OS with other settings.
    pub fn builder() -> MockOsBuilder {
        MockOsBuilder::default()
    }

    /// The device's view of this OS's memory (shares the fault log with every other view).
    pub fn device_memory(&self) -> DeviceMemory {
        DeviceMemory::new(self.shared.clone())
    }

    /// The clock this OS reports through [`Clock`]; advance it to move time.
    pub fn clock(&self) -> &MockClock {
        &self.shared.clock
    }

    /// The page size regions are rounded up to and accounted in.
    pub fn page_size(&self) -> usize {
        self.shared.config.page_size
    }

    /// How regions are placed in IOVA space.
    pub fn iova_layout(&self) -> IovaLayout {
        self.shared.config.layout
    }

    /// Regions allocated and not yet dropped (for leak checks at the end of a test).
    pub fn live_regions(&self) -> usize {
        self.shared.iommu().regions()
    }

    /// Pages held by live regions.
    pub fn pages_in_use(&self) -> usize {
        self.shared.iommu().pages_in_use()
    }

    /// Event handles created and not yet dropped (a handle counts until its last clone goes).
    pub fn live_events(&self) -> usize {
        self.shared.live_events.load(Ordering::Acquire)
    }
}

impl Default for MockOs {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MockOs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockOs")
            .field("page_size", &self.page_size())
            .field("iova_layout", &self.iova_layout())
            .field("page_limit", &self.shared.config.page_limit)
            .field("live_regions", &self.live_regions())
            .field("pages_in_use", &self.pages_in_use())
            .field("live_events", &self.live_events())
            .finish_non_exhaustive()
    }
}

impl DmaAlloc for MockOs {
    type Region = MockRegion;

    /// Allocates zeroed heap memory, rounded up to the page size, and maps it at fresh IOVAs.
    ///
    /// Fails with [`DmaError::BadRequest`] for what
    /// [`validate_request`](rdk_core::os::dma::validate_request) rejects and for lengths that
    /// overflow, [`DmaError::Exhausted`] beyond the memory limit,
    /// [`DmaError::NotContiguous`] for a contiguous request spanning pages in
    /// [`IovaLayout::Scattered`], and [`DmaError::Os`] (ENOMEM) if the heap refuses.
    fn dma_alloc(&self, req: &DmaRequest<'_>) -> Result<MockRegion, DmaError> {
        MockRegion::allocate(&self.shared, req)
    }
}

impl Events for MockOs {
    type Event = MockEvent;

    /// A new [`MockEvent`]; fails with [`EventError::Exhausted`] once
    /// [`MockOsBuilder::event_limit`] handles are live.
    fn event_create(&self) -> Result<MockEvent, EventError> {
        let limit = self.shared.config.event_limit.unwrap_or(usize::MAX);
        let live = &self.shared.live_events;
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .map_err(|_| EventError::Exhausted {
            hint: "the MockOs event limit is reached; drop unused events or raise \
                   MockOsBuilder::event_limit",
        })?;
        Ok(MockEvent::with_slot(LiveSlot::new(live.clone())))
    }
}

impl Clock for MockOs {
    fn now(&self) -> Instant {
        self.shared.clock.now()
    }
}

/// Settings for a [`MockOs`]; start from [`MockOs::builder`].
#[derive(Clone, Debug)]
pub struct MockOsBuilder {
    page_size: usize,
    layout: IovaLayout,
    memory_limit: Option<usize>,
    event_limit: Option<usize>,
    clock: MockClock,
}

impl Default for MockOsBuilder {
    fn default() -> Self {
        Self {
            page_size: 4096,
            layout: IovaLayout::Contiguous,
            memory_limit: None,
            event_limit: None,
            clock: MockClock::new(),
        }
    }
}

impl MockOsBuilder {
    /// The smallest page size accepted.
    pub const MIN_PAGE_SIZE: usize = 64;

    /// Pages of `page_size` bytes (default 4 KiB; 2 MiB mimics hugepages). Regions are rounded
    /// up to whole pages, the memory limit counts pages, and in [`IovaLayout::Scattered`] each
    /// page gets its own IOVA.
    ///
    /// # Panics
    /// If `page_size` is not a power of two of at least [`Self::MIN_PAGE_SIZE`]: a test set up
    /// that way has a bug.
    #[track_caller]
    #[must_use]
    pub fn page_size(mut self, page_size: usize) -> Self {
        assert!(
            page_size.is_power_of_two() && page_size >= Self::MIN_PAGE_SIZE,
            "MockOsBuilder::page_size: {page_size} is not a power of two >= {}",
            Self::MIN_PAGE_SIZE
        );
        self.page_size = page_size;
        self
    }

    /// How regions are placed in IOVA space (default [`IovaLayout::Contiguous`]).
    #[must_use]
    pub fn iova_layout(mut self, layout: IovaLayout) -> Self {
        self.layout = layout;
        self
    }

    /// At most `bytes` of DMA memory live at once, counted in whole pages (rounded down); an
    /// allocation beyond it fails with [`DmaError::Exhausted`]. Default: no limit.
    #[must_use]
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// At most `count` event handles live at once; beyond it [`Events::event_create`] fails
    /// with [`EventError::Exhausted`]. Default: no limit.
    #[must_use]
    pub fn event_limit(mut self, count: usize) -> Self {
        self.event_limit = Some(count);
        self
    }

    /// The clock the OS reports (default: a manual [`MockClock`] at zero). Keep a clone to
    /// advance it.
    #[must_use]
    pub fn clock(mut self, clock: MockClock) -> Self {
        self.clock = clock;
        self
    }

    /// The OS.
    #[must_use]
    pub fn build(self) -> MockOs {
        let config = Config {
            page_size: self.page_size,
            layout: self.layout,
            page_limit: self.memory_limit.map(|bytes| bytes / self.page_size),
            event_limit: self.event_limit,
        };
        // One page of unmapped IOVA space (at least 4 KiB) after every mapping.
        let guard = self.page_size.max(4096) as u64;
        MockOs {
            shared: Arc::new(Shared {
                config,
                iommu: RwLock::new(Iommu::new(guard)),
                faults: Mutex::new(Vec::new()),
                live_events: Arc::new(AtomicUsize::new(0)),
                clock: self.clock,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdk_core::os::EventNotifier;
    use std::time::Duration;

    #[test]
    fn handles_share_state() {
        let os = MockOs::new();
        let other = os.clone();
        let r = os.dma_alloc(&DmaRequest::new("r", 100)).unwrap();
        assert_eq!((other.live_regions(), other.pages_in_use()), (1, 1));
        drop(r);
        assert_eq!((other.live_regions(), other.pages_in_use()), (0, 0));
    }

    #[test]
    fn clock_is_the_configured_one() {
        let clock = MockClock::starting_at(Instant::from_nanos(500));
        let os = MockOs::builder().clock(clock.clone()).build();
        assert_eq!(os.now(), Instant::from_nanos(500));
        clock.advance(Duration::from_micros(1));
        assert_eq!(os.now(), Instant::from_nanos(1500));
        os.clock().advance(Duration::from_nanos(1));
        assert_eq!(clock.now(), Instant::from_nanos(1501));
    }

    #[test]
    fn event_limit_counts_live_handles() {
        let os = MockOs::builder().event_limit(2).build();
        let a = os.event_create().unwrap();
        let b = os.event_create().unwrap();
        let a2 = a.clone();
        assert_eq!(os.live_events(), 2);
        assert!(matches!(
            os.event_create(),
            Err(EventError::Exhausted { .. })
        ));
        drop(a);
        assert_eq!(os.live_events(), 2, "a clone keeps the handle alive");
        drop(a2);
        assert_eq!(os.live_events(), 1);
        let c = os.event_create().unwrap();
        c.signal().unwrap();
        assert_eq!(c.ack().unwrap(), 1);
        assert_eq!(b.ack().unwrap(), 0);
        drop((b, c));
        assert_eq!(os.live_events(), 0);
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn bad_page_size_is_refused() {
        let _ = MockOs::builder().page_size(3000);
    }

    #[test]
    fn debug_shows_the_counts() {
        let os = MockOs::builder().memory_limit(8192).build();
        let _r = os.dma_alloc(&DmaRequest::new("r", 1)).unwrap();
        let s = format!("{os:?}");
        assert!(s.contains("page_limit: Some(2)"), "{s}");
        assert!(s.contains("live_regions: 1"), "{s}");
    }
}
