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
