//! Hang-ups on write-only watches, which select's write bitmap does not
//! see (`HUP` without `OUT` or `ERR`): the read-bitmap probe catches them,
//! and unread input on such a watch does not make the wait spin (the
//! exact `poll(2)` wait takes over).

mod common;

use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::thread;
use std::time::{Duration, Instant};

use common::{drain, fill, poll_poller, poller, tokens, wait, wait_counted, wait_steady};
use evmux_interest::{Event, Events, Interest, Mode, Token};
use evmux_sys::counter::{self, Counts, SyscallKind};
use evmux_sys::fd;
use evmux_sys::poll::{POLLHUP, POLLIN, POLLOUT, POLLRDHUP, PollFd, poll};

const MODES: [Mode; 3] = [Mode::Level, Mode::Edge, Mode::Oneshot];

/// The full `poll(2)` `revents` of `fd` (`IN|OUT|RDHUP` asked).
fn full_mask(fd: RawFd) -> i16 {
    let mut fds = [PollFd::new(fd, POLLIN | POLLOUT | POLLRDHUP)];
    poll(&mut fds, Some(Duration::ZERO)).unwrap();
    fds[0].revents
}

fn assert_write_hang_up(evs: &[Event], token: Token) {
    assert_eq!(tokens(evs), [token], "{evs:?}");
    let ev = evs[0];
    assert!(ev.writable && ev.write_closed, "{ev:?}");
    assert!(!ev.readable && !ev.read_closed && !ev.error, "{ev:?}");
    assert_eq!(ev.errno, None);
}

/// Watches `fd` write-only in `mode` on a select poller and a poll poller,
/// after `hang_up` made it hang up: the hang-up is reported once (edge,
/// oneshot) or at every wait (level), exactly as poll(2) reports it, and
/// each wait costs one `select` and one check.
fn check_hang_up_reported(fd: RawFd, mode: Mode, hang_up: impl FnOnce()) {
    let mut s = poller();
    let mut p = poll_poller();
    s.declare_interest(fd, Token(1), Interest::WRITABLE, mode)
        .unwrap();
    p.declare_interest(fd, Token(1), Interest::WRITABLE, mode)
        .unwrap();
    assert!(wait(&mut s).is_empty());
    assert!(wait(&mut p).is_empty());
    hang_up();
    let mask = full_mask(fd);
    assert!(
        mask & POLLHUP != 0 && mask & POLLOUT == 0,
        "{mode:?}: {mask:#x}"
    );
    for round in 0..3 {
        let evs = wait_steady(&mut s);
        assert_eq!(evs, wait(&mut p), "{mode:?} round {round}");
        if mode == Mode::Level || round == 0 {
            assert_write_hang_up(&evs, Token(1));
        } else {
            assert!(evs.is_empty(), "{mode:?} round {round}: {evs:?}");
        }
    }
}

#[test]
fn pipe_read_end_watched_for_writing_reports_the_writers_hang_up() {
    for mode in MODES {
        let (r, w) = fd::pipe().unwrap();
        check_hang_up_reported(r.as_raw_fd(), mode, || drop(w));
        assert_eq!(full_mask(r.as_raw_fd()), POLLHUP);
    }
}

#[test]
fn full_socket_shut_down_both_ways_reports_the_hang_up() {
    for mode in MODES {
        let (a, b) = fd::socketpair_stream().unwrap();
        fill(&a);
        check_hang_up_reported(a.as_raw_fd(), mode, || {
            fd::shutdown(&a, Shutdown::Write).unwrap();
            fd::shutdown(&b, Shutdown::Write).unwrap();
        });
    }
}

#[test]
fn a_blocking_wait_ends_on_the_hang_up() {
    let (r, w) = fd::pipe().unwrap();
    let mut s = poller();
    s.declare_interest(r.as_raw_fd(), Token(4), Interest::WRITABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut s).is_empty());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        drop(w);
    });
    let started = Instant::now();
    let mut evs = Events::with_capacity(8);
    let n = s
        .get_next_event(&mut evs, Some(Duration::from_secs(30)))
        .unwrap();
    t.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(n, 1);
    assert_write_hang_up(evs.as_slice(), Token(4));
}

/// A socket whose send buffer is full and which has unread input: a
/// write-only watch on it sees the input in the read bitmap (the probe),
/// which is not reportable.
fn noisy_socket() -> (OwnedFd, OwnedFd) {
    let (a, b) = fd::socketpair_stream().unwrap();
    fill(&a);
    fd::write(&b, b"unread input").unwrap();
    assert_eq!(full_mask(a.as_raw_fd()), POLLIN);
    (a, b)
}

fn selects_and_polls(d: &Counts) -> u64 {
    d.get(SyscallKind::Select) + d.get(SyscallKind::Poll)
}

