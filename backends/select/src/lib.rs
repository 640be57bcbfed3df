//! The select(2) backend for evmux.
//!
//! `select(2)` is the oldest readiness interface: three bitmaps of
//! descriptor numbers (read, write, except) handed to the kernel at every
//! wait, overwritten with the ready subset. Like `poll(2)` it keeps no state
//! in the kernel, so changing the interest set is a write to a bitmap in
//! user space ([`Capabilities::cheap_changes`]), and every wait costs
//! O(highest descriptor), not O(ready).
//!
//! ## Portability notes
//! - **`FD_SETSIZE`.** A bitmap holds the numbers `0..1024` and nothing
//!   else. [`Capabilities::max_fd`] is `Some(FD_SETSIZE - 1)`, so the driver
//!   refuses a larger number at [`declare_interest`] with
//!   [`Error::FdTooLarge`] (`io::ErrorKind::InvalidInput`, naming the token,
//!   the descriptor and the limit 1024), and nothing is registered. It is
//!   refused *there*, at the call that made the mistake, rather than as an
//!   error event at the next wait, because no kernel ever sees it: setting
//!   bit 1024 of a 1024-bit `fd_set` is the classic buffer overflow of C
//!   programs, and [`FdSet`] simply cannot hold it. A program that may have
//!   more descriptors than that needs another backend. The waker's eventfd
//!   must get a number below 1024 too: [`Backend::waker`] fails if the
//!   lowest free number is already beyond it.
//! - **O(maxfd) per wait.** The kernel walks every number below `nfds` (the
//!   highest registered number plus one, maintained as registrations come
//!   and go) in all three bitmaps, and copies the bitmaps in and out. One
//!   registration at descriptor 1000 costs about as much as a thousand
//!   registrations. The master bitmaps are updated incrementally by each
//!   change (no rebuild per wait) and copied into scratch bitmaps for each
//!   call (2 × 128 bytes).
//! - **The extra `poll(2)` check.** The result bitmaps cannot tell the
//!   canonical readiness bits apart: a read bit means data *or* end of file
//!   *or* an error *or* a hang-up (the kernel's `POLLIN_SET` is
//!   `IN|RDNORM|RDBAND|HUP|ERR`); a write bit means space *or* an error
//!   (`POLLOUT_SET` is `OUT|WRNORM|WRBAND|ERR`). The event stream must equal
//!   the `poll(2)` backend's exactly (`read_closed`, `write_closed` and
//!   `error` depend on which bits are set), so whenever `select` reports
//!   anything, one `poll(2)` with a zero timeout over **just the ready
//!   descriptors** (`POLLIN|POLLRDHUP` for a watched read direction,
//!   `POLLOUT` for a watched write direction, as the poll backend asks) gives
//!   the exact masks, and those are reported, limited to
//!   [`Ready::reportable`] of the watched interest. An entry whose mask
//!   holds nothing reportable is skipped. `select` reporting *more* than
//!   poll (`RDBAND` or `WRBAND` alone, unread input on a write-only watch,
//!   below) costs nothing but the check, and the exact wait when nothing
//!   else is ready.
//! - **Hang-ups on write-only watches: the read-bitmap probe.** `poll(2)`
//!   reports `HUP` and `ERR` to every watch; `select(2)` only through the
//!   bitmap whose set contains the bit, and the write set has no `HUP`. A
//!   descriptor whose mask is `HUP` without `OUT` and without `ERR` is in no
//!   write set, yet poll reports it to a write watch
//!   (`writable|write_closed`). On Linux this happens for the read end of a
//!   pipe or FIFO watched for writing once every writer is gone; a stream
//!   socket whose send buffer is full when it is shut down both ways
//!   (`shutdown` by both ends); a listening Unix socket shut down; some
//!   character devices. So **every enabled entry is in the read bitmap**,
//!   whatever its interest, and a write-only watch (a `WRITABLE`
//!   registration, or a `BOTH` edge registration whose read direction the
//!   driver disarmed) is in both: the read bit is the probe for the
//!   hang-up, and the check, asking `POLLOUT` only, tells `HUP` from mere
//!   input, which it does not ask for and which is therefore not reported.
//!   (The read side has the mirror case, `RDHUP` without `IN`, `HUP` or
//!   `ERR` on a read watch, which Linux does not produce: TCP and Unix
//!   stream sockets set `IN` with `RDHUP`.)
//! - **The exact wait.** The probe has a price: unread input on a
//!   write-only watch (a socket whose peer sent data the program has not
//!   read, while its own send buffer is full) is in the read result too, at
//!   every `select`, until the program reads — which a write-only watcher
//!   may never do. No set of bitmaps means "`HUP` but not `IN`". So when
//!   `select` reported something and the check found **nothing to
//!   report** (no readiness, no refusal, no wake-up) and time remains, the
//!   backend does not go back to `select`, which would return at once
//!   again: it waits the rest of the time (the same deadline; forever for
//!   `None`) with **one `poll(2)` over every enabled entry** (asking what
//!   the poll backend asks: `POLLOUT` alone for a write-only watch, so the
//!   unread input no longer wakes it) and the waker's eventfd. That wait is
//!   exact: its masks are reported as the check's are (same `max_events`
//!   and round-robin rules), a wake-up as the waker's event, a closed number
//!   by the rule below (and the wait goes on without it). A zero timeout
//!   never gets there: the wait ends empty after the check.
//! - **Syscalls per wait**:
//!   - nothing ready: 1 (`select`);
//!   - something reportable ready: 2 (`select` + the check), plus one
//!     eventfd `read` when the waker fired (a wait woken only by the waker
//!     needs no check);
//!   - `select` ready with nothing reportable (unread input on a write-only
//!     watch) and a non-zero timeout: 3 (`select`, the check, the exact
//!     `poll`), plus one eventfd `read` when the waker ends the exact wait;
//!     with a zero timeout, 2;
//!   - a wait that may block (non-zero timeout) whose batch added or
//!     changed registrations: 1 more `poll` before it (see closed
//!     descriptors below); a zero timeout skips it;
//!   - a wait that meets a descriptor closed under its registration: the
//!     failed `select`, 1 `poll` to find the culprit, and the `select` again.
//! - **Closed descriptors.** Linux fails the whole `select` with `EBADF`
//!   when a bitmap holds a closed number below the size of the process's
//!   descriptor table, and silently ignores (leaving its bit set in the
//!   result, uncounted) a closed number above it. The event stream must not
//!   depend on either, so this backend follows the poll backend's rule:
//!   - on `EBADF`, one `poll(2)` over the registered descriptors finds those
//!     answering `POLLNVAL`; on such a `POLLNVAL` in the readiness check or
//!     the exact wait too;
//!   - an entry added or changed by the batch of this very wait ("fresh") is
//!     refused: a [`Rejection`] with `EBADF`, and the entry leaves the
//!     bitmaps and the table, as a refused `EPOLL_CTL_ADD` leaves nothing in
//!     an epoll set (the driver turns it into an error event and never
//!     sends a removal for it);
//!   - an older entry (closed under its registration, never forgotten) is
//!     disabled silently: out of the bitmaps, but kept, so the removal the
//!     driver sends when the program forgets it finds it; a change for its
//!     key re-enables it, fresh again;
//!   - then `select` is called again. `EBADF` is never the result of a wait
//!     for this (only an `EBADF` that no registered descriptor explains is).
//!
//!   Because a closed number above the table size makes `select` neither
//!   fail nor return, a wait that may block first checks the fresh entries
//!   with one `poll(2)`, so that a refusal never blocks (the contract: when
//!   anything was rejected, the call does not block). A wait interrupted by
//!   a signal does not end freshness: the retry still refuses.
//! - As with any poll(2)/select(2) loop, a descriptor closed and its number
//!   reused *without* forgetting the registration is watched under the old
//!   registration; forget before closing.
//! - **Regular files** are always ready: `select` reports them in both
//!   bitmaps natively and the check gives `POLLIN|POLLOUT`.
//! - **Edge and oneshot** are emulated by the driver
//!   ([`Capabilities::native_edge`] and [`Capabilities::native_oneshot`] are
//!   false): it only ever sends [`Trigger::Level`] watches, narrowing or
//!   dropping them as directions are disarmed, which is a bitmap write here.
//! - **`max_events`**: select is stateless, so readiness that does not fit
//!   shows up again at the next wait. When more entries are ready than fit,
//!   the scan starts after the last descriptor reported by the previous one
//!   (round-robin), so high numbers do not starve.
//! - **The waker** is an `eventfd(2)` ([`Notifier`]) kept in the read
//!   bitmap (and in the exact wait's array), created at the first
//!   [`Backend::waker`] call; it is drained when ready and reported once per
//!   wait ([`Key::WAKER`], `IN`).
//! - A wait interrupted by a signal returns `ErrorKind::Interrupted`; the
//!   batch was applied already (bitmap writes), as the [`Backend`] contract
//!   requires. A timeout is rounded up to whole microseconds (whole
//!   milliseconds in the exact wait), never down.
//!
//! [`declare_interest`]: evmux_interest::Poller::declare_interest
//! [`Error::FdTooLarge`]: evmux_interest::Error::FdTooLarge
//! [`FdSet`]: evmux_sys::select::FdSet
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg(any(target_os = "linux", target_os = "android"))]

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evmux_interest::{
    Backend, Capabilities, Change, Interest, Key, Output, RawEvent, Ready, Rejection, Trigger, Wake,
};
use evmux_sys::eventfd::Notifier;
use evmux_sys::poll::{POLLIN, POLLNVAL, POLLOUT, POLLRDHUP, PollFd, poll};
pub use evmux_sys::select::FD_SETSIZE;
use evmux_sys::select::{FdSet, select};

