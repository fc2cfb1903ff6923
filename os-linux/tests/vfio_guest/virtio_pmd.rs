//! `net_virtio` (rdk-pmd-virtio) over VFIO against QEMU's virtio-net-pci, with the guest
//! kernel's own virtio-net (the lab's `--peer virtio`) on the same hub as the other end.
//!
//! The PMD knows only the OS traits; this file is the glue: a [`VfioDevice`] as its
//! `PciDevice`, [`VfioOs`] as its DMA allocator (IOVAs in the vIOMMU's container), the peer
//! configured with `ip` and watched with an `AF_PACKET` socket and a UDP socket.

use rdk_core::ethdev::{Port, PortConfig, RxQueue, RxQueueConfig, TxQueue, TxQueueConfig};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_core::net::checksum;
use rdk_core::os::pci::{IrqKind, PciDevice};
use rdk_core::os::{DmaAlloc, DmaError, DmaRequest, EventNotifier};
use rdk_core::pci::MsixInfo;
use rdk_core::virtio::{Features, Transport};
use rdk_os_linux::vfio::{VfioDevice, VfioOs, VfioRegion};
use rdk_pmd_virtio::{AnyPciTransport, PciTransport, VirtioNet, VirtioNetConfig};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The peer's and rdk's addresses on the hub (the hub reaches nothing outside QEMU).
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// rdk's address.
pub const RDK_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const UDP_PORT: u16 = 7777;

/// [`VfioOs`] shared between the pool (created from a reference) and the driver (which owns
/// its allocator).
#[derive(Clone)]
pub struct SharedOs(pub Arc<VfioOs>);

impl DmaAlloc for SharedOs {
    type Region = VfioRegion;
    fn dma_alloc(&self, req: &DmaRequest<'_>) -> Result<VfioRegion, DmaError> {
        self.0.dma_alloc(req)
    }
}

/// Runs a command in the guest and panics with its output if it fails.
pub fn sh(args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The peer netdev's MAC address from sysfs.
pub fn if_mac(ifname: &str) -> [u8; 6] {
    let s = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).unwrap();
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn if_stat(ifname: &str, what: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{what}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// An `AF_PACKET` socket that sees every frame the peer netdev sends or receives.
pub struct Capture(OwnedFd);

impl Capture {
    /// Opens the capture on `ifname`.
    pub fn new(ifname: &str) -> Self {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as libc::c_int) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: name is a NUL-terminated string alive for the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {ifname}");
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the given length, alive for the call.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        Self(fd)
    }

    /// The next captured frame for which `pick` holds, within `timeout`.
    pub fn find(&self, timeout: Duration, pick: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 65536];
        while t0.elapsed() < timeout {
            let mut p = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, alive for the call.
            if unsafe { libc::poll(&mut p, 1, 10) } <= 0 {
                continue;
            }
            // SAFETY: buf is writable for its length and alive for the call.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if let Ok(n) = usize::try_from(n) {
                if pick(&buf[..n]) {
                    return Some(buf[..n].to_vec());
                }
            }
        }
        None
    }
}

/// An Ethernet + IPv4 + UDP frame (IPv4 and UDP checksums filled in).
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len() as u16;
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len as usize);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let acc = checksum::pseudo_header(src, dst, 17, udp_len);
    let mut c = !checksum::fold(checksum::sum(&udp, acc));
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// The reply to an ARP request for `ip` in `req` (a frame), if it is one.
pub fn arp_reply(req: &[u8], mac: [u8; 6], ip: Ipv4Addr) -> Option<Vec<u8>> {
    if req.len() < 42 || req[12..14] != [0x08, 0x06] || req[20..22] != [0, 1] {
        return None;
    }
    if req[38..42] != ip.octets() {
        return None;
    }
    let mut r = Vec::with_capacity(42);
    r.extend_from_slice(&req[22..28]); // to the asker's MAC
    r.extend_from_slice(&mac);
    r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    r.extend_from_slice(&mac);
    r.extend_from_slice(&ip.octets());
    r.extend_from_slice(&req[22..32]); // the asker's MAC and IP
    Some(r)
}

/// The virtio-pci transports over a [`VfioDevice`], for the MSI-X check.
pub trait OnVfio: Transport {
    /// The device.
    fn vfio(&self) -> &VfioDevice;
}

impl OnVfio for PciTransport<VfioDevice> {
    fn vfio(&self) -> &VfioDevice {
        self.device()
    }
}

impl OnVfio for AnyPciTransport<VfioDevice> {
    fn vfio(&self) -> &VfioDevice {
        self.device()
    }
}

/// A started `net_virtio` port over a VFIO device, with rx interrupts.
pub struct Rig<T: Transport> {
    /// The port.
    pub port: Port<VirtioNet<T, SharedOs>>,
    /// Its mbufs.
    pub pool: PktMbufPool,
}

