//! # rdk-pmd-null: DPDK's `net_null`
//!
//! A port with no wire behind it. Receiving hands out freshly allocated mbufs of a fixed size;
//! sending frees whatever it is given. What is left to measure is the cost of the port API,
//! the mbuf pool and the application's own loop — which is what `net_null` is for.
//!
//! ```text
//! net_null0,size=64,copy=0,no-rx=0
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `size` | 64 | bytes of every received packet (`data_len` = `pkt_len`) |
//! | `copy` | 0 | 1: copy `size` bytes of a zeroed dummy packet into every received mbuf, and copy every sent packet's first `size` bytes out to a dummy buffer (DPDK's copy mode); 0: touch no payload |
//! | `no-rx` | 0 | 1: receive nothing (a transmit-only sink) |
//!
//! The behaviour is DPDK 22.11's: link down until started, then up at 10 Gbit/s full duplex;
//! promiscuous and all-multicast accepted; any MAC address; RSS accepted and ignored. The
//! differences are deliberate: a receive that can only get part of a burst from the pool
//! returns that part and counts the shortfall as `rx_nombuf` (DPDK returns nothing and counts
//! nothing), and sent bytes are counted (DPDK counts packets only).
//!
//! ## Where the mbufs go
//!
//! Each receive queue allocates through an [`MbufCache`](rdk_core::mbuf::MbufCache) of the pool
//! it was set up with, and the transmit queue with the same id frees into that same cache
//! (segments of other pools go straight back to their own pool). Sharing is what makes freed
//! mbufs come back hot, as DPDK's per-core mempool cache does; the queues may still run on
//! different cores, so each burst takes the cache with one atomic swap (a try-lock: a burst that
//! finds it taken uses the pool's ring instead). Nothing else atomic happens per burst, and
//! nothing per packet: the counters take one add per burst.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

mod cache;
mod driver;
mod rx;
mod tx;

pub use driver::{NullDriver, DEFAULT_SIZE, DEVARGS_KEYS, MAX_QUEUES, RX_CACHE_SIZE};
pub use rx::NullRx;
pub use tx::NullTx;
