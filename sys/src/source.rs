//! Signal and process sources (Linux): a `signalfd` per watched signal, a
//! `pidfd` per watched process, kept in an I/O-safe table, [`Sources`].
//!
//! A source is a descriptor that polls readable when it has something to
//! report; an event loop watches it like any other descriptor and calls
//! [`Sources::read`] when it is ready. The table owns every descriptor it
//! hands out: [`Sources::open`] returns the number only so that the caller
//! can watch it, and [`Sources::close`] (or dropping the table) closes it.
//!
//! # Signals: whose mask changes
//!
//! A `signalfd` only receives a signal that is **blocked**; an unblocked one
//! is delivered the usual way (its handler, or its default action: most
//! signals terminate the process). So [`Sources::open`] of
//! [`SysSource::Signal`] blocks the signal with `pthread_sigmask(2)` **in the
//! calling thread only**, then creates the `signalfd`:
//!
//! - Threads that are already running keep their masks. A *process-directed*
//!   signal (`kill(pid, sig)`, a terminal's `SIGINT`) goes to any thread that
//!   does not block it, so with such a thread around it may be delivered
//!   there (and, say, terminate the process) instead of reaching the
//!   `signalfd`. As with `signalfd` in C: open signal sources **before
//!   spawning threads** (new threads inherit their creator's mask, so they
//!   block the signal too), or block the signal in every thread, or send
//!   *thread-directed* signals (`pthread_kill`, `tgkill`, `raise`) to the
//!   thread that opened the source.
//! - A `signalfd` reports the signals pending for the process and for the
//!   **thread that reads or polls it**: read and wait on the thread that
//!   opened the source, or a signal directed at that thread is not seen.
//! - Children inherit the mask across `fork` and `execve`. (The standard
//!   library's `std::process::Command` resets the child's mask; other ways
//!   of spawning may not.)
//! - The block is counted per thread and per signal: the first source of a
//!   signal in a thread blocks it (no syscall if it was blocked already), the
//!   last one closed in that thread unblocks it, and only if it was **not**
//!   blocked before the first one was opened. Several sources of one signal
//!   (in one table or several tables on the same thread) thus never unblock
//!   it under each other; each delivery is read by whichever source reads
//!   first.
//! - [`Sources::close`] on another thread than the one that opened the
//!   source cannot touch the opening thread's mask: the signal stays blocked
//!   there (and the mask of the closing thread is not changed).
//! - A delivery still pending when the signal is unblocked at close (one that
//!   arrived after the last read) is then delivered the usual way, per the
//!   signal's disposition, exactly as when a C program unblocks it.
//!
//! `SIGKILL` and `SIGSTOP` cannot be blocked and are refused
//! (`InvalidInput`), as are numbers outside `1..=SIGRTMAX`. The signals the C
//! library reserves for itself (glibc's 32 and 33) are accepted, but glibc
//! silently refuses to block them, so such a source only sees them if they
//! are sent while blocked by other means.
//!
//! # Processes: nothing is reaped
//!
//! [`SysSource::Process`] opens a `pidfd` (`pidfd_open(2)`, Linux 5.3 or
//! later), which polls readable once the process has exited (as a zombie or
//! already reaped). [`Sources::read`] learns the exit status with
//! `waitid(P_PIDFD, fd, WEXITED | WNOHANG | WNOWAIT)`: `WNOWAIT` leaves the
//! child **waitable**. **Nothing is reaped by evmux, ever**: the parent
//! reaps its child itself, as before (`std::process::Child::wait`,
//! `waitpid`), before or after the source reports. The status is available
//! only for a child of this process that is not yet reaped; for any other
//! process (not our child, already reaped by us or by someone else, children
//! auto-reaped because `SIGCHLD` is ignored, or a Linux 5.3 kernel without
//! `P_PIDFD` for `waitid`) the exit is reported as [`SysExit::Unknown`] once
//! the `pidfd` polls readable.
//!
//! A process source reports its exit once; later reads give
//! [`SysReport::Nothing`] without a syscall. Its descriptor stays readable
//! for good, so a level-triggered watch of it must be dropped after the exit
//! was reported.
//!
//! # Accounting
//!
//! Syscalls are counted as [`SyscallKind::Sigprocmask`],
//! [`SyscallKind::Signalfd`], [`SyscallKind::PidfdOpen`],
//! [`SyscallKind::Waitid`], [`SyscallKind::Read`] (reading a `signalfd`),
//! [`SyscallKind::Poll`] (checking a non-child's `pidfd`) and
//! [`SyscallKind::Close`]. The calls [`Sources::open`] and [`Sources::read`]
//! make go through the fault seam; the clean-up calls of [`Sources::close`]
//! and of a failed open (unblocking, closing) are counted but never faulted,
//! so an injected fault leaks neither a descriptor nor a blocked signal.

