//! A PCI function opened through VFIO: [`VfioDevice`] implements rdk-core's [`PciDevice`].

use super::bar::{plan_areas, Area, VfioBar};
use super::group::VfioGroup;
use super::sys::{self, ArgBuf};
use super::VfioError;
use crate::eventfd::EventFd;
use crate::pagemap::base_page_size;
use nix::errno::Errno;
use rdk_core::os::pci::{IrqKind, PciDevice, PciError};
use rdk_core::pci::caps::{self, id as cap_id};
use rdk_core::pci::config::{DeviceConfig, BAR0};
use rdk_core::pci::{BarInfo, BarKind, MsixInfo, PciAddr};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// What `VFIO_DEVICE_GET_INFO` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of interrupt indices.
    pub num_irqs: u32,
}

impl DeviceInfo {
    /// Whether `VFIO_DEVICE_RESET` is supported.
    pub fn can_reset(&self) -> bool {
        self.flags & sys::DEVICE_FLAGS_RESET != 0
    }

    /// Whether it is a PCI device.
    pub fn is_pci(&self) -> bool {
        self.flags & sys::DEVICE_FLAGS_PCI != 0
    }
}

/// What `VFIO_DEVICE_GET_REGION_INFO` says about one region, capabilities included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Region index (vfio-pci: 0..=5 BARs, 6 ROM, 7 config, 8 VGA).
    pub index: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes (0: not implemented).
    pub size: u64,
    /// Offset of the region in the device file.
    pub offset: u64,
    /// The sparse-mmap capability's areas `[start, end)`, if present.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// Whether the MSI-X table in this region may be mapped (`MSIX_MAPPABLE` capability).
    pub msix_mappable: bool,
}

impl RegionInfo {
    /// Whether the region may be read.
    pub fn readable(&self) -> bool {
        self.flags & sys::REGION_INFO_FLAG_READ != 0
    }
    /// Whether the region may be written.
    pub fn writable(&self) -> bool {
        self.flags & sys::REGION_INFO_FLAG_WRITE != 0
    }
    /// Whether (parts of) the region may be mmapped.
    pub fn mmap(&self) -> bool {
        self.flags & sys::REGION_INFO_FLAG_MMAP != 0
    }
}

/// What `VFIO_DEVICE_GET_IRQ_INFO` says about one interrupt index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IrqInfo {
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Number of vectors.
    pub count: u32,
}

/// A PCI function opened through VFIO.
///
/// It keeps its group (and so the container and its DMA mappings) alive. Dropping it closes
/// the device file: the kernel then disables its interrupts and resets it if it can.
pub struct VfioDevice {
    addr: PciAddr,
    file: Arc<File>,
    info: DeviceInfo,
    regions: Vec<Option<RegionInfo>>,
    irqs: [IrqInfo; 3],
    config: RegionInfo,
    msix: Option<MsixInfo>,
    /// Vectors currently enabled per kind (INTx, MSI, MSI-X), to know when the kernel needs a
    /// disable before a different count.
    enabled: Mutex<[u32; 3]>,
    /// Last, so the device fd is closed before the group may leave its container.
    group: Arc<VfioGroup>,
}

impl std::fmt::Debug for VfioDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioDevice")
            .field("addr", &self.addr)
            .field("group", &self.group.number())
            .field("info", &self.info)
            .field("msix", &self.msix)
            .finish()
    }
}

fn irq_index(kind: IrqKind) -> usize {
    match kind {
        IrqKind::Intx => sys::PCI_INTX_IRQ_INDEX as usize,
        IrqKind::Msi => sys::PCI_MSI_IRQ_INDEX as usize,
        IrqKind::Msix => sys::PCI_MSIX_IRQ_INDEX as usize,
    }
}

/// An errno as a PCI error: permission errors with a hint, the rest as is.
pub(crate) fn os_err(op: &'static str, e: Errno) -> PciError {
    match e {
        Errno::EPERM | Errno::EACCES => PciError::Permission {
            op,
            hint: "run as root, or give this user the VFIO group device (/dev/vfio/N)",
        },
        _ => PciError::Os { op, code: e as i32 },
    }
}

