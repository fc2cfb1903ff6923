//! The UDP stack in single-thread mode, two stacks over a `net_ring` pair (and raw frames
//! injected on the wire): ARP from a cold cache, datagrams both ways byte-exact, echo replies,
//! every malformed frame dropped and counted under its reason while the stack keeps serving,
//! ARP timeouts and queue limits, socket errors, and every mbuf back in its pool.

use core::net::{Ipv4Addr, SocketAddrV4};
use rdk_core::ethdev::{Driver, Port, RxQueue, TxQueue};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_core::net::checksum;
use rdk_core::udp::{DropStats, SocketOptions, Stack, StackLimits, UdpError};
use rdk_os_mock::{MockClock, MockOs};
use rdk_pmd_ring::RingDriver;
use rdk_tests::frames::{flatten, ipv4_udp_frame, mbuf_of};
use rdk_tests::port::iface as cfg;
use std::time::Duration;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

fn started(d: RingDriver, pool: &PktMbufPool) -> Port<RingDriver> {
    rdk_tests::port::started(d, pool, 256)
}

/// Two stacks on the two ends of a ring pair.
struct Net {
    clock: MockClock,
    pool: PktMbufPool,
    pa: Port<RingDriver>,
    pb: Port<RingDriver>,
    a: Stack<MockClock>,
    b: Stack<MockClock>,
    _os: MockOs,
}

impl Net {
    fn new(limits: StackLimits) -> Net {
        let os = MockOs::new();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("udp", 2048)).unwrap();
        let clock = MockClock::new();
        let (da, db) = RingDriver::pair();
        Net {
            pa: started(da, &pool),
            pb: started(db, &pool),
            a: Stack::new(
                cfg(MAC_A, IP_A),
                limits.clone(),
                pool.clone(),
                clock.clone(),
            )
            .unwrap(),
            b: Stack::new(cfg(MAC_B, IP_B), limits, pool.clone(), clock.clone()).unwrap(),
            clock,
            pool,
            _os: os,
        }
    }

    /// A few rounds of both stacks.
    fn settle(&mut self) {
        for _ in 0..4 {
            let q = self.pa.queues().unwrap();
            self.a.poll(&mut q.rx[0], &mut q.tx[0]);
            let q = self.pb.queues().unwrap();
            self.b.poll(&mut q.rx[0], &mut q.tx[0]);
        }
    }

    /// Puts raw frames on the wire towards B (as if from A's side), and lets B handle them.
    fn inject_to_b(&mut self, frames: &[Vec<u8>]) {
        let mut burst: Vec<Option<Mbuf>> = frames
            .iter()
            .map(|f| Some(mbuf_of(&self.pool, f)))
            .collect();
        assert_eq!(
            self.pa.queues().unwrap().tx[0].tx_burst(&mut burst),
            frames.len()
        );
        let q = self.pb.queues().unwrap();
        self.b.poll(&mut q.rx[0], &mut q.tx[0]);
    }

    /// Frames B sent that are still on the wire towards A (taken off it).
    fn take_from_b(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut burst: [Option<Mbuf>; 32] = Default::default();
        loop {
            let n = self.pa.queues().unwrap().rx[0].rx_burst(&mut burst);
            if n == 0 {
                return out;
            }
            out.extend(
                burst[..n]
                    .iter_mut()
                    .filter_map(Option::take)
                    .map(|m| flatten(&m)),
            );
        }
    }

    fn finish(self) {
        let Net {
            pool, pa, pb, a, b, ..
        } = self;
        drop((a, b, pa, pb));
        assert_eq!(pool.available(), pool.size(), "every mbuf back in the pool");
    }
}

