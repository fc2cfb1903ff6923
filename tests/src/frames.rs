//! Test frames and the small Python peers that send and receive them in a namespace.
//!
//! Python's standard library is the kernel-side peer: a UDP socket is the real IP stack, an
//! `AF_PACKET` socket a raw capture. Each script takes its arguments from `sys.argv`.

/// The RFC 1071 checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + UDP frame with correct checksums.
pub fn ipv4_udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&src_ip);
    ip.extend_from_slice(&dst_ip);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src_ip);
    pseudo.extend_from_slice(&dst_ip);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let c = match checksum(&pseudo) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// The TCP header fields [`tcp_frame`] writes (20 bytes, no options).
#[derive(Clone, Copy, Debug)]
pub struct TcpHdr {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
}

/// An Ethernet + IPv4 or IPv6 + TCP frame with correct checksums (window 65535, no
/// options), from `src` to `dst` (both of one family).
pub fn tcp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    tcp: &TcpHdr,
    payload: &[u8],
) -> Vec<u8> {
    use std::net::IpAddr::{V4, V6};
    let seg_len = 20 + payload.len();
    let mut f = Vec::with_capacity(14 + 40 + seg_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    let mut pseudo = Vec::new();
    match (src, dst) {
        (V4(s), V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
            f[16..18].copy_from_slice(&((20 + seg_len) as u16).to_be_bytes());
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            let c = checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&(seg_len as u16).to_be_bytes());
        }
        (V6(s), V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(seg_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(seg_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
        }
        _ => panic!("tcp_frame: {src} and {dst} are of different families"),
    }
    let l4 = f.len();
    f.extend_from_slice(&tcp.sport.to_be_bytes());
    f.extend_from_slice(&tcp.dport.to_be_bytes());
    f.extend_from_slice(&tcp.seq.to_be_bytes());
    f.extend_from_slice(&tcp.ack.to_be_bytes());
    f.extend_from_slice(&[5 << 4, tcp.flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    pseudo.extend_from_slice(&f[l4..]);
    let c = checksum(&pseudo);
    f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    f
}

/// `(source port, seq, ack, flags)` of `frame` if it is IPv4 or IPv6 TCP to `dport` with
/// valid checksums (IPv6: no extension headers).
pub fn tcp_of(frame: &[u8], dport: u16) -> Option<(u16, u32, u32, u8)> {
    let (t, mut pseudo) = match frame.get(12..14)? {
        [0x08, 0x00] => {
            if frame.len() < 54 || frame[14] != 0x45 || frame[23] != 6 {
                return None;
            }
            let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
            if checksum(&frame[14..34]) != 0 || total < 40 || 14 + total > frame.len() {
                return None;
            }
            let t = &frame[34..14 + total];
            let mut p = frame[26..34].to_vec();
            p.extend_from_slice(&[0, 6]);
            p.extend_from_slice(&(t.len() as u16).to_be_bytes());
            (t, p)
        }
        [0x86, 0xdd] => {
            if frame.len() < 74 || frame[14] >> 4 != 6 || frame[20] != 6 {
                return None;
            }
            let len = u16::from_be_bytes([frame[18], frame[19]]) as usize;
            if len < 20 || 54 + len > frame.len() {
                return None;
            }
            let t = &frame[54..54 + len];
            let mut p = frame[22..54].to_vec();
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 6]);
            (t, p)
        }
        _ => return None,
    };
    pseudo.extend_from_slice(t);
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (checksum(&pseudo) == 0 && u16::from_be_bytes([t[2], t[3]]) == dport).then(|| {
        (
            u16::from_be_bytes([t[0], t[1]]),
            be32(&t[4..8]),
            be32(&t[8..12]),
            t[13],
        )
    })
}

/// The payload of `frame` if it is IPv4/UDP to `dport` with a valid UDP checksum.
pub fn udp_payload(frame: &[u8], dport: u16) -> Option<Vec<u8>> {
    udp_payload_checked(frame, dport, true)
}

/// The UDP payload to `dport` of a received packet, checking the checksum unless the port
/// said the field is not a full checksum but the data is intact (`RxCksum::Verified`: a
/// local sender with checksum offload, as across a veth).
pub fn udp_payload_of(m: &rdk_core::mbuf::Mbuf, dport: u16) -> Option<Vec<u8>> {
    let verified = m.ol_flags().rx_l4_cksum() == rdk_core::mbuf::RxCksum::Verified;
    udp_payload_checked(&flatten(m), dport, !verified)
}

/// Asserts that `frames` hold one UDP datagram to `dport` for each source port in `sports`,
/// each carrying its source port (big-endian) as its payload, none twice and nothing else:
/// the flow tests send one such datagram per flow.
pub fn assert_each_flow_once(
    frames: &[rdk_core::mbuf::Mbuf],
    dport: u16,
    sports: std::ops::Range<u16>,
) {
    let mut got: Vec<Vec<u8>> = frames
        .iter()
        .filter_map(|m| udp_payload_of(m, dport))
        .collect();
    got.sort();
    let want: Vec<Vec<u8>> = sports.map(|s| s.to_be_bytes().to_vec()).collect();
    assert_eq!(got, want, "each flow once");
}

fn udp_payload_checked(frame: &[u8], dport: u16, verify: bool) -> Option<Vec<u8>> {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
        return None;
    }
    let ihl = (frame[14] & 0x0f) as usize * 4;
    let udp = frame.get(14 + ihl..)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != dport {
        return None;
    }
    let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    let udp = udp.get(..len)?;
    if verify && udp[6..8] != [0, 0] {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&frame[26..34]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(len as u16).to_be_bytes());
        pseudo.extend_from_slice(udp);
        if checksum(&pseudo) != 0 {
            return None;
        }
    }
    Some(udp[8..].to_vec())
}

