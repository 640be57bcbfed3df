//! The mio baseline of `cargo xtask loadtest`: the example HTTP server's
//! logic (`evmux_net::http::server`) written on mio 1.x, kept in the
//! benchmark code only.
//!
//! What is the same as the evmux server, so that the load test compares
//! event loops and nothing else:
//!
//! - the listener (`evmux_net::TcpListener::bind_reuse_port`, backlog
//!   1024, handed to mio as a std listener), `TCP_NODELAY` on every
//!   connection, one thread;
//! - the parser (`evmux_net::http::parse_request`, with the same header
//!   slice and the same head cap, 8 KiB by default, which is also the
//!   connection's buffer size) and the same precomputed responses
//!   (`write_response`, `Content-Type: text/plain`, `hello world`): the
//!   bytes on the wire are equal (a test below checks it);
//! - keep-alive and pipelining (every complete head in the buffer is
//!   answered in order), bodies (`Content-Length` or chunked) skipped, `Connection:
//!   close` and errors (400, 431, 501, 505) answered, the write side shut,
//!   the input drained for at most the linger time, then closed;
//! - back-pressure: no reading while 64 KiB of output wait;
//! - an idle timeout per connection on a timing wheel (`evmux-timers`, the
//!   structure the evmux poller uses), reset on activity, and the wait
//!   shortened to the next deadline; 256 events per wait;
//! - one `deregister` before each close (mio asks for it; evmux's epoll
//!   backend issues the same `EPOLL_CTL_DEL` at its next wait).
//!
//! What is mio's own: each connection is registered once, edge-triggered,
//! for reading and writing, and never re-registered; the loop keeps a
//! "readable" flag per connection, set by an event and cleared by
//! `WouldBlock` (the usual mio pattern). Where the evmux server stops at a
//! read that did not fill its buffer (evmux-net re-arms the edge there),
//! this one reads on until `WouldBlock`, as mio's docs ask ("Draining
//! readiness"); `--short-read on` stops there too, as tokio does on Unix
//! (see [`MioConfig::short_read`]).
//!
//! Run as `xtask __mio-http-server [--port P] [--addr IP]
//! [--idle-timeout-ms MS] [--max-request BYTES] [--short-read on|off]`: it
//! prints the same `listening on http://ADDR/ …` line as the example and
//! serves until it is killed.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use evmux_net::http::server::MAX_HEADERS;
use evmux_net::http::{
    self, Body, BodySkipper, Header, Status, Version, parse_request, write_response,
};
use evmux_timers::{TimerKey, TimerWheel};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CONN_BASE: usize = 2;
/// Output waiting for the socket beyond which a connection stops reading
/// (as in the evmux server).
const OUT_HIGH_WATER: usize = 64 * 1024;

/// The server's settings (the evmux server's defaults).
#[derive(Clone, Debug)]
pub struct MioConfig {
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// The cap on a request head (and each connection's buffer size).
    pub max_head: usize,
    /// The body of every `200` response.
    pub body: Vec<u8>,
    /// How long a closing connection may keep sending.
    pub linger: Duration,
    /// Events collected per wait.
    pub events: usize,
    /// Take a read that did not fill its buffer as the end of the input,
    /// without reading on to `WouldBlock` (tokio's rule on Unix). mio does
    /// not promise another event then ("Draining readiness" in mio's
    /// `Poll` docs; tokio-rs/mio#1611 keeps it so); epoll sends one for
    /// new data on a TCP socket all the same. Off by default: the baseline
    /// is mio used as documented; `--short-read` gives the other figure.
    pub short_read: bool,
}

impl Default for MioConfig {
    fn default() -> MioConfig {
        MioConfig {
            idle_timeout: Duration::from_secs(10),
            max_head: http::MAX_HEAD,
            body: b"hello world".to_vec(),
            linger: Duration::from_secs(2),
            events: 256,
            short_read: false,
        }
    }
}

