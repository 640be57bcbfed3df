//! Unix domain sockets: [`UnixListener`], [`UnixStream`], [`UnixDatagram`].

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::net::Shutdown;
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;

use evmux_interest::{Backend, Interest, Poller};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

use crate::reserve::Reserve;
use crate::{Reg, source, stream_io, sys};

/// A non-blocking Unix stream listening socket.
///
/// As [`TcpListener`](crate::TcpListener): register it for
/// [`Interest::READABLE`], accept until `WouldBlock`; it keeps a spare
/// descriptor for `EMFILE` (see the [crate docs](crate#accepting-when-descriptors-run-out)).
/// The socket file is not removed when the listener is dropped.
pub struct UnixListener {
    inner: net::UnixListener,
    reg: Reg,
    reserve: Reserve,
}

source!(UnixListener, net::UnixListener, "`UnixListener`");

impl UnixListener {
    fn from_nonblocking(inner: net::UnixListener) -> UnixListener {
        UnixListener {
            inner,
            reg: Reg::default(),
            reserve: Reserve::new(),
        }
    }

    fn bind_unix(addr: &SocketAddrUnix) -> io::Result<UnixListener> {
        let fd = sys::socket(AddressFamily::UNIX, SocketType::STREAM)?;
        rustix::net::bind(&fd, addr)?;
        rustix::net::listen(&fd, sys::BACKLOG)?;
        Ok(UnixListener::from_nonblocking(net::UnixListener::from(fd)))
    }

    /// A listener bound to the socket file `path` (which must not exist).
    ///
    /// # Errors
    /// What `socket`, `bind` or `listen` report (`AddrInUse` if the file
    /// exists, …).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::bind_unix(&SocketAddrUnix::new(path.as_ref())?)
    }

    /// A listener bound to `addr` (a path or, on Linux, an abstract name).
    ///
    /// # Errors
    /// As [`bind`](UnixListener::bind); `InvalidInput` for an unnamed
    /// address.
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        UnixListener::bind_unix(&sys::unix_addr(addr)?)
    }

    /// Accepts a connection: a non-blocking [`UnixStream`] (not registered)
    /// and the peer's address (usually unnamed).
    ///
    /// # Errors
    /// As [`TcpListener::accept`](crate::TcpListener::accept).
    pub fn accept<B: Backend>(
        &self,
        poller: &mut Poller<B>,
    ) -> io::Result<(UnixStream, SocketAddr)> {
        self.reg.io(poller, Interest::READABLE, || {
            self.reserve
                .accept(|| sys::accept_unix(&self.inner))
                .map(|(s, a)| (UnixStream::from_nonblocking(s), a))
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
}

/// A non-blocking Unix stream socket.
///
/// Reads re-arm [`Interest::READABLE`] and writes re-arm
/// [`Interest::WRITABLE`] when they return `WouldBlock`; see the
/// [crate docs](crate). Writes never raise `SIGPIPE`.
pub struct UnixStream {
    inner: net::UnixStream,
    reg: Reg,
}

source!(UnixStream, net::UnixStream, "`UnixStream`");
stream_io!(UnixStream);

impl UnixStream {
    fn from_nonblocking(inner: net::UnixStream) -> UnixStream {
        UnixStream {
            inner,
            reg: Reg::default(),
        }
    }

    fn connect_unix(addr: &SocketAddrUnix) -> io::Result<UnixStream> {
        let fd = sys::socket(AddressFamily::UNIX, SocketType::STREAM)?;
        sys::connect_started(rustix::net::connect(&fd, addr))?;
        Ok(UnixStream::from_nonblocking(net::UnixStream::from(fd)))
    }

    /// Connects to the socket file `path`, without blocking.
    ///
    /// A Unix connect usually completes (or fails) at once; when the
    /// listener's backlog is full it fails with `WouldBlock` (`EAGAIN`)
    /// rather than waiting. Use
    /// [`finish_connect`](UnixStream::finish_connect) after writability as
    /// for TCP if in doubt.
    ///
    /// # Errors
    /// `NotFound` (no such file), `ConnectionRefused` (no listener),
    /// `WouldBlock` (backlog full), or what `socket` reports.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        UnixStream::connect_unix(&SocketAddrUnix::new(path.as_ref())?)
    }

    /// Connects to `addr` (a path or, on Linux, an abstract name).
    ///
    /// # Errors
    /// As [`connect`](UnixStream::connect); `InvalidInput` for an unnamed
    /// address.
    pub fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        UnixStream::connect_unix(&sys::unix_addr(addr)?)
    }

    /// A connected pair of streams.
    ///
    /// # Errors
    /// What `socketpair` reports.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = sys::socketpair(SocketType::STREAM)?;
        Ok((
            UnixStream::from_nonblocking(net::UnixStream::from(a)),
            UnixStream::from_nonblocking(net::UnixStream::from(b)),
        ))
    }

    /// The outcome of a connect once the stream was reported writable; see
    /// [`TcpStream::finish_connect`](crate::TcpStream::finish_connect).
    ///
    /// # Errors
    /// The connect's failure, `WouldBlock` while in progress.
    pub fn finish_connect(&self) -> io::Result<()> {
        crate::tcp::finish_connect(self.take_error()?, self.inner.peer_addr().map(drop))
    }

    /// Reads into `buf`. `Ok(0)` is end of file (or an empty `buf`).
    ///
    /// # Errors
    /// `WouldBlock` (re-arming [`Interest::READABLE`]), or what `read`
    /// reports.
    pub fn read<B: Backend>(&self, poller: &mut Poller<B>, buf: &mut [u8]) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::READABLE, || (&self.inner).read(buf))
    }

    /// Reads into several buffers (`readv`).
    ///
    /// # Errors
    /// As [`read`](UnixStream::read).
    pub fn read_vectored<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> io::Result<usize> {
        self.reg.io(poller, Interest::READABLE, || {
            (&self.inner).read_vectored(bufs)
        })
    }

    /// Writes from `buf`; may write less than all of it.
    ///
    /// # Errors
    /// `WouldBlock` (re-arming [`Interest::WRITABLE`]), or what `send`
    /// reports (`BrokenPipe` once the peer is gone, …).
    pub fn write<B: Backend>(&self, poller: &mut Poller<B>, buf: &[u8]) -> io::Result<usize> {
        self.reg.io(poller, Interest::WRITABLE, || self.send(buf))
    }

    /// Writes from several buffers.
    ///
    /// # Errors
    /// As [`write`](UnixStream::write).
    pub fn write_vectored<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::WRITABLE, || self.send_vectored(bufs))
    }

    #[cfg(not(target_vendor = "apple"))]
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        sys::send_nosignal(&self.inner, buf)
    }

    #[cfg(target_vendor = "apple")]
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut &self.inner, buf)
    }

    #[cfg(not(target_vendor = "apple"))]
    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::sendmsg_nosignal(&self.inner, bufs)
    }

    #[cfg(target_vendor = "apple")]
    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        io::Write::write_vectored(&mut &self.inner, bufs)
    }

    /// Shuts down the read side, the write side (the peer reads end of
    /// file) or both.
    ///
    /// # Errors
    /// What `shutdown` reports.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// The local address (usually unnamed for a connecting stream).
    ///
    /// # Errors
    /// What `getsockname` reports.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The peer's address.
    ///
    /// # Errors
    /// What `getpeername` reports.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// A non-blocking Unix datagram socket.
