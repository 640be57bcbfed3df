//! The pure part of the backend: evmux's [`Change`]s to a kqueue changelist,
//! and kqueue's returned entries to [`RawEvent`]s and [`Rejection`]s.
//!
//! No syscall and no libc type: [`KEvent`] mirrors the fields of
//! `struct kevent` that matter, and the syscall layer converts. Everything a
//! wait decides is here, in [`Translator`], so that it can be unit-tested on
//! any OS; the syscall layer only performs the [`Call`]s it is handed.
//!
//! One wait goes like this:
//!
//! 1. [`Translator::begin`] turns the batch into [`Translator::changelist`]
//!    (internal entries left over from the last wait first, then the batch in
//!    order), reports the regular files kept in user space, and says what the
//!    first `kevent` call must be.
//! 2. The syscall layer makes that call and hands the returned entries to
//!    [`Translator::take_results`].
//! 3. [`Translator::next_call`] says whether a second call is needed (when
//!    the kernel skipped collecting events because a change produced an
//!    `EV_ERROR` entry that turned out not to be a rejection), and so on.
//!
//! Signal and process sources ([`crate::source`]) are opened, read and
//! closed outside waits ([`Translator::plan_source`],
//! [`Translator::open_source`], [`Translator::read_source`],
//! [`Translator::close_source`]); within a wait, the driver's changes for
//! their identity descriptors only bind them to a key, and their returned
//! entries become readiness of that key.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use evmux_interest::{
    Change, Interest, Key, Output, RawEvent, Ready, Rejection, SourceReport, SourceSpec, Trigger,
    Watch,
};

use crate::consts::{
    EV_ADD, EV_CLEAR, EV_DELETE, EV_DISABLE, EV_DISPATCH, EV_EOF, EV_ERROR, EV_RECEIPT, Os,
};
use crate::source::{ClosedSource, SourcePlan, SourceTable};

/// A kqueue filter, by meaning; its number depends on the system
/// ([`Filter::raw`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// `EVFILT_READ`.
    Read,
    /// `EVFILT_WRITE`.
    Write,
    /// `EVFILT_USER` (the waker).
    User,
    /// `EVFILT_PROC` (a process source; `ident` is the pid).
    Proc,
    /// `EVFILT_SIGNAL` (a signal source; `ident` is the signal number).
    Signal,
}

impl Filter {
    /// This filter's number on `os`.
    pub const fn raw(self, os: Os) -> i32 {
        let n = os.filters();
        match self {
            Filter::Read => n.read,
            Filter::Write => n.write,
            Filter::User => n.user,
            Filter::Proc => n.proc,
            Filter::Signal => n.signal,
        }
    }

    /// Every filter this crate uses.
    pub const ALL: [Filter; 5] = [
        Filter::Read,
        Filter::Write,
        Filter::User,
        Filter::Proc,
        Filter::Signal,
    ];

    /// The filter numbered `raw` on `os`, if it is one of [`Filter::ALL`].
    pub fn from_raw(os: Os, raw: i32) -> Option<Filter> {
        Filter::ALL.into_iter().find(|f| f.raw(os) == raw)
    }

    /// The direction a descriptor filter watches (`None` for the others).
    pub const fn interest(self) -> Option<Interest> {
        match self {
            Filter::Read => Some(Interest::READABLE),
            Filter::Write => Some(Interest::WRITABLE),
            Filter::User | Filter::Proc | Filter::Signal => None,
        }
    }

    /// Whether this is a source's filter (`EVFILT_PROC`, `EVFILT_SIGNAL`),
    /// whose `ident` is not a descriptor.
    pub const fn is_source(self) -> bool {
        matches!(self, Filter::Proc | Filter::Signal)
    }

    const fn bit(self) -> u8 {
        match self {
            Filter::Read => 0b01,
            Filter::Write => 0b10,
            Filter::User | Filter::Proc | Filter::Signal => 0,
        }
    }
}

