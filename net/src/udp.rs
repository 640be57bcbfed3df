//! UDP: [`UdpSocket`].

use std::io;
use std::net::{self, SocketAddr};

use evmux_interest::{Backend, Interest, Poller};
use rustix::net::{AddressFamily, SocketType};

use crate::{Reg, source, sys};

/// A non-blocking UDP socket.
///
/// `recv*`/`peek*` re-arm [`Interest::READABLE`] and `send*` re-arm
/// [`Interest::WRITABLE`] when they return `WouldBlock`; see the
/// [crate docs](crate). On a connected socket, an ICMP "port unreachable"
/// answer to an earlier datagram becomes a pending error: the socket turns
/// readable with the error flag set and the next `recv` (or
/// [`take_error`](UdpSocket::take_error)) returns `ConnectionRefused`.
pub struct UdpSocket {
    inner: net::UdpSocket,
    reg: Reg,
}

source!(UdpSocket, net::UdpSocket, "`UdpSocket`");

impl UdpSocket {
    fn from_nonblocking(inner: net::UdpSocket) -> UdpSocket {
        UdpSocket {
            inner,
            reg: Reg::default(),
        }
    }

    /// A socket bound to `addr`, in non-blocking mode. Port 0 picks a free
    /// port.
    ///
    /// # Errors
    /// What `socket` or `bind` report.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let fd = sys::socket(family, SocketType::DGRAM)?;
        rustix::net::bind(&fd, &addr)?;
        Ok(UdpSocket::from_nonblocking(net::UdpSocket::from(fd)))
    }

    /// Sets the default destination and only receives from it.
    ///
    /// # Errors
    /// What `connect` reports.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.inner.connect(addr)
    }

    /// Sends a datagram to the connected peer.
    ///
    /// # Errors
    /// `WouldBlock` (re-arming [`Interest::WRITABLE`]); `ConnectionRefused`
    /// if an earlier datagram was refused; what `send` reports.
    pub fn send<B: Backend>(&self, poller: &mut Poller<B>, buf: &[u8]) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::WRITABLE, || self.inner.send(buf))
    }

    /// Sends a datagram to `target`.
    ///
    /// # Errors
    /// As [`send`](UdpSocket::send).
    pub fn send_to<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        buf: &[u8],
        target: SocketAddr,
    ) -> io::Result<usize> {
        self.reg.io(poller, Interest::WRITABLE, || {
            self.inner.send_to(buf, target)
        })
    }

    /// Receives a datagram from the connected peer (a longer one is
    /// truncated to `buf`).
    ///
    /// # Errors
    /// `WouldBlock` (re-arming [`Interest::READABLE`]);
    /// `ConnectionRefused` after an ICMP port unreachable; what `recv`
    /// reports.
    pub fn recv<B: Backend>(&self, poller: &mut Poller<B>, buf: &mut [u8]) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::READABLE, || self.inner.recv(buf))
    }

    /// Receives a datagram and its sender's address.
    ///
    /// # Errors
    /// As [`recv`](UdpSocket::recv).
    pub fn recv_from<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        self.reg
            .io(poller, Interest::READABLE, || self.inner.recv_from(buf))
    }

    /// Receives a datagram without consuming it.
    ///
    /// # Errors
    /// As [`recv`](UdpSocket::recv).
    pub fn peek<B: Backend>(&self, poller: &mut Poller<B>, buf: &mut [u8]) -> io::Result<usize> {
        self.reg
            .io(poller, Interest::READABLE, || self.inner.peek(buf))
    }

    /// Receives a datagram and its sender's address without consuming it.
    ///
    /// # Errors
    /// As [`recv`](UdpSocket::recv).
    pub fn peek_from<B: Backend>(
        &self,
        poller: &mut Poller<B>,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        self.reg
            .io(poller, Interest::READABLE, || self.inner.peek_from(buf))
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

    /// Sets `SO_BROADCAST`.
    ///
    /// # Errors
    /// What `setsockopt` reports.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.set_broadcast(on)
    }

    /// Sets `IP_TTL`.
    ///
    /// # Errors
    /// What `setsockopt` reports.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }
}
