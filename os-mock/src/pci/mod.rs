//! A PCI function in memory: config space with a capability list a test builds, BARs whose
//! registers a device model serves, and MSI-X-like vectors that signal [`MockEvent`]s.
//!
//! [`MockPciDevice`] implements [`PciDevice`], so a PCI driver runs against it unchanged. A BAR
//! access outside its window or misaligned reads as all ones and drops the write, as the trait
//! says, and is counted in [`MockPciDevice::mmio_faults`] so a test can assert there were none.

use crate::event::MockEvent;
use rdk_core::os::pci::{check_window, IrqKind, Mmio, PciDevice, PciError};
use rdk_core::pci::config::{status, BAR0, CAPABILITIES_PTR, HEADER_END, STATUS};
use rdk_core::pci::{BarInfo, BarKind, PciAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Where a built device sits unless the builder says otherwise.
const DEFAULT_ADDR: PciAddr = match PciAddr::new(0, 0, 3, 0) {
    Some(a) => a,
    None => panic!("0000:00:03.0 is a valid address"),
};

/// What serves a BAR's registers: a device model.
pub trait BarHandler: Send + Sync {
    /// Reads `width` (1, 2, 4) bytes at `offset` (inside the window, aligned).
    fn read(&self, offset: usize, width: usize) -> u32;
    /// Writes the low `width` bytes of `value` at `offset` (inside the window, aligned).
    fn write(&self, offset: usize, width: usize, value: u32);
}

/// A BAR's register window: checks every access, then asks the handler.
#[derive(Clone)]
pub struct MockBar {
    handler: Arc<dyn BarHandler>,
    len: usize,
    faults: Arc<AtomicU64>,
}

impl MockBar {
    fn access(&self, offset: usize, width: usize) -> bool {
        if check_window(offset as u64, width, self.len as u64).is_ok() {
            true
        } else {
            self.faults.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    fn read(&self, offset: usize, width: usize) -> u32 {
        if self.access(offset, width) {
            self.handler.read(offset, width)
        } else {
            u32::MAX
        }
    }

    fn write(&self, offset: usize, width: usize, value: u32) {
        if self.access(offset, width) {
            self.handler.write(offset, width, value)
        }
    }
}

impl Mmio for MockBar {
    fn len(&self) -> usize {
        self.len
    }
    fn read8(&self, offset: usize) -> u8 {
        self.read(offset, 1) as u8
    }
    fn read16(&self, offset: usize) -> u16 {
        self.read(offset, 2) as u16
    }
    fn read32(&self, offset: usize) -> u32 {
        self.read(offset, 4)
    }
    fn write8(&self, offset: usize, value: u8) {
        self.write(offset, 1, value as u32)
    }
    fn write16(&self, offset: usize, value: u16) {
        self.write(offset, 2, value as u32)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, 4, value)
    }
}

impl std::fmt::Debug for MockBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBar").field("len", &self.len).finish()
    }
}

/// The vectors a driver connected, shared with the device model that raises them.
#[derive(Clone, Debug, Default)]
pub struct IrqLines {
    msix: Arc<Mutex<Vec<MockEvent>>>,
}

impl IrqLines {
    /// Signals MSI-X vector `vector`; returns whether a driver had connected it.
    pub fn raise(&self, vector: u16) -> bool {
        let lines = self.msix.lock().unwrap_or_else(PoisonError::into_inner);
        match lines.get(vector as usize) {
            Some(e) => {
                use rdk_core::os::EventNotifier;
                e.signal().is_ok()
            }
            None => false,
        }
    }

