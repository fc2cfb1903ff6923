//! The device side of a virtqueue, split or packed, reaching memory only by IOVA through the
//! checked [`DeviceMemory`].

use crate::device_mem::{DeviceMemory, Fault};
use rdk_core::addr::Iova;
use rdk_core::virtio::format::{avail_flags, desc_flags, event_flags};
use rdk_core::virtio::need_event;

/// One buffer of a chain, as the driver described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DevBuf {
    pub iova: Iova,
    pub len: u32,
    pub writable: bool,
}

/// A chain taken from the available ring.
#[derive(Clone, Debug)]
pub(crate) struct Chain {
    /// Split: head index; packed: buffer id.
    pub id: u16,
    pub bufs: Vec<DevBuf>,
}

/// Why a chain could not be taken: a fault, or a driver that wrote nonsense.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RingError {
    Fault(Fault),
    Malformed(&'static str),
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Fault(x) => write!(f, "{x}"),
            RingError::Malformed(m) => f.write_str(m),
        }
    }
}

impl From<Fault> for RingError {
    fn from(f: Fault) -> Self {
        RingError::Fault(f)
    }
}

/// How the device misbehaves when it returns buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsedLie {
    /// Reports an id that was never made available (past the queue size).
    IdNeverPosted,
    /// Reports more bytes written than the chain has.
    LenTooLong,
    /// Moves the split used index far (16 Ki entries) past what it returned.
    IdxJump,
    /// Marks a packed descriptor used with the wrong wrap counter.
    BadWrap,
}

/// Cursor state: where the device is in each ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursors {
    last_avail: u16,
    used_idx: u16,
    avail_pos: u16,
    avail_wrap: bool,
    used_pos: u16,
    used_wrap: bool,
}

/// One virtqueue as the device sees it.
#[derive(Clone, Debug)]
pub(crate) struct DevRing {
    pub size: u16,
    desc: Iova,
    driver: Iova,
    device: Iova,
    packed: bool,
    event_idx: bool,
    c: Cursors,
}

impl DevRing {
    pub fn new(size: u16, areas: [Iova; 3], packed: bool, event_idx: bool) -> Self {
        Self {
            size,
            desc: areas[0],
            driver: areas[1],
            device: areas[2],
            packed,
            event_idx,
            c: Cursors {
                last_avail: 0,
                used_idx: 0,
                avail_pos: 0,
                avail_wrap: true,
                used_pos: 0,
                used_wrap: true,
            },
        }
    }

    fn at(base: Iova, off: u64) -> Iova {
        Iova::new(base.get().wrapping_add(off))
    }

    /// Takes the next available chain, if any.
    pub fn pop(&mut self, mem: &DeviceMemory) -> Result<Option<Chain>, RingError> {
        if self.packed {
            self.pop_packed(mem)
        } else {
            self.pop_split(mem)
        }
    }

    fn pop_split(&mut self, mem: &DeviceMemory) -> Result<Option<Chain>, RingError> {
        let idx = mem.read_u16(Self::at(self.driver, 2))?;
        if idx == self.c.last_avail {
            return Ok(None);
        }
        if idx.wrapping_sub(self.c.last_avail) > self.size {
            return Err(RingError::Malformed("avail index ran ahead of the ring"));
        }
        let slot = (self.c.last_avail % self.size) as u64;
        let head = mem.read_u16(Self::at(self.driver, 4 + 2 * slot))?;
        self.c.last_avail = self.c.last_avail.wrapping_add(1);
        if self.event_idx {
            // avail_event: tell me about the very next one.
            let off = 4 + 8 * self.size as u64;
            mem.write_u16(Self::at(self.device, off), self.c.last_avail)?;
        }
        let mut bufs = Vec::new();
        let mut d = head;
        loop {
            if d >= self.size || bufs.len() >= self.size as usize {
                return Err(RingError::Malformed(
                    "descriptor chain out of range or looping",
                ));
            }
            let base = Self::at(self.desc, 16 * d as u64);
            let addr = mem.read_u64(base)?;
            let len = mem.read_u32(Self::at(base, 8))?;
            let flags = mem.read_u16(Self::at(base, 12))?;
            let next = mem.read_u16(Self::at(base, 14))?;
            if flags & desc_flags::INDIRECT != 0 {
                return Err(RingError::Malformed("indirect descriptor not negotiated"));
            }
            bufs.push(DevBuf {
                iova: Iova::new(addr),
                len,
                writable: flags & desc_flags::WRITE != 0,
            });
            if flags & desc_flags::NEXT == 0 {
                break;
            }
            d = next;
        }
        Ok(Some(Chain { id: head, bufs }))
    }

