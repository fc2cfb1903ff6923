//! The driver against os-mock's virtio-net model: traffic both ways, byte for byte, on split
//! and packed rings; merged buffers, chains, control commands, several queue pairs, link and
//! reset; and a device that lies. Every test ends with the pool full and no device fault.

use crate::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use rdk_core::ethdev::{
    Driver, EthError, Port, PortConfig, RxOffload, RxQueue, RxQueueConfig, TxOffload, TxQueue,
    TxQueueConfig,
};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig, RxCksum};
use rdk_core::os::EventNotifier;
use rdk_core::virtio::{Features, Transport, TransportError};
use rdk_os_mock::pci::MockPciDevice;
use rdk_os_mock::virtio::{Hostile, MockVirtioNet, NetDevConfig, RxCsum, UsedLie};
use rdk_os_mock::MockOs;

extern crate std;
use std::format;

type Drv = VirtioNet<PciTransport<MockPciDevice>, MockOs>;

struct Rig {
    os: MockOs,
    dev: MockVirtioNet,
    port: Port<Drv>,
    pool: PktMbufPool,
}

fn split_only() -> Features {
    SUPPORTED - Features::RING_PACKED
}

/// The driver over `transport`, in `os`, accepting `want`.
fn driver_over<T: Transport>(transport: T, os: &MockOs, want: Features) -> VirtioNet<T, MockOs> {
    let cfg = VirtioNetConfig {
        features: want,
        ..Default::default()
    };
    VirtioNet::new(transport, os.clone(), cfg).unwrap()
}

/// A port (not configured) over a new mock device of `os`, accepting `want`.
fn mock_port(os: &MockOs, dcfg: NetDevConfig, want: Features) -> (Port<Drv>, MockVirtioNet) {
    let (pci, dev) = MockVirtioNet::new(os, dcfg);
    let drv = driver_over(PciTransport::new(pci).unwrap(), os, want);
    (Port::new(0, drv), dev)
}

/// Configures `port` with one queue pair of `ring` descriptors each, receiving into `pool`
/// (the default receive queue configuration) and transmitting as `txq` says, and starts it.
fn start_one_pair<D: Driver>(
    port: &mut Port<D>,
    pool: &PktMbufPool,
    ring: u16,
    txq: &TxQueueConfig,
) {
    port.configure(&PortConfig::queues(1, 1)).unwrap();
    port.rx_queue_setup(0, ring, pool, &RxQueueConfig::default())
        .unwrap();
    port.tx_queue_setup(0, ring, txq).unwrap();
    port.start().unwrap();
}

/// [`rig_with`] with buffers of the default data room.
fn rig_on(dcfg: NetDevConfig, want: Features, pcfg: PortConfig) -> Rig {
    rig_with(dcfg, want, pcfg, rdk_core::mbuf::DEFAULT_DATA_ROOM)
}

/// A started port over a new device of `dcfg` accepting `want`, configured with `pcfg`, each
/// queue 256 descriptors, receiving into a pool of 2048 mbufs of `data_room` bytes.
fn rig_with(dcfg: NetDevConfig, want: Features, pcfg: PortConfig, data_room: u16) -> Rig {
    let os = MockOs::new();
    let (mut port, dev) = mock_port(&os, dcfg, want);
    let mut pc = PktMbufPoolConfig::new("vnet", 2048);
    pc.data_room = data_room;
    let pool = PktMbufPool::create(&os, &pc).unwrap();
    port.configure(&pcfg).unwrap();
    for q in 0..pcfg.nb_rxq {
        port.rx_queue_setup(q, 256, &pool, &RxQueueConfig::default())
            .unwrap();
    }
    for q in 0..pcfg.nb_txq {
        port.tx_queue_setup(q, 256, &TxQueueConfig::default())
            .unwrap();
    }
    port.start().unwrap();
    Rig {
        os,
        dev,
        port,
        pool,
    }
}

fn rig(want: Features) -> Rig {
    rig_on(NetDevConfig::default(), want, PortConfig::queues(1, 1))
}

impl Rig {
    fn mmio_faults(&self) -> u64 {
        self.port
            .driver()
            .with_transport(|t| t.device().mmio_faults())
    }

    /// Closes the port and checks conservation and the device's view.
    fn finish(mut self) {
        assert_eq!(self.mmio_faults(), 0, "BAR accesses outside a window");
        assert_eq!(
            self.dev.counters().width_errors,
            0,
            "registers at their natural width"
        );
        self.port.close().unwrap();
        drop(self.port);
        assert_eq!(self.pool.available(), self.pool.size(), "pool full again");
        self.os.device_memory().assert_no_faults();
    }

    /// The device delivers `frame(i, len)` on queue 0 and the port receives it byte-exact.
    fn receives_one(&mut self, i: usize, len: usize) {
        self.dev.deliver(0, &frame(i, len), RxCsum::None);
        let got = self.rx_all(0, 1);
        assert_eq!(bytes_of(&got[0]), frame(i, len));
    }

    fn rx_all(&mut self, q: usize, want: usize) -> Vec<Mbuf> {
        let mut got = Vec::new();
        for _ in 0..1000 {
            let mut burst: [Option<Mbuf>; 32] = Default::default();
            let n = self.port.queues().unwrap().rx[q].rx_burst(&mut burst);
            got.extend(burst[..n].iter_mut().map(|m| m.take().unwrap()));
            if got.len() >= want {
                break;
            }
        }
        got
    }
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k * 7 + i * 13) as u8).collect()
}

fn mbuf_of(pool: &PktMbufPool, data: &[u8]) -> Mbuf {
    let mut m = pool.alloc().unwrap();
    m.append(data.len() as u16).unwrap().copy_from_slice(data);
    m
}

fn bytes_of(m: &Mbuf) -> Vec<u8> {
    let mut v = vec![0u8; m.pkt_len() as usize];
    m.copy_to(&mut v).unwrap();
    v
}

fn traffic_both_ways(want: Features) {
    traffic_both_ways_on(NetDevConfig::default(), want)
}

fn traffic_both_ways_on(dcfg: NetDevConfig, want: Features) {
    let dcfg_in_order = dcfg.features.contains(Features::IN_ORDER);
    let mut r = rig_on(dcfg, want, PortConfig::queues(1, 1));
    assert_eq!(
        r.dev.driver_features().contains(Features::RING_PACKED),
        want.contains(Features::RING_PACKED)
    );
    assert_eq!(
        r.dev.driver_features().contains(Features::IN_ORDER),
        dcfg_in_order
    );
    assert!(r.port.link().up);
    // 600 frames: more than the ring holds, so refills and the backlog are exercised.
    let sizes = |i: usize| 60 + (i * 37) % 1400;
    for i in 0..600 {
        r.dev.deliver(0, &frame(i, sizes(i)), RxCsum::None);
    }
    let got = r.rx_all(0, 600);
    assert_eq!(got.len(), 600);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(bytes_of(m), frame(i, sizes(i)), "rx frame {i}");
        assert_eq!(m.nb_segs(), 1);
    }
    drop(got);
    // Transmit 600 in bursts of 32.
    let mut sent = 0;
    while sent < 600 {
        let mut burst: Vec<Option<Mbuf>> = (sent..(sent + 32).min(600))
            .map(|i| Some(mbuf_of(&r.pool, &frame(i, sizes(i)))))
            .collect();
        let n = r.port.queues().unwrap().tx[0].tx_burst(&mut burst);
        assert_eq!(n, burst.len());
        sent += n;
    }
    let out = r.dev.take_sent();
    assert_eq!(out.len(), 600);
    for (i, f) in out.iter().enumerate() {
        assert_eq!(f.data, frame(i, sizes(i)), "tx frame {i}");
        assert_eq!(f.hdr, Default::default());
        assert_eq!(f.descs, 1, "header pushed into the headroom");
    }
    let s = r.port.stats();
    assert_eq!(
        (s.ipackets, s.opackets, s.ierrors, s.oerrors),
        (600, 600, 0, 0)
    );
    let total: u64 = (0..600).map(|i| sizes(i) as u64).sum();
    assert_eq!((s.ibytes, s.obytes), (total, total));
    let c = r.dev.counters();
    assert_eq!(
        (c.rx_delivered, c.tx_frames, c.driver_errors),
        (600, 600, 0)
    );
    assert!(
        c.notifies < 600,
        "one doorbell per burst, not per packet: {c:?}"
    );
    r.finish();
}

