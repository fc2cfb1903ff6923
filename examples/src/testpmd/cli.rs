//! rdk-testpmd's command line: dpdk-testpmd's flags where they exist, parsed with clap.

use clap::{Parser, ValueEnum};
use std::fmt;
use std::time::Duration;

/// What the forwarding cores do with packets (dpdk-testpmd's `--forward-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForwardMode {
    /// Receive and send back out unchanged.
    Io,
    /// Receive, rewrite source and destination MAC (to the tx port's and a fixed peer), send.
    Mac,
    /// Receive, swap source and destination MAC, send (only the MACs, as dpdk-testpmd does).
    Macswap,
    /// Only send generated Ethernet/IPv4/UDP packets.
    Txonly,
    /// Only receive and free.
    Rxonly,
    /// Send generated packets over many UDP flows (varying source IP), and receive.
    Flowgen,
}

/// How rx ports map to tx ports (dpdk-testpmd's `--port-topology`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Topology {
    /// 0↔1, 2↔3, …
    Paired,
    /// 0→1→2→…→0.
    Chained,
    /// Each port sends back to itself.
    Loop,
}

/// rdk-testpmd: forwards packets between rdk ports and prints dpdk-testpmd-style statistics.
///
/// With no arguments it forwards between two ring ports (io mode, seeded with --tx-first) for
/// ten seconds: no root and no hardware needed.
#[derive(Clone, Debug, Parser)]
#[command(name = "rdk-testpmd", version)]
pub struct Args {
    /// Virtual device to create, DPDK-style (`net_null0,size=64`, `net_ring0`); repeatable.
    #[arg(long = "vdev")]
    pub vdev: Vec<String>,
    /// PCI device to use (`0000:01:00.0`); repeatable.
    #[arg(short = 'a', long = "allow")]
    pub pci: Vec<String>,
    /// Forwarding mode.
    #[arg(long = "forward-mode", value_enum, default_value_t = ForwardMode::Io)]
    pub forward_mode: ForwardMode,
    /// Packets per burst.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub burst: u16,
    /// Forwarding cores: core c is a thread named rdk-fwd-c pinned to CPU (main-cpu+1+c) mod
    /// the CPU count (the main CPU prints statistics, like dpdk-testpmd's main lcore); each has
    /// its own queues.
    #[arg(long = "nb-cores", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nb_cores: u16,
    /// The CPU of the statistics thread (dpdk-testpmd's main lcore); forwarding cores follow it
    /// (`--main-cpu 1` on two CPUs is DPDK's `--lcores 0@1,1@0`).
    #[arg(long = "main-cpu", default_value_t = 0)]
    pub main_cpu: usize,
    /// Receive queues per port (default: one per forwarding core).
    #[arg(long)]
    pub rxq: Option<u16>,
    /// Transmit queues per port (default: one per forwarding core).
    #[arg(long)]
    pub txq: Option<u16>,
    /// Receive descriptors per queue.
    #[arg(long, default_value_t = 1024)]
    pub rxd: u16,
    /// Transmit descriptors per queue.
    #[arg(long, default_value_t = 1024)]
    pub txd: u16,
    /// Transmit free threshold: completions are reclaimed once fewer descriptors than this
    /// are free (dpdk-testpmd's `--txfreet`; 0: the driver's default).
    #[arg(long, default_value_t = 0)]
    pub txfreet: u16,
    /// Length of generated packets in bytes, or the lengths of their segments (`64,64`: a
    /// chain of two mbufs), as dpdk-testpmd's `--txpkts=X[,Y]*`. The sum is the packet length,
    /// 60 to 9000; each segment must fit an mbuf (2048 bytes). flowgen sends the sum less the
    /// 4-byte FCS as one mbuf, as dpdk-testpmd's does.
    #[arg(long, default_value = "64", value_parser = parse_txpkts)]
    pub txpkts: TxPkts,
    /// Mbufs in the pool (default: enough for every descriptor and cache).
    #[arg(long = "total-num-mbufs")]
    pub total_num_mbufs: Option<u32>,
    /// Per-core mbuf cache size.
    #[arg(long, default_value_t = 250)]
    pub mbcache: u16,
    /// Port topology.
    #[arg(long = "port-topology", value_enum, default_value_t = Topology::Paired)]
    pub port_topology: Topology,
    /// Print statistics every this many seconds (0: only at the end).
    #[arg(long = "stats-period", default_value_t = 1)]
    pub stats_period: u64,
    /// Send one burst on every port before forwarding starts.
    #[arg(long = "tx-first")]
    pub tx_first: bool,
    /// How long to forward, in seconds (`inf`: until interrupted).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub duration: f64,
}

/// The segment lengths of generated packets (`--txpkts`): one for single-mbuf packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPkts(Vec<u16>);

/// Most segments a generated packet may have (DPDK's `RTE_MAX_SEGS_PER_PKT`).
pub const MAX_TXPKTS_SEGS: usize = 255;

impl TxPkts {
    /// The segment lengths, first to last (at least one).
    pub fn segments(&self) -> &[u16] {
        &self.0
    }

