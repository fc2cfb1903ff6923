//! BAR register windows through VFIO: the parts the kernel lets us map are accessed with
//! volatile loads and stores, everything else (an MSI-X table the kernel keeps for itself, an
//! I/O-port BAR, a BAR without mmap support) with `pread`/`pwrite` on the device's region.
//!
//! Through the file, vfio-pci itself owns the MSI-X table (it programs the vectors for
//! `VFIO_DEVICE_SET_IRQS`): reads there return all ones and writes are dropped, the same
//! answer this window gives for any access it cannot serve. The rest of a hole page reaches
//! the device.
#![allow(unsafe_code)] // mmap of the BAR, and volatile accesses into it.

use super::group::VfioGroup;
use rdk_core::os::pci::{check_window, Mmio};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::Arc;

/// A byte range `[start, end)` inside a BAR.
pub(crate) type Area = (u64, u64);

/// Which parts of a BAR of `size` bytes to map, in order.
///
/// - `sparse`: the areas of the sparse-mmap capability, if the kernel sent one (it then lists
///   exactly what may be mapped); else the whole BAR.
/// - `msix_table`: the MSI-X table's `[start, end)` if it is in this BAR and the kernel did
///   not say it is mappable (no `MSIX_MAPPABLE` capability); the pages holding it are left
///   out, as kernels before 4.16 refuse to map them.
///
/// Areas outside the BAR, or not page-aligned, are dropped: they come from the kernel but are
/// checked like anything else we are told.
pub(crate) fn plan_areas(
    size: u64,
    sparse: Option<&[Area]>,
    msix_table: Option<Area>,
    page: u64,
) -> Vec<Area> {
    let whole = [(0, size)];
    let base = sparse.unwrap_or(&whole);
    let mut out = Vec::new();
    for &(start, end) in base {
        if start >= end || end > size || start % page != 0 {
            continue;
        }
        match msix_table {
            Some((ts, te)) if ts < end && te > start => {
                let hole_start = ts - ts % page;
                let hole_end = te.div_ceil(page).saturating_mul(page);
                if start < hole_start {
                    out.push((start, hole_start));
                }
                if hole_end < end {
                    out.push((hole_end, end));
                }
            }
            _ => out.push((start, end)),
        }
    }
    out
}

/// The live mapping of a BAR: a reservation the size of the BAR (rounded to pages) in which
/// the mappable areas are mapped from the device and the rest is `PROT_NONE`.
struct BarMap {
    base: NonNull<u8>,
    len: usize,
}

impl BarMap {
    /// Maps `areas` of the region at `region_offset` of `file` into a fresh reservation of
    /// `size` bytes.
    fn new(
        file: &File,
        region_offset: u64,
        size: u64,
        areas: &[Area],
        page: u64,
    ) -> Result<Self, nix::errno::Errno> {
        let len =
            usize::try_from(size.div_ceil(page) * page).map_err(|_| nix::errno::Errno::E2BIG)?;
        // SAFETY: a fresh anonymous PROT_NONE mapping at an address the kernel picks; it
        // aliases nothing.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(nix::errno::Errno::last());
        }
        let map = Self {
            base: NonNull::new(base.cast()).ok_or(nix::errno::Errno::ENOMEM)?,
            len,
        };
        for &(start, end) in areas {
            let area_len = ((end - start).div_ceil(page) * page) as usize;
            let off = region_offset
                .checked_add(start)
                .and_then(|o| libc::off_t::try_from(o).ok())
                .ok_or(nix::errno::Errno::EOVERFLOW)?;
            // SAFETY: `start + area_len <= len` (areas lie inside the BAR, `len` is the BAR
            // rounded up to pages), so MAP_FIXED replaces only pages of our own reservation.
            let p = unsafe {
                libc::mmap(
                    map.base.as_ptr().add(start as usize).cast(),
                    area_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    file.as_raw_fd(),
                    off,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(nix::errno::Errno::last()); // `map` unmaps the reservation
            }
        }
        Ok(map)
    }
}

