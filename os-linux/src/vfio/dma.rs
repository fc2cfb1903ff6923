//! DMA memory that devices opened through VFIO can reach: every region [`VfioOs`] allocates
//! is mapped into the container (IOMMU) or, in no-IOMMU mode, used at its physical addresses.
#![allow(unsafe_code)] // `unsafe impl DmaRegion`, with its reasoning next to it.

use super::container::VfioContainer;
use super::device::VfioDevice;
use super::{Vfio, VfioError};
use crate::dma::{IovaMode, LinuxRegion};
use crate::eventfd::EventFd;
use crate::os::LinuxOs;
use nix::errno::Errno;
use rdk_core::addr::{Iova, VirtAddr};
use rdk_core::os::pci::{Pci, PciError};
use rdk_core::os::{Clock, DmaAlloc, DmaError, DmaRegion, DmaRequest, EventError, Events, Instant};
use rdk_core::pci::PciAddr;
use std::fmt;
use std::sync::Arc;

/// A [`LinuxRegion`] a device can reach through VFIO.
///
/// With an IOMMU it has an IOVA range of its own in the container, mapped for as long as the
/// region lives (unmapped on drop, before the memory is freed). In no-IOMMU mode its IOVAs
/// are the physical addresses of its pages.
pub struct VfioRegion {
    // Field order matters only for readers: `Drop` unmaps before the fields drop.
    region: LinuxRegion,
    /// The container mapping: its base IOVA and the container (`None`: IOVA = PA).
    mapping: Option<(Iova, Arc<VfioContainer>)>,
}

impl VfioRegion {
    /// The underlying memory region (its fd, page size, name).
    pub fn region(&self) -> &LinuxRegion {
        &self.region
    }

    /// Whether the region is mapped through an IOMMU (else its IOVAs are physical addresses).
    pub fn is_iommu_mapped(&self) -> bool {
        self.mapping.is_some()
    }
}

impl Drop for VfioRegion {
    fn drop(&mut self) {
        if let Some((iova, container)) = &self.mapping {
            // If the unmap failed, the kernel still holds the pages pinned for the container
            // (it took its own references at MAP_DMA), so freeing our mapping cannot hand
            // device-reachable memory to anyone else; the container's close releases them.
            let _ = container.dma_unmap(*iova);
        }
    }
}

// SAFETY: the promises of DmaRegion:
// - va/len are the LinuxRegion's, which keeps them valid, pinned and unaliased (its own
//   DmaRegion impl); this wrapper hands out no references either. With an IOMMU the kernel
//   additionally pins the pages for MAP_DMA.
// - zeroed: the LinuxRegion was.
// - with a mapping, MAP_DMA mapped exactly va..va+len at iova..iova+len (the container
//   refuses, and the allocation fails, otherwise; a mapping registered before the first
//   group is attached is mapped then, and the device cannot DMA before it is opened), so
//   `iova + offset` is the whole, contiguous translation. Without one, the LinuxRegion's
//   physical-address translation is used unchanged.
unsafe impl DmaRegion for VfioRegion {
    #[inline]
    fn va(&self) -> VirtAddr {
        self.region.va()
    }

    #[inline(always)]
    fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    #[inline]
    fn len(&self) -> usize {
        self.region.len()
    }

    #[inline]
    fn iova_at(&self, offset: usize) -> Option<Iova> {
        match &self.mapping {
            Some((base, _)) if offset < self.region.len() => base.checked_add(offset as u64),
            Some(_) => None,
            None => self.region.iova_at(offset),
        }
    }

    #[inline]
    fn contiguous_from(&self, offset: usize) -> usize {
        match &self.mapping {
            Some(_) => self.region.len().saturating_sub(offset),
            None => self.region.contiguous_from(offset),
        }
    }
}

impl fmt::Debug for VfioRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioRegion")
            .field("region", &self.region)
            .field("iova", &self.mapping.as_ref().map(|(i, _)| *i))
            .finish()
    }
}

/// The OS for hardware PMDs on Linux: DMA memory from a [`LinuxOs`], each region mapped into
/// the [`Vfio`] container, and PCI devices opened through that container.
///
/// The memory's [`IovaMode`] says which kind of group it serves: [`IovaMode::Va`] for groups
/// behind an IOMMU (IOVAs are allocated compactly in the container, see the `iova` module),
/// [`IovaMode::Pa`] for no-IOMMU groups (IOVA = physical address from pagemap, no mapping).
/// A device whose group does not fit is refused at open.
#[derive(Debug)]
pub struct VfioOs {
    os: LinuxOs,
    vfio: Vfio,
}

impl VfioOs {
    /// Combines memory and VFIO.
    pub fn new(os: LinuxOs, vfio: Vfio) -> Self {
        Self { os, vfio }
    }

    /// The memory side.
    pub fn os(&self) -> &LinuxOs {
        &self.os
    }

    /// The VFIO side.
    pub fn vfio(&self) -> &Vfio {
        &self.vfio
    }

    /// Opens the device at `addr`, checking that its group fits the memory's IOVA mode.
    pub fn open(&self, addr: PciAddr) -> Result<VfioDevice, VfioError> {
        let group = self.vfio.group_of(addr)?;
        let pa = self.os.config().iova_mode == IovaMode::Pa;
        if group.is_noiommu() != pa {
            return Err(VfioError::IovaModeMismatch {
                noiommu: group.is_noiommu(),
            });
        }
        VfioDevice::open(group, addr)
    }
}

impl Pci for VfioOs {
    type Device = VfioDevice;

    fn pci_open(&self, addr: PciAddr) -> Result<VfioDevice, PciError> {
        self.open(addr).map_err(PciError::from)
    }
}

fn vfio_to_dma(e: VfioError) -> DmaError {
    match e {
        VfioError::DmaMap {
            errno: Errno::ENOMEM | Errno::EPERM,
            ..
        } => DmaError::Permission {
            op: "VFIO_IOMMU_MAP_DMA (pins the pages)",
            hint: "raise RLIMIT_MEMLOCK (ulimit -l) or run as root",
        },
        VfioError::DmaMap { errno, .. } => DmaError::Os {
            op: "VFIO_IOMMU_MAP_DMA",
            code: errno as i32,
        },
        VfioError::IovaExhausted { .. } => DmaError::Os {
            op: "find a free IOVA range in the VFIO container",
            code: libc::ENOSPC,
        },
        _ => DmaError::Os {
            op: "map DMA memory into the VFIO container",
            code: libc::EINVAL,
        },
    }
}

impl DmaAlloc for VfioOs {
    type Region = VfioRegion;

    fn dma_alloc(&self, req: &DmaRequest<'_>) -> Result<VfioRegion, DmaError> {
        let region = self.os.dma_alloc(req)?;
        if region.iova_mode() == IovaMode::Pa {
            return Ok(VfioRegion {
                region,
                mapping: None,
            });
        }
        let container = self.vfio.container().clone();
        // Aligning the IOVA like the pages lets the IOMMU use large pages for hugepages.
        let align = region.page_size().max(req.align) as u64;
        let iova = container
            .dma_map(region.va().get() as u64, region.len() as u64, align)
            .map_err(vfio_to_dma)?;
        Ok(VfioRegion {
            region,
            mapping: Some((iova, container)),
        })
    }
}

impl Events for VfioOs {
    type Event = EventFd;

    fn event_create(&self) -> Result<EventFd, EventError> {
        self.os.event_create()
    }
}

impl Clock for VfioOs {
    #[inline]
    fn now(&self) -> Instant {
        self.os.now()
    }
}
