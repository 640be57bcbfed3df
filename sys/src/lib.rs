//! Raw, I/O-safe syscall wrappers for evmux.
//!
//! This crate is the lowest layer of evmux: thin wrappers over the system
//! calls the event loop and its backends need (`epoll_*`, `poll`, `eventfd`,
//! `pipe2`, `socketpair`, `fcntl`, `fstat`, `dup3`, `read`/`write`/`send`,
//! `shutdown`, `close`). The wrappers are built on [`rustix`]; [`libc`] is
//! used only where rustix has no suitable call or its type does not fit (a
//! persistent `pollfd` array, `epoll_ctl` on a descriptor number the caller
//! does not own, `epoll_wait` into our own event type, `F_GETFD` probing of
//! a bare number, `signal`).
//!
//! Nearly all `unsafe` code of evmux lives here. Every `unsafe` block carries
//! a `// SAFETY:` comment, and the public API is I/O-safe: functions borrow
//! descriptors (`BorrowedFd<'_>` / `impl AsFd`) and hand out [`OwnedFd`]s.
//! The few functions that take a [`RawFd`](std::os::fd::RawFd) do so on
//! purpose and document why that cannot cause memory unsafety.
//!
//! Every function returns [`std::io::Result`]; its documentation names the C
//! call and man page and lists the errno values that matter.
//!
//! On Linux, [`source`] keeps signal sources (`signalfd`, with the signal
//! blocked in the **calling thread only**: see its docs for which threads a
//! process-directed signal may still reach) and process sources (`pidfd`;
//! the exit status is read with `WNOWAIT`, so **nothing is ever reaped** by
//! evmux: the parent reaps its child as before).
//!
//! # Syscall counter
//!
//! Every wrapper records each system call it actually makes (successful or
//! not) in a cheap **per-thread** counter, see [`counter`]. Tests use it to
//! assert how many syscalls of each kind an operation costs; because it is
//! per-thread, tests running in parallel do not disturb each other.
//!
//! # Fault injection
//!
//! With the cargo feature `fault-injection`, [`fault`] offers a deterministic,
//! per-thread fault plan: before each real syscall, every wrapper asks
//! [`fault::check`] whether to fail the call with a chosen errno instead.
//! Injected failures do not reach the kernel and are not counted by
//! [`counter`]. Without the feature, `fault::check` is an inlined no-op.
//!
//! # Platforms
//!
//! Linux-only items (`epoll`, `eventfd`, `POLLRDHUP`, `O_TMPFILE`) are behind
//! `#[cfg(any(target_os = "linux", target_os = "android"))]`; [`source`]
//! (`signalfd`, `pidfd`, `waitid(P_PIDFD)`) is behind
//! `#[cfg(target_os = "linux")]`; the rest is meant to compile on other Unix
//! systems too.
//!
//! [`OwnedFd`]: std::os::fd::OwnedFd
#![deny(missing_docs)]
#![cfg(unix)]

pub mod counter;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod epoll;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod eventfd;
pub mod fault;
pub mod fd;
pub mod poll;
/// `select(2)` and its `fd_set` bitmap (`FD_SETSIZE` descriptors).
pub mod select;
pub mod signal;
#[cfg(target_os = "linux")]
pub mod source;
pub mod time;

use counter::SyscallKind;
use std::io;

/// The prologue of every wrapper: consult the fault seam, then count the
/// syscall that is about to be made.
///
/// An injected fault is returned without recording anything.
#[inline(always)]
fn enter(kind: SyscallKind) -> io::Result<()> {
    fault::check(kind)?;
    counter::record(kind);
    Ok(())
}

/// Turns a C-style `-1`-on-error return value into an `io::Result`, reading
/// `errno` on failure.
#[inline]
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Implements the source methods of `evmux_interest::Backend`
/// (`open_source`, `read_source`, `close_source`) for a backend that keeps
/// a [`source::Sources`] table in the field named `$field`, translating
/// between this crate's types and the contract's. Expands inside an
/// `impl Backend for …` block; the methods exist on Linux only (elsewhere
/// the contract's defaults answer `Unsupported`). The expansion names
/// `evmux_interest`, which every backend depends on (this crate does not).
#[macro_export]
macro_rules! backend_sources {
    ($field:ident) => {
        #[cfg(target_os = "linux")]
        fn open_source(
            &mut self,
            spec: ::evmux_interest::SourceSpec,
        ) -> ::std::io::Result<::evmux_interest::OpenedSource> {
            use ::evmux_interest::SourceSpec as S;
            use $crate::source::SysSource;
            let spec = match spec {
                S::Signal(signo) => SysSource::Signal(signo),
                S::Process(pid) => SysSource::Process(pid),
                other => {
                    return Err(::std::io::Error::new(
                        ::std::io::ErrorKind::Unsupported,
                        format!("the {} backend has no {other:?} sources", self.name()),
                    ));
                }
            };
            let (fd, id) = self.$field.open(spec)?;
            Ok(::evmux_interest::OpenedSource { fd, id })
        }

        #[cfg(target_os = "linux")]
        fn read_source(&mut self, id: u64) -> ::std::io::Result<::evmux_interest::SourceReport> {
            use ::evmux_interest::{ExitStatus as E, SourceReport as R};
            use $crate::source::{SysExit, SysReport};
            Ok(match self.$field.read(id)? {
                SysReport::Nothing => R::Nothing,
                SysReport::Signal { count } => R::Signal { count },
                SysReport::Exit(SysExit::Code(code)) => R::Exit(E::Code(code)),
                SysReport::Exit(SysExit::Signaled(signo)) => R::Exit(E::Signaled(signo)),
                SysReport::Exit(SysExit::Unknown) => R::Exit(E::Unknown),
            })
        }

        #[cfg(target_os = "linux")]
        fn close_source(&mut self, id: u64) {
            self.$field.close(id);
        }
    };
}
