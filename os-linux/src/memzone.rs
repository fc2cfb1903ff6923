//! Named reservations, like DPDK's memzones, kept per instance.
//!
//! DPDK keeps memzones in a process-wide table so that a driver can find "the" descriptor ring
//! of a queue again after a restart of the port. Here the table belongs to one
//! [`LinuxOs`](crate::LinuxOs) (or any owner of a [`Memzones`]): two instances may use the same
//! names without meeting. A [`Memzone`] handle shares its region; freeing a zone takes its
//! name out of the table at once, and the memory goes back when the last handle is dropped,
//! so a stale handle can never point at freed memory.
#![allow(unsafe_code)] // `unsafe impl DmaRegion for Memzone` only.

use crate::hugepage::HugePageSize;
use rdk_core::addr::Iova;
use rdk_core::os::{DmaError, DmaRegion};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// The longest name a zone may have, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Options of a reservation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemzoneFlags {
    contiguous: bool,
    page_size: Option<HugePageSize>,
}

impl MemzoneFlags {
    /// No options: any page size the OS is configured with, contiguity not required.
    pub const NONE: Self = Self {
        contiguous: false,
        page_size: None,
    };

    /// The same options, requiring the zone to be IOVA-contiguous (DPDK's
    /// `RTE_MEMZONE_IOVA_CONTIG`).
    pub const fn contiguous(mut self) -> Self {
        self.contiguous = true;
        self
    }

    /// The same options, with pages of `size` instead of the configured size (DPDK's
    /// `RTE_MEMZONE_2MB` / `RTE_MEMZONE_1GB`).
    pub const fn page_size(mut self, size: HugePageSize) -> Self {
        self.page_size = Some(size);
        self
    }

    /// Whether contiguity is required.
    pub const fn is_contiguous(self) -> bool {
        self.contiguous
    }

    /// The page size asked for, if any.
    pub const fn requested_page_size(self) -> Option<HugePageSize> {
        self.page_size
    }
}

/// Why a memzone operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemzoneError {
    /// A zone with this name exists already.
    Duplicate {
        /// The name.
        name: String,
    },
    /// No zone has this name (or the handle's zone was freed already).
    NotFound {
        /// The name.
        name: String,
    },
    /// The name is empty or longer than [`MAX_NAME_LEN`] bytes.
    BadName {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The memory could not be allocated.
    Dma(DmaError),
}

impl fmt::Display for MemzoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemzoneError::Duplicate { name } => write!(
                f,
                "memzone {name:?} exists already; look it up, free it first or pick another name"
            ),
            MemzoneError::NotFound { name } => {
                write!(f, "no memzone {name:?} (never reserved, or freed already)")
            }
            MemzoneError::BadName { reason } => write!(f, "bad memzone name: {reason}"),
            MemzoneError::Dma(e) => write!(f, "memzone allocation failed: {e}"),
        }
    }
}

impl std::error::Error for MemzoneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MemzoneError::Dma(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DmaError> for MemzoneError {
    fn from(e: DmaError) -> Self {
        MemzoneError::Dma(e)
    }
}

/// A handle on a reserved zone; clones share it.
pub struct Memzone<R> {
    name: Arc<str>,
    region: Arc<R>,
}

impl<R> Memzone<R> {
    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's memory.
    pub fn region(&self) -> &R {
        &self.region
    }

    /// Whether two handles are the same zone (not merely the same name).
    pub fn same_zone(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.region, &other.region)
    }
}

impl<R> Clone for Memzone<R> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            region: Arc::clone(&self.region),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for Memzone<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memzone")
            .field("name", &self.name)
            .field("region", &self.region)
            .finish()
    }
}

// SAFETY: every method forwards to the shared region `R`, which upholds the DmaRegion
// promises itself; the Arc keeps that region (and so its mapping) alive for as long as this
// handle exists, so the promises hold for the handle's whole life too.
unsafe impl<R: DmaRegion> DmaRegion for Memzone<R> {
    #[inline]
    fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    #[inline]
    fn len(&self) -> usize {
        self.region.len()
    }

    #[inline]
    fn iova_at(&self, offset: usize) -> Option<Iova> {
        self.region.iova_at(offset)
    }

    #[inline]
    fn contiguous_from(&self, offset: usize) -> usize {
        self.region.contiguous_from(offset)
    }
}

/// A table of named zones.
pub struct Memzones<R> {
    zones: Mutex<HashMap<Arc<str>, Arc<R>>>,
}

impl<R> Default for Memzones<R> {
    fn default() -> Self {
        Self {
            zones: Mutex::new(HashMap::new()),
        }
    }
}

impl<R> fmt::Debug for Memzones<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memzones")
            .field("names", &self.names())
            .finish()
    }
}

