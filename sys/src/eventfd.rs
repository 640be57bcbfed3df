//! `eventfd(2)` (Linux/Android): a kernel `u64` counter usable as a wake-up
//! descriptor.

use crate::counter::SyscallKind;
use crate::enter;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// An owned eventfd counter (not in semaphore mode).
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// Creates a counter starting at 0, close-on-exec, and non-blocking if
    /// `nonblocking`.
    ///
    /// `eventfd(0, EFD_CLOEXEC [| EFD_NONBLOCK])` — see eventfd(2).
    ///
    /// # Errors
    ///
    /// - `EMFILE`/`ENFILE`: per-process or system-wide descriptor limit hit;
    /// - `ENODEV`/`ENOMEM`: the kernel could not create the anonymous inode.
    pub fn new(nonblocking: bool) -> io::Result<Self> {
        use rustix::event::EventfdFlags;
        let mut flags = EventfdFlags::CLOEXEC;
        if nonblocking {
            flags |= EventfdFlags::NONBLOCK;
        }
        enter(SyscallKind::Eventfd)?;
        Ok(EventFd(rustix::event::eventfd(0, flags)?))
    }

    /// Adds `n` to the counter, waking readers and pollers.
    ///
    /// `write(efd, &n, 8)` — see eventfd(2).
    ///
    /// # Errors
    ///
    /// - `EINVAL`: `n == u64::MAX`;
    /// - `EAGAIN` ([`io::ErrorKind::WouldBlock`]): non-blocking and the sum
    ///   would exceed `u64::MAX - 1` (a blocking eventfd blocks instead);
    /// - `EINTR`: interrupted while blocked.
    pub fn write(&self, n: u64) -> io::Result<()> {
        enter(SyscallKind::EventfdWrite)?;
        let written = rustix::io::write(&self.0, &n.to_ne_bytes())?;
        if written != 8 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to eventfd",
            ));
        }
        Ok(())
    }

    /// Reads the counter and resets it to zero.
    ///
    /// `read(efd, &buf, 8)` — see eventfd(2).
    ///
    /// # Errors
    ///
    /// - `EAGAIN` ([`io::ErrorKind::WouldBlock`]): non-blocking and the
    ///   counter is zero (a blocking eventfd blocks instead);
    /// - `EINTR`: interrupted while blocked.
    pub fn read(&self) -> io::Result<u64> {
        enter(SyscallKind::EventfdRead)?;
        let mut buf = [0u8; 8];
        let got = rustix::io::read(&self.0, &mut buf[..])?;
        if got != 8 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short read from eventfd",
            ));
        }
        Ok(u64::from_ne_bytes(buf))
    }

    /// The underlying descriptor, consuming `self`.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl From<EventFd> for OwnedFd {
    fn from(e: EventFd) -> OwnedFd {
        e.0
    }
}

/// A cross-thread wake-up signal built on a non-blocking [`EventFd`]:
/// [`notify`](Self::notify) makes the descriptor readable,
/// [`drain`](Self::drain) makes it unreadable again. Register its
/// descriptor for `EPOLLIN`/`POLLIN` with the waiting side.
///
/// Notifications coalesce: while one is pending (written and not yet
/// drained), further `notify` calls make no syscall.
#[derive(Debug)]
pub struct Notifier {
    efd: EventFd,
    /// A notification was written and not collected yet.
    signalled: AtomicBool,
}

impl Notifier {
    /// Creates the notifier (a close-on-exec, non-blocking eventfd).
    ///
    /// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)` — see eventfd(2).
    ///
    /// # Errors
    ///
    /// As [`EventFd::new`].
    pub fn new() -> io::Result<Self> {
        Ok(Notifier {
            efd: EventFd::new(true)?,
            signalled: AtomicBool::new(false),
        })
    }