const EBADF: i32 = 9;
const EINVAL: i32 = 22;

/// What the backend knows about one registered descriptor number.
#[derive(Copy, Clone, Debug)]
struct Entry {
    /// The registration's key.
    key: Key,
    /// The watched interest.
    interest: Interest,
    /// The wait (epoch) whose batch last added or changed the entry: it is
    /// fresh while this equals the current epoch.
    changed: u64,
    /// In the master bitmaps; false once found closed under its
    /// registration.
    enabled: bool,
}

/// The select(2) backend. See the crate documentation.
pub struct SelectBackend {
    /// Per descriptor number (`< FD_SETSIZE`): the registration, if any.
    entries: Vec<Option<Entry>>,
    /// How many `Some` in `entries`.
    registered: usize,
    /// Master bitmaps: what is watched.
    read: FdSet,
    write: FdSet,
    /// Highest number in either master bitmap, plus one.
    nfds: RawFd,
    /// Scratch bitmaps handed to `select` (copies of the masters).
    ready_read: FdSet,
    ready_write: FdSet,
    /// Scratch array for the `poll(2)` checks.
    checks: Vec<PollFd>,
    /// Numbers added or changed by the batch of the current epoch.
    fresh: Vec<RawFd>,
    /// The waker, once created.
    waker: Option<Arc<SelectWaker>>,
    /// The waker's descriptor number, or -1.
    waker_fd: RawFd,
    /// Counts completed waits.
    epoch: u64,
    /// Round-robin: the scan starts at the first ready number at or above
    /// this when more entries are ready than fit.
    rotor: RawFd,
    /// The epoch of [`Backend::now`].
    start: Instant,
    /// Signal and process sources ([`Backend::open_source`]).
    #[cfg(target_os = "linux")]
    sources: evmux_sys::source::Sources,
}

