//! The rig of the host-PMD suites (`af_packet`, `af_xdp`): two namespaces joined by a veth,
//! rdk on end A, the kernel (or dpdk-testpmd) on end B, and the exchanges they share.

use crate::dpdk::Testpmd;
use crate::frames::{
    flatten, ipv4_udp_frame, mbuf_of, receive, udp_payload_of, Peer, PY_RAW_CAPTURE, PY_UDP_RECV,
    PY_UDP_SEND,
};
use crate::netns::{HarnessError, Netns, Veth};
use crate::port::await_link;
use rdk_core::ethdev::{Driver, LinkStatus, Port, TxQueue};
use rdk_core::mbuf::{Mbuf, PktMbufPool};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Two namespaces joined by a veth, IPv6 off on both ends (no stray frames), the peer end
/// (B) addressed `NET.1/24` with a static neighbour entry for rdk's `NET.2` on end A.
/// Dropping it deletes both namespaces and the pair.
#[derive(Debug)]
pub struct VethLab {
    /// rdk's namespace (end A).
    pub rdk: Netns,
    /// The kernel peer's namespace (end B).
    pub peer: Netns,
    /// The pair: `a` in `rdk`, `b` in `peer`.
    pub veth: Veth,
    net: [u8; 3],
    rdk_mac: [u8; 6],
}

impl VethLab {
    /// Builds the rig in namespaces named after `tag`, on the /24 `net` (e.g. `[10, 78, 0]`),
    /// with rdk's address bound to `rdk_mac` in the peer's neighbour table.
    pub fn new(tag: &str, net: [u8; 3], rdk_mac: [u8; 6]) -> Result<Self, HarnessError> {
        Self::with_queues(tag, net, rdk_mac, 1)
    }

