//! Statistics in dpdk-testpmd's shape, so the same log parser reads both programs.

use rdk_core::ethdev::PortStats;
use std::fmt::Write as _;
use std::time::Duration;

/// What one port did over one period.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Received packets per second.
    pub rx_pps: u64,
    /// Sent packets per second.
    pub tx_pps: u64,
    /// Received bits per second.
    pub rx_bps: u64,
    /// Sent bits per second.
    pub tx_bps: u64,
}

impl Rates {
    /// Rates between two snapshots taken `dt` apart.
    pub fn between(prev: &PortStats, now: &PortStats, dt: Duration) -> Self {
        let secs = dt.as_secs_f64();
        if secs <= 0.0 {
            return Self::default();
        }
        let per = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs) as u64;
        Self {
            rx_pps: per(prev.ipackets, now.ipackets),
            tx_pps: per(prev.opackets, now.opackets),
            rx_bps: per(prev.ibytes, now.ibytes) * 8,
            tx_bps: per(prev.obytes, now.obytes) * 8,
        }
    }
}

/// The periodic block dpdk-testpmd prints with `--stats-period`, for all ports.
pub fn periodic(ports: &[(u16, PortStats, Rates)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nPort statistics ====================================");
    for (id, st, r) in ports {
        let _ = writeln!(
            s,
            "  ######################## NIC statistics for port {id:<2} ########################"
        );
        let _ = writeln!(
            s,
            "  RX-packets: {:<10} RX-missed: {:<10} RX-bytes:  {}",
            st.ipackets, st.imissed, st.ibytes
        );
        let _ = writeln!(s, "  RX-errors: {}", st.ierrors);
        let _ = writeln!(s, "  RX-nombuf:  {:<10}", st.rx_nombuf);
        let _ = writeln!(
            s,
            "  TX-packets: {:<10} TX-errors: {:<10} TX-bytes:  {}",
            st.opackets, st.oerrors, st.obytes
        );
        let _ = writeln!(s, "\n  Throughput (since last show)");
        let _ = writeln!(
            s,
            "  Rx-pps: {:>12}          Rx-bps: {:>12}",
            r.rx_pps, r.rx_bps
        );
        let _ = writeln!(
            s,
            "  Tx-pps: {:>12}          Tx-bps: {:>12}",
            r.tx_pps, r.tx_bps
        );
        let _ = writeln!(
            s,
            "  ############################################################################"
        );
    }
    s
}

/// Per-port figures for the closing summary.
#[derive(Clone, Debug, PartialEq)]
pub struct PortSummary {
    /// Port id.
    pub id: u16,
    /// Instance name.
    pub name: String,
    /// Final statistics.
    pub stats: PortStats,
    /// Packets the forwarding loop could not send and freed.
    pub tx_dropped: u64,
}

/// The closing summary: testpmd's forward statistics plus rates and the leak check.
pub fn summary(ports: &[PortSummary], elapsed: Duration, mbufs_leaked: i64) -> String {
    let mut s = String::new();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let (mut rx_all, mut tx_all) = (0u64, 0u64);
    for p in ports {
        let st = &p.stats;
        let _ = writeln!(
            s,
            "\n  ---------------------- Forward statistics for port {:<2} ({}) ----------------------",
            p.id, p.name
        );
        // As dpdk-testpmd: RX-dropped is what the device missed. An allocation failure is not
        // a lost frame (a driver may count one per refill that came up short), so it and bad
        // frames get their own lines, shown when not zero.
        let _ = writeln!(
            s,
            "  RX-packets: {:<14} RX-dropped: {:<14} RX-total: {}",
            st.ipackets,
            st.imissed,
            st.ipackets + st.imissed
        );
        if st.ierrors + st.rx_nombuf > 0 {
            let _ = writeln!(s, "  RX-error: {}", st.ierrors);
            let _ = writeln!(s, "  RX-nombufs: {:<14}", st.rx_nombuf);
        }
        let _ = writeln!(
            s,
            "  TX-packets: {:<14} TX-dropped: {:<14} TX-total: {}",
            st.opackets,
            p.tx_dropped,
            st.opackets + p.tx_dropped
        );
        let _ = writeln!(
            s,
            "  Rx: {:.3} Mpps   Tx: {:.3} Mpps",
            st.ipackets as f64 / secs / 1e6,
            st.opackets as f64 / secs / 1e6
        );
        rx_all += st.ipackets;
        tx_all += st.opackets;
    }
    let _ = writeln!(
        s,
        "\n  +++++++++++++++ Accumulated forward statistics for all ports +++++++++++++++"
    );
    let _ = writeln!(
        s,
        "  RX-packets: {rx_all:<14} TX-packets: {tx_all:<14} over {:.2} s",
        secs
    );
    let _ = writeln!(
        s,
        "  Total: Rx {:.3} Mpps, Tx {:.3} Mpps",
        rx_all as f64 / secs / 1e6,
        tx_all as f64 / secs / 1e6
    );
    let _ = writeln!(s, "  mbufs leaked: {mbufs_leaked}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_block_has_the_lines_parse_testpmd_reads() {
        let st = PortStats {
            ipackets: 100,
            opackets: 90,
            ..Default::default()
        };
        let r = Rates::between(&PortStats::default(), &st, Duration::from_secs(2));
        assert_eq!((r.rx_pps, r.tx_pps), (50, 45));
        let out = periodic(&[(0, st, r)]);
        assert!(out.contains("Port statistics ===="));
        assert!(out.contains("NIC statistics for port 0"));
        assert!(out.contains("Rx-pps:           50"));
        assert!(out.contains("Tx-pps:           45"));
    }

    #[test]
    fn summary_reports_rates_and_leaks() {
        let p = PortSummary {
            id: 1,
            name: "net_ring1".into(),
            stats: PortStats {
                ipackets: 2_000_000,
                opackets: 1_000_000,
                ..Default::default()
            },
            tx_dropped: 3,
        };
        let out = summary(&[p], Duration::from_secs(1), 0);
        assert!(out.contains("Rx: 2.000 Mpps"), "{out}");
        assert!(out.contains("TX-dropped: 3"), "{out}");
        assert!(out.contains("mbufs leaked: 0"), "{out}");
    }

    #[test]
    fn rx_dropped_is_imissed_as_in_dpdk_testpmd() {
        // dpdk-testpmd's forward statistics: RX-dropped is imissed and RX-total is ipackets +
        // imissed; allocation failures and bad frames get lines of their own.
        let p = PortSummary {
            id: 0,
            name: "net_null0".into(),
            stats: PortStats {
                ipackets: 100,
                imissed: 2,
                ierrors: 1,
                rx_nombuf: 5,
                ..Default::default()
            },
            tx_dropped: 0,
        };
        let out = summary(&[p], Duration::from_secs(1), 0);
        assert!(out.contains("RX-dropped: 2 "), "{out}");
        assert!(out.contains("RX-total: 102\n"), "{out}");
        assert!(out.contains("RX-error: 1\n"), "{out}");
        assert!(out.contains("RX-nombufs: 5 "), "{out}");
        let clean = PortSummary {
            id: 0,
            name: "net_null0".into(),
            stats: PortStats {
                ipackets: 100,
                ..Default::default()
            },
            tx_dropped: 0,
        };
        let out = summary(&[clean], Duration::from_secs(1), 0);
        assert!(
            !out.contains("RX-error") && !out.contains("RX-nombufs"),
            "{out}"
        );
    }
}
