//! The `tx_offload` word: the header lengths a NIC needs for checksum and segmentation
//! offloads, as DPDK's bit-fields (little-endian layout, `RTE_MBUF_*_LEN_BITS`):
//!
//! | field          | bits  | width |
//! |----------------|-------|-------|
//! | `l2_len`       | 0–6   | 7     |
//! | `l3_len`       | 7–15  | 9     |
//! | `l4_len`       | 16–23 | 8     |
//! | `tso_segsz`    | 24–39 | 16    |
//! | `outer_l3_len` | 40–48 | 9     |
//! | `outer_l2_len` | 49–55 | 7     |
//!
//! C silently truncates an out-of-range length into a bit-field; here a setter refuses it.

use core::fmt;

/// One field of [`TxOffload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxOffloadField {
    /// L2 header length (for a tunnel: outer L4 through inner L2).
    L2Len,
    /// L3 header length.
    L3Len,
    /// L4 header length.
    L4Len,
    /// TSO/UFO segment size.
    TsoSegsz,
    /// Outer L3 header length (tunnels).
    OuterL3Len,
    /// Outer L2 header length (tunnels).
    OuterL2Len,
}

impl TxOffloadField {
    /// (shift, width) of the field.
    const fn place(self) -> (u32, u32) {
        match self {
            TxOffloadField::L2Len => (0, 7),
            TxOffloadField::L3Len => (7, 9),
            TxOffloadField::L4Len => (16, 8),
            TxOffloadField::TsoSegsz => (24, 16),
            TxOffloadField::OuterL3Len => (40, 9),
            TxOffloadField::OuterL2Len => (49, 7),
        }
    }

    /// The largest value the field holds.
    pub const fn max(self) -> u16 {
        ((1u32 << self.place().1) - 1) as u16
    }

    const fn name(self) -> &'static str {
        match self {
            TxOffloadField::L2Len => "l2_len",
            TxOffloadField::L3Len => "l3_len",
            TxOffloadField::L4Len => "l4_len",
            TxOffloadField::TsoSegsz => "tso_segsz",
            TxOffloadField::OuterL3Len => "outer_l3_len",
            TxOffloadField::OuterL2Len => "outer_l2_len",
        }
    }
}

/// A length too large for its `tx_offload` bit-field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxOffloadError {
    /// The field.
    pub field: TxOffloadField,
    /// The value refused.
    pub value: u16,
    /// The largest value the field holds.
    pub max: u16,
}

impl fmt::Display for TxOffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx_offload {} = {} does not fit its bit-field (at most {}); a header that long \
             cannot be offloaded: compute this checksum or segmentation in software",
            self.field.name(),
            self.value,
            self.max
        )
    }
}

impl core::error::Error for TxOffloadError {}

/// The `tx_offload` word.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct TxOffload(u64);

impl TxOffload {
    /// All lengths zero.
    pub const fn new() -> Self {
        Self(0)
    }

    /// The word with these bits (the top 8 bits are unused by DPDK and kept as given).
    #[inline(always)]
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The bits.
    #[inline(always)]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Reads one field.
    #[inline(always)]
    pub const fn get(self, field: TxOffloadField) -> u16 {
        let (shift, _) = field.place();
        ((self.0 >> shift) & field.max() as u64) as u16
    }

    /// Writes one field, refusing a value wider than it.
    #[inline]
    pub fn set(&mut self, field: TxOffloadField, value: u16) -> Result<(), TxOffloadError> {
        let max = field.max();
        if value > max {
            return Err(TxOffloadError { field, value, max });
        }
        let (shift, _) = field.place();
        self.0 = (self.0 & !((max as u64) << shift)) | ((value as u64) << shift);
        Ok(())
    }

    /// L2 header length.
    #[inline(always)]
    pub const fn l2_len(self) -> u16 {
        self.get(TxOffloadField::L2Len)
    }

    /// L3 header length.
    #[inline(always)]
    pub const fn l3_len(self) -> u16 {
        self.get(TxOffloadField::L3Len)
    }

    /// L4 header length.
    #[inline(always)]
    pub const fn l4_len(self) -> u16 {
        self.get(TxOffloadField::L4Len)
    }

    /// TSO segment size.
    #[inline(always)]
    pub const fn tso_segsz(self) -> u16 {
        self.get(TxOffloadField::TsoSegsz)
    }

