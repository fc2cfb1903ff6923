//! The interrupt thread: one epoll loop dispatching interrupt sources and alarms.

use super::sys;
use crate::clock::LinuxClock;
use crate::eventfd::EventFd;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use rdk_core::intr::{AlarmId, AlarmList, CallbackId, SourceTable, Unregistered as CoreUnreg};
use rdk_core::os::{Clock, EventNotifier, Instant};
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

/// How the thread reads a source when it becomes ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// An eventfd: 8 bytes read (the count) before the callbacks run.
    EventFd,
    /// A timerfd: 8 bytes read (the expirations).
    TimerFd,
    /// A VFIO interrupt eventfd (MSI, MSI-X, INTx, error or request): 8 bytes read.
    Vfio,
    /// Anything else pollable (a socket, a TAP fd): nothing is read; the callback must consume
    /// what made the fd readable, or it is called again at once (epoll is level-triggered).
    Readable,
}

impl SourceKind {
    fn reads_counter(self) -> bool {
        !matches!(self, SourceKind::Readable)
    }
}

/// What a callback is told about the event that woke it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntrEvent {
    /// The source's file descriptor.
    pub fd: RawFd,
    /// The counter read from it (eventfd count, timer expirations); 0 for `Readable`.
    pub count: u64,
}

/// Why a source was removed by the thread rather than by its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovedReason {
    /// Reading it failed or hit end of file: the device or peer behind it is gone.
    ReadError(Errno),
    /// epoll reported hang-up or error on it.
    HangUp,
    /// The interrupt thread shut down.
    Shutdown,
}

/// Errors of the interrupt thread's API.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntrThreadError {
    /// A system call failed.
    Os {
        /// Which.
        op: &'static str,
        /// errno.
        errno: Errno,
    },
    /// The fd is already registered as another kind of source.
    KindMismatch {
        /// The fd.
        fd: RawFd,
        /// The kind it has.
        registered: SourceKind,
    },
    /// No such source or callback (already unregistered, or removed after a read error).
    NotRegistered,
    /// The thread has shut down; nothing can be registered any more.
    ShutDown,
    /// A blocking call was made from the interrupt thread itself, where it would wait for its
    /// own caller.
    WouldDeadlock {
        /// Which call.
        op: &'static str,
    },
}

impl fmt::Display for IntrThreadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntrThreadError::Os { op, errno } => write!(
                f,
                "{op} failed: {errno}{}",
                if matches!(errno, Errno::EMFILE | Errno::ENFILE) {
                    "; raise the open-file limit (ulimit -n)"
                } else {
                    ""
                }
            ),
            IntrThreadError::KindMismatch { fd, registered } => write!(
                f,
                "fd {fd} is already registered as a {registered:?} source; register every \
                 callback of one fd with the same kind"
            ),
            IntrThreadError::NotRegistered => write!(
                f,
                "no such interrupt source or callback: it was unregistered already, or removed \
                 by the thread after a read error (see its on_removed notice)"
            ),
            IntrThreadError::ShutDown => {
                write!(f, "the interrupt thread has shut down; start a new one")
            }
            IntrThreadError::WouldDeadlock { op } => write!(
                f,
                "{op} called from an interrupt callback would wait for itself; use the \
                 non-waiting variant there"
            ),
        }
    }
}

impl std::error::Error for IntrThreadError {}

fn os(op: &'static str) -> impl Fn(Errno) -> IntrThreadError {
    move |errno| IntrThreadError::Os { op, errno }
}

/// A registered callback; give it back to [`IntrHandle::unregister`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    fd: RawFd,
    id: CallbackId,
}

impl Registration {
    /// The source's file descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

/// What [`IntrHandle::unregister`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unregistered {
    /// Removed: it will not run again, and if it was the source's last callback the fd is no
    /// longer watched, so the owner may close it now.
    Removed,
    /// The source is being dispatched right now (possibly this very callback, if called from
    /// inside it): the callback will not be started again and is dropped when the round ends.
    /// Before closing the fd, call [`IntrHandle::wait_idle`] from outside the thread.
    Deferred,
}

type Callback = Arc<dyn Fn(&IntrEvent) + Send + Sync>;
type RemovedFn = Arc<dyn Fn(RawFd, RemovedReason) + Send + Sync>;
type AlarmFn = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
struct Entry {
    cb: Callback,
    on_removed: Option<RemovedFn>,
}

