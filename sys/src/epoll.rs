//! `epoll(7)` (Linux/Android).
//!
//! [`Epoll`] owns an epoll instance. Interest is registered either with a
//! borrowed descriptor ([`Epoll::add`], [`Epoll::modify`], [`Epoll::delete`],
//! via rustix) or with a bare descriptor number ([`Epoll::add_raw`],
//! [`Epoll::modify_raw`], [`Epoll::delete_raw`], via libc): an event loop
//! registers descriptors it does not own and must be able to issue
//! `EPOLL_CTL_DEL` for a number that may already have been closed.
//!
//! Event masks are plain `u32` values built from the constants in [`flags`].

use crate::counter::SyscallKind;
use crate::{cvt, enter};
use rustix::event::epoll as rx;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// An epoll event mask: a bitwise OR of the constants in [`flags`].
pub type EpollFlags = u32;

/// `EPOLL*` event flags, with the kernel's values.
pub mod flags {
    use super::EpollFlags;

    /// `EPOLLIN`: readable.
    pub const EPOLLIN: EpollFlags = 0x1;
    /// `EPOLLPRI`: exceptional condition (e.g. out-of-band data).
    pub const EPOLLPRI: EpollFlags = 0x2;
    /// `EPOLLOUT`: writable.
    pub const EPOLLOUT: EpollFlags = 0x4;
    /// `EPOLLERR`: error condition (always reported, need not be requested).
    pub const EPOLLERR: EpollFlags = 0x8;
    /// `EPOLLHUP`: hang-up (always reported, need not be requested).
    pub const EPOLLHUP: EpollFlags = 0x10;
    /// `EPOLLRDHUP`: stream peer closed or shut down its writing half.
    pub const EPOLLRDHUP: EpollFlags = 0x2000;
    /// `EPOLLEXCLUSIVE`: exclusive wake-up (only with `EPOLL_CTL_ADD`).
    pub const EPOLLEXCLUSIVE: EpollFlags = 1 << 28;
    /// `EPOLLWAKEUP`: keep the system awake while the event is pending.
    pub const EPOLLWAKEUP: EpollFlags = 1 << 29;
    /// `EPOLLONESHOT`: disable the registration after one event.
    pub const EPOLLONESHOT: EpollFlags = 1 << 30;
    /// `EPOLLET`: edge-triggered.
    pub const EPOLLET: EpollFlags = 1 << 31;
}

// The constants must match the kernel ABI as libc spells it.
static_assertions::const_assert_eq!(flags::EPOLLIN, libc::EPOLLIN as u32);
static_assertions::const_assert_eq!(flags::EPOLLPRI, libc::EPOLLPRI as u32);
static_assertions::const_assert_eq!(flags::EPOLLOUT, libc::EPOLLOUT as u32);
static_assertions::const_assert_eq!(flags::EPOLLERR, libc::EPOLLERR as u32);
static_assertions::const_assert_eq!(flags::EPOLLHUP, libc::EPOLLHUP as u32);
static_assertions::const_assert_eq!(flags::EPOLLRDHUP, libc::EPOLLRDHUP as u32);
static_assertions::const_assert_eq!(flags::EPOLLEXCLUSIVE, libc::EPOLLEXCLUSIVE as u32);
static_assertions::const_assert_eq!(flags::EPOLLWAKEUP, libc::EPOLLWAKEUP as u32);
static_assertions::const_assert_eq!(flags::EPOLLONESHOT, libc::EPOLLONESHOT as u32);
static_assertions::const_assert_eq!(flags::EPOLLET, libc::EPOLLET as u32);

/// One ready event, layout-identical to the kernel's `struct epoll_event`
/// (packed on x86 and x86_64, like libc's definition).
#[repr(C)]
#[cfg_attr(
    any(
        all(
            target_arch = "x86",
            not(target_env = "musl"),
            not(target_os = "android")
        ),
        target_arch = "x86_64"
    ),
    repr(packed)
)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EpollEvent {
    /// The ready events (`EPOLL*` bits from [`flags`]).
    pub events: u32,
    /// The user data given at registration.
    pub data: u64,
}