fn sock(s: &mut Stack<MockClock>, port: u16) -> rdk_core::udp::SocketId {
    let id = s.socket().unwrap();
    s.bind(id, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        .unwrap();
    id
}

#[test]
fn cold_arp_then_datagrams_both_ways() {
    let mut n = Net::new(StackLimits::default());
    let sa = sock(&mut n.a, 10000);
    let sb = sock(&mut n.b, 10001);
    assert_eq!(n.a.arp_entries(), 0);
    n.a.send_to(sa, b"PING 1", SocketAddrV4::new(IP_B, 10001))
        .unwrap();
    n.settle();
    let mut buf = [0u8; 64];
    let (len, from, trunc) = n.b.recv_from(sb, &mut buf).unwrap();
    assert_eq!(
        (&buf[..len], from, trunc),
        (&b"PING 1"[..], SocketAddrV4::new(IP_A, 10000), false)
    );
    assert_eq!(n.a.arp_entries(), 1, "A resolved B");
    assert_eq!(n.b.arp_entries(), 1, "B learnt A from A's request");
    n.b.send_to(sb, b"PONG 1", from).unwrap();
    n.settle();
    let (len, from, _) = n.a.recv_from(sa, &mut buf).unwrap();
    assert_eq!(
        (&buf[..len], from),
        (&b"PONG 1"[..], SocketAddrV4::new(IP_B, 10001))
    );
    assert_eq!(
        n.a.recv_from(sa, &mut buf).unwrap_err(),
        UdpError::WouldBlock
    );
    // The announcements each side sent at start: B had no entry for A yet, so it ignored
    // A's (as Linux does); A was waiting for B, so B's announcement resolved it.
    assert_eq!(n.b.stats().arp_ignored, 1);
    assert_eq!(n.a.stats().arp_ignored, 0);
    n.finish();
}

#[test]
fn truncation_zero_copy_and_queue_limits() {
    let mut n = Net::new(StackLimits {
        socket_queue: 3,
        ..StackLimits::default()
    });
    let sa = sock(&mut n.a, 1);
    let sb = sock(&mut n.b, 2);
    for i in 0..5u8 {
        n.a.send_to(sa, &[i; 100], SocketAddrV4::new(IP_B, 2))
            .unwrap();
    }
    n.settle();
    assert_eq!(n.b.pending(sb).unwrap(), 3);
    assert_eq!(n.b.stats().socket_queue_full, 2);
    let mut small = [0u8; 10];
    let (len, _, trunc) = n.b.recv_from(sb, &mut small).unwrap();
    assert_eq!((len, trunc, small), (10, true, [0; 10]));
    let (m, off, len, _) = n.b.recv_mbuf(sb).unwrap();
    assert_eq!(&m.data()[off..off + len], &[1u8; 100][..]);
    drop(m);
    let max = n.a.config().max_payload();
    assert_eq!(
        n.a.send_to(sa, &vec![0u8; max + 1], SocketAddrV4::new(IP_B, 2))
            .unwrap_err(),
        UdpError::MessageTooLong { len: max + 1, max }
    );
    n.finish();
}

#[test]
fn echo_requests_are_answered_byte_exact() {
    let mut n = Net::new(StackLimits::default());
    n.settle();
    let _ = n.take_from_b();
    let mut icmp = vec![8u8, 0, 0, 0, 0x42, 0x42, 0, 1];
    icmp.extend((0..56u8).map(|i| i ^ 0x5a));
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 7, 0, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&IP_A.octets());
    ip.extend_from_slice(&IP_B.octets());
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    n.inject_to_b(&[f.clone()]);
    let q = n.pb.queues().unwrap();
    n.b.poll(&mut q.rx[0], &mut q.tx[0]);
    let out = n.take_from_b();
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!((&r[0..6], &r[6..12]), (&MAC_A[..], &MAC_B[..]));
    assert_eq!(
        (&r[26..30], &r[30..34]),
        (&IP_B.octets()[..], &IP_A.octets()[..])
    );
    assert_eq!(checksum::checksum(&r[14..34]), 0, "IP checksum");
    assert_eq!(r[34], 0, "echo reply");
    assert_eq!(checksum::checksum(&r[34..]), 0, "ICMP checksum");
    assert_eq!(&r[38..], &f[38..], "identifier, sequence and data echoed");
    assert_eq!(n.b.counters().echo_replies, 1);
    n.finish();
}

/// Which drop counter a case must bump.
type Reason = fn(&DropStats) -> u64;