    /// Outer L3 header length.
    #[inline(always)]
    pub const fn outer_l3_len(self) -> u16 {
        self.get(TxOffloadField::OuterL3Len)
    }

    /// Outer L2 header length.
    #[inline(always)]
    pub const fn outer_l2_len(self) -> u16 {
        self.get(TxOffloadField::OuterL2Len)
    }

    /// Sets the L2 header length (at most 127).
    #[inline]
    pub fn set_l2_len(&mut self, v: u16) -> Result<(), TxOffloadError> {
        self.set(TxOffloadField::L2Len, v)
    }

    /// Sets the L3 header length (at most 511).
    #[inline]
    pub fn set_l3_len(&mut self, v: u16) -> Result<(), TxOffloadError> {
        self.set(TxOffloadField::L3Len, v)
    }

    /// Sets the L4 header length (at most 255).
    #[inline]
    pub fn set_l4_len(&mut self, v: u16) -> Result<(), TxOffloadError> {
        self.set(TxOffloadField::L4Len, v)
    }

    /// Sets the TSO segment size (any 16-bit value fits).
    #[inline]
    pub fn set_tso_segsz(&mut self, v: u16) {
        let (shift, _) = TxOffloadField::TsoSegsz.place();
        self.0 = (self.0 & !(0xffff << shift)) | ((v as u64) << shift);
    }

    /// Sets the outer L3 header length (at most 511).
    #[inline]
    pub fn set_outer_l3_len(&mut self, v: u16) -> Result<(), TxOffloadError> {
        self.set(TxOffloadField::OuterL3Len, v)
    }

    /// Sets the outer L2 header length (at most 127).
    #[inline]
    pub fn set_outer_l2_len(&mut self, v: u16) -> Result<(), TxOffloadError> {
        self.set(TxOffloadField::OuterL2Len, v)
    }
}

impl fmt::Debug for TxOffload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxOffload")
            .field("l2_len", &self.l2_len())
            .field("l3_len", &self.l3_len())
            .field("l4_len", &self.l4_len())
            .field("tso_segsz", &self.tso_segsz())
            .field("outer_l3_len", &self.outer_l3_len())
            .field("outer_l2_len", &self.outer_l2_len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate alloc;
    use alloc::string::ToString;

    #[test]
    fn fields_land_on_dpdk_s_bits() {
        let mut t = TxOffload::new();
        t.set_l2_len(14).unwrap();
        t.set_l3_len(20).unwrap();
        t.set_l4_len(32).unwrap();
        t.set_tso_segsz(1448);
        t.set_outer_l3_len(40).unwrap();
        t.set_outer_l2_len(18).unwrap();
        let want = 14 | (20 << 7) | (32 << 16) | (1448 << 24) | (40 << 40) | (18 << 49);
        assert_eq!(t.bits(), want);
        assert_eq!(
            (
                t.l2_len(),
                t.l3_len(),
                t.l4_len(),
                t.tso_segsz(),
                t.outer_l3_len(),
                t.outer_l2_len()
            ),
            (14, 20, 32, 1448, 40, 18)
        );
        // Rewriting one field leaves the others alone.
        t.set_l3_len(511).unwrap();
        assert_eq!((t.l2_len(), t.l3_len(), t.l4_len()), (14, 511, 32));
    }

    #[test]
    fn out_of_range_lengths_are_refused() {
        let mut t = TxOffload::from_bits(0xff00_0000_0000_0000);
        let cases = [
            (TxOffloadField::L2Len, 128, 127),
            (TxOffloadField::L3Len, 512, 511),
            (TxOffloadField::L4Len, 256, 255),
            (TxOffloadField::OuterL3Len, 512, 511),
            (TxOffloadField::OuterL2Len, 128, 127),
        ];
        for (field, value, max) in cases {
            assert_eq!(
                t.set(field, value),
                Err(TxOffloadError { field, value, max })
            );
            t.set(field, max).unwrap();
            assert_eq!(t.get(field), max);
        }
        assert_eq!(t.bits() >> 56, 0xff, "unused bits kept");
        let e = TxOffload::new().set_l2_len(200).unwrap_err().to_string();
        assert!(
            e.contains("l2_len = 200") && e.contains("at most 127"),
            "{e}"
        );
        assert_eq!(TxOffloadField::TsoSegsz.max(), u16::MAX);
    }
}
