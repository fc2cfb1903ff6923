//! `net_af_xdp` against the real kernel over a veth pair between two namespaces the tests
//! create: rdk owns end A (an AF_XDP socket per queue, rdk's XDP program attached), the kernel
//! (or dpdk-testpmd) end B.

use rdk_core::ethdev::{EthError, Port, PortConfig, RxQueue, TxQueue};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_os_linux::LinuxOs;
use rdk_pmd_af_xdp::netlink::{Rtnl, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use rdk_pmd_af_xdp::{bpf, AfXdpDriver, AfXdpError, BindMode, XdpMode};
use rdk_tests::dpdk::need_testpmd;
use rdk_tests::frames::{assert_each_flow_once, chain_of, mbuf_of, receive, udp_payload_of, Peer};
use rdk_tests::lab::{
    hex, link_flap_then_delete, raw_test_frame, testpmd_exchange, OffloadTest, VethLab,
};
use rdk_tests::netns::{need_netns, without_capabilities, Netns, Veth};
use rdk_tests::port::{assert_tx_drop_reason_follows_errors, set_up, try_started_with, xstat};
use std::time::Duration;

const RDK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// The veth rig (see [`VethLab`]) on 10.79.0.0/24, with this suite's port set-up.
struct Lab(VethLab);

impl std::ops::Deref for Lab {
    type Target = VethLab;
    fn deref(&self) -> &VethLab {
        &self.0
    }
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Self::with_queues(tag, 1)
    }

    /// The rig over a veth whose ends have `queues` queues each.
    fn with_queues(tag: &str, queues: u16) -> Lab {
        let lab = VethLab::with_queues(tag, [10, 79, 0], RDK_MAC, queues).unwrap();
        // The peer's kernel fills in full checksums: an AF_XDP socket gets no skb metadata,
        // so a checksum left to offload (CHECKSUM_PARTIAL, a veth's default) would arrive as
        // only the pseudo-header sum.
        lab.peer
            .exec(&["ethtool", "-K", &lab.veth.b, "tx", "off"])
            .unwrap();
        Lab(lab)
    }

    /// A configured, set-up port on end A; `start` decides whether it is started.
    fn port_with(
        &self,
        pool: &PktMbufPool,
        drv: AfXdpDriver,
        start: bool,
    ) -> Result<Port<AfXdpDriver>, EthError> {
        let _inside = self.rdk.enter().unwrap();
        let mut p = Port::new(0, drv);
        set_up(&mut p, pool, 512, &PortConfig::queues(1, 1))?;
        if start {
            p.start()?;
        }
        Ok(p)
    }

    fn port(&self, pool: &PktMbufPool) -> Port<AfXdpDriver> {
        self.port_with(pool, AfXdpDriver::new(&self.veth.a, 1), true)
            .unwrap()
    }

    fn send_udp(&self, payload_hex: &str) {
        self.0.send_udp(payload_hex, None).unwrap();
    }

    /// Sends `payload` from the peer's kernel to rdk's port 9999 and returns the UDP payload
    /// of the first frame `port` receives (which must be that datagram).
    fn echo_through(&self, port: &mut Port<AfXdpDriver>, payload: &[u8]) -> Vec<u8> {
        self.send_udp(&hex(payload));
        let frames = receive(port, 1, Duration::from_secs(5));
        udp_payload_of(&frames[0], 9999).expect("the datagram first")
    }

    /// The id of the XDP program on end A (0: none), read with rdk's own netlink code.
    fn attached_prog(&self) -> u32 {
        self.attached().prog_id
    }

    /// The XDP program on end A and its mode.
    fn attached(&self) -> rdk_pmd_af_xdp::netlink::Attached {
        let _inside = self.rdk.enter().unwrap();
        let idx = rdk_os_linux::netif::NetIf::open(&self.veth.a)
            .unwrap()
            .index()
            .unwrap();
        Rtnl::open().unwrap().query(idx).unwrap()
    }

    /// Attaches a program named `name` (generic mode) to end A and leaves it there, as a
    /// crashed process would; returns its id.
    fn leave_program(&self, name: &str) -> u32 {
        let _inside = self.rdk.enter().unwrap();
        let idx = rdk_os_linux::netif::NetIf::open(&self.veth.a)
            .unwrap()
            .index()
            .unwrap();
        let prog = bpf::load_xdp(&bpf::pass_program(), name).unwrap();
        let mut rtnl = Rtnl::open().unwrap();
        rtnl.attach(
            idx,
            std::os::fd::AsRawFd::as_raw_fd(&prog),
            XDP_FLAGS_SKB_MODE,
            None,
        )
        .unwrap();
        let id = rtnl.query(idx).unwrap().prog_id;
        assert_ne!(id, 0);
        id
    }
}

