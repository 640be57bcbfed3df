//! TCP: [`TcpListener`] and [`TcpStream`].

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{self, Shutdown, SocketAddr};

use evmux_interest::{Backend, Interest, Poller};
use rustix::net::{AddressFamily, SocketType};

use crate::reserve::Reserve;
use crate::{Reg, source, stream_io, sys};

fn family(addr: &SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    }
}

/// A non-blocking TCP listening socket.
///
/// Register it for [`Interest::READABLE`]; on an event, call
/// [`accept`](TcpListener::accept) until it returns `WouldBlock`. The
/// listener keeps a spare descriptor so that running out of descriptors
/// does not wedge it (see the [crate docs](crate#accepting-when-descriptors-run-out)).
pub struct TcpListener {
    inner: net::TcpListener,
    reg: Reg,
    reserve: Reserve,
}

source!(TcpListener, net::TcpListener, "`TcpListener`");

impl TcpListener {
    fn from_nonblocking(inner: net::TcpListener) -> TcpListener {
        TcpListener {
            inner,
            reg: Reg::default(),
            reserve: Reserve::new(),
        }
    }

    fn bind_with(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
        let fd = sys::socket(family(&addr), SocketType::STREAM)?;
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
        if reuse_port {
            rustix::net::sockopt::set_socket_reuseport(&fd, true)?;
        }
        rustix::net::bind(&fd, &addr)?;
        rustix::net::listen(&fd, sys::BACKLOG)?;
        Ok(TcpListener::from_nonblocking(net::TcpListener::from(fd)))
    }

    /// A listener bound to `addr` (with `SO_REUSEADDR`, as std does), in
    /// non-blocking mode. Port 0 picks a free port; see
    /// [`local_addr`](TcpListener::local_addr).
    ///
    /// # Errors
    /// What `socket`, `bind` or `listen` report (`EADDRINUSE`, …).
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind_with(addr, false)
    }

    /// As [`bind`](TcpListener::bind), with `SO_REUSEPORT` set: several
    /// listeners (one per thread, each with its own poller) may bind the
    /// same address, and Linux spreads incoming connections over them.
    ///
    /// # Errors
    /// As [`bind`](TcpListener::bind).
    pub fn bind_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind_with(addr, true)
    }

    /// Accepts a connection: a non-blocking [`TcpStream`] (not registered)
    /// and the peer's address.
    ///
    /// # Errors
    /// - `WouldBlock` when no connection is pending (the registration is
    ///   re-armed for [`Interest::READABLE`]);
    /// - `EMFILE`/`ENFILE`: descriptors ran out and one pending connection
    ///   was accepted and closed to keep the listener from spinning (see
    ///   the [crate docs](crate#accepting-when-descriptors-run-out)); call
    ///   `accept` again;
    /// - other errors as `accept4` reports them. `ECONNABORTED` and
    ///   `EINTR` are retried inside.
    pub fn accept<B: Backend>(
        &self,
        poller: &mut Poller<B>,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        self.reg.io(poller, Interest::READABLE, || {
            self.reserve
                .accept(|| sys::accept_tcp(&self.inner))
                .map(|(s, a)| (TcpStream::from_nonblocking(s), a))
        })
    }

    /// How many connections this listener accepted and closed at once
    /// because the process or the system ran out of descriptors.
    pub fn shed_count(&self) -> u64 {
        self.reserve.shed_count()
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    /// What `getsockname` reports.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Sets `IP_TTL` for the connections this listener accepts.
    ///
    /// # Errors
    /// What `setsockopt` reports.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }
}

/// A non-blocking TCP connection.
///
/// Reads re-arm [`Interest::READABLE`] and writes re-arm
/// [`Interest::WRITABLE`] when they return `WouldBlock`; see the
/// [crate docs](crate).
pub struct TcpStream {
    inner: net::TcpStream,
    reg: Reg,
}

source!(TcpStream, net::TcpStream, "`TcpStream`");
stream_io!(TcpStream);

impl TcpStream {
    pub(crate) fn from_nonblocking(inner: net::TcpStream) -> TcpStream {
        TcpStream {
            inner,
            reg: Reg::default(),
        }
    }

