//! A small HTTP/1.1 server loop: one [`Poller`], one [`TcpListener`], a
//! fixed response.
//!
//! It serves every request with the same small body (`hello world` by
//! default), the shape of the userver experiments: what is measured is the
//! event loop, not the handler. What it does take care of:
//!
//! - **keep-alive** and pipelining: each complete request head in the
//!   buffer is answered in order; `Connection: close` (or HTTP/1.0 without
//!   `keep-alive`) ends the connection after its response; request bodies
//!   (`Content-Length` or chunked, [`BodySkipper`](super::BodySkipper))
//!   are read and discarded as they arrive;
//! - **a request-size cap** ([`Config::max_head`], 8 KiB by default): a head
//!   that does not end within it is answered `431`, a malformed one `400`
//!   (`505` for other HTTP versions, `501` for transfer codings other than
//!   a lone `chunked`, `400` for broken chunk framing), and then
//!   *that* connection is closed: the server shuts its write side, discards
//!   what the client still sends for at most [`Config::linger`] (so that
//!   the client reads the answer instead of a reset), and closes;
//! - **an idle timeout** ([`Config::idle_timeout`]) per connection, with the
//!   poller's timers: [`Poller::add_timer_after`] when a connection is
//!   accepted, [`Poller::reset_timer`] on activity,
//!   [`Poller::cancel_timer`] when it closes;
//! - **back-pressure**: while a response is waiting for the socket to take
//!   it, the connection's interest is [`Interest::WRITABLE`] only, and reads
//!   stop (the read → write → read flip of the userver state machine, which
//!   the poller coalesces);
//! - **every mode**: [`Config::mode`] (edge by default) is used for every
//!   registration; the sources re-arm edge registrations on `WouldBlock`
//!   and after a short read, oneshot registrations are declared again
//!   after each event;
//! - **one `recv` per request**: a read that does not fill the space it was
//!   given ends the connection's round, in every mode: the socket was
//!   empty, [`TcpStream::read`] re-armed an edge registration as
//!   `WouldBlock` would have (the crate docs, "Short reads"), and level
//!   and oneshot registrations are reported again while it is readable.
//!   After an event that reported the peer's end of stream
//!   (`read_closed`) it reads on to end of file instead.
//!   The read on to `WouldBlock` that mio's contract asks for would cost
//!   one more `recv`, answered `EAGAIN`, per request.
//!
//! Tokens: [`LISTENER`], [`WAKER`], then two per connection slot from
//! [`CONN_BASE`]: the socket's and its idle timer's (timers share the
//! poller's token namespace with descriptors). Interleaving them keeps
//! every token small, so the poller finds each by indexing.
//! A closed connection's slot is reused only after the events of the
//! current wait are handled, so a stale event never reaches a new
//! connection.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evmux_interest::{Backend, Event, Events, Interest, Mode, Poller, Token, Waker};

use super::{Body, BodySkipper, Header, Status, Version, parse_request, write_response};
use crate::{TcpListener, TcpStream};

/// The listener's token.
pub const LISTENER: Token = Token(0);
/// The stop waker's token.
pub const WAKER: Token = Token(1);
/// Connection slot `i` is registered under `Token(CONN_BASE + 2 * i)`,
/// and its idle timer is `Token(CONN_BASE + 2 * i + 1)`.
pub const CONN_BASE: usize = 2;

/// The most header fields a request may have (more is `431`).
pub const MAX_HEADERS: usize = 64;

/// Output waiting for the socket beyond which a connection stops reading.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// The server's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// The cap on a request head, in bytes (also each connection's buffer
    /// size): larger heads get `431`.
    pub max_head: usize,
    /// The mode of every registration (edge by default).
    pub mode: Mode,
    /// The body of every `200` response.
    pub body: Vec<u8>,
    /// How long a connection answered with an error (or `Connection:
    /// close`) may keep sending before it is closed.
    pub linger: Duration,
    /// Events collected per wait.
    pub events: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            idle_timeout: Duration::from_secs(10),
            max_head: super::MAX_HEAD,
            mode: Mode::Edge,
            body: b"hello world".to_vec(),
            linger: Duration::from_secs(2),
            events: 256,
        }
    }
}

/// What the server has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Requests answered `200`.
    pub served: u64,
    /// Requests answered with an error status (`400`, `431`, …).
    pub rejected: u64,
    /// Connections closed by the idle timeout.
    pub timed_out: u64,
    /// Connections shed because descriptors ran out (see the crate docs).
    pub shed: u64,
}