    /// As [`VethLab::new`], over a veth whose ends have `queues` queues each.
    pub fn with_queues(
        tag: &str,
        net: [u8; 3],
        rdk_mac: [u8; 6],
        queues: u16,
    ) -> Result<Self, HarnessError> {
        let rdk = Netns::new(tag)?;
        let peer = Netns::new(tag)?;
        let veth = Veth::with_queues(Some(&rdk), Some(&peer), queues)?;
        for (ns, end) in [(&rdk, &veth.a), (&peer, &veth.b)] {
            ns.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{end}.disable_ipv6=1"),
            ])?;
        }
        let lab = Self {
            rdk,
            peer,
            veth,
            net,
            rdk_mac,
        };
        let peer_cidr = format!("{}/24", dotted(lab.peer_ip()));
        lab.peer
            .exec(&["ip", "addr", "add", &peer_cidr, "dev", &lab.veth.b])?;
        let mac = rdk_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        lab.peer.exec(&[
            "ip",
            "neigh",
            "replace",
            &dotted(lab.rdk_ip()),
            "lladdr",
            &mac,
            "dev",
            &lab.veth.b,
            "nud",
            "permanent",
        ])?;
        Ok(lab)
    }

    /// An offload test against the kernel for `port` on end A: the peer's namespace routes
    /// to a [`FarSide`] (named after `tag`, on the /24 `far_net`) built for it.
    pub fn offload_test<D: Driver>(
        &self,
        test: OffloadTest,
        port: &mut Port<D>,
        pool: &PktMbufPool,
        tag: &str,
        far_net: [u8; 3],
    ) {
        let far = FarSide::new(&self.peer, tag, far_net).unwrap();
        let hop = iface_mac(&self.peer, &self.veth.b);
        let (peer, mac, ip) = (&self.peer, self.rdk_mac, self.rdk_ip());
        match test {
            OffloadTest::Checksums => {
                tx_checksum_offloads_are_completed(port, pool, peer, &far, mac, hop, ip)
            }
            OffloadTest::Segmentation => {
                let ip = std::net::Ipv4Addr::from(ip).into();
                tcp_segmentation_is_done_by_the_kernel(port, pool, &far, mac, hop, ip)
            }
        }
    }

    /// rdk's address (`NET.2`).
    pub fn rdk_ip(&self) -> [u8; 4] {
        [self.net[0], self.net[1], self.net[2], 2]
    }

    /// The peer's address (`NET.1`).
    pub fn peer_ip(&self) -> [u8; 4] {
        [self.net[0], self.net[1], self.net[2], 1]
    }

    /// A broadcast IPv4/UDP frame from rdk (its MAC and address, port 5555) to the peer's
    /// port 7777 carrying `payload`, with correct checksums.
    pub fn udp_to_peer(&self, payload: &[u8]) -> Vec<u8> {
        ipv4_udp_frame(
            self.rdk_mac,
            [0xff; 6],
            self.rdk_ip(),
            self.peer_ip(),
            5555,
            7777,
            payload,
        )
    }

    /// Sends each of `payloads` as a UDP datagram from the peer's kernel to rdk's port 9999
    /// and receives on `port` until as many frames arrived (5 s at most). Asserts that the
    /// UDP payloads to 9999 among them are `payloads`, in order, byte-exact; returns the
    /// frames.
    pub fn kernel_udp_arrives_in_order<D: Driver>(
        &self,
        port: &mut Port<D>,
        payloads: &[Vec<u8>],
    ) -> Vec<Mbuf> {
        for p in payloads {
            self.send_udp(&hex(p), None).expect("the peer sends");
        }
        let frames = receive(port, payloads.len(), Duration::from_secs(5));
        let got: Vec<Vec<u8>> = frames
            .iter()
            .filter_map(|m| udp_payload_of(m, 9999))
            .collect();
        assert_eq!(got, payloads);
        frames
    }

    /// Sends one UDP datagram from the peer's kernel to rdk's port 9999 with the hex payload,
    /// from source port `sport` if given.
    pub fn send_udp(&self, payload_hex: &str, sport: Option<u16>) -> Result<(), HarnessError> {
        let rdk_ip = dotted(self.rdk_ip());
        let sport = sport.map(|s| s.to_string());
        let mut args = vec!["python3", "-c", PY_UDP_SEND, &rdk_ip, "9999", payload_hex];
        if let Some(s) = &sport {
            args.push(s);
        }
        self.peer.exec(&args).map(drop)
    }
}

