//! The syscall layer: `kqueue()`, `kevent()`, `fstat()`, the waker, and for
//! signal and process sources `fcntl(F_DUPFD_CLOEXEC)` (the identity
//! descriptor) and `sigaction()` (a signal's handler). Compiled only on
//! macOS and the BSDs; see the crate documentation for what that means for
//! testing. Every decision is taken by
//! [`Translator`]; this module converts between [`KEvent`] and
//! `libc::kevent` and makes the calls it is told to.
//!
//! `kevent` goes through `libc` rather than `rustix::event::kqueue`: rustix
//! 1.1's `Event` gives no access to `fflags` of a read or write entry, which
//! carries the socket error that becomes `ERR`. rustix creates the kqueue.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evmux_interest::{
    Backend, Capabilities, Change, Key, OpenedSource, Output, SourceReport, SourceSpec, Wake,
};
use evmux_sys::counter::SyscallKind;

use crate::consts::{self, Os};
use crate::translate::{Call, FdKind, Filter, KEvent, KTimespec, Translator, submitted_flags};

const NATIVE: Os = match Os::NATIVE {
    Some(os) => os,
    None => panic!("the syscall layer is compiled only where kqueue exists"),
};

// The pure translation is written against `crate::consts`; check every
// value against this system's headers. (NetBSD's flags are `u32` already.)
#[allow(clippy::unnecessary_cast)]
const _: () = {
    let f = NATIVE.filters();
    assert!(libc::EVFILT_READ as i32 == f.read);
    assert!(libc::EVFILT_WRITE as i32 == f.write);
    assert!(libc::EVFILT_USER as i32 == f.user);
    assert!(libc::EVFILT_PROC as i32 == f.proc);
    assert!(libc::EVFILT_SIGNAL as i32 == f.signal);
    assert!(libc::EV_ADD as u32 == consts::EV_ADD as u32);
    assert!(libc::EV_DELETE as u32 == consts::EV_DELETE as u32);
    assert!(libc::EV_ENABLE as u32 == consts::EV_ENABLE as u32);
    assert!(libc::EV_DISABLE as u32 == consts::EV_DISABLE as u32);
    assert!(libc::EV_ONESHOT as u32 == consts::EV_ONESHOT as u32);
    assert!(libc::EV_CLEAR as u32 == consts::EV_CLEAR as u32);
    assert!(libc::EV_RECEIPT as u32 == consts::EV_RECEIPT as u32);
    assert!(libc::EV_DISPATCH as u32 == consts::EV_DISPATCH as u32);
    assert!(libc::EV_ERROR as u32 == consts::EV_ERROR as u32);
    assert!(libc::EV_EOF as u32 == consts::EV_EOF as u32);
    assert!(libc::NOTE_TRIGGER == consts::NOTE_TRIGGER);
    assert!(libc::NOTE_EXIT == consts::NOTE_EXIT);
    assert!(libc::SIGKILL == consts::SIGKILL);
    assert!(libc::SIGSTOP == consts::SIGSTOP);
    assert!(libc::EPERM == consts::EPERM);
    assert!(libc::ESRCH == consts::ESRCH);
    assert!(libc::EACCES == consts::EACCES);
    assert!(libc::EINVAL == consts::EINVAL);
};

#[cfg(target_os = "macos")]
const _: () = assert!(matches!(
    NATIVE.exit_status_fflag(),
    Some(consts::NOTE_EXITSTATUS)
));
#[cfg(target_os = "macos")]
const _: () = assert!(libc::NOTE_EXITSTATUS == consts::NOTE_EXITSTATUS);
#[cfg(not(target_os = "macos"))]
const _: () = assert!(NATIVE.exit_status_fflag().is_none());

/// Consults the fault seam and counts the syscall, as `evmux-sys` does for
/// its own wrappers. `kqueue` and `kevent` have no kind of their own there
/// and count as [`SyscallKind::Other`].
fn enter(kind: SyscallKind) -> io::Result<()> {
    evmux_sys::fault::check(kind)?;
    evmux_sys::counter::record(kind);
    Ok(())
}

/// Widens a flags value to the field type (`u16`, or `u32` on NetBSD).
fn widen<T: From<u16>>(v: u16) -> T {
    T::from(v)
}

/// The low 16 bits of a flags field (`u16`, or `u32` on NetBSD); every
/// `EV_*` flag lives there.
fn low16<T: Into<u64>>(v: T) -> u16 {
    (v.into() & 0xffff) as u16
}

