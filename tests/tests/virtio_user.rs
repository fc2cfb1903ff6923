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
use rdk_tests::frames::{flatten, ipv4_udp_frame, mbuf_of};
use rdk_tests::netns::{is_root, prerequisite, unique_name};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Dev = VirtioNet<VhostUserTransport, SharedMemory>;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0x5a, 1];

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

/// A started virtio-user port with `pairs` queue pairs, features narrowed by `devargs`.
fn port(path: &Path, pairs: u16, devargs: &str) -> (Port<Dev>, PktMbufPool, SharedMemory) {
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
    let pool = PktMbufPool::create(&mem, &PktMbufPoolConfig::new(&unique_name("vu"), 4096))
        .expect("mbuf pool in shared memory");
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
    let mut pending: Vec<Option<Mbuf>> = range.map(|i| Some(mbuf_of(pool, &frame(i)))).collect();
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
fn reflect(test: &str, devargs: &str, want: Features, refuse: Features) {
    if !prerequisites(test) {
        return;
    }
    let s = sock();
    let mut b = VhostTestpmd::start(&s, 2, "0-1", "io");
    b.testpmd().cmd("start");
    let (mut p, pool, _mem) = port(&s, 1, devargs);
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
    for chunk in 0..N / 200 {
        send(&mut p, &pool, 0, chunk * 200..(chunk + 1) * 200);
        back.extend(recv(&mut p, 0, 200).into_iter().map(|m| flatten(&m)));
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
    p.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "{test}: mbufs leaked");
}

#[test]
fn split_mrg_off_reflected_byte_exact() {
    reflect(
        "split_mrg_off_reflected_byte_exact",
        ",packed_vq=0,mrg_rxbuf=0",
        Features::VERSION_1,
        Features::RING_PACKED | Features::NET_MRG_RXBUF,
    );
}

#[test]
fn split_mrg_on_reflected_byte_exact() {
    reflect(
        "split_mrg_on_reflected_byte_exact",
        ",packed_vq=0,mrg_rxbuf=1",
        Features::NET_MRG_RXBUF,
        Features::RING_PACKED,
    );
}

#[test]
fn packed_mrg_off_reflected_byte_exact() {
    reflect(
        "packed_mrg_off_reflected_byte_exact",
        ",packed_vq=1,mrg_rxbuf=0",
        Features::RING_PACKED,
        Features::NET_MRG_RXBUF,
    );
}

#[test]
fn packed_mrg_on_reflected_byte_exact() {
    reflect(
        "packed_mrg_on_reflected_byte_exact",
        ",packed_vq=1,mrg_rxbuf=1",
        Features::RING_PACKED | Features::NET_MRG_RXBUF,
        Features::empty(),
    );
}
