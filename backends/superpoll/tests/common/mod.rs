//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use std::os::fd::RawFd;

use evmux_interest::{Backend, Event, Events, Interest, Mode, Poller, Token};
use evmux_poll::PollBackend;
use evmux_superpoll::{SuperpollBackend, SuperpollConfig};
use evmux_sys::counter::{self, Counts, SyscallKind};

/// Never migrates: every registration stays in the poll array.
pub fn hot_only() -> SuperpollConfig {
    SuperpollConfig {
        max_moves: 0,
        ..SuperpollConfig::default()
    }
}

/// Demotes every registration at every wait (but those the batch just
/// added or changed) and never promotes: busy or idle, descriptors live in
/// the epoll set.
pub fn cold_eager() -> SuperpollConfig {
    SuperpollConfig {
        promote_above: 1.0,
        demote_below: 1.0,
        break_even: 1.0,
        interval: 1,
        max_moves: usize::MAX,
        half_life: 1,
        min_stay: 0,
        epoll_wait_cost: 0.0,
    }
}

/// Keeps descriptors ready at every wait in the array, demotes the others
/// after two idle waits, never promotes.
pub fn busy_stay_hot() -> SuperpollConfig {
    SuperpollConfig {
        promote_above: 1.0,
        demote_below: 0.4,
        break_even: 0.45,
        interval: 1,
        max_moves: usize::MAX,
        half_life: 1,
        min_stay: 0,
        epoll_wait_cost: 0.0,
    }
}

/// Moves descriptors both ways as fast as the policy allows.
pub fn churn() -> SuperpollConfig {
    SuperpollConfig {
        promote_above: 0.6,
        demote_below: 0.3,
        break_even: 0.5,
        interval: 1,
        max_moves: 64,
        half_life: 1,
        min_stay: 0,
        epoll_wait_cost: 0.0,
    }
}

/// Every configuration the stream tests run under, with a name.
pub fn configs() -> Vec<(&'static str, SuperpollConfig)> {
    vec![
        ("default", SuperpollConfig::default()),
        ("hot_only", hot_only()),
        ("cold_eager", cold_eager()),
        ("busy_stay_hot", busy_stay_hot()),
        ("churn", churn()),
    ]
}

/// A poller over a superpoll backend with `cfg`.
pub fn poller(cfg: SuperpollConfig) -> Poller<SuperpollBackend> {
    Poller::new(SuperpollBackend::with_config(cfg).expect("SuperpollBackend::with_config"))
}

/// A poller over the poll backend: the reference stream.
pub fn reference() -> Poller<PollBackend> {
    Poller::new(PollBackend::new().expect("PollBackend::new"))
}

/// One non-blocking wait with room for 256 events; the events, sorted.
pub fn wait<B: Backend>(p: &mut Poller<B>) -> Vec<Event> {
    wait_cap(p, 256)
}

/// One non-blocking wait with room for `cap` events; the events, sorted.
pub fn wait_cap<B: Backend>(p: &mut Poller<B>, cap: usize) -> Vec<Event> {
    let mut evs = Events::with_capacity(cap);
    let n = p
        .get_next_event(&mut evs, Some(Duration::ZERO))
        .expect("get_next_event");
    assert_eq!(n, evs.len());
    assert!(n <= cap);
    let mut v = evs.as_slice().to_vec();
    v.sort();
    v
}

/// `wait`, and the syscalls it made.
pub fn wait_counted<B: Backend>(p: &mut Poller<B>) -> (Vec<Event>, Counts) {
    let before = counter::snapshot();
    let evs = wait(p);
    (evs, counter::snapshot() - before)
}

/// The delta is exactly one `poll(2)` and nothing else.
pub fn assert_only_one_poll(delta: Counts) {
    assert_eq!(delta.get(SyscallKind::Poll), 1, "{delta:?}");
    assert_eq!(delta.total(), 1, "{delta:?}");
}

/// The tokens of `evs`.
pub fn tokens(evs: &[Event]) -> Vec<Token> {
    evs.iter().map(|e| e.token).collect()
}

/// Reads until `WouldBlock` (or end of file); how many bytes were read.
pub fn drain(fd: impl AsFd) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match evmux_sys::fd::read(fd.as_fd(), &mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Writes until `WouldBlock`; how many bytes were written.
pub fn fill(fd: impl AsFd) -> usize {
    let buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match evmux_sys::fd::write(fd.as_fd(), &buf) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// A small xorshift generator for deterministic scripts.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

/// A superpoll poller and a poll poller watching the same descriptors with
/// the same declarations: every wait must give both the same events.
pub struct Twin {
    pub sp: Poller<SuperpollBackend>,
    pub pl: Poller<PollBackend>,
    pub name: &'static str,
    pub waits: usize,
}

impl Twin {
    pub fn new(name: &'static str, cfg: SuperpollConfig) -> Twin {
        Twin {
            sp: poller(cfg),
            pl: reference(),
            name,
            waits: 0,
        }
    }

    pub fn declare(&mut self, fd: RawFd, token: Token, interest: Interest, mode: Mode) {
        let a = self.sp.declare_interest(fd, token, interest, mode);
        let b = self.pl.declare_interest(fd, token, interest, mode);
        assert_eq!(a, b, "{}: declare", self.name);
    }

    pub fn forget(&mut self, token: Token) {
        let a = self.sp.forget(token);
        let b = self.pl.forget(token);
        assert_eq!(a, b, "{}: forget", self.name);
    }

    pub fn would_block(&mut self, token: Token, interest: Interest) {
        let a = self.sp.would_block(token, interest);
        let b = self.pl.would_block(token, interest);
        assert_eq!(a, b, "{}: would_block", self.name);
    }

    /// One wait on each; asserts the sorted events are equal and returns
    /// them.
    pub fn wait(&mut self) -> Vec<Event> {
        let a = wait(&mut self.sp);
        let b = wait(&mut self.pl);
        assert_eq!(
            a,
            b,
            "{}: wait {} differs from the poll backend ({:?})",
            self.name,
            self.waits,
            self.sp.backend().stats()
        );
        self.waits += 1;
        a
    }
}

/// Sends until `WouldBlock` or a broken pipe (no `SIGPIPE`); how many bytes
/// were sent.
pub fn fill_send(fd: impl AsFd) -> usize {
    let buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match evmux_sys::fd::send(fd.as_fd(), &buf) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return total,
            Err(e) => panic!("send: {e}"),
        }
    }
}
