//! The stack: receive path, replies, sockets, and the transmit backlog.

use super::arp::{ArpCache, Resolution};
use super::socket::{Datagram, SocketId, SocketOptions, SocketTable};
use super::stats::DropStats;
use super::{check_dst, check_len, check_mbuf, set_peer, UdpError, HEADERS_LEN};
use crate::ethdev::{RxQueue, TxQueue};
use crate::mbuf::{Mbuf, PktMbufPool, RxCksum};
use crate::net::arp::{ArpOp, ArpPacket, ArpRepr, PACKET_LEN as ARP_LEN};
use crate::net::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETH_LEN};
use crate::net::icmp::{Icmpv4Packet, ECHO_REQUEST};
use crate::net::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr, MIN_HEADER_LEN as IP_LEN};
use crate::net::udp::{UdpPacket, UdpRepr, HEADER_LEN as UDP_LEN};
use crate::net::WireError;
use crate::os::Clock;
use crate::pktring::PktProducer;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::ops::RangeInclusive;
use core::time::Duration;

const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// Frames one poll receives and sends at most.
const BURST: usize = 32;

/// The interface the stack speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceConfig {
    /// Our MAC address.
    pub mac: [u8; 6],
    /// Our IPv4 address.
    pub ip: Ipv4Addr,
    /// The on-link prefix length (24 for a /24).
    pub prefix_len: u8,
    /// Where off-link destinations go, if anywhere.
    pub gateway: Option<Ipv4Addr>,
    /// The interface MTU (IPv4 header + UDP header + payload).
    pub mtu: u16,
}

impl IfaceConfig {
    fn mask(&self) -> u32 {
        match self.prefix_len.min(32) {
            0 => 0,
            n => u32::MAX << (32 - n),
        }
    }

    /// Whether `ip` is on the interface's subnet.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.ip)) & self.mask() == 0
    }

    /// Whether `ip` is a broadcast address for this interface.
    pub fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast()
            || (self.prefix_len < 31 && u32::from(ip) == u32::from(self.ip) | !self.mask())
    }

    /// Whether `src` is a source no host sends from to `dst` (RFC 1122 3.2.1.3, Linux's
    /// martian sources): a broadcast (limited or this subnet's), multicast or loopback
    /// address, our own address, or one of 0.0.0.0/8 ("this network", RFC 1122 3.2.1.3 (a)
    /// and (b); Linux's `ipv4_is_zeronet`) to other than the limited broadcast (DHCP).
    pub fn is_bad_source(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        (src.octets()[0] == 0 && !dst.is_broadcast())
            || self.is_broadcast(src)
            || src.is_multicast()
            || src.is_loopback()
            || src == self.ip
    }

    /// The IPv4 address a packet to `dst` is handed to on the link.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Result<Ipv4Addr, UdpError> {
        if self.on_link(dst) || self.is_broadcast(dst) {
            return Ok(dst);
        }
        self.gateway.ok_or(UdpError::NoRoute { dst })
    }

    /// Most payload bytes one datagram carries.
    pub fn max_payload(&self) -> usize {
        (self.mtu as usize).saturating_sub(IP_LEN + UDP_LEN)
    }
}

/// Sizes and timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackLimits {
    /// Open sockets at most.
    pub max_sockets: usize,
    /// Datagrams one socket queues at most.
    pub socket_queue: usize,
    /// How long a resolved neighbour stays.
    pub arp_ttl: Duration,
    /// Interval between ARP requests for an unresolved neighbour.
    pub arp_retry: Duration,
    /// Requests before giving up on a neighbour (its waiting packets are dropped).
    pub arp_tries: u32,
    /// Packets waiting per unresolved neighbour.
    pub arp_pending: usize,
    /// Resolved neighbours the ARP cache holds at most (the one nearest expiry makes room).
    pub arp_entries: usize,
    /// Frames waiting for the transmit queue.
    pub tx_backlog: usize,
    /// The ephemeral port range: not empty, without port 0 ([`Stack::new`] refuses others
    /// with [`UdpError::BadEphemeralRange`]).
    pub ephemeral: RangeInclusive<u16>,
}

