//! Non-blocking sockets as event sources for [`evmux_interest::Poller`].
//!
//! [`TcpListener`], [`TcpStream`], [`UdpSocket`], [`UnixListener`],
//! [`UnixStream`] and [`UnixDatagram`] wrap the standard library's socket
//! types in non-blocking mode. Each converts from and into its `std` type
//! (`From` both ways, `from_std`, `into_std`) and lends its descriptor
//! (`AsFd`, `AsRawFd`); the wrapper owns the socket.
//!
//! # The design: the poller goes into every I/O call
//!
//! Edge mode in evmux is defined by the driver, not the kernel (see
//! `SEMANTICS.md`): a reported direction stays disarmed until the program
//! tells the poller that an operation in that direction returned
//! `WouldBlock` ([`Poller::would_block`]). On a backend with native edges
//! (epoll) forgetting that call would only cost a filtered report; on the
//! emulating ones (poll, select, io_uring, the model) the direction would
//! never be watched again and the connection would hang.
//!
//! So these sources do it themselves. A source remembers the token it was
//! registered under, and every I/O method takes the poller:
//!
//! ```no_run
//! # use evmux_interest::{Poller, Token, Interest, Mode, Backend};
//! # use evmux_net::TcpStream;
//! # fn f<B: Backend>(poller: &mut Poller<B>, mut stream: TcpStream) -> std::io::Result<()> {
//! stream.register(poller, Token(7), Interest::READABLE, Mode::Edge)?;
//! // … after an event for Token(7):
//! let mut buf = [0u8; 4096];
//! loop {
//!     match stream.read(poller, &mut buf) {
//!         Ok(0) => break,                       // end of file
//!         Ok(n) => { /* use buf[..n] */ }
//!         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break, // re-armed
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! When an operation returns `WouldBlock`, the method has already called
//! `poller.would_block(token, direction)` (reads, `recv*`, `peek*` and
//! `accept` re-arm [`Interest::READABLE`]; writes and `send*` re-arm
//! [`Interest::WRITABLE`]). `EINTR` is retried inside. The program's only
//! duty in edge mode is the usual one: after an event, keep going until
//! `WouldBlock` (or re-declare the registration, which re-arms too). An
//! error other than `WouldBlock` (a UDP `ConnectionRefused`, say) does not
//! re-arm: keep going past it as well. Level and oneshot registrations
//! behave as usual; `would_block` is free for them.
//!
//! ## Short reads (TCP)
//!
//! A [`TcpStream::read`] (or `read_vectored`) that returns fewer bytes
//! than it was given room for, but more than none, re-arms
//! [`Interest::READABLE`] as `WouldBlock` does: Linux and the BSDs end a
//! TCP read early only when the receive queue is empty, and new data then
//! raises a new edge. So in edge mode (and for a registration with
//! [`Poller::track_readiness`]) a program may stop reading at a short read
//! and save the `read` that would only answer `EAGAIN`: one syscall per
//! request in a request/response server. mio promises this only after
//! `WouldBlock` (tokio-rs/mio#1611). Reading on to `WouldBlock` stays
//! correct too.
//!
//! Two exceptions. **End of stream**: when the peer's FIN arrived with
//! the data, a read returns the data short and the end of file is still
//! to be read, with no new edge to announce it. An event that reported
//! `read_closed` (or `error`) therefore means: read on until `Ok(0)` (or
//! `WouldBlock`), as tokio treats its closed states as final. If the FIN
//! arrives after the wait, it raises an edge of its own. Second, a read
//! ends early at TCP **urgent data** (`MSG_OOB`, with
//! `SO_OOBINLINE` off) even though data follows the mark. On a backend
//! with native edges (epoll, kqueue), a program that stops there hears of
//! the rest only when more data arrives. A program whose peers may send
//! urgent data should read on until `WouldBlock`. Emulated edges (poll,
//! select, io_uring) look at the socket again at the next wait and are not
//! affected. Unix stream sockets are not given the rule: a read ends early
//! there at a message carrying descriptors or credentials.
//!
//! The same code therefore works in every mode on every backend. A stream
//! used through the standard `Read`/`Write` traits is reached through
//! [`TcpStream::io`] / [`UnixStream::io`], which pair the stream with the
//! poller in an [`Io`] adaptor.
//!
//! Registration:
//!
//! - `register(&mut poller, token, interest, mode)` declares the interest
//!   ([`Poller::declare_interest`]) and remembers the token;
//! - `reregister(&mut poller, interest, mode)` declares again under the same
//!   token (changing the interest, and re-arming every direction);
//! - `deregister(&mut poller)` forgets the registration
//!   ([`Poller::forget`]).
//!
//! The poller does not own descriptors and a source does not hold the
//! poller, so **deregister before dropping** a registered source (the
//! contract is "forget before close"; a dropped, still-registered socket
//! keeps its number in the poller's table and later declarations of that
//! number are refused with `FdInUse`). A source used before it is
//! registered (or after it is deregistered) works the same, with no
//! re-arming to do.
//!
//! # Connecting
//!
//! [`TcpStream::connect`] and [`UnixStream::connect`] start a non-blocking
//! connect. Register the stream for [`Interest::WRITABLE`]; when it is
//! reported, [`TcpStream::finish_connect`] says how it went: `Ok(())`
//! connected, `Err(e)` the connection failed (`SO_ERROR`, e.g.
//! `ECONNREFUSED`; [`TcpStream::take_error`] reads the same), `WouldBlock`
//! still in progress.
//!
//! # Accepting when descriptors run out
//!
//! Each listener keeps one spare descriptor (`/dev/null`, opened when the
//! listener is made). When `accept` fails with `EMFILE` or `ENFILE`, the
//! listener closes the spare, accepts the pending connection into the freed
//! number, closes it at once (the peer sees its connection closed) and
//! reopens the spare; `accept` then returns the `EMFILE`/`ENFILE` error (or
//! `WouldBlock` if nothing was pending after all). So the backlog drains
//! instead of the listener staying readable forever, and a level-triggered
//! loop does not spin while descriptors are short; call `accept` again as
//! after any per-connection error. [`TcpListener::shed_count`] counts the
//! connections shed this way. `ECONNABORTED` (a connection reset before it
//! was accepted) is skipped inside `accept`.
//!
//! # HTTP
//!
//! [`http`] holds a minimal, allocation-free HTTP/1.1 request-head parser
//! and [`http::server`] a small keep-alive server loop over these sources
//! (used by `examples/http_server.rs` and the tests).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use evmux_interest::{Backend, Interest, Mode, Poller, Token};

