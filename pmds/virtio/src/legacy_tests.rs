//! The driver over [`LegacyPciTransport`] against os-mock's virtio-net in its legacy mode:
//! traffic both ways byte for byte, interrupts, link, a restart, and the refusals the legacy
//! interface makes necessary. Every test ends with the pool full, every region freed and no
//! device fault.

use crate::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use rdk_core::ethdev::{DevArgs, Port, PortConfig, RxQueue, RxQueueConfig, TxQueue, TxQueueConfig};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_core::os::EventNotifier;
use rdk_core::virtio::{Features, Transport};
use rdk_os_mock::pci::MockPciDevice;
use rdk_os_mock::virtio::{MockVirtioNet, NetDevConfig, RxCsum};
use rdk_os_mock::MockOs;

type Drv = VirtioNet<LegacyPciTransport<MockPciDevice>, MockOs>;

struct Rig {
    os: MockOs,
    dev: MockVirtioNet,
    port: Port<Drv>,
    pool: PktMbufPool,
}

fn legacy_dev(os: &MockOs) -> (MockPciDevice, MockVirtioNet) {
    MockVirtioNet::new_legacy(os, NetDevConfig::default())
}

fn rig(rx_interrupts: bool) -> Rig {
    let os = MockOs::new();
    let (pci, dev) = legacy_dev(&os);
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("legacy", 2048)).unwrap();
    let t = LegacyPciTransport::new(pci).unwrap();
    let drv = VirtioNet::new(t, os.clone(), VirtioNetConfig::default()).unwrap();
    let mut port = Port::new(0, drv);
    let mut pc = PortConfig::queues(1, 1);
    pc.rx_interrupts = rx_interrupts;
    port.configure(&pc).unwrap();
    // A legacy queue has the device's size: 256 here.
    port.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default())
        .unwrap();
    port.tx_queue_setup(0, 256, &TxQueueConfig::default())
        .unwrap();
    port.start().unwrap();
    Rig {
        os,
        dev,
        port,
        pool,
    }
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k * 11 + i * 5) as u8).collect()
}

fn bytes_of(m: &Mbuf) -> Vec<u8> {
    let mut v = vec![0u8; m.pkt_len() as usize];
    m.copy_to(&mut v).unwrap();
    v
}

impl Rig {
    fn rx_all(&mut self, want: usize) -> Vec<Mbuf> {
        let mut got = Vec::new();
        for _ in 0..1000 {
            let mut burst: [Option<Mbuf>; 32] = Default::default();
            let n = self.port.queues().unwrap().rx[0].rx_burst(&mut burst);
            got.extend(burst[..n].iter_mut().map(|m| m.take().unwrap()));
            if got.len() >= want {
                break;
            }
        }
        got
    }

    fn send(&mut self, frames: &[Vec<u8>]) -> usize {
        let mut burst: Vec<Option<Mbuf>> = frames
            .iter()
            .map(|f| {
                let mut m = self.pool.alloc().unwrap();
                m.append(f.len() as u16).unwrap().copy_from_slice(f);
                Some(m)
            })
            .collect();
        self.port.queues().unwrap().tx[0].tx_burst(&mut burst)
    }

    fn finish(mut self) {
        let faults = self
            .port
            .driver()
            .with_transport(|t| t.device().mmio_faults());
        assert_eq!(faults, 0, "BAR accesses outside the window");
        let c = self.dev.counters();
        assert_eq!(c.width_errors, 0, "registers at their natural width");
        assert_eq!(c.driver_errors, 0, "{:?}", self.dev.last_driver_error());
        self.port.close().unwrap();
        drop(self.port);
        assert_eq!(self.pool.available(), self.pool.size(), "pool full again");
        drop(self.pool);
        self.os.device_memory().assert_no_faults();
        assert_eq!(
            self.os.live_regions(),
            0,
            "every ring and pool region freed"
        );
    }
}

#[test]
fn legacy_negotiates_32_bits_with_mrg_rxbuf_and_any_layout_and_no_control_queue() {
    let r = rig(false);
    let f = r.port.driver().features();
    assert!(!f.contains(Features::VERSION_1), "{f:?}");
    assert!(f.contains(Features::NET_MRG_RXBUF | Features::NET_MAC | ANY_LAYOUT));
    assert!(!f.intersects(Features::NET_CTRL_VQ | Features::NET_MQ | Features::RING_PACKED));
    assert_eq!(r.dev.driver_features(), r.port.driver().active_features());
    assert_eq!(
        r.port.driver().active_features(),
        f - Features::NET_CSUM - Features::NET_GUEST_CSUM,
        "checksum offloads only when the port asks"
    );
    // The MAC was read before MSI-X was on (config at 0x14); the link after (at 0x18).
    assert_eq!(r.port.mac_addr().0, NetDevConfig::default().mac);
    assert!(r.port.link().up);
    assert_eq!(r.port.info().rx_desc_lim.max, 256);
    r.finish();
}