impl Default for StackLimits {
    fn default() -> Self {
        Self {
            max_sockets: 64,
            socket_queue: 256,
            arp_ttl: Duration::from_secs(60),
            arp_retry: Duration::from_secs(1),
            arp_tries: 3,
            arp_pending: 16,
            arp_entries: super::arp::DEFAULT_MAX_ENTRIES,
            tx_backlog: 1024,
            ephemeral: 49152..=65535,
        }
    }
}

/// What the stack did, besides dropping (see [`DropStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackCounters {
    /// Frames received by `poll`.
    pub rx_frames: u64,
    /// Datagrams put in socket queues.
    pub delivered: u64,
    /// ARP packets handled (replied to or learnt from).
    pub arp_handled: u64,
    /// Echo requests answered.
    pub echo_replies: u64,
    /// Frames handed to the transmit queue.
    pub tx_frames: u64,
}

/// A UDP/IPv4 stack on one interface (see the [module docs](super)).
pub struct Stack<C: Clock> {
    cfg: IfaceConfig,
    limits: StackLimits,
    clock: C,
    pool: PktMbufPool,
    arp: ArpCache,
    sockets: SocketTable,
    stats: DropStats,
    counters: StackCounters,
    backlog: VecDeque<Mbuf>,
    ident: u16,
}

/// Maps a view's error to its drop counter.
fn ipv4_drop(s: &mut DropStats, e: WireError) {
    match e {
        WireError::Truncated => s.ipv4_truncated += 1,
        WireError::Unsupported => s.ipv4_bad_version += 1,
        WireError::BadHeaderLength => s.ipv4_bad_header_len += 1,
        _ => s.ipv4_bad_length += 1,
    }
}

impl<C: Clock> Stack<C> {
    /// A stack for `cfg`, allocating from `pool`; a gratuitous ARP announcement is queued and
    /// goes out with the first [`poll`](Self::poll). The MTU is capped to what one buffer of
    /// the pool holds. [`UdpError::BadEphemeralRange`] if `limits.ephemeral` is empty or
    /// includes port 0; [`UdpError::ZeroLimit`] if a size that must be at least 1 is 0.
    pub fn new(
        mut cfg: IfaceConfig,
        limits: StackLimits,
        pool: PktMbufPool,
        clock: C,
    ) -> Result<Self, UdpError> {
        for (limit, n) in [
            ("max_sockets", limits.max_sockets),
            ("socket_queue", limits.socket_queue),
            ("tx_backlog", limits.tx_backlog),
            ("arp_pending", limits.arp_pending),
            ("arp_entries", limits.arp_entries),
            ("arp_tries", limits.arp_tries as usize),
        ] {
            if n == 0 {
                return Err(UdpError::ZeroLimit { limit });
            }
        }
        let sockets = SocketTable::new(limits.max_sockets, limits.ephemeral.clone())?;
        // A frame must fit one mbuf's data room (which excludes the headroom).
        let room = pool.data_room() as usize;
        cfg.mtu = cfg.mtu.min(room.saturating_sub(ETH_LEN) as u16);
        let mut arp = ArpCache::new(
            limits.arp_ttl,
            limits.arp_retry,
            limits.arp_tries,
            limits.arp_pending,
        );
        arp.set_max_entries(limits.arp_entries);
        let mut s = Self {
            arp,
            sockets,
            backlog: VecDeque::with_capacity(limits.tx_backlog),
            cfg,
            limits,
            clock,
            pool,
            stats: DropStats::default(),
            counters: StackCounters::default(),
            ident: 1,
        };
        s.send_arp(ArpOp::Request, s.cfg.ip, [0; 6], BROADCAST_MAC);
        Ok(s)
    }

    /// The interface configuration (MTU as capped).
    pub fn config(&self) -> &IfaceConfig {
        &self.cfg
    }

    /// Drop counters.
    pub fn stats(&self) -> DropStats {
        self.stats
    }

    /// Activity counters.
    pub fn counters(&self) -> StackCounters {
        self.counters
    }

