//! # rdk-pmd-virtio: DPDK's `net_virtio`, `no_std`
//!
//! A virtio-net driver (virtio 1.2 §5.1) written against [`Transport`]: modern virtio-pci
//! over any [`PciDevice`](rdk_core::os::pci::PciDevice) ([`PciTransport`]), legacy virtio-pci
//! ([`LegacyPciTransport`]; [`AnyPciTransport`] picks one), and vhost-user (DPDK's
//! virtio-user: `rdk_os_linux::vhost_user::VhostUserTransport`, which emulates the
//! registers in the frontend; several queue pairs there need no control queue, see
//! [`Transport::pairs_follow_enabled_queues`]). Rings are rdk-core's [`SplitQueue`](rdk_core::virtio::SplitQueue)
//! or [`PackedQueue`](rdk_core::virtio::PackedQueue), whichever the device negotiates; they
//! check everything the device writes, and this driver counts what they report.
//!
//! - Initialisation (§3.1.1): reset, `ACKNOWLEDGE`, `DRIVER`, features (checking that
//!   `FEATURES_OK` stuck and that the device did not change its offer), interrupts, queues,
//!   `DRIVER_OK`. [`VirtioNet::new`] negotiates to learn the device; every port start
//!   resets and negotiates again. A start negotiates `CSUM` only if the port (or a transmit queue)
//!   was configured with `TxOffload::{UDP,TCP}_CKSUM` and `GUEST_CSUM` only with
//!   `RxOffload::{UDP,TCP}_CKSUM`, as DPDK's net_virtio: with `CSUM` DPDK's vhost reads and
//!   acts on every transmit header (split v2h to DPDK's vhost: 23 -> 29 Mpps without it).
//! - Receive: one mbuf per descriptor, the 12-byte header in its headroom; `MRG_RXBUF`
//!   frames become mbuf chains; `GUEST_CSUM` results become `ol_flags` when the port was
//!   configured with `RxOffload::{UDP,TCP}_CKSUM` (as DPDK's `has_rx_offload`: without it
//!   and without `MRG_RXBUF` the header is not read at all, which spares the line the device
//!   just wrote — h2v split 22-23 -> 24-27 Mpps); refills in batches with one notification
//!   per burst.
//! - Transmit: the header goes into the headroom (or a per-queue header area when the mbuf
//!   is shared), one descriptor per segment, one notification per burst, completions
//!   reclaimed in batches; with `CSUM`, TCP/UDP checksum requests become `NEEDS_CSUM` (a
//!   port not configured for the offload sends its frames as they are, checksum field and
//!   all, as on DPDK; a request whose field lies past its frame is dropped and counted,
//!   `tx_bad_offload_request`, not handed to the device). Under
//!   back-pressure nothing is added or reclaimed until the device has finished a batch
//!   ([`Virtqueue::ready_at_least`](rdk_core::virtio::Virtqueue::ready_at_least)): a
//!   software backend polling the ring otherwise trades cache lines with the driver one
//!   slot at a time (measured: ~10x slower against DPDK's vhost).
//! - Control queue: promiscuous, all-multicast, MAC address, queue pairs (`MQ`).
//! - Link from the config `status` field (`STATUS`); [`VirtioNet::config_changed`] after a
//!   configuration interrupt.
//! - Recovery from `DEVICE_NEEDS_RESET` while the port runs (a virtio-pci device may set
//!   it; vhost-user sets it when a backend with packed rings comes back): the link query
//!   that sees it resets the device, which then writes nothing more into the rings, and asks
//!   every queue to rebuild. Each queue does so in its own thread at its next burst: every
//!   mbuf it had in flight goes back to its pool (transmitted packets the device may not
//!   have read are counted in the `tx_reset_dropped_packets` xstat), its ring is rebuilt
//!   empty in the same memory, a receive queue posts fresh buffers, and it acknowledges;
//!   until the device is back its bursts return 0 (a transmit burst leaves the packets with
//!   the caller). The first link query after every queue acknowledged brings the device up
//!   as a start does — same features (else [`VirtioNet::recovery_error`] says so and the
//!   port must be stopped and started), same ring memory, interrupts, `DRIVER_OK`,
//!   control-queue settings — and the link is up again. The steady-state cost is one
//!   relaxed load per burst of a line nobody writes. Queues are never touched by the
//!   control path, so a queue that nobody polls keeps the link down: an application asleep
//!   on receive interrupts is woken when a recovery begins and when it ends, and should
//!   burst every queue it runs then (an empty transmit burst will do). Stopping or closing
//!   the port at any point of a recovery is fine. After a recovery the queues use the
//!   doorbells and interrupt events the transport handed out again; both transports keep
//!   their events (vhost-user its call eventfds, virtio-pci the MSI-X events it points the
//!   vectors at again), so a wait handle fetched before a recovery or a restart stays valid.
//! - Buffers are always given to the device as IOVAs (right with `ACCESS_PLATFORM` behind
//!   an IOMMU, and the only thing rdk has).
//!
//! Device arguments ([`VirtioNetConfig::from_devargs`]) can refuse features:
//!
//! ```text
//! net_virtio0,packed_vq=0,in_order=0,mrg_rxbuf=1,event_idx=1,mq=1
//! ```
//!
//! and `force_legacy=1` makes [`AnyPciTransport::from_devargs`] drive a transitional device
//! through its legacy interface.
//!
//! Queue indices follow the spec: receive queue `k` is virtqueue `2k`, transmit queue `k` is
//! `2k + 1`, the control queue is `2 * max_virtqueue_pairs`.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

mod ctrl;
mod driver;
mod legacy;
#[cfg(test)]
mod legacy_tests;
mod pci;
mod pci_any;
mod recover;
mod rx;
mod stats;
#[cfg(test)]
mod tests;
mod tx;

pub use driver::{Rx, Tx, VirtioNet, VirtioNetConfig, DEVARGS_KEYS, SUPPORTED};
pub use legacy::{legacy_features, LegacyNotify, LegacyPciTransport, ANY_LAYOUT};
pub use pci::{PciNotify, PciTransport};
pub use pci_any::{has_modern_caps, AnyPciError, AnyPciNotify, AnyPciTransport};
pub use rdk_core::virtio::{QueueNotify, Transport, TransportError};
pub use rx::VirtioRx;
pub use stats::{RxStats, TxStats};
pub use tx::{VirtioTx, MAX_TX_SEGS};