struct Watched {
    kind: SourceKind,
    /// Epoll data is `gen << 32 | fd`, so an event still in flight for an fd that was removed
    /// and re-registered (or closed and its number reused) is recognised as stale.
    gen: u32,
    /// No callbacks left: the fd stays in the epoll set, disarmed (see [`Shared::park`]).
    parked: bool,
}

/// Most parked fds kept; beyond, the oldest is really removed from the epoll set.
const PARKED_MAX: usize = 64;

fn epoll_data(fd: RawFd, gen: u32) -> u64 {
    (u64::from(gen) << 32) | fd as u32 as u64
}

/// Epoll data of the two fds the thread owns (real fds are below 2^31, generation 0 unused).
const WAKE: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;

struct State {
    table: SourceTable<RawFd, Entry>,
    watched: BTreeMap<RawFd, Watched>,
    parked: std::collections::VecDeque<RawFd>,
    next_gen: u32,
    alarms: AlarmList<AlarmFn>,
    running_alarm: Option<AlarmId>,
    /// Sources being dispatched (at most one at a time; a set keeps it obviously right).
    busy: Option<RawFd>,
    armed_for: Option<Instant>,
    shutdown: bool,
    dispatched: u64,
    /// Dispatch rounds and alarms that have ended (and 1 for the loop's exit): `wait_idle`
    /// waits for this to move rather than for a moment with nothing running, which a
    /// source that fires without pause may never leave.
    rounds_ended: u64,
}

impl State {
    /// Clears what [`IntrHandle::wait_idle`] waits for and counts the round as ended.
    fn end_running(&mut self) {
        self.busy = None;
        self.running_alarm = None;
        self.rounds_ended = self.rounds_ended.wrapping_add(1);
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a dispatch round or an alarm ends.
    idle: Condvar,
    epoll: Epoll,
    wake: EventFd,
    timer: TimerFd,
    clock: LinuxClock,
    thread: Mutex<Option<ThreadId>>,
    busy_poll: Option<Duration>,
    /// Makes `timerfd_settime` fail, which the kernel does not do on its own for a valid fd
    /// and time: the only way to test the failure paths.
    #[cfg(test)]
    fail_settime: std::sync::atomic::AtomicBool,
}

/// How the interrupt thread waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntrConfig {
    /// After each event, keep polling epoll without sleeping for this long before blocking
    /// (as Linux's `SO_BUSY_POLL` does for sockets). Wake-up latency then drops from the
    /// scheduler's (tens of µs on a VM whose idle CPUs halt) to about a microsecond while
    /// events keep coming at least this often — at the price of that CPU spinning. `None`
    /// (the default) always blocks, like DPDK's interrupt thread.
    pub busy_poll: Option<Duration>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking callback runs outside the lock, so poisoning can only come from a bug in
        // this module; the state is still consistent between statements, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn epfd(&self) -> RawFd {
        self.epoll.0.as_raw_fd()
    }

    fn on_thread(&self) -> bool {
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) == Some(std::thread::current().id())
    }

    /// Takes a source without callbacks out of service without removing it from the epoll
    /// set: `EPOLL_CTL_MOD` to a one-shot mask with no events is a third of the cost of a
    /// `DEL` + `ADD` pair, and a source unregistered and registered again (a driver stopping
    /// and starting a queue) pays only two `MOD`s. The one-shot mask means at most one stray
    /// hang-up report can still come, which carries a parked generation and is ignored. The
    /// owner may close a parked fd: the kernel drops it from the set by itself, and a later
    /// registration of the same number falls back to `ADD`. At most [`PARKED_MAX`] are kept.
    fn park(&self, st: &mut State, fd: RawFd) {
        let Some(w) = st.watched.get_mut(&fd) else {
            return;
        };
        let data = epoll_data(fd, w.gen);
        if sys::epoll_mod(self.epfd(), fd, libc::EPOLLONESHOT as u32, data).is_err() {
            // Already closed: nothing is left in the set.
            st.watched.remove(&fd);
            return;
        }
        w.parked = true;
        st.parked.push_back(fd);
        if st.parked.len() > PARKED_MAX {
            if let Some(old) = st.parked.pop_front() {
                if st.watched.get(&old).is_some_and(|w| w.parked) {
                    st.watched.remove(&old);
                    let _ = sys::epoll_del(self.epfd(), old);
                }
            }
        }
    }

    /// Arms the timerfd for the earliest alarm (or disarms it), if that changed.
    fn rearm(&self, st: &mut State) -> Result<(), IntrThreadError> {
        let next = st.alarms.next_deadline();
        if next == st.armed_for {
            return Ok(());
        }
        #[cfg(test)]
        if self.fail_settime.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(os("timerfd_settime")(Errno::EINVAL));
        }
        match next {
            Some(d) => {
                // An absolute CLOCK_MONOTONIC deadline: LinuxClock reads the same clock, so
                // there is no conversion error. Zero means "disarm" to the kernel, so a deadline
                // at the clock's origin becomes 1 ns.
                let ns = d.as_nanos().max(1);
                let ts = TimeSpec::new((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64);
                self.timer
                    .set(
                        Expiration::OneShot(ts),
                        TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                    )
                    .map_err(os("timerfd_settime"))?;
            }
            None => self.timer.unset().map_err(os("timerfd_settime"))?,
        }
        st.armed_for = next;
        Ok(())
    }
}

