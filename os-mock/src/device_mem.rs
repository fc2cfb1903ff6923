//! The device's side of memory: every access by IOVA, checked against the mock IOMMU.
//!
//! Device models hold a [`DeviceMemory`] and reach DMA memory through it and nothing else, as a
//! real device reaches RAM only through the IOMMU. An access that is not wholly inside one live
//! mapping is not performed: it returns a [`Fault`], which is also recorded so that a test can
//! assert at its end that the driver never handed the device a bad address.

use crate::atomic_copy::{copy_in, copy_out, LeWord};
use crate::os::Shared;
use rdk_core::addr::Iova;
use std::fmt;
use std::sync::Arc;

/// Why a device access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// No region maps the first byte, and none ever did: a wild address (a VA or a physical
    /// address where an IOVA belongs, an uninitialised descriptor, a translation bug).
    Unmapped,
    /// The first byte belonged to a region that has been freed: a stale address.
    Freed,
    /// The first byte is mapped but the access runs past the end of its region, or of its page
    /// where the region's pages are scattered in IOVA space.
    PastEnd {
        /// Bytes mapped from the first byte on (what the access could have used).
        mapped: usize,
    },
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FaultKind::Unmapped => f.write_str(
                "no region maps it (a wild address: check that the driver wrote an IOVA from \
                 DmaRegion::iova_at, not a VA)",
            ),
            FaultKind::Freed => f.write_str(
                "its region was freed (a stale address: stop the device or reclaim the \
                 descriptor before dropping the region)",
            ),
            FaultKind::PastEnd { mapped } => write!(
                f,
                "only {mapped} bytes are mapped from there (the access runs past its region or \
                 IOVA-contiguous page: check the length and DmaRegion::contiguous_from)"
            ),
        }
    }
}

/// A device access the mock IOMMU refused. Nothing was read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The first IOVA of the access.
    pub iova: Iova,
    /// Its length in bytes.
    pub len: usize,
    /// Whether the device was writing (DMA to memory) rather than reading.
    pub write: bool,
    /// Why it was refused.
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.write { "write" } else { "read" };
        write!(
            f,
            "device {dir} of {} bytes at IOVA {}: {}",
            self.len, self.iova, self.kind
        )
    }
}

impl std::error::Error for Fault {}

/// A device's checked view of a [`MockOs`](crate::MockOs)'s DMA memory, by IOVA.
///
/// Cheap to clone; every clone shares the OS's map and fault log. Obtained from
/// [`MockOs::device_memory`](crate::MockOs::device_memory).
///
/// Every access is translated through the IOVA map and performed only if the whole range lies
/// in one live mapping. Accesses are atomic per byte or per aligned word, with Release order for
/// writes and Acquire order for reads (a DMA write publishes what the device did before it; a
/// DMA read sees what the driver published before it). The typed helpers move a naturally
/// aligned value in one access, so a driver never sees a device-written index torn.
///
/// A region being freed waits for accesses in flight, and accesses after that fault: the map is
/// read-locked for the duration of each access (the lock guards the map; the driver's own
/// accesses to its memory take no lock).
#[derive(Clone)]
pub struct DeviceMemory {
    shared: Arc<Shared>,
}

impl fmt::Debug for DeviceMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceMemory")
            .field("faults", &self.fault_count())
            .finish_non_exhaustive()
    }
}

impl DeviceMemory {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Reads `buf.len()` bytes from `iova` (a device DMA read). A zero-length read does nothing
    /// and cannot fault.
    pub fn read(&self, iova: Iova, buf: &mut [u8]) -> Result<(), Fault> {
        if buf.is_empty() {
            return Ok(());
        }
        self.access(iova, buf.len(), false, |p| {
            // SAFETY: `access` calls this with p valid for buf.len() bytes and the map locked,
            // so the region cannot be freed meanwhile; every safe access to DMA memory in this
            // crate is atomic (atomic_copy), and a driver's raw accesses are its own contract.
            unsafe { copy_out(p, buf) }
        })
    }