pub mod http;
mod reserve;
mod sys;
mod tcp;
mod udp;
mod unix;

pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};

pub use evmux_interest;

/// What a source remembers about its registration: its token, if any.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reg {
    token: Option<Token>,
}

impl Reg {
    pub(crate) fn token(&self) -> Option<Token> {
        self.token
    }

    pub(crate) fn register<B: Backend>(
        &mut self,
        fd: BorrowedFd<'_>,
        poller: &mut Poller<B>,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        if let Some(old) = self.token
            && old != token
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("the socket is registered under {old}; deregister it first"),
            ));
        }
        poller.declare_interest(fd.as_raw_fd(), token, interest, mode)?;
        self.token = Some(token);
        Ok(())
    }

    pub(crate) fn reregister<B: Backend>(
        &mut self,
        fd: BorrowedFd<'_>,
        poller: &mut Poller<B>,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        let token = self.token.ok_or_else(not_registered)?;
        poller.declare_interest(fd.as_raw_fd(), token, interest, mode)?;
        Ok(())
    }

    pub(crate) fn deregister<B: Backend>(&mut self, poller: &mut Poller<B>) -> io::Result<()> {
        let token = self.token.take().ok_or_else(not_registered)?;
        poller.forget(token)?;
        Ok(())
    }

    /// A TCP read that returned `n` of the `asked` bytes: when `0 < n <
    /// asked` the receive queue was empty when the read returned, so the
    /// read direction is re-armed as on `WouldBlock` (see the crate docs,
    /// "Short reads").
    #[inline]
    pub(crate) fn short_read<B: Backend>(&self, poller: &mut Poller<B>, n: usize, asked: usize) {
        if n > 0
            && n < asked
            && let Some(token) = self.token
        {
            // As in `io`: only `UnknownToken` can come back.
            let _ = poller.would_block(token, Interest::READABLE);
        }
    }

    /// Runs `op`, retrying `EINTR`; on `WouldBlock` re-arms `dir`.
    #[inline]
    pub(crate) fn io<B: Backend, T>(
        &self,
        poller: &mut Poller<B>,
        dir: Interest,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            let e = match op() {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // One errno → kind translation per failure.
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    if let Some(token) = self.token {
                        // Only `UnknownToken` can come back: the program
                        // forgot the token behind the source's back. The
                        // I/O result is still the right answer.
                        let _ = poller.would_block(token, dir);
                    }
                    return Err(e);
                }
                _ => return Err(e),
            }
        }
    }
}

fn not_registered() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "the socket is not registered with a poller",
    )
}