/// `data` is `i64`, or `intptr_t` on macOS and DragonFly.
fn to_i64<T: TryInto<i64>>(v: T) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// `mode_t` is `u16` on macOS, FreeBSD and DragonFly, `u32` elsewhere.
fn mode<T: Into<u32>>(v: T) -> u32 {
    v.into()
}

/// A value that fits by construction (timeouts are clamped to a year).
fn fit<T: TryFrom<i64>>(v: i64) -> T
where
    T::Error: fmt::Debug,
{
    T::try_from(v).expect("value clamped to fit")
}

/// An element count for `kevent` (`c_int`, or `size_t` on NetBSD).
fn count<T: TryFrom<usize>>(n: usize) -> io::Result<T> {
    T::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn zeroed_kevent() -> libc::kevent {
    // SAFETY: `struct kevent` has only integer and raw-pointer fields (and
    // an integer array on FreeBSD), for all of which all-zero bytes are a
    // valid value.
    unsafe { MaybeUninit::<libc::kevent>::zeroed().assume_init() }
}

fn to_native(ev: &KEvent, flags: u16) -> libc::kevent {
    let mut k = zeroed_kevent();
    k.ident = ev.ident;
    k.filter = match ev.filter {
        Filter::Read => libc::EVFILT_READ,
        Filter::Write => libc::EVFILT_WRITE,
        Filter::User => libc::EVFILT_USER,
        Filter::Proc => libc::EVFILT_PROC,
        Filter::Signal => libc::EVFILT_SIGNAL,
    };
    k.flags = widen(flags);
    k.fflags = ev.fflags;
    // `udata` is an opaque integer to us and to the kernel, never
    // dereferenced; it has no provenance.
    k.udata = ptr::without_provenance_mut(ev.udata as usize);
    k
}

fn from_native(k: &libc::kevent) -> Option<KEvent> {
    // Copy every field out first: `struct kevent` is packed on macOS.
    let (ident, filter, flags, fflags, data, udata) =
        (k.ident, k.filter, k.flags, k.fflags, k.data, k.udata);
    let filter = if filter == libc::EVFILT_READ {
        Filter::Read
    } else if filter == libc::EVFILT_WRITE {
        Filter::Write
    } else if filter == libc::EVFILT_USER {
        Filter::User
    } else if filter == libc::EVFILT_PROC {
        Filter::Proc
    } else if filter == libc::EVFILT_SIGNAL {
        Filter::Signal
    } else {
        return None;
    };
    Some(KEvent {
        ident,
        filter,
        flags: low16(flags),
        fflags,
        data: to_i64(data),
        udata: udata.addr() as u64,
    })
}

/// One `kevent` call on `kq`. Returns how many entries the kernel wrote to
/// the head of `events`.
fn kevent(
    kq: RawFd,
    changes: &[libc::kevent],
    events: &mut [libc::kevent],
    timeout: Option<KTimespec>,
) -> io::Result<usize> {
    enter(SyscallKind::Other)?;
    kevent_unfaulted(kq, changes, events, timeout)
}

/// [`kevent`] without the fault seam (counted by the caller): for
/// clean-up, which an injected fault must not turn into a leak.
fn kevent_unfaulted(
    kq: RawFd,
    changes: &[libc::kevent],
    events: &mut [libc::kevent],
    timeout: Option<KTimespec>,
) -> io::Result<usize> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: fit(t.sec),
        tv_nsec: fit(t.nsec),
    });
    let ts_ptr = ts.as_ref().map_or(ptr::null(), ptr::from_ref);
    // SAFETY: the changelist pointer and length describe `changes`, which
    // the kernel only reads; the eventlist pointer and length describe
    // `events`, initialised memory we own exclusively, into which the kernel
    // writes at most that many entries; `ts_ptr` is null or points to `ts`,
    // alive until the call returns. The descriptor numbers in `changes` are
    // only looked up by the kernel (EBADF when not open), `udata` is an
    // integer it hands back without interpreting, and the kqueue removes a
    // descriptor's knotes when it is closed, so nothing can refer to memory
    // or descriptors that are gone.
    let rc = unsafe {
        libc::kevent(
            kq,
            changes.as_ptr(),
            count(changes.len())?,
            events.as_mut_ptr(),
            count(events.len())?,
            ts_ptr,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(rc).unwrap_or(0).min(events.len()))
}

