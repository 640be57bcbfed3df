//! `churn`: the userver state machine of seed 001 (Brecht, "Preliminary
//! Experiments with epoll on Linux 2.6.0").
//!
//! `CONNS` socket pairs are the connections; the server watches one end of
//! each, a client in the same thread drives the other. `IN_FLIGHT`
//! requests are outstanding at any time, spread over all connections: when
//! the server has replied on a connection, the client reads the reply at
//! once and sends the next request on the least recently used idle
//! connection, so every connection keeps going through
//! read → write → read. Each request is 64 bytes, each reply 128.
//!
//! The server is written as `001_*.txt`'s is, with interest following the
//! state: after reading a request it wants to hear about writability only,
//! after replying about readability only. How each subject does that:
//!
//! - `raw-epoll`, mode `ctl-every-change`: the seed's "epoll": one
//!   `EPOLL_CTL_MOD` per state change (two per request);
//! - `raw-poll`, mode `level`: the `pollfd`'s `events` edited in place;
//! - `evmux-<backend>`, mode `level`: `declare_interest` on each flip,
//!   level-triggered; mode `edge`: the same flips with `Mode::Edge`,
//!   reading until `WouldBlock` and telling the poller (`would_block`);
//! - `mio`, mode `edge-once`: mio as it is meant to be used: registered
//!   once for both directions, edge-triggered; the program remembers that
//!   the socket is writable and writes the reply at once (waiting for a
//!   writable event that an edge registration will never repeat would
//!   stall); `raw-epoll`, mode `edge-once`, is the same program on raw
//!   epoll (Brecht's "epoll2", made edge-triggered): its floor;
//! - `polling`, mode `oneshot`: re-armed with `modify` for the direction
//!   the state wants, after every event;
//! - mode `tracked-short-read` (evmux) and `edge-once-short-read` (mio,
//!   raw epoll): the same programs as `tracked` and `edge-once`, except
//!   that a read which does not fill the buffer ends the reading, where the
//!   others read on until `WouldBlock` (one more `read`, answered
//!   `EAGAIN`, per request). On these stream socketpairs, which never carry
//!   descriptors or credentials, a short read leaves the socket empty, and
//!   new data makes a new edge: the evmux program then calls
//!   `would_block` itself. mio's docs do not promise the next event after
//!   a short read ("Draining readiness"; tokio-rs/mio#1611), so `mio
//!   edge-once` stays the target's baseline and the short-read program is
//!   reported beside it (tokio does the same on Unix).
//!
//! An *event* in the figures is one request served (read, reply). The
//! client's I/O is done with `recv(2)`/`write(2)` straight through rustix,
//! the server's with `read(2)`/`send(2)` through `evmux-sys`, so that the
//! syscall counter (and strace, for mio and polling, whose syscalls the
//! counter cannot see) tells the server's syscalls apart.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use evmux_backends::{AnyBackend, BackendKind, PollerExt};
use evmux_interest::{Events, Interest, Mode, Poller, Token};
use evmux_sys::counter::{self, Counts, SyscallKind};
use evmux_sys::epoll::{Epoll, EpollEvent, flags as epf};
use evmux_sys::fd;
use evmux_sys::poll::{self as spoll, PollFd};

use crate::bench_mux::{self, Pairs, Roster, Subject, Target, num, round_to};
use crate::json::Json;

/// Connections.
pub const CONNS: usize = 1000;
/// Requests outstanding at any time.
pub const IN_FLIGHT: usize = 100;
const REQUEST: [u8; 64] = [b'q'; 64];
const REPLY: [u8; 128] = [b'r'; 128];
/// A wait that sees nothing for this long means the program is stuck.
const STALL: Option<Duration> = Some(Duration::from_secs(2));

const READ: u8 = 0;
const WRITE: u8 = 1;

/// How an evmux churn program follows the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvMode {
    /// `declare_interest` on each flip, `Mode::Level`; one read per report.
    Level,
    /// `declare_interest` on each flip, `Mode::Edge`; reads until
    /// `WouldBlock`, then `would_block`.
    Edge,
    /// `Mode::Level` with `Poller::track_readiness` (readiness kept in user
    /// space): reads until `WouldBlock` and calls `would_block`, as
    /// `evmux-net`'s sources do; the flips are `declare_interest` calls that
    /// reach no kernel on a backend with native edges.
    Tracked,
    /// As `Tracked`, but a read that does not fill the buffer ends the
    /// reading, and the program calls `would_block` after it (see the
    /// module docs).
    TrackedShortRead,
}

/// A churn program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChurnSubject {
    /// `raw-epoll`, `ctl-every-change`.
    RawEpollCtl,
    /// `raw-poll`, `level`.
    RawPoll,
    /// `raw-epoll`, `edge-once`.
    RawEpollEdgeOnce,
    /// `raw-epoll`, `edge-once-short-read`.
    RawEpollEdgeOnceShort,
    /// `evmux-<kind>`, `level`, `edge` or `tracked`.
    Evmux(BackendKind, EvMode),
    /// `mio`, `edge-once`.
    Mio,
    /// `mio`, `edge-once-short-read`.
    MioShort,
    /// `polling`, `oneshot`.
    Polling,
}