    /// Writes `data` at `iova` (a device DMA write). A zero-length write does nothing and cannot
    /// fault.
    pub fn write(&self, iova: Iova, data: &[u8]) -> Result<(), Fault> {
        if data.is_empty() {
            return Ok(());
        }
        self.access(iova, data.len(), true, |p| {
            // SAFETY: as in `read`: p is valid for data.len() bytes while the map is locked, and
            // concurrent safe accesses are atomic.
            unsafe { copy_in(p, data) }
        })
    }

    /// Reads a little-endian `u8` at `iova`.
    pub fn read_u8(&self, iova: Iova) -> Result<u8, Fault> {
        self.read_le(iova)
    }

    /// Reads a little-endian `u16` at `iova`, in one access if it is 2-byte aligned.
    pub fn read_u16(&self, iova: Iova) -> Result<u16, Fault> {
        self.read_le(iova)
    }

    /// Reads a little-endian `u32` at `iova`, in one access if it is 4-byte aligned.
    pub fn read_u32(&self, iova: Iova) -> Result<u32, Fault> {
        self.read_le(iova)
    }

    /// Reads a little-endian `u64` at `iova`, in one access if it is 8-byte aligned.
    pub fn read_u64(&self, iova: Iova) -> Result<u64, Fault> {
        self.read_le(iova)
    }

    /// Writes `v` as a little-endian `u8` at `iova`.
    pub fn write_u8(&self, iova: Iova, v: u8) -> Result<(), Fault> {
        self.write_le(iova, v)
    }

    /// Writes `v` as a little-endian `u16` at `iova`, in one access if it is 2-byte aligned.
    pub fn write_u16(&self, iova: Iova, v: u16) -> Result<(), Fault> {
        self.write_le(iova, v)
    }

    /// Writes `v` as a little-endian `u32` at `iova`, in one access if it is 4-byte aligned.
    pub fn write_u32(&self, iova: Iova, v: u32) -> Result<(), Fault> {
        self.write_le(iova, v)
    }

    /// Writes `v` as a little-endian `u64` at `iova`, in one access if it is 8-byte aligned.
    pub fn write_u64(&self, iova: Iova, v: u64) -> Result<(), Fault> {
        self.write_le(iova, v)
    }

    /// Whether `iova..iova + len` lies in one live mapping. Records nothing: this is for test
    /// assertions, not for device models (a real device cannot ask).
    pub fn is_mapped(&self, iova: Iova, len: usize) -> bool {
        self.shared.iommu().translate(iova.get(), len).is_ok()
    }