/// What `fd` is, for the readiness mapping; `Other` if `fstat` fails (the
/// kernel then refuses the registration itself, e.g. with `EBADF`).
fn fd_kind(fd: RawFd) -> FdKind {
    if enter(SyscallKind::Fstat).is_err() {
        return FdKind::Other;
    }
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable buffer of the right type and size for the
    // kernel to fill; `fd` is a number the kernel validates (EBADF if not
    // open) and `fstat` does not change.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return FdKind::Other;
    }
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    let fmt = mode(st.st_mode) & mode(libc::S_IFMT);
    if fmt == mode(libc::S_IFREG) {
        FdKind::Regular
    } else if fmt == mode(libc::S_IFIFO) {
        FdKind::Fifo
    } else if fmt == mode(libc::S_IFSOCK) {
        FdKind::Socket
    } else {
        FdKind::Other
    }
}

/// The kqueue backend. See the crate documentation.
pub struct KqueueBackend {
    kq: Arc<OwnedFd>,
    tr: Translator,
    /// The identity descriptors of the open sources, by id.
    source_fds: HashMap<u64, OwnedFd>,
    changes: Vec<libc::kevent>,
    events: Vec<libc::kevent>,
    taken: Vec<KEvent>,
    waker: Option<Arc<KqWaker>>,
    start: Instant,
}

impl fmt::Debug for KqueueBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KqueueBackend")
            .field("kq", &self.kq)
            .field("translator", &self.tr)
            .field("waker", &self.waker)
            .finish_non_exhaustive()
    }
}

impl KqueueBackend {
    /// A new kqueue, close-on-exec.
    ///
    /// # Errors
    /// `EMFILE`/`ENFILE` when no descriptor is left, `ENOMEM`.
    pub fn new() -> io::Result<KqueueBackend> {
        enter(SyscallKind::Other)?;
        let kq = rustix::event::kqueue::kqueue()?;
        enter(SyscallKind::Fcntl)?;
        rustix::io::fcntl_setfd(&kq, rustix::io::FdFlags::CLOEXEC)?;
        Ok(KqueueBackend {
            kq: Arc::new(kq),
            tr: Translator::new(),
            source_fds: HashMap::new(),
            changes: Vec::new(),
            events: Vec::new(),
            taken: Vec::new(),
            waker: None,
            start: Instant::now(),
        })
    }

    /// How many regular files are kept ready in user space.
    pub fn user_space_files(&self) -> usize {
        self.tr.user_space_files()
    }

    /// Makes one call as the translator said, and hands it the results.
    fn call(&mut self, call: Call, out: &mut Output) -> io::Result<()> {
        self.changes.clear();
        if call.submit_changes {
            for ev in self.tr.changelist() {
                self.changes.push(to_native(ev, submitted_flags(ev, &call)));
            }
        }
        if self.events.len() < call.nevents {
            self.events.resize(call.nevents, zeroed_kevent());
        }
        let n = kevent(
            self.kq.as_raw_fd(),
            &self.changes,
            &mut self.events[..call.nevents],
            call.timeout,
        )?;
        self.taken.clear();
        self.taken
            .extend(self.events[..n].iter().filter_map(from_native));
        let woke = self.tr.take_results(&self.taken, out);
        if woke && let Some(w) = &self.waker {
            w.drain();
        }
        Ok(())
    }
}