use crate::counter::{self, SyscallKind};
use crate::enter;
use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::thread::{self, ThreadId};

/// What to watch (mirrors `evmux_interest::SourceSpec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SysSource {
    /// Deliveries of signal `.0` (a `signalfd`; the signal is blocked in the
    /// calling thread, see the [module docs](self)).
    Signal(i32),
    /// The exit of process `.0` (a `pidfd`, Linux 5.3 or later).
    Process(i32),
}

/// How a watched process ended (mirrors `evmux_interest::ExitStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SysExit {
    /// It exited with this code (`CLD_EXITED`).
    Code(i32),
    /// This signal killed it (`CLD_KILLED`, `CLD_DUMPED`).
    Signaled(i32),
    /// It exited, but its status is not ours to read without reaping it (not
    /// our child, or reaped already).
    Unknown,
}

/// What reading a source gave (mirrors `evmux_interest::SourceReport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysReport {
    /// Nothing to report (a spurious wake-up, or a process source that
    /// reported its exit already).
    Nothing,
    /// The signal was delivered `count` times since the last read (standard
    /// signals merge while pending; real-time signals queue).
    Signal {
        /// Deliveries read (`signalfd_siginfo` records), saturating.
        count: u32,
    },
    /// The process exited. Reported once per source.
    Exit(SysExit),
}

/// Size of one `struct signalfd_siginfo`.
const SIGINFO_SIZE: usize = 128;
static_assertions::const_assert_eq!(std::mem::size_of::<libc::signalfd_siginfo>(), SIGINFO_SIZE);

/// Signals 1..=64: the kernel's `_NSIG`, the size of the per-thread tables.
const NSIG: usize = 64;

thread_local! {
    /// Per signal (index `sig - 1`): how many open sources on this thread
    /// hold it blocked.
    static HELD: [Cell<u32>; NSIG] = const { [const { Cell::new(0) }; NSIG] };
    /// Bit `sig - 1`: the signal was blocked before this thread's first
    /// source of it, so the last close leaves it blocked.
    static WAS_BLOCKED: Cell<u64> = const { Cell::new(0) };
}

#[derive(Debug)]
enum Kind {
    Signal {
        signo: i32,
        /// The thread whose mask `open` changed (and whose count it holds).
        thread: ThreadId,
    },
    Process {
        /// The exit was reported.
        reported: bool,
    },
}

#[derive(Debug)]
struct Entry {
    fd: OwnedFd,
    kind: Kind,
}

/// An I/O-safe table of open signal and process sources, each with a
/// descriptor that polls readable when [`read`](Sources::read) has something
/// to report. See the [module docs](self) for the semantics, in particular
/// which thread's signal mask changes and what is reaped (nothing).
///
/// Dropping the table closes every source still open, as
/// [`close`](Sources::close) does.
#[derive(Debug, Default)]
pub struct Sources {
    entries: HashMap<u64, Entry>,
    next_id: u64,
}

