//! The kqueue constants this crate uses, with their value on each of the
//! five systems that have kqueue.
//!
//! Compiled on every OS: the translation in [`crate::translate`] is written
//! against these values and unit-tested on Linux. On a BSD or macOS build the
//! syscall layer checks at compile time that every value here equals the one
//! in that system's headers (through the `libc` crate), so a wrong entry in
//! this table fails the build there instead of misbehaving.
//!
//! ## What differs between the systems
//!
//! | constant | macOS | FreeBSD | DragonFly | NetBSD | OpenBSD |
//! |---|---|---|---|---|---|
//! | `EVFILT_READ` | −1 | −1 | −1 | **0** | −1 |
//! | `EVFILT_WRITE` | −2 | −2 | −2 | **1** | −2 |
//! | `EVFILT_PROC` | −5 | −5 | −5 | **4** | −5 |
//! | `EVFILT_SIGNAL` | −6 | −6 | −6 | **5** | −6 |
//! | `EVFILT_USER` | −10 | **−11** | **−9** | **8** | −10 |
//! | `NOTE_EXITSTATUS` | 0x0400_0000 | — | — | — | — |
//! | last signal number | 31 | **128** | 63 | 63 | 32 |
//! | type of `filter` / `flags` | `i16` / `u16` | `i16` / `u16` | `i16` / `u16` | **`u32` / `u32`** | `i16` / `u16` |
//!
//! NetBSD numbers its filters from 0 upwards and widens `filter` and `flags`
//! to 32 bits; the others count filters down from −1. `EVFILT_USER` is −10 on
//! macOS and OpenBSD, −11 on FreeBSD (−10 is `EVFILT_LIO` there) and −9 on
//! DragonFly. Sources: the systems' `sys/event.h` as mirrored by the `libc`
//! crate 0.2.191, cross-checked against FreeBSD's and XNU's headers.
//!
//! `EVFILT_PROC`, `EVFILT_SIGNAL` and `NOTE_EXITSTATUS` are from the same
//! `libc` release. The last signal number is not in `libc`; it is the last
//! number each kernel accepts: `NSIG − 1` on macOS (31), NetBSD (63) and
//! OpenBSD (32), FreeBSD's `_SIG_MAXSIG` (128; `SIGRTMAX` is 126), and 63
//! on DragonFly, whose signal table ends there (`NSIG` 64; not checked
//! against a DragonFly kernel). The kernels refuse a larger number with
//! `EINVAL` anyway; the table only lets the translation refuse it first.
//!
//! Every `EV_*` flag this crate uses has the same value on all five systems
//! (`EV_ADD` 0x1, `EV_DELETE` 0x2, `EV_ENABLE` 0x4, `EV_DISABLE` 0x8,
//! `EV_ONESHOT` 0x10, `EV_CLEAR` 0x20, `EV_RECEIPT` 0x40, `EV_DISPATCH` 0x80,
//! `EV_ERROR` 0x4000, `EV_EOF` 0x8000), and so have `NOTE_TRIGGER`
//! (0x0100_0000), `NOTE_EXIT` (0x8000_0000), `SIGKILL` (9), `SIGSTOP` (17,
//! not Linux's 19) and the errno values the translation names (`EPERM` 1,
//! `ESRCH` 3, `EACCES` 13, `EINVAL` 22). (`EV_SYSFLAGS`, which this crate does not use, differs:
//! 0xF000 on macOS, FreeBSD and NetBSD, 0xF800 on DragonFly and OpenBSD.)
//!
//! Whether a flag *works* is another matter: `EV_RECEIPT` and `EV_DISPATCH`
//! are missing from OpenBSD kernels of 2018 and earlier, where they are
//! silently ignored (the crate docs say what that does).

/// Add the event (re-adding an existing one modifies it).
pub const EV_ADD: u16 = 0x0001;
/// Delete the event.
pub const EV_DELETE: u16 = 0x0002;
/// Enable a disabled event.
pub const EV_ENABLE: u16 = 0x0004;
/// Disable the event without deleting it.
pub const EV_DISABLE: u16 = 0x0008;
/// Delete the event after its first delivery.
pub const EV_ONESHOT: u16 = 0x0010;
/// Reset the event's state after delivery: edge-triggered.
pub const EV_CLEAR: u16 = 0x0020;
/// Report the outcome of this change as an `EV_ERROR` entry (`data` 0 on
/// success) and do not collect events in this call.
pub const EV_RECEIPT: u16 = 0x0040;
/// Disable the event after each delivery (re-enable with `EV_ENABLE`).
pub const EV_DISPATCH: u16 = 0x0080;
/// In a returned entry: the change failed (`data` is the errno), or, with
/// `EV_RECEIPT`, its receipt (`data` 0).
pub const EV_ERROR: u16 = 0x4000;
/// In a returned entry: end of file (peer closed, write side shut, …).
pub const EV_EOF: u16 = 0x8000;

/// `EVFILT_USER`'s `fflags` bit that triggers the event.
pub const NOTE_TRIGGER: u32 = 0x0100_0000;

/// `EVFILT_PROC`'s `fflags` bit: watch for the process's exit.
pub const NOTE_EXIT: u32 = 0x8000_0000;

