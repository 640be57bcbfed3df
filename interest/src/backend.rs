//! The contract between the driver and a kernel mechanism.
//!
//! A backend is told *what the kernel should watch*, as a batch of
//! [`Change`]s computed by the driver, and answers with raw readiness. It
//! knows nothing of tokens, modes or arming: those live in the driver, once,
//! so that every backend yields the same stream.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use crate::types::{Interest, Ready};

/// How the kernel should trigger for one registration.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Report on every wait while ready (`epoll` default, `poll`).
    Level,
    /// Report when readiness arises (`EPOLLET`, `EV_CLEAR`). Only sent to
    /// backends whose [`Capabilities::native_edge`] is true.
    Edge,
    /// Report once, then stay silent until modified (`EPOLLONESHOT`,
    /// `EV_DISPATCH`). Only sent to backends whose
    /// [`Capabilities::native_oneshot`] is true.
    Oneshot,
}

/// What the kernel should watch for one registration.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Watch {
    /// The directions to watch.
    pub interest: Interest,
    /// How to trigger.
    pub trigger: Trigger,
}

/// The identity of a registration as the backend sees it: a slot index and
/// a generation, packed. Readiness tagged with a key whose generation is no
/// longer live is dropped by the driver, so a reused descriptor number never
/// receives an old registration's events.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u64);

impl Key {
    /// The key the driver reserves for the waker.
    pub const WAKER: Key = Key(u64::MAX);

    /// Packs a slot index and a generation.
    pub const fn new(index: u32, generation: u32) -> Key {
        Key(((generation as u64) << 32) | index as u64)
    }

    /// The slot index.
    pub const fn index(self) -> u32 {
        self.0 as u32
    }

    /// The generation.
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Key::WAKER {
            f.write_str("Key(waker)")
        } else {
            write!(f, "Key({}#{})", self.index(), self.generation())
        }
    }
}

/// One effective change to the kernel's interest set.
///
/// `old` is what the backend was last told for this key (`None`: nothing, or
/// the registration was removed/disabled); `new` is what it should watch now
/// (`None`: stop watching and drop it). `rearm` asks the backend to re-check
/// readiness even when `old == new` (an edge or oneshot registration that
/// the program declared again: `EPOLL_CTL_MOD` re-polls the file).
///
/// Within one batch, all removals come first, then the other changes; at
/// most one change refers to a given key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The descriptor number.
    pub fd: RawFd,
    /// The registration's key; tag readiness with it.
    pub key: Key,
    /// What the backend was last told.
    pub old: Option<Watch>,
    /// What it should watch from now on.
    pub new: Option<Watch>,
    /// Re-check readiness even if `old == new`.
    pub rearm: bool,
}

/// Raw readiness for one registration, as the kernel reported it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// The registration's key (or [`Key::WAKER`]).
    pub key: Key,
    /// The readiness mask, limited to the watched bits plus `ERR|HUP`
    /// ([`Ready::reportable`]).
    pub ready: Ready,
}

/// A change the kernel refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The registration's key.
    pub key: Key,
    /// The errno the kernel gave.
    pub errno: i32,
}

/// What one [`Backend::submit_and_wait`] produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Raw readiness, at most one entry per key.
    pub events: Vec<RawEvent>,
    /// Changes the kernel refused; they are not in effect.
    pub rejected: Vec<Rejection>,
}

impl Output {
    /// Empties both lists, keeping their memory.
    pub fn clear(&mut self) {
        self.events.clear();
        self.rejected.clear();
    }
}

/// What a backend can do natively. The driver emulates the rest.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The backend honours [`Trigger::Edge`]: it reports a registration when
    /// readiness arises, and only if it is still there at the time of the
    /// wait (epoll re-checks), and re-checks on `rearm`.
    pub native_edge: bool,
    /// The backend honours [`Trigger::Oneshot`].
    pub native_oneshot: bool,
    /// Changes are user-space writes (poll's array), not syscalls.
    pub cheap_changes: bool,
    /// The largest descriptor number the backend can watch, if limited
    /// (select's `FD_SETSIZE - 1`).
    pub max_fd: Option<RawFd>,
}

/// Wakes a [`Poller`](crate::Poller) blocked in a wait, from any thread.
pub trait Wake: Send + Sync + fmt::Debug {
    /// Makes the current or next wait return with the waker's key. Wakes that
    /// happen before the wait collects them coalesce into one.
    ///
    /// # Errors
    /// Whatever the backend's notification mechanism reports (e.g. `EBADF`
    /// for an eventfd whose poller is gone).
    fn wake(&self) -> io::Result<()>;
}

/// A kernel object a backend opens for the driver: a stream of signal
/// deliveries or a process's exit. The driver watches it like a descriptor
/// (readable when it has something to report) under the caller's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceSpec {
    /// Deliveries of signal `.0` (Linux: a signalfd; the backend blocks the
    /// signal in the calling thread and restores the old mask on close).
    Signal(i32),
    /// The exit of process `.0` (Linux: a pidfd, Linux 5.3 or later).
    Process(i32),
}

/// How a watched process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It exited, but its status cannot be had without reaping it behind
    /// its parent's back (it is not our child, or was reaped already).
    Unknown,
}

