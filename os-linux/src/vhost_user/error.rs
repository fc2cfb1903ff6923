//! [`VhostUserError`]: everything that can go wrong between the frontend and its backend.

use super::features::{FeatureNames, FeatureSet};
use super::msg::{PayloadError, Request, MAX_MEM_REGIONS};
use nix::errno::Errno;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong talking to a vhost-user backend. The backend is an untrusted peer: every
/// reply is checked, and a reply that breaks the protocol is an error here, never a panic.
///
/// After a protocol error ([`is_fatal`](Self::is_fatal)) the byte stream can no longer be
/// trusted to be in step, so the frontend refuses further requests with
/// [`Disconnected`](Self::Disconnected) until [`reconnect`](super::VhostUserFrontend::reconnect).
#[derive(Debug)]
#[non_exhaustive]
pub enum VhostUserError {
    /// The socket could not be connected.
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// The backend closed the socket (EOF, EPIPE, ECONNRESET or a hang-up).
    BackendClosed {
        /// The request in flight, if any.
        request: Option<Request>,
    },
    /// The backend did not answer in time.
    Timeout {
        /// The request waiting for its reply.
        request: Request,
        /// How long the frontend waited.
        after: Duration,
    },
    /// A socket call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The request concerned.
        request: Option<Request>,
        /// The error.
        errno: Errno,
    },
    /// The reply names another request than the one sent.
    WrongReply {
        /// The request sent.
        sent: Request,
        /// The request number in the reply.
        got: u32,
    },
    /// The reply's flags are wrong (no reply bit, another version, reserved bits set).
    BadReplyFlags {
        /// The request sent.
        request: Request,
        /// The flags received.
        flags: u32,
    },
    /// The reply's size field does not match what the request's reply carries.
    PayloadSize {
        /// The request sent.
        request: Request,
        /// The size field received.
        size: u32,
        /// The size the reply must have.
        expected: usize,
    },
    /// The backend closed the socket part-way through a reply.
    Truncated {
        /// The request sent.
        request: Request,
        /// Bytes of the reply (header and payload) received.
        got: usize,
        /// Bytes the reply announced.
        want: usize,
    },
    /// The reply carried file descriptors, which no reply of this frontend has (they were
    /// closed).
    UnexpectedFds {
        /// The request sent.
        request: Request,
        /// How many arrived.
        count: usize,
    },
    /// The reply's control data was cut short (`MSG_CTRUNC`): the backend sent more
    /// descriptors than expected.
    ControlTruncated {
        /// The request sent.
        request: Request,
    },
    /// The payload did not decode.
    Payload {
        /// The request sent.
        request: Request,
        /// What was wrong.
        error: PayloadError,
    },
    /// A reply's value is out of range for what it stands for.
    BadValue {
        /// The request sent.
        request: Request,
        /// The value received.
        value: u64,
        /// What it should have been.
        want: &'static str,
    },
    /// The backend answered a `NEED_REPLY` request with a failure code.
    Nack {
        /// The request refused.
        request: Request,
        /// The non-zero code it returned.
        code: u64,
    },
    /// The backend's reply to `GET_VRING_BASE` is for another ring.
    WrongVring {
        /// The ring asked for.
        asked: u32,
        /// The ring the reply names.
        got: u32,
    },
    /// The backend does not offer features the frontend asked for.
    FeatureNotOffered {
        /// Which feature word.
        set: FeatureSet,
        /// The bits asked for but not offered.
        missing: u64,
    },
    /// Protocol features this frontend does not implement were asked for.
    FrontendUnsupported {
        /// The bits.
        bits: u64,
    },
    /// A request needs a protocol feature that was not negotiated.
    NotNegotiated {
        /// The request.
        request: Request,
        /// The protocol feature bit it needs.
        feature: u32,
    },
    /// A request needs a step that has not happened yet (e.g. `SET_FEATURES` before
    /// `GET_FEATURES`).
    OutOfOrder {
        /// The request.
        request: Request,
        /// What must come first.
        needs: &'static str,
    },
    /// A vring index outside what the protocol can address.
    VringIndex {
        /// The index.
        index: u32,
    },
    /// A ring size the backend would refuse.
    VringSize {
        /// The size.
        num: u32,
        /// Whether packed rings were negotiated (they need no power of two).
        packed: bool,
    },
    /// A memory table that cannot be sent.
    MemTable {
        /// What is wrong with it.
        reason: MemTableProblem,
    },
    /// The connection is unusable (closed, or out of step after an earlier error).
    Disconnected {
        /// What broke it.
        cause: String,
    },
    /// A virtio-user setting out of its range (nothing was sent).
    Config {
        /// The setting (its devarg key).
        key: &'static str,
        /// Its value.
        value: u64,
        /// What it may be.
        want: &'static str,
    },
}