/// macOS only: with [`NOTE_EXIT`], put the exit status (as `wait(2)` encodes
/// it) in the returned entry's `data` and this bit in its `fflags`. The
/// kernel refuses it with `EACCES` for a process that is neither our child
/// nor one we may send `SIGKILL`. See [`Os::exit_status_fflag`].
pub const NOTE_EXITSTATUS: u32 = 0x0400_0000;

/// `SIGKILL` (the same on all five systems): cannot be caught.
pub const SIGKILL: i32 = 9;
/// `SIGSTOP` (the same on all five systems, and not Linux's 19): cannot be
/// caught.
pub const SIGSTOP: i32 = 17;

/// `EPERM` (the same on all five systems).
pub const EPERM: i32 = 1;
/// `ESRCH` (the same on all five systems): no such process.
pub const ESRCH: i32 = 3;
/// `EACCES` (the same on all five systems).
pub const EACCES: i32 = 13;
/// `EINVAL` (the same on all five systems).
pub const EINVAL: i32 = 22;

/// The filter numbers of one system. `i32` holds both NetBSD's unsigned
/// numbers and the others' negative ones.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FilterNumbers {
    /// `EVFILT_READ`.
    pub read: i32,
    /// `EVFILT_WRITE`.
    pub write: i32,
    /// `EVFILT_USER`.
    pub user: i32,
    /// `EVFILT_PROC`.
    pub proc: i32,
    /// `EVFILT_SIGNAL`.
    pub signal: i32,
}

/// How the backend wakes a blocked `kevent` from another thread on a system.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum WakeMechanism {
    /// An `EVFILT_USER` event triggered with `NOTE_TRIGGER`; `EV_CLEAR`
    /// makes any number of triggers before a wait coalesce into one report.
    User,
    /// A non-blocking self-pipe whose read end is watched with
    /// `EVFILT_READ`; the backend drains it when it reports.
    Pipe,
}

/// A system with kqueue.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Os {
    /// macOS (XNU).
    MacOs,
    /// FreeBSD.
    FreeBsd,
    /// DragonFly BSD.
    DragonFly,
    /// NetBSD.
    NetBsd,
    /// OpenBSD.
    OpenBsd,
}

impl Os {
    /// The five systems.
    pub const ALL: [Os; 5] = [
        Os::MacOs,
        Os::FreeBsd,
        Os::DragonFly,
        Os::NetBsd,
        Os::OpenBsd,
    ];

    /// The system this crate is compiled for, if it has kqueue.
    pub const NATIVE: Option<Os> = native();

    /// The filter numbers of this system.
    pub const fn filters(self) -> FilterNumbers {
        match self {
            Os::MacOs => FilterNumbers {
                read: -1,
                write: -2,
                user: -10,
                proc: -5,
                signal: -6,
            },
            Os::FreeBsd => FilterNumbers {
                read: -1,
                write: -2,
                user: -11,
                proc: -5,
                signal: -6,
            },
            Os::DragonFly => FilterNumbers {
                read: -1,
                write: -2,
                user: -9,
                proc: -5,
                signal: -6,
            },
            Os::NetBsd => FilterNumbers {
                read: 0,
                write: 1,
                user: 8,
                proc: 4,
                signal: 5,
            },
            Os::OpenBsd => FilterNumbers {
                read: -1,
                write: -2,
                user: -10,
                proc: -5,
                signal: -6,
            },
        }
    }

    /// The last signal number this system's kernel accepts (see the table
    /// above).
    pub const fn max_signal(self) -> i32 {
        match self {
            Os::MacOs => 31,
            Os::FreeBsd => 128,
            Os::DragonFly | Os::NetBsd => 63,
            Os::OpenBsd => 32,
        }
    }

    /// The `fflags` bit that asks `EVFILT_PROC` for the exit status along
    /// with [`NOTE_EXIT`], where one is needed: [`NOTE_EXITSTATUS`] on macOS.
    /// The BSDs always put the status in `data`.
    pub const fn exit_status_fflag(self) -> Option<u32> {
        match self {
            Os::MacOs => Some(NOTE_EXITSTATUS),
            Os::FreeBsd | Os::DragonFly | Os::NetBsd | Os::OpenBsd => None,
        }
    }

    /// How the backend wakes a wait on this system. `EVFILT_USER` where
    /// rustix exposes it and it is old enough to rely on (macOS, FreeBSD,
    /// DragonFly); a self-pipe on NetBSD (whose `EVFILT_USER` is recent) and
    /// OpenBSD (likewise).
    pub const fn wake_mechanism(self) -> WakeMechanism {
        match self {
            Os::MacOs | Os::FreeBsd | Os::DragonFly => WakeMechanism::User,
            Os::NetBsd | Os::OpenBsd => WakeMechanism::Pipe,
        }
    }
}

#[allow(unreachable_code)]
const fn native() -> Option<Os> {
    #[cfg(target_os = "macos")]
    return Some(Os::MacOs);
    #[cfg(target_os = "freebsd")]
    return Some(Os::FreeBsd);
    #[cfg(target_os = "dragonfly")]
    return Some(Os::DragonFly);
    #[cfg(target_os = "netbsd")]
    return Some(Os::NetBsd);
    #[cfg(target_os = "openbsd")]
    return Some(Os::OpenBsd);
    None
}
