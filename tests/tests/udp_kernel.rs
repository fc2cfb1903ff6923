//! The UDP stack against the real kernel: rdk on a TAP interface in a namespace the test
//! makes, the kernel on the other side with its `ping` and its UDP sockets. ARP starts cold on
//! both sides.

use core::net::{Ipv4Addr, SocketAddrV4};
use rdk_core::ethdev::{Port, PortConfig, RxQueueConfig, TxQueueConfig};
use rdk_core::mbuf::{PktMbufPool, PktMbufPoolConfig};
use rdk_core::udp::{IfaceConfig, Stack, StackLimits};
use rdk_os_linux::{LinuxClock, LinuxOs};
use rdk_pmd_tap::TapDriver;
use rdk_tests::frames::{Peer, PY_UDP_RECV};
use rdk_tests::netns::{need_netns, unique_name, Netns};
use std::process::Child;
use std::time::{Duration, Instant};

const RDK_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);

/// `python3 -c PY_ECHO_CLIENT IP PORT HEX TIMEOUT`: sends HEX, prints the reply in hex.
const PY_ECHO_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]))
s.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))
d, a = s.recvfrom(65535)
print(d.hex())
"#;

/// `python3 -c PY_RAW_SEND IFACE HEX`: one raw frame out of IFACE.
const PY_RAW_SEND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send(bytes.fromhex(sys.argv[2]))
"#;