impl fmt::Debug for SelectBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectBackend")
            .field("entries", &self.registered)
            .field("disabled", &self.disabled_entries())
            .field("nfds", &self.nfds)
            .field("waker", &self.waker.is_some())
            .finish_non_exhaustive()
    }
}

/// The `events` bits of the readiness check for a watched interest: what
/// the poll backend asks for.
fn poll_events(interest: Interest) -> i16 {
    let mut events = 0;
    if interest.is_readable() {
        events |= POLLIN | POLLRDHUP;
    }
    if interest.is_writable() {
        events |= POLLOUT;
    }
    events
}

/// `revents` as a [`Ready`] mask (`POLLNVAL` is handled before).
fn ready_from_revents(revents: i16) -> Ready {
    Ready::from_linux(u32::from(revents.cast_unsigned()))
}

impl SelectBackend {
    /// A new backend with an empty interest set. No descriptor is created
    /// until [`Backend::waker`] is called.
    ///
    /// # Errors
    /// None today; the signature matches the other backends.
    pub fn new() -> io::Result<SelectBackend> {
        Ok(SelectBackend {
            entries: Vec::new(),
            registered: 0,
            read: FdSet::new(),
            write: FdSet::new(),
            nfds: 0,
            ready_read: FdSet::new(),
            ready_write: FdSet::new(),
            checks: Vec::new(),
            fresh: Vec::new(),
            waker: None,
            waker_fd: -1,
            epoch: 0,
            rotor: 0,
            start: Instant::now(),
            #[cfg(target_os = "linux")]
            sources: evmux_sys::source::Sources::default(),
        })
    }

