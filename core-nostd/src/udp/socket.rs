//! Sockets and the port switching table.

use super::UdpError;
use crate::mbuf::Mbuf;
use crate::pktring::PktProducer;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::ops::RangeInclusive;

/// Identifies a socket of a [`Stack`](super::Stack). Ids are not reused while the table
/// lives, so a closed socket's id never names its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId {
    slot: u32,
    generation: u32,
}

/// Per-socket options (set before `bind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_REUSEADDR`: several sockets with it may bind one address and port; the most recent
    /// binding receives the datagrams.
    pub reuse_addr: bool,
    /// `SO_REUSEPORT`: several sockets with it may bind one address and port; datagrams are
    /// spread over them by a hash of the sender's address and port, so one flow stays on one
    /// socket.
    pub reuse_port: bool,
}

/// A received datagram waiting in a socket queue.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub mbuf: Mbuf,
    pub from: SocketAddrV4,
    /// Offset and length of the payload in the mbuf's data.
    pub off: u16,
    pub len: u16,
}

#[derive(Debug)]
pub(crate) struct Socket {
    pub opts: SocketOptions,
    pub local: Option<SocketAddrV4>,
    pub queue: VecDeque<Datagram>,
    /// In threaded mode: the ring datagrams go to instead of `queue` (the poller produces,
    /// the application's socket handle consumes).
    pub exchange: Option<PktProducer>,
}

/// The socket table: sockets by id, and who is bound to which port (in binding order).
pub(crate) struct SocketTable {
    slots: Vec<(u32, Option<Socket>)>,
    by_port: BTreeMap<u16, Vec<SocketId>>,
    ephemeral: RangeInclusive<u16>,
    next_ephemeral: u16,
    next_generation: u32,
}