/// The process's interrupt thread. Create one, share [`IntrHandle`]s with whoever registers
/// sources, and [`shutdown`](Self::shutdown) it (or drop it) at the end: the thread is joined
/// and every fd it owns (epoll, wake eventfd, timerfd) is closed. Sources' fds belong to the
/// callers and are never closed by the thread.
pub struct InterruptThread {
    handle: IntrHandle,
    join: Option<JoinHandle<()>>,
}

/// A cloneable, thread-safe handle to an [`InterruptThread`].
#[derive(Clone)]
pub struct IntrHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for IntrHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("IntrHandle")
            .field("sources", &st.table.len())
            .field("alarms", &st.alarms.len())
            .field("shutdown", &st.shutdown)
            .finish()
    }
}

impl InterruptThread {
    /// Starts the thread (named `rdk-intr`), always sleeping in `epoll_wait` when idle.
    pub fn spawn() -> Result<Self, IntrThreadError> {
        Self::spawn_with(IntrConfig::default())
    }

    /// Starts the thread with `config`.
    pub fn spawn_with(config: IntrConfig) -> Result<Self, IntrThreadError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(os("epoll_create1"))?;
        let wake = EventFd::new().map_err(|_| IntrThreadError::Os {
            op: "eventfd",
            errno: Errno::last(),
        })?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(os("timerfd_create"))?;
        let epfd = epoll.0.as_raw_fd();
        let inn = libc::EPOLLIN as u32;
        sys::epoll_add(epfd, wake.as_raw_fd(), inn, WAKE).map_err(os("epoll_ctl"))?;
        sys::epoll_add(epfd, timer.as_fd().as_raw_fd(), inn, TIMER).map_err(os("epoll_ctl"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                table: SourceTable::new(),
                watched: BTreeMap::new(),
                parked: std::collections::VecDeque::new(),
                next_gen: 1,
                alarms: AlarmList::new(),
                running_alarm: None,
                busy: None,
                armed_for: None,
                shutdown: false,
                dispatched: 0,
                rounds_ended: 0,
            }),
            idle: Condvar::new(),
            epoll,
            wake,
            timer,
            clock: LinuxClock::new(),
            thread: Mutex::new(None),
            busy_poll: config.busy_poll.filter(|d| !d.is_zero()),
            #[cfg(test)]
            fail_settime: std::sync::atomic::AtomicBool::new(false),
        });
        let run = Arc::clone(&shared);
        let join = std::thread::Builder::new()
            .name("rdk-intr".into())
            .spawn(move || run_loop(&run))
            .map_err(|e| IntrThreadError::Os {
                op: "spawn the interrupt thread",
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
            })?;
        *shared.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(join.thread().id());
        Ok(Self {
            handle: IntrHandle { shared },
            join: Some(join),
        })
    }

    /// A handle for registering sources and alarms.
    pub fn handle(&self) -> IntrHandle {
        self.handle.clone()
    }

    /// Stops the thread and joins it: pending alarms are dropped without running, every
    /// source's `on_removed` hears [`RemovedReason::Shutdown`], and the thread's own fds are
    /// closed when the last handle goes. Calls through remaining handles return
    /// [`IntrThreadError::ShutDown`].
    pub fn shutdown(mut self) -> Result<(), IntrThreadError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), IntrThreadError> {
        // Checked before taking the join handle: refusing must leave it in place, so that the
        // drop that follows still tells the thread to exit (see `Drop`).
        if self.join.is_some() && self.handle.shared.on_thread() {
            return Err(IntrThreadError::WouldDeadlock {
                op: "InterruptThread::shutdown",
            });
        }
        let Some(join) = self.join.take() else {
            return Ok(());
        };
        self.handle.shared.lock().shutdown = true;
        self.handle
            .shared
            .wake
            .signal()
            .map_err(|_| IntrThreadError::Os {
                op: "eventfd write",
                errno: Errno::last(),
            })?;
        // A callback that panicked took the thread down; its state is still consistent.
        let _ = join.join();
        let sh = &self.handle.shared;
        let (removed, alarms) = {
            let mut st = sh.lock();
            let fds: Vec<RawFd> = st.table.keys().collect();
            let mut removed = Vec::new();
            for fd in fds {
                let _ = sys::epoll_del(sh.epfd(), fd);
                st.watched.remove(&fd);
                if let Ok(entries) = st.table.remove_source(fd) {
                    removed.extend(entries.into_iter().map(|e| (fd, e)));
                }
            }
            let alarms = st.alarms.take_due(Instant::from_nanos(u64::MAX));
            (removed, alarms)
        };
        drop(alarms);
        for (fd, e) in removed {
            if let Some(f) = e.on_removed {
                f(fd, RemovedReason::Shutdown);
            }
        }
        sh.idle.notify_all();
        Ok(())
    }
}