/// `python3 -c PY_UDP_SEND IP PORT HEX [SPORT]`: one datagram with the hex payload.
pub const PY_UDP_SEND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if len(sys.argv) > 4:
    s.bind(("0.0.0.0", int(sys.argv[4])))
s.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))
"#;

/// `python3 -c PY_UDP_RECV IP PORT TIMEOUT [hex]`: prints `ready` once bound, then the first
/// datagram (as text, or hex). Start it with [`Peer::start`].
pub const PY_UDP_RECV: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
d, _ = s.recvfrom(65535)
print(d.hex() if len(sys.argv) > 4 else d.decode(errors="replace"))
"#;

/// `python3 -c PY_UDP_RECV_ALL IP PORT TIMEOUT`: prints `ready`, then each datagram received
/// (hex, one per line) until TIMEOUT seconds pass without one. Start it with [`Peer::start`].
pub const PY_UDP_RECV_ALL: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    while True:
        d, _ = s.recvfrom(65535)
        print(d.hex(), flush=True)
except socket.timeout:
    pass
"#;

/// `python3 -c PY_TCP_RECV IP PORT BYTES TIMEOUT`: listens, prints `ready`, accepts one
/// connection and prints (hex, one line) what it reads from it until BYTES arrived, the peer
/// closed, or TIMEOUT seconds passed without data. Start it with [`Peer::start`].
pub const PY_TCP_RECV: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(float(sys.argv[4]))
print("ready", flush=True)
got = b""
try:
    c, _ = s.accept()
    c.settimeout(float(sys.argv[4]))
    while len(got) < int(sys.argv[3]):
        d = c.recv(1 << 20)
        if not d:
            break
        got += d
except socket.timeout:
    pass
print(got.hex(), flush=True)
"#;

/// `python3 -c PY_RAW_CAPTURE IFACE COUNT TIMEOUT`: prints `ready` once bound, then, one hex
/// line each, the first COUNT frames of ethertype 0x88b5 received on IFACE. Start it with
/// [`Peer::start`].
pub const PY_RAW_CAPTURE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((sys.argv[1], 0))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    d = s.recv(65535)
    print(d.hex(), flush=True)
"#;

/// A Python peer that prints `ready` when its socket is bound (so nothing is sent before it
/// listens, however slow the machine), then its results.
pub struct Peer {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Peer {
    /// Spawns `cmd` with its stdout piped and waits for its `ready` line.
    pub fn start(mut cmd: std::process::Command) -> Peer {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the peer");
        let out = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(out).lines();
        match lines.next() {
            Some(Ok(l)) if l == "ready" => Peer { child, lines },
            other => panic!("the peer did not get ready: {other:?}"),
        }
    }

