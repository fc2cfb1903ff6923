//! The port API's errors: each says what was wrong and what to do.

use super::info::{RxOffload, TxOffload};
use core::fmt;

/// A port's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Created, not configured.
    Unconfigured,
    /// Configured (queues may be set up).
    Configured,
    /// Started: queues can be bursted.
    Started,
    /// Stopped after a start (queues may be set up again, or the port restarted).
    Stopped,
    /// Closed: nothing more can be done with it.
    Closed,
}

impl fmt::Display for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortState::Unconfigured => "unconfigured",
            PortState::Configured => "configured",
            PortState::Started => "started",
            PortState::Stopped => "stopped",
            PortState::Closed => "closed",
        })
    }
}

/// Which queue direction an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Receive.
    Rx,
    /// Transmit.
    Tx,
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dir::Rx => "rx",
            Dir::Tx => "tx",
        })
    }
}

/// Why a port operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EthError {
    /// The operation is not allowed in the port's current state.
    WrongState {
        /// The operation.
        op: &'static str,
        /// The state the port is in.
        state: PortState,
        /// What to do first.
        hint: &'static str,
    },
    /// More queues asked for than the device has.
    TooManyQueues {
        /// Direction.
        dir: Dir,
        /// Queues asked for.
        requested: u16,
        /// The device's maximum.
        max: u16,
    },
    /// A queue id outside the configured range.
    QueueOutOfRange {
        /// Direction.
        dir: Dir,
        /// The id given.
        queue: u16,
        /// Queues configured.
        configured: u16,
    },
    /// A queue was not set up before start.
    QueueNotSetUp {
        /// Direction.
        dir: Dir,
        /// The queue.
        queue: u16,
    },
    /// A descriptor count outside the device's limits.
    DescOutOfRange {
        /// Direction.
        dir: Dir,
        /// The count given.
        nb_desc: u16,
        /// Fewest allowed.
        min: u16,
        /// Most allowed.
        max: u16,
        /// Required multiple.
        align: u16,
    },
    /// Receive offloads the device lacks.
    RxOffloadUnsupported {
        /// The missing ones.
        missing: RxOffload,
    },
    /// Transmit offloads the device lacks.
    TxOffloadUnsupported {
        /// The missing ones.
        missing: TxOffload,
    },
    /// RSS asked of a device without it, or with hash types it lacks.
    RssUnsupported,
    /// An MTU outside the device's range.
    MtuOutOfRange {
        /// The MTU given.
        mtu: u16,
        /// Smallest allowed.
        min: u16,
        /// Largest allowed.
        max: u16,
    },
    /// A MAC address that is multicast or all zero.
    BadMac,
    /// The driver does not implement this operation.
    NotSupported {
        /// The operation.
        op: &'static str,
    },
    /// The mbuf pool's buffers are too small for the configured MTU.
    BuffersTooSmall {
        /// Bytes per buffer.
        data_room: u16,
        /// Bytes a frame can take.
        needed: u32,
    },
    /// The device or its OS failed.
    Device {
        /// What failed.
        op: &'static str,
        /// The driver's explanation.
        reason: DeviceReason,
    },
}

/// A driver's explanation of a device failure: a fixed text plus an OS error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceReason {
    /// What went wrong and what to do.
    pub text: &'static str,
    /// The OS error code (errno on Linux), 0 if none.
    pub code: i32,
}

impl fmt::Display for EthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EthError::WrongState { op, state, hint } => {
                write!(f, "cannot {op}: the port is {state}; {hint}")
            }
            EthError::TooManyQueues {
                dir,
                requested,
                max,
            } => write!(
                f,
                "{requested} {dir} queues requested but the device has at most {max}"
            ),
            EthError::QueueOutOfRange {
                dir,
                queue,
                configured,
            } => write!(
                f,
                "{dir} queue {queue} does not exist: the port was configured with {configured} \
                 (ids 0..{configured})"
            ),
            EthError::QueueNotSetUp { dir, queue } => write!(
                f,
                "{dir} queue {queue} was configured but not set up; call {dir}_queue_setup \
                 before start"
            ),
            EthError::DescOutOfRange {
                dir,
                nb_desc,
                min,
                max,
                align,
            } => write!(
                f,
                "{nb_desc} {dir} descriptors is outside the device's limits: {min}..={max}, \
                 multiple of {align}"
            ),
            EthError::RxOffloadUnsupported { missing } => {
                write!(f, "rx offloads not supported by the device: {missing:?}")
            }
            EthError::TxOffloadUnsupported { missing } => {
                write!(f, "tx offloads not supported by the device: {missing:?}")
            }
            EthError::RssUnsupported => write!(
                f,
                "RSS (or one of the hash types) is not supported by the device; check \
                 DevInfo::rss_hash_types"
            ),
            EthError::MtuOutOfRange { mtu, min, max } => {
                write!(f, "MTU {mtu} is outside the device's range {min}..={max}")
            }
            EthError::BadMac => write!(
                f,
                "MAC address is multicast or all zero; use a unicast station address"
            ),
            EthError::NotSupported { op } => write!(f, "{op} is not supported by this driver"),
            EthError::BuffersTooSmall { data_room, needed } => write!(
                f,
                "mbuf data room {data_room} is smaller than a frame at this MTU ({needed} bytes); \
                 enable scatter or use a pool with a larger data room"
            ),
            EthError::Device { op, reason } => {
                write!(f, "{op} failed: {}", reason.text)?;
                if reason.code != 0 {
                    write!(f, " (OS error {})", reason.code)?;
                }
                Ok(())
            }
        }
    }
}

impl core::error::Error for EthError {}