/// Every kind of malformed frame is dropped and counted under its own reason, and a good
/// datagram after them is still delivered.
#[test]
fn malformed_frames_are_counted_and_the_stack_keeps_serving() {
    let mut n = Net::new(StackLimits::default());
    let sb = sock(&mut n.b, 7777);
    n.settle();
    let good = ipv4_udp_frame(MAC_A, MAC_B, IP_A.octets(), IP_B.octets(), 5, 7777, b"ok");
    let with = |f: fn(&mut Vec<u8>)| {
        let mut x = good.clone();
        f(&mut x);
        x
    };
    let fix_ip = |x: &mut Vec<u8>| {
        x[24] = 0;
        x[25] = 0;
        let c = checksum::checksum(&x[14..34]);
        x[24..26].copy_from_slice(&c.to_be_bytes());
    };
    let cases: Vec<(Vec<u8>, Reason)> = vec![
        (good[..10].to_vec(), |s| s.eth_truncated),
        (
            with(|x| x[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9])),
            |s| s.eth_not_for_us,
        ),
        (with(|x| x[12..14].copy_from_slice(&[0x86, 0xdd])), |s| {
            s.eth_unknown_type
        }),
        (good[..30].to_vec(), |s| s.ipv4_truncated),
        (with(|x| x[14] = 0x65), |s| s.ipv4_bad_version),
        (with(|x| x[14] = 0x44), |s| s.ipv4_bad_header_len),
        (with(|x| x[16..18].copy_from_slice(&[0, 10])), |s| {
            s.ipv4_bad_length
        }),
        (with(|x| x[22] ^= 1), |s| s.ipv4_bad_checksum),
        (with(|x| x[12..14].copy_from_slice(&[0x08, 0x06])), |s| {
            s.arp_malformed
        }),
        (
            {
                let mut x = with(|x| x[30..34].copy_from_slice(&[10, 9, 0, 77]));
                fix_ip(&mut x);
                x
            },
            |s| s.ipv4_not_for_us,
        ),
        (
            {
                let mut x = with(|x| x[20] = 0x20);
                fix_ip(&mut x);
                x
            },
            |s| s.ipv4_fragment,
        ),
        (
            {
                let mut x = with(|x| x[23] = 6);
                fix_ip(&mut x);
                x
            },
            |s| s.ipv4_unknown_protocol,
        ),
        (with(|x| x[39] = 7), |s| s.udp_bad_length),
        (with(|x| x[39] = 11), |s| s.udp_truncated),
        (with(|x| *x.last_mut().unwrap() ^= 1), |s| {
            s.udp_bad_checksum
        }),
        (
            ipv4_udp_frame(MAC_A, MAC_B, IP_A.octets(), IP_B.octets(), 5, 9, b"x"),
            |s| s.udp_unknown_port,
        ),
    ];
    let before = n.b.stats();
    for (i, (frame, counter)) in cases.iter().enumerate() {
        let was = counter(&n.b.stats());
        n.inject_to_b(std::slice::from_ref(frame));
        assert_eq!(counter(&n.b.stats()), was + 1, "case {i}");
    }
    assert_eq!(
        n.b.stats().total(),
        before.total() + cases.len() as u64,
        "one reason each"
    );
    n.inject_to_b(std::slice::from_ref(&good));
    let mut buf = [0u8; 8];
    assert_eq!(n.b.recv_from(sb, &mut buf).unwrap().0, 2, "still serving");
    n.finish();
}

#[test]
fn arp_timeouts_and_pending_queue_limits() {
    let mut n = Net::new(StackLimits {
        arp_pending: 2,
        arp_tries: 2,
        arp_retry: Duration::from_millis(100),
        ..StackLimits::default()
    });
    let sa = sock(&mut n.a, 1);
    let ghost = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 99), 1);
    for _ in 0..3 {
        n.a.send_to(sa, b"anyone?", ghost).unwrap();
    }
    assert_eq!(
        n.a.stats().arp_queue_full,
        1,
        "the third does not fit the pending queue"
    );
    n.settle();
    n.clock.advance(Duration::from_millis(150));
    n.settle();
    assert_eq!(n.a.stats().arp_queue_full, 1, "retried, not given up yet");
    n.clock.advance(Duration::from_millis(150));
    n.settle();
    assert_eq!(
        n.a.stats().arp_queue_full,
        3,
        "given up: both waiting datagrams dropped"
    );
    // Errors with what to do.
    let s = n.a.socket().unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(n.a.recv_from(s, &mut buf).unwrap_err(), UdpError::NotBound);
    let far = SocketAddrV4::new(Ipv4Addr::new(8, 8, 8, 8), 53);
    assert_eq!(
        n.a.send_to(s, b"x", far).unwrap_err(),
        UdpError::NoRoute { dst: *far.ip() }
    );
    let other = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 5), 1);
    assert_eq!(
        n.a.bind(s, other).unwrap_err(),
        UdpError::AddrNotAvailable { addr: other }
    );
    assert!(UdpError::NoRoute { dst: *far.ip() }
        .to_string()
        .contains("gateway"));
    n.finish();
}