impl Drop for BarMap {
    fn drop(&mut self) {
        // SAFETY: base..base+len is our reservation (with the device mappings inside it); the
        // only pointers into it are held by the owning VfioBar, which is being dropped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One BAR's register window (see the module docs). Obtained from
/// [`VfioDevice::map_bar`](rdk_core::os::PciDevice::map_bar); keeps the device file open
/// while it lives.
pub struct VfioBar {
    file: Arc<File>,
    index: u8,
    region_offset: u64,
    size: usize,
    map: Option<BarMap>,
    areas: Vec<Area>,
    /// The device's group, kept attached while this window (an open device fd and maybe a
    /// mapping) lives; declared last so both are gone before the group may leave its
    /// container (the kernel refuses to detach a group with open devices).
    group: Option<Arc<VfioGroup>>,
}

// SAFETY: the raw pointer in `map` is to device memory this value owns; every access through
// it is a volatile load or store of a naturally aligned word, which is safe from any thread
// (the device serialises them), and pread/pwrite on a shared File are thread-safe.
unsafe impl Send for VfioBar {}
// SAFETY: as above: `&self` methods only do volatile accesses and positioned file I/O.
unsafe impl Sync for VfioBar {}

impl std::fmt::Debug for VfioBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioBar")
            .field("bar", &self.index)
            .field("size", &self.size)
            .field("mapped_areas", &self.areas)
            .finish()
    }
}

impl VfioBar {
    /// A window of `size` bytes at `region_offset` of the device file, with `areas` mapped
    /// (none: every access goes through the file).
    pub(crate) fn new(
        file: Arc<File>,
        index: u8,
        region_offset: u64,
        size: u64,
        areas: Vec<Area>,
        page: u64,
    ) -> Result<Self, nix::errno::Errno> {
        let map = if areas.is_empty() {
            None
        } else {
            Some(BarMap::new(&file, region_offset, size, &areas, page)?)
        };
        Ok(Self {
            file,
            index,
            region_offset,
            size: usize::try_from(size).map_err(|_| nix::errno::Errno::E2BIG)?,
            map,
            areas,
            group: None,
        })
    }

    /// Keeps `group` alive as long as this window.
    pub(crate) fn keeping(mut self, group: Arc<VfioGroup>) -> Self {
        self.group = Some(group);
        self
    }

    /// The mapped areas `[start, end)`; accesses elsewhere go through the file.
    pub fn mapped_areas(&self) -> &[(u64, u64)] {
        &self.areas
    }

    /// Whether `width` bytes at `offset` are inside a mapped area: then the pointer to them.
    #[inline]
    fn mapped(&self, offset: usize, width: usize) -> Option<*mut u8> {
        let map = self.map.as_ref()?;
        let (o, e) = (offset as u64, (offset + width) as u64);
        self.areas
            .iter()
            .any(|&(s, end)| s <= o && e <= end)
            // SAFETY: offset + width <= an area end <= size <= map.len: inside the mapping.
            .then(|| unsafe { map.base.as_ptr().add(offset) })
    }

    #[inline]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        check_window(offset as u64, N, self.size as u64).ok()?;
        if let Some(p) = self.mapped(offset, N) {
            // SAFETY: `p` is N-aligned (check_window) inside a live device mapping; N is
            // 1, 2 or 4 (the Mmio methods), so this is one bus access of that width. The
            // bytes are kept in memory order; the caller decodes them as little-endian.
            let v: [u8; 4] = unsafe {
                match N {
                    1 => [p.read_volatile(), 0, 0, 0],
                    2 => {
                        let [a, b] = p.cast::<u16>().read_volatile().to_ne_bytes();
                        [a, b, 0, 0]
                    }
                    _ => p.cast::<u32>().read_volatile().to_ne_bytes(),
                }
            };
            let mut out = [0u8; N];
            for (o, b) in out.iter_mut().zip(v) {
                *o = b;
            }
            return Some(out);
        }
        let mut b = [0u8; N];
        match self
            .file
            .read_at(&mut b, self.region_offset + offset as u64)
        {
            Ok(n) if n == N => Some(b),
            _ => None,
        }
    }

    #[inline]
    fn write<const N: usize>(&self, offset: usize, bytes: [u8; N]) {
        if check_window(offset as u64, N, self.size as u64).is_err() {
            return;
        }
        if let Some(p) = self.mapped(offset, N) {
            // SAFETY: as in `read`: an aligned access of width N inside the live mapping; the
            // little-endian bytes are stored in memory order.
            unsafe {
                match N {
                    1 => p.write_volatile(bytes[0]),
                    2 => p
                        .cast::<u16>()
                        .write_volatile(u16::from_ne_bytes([bytes[0], bytes[1]])),
                    _ => p.cast::<u32>().write_volatile(u32::from_ne_bytes([
                        bytes[0], bytes[1], bytes[2], bytes[3],
                    ])),
                }
            }
            return;
        }
        // A failed write is dropped, like a write no device claims (see rdk_core::os::pci).
        let _ = self
            .file
            .write_at(&bytes, self.region_offset + offset as u64);
    }
}

