//! `net_tap` against the real kernel, inside network namespaces the tests create: frames both
//! ways byte-exact (raw capture and the kernel's UDP sockets), several queues, MTU-sized frames
//! as chains, link events, an interface deleted under the port, and errors.

use rdk_core::ethdev::{
    EthError, Port, PortConfig, RxQueue, RxQueueConfig, TxQueue, TxQueueConfig,
};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_os_linux::LinuxOs;
use rdk_pmd_tap::TapDriver;
use rdk_tests::dpdk::need_testpmd;
use rdk_tests::frames::{
    self, assert_each_flow_once, chain_of, flatten, ipv4_udp_frame, mbuf_of, udp_payload, Peer,
    PY_UDP_RECV, PY_UDP_SEND,
};
use rdk_tests::lab::{
    hex, iface_mac, link_flap, raw_test_frame, tcp_segmentation_is_done_by_the_kernel,
    testpmd_exchange, tx_checksum_offloads_are_completed, FarSide, PeerReceivers,
};
use rdk_tests::netns::{need_netns, unique_name, without_capabilities, Netns, Veth};
use rdk_tests::port::{
    assert_tx_drop_reason_follows_errors, set_up, sleepy_receive, try_started, try_started_with,
    xstat,
};
use std::time::Duration;

const RDK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const RDK_IP: [u8; 4] = [10, 77, 0, 2];
const KERNEL_IP: [u8; 4] = [10, 77, 0, 1];

fn pool(n: usize) -> PktMbufPool {
    PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("tap", n)).unwrap()
}

/// A broadcast IPv4/UDP frame from rdk (port 5555) to the kernel side's port 7777 carrying
/// `payload`, with correct checksums.
fn to_kernel(payload: &[u8]) -> Vec<u8> {
    ipv4_udp_frame(RDK_MAC, [0xff; 6], RDK_IP, KERNEL_IP, 5555, 7777, payload)
}

/// A TAP port created inside `ns`, queues set up, not started.
fn tap_port_raw(
    ns: &Netns,
    pool: &PktMbufPool,
    queues: u16,
    mtu: Option<u16>,
) -> (Port<TapDriver>, String) {
    let iface = unique_name("tap");
    let port = {
        let _inside = ns.enter().unwrap();
        let mut p = Port::new(0, TapDriver::new(&iface));
        let mut cfg = PortConfig::queues(queues, queues);
        cfg.mtu = mtu;
        set_up(&mut p, pool, 512, &cfg).unwrap();
        p
    };
    assert!(port.driver().created(), "rdk created {iface}");
    (port, iface)
}

/// A started TAP port created inside `ns`, with the kernel side addressed and a static
/// neighbour entry for rdk's address.
fn tap_port(
    ns: &Netns,
    pool: &PktMbufPool,
    queues: u16,
    mtu: Option<u16>,
) -> (Port<TapDriver>, String) {
    let (mut port, iface) = tap_port_raw(ns, pool, queues, mtu);
    port.start().unwrap();
    address_kernel_side(ns, &iface);
    (port, iface)
}

/// A started TAP port configured with `cfg`, created inside `ns`, the kernel side addressed.
fn tap_port_with(ns: &Netns, pool: &PktMbufPool, cfg: &PortConfig) -> (Port<TapDriver>, String) {
    let iface = unique_name("tap");
    let port = {
        let _inside = ns.enter().unwrap();
        try_started_with(TapDriver::new(&iface), pool, 512, cfg).unwrap()
    };
    address_kernel_side(ns, &iface);
    (port, iface)
}

/// An offload test's rig: a TAP port started with `offloads` in namespace `ns` (the router)
/// and a [`FarSide`] behind it.
struct Rig {
    ns: Netns,
    pool: PktMbufPool,
    port: Port<TapDriver>,
    iface: String,
    far: FarSide,
    /// The TAP's MAC: rdk's next hop.
    hop: [u8; 6],
}