#[test]
fn legacy_traffic_both_ways_is_byte_exact() {
    let mut r = rig(false);
    // More than a ring's worth, so refills and the device's backlog are exercised.
    let sizes = |i: usize| 60 + (i * 53) % 1400;
    for i in 0..600 {
        r.dev.deliver(0, &frame(i, sizes(i)), RxCsum::None);
    }
    let got = r.rx_all(600);
    assert_eq!(got.len(), 600);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(bytes_of(m), frame(i, sizes(i)), "rx frame {i}");
    }
    drop(got);
    let mut sent = 0;
    while sent < 600 {
        let batch: Vec<Vec<u8>> = (sent..(sent + 32).min(600))
            .map(|i| frame(i + 1000, sizes(i)))
            .collect();
        assert_eq!(r.send(&batch), batch.len());
        sent += batch.len();
    }
    let out = r.dev.take_sent();
    assert_eq!(out.len(), 600);
    for (i, f) in out.iter().enumerate() {
        assert_eq!(f.data, frame(i + 1000, sizes(i)), "tx frame {i}");
        assert_eq!(
            f.descs, 1,
            "header and frame share a descriptor (ANY_LAYOUT)"
        );
    }
    let s = r.port.stats();
    assert_eq!(
        (s.ipackets, s.opackets, s.ierrors, s.oerrors),
        (600, 600, 0, 0)
    );
    assert!(r.dev.counters().notifies < 600, "one doorbell per burst");
    r.finish();
}

#[test]
fn legacy_rx_interrupt_link_interrupt_and_a_restart() {
    let mut r = rig(true);
    let irq = r.port.queues().unwrap().rx[0].irq().unwrap().clone();
    r.port.queues().unwrap().rx[0].intr_disable().unwrap();
    r.dev.deliver(0, &frame(0, 64), RxCsum::None);
    assert_eq!(irq.ack().unwrap(), 0, "disabled: no interrupt");
    assert_eq!(r.rx_all(1).len(), 1);
    r.port.queues().unwrap().rx[0].intr_enable().unwrap();
    r.dev.deliver(0, &frame(1, 64), RxCsum::None);
    assert!(
        irq.ack().unwrap() >= 1,
        "enabled: woken through the queue vector"
    );
    r.port.queues().unwrap().rx[0].intr_disable().unwrap();
    assert_eq!(bytes_of(&r.rx_all(1)[0]), frame(1, 64));

    let cfg_irq = r.port.driver().config_irq().unwrap().clone();
    r.dev.set_link(false);
    assert!(cfg_irq.ack().unwrap() >= 1, "config interrupt");
    assert!(!r.port.driver().config_changed().up);
    r.dev.set_link(true);
    assert!(r.port.link_update().up);

    // Stop/start: reset, queue addresses given again, traffic flows.
    r.port.stop().unwrap();
    r.port.start().unwrap();
    r.dev.deliver(0, &frame(2, 300), RxCsum::None);
    assert_eq!(bytes_of(&r.rx_all(1)[0]), frame(2, 300));
    assert_eq!(r.send(&[frame(3, 200)]), 1);
    assert_eq!(r.dev.take_sent()[0].data, frame(3, 200));
    r.finish();
}

#[test]
fn legacy_queue_sizes_are_the_devices() {
    let os = MockOs::new();
    let (pci, _dev) = legacy_dev(&os);
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("legacy", 512)).unwrap();
    let drv = VirtioNet::new(
        LegacyPciTransport::new(pci).unwrap(),
        os.clone(),
        VirtioNetConfig::default(),
    )
    .unwrap();
    let mut port = Port::new(0, drv);
    port.configure(&PortConfig::queues(1, 1)).unwrap();
    port.rx_queue_setup(0, 128, &pool, &RxQueueConfig::default())
        .unwrap();
    port.tx_queue_setup(0, 256, &TxQueueConfig::default())
        .unwrap();
    let e = port.start().unwrap_err().to_string();
    assert!(e.contains("fixed"), "{e}");
    drop(port);
    assert_eq!(pool.available(), pool.size());
}

