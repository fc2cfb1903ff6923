//! Shared pieces of rdk's example and benchmark programs.
#![deny(missing_docs)]
pub mod cpu;
pub mod dpdk_anchor;
pub mod dpdk_ring_perf;
pub mod testpmd;
pub mod tsc;
