//! The poll(2) backend for evmux.
//!
//! `poll(2)` keeps no state in the kernel: every wait hands the kernel the
//! whole interest set, as an array of `struct pollfd`, and the kernel walks
//! all of it. A wait therefore costs O(registered) (copying the array in and
//! out and polling every file), not O(ready) as with epoll; in exchange,
//! changing the interest set costs no syscall at all, since it is a write to
//! an array in user space ([`Capabilities::cheap_changes`]).
//!
//! ## Portability notes
//! - `poll(2)` is level-triggered only. This backend reports
//!   [`Capabilities::native_edge`] and [`Capabilities::native_oneshot`] as
//!   false, so the driver in `evmux-interest` only ever sends
//!   [`Trigger::Level`] watches and emulates edge and oneshot by changing
//!   what is watched: a fired oneshot, or an edge registration with every
//!   direction disarmed, is dropped from the array and added again when it
//!   is re-armed; an edge registration with one direction left armed is
//!   rewritten in place. None of this is a syscall.
//! - The `pollfd` array is kept *incrementally*, never rebuilt per wait: an
//!   added registration is appended, a removed one is taken out in O(1) with
//!   `swap_remove` (the entry moved into its place has its position fixed in
//!   a descriptor → position map), a modified one has its `events` rewritten
//!   in place. The steady state allocates nothing per wait. Because the
//!   kernel must walk the whole array anyway, the array is the only copy of
//!   the interest set; nothing is re-derived from the driver's table.
//! - Readable interest is `POLLIN | POLLRDHUP`, writable is `POLLOUT`;
//!   `POLLERR` and `POLLHUP` are always reported by the kernel. The
//!   readiness handed to the driver is limited to
//!   [`Ready::reportable`] of the watched interest (`POLLPRI` is dropped).
//! - Regular files are always ready: `poll(2)` reports them
//!   `POLLIN | POLLOUT` natively, so nothing special is needed (unlike
//!   epoll, which refuses them with `EPERM`).
//! - Closed descriptors (`POLLNVAL`): epoll refuses a closed descriptor at
//!   `EPOLL_CTL_ADD`/`EPOLL_CTL_MOD` with `EBADF`, and the event stream must
//!   not depend on the backend. `poll(2)` only learns at the wait, where it
//!   answers `POLLNVAL` (and returns at once, so a rejection never blocks).
//!   If the entry was added or changed by the batch of this very call (it is
//!   "fresh"), the change is refused: a [`Rejection`] with `EBADF`, and the
//!   entry leaves the array, as a refused `EPOLL_CTL_ADD` leaves nothing in
//!   an epoll set. Otherwise the descriptor was closed after it was
//!   registered and never forgotten: the entry is disabled silently (its
//!   `pollfd.fd` becomes -1, which the kernel skips) but kept, so that the
//!   removal the driver sends when the program forgets it finds it; a change
//!   for its key re-enables it with the real number, fresh again.
//!   `POLLNVAL` is never reported as readiness. A wait interrupted by a
//!   signal does not end freshness: the retry still rejects.
//! - As with any poll(2)-based loop, a descriptor closed and its number
//!   reused *without* forgetting the registration is watched under the old
//!   registration (the kernel only sees a number); forget before closing.
//! - Descriptor limits: none beyond `RLIMIT_NOFILE` (there is no
//!   `FD_SETSIZE`); [`Capabilities::max_fd`] is `None`. The array holds one
//!   entry per registration, plus one for the waker once it exists.
//! - `max_events`: `poll(2)` is stateless, so readiness that does not fit
//!   simply shows up again at the next wait. To keep entries late in the
//!   array from starving, the scan starts where the previous one stopped
//!   (round-robin) whenever more entries are ready than fit.
//! - The waker is an `eventfd(2)` kept as an extra `pollfd` entry, created
//!   at the first [`Backend::waker`] call. Wakes coalesce: a burst of wakes
//!   between two waits costs one `write(2)`.
//! - A wait interrupted by a signal returns `ErrorKind::Interrupted`; the
//!   batch was applied already (the changes are user-space writes), as the
//!   [`Backend`] contract requires.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

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

const EBADF: i32 = 9;

/// Descriptor number → position; the driver's integer hasher (SipHash
/// would dominate the cost of applying a change).
type FdMap = evmux_interest::DenseMap<RawFd, usize>;

