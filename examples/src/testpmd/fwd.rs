//! Forwarding engines: what one forwarding core does with its streams.
//!
//! A stream is (rx port, rx queue) → (tx port, tx queue). Each core owns its streams' queues
//! and an mbuf cache, and loops until told to stop. Everything here is generic over the queue
//! types, so a core forwarding between two null ports is compiled for exactly that.

use super::cli::ForwardMode;
use super::pkt;
use rdk_core::ethdev::{RxQueue, TxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache};
use std::sync::atomic::{AtomicBool, Ordering};

/// Most packets per burst.
pub const MAX_BURST: usize = 512;

/// One stream: where a core receives and where it sends what it received.
pub struct Stream<R: RxQueue, T: TxQueue> {
    /// Receiving port id.
    pub rx_port: u16,
    /// Sending port id.
    pub tx_port: u16,
    /// The rx queue.
    pub rx: R,
    /// The tx queue.
    pub tx: T,
    /// Source MAC for mac mode (the tx port's address).
    pub tx_mac: [u8; 6],
    /// Destination MAC for mac mode (the peer's address).
    pub peer_mac: [u8; 6],
    /// Packets the tx queue did not take, freed by the engine.
    pub tx_dropped: u64,
}

/// What a core needs besides its streams.
pub struct Engine<'a> {
    /// Forwarding mode.
    pub mode: ForwardMode,
    /// Packets per burst.
    pub burst: usize,
    /// This core's mbuf cache (for generated packets and frees).
    pub cache: MbufCache,
    /// Set to stop.
    pub stop: &'a AtomicBool,
    /// The generated frame (txpkts bytes, checksums filled in), copied into each packet.
    pub frame: Vec<u8>,
    /// The lengths of the segments a generated packet is cut into (summing to the frame's
    /// length; one: a single mbuf). flowgen always sends a single mbuf.
    pub segs: Vec<u16>,
    /// Flow counter for flowgen.
    pub flow: u32,
}

/// `dst.copy_from_slice(src)`, inlined for frames of 16 to 64 bytes (two overlapping
/// fixed-size copies instead of a call into libc's memcpy, which costs a tenth of a
/// transmit-only core at 64 bytes).
#[inline(always)]
fn copy_frame(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if dst.len() != n {
        dst.copy_from_slice(src); // panics with the lengths, as copy_from_slice does
    } else if (32..=64).contains(&n) {
        dst[..32].copy_from_slice(&src[..32]);
        dst[n - 32..].copy_from_slice(&src[n - 32..]);
    } else if (16..32).contains(&n) {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..].copy_from_slice(&src[n - 16..]);
    } else {
        dst.copy_from_slice(src);
    }
}

/// Writes `frame` into `head` (an empty mbuf) cut into segments of `segs` bytes, chaining a new
/// mbuf from `cache` for each segment after the first. False if an mbuf was missing or a segment
/// did not fit (what was chained stays on `head`, to be freed with it).
fn chain_frame(head: &mut Mbuf, segs: &[u16], frame: &[u8], cache: &mut MbufCache) -> bool {
    let mut off = 0usize;
    for (k, &len) in segs.iter().enumerate() {
        let Some(part) = frame.get(off..off + usize::from(len)) else {
            return false;
        };
        off += usize::from(len);
        if k == 0 {
            match head.append(len) {
                Ok(d) => d.copy_from_slice(part),
                Err(_) => return false,
            }
            continue;
        }
        let Some(mut m) = cache.alloc() else {
            return false;
        };
        match m.append(len) {
            Ok(d) => d.copy_from_slice(part),
            Err(_) => return false,
        }
        if head.chain(m).is_err() {
            return false;
        }
    }
    true
}

/// Number of flows flowgen cycles through (dpdk-testpmd's default is 1024).
const FLOWGEN_FLOWS: u32 = 1024;

