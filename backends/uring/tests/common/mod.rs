//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use evmux_interest::{Event, Events, Poller, Token};
use evmux_sys::counter::{self, Counts, SyscallKind};
use evmux_uring::UringBackend;

/// A poller over a fresh io_uring backend.
pub fn poller() -> Poller<UringBackend> {
    Poller::new(UringBackend::new().expect("UringBackend::new"))
}

/// One non-blocking wait with room for 64 events; the events, sorted.
pub fn wait(p: &mut Poller<UringBackend>) -> Vec<Event> {
    wait_cap(p, 64)
}

/// One non-blocking wait with room for `cap` events; the events, sorted.
pub fn wait_cap(p: &mut Poller<UringBackend>, cap: usize) -> Vec<Event> {
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

/// A wait with `timeout`; the events, sorted.
pub fn wait_for(p: &mut Poller<UringBackend>, timeout: Option<Duration>) -> Vec<Event> {
    let mut evs = Events::with_capacity(64);
    p.get_next_event(&mut evs, timeout).expect("get_next_event");
    let mut v = evs.as_slice().to_vec();
    v.sort();
    v
}

/// `wait`, and the syscalls it made.
pub fn wait_counted(p: &mut Poller<UringBackend>) -> (Vec<Event>, Counts) {
    let before = counter::snapshot();
    let evs = wait(p);
    (evs, counter::snapshot() - before)
}

/// `wait`, asserting that it made exactly one `io_uring_enter`.
pub fn wait_one_enter(p: &mut Poller<UringBackend>) -> Vec<Event> {
    let (evs, delta) = wait_counted(p);
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
    evs
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

/// An event for `token` with the given flags, for expectations.
pub fn ev(token: usize, readable: bool, writable: bool) -> Event {
    let mut e = Event::new(Token(token));
    e.readable = readable;
    e.writable = writable;
    e
}
