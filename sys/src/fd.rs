//! Descriptor helpers: pipes, socket pairs, flags, plain I/O, duplication,
//! closing, and an anonymous regular file for tests.

use crate::counter::SyscallKind;
use crate::enter;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

/// Drops `fd`, counting the `close` this makes.
fn drop_counted(fd: OwnedFd) {
    crate::counter::record(SyscallKind::Close);
    drop(fd);
}

/// Creates a pipe, both ends close-on-exec and non-blocking; returns
/// `(read_end, write_end)`.
///
/// `pipe2(fds, O_CLOEXEC | O_NONBLOCK)` — see pipe(2). (Where `pipe2` does
/// not exist, `pipe` followed by `fcntl` calls.)
///
/// # Errors
///
/// - `EMFILE`/`ENFILE`: per-process or system-wide descriptor limit hit.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    enter(SyscallKind::Pipe)?;
    #[cfg(not(any(
        target_vendor = "apple",
        target_os = "aix",
        target_os = "haiku",
        target_os = "nto"
    )))]
    {
        use rustix::pipe::PipeFlags;
        Ok(rustix::pipe::pipe_with(
            PipeFlags::CLOEXEC | PipeFlags::NONBLOCK,
        )?)
    }
    #[cfg(any(
        target_vendor = "apple",
        target_os = "aix",
        target_os = "haiku",
        target_os = "nto"
    ))]
    {
        let (r, w) = rustix::pipe::pipe()?;
        for fd in [&r, &w] {
            set_cloexec(fd.as_fd())?;
            set_nonblocking(fd, true)?;
        }
        Ok((r, w))
    }
}

/// Creates a connected pair of Unix stream sockets, both close-on-exec and
/// non-blocking.
///
/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds)` —
/// see socketpair(2). (Where the type flags do not exist, `socketpair`
/// followed by `fcntl` calls.)
///
/// # Errors
///
/// - `EMFILE`/`ENFILE`: per-process or system-wide descriptor limit hit;
/// - `ENOBUFS`/`ENOMEM`: out of kernel memory.
pub fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    enter(SyscallKind::Socketpair)?;
    #[cfg(not(any(
        target_vendor = "apple",
        target_os = "aix",
        target_os = "haiku",
        target_os = "nto"
    )))]
    {
        Ok(rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?)
    }
    #[cfg(any(
        target_vendor = "apple",
        target_os = "aix",
        target_os = "haiku",
        target_os = "nto"
    ))]
    {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::empty(),
            None,
        )?;
        for fd in [&a, &b] {
            set_cloexec(fd.as_fd())?;
            set_nonblocking(fd, true)?;
        }
        Ok((a, b))
    }
}

#[cfg(any(
    target_vendor = "apple",
    target_os = "aix",
    target_os = "haiku",
    target_os = "nto"
))]
fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    enter(SyscallKind::Fcntl)?;
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?)
}

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`
/// (shared with every duplicate of it). Makes one `F_GETFL` call, plus one
/// `F_SETFL` call only if the flag has to change.
///
/// `fcntl(fd, F_GETFL)` then `fcntl(fd, F_SETFL, flags)` — see fcntl(2).
///
/// # Errors
///
/// - `EBADF`: cannot happen for a borrowed descriptor.
pub fn set_nonblocking(fd: impl AsFd, nonblocking: bool) -> io::Result<()> {
    use rustix::fs::OFlags;
    let fd = fd.as_fd();
    enter(SyscallKind::Fcntl)?;
    let flags = rustix::fs::fcntl_getfl(fd)?;
    if flags.contains(OFlags::NONBLOCK) == nonblocking {
        return Ok(());
    }
    let mut new = flags;
    new.set(OFlags::NONBLOCK, nonblocking);
    enter(SyscallKind::Fcntl)?;
    Ok(rustix::fs::fcntl_setfl(fd, new)?)
}

/// Whether `O_NONBLOCK` is set on the open file description behind `fd`.
///
/// `fcntl(fd, F_GETFL)` — see fcntl(2).
///
/// # Errors
///
/// - `EBADF`: cannot happen for a borrowed descriptor.
pub fn is_nonblocking(fd: impl AsFd) -> io::Result<bool> {
    enter(SyscallKind::Fcntl)?;
    let flags = rustix::fs::fcntl_getfl(fd)?;
    Ok(flags.contains(rustix::fs::OFlags::NONBLOCK))
}