/// The fields of a `struct kevent` this crate reads or writes, in plain
/// types. `flags` uses the values of [`crate::consts`], which are the same on
/// every system; `udata` is the registration's [`Key`] (reduced to the
/// pointer width, see [`Translator::udata`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct KEvent {
    /// The descriptor number (or the `EVFILT_USER` identifier).
    pub ident: usize,
    /// The filter.
    pub filter: Filter,
    /// `EV_*` flags.
    pub flags: u16,
    /// Filter-specific flags (in returned entries: the socket error with
    /// `EV_EOF`, on sockets).
    pub fflags: u32,
    /// Filter-specific data (in returned entries: bytes available or space;
    /// with `EV_ERROR`: the errno, 0 for a successful receipt).
    pub data: i64,
    /// Opaque to the kernel: the key.
    pub udata: u64,
}

impl KEvent {
    /// A changelist entry for descriptor `fd` (`fflags` and `data` 0).
    pub const fn change(fd: RawFd, filter: Filter, flags: u16, udata: u64) -> KEvent {
        KEvent {
            ident: fd as usize,
            filter,
            flags,
            fflags: 0,
            data: 0,
            udata,
        }
    }

    /// Whether every bit of `flag` is set in `flags`.
    pub const fn has(&self, flag: u16) -> bool {
        self.flags & flag == flag
    }
}

/// What a descriptor is, as far as the readiness mapping cares. Found once
/// per registration by the syscall layer (`fstat`), through [`Classify`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FdKind {
    /// A regular file: always ready, kept in user space, never given to the
    /// kernel.
    Regular,
    /// A pipe or FIFO.
    Fifo,
    /// A socket.
    Socket,
    /// Anything else (terminal, device, another kqueue, …), or unknown
    /// because `fstat` failed; mapped like a socket.
    Other,
}

/// Tells what a descriptor is. The syscall layer implements it with
/// `fstat`; tests with a closure or a table. Asked once per registration
/// (the first change that names a new key), never for removals.
pub trait Classify {
    /// What `fd` is.
    fn classify(&mut self, fd: RawFd) -> FdKind;
}

impl<F: FnMut(RawFd) -> FdKind> Classify for F {
    fn classify(&mut self, fd: RawFd) -> FdKind {
        self(fd)
    }
}

/// A `struct timespec` in plain types.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct KTimespec {
    /// Seconds, at most [`MAX_TIMEOUT_SECS`].
    pub sec: i64,
    /// Nanoseconds, below 10⁹.
    pub nsec: i64,
}

impl KTimespec {
    /// Zero: collect without blocking.
    pub const ZERO: KTimespec = KTimespec { sec: 0, nsec: 0 };
}

/// The longest timeout handed to the kernel: one year. OpenBSD refuses
/// timeouts above 10⁸ s with `EINVAL` and 32-bit FreeBSD has a 32-bit
/// `time_t`; a longer wait returns after a year with nothing, and the driver
/// waits again for the time that remains (`SEMANTICS.md`, "Timeouts").
pub const MAX_TIMEOUT_SECS: i64 = 365 * 24 * 60 * 60;

/// The `kevent` timeout for a wait of `timeout` (`None`: forever).
///
/// Exact to the nanosecond, so a wait never ends early on our account (the
/// kernels round up to their clock); clamped to [`MAX_TIMEOUT_SECS`], see
/// there.
pub fn timespec(timeout: Option<Duration>) -> Option<KTimespec> {
    timeout.map(|d| match i64::try_from(d.as_secs()) {
        Ok(sec) if sec < MAX_TIMEOUT_SECS => KTimespec {
            sec,
            nsec: i64::from(d.subsec_nanos()),
        },
        _ => KTimespec {
            sec: MAX_TIMEOUT_SECS,
            nsec: 0,
        },
    })
}