#[test]
fn legacy_without_mrg_rxbuf_is_refused_with_the_reason() {
    let os = MockOs::new();
    let (pci, dev) = legacy_dev(&os);
    let cfg =
        VirtioNetConfig::from_devargs(&DevArgs::parse("net_virtio0,mrg_rxbuf=0").unwrap()).unwrap();
    let e = VirtioNet::new(LegacyPciTransport::new(pci).unwrap(), os.clone(), cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("MRG_RXBUF"), "{e}");
    assert!(dev
        .status()
        .contains(rdk_core::virtio::DeviceStatus::FAILED));
}

#[test]
fn legacy_transport_registers_and_refusals() {
    let os = MockOs::new();
    let (pci, _dev) = legacy_dev(&os);
    let mut t = LegacyPciTransport::new(pci).unwrap();
    assert!(t.is_legacy());
    // 4 pairs and a control queue, counted by probing sizes.
    assert_eq!(t.num_queues().unwrap(), 9);
    assert_eq!(t.max_queue_size(8).unwrap(), 256);
    assert!(t.max_queue_size(9).is_err());
    let offered = t.device_features().unwrap();
    assert!(offered.bits() >> 32 == 0 && offered.contains(ANY_LAYOUT));
    assert!(t.set_driver_features(Features::VERSION_1).is_err());
    assert!(t.queue_notify(9).is_err());
    let mut mac = [0u8; 6];
    t.read_config(0, &mut mac).unwrap();
    assert_eq!(mac, NetDevConfig::default().mac);
    assert!(t.read_config(0x40, &mut mac).is_err(), "past the BAR");
}

#[test]
fn the_modern_transport_still_refuses_a_device_without_version_1() {
    let os = MockOs::new();
    let (pci, _dev) = MockVirtioNet::new(
        &os,
        NetDevConfig {
            features: Features::NET_MAC | Features::NET_MRG_RXBUF,
            ..Default::default()
        },
    );
    let e = VirtioNet::new(
        PciTransport::new(pci).unwrap(),
        os.clone(),
        VirtioNetConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("LegacyPciTransport"), "{e}");
}

#[test]
fn any_pci_transport_picks_by_capabilities_and_devargs() {
    let os = MockOs::new();
    let args = |s: &str| DevArgs::parse(s).unwrap();
    // No modern capabilities: legacy, and the driver runs over it end to end.
    let (pci, dev) = legacy_dev(&os);
    assert!(!has_modern_caps(&pci).unwrap());
    let t = AnyPciTransport::from_devargs(pci, &args("net_virtio0")).unwrap();
    assert!(t.legacy() && t.is_legacy());
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("any", 512)).unwrap();
    let cfg = VirtioNetConfig::from_devargs(&args("net_virtio0,force_legacy=1")).unwrap();
    let mut port = Port::new(0, VirtioNet::new(t, os.clone(), cfg).unwrap());
    port.configure(&PortConfig::queues(1, 1)).unwrap();
    port.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default())
        .unwrap();
    port.tx_queue_setup(0, 256, &TxQueueConfig::default())
        .unwrap();
    port.start().unwrap();
    dev.deliver(0, &frame(7, 99), RxCsum::None);
    let mut burst: [Option<Mbuf>; 4] = Default::default();
    let mut n = 0;
    for _ in 0..100 {
        n = port.queues().unwrap().rx[0].rx_burst(&mut burst);
        if n > 0 {
            break;
        }
    }
    assert_eq!(n, 1);
    assert_eq!(bytes_of(burst[0].as_ref().unwrap()), frame(7, 99));
    let mut m = burst[0].take();
    assert_eq!(
        port.queues().unwrap().tx[0].tx_burst(core::slice::from_mut(&mut m)),
        1
    );
    assert_eq!(dev.take_sent()[0].data, frame(7, 99));
    port.close().unwrap();
    drop(port);
    assert_eq!(pool.available(), pool.size());

    // Modern capabilities: modern, unless force_legacy (this model has no BAR0, so the
    // legacy transport says why it cannot).
    let (pci, _dev) = MockVirtioNet::new(&os, NetDevConfig::default());
    assert!(has_modern_caps(&pci).unwrap());
    assert!(!AnyPciTransport::open(pci, false).unwrap().legacy());
    let (pci, _dev) = MockVirtioNet::new(&os, NetDevConfig::default());
    let e = AnyPciTransport::from_devargs(pci, &args("net_virtio0,force_legacy=1"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("BAR0"), "{e}");
    let (pci, _dev) = MockVirtioNet::new(&os, NetDevConfig::default());
    let e = AnyPciTransport::from_devargs(pci, &args("net_virtio0,force_legacy=maybe"))
        .err()
        .unwrap();
    assert!(matches!(e, AnyPciError::DevArgs(_)), "{e}");
}