/// What is wrong with a memory table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemTableProblem {
    /// More regions than the protocol carries.
    TooManyRegions {
        /// How many were given.
        count: usize,
    },
    /// No regions at all.
    Empty,
    /// A region of zero bytes.
    ZeroSize {
        /// Its position.
        region: usize,
    },
    /// A region whose end overflows 64 bits (in one of its address spaces or the file).
    Overflow {
        /// Its position.
        region: usize,
    },
    /// Two regions overlap in guest-physical or user address space.
    Overlap {
        /// One region.
        a: usize,
        /// The other.
        b: usize,
    },
    /// A DMA region whose IOVAs are not contiguous cannot be one guest-physical range.
    NotContiguous,
}

impl fmt::Display for MemTableProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemTableProblem::TooManyRegions { count } => write!(
                f,
                "{count} regions, at most {MAX_MEM_REGIONS} fit in one SET_MEM_TABLE; use fewer, \
                 larger regions"
            ),
            MemTableProblem::Empty => f.write_str("no regions; share at least the ring memory"),
            MemTableProblem::ZeroSize { region } => write!(f, "region {region} has size 0"),
            MemTableProblem::Overflow { region } => {
                write!(f, "region {region} runs past the end of the 64-bit space")
            }
            MemTableProblem::Overlap { a, b } => write!(
                f,
                "regions {a} and {b} overlap (guest-physical or user addresses); the backend \
                 could not tell which one an address belongs to"
            ),
            MemTableProblem::NotContiguous => f.write_str(
                "the DMA region is not IOVA-contiguous, so it is not one guest-physical range; \
                 allocate it with IOVA = VA (vhost-user needs no physical addresses)",
            ),
        }
    }
}

impl VhostUserError {
    /// Whether the connection is out of step or gone after this error (the frontend then
    /// needs [`reconnect`](super::VhostUserFrontend::reconnect)). Errors found before anything
    /// was sent (bad arguments, unnegotiated features) and refusals (`Nack`) are not fatal.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            VhostUserError::Nack { .. }
                | VhostUserError::FeatureNotOffered { .. }
                | VhostUserError::FrontendUnsupported { .. }
                | VhostUserError::NotNegotiated { .. }
                | VhostUserError::OutOfOrder { .. }
                | VhostUserError::VringIndex { .. }
                | VhostUserError::VringSize { .. }
                | VhostUserError::MemTable { .. }
                | VhostUserError::Connect { .. }
                | VhostUserError::Config { .. }
        )
    }

    /// Whether the backend went away (closed, reset, hung up), as opposed to misbehaving.
    pub fn is_backend_closed(&self) -> bool {
        matches!(
            self,
            VhostUserError::BackendClosed { .. } | VhostUserError::Truncated { .. }
        )
    }
}

fn during(f: &mut fmt::Formatter<'_>, request: &Option<Request>) -> fmt::Result {
    match request {
        Some(r) => write!(f, " during {r}"),
        None => Ok(()),
    }
}

fn names(set: FeatureSet, bits: u64) -> FeatureNames {
    set.describe(bits)
}