fn overlaps(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

impl SocketTable {
    /// A table of `max` sockets drawing ephemeral ports from `ephemeral`, which must be
    /// non-empty and exclude port 0 ([`UdpError::BadEphemeralRange`] otherwise).
    pub fn new(max: usize, ephemeral: RangeInclusive<u16>) -> Result<Self, UdpError> {
        let (start, end) = (*ephemeral.start(), *ephemeral.end());
        // `is_empty` also covers a range already iterated to its end.
        if ephemeral.is_empty() || start == 0 {
            return Err(UdpError::BadEphemeralRange { start, end });
        }
        let mut slots = Vec::with_capacity(max);
        slots.resize_with(max, || (0, None));
        Ok(Self {
            slots,
            by_port: BTreeMap::new(),
            ephemeral,
            next_ephemeral: start,
            next_generation: 1,
        })
    }

    pub fn open(&mut self) -> Result<SocketId, UdpError> {
        let max = self.slots.len();
        let i = self
            .slots
            .iter()
            .position(|(_, s)| s.is_none())
            .ok_or(UdpError::TableFull { max })?;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        self.slots[i] = (
            generation,
            Some(Socket {
                opts: SocketOptions::default(),
                local: None,
                queue: VecDeque::new(),
                exchange: None,
            }),
        );
        Ok(SocketId {
            slot: i as u32,
            generation,
        })
    }

    pub fn get_mut(&mut self, id: SocketId) -> Result<&mut Socket, UdpError> {
        match self.slots.get_mut(id.slot as usize) {
            Some((g, Some(s))) if *g == id.generation => Ok(s),
            _ => Err(UdpError::BadSocket),
        }
    }

    pub fn get(&self, id: SocketId) -> Result<&Socket, UdpError> {
        match self.slots.get(id.slot as usize) {
            Some((g, Some(s))) if *g == id.generation => Ok(s),
            _ => Err(UdpError::BadSocket),
        }
    }

    /// Binds `id` to `addr` (port 0: an ephemeral port), checking for conflicts.
    pub fn bind(&mut self, id: SocketId, mut addr: SocketAddrV4) -> Result<SocketAddrV4, UdpError> {
        let opts = {
            let s = self.get(id)?;
            if s.local.is_some() {
                return Err(UdpError::AlreadyBound);
            }
            s.opts
        };
        if addr.port() == 0 {
            addr.set_port(self.free_port()?);
        }
        for other in self.by_port.get(&addr.port()).into_iter().flatten() {
            let o = self.get(*other)?;
            let Some(l) = o.local else { continue };
            if !overlaps(*l.ip(), *addr.ip()) {
                continue;
            }
            let shared =
                (opts.reuse_port && o.opts.reuse_port) || (opts.reuse_addr && o.opts.reuse_addr);
            if !shared {
                return Err(UdpError::AddrInUse { addr });
            }
        }
        self.by_port.entry(addr.port()).or_default().push(id);
        self.get_mut(id)?.local = Some(addr);
        Ok(addr)
    }

    /// A port of the ephemeral range nobody is bound to (next fit). The arithmetic cannot
    /// overflow whatever the range (`new` refuses an empty one; here it finds no port).
    fn free_port(&mut self) -> Result<u16, UdpError> {
        let (lo, hi) = (*self.ephemeral.start(), *self.ephemeral.end());
        if lo > hi {
            return Err(UdpError::NoEphemeralPort);
        }
        // At most 65536 ports: a u32 holds the count.
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let p = self.next_ephemeral.clamp(lo, hi);
            // p < hi <= u16::MAX when incremented.
            self.next_ephemeral = if p >= hi { lo } else { p + 1 };
            if !self.by_port.contains_key(&p) {
                return Ok(p);
            }
        }
        Err(UdpError::NoEphemeralPort)
    }

    /// Closes `id`, returning its queued datagrams (for the caller to free).
    pub fn close(&mut self, id: SocketId) -> Result<VecDeque<Datagram>, UdpError> {
        let s = self.get(id)?;
        if let Some(l) = s.local {
            if let Some(v) = self.by_port.get_mut(&l.port()) {
                v.retain(|x| *x != id);
                if v.is_empty() {
                    self.by_port.remove(&l.port());
                }
            }
        }
        let slot = &mut self.slots[id.slot as usize];
        let s = slot.1.take().ok_or(UdpError::BadSocket)?;
        Ok(s.queue)
    }

    /// The socket a datagram to `dst` from `src` goes to: an exact address binding before a
    /// wildcard one; among sockets sharing a binding, by `SO_REUSEPORT` hash or the latest
    /// `SO_REUSEADDR` binding.
    pub fn lookup(&self, dst: SocketAddrV4, src: SocketAddrV4) -> Option<SocketId> {
        let bound = self.by_port.get(&dst.port())?;
        // Per received datagram: no allocation, two walks over the port's (few) sockets.
        let pick = |exact: bool| -> Option<SocketId> {
            let group = || {
                bound.iter().copied().filter(move |id| {
                    self.get(*id).ok().and_then(|s| s.local).is_some_and(|l| {
                        if exact {
                            l.ip() == dst.ip()
                        } else {
                            l.ip().is_unspecified()
                        }
                    })
                })
            };
            let (mut len, mut last, mut all_reuse_port) = (0u32, None, true);
            for id in group() {
                len += 1;
                last = Some(id);
                all_reuse_port &= self.get(id).is_ok_and(|s| s.opts.reuse_port);
            }
            let last = last?;
            if all_reuse_port && len > 1 {
                group().nth((flow_hash(src) % len) as usize)
            } else {
                Some(last)
            }
        };
        pick(true).or_else(|| pick(false))
    }

    /// Open sockets.
    pub fn open_count(&self) -> usize {
        self.slots.iter().filter(|(_, s)| s.is_some()).count()
    }

    /// Every open socket's queue, for teardown.
    pub fn drain_all(&mut self) -> impl Iterator<Item = Datagram> + '_ {
        self.slots
            .iter_mut()
            .filter_map(|(_, s)| s.as_mut())
            .flat_map(|s| s.queue.drain(..))
    }
}