#[test]
fn reuse_port_spreads_flows_over_sockets() {
    let mut n = Net::new(StackLimits::default());
    let opts = SocketOptions {
        reuse_port: true,
        ..SocketOptions::default()
    };
    let (b1, b2) = (n.b.socket().unwrap(), n.b.socket().unwrap());
    for s in [b1, b2] {
        n.b.set_options(s, opts).unwrap();
        n.b.bind(s, SocketAddrV4::new(IP_B, 53)).unwrap();
    }
    let plain = n.b.socket().unwrap();
    assert!(matches!(
        n.b.bind(plain, SocketAddrV4::new(IP_B, 53)),
        Err(UdpError::AddrInUse { .. })
    ));
    let senders: Vec<_> = (0..16).map(|p| sock(&mut n.a, 2000 + p)).collect();
    for s in &senders {
        n.a.send_to(*s, b"q", SocketAddrV4::new(IP_B, 53)).unwrap();
    }
    n.settle();
    let (c1, c2) = (n.b.pending(b1).unwrap(), n.b.pending(b2).unwrap());
    assert_eq!(c1 + c2, 16);
    assert!(c1 > 0 && c2 > 0, "{c1} + {c2}");
    n.finish();
}

#[test]
fn port_info_is_what_the_stack_needs() {
    // The stack caps its MTU to what one buffer of the pool holds.
    let os = MockOs::new();
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("small", 64)).unwrap();
    let mut c = cfg(MAC_A, IP_A);
    c.mtu = 9000;
    let s = Stack::new(c, StackLimits::default(), pool.clone(), MockClock::new()).unwrap();
    // The data room excludes the headroom: a frame of the MTU fills it exactly.
    assert_eq!(s.config().mtu as usize + 14, pool.data_room() as usize);
    let (d, _) = RingDriver::pair();
    assert_eq!(d.info().driver_name, "net_ring");
}