    /// How many descriptor numbers registrations occupy (disabled ones
    /// included, the waker's not). For tests.
    #[doc(hidden)]
    pub fn entries(&self) -> usize {
        self.registered
    }

    /// How many registrations are disabled (closed under their
    /// registration, waiting to be forgotten). For tests.
    #[doc(hidden)]
    pub fn disabled_entries(&self) -> usize {
        self.entries.iter().flatten().filter(|e| !e.enabled).count()
    }

    /// The `nfds` the next `select` gets: the highest watched number plus
    /// one (the waker's included). For tests.
    #[doc(hidden)]
    pub fn nfds(&self) -> RawFd {
        self.nfds
    }

    /// The master bitmaps (read, write). For tests.
    #[doc(hidden)]
    pub fn masters(&self) -> (&FdSet, &FdSet) {
        (&self.read, &self.write)
    }

    fn entry(&self, fd: RawFd) -> Option<&Entry> {
        let i = usize::try_from(fd).ok()?;
        self.entries.get(i)?.as_ref()
    }

    /// Stores `entry` at `fd` (which is in `0..FD_SETSIZE`).
    fn put(&mut self, fd: RawFd, entry: Option<Entry>) {
        let i = fd as usize;
        if i >= self.entries.len() {
            if entry.is_none() {
                return;
            }
            self.entries.resize(i + 1, None);
        }
        match (&self.entries[i], &entry) {
            (None, Some(_)) => self.registered += 1,
            (Some(_), None) => self.registered -= 1,
            _ => {}
        }
        self.entries[i] = entry;
    }

    /// Makes the master bits of `fd` match its entry and the waker, and
    /// keeps `nfds` up to date.
    fn refresh(&mut self, fd: RawFd) {
        let e = self.entry(fd).filter(|e| e.enabled).copied();
        // Every enabled entry is in the read bitmap: for a write-only watch
        // that is the probe for a hang-up, which the write bitmap does not
        // see (see "Hang-ups on write-only watches" in the crate docs).
        let r = e.is_some() || fd == self.waker_fd;
        let w = e.is_some_and(|e| e.interest.is_writable());
        if r {
            self.read.set(fd);
        } else {
            self.read.clear(fd);
        }
        if w {
            self.write.set(fd);
        } else {
            self.write.clear(fd);
        }
        if r || w {
            self.nfds = self.nfds.max(fd + 1);
        } else if fd + 1 == self.nfds {
            self.nfds = self
                .read
                .highest()
                .max(self.write.highest())
                .map_or(0, |h| h + 1);
        }
    }

    /// Applies one change to the table and the master bitmaps.
    fn apply(&mut self, c: &Change, out: &mut Output) {
        let Some(watch) = c.new else {
            // A removal, or a registration the driver stopped watching. No
            // entry (or another key's): it was refused earlier, so there is
            // nothing to remove.
            if self.entry(c.fd).is_some_and(|e| e.key == c.key) {
                self.put(c.fd, None);
                self.refresh(c.fd);
            }
            return;
        };
        debug_assert_eq!(
            watch.trigger,
            Trigger::Level,
            "the driver sent a trigger select(2) does not have"
        );
        if !(0..FD_SETSIZE).contains(&c.fd) {
            // The driver refuses these at declare_interest (max_fd); a
            // caller that does not is told here, and nothing is watched.
            out.rejected.push(Rejection {
                key: c.key,
                errno: EINVAL,
            });
            return;
        }
        self.put(
            c.fd,
            Some(Entry {
                key: c.key,
                interest: watch.interest,
                changed: self.epoch,
                enabled: true,
            }),
        );
        self.refresh(c.fd);
        self.fresh.push(c.fd);
    }