impl Rig {
    /// The rig for `test` (`None`, said why, where namespaces cannot be made).
    fn new(
        test: &str,
        tag: &str,
        offloads: rdk_core::ethdev::TxOffload,
        far_net: [u8; 3],
    ) -> Option<Rig> {
        if !need_netns(test) {
            return None;
        }
        let ns = Netns::new(tag).unwrap();
        let pool = pool(1024);
        let mut cfg = PortConfig::queues(1, 1);
        cfg.tx_offloads = offloads;
        let (port, iface) = tap_port_with(&ns, &pool, &cfg);
        let far = FarSide::new(&ns, &format!("{tag}f"), far_net).unwrap();
        let hop = iface_mac(&ns, &iface);
        Some(Rig {
            ns,
            pool,
            port,
            iface,
            far,
            hop,
        })
    }

    /// Stops and closes the port, removes the far side; every mbuf must be back.
    fn finish(mut self) {
        self.port.stop().unwrap();
        self.port.close().unwrap();
        drop(self.far);
        assert_eq!(self.pool.available(), self.pool.size(), "every mbuf back");
    }
}

/// The kernel's side of the TAP: 10.77.0.1/24, rdk's 10.77.0.2 a permanent neighbour.
fn address_kernel_side(ns: &Netns, iface: &str) {
    ns.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", iface])
        .unwrap();
    ns.exec(&[
        "ip",
        "neigh",
        "replace",
        "10.77.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        iface,
        "nud",
        "permanent",
    ])
    .unwrap();
}

/// A datagram of `payload` from a UDP socket in `ns` (the TAP's kernel side) to rdk's
/// address, port 9999 (from `sport` if given).
fn kernel_sends(ns: &Netns, payload: &[u8], sport: Option<u16>) {
    let (hex, sport) = (hex(payload), sport.map(|p| p.to_string()));
    let mut cmd = vec!["python3", "-c", PY_UDP_SEND, "10.77.0.2", "9999", &hex];
    cmd.extend(sport.as_deref());
    ns.exec(&cmd).unwrap();
}

/// Polls until `want` IPv4/UDP frames to `dport` (whatever their checksums) arrived, then
/// 200 ms more for any extra, or 5 s in all; every frame received, in order.
fn receive_udp(port: &mut Port<TapDriver>, dport: u16, want: usize) -> Vec<Mbuf> {
    let to_port = |m: &Mbuf| {
        let f = flatten(m);
        f.len() >= 38 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == dport.to_be_bytes()
    };
    let t = std::time::Instant::now();
    let mut got: Vec<Mbuf> = Vec::new();
    let mut linger = None;
    while t.elapsed() < Duration::from_secs(5)
        && linger.is_none_or(|l: std::time::Instant| l.elapsed() < Duration::from_millis(200))
    {
        got.extend(frames::receive(port, 1, Duration::from_millis(20)));
        if linger.is_none() && got.iter().filter(|m| to_port(m)).count() >= want {
            linger = Some(std::time::Instant::now());
        }
    }
    got
}

