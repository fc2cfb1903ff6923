//! The legacy virtio-pci transport (virtio 1.2 §4.1.4.8, "Legacy Interfaces: A Note on PCI
//! Device Layout"), as transitional devices (`1af4:1000`..`1af4:103f`) offer it in BAR0.
//!
//! Everything is in one register block, usually I/O space (reached through
//! [`PciDevice::map_bar`]'s [`Mmio`] like any BAR):
//!
//! ```text
//! 0x00 host features (32 bits)   0x04 guest features   0x08 queue PFN (4096-byte pages)
//! 0x0c queue size (read-only)    0x0e queue select     0x10 queue notify
//! 0x12 device status             0x13 ISR (read clears)
//! 0x14 config vector, 0x16 queue vector   (only while MSI-X is enabled)
//! device configuration at 0x18 with MSI-X enabled, else at 0x14
//! ```
//!
//! What follows from it: only 32 feature bits (so no `VERSION_1`, `ACCESS_PLATFORM`, packed
//! rings); the split ring in the legacy layout, its used ring 4096-aligned after the
//! available ring; queue sizes fixed by the device; no configuration generation. Fields are
//! guest-endian, which this transport treats as little-endian (x86 and every other
//! little-endian host; a big-endian host cannot use a legacy device through it).
//!
//! Without `VERSION_1` the net header is 10 bytes unless `MRG_RXBUF` is negotiated, and a
//! header may share a descriptor with the frame only with `ANY_LAYOUT`; the driver needs
//! both ([`legacy_features`]). The control queue's size is fixed too (64 on QEMU), so the
//! driver runs a legacy device without one (and so without `CTRL_RX`, `CTRL_MAC_ADDR`, `MQ`):
//! promiscuous, one queue pair.

use alloc::sync::Arc;
use alloc::vec::Vec;
use rdk_core::os::pci::{IrqKind, Mmio, PciDevice, PciError};
use rdk_core::pci::caps::{self, id};
use rdk_core::pci::config::DeviceConfig;
use rdk_core::virtio::format::{common, SplitLayout};
use rdk_core::virtio::{
    DeviceStatus, Features, Interrupts, QueueAreas, QueueNotify, Transport, TransportError,
};

/// Legacy register offsets in BAR0.
pub mod reg {
    /// Device (host) features, bits 0..32.
    pub const HOST_FEATURES: usize = 0x00;
    /// Driver (guest) features.
    pub const GUEST_FEATURES: usize = 0x04;
    /// Queue address: the descriptor table's IOVA in 4096-byte pages (0: disabled).
    pub const QUEUE_PFN: usize = 0x08;
    /// The selected queue's size (read-only; 0: no such queue).
    pub const QUEUE_NUM: usize = 0x0c;
    /// Queue select.
    pub const QUEUE_SEL: usize = 0x0e;
    /// Queue notify: the queue index.
    pub const QUEUE_NOTIFY: usize = 0x10;
    /// Device status.
    pub const STATUS: usize = 0x12;
    /// Interrupt status; reading clears it.
    pub const ISR: usize = 0x13;
    /// Configuration-change MSI-X vector (MSI-X enabled only).
    pub const CONFIG_VECTOR: usize = 0x14;
    /// The selected queue's MSI-X vector (MSI-X enabled only).
    pub const QUEUE_VECTOR: usize = 0x16;
    /// Device configuration without MSI-X.
    pub const CONFIG: usize = 0x14;
    /// Device configuration with MSI-X enabled.
    pub const CONFIG_MSIX: usize = 0x18;
}

/// `VIRTIO_F_ANY_LAYOUT` (bit 27, legacy only): headers and data may share descriptors.
pub const ANY_LAYOUT: Features = Features::from_bits_retain(1 << 27);

/// The page size of [`reg::QUEUE_PFN`] and the legacy used-ring alignment.
const PAGE: u64 = 4096;
/// Queues probed at most when counting them (QEMU's `VIRTIO_QUEUE_MAX`).
const MAX_QUEUES: u16 = 1024;
/// Reads of the status register a reset may take before the device counts as hung.
const RESET_POLLS: u32 = 1 << 20;

/// The features a driver of a legacy device accepts, from `offered` and what it would accept
/// of a modern one (`accepted`); an error names what the legacy device lacks.
pub fn legacy_features(offered: Features, accepted: Features) -> Result<Features, &'static str> {
    if !accepted.contains(Features::NET_MRG_RXBUF) {
        return Err(
            "a legacy virtio-net device without MRG_RXBUF has a 10-byte header, \
                    which rdk does not build; allow mrg_rxbuf (or use a modern device)",
        );
    }
    if !offered.contains(ANY_LAYOUT) {
        return Err(
            "the legacy device lacks ANY_LAYOUT (headers in their own descriptor), \
                    which rdk does not do; use a modern device",
        );
    }
    let no_ctrl = Features::NET_CTRL_VQ
        | Features::NET_CTRL_RX
        | Features::NET_CTRL_MAC_ADDR
        | Features::NET_MQ;
    Ok((accepted - no_ctrl) | ANY_LAYOUT)
}

