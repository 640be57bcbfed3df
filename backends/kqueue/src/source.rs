//! Signal and process sources on kqueue's own filters, `EVFILT_SIGNAL` and
//! `EVFILT_PROC` with `NOTE_EXIT`: the pure part (validation, the entries to
//! submit, the decoding of what comes back, the per-source state).
//!
//! The driver watches a source like a descriptor (`SEMANTICS.md`, "Signals",
//! "Process exits"): [`Backend::open_source`](evmux_interest::Backend) hands
//! it a descriptor number, which it registers readable and level-triggered
//! under the caller's token. kqueue needs no descriptor for either kind, so
//! the descriptor is only an *identity*: the syscall layer allocates one
//! (a close-on-exec duplicate of the kqueue descriptor, which costs no path
//! and no extra kernel object), and [`Translator`](crate::translate::Translator)
//! recognises the driver's changes for that number and never gives them to
//! the kernel as a descriptor filter. The knote itself is added when the
//! source is opened, by one `kevent` call of its own, so that a bad pid is
//! `NotFound` from `add_process` itself, as on Linux, rather than an error
//! event later; its `EV_ERROR` becomes the `io::Error` of
//! [`SourcePlan::refused`].
//!
//! - A signal is `EVFILT_SIGNAL` with `ident` = the signal number,
//!   `EV_ADD | EV_CLEAR` (the kernels set `EV_CLEAR` on this filter
//!   themselves). A returned entry's `data` is the number of attempts to
//!   deliver the signal since the last report; they add up until the driver
//!   reads them
//!   ([`Translator::read_source`](crate::translate::Translator::read_source)).
//! - A process is `EVFILT_PROC` with `ident` = the pid, `fflags` =
//!   `NOTE_EXIT` (plus [`NOTE_EXITSTATUS`](crate::consts::NOTE_EXITSTATUS)
//!   on macOS), `EV_ADD | EV_ONESHOT`: the kernel reports the exit once and
//!   drops the knote. The entry's `data` is the exit status as `wait(2)`
//!   encodes it (on macOS only with `NOTE_EXITSTATUS`, see [`ExitData`]),
//!   which [`decode_wait_status`] turns into an [`ExitStatus`]. Nothing is
//!   reaped.
//!
//! A source with something unread (deliveries, an exit) is readable, level:
//! it is reported at every wait until the driver reads it (normally right
//! after the wait that reported it).
//!
//! Several sources on the same knote (two `add_process` of one pid in one
//! poller) share it: the first adds it, the last one closed deletes it, and
//! each returned entry goes to all of them.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;

use evmux_interest::{ExitStatus, Key, SourceReport, SourceSpec};

use crate::consts::{
    EACCES, EINVAL, EPERM, ESRCH, EV_ADD, EV_CLEAR, EV_DELETE, EV_EOF, EV_ONESHOT, NOTE_EXIT, Os,
    SIGKILL, SIGSTOP,
};
use crate::translate::{Filter, KEvent};

/// Checks that `signo` can be watched on `os`: `InvalidInput` for `SIGKILL`,
/// `SIGSTOP` (which cannot be caught) and numbers outside
/// `1..=`[`Os::max_signal`].
pub fn check_signal(os: Os, signo: i32) -> io::Result<()> {
    if signo == SIGKILL || signo == SIGSTOP {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signo} (SIGKILL or SIGSTOP) cannot be caught"),
        ));
    }
    if !(1..=os.max_signal()).contains(&signo) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "signal {signo} is outside 1..={} on {os:?}",
                os.max_signal()
            ),
        ));
    }
    Ok(())
}

/// Checks that `pid` names one process: `InvalidInput` for `pid ≤ 0` (which
/// `kill(2)` would take for a process group or "every process").
pub fn check_pid(pid: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pid {pid} does not name one process"),
        ));
    }
    Ok(())
}