impl Sources {
    /// Opens a source; returns the descriptor to watch for readability (the
    /// table's: never close it) and the source's id.
    ///
    /// - [`SysSource::Signal`]: blocks the signal in the calling thread
    ///   (`pthread_sigmask(SIG_BLOCK)`, skipped when a source of this thread
    ///   holds it blocked already), then
    ///   `signalfd(-1, {sig}, SFD_NONBLOCK | SFD_CLOEXEC)` — see signalfd(2)
    ///   and pthread_sigmask(3).
    /// - [`SysSource::Process`]: `pidfd_open(pid, 0)` — see pidfd_open(2).
    ///   The descriptor is close-on-exec (always, for a pidfd); it is left
    ///   blocking (`PIDFD_NONBLOCK` needs Linux 5.10), which is harmless as
    ///   nothing ever blocks on it: [`read`](Sources::read) passes `WNOHANG`.
    ///
    /// # Errors
    ///
    /// - `InvalidInput`: a signal outside `1..=SIGRTMAX`, `SIGKILL` or
    ///   `SIGSTOP` (which cannot be blocked); a pid that is not positive;
    ///   `EINVAL` from `pidfd_open`: the pid is a thread, not a process;
    /// - `NotFound` (`ESRCH`): no process has this pid;
    /// - `Unsupported` (`ENOSYS`): `pidfd_open` needs Linux 5.3 or later;
    /// - `EMFILE`/`ENFILE`: descriptor limit hit; `ENOMEM`, `ENODEV`.
    ///
    /// On error nothing stays open and the signal mask is as before.
    pub fn open(&mut self, spec: SysSource) -> io::Result<(RawFd, u64)> {
        let entry = match spec {
            SysSource::Signal(signo) => open_signal(signo)?,
            SysSource::Process(pid) => open_process(pid)?,
        };
        let fd = entry.fd.as_raw_fd();
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(id, entry);
        Ok((fd, id))
    }

    /// Reads what source `id` has to report, without blocking.
    ///
    /// - A signal source reads its `signalfd` until `EAGAIN`
    ///   (`read(fd, buf, n * sizeof(struct signalfd_siginfo))`) and reports
    ///   how many deliveries it read; none is [`SysReport::Nothing`].
    /// - A process source calls
    ///   `waitid(P_PIDFD, fd, WEXITED | WNOHANG | WNOWAIT)` — see waitid(2):
    ///   the status of an exited child, which stays **unreaped**; nothing
    ///   while it runs. For a process that is not our unreaped child
    ///   (`ECHILD`, or `EINVAL` from a Linux 5.3 kernel without `P_PIDFD`) a
    ///   zero-timeout `poll(2)` of the pidfd tells whether it exited:
    ///   [`SysExit::Unknown`] if so. After the exit was reported once, every
    ///   read gives [`SysReport::Nothing`] without a syscall.
    ///
    /// # Errors
    ///
    /// - `NotFound`: no open source has this id;
    /// - what `read`, `waitid` or `poll` report otherwise (none expected;
    ///   `EINTR` cannot happen on these non-blocking calls). A signal source
    ///   that read deliveries before an error reports them and leaves the
    ///   error for the next read.
    pub fn read(&mut self, id: u64) -> io::Result<SysReport> {
        let entry = self.entries.get_mut(&id).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no source with id {id}"))
        })?;
        match &mut entry.kind {
            Kind::Signal { .. } => read_signals(entry.fd.as_fd()),
            Kind::Process { reported: true, .. } => Ok(SysReport::Nothing),
            Kind::Process { reported, .. } => {
                let report = read_exit(entry.fd.as_fd())?;
                if report != SysReport::Nothing {
                    *reported = true;
                }
                Ok(report)
            }
        }
    }

    /// Closes source `id` (its descriptor: `close(2)`) and, for a signal
    /// source closed on the thread that opened it and the last one of its
    /// signal there, unblocks the signal if it was not blocked before
    /// (`pthread_sigmask(SIG_UNBLOCK)`), after reading away the deliveries
    /// still pending (which would otherwise run the signal's disposition
    /// at once). An unknown id is ignored.
    ///
    /// Close errors are ignored (the descriptor is released regardless), as
    /// are `pthread_sigmask` errors (none can happen for a valid signal).
    pub fn close(&mut self, id: u64) {
        if let Some(entry) = self.entries.remove(&id) {
            close_entry(entry);
        }
    }

    /// The descriptor of source `id`, if it is open.
    pub fn fd(&self, id: u64) -> Option<BorrowedFd<'_>> {
        self.entries.get(&id).map(|e| e.fd.as_fd())
    }

    /// The number of open sources.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no source is open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for (_, entry) in self.entries.drain() {
            close_entry(entry);
        }
    }
}

