//! DMA memory: pinned regions a device can reach, and their I/O addresses.
//!
//! A [`DmaRegion`] knows its virtual address, its length and the IOVA of every byte in it.
//! Where the region is IOVA-contiguous (one IOMMU mapping, or one physically contiguous hugepage
//! run), translating an address inside it is one subtraction and one addition; where it is not
//! (several hugepages at scattered physical addresses), translation goes page by page, and
//! users such as the mempool keep each object inside one contiguous run and compute its IOVA
//! once, at creation — never per packet.

use crate::addr::{Iova, VirtAddr};
use core::fmt;

/// What a caller asks of a DMA allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRequest<'a> {
    /// Bytes wanted; the region may be larger (rounded up to the backing page size).
    pub len: usize,
    /// Alignment of the region's start, a power of two (both VA and IOVA honour it).
    pub align: usize,
    /// Whether every byte must be IOVA-contiguous with the first.
    pub iova_contiguous: bool,
    /// A name for diagnostics and for OSes that keep named reservations (memzones).
    pub name: &'a str,
}

impl<'a> DmaRequest<'a> {
    /// A request for `len` bytes aligned to 64 (a cache line), not necessarily contiguous.
    pub const fn new(name: &'a str, len: usize) -> Self {
        Self {
            len,
            align: 64,
            iova_contiguous: false,
            name,
        }
    }

    /// The same request with another alignment.
    pub const fn align(mut self, align: usize) -> Self {
        self.align = align;
        self
    }

    /// The same request, asking for IOVA contiguity.
    pub const fn contiguous(mut self) -> Self {
        self.iova_contiguous = true;
        self
    }
}

/// Why a DMA allocation failed, and what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DmaError {
    /// The request itself is malformed (zero length, alignment not a power of two, …).
    BadRequest {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not enough memory of the backing kind is free.
    Exhausted {
        /// Bytes asked for.
        requested: usize,
        /// Size of the backing pages (2 MiB for hugepages, 4 KiB for plain memory).
        page_size: usize,
        /// How many more such pages would satisfy the request.
        pages_short: usize,
    },
    /// A contiguous IOVA range of that size cannot be provided by this OS right now.
    NotContiguous {
        /// Bytes asked for.
        requested: usize,
        /// The longest contiguous run this OS could offer.
        longest_run: usize,
    },
    /// The operation needs a privilege this process lacks.
    Permission {
        /// What was attempted.
        op: &'static str,
        /// How to obtain the privilege.
        hint: &'static str,
    },
    /// The OS refused for another reason.
    Os {
        /// What was attempted.
        op: &'static str,
        /// The OS's error code (errno on Linux).
        code: i32,
    },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmaError::BadRequest { reason } => write!(f, "bad DMA request: {reason}"),
            DmaError::Exhausted {
                requested,
                page_size,
                pages_short,
            } => {
                write!(
                    f,
                    "DMA memory exhausted: {requested} bytes requested; need {pages_short} more \
                     {} KiB pages",
                    page_size / 1024
                )?;
                // The hint names the Linux knob for that page size.
                match page_size {
                    0x20_0000 => write!(
                        f,
                        " (on Linux with hugepages: raise /proc/sys/vm/nr_hugepages by \
                         {pages_short})"
                    ),
                    0x4000_0000 => write!(
                        f,
                        " (on Linux: raise /sys/kernel/mm/hugepages/hugepages-1048576kB/\
                         nr_hugepages by {pages_short})"
                    ),
                    _ => write!(f, " (free memory, or raise the process's memory limit)"),
                }
            }
            DmaError::NotContiguous {
                requested,
                longest_run,
            } => write!(
                f,
                "no IOVA-contiguous run of {requested} bytes (longest: {longest_run}); use an \
                 IOMMU (VFIO), larger pages, or drop the contiguity requirement"
            ),
            DmaError::Permission { op, hint } => write!(f, "{op}: permission denied; {hint}"),
            DmaError::Os { op, code } => write!(f, "{op} failed with OS error {code}"),
        }
    }
}