#[test]
fn split_ring_traffic_both_ways_is_byte_exact() {
    traffic_both_ways(split_only());
}

#[test]
fn packed_ring_traffic_both_ways_is_byte_exact() {
    traffic_both_ways(SUPPORTED);
}

#[test]
fn without_event_idx_flags_suppress_notifications() {
    traffic_both_ways(split_only() - Features::EVENT_IDX);
    traffic_both_ways(SUPPORTED - Features::EVENT_IDX);
}

#[test]
fn in_order_devices_complete_transmit_batches_with_one_entry() {
    let dcfg = NetDevConfig {
        features: NetDevConfig::default().features | Features::IN_ORDER,
        ..Default::default()
    };
    for want in [split_only(), SUPPORTED] {
        traffic_both_ways_on(dcfg, want);
    }
}

fn merged(want: Features) {
    // 512-byte data room: a 1400-byte frame takes three buffers.
    let mut pcfg = PortConfig::queues(1, 1);
    pcfg.rx_offloads = RxOffload::UDP_CKSUM | RxOffload::TCP_CKSUM;
    let mut r = rig_with(NetDevConfig::default(), want, pcfg, 512);
    for i in 0..50 {
        let csum = if i % 2 == 0 {
            RxCsum::Valid
        } else {
            RxCsum::None
        };
        r.dev.deliver(0, &frame(i, 100 + i * 30), csum);
    }
    let got = r.rx_all(0, 50);
    assert_eq!(got.len(), 50);
    for (i, m) in got.iter().enumerate() {
        let len = 100 + i * 30;
        assert_eq!(bytes_of(m), frame(i, len), "frame {i}");
        // Each buffer is the data room plus the header's 12 bytes of headroom.
        assert_eq!(m.nb_segs() as usize, (len + 12).div_ceil(512 + 12));
        let expect = if i % 2 == 0 {
            RxCksum::Good
        } else {
            RxCksum::Unknown
        };
        assert_eq!(m.ol_flags().rx_l4_cksum(), expect);
    }
    drop(got);
    r.finish();
}

/// The device on its own thread, delivering and draining while the driver bursts: what the
/// ring's Release/Acquire pairs are for.
fn device_on_another_thread(want: Features) {
    let dcfg = NetDevConfig {
        auto_tx: false,
        ..Default::default()
    };
    let mut r = rig_with(dcfg, want, PortConfig::queues(1, 1), 512);
    const N: usize = 3000;
    let dev = r.dev.clone();
    let device = std::thread::spawn(move || {
        let mut sent = Vec::new();
        for i in 0..N {
            dev.deliver(0, &frame(i, 60 + i % 900), RxCsum::None);
            dev.process_tx();
            sent.extend(dev.take_sent());
            if i % 64 == 0 {
                std::thread::yield_now();
            }
        }
        while sent.len() < N {
            dev.process_tx();
            sent.extend(dev.take_sent());
            std::thread::yield_now();
        }
        sent
    });
    let mut got = 0;
    let mut pending: Vec<Option<Mbuf>> = Vec::new();
    while got < N || !pending.is_empty() {
        let mut burst: [Option<Mbuf>; 32] = Default::default();
        let n = r.port.queues().unwrap().rx[0].rx_burst(&mut burst);
        for (k, m) in burst[..n].iter().enumerate() {
            assert_eq!(
                bytes_of(m.as_ref().unwrap()),
                frame(got + k, 60 + (got + k) % 900)
            );
        }
        got += n;
        // Echo what arrived (chains included) back out.
        pending.extend(burst[..n].iter_mut().map(Option::take));
        let n = r.port.queues().unwrap().tx[0].tx_burst(&mut pending);
        pending.drain(..n);
        std::thread::yield_now();
    }
    let sent = device.join().unwrap();
    assert_eq!(sent.len(), N);
    for (i, f) in sent.iter().enumerate() {
        assert_eq!(f.data, frame(i, 60 + i % 900), "echoed frame {i}");
    }
    r.finish();
}

#[test]
fn device_thread_split() {
    device_on_another_thread(split_only());
}

#[test]
fn device_thread_packed() {
    device_on_another_thread(SUPPORTED);
}

/// Without MRG_RXBUF the net header of a received frame is read only when the port asked for
/// checksum offload (it carries nothing else then): the frame is the same either way, the
/// flags are there only when asked for.
#[test]
fn rx_checksum_flags_only_when_the_port_asks() {
    for want in [
        split_only() - Features::NET_MRG_RXBUF,
        SUPPORTED - Features::NET_MRG_RXBUF,
    ] {
        for ask in [false, true] {
            let mut pcfg = PortConfig::queues(1, 1);
            if ask {
                pcfg.rx_offloads = RxOffload::UDP_CKSUM;
            }
            let mut r = rig_on(NetDevConfig::default(), want, pcfg);
            assert_eq!(
                r.dev.driver_features().contains(Features::NET_GUEST_CSUM),
                ask,
                "GUEST_CSUM is negotiated only when the port asks for checksum flags"
            );
            assert!(r
                .port
                .driver()
                .features()
                .contains(Features::NET_GUEST_CSUM));
            for i in 0..40 {
                r.dev.deliver(0, &frame(i, 60 + i * 20), RxCsum::Valid);
            }
            let got = r.rx_all(0, 40);
            assert_eq!(got.len(), 40);
            for (i, m) in got.iter().enumerate() {
                assert_eq!(bytes_of(m), frame(i, 60 + i * 20), "frame {i}, ask {ask}");
                let expect = if ask { RxCksum::Good } else { RxCksum::Unknown };
                assert_eq!(m.ol_flags().rx_l4_cksum(), expect, "ask {ask}");
            }
            drop(got);
            r.finish();
        }
    }
}

#[test]
fn mrg_rxbuf_frames_become_chains_split() {
    merged(split_only());
}

#[test]
fn mrg_rxbuf_frames_become_chains_packed() {
    merged(SUPPORTED);
}

#[test]
fn a_pool_smaller_than_the_ring_keeps_receiving_as_mbufs_come_back() {
    for want in [split_only(), SUPPORTED] {
        let os = MockOs::new();
        let (mut port, dev) = mock_port(&os, NetDevConfig::default(), want);
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("few", 48)).unwrap();
        start_one_pair(&mut port, &pool, 256, &TxQueueConfig::default());
        assert_eq!(pool.available(), 0, "the ring took all 48");
        for i in 0..300 {
            dev.deliver(0, &frame(i, 64), RxCsum::None);
        }
        let mut got = 0;
        for _ in 0..100 {
            let mut burst: [Option<Mbuf>; 16] = Default::default();
            let n = port.queues().unwrap().rx[0].rx_burst(&mut burst);
            for (k, m) in burst[..n].iter().enumerate() {
                assert_eq!(bytes_of(m.as_ref().unwrap()), frame(got + k, 64));
            }
            got += n;
            // Freed here, refilled by the next burst, and the backlog drains into them.
        }
        assert_eq!(got, 300);
        assert!(port.stats().rx_nombuf > 0, "the empty pool was counted");
        drop(port);
        assert_eq!(pool.available(), 48);
        os.device_memory().assert_no_faults();
    }
}