impl VfioDevice {
    /// Gets the device fd for `addr` from `group` and reads what the kernel says about it.
    pub(crate) fn open(group: Arc<VfioGroup>, addr: PciAddr) -> Result<Self, VfioError> {
        let name = CString::new(addr.to_string()).map_err(|_| VfioError::NoGroup { addr })?;
        let file = Arc::new(
            sys::ioctl_get_device_fd(group.fd(), &name)
                .map_err(|e| VfioError::ioctl("VFIO_GROUP_GET_DEVICE_FD", e))?,
        );
        let info = device_info(&file)?;
        if !info.is_pci() {
            return Err(VfioError::NotPci { addr });
        }
        // vfio-pci has 9 fixed regions; device-specific ones beyond are not ours to use.
        let mut regions = Vec::new();
        for index in 0..info.num_regions.min(sys::PCI_NUM_REGIONS) {
            // The VGA region of a non-VGA device answers EINVAL: simply absent.
            regions.push(region_info(&file, index).ok());
        }
        let config = regions
            .get(sys::PCI_CONFIG_REGION_INDEX as usize)
            .cloned()
            .flatten()
            .filter(|r| r.size >= 64 && r.readable())
            .ok_or(VfioError::NoConfigRegion { addr })?;
        let mut irqs = [IrqInfo::default(); 3];
        for (index, slot) in irqs.iter_mut().enumerate() {
            if (index as u32) < info.num_irqs {
                *slot = irq_info(&file, index as u32)?;
            }
        }
        let mut dev = Self {
            addr,
            file,
            info,
            regions,
            irqs,
            config,
            msix: None,
            enabled: Mutex::new([0; 3]),
            group,
        };
        // A capability list the device garbles leaves MSI-X unknown; its BAR is then mapped
        // only where the kernel allows, which is safe either way.
        let cfg = DeviceConfig(&dev);
        dev.msix = match caps::find(&cfg, cap_id::MSIX) {
            Ok(Some(cap)) => MsixInfo::read(&cfg, cap.offset).ok(),
            _ => None,
        };
        Ok(dev)
    }

    /// `VFIO_DEVICE_GET_INFO`.
    pub fn info(&self) -> DeviceInfo {
        self.info
    }

    /// Region `index`, if the device has it.
    pub fn region_info(&self, index: u32) -> Option<&RegionInfo> {
        self.regions.get(index as usize)?.as_ref()
    }

    /// Interrupt index `kind`.
    pub fn irq_info(&self, kind: IrqKind) -> IrqInfo {
        self.irqs[irq_index(kind)]
    }

    /// The MSI-X capability, if the device has one.
    pub fn msix(&self) -> Option<MsixInfo> {
        self.msix
    }

    /// The group the device belongs to.
    pub fn group(&self) -> &Arc<VfioGroup> {
        &self.group
    }

    fn bar_region(&self, bar: u8) -> Result<&RegionInfo, PciError> {
        if bar > 5 {
            return Err(PciError::NoSuchBar { bar });
        }
        self.region_info(bar as u32)
            .filter(|r| r.size > 0)
            .ok_or(PciError::NoSuchBar { bar })
    }

    fn set_irqs(&self, index: u32, flags: u32, count: u32, fds: &[i32]) -> Result<(), Errno> {
        // argsz flags index start count, then one i32 per vector for DATA_EVENTFD.
        let mut buf = ArgBuf::new(20 + 4 * fds.len());
        buf.set_u32(4, flags);
        buf.set_u32(8, index);
        buf.set_u32(12, 0);
        buf.set_u32(16, count);
        for (i, fd) in fds.iter().enumerate() {
            buf.set_u32(20 + 4 * i, *fd as u32);
        }
        sys::ioctl_buf(self.file_fd(), sys::DEVICE_SET_IRQS, &mut buf).map(drop)
    }

    /// Maps BAR `bar` leaving the pages of the MSI-X table unmapped even where the kernel
    /// would map them (as kernels before 4.16 require): accesses there go through the device
    /// file. For platforms where touching the table directly is unwanted, and to test the
    /// path older kernels take.
    pub fn map_bar_without_msix_table(&self, bar: u8) -> Result<VfioBar, PciError> {
        self.map_bar_with(bar, true)
    }

