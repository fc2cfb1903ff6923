//! The VFIO container: one IOMMU address space shared by every group attached to it.

use super::iova::{IovaRange, IovaSpace};
use super::sys::{self, ArgBuf};
use super::VfioError;
use nix::errno::Errno;
use rdk_core::addr::Iova;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The IOMMU model a container uses, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IommuKind {
    /// `VFIO_TYPE1v2_IOMMU`: type 1 with exact unmap semantics (no partial unmaps).
    Type1v2,
    /// `VFIO_TYPE1_IOMMU`: the original x86 model.
    Type1,
    /// `VFIO_NOIOMMU_IOMMU`: no translation; the device sees physical addresses and nothing
    /// stops a stray DMA (needs `vfio.enable_unsafe_noiommu_mode=1`, taints the kernel).
    NoIommu,
}

impl IommuKind {
    fn raw(self) -> u32 {
        match self {
            IommuKind::Type1v2 => sys::TYPE1V2_IOMMU,
            IommuKind::Type1 => sys::TYPE1_IOMMU,
            IommuKind::NoIommu => sys::NOIOMMU_IOMMU,
        }
    }
}

impl fmt::Display for IommuKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IommuKind::Type1v2 => "VFIO_TYPE1v2_IOMMU",
            IommuKind::Type1 => "VFIO_TYPE1_IOMMU",
            IommuKind::NoIommu => "VFIO_NOIOMMU_IOMMU",
        })
    }
}

/// What the container's IOMMU offers, once a group is attached and the model chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IommuInfo {
    /// The model in use.
    pub kind: IommuKind,
    /// Supported page sizes as a bit mask (bit n: 2^n bytes); 0 for no-IOMMU.
    pub page_sizes: u64,
    /// The IOVA ranges the IOMMU translates (empty: it did not say, or no-IOMMU).
    pub ranges: Vec<IovaRange>,
}

/// One registered DMA mapping.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    va: u64,
    len: u64,
    /// Whether `VFIO_IOMMU_MAP_DMA` has been done (it waits for the first group).
    mapped: bool,
}

#[derive(Debug)]
struct State {
    iommu: Option<IommuInfo>,
    space: IovaSpace,
    /// iova → mapping.
    maps: BTreeMap<u64, Mapping>,
    /// Groups attached now.
    groups: usize,
}

/// A VFIO container (`/dev/vfio/vfio`): the IOMMU context its groups share.
///
/// The IOMMU model is chosen when the first group is attached (the kernel needs a group to
/// know which models apply): TYPE1v2, else TYPE1, or NOIOMMU for a no-IOMMU group. DMA
/// mappings registered before that are kept and mapped then, so memory may be allocated
/// before any device is opened.
pub struct VfioContainer {
    file: File,
    state: Mutex<State>,
}

impl fmt::Debug for VfioContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("VfioContainer")
            .field("iommu", &st.iommu)
            .field("mappings", &st.maps.len())
            .finish()
    }
}

impl VfioContainer {
    /// Opens `/dev/vfio/vfio` and checks the API version.
    pub fn open() -> Result<Self, VfioError> {
        Self::open_path(Path::new("/dev/vfio/vfio"))
    }