/// `xtask __mio-http-server …`: bind, print the address, serve until
/// killed.
pub fn serve_cmd(args: &[String]) -> Result<()> {
    let mut addr = IpAddr::from([127, 0, 0, 1]);
    let mut port = 8080u16;
    let mut config = MioConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse().context("--port")?,
            "--addr" => addr = value.parse().context("--addr")?,
            "--idle-timeout-ms" => {
                config.idle_timeout =
                    Duration::from_millis(value.parse().context("--idle-timeout-ms")?);
            }
            "--max-request" => config.max_head = value.parse().context("--max-request")?,
            "--short-read" => {
                config.short_read = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => bail!("--short-read: expected on or off, not {value}"),
                }
            }
            other => bail!("unknown option {other}"),
        }
    }
    // Die with the load test, even if it is killed before it can stop us.
    #[cfg(target_os = "linux")]
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let mut server = MioServer::bind(SocketAddr::new(addr, port), config)?;
    println!(
        "listening on http://{}/ with 1 thread(s), mio {:?}, idle timeout {:?}, request cap {} bytes",
        server.local_addr()?,
        "edge",
        server.config.idle_timeout,
        server.config.max_head
    );
    server.run()?;
    Ok(())
}

/// Stops a running [`MioServer`] from another thread.
#[derive(Clone, Debug)]
pub struct MioStop {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl MioStop {
    /// Asks the server to stop after its current wait.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn stop(&self) -> io::Result<()> {
        self.flag.store(true, Ordering::SeqCst);
        self.waker.wake()
    }
}

/// One connection (the fields of the evmux server's `Conn`).
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    out_pos: usize,
    body: BodySkipper,
    close_after_flush: bool,
    draining: bool,
    peer_eof: bool,
    /// An event said readable and no read has returned `WouldBlock` since.
    readable: bool,
    /// An event said the peer closed its side (or an error): with
    /// `short_read`, read on to end of file.
    read_closed: bool,
    /// The idle deadline, in ms since the server started.
    deadline: u64,
    timer: TimerKey,
}

/// The precomputed `200` responses:
/// `[keep-alive 1.1, keep-alive 1.0, close]` × `[with body, head only]`.
#[derive(Debug)]
struct Responses {
    all: [[Vec<u8>; 2]; 3],
}

impl Responses {
    fn new(body: &[u8]) -> Responses {
        let make = |ka, version, with_body| {
            let mut v = Vec::new();
            write_response(
                &mut v,
                200,
                "Content-Type: text/plain\r\n",
                body,
                with_body,
                ka,
                version,
            );
            v
        };
        Responses {
            all: [
                [
                    make(true, Version::Http11, true),
                    make(true, Version::Http11, false),
                ],
                [
                    make(true, Version::Http10, true),
                    make(true, Version::Http10, false),
                ],
                [
                    make(false, Version::Http11, true),
                    make(false, Version::Http11, false),
                ],
            ],
        }
    }

    fn get(&self, keep_alive: bool, version: Version, head_only: bool) -> &[u8] {
        let row = match (keep_alive, version) {
            (true, Version::Http11) => 0,
            (true, Version::Http10) => 1,
            (false, _) => 2,
        };
        &self.all[row][usize::from(head_only)]
    }
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Done,
    Backpressure,
}

