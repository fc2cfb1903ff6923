//! `net_af_packet` against the real kernel over a veth pair between two namespaces the tests
//! create: rdk owns end A, the kernel (or dpdk-testpmd) end B.

use rdk_core::ethdev::{Port, PortConfig, RxQueueConfig, TxOffload, TxQueue};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_os_linux::LinuxOs;
use rdk_pmd_af_packet::AfPacketDriver;
use rdk_tests::dpdk::need_testpmd;
use rdk_tests::frames::{
    assert_each_flow_once, chain_of, mbuf_of, receive, udp_payload_of, Peer, PY_UDP_RECV,
    PY_UDP_RECV_ALL,
};
use rdk_tests::lab::{
    hex, link_flap_then_delete, raw_test_frame, testpmd_exchange, OffloadTest, VethLab,
};
use rdk_tests::netns::{need_netns, without_capabilities};
use rdk_tests::port::{
    assert_tx_drop_reason_follows_errors, set_up, sleepy_receive, try_started, try_started_with,
    xstat,
};
use std::time::Duration;

const RDK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

/// The veth rig (see [`VethLab`]) on 10.78.0.0/24, with this suite's port set-up.
struct Lab(VethLab);

impl std::ops::Deref for Lab {
    type Target = VethLab;
    fn deref(&self) -> &VethLab {
        &self.0
    }
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Lab(VethLab::new(tag, [10, 78, 0], RDK_MAC).unwrap())
    }

    /// A started port on end A with `queues` queue pairs.
    fn port(&self, pool: &PktMbufPool, queues: u16, mtu: Option<u16>) -> Port<AfPacketDriver> {
        let mut cfg = PortConfig::queues(queues, queues);
        cfg.mtu = mtu;
        self.port_with(pool, &cfg, false)
    }

    /// A started port on end A configured with `cfg`, receiving through a TPACKET_V2 ring if
    /// `v2`.
    fn port_with(&self, pool: &PktMbufPool, cfg: &PortConfig, v2: bool) -> Port<AfPacketDriver> {
        let _inside = self.rdk.enter().unwrap();
        let d = AfPacketDriver::new(&self.veth.a, cfg.nb_rxq).with_rx_v2(v2);
        try_started_with(d, pool, 512, cfg).unwrap()
    }

    /// An offload test against the kernel ([`VethLab::offload_test`]) for a port started
    /// with `offloads`, the far side named after `tag` on the /24 `far_net`; every mbuf must
    /// be back after close.
    fn run_offload_test(
        &self,
        test: OffloadTest,
        offloads: TxOffload,
        tag: &str,
        far_net: [u8; 3],
    ) {
        let pool = pool(1024);
        let mut cfg = PortConfig::queues(1, 1);
        cfg.tx_offloads = offloads;
        let mut port = self.port_with(&pool, &cfg, false);
        self.0.offload_test(test, &mut port, &pool, tag, far_net);
        port.close().unwrap();
        assert_eq!(pool.available(), pool.size());
    }

    fn send_udp(&self, payload_hex: &str, sport: Option<u16>) {
        self.0.send_udp(payload_hex, sport).unwrap();
    }
}

fn pool(n: usize) -> PktMbufPool {
    PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("afp", n)).unwrap()
}

