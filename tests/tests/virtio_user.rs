//! rdk's virtio-net PMD over vhost-user (virtio-user) against DPDK 22.11's vhost backend
//! (`dpdk-testpmd --vdev net_vhost0,iface=SOCK,queues=2,client=0`).
//!
//! Needs root (hugepages for the shared memory) and `dpdk-testpmd`; a missing prerequisite
//! is a skip, or a failure under `CI=true`. Every test starts its own testpmd on a socket of
//! its own, and ends with the mbuf pool full.

use rdk_core::ethdev::{
    EthError, Port, PortConfig, RxQueue, RxQueueConfig, TxQueue, TxQueueConfig,
};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_core::virtio::Features;
use rdk_os_linux::intr::RxIntrWaiter;
use rdk_os_linux::vhost_user::{SharedMemory, VhostUserTransport, VirtioUserConfig};
use rdk_os_linux::LinuxOs;
use rdk_pmd_virtio::{VirtioNet, VirtioNetConfig};
use rdk_tests::dpdk::{need_testpmd, VhostTestpmd};
use rdk_tests::frames::{chain_of, flatten, ipv4_udp_frame};
use rdk_tests::netns::{is_root, prerequisite, unique_name};
use rdk_tests::port::xstat;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Dev = VirtioNet<VhostUserTransport, SharedMemory>;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0x5a, 1];

/// One test at a time: each runs a busy-polling testpmd, and two machines' worth of them on
/// two CPUs would starve each other into timeouts.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn prerequisites(test: &str) -> bool {
    prerequisite(
        test,
        is_root(),
        "needs root (hugepages shared with the backend)",
    ) && need_testpmd(test)
}

fn sock() -> PathBuf {
    PathBuf::from(format!("/tmp/{}.sock", unique_name("rdkvu")))
}

/// What every test starts with: the one-at-a-time lock, the prerequisites (`None`: skipped,
/// said why), and a testpmd with `queues` net_vhost queues in forward mode `fwd` on a socket
/// of its own.
fn backend(
    test: &str,
    queues: u16,
    fwd: &str,
) -> Option<(std::sync::MutexGuard<'static, ()>, PathBuf, VhostTestpmd)> {
    let one = serial();
    if !prerequisites(test) {
        return None;
    }
    let s = sock();
    let b = VhostTestpmd::start(&s, queues, "0-1", fwd);
    Some((one, s, b))
}

/// A started virtio-user port with `pairs` queue pairs, features narrowed by `devargs`, mbufs
/// of 2048 data bytes.
fn port(path: &Path, pairs: u16, devargs: &str) -> (Port<Dev>, PktMbufPool, SharedMemory) {
    port_with(path, pairs, devargs, 2048)
}

/// [`port`] with mbufs of `data_room` bytes.
fn port_with(
    path: &Path,
    pairs: u16,
    devargs: &str,
    data_room: u16,
) -> (Port<Dev>, PktMbufPool, SharedMemory) {
    port_cfg(path, devargs, data_room, &PortConfig::queues(pairs, pairs))
}

/// The device: connected to the backend at `path` with `pairs` queue pairs, features narrowed
/// by `devargs`, negotiated; and the memory it shares with the backend.
fn device(path: &Path, pairs: u16, devargs: &str) -> (Dev, SharedMemory) {
    let mem = SharedMemory::new();
    let args = rdk_core::ethdev::DevArgs::parse(&format!(
        "net_virtio_user0,path={},queues={pairs},mac=02:00:00:00:5a:01{devargs}",
        path.display()
    ))
    .unwrap();
    let tcfg = VirtioUserConfig::from_devargs(&args).unwrap();
    let t = VhostUserTransport::connect(tcfg, mem.clone()).expect("connect to net_vhost");
    let mut cfg = VirtioNetConfig::features_from_devargs(&args).unwrap();
    cfg.port_id = 0;
    let drv = VirtioNet::new(t, mem.clone(), cfg).expect("negotiate with net_vhost");
    (drv, mem)
}

/// [`port_with`] configured by `pc` (its queue counts, which must be equal, are the pairs).
fn port_cfg(
    path: &Path,
    devargs: &str,
    data_room: u16,
    pc: &PortConfig,
) -> (Port<Dev>, PktMbufPool, SharedMemory) {
    let pairs = pc.nb_rxq;
    assert_eq!(pairs, pc.nb_txq, "queue pairs");
    let (drv, mem) = device(path, pairs, devargs);
    let name = unique_name("vu");
    let mut pcfg = PktMbufPoolConfig::new(&name, 4096);
    pcfg.data_room = data_room;
    let pool = PktMbufPool::create(&mem, &pcfg).expect("mbuf pool in shared memory");
    let mut p = Port::new(0, drv);
    p.configure(pc).unwrap();
    for q in 0..pairs {
        p.rx_queue_setup(q, 256, &pool, &RxQueueConfig::default())
            .unwrap();
        p.tx_queue_setup(q, 256, &TxQueueConfig::default()).unwrap();
    }
    p.start().unwrap_or_else(|e| {
        panic!(
            "start: {e} ({:?})",
            p.driver()
                .with_transport(|t| t.last_error().map(str::to_string))
        )
    });
    (p, pool, mem)
}

