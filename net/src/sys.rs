//! The few socket calls std does not make the way we need them (through
//! rustix, so without `unsafe`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{AddressFamily, SocketType};

/// Reads and clears `SO_ERROR`.
pub(crate) fn take_error(fd: impl AsFd) -> io::Result<Option<io::Error>> {
    match rustix::net::sockopt::socket_error(fd)? {
        Ok(()) => Ok(None),
        Err(errno) => Ok(Some(io::Error::from_raw_os_error(errno.raw_os_error()))),
    }
}

/// A new socket, non-blocking and close-on-exec, in one call where the OS
/// allows it.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn socket(family: AddressFamily, ty: SocketType) -> io::Result<OwnedFd> {
    use rustix::net::SocketFlags;
    Ok(rustix::net::socket_with(
        family,
        ty,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A new socket, non-blocking and close-on-exec.
#[cfg(target_vendor = "apple")]
pub(crate) fn socket(family: AddressFamily, ty: SocketType) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket(family, ty, None)?;
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    rustix::io::ioctl_fionbio(&fd, true)?;
    Ok(fd)
}

/// `connect`, where "in progress" (and `EINTR`, after which a connect goes
/// on in the background) is success: the outcome comes with writability.
pub(crate) fn connect_started(result: rustix::io::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Accepts one connection from a TCP listener, non-blocking and
/// close-on-exec, with its peer's address.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn accept_tcp(
    listener: &std::net::TcpListener,
) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
    use rustix::net::SocketFlags;
    let (fd, addr) =
        rustix::net::acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let stream = std::net::TcpStream::from(fd);
    let addr = match addr.map(std::net::SocketAddr::try_from) {
        Some(Ok(a)) => a,
        // The kernel always gives an inet peer address for TCP; if it did
        // not, ask again.
        _ => stream.peer_addr()?,
    };
    Ok((stream, addr))
}

/// Accepts one connection from a TCP listener, non-blocking.
#[cfg(target_vendor = "apple")]
pub(crate) fn accept_tcp(
    listener: &std::net::TcpListener,
) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
    let (stream, addr) = listener.accept()?;
    stream.set_nonblocking(true)?;
    Ok((stream, addr))
}

/// Accepts one connection from a Unix listener, non-blocking.
pub(crate) fn accept_unix(
    listener: &std::os::unix::net::UnixListener,
) -> io::Result<(
    std::os::unix::net::UnixStream,
    std::os::unix::net::SocketAddr,
)> {
    let (stream, addr) = listener.accept()?;
    stream.set_nonblocking(true)?;
    Ok((stream, addr))
}

/// Whether `e` says the process or the system is out of descriptors.
pub(crate) fn is_fd_exhaustion(e: &io::Error) -> bool {
    let n = e.raw_os_error();
    n == Some(rustix::io::Errno::MFILE.raw_os_error())
        || n == Some(rustix::io::Errno::NFILE.raw_os_error())
}

/// Whether `e` is a connection that went away before `accept` got it.
pub(crate) fn is_aborted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionAborted || e.kind() == io::ErrorKind::Interrupted
}

/// The listen backlog (the kernel caps it at `net.core.somaxconn`).
pub(crate) const BACKLOG: i32 = 1024;

/// A connected pair of Unix sockets, non-blocking and close-on-exec.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn socketpair(ty: SocketType) -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::SocketFlags;
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        ty,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A connected pair of Unix sockets, non-blocking and close-on-exec.
#[cfg(target_vendor = "apple")]
pub(crate) fn socketpair(ty: SocketType) -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        ty,
        rustix::net::SocketFlags::empty(),
        None,
    )?;
    for fd in [&a, &b] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        rustix::io::ioctl_fionbio(fd, true)?;
    }
    Ok((a, b))
}

/// The kernel form of a Unix socket address: a path, or (Linux) an
/// abstract name.
pub(crate) fn unix_addr(
    addr: &std::os::unix::net::SocketAddr,
) -> io::Result<rustix::net::SocketAddrUnix> {
    if let Some(path) = addr.as_pathname() {
        return Ok(rustix::net::SocketAddrUnix::new(path)?);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        if let Some(name) = addr.as_abstract_name() {
            return Ok(rustix::net::SocketAddrUnix::new_abstract_name(name)?);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "an unnamed Unix socket address cannot be bound or connected to",
    ))
}

/// Sends on a stream socket without raising `SIGPIPE`.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn send_nosignal(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        fd,
        buf,
        rustix::net::SendFlags::NOSIGNAL,
    )?)
}

/// Sends several buffers on a stream socket without raising `SIGPIPE`.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn sendmsg_nosignal(fd: impl AsFd, bufs: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    Ok(rustix::net::sendmsg(
        fd,
        bufs,
        &mut rustix::net::SendAncillaryBuffer::default(),
        rustix::net::SendFlags::NOSIGNAL,
    )?)
}
