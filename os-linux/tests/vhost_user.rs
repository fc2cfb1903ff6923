//! The vhost-user frontend against the real thing: DPDK 22.11's `net_vhost` in a `dpdk-testpmd`
//! (server mode), sharing a memfd hugepage region with this process.
//!
//! Needs root (hugepages) and `dpdk-testpmd`; a missing prerequisite is a skip, or a failure
//! under `CI=true` (see `common::require`). Each test starts its own testpmd on a socket path
//! of its own and stops it (and removes its files) at the end, also on failure.

mod common;

use common::{hugepages, note, require};
use rdk_core::addr::VirtAddr;
use rdk_core::os::{DmaAlloc, DmaRegion, DmaRequest, EventNotifier};
use rdk_os_linux::vhost_user::features::{protocol, virtio};
use rdk_os_linux::vhost_user::{
    FeatureSet, MemRegion, VhostUserError, VhostUserFrontend, VringAddrs,
    FRONTEND_PROTOCOL_FEATURES,
};
use rdk_os_linux::{EventFd, HugePageSize, IovaMode, LinuxOs, LinuxRegion, MemoryConfig};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const MIB2: usize = 2 << 20;
/// Ring size for both rings.
const QSIZE: u16 = 256;
/// virtio 1.x net header (with `num_buffers`): what precedes every frame in a buffer.
const NET_HDR: usize = 12;
/// The MAC testpmd gives `net_vhost0` (DPDK's eth_vhost: "VHOST" then the port number).
const VHOST_MAC: [u8; 6] = [0x56, 0x48, 0x4f, 0x53, 0x54, 0x00];
/// VIRTIO_CONFIG_S_* (virtio 1.x 2.1): ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK.
const STATUS_DRIVER_OK: u8 = 1 | 2 | 8 | 4;