/// Stops a running [`Server`] from any thread.
#[derive(Clone, Debug)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Waker,
}

impl StopHandle {
    /// Asks the server to stop: [`Server::run`] returns after the current
    /// wait.
    ///
    /// # Errors
    /// What waking the poller reports.
    pub fn stop(&self) -> io::Result<()> {
        self.flag.store(true, Ordering::SeqCst);
        self.waker.wake()
    }
}

/// One connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// The body still to discard.
    body: BodySkipper,
    /// Shut the write side once `out` is flushed, then drain.
    close_after_flush: bool,
    /// The write side is shut; reads are discarded until end of file.
    draining: bool,
    /// The client shut its write side.
    peer_eof: bool,
    /// The interest last declared.
    interest: Interest,
    /// The idle deadline on the poller's clock.
    deadline: Duration,
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// `WouldBlock`, end of file, or the connection is closing: nothing
    /// more to read now.
    Done,
    /// Too much output waiting: read more once it is flushed.
    Backpressure,
}

/// The precomputed `200` responses.
#[derive(Debug)]
struct Responses {
    /// `[keep-alive 1.1, keep-alive 1.0, close]` × `[with body, head only]`.
    all: [[Vec<u8>; 2]; 3],
}

impl Responses {
    fn new(body: &[u8]) -> Responses {
        let make = |ka, version, with_body| {
            let mut v = Vec::new();
            let extra = "Content-Type: text/plain\r\n";
            write_response(&mut v, 200, extra, body, with_body, ka, version);
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

/// Everything but the events buffer.
#[derive(Debug)]
struct Core<B: Backend> {
    poller: Poller<B>,
    listener: TcpListener,
    config: Config,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Slots closed during the current batch, freed after it.
    closed: Vec<usize>,
    /// Connection buffers kept for reuse.
    spare_bufs: Vec<Box<[u8]>>,
    stop: Arc<AtomicBool>,
    waker: Waker,
    stats: Stats,
    responses: Responses,
}

/// The server: a poller, a listener and the connections.
#[derive(Debug)]
pub struct Server<B: Backend> {
    core: Core<B>,
    events: Events,
}

impl<B: Backend> Server<B> {
    /// A server accepting on `listener` with `poller` (which should have
    /// nothing registered under [`LISTENER`], [`WAKER`] or the connection
    /// and timer ranges).
    ///
    /// # Errors
    /// If the listener cannot be registered or the waker set up.
    pub fn new(
        mut poller: Poller<B>,
        mut listener: TcpListener,
        config: Config,
    ) -> io::Result<Server<B>> {
        listener.register(&mut poller, LISTENER, Interest::READABLE, config.mode)?;
        let waker = poller.waker(WAKER)?;
        let events = Events::with_capacity(config.events);
        Ok(Server {
            core: Core {
                poller,
                listener,
                responses: Responses::new(&config.body),
                config,
                conns: Vec::new(),
                free: Vec::new(),
                closed: Vec::new(),
                spare_bufs: Vec::new(),
                stop: Arc::new(AtomicBool::new(false)),
                waker,
                stats: Stats::default(),
            },
            events,
        })
    }

    /// The address the server listens on.
    ///
    /// # Errors
    /// What `getsockname` reports.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.core.listener.local_addr()
    }

    /// A handle that stops [`run`](Server::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: self.core.stop.clone(),
            waker: self.core.waker.clone(),
        }
    }

    /// What the server has done so far.
    pub fn stats(&self) -> Stats {
        Stats {
            shed: self.core.listener.shed_count(),
            ..self.core.stats
        }
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.core.conns.iter().filter(|c| c.is_some()).count()
    }

    /// The poller (to inspect it, or to register more sources outside the
    /// server's token ranges).
    pub fn poller(&self) -> &Poller<B> {
        &self.core.poller
    }

    /// Serves until [`StopHandle::stop`] is called, then closes every
    /// connection.
    ///
    /// # Errors
    /// A failure of the wait itself. Per-connection errors only close that
    /// connection.
    pub fn run(&mut self) -> io::Result<()> {
        while self.turn(None)? {}
        self.close_all();
        Ok(())
    }

    /// One wait (up to `timeout`) and the handling of its events. Returns
    /// `false` once stopped.
    ///
    /// # Errors
    /// As [`run`](Server::run).
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        if self.core.stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.core.poller.get_next_event(&mut self.events, timeout)?;
        for ev in self.events.iter() {
            self.core.handle(ev);
        }
        let core = &mut self.core;
        core.free.append(&mut core.closed);
        Ok(!core.stop.load(Ordering::SeqCst))
    }

    /// Closes every connection.
    pub fn close_all(&mut self) {
        for i in 0..self.core.conns.len() {
            self.core.close(i);
        }
        let core = &mut self.core;
        core.free.append(&mut core.closed);
    }
}