fn dotted(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

/// Lower-case hex of `b` (the payload argument of [`PY_UDP_SEND`]).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// dpdk-testpmd's `net_af_packet` on `iface` in `ns` against the started `port` across it,
/// as generator and as receiver, with exact counts: testpmd's `tx_first 4` burst (128 IPv4
/// frames) must all arrive at `port`, and 500 frames `frame(i)` (`i` < 50) that `port` sends
/// must all reach testpmd. Panics (the test fails) on any other count; the frames are freed.
pub fn testpmd_exchange<D: Driver>(
    ns: &Netns,
    iface: &str,
    port: &mut Port<D>,
    pool: &PktMbufPool,
    frame: impl Fn(u8) -> Vec<u8>,
) {
    let mut pmd = Testpmd::start(ns, &format!("net_af_packet0,iface={iface}"), "0-1");
    // Generator: 4 bursts of 32 in io mode, nothing else to forward.
    pmd.cmd("set fwd io");
    pmd.cmd("start tx_first 4");
    let frames = receive(port, 128, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    let (_, sent) = pmd.stop_counts();
    assert_eq!(sent, 128, "testpmd log:\n{}", pmd.log());
    let more = receive(port, 1, Duration::from_millis(100));
    assert_eq!(
        frames.len() + more.len(),
        128,
        "rdk received exactly what DPDK sent"
    );
    assert!(
        frames.iter().all(|m| flatten(m)[12..14] == [0x08, 0x00]),
        "testpmd's IPv4/UDP frames"
    );
    drop((frames, more));
    // Receiver: rdk sends 500 frames, testpmd counts them.
    pmd.cmd("set fwd rxonly");
    // testpmd drains its receive queues when forwarding starts: send only after that.
    pmd.start_forwarding();
    let mut n = 0;
    while n < 500 {
        let mut burst: Vec<Option<Mbuf>> =
            (0..50).map(|i| Some(mbuf_of(pool, &frame(i)))).collect();
        n += port.queues().expect("a started port").tx[0].tx_burst(&mut burst);
        drop(burst);
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (received, _) = pmd.stop_counts();
    assert_eq!(
        received,
        500,
        "DPDK received exactly what rdk sent; log:\n{}",
        pmd.log()
    );
}

/// Sets `iface` in `ns` down and up again: `port` (started, link up) must report exactly
/// "down" then "up", one call each, to the link-change callback this installs.
pub fn link_flap<D: Driver>(port: &mut Port<D>, ns: &Netns, iface: &str) {
    let events: Arc<Mutex<Vec<LinkStatus>>> = Arc::default();
    let ev = events.clone();
    port.on_link_change(Box::new(move |_, l| {
        ev.lock().unwrap_or_else(|e| e.into_inner()).push(l)
    }));
    await_link(port, true);
    ns.exec(&["ip", "link", "set", iface, "down"])
        .expect("set the interface down");
    await_link(port, false);
    ns.exec(&["ip", "link", "set", iface, "up"])
        .expect("set the interface up");
    await_link(port, true);
    assert_eq!(
        events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|l| l.up)
            .collect::<Vec<_>>(),
        [false, true],
        "one callback per change"
    );
}

/// Takes the peer end (B) down and up again ([`link_flap`]), then rdk's end (A) is deleted
/// and `port` must report the link down. The caller checks its driver saw the interface go.
pub fn link_flap_then_delete<D: Driver>(lab: &VethLab, port: &mut Port<D>) {
    link_flap(port, &lab.peer, &lab.veth.b);
    lab.rdk
        .exec(&["ip", "link", "del", &lab.veth.a])
        .expect("delete rdk's end");
    assert!(!port.link_update().up);
}

/// The kernel's side of an "rdk sends, the kernel receives" test on `iface` in `ns`: a raw
/// capture of frames of EtherType 0x88b5 (as [`raw_test_frame`] makes), a UDP receiver on
/// port 7777, both ready, and the interface's `rx_packets` from before.
pub struct PeerReceivers<'a> {
    ns: &'a Netns,
    iface: &'a str,
    capture: Peer,
    udp: Peer,
    rx_packets_before: u64,
}

impl<'a> PeerReceivers<'a> {
    /// Starts both, for `raw` raw frames on `iface` and a datagram to `ip`:7777 (5 s each at
    /// most).
    pub fn start(ns: &'a Netns, iface: &'a str, ip: &str, raw: usize) -> Self {
        let rx_packets_before = ns
            .counter(iface, "rx_packets")
            .expect("the interface's rx_packets");
        let raw = raw.to_string();
        let capture = Peer::python(ns, PY_RAW_CAPTURE, &[iface, &raw, "5"]);
        let udp = Peer::python(ns, PY_UDP_RECV, &[ip, "7777", "5"]);
        PeerReceivers {
            ns,
            iface,
            capture,
            udp,
            rx_packets_before,
        }
    }

    /// Waits for both: asserts that the capture holds exactly the frames `raw`, in order,
    /// byte-exact, and that the UDP receiver got one datagram, `text`. Returns how many
    /// frames the interface received since [`PeerReceivers::start`].
    pub fn finish(self, raw: &[Vec<u8>], text: &str) -> u64 {
        let captured = self.capture.finish();
        assert_eq!(
            captured,
            raw.iter().map(|f| hex(f)).collect::<Vec<_>>(),
            "captured byte-exact, in order"
        );
        assert_eq!(self.udp.finish(), [text]);
        let rx = self.ns.counter(self.iface, "rx_packets").unwrap();
        rx - self.rx_packets_before
    }
}

impl VethLab {
    /// Starts the peer's receivers ([`PeerReceivers`]) on end B for `raw` raw frames.
    pub fn peer_receivers(&self, raw: usize) -> PeerReceivers<'_> {
        PeerReceivers::start(&self.peer, &self.veth.b, &dotted(self.peer_ip()), raw)
    }
}

