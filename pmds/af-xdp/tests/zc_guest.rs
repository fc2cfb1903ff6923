//! `net_af_xdp` on a real NIC driver, inside the VM lab's QEMU guest (/work/shared/lab/vm):
//! the lab's modern virtio-net NIC (or its igb) is taken from vfio-pci, given to the guest
//! kernel's `virtio_net` (`igb`) and given back at the end (by a guard if the test fails), and
//! driven through
//! AF_XDP with rdk's program attached in native (driver) mode, against the kernel-driven peer
//! NIC on the same QEMU hub: raw 0x88b5 frames both ways, byte-exact, exact counts, every
//! mbuf back after stop and close, the program gone. One run binds as the driver allows, one
//! with `force_copy=1`.
//!
//! The bind mode is checked against what the driver advertises (`NETDEV_XDP_ACT_XSK_ZEROCOPY`
//! in its netdev XDP features): a driver that offers zero-copy must be bound zero-copy (a
//! refusal fails the test); one that does not must be reported as copy mode with that reason.
//! Linux 6.12's `virtio_net` does not offer it: its xsk receive code is there but off (no
//! feature bit; its receive queues are not premapped, which that code needs), and it has no
//! zero-copy TX (both came in 6.13). `tests/run.sh` (tier `vm`, payload `tests/vm/zc_guest.sh`)
//! therefore runs this binary twice in one boot with `--nics virtio --peer virtio`: with the
//! stock driver (the refusal is checked), then with the same 6.12 driver rebuilt with the
//! receive path switched on and [`RX_ONLY_ENV`] set (zero-copy is required; the received
//! frames must be byte-exact in the pool's mbufs; TX frames the driver never completes must
//! come back at stop, after the kernel released the pool).
//!
//! Zero-copy TX is checked on a second guest whose kernel is Debian's 6.18 (from
//! trixie-backports, unchanged), booted by `tests/run.sh` with `--nics igb,virtio --peer
//! virtio` and [`ZC_TX_ENV`] set: there both the stock `igb` (QEMU's 82576 model; AF_XDP
//! zero-copy RX and TX since Linux 6.14, `igb_xsk.c`) and the stock `virtio_net` (since 6.13)
//! must bind zero-copy and carry traffic both ways. Linux 6.12's `igb` has no zero-copy at
//! all (its XDP features are `basic | redirect`, no `igb_xsk` symbol): with [`ZC_TX_ENV`] set
//! it fails the test with that reason. Frames of 60 to 1514 bytes, and mbuf chains (which the
//! PMD copies into one UMEM buffer and sends by address too), go out from rdk's UMEM by
//! address and must reach the peer byte-exact with exact counts; then 1536 numbered 60-byte
//! frames each way, in rounds of 64, wrap every ring several times. The `force_copy=1` run is
//! left to the 6.12 boot (each XDP attach and detach resets an igb, about 3 s of TCG time).
//! The raw 0x88b5 frames carry no IP header, so the igb's RSS leaves them on queue 0.
//!
//! In both guests the kernel's own view of each bind (`xsk_diag`: the UMEM's zero-copy
//! flag; `tests/vm/zc_guest.sh` loads the module) must agree with rdk's.
//!
//! Outside the lab (`VMLAB_VIRTIO_BDF`, `VMLAB_IGB_BDF` unset) each test prints SKIPPED and
//! passes, as os-linux's `vfio_guest` does; the `vm` tier refuses a SKIPPED line.

use rdk_core::ethdev::{
    DevArgs, Port, PortConfig, RxQueue, RxQueueConfig, TxOffload, TxQueue, TxQueueConfig,
};
use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
use rdk_core::pci::PciAddr;
use rdk_os_linux::pci::{bind_to_driver, scan_one, Binding, VFIO_PCI_DRIVER};
use rdk_os_linux::{HugePageSize, IovaMode, LinuxOs, MemoryConfig, SysRoots};
use rdk_pmd_af_xdp::netlink::{self, Rtnl, XDP_FLAGS_DRV_MODE};
use rdk_pmd_af_xdp::{AfXdpDriver, BindMode};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ETHERTYPE: u16 = 0x88b5;
const FRAMES: usize = 24;
/// Set to 1 (by `tests/run.sh`) when the guest runs the lab's rebuilt Linux 6.12 `virtio_net`
/// that advertises zero-copy but, like every 6.12 `virtio_net`, sends nothing from an AF_XDP
/// socket in zero-copy mode.
const RX_ONLY_ENV: &str = "RDK_ZC_GUEST_RX_ONLY";
/// Set to 1 (by `tests/run.sh`) where the NIC's kernel driver must do zero-copy RX and TX:
/// a driver without it fails the test instead of having its refusal checked.
const ZC_TX_ENV: &str = "RDK_ZC_GUEST_ZC_TX";
/// Frames sent as mbuf chains (every fifth), three segments each.
const CHAIN_EVERY: usize = 5;

