//! The real world: the same operations on real descriptors.

use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use evmux_sys::fd as sysfd;
use evmux_sys::poll::{POLLIN, POLLOUT, POLLRDHUP, PollFd, poll};

use super::errno::{EBADF, EINVAL, EIO};
use super::{DrainOutcome, Handle, IoOutcome, Kind, Mask, NewKind, World};

/// The chunk size of fills and drains.
const CHUNK: usize = 64 * 1024;
/// `SO_RCVBUF` of TCP sockets (the kernel doubles it): the window stays
/// below one loopback segment (64 KiB).
const TCP_RCVBUF: usize = 32 * 1024;
/// `SO_SNDBUF` of TCP sockets (doubled by the kernel): more than three
/// times the largest window, so a late ACK of in-flight data never brings
/// `OUT` back after a fill.
const TCP_SNDBUF: usize = 256 * 1024;

#[derive(Debug)]
struct Slot {
    /// `None` once closed.
    fd: Option<OwnedFd>,
    /// The number, kept after close.
    raw: i32,
    kind: Kind,
}

/// Real descriptors: non-blocking pipes, Unix stream socket pairs, TCP
/// loopback connections and anonymous regular files, owned by the world and
/// closed when it drops.
///
/// TCP is made as predictable as loopback allows: Reno congestion control
/// (a pacing one such as BBR sends on a timer), `TCP_NODELAY`, fixed
/// `SO_RCVBUF`/`SO_SNDBUF` (no autotuning), and a drain that, at
/// `WouldBlock`, flushes the ACK the receiver may be delaying and reads on,
/// so the sender's remaining data (and FIN) arrive within the drain.
///
/// Creating descriptors panics if the kernel refuses (descriptor limit,
/// no temporary directory, no free port): a test environment problem, not
/// an outcome.
#[derive(Debug)]
pub struct RealWorld {
    slots: Vec<Slot>,
    children: Vec<std::process::Child>,
}

