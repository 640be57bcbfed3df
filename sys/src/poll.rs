//! `poll(2)` over a persistent array of raw descriptors.
//!
//! [`PollFd`] holds a bare [`RawFd`] on purpose: a `pollfd` array that is
//! kept and reused across waits cannot hold borrows of the descriptors it
//! watches. This is sound because `poll(2)` never does anything to the
//! descriptors but look them up: a closed number is reported as
//! [`POLLNVAL`], and a negative number makes the kernel skip the entry
//! (`revents` is set to 0), which is how an entry is disabled in place.

use crate::counter::SyscallKind;
use crate::{cvt, enter};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// `POLLIN`: data to read.
pub const POLLIN: i16 = 0x1;
/// `POLLPRI`: exceptional condition (e.g. out-of-band data).
pub const POLLPRI: i16 = 0x2;
/// `POLLOUT`: writing will not block.
pub const POLLOUT: i16 = 0x4;
/// `POLLERR`: error condition (output only).
pub const POLLERR: i16 = 0x8;
/// `POLLHUP`: hang-up (output only).
pub const POLLHUP: i16 = 0x10;
/// `POLLNVAL`: `fd` is not open (output only).
pub const POLLNVAL: i16 = 0x20;
/// `POLLRDHUP`: stream peer closed or shut down its writing half (Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const POLLRDHUP: i16 = 0x2000;

static_assertions::const_assert_eq!(POLLIN, libc::POLLIN);
static_assertions::const_assert_eq!(POLLPRI, libc::POLLPRI);
static_assertions::const_assert_eq!(POLLOUT, libc::POLLOUT);
static_assertions::const_assert_eq!(POLLERR, libc::POLLERR);
static_assertions::const_assert_eq!(POLLHUP, libc::POLLHUP);
static_assertions::const_assert_eq!(POLLNVAL, libc::POLLNVAL);
#[cfg(any(target_os = "linux", target_os = "android"))]
static_assertions::const_assert_eq!(POLLRDHUP, libc::POLLRDHUP);

/// One entry of a `poll(2)` array, layout-identical to `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PollFd {
    /// The descriptor to watch; negative to have the entry ignored.
    pub fd: RawFd,
    /// Requested events (`POLL*` bits).
    pub events: i16,
    /// Returned events, written by [`poll`].
    pub revents: i16,
}

static_assertions::assert_eq_size!(PollFd, libc::pollfd);
static_assertions::assert_eq_align!(PollFd, libc::pollfd);
static_assertions::const_assert_eq!(
    std::mem::offset_of!(PollFd, fd),
    std::mem::offset_of!(libc::pollfd, fd)
);
static_assertions::const_assert_eq!(
    std::mem::offset_of!(PollFd, events),
    std::mem::offset_of!(libc::pollfd, events)
);
static_assertions::const_assert_eq!(
    std::mem::offset_of!(PollFd, revents),
    std::mem::offset_of!(libc::pollfd, revents)
);

impl PollFd {
    /// An entry watching `fd` for `events`, with `revents` zero.
    pub const fn new(fd: RawFd, events: i16) -> Self {
        PollFd {
            fd,
            events,
            revents: 0,
        }
    }
}

/// Waits until one of `fds` is ready, the timeout expires or a signal
/// arrives; returns the number of entries with non-zero `revents`.
///
/// Every entry's `revents` is overwritten (set to 0 for entries that are not
/// ready and for entries with a negative `fd`). An entry whose `fd` is not
/// open gets [`POLLNVAL`] and counts as ready.
///
/// `timeout`: `None` blocks indefinitely; `Some(d)` is rounded **up** to whole
/// milliseconds and clamped to `i32::MAX` ms; `Some(Duration::ZERO)` does not
/// block (see [`crate::time::timeout_ms`]). `Ok(0)` means the timeout expired.
///
/// `poll(fds, nfds, timeout_ms)` — see poll(2).
///
/// # Errors
///
/// - `EINTR` ([`io::ErrorKind::Interrupted`]): a signal arrived first; the
///   caller retries;
/// - `EINVAL`: `fds.len()` exceeds `RLIMIT_NOFILE`;
/// - `ENOMEM`: no memory for the kernel's copy of the array.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let ms = crate::time::timeout_ms(timeout);
    enter(SyscallKind::Poll)?;
    // SAFETY: `fds` is an exclusively borrowed slice of `nfds` `PollFd`s,
    // layout-identical to `struct pollfd` (asserted above); the kernel reads
    // `fd`/`events` and writes only `revents` of those `nfds` entries. The
    // `fd` values are bare numbers that the kernel merely looks up (closed →
    // POLLNVAL, negative → ignored), so no descriptor is affected.
    let n = cvt(unsafe { libc::poll(fds.as_mut_ptr().cast::<libc::pollfd>(), nfds, ms) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{counter, fd};
    use std::os::fd::AsRawFd;

    const NEVER_OPEN: RawFd = i32::MAX - 1;
    const GUARD: Option<Duration> = Some(Duration::from_secs(10));

    #[test]
    fn pipe_readiness_hup_nval_and_negative() {
        let (r, w) = fd::pipe().unwrap();
        let mut fds = [
            PollFd::new(r.as_raw_fd(), POLLIN),
            PollFd::new(-1, POLLIN),
            PollFd::new(NEVER_OPEN, POLLIN),
        ];
        let before = counter::get(SyscallKind::Poll);

        // Only the closed number is "ready" (POLLNVAL); the negative entry
        // is ignored.
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 1);
        assert_eq!(fds[0].revents, 0);
        assert_eq!(fds[1].revents, 0);
        assert_eq!(fds[2].revents, POLLNVAL);

        fds[2].fd = -1; // disable in place
        fd::write(&w, b"x").unwrap();
        assert_eq!(poll(&mut fds, GUARD).unwrap(), 1);
        assert_eq!(fds[0].revents, POLLIN);

        drop(w);
        assert_eq!(poll(&mut fds, GUARD).unwrap(), 1);
        assert_eq!(fds[0].revents, POLLIN | POLLHUP);
        let mut buf = [0u8; 4];
        assert_eq!(fd::read(&r, &mut buf).unwrap(), 1);
        assert_eq!(poll(&mut fds, GUARD).unwrap(), 1);
        assert_eq!(fds[0].revents, POLLHUP);

        assert_eq!(counter::get(SyscallKind::Poll), before + 4);
    }

    #[test]
    fn writable_and_empty() {
        let (_r, w) = fd::pipe().unwrap();
        let mut fds = [PollFd::new(w.as_raw_fd(), POLLOUT)];
        assert_eq!(poll(&mut fds, GUARD).unwrap(), 1);
        assert_eq!(fds[0].revents, POLLOUT);
        // An empty array with a zero timeout just returns.
        assert_eq!(poll(&mut [], Some(Duration::ZERO)).unwrap(), 0);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn rdhup() {
        let (a, b) = fd::socketpair_stream().unwrap();
        let mut fds = [PollFd::new(a.as_raw_fd(), POLLIN | POLLRDHUP)];
        fd::shutdown(&b, std::net::Shutdown::Write).unwrap();
        assert_eq!(poll(&mut fds, GUARD).unwrap(), 1);
        assert_eq!(fds[0].revents & POLLRDHUP, POLLRDHUP);
    }
}
