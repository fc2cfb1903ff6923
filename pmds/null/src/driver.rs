//! The `net_null` device: its arguments, limits and lifecycle.

use crate::cache::SharedCache;
use crate::rx::NullRx;
use crate::tx::NullTx;
use alloc::sync::Arc;
use rdk_core::ethdev::{
    no_cache, DescLimits, DevArgs, DevArgsError, DevInfo, Driver, EthError, LinkStatus, MacAddr,
    PortConfig, QueueCounters, RssHashTypes, RxOffload, RxQueueConfig, TxOffload, TxQueueConfig,
};
use rdk_core::mbuf::{PktMbufPool, PORT_INVALID};

/// Bytes of a received packet unless `size=` says otherwise (DPDK's default).
pub const DEFAULT_SIZE: u16 = 64;

/// Most receive and transmit queues a port has.
pub const MAX_QUEUES: u16 = 16;

/// Mbufs each receive queue's cache holds at most (fewer if the pool is smaller).
pub const RX_CACHE_SIZE: usize = 256;

/// The device arguments `net_null` accepts.
pub const DEVARGS_KEYS: &[&str] = &["size", "copy", "no-rx"];

/// Link speed reported while started (DPDK's `RTE_ETH_SPEED_NUM_10G`).
const SPEED_MBPS: u32 = 10_000;

/// Descriptor counts mean nothing to a null device; these only keep requests sane.
const DESC_LIMITS: DescLimits = DescLimits {
    min: 1,
    max: 4096,
    align: 1,
};

/// A `net_null` device.
#[derive(Debug)]
pub struct NullDriver {
    size: u16,
    copy: bool,
    no_rx: bool,
    mac: MacAddr,
    port_id: u16,
    started: bool,
}

impl NullDriver {
    /// A device receiving `size`-byte packets; `copy` copies a dummy payload in (on receive)
    /// and out (on send), as DPDK's copy mode does.
    pub fn new(size: u16, copy: bool) -> Self {
        Self {
            size,
            copy,
            no_rx: false,
            mac: MacAddr::local_from_name("net_null"),
            port_id: PORT_INVALID,
            started: false,
        }
    }

    /// A device from `net_nullN[,size=N][,copy=0|1][,no-rx=0|1]`.
    pub fn from_devargs(args: &DevArgs) -> Result<Self, DevArgsError> {
        args.check_keys(DEVARGS_KEYS)?;
        let size = args.get_num("size", DEFAULT_SIZE, "a packet size in bytes, 0..=65535")?;
        let copy = args.get_bool("copy", false)?;
        let no_rx = args.get_bool("no-rx", false)?;
        Ok(Self {
            no_rx,
            mac: MacAddr::local_from_name(&args.name),
            ..Self::new(size, copy)
        })
    }

    /// Stamps received mbufs with input port `id` (DPDK's `mbuf->port`); without it they keep
    /// [`PORT_INVALID`].
    pub fn with_port_id(mut self, id: u16) -> Self {
        self.port_id = id;
        self
    }

    /// Receives nothing: the port is a transmit-only sink (`no-rx=1`).
    pub fn with_no_rx(mut self, no_rx: bool) -> Self {
        self.no_rx = no_rx;
        self
    }

    /// Bytes of every received packet.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Whether payloads are copied (`copy=1`).
    pub fn copy(&self) -> bool {
        self.copy
    }

    /// Whether receiving is off (`no-rx=1`).
    pub fn no_rx(&self) -> bool {
        self.no_rx
    }
}

/// A cache size for `pool`, or `None` if the pool is too small to have a cache.
fn cache_size(pool: &PktMbufPool) -> Option<usize> {
    let size = RX_CACHE_SIZE.min(pool.size());
    (size >= 2).then_some(size)
}

impl Driver for NullDriver {
    type Rx = NullRx;
    type Tx = NullTx;

