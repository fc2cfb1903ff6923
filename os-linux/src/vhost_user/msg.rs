//! The vhost-user wire format: a 12-byte header, then `size` bytes of payload, with file
//! descriptors riding along as `SCM_RIGHTS` ancillary data.
//!
//! Both directions are here (encode and decode of every payload this module sends or receives),
//! so a test backend can speak the protocol with the same definitions. Fields are in host byte
//! order, as the vhost-user specification ("Message Specification") prescribes for the Unix
//! socket transport.

use std::fmt;

/// Bytes in a message header: `request: u32, flags: u32, size: u32`.
pub const HEADER_SIZE: usize = 12;

/// At most this many memory regions in one `SET_MEM_TABLE` (QEMU's and DPDK's
/// `VHOST_MEMORY_MAX_NREGIONS`; one file descriptor per region rides in the same message).
pub const MAX_MEM_REGIONS: usize = 8;

/// Vring indices travel in the low byte of `SET_VRING_KICK/CALL/ERR`'s `u64`.
pub const VRING_INDEX_MASK: u64 = 0xff;

/// Bit 8 of `SET_VRING_KICK/CALL/ERR`'s `u64`: no file descriptor is attached (polling mode).
pub const VRING_NOFD_MASK: u64 = 1 << 8;

/// Header flags: the protocol version (bits 0-1), a reply, and "reply needed" (REPLY_ACK).
pub mod flags {
    /// The only protocol version there is.
    pub const VERSION: u32 = 0x1;
    /// Bits holding the version.
    pub const VERSION_MASK: u32 = 0x3;
    /// Set on every message from the backend to the frontend.
    pub const REPLY: u32 = 0x4;
    /// Asks for an acknowledgement (`u64`, zero = success); needs `REPLY_ACK` negotiated.
    pub const NEED_REPLY: u32 = 0x8;
    /// Every flag this module knows; the rest are reserved and must be zero.
    pub const KNOWN: u32 = VERSION_MASK | REPLY | NEED_REPLY;
}

/// A frontend request (the master-to-slave requests of the vhost-user specification that this
/// module uses), with its wire number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Request {
    /// Which virtio (and vhost-user) feature bits the backend offers.
    GetFeatures = 1,
    /// The feature bits the frontend acknowledges.
    SetFeatures = 2,
    /// Claims the backend for this connection (first message of a session).
    SetOwner = 3,
    /// Gives the backend up (QEMU no longer sends it; the backend resets the device).
    ResetOwner = 4,
    /// The memory regions the rings and buffers live in, one fd per region.
    SetMemTable = 5,
    /// The ring size.
    SetVringNum = 8,
    /// Where the ring's descriptor table, available and used rings are.
    SetVringAddr = 9,
    /// The next available index the backend should read.
    SetVringBase = 10,
    /// Stops the ring and returns the next available index it would have read.
    GetVringBase = 11,
    /// The eventfd the frontend kicks the backend through.
    SetVringKick = 12,
    /// The eventfd the backend signals used buffers through.
    SetVringCall = 13,
    /// The eventfd the backend signals ring errors through.
    SetVringErr = 14,
    /// Which protocol feature bits the backend offers.
    GetProtocolFeatures = 15,
    /// The protocol feature bits the frontend acknowledges.
    SetProtocolFeatures = 16,
    /// How many queues (queue pairs for net) the backend supports (needs `MQ`).
    GetQueueNum = 17,
    /// Enables or disables one ring (needs the protocol-features bit).
    SetVringEnable = 18,
    /// The virtio device status byte (needs `STATUS`).
    SetStatus = 39,
    /// Reads the virtio device status byte (needs `STATUS`).
    GetStatus = 40,
}

impl Request {
    /// Every request, for lookups by number.
    pub const ALL: [Request; 18] = [
        Request::GetFeatures,
        Request::SetFeatures,
        Request::SetOwner,
        Request::ResetOwner,
        Request::SetMemTable,
        Request::SetVringNum,
        Request::SetVringAddr,
        Request::SetVringBase,
        Request::GetVringBase,
        Request::SetVringKick,
        Request::SetVringCall,
        Request::SetVringErr,
        Request::GetProtocolFeatures,
        Request::SetProtocolFeatures,
        Request::GetQueueNum,
        Request::SetVringEnable,
        Request::SetStatus,
        Request::GetStatus,
    ];

    /// The request with wire number `n`, if this module knows it.
    pub fn from_u32(n: u32) -> Option<Request> {
        Request::ALL.into_iter().find(|r| *r as u32 == n)
    }

