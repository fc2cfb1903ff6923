//! What can go wrong setting up `net_af_xdp`, with the detail the generic [`EthError`] cannot
//! carry (program ids and names, verifier logs); the driver keeps the last one
//! ([`AfXdpDriver::last_error`](crate::AfXdpDriver::last_error)) and returns its [`EthError`]
//! form from the ethdev calls.

use crate::umem::UmemError;
use nix::errno::Errno;
use rdk_core::ethdev::{DeviceReason, EthError};
use std::fmt;

/// A `net_af_xdp` set-up failure.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfXdpError {
    /// The interface does not exist (in this network namespace).
    InterfaceNotFound {
        /// Its name.
        iface: String,
    },
    /// The process lacks a capability for `op`.
    Permission {
        /// What was refused.
        op: &'static str,
    },
    /// The kernel has no AF_XDP sockets (`socket(AF_XDP)` gave `EAFNOSUPPORT`).
    Unsupported,
    /// Another program is attached to the interface; rdk does not touch it.
    ForeignProgram {
        /// The interface.
        iface: String,
        /// The program's id.
        id: u32,
        /// The program's name (empty if unnamed).
        name: String,
    },
    /// rdk's program on the interface belongs to a live port (of this process or another):
    /// it is not a leftover, and replacing it would cut that port off.
    ProgramInUse {
        /// The interface.
        iface: String,
        /// The program's id.
        id: u32,
        /// The process that holds it.
        pid: u32,
    },
    /// The receive pool cannot be a UMEM.
    Umem(UmemError),
    /// The verifier refused the redirect program.
    Verifier {
        /// The errno.
        code: i32,
        /// The verifier's log.
        log: String,
    },
    /// Fewer receive than transmit queues: each queue pair is one socket whose UMEM is its
    /// receive queue's pool.
    QueuesUnpaired {
        /// Receive queues configured.
        rx: u16,
        /// Transmit queues configured.
        tx: u16,
    },
    /// The rx pool gives the tx queue of its pair no mbuf cache (for copies of foreign
    /// mbufs); the error says why and what to do.
    TxCache(EthError),
    /// Another system call failed.
    Os {
        /// What failed.
        op: &'static str,
        /// The errno.
        code: i32,
    },
}

impl fmt::Display for AfXdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AfXdpError::InterfaceNotFound { iface } => write!(
                f,
                "interface {iface} not found; check the name (`ip link`) and the network \
                 namespace rdk runs in"
            ),
            AfXdpError::Permission { op } => write!(
                f,
                "{op}: permission denied; run as root or grant CAP_NET_ADMIN, CAP_NET_RAW and \
                 CAP_BPF (CAP_SYS_ADMIN on kernels before 5.8)"
            ),
            AfXdpError::Unsupported => write!(
                f,
                "this kernel has no AF_XDP sockets (socket(AF_XDP) failed with EAFNOSUPPORT); \
                 use a kernel built with CONFIG_XDP_SOCKETS=y, or net_af_packet"
            ),
            AfXdpError::ForeignProgram { iface, id, name } => write!(
                f,
                "an XDP program (id {id}, name {name:?}) is already attached to {iface} and is \
                 not rdk's; detach it with `ip link set dev {iface} xdp off` (or stop the \
                 program that owns it), or use another interface"
            ),
            AfXdpError::ProgramInUse { iface, id, pid } => write!(
                f,
                "rdk's XDP program (id {id}) on {iface} belongs to a running port (process \
                 {pid}); one port per interface: take several queues with queue_count in one \
                 port, or stop the other port first"
            ),
            AfXdpError::Umem(e) => write!(f, "UMEM: {e}"),
            AfXdpError::Verifier { code, log } => write!(
                f,
                "the kernel refused rdk's XDP program (errno {code}); verifier log: {log}"
            ),
            AfXdpError::QueuesUnpaired { rx, tx } => write!(
                f,
                "{tx} tx queues but {rx} rx queues: net_af_xdp needs an rx queue for every tx \
                 queue (each pair is one AF_XDP socket whose UMEM is the rx queue's pool)"
            ),
            AfXdpError::TxCache(e) => write!(f, "the tx queue's cache of copies: {e}"),
            AfXdpError::Os { op, code } => {
                write!(f, "{op} failed: {}", Errno::from_raw(*code).desc())
            }
        }
    }
}

impl std::error::Error for AfXdpError {}

impl AfXdpError {
    /// Classifies a failed call: permission and missing-support errnos get their own kinds.
    pub(crate) fn os(op: &'static str, e: Errno) -> Self {
        match e {
            Errno::EPERM | Errno::EACCES => AfXdpError::Permission { op },
            Errno::EAFNOSUPPORT => AfXdpError::Unsupported,
            _ => AfXdpError::Os { op, code: e as i32 },
        }
    }