/// Whether `fd` refers to a regular file (`S_ISREG`). Regular files are
/// always "ready" and cannot be registered with epoll (`EPERM`).
///
/// `fstat(fd, &st)` — see fstat(2).
///
/// # Errors
///
/// - `EOVERFLOW`: cannot happen on 64-bit targets;
/// - `ENOMEM`: out of kernel memory.
pub fn is_regular_file(fd: impl AsFd) -> io::Result<bool> {
    enter(SyscallKind::Fstat)?;
    let st = rustix::fs::fstat(fd)?;
    Ok(rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
}

/// Like [`is_regular_file`], for a bare descriptor number (e.g. one an event
/// loop was asked to register but does not own).
///
/// Sound because `fstat` on an arbitrary number only looks it up and writes
/// into our own `stat` buffer; a closed number gives `EBADF`. The answer can
/// be stale if other threads close or reuse the number.
///
/// `fstat(fd, &st)` — see fstat(2).
///
/// # Errors
///
/// - `EBADF`: `fd` is not an open descriptor;
/// - `ENOMEM`: out of kernel memory.
pub fn is_regular_file_raw(fd: RawFd) -> io::Result<bool> {
    enter(SyscallKind::Fstat)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable buffer of the right type and size for the
    // kernel to fill; `fd` is an arbitrary number that the kernel validates
    // (EBADF if not open) and that `fstat` does not modify.
    crate::cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// Whether the number `fd` is currently an open descriptor of this process.
///
/// Takes a bare number on purpose (a closed number cannot be borrowed); this
/// is sound because `F_GETFD` only looks the number up. The answer can be
/// stale as soon as it is returned if other threads open or close
/// descriptors. Returns `false` only for `EBADF`; any other failure (there
/// is none in practice) is reported as "open".
///
/// `fcntl(fd, F_GETFD)` — see fcntl(2).
///
/// # Errors
///
/// None: `EBADF` is the answer `false`. (With fault injection, an injected
/// `EBADF` also yields `false`, any other injected errno `true`.)
pub fn is_open_raw(fd: RawFd) -> bool {
    if let Err(e) = enter(SyscallKind::Fcntl) {
        return e.raw_os_error() != Some(libc::EBADF);
    }
    // SAFETY: `F_GETFD` takes no pointer argument and has no side effects;
    // on an arbitrary number the kernel answers EBADF or the descriptor
    // flags, and no descriptor or memory is affected.
    let ret = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    ret != -1 || io::Error::last_os_error().raw_os_error() != Some(libc::EBADF)
}

/// Reads up to `buf.len()` bytes from `fd`; `Ok(0)` means end of file (or an
/// empty `buf`).
///
/// `read(fd, buf, len)` — see read(2).
///
/// # Errors
///
/// - `EAGAIN` ([`io::ErrorKind::WouldBlock`]): non-blocking and no data;
/// - `EINTR`: interrupted before any data was read;
/// - `EISDIR`, `EINVAL`: `fd` cannot be read this way;
/// - `ECONNRESET`: (sockets) the peer reset the connection;
/// - `EIO`: I/O error.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    enter(SyscallKind::Read)?;
    Ok(rustix::io::read(fd, buf)?)
}

/// Writes up to `buf.len()` bytes to `fd`; returns how many were written.
///
/// Writing to a pipe or socket without reader raises `SIGPIPE` unless it is
/// ignored (see [`crate::signal::ignore_sigpipe`]); use [`send`] for sockets.
///
/// `write(fd, buf, len)` — see write(2).
///
/// # Errors
///
/// - `EAGAIN` ([`io::ErrorKind::WouldBlock`]): non-blocking and full;
/// - `EPIPE` ([`io::ErrorKind::BrokenPipe`]): no reader (and `SIGPIPE` is
///   ignored);
/// - `EINTR`: interrupted before any data was written;
/// - `ENOSPC`, `EFBIG`, `EDQUOT`, `EIO`: file errors.
pub fn write(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    enter(SyscallKind::Write)?;
    Ok(rustix::io::write(fd, buf)?)
}

/// Sends up to `buf.len()` bytes on a connected socket, never raising
/// `SIGPIPE`. Counted as [`SyscallKind::Write`].
///
/// `send(fd, buf, len, MSG_NOSIGNAL)` — see send(2). (Not on Apple targets,
/// which lack `MSG_NOSIGNAL`.)
///
/// # Errors
///
/// - `EPIPE` ([`io::ErrorKind::BrokenPipe`]): the peer has closed, or this
///   end was shut down for writing;
/// - `EAGAIN` ([`io::ErrorKind::WouldBlock`]): non-blocking and full;
/// - `ECONNRESET`: the peer reset the connection;
/// - `ENOTSOCK`: `fd` is not a socket;
/// - `ENOTCONN`: the socket is not connected;
/// - `EINTR`: interrupted before any data was sent.
#[cfg(not(target_vendor = "apple"))]
pub fn send(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    enter(SyscallKind::Write)?;
    Ok(rustix::net::send(
        fd,
        buf,
        rustix::net::SendFlags::NOSIGNAL,
    )?)
}

/// Shuts down reading, writing or both on a connected socket.
///
/// `shutdown(fd, SHUT_RD | SHUT_WR | SHUT_RDWR)` — see shutdown(2).
///
/// # Errors
///
/// - `ENOTCONN`: the socket is not connected;
/// - `ENOTSOCK`: `fd` is not a socket;
/// - `EINVAL`: invalid `how` (cannot happen).
pub fn shutdown(fd: impl AsFd, how: std::net::Shutdown) -> io::Result<()> {
    use rustix::net::Shutdown as S;
    let how = match how {
        std::net::Shutdown::Read => S::Read,
        std::net::Shutdown::Write => S::Write,
        std::net::Shutdown::Both => S::Both,
    };
    enter(SyscallKind::Shutdown)?;
    Ok(rustix::net::shutdown(fd, how)?)
}

/// Duplicates `fd` onto the lowest free number, close-on-exec.
///
/// `fcntl(fd, F_DUPFD_CLOEXEC, 0)` — see fcntl(2) and dup(2).
///
/// # Errors
///
/// - `EMFILE`: the per-process descriptor limit is reached.
pub fn dup(fd: impl AsFd) -> io::Result<OwnedFd> {
    enter(SyscallKind::Dup)?;
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}

/// Atomically replaces the open file behind `target`'s number with a
/// duplicate of `src` (close-on-exec), returning it as an [`OwnedFd`] with
/// the same number as `target`.
///
/// There is no moment at which `target`'s number is free, so no other thread
/// can grab it in between: this is how tests get "a new file with an old
/// number" deterministically. `target` is consumed: its old file is closed
/// by `dup3` itself (silently — close errors of the old file are not
/// reported), and ownership of the number passes to the returned value.
///
/// Sound without `unsafe` here: rustix's `dup3` takes the target as
/// `&mut OwnedFd`, i.e. exclusive ownership of the number for the duration
/// of the call, and leaves that `OwnedFd` owning the new duplicate.
///
/// `dup3(src, target, O_CLOEXEC)` — see dup(2).
///
/// # Errors
///
/// On error `target` is closed (and the close is counted).
///
/// - `EINVAL`: `src` and `target` are the same number (only possible if
///   `src` was borrowed from `target` unsafely);
/// - `EBUSY`: (Linux) race with a concurrent `open`/`dup` — cannot happen
///   for an owned, open `target`;
/// - `EMFILE`: cannot happen (the number is already allocated);
/// - `EINTR`: interrupted.
pub fn dup_onto(src: BorrowedFd<'_>, target: OwnedFd) -> io::Result<OwnedFd> {
    let mut target = target;
    if let Err(e) = enter(SyscallKind::Dup) {
        drop_counted(target);
        return Err(e);
    }
    // dup3(2) exists on Linux and the BSDs; macOS and others get dup2(2)
    // followed by FD_CLOEXEC (not atomic, which only matters to a program
    // that forks from another thread at the same moment).
    #[cfg(not(any(
        target_os = "aix",
        target_os = "nto",
        target_os = "macos",
        target_os = "ios"
    )))]
    let res = rustix::io::dup3(src, &mut target, rustix::io::DupFlags::CLOEXEC);
    #[cfg(any(
        target_os = "aix",
        target_os = "nto",
        target_os = "macos",
        target_os = "ios"
    ))]
    let res = rustix::io::dup2(src, &mut target).and_then(|()| {
        crate::counter::record(SyscallKind::Fcntl);
        rustix::io::fcntl_setfd(&target, rustix::io::FdFlags::CLOEXEC)
    });
    match res {
        Ok(()) => Ok(target),
        Err(e) => {
            drop_counted(target);
            Err(e.into())
        }
    }
}

