//! What can go wrong when editing or reading an mbuf.

use core::fmt;

/// Why an mbuf operation was refused. Nothing was changed when one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MbufError {
    /// The mbuf is shared ([`Mbuf::share`](super::Mbuf::share)): its data and header are
    /// read-only until the other handles are dropped.
    Shared {
        /// The segment's reference count.
        refcnt: u16,
    },
    /// `prepend` asked for more bytes than the first segment's headroom.
    NoHeadroom {
        /// Bytes asked for.
        requested: u16,
        /// Headroom there is.
        headroom: u16,
    },
    /// `append` asked for more bytes than the last segment's tailroom.
    NoTailroom {
        /// Bytes asked for.
        requested: u16,
        /// Tailroom there is.
        tailroom: u16,
    },
    /// `adj` asked to remove more bytes than the first segment holds.
    AdjTooLong {
        /// Bytes asked for.
        requested: u16,
        /// Bytes in the first segment.
        data_len: u16,
    },
    /// `trim` asked to remove more bytes than the last segment holds.
    TrimTooLong {
        /// Bytes asked for.
        requested: u16,
        /// Bytes in the last segment.
        data_len: u16,
    },
    /// `chain` would give more than 65535 segments.
    TooManySegments {
        /// Segments in the head chain.
        head: u16,
        /// Segments in the chain to append.
        tail: u16,
    },
    /// `share` would overflow a 16-bit reference count.
    RefcntOverflow,
    /// A read past the end of the packet.
    OutOfRange {
        /// First byte asked for.
        offset: usize,
        /// Bytes asked for.
        len: usize,
        /// Bytes in the packet.
        pkt_len: u32,
    },
    /// A copy of the packet into a buffer too small for it.
    BufferTooSmall {
        /// Bytes in the packet.
        pkt_len: u32,
        /// Bytes in the buffer.
        buf_len: usize,
    },
}

impl fmt::Display for MbufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MbufError::Shared { refcnt } => write!(
                f,
                "the mbuf is shared by {refcnt} handles, so it is read-only; drop the other \
                 handles first, or copy the packet into a fresh mbuf"
            ),
            MbufError::NoHeadroom {
                requested,
                headroom,
            } => write!(
                f,
                "cannot prepend {requested} bytes: the first segment has {headroom} bytes of \
                 headroom; chain a new segment in front, or use a pool with more headroom"
            ),
            MbufError::NoTailroom {
                requested,
                tailroom,
            } => write!(
                f,
                "cannot append {requested} bytes: the last segment has {tailroom} bytes of \
                 tailroom; chain another segment for the rest"
            ),
            MbufError::AdjTooLong {
                requested,
                data_len,
            } => write!(
                f,
                "cannot remove {requested} bytes from the front: the first segment holds \
                 {data_len} (adj works within the first segment, like rte_pktmbuf_adj)"
            ),
            MbufError::TrimTooLong {
                requested,
                data_len,
            } => write!(
                f,
                "cannot remove {requested} bytes from the end: the last segment holds \
                 {data_len} (trim works within the last segment, like rte_pktmbuf_trim)"
            ),
            MbufError::TooManySegments { head, tail } => write!(
                f,
                "chaining {tail} segments onto {head} would exceed the 65535 an mbuf chain \
                 can count; copy the packet into larger buffers"
            ),
            MbufError::RefcntOverflow => write!(
                f,
                "the mbuf already has 65535 references; copy the packet instead of sharing it"
            ),
            MbufError::OutOfRange {
                offset,
                len,
                pkt_len,
            } => write!(
                f,
                "read of {len} bytes at offset {offset} runs past the packet's {pkt_len} bytes"
            ),
            MbufError::BufferTooSmall { pkt_len, buf_len } => write!(
                f,
                "the packet has {pkt_len} bytes but the buffer only {buf_len}; pass a buffer \
                 of at least pkt_len bytes, or read a range"
            ),
        }
    }
}

impl core::error::Error for MbufError {}
