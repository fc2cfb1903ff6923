//! The interrupt thread against real eventfds, timerfds and pipes.

use rdk_core::os::EventNotifier;
use rdk_os_linux::intr::{
    InterruptThread, IntrEvent, IntrThreadError, RemovedReason, SourceKind, Unregistered,
};
use rdk_os_linux::EventFd;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `cond` until it holds or 10 s pass.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn eventfd_callbacks_see_the_count() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let ev = EventFd::new().unwrap();
    let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (a2, b2) = (a.clone(), b.clone());
    h.register(ev.as_fd(), SourceKind::EventFd, move |e: &IntrEvent| {
        a2.fetch_add(e.count, Ordering::SeqCst);
    })
    .unwrap();
    h.register(ev.as_fd(), SourceKind::EventFd, move |e: &IntrEvent| {
        b2.fetch_add(e.count, Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!(h.source_count(), 1);
    assert_eq!(h.callback_count(ev.as_raw_fd()), 2);
    for _ in 0..3 {
        ev.signal().unwrap();
    }
    eventually("both callbacks saw 3", || {
        a.load(Ordering::SeqCst) == 3 && b.load(Ordering::SeqCst) == 3
    });
    // Another kind on the same fd is refused with the kind it has.
    let e = h
        .register(ev.as_fd(), SourceKind::Readable, |_: &IntrEvent| {})
        .unwrap_err();
    assert_eq!(
        e,
        IntrThreadError::KindMismatch {
            fd: ev.as_raw_fd(),
            registered: SourceKind::EventFd
        }
    );
    t.shutdown().unwrap();
}

#[test]
fn callbacks_unregister_themselves_and_others_and_register_new_ones() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let (x, y) = (Arc::new(EventFd::new().unwrap()), EventFd::new().unwrap());
    let y_calls = Arc::new(AtomicUsize::new(0));
    let y_reg = {
        let c = y_calls.clone();
        h.register(y.as_fd(), SourceKind::EventFd, move |_: &IntrEvent| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap()
    };
    let x_calls = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let late_calls = Arc::new(AtomicUsize::new(0));
    let me = Arc::new(Mutex::new(None));
    let reg = {
        let (h2, c, out, me2, late, xfd) = (
            h.clone(),
            x_calls.clone(),
            outcomes.clone(),
            me.clone(),
            late_calls.clone(),
            x.clone(),
        );
        h.register(x.as_fd(), SourceKind::EventFd, move |_: &IntrEvent| {
            c.fetch_add(1, Ordering::SeqCst);
            let mine = me2.lock().unwrap().take();
            if let Some(mine) = mine {
                // Itself: deferred (it is running); the other source: removed at once.
                out.lock().unwrap().push(h2.unregister(mine).unwrap());
                out.lock().unwrap().push(h2.unregister(y_reg).unwrap());
                // And a new callback on its own source, which runs from the next event on.
                let l = late.clone();
                h2.register(xfd.as_fd(), SourceKind::EventFd, move |_: &IntrEvent| {
                    l.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            }
        })
        .unwrap()
    };
    *me.lock().unwrap() = Some(reg);
    x.signal().unwrap();
    eventually("first round", || outcomes.lock().unwrap().len() == 2);
    assert_eq!(
        *outcomes.lock().unwrap(),
        vec![Unregistered::Deferred, Unregistered::Removed]
    );
    h.wait_idle().unwrap();
    assert_eq!(
        h.callback_count(x.as_raw_fd()),
        1,
        "only the new callback is left"
    );
    assert_eq!(h.source_count(), 1, "y is gone");
    // y is no longer watched: signalling it calls nothing.
    y.signal().unwrap();
    x.signal().unwrap();
    eventually("late callback ran", || {
        late_calls.load(Ordering::SeqCst) == 1
    });
    assert_eq!(
        x_calls.load(Ordering::SeqCst),
        1,
        "the removed callback never ran again"
    );
    assert_eq!(y_calls.load(Ordering::SeqCst), 0);
    assert_eq!(y.ack().unwrap(), 1, "y's count was left alone");
    // Unregistering twice is an error, not a panic.
    assert_eq!(h.unregister(reg), Err(IntrThreadError::NotRegistered));
    t.shutdown().unwrap();
}

#[test]
fn a_thousand_sources_each_dispatched_once() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let fds: Vec<EventFd> = (0..1000).map(|_| EventFd::new().unwrap()).collect();
    let hits: Arc<Vec<AtomicU64>> = Arc::new((0..1000).map(|_| AtomicU64::new(0)).collect());
    for (i, fd) in fds.iter().enumerate() {
        let hits = hits.clone();
        h.register(fd.as_fd(), SourceKind::EventFd, move |e: &IntrEvent| {
            hits[i].fetch_add(e.count, Ordering::SeqCst);
        })
        .unwrap();
    }
    assert_eq!(h.source_count(), 1000);
    for fd in &fds {
        fd.signal().unwrap();
    }
    eventually("every source dispatched", || {
        hits.iter().all(|c| c.load(Ordering::SeqCst) == 1)
    });
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        hits.iter().all(|c| c.load(Ordering::SeqCst) == 1),
        "no duplicate"
    );
    t.shutdown().unwrap();
}

/// Writers signal sources while other threads keep adding and removing extra callbacks on
/// them. Every signal must reach the permanent callback exactly once (the counts sum to the
/// writes), and no extra callback may run after `unregister` returned `Removed` or after
/// `unregister_sync` returned.
#[test]
fn concurrent_register_unregister_loses_and_duplicates_nothing() {
    const SOURCES: usize = 16;
    const WRITES: u64 = 2000;
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let fds: Arc<Vec<EventFd>> = Arc::new((0..SOURCES).map(|_| EventFd::new().unwrap()).collect());
    let total = Arc::new(AtomicU64::new(0));
    for fd in fds.iter() {
        let total = total.clone();
        h.register(fd.as_fd(), SourceKind::EventFd, move |e: &IntrEvent| {
            total.fetch_add(e.count, Ordering::SeqCst);
        })
        .unwrap();
    }
    let violations = Arc::new(AtomicUsize::new(0));
    let churn_done = Arc::new(AtomicBool::new(false));
    let mut churners = Vec::new();
    for c in 0..3 {
        let (h, fds, violations, done) = (
            h.clone(),
            fds.clone(),
            violations.clone(),
            churn_done.clone(),
        );
        churners.push(std::thread::spawn(move || {
            let mut i = c;
            while !done.load(Ordering::SeqCst) {
                let fd = &fds[i % SOURCES];
                let gone = Arc::new(AtomicBool::new(false));
                let g = gone.clone();
                let v = violations.clone();
                let reg = h
                    .register(fd.as_fd(), SourceKind::EventFd, move |_: &IntrEvent| {
                        if g.load(Ordering::SeqCst) {
                            v.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                    .unwrap();
                std::thread::yield_now();
                h.unregister_sync(reg).unwrap();
                gone.store(true, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    let mut writers = Vec::new();
    for w in 0..2 {
        let fds = fds.clone();
        writers.push(std::thread::spawn(move || {
            for k in 0..WRITES {
                fds[(k as usize * 7 + w) % SOURCES].signal().unwrap();
            }
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    eventually("every write counted", || {
        total.load(Ordering::SeqCst) >= 2 * WRITES
    });
    churn_done.store(true, Ordering::SeqCst);
    for c in churners {
        c.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(total.load(Ordering::SeqCst), 2 * WRITES, "no duplicate");
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a removed callback ran"
    );
    assert_eq!(h.source_count(), SOURCES);
    t.shutdown().unwrap();
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().unwrap()
}

#[test]
fn hang_up_and_read_errors_remove_the_source_and_tell_the_owner() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let removed = Arc::new(Mutex::new(Vec::new()));
    // A pipe whose writer closes: hang-up.
    let (r1, w1) = pipe();
    // A pipe that delivers 3 bytes where an 8-byte counter is expected: a read error.
    let (r2, w2) = pipe();
    for r in [&r1, &r2] {
        let rm = removed.clone();
        h.register_with_removal(
            r.as_fd(),
            SourceKind::Vfio,
            |_: &IntrEvent| panic!("a broken source must not be dispatched"),
            move |fd, why| rm.lock().unwrap().push((fd, why)),
        )
        .unwrap();
    }
    drop(w1);
    nix::unistd::write(&w2, b"abc").unwrap();
    eventually("both removed", || removed.lock().unwrap().len() == 2);
    let got = removed.lock().unwrap().clone();
    assert!(
        got.contains(&(r1.as_raw_fd(), RemovedReason::HangUp)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|&(fd, why)| fd == r2.as_raw_fd() && matches!(why, RemovedReason::ReadError(_))),
        "{got:?}"
    );
    assert_eq!(h.source_count(), 0);
    t.shutdown().unwrap();
}

#[test]
fn readable_sources_are_not_read_for_the_callback() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let (r, w) = pipe();
    let got = Arc::new(Mutex::new(Vec::new()));
    let (g, rfd) = (got.clone(), r.as_raw_fd());
    h.register(r.as_fd(), SourceKind::Readable, move |e: &IntrEvent| {
        assert_eq!(e.count, 0);
        let mut buf = [0u8; 16];
        let n = nix::unistd::read(rfd, &mut buf).unwrap();
        g.lock().unwrap().extend_from_slice(&buf[..n]);
    })
    .unwrap();
    nix::unistd::write(&w, b"hello").unwrap();
    eventually("callback read the data", || {
        got.lock().unwrap().as_slice() == b"hello"
    });
    t.shutdown().unwrap();
}

#[test]
fn alarms_run_in_deadline_order_and_cancel() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let order = Arc::new(Mutex::new(Vec::new()));
    let push = |name: &'static str| {
        let o = order.clone();
        move || o.lock().unwrap().push(name)
    };
    h.set_alarm(Duration::from_millis(30), push("c")).unwrap();
    h.set_alarm(Duration::from_millis(10), push("a")).unwrap();
    let cancelled = h
        .set_alarm(Duration::from_millis(20), push("never"))
        .unwrap();
    h.set_alarm(Duration::from_millis(20), push("b")).unwrap();
    assert!(h.cancel_alarm(cancelled).unwrap());
    assert!(
        !h.cancel_alarm(cancelled).unwrap(),
        "second cancel finds nothing"
    );
    // An alarm that sets another one, which runs after everything above.
    let (h2, o2) = (h.clone(), order.clone());
    h.set_alarm(Duration::from_millis(40), move || {
        o2.lock().unwrap().push("d");
        let o3 = o2.clone();
        h2.set_alarm(Duration::from_millis(5), move || {
            o3.lock().unwrap().push("e")
        })
        .unwrap();
    })
    .unwrap();
    eventually("five alarms ran", || order.lock().unwrap().len() == 5);
    assert_eq!(*order.lock().unwrap(), vec!["a", "b", "c", "d", "e"]);
    assert_eq!(h.alarm_count(), 0);
    t.shutdown().unwrap();
}

#[test]
fn alarms_fire_on_time_and_cancel_waits_for_a_running_one() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let start = Instant::now();
    let fired = Arc::new(Mutex::new(None));
    let f = fired.clone();
    h.set_alarm(Duration::from_millis(50), move || {
        *f.lock().unwrap() = Some(start.elapsed());
    })
    .unwrap();
    eventually("fired", || fired.lock().unwrap().is_some());
    let at = fired.lock().unwrap().unwrap();
    assert!(at >= Duration::from_millis(50), "early: {at:?}");
    assert!(at < Duration::from_millis(1000), "late: {at:?}");

    // A slow alarm: cancel from here returns only after it finished.
    let done = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicBool::new(false));
    let (d, e) = (done.clone(), entered.clone());
    let id = h
        .set_alarm(Duration::ZERO, move || {
            e.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            d.store(true, Ordering::SeqCst);
        })
        .unwrap();
    eventually("slow alarm started", || entered.load(Ordering::SeqCst));
    assert!(!h.cancel_alarm(id).unwrap(), "it is running, not pending");
    assert!(done.load(Ordering::SeqCst), "cancel waited for it");
    t.shutdown().unwrap();
}

#[test]
fn shutdown_tells_owners_drops_alarms_and_refuses_new_work() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let ev = EventFd::new().unwrap();
    let removed = Arc::new(Mutex::new(Vec::new()));
    let rm = removed.clone();
    h.register_with_removal(
        ev.as_fd(),
        SourceKind::EventFd,
        |_: &IntrEvent| {},
        move |fd, why| rm.lock().unwrap().push((fd, why)),
    )
    .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    h.set_alarm(Duration::from_secs(3600), move || {
        r.store(true, Ordering::SeqCst)
    })
    .unwrap();
    t.shutdown().unwrap();
    assert_eq!(
        *removed.lock().unwrap(),
        vec![(ev.as_raw_fd(), RemovedReason::Shutdown)]
    );
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(
        h.set_alarm(Duration::ZERO, || {}).unwrap_err(),
        IntrThreadError::ShutDown
    );
    assert_eq!(
        h.register(ev.as_fd(), SourceKind::EventFd, |_: &IntrEvent| {})
            .unwrap_err(),
        IntrThreadError::ShutDown
    );
}

#[test]
fn busy_polling_thread_dispatches_and_shuts_down() {
    use rdk_os_linux::intr::IntrConfig;
    let t = InterruptThread::spawn_with(IntrConfig {
        busy_poll: Some(Duration::from_millis(50)),
    })
    .unwrap();
    let h = t.handle();
    let ev = EventFd::new().unwrap();
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    h.register(ev.as_fd(), SourceKind::EventFd, move |e: &IntrEvent| {
        n2.fetch_add(e.count, Ordering::SeqCst);
    })
    .unwrap();
    for i in 1..=20 {
        ev.signal().unwrap();
        eventually("dispatched while spinning", || {
            n.load(Ordering::SeqCst) == i
        });
    }
    // Alarms still fire while the thread spins.
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    h.set_alarm(Duration::from_millis(5), move || {
        f.store(true, Ordering::SeqCst)
    })
    .unwrap();
    eventually("alarm", || fired.load(Ordering::SeqCst));
    // Shutdown is prompt even in the middle of a spin window.
    ev.signal().unwrap();
    let start = Instant::now();
    t.shutdown().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// Sources without callbacks are parked (disarmed, not removed): they stay silent, come back on
/// registration, and are bounded (closing one and reusing its number: see intr_fds.rs).
#[test]
fn parked_sources_stay_silent_and_come_back() {
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let hits = Arc::new(AtomicU64::new(0));
    let cb = |hits: &Arc<AtomicU64>| {
        let hits = hits.clone();
        move |e: &IntrEvent| {
            hits.fetch_add(e.count, Ordering::SeqCst);
        }
    };
    let ev = EventFd::new().unwrap();
    let r = h
        .register(ev.as_fd(), SourceKind::EventFd, cb(&hits))
        .unwrap();
    assert_eq!(h.unregister(r).unwrap(), Unregistered::Removed);
    ev.signal().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a parked source is silent");
    assert_eq!(ev.ack().unwrap(), 1, "and its count is left to its owner");
    // Registered again: armed again.
    let r = h.register(ev.as_fd(), SourceKind::Vfio, cb(&hits)).unwrap();
    ev.signal().unwrap();
    eventually("re-armed", || hits.load(Ordering::SeqCst) == 1);
    h.unregister(r).unwrap();
    // Many parked sources: still correct beyond the parking limit.
    let many: Vec<EventFd> = (0..200).map(|_| EventFd::new().unwrap()).collect();
    for e in &many {
        let r = h
            .register(e.as_fd(), SourceKind::EventFd, cb(&hits))
            .unwrap();
        h.unregister(r).unwrap();
    }
    for e in &many {
        e.signal().unwrap();
    }
    for e in many.iter().step_by(10) {
        h.register(e.as_fd(), SourceKind::EventFd, cb(&hits))
            .unwrap();
    }
    // The 20 re-registered ones had a pending count: level-triggered, they fire now.
    eventually("re-registered sources fire", || {
        hits.load(Ordering::SeqCst) == 21
    });
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(hits.load(Ordering::SeqCst), 21, "the others stayed silent");
    t.shutdown().unwrap();
}

/// `Removed` promises that the thread is done with the fd (the owner may close it, and any
/// count is left to it): a read the thread has already begun must make `unregister` say
/// `Deferred`. Deterministic: A and B are reported in one batch, A's callback empties B (a
/// blocking eventfd), so the thread then blocks in its read of B until B is signalled again.
#[test]
fn removed_means_no_read_of_the_fd_is_in_flight() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::eventfd::{EfdFlags, EventFd as BlockingEventFd};
    use std::sync::mpsc;

    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let b = Arc::new(BlockingEventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).unwrap());
    let readable = |e: &BlockingEventFd| {
        let mut fds = [PollFd::new(e.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() > 0
    };
    let b_calls = Arc::new(AtomicU64::new(0));
    let bc = b_calls.clone();
    let b_reg = h
        .register(b.as_fd(), SourceKind::EventFd, move |_: &IntrEvent| {
            bc.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let a = EventFd::new().unwrap();
    let drained = Arc::new(AtomicBool::new(false));
    let (b2, d) = (b.clone(), drained.clone());
    h.register(a.as_fd(), SourceKind::EventFd, move |_: &IntrEvent| {
        if readable(&b2) {
            b2.read().unwrap();
            d.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    // A gate holds the thread until A and B are both ready, so one epoll_wait reports both.
    let gate = EventFd::new().unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (entered_tx, go_rx) = (Mutex::new(entered_tx), Mutex::new(go_rx));
    h.register(gate.as_fd(), SourceKind::EventFd, move |_: &IntrEvent| {
        entered_tx.lock().unwrap().send(()).unwrap();
        let _ = go_rx.lock().unwrap().recv();
    })
    .unwrap();
    gate.signal().unwrap();
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    a.signal().unwrap();
    b.write(1).unwrap();
    go_tx.send(()).unwrap();
    eventually("A's callback emptied B", || drained.load(Ordering::SeqCst));
    // The thread goes on to B (reported after A) and blocks reading it.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b_calls.load(Ordering::SeqCst), 0, "B was not dispatched");

    let outcome = h.unregister(b_reg).unwrap();
    // The owner, told `Removed`, may count on B's next signal being left to it.
    b.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    h.wait_idle().unwrap();
    let left = if readable(&b) { b.read().unwrap() } else { 0 };
    assert_eq!(
        b_calls.load(Ordering::SeqCst),
        0,
        "an unregistered callback ran"
    );
    assert!(
        outcome == Unregistered::Deferred || left == 1,
        "unregister said {outcome:?} while the thread was reading B, and the thread then took \
         the count written after it (left for the owner: {left})"
    );
    t.shutdown().unwrap();
}

/// An alarm that sets itself again for "now" (a common way to run work on the interrupt
/// thread as soon as possible) must not starve the sources or make shutdown hang.
#[test]
fn a_self_renewing_alarm_starves_neither_sources_nor_shutdown() {
    use rdk_os_linux::intr::IntrHandle;
    use std::sync::mpsc;

    fn again(h: IntrHandle, runs: Arc<AtomicU64>) {
        let h2 = h.clone();
        let _ = h.set_alarm(Duration::ZERO, move || {
            runs.fetch_add(1, Ordering::SeqCst);
            again(h2, runs);
        });
    }

    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    // Shut down from another thread, so that a hang fails the test instead of hanging it.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = go_rx.recv();
        let _ = done_tx.send(t.shutdown());
    });
    let runs = Arc::new(AtomicU64::new(0));
    again(h.clone(), runs.clone());
    eventually("the alarm renews itself", || {
        runs.load(Ordering::SeqCst) > 100
    });
    let ev = EventFd::new().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let hh = hits.clone();
    h.register(ev.as_fd(), SourceKind::EventFd, move |e: &IntrEvent| {
        hh.fetch_add(e.count, Ordering::SeqCst);
    })
    .unwrap();
    ev.signal().unwrap();
    eventually("the source is dispatched between alarm runs", || {
        hits.load(Ordering::SeqCst) == 1
    });
    go_tx.send(()).unwrap();
    let r = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown hangs behind a self-renewing alarm");
    r.unwrap();
}

/// `shutdown` called on the interrupt thread (say from an alarm that owns the
/// `InterruptThread`) cannot join, but must still make the thread stop rather than leave it
/// running, detached, for ever.
#[test]
fn shutdown_on_the_interrupt_thread_still_stops_it() {
    use std::sync::mpsc;
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let (tx, rx) = mpsc::channel();
    h.set_alarm(Duration::ZERO, move || {
        let _ = tx.send(t.shutdown());
    })
    .unwrap();
    let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        r,
        Err(IntrThreadError::WouldDeadlock {
            op: "InterruptThread::shutdown"
        })
    );
    eventually("the thread stopped taking work", || {
        h.set_alarm(Duration::from_secs(3600), || {}) == Err(IntrThreadError::ShutDown)
    });
}

/// A panicking callback (with unwinding) takes the thread down; whoever waits for a round to
/// end (`unregister_sync`, `wait_idle`) must not wait for ever, and new work is refused.
#[test]
fn a_panicking_callback_leaves_no_waiter_hanging() {
    use std::sync::mpsc;
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let ev = EventFd::new().unwrap();
    let reg = h
        .register(ev.as_fd(), SourceKind::EventFd, |_: &IntrEvent| {
            panic!("a buggy callback (expected by this test)")
        })
        .unwrap();
    ev.signal().unwrap();
    eventually("dispatched", || h.dispatched() == 1);
    std::thread::sleep(Duration::from_millis(50));
    let (tx, rx) = mpsc::channel();
    let h2 = h.clone();
    std::thread::spawn(move || {
        let _ = tx.send(h2.unregister_sync(reg));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("unregister_sync hangs after a callback panicked");
    r.unwrap();
    assert_eq!(
        h.register(ev.as_fd(), SourceKind::EventFd, |_: &IntrEvent| {})
            .unwrap_err(),
        IntrThreadError::ShutDown,
        "the thread is gone: say so"
    );
    t.shutdown().unwrap();
}

/// Whether thread `tid` of this process is asleep (state `S` in its `stat`).
fn asleep(tid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // "tid (comm) S ...": the state follows the last ')' (comm may contain one).
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
}

#[test]
fn wait_idle_ends_with_the_round_it_waited_for_even_if_another_starts_at_once() {
    use std::sync::mpsc;
    // Two sources whose callbacks block on a gate: A's round is running when wait_idle is
    // called, and B is already pending, so the thread starts B's round the moment A's ends.
    // wait_idle must return then, without needing a moment with nothing running (under a
    // source that never stops firing there may be none). Before the fix it returned only if
    // its wake-up beat the thread to the lock; 20 rounds in a row make that unlikely.
    let t = InterruptThread::spawn().unwrap();
    let h = t.handle();
    let (a, b) = (EventFd::new().unwrap(), EventFd::new().unwrap());
    let (entered, in_cb) = mpsc::channel::<&str>();
    let gated = |name: &'static str| {
        let (open, gate) = mpsc::channel::<()>();
        let (entered, gate) = (entered.clone(), Mutex::new(gate));
        let cb = move |_: &IntrEvent| {
            entered.send(name).unwrap();
            gate.lock().unwrap().recv().unwrap();
        };
        (open, cb)
    };
    let (open_a, cb_a) = gated("A");
    let (open_b, cb_b) = gated("B");
    h.register(a.as_fd(), SourceKind::EventFd, cb_a).unwrap();
    h.register(b.as_fd(), SourceKind::EventFd, cb_b).unwrap();
    let wait = Duration::from_secs(10);
    for _ in 0..20 {
        a.signal().unwrap();
        assert_eq!(in_cb.recv_timeout(wait), Ok("A"));
        b.signal().unwrap();
        let (tx, rx) = mpsc::channel();
        let h2 = h.clone();
        std::thread::spawn(move || {
            tx.send(Err(nix::unistd::gettid().as_raw())).unwrap();
            tx.send(Ok(h2.wait_idle())).unwrap();
        });
        let Ok(Err(tid)) = rx.recv_timeout(wait) else {
            panic!("the waiter did not start")
        };
        // Asleep in wait_idle while A's callback is held: it saw A's round running.
        eventually("the waiter sleeps in wait_idle", || asleep(tid));
        open_a.send(()).unwrap();
        assert_eq!(in_cb.recv_timeout(wait), Ok("B"));
        let r = rx
            .recv_timeout(wait)
            .expect("wait_idle did not return when the round it waited for ended");
        assert_eq!(r, Ok(Ok(())));
        open_b.send(()).unwrap();
    }
    t.shutdown().unwrap();
}
