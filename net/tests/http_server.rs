//! The HTTP server loop (`evmux_net::http::server`) on every backend, in
//! level, edge and oneshot mode, driven by plain blocking clients:
//! keep-alive, pipelining, bodies (chunked too), `Connection: close`, malformed and
//! oversized requests (answered, then only that connection closed), and
//! the idle timeout.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use evmux_backends::BackendKind;
use evmux_interest::Mode;
use evmux_net::TcpListener;
use evmux_net::http::server::{Config, Server, Stats, StopHandle};

struct Running {
    addr: SocketAddr,
    stop: StopHandle,
    thread: thread::JoinHandle<Stats>,
}

impl Running {
    fn start(kind: BackendKind, config: Config) -> Option<Running> {
        let (tx, rx) = mpsc::channel();
        // The poller is made on the thread that uses it: an io_uring made
        // on one thread and driven from another sends its task work to the
        // thread that made it, which interrupts that thread's blocking
        // calls (EINTR from a read with SO_RCVTIMEO, here the client's).
        let thread = thread::spawn(move || {
            let Some(poller) = common::poller(kind) else {
                drop(tx);
                return Stats::default();
            };
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut server = Server::new(poller, listener, config).unwrap();
            tx.send((server.local_addr().unwrap(), server.stop_handle()))
                .unwrap();
            server.run().unwrap();
            assert_eq!(server.connections(), 0);
            server.stats()
        });
        let Ok((addr, stop)) = rx.recv() else {
            thread.join().unwrap();
            return None;
        };
        Some(Running { addr, stop, thread })
    }

    fn client(&self) -> TcpStream {
        let c = TcpStream::connect(self.addr).unwrap();
        c.set_read_timeout(Some(common::TIMEOUT)).unwrap();
        c.set_write_timeout(Some(common::TIMEOUT)).unwrap();
        c
    }

    fn stop(self) -> Stats {
        self.stop.stop().unwrap();
        self.thread.join().unwrap()
    }
}

/// Runs `f` against a server on every backend and each of `modes`.
fn each(
    modes: &[Mode],
    config: impl Fn() -> Config,
    mut f: impl FnMut(&Running, Mode) -> Box<dyn FnOnce(Stats)>,
) {
    let mut ran = 0;
    for kind in common::kinds() {
        for &mode in modes {
            let Some(server) = Running::start(kind, Config { mode, ..config() }) else {
                continue;
            };
            eprintln!("--- {kind} {mode:?}");
            let check = f(&server, mode);
            check(server.stop());
            ran += 1;
        }
    }
    assert!(ran > 0);
}

