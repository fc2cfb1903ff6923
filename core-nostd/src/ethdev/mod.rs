//! The port API (DPDK's ethdev), in two halves.
//!
//! - The data path: [`RxQueue::rx_burst`] and [`TxQueue::tx_burst`] on per-queue objects owned
//!   by one core. Generic, inlined, no locks; the burst array is `[Option<Mbuf>]`, which is an
//!   array of pointers (an `Option<Mbuf>` is 8 bytes).
//! - The control path: [`Port`] wraps a driver ([`Driver`]) and enforces the lifecycle
//!   configure → queue setup → start → stop → close, descriptor limits, offloads and MTU, with
//!   a typed [`EthError`] for every wrong move; [`PortRegistry`] creates ports from DPDK-style
//!   device arguments ([`DevArgs`]).
//!
//! Statistics are per-queue [`QueueCounters`] shared between a queue and its port, so they are
//! readable while the queues run ([`StatsReader`]).

pub mod config;
pub mod devargs;
pub mod error;
pub mod info;
pub mod port;
pub mod queue_cache;
pub mod stats;

pub use config::{PortConfig, RssConfig, RxQueueConfig, TxQueueConfig};
pub use devargs::{DevArgs, DevArgsError, Factory, PortRegistry};
pub use error::{DeviceReason, Dir, EthError, PortState};
pub use info::{DescLimits, DevInfo, LinkStatus, MacAddr, RssHashTypes, RxOffload, TxOffload};
pub use port::{Driver, LinkCallback, Port, Queues, RxQueue, StatsReader, TxQueue};
pub use queue_cache::{no_cache, queue_cache};
pub use stats::{Counter, PerQueue, PortStats, QueueCounters, QueueStats, XStat};