/// The offload tests [`VethLab::offload_test`] runs.
#[derive(Clone, Copy, Debug)]
pub enum OffloadTest {
    /// [`tx_checksum_offloads_are_completed`].
    Checksums,
    /// [`tcp_segmentation_is_done_by_the_kernel`] over IPv4.
    Segmentation,
}

/// Test frame `i` from `src_mac`: broadcast, EtherType 0x88b5 (local experimental), a
/// payload of 50 + 300·`i` bytes that differs per `i`.
pub fn raw_test_frame(src_mac: [u8; 6], i: u8) -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..50 + 300 * i as usize).map(|b| (b as u8).wrapping_mul(13) ^ i));
    f
}

/// The MAC address of `iface` inside `ns`.
pub fn iface_mac(ns: &Netns, iface: &str) -> [u8; 6] {
    let out = ns
        .exec(&["cat", &format!("/sys/class/net/{iface}/address")])
        .unwrap();
    let mut mac = [0u8; 6];
    for (b, s) in mac
        .iter_mut()
        .zip(String::from_utf8_lossy(&out.stdout).trim().split(':'))
    {
        *b = u8::from_str_radix(s, 16).unwrap();
    }
    mac
}

/// A third namespace behind `router`: a veth from `router` (`NET.1/24` and
/// `fd00:NET1:NET2::1/64`, transmit checksumming off, so the kernel finishes partial checksums
/// in software before a frame leaves) to `ns` (`NET.2/24`, `fd00:NET1:NET2::2/64`, default
/// routes back through the router), forwarding on in `router`. What
/// reaches `ns` has full checksums, which its stack checks.
#[derive(Debug)]
pub struct FarSide {
    /// The far namespace.
    pub ns: Netns,
    link: Veth,
    net: [u8; 3],
}

impl FarSide {
    /// Builds it behind `router`, the namespace named after `tag`, on the /24 `net`.
    pub fn new(router: &Netns, tag: &str, net: [u8; 3]) -> Result<Self, HarnessError> {
        let ns = Netns::new(tag)?;
        let link = Veth::new(Some(router), Some(&ns))?;
        let dot = |h: u8| format!("{}.{}.{}.{h}", net[0], net[1], net[2]);
        router.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", dot(1)),
            "dev",
            &link.a,
        ])?;
        router.exec(&["ethtool", "-K", &link.a, "tx", "off"])?;
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", dot(2)),
            "dev",
            &link.b,
        ])?;
        ns.exec(&["ip", "route", "add", "default", "via", &dot(1)])?;
        // The same over IPv6: fd00:NET1:NET2::1/64 and ::2 (no duplicate detection to wait
        // for), forwarding on in `router`.
        let six = |h: u8| Self::ip6_of(net, h).to_string();
        router.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        router.exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/64", six(1)),
            "dev",
            &link.a,
            "nodad",
        ])?;
        ns.exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/64", six(2)),
            "dev",
            &link.b,
            "nodad",
        ])?;
        ns.exec(&["ip", "-6", "route", "add", "default", "via", &six(1)])?;
        Ok(Self { ns, link, net })
    }

    /// The far namespace's address (`NET.2`).
    pub fn ip(&self) -> [u8; 4] {
        [self.net[0], self.net[1], self.net[2], 2]
    }

    /// The far namespace's IPv6 address (`fd00:NET1:NET2::2`).
    pub fn ip6(&self) -> std::net::Ipv6Addr {
        Self::ip6_of(self.net, 2)
    }

    fn ip6_of(net: [u8; 3], host: u8) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::new(
            0xfd00,
            net[1] as u16,
            net[2] as u16,
            0,
            0,
            0,
            0,
            host as u16,
        )
    }

    /// The far namespace's end of the link.
    pub fn iface(&self) -> &str {
        &self.link.b
    }
}

