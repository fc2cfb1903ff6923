//! Receive: the fill ring hands mbufs of the queue's pool to the kernel, the RX ring hands
//! them back with a frame written in place.
//!
//! A shadow (`posted`, one flag per pool object) records which mbufs the kernel holds. An RX
//! descriptor is taken only if it names a chunk start rdk posted (anything else is counted as
//! a bad descriptor, and no mbuf is made from it); the kernel has then given that chunk back,
//! so its mbuf is rdk's again, and the frame is delivered if it stays in the mbuf's buffer
//! ([`Umem::rx_frame`]), else counted as a bad descriptor and the mbuf freed. At most a fill
//! ring's worth of mbufs is with the kernel at a time, so a queue's footprint in the pool is
//! bounded.
#![allow(unsafe_code)] // taking back mbufs the shadow says we posted.

use crate::ring::Ring;
use crate::sys::{self, XdpDesc};
use crate::umem::Umem;
use crate::xsk::XskSock;
use rdk_core::ethdev::{Counter, EthError, QueueCounters, RxQueue};
use rdk_core::mbuf::{Mbuf, MbufCache, MbufError, PktMbufPool};
use rdk_core::os::WaitHandle;
use std::sync::Arc;

/// Receive-side drop reasons (xstats).
#[derive(Debug, Default)]
pub(crate) struct RxDrops {
    /// RX descriptors naming no chunk rdk posted, or a frame outside its chunk.
    pub bad_desc: Counter,
    /// Ring indices the kernel published that cannot be (more entries than the ring holds).
    pub ring_anomalies: Counter,
    /// Fill-ring refills cut short because the pool was empty.
    pub fill_nombuf: Counter,
    /// Fill-ring wake-up calls made.
    pub fill_wakeups: Counter,
}

impl RxDrops {
    /// Zeroes every counter (every field: a new one that is not zeroed here does not build).
    pub fn reset(&self) {
        rdk_core::reset_counters!(
            self,
            RxDrops {
                bad_desc,
                ring_anomalies,
                fill_nombuf,
                fill_wakeups
            }
        );
    }
}

/// A `net_af_xdp` receive queue.
#[derive(Debug)]
pub struct AfXdpRx {
    pub(crate) pool: PktMbufPool,
    cache: MbufCache,
    pub(crate) nb_desc: u32,
    counters: Arc<QueueCounters>,
    drops: Arc<RxDrops>,
    port_id: u16,
    live: Option<RxLive>,
}

/// The bound half: rings and the shadow.
#[derive(Debug)]
pub(crate) struct RxLive {
    rx: Ring<XdpDesc>,
    fill: Ring<u64>,
    umem: Umem,
    posted: Vec<bool>,
    in_kernel: u32,
    /// Most mbufs posted at once.
    max_posted: u32,
    /// Busy polling (`busy_budget`): an empty ring makes a `recvfrom`, which runs the
    /// interface's NAPI in this thread (`SO_PREFER_BUSY_POLL`).
    busy: bool,
    /// Last, so it drops after the rings: a ring mapping keeps the socket open in the
    /// kernel, and the parked mbufs may only be freed once the socket is really released.
    sock: Arc<XskSock>,
}

impl RxLive {
    pub(crate) fn new(
        sock: Arc<XskSock>,
        rx: Ring<XdpDesc>,
        fill: Ring<u64>,
        umem: Umem,
        rx_size: u32,
        busy: bool,
    ) -> Self {
        // Up to a fill ring's worth (twice the RX ring), but never more than half the pool
        // unless that is less than one RX ring: the application needs mbufs too.
        let max_posted = fill
            .size()
            .min(rx_size.max((umem.count / 2).min(u32::MAX as usize) as u32));
        Self {
            max_posted,
            busy,
            sock,
            rx,
            fill,
            posted: vec![false; umem.count],
            umem,
            in_kernel: 0,
        }
    }

