//! The VFIO ioctl interface (include/uapi/linux/vfio.h): request numbers, flag bits, and one
//! argument buffer type through which every variable-size structure is passed and parsed.
//!
//! The structures are not declared as Rust types: each is a run of `u32`/`u64` fields at fixed
//! offsets, followed (for the info calls) by a capability chain whose offsets come from the
//! kernel. Reading them through bounds-checked accessors on one buffer keeps the `unsafe` to
//! the ioctl calls themselves.
#![allow(unsafe_code)] // the ioctl calls and the byte view of the argument buffer.

use nix::errno::Errno;
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`: VFIO's requests carry no size or direction bits.
const fn io(nr: u32) -> u32 {
    ((b';' as u32) << 8) | (100 + nr)
}

pub(crate) const GET_API_VERSION: u32 = io(0);
pub(crate) const CHECK_EXTENSION: u32 = io(1);
pub(crate) const SET_IOMMU: u32 = io(2);
pub(crate) const GROUP_GET_STATUS: u32 = io(3);
pub(crate) const GROUP_SET_CONTAINER: u32 = io(4);
pub(crate) const GROUP_UNSET_CONTAINER: u32 = io(5);
pub(crate) const GROUP_GET_DEVICE_FD: u32 = io(6);
pub(crate) const DEVICE_GET_INFO: u32 = io(7);
pub(crate) const DEVICE_GET_REGION_INFO: u32 = io(8);
pub(crate) const DEVICE_GET_IRQ_INFO: u32 = io(9);
pub(crate) const DEVICE_SET_IRQS: u32 = io(10);
pub(crate) const DEVICE_RESET: u32 = io(11);
pub(crate) const IOMMU_GET_INFO: u32 = io(12);
pub(crate) const IOMMU_MAP_DMA: u32 = io(13);
pub(crate) const IOMMU_UNMAP_DMA: u32 = io(14);

/// `VFIO_API_VERSION`.
pub(crate) const API_VERSION: i32 = 0;

/// IOMMU models (`VFIO_CHECK_EXTENSION` / `VFIO_SET_IOMMU` arguments).
pub(crate) const TYPE1_IOMMU: u32 = 1;
pub(crate) const TYPE1V2_IOMMU: u32 = 3;
pub(crate) const NOIOMMU_IOMMU: u32 = 8;

/// `vfio_group_status.flags`.
pub(crate) const GROUP_FLAGS_VIABLE: u32 = 1 << 0;

/// `vfio_device_info.flags`.
pub(crate) const DEVICE_FLAGS_RESET: u32 = 1 << 0;
pub(crate) const DEVICE_FLAGS_PCI: u32 = 1 << 1;

/// `vfio_region_info.flags`.
pub(crate) const REGION_INFO_FLAG_READ: u32 = 1 << 0;
pub(crate) const REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
pub(crate) const REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
pub(crate) const REGION_INFO_FLAG_CAPS: u32 = 1 << 3;
/// Region capability ids.
pub(crate) const REGION_INFO_CAP_SPARSE_MMAP: u16 = 1;
pub(crate) const REGION_INFO_CAP_MSIX_MAPPABLE: u16 = 3;

/// vfio-pci's fixed region indices.
pub(crate) const PCI_CONFIG_REGION_INDEX: u32 = 7;
/// Regions vfio-pci always reports: BAR0..5, ROM, config, VGA.
pub(crate) const PCI_NUM_REGIONS: u32 = 9;

/// vfio-pci's interrupt indices.
pub(crate) const PCI_INTX_IRQ_INDEX: u32 = 0;
pub(crate) const PCI_MSI_IRQ_INDEX: u32 = 1;
pub(crate) const PCI_MSIX_IRQ_INDEX: u32 = 2;

/// `vfio_irq_info.flags`.
pub(crate) const IRQ_INFO_EVENTFD: u32 = 1 << 0;

/// `vfio_irq_set.flags`.
pub(crate) const IRQ_SET_DATA_NONE: u32 = 1 << 0;
pub(crate) const IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
pub(crate) const IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
pub(crate) const IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

/// `vfio_iommu_type1_info.flags` and its capability.
pub(crate) const IOMMU_INFO_PGSIZES: u32 = 1 << 0;
pub(crate) const IOMMU_INFO_CAPS: u32 = 1 << 1;
pub(crate) const IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;

/// `vfio_iommu_type1_dma_map.flags`.
pub(crate) const DMA_MAP_FLAG_READ: u32 = 1 << 0;
pub(crate) const DMA_MAP_FLAG_WRITE: u32 = 1 << 1;

/// Size of `struct vfio_info_cap_header` (id u16, version u16, next u32).
const CAP_HEADER: usize = 8;
/// More capabilities than any kernel reports; a longer chain is treated as corrupt.
const MAX_CAPS: usize = 64;

/// An ioctl argument: a zeroed, 8-aligned buffer whose first `u32` is `argsz`.
pub(crate) struct ArgBuf {
    words: Vec<u64>,
    len: usize,
}

impl ArgBuf {
    /// A zeroed buffer of `len` bytes with `argsz = len`.
    pub(crate) fn new(len: usize) -> Self {
        let mut b = Self {
            words: vec![0; len.div_ceil(8).max(1)],
            len,
        };
        b.set_u32(0, len as u32);
        b
    }

    /// The buffer's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the Vec owns `words.len() * 8` initialised bytes; any bit pattern is a valid
        // u8, and the shared borrow of `self` keeps the Vec alive and unaliased by writers.
        let all = unsafe {
            std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.words.len() * 8)
        };
        &all[..self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with an exclusive borrow for the mutable view.
        let all = unsafe {
            std::slice::from_raw_parts_mut(
                self.words.as_mut_ptr().cast::<u8>(),
                self.words.len() * 8,
            )
        };
        &mut all[..self.len]
    }

    /// The `u32` at byte `off`, or `None` past the end.
    pub(crate) fn u32_at(&self, off: usize) -> Option<u32> {
        let b = self.bytes().get(off..off.checked_add(4)?)?;
        Some(u32::from_ne_bytes(b.try_into().ok()?))
    }

    /// The `u16` at byte `off`, or `None` past the end.
    pub(crate) fn u16_at(&self, off: usize) -> Option<u16> {
        let b = self.bytes().get(off..off.checked_add(2)?)?;
        Some(u16::from_ne_bytes(b.try_into().ok()?))
    }

    /// The `u64` at byte `off`, or `None` past the end.
    pub(crate) fn u64_at(&self, off: usize) -> Option<u64> {
        let b = self.bytes().get(off..off.checked_add(8)?)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    }

    /// Sets the `u32` at byte `off` (inside the buffer: offsets are this module's constants).
    pub(crate) fn set_u32(&mut self, off: usize, v: u32) {
        if let Some(b) = self.bytes_mut().get_mut(off..off + 4) {
            b.copy_from_slice(&v.to_ne_bytes());
        }
    }

    /// Sets the `u64` at byte `off`.
    pub(crate) fn set_u64(&mut self, off: usize, v: u64) {
        if let Some(b) = self.bytes_mut().get_mut(off..off + 8) {
            b.copy_from_slice(&v.to_ne_bytes());
        }
    }

    /// The capability chain starting at `first` (an offset from the buffer start), as
    /// `(id, offset)` pairs. The walk stops at a zero `next`, and also at an offset that does
    /// not move forward or leaves the buffer, so a corrupt chain cannot loop.
    pub(crate) fn caps(&self, first: u32) -> Vec<(u16, usize)> {
        let mut out = Vec::new();
        let mut off = first as usize;
        while off != 0 && out.len() < MAX_CAPS {
            let Some(end) = off.checked_add(CAP_HEADER) else {
                break;
            };
            if end > self.len {
                break;
            }
            let (Some(id), Some(next)) = (self.u16_at(off), self.u32_at(off + 4)) else {
                break;
            };
            out.push((id, off));
            if next as usize <= off {
                break;
            }
            off = next as usize;
        }
        out
    }
}

/// Calls `ioctl(fd, req, buf)`; the kernel reads and writes at most `argsz` = the buffer's
/// length.
pub(crate) fn ioctl_buf(fd: BorrowedFd<'_>, req: u32, buf: &mut ArgBuf) -> Result<i32, Errno> {
    let len = buf.len;
    buf.set_u32(0, len as u32);
    let ptr = buf.words.as_mut_ptr();
    // SAFETY: `ptr` points to at least `len` writable bytes owned by `buf` for the whole call,
    // and every VFIO request that takes a structure reads and writes only `argsz` (= `len`)
    // bytes of it, which we set just above; `fd` is open for the borrow's length.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, ptr) };
    Errno::result(r)
}

/// Calls an info request whose reply may not fit: first with `base` bytes, then, if the
/// kernel set `argsz` to more (a capability chain follows), again with that many (at most
/// 64 KiB). `fill` sets the input fields before each call.
pub(crate) fn ioctl_info(
    fd: BorrowedFd<'_>,
    req: u32,
    base: usize,
    fill: impl Fn(&mut ArgBuf),
) -> Result<ArgBuf, Errno> {
    let call = |len: usize| {
        let mut buf = ArgBuf::new(len);
        fill(&mut buf);
        ioctl_buf(fd, req, &mut buf).map(|_| buf)
    };
    let buf = call(base)?;
    match buf.u32_at(0).map(|n| n as usize) {
        Some(want) if want > base && want <= 1 << 16 => call(want),
        _ => Ok(buf),
    }
}

/// Calls `ioctl(fd, req, arg)` for requests whose argument is a plain integer (or none).
pub(crate) fn ioctl_val(fd: BorrowedFd<'_>, req: u32, arg: libc::c_ulong) -> Result<i32, Errno> {
    // SAFETY: the requests passed here (GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU,
    // GROUP_UNSET_CONTAINER, DEVICE_RESET) take their argument by value (or none) and touch
    // no memory of ours.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    Errno::result(r)
}

/// `VFIO_GROUP_SET_CONTAINER`: the argument is a pointer to the container's fd.
pub(crate) fn ioctl_set_container(
    group: BorrowedFd<'_>,
    container: BorrowedFd<'_>,
) -> Result<i32, Errno> {
    let cfd: libc::c_int = container.as_raw_fd();
    // SAFETY: the kernel reads one int through the pointer, which lives for the call.
    let r = unsafe {
        libc::ioctl(
            group.as_raw_fd(),
            GROUP_SET_CONTAINER as _,
            &cfd as *const libc::c_int,
        )
    };
    Errno::result(r)
}

/// `VFIO_GROUP_GET_DEVICE_FD`: the argument is the device name; returns the new device fd.
pub(crate) fn ioctl_get_device_fd(group: BorrowedFd<'_>, name: &CStr) -> Result<File, Errno> {
    // SAFETY: the kernel reads a NUL-terminated string through the pointer, which `name`
    // keeps alive for the call.
    let r = unsafe { libc::ioctl(group.as_raw_fd(), GROUP_GET_DEVICE_FD as _, name.as_ptr()) };
    let fd = Errno::result(r)?;
    // SAFETY: on success the ioctl returned a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_uapi_header() {
        // _IO(';', 100) .. _IO(';', 114), as in include/uapi/linux/vfio.h.
        assert_eq!(GET_API_VERSION, 0x3b64);
        assert_eq!(DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(IOMMU_UNMAP_DMA, 0x3b72);
    }

    #[test]
    fn cap_chain_walk_cannot_loop_or_leave_the_buffer() {
        let mut b = ArgBuf::new(64);
        // cap at 16 -> 32 -> 16 (loop back)
        b.set_u32(16, 1 | (1 << 16));
        b.set_u32(20, 32);
        b.set_u32(32, 3);
        b.set_u32(36, 16);
        assert_eq!(b.caps(16), vec![(1, 16), (3, 32)]);
        // next beyond the end
        b.set_u32(36, 60);
        assert_eq!(b.caps(16), vec![(1, 16), (3, 32)]);
        assert_eq!(b.caps(0), vec![]);
        assert_eq!(b.caps(60), vec![], "header would cross the end");
        assert_eq!(b.u32_at(0), Some(64), "argsz");
        assert_eq!(b.u64_at(60), None);
    }
}