/// The flags that make a filter trigger as `trigger` asks.
///
/// `Edge` is `EV_CLEAR`. `Oneshot` is `EV_DISPATCH`, not `EV_ONESHOT`: the
/// knote stays, disabled after its first delivery, so re-arming is a
/// changelist entry rather than a re-registration that could fail, and a
/// registration can change mode without first finding out whether the
/// kernel already deleted it.
pub const fn trigger_flags(trigger: Trigger) -> u16 {
    match trigger {
        Trigger::Level => 0,
        Trigger::Edge => EV_CLEAR,
        Trigger::Oneshot => EV_DISPATCH,
    }
}

fn watches(w: Option<Watch>, filter: Filter) -> Option<Trigger> {
    let w = w?;
    let dir = filter.interest()?;
    w.interest.intersect(dir).map(|_| w.trigger)
}

/// Appends the changelist entries for one [`Change`] on a descriptor the
/// kernel watches (not a regular file).
///
/// Read and write are separate filters; for each:
/// - watched before, not now → `EV_DELETE`;
/// - watched now, not before → `EV_ADD` with the trigger's flags
///   ([`trigger_flags`]);
/// - watched before and now with another trigger, or `rearm` →
///   `EV_DELETE` then `EV_ADD`: kernels do not change `EV_CLEAR` or
///   `EV_DISPATCH` of an existing knote (FreeBSD and OpenBSD update only
///   `udata`, `fflags` and `data` on a re-add), and a fresh knote checks the
///   descriptor's readiness when it is attached on every system, which is
///   the re-check `rearm` asks for (and re-enables a fired `EV_DISPATCH`);
/// - otherwise nothing.
///
/// `EV_DELETE` entries carry `delete_udata` (see [`Translator::udata`]):
/// the kernel ignores `udata` when deleting, and it tells their error
/// entries apart from those of the `EV_ADD` that may follow for the same
/// descriptor and filter, on systems that overwrite the flags of an error
/// entry (FreeBSD, OpenBSD).
pub fn change_entries(c: &Change, udata: u64, delete_udata: u64, out: &mut Vec<KEvent>) {
    for filter in [Filter::Read, Filter::Write] {
        let delete = KEvent::change(c.fd, filter, EV_DELETE, delete_udata);
        let add = |t: Trigger| KEvent::change(c.fd, filter, EV_ADD | trigger_flags(t), udata);
        match (watches(c.old, filter), watches(c.new, filter)) {
            (None, None) => {}
            (Some(_), None) => out.push(delete),
            (None, Some(t)) => out.push(add(t)),
            (Some(was), Some(now)) => {
                if was != now || c.rearm {
                    out.push(delete);
                    out.push(add(now));
                }
            }
        }
    }
}

/// The readiness a returned (non-error) entry stands for, in Linux
/// `poll(2)` bits, for a descriptor of `kind`. See the crate documentation
/// for the table and the cases kqueue cannot tell apart.
///
/// - `EVFILT_READ`: `IN`; with `EV_EOF`, `IN|RDHUP` on a socket (the peer
///   shut its writing side), plus `ERR` when `fflags` carries a socket
///   error; on a pipe, `HUP`, plus `IN` if data is left (`data` > 0),
///   because Linux reports a pipe without writers as `POLLHUP`.
/// - `EVFILT_WRITE`: `OUT`; with `EV_EOF`, `OUT|HUP` on a socket (writes
///   would fail with `EPIPE`), plus `ERR` with a socket error; on a pipe
///   `OUT|ERR`, because Linux reports a pipe without readers as `POLLERR`.
/// - `EVFILT_USER`: `IN` (the waker); `EVFILT_PROC`, `EVFILT_SIGNAL`: `IN`
///   (a source has something to read).
pub fn ready_from_kevent(kind: FdKind, ev: &KEvent) -> Ready {
    let eof = ev.has(EV_EOF);
    let pipe = kind == FdKind::Fifo;
    let socket_error = if eof && !pipe && ev.fflags != 0 {
        Ready::ERR
    } else {
        Ready::EMPTY
    };
    match ev.filter {
        Filter::Read if !eof => Ready::IN,
        Filter::Read if pipe => {
            if ev.data > 0 {
                Ready::HUP | Ready::IN
            } else {
                Ready::HUP
            }
        }
        Filter::Read => Ready::IN | Ready::RDHUP | socket_error,
        Filter::Write if !eof => Ready::OUT,
        Filter::Write if pipe => Ready::OUT | Ready::ERR,
        Filter::Write => Ready::OUT | Ready::HUP | socket_error,
        Filter::User | Filter::Proc | Filter::Signal => Ready::IN,
    }
}