    /// Posts fresh mbufs to the fill ring: as many as it has room for, up to its size in the
    /// kernel's hands. One wake-up call if the kernel asked for one.
    #[inline]
    fn refill(&mut self, cache: &mut MbufCache, drops: &RxDrops, counters: &QueueCounters) {
        let cap = self.max_posted - self.in_kernel.min(self.max_posted);
        if cap == 0 {
            // All posted: nothing to do, and no need to look at the kernel's index.
            return;
        }
        let Some(room) = self.fill.free(cap) else {
            drops.ring_anomalies.add(1);
            return;
        };
        let start = self.fill.local();
        let mut n = 0;
        while n < room {
            let Some(m) = cache.alloc() else {
                drops.fill_nombuf.add(1);
                counters.add_nombuf(1);
                break;
            };
            let p = m.into_raw();
            let Some(i) = self.umem.index_of(p) else {
                // Not an object of the UMEM's pool (cannot happen with the queue's own cache).
                // SAFETY: from into_raw just above.
                drop(unsafe { Mbuf::from_raw(p) });
                break;
            };
            self.posted[i] = true;
            self.fill
                .write(start.wrapping_add(n), self.umem.fill_addr(i));
            n += 1;
        }
        if n > 0 {
            self.in_kernel += n;
            self.fill.submit(n);
            if self.fill.needs_wakeup() {
                drops.fill_wakeups.add(1);
                sys::wake_rx(self.sock.fd());
            }
        }
    }
}

impl Drop for RxLive {
    fn drop(&mut self) {
        let u = self.umem;
        let parked = self
            .posted
            .iter()
            .enumerate()
            .filter(|(_, &p)| p)
            .map(|(i, _)| u.object(i));
        self.sock.orphan(parked);
    }
}

/// Sets `m` (fresh: empty at the pool's headroom) to `len` bytes at buffer offset `data_off`.
#[inline(always)]
fn place(m: &mut Mbuf, data_off: u16, len: u16) -> Result<(), MbufError> {
    let h = m.data_off();
    if data_off >= h {
        m.append(data_off - h + len)?;
        if data_off > h {
            m.adj(data_off - h)?;
        }
    } else {
        let d = h - data_off;
        m.prepend(d)?;
        if len >= d {
            m.append(len - d)?;
        } else {
            m.trim(d - len)?;
        }
    }
    Ok(())
}

impl AfXdpRx {
    pub(crate) fn new(
        pool: PktMbufPool,
        cache: MbufCache,
        nb_desc: u32,
        counters: Arc<QueueCounters>,
        drops: Arc<RxDrops>,
        port_id: u16,
    ) -> Self {
        Self {
            pool,
            cache,
            nb_desc,
            counters,
            drops,
            port_id,
            live: None,
        }
    }

    /// Binds the queue to its socket's rings and fills the fill ring.
    pub(crate) fn attach(&mut self, mut live: RxLive) {
        live.refill(&mut self.cache, &self.drops, &self.counters);
        self.live = Some(live);
    }

    /// Lets go of the socket: the mbufs the kernel holds are freed once it is closed.
    pub(crate) fn detach(&mut self) {
        self.live = None;
        self.cache.flush();
    }

    /// Mbufs now posted to the kernel.
    pub fn in_kernel(&self) -> u32 {
        self.live.as_ref().map_or(0, |l| l.in_kernel)
    }

    #[inline(always)]
    fn burst(&mut self, out: &mut [Option<Mbuf>], other: Option<&mut MbufCache>) -> usize {
        let Some(l) = self.live.as_mut() else {
            return 0;
        };
        let cache = match other {
            Some(c) if c.mempool().same_pool(self.pool.mempool()) => c,
            _ => &mut self.cache,
        };
        let n = match l.rx.peek(out.len() as u32) {
            Some(n) => n,
            None => {
                self.drops.ring_anomalies.add(1);
                0
            }
        };
        if n == 0 && l.busy {
            sys::wake_rx(l.sock.fd());
        }
        let (mut got, mut bytes) = (0usize, 0u64);
        let start = l.rx.local();
        for k in 0..n {
            let d = l.rx.read(start.wrapping_add(k));
            let Some(i) = l.umem.rx_object(d.addr).filter(|&i| l.posted[i]) else {
                self.drops.bad_desc.add(1);
                self.counters.add_errors(1);
                continue;
            };
            // The kernel gave the chunk back, whatever it says about the frame in it: take
            // the mbuf back (a bad frame is freed below, not left marked as the kernel's).
            l.posted[i] = false;
            l.in_kernel -= 1;
            // SAFETY: the shadow says object i was posted by `refill` from an mbuf given up
            // with into_raw, and nothing else turned it back (the flag is now clear).
            let mut m = unsafe { Mbuf::from_raw(l.umem.object(i)) };
            // rx_frame keeps data_off + len inside the buffer, so len fits a u16.
            let placed = l
                .umem
                .rx_frame(d.addr, d.len)
                .is_some_and(|(_, data_off)| place(&mut m, data_off, d.len as u16).is_ok());
            if !placed {
                self.drops.bad_desc.add(1);
                self.counters.add_errors(1);
                cache.free(m);
                continue;
            }
            if let Ok(mut meta) = m.meta_mut() {
                meta.set_port(self.port_id);
            }
            bytes += d.len as u64;
            out[got] = Some(m);
            got += 1;
        }
        if n > 0 {
            l.rx.release(n);
        }
        l.refill(cache, &self.drops, &self.counters);
        self.counters.add(got as u64, bytes);
        got
    }
}