    /// The specification's name (`VHOST_USER_GET_FEATURES`, …).
    pub fn name(self) -> &'static str {
        match self {
            Request::GetFeatures => "VHOST_USER_GET_FEATURES",
            Request::SetFeatures => "VHOST_USER_SET_FEATURES",
            Request::SetOwner => "VHOST_USER_SET_OWNER",
            Request::ResetOwner => "VHOST_USER_RESET_OWNER",
            Request::SetMemTable => "VHOST_USER_SET_MEM_TABLE",
            Request::SetVringNum => "VHOST_USER_SET_VRING_NUM",
            Request::SetVringAddr => "VHOST_USER_SET_VRING_ADDR",
            Request::SetVringBase => "VHOST_USER_SET_VRING_BASE",
            Request::GetVringBase => "VHOST_USER_GET_VRING_BASE",
            Request::SetVringKick => "VHOST_USER_SET_VRING_KICK",
            Request::SetVringCall => "VHOST_USER_SET_VRING_CALL",
            Request::SetVringErr => "VHOST_USER_SET_VRING_ERR",
            Request::GetProtocolFeatures => "VHOST_USER_GET_PROTOCOL_FEATURES",
            Request::SetProtocolFeatures => "VHOST_USER_SET_PROTOCOL_FEATURES",
            Request::GetQueueNum => "VHOST_USER_GET_QUEUE_NUM",
            Request::SetVringEnable => "VHOST_USER_SET_VRING_ENABLE",
            Request::SetStatus => "VHOST_USER_SET_STATUS",
            Request::GetStatus => "VHOST_USER_GET_STATUS",
        }
    }

    /// The payload the frontend sends with this request.
    pub fn payload_kind(self) -> PayloadKind {
        match self {
            Request::GetFeatures
            | Request::SetOwner
            | Request::ResetOwner
            | Request::GetProtocolFeatures
            | Request::GetQueueNum
            | Request::GetStatus => PayloadKind::Empty,
            Request::SetFeatures
            | Request::SetProtocolFeatures
            | Request::SetVringKick
            | Request::SetVringCall
            | Request::SetVringErr
            | Request::SetStatus => PayloadKind::U64,
            Request::SetVringNum
            | Request::SetVringBase
            | Request::GetVringBase
            | Request::SetVringEnable => PayloadKind::VringState,
            Request::SetVringAddr => PayloadKind::VringAddr,
            Request::SetMemTable => PayloadKind::MemTable,
        }
    }

    /// The payload of the backend's reply, for the requests that always have one; the others
    /// are answered only when `NEED_REPLY` is set, with a `u64` acknowledgement.
    pub fn reply_kind(self) -> Option<PayloadKind> {
        match self {
            Request::GetFeatures
            | Request::GetProtocolFeatures
            | Request::GetQueueNum
            | Request::GetStatus => Some(PayloadKind::U64),
            Request::GetVringBase => Some(PayloadKind::VringState),
            _ => None,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The request number ([`Request`]; a reply repeats the request's).
    pub request: u32,
    /// [`flags`].
    pub flags: u32,
    /// Payload bytes that follow.
    pub size: u32,
}

impl Header {
    /// The header as sent.
    pub fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let mut b = [0; HEADER_SIZE];
        b[0..4].copy_from_slice(&self.request.to_ne_bytes());
        b[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..12].copy_from_slice(&self.size.to_ne_bytes());
        b
    }

    /// The header from its bytes (any values; the caller checks them).
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Header {
        let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            request: word(0),
            flags: word(4),
            size: word(8),
        }
    }
}

/// `struct vhost_vring_state` (linux/vhost_types.h): a ring index and a number (size, base,
/// or enable flag depending on the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VringState {
    /// The ring.
    pub index: u32,
    /// The value.
    pub num: u32,
}

/// `struct vhost_vring_addr` (linux/vhost_types.h): ring addresses in the frontend's address
/// space (the backend translates them through the memory table's `userspace_addr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VringAddr {
    /// The ring.
    pub index: u32,
    /// `1 << VHOST_VRING_F_LOG` if `log` is valid.
    pub flags: u32,
    /// The descriptor table.
    pub desc: u64,
    /// The used ring.
    pub used: u64,
    /// The available ring.
    pub avail: u64,
    /// Where used-ring writes are logged (guest physical), if enabled.
    pub log: u64,
}

/// One region of `SET_MEM_TABLE` (`VhostUserMemoryRegion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionDesc {
    /// Where descriptors see the region (the addresses put in descriptor `addr` fields).
    pub guest_phys_addr: u64,
    /// Its length in bytes.
    pub memory_size: u64,
    /// Where the frontend has it mapped (what ring addresses are given in).
    pub userspace_addr: u64,
    /// Where it starts in the file descriptor sent with it.
    pub mmap_offset: u64,
}

