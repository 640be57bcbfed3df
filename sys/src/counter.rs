//! A cheap per-thread syscall counter, by kind.
//!
//! Every wrapper in `evmux-sys` calls [`record`] exactly once for each system
//! call it actually makes, whether the call succeeds or fails. Calls failed by
//! the fault-injection seam (see [`crate::fault`]) never reach the kernel and
//! are not recorded.
//!
//! The counts are **per thread**: [`get`], [`snapshot`] and [`reset`] see only
//! the syscalls made by the calling thread through this crate (plus whatever
//! other crates report with [`record`] on that thread). Parallel tests thus do
//! not interfere with each other.
//!
//! The storage is a `const`-initialised `thread_local!` array of `Cell<u64>`
//! without destructor, so recording costs a TLS access and an add.
//!
//! ```
//! use evmux_sys::counter::{self, SyscallKind};
//!
//! let before = counter::snapshot();
//! let (_r, _w) = evmux_sys::fd::pipe()?;
//! let delta = counter::snapshot() - before;
//! assert!(delta.get(SyscallKind::Pipe) >= 1);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cell::Cell;
use std::fmt;
use std::ops::Sub;

/// The kind of a system call, as tracked by the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyscallKind {
    /// `epoll_create1`.
    EpollCreate,
    /// `epoll_ctl` (add, modify or delete).
    EpollCtl,
    /// `epoll_wait` (or `epoll_pwait`/`epoll_pwait2`).
    EpollWait,
    /// `poll` (or `ppoll`).
    Poll,
    /// `select` (or `pselect`).
    Select,
    /// `io_uring_enter`.
    IoUringEnter,
    /// `io_uring_setup`.
    IoUringSetup,
    /// `eventfd2`.
    Eventfd,
    /// `read` of an eventfd counter.
    EventfdRead,
    /// `write` to an eventfd counter.
    EventfdWrite,
    /// `read` (other than of an eventfd).
    Read,
    /// `write` or `send` (other than to an eventfd).
    Write,
    /// `pipe`/`pipe2`.
    Pipe,
    /// `socketpair`.
    Socketpair,
    /// `fcntl` (`F_GETFD`, `F_GETFL`, `F_SETFL`, ...).
    Fcntl,
    /// `fstat`.
    Fstat,
    /// `shutdown`.
    Shutdown,
    /// `close`.
    Close,
    /// `dup`/`dup2`/`dup3`/`F_DUPFD_CLOEXEC`.
    Dup,
    /// `pthread_sigmask`/`rt_sigprocmask` (blocking a watched signal).
    Sigprocmask,
    /// `signalfd4`.
    Signalfd,
    /// `pidfd_open`.
    PidfdOpen,
    /// `waitid` (on a pidfd, `WNOWAIT`).
    Waitid,
    /// Anything else (`open`, `unlink`, `signal`, ...).
    Other,
}

/// Number of [`SyscallKind`] variants.
const N: usize = SyscallKind::ALL.len();

impl SyscallKind {
    /// Every kind, in declaration order (`ALL[k as usize] == k`).
    pub const ALL: &'static [SyscallKind] = &[
        SyscallKind::EpollCreate,
        SyscallKind::EpollCtl,
        SyscallKind::EpollWait,
        SyscallKind::Poll,
        SyscallKind::Select,
        SyscallKind::IoUringEnter,
        SyscallKind::IoUringSetup,
        SyscallKind::Eventfd,
        SyscallKind::EventfdRead,
        SyscallKind::EventfdWrite,
        SyscallKind::Read,
        SyscallKind::Write,
        SyscallKind::Pipe,
        SyscallKind::Socketpair,
        SyscallKind::Fcntl,
        SyscallKind::Fstat,
        SyscallKind::Shutdown,
        SyscallKind::Close,
        SyscallKind::Dup,
        SyscallKind::Sigprocmask,
        SyscallKind::Signalfd,
        SyscallKind::PidfdOpen,
        SyscallKind::Waitid,
        SyscallKind::Other,
    ];

    /// The C name of the call, e.g. `"epoll_ctl"`; `"other"` for
    /// [`SyscallKind::Other`].
    pub fn name(self) -> &'static str {
        match self {
            SyscallKind::EpollCreate => "epoll_create1",
            SyscallKind::EpollCtl => "epoll_ctl",
            SyscallKind::EpollWait => "epoll_wait",
            SyscallKind::Poll => "poll",
            SyscallKind::Select => "select",
            SyscallKind::IoUringEnter => "io_uring_enter",
            SyscallKind::IoUringSetup => "io_uring_setup",
            SyscallKind::Eventfd => "eventfd2",
            SyscallKind::EventfdRead => "eventfd_read",
            SyscallKind::EventfdWrite => "eventfd_write",
            SyscallKind::Read => "read",
            SyscallKind::Write => "write",
            SyscallKind::Pipe => "pipe2",
            SyscallKind::Socketpair => "socketpair",
            SyscallKind::Fcntl => "fcntl",
            SyscallKind::Fstat => "fstat",
            SyscallKind::Shutdown => "shutdown",
            SyscallKind::Close => "close",
            SyscallKind::Dup => "dup",
            SyscallKind::Sigprocmask => "rt_sigprocmask",
            SyscallKind::Signalfd => "signalfd4",
            SyscallKind::PidfdOpen => "pidfd_open",
            SyscallKind::Waitid => "waitid",
            SyscallKind::Other => "other",
        }
    }

    #[inline(always)]
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SyscallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

