//! Port and queue configuration, and its validation against [`DevInfo`].

use super::error::{Dir, EthError};
use super::info::{DevInfo, RssHashTypes, RxOffload, TxOffload};

/// RSS settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RssConfig {
    /// Hash types to spread on.
    pub hash_types: RssHashTypes,
    /// The Toeplitz key (40 bytes for most devices); `None`: the driver's default.
    pub key: Option<[u8; 40]>,
}

/// Port-wide configuration (DPDK's `rte_eth_conf`, trimmed to what rdk drivers honour).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortConfig {
    /// Receive queues.
    pub nb_rxq: u16,
    /// Transmit queues.
    pub nb_txq: u16,
    /// Receive offloads to enable.
    pub rx_offloads: RxOffload,
    /// Transmit offloads to enable.
    pub tx_offloads: TxOffload,
    /// RSS, when there are several receive queues.
    pub rss: Option<RssConfig>,
    /// MTU; `None` keeps the device's.
    pub mtu: Option<u16>,
    /// Enable per-queue receive interrupts.
    pub rx_interrupts: bool,
    /// Enable link-state-change interrupts.
    pub lsc_interrupt: bool,
}

impl PortConfig {
    /// `nb_rxq` receive and `nb_txq` transmit queues, everything else default.
    pub const fn queues(nb_rxq: u16, nb_txq: u16) -> Self {
        Self {
            nb_rxq,
            nb_txq,
            rx_offloads: RxOffload::empty(),
            tx_offloads: TxOffload::empty(),
            rss: None,
            mtu: None,
            rx_interrupts: false,
            lsc_interrupt: false,
        }
    }

    /// Checks this configuration against what the device can do.
    pub fn validate(&self, info: &DevInfo) -> Result<(), EthError> {
        if self.nb_rxq > info.max_rx_queues {
            return Err(EthError::TooManyQueues {
                dir: Dir::Rx,
                requested: self.nb_rxq,
                max: info.max_rx_queues,
            });
        }
        if self.nb_txq > info.max_tx_queues {
            return Err(EthError::TooManyQueues {
                dir: Dir::Tx,
                requested: self.nb_txq,
                max: info.max_tx_queues,
            });
        }
        let missing = self.rx_offloads - info.rx_offload_capa;
        if !missing.is_empty() {
            return Err(EthError::RxOffloadUnsupported { missing });
        }
        let missing = self.tx_offloads - info.tx_offload_capa;
        if !missing.is_empty() {
            return Err(EthError::TxOffloadUnsupported { missing });
        }
        if let Some(rss) = &self.rss {
            if info.rss_hash_types.is_empty() || !info.rss_hash_types.contains(rss.hash_types) {
                return Err(EthError::RssUnsupported);
            }
        }
        if let Some(mtu) = self.mtu {
            check_mtu(mtu, info)?;
        }
        Ok(())
    }
}

/// Checks an MTU against the device's range.
pub fn check_mtu(mtu: u16, info: &DevInfo) -> Result<(), EthError> {
    if mtu < info.min_mtu || mtu > info.max_mtu {
        return Err(EthError::MtuOutOfRange {
            mtu,
            min: info.min_mtu,
            max: info.max_mtu,
        });
    }
    Ok(())
}

/// Receive-queue configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RxQueueConfig {
    /// Refill descriptors in batches of this many (0: the driver's default).
    pub free_thresh: u16,
    /// Drop frames when no descriptor is free instead of back-pressuring.
    pub drop_en: bool,
    /// Per-queue receive offloads (on top of the port's).
    pub offloads: RxOffload,
}

/// Transmit-queue configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxQueueConfig {
    /// Reclaim completed descriptors when fewer than this are free (0: driver default).
    pub free_thresh: u16,
    /// Ask for a completion report every this many descriptors (0: driver default).
    pub rs_thresh: u16,
    /// Per-queue transmit offloads (on top of the port's).
    pub offloads: TxOffload,
}