#[test]
fn scattered_iova_pages_are_translated_page_by_page() {
    // Every 64 KiB page of every region at its own IOVA (descending, with gaps): a buffer
    // address computed from the wrong page, or a VA, faults in the device model.
    for want in [split_only(), SUPPORTED] {
        let os = MockOs::builder()
            .page_size(64 << 10)
            .iova_layout(rdk_os_mock::IovaLayout::Scattered)
            .build();
        let (mut port, dev) = mock_port(&os, NetDevConfig::default(), want);
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("scat", 512)).unwrap();
        // Each ring fits in one page, so it can be IOVA-contiguous.
        start_one_pair(&mut port, &pool, 64, &TxQueueConfig::default());
        for i in 0..200 {
            dev.deliver(0, &frame(i, 60 + i * 7), RxCsum::None);
        }
        let mut got = 0;
        for _ in 0..100 {
            let mut burst: [Option<Mbuf>; 32] = Default::default();
            let n = port.queues().unwrap().rx[0].rx_burst(&mut burst);
            for (k, m) in burst[..n].iter().enumerate() {
                assert_eq!(
                    bytes_of(m.as_ref().unwrap()),
                    frame(got + k, 60 + (got + k) * 7)
                );
            }
            got += n;
            assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut burst[..n]), n);
        }
        assert_eq!(got, 200);
        let sent = dev.take_sent();
        assert_eq!(sent.len(), 200);
        assert!(sent
            .iter()
            .enumerate()
            .all(|(i, f)| f.data == frame(i, 60 + i * 7)));
        drop(port);
        assert_eq!(pool.available(), 512);
        os.device_memory().assert_no_faults();
    }
}

#[test]
fn without_mrg_rxbuf_small_buffers_are_refused_at_setup() {
    let os = MockOs::new();
    let want = SUPPORTED - Features::NET_MRG_RXBUF;
    let (mut port, _dev) = mock_port(&os, NetDevConfig::default(), want);
    let mut pc = PktMbufPoolConfig::new("small", 64);
    pc.data_room = 512;
    let pool = PktMbufPool::create(&os, &pc).unwrap();
    port.configure(&PortConfig::queues(1, 1)).unwrap();
    let e = port
        .rx_queue_setup(0, 64, &pool, &RxQueueConfig::default())
        .unwrap_err();
    assert!(matches!(e, EthError::BuffersTooSmall { .. }), "{e}");
}

#[test]
fn a_full_transmit_ring_pushes_back_and_completions_are_reclaimed_in_batches() {
    for want in [split_only(), SUPPORTED] {
        let dcfg = NetDevConfig {
            auto_tx: false,
            ..Default::default()
        };
        let mut r = rig_on(dcfg, want, PortConfig::queues(1, 1));
        let mut burst: Vec<Option<Mbuf>> = (0..300)
            .map(|i| Some(mbuf_of(&r.pool, &frame(i, 64))))
            .collect();
        let n = r.port.queues().unwrap().tx[0].tx_burst(&mut burst);
        assert_eq!(n, 256, "the ring's worth, the rest stays with the caller");
        assert!(burst[..256].iter().all(Option::is_none));
        assert!(burst[256..].iter().all(Option::is_some));
        assert_eq!(r.dev.take_sent().len(), 0, "not processed yet");
        r.dev.process_tx();
        let n = r.port.queues().unwrap().tx[0].tx_burst(&mut burst[256..]);
        assert_eq!(n, 44, "completions reclaimed, room again");
        r.dev.process_tx();
        let out = r.dev.take_sent();
        assert_eq!(out.len(), 300);
        assert!(out.iter().enumerate().all(|(i, f)| f.data == frame(i, 64)));
        assert_eq!(r.port.stats().opackets, 300);
        r.finish();
    }
}

#[test]
fn tx_chains_and_shared_mbufs() {
    for want in [split_only(), SUPPORTED] {
        let mut r = rig(want);
        let mut m = mbuf_of(&r.pool, &frame(1, 100));
        m.chain(mbuf_of(&r.pool, &frame(2, 200))).unwrap();
        m.chain(mbuf_of(&r.pool, &frame(3, 50))).unwrap();
        let expect = bytes_of(&m);
        let shared = mbuf_of(&r.pool, &frame(4, 300));
        let keep = shared.share().unwrap();
        let mut burst = [Some(m), Some(shared)];
        assert_eq!(r.port.queues().unwrap().tx[0].tx_burst(&mut burst), 2);
        let out = r.dev.take_sent();
        assert_eq!(out[0].data, expect);
        assert_eq!(out[0].descs, 3);
        assert_eq!(out[1].data, frame(4, 300));
        assert_eq!(out[1].descs, 2, "a shared mbuf gets a header descriptor");
        assert_eq!(
            keep.data(),
            &frame(4, 300)[..],
            "the shared data is untouched"
        );
        drop(keep);
        r.finish();
    }
}