/// An Ethernet + IPv4 (`opts` as IP options, a multiple of 4 bytes) + ICMP echo request
/// frame with correct checksums.
fn echo_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    opts: &[u8],
) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let mut icmp = vec![8u8, 0, 0, 0, 0x42, 0x42, 0, 1];
    icmp.extend((0..56u8).map(|i| i ^ 0x5a));
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let hl = 20 + opts.len();
    let mut ip = vec![0x40 | (hl / 4) as u8, 0, 0, 0, 0, 7, 0, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&((hl + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(opts);
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// An Ethernet + ARP request (`sha`/`spa` asking for `tpa`), broadcast from a unicast MAC
/// (so that a bad `sha` is the ARP layer's to catch).
fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 0x44]);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

/// RFC 1122 3.2.1.3: a datagram from a broadcast, multicast, 0.0.0.0/8 (to other than the
/// limited broadcast), loopback or our own address is discarded: no echo reply goes to it and
/// no socket gets it (an echo server would answer it, a broadcast one to every host).
#[test]
fn martian_sources_are_dropped_and_never_answered() {
    let mut n = Net::new(StackLimits::default());
    let sb = sock(&mut n.b, 7777);
    n.settle();
    let _ = n.take_from_b();
    let martians = [
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(10, 9, 0, 255),
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(0, 1, 2, 3),
        Ipv4Addr::LOCALHOST,
        IP_B,
    ];
    for src in martians {
        let before = n.b.stats().total();
        n.inject_to_b(&[echo_frame(MAC_A, MAC_B, src, IP_B, &[])]);
        let udp = ipv4_udp_frame(MAC_A, MAC_B, src.octets(), IP_B.octets(), 5, 7777, b"x");
        n.inject_to_b(&[udp]);
        assert!(n.take_from_b().is_empty(), "no echo reply to {src}");
        assert_eq!(n.b.pending(sb).unwrap(), 0, "nothing from {src} delivered");
        assert_eq!(n.b.stats().total(), before + 2, "both from {src} counted");
    }
    assert_eq!(n.b.stats().ipv4_bad_src, 2 * martians.len() as u64);
    assert_eq!(n.b.counters().echo_replies, 0);
    // DHCP's case: from 0.0.0.0 to the limited broadcast is a datagram like any other.
    let dhcp = ipv4_udp_frame(MAC_A, MAC_B, [0; 4], [255; 4], 68, 7777, b"d");
    n.inject_to_b(&[dhcp]);
    assert_eq!(n.b.pending(sb).unwrap(), 1);
    n.finish();
}

/// ARP from a sender that is not a unicast neighbour on our subnet (off-link, a broadcast or
/// multicast address, our own address, a group MAC) is neither learnt nor answered, and a
/// flood of spoofed senders cannot grow the cache without bound.
#[test]
fn arp_from_bad_senders_is_not_learnt_and_the_cache_is_bounded() {
    let mut n = Net::new(StackLimits {
        arp_entries: 8,
        ..StackLimits::default()
    });
    n.settle();
    let _ = n.take_from_b();
    let entries = n.b.arp_entries();
    let other = [2, 0, 0, 0, 0, 0x33];
    let bad = [
        (other, Ipv4Addr::new(8, 8, 8, 8)),
        (other, Ipv4Addr::new(10, 9, 0, 255)),
        (other, Ipv4Addr::new(224, 0, 0, 251)),
        (other, Ipv4Addr::BROADCAST),
        (other, IP_B),
        ([0x01, 0, 0x5e, 0, 0, 1], Ipv4Addr::new(10, 9, 0, 33)),
        ([0; 6], Ipv4Addr::new(10, 9, 0, 34)),
    ];
    for (sha, spa) in bad {
        n.inject_to_b(&[arp_request(sha, spa, IP_B)]);
        assert!(n.take_from_b().is_empty(), "no reply to {sha:x?} {spa}");
    }
    assert_eq!(n.b.arp_entries(), entries, "nothing learnt");
    assert_eq!(n.b.stats().arp_bad_sender, bad.len() as u64);
    // Spoofed off-link senders, a few thousand: none learnt.
    for chunk in 0..64u32 {
        let burst: Vec<Vec<u8>> = (0..32u32)
            .map(|i| {
                let spa = Ipv4Addr::from(0x0b00_0000 + chunk * 32 + i);
                arp_request(other, spa, IP_B)
            })
            .collect();
        n.inject_to_b(&burst);
        let _ = n.take_from_b();
    }
    assert_eq!(n.b.arp_entries(), entries, "no off-link sender learnt");
    // On-link senders past the limit: answered, the cache stays within it.
    for i in 100..140u8 {
        let sha = [2, 0, 0, 0, 1, i];
        n.inject_to_b(&[arp_request(sha, Ipv4Addr::new(10, 9, 0, i), IP_B)]);
        assert_eq!(n.take_from_b().len(), 1, "request from 10.9.0.{i} answered");
    }
    assert!(n.b.arp_entries() <= 8, "{} entries", n.b.arp_entries());
    // What the stack itself resolves still gets learnt with the cache full.
    let sa = sock(&mut n.a, 1);
    let sb = sock(&mut n.b, 2);
    n.b.send_to(sb, b"hello", SocketAddrV4::new(IP_A, 1))
        .unwrap();
    n.settle();
    let mut buf = [0u8; 8];
    assert_eq!(n.a.recv_from(sa, &mut buf).unwrap().0, 5);
    n.finish();
}

/// An echo request's IP options are not echoed back (a source route would have to be
/// reversed, RFC 1122 3.2.2.6: the reply goes without options, as smoltcp sends it), and a
/// request from a group MAC address (never a valid source) is not answered to that group.
#[test]
fn echo_replies_carry_no_options_and_go_to_no_group_address() {
    let mut n = Net::new(StackLimits::default());
    n.settle();
    let _ = n.take_from_b();
    // Loose source route through 10.9.0.77, then end of options.
    let lsrr = [0x83, 7, 4, 10, 9, 0, 77, 0];
    let f = echo_frame(MAC_A, MAC_B, IP_A, IP_B, &lsrr);
    n.inject_to_b(std::slice::from_ref(&f));
    let out = n.take_from_b();
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r[14], 0x45, "no options in the reply");
    assert_eq!(u16::from_be_bytes([r[16], r[17]]) as usize, r.len() - 14);
    assert_eq!((&r[0..6], &r[6..12]), (&MAC_A[..], &MAC_B[..]));
    assert_eq!(
        (&r[26..30], &r[30..34]),
        (&IP_B.octets()[..], &IP_A.octets()[..])
    );
    assert_eq!(checksum::checksum(&r[14..34]), 0, "IP checksum");
    assert_eq!((r[34], checksum::checksum(&r[34..])), (0, 0));
    assert_eq!(
        &r[38..],
        &f[38 + lsrr.len()..],
        "identifier, sequence, data"
    );
    for src_mac in [[0xff; 6], [0x01, 0, 0x5e, 0, 0, 1]] {
        let before = n.b.stats().total();
        n.inject_to_b(&[echo_frame(src_mac, MAC_B, IP_A, IP_B, &[])]);
        assert!(n.take_from_b().is_empty(), "no reply to {src_mac:x?}");
        assert_eq!(n.b.stats().total(), before + 1);
    }
    assert_eq!(n.b.stats().eth_bad_src, 2);
    n.finish();
}