thread_local! {
    static COUNTS: [Cell<u64>; N] = const { [const { Cell::new(0) }; N] };
}

/// Counts one syscall of `kind` for the calling thread.
///
/// The wrappers of this crate call this themselves; backends that make
/// syscalls through other crates call it to keep the counts complete.
#[inline]
pub fn record(kind: SyscallKind) {
    // `try_with` only fails during thread teardown; losing a count then is
    // harmless. (The array has no destructor, so in practice it never fails.)
    let _ = COUNTS.try_with(|c| {
        let cell = &c[kind.index()];
        cell.set(cell.get().wrapping_add(1));
    });
}

/// The calling thread's count of syscalls of `kind` since thread start or the
/// last [`reset`].
#[inline]
pub fn get(kind: SyscallKind) -> u64 {
    COUNTS
        .try_with(|c| c[kind.index()].get())
        .unwrap_or_default()
}

/// All of the calling thread's counts at once.
pub fn snapshot() -> Counts {
    let mut counts = [0u64; N];
    let _ = COUNTS.try_with(|c| {
        for (dst, src) in counts.iter_mut().zip(c.iter()) {
            *dst = src.get();
        }
    });
    Counts { counts }
}

/// Sets all of the calling thread's counts to zero.
pub fn reset() {
    let _ = COUNTS.try_with(|c| c.iter().for_each(|cell| cell.set(0)));
}

/// A copy of one thread's counts, from [`snapshot`].
///
/// `later - earlier` gives the syscalls made in between (saturating at zero
/// per kind, in case [`reset`] ran in between).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counts {
    counts: [u64; N],
}

impl Counts {
    /// The count for `kind`.
    #[inline]
    pub fn get(&self, kind: SyscallKind) -> u64 {
        self.counts[kind.index()]
    }

    /// The sum over all kinds.
    pub fn total(&self) -> u64 {
        self.counts.iter().copied().fold(0, u64::wrapping_add)
    }

    /// The kinds with a non-zero count, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (SyscallKind, u64)> + '_ {
        SyscallKind::ALL
            .iter()
            .map(|&k| (k, self.get(k)))
            .filter(|&(_, n)| n != 0)
    }
}

impl Sub for Counts {
    type Output = Counts;

    fn sub(self, earlier: Counts) -> Counts {
        let mut counts = [0u64; N];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        Counts { counts }
    }
}

impl fmt::Debug for Counts {
    /// Shows the non-zero counts as a map from syscall name to count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, n)| (k.name(), n)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_names_unique() {
        for (i, &k) in SyscallKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        let mut names: Vec<_> = SyscallKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N);
        assert_eq!(SyscallKind::EpollCtl.name(), "epoll_ctl");
    }

    #[test]
    fn record_get_reset() {
        reset();
        assert_eq!(get(SyscallKind::Select), 0);
        record(SyscallKind::Select);
        record(SyscallKind::Select);
        record(SyscallKind::Other);
        assert_eq!(get(SyscallKind::Select), 2);
        assert_eq!(snapshot().total(), 3);
        reset();
        assert_eq!(snapshot().total(), 0);
    }

    #[test]
    fn snapshot_delta() {
        let a = snapshot();
        record(SyscallKind::IoUringEnter);
        let b = snapshot();
        let d = b - a;
        assert_eq!(d.get(SyscallKind::IoUringEnter), 1);
        assert_eq!(d.total(), 1);
        assert_eq!(format!("{d:?}"), r#"{"io_uring_enter": 1}"#);
        // Saturates instead of underflowing.
        assert_eq!((a - b).total(), 0);
    }

    #[test]
    fn counts_are_per_thread() {
        reset();
        record(SyscallKind::Poll);
        let other = std::thread::spawn(|| {
            let start = get(SyscallKind::Poll);
            for _ in 0..5 {
                record(SyscallKind::Poll);
            }
            (start, get(SyscallKind::Poll))
        })
        .join()
        .unwrap();
        assert_eq!(other, (0, 5));
        assert_eq!(get(SyscallKind::Poll), 1);
    }
}