#[test]
fn tx_checksum_requests_become_needs_csum_headers() {
    use rdk_core::mbuf::OlFlags;
    fn request(m: &mut Mbuf, l4: OlFlags, l2: u16) {
        let mut meta = m.meta_mut().unwrap();
        meta.set_ol_flags(OlFlags::TX_IPV4 | l4);
        let mut t = meta.tx_offload();
        t.set_l2_len(l2).unwrap();
        t.set_l3_len(20).unwrap();
        meta.set_tx_offload(t);
    }
    let mut pcfg = PortConfig::queues(1, 1);
    pcfg.tx_offloads = TxOffload::UDP_CKSUM | TxOffload::TCP_CKSUM;
    let mut r = rig_on(NetDevConfig::default(), split_only(), pcfg);
    assert!(r.dev.driver_features().contains(Features::NET_CSUM));
    let mut udp = mbuf_of(&r.pool, &frame(5, 80));
    request(&mut udp, OlFlags::TX_UDP_CKSUM, 14);
    let mut tcp = mbuf_of(&r.pool, &frame(6, 90));
    request(&mut tcp, OlFlags::TX_TCP_CKSUM, 18);
    let keep = tcp.share().unwrap();
    let plain = mbuf_of(&r.pool, &frame(7, 60));
    let mut burst = [Some(udp), Some(tcp), Some(plain)];
    assert_eq!(r.port.queues().unwrap().tx[0].tx_burst(&mut burst), 3);
    let out = r.dev.take_sent();
    let h = |i: usize| {
        (
            out[i].hdr.flags,
            out[i].hdr.csum_start.get(),
            out[i].hdr.csum_offset.get(),
        )
    };
    assert_eq!(h(0), (1, 34, 6), "UDP, header pushed");
    assert_eq!(h(1), (1, 38, 16), "TCP, header from the header area");
    assert_eq!(h(2), (0, 0, 0), "no request, no flags");
    assert_eq!(out[1].data, frame(6, 90));
    drop(keep);
    // A request whose checksum field lies past the frame is not handed to the device.
    let mut short = mbuf_of(&r.pool, &frame(9, 40));
    request(&mut short, OlFlags::TX_TCP_CKSUM, 14);
    let mut burst = [Some(short)];
    assert_eq!(r.port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    assert!(r.dev.take_sent().is_empty(), "nothing reaches the device");
    let bad = r
        .port
        .xstats()
        .into_iter()
        .find(|x| x.name == "tx_bad_offload_request")
        .map(|x| x.value);
    assert_eq!(bad, Some(1));
    assert_eq!(r.port.stats().oerrors, 1);
    r.finish();
}

/// A port not configured for transmit checksum offload does not negotiate `CSUM` (DPDK's
/// net_virtio neither): the device reads no header for it, a request in `ol_flags` is not
/// acted on, the frame leaves as it is. A transmit queue asking for the offload is enough.
#[test]
fn csum_is_negotiated_only_when_a_port_or_queue_asks() {
    use rdk_core::mbuf::OlFlags;
    let mut r = rig(split_only());
    assert!(r.port.driver().features().contains(Features::NET_CSUM));
    assert!(!r.dev.driver_features().contains(Features::NET_CSUM));
    assert!(!r
        .port
        .driver()
        .active_features()
        .contains(Features::NET_CSUM));
    assert!(!r.dev.driver_features().contains(Features::NET_GUEST_CSUM));
    let mut m = mbuf_of(&r.pool, &frame(8, 80));
    {
        let mut meta = m.meta_mut().unwrap();
        meta.set_ol_flags(OlFlags::TX_IPV4 | OlFlags::TX_UDP_CKSUM);
        let mut t = meta.tx_offload();
        t.set_l2_len(14).unwrap();
        t.set_l3_len(20).unwrap();
        meta.set_tx_offload(t);
    }
    let mut burst = [Some(m)];
    assert_eq!(r.port.queues().unwrap().tx[0].tx_burst(&mut burst), 1);
    let out = r.dev.take_sent();
    assert_eq!(out[0].hdr.flags, 0, "no NEEDS_CSUM without CSUM");
    assert_eq!(out[0].data, frame(8, 80));
    r.finish();

    // The same device, the offload asked for by the transmit queue alone.
    let os = MockOs::new();
    let (mut port, dev) = mock_port(&os, NetDevConfig::default(), split_only());
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("vnet-q", 256)).unwrap();
    let tcfg = TxQueueConfig {
        offloads: TxOffload::TCP_CKSUM,
        ..TxQueueConfig::default()
    };
    start_one_pair(&mut port, &pool, 64, &tcfg);
    assert!(dev.driver_features().contains(Features::NET_CSUM));
    assert!(!dev.driver_features().contains(Features::NET_GUEST_CSUM));
    assert_eq!(port.driver().active_features(), dev.driver_features());
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size());
}

#[test]
fn control_queue_sets_modes_mac_and_queue_pairs() {
    for want in [split_only(), SUPPORTED] {
        let mut r = rig_on(NetDevConfig::default(), want, PortConfig::queues(3, 3));
        assert_eq!(r.dev.pairs(), 3);
        r.port.set_promiscuous(true).unwrap();
        r.port.set_allmulticast(true).unwrap();
        assert_eq!(r.dev.rx_modes(), (true, true));
        r.port.set_promiscuous(false).unwrap();
        assert_eq!(r.dev.rx_modes(), (false, true));
        let mac = rdk_core::ethdev::MacAddr([0x02, 1, 2, 3, 4, 5]);
        r.port.set_mac_addr(mac).unwrap();
        assert_eq!(r.dev.mac(), mac.0);
        assert_eq!(r.port.mac_addr(), mac);
        // Traffic on every pair, each landing on its own queue.
        for p in 0..3u16 {
            r.dev.deliver(p, &frame(p as usize, 80), RxCsum::None);
        }
        for p in 0..3usize {
            let got = r.rx_all(p, 1);
            assert_eq!(got.len(), 1);
            assert_eq!(bytes_of(&got[0]), frame(p, 80));
            let mut b = [Some(mbuf_of(&r.pool, &frame(p + 10, 70)))];
            assert_eq!(r.port.queues().unwrap().tx[p].tx_burst(&mut b), 1);
        }
        let out = r.dev.take_sent();
        assert_eq!(out.iter().map(|f| f.pair).collect::<Vec<_>>(), [0, 1, 2]);
        // Settings survive a restart (the device is reset and told again).
        r.port.stop().unwrap();
        r.port.start().unwrap();
        assert_eq!(r.dev.rx_modes(), (false, true));
        assert_eq!(r.dev.mac(), mac.0);
        assert_eq!(r.dev.pairs(), 3);
        r.finish();
    }
}

#[test]
fn an_unanswered_control_command_blocks_commands_until_a_restart() {
    for want in [split_only(), SUPPORTED] {
        let mut r = rig(want);
        r.dev.set_hostile(Some(Hostile::CtrlSilent));
        let e = r.port.set_promiscuous(true).unwrap_err().to_string();
        assert!(e.contains("did not answer the control command"), "{e}");
        // The device may still write the command buffer: nothing else goes out meanwhile.
        let e = r.port.set_allmulticast(true).unwrap_err().to_string();
        assert!(e.contains("earlier control command"), "{e}");
        assert_eq!(r.dev.rx_modes(), (false, false));
        // A restart resets the device and rebuilds the control queue in its own memory.
        r.dev.set_hostile(None);
        r.port.stop().unwrap();
        r.port.start().unwrap();
        r.port.set_promiscuous(true).unwrap();
        r.port.set_allmulticast(true).unwrap();
        assert_eq!(r.dev.rx_modes(), (true, true));
        r.receives_one(0, 80);
        r.finish();
    }
}

#[test]
fn link_follows_the_config_status_and_its_interrupt() {
    let mut r = rig(split_only());
    assert!(r.port.link_update().up);
    let irq = r.port.driver().config_irq().unwrap().clone();
    r.dev.set_link(false);
    assert!(irq.ack().unwrap() >= 1, "config interrupt raised");
    assert!(!r.port.driver().config_changed().up);
    assert!(!r.port.link_update().up);
    r.dev.set_link(true);
    assert!(r.port.link_update().up);
    r.finish();
}

#[test]
fn needs_reset_takes_the_link_down_and_a_restart_recovers() {
    for want in [split_only(), SUPPORTED] {
        let mut r = rig(want);
        r.dev.deliver(0, &frame(0, 100), RxCsum::None);
        r.dev.set_needs_reset();
        assert!(r.port.driver().needs_reset());
        assert!(!r.port.link_update().up);
        r.port.stop().unwrap();
        r.port.start().unwrap();
        assert!(!r.port.driver().needs_reset());
        assert!(r.port.link_update().up);
        r.dev.deliver(0, &frame(1, 100), RxCsum::None);
        let got = r.rx_all(0, 2);
        assert!(got.iter().any(|m| bytes_of(m) == frame(1, 100)));
        drop(got);
        r.finish();
    }
}

fn xstat(r: &Rig, name: &str) -> u64 {
    r.port
        .xstats()
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .value
}

/// A device with `auto_tx` off (transmitted chains stay outstanding until `process_tx`).
fn held_tx_rig(want: Features) -> Rig {
    rig_on(
        NetDevConfig {
            auto_tx: false,
            ..NetDevConfig::default()
        },
        want,
        PortConfig::queues(1, 1),
    )
}

impl Rig {
    /// Sends `n` frames numbered from `first` in one burst; returns how many were taken.
    fn tx_frames(&mut self, first: usize, n: usize) -> (usize, Vec<Option<Mbuf>>) {
        let mut burst: Vec<Option<Mbuf>> = (first..first + n)
            .map(|i| Some(mbuf_of(&self.pool, &frame(i, 64 + i % 300))))
            .collect();
        let k = self.port.queues().unwrap().tx[0].tx_burst(&mut burst);
        (k, burst)
    }

