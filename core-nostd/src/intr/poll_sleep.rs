//! The hybrid poll/sleep policy for RX queues with interrupts: poll while traffic flows, and
//! after `threshold` empty polls in a row arm the queue's interrupt and sleep until it fires.

/// What the polling loop should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollAction {
    /// Keep polling.
    Poll,
    /// Enable the queue interrupt, poll once more (to close the race with a packet that arrived
    /// before the interrupt was enabled), and sleep if that poll is empty too.
    ArmAndSleep,
}

/// Counts empty polls and says when to sleep.
#[derive(Clone, Copy, Debug)]
pub struct PollSleep {
    threshold: u32,
    empty: u32,
    sleeps: u64,
}

impl PollSleep {
    /// Sleep after `threshold` consecutive empty polls (at least 1).
    pub const fn new(threshold: u32) -> Self {
        Self {
            threshold: if threshold == 0 { 1 } else { threshold },
            empty: 0,
            sleeps: 0,
        }
    }

    /// Records the result of one poll (`received` packets) and says what to do next.
    #[inline]
    pub fn after_poll(&mut self, received: usize) -> PollAction {
        if received > 0 {
            self.empty = 0;
            return PollAction::Poll;
        }
        self.empty += 1;
        if self.empty >= self.threshold {
            self.empty = 0;
            self.sleeps += 1;
            PollAction::ArmAndSleep
        } else {
            PollAction::Poll
        }
    }

    /// How many times the policy said to sleep.
    pub fn sleeps(&self) -> u64 {
        self.sleeps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_after_threshold_empty_polls_only() {
        let mut p = PollSleep::new(3);
        assert_eq!(p.after_poll(0), PollAction::Poll);
        assert_eq!(p.after_poll(0), PollAction::Poll);
        assert_eq!(
            p.after_poll(4),
            PollAction::Poll,
            "traffic resets the count"
        );
        assert_eq!(p.after_poll(0), PollAction::Poll);
        assert_eq!(p.after_poll(0), PollAction::Poll);
        assert_eq!(p.after_poll(0), PollAction::ArmAndSleep);
        assert_eq!(
            p.after_poll(0),
            PollAction::Poll,
            "count restarts after a sleep"
        );
        assert_eq!(p.sleeps(), 1);
        assert_eq!(PollSleep::new(0).after_poll(0), PollAction::ArmAndSleep);
    }
}
