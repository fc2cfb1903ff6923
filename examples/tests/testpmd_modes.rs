//! rdk-testpmd end to end: every forwarding mode runs briefly on null and ring ports, moves
//! packets, and gives every mbuf back.

use clap::Parser;
use rdk_examples::testpmd::{cli::Args, fwd::Engine, pkt, run};

fn args(extra: &[&str]) -> Args {
    let mut v = vec![
        "rdk-testpmd",
        "--duration",
        "0.3",
        "--stats-period",
        "0",
        "--total-num-mbufs",
        "8192",
    ];
    v.extend_from_slice(extra);
    Args::try_parse_from(v).unwrap().apply_defaults()
}

fn check(extra: &[&str], want_rx: bool, want_tx: bool) {
    let out = run(&args(extra), true).unwrap();
    assert_eq!(out.mbufs_leaked, 0, "{extra:?}");
    let rx: u64 = out.ports.iter().map(|p| p.stats.ipackets).sum();
    let tx: u64 = out.ports.iter().map(|p| p.stats.opackets).sum();
    assert_eq!(rx > 0, want_rx, "{extra:?}: rx {rx}");
    assert_eq!(tx > 0, want_tx, "{extra:?}: tx {tx}");
}

#[test]
fn default_run_is_ring_io_with_tx_first() {
    let out = run(&args(&[]), true).unwrap();
    assert_eq!(out.ports.len(), 2);
    assert_eq!(out.mbufs_leaked, 0);
    for p in &out.ports {
        assert!(p.stats.ipackets > 0 && p.stats.opackets > 0, "{p:?}");
    }
}

#[test]
fn every_mode_on_null_ports_moves_packets_and_leaks_nothing() {
    let two = ["--vdev", "net_null0", "--vdev", "net_null1"];
    for (mode, rx, tx) in [
        ("io", true, true),
        ("mac", true, true),
        ("macswap", true, true),
        ("rxonly", true, false),
        ("txonly", false, true),
        ("flowgen", true, true),
    ] {
        let m = format!("--forward-mode={mode}");
        let mut a: Vec<&str> = two.to_vec();
        a.push(&m);
        check(&a, rx, tx);
    }
}

#[test]
fn two_cores_and_chained_topology() {
    check(
        &[
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
            "--vdev",
            "net_null2",
            "--nb-cores=2",
            "--port-topology=chained",
        ],
        true,
        true,
    );
}

#[test]
fn generated_frames_are_valid_udp() {
    for len in [60u16, 64, 1500] {
        assert!(pkt::verify(&Engine::make_frame(len)), "txpkts {len}");
    }
}

#[test]
fn bad_arguments_are_errors() {
    let e = run(&args(&["--vdev", "net_bogus0"]), true).unwrap_err();
    assert!(e.contains("no driver named 'net_bogus'"), "{e}");
    let e = run(&args(&["--vdev", "net_null0,sise=1"]), true).unwrap_err();
    assert!(e.contains("accepted keys"), "{e}");
    let e = run(&args(&["-a", "0000:01:00.0"]), true).unwrap_err();
    assert!(e.contains("VFIO"), "{e}");
}

#[test]
fn txpkts_longer_than_an_mbuf_is_refused_with_the_limit() {
    // An mbuf holds 2048 data bytes: a 4000-byte frame cannot be generated. dpdk-testpmd gives
    // up on such a --txpkts too; before, txonly ran and silently sent nothing.
    for mode in ["txonly", "flowgen"] {
        let m = format!("--forward-mode={mode}");
        let a = args(&["--vdev", "net_null0", &m, "--txpkts=4000"]);
        let e = run(&a, true).expect_err(mode);
        assert!(e.contains("--txpkts 4000") && e.contains("2048"), "{e}");
    }
    let a = args(&[
        "--vdev",
        "net_null0",
        "--forward-mode=txonly",
        "--txpkts=2048",
    ]);
    let out = run(&a, true).unwrap();
    assert!(out.ports[0].stats.opackets > 0);
    assert_eq!(
        out.ports[0].stats.obytes,
        out.ports[0].stats.opackets * 2048
    );
    assert_eq!(out.mbufs_leaked, 0);
}

#[test]
fn a_main_cpu_beyond_the_machine_wraps_instead_of_overflowing() {
    let big = format!("--main-cpu={}", usize::MAX);
    check(
        &["--vdev", "net_null0", "--forward-mode=rxonly", &big],
        true,
        false,
    );
}