/// Waits until the port reports link up (the backend has the rings).
fn wait_link(p: &mut Port<Dev>, up: bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while p.link_update().up != up {
        assert!(
            Instant::now() < end,
            "link never went {}",
            if up { "up" } else { "down" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Frame `i`: UDP to port 9, a payload whose length and bytes depend on `i`.
fn frame(i: usize) -> Vec<u8> {
    let len = 18 + (i * 37) % 1400;
    let payload: Vec<u8> = (0..len).map(|k| (i * 7 + k) as u8).collect();
    ipv4_udp_frame(
        MAC,
        [0x02, 0, 0, 0, 0x5a, 2],
        [10, 9, 0, 1],
        [10, 9, 0, 2],
        1000 + (i % 100) as u16,
        9,
        &payload,
    )
}

/// Sends frames `range` on queue `q`, pushing until all are taken.
fn send(p: &mut Port<Dev>, pool: &PktMbufPool, q: usize, range: std::ops::Range<usize>) {
    if let Err(off) = push(&mut p.queues().unwrap().tx[q], pool, range) {
        panic!("tx stalled at {off}: {:?} {:?}", p.xstats(), p.driver());
    }
}

/// Pushes frames `range` into `tx` until all are taken; `Err(k)`: only `k` were within 10 s.
fn push(
    tx: &mut impl TxQueue,
    pool: &PktMbufPool,
    range: std::ops::Range<usize>,
) -> Result<(), usize> {
    let end = Instant::now() + Duration::from_secs(10);
    let seg = pool.data_room() as usize;
    let mut pending: Vec<Option<Mbuf>> = range
        .map(|i| Some(chain_of(pool, &frame(i), seg)))
        .collect();
    let mut off = 0;
    while off < pending.len() {
        if Instant::now() >= end {
            return Err(off);
        }
        let k = (pending.len() - off).min(32);
        off += tx.tx_burst(&mut pending[off..off + k]);
    }
    Ok(())
}

/// Receives until `want` frames arrived on queue `q` (or 10 s passed).
fn recv(p: &mut Port<Dev>, q: usize, want: usize) -> Vec<Mbuf> {
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    let mut burst: [Option<Mbuf>; 32] = Default::default();
    while got.len() < want && Instant::now() < end {
        let n = p.queues().unwrap().rx[q].rx_burst(&mut burst);
        got.extend(burst[..n].iter_mut().filter_map(Option::take));
        if n == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    got
}

/// testpmd reflects (io forward, loop topology) what rdk sends: every frame comes back on the
/// same queue, byte for byte, and testpmd counted exactly as many both ways.
/// With `MRG_RXBUF` the mbufs hold 512 bytes, so long frames go out as descriptor chains and
/// come back merged from several buffers.
fn reflect(test: &str, devargs: &str, want: Features, refuse: Features) {
    let Some((_one, s, mut b)) = backend(test, 2, "io") else {
        return;
    };
    b.testpmd().start_forwarding();
    let room = if want.contains(Features::NET_MRG_RXBUF) {
        512
    } else {
        2048
    };
    let (mut p, pool, _mem) = port_with(&s, 1, devargs, room);
    let f = p.driver().features();
    assert!(
        f.contains(want),
        "{test}: negotiated {f:?}, wanted {want:?}"
    );
    assert!(
        !f.intersects(refuse),
        "{test}: negotiated {f:?}, refused {refuse:?}"
    );
    wait_link(&mut p, true);
    const N: usize = 2000;
    let mut back = Vec::new();
    // Chunks the receive ring holds even when every frame takes three 512-byte buffers.
    for chunk in 0..N / 50 {
        send(&mut p, &pool, 0, chunk * 50..(chunk + 1) * 50);
        back.extend(recv(&mut p, 0, 50).into_iter().map(|m| flatten(&m)));
    }
    back.extend(
        recv(&mut p, 0, N - back.len())
            .into_iter()
            .map(|m| flatten(&m)),
    );
    reflected_all(test, &mut b, p, &pool, &back, N, room == 512);
}

/// The end of a reflection: `n` frames came back byte-exact, testpmd and the port counted
/// exactly `n` each way with no error, some came back merged when `merged`, and after close
/// every mbuf is back in the pool.
fn reflected_all(
    test: &str,
    b: &mut VhostTestpmd,
    mut p: Port<Dev>,
    pool: &PktMbufPool,
    back: &[Vec<u8>],
    n: usize,
    merged: bool,
) {
    assert_eq!(back.len(), n, "{test}: frames reflected");
    for (i, got) in back.iter().enumerate() {
        assert_eq!(got, &frame(i), "{test}: frame {i} differs");
    }
    assert_eq!(
        b.port_counts(),
        (n as u64, n as u64),
        "{test}: testpmd's counts"
    );
    let st = p.stats();
    assert_eq!((st.ipackets, st.opackets), (n as u64, n as u64));
    assert_eq!(st.ierrors + st.oerrors + st.rx_nombuf, 0);
    if merged {
        assert!(
            back.iter().any(|f| f.len() > 512),
            "{test}: no merged frame"
        );
    }
    p.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "{test}: mbufs leaked");
}

#[test]
fn split_mrg_off_reflected_byte_exact() {
    reflect(
        "split_mrg_off_reflected_byte_exact",
        ",packed_vq=0,mrg_rxbuf=0",
        Features::VERSION_1,
        // EVENT_IDX is off unless asked for (the devargs' default).
        Features::RING_PACKED | Features::NET_MRG_RXBUF | Features::EVENT_IDX,
    );
}

#[test]
fn split_mrg_on_reflected_byte_exact() {
    reflect(
        "split_mrg_on_reflected_byte_exact",
        ",packed_vq=0,mrg_rxbuf=1,event_idx=1",
        Features::NET_MRG_RXBUF | Features::EVENT_IDX,
        Features::RING_PACKED,
    );
}

#[test]
fn packed_mrg_off_reflected_byte_exact() {
    reflect(
        "packed_mrg_off_reflected_byte_exact",
        ",packed_vq=1,mrg_rxbuf=0",
        Features::RING_PACKED,
        Features::NET_MRG_RXBUF | Features::EVENT_IDX,
    );
}

#[test]
fn packed_mrg_on_reflected_byte_exact() {
    reflect(
        "packed_mrg_on_reflected_byte_exact",
        ",packed_vq=1,mrg_rxbuf=1,event_idx=1",
        Features::RING_PACKED | Features::NET_MRG_RXBUF | Features::EVENT_IDX,
        Features::empty(),
    );
}

/// testpmd's txonly frames (64 bytes: 198.18.0.1 -> 198.18.0.2, UDP 9 -> 9) arrive intact,
/// and rdk received exactly what testpmd says it sent.
#[test]
fn testpmd_txonly_received_exactly() {
    let test = "testpmd_txonly_received_exactly";
    let Some((_one, s, mut b)) = backend(test, 1, "txonly") else {
        return;
    };
    let (mut p, pool, _mem) = port(&s, 1, ",packed_vq=0");
    wait_link(&mut p, true);
    b.testpmd().start_forwarding();
    let check = |got: Vec<Mbuf>| {
        for m in &got {
            let f = flatten(m);
            assert_eq!(f.len(), 64, "{test}: txonly frame length");
            assert_eq!(&f[12..14], &[0x08, 0x00], "{test}: IPv4");
            assert_eq!(f[23], 17, "{test}: UDP");
            assert_eq!(
                &f[26..34],
                &[198, 18, 0, 1, 198, 18, 0, 2],
                "{test}: addresses"
            );
            assert_eq!(&f[34..38], &[0, 9, 0, 9], "{test}: ports");
            assert_eq!(u16::from_be_bytes([f[16], f[17]]), 50, "{test}: IP length");
        }
        got.len()
    };
    let mut n = 0;
    while n < 20_000 {
        let got = recv(&mut p, 0, 256);
        assert!(!got.is_empty(), "{test}: only {n} frames from testpmd");
        n += check(got);
    }
    let (_, sent) = b.testpmd().stop_counts();
    // What was on its way when testpmd stopped.
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        n += check(recv(&mut p, 0, 1));
    }
    assert_eq!(n as u64, sent, "{test}: testpmd sent {sent}, rdk got {n}");
    assert_eq!(p.stats().ipackets, sent);
    p.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "{test}: mbufs leaked");
}

/// Two queue pairs: testpmd reflects each rdk queue on the same vhost queue; every frame
/// comes back on the queue it left by.
#[test]
fn two_pairs_each_reflected_on_its_queue() {
    let test = "two_pairs_each_reflected_on_its_queue";
    let Some((_one, s, mut b)) = backend(test, 2, "io") else {
        return;
    };
    b.testpmd().start_forwarding();
    let (mut p, pool, _mem) = port(&s, 2, "");
    assert!(p.driver().features().contains(Features::NET_MQ));
    wait_link(&mut p, true);
    const N: usize = 600;
    // Chunks each receive ring holds.
    for c in 0..N / 100 {
        let ranges = [
            (0, c * 100..(c + 1) * 100),
            (1, N + c * 100..N + (c + 1) * 100),
        ];
        for (q, r) in ranges.clone() {
            send(&mut p, &pool, q, r);
        }
        for (q, range) in ranges {
            let back: Vec<Vec<u8>> = recv(&mut p, q, 100).iter().map(flatten).collect();
            assert_eq!(back.len(), 100, "{test}: queue {q}");
            for (i, f) in range.zip(&back) {
                assert_eq!(f, &frame(i), "{test}: queue {q} frame {i}");
            }
        }
    }
    assert_eq!(b.port_counts(), (2 * N as u64, 2 * N as u64));
    let st = p.stats();
    assert_eq!(st.rx_queues[1].packets, N as u64);
    p.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "{test}: mbufs leaked");
}

/// Reflects frames `range` through the backend and checks them; on a shortfall says what both
/// sides counted (the port's xstats, testpmd's port stats and log).
fn round_trip(
    test: &str,
    b: &mut VhostTestpmd,
    p: &mut Port<Dev>,
    pool: &PktMbufPool,
    range: std::ops::Range<usize>,
) {
    send(p, pool, 0, range.clone());
    let back: Vec<Vec<u8>> = recv(p, 0, range.len()).iter().map(flatten).collect();
    if back.len() != range.len() {
        let counts = b.port_counts();
        panic!(
            "{test}: {} of {} frames reflected; testpmd rx/tx {counts:?}; rdk xstats {:?}; \
             driver {:?}\n--- testpmd log ---\n{}",
            back.len(),
            range.len(),
            p.xstats(),
            p.driver(),
            b.testpmd().log()
        );
    }
    for (i, f) in range.zip(&back) {
        assert_eq!(f, &frame(i), "{test}: frame {i}");
    }
}

/// The backend is killed: the link goes down (a link event), bursts return at once, nothing
/// leaks. It is started again: split rings resume where the dead backend stopped (frames sent
/// meanwhile go out then); packed rings ask for a reset, which the port does by itself while
/// the test keeps bursting (no stop/start; what was queued for the dead backend is freed).
fn reconnect(test: &str, devargs: &str, packed: bool) {
    let Some((_one, s, mut b)) = backend(test, 1, "io") else {
        return;
    };
    b.testpmd().start_forwarding();
    let (mut p, pool, _mem) = port(&s, 1, devargs);
    assert_eq!(
        p.driver().features().contains(Features::RING_PACKED),
        packed
    );
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let ev = events.clone();
    p.on_link_change(Box::new(move |_, l| ev.lock().unwrap().push(l.up)));
    wait_link(&mut p, true);
    round_trip(test, &mut b, &mut p, &pool, 0..100);

    b.kill();
    drop(b);
    wait_link(&mut p, false);
    // Down: transmit queues (fewer frames than the receive ring holds, so that all of them
    // can come back at once); receive finds nothing; no hang.
    let t = Instant::now();
    let mut taken = 0;
    for i in 0..4 {
        let mut burst: Vec<Option<Mbuf>> = (0..32)
            .map(|k| Some(chain_of(&pool, &frame(1000 + i * 32 + k), 2048)))
            .collect();
        taken += p.queues().unwrap().tx[0].tx_burst(&mut burst);
        let mut rx: [Option<Mbuf>; 32] = Default::default();
        assert_eq!(p.queues().unwrap().rx[0].rx_burst(&mut rx), 0);
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{test}: bursts hung");
    assert_eq!(taken, 128, "{test}: taken while down");

    let mut b = VhostTestpmd::start(&s, 1, "0-1", "io");
    b.testpmd().start_forwarding();
    if packed {
        // The port recovers by itself while the application keeps bursting: the queues let
        // go of their rings, the driver starts a new session over them, the link comes back.
        let end = Instant::now() + Duration::from_secs(10);
        // Until the backend is back, the transmit queue keeps taking frames (as it did while
        // down); the burst loop below starts once the reconnect asked for a reset.
        while !p.driver().needs_reset() {
            assert!(Instant::now() < end, "{test}: never asked for a reset");
            assert!(!p.link_update().up);
            std::thread::sleep(Duration::from_millis(5));
        }
        // This query sees the reset asked for (if the one that reconnected did not): from
        // here on the queues rebuild and nothing is sent until the device is back.
        assert!(!p.link_update().up);
        let mut asked = false;
        let mut polls = 0u32;
        loop {
            assert!(
                Instant::now() < end,
                "{test}: never came back; xstats {:?}",
                p.xstats()
            );
            let mut rx: [Option<Mbuf>; 32] = Default::default();
            let n = p.queues().unwrap().rx[0].rx_burst(&mut rx);
            assert_eq!(n, 0, "{test}: received while recovering");
            let mut tx = [Some(chain_of(&pool, &frame(3000), 2048))];
            let k = p.queues().unwrap().tx[0].tx_burst(&mut tx);
            assert_eq!(k, 0, "{test}: sent while recovering");
            assert!(tx[0].is_some(), "{test}: the packet stays with the caller");
            asked |= p.driver().needs_reset();
            polls += 1;
            if p.link_update().up {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(asked, "{test}: the link came back without a reset");
        assert!(!p.driver().needs_reset());
        assert_eq!(p.driver().recovery_error(), None);
        let x = |name: &str| xstat(&p, name).unwrap();
        assert_eq!(
            (x("rx_queue_resets"), x("tx_queue_resets")),
            (1, 1),
            "{test}: one rebuild each"
        );
        assert_eq!(
            x("tx_reset_dropped_packets"),
            taken as u64,
            "{test}: frames queued for the dead backend are freed"
        );
        eprintln!("{test}: back after {polls} polls without a stop/start");
    } else {
        wait_link(&mut p, true);
        // The frames taken while the backend was gone go out now, in order.
        let back: Vec<Vec<u8>> = recv(&mut p, 0, taken).iter().map(flatten).collect();
        assert_eq!(back.len(), taken, "{test}: frames queued while down");
        for (k, f) in back.iter().enumerate() {
            assert_eq!(f, &frame(1000 + k), "{test}: queued frame {k}");
        }
    }
    round_trip(test, &mut b, &mut p, &pool, 2000..2100);
    let ev = events.lock().unwrap().clone();
    assert!(
        ev.windows(2).any(|w| w == [false, true]) && ev.last() == Some(&true),
        "{test}: link events {ev:?}"
    );
    p.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "{test}: mbufs leaked");
}

#[test]
fn split_backend_restart_resumes() {
    reconnect("split_backend_restart_resumes", ",packed_vq=0", false);
}

#[test]
fn packed_backend_restart_recovers_without_a_restart() {
    reconnect(
        "packed_backend_restart_recovers_without_a_restart",
        ",packed_vq=1",
        true,
    );
}

/// What the receiving thread of [`rx_interrupts`] saw.
struct Slept {
    /// Per sleep: when it ended, how many handles were ready, their tags.
    wakes: Vec<(Instant, usize, Vec<u64>)>,
    /// The frames received, in order.
    frames: Vec<Vec<u8>>,
}

/// Interrupt-mode receive against DPDK's vhost: the port is configured with `rx_interrupts`
/// (the queue gets a call eventfd); a receiver thread arms the queue's interrupt and sleeps in
/// an [`RxIntrWaiter`]; a sender thread waits until it sleeps, then sends a burst testpmd
/// reflects. Every sleep must end by the call eventfd after its burst was sent — never by the
/// timeout, never early (a stale signal) — and every frame must come back byte for byte.
/// While the interrupt is off (a started queue, and after `intr_disable`) the backend must
/// not signal at all.
fn rx_interrupts(test: &str, devargs: &str, want: Features, refuse: Features) {
    const TAG: u64 = 0x5a01;
    const WARM: usize = 64;
    const BURSTS: usize = 40;
    const PER: usize = 8;
    let Some((_one, s, mut b)) = backend(test, 1, "io") else {
        return;
    };
    b.testpmd().start_forwarding();
    let room = if want.contains(Features::NET_MRG_RXBUF) {
        512
    } else {
        2048
    };
    let mut pc = PortConfig::queues(1, 1);
    pc.rx_interrupts = true;
    let (mut p, pool, _mem) = port_cfg(&s, devargs, room, &pc);
    let f = p.driver().features();
    assert!(
        f.contains(want) && !f.intersects(refuse),
        "{test}: negotiated {f:?}, wanted {want:?}, refused {refuse:?}"
    );
    wait_link(&mut p, true);
    let handle = p.queues().unwrap().rx[0]
        .intr_handle()
        .expect("rx_interrupts gives the queue its call eventfd");
    let mut waiter = RxIntrWaiter::new().unwrap();
    waiter.add(handle, TAG).unwrap();
    let mut ready = Vec::new();

    // Polling a started queue, whose interrupt is off: the backend does not signal. (Split
    // rings with EVENT_IDX excepted: DPDK's vhost signals its first used update whatever the
    // used_event says — vhost_vring_call_split, `!signalled_used_valid`.)
    send(&mut p, &pool, 0, 0..WARM);
    let mut back: Vec<Vec<u8>> = recv(&mut p, 0, WARM).iter().map(flatten).collect();
    assert_eq!(back.len(), WARM, "{test}: frames reflected while polling");
    if f.contains(Features::RING_PACKED) || !f.contains(Features::EVENT_IDX) {
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            waiter.wait(Some(Duration::ZERO), &mut ready).unwrap(),
            0,
            "{test}: the backend signalled a queue whose interrupt was never enabled"
        );
    }

    // Lockstep: the receiver arms and sleeps, then the sender sends one burst.
    let armed = AtomicUsize::new(0);
    let q = p.queues().unwrap();
    let (rxq, txq) = (&mut q.rx[0], &mut q.tx[0]);
    let (slept, sent_at) = std::thread::scope(|sc| {
        let receiver = sc.spawn(|| {
            let mut out: [Option<Mbuf>; 32] = Default::default();
            let mut seen = Slept {
                wakes: Vec::new(),
                frames: Vec::new(),
            };
            let mut ready = Vec::new();
            for k in 0..BURSTS {
                rxq.intr_enable().unwrap();
                // Nothing can be in flight: the sender waits for this sleep.
                assert_eq!(rxq.rx_burst(&mut out), 0, "{test}: frames before burst {k}");
                armed.store(k + 1, Ordering::Release);
                ready.clear();
                let n = waiter
                    .wait(Some(Duration::from_secs(5)), &mut ready)
                    .unwrap();
                seen.wakes.push((Instant::now(), n, ready.clone()));
                rxq.intr_disable().unwrap();
                let end = Instant::now() + Duration::from_secs(10);
                let mut got = 0;
                while got < PER && Instant::now() < end {
                    let n = rxq.rx_burst(&mut out);
                    got += n;
                    seen.frames.extend(
                        out[..n]
                            .iter_mut()
                            .filter_map(Option::take)
                            .map(|m| flatten(&m)),
                    );
                    if n == 0 {
                        std::thread::yield_now();
                    }
                }
                if got != PER {
                    break;
                }
            }
            armed.store(usize::MAX, Ordering::Release);
            seen
        });
        let mut sent_at = Vec::new();
        'bursts: for k in 0..BURSTS {
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                match armed.load(Ordering::Acquire) {
                    a if a == k + 1 => break,
                    usize::MAX => break 'bursts,
                    _ => {}
                }
                assert!(
                    Instant::now() < end,
                    "{test}: the receiver never slept for burst {k}"
                );
                std::thread::sleep(Duration::from_micros(100));
            }
            // Long enough for the receiver to be inside epoll_wait.
            std::thread::sleep(Duration::from_millis(2));
            sent_at.push(Instant::now());
            let first = WARM + k * PER;
            if let Err(off) = push(txq, &pool, first..first + PER) {
                panic!("{test}: tx stalled at {off} of burst {k}");
            }
        }
        (receiver.join().unwrap(), sent_at)
    });
    assert_eq!(slept.wakes.len(), BURSTS, "{test}: sleeps");
    for (k, (at, n, tags)) in slept.wakes.iter().enumerate() {
        assert_eq!(
            *n, 1,
            "{test}: sleep {k} ended by the 5 s timeout, not the call eventfd"
        );
        assert_eq!(
            tags,
            &[TAG],
            "{test}: sleep {k} woken by the queue's handle"
        );
        assert!(
            *at >= sent_at[k],
            "{test}: sleep {k} ended before its burst was sent (a stale signal)"
        );
    }
    let mut woke: Vec<Duration> = slept
        .wakes
        .iter()
        .zip(&sent_at)
        .map(|((at, ..), sent)| *at - *sent)
        .collect();
    woke.sort();
    println!(
        "{test}: {BURSTS} sleeps, each ended by the call eventfd {:?} (median {:?}, max {:?}) \
         after its burst was sent",
        woke[0],
        woke[BURSTS / 2],
        woke[BURSTS - 1]
    );
    back.extend(slept.frames);

    // Off again: one more run of traffic, and no signal for any of it.
    std::thread::sleep(Duration::from_millis(10));
    p.queues().unwrap().rx[0].intr_disable().unwrap();
    let last = WARM + BURSTS * PER;
    send(&mut p, &pool, 0, last..last + WARM);
    back.extend(recv(&mut p, 0, WARM).iter().map(flatten));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        waiter.wait(Some(Duration::ZERO), &mut ready).unwrap(),
        0,
        "{test}: the backend signalled after intr_disable"
    );

    reflected_all(test, &mut b, p, &pool, &back, last + WARM, room == 512);
}

