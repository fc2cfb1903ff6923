//! Alarms: callbacks due at a deadline, kept in deadline order.
//!
//! The OS layer arms one timer for [`AlarmList::next_deadline`], and when it fires takes the
//! due alarms with [`AlarmList::take_due`] and runs them outside its lock; a callback may set
//! new alarms, after which the layer re-arms its timer for the new earliest deadline. Alarms
//! with equal deadlines run in the order they were set.

use crate::os::clock::Instant;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Identifies one alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlarmId(u64);

impl AlarmId {
    /// The raw id (unique per list, never reused).
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Pending alarms ordered by (deadline, id).
#[derive(Debug)]
pub struct AlarmList<C> {
    by_deadline: BTreeMap<(Instant, u64), C>,
    deadline_of: BTreeMap<u64, Instant>,
    next_id: u64,
}

impl<C> Default for AlarmList<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> AlarmList<C> {
    /// No alarms.
    pub const fn new() -> Self {
        Self {
            by_deadline: BTreeMap::new(),
            deadline_of: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Pending alarms.
    pub fn len(&self) -> usize {
        self.by_deadline.len()
    }

    /// Whether no alarm is pending.
    pub fn is_empty(&self) -> bool {
        self.by_deadline.is_empty()
    }

    /// Adds an alarm due at `deadline`. Returns its id and whether it is now the earliest (the
    /// OS timer must be re-armed).
    pub fn set(&mut self, deadline: Instant, cb: C) -> (AlarmId, bool) {
        let id = self.next_id;
        self.next_id += 1;
        let earliest = self.next_deadline().is_none_or(|d| deadline < d);
        self.by_deadline.insert((deadline, id), cb);
        self.deadline_of.insert(id, deadline);
        (AlarmId(id), earliest)
    }

    /// Cancels a pending alarm; `None` if it already ran (or was taken to run) or never existed.
    pub fn cancel(&mut self, id: AlarmId) -> Option<C> {
        let d = self.deadline_of.remove(&id.0)?;
        self.by_deadline.remove(&(d, id.0))
    }

    /// Cancels every pending alarm for which `pred` holds (DPDK's cancel-by-callback-and-arg).
    /// Returns how many.
    pub fn cancel_where(&mut self, mut pred: impl FnMut(&C) -> bool) -> usize {
        let ids: Vec<(Instant, u64)> = self
            .by_deadline
            .iter()
            .filter(|(_, c)| pred(c))
            .map(|(k, _)| *k)
            .collect();
        for k in &ids {
            self.by_deadline.remove(k);
            self.deadline_of.remove(&k.1);
        }
        ids.len()
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.keys().next().map(|k| k.0)
    }

    /// Removes and returns the earliest alarm if it is due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(AlarmId, C)> {
        let entry = self.by_deadline.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let ((_, id), cb) = entry.remove_entry();
        self.deadline_of.remove(&id);
        Some((AlarmId(id), cb))
    }

    /// Removes and returns every alarm due at or before `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<(AlarmId, C)> {
        core::iter::from_fn(|| self.pop_due(now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    #[test]
    fn fires_in_deadline_then_set_order() {
        let mut a = AlarmList::new();
        assert!(a.set(t(30), "c").1);
        assert!(a.set(t(10), "a").1);
        assert!(!a.set(t(10), "b").1);
        assert!(!a.set(t(50), "d").1);
        assert_eq!(a.next_deadline(), Some(t(10)));
        let due: Vec<_> = a.take_due(t(30)).into_iter().map(|(_, c)| c).collect();
        assert_eq!(due, ["a", "b", "c"]);
        assert_eq!(a.next_deadline(), Some(t(50)));
        assert!(a.take_due(t(49)).is_empty());
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn cancel_and_cancel_where() {
        let mut a = AlarmList::new();
        let (x, _) = a.set(t(5), 1);
        a.set(t(6), 2);
        a.set(t(7), 2);
        assert_eq!(a.cancel(x), Some(1));
        assert_eq!(a.cancel(x), None);
        assert_eq!(a.cancel_where(|&c| c == 2), 2);
        assert!(a.is_empty());
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn taken_alarms_cannot_be_cancelled_and_new_ones_can_be_set() {
        let mut a = AlarmList::new();
        let (x, _) = a.set(t(1), "x");
        let due = a.take_due(t(1));
        assert_eq!(due[0].0, x);
        assert_eq!(a.cancel(x), None);
        // A callback sets another alarm while running: it becomes the earliest.
        assert!(a.set(t(2), "y").1);
    }
}