/// A stable hash of the sender (FNV-1a), so one flow keeps its socket.
fn flow_hash(src: SocketAddrV4) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in src
        .ip()
        .octets()
        .iter()
        .chain(src.port().to_be_bytes().iter())
    {
        h = (h ^ *b as u32).wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    fn sa(ip: Ipv4Addr, p: u16) -> SocketAddrV4 {
        SocketAddrV4::new(ip, p)
    }

    #[test]
    fn bind_conflicts_and_reuse() {
        let mut t = SocketTable::new(8, 49152..=49153).unwrap();
        let a = t.open().unwrap();
        let b = t.open().unwrap();
        t.bind(a, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
        assert_eq!(
            t.bind(b, sa(ME, 7)).unwrap_err(),
            UdpError::AddrInUse { addr: sa(ME, 7) }
        );
        assert_eq!(t.bind(a, sa(ME, 8)).unwrap_err(), UdpError::AlreadyBound);
        // Both with reuse_port: allowed, and flows spread over them.
        let c = t.open().unwrap();
        let d = t.open().unwrap();
        t.get_mut(c).unwrap().opts.reuse_port = true;
        t.get_mut(d).unwrap().opts.reuse_port = true;
        t.bind(c, sa(ME, 9)).unwrap();
        t.bind(d, sa(ME, 9)).unwrap();
        let picks: alloc::collections::BTreeSet<_> = (0..64)
            .map(|p| {
                t.lookup(sa(ME, 9), sa(Ipv4Addr::new(10, 0, 0, 1), 1000 + p))
                    .unwrap()
            })
            .collect();
        assert_eq!(picks.len(), 2, "both sockets get flows");
        let f = sa(Ipv4Addr::new(10, 0, 0, 1), 5000);
        let first = t.lookup(sa(ME, 9), f).unwrap();
        assert!(first == c || first == d, "one of the reuse_port pair");
        // Exact binding wins over the wildcard.
        let e = t.open().unwrap();
        t.get_mut(e).unwrap().opts.reuse_addr = true;
        let w = t.open().unwrap();
        t.get_mut(w).unwrap().opts.reuse_addr = true;
        t.bind(w, sa(Ipv4Addr::UNSPECIFIED, 10)).unwrap();
        t.bind(e, sa(ME, 10)).unwrap();
        assert_eq!(t.lookup(sa(ME, 10), f), Some(e));
        assert_eq!(
            t.lookup(sa(ME, 9), f),
            Some(first),
            "a flow keeps its socket while other sockets come and go"
        );
        // Closing frees the port and invalidates the id.
        t.close(a).unwrap();
        assert_eq!(t.close(a).unwrap_err(), UdpError::BadSocket);
        let g = t.open().unwrap();
        assert_ne!(g, a, "ids are not reused");
        t.bind(g, sa(ME, 7)).unwrap();
    }

    #[test]
    fn ephemeral_ports_run_out_and_come_back() {
        let mut t = SocketTable::new(4, 60000..=60001).unwrap();
        let ids: Vec<_> = (0..3).map(|_| t.open().unwrap()).collect();
        let p0 = t.bind(ids[0], sa(ME, 0)).unwrap().port();
        let p1 = t.bind(ids[1], sa(ME, 0)).unwrap().port();
        assert_ne!(p0, p1);
        assert!((60000..=60001).contains(&p0) && (60000..=60001).contains(&p1));
        assert_eq!(
            t.bind(ids[2], sa(ME, 0)).unwrap_err(),
            UdpError::NoEphemeralPort
        );
        t.close(ids[0]).unwrap();
        assert_eq!(t.bind(ids[2], sa(ME, 0)).unwrap().port(), p0);
        let _ = t.open().unwrap();
        let _ = t.open().unwrap();
        assert_eq!(t.open().unwrap_err(), UdpError::TableFull { max: 4 });
    }

    /// An inverted range made debug builds panic on the first ephemeral bind (`hi - lo`
    /// underflowed): it is refused when the table is made, as are a range holding port 0 and
    /// one already iterated to its end; the top of the port space wraps without overflow.
    #[test]
    fn bad_ephemeral_ranges_are_refused_and_the_top_port_wraps() {
        let inverted = RangeInclusive::new(60001, 60000);
        let mut spent = 5..=5;
        assert_eq!(spent.next(), Some(5));
        for (r, start, end) in [(inverted, 60001, 60000), (0..=10, 0, 10), (spent, 5, 5)] {
            assert_eq!(
                SocketTable::new(4, r).err(),
                Some(UdpError::BadEphemeralRange { start, end })
            );
        }
        let mut t = SocketTable::new(4, 65534..=65535).unwrap();
        let ids: Vec<_> = (0..3).map(|_| t.open().unwrap()).collect();
        assert_eq!(t.bind(ids[0], sa(ME, 0)).unwrap().port(), 65534);
        assert_eq!(t.bind(ids[1], sa(ME, 0)).unwrap().port(), 65535);
        t.close(ids[0]).unwrap();
        assert_eq!(t.bind(ids[2], sa(ME, 0)).unwrap().port(), 65534, "wrapped");
        // Even a table holding an inverted range (not one `new` makes) answers, not panics.
        t.ephemeral = RangeInclusive::new(65535, 1);
        let s = t.open().unwrap();
        assert_eq!(t.bind(s, sa(ME, 0)).unwrap_err(), UdpError::NoEphemeralPort);
    }
}
