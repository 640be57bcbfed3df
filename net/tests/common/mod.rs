//! Shared test helpers: the backends to run, a waiter that keeps events it
//! was not asked for (so that an edge report is never lost), and read/write
//! loops that wait for readiness on `WouldBlock`.
#![allow(dead_code)]

use std::io;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use evmux_backends::{AnyBackend, BackendKind, new_backend};
use evmux_interest::{Event, Events, Mode, Poller, Token};
use evmux_net::{TcpStream, UnixStream};

/// How long any wait may take before the test fails. Generous: the tests
/// assert behaviour, not timing.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The backends to run: every concrete kind compiled for this OS, or only
/// the one `EVMUX_BACKEND` names.
pub fn kinds() -> Vec<BackendKind> {
    let only = BackendKind::from_env().expect("EVMUX_BACKEND names a backend");
    BackendKind::CONCRETE
        .into_iter()
        .filter(|k| k.unavailable_reason().is_none())
        .filter(|k| match only {
            None | Some(BackendKind::Auto) => true,
            Some(o) => o == *k,
        })
        .collect()
}

/// A poller over `kind`, or `None` (with a note) if the kernel refuses it
/// (io_uring disabled by sysctl, say).
pub fn poller(kind: BackendKind) -> Option<Poller<AnyBackend>> {
    match new_backend(kind) {
        Ok(b) => Some(Poller::new(b)),
        Err(e) if kind == BackendKind::Uring => {
            eprintln!("skipping {kind}: {e}");
            None
        }
        Err(e) => panic!("{kind}: {e}"),
    }
}

/// The modes the socket tests run in.
pub const MODES: [Mode; 2] = [Mode::Level, Mode::Edge];

/// Runs `f` for every backend and mode with a fresh poller.
pub fn each(mut f: impl FnMut(&mut Waiter, Mode)) {
    let mut ran = 0;
    for kind in kinds() {
        for mode in MODES {
            let Some(poller) = poller(kind) else { continue };
            eprintln!("--- {kind} {mode:?}");
            let mut w = Waiter::new(poller);
            f(&mut w, mode);
            ran += 1;
        }
    }
    assert!(ran > 0, "no backend ran");
}

/// A poller and the events it reported that nobody has asked for yet.
pub struct Waiter {
    pub poller: Poller<AnyBackend>,
    events: Events,
    pending: Vec<Event>,
}

impl Waiter {
    pub fn new(poller: Poller<AnyBackend>) -> Waiter {
        Waiter {
            poller,
            events: Events::with_capacity(64),
            pending: Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.poller.backend_name()
    }

    /// Waits (at most [`TIMEOUT`]) for an event for `token` that satisfies
    /// `pred`. Other events are kept for later calls. Panics on timeout.
    pub fn wait_for(&mut self, token: Token, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self
                .pending
                .iter()
                .position(|e| e.token == token && pred(e))
            {
                let ev = self.pending.remove(i);
                self.pending.retain(|e| !(e.token == token && pred(e)));
                return ev;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "{}: no matching event for {token} within {TIMEOUT:?}; pending: {:?}",
                self.name(),
                self.pending
            );
            self.poller
                .get_next_event(&mut self.events, Some(deadline - now))
                .expect("get_next_event");
            self.pending.extend(self.events.iter().copied());
        }
    }

    /// Forgets the kept events of `token`.
    pub fn discard(&mut self, token: Token) {
        self.pending.retain(|e| e.token != token);
    }
}

pub fn readable(e: &Event) -> bool {
    e.readable
}

pub fn writable(e: &Event) -> bool {
    e.writable
}

/// The stream operations the generic stream tests use.
pub trait Stream {
    fn read(&self, p: &mut Poller<AnyBackend>, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&self, p: &mut Poller<AnyBackend>, buf: &[u8]) -> io::Result<usize>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn token(&self) -> Option<Token>;
}

macro_rules! stream {
    ($t:ty) => {
        impl Stream for $t {
            fn read(&self, p: &mut Poller<AnyBackend>, buf: &mut [u8]) -> io::Result<usize> {
                <$t>::read(self, p, buf)
            }
            fn write(&self, p: &mut Poller<AnyBackend>, buf: &[u8]) -> io::Result<usize> {
                <$t>::write(self, p, buf)
            }
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                <$t>::shutdown(self, how)
            }
            fn token(&self) -> Option<Token> {
                <$t>::token(self)
            }
        }
    };
}
stream!(TcpStream);
stream!(UnixStream);

/// Writes all of `data`, waiting for writability on `WouldBlock`.
pub fn write_all(w: &mut Waiter, s: &impl Stream, mut data: &[u8]) {
    let token = s.token().expect("registered");
    while !data.is_empty() {
        match s.write(&mut w.poller, data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                w.wait_for(token, writable);
            }
            Err(e) => panic!("{}: write: {e}", w.name()),
        }
    }
}

/// Reads exactly `n` bytes, waiting for readability on `WouldBlock`.
pub fn read_exact(w: &mut Waiter, s: &impl Stream, n: usize) -> Vec<u8> {
    let token = s.token().expect("registered");
    let mut out = vec![0; n];
    let mut got = 0;
    while got < n {
        match s.read(&mut w.poller, &mut out[got..]) {
            Ok(0) => panic!("{}: end of file after {got} of {n} bytes", w.name()),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                w.wait_for(token, readable);
            }
            Err(e) => panic!("{}: read: {e}", w.name()),
        }
    }
    out
}