    /// The packet length: the sum of the segments (at most 9000, checked when parsed).
    pub fn total(&self) -> u16 {
        self.0.iter().sum()
    }
}

impl fmt::Display for TxPkts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// `X[,Y]*`: segment lengths of at least 1 byte, at most [`MAX_TXPKTS_SEGS`] of them, whose sum
/// (the packet length) is 60 to 9000 bytes: an Ethernet frame without its CRC, up to a jumbo.
fn parse_txpkts(s: &str) -> Result<TxPkts, String> {
    let mut segs = Vec::new();
    for (i, p) in s.split(',').enumerate() {
        match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => segs.push(n),
            _ => {
                return Err(format!(
                    "segment {i} ('{p}') is not a length of 1 to 65535 bytes; write X or X,Y,…"
                ))
            }
        }
    }
    if segs.len() > MAX_TXPKTS_SEGS {
        return Err(format!(
            "{} segments; a packet has at most {MAX_TXPKTS_SEGS}",
            segs.len()
        ));
    }
    let total: u32 = segs.iter().map(|&n| u32::from(n)).sum();
    if !(60..=9000).contains(&total) {
        return Err(format!(
            "the packet length (the sum of the segments) is {total} bytes; it must be at least \
             60 and at most 9000"
        ));
    }
    Ok(TxPkts(segs))
}

/// A number of seconds, at least 0 (`inf` allowed); NaN and negative values are refused.
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of seconds of at least 0 (inf: until interrupted)"
        )),
    }
}

impl Args {
    /// The arguments used when none are given: two ring ports, io forwarding, tx-first.
    pub fn apply_defaults(mut self) -> Self {
        if self.vdev.is_empty() && self.pci.is_empty() {
            self.vdev = vec!["net_ring0".into(), "net_ring1".into()];
            self.tx_first = true;
        }
        self
    }

    /// The forwarding duration; [`Duration::MAX`] (until interrupted) for more than it holds.
    pub fn duration(&self) -> Duration {
        Duration::try_from_secs_f64(self.duration.max(0.0)).unwrap_or(Duration::MAX)
    }

    /// Receive queues per port.
    pub fn nb_rxq(&self) -> u16 {
        self.rxq.unwrap_or(self.nb_cores)
    }

    /// Transmit queues per port.
    pub fn nb_txq(&self) -> u16 {
        self.txq.unwrap_or(self.nb_cores)
    }

    /// The tx port for traffic received on `rx_port`, out of `nb_ports`.
    pub fn peer_port(&self, rx_port: u16, nb_ports: u16) -> u16 {
        match self.port_topology {
            Topology::Loop => rx_port,
            Topology::Chained => (rx_port + 1) % nb_ports,
            Topology::Paired => {
                if nb_ports == 1 {
                    rx_port
                } else if rx_port.is_multiple_of(2) {
                    // An odd port count leaves the last port paired with itself, as testpmd does.
                    if rx_port + 1 < nb_ports {
                        rx_port + 1
                    } else {
                        rx_port
                    }
                } else {
                    rx_port - 1
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("rdk-testpmd").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_two_ring_ports_with_tx_first() {
        let a = parse(&[]).apply_defaults();
        assert_eq!(a.vdev, ["net_ring0", "net_ring1"]);
        assert!(a.tx_first);
        assert_eq!(a.forward_mode, ForwardMode::Io);
        assert_eq!((a.burst, a.nb_cores, a.nb_rxq(), a.nb_txq()), (32, 1, 1, 1));
    }

    #[test]
    fn dpdk_flag_spellings() {
        let a = parse(&[
            "--vdev",
            "net_null0,size=64",
            "--forward-mode=txonly",
            "--txpkts=128",
            "--nb-cores=2",
            "--port-topology=loop",
            "--stats-period",
            "0",
            "--total-num-mbufs=32768",
        ]);
        assert_eq!(a.forward_mode, ForwardMode::Txonly);
        assert_eq!(
            (a.txpkts.segments(), a.nb_cores, a.nb_rxq()),
            (&[128u16][..], 2, 2)
        );
        assert_eq!(a.total_num_mbufs, Some(32768));
        assert_eq!(a.peer_port(0, 1), 0);
        assert!(Args::try_parse_from(["x", "--burst=0"]).is_err());
        assert!(Args::try_parse_from(["x", "--forward-mode=bogus"]).is_err());
        for bad in ["--duration=nan", "--duration=-1", "--duration=ten"] {
            let e = Args::try_parse_from(["x", bad]).unwrap_err().to_string();
            assert!(e.contains("seconds"), "{bad}: {e}");
        }
        assert!(Args::try_parse_from(["x", "--duration=inf"]).is_ok());
    }

    #[test]
    fn topologies() {
        let mut a = parse(&[]);
        assert_eq!(
            (a.peer_port(0, 4), a.peer_port(3, 4), a.peer_port(2, 3)),
            (1, 2, 2)
        );
        a.port_topology = Topology::Chained;
        assert_eq!((a.peer_port(0, 3), a.peer_port(2, 3)), (1, 0));
        a.port_topology = Topology::Loop;
        assert_eq!(a.peer_port(2, 3), 2);
    }
}