fn conn_token(i: usize) -> Token {
    Token(CONN_BASE + 2 * i)
}

fn timer_token(i: usize) -> Token {
    Token(CONN_BASE + 2 * i + 1)
}

impl<B: Backend> Core<B> {
    fn handle(&mut self, ev: &Event) {
        match ev.token {
            LISTENER => self.accept_all(),
            WAKER => {}
            Token(t) if (t - CONN_BASE) % 2 == 1 => self.on_timer((t - CONN_BASE) / 2),
            Token(t) => self.on_conn((t - CONN_BASE) / 2, ev),
        }
    }

    fn accept_all(&mut self) {
        loop {
            let shed_before = self.listener.shed_count();
            match self.listener.accept(&mut self.poller) {
                Ok((stream, _)) => self.add(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // One pending connection was shed; go on draining the
                // backlog. Without a spare (none could be reopened), stop
                // and come back at the next report.
                Err(e)
                    if crate::sys::is_fd_exhaustion(&e)
                        && self.listener.shed_count() > shed_before => {}
                Err(_) => {
                    // ENOBUFS, ENOMEM, …: declare again so that an edge
                    // registration reports the backlog again.
                    let _ = self.listener.reregister(
                        &mut self.poller,
                        Interest::READABLE,
                        self.config.mode,
                    );
                    return;
                }
            }
        }
        if self.config.mode == Mode::Oneshot {
            let _ = self
                .listener
                .reregister(&mut self.poller, Interest::READABLE, Mode::Oneshot);
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
        let mode = self.config.mode;
        if stream
            .register(&mut self.poller, conn_token(i), Interest::READABLE, mode)
            .is_err()
        {
            self.free.push(i);
            return;
        }
        let deadline = self.poller.now() + self.config.idle_timeout;
        if self.poller.add_timer(timer_token(i), deadline).is_err() {
            let _ = stream.deregister(&mut self.poller);
            self.free.push(i);
            return;
        }
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
            interest: Interest::READABLE,
            deadline,
        });
        self.stats.accepted += 1;
    }

    fn close(&mut self, i: usize) {
        let Some(mut conn) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = conn.stream.deregister(&mut self.poller);
        // The timer may have fired already (its event is then in this
        // batch, and finds the slot empty).
        let _ = self.poller.cancel_timer(timer_token(i));
        if self.spare_bufs.len() < 64 {
            self.spare_bufs.push(std::mem::take(&mut conn.buf));
        }
        self.closed.push(i);
        self.stats.closed += 1;
    }

    fn on_timer(&mut self, i: usize) {
        let now = self.poller.now();
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if now >= conn.deadline {
            if !conn.draining {
                self.stats.timed_out += 1;
            }
            self.close(i);
        } else {
            // Activity moved the deadline after this timer had fired.
            let deadline = conn.deadline;
            let _ = self.poller.add_timer(timer_token(i), deadline);
        }
    }

    fn on_conn(&mut self, i: usize, ev: &Event) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let readable = ev.readable || ev.error;
        // The peer's end of stream may wait behind the data with no new
        // edge to come: read on to it (crate docs, "Short reads").
        let closed = ev.read_closed || ev.error;
        let mut active = false;
        let result = drive(
            i,
            conn,
            &mut self.poller,
            &self.config,
            &mut self.stats,
            &self.responses,
            readable,
            closed,
            &mut active,
        );
        match result {
            Ok(true) => {
                if active && !conn.draining {
                    conn.deadline = self.poller.now() + self.config.idle_timeout;
                    // Fails only if the timer fired in this batch: then
                    // `on_timer` sees the new deadline and sets it again.
                    let _ = self.poller.reset_timer(timer_token(i), conn.deadline);
                }
            }
            Ok(false) | Err(_) => self.close(i),
        }
    }
}