#[test]
fn split_rx_interrupts_wake_the_sleeper() {
    rx_interrupts(
        "split_rx_interrupts_wake_the_sleeper",
        ",packed_vq=0,mrg_rxbuf=0",
        Features::VERSION_1,
        Features::RING_PACKED | Features::NET_MRG_RXBUF | Features::EVENT_IDX,
    );
}

#[test]
fn packed_rx_interrupts_wake_the_sleeper() {
    rx_interrupts(
        "packed_rx_interrupts_wake_the_sleeper",
        ",packed_vq=1,mrg_rxbuf=0",
        Features::RING_PACKED,
        Features::NET_MRG_RXBUF | Features::EVENT_IDX,
    );
}

#[test]
fn split_mrg_event_idx_rx_interrupts_wake_the_sleeper() {
    rx_interrupts(
        "split_mrg_event_idx_rx_interrupts_wake_the_sleeper",
        ",packed_vq=0,mrg_rxbuf=1,event_idx=1",
        Features::NET_MRG_RXBUF | Features::EVENT_IDX,
        Features::RING_PACKED,
    );
}

#[test]
fn packed_mrg_event_idx_rx_interrupts_wake_the_sleeper() {
    rx_interrupts(
        "packed_mrg_event_idx_rx_interrupts_wake_the_sleeper",
        ",packed_vq=1,mrg_rxbuf=1,event_idx=1",
        Features::RING_PACKED | Features::NET_MRG_RXBUF | Features::EVENT_IDX,
        Features::empty(),
    );
}