/// The largest eventlist one `kevent` call is given. Readiness that does not
/// fit stays queued in the kernel for the next wait.
pub const MAX_EVENTS_PER_CALL: usize = 4096;

/// One `kevent` call the syscall layer must make.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Call {
    /// Submit [`Translator::changelist`] (otherwise an empty changelist).
    pub submit_changes: bool,
    /// Set `EV_RECEIPT` on every submitted entry. The kernel then answers
    /// each change with an `EV_ERROR` entry and collects no event.
    pub receipts: bool,
    /// The eventlist length.
    pub nevents: usize,
    /// The timeout (`None`: forever).
    pub timeout: Option<KTimespec>,
}

/// A registration the kernel watches.
#[derive(Copy, Clone, Debug)]
struct Reg {
    fd: RawFd,
    watch: Watch,
    kind: FdKind,
    /// The wait whose batch last changed it.
    epoch: u64,
}

/// A regular file, kept ready in user space.
#[derive(Copy, Clone, Debug)]
struct FileEntry {
    key: Key,
    watch: Watch,
    /// Edge/oneshot: a report is due.
    pending: bool,
}

/// An entry the backend adds to the next changelist on its own.
#[derive(Copy, Clone, Debug)]
struct Internal {
    /// For the disable of a fired oneshot registration's other filter: its
    /// key. Dropped when the next batch changes that key anyway.
    key: Option<Key>,
    ev: KEvent,
}

/// A change the kernel refused in the current call.
#[derive(Copy, Clone, Debug)]
struct Refused {
    key: Key,
    fd: RawFd,
    interest: Interest,
    /// The filters whose entries failed.
    failed: u8,
}

#[derive(Copy, Clone, Debug, Default)]
struct WaitState {
    /// The most readiness entries this wait may report.
    max: usize,
    /// Room for readiness left after the regular files and sources.
    room: usize,
    /// The timeout for a call that waits.
    timeout: Option<KTimespec>,
    /// The last call submitted the changelist.
    submitted: bool,
    /// The last call returned `EV_ERROR` entries: the kernel collected no
    /// events in it.
    error_entries: bool,
}

const EIO: i32 = 5;

/// The backend's state, without the kernel: what each registration watches,
/// the regular files kept in user space, and the entries the next
/// changelist must carry. See the module documentation for the sequence of
/// calls.
#[derive(Debug)]
pub struct Translator {
    mask: u64,
    regs: HashMap<Key, Reg>,
    by_fd: HashMap<RawFd, Key>,
    files: Vec<FileEntry>,
    file_pos: HashMap<Key, usize>,
    internal: Vec<Internal>,
    changelist: Vec<KEvent>,
    epoch: u64,
    wait: WaitState,
    /// This wait: key → (index in `out.events`, filters reported).
    seen: HashMap<Key, (usize, u8)>,
    woke: bool,
    refused: Vec<Refused>,
    new_keys: Vec<Key>,
    sources: SourceTable,
    /// Scratch: keys of sources a returned entry made readable.
    source_keys: Vec<Key>,
}

impl Default for Translator {
    fn default() -> Translator {
        Translator::new()
    }
}

impl Translator {
    /// A translator for this target's pointer width.
    pub fn new() -> Translator {
        Translator::with_udata_bits(usize::BITS)
    }