fn close_entry(entry: Entry) {
    if let Kind::Signal { signo, thread } = entry.kind
        && thread == thread::current().id()
        && will_unblock(signo)
    {
        // Deliveries not yet read would run the signal's disposition the
        // moment it is unblocked (for most signals: end the process). They
        // are dropped instead, as `remove_signal` promises. One arriving
        // between this read and the unblock is delivered normally.
        let _ = read_signals(entry.fd.as_fd());
    }
    counter::record(SyscallKind::Close);
    drop(entry.fd);
    if let Kind::Signal { signo, thread } = entry.kind
        && thread == thread::current().id()
    {
        release(signo);
    }
}

/// Whether releasing `signo` now would unblock it in this thread.
fn will_unblock(signo: i32) -> bool {
    let idx = (signo - 1) as usize;
    HELD.with(|h| h[idx].get()) == 1 && WAS_BLOCKED.with(|w| w.get() & bit(signo)) == 0
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Checks that `signo` can be watched through a signalfd.
fn validate_signal(signo: i32) -> io::Result<()> {
    let max = libc::SIGRTMAX().min(NSIG as i32);
    if !(1..=max).contains(&signo) {
        return Err(invalid(format!(
            "signal {signo} is out of range (1..={max})"
        )));
    }
    if signo == libc::SIGKILL || signo == libc::SIGSTOP {
        let name = if signo == libc::SIGKILL {
            "SIGKILL"
        } else {
            "SIGSTOP"
        };
        return Err(invalid(format!(
            "{name} ({signo}) cannot be caught or blocked, so it cannot be read from a signalfd"
        )));
    }
    Ok(())
}

/// The set `{signo}`. `signo` must be valid.
fn sigset_of(signo: i32) -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the set it is pointed at; `set` is a
    // writable `sigset_t` of ours.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: initialised by `sigemptyset` just above.
    let mut set = unsafe { set.assume_init() };
    // SAFETY: `set` is an initialised set of ours; `signo` was validated to
    // be in 1..=SIGRTMAX, so `sigaddset` cannot fail (EINVAL).
    unsafe { libc::sigaddset(&mut set, signo) };
    set
}