/// An rx queue whose mbuf pool the backend could not reach (not in the transport's
/// SharedMemory) is refused at setup, saying what to do; set up again with a pool from the
/// shared memory, the port runs and reflects frames.
#[test]
fn rx_pool_outside_shared_memory_is_refused() {
    let test = "rx_pool_outside_shared_memory_is_refused";
    let Some((_one, s, mut b)) = backend(test, 1, "io") else {
        return;
    };
    b.testpmd().start_forwarding();
    let (drv, mem) = device(&s, 1, ",packed_vq=0");
    let mut p = Port::new(0, drv);
    p.configure(&PortConfig::queues(1, 1)).unwrap();
    let elsewhere = [
        PktMbufPool::create(
            &SharedMemory::new(),
            &PktMbufPoolConfig::new("vu-other", 512),
        )
        .unwrap(),
        PktMbufPool::create(&LinuxOs::plain(), &PktMbufPoolConfig::new("vu-plain", 512)).unwrap(),
    ];
    for pool in &elsewhere {
        match p.rx_queue_setup(0, 256, pool, &RxQueueConfig::default()) {
            Err(e @ EthError::Device { op, reason }) => {
                assert_eq!(op, "rx queue setup", "{test}: {e}");
                assert!(
                    reason
                        .text
                        .contains("create the pool from the SharedMemory"),
                    "{test}: {e}"
                );
                println!("{test}: {e}");
            }
            r => panic!("{test}: pool {} accepted: {r:?}", pool.name()),
        }
        assert_eq!(pool.available(), pool.size(), "{test}: nothing taken");
    }
    let pool =
        PktMbufPool::create(&mem, &PktMbufPoolConfig::new(&unique_name("vu"), 1024)).unwrap();
    p.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default())
        .unwrap();
    p.tx_queue_setup(0, 256, &TxQueueConfig::default()).unwrap();
    p.start().unwrap();
    wait_link(&mut p, true);
    round_trip(test, &mut b, &mut p, &pool, 0..64);
    p.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "{test}: mbufs leaked");
}