/// Decodes an exit status as `wait(2)` encodes it on all five systems (and
/// on Linux): the low 7 bits are the terminating signal, 0 for a normal exit
/// (then bits 8–15 are the exit code), `0x7f` for a stopped process (not an
/// exit: [`ExitStatus::Unknown`]); bit 7 is the core-dump flag. This is
/// `WIFEXITED`/`WEXITSTATUS`/`WIFSIGNALED`/`WTERMSIG` without libc.
pub const fn decode_wait_status(status: i64) -> ExitStatus {
    let low = status & 0x7f;
    if low == 0 {
        ExitStatus::Code(((status >> 8) & 0xff) as i32)
    } else if low == 0x7f {
        ExitStatus::Unknown
    } else {
        ExitStatus::Signaled(low as i32)
    }
}

/// Where a process source's exit status comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExitData {
    /// `data` of the `NOTE_EXIT` entry, always (the BSDs).
    Always,
    /// `data`, if the entry's `fflags` has this bit (macOS:
    /// [`NOTE_EXITSTATUS`](crate::consts::NOTE_EXITSTATUS)); otherwise
    /// unknown.
    IfFlagged(u32),
    /// Not available: [`ExitStatus::Unknown`] (macOS, for a process the
    /// kernel would not give the status of).
    Never,
}

/// The exit status a returned `EVFILT_PROC` entry carries, per `rule`.
pub fn exit_status(ev: &KEvent, rule: ExitData) -> ExitStatus {
    match rule {
        ExitData::Always => decode_wait_status(ev.data),
        ExitData::IfFlagged(bit) if ev.fflags & bit == bit => decode_wait_status(ev.data),
        ExitData::IfFlagged(_) | ExitData::Never => ExitStatus::Unknown,
    }
}

/// Whether a returned `EVFILT_PROC` entry says the process exited
/// (`NOTE_EXIT` in `fflags`; kernels also set `EV_EOF`).
pub const fn is_exit(ev: &KEvent) -> bool {
    ev.fflags & NOTE_EXIT != 0 || ev.has(EV_EOF)
}

/// The `io::Error` for a source whose `EV_ADD` the kernel refused with
/// `errno`: `ESRCH` is `NotFound` (no such process), `EINVAL`
/// `InvalidInput`, `EPERM`/`EACCES` `PermissionDenied`; anything else keeps
/// its errno.
pub fn add_error(spec: SourceSpec, errno: i32) -> io::Error {
    let what = match spec {
        SourceSpec::Signal(signo) => format!("EVFILT_SIGNAL of signal {signo}"),
        SourceSpec::Process(pid) => format!("EVFILT_PROC of pid {pid}"),
        other => format!("{other:?}"),
    };
    let (kind, why) = match errno {
        ESRCH => (io::ErrorKind::NotFound, "no such process (ESRCH)"),
        EINVAL => (io::ErrorKind::InvalidInput, "invalid argument (EINVAL)"),
        EPERM => (io::ErrorKind::PermissionDenied, "not permitted (EPERM)"),
        EACCES => (
            io::ErrorKind::PermissionDenied,
            "permission denied (EACCES)",
        ),
        _ => {
            let e = io::Error::from_raw_os_error(errno);
            return io::Error::new(e.kind(), format!("kevent: adding {what}: {e}"));
        }
    };
    io::Error::new(kind, format!("kevent: adding {what}: {why}"))
}

/// The knote a source watches: its filter and `ident`.
fn knote_of(spec: SourceSpec) -> Option<(Filter, usize)> {
    match spec {
        SourceSpec::Signal(signo) => Some((Filter::Signal, usize::try_from(signo).ok()?)),
        SourceSpec::Process(pid) => Some((Filter::Proc, usize::try_from(pid).ok()?)),
        _ => None,
    }
}

/// What opening one source takes: made by
/// [`Translator::plan_source`](crate::translate::Translator::plan_source),
/// then the syscall layer submits [`SourcePlan::add`] on its own (a
/// changelist of one entry and no eventlist, so that a refusal is the
/// call's error), and hands the plan back to
/// [`Translator::open_source`](crate::translate::Translator::open_source)
/// on success or to [`SourcePlan::refused`] on failure.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SourcePlan {
    spec: SourceSpec,
    knote: (Filter, usize),
    add: Option<KEvent>,
    exit_data: ExitData,
}

impl SourcePlan {
    /// What is watched.
    pub const fn spec(&self) -> SourceSpec {
        self.spec
    }