/// Kernel → rdk: UDP datagrams from the kernel's socket arrive byte-exact, IPv6 and other
/// noise aside.
#[test]
fn kernel_udp_reaches_rdk_byte_exact() {
    if !need_netns("kernel_udp_reaches_rdk_byte_exact") {
        return;
    }
    let ns = Netns::new("tapk").unwrap();
    let pool = pool(1024);
    let (mut port, _iface) = tap_port(&ns, &pool, 1, None);
    let payloads: Vec<Vec<u8>> = (0..5u8)
        .map(|i| (0..100 + i as usize * 37).map(|b| b as u8 ^ i).collect())
        .collect();
    for p in &payloads {
        kernel_sends(&ns, p, None);
    }
    let frames = receive_udp(&mut port, 9999, payloads.len());
    let udp: Vec<Vec<u8>> = frames
        .iter()
        .filter_map(|m| udp_payload(&flatten(m), 9999))
        .collect();
    assert_eq!(udp, payloads, "every datagram, in order, byte-exact");
    let st = port.stats();
    assert_eq!(st.ipackets as usize, frames.len());
    drop(frames);
    port.stop().unwrap();
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

/// rdk → kernel: raw frames arrive byte-exact in a packet capture on the interface, a UDP
/// datagram reaches the kernel's socket, and the interface counters agree.
#[test]
fn rdk_frames_reach_the_kernel_byte_exact() {
    if !need_netns("rdk_frames_reach_the_kernel_byte_exact") {
        return;
    }
    let ns = Netns::new("tapt").unwrap();
    let pool = pool(1024);
    let (mut port, iface) = tap_port(&ns, &pool, 1, None);
    // A capture of ethertype 0x88b5 and a UDP socket, both started before rdk sends.
    let receivers = PeerReceivers::start(&ns, &iface, "10.77.0.1", 3);
    let sent: Vec<Vec<u8>> = (0..3u8).map(|i| raw_test_frame(RDK_MAC, i)).collect();
    let mut burst: Vec<Option<Mbuf>> = sent.iter().map(|f| Some(mbuf_of(&pool, f))).collect();
    burst.push(Some(mbuf_of(&pool, &to_kernel(b"hello from rdk over tap"))));
    let q = port.queues().unwrap();
    assert_eq!(q.tx[0].tx_burst(&mut burst), 4);
    assert!(receivers.finish(&sent, "hello from rdk over tap") >= 4);
    assert_eq!(port.stats().opackets, 4);
    port.stop().unwrap();
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// Several queue pairs: the kernel spreads flows over them; every datagram arrives once.
#[test]
fn multi_queue_receives_every_flow_once() {
    if !need_netns("multi_queue_receives_every_flow_once") {
        return;
    }
    let ns = Netns::new("tapm").unwrap();
    let pool = pool(2048);
    let (mut port, _iface) = tap_port(&ns, &pool, 4, None);
    for sport in 20000..20040u16 {
        kernel_sends(&ns, &sport.to_be_bytes(), Some(sport));
    }
    let frames = receive_udp(&mut port, 9999, 40);
    assert_each_flow_once(&frames, 9999, 20000..20040);
    let st = port.stats();
    let busy = st.rx_queues.iter().filter(|q| q.packets > 0).count();
    assert!(busy >= 2, "flows spread over queues: {:?}", st.rx_queues);
    drop(frames);
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// An MTU of 9000 with 2 KiB buffers: 8 KB datagrams both ways as chains, byte-exact.
#[test]
fn jumbo_frames_as_chains_both_ways() {
    if !need_netns("jumbo_frames_as_chains_both_ways") {
        return;
    }
    let ns = Netns::new("tapj").unwrap();
    let pool = pool(2048);
    let (mut port, _iface) = tap_port(&ns, &pool, 1, Some(9000));
    let big: Vec<u8> = (0..8000u32).map(|i| (i * 31 % 251) as u8).collect();
    kernel_sends(&ns, &big, None);
    let frames = frames::receive(&mut port, 1, Duration::from_secs(5));
    let m = frames
        .iter()
        .find(|m| udp_payload(&flatten(m), 9999).is_some())
        .expect("jumbo datagram");
    assert!(m.nb_segs() >= 4, "a chain of {} segments", m.nb_segs());
    assert_eq!(udp_payload(&flatten(m), 9999).unwrap(), big);
    drop(frames);
    // rdk → kernel: the same size, sent as a chain of 2 KiB segments.
    let udp = Peer::python(&ns, PY_UDP_RECV, &["10.77.0.1", "7777", "5", "hex"]);
    let f = to_kernel(&big);
    let mut burst = [Some(chain_of(&pool, &f, 2000))];
    assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    assert_eq!(udp.finish(), vec![hex(&big)]);
    // Too big for the MTU: dropped and counted, not sent.
    let huge = to_kernel(&vec![0u8; 9100]);
    let mut burst = [Some(chain_of(&pool, &huge, 2000))];
    assert_eq!(
        port.queues().unwrap().tx[0].tx_burst(&mut burst),
        1,
        "taken (and dropped)"
    );
    let x = port.xstats();
    assert!(
        x.iter()
            .any(|s| s.name == "tx_frames_too_big" && s.value == 1),
        "{x:?}"
    );
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// Link down/up of the interface reaches link callbacks; deleting the interface makes the
/// port report it and still stop and close cleanly.
#[test]
fn link_events_and_a_vanishing_interface() {
    if !need_netns("link_events_and_a_vanishing_interface") {
        return;
    }
    let ns = Netns::new("tapl").unwrap();
    let pool = pool(512);
    let (mut port, iface) = tap_port(&ns, &pool, 1, None);
    link_flap(&mut port, &ns, &iface);
    // Deleted under the port.
    ns.exec(&["ip", "link", "del", &iface]).unwrap();
    let mut burst: [Option<Mbuf>; 8] = Default::default();
    let n = port.queues().unwrap().rx[0].rx_burst(&mut burst);
    assert_eq!(n, 0);
    assert!(port.driver().is_gone(), "the burst saw the interface go");
    assert!(!port.link_update().up);
    assert!(port
        .xstats()
        .iter()
        .any(|s| s.name == "interface_gone" && s.value == 1));
    port.stop().unwrap();
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// Attaching to something that is not a multi-queue TAP is refused with what to do.
#[test]
fn attaching_to_a_veth_is_refused() {
    if !need_netns("attaching_to_a_veth_is_refused") {
        return;
    }
    let ns = Netns::new("tape").unwrap();
    let veth = Veth::new(Some(&ns), None).unwrap();
    let _inside = ns.enter().unwrap();
    let mut p = Port::new(0, TapDriver::new(&veth.a));
    let e = p.configure(&PortConfig::queues(1, 1)).unwrap_err();
    assert!(matches!(e, EthError::Device { .. }), "{e}");
    assert!(e.to_string().contains("not a multi-queue TAP"), "{e}");
}

/// rdk <-> DPDK: dpdk-testpmd's net_af_packet on the same TAP interface, first as generator
/// (tx_first bursts: rdk receives exactly what it sent), then as receiver (rxonly: it counts
/// exactly what rdk sent). IPv6 is off on the interface so the kernel adds no frames.
#[test]
fn dpdk_testpmd_generates_and_receives_exact_counts() {
    if !need_netns("dpdk_testpmd_generates_and_receives_exact_counts")
        || !need_testpmd("dpdk_testpmd_generates_and_receives_exact_counts")
    {
        return;
    }
    let ns = Netns::new("tapd").unwrap();
    let pool = pool(2048);
    let (mut port, iface) = tap_port_raw(&ns, &pool, 1, None);
    ns.exec(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{iface}.disable_ipv6=1"),
    ])
    .unwrap();
    port.start().unwrap();
    testpmd_exchange(&ns, &iface, &mut port, &pool, |i| to_kernel(&[i; 18]));
    assert_eq!(port.stats().opackets, 500);
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// RX-queue interrupts on a real queue: a receiver sleeping in `HybridRx` on the TAP fd wakes
/// when the kernel sends, and gets every datagram.
#[test]
fn hybrid_receiver_sleeps_on_the_tap_fd_and_wakes_on_traffic() {
    if !need_netns("hybrid_receiver_sleeps_on_the_tap_fd_and_wakes_on_traffic") {
        return;
    }
    let ns = Netns::new("tapi").unwrap();
    let pool = pool(1024);
    let (port, _iface) = tap_port(&ns, &pool, 1, None);
    // The kernel's own IPv6 frames arrive too; only the datagrams count.
    let mut port = sleepy_receive(
        port,
        10,
        |m| udp_payload(&flatten(m), 9999),
        |i| kernel_sends(&ns, &[i], None),
    );
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// Capabilities are per thread on Linux: a thread without CAP_NET_ADMIN cannot create the
/// TAP, the error says what to grant, and no interface is left behind.
#[test]
fn without_privileges_the_error_says_what_to_grant() {
    if !need_netns("tap without_privileges_the_error_says_what_to_grant") {
        return;
    }
    let ns = Netns::new("tapc").unwrap();
    let pool = pool(256);
    let iface = unique_name("tap");
    let drv = TapDriver::new(&iface);
    let e = without_capabilities(&ns, || try_started(drv, &pool, 512).err());
    let e = e.expect("started without CAP_NET_ADMIN").to_string();
    assert!(e.contains("CAP_NET_ADMIN"), "{e}");
    assert!(
        ns.exec(&["ip", "link", "show", &iface]).is_err(),
        "no {iface} left behind"
    );
    assert_eq!(pool.available(), pool.size());
}

/// TX checksum offloads, completed by the kernel (see
/// [`tx_checksum_offloads_are_completed`]): the TAP's namespace is the router; the kernel's
/// reply then comes back to rdk through the same header-carrying queues.
#[test]
fn tx_checksum_offloads_are_completed_by_the_kernel() {
    use rdk_core::ethdev::TxOffload as O;
    let offloads = O::IPV4_CKSUM | O::UDP_CKSUM | O::TCP_CKSUM;
    let Some(mut rig) = Rig::new("tx_checksum_offloads", "tapo", offloads, [10, 91, 0]) else {
        return;
    };
    let (port, pool, ns, far, hop) = (&mut rig.port, &rig.pool, &rig.ns, &rig.far, rig.hop);
    tx_checksum_offloads_are_completed(port, pool, ns, far, RDK_MAC, hop, RDK_IP);
    far.ns
        .exec(&["python3", "-c", PY_UDP_SEND, "10.77.0.2", "9999", "c0ffee"])
        .unwrap();
    let frames = receive_udp(port, 9999, 1);
    let back: Vec<Vec<u8>> = frames
        .iter()
        .filter_map(|m| udp_payload(&flatten(m), 9999))
        .collect();
    assert_eq!(
        back,
        vec![vec![0xc0, 0xff, 0xee]],
        "the kernel's datagram, behind a header"
    );
    drop(frames);
    rig.finish();
}

/// TCP segmentation offload, done by the kernel (see
/// [`tcp_segmentation_is_done_by_the_kernel`]), over IPv4 and over IPv6: the TAP's
/// namespace is the router.
#[test]
fn tcp_segmentation_is_done_by_the_kernel_on_the_way_out() {
    use rdk_core::ethdev::TxOffload as O;
    let offloads = O::IPV4_CKSUM | O::TCP_CKSUM | O::TCP_TSO;
    let rdk6 = std::net::Ipv6Addr::new(0xfd00, 77, 0, 0, 0, 0, 0, 2);
    for (tag, rdk) in [("taps", RDK_IP.into()), ("tap6", rdk6.into())] {
        let Some(mut rig) = Rig::new("tcp_segmentation", tag, offloads, [10, 92, 0]) else {
            return;
        };
        // The kernel side's IPv6 address on the TAP, rdk's a permanent neighbour.
        let iface = rig.iface.as_str();
        rig.ns
            .exec(&[
                "ip",
                "-6",
                "addr",
                "add",
                "fd00:4d::1/64",
                "dev",
                iface,
                "nodad",
            ])
            .unwrap();
        let mac = RDK_MAC.map(|b| format!("{b:02x}")).join(":");
        let rdk6_s = rdk6.to_string();
        rig.ns
            .exec(&[
                "ip",
                "-6",
                "neigh",
                "replace",
                &rdk6_s,
                "lladdr",
                &mac,
                "dev",
                iface,
                "nud",
                "permanent",
            ])
            .unwrap();
        let (port, pool, far, hop) = (&mut rig.port, &rig.pool, &rig.far, rig.hop);
        tcp_segmentation_is_done_by_the_kernel(port, pool, far, RDK_MAC, hop, rdk);
        rig.finish();
    }
}

/// Checksum offload fixes the TAP's header mode when its queues open: asking for it only in
/// a later configure, or in a queue's setup, is a typed error that says what to do.
#[test]
fn checksum_offload_must_be_asked_for_at_the_first_configure() {
    use rdk_core::ethdev::TxOffload;
    if !need_netns("checksum_offload_must_be_asked_for_at_the_first_configure") {
        return;
    }
    let ns = Netns::new("tapm").unwrap();
    let pool = pool(256);
    let (mut port, _iface) = tap_port_raw(&ns, &pool, 1, None);
    let mut cfg = PortConfig::queues(1, 1);
    cfg.tx_offloads = TxOffload::UDP_CKSUM;
    let e = port.configure(&cfg).unwrap_err().to_string();
    assert!(e.contains("first configure"), "{e}");
    // A configure the driver refused leaves the port to be configured again (as DPDK's
    // rte_eth_dev_configure does); without the offload it takes.
    {
        let _inside = ns.enter().unwrap();
        port.configure(&PortConfig::queues(1, 1)).unwrap();
    }
    let q = TxQueueConfig {
        offloads: TxOffload::TCP_CKSUM,
        ..Default::default()
    };
    let e = port.tx_queue_setup(0, 512, &q).unwrap_err().to_string();
    assert!(e.contains("first configure"), "{e}");
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// `python3 -c PY_RAW_SEND IFACE HEX...`: sends each hex frame out of IFACE through an
/// `AF_PACKET` socket (on a TAP: to the program reading its queues).
const PY_RAW_SEND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
"#;

/// RX checksum offloads, checked in software as DPDK's tap does: the kernel's own UDP
/// datagram arrives with both checksums GOOD; frames injected on the interface arrive with a
/// bad UDP checksum as L4 BAD, a bad IPv4 checksum as IP BAD, no UDP checksum as L4
/// UNKNOWN.
#[test]
fn rx_checksum_offloads_report_what_the_frames_hold() {
    use rdk_core::ethdev::RxOffload;
    use rdk_core::mbuf::RxCksum::{self, Bad, Good, Unknown};
    if !need_netns("rx_checksum_offloads_report_what_the_frames_hold") {
        return;
    }
    let ns = Netns::new("tapr").unwrap();
    let pool = pool(1024);
    let mut cfg = PortConfig::queues(1, 1);
    cfg.rx_offloads = RxOffload::IPV4_CKSUM | RxOffload::UDP_CKSUM | RxOffload::TCP_CKSUM;
    // MTU 9000 over 2 KiB buffers: the big frames below arrive as chains.
    cfg.mtu = Some(9000);
    let (mut port, iface) = tap_port_with(&ns, &pool, &cfg);
    let big: Vec<u8> = (0..4001u32).map(|i| (i * 7 + 1) as u8).collect();
    kernel_sends(&ns, &[0x0a, 0x0b, 0x0c], None);
    kernel_sends(&ns, &big, None);
    // The checksum states of the UDP frames to `port` among `frames`, in order, and whether
    // each came as a chain.
    let states = |frames: &[Mbuf], port: u16| -> Vec<(RxCksum, RxCksum, bool)> {
        frames
            .iter()
            .filter(|m| {
                let f = flatten(m);
                f.len() >= 42
                    && f[12..14] == [8, 0]
                    && f[23] == 17
                    && f[36..38] == port.to_be_bytes()
            })
            .map(|m| {
                let f = m.ol_flags();
                (f.rx_ip_cksum(), f.rx_l4_cksum(), m.nb_segs() > 1)
            })
            .collect()
    };
    let frames = receive_udp(&mut port, 9999, 2);
    assert_eq!(
        states(&frames, 9999),
        vec![(Good, Good, false), (Good, Good, true)],
        "the kernel's datagrams, the big one chained"
    );
    drop(frames);
    let mac = iface_mac(&ns, &iface);
    // The kernel side's datagram to rdk's port 7777, injected on the TAP.
    let to_rdk =
        |payload: &[u8]| ipv4_udp_frame(mac, RDK_MAC, [10, 77, 0, 1], RDK_IP, 7, 7777, payload);
    let good = to_rdk(b"abc");
    let mut bad_udp = good.clone();
    bad_udp[42] ^= 0x20;
    let mut bad_ip = good.clone();
    bad_ip[22] ^= 1;
    let mut no_udp = good.clone();
    no_udp[40..42].fill(0);
    let big_good = to_rdk(&big);
    let mut big_bad = big_good.clone();
    *big_bad.last_mut().unwrap() ^= 0x04;
    ns.exec(&[
        "python3",
        "-c",
        PY_RAW_SEND,
        &iface,
        &hex(&good),
        &hex(&bad_udp),
        &hex(&bad_ip),
        &hex(&no_udp),
        &hex(&big_good),
        &hex(&big_bad),
    ])
    .unwrap();
    let frames = receive_udp(&mut port, 7777, 6);
    assert_eq!(
        states(&frames, 7777),
        vec![
            (Good, Good, false),
            (Good, Bad, false),
            (Bad, Unknown, false),
            (Good, Unknown, false),
            (Good, Good, true),
            (Good, Bad, true)
        ],
        "good, bad UDP, bad IPv4, no UDP checksum; a chain good, then with its last byte changed"
    );
    drop(frames);
    port.stop().unwrap();
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
}

/// An MTU changed on a started port reaches its queues, as DPDK's tap reads the port's MTU at
/// every burst: raised, frames up to the new MTU go out and come in (as chains); lowered,
/// longer frames are refused and counted.
#[test]
fn set_mtu_on_a_started_port_reaches_its_queues() {
    if !need_netns("set_mtu_on_a_started_port_reaches_its_queues") {
        return;
    }
    let ns = Netns::new("tapm").unwrap();
    let pool = pool(2048);
    let (mut port, _iface) = tap_port(&ns, &pool, 1, None);
    port.set_mtu(9000).unwrap();
    let too_big = |p: &Port<TapDriver>| xstat(p, "tx_frames_too_big");
    // rdk → kernel: 5000 bytes, past the old MTU, within the new one.
    let big: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
    let udp = Peer::python(&ns, PY_UDP_RECV, &["10.77.0.1", "7777", "5", "hex"]);
    let f = to_kernel(&big);
    let mut burst = [Some(chain_of(&pool, &f, 2000))];
    assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    assert_eq!(too_big(&port), Some(0), "within the new MTU: sent");
    assert_eq!(udp.finish(), vec![hex(&big)]);
    // kernel → rdk: the same size arrives, as a chain.
    kernel_sends(&ns, &big, None);
    let frames = receive_udp(&mut port, 9999, 1);
    assert!(
        frames
            .iter()
            .any(|m| udp_payload(&flatten(m), 9999).as_deref() == Some(&big[..])),
        "a 5000-byte datagram received after the MTU went to 9000"
    );
    drop(frames);
    // Lowered: a frame longer than the new MTU is refused and counted.
    port.set_mtu(1000).unwrap();
    let f = to_kernel(&[7; 1400]);
    let mut burst = [Some(chain_of(&pool, &f, 2000))];
    assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    assert_eq!(too_big(&port), Some(1), "past the new MTU: refused");
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// A configure starts the port's counters afresh: the drop reasons that break `oerrors`
/// down do too, including those of queues the new configuration no longer has.
#[test]
fn reconfigure_starts_the_drop_reasons_afresh() {
    if !need_netns("reconfigure_starts_the_drop_reasons_afresh") {
        return;
    }
    let ns = Netns::new("tapr").unwrap();
    let pool = pool(512);
    let (mut port, _iface) = tap_port(&ns, &pool, 2, None);
    let f = to_kernel(&[7; 1600]);
    let mut burst = [Some(chain_of(&pool, &f, 2000))];
    assert_eq!(port.queues().unwrap().tx[1].tx_burst(&mut burst), 1);
    assert_eq!(xstat(&port, "tx_errors"), Some(1));
    assert_eq!(xstat(&port, "tx_frames_too_big"), Some(1));
    port.stop().unwrap();
    {
        let _inside = ns.enter().unwrap();
        set_up(&mut port, &pool, 512, &PortConfig::queues(1, 1)).unwrap();
    }
    assert_eq!(xstat(&port, "tx_errors"), Some(0));
    assert_eq!(
        xstat(&port, "tx_frames_too_big"),
        Some(0),
        "the breakdown of tx_errors follows it"
    );
    // Buffers of 128 bytes behind a 128-byte headroom take a 1518-byte frame as a chain of
    // 12: a usable pool (the data room does not include the headroom).
    let mut cfg = PktMbufPoolConfig::new("small", 256);
    cfg.data_room = 128;
    let small = PktMbufPool::create(&LinuxOs::plain(), &cfg).unwrap();
    port.rx_queue_setup(0, 512, &small, &RxQueueConfig::default())
        .expect("a pool whose data room equals its headroom");
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
    assert_eq!(small.available(), small.size());
}

/// A queue set up again keeps counting where it was, the drop reasons that break its errors
/// down too; a statistics reset zeroes both.
#[test]
fn drop_reasons_follow_the_counters_they_break_down() {
    if !need_netns("drop_reasons_follow_the_counters_they_break_down") {
        return;
    }
    let ns = Netns::new("tapk").unwrap();
    let pool = pool(512);
    let (mut port, _iface) = tap_port(&ns, &pool, 1, None);
    let f = to_kernel(&[7; 1600]);
    assert_tx_drop_reason_follows_errors(&mut port, &pool, 512, "tx_frames_too_big", |port| {
        let mut burst = [Some(chain_of(&pool, &f, 2000))];
        assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    });
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// Polling a port whose interface was deleted under it receives nothing and loses nothing:
/// no frame is counted as a receive error.
#[test]
fn polling_a_deleted_interface_counts_no_receive_errors() {
    if !need_netns("polling_a_deleted_interface_counts_no_receive_errors") {
        return;
    }
    let ns = Netns::new("tapd").unwrap();
    let pool = pool(512);
    let (mut port, iface) = tap_port(&ns, &pool, 1, None);
    ns.exec(&["ip", "link", "del", &iface]).unwrap();
    let mut burst: [Option<Mbuf>; 8] = Default::default();
    for _ in 0..3 {
        assert_eq!(port.queues().unwrap().rx[0].rx_burst(&mut burst), 0);
    }
    assert!(port.driver().is_gone());
    assert_eq!(port.stats().ierrors, 0, "three empty polls, no frame lost");
    port.stop().unwrap();
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// A multi-queue TAP keeps the net-header mode of its first queue for every queue attached
/// later: a second port asking for the other mode is refused, not handed queues whose frames
/// carry (or lack) a header it does not expect.
#[test]
fn a_second_port_on_an_interface_must_use_its_header_mode() {
    if !need_netns("a_second_port_on_an_interface_must_use_its_header_mode") {
        return;
    }
    let ns = Netns::new("tapv").unwrap();
    let iface = unique_name("tap");
    let _inside = ns.enter().unwrap();
    let mut cfg = PortConfig::queues(1, 1);
    cfg.tx_offloads = rdk_core::ethdev::TxOffload::TCP_CKSUM;
    let mut a = Port::new(0, TapDriver::new(&iface));
    a.configure(&cfg).unwrap();
    let mut b = Port::new(1, TapDriver::new(&iface));
    let e = b
        .configure(&PortConfig::queues(1, 1))
        .expect_err("a queue without the header on an interface whose queues have it");
    assert!(e.to_string().contains("net-header mode"), "{e}");
    let mut c = Port::new(2, TapDriver::new(&iface));
    c.configure(&cfg).expect("the same mode attaches");
    drop((b, c));
    a.close().unwrap();
}