impl Engine<'_> {
    /// The frame generated packets carry: `txpkts` bytes from the default template.
    pub fn make_frame(txpkts: u16) -> Vec<u8> {
        let mut f = vec![0u8; usize::from(txpkts).max(pkt::HDR_LEN)];
        pkt::Template::default().write(&mut f);
        f
    }

    /// Fills `pkts` with generated frames; returns how many (fewer if the pool ran dry).
    fn generate(&mut self, pkts: &mut [Option<Mbuf>], vary_flow: bool) -> usize {
        if !self.cache.alloc_bulk(pkts) {
            // Fewer than a burst left: take them one by one.
            let mut n = 0;
            while n < pkts.len() {
                match self.cache.alloc() {
                    Some(m) => pkts[n] = Some(m),
                    None => break,
                }
                n += 1;
            }
            if n == 0 {
                return 0;
            }
            return self.fill(&mut pkts[..n], vary_flow);
        }
        self.fill(pkts, vary_flow)
    }

    fn fill(&mut self, pkts: &mut [Option<Mbuf>], vary_flow: bool) -> usize {
        if self.segs.len() > 1 && !vary_flow {
            return self.fill_chained(pkts);
        }
        let len = self.frame.len() as u16;
        for slot in pkts.iter_mut() {
            let Some(m) = slot.as_mut() else { break };
            match m.append(len) {
                Ok(frame) => {
                    copy_frame(frame, &self.frame);
                    if vary_flow {
                        self.flow = (self.flow + 1) % FLOWGEN_FLOWS;
                        let f = self.flow.to_be_bytes();
                        pkt::set_src_ip(frame, [198, 18, f[2], f[3]]);
                    }
                }
                Err(_) => {
                    // A pool whose buffers cannot hold txpkts: free and stop generating.
                    *slot = None;
                    break;
                }
            }
        }
        pkts.iter().take_while(|p| p.is_some()).count()
    }

    /// Fills `pkts` with the frame cut into chains of `segs`; the first segment is the mbuf in
    /// the slot, the others come from the cache. Stops at the first packet it cannot complete
    /// (the cache ran dry), freeing it and the mbufs after it; returns how many were filled.
    fn fill_chained(&mut self, pkts: &mut [Option<Mbuf>]) -> usize {
        let mut n = 0;
        while n < pkts.len() {
            let Some(head) = pkts[n].as_mut() else { break };
            if !chain_frame(head, &self.segs, &self.frame, &mut self.cache) {
                break;
            }
            n += 1;
        }
        self.cache.free_bulk(&mut pkts[n..]);
        n
    }

    /// Sends `pkts[..n]` on the stream's tx queue; frees and counts what it did not take.
    #[inline(always)]
    fn send<R: RxQueue, T: TxQueue>(&mut self, s: &mut Stream<R, T>, pkts: &mut [Option<Mbuf>]) {
        let sent = s.tx.tx_burst_cached(pkts, &mut self.cache);
        if sent < pkts.len() {
            let rest = &mut pkts[sent..];
            s.tx_dropped += rest.iter().filter(|p| p.is_some()).count() as u64;
            self.cache.free_bulk(rest);
        }
    }

    /// Sends one burst of generated packets on every stream (dpdk-testpmd's `--tx-first`).
    pub fn tx_first<R: RxQueue, T: TxQueue>(&mut self, streams: &mut [Stream<R, T>]) {
        let mut pkts: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        for s in streams.iter_mut() {
            let n = self.generate(&mut pkts[..self.burst], false);
            self.send(s, &mut pkts[..n]);
        }
    }

    /// Forwards until `stop` is set.
    pub fn run<R: RxQueue, T: TxQueue>(&mut self, streams: &mut [Stream<R, T>]) {
        let mut pkts: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let burst = self.burst.min(MAX_BURST);
        while !self.stop.load(Ordering::Relaxed) {
            for s in streams.iter_mut() {
                self.step(s, &mut pkts[..burst]);
            }
        }
    }

    /// One burst of the mode on one stream.
    #[inline(always)]
    pub fn step<R: RxQueue, T: TxQueue>(
        &mut self,
        s: &mut Stream<R, T>,
        pkts: &mut [Option<Mbuf>],
    ) {
        match self.mode {
            ForwardMode::Io => {
                let n = s.rx.rx_burst_cached(pkts, &mut self.cache);
                if n > 0 {
                    self.send(s, &mut pkts[..n]);
                }
            }
            ForwardMode::Mac | ForwardMode::Macswap => {
                let n = s.rx.rx_burst_cached(pkts, &mut self.cache);
                if n == 0 {
                    return;
                }
                for p in pkts[..n].iter_mut().flatten() {
                    // A shared (read-only) mbuf is forwarded unchanged.
                    if let Ok(frame) = p.data_mut() {
                        if self.mode == ForwardMode::Mac {
                            pkt::set_macs(frame, s.tx_mac, s.peer_mac);
                        } else {
                            pkt::swap_macs(frame);
                        }
                    }
                }
                self.send(s, &mut pkts[..n]);
            }
            ForwardMode::Rxonly => {
                let n = s.rx.rx_burst_cached(pkts, &mut self.cache);
                if n > 0 {
                    self.cache.free_bulk(&mut pkts[..n]);
                }
            }
            ForwardMode::Txonly => {
                let n = self.generate(pkts, false);
                self.send(s, &mut pkts[..n]);
            }
            ForwardMode::Flowgen => {
                let n = s.rx.rx_burst_cached(pkts, &mut self.cache);
                if n > 0 {
                    self.cache.free_bulk(&mut pkts[..n]);
                }
                let n = self.generate(pkts, true);
                self.send(s, &mut pkts[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy_frame;

    #[test]
    fn copy_frame_copies_every_length_exactly() {
        let src: Vec<u8> = (0..200u8).collect();
        for n in 0..=200 {
            let mut dst = vec![0xeeu8; n];
            copy_frame(&mut dst, &src[..n]);
            assert_eq!(dst, src[..n], "length {n}");
        }
    }
}