/// `frame` (Ethernet + IPv4 without options) with `extra` bytes added to its IP packet after
/// the UDP datagram: the IP length grows, the UDP length stays.
fn with_ip_trailer(frame: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f.extend_from_slice(extra);
    let total = u16::from_be_bytes([f[16], f[17]]) + extra.len() as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].fill(0);
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// A UDP length short of the IP payload: Linux's `udp_rcv` trims the datagram to the UDP
/// length, checks the checksum over that, and delivers it; rdk dropped it (`udp_bad_length`).
/// A length under 8, or past the IP payload (even into link padding), is dropped and counted.
#[test]
fn a_udp_length_short_of_the_ip_payload_is_trimmed_as_linux_does() {
    let mut n = Net::new(StackLimits::default());
    let sb = sock(&mut n.b, 7777);
    n.settle();
    let udp = |payload: &[u8]| {
        ipv4_udp_frame(MAC_A, MAC_B, IP_A.octets(), IP_B.octets(), 5, 7777, payload)
    };
    let mut buf = [0u8; 64];
    // The checksum covers the UDP length only: whatever follows it in the IP packet is not
    // the datagram's, and no trailer changes what is delivered.
    for trailer in [&b"PAD"[..], b"\xff\x00\x12\x34\x56", b"z"] {
        let before = n.b.stats();
        n.inject_to_b(&[with_ip_trailer(&udp(b"hello"), trailer)]);
        assert_eq!(n.b.stats(), before, "trailer {trailer:?}: nothing dropped");
        let (len, from, trunc) = n.b.recv_from(sb, &mut buf).unwrap();
        assert_eq!(
            (&buf[..len], from, trunc),
            (&b"hello"[..], SocketAddrV4::new(IP_A, 5), false)
        );
    }
    // Zero-copy: the offset and length name the datagram's payload, not the trailer.
    n.inject_to_b(&[with_ip_trailer(&udp(b"zc"), b"TRAILER")]);
    let (m, off, len, _) = n.b.recv_mbuf(sb).unwrap();
    assert_eq!(&m.data()[off..off + len], b"zc");
    drop(m);
    // No checksum (0) is as good trimmed as whole.
    let mut none = with_ip_trailer(&udp(b"nocsum"), b"xx");
    none[40..42].fill(0);
    n.inject_to_b(&[none]);
    assert_eq!(n.b.recv_from(sb, &mut buf).unwrap().0, 6);
    // A checksum computed over the whole IP payload (the trailer as datagram) does not
    // verify over the UDP length.
    let mut whole = udp(b"helloPAD");
    whole[38..40].copy_from_slice(&13u16.to_be_bytes());
    let was = n.b.stats().udp_bad_checksum;
    n.inject_to_b(&[whole]);
    assert_eq!(n.b.stats().udp_bad_checksum, was + 1);
    // Under 8, past the IP payload, or past it into Ethernet padding: dropped and counted.
    let mut short = with_ip_trailer(&udp(b"hello"), b"PAD");
    short[38..40].copy_from_slice(&7u16.to_be_bytes());
    let mut long = udp(b"hello");
    long[38..40].copy_from_slice(&14u16.to_be_bytes());
    let mut padded = udp(b"hello");
    padded[38..40].copy_from_slice(&15u16.to_be_bytes());
    padded.extend_from_slice(&[0; 10]);
    let before = n.b.stats();
    n.inject_to_b(&[short, long, padded]);
    let after = n.b.stats();
    assert_eq!(after.udp_bad_length, before.udp_bad_length + 1);
    assert_eq!(after.udp_truncated, before.udp_truncated + 2);
    assert_eq!(after.total(), before.total() + 3);
    assert_eq!(n.b.pending(sb).unwrap(), 0);
    assert_eq!(n.b.counters().delivered, 5);
    n.finish();
}