struct Rig {
    ns: Netns,
    iface: String,
    port: Port<TapDriver>,
    stack: Stack<LinuxClock>,
    pool: PktMbufPool,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let ns = Netns::new(tag).unwrap();
        let pool =
            PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("udpk", 1024)).unwrap();
        let iface = unique_name("tap");
        let mut port = {
            let _inside = ns.enter().unwrap();
            let mut p = Port::new(0, TapDriver::new(&iface));
            p.configure(&PortConfig::queues(1, 1)).unwrap();
            p.rx_queue_setup(0, 512, &pool, &RxQueueConfig::default())
                .unwrap();
            p.tx_queue_setup(0, 512, &TxQueueConfig::default()).unwrap();
            p
        };
        ns.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{iface}.disable_ipv6=1"),
        ])
        .unwrap();
        port.start().unwrap();
        ns.exec(&["ip", "addr", "add", "10.79.0.1/24", "dev", &iface])
            .unwrap();
        // rdk's MAC must differ from the kernel side's: the TAP's own MAC is the kernel's.
        let cfg = IfaceConfig {
            mac: [0x02, 0x52, 0x44, 0x4b, 0, 2],
            ip: RDK_IP,
            prefix_len: 24,
            gateway: None,
            mtu: 1500,
        };
        let stack =
            Stack::new(cfg, StackLimits::default(), pool.clone(), LinuxClock::new()).unwrap();
        Rig {
            ns,
            iface,
            port,
            stack,
            pool,
        }
    }

    fn poll(&mut self) {
        let q = self.port.queues().unwrap();
        self.stack.poll(&mut q.rx[0], &mut q.tx[0]);
    }

    /// Polls until `child` exits (at most 10 s); returns whether it succeeded.
    fn serve_until(&mut self, child: &mut Child) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            self.poll();
            if let Ok(Some(st)) = child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        false
    }

    fn finish(mut self) {
        self.port.stop().unwrap();
        self.port.close().unwrap();
        let Rig {
            stack, port, pool, ..
        } = self;
        drop((stack, port));
        assert_eq!(pool.available(), pool.size(), "every mbuf back");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The kernel pings rdk (ARP cold on both sides) and gets every reply.
#[test]
fn kernel_ping_gets_answers() {
    if !need_netns("kernel_ping_gets_answers") {
        return;
    }
    let mut r = Rig::new("udpp");
    let mut ping =
        r.ns.command("ping")
            // -w: with a count and a deadline, ping fails unless all 3 replies arrived.
            .args(["-c", "3", "-i", "0.2", "-w", "8", "10.79.0.2"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
    assert!(r.serve_until(&mut ping), "ping got its 3 replies");
    assert_eq!(r.stack.counters().echo_replies, 3);
    assert_eq!(
        r.stack.arp_entries(),
        1,
        "rdk learnt the kernel's MAC from its request"
    );
    r.finish();
}

/// A kernel UDP client sends to an rdk socket, rdk echoes back; rdk sends first to a kernel
/// UDP socket too. Byte-exact both ways.
#[test]
fn kernel_udp_both_ways_byte_exact() {
    if !need_netns("kernel_udp_both_ways_byte_exact") {
        return;
    }
    let mut r = Rig::new("udpu");
    let s = r.stack.socket().unwrap();
    r.stack
        .bind(s, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9999))
        .unwrap();
    // rdk first (cold ARP on rdk's side): to a kernel socket that is listening.
    let rx = Peer::start({
        let mut c = r.ns.command("python3");
        c.args(["-c", PY_UDP_RECV, "10.79.0.1", "7777", "5", "hex"]);
        c
    });
    let first: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8).collect();
    r.stack
        .send_to(s, &first, SocketAddrV4::new(KERNEL_IP, 7777))
        .unwrap();
    let t = Instant::now();
    while r.stack.backlog() > 0 || r.stack.arp_entries() == 0 {
        r.poll();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "ARP for the kernel did not resolve"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rx.finish(), [hex(&first)]);
    // The kernel's client: rdk echoes what it gets.
    let msg: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut client =
        r.ns.command("python3")
            .args(["-c", PY_ECHO_CLIENT, "10.79.0.2", "9999", &hex(&msg), "5"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut buf = vec![0u8; 2048];
    let t = Instant::now();
    let from = loop {
        r.poll();
        if let Ok((n, from, trunc)) = r.stack.recv_from(s, &mut buf) {
            assert!(!trunc);
            assert_eq!(&buf[..n], &msg[..], "byte-exact from the kernel");
            break from;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "nothing from the kernel client"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(*from.ip(), KERNEL_IP);
    r.stack.send_to(s, &msg, from).unwrap();
    assert!(r.serve_until(&mut client), "the client got its echo");
    let out = client.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hex(&msg));
    r.finish();
}

/// Malformed frames from a raw socket are dropped and counted; the stack still answers ping.
#[test]
fn malformed_frames_from_the_kernel_are_counted_and_ping_still_works() {
    if !need_netns("malformed_frames_from_the_kernel_are_counted_and_ping_still_works") {
        return;
    }
    let mut r = Rig::new("udpm");
    let dst = [0x02, 0x52, 0x44, 0x4b, 0, 2];
    let mut bad_ip = Vec::new();
    bad_ip.extend_from_slice(&dst);
    bad_ip.extend_from_slice(&[0x02, 0, 0, 0, 0, 9, 0x08, 0x00]);
    // An IPv4 header with a wrong checksum, then a truncated one.
    bad_ip.extend_from_slice(&[
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0xde, 0xad, 10, 79, 0, 1, 10, 79, 0, 2, 0, 1, 0, 2, 0,
        8, 0, 0,
    ]);
    let mut short = bad_ip[..20].to_vec();
    short.resize(20, 0);
    let before = r.stack.stats();
    for f in [&bad_ip, &short] {
        let mut c =
            r.ns.command("python3")
                .args(["-c", PY_RAW_SEND, &r.iface, &hex(f)])
                .spawn()
                .unwrap();
        assert!(r.serve_until(&mut c));
    }
    let t = Instant::now();
    while r.stack.stats().total() < before.total() + 2 && t.elapsed() < Duration::from_secs(2) {
        r.poll();
    }
    let after = r.stack.stats();
    assert_eq!(after.ipv4_bad_checksum, before.ipv4_bad_checksum + 1);
    assert_eq!(after.ipv4_truncated, before.ipv4_truncated + 1);
    let mut ping =
        r.ns.command("ping")
            .args(["-c", "2", "-i", "0.2", "-W", "2", "10.79.0.2"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
    assert!(r.serve_until(&mut ping), "still answering");
    r.finish();
}

/// Threaded mode against the kernel: a poller thread drives the TAP port, the test's thread
/// holds a blocking socket (sleeping on an eventfd) and talks to kernel UDP sockets both ways.
#[test]
fn threaded_sockets_talk_to_the_kernel_both_ways() {
    use rdk_core::os::{EventNotifier, Events};
    use rdk_core::udp::{threaded, ServiceConfig};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    if !need_netns("threaded_sockets_talk_to_the_kernel_both_ways") {
        return;
    }
    let Rig {
        ns,
        iface: _iface,
        mut port,
        stack,
        pool,
    } = Rig::new("udpt");
    let svc_cfg = ServiceConfig {
        events: Some(Arc::new(|| {
            LinuxOs::plain()
                .event_create()
                .map(|e| Box::new(e) as Box<dyn EventNotifier>)
        })),
        ..ServiceConfig::default()
    };
    let (mut poller, service) = threaded(stack, svc_cfg).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let poll_thread = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            let q = port.queues().unwrap();
            poller.poll(&mut q.rx[0], &mut q.tx[0]);
        }
        let stats = poller.stack().stats();
        drop(poller);
        port.stop().unwrap();
        port.close().unwrap();
        stats
    });
    let mut s = service.socket().unwrap();
    s.bind(SocketAddrV4::new(RDK_IP, 9998)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5)));
    // rdk → kernel, cold ARP.
    let rx = Peer::start({
        let mut c = ns.command("python3");
        c.args(["-c", PY_UDP_RECV, "10.79.0.1", "7778", "5", "hex"]);
        c
    });
    let first: Vec<u8> = (0..700u32).map(|i| (i * 7) as u8).collect();
    s.send_to(&first, SocketAddrV4::new(KERNEL_IP, 7778))
        .unwrap();
    assert_eq!(rx.finish(), [hex(&first)]);
    // kernel → rdk, echoed back (zero-copy: the received mbuf goes back out).
    let msg: Vec<u8> = (0..1200u32).map(|i| (i % 241) as u8).collect();
    let client = ns
        .command("python3")
        .args(["-c", PY_ECHO_CLIENT, "10.79.0.2", "9998", &hex(&msg), "5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (m, from) = s.recv_mbuf().unwrap();
    assert_eq!(m.data(), &msg[..], "byte-exact from the kernel");
    assert_eq!(*from.ip(), KERNEL_IP);
    s.send_mbuf(m, from).unwrap();
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "the kernel client got no echo");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hex(&msg));
    s.close().unwrap();
    stop.store(true, Ordering::Relaxed);
    let stats = poll_thread.join().unwrap();
    drop(service);
    assert_eq!(
        stats.total(),
        stats.eth_unknown_type + stats.eth_not_for_us + stats.arp_ignored,
        "only the kernel's own chatter (IPv6 off, but e.g. its gratuitous ARP) may be dropped: {stats:?}"
    );
    assert_eq!(pool.available(), pool.size(), "every mbuf back");
    drop(ns);
}