impl Backend for KqueueBackend {
    fn name(&self) -> &'static str {
        "kqueue"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_edge: true,
            native_oneshot: true,
            cheap_changes: false,
            max_fd: None,
        }
    }

    fn submit_and_wait(
        &mut self,
        changes: &[Change],
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let mut classify = fd_kind;
        let mut next = self
            .tr
            .begin(changes, &mut classify, out, max_events, timeout);
        while let Some(call) = next {
            // EINTR and other failures return here; the changes were applied
            // (a kernel only sleeps after the changelist) and the driver
            // retries with an empty batch.
            self.call(call, out)?;
            next = self.tr.next_call(out);
        }
        Ok(())
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        if let Some(w) = &self.waker {
            return Ok(w.clone());
        }
        let w = Arc::new(KqWaker::new(self.kq.clone())?);
        self.waker = Some(w.clone());
        Ok(w)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// `EVFILT_SIGNAL` or `EVFILT_PROC` (see [`crate::source`]): the
    /// translator validates and plans; then a duplicate of the kqueue
    /// descriptor becomes the identity the driver watches, a signal gets
    /// evmux's handler ([`handlers`]), and the knote is added by a `kevent`
    /// call of its own (no eventlist: a refusal is the call's error).
    fn open_source(&mut self, spec: SourceSpec) -> io::Result<OpenedSource> {
        let mut plan = self.tr.plan_source(NATIVE, spec)?;
        enter(SyscallKind::Dup)?;
        let fd = rustix::io::fcntl_dupfd_cloexec(&*self.kq, 0)?;
        let signal = match spec {
            SourceSpec::Signal(signo) => Some(signo),
            _ => None,
        };
        if let Some(signo) = signal {
            handlers::hold(signo)?;
        }
        while let Some(ev) = plan.add() {
            let added = kevent(
                self.kq.as_raw_fd(),
                &[to_native(ev, ev.flags)],
                &mut [],
                Some(KTimespec::ZERO),
            );
            let Err(e) = added else { break };
            let next = match e.raw_os_error() {
                Some(errno) => plan.refused(errno),
                None => Err(e),
            };
            match next {
                Ok(retry) => plan = retry,
                Err(e) => {
                    if let Some(signo) = signal {
                        handlers::release(signo);
                    }
                    return Err(e);
                }
            }
        }
        let raw = fd.as_raw_fd();
        let id = self.tr.open_source(plan, raw);
        self.source_fds.insert(id, fd);
        Ok(OpenedSource { fd: raw, id })
    }

    /// No syscall: the deliveries and the exit were taken from the entries
    /// the waits returned.
    fn read_source(&mut self, id: u64) -> io::Result<SourceReport> {
        self.tr.read_source(id)
    }

    /// Deletes the knote (unless the kernel dropped it already), restores
    /// a signal's handler when no source of this process watches it any
    /// more, and closes the identity descriptor. Counted, never faulted.
    fn close_source(&mut self, id: u64) {
        let Some(closed) = self.tr.close_source(id) else {
            return;
        };
        if let Some(ev) = closed.delete {
            evmux_sys::counter::record(SyscallKind::Other);
            // ENOENT (the process exited and the kernel dropped the knote
            // since the last wait) and the like leave nothing to undo.
            let _ = kevent_unfaulted(
                self.kq.as_raw_fd(),
                &[to_native(&ev, ev.flags)],
                &mut [],
                Some(KTimespec::ZERO),
            );
        }
        if let SourceSpec::Signal(signo) = closed.spec {
            handlers::release(signo);
        }
        if self.source_fds.remove(&id).is_some() {
            evmux_sys::counter::record(SyscallKind::Close);
        }
    }
}

impl Drop for KqueueBackend {
    /// Closes the sources left open (the driver closes its own first), so
    /// that signal handlers are restored; the waker may keep the kqueue
    /// itself alive.
    fn drop(&mut self) {
        for id in self.tr.source_ids() {
            self.close_source(id);
        }
    }
}

/// The handler a watched signal gets while any source of this process
/// watches it, and the refcount that restores the old action.
///
/// `EVFILT_SIGNAL` records every attempt to deliver a signal, but has lower
/// precedence than the signal's disposition, which still runs: the default
/// action of most signals ends the process. The backend therefore installs
/// a handler that does nothing (`SA_RESTART`, empty mask) with
/// `sigaction(2)` when the first source of a signal opens, process-wide,
/// and restores the saved action when the last one closes. Not `SIG_IGN`:
/// an ignored `SIGCHLD` is not recorded by the filter and makes the kernel
/// reap children (no exit status left for `add_process`), and `SIG_IGN`,
/// unlike a handler, is inherited across `execve` by children.
mod handlers {
    use std::io;
    use std::mem::MaybeUninit;
    use std::ptr;
    use std::sync::{Mutex, PoisonError};

    use evmux_sys::counter::SyscallKind;

    struct Held {
        signo: i32,
        count: usize,
        old: libc::sigaction,
    }

    /// The signals this process holds, with the actions they had.
    static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

    extern "C" fn do_nothing(_: libc::c_int) {}

    fn zeroed_sigaction() -> libc::sigaction {
        // SAFETY: `struct sigaction` is a handler address (an integer in
        // `libc`), an integer flags field and a `sigset_t` (integers), for
        // all of which all-zero bytes are a valid value.
        unsafe { MaybeUninit::<libc::sigaction>::zeroed().assume_init() }
    }