/// Reads until end of file, waiting for readability on `WouldBlock`;
/// returns what was read and the last event seen (if any wait happened).
pub fn read_to_eof(w: &mut Waiter, s: &impl Stream) -> (Vec<u8>, Option<Event>) {
    let token = s.token().expect("registered");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut last = None;
    loop {
        match s.read(&mut w.poller, &mut buf) {
            Ok(0) => return (out, last),
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                last = Some(w.wait_for(token, readable));
            }
            Err(e) => panic!("{}: read: {e}", w.name()),
        }
    }
}

/// A fresh path for a Unix socket in the temporary directory.
pub fn socket_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("evmux-net-{}-{tag}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Reads until `WouldBlock` (which re-arms an edge registration).
pub fn read_until_would_block(w: &mut Waiter, s: &impl Stream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut w.poller, &mut buf) {
            Ok(0) => panic!("{}: unexpected end of file", w.name()),
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("{}: read: {e}", w.name()),
        }
    }
}

/// The stream conversation every stream type must hold, on connected and
/// registered `client` and `server`: both directions, a second burst after
/// `WouldBlock` (edge re-arming), half-close both ways, end of file.
pub fn converse(w: &mut Waiter, client: &impl Stream, server: &impl Stream) {
    let (c, s) = (client.token().unwrap(), server.token().unwrap());
    write_all(w, client, b"hello");
    assert_eq!(read_exact(w, server, 5), b"hello");
    write_all(w, server, b"world!");
    assert_eq!(read_exact(w, client, 6), b"world!");

    // Nothing more to read: WouldBlock, which re-arms; the next burst must
    // be reported.
    assert!(read_until_would_block(w, server).is_empty());
    w.discard(s);
    write_all(w, client, b"again");
    let ev = w.wait_for(s, readable);
    assert!(!ev.read_closed && !ev.error, "{}: {ev:?}", w.name());
    assert_eq!(read_until_would_block(w, server), b"again");

    // Half-close: the client shuts its write side.
    w.discard(s);
    client.shutdown(Shutdown::Write).unwrap();
    let ev = w.wait_for(s, |e| e.readable && e.read_closed);
    assert!(!ev.error, "{}: {ev:?}", w.name());
    let mut buf = [0u8; 16];
    assert_eq!(
        server.read(&mut w.poller, &mut buf).unwrap(),
        0,
        "{}",
        w.name()
    );
    // The other direction still works.
    write_all(w, server, b"after eof");
    assert_eq!(read_exact(w, client, 9), b"after eof");
    // And ends too.
    assert!(read_until_would_block(w, client).is_empty());
    w.discard(c);
    server.shutdown(Shutdown::Write).unwrap();
    let ev = w.wait_for(c, |e| e.readable && e.read_closed);
    assert!(!ev.error, "{}: {ev:?}", w.name());
    let (rest, _) = read_to_eof(w, client);
    assert!(rest.is_empty());
}

/// Exchanges a lot of data (far more than the socket buffers hold) from
/// `client` to `server` in one loop driven by events only: every stall is a
/// `WouldBlock`, every resumption an event, so in edge mode this only ends
/// if the I/O methods re-arm.
pub fn bulk(w: &mut Waiter, client: &impl Stream, server: &impl Stream, total: usize) {
    let (c, s) = (client.token().unwrap(), server.token().unwrap());
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::with_capacity(total);
    let mut stalls = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut shut = false;
    let mut events = Events::with_capacity(16);
    let deadline = Instant::now() + TIMEOUT * 3;
    let mut eof = false;
    // Both start armed: try both sides first.
    let mut client_ready = true;
    let mut server_ready = true;
    while !eof {
        assert!(
            Instant::now() < deadline,
            "{}: bulk transfer stuck at {sent}/{} sent, {} received",
            w.name(),
            total,
            got.len()
        );
        if client_ready && sent < total {
            loop {
                match client.write(&mut w.poller, &data[sent..(sent + 32 * 1024).min(total)]) {
                    Ok(n) => {
                        sent += n;
                        if sent == total {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        stalls += 1;
                        break;
                    }
                    Err(e) => panic!("{}: write: {e}", w.name()),
                }
            }
            client_ready = false;
        }
        if sent == total && !shut {
            client.shutdown(Shutdown::Write).unwrap();
            shut = true;
        }
        if server_ready {
            loop {
                match server.read(&mut w.poller, &mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{}: read: {e}", w.name()),
                }
            }
            server_ready = false;
        }
        if eof {
            break;
        }
        w.poller
            .get_next_event(&mut events, Some(TIMEOUT))
            .expect("get_next_event");
        for ev in events.iter() {
            if ev.token == c && ev.writable {
                client_ready = true;
            }
            if ev.token == s && ev.readable {
                server_ready = true;
            }
        }
    }
    assert_eq!(got.len(), total, "{}", w.name());
    assert!(got == data, "{}: data corrupted", w.name());
    assert!(
        stalls > 0,
        "{}: the writer never blocked; make `total` larger",
        w.name()
    );
}