    /// Starts `python3 -c script args…` inside `ns` (one of the scripts above) and waits
    /// for its `ready` line.
    pub fn python(ns: &crate::netns::Netns, script: &str, args: &[&str]) -> Peer {
        let mut cmd = ns.command("python3");
        cmd.arg("-c").arg(script).args(args);
        Peer::start(cmd)
    }

    /// Waits for the peer to exit and returns what it printed after `ready`.
    pub fn finish(mut self) -> Vec<String> {
        let out: Vec<String> = self.lines.by_ref().map_while(Result::ok).collect();
        let _ = self.child.wait();
        out
    }
}

/// The bytes of a whole packet, across its segments.
pub fn flatten(m: &rdk_core::mbuf::Mbuf) -> Vec<u8> {
    m.segments().flat_map(|s| s.data().to_vec()).collect()
}

/// A one-segment mbuf holding `bytes`.
pub fn mbuf_of(pool: &rdk_core::mbuf::PktMbufPool, bytes: &[u8]) -> rdk_core::mbuf::Mbuf {
    let mut m = pool.alloc().expect("a free mbuf");
    m.append(bytes.len() as u16)
        .expect("the frame fits one buffer")
        .copy_from_slice(bytes);
    m
}

/// A chain of mbufs holding `bytes`, `seg` bytes per segment.
pub fn chain_of(
    pool: &rdk_core::mbuf::PktMbufPool,
    bytes: &[u8],
    seg: usize,
) -> rdk_core::mbuf::Mbuf {
    let mut chunks = bytes.chunks(seg.max(1));
    let mut head = mbuf_of(pool, chunks.next().unwrap_or(&[]));
    for c in chunks {
        head.chain(mbuf_of(pool, c))
            .expect("a chain of few segments");
    }
    head
}

/// Polls every receive queue of `port` until `want` packets arrived or `timeout` passed.
pub fn receive<D: rdk_core::ethdev::Driver>(
    port: &mut rdk_core::ethdev::Port<D>,
    want: usize,
    timeout: std::time::Duration,
) -> Vec<rdk_core::mbuf::Mbuf> {
    use rdk_core::ethdev::RxQueue;
    let mut got = Vec::new();
    let t = std::time::Instant::now();
    let mut burst: [Option<rdk_core::mbuf::Mbuf>; 32] = Default::default();
    while got.len() < want && t.elapsed() < timeout {
        let q = port.queues().expect("a started port");
        for rx in q.rx.iter_mut() {
            let n = rx.rx_burst(&mut burst);
            got.extend(burst[..n].iter_mut().filter_map(Option::take));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_checksums_verify() {
        let f = ipv4_udp_frame([2; 6], [4; 6], [10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"abc");
        assert_eq!(checksum(&f[14..34]), 0, "IPv4 header checksum");
        assert_eq!(udp_payload(&f, 2).unwrap(), b"abc");
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            udp_payload(&bad, 2),
            None,
            "a corrupted datagram fails its checksum"
        );
        assert_eq!(udp_payload(&f, 3), None);
    }

    #[test]
    fn tcp_frames_of_both_families_round_trip() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let tcp = TcpHdr {
            sport: 7,
            dport: 9,
            seq: 0x01020304,
            ack: 5,
            flags: 0x12,
        };
        let pairs: [(IpAddr, IpAddr); 2] = [
            (
                Ipv4Addr::new(10, 0, 0, 1).into(),
                Ipv4Addr::new(10, 0, 0, 2).into(),
            ),
            (
                Ipv6Addr::LOCALHOST.into(),
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
            ),
        ];
        for (src, dst) in pairs {
            let f = tcp_frame([2; 6], [4; 6], src, dst, &tcp, b"hello");
            assert_eq!(tcp_of(&f, 9), Some((7, 0x01020304, 5, 0x12)), "{src}");
            assert_eq!(tcp_of(&f, 8), None);
            let mut bad = f.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(
                tcp_of(&bad, 9),
                None,
                "a corrupted segment fails its checksum"
            );
        }
    }
}
