//! `dpdk-testpmd` as a peer: started in interactive mode inside a namespace, driven through
//! its prompt, its forward statistics read back.

use crate::netns::{prerequisite, Netns};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Whether `dpdk-testpmd` can be used (checked with [`prerequisite`]).
pub fn need_testpmd(test: &str) -> bool {
    prerequisite(
        test,
        Command::new("dpdk-testpmd")
            .arg("--version")
            .output()
            .is_ok(),
        "needs dpdk-testpmd (Debian package dpdk)",
    )
}

/// A running interactive `dpdk-testpmd`.
pub struct Testpmd {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Testpmd {
    /// Starts `dpdk-testpmd -i` in `ns` with one vdev, without hugepages, on `lcores` (the
    /// main lcore and at least one forwarding lcore, e.g. `0-1`).
    pub fn start(ns: &Netns, vdev: &str, lcores: &str) -> Testpmd {
        let prefix = format!(
            "rdkt{}_{}",
            std::process::id(),
            crate::netns::unique_name("p")
        );
        let mut child = ns
            // Line-buffered: testpmd's stdout is a pipe here, fully buffered otherwise.
            .command("stdbuf")
            .args(["-oL", "-eL", "dpdk-testpmd"])
            .args([
                "--no-pci",
                "--no-huge",
                "-m",
                "256",
                "--file-prefix",
                &prefix,
            ])
            .args([
                "-l",
                lcores,
                "--vdev",
                vdev,
                "--",
                "-i",
                "--total-num-mbufs=2048",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dpdk-testpmd");
        let stdin = child.stdin.take().unwrap();
        let (tx, rx) = channel();
        for r in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the reader threads hold senders now: the channel closes when testpmd exits.
        drop(tx);
        let mut t = Testpmd {
            child,
            stdin,
            lines: rx,
            log: Vec::new(),
        };
        // The prompt ends without a newline; the line before it is the link check's "Done".
        t.wait_for("Checking link statuses", Duration::from_secs(60))
            .and_then(|_| t.wait_for("Done", Duration::from_secs(30)))
            .unwrap_or_else(|| panic!("dpdk-testpmd did not start:\n{}", t.log.join("\n")));
        t
    }

    /// Reads output until a line contains `pat`; `None` on timeout.
    pub fn wait_for(&mut self, pat: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(pat);
                    self.log.push(l.clone());
                    if hit {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Sends one command line.
    pub fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to dpdk-testpmd");
        self.stdin.flush().unwrap();
    }

    /// `stop`, and the port's forward statistics: (RX-packets, TX-packets).
    pub fn stop_counts(&mut self) -> (u64, u64) {
        self.cmd("stop");
        let mut rx = None;
        let mut tx = None;
        // "RX-packets: N  RX-dropped: … RX-total: …" then "TX-packets: N …"; the accumulated
        // block comes last, so keep the last values seen.
        while let Some(l) = self.wait_for("packets:", Duration::from_secs(10)) {
            let num = |key: &str| {
                l.split(key)
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if let Some(v) = num("RX-packets:") {
                rx = Some(v);
            }
            if let Some(v) = num("TX-packets:") {
                tx = Some(v);
            }
            if l.contains("TX-packets:")
                && self
                    .log
                    .iter()
                    .rev()
                    .take(3)
                    .any(|x| x.contains("Accumulated"))
            {
                break;
            }
        }
        (
            rx.unwrap_or_else(|| panic!("no RX-packets in:\n{}", self.log.join("\n"))),
            tx.unwrap_or(0),
        )
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        self.log.join("\n")
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