/// One response: status, headers (lower-case names), body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (`Content-Length` framed) from `c`, keeping what
/// follows in `rest`.
fn read_response(c: &mut TcpStream, rest: &mut Vec<u8>) -> Response {
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut buf).expect("read response head");
        assert!(
            n > 0,
            "end of file inside a response head: {:?}",
            String::from_utf8_lossy(rest)
        );
        rest.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(rest[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("Content-Length");
    rest.drain(..head_end);
    while rest.len() < len {
        let n = c.read(&mut buf).expect("read response body");
        assert!(n > 0, "end of file inside a response body");
        rest.extend_from_slice(&buf[..n]);
    }
    let body = rest.drain(..len).collect();
    Response {
        status,
        headers,
        body,
    }
}

/// Asserts that the server closes `c` (end of file, or a reset if the
/// client still had unread data in flight).
fn assert_closed(c: &mut TcpStream, rest: &[u8]) {
    assert!(
        rest.is_empty(),
        "unexpected bytes: {:?}",
        String::from_utf8_lossy(rest)
    );
    let mut buf = [0u8; 256];
    match c.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "more data instead of close: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

#[test]
fn keep_alive_pipelining_bodies_and_close() {
    each(
        &[Mode::Level, Mode::Edge, Mode::Oneshot],
        Config::default,
        |s, _| {
            let mut c = s.client();
            let mut rest = Vec::new();
            // Sequential requests on one connection.
            for _ in 0..3 {
                c.write_all(GET).unwrap();
                let r = read_response(&mut c, &mut rest);
                assert_eq!(r.status, 200);
                assert_eq!(r.body, b"hello world");
                assert_eq!(r.header("connection"), None);
            }
            // Pipelined, split at odd places.
            let mut burst = Vec::new();
            for i in 0..10 {
                burst.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            }
            for chunk in burst.chunks(7) {
                c.write_all(chunk).unwrap();
            }
            for _ in 0..10 {
                assert_eq!(read_response(&mut c, &mut rest).status, 200);
            }
            // A body is skipped, and the request after it is answered.
            c.write_all(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello=world")
                .unwrap();
            c.write_all(GET).unwrap();
            assert_eq!(read_response(&mut c, &mut rest).status, 200);
            assert_eq!(read_response(&mut c, &mut rest).status, 200);
            // HEAD: the length, no body.
            c.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut raw = Vec::new();
            while !raw.ends_with(b"hello world") {
                let mut buf = [0u8; 512];
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0);
                raw.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8(raw).unwrap();
            assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
            assert_eq!(text.matches("hello world").count(), 1, "{text}");
            // HTTP/1.0 keep-alive, then Connection: close ends the connection.
            c.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap();
            let r = read_response(&mut c, &mut rest);
            assert_eq!(r.header("connection"), Some("keep-alive"));
            c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let r = read_response(&mut c, &mut rest);
            assert_eq!((r.status, r.header("connection")), (200, Some("close")));
            assert_closed(&mut c, &rest);

            // HTTP/1.0 without keep-alive closes too; a half-closed client still
            // gets its answer.
            let mut c = s.client();
            let mut rest = Vec::new();
            c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let r = read_response(&mut c, &mut rest);
            assert_eq!((r.status, r.header("connection")), (200, Some("close")));
            assert_closed(&mut c, &rest);
            Box::new(|stats: Stats| {
                assert_eq!(stats.served, 3 + 10 + 2 + 2 + 2 + 1, "{stats:?}");
                assert_eq!(stats.rejected, 0, "{stats:?}");
                assert_eq!(stats.accepted, 2, "{stats:?}");
                assert_eq!(stats.closed, 2, "{stats:?}");
            })
        },
    );
}

#[test]
fn chunked_bodies_are_skipped_and_broken_framing_is_answered() {
    each(
        &[Mode::Level, Mode::Edge, Mode::Oneshot],
        Config::default,
        |s, _| {
            // Two chunked requests and a plain one, pipelined, the body sent
            // in small pieces (extensions, a trailer): three answers.
            let mut c = s.client();
            let mut rest = Vec::new();
            let pieces: [&[u8]; 6] = [
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5",
                b";ext=1\r\nhel",
                b"lo\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 9\r",
                b"\n\r\nPOST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"0\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            ];
            for p in pieces {
                c.write_all(p).unwrap();
                thread::sleep(Duration::from_millis(2));
            }
            for _ in 0..3 {
                let r = read_response(&mut c, &mut rest);
                assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
            }
            // Broken framing (a bare LF after the chunk size): the request
            // was answered when its head arrived; then 400, and the close.
            let mut bad = s.client();
            let mut bad_rest = Vec::new();
            bad.write_all(
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            )
            .unwrap();
            assert_eq!(read_response(&mut bad, &mut bad_rest).status, 200);
            let r = read_response(&mut bad, &mut bad_rest);
            assert_eq!((r.status, r.header("connection")), (400, Some("close")));
            assert_closed(&mut bad, &bad_rest);
            // The first connection is still served.
            c.write_all(GET).unwrap();
            assert_eq!(read_response(&mut c, &mut rest).status, 200);
            drop(c);
            Box::new(|stats: Stats| {
                assert_eq!(stats.served, 3 + 1 + 1, "{stats:?}");
                assert_eq!(stats.rejected, 1, "{stats:?}");
            })
        },
    );
}

#[test]
fn bad_requests_are_answered_and_only_their_connection_closed() {
    each(
        &[Mode::Level, Mode::Edge, Mode::Oneshot],
        Config::default,
        |s, _| {
            // A good connection, open throughout.
            let mut good = s.client();
            let mut good_rest = Vec::new();
            good.write_all(GET).unwrap();
            assert_eq!(read_response(&mut good, &mut good_rest).status, 200);

            let cases: [(&[u8], u16); 6] = [
                (b"garbage\r\n\r\n", 400),
                (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
                (b"GET / HTTP/1.1\r\n\r\n", 400),
                (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
                (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
                (
                    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                    501,
                ),
            ];
            for (req, status) in cases {
                let mut c = s.client();
                let mut rest = Vec::new();
                c.write_all(req).unwrap();
                let r = read_response(&mut c, &mut rest);
                assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(req));
                assert_eq!(r.header("connection"), Some("close"));
                assert_closed(&mut c, &rest);
            }

            // A good request, then a bad one on the same connection: the good
            // one is answered, then the error, then the close.
            let mut c = s.client();
            let mut rest = Vec::new();
            c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nNOT HTTP\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut c, &mut rest).status, 200);
            assert_eq!(read_response(&mut c, &mut rest).status, 400);
            assert_closed(&mut c, &rest);

            // Oversized: 16 KiB of header fields against an 8 KiB cap. The
            // client sends it all; the server answers 431 after 8 KiB, discards
            // the rest, and closes.
            let mut big = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
            while big.len() < 16 * 1024 {
                big.extend_from_slice(
                    b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
                );
            }
            big.extend_from_slice(b"\r\n");
            let mut c = s.client();
            let mut rest = Vec::new();
            c.write_all(&big).unwrap();
            let r = read_response(&mut c, &mut rest);
            assert_eq!(r.status, 431);
            assert_closed(&mut c, &rest);
            // One long line with no end at all.
            let mut c = s.client();
            let mut rest = Vec::new();
            let mut line = b"GET /".to_vec();
            line.resize(9000, b'a');
            c.write_all(&line).unwrap();
            assert_eq!(read_response(&mut c, &mut rest).status, 431);
            assert_closed(&mut c, &rest);

            // The good connection was never disturbed.
            for _ in 0..2 {
                good.write_all(GET).unwrap();
                let r = read_response(&mut good, &mut good_rest);
                assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
            }
            drop(good);
            Box::new(|stats: Stats| {
                assert_eq!(stats.rejected, 6 + 1 + 2, "{stats:?}");
                assert_eq!(stats.served, 1 + 1 + 2, "{stats:?}");
            })
        },
    );
}

#[test]
fn idle_connections_time_out() {
    let config = || Config {
        idle_timeout: Duration::from_millis(150),
        ..Config::default()
    };
    each(&[Mode::Level, Mode::Edge], config, |s, _| {
        // Silent from the start.
        let mut silent = s.client();
        assert_closed(&mut silent, &[]);
        // Idle after a request.
        let mut c = s.client();
        let mut rest = Vec::new();
        c.write_all(GET).unwrap();
        assert_eq!(read_response(&mut c, &mut rest).status, 200);
        assert_closed(&mut c, &rest);
        // Idle in the middle of a request head.
        let mut c = s.client();
        c.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
        assert_closed(&mut c, &[]);
        Box::new(|stats: Stats| {
            assert_eq!(stats.timed_out, 3, "{stats:?}");
            assert_eq!(stats.closed, 3, "{stats:?}");
        })
    });
}

#[test]
fn many_concurrent_clients() {
    each(&[Mode::Edge, Mode::Level], Config::default, |s, _| {
        let addr = s.addr;
        let threads: Vec<_> = (0..8)
            .map(|_| {
                thread::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(common::TIMEOUT)).unwrap();
                    let mut rest = Vec::new();
                    for _ in 0..50 {
                        c.write_all(GET).unwrap();
                        assert_eq!(read_response(&mut c, &mut rest).status, 200);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        Box::new(|stats: Stats| assert_eq!(stats.served, 400, "{stats:?}"))
    });
}

/// A pipelined burst many times the connection's buffer: reads that fill
/// the buffer are followed by more reads, and in level and oneshot mode a
/// read that does not fill it ends the round (the server is woken again
/// for the rest), so every request must still be answered, in order.
#[test]
fn a_pipelined_burst_larger_than_the_buffer_is_answered_in_full() {
    let small = || Config {
        max_head: 256,
        ..Config::default()
    };
    each(&[Mode::Level, Mode::Edge, Mode::Oneshot], small, |s, _| {
        let mut c = s.client();
        let mut burst = Vec::new();
        for i in 0..300 {
            burst.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        }
        assert!(burst.len() > 30 * 256);
        let mut w = c.try_clone().unwrap();
        let writer = thread::spawn(move || {
            // One large write, then the tail in small pieces a little later.
            let (head, tail) = burst.split_at(burst.len() - 100);
            w.write_all(head).unwrap();
            thread::sleep(Duration::from_millis(20));
            for piece in tail.chunks(9) {
                w.write_all(piece).unwrap();
            }
        });
        let mut rest = Vec::new();
        for _ in 0..300 {
            let r = read_response(&mut c, &mut rest);
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"hello world");
        }
        writer.join().unwrap();
        Box::new(|stats: Stats| {
            assert_eq!(stats.served, 300, "{stats:?}");
            assert_eq!(stats.rejected, 0, "{stats:?}");
        })
    });
}