impl fmt::Display for VhostUserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VhostUserError::Connect {
                path,
                errno: Errno::EAGAIN,
            } => write!(
                f,
                "cannot connect to the vhost-user socket {}: the backend is not accepting \
                 connections (its listen queue is full); it may be hung: restart it",
                path.display()
            ),
            VhostUserError::Connect { path, errno } => write!(
                f,
                "cannot connect to the vhost-user socket {}: {errno}; start the backend in \
                 server mode first (DPDK: --vdev net_vhost0,iface={},client=0)",
                path.display(),
                path.display()
            ),
            VhostUserError::BackendClosed { request } => {
                f.write_str("the vhost-user backend closed the socket")?;
                during(f, request)?;
                f.write_str("; restart it and call reconnect()")
            }
            VhostUserError::Timeout { request, after } => write!(
                f,
                "no reply to {request} from the vhost-user backend within {after:?}; the \
                 backend is stuck or does not implement it (the connection is out of step: \
                 reconnect)"
            ),
            VhostUserError::Io { op, request, errno } => {
                write!(f, "{op} on the vhost-user socket failed: {errno}")?;
                during(f, request)
            }
            VhostUserError::WrongReply { sent, got } => {
                write!(f, "the backend replied to request {got} ")?;
                if let Some(r) = Request::from_u32(*got) {
                    write!(f, "({r}) ")?;
                }
                write!(f, "but {sent} was sent: the backend is out of step")
            }
            VhostUserError::BadReplyFlags { request, flags } => write!(
                f,
                "reply to {request} has flags {flags:#x} (want version 1 with the reply bit, \
                 no reserved bits)"
            ),
            VhostUserError::PayloadSize {
                request,
                size,
                expected,
            } => write!(
                f,
                "payload size {size} invalid for the reply to {request} (must be {expected})"
            ),
            VhostUserError::Truncated { request, got, want } => write!(
                f,
                "the backend closed the socket after {got} of {want} bytes of its reply to \
                 {request}; restart it and call reconnect()"
            ),
            VhostUserError::UnexpectedFds { request, count } => write!(
                f,
                "the reply to {request} carried {count} file descriptor(s), which it never \
                 has (closed them)"
            ),
            VhostUserError::ControlTruncated { request } => write!(
                f,
                "the reply to {request} carried more control data than expected (MSG_CTRUNC)"
            ),
            VhostUserError::Payload { request, error } => {
                write!(f, "bad reply to {request}: {error}")
            }
            VhostUserError::BadValue {
                request,
                value,
                want,
            } => write!(f, "the reply to {request} says {value:#x}, not {want}"),
            VhostUserError::Nack { request, code } => write!(
                f,
                "the backend refused {request} (REPLY_ACK code {code}); see the backend's log"
            ),
            VhostUserError::WrongVring { asked, got } => write!(
                f,
                "GET_VRING_BASE for vring {asked} answered for vring {got}"
            ),
            VhostUserError::FeatureNotOffered { set, missing } => write!(
                f,
                "the backend does not support feature(s) {}; acknowledge only offered bits \
                 (get_features / get_protocol_features)",
                names(*set, *missing)
            ),
            VhostUserError::FrontendUnsupported { bits } => write!(
                f,
                "this frontend does not implement protocol feature(s) {}; it implements {}",
                names(FeatureSet::Protocol, *bits),
                names(
                    FeatureSet::Protocol,
                    super::features::FRONTEND_PROTOCOL_FEATURES
                )
            ),
            VhostUserError::NotNegotiated { request, feature } => write!(
                f,
                "{request} needs protocol feature {} negotiated (set_protocol_features)",
                names(FeatureSet::Protocol, 1 << feature)
            ),
            VhostUserError::OutOfOrder { request, needs } => {
                write!(f, "{request} too early: {needs} first")
            }
            VhostUserError::VringIndex { index } => write!(
                f,
                "vring index {index} out of range (the protocol carries indices 0..=255)"
            ),
            VhostUserError::VringSize { num, packed } => {
                if *packed {
                    write!(f, "vring size {num} invalid (1..=32768)")
                } else {
                    write!(f, "vring size {num} invalid (a power of two, 1..=32768)")
                }
            }
            VhostUserError::MemTable { reason } => write!(f, "bad memory table: {reason}"),
            VhostUserError::Disconnected { cause } => write!(
                f,
                "the vhost-user connection is unusable ({cause}); call reconnect()"
            ),
            VhostUserError::Config { key, value, want } => write!(
                f,
                "virtio-user setting {key}={value} is out of range; use {want}"
            ),
        }
    }
}

impl std::error::Error for VhostUserError {}