    /// A translator whose `udata` holds `bits` bits (32 or 64): the width of
    /// `void *` on the target. Tests use 32 to check what a 32-bit system
    /// would do.
    pub fn with_udata_bits(bits: u32) -> Translator {
        let mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        Translator {
            mask,
            regs: HashMap::new(),
            by_fd: HashMap::new(),
            files: Vec::new(),
            file_pos: HashMap::new(),
            internal: Vec::new(),
            changelist: Vec::new(),
            epoch: 0,
            wait: WaitState::default(),
            seen: HashMap::new(),
            woke: false,
            refused: Vec::new(),
            new_keys: Vec::new(),
            sources: SourceTable::default(),
            source_keys: Vec::new(),
        }
    }

    /// The `udata` that stands for `key`: the key reduced to the pointer
    /// width. On 64-bit systems that is the key itself.
    ///
    /// `udata(Key::WAKER)` (all ones) marks the waker's events and every
    /// `EV_DELETE` entry; the driver never gives a registration that key,
    /// and on a 32-bit system only a registration with slot index 2³²−1
    /// would collide with it. Returned entries are matched to registrations
    /// by descriptor number, and dropped unless their `udata` is that
    /// registration's, so a truncated key is still checked against 32 bits.
    pub const fn udata(&self, key: Key) -> u64 {
        key.0 & self.mask
    }

    /// The changelist of the current wait, for [`Call::submit_changes`].
    pub fn changelist(&self) -> &[KEvent] {
        &self.changelist
    }