/// What must be there, or why not.
fn prerequisites(test: &str) -> Option<common::HugeEnv> {
    let testpmd = Command::new("dpdk-testpmd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("dpdk-testpmd not runnable ({e}); apt-get install dpdk"))
        .map(drop);
    require(test, testpmd)?;
    require(test, hugepages(HugePageSize::Size2M, 2))
}

/// A `dpdk-testpmd -i` with one `net_vhost` port in server mode, driven through its prompt.
struct Backend {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: Vec<String>,
    sock: PathBuf,
    prefix: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A socket path no other test (or run) uses.
fn socket_path() -> PathBuf {
    PathBuf::from(format!(
        "/tmp/rdk-vhu-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Backend {
    /// Starts testpmd with `net_vhost0` listening on `sock` with two queue pairs, and waits
    /// for the socket.
    fn start(sock: &Path) -> Backend {
        let _ = std::fs::remove_file(sock);
        let prefix = format!(
            "rdkvhu{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let vdev = format!("net_vhost0,iface={},queues=2,client=0", sock.display());
        let mut child = Command::new("stdbuf")
            .args(["-oL", "-eL", "dpdk-testpmd", "--no-pci", "-l", "0-1"])
            // testpmd's own mbufs need no hugepages: the vhost library copies between our
            // shared memory and them.
            .args([
                "--no-huge",
                "-m",
                "256",
                "--no-shconf",
                "--file-prefix",
                &prefix,
            ])
            .args(["--vdev", &vdev, "--log-level=lib.vhost.config:debug"])
            .args(["--", "-i", "--total-num-mbufs=2048"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dpdk-testpmd");
        let stdin = child.stdin.take().unwrap();
        let (tx, rx) = channel();
        for r in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut b = Backend {
            child,
            stdin,
            lines: rx,
            log: Vec::new(),
            sock: sock.to_path_buf(),
            prefix,
        };
        b.expect("binding succeeded", Duration::from_secs(60));
        b
    }

    /// Reads output until a line contains `pat`.
    fn wait_for(&mut self, pat: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let l = self.lines.recv_timeout(left).ok()?;
            self.log.push(l.clone());
            if l.contains(pat) {
                return Some(l);
            }
        }
    }

    /// [`wait_for`](Self::wait_for), failing the test with the log if it does not come.
    fn expect(&mut self, pat: &str, timeout: Duration) -> String {
        self.wait_for(pat, timeout).unwrap_or_else(|| {
            panic!(
                "dpdk-testpmd never printed {pat:?}; its output:\n{}",
                self.log.join("\n")
            )
        })
    }

    /// Reads whatever output is pending.
    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
    }

    fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to dpdk-testpmd");
        self.stdin.flush().unwrap();
    }

    /// The port's counters (`show port stats 0`): what the vhost PMD counted, i.e. what the
    /// vhost library took from or put into our rings.
    fn port_stats(&mut self) -> PortStats {
        self.drain();
        self.cmd("show port stats 0");
        self.expect("NIC statistics for port 0", Duration::from_secs(10));
        let rx = self.expect("RX-packets:", Duration::from_secs(5));
        let tx = self.expect("TX-packets:", Duration::from_secs(5));
        let num = |l: &str, key: &str| -> u64 {
            l.split(key)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no number after {key} in {l:?}"))
        };
        PortStats {
            rx_packets: num(&rx, "RX-packets:"),
            rx_bytes: num(&rx, "RX-bytes:"),
            tx_packets: num(&tx, "TX-packets:"),
            tx_bytes: num(&tx, "TX-bytes:"),
        }
    }

    /// Kills it at once (no goodbye on the socket).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        let _ = std::fs::remove_file(&self.sock);
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

/// testpmd's counters for port 0.
#[derive(Debug, PartialEq, Eq)]
struct PortStats {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
}

/// A split virtqueue (virtio 1.x 2.7) laid out in a shared region by hand: descriptor table,
/// available ring, used ring, and the driver's shadow indices.
struct SplitRing {
    base: *mut u8,
    desc: usize,
    avail: usize,
    used: usize,
    avail_idx: u16,
    used_seen: u16,
}

impl SplitRing {
    /// The ring at `offset` in `region` (offset page aligned; needs 16 KiB).
    fn new(region: &LinuxRegion, offset: usize) -> SplitRing {
        assert!(offset + 16384 <= region.len());
        SplitRing {
            base: region.as_ptr(),
            desc: offset,
            avail: offset + 16 * QSIZE as usize,
            used: offset + 8192,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    fn addrs(&self) -> VringAddrs {
        let va = |off: usize| VirtAddr::from_ptr(self.base.wrapping_add(off));
        VringAddrs {
            desc: va(self.desc),
            avail: va(self.avail),
            used: va(self.used),
        }
    }

    fn write<T: Copy>(&self, off: usize, v: T) {
        // SAFETY: every offset used is inside the ring's 16 KiB, which `new` checked lies inside
        // the region, aligned for `T` (the layout keeps each field naturally aligned), and the
        // region outlives the ring in every test. Volatile: the backend reads it concurrently.
        unsafe { std::ptr::write_volatile(self.base.add(off).cast::<T>(), v) }
    }

    fn read<T: Copy>(&self, off: usize) -> T {
        // SAFETY: as in `write`; the backend writes the used ring concurrently, hence volatile.
        unsafe { std::ptr::read_volatile(self.base.add(off).cast::<T>()) }
    }

    /// Makes one buffer available: `len` bytes at `addr` (a guest-physical address = our VA
    /// here), device-writable if `write`.
    fn post(&mut self, addr: u64, len: u32, write: bool) {
        let id = self.avail_idx % QSIZE;
        let d = self.desc + 16 * id as usize;
        self.write(d, addr.to_le());
        self.write(d + 8, len.to_le());
        self.write(d + 12, (if write { 2u16 } else { 0 }).to_le()); // VIRTQ_DESC_F_WRITE
        self.write(d + 14, 0u16);
        self.write(self.avail + 4 + 2 * id as usize, id.to_le());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // The descriptor and ring entry before the index that publishes them.
        fence(Ordering::Release);
        self.write(self.avail + 2, self.avail_idx.to_le());
    }

    /// The used ring's index.
    fn used_idx(&self) -> u16 {
        let v = u16::from_le(self.read(self.used + 2));
        fence(Ordering::Acquire);
        v
    }

    /// Waits until the backend has used `n` more buffers than seen so far; returns their
    /// (id, len) pairs, or `None` on timeout.
    fn wait_used(&mut self, n: u16, timeout: Duration) -> Option<Vec<(u32, u32)>> {
        let end = Instant::now() + timeout;
        while self.used_idx().wrapping_sub(self.used_seen) < n {
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = (0..n)
            .map(|i| {
                let slot = self.used_seen.wrapping_add(i) % QSIZE;
                let e = self.used + 4 + 8 * slot as usize;
                (u32::from_le(self.read(e)), u32::from_le(self.read(e + 4)))
            })
            .collect();
        self.used_seen = self.used_seen.wrapping_add(n);
        Some(out)
    }
}

/// The shared memory of one test: a 2 MiB memfd hugepage with both rings (RX = vring 0 at
/// 0, TX = vring 1 at 32 KiB) and packet buffers from 64 KiB.
struct Shared {
    region: LinuxRegion,
}

const RX_RING: usize = 0;
const TX_RING: usize = 32 << 10;
const BUFS: usize = 64 << 10;
const BUF_SIZE: usize = 2048;

impl Shared {
    fn new() -> Shared {
        let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Va)).unwrap();
        let region = os.dma_alloc(&DmaRequest::new("vhost-user", MIB2)).unwrap();
        Shared { region }
    }

    /// Buffer `i`'s address (VA = guest-physical here).
    fn buf(&self, i: usize) -> u64 {
        self.region.va().get() as u64 + (BUFS + i * BUF_SIZE) as u64
    }

    fn bytes(&self, i: usize, len: usize) -> Vec<u8> {
        assert!(len <= BUF_SIZE);
        // SAFETY: buffer `i` lies inside the region (tests use fewer than 900 buffers of 2 KiB
        // from 64 KiB); read after the used index said the backend is done with it.
        unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(BUFS + i * BUF_SIZE), len) }
            .to_vec()
    }

    fn fill(&self, i: usize, data: &[u8]) {
        assert!(data.len() <= BUF_SIZE);
        // SAFETY: as in `bytes`; the buffer is not yet posted, so the backend does not read it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.region.as_ptr().add(BUFS + i * BUF_SIZE),
                data.len(),
            )
        }
    }
}

/// One queue pair set up the way QEMU does it, returning the rings and notifiers.
struct Pair {
    rx: SplitRing,
    tx: SplitRing,
    kicks: [EventFd; 2],
    calls: [EventFd; 2],
}

/// Negotiates like QEMU: features, protocol features, owner, queue count.
fn negotiate(fe: &mut VhostUserFrontend) -> (u64, u64) {
    let offered = fe.get_features().unwrap();
    let want = 1 << virtio::F_VERSION_1 | 1 << virtio::USER_F_PROTOCOL_FEATURES;
    let proto = fe.get_protocol_features().unwrap();
    fe.set_protocol_features(proto & FRONTEND_PROTOCOL_FEATURES)
        .unwrap();
    fe.set_owner().unwrap();
    fe.set_features(offered & want).unwrap();
    (offered, proto)
}

fn setup_pair(fe: &mut VhostUserFrontend, shared: &Shared) -> Pair {
    fe.set_mem_table(&[MemRegion::of(&shared.region).unwrap()])
        .unwrap();
    let p = Pair {
        rx: SplitRing::new(&shared.region, RX_RING),
        tx: SplitRing::new(&shared.region, TX_RING),
        kicks: [EventFd::new().unwrap(), EventFd::new().unwrap()],
        calls: [EventFd::new().unwrap(), EventFd::new().unwrap()],
    };
    for (q, ring) in [(0, &p.rx), (1, &p.tx)] {
        fe.set_vring_num(q, QSIZE.into()).unwrap();
        fe.set_vring_base(q, 0).unwrap();
        fe.set_vring_addr(q, ring.addrs()).unwrap();
        fe.set_vring_kick(q, Some(p.kicks[q as usize].as_fd()))
            .unwrap();
        fe.set_vring_call(q, Some(p.calls[q as usize].as_fd()))
            .unwrap();
        fe.set_vring_enable(q, true).unwrap();
    }
    if fe.has_protocol_feature(protocol::STATUS) {
        fe.set_status(STATUS_DRIVER_OK).unwrap();
    }
    p
}

/// A 60-byte broadcast frame from `src`.
fn frame(src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    f.resize(60, tag);
    f
}

#[test]
fn negotiates_features_protocol_features_and_queues_with_dpdk() {
    const T: &str = "negotiates_features_protocol_features_and_queues_with_dpdk";
    let Some(_env) = prerequisites(T) else { return };
    let mut b = Backend::start(&socket_path());
    let mut fe = VhostUserFrontend::connect_within(&b.sock, Duration::from_secs(30)).unwrap();
    let (offered, proto) = negotiate(&mut fe);
    note(
        T,
        &format!(
            "net_vhost offers features {offered:#x} ({}) and protocol features {proto:#x} ({})",
            FeatureSet::Virtio.describe(offered),
            FeatureSet::Protocol.describe(proto)
        ),
    );
    assert_ne!(offered & 1 << virtio::F_VERSION_1, 0, "VERSION_1 (bit 32)");
    assert_ne!(offered & 1 << virtio::USER_F_PROTOCOL_FEATURES, 0, "bit 30");
    assert_ne!(proto & 1 << protocol::MQ, 0);
    assert_ne!(proto & 1 << protocol::REPLY_ACK, 0);
    // DPDK 22.11 answers with the vhost library's maximum (VHOST_MAX_QUEUE_PAIRS = 128), not
    // the queues= devarg: the count bounds what may be set up, it is not what the port uses.
    let queues = fe.get_queue_num().unwrap();
    note(T, &format!("GET_QUEUE_NUM: {queues} (devarg queues=2)"));
    assert!(queues >= 2, "{queues}");
    // Everything after SET_PROTOCOL_FEATURES asks for an acknowledgement (REPLY_ACK); ring
    // addresses before any memory table are refused with one, and the session goes on.
    let bogus = VringAddrs {
        desc: VirtAddr::new(0x1000),
        avail: VirtAddr::new(0x2000),
        used: VirtAddr::new(0x3000),
    };
    let e = fe.set_vring_addr(0, bogus).unwrap_err();
    assert!(matches!(e, VhostUserError::Nack { code: 1, .. }), "{e:?}");
    assert!(!e.is_fatal() && fe.is_connected());
    // DPDK allocates rings on demand, past the queues= devarg.
    fe.set_vring_num(4, 256).unwrap();
    fe.check_connection().unwrap();
    // Asking for an unoffered feature is caught before anything is sent.
    let e = fe.set_features(1 << 63).unwrap_err();
    assert!(
        matches!(e, VhostUserError::FeatureNotOffered { set: FeatureSet::Virtio, missing } if missing == 1 << 63),
        "{e}"
    );
    assert!(
        e.to_string().contains("does not support feature(s) bit 63"),
        "{e}"
    );
    // RESET_OWNER ends the session on the same connection (acknowledged, as REPLY_ACK was
    // on), and a new one starts from scratch.
    fe.reset_owner().unwrap();
    assert_eq!(fe.acked_features(), None);
    b.expect("VHOST_USER_RESET_OWNER succeeded", Duration::from_secs(5));
    negotiate(&mut fe);
    fe.check_connection().unwrap();
}

#[test]
fn dpdk_moves_packets_through_our_rings_and_memory() {
    const T: &str = "dpdk_moves_packets_through_our_rings_and_memory";
    let Some(_env) = prerequisites(T) else { return };
    let shared = Shared::new();
    let mut b = Backend::start(&socket_path());
    let mut fe = VhostUserFrontend::connect_within(&b.sock, Duration::from_secs(30)).unwrap();
    negotiate(&mut fe);
    let mut p = setup_pair(&mut fe, &shared);
    b.expect("ready for processing", Duration::from_secs(10));

    // TX (vring 1): one frame the backend must read from our memory; testpmd counts it.
    b.cmd("set fwd rxonly");
    b.cmd("start");
    b.expect("rxonly packet forwarding", Duration::from_secs(10));
    let mut out = vec![0u8; NET_HDR];
    out.extend_from_slice(&frame([2, 0, 0, 0, 0, 1], 0xab));
    shared.fill(0, &out);
    p.tx.post(shared.buf(0), out.len() as u32, false);
    p.kicks[1].signal().unwrap();
    let used =
        p.tx.wait_used(1, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("TX buffer never used; testpmd:\n{}", b.log.join("\n")));
    assert_eq!(used[0].0, 0, "descriptor id");
    b.cmd("stop");
    let st = b.port_stats();
    // The frame without the virtio-net header: DPDK read it out of our buffer.
    assert_eq!((st.rx_packets, st.rx_bytes), (1, 60), "{st:?}");

    // RX (vring 0): device-writable buffers that testpmd's txonly frames must land in.
    let n = 8u16;
    for i in 0..n as usize {
        p.rx.post(shared.buf(1 + i), BUF_SIZE as u32, true);
    }
    p.kicks[0].signal().unwrap();
    b.cmd("set fwd txonly");
    b.cmd("start");
    let used =
        p.rx.wait_used(n, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("RX buffers never used; testpmd:\n{}", b.log.join("\n")));
    b.cmd("stop");
    let st = b.port_stats();
    // txonly sends until stopped; the vhost PMD counts only what fitted in our buffers.
    assert_eq!(st.tx_packets, u64::from(n), "{st:?}");
    assert_eq!(st.tx_bytes, u64::from(n) * 64, "{st:?}");
    for (k, (id, len)) in used.into_iter().enumerate() {
        assert_eq!(id, k as u32, "in order");
        // txonly's default frame is 64 bytes, behind the 12-byte header.
        assert_eq!(len as usize, NET_HDR + 64);
        let data = shared.bytes(1 + k, len as usize);
        assert_eq!(&data[NET_HDR + 6..NET_HDR + 12], &VHOST_MAC, "source MAC");
        assert_eq!(&data[NET_HDR + 12..NET_HDR + 14], &[0x08, 0x00], "IPv4");
    }
    assert!(
        p.calls[0].ack().unwrap() > 0,
        "the backend signalled the call eventfd"
    );

    // Stopping the rings: GET_VRING_BASE says where the backend would read next.
    assert_eq!(fe.get_vring_base(0).unwrap(), u32::from(n));
    assert_eq!(fe.get_vring_base(1).unwrap(), 1);
    assert_eq!(fe.vring_base(0), Some(u32::from(n)));
}

#[test]
fn a_killed_backend_is_a_typed_error_and_a_restarted_one_gets_the_session_back() {
    const T: &str = "a_killed_backend_is_a_typed_error_and_a_restarted_one_gets_the_session_back";
    let Some(_env) = prerequisites(T) else { return };
    let shared = Shared::new();
    let sock = socket_path();
    let mut b = Backend::start(&sock);
    let mut fe = VhostUserFrontend::connect_within(&sock, Duration::from_secs(30)).unwrap();
    fe.set_timeout(Duration::from_secs(2));
    negotiate(&mut fe);
    let mut p = setup_pair(&mut fe, &shared);
    b.expect("ready for processing", Duration::from_secs(10));
    fe.check_connection().unwrap();

    b.kill();
    let start = Instant::now();
    let e = fe.check_connection().unwrap_err();
    assert!(
        matches!(e, VhostUserError::BackendClosed { request: None }),
        "{e}"
    );
    assert!(e.to_string().contains("closed the socket"), "{e}");
    assert!(!fe.is_connected());
    let e = fe.get_features().unwrap_err();
    assert!(matches!(e, VhostUserError::Disconnected { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(1), "no hang");
    drop(b);

    // A frontend that has not noticed yet gets the typed error from the request itself.
    let mut b = Backend::start(&sock);
    fe.reconnect_within(Duration::from_secs(10)).unwrap();
    b.expect("ready for processing", Duration::from_secs(10));
    b.kill();
    let e = fe.set_vring_enable(1, true).unwrap_err();
    assert!(e.is_backend_closed(), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5), "no hang");
    drop(b);

    // Restarted: the whole session is replayed, with the bases the driver knows from its
    // used rings, and data flows through the same rings.
    fe.note_vring_base(0, p.rx.used_idx().into()).unwrap();
    fe.note_vring_base(1, p.tx.used_idx().into()).unwrap();
    let mut b = Backend::start(&sock);
    fe.reconnect_within(Duration::from_secs(10)).unwrap();
    b.expect("ready for processing", Duration::from_secs(10));
    b.cmd("set fwd rxonly");
    b.cmd("start");
    b.expect("rxonly packet forwarding", Duration::from_secs(10));
    let mut out = vec![0u8; NET_HDR];
    out.extend_from_slice(&frame([2, 0, 0, 0, 0, 2], 0xcd));
    shared.fill(0, &out);
    p.tx.post(shared.buf(0), out.len() as u32, false);
    p.kicks[1].signal().unwrap();
    p.tx.wait_used(1, Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "TX after reconnect never used; testpmd:\n{}",
                b.log.join("\n")
            )
        });
    b.cmd("stop");
    assert_eq!(b.port_stats().rx_packets, 1);

    // The frontend's own disconnect, then a reconnect to the same (live) backend.
    fe.disconnect();
    fe.note_vring_base(1, p.tx.used_idx().into()).unwrap();
    assert_eq!(fe.vring_base(1), Some(1));
    b.expect("vhost peer closed", Duration::from_secs(10));
    fe.reconnect().unwrap();
    b.expect("ready for processing", Duration::from_secs(10));
    b.cmd("start");
    b.expect("rxonly packet forwarding", Duration::from_secs(10));
    shared.fill(1, &out);
    p.tx.post(shared.buf(1), out.len() as u32, false);
    p.kicks[1].signal().unwrap();
    p.tx.wait_used(1, Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "TX after the second reconnect never used; testpmd:\n{}",
                b.log.join("\n")
            )
        });
    b.cmd("stop");
    assert_eq!(b.port_stats().rx_packets, 2);
    b.drain();
    // The replayed bases matched the rings: DPDK had nothing to repair.
    assert!(
        b.log
            .iter()
            .any(|l| l.contains("vring base idx:1 last_used_idx:1")),
        "base 1 replayed"
    );
    assert!(
        !b.log.iter().any(|l| l.contains("mismatches")),
        "DPDK found a stale base:\n{}",
        b.log.join("\n")
    );
}

