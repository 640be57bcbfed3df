//! Every evmux backend behind one run-time choice.
//!
//! - [`DefaultBackend`]: the backend this OS gets when nothing is chosen
//!   (epoll on Linux, kqueue on macOS and the BSDs, poll elsewhere).
//! - [`BackendKind`]: `Auto, Epoll, Poll, Select, Uring, Superpoll, Kqueue`,
//!   chosen at run time; [`new_backend`] makes one, [`PollerExt::with_backend`]
//!   a whole [`Poller`].
//! - `EVMUX_BACKEND=<name>` overrides [`BackendKind::Auto`] for any program,
//!   the test suite included — libevent's `EVENT_NO*` variables, made
//!   simpler: one variable, one name. An unknown name is an error that lists
//!   the valid ones.
//!
//! `Auto` picks the default backend and never io_uring: io_uring is opt-in
//! (`EVMUX_BACKEND=uring` or `BackendKind::Uring`). If the kernel refuses
//! io_uring (`ENOSYS`, or `EPERM` from the `kernel.io_uring_disabled`
//! sysctl), choosing it explicitly is an error that says so, and
//! [`BackendKind::Auto`] is unaffected.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::io;
use std::str::FromStr;

pub use evmux_interest::{Backend, Poller};

/// A backend chosen at run time.
pub type AnyBackend = Box<dyn Backend + Send>;

/// The backend this OS gets by default.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub type DefaultBackend = evmux_epoll::EpollBackend;
/// The backend this OS gets by default.
#[cfg(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
pub type DefaultBackend = evmux_kqueue::KqueueBackend;
/// The backend this OS gets by default.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
pub type DefaultBackend = evmux_poll::PollBackend;

/// The name of the environment variable that overrides `Auto`.
pub const ENV_VAR: &str = "EVMUX_BACKEND";

/// Which kernel mechanism to use.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// `EVMUX_BACKEND` if set, else [`DefaultBackend`].
    Auto,
    /// epoll(7), Linux.
    Epoll,
    /// poll(2), everywhere.
    Poll,
    /// select(2), everywhere; descriptors below `FD_SETSIZE` only.
    Select,
    /// io_uring multishot poll, Linux ≥ 5.13.
    Uring,
    /// poll for busy descriptors, epoll for idle ones, Linux.
    Superpoll,
    /// kqueue(2), macOS and the BSDs.
    Kqueue,
}

/// An unknown backend name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownBackend {
    /// The name given.
    pub name: String,
}

impl fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.name()).collect();
        write!(
            f,
            "unknown backend `{}`; valid names: {}",
            self.name,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownBackend {}

impl From<UnknownBackend> for io::Error {
    fn from(e: UnknownBackend) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

impl BackendKind {
    /// Every kind, `Auto` first.
    pub const ALL: [BackendKind; 7] = [
        BackendKind::Auto,
        BackendKind::Epoll,
        BackendKind::Poll,
        BackendKind::Select,
        BackendKind::Uring,
        BackendKind::Superpoll,
        BackendKind::Kqueue,
    ];

    /// Every concrete kind (all but `Auto`).
    pub const CONCRETE: [BackendKind; 6] = [
        BackendKind::Epoll,
        BackendKind::Poll,
        BackendKind::Select,
        BackendKind::Uring,
        BackendKind::Superpoll,
        BackendKind::Kqueue,
    ];

    /// The lower-case name, as `EVMUX_BACKEND` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Epoll => "epoll",
            BackendKind::Poll => "poll",
            BackendKind::Select => "select",
            BackendKind::Uring => "uring",
            BackendKind::Superpoll => "superpoll",
            BackendKind::Kqueue => "kqueue",
        }
    }

    /// Parses a name (case-insensitive, surrounding spaces ignored).
    ///
    /// # Errors
    /// [`UnknownBackend`], whose message lists the valid names.
    pub fn from_name(name: &str) -> Result<BackendKind, UnknownBackend> {
        let n = name.trim().to_ascii_lowercase();
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == n)
            .ok_or_else(|| UnknownBackend {
                name: name.to_string(),
            })
    }

    /// The kind named by `EVMUX_BACKEND`, if it is set and not empty.
    ///
    /// # Errors
    /// [`UnknownBackend`] for a name that is not a backend.
    pub fn from_env() -> Result<Option<BackendKind>, UnknownBackend> {
        BackendKind::from_env_value(std::env::var(ENV_VAR).ok().as_deref())
    }

    /// [`from_env`](Self::from_env) for a given value of the variable.
    ///
    /// # Errors
    /// [`UnknownBackend`] for a name that is not a backend.
    pub fn from_env_value(value: Option<&str>) -> Result<Option<BackendKind>, UnknownBackend> {
        match value {
            Some(v) if !v.trim().is_empty() => BackendKind::from_name(v).map(Some),
            _ => Ok(None),
        }
    }

    /// What `Auto` means in this process: `EVMUX_BACKEND`, else the
    /// default. Concrete kinds resolve to themselves.
    ///
    /// # Errors
    /// [`UnknownBackend`] for a bad `EVMUX_BACKEND`.
    pub fn resolve(self) -> Result<BackendKind, UnknownBackend> {
        self.resolve_with(BackendKind::from_env()?)
    }

    /// [`resolve`](Self::resolve) given what the environment names.
    pub fn resolve_with(self, env: Option<BackendKind>) -> Result<BackendKind, UnknownBackend> {
        if self != BackendKind::Auto {
            return Ok(self);
        }
        Ok(match env {
            Some(BackendKind::Auto) | None => BackendKind::default_kind(),
            Some(k) => k,
        })
    }

    /// The kind [`DefaultBackend`] is.
    pub const fn default_kind() -> BackendKind {
        if cfg!(any(target_os = "linux", target_os = "android")) {
            BackendKind::Epoll
        } else if cfg!(any(
            target_os = "macos",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "openbsd",
            target_os = "dragonfly"
        )) {
            BackendKind::Kqueue
        } else {
            BackendKind::Poll
        }
    }

    /// Why this kind cannot exist on this OS, or `None` if it is compiled in
    /// (io_uring may still be refused by the kernel at run time).
    pub fn unavailable_reason(self) -> Option<&'static str> {
        let linux = cfg!(any(target_os = "linux", target_os = "android"));
        match self {
            BackendKind::Auto | BackendKind::Poll | BackendKind::Select => None,
            BackendKind::Epoll if !linux => Some("epoll exists only on Linux"),
            BackendKind::Uring if !linux => Some("io_uring exists only on Linux"),
            BackendKind::Superpoll if !linux => {
                Some("superpoll needs epoll, which exists only on Linux")
            }
            BackendKind::Kqueue if !evmux_kqueue::AVAILABLE => {
                Some(evmux_kqueue::UNAVAILABLE_REASON)
            }
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<BackendKind, UnknownBackend> {
        BackendKind::from_name(s)
    }
}