impl<T: Transport> Rig<T> {
    /// Negotiates over `t`, sets up one queue pair (rx interrupts on) and starts.
    pub fn start(os: &SharedOs, t: T, cfg: VirtioNetConfig) -> Self {
        let pool = PktMbufPool::create(os, &PktMbufPoolConfig::new("vfio-virtio", 1024)).unwrap();
        let drv = VirtioNet::new(t, os.clone(), cfg).expect("negotiate with QEMU's virtio-net");
        let mut port = Port::new(0, drv);
        let mut pc = PortConfig::queues(1, 1);
        pc.rx_interrupts = true;
        port.configure(&pc).unwrap();
        port.rx_queue_setup(0, 256, &pool, &RxQueueConfig::default())
            .unwrap();
        port.tx_queue_setup(0, 256, &TxQueueConfig::default())
            .unwrap();
        port.start().unwrap();
        Self { port, pool }
    }

    /// Sends one frame; returns once the queue took it.
    pub fn send(&mut self, bytes: &[u8]) {
        let mut m = self.pool.alloc().unwrap();
        m.append(bytes.len() as u16).unwrap().copy_from_slice(bytes);
        let mut b = [Some(m)];
        let q = &mut self.port.queues().unwrap().tx[0];
        assert_eq!(q.tx_burst(&mut b), 1, "tx queue full");
    }

    /// Polls until a frame for which `pick` holds arrives (others are dropped); answers ARP
    /// requests for `RDK_IP` on the way.
    pub fn recv(&mut self, timeout: Duration, pick: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let mac = self.port.mac_addr().0;
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            let mut burst: [Option<Mbuf>; 32] = Default::default();
            let n = self.port.queues().unwrap().rx[0].rx_burst(&mut burst);
            let mut found = None;
            for m in burst[..n].iter_mut().filter_map(Option::take) {
                let mut v = vec![0u8; m.pkt_len() as usize];
                m.copy_to(&mut v).unwrap();
                drop(m);
                if let Some(r) = arp_reply(&v, mac, RDK_IP) {
                    self.send(&r);
                }
                if found.is_none() && pick(&v) {
                    found = Some(v);
                }
            }
            if found.is_some() {
                return found;
            }
            if n == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        None
    }

    /// Interrupt mode: drains the queue, arms it, has the peer's `sock` send `text` to rdk,
    /// sleeps on `irq` (an event the queue's vector signals), receives the datagram. Returns
    /// how long the wake-up took; `what` names the step in a failure.
    pub fn receive_by_interrupt(
        &mut self,
        irq: &impl EventNotifier,
        sock: &UdpSocket,
        text: &[u8],
        what: &str,
    ) -> Duration {
        while self.recv(Duration::from_millis(50), |_| true).is_some() {}
        self.port.queues().unwrap().rx[0].intr_enable().unwrap();
        let _ = irq.ack();
        let t0 = Instant::now();
        sock.send_to(text, (RDK_IP, UDP_PORT)).unwrap();
        assert!(
            irq.wait(Some(Duration::from_secs(5))).unwrap(),
            "{what}: no MSI-X interrupt for the received frame within 5 s"
        );
        let took = t0.elapsed();
        assert!(irq.ack().unwrap() >= 1);
        self.port.queues().unwrap().rx[0].intr_disable().unwrap();
        let got = self
            .recv(Duration::from_secs(2), |f| {
                udp_payload(f, UDP_PORT).is_some()
            })
            .unwrap_or_else(|| panic!("{what}: the frame that raised the interrupt"));
        assert_eq!(udp_payload(&got, UDP_PORT).unwrap(), text, "{what}");
        took
    }

    /// Stops and closes the port; every mbuf must be back.
    pub fn finish(mut self) {
        self.port.stop().unwrap();
        self.port.close().unwrap();
        drop(self.port);
        assert_eq!(self.pool.available(), self.pool.size(), "pool full again");
    }
}

/// The UDP payload of `f` if it is IPv4/UDP to `port`.
pub fn udp_payload(f: &[u8], port: u16) -> Option<&[u8]> {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[23] != 17 || f[14] != 0x45 {
        return None;
    }
    if f[36..38] != port.to_be_bytes() {
        return None;
    }
    let ulen = u16::from_be_bytes([f[38], f[39]]) as usize;
    f.get(42..34 + ulen)
}

/// The number of DMAR (or virtio-iommu) fault lines in the kernel log.
pub fn iommu_fault_lines() -> usize {
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: SYSLOG_ACTION_READ_ALL (3) writes at most `len` bytes into `buf`.
    let n = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), buf.len() as libc::c_int) };
    let n = usize::try_from(n).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .filter(|l| l.contains("DMAR: [DMA") || l.contains("page fault from EP"))
        .count()
}

/// Configures the peer netdev for the test: up, `PEER_IP/24`.
pub fn peer_up(peer: &str) {
    sh(&["ip", "link", "set", peer, "up"]);
    let _ = std::process::Command::new("ip")
        .args(["addr", "flush", "dev", peer])
        .status();
    sh(&["ip", "addr", "add", &format!("{PEER_IP}/24"), "dev", peer]);
}