    fn map_bar_with(&self, bar: u8, avoid_msix: bool) -> Result<VfioBar, PciError> {
        let info = self.bar_info(bar)?.ok_or(PciError::NoSuchBar { bar })?;
        let region = self.bar_region(bar)?;
        if !region.readable() || !region.writable() {
            return Err(PciError::BarUnusable {
                bar,
                reason: "VFIO reports the region as not readable and writable",
            });
        }
        let page = base_page_size() as u64;
        let areas = if info.mappable {
            let msix_table = self
                .msix
                .filter(|m| m.table_bar == bar && (avoid_msix || !region.msix_mappable))
                .map(|m| m.table_range());
            plan_areas(region.size, region.sparse.as_deref(), msix_table, page)
        } else {
            Vec::<Area>::new() // an I/O BAR, or one the kernel will not map: all through the file
        };
        VfioBar::new(
            self.file.clone(),
            bar,
            region.offset,
            region.size,
            areas,
            page,
        )
        .map(|b| b.keeping(self.group.clone()))
        .map_err(|e| os_err("mmap the BAR through VFIO", e))
    }

    fn file_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }

    fn enabled(&self) -> std::sync::MutexGuard<'_, [u32; 3]> {
        self.enabled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn device_info(file: &File) -> Result<DeviceInfo, VfioError> {
    use std::os::fd::AsFd;
    let mut buf = ArgBuf::new(24); // argsz flags num_regions num_irqs cap_offset pad
    sys::ioctl_buf(file.as_fd(), sys::DEVICE_GET_INFO, &mut buf)
        .map_err(|e| VfioError::ioctl("VFIO_DEVICE_GET_INFO", e))?;
    Ok(DeviceInfo {
        flags: buf.u32_at(4).unwrap_or(0),
        num_regions: buf.u32_at(8).unwrap_or(0),
        num_irqs: buf.u32_at(12).unwrap_or(0),
    })
}

/// `VFIO_DEVICE_GET_REGION_INFO` with its capability chain (asked again with the size the
/// kernel says it needs).
fn region_info(file: &File, index: u32) -> Result<RegionInfo, VfioError> {
    use std::os::fd::AsFd;
    // argsz flags index cap_offset size offset
    let buf = sys::ioctl_info(file.as_fd(), sys::DEVICE_GET_REGION_INFO, 32, |b| {
        b.set_u32(8, index)
    })
    .map_err(|e| VfioError::ioctl("VFIO_DEVICE_GET_REGION_INFO", e))?;
    Ok(parse_region_info(&buf, index))
}

/// Decodes a `vfio_region_info` and its capability chain (sparse mmap, MSI-X mappable).
fn parse_region_info(buf: &ArgBuf, index: u32) -> RegionInfo {
    let flags = buf.u32_at(4).unwrap_or(0);
    let mut info = RegionInfo {
        index,
        flags,
        size: buf.u64_at(16).unwrap_or(0),
        offset: buf.u64_at(24).unwrap_or(0),
        sparse: None,
        msix_mappable: false,
    };
    if flags & sys::REGION_INFO_FLAG_CAPS != 0 {
        for (id, off) in buf.caps(buf.u32_at(12).unwrap_or(0)) {
            match id {
                sys::REGION_INFO_CAP_SPARSE_MMAP => {
                    // header(8) nr_areas(4) reserved(4) then {offset, size} pairs.
                    let n = buf.u32_at(off + 8).unwrap_or(0) as usize;
                    let mut areas = Vec::new();
                    for i in 0..n {
                        let at = off + 16 + i * 16;
                        let (Some(o), Some(s)) = (buf.u64_at(at), buf.u64_at(at + 8)) else {
                            break;
                        };
                        match o.checked_add(s) {
                            Some(end) if s > 0 => areas.push((o, end)),
                            _ => {} // empty or overflowing: nothing to map
                        }
                    }
                    info.sparse = Some(areas);
                }
                sys::REGION_INFO_CAP_MSIX_MAPPABLE => info.msix_mappable = true,
                _ => {}
            }
        }
    }
    info
}

fn irq_info(file: &File, index: u32) -> Result<IrqInfo, VfioError> {
    use std::os::fd::AsFd;
    let mut buf = ArgBuf::new(16); // argsz flags index count
    buf.set_u32(8, index);
    sys::ioctl_buf(file.as_fd(), sys::DEVICE_GET_IRQ_INFO, &mut buf)
        .map_err(|e| VfioError::ioctl("VFIO_DEVICE_GET_IRQ_INFO", e))?;
    Ok(IrqInfo {
        flags: buf.u32_at(4).unwrap_or(0),
        count: buf.u32_at(12).unwrap_or(0),
    })
}