    /// The rule for a registered number found closed: a fresh entry is
    /// refused and dropped; an older one is disabled silently.
    fn closed(&mut self, fd: RawFd, out: &mut Output) {
        let Some(e) = self.entry(fd).copied() else {
            return;
        };
        if e.changed == self.epoch {
            out.rejected.push(Rejection {
                key: e.key,
                errno: EBADF,
            });
            self.put(fd, None);
        } else {
            self.put(
                fd,
                Some(Entry {
                    enabled: false,
                    ..e
                }),
            );
        }
        self.refresh(fd);
    }

    /// One `poll(2)` with a zero timeout over `fds` (enabled entries only),
    /// applying [`closed`](Self::closed) to those answering `POLLNVAL`.
    /// Returns whether any did.
    fn probe(&mut self, fds: &[RawFd], out: &mut Output) -> io::Result<bool> {
        let mut checks = std::mem::take(&mut self.checks);
        checks.clear();
        checks.extend(
            fds.iter()
                .filter(|&&fd| self.entry(fd).is_some_and(|e| e.enabled))
                .map(|&fd| PollFd::new(fd, 0)),
        );
        let mut found = false;
        let result = if checks.is_empty() {
            Ok(0)
        } else {
            poll(&mut checks, Some(Duration::ZERO))
        };
        if result.is_ok() {
            for c in &checks {
                if c.revents & POLLNVAL != 0 {
                    found = true;
                    self.closed(c.fd, out);
                }
            }
        }
        self.checks = checks;
        result.map(|_| found)
    }

    /// Before a wait that may block: refuses the fresh entries whose number
    /// is closed (a closed number above the descriptor table's size would
    /// make `select` block instead of failing).
    fn probe_fresh(&mut self, out: &mut Output) -> io::Result<()> {
        let mut fresh = std::mem::take(&mut self.fresh);
        let epoch = self.epoch;
        fresh.retain(|&fd| self.entry(fd).is_some_and(|e| e.changed == epoch));
        fresh.sort_unstable();
        fresh.dedup();
        let result = self.probe(&fresh, out);
        self.fresh = fresh;
        result.map(drop)
    }

    /// After `select` failed with `EBADF`: finds the closed numbers among
    /// the enabled entries. Returns whether any was found.
    fn probe_all(&mut self, out: &mut Output) -> io::Result<bool> {
        let all: Vec<RawFd> = (0..self.entries.len() as RawFd)
            .filter(|&fd| self.entry(fd).is_some_and(|e| e.enabled))
            .collect();
        self.probe(&all, out)
    }

    /// Turns the result bitmaps into `out`, through the exact `poll(2)`
    /// check. Returns whether the waker fired (the caller drains it).
    fn collect(&mut self, out: &mut Output, max_events: usize) -> io::Result<bool> {
        let mut ready = self.ready_read;
        ready.union_with(&self.ready_write);
        if ready.is_empty() {
            return Ok(false);
        }
        let woke = self.waker_fd >= 0 && self.ready_read.contains(self.waker_fd);
        let mut checks = std::mem::take(&mut self.checks);
        checks.clear();
        for fd in ready.iter() {
            // The waker's number holds no entry (unless a registration
            // closed without forget left one there): skipped here.
            if let Some(e) = self.entry(fd)
                && e.enabled
            {
                checks.push(PollFd::new(fd, poll_events(e.interest)));
            }
        }
        if !checks.is_empty()
            && let Err(e) = poll(&mut checks, Some(Duration::ZERO))
        {
            self.checks = checks;
            return Err(e);
        }
        if woke {
            out.events.push(RawEvent {
                key: Key::WAKER,
                ready: Ready::IN,
            });
        }
        self.report(&mut checks, out, max_events);
        self.checks = checks;
        Ok(woke)
    }

