//! Per-packet metadata: reading it from a handle, writing it through [`MetaMut`].

use super::header::{MbufHeader, HEADER_SIZE};
use super::{exclusive, Mbuf, MbufError, MbufHash, OlFlags, PacketType, TxOffload};
use core::fmt;

/// Write access to an mbuf's metadata (the first segment's header fields that carry no memory
/// invariant), from [`Mbuf::meta_mut`]. Lengths, offsets, links and counts are not here: they
/// change only through the checked edits.
pub struct MetaMut<'a> {
    h: &'a mut MbufHeader,
}

impl MetaMut<'_> {
    /// The offload flags.
    #[inline(always)]
    pub fn ol_flags(&self) -> OlFlags {
        OlFlags::from_bits_retain(self.h.ol_flags)
    }

    /// Sets the input port (or the output port for the event TX adapter).
    #[inline(always)]
    pub fn set_port(&mut self, port: u16) {
        self.h.port = port;
    }

    /// Sets the offload flags.
    #[inline(always)]
    pub fn set_ol_flags(&mut self, flags: OlFlags) {
        self.h.ol_flags = flags.bits();
    }

    /// Sets the packet type.
    #[inline(always)]
    pub fn set_packet_type(&mut self, ptype: PacketType) {
        self.h.packet_type = ptype.bits();
    }

    /// Sets the VLAN TCI (CPU order).
    #[inline(always)]
    pub fn set_vlan_tci(&mut self, tci: u16) {
        self.h.vlan_tci = tci;
    }

    /// Sets the outer VLAN TCI (CPU order).
    #[inline(always)]
    pub fn set_vlan_tci_outer(&mut self, tci: u16) {
        self.h.vlan_tci_outer = tci;
    }

    /// Sets the whole hash union.
    #[inline(always)]
    pub fn set_hash(&mut self, hash: MbufHash) {
        self.h.hash = hash;
    }

    /// Sets the RSS hash (the low word of the hash union; the high word is kept).
    #[inline(always)]
    pub fn set_rss_hash(&mut self, rss: u32) {
        let [_, hi] = self.h.hash.words();
        self.h.hash = MbufHash::from_words([rss, hi]);
    }

    /// The TX offload lengths.
    #[inline(always)]
    pub fn tx_offload(&self) -> TxOffload {
        TxOffload::from_bits(self.h.tx_offload)
    }

    /// Sets the TX offload lengths.
    #[inline(always)]
    pub fn set_tx_offload(&mut self, t: TxOffload) {
        self.h.tx_offload = t.bits();
    }

    /// Sets the IEEE 1588 timesync flags.
    #[inline(always)]
    pub fn set_timesync(&mut self, t: u16) {
        self.h.timesync = t;
    }

    /// The dynamic-field words, writable.
    #[inline(always)]
    pub fn dynfields_mut(&mut self) -> &mut [u32; 9] {
        &mut self.h.dynfield1
    }
}

impl fmt::Debug for MetaMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaMut")
            .field("port", &self.h.port)
            .field("ol_flags", &self.ol_flags())
            .finish()
    }
}