    /// Entries already queued for the next changelist: the disable of a
    /// fired oneshot registration's other filter, the deletes that undo what
    /// a refused change had added.
    pub fn pending_internal(&self) -> impl Iterator<Item = &KEvent> + '_ {
        self.internal.iter().map(|i| &i.ev)
    }

    /// How many registrations the kernel watches.
    pub fn kernel_registrations(&self) -> usize {
        self.regs.len()
    }

    /// How many regular files are kept ready in user space.
    pub fn user_space_files(&self) -> usize {
        self.files.len()
    }

    /// How many signal and process sources are open.
    pub fn open_sources(&self) -> usize {
        self.sources.len()
    }

    /// The first step of [`Backend::open_source`](evmux_interest::Backend):
    /// validates `spec` for `os` and says which entry to submit (see
    /// [`SourcePlan`]). Nothing changes until
    /// [`open_source`](Translator::open_source).
    ///
    /// # Errors
    /// `InvalidInput` for `SIGKILL`, `SIGSTOP`, a signal number outside
    /// `1..=`[`Os::max_signal`], or `pid ≤ 0`; `Unsupported` for a kind of
    /// source kqueue has no filter for.
    pub fn plan_source(&self, os: Os, spec: SourceSpec) -> io::Result<SourcePlan> {
        self.sources.plan(os, spec)
    }

    /// Records a source whose [`SourcePlan::add`] the kernel accepted (or
    /// that had none), watched by the driver through the identity
    /// descriptor `fd`. Returns its id.
    pub fn open_source(&mut self, plan: SourcePlan, fd: RawFd) -> u64 {
        self.sources.open(plan, fd)
    }

    /// What source `id` has to report: the deliveries since the last read
    /// (saturating at `u32::MAX`), an exit once, or nothing.
    ///
    /// # Errors
    /// `NotFound` for an id that is not open.
    pub fn read_source(&mut self, id: u64) -> io::Result<SourceReport> {
        self.sources.read(id)
    }

    /// Forgets source `id` and says what the syscall layer must undo (see
    /// [`ClosedSource`]); `None` for an id that is not open. Its unread
    /// deliveries are dropped.
    pub fn close_source(&mut self, id: u64) -> Option<ClosedSource> {
        let delete_udata = self.udata(Key::WAKER);
        self.sources.close(id, delete_udata)
    }

    /// The ids of the open sources.
    pub fn source_ids(&self) -> Vec<u64> {
        self.sources.ids().collect()
    }

    /// Starts a wait: builds the changelist for `changes`, reports the
    /// regular files that are due and the sources with something unread
    /// into `out` (at most `max_events`), and returns the first `kevent`
    /// call to make, if any.
    ///
    /// The call waits only if nothing is reported yet; it submits the
    /// changelist and collects events at once when the changelist is no
    /// longer than the room for events (so that every error entry fits in
    /// the eventlist, which every kernel requires to go on applying
    /// changes); otherwise it submits the changes with `EV_RECEIPT` and a
    /// second call collects the events.
    ///
    /// The state is updated as if the whole changelist applied; refusals are
    /// taken back by [`take_results`](Translator::take_results).
    pub fn begin<C: Classify + ?Sized>(
        &mut self,
        changes: &[Change],
        classify: &mut C,
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> Option<Call> {
        self.epoch += 1;
        self.seen.clear();
        self.woke = false;
        self.changelist.clear();

        // Entries queued by the last wait come first. A oneshot disable is
        // moot when the batch changes its key (it re-adds or deletes).
        if !self.internal.is_empty() {
            let changed: HashSet<Key> = if self.internal.iter().any(|i| i.key.is_some()) {
                changes.iter().map(|c| c.key).collect()
            } else {
                HashSet::new()
            };
            for i in self.internal.drain(..) {
                if i.key.is_some_and(|k| changed.contains(&k)) {
                    continue;
                }
                self.changelist.push(i.ev);
            }
        }
        for c in changes {
            self.apply(c, classify);
        }

        let max = max_events.clamp(1, MAX_EVENTS_PER_CALL);
        self.report_files(out, max);
        self.report_sources(out, max);
        let room = max.saturating_sub(out.events.len());
        let timeout = if out.events.is_empty() {
            timespec(timeout)
        } else {
            Some(KTimespec::ZERO)
        };
        let n = self.changelist.len();
        self.wait = WaitState {
            max,
            room,
            timeout,
            submitted: n > 0,
            error_entries: false,
        };
        if n == 0 {
            return (room > 0).then_some(Call {
                submit_changes: false,
                receipts: false,
                nevents: room,
                timeout,
            });
        }
        if n <= room {
            Some(Call {
                submit_changes: true,
                receipts: false,
                nevents: room,
                timeout,
            })
        } else {
            Some(Call {
                submit_changes: true,
                receipts: true,
                nevents: n,
                timeout: Some(KTimespec::ZERO),
            })
        }
    }

    fn apply<C: Classify + ?Sized>(&mut self, c: &Change, classify: &mut C) {
        let known = match self.regs.get(&c.key) {
            Some(r) => Some(r.kind),
            None => self
                .file_pos
                .contains_key(&c.key)
                .then_some(FdKind::Regular),
        };
        // A source's identity descriptor: bind, never a kernel entry. (A
        // key the kernel watches as a descriptor is not a source's, even if
        // its number was closed and reused for one.)
        if known.is_none()
            && let Some(id) = self.sources.by_fd(c.fd)
        {
            self.sources.bind(id, c.key, c.new.is_some());
            return;
        }
        let udata = self.udata(c.key);
        let delete_udata = self.udata(Key::WAKER);
        match c.new {
            None => {
                if known == Some(FdKind::Regular) {
                    self.remove_file(c.key);
                    return;
                }
                if let Some(reg) = self.regs.remove(&c.key)
                    && self.by_fd.get(&reg.fd) == Some(&c.key)
                {
                    self.by_fd.remove(&reg.fd);
                }
                change_entries(c, udata, delete_udata, &mut self.changelist);
            }
            Some(w) => {
                let kind = match known {
                    Some(k) => k,
                    None => classify.classify(c.fd),
                };
                if kind == FdKind::Regular {
                    match self.file_pos.get(&c.key) {
                        Some(&pos) => {
                            let f = &mut self.files[pos];
                            f.watch = w;
                            f.pending = true;
                        }
                        None => {
                            self.file_pos.insert(c.key, self.files.len());
                            self.files.push(FileEntry {
                                key: c.key,
                                watch: w,
                                pending: true,
                            });
                        }
                    }
                    return;
                }
                change_entries(c, udata, delete_udata, &mut self.changelist);
                self.regs.insert(
                    c.key,
                    Reg {
                        fd: c.fd,
                        watch: w,
                        kind,
                        epoch: self.epoch,
                    },
                );
                self.by_fd.insert(c.fd, c.key);
            }
        }
    }

    fn remove_file(&mut self, key: Key) {
        if let Some(pos) = self.file_pos.remove(&key) {
            self.files.swap_remove(pos);
            if let Some(moved) = self.files.get(pos) {
                self.file_pos.insert(moved.key, pos);
            }
        }
    }

    /// Regular files are always ready: every wait for level, once per
    /// (re)arm for edge and oneshot.
    fn report_files(&mut self, out: &mut Output, max: usize) {
        for f in &mut self.files {
            if out.events.len() >= max {
                break;
            }
            let due = match f.watch.trigger {
                Trigger::Level => true,
                Trigger::Edge | Trigger::Oneshot => std::mem::take(&mut f.pending),
            };
            if due {
                out.events.push(RawEvent {
                    key: f.key,
                    ready: (Ready::IN | Ready::OUT) & Ready::reportable(f.watch.interest),
                });
            }
        }
    }

    /// Sources are level: one with something unread is reported at every
    /// wait until the driver reads it.
    fn report_sources(&mut self, out: &mut Output, max: usize) {
        let mut keys = std::mem::take(&mut self.source_keys);
        keys.clear();
        keys.extend(self.sources.unread_keys());
        for &key in &keys {
            self.report_source(key, out, max);
        }
        self.source_keys = keys;
    }

    /// Reports `IN` for a source's key, once per wait, if there is room
    /// (otherwise a later wait reports it: it stays unread).
    fn report_source(&mut self, key: Key, out: &mut Output, max: usize) {
        if self.seen.contains_key(&key) || out.events.len() >= max {
            return;
        }
        self.seen.insert(key, (out.events.len(), 0));
        out.events.push(RawEvent {
            key,
            ready: Ready::IN,
        });
    }

    /// The registration `ident`/`udata` belong to: the one watching that
    /// descriptor, if its `udata` matches (otherwise the entry is stale).
    fn resolve(&self, ident: usize, udata: u64) -> Option<Key> {
        let fd = RawFd::try_from(ident).ok()?;
        let key = *self.by_fd.get(&fd)?;
        (self.udata(key) == udata).then_some(key)
    }

    /// Takes the entries one `kevent` call returned: readiness into
    /// `out.events` (one entry per key, read and write merged), refused
    /// changes into `out.rejected`. Returns whether the waker reported (the
    /// syscall layer then drains a self-pipe).
    ///
    /// `EV_ERROR` entries: `data` 0 is a successful receipt; an entry of an
    /// `EV_DELETE` (its `udata` is the delete marker) is never a rejection
    /// (`ENOENT`, `EBADF`: the descriptor was closed, which removed its
    /// knotes); an entry for a registration this wait's batch changed is a
    /// [`Rejection`] (once per key) and the registration is forgotten, with
    /// deletes queued for what its change may have added; anything else is
    /// an internal entry's and ignored.
    ///
    /// A fired oneshot registration that watches both directions but
    /// reported through one filter only gets its other filter disabled at
    /// the head of the next changelist, before anything is collected, so
    /// that it stays silent until it is declared again.
    pub fn take_results(&mut self, results: &[KEvent], out: &mut Output) -> bool {
        let waker_udata = self.udata(Key::WAKER);
        let mut woke = false;
        self.refused.clear();
        self.new_keys.clear();
        for ev in results {
            if ev.has(EV_ERROR) {
                self.wait.error_entries = true;
                // A source's knote is added and deleted outside waits.
                if ev.data == 0 || ev.udata == waker_udata || ev.filter.is_source() {
                    continue;
                }
                let Some(key) = self.resolve(ev.ident, ev.udata) else {
                    continue;
                };
                let reg = self.regs[&key];
                if reg.epoch != self.epoch {
                    continue;
                }
                if let Some(r) = self.refused.iter_mut().find(|r| r.key == key) {
                    r.failed |= ev.filter.bit();
                    continue;
                }
                self.refused.push(Refused {
                    key,
                    fd: reg.fd,
                    interest: reg.watch.interest,
                    failed: ev.filter.bit(),
                });
                out.rejected.push(Rejection {
                    key,
                    errno: i32::try_from(ev.data).unwrap_or(EIO),
                });
                continue;
            }
            if ev.filter.is_source() {
                let mut keys = std::mem::take(&mut self.source_keys);
                keys.clear();
                self.sources.take_entry(ev, &mut keys);
                for &key in &keys {
                    self.report_source(key, out, self.wait.max);
                }
                self.source_keys = keys;
                continue;
            }
            if ev.udata == waker_udata {
                woke = true;
                if !self.woke {
                    self.woke = true;
                    out.events.push(RawEvent {
                        key: Key::WAKER,
                        ready: Ready::IN,
                    });
                }
                continue;
            }
            let Some(key) = self.resolve(ev.ident, ev.udata) else {
                continue;
            };
            let reg = self.regs[&key];
            let ready = ready_from_kevent(reg.kind, ev) & Ready::reportable(reg.watch.interest);
            if ready.is_empty() {
                continue;
            }
            match self.seen.get_mut(&key) {
                Some((idx, bits)) => {
                    out.events[*idx].ready |= ready;
                    *bits |= ev.filter.bit();
                }
                None => {
                    self.seen.insert(key, (out.events.len(), ev.filter.bit()));
                    self.new_keys.push(key);
                    out.events.push(RawEvent { key, ready });
                }
            }
        }

        let delete_udata = waker_udata;
        for r in std::mem::take(&mut self.refused) {
            if self.regs.remove(&r.key).is_some() && self.by_fd.get(&r.fd) == Some(&r.key) {
                self.by_fd.remove(&r.fd);
            }
            for filter in [Filter::Read, Filter::Write] {
                let watched = filter
                    .interest()
                    .and_then(|d| r.interest.intersect(d))
                    .is_some();
                if watched && r.failed & filter.bit() == 0 {
                    self.internal.push(Internal {
                        key: None,
                        ev: KEvent::change(r.fd, filter, EV_DELETE, delete_udata),
                    });
                }
            }
        }

        for i in 0..self.new_keys.len() {
            let key = self.new_keys[i];
            let Some(&(_, bits)) = self.seen.get(&key) else {
                continue;
            };
            let Some(reg) = self.regs.get(&key) else {
                continue;
            };
            if reg.watch.trigger != Trigger::Oneshot || reg.watch.interest != Interest::BOTH {
                continue;
            }
            let (fd, udata) = (reg.fd, self.udata(key));
            for filter in [Filter::Read, Filter::Write] {
                if bits & filter.bit() == 0 {
                    self.internal.push(Internal {
                        key: Some(key),
                        ev: KEvent::change(fd, filter, EV_DISABLE, udata),
                    });
                }
            }
        }
        woke
    }

    /// The call to make after the last one's results were taken, if any:
    /// a wait with an empty changelist when the last call submitted the
    /// changelist but the kernel returned `EV_ERROR` entries (receipts, or
    /// errors of removals of closed descriptors) and so collected nothing,
    /// unless a change was refused (then the wait does not block, per the
    /// backend contract) or there is no room.
    pub fn next_call(&mut self, out: &Output) -> Option<Call> {
        let w = &mut self.wait;
        let submitted = std::mem::take(&mut w.submitted);
        let error_entries = std::mem::take(&mut w.error_entries);
        if !submitted || !error_entries {
            return None;
        }
        if !out.rejected.is_empty() || w.room == 0 {
            return None;
        }
        Some(Call {
            submit_changes: false,
            receipts: false,
            nevents: w.room,
            timeout: w.timeout,
        })
    }
}

/// The flags of a changelist entry as submitted by `call`.
pub const fn submitted_flags(ev: &KEvent, call: &Call) -> u16 {
    if call.receipts {
        ev.flags | EV_RECEIPT
    } else {
        ev.flags
    }
}