impl Mmio for VfioBar {
    fn len(&self) -> usize {
        self.size
    }

    fn read8(&self, offset: usize) -> u8 {
        self.read::<1>(offset).map_or(u8::MAX, |b| b[0])
    }

    fn read16(&self, offset: usize) -> u16 {
        self.read::<2>(offset).map_or(u16::MAX, u16::from_le_bytes)
    }

    fn read32(&self, offset: usize) -> u32 {
        self.read::<4>(offset).map_or(u32::MAX, u32::from_le_bytes)
    }

    fn write8(&self, offset: usize, value: u8) {
        self.write(offset, [value]);
    }

    fn write16(&self, offset: usize, value: u16) {
        self.write(offset, value.to_le_bytes());
    }

    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn plans_whole_sparse_and_msix_holes() {
        assert_eq!(plan_areas(0x2_0000, None, None, P), vec![(0, 0x2_0000)]);
        // e1000e-like BAR3: 16 KiB, table at 0, 5 entries: the first page stays unmapped.
        assert_eq!(
            plan_areas(0x4000, None, Some((0, 80)), P),
            vec![(0x1000, 0x4000)]
        );
        // A table in the middle splits the BAR.
        assert_eq!(
            plan_areas(0x10000, None, Some((0x2010, 0x2810)), P),
            vec![(0, 0x2000), (0x3000, 0x10000)]
        );
        // Sparse areas are used as given, bad ones dropped.
        let sparse = [
            (0, 0x1000),
            (0x3000, 0x8000),
            (0x100, 0x200),
            (0x8000, 0x20000),
        ];
        assert_eq!(
            plan_areas(0x10000, Some(&sparse), None, P),
            vec![(0, 0x1000), (0x3000, 0x8000)]
        );
        assert_eq!(plan_areas(0x4000, Some(&[]), None, P), vec![]);
    }

    #[test]
    fn unmapped_window_goes_through_the_file_and_checks_bounds() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0u8; 0x2000]).unwrap();
        let f = Arc::new(f);
        // region at file offset 0x1000, 32 bytes, nothing mapped (an I/O BAR).
        let bar = VfioBar::new(f.clone(), 2, 0x1000, 32, vec![], P).unwrap();
        bar.write32(4, 0xdead_beef);
        assert_eq!(bar.read32(4), 0xdead_beef);
        assert_eq!(bar.read16(6), 0xdead);
        assert_eq!(bar.read8(4), 0xef);
        let mut raw = [0u8; 4];
        f.read_exact_at(&mut raw, 0x1004).unwrap();
        assert_eq!(
            u32::from_le_bytes(raw),
            0xdead_beef,
            "little-endian at the offset"
        );
        assert_eq!(bar.read32(32), u32::MAX, "past the end reads as all ones");
        assert_eq!(bar.read32(2), u32::MAX, "misaligned reads as all ones");
        bar.write32(32, 1); // dropped
        assert_eq!(f.metadata().unwrap().len(), 0x2000);
        assert!(bar.check(28, 4).is_ok() && bar.check(30, 4).is_err());
    }

    #[test]
    fn mapped_areas_and_holes_in_one_window() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![0u8; 0x4000]).unwrap();
        let f = Arc::new(f);
        // Map the second page only; the first is a "hole" served by pread/pwrite.
        let bar = VfioBar::new(f.clone(), 3, 0, 0x2000, vec![(0x1000, 0x2000)], P).unwrap();
        bar.write32(0x1008, 0x1234_5678); // through the mapping (MAP_SHARED: hits the file)
        bar.write32(0x10, 0x9abc_def0); // through pwrite
        let mut raw = [0u8; 4];
        f.read_exact_at(&mut raw, 0x1008).unwrap();
        assert_eq!(u32::from_le_bytes(raw), 0x1234_5678);
        assert_eq!(bar.read32(0x10), 0x9abc_def0);
        assert_eq!(bar.read32(0x1008), 0x1234_5678);
        assert_eq!(bar.mapped_areas(), &[(0x1000, 0x2000)]);
    }
}