static_assertions::assert_eq_size!(EpollEvent, libc::epoll_event);
static_assertions::assert_eq_align!(EpollEvent, libc::epoll_event);
static_assertions::const_assert_eq!(
    std::mem::offset_of!(EpollEvent, events),
    std::mem::offset_of!(libc::epoll_event, events)
);
static_assertions::const_assert_eq!(
    std::mem::offset_of!(EpollEvent, data),
    std::mem::offset_of!(libc::epoll_event, u64)
);

impl EpollEvent {
    /// An event with the given mask and data.
    pub const fn new(events: EpollFlags, data: u64) -> Self {
        EpollEvent { events, data }
    }

    /// The ready events (`EPOLL*` bits from [`flags`]).
    #[inline]
    pub const fn events(&self) -> EpollFlags {
        self.events
    }

    /// The user data given at registration.
    #[inline]
    pub const fn data(&self) -> u64 {
        self.data
    }
}

impl fmt::Debug for EpollEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Copy out of the (possibly packed) struct before borrowing.
        let (events, data) = (self.events, self.data);
        f.debug_struct("EpollEvent")
            .field("events", &format_args!("{events:#x}"))
            .field("data", &data)
            .finish()
    }
}

/// An owned epoll instance.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// Creates an epoll instance with close-on-exec set.
    ///
    /// `epoll_create1(EPOLL_CLOEXEC)` — see epoll_create(2).
    ///
    /// # Errors
    ///
    /// - `EMFILE`/`ENFILE`: per-process or system-wide descriptor limit hit;
    /// - `ENOMEM`: out of kernel memory.
    pub fn new() -> io::Result<Epoll> {
        enter(SyscallKind::EpollCreate)?;
        let fd = rx::create(rx::CreateFlags::CLOEXEC)?;
        Ok(Epoll(fd))
    }

    /// Registers `fd` with interest `events`; `data` comes back in its events.
    ///
    /// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &{events, data})` — see
    /// epoll_ctl(2).
    ///
    /// # Errors
    ///
    /// - `EEXIST`: `fd` is already registered;
    /// - `EPERM`: `fd` does not support polling (e.g. a regular file or a
    ///   directory);
    /// - `EINVAL`: `fd` is this epoll instance, or invalid flag combination
    ///   (e.g. `EPOLLEXCLUSIVE` with `EPOLLONESHOT`);
    /// - `ELOOP`: adding would create an epoll cycle or too deep nesting;
    /// - `ENOMEM`/`ENOSPC`: out of memory / `max_user_watches` reached.
    pub fn add(&self, fd: BorrowedFd<'_>, events: EpollFlags, data: u64) -> io::Result<()> {
        enter(SyscallKind::EpollCtl)?;
        rx::add(
            &self.0,
            fd,
            rx::EventData::new_u64(data),
            rx::EventFlags::from_bits_retain(events),
        )?;
        Ok(())
    }

    /// Changes the interest and data of the registered `fd`.
    ///
    /// `epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &{events, data})` — see
    /// epoll_ctl(2).
    ///
    /// # Errors
    ///
    /// - `ENOENT`: `fd` is not registered with this instance;
    /// - `EINVAL`: `EPOLLEXCLUSIVE` in `events` or on the registration;
    /// - `ENOMEM`: out of kernel memory.
    pub fn modify(&self, fd: BorrowedFd<'_>, events: EpollFlags, data: u64) -> io::Result<()> {
        enter(SyscallKind::EpollCtl)?;
        rx::modify(
            &self.0,
            fd,
            rx::EventData::new_u64(data),
            rx::EventFlags::from_bits_retain(events),
        )?;
        Ok(())
    }

    /// Removes the registration of `fd`.
    ///
    /// `epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL)` — see epoll_ctl(2).
    ///
    /// # Errors
    ///
    /// - `ENOENT`: `fd` is not registered with this instance.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        enter(SyscallKind::EpollCtl)?;
        rx::delete(&self.0, fd)?;
        Ok(())
    }

    /// Like [`add`](Self::add), for a bare descriptor number.
    ///
    /// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &{events, data})` — see
    /// epoll_ctl(2).
    ///
    /// Safe because `epoll_ctl` on an arbitrary number cannot cause memory
    /// unsafety: the kernel looks the number up in the descriptor table and
    /// answers `EBADF` if nothing is open there. If the number belongs to an
    /// unrelated open file (number reuse), that file gets registered — a logic
    /// error of the caller that can produce spurious events, not undefined
    /// behaviour: epoll holds its own reference to the open file description
    /// and never touches our memory except the event struct passed here.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add), plus `EBADF` when `fd` is not an open
    /// descriptor.
    pub fn add_raw(&self, fd: RawFd, events: EpollFlags, data: u64) -> io::Result<()> {
        self.ctl_raw(libc::EPOLL_CTL_ADD, fd, events, data)
    }

    /// Like [`modify`](Self::modify), for a bare descriptor number.
    ///
    /// `epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &{events, data})` — see
    /// epoll_ctl(2).
    ///
    /// Safe for the reasons given at [`add_raw`](Self::add_raw).
    ///
    /// # Errors
    ///
    /// As [`modify`](Self::modify), plus `EBADF` when `fd` is not an open
    /// descriptor.
    pub fn modify_raw(&self, fd: RawFd, events: EpollFlags, data: u64) -> io::Result<()> {
        self.ctl_raw(libc::EPOLL_CTL_MOD, fd, events, data)
    }

    /// Like [`delete`](Self::delete), for a bare descriptor number that may
    /// already have been closed.
    ///
    /// `epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL)` — see epoll_ctl(2).
    ///
    /// Safe for the reasons given at [`add_raw`](Self::add_raw). Note that
    /// closing the last descriptor of an open file already removes it from
    /// every epoll set, so `EBADF` here is usually benign.
    ///
    /// # Errors
    ///
    /// - `EBADF`: `fd` is not an open descriptor (e.g. already closed);
    /// - `ENOENT`: `fd` is open but not registered with this instance;
    /// - `EPERM`: `fd` is open but refers to a file that cannot be polled.
    pub fn delete_raw(&self, fd: RawFd) -> io::Result<()> {
        self.ctl_raw(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl_raw(&self, op: libc::c_int, fd: RawFd, events: EpollFlags, data: u64) -> io::Result<()> {
        enter(SyscallKind::EpollCtl)?;
        let mut event = libc::epoll_event { events, u64: data };
        // SAFETY: `self.0` is an open epoll descriptor for the duration of the
        // call; `event` is a valid, initialised `epoll_event` that outlives
        // the call (the kernel only reads it; for EPOLL_CTL_DEL it is ignored,
        // but passing a valid pointer keeps pre-2.6.9 kernels happy). `fd` is
        // an arbitrary number: the kernel validates it, so at worst we get
        // EBADF/ENOENT/EPERM — no memory is affected (see `add_raw`).
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) })?;
        Ok(())
    }

    /// Waits for events, filling `out` with up to `out.capacity()` of them.
    ///
    /// `out` is cleared first; on success it holds exactly the returned number
    /// of events. Its capacity is the `maxevents` argument, so reserve it once
    /// (e.g. `Vec::with_capacity(256)`) and reuse the vector; a zero capacity
    /// is rejected with `EINVAL` without making the syscall.
    ///
    /// `timeout`: `None` blocks indefinitely; `Some(d)` is rounded **up** to
    /// whole milliseconds (so the wait never ends early) and clamped to
    /// `i32::MAX` ms; `Some(Duration::ZERO)` does not block. See
    /// [`crate::time::timeout_ms`]. `Ok(0)` means the timeout expired.
    ///
    /// `epoll_wait(epfd, events, maxevents, timeout_ms)` — see epoll_wait(2).
    ///
    /// # Errors
    ///
    /// - `EINTR` ([`io::ErrorKind::Interrupted`]): a signal arrived before any
    ///   event or the timeout; the caller retries (with an adjusted timeout);
    /// - `EINVAL`: `out.capacity()` is zero;
    /// - `EBADF`/`EFAULT`: cannot happen with this type.
    pub fn wait(&self, out: &mut Vec<EpollEvent>, timeout: Option<Duration>) -> io::Result<usize> {
        self.wait_max(out, usize::MAX, timeout)
    }

    /// Like [`wait`](Self::wait), but asks for at most `max` events
    /// (`maxevents = min(max, out.capacity(), i32::MAX)`); ready events
    /// beyond that stay queued in the kernel for the next wait.
    ///
    /// `epoll_wait(epfd, events, maxevents, timeout_ms)` — see epoll_wait(2).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); `EINVAL` (without a syscall) also when
    /// `max` is zero.
    pub fn wait_max(
        &self,
        out: &mut Vec<EpollEvent>,
        max: usize,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        out.clear();
        let max = libc::c_int::try_from(max.min(out.capacity())).unwrap_or(libc::c_int::MAX);
        if max == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let ms = crate::time::timeout_ms(timeout);
        enter(SyscallKind::EpollWait)?;
        // SAFETY: `self.0` is an open epoll descriptor; `out.as_mut_ptr()`
        // points to at least `capacity() >= max` writable slots of
        // `EpollEvent`, which is layout-identical to `struct epoll_event`
        // (asserted above), and `out` is not otherwise accessed during the
        // call.
        let n = cvt(unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                out.as_mut_ptr().cast::<libc::epoll_event>(),
                max,
                ms,
            )
        })?;
        let n = usize::try_from(n).unwrap_or(0);
        // SAFETY: the kernel initialised the first `n <= max <= capacity`
        // elements; `EpollEvent` is plain integers, valid for any bit pattern.
        unsafe { out.set_len(n.min(out.capacity())) };
        Ok(out.len())
    }

    /// The underlying descriptor, consuming `self`.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl From<Epoll> for OwnedFd {
    fn from(e: Epoll) -> OwnedFd {
        e.0
    }
}