impl Drop for InterruptThread {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            // Only a drop on the interrupt thread itself gets here; the thread exits on its
            // own once `shutdown` is seen.
            self.handle.shared.lock().shutdown = true;
            let _ = self.handle.shared.wake.signal();
            let _ = e;
        }
    }
}

impl IntrHandle {
    /// Registers `cb` for `fd`. The fd stays the caller's: keep it open until the source is
    /// unregistered (see [`Unregistered`]).
    pub fn register(
        &self,
        fd: BorrowedFd<'_>,
        kind: SourceKind,
        cb: impl Fn(&IntrEvent) + Send + Sync + 'static,
    ) -> Result<Registration, IntrThreadError> {
        self.register_entry(
            fd,
            kind,
            Entry {
                cb: Arc::new(cb),
                on_removed: None,
            },
        )
    }

    /// Like [`register`](Self::register), with `on_removed` called (on the interrupt thread,
    /// or in `shutdown`) if the thread removes the source itself: a read error, a hang-up (the
    /// hot-unplug path) or shutdown.
    pub fn register_with_removal(
        &self,
        fd: BorrowedFd<'_>,
        kind: SourceKind,
        cb: impl Fn(&IntrEvent) + Send + Sync + 'static,
        on_removed: impl Fn(RawFd, RemovedReason) + Send + Sync + 'static,
    ) -> Result<Registration, IntrThreadError> {
        self.register_entry(
            fd,
            kind,
            Entry {
                cb: Arc::new(cb),
                on_removed: Some(Arc::new(on_removed)),
            },
        )
    }

    fn register_entry(
        &self,
        fd: BorrowedFd<'_>,
        kind: SourceKind,
        entry: Entry,
    ) -> Result<Registration, IntrThreadError> {
        let raw = fd.as_raw_fd();
        let sh = &self.shared;
        let mut st = sh.lock();
        if st.shutdown {
            return Err(IntrThreadError::ShutDown);
        }
        let gen = st.next_gen;
        let parked = st.watched.get(&raw).is_some_and(|w| w.parked);
        if parked {
            // Re-arm a parked fd with a new generation; if its number now names another file
            // (the old one was closed), MOD finds nothing and it is added afresh.
            st.next_gen = st.next_gen.wrapping_add(1).max(1);
            let data = epoll_data(raw, gen);
            match sys::epoll_mod(sh.epfd(), raw, libc::EPOLLIN as u32, data) {
                Ok(()) => {}
                Err(Errno::ENOENT) => {
                    sys::epoll_add(sh.epfd(), raw, libc::EPOLLIN as u32, data)
                        .map_err(os("epoll_ctl"))?;
                }
                Err(e) => return Err(os("epoll_ctl")(e)),
            }
            st.parked.retain(|&f| f != raw);
            st.watched.insert(
                raw,
                Watched {
                    kind,
                    gen,
                    parked: false,
                },
            );
        } else if let Some(w) = st.watched.get(&raw) {
            if w.kind != kind {
                return Err(IntrThreadError::KindMismatch {
                    fd: raw,
                    registered: w.kind,
                });
            }
        } else {
            // Incremental: one epoll_ctl for a new source, none for another callback.
            st.next_gen = st.next_gen.wrapping_add(1).max(1);
            let data = epoll_data(raw, gen);
            sys::epoll_add(sh.epfd(), raw, libc::EPOLLIN as u32, data).map_err(os("epoll_ctl"))?;
            st.watched.insert(
                raw,
                Watched {
                    kind,
                    gen,
                    parked: false,
                },
            );
        }
        let r = st.table.register(raw, entry);
        Ok(Registration { fd: raw, id: r.id })
    }