/// Which payload a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// Nothing.
    Empty,
    /// One `u64`.
    U64,
    /// [`VringState`].
    VringState,
    /// [`VringAddr`].
    VringAddr,
    /// A memory table: `nregions: u32, padding: u32`, then that many [`RegionDesc`]s.
    MemTable,
}

impl PayloadKind {
    /// The largest payload of this kind, in bytes (the size for fixed kinds).
    pub fn max_size(self) -> usize {
        match self {
            PayloadKind::Empty => 0,
            PayloadKind::U64 | PayloadKind::VringState => 8,
            PayloadKind::VringAddr => 40,
            PayloadKind::MemTable => 8 + MAX_MEM_REGIONS * 32,
        }
    }
}

/// A decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Nothing.
    Empty,
    /// One `u64`.
    U64(u64),
    /// A ring index and value.
    VringState(VringState),
    /// Ring addresses.
    VringAddr(VringAddr),
    /// Memory regions.
    MemTable(Vec<RegionDesc>),
}

/// Why payload bytes do not decode as the expected kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// The length is not what the kind needs.
    Size {
        /// Bytes present.
        got: usize,
        /// Bytes the kind needs (for a memory table: for the region count it states).
        want: usize,
    },
    /// A memory table states more regions than [`MAX_MEM_REGIONS`].
    TooManyRegions {
        /// The stated count.
        nregions: u32,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::Size { got, want } => {
                write!(f, "payload of {got} bytes where {want} are needed")
            }
            PayloadError::TooManyRegions { nregions } => write!(
                f,
                "memory table with {nregions} regions (at most {MAX_MEM_REGIONS})"
            ),
        }
    }
}

impl Payload {
    /// Its kind.
    pub fn kind(&self) -> PayloadKind {
        match self {
            Payload::Empty => PayloadKind::Empty,
            Payload::U64(_) => PayloadKind::U64,
            Payload::VringState(_) => PayloadKind::VringState,
            Payload::VringAddr(_) => PayloadKind::VringAddr,
            Payload::MemTable(_) => PayloadKind::MemTable,
        }
    }

    /// The bytes as sent. A memory table is sent with only its used regions, as QEMU does.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.kind().max_size());
        match self {
            Payload::Empty => {}
            Payload::U64(v) => b.extend_from_slice(&v.to_ne_bytes()),
            Payload::VringState(s) => {
                b.extend_from_slice(&s.index.to_ne_bytes());
                b.extend_from_slice(&s.num.to_ne_bytes());
            }
            Payload::VringAddr(a) => {
                b.extend_from_slice(&a.index.to_ne_bytes());
                b.extend_from_slice(&a.flags.to_ne_bytes());
                for v in [a.desc, a.used, a.avail, a.log] {
                    b.extend_from_slice(&v.to_ne_bytes());
                }
            }
            Payload::MemTable(regions) => {
                let n = u32::try_from(regions.len()).unwrap_or(u32::MAX);
                b.extend_from_slice(&n.to_ne_bytes());
                b.extend_from_slice(&0u32.to_ne_bytes());
                for r in regions {
                    for v in [
                        r.guest_phys_addr,
                        r.memory_size,
                        r.userspace_addr,
                        r.mmap_offset,
                    ] {
                        b.extend_from_slice(&v.to_ne_bytes());
                    }
                }
            }
        }
        b
    }

    /// Decodes `bytes` as `kind`, checking the length exactly.
    pub fn decode(kind: PayloadKind, bytes: &[u8]) -> Result<Payload, PayloadError> {
        let want = match kind {
            PayloadKind::MemTable => {
                let n = read_u32(bytes, 0).ok_or(PayloadError::Size {
                    got: bytes.len(),
                    want: 8,
                })?;
                if n as usize > MAX_MEM_REGIONS {
                    return Err(PayloadError::TooManyRegions { nregions: n });
                }
                8 + 32 * n as usize
            }
            k => k.max_size(),
        };
        if bytes.len() != want {
            return Err(PayloadError::Size {
                got: bytes.len(),
                want,
            });
        }
        // The length is checked: every read below is in bounds (`unwrap_or(0)` never applies).
        let u32_at = |off| read_u32(bytes, off).unwrap_or(0);
        let u64_at = |off| read_u64(bytes, off).unwrap_or(0);
        Ok(match kind {
            PayloadKind::Empty => Payload::Empty,
            PayloadKind::U64 => Payload::U64(u64_at(0)),
            PayloadKind::VringState => Payload::VringState(VringState {
                index: u32_at(0),
                num: u32_at(4),
            }),
            PayloadKind::VringAddr => Payload::VringAddr(VringAddr {
                index: u32_at(0),
                flags: u32_at(4),
                desc: u64_at(8),
                used: u64_at(16),
                avail: u64_at(24),
                log: u64_at(32),
            }),
            PayloadKind::MemTable => Payload::MemTable(
                (0..(want - 8) / 32)
                    .map(|i| {
                        let o = 8 + 32 * i;
                        RegionDesc {
                            guest_phys_addr: u64_at(o),
                            memory_size: u64_at(o + 8),
                            userspace_addr: u64_at(o + 16),
                            mmap_offset: u64_at(o + 24),
                        }
                    })
                    .collect(),
            ),
        })
    }
}

fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(s.try_into().ok()?))
}

fn read_u64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_ne_bytes(s.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_specification() {
        let numbers: Vec<u32> = Request::ALL.iter().map(|r| *r as u32).collect();
        assert_eq!(
            numbers,
            [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 39, 40]
        );
        for r in Request::ALL {
            assert_eq!(Request::from_u32(r as u32), Some(r));
            assert!(r.to_string().starts_with("VHOST_USER_"));
        }
        assert_eq!(Request::from_u32(0), None);
        assert_eq!(Request::from_u32(6), None);
        assert_eq!(Request::from_u32(u32::MAX), None);
    }

    #[test]
    fn header_round_trips_in_host_order() {
        let h = Header {
            request: 11,
            flags: flags::VERSION | flags::REPLY,
            size: 8,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], &11u32.to_ne_bytes());
        assert_eq!(&b[4..8], &5u32.to_ne_bytes());
        assert_eq!(Header::from_bytes(&b), h);
    }

    #[test]
    fn payloads_round_trip_with_the_kernel_layouts() {
        let addr = Payload::VringAddr(VringAddr {
            index: 1,
            flags: 0,
            desc: 0x1000,
            used: 0x3000,
            avail: 0x2000,
            log: 0,
        });
        let b = addr.encode();
        // struct vhost_vring_addr: index, flags, desc, used, avail, log.
        assert_eq!(b.len(), 40);
        assert_eq!(&b[16..24], &0x3000u64.to_ne_bytes(), "used before avail");
        assert_eq!(Payload::decode(PayloadKind::VringAddr, &b), Ok(addr));
        for p in [
            Payload::Empty,
            Payload::U64(u64::MAX),
            Payload::VringState(VringState { index: 3, num: 256 }),
        ] {
            assert_eq!(Payload::decode(p.kind(), &p.encode()), Ok(p.clone()));
        }
        let table = Payload::MemTable(vec![
            RegionDesc {
                guest_phys_addr: 1,
                memory_size: 2,
                userspace_addr: 3,
                mmap_offset: 4,
            };
            3
        ]);
        let b = table.encode();
        assert_eq!(b.len(), 8 + 3 * 32);
        assert_eq!(Payload::decode(PayloadKind::MemTable, &b), Ok(table));
    }

    #[test]
    fn hostile_lengths_are_errors() {
        assert_eq!(
            Payload::decode(PayloadKind::U64, &[0; 4]),
            Err(PayloadError::Size { got: 4, want: 8 })
        );
        assert_eq!(
            Payload::decode(PayloadKind::U64, &[0; 9]),
            Err(PayloadError::Size { got: 9, want: 8 })
        );
        assert_eq!(
            Payload::decode(PayloadKind::Empty, &[0; 1]),
            Err(PayloadError::Size { got: 1, want: 0 })
        );
        assert_eq!(
            Payload::decode(PayloadKind::MemTable, &[0; 3]),
            Err(PayloadError::Size { got: 3, want: 8 })
        );
        let mut b = 9u32.to_ne_bytes().to_vec();
        b.extend_from_slice(&[0; 4 + 9 * 32]);
        assert_eq!(
            Payload::decode(PayloadKind::MemTable, &b),
            Err(PayloadError::TooManyRegions { nregions: 9 })
        );
        let mut b = 2u32.to_ne_bytes().to_vec();
        b.extend_from_slice(&[0; 4 + 32]);
        assert_eq!(
            Payload::decode(PayloadKind::MemTable, &b),
            Err(PayloadError::Size { got: 40, want: 72 })
        );
        assert!(PayloadError::TooManyRegions { nregions: 9 }
            .to_string()
            .contains("at most 8"));
    }
}