    /// Starts a non-blocking connection to `addr`.
    ///
    /// The stream is returned at once, usually before the connection is
    /// made. Register it for [`Interest::WRITABLE`]: when that is reported,
    /// [`finish_connect`](TcpStream::finish_connect) tells the outcome.
    ///
    /// # Errors
    /// What `socket` reports, or a `connect` failure the kernel knows at
    /// once (`ENETUNREACH`, …). A refused connection is usually reported
    /// later, through writability and `SO_ERROR`.
    pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let fd = sys::socket(family(&addr), SocketType::STREAM)?;
        sys::connect_started(rustix::net::connect(&fd, &addr))?;
        Ok(TcpStream::from_nonblocking(net::TcpStream::from(fd)))
    }

    /// The outcome of a connect, once the stream was reported writable:
    /// `Ok(())` connected; `Err(e)` failed, with the socket's pending error
    /// (`SO_ERROR`, which this clears: `ConnectionRefused` for a closed
    /// port); `WouldBlock` if the connect is still in progress.
    ///
    /// # Errors
    /// As above; or what `getsockopt`/`getpeername` report.
    pub fn finish_connect(&self) -> io::Result<()> {
        finish_connect(self.take_error()?, self.inner.peer_addr().map(drop))
    }

    /// Reads into `buf`. `Ok(0)` is end of file (or an empty `buf`). A
    /// read that fills less than `buf` (but not nothing) re-arms
    /// [`Interest::READABLE`] too: the socket was empty when it returned
    /// (the crate docs, "Short reads", say when that does not hold).
    ///
    /// # Errors
    /// `WouldBlock` (re-arming [`Interest::READABLE`]), or what `read`
    /// reports (`ConnectionReset`, …).
    pub fn read<B: Backend>(&self, poller: &mut Poller<B>, buf: &mut [u8]) -> io::Result<usize> {
        let asked = buf.len();
        let n = self
            .reg
            .io(poller, Interest::READABLE, || (&self.inner).read(buf))?;
        self.reg.short_read(poller, n, asked);
        Ok(n)
    }

    /// Reads into several buffers (`readv`).
    ///
    /// # Errors
    /// As [`read`](TcpStream::read).
    pub fn read_vectored<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> io::Result<usize> {
        let asked = bufs.iter().map(|b| b.len()).sum();
        let n = self.reg.io(poller, Interest::READABLE, || {
            (&self.inner).read_vectored(bufs)
        })?;
        self.reg.short_read(poller, n, asked);
        Ok(n)
    }

    /// Reads without consuming (`MSG_PEEK`).
    ///
    /// # Errors
    /// As [`read`](TcpStream::read).
    pub fn peek<B: Backend>(&self, poller: &mut Poller<B>, buf: &mut [u8]) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::READABLE, || self.inner.peek(buf))
    }

    /// Writes from `buf`; may write less than all of it.
    ///
    /// # Errors
    /// `WouldBlock` (re-arming [`Interest::WRITABLE`]), or what `send`
    /// reports (`BrokenPipe`, `ConnectionReset`, …). No `SIGPIPE` is
    /// raised.
    pub fn write<B: Backend>(&self, poller: &mut Poller<B>, buf: &[u8]) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::WRITABLE, || (&self.inner).write(buf))
    }

    /// Writes from several buffers (`writev`).
    ///
    /// # Errors
    /// As [`write`](TcpStream::write).
    pub fn write_vectored<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        self.reg.io(poller, Interest::WRITABLE, || {
            (&self.inner).write_vectored(bufs)
        })
    }

    /// Shuts down the read side, the write side (the peer reads end of
    /// file) or both.
    ///
    /// # Errors
    /// What `shutdown` reports (`NotConnected`, …).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// The peer's address.
    ///
    /// # Errors
    /// `NotConnected` while a connect is in progress or after it failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    ///
    /// # Errors
    /// What `getsockname` reports.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    ///
    /// # Errors
    /// What `setsockopt` reports.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    /// What `getsockopt` reports.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.nodelay()
    }

    /// Sets `IP_TTL`.
    ///
    /// # Errors
    /// What `setsockopt` reports.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }
}

/// The outcome of a connect from the pending error and `getpeername`.
pub(crate) fn finish_connect(pending: Option<io::Error>, peer: io::Result<()>) -> io::Result<()> {
    if let Some(e) = pending {
        return Err(e);
    }
    match peer {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the connect is still in progress",
        )),
        Err(e) => Err(e),
    }
}