/// Frames 100..116 sent with queue 0's interrupt armed: the sleep on `waiter` ends with one
/// signal (else `why`), the reflected frames come back byte-exact, the interrupt is off again.
fn woken_by_reflection(
    test: &str,
    p: &mut Port<Dev>,
    pool: &PktMbufPool,
    waiter: &mut RxIntrWaiter,
    why: &str,
) {
    let mut ready = Vec::new();
    let sent = Instant::now();
    send(p, pool, 0, 100..116);
    let n = waiter
        .wait(Some(Duration::from_secs(5)), &mut ready)
        .unwrap();
    assert_eq!(n, 1, "{test}: {why}");
    println!("{test}: woken {:?} after the send", sent.elapsed());
    p.queues().unwrap().rx[0].intr_disable().unwrap();
    let back: Vec<Vec<u8>> = recv(p, 0, 16).iter().map(flatten).collect();
    assert_eq!(back.len(), 16, "{test}: frames reflected");
    for (i, f) in (100..116).zip(&back) {
        assert_eq!(f, &frame(i), "{test}: frame {i}");
    }
}

/// A split ring's rx interrupt outlives a backend restart: the replayed session hands the new
/// backend the same call eventfd, and a sleep on it ends when the reflected frames arrive.
#[test]
fn split_rx_interrupts_survive_a_backend_restart() {
    let test = "split_rx_interrupts_survive_a_backend_restart";
    let Some((_one, s, mut b)) = backend(test, 1, "io") else {
        return;
    };
    b.testpmd().start_forwarding();
    let mut pc = PortConfig::queues(1, 1);
    pc.rx_interrupts = true;
    let (mut p, pool, _mem) = port_cfg(&s, ",packed_vq=0", 2048, &pc);
    wait_link(&mut p, true);
    round_trip(test, &mut b, &mut p, &pool, 0..32);
    b.kill();
    drop(b);
    wait_link(&mut p, false);
    let mut b = VhostTestpmd::start(&s, 1, "0-1", "io");
    b.testpmd().start_forwarding();
    wait_link(&mut p, true);

    let mut waiter = RxIntrWaiter::new().unwrap();
    waiter
        .add(p.queues().unwrap().rx[0].intr_handle().unwrap(), 1)
        .unwrap();
    p.queues().unwrap().rx[0].intr_enable().unwrap();
    let mut out: [Option<Mbuf>; 32] = Default::default();
    assert_eq!(p.queues().unwrap().rx[0].rx_burst(&mut out), 0);
    woken_by_reflection(
        test,
        &mut p,
        &pool,
        &mut waiter,
        "no call eventfd signal after the restart",
    );
    p.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "{test}: mbufs leaked");
}