    fn info(&self) -> DevInfo {
        DevInfo {
            driver_name: "net_null",
            max_rx_queues: MAX_QUEUES,
            max_tx_queues: MAX_QUEUES,
            rx_desc_lim: DESC_LIMITS,
            tx_desc_lim: DESC_LIMITS,
            min_mtu: 68,
            max_mtu: 9600,
            rx_offload_capa: RxOffload::empty(),
            // Chains are freed like single segments.
            tx_offload_capa: TxOffload::MULTI_SEGS,
            // DPDK's net_null accepts any RSS configuration (and ignores it).
            rss_hash_types: RssHashTypes::all(),
            speed_mbps: SPEED_MBPS,
        }
    }

    fn configure(&mut self, _config: &PortConfig) -> Result<(), EthError> {
        Ok(())
    }

    fn rx_queue_setup(
        &mut self,
        _queue: u16,
        _nb_desc: u16,
        pool: &PktMbufPool,
        _config: &RxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<NullRx, EthError> {
        if self.size > pool.data_room() {
            return Err(EthError::BuffersTooSmall {
                data_room: pool.data_room(),
                needed: self.size as u32,
            });
        }
        let cache = match cache_size(pool) {
            Some(size) => Some(SharedCache::new(
                pool.cache(size)
                    .map_err(|e| no_cache(e, "rx_queue_setup"))?,
            )),
            None => None,
        };
        Ok(NullRx::new(
            cache,
            pool.clone(),
            self.size,
            self.copy,
            self.no_rx,
            self.port_id,
            counters,
        ))
    }

    fn tx_queue_setup(
        &mut self,
        _queue: u16,
        _nb_desc: u16,
        _config: &TxQueueConfig,
        counters: Arc<QueueCounters>,
    ) -> Result<NullTx, EthError> {
        Ok(NullTx::new(self.copy.then_some(self.size), counters))
    }

    fn start(&mut self, rx: &mut [NullRx], tx: &mut [NullTx]) -> Result<(), EthError> {
        // Queues may have been set up in any order and again after a stop: link each transmit
        // queue to the cache of the receive queue with its id now (see the `cache` module).
        for (i, q) in tx.iter_mut().enumerate() {
            q.set_cache(rx.get(i).and_then(NullRx::shared_cache));
        }
        self.started = true;
        Ok(())
    }

    fn stop(&mut self, _rx: &mut [NullRx], _tx: &mut [NullTx]) -> Result<(), EthError> {
        self.started = false;
        Ok(())
    }

    fn close(&mut self) {
        self.started = false;
    }

    fn link(&self) -> LinkStatus {
        LinkStatus {
            up: self.started,
            speed_mbps: SPEED_MBPS,
            full_duplex: true,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<(), EthError> {
        self.mac = mac;
        Ok(())
    }

    fn set_mtu(&mut self, _mtu: u16) -> Result<(), EthError> {
        Ok(())
    }

    fn set_promiscuous(&mut self, _on: bool) -> Result<(), EthError> {
        Ok(())
    }

    fn set_allmulticast(&mut self, _on: bool) -> Result<(), EthError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn devargs_defaults_and_values() {
        let d = NullDriver::from_devargs(&DevArgs::parse("net_null0").unwrap()).unwrap();
        assert_eq!((d.size(), d.copy(), d.no_rx()), (64, false, false));
        let a = DevArgs::parse("net_null1,size=1500,copy=1,no-rx=1").unwrap();
        let d = NullDriver::from_devargs(&a).unwrap();
        assert_eq!((d.size(), d.copy(), d.no_rx()), (1500, true, true));
    }

    #[test]
    fn devargs_errors_name_the_problem() {
        let a = DevArgs::parse("net_null0,sise=64").unwrap();
        let e = NullDriver::from_devargs(&a).unwrap_err();
        assert_eq!(
            e.to_string(),
            "net_null does not accept 'sise'; accepted keys: size, copy, no-rx"
        );
        let a = DevArgs::parse("net_null0,size=70000").unwrap();
        let e = NullDriver::from_devargs(&a).unwrap_err();
        assert!(
            matches!(&e, DevArgsError::BadValue { key, .. } if key == "size"),
            "{e:?}"
        );
        let a = DevArgs::parse("net_null0,copy=maybe").unwrap();
        assert!(NullDriver::from_devargs(&a).is_err());
    }

    #[test]
    fn macs_are_unicast_and_differ_per_instance() {
        let mac = |s| {
            NullDriver::from_devargs(&DevArgs::parse(s).unwrap())
                .unwrap()
                .mac_addr()
        };
        let (a, b) = (mac("net_null0"), mac("net_null1"));
        assert!(a.is_valid_unicast() && b.is_valid_unicast());
        assert_ne!(a, b);
        assert_eq!(a.0[0] & 0x02, 0x02, "locally administered");
        assert_eq!(a, mac("net_null0,size=60"), "stable");
    }

    #[test]
    fn link_follows_start_and_stop() {
        let mut d = NullDriver::new(64, false);
        assert!(!d.link().up);
        d.start(&mut [], &mut []).unwrap();
        assert_eq!(
            d.link(),
            LinkStatus {
                up: true,
                speed_mbps: 10_000,
                full_duplex: true
            }
        );
        d.stop(&mut [], &mut []).unwrap();
        assert!(!d.link().up);
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;
    use rdk_core::ethdev::{Port, RxQueue, TxQueue};
    use rdk_core::mbuf::{Mbuf, PktMbufPoolConfig};
    use rdk_os_mock::MockOs;

    #[test]
    fn a_packet_size_larger_than_the_buffers_is_refused_at_setup() {
        let os = MockOs::new();
        let mut cfg = PktMbufPoolConfig::new("small", 8);
        cfg.data_room = 512;
        let pool = PktMbufPool::create(&os, &cfg).unwrap();
        let mut p = Port::new(0, NullDriver::new(1000, false));
        p.configure(&PortConfig::queues(1, 1)).unwrap();
        let e = p
            .rx_queue_setup(0, 64, &pool, &RxQueueConfig::default())
            .unwrap_err();
        assert_eq!(
            e,
            EthError::BuffersTooSmall {
                data_room: 512,
                needed: 1000
            }
        );
    }

    #[test]
    fn forwards_through_a_restart_with_queues_set_up_in_any_order() {
        let os = MockOs::new();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("fw", 512)).unwrap();
        let mut p = Port::new(3, NullDriver::new(64, false).with_port_id(3));
        p.configure(&PortConfig::queues(2, 2)).unwrap();
        p.tx_queue_setup(1, 64, &TxQueueConfig::default()).unwrap();
        p.tx_queue_setup(0, 64, &TxQueueConfig::default()).unwrap();
        for q in [1, 0] {
            p.rx_queue_setup(q, 64, &pool, &RxQueueConfig::default())
                .unwrap();
        }
        for round in 0..2 {
            p.start().unwrap();
            let q = p.queues().unwrap();
            let mut burst: [Option<Mbuf>; 32] = Default::default();
            for i in 0..2 {
                assert_eq!(q.rx[i].rx_burst(&mut burst), 32);
                assert!(burst.iter().flatten().all(|m| m.port() == 3));
                assert_eq!(q.tx[1 - i].tx_burst(&mut burst), 32);
            }
            p.stop().unwrap();
            if round == 0 {
                // Re-setting up a receive queue after a stop relinks its transmit partner.
                p.rx_queue_setup(0, 64, &pool, &RxQueueConfig::default())
                    .unwrap();
            }
        }
        let s = p.stats();
        assert_eq!(
            (s.ipackets, s.opackets, s.ibytes, s.obytes),
            (128, 128, 8192, 8192)
        );
        drop(p);
        assert_eq!(pool.available(), 512);
    }
}