/// Generates the registration methods, the descriptor traits and the
/// conversions shared by every source.
macro_rules! source {
    ($ty:ident, $std:ty, $what:literal) => {
        impl $ty {
            /// Registers the socket with `poller` under `token`
            #[doc = concat!("([`Poller::declare_interest`](evmux_interest::Poller::declare_interest)) and remembers the token, so that the I/O methods can re-arm edge registrations. Calling it again with the same token declares again (re-arming every direction).")]
            ///
            /// # Errors
            /// What `declare_interest` refuses (a token in use, a
            /// descriptor too large for select, …), as an `io::Error`;
            /// `AlreadyExists` if the socket is registered under another
            /// token.
            pub fn register<B: evmux_interest::Backend>(
                &mut self,
                poller: &mut evmux_interest::Poller<B>,
                token: evmux_interest::Token,
                interest: evmux_interest::Interest,
                mode: evmux_interest::Mode,
            ) -> std::io::Result<()> {
                let fd = std::os::fd::AsFd::as_fd(&self.inner);
                self.reg.register(fd, poller, token, interest, mode)
            }

            /// Declares the registration again under its token, with a new
            /// interest and mode; every direction is re-armed.
            ///
            /// # Errors
            /// `NotFound` if the socket is not registered; otherwise as
            /// [`register`](Self::register).
            pub fn reregister<B: evmux_interest::Backend>(
                &mut self,
                poller: &mut evmux_interest::Poller<B>,
                interest: evmux_interest::Interest,
                mode: evmux_interest::Mode,
            ) -> std::io::Result<()> {
                let fd = std::os::fd::AsFd::as_fd(&self.inner);
                self.reg.reregister(fd, poller, interest, mode)
            }

            /// Forgets the registration
            /// ([`Poller::forget`](evmux_interest::Poller::forget)). Call
            /// it before dropping a registered socket.
            ///
            /// # Errors
            /// `NotFound` if the socket is not registered (or the poller no
            /// longer knows its token).
            pub fn deregister<B: evmux_interest::Backend>(
                &mut self,
                poller: &mut evmux_interest::Poller<B>,
            ) -> std::io::Result<()> {
                self.reg.deregister(poller)
            }

            /// The token the socket is registered under, if any.
            pub fn token(&self) -> Option<evmux_interest::Token> {
                self.reg.token()
            }

            #[doc = concat!("Wraps a standard ", $what, ", switching it to non-blocking mode.")]
            ///
            /// # Errors
            /// If the mode cannot be set.
            pub fn from_std(inner: $std) -> std::io::Result<$ty> {
                inner.set_nonblocking(true)?;
                Ok($ty::from_nonblocking(inner))
            }

            #[doc = concat!("The standard ", $what, ", still in non-blocking mode. Deregister first if it is registered.")]
            pub fn into_std(self) -> $std {
                self.inner
            }

            /// Reads and clears the pending socket error (`SO_ERROR`).
            ///
            /// # Errors
            /// If the option cannot be read.
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                crate::sys::take_error(&self.inner)
            }
        }

        impl From<$std> for $ty {
            #[doc = concat!("As [`", stringify!($ty), "::from_std`]. Switching a live socket to non-blocking mode cannot fail; if it did, this panics.")]
            fn from(inner: $std) -> $ty {
                $ty::from_std(inner).expect("FIONBIO on an open socket")
            }
        }

        impl From<$ty> for $std {
            fn from(s: $ty) -> $std {
                s.into_std()
            }
        }

        impl From<$ty> for std::os::fd::OwnedFd {
            fn from(s: $ty) -> std::os::fd::OwnedFd {
                s.inner.into()
            }
        }

        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.inner)
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.inner)
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("fd", &std::os::fd::AsRawFd::as_raw_fd(&self.inner))
                    .field("token", &self.reg.token())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use source;

/// A stream paired with its poller, for the standard `Read` and `Write`
/// traits: made by [`TcpStream::io`] and [`UnixStream::io`]. Every
/// `WouldBlock` re-arms the registration, as the stream's own methods do.
pub struct Io<'a, S, B: Backend> {
    pub(crate) stream: &'a S,
    pub(crate) poller: &'a mut Poller<B>,
}

impl<S: fmt::Debug, B: Backend> fmt::Debug for Io<'_, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("stream", self.stream)
            .finish_non_exhaustive()
    }
}

/// Generates `io()` and the `Read`/`Write` impls of [`Io`] for a stream.
macro_rules! stream_io {
    ($ty:ident) => {
        impl $ty {
            /// This stream with `poller`, as a `std::io::Read + Write`.
            pub fn io<'a, B: evmux_interest::Backend>(
                &'a self,
                poller: &'a mut evmux_interest::Poller<B>,
            ) -> crate::Io<'a, $ty, B> {
                crate::Io {
                    stream: self,
                    poller,
                }
            }
        }

        impl<B: evmux_interest::Backend> std::io::Read for crate::Io<'_, $ty, B> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.stream.read(self.poller, buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.stream.read_vectored(self.poller, bufs)
            }
        }

        impl<B: evmux_interest::Backend> std::io::Write for crate::Io<'_, $ty, B> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.stream.write(self.poller, buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.stream.write_vectored(self.poller, bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use stream_io;
