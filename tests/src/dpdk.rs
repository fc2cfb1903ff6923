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
        let child = ns
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
        let mut t = Testpmd::attach(child);
        // The prompt ends without a newline; the line before it is the link check's "Done".
        t.wait_for("Checking link statuses", Duration::from_secs(60))
            .and_then(|_| t.wait_for("Done", Duration::from_secs(30)))
            .unwrap_or_else(|| panic!("dpdk-testpmd did not start:\n{}", t.log.join("\n")));
        t
    }

    /// Wraps a spawned testpmd whose stdin, stdout and stderr are pipes: a thread per output
    /// stream feeds its lines to [`wait_for`](Self::wait_for).
    fn attach(mut child: std::process::Child) -> Testpmd {
        let stdin = child.stdin.take().expect("testpmd's stdin is a pipe");
        let (tx, rx) = channel();
        for r in [
            Box::new(child.stdout.take().expect("stdout is a pipe"))
                as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr is a pipe")),
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
        Testpmd {
            child,
            stdin,
            lines: rx,
            log: Vec::new(),
        }
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

    /// `start`, returning once testpmd forwards. Until then a peer must not send: starting,
    /// testpmd drains its receive queues and frees what it finds (`flush_fwd_rx_queues`),
    /// so frames sent before are lost without a trace but its port's RX count. The last line
    /// it prints before launching the forwarding cores, after the drain, is
    /// "`<mode> packet forwarding packets/burst=N`".
    pub fn start_forwarding(&mut self) {
        self.cmd("start");
        if self
            .wait_for("packets/burst=", Duration::from_secs(10))
            .is_none()
        {
            panic!("dpdk-testpmd did not start forwarding:\n{}", self.log());
        }
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

/// A `dpdk-testpmd -i` whose one port is `net_vhost0` in server mode (`client=0`), the
/// vhost-user backend a virtio-user frontend connects to. Not in a namespace: a Unix socket
/// needs none. Its own mbufs are plain memory (`--no-huge`): the vhost library copies
/// between the frontend's shared memory and them.
pub struct VhostTestpmd {
    inner: Testpmd,
    sock: std::path::PathBuf,
    prefix: String,
}

impl VhostTestpmd {
    /// Starts testpmd with `net_vhost0,iface=SOCK,queues=QUEUES,client=0` on `lcores` (main
    /// lcore and one forwarding lcore), `--rxq/--txq` = `queues`, loop topology, forward mode
    /// `fwd`; waits for the socket. Forwarding is not started: call
    /// [`Testpmd::start_forwarding`] before the frontend sends.
    pub fn start(sock: &std::path::Path, queues: u16, lcores: &str, fwd: &str) -> VhostTestpmd {
        let _ = std::fs::remove_file(sock);
        let prefix = format!(
            "rdkvu{}_{}",
            std::process::id(),
            crate::netns::unique_name("p")
        );
        let vdev = format!(
            "net_vhost0,iface={},queues={queues},client=0",
            sock.display()
        );
        let child = Command::new("stdbuf")
            .args([
                "-oL",
                "-eL",
                "dpdk-testpmd",
                "--no-pci",
                "--no-huge",
                "-m",
                "512",
            ])
            .args(["--no-shconf", "--file-prefix", &prefix, "-l", lcores])
            .args(["--vdev", &vdev, "--"])
            .args(["-i", "--total-num-mbufs=8192", "--port-topology=loop"])
            .arg(format!("--rxq={queues}"))
            .arg(format!("--txq={queues}"))
            .arg(format!("--forward-mode={fwd}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dpdk-testpmd");
        let mut inner = Testpmd::attach(child);
        let end = Instant::now() + Duration::from_secs(60);
        while !sock.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !sock.exists() {
            inner.wait_for("never", Duration::from_millis(200));
            panic!(
                "dpdk-testpmd never created {}:\n{}",
                sock.display(),
                inner.log()
            );
        }
        VhostTestpmd {
            inner,
            sock: sock.to_path_buf(),
            prefix,
        }
    }

    /// The testpmd behind it (commands, output).
    pub fn testpmd(&mut self) -> &mut Testpmd {
        &mut self.inner
    }

    /// `show port stats 0`: (RX-packets, TX-packets) as the vhost port counted them.
    pub fn port_counts(&mut self) -> (u64, u64) {
        while self
            .inner
            .lines
            .try_recv()
            .map(|l| self.inner.log.push(l))
            .is_ok()
        {}
        self.inner.cmd("show port stats 0");
        let rx = self.inner.wait_for("RX-packets:", Duration::from_secs(10));
        let tx = self.inner.wait_for("TX-packets:", Duration::from_secs(10));
        let num = |l: Option<String>, key: &str| -> u64 {
            l.as_deref()
                .and_then(|l| l.split(key).nth(1))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} from testpmd:\n{}", self.inner.log()))
        };
        (num(rx, "RX-packets:"), num(tx, "TX-packets:"))
    }

    /// Kills it at once (no goodbye on the socket), as a crashing backend would go.
    pub fn kill(&mut self) {
        let _ = self.inner.child.kill();
        let _ = self.inner.child.wait();
    }
}

impl Drop for VhostTestpmd {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}