    /// Puts traffic in flight both ways (transmitted chains not yet read by the device,
    /// received frames not yet polled, receive buffers posted), then has the device ask for
    /// a reset: the link goes down.
    fn fail_with_traffic_in_flight(&mut self) {
        assert!(self.port.link_update().up);
        let (k, _) = self.tx_frames(0, 20);
        assert_eq!(k, 20);
        for i in 0..5 {
            assert!(self.dev.deliver(0, &frame(1000 + i, 100), RxCsum::None));
        }
        assert!(
            self.pool.available() < self.pool.size() - 200,
            "buffers in flight"
        );
        self.dev.set_needs_reset();
        assert!(!self.port.link_update().up, "link down on NEEDS_RESET");
        assert!(self.port.driver().needs_reset());
    }
}

/// `DEVICE_NEEDS_RESET` while traffic is in flight: the link goes down, the queues (polled
/// as a data-path thread would) drop what they had and rebuild, the next link query brings
/// the device back, and traffic flows both ways, byte for byte, without a stop and start.
#[test]
fn needs_reset_recovers_while_the_port_runs() {
    for want in [split_only(), SUPPORTED] {
        let mut r = held_tx_rig(want);
        let resets = r.dev.counters().resets;
        r.fail_with_traffic_in_flight();
        // Until the queues acknowledged, the link stays down however often it is asked.
        for _ in 0..3 {
            assert!(!r.port.link_update().up);
        }
        // The first bursts rebuild and return nothing; a transmit burst leaves the packets
        // with the caller, uncounted.
        let before = r.port.stats();
        let mut none: [Option<Mbuf>; 8] = Default::default();
        assert_eq!(r.port.queues().unwrap().rx[0].rx_burst(&mut none), 0);
        let (k, held) = r.tx_frames(0, 4);
        assert_eq!(k, 0);
        assert!(
            held.iter().all(Option::is_some),
            "packets stay with the caller"
        );
        drop(held);
        assert_eq!(r.port.stats().opackets, before.opackets);
        assert_eq!(xstat(&r, "tx_reset_dropped_packets"), 20);
        assert_eq!(
            (xstat(&r, "rx_queue_resets"), xstat(&r, "tx_queue_resets")),
            (1, 1)
        );
        // Everything but the reposted receive buffers is home.
        assert_eq!(r.pool.available(), r.pool.size() - 256);
        assert!(
            r.port.link_update().up,
            "back up once every queue acknowledged"
        );
        assert!(!r.port.driver().needs_reset());
        assert_eq!(r.port.driver().recovery_error(), None);
        assert_eq!(
            r.dev.counters().resets,
            resets + 2,
            "reset, then negotiated again"
        );
        assert!(r
            .dev
            .status()
            .contains(rdk_core::virtio::DeviceStatus::DRIVER_OK));
        // Nothing of the old rings reached the device: no outstanding chain was sent.
        r.dev.process_tx();
        assert!(r.dev.take_sent().is_empty());
        for i in 0..300 {
            r.dev.deliver(0, &frame(i, 60 + i * 3), RxCsum::None);
        }
        let got = r.rx_all(0, 300);
        assert_eq!(got.len(), 300);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(
                bytes_of(m),
                frame(i, 60 + i * 3),
                "rx frame {i} after recovery"
            );
        }
        drop(got);
        let mut sent = 0;
        while sent < 300 {
            let (k, rest) = r.tx_frames(sent, 32.min(300 - sent));
            drop(rest);
            sent += k;
            r.dev.process_tx();
        }
        let out = r.dev.take_sent();
        assert_eq!(out.len(), 300);
        for (i, f) in out.iter().enumerate() {
            assert_eq!(
                f.data,
                frame(i, 64 + i % 300),
                "tx frame {i} after recovery"
            );
        }
        assert_eq!(r.dev.counters().driver_errors, 0);
        // A second failure recovers the same way.
        r.fail_with_traffic_in_flight();
        let mut none: [Option<Mbuf>; 8] = Default::default();
        r.port.queues().unwrap().rx[0].rx_burst(&mut none);
        drop(r.tx_frames(0, 1));
        assert!(r.port.link_update().up);
        r.receives_one(7, 77);
        r.finish();
    }
}

/// A queue that is not polled keeps the link down; a stop and start in the middle of a
/// recovery (one queue acknowledged, one not) still works and leaks nothing; so does a
/// close in the middle of one.
#[test]
fn stop_or_close_during_a_recovery() {
    for want in [split_only(), SUPPORTED] {
        let mut r = held_tx_rig(want);
        r.fail_with_traffic_in_flight();
        let mut none: [Option<Mbuf>; 8] = Default::default();
        assert_eq!(r.port.queues().unwrap().rx[0].rx_burst(&mut none), 0);
        for _ in 0..3 {
            assert!(
                !r.port.link_update().up,
                "the transmit queue never acknowledged"
            );
        }
        r.port.stop().unwrap();
        r.port.start().unwrap();
        assert!(r.port.link_update().up);
        assert!(!r.port.driver().needs_reset());
        r.receives_one(3, 300);
        let (k, _) = r.tx_frames(40, 3);
        assert_eq!(k, 3);
        r.dev.process_tx();
        let out = r.dev.take_sent();
        assert_eq!(out.last().map(|f| f.data.clone()), Some(frame(42, 64 + 42)));
        r.finish();

        // Close with the receive queue rebuilt and the transmit queue still holding chains.
        let mut r = held_tx_rig(want);
        r.fail_with_traffic_in_flight();
        assert_eq!(r.port.queues().unwrap().rx[0].rx_burst(&mut none), 0);
        r.finish();

        // Close with both acknowledged, before the link query that would bring it back.
        let mut r = held_tx_rig(want);
        r.fail_with_traffic_in_flight();
        assert_eq!(r.port.queues().unwrap().rx[0].rx_burst(&mut none), 0);
        drop(r.tx_frames(0, 1));
        r.finish();
    }
}

#[test]
fn rx_interrupts_wake_the_waiter() {
    for want in [split_only(), SUPPORTED, split_only() - Features::EVENT_IDX] {
        let mut pc = PortConfig::queues(1, 1);
        pc.rx_interrupts = true;
        let mut r = rig_on(NetDevConfig::default(), want, pc);
        let irq = r.port.queues().unwrap().rx[0].irq().unwrap().clone();
        // A started queue polls: its interrupt is off until enabled.
        r.dev.deliver(0, &frame(0, 64), RxCsum::None);
        assert_eq!(irq.ack().unwrap(), 0, "started: no interrupt");
        assert_eq!(r.rx_all(0, 1).len(), 1);
        r.port.queues().unwrap().rx[0].intr_disable().unwrap();
        r.dev.deliver(0, &frame(0, 64), RxCsum::None);
        assert_eq!(irq.ack().unwrap(), 0, "disabled: no interrupt");
        assert_eq!(r.rx_all(0, 1).len(), 1);
        // A count left from before does not survive enabling (it would end a sleep early).
        irq.signal().unwrap();
        r.port.queues().unwrap().rx[0].intr_enable().unwrap();
        assert_eq!(irq.ack().unwrap(), 0, "nothing pending");
        r.dev.deliver(0, &frame(1, 64), RxCsum::None);
        assert!(irq.ack().unwrap() >= 1, "enabled: woken");
        r.port.queues().unwrap().rx[0].intr_disable().unwrap();
        let got = r.rx_all(0, 1);
        assert_eq!(got.len(), 1);
        // Enabling with a packet already waiting wakes at once (no lost wake-up).
        r.dev.deliver(0, &frame(2, 64), RxCsum::None);
        r.port.queues().unwrap().rx[0].intr_enable().unwrap();
        assert!(irq.ack().unwrap() >= 1);
        drop(got);
        r.finish();
    }
}