/// A lab NIC handed to a kernel driver for the test.
struct LabNic {
    /// The model's name in the lab (`VMLAB_<MODEL>_BDF`).
    model: &'static str,
    /// The PCI driver to bind the function to.
    pci_driver: &'static str,
    /// The netdev's driver, as the kernel names it.
    net_driver: &'static str,
}

/// The modern virtio-net NIC: virtio-pci binds the function, virtio_net drives the netdev.
const VIRTIO: LabNic = LabNic {
    model: "virtio",
    pci_driver: "virtio-pci",
    net_driver: "virtio_net",
};
/// QEMU's 82576 model, on the kernel's igb driver.
const IGB: LabNic = LabNic {
    model: "igb",
    pci_driver: "igb",
    net_driver: "igb",
};

/// Prints past the test harness's output capture, so a passing run shows what it saw.
fn note(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "[zc_guest] {text}");
}

/// Takes a NIC from vfio-pci to a kernel driver and gives it back when dropped, so a failing
/// test still leaves it on vfio-pci.
struct KernelNic {
    roots: SysRoots,
    binding: Option<Binding>,
}

impl KernelNic {
    fn take(addr: PciAddr, driver: &str) -> KernelNic {
        let roots = SysRoots::host();
        let binding = bind_to_driver(&roots, addr, driver)
            .unwrap_or_else(|e| panic!("bind {addr} to {driver}: {e}"));
        assert_eq!(binding.previous.as_deref(), Some(VFIO_PCI_DRIVER));
        KernelNic {
            roots,
            binding: Some(binding),
        }
    }

    /// Back to vfio-pci, checked.
    fn give_back(mut self) {
        let b = self.binding.take().expect("bound");
        b.undo(&self.roots).expect("rebind to vfio-pci");
        let now = scan_one(&self.roots, b.addr).unwrap().driver;
        assert_eq!(now.as_deref(), Some(VFIO_PCI_DRIVER), "back on vfio-pci");
        note(&format!("{} is back on {VFIO_PCI_DRIVER}", b.addr));
    }
}

impl Drop for KernelNic {
    fn drop(&mut self) {
        if let Some(b) = self.binding.take() {
            match b.undo(&self.roots) {
                Ok(()) => note(&format!("{}: given back to vfio-pci (guard)", b.addr)),
                Err(e) => note(&format!(
                    "{}: could not give it back to vfio-pci: {e}",
                    b.addr
                )),
            }
        }
    }
}

/// The netdev of PCI function `addr` once its driver made it: right under the function
/// (igb), or under its virtio device (virtio_net).
fn netdev_of(addr: PciAddr) -> String {
    let dir = Path::new("/sys/bus/pci/devices").join(addr.to_string());
    let first_in = |d: &Path| {
        std::fs::read_dir(d.join("net"))
            .ok()?
            .flatten()
            .next()
            .map(|e| e.file_name().to_string_lossy().into_owned())
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let found = first_in(&dir).or_else(|| {
            std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("virtio"))
                .find_map(|e| first_in(&e.path()))
        });
        if let Some(n) = found {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no netdev appeared under {} within 10 s", dir.display());
}

fn sysfs_net(iface: &str, what: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{what}"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn mac_of(iface: &str) -> [u8; 6] {
    let s = sysfs_net(iface, "address");
    let v: Vec<u8> = s
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    v.try_into()
        .unwrap_or_else(|_| panic!("MAC of {iface}: {s:?}"))
}

fn ifindex_of(iface: &str) -> u32 {
    sysfs_net(iface, "ifindex")
        .parse()
        .unwrap_or_else(|_| panic!("ifindex of {iface}"))
}

fn sh(cmd: &[&str]) {
    let st = Command::new(cmd[0]).args(&cmd[1..]).status();
    assert!(st.is_ok_and(|s| s.success()), "{cmd:?}");
}

/// Up, with IPv6 off so the kernel puts nothing of its own on the wire.
fn quiet_up(iface: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1");
    sh(&["ip", "link", "set", "dev", iface, "up"]);
    let t0 = Instant::now();
    while sysfs_net(iface, "carrier") != "1" && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sysfs_net(iface, "carrier"), "1", "{iface} has no carrier");
}