/// A queue's doorbell: its index written to the queue-notify register (0x10).
pub struct LegacyNotify<B: Mmio> {
    bar: Arc<B>,
    queue: u16,
}

impl<B: Mmio + 'static> QueueNotify for LegacyNotify<B> {
    #[inline(always)]
    fn notify(&self) {
        self.bar.write16(reg::QUEUE_NOTIFY, self.queue);
    }
}

/// Legacy virtio over PCI (BAR0).
pub struct LegacyPciTransport<D: PciDevice> {
    dev: D,
    bar: Arc<D::Bar>,
    /// Offset of the MSI-X capability, which says where device configuration starts.
    msix_cap: Option<u16>,
    num_queues: Option<u16>,
    /// Queue index → MSI-X vector, once interrupts are set up.
    vectors: Vec<(u16, u16)>,
    /// Every interrupt event handed out, reused by the next setup (see
    /// [`kept_events`](crate::pci::kept_events)).
    events: Vec<Arc<D::Irq>>,
}

fn refused(what: &'static str) -> TransportError {
    TransportError::Refused { what }
}

impl<D: PciDevice> LegacyPciTransport<D> {
    /// Maps BAR0 (checked to hold the common registers) and turns bus mastering on.
    pub fn new(dev: D) -> Result<Self, TransportError> {
        let info = dev.bar_info(0)?.ok_or(TransportError::Malformed {
            what: "no BAR0: not a legacy or transitional virtio device",
        })?;
        let bar = dev.map_bar(0)?;
        if info.size < reg::CONFIG as u64 || bar.len() < reg::CONFIG {
            return Err(TransportError::Malformed {
                what: "BAR0 is too small for the legacy virtio registers",
            });
        }
        let msix_cap = caps::find(&DeviceConfig(&dev), id::MSIX)?.map(|c| c.offset);
        dev.set_bus_master(true)?;
        Ok(Self {
            dev,
            bar: Arc::new(bar),
            msix_cap,
            num_queues: None,
            vectors: Vec::new(),
            events: Vec::new(),
        })
    }

    /// The PCI device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Whether MSI-X is enabled in the function's capability (which moves the device
    /// configuration from 0x14 to 0x18).
    fn msix_enabled(&self) -> Result<bool, TransportError> {
        match self.msix_cap {
            Some(cap) => Ok(self.dev.config_read_u16(cap + 2)? & 0x8000 != 0),
            None => Ok(false),
        }
    }

    fn select(&mut self, queue: u16) -> Result<(), TransportError> {
        if queue >= self.num_queues()? {
            return Err(TransportError::NoSuchQueue { queue });
        }
        self.bar.write16(reg::QUEUE_SEL, queue);
        Ok(())
    }
}

impl<D: PciDevice> Transport for LegacyPciTransport<D> {
    type Notify = LegacyNotify<D::Bar>;
    type Irq = D::Irq;