/// Closes `fd` and reports the error `close(2)` returns, which `drop` would
/// silently ignore.
///
/// The descriptor is released even when an error is reported (Linux
/// semantics; do not retry). With fault injection, an injected failure still
/// really closes the descriptor (counted) and then returns the injected
/// errno, so no descriptor leaks.
///
/// `close(fd)` — see close(2).
///
/// # Errors
///
/// - `EIO`: a previous write-back failed (e.g. on NFS);
/// - `ENOSPC`/`EDQUOT`: (NFS) deferred write errors;
/// - `EINTR`: interrupted (the descriptor is closed nonetheless on Linux).
pub fn close(fd: OwnedFd) -> io::Result<()> {
    let injected = crate::fault::check(SyscallKind::Close);
    crate::counter::record(SyscallKind::Close);
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` came from an `OwnedFd` we consumed, so it is open and
    // owned by us, and nothing else will use or close it afterwards.
    let res = unsafe { rustix::io::try_close(raw) };
    injected?;
    Ok(res?)
}

/// Opens an anonymous regular file (already unlinked) for reading and
/// writing, close-on-exec, in [`std::env::temp_dir()`].
///
/// `open(tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)` — see open(2);
/// where `O_TMPFILE` is unavailable (non-Linux, or a file system without
/// support: `EOPNOTSUPP`, `EISDIR`, `EINVAL`, `ENOENT`), falls back to
/// `open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600)` of a unique name
/// followed by `unlink(path)` — see unlink(2). All counted as
/// [`SyscallKind::Other`].
///
/// # Errors
///
/// - `EACCES`/`EROFS`: the temporary directory is not writable;
/// - `EMFILE`/`ENFILE`: descriptor limit hit;
/// - `ENOSPC`/`EDQUOT`: no space.
pub fn open_tmp_regular_file() -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let dir = std::env::temp_dir();
    let mode = Mode::RUSR | Mode::WUSR;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let res = enter(SyscallKind::Other).and_then(|()| {
            rustix::fs::open(&dir, OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, mode)
                .map_err(io::Error::from)
        });
        match res {
            Ok(fd) => return Ok(fd),
            // No O_TMPFILE support here: use the fallback below.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
                ) => {}
            Err(e) => return Err(e),
        }
    }

    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut tries = 0;
    loop {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!(".evmux-tmp-{}-{seq}-{nanos}", std::process::id()));
        enter(SyscallKind::Other)?;
        match rustix::fs::open(
            &path,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
            mode,
        ) {
            Ok(fd) => {
                // Unlink even when a fault is injected, so no file is left
                // behind; then report the injected error.
                let injected = crate::fault::check(SyscallKind::Other);
                crate::counter::record(SyscallKind::Other);
                let unlinked = rustix::fs::unlink(&path).map_err(io::Error::from);
                return match injected.and(unlinked) {
                    Ok(()) => Ok(fd),
                    Err(e) => {
                        drop_counted(fd);
                        Err(e)
                    }
                };
            }
            Err(rustix::io::Errno::EXIST) if tries < 100 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter;
    use std::io::ErrorKind;
    use std::os::fd::AsRawFd;

    const NEVER_OPEN: RawFd = i32::MAX - 1;

    fn cloexec(fd: impl AsFd) -> bool {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    }

    #[test]
    fn pipe_flags_and_io() {
        let before = counter::snapshot();
        let (r, w) = pipe().unwrap();
        assert_eq!((counter::snapshot() - before).get(SyscallKind::Pipe), 1);
        assert!(cloexec(&r) && cloexec(&w));
        assert!(is_nonblocking(&r).unwrap() && is_nonblocking(&w).unwrap());
        let mut buf = [0u8; 8];
        assert_eq!(
            read(&r, &mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        assert_eq!(write(&w, b"hello").unwrap(), 5);
        assert_eq!(read(&r, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        let d = counter::snapshot() - before;
        assert_eq!(d.get(SyscallKind::Read), 2);
        assert_eq!(d.get(SyscallKind::Write), 1);
    }

    #[test]
    fn nonblocking_toggle_counts_fcntl() {
        let (a, _b) = socketpair_stream().unwrap();
        assert!(cloexec(&a));
        let before = counter::get(SyscallKind::Fcntl);
        set_nonblocking(&a, true).unwrap(); // already: one F_GETFL only
        assert_eq!(counter::get(SyscallKind::Fcntl), before + 1);
        set_nonblocking(&a, false).unwrap();
        assert_eq!(counter::get(SyscallKind::Fcntl), before + 3);
        assert!(!is_nonblocking(&a).unwrap());
        set_nonblocking(a.as_fd(), true).unwrap();
        assert!(is_nonblocking(&a).unwrap());
    }

    #[test]
    fn regular_file_detection() {
        let f = open_tmp_regular_file().unwrap();
        assert!(is_regular_file(&f).unwrap());
        assert!(cloexec(&f));
        assert_eq!(write(&f, b"data").unwrap(), 4);
        let (r, _w) = pipe().unwrap();
        assert!(!is_regular_file(&r).unwrap());
        let (s, _t) = socketpair_stream().unwrap();
        assert!(!is_regular_file(&s).unwrap());
        assert!(is_regular_file_raw(f.as_raw_fd()).unwrap());
        assert!(!is_regular_file_raw(r.as_raw_fd()).unwrap());
        let err = is_regular_file_raw(NEVER_OPEN).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn open_probe() {
        let (r, _w) = pipe().unwrap();
        assert!(is_open_raw(r.as_raw_fd()));
        assert!(!is_open_raw(NEVER_OPEN));
        assert!(!is_open_raw(-1));
    }

    #[test]
    fn send_to_closed_peer_is_epipe() {
        let (a, b) = socketpair_stream().unwrap();
        assert_eq!(send(&a, b"x").unwrap(), 1);
        drop(b);
        let err = send(&a, b"y").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    }

    #[test]
    fn shutdown_write_gives_eof() {
        let (a, b) = socketpair_stream().unwrap();
        shutdown(&b, std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(read(&a, &mut buf).unwrap(), 0);
        let err = send(&b, b"z").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        let (r, _w) = pipe().unwrap();
        let err = shutdown(&r, std::net::Shutdown::Both).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    }

    #[test]
    fn dup_is_cloexec_and_shares_file() {
        let (r, w) = pipe().unwrap();
        let w2 = dup(&w).unwrap();
        assert_ne!(w2.as_raw_fd(), w.as_raw_fd());
        assert!(cloexec(&w2));
        write(&w2, b"q").unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(read(&r, &mut buf).unwrap(), 1);
    }

    #[test]
    fn dup_onto_keeps_number_and_replaces_file() {
        let (r1, w1) = pipe().unwrap();
        let (r2, w2) = pipe().unwrap();
        let number = w1.as_raw_fd();
        let before = counter::snapshot();
        let new = dup_onto(w2.as_fd(), w1).unwrap();
        let d = counter::snapshot() - before;
        assert_eq!(d.get(SyscallKind::Dup), 1);
        assert_eq!(d.total(), 1);
        assert_eq!(new.as_raw_fd(), number);
        assert!(cloexec(&new));
        // The new number writes into the second pipe...
        assert_eq!(write(&new, b"n").unwrap(), 1);
        let mut buf = [0u8; 2];
        assert_eq!(read(&r2, &mut buf).unwrap(), 1);
        assert_eq!(buf[0], b'n');
        // ...and the first pipe's only write end is gone: EOF.
        assert_eq!(read(&r1, &mut buf).unwrap(), 0);
        drop(w2);
        drop(new);
        assert_eq!(read(&r2, &mut buf).unwrap(), 0);
    }

    #[test]
    fn close_reports_and_counts() {
        let (r, w) = pipe().unwrap();
        let before = counter::get(SyscallKind::Close);
        close(w).unwrap();
        assert_eq!(counter::get(SyscallKind::Close), before + 1);
        let mut buf = [0u8; 1];
        assert_eq!(read(&r, &mut buf).unwrap(), 0);
    }
}