    /// Frames waiting for the transmit queue.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Frames the transmit backlog can still take.
    pub fn backlog_room(&self) -> usize {
        self.limits.tx_backlog.saturating_sub(self.backlog.len())
    }

    /// The pool frames are allocated from.
    pub fn pool(&self) -> &PktMbufPool {
        &self.pool
    }

    /// The stack's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// One round: receive a burst from `rx` and handle every frame, retry or give up on ARP
    /// resolutions, and send what is ready on `tx`. Returns the frames received.
    pub fn poll<R: RxQueue, T: TxQueue>(&mut self, rx: &mut R, tx: &mut T) -> usize {
        let mut burst: [Option<Mbuf>; BURST] = Default::default();
        let n = rx.rx_burst(&mut burst);
        for m in burst[..n].iter_mut().filter_map(Option::take) {
            self.counters.rx_frames += 1;
            self.receive(m);
        }
        self.tick();
        self.flush(tx);
        n
    }

    fn tick(&mut self) {
        let mut retry = Vec::new();
        let dead = self.arp.tick(self.clock.now(), &mut retry);
        self.stats.arp_queue_full += dead.len() as u64;
        drop(dead);
        for ip in retry {
            self.send_arp(ArpOp::Request, ip, [0; 6], BROADCAST_MAC);
        }
    }

    fn flush<T: TxQueue>(&mut self, tx: &mut T) {
        while !self.backlog.is_empty() {
            let mut burst: [Option<Mbuf>; BURST] = Default::default();
            let k = self.backlog.len().min(BURST);
            for slot in burst.iter_mut().take(k) {
                *slot = self.backlog.pop_front();
            }
            let sent = tx.tx_burst(&mut burst[..k]);
            self.counters.tx_frames += sent as u64;
            // What the queue did not take goes back to the front, in order.
            for m in burst[sent..k].iter_mut().rev().filter_map(Option::take) {
                self.backlog.push_front(m);
            }
            if sent < k {
                break;
            }
        }
    }

    fn enqueue(&mut self, m: Mbuf) {
        if self.backlog.len() >= self.limits.tx_backlog {
            self.stats.tx_queue_full += 1;
            return;
        }
        self.backlog.push_back(m);
    }

    fn receive(&mut self, m: Mbuf) {
        if m.nb_segs() > 1 {
            self.stats.multi_segment += 1;
            return;
        }
        let (dst, src, ethertype) = match EthernetFrame::new_checked(m.data()) {
            Ok(f) => (f.dst(), f.src(), f.ethertype()),
            Err(_) => {
                self.stats.eth_truncated += 1;
                return;
            }
        };
        if dst != self.cfg.mac && dst != BROADCAST_MAC {
            self.stats.eth_not_for_us += 1;
            return;
        }
        // No station sends from a group or zero address; an echo reply would go to it.
        if src[0] & 1 != 0 || src == [0; 6] {
            self.stats.eth_bad_src += 1;
            return;
        }
        match ethertype {
            EtherType::ARP => self.receive_arp(m),
            EtherType::IPV4 => self.receive_ipv4(m),
            _ => self.stats.eth_unknown_type += 1,
        }
    }

    fn receive_arp(&mut self, m: Mbuf) {
        let repr =
            match ArpPacket::new_checked(&m.data()[ETH_LEN..]).and_then(|p| ArpRepr::parse(&p)) {
                Ok(r) => r,
                Err(_) => {
                    self.stats.arp_malformed += 1;
                    return;
                }
            };
        drop(m);
        // Only a unicast neighbour on our subnet is learnt or answered (smoltcp's rule; Linux
        // validates the sender as a source route): not an off-link, broadcast, multicast or
        // own address, not a group or zero MAC. 0.0.0.0 is a probe (RFC 5227): answered.
        let spa = repr.src_ip;
        let mac_ok = repr.src_mac[0] & 1 == 0 && repr.src_mac != [0; 6];
        let ip_ok = spa.is_unspecified()
            || (self.cfg.on_link(spa) && !self.cfg.is_bad_source(spa, self.cfg.ip));
        if !mac_ok || !ip_ok {
            self.stats.arp_bad_sender += 1;
            return;
        }
        let for_us = repr.dst_ip == self.cfg.ip;
        if !for_us && !self.arp.knows(repr.src_ip) {
            self.stats.arp_ignored += 1;
            return;
        }
        self.counters.arp_handled += 1;
        if !repr.src_ip.is_unspecified() {
            let waiting = self.arp.insert(repr.src_ip, repr.src_mac, self.clock.now());
            for mut p in waiting {
                if let Ok(d) = p.data_mut() {
                    d[0..6].copy_from_slice(&repr.src_mac);
                }
                self.enqueue(p);
            }
        }
        if for_us && repr.op == ArpOp::Request {
            self.send_arp(ArpOp::Reply, repr.src_ip, repr.src_mac, repr.src_mac);
        }
    }