fn pool(n: usize) -> PktMbufPool {
    pool_named("afx", n)
}

fn pool_named(name: &str, n: usize) -> PktMbufPool {
    PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new(name, n)).unwrap()
}

fn assert_pool_full(pool: &PktMbufPool) {
    assert_eq!(pool.available(), pool.size(), "every mbuf back in the pool");
}

#[test]
fn kernel_udp_reaches_rdk_byte_exact_in_place() {
    if !need_netns("afx kernel_udp_reaches_rdk_byte_exact_in_place") {
        return;
    }
    let lab = Lab::new("xk");
    let pool = pool(2048);
    let mut port = lab.port(&pool);
    assert!(
        matches!(port.driver().bind_mode(), BindMode::Copy { reason } if reason.contains("zero-copy")),
        "veth has no zero-copy: {:?}",
        port.driver().bind_mode()
    );
    assert_ne!(lab.attached_prog(), 0, "rdk's program is attached");
    let payloads: Vec<Vec<u8>> = (0..5u8)
        .map(|i| (0..64 + 300 * i as usize).map(|b| (b as u8) ^ i).collect())
        .collect();
    let frames = lab.kernel_udp_arrives_in_order(&mut port, &payloads);
    for m in &frames {
        assert!(pool.owns(m), "the frame is in an mbuf of the rx pool");
        assert_eq!(
            m.data_off(),
            128,
            "landed at the usual data offset, no copy"
        );
        assert_eq!(m.nb_segs(), 1);
    }
    assert_eq!(port.stats().ipackets, 5, "nothing else on the wire");
    drop(frames);
    port.stop().unwrap();
    assert_eq!(lab.attached_prog(), 0, "stop detaches the program");
    assert_pool_full(&pool);
    port.close().unwrap();
    assert_pool_full(&pool);
}

#[test]
fn rdk_frames_reach_the_kernel_byte_exact() {
    if !need_netns("afx rdk_frames_reach_the_kernel_byte_exact") {
        return;
    }
    let lab = Lab::new("xt");
    let pool = pool(2048);
    let other = pool_named("afx-other", 256);
    let mut port = lab.port(&pool);
    let receivers = lab.peer_receivers(4);
    let mut sent = Vec::new();
    let mut burst = Vec::new();
    for i in 0..4u8 {
        let f = raw_test_frame(RDK_MAC, i);
        // By address (the UMEM's pool), copied (another pool), copied (a chain).
        let m = match i {
            0 | 1 => mbuf_of(&pool, &f),
            2 => mbuf_of(&other, &f),
            _ => chain_of(&pool, &f, 200),
        };
        burst.push(Some(m));
        sent.push(f);
    }
    let f = lab.udp_to_peer(b"af_xdp says hi");
    burst.push(Some(mbuf_of(&pool, &f)));
    // Too big for the MTU: counted, dropped.
    let big = vec![0u8; 3000];
    burst.push(Some(chain_of(&pool, &big, 1000)));
    assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 6);
    assert_eq!(receivers.finish(&sent, "af_xdp says hi"), 5);
    let xs = |n: &str| xstat(&port, n);
    assert_eq!(xs("tx_frames_too_big"), Some(1));
    assert_eq!(xs("tx_copied"), Some(2), "the foreign mbuf and the chain");
    assert_eq!(port.stats().opackets, 5);
    assert_eq!(port.stats().oerrors, 1);
    port.stop().unwrap();
    assert_pool_full(&pool);
    assert_pool_full(&other);
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// `python3 -c PY_PING IP COUNT`: prints `ready`, sends COUNT ICMP echo requests with 200
/// bytes of payload from a raw socket, and prints how many matching replies came back.
const PY_PING: &str = r#"
import socket, sys, struct, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
print("ready", flush=True)
got = 0
for seq in range(int(sys.argv[2])):
    payload = bytes((i * 7 + seq) & 0xff for i in range(200))
    h = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(h + payload), 0x4242, seq) + payload
    s.sendto(pkt, (sys.argv[1], 0))
    end = time.time() + 2
    while time.time() < end:
        try:
            d = s.recv(4096)
        except socket.timeout:
            break
        icmp = d[(d[0] & 15) * 4:]
        if icmp[0] == 0 and icmp[4:8] == struct.pack("!HH", 0x4242, seq) and icmp[8:] == payload and csum(icmp) == 0:
            got += 1
            break