    /// Reports the answered `checks` (sorted by number, entries only, the
    /// waker's event already in `out`): closed numbers first, then what is
    /// reportable, round-robin when not everything fits in `max_events`.
    fn report(&mut self, checks: &mut [PollFd], out: &mut Output, max_events: usize) {
        // First pass: closed numbers (all of them, even past the room: a
        // fresh entry's refusal belongs to this wait) and what is
        // reportable. `revents` is zeroed for entries with nothing to say.
        let mut reportable = 0;
        for c in checks.iter_mut() {
            if c.revents & POLLNVAL != 0 {
                c.revents = 0;
                self.closed(c.fd, out);
                continue;
            }
            let interest = self.entry(c.fd).expect("checked entries exist").interest;
            if (ready_from_revents(c.revents) & Ready::reportable(interest)).is_empty() {
                c.revents = 0;
            } else {
                reportable += 1;
            }
        }
        // Second pass: report, round-robin when not everything fits.
        let room = max_events.saturating_sub(out.events.len());
        let len = checks.len();
        let start = if reportable > room {
            let p = checks.partition_point(|c| c.fd < self.rotor);
            if p == len { 0 } else { p }
        } else {
            0
        };
        let mut pushed = 0;
        for i in 0..len {
            if pushed == room {
                break;
            }
            let c = checks[(start + i) % len];
            if c.revents == 0 {
                continue;
            }
            let e = *self.entry(c.fd).expect("checked entries exist");
            out.events.push(RawEvent {
                key: e.key,
                ready: ready_from_revents(c.revents) & Ready::reportable(e.interest),
            });
            pushed += 1;
            self.rotor = c.fd + 1;
        }
    }

    /// The exact wait, used when `select` returned but nothing it reported
    /// could be reported (input on a write-only watch, see the crate
    /// docs): waits up to `deadline` (`None`: forever) with one `poll(2)`
    /// over every enabled entry, asking what the poll backend asks, and the
    /// waker. Returns whether the waker fired (the caller drains it).
    fn wait_exact(
        &mut self,
        out: &mut Output,
        max_events: usize,
        deadline: Option<Instant>,
    ) -> io::Result<bool> {
        loop {
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    Some(left)
                }
            };
            let mut checks = std::mem::take(&mut self.checks);
            checks.clear();
            for (i, e) in self.entries.iter().enumerate() {
                if let Some(e) = e
                    && e.enabled
                {
                    checks.push(PollFd::new(i as RawFd, poll_events(e.interest)));
                }
            }
            // The waker goes last, so that `checks` stays sorted by number
            // once it is taken off.
            if self.waker_fd >= 0 {
                checks.push(PollFd::new(self.waker_fd, POLLIN));
            }
            let n = match poll(&mut checks, timeout) {
                Ok(n) => n,
                Err(e) => {
                    self.checks = checks;
                    return Err(e);
                }
            };
            let woke = self.waker_fd >= 0 && checks.pop().is_some_and(|w| w.revents != 0);
            if woke {
                out.events.push(RawEvent {
                    key: Key::WAKER,
                    ready: Ready::IN,
                });
            }
            if n > 0 {
                self.report(&mut checks, out, max_events);
            }
            self.checks = checks;
            if n == 0 || woke || !out.events.is_empty() || !out.rejected.is_empty() {
                return Ok(woke);
            }
            // Only numbers closed under their registrations answered
            // (`POLLNVAL`): they are disabled now. Wait on for the rest.
        }
    }
}