    /// Opens the container device at `path`.
    pub fn open_path(path: &Path) -> Result<Self, VfioError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| VfioError::open(path, &e))?;
        let version = sys::ioctl_val(file.as_fd(), sys::GET_API_VERSION, 0)
            .map_err(|e| VfioError::ioctl("VFIO_GET_API_VERSION", e))?;
        if version != sys::API_VERSION {
            return Err(VfioError::ApiVersion { version });
        }
        Ok(Self {
            file,
            state: Mutex::new(State {
                iommu: None,
                space: IovaSpace::assumed(),
                maps: BTreeMap::new(),
                groups: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is one insert
        // or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Whether the kernel offers IOMMU model `kind` for this container.
    pub fn has_extension(&self, kind: IommuKind) -> bool {
        sys::ioctl_val(self.fd(), sys::CHECK_EXTENSION, kind.raw() as _).is_ok_and(|r| r > 0)
    }

    /// The IOMMU model and its limits, once a group is attached.
    pub fn iommu(&self) -> Option<IommuInfo> {
        self.lock().iommu.clone()
    }

    /// Attaches the group `group_fd` (number `group`) and, for the first group, chooses the
    /// IOMMU model and maps every registered region.
    pub(crate) fn attach(
        &self,
        group: u32,
        group_fd: BorrowedFd<'_>,
        noiommu: bool,
    ) -> Result<(), VfioError> {
        let mut st = self.lock();
        if let Some(info) = &st.iommu {
            if (info.kind == IommuKind::NoIommu) != noiommu {
                return Err(VfioError::MixedIommu { group });
            }
        }
        sys::ioctl_set_container(group_fd, self.fd())
            .map_err(|e| VfioError::ioctl("VFIO_GROUP_SET_CONTAINER", e))?;
        st.groups += 1;
        if st.iommu.is_some() {
            return Ok(());
        }
        let r = self.set_model(&mut st, noiommu);
        if r.is_err() {
            // The caller drops the group, which detaches it; count it out now. It was the
            // only group, so the kernel then releases the model and every mapping made so
            // far: forget them too, or the next attach would skip VFIO_SET_IOMMU (the
            // kernel then refuses every device and map with EINVAL) and regions mapped
            // before the failure would count as mapped.
            st.groups -= 1;
            st.iommu = None;
            st.maps.values_mut().for_each(|m| m.mapped = false);
        }
        r
    }

    /// Chooses the IOMMU model for the first group and maps every registered region.
    fn set_model(&self, st: &mut State, noiommu: bool) -> Result<(), VfioError> {
        let candidates: &[IommuKind] = if noiommu {
            &[IommuKind::NoIommu]
        } else {
            &[IommuKind::Type1v2, IommuKind::Type1]
        };
        let kind = candidates
            .iter()
            .copied()
            .find(|&k| self.has_extension(k))
            .ok_or(VfioError::NoIommuModel { noiommu })?;
        sys::ioctl_val(self.fd(), sys::SET_IOMMU, kind.raw() as _)
            .map_err(|e| VfioError::ioctl("VFIO_SET_IOMMU", e))?;
        let info = if kind == IommuKind::NoIommu {
            IommuInfo {
                kind,
                page_sizes: 0,
                ranges: Vec::new(),
            }
        } else {
            self.type1_info(kind)?
        };
        if !info.ranges.is_empty() {
            st.space
                .restrict(&info.ranges)
                .map_err(|(iova, len)| VfioError::IovaOutOfRange { iova, len })?;
        }
        st.iommu = Some(info);
        if kind != IommuKind::NoIommu {
            let pending: Vec<(u64, Mapping)> = st.maps.iter().map(|(&i, &m)| (i, m)).collect();
            for (iova, m) in pending {
                self.map_dma(m.va, iova, m.len)?;
                if let Some(e) = st.maps.get_mut(&iova) {
                    e.mapped = true;
                }
            }
        }
        Ok(())
    }

    /// Detaches the group `group_fd` (`VFIO_GROUP_UNSET_CONTAINER`). When the last group
    /// leaves, the kernel releases the container's IOMMU model and with it every DMA mapping,
    /// so the model is forgotten and the regions still registered become pending again:
    /// their unmap is then only bookkeeping, and the next attach chooses a model and maps
    /// them anew (as for memory allocated before the first device was opened).
    pub(crate) fn detach(&self, group_fd: BorrowedFd<'_>) {
        let mut st = self.lock();
        if sys::ioctl_val(group_fd, sys::GROUP_UNSET_CONTAINER, 0).is_err() {
            // Not attached (an attach that failed half-way): nothing changed in the kernel.
            return;
        }
        st.groups = st.groups.saturating_sub(1);
        if st.groups == 0 {
            st.iommu = None;
            st.maps.values_mut().for_each(|m| m.mapped = false);
        }
    }

    /// `VFIO_IOMMU_GET_INFO`: page sizes and the IOVA-range capability.
    fn type1_info(&self, kind: IommuKind) -> Result<IommuInfo, VfioError> {
        // argsz, flags, iova_pgsizes, cap_offset, pad
        let buf = sys::ioctl_info(self.fd(), sys::IOMMU_GET_INFO, 24, |_| {})
            .map_err(|e| VfioError::ioctl("VFIO_IOMMU_GET_INFO", e))?;
        Ok(parse_type1_info(&buf, kind))
    }

    fn map_dma(&self, va: u64, iova: u64, len: u64) -> Result<(), VfioError> {
        let mut buf = ArgBuf::new(32); // argsz flags vaddr iova size
        buf.set_u32(4, sys::DMA_MAP_FLAG_READ | sys::DMA_MAP_FLAG_WRITE);
        buf.set_u64(8, va);
        buf.set_u64(16, iova);
        buf.set_u64(24, len);
        sys::ioctl_buf(self.fd(), sys::IOMMU_MAP_DMA, &mut buf)
            .map(drop)
            .map_err(|errno| VfioError::DmaMap { iova, len, errno })
    }

    fn unmap_dma(&self, iova: u64, len: u64) -> Result<(), Errno> {
        let mut buf = ArgBuf::new(24); // argsz flags iova size
        buf.set_u64(8, iova);
        buf.set_u64(16, len);
        sys::ioctl_buf(self.fd(), sys::IOMMU_UNMAP_DMA, &mut buf).map(drop)
    }

    /// Gives `va..va+len` (page-aligned, pinned by the kernel while mapped) an IOVA aligned to
    /// `align` and maps it, now or when the first group is attached. For no-IOMMU containers
    /// use physical addresses instead: this fails with [`VfioError::NoIommuHasNoMapping`].
    pub fn dma_map(&self, va: u64, len: u64, align: u64) -> Result<Iova, VfioError> {
        let mut st = self.lock();
        let attached = match &st.iommu {
            Some(i) if i.kind == IommuKind::NoIommu => return Err(VfioError::NoIommuHasNoMapping),
            Some(_) => true,
            None => false,
        };
        let iova = st
            .space
            .alloc(len, align.max(4096))
            .ok_or(VfioError::IovaExhausted { len })?;
        if attached {
            if let Err(e) = self.map_dma(va, iova, len) {
                st.space.free(iova);
                return Err(e);
            }
        }
        st.maps.insert(
            iova,
            Mapping {
                va,
                len,
                mapped: attached,
            },
        );
        Ok(Iova::new(iova))
    }

    /// Unmaps and forgets the mapping at `iova` made by [`dma_map`](Self::dma_map).
    pub fn dma_unmap(&self, iova: Iova) -> Result<(), VfioError> {
        let mut st = self.lock();
        let Some(m) = st.maps.get(&iova.get()).copied() else {
            return Err(VfioError::NotMapped { iova: iova.get() });
        };
        if m.mapped {
            self.unmap_dma(iova.get(), m.len)
                .map_err(|e| VfioError::ioctl("VFIO_IOMMU_UNMAP_DMA", e))?;
        }
        st.maps.remove(&iova.get());
        st.space.free(iova.get());
        Ok(())
    }

    /// Whether `iova` is inside a mapping (for tests that need an address that is not).
    pub fn is_mapped(&self, iova: Iova) -> bool {
        self.lock().space.is_allocated(iova.get())
    }

    /// The IOVA ranges mappings are taken from: what the IOMMU allows (or, before a group is
    /// attached, 39 bits), without the first MiB and the MSI window.
    pub fn usable_ranges(&self) -> Vec<IovaRange> {
        self.lock().space.ranges().to_vec()
    }

    /// How many mappings are registered.
    pub fn mapping_count(&self) -> usize {
        self.lock().maps.len()
    }
}

/// Decodes a `vfio_iommu_type1_info` and its IOVA-range capability.
fn parse_type1_info(buf: &ArgBuf, kind: IommuKind) -> IommuInfo {
    let flags = buf.u32_at(4).unwrap_or(0);
    let page_sizes = if flags & sys::IOMMU_INFO_PGSIZES != 0 {
        buf.u64_at(8).unwrap_or(0)
    } else {
        0
    };
    let mut ranges = Vec::new();
    if flags & sys::IOMMU_INFO_CAPS != 0 {
        for (id, off) in buf.caps(buf.u32_at(16).unwrap_or(0)) {
            if id != sys::IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
                continue;
            }
            // header(8) nr_iovas(4) reserved(4) then {start, end} pairs.
            let n = buf.u32_at(off + 8).unwrap_or(0) as usize;
            for i in 0..n {
                let at = off + 16 + i * 16;
                match (buf.u64_at(at), buf.u64_at(at + 8)) {
                    (Some(start), Some(end)) if start <= end => {
                        ranges.push(IovaRange { start, end })
                    }
                    _ => break, // truncated or nonsense: keep what was valid
                }
            }
        }
    }
    IommuInfo {
        kind,
        page_sizes,
        ranges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_page_sizes_and_iova_ranges_and_survives_a_short_chain() {
        // header(24) | cap at 24: id 1, next 0, nr_iovas 3 (only 2 sent), 2 ranges.
        let mut buf = ArgBuf::new(24 + 16 + 32);
        buf.set_u32(4, sys::IOMMU_INFO_PGSIZES | sys::IOMMU_INFO_CAPS);
        buf.set_u64(8, 0x4020_1000);
        buf.set_u32(16, 24);
        buf.set_u32(24, 1 | (1 << 16));
        buf.set_u32(32, 3);
        buf.set_u64(40, 0);
        buf.set_u64(48, 0xfedf_ffff);
        buf.set_u64(56, 0xfef0_0000);
        buf.set_u64(64, 0xffff_ffff_ffff);
        let info = parse_type1_info(&buf, IommuKind::Type1v2);
        assert_eq!(info.page_sizes, 0x4020_1000);
        assert_eq!(
            info.ranges,
            vec![
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0xffff_ffff_ffff
                }
            ]
        );
        buf.set_u32(4, 0);
        let bare = parse_type1_info(&buf, IommuKind::Type1);
        assert_eq!(
            (bare.page_sizes, bare.ranges.len()),
            (0, 0),
            "flags say nothing"
        );
    }
}