    /// Builds and queues an ARP packet to `target_ip` (at `target_mac`), framed to `eth_dst`.
    fn send_arp(&mut self, op: ArpOp, target_ip: Ipv4Addr, target_mac: [u8; 6], eth_dst: [u8; 6]) {
        let Some(mut m) = self.pool.alloc() else {
            self.stats.no_mbuf += 1;
            return;
        };
        let Ok(b) = m.append((ETH_LEN + ARP_LEN) as u16) else {
            self.stats.no_mbuf += 1;
            return;
        };
        let repr = ArpRepr {
            op,
            src_mac: self.cfg.mac,
            src_ip: self.cfg.ip,
            dst_mac: target_mac,
            dst_ip: target_ip,
        };
        let _ = repr.emit(&mut b[ETH_LEN..]);
        if let Ok(mut f) = EthernetFrame::new_checked(&mut b[..]) {
            f.set_dst(eth_dst);
            f.set_src(self.cfg.mac);
            f.set_ethertype(EtherType::ARP);
        }
        self.enqueue(m);
    }

    fn receive_ipv4(&mut self, m: Mbuf) {
        let ip = match Ipv4Packet::new_checked(&m.data()[ETH_LEN..]) {
            Ok(ip) => ip,
            Err(e) => return ipv4_drop(&mut self.stats, e),
        };
        if !ip.verify_checksum() {
            self.stats.ipv4_bad_checksum += 1;
            return;
        }
        let (src, dst) = (ip.src(), ip.dst());
        if dst != self.cfg.ip && !self.cfg.is_broadcast(dst) {
            self.stats.ipv4_not_for_us += 1;
            return;
        }
        if self.cfg.is_bad_source(src, dst) {
            self.stats.ipv4_bad_src += 1;
            return;
        }
        if ip.is_fragment() {
            self.stats.ipv4_fragment += 1;
            return;
        }
        let hl = ip.header_len();
        let payload_len = ip.total_len() - hl;
        match ip.protocol() {
            IpProtocol::UDP => self.receive_udp(m, src, dst, ETH_LEN + hl, payload_len),
            IpProtocol::ICMP if dst == self.cfg.ip => self.receive_icmp(m, hl, payload_len),
            IpProtocol::ICMP => self.stats.icmp_dropped += 1,
            _ => self.stats.ipv4_unknown_protocol += 1,
        }
    }

