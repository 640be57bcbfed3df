//! Small scripted sequences on real descriptors, run on a
//! `Poller<UringBackend>` and a `Poller<PollBackend>` side by side: after
//! every step, both waits must give the same sorted events, equal to the
//! expectation written from SEMANTICS.md.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{drain, ev};
use evmux_interest::{Backend, Event, Events, Interest, Mode, Poller, Token};
use evmux_poll::PollBackend;
use evmux_sys::fd;
use evmux_uring::UringBackend;

/// A uring poller and a poll poller given the same calls.
struct Both {
    uring: Poller<UringBackend>,
    poll: Poller<PollBackend>,
}

fn sorted_wait<B: Backend>(p: &mut Poller<B>) -> Vec<Event> {
    let mut evs = Events::with_capacity(64);
    p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    let mut v = evs.as_slice().to_vec();
    v.sort();
    v
}

impl Both {
    fn new() -> Both {
        Both {
            uring: Poller::new(UringBackend::new().unwrap()),
            poll: Poller::new(PollBackend::new().unwrap()),
        }
    }

    fn declare(&mut self, fd: i32, token: usize, interest: Interest, mode: Mode) {
        self.uring
            .declare_interest(fd, Token(token), interest, mode)
            .unwrap();
        self.poll
            .declare_interest(fd, Token(token), interest, mode)
            .unwrap();
    }

    fn forget(&mut self, token: usize) {
        self.uring.forget(Token(token)).unwrap();
        self.poll.forget(Token(token)).unwrap();
    }

    fn would_block(&mut self, token: usize, interest: Interest) {
        self.uring.would_block(Token(token), interest).unwrap();
        self.poll.would_block(Token(token), interest).unwrap();
    }

    /// One wait on each; both equal `expect`.
    #[track_caller]
    fn expect(&mut self, expect: &[Event]) {
        let u = sorted_wait(&mut self.uring);
        let p = sorted_wait(&mut self.poll);
        assert_eq!(u, p, "uring vs poll");
        assert_eq!(u, expect, "uring vs SEMANTICS.md");
    }
}

fn closed(mut e: Event, read_closed: bool, write_closed: bool) -> Event {
    e.read_closed = read_closed;
    e.write_closed = write_closed;
    e
}

fn error(mut e: Event) -> Event {
    e.error = true;
    e
}

#[test]
fn level_pipe_and_regular_file() {
    let mut b = Both::new();
    let (r, w) = fd::pipe().unwrap();
    let f = fd::open_tmp_regular_file().unwrap();
    b.declare(r.as_raw_fd(), 1, Interest::READABLE, Mode::Level);
    b.declare(f.as_raw_fd(), 3, Interest::BOTH, Mode::Level);
    // A regular file is always ready, IN|OUT.
    b.expect(&[ev(3, true, true)]);
    fd::write(&w, b"abc").unwrap();
    b.expect(&[ev(1, true, false), ev(3, true, true)]);
    b.expect(&[ev(1, true, false), ev(3, true, true)]);
    drain(&r);
    b.expect(&[ev(3, true, true)]);
    // Writer gone: HUP, reported as readable + read_closed.
    drop(w);
    b.expect(&[closed(ev(1, true, false), true, false), ev(3, true, true)]);
    b.forget(3);
    b.expect(&[closed(ev(1, true, false), true, false)]);
    b.forget(1);
    b.expect(&[]);
}

#[test]
fn edge_socket_both_directions() {
    let mut b = Both::new();
    let (a, peer) = fd::socketpair_stream().unwrap();
    b.declare(a.as_raw_fd(), 2, Interest::BOTH, Mode::Edge);
    // Writable at once; then disarmed.
    b.expect(&[ev(2, false, true)]);
    b.expect(&[]);
    fd::write(&peer, b"x").unwrap();
    b.expect(&[ev(2, true, false)]);
    b.expect(&[]);
    // More data while disarmed: nothing until WouldBlock is reported.
    fd::write(&peer, b"y").unwrap();
    b.expect(&[]);
    drain(&a);
    b.would_block(2, Interest::READABLE);
    b.expect(&[]);
    // The peer shuts its write side: readable, read_closed.
    fd::shutdown(&peer, std::net::Shutdown::Write).unwrap();
    b.expect(&[closed(ev(2, true, false), true, false)]);
    b.expect(&[]);
    // Declared again: every direction re-armed, still-ready ones reported.
    b.declare(a.as_raw_fd(), 2, Interest::BOTH, Mode::Edge);
    b.expect(&[closed(ev(2, true, true), true, false)]);
    b.expect(&[]);
    // The peer closes: both directions were disarmed: nothing; re-declared:
    // hang-up on both.
    drop(peer);
    b.expect(&[]);
    b.declare(a.as_raw_fd(), 2, Interest::BOTH, Mode::Edge);
    b.expect(&[closed(ev(2, true, true), true, true)]);
}

#[test]
fn oneshot_mode_changes_and_pipe_error() {
    let mut b = Both::new();
    let (r, w) = fd::pipe().unwrap();
    b.declare(w.as_raw_fd(), 4, Interest::WRITABLE, Mode::Oneshot);
    b.expect(&[ev(4, false, true)]);
    b.expect(&[]);
    // Level now: every wait.
    b.declare(w.as_raw_fd(), 4, Interest::WRITABLE, Mode::Level);
    b.expect(&[ev(4, false, true)]);
    b.expect(&[ev(4, false, true)]);
    // Reader gone: POLLERR on the write end: writable, write_closed, error.
    drop(r);
    b.expect(&[error(closed(ev(4, false, true), false, true))]);
    // Oneshot again: once.
    b.declare(w.as_raw_fd(), 4, Interest::WRITABLE, Mode::Oneshot);
    b.expect(&[error(closed(ev(4, false, true), false, true))]);
    b.expect(&[]);
    b.forget(4);
    b.expect(&[]);
}

#[test]
fn interest_flips_between_waits() {
    let mut b = Both::new();
    let (a, peer) = fd::socketpair_stream().unwrap();
    fd::write(&peer, b"x").unwrap();
    b.declare(a.as_raw_fd(), 5, Interest::READABLE, Mode::Level);
    b.expect(&[ev(5, true, false)]);
    b.declare(a.as_raw_fd(), 5, Interest::WRITABLE, Mode::Level);
    b.expect(&[ev(5, false, true)]);
    b.declare(a.as_raw_fd(), 5, Interest::READABLE, Mode::Level);
    b.declare(a.as_raw_fd(), 5, Interest::WRITABLE, Mode::Level);
    b.declare(a.as_raw_fd(), 5, Interest::READABLE, Mode::Level);
    b.expect(&[ev(5, true, false)]);
    drain(&a);
    b.expect(&[]);
    b.declare(a.as_raw_fd(), 5, Interest::BOTH, Mode::Level);
    b.expect(&[ev(5, false, true)]);
}