/// Port 0 is no destination: Linux's `udp_sendmsg` returns `EINVAL`; rdk sent the datagram.
/// Both sends refuse it before binding or allocating, and the mbuf goes back to its pool.
#[test]
fn a_send_to_port_0_is_refused() {
    let mut n = Net::new(StackLimits::default());
    let sb = sock(&mut n.b, 7777);
    let sa = n.a.socket().unwrap();
    let zero = SocketAddrV4::new(IP_B, 0);
    assert_eq!(
        n.a.send_to(sa, b"x", zero).unwrap_err(),
        UdpError::ZeroDestinationPort { dst: zero }
    );
    assert_eq!(
        n.a.local_addr(sa).unwrap(),
        None,
        "not bound by the refused send"
    );
    let mut m = n.pool.alloc().unwrap();
    m.append(1).unwrap().copy_from_slice(b"y");
    assert_eq!(
        n.a.send_mbuf(sa, m, zero).unwrap_err(),
        UdpError::ZeroDestinationPort { dst: zero }
    );
    let e = UdpError::ZeroDestinationPort { dst: zero }.to_string();
    assert!(e.contains("port 0"), "{e}");
    n.settle();
    assert_eq!(n.b.pending(sb).unwrap(), 0);
    assert_eq!(n.b.stats().udp_unknown_port, 0, "nothing reached B");
    // A real port still works from the same socket.
    n.a.send_to(sa, b"ok", SocketAddrV4::new(IP_B, 7777))
        .unwrap();
    n.settle();
    assert_eq!(n.b.pending(sb).unwrap(), 1);
    n.finish();
}

