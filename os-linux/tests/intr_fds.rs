//! The interrupt thread closes every fd it owns when it shuts down (its own test binary, so
//! no other test opens or closes fds meanwhile).

use rdk_core::os::EventNotifier;
use rdk_os_linux::intr::{InterruptThread, IntrEvent, SourceKind, Unregistered};
use rdk_os_linux::EventFd;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The process's open fds, with what they are.
fn open_fds() -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        // read_dir's own fd comes and goes.
        .filter(|(_, t)| !t.starts_with("/proc/"))
        .collect();
    v.sort();
    v
}

#[test]
fn shutdown_joins_and_closes_every_fd_it_owns() {
    let source = EventFd::new().unwrap();
    let before = open_fds();
    for _ in 0..3 {
        let t = InterruptThread::spawn().unwrap();
        let h = t.handle();
        h.register(source.as_fd(), SourceKind::EventFd, |_: &IntrEvent| {})
            .unwrap();
        h.set_alarm(Duration::from_secs(60), || {}).unwrap();
        assert!(
            open_fds().len() >= before.len() + 3,
            "epoll, wake eventfd, timerfd"
        );
        t.shutdown().unwrap();
        drop(h);
        assert_eq!(open_fds(), before, "fds left open after shutdown");
        // The source's fd is the caller's and stays open.
    }
    // A parked source whose fd is closed, and a new fd that gets the same number: the new one
    // is watched (this binary runs one test, so fd numbers are deterministic here).
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let hits = Arc::new(AtomicU64::new(0));
    let ev = EventFd::new().unwrap();
    let hh = hits.clone();
    let r = h
        .register(ev.as_fd(), SourceKind::EventFd, move |e: &IntrEvent| {
            hh.fetch_add(e.count, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(h.unregister(r).unwrap(), Unregistered::Removed);
    let num = ev.as_raw_fd();
    drop(ev);
    let again = EventFd::new().unwrap();
    assert_eq!(
        again.as_raw_fd(),
        num,
        "the kernel reuses the lowest free number"
    );
    let hh = hits.clone();
    h.register(again.as_fd(), SourceKind::EventFd, move |e: &IntrEvent| {
        hh.fetch_add(e.count, Ordering::SeqCst);
    })
    .unwrap();
    again.signal().unwrap();
    let start = std::time::Instant::now();
    while hits.load(Ordering::SeqCst) != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reused number not watched"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    t.shutdown().unwrap();
    drop((h, again));
    assert_eq!(open_fds(), before);

    // Dropping without shutdown does the same.
    let t = InterruptThread::spawn().unwrap();
    drop(t);
    assert_eq!(open_fds(), before);
    assert!(
        !std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim() == "rdk-intr")),
        "the thread was joined"
    );
}