impl ChurnSubject {
    /// The subject name.
    pub fn subject(self) -> &'static str {
        match self {
            ChurnSubject::RawEpollCtl
            | ChurnSubject::RawEpollEdgeOnce
            | ChurnSubject::RawEpollEdgeOnceShort => "raw-epoll",
            ChurnSubject::RawPoll => "raw-poll",
            ChurnSubject::Evmux(k, _) => Subject::Evmux(k).name(),
            ChurnSubject::Mio | ChurnSubject::MioShort => "mio",
            ChurnSubject::Polling => "polling",
        }
    }

    /// How it follows the state.
    pub fn mode(self) -> &'static str {
        match self {
            ChurnSubject::RawEpollCtl => "ctl-every-change",
            ChurnSubject::RawPoll => "level",
            ChurnSubject::RawEpollEdgeOnce | ChurnSubject::Mio => "edge-once",
            ChurnSubject::RawEpollEdgeOnceShort | ChurnSubject::MioShort => "edge-once-short-read",
            ChurnSubject::Evmux(_, EvMode::Level) => "level",
            ChurnSubject::Evmux(_, EvMode::Edge) => "edge",
            ChurnSubject::Evmux(_, EvMode::Tracked) => "tracked",
            ChurnSubject::Evmux(_, EvMode::TrackedShortRead) => "tracked-short-read",
            ChurnSubject::Polling => "oneshot",
        }
    }

    /// `subject/mode`, as the internal count command takes it.
    pub fn id(self) -> String {
        format!("{}/{}", self.subject(), self.mode())
    }

    /// Whether evmux's syscall counter sees its multiplexing syscalls.
    pub fn counter_sees_it(self) -> bool {
        !matches!(
            self,
            ChurnSubject::Mio | ChurnSubject::MioShort | ChurnSubject::Polling
        )
    }

    /// Every program over the roster's subjects.
    pub fn all(roster: &Roster) -> Vec<ChurnSubject> {
        let mut v = Vec::new();
        for s in &roster.subjects {
            match *s {
                Subject::RawEpoll => {
                    v.push(ChurnSubject::RawEpollCtl);
                    v.push(ChurnSubject::RawEpollEdgeOnce);
                    v.push(ChurnSubject::RawEpollEdgeOnceShort);
                }
                Subject::RawPoll => v.push(ChurnSubject::RawPoll),
                Subject::Evmux(k) => {
                    v.push(ChurnSubject::Evmux(k, EvMode::Level));
                    v.push(ChurnSubject::Evmux(k, EvMode::Edge));
                    v.push(ChurnSubject::Evmux(k, EvMode::Tracked));
                    v.push(ChurnSubject::Evmux(k, EvMode::TrackedShortRead));
                }
                Subject::Mio => {
                    v.push(ChurnSubject::Mio);
                    v.push(ChurnSubject::MioShort);
                }
                Subject::Polling => v.push(ChurnSubject::Polling),
            }
        }
        v
    }
}

/// The connections and the client.
struct World<'a> {
    s: &'a [OwnedFd],
    c: &'a [OwnedFd],
    idle: VecDeque<u32>,
    issued: u64,
    served: u64,
    limit: u64,
    failures: u64,
    buf: [u8; 512],
}