/// With several queue pairs the device comes back only once every queue let go of its ring,
/// and the control-queue settings (modes, MAC, queue pairs) are told to it again.
#[test]
fn a_recovery_waits_for_every_queue_and_replays_the_settings() {
    for want in [split_only(), SUPPORTED] {
        let mut r = rig_on(NetDevConfig::default(), want, PortConfig::queues(3, 3));
        r.port.set_allmulticast(true).unwrap();
        let mac = rdk_core::ethdev::MacAddr([0x02, 9, 8, 7, 6, 5]);
        r.port.set_mac_addr(mac).unwrap();
        let resets = r.dev.counters().resets;
        r.dev.set_needs_reset();
        assert!(!r.port.link_update().up);
        let mut out: [Option<Mbuf>; 8] = Default::default();
        for p in 0..3 {
            let q = r.port.queues().unwrap();
            assert_eq!(q.rx[p].rx_burst(&mut out), 0);
            if p < 2 {
                assert_eq!(q.tx[p].tx_burst(&mut []), 0);
            }
        }
        for _ in 0..3 {
            assert!(!r.port.link_update().up, "tx queue 2 has not let go yet");
        }
        assert_eq!(
            r.dev.counters().resets,
            resets + 1,
            "reset once, not brought up"
        );
        assert_eq!(r.port.queues().unwrap().tx[2].tx_burst(&mut []), 0);
        assert!(r.port.link_update().up);
        assert_eq!(r.dev.rx_modes(), (false, true));
        assert_eq!(r.dev.mac(), mac.0);
        assert_eq!(r.dev.pairs(), 3);
        for p in 0..3u16 {
            r.dev.deliver(p, &frame(p as usize, 90), RxCsum::None);
        }
        for p in 0..3usize {
            let got = r.rx_all(p, 1);
            assert_eq!(got.len(), 1, "pair {p}");
            assert_eq!(bytes_of(&got[0]), frame(p, 90));
            let mut b = [Some(mbuf_of(&r.pool, &frame(p + 20, 70)))];
            assert_eq!(r.port.queues().unwrap().tx[p].tx_burst(&mut b), 1);
        }
        let out = r.dev.take_sent();
        assert_eq!(out.iter().map(|f| f.pair).collect::<Vec<_>>(), [0, 1, 2]);
        for (p, f) in out.iter().enumerate() {
            assert_eq!(f.data, frame(p + 20, 70));
        }
        r.finish();
    }
}

/// A queue asleep on its rx interrupt takes part in a recovery: woken when it begins (so it
/// bursts and lets go of its ring) and when the device is back; afterwards the device's
/// interrupts reach the same event (the PCI transport keeps its events across setups).
#[test]
fn rx_interrupt_sleepers_are_woken_through_a_recovery() {
    for want in [split_only(), SUPPORTED] {
        let mut pc = PortConfig::queues(1, 1);
        pc.rx_interrupts = true;
        let mut r = rig_on(NetDevConfig::default(), want, pc);
        let old = r.port.queues().unwrap().rx[0].irq().unwrap().clone();
        r.port.queues().unwrap().rx[0].intr_enable().unwrap();
        assert_eq!(old.ack().unwrap(), 0, "asleep, nothing pending");
        r.dev.set_needs_reset();
        assert!(!r.port.link_update().up);
        assert!(old.ack().unwrap() >= 1, "woken to let go of the ring");
        {
            let q = r.port.queues().unwrap();
            q.rx[0].intr_disable().unwrap();
            let mut out: [Option<Mbuf>; 8] = Default::default();
            assert_eq!(q.rx[0].rx_burst(&mut out), 0);
            assert_eq!(q.tx[0].tx_burst(&mut []), 0);
            q.rx[0].intr_enable().unwrap();
        }
        assert_eq!(old.ack().unwrap(), 0);
        assert!(r.port.link_update().up);
        assert!(old.ack().unwrap() >= 1, "woken: the device is back");
        let q = r.port.queues().unwrap();
        q.rx[0].intr_disable().unwrap();
        let mut out: [Option<Mbuf>; 8] = Default::default();
        assert_eq!(q.rx[0].rx_burst(&mut out), 0);
        let irq = q.rx[0].irq().unwrap().clone();
        q.rx[0].intr_enable().unwrap();
        assert_eq!(irq.ack().unwrap(), 0);
        // The transport kept its events: the handle the sleeper held is still the queue's.
        held_event_is_the_queues(&r, &*old, &*irq, frame(5, 200), "the recovery");
        r.port.queues().unwrap().rx[0].intr_disable().unwrap();
        let got = r.rx_all(0, 1);
        assert_eq!(bytes_of(&got[0]), frame(5, 200));
        drop(got);
        r.finish();
    }
}

/// `held` (fetched before `when`) is the queue's event `now`: a signal on one is seen on the
/// other, and the device delivering `f` signals it. Leaves `now` acknowledged.
fn held_event_is_the_queues<E: EventNotifier>(r: &Rig, held: &E, now: &E, f: Vec<u8>, when: &str) {
    held.signal().unwrap();
    assert_eq!(now.ack().unwrap(), 1, "the same event as before {when}");
    r.dev.deliver(0, &f, RxCsum::None);
    assert!(
        held.ack().unwrap() >= 1,
        "the device's interrupt after {when}"
    );
}

/// A restart points the MSI-X vectors at the events the queues had: a wait handle fetched
/// before a stop is still the queue's after the next start, and the device's interrupt reaches it.
#[test]
fn rx_interrupt_events_survive_a_restart() {
    let mut pc = PortConfig::queues(1, 1);
    pc.rx_interrupts = true;
    let mut r = rig_on(NetDevConfig::default(), SUPPORTED, pc);
    let before = r.port.queues().unwrap().rx[0].irq().unwrap().clone();
    let config = r.port.driver().config_irq().unwrap().clone();
    r.port.stop().unwrap();
    r.port.start().unwrap();
    let q = r.port.queues().unwrap();
    let after = q.rx[0].irq().unwrap().clone();
    q.rx[0].intr_enable().unwrap();
    let _ = after.ack();
    held_event_is_the_queues(&r, &*before, &*after, frame(3, 90), "the restart");
    let _ = config.ack();
    r.dev.set_link(false);
    assert!(
        config.ack().unwrap() >= 1,
        "and the configuration event too"
    );
    r.dev.set_link(true);
    r.port.queues().unwrap().rx[0].intr_disable().unwrap();
    let got = r.rx_all(0, 1);
    assert_eq!(bytes_of(&got[0]), frame(3, 90));
    drop(got);
    r.finish();
}

/// A device that turns hostile mid-traffic: the driver counts, never panics, and every mbuf
/// comes home.
fn hostile(want: Features, lie: UsedLie, anomaly: &str) {
    let mut r = rig(want);
    r.dev.deliver(0, &frame(0, 100), RxCsum::None);
    assert_eq!(r.rx_all(0, 1).len(), 1);
    r.dev.set_hostile(Some(Hostile::Used(lie)));
    for i in 0..100 {
        r.dev.deliver(0, &frame(i, 100), RxCsum::None);
        let mut b = [Some(mbuf_of(&r.pool, &frame(i, 80)))];
        let _ = r.port.queues().unwrap().tx[0].tx_burst(&mut b);
        let _ = r.rx_all(0, 1);
    }
    let xs = r.port.xstats();
    let get = |n: &str| xs.iter().find(|x| x.name == n).map(|x| x.value).unwrap();
    let seen = get(&format!("rx_device_{anomaly}")) + get(&format!("tx_device_{anomaly}"));
    assert!(seen > 0, "{anomaly} counted: {xs:?}");
    assert!(
        get("rx_queues_broken") + get("tx_queues_broken") > 0,
        "queues gave up after the threshold"
    );
    r.dev.set_hostile(None);
    r.finish();
}