/// The mio server.
#[derive(Debug)]
pub struct MioServer {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    config: MioConfig,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    closed: Vec<usize>,
    spare_bufs: Vec<Box<[u8]>>,
    wheel: TimerWheel<usize>,
    expired: Vec<(TimerKey, usize)>,
    start: Instant,
    responses: Responses,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl MioServer {
    /// Binds `addr` as the evmux example does and sets the loop up.
    pub fn bind(addr: SocketAddr, config: MioConfig) -> Result<MioServer> {
        let std = evmux_net::TcpListener::bind_reuse_port(addr)
            .with_context(|| format!("bind {addr}"))?
            .into_std();
        let mut listener = TcpListener::from_std(std);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(MioServer {
            poll,
            events: Events::with_capacity(config.events),
            listener,
            responses: Responses::new(&config.body),
            config,
            conns: Vec::new(),
            free: Vec::new(),
            closed: Vec::new(),
            spare_bufs: Vec::new(),
            wheel: TimerWheel::new(),
            expired: Vec::new(),
            start: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            waker,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops [`run`](MioServer::run).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn stop_handle(&self) -> MioStop {
        MioStop {
            flag: self.stop.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Milliseconds since the start, rounded down (the wheel's clock).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Serves until stopped, then closes every connection.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            let timeout = self
                .wheel
                .next_deadline()
                .map(|d| Duration::from_millis(d.saturating_sub(self.now_ms())));
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // `events` is moved out for the borrow checker and put back.
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => {
                        let closed = ev.is_read_closed() || ev.is_error();
                        let readable = ev.is_readable() || closed;
                        self.on_conn(t - CONN_BASE, readable, closed);
                    }
                }
            }
            self.events = events;
            let now = self.now_ms();
            let mut expired = std::mem::take(&mut self.expired);
            self.wheel.advance_into(now, &mut expired);
            for (_, i) in expired.drain(..) {
                self.on_timer(i);
            }
            self.expired = expired;
            self.free.append(&mut self.closed);
        }
        for i in 0..self.conns.len() {
            self.close(i);
        }
        Ok(())
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                // EMFILE and the like: with an edge registration the
                // listener is reported again only when a new connection
                // arrives (the load test never gets there).
                Err(_) => break,
            }
        }
    }

    fn add(&mut self, mut stream: TcpStream) {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let _ = stream.set_nodelay(true);
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(CONN_BASE + i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.free.push(i);
            return;
        }
        let deadline = deadline_after(self.start, self.config.idle_timeout);
        let timer = self.wheel.insert(deadline, i);
        let max_head = self.config.max_head.max(64);
        let buf = self
            .spare_bufs
            .pop()
            .filter(|b| b.len() == max_head)
            .unwrap_or_else(|| vec![0; max_head].into_boxed_slice());
        self.conns[i] = Some(Conn {
            stream,
            buf,
            start: 0,
            end: 0,
            out: Vec::new(),
            out_pos: 0,
            body: BodySkipper::new(Body::None),
            close_after_flush: false,
            draining: false,
            peer_eof: false,
            readable: false,
            read_closed: false,
            deadline,
            timer,
        });
    }

    fn close(&mut self, i: usize) {
        let Some(mut conn) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let _ = self.wheel.cancel(conn.timer);
        if self.spare_bufs.len() < 64 {
            self.spare_bufs.push(std::mem::take(&mut conn.buf));
        }
        self.closed.push(i);
    }

    fn on_timer(&mut self, i: usize) {
        let now = self.now_ms();
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if now >= conn.deadline {
            self.close(i);
        } else {
            conn.timer = self.wheel.insert(conn.deadline, i);
        }
    }

    fn on_conn(&mut self, i: usize, readable: bool, closed: bool) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        conn.readable |= readable;
        // A closed state is final (tokio's rule): the end of file may wait
        // behind a short read with no edge to come.
        conn.read_closed |= closed;
        let was_draining = conn.draining;
        let mut active = false;
        let short_read = self.config.short_read && !conn.read_closed;
        match drive(conn, &self.responses, short_read, &mut active) {
            Ok(true) => {
                let started_draining = conn.draining && !was_draining;
                if started_draining || (active && !conn.draining) {
                    let after = if started_draining {
                        self.config.linger.min(self.config.idle_timeout)
                    } else {
                        self.config.idle_timeout
                    };
                    let deadline = deadline_after(self.start, after);
                    conn.deadline = deadline;
                    self.wheel.reset(conn.timer, deadline);
                }
            }
            Ok(false) | Err(_) => self.close(i),
        }
    }
}