    /// Installs the handler for `signo` unless this process holds it
    /// already.
    pub(super) fn hold(signo: i32) -> io::Result<()> {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = held.iter_mut().find(|h| h.signo == signo) {
            h.count += 1;
            return Ok(());
        }
        super::enter(SyscallKind::Other)?;
        let mut act = zeroed_sigaction();
        act.sa_sigaction = do_nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        act.sa_flags = libc::SA_RESTART;
        // SAFETY: `act.sa_mask` is a `sigset_t` we own; `sigemptyset` only
        // writes it.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        let mut old = zeroed_sigaction();
        // SAFETY: `act` is a fully initialised action whose handler is a
        // valid `extern "C" fn(c_int)` that touches nothing (so it is
        // async-signal-safe); `old` is ours to be written. An invalid
        // `signo` is refused with `EINVAL`.
        if unsafe { libc::sigaction(signo, &act, &mut old) } != 0 {
            return Err(io::Error::last_os_error());
        }
        held.push(Held {
            signo,
            count: 1,
            old,
        });
        Ok(())
    }

    /// Releases one hold of `signo`; the last restores the saved action.
    /// Counted, never faulted; a failure (none is expected for an action
    /// the kernel gave us) leaves the handler in place.
    pub(super) fn release(signo: i32) {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pos) = held.iter().position(|h| h.signo == signo) else {
            return;
        };
        held[pos].count -= 1;
        if held[pos].count > 0 {
            return;
        }
        let h = held.swap_remove(pos);
        evmux_sys::counter::record(SyscallKind::Other);
        // SAFETY: `h.old` is the action `sigaction` gave us for this signal,
        // unchanged; the old action is not asked for (null).
        unsafe { libc::sigaction(signo, &h.old, ptr::null_mut()) };
    }
}

/// Registers or triggers the waker's `EVFILT_USER` event (identifier 0),
/// without collecting anything.
#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "dragonfly"))]
fn user_event(kq: RawFd, flags: u16, fflags: u32) -> io::Result<()> {
    let ev = KEvent {
        ident: 0,
        filter: Filter::User,
        flags,
        fflags,
        data: 0,
        udata: Key::WAKER.0,
    };
    kevent(kq, &[to_native(&ev, flags)], &mut [], Some(KTimespec::ZERO)).map(drop)
}

/// Wakes a [`KqueueBackend`]: an `EVFILT_USER` event.
#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "dragonfly"))]
#[derive(Debug)]
struct KqWaker {
    kq: Arc<OwnedFd>,
}

#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "dragonfly"))]
impl KqWaker {
    fn new(kq: Arc<OwnedFd>) -> io::Result<KqWaker> {
        // EV_CLEAR: the trigger resets when it is delivered, so wakes before
        // a wait coalesce into one report.
        user_event(kq.as_raw_fd(), consts::EV_ADD | consts::EV_CLEAR, 0)?;
        Ok(KqWaker { kq })
    }

    fn drain(&self) {}
}

#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "dragonfly"))]
impl Wake for KqWaker {
    fn wake(&self) -> io::Result<()> {
        user_event(self.kq.as_raw_fd(), 0, consts::NOTE_TRIGGER)
    }
}

/// Wakes a [`KqueueBackend`]: a non-blocking self-pipe whose read end the
/// kqueue watches. The waker keeps both ends, so a wake after the backend is
/// gone fills the pipe (then `EAGAIN`, ignored) instead of raising
/// `SIGPIPE`.
#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
#[derive(Debug)]
struct KqWaker {
    read: OwnedFd,
    write: OwnedFd,
}

#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
impl KqWaker {
    fn new(kq: Arc<OwnedFd>) -> io::Result<KqWaker> {
        let (read, write) = evmux_sys::fd::pipe()?;
        let ev = KEvent::change(read.as_raw_fd(), Filter::Read, consts::EV_ADD, Key::WAKER.0);
        kevent(
            kq.as_raw_fd(),
            &[to_native(&ev, ev.flags)],
            &mut [],
            Some(KTimespec::ZERO),
        )?;
        Ok(KqWaker { read, write })
    }

    /// Empties the pipe after the kqueue reported it (level-triggered: it
    /// stops reporting once empty).
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = evmux_sys::fd::read(&self.read, &mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }
}

#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
impl Wake for KqWaker {
    fn wake(&self) -> io::Result<()> {
        match evmux_sys::fd::write(&self.write, &[1]) {
            Ok(_) => Ok(()),
            // Full: a wake is pending already.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}