#[test]
fn hostile_used_id_never_posted() {
    hostile(split_only(), UsedLie::IdNeverPosted, "used_id_out_of_range");
    hostile(SUPPORTED, UsedLie::IdNeverPosted, "used_id_out_of_range");
}

#[test]
fn hostile_used_len_too_long() {
    hostile(split_only(), UsedLie::LenTooLong, "used_len_too_long");
    hostile(SUPPORTED, UsedLie::LenTooLong, "used_len_too_long");
}

#[test]
fn hostile_used_index_jump() {
    hostile(split_only(), UsedLie::IdxJump, "used_idx_jump");
}

#[test]
fn hostile_bad_wrap_counter() {
    hostile(SUPPORTED, UsedLie::BadWrap, "used_bad_wrap_counter");
}

fn transport_error(h: Hostile) -> TransportError {
    let os = MockOs::new();
    let cfg = NetDevConfig {
        hostile: Some(h),
        ..Default::default()
    };
    let (pci, _dev) = MockVirtioNet::new(&os, cfg);
    match PciTransport::new(pci) {
        Err(e) => e,
        Ok(_) => panic!("{h:?} accepted"),
    }
}

#[test]
fn hostile_capabilities_are_refused_with_a_reason() {
    let e = transport_error(Hostile::CapLoop);
    assert!(e.to_string().contains("loops"), "{e}");
    let e = transport_error(Hostile::CapOutsideBar);
    assert!(e.to_string().contains("past the end of its BAR"), "{e}");
}

#[test]
fn hostile_features_changing_after_features_ok_are_refused() {
    let os = MockOs::new();
    let cfg = NetDevConfig {
        hostile: Some(Hostile::FeaturesChangeAfterOk),
        ..Default::default()
    };
    let (pci, dev) = MockVirtioNet::new(&os, cfg);
    let e = VirtioNet::new(
        PciTransport::new(pci).unwrap(),
        os.clone(),
        VirtioNetConfig::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("changed its features"), "{e}");
    assert!(dev
        .status()
        .contains(rdk_core::virtio::DeviceStatus::FAILED));
}

#[test]
fn a_legacy_only_device_is_refused() {
    let os = MockOs::new();
    let cfg = NetDevConfig {
        features: Features::NET_MAC,
        ..Default::default()
    };
    let (pci, _dev) = MockVirtioNet::new(&os, cfg);
    let mut t = PciTransport::new(pci).unwrap();
    assert!(!t.device_features().unwrap().contains(Features::VERSION_1));
    let e = VirtioNet::new(t, os.clone(), VirtioNetConfig::default()).unwrap_err();
    assert!(e.to_string().contains("legacy"), "{e}");
}

#[test]
fn devargs_refuse_features() {
    use rdk_core::ethdev::DevArgs;
    let c = VirtioNetConfig::from_devargs(&DevArgs::parse("net_virtio0").unwrap()).unwrap();
    assert_eq!(
        c.features,
        SUPPORTED - Features::EVENT_IDX,
        "event_idx off by default"
    );
    let a = DevArgs::parse("net_virtio0,packed_vq=0,mrg_rxbuf=0,event_idx=1").unwrap();
    let c = VirtioNetConfig::from_devargs(&a).unwrap();
    assert!(!c.features.contains(Features::RING_PACKED));
    assert!(!c.features.contains(Features::NET_MRG_RXBUF));
    assert!(c.features.contains(Features::EVENT_IDX));
    let e = VirtioNetConfig::from_devargs(&DevArgs::parse("net_virtio0,packed=1").unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("packed_vq"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Devices that break mid-operation, and thresholds that must not stall a queue.

/// Aborts the process if `what` has not finished within `secs` (a livelock would hang the
/// test harness forever otherwise).
fn watchdog(secs: u64, what: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(secs));
        if !d.load(std::sync::atomic::Ordering::SeqCst) {
            std::eprintln!("{what} did not return within {secs} s (livelock)");
            std::process::abort();
        }
    });
    done
}

/// A device returns 32 good frames and then 16 used elements with an id it was never given,
/// all before the driver polls. One burst takes the 32 frames (32 descriptors free, the
/// refill threshold), then the 16 anomalies break the queue; the refill that follows must not
/// spin forever on a queue that refuses every buffer.
#[test]
fn rx_queue_broken_mid_burst_does_not_livelock_the_refill() {
    let mut r = rig(split_only());
    for i in 0..32 {
        assert!(r.dev.deliver(0, &frame(i, 100), RxCsum::None));
    }
    r.dev
        .set_hostile(Some(Hostile::Used(UsedLie::IdNeverPosted)));
    for i in 0..16 {
        r.dev.deliver(0, &frame(i, 100), RxCsum::None);
    }
    r.dev.set_hostile(None);
    let done = watchdog(20, "rx_burst on a queue that broke mid-burst");
    let mut burst: [Option<Mbuf>; 64] = core::array::from_fn(|_| None);
    let n = r.port.queues().unwrap().rx[0].rx_burst(&mut burst);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(n, 32);
    drop(burst);
    r.finish();
}

/// DPDK's tx_free_thresh below the driver's reclaim batch (32 on a 256 ring): once fewer than
/// a burst's worth but at least `free_thresh` descriptors were free, a burst neither reclaimed
/// (free >= free_thresh) nor sent (free < batch.min(burst)), and every later burst returned 0
/// although the device had completed everything long ago. Now every burst goes.
#[test]
fn tx_free_thresh_below_the_batch_does_not_stall_the_queue() {
    let os = MockOs::new();
    let (mut port, dev) = mock_port(&os, NetDevConfig::default(), split_only());
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("vnet", 2048)).unwrap();
    let tc = TxQueueConfig {
        free_thresh: 16,
        ..Default::default()
    };
    start_one_pair(&mut port, &pool, 256, &tc);
    let mut sent = 0;
    for round in 0..40 {
        let mut b: [Option<Mbuf>; 20] =
            core::array::from_fn(|i| Some(mbuf_of(&pool, &frame(round * 20 + i, 60))));
        sent += port.queues().unwrap().tx[0].tx_burst(&mut b);
    }
    assert_eq!(dev.counters().tx_frames as usize, sent);
    assert_eq!(
        sent,
        40 * 20,
        "every burst of 20 fits a ring the device keeps emptying"
    );
    let r = Rig {
        os,
        dev,
        port,
        pool,
    };
    r.finish();
}

/// A doorbell that plays a device answering the control queue's first command with a used
/// element naming an id that was never posted (a glitch the queue counts and drops): the
/// command's own chain is still the device's.
struct GlitchCtrl {
    used: *mut u8,
}
// SAFETY: test only; the pointer is into a region that outlives the doorbell.
unsafe impl Send for GlitchCtrl {}
impl QueueNotify for GlitchCtrl {
    fn notify(&self) {
        // SAFETY: the used ring of a live 16-entry split ring: element 0 at +4, idx at +2.
        unsafe {
            let idx = self.used.add(2).cast::<u16>().read_volatile();
            if idx == 0 {
                self.used.add(4).cast::<u32>().write_volatile(99u32.to_le());
                self.used.add(8).cast::<u32>().write_volatile(1u32.to_le());
                self.used.add(2).cast::<u16>().write_volatile(1u16.to_le());
            }
        }
    }
}