impl<R> Memzones<R> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves `name` with the region `alloc` returns. The table stays locked while `alloc`
    /// runs, so two threads reserving one name cannot both allocate.
    pub fn reserve(
        &self,
        name: &str,
        alloc: impl FnOnce() -> Result<R, DmaError>,
    ) -> Result<Memzone<R>, MemzoneError> {
        if name.is_empty() {
            return Err(MemzoneError::BadName {
                reason: "the name is empty",
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(MemzoneError::BadName {
                reason: "the name is longer than 255 bytes",
            });
        }
        let mut zones = self.lock();
        if zones.contains_key(name) {
            return Err(MemzoneError::Duplicate {
                name: name.to_owned(),
            });
        }
        let zone = Memzone {
            name: Arc::from(name),
            region: Arc::new(alloc()?),
        };
        zones.insert(Arc::clone(&zone.name), Arc::clone(&zone.region));
        Ok(zone)
    }

    /// The zone called `name`, if there is one.
    pub fn lookup(&self, name: &str) -> Option<Memzone<R>> {
        self.lock()
            .get_key_value(name)
            .map(|(name, region)| Memzone {
                name: Arc::clone(name),
                region: Arc::clone(region),
            })
    }

    /// Frees `zone`: its name leaves the table now; its memory goes back when no other handle
    /// to it remains. Fails if the zone was freed already.
    pub fn free(&self, zone: Memzone<R>) -> Result<(), MemzoneError> {
        let mut zones = self.lock();
        match zones.get(&*zone.name) {
            Some(region) if Arc::ptr_eq(region, &zone.region) => {
                zones.remove(&*zone.name);
                Ok(())
            }
            _ => Err(MemzoneError::NotFound {
                name: zone.name.to_string(),
            }),
        }
    }

    /// The names in use, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().map(|k| k.to_string()).collect();
        names.sort_unstable();
        names
    }

    /// How many zones are reserved.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no zone is reserved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<R>>> {
        // A panic in another thread cannot leave the map half-updated (every change is one
        // insert or remove), so a poisoned lock is still a consistent table.
        self.zones.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stand-in region that counts how many are alive.
    #[derive(Debug)]
    struct Counted<'a>(&'a AtomicUsize);

    impl<'a> Counted<'a> {
        fn new(live: &'a AtomicUsize) -> Result<Self, DmaError> {
            live.fetch_add(1, Ordering::SeqCst);
            Ok(Self(live))
        }
    }

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn duplicate_lookup_and_free() {
        let live = AtomicUsize::new(0);
        let t = Memzones::new();
        let a = t.reserve("rxq0", || Counted::new(&live)).unwrap();
        assert_eq!(a.name(), "rxq0");
        let e = t.reserve("rxq0", || Counted::new(&live)).unwrap_err();
        assert_eq!(
            e,
            MemzoneError::Duplicate {
                name: "rxq0".into()
            }
        );
        assert_eq!(
            live.load(Ordering::SeqCst),
            1,
            "a duplicate allocates nothing"
        );
        assert!(e.to_string().contains("exists already"), "{e}");

        let found = t.lookup("rxq0").unwrap();
        assert!(found.same_zone(&a));
        assert!(t.lookup("txq0").is_none());
        assert_eq!(t.names(), ["rxq0"]);

        t.free(a).unwrap();
        assert!(t.lookup("rxq0").is_none() && t.is_empty());
        assert_eq!(
            live.load(Ordering::SeqCst),
            1,
            "the looked-up handle keeps it alive"
        );
        drop(found);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_stale_handle_cannot_free_a_newer_zone_of_the_same_name() {
        let live = AtomicUsize::new(0);
        let t = Memzones::new();
        let old = t.reserve("ring", || Counted::new(&live)).unwrap();
        let stale = old.clone();
        t.free(old).unwrap();
        let new = t.reserve("ring", || Counted::new(&live)).unwrap();
        let e = t.free(stale).unwrap_err();
        assert_eq!(
            e,
            MemzoneError::NotFound {
                name: "ring".into()
            }
        );
        assert!(t.lookup("ring").unwrap().same_zone(&new));
    }

    #[test]
    fn bad_names_and_failed_allocations_leave_no_entry() {
        let t: Memzones<Counted<'_>> = Memzones::new();
        assert!(matches!(
            t.reserve("", || unreachable!()),
            Err(MemzoneError::BadName { .. })
        ));
        assert!(matches!(
            t.reserve(&"n".repeat(MAX_NAME_LEN + 1), || unreachable!()),
            Err(MemzoneError::BadName { .. })
        ));
        let short = DmaError::Exhausted {
            requested: 1,
            page_size: 4096,
            pages_short: 1,
        };
        assert_eq!(
            t.reserve("big", || Err(short)).unwrap_err(),
            MemzoneError::Dma(short)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn flags_compose() {
        let f = MemzoneFlags::NONE
            .contiguous()
            .page_size(HugePageSize::Size1G);
        assert!(f.is_contiguous());
        assert_eq!(f.requested_page_size(), Some(HugePageSize::Size1G));
        assert_eq!(MemzoneFlags::default(), MemzoneFlags::NONE);
    }
}