print("%d replies" % got, flush=True)
"#;

/// ICMP echo from the peer's kernel: rdk receives each request byte-exact, answers it by
/// swapping addresses in the same mbuf and sending that mbuf back by address.
#[test]
fn kernel_ping_is_answered_by_rdk() {
    if !need_netns("afx kernel_ping_is_answered_by_rdk") {
        return;
    }
    let lab = Lab::new("xp");
    let pool = pool(2048);
    let mut port = lab.port(&pool);
    let pinger = Peer::python(&lab.peer, PY_PING, &["10.79.0.2", "3"]);
    let t = std::time::Instant::now();
    let mut answered = 0;
    let mut burst: [Option<Mbuf>; 32] = Default::default();
    while answered < 3 && t.elapsed() < Duration::from_secs(8) {
        let q = port.queues().unwrap();
        let n = q.rx[0].rx_burst(&mut burst);
        for slot in burst[..n].iter_mut() {
            let Some(mut m) = slot.take() else { continue };
            let d = m.data_mut().unwrap();
            // IPv4 ICMP echo request, 200 bytes of payload, byte-exact pattern from ping.
            if d.len() == 14 + 20 + 8 + 200
                && d[12..14] == [8, 0]
                && d[23] == 1
                && d[34] == 8
                && d[42..]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == ((i * 7 + d[41] as usize) & 0xff) as u8)
            {
                let (dst, src) = (d[0..6].to_vec(), d[6..12].to_vec());
                d[0..6].copy_from_slice(&src);
                d[6..12].copy_from_slice(&dst);
                let ip = d[26..30].to_vec();
                d.copy_within(30..34, 26);
                d[30..34].copy_from_slice(&ip);
                d[34] = 0; // echo reply
                           // ICMP checksum: type 8 -> 0 adds 0x0800 to the one's-complement sum.
                let ck = u16::from_be_bytes([d[36], d[37]]) as u32 + 0x0800;
                let ck = ((ck & 0xffff) + (ck >> 16)) as u16;
                d[36..38].copy_from_slice(&ck.to_be_bytes());
                let mut out = [Some(m)];
                assert_eq!(q.tx[0].tx_burst(&mut out), 1);
                answered += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pinger.finish(), ["3 replies"]);
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// Link down/up of the peer reaches link callbacks; deleting the interface is reported and
/// the port still stops cleanly with every mbuf back.
#[test]
fn link_events_and_a_vanishing_interface() {
    if !need_netns("afx link_events_and_a_vanishing_interface") {
        return;
    }
    let lab = Lab::new("xl");
    let pool = pool(1024);
    let mut port = lab.port(&pool);
    port.set_promiscuous(true).unwrap();
    port.set_promiscuous(false).unwrap();
    link_flap_then_delete(&lab, &mut port);
    assert!(port.driver().is_gone());
    let mut burst: Vec<Option<Mbuf>> = vec![Some(mbuf_of(&pool, &[0xab; 60]))];
    let _ = port.queues().unwrap().tx[0].tx_burst(&mut burst);
    drop(burst);
    port.stop().unwrap();
    assert_pool_full(&pool);
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// A program of rdk's left attached by a run that died is recognised by its name and replaced;
/// stop then leaves the interface clean.
#[test]
fn leftover_rdk_program_is_replaced() {
    if !need_netns("afx leftover_rdk_program_is_replaced") {
        return;
    }
    let lab = Lab::new("xr");
    let old = lab.leave_program(bpf::PROG_NAME);
    let pool = pool(1024);
    let mut port = lab.port(&pool);
    assert_eq!(port.driver().replaced_leftover(), Some(old));
    let now = lab.attached_prog();
    assert!(now != 0 && now != old, "{now} replaced {old}");
    assert_eq!(
        lab.echo_through(&mut port, &[0xc0, 0xff, 0xee]),
        [0xc0, 0xff, 0xee]
    );
    port.close().unwrap();
    assert_eq!(lab.attached_prog(), 0);
    assert_pool_full(&pool);
}

/// A leftover found in generic mode is replaced in the mode the port asks for (native, or
/// auto, which is native on a veth), not kept in generic mode; one found in the mode asked for
/// is replaced in place. Traffic flows either way and stop leaves the interface clean.
#[test]
fn leftover_is_replaced_in_the_requested_mode() {
    if !need_netns("afx leftover_is_replaced_in_the_requested_mode") {
        return;
    }
    let lab = Lab::new("xm");
    let pool = pool(1024);
    for (mode, want) in [
        (XdpMode::Native, XDP_FLAGS_DRV_MODE),
        (XdpMode::Auto, XDP_FLAGS_DRV_MODE),
        (XdpMode::Generic, XDP_FLAGS_SKB_MODE),
    ] {
        let old = lab.leave_program(bpf::PROG_NAME);
        assert_eq!(lab.attached().mode, XDP_FLAGS_SKB_MODE);
        let drv = AfXdpDriver::new(&lab.veth.a, 1).with_xdp_mode(mode);
        let mut port = lab.port_with(&pool, drv, true).unwrap();
        assert_eq!(port.driver().replaced_leftover(), Some(old), "{mode:?}");
        let now = lab.attached();
        assert!(now.prog_id != 0 && now.prog_id != old, "{mode:?}: {now:?}");
        assert_eq!(now.mode, want, "{mode:?}: replaced in the mode asked for");
        assert_eq!(
            lab.echo_through(&mut port, &[0xc0, 0xff, 0xee]),
            [0xc0, 0xff, 0xee]
        );
        port.close().unwrap();
        assert_eq!(lab.attached_prog(), 0, "{mode:?}: nothing left behind");
        assert_pool_full(&pool);
    }
}

/// A second port on another queue of the same interface finds rdk's program attached by a
/// live port: not a leftover. It must not replace it (which cuts the first port off, and
/// leaves it detaching a program that is no longer there), but say so.
#[test]
fn a_live_ports_program_is_not_a_leftover() {
    if !need_netns("afx a_live_ports_program_is_not_a_leftover") {
        return;
    }
    let ns = Netns::new("xl").unwrap();
    let veth = Veth::with_queues(Some(&ns), Some(&ns), 2).unwrap();
    let a = &veth.a;
    let _inside = ns.enter().unwrap();
    let idx = rdk_os_linux::netif::NetIf::open(a)
        .unwrap()
        .index()
        .unwrap();
    let attached = || Rtnl::open().unwrap().query(idx).unwrap().prog_id;
    let port_on = |pool: &PktMbufPool, q: u32| {
        let mut p = Port::new(0, AfXdpDriver::new(a, 1).with_start_queue(q));
        set_up(&mut p, pool, 256, &PortConfig::queues(1, 1)).unwrap();
        p
    };
    let (pool0, pool1) = (pool(1024), pool(1024));
    let mut first = port_on(&pool0, 0);
    first.start().unwrap();
    let theirs = attached();
    assert_ne!(theirs, 0);
    let mut second = port_on(&pool1, 1);
    let r = second.start();
    assert_eq!(
        second.driver().replaced_leftover(),
        None,
        "the first port's live program was taken for a leftover and replaced"
    );
    assert!(
        r.is_err(),
        "the second port must not start over the first one's program"
    );
    match second.driver().last_error() {
        Some(AfXdpError::ProgramInUse { id, pid, .. }) => {
            assert_eq!((*id, *pid), (theirs, std::process::id()))
        }
        e => panic!("expected ProgramInUse, got {e:?}"),
    }
    assert_eq!(attached(), theirs, "the first port's program is untouched");
    second.close().unwrap();
    first.close().unwrap();
    assert_eq!(attached(), 0, "the first port detached its own program");
    assert_pool_full(&pool0);
    assert_pool_full(&pool1);
}

/// Someone else's program: a typed error naming it, and it stays attached, untouched.
#[test]
fn foreign_program_is_a_typed_error_and_left_alone() {
    if !need_netns("afx foreign_program_is_a_typed_error_and_left_alone") {
        return;
    }
    let lab = Lab::new("xf");
    let theirs = lab.leave_program("their_pass");
    let pool = pool(1024);
    let mut port = lab
        .port_with(&pool, AfXdpDriver::new(&lab.veth.a, 1), false)
        .unwrap();
    let err = {
        let _inside = lab.rdk.enter().unwrap();
        port.start().unwrap_err()
    };
    assert!(matches!(err, EthError::Device { .. }), "{err}");
    match port.driver().last_error() {
        Some(AfXdpError::ForeignProgram { id, name, iface }) => {
            assert_eq!(
                (*id, name.as_str(), iface.as_str()),
                (theirs, "their_pass", lab.veth.a.as_str())
            );
            let text = port.driver().last_error().unwrap().to_string();
            assert!(
                text.contains("xdp off") && text.contains("their_pass"),
                "{text}"
            );
        }
        e => panic!("expected ForeignProgram, got {e:?}"),
    }
    assert_eq!(lab.attached_prog(), theirs, "their program is untouched");
    port.close().unwrap();
    assert_eq!(lab.attached_prog(), theirs);
    assert_pool_full(&pool);
}

#[test]
fn missing_interface_is_a_typed_error() {
    if !need_netns("afx missing_interface_is_a_typed_error") {
        return;
    }
    let lab = Lab::new("xn");
    let pool = pool(256);
    let r = lab.port_with(&pool, AfXdpDriver::new("rdk-nope0", 1), false);
    let Err(e) = r else {
        panic!("configured a missing interface")
    };
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert_pool_full(&pool);
}

/// dpdk-testpmd (net_af_packet on the peer end) as generator and as receiver, exact counts.
#[test]
fn dpdk_testpmd_generates_and_receives_exact_counts() {
    if !need_netns("afx dpdk_testpmd_generates_and_receives_exact_counts")
        || !need_testpmd("afx dpdk_testpmd_generates_and_receives_exact_counts")
    {
        return;
    }
    let lab = Lab::new("xd");
    let pool = pool(4096);
    let mut port = lab.port(&pool);
    testpmd_exchange(&lab.peer, &lab.veth.b, &mut port, &pool, |i| {
        lab.udp_to_peer(&[i; 18])
    });
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// A flood the port does not poll for a while: the kernel drops what the rings cannot hold,
/// and received + the kernel's drop counters = sent, exactly.
#[test]
fn every_frame_is_received_or_counted_as_a_kernel_drop() {
    if !need_netns("afx every_frame_is_received_or_counted_as_a_kernel_drop") {
        return;
    }
    let lab = Lab::new("xo");
    let pool = pool(4096);
    let mut port = lab.port(&pool);
    const N: usize = 5000;
    lab.peer
        .exec(&[
            "python3",
            "-c",
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(5000):\n    s.sendto(b'x' * 200, ('10.79.0.2', 9999))",
        ])
        .unwrap();
    let mut received = 0;
    let mut burst: [Option<Mbuf>; 32] = Default::default();
    for _ in 0..200 {
        let q = port.queues().unwrap();
        let n = q.rx[0].rx_burst(&mut burst);
        for m in burst[..n].iter_mut() {
            m.take();
        }
        received += n;
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let k = port.driver().kernel_stats();
    let drops = (k.rx_dropped + k.rx_ring_full) as usize;
    assert!(drops > 0, "the rings are smaller than the flood: {k:?}");
    assert!(received > 0, "and frames were received");
    assert_eq!(
        received + drops,
        N,
        "received {received} + dropped {drops}: {k:?}"
    );
    // A statistics reset zeroes the kernel's counts as the port reports them, and they stay
    // zero when the sockets that counted them close.
    port.stats_reset();
    let zero = |port: &Port<AfXdpDriver>| {
        let k = port.driver().kernel_stats();
        assert_eq!((k.rx_dropped, k.rx_ring_full), (0, 0), "{k:?}");
        assert_eq!(xstat(port, "rx_kernel_ring_full"), Some(0));
    };
    zero(&port);
    port.stop().unwrap();
    zero(&port);
    {
        let _inside = lab.rdk.enter().unwrap();
        port.start().unwrap();
    }
    zero(&port);
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// A drop reason carries on with the `tx_errors` it breaks down when the queues are set up
/// again, and a statistics reset zeroes both.
#[test]
fn drop_reasons_follow_the_counters_they_break_down() {
    if !need_netns("afx drop_reasons_follow_the_counters_they_break_down") {
        return;
    }
    let lab = Lab::new("xr");
    let pool = pool(2048);
    let mut port = lab.port(&pool);
    let f = lab.udp_to_peer(&[0x5a; 1600]);
    {
        let _inside = lab.rdk.enter().unwrap();
        assert_tx_drop_reason_follows_errors(&mut port, &pool, 512, "tx_frames_too_big", |p| {
            let mut burst = [Some(mbuf_of(&pool, &f))];
            assert_eq!(p.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
        });
    }
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// Stop and start again: new sockets, the program back, traffic flows, nothing leaks.
#[test]
fn restart_rebinds_and_keeps_the_pool_whole() {
    if !need_netns("afx restart_rebinds_and_keeps_the_pool_whole") {
        return;
    }
    let lab = Lab::new("xs");
    let pool = pool(2048);
    let mut port = lab.port(&pool);
    for round in 0..3u8 {
        assert_eq!(lab.echo_through(&mut port, &[round; 40]), [round; 40]);
        port.stop().unwrap();
        assert_pool_full(&pool);
        let _inside = lab.rdk.enter().unwrap();
        port.start().unwrap();
    }
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// The receive queue's socket is its interrupt handle: it polls readable once a frame is in
/// the RX ring, not before.
#[test]
fn rx_interrupt_handle_wakes_on_a_frame() {
    if !need_netns("afx rx_interrupt_handle_wakes_on_a_frame") {
        return;
    }
    let lab = Lab::new("xi");
    let pool = pool(1024);
    let mut port = lab.port(&pool);
    let fd = {
        let q = port.queues().unwrap();
        q.rx[0].intr_enable().unwrap();
        q.rx[0].intr_handle().expect("a wait handle").0 as i32
    };
    let readable = |ms: i32| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        r == 1 && p.revents & libc::POLLIN != 0
    };
    assert!(!readable(100), "quiet link, nothing to wake for");
    lab.send_udp("beef");
    assert!(readable(5000), "a frame wakes the queue");
    let frames = receive(&mut port, 1, Duration::from_secs(2));
    assert_eq!(udp_payload_of(&frames[0], 9999).unwrap(), [0xbe, 0xef]);
    drop(frames);
    assert!(!readable(50), "drained: not readable any more");
    port.queues().unwrap().rx[0].intr_disable().unwrap();
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// Two queues (one socket each, queue ids 0 and 1 of a two-queue veth): 40 flows from the
/// peer arrive once each, spread over both queues by the peer's transmit queue choice.
#[test]
fn two_queues_one_socket_each() {
    if !need_netns("afx two_queues_one_socket_each") {
        return;
    }
    let lab = Lab::with_queues("xq", 2);
    let pool = pool(4096);
    let mut port = {
        let _inside = lab.rdk.enter().unwrap();
        let drv = AfXdpDriver::new(&lab.veth.a, 2);
        try_started_with(drv, &pool, 256, &PortConfig::queues(2, 2)).unwrap()
    };
    for sport in 30000..30040u16 {
        lab.0
            .send_udp(&hex(&sport.to_be_bytes()), Some(sport))
            .unwrap();
    }
    let frames = receive(&mut port, 40, Duration::from_secs(5));
    assert_each_flow_once(&frames, 9999, 30000..30040);
    let st = port.stats();
    assert!(
        st.rx_queues.iter().all(|q| q.packets > 0),
        "both queues received: {:?}",
        st.rx_queues
    );
    drop(frames);
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// Capabilities are per thread on Linux: a thread that drops its effective set gets the
/// permission error, with the words that say what to do.
#[test]
fn without_privileges_the_error_says_what_to_grant() {
    if !need_netns("afx without_privileges_the_error_says_what_to_grant") {
        return;
    }
    let lab = Lab::new("xc");
    let iface = lab.veth.a.clone();
    let r = without_capabilities(&lab.rdk, || {
        let mut p = Port::new(0, AfXdpDriver::new(&iface, 1));
        let e = p.configure(&PortConfig::queues(1, 1)).unwrap_err();
        (e.to_string(), p.driver().last_error().cloned())
    });
    assert!(r.0.contains("CAP_NET_ADMIN"), "{}", r.0);
    assert!(
        matches!(r.1, Some(AfXdpError::Permission { .. })),
        "{:?}",
        r.1
    );
    assert_eq!(lab.attached_prog(), 0);
}

/// A started port dropped without stop or close still takes its program off the interface
/// and gives every mbuf back.
#[test]
fn dropping_a_started_port_detaches_and_returns_every_mbuf() {
    if !need_netns("afx dropping_a_started_port_detaches_and_returns_every_mbuf") {
        return;
    }
    let lab = Lab::new("xz");
    let pool = pool(1024);
    let mut port = lab.port(&pool);
    lab.send_udp("00ff");
    let frames = receive(&mut port, 1, Duration::from_secs(5));
    assert_eq!(frames.len(), 1);
    let mut burst = [Some(mbuf_of(&pool, &[0x5a; 60]))];
    assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    assert_ne!(lab.attached_prog(), 0);
    drop(port);
    assert_eq!(lab.attached_prog(), 0);
    drop(frames);
    assert_pool_full(&pool);
}

/// TX checksum offloads against the kernel (see `VethLab::tx_checksum_offloads_are_completed`): in
/// copy mode the TCP/UDP checksums go to the kernel as AF_XDP TX metadata (6.8+), the IPv4
/// header is filled by rdk; with `tx_sw_csum` rdk completes them itself. The peer's namespace
/// is the router.
#[test]
fn tx_checksum_offloads_are_completed_by_the_kernel_or_by_rdk() {
    use rdk_core::ethdev::TxOffload;
    if !need_netns("afxdp tx_checksum_offloads_are_completed_by_the_kernel_or_by_rdk") {
        return;
    }
    for sw in [false, true] {
        let lab = Lab::new("axo");
        let pool = pool(1024);
        let mut cfg = PortConfig::queues(1, 1);
        cfg.tx_offloads = TxOffload::IPV4_CKSUM | TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM;
        let mut port = {
            let _inside = lab.rdk.enter().unwrap();
            let drv = AfXdpDriver::new(&lab.veth.a, 1).with_tx_sw_csum(sw);
            try_started_with(drv, &pool, 512, &cfg).unwrap()
        };
        assert_eq!(
            port.driver().tx_checksum_by_kernel(),
            Some(!sw),
            "copy mode on a 6.8+ kernel: TX metadata, unless told otherwise"
        );
        lab.offload_test(
            OffloadTest::Checksums,
            &mut port,
            &pool,
            "axof",
            [10, 94, 0],
        );
        let in_software = port
            .xstats()
            .iter()
            .find(|x| x.name == "tx_checksums_in_software")
            .map(|x| x.value);
        // Six datagrams asked for a UDP checksum (the last request was refused).
        assert_eq!(in_software, Some(if sw { 6 } else { 0 }));
        port.stop().unwrap();
        port.close().unwrap();
        assert_pool_full(&pool);
    }
}

/// `tx_checksum_by_kernel` describes the port as it runs now: nothing once stopped, and a
/// port set up again without the checksum offloads says `None`, not what the start before
/// found.
#[test]
fn tx_checksum_report_follows_each_start() {
    use rdk_core::ethdev::TxOffload;
    if !need_netns("afxdp tx_checksum_report_follows_each_start") {
        return;
    }
    let lab = Lab::new("axr");
    let pool = pool(1024);
    let _inside = lab.rdk.enter().unwrap();
    let mut port = Port::new(0, AfXdpDriver::new(&lab.veth.a, 1));
    for offloads in [TxOffload::UDP_CKSUM, TxOffload::empty()] {
        let mut cfg = PortConfig::queues(1, 1);
        cfg.tx_offloads = offloads;
        set_up(&mut port, &pool, 512, &cfg).unwrap();
        port.start().unwrap();
        let want = (!offloads.is_empty()).then_some(true);
        assert_eq!(
            port.driver().tx_checksum_by_kernel(),
            want,
            "started with {offloads:?}"
        );
        port.stop().unwrap();
        assert_eq!(port.driver().tx_checksum_by_kernel(), None, "stopped");
    }
    port.close().unwrap();
    assert_pool_full(&pool);
}

/// Runs `f` on a thread of its own inside `ns` where `socket(AF_NETLINK, ..)` fails with
/// `EACCES` (a seccomp filter: per thread, and gone with the thread): a kernel refusal at
/// exactly the step after which configure used to have changed the interface already.
fn without_netlink<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    // Classic BPF over struct seccomp_data: nr at 0, args[0] at 16 (its low half on a
    // little-endian machine, 20 on a big-endian one).
    const ARG0_LOW: u32 = if cfg!(target_endian = "little") {
        16
    } else {
        20
    };
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: 0,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let filter = [
        stmt(ld, 0),
        jeq(libc::SYS_socket as u32, 3),
        stmt(ld, ARG0_LOW),
        jeq(libc::AF_NETLINK as u32, 1),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EACCES as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    std::thread::scope(|s| {
        s.spawn(|| {
            let _inside = ns.enter().unwrap();
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            // SAFETY: prctl with a valid filter program that outlives the call; both settings
            // apply to this thread only (no SECCOMP_FILTER_FLAG_TSYNC), which ends after `f`.
            unsafe {
                assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
                assert_eq!(
                    libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &prog as *const libc::sock_fprog
                    ),
                    0
                );
            }
            f()
        })
        .join()
        .unwrap()
    })
}

/// A configure that fails leaves the interface as it found it: the MTU it would have set is
/// not left behind (DPDK: configure is all or nothing).
#[test]
fn a_failed_configure_leaves_the_mtu_alone() {
    if !need_netns("afx a_failed_configure_leaves_the_mtu_alone") {
        return;
    }
    let lab = Lab::new("xu");
    let mtu = || {
        let _inside = lab.rdk.enter().unwrap();
        rdk_os_linux::netif::NetIf::open(&lab.veth.a)
            .unwrap()
            .mtu()
            .unwrap()
    };
    let before = mtu();
    let iface = lab.veth.a.clone();
    let (r, last) = without_netlink(&lab.rdk, || {
        let mut p = Port::new(0, AfXdpDriver::new(&iface, 1));
        let mut cfg = PortConfig::queues(1, 1);
        cfg.mtu = Some(before - 100);
        let r = p.configure(&cfg);
        (r, p.driver().last_error().cloned())
    });
    assert!(r.is_err(), "configure without a netlink socket must fail");
    assert!(
        matches!(
            last,
            Some(AfXdpError::Permission {
                op: "netlink socket"
            })
        ),
        "{last:?}"
    );
    assert_eq!(mtu(), before, "the failed configure changed the MTU");
    // The same configure with netlink works and sets it.
    let _inside = lab.rdk.enter().unwrap();
    let mut p = Port::new(0, AfXdpDriver::new(&iface, 1));
    let mut cfg = PortConfig::queues(1, 1);
    cfg.mtu = Some(before - 100);
    p.configure(&cfg).unwrap();
    drop(_inside);
    assert_eq!(mtu(), before - 100);
    p.close().unwrap();
}

/// Promiscuous and all-multicast modes the port turned on are off again after close; a flag
/// someone else had set stays on.
#[test]
fn close_turns_off_only_the_flags_rdk_turned_on() {
    use rdk_os_linux::netif::{flags, NetIf};
    if !need_netns("afx close_turns_off_only_the_flags_rdk_turned_on") {
        return;
    }
    let lab = Lab::new("xg");
    let pool = pool(1024);
    let iface_flags = || {
        let _inside = lab.rdk.enter().unwrap();
        NetIf::open(&lab.veth.a).unwrap().flags().unwrap() & (flags::PROMISC | flags::ALLMULTI)
    };
    assert_eq!(iface_flags(), 0);
    let mut port = lab.port(&pool);
    port.set_promiscuous(true).unwrap();
    port.set_allmulticast(true).unwrap();
    assert_eq!(iface_flags(), flags::PROMISC | flags::ALLMULTI);
    port.close().unwrap();
    assert_eq!(iface_flags(), 0, "rdk turned them on: close turns them off");
    // Someone else's promiscuous flag: rdk turning it "on" again does not make it rdk's.
    lab.rdk
        .exec(&["ip", "link", "set", &lab.veth.a, "promisc", "on"])
        .unwrap();
    let mut port = lab.port(&pool);
    port.set_promiscuous(true).unwrap();
    port.set_allmulticast(true).unwrap();
    port.close().unwrap();
    assert_eq!(
        iface_flags(),
        flags::PROMISC,
        "the other user's flag stays on"
    );
    // Turned on, then off by the application: nothing to restore, and a dropped port
    // restores too.
    let mut port = lab.port(&pool);
    port.set_allmulticast(true).unwrap();
    port.set_allmulticast(false).unwrap();
    port.set_promiscuous(false).unwrap();
    assert_eq!(iface_flags(), 0);
    port.set_allmulticast(true).unwrap();
    drop(port);
    assert_eq!(iface_flags(), 0, "dropped without close");
    assert_pool_full(&pool);
}