impl RxQueue for AfXdpRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut [Option<Mbuf>]) -> usize {
        self.burst(out, None)
    }

    #[inline]
    fn rx_burst_cached(&mut self, out: &mut [Option<Mbuf>], cache: &mut MbufCache) -> usize {
        self.burst(out, Some(cache))
    }

    /// The socket polls readable when its RX ring has entries: it is its own interrupt.
    fn intr_enable(&mut self) -> Result<(), EthError> {
        Ok(())
    }

    fn intr_disable(&mut self) -> Result<(), EthError> {
        Ok(())
    }

    fn intr_handle(&self) -> Option<WaitHandle> {
        self.live.as_ref().map(|l| WaitHandle(l.sock.fd() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::KernelSide;
    use rdk_core::mbuf::PktMbufPoolConfig;
    use std::os::fd::OwnedFd;

    #[test]
    fn place_covers_every_offset() {
        let os = rdk_os_linux::LinuxOs::plain();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("place", 8)).unwrap();
        for (off, len) in [
            (128u16, 60u16),
            (200, 100),
            (0, 64),
            (64, 10),
            (64, 200),
            (128, 2048),
        ] {
            let mut m = pool.alloc().unwrap();
            place(&mut m, off, len).unwrap();
            assert_eq!(
                (m.data_off(), m.data_len(), m.pkt_len()),
                (off, len, len as u32)
            );
        }
        let mut m = pool.alloc().unwrap();
        assert!(place(&mut m, 2000, 400).is_err(), "beyond the buffer");
    }

    /// A queue of port `port_id` on fake 64-entry rings over a 256-mbuf pool, with the
    /// kernel's side of its RX and fill rings for the test to play.
    struct FakeRx {
        q: AfXdpRx,
        krx: KernelSide<XdpDesc>,
        kfill: KernelSide<u64>,
        umem: Umem,
        pool: PktMbufPool,
        counters: Arc<QueueCounters>,
        drops: Arc<RxDrops>,
    }

    fn fake_rx(name: &str, port_id: u16) -> FakeRx {
        let os = rdk_os_linux::LinuxOs::plain();
        let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new(name, 256)).unwrap();
        let umem = Umem::of_pool(&pool).unwrap();
        let fd: OwnedFd = std::os::unix::net::UnixDatagram::unbound().unwrap().into();
        let sock = Arc::new(XskSock::new(fd, pool.clone()));
        let (rxr, rxb) = Ring::<XdpDesc>::fake(64);
        let (fill, fb) = Ring::<u64>::fake(64);
        let counters = Arc::new(QueueCounters::new());
        let drops = Arc::new(RxDrops::default());
        let cache = pool.cache(32).unwrap();
        let mut q = AfXdpRx::new(
            pool.clone(),
            cache,
            64,
            counters.clone(),
            drops.clone(),
            port_id,
        );
        q.attach(RxLive::new(sock, rxr, fill, umem, 64, false));
        FakeRx {
            q,
            krx: KernelSide::<XdpDesc>::new(rxb, 64),
            kfill: KernelSide::<u64>::new(fb, 64),
            umem,
            pool,
            counters,
            drops,
        }
    }

    /// The test plays the kernel on fake rings: it takes fill addresses, writes frames there
    /// and publishes RX descriptors, among them every kind of lie.
    #[test]
    fn hostile_rx_descriptors_are_counted_and_every_mbuf_comes_back() {
        let FakeRx {
            mut q,
            krx,
            kfill,
            umem,
            pool,
            counters,
            drops,
        } = fake_rx("hrx", 3);
        assert_eq!(
            (kfill.prod(), q.in_kernel()),
            (64, 64),
            "the fill ring is full"
        );

        let addrs: Vec<u64> = (0..4).map(|i| kfill.read(i)).collect();
        kfill.set_cons(4);
        let frame = |j: u8, len: usize| -> Vec<u8> { (0..len).map(|b| (b as u8) ^ j).collect() };
        for (j, a) in addrs[..2].iter().enumerate() {
            let f = frame(j as u8, 100);
            // SAFETY: the chunk at `a` is the "kernel's" (posted); 256 bytes in is the frame.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    f.as_ptr(),
                    (umem.base + *a as usize + 256) as *mut u8,
                    f.len(),
                )
            };
        }
        let d = |addr: u64, len: u32| XdpDesc {
            addr,
            len,
            options: 0,
        };
        let descs = [
            d(addrs[0] | 256 << 48, 60),
            d(addrs[0] | 256 << 48, 60),   // the same chunk twice
            d(addrs[1] + 8, 60),           // not a chunk start
            d(addrs[3] | 256 << 48, 5000), // leaves the chunk (the chunk comes back)
            d(u64::MAX, u32::MAX),
            d(addrs[1] | 256 << 48, 100),
            d(addrs[2], 60), // a frame over the mbuf header (the chunk comes back)
        ];
        for (i, x) in descs.iter().enumerate() {
            krx.write(i as u32, *x);
        }
        krx.set_prod(descs.len() as u32);
        let mut out: [Option<Mbuf>; 16] = Default::default();
        assert_eq!(q.rx_burst(&mut out), 2);
        let (a, b) = (out[0].as_ref().unwrap(), out[1].as_ref().unwrap());
        assert_eq!(a.data(), &frame(0, 100)[..60]);
        assert_eq!(b.data(), &frame(1, 100)[..]);
        assert_eq!((a.port(), a.data_off()), (3, pool.headroom()));
        assert_eq!(drops.bad_desc.get(), 5);
        assert_eq!(counters.snapshot().errors, 5);
        assert_eq!(krx.cons(), 7, "every descriptor consumed");
        assert_eq!(
            (kfill.prod(), q.in_kernel()),
            (68, 64),
            "the two delivered and the two bad-frame mbufs were replaced"
        );

        krx.set_prod(7 + 65);
        assert_eq!(
            q.rx_burst(&mut out[2..]),
            0,
            "a producer 65 ahead of a 64-entry ring"
        );
        assert_eq!(drops.ring_anomalies.get(), 1);
        drop(out);
        // The 64 chunks still in the fill ring come back when the queue lets go of the
        // socket.
        q.detach();
        drop(q);
        assert_eq!(pool.available(), pool.size());
    }

    /// The kernel hands back every posted chunk, each with a length that leaves its chunk.
    /// The chunks are the kernel's no longer (it returned them): rdk takes their mbufs back
    /// and posts fresh ones. (It used to keep them marked posted: in_kernel stayed at
    /// max_posted, the fill ring was never refilled, and the queue received nothing again
    /// until stop.)
    #[test]
    fn bad_length_on_a_posted_chunk_gives_the_mbuf_back_and_rx_goes_on() {
        let FakeRx {
            mut q,
            krx,
            kfill,
            pool,
            drops,
            ..
        } = fake_rx("arx", 0);
        assert_eq!((kfill.prod(), q.in_kernel()), (64, 64));
        // The kernel takes all 64 fill entries and returns each chunk with a bad length.
        kfill.set_cons(64);
        for i in 0..64u32 {
            let a = kfill.read(i);
            krx.write(
                i,
                XdpDesc {
                    addr: a | 256 << 48,
                    len: 5000,
                    options: 0,
                },
            );
        }
        krx.set_prod(64);
        let mut out: [Option<Mbuf>; 64] = std::array::from_fn(|_| None);
        assert_eq!(q.rx_burst(&mut out), 0);
        assert_eq!(drops.bad_desc.get(), 64);
        assert_eq!(krx.cons(), 64, "all 64 consumed");
        // Every chunk is back from the kernel: the queue should have posted fresh ones.
        assert_eq!(
            (q.in_kernel(), kfill.prod()),
            (64, 128),
            "in_kernel counts only chunks still in the kernel; the fill ring is refilled"
        );
        drop(out);
        q.detach();
        drop(q);
        assert_eq!(pool.available(), pool.size(), "every mbuf back");
    }
}