/// The kernel log lines that mention `iface`, XDP or AF_XDP, from line `from` on.
fn kernel_lines(iface: &str, from: usize) -> (Vec<String>, usize) {
    let out = Command::new("dmesg")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let all: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect();
    let n = all.len();
    let hits = all
        .into_iter()
        .skip(from)
        .filter(|l| {
            let l2 = l.to_ascii_lowercase();
            l.contains(iface)
                || ["xdp", "xsk", "virtio", "igb"]
                    .iter()
                    .any(|w| l2.contains(w))
        })
        .collect();
    (hits, n)
}

/// An AF_PACKET socket on the peer for frames of one EtherType (0x88b5 unless said).
struct PeerSock {
    fd: OwnedFd,
    ifindex: i32,
    ethertype: u16,
}

impl PeerSock {
    fn open(iface: &str) -> PeerSock {
        Self::open_for(iface, ETHERTYPE)
    }

    fn open_for(iface: &str, ethertype: u16) -> PeerSock {
        let proto = ethertype.to_be() as libc::c_int;
        // SAFETY: socket(2) with constant arguments; the fd is owned right away.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        assert!(
            raw >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fresh descriptor, ours.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ifindex = ifindex_of(iface) as i32;
        let sll = sockaddr_ll(ifindex, [0; 6], ethertype);
        // SAFETY: a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        nix::sys::socket::setsockopt(
            &fd,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, 100_000),
        )
        .expect("SO_RCVTIMEO on the peer's AF_PACKET socket");
        PeerSock {
            fd,
            ifindex,
            ethertype,
        }
    }

    fn send(&self, frame: &[u8]) {
        let sll = sockaddr_ll(self.ifindex, frame[..6].try_into().unwrap(), self.ethertype);
        // SAFETY: our buffer and a valid sockaddr_ll; the kernel only reads them.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "peer send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Frames that arrived (not the peer's own): until `idle` passes without one, or
    /// `linger` after the `want`-th (to catch extras).
    fn receive(&self, want: usize, idle: Duration, linger: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut deadline = Instant::now() + idle;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            // SAFETY: all-zero is a valid sockaddr_ll, overwritten by the kernel.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: the kernel writes at most buf.len() bytes and a sockaddr_ll.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut flen,
                )
            };
            if n < 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue; // a receive-timeout tick, or the peer's own frame
            }
            got.push(buf[..n as usize].to_vec());
            deadline = Instant::now() + if got.len() >= want { linger } else { idle };
        }
        got
    }
}

fn sockaddr_ll(ifindex: i32, dst: [u8; 6], ethertype: u16) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut s: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    s.sll_family = libc::AF_PACKET as u16;
    s.sll_protocol = ethertype.to_be();
    s.sll_ifindex = ifindex;
    s.sll_halen = 6;
    s.sll_addr[..6].copy_from_slice(&dst);
    s
}

/// Frame `i` from `src` to `dst`: EtherType 0x88b5, 46 to 1500 bytes of payload that differ
/// per frame and per direction (`tag`).
fn frame(dst: [u8; 6], src: [u8; 6], tag: u8, i: usize) -> Vec<u8> {
    let len = [46usize, 64, 200, 777, 1024, 1500][i % 6];
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.push(tag);
    f.push(i as u8);
    f.extend((0..len - 2).map(|b| (b as u8).wrapping_mul(31) ^ (i as u8) ^ tag));
    f
}

fn pool(name: &str, n: usize) -> PktMbufPool {
    // Hugepage-backed, as a zero-copy user would run it: a UMEM chunk may cross a 4 KiB page,
    // and a zero-copy driver accepts that only where the pages are DMA-contiguous.
    let os = LinuxOs::new(MemoryConfig::memfd(HugePageSize::Size2M, IovaMode::Va))
        .expect("2 MiB hugepages (the lab's /init reserves 16)");
    PktMbufPool::create(&os, &PktMbufPoolConfig::new(name, n)).unwrap()
}

fn xstat(port: &Port<AfXdpDriver>, name: &str) -> u64 {
    port.xstats()
        .into_iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .value
}

/// Says what the port and the interface counted (before a failing assertion, and after
/// each run).
fn diagnose(port: &Port<AfXdpDriver>, iface: &str) {
    for x in port.xstats() {
        if x.value != 0 {
            note(&format!("xstat {} = {}", x.name, x.value));
        }
    }
    for c in [
        "rx_packets",
        "rx_dropped",
        "rx_length_errors",
        "tx_packets",
        "tx_dropped",
    ] {
        let v = sysfs_net(iface, &format!("statistics/{c}"));
        note(&format!("{iface} {c} = {v}"));
    }
}