/// Sets up both rings of the first pair on `fe` (negotiated already), without enabling them.
fn rings_without_enable(
    fe: &mut VhostUserFrontend,
    shared: &Shared,
    kick: &EventFd,
    call: &EventFd,
) {
    fe.set_mem_table(&[MemRegion::of(&shared.region).unwrap()])
        .unwrap();
    for (q, off) in [(0, RX_RING), (1, TX_RING)] {
        fe.set_vring_num(q, QSIZE.into()).unwrap();
        fe.set_vring_base(q, 0).unwrap();
        fe.set_vring_addr(q, SplitRing::new(&shared.region, off).addrs())
            .unwrap();
        fe.set_vring_kick(q, Some(kick.as_fd())).unwrap();
        fe.set_vring_call(q, Some(call.as_fd())).unwrap();
    }
}

#[test]
fn dpdk_starts_a_device_only_once_its_rings_are_enabled_and_driver_ok_is_set() {
    const T: &str = "dpdk_starts_a_device_only_once_its_rings_are_enabled_and_driver_ok_is_set";
    let Some(_env) = prerequisites(T) else { return };
    let shared = Shared::new();
    let mut b = Backend::start(&socket_path());
    let mut fe = VhostUserFrontend::connect_within(&b.sock, Duration::from_secs(30)).unwrap();
    let kick = EventFd::new().unwrap();
    let call = EventFd::new().unwrap();
    let features = 1 << virtio::F_VERSION_1 | 1 << virtio::USER_F_PROTOCOL_FEATURES;
    let ready = "ready for processing";

    // Protocol features without STATUS: readiness hangs on the rings alone.
    fe.get_features().unwrap();
    fe.get_protocol_features().unwrap();
    fe.set_protocol_features(1 << protocol::MQ | 1 << protocol::REPLY_ACK)
        .unwrap();
    fe.set_owner().unwrap();
    fe.set_features(features).unwrap();
    rings_without_enable(&mut fe, &shared, &kick, &call);
    assert!(
        b.wait_for(ready, Duration::from_secs(2)).is_none(),
        "with VHOST_USER_F_PROTOCOL_FEATURES, rings start disabled"
    );
    fe.set_vring_enable(0, true).unwrap();
    assert!(
        b.wait_for(ready, Duration::from_secs(1)).is_none(),
        "both rings of the first pair must be enabled"
    );
    fe.set_vring_enable(1, true).unwrap();
    b.expect(ready, Duration::from_secs(10));
    // GET_VRING_BASE stops the device (DPDK calls the application's destroy_device).
    assert_eq!(fe.get_vring_base(1).unwrap(), 0);
    b.expect("link state change", Duration::from_secs(10));

    // A second session on the same connection, with STATUS: enabled rings are not enough,
    // the device starts at DRIVER_OK.
    fe.reset_owner().unwrap();
    fe.get_features().unwrap();
    fe.get_protocol_features().unwrap();
    fe.set_protocol_features(FRONTEND_PROTOCOL_FEATURES)
        .unwrap();
    fe.set_owner().unwrap();
    fe.set_features(features).unwrap();
    rings_without_enable(&mut fe, &shared, &kick, &call);
    fe.set_vring_enable(0, true).unwrap();
    fe.set_vring_enable(1, true).unwrap();
    assert!(
        b.wait_for(ready, Duration::from_secs(2)).is_none(),
        "with STATUS negotiated, DPDK waits for DRIVER_OK"
    );
    fe.set_status(STATUS_DRIVER_OK).unwrap();
    b.expect(ready, Duration::from_secs(10));
    assert_eq!(fe.get_status().unwrap(), STATUS_DRIVER_OK);
}
