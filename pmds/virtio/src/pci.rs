//! The modern virtio-pci transport (virtio 1.2 §4.1) over any [`PciDevice`].
//!
//! The device says where its structures are with vendor-specific capabilities; each names a
//! BAR, an offset and a length. All of that is untrusted: the capability walk is
//! rdk-core's loop-proof one, each structure must lie inside its BAR and be long enough for
//! what is read from it, and every register offset used later is inside a checked window.

use alloc::sync::Arc;
use alloc::vec::Vec;
use rdk_core::os::pci::{IrqKind, Mmio, PciDevice, PciError};
use rdk_core::pci::caps::{id, CapIter};
use rdk_core::pci::config::DeviceConfig;
use rdk_core::virtio::format::{cfg_type, common};
use rdk_core::virtio::{
    DeviceStatus, Features, Interrupts, QueueAreas, QueueNotify, Transport, TransportError,
};

/// Reads of the status register a reset may take before the device counts as hung.
const RESET_POLLS: u32 = 1 << 20;

/// One structure: a checked window in a BAR.
struct Window<B> {
    bar: Arc<B>,
    off: usize,
    len: usize,
}

impl<B> Clone for Window<B> {
    fn clone(&self) -> Self {
        Self {
            bar: self.bar.clone(),
            off: self.off,
            len: self.len,
        }
    }
}

/// Modern virtio over PCI.
pub struct PciTransport<D: PciDevice> {
    dev: D,
    common: Window<D::Bar>,
    notify: Window<D::Bar>,
    notify_mult: u32,
    isr: Window<D::Bar>,
    device: Window<D::Bar>,
    /// Queue index → MSI-X vector, once interrupts are set up.
    vectors: Vec<(u16, u16)>,
    /// Every interrupt event handed out, reused by the next setup (see [`kept_events`]).
    events: Vec<Arc<D::Irq>>,
}

/// A queue's doorbell in the notify structure.
pub struct PciNotify<B: Mmio> {
    bar: Arc<B>,
    offset: usize,
    queue: u16,
}

impl<B: Mmio + 'static> QueueNotify for PciNotify<B> {
    #[inline(always)]
    fn notify(&self) {
        self.bar.write16(self.offset, self.queue);
    }
}

/// The first `n` of the interrupt events a transport keeps, made on first need: each setup
/// (a start, or a recovery from `DEVICE_NEEDS_RESET`) points the vectors at the same events,
/// so a queue's wait handle stays valid across it, as vhost-user's call eventfds do. A count
/// left on a reused event is at most one early wake-up, which a waiter treats as a hint.
pub(crate) fn kept_events<D: PciDevice>(
    dev: &D,
    kept: &mut Vec<Arc<D::Irq>>,
    n: usize,
) -> Result<Vec<Arc<D::Irq>>, PciError> {
    while kept.len() < n {
        kept.push(Arc::new(dev.irq_event()?));
    }
    Ok(kept[..n].to_vec())
}

fn malformed(what: &'static str) -> TransportError {
    TransportError::Malformed { what }
}