/// TX checksum offloads of a started `port` (configured with IPv4, UDP and TCP checksum
/// offload) against the kernel: datagrams from `rdk_ip`/`rdk_mac` whose IPv4 checksum is zero
/// (`TX_IP_CKSUM`) and whose UDP field holds only the pseudo-header sum (`TX_UDP_CKSUM`) go to
/// `next_hop` (the router's MAC on rdk's link); `router` forwards them to `far`, where a UDP
/// socket, which checks both checksums, must get every one byte-exact. Negative controls, so
/// the check can fail: a wrong seed must show up as one `Udp InCsumErrors` in `far`, a zero
/// IPv4 checksum sent without the request as one `IpExt InCsumErrors` in `router`; and a
/// request whose lengths do not fit its frame must be dropped and counted
/// (`tx_bad_offload_request`), not sent.
pub fn tx_checksum_offloads_are_completed<D: Driver>(
    port: &mut Port<D>,
    pool: &PktMbufPool,
    router: &Netns,
    far: &FarSide,
    rdk_mac: [u8; 6],
    next_hop: [u8; 6],
    rdk_ip: [u8; 4],
) {
    use crate::frames::PY_UDP_RECV_ALL;
    use rdk_core::mbuf::OlFlags;
    use rdk_core::net::checksum::{fold, pseudo_header};
    use std::net::Ipv4Addr;
    let dst = far.ip();
    let offloaded = |payload: &[u8], seed_xor: u16, ip_req: bool, l3: u16| {
        let mut f = ipv4_udp_frame(rdk_mac, next_hop, rdk_ip, dst, 5555, 9999, payload);
        f[24..26].fill(0);
        let udp_len = (8 + payload.len()) as u16;
        let seed = fold(pseudo_header(
            Ipv4Addr::from(rdk_ip),
            Ipv4Addr::from(dst),
            17,
            udp_len,
        )) ^ seed_xor;
        f[40..42].copy_from_slice(&seed.to_be_bytes());
        let mut m = mbuf_of(pool, &f);
        {
            let mut meta = m.meta_mut().unwrap();
            let ip = if ip_req {
                OlFlags::TX_IP_CKSUM
            } else {
                OlFlags::empty()
            };
            meta.set_ol_flags(OlFlags::TX_IPV4 | ip | OlFlags::TX_UDP_CKSUM);
            let mut t = meta.tx_offload();
            t.set_l2_len(14).unwrap();
            t.set_l3_len(l3).unwrap();
            meta.set_tx_offload(t);
        }
        m
    };
    let dst_s = format!("{}.{}.{}.{}", dst[0], dst[1], dst[2], dst[3]);
    let receiver = Peer::python(&far.ns, PY_UDP_RECV_ALL, &[&dst_s, "9999", "2"]);
    let udp_errors = || {
        far.ns
            .snmp("/proc/net/snmp", "Udp", "InCsumErrors")
            .unwrap()
    };
    let ip_errors = || {
        router
            .snmp("/proc/net/netstat", "IpExt", "InCsumErrors")
            .unwrap()
    };
    let bad_requests = |port: &Port<D>| {
        port.xstats()
            .iter()
            .find(|x| x.name == "tx_bad_offload_request")
            .map(|x| x.value)
    };
    let (udp0, ip0) = (udp_errors(), ip_errors());
    let payloads: Vec<Vec<u8>> = (0..4u8)
        .map(|i| (0..18 + 333 * i as usize).map(|b| b as u8 ^ i).collect())
        .collect();
    let mut out: Vec<Option<Mbuf>> = payloads
        .iter()
        .map(|p| Some(offloaded(p, 0, true, 20)))
        .collect();
    out.push(Some(offloaded(b"wrong seed", 0x0101, true, 20)));
    out.push(Some(offloaded(b"no ip checksum", 0, false, 20)));
    let q = port.queues().unwrap();
    assert_eq!(q.tx[0].tx_burst(&mut out), out.len());
    let got = receiver.finish();
    let want: Vec<String> = payloads.iter().map(|p| hex(p)).collect();
    assert_eq!(
        got, want,
        "every offloaded datagram, byte-exact, and nothing else"
    );
    assert_eq!(
        udp_errors() - udp0,
        1,
        "the wrong seed fails the far socket's UDP check"
    );
    assert_eq!(
        ip_errors() - ip0,
        1,
        "the zero IPv4 checksum fails the router's check"
    );
    assert_eq!(bad_requests(port), Some(0));
    let q = port.queues().unwrap();
    assert_eq!(
        q.tx[0].tx_burst(&mut [Some(offloaded(b"x", 0, true, 120))]),
        1
    );
    assert_eq!(bad_requests(port), Some(1), "an l3_len past the frame");
}