impl Mbuf {
    /// Write access to the metadata; refused while the mbuf is shared.
    #[inline]
    pub fn meta_mut(&mut self) -> Result<MetaMut<'_>, MbufError> {
        exclusive(self.ptr)?;
        // SAFETY: refcnt 1 (no other handle) and `&mut self` (no borrow of this one); the
        // reference covers the header only.
        let h = unsafe { &mut *self.ptr.as_ptr() };
        Ok(MetaMut { h })
    }

    /// The application's private area of the first segment (`priv_size` bytes between the
    /// header and the buffer, as `rte_mbuf_to_priv`).
    #[inline]
    pub fn priv_data(&self) -> &[u8] {
        let len = self.hdr().priv_size as usize;
        // SAFETY: the private area follows the header inside the object (laid out by the
        // pool), is reached with the object pointer's provenance, and is written only through
        // `priv_data_mut`, which needs `&mut self` and an unshared mbuf.
        unsafe { core::slice::from_raw_parts(self.priv_ptr(), len) }
    }

    /// The private area, writable; refused while the mbuf is shared.
    #[inline]
    pub fn priv_data_mut(&mut self) -> Result<&mut [u8], MbufError> {
        exclusive(self.ptr)?;
        let len = self.hdr().priv_size as usize;
        // SAFETY: as in priv_data, and exclusively held (checked) behind `&mut self`.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.priv_ptr(), len) })
    }

    #[inline(always)]
    fn priv_ptr(&self) -> *mut u8 {
        // In bounds: the object is HEADER_SIZE + priv_size + buf_len bytes.
        self.ptr.as_ptr().cast::<u8>().wrapping_add(HEADER_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::pool_of;
    use crate::mbuf::{
        MbufHash, OlFlags, PacketType, PktMbufPool, PktMbufPoolConfig, TxOffload, PORT_INVALID,
    };
    use crate::os::test_dma::TestDma;

    #[test]
    fn metadata_round_trips_and_alloc_resets_it() {
        let os = TestDma::contiguous();
        let p = pool_of(&os, 1);
        let mut m = p.alloc().unwrap();
        assert_eq!(m.port(), PORT_INVALID);
        let mut t = TxOffload::new();
        t.set_l2_len(14).unwrap();
        t.set_l3_len(20).unwrap();
        {
            let mut w = m.meta_mut().unwrap();
            w.set_port(3);
            w.set_ol_flags(OlFlags::RX_VLAN | OlFlags::RX_RSS_HASH);
            w.set_packet_type(PacketType::L2_ETHER | PacketType::L3_IPV4);
            w.set_vlan_tci(0x0123);
            w.set_vlan_tci_outer(0x0456);
            w.set_hash(MbufHash::from_words([1, 2]));
            w.set_rss_hash(0xdead_beef);
            w.set_tx_offload(t);
            w.set_timesync(9);
            w.dynfields_mut()[8] = 77;
            let f = w.ol_flags() | OlFlags::RX_VLAN_STRIPPED;
            w.set_ol_flags(f);
            assert_eq!(w.tx_offload(), t);
        }
        m.append(60).unwrap();
        assert_eq!(m.port(), 3);
        assert_eq!(
            m.ol_flags(),
            OlFlags::RX_VLAN | OlFlags::RX_RSS_HASH | OlFlags::RX_VLAN_STRIPPED
        );
        assert!(m.packet_type().is_ipv4());
        assert_eq!((m.vlan_tci(), m.vlan_tci_outer()), (0x0123, 0x0456));
        assert_eq!(m.rss_hash(), 0xdead_beef);
        assert_eq!(m.hash().fdir_hi(), 2, "set_rss_hash keeps the high word");
        assert_eq!((m.tx_offload().l2_len(), m.tx_offload().l3_len()), (14, 20));
        assert_eq!((m.timesync(), m.dynfields()[8]), (9, 77));
        drop(m);
        // rte_pktmbuf_reset's fields are clean again on the next alloc.
        let m = p.alloc().unwrap();
        assert_eq!(m.port(), PORT_INVALID);
        assert_eq!(m.ol_flags(), OlFlags::empty());
        assert_eq!(m.packet_type(), PacketType::UNKNOWN);
        assert_eq!((m.vlan_tci(), m.vlan_tci_outer()), (0, 0));
        assert_eq!(m.tx_offload(), TxOffload::new());
        assert_eq!((m.data_len(), m.pkt_len(), m.headroom()), (0, 0, 128));
    }

    #[test]
    fn private_area_sits_between_header_and_buffer() {
        let os = TestDma::contiguous();
        let mut cfg = PktMbufPoolConfig::new("priv", 2);
        cfg.priv_size = 24;
        let p = PktMbufPool::create(&os, &cfg).unwrap();
        let mut m = p.alloc().unwrap();
        assert_eq!(m.priv_data().len(), 24);
        m.priv_data_mut().unwrap().copy_from_slice(&[7; 24]);
        assert_eq!(m.priv_data(), &[7; 24]);
        let hdr = m.first_segment().buf_addr().get() - 24 - 128;
        assert_eq!(m.priv_data().as_ptr() as usize, hdr + 128);
        assert_eq!(
            m.first_segment().buf_addr().get(),
            m.priv_data().as_ptr() as usize + 24
        );
        drop(m);
        assert_eq!(p.available(), 2);
    }
}