#[test]
fn kernel_udp_reaches_rdk_byte_exact() {
    if !need_netns("afp kernel_udp_reaches_rdk_byte_exact") {
        return;
    }
    let lab = Lab::new("afk");
    let pool = pool(1024);
    let mut port = lab.port(&pool, 1, None);
    let payloads: Vec<Vec<u8>> = (0..5u8)
        .map(|i| (0..64 + 111 * i as usize).map(|b| (b as u8) ^ i).collect())
        .collect();
    let frames = lab.kernel_udp_arrives_in_order(&mut port, &payloads);
    assert_eq!(port.stats().ipackets, 5, "nothing else on the wire");
    drop(frames);
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

#[test]
fn rdk_frames_reach_the_kernel_byte_exact() {
    if !need_netns("afp rdk_frames_reach_the_kernel_byte_exact") {
        return;
    }
    let lab = Lab::new("aft");
    let pool = pool(1024);
    let mut port = lab.port(&pool, 1, None);
    let receivers = lab.peer_receivers(3);
    let mut sent = Vec::new();
    let mut burst = Vec::new();
    for i in 0..3u8 {
        let f = raw_test_frame(RDK_MAC, i);
        burst.push(Some(mbuf_of(&pool, &f)));
        sent.push(f);
    }
    let f = lab.udp_to_peer(b"af_packet says hi");
    burst.push(Some(mbuf_of(&pool, &f)));
    assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 4);
    assert_eq!(receivers.finish(&sent, "af_packet says hi"), 4);
    port.stop().unwrap();
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// Four queues in a hash fanout group: 40 flows arrive once each, spread over the queues.
#[test]
fn fanout_spreads_flows_over_queues() {
    if !need_netns("afp fanout_spreads_flows_over_queues") {
        return;
    }
    let lab = Lab::new("aff");
    let pool = pool(2048);
    let mut port = lab.port(&pool, 4, None);
    for s in 30000..30040u16 {
        lab.send_udp(&hex(&s.to_be_bytes()), Some(s));
    }
    let frames = receive(&mut port, 40, Duration::from_secs(5));
    assert_each_flow_once(&frames, 9999, 30000..30040);
    let st = port.stats();
    assert!(
        st.rx_queues.iter().filter(|q| q.packets > 0).count() >= 2,
        "{:?}",
        st.rx_queues
    );
    drop(frames);
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// MTU 9000 on both ends: 8000-byte datagrams both ways, chains on the rdk side.
#[test]
fn jumbo_frames_both_ways() {
    if !need_netns("afp jumbo_frames_both_ways") {
        return;
    }
    let lab = Lab::new("afj");
    lab.peer
        .exec(&["ip", "link", "set", &lab.veth.b, "mtu", "9000"])
        .unwrap();
    let pool = pool(2048);
    let mut port = lab.port(&pool, 1, Some(9000));
    let big: Vec<u8> = (0..8000u32).map(|i| (i * 7 % 253) as u8).collect();
    lab.send_udp(&hex(&big), None);
    let frames = receive(&mut port, 1, Duration::from_secs(5));
    assert_eq!(frames.len(), 1);
    assert!(frames[0].nb_segs() >= 4);
    assert_eq!(udp_payload_of(&frames[0], 9999).unwrap(), big);
    drop(frames);
    let udp = Peer::python(&lab.peer, PY_UDP_RECV, &["10.78.0.1", "7777", "5", "hex"]);
    let f = lab.udp_to_peer(&big);
    let mut burst = [Some(chain_of(&pool, &f, 1500))];
    assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    assert_eq!(udp.finish(), [hex(&big)]);
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// A frame longer than the port's MTU allows (plus Ethernet header and VLAN tag) but within a
/// ring slot is refused and counted: the kernel does not check it on this path (with
/// PACKET_VNET_HDR), or skips it unseen (without it, under PACKET_LOSS). After `set_mtu` on
/// the running port the same frame goes, and arrives byte-exact.
#[test]
fn frames_past_the_mtu_are_counted_and_set_mtu_reaches_the_queues() {
    if !need_netns("afp frames_past_the_mtu_are_counted_and_set_mtu_reaches_the_queues") {
        return;
    }
    let lab = Lab::new("afm");
    let pool = pool(256);
    let mut port = lab.port(&pool, 1, Some(1000));
    // Every datagram to 7777 until a second passes without one.
    let udp = Peer::python(&lab.peer, PY_UDP_RECV_ALL, &["10.78.0.1", "7777", "1"]);
    let payload = vec![0x5au8; 1100];
    let f = lab.udp_to_peer(&payload);
    assert_eq!(f.len(), 1142, "1000 + 18 < 1142 <= a 2 KiB slot");
    let mut burst = [Some(mbuf_of(&pool, &f))];
    assert_eq!(
        port.queues().unwrap().tx[0].tx_burst(&mut burst),
        1,
        "taken"
    );
    assert_eq!(xstat(&port, "tx_frames_too_big"), Some(1));
    let st = port.stats();
    assert_eq!((st.opackets, st.oerrors), (0, 1));

    port.set_mtu(1500).unwrap();
    let mut burst = [Some(mbuf_of(&pool, &f))];
    assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    assert_eq!(
        udp.finish(),
        [hex(&payload)],
        "the second send only, byte-exact"
    );
    assert_eq!(xstat(&port, "tx_frames_too_big"), Some(1));
    assert_eq!(port.stats().opackets, 1);
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// A drop reason carries on with the `tx_errors` it breaks down when the queues are set up
/// again, and a statistics reset zeroes both (so do the kernel's ring drops).
#[test]
fn drop_reasons_follow_the_counters_they_break_down() {
    if !need_netns("afp drop_reasons_follow_the_counters_they_break_down") {
        return;
    }
    let lab = Lab::new("afr");
    let pool = pool(256);
    let mut port = lab.port(&pool, 1, Some(1000));
    let f = lab.udp_to_peer(&[0x5a; 1100]);
    {
        let _inside = lab.rdk.enter().unwrap();
        assert_tx_drop_reason_follows_errors(&mut port, &pool, 512, "tx_frames_too_big", |p| {
            let mut burst = [Some(mbuf_of(&pool, &f))];
            assert_eq!(p.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
        });
    }
    assert_eq!(xstat(&port, "rx_kernel_ring_drops"), Some(0));
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// A flood the port does not poll: the kernel drops what the ring cannot hold, and
/// received + kernel drops = sent, exactly.
#[test]
fn every_frame_is_received_or_counted_as_a_kernel_drop() {
    if !need_netns("afp every_frame_is_received_or_counted_as_a_kernel_drop") {
        return;
    }
    let lab = Lab::new("afd");
    let pool = pool(8192);
    let mut port = lab.port(&pool, 1, None);
    const N: usize = 20000;
    lab.peer
        .exec(&[
            "python3",
            "-c",
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(20000):\n    s.sendto(b'x' * 200, ('10.78.0.2', 9999))",
        ])
        .unwrap();
    let mut received = 0;
    let mut burst: [Option<Mbuf>; 32] = Default::default();
    for _ in 0..200 {
        let q = port.queues().unwrap();
        let n = rdk_core::ethdev::RxQueue::rx_burst(&mut q.rx[0], &mut burst);
        for m in burst[..n].iter_mut() {
            m.take();
        }
        received += n;
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let drops = port.driver().kernel_drops() as usize;
    assert!(drops > 0, "the ring is smaller than the flood");
    assert_eq!(received + drops, N, "received {received} + dropped {drops}");
    let x = port.xstats();
    assert!(x
        .iter()
        .any(|s| s.name == "rx_kernel_ring_drops" && s.value as usize == drops));
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// Promiscuous mode is a socket membership (the interface's promiscuity count); link
/// down/up of the peer reaches link callbacks; deleting the interface is reported.
#[test]
fn promiscuous_link_events_and_a_vanishing_interface() {
    if !need_netns("afp promiscuous_link_events_and_a_vanishing_interface") {
        return;
    }
    let lab = Lab::new("afl");
    let pool = pool(512);
    let mut port = lab.port(&pool, 1, None);
    assert_eq!(promiscuity(&lab), 0);
    port.set_promiscuous(true).unwrap();
    assert_eq!(promiscuity(&lab), 1);
    port.set_promiscuous(false).unwrap();
    assert_eq!(promiscuity(&lab), 0);

    link_flap_then_delete(&lab, &mut port);
    assert!(port.driver().is_gone());
    port.stop().unwrap();
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// The interface's promiscuity count (`ip -d link show`).
fn promiscuity(lab: &Lab) -> u32 {
    let out = lab
        .rdk
        .exec(&["ip", "-d", "link", "show", &lab.veth.a])
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    s.split("promiscuity ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap()
}

/// Promiscuous on twice then off once leaves the interface as it was, and off while off is
/// no error: the kernel counts memberships, the port keeps one switch.
#[test]
fn promiscuous_is_a_switch_not_a_count() {
    if !need_netns("afp promiscuous_is_a_switch_not_a_count") {
        return;
    }
    let lab = Lab::new("afm");
    let pool = pool(1024);
    let mut port = lab.port(&pool, 2, None);
    assert_eq!(promiscuity(&lab), 0);
    port.set_promiscuous(false)
        .expect("promiscuous off while it is off");
    port.set_promiscuous(true).unwrap();
    port.set_promiscuous(true).unwrap();
    assert_eq!(promiscuity(&lab), 2, "one membership per receive socket");
    port.set_promiscuous(false).unwrap();
    assert_eq!(
        promiscuity(&lab),
        0,
        "off after on, on: the interface is back to normal"
    );
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// A receive queue whose set-up fails leaves no socket behind (one would stay bound, with
/// the port's promiscuous membership and its share of the fanout, into a ring nobody reads).
#[test]
fn a_failed_rx_queue_setup_leaves_no_socket() {
    if !need_netns("afp a_failed_rx_queue_setup_leaves_no_socket") {
        return;
    }
    let lab = Lab::new("afs");
    let pool = pool(1024);
    let _inside = lab.rdk.enter().unwrap();
    let mut port = Port::new(0, AfPacketDriver::new(&lab.veth.a, 1));
    port.configure(&PortConfig::queues(1, 1)).unwrap();
    port.set_promiscuous(true).unwrap();
    // Every cache slot of the pool taken: the queue's own cache cannot be made.
    let held: Vec<_> = std::iter::from_fn(|| pool.cache(2).ok()).collect();
    assert!(port
        .rx_queue_setup(0, 512, &pool, &RxQueueConfig::default())
        .is_err());
    assert_eq!(
        promiscuity(&lab),
        0,
        "the failed queue's socket is still open"
    );
    drop(held);
    port.rx_queue_setup(0, 512, &pool, &RxQueueConfig::default())
        .unwrap();
    assert_eq!(promiscuity(&lab), 1);
    port.close().unwrap();
    assert_eq!(promiscuity(&lab), 0);
}

/// Two multi-queue ports of one process, on two interfaces: each has its own fanout group
/// (a group is one interface's; a shared id made the second port's set-up fail).
#[test]
fn two_multi_queue_ports_in_one_process() {
    if !need_netns("afp two_multi_queue_ports_in_one_process") {
        return;
    }
    let lab = Lab::new("af2");
    let pool = pool(2048);
    let mut first = lab.port(&pool, 2, None);
    let mut second = {
        let _inside = lab.rdk.enter().unwrap();
        lab.rdk.exec(&["ip", "link", "set", "lo", "up"]).unwrap();
        let mut p = Port::new(1, AfPacketDriver::new("lo", 2));
        set_up(&mut p, &pool, 512, &PortConfig::queues(2, 2))
            .expect("the second port's fanout group");
        p.start().unwrap();
        p
    };
    for sport in 31000..31020u16 {
        lab.send_udp(&hex(&sport.to_be_bytes()), Some(sport));
    }
    let frames = receive(&mut first, 20, Duration::from_secs(5));
    assert_each_flow_once(&frames, 9999, 31000..31020);
    drop(frames);
    second.close().unwrap();
    first.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// An interface set down for a moment under a transmitting port (the kernel answers the
/// send with `ENETDOWN`) is down, not gone: back up, the link is up again.
#[test]
fn briefly_down_interface_is_not_gone() {
    if !need_netns("afp briefly_down_interface_is_not_gone") {
        return;
    }
    let lab = Lab::new("afd");
    let pool = pool(1024);
    let mut port = lab.port(&pool, 1, None);
    rdk_tests::port::await_link(&mut port, true);
    let a = lab.veth.a.clone();
    lab.rdk.exec(&["ip", "link", "set", &a, "down"]).unwrap();
    let mut one = [Some(mbuf_of(&pool, &raw_test_frame(RDK_MAC, 0)))];
    let _ = port.queues().unwrap().tx[0].tx_burst(&mut one);
    drop(one);
    lab.rdk.exec(&["ip", "link", "set", &a, "up"]).unwrap();
    rdk_tests::port::await_link(&mut port, true);
    assert!(
        !port.driver().is_gone(),
        "a down interface is not a gone one"
    );
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// The port follows its interface, not a name: renamed, it is still there (not "gone") and
/// still the one changed, while a new interface that took the old name is left alone.
#[test]
fn renamed_interface_is_followed_not_its_old_name() {
    if !need_netns("afp renamed_interface_is_followed_not_its_old_name") {
        return;
    }
    let lab = Lab::new("afn");
    let pool = pool(1024);
    let mut port = lab.port(&pool, 1, None);
    rdk_tests::port::await_link(&mut port, true);
    let old = lab.veth.a.clone();
    let new = rdk_tests::netns::unique_name("ren");
    let ip = |args: &[&str]| {
        let mut a = vec!["ip"];
        a.extend_from_slice(args);
        lab.rdk.exec(&a).unwrap()
    };
    let mtu_of = |dev: &str| {
        let out = String::from_utf8_lossy(&ip(&["link", "show", dev]).stdout).to_string();
        out.split("mtu ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap()
    };
    // A veth is renamed down; then a new interface takes the old name.
    ip(&["link", "set", &old, "down"]);
    ip(&["link", "set", &old, "name", &new]);
    ip(&["link", "set", &new, "up"]);
    let other = rdk_tests::netns::unique_name("oth");
    ip(&["link", "add", &old, "type", "veth", "peer", "name", &other]);
    port.set_mtu(1400).unwrap();
    assert_eq!(
        (mtu_of(&new), mtu_of(&old)),
        (1400, 1500),
        "the MTU goes to the port's own interface, not to the one that took its old name"
    );
    rdk_tests::port::await_link(&mut port, true);
    assert!(!port.driver().is_gone(), "a renamed interface is not gone");
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// A receive queue takes its own interface's frames only, from its creation on: while its
/// socket is set up, another interface of the namespace (loopback, flooded here) is busy,
/// and none of its frames may reach the port.
#[test]
fn receive_queues_never_see_another_interfaces_frames() {
    if !need_netns("afp receive_queues_never_see_another_interfaces_frames") {
        return;
    }
    let lab = Lab::new("afo");
    lab.rdk.exec(&["ip", "link", "set", "lo", "up"]).unwrap();
    let mut flood = std::process::Command::new("ip")
        .args(["netns", "exec", lab.rdk.name(), "python3", "-c"])
        .arg(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             while True: s.sendto(b'lo'*20,('127.0.0.1',9))",
        )
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pool = pool(2048);
    let mut leaked = 0;
    for _ in 0..20 {
        let mut port = lab.port(&pool, 1, None);
        let frames = receive(&mut port, usize::MAX, Duration::from_millis(20));
        // Loopback frames carry all-zero MAC addresses.
        leaked += frames
            .iter()
            .filter(|m| m.data().get(..12) == Some(&[0u8; 12][..]))
            .count();
        drop(frames);
        port.close().unwrap();
    }
    let _ = flood.kill();
    let _ = flood.wait();
    assert_eq!(leaked, 0, "loopback frames reached the veth port");
    assert_eq!(pool.available(), pool.size());
}

/// dpdk-testpmd's net_af_packet on the peer end as generator and as receiver.
#[test]
fn dpdk_testpmd_generates_and_receives_exact_counts() {
    if !need_netns("afp dpdk_testpmd_generates_and_receives_exact_counts")
        || !need_testpmd("afp dpdk_testpmd_generates_and_receives_exact_counts")
    {
        return;
    }
    let lab = Lab::new("afx");
    let pool = pool(2048);
    let mut port = lab.port(&pool, 1, None);
    testpmd_exchange(&lab.peer, &lab.veth.b, &mut port, &pool, |i| {
        lab.udp_to_peer(&[i; 18])
    });
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// The TPACKET_V2 receive ring (`rxversion=2`): small, full-size and jumbo (chained) frames
/// byte-exact.
#[test]
fn v2_receive_ring_byte_exact_with_jumbo_chains() {
    if !need_netns("afp v2_receive_ring_byte_exact_with_jumbo_chains") {
        return;
    }
    let lab = Lab::new("afv");
    lab.peer
        .exec(&["ip", "link", "set", &lab.veth.b, "mtu", "9000"])
        .unwrap();
    let pool = pool(2048);
    let mut cfg = PortConfig::queues(1, 1);
    cfg.mtu = Some(9000);
    let mut port = lab.port_with(&pool, &cfg, true);
    let payloads: Vec<Vec<u8>> = [64usize, 1400, 8000]
        .iter()
        .map(|&n| (0..n).map(|b| (b * 7 % 251) as u8).collect())
        .collect();
    let frames = lab.kernel_udp_arrives_in_order(&mut port, &payloads);
    assert!(frames[2].nb_segs() >= 4);
    drop(frames);
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// RX-queue interrupts on a TPACKET_V3 queue: a receiver sleeping in `HybridRx` on the socket
/// wakes when the kernel hands over a block and gets every datagram, in order — including
/// after a sleep that began while the queue was waiting to re-read an open block.
#[test]
fn hybrid_receiver_sleeps_on_the_socket_and_wakes_on_traffic() {
    if !need_netns("afp hybrid_receiver_sleeps_on_the_socket_and_wakes_on_traffic") {
        return;
    }
    let lab = Lab::new("afi");
    let pool = pool(1024);
    let port = lab.port(&pool, 1, None);
    let mut port = sleepy_receive(
        port,
        10,
        |m| udp_payload_of(m, 9999),
        |i| lab.send_udp(&format!("{i:02x}"), None),
    );
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

/// Capabilities are per thread on Linux: a thread without CAP_NET_RAW cannot open the
/// packet sockets, and the error says what to grant; nothing is taken from the pool.
#[test]
fn without_privileges_the_error_says_what_to_grant() {
    if !need_netns("afp without_privileges_the_error_says_what_to_grant") {
        return;
    }
    let lab = Lab::new("afc");
    let pool = pool(256);
    let drv = AfPacketDriver::new(&lab.veth.a, 1);
    let e = without_capabilities(&lab.rdk, || try_started(drv, &pool, 512).err());
    let e = e.expect("started without CAP_NET_RAW").to_string();
    assert!(e.contains("CAP_NET_RAW"), "{e}");
    assert_eq!(pool.available(), pool.size());
}

/// A port on an interface the namespace does not have: a typed error at configure that says
/// so and what to check.
#[test]
fn missing_interface_is_a_typed_error() {
    if !need_netns("afp missing_interface_is_a_typed_error") {
        return;
    }
    let lab = Lab::new("afn");
    let e = {
        let _inside = lab.rdk.enter().unwrap();
        let mut p = Port::new(0, AfPacketDriver::new("rdk-nope0", 1));
        p.configure(&PortConfig::queues(1, 1)).unwrap_err()
    };
    assert!(e.to_string().contains("interface not found"), "{e}");
    assert!(e.to_string().contains("ip link"), "{e}");
}

/// TX checksum offloads, completed by the kernel (see
/// `rdk_tests::lab::tx_checksum_offloads_are_completed`): the peer's namespace is the router.
#[test]
fn tx_checksum_offloads_are_completed_by_the_kernel() {
    if !need_netns("afp tx_checksum_offloads_are_completed_by_the_kernel") {
        return;
    }
    let offloads = TxOffload::IPV4_CKSUM | TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM;
    Lab::new("afo").run_offload_test(OffloadTest::Checksums, offloads, "afof", [10, 93, 0]);
}

/// TCP segmentation offload (see `rdk_tests::lab::tcp_segmentation_is_done_by_the_kernel`):
/// requests larger than a ring slot go on the queue's ring-less socket behind a GSO net
/// header; the peer's namespace is the router. DPDK's net_af_packet has no TSO.
#[test]
fn tcp_segmentation_is_done_by_the_kernel() {
    if !need_netns("afp tcp_segmentation_is_done_by_the_kernel") {
        return;
    }
    let lab = Lab::new("afs");
    // The server's replies reach rdk's socket with full checksums (a veth would hand them
    // over partial, which rdk's check of the SYN-ACK would refuse).
    lab.peer
        .exec(&["ethtool", "-K", &lab.veth.b, "tx", "off"])
        .unwrap();
    let offloads = TxOffload::IPV4_CKSUM | TxOffload::TCP_CKSUM | TxOffload::TCP_TSO;
    lab.run_offload_test(OffloadTest::Segmentation, offloads, "afsf", [10, 95, 0]);
}