/// What `port` receives: until `want` arrived (or 5 s passed), then for `linger` more (to
/// catch extras).
fn rdk_receive(port: &mut Port<AfXdpDriver>, want: usize, linger: Duration) -> Vec<Mbuf> {
    let mut rx: Vec<Mbuf> = Vec::new();
    let mut burst: [Option<Mbuf>; 32] = Default::default();
    let mut poll = |rx: &mut Vec<Mbuf>| {
        let n = port.queues().unwrap().rx[0].rx_burst(&mut burst);
        rx.extend(burst[..n].iter_mut().filter_map(Option::take));
        n
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) && rx.len() < want {
        if poll(&mut rx) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if !linger.is_zero() {
        std::thread::sleep(linger);
        poll(&mut rx);
    }
    rx
}

/// Sends `frames` from the peer and checks that `port` receives exactly them, byte-exact and
/// in order, in mbufs of `pool` at the usual data offset.
fn peer_to_rdk(
    port: &mut Port<AfXdpDriver>,
    pool: &PktMbufPool,
    psock: &PeerSock,
    frames: &[Vec<u8>],
    iface: &str,
) {
    for f in frames {
        psock.send(f);
    }
    let rx = rdk_receive(port, frames.len(), Duration::from_millis(300));
    let got: Vec<Vec<u8>> = rx.iter().map(|m| m.data().to_vec()).collect();
    note(&format!(
        "peer -> rdk: sent {}, rdk received {}",
        frames.len(),
        got.len()
    ));
    if got.len() != frames.len() {
        diagnose(port, iface);
    }
    assert_eq!(got.len(), frames.len(), "exact count at rdk");
    assert!(got == frames, "byte-exact at rdk, in order");
    for m in &rx {
        assert!(pool.owns(m), "received into an mbuf of the rx pool");
        assert_eq!(m.data_off(), 128, "at the usual data offset");
    }
}

/// Whether frame `i` is sent as a chain of three mbufs.
fn chained(i: usize) -> bool {
    i % CHAIN_EVERY == CHAIN_EVERY - 1
}

/// Frame `f` in one mbuf of `pool`, or in a chain of three if `chain`.
fn mbuf_of(pool: &PktMbufPool, f: &[u8], chain: bool) -> Mbuf {
    let seg = |bytes: &[u8]| {
        let mut m = pool.alloc().expect("a free mbuf");
        m.append(bytes.len() as u16).unwrap().copy_from_slice(bytes);
        m
    };
    if !chain {
        return seg(f);
    }
    let (a, rest) = f.split_at(14);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut m = seg(a);
    m.chain(seg(b)).unwrap();
    m.chain(seg(c)).unwrap();
    assert_eq!((m.nb_segs(), m.pkt_len() as usize), (3, f.len()));
    m
}

/// Queues `frames` on `port`'s TX queue 0 (mbufs of `pool`, 8 per burst, every
/// [`CHAIN_EVERY`]th a chain); how many it took.
fn send_all(port: &mut Port<AfXdpDriver>, pool: &PktMbufPool, frames: &[Vec<u8>]) -> usize {
    let mut sent = 0;
    let t0 = Instant::now();
    while sent < frames.len() && t0.elapsed() < Duration::from_secs(5) {
        let mut burst: Vec<Option<Mbuf>> = frames[sent..]
            .iter()
            .take(8)
            .enumerate()
            .map(|(k, f)| Some(mbuf_of(pool, f, chained(sent + k))))
            .collect();
        let n = port.queues().unwrap().tx[0].tx_burst(&mut burst);
        sent += n;
        drop(burst); // the ones not taken go back to the pool
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    sent
}

/// TX checksum offloads: UDP datagrams asking for their IPv4 and UDP checksums (both fields
/// holding only zero / the pseudo-header sum) reach the peer's raw IPv4 socket with both
/// right, whichever way the port does them (TX metadata to the kernel or device, or rdk in
/// software; noted).
fn checksums_offloaded(
    port: &mut Port<AfXdpDriver>,
    pool: &PktMbufPool,
    peer: &str,
    (rdk_mac, peer_mac): ([u8; 6], [u8; 6]),
) {
    use rdk_core::mbuf::{OlFlags, RxCksum};
    use rdk_core::net::checksum::{fold, pseudo_header, verify_frame_checksums};
    let psock = PeerSock::open_for(peer, 0x0800);
    let (src, dst) = ([10u8, 0, 0, 1], [10u8, 0, 0, 2]);
    let datagram = |i: usize| {
        let payload: Vec<u8> = (0..18 + 333 * i).map(|b| (b * 7 + i) as u8).collect();
        let mut f = peer_mac.to_vec();
        f.extend_from_slice(&rdk_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (28 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let udp_len = total - 20;
        let seed = fold(pseudo_header(src.into(), dst.into(), 17, udp_len));
        f.extend_from_slice(&[0x13, 0x88, 0x27, 0x0f]);
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&seed.to_be_bytes());
        f.extend_from_slice(&payload);
        f
    };
    let frames: Vec<Vec<u8>> = (0..4).map(datagram).collect();
    let mut burst: Vec<Option<Mbuf>> = frames
        .iter()
        .map(|f| {
            let mut m = mbuf_of(pool, f, false);
            {
                let mut meta = m.meta_mut().unwrap();
                meta.set_ol_flags(OlFlags::TX_IPV4 | OlFlags::TX_IP_CKSUM | OlFlags::TX_UDP_CKSUM);
                let mut t = meta.tx_offload();
                t.set_l2_len(14).unwrap();
                t.set_l3_len(20).unwrap();
                meta.set_tx_offload(t);
            }
            Some(m)
        })
        .collect();
    assert_eq!(
        port.queues().unwrap().tx[0].tx_burst(&mut burst),
        frames.len()
    );
    // Only ours (UDP 5000 -> 9999): the peer's stack may see other IPv4 frames.
    let got: Vec<Vec<u8>> = psock
        .receive(
            frames.len(),
            Duration::from_secs(3),
            Duration::from_millis(300),
        )
        .into_iter()
        .filter(|g| g.len() >= 42 && g[34..38] == [0x13, 0x88, 0x27, 0x0f])
        .collect();
    assert_eq!(reap_tx(port), 0, "every offloaded frame was completed");
    let by_kernel = port.driver().tx_checksum_by_kernel();
    note(&format!(
        "checksum offload: {} ({} in software); peer received {} of {}",
        match by_kernel {
            Some(true) => "TX metadata",
            Some(false) => "rdk",
            None => "none",
        },
        xstat(port, "tx_checksums_in_software"),
        got.len(),
        frames.len()
    ));
    assert_eq!(
        got.len(),
        frames.len(),
        "every offloaded datagram at the peer"
    );
    for (g, f) in got.iter().zip(&frames) {
        note(&format!(
            "  {} bytes: checksums {:?}, IPv4 field {:02x?}, UDP field {:02x?} (sent {:02x?})",
            g.len(),
            verify_frame_checksums(g),
            &g[24..26],
            &g[40..42],
            &f[40..42]
        ));
        assert_eq!(
            verify_frame_checksums(g),
            (RxCksum::Good, RxCksum::Good),
            "both checksums completed"
        );
        assert_eq!(&g[42..], &f[42..], "payload byte-exact");
    }
    let want_sw = if by_kernel == Some(false) {
        frames.len() as u64
    } else {
        0
    };
    assert_eq!(xstat(port, "tx_checksums_in_software"), want_sw);
}

/// Frames per direction in [`bulk`], and per round.
const BULK: usize = 1536;
const BULK_ROUND: usize = 64;

/// [`BULK`] short frames each way in rounds of [`BULK_ROUND`] (the next round only once the
/// last arrived whole, so no socket overflows): every ring of the socket and of the NIC
/// wraps several times, in both directions, with completions and fill-ring refills in
/// between. Each frame carries its number; every one must arrive byte-exact, in order. Every
/// [`CHAIN_EVERY`]th frame rdk sends is a chain, as in [`send_all`].
fn bulk(
    port: &mut Port<AfXdpDriver>,
    pool: &PktMbufPool,
    psock: &PeerSock,
    macs: ([u8; 6], [u8; 6]),
    iface: &str,
) {
    let (rdk_mac, peer_mac) = macs;
    let short = |dst: [u8; 6], src: [u8; 6], n: usize| {
        let mut f = frame(dst, src, 0x3c, 0);
        f.truncate(60);
        f[14..18].copy_from_slice(&(n as u32).to_be_bytes());
        f
    };
    let (mut into_rdk, mut into_peer) = (0, 0);
    for r in 0..BULK / BULK_ROUND {
        let inn: Vec<Vec<u8>> = (0..BULK_ROUND)
            .map(|k| short(rdk_mac, peer_mac, r * BULK_ROUND + k))
            .collect();
        for f in &inn {
            psock.send(f);
        }
        let rx = rdk_receive(port, inn.len(), Duration::ZERO);
        let got: Vec<Vec<u8>> = rx.iter().map(|m| m.data().to_vec()).collect();
        drop(rx);
        if got != inn {
            diagnose(port, iface);
        }
        assert_eq!(got.len(), inn.len(), "bulk round {r}: exact count at rdk");
        assert!(got == inn, "bulk round {r}: byte-exact at rdk, in order");
        into_rdk += got.len();

        let out: Vec<Vec<u8>> = (0..BULK_ROUND)
            .map(|k| short(peer_mac, rdk_mac, r * BULK_ROUND + k))
            .collect();
        assert_eq!(
            send_all(port, pool, &out),
            out.len(),
            "bulk round {r}: queued"
        );
        let got = psock.receive(out.len(), Duration::from_secs(3), Duration::ZERO);
        if got != out {
            diagnose(port, iface);
        }
        assert_eq!(
            got.len(),
            out.len(),
            "bulk round {r}: exact count at the peer"
        );
        assert!(
            got == out,
            "bulk round {r}: byte-exact at the peer, in order"
        );
        into_peer += got.len();
    }
    // Nothing more in either direction.
    assert!(rdk_receive(port, 0, Duration::from_millis(200)).is_empty());
    assert!(psock
        .receive(0, Duration::from_millis(200), Duration::ZERO)
        .is_empty());
    note(&format!(
        "bulk: peer -> rdk {into_rdk} of {BULK}, rdk -> peer {into_peer} of {BULK} \
         (60-byte frames, rounds of {BULK_ROUND}), byte-exact"
    ));
}

/// Reaps the completion ring with empty bursts (a driver frees sent frames a little later)
/// until nothing is in flight or a second passed; what is still in flight.
fn reap_tx(port: &mut Port<AfXdpDriver>) -> u32 {
    let q = &mut port.queues().unwrap().tx[0];
    let t0 = Instant::now();
    while q.in_flight() > 0 && t0.elapsed() < Duration::from_secs(1) {
        q.tx_burst(&mut []);
        std::thread::sleep(Duration::from_millis(1));
    }
    q.in_flight()
}

/// What one run (one devargs string) must show.
enum Expect {
    /// Zero-copy; `tx`: the driver also sends zero-copy frames.
    ZeroCopy { tx: bool },
    /// Copy mode, with a reason containing this.
    Copy(&'static str),
}

/// The kernel's view of the socket bound to queue 0 of `ifindex` (`xsk_diag`): whether its
/// UMEM is zero-copy; `None` where the kernel has no `xsk_diag`.
fn kernel_zero_copy(ifindex: u32) -> Option<bool> {
    match netlink::xsk_sockets() {
        Ok(all) => {
            let d = all
                .iter()
                .find(|d| d.ifindex == ifindex && d.queue_id == 0)
                .unwrap_or_else(|| panic!("xsk_diag lists no socket on {ifindex}/0: {all:?}"));
            Some(d.zero_copy)
        }
        Err(nix::errno::Errno::ENOENT) => None,
        Err(e) => panic!("xsk_diag dump: {e}"),
    }
}

/// One port on `iface` (driven by `nic`): bind mode, program mode, traffic both ways, clean
/// stop and close.
fn run(nic: &LabNic, iface: &str, peer: &str, devargs: &str, expect: Expect, log_from: &mut usize) {
    note(&format!("--- {devargs}"));
    let pool = pool(&format!("zc{}", devargs.len()), 1024);
    let drv = AfXdpDriver::from_devargs(&DevArgs::parse(devargs).unwrap()).unwrap();
    let mut port = Port::new(0, drv);
    let mut cfg = PortConfig::queues(1, 1);
    cfg.tx_offloads = TxOffload::IPV4_CKSUM | TxOffload::UDP_CKSUM;
    port.configure(&cfg).unwrap();
    port.rx_queue_setup(0, 512, &pool, &RxQueueConfig::default())
        .unwrap();
    port.tx_queue_setup(0, 512, &TxQueueConfig::default())
        .unwrap();
    let started = port.start();
    let (lines, n) = kernel_lines(iface, *log_from);
    *log_from = n;
    for l in &lines {
        note(&format!("kernel: {l}"));
    }
    started.unwrap_or_else(|e| panic!("start: {e}; {:?}", port.driver().last_error()));
    let mode = port.driver().bind_mode().clone();
    note(&format!("bind mode: {mode:?}"));
    match (&expect, &mode) {
        (Expect::ZeroCopy { .. }, BindMode::ZeroCopy) => {}
        (Expect::Copy(why), BindMode::Copy { reason }) if reason.contains(why) => {}
        (Expect::ZeroCopy { .. }, BindMode::Copy { reason }) => {
            panic!("the driver offers zero-copy but the bind fell back to copy mode: {reason}")
        }
        _ => panic!("unexpected bind mode {mode:?}"),
    }
    assert_eq!(
        xstat(&port, "zero_copy"),
        matches!(mode, BindMode::ZeroCopy) as u64,
        "the zero_copy xstat agrees"
    );
    let ifindex = ifindex_of(iface);
    match kernel_zero_copy(ifindex) {
        Some(zc) => {
            note(&format!(
                "kernel view (xsk_diag): {iface} queue 0 umem {}",
                if zc { "zero-copy" } else { "copy" }
            ));
            assert_eq!(
                zc,
                matches!(mode, BindMode::ZeroCopy),
                "the kernel's view of the bind agrees with rdk's"
            );
        }
        None if std::env::var(ZC_TX_ENV).is_ok_and(|v| v == "1") => {
            panic!("{ZC_TX_ENV}=1 but the kernel has no xsk_diag (tests/vm/zc_guest.sh loads it)")
        }
        None => note("kernel view: no xsk_diag in this guest"),
    }
    let mut rtnl = Rtnl::open().unwrap();
    let att = rtnl.query(ifindex).unwrap();
    assert_ne!(att.prog_id, 0, "rdk's program is attached");
    assert_eq!(
        att.mode, XDP_FLAGS_DRV_MODE,
        "native (driver) mode on {}",
        nic.net_driver
    );

    let (rdk_mac, peer_mac) = (mac_of(iface), mac_of(peer));
    let psock = PeerSock::open(peer);

    // peer -> rdk.
    let inn: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| frame(rdk_mac, peer_mac, 0x5e, i))
        .collect();
    peer_to_rdk(&mut port, &pool, &psock, &inn, iface);
    assert_eq!(port.stats().ipackets, inn.len() as u64);

    // rdk -> peer.
    let out: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| frame(peer_mac, rdk_mac, 0xa0, i))
        .collect();
    let sent = send_all(&mut port, &pool, &out);
    assert_eq!(sent, out.len(), "rdk queued every frame");
    let got = psock.receive(
        out.len(),
        Duration::from_secs(3),
        Duration::from_millis(300),
    );
    let in_flight = reap_tx(&mut port);
    note(&format!(
        "rdk -> peer: sent {}, peer received {}, {in_flight} not completed by the kernel",
        out.len(),
        got.len()
    ));
    if matches!(expect, Expect::ZeroCopy { tx: false }) {
        // The driver takes zero-copy TX descriptors and never sends them: what is checked
        // is that those mbufs come back at stop, after the kernel released the pool.
        note("zero-copy TX is not in this driver: delivery not checked, only the release");
    } else {
        assert_eq!(in_flight, 0, "every frame sent was completed");
        if got.len() != out.len() {
            diagnose(&port, iface);
        }
        assert_eq!(got.len(), out.len(), "exact count at the peer");
        assert!(got == out, "byte-exact at the peer, in order");
        assert_eq!(port.stats().opackets, out.len() as u64);
        let chains = (0..out.len()).filter(|&i| chained(i)).count() as u64;
        assert_eq!(
            xstat(&port, "tx_copied"),
            chains,
            "sent by address from the UMEM pool (the chains once copied into one buffer)"
        );
        if matches!(expect, Expect::ZeroCopy { tx: true }) {
            bulk(&mut port, &pool, &psock, (rdk_mac, peer_mac), iface);
            assert_eq!(reap_tx(&mut port), 0, "every bulk frame was completed");
            let st = port.stats();
            let want = (inn.len() + BULK) as u64;
            assert_eq!((st.ipackets, st.opackets), (want, want), "port counts");
            let bulk_chains = BULK / BULK_ROUND * (0..BULK_ROUND).filter(|&i| chained(i)).count();
            assert_eq!(
                xstat(&port, "tx_copied"),
                chains + bulk_chains as u64,
                "bulk sent by address but for its chains"
            );
        }
    }

    if !matches!(expect, Expect::ZeroCopy { tx: false }) {
        checksums_offloaded(&mut port, &pool, peer, (rdk_mac, peer_mac));
    }

    diagnose(&port, iface);
    for bad in [
        "rx_bad_descs",
        "rx_kernel_invalid_descs",
        "tx_kernel_invalid_descs",
        "tx_bad_completions",
        "rx_ring_anomalies",
        "tx_ring_anomalies",
    ] {
        assert_eq!(xstat(&port, bad), 0, "{bad}");
    }
    port.stop().unwrap();
    assert_eq!(
        rtnl.query(ifindex).unwrap().prog_id,
        0,
        "stop detaches the program"
    );
    assert_eq!(pool.available(), pool.size(), "every mbuf back after stop");
    // A restart binds the queue again (once the kernel released the old socket's pool).
    port.start().unwrap();
    assert_eq!(
        port.driver().bind_mode(),
        &mode,
        "the same bind mode after a restart"
    );
    let again: Vec<Vec<u8>> = (0..4).map(|i| frame(rdk_mac, peer_mac, 0x77, i)).collect();
    peer_to_rdk(&mut port, &pool, &psock, &again, iface);
    port.stop().unwrap();
    assert_eq!(
        pool.available(),
        pool.size(),
        "every mbuf back after the second stop"
    );
    port.close().unwrap();
    assert_eq!(pool.available(), pool.size(), "every mbuf back after close");
    assert_eq!(rtnl.query(ifindex).unwrap().prog_id, 0);
    let (lines, n) = kernel_lines(iface, *log_from);
    *log_from = n;
    for l in &lines {
        note(&format!("kernel: {l}"));
    }
}

/// Takes the lab's `nic` from vfio-pci to its kernel driver and runs the port on it: bound
/// as the driver allows (what is expected is decided from the driver's XDP features and the
/// environment), then with `force_copy=1`.
fn check_nic(nic: &LabNic) {
    let var = format!("VMLAB_{}_BDF", nic.model.to_ascii_uppercase());
    let bdf = std::env::var(&var)
        .ok()
        .and_then(|s| s.parse::<PciAddr>().ok());
    let peer = std::env::var("VMLAB_PEER_IF")
        .ok()
        .filter(|s| !s.is_empty());
    let (Some(bdf), Some(peer)) = (bdf, peer) else {
        note(&format!(
            "SKIPPED: not in a VM lab boot with the {} lab NIC ({var} or VMLAB_PEER_IF unset); \
             `STEPS=vm bash tests/run.sh` boots the guest and runs it there",
            nic.model
        ));
        return;
    };
    let (_, mut log_from) = kernel_lines("-", 0);
    if !Path::new("/sys/bus/pci/drivers")
        .join(nic.pci_driver)
        .exists()
    {
        // A lab NIC's driver is loaded only for a peer of the same model.
        sh(&["modprobe", nic.net_driver]);
    }
    let taken = KernelNic::take(bdf, nic.pci_driver);
    let iface = netdev_of(bdf);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = kernel.trim();
    note(&format!(
        "{bdf} is {iface} on {} (kernel {kernel}); peer {peer}",
        nic.net_driver
    ));
    quiet_up(&peer);
    quiet_up(&iface);
    let features = netlink::xdp_features(ifindex_of(&iface)).expect("netdev dev-get");
    let offers_zc = features & netlink::NETDEV_XDP_ACT_XSK_ZEROCOPY != 0;
    note(&format!(
        "{iface}: xdp-features {features:#x}, xsk-zerocopy {}",
        if offers_zc { "offered" } else { "NOT offered" }
    ));
    let rx_only = std::env::var(RX_ONLY_ENV).is_ok_and(|v| v == "1");
    let zc_tx = std::env::var(ZC_TX_ENV).is_ok_and(|v| v == "1");
    let expect = match (offers_zc, rx_only) {
        (true, false) => Expect::ZeroCopy { tx: true },
        (true, true) => {
            note(&format!(
                "{RX_ONLY_ENV}=1: this {} is tests/run.sh's Linux 6.12 build with zero-copy \
                 RX and no zero-copy TX",
                nic.net_driver
            ));
            Expect::ZeroCopy { tx: false }
        }
        (false, true) => panic!(
            "{RX_ONLY_ENV}=1 but {iface}'s driver does not advertise xsk-zerocopy: the \
             rebuilt {} is not the one loaded",
            nic.net_driver
        ),
        (false, false) if zc_tx => panic!(
            "{ZC_TX_ENV}=1 but {iface}'s driver ({} of kernel {kernel}) does not advertise \
             xsk-zerocopy (xdp-features {features:#x}); igb has it from Linux 6.14 on, \
             virtio_net from 6.13",
            nic.net_driver
        ),
        (false, false) => {
            note(&format!(
                "zero-copy cannot be exercised with this guest kernel's {} ({kernel}): it \
                 does not advertise xsk-zerocopy; checking the refusal instead",
                nic.net_driver
            ));
            Expect::Copy("does not offer AF_XDP zero-copy")
        }
    };
    if zc_tx {
        assert!(
            matches!(expect, Expect::ZeroCopy { tx: true }),
            "{ZC_TX_ENV}=1 and {RX_ONLY_ENV}=1 contradict each other"
        );
    }
    let auto = format!("net_af_xdp0,iface={iface},start_queue=0,queue_count=1");
    run(nic, &iface, &peer, &auto, expect, &mut log_from);
    // Copy mode on every boot: on 6.18 it is where the kernel (not rdk) completes checksums
    // from TX metadata, which 6.12's virtio_net ignores.
    run(
        nic,
        &iface,
        &peer,
        &format!("{auto},force_copy=1"),
        Expect::Copy("force_copy=1"),
        &mut log_from,
    );
    taken.give_back();
}

#[test]
fn zc_guest_virtio_net_af_xdp_bind_modes_and_traffic() {
    check_nic(&VIRTIO);
}

#[test]
fn zc_guest_igb_af_xdp_zero_copy_tx_and_rx() {
    check_nic(&IGB);
}
