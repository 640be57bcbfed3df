//! Unix stream and datagram sockets on every backend, in level and edge
//! mode: connect, accept, read, write, end of file, half-close, errors.

mod common;

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use common::{Waiter, each, readable, socket_path, writable};
use evmux_interest::{Interest, Token};
use evmux_net::{UnixDatagram, UnixListener, UnixStream};

const L: Token = Token(1);
const C: Token = Token(2);
const S: Token = Token(3);

fn accept(w: &mut Waiter, l: &UnixListener) -> UnixStream {
    loop {
        match l.accept(&mut w.poller) {
            Ok((s, _)) => return s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                w.wait_for(L, readable);
            }
            Err(e) => panic!("{}: accept: {e}", w.name()),
        }
    }
}

#[test]
fn listener_connect_accept_read_write_eof_half_close() {
    each(|w, mode| {
        let path = socket_path("stream");
        let mut l = UnixListener::bind(&path).unwrap();
        assert_eq!(l.local_addr().unwrap().as_pathname(), Some(path.as_path()));
        l.register(&mut w.poller, L, Interest::READABLE, mode)
            .unwrap();
        let mut c = UnixStream::connect(&path).unwrap();
        c.register(&mut w.poller, C, Interest::BOTH, mode).unwrap();
        w.wait_for(C, writable);
        c.finish_connect().unwrap();
        assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
        let mut s = accept(w, &l);
        s.register(&mut w.poller, S, Interest::BOTH, mode).unwrap();
        common::converse(w, &c, &s);
        match l.accept(&mut w.poller) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("{}: {other:?}", w.name()),
        }
        c.deregister(&mut w.poller).unwrap();
        s.deregister(&mut w.poller).unwrap();
        l.deregister(&mut w.poller).unwrap();
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn pair_converses_and_bulk_transfers() {
    each(|w, mode| {
        let (mut c, mut s) = UnixStream::pair().unwrap();
        c.register(&mut w.poller, C, Interest::BOTH, mode).unwrap();
        s.register(&mut w.poller, S, Interest::BOTH, mode).unwrap();
        common::converse(w, &c, &s);
        c.deregister(&mut w.poller).unwrap();
        s.deregister(&mut w.poller).unwrap();

        let (mut c, mut s) = UnixStream::pair().unwrap();
        c.register(&mut w.poller, C, Interest::WRITABLE, mode)
            .unwrap();
        s.register(&mut w.poller, S, Interest::READABLE, mode)
            .unwrap();
        common::bulk(w, &c, &s, 8 << 20);
        c.deregister(&mut w.poller).unwrap();
        s.deregister(&mut w.poller).unwrap();
    });
}

#[test]
fn stream_errors() {
    each(|w, mode| {
        // No such file.
        let path = socket_path("missing");
        assert_eq!(
            UnixStream::connect(&path).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // A socket file with no listener behind it.
        drop(UnixListener::bind(&path).unwrap());
        assert_eq!(
            UnixStream::connect(&path).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        // A listener's file exists already.
        assert_eq!(
            UnixListener::bind(&path).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        std::fs::remove_file(&path).unwrap();

        // The peer goes away: hang-up, end of file, then EPIPE without
        // SIGPIPE.
        let (mut c, s) = UnixStream::pair().unwrap();
        c.register(&mut w.poller, C, Interest::READABLE, mode)
            .unwrap();
        drop(s);
        let ev = w.wait_for(C, |e| e.readable && e.read_closed);
        assert!(!ev.error, "{}: {ev:?}", w.name());
        let mut buf = [0u8; 4];
        assert_eq!(c.read(&mut w.poller, &mut buf).unwrap(), 0);
        let err = c.write(&mut w.poller, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{}: {err}", w.name());
        assert!(c.take_error().unwrap().is_none());
        c.deregister(&mut w.poller).unwrap();
    });
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_addresses() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    each(|w, mode| {
        let name = format!(
            "evmux-net-test-{}-{mode:?}-{}",
            std::process::id(),
            w.name()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let mut l = UnixListener::bind_addr(&addr).unwrap();
        l.register(&mut w.poller, L, Interest::READABLE, mode)
            .unwrap();
        let mut c = UnixStream::connect_addr(&addr).unwrap();
        c.register(&mut w.poller, C, Interest::BOTH, mode).unwrap();
        let mut s = accept(w, &l);
        s.register(&mut w.poller, S, Interest::BOTH, mode).unwrap();
        common::write_all(w, &c, b"abstract");
        assert_eq!(common::read_exact(w, &s, 8), b"abstract");
        for x in [&mut c, &mut s] {
            x.deregister(&mut w.poller).unwrap();
        }
        l.deregister(&mut w.poller).unwrap();
    });
}

/// Receives until `WouldBlock`.
fn recv_all(w: &mut Waiter, s: &UnixDatagram) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match s.recv(&mut w.poller, &mut buf) {
            Ok(n) => out.push(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("{}: recv: {e}", w.name()),
        }
    }
}

#[test]
fn datagram_send_recv_rearm_and_backpressure() {
    each(|w, mode| {
        let (mut a, mut b) = UnixDatagram::pair().unwrap();
        a.register(&mut w.poller, C, Interest::WRITABLE, mode)
            .unwrap();
        b.register(&mut w.poller, S, Interest::READABLE, mode)
            .unwrap();
        a.send(&mut w.poller, b"one").unwrap();
        a.send(&mut w.poller, b"two").unwrap();
        w.wait_for(S, readable);
        assert_eq!(recv_all(w, &b), vec![b"one".to_vec(), b"two".to_vec()]);
        w.discard(S);
        a.send(&mut w.poller, b"three").unwrap();
        w.wait_for(S, readable);
        assert_eq!(recv_all(w, &b), vec![b"three".to_vec()]);

        // Fill the receiver's queue: send blocks; draining it makes the
        // sender writable again (edge: re-armed by the WouldBlock).
        let mut sent = 0;
        loop {
            match a.send(&mut w.poller, &[7u8; 512]) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{}: {e}", w.name()),
            }
        }
        assert!(sent > 0);
        w.discard(C);
        let got = {
            let mut got = 0;
            while got < sent {
                got += recv_all(w, &b).len();
                if got < sent {
                    w.wait_for(S, readable);
                }
            }
            got
        };
        assert_eq!(got, sent);
        w.wait_for(C, writable);
        a.send(&mut w.poller, b"room again").unwrap();
        a.deregister(&mut w.poller).unwrap();
        b.deregister(&mut w.poller).unwrap();
    });
}

#[test]
fn datagram_shutdown_and_errors() {
    each(|w, mode| {
        // Shutting the read side: read_closed for good. (A non-blocking
        // datagram recv then answers WouldBlock, not 0, on Linux.)
        let (mut a, b) = UnixDatagram::pair().unwrap();
        a.register(&mut w.poller, C, Interest::READABLE, mode)
            .unwrap();
        a.shutdown(Shutdown::Read).unwrap();
        let ev = w.wait_for(C, |e| e.readable && e.read_closed);
        assert!(!ev.error, "{}: {ev:?}", w.name());
        let mut buf = [0u8; 8];
        match a.recv(&mut w.poller, &mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("{}: {other:?}", w.name()),
        }
        a.deregister(&mut w.poller).unwrap();

        // The peer closed: sending is refused.
        let mut b = b;
        b.register(&mut w.poller, S, Interest::WRITABLE, mode)
            .unwrap();
        drop(a);
        let err = b.send(&mut w.poller, b"gone?").unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "{}: {err}",
            w.name()
        );
        b.deregister(&mut w.poller).unwrap();

        // Bound sockets: send_to / recv_from by path.
        let (pa, pb) = (socket_path("dga"), socket_path("dgb"));
        let mut a = UnixDatagram::bind(&pa).unwrap();
        let b = UnixDatagram::bind(&pb).unwrap();
        a.register(&mut w.poller, C, Interest::READABLE, mode)
            .unwrap();
        let mut b = b;
        b.register(&mut w.poller, S, Interest::READABLE, mode)
            .unwrap();
        b.send_to(&mut w.poller, b"by path", &pa).unwrap();
        w.wait_for(C, readable);
        let (n, from) = a.recv_from(&mut w.poller, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"by path");
        assert_eq!(from.as_pathname(), Some(pb.as_path()));
        // Connected to a path, then the path's socket goes away.
        a.connect(&pb).unwrap();
        assert_eq!(a.peer_addr().unwrap().as_pathname(), Some(pb.as_path()));
        b.deregister(&mut w.poller).unwrap();
        drop(b);
        let err = a.send(&mut w.poller, b"x").unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "{}: {err}",
            w.name()
        );
        a.deregister(&mut w.poller).unwrap();
        // Unbound sender.
        let u = UnixDatagram::unbound().unwrap();
        assert!(u.local_addr().unwrap().is_unnamed());
        let c = UnixDatagram::bind(pb.with_extension("c")).unwrap();
        let to = c.local_addr().unwrap();
        u.send_to(&mut w.poller, b"u", to.as_pathname().unwrap())
            .unwrap();
        assert_eq!(c.recv(&mut w.poller, &mut buf).unwrap(), 1);
        std::fs::remove_file(&pa).unwrap();
        std::fs::remove_file(&pb).unwrap();
        std::fs::remove_file(pb.with_extension("c")).unwrap();
    });
}

#[test]
fn conversions_keep_the_socket() {
    let path = socket_path("conv");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let fd = l.as_raw_fd();
    let l = UnixListener::from(l);
    assert_eq!(l.as_raw_fd(), fd);
    let l: std::os::unix::net::UnixListener = l.into();
    assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let a = UnixStream::from_std(a).unwrap();
    assert_eq!(a.as_raw_fd(), fd);
    let a = a.into_std();
    let mut buf = [0u8; 1];
    assert_eq!(
        io::Read::read(&mut &a, &mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    let (d, _e) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let d = UnixDatagram::from(d);
    assert_eq!(
        d.into_std().recv(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    std::fs::remove_file(&path).unwrap();
}