/// TCP segmentation offload of a started `port` (configured with `TCP_TSO`) against the
/// kernel's TCP, over IPv4 or IPv6 (the family of `rdk_ip`): rdk opens a connection from
/// `rdk_ip` to a Python server in `far` (SYN, the server's SYN-ACK received through `port`,
/// ACK), then sends 40 000 bytes as one request (`tso_segsz` 1000, in a chain of 2000-byte
/// segments, the IP length (and IPv4 checksum) zero, TCP field the pseudo-header sum without
/// the length, as DPDK's convention has it). The router
/// forwards it out of a veth without TSO, so the kernel cuts it into segments; the server
/// must read all of it, byte-exact, in at least 40 frames on its link. Negative controls: a
/// request with a wrong seed shows up as one `Tcp InCsumErrors` per segment in `far`, and a
/// `tso_segsz` too large for the MTU is dropped and counted (`tx_bad_offload_request`).
pub fn tcp_segmentation_is_done_by_the_kernel<D: Driver>(
    port: &mut Port<D>,
    pool: &PktMbufPool,
    far: &FarSide,
    rdk_mac: [u8; 6],
    next_hop: [u8; 6],
    rdk_ip: std::net::IpAddr,
) {
    use crate::frames::{chain_of, tcp_frame, tcp_of, TcpHdr, PY_TCP_RECV};
    use rdk_core::mbuf::OlFlags;
    use rdk_core::net::checksum::{fold, sum};
    use std::net::IpAddr;
    const ACK: u8 = 0x10;
    let dst: IpAddr = match rdk_ip {
        IpAddr::V4(_) => std::net::Ipv4Addr::from(far.ip()).into(),
        IpAddr::V6(_) => far.ip6().into(),
    };
    let (sport, dport, isn) = (40001u16, 9998u16, 0x1000_0000u32);
    let total = 40_000usize;
    let dst_s = dst.to_string();
    let server = Peer::python(
        &far.ns,
        PY_TCP_RECV,
        &[&dst_s, "9998", &total.to_string(), "3"],
    );
    let send = |port: &mut Port<D>, m: Mbuf| {
        let q = port.queues().unwrap();
        assert_eq!(q.tx[0].tx_burst(&mut [Some(m)]), 1);
    };
    let plain = |seq: u32, ack: u32, flags: u8| {
        let tcp = TcpHdr {
            sport,
            dport,
            seq,
            ack,
            flags,
        };
        mbuf_of(pool, &tcp_frame(rdk_mac, next_hop, rdk_ip, dst, &tcp, &[]))
    };
    // The request: a frame as an application using TSO builds it.
    let request = |seq: u32, ack: u32, payload: &[u8], seed_xor: u16, mss: u16| {
        let tcp = TcpHdr {
            sport,
            dport,
            seq,
            ack,
            flags: ACK | 0x08,
        };
        let mut f = tcp_frame(rdk_mac, next_hop, rdk_ip, dst, &tcp, payload);
        let octets = |a: IpAddr| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        // The pseudo-header sum without the length.
        let seed = fold(sum(&octets(rdk_ip), sum(&octets(dst), 6))) ^ seed_xor;
        let (l3, ip_flags) = if rdk_ip.is_ipv4() {
            f[16..18].fill(0);
            f[24..26].fill(0);
            (20, OlFlags::TX_IPV4 | OlFlags::TX_IP_CKSUM)
        } else {
            f[18..20].fill(0);
            (40, OlFlags::TX_IPV6)
        };
        let field = 14 + l3 as usize + 16;
        f[field..field + 2].copy_from_slice(&seed.to_be_bytes());
        let mut m = chain_of(pool, &f, 2000);
        {
            let mut meta = m.meta_mut().unwrap();
            meta.set_ol_flags(OlFlags::TX_TCP_SEG | OlFlags::TX_TCP_CKSUM | ip_flags);
            let mut t = meta.tx_offload();
            t.set_l2_len(14).unwrap();
            t.set_l3_len(l3).unwrap();
            t.set_l4_len(20).unwrap();
            t.set_tso_segsz(mss);
            meta.set_tx_offload(t);
        }
        m
    };
    send(port, plain(isn, 0, 0x02));
    // Other frames may come first (IPv6 neighbour discovery, multicast reports).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let synack = loop {
        let got = crate::frames::receive(port, 1, Duration::from_millis(200));
        let hit = got.iter().find_map(|m| {
            tcp_of(&flatten(m), sport).filter(|t| t.0 == dport && t.3 & 0x12 == 0x12)
        });
        if let Some(h) = hit {
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server's SYN-ACK ({dst})"
        );
    };
    assert_eq!(synack.2, isn + 1, "it acknowledges the SYN");
    let ack = synack.1.wrapping_add(1);
    send(port, plain(isn + 1, ack, ACK));
    let payload: Vec<u8> = (0..total).map(|i| (i * 31 / 7) as u8).collect();
    let csum_errors = || {
        far.ns
            .snmp("/proc/net/snmp", "Tcp", "InCsumErrors")
            .unwrap()
    };
    let frames_in = || far.ns.counter(far.iface(), "rx_packets").unwrap();
    let bad_requests = |port: &Port<D>| {
        port.xstats()
            .iter()
            .find(|x| x.name == "tx_bad_offload_request")
            .map(|x| x.value)
    };
    let (errors0, frames0) = (csum_errors(), frames_in());
    send(port, request(isn + 1, ack, &payload, 0, 1000));
    let got = server.finish().concat();
    assert!(
        got == hex(&payload),
        "the server reads every byte, in order: {} of {total} bytes, {}",
        got.len() / 2,
        if hex(&payload).starts_with(&got) {
            "a prefix"
        } else {
            "not a prefix"
        }
    );
    let frames = frames_in() - frames0;
    assert!(
        frames >= 40,
        "cut into segments of 1000: {frames} frames on the far link"
    );
    assert_eq!(csum_errors(), errors0, "every segment's checksum verifies");
    assert_eq!(bad_requests(port), Some(0));
    // Negative controls: a wrong seed fails every segment's check; a segment size past the
    // MTU is refused before it is sent.
    let seq = isn + 1 + total as u32;
    send(port, request(seq, ack, &payload[..5000], 0x0101, 1000));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while csum_errors() < errors0 + 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        csum_errors() - errors0,
        5,
        "the wrong seed fails all 5 segments"
    );
    send(port, request(seq, ack, &payload[..5000], 0, 1461));
    assert_eq!(bad_requests(port), Some(1), "a tso_segsz past the MTU");
}
