//! UDP on every backend, in level and edge mode: send, receive, re-arming,
//! and the refused-port error. (UDP has no connection to accept and no end
//! of file; `connect` only fixes the peer.)

mod common;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use common::{Waiter, each, readable};
use evmux_interest::{Interest, Token};
use evmux_net::UdpSocket;

const A: Token = Token(1);
const B: Token = Token(2);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Receives until `WouldBlock`, returning the datagrams.
fn recv_all(w: &mut Waiter, s: &UdpSocket) -> Vec<Vec<u8>> {
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
fn send_recv_and_rearm() {
    each(|w, mode| {
        let mut a = UdpSocket::bind(localhost()).unwrap();
        let mut b = UdpSocket::bind(localhost()).unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        a.register(&mut w.poller, A, Interest::BOTH, mode).unwrap();
        b.register(&mut w.poller, B, Interest::READABLE, mode)
            .unwrap();

        // Unconnected: send_to / recv_from.
        assert_eq!(a.send_to(&mut w.poller, b"one", ba).unwrap(), 3);
        w.wait_for(B, readable);
        let mut buf = [0u8; 64];
        let (n, from) = b.recv_from(&mut w.poller, &mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"one"[..], aa));
        assert!(recv_all(w, &b).is_empty());

        // Connected: send / recv, several datagrams per event.
        a.connect(ba).unwrap();
        b.connect(aa).unwrap();
        assert_eq!(a.peer_addr().unwrap(), ba);
        w.discard(B);
        a.send(&mut w.poller, b"two").unwrap();
        a.send(&mut w.poller, b"three").unwrap();
        w.wait_for(B, readable);
        let (n, from) = b.peek_from(&mut w.poller, &mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"two"[..], aa));
        assert_eq!(b.peek(&mut w.poller, &mut buf).unwrap(), 3);
        assert_eq!(recv_all(w, &b), vec![b"two".to_vec(), b"three".to_vec()]);

        // After WouldBlock the next datagram is reported again.
        w.discard(B);
        b.send(&mut w.poller, b"back").unwrap();
        a.send(&mut w.poller, b"four").unwrap();
        let ev = w.wait_for(B, readable);
        assert!(!ev.error && !ev.read_closed, "{}: {ev:?}", w.name());
        assert_eq!(recv_all(w, &b), vec![b"four".to_vec()]);
        w.wait_for(A, readable);
        assert_eq!(recv_all(w, &a), vec![b"back".to_vec()]);

        a.deregister(&mut w.poller).unwrap();
        b.deregister(&mut w.poller).unwrap();
    });
}

#[test]
fn a_refused_datagram_is_an_error_event() {
    each(|w, mode| {
        let closed = {
            let s = std::net::UdpSocket::bind(localhost()).unwrap();
            s.local_addr().unwrap()
        };
        let mut a = UdpSocket::bind(localhost()).unwrap();
        a.connect(closed).unwrap();
        a.register(&mut w.poller, A, Interest::READABLE, mode)
            .unwrap();
        a.send(&mut w.poller, b"anyone?").unwrap();
        // The ICMP port unreachable becomes a pending error.
        let ev = w.wait_for(A, |e| e.readable && e.error);
        assert!(ev.error, "{}: {ev:?}", w.name());
        let mut buf = [0u8; 16];
        let err = a.recv(&mut w.poller, &mut buf).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "{}: {err}",
            w.name()
        );
        // recv consumed it; the next recv blocks (and re-arms: an error is
        // not WouldBlock, so in edge mode the loop goes on to WouldBlock).
        assert!(a.take_error().unwrap().is_none());
        let err = a.recv(&mut w.poller, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{}: {err}", w.name());

        // take_error sees the same.
        w.discard(A);
        a.send(&mut w.poller, b"again?").unwrap();
        w.wait_for(A, |e| e.error);
        let err = a.take_error().unwrap().expect("pending error");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        a.deregister(&mut w.poller).unwrap();
    });
}

#[test]
fn conversions_keep_the_socket() {
    let s = std::net::UdpSocket::bind(localhost()).unwrap();
    let fd = s.as_raw_fd();
    let u = UdpSocket::from(s);
    assert_eq!(u.as_raw_fd(), fd);
    u.set_broadcast(true).unwrap();
    u.set_ttl(9).unwrap();
    let s = u.into_std();
    assert_eq!(s.as_raw_fd(), fd);
    let mut buf = [0u8; 1];
    assert_eq!(
        s.recv(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}