/// Handles readiness on one connection. `Ok(false)`: close it.
#[allow(clippy::too_many_arguments)]
fn drive<B: Backend>(
    i: usize,
    conn: &mut Conn,
    poller: &mut Poller<B>,
    config: &Config,
    stats: &mut Stats,
    responses: &Responses,
    readable: bool,
    closed: bool,
    active: &mut bool,
) -> io::Result<bool> {
    let mut read_more = readable;
    loop {
        if read_more {
            read_more = false;
            if conn.draining {
                if drain(conn, poller)? {
                    return Ok(false);
                }
            } else {
                let stop = read_requests(conn, poller, stats, responses, !closed, active)?;
                read_more = stop == Stop::Backpressure;
            }
        }
        flush(conn, poller, active)?;
        if conn.out_pos < conn.out.len() {
            break;
        }
        conn.out.clear();
        conn.out_pos = 0;
        if conn.draining {
            break;
        }
        if conn.close_after_flush {
            // Answered for the last time: shut our side so the client sees
            // the end of the response, and discard what it still sends so
            // that closing does not reset the connection under the answer.
            let _ = conn.stream.shutdown(Shutdown::Write);
            conn.draining = true;
            if conn.peer_eof {
                return Ok(false);
            }
            conn.deadline = poller.now() + config.linger.min(config.idle_timeout);
            // Fails only if the timer fired in this batch: then `on_timer`
            // sees the new deadline and sets it again.
            let _ = poller.reset_timer(timer_token(i), conn.deadline);
            read_more = true;
            continue;
        }
        if conn.peer_eof {
            // The client is done sending and everything is answered.
            return Ok(false);
        }
        if !read_more {
            break;
        }
    }
    let want = if conn.out_pos < conn.out.len() {
        Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    if want != conn.interest || config.mode == Mode::Oneshot {
        conn.stream.reregister(poller, want, config.mode)?;
        conn.interest = want;
    }
    Ok(true)
}

/// Reads and answers requests until `WouldBlock`, end of file, an error
/// response, or back-pressure.
fn read_requests<B: Backend>(
    conn: &mut Conn,
    poller: &mut Poller<B>,
    stats: &mut Stats,
    responses: &Responses,
    stop_short: bool,
    active: &mut bool,
) -> io::Result<Stop> {
    // With `stop_short`, a read that did not fill the space it was given
    // ends the round: the socket was empty (`TcpStream::read` re-armed an
    // edge registration, as `WouldBlock` would have; level and oneshot
    // registrations are reported again while it is readable), so the read
    // that would only answer `EAGAIN` (one more `recv` per request) is not
    // made. Not after a report of the peer's end of stream: that stays
    // readable with no new edge.
    let mut short = false;
    loop {
        skip_body(conn, stats);
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
                    stats.served += 1;
                    conn.start += head_len;
                    if !keep_alive {
                        conn.close_after_flush = true;
                    }
                    skip_body(conn, stats);
                }
                Ok(Status::Partial) => break,
                Err(e) => reject(conn, stats, e.status()),
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
            // A full buffer holds a complete head or is an error: the parser
            // never says Partial at the limit. Defensive.
            reject(conn, stats, 431);
            return Ok(Stop::Done);
        }
        if short {
            return Ok(Stop::Done);
        }
        let space = conn.buf.len() - conn.end;
        match conn.stream.read(poller, &mut conn.buf[conn.end..]) {
            Ok(0) => {
                conn.peer_eof = true;
                return Ok(Stop::Done);
            }
            Ok(n) => {
                conn.end += n;
                *active = true;
                short = stop_short && n < space;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Stop::Done),
            Err(e) => return Err(e),
        }
    }
}

/// Queues an error response and marks the connection for closing.
fn reject(conn: &mut Conn, stats: &mut Stats, status: u16) {
    let reason = super::reason(status);
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
    stats.rejected += 1;
    conn.close_after_flush = true;
    // Whatever follows in the buffer is not looked at.
    conn.start = conn.end;
}

/// Discards buffered body bytes; broken chunk framing is answered (400,
/// or 431 for oversized extensions or trailers) and closes the connection.
fn skip_body(conn: &mut Conn, stats: &mut Stats) {
    match conn.body.skip(&conn.buf[conn.start..conn.end]) {
        Ok(n) => conn.start += n,
        Err(e) => reject(conn, stats, e.status()),
    }
}

/// Discards input until `WouldBlock` (`Ok(false)`) or end of file
/// (`Ok(true)`).
fn drain<B: Backend>(conn: &mut Conn, poller: &mut Poller<B>) -> io::Result<bool> {
    loop {
        match conn.stream.read(poller, &mut conn.buf[..]) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Writes pending output until done or `WouldBlock`.
fn flush<B: Backend>(conn: &mut Conn, poller: &mut Poller<B>, active: &mut bool) -> io::Result<()> {
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(poller, &conn.out[conn.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.out_pos += n;
                *active = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