impl Drop for RealWorld {
    fn drop(&mut self) {
        // Reap every child (evmux never reaps: its process sources read the
        // status with WNOWAIT).
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

impl Default for RealWorld {
    fn default() -> RealWorld {
        RealWorld::new()
    }
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(EIO)
}

fn outcome_of(r: io::Result<usize>, asked: usize) -> IoOutcome {
    match r {
        Ok(0) if asked > 0 => IoOutcome::Eof,
        Ok(k) => IoOutcome::Done(k),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => IoOutcome::WouldBlock,
        Err(e) => IoOutcome::Err(errno_of(&e)),
    }
}

impl RealWorld {
    /// A new, empty world. Also sets `SIGPIPE` to "ignore" (process-wide),
    /// so writing to a pipe without reader reports `EPIPE`.
    pub fn new() -> RealWorld {
        // Failure is impossible for SIGPIPE; if it happened, a later EPIPE
        // would kill the process, which is loud enough.
        let _ = evmux_sys::signal::ignore_sigpipe();
        RealWorld {
            slots: Vec::new(),
            children: Vec::new(),
        }
    }

    /// How many handles were created so far (open or closed).
    pub fn handle_count(&self) -> usize {
        self.slots.len()
    }

    /// Borrows `h`'s descriptor, `None` if closed.
    ///
    /// # Panics
    /// If the handle was never created.
    pub fn fd(&self, h: Handle) -> Option<BorrowedFd<'_>> {
        self.slot(h).fd.as_ref().map(AsFd::as_fd)
    }

    fn slot(&self, h: Handle) -> &Slot {
        match self.slots.get(h) {
            Some(s) => s,
            None => panic!("handle {h} does not exist ({} created)", self.slots.len()),
        }
    }

    /// The open descriptor of `h` and its kind.
    fn open_fd(&self, h: Handle) -> Option<(BorrowedFd<'_>, Kind)> {
        let s = self.slot(h);
        s.fd.as_ref().map(|fd| (fd.as_fd(), s.kind))
    }

    fn create(kind: NewKind) -> Vec<(OwnedFd, Kind)> {
        let made = match kind {
            NewKind::Pipe => {
                sysfd::pipe().map(|(r, w)| vec![(r, Kind::PipeRead), (w, Kind::PipeWrite)])
            }
            NewKind::Pair => {
                sysfd::socketpair_stream().map(|(a, b)| vec![(a, Kind::Socket), (b, Kind::Socket)])
            }
            NewKind::Tcp => {
                RealWorld::tcp_pair().map(|(a, b)| vec![(a, Kind::Tcp), (b, Kind::Tcp)])
            }
            NewKind::File => sysfd::open_tmp_regular_file().map(|f| vec![(f, Kind::File)]),
        };
        match made {
            Ok(v) => v,
            Err(e) => panic!("cannot create {kind:?}: {e}"),
        }
    }

    /// A connected TCP pair over loopback: `[connecting, accepted]`, at the
    /// two lowest free numbers in that order (like every other kind).
    ///
    /// The connecting socket takes the lowest free number `C`, the listener
    /// the next, `L`, and the accepted socket a third; the accepted socket
    /// is then moved onto `L` by `dup3` (which closes the listener) and its
    /// first number is closed. Loopback completes the handshake inside
    /// `connect`, so the blocking connect and accept never wait.
    ///
    /// Both ends use Reno (no pacing: every segment leaves within the
    /// syscall that sends it), `TCP_NODELAY`, and fixed buffer sizes (no
    /// autotuning: a fill stays small, and the in-flight data a late ACK
    /// frees is far below a third of the send buffer, so writability after
    /// a fill does not change behind the test's back).
    fn tcp_pair() -> io::Result<(OwnedFd, OwnedFd)> {
        use rustix::net::{self as rn, sockopt};
        let configure = |s: &OwnedFd| -> io::Result<()> {
            sockopt::set_tcp_congestion(s, "reno")?;
            sockopt::set_tcp_nodelay(s, true)?;
            sockopt::set_socket_recv_buffer_size(s, TCP_RCVBUF)?;
            sockopt::set_socket_send_buffer_size(s, TCP_SNDBUF)?;
            // The connecting end closes first more often than not and
            // leaves its port in TIME_WAIT; reuse lets later listeners
            // bind such ports, so long runs do not exhaust the range.
            sockopt::set_socket_reuseaddr(s, true)?;
            Ok(())
        };
        let socket = || -> io::Result<OwnedFd> {
            let s = rn::socket_with(
                rn::AddressFamily::INET,
                rn::SocketType::STREAM,
                rn::SocketFlags::CLOEXEC,
                None,
            )?;
            configure(&s)?;
            Ok(s)
        };
        let client = socket()?;
        let listener = socket()?;
        rn::bind(&listener, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        rn::listen(&listener, 1)?;
        let addr = SocketAddrV4::try_from(rn::getsockname(&listener)?)?;
        rn::connect(&client, &addr)?;
        let accepted = rn::accept_with(&listener, rn::SocketFlags::CLOEXEC)?;
        // Inherited from the listener; set again in case a kernel does not.
        configure(&accepted)?;
        for s in [&client, &accepted] {
            sysfd::set_nonblocking(s, true)?;
        }
        let server = sysfd::dup_onto(accepted.as_fd(), listener)?;
        drop(accepted);
        Ok((client, server))
    }

    fn push(&mut self, fds: Vec<(OwnedFd, Kind)>) -> Vec<Handle> {
        fds.into_iter()
            .map(|(fd, kind)| {
                self.slots.push(Slot {
                    raw: fd.as_raw_fd(),
                    fd: Some(fd),
                    kind,
                });
                self.slots.len() - 1
            })
            .collect()
    }

    fn raw_write(fd: BorrowedFd<'_>, kind: Kind, buf: &[u8]) -> io::Result<usize> {
        if matches!(kind, Kind::Socket | Kind::Tcp) {
            sysfd::send(fd, buf)
        } else {
            sysfd::write(fd, buf)
        }
    }
}

impl World for RealWorld {
    fn open(&mut self, kind: NewKind) -> Vec<Handle> {
        let fds = RealWorld::create(kind);
        self.push(fds)
    }

    fn reuse(&mut self, h: Handle, kind: NewKind) -> Vec<Handle> {
        let Some(old) = self.slots.get_mut(h).and_then(|s| s.fd.take()) else {
            panic!("reuse({h}): the handle is not open");
        };
        let mut fds = RealWorld::create(kind);
        let (first, first_kind) = fds.remove(0);
        let moved = match sysfd::dup_onto(first.as_fd(), old) {
            Ok(fd) => fd,
            Err(e) => panic!("reuse({h}): dup3 failed: {e}"),
        };
        drop(first);
        fds.insert(0, (moved, first_kind));
        self.push(fds)
    }

    fn write(&mut self, h: Handle, n: usize) -> IoOutcome {
        let Some((fd, kind)) = self.open_fd(h) else {
            return IoOutcome::Err(EBADF);
        };
        let buf = vec![0u8; n];
        outcome_of(RealWorld::raw_write(fd, kind, &buf), 0)
    }

    fn read(&mut self, h: Handle, n: usize) -> IoOutcome {
        let Some((fd, _)) = self.open_fd(h) else {
            return IoOutcome::Err(EBADF);
        };
        let mut buf = vec![0u8; n];
        outcome_of(sysfd::read(fd, &mut buf), n)
    }

    fn fill(&mut self, h: Handle) -> IoOutcome {
        let Some((fd, kind)) = self.open_fd(h) else {
            return IoOutcome::Err(EBADF);
        };
        if kind == Kind::File {
            // A regular file never says WouldBlock: not performed.
            return IoOutcome::Err(EINVAL);
        }
        let buf = vec![0u8; CHUNK];
        loop {
            match RealWorld::raw_write(fd, kind, &buf) {
                Ok(0) => return IoOutcome::Err(EIO),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return IoOutcome::Done(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return IoOutcome::Err(errno_of(&e)),
            }
        }
    }

    fn drain(&mut self, h: Handle) -> DrainOutcome {
        let Some((fd, kind)) = self.open_fd(h) else {
            return DrainOutcome {
                got_data: false,
                end: IoOutcome::Err(EBADF),
            };
        };
        let mut buf = vec![0u8; CHUNK];
        let mut got_data = false;
        // TCP: at `WouldBlock`, send the ACK the receiver may be delaying
        // (`TCP_QUICKACK`) once, so that a sender waiting for it (its
        // congestion window full) sends the rest now, not when the
        // delayed-ACK timer fires; then read on.
        let mut poked = false;
        loop {
            match sysfd::read(fd, &mut buf) {
                Ok(0) => {
                    return DrainOutcome {
                        got_data,
                        end: IoOutcome::Eof,
                    };
                }
                Ok(_) => {
                    got_data = true;
                    poked = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && kind == Kind::Tcp && !poked => {
                    poked = true;
                    if let Err(e) = rustix::net::sockopt::set_tcp_quickack(fd, true) {
                        panic!("TCP_QUICKACK on {}: {e}", fd.as_raw_fd());
                    }
                }
                Err(e) => {
                    return DrainOutcome {
                        got_data,
                        end: outcome_of(Err(e), CHUNK),
                    };
                }
            }
        }
    }

    fn shutdown_write(&mut self, h: Handle) -> Result<(), i32> {
        let Some((fd, _)) = self.open_fd(h) else {
            return Err(EBADF);
        };
        sysfd::shutdown(fd, Shutdown::Write).map_err(|e| errno_of(&e))
    }

    fn close(&mut self, h: Handle) -> Result<(), i32> {
        let Some(fd) = self.slots.get_mut(h).and_then(|s| s.fd.take()) else {
            // Panics if `h` does not exist, EBADF if closed.
            let _ = self.slot(h);
            return Err(EBADF);
        };
        sysfd::close(fd).map_err(|e| errno_of(&e))
    }

    fn raw_fd(&self, h: Handle) -> i32 {
        self.slot(h).raw
    }

    fn is_open(&self, h: Handle) -> bool {
        self.slot(h).fd.is_some()
    }

    fn raise(&mut self, signal: i32) {
        // An unblocked signal would run its disposition (for most: end the
        // test process). Scenarios raise only watched signals; a backend
        // that failed to block one is a test failure, not a crash.
        let blocked = evmux_sys::signal::is_blocked(signal).expect("pthread_sigmask query");
        assert!(
            blocked,
            "signal {signal} is not blocked in this thread: no source watches it"
        );
        evmux_sys::signal::raise(signal).expect("raise(3) of a valid signal");
    }

    fn spawn(&mut self, code: i32) -> usize {
        let child = std::process::Command::new("sh")
            .args(["-c", &format!("exit {code}")])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawning sh");
        self.children.push(child);
        self.children.len() - 1
    }

    fn pid(&self, child: usize) -> i32 {
        self.children[child].id() as i32
    }

    fn kind(&self, h: Handle) -> Kind {
        self.slot(h).kind
    }

    fn mask(&self, h: Handle) -> Option<Mask> {
        let (fd, _) = self.open_fd(h)?;
        let mut fds = [PollFd::new(fd.as_raw_fd(), POLLIN | POLLOUT | POLLRDHUP)];
        loop {
            match poll(&mut fds, Some(Duration::ZERO)) {
                Ok(_) => return Some(Mask::from_revents(fds[0].revents)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("poll({}) failed: {e}", fd.as_raw_fd()),
            }
        }
    }
}