/// What the backend knows about one `pollfd` entry, at the same position.
#[derive(Copy, Clone, Debug)]
struct Entry {
    /// The registration's key ([`Key::WAKER`] for the waker).
    key: Key,
    /// The descriptor number, also while the entry is disabled (when the
    /// `pollfd` holds -1).
    fd: RawFd,
    /// The watched interest.
    interest: Interest,
    /// The wait (epoch) whose batch last added or changed the entry.
    changed: u64,
}

/// The poll(2) backend. See the crate documentation.
pub struct PollBackend {
    /// The array handed to `poll(2)`. With a waker, position 0 is its
    /// eventfd; `swap_remove` of a registration never moves position 0.
    fds: Vec<PollFd>,
    /// Metadata, parallel to `fds`.
    entries: Vec<Entry>,
    /// Descriptor number → position, for registrations (not the waker).
    by_fd: FdMap,
    /// The waker, once created.
    waker: Option<Arc<PollWaker>>,
    /// The first position holding a registration: 1 with a waker, else 0.
    first: usize,
    /// Counts completed waits; an entry is fresh while its `changed` equals
    /// it.
    epoch: u64,
    /// Round-robin: where (relative to `first`) the next scan starts when
    /// more entries are ready than fit.
    rotor: usize,
    /// Positions rejected by the current wait (reused buffer).
    doomed: Vec<usize>,
    /// The epoch of [`Backend::now`].
    start: Instant,
    /// Signal and process sources ([`Backend::open_source`]).
    #[cfg(target_os = "linux")]
    sources: evmux_sys::source::Sources,
}

impl fmt::Debug for PollBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollBackend")
            .field("entries", &self.entries())
            .field("disabled", &self.disabled_entries())
            .field("waker", &self.waker.is_some())
            .finish_non_exhaustive()
    }
}

/// The `events` bits for a watched interest.
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

impl PollBackend {
    /// A new backend with an empty interest set. No descriptor is created
    /// until [`Backend::waker`] is called.
    ///
    /// # Errors
    /// None today; the signature matches the other backends.
    pub fn new() -> io::Result<PollBackend> {
        Ok(PollBackend {
            fds: Vec::new(),
            entries: Vec::new(),
            by_fd: FdMap::default(),
            waker: None,
            first: 0,
            epoch: 0,
            rotor: 0,
            doomed: Vec::new(),
            start: Instant::now(),
            #[cfg(target_os = "linux")]
            sources: evmux_sys::source::Sources::default(),
        })
    }

    /// How many `pollfd` entries registrations occupy (disabled ones
    /// included, the waker's not). For tests.
    #[doc(hidden)]
    pub fn entries(&self) -> usize {
        self.fds.len() - self.first
    }

    /// How many registration entries are disabled (closed under their
    /// registration, waiting to be forgotten). For tests.
    #[doc(hidden)]
    pub fn disabled_entries(&self) -> usize {
        self.fds[self.first..].iter().filter(|p| p.fd < 0).count()
    }

    /// Applies one change to the array.
    fn apply(&mut self, c: &Change) {
        let pos = self.by_fd.get(&c.fd).copied();
        let Some(watch) = c.new else {
            // A removal, or a registration the driver stopped watching. No
            // entry (or another key's): it was refused earlier, so there
            // is nothing to remove.
            if let Some(pos) = pos
                && self.entries[pos].key == c.key
            {
                self.remove_at(pos);
            }
            return;
        };
        debug_assert_eq!(
            watch.trigger,
            Trigger::Level,
            "the driver sent a trigger poll(2) does not have"
        );
        let entry = Entry {
            key: c.key,
            fd: c.fd,
            interest: watch.interest,
            changed: self.epoch,
        };
        let pollfd = PollFd {
            fd: c.fd,
            events: poll_events(watch.interest),
            revents: 0,
        };
        match pos {
            // Some → Some, a re-arm, or an add for a number whose entry the
            // driver no longer knows of (refused before): rewrite in place,
            // which also re-enables a disabled entry.
            Some(pos) => {
                self.entries[pos] = entry;
                self.fds[pos] = pollfd;
            }
            None => {
                self.by_fd.insert(c.fd, self.fds.len());
                self.fds.push(pollfd);
                self.entries.push(entry);
            }
        }
    }

    /// Removes the registration at `pos` in O(1).
    fn remove_at(&mut self, pos: usize) {
        debug_assert!(pos >= self.first, "the waker is never removed");
        let gone = self.entries.swap_remove(pos);
        self.fds.swap_remove(pos);
        self.by_fd.remove(&gone.fd);
        if let Some(moved) = self.entries.get(pos)
            && let Some(p) = self.by_fd.get_mut(&moved.fd)
        {
            *p = pos;
        }
    }