    /// Makes the descriptor readable, unless a notification is already
    /// pending (then no syscall). Notifying a saturated eventfd succeeds:
    /// `EAGAIN` means "already pending".
    ///
    /// `write(efd, &1, 8)` — see eventfd(2).
    ///
    /// # Errors
    ///
    /// None expected: `EAGAIN` is success, and a non-blocking write cannot
    /// be interrupted. On an error the pending flag is cleared again.
    pub fn notify(&self) -> io::Result<()> {
        if self.signalled.swap(true, Ordering::AcqRel) {
            // Coalesced: a write is done or about to be, and not collected.
            return Ok(());
        }
        match self.efd.write(1) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => {
                self.signalled.store(false, Ordering::Release);
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// Collects pending notifications after the descriptor polled readable:
    /// drains the eventfd, THEN clears the pending flag. Returns whether the
    /// eventfd held something.
    ///
    /// The invariant that keeps wake-ups from being lost is "if the flag is
    /// set, the eventfd is or will be readable, or the wait collecting it
    /// reports the notification". Clearing *before* draining would break it:
    /// a `notify` between the clear and the read would set the flag and
    /// write, the read would consume that write, and the flag would stay set
    /// over an empty eventfd, so every later `notify` would skip its write.
    /// Draining first is safe:
    /// - a `notify` before the read either wrote (consumed by the read, or
    ///   landing after it and leaving the eventfd readable for the next
    ///   wait) or coalesced with one that did;
    /// - a `notify` between the read and the clear finds the flag set and
    ///   skips its write, but it happened during the wait that is reporting
    ///   the notification now: that is its wake-up;
    /// - a `notify` after the clear writes, and the next wait sees it.
    ///
    /// `read(efd, &buf, 8)` — see eventfd(2).
    ///
    /// # Errors
    ///
    /// None expected for a non-blocking eventfd (`EAGAIN` is `Ok(false)`).
    pub fn drain(&self) -> io::Result<bool> {
        let result = match self.efd.read() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        };
        self.signalled.swap(false, Ordering::AcqRel);
        result
    }
}

impl AsFd for Notifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.efd.as_fd()
    }
}

impl AsRawFd for Notifier {
    fn as_raw_fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter;
    use crate::poll::{POLLIN, PollFd, poll};
    use std::io::ErrorKind;
    use std::time::Duration;

    #[test]
    fn counter_semantics() {
        let efd = EventFd::new(true).unwrap();
        let before = counter::snapshot();
        assert_eq!(efd.read().unwrap_err().kind(), ErrorKind::WouldBlock);
        efd.write(3).unwrap();
        efd.write(4).unwrap();
        assert_eq!(efd.read().unwrap(), 7);
        assert_eq!(efd.read().unwrap_err().kind(), ErrorKind::WouldBlock);
        let err = efd.write(u64::MAX).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        efd.write(u64::MAX - 1).unwrap();
        assert_eq!(efd.write(1).unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(efd.read().unwrap(), u64::MAX - 1);
        let d = counter::snapshot() - before;
        assert_eq!(d.get(SyscallKind::EventfdRead), 4);
        assert_eq!(d.get(SyscallKind::EventfdWrite), 5);
        assert_eq!(d.get(SyscallKind::Read), 0);
    }

    #[test]
    fn pollable_and_flags() {
        let efd = EventFd::new(false).unwrap();
        assert!(!crate::fd::is_nonblocking(&efd).unwrap());
        assert!(crate::fd::is_nonblocking(EventFd::new(true).unwrap().as_fd()).unwrap());
        let mut fds = [PollFd::new(efd.as_raw_fd(), POLLIN)];
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 0);
        efd.write(1).unwrap();
        assert_eq!(poll(&mut fds, Some(Duration::from_secs(10))).unwrap(), 1);
        // Blocking read does not block: the counter is non-zero.
        assert_eq!(efd.read().unwrap(), 1);
    }

    #[test]
    fn notifier_notify_drain() {
        let n = Notifier::new().unwrap();
        assert!(!n.drain().unwrap());
        n.notify().unwrap();
        n.notify().unwrap();
        let mut fds = [PollFd::new(n.as_raw_fd(), POLLIN)];
        assert_eq!(poll(&mut fds, Some(Duration::from_secs(10))).unwrap(), 1);
        assert!(n.drain().unwrap());
        assert!(!n.drain().unwrap());
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 0);
        // Saturated counter: notify still succeeds.
        n.efd.write(u64::MAX - 1).unwrap();
        n.notify().unwrap();
        assert!(n.drain().unwrap());
    }

    #[test]
    fn notifications_coalesce_into_one_write() {
        let n = Notifier::new().unwrap();
        let before = counter::get(SyscallKind::EventfdWrite);
        for _ in 0..10 {
            n.notify().unwrap();
        }
        assert_eq!(counter::get(SyscallKind::EventfdWrite) - before, 1);
        assert!(n.drain().unwrap());
        assert!(!n.drain().unwrap());
    }

    #[test]
    fn a_notify_racing_the_drain_is_not_lost() {
        // drain() split around a racing notify: read, notify, clear.
        let n = Notifier::new().unwrap();
        n.notify().unwrap();
        let _ = n.efd.read().unwrap();
        n.notify().unwrap(); // coalesced: reported by the current wait
        n.signalled.swap(false, Ordering::AcqRel);
        // A later notify must reach the eventfd again.
        n.notify().unwrap();
        assert!(n.drain().unwrap());
    }

    #[test]
    fn a_notify_after_the_drain_is_kept_for_the_next_wait() {
        let n = Notifier::new().unwrap();
        n.notify().unwrap();
        assert!(n.drain().unwrap());
        n.notify().unwrap();
        assert!(n.drain().unwrap());
    }
}