/// Bring-up, link, traffic both ways (byte for byte, seen by the kernel peer's capture and
/// sockets) and an interrupt-mode receive, all through the vIOMMU.
///
/// `transport` builds the transport over the device; `check` looks at the negotiated
/// features.
pub fn run<T: OnVfio>(
    os: &SharedOs,
    dev: VfioDevice,
    peer: &str,
    transport: impl FnOnce(VfioDevice) -> T,
    check: impl FnOnce(Features),
) {
    let faults0 = iommu_fault_lines();
    let msix: MsixInfo = dev.msix().expect("virtio-net has MSI-X");
    let vectors = dev.irq_count(IrqKind::Msix).unwrap();
    println!(
        "virtio-net MSI-X: {vectors} vectors, table in BAR{}",
        msix.table_bar
    );
    let mut rig = Rig::start(os, transport(dev), VirtioNetConfig::default());
    let f = rig.port.driver().features();
    println!("negotiated: {f:?}");
    check(f);
    assert!(f.contains(Features::NET_MAC | Features::NET_STATUS));
    // MSI-X: enabled in config space, the config vector and the rx queue's vector live.
    rig.port.driver().with_transport(|t| {
        let ctl = t.vfio().config_read_u16(msix.cap_offset + 2).unwrap();
        assert_ne!(ctl & 0x8000, 0, "MSI-X enable bit set");
    });
    assert!(rig.port.driver().config_irq().is_some(), "config vector");
    let irq = rig.port.queues().unwrap().rx[0]
        .irq()
        .expect("rx queue vector")
        .clone();
    let link = rig.port.link_update();
    assert!(link.up, "QEMU reports the link up");
    let mac = rig.port.mac_addr().0;
    println!("rdk port MAC {:02x?}, link {link:?}", mac);

    peer_up(peer);
    let peer_mac = if_mac(peer);
    let cap = Capture::new(peer);
    let sock = UdpSocket::bind((PEER_IP, UDP_PORT)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // rdk → kernel: the exact frame in the capture, the payload on the UDP socket.
    let rx0 = if_stat(peer, "rx_packets");
    let payload: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
    let frame = udp_frame(peer_mac, mac, RDK_IP, PEER_IP, UDP_PORT, &payload);
    rig.send(&frame);
    let seen = cap
        .find(Duration::from_secs(5), |f| f == &frame[..])
        .expect("the peer captured the frame rdk sent, byte for byte");
    assert_eq!(seen, frame);
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).expect("kernel UDP socket got it");
    assert_eq!(&buf[..n], &payload[..]);
    assert_eq!(from, (RDK_IP, UDP_PORT).into());
    assert!(
        if_stat(peer, "rx_packets") > rx0,
        "peer rx_packets counted it"
    );

    // kernel → rdk: ARP (answered by rdk) then UDP; byte for byte against what the peer sent.
    let text: Vec<u8> = (0..300u32).map(|i| (i * 13 + 1) as u8).collect();
    sock.send_to(&text, (RDK_IP, UDP_PORT)).unwrap();
    let got = rig
        .recv(Duration::from_secs(10), |f| {
            udp_payload(f, UDP_PORT).is_some()
        })
        .expect("rdk received the kernel's UDP datagram (after answering its ARP)");
    assert_eq!(udp_payload(&got, UDP_PORT).unwrap(), &text[..]);
    assert_eq!(&got[..6], &mac, "to rdk's MAC, so ARP was answered");
    let sent = cap
        .find(Duration::from_secs(2), |f| f == &got[..])
        .expect("the frame rdk received is the one the peer sent");
    assert_eq!(sent, got);

    // Interrupt mode: arm, let the kernel send, sleep on the MSI-X eventfd, receive.
    let took = rig.receive_by_interrupt(
        &*irq,
        &sock,
        b"rdk rx interrupt over VFIO MSI-X",
        "rx interrupt",
    );
    println!("rx interrupt woke the waiter {took:?} after the kernel sent");

    let st = rig.port.stats();
    println!("rdk port stats: {st:?}");
    assert!(st.ipackets >= 2 && st.opackets >= 1, "{st:?}");
    assert_eq!(st.ierrors + st.oerrors, 0, "{st:?}");
    assert_eq!(
        iommu_fault_lines(),
        faults0,
        "no IOMMU fault: every buffer was given as a mapped IOVA"
    );

    // A restart points the MSI-X vectors at the same eventfds (VFIO_DEVICE_SET_IRQS again):
    // the handle fetched before it still wakes for the device's next interrupt.
    rig.port.stop().unwrap();
    rig.port.start().unwrap();
    rig.receive_by_interrupt(
        &*irq,
        &sock,
        b"rdk rx interrupt after a restart",
        "the handle fetched before the restart",
    );
    assert_eq!(
        iommu_fault_lines(),
        faults0,
        "no IOMMU fault after the restart"
    );
    rig.finish();
}