impl Backend for SelectBackend {
    fn name(&self) -> &'static str {
        "select"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_edge: false,
            native_oneshot: false,
            cheap_changes: true,
            max_fd: Some(FD_SETSIZE - 1),
        }
    }

    fn submit_and_wait(
        &mut self,
        changes: &[Change],
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        for c in changes {
            self.apply(c, out);
        }
        let mut timeout = if out.rejected.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        // On EINTR (here or below) the epoch is not advanced, so the
        // driver's retry still sees this batch's entries as fresh.
        if timeout != Some(Duration::ZERO) && !self.fresh.is_empty() {
            self.probe_fresh(out)?;
            if !out.rejected.is_empty() {
                timeout = Some(Duration::ZERO);
            }
        }
        // Where a wait that select ended early must end at the latest (for
        // the exact wait below); `None`: never (or past what `Instant` can
        // hold).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            self.ready_read = self.read;
            self.ready_write = self.write;
            match select(
                self.nfds,
                Some(&mut self.ready_read),
                Some(&mut self.ready_write),
                None,
                timeout,
            ) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(EBADF) => {
                    // A registered number was closed. Unexplained: report.
                    if !self.probe_all(out)? {
                        return Err(e);
                    }
                    if !out.rejected.is_empty() {
                        timeout = Some(Duration::ZERO);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // The result count is not used: bits of closed numbers above the
        // descriptor table's size come back set but uncounted, and must
        // reach the check.
        let max_events = max_events.max(1);
        let seen = !self.ready_read.is_empty() || !self.ready_write.is_empty();
        let mut woke = self.collect(out, max_events)?;
        if seen
            && !woke
            && out.events.is_empty()
            && out.rejected.is_empty()
            && timeout != Some(Duration::ZERO)
        {
            // select returned for nothing reportable (unread input on a
            // write-only watch): going back to it would return at once
            // again. Wait the rest of the time exactly, with poll(2).
            woke = self.wait_exact(out, max_events, deadline)?;
        }
        self.epoch = self.epoch.wrapping_add(1);
        self.fresh.clear();
        match &self.waker {
            Some(w) if woke => w.notifier.drain().map(drop),
            _ => Ok(()),
        }
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        if let Some(w) = &self.waker {
            return Ok(w.clone());
        }
        let notifier = Notifier::new()?;
        let fd = notifier.as_raw_fd();
        if !(0..FD_SETSIZE).contains(&fd) {
            return Err(io::Error::other(format!(
                "select: the waker's eventfd got descriptor {fd}, which is not below \
                 FD_SETSIZE ({FD_SETSIZE}); no lower number is free"
            )));
        }
        let w = Arc::new(SelectWaker { notifier });
        self.waker_fd = fd;
        self.refresh(fd);
        self.waker = Some(w.clone());
        Ok(w)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    evmux_sys::backend_sources!(sources);
}

/// Wakes a [`SelectBackend`] through an eventfd in its read bitmap.
#[derive(Debug)]
struct SelectWaker {
    notifier: Notifier,
}

impl Wake for SelectWaker {
    fn wake(&self) -> io::Result<()> {
        self.notifier.notify()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evmux_sys::poll::{POLLERR, POLLHUP, POLLPRI};

    #[test]
    fn interest_and_readiness_bits() {
        assert_eq!(poll_events(Interest::READABLE), POLLIN | POLLRDHUP);
        assert_eq!(poll_events(Interest::WRITABLE), POLLOUT);
        assert_eq!(poll_events(Interest::BOTH), POLLIN | POLLRDHUP | POLLOUT);
        assert_eq!(
            ready_from_revents(POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDHUP),
            Ready::IN | Ready::PRI | Ready::OUT | Ready::ERR | Ready::HUP | Ready::RDHUP
        );
        assert_eq!(ready_from_revents(0), Ready::EMPTY);
    }

    fn change(fd: RawFd, key: u64, new: Option<Interest>) -> Change {
        Change {
            fd,
            key: Key(key),
            old: None,
            new: new.map(|interest| evmux_interest::Watch {
                interest,
                trigger: Trigger::Level,
            }),
            rearm: false,
        }
    }

    #[test]
    fn masters_and_nfds_follow_changes() {
        let mut b = SelectBackend::new().unwrap();
        let mut out = Output::default();
        b.apply(&change(10, 1, Some(Interest::READABLE)), &mut out);
        b.apply(&change(700, 2, Some(Interest::BOTH)), &mut out);
        b.apply(&change(300, 3, Some(Interest::WRITABLE)), &mut out);
        assert!(out.rejected.is_empty());
        assert_eq!(b.nfds(), 701);
        // The write-only entry is in the read bitmap too: the hang-up probe.
        assert_eq!(b.read.iter().collect::<Vec<_>>(), [10, 300, 700]);
        assert_eq!(b.write.iter().collect::<Vec<_>>(), [300, 700]);
        // A removal under another key does nothing.
        b.apply(&change(700, 9, None), &mut out);
        assert_eq!(b.entries(), 3);
        b.apply(&change(700, 2, None), &mut out);
        assert_eq!(b.nfds(), 301);
        assert_eq!(b.read.iter().collect::<Vec<_>>(), [10, 300]);
        assert_eq!(b.write.iter().collect::<Vec<_>>(), [300]);
        b.apply(&change(300, 3, Some(Interest::READABLE)), &mut out);
        assert_eq!(b.read.iter().collect::<Vec<_>>(), [10, 300]);
        assert!(b.write.is_empty());
        b.apply(&change(300, 3, None), &mut out);
        b.apply(&change(10, 1, None), &mut out);
        assert_eq!((b.nfds(), b.entries()), (0, 0));
        assert!(b.read.is_empty());
        // Out of range: refused, nothing watched.
        b.apply(&change(FD_SETSIZE, 4, Some(Interest::READABLE)), &mut out);
        b.apply(&change(-1, 5, Some(Interest::READABLE)), &mut out);
        assert_eq!(
            out.rejected,
            [
                Rejection {
                    key: Key(4),
                    errno: EINVAL
                },
                Rejection {
                    key: Key(5),
                    errno: EINVAL
                }
            ]
        );
        assert_eq!((b.nfds(), b.entries()), (0, 0));
    }

    #[test]
    fn the_exact_wait_reports_round_robin_like_the_check() {
        let mut b = SelectBackend::new().unwrap();
        let mut out = Output::default();
        let pipes: Vec<_> = (0..5).map(|_| evmux_sys::fd::pipe().unwrap()).collect();
        for (i, (r, w)) in pipes.iter().enumerate() {
            evmux_sys::fd::write(w, b"x").unwrap();
            b.apply(
                &change(r.as_raw_fd(), i as u64, Some(Interest::READABLE)),
                &mut out,
            );
        }
        let deadline = Instant::now().checked_add(Duration::from_secs(30));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            out.clear();
            assert!(!b.wait_exact(&mut out, 2, deadline).unwrap());
            assert!((1..=2).contains(&out.events.len()), "{out:?}");
            for e in &out.events {
                assert_eq!(e.ready, Ready::IN);
                seen.insert(e.key.0);
            }
        }
        assert_eq!(seen.len(), 5);
        // No time left: no syscall.
        let before = evmux_sys::counter::snapshot();
        out.clear();
        assert!(!b.wait_exact(&mut out, 2, Some(Instant::now())).unwrap());
        assert!(out.events.is_empty());
        assert_eq!((evmux_sys::counter::snapshot() - before).total(), 0);
    }

    #[test]
    fn the_exact_wait_drops_closed_numbers_and_waits_on() {
        // A number nothing in this test binary opens.
        const CLOSED: RawFd = 1000;
        for fresh in [false, true] {
            let mut b = SelectBackend::new().unwrap();
            let mut out = Output::default();
            let (r, _w) = evmux_sys::fd::pipe().unwrap();
            b.apply(
                &change(r.as_raw_fd(), 1, Some(Interest::READABLE)),
                &mut out,
            );
            b.apply(&change(CLOSED, 2, Some(Interest::WRITABLE)), &mut out);
            if !fresh {
                b.epoch += 1;
            }
            let started = Instant::now();
            let before = evmux_sys::counter::snapshot();
            let deadline = started.checked_add(Duration::from_millis(30));
            assert!(!b.wait_exact(&mut out, 8, deadline).unwrap());
            let d = evmux_sys::counter::snapshot() - before;
            assert!(out.events.is_empty(), "{out:?}");
            if fresh {
                // Refused, at once.
                assert_eq!(
                    out.rejected,
                    [Rejection {
                        key: Key(2),
                        errno: EBADF
                    }]
                );
                assert_eq!((b.entries(), b.disabled_entries()), (1, 0));
                assert_eq!(d.total(), 1, "{d:?}");
            } else {
                // Disabled silently; the wait goes on until the deadline.
                assert!(out.rejected.is_empty(), "{out:?}");
                assert_eq!((b.entries(), b.disabled_entries()), (2, 1));
                assert!(started.elapsed() >= Duration::from_millis(30));
                assert_eq!(d.total(), 2, "{d:?}");
            }
        }
    }
}