#[test]
fn unread_input_on_a_write_only_watch_does_not_spin() {
    for mode in MODES {
        let (a, b) = noisy_socket();
        let mut s = poller();
        s.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, mode)
            .unwrap();
        // A zero timeout: select returns at once (the probe), the check
        // finds nothing reportable, and there is no time left to wait.
        let (evs, d) = wait_counted(&mut s);
        assert!(evs.is_empty(), "{mode:?}: {evs:?}");
        assert_eq!(
            (d.get(SyscallKind::Select), d.get(SyscallKind::Poll)),
            (1, 1),
            "{mode:?} {d:?}"
        );
        // 50 ms: select, the check, and one exact poll(2) that times out.
        let before = counter::snapshot();
        let started = Instant::now();
        let mut evs = Events::with_capacity(8);
        let n = s
            .get_next_event(&mut evs, Some(Duration::from_millis(50)))
            .unwrap();
        let elapsed = started.elapsed();
        let d = counter::snapshot() - before;
        assert_eq!(n, 0, "{mode:?}: {:?}", evs.as_slice());
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        assert!(selects_and_polls(&d) <= 3, "{mode:?}: {d:?}");
        assert_eq!(
            (d.get(SyscallKind::Select), d.get(SyscallKind::Poll)),
            (1, 2),
            "{mode:?} {d:?}"
        );
        assert_eq!(d.total(), 3, "{mode:?} {d:?}");
        // The peer drains: the send buffer frees, and the event arrives
        // through the exact wait.
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            assert!(drain(&b) > 0);
            b
        });
        let before = counter::snapshot();
        let started = Instant::now();
        let n = s
            .get_next_event(&mut evs, Some(Duration::from_secs(30)))
            .unwrap();
        let d = counter::snapshot() - before;
        let _b = t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(n, 1, "{mode:?}");
        let ev = evs.as_slice()[0];
        assert_eq!(ev.token, Token(1));
        assert!(ev.writable && !ev.write_closed && !ev.readable && !ev.error);
        assert!(selects_and_polls(&d) <= 3, "{mode:?}: {d:?}");
        // The input is still unread; edge and oneshot have nothing left to
        // report, level reports the space again.
        let evs = wait(&mut s);
        if mode == Mode::Level {
            assert_eq!(tokens(&evs), [Token(1)]);
        } else {
            assert!(evs.is_empty(), "{mode:?}: {evs:?}");
        }
    }
}

#[test]
fn unread_input_on_a_write_only_watch_with_no_timeout_waits_for_the_hang_up() {
    // Forever (`None`), and the exact wait still sees the hang-up (both
    // directions shut, buffer still full).
    let (a, b) = noisy_socket();
    let mut s = poller();
    s.declare_interest(a.as_raw_fd(), Token(2), Interest::WRITABLE, Mode::Edge)
        .unwrap();
    // A watchdog ends the wait should the hang-up be missed; its event must
    // not be what ends the wait.
    let watchdog = s.waker(Token(99)).unwrap();
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(20));
        let _ = watchdog.wake();
    });
    assert!(wait(&mut s).is_empty());
    let a_raw = a.as_raw_fd();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        fd::shutdown(&b, Shutdown::Both).unwrap();
        b
    });
    // Our own write side too, so that the mask is HUP (not only RDHUP).
    fd::shutdown(&a, Shutdown::Write).unwrap();
    let before = counter::snapshot();
    let mut evs = Events::with_capacity(8);
    let n = s.get_next_event(&mut evs, None).unwrap();
    let d = counter::snapshot() - before;
    let _b = t.join().unwrap();
    assert_eq!(n, 1);
    assert!(full_mask(a_raw) & POLLHUP != 0);
    assert_write_hang_up(evs.as_slice(), Token(2));
    assert!(selects_and_polls(&d) <= 3, "{d:?}");
}

#[test]
fn the_waker_ends_the_exact_wait() {
    let (a, _b) = noisy_socket();
    let mut s = poller();
    s.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    let waker = s.waker(Token(99)).unwrap();
    assert!(wait(&mut s).is_empty());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        waker.wake().unwrap();
    });
    let before = counter::snapshot();
    let mut evs = Events::with_capacity(8);
    let n = s.get_next_event(&mut evs, None).unwrap();
    let d = counter::snapshot() - before;
    t.join().unwrap();
    assert_eq!(n, 1);
    assert_eq!(tokens(evs.as_slice()), [Token(99)]);
    // select, the check, the exact poll(2), the eventfd drain.
    assert_eq!(
        (
            d.get(SyscallKind::Select),
            d.get(SyscallKind::Poll),
            d.get(SyscallKind::EventfdRead)
        ),
        (1, 2, 1),
        "{d:?}"
    );
    assert_eq!(d.total(), 4, "{d:?}");
    // Collected: the next zero wait has nothing (the check finds only the
    // unread input).
    assert!(wait(&mut s).is_empty());
}

#[test]
fn other_registrations_are_reported_through_the_exact_wait() {
    // While the exact wait runs, a read registration that becomes ready
    // ends it, with the exact mask.
    let (a, _b) = noisy_socket();
    let (r, w) = fd::pipe().unwrap();
    let mut s = poller();
    s.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    s.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut s).is_empty());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        fd::write(&w, b"x").unwrap();
        drop(w);
    });
    let before = counter::snapshot();
    let mut evs = Events::with_capacity(8);
    let n = s
        .get_next_event(&mut evs, Some(Duration::from_secs(30)))
        .unwrap();
    let d = counter::snapshot() - before;
    t.join().unwrap();
    assert!(n >= 1);
    assert_eq!(tokens(evs.as_slice()), [Token(2)]);
    assert!(evs.as_slice()[0].readable && !evs.as_slice()[0].writable);
    assert!(selects_and_polls(&d) <= 3, "{d:?}");
}
