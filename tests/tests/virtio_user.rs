//! rdk's virtio-net PMD over vhost-user (virtio-user) against DPDK 22.11's vhost backend
//! (`dpdk-testpmd --vdev net_vhost0,iface=SOCK,queues=2,client=0`).
//!
//! Needs root (hugepages for the shared memory) and `dpdk-testpmd`; a missing prerequisite
//! is a skip, or a failure under `CI=true`. Every test starts its own testpmd on a socket of
//! its own, and ends with the mbuf pool full.

use rdk_core::ethdev::{Port, PortConfig, RxQueue, RxQueueConfig, TxQueue, TxQueueConfig};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_core::virtio::Features;
use rdk_os_linux::vhost_user::{SharedMemory, VhostUserTransport, VirtioUserConfig};
use rdk_pmd_virtio::{VirtioNet, VirtioNetConfig};
use rdk_tests::dpdk::{need_testpmd, VhostTestpmd};
use rdk_tests::frames::{chain_of, flatten, ipv4_udp_frame};
use rdk_tests::netns::{is_root, prerequisite, unique_name};
use std::path::{Path, PathBuf};
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
    let name = unique_name("vu");
    let mut pcfg = PktMbufPoolConfig::new(&name, 4096);
    pcfg.data_room = data_room;
    let pool = PktMbufPool::create(&mem, &pcfg).expect("mbuf pool in shared memory");
    let mut p = Port::new(0, drv);
    p.configure(&PortConfig::queues(pairs, pairs)).unwrap();
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
    let end = Instant::now() + Duration::from_secs(10);
    let seg = pool.data_room() as usize;
    let mut pending: Vec<Option<Mbuf>> = range
        .map(|i| Some(chain_of(pool, &frame(i), seg)))
        .collect();
    let mut off = 0;
    while off < pending.len() {
        assert!(
            Instant::now() < end,
            "tx stalled at {off}: {:?} {:?}",
            p.xstats(),
            p.driver()
        );
        let k = (pending.len() - off).min(32);
        off += p.queues().unwrap().tx[q].tx_burst(&mut pending[off..off + k]);
    }
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
    b.testpmd().cmd("start");
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
    assert_eq!(back.len(), N, "{test}: frames reflected");
    for (i, got) in back.iter().enumerate() {
        assert_eq!(got, &frame(i), "{test}: frame {i} differs");
    }
    let (rx, tx) = b.port_counts();
    assert_eq!((rx, tx), (N as u64, N as u64), "{test}: testpmd's counts");
    let st = p.stats();
    assert_eq!((st.ipackets, st.opackets), (N as u64, N as u64));
    assert_eq!(st.ierrors + st.oerrors + st.rx_nombuf, 0);
    if room == 512 {
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
    b.testpmd().cmd("start");
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
    b.testpmd().cmd("start");
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
/// meanwhile go out then), packed rings ask for a reset and run again after stop/start.
fn reconnect(test: &str, devargs: &str, packed: bool) {
    let Some((_one, s, mut b)) = backend(test, 1, "io") else {
        return;
    };
    b.testpmd().cmd("start");
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
    b.testpmd().cmd("start");
    if packed {
        let end = Instant::now() + Duration::from_secs(10);
        while !p.driver().needs_reset() {
            assert!(Instant::now() < end, "{test}: never asked for a reset");
            p.link_update();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!p.link_update().up);
        p.stop().unwrap();
        p.start().unwrap();
        wait_link(&mut p, true);
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
fn packed_backend_restart_resets() {
    reconnect("packed_backend_restart_resets", ",packed_vq=1", true);
}