/// An application asleep on a packed ring's rx interrupt through a backend restart: woken
/// when the recovery begins (so that it bursts its queues and they let go of their rings),
/// woken again when the device is back, and then by the device itself on the same handle
/// it registered before the restart — no stop/start, no new handle.
#[test]
fn packed_rx_interrupts_survive_a_backend_restart() {
    let test = "packed_rx_interrupts_survive_a_backend_restart";
    let Some((_one, s, mut b)) = backend(test, 1, "io") else {
        return;
    };
    b.testpmd().start_forwarding();
    let mut pc = PortConfig::queues(1, 1);
    pc.rx_interrupts = true;
    let (mut p, pool, _mem) = port_cfg(&s, ",packed_vq=1", 2048, &pc);
    assert!(p.driver().features().contains(Features::RING_PACKED));
    wait_link(&mut p, true);
    round_trip(test, &mut b, &mut p, &pool, 0..32);
    let mut waiter = RxIntrWaiter::new().unwrap();
    waiter
        .add(p.queues().unwrap().rx[0].intr_handle().unwrap(), 1)
        .unwrap();
    let mut ready = Vec::new();
    let mut out: [Option<Mbuf>; 32] = Default::default();
    assert_eq!(p.queues().unwrap().rx[0].rx_burst(&mut out), 0);
    p.queues().unwrap().rx[0].intr_enable().unwrap();

    b.kill();
    drop(b);
    wait_link(&mut p, false);
    let mut b = VhostTestpmd::start(&s, 1, "0-1", "io");
    b.testpmd().start_forwarding();
    let end = Instant::now() + Duration::from_secs(10);
    while !p.driver().needs_reset() {
        assert!(Instant::now() < end, "{test}: never asked for a reset");
        assert!(!p.link_update().up);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!p.link_update().up);
    let n = waiter
        .wait(Some(Duration::from_secs(5)), &mut ready)
        .unwrap();
    assert_eq!(
        n, 1,
        "{test}: the sleeper was not woken to let go of its ring"
    );
    // What a woken application does: burst every queue, sleep again.
    {
        let q = p.queues().unwrap();
        q.rx[0].intr_disable().unwrap();
        assert_eq!(q.rx[0].rx_burst(&mut out), 0);
        assert_eq!(q.tx[0].tx_burst(&mut []), 0);
        q.rx[0].intr_enable().unwrap();
    }
    assert!(
        p.link_update().up,
        "{test}: not back after every queue let go"
    );
    let n = waiter
        .wait(Some(Duration::from_secs(5)), &mut ready)
        .unwrap();
    assert_eq!(n, 1, "{test}: the sleeper was not told the device is back");
    {
        let q = p.queues().unwrap();
        q.rx[0].intr_disable().unwrap();
        assert_eq!(q.rx[0].rx_burst(&mut out), 0);
        q.rx[0].intr_enable().unwrap();
    }
    woken_by_reflection(
        test,
        &mut p,
        &pool,
        &mut waiter,
        "no device interrupt on the old handle after the recovery",
    );
    round_trip(test, &mut b, &mut p, &pool, 200..300);
    p.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "{test}: mbufs leaked");
}