#[test]
fn ctrl_nonsense_answer_leaves_the_command_in_flight_but_commands_go_on() {
    use rdk_core::os::{DmaAlloc, DmaRegion, DmaRequest};
    use rdk_core::virtio::{AnyQueue, Virtqueue};
    let os = MockOs::new();
    let f = Features::VERSION_1;
    let bytes = AnyQueue::<<MockOs as DmaAlloc>::Region>::bytes_needed(crate::ctrl::CTRL_SIZE, f);
    let ring = os
        .dma_alloc(&DmaRequest::new("ctrlq", bytes).align(4096).contiguous())
        .unwrap();
    let buf = os
        .dma_alloc(
            &DmaRequest::new("ctrlbuf", crate::ctrl::CTRL_BUF)
                .align(4096)
                .contiguous(),
        )
        .unwrap();
    let mut c = crate::ctrl::CtrlQueue::<_, GlitchCtrl>::new(ring, buf);
    c.rebuild(f).unwrap();
    let used = match c.q.as_ref().unwrap() {
        // SAFETY: the used ring's offset inside the queue's own region (the layout's).
        AnyQueue::Split(q) => unsafe {
            q.region()
                .as_ptr()
                .add(rdk_core::virtio::format::SplitLayout::new(crate::ctrl::CTRL_SIZE).used)
        },
        AnyQueue::Packed(_) => unreachable!(),
    };
    c.notify = Some(GlitchCtrl { used });
    c.command(0, 0, &[1]).unwrap_err();
    let q = c.q.as_ref().unwrap();
    assert_eq!(
        q.num_free(),
        14,
        "the command's two descriptors are still the device's"
    );
    // The device may still read the command and write its ack byte: the buffer is not free.
    let e = c.command(0, 1, &[1]).unwrap_err();
    let free = c.q.as_ref().unwrap().num_free();
    assert!(
        e.to_string().contains("earlier") && free == 14,
        "a second command was put in the buffer the device still owns ({free} free): {e}"
    );
}

/// A transport whose reset can be made to time out (a hung device that never reads back 0),
/// and that can report another maximum size for one queue (queue, size).
struct StuckReset(
    PciTransport<MockPciDevice>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Option<(u16, u16)>,
);

impl Transport for StuckReset {
    type Notify = <PciTransport<MockPciDevice> as Transport>::Notify;
    type Irq = <PciTransport<MockPciDevice> as Transport>::Irq;
    fn reset(&mut self) -> Result<(), TransportError> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(TransportError::ResetTimeout);
        }
        self.0.reset()
    }
    fn status(&mut self) -> Result<rdk_core::virtio::DeviceStatus, TransportError> {
        self.0.status()
    }
    fn set_status(&mut self, s: rdk_core::virtio::DeviceStatus) -> Result<(), TransportError> {
        self.0.set_status(s)
    }
    fn device_features(&mut self) -> Result<Features, TransportError> {
        self.0.device_features()
    }
    fn set_driver_features(&mut self, f: Features) -> Result<(), TransportError> {
        self.0.set_driver_features(f)
    }
    fn num_queues(&mut self) -> Result<u16, TransportError> {
        self.0.num_queues()
    }
    fn max_queue_size(&mut self, q: u16) -> Result<u16, TransportError> {
        match self.2 {
            Some((queue, max)) if queue == q => Ok(max),
            _ => self.0.max_queue_size(q),
        }
    }
    fn setup_interrupts(
        &mut self,
        q: &[u16],
    ) -> Result<Option<rdk_core::virtio::Interrupts<Self::Irq>>, TransportError> {
        self.0.setup_interrupts(q)
    }
    fn setup_queue(
        &mut self,
        q: u16,
        a: &rdk_core::virtio::QueueAreas,
    ) -> Result<(), TransportError> {
        self.0.setup_queue(q, a)
    }
    fn enable_queue(&mut self, q: u16) -> Result<(), TransportError> {
        self.0.enable_queue(q)
    }
    fn queue_notify(&mut self, q: u16) -> Result<Self::Notify, TransportError> {
        self.0.queue_notify(q)
    }
    fn config_generation(&mut self) -> Result<u8, TransportError> {
        self.0.config_generation()
    }
    fn read_config(&mut self, o: usize, b: &mut [u8]) -> Result<(), TransportError> {
        self.0.read_config(o, b)
    }
}

/// DEVICE_NEEDS_RESET on a device whose reset does not complete: the recovery must not tell
/// the queues to free the buffers the device still owns (it may DMA into them).
#[test]
fn recovery_does_not_free_buffers_when_the_reset_failed() {
    let os = MockOs::new();
    let (pci, dev) = MockVirtioNet::new(&os, NetDevConfig::default());
    let stuck = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let transport = StuckReset(PciTransport::new(pci).unwrap(), stuck.clone(), None);
    let mut port = Port::new(0, driver_over(transport, &os, split_only()));
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("vnet", 2048)).unwrap();
    start_one_pair(&mut port, &pool, 256, &TxQueueConfig::default());
    let resets = dev.counters().resets;
    let posted = pool.size() - pool.available();
    assert!(posted >= 256, "rx buffers posted: {posted}");
    stuck.store(true, std::sync::atomic::Ordering::SeqCst);
    dev.set_needs_reset();
    assert!(!port.link_update().up);
    let mut b: [Option<Mbuf>; 32] = Default::default();
    let _ = port.queues().unwrap().rx[0].rx_burst(&mut b);
    assert_eq!(dev.counters().resets, resets, "the device was not reset");
    let xs = port.xstats();
    let rebuilt = xs
        .iter()
        .find(|x| x.name == "rx_queue_resets")
        .unwrap()
        .value;
    assert_eq!(
        rebuilt, 0,
        "the rx queue freed {posted} buffers the un-reset device still owns"
    );
    stuck.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// Queues may differ in their maximum size (QEMU's `rx_queue_size` and `tx_queue_size`), and a
/// maximum need not be a power of two (a packed ring's may be any size, virtio 1.2 §2.8). The
/// port allows descriptor counts up to queue 0's maximum; a queue with a smaller, odd maximum
/// gets the largest power of two below it instead of failing its setup.
#[test]
fn a_queue_whose_max_size_is_not_a_power_of_two_gets_the_next_one_below() {
    for want in [SUPPORTED, split_only()] {
        let os = MockOs::new();
        let dcfg = NetDevConfig {
            max_queue_size: 1024,
            ..Default::default()
        };
        let (pci, dev) = MockVirtioNet::new(&os, dcfg);
        let stuck = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Queue 1 (the first transmit queue) says 1000.
        let transport = StuckReset(PciTransport::new(pci).unwrap(), stuck, Some((1, 1000)));
        let mut port = Port::new(0, driver_over(transport, &os, want));
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("vnet", 2048)).unwrap();
        start_one_pair(&mut port, &pool, 1024, &TxQueueConfig::default());
        assert_eq!(dev.queue(0), Some((1024, true)), "rx ring");
        assert_eq!(dev.queue(1), Some((512, true)), "tx ring");
        let mut b = [Some(mbuf_of(&pool, &frame(1, 80)))];
        assert_eq!(port.queues().unwrap().tx[0].tx_burst(&mut b), 1);
        assert_eq!(dev.take_sent().len(), 1);
        port.close().unwrap();
        drop(port);
        assert_eq!(pool.available(), pool.size(), "pool full again");
        os.device_memory().assert_no_faults();
    }
}