    fn pop_packed(&mut self, mem: &DeviceMemory) -> Result<Option<Chain>, RingError> {
        let mut bufs = Vec::new();
        let (mut pos, mut wrap) = (self.c.avail_pos, self.c.avail_wrap);
        loop {
            let base = Self::at(self.desc, 16 * pos as u64);
            let flags = mem.read_u16(Self::at(base, 14))?;
            let avail = flags & desc_flags::AVAIL != 0;
            let used = flags & desc_flags::USED != 0;
            if avail != wrap || used == wrap {
                if bufs.is_empty() {
                    return Ok(None);
                }
                return Err(RingError::Malformed("packed chain not wholly available"));
            }
            let addr = mem.read_u64(base)?;
            let len = mem.read_u32(Self::at(base, 8))?;
            let id = mem.read_u16(Self::at(base, 12))?;
            bufs.push(DevBuf {
                iova: Iova::new(addr),
                len,
                writable: flags & desc_flags::WRITE != 0,
            });
            pos += 1;
            if pos == self.size {
                pos = 0;
                wrap = !wrap;
            }
            if flags & desc_flags::NEXT == 0 {
                self.c.avail_pos = pos;
                self.c.avail_wrap = wrap;
                return Ok(Some(Chain { id, bufs }));
            }
            if bufs.len() >= self.size as usize {
                return Err(RingError::Malformed("packed chain longer than the ring"));
            }
        }
    }

    /// Returns chain `id` (of `ndesc` descriptors) with `len` bytes written, lying as `lie`
    /// says.
    pub fn push(
        &mut self,
        mem: &DeviceMemory,
        id: u16,
        len: u32,
        ndesc: u16,
        lie: Option<UsedLie>,
    ) -> Result<(), Fault> {
        let id = if lie == Some(UsedLie::IdNeverPosted) {
            self.size.wrapping_add(3)
        } else {
            id
        };
        let len = if lie == Some(UsedLie::LenTooLong) {
            len.wrapping_add(1 << 20)
        } else {
            len
        };
        if self.packed {
            let base = Self::at(self.desc, 16 * self.c.used_pos as u64);
            mem.write_u32(Self::at(base, 8), len)?;
            mem.write_u16(Self::at(base, 12), id)?;
            let wrap = self.c.used_wrap != (lie == Some(UsedLie::BadWrap));
            let flags = if wrap {
                desc_flags::AVAIL | desc_flags::USED
            } else {
                0
            };
            mem.write_u16(Self::at(base, 14), flags)?;
            let next = self.c.used_pos as u32 + ndesc as u32;
            if next >= self.size as u32 {
                self.c.used_wrap = !self.c.used_wrap;
            }
            self.c.used_pos = (next % self.size as u32) as u16;
        } else {
            let slot = (self.c.used_idx % self.size) as u64;
            let e = Self::at(self.device, 4 + 8 * slot);
            mem.write_u32(e, id as u32)?;
            mem.write_u32(Self::at(e, 4), len)?;
            self.c.used_idx = self.c.used_idx.wrapping_add(1);
            let shown = if lie == Some(UsedLie::IdxJump) {
                self.c.used_idx.wrapping_add(0x4000)
            } else {
                self.c.used_idx
            };
            mem.write_u16(Self::at(self.device, 2), shown)?;
        }
        Ok(())
    }

    /// Returns a batch of `chains` chains (`descs` descriptors in all) as `IN_ORDER` lets a
    /// device (§2.7.9, §2.8.9): one used entry naming the batch's last chain `id`, with `len`,
    /// written where the batch's first entry would go; the ring then skips the whole batch
    /// (split: the used index moves by `chains`; packed: the position moves by `descs`).
    pub fn push_batch(
        &mut self,
        mem: &DeviceMemory,
        id: u16,
        len: u32,
        chains: u16,
        descs: u16,
    ) -> Result<(), Fault> {
        if self.packed {
            return self.push(mem, id, len, descs, None);
        }
        let slot = (self.c.used_idx % self.size) as u64;
        let e = Self::at(self.device, 4 + 8 * slot);
        mem.write_u32(e, id as u32)?;
        mem.write_u32(Self::at(e, 4), len)?;
        self.c.used_idx = self.c.used_idx.wrapping_add(chains);
        mem.write_u16(Self::at(self.device, 2), self.c.used_idx)
    }

    /// The used position now (split: used index; packed: ring position), to ask
    /// [`wants_interrupt`](Self::wants_interrupt) about what was returned since.
    pub fn used_mark(&self) -> u16 {
        self.c.used_idx
    }

    /// Whether the driver wants an interrupt for what was returned since `old`.
    pub fn wants_interrupt(&self, mem: &DeviceMemory, old: u16) -> Result<bool, Fault> {
        if self.packed {
            let flags = mem.read_u16(Self::at(self.driver, 2))?;
            return Ok(flags != event_flags::DISABLE);
        }
        if self.event_idx {
            let ev = mem.read_u16(Self::at(self.driver, 4 + 2 * self.size as u64))?;
            Ok(need_event(ev, self.c.used_idx, old))
        } else {
            let flags = mem.read_u16(self.driver)?;
            Ok(flags & avail_flags::NO_INTERRUPT == 0)
        }
    }

    /// Saves the cursors (to put chains back when a frame does not fit after all).
    pub fn save(&self) -> Cursors {
        self.c
    }

    /// Restores cursors saved with [`save`](Self::save).
    pub fn restore(&mut self, c: Cursors) {
        self.c = c;
    }
}