    /// A UDP datagram at `at` in `m`, in an IP payload of `ip_len` bytes. As Linux's
    /// `udp_rcv`: a UDP length under 8 or past the IP payload is dropped and counted; one
    /// short of it trims the datagram to the UDP length (the bytes after it are not the
    /// datagram's), and the checksum covers the UDP length.
    fn receive_udp(&mut self, m: Mbuf, src: Ipv4Addr, dst: Ipv4Addr, at: usize, ip_len: usize) {
        let verified = m.ol_flags().rx_l4_cksum() == RxCksum::Verified;
        let data = &m.data()[at..at + ip_len];
        let udp = match UdpPacket::new_checked(data) {
            Ok(u) => u,
            Err(WireError::Truncated) => {
                self.stats.udp_truncated += 1;
                return;
            }
            Err(_) => {
                self.stats.udp_bad_length += 1;
                return;
            }
        };
        // `new_checked` made sure 8 <= the UDP length <= the IP payload.
        let len = udp.len();
        if !verified && !udp.verify_checksum(src, dst) {
            self.stats.udp_bad_checksum += 1;
            return;
        }
        let from = SocketAddrV4::new(src, udp.src_port());
        let to = SocketAddrV4::new(dst, udp.dst_port());
        let plen = len - UDP_LEN;
        let Some(id) = self.sockets.lookup(to, from) else {
            self.stats.udp_unknown_port += 1;
            return;
        };
        let cap = self.limits.socket_queue;
        let Ok(sock) = self.sockets.get_mut(id) else {
            self.stats.udp_unknown_port += 1;
            return;
        };
        if let Some(x) = sock.exchange.as_mut() {
            // Threaded mode: the mbuf leaves holding just the payload, the sender in its
            // dynamic fields, so the application needs no parsing.
            let mut m = m;
            // Link padding, and IP payload past the UDP length, are not the datagram's.
            let pad = m.data().len() - (at + len);
            if m.trim(pad as u16).is_err() || m.adj((at + UDP_LEN) as u16).is_err() {
                self.stats.udp_bad_length += 1;
                return;
            }
            if set_peer(&mut m, from).is_err() {
                self.stats.shared_mbuf += 1;
                return;
            }
            match x.enqueue(m) {
                Ok(()) => self.counters.delivered += 1,
                Err(_full) => self.stats.socket_queue_full += 1,
            }
            return;
        }
        if sock.queue.len() >= cap {
            self.stats.socket_queue_full += 1;
            return;
        }
        sock.queue.push_back(Datagram {
            mbuf: m,
            from,
            off: (at + UDP_LEN) as u16,
            len: plen as u16,
        });
        self.counters.delivered += 1;
    }

    /// Answers an echo request in place: the same mbuf goes back with the addresses swapped,
    /// without the request's IP options (a source route is not echoed unreversed).
    fn receive_icmp(&mut self, mut m: Mbuf, hl: usize, len: usize) {
        let ok = Icmpv4Packet::new_checked(&m.data()[ETH_LEN + hl..ETH_LEN + hl + len])
            .is_ok_and(|p| p.msg_type() == ECHO_REQUEST && p.code() == 0 && p.verify_checksum());
        if !ok {
            self.stats.icmp_dropped += 1;
            return;
        }
        // Link padding after the IP packet is not echoed.
        let extra = m.data().len() - (ETH_LEN + hl + len);
        if m.trim(extra as u16).is_err() {
            self.stats.icmp_dropped += 1;
            return;
        }
        let opts = hl - IP_LEN;
        if opts > 0 {
            // Slide the Ethernet header and the fixed IP header over the options.
            let moved = m
                .data_mut()
                .map(|d| d.copy_within(..ETH_LEN + IP_LEN, opts));
            if moved.is_err() || m.adj(opts as u16).is_err() {
                self.stats.icmp_dropped += 1;
                return;
            }
        }
        let hl = IP_LEN;
        let (me_mac, me_ip) = (self.cfg.mac, self.cfg.ip);
        let Ok(d) = m.data_mut() else {
            self.stats.icmp_dropped += 1;
            return;
        };
        let peer_mac: [u8; 6] = d[6..12].try_into().unwrap_or(BROADCAST_MAC);
        d[0..6].copy_from_slice(&peer_mac);
        d[6..12].copy_from_slice(&me_mac);
        let ipb = &mut d[ETH_LEN..];
        let peer_ip: [u8; 4] = ipb[12..16].try_into().unwrap_or([0; 4]);
        ipb[16..20].copy_from_slice(&peer_ip);
        ipb[12..16].copy_from_slice(&me_ip.octets());
        ipb[0] = 0x45;
        ipb[2..4].copy_from_slice(&((IP_LEN + len) as u16).to_be_bytes());
        ipb[8] = 64;
        if let Ok(mut p) = Ipv4Packet::new_checked(&mut ipb[..]) {
            p.fill_checksum();
        }
        if let Ok(mut p) = Icmpv4Packet::new_checked(&mut ipb[hl..hl + len]) {
            p.make_echo_reply();
        }
        self.counters.echo_replies += 1;
        self.enqueue(m);
    }

