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
//! | `EVFILT_USER` | −10 | **−11** | **−9** | **8** | −10 |
//! | type of `filter` / `flags` | `i16` / `u16` | `i16` / `u16` | `i16` / `u16` | **`u32` / `u32`** | `i16` / `u16` |
//!
//! NetBSD numbers its filters from 0 upwards and widens `filter` and `flags`
//! to 32 bits; the others count filters down from −1. `EVFILT_USER` is −10 on
//! macOS and OpenBSD, −11 on FreeBSD (−10 is `EVFILT_LIO` there) and −9 on
//! DragonFly. Sources: the systems' `sys/event.h` as mirrored by the `libc`
//! crate 0.2.191, cross-checked against FreeBSD's and XNU's headers.
//!
//! Every `EV_*` flag this crate uses has the same value on all five systems
//! (`EV_ADD` 0x1, `EV_DELETE` 0x2, `EV_ENABLE` 0x4, `EV_DISABLE` 0x8,
//! `EV_ONESHOT` 0x10, `EV_CLEAR` 0x20, `EV_RECEIPT` 0x40, `EV_DISPATCH` 0x80,
//! `EV_ERROR` 0x4000, `EV_EOF` 0x8000), and so has `NOTE_TRIGGER`
//! (0x0100_0000). (`EV_SYSFLAGS`, which this crate does not use, differs:
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
            },
            Os::FreeBsd => FilterNumbers {
                read: -1,
                write: -2,
                user: -11,
            },
            Os::DragonFly => FilterNumbers {
                read: -1,
                write: -2,
                user: -9,
            },
            Os::NetBsd => FilterNumbers {
                read: 0,
                write: 1,
                user: 8,
            },
            Os::OpenBsd => FilterNumbers {
                read: -1,
                write: -2,
                user: -10,
            },
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