    /// Unregisters one callback. Callable from any thread, including from inside a callback
    /// (of this source or another); see [`Unregistered`] for what each outcome promises.
    pub fn unregister(&self, reg: Registration) -> Result<Unregistered, IntrThreadError> {
        let sh = &self.shared;
        let mut st = sh.lock();
        match st.table.unregister(reg.fd, reg.id) {
            Ok(CoreUnreg::Removed { source_empty, .. }) => {
                if source_empty {
                    sh.park(&mut st, reg.fd);
                }
                Ok(Unregistered::Removed)
            }
            Ok(CoreUnreg::Deferred) => Ok(Unregistered::Deferred),
            Err(_) => Err(IntrThreadError::NotRegistered),
        }
    }

    /// Waits until the dispatch round or alarm running when it was called (if any) has ended,
    /// so a callback that was [`Deferred`](Unregistered::Deferred) before the call has
    /// finished and its fd may be closed. Refused on the interrupt thread.
    ///
    /// It does not wait for a moment with nothing running: under a source that fires without
    /// pause the thread starts the next round before a waiter gets the lock, and such a wait
    /// might never end. The thread runs one round or alarm at a time, so the next one to end
    /// is the one that was running.
    pub fn wait_idle(&self) -> Result<(), IntrThreadError> {
        let sh = &self.shared;
        if sh.on_thread() {
            return Err(IntrThreadError::WouldDeadlock {
                op: "IntrHandle::wait_idle",
            });
        }
        let mut st = sh.lock();
        if st.busy.is_none() && st.running_alarm.is_none() {
            return Ok(());
        }
        let ended = st.rounds_ended;
        while st.rounds_ended == ended {
            st = sh.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }

    /// Unregisters and, outside the interrupt thread, waits until the callback cannot be
    /// running any more: on return the fd may be closed.
    pub fn unregister_sync(&self, reg: Registration) -> Result<(), IntrThreadError> {
        if self.unregister(reg)? == Unregistered::Deferred {
            self.wait_idle()?;
        }
        Ok(())
    }

    /// Number of registered sources.
    pub fn source_count(&self) -> usize {
        self.shared.lock().table.len()
    }

    /// Live callbacks of `fd`.
    pub fn callback_count(&self, fd: RawFd) -> usize {
        self.shared.lock().table.callback_count(fd)
    }

    /// Source events dispatched so far (rounds in which callbacks ran).
    pub fn dispatched(&self) -> u64 {
        self.shared.lock().dispatched
    }

    /// Sets an alarm: `cb` runs once on the interrupt thread `after` from now. Alarms with
    /// the same deadline run in the order they were set; a callback may set new alarms.
    ///
    /// If the timer cannot be armed for it, nothing is kept: the error is returned and `cb`
    /// is dropped without running.
    pub fn set_alarm(
        &self,
        after: Duration,
        cb: impl FnOnce() + Send + 'static,
    ) -> Result<AlarmId, IntrThreadError> {
        let sh = &self.shared;
        let deadline = sh.clock.now().saturating_add(after);
        let mut st = sh.lock();
        if st.shutdown {
            return Err(IntrThreadError::ShutDown);
        }
        let (id, _) = st.alarms.set(deadline, Box::new(cb));
        if let Err(e) = sh.rearm(&mut st) {
            // Kept, it would run whenever a later alarm armed the timer, and the caller, who
            // got no id, could not cancel it. The timer is as it was, and so is `armed_for`.
            let cb = st.alarms.cancel(id);
            drop(st);
            drop(cb);
            return Err(e);
        }
        Ok(id)
    }

    /// Cancels an alarm. `Ok(true)`: it was pending and will not run. `Ok(false)`: it already
    /// ran, or never existed — or it is running now: from another thread this waits for it to
    /// finish first (as DPDK's `rte_eal_alarm_cancel` does), from inside an alarm or interrupt
    /// callback it returns at once.
    pub fn cancel_alarm(&self, id: AlarmId) -> Result<bool, IntrThreadError> {
        let sh = &self.shared;
        let mut st = sh.lock();
        if let Some(cb) = st.alarms.cancel(id) {
            // It is cancelled whatever the timer does: one still armed for its deadline fires
            // early, finds nothing due and is re-armed by the thread, so a failure here is not
            // the caller's to handle (an error would say the alarm may still run).
            let _ = sh.rearm(&mut st);
            drop(st);
            drop(cb);
            return Ok(true);
        }
        if !sh.on_thread() {
            while st.running_alarm == Some(id) {
                st = sh.idle.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
        Ok(false)
    }

    /// Pending alarms.
    pub fn alarm_count(&self) -> usize {
        self.shared.lock().alarms.len()
    }
}

/// Marks the thread gone however [`run_loop`] ends (shutdown, a failed `epoll_wait`, or a
/// callback's panic unwinding out of it): nothing is dispatched or running any more, so
/// `wait_idle` and `cancel_alarm` must not wait, and new work is refused.
struct LoopExit<'a>(&'a Shared);

impl Drop for LoopExit<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.shutdown = true;
        st.end_running();
        drop(st);
        self.0.idle.notify_all();
    }
}