///
/// `recv*` re-arm [`Interest::READABLE`] and `send*` re-arm
/// [`Interest::WRITABLE`] when they return `WouldBlock`; see the
/// [crate docs](crate).
pub struct UnixDatagram {
    inner: net::UnixDatagram,
    reg: Reg,
}

source!(UnixDatagram, net::UnixDatagram, "`UnixDatagram`");

impl UnixDatagram {
    fn from_nonblocking(inner: net::UnixDatagram) -> UnixDatagram {
        UnixDatagram {
            inner,
            reg: Reg::default(),
        }
    }

    /// A socket bound to the socket file `path`.
    ///
    /// # Errors
    /// What `socket` or `bind` report.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let fd = sys::socket(AddressFamily::UNIX, SocketType::DGRAM)?;
        rustix::net::bind(&fd, &SocketAddrUnix::new(path.as_ref())?)?;
        Ok(UnixDatagram::from_nonblocking(net::UnixDatagram::from(fd)))
    }

    /// A socket bound to no address (it can send, and receive replies only
    /// once connected or through [`pair`](UnixDatagram::pair)).
    ///
    /// # Errors
    /// What `socket` reports.
    pub fn unbound() -> io::Result<UnixDatagram> {
        let fd = sys::socket(AddressFamily::UNIX, SocketType::DGRAM)?;
        Ok(UnixDatagram::from_nonblocking(net::UnixDatagram::from(fd)))
    }

    /// A connected pair of sockets.
    ///
    /// # Errors
    /// What `socketpair` reports.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = sys::socketpair(SocketType::DGRAM)?;
        Ok((
            UnixDatagram::from_nonblocking(net::UnixDatagram::from(a)),
            UnixDatagram::from_nonblocking(net::UnixDatagram::from(b)),
        ))
    }

    /// Sets the default destination and only receives from it.
    ///
    /// # Errors
    /// What `connect` reports (`ConnectionRefused` if nothing is bound at
    /// `path`).
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.inner.connect(path)
    }

    /// Sends a datagram to the connected peer.
    ///
    /// # Errors
    /// `WouldBlock` when the peer's queue is full (re-arming
    /// [`Interest::WRITABLE`]); `ConnectionRefused` once the peer is
    /// closed; what `send` reports.
    pub fn send<B: Backend>(&self, poller: &mut Poller<B>, buf: &[u8]) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::WRITABLE, || self.inner.send(buf))
    }

    /// Sends a datagram to the socket bound at `path`.
    ///
    /// # Errors
    /// As [`send`](UnixDatagram::send).
    pub fn send_to<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        buf: &[u8],
        path: impl AsRef<Path>,
    ) -> io::Result<usize> {
        let path = path.as_ref();
        self.reg
            .io(poller, Interest::WRITABLE, || self.inner.send_to(buf, path))
    }

    /// Receives a datagram (a longer one is truncated to `buf`).
    ///
    /// After [`shutdown`](UnixDatagram::shutdown)`(Read)`, Linux reports
    /// the socket readable with `read_closed` from then on while `recv`
    /// answers `WouldBlock`: drop the readable interest at that point, or a
    /// level registration keeps reporting it.
    ///
    /// # Errors
    /// `WouldBlock` (re-arming [`Interest::READABLE`]); what `recv`
    /// reports.
    pub fn recv<B: Backend>(&self, poller: &mut Poller<B>, buf: &mut [u8]) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::READABLE, || self.inner.recv(buf))
    }

    /// Receives a datagram and its sender's address.
    ///
    /// # Errors
    /// As [`recv`](UnixDatagram::recv).
    pub fn recv_from<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        self.reg
            .io(poller, Interest::READABLE, || self.inner.recv_from(buf))
    }

    /// Shuts down the read side, the write side or both.
    ///
    /// # Errors
    /// What `shutdown` reports.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// The local address.
    ///
    /// # Errors
    /// What `getsockname` reports.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    /// `NotConnected` if the socket is not connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}
