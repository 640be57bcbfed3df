//! Typed errors for bad input. Each names the token and the descriptor.

use std::fmt;
use std::io;
use std::os::fd::RawFd;

use crate::types::Token;

/// What a token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenUse {
    /// A registered descriptor.
    Descriptor(RawFd),
    /// The waker.
    Waker,
    /// A user event.
    User,
    /// A signal source (the signal number).
    Signal(i32),
    /// A process source (the pid).
    Process(i32),
    /// A pending timer.
    Timer,
}

impl fmt::Display for TokenUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenUse::Descriptor(fd) => write!(f, "descriptor {fd}"),
            TokenUse::Waker => f.write_str("the waker"),
            TokenUse::User => f.write_str("a user event"),
            TokenUse::Signal(sig) => write!(f, "signal {sig}"),
            TokenUse::Process(pid) => write!(f, "process {pid}"),
            TokenUse::Timer => f.write_str("a pending timer"),
        }
    }
}

/// Why a call on the interest set was refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The descriptor number is negative.
    NegativeFd {
        /// The token the caller asked for.
        token: Token,
        /// The number given.
        fd: RawFd,
    },
    /// The backend cannot watch descriptors this large (select's `FD_SETSIZE`).
    FdTooLarge {
        /// The token the caller asked for.
        token: Token,
        /// The number given.
        fd: RawFd,
        /// The backend's limit: numbers must be below it.
        limit: RawFd,
        /// The backend's name.
        backend: &'static str,
    },
    /// The token already names another descriptor (or the waker).
    TokenInUse {
        /// The token.
        token: Token,
        /// The descriptor it names now (`None`: the waker).
        registered_fd: Option<RawFd>,
        /// The descriptor the caller gave.
        fd: Option<RawFd>,
    },
    /// The descriptor is registered under another token (perhaps a closed
    /// descriptor that was never forgotten, whose number was reused).
    FdInUse {
        /// The descriptor number.
        fd: RawFd,
        /// The token it is registered under.
        registered: Token,
        /// The token the caller asked for.
        token: Token,
    },
    /// A timer was asked for a token that names a descriptor, the waker or
    /// a pending timer; or a descriptor or the waker was asked for a token
    /// that names a pending timer. Tokens are one namespace.
    TokenTaken {
        /// The token.
        token: Token,
        /// What the token names now.
        holder: TokenUse,
        /// What the caller wanted it for.
        wanted: TokenUse,
    },
    /// The signal is watched under another token already.
    SignalInUse {
        /// The token the caller asked for.
        token: Token,
        /// The signal.
        signal: i32,
        /// The token that watches it.
        holder: Token,
    },
    /// No registration (or, for [`Poller::cancel_timer`], no pending timer)
    /// has this token.
    ///
    /// [`Poller::cancel_timer`]: crate::Poller::cancel_timer
    UnknownToken {
        /// The token.
        token: Token,
    },
}

impl Error {
    /// The `io::ErrorKind` this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::NegativeFd { .. } | Error::FdTooLarge { .. } => io::ErrorKind::InvalidInput,
            Error::TokenInUse { .. }
            | Error::FdInUse { .. }
            | Error::TokenTaken { .. }
            | Error::SignalInUse { .. } => io::ErrorKind::AlreadyExists,
            Error::UnknownToken { .. } => io::ErrorKind::NotFound,
        }
    }

    /// The token the error is about.
    pub fn token(&self) -> Token {
        match *self {
            Error::NegativeFd { token, .. }
            | Error::FdTooLarge { token, .. }
            | Error::TokenInUse { token, .. }
            | Error::FdInUse { token, .. }
            | Error::TokenTaken { token, .. }
            | Error::SignalInUse { token, .. }
            | Error::UnknownToken { token } => token,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NegativeFd { token, fd } => {
                write!(f, "{token}: descriptor {fd} is negative")
            }
            Error::FdTooLarge {
                token,
                fd,
                limit,
                backend,
            } => write!(
                f,
                "{token}: descriptor {fd} is too large for the {backend} backend (must be below {limit})"
            ),
            Error::TokenInUse {
                token,
                registered_fd: Some(reg),
                fd,
            } => match fd {
                Some(fd) => write!(
                    f,
                    "{token} is already registered for descriptor {reg}, cannot use it for descriptor {fd}"
                ),
                None => write!(
                    f,
                    "{token} is already registered for descriptor {reg}, cannot use it for the waker"
                ),
            },
            Error::TokenInUse {
                token,
                registered_fd: None,
                fd,
            } => match fd {
                Some(fd) => write!(
                    f,
                    "{token} is the waker's token, cannot use it for descriptor {fd}"
                ),
                None => write!(f, "{token} is already the waker's token"),
            },
            Error::FdInUse {
                fd,
                registered,
                token,
            } => write!(
                f,
                "descriptor {fd} is already registered under {registered} (was it closed without being forgotten?), cannot register it under {token}"
            ),
            Error::TokenTaken {
                token,
                holder,
                wanted,
            } => write!(
                f,
                "{token} already names {holder}, cannot use it for {wanted}"
            ),
            Error::SignalInUse {
                token,
                signal,
                holder,
            } => write!(
                f,
                "{token}: signal {signal} is already watched under {holder}"
            ),
            Error::UnknownToken { token } => write!(f, "{token} is not registered"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_token_and_fd() {
        let e = Error::FdInUse {
            fd: 9,
            registered: Token(4),
            token: Token(5),
        };
        let s = e.to_string();
        assert!(s.contains("descriptor 9") && s.contains("token 4") && s.contains("token 5"));
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::AlreadyExists);
        assert!(io.to_string().contains("token 4"));
    }

    #[test]
    fn timer_clash_names_both_uses() {
        let e = Error::TokenTaken {
            token: Token(3),
            holder: TokenUse::Descriptor(7),
            wanted: TokenUse::Timer,
        };
        assert_eq!(
            e.to_string(),
            "token 3 already names descriptor 7, cannot use it for a pending timer"
        );
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(e.token(), Token(3));
    }
}