impl<D: PciDevice> PciTransport<D> {
    /// Finds the device's structures, checks them against their BARs, maps the BARs and turns
    /// bus mastering on.
    pub fn new(dev: D) -> Result<Self, TransportError> {
        let cfg = DeviceConfig(&dev);
        let mut found: [Option<(u8, u32, u32, u32)>; 5] = [None; 5];
        for cap in CapIter::new(&cfg)? {
            let cap = cap?;
            if cap.id != id::VENDOR {
                continue;
            }
            let o = cap.offset;
            let cap_len = dev.config_read_u8(o + 2)?;
            let ty = dev.config_read_u8(o + 3)?;
            if !(cfg_type::COMMON..=cfg_type::PCI_CFG).contains(&ty) || cap_len < 16 {
                continue;
            }
            let bar = dev.config_read_u8(o + 4)?;
            let off = dev.config_read_u32(o + 8)?;
            let len = dev.config_read_u32(o + 12)?;
            let mult = if ty == cfg_type::NOTIFY {
                if cap_len < 20 {
                    return Err(malformed("notify capability shorter than 20 bytes"));
                }
                dev.config_read_u32(o + 16)?
            } else {
                0
            };
            // The first of each type is the one to use (§4.1.4).
            let slot = &mut found[ty as usize - 1];
            if slot.is_none() && bar <= 5 {
                *slot = Some((bar, off, len, mult));
            }
        }
        let mut bars: [Option<Arc<D::Bar>>; 6] = Default::default();
        let mut window = |ty: u8, min: u32| -> Result<(Window<D::Bar>, u32), TransportError> {
            let (bar, off, len, mult) = found[ty as usize - 1].ok_or(malformed(
                "a required virtio capability (common, notify, ISR or device) is missing",
            ))?;
            if len < min {
                return Err(malformed("virtio structure shorter than its registers"));
            }
            let info = dev
                .bar_info(bar)?
                .ok_or(malformed("virtio capability names an unimplemented BAR"))?;
            if !info.kind.is_memory() {
                return Err(malformed("virtio capability names an I/O BAR"));
            }
            let end = off as u64 + len as u64;
            if end > info.size {
                return Err(malformed(
                    "virtio structure reaches past the end of its BAR",
                ));
            }
            let b = match &bars[bar as usize] {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(dev.map_bar(bar)?);
                    bars[bar as usize] = Some(b.clone());
                    b
                }
            };
            if (end as usize) > b.len() {
                return Err(malformed("virtio structure reaches past the mapped BAR"));
            }
            Ok((
                Window {
                    bar: b,
                    off: off as usize,
                    len: len as usize,
                },
                mult,
            ))
        };
        let (common, _) = window(cfg_type::COMMON, 56)?;
        let (notify, notify_mult) = window(cfg_type::NOTIFY, 2)?;
        let (isr, _) = window(cfg_type::ISR, 1)?;
        let (device, _) = window(cfg_type::DEVICE, 1)?;
        if common.off % 4 != 0 || notify.off % 2 != 0 || notify_mult % 2 != 0 {
            return Err(malformed("virtio structure misaligned"));
        }
        dev.set_bus_master(true)?;
        Ok(Self {
            dev,
            common,
            notify,
            notify_mult,
            isr,
            device,
            vectors: Vec::new(),
            events: Vec::new(),
        })
    }

    /// The PCI device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    fn c(&self) -> (&D::Bar, usize) {
        (&self.common.bar, self.common.off)
    }

    fn select(&self, queue: u16) -> Result<(), TransportError> {
        let (b, o) = self.c();
        if queue >= b.read16(o + common::NUM_QUEUES) {
            return Err(TransportError::NoSuchQueue { queue });
        }
        b.write16(o + common::QUEUE_SELECT, queue);
        Ok(())
    }
}

impl<D: PciDevice> Transport for PciTransport<D> {
    type Notify = PciNotify<D::Bar>;
    type Irq = D::Irq;

