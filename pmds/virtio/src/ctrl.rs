//! The control virtqueue (virtio 1.2 §5.1.6.5): one command at a time, waited for.

use alloc::vec::Vec;
use rdk_core::ethdev::{DeviceReason, EthError};
use rdk_core::os::DmaRegion;
use rdk_core::virtio::format::ctrl;
use rdk_core::virtio::{AnyQueue, Buf, Completion, Features, QueueNotify, Virtqueue};

/// Queue entries (a command takes two descriptors; one is in flight at a time).
pub(crate) const CTRL_SIZE: u16 = 16;
/// Where the acknowledgement byte goes in the command buffer.
const ACK_OFF: usize = 256;
/// Bytes of the command buffer.
pub(crate) const CTRL_BUF: usize = 512;
/// Polls of the used ring before a command counts as lost (tens of milliseconds).
const POLLS: u32 = 1 << 22;

/// The control queue and its command buffer.
pub(crate) struct CtrlQueue<R: DmaRegion, N: QueueNotify> {
    pub q: Option<AnyQueue<R>>,
    pub region: Option<R>,
    buf: R,
    pub notify: Option<N>,
    /// A command went unanswered: the device may still write the buffer, so no command is
    /// sent until a reset (the next start or recovery rebuilds the queue).
    lost: bool,
}

fn refused(text: &'static str) -> EthError {
    EthError::Device {
        op: "virtio control command",
        reason: DeviceReason { text, code: 0 },
    }
}

impl<R: DmaRegion, N: QueueNotify> CtrlQueue<R, N> {
    pub fn new(region: R, buf: R) -> Self {
        Self {
            q: None,
            region: Some(region),
            buf,
            notify: None,
            lost: false,
        }
    }

    /// A fresh ring in the queue's memory; called only after a device reset, so a command
    /// the device never answered is forgotten with it.
    pub fn rebuild(&mut self, features: Features) -> Result<&AnyQueue<R>, EthError> {
        self.notify = None;
        self.lost = false;
        let region = match self.q.take() {
            Some(q) => q.into_region(),
            None => self.region.take().ok_or(crate::driver::lost_ring())?,
        };
        let q = crate::driver::fresh_queue(region, CTRL_SIZE, features)?;
        Ok(self.q.insert(q))
    }

    /// Sends `class`/`cmd` with `data` and waits for the device's answer.
    pub fn command(&mut self, class: u8, cmd: u8, data: &[u8]) -> Result<(), EthError> {
        if self.lost {
            return Err(refused(
                "the device did not answer an earlier control command; stop and start the port to reset it",
            ));
        }
        let (Some(q), Some(notify)) = (self.q.as_mut(), self.notify.as_ref()) else {
            return Err(refused("the control queue is not running; start the port"));
        };
        let mut bytes = Vec::with_capacity(2 + data.len());
        bytes.extend_from_slice(&[class, cmd]);
        bytes.extend_from_slice(data);
        if bytes.len() > ACK_OFF || self.buf.len() < CTRL_BUF {
            return Err(refused("control command too long"));
        }
        let base = self.buf.as_ptr();
        // SAFETY: the buffer is ours and at least CTRL_BUF bytes; no command is in flight
        // (each one is waited for, and a lost one blocks commands until a reset), so the
        // device is not reading or writing it.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), base, bytes.len());
            base.add(ACK_OFF).write_volatile(0xff);
        }
        let (Some(cmd_iova), Some(ack_iova)) = (self.buf.iova_at(0), self.buf.iova_at(ACK_OFF))
        else {
            return Err(refused("control buffer has no IOVA"));
        };
        let id = q
            .add(&[
                Buf::readable(cmd_iova, bytes.len() as u32),
                Buf::writable(ack_iova, 1),
            ])
            .map_err(|_| refused("the control queue is full or broken; reset the port"))?;
        if q.kick_prepare() {
            notify.notify();
        }
        for _ in 0..POLLS {
            match q.pop_used() {
                None => core::hint::spin_loop(),
                Some(Completion::Done(u)) if u.id == id => {
                    // SAFETY: the command is complete; the device wrote the byte before
                    // publishing the used entry, which pop_used read with Acquire.
                    let ack = unsafe { base.add(ACK_OFF).read_volatile() };
                    return if ack == ctrl::OK {
                        Ok(())
                    } else {
                        Err(refused("the device refused the control command"))
                    };
                }
                // An anomaly that did not return the command's chain (counted by the queue):
                // the device still has it and may yet answer; keep waiting.
                Some(Completion::Dropped { id: None, .. }) => core::hint::spin_loop(),
                Some(c) => {
                    // The chain came back without a valid answer; anything else means the
                    // device still has the command and may write the buffer later.
                    if !matches!(c, Completion::Dropped { id: Some(i), .. } if i == id) {
                        self.lost = true;
                    }
                    return Err(refused(
                        "the device answered the control command with nonsense",
                    ));
                }
            }
        }
        // The device may still write the buffer: no command until a reset. The ring and its
        // memory stay, so the next start (which resets the device first) rebuilds it.
        self.lost = true;
        Err(refused(
            "the device did not answer the control command; reset the port",
        ))
    }
}