impl<'a> World<'a> {
    fn new(pairs: &'a Pairs) -> World<'a> {
        World {
            s: &pairs.r[..CONNS],
            c: &pairs.w[..CONNS],
            idle: (0..CONNS as u32).collect(),
            issued: 0,
            served: 0,
            limit: 0,
            failures: 0,
            buf: [0; 512],
        }
    }

    /// Starts a round of `limit` requests: the first `IN_FLIGHT` are sent.
    fn start(&mut self, limit: u64) {
        self.issued = 0;
        self.served = 0;
        self.limit = limit;
        for _ in 0..IN_FLIGHT.min(limit as usize) {
            self.issue();
        }
    }

    /// The client sends a request on the least recently used idle
    /// connection.
    #[inline(always)]
    fn issue(&mut self) {
        if let Some(j) = self.idle.pop_front() {
            match rustix::io::write(&self.c[j as usize], &REQUEST) {
                Ok(64) => self.issued += 1,
                _ => self.failures += 1,
            }
        }
    }

    /// The server reads once; whether a request came.
    #[inline(always)]
    fn read_once(&mut self, i: usize) -> bool {
        match fd::read(&self.s[i], &mut self.buf) {
            Ok(1..) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            _ => {
                self.failures += 1;
                false
            }
        }
    }

    /// The server reads until `WouldBlock`; whether a request came.
    #[inline(always)]
    fn read_drain(&mut self, i: usize) -> bool {
        let mut got = false;
        loop {
            match fd::read(&self.s[i], &mut self.buf) {
                Ok(1..) => got = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                _ => {
                    self.failures += 1;
                    return got;
                }
            }
        }
    }

    /// The server reads until a read does not fill the buffer (or
    /// `WouldBlock`); whether a request came.
    #[inline(always)]
    fn read_short(&mut self, i: usize) -> bool {
        let mut got = false;
        loop {
            match fd::read(&self.s[i], &mut self.buf) {
                Ok(n) if n == self.buf.len() => got = true,
                Ok(1..) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                _ => {
                    self.failures += 1;
                    return got;
                }
            }
        }
    }

    /// The server replies; `false` if the socket would block. Then the
    /// client reads the reply and issues the next request.
    #[inline(always)]
    fn reply(&mut self, i: usize) -> bool {
        match fd::send(&self.s[i], &REPLY) {
            Ok(128) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            _ => self.failures += 1,
        }
        self.served += 1;
        match rustix::net::recv(
            &self.c[i],
            &mut self.buf[..],
            rustix::net::RecvFlags::empty(),
        ) {
            Ok((128, _)) => {}
            _ => self.failures += 1,
        }
        self.idle.push_back(i as u32);
        if self.issued < self.limit {
            self.issue();
        }
        true
    }

    #[inline(always)]
    fn done(&self) -> bool {
        self.served >= self.limit
    }
}

// Unboxed on purpose, as `bench_mux::Mux`.
#[allow(clippy::large_enum_variant)]
enum ChurnMux {
    RawEpollCtl {
        ep: Epoll,
        buf: Vec<EpollEvent>,
        state: Vec<u8>,
    },
    RawEpollEdgeOnce {
        ep: Epoll,
        buf: Vec<EpollEvent>,
        state: Vec<u8>,
        writable: Vec<bool>,
        short: bool,
    },
    RawPoll {
        fds: Vec<PollFd>,
        state: Vec<u8>,
    },
    Evmux {
        poller: Poller<AnyBackend>,
        events: Events,
        state: Vec<u8>,
        how: EvMode,
    },
    Mio {
        poll: mio::Poll,
        events: mio::Events,
        state: Vec<u8>,
        writable: Vec<bool>,
        short: bool,
    },
    Polling {
        poller: polling::Poller,
        events: polling::Events,
        state: Vec<u8>,
    },
}

#[allow(unsafe_code)]
fn polling_add(poller: &polling::Poller, fd: &OwnedFd, key: usize) -> io::Result<()> {
    // SAFETY: polling's contract for `add` is that the source is deleted
    // from the poller before it is closed: the descriptors belong to a
    // `Pairs` that outlives the `ChurnMux`, and `ChurnMux::close` deletes
    // every one of them (a `ChurnMux` dropped early closes the epoll set,
    // which drops its registrations).
    unsafe { poller.add(fd.as_raw_fd(), polling::Event::readable(key)) }
}

impl ChurnMux {
    fn open(subject: ChurnSubject, s: &[OwnedFd]) -> Result<ChurnMux> {
        let state = vec![READ; s.len()];
        Ok(match subject {
            ChurnSubject::RawEpollCtl => {
                let ep = Epoll::new()?;
                for (i, f) in s.iter().enumerate() {
                    ep.add_raw(f.as_raw_fd(), epf::EPOLLIN, i as u64)?;
                }
                ChurnMux::RawEpollCtl {
                    ep,
                    buf: Vec::with_capacity(s.len()),
                    state,
                }
            }
            ChurnSubject::RawEpollEdgeOnce | ChurnSubject::RawEpollEdgeOnceShort => {
                let ep = Epoll::new()?;
                for (i, f) in s.iter().enumerate() {
                    ep.add_raw(
                        f.as_raw_fd(),
                        epf::EPOLLIN | epf::EPOLLOUT | epf::EPOLLRDHUP | epf::EPOLLET,
                        i as u64,
                    )?;
                }
                ChurnMux::RawEpollEdgeOnce {
                    ep,
                    buf: Vec::with_capacity(s.len()),
                    state,
                    writable: vec![false; s.len()],
                    short: subject == ChurnSubject::RawEpollEdgeOnceShort,
                }
            }
            ChurnSubject::RawPoll => ChurnMux::RawPoll {
                fds: s
                    .iter()
                    .map(|f| PollFd::new(f.as_raw_fd(), spoll::POLLIN))
                    .collect(),
                state,
            },
            ChurnSubject::Evmux(kind, how) => {
                let mut poller = Poller::with_backend(kind)?;
                let mode = if how == EvMode::Edge {
                    Mode::Edge
                } else {
                    Mode::Level
                };
                for (i, f) in s.iter().enumerate() {
                    poller
                        .declare_interest(f.as_raw_fd(), Token(i), Interest::READABLE, mode)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", subject.id()))?;
                    if matches!(how, EvMode::Tracked | EvMode::TrackedShortRead) {
                        poller
                            .track_readiness(Token(i))
                            .map_err(|e| anyhow::anyhow!("{}: {e}", subject.id()))?;
                    }
                }
                ChurnMux::Evmux {
                    poller,
                    events: Events::with_capacity(s.len()),
                    state,
                    how,
                }
            }
            ChurnSubject::Mio | ChurnSubject::MioShort => {
                let poll = mio::Poll::new()?;
                for (i, f) in s.iter().enumerate() {
                    poll.registry().register(
                        &mut mio::unix::SourceFd(&f.as_raw_fd()),
                        mio::Token(i),
                        mio::Interest::READABLE | mio::Interest::WRITABLE,
                    )?;
                }
                ChurnMux::Mio {
                    poll,
                    events: mio::Events::with_capacity(s.len()),
                    state,
                    writable: vec![false; s.len()],
                    short: subject == ChurnSubject::MioShort,
                }
            }
            ChurnSubject::Polling => {
                let poller = polling::Poller::new()?;
                for (i, f) in s.iter().enumerate() {
                    polling_add(&poller, f, i)?;
                }
                ChurnMux::Polling {
                    poller,
                    events: polling::Events::with_capacity(
                        std::num::NonZeroUsize::new(s.len()).expect("connections"),
                    ),
                    state,
                }
            }
        })
    }