fn run_loop(sh: &Shared) {
    let _exit = LoopExit(sh);
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    // With busy polling: poll without sleeping until this instant.
    let mut spin_until: Option<Instant> = None;
    loop {
        let spinning = spin_until.is_some_and(|t| sh.clock.now() < t);
        let n = match sys::epoll_wait(sh.epfd(), &mut events, if spinning { 0 } else { -1 }) {
            Ok(0) if spinning => {
                std::hint::spin_loop();
                continue;
            }
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            // EBADF/EINVAL cannot happen on our own epoll fd; if the kernel says otherwise there
            // is nothing left to wait on.
            Err(_) => return,
        };
        for ev in &events[..n] {
            let (data, flags) = (ev.u64, ev.events);
            match data {
                WAKE => {
                    let _ = sh.wake.ack();
                }
                TIMER => run_alarms(sh),
                _ => dispatch(sh, data, flags),
            }
        }
        if sh.lock().shutdown {
            return;
        }
        if let Some(d) = sh.busy_poll {
            spin_until = Some(sh.clock.now().saturating_add(d));
        }
    }
}

fn run_alarms(sh: &Shared) {
    // The expiration count is not needed: due alarms are found by deadline. The one-shot
    // timer is disarmed now, whatever `armed_for` says.
    let _ = sys::read_counter(sh.timer.as_fd().as_raw_fd());
    sh.lock().armed_for = None;
    // Only alarms due at this instant run in this round: one that a callback sets for "now"
    // again waits for the timer, so the loop goes back to epoll_wait in between and a
    // self-renewing alarm starves neither the sources nor shutdown.
    let now = sh.clock.now();
    loop {
        // One alarm at a time, taken under the lock and run outside it: a callback may set or
        // cancel alarms, and cancel() of a later alarm still works while an earlier one runs.
        let next = {
            let mut st = sh.lock();
            match st.alarms.pop_due(now) {
                Some((id, cb)) => {
                    st.running_alarm = Some(id);
                    Some(cb)
                }
                None => {
                    // Cannot fail on our own timerfd with a valid time; if it did, the next
                    // set_alarm tries again.
                    let _ = sh.rearm(&mut st);
                    None
                }
            }
        };
        let Some(cb) = next else { return };
        cb();
        sh.lock().end_running();
        sh.idle.notify_all();
    }
}