    /// Opens a socket.
    pub fn socket(&mut self) -> Result<SocketId, UdpError> {
        self.sockets.open()
    }

    /// Sets a socket's options (before `bind` for the reuse options to count).
    pub fn set_options(&mut self, id: SocketId, opts: SocketOptions) -> Result<(), UdpError> {
        self.sockets.get_mut(id)?.opts = opts;
        Ok(())
    }

    /// Binds to `addr` (our address or `0.0.0.0`; port 0 picks an ephemeral port); returns
    /// the address bound.
    pub fn bind(&mut self, id: SocketId, addr: SocketAddrV4) -> Result<SocketAddrV4, UdpError> {
        if !addr.ip().is_unspecified() && *addr.ip() != self.cfg.ip {
            return Err(UdpError::AddrNotAvailable { addr });
        }
        self.sockets.bind(id, addr)
    }

    /// The socket's local address, if bound.
    pub fn local_addr(&self, id: SocketId) -> Result<Option<SocketAddrV4>, UdpError> {
        Ok(self.sockets.get(id)?.local)
    }

    /// Sends `buf` to `dst` (binding an unbound socket to an ephemeral port first). The
    /// datagram leaves with the next [`poll`](Self::poll), after ARP resolves the next hop if
    /// needed; a datagram the ARP queue cannot hold is dropped and counted (`arp_queue_full`),
    /// as a kernel drops on a full neighbour queue. A destination port 0 is refused
    /// ([`UdpError::ZeroDestinationPort`], Linux's `EINVAL`) before anything is bound.
    pub fn send_to(
        &mut self,
        id: SocketId,
        buf: &[u8],
        dst: SocketAddrV4,
    ) -> Result<usize, UdpError> {
        check_dst(dst)?;
        check_len(&self.cfg, buf.len())?;
        let mut m = self.pool.alloc().ok_or(UdpError::NoBuffers)?;
        m.append(buf.len() as u16)
            .map_err(|_| UdpError::NoBuffers)?
            .copy_from_slice(buf);
        self.send_mbuf(id, m, dst)
    }

    /// Sends the payload in `m` to `dst` without copying it (the zero-copy send): the
    /// headers go into the mbuf's headroom. `m` must be one segment whose headroom holds the
    /// 42 header bytes (any mbuf fresh from a pool does). On an error (port 0 as in
    /// [`send_to`](Self::send_to), among others) `m` goes back to its pool. Returns the
    /// payload bytes queued.
    pub fn send_mbuf(
        &mut self,
        id: SocketId,
        m: Mbuf,
        dst: SocketAddrV4,
    ) -> Result<usize, UdpError> {
        check_dst(dst)?;
        check_mbuf(&self.cfg, &m)?;
        let local = self.local_or_bind(id)?;
        self.send_from(local.port(), m, dst)
    }