    fn reset(&mut self) -> Result<(), TransportError> {
        self.bar.write8(reg::STATUS, 0);
        for _ in 0..RESET_POLLS {
            if self.bar.read8(reg::STATUS) == 0 {
                self.vectors.clear();
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(TransportError::ResetTimeout)
    }

    fn status(&mut self) -> Result<DeviceStatus, TransportError> {
        Ok(DeviceStatus::from_bits_retain(self.bar.read8(reg::STATUS)))
    }

    fn set_status(&mut self, status: DeviceStatus) -> Result<(), TransportError> {
        self.bar.write8(reg::STATUS, status.bits());
        Ok(())
    }

    fn device_features(&mut self) -> Result<Features, TransportError> {
        Ok(Features::from_bits_retain(
            self.bar.read32(reg::HOST_FEATURES) as u64,
        ))
    }

    fn set_driver_features(&mut self, features: Features) -> Result<(), TransportError> {
        let f = features.bits();
        if f >> 32 != 0 {
            return Err(refused(
                "a legacy device has only 32 feature bits; accept none above bit 31",
            ));
        }
        self.bar.write32(reg::GUEST_FEATURES, f as u32);
        Ok(())
    }

    fn num_queues(&mut self) -> Result<u16, TransportError> {
        // No register says it: the queues are those with a non-zero size.
        if let Some(n) = self.num_queues {
            return Ok(n);
        }
        let mut n = 0;
        while n < MAX_QUEUES {
            self.bar.write16(reg::QUEUE_SEL, n);
            if self.bar.read16(reg::QUEUE_NUM) == 0 {
                break;
            }
            n += 1;
        }
        self.num_queues = Some(n);
        Ok(n)
    }

    fn max_queue_size(&mut self, queue: u16) -> Result<u16, TransportError> {
        self.select(queue)?;
        Ok(self.bar.read16(reg::QUEUE_NUM))
    }

    fn setup_interrupts(
        &mut self,
        queues: &[u16],
    ) -> Result<Option<Interrupts<D::Irq>>, TransportError> {
        let n = queues.len() + 1;
        if self.msix_cap.is_none() || (self.dev.irq_count(IrqKind::Msix)? as usize) < n {
            return Ok(None);
        }
        let events = crate::pci::kept_events(&self.dev, &mut self.events, n)?;
        let refs: Vec<&D::Irq> = events.iter().map(|e| &**e).collect();
        self.dev.irq_enable(IrqKind::Msix, &refs)?;
        if !self.msix_enabled()? {
            return Err(TransportError::Malformed {
                what: "MSI-X was enabled but the capability does not say so",
            });
        }
        self.bar.write16(reg::CONFIG_VECTOR, 0);
        if self.bar.read16(reg::CONFIG_VECTOR) != 0 {
            return Err(refused(
                "the device could not map the configuration interrupt to MSI-X vector 0",
            ));
        }
        self.vectors = queues
            .iter()
            .enumerate()
            .map(|(i, q)| (*q, i as u16 + 1))
            .collect();
        let mut events = events.into_iter();
        let config = events.next().ok_or(TransportError::Malformed {
            what: "no config vector",
        })?;
        Ok(Some(Interrupts {
            config,
            queues: events.collect(),
        }))
    }

    fn setup_queue(&mut self, queue: u16, areas: &QueueAreas) -> Result<(), TransportError> {
        let size = self.max_queue_size(queue)?;
        if size == 0 || areas.size != size {
            return Err(refused(
                "a legacy device's queue size is fixed; set the queue up with exactly that \
                 many descriptors (the port's maximum)",
            ));
        }
        let l = SplitLayout::legacy(size);
        let desc = areas.desc.get();
        if !desc.is_multiple_of(PAGE)
            || areas.driver.get() != desc + l.avail as u64
            || areas.device.get() != desc + l.used as u64
        {
            return Err(refused(
                "the ring is not in the legacy layout (page-aligned, used ring on the next \
                 4096-byte boundary); build it without VERSION_1",
            ));
        }
        let pfn = u32::try_from(desc / PAGE).map_err(|_| {
            refused("a legacy device reaches rings only below 16 TiB; allocate lower IOVAs")
        })?;
        if self.msix_enabled()? {
            let v = self
                .vectors
                .iter()
                .find(|(q, _)| *q == queue)
                .map_or(common::NO_VECTOR, |&(_, v)| v);
            self.bar.write16(reg::QUEUE_VECTOR, v);
            if self.bar.read16(reg::QUEUE_VECTOR) != v {
                return Err(refused(
                    "the device could not map a queue interrupt to its MSI-X vector",
                ));
            }
        }
        self.bar.write32(reg::QUEUE_PFN, pfn);
        Ok(())
    }

    fn enable_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        // Writing the PFN enabled it; check that the device took it.
        self.select(queue)?;
        if self.bar.read32(reg::QUEUE_PFN) == 0 {
            return Err(refused("the device did not accept the queue's address"));
        }
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) -> Result<LegacyNotify<D::Bar>, TransportError> {
        if queue >= self.num_queues()? {
            return Err(TransportError::NoSuchQueue { queue });
        }
        Ok(LegacyNotify {
            bar: self.bar.clone(),
            queue,
        })
    }

    fn config_generation(&mut self) -> Result<u8, TransportError> {
        // Legacy devices have none.
        Ok(0)
    }

    fn read_config(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        let base = if self.msix_enabled()? {
            reg::CONFIG_MSIX
        } else {
            reg::CONFIG
        };
        let limit = self.bar.len();
        let at = base
            .checked_add(offset)
            .filter(|a| a.checked_add(buf.len()).is_some_and(|e| e <= limit))
            .ok_or(TransportError::Pci(PciError::OutOfRange {
                offset: offset as u64,
                width: buf.len(),
                limit: limit.saturating_sub(base) as u64,
            }))?;
        let b = &self.bar;
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
        Ok(self.bar.read8(reg::ISR))
    }

    fn is_legacy(&self) -> bool {
        true
    }
}
