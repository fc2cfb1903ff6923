//! CPUs for benchmarks: pinning threads, and telling whether anyone else used the CPUs.
//!
//! On a shared machine a figure is only worth printing with a note of who else ran meanwhile,
//! so besides pinning this module measures *foreign* CPU use: the busy time of all CPUs
//! (`/proc/stat`) minus the CPU time of the process being measured (`/proc/<pid>/stat`).
//! Figures are in CPUs: 1.0 means one CPU fully busy for the whole interval.

use std::fs;
use std::io;
use std::time::{Duration, Instant};

/// Pins the calling thread to `cpu` (`sched_setaffinity`).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond CPU_SETSIZE"),
        ));
    }
    // SAFETY: cpu_set_t is plain data and all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE, checked above, so the bit is inside the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lets the calling thread run on any CPU again (0 to `CPU_SETSIZE - 1`).
pub fn unpin_current_thread() -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data and all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: cpu < CPU_SETSIZE, so the bit is inside the set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The kernel's tick rate for the time fields of `/proc` (`USER_HZ`).
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy time of all CPUs together, in ticks, from the `cpu` line of `/proc/stat`
/// (user + nice + system + irq + softirq + steal; idle and iowait are not busy).
fn all_cpus_busy_ticks() -> io::Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Ok(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// CPU time (user + system, all threads) of the process whose `stat` file is at `path`.
fn process_ticks(path: &str) -> io::Result<u64> {
    let stat = fs::read_to_string(path)?;
    // The command name is in parentheses and may contain spaces: count fields after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `rest` starts at field 3.
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Ok(num(11) + num(12))
}

/// CPUs busy on average over the next `interval`, whoever used them.
pub fn busy_cpus(interval: Duration) -> f64 {
    let m = ForeignCpu::all();
    std::thread::sleep(interval);
    m.stop()
}

/// The three load averages of `/proc/loadavg`, as written there.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

/// Measures the CPU time that processes other than the measured one used over an interval.
#[derive(Debug)]
pub struct ForeignCpu {
    /// `/proc/<pid>/stat` of the measured process, whose CPU time is not foreign.
    measured: Option<String>,
    all0: u64,
    proc0: u64,
    t0: Instant,
}

impl ForeignCpu {
    /// Starts measuring; this process's own CPU time is not foreign.
    pub fn excluding_self() -> Self {
        Self::start(Some("/proc/self/stat".to_owned()))
    }

    /// Starts measuring; the CPU time of process `pid` is not foreign.
    pub fn excluding(pid: u32) -> Self {
        Self::start(Some(format!("/proc/{pid}/stat")))
    }

    /// Starts measuring all CPU use (nothing is excluded).
    pub fn all() -> Self {
        Self::start(None)
    }

    fn start(measured: Option<String>) -> Self {
        let proc0 = measured
            .as_deref()
            .map_or(0, |p| process_ticks(p).unwrap_or(0));
        Self {
            measured,
            all0: all_cpus_busy_ticks().unwrap_or(0),
            proc0,
            t0: Instant::now(),
        }
    }

    /// Foreign CPUs busy on average since the start (1.0 = one CPU the whole time). The
    /// resolution is one tick (10 ms) of CPU time, so short intervals are coarse.
    pub fn stop(&self) -> f64 {
        let wall = self.t0.elapsed().as_secs_f64();
        let all = all_cpus_busy_ticks()
            .unwrap_or(self.all0)
            .saturating_sub(self.all0);
        let own = self.measured.as_deref().map_or(0, |p| {
            process_ticks(p)
                .unwrap_or(self.proc0)
                .saturating_sub(self.proc0)
        });
        if wall <= 0.0 {
            return 0.0;
        }
        all.saturating_sub(own) as f64 / ticks_per_sec() / wall
    }
}

/// How a wait for quiet CPUs ended.
#[derive(Clone, Copy, Debug)]
pub struct Quiet {
    /// Whether the CPUs became quiet before the deadline.
    pub quiet: bool,
    /// CPUs busy in the last one-second sample.
    pub busy: f64,
    /// Time spent waiting.
    pub waited: Duration,
}

/// Waits (at most `max`) until fewer than `threshold` CPUs are busy over a one-second sample,
/// so that another tenant's job does not distort a figure. Never stops anything.
pub fn wait_quiet(max: Duration, threshold: f64) -> Quiet {
    let t0 = Instant::now();
    loop {
        let busy = busy_cpus(Duration::from_secs(1));
        let waited = t0.elapsed();
        if busy < threshold || waited >= max {
            return Quiet {
                quiet: busy < threshold,
                busy,
                waited,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_not_foreign() {
        let m = ForeignCpu::excluding_self();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let busy_all = busy_cpus(Duration::from_millis(10));
        let f = m.stop();
        assert!(f >= 0.0 && busy_all >= 0.0);
        assert!(f <= online_cpus() as f64 + 0.5, "{f}");
    }

    #[test]
    fn pinning_to_cpu_zero_works() {
        std::thread::spawn(|| pin_current_thread(0).unwrap())
            .join()
            .unwrap();
        assert!(pin_current_thread(usize::MAX).is_err());
    }
}