impl PciDevice for VfioDevice {
    type Bar = VfioBar;
    type Irq = EventFd;

    fn addr(&self) -> PciAddr {
        self.addr
    }

    fn config_len(&self) -> u16 {
        self.config.size.min(4096) as u16
    }

    fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), PciError> {
        self.config_check(offset, buf.len())?;
        match self.file.read_at(buf, self.config.offset + offset as u64) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(PciError::Os {
                op: "read VFIO config space (short read)",
                code: libc::EIO,
            }),
            Err(e) => Err(io_pci("read VFIO config space", &e)),
        }
    }

    fn config_write(&self, offset: u16, data: &[u8]) -> Result<(), PciError> {
        self.config_check(offset, data.len())?;
        match self.file.write_at(data, self.config.offset + offset as u64) {
            Ok(n) if n == data.len() => Ok(()),
            Ok(_) => Err(PciError::Os {
                op: "write VFIO config space (short write)",
                code: libc::EIO,
            }),
            Err(e) => Err(io_pci("write VFIO config space", &e)),
        }
    }

    fn bar_info(&self, bar: u8) -> Result<Option<BarInfo>, PciError> {
        let region = match self.bar_region(bar) {
            Ok(r) => r,
            Err(PciError::NoSuchBar { .. }) if bar <= 5 => return Ok(None),
            Err(e) => return Err(e),
        };
        let raw = self.config_read_u32(BAR0 + 4 * bar as u16)?;
        let kind = BarKind::decode(raw, bar)?;
        Ok(Some(BarInfo {
            index: bar,
            kind,
            size: region.size,
            mappable: kind.is_memory() && region.mmap(),
        }))
    }

    fn map_bar(&self, bar: u8) -> Result<VfioBar, PciError> {
        self.map_bar_with(bar, false)
    }

    fn irq_count(&self, kind: IrqKind) -> Result<u32, PciError> {
        let info = self.irq_info(kind);
        Ok(if info.flags & sys::IRQ_INFO_EVENTFD != 0 {
            info.count
        } else {
            0
        })
    }

    fn irq_event(&self) -> Result<EventFd, PciError> {
        EventFd::new().map_err(|e| match e {
            rdk_core::os::EventError::Os { op, code } => PciError::Os { op, code },
            _ => PciError::Os {
                op: "create an eventfd for an interrupt (out of file descriptors?)",
                code: libc::EMFILE,
            },
        })
    }

    fn irq_enable(&self, kind: IrqKind, events: &[&EventFd]) -> Result<(), PciError> {
        if events.is_empty() {
            return self.irq_disable(kind);
        }
        let available = self.irq_count(kind)?;
        let wanted = u32::try_from(events.len()).unwrap_or(u32::MAX);
        if wanted > available {
            return Err(PciError::IrqUnsupported {
                kind,
                wanted,
                available,
            });
        }
        let index = irq_index(kind);
        let mut enabled = self.enabled();
        // The kernel changes eventfds of an enabled block in place but cannot resize it.
        if enabled[index] != 0 && enabled[index] != wanted {
            self.set_irqs(
                index as u32,
                sys::IRQ_SET_DATA_NONE | sys::IRQ_SET_ACTION_TRIGGER,
                0,
                &[],
            )
            .map_err(|e| os_err("disable interrupts (VFIO_DEVICE_SET_IRQS)", e))?;
            enabled[index] = 0;
        }
        let fds: Vec<i32> = events.iter().map(|e| e.as_raw_fd()).collect();
        self.set_irqs(
            index as u32,
            sys::IRQ_SET_DATA_EVENTFD | sys::IRQ_SET_ACTION_TRIGGER,
            wanted,
            &fds,
        )
        .map_err(|e| match e {
            Errno::EINVAL if enabled.iter().any(|&n| n != 0) => PciError::Os {
                op: "enable interrupts: another interrupt kind is enabled; disable it first",
                code: e as i32,
            },
            _ => os_err("enable interrupts (VFIO_DEVICE_SET_IRQS)", e),
        })?;
        enabled[index] = wanted;
        Ok(())
    }

    fn irq_disable(&self, kind: IrqKind) -> Result<(), PciError> {
        let index = irq_index(kind);
        self.set_irqs(
            index as u32,
            sys::IRQ_SET_DATA_NONE | sys::IRQ_SET_ACTION_TRIGGER,
            0,
            &[],
        )
        .map_err(|e| os_err("disable interrupts (VFIO_DEVICE_SET_IRQS)", e))?;
        self.enabled()[index] = 0;
        Ok(())
    }

    fn irq_unmask(&self, kind: IrqKind) -> Result<(), PciError> {
        if kind != IrqKind::Intx {
            return Ok(());
        }
        self.set_irqs(
            sys::PCI_INTX_IRQ_INDEX,
            sys::IRQ_SET_DATA_NONE | sys::IRQ_SET_ACTION_UNMASK,
            1,
            &[],
        )
        .map_err(|e| os_err("unmask INTx (VFIO_DEVICE_SET_IRQS)", e))
    }

    fn reset(&self) -> Result<(), PciError> {
        if !self.info.can_reset() {
            return Err(PciError::Unsupported {
                op: "reset (VFIO reports no reset method for this device)",
            });
        }
        sys::ioctl_val(self.file_fd(), sys::DEVICE_RESET, 0)
            .map(drop)
            .map_err(|e| os_err("VFIO_DEVICE_RESET", e))
    }
}

