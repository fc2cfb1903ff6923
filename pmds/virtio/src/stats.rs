//! Per-queue drop reasons and device anomalies, shared between a queue and its port.

use rdk_core::ethdev::{Counter, XStat};
use rdk_core::virtio::{Anomaly, Health};

/// What a receive queue dropped, and why.
#[derive(Debug, Default)]
pub struct RxStats {
    /// Used buffers shorter than the net header.
    pub runt: Counter,
    /// Merged frames whose `num_buffers` was 0 or larger than the ring.
    pub bad_num_buffers: Counter,
    /// Frames cut short by a device anomaly in a merged chain.
    pub broken_chain: Counter,
    /// Device anomalies, by [`Anomaly`] kind.
    pub anomalies: [Counter; Anomaly::COUNT],
    /// 1 once the queue gave up on its device.
    pub broken: Counter,
    /// Times the queue rebuilt its ring for a recovery from `DEVICE_NEEDS_RESET`.
    pub resets: Counter,
    /// Merged frames still collecting buffers when a recovery dropped them.
    pub reset_dropped: Counter,
}

/// What a transmit queue dropped, and why.
#[derive(Debug, Default)]
pub struct TxStats {
    /// Packets with more segments than a chain may have.
    pub too_many_segs: Counter,
    /// Packets whose checksum request does not fit the frame (`TxRequest::check`).
    pub bad_offload: Counter,
    /// Times the queue rebuilt its ring for a recovery from `DEVICE_NEEDS_RESET`.
    pub resets: Counter,
    /// Packets in flight (counted as sent) that a recovery freed: the device may or may not
    /// have sent them before it failed.
    pub reset_dropped: Counter,
    /// Device anomalies, by [`Anomaly`] kind.
    pub anomalies: [Counter; Anomaly::COUNT],
    /// 1 once the queue gave up on its device.
    pub broken: Counter,
}

/// Copies a queue's anomaly counts into shared counters: `last` is what was copied before.
/// Called once per burst; the work happens only when the total moved.
#[inline(always)]
pub(crate) fn sync_anomalies(
    h: &Health,
    last: &mut u32,
    last_each: &mut [u32; Anomaly::COUNT],
    out: &[Counter; Anomaly::COUNT],
) {
    if h.total() != *last {
        sync_slow(h, last, last_each, out)
    }
}

#[cold]
fn sync_slow(
    h: &Health,
    last: &mut u32,
    last_each: &mut [u32; Anomaly::COUNT],
    out: &[Counter; Anomaly::COUNT],
) {
    *last = h.total();
    for a in Anomaly::ALL {
        let now = h.count(a);
        out[a as usize].add(now.saturating_sub(last_each[a as usize]) as u64);
        last_each[a as usize] = now;
    }
}

/// Appends `prefix` + each anomaly's name, summed over queues by `sum`.
pub(crate) fn anomaly_xstats(
    out: &mut alloc::vec::Vec<XStat>,
    prefix: &str,
    sum: impl Fn(usize) -> u64,
) {
    for a in Anomaly::ALL {
        out.push(XStat {
            name: alloc::format!("{prefix}{}", a.name()),
            value: sum(a as usize),
        });
    }
}