impl IntoRawFd for Epoll {
    fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

impl FromRawFd for Epoll {
    /// # Safety
    ///
    /// `fd` must be an open epoll descriptor owned by the caller.
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        // SAFETY: forwarded to the caller's contract.
        Epoll(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;
    use crate::counter;
    use crate::fd;
    use std::io::ErrorKind;

    /// A number that is never an open descriptor: above the kernel's
    /// `fs.nr_open` ceiling, so no thread can open it concurrently.
    const NEVER_OPEN: RawFd = i32::MAX - 1;
    const GUARD: Option<Duration> = Some(Duration::from_secs(10));

    #[test]
    fn readable_after_write_and_modify_delete() {
        let ep = Epoll::new().unwrap();
        let (a, b) = fd::socketpair_stream().unwrap();
        let mut out = Vec::with_capacity(8);

        let before = counter::snapshot();
        ep.add(a.as_fd(), EPOLLIN, 7).unwrap();
        assert_eq!(ep.wait(&mut out, Some(Duration::ZERO)).unwrap(), 0);
        assert!(out.is_empty());
        fd::write(&b, b"hi").unwrap();
        assert_eq!(ep.wait(&mut out, GUARD).unwrap(), 1);
        assert_eq!(out[0].data(), 7);
        assert_eq!(out[0].events(), EPOLLIN);

        ep.modify(a.as_fd(), EPOLLIN | EPOLLOUT, 9).unwrap();
        assert_eq!(ep.wait(&mut out, GUARD).unwrap(), 1);
        assert_eq!(out[0], EpollEvent::new(EPOLLIN | EPOLLOUT, 9));

        ep.delete(a.as_fd()).unwrap();
        assert_eq!(ep.wait(&mut out, Some(Duration::ZERO)).unwrap(), 0);
        let d = counter::snapshot() - before;
        assert_eq!(d.get(SyscallKind::EpollCtl), 3);
        assert_eq!(d.get(SyscallKind::EpollWait), 4);
        assert_eq!(d.get(SyscallKind::Write), 1);
        assert_eq!(d.total(), 8);
    }

    #[test]
    fn rdhup_after_peer_shutdown() {
        let ep = Epoll::new().unwrap();
        let (a, b) = fd::socketpair_stream().unwrap();
        ep.add(a.as_fd(), EPOLLIN | EPOLLRDHUP, 1).unwrap();
        fd::shutdown(&b, std::net::Shutdown::Write).unwrap();
        let mut out = Vec::with_capacity(4);
        assert_eq!(ep.wait(&mut out, GUARD).unwrap(), 1);
        assert_eq!(out[0].events() & EPOLLRDHUP, EPOLLRDHUP);
        assert_eq!(out[0].events() & EPOLLIN, EPOLLIN);
    }

    #[test]
    fn raw_variants() {
        let ep = Epoll::new().unwrap();
        let (a, b) = fd::socketpair_stream().unwrap();
        ep.add_raw(a.as_raw_fd(), EPOLLIN | EPOLLET, 3).unwrap();
        let err = ep.add_raw(a.as_raw_fd(), EPOLLIN, 3).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        ep.modify_raw(a.as_raw_fd(), EPOLLOUT, 4).unwrap();
        let mut out = Vec::with_capacity(4);
        assert_eq!(ep.wait(&mut out, GUARD).unwrap(), 1);
        assert_eq!(out[0], EpollEvent::new(EPOLLOUT, 4));
        ep.delete_raw(a.as_raw_fd()).unwrap();
        let err = ep.delete_raw(a.as_raw_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        drop(b);
    }

    #[test]
    fn errors() {
        let ep = Epoll::new().unwrap();
        let file = fd::open_tmp_regular_file().unwrap();
        let err = ep.add(file.as_fd(), EPOLLIN, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));

        let before = counter::get(SyscallKind::EpollCtl);
        let err = ep.delete_raw(NEVER_OPEN).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert_eq!(counter::get(SyscallKind::EpollCtl), before + 1);

        let (a, _b) = fd::socketpair_stream().unwrap();
        let err = ep.modify(a.as_fd(), EPOLLIN, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = ep.delete(a.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));

        let err = ep.add(ep.as_fd(), EPOLLIN, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));

        let waits = counter::get(SyscallKind::EpollWait);
        let err = ep.wait(&mut Vec::new(), None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(counter::get(SyscallKind::EpollWait), waits, "no syscall");
    }

    #[test]
    fn wait_respects_capacity_and_clears() {
        let ep = Epoll::new().unwrap();
        let pairs: Vec<_> = (0..4).map(|_| fd::socketpair_stream().unwrap()).collect();
        for (i, (a, _)) in pairs.iter().enumerate() {
            ep.add(a.as_fd(), EPOLLOUT, i as u64).unwrap();
        }
        let mut out = Vec::with_capacity(2);
        out.push(EpollEvent::new(0, 99));
        let cap = out.capacity();
        let n = ep.wait(&mut out, GUARD).unwrap();
        assert_eq!(n, cap.min(4));
        assert_eq!(out.len(), n);
        assert!(out.iter().all(|e| e.data() < 4 && e.events() == EPOLLOUT));

        let mut big = Vec::with_capacity(16);
        assert_eq!(ep.wait_max(&mut big, 3, GUARD).unwrap(), 3);
        assert_eq!(ep.wait_max(&mut big, 16, GUARD).unwrap(), 4);
        let waits = counter::get(SyscallKind::EpollWait);
        let err = ep.wait_max(&mut big, 0, GUARD).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert!(big.is_empty());
        assert_eq!(counter::get(SyscallKind::EpollWait), waits, "no syscall");
    }

    #[test]
    fn event_debug_and_cloexec() {
        let e = EpollEvent::new(EPOLLIN | EPOLLHUP, 5);
        assert_eq!(format!("{e:?}"), "EpollEvent { events: 0x11, data: 5 }");
        let ep = Epoll::new().unwrap();
        let fl = rustix::io::fcntl_getfd(&ep).unwrap();
        assert!(fl.contains(rustix::io::FdFlags::CLOEXEC));
    }
}