    /// The faults recorded so far, oldest first.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.faults().clone()
    }

    /// The faults recorded so far, oldest first, clearing the log.
    pub fn take_faults(&self) -> Vec<Fault> {
        std::mem::take(&mut *self.shared.faults())
    }

    /// How many faults are recorded.
    pub fn fault_count(&self) -> usize {
        self.shared.faults().len()
    }

    /// Checks that no device access faulted. Call it at the end of every test.
    ///
    /// # Panics
    /// If any faults are recorded, with the list in the message.
    #[track_caller]
    pub fn assert_no_faults(&self) {
        let faults = self.faults();
        if !faults.is_empty() {
            let list: Vec<String> = faults.iter().map(|f| format!("  {f}")).collect();
            panic!(
                "{} device memory fault(s):\n{}",
                faults.len(),
                list.join("\n")
            );
        }
    }

    fn read_le<W: LeWord>(&self, iova: Iova) -> Result<W, Fault> {
        self.access(iova, W::SIZE, false, |p| {
            // SAFETY: `access` calls this with p valid for W::SIZE bytes and the map locked;
            // concurrent safe accesses are atomic.
            unsafe { W::load_le(p) }
        })
    }

    fn write_le<W: LeWord>(&self, iova: Iova, v: W) -> Result<(), Fault> {
        self.access(iova, W::SIZE, true, |p| {
            // SAFETY: `access` calls this with p valid for W::SIZE bytes and the map locked;
            // concurrent safe accesses are atomic.
            unsafe { v.store_le(p) }
        })
    }

    /// Translates `iova..iova + len` and runs `op` on the host address with the map
    /// read-locked, so the region stays alive until `op` returns; or records and returns the
    /// fault without running `op`.
    fn access<R>(
        &self,
        iova: Iova,
        len: usize,
        write: bool,
        op: impl FnOnce(*mut u8) -> R,
    ) -> Result<R, Fault> {
        let kind = {
            let iommu = self.shared.iommu();
            match iommu.translate(iova.get(), len) {
                Ok(p) => return Ok(op(p)),
                Err(kind) => kind,
            }
        };
        let fault = Fault {
            iova,
            len,
            write,
            kind,
        };
        self.shared.faults().push(fault);
        Err(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IovaLayout, MockOs};
    use rdk_core::os::{DmaAlloc, DmaRegion, DmaRequest};
    use std::sync::atomic::{AtomicBool, Ordering};

    const PAGE: usize = 4096;

    fn scattered_os() -> MockOs {
        MockOs::builder()
            .page_size(PAGE)
            .iova_layout(IovaLayout::Scattered)
            .build()
    }

    fn region_bytes(r: &impl DmaRegion) -> Vec<u8> {
        let mut v = vec![0u8; r.len()];
        // SAFETY: the region is alive and valid for len() bytes; no other thread touches it.
        unsafe { std::ptr::copy_nonoverlapping(r.as_ptr(), v.as_mut_ptr(), v.len()) };
        v
    }

    #[test]
    fn device_write_is_seen_by_the_cpu() {
        let os = MockOs::new();
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("rx", 256)).unwrap();
        let iova = r.iova_at(10).unwrap();
        dev.write(iova, b"hello, driver").unwrap();
        // SAFETY: offset 10 + 13 bytes is inside the region; nothing else accesses it now.
        let seen = unsafe { std::slice::from_raw_parts(r.as_ptr().add(10), 13) };
        assert_eq!(seen, b"hello, driver");
        let mut one = [0u8; 1];
        dev.read(iova.wrapping_add(4), &mut one).unwrap();
        assert_eq!(one, *b"o");
        let mut via_region = [0u8; 13];
        r.read_at(10, &mut via_region).unwrap();
        assert_eq!(&via_region, b"hello, driver");
        dev.assert_no_faults();
    }

    #[test]
    fn cpu_write_is_seen_by_the_device() {
        let os = MockOs::new();
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("tx", 64)).unwrap();
        // SAFETY: 8 bytes at offset 0 of a live region of at least 64 bytes, 64-aligned.
        unsafe {
            r.as_ptr()
                .cast::<u64>()
                .write(0x0102_0304_0506_0708u64.to_le())
        };
        r.write_at(8, &[0xAA, 0xBB]).unwrap();
        let base = r.iova_at(0).unwrap();
        assert_eq!(dev.read_u64(base).unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(dev.read_u32(base).unwrap(), 0x0506_0708);
        assert_eq!(dev.read_u16(base.wrapping_add(8)).unwrap(), 0xBBAA);
        assert_eq!(dev.read_u8(base.wrapping_add(9)).unwrap(), 0xBB);
        let mut buf = [0u8; 10];
        dev.read(base, &mut buf).unwrap();
        assert_eq!(buf, [8, 7, 6, 5, 4, 3, 2, 1, 0xAA, 0xBB]);
        dev.assert_no_faults();
    }

    #[test]
    fn typed_writes_are_little_endian_even_unaligned() {
        let os = MockOs::new();
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("d", 64)).unwrap();
        let at = |off: usize| r.iova_at(off).unwrap();
        dev.write_u16(at(1), 0x1234).unwrap();
        dev.write_u32(at(5), 0x89AB_CDEF).unwrap();
        dev.write_u64(at(16), 0x0011_2233_4455_6677).unwrap();
        dev.write_u8(at(30), 0x5A).unwrap();
        dev.write(at(40), &[0x9C]).unwrap();
        let mem = region_bytes(&r);
        assert_eq!(&mem[1..3], &[0x34, 0x12]);
        assert_eq!(&mem[5..9], &[0xEF, 0xCD, 0xAB, 0x89]);
        assert_eq!(
            &mem[16..24],
            &[0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00]
        );
        assert_eq!(mem[30], 0x5A);
        assert_eq!(mem[40], 0x9C);
        assert_eq!(dev.read_u32(at(5)).unwrap(), 0x89AB_CDEF);
        assert_eq!(dev.read_u16(at(1)).unwrap(), 0x1234);
        dev.assert_no_faults();
    }

    #[test]
    fn unmapped_access_faults_and_is_recorded() {
        let os = MockOs::new();
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("r", 64)).unwrap();
        // The VA used as an IOVA: the classic translation bug.
        let wild = Iova::new(r.va().get() as u64);
        let err = dev.write(wild, &[1, 2, 3]).unwrap_err();
        assert_eq!(
            err,
            Fault {
                iova: wild,
                len: 3,
                write: true,
                kind: FaultKind::Unmapped
            }
        );
        assert_eq!(
            dev.read_u32(Iova::new(0)).unwrap_err().kind,
            FaultKind::Unmapped
        );
        let mut one = [0u8; 1];
        assert_eq!(dev.read(wild, &mut one).unwrap_err().len, 1);
        // Just below the region's first IOVA.
        let before = Iova::new(r.iova_at(0).unwrap().get() - 1);
        assert_eq!(dev.read_u8(before).unwrap_err().kind, FaultKind::Unmapped);
        assert_eq!(dev.fault_count(), 4);
        assert!(region_bytes(&r).iter().all(|&b| b == 0));
        assert_eq!(dev.take_faults().len(), 4);
        assert!(dev.faults().is_empty());
        dev.assert_no_faults();
    }

    #[test]
    fn access_past_the_end_faults_and_writes_nothing() {
        let os = MockOs::new();
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("r", PAGE)).unwrap();
        assert_eq!(r.len(), PAGE);
        let near_end = r.iova_at(PAGE - 4).unwrap();
        let err = dev.write(near_end, &[0xFF; 8]).unwrap_err();
        assert_eq!(err.kind, FaultKind::PastEnd { mapped: 4 });
        assert_eq!(
            dev.write_u64(near_end, u64::MAX).unwrap_err().kind,
            err.kind
        );
        // One byte too many is enough.
        let one_over = dev.write(near_end, &[0xFF; 5]).unwrap_err();
        assert_eq!(one_over.kind, FaultKind::PastEnd { mapped: 4 });
        let mut buf = [0x77u8; 8];
        assert!(dev.read(near_end, &mut buf).is_err());
        assert_eq!(buf, [0x77; 8], "a faulted read leaves the buffer alone");
        // The first byte past the end is in the guard gap.
        let past = near_end.wrapping_add(4);
        assert_eq!(dev.read_u8(past).unwrap_err().kind, FaultKind::Unmapped);
        assert!(region_bytes(&r).iter().all(|&b| b == 0));
        // Exactly up to the end is fine.
        dev.write(near_end, &[1, 2, 3, 4]).unwrap();
        assert_eq!(region_bytes(&r)[PAGE - 4..], [1, 2, 3, 4]);
        assert_eq!(dev.take_faults().len(), 5);
    }

    #[test]
    fn access_across_a_scattered_page_boundary_faults() {
        let os = scattered_os();
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("r", 2 * PAGE)).unwrap();
        let last_of_page0 = r.iova_at(PAGE - 2).unwrap();
        let err = dev.write_u32(last_of_page0, 0xDEAD_BEEF).unwrap_err();
        assert_eq!(err.kind, FaultKind::PastEnd { mapped: 2 });
        assert!(region_bytes(&r).iter().all(|&b| b == 0));
        // Each page on its own is fine, at the IOVA the region gives for it.
        dev.write_u16(last_of_page0, 0xBBAA).unwrap();
        dev.write_u16(r.iova_at(PAGE).unwrap(), 0xDDCC).unwrap();
        assert_eq!(
            region_bytes(&r)[PAGE - 2..PAGE + 2],
            [0xAA, 0xBB, 0xCC, 0xDD]
        );
        assert_eq!(dev.take_faults(), vec![err]);
    }

    #[test]
    fn access_after_free_faults_as_freed() {
        let os = scattered_os();
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("r", 3 * PAGE)).unwrap();
        let iovas: Vec<Iova> = (0..3).map(|p| r.iova_at(p * PAGE + 8).unwrap()).collect();
        for &i in &iovas {
            dev.write_u8(i, 1).unwrap();
            assert!(dev.is_mapped(i, 1));
        }
        os.dma_free(r);
        for &i in &iovas {
            assert!(!dev.is_mapped(i, 1));
            assert_eq!(dev.write_u8(i, 2).unwrap_err().kind, FaultKind::Freed);
        }
        assert_eq!(dev.fault_count(), 3);
        // A new region never gets the old IOVAs back.
        let r2 = os.dma_alloc(&DmaRequest::new("r2", 3 * PAGE)).unwrap();
        for &i in &iovas {
            assert_eq!(dev.read_u8(i).unwrap_err().kind, FaultKind::Freed);
        }
        assert!(r2.iova_at(0).unwrap() > iovas[0]);
    }

    #[test]
    fn zero_length_access_is_a_no_op() {
        let os = MockOs::new();
        let dev = os.device_memory();
        dev.read(Iova::new(0xdead), &mut []).unwrap();
        dev.write(Iova::new(0xdead), &[]).unwrap();
        dev.assert_no_faults();
    }

    #[test]
    fn assert_no_faults_lists_them() {
        let os = MockOs::new();
        let dev = os.device_memory();
        let _ = dev.write_u32(Iova::new(0x1234), 7);
        let msg = std::panic::catch_unwind(|| dev.assert_no_faults())
            .unwrap_err()
            .downcast::<String>()
            .unwrap();
        assert!(msg.contains("1 device memory fault(s)"), "{msg}");
        assert!(
            msg.contains("device write of 4 bytes at IOVA 0x1234"),
            "{msg}"
        );
        assert!(msg.contains("no region maps it"), "{msg}");
    }

    #[test]
    fn faults_are_shared_between_clones() {
        let os = MockOs::new();
        let a = os.device_memory();
        let b = a.clone();
        let _ = a.read_u8(Iova::new(1));
        assert_eq!(b.fault_count(), 1);
        assert_eq!(os.device_memory().take_faults().len(), 1);
        assert_eq!(a.fault_count(), 0);
    }

    #[test]
    fn free_while_a_device_thread_accesses_is_safe() {
        let os = MockOs::new();
        let dev = os.device_memory();
        let r = os.dma_alloc(&DmaRequest::new("r", 16 * PAGE)).unwrap();
        let iova = r.iova_at(0).unwrap();
        let len = r.len();
        let started = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let device = {
            let (dev, started, dropped) = (dev.clone(), started.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; len];
                let mut ok = 0u64;
                loop {
                    // Once the drop has returned, the very next access must fault.
                    let after_drop = dropped.load(Ordering::Acquire);
                    let data = vec![(ok % 251) as u8; len];
                    match dev
                        .write(iova, &data)
                        .and_then(|()| dev.read(iova, &mut buf))
                    {
                        Ok(()) if after_drop => return Err(ok),
                        Ok(()) => ok += 1,
                        Err(f) => return Ok((ok, f)),
                    }
                    started.store(true, Ordering::Release);
                }
            })
        };
        while !started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        // The driver reads while the device writes: atomic on both sides, so no UB.
        let mut snapshot = vec![0u8; len];
        r.read_at(0, &mut snapshot).unwrap();
        drop(r);
        dropped.store(true, Ordering::Release);
        let (ok, fault) = device
            .join()
            .unwrap()
            .expect("a device access succeeded after the region was dropped");
        assert!(ok >= 1);
        assert_eq!(fault.iova, iova);
        assert_eq!(fault.kind, FaultKind::Freed);
        assert_eq!(dev.fault_count(), 1);
        assert_eq!(os.live_regions(), 0);
    }
}