/// `pthread_sigmask(how, {signo}, &old)`; returns whether `signo` was in the
/// old mask.
fn sigmask(how: libc::c_int, signo: i32) -> io::Result<bool> {
    let set = sigset_of(signo);
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is an initialised set and `old` a writable `sigset_t`,
    // both ours; `pthread_sigmask` changes only the calling thread's mask
    // and writes the old one to `old`.
    let rc = unsafe { libc::pthread_sigmask(how, &set, old.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: `pthread_sigmask` succeeded, so it wrote the old mask; `signo`
    // is valid, so `sigismember` answers 0 or 1.
    Ok(unsafe { libc::sigismember(old.as_ptr(), signo) } == 1)
}

fn bit(signo: i32) -> u64 {
    1u64 << (signo - 1)
}

/// Takes one hold of `signo` blocked in the calling thread, blocking it if
/// this is the thread's first.
fn hold(signo: i32) -> io::Result<()> {
    let idx = (signo - 1) as usize;
    if HELD.with(|h| h[idx].get()) == 0 {
        enter(SyscallKind::Sigprocmask)?;
        let was = sigmask(libc::SIG_BLOCK, signo)?;
        WAS_BLOCKED.with(|w| {
            w.set(if was {
                w.get() | bit(signo)
            } else {
                w.get() & !bit(signo)
            })
        });
    }
    HELD.with(|h| h[idx].set(h[idx].get() + 1));
    Ok(())
}

/// Drops one hold of `signo` in the calling thread, unblocking it when it
/// was the last and the signal was not blocked before the first.
fn release(signo: i32) {
    let idx = (signo - 1) as usize;
    let left = HELD.with(|h| {
        let n = h[idx].get().saturating_sub(1);
        h[idx].set(n);
        n
    });
    if left == 0 && WAS_BLOCKED.with(|w| w.get() & bit(signo)) == 0 {
        counter::record(SyscallKind::Sigprocmask);
        let _ = sigmask(libc::SIG_UNBLOCK, signo);
    }
}

fn open_signal(signo: i32) -> io::Result<Entry> {
    validate_signal(signo)?;
    hold(signo)?;
    let fd = enter(SyscallKind::Signalfd).and_then(|()| {
        let set = sigset_of(signo);
        // SAFETY: `set` is an initialised set of ours, which the kernel only
        // reads; fd -1 asks for a new descriptor, which we own on success.
        let raw = crate::cvt(unsafe {
            libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
        })?;
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    });
    match fd {
        Ok(fd) => Ok(Entry {
            fd,
            kind: Kind::Signal {
                signo,
                thread: thread::current().id(),
            },
        }),
        Err(e) => {
            release(signo);
            Err(e)
        }
    }
}

fn open_process(pid: i32) -> io::Result<Entry> {
    let Some(p) = rustix::process::Pid::from_raw(pid.max(0)) else {
        return Err(invalid(format!("pid {pid} is not a process id")));
    };
    let fd = enter(SyscallKind::PidfdOpen)
        .and_then(|()| {
            Ok(rustix::process::pidfd_open(
                p,
                rustix::process::PidfdFlags::empty(),
            )?)
        })
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => io::Error::new(
                io::ErrorKind::Unsupported,
                "pidfd_open needs Linux 5.3 or later (ENOSYS)",
            ),
            Some(libc::ESRCH) => io::Error::new(
                io::ErrorKind::NotFound,
                format!("no process with pid {pid} (ESRCH)"),
            ),
            _ => e,
        })?;
    Ok(Entry {
        fd,
        kind: Kind::Process { reported: false },
    })
}

fn read_signals(fd: BorrowedFd<'_>) -> io::Result<SysReport> {
    let mut buf = [0u8; 8 * SIGINFO_SIZE];
    let mut count: u32 = 0;
    loop {
        match crate::fd::read(fd, &mut buf) {
            Ok(n) => {
                let records = u32::try_from(n / SIGINFO_SIZE).unwrap_or(u32::MAX);
                count = count.saturating_add(records);
                if n < buf.len() {
                    // Short read: the queue is empty now; spare the EAGAIN.
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if count == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(if count == 0 {
        SysReport::Nothing
    } else {
        SysReport::Signal { count }
    })
}

fn read_exit(fd: BorrowedFd<'_>) -> io::Result<SysReport> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    enter(SyscallKind::Waitid)?;
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    match waitid(WaitId::PidFd(fd), options) {
        Ok(None) => Ok(SysReport::Nothing),
        Ok(Some(status)) => {
            let exit = if let Some(code) = status.exit_status() {
                SysExit::Code(code)
            } else if let Some(sig) = status.terminating_signal() {
                SysExit::Signaled(sig)
            } else {
                // Only WEXITED was asked for: cannot happen.
                SysExit::Unknown
            };
            Ok(SysReport::Exit(exit))
        }
        Err(rustix::io::Errno::CHILD | rustix::io::Errno::INVAL) => {
            let mut fds = [crate::poll::PollFd::new(
                fd.as_raw_fd(),
                crate::poll::POLLIN,
            )];
            let n = crate::poll::poll(&mut fds, Some(std::time::Duration::ZERO))?;
            Ok(if n > 0 && fds[0].revents & crate::poll::POLLIN != 0 {
                SysReport::Exit(SysExit::Unknown)
            } else {
                SysReport::Nothing
            })
        }
        Err(e) => Err(e.into()),
    }
}