/// An ephemeral range that is empty (inverted) or holds port 0 made a debug build panic on
/// the first ephemeral bind; the stack refuses it when it is made, and a size limit of 0 (a
/// stack that would drop everything) too. The top of the port space is a valid range and
/// wraps.
#[test]
fn bad_limits_are_refused_when_the_stack_is_made() {
    let os = MockOs::new();
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("eph", 64)).unwrap();
    let make = |ephemeral| {
        Stack::new(
            cfg(MAC_A, IP_A),
            StackLimits {
                ephemeral,
                ..StackLimits::default()
            },
            pool.clone(),
            MockClock::new(),
        )
    };
    let inverted = std::ops::RangeInclusive::new(60001, 60000);
    for (r, start, end) in [(inverted, 60001, 60000), (0..=1023, 0, 1023), (0..=0, 0, 0)] {
        let e = make(r).err().expect("refused");
        assert_eq!(e, UdpError::BadEphemeralRange { start, end });
        assert!(e.to_string().contains("ephemeral"), "{e}");
    }
    // Sizes of 0 would drop every datagram (tx_backlog, socket_queue), every first packet to
    // a neighbour (arp_pending) or open nothing: refused, naming the field.
    type Set = fn(&mut StackLimits);
    let zeroes: [(&str, Set); 6] = [
        ("max_sockets", |l| l.max_sockets = 0),
        ("socket_queue", |l| l.socket_queue = 0),
        ("tx_backlog", |l| l.tx_backlog = 0),
        ("arp_pending", |l| l.arp_pending = 0),
        ("arp_entries", |l| l.arp_entries = 0),
        ("arp_tries", |l| l.arp_tries = 0),
    ];
    for (limit, zero) in zeroes {
        let mut limits = StackLimits::default();
        zero(&mut limits);
        let e = Stack::new(cfg(MAC_A, IP_A), limits, pool.clone(), MockClock::new())
            .err()
            .expect("refused");
        assert_eq!(e, UdpError::ZeroLimit { limit });
        assert!(e.to_string().contains(limit), "{e}");
    }
    let mut s = make(65535..=65535).unwrap();
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let (x, y) = (s.socket().unwrap(), s.socket().unwrap());
    assert_eq!(s.bind(x, any).unwrap().port(), 65535);
    assert_eq!(s.bind(y, any).unwrap_err(), UdpError::NoEphemeralPort);
    s.close(x).unwrap();
    assert_eq!(s.bind(y, any).unwrap().port(), 65535);
    drop(s);
    assert_eq!(pool.available(), pool.size());
}

/// Since Linux 5.14 ("ip: Treat IPv4 segment's lowest address as unicast") a subnet's lowest
/// address is an ordinary unicast address: not a broadcast to receive, not a martian source.
/// The subnet's all-ones address and 255.255.255.255 are broadcasts alike: received (by a
/// wildcard socket), and martian as sources. A /31 (RFC 3021) has no subnet broadcast.
#[test]
fn broadcasts_and_the_lowest_address_as_linux_has_them() {
    let mut n = Net::new(StackLimits::default());
    let sb = sock(&mut n.b, 7777);
    n.settle();
    let c = n.b.config();
    let (net, bcast) = (Ipv4Addr::new(10, 9, 0, 0), Ipv4Addr::new(10, 9, 0, 255));
    assert!(c.is_broadcast(bcast) && c.is_broadcast(Ipv4Addr::BROADCAST));
    assert!(!c.is_broadcast(net), "the lowest address is unicast");
    for b in [bcast, Ipv4Addr::BROADCAST] {
        assert!(c.is_bad_source(b, IP_B), "{b} as a source");
    }
    assert!(!c.is_bad_source(net, IP_B));
    let mut p31 = *c;
    p31.prefix_len = 31;
    assert!(!p31.is_broadcast(Ipv4Addr::new(10, 9, 0, 3)) && p31.is_broadcast(Ipv4Addr::BROADCAST));
    let frame = |src: Ipv4Addr, dst: Ipv4Addr| {
        ipv4_udp_frame(MAC_A, [0xff; 6], src.octets(), dst.octets(), 5, 7777, b"b")
    };
    let mut buf = [0u8; 8];
    // Both broadcasts are received; the lowest address is nobody's here (not ours).
    for dst in [bcast, Ipv4Addr::BROADCAST] {
        n.inject_to_b(&[frame(IP_A, dst)]);
        assert_eq!(n.b.recv_from(sb, &mut buf).unwrap().0, 1, "to {dst}");
    }
    let was = n.b.stats().ipv4_not_for_us;
    n.inject_to_b(&[frame(IP_A, net)]);
    assert_eq!(n.b.stats().ipv4_not_for_us, was + 1);
    // From the lowest address: a unicast sender, delivered; from either broadcast: martian.
    n.inject_to_b(&[frame(net, IP_B)]);
    assert_eq!(
        n.b.recv_from(sb, &mut buf).unwrap().1,
        SocketAddrV4::new(net, 5)
    );
    let was = n.b.stats().ipv4_bad_src;
    n.inject_to_b(&[frame(bcast, IP_B), frame(Ipv4Addr::BROADCAST, IP_B)]);
    assert_eq!(n.b.stats().ipv4_bad_src, was + 2);
    assert_eq!(n.b.pending(sb).unwrap(), 0);
    n.finish();
}