    /// One wait and its handling; returns the number of reports.
    #[inline(never)]
    fn step(&mut self, w: &mut World<'_>, timeout: Option<Duration>) -> io::Result<usize> {
        match self {
            ChurnMux::RawEpollCtl { ep, buf, state } => {
                let n = ep.wait(buf, timeout)?;
                for e in buf.iter() {
                    let i = e.data() as usize;
                    let bits = e.events();
                    if state[i] == READ {
                        if bits & (epf::EPOLLIN | epf::EPOLLHUP | epf::EPOLLERR) != 0
                            && w.read_once(i)
                        {
                            state[i] = WRITE;
                            ep.modify_raw(w.s[i].as_raw_fd(), epf::EPOLLOUT, i as u64)?;
                        }
                    } else if bits & (epf::EPOLLOUT | epf::EPOLLERR) != 0 && w.reply(i) {
                        state[i] = READ;
                        ep.modify_raw(w.s[i].as_raw_fd(), epf::EPOLLIN, i as u64)?;
                    }
                }
                Ok(n)
            }
            ChurnMux::RawEpollEdgeOnce {
                ep,
                buf,
                state,
                writable,
                short,
            } => {
                let n = ep.wait(buf, timeout)?;
                for e in buf.iter() {
                    let i = e.data() as usize;
                    let bits = e.events();
                    if bits & (epf::EPOLLOUT | epf::EPOLLERR) != 0 {
                        writable[i] = true;
                    }
                    if state[i] == READ
                        && bits & (epf::EPOLLIN | epf::EPOLLHUP | epf::EPOLLERR) != 0
                        && if *short {
                            w.read_short(i)
                        } else {
                            w.read_drain(i)
                        }
                    {
                        state[i] = WRITE;
                    }
                    if state[i] == WRITE && writable[i] {
                        if w.reply(i) {
                            state[i] = READ;
                        } else {
                            writable[i] = false;
                        }
                    }
                }
                Ok(n)
            }
            ChurnMux::RawPoll { fds, state } => {
                let n = spoll::poll(fds, timeout)?;
                let mut left = n;
                for i in 0..fds.len() {
                    if left == 0 {
                        break;
                    }
                    if fds[i].revents == 0 {
                        continue;
                    }
                    left -= 1;
                    if state[i] == READ {
                        if w.read_once(i) {
                            state[i] = WRITE;
                            fds[i].events = spoll::POLLOUT;
                        }
                    } else if w.reply(i) {
                        state[i] = READ;
                        fds[i].events = spoll::POLLIN;
                    }
                }
                Ok(n)
            }
            ChurnMux::Evmux {
                poller,
                events,
                state,
                how,
            } => {
                let n = poller.get_next_event(events, timeout)?;
                let (mode, drain) = match how {
                    EvMode::Level => (Mode::Level, false),
                    EvMode::Edge => (Mode::Edge, true),
                    EvMode::Tracked | EvMode::TrackedShortRead => (Mode::Level, true),
                };
                let short = *how == EvMode::TrackedShortRead;
                for ev in events.iter() {
                    let i = ev.token.0;
                    let fd = w.s[i].as_raw_fd();
                    if ev.error {
                        w.failures += 1;
                    }
                    if state[i] == READ && ev.readable {
                        let got = if drain {
                            let got = if short {
                                w.read_short(i)
                            } else {
                                w.read_drain(i)
                            };
                            poller
                                .would_block(ev.token, Interest::READABLE)
                                .map_err(io::Error::other)?;
                            got
                        } else {
                            w.read_once(i)
                        };
                        if got {
                            state[i] = WRITE;
                            poller
                                .declare_interest(fd, ev.token, Interest::WRITABLE, mode)
                                .map_err(io::Error::other)?;
                        }
                    } else if state[i] == WRITE && ev.writable {
                        if w.reply(i) {
                            state[i] = READ;
                            poller
                                .declare_interest(fd, ev.token, Interest::READABLE, mode)
                                .map_err(io::Error::other)?;
                        } else if drain {
                            poller
                                .would_block(ev.token, Interest::WRITABLE)
                                .map_err(io::Error::other)?;
                        }
                    }
                }
                Ok(n)
            }
            ChurnMux::Mio {
                poll,
                events,
                state,
                writable,
                short,
            } => {
                poll.poll(events, timeout)?;
                let mut n = 0;
                for ev in events.iter() {
                    n += 1;
                    let i = ev.token().0;
                    if ev.is_writable() || ev.is_error() {
                        writable[i] = true;
                    }
                    if state[i] == READ
                        && (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                        && if *short {
                            w.read_short(i)
                        } else {
                            w.read_drain(i)
                        }
                    {
                        state[i] = WRITE;
                    }
                    if state[i] == WRITE && writable[i] {
                        if w.reply(i) {
                            state[i] = READ;
                        } else {
                            writable[i] = false;
                        }
                    }
                }
                Ok(n)
            }
            ChurnMux::Polling {
                poller,
                events,
                state,
            } => {
                events.clear();
                let n = poller.wait(events, timeout)?;
                for ev in events.iter() {
                    let i = ev.key;
                    if state[i] == READ && ev.readable {
                        if w.read_once(i) {
                            state[i] = WRITE;
                        }
                    } else if state[i] == WRITE && ev.writable && w.reply(i) {
                        state[i] = READ;
                    }
                    let want = if state[i] == READ {
                        polling::Event::readable(i)
                    } else {
                        polling::Event::writable(i)
                    };
                    poller.modify(&w.s[i], want)?;
                }
                Ok(n)
            }
        }
    }

    /// Handles whatever is reported at once (the registration's first
    /// writable edges, for the edge programs).
    fn prime(&mut self, w: &mut World<'_>) -> io::Result<()> {
        for _ in 0..8 {
            if self.step(w, bench_mux::ZERO)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// One round of `requests`; returns (elapsed, waits).
    fn round(&mut self, w: &mut World<'_>, requests: u64) -> Result<(Duration, u64)> {
        w.start(requests);
        let mut waits = 0u64;
        let t0 = Instant::now();
        while !w.done() {
            let n = self.step(w, STALL)?;
            waits += 1;
            if n == 0 {
                bail!("stalled: {} of {} requests served", w.served, w.limit);
            }
        }
        let dt = t0.elapsed();
        if w.failures != 0 {
            bail!("{} failed I/O calls", w.failures);
        }
        Ok((dt, waits))
    }

    fn close(self, s: &[OwnedFd]) -> Result<()> {
        match self {
            ChurnMux::Polling { poller, .. } => {
                for f in s {
                    poller.delete(f)?;
                }
            }
            ChurnMux::Evmux {
                mut poller,
                mut events,
                ..
            } => {
                for i in 0..s.len() {
                    poller.forget(Token(i))?;
                }
                poller.get_next_event(&mut events, bench_mux::ZERO)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The sweep.
#[derive(Debug, Clone)]
pub struct ChurnOpts {
    /// Requests per timed round.
    pub requests: u64,
    /// Blocks (one turn per subject each, rotated).
    pub blocks: usize,
    /// Timed rounds per turn.
    pub rounds_per_turn: usize,
    /// Requests per strace run (the second run does twice as many).
    pub strace_requests: u64,
}

impl ChurnOpts {
    /// Full.
    pub fn full() -> ChurnOpts {
        ChurnOpts {
            requests: 10_000,
            blocks: 4,
            rounds_per_turn: 4,
            strace_requests: 5_000,
        }
    }

    /// Quick.
    pub fn quick() -> ChurnOpts {
        ChurnOpts {
            requests: 5_000,
            blocks: 3,
            rounds_per_turn: 3,
            strace_requests: 2_000,
        }
    }
}

/// Syscalls per request, by where they were counted.
#[derive(Debug, Clone, Default)]
pub struct PerRequest {
    /// Interest changes (`epoll_ctl`).
    pub ctl: f64,
    /// Every multiplexing syscall: `epoll_ctl`, `epoll_wait`, `poll`,
    /// `select`, `io_uring_enter` (and polling's `timerfd_settime`).
    pub mux: f64,
    /// Everything the server does, its reads and sends included.
    pub total: f64,
    /// `io_uring_enter`.
    pub uring_enter: f64,
    /// `"counter"`, `"strace"` or `"not counted"`.
    pub by: &'static str,
}

/// One program's figures.
#[derive(Debug, Clone)]
pub struct ChurnResult {
    /// Which.
    pub subject: ChurnSubject,
    /// Requests per second per timed round.
    pub rps: Vec<f64>,
    /// Requests per second of the thread's CPU time, per timed round.
    pub cpu_rps: Vec<f64>,
    /// Waits per request (median over rounds).
    pub waits_per_request: f64,
    /// Syscalls.
    pub per_request: PerRequest,
    /// Rounds run again because the thread was preempted.
    pub retried: u64,
}

impl ChurnResult {
    /// Median requests per second.
    pub fn median_rps(&self) -> f64 {
        bench_mux::median(&self.rps)
    }
}

/// Everything `churn` measured.
#[derive(Debug, Clone, Default)]
pub struct ChurnReport {
    /// Per program.
    pub results: Vec<ChurnResult>,
    /// Requests per timed round.
    pub requests: u64,
}

fn mux_of(c: &Counts) -> (f64, f64, f64, f64) {
    let ctl = c.get(SyscallKind::EpollCtl) as f64;
    let mux = ctl
        + (c.get(SyscallKind::EpollWait)
            + c.get(SyscallKind::Poll)
            + c.get(SyscallKind::Select)
            + c.get(SyscallKind::IoUringEnter)) as f64;
    (
        ctl,
        mux,
        c.total() as f64,
        c.get(SyscallKind::IoUringEnter) as f64,
    )
}

/// Runs every program.
pub fn run(
    opts: &ChurnOpts,
    roster: &Roster,
    nofile: u64,
    tick: &mut dyn FnMut(String),
) -> Result<ChurnReport> {
    let pairs = Pairs::new(CONNS, nofile)?;
    let subjects = ChurnSubject::all(roster);
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let mut wpr: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let mut counts: Vec<[f64; 4]> = vec![[0.0; 4]; subjects.len()];
    let mut served: Vec<u64> = vec![0; subjects.len()];
    let mut retried: Vec<u64> = vec![0; subjects.len()];
    let mut cpu_rps: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let order: Vec<(usize, ChurnSubject)> = subjects.iter().copied().enumerate().collect();
    for block in 0..opts.blocks {
        for (si, subject) in bench_mux::rotated(&order, block) {
            let mut w = World::new(&pairs);
            let mut mux = ChurnMux::open(subject, w.s)?;
            mux.prime(&mut w)?;
            // Warm-up round, untimed.
            mux.round(&mut w, opts.requests)
                .with_context(|| format!("churn {}", subject.id()))?;
            for _ in 0..opts.rounds_per_turn {
                let mut attempt = 1;
                let (c0, c1, dt, dc, waits) = loop {
                    let c0 = counter::snapshot();
                    let cpu0 = bench_mux::thread_cpu();
                    let (dt, waits) = mux
                        .round(&mut w, opts.requests)
                        .with_context(|| format!("churn {}", subject.id()))?;
                    let dc = bench_mux::thread_cpu().saturating_sub(cpu0);
                    let c1 = counter::snapshot();
                    if attempt < bench_mux::ATTEMPTS && bench_mux::disturbed(dt, dc) {
                        attempt += 1;
                        retried[si] += 1;
                        continue;
                    }
                    break (c0, c1, dt, dc, waits);
                };
                let (ctl, mux, total, ue) = mux_of(&(c1 - c0));
                for (acc, x) in counts[si].iter_mut().zip([ctl, mux, total, ue]) {
                    *acc += x;
                }
                served[si] += w.served;
                rps[si].push(w.served as f64 / dt.as_secs_f64());
                cpu_rps[si].push(w.served as f64 / dc.as_secs_f64());
                wpr[si].push(waits as f64 / w.served as f64);
            }
            mux.close(w.s)?;
            tick(format!("churn {}", subject.id()));
        }
    }
    let mut report = ChurnReport {
        requests: opts.requests,
        ..ChurnReport::default()
    };
    for (si, &subject) in subjects.iter().enumerate() {
        let per_request = if subject.counter_sees_it() {
            let [ctl, mux, total, ue] = counts[si];
            let k = served[si] as f64;
            PerRequest {
                ctl: ctl / k,
                mux: mux / k,
                total: total / k,
                uring_enter: ue / k,
                by: "counter",
            }
        } else {
            tick(format!("churn strace {}", subject.id()));
            strace_per_request(subject, opts.strace_requests)?.unwrap_or(PerRequest {
                ctl: f64::NAN,
                mux: f64::NAN,
                total: f64::NAN,
                uring_enter: f64::NAN,
                by: "not counted (no strace)",
            })
        };
        report.results.push(ChurnResult {
            subject,
            rps: rps[si].clone(),
            cpu_rps: cpu_rps[si].clone(),
            waits_per_request: bench_mux::median(&wpr[si]),
            per_request,
            retried: retried[si],
        });
    }
    Ok(report)
}

/// The syscalls strace traces for the count (the server's and the
/// multiplexers'; the client's `recvfrom`/`write` are left out).
const STRACE_SET: &str = "epoll_ctl,epoll_wait,epoll_pwait,epoll_pwait2,poll,ppoll,select,pselect6,io_uring_enter,timerfd_settime,read,sendto";

/// Runs `xtask bench __churn-count ID N` under `strace -c -f` for N and
/// 2N requests; the difference divided by N is per request, whatever the
/// set-up cost. `None` without strace.
fn strace_per_request(subject: ChurnSubject, n: u64) -> Result<Option<PerRequest>> {
    let Some(a) = strace_run(subject, n)? else {
        return Ok(None);
    };
    let Some(b) = strace_run(subject, 2 * n)? else {
        return Ok(None);
    };
    let d = |name: &str| {
        b.get(name).copied().unwrap_or(0) as f64 - a.get(name).copied().unwrap_or(0) as f64
    };
    let k = n as f64;
    let ctl = d("epoll_ctl");
    let mux = ctl
        + [
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
            "poll",
            "ppoll",
            "select",
            "pselect6",
            "io_uring_enter",
            "timerfd_settime",
        ]
        .iter()
        .map(|s| d(s))
        .sum::<f64>();
    let io = d("read") + d("sendto");
    Ok(Some(PerRequest {
        ctl: ctl / k,
        mux: mux / k,
        total: (mux + io) / k,
        uring_enter: d("io_uring_enter") / k,
        by: "strace",
    }))
}

fn strace_run(subject: ChurnSubject, n: u64) -> Result<Option<BTreeMap<String, u64>>> {
    let exe = std::env::current_exe().context("the xtask binary")?;
    let dir = bench_mux::out_dir()?;
    let out = dir.join(format!(
        ".strace-{}-{n}.txt",
        subject.id().replace('/', "-")
    ));
    let status = std::process::Command::new("strace")
        .arg("-f")
        .arg("-c")
        .arg("-o")
        .arg(&out)
        .arg("-e")
        .arg(format!("trace={STRACE_SET}"))
        .arg(&exe)
        .args(["bench", "__churn-count", &subject.id(), &n.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let status = match status {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("running strace"),
    };
    if !status.success() {
        bail!("strace run of {} failed: {status}", subject.id());
    }
    let text = std::fs::read_to_string(&out).with_context(|| format!("{}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    Ok(Some(parse_strace_c(&text)))
}

/// Parses `strace -c`'s table: `% time seconds usecs/call calls [errors]
/// syscall`.
pub fn parse_strace_c(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 5 || t[0].starts_with('%') || t[0].starts_with('-') {
            continue;
        }
        let name = t[t.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(calls) = t[3].parse::<u64>() {
            m.insert(name.to_string(), calls);
        }
    }
    m
}

/// The internal command strace runs: one program, one round of `n`
/// requests after the set-up, nothing else.
pub fn count_cmd(id: &str, n: u64, roster: &Roster, nofile: u64) -> Result<()> {
    let Some(subject) = ChurnSubject::all(roster).into_iter().find(|s| s.id() == id) else {
        bail!("unknown churn program `{id}`");
    };
    let pairs = Pairs::new(CONNS, nofile)?;
    let mut w = World::new(&pairs);
    let mut mux = ChurnMux::open(subject, w.s)?;
    mux.prime(&mut w)?;
    let (_, waits) = mux.round(&mut w, n)?;
    mux.close(w.s)?;
    println!("{} {}", w.served, waits);
    Ok(())
}

impl ChurnReport {
    fn base(&self) -> f64 {
        self.results
            .iter()
            .find(|r| r.subject == ChurnSubject::RawEpollCtl)
            .map_or(f64::NAN, |r| r.median_rps())
    }

    fn cpu_base(&self) -> f64 {
        self.results
            .iter()
            .find(|r| r.subject == ChurnSubject::RawEpollCtl)
            .map_or(f64::NAN, |r| bench_mux::median(&r.cpu_rps))
    }

    /// Writes `churn.csv`.
    pub fn write_csv(&self) -> Result<std::path::PathBuf> {
        let base = self.base();
        let cpu_base = self.cpu_base();
        let rows: Vec<Vec<String>> = self
            .results
            .iter()
            .map(|r| {
                let (lo, hi) = bench_mux::min_max(&r.rps);
                vec![
                    r.subject.subject().to_string(),
                    r.subject.mode().to_string(),
                    CONNS.to_string(),
                    IN_FLIGHT.to_string(),
                    self.requests.to_string(),
                    r.rps.len().to_string(),
                    num(r.median_rps(), 0),
                    num(lo, 0),
                    num(hi, 0),
                    num(r.median_rps() / base, 4),
                    num(r.per_request.total, 3),
                    num(r.per_request.mux, 3),
                    num(r.per_request.ctl, 3),
                    num(r.waits_per_request, 4),
                    r.per_request.by.to_string(),
                    r.retried.to_string(),
                    num(bench_mux::median(&r.cpu_rps), 0),
                    num(bench_mux::median(&r.cpu_rps) / cpu_base, 4),
                ]
            })
            .collect();
        bench_mux::write_csv(
            "churn.csv",
            &[
                "subject",
                "mode",
                "connections",
                "in_flight",
                "requests_per_round",
                "rounds",
                "events_per_s",
                "min_events_per_s",
                "max_events_per_s",
                "ratio_to_raw_epoll_ctl",
                "syscalls_per_event",
                "mux_syscalls_per_event",
                "ctl_per_event",
                "waits_per_event",
                "counted_by",
                "preempted_rounds_rerun",
                "events_per_cpu_s",
                "cpu_ratio_to_raw_epoll_ctl",
            ],
            &rows,
        )
    }

    /// The `churn` array of the JSON summary.
    pub fn to_json(&self) -> Json {
        let base = self.base();
        let cpu_base = self.cpu_base();
        Json::Arr(
            self.results
                .iter()
                .map(|r| {
                    Json::obj([
                        ("subject", Json::Str(r.subject.subject().into())),
                        ("mode", Json::Str(r.subject.mode().into())),
                        ("connections", Json::Int(CONNS as i64)),
                        ("in_flight", Json::Int(IN_FLIGHT as i64)),
                        ("events_per_s", round_to(r.median_rps(), 0)),
                        ("ratio_to_raw_epoll_ctl", round_to(r.median_rps() / base, 4)),
                        ("syscalls_per_event", round_to(r.per_request.total, 3)),
                        ("mux_syscalls_per_event", round_to(r.per_request.mux, 3)),
                        ("ctl_per_event", round_to(r.per_request.ctl, 3)),
                        ("waits_per_event", round_to(r.waits_per_request, 4)),
                        ("counted_by", Json::Str(r.per_request.by.into())),
                        ("rounds", Json::Int(r.rps.len() as i64)),
                        (
                            "events_per_cpu_s",
                            round_to(bench_mux::median(&r.cpu_rps), 0),
                        ),
                        (
                            "cpu_ratio_to_raw_epoll_ctl",
                            round_to(bench_mux::median(&r.cpu_rps) / cpu_base, 4),
                        ),
                    ])
                })
                .collect(),
        )
    }

    /// Bars for the chart: `(label, events/s)`.
    pub fn bars(&self) -> Vec<(String, f64)> {
        self.results
            .iter()
            .map(|r| (r.subject.id(), r.median_rps()))
            .collect()
    }

    /// The churn targets of issue #5.
    pub fn targets(&self) -> Vec<Target> {
        let base = self.base();
        let find = |s: ChurnSubject| self.results.iter().find(|r| r.subject == s);
        let mio = find(ChurnSubject::Mio).map_or(f64::NAN, |r| r.median_rps());
        let mut out = Vec::new();
        let best = |how: EvMode| {
            self.results
                .iter()
                .filter(|r| matches!(r.subject, ChurnSubject::Evmux(_, h) if h == how))
                .max_by(|a, b| a.median_rps().total_cmp(&b.median_rps()))
        };
        if let Some(ep) = [
            find(ChurnSubject::Evmux(BackendKind::Epoll, EvMode::Level)),
            find(ChurnSubject::Evmux(BackendKind::Epoll, EvMode::Edge)),
            find(ChurnSubject::Evmux(BackendKind::Epoll, EvMode::Tracked)),
            find(ChurnSubject::Evmux(
                BackendKind::Epoll,
                EvMode::TrackedShortRead,
            )),
        ]
        .into_iter()
        .flatten()
        .min_by(|a, b| a.per_request.ctl.total_cmp(&b.per_request.ctl))
        {
            out.push(Target {
                name: "churn: <= 0.1 interest-change syscalls per request on epoll".into(),
                met: Some(ep.per_request.ctl <= 0.1),
                detail: format!(
                    "best evmux-epoll program ({}): {:.3} epoll_ctl per request",
                    ep.subject.mode(),
                    ep.per_request.ctl
                ),
            });
        }
        if let Some(u) = [
            find(ChurnSubject::Evmux(BackendKind::Uring, EvMode::Level)),
            find(ChurnSubject::Evmux(BackendKind::Uring, EvMode::Tracked)),
            find(ChurnSubject::Evmux(
                BackendKind::Uring,
                EvMode::TrackedShortRead,
            )),
        ]
        .into_iter()
        .flatten()
        .min_by(|a, b| {
            (a.per_request.mux / a.waits_per_request)
                .total_cmp(&(b.per_request.mux / b.waits_per_request))
        }) {
            let per_wait = u.per_request.mux / u.waits_per_request;
            out.push(Target {
                name: "churn: uring spends exactly one syscall per loop iteration besides I/O"
                    .into(),
                met: Some((per_wait - 1.0).abs() < 0.01),
                detail: format!(
                    "evmux-uring {}: {per_wait:.3} multiplexing syscalls per wait ({:.3} io_uring_enter)",
                    u.subject.mode(),
                    u.per_request.uring_enter / u.waits_per_request
                ),
            });
        }
        let mio_short = find(ChurnSubject::MioShort).map_or(f64::NAN, |r| r.median_rps());
        for how in [
            EvMode::Level,
            EvMode::Edge,
            EvMode::Tracked,
            EvMode::TrackedShortRead,
        ] {
            if let Some(b) = best(how) {
                let r = b.median_rps();
                out.push(Target {
                    name: format!(
                        "churn: evmux ({}) >= 1.15x raw-epoll ctl-every-change and >= 1.0x mio",
                        b.subject.mode()
                    ),
                    met: Some(r >= 1.15 * base && r >= mio),
                    detail: format!(
                        "best {} {}: {:.3}x raw-epoll ctl-every-change, {:.3}x mio \
                         (mio edge-once-short-read, outside mio's contract: {:.3}x)",
                        b.subject.subject(),
                        b.subject.mode(),
                        r / base,
                        r / mio,
                        r / mio_short
                    ),
                });
            }
        }
        out
    }

    /// The text report.
    pub fn print(&self) {
        let base = self.base();
        println!(
            "churn: {CONNS} connections, {IN_FLIGHT} requests in flight, {} requests per round; an event = one request served",
            self.requests
        );
        let cpu_base = self.cpu_base();
        println!(
            "{:<16} {:<20} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}  counted by",
            "subject",
            "mode",
            "events/s",
            "vs ctl",
            "cpu vs",
            "sys/ev",
            "mux/ev",
            "ctl/ev",
            "waits/ev"
        );
        for r in &self.results {
            println!(
                "{:<16} {:<20} {:>9.0} {:>7.3} {:>7.3} {:>7} {:>7} {:>7} {:>8.4}  {}",
                r.subject.subject(),
                r.subject.mode(),
                r.median_rps(),
                r.median_rps() / base,
                bench_mux::median(&r.cpu_rps) / cpu_base,
                num(r.per_request.total, 3),
                num(r.per_request.mux, 3),
                num(r.per_request.ctl, 3),
                r.waits_per_request,
                r.per_request.by
            );
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_summary() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 84.35    0.014297          13      1082           io_uring_enter
 10.00    0.002000           2      1000       999 read
  5.65    0.000653          32        81           poll
------ ----------- ----------- --------- --------- ----------------
100.00    0.016950          14      2163       999 total
";
        let m = parse_strace_c(text);
        assert_eq!(m.get("io_uring_enter"), Some(&1082));
        assert_eq!(m.get("read"), Some(&1000));
        assert_eq!(m.get("poll"), Some(&81));
        assert_eq!(m.get("total"), None);
    }
}