impl core::error::Error for DmaError {}

/// A pinned, zeroed region of memory a device can reach.
///
/// Dropping the region frees it (and removes any IOMMU mapping); a device must be stopped from
/// using it before that.
///
/// # Safety
/// Implementors promise that for the region's whole life:
/// - `va()..va()+len()` is valid, writable memory of this process, not aliased by any Rust
///   reference the implementor hands out, and pinned (never moved, and never swapped wherever
///   a device can reach it);
/// - it was zeroed when allocated;
/// - [`iova_at`](Self::iova_at) returns the address a device must use to reach that byte, and
///   [`contiguous_from`](Self::contiguous_from) never overstates a contiguous run.
pub unsafe trait DmaRegion: Send + Sync {
    /// The first byte as a raw pointer, with the provenance of the whole region: drivers and
    /// pools derive every pointer into the region from it, never from an integer address.
    fn as_ptr(&self) -> *mut u8;

    /// The first byte's virtual address (for arithmetic and display, not for dereferencing).
    #[inline(always)]
    fn va(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.as_ptr())
    }

    /// Length in bytes.
    fn len(&self) -> usize;

    /// Whether the region has length zero (never, for an allocated one).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The IOVA of the byte at `offset`, or `None` past the end.
    fn iova_at(&self, offset: usize) -> Option<Iova>;

    /// How many bytes from `offset` on are IOVA-contiguous with it (0 past the end).
    fn contiguous_from(&self, offset: usize) -> usize;

    /// Whether the whole region is one IOVA-contiguous run.
    fn is_iova_contiguous(&self) -> bool {
        self.contiguous_from(0) == self.len()
    }

    /// The IOVA of virtual address `va`, or `None` if `va` is outside the region.
    #[inline]
    fn iova_of(&self, va: VirtAddr) -> Option<Iova> {
        let off = va.offset_from(self.va())?;
        self.iova_at(off)
    }
}

/// An OS that hands out DMA memory.
pub trait DmaAlloc {
    /// The region type this OS returns.
    type Region: DmaRegion + 'static;

    /// Allocates a zeroed, pinned region of at least `req.len` bytes.
    fn dma_alloc(&self, req: &DmaRequest<'_>) -> Result<Self::Region, DmaError>;

    /// Frees a region; the same as dropping it, spelled out for readers of driver code.
    fn dma_free(&self, region: Self::Region) {
        drop(region);
    }
}

/// Checks the parts of a request every implementation must reject the same way.
pub fn validate_request(req: &DmaRequest<'_>) -> Result<(), DmaError> {
    if req.len == 0 {
        return Err(DmaError::BadRequest {
            reason: "length is zero; ask for at least one byte",
        });
    }
    if !req.align.is_power_of_two() {
        return Err(DmaError::BadRequest {
            reason: "alignment is not a power of two",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate alloc;
    use alloc::string::ToString;

    #[test]
    fn request_validation() {
        assert!(validate_request(&DmaRequest::new("x", 0)).is_err());
        assert!(validate_request(&DmaRequest::new("x", 10).align(3)).is_err());
        assert!(validate_request(&DmaRequest::new("x", 10).align(4096).contiguous()).is_ok());
    }

    #[test]
    fn exhaustion_says_what_to_do() {
        let e = DmaError::Exhausted {
            requested: 10 << 20,
            page_size: 2 << 20,
            pages_short: 3,
        };
        let s = e.to_string();
        assert!(s.contains("need 3 more 2048 KiB pages"), "{s}");
        assert!(s.contains("/proc/sys/vm/nr_hugepages by 3"), "{s}");
        let e = DmaError::Exhausted {
            requested: 1 << 30,
            page_size: 1 << 30,
            pages_short: 1,
        };
        assert!(e.to_string().contains("hugepages-1048576kB"), "{e}");
    }
}