    /// The ethdev form: a fixed text and the errno (the full text is in `Display`).
    pub fn to_eth(&self, op: &'static str) -> EthError {
        let (text, code) = match self {
            AfXdpError::InterfaceNotFound { .. } => (
                "the interface does not exist in this network namespace",
                libc::ENODEV,
            ),
            AfXdpError::Permission { .. } => (
                "permission denied: run as root or grant CAP_NET_ADMIN (and CAP_NET_RAW, CAP_BPF)",
                libc::EPERM,
            ),
            AfXdpError::Unsupported => (
                "the kernel has no AF_XDP sockets (EAFNOSUPPORT); use net_af_packet",
                libc::EAFNOSUPPORT,
            ),
            AfXdpError::ForeignProgram { .. } => (
                "another XDP program is attached to the interface; detach it with \
                 `ip link set dev IF xdp off` (see the driver's last_error for its id and name)",
                libc::EBUSY,
            ),
            AfXdpError::ProgramInUse { .. } => (
                "another running rdk port has its XDP program on the interface; use one port \
                 per interface (see the driver's last_error)",
                libc::EBUSY,
            ),
            AfXdpError::Umem(UmemError::NoObjects) => (
                "the rx pool has no free mbuf; give the rx queue a pool with free mbufs",
                libc::ENOBUFS,
            ),
            AfXdpError::Umem(UmemError::ChunkTooSmall { .. }) => (
                "the rx pool's mbufs are too small for UMEM chunks; use a data room >= 2048",
                libc::EINVAL,
            ),
            AfXdpError::Verifier { code, .. } => (
                "the kernel's verifier refused the XDP program (see the driver's last_error)",
                *code,
            ),
            AfXdpError::QueuesUnpaired { .. } => (
                "net_af_xdp needs an rx queue for every tx queue",
                libc::EINVAL,
            ),
            AfXdpError::TxCache(EthError::Device { reason, .. }) => (reason.text, reason.code),
            AfXdpError::TxCache(_) => ("the rx pool refused the tx queue a cache", 0),
            AfXdpError::Os { code, .. } => (
                match Errno::from_raw(*code) {
                    Errno::ENODEV | Errno::ENXIO => "the interface is gone",
                    Errno::EBUSY => "the queue or interface is busy (another AF_XDP socket?)",
                    Errno::EINVAL => {
                        "the kernel refused the AF_XDP set-up (queue id beyond the \
                                      interface's queues?)"
                    }
                    Errno::ENOMEM | Errno::ENOBUFS => "the kernel is out of memory for rings",
                    _ => "an AF_XDP system call failed",
                },
                *code,
            ),
        };
        EthError::Device {
            op,
            reason: DeviceReason { text, code },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_become_the_kinds_users_act_on() {
        assert_eq!(
            AfXdpError::os("socket(AF_XDP)", Errno::EPERM),
            AfXdpError::Permission {
                op: "socket(AF_XDP)"
            }
        );
        assert_eq!(
            AfXdpError::os("socket(AF_XDP)", Errno::EAFNOSUPPORT),
            AfXdpError::Unsupported
        );
        let e = AfXdpError::os("bind", Errno::EBUSY);
        assert!(matches!(e, AfXdpError::Os { op: "bind", code } if code == libc::EBUSY));
        for (e, words) in [
            (AfXdpError::Unsupported, "CONFIG_XDP_SOCKETS"),
            (AfXdpError::Permission { op: "x" }, "CAP_NET_ADMIN"),
            (
                AfXdpError::ForeignProgram {
                    iface: "eth9".into(),
                    id: 42,
                    name: "xdp_fw".into(),
                },
                "ip link set dev eth9 xdp off",
            ),
            (
                AfXdpError::InterfaceNotFound {
                    iface: "nope0".into(),
                },
                "not found",
            ),
        ] {
            assert!(e.to_string().contains(words), "{e}");
            let eth = e.to_eth("start").to_string();
            assert!(!eth.is_empty());
        }
        let f = AfXdpError::ForeignProgram {
            iface: "eth9".into(),
            id: 42,
            name: "xdp_fw".into(),
        };
        assert!(f.to_string().contains("id 42") && f.to_string().contains("xdp_fw"));
        assert!(matches!(
            AfXdpError::Unsupported.to_eth("configure"),
            EthError::Device { reason, .. } if reason.code == libc::EAFNOSUPPORT
        ));
    }
}
