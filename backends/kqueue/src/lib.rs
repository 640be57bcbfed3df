//! The kqueue(2) backend for evmux: macOS, FreeBSD, NetBSD, OpenBSD and
//! DragonFly BSD.
//!
//! ## What is exercised where
//!
//! The crate has two parts, and only one of them is tested by this project:
//!
//! - [`translate`], [`source`] and [`consts`] are pure: evmux's changes to
//!   a kqueue changelist, kqueue's returned entries to readiness masks and
//!   rejections, the regular files kept in user space, the timeout, the
//!   decision which `kevent` calls a wait makes, and the signal and process
//!   sources (validation, their entries, their counts and exit statuses).
//!   They use no syscall and no libc type, are compiled on every OS, and
//!   are unit-tested on Linux (`cargo test -p evmux-kqueue`).
//! - `KqueueBackend`, the [`Backend`](evmux_interest::Backend), is a thin
//!   syscall layer over that: `kqueue()`, one `kevent()` per wait, `fstat`
//!   once per registration, the waker, and for sources one `kevent()` to
//!   add or delete a knote, `fcntl(F_DUPFD_CLOEXEC)` and `sigaction()`. It
//!   is compiled only on the five systems above. **No machine of this
//!   project runs any of them, so that layer has never been run by anyone
//!   here, nor compiled by this project's CI**; it was written against the
//!   headers and kernel sources of those systems. It has been type-checked
//!   and linted by hand, once, from Linux (`cargo +nightly clippy -Z
//!   build-std --target …`, which needs no BSD machine) for x86_64
//!   FreeBSD, OpenBSD, DragonFly, NetBSD and macOS, aarch64 macOS and i686
//!   FreeBSD; that also evaluates the compile-time checks of [`consts`]
//!   against each system's `libc`. It has never been linked or run. Run
//!   `cargo test` and the conformance suite on a BSD or a Mac before
//!   relying on it. Everywhere else the crate exports only
//!   the pure modules, [`AVAILABLE`] = `false` and [`UNAVAILABLE_REASON`].
//!
//! ## How a wait maps to `kevent`
//!
//! Read and write interest are two filters (`EVFILT_READ`, `EVFILT_WRITE`)
//! per descriptor; `udata` carries the registration's key. Edge is
//! `EV_CLEAR`, oneshot is `EV_DISPATCH` (the knote survives, disabled, so
//! re-arming is one changelist entry). A trigger change or a re-arm deletes
//! and re-adds the filter in the same changelist, because kernels keep an
//! existing knote's `EV_CLEAR`/`EV_DISPATCH` and a fresh knote re-checks
//! readiness. See [`translate::change_entries`].
//!
//! The batch and the wait normally go in **one** `kevent` call, *without*
//! `EV_RECEIPT`: every kernel (FreeBSD, XNU, OpenBSD and NetBSD alike)
//! answers a changelist that produced any `EV_ERROR` entry — and with
//! `EV_RECEIPT`, every change produces one — by returning those entries
//! without collecting events or waiting. Without it, a failing change still
//! comes back as an `EV_ERROR` entry as long as the eventlist has room, the
//! rest of the changelist still applies, and the call does not block, which
//! is what the backend contract asks of a rejected change. So:
//!
//! - the eventlist is never shorter than the changelist (a kernel that runs
//!   out of room for an error fails the whole call half-way);
//! - a changelist longer than the room for events is submitted with
//!   `EV_RECEIPT` in a call that returns at once, and a second call waits;
//! - when the only `EV_ERROR` entries were deletes of closed descriptors
//!   (`EBADF`, `ENOENT`: closing a descriptor removes its knotes, so these
//!   are not rejections), the kernel collected nothing and a second call
//!   waits. Forgetting a descriptor, closing it, then waiting costs two
//!   `kevent` calls for that wait.
//!
//! `EV_ERROR` entries of `EV_DELETE`s are told from those of the `EV_ADD`
//! that may follow for the same filter by their `udata`, a value no
//! registration has (FreeBSD and OpenBSD overwrite an error entry's flags).
//!
//! ## Oneshot across two filters
//!
//! A oneshot registration that watches both directions has two
//! `EV_DISPATCH` knotes; it must report once for the registration. If both
//! fire in the same wait, their entries merge into one event and both
//! knotes are disabled by the kernel. If only one fires, the backend puts an
//! `EV_DISABLE` of the other filter at the head of the next changelist,
//! which applies before the next wait collects anything (a disabled knote
//! is not delivered even if it was already queued), unless that batch
//! changes the registration anyway. Declaring it again deletes and re-adds
//! both filters.
//!
//! ## Readiness: BSD to Linux `poll(2)` bits
//!
//! [`Ready`](evmux_interest::Ready) uses Linux `poll` bits, and what must
//! match Linux is the [`Event`](evmux_interest::Event) the driver makes of
//! them (`SEMANTICS.md`, "What an event says"). The backend learns what a
//! descriptor is (`fstat`, once per registration) because pipes and sockets
//! differ on Linux:
//!
//! | descriptor, state | kqueue reports | mask | Linux `poll` | event |
//! |---|---|---|---|---|
//! | pipe read end, data | `READ` | `IN` | `IN` | readable |
//! | pipe read end, no writer | `READ`+`EV_EOF` | `HUP` (+`IN` if data left) | `HUP` (+`IN`) | readable, read_closed |
//! | pipe write end, space | `WRITE` | `OUT` | `OUT` | writable |
//! | pipe write end, no reader | `WRITE`+`EV_EOF` | `OUT\|ERR` | `OUT\|ERR` | writable, write_closed, error |
//! | socket, data / space | `READ` / `WRITE` | `IN` / `OUT` | same | readable / writable |
//! | socket, peer shut writing (FIN) | `READ`+`EV_EOF` | `IN\|RDHUP` | `IN\|RDHUP` | readable, read_closed |
//! | socket, peer closed (both sides shut) | both +`EV_EOF` | `IN\|RDHUP\|OUT\|HUP` | `IN\|RDHUP\|OUT\|HUP` | readable, read_closed, writable, write_closed |
//! | socket, reset / refused | both +`EV_EOF`, `fflags` = errno | adds `ERR` | adds `ERR` | … and error |
//!
//! What kqueue cannot express, and so differs from Linux:
//!
//! - **Own `shutdown(SHUT_WR)`**: BSD reports the write filter with
//!   `EV_EOF`, mapped to `OUT|HUP` (write_closed); Linux says only `OUT`.
//!   The backend cannot tell this from a peer that went away.
//! - **A pending socket error without end of file** (an ICMP error on a
//!   UDP socket): BSD reports plain readability (`IN`); Linux adds `ERR`.
//!   kqueue carries the error in `fflags` only together with `EV_EOF`.
//! - **A Unix socket whose peer closed with unread data**: Linux adds `ERR`
//!   (`ECONNRESET`); BSD reports a clean end of file.
//! - The raw masks differ where the event does not: a read-only
//!   registration of a closed socket gets `IN|RDHUP` here and
//!   `IN|RDHUP|HUP` on Linux, which map to the same event.
//!
//! A read entry without `EV_EOF` is `IN` even with `data` 0 (a listening
//! socket, an error pending): the kernel reports it because a read would
//! not block.
//!
//! ## Regular files
//!
//! kqueue accepts regular files, but its `EVFILT_READ` on one means "not
//! at end of file" and `EVFILT_WRITE` is not supported by every file
//! system, whereas the contract says regular files are always ready
//! (`IN|OUT`). So, as the epoll backend does, regular files never reach the
//! kernel: the backend classifies each new registration once
//! ([`translate::Classify`], `fstat` in the syscall layer) and keeps regular
//! files in a user-space list, reported every wait for level and once per
//! (re)arm for edge and oneshot; no wait blocks while such a report is due.
//!
//! ## Signals and process exits: native filters
//!
//! `add_signal` and `add_process` (`SEMANTICS.md`, "Signals", "Process
//! exits") use kqueue's own `EVFILT_SIGNAL` and `EVFILT_PROC`/`NOTE_EXIT`;
//! see [`source`] for the entries. The driver expects a descriptor to watch
//! for each source and there is none, so the backend hands it an *identity
//! descriptor*: a close-on-exec duplicate of the kqueue descriptor (the
//! lowest free number, as SEMANTICS asks; no path to open, no new kernel
//! object; a pipe would cost two descriptors and `/dev/null` may be out of
//! reach in a sandbox). The translator recognises the driver's
//! registration of that number and never hands it to the kernel: it binds
//! the source to the registration's key, and reports `IN` for the key when
//! the knote's entry comes back (and at every wait while something is
//! unread, as a level-triggered signalfd or pidfd would be). So the driver
//! is unchanged. The knote itself is added at `open_source`, in a `kevent`
//! call of its own, so that an unknown pid is `NotFound` from
//! `add_process`, and deleted at `close_source`; `read_source` makes no
//! syscall.
//!
//! Signals. `EVFILT_SIGNAL` records every attempt to deliver the signal to
//! the process, from any thread, but has lower precedence than the
//! signal's disposition, which still runs — by default most signals end
//! the process. evmux decides, rather than leaving it to the program: while
//! any source of this process watches a signal, the backend installs a
//! handler that does nothing (`sigaction`, `SA_RESTART`), process-wide, and
//! restores the saved action when the last such source closes. Not
//! blocking (as on Linux): kqueue never consumes a blocked signal, so it
//! would stay pending and run its disposition when unblocked, and queued
//! real-time signals would pile up. Not `SIG_IGN`: an ignored `SIGCHLD` is
//! not recorded and makes the kernel reap children, and `SIG_IGN` is
//! inherited across `execve`. Consequences, which differ from Linux:
//!
//! - There is no thread caveat: the signal is seen whichever thread it is
//!   delivered to. But the program's own handler for that signal does not
//!   run while it is watched (as on Linux, where it is blocked), and a
//!   program that calls `sigaction` for it meanwhile replaces evmux's
//!   handler (the filter still records the signal, but the program's
//!   disposition runs).
//! - The no-op handler runs in whichever thread takes the signal, so, as
//!   with any caught signal, a blocking call there that `SA_RESTART` does
//!   not restart fails with `EINTR`.
//! - `count` is the number of delivery attempts since the last read: a
//!   standard signal sent twice before the wait counts 2 (on Linux the
//!   second merges into the pending one: 1).
//!
//! Processes. `NOTE_EXIT` with `EV_ONESHOT` reports the exit once; the
//! entry's `data` is the status as `wait(2)` encodes it, decoded by
//! [`source::decode_wait_status`]. Nothing is reaped. The BSDs give the
//! status of any process we may watch, where Linux gives it only for our
//! unreaped child (otherwise `Unknown`). macOS gives it only with
//! `NOTE_EXITSTATUS`, which it refuses (`EACCES`) for a process that is
//! neither our child nor one we may send `SIGKILL`; the backend then
//! watches it without the status, which is `Unknown`
//! ([`source::SourcePlan::refused`]). Unverified, from the kernel sources:
//! a child that has exited but is not yet reaped is reported at once by
//! FreeBSD, but macOS and OpenBSD refuse to attach to a zombie (`ESRCH`,
//! so `NotFound`), where Linux reports the exit.
//!
//! ## Other portability notes
//!
//! - The waker is an `EVFILT_USER` event (`NOTE_TRIGGER`, `EV_CLEAR`:
//!   wakes coalesce) on macOS, FreeBSD and DragonFly, and a self-pipe on
//!   NetBSD and OpenBSD ([`consts::WakeMechanism`]). evmux's user events
//!   (`Poller::add_user`, after `EVFILT_USER`) live in the driver's mailbox
//!   and wake the wait through this waker, so on the first three they ride
//!   on `EVFILT_USER` already: one knote (identifier 0) for every waker and
//!   user event of a poller.
//! - `EV_DISPATCH` is missing from OpenBSD kernels of 2018 and before; there
//!   a oneshot registration behaves as level in the kernel and the driver
//!   drops the repeats, at the cost of wake-ups while it stays ready.
//! - A kqueue is not inherited across `fork`; the descriptor is made
//!   close-on-exec.
//! - Timeouts are exact to the nanosecond and clamped to one year
//!   ([`translate::MAX_TIMEOUT_SECS`]); the driver waits again for the rest.
//! - `udata` is pointer-sized: on a 32-bit system only the low 32 bits of a
//!   key travel through the kernel; entries are matched to registrations by
//!   descriptor and checked against those bits.
//! - Capabilities: native edge and oneshot, changes are syscalls, no
//!   descriptor limit.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod consts;
pub mod source;
pub mod translate;

#[cfg(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
#[allow(unsafe_code)]
mod sys;

#[cfg(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
pub use sys::KqueueBackend;

/// Whether this build has the kqueue backend (`KqueueBackend`): true on
/// macOS, FreeBSD, NetBSD, OpenBSD and DragonFly.
pub const AVAILABLE: bool = cfg!(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
));

/// Why the backend is missing from this build; empty where [`AVAILABLE`].
pub const UNAVAILABLE_REASON: &str = if AVAILABLE {
    ""
} else {
    "kqueue exists only on macOS and the BSDs"
};