    /// Turns the `revents` of a wait that found `ready` entries into `out`.
    fn collect(&mut self, mut ready: usize, out: &mut Output, max_events: usize) -> io::Result<()> {
        let mut result = Ok(());
        if let Some(w) = &self.waker
            && self.fds[0].revents != 0
        {
            ready -= 1;
            result = w.notifier.drain().map(drop);
            out.events.push(RawEvent {
                key: Key::WAKER,
                ready: Ready::IN,
            });
        }
        let len = self.fds.len() - self.first;
        if ready == 0 || len == 0 {
            return result;
        }
        let room = max_events.saturating_sub(out.events.len());
        let start = if ready > room { self.rotor % len } else { 0 };
        let mut doomed = std::mem::take(&mut self.doomed);
        let (first, epoch) = (self.first, self.epoch);
        let fds = &mut self.fds[first..];
        let entries = &self.entries[first..];
        // From the rotor to the end, then from the start to the rotor. Most
        // entries of a large array are quiet: the inner `position` skips
        // them without the per-entry bookkeeping of the ready ones.
        'scan: for (lo, hi) in [(start, len), (0, start)] {
            let mut idx = lo;
            while idx < hi {
                let Some(skip) = fds[idx..hi].iter().position(|p| p.revents != 0) else {
                    break;
                };
                idx += skip;
                let revents = fds[idx].revents;
                let entry = &entries[idx];
                ready -= 1;
                if revents & POLLNVAL != 0 {
                    if entry.changed == epoch {
                        // Refused, as EPOLL_CTL_ADD/MOD would refuse it.
                        out.rejected.push(Rejection {
                            key: entry.key,
                            errno: EBADF,
                        });
                        doomed.push(first + idx);
                    } else {
                        // Closed under its registration: silent until a
                        // change for its key arrives or it is forgotten.
                        fds[idx].fd = -1;
                    }
                } else if out.events.len() < max_events {
                    // Past the limit, the scan goes on for POLLNVAL only: a
                    // fresh entry's refusal must be reported by this very
                    // wait.
                    let bits = ready_from_revents(revents) & Ready::reportable(entry.interest);
                    if !bits.is_empty() {
                        out.events.push(RawEvent {
                            key: entry.key,
                            ready: bits,
                        });
                        self.rotor = idx + 1;
                    }
                }
                if ready == 0 {
                    break 'scan;
                }
                idx += 1;
            }
        }
        // Highest position first: an entry that `swap_remove` moves comes
        // from the tail, above every position still to remove.
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for &pos in &doomed {
            self.remove_at(pos);
        }
        doomed.clear();
        self.doomed = doomed;
        result
    }
}

impl Backend for PollBackend {
    fn name(&self) -> &'static str {
        "poll"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_edge: false,
            native_oneshot: false,
            cheap_changes: true,
            max_fd: None,
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
            self.apply(c);
        }
        // A rejection needs no zero timeout here: a closed descriptor makes
        // poll(2) answer POLLNVAL and return at once. On EINTR the epoch is
        // not advanced, so the driver's retry still sees this batch's
        // entries as fresh.
        let ready = poll(&mut self.fds, timeout)?;
        let result = if ready > 0 {
            self.collect(ready, out, max_events.max(1))
        } else {
            Ok(())
        };
        self.epoch = self.epoch.wrapping_add(1);
        result
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        if let Some(w) = &self.waker {
            return Ok(w.clone());
        }
        let notifier = Notifier::new()?;
        let fd = notifier.as_raw_fd();
        let w = Arc::new(PollWaker { notifier });
        // Put the waker at position 0, moving whatever was there to the end.
        self.fds.push(PollFd {
            fd,
            events: POLLIN,
            revents: 0,
        });
        self.entries.push(Entry {
            key: Key::WAKER,
            fd,
            interest: Interest::READABLE,
            changed: 0,
        });
        let last = self.fds.len() - 1;
        if last != 0 {
            self.fds.swap(0, last);
            self.entries.swap(0, last);
            if let Some(p) = self.by_fd.get_mut(&self.entries[last].fd) {
                *p = last;
            }
        }
        self.first = 1;
        self.waker = Some(w.clone());
        Ok(w)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    evmux_sys::backend_sources!(sources);
}

/// Wakes a [`PollBackend`] through an eventfd in its `pollfd` array.
/// Wake-ups coalesce inside [`Notifier`].
#[derive(Debug)]
struct PollWaker {
    notifier: Notifier,
}

impl Wake for PollWaker {
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
}
