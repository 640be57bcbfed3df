//! The handles other threads hold: [`Waker`], [`UserTrigger`] and
//! [`Registry`]. They share one mailbox per poller, which the poller reads
//! at the start of every `get_next_event` and after every backend wait.
//!
//! Protocol (each step is what the loom models in `tests/loom.rs` check):
//! - a handle first records its message (a flag or a queue entry, under the
//!   mailbox lock for the queue), *then* wakes the backend. The poller reads
//!   the mailbox after every backend wait, so a message recorded before the
//!   poller's read is collected by it, and one recorded after makes the
//!   backend's wait return (the backend's wake mechanism is level: an
//!   eventfd stays readable until the wait drains it). No wake-up is lost.
//! - `Waker::wake` and `UserTrigger::trigger` coalesce: while a wake or a
//!   trigger is pending (recorded, not yet collected), another adds nothing
//!   and costs no syscall.
//! - A `Registry` call returns after its operation is queued under the
//!   lock; the next `get_next_event` to *start* takes the lock first, so
//!   it sees the operation (happens-before), and applies the queue in
//!   issue order before it builds its batch.

use std::fmt;
use std::io;
use std::os::fd::RawFd;

use crate::backend::Wake;
use crate::error::Error;
use crate::sync::{Arc, AtomicBool, Mutex, Ordering, lock};
use crate::types::{Interest, Mode, Token};

/// A queued registry operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Declare {
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    },
    Forget(Token),
}

#[derive(Default)]
struct Queue {
    users: Vec<Arc<UserShared>>,
    ops: Vec<Op>,
}

/// One per poller, shared by every handle.
pub(crate) struct Mailbox {
    wake: std::sync::Arc<dyn Wake>,
    /// Set by `Waker::wake`, taken by the poller.
    woken: AtomicBool,
    /// Something was queued since the poller last looked.
    queued: AtomicBool,
    queue: Mutex<Queue>,
    /// Cleared when the poller is dropped.
    alive: AtomicBool,
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("woken", &self.woken.load(Ordering::Relaxed))
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("alive", &self.alive.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What the poller collected from its mailbox.
#[derive(Default)]
pub(crate) struct Collected {
    /// `Waker::wake` was called.
    pub(crate) woken: bool,
    /// Users triggered, in trigger order, each once.
    pub(crate) users: Vec<Arc<UserShared>>,
    /// Registry operations, in issue order.
    pub(crate) ops: Vec<Op>,
}

impl Mailbox {
    pub(crate) fn new(wake: std::sync::Arc<dyn Wake>) -> Mailbox {
        Mailbox {
            wake,
            woken: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
            alive: AtomicBool::new(true),
        }
    }

    fn check_alive(&self, what: &str, token: Token) -> io::Result<()> {
        if self.alive.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{what} for {token}: its poller was dropped"),
            ))
        }
    }

    /// Takes everything recorded so far, into `into` (whose lists the
    /// caller emptied). Cheap when nothing was: two atomic swaps.
    pub(crate) fn collect(&self, into: &mut Collected) {
        into.woken = self.woken.swap(false, Ordering::AcqRel);
        // The flag is set and cleared only under the lock, so it never reads
        // false while the queue holds something pushed before the lock was
        // last released. A stale `false` here only means the push comes
        // after this read, and the push's wake-up ends the next wait.
        if self.queued.load(Ordering::Acquire) {
            let mut q = lock(&self.queue);
            self.queued.store(false, Ordering::Relaxed);
            for u in &q.users {
                // Cleared under the lock: a trigger after this point queues
                // the user again and gets an event of its own.
                u.pending.store(false, Ordering::Release);
            }
            into.users.append(&mut q.users);
            into.ops.append(&mut q.ops);
        }
    }

    /// Marks the poller gone: handles now fail instead of queueing.
    pub(crate) fn close(&self) {
        self.alive.store(false, Ordering::Release);
    }
}

/// Wakes a [`Poller`](crate::Poller) from another thread; cheap to clone.
///
/// The wake-up is an event with the token given to
/// [`Poller::waker`](crate::Poller::waker), with `readable` set. Wakes
/// before the poller collects them coalesce into one event and one
/// syscall.
#[derive(Clone, Debug)]
pub struct Waker {
    pub(crate) mailbox: Arc<Mailbox>,
}