/// The deadline `d` from now, in ms since `start`, rounded up (the evmux
/// poller rounds deadlines up too, so that timers are never early).
fn deadline_after(start: Instant, d: Duration) -> u64 {
    let t = start.elapsed() + d;
    u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Handles readiness on one connection. `Ok(false)`: close it.
fn drive(
    conn: &mut Conn,
    responses: &Responses,
    short_read: bool,
    active: &mut bool,
) -> io::Result<bool> {
    loop {
        if conn.readable {
            if conn.draining {
                if drain(conn)? {
                    return Ok(false);
                }
            } else {
                read_requests(conn, responses, short_read, active)?;
            }
        }
        flush(conn, active)?;
        if conn.out_pos < conn.out.len() {
            // A writable edge will come.
            return Ok(true);
        }
        conn.out.clear();
        conn.out_pos = 0;
        if conn.draining {
            return Ok(true);
        }
        if conn.close_after_flush {
            let _ = conn.stream.shutdown(Shutdown::Write);
            conn.draining = true;
            if conn.peer_eof {
                return Ok(false);
            }
            // The caller moves the deadline to the end of the linger.
            continue;
        }
        if conn.peer_eof {
            return Ok(false);
        }
        if !conn.readable {
            return Ok(true);
        }
        // Stopped for back-pressure with input left: read on.
    }
}

/// Reads and answers requests until `WouldBlock`, end of file, an error
/// response, or back-pressure.
fn read_requests(
    conn: &mut Conn,
    responses: &Responses,
    short_read: bool,
    active: &mut bool,
) -> io::Result<Stop> {
    let mut short = false;
    loop {
        skip_body(conn);
        while conn.body.is_done() && conn.start < conn.end && !conn.close_after_flush {
            let mut headers = [Header::EMPTY; MAX_HEADERS];
            let cap = conn.buf.len();
            match parse_request(&conn.buf[conn.start..conn.end], &mut headers, cap) {
                Ok(Status::Complete(req)) => {
                    let head_only = req.method == "HEAD";
                    let (version, keep_alive, head_len) =
                        (req.version, req.keep_alive, req.head_len);
                    conn.body = BodySkipper::new(req.body);
                    conn.out
                        .extend_from_slice(responses.get(keep_alive, version, head_only));
                    conn.start += head_len;
                    if !keep_alive {
                        conn.close_after_flush = true;
                    }
                    skip_body(conn);
                }
                Ok(Status::Partial) => break,
                Err(e) => reject(conn, e.status()),
            }
        }
        if conn.close_after_flush || conn.peer_eof {
            return Ok(Stop::Done);
        }
        if conn.out.len() - conn.out_pos >= OUT_HIGH_WATER {
            return Ok(Stop::Backpressure);
        }
        if conn.start == conn.end {
            conn.start = 0;
            conn.end = 0;
        } else if conn.end == conn.buf.len() && conn.start > 0 {
            conn.buf.copy_within(conn.start..conn.end, 0);
            conn.end -= conn.start;
            conn.start = 0;
        }
        if conn.end == conn.buf.len() {
            reject(conn, 431);
            return Ok(Stop::Done);
        }
        if short {
            conn.readable = false;
            return Ok(Stop::Done);
        }
        let space = conn.buf.len() - conn.end;
        match conn.stream.read(&mut conn.buf[conn.end..]) {
            Ok(0) => {
                conn.peer_eof = true;
                conn.readable = false;
                return Ok(Stop::Done);
            }
            Ok(n) => {
                conn.end += n;
                *active = true;
                short = short_read && n < space;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                return Ok(Stop::Done);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Queues an error response and marks the connection for closing.
fn reject(conn: &mut Conn, status: u16) {
    let reason = http::reason(status);
    let mut body = Vec::with_capacity(reason.len() + 1);
    body.extend_from_slice(reason.as_bytes());
    body.push(b'\n');
    write_response(
        &mut conn.out,
        status,
        "Content-Type: text/plain\r\n",
        &body,
        true,
        false,
        Version::Http11,
    );
    conn.close_after_flush = true;
    conn.start = conn.end;
}

fn skip_body(conn: &mut Conn) {
    match conn.body.skip(&conn.buf[conn.start..conn.end]) {
        Ok(n) => conn.start += n,
        Err(e) => reject(conn, e.status()),
    }
}

/// Discards input until `WouldBlock` (`Ok(false)`) or end of file
/// (`Ok(true)`).
fn drain(conn: &mut Conn) -> io::Result<bool> {
    loop {
        match conn.stream.read(&mut conn.buf[..]) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes pending output until done or `WouldBlock`.
fn flush(conn: &mut Conn, active: &mut bool) -> io::Result<()> {
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(&conn.out[conn.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.out_pos += n;
                *active = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The mio server and the evmux server answer the same bytes to the
    //! same conversations.

    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpStream};
    use std::thread;
    use std::time::Duration;

    use evmux_backends::{AnyBackend, BackendKind, PollerExt};
    use evmux_interest::Poller;
    use evmux_net::http::server::{Config, Server};

    use super::{MioConfig, MioServer};

    /// Sends `input` (then shuts the write side if `eof`), reads until the
    /// server closes or `expect_close` is false and `replies` responses
    /// arrived; returns the bytes.
    fn talk(addr: SocketAddr, input: &[u8], eof: bool, replies: usize) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(input).unwrap();
        if eof {
            s.shutdown(Shutdown::Write).unwrap();
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if replies > 0 && count(&out, b"HTTP/1.1 ") >= replies && complete(&out) {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!(
                    "read: {e} after {:?} for {:?} at {addr}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&input[..input.len().min(60)])
                ),
            }
        }
        out
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    /// The last response's body is complete (every test body is 11 bytes
    /// or a reason phrase; checks the announced length).
    fn complete(out: &[u8]) -> bool {
        let Some(start) = out.windows(9).rposition(|w| w == b"HTTP/1.1 ") else {
            return false;
        };
        let last = &out[start..];
        let Some(head_end) = last.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&last[..head_end]);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        last.len() >= head_end + 4 + len
    }

    #[test]
    fn same_bytes_as_the_evmux_server() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();

        let listener = evmux_net::TcpListener::bind(any).unwrap();
        let poller = Poller::<AnyBackend>::with_backend(BackendKind::Auto).unwrap();
        let mut evmux = Server::new(poller, listener, Config::default()).unwrap();
        let evmux_addr = evmux.local_addr().unwrap();
        let evmux_stop = evmux.stop_handle();
        let evmux_thread = thread::spawn(move || evmux.run());

        // mio as documented, and with the short-read rule.
        let mios: Vec<_> = [false, true]
            .into_iter()
            .map(|short_read| {
                let config = MioConfig {
                    short_read,
                    ..MioConfig::default()
                };
                let mut mio = MioServer::bind(any, config).unwrap();
                let addr = mio.local_addr().unwrap();
                let stop = mio.stop_handle();
                (addr, stop, thread::spawn(move || mio.run()))
            })
            .collect();

        let burst: Vec<u8> = (0..400)
            .flat_map(|i| format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes())
            .collect();
        assert!(burst.len() > 8192);
        let mut oversized = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        oversized.resize(9000, b'a');
        let conversations: Vec<(Vec<u8>, bool, usize)> = vec![
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), false, 1),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\n\r\nHEAD / HTTP/1.1\r\nHost: h\r\n\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.1\r\nHost: h\r\n\r\n"
                    .to_vec(),
                false,
                4,
            ),
            (b"GET / HTTP/1.0\r\n\r\n".to_vec(), false, 0),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
                true,
                0,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"
                    .to_vec(),
                false,
                0,
            ),
            (b"GARBAGE\x01\r\n\r\n".to_vec(), false, 0),
            (b"GET / HTTP/2.0\r\n\r\n".to_vec(), false, 0),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
                false,
                2,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc".to_vec(),
                false,
                0,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
                false,
                0,
            ),
            (oversized, false, 0),
            // More than a buffer (8 KiB) of pipelined requests at once.
            (burst.clone(), false, 400),
        ];
        for (input, eof, replies) in &conversations {
            let a = talk(evmux_addr, input, *eof, *replies);
            assert!(!a.is_empty(), "{:?}", String::from_utf8_lossy(input));
            for (addr, _, _) in &mios {
                let b = talk(*addr, input, *eof, *replies);
                assert_eq!(
                    String::from_utf8_lossy(&a),
                    String::from_utf8_lossy(&b),
                    "for {:?}",
                    String::from_utf8_lossy(&input[..input.len().min(80)])
                );
            }
        }
        assert_eq!(
            count(&talk(evmux_addr, &burst, false, 400), b"HTTP/1.1 200 OK"),
            400
        );

        evmux_stop.stop().unwrap();
        evmux_thread.join().unwrap().unwrap();
        for (_, stop, thread) in mios {
            stop.stop().unwrap();
            thread.join().unwrap().unwrap();
        }
    }
}