    /// The entry to submit, or `None` when another source of this backend
    /// has the knote in the kernel already (nothing to submit).
    pub const fn add(&self) -> Option<&KEvent> {
        self.add.as_ref()
    }

    /// Where the exit status will come from (process sources).
    pub const fn exit_data(&self) -> ExitData {
        self.exit_data
    }

    /// The kernel refused [`add`](SourcePlan::add) with `errno`: the plan to
    /// try instead, or the error for `open_source`.
    ///
    /// The one retry: macOS refuses `NOTE_EXITSTATUS` with `EACCES` for a
    /// process that is neither our child nor one we may signal; the process
    /// is then watched without it and its exit is [`ExitStatus::Unknown`],
    /// as Linux reports the exit of a process that is not our child.
    ///
    /// # Errors
    /// [`add_error`] of `errno` otherwise.
    pub fn refused(self, errno: i32) -> io::Result<SourcePlan> {
        if let (Some(add), ExitData::IfFlagged(bit)) = (self.add, self.exit_data)
            && errno == EACCES
            && add.fflags & bit != 0
        {
            return Ok(SourcePlan {
                add: Some(KEvent {
                    fflags: add.fflags & !bit,
                    ..add
                }),
                exit_data: ExitData::Never,
                ..self
            });
        }
        Err(add_error(self.spec, errno))
    }
}

/// A source's progress.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// A signal source: deliveries not yet read.
    Signal { pending: u64 },
    /// A process that has not exited (as far as we know).
    Running,
    /// It exited; not yet read.
    Exited(ExitStatus),
    /// Its exit was read: nothing more, ever.
    Reported,
}

#[derive(Copy, Clone, Debug)]
struct Source {
    spec: SourceSpec,
    knote: (Filter, usize),
    /// The identity descriptor the driver registers.
    fd: RawFd,
    /// The driver's registration of `fd`, once its change arrived.
    key: Option<Key>,
    state: State,
    exit_data: ExitData,
    /// The knote is (as far as we know) in the kernel: false once a
    /// `NOTE_EXIT` was returned (`EV_ONESHOT` deleted it).
    in_kernel: bool,
}

impl Source {
    const fn unread(&self) -> bool {
        matches!(
            self.state,
            State::Signal { pending: 1.. } | State::Exited(_)
        )
    }
}

/// What closing a source leaves for the syscall layer to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClosedSource {
    /// What was watched (a signal's handler is the syscall layer's to
    /// restore).
    pub spec: SourceSpec,
    /// The identity descriptor, to close.
    pub fd: RawFd,
    /// The entry that deletes the knote, to submit on its own (errors
    /// ignored), or `None` when the kernel dropped it already (a reported
    /// exit) or another source still uses it.
    pub delete: Option<KEvent>,
}

/// Every open source of one backend. Owned by the
/// [`Translator`](crate::translate::Translator), which routes changes and
/// returned entries here.
#[derive(Debug, Default)]
pub(crate) struct SourceTable {
    sources: BTreeMap<u64, Source>,
    by_fd: BTreeMap<RawFd, u64>,
    next_id: u64,
}

impl SourceTable {
    pub(crate) fn len(&self) -> usize {
        self.sources.len()
    }

    fn live_knote(&self, knote: (Filter, usize)) -> Option<&Source> {
        self.sources
            .values()
            .find(|s| s.knote == knote && s.in_kernel)
    }

