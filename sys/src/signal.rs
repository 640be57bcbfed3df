//! Signal dispositions.

use crate::counter::SyscallKind;
use crate::enter;
use std::io;

/// Sets the disposition of `SIGPIPE` to "ignore", process-wide, so writing to
/// a pipe or socket whose reader is gone fails with `EPIPE` instead of killing
/// the process. (Rust programs normally start this way already; tests and
/// embedders call this to be sure.) Counted as [`SyscallKind::Other`].
///
/// `signal(SIGPIPE, SIG_IGN)` — see signal(2).
///
/// # Errors
///
/// - `EINVAL`: cannot happen for `SIGPIPE`.
pub fn ignore_sigpipe() -> io::Result<()> {
    enter(SyscallKind::Other)?;
    // SAFETY: installing SIG_IGN registers no handler code, so there is no
    // async-signal-safety concern; the disposition is process-wide state
    // that any thread may change, and SIGPIPE is not one of the signals the
    // Rust runtime relies on.
    let prev = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if prev == libc::SIG_ERR {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sends `signal` to the calling thread only (never to another thread of
/// the process, where it might not be blocked). Counted as
/// [`SyscallKind::Other`].
///
/// `raise(sig)` — see raise(3); on Linux a `tgkill` to the calling thread.
///
/// # Errors
///
/// - `EINVAL`: `signal` is not a valid signal number.
pub fn raise(signal: i32) -> io::Result<()> {
    enter(SyscallKind::Other)?;
    // SAFETY: raise(3) takes a plain integer and touches no memory of ours;
    // what the signal does is the caller's choice of signal and disposition.
    let rc = unsafe { libc::raise(signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `signal` is blocked in the calling thread's signal mask.
/// Counted as [`SyscallKind::Other`].
///
/// `pthread_sigmask(SIG_BLOCK, NULL, &old)` — see pthread_sigmask(3).
///
/// # Errors
///
/// - `EINVAL`: `signal` is not a valid signal number.
pub fn is_blocked(signal: i32) -> io::Result<bool> {
    enter(SyscallKind::Other)?;
    // SAFETY: `sigset_t` is plain data; all-zero is a valid (empty) set.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new set only queries; `old` is a valid out-pointer.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: `old` was filled by pthread_sigmask; sigismember reads it.
    match unsafe { libc::sigismember(&old, signal) } {
        1 => Ok(true),
        0 => Ok(false),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Deliveries counted by [`install_counting_handler`], per signal number.
static DELIVERIES: [std::sync::atomic::AtomicU64; 65] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 65];

extern "C" fn count_delivery(signal: libc::c_int) {
    if let Some(n) = usize::try_from(signal).ok().and_then(|i| DELIVERIES.get(i)) {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Installs, process-wide, a handler for `signal` that only counts the
/// deliveries ([`deliveries`]), **without** `SA_RESTART`, so that blocking
/// calls of the thread it lands on fail with `EINTR`: for tests of
/// interrupted waits. Counted as [`SyscallKind::Other`].
///
/// `sigaction(signal, {count, no flags}, NULL)` — see sigaction(2).
///
/// # Errors
///
/// - `EINVAL`: `signal` is out of range, or `SIGKILL`/`SIGSTOP`.
pub fn install_counting_handler(signal: i32) -> io::Result<()> {
    enter(SyscallKind::Other)?;
    if !(1..65).contains(&signal) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `sigaction` is plain data; all-zero is a valid value, then
    // filled in. The handler does one atomic add, which is
    // async-signal-safe; without SA_SIGINFO `sa_sigaction` holds a plain
    // `void (*)(int)`, which `count_delivery` is.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count_delivery as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(signal, &sa, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Deliveries of `signal` seen by [`install_counting_handler`]'s handler.
pub fn deliveries(signal: i32) -> u64 {
    usize::try_from(signal)
        .ok()
        .and_then(|i| DELIVERIES.get(i))
        .map_or(0, |n| n.load(std::sync::atomic::Ordering::Relaxed))
}

/// A thread of this process to direct signals at: its kernel thread id.
/// Sending is `tgkill(2)` with this process's id, so a signal can never
/// reach another process; if the thread has exited, the call fails with
/// `ESRCH` (or, after the id was reused by a new thread of this process,
/// reaches that one).
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadTarget {
    tid: libc::pid_t,
}

#[cfg(target_os = "linux")]
impl ThreadTarget {
    /// The calling thread.
    pub fn current() -> ThreadTarget {
        // SAFETY: gettid(2) takes no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
        ThreadTarget { tid }
    }

    /// Sends `signal` to the thread. Counted as [`SyscallKind::Other`].
    ///
    /// `tgkill(getpid(), tid, signal)` — see tgkill(2).
    ///
    /// # Errors
    ///
    /// - `EINVAL`: not a valid signal;
    /// - `ESRCH`: the thread has exited.
    pub fn send(self, signal: i32) -> io::Result<()> {
        enter(SyscallKind::Other)?;
        // SAFETY: tgkill(2) takes plain integers and touches no memory of
        // ours; the thread group id is our own process's.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                self.tid,
                signal as libc::c_long,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_twice() {
        ignore_sigpipe().unwrap();
        ignore_sigpipe().unwrap();
        // SAFETY: `sigaction` is plain data (integers, a `usize` handler and a
        // `sigset_t`); all-zero is a valid value.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer, null new action.
        let rc = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) };
        assert_eq!(rc, 0);
        assert_eq!(old.sa_sigaction, libc::SIG_IGN);
    }
}