fn unsupported(kind: BackendKind, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("the {kind} backend is not available: {why}"),
    )
}

/// Makes a backend of `kind` (`Auto` resolved through `EVMUX_BACKEND`).
///
/// # Errors
/// - `InvalidInput` for a bad `EVMUX_BACKEND` (the message lists the valid
///   names);
/// - `Unsupported` for a kind this OS does not have;
/// - what the backend's constructor reports (e.g. io_uring refused by the
///   kernel, `EMFILE`).
pub fn new_backend(kind: BackendKind) -> io::Result<AnyBackend> {
    let kind = kind.resolve()?;
    if let Some(why) = kind.unavailable_reason() {
        return Err(unsupported(kind, why));
    }
    match kind {
        BackendKind::Auto => unreachable!("resolve() never returns Auto"),
        BackendKind::Poll => Ok(Box::new(evmux_poll::PollBackend::new()?)),
        BackendKind::Select => Ok(Box::new(evmux_select::SelectBackend::new()?)),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        BackendKind::Epoll => Ok(Box::new(evmux_epoll::EpollBackend::new()?)),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        BackendKind::Uring => Ok(Box::new(evmux_uring::UringBackend::new()?)),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        BackendKind::Superpoll => Ok(Box::new(evmux_superpoll::SuperpollBackend::new()?)),
        #[cfg(any(
            target_os = "macos",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "openbsd",
            target_os = "dragonfly"
        ))]
        BackendKind::Kqueue => Ok(Box::new(evmux_kqueue::KqueueBackend::new()?)),
        #[allow(unreachable_patterns)]
        other => Err(unsupported(other, "not compiled for this OS")),
    }
}

/// `Poller::with_backend(kind)`.
pub trait PollerExt: Sized {
    /// A poller over a backend of `kind` (`Auto`: `EVMUX_BACKEND`, else the
    /// default).
    ///
    /// # Errors
    /// As [`new_backend`].
    fn with_backend(kind: BackendKind) -> io::Result<Self>;
}

impl PollerExt for Poller<AnyBackend> {
    fn with_backend(kind: BackendKind) -> io::Result<Self> {
        Ok(Poller::new(new_backend(kind)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_lists_valid_names() {
        for k in BackendKind::ALL {
            assert_eq!(BackendKind::from_name(k.name()), Ok(k));
            assert_eq!(k.name().parse::<BackendKind>(), Ok(k));
        }
        assert_eq!(BackendKind::from_name(" EPoll "), Ok(BackendKind::Epoll));
        let e = BackendKind::from_name("kq").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`kq`"));
        for k in BackendKind::ALL {
            assert!(msg.contains(k.name()), "{msg}");
        }
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn auto_follows_the_environment_value() {
        let env = |v| BackendKind::from_env_value(v).unwrap();
        assert_eq!(env(None), None);
        assert_eq!(env(Some("")), None);
        assert_eq!(env(Some("poll")), Some(BackendKind::Poll));
        assert!(BackendKind::from_env_value(Some("nope")).is_err());
        let auto = BackendKind::Auto;
        assert_eq!(auto.resolve_with(None), Ok(BackendKind::default_kind()));
        assert_eq!(
            auto.resolve_with(Some(BackendKind::Auto)),
            Ok(BackendKind::default_kind())
        );
        assert_eq!(
            auto.resolve_with(Some(BackendKind::Select)),
            Ok(BackendKind::Select)
        );
        assert_eq!(
            BackendKind::Poll.resolve_with(Some(BackendKind::Select)),
            Ok(BackendKind::Poll)
        );
    }

    #[test]
    fn concrete_kinds_resolve_to_themselves() {
        for k in BackendKind::CONCRETE {
            assert_eq!(k.resolve(), Ok(k));
        }
    }
}