    /// How many vectors are connected.
    pub fn connected(&self) -> usize {
        self.msix
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One BAR of a [`MockPciDevice`].
struct BarSlot {
    size: u64,
    io: bool,
    handler: Arc<dyn BarHandler>,
}

/// A PCI function in memory. Build with [`MockPciDevice::builder`].
pub struct MockPciDevice {
    addr: PciAddr,
    config: Mutex<Vec<u8>>,
    bars: Vec<Option<BarSlot>>,
    msix_vectors: u32,
    /// Offset of the MSI-X capability in config space, when the builder added one.
    msix_cap: Option<usize>,
    irqs: IrqLines,
    mmio_faults: Arc<AtomicU64>,
    resets: AtomicU64,
}

impl MockPciDevice {
    /// A builder for a device with `vendor:device` ids.
    pub fn builder(vendor: u16, device: u16) -> MockPciBuilder {
        let mut config = vec![0u8; 256];
        config[0..2].copy_from_slice(&vendor.to_le_bytes());
        config[2..4].copy_from_slice(&device.to_le_bytes());
        MockPciBuilder {
            config,
            bars: (0..6).map(|_| None).collect(),
            caps: Vec::new(),
            msix_vectors: 0,
            msix_cap: false,
            addr: DEFAULT_ADDR,
            next_cap: None,
            irqs: IrqLines::default(),
        }
    }

    /// The interrupt lines, for the device model.
    pub fn irq_lines(&self) -> IrqLines {
        self.irqs.clone()
    }

    /// BAR accesses that were outside their window or misaligned (driver bugs).
    pub fn mmio_faults(&self) -> u64 {
        self.mmio_faults.load(Ordering::Relaxed)
    }

    /// How many times [`PciDevice::reset`] was called.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// Writes raw config-space bytes (to make the device lie after it was built).
    pub fn poke_config(&self, offset: usize, data: &[u8]) {
        let mut c = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        let end = (offset + data.len()).min(c.len());
        if offset < end {
            c[offset..end].copy_from_slice(&data[..end - offset]);
        }
    }
}

/// Builds a [`MockPciDevice`].
pub struct MockPciBuilder {
    config: Vec<u8>,
    bars: Vec<Option<BarSlot>>,
    caps: Vec<(u8, Vec<u8>)>,
    msix_vectors: u32,
    msix_cap: bool,
    addr: PciAddr,
    next_cap: Option<u8>,
    irqs: IrqLines,
}

impl MockPciBuilder {
    /// The device's address.
    pub fn addr(mut self, addr: PciAddr) -> Self {
        self.addr = addr;
        self
    }

    /// A 64-bit memory BAR of `size` bytes served by `handler`.
    pub fn bar(mut self, index: u8, size: u64, handler: Arc<dyn BarHandler>) -> Self {
        let i = index as usize;
        let off = BAR0 as usize + 4 * i;
        self.config[off..off + 4].copy_from_slice(&0x0000_000cu32.to_le_bytes());
        self.bars[i] = Some(BarSlot {
            size,
            io: false,
            handler,
        });
        self
    }

    /// An I/O-space BAR of `size` bytes served by `handler` (a legacy register block).
    pub fn io_bar(mut self, index: u8, size: u64, handler: Arc<dyn BarHandler>) -> Self {
        let i = index as usize;
        let off = BAR0 as usize + 4 * i;
        self.config[off..off + 4].copy_from_slice(&0x0000_0001u32.to_le_bytes());
        self.bars[i] = Some(BarSlot {
            size,
            io: true,
            handler,
        });
        self
    }

    /// A capability with id `id` whose bytes after the id and next pointer are `body`.
    /// Capabilities are laid out from 0x40 in the order added, dword-aligned.
    pub fn cap(mut self, id: u8, body: &[u8]) -> Self {
        self.caps.push((id, body.to_vec()));
        self
    }

    /// Makes the last capability's next pointer `next` instead of the following one (to
    /// build lists that loop or point nowhere).
    pub fn last_cap_next(mut self, next: u8) -> Self {
        self.next_cap = Some(next);
        self
    }

    /// Interrupt lines shared with a device model (which raises them).
    pub fn irq_lines(mut self, lines: IrqLines) -> Self {
        self.irqs = lines;
        self
    }

    /// MSI-X with `n` vectors.
    pub fn msix(mut self, n: u32) -> Self {
        self.msix_vectors = n;
        self
    }

    /// Also an MSI-X capability in config space (added last), whose enable bit follows
    /// [`PciDevice::irq_enable`] and [`PciDevice::irq_disable`], as on a real function.
    pub fn msix_cap(mut self) -> Self {
        self.msix_cap = true;
        self
    }

    /// The device.
    pub fn build(mut self) -> MockPciDevice {
        if self.msix_cap {
            // Message control (table size - 1), table and PBA in BAR1 (PCI 3.0 §6.8.2).
            let n = self.msix_vectors.clamp(1, 2048) as u16 - 1;
            let mut body = n.to_le_bytes().to_vec();
            body.extend_from_slice(&1u32.to_le_bytes());
            body.extend_from_slice(&0x800u32.to_le_bytes());
            self.caps.push((0x11, body));
        }
        let mut off = HEADER_END as usize;
        let mut ptrs = Vec::new();
        for (id, body) in &self.caps {
            ptrs.push(off);
            self.config[off] = *id;
            let end = (off + 2 + body.len()).min(256);
            self.config[off + 2..end].copy_from_slice(&body[..end - off - 2]);
            off = (off + 2 + body.len()).next_multiple_of(4);
        }
        for (i, p) in ptrs.iter().enumerate() {
            let next = match ptrs.get(i + 1) {
                Some(n) => *n as u8,
                None => self.next_cap.unwrap_or(0),
            };
            self.config[p + 1] = next;
        }
        if let Some(first) = ptrs.first() {
            self.config[CAPABILITIES_PTR as usize] = *first as u8;
            let s = u16::from_le_bytes([
                self.config[STATUS as usize],
                self.config[STATUS as usize + 1],
            ]) | status::CAP_LIST;
            self.config[STATUS as usize..STATUS as usize + 2].copy_from_slice(&s.to_le_bytes());
        }
        let msix_cap = self.msix_cap.then(|| ptrs.last().copied()).flatten();
        MockPciDevice {
            addr: self.addr,
            config: Mutex::new(self.config),
            bars: self.bars,
            msix_vectors: self.msix_vectors,
            msix_cap,
            irqs: self.irqs,
            mmio_faults: Arc::new(AtomicU64::new(0)),
            resets: AtomicU64::new(0),
        }
    }
}

impl PciDevice for MockPciDevice {
    type Bar = MockBar;
    type Irq = MockEvent;

    fn addr(&self) -> PciAddr {
        self.addr
    }

    fn config_len(&self) -> u16 {
        256
    }

    fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), PciError> {
        let c = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        let start = offset as usize;
        let src = c
            .get(start..start + buf.len())
            .ok_or(PciError::OutOfRange {
                offset: offset as u64,
                width: buf.len(),
                limit: 256,
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn config_write(&self, offset: u16, data: &[u8]) -> Result<(), PciError> {
        let mut c = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        let start = offset as usize;
        let dst = c
            .get_mut(start..start + data.len())
            .ok_or(PciError::OutOfRange {
                offset: offset as u64,
                width: data.len(),
                limit: 256,
            })?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn bar_info(&self, bar: u8) -> Result<Option<BarInfo>, PciError> {
        if bar > 5 {
            return Err(PciError::NoSuchBar { bar });
        }
        Ok(self.bars[bar as usize].as_ref().map(|b| BarInfo {
            index: bar,
            kind: if b.io {
                BarKind::Io
            } else {
                BarKind::Mem64 {
                    prefetchable: false,
                }
            },
            size: b.size,
            // As vfio-pci: I/O space is reached through the device file, not mapped.
            mappable: !b.io,
        }))
    }

    fn map_bar(&self, bar: u8) -> Result<MockBar, PciError> {
        let slot = self
            .bars
            .get(bar as usize)
            .and_then(Option::as_ref)
            .ok_or(PciError::NoSuchBar { bar })?;
        Ok(MockBar {
            handler: slot.handler.clone(),
            len: slot.size as usize,
            faults: self.mmio_faults.clone(),
        })
    }

    fn irq_count(&self, kind: IrqKind) -> Result<u32, PciError> {
        Ok(match kind {
            IrqKind::Msix => self.msix_vectors,
            _ => 0,
        })
    }

    fn irq_event(&self) -> Result<MockEvent, PciError> {
        Ok(MockEvent::new())
    }

    fn irq_enable(&self, kind: IrqKind, events: &[&MockEvent]) -> Result<(), PciError> {
        let available = self.irq_count(kind)?;
        if events.len() as u32 > available {
            return Err(PciError::IrqUnsupported {
                kind,
                wanted: events.len() as u32,
                available,
            });
        }
        *self
            .irqs
            .msix
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            events.iter().map(|e| (*e).clone()).collect();
        self.set_msix_enable(kind == IrqKind::Msix);
        Ok(())
    }

    fn irq_disable(&self, _kind: IrqKind) -> Result<(), PciError> {
        self.irqs
            .msix
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.set_msix_enable(false);
        Ok(())
    }

    fn reset(&self) -> Result<(), PciError> {
        self.resets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl MockPciDevice {
    fn set_msix_enable(&self, on: bool) {
        if let Some(cap) = self.msix_cap {
            let mut c = self.config.lock().unwrap_or_else(PoisonError::into_inner);
            // Message control bit 15: MSI-X enable.
            c[cap + 3] = (c[cap + 3] & 0x7f) | ((on as u8) << 7);
        }
    }
}

impl std::fmt::Debug for MockPciDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockPciDevice")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdk_core::pci::caps::{find, CapIter};
    use rdk_core::pci::config::DeviceConfig;

    struct Regs(Mutex<[u32; 4]>);
    impl BarHandler for Regs {
        fn read(&self, offset: usize, _width: usize) -> u32 {
            self.0.lock().unwrap()[offset / 4]
        }
        fn write(&self, offset: usize, _width: usize, value: u32) {
            self.0.lock().unwrap()[offset / 4] = value;
        }
    }

    #[test]
    fn capabilities_bars_and_faults() {
        let d = MockPciDevice::builder(0x1af4, 0x1041)
            .bar(2, 16, Arc::new(Regs(Mutex::new([0; 4]))))
            .cap(0x09, &[14, 1, 2, 0, 0, 0])
            .cap(0x11, &[0; 10])
            .msix(3)
            .build();
        let cfg = DeviceConfig(&d);
        let caps: Vec<_> = CapIter::new(&cfg).unwrap().map(|c| c.unwrap()).collect();
        assert_eq!(caps.len(), 2);
        assert_eq!((caps[0].offset, caps[1].offset), (0x40, 0x48));
        assert_eq!(find(&cfg, 0x11).unwrap().unwrap().offset, 0x48);
        assert_eq!(d.bar_info(2).unwrap().unwrap().size, 16);
        assert!(d.bar_info(0).unwrap().is_none());
        let bar = d.map_bar(2).unwrap();
        bar.write32(4, 7);
        assert_eq!(bar.read32(4), 7);
        assert_eq!(d.mmio_faults(), 0);
        assert_eq!(bar.read32(16), u32::MAX);
        bar.write16(3, 1);
        assert_eq!(d.mmio_faults(), 2);
        let e = d.irq_event().unwrap();
        d.irq_enable(IrqKind::Msix, &[&e]).unwrap();
        assert!(d.irq_lines().raise(0));
        assert!(!d.irq_lines().raise(1));
        use rdk_core::os::EventNotifier;
        assert_eq!(e.ack().unwrap(), 1);
    }

    #[test]
    fn a_looping_list_is_built_as_asked() {
        let d = MockPciDevice::builder(1, 2)
            .cap(0x09, &[0; 2])
            .cap(0x09, &[0; 2])
            .last_cap_next(0x40)
            .build();
        let cfg = DeviceConfig(&d);
        let r: Vec<_> = CapIter::new(&cfg).unwrap().collect();
        assert!(r.last().unwrap().is_err());
    }
}