    fn reset(&mut self) -> Result<(), TransportError> {
        let (b, o) = self.c();
        b.write8(o + common::DEVICE_STATUS, 0);
        for _ in 0..RESET_POLLS {
            if b.read8(o + common::DEVICE_STATUS) == 0 {
                self.vectors.clear();
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(TransportError::ResetTimeout)
    }

    fn status(&mut self) -> Result<DeviceStatus, TransportError> {
        let (b, o) = self.c();
        Ok(DeviceStatus::from_bits_retain(
            b.read8(o + common::DEVICE_STATUS),
        ))
    }

    fn set_status(&mut self, status: DeviceStatus) -> Result<(), TransportError> {
        let (b, o) = self.c();
        b.write8(o + common::DEVICE_STATUS, status.bits());
        Ok(())
    }

    fn device_features(&mut self) -> Result<Features, TransportError> {
        let (b, o) = self.c();
        b.write32(o + common::DEVICE_FEATURE_SELECT, 0);
        let lo = b.read32(o + common::DEVICE_FEATURE) as u64;
        b.write32(o + common::DEVICE_FEATURE_SELECT, 1);
        let hi = b.read32(o + common::DEVICE_FEATURE) as u64;
        Ok(Features::from_bits_retain(lo | hi << 32))
    }

    fn set_driver_features(&mut self, features: Features) -> Result<(), TransportError> {
        let (b, o) = self.c();
        let f = features.bits();
        b.write32(o + common::DRIVER_FEATURE_SELECT, 0);
        b.write32(o + common::DRIVER_FEATURE, f as u32);
        b.write32(o + common::DRIVER_FEATURE_SELECT, 1);
        b.write32(o + common::DRIVER_FEATURE, (f >> 32) as u32);
        Ok(())
    }

    fn num_queues(&mut self) -> Result<u16, TransportError> {
        let (b, o) = self.c();
        Ok(b.read16(o + common::NUM_QUEUES))
    }

    fn max_queue_size(&mut self, queue: u16) -> Result<u16, TransportError> {
        self.select(queue)?;
        let (b, o) = self.c();
        Ok(b.read16(o + common::QUEUE_SIZE))
    }

    fn setup_interrupts(
        &mut self,
        queues: &[u16],
    ) -> Result<Option<Interrupts<D::Irq>>, TransportError> {
        let n = queues.len() + 1;
        if (self.dev.irq_count(IrqKind::Msix)? as usize) < n {
            return Ok(None);
        }
        let events = kept_events(&self.dev, &mut self.events, n)?;
        let refs: Vec<&D::Irq> = events.iter().map(|e| &**e).collect();
        self.dev.irq_enable(IrqKind::Msix, &refs)?;
        let (b, o) = self.c();
        b.write16(o + common::CONFIG_MSIX_VECTOR, 0);
        if b.read16(o + common::CONFIG_MSIX_VECTOR) != 0 {
            return Err(TransportError::Refused {
                what: "the device could not map the configuration interrupt to MSI-X vector 0",
            });
        }
        self.vectors = queues
            .iter()
            .enumerate()
            .map(|(i, q)| (*q, i as u16 + 1))
            .collect();
        let mut events = events.into_iter();
        let config = events.next().ok_or(malformed("no config vector"))?;
        Ok(Some(Interrupts {
            config,
            queues: events.collect(),
        }))
    }

    fn setup_queue(&mut self, queue: u16, areas: &QueueAreas) -> Result<(), TransportError> {
        let max = self.max_queue_size(queue)?;
        if areas.size == 0 || areas.size > max {
            return Err(TransportError::Refused {
                what: "queue size larger than the device allows; use fewer descriptors",
            });
        }
        let (b, o) = self.c();
        b.write16(o + common::QUEUE_SIZE, areas.size);
        b.write64(o + common::QUEUE_DESC, areas.desc.get());
        b.write64(o + common::QUEUE_DRIVER, areas.driver.get());
        b.write64(o + common::QUEUE_DEVICE, areas.device.get());
        if let Some(&(_, v)) = self.vectors.iter().find(|(q, _)| *q == queue) {
            b.write16(o + common::QUEUE_MSIX_VECTOR, v);
            if b.read16(o + common::QUEUE_MSIX_VECTOR) != v {
                return Err(TransportError::Refused {
                    what: "the device could not map a queue interrupt to its MSI-X vector",
                });
            }
        } else {
            b.write16(o + common::QUEUE_MSIX_VECTOR, common::NO_VECTOR);
        }
        Ok(())
    }

    fn enable_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        self.select(queue)?;
        let (b, o) = self.c();
        b.write16(o + common::QUEUE_ENABLE, 1);
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) -> Result<PciNotify<D::Bar>, TransportError> {
        self.select(queue)?;
        let (b, o) = self.c();
        let off = b.read16(o + common::QUEUE_NOTIFY_OFF) as u64 * self.notify_mult as u64;
        if off + 2 > self.notify.len as u64 {
            return Err(malformed("queue doorbell outside the notify structure"));
        }
        Ok(PciNotify {
            bar: self.notify.bar.clone(),
            offset: self.notify.off + off as usize,
            queue,
        })
    }

    fn config_generation(&mut self) -> Result<u8, TransportError> {
        let (b, o) = self.c();
        Ok(b.read8(o + common::CONFIG_GENERATION))
    }

    fn read_config(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        if offset
            .checked_add(buf.len())
            .is_none_or(|e| e > self.device.len)
        {
            return Err(TransportError::Pci(PciError::OutOfRange {
                offset: offset as u64,
                width: buf.len(),
                limit: self.device.len as u64,
            }));
        }
        // Fields are read with their natural width (§4.1.3.1): a 16- or 32-bit field in one
        // access, byte arrays (the MAC) byte by byte.
        let (b, at) = (&self.device.bar, self.device.off + offset);
        match buf.len() {
            2 if at % 2 == 0 => buf.copy_from_slice(&b.read16(at).to_le_bytes()),
            4 if at % 4 == 0 => buf.copy_from_slice(&b.read32(at).to_le_bytes()),
            _ => {
                for (i, x) in buf.iter_mut().enumerate() {
                    *x = b.read8(at + i);
                }
            }
        }
        Ok(())
    }

    fn interrupt_status(&mut self) -> Result<u8, TransportError> {
        Ok(self.isr.bar.read8(self.isr.off))
    }
}