    /// The socket's local address, binding it to an ephemeral port first if it has none.
    pub(crate) fn local_or_bind(&mut self, id: SocketId) -> Result<SocketAddrV4, UdpError> {
        match self.sockets.get(id)?.local {
            Some(l) => Ok(l),
            None => self.bind(id, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        }
    }

    /// [`send_mbuf`](Self::send_mbuf) from local port `src_port`, without a socket: also
    /// for what a closed socket handed over before it closed (threaded mode).
    pub(crate) fn send_from(
        &mut self,
        src_port: u16,
        mut m: Mbuf,
        dst: SocketAddrV4,
    ) -> Result<usize, UdpError> {
        check_dst(dst)?;
        let plen = check_mbuf(&self.cfg, &m)?;
        let hop = self.cfg.next_hop(*dst.ip())?;
        let have = m.headroom() as usize;
        let no_room = UdpError::NoHeadroom {
            need: HEADERS_LEN,
            have,
        };
        m.prepend(HEADERS_LEN as u16).map_err(|_| no_room)?;
        let b = m.data_mut().map_err(|_| UdpError::SharedMbuf)?;
        let src_ip = self.cfg.ip;
        let udp = UdpRepr {
            src_port,
            dst_port: dst.port(),
            payload_len: plen,
        };
        let _ = udp.emit(&mut b[ETH_LEN + IP_LEN..], Some((src_ip, *dst.ip())));
        let ip = Ipv4Repr {
            src: src_ip,
            dst: *dst.ip(),
            protocol: IpProtocol::UDP,
            payload_len: UDP_LEN + plen,
            ttl: 64,
            dont_frag: true,
        };
        let _ = ip.emit(&mut b[ETH_LEN..], self.ident);
        self.ident = self.ident.wrapping_add(1);
        b[6..12].copy_from_slice(&self.cfg.mac);
        b[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
        if self.cfg.is_broadcast(*dst.ip()) {
            b[0..6].copy_from_slice(&BROADCAST_MAC);
            self.enqueue(m);
            return Ok(plen);
        }
        match self.arp.lookup_or_queue(hop, m, self.clock.now()) {
            (Resolution::Mac(mac), Some(mut m)) => {
                if let Ok(d) = m.data_mut() {
                    d[0..6].copy_from_slice(&mac);
                }
                self.enqueue(m);
            }
            (Resolution::Request, _) => self.send_arp(ArpOp::Request, hop, [0; 6], BROADCAST_MAC),
            (Resolution::Dropped, _) => self.stats.arp_queue_full += 1,
            _ => {}
        }
        Ok(plen)
    }

    /// Threaded mode: datagrams for `id` go to `ring` from now on (those already queued stay
    /// for `recv_from`).
    pub(crate) fn attach_exchange(
        &mut self,
        id: SocketId,
        ring: PktProducer,
    ) -> Result<(), UdpError> {
        self.sockets.get_mut(id)?.exchange = Some(ring);
        Ok(())
    }

    /// Threaded mode: a datagram an application handed over could not be sent.
    pub(crate) fn count_send_failed(&mut self) {
        self.stats.send_failed += 1;
    }

    /// Takes the next datagram: copies its payload into `buf` and returns the bytes copied,
    /// the sender, and whether the datagram was longer than `buf` (the rest is discarded, as
    /// with `MSG_TRUNC`). `WouldBlock` if none is queued.
    pub fn recv_from(
        &mut self,
        id: SocketId,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddrV4, bool), UdpError> {
        let s = self.sockets.get_mut(id)?;
        if s.local.is_none() {
            return Err(UdpError::NotBound);
        }
        let d = s.queue.pop_front().ok_or(UdpError::WouldBlock)?;
        let (off, len) = (d.off as usize, d.len as usize);
        let n = len.min(buf.len());
        buf[..n].copy_from_slice(&d.mbuf.data()[off..off + n]);
        Ok((n, d.from, len > buf.len()))
    }

    /// Takes the next datagram without copying: the mbuf (whole frame), the payload's offset
    /// and length in it, and the sender.
    pub fn recv_mbuf(
        &mut self,
        id: SocketId,
    ) -> Result<(Mbuf, usize, usize, SocketAddrV4), UdpError> {
        let s = self.sockets.get_mut(id)?;
        if s.local.is_none() {
            return Err(UdpError::NotBound);
        }
        let d = s.queue.pop_front().ok_or(UdpError::WouldBlock)?;
        Ok((d.mbuf, d.off as usize, d.len as usize, d.from))
    }

    /// Datagrams waiting on a socket.
    pub fn pending(&self, id: SocketId) -> Result<usize, UdpError> {
        Ok(self.sockets.get(id)?.queue.len())
    }

    /// Closes a socket; datagrams still queued are freed.
    pub fn close(&mut self, id: SocketId) -> Result<(), UdpError> {
        self.sockets.close(id).map(drop)
    }

    /// Open sockets.
    pub fn socket_count(&self) -> usize {
        self.sockets.open_count()
    }

    /// Resolved neighbours.
    pub fn arp_entries(&self) -> usize {
        self.arp.len()
    }
}

impl<C: Clock> Drop for Stack<C> {
    fn drop(&mut self) {
        self.sockets.drain_all().for_each(drop);
    }
}