impl VfioDevice {
    fn config_check(&self, offset: u16, len: usize) -> Result<(), PciError> {
        let limit = self.config_len() as u64;
        let end = offset as u64 + len as u64;
        if end > limit {
            return Err(PciError::OutOfRange {
                offset: offset as u64,
                width: len,
                limit,
            });
        }
        Ok(())
    }
}

fn io_pci(op: &'static str, e: &std::io::Error) -> PciError {
    os_err(op, Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region info as vfio-pci writes it: 32-byte header, then a chain of capabilities.
    fn region(caps: &[(u16, &[u64])]) -> ArgBuf {
        let len = 32 + caps.iter().map(|(_, b)| 8 + 8 * b.len()).sum::<usize>();
        let mut buf = ArgBuf::new(len);
        buf.set_u32(4, 0xf); // READ | WRITE | MMAP | CAPS
        buf.set_u64(16, 0x4000);
        buf.set_u64(24, 3 << 40);
        let mut off = 32;
        buf.set_u32(12, if caps.is_empty() { 0 } else { 32 });
        for (i, (id, body)) in caps.iter().enumerate() {
            let next = off + 8 + 8 * body.len();
            buf.set_u32(off, *id as u32 | (1 << 16));
            buf.set_u32(off + 4, if i + 1 < caps.len() { next as u32 } else { 0 });
            for (j, v) in body.iter().enumerate() {
                buf.set_u64(off + 8 + 8 * j, *v);
            }
            off = next;
        }
        buf
    }

    #[test]
    fn decodes_sparse_areas_and_msix_mappable() {
        // nr_areas = 2 (low u32 of the first word), then {offset, size} pairs.
        let sparse: &[u64] = &[2, 0, 0x1000, 0x2000, 0x2000];
        let r = parse_region_info(&region(&[(3, &[]), (1, sparse)]), 3);
        assert_eq!((r.size, r.offset), (0x4000, 3 << 40));
        assert!(r.readable() && r.writable() && r.mmap() && r.msix_mappable);
        assert_eq!(r.sparse, Some(vec![(0, 0x1000), (0x2000, 0x4000)]));
    }

    #[test]
    fn a_sparse_cap_claiming_more_areas_than_sent_keeps_only_what_is_there() {
        let lying: &[u64] = &[1000, 0, 0x1000, 0x5000];
        let r = parse_region_info(&region(&[(1, lying)]), 0);
        assert_eq!(
            r.sparse,
            Some(vec![(0, 0x1000)]),
            "the half-sent area is dropped"
        );
        let overflow: &[u64] = &[1, u64::MAX - 1, 0x10];
        let r = parse_region_info(&region(&[(1, overflow)]), 0);
        assert_eq!(r.sparse, Some(vec![]), "offset + size overflows");
        let none = parse_region_info(&region(&[]), 7);
        assert_eq!((none.sparse, none.msix_mappable), (None, false));
    }
}
