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