impl Waker {
    /// Wakes the poller. After its poller was dropped this does nothing
    /// harmful (the wake mechanism stays valid while a handle holds it).
    ///
    /// # Errors
    /// As the backend's mechanism reports (see [`Wake::wake`]).
    pub fn wake(&self) -> io::Result<()> {
        if self.mailbox.woken.swap(true, Ordering::AcqRel) {
            // Pending already: the wake that set the flag reaches (or
            // reached) the backend.
            return Ok(());
        }
        self.mailbox.wake.wake()
    }
}

/// A user event's shared state.
#[derive(Debug)]
pub(crate) struct UserShared {
    pub(crate) token: Token,
    pending: AtomicBool,
    /// Set by `Poller::remove_user`.
    pub(crate) removed: AtomicBool,
}

impl UserShared {
    pub(crate) fn new(token: Token) -> UserShared {
        UserShared {
            token,
            pending: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        }
    }
}

/// Triggers a user event, in the manner of kqueue's `EVFILT_USER`;
/// `Send + Sync + Clone`. Made by [`Poller::add_user`](crate::Poller::add_user).
///
/// Each trigger makes the poller report `Event { token, user: true }`;
/// triggers before the poller collects them coalesce into one event.
#[derive(Clone, Debug)]
pub struct UserTrigger {
    pub(crate) user: Arc<UserShared>,
    pub(crate) mailbox: Arc<Mailbox>,
}

impl UserTrigger {
    /// The user event's token.
    pub fn token(&self) -> Token {
        self.user.token
    }

    /// Triggers the event and wakes the poller.
    ///
    /// # Errors
    /// - `NotConnected` if the poller was dropped;
    /// - `NotFound` if the user event was removed
    ///   ([`Poller::remove_user`](crate::Poller::remove_user));
    /// - what the backend's wake mechanism reports.
    ///
    /// Either way nothing else is disturbed.
    pub fn trigger(&self) -> io::Result<()> {
        let token = self.user.token;
        self.mailbox.check_alive("user trigger", token)?;
        if self.user.removed.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("user trigger for {token}: the user event was removed"),
            ));
        }
        if self.user.pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            let mut q = lock(&self.mailbox.queue);
            q.users.push(self.user.clone());
            self.mailbox.queued.store(true, Ordering::Release);
        }
        self.mailbox.wake.wake()
    }
}

/// Declares and forgets from other threads while one thread waits;
/// `Send + Sync + Clone`. Made by [`Poller::registry`](crate::Poller::registry).
///
/// Operations are queued and applied by the waiting thread, in the order
/// they were issued, at the start of its next `get_next_event` (and, if it
/// is waiting, right after the wake-up each call makes).
///
/// - **Forget happens-before.** Once [`forget`](Registry::forget) returns,
///   no `get_next_event` that starts afterwards reports the token (nor does
///   the one in progress, unless it already returned its events).
/// - **Errors.** What can be checked here (a negative descriptor, a dropped
///   poller) is returned at once. A conflict found when the operation is
///   applied (a token or descriptor in use, an unknown token) becomes an
///   error event for the token, with `errno` `EEXIST` or `ENOENT`, like a
///   change the kernel refuses; nothing else is disturbed.
#[derive(Clone, Debug)]
pub struct Registry {
    pub(crate) mailbox: Arc<Mailbox>,
}

impl Registry {
    fn push(&self, op: Op, token: Token) -> io::Result<()> {
        self.mailbox.check_alive("registry", token)?;
        {
            let mut q = lock(&self.mailbox.queue);
            q.ops.push(op);
            self.mailbox.queued.store(true, Ordering::Release);
        }
        self.mailbox.wake.wake()
    }

    /// Queues [`Poller::declare_interest`](crate::Poller::declare_interest).
    ///
    /// # Errors
    /// `InvalidInput` ([`Error::NegativeFd`]) for a negative descriptor;
    /// `NotConnected` if the poller was dropped; what the wake mechanism
    /// reports (the operation is queued then).
    pub fn declare_interest(
        &self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        if fd < 0 {
            return Err(Error::NegativeFd { token, fd }.into());
        }
        self.push(
            Op::Declare {
                fd,
                token,
                interest,
                mode,
            },
            token,
        )
    }

    /// Queues [`Poller::forget`](crate::Poller::forget). When this returns,
    /// no wait that starts later reports `token`.
    ///
    /// # Errors
    /// `NotConnected` if the poller was dropped; what the wake mechanism
    /// reports (the operation is queued then).
    pub fn forget(&self, token: Token) -> io::Result<()> {
        self.push(Op::Forget(token), token)
    }
}
