//! Cross-crate test suites for rdk; the suites live in `tests/tests/`.
//!
//! The library holds what several suites share: [`netns`], the namespaces, veth pairs and
//! prerequisite checks of the tests that run against the real kernel, and [`frames`], test
//! frames with the Python peers that send and capture them, and [`dpdk`], `dpdk-testpmd` as an
//! interactive peer, [`lab`], the veth rig of the host-PMD suites, and [`port`], waiting for link changes the kernel applies late.
#![deny(missing_docs)]

pub mod dpdk;
pub mod frames;
pub mod lab;
pub mod netns;
pub mod port;