fn dispatch(sh: &Shared, data: u64, flags: u32) {
    let fd = data as u32 as RawFd;
    let gen = (data >> 32) as u32;
    // The source is marked busy before its fd is touched: until the round ends, `unregister`
    // says `Deferred` (and `unregister_sync` waits), so `Removed` always means no read of the
    // fd is in flight — the owner may close it, and a count it is owed is not taken here.
    let kind = {
        let mut st = sh.lock();
        let kind = match st.watched.get(&fd) {
            Some(w) if w.gen == gen && !w.parked => w.kind,
            // Stale: removed (and maybe re-registered) after epoll_wait returned this event.
            _ => return,
        };
        st.busy = Some(fd);
        st.table.mark_busy(fd);
        kind
    };
    let hangup =
        flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 && flags & libc::EPOLLIN as u32 == 0;
    let read = if hangup {
        Err(RemovedReason::HangUp)
    } else if kind.reads_counter() {
        match sys::read_counter(fd) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => return end_round(sh, fd, gen), // spurious: someone else read it first
            Err(e) => Err(RemovedReason::ReadError(e)),
        }
    } else {
        Ok(0)
    };
    let count = match read {
        Ok(n) => n,
        Err(reason) => return remove_broken(sh, fd, gen, reason),
    };
    let callbacks = {
        let mut st = sh.lock();
        st.dispatched += 1;
        // The callbacks live now: one registered while the fd was read gets this count too,
        // one unregistered meanwhile (`Deferred`) does not run.
        st.table.begin_dispatch(fd).unwrap_or_default()
    };
    let event = IntrEvent { fd, count };
    for (id, entry) in callbacks {
        if !sh.lock().table.is_live(fd, id) {
            continue;
        }
        (entry.cb)(&event);
    }
    end_round(sh, fd, gen);
}

/// Ends a dispatch round of `fd`: drops callbacks unregistered meanwhile, parks the source if
/// none is left, and wakes `wait_idle`.
fn end_round(sh: &Shared, fd: RawFd, gen: u32) {
    let mut st = sh.lock();
    st.end_running();
    let end = st.table.end_dispatch(fd);
    if end.source_empty
        && st
            .watched
            .get(&fd)
            .is_some_and(|w| w.gen == gen && !w.parked)
    {
        sh.park(&mut st, fd);
    }
    drop(st);
    sh.idle.notify_all();
    drop(end);
}

/// Ends the round of a source whose read failed or hung up, and removes it.
fn remove_broken(sh: &Shared, fd: RawFd, gen: u32, reason: RemovedReason) {
    let (entries, end) = {
        let mut st = sh.lock();
        st.end_running();
        // Callbacks unregistered while the fd was read go now (dropped below, unlocked).
        let end = st.table.end_dispatch(fd);
        let entries = if st.watched.get(&fd).is_some_and(|w| w.gen == gen) {
            st.watched.remove(&fd);
            let _ = sys::epoll_del(sh.epfd(), fd);
            st.table.remove_source(fd).unwrap_or_default()
        } else {
            Vec::new()
        };
        (entries, end)
    };
    sh.idle.notify_all();
    drop(end);
    for e in entries {
        if let Some(f) = e.on_removed {
            f(fd, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    /// Sets its flag when dropped: tells whether an alarm's callback was let go.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn an_alarm_that_cannot_arm_the_timer_leaves_nothing_behind() {
        let t = InterruptThread::spawn().unwrap();
        let h = t.handle();
        let fail = |on: bool| h.shared.fail_settime.store(on, Ordering::SeqCst);
        let (ran, dropped) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (r, flag) = (ran.clone(), DropFlag(dropped.clone()));
        fail(true);
        let e = h
            .set_alarm(Duration::from_millis(1), move || {
                let _flag = &flag;
                r.store(true, Ordering::SeqCst);
            })
            .unwrap_err();
        assert_eq!(
            e,
            IntrThreadError::Os {
                op: "timerfd_settime",
                errno: Errno::EINVAL
            }
        );
        assert!(e.to_string().contains("timerfd_settime"), "{e}");
        assert_eq!(h.alarm_count(), 0, "a failed set_alarm keeps nothing");
        assert!(dropped.load(Ordering::SeqCst), "its callback is dropped");
        // A later alarm arms the timer: the failed one must not run along with it.
        fail(false);
        let (tx, rx) = mpsc::channel();
        h.set_alarm(Duration::from_millis(5), move || tx.send(()).unwrap())
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(!ran.load(Ordering::SeqCst));

        // Cancelling works even if the timer cannot be re-armed: the alarm is gone, so the
        // answer is that it will not run.
        let id = h.set_alarm(Duration::from_secs(3600), || {}).unwrap();
        fail(true);
        assert_eq!(h.cancel_alarm(id), Ok(true));
        assert_eq!(h.alarm_count(), 0);
        fail(false);
        t.shutdown().unwrap();
    }
}
