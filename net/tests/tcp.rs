//! TCP on every backend, in level and edge mode: connect, accept, read,
//! write, end of file, half-close, errors.

mod common;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use common::{Waiter, each, readable, writable};
use evmux_interest::{Interest, Mode, Token};
use evmux_net::{TcpListener, TcpStream};

const L: Token = Token(1);
const C: Token = Token(2);
const S: Token = Token(3);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn accept(w: &mut Waiter, l: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match l.accept(&mut w.poller) {
            Ok(pair) => return pair,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                w.wait_for(L, readable);
            }
            Err(e) => panic!("{}: accept: {e}", w.name()),
        }
    }
}

/// A listener, a connected client (`C`) and the accepted server side
/// (`S`), all registered.
fn connected(w: &mut Waiter, mode: Mode) -> (TcpListener, TcpStream, TcpStream) {
    let mut l = TcpListener::bind(localhost()).unwrap();
    l.register(&mut w.poller, L, Interest::READABLE, mode)
        .unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.register(&mut w.poller, C, Interest::BOTH, mode).unwrap();
    let ev = w.wait_for(C, writable);
    assert!(!ev.error, "{}: {ev:?}", w.name());
    c.finish_connect().unwrap();
    let (mut s, peer) = accept(w, &l);
    assert_eq!(peer, c.local_addr().unwrap());
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    s.register(&mut w.poller, S, Interest::BOTH, mode).unwrap();
    (l, c, s)
}

fn close(w: &mut Waiter, mut l: TcpListener, mut c: TcpStream, mut s: TcpStream) {
    c.deregister(&mut w.poller).unwrap();
    s.deregister(&mut w.poller).unwrap();
    l.deregister(&mut w.poller).unwrap();
    assert!(w.poller.is_empty());
}

#[test]
fn connect_accept_read_write_eof_half_close() {
    each(|w, mode| {
        let (l, c, s) = connected(w, mode);
        common::converse(w, &c, &s);
        // Nothing else is pending.
        match l.accept(&mut w.poller) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("{}: {other:?}", w.name()),
        }
        close(w, l, c, s);
    });
}

#[test]
fn accept_drains_a_backlog_in_every_mode() {
    each(|w, mode| {
        let mut l = TcpListener::bind(localhost()).unwrap();
        l.register(&mut w.poller, L, Interest::READABLE, mode)
            .unwrap();
        let addr = l.local_addr().unwrap();
        let clients: Vec<_> = (0..5)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut accepted = Vec::new();
        while accepted.len() < clients.len() {
            w.wait_for(L, readable);
            loop {
                match l.accept(&mut w.poller) {
                    Ok((s, _)) => accepted.push(s),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{}: {e}", w.name()),
                }
            }
        }
        // A sixth connection is reported again (edge: re-armed by the
        // WouldBlock that ended the loop).
        w.discard(L);
        let _late = std::net::TcpStream::connect(addr).unwrap();
        w.wait_for(L, readable);
        accept(w, &l);
        l.deregister(&mut w.poller).unwrap();
        assert_eq!(l.shed_count(), 0);
    });
}

#[test]
fn bulk_transfer_rearms_both_directions() {
    each(|w, mode| {
        let (l, c, s) = connected(w, mode);
        // Far more than loopback socket buffers hold.
        common::bulk(w, &c, &s, 16 << 20);
        close(w, l, c, s);
    });
}

#[test]
fn connect_to_a_closed_port_is_refused_through_so_error() {
    each(|w, mode| {
        let port = {
            let l = std::net::TcpListener::bind(localhost()).unwrap();
            l.local_addr().unwrap()
        };
        let mut c = match TcpStream::connect(port) {
            Ok(c) => c,
            // The kernel may know at once.
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
                return;
            }
        };
        c.register(&mut w.poller, C, Interest::WRITABLE, mode)
            .unwrap();
        let ev = w.wait_for(C, writable);
        assert!(ev.error, "{}: {ev:?}", w.name());
        let err = c.take_error().unwrap().expect("a pending error");
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "{}: {err}",
            w.name()
        );
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::CONNREFUSED.raw_os_error())
        );
        // Cleared.
        assert!(c.take_error().unwrap().is_none());
        c.deregister(&mut w.poller).unwrap();

        // finish_connect reports the same.
        let mut c = TcpStream::connect(port).unwrap();
        c.register(&mut w.poller, C, Interest::WRITABLE, mode)
            .unwrap();
        w.wait_for(C, writable);
        let err = c.finish_connect().unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "{}: {err}",
            w.name()
        );
        c.deregister(&mut w.poller).unwrap();
    });
}

