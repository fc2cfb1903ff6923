//! rdk-testpmd: forwards packets between rdk ports and prints dpdk-testpmd-style statistics.
//! With no arguments: two ring ports, io forwarding seeded by --tx-first, ten seconds.

use clap::Parser;
use rdk_examples::testpmd::{cli::Args, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse().apply_defaults();
    match run(&args, false) {
        Ok(out) if out.mbufs_leaked == 0 => ExitCode::SUCCESS,
        Ok(out) => {
            eprintln!("rdk-testpmd: {} mbufs leaked", out.mbufs_leaked);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rdk-testpmd: {e}");
            ExitCode::from(2)
        }
    }
}