    pub(crate) fn plan(&self, os: Os, spec: SourceSpec) -> io::Result<SourcePlan> {
        let (flags, fflags, exit_data) = match spec {
            SourceSpec::Signal(signo) => {
                check_signal(os, signo)?;
                (EV_ADD | EV_CLEAR, 0, ExitData::Always)
            }
            SourceSpec::Process(pid) => {
                check_pid(pid)?;
                match os.exit_status_fflag() {
                    Some(bit) => (
                        EV_ADD | EV_ONESHOT,
                        NOTE_EXIT | bit,
                        ExitData::IfFlagged(bit),
                    ),
                    None => (EV_ADD | EV_ONESHOT, NOTE_EXIT, ExitData::Always),
                }
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kqueue backend has no {other:?} sources"),
                ));
            }
        };
        let knote = knote_of(spec).expect("validated: positive");
        if let Some(shared) = self.live_knote(knote) {
            return Ok(SourcePlan {
                spec,
                knote,
                add: None,
                exit_data: shared.exit_data,
            });
        }
        Ok(SourcePlan {
            spec,
            knote,
            add: Some(KEvent {
                ident: knote.1,
                filter: knote.0,
                flags,
                fflags,
                data: 0,
                udata: 0,
            }),
            exit_data,
        })
    }

    pub(crate) fn open(&mut self, plan: SourcePlan, fd: RawFd) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let state = match plan.spec {
            SourceSpec::Signal(_) => State::Signal { pending: 0 },
            _ => State::Running,
        };
        self.sources.insert(
            id,
            Source {
                spec: plan.spec,
                knote: plan.knote,
                fd,
                key: None,
                state,
                exit_data: plan.exit_data,
                in_kernel: true,
            },
        );
        self.by_fd.insert(fd, id);
        id
    }

    /// The source whose identity descriptor is `fd`.
    pub(crate) fn by_fd(&self, fd: RawFd) -> Option<u64> {
        self.by_fd.get(&fd).copied()
    }

    /// The driver's change for a source's descriptor: a watch binds the
    /// source to the change's key, a removal unbinds it. Never a kernel
    /// entry.
    pub(crate) fn bind(&mut self, id: u64, key: Key, watched: bool) {
        if let Some(s) = self.sources.get_mut(&id) {
            if watched {
                s.key = Some(key);
            } else if s.key == Some(key) {
                s.key = None;
            }
        }
    }

    /// The keys of bound sources with something unread.
    pub(crate) fn unread_keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.sources
            .values()
            .filter(|s| s.unread())
            .filter_map(|s| s.key)
    }

    /// Takes a returned (non-error) entry of a source filter; pushes the
    /// keys of the bound sources it made readable into `keys`.
    pub(crate) fn take_entry(&mut self, ev: &KEvent, keys: &mut Vec<Key>) {
        let knote = (ev.filter, ev.ident);
        for s in self.sources.values_mut().filter(|s| s.knote == knote) {
            match (ev.filter, &mut s.state) {
                (Filter::Signal, State::Signal { pending }) => {
                    // An entry means at least one delivery.
                    let n = u64::try_from(ev.data).unwrap_or(0).max(1);
                    *pending = pending.saturating_add(n);
                }
                (Filter::Proc, state) if is_exit(ev) => {
                    s.in_kernel = false;
                    if *state == State::Running {
                        *state = State::Exited(exit_status(ev, s.exit_data));
                    }
                }
                _ => {}
            }
            if s.unread()
                && let Some(key) = s.key
            {
                keys.push(key);
            }
        }
    }

    pub(crate) fn read(&mut self, id: u64) -> io::Result<SourceReport> {
        let s = self.sources.get_mut(&id).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no source with id {id}"))
        })?;
        Ok(match s.state {
            State::Signal { pending: 0 } | State::Running | State::Reported => {
                SourceReport::Nothing
            }
            State::Signal { pending } => {
                s.state = State::Signal { pending: 0 };
                SourceReport::Signal {
                    count: u32::try_from(pending).unwrap_or(u32::MAX),
                }
            }
            State::Exited(status) => {
                s.state = State::Reported;
                SourceReport::Exit(status)
            }
        })
    }

    pub(crate) fn close(&mut self, id: u64, delete_udata: u64) -> Option<ClosedSource> {
        let s = self.sources.remove(&id)?;
        if self.by_fd.get(&s.fd) == Some(&id) {
            self.by_fd.remove(&s.fd);
        }
        let delete = (s.in_kernel && self.live_knote(s.knote).is_none()).then_some(KEvent {
            ident: s.knote.1,
            filter: s.knote.0,
            flags: EV_DELETE,
            fflags: 0,
            data: 0,
            udata: delete_udata,
        });
        Some(ClosedSource {
            spec: s.spec,
            fd: s.fd,
            delete,
        })
    }

    /// Every open source's id (the syscall layer's clean-up on drop).
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.sources.keys().copied()
    }
}