#[test]
fn a_reset_connection_reports_an_error() {
    each(|w, mode| {
        let (mut l, c, mut s) = connected(w, mode);
        write_all_std(w, &c, b"unread");
        // Make sure it arrived, then close with unread data: the kernel
        // answers with a reset.
        w.wait_for(S, readable);
        s.deregister(&mut w.poller).unwrap();
        drop(s);
        let ev = w.wait_for(C, |e| e.readable && e.error);
        assert!(ev.read_closed, "{}: {ev:?}", w.name());
        let mut buf = [0u8; 8];
        let err = c.read(&mut w.poller, &mut buf).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionReset,
            "{}: {err}",
            w.name()
        );
        // Writing to a reset connection fails without SIGPIPE.
        let err = c.write(&mut w.poller, b"x").unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{}: {err}",
            w.name()
        );
        let mut c = c;
        c.deregister(&mut w.poller).unwrap();
        l.deregister(&mut w.poller).unwrap();
    });
}

fn write_all_std(w: &mut Waiter, c: &TcpStream, data: &[u8]) {
    // Through the Io adaptor and std's Write.
    let mut io = c.io(&mut w.poller);
    io.write_all(data).unwrap();
    io.flush().unwrap();
}

#[test]
fn io_adaptor_is_read_and_write() {
    each(|w, mode| {
        let (l, c, s) = connected(w, mode);
        write_all_std(w, &c, b"through std::io");
        w.wait_for(S, readable);
        let mut got = [0u8; 15];
        let mut filled = 0;
        while filled < got.len() {
            match s.io(&mut w.poller).read(&mut got[filled..]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    w.wait_for(S, readable);
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&got, b"through std::io");
        close(w, l, c, s);
    });
}

#[test]
fn conversions_keep_the_socket() {
    let std_l = std::net::TcpListener::bind(localhost()).unwrap();
    let fd = std_l.as_raw_fd();
    let addr = std_l.local_addr().unwrap();
    let l = TcpListener::from(std_l);
    assert_eq!(l.as_raw_fd(), fd);
    assert_eq!(l.local_addr().unwrap(), addr);
    assert_eq!(l.token(), None);
    let std_l: std::net::TcpListener = l.into();
    assert_eq!(std_l.as_raw_fd(), fd);
    // Still non-blocking.
    assert_eq!(
        std_l.accept().unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );

    let std_c = std::net::TcpStream::connect(addr).unwrap();
    let c = TcpStream::from_std(std_c).unwrap();
    c.set_nodelay(true).unwrap();
    assert!(c.nodelay().unwrap());
    let fd = c.as_raw_fd();
    let owned: std::os::fd::OwnedFd = c.into();
    assert_eq!(owned.as_raw_fd(), fd);
    assert!(format!("{:?}", TcpListener::from(std_l)).contains("TcpListener"));
}

#[test]
fn registration_errors_are_reported() {
    let kind = common::kinds()[0];
    let mut w = Waiter::new(
        common::poller(kind)
            .unwrap_or_else(|| common::poller(evmux_backends::BackendKind::Poll).unwrap()),
    );
    let mut a = TcpListener::bind(localhost()).unwrap();
    let mut b = TcpListener::bind(localhost()).unwrap();
    assert_eq!(
        a.reregister(&mut w.poller, Interest::READABLE, Mode::Level)
            .unwrap_err()
            .kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        a.deregister(&mut w.poller).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    a.register(&mut w.poller, L, Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(a.token(), Some(L));
    // The same token for another socket.
    assert_eq!(
        b.register(&mut w.poller, L, Interest::READABLE, Mode::Level)
            .unwrap_err()
            .kind(),
        io::ErrorKind::AlreadyExists
    );
    // Another token for the same socket.
    assert_eq!(
        a.register(&mut w.poller, C, Interest::READABLE, Mode::Level)
            .unwrap_err()
            .kind(),
        io::ErrorKind::AlreadyExists
    );
    // Re-declaring under its own token is fine.
    a.register(&mut w.poller, L, Interest::BOTH, Mode::Edge)
        .unwrap();
    a.reregister(&mut w.poller, Interest::READABLE, Mode::Level)
        .unwrap();
    a.deregister(&mut w.poller).unwrap();
    assert_eq!(a.token(), None);
    b.register(&mut w.poller, L, Interest::READABLE, Mode::Level)
        .unwrap();
    b.deregister(&mut w.poller).unwrap();
}

/// Runs `f(waiter, client, server, tracked, what)` on every backend with
/// the server side registered for reading only, in edge mode and (level)
/// with readiness tracked, then closes everything.
fn edge_and_tracked(mut f: impl FnMut(&mut Waiter, &TcpStream, &TcpStream, bool, &str)) {
    for kind in common::kinds() {
        for tracked in [false, true] {
            let Some(poller) = common::poller(kind) else {
                continue;
            };
            let mut w = Waiter::new(poller);
            let mode = if tracked { Mode::Level } else { Mode::Edge };
            let what = format!("{kind} {}", if tracked { "tracked" } else { "edge" });
            let (l, c, mut s) = connected(&mut w, mode);
            s.reregister(&mut w.poller, Interest::READABLE, mode)
                .unwrap();
            if tracked {
                w.poller.track_readiness(S).unwrap();
            }
            w.discard(S);
            f(&mut w, &c, &s, tracked, &what);
            close(&mut w, l, c, s);
        }
    }
}

/// Events for `token` in one wait of at most 50 ms (kept events included).
fn reported_now(w: &mut Waiter, token: Token) -> Vec<evmux_interest::Event> {
    let mut events = evmux_interest::Events::with_capacity(16);
    w.poller
        .get_next_event(&mut events, Some(std::time::Duration::from_millis(50)))
        .unwrap();
    events
        .iter()
        .filter(|e| e.token == token && e.readable)
        .copied()
        .collect()
}

/// A TCP read that fills less than its buffer re-arms the read direction
/// (crate docs, "Short reads"): a program that stops there hears of the
/// next data, in edge mode and with readiness tracked, on every backend. A
/// read that fills its buffer does not: an edge registration stays quiet
/// with data left, a tracked one keeps reporting it.
#[test]
fn a_short_read_rearms_the_read_direction() {
    edge_and_tracked(|w, c, s, tracked, what| {
        let mut buf = [0u8; 64];

        for word in [&b"hello"[..], b"world", b"again"] {
            assert_eq!(c.write(&mut w.poller, word).unwrap(), 5, "{what}");
            w.wait_for(S, readable);
            // Short: the program stops here, as a server does.
            assert_eq!(s.read(&mut w.poller, &mut buf).unwrap(), 5, "{what}");
            assert_eq!(&buf[..5], word, "{what}");
            w.discard(S);
            assert!(
                reported_now(w, S).is_empty(),
                "{what}: reported with nothing to read"
            );
        }

        // A read that fills its buffer re-arms nothing.
        assert_eq!(c.write(&mut w.poller, &[7u8; 100]).unwrap(), 100, "{what}");
        w.wait_for(S, readable);
        assert_eq!(s.read(&mut w.poller, &mut buf[..50]).unwrap(), 50, "{what}");
        w.discard(S);
        let again = reported_now(w, S);
        if tracked {
            assert!(!again.is_empty(), "{what}: data left but not reported");
        } else {
            assert!(
                again.is_empty(),
                "{what}: an edge reported twice: {again:?}"
            );
        }
        assert_eq!(s.read(&mut w.poller, &mut buf[..50]).unwrap(), 50, "{what}");
        let e = s.read(&mut w.poller, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{what}");
    });
}

/// The end of stream behind a short read (crate docs, "Short reads"): a
/// FIN that came with the data is announced by `read_closed` on the event
/// (then the program reads on to end of file), or by a report of its own;
/// a program that follows the rule sees end of file on every backend.
#[test]
fn end_of_stream_behind_a_short_read_is_not_lost() {
    edge_and_tracked(|w, c, s, _, what| {
        let mut buf = [0u8; 64];
        assert_eq!(c.write(&mut w.poller, b"bye").unwrap(), 3, "{what}");
        c.shutdown(std::net::Shutdown::Write).unwrap();
        // Both arrived before the wait (loopback delivers at once).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let ev = w.wait_for(S, readable);
        assert_eq!(s.read(&mut w.poller, &mut buf).unwrap(), 3, "{what}");
        if !(ev.read_closed || ev.error) {
            // Not announced: then it must be reported again.
            w.wait_for(S, readable);
        }
        assert_eq!(
            s.read(&mut w.poller, &mut buf).unwrap(),
            0,
            "{what}: {ev:?}"
        );
    });
}
