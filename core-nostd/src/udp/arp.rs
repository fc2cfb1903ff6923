//! The ARP cache: resolved neighbours with an expiry, and packets waiting for a resolution.

use crate::mbuf::Mbuf;
use crate::os::Instant;
use alloc::collections::{BTreeMap, VecDeque};
use core::net::Ipv4Addr;
use core::time::Duration;

struct Pending {
    pkts: VecDeque<Mbuf>,
    /// When the last request went out.
    asked: Instant,
    /// Requests sent so far.
    tries: u32,
}

/// Resolved neighbours an [`ArpCache`] holds at most unless told otherwise (Linux's
/// `gc_thresh3`).
pub const DEFAULT_MAX_ENTRIES: usize = 1024;

/// What to do for a next hop after [`ArpCache::lookup_or_queue`].
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Resolved: send to this MAC now.
    Mac([u8; 6]),
    /// Queued; send an ARP request now (the first packet for this hop).
    Request,
    /// Queued behind an outstanding request.
    Waiting,
    /// The queue for this hop is full: the packet was dropped.
    Dropped,
}

/// Neighbours and pending packets.
pub struct ArpCache {
    entries: BTreeMap<Ipv4Addr, ([u8; 6], Instant)>,
    pending: BTreeMap<Ipv4Addr, Pending>,
    ttl: Duration,
    retry: Duration,
    max_tries: u32,
    max_pending: usize,
    max_entries: usize,
}

impl ArpCache {
    /// A cache whose entries live `ttl`, retrying requests every `retry` up to `max_tries`
    /// times, holding at most `max_pending` packets per unresolved hop, and at most
    /// [`DEFAULT_MAX_ENTRIES`] resolved neighbours (see [`set_max_entries`](Self::set_max_entries)).
    pub fn new(ttl: Duration, retry: Duration, max_tries: u32, max_pending: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            pending: BTreeMap::new(),
            ttl,
            retry,
            max_tries: max_tries.max(1),
            max_pending,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }

    /// Holds at most `n` (at least 1) resolved neighbours: a new one past that evicts the
    /// entry nearest its expiry, so senders on the wire cannot grow the cache (and the
    /// per-poll expiry scan) without bound.
    pub fn set_max_entries(&mut self, n: usize) {
        self.max_entries = n.max(1);
    }

    /// The MAC of `ip` if known and not expired.
    pub fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<[u8; 6]> {
        self.entries
            .get(&ip)
            .filter(|(_, exp)| *exp > now)
            .map(|(mac, _)| *mac)
    }

    /// Whether `ip` has an entry (even an expired one): an ARP packet from it refreshes it.
    pub fn knows(&self, ip: Ipv4Addr) -> bool {
        self.entries.contains_key(&ip) || self.pending.contains_key(&ip)
    }

    /// Records `ip` at `mac`; returns the packets that were waiting for it.
    pub fn insert(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: Instant) -> VecDeque<Mbuf> {
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.max_entries {
            let oldest = self.entries.iter().min_by_key(|(_, (_, exp))| *exp);
            if let Some(old) = oldest.map(|(k, _)| *k) {
                self.entries.remove(&old);
            }
        }
        self.entries.insert(ip, (mac, now.saturating_add(self.ttl)));
        self.pending.remove(&ip).map(|p| p.pkts).unwrap_or_default()
    }

    /// Resolves `hop`, or queues `pkt` for it (returned in `Mac` case for the caller to send).
    pub fn lookup_or_queue(
        &mut self,
        hop: Ipv4Addr,
        pkt: Mbuf,
        now: Instant,
    ) -> (Resolution, Option<Mbuf>) {
        if let Some(mac) = self.lookup(hop, now) {
            return (Resolution::Mac(mac), Some(pkt));
        }
        match self.pending.get_mut(&hop) {
            Some(p) if p.pkts.len() >= self.max_pending => (Resolution::Dropped, None),
            Some(p) => {
                p.pkts.push_back(pkt);
                (Resolution::Waiting, None)
            }
            None => {
                if self.max_pending == 0 {
                    return (Resolution::Dropped, None);
                }
                let mut pkts = VecDeque::new();
                pkts.push_back(pkt);
                self.pending.insert(
                    hop,
                    Pending {
                        pkts,
                        asked: now,
                        tries: 1,
                    },
                );
                (Resolution::Request, None)
            }
        }
    }

    /// Housekeeping at `now`: expired entries go; hops due for another request are returned
    /// in `retry`; hops out of tries give up and their packets come back (to be dropped and
    /// counted by the caller).
    pub fn tick(
        &mut self,
        now: Instant,
        retry: &mut alloc::vec::Vec<Ipv4Addr>,
    ) -> alloc::vec::Vec<Mbuf> {
        self.entries.retain(|_, (_, exp)| *exp > now);
        let mut dead = alloc::vec::Vec::new();
        let mut gone = alloc::vec::Vec::new();
        for (ip, p) in self.pending.iter_mut() {
            if now.saturating_duration_since(p.asked) < self.retry {
                continue;
            }
            if p.tries >= self.max_tries {
                gone.push(*ip);
            } else {
                p.tries += 1;
                p.asked = now;
                retry.push(*ip);
            }
        }
        for ip in gone {
            if let Some(p) = self.pending.remove(&ip) {
                dead.extend(p.pkts);
            }
        }
        dead
    }

    /// Resolved entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is resolved.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