/// What reading a source gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceReport {
    /// Nothing after all (a spurious wake-up): no event.
    Nothing,
    /// The signal arrived `count` times since the last read (standard
    /// signals merge while pending, so this is 1 for them; real-time ones
    /// queue).
    Signal {
        /// Deliveries read.
        count: u32,
    },
    /// The process exited. A process source reports once.
    Exit(ExitStatus),
}

/// A source the backend opened: the descriptor to watch and the backend's
/// handle for [`Backend::read_source`] and [`Backend::close_source`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenedSource {
    /// Watch this for readability (it is the backend's; never close it).
    pub fd: RawFd,
    /// The backend's handle.
    pub id: u64,
}

/// A kernel mechanism: epoll, poll, select, io_uring, kqueue, superpoll, or
/// the testkit's model.
///
/// Contract:
/// - [`submit_and_wait`](Backend::submit_and_wait) applies every change of the
///   batch, in order, before it collects readiness (it may do both in one
///   syscall, as io_uring does). A change the kernel refuses goes into
///   [`Output::rejected`] and the rest of the batch still applies; a refused
///   removal (`EBADF`, `ENOENT`: the descriptor was closed) is not reported.
///   When anything was rejected, the call does not block.
/// - The changes are consumed even when the call then fails (for example with
///   `EINTR`): the driver retries with an empty batch.
/// - Readiness is reported only for watched registrations, and only if the
///   descriptor is ready at the time of the wait; bits are limited to
///   [`Ready::reportable`] of the watched interest.
/// - Regular files are always ready (`IN|OUT`), on every backend.
/// - A wake-up through [`Backend::waker`] is reported as [`Key::WAKER`] with
///   `IN`, once per wait however many wakes happened.
pub trait Backend: fmt::Debug {
    /// A short lower-case name: `"epoll"`, `"poll"`, …
    fn name(&self) -> &'static str;

    /// What the backend does natively.
    fn capabilities(&self) -> Capabilities;

    /// Applies `changes`, then waits up to `timeout` (`None`: forever) and
    /// fills `out` (which the caller cleared) with at most `max_events`
    /// readiness entries.
    ///
    /// # Errors
    /// A failure of the wait itself (`EINTR` as `ErrorKind::Interrupted`,
    /// `ENOMEM`, …). Failures of single changes are not errors here: they go
    /// to [`Output::rejected`].
    fn submit_and_wait(
        &mut self,
        changes: &[Change],
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()>;

    /// A handle that wakes this backend's wait from another thread.
    ///
    /// # Errors
    /// If the notification mechanism cannot be set up (e.g. `EMFILE`).
    fn waker(&mut self) -> io::Result<Arc<dyn Wake>>;

    /// Monotonic time since an arbitrary epoch fixed at creation. Real
    /// backends read the clock; the model returns virtual time, which its
    /// waits advance.
    fn now(&self) -> Duration;

    /// Called by [`Poller::forget`](crate::Poller::forget) for a
    /// registration the kernel knows about (`old` is what it was last told),
    /// before the removal is queued for the next batch.
    ///
    /// A backend whose kernel registration keeps the *file* open (an armed
    /// io_uring poll holds a file reference) removes the registration now
    /// and returns `true`, so that closing the descriptor right after
    /// `forget` closes the file, as it does with epoll and poll(2). The
    /// removal then does not appear in a later batch. Every other backend
    /// keeps the default, `false`: the removal goes into the next batch and
    /// costs nothing now.
    fn forget_now(&mut self, fd: RawFd, key: Key, old: Watch) -> bool {
        let _ = (fd, key, old);
        false
    }

    /// Opens a signal or process source (see [`SourceSpec`]).
    ///
    /// # Errors
    /// `Unsupported` by default (a backend without sources); `InvalidInput`
    /// for a signal that cannot be caught or is out of range; `NotFound` for
    /// a process that does not exist; `Unsupported` for a kernel without
    /// the mechanism (pidfd before Linux 5.3); what opening reports.
    fn open_source(&mut self, spec: SourceSpec) -> io::Result<OpenedSource> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {} backend has no {spec:?} sources", self.name()),
        ))
    }

    /// Reads what a source has to report, without blocking.
    ///
    /// # Errors
    /// What the read reports; `Unsupported` by default.
    fn read_source(&mut self, id: u64) -> io::Result<SourceReport> {
        let _ = id;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this backend has no sources",
        ))
    }

    /// Closes a source (after the driver removed its watch) and undoes what
    /// opening it did (a signal's old mask is restored).
    fn close_source(&mut self, id: u64) {
        let _ = id;
    }
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn submit_and_wait(
        &mut self,
        changes: &[Change],
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        (**self).submit_and_wait(changes, out, max_events, timeout)
    }
    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        (**self).waker()
    }
    fn now(&self) -> Duration {
        (**self).now()
    }
    fn forget_now(&mut self, fd: RawFd, key: Key, old: Watch) -> bool {
        (**self).forget_now(fd, key, old)
    }
    fn open_source(&mut self, spec: SourceSpec) -> io::Result<OpenedSource> {
        (**self).open_source(spec)
    }
    fn read_source(&mut self, id: u64) -> io::Result<SourceReport> {
        (**self).read_source(id)
    }
    fn close_source(&mut self, id: u64) {
        (**self).close_source(id)
    }
}
