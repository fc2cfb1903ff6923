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