#[test]
fn txpkts_lists_segment_lengths_as_in_dpdk_testpmd() {
    // `--txpkts=X,Y`: each packet is a chain of an X-byte and a Y-byte segment.
    let a = args(&[
        "--vdev",
        "net_null0",
        "--forward-mode=txonly",
        "--txpkts=64,2048,16",
    ]);
    let out = run(&a, true).unwrap();
    let st = &out.ports[0].stats;
    assert!(st.opackets > 0);
    assert_eq!(st.obytes, st.opackets * (64 + 2048 + 16));
    assert_eq!(out.mbufs_leaked, 0);
    // Each segment must fit an mbuf; the total must hold the headers.
    for (bad, why) in [
        ("--txpkts=64,4000", "segment 1"),
        ("--txpkts=20,20", "at least 60"),
        ("--txpkts=64,,64", "segment"),
    ] {
        let r = rdk_examples::testpmd::cli::Args::try_parse_from([
            "rdk-testpmd",
            "--vdev",
            "net_null0",
            "--forward-mode=txonly",
            bad,
        ]);
        let e = match r {
            Ok(a) => run(&a, true).unwrap_err(),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(why), "{bad}: {e}");
    }
}

/// A transmit queue that keeps what it is given.
struct Keep(Vec<rdk_core::mbuf::Mbuf>);

impl rdk_core::ethdev::TxQueue for Keep {
    fn tx_burst(&mut self, pkts: &mut [Option<rdk_core::mbuf::Mbuf>]) -> usize {
        let n = pkts.iter().take_while(|p| p.is_some()).count();
        self.0.extend(pkts[..n].iter_mut().filter_map(Option::take));
        n
    }
}

/// A receive queue that never has anything.
struct Empty;

impl rdk_core::ethdev::RxQueue for Empty {
    fn rx_burst(&mut self, _: &mut [Option<rdk_core::mbuf::Mbuf>]) -> usize {
        0
    }
}

#[test]
fn txonly_chains_carry_the_frame_cut_at_the_segment_lengths() {
    use rdk_core::mbuf::{Mbuf, PktMbufPool, PktMbufPoolConfig};
    use rdk_examples::testpmd::{cli::ForwardMode, fwd::Stream};
    use std::sync::atomic::AtomicBool;
    let os = rdk_os_linux::LinuxOs::plain();
    let pool = PktMbufPool::create(&os, &PktMbufPoolConfig::new("chains", 64)).unwrap();
    let stop = AtomicBool::new(false);
    let segs = vec![42u16, 30, 28];
    let mut eng = Engine {
        mode: ForwardMode::Txonly,
        burst: 4,
        cache: pool.cache(8).unwrap(),
        stop: &stop,
        frame: Engine::make_frame(100),
        segs: segs.clone(),
        flow: 0,
    };
    let mut s = Stream {
        rx_port: 0,
        tx_port: 0,
        rx: Empty,
        tx: Keep(Vec::new()),
        tx_mac: [0; 6],
        peer_mac: [0; 6],
        tx_dropped: 0,
    };
    let mut pkts: [Option<Mbuf>; 4] = Default::default();
    eng.step(&mut s, &mut pkts);
    assert_eq!(s.tx.0.len(), 4);
    for m in &s.tx.0 {
        assert_eq!((m.nb_segs(), m.pkt_len()), (3, 100));
        let lens: Vec<u16> = m.segments().map(|g| g.data_len()).collect();
        assert_eq!(lens, segs);
        let mut bytes = vec![0u8; 100];
        m.read(0, &mut bytes).unwrap();
        assert_eq!(bytes, Engine::make_frame(100));
        assert!(pkt::verify(&bytes));
    }
    // A pool too small for a whole burst of chains: what cannot be completed is freed.
    s.tx.0.clear();
    let small = PktMbufPool::create(&os, &PktMbufPoolConfig::new("few", 7)).unwrap();
    eng.cache = small.cache(2).unwrap();
    eng.step(&mut s, &mut pkts);
    // The burst's 4 heads come first (as in dpdk-testpmd), leaving 3 mbufs: one packet's two
    // tails, and one short for the next.
    assert_eq!(s.tx.0.len(), 1, "one whole 3-segment packet");
    assert_eq!(s.tx.0[0].nb_segs(), 3);
    s.tx.0.clear();
    drop(eng);
    assert_eq!(small.available(), small.size(), "every mbuf is back");
}

#[test]
fn flowgen_frames_leave_room_for_the_crc_as_in_dpdk_testpmd() {
    // dpdk-testpmd's flowgen sends --txpkts minus the 4-byte FCS (txonly sends --txpkts).
    let a = args(&[
        "--vdev",
        "net_null0",
        "--forward-mode=flowgen",
        "--txpkts=64",
    ]);
    let out = run(&a, true).unwrap();
    let st = &out.ports[0].stats;
    assert!(st.opackets > 0);
    assert_eq!(st.obytes, st.opackets * 60);
    assert_eq!(out.mbufs_leaked, 0);
}
