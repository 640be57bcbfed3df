//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use evmux_interest::{Event, Events, Poller, Token};
use evmux_poll::PollBackend;
use evmux_sys::counter::{self, Counts, SyscallKind};

/// A poller over a fresh poll backend.
pub fn poller() -> Poller<PollBackend> {
    Poller::new(PollBackend::new().expect("PollBackend::new"))
}

/// One non-blocking wait with room for 64 events; the events, sorted.
pub fn wait(p: &mut Poller<PollBackend>) -> Vec<Event> {
    wait_cap(p, 64)
}

/// One non-blocking wait with room for `cap` events; the events, sorted.
pub fn wait_cap(p: &mut Poller<PollBackend>, cap: usize) -> Vec<Event> {
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

/// `wait`, asserting that it cost exactly one `poll` and no other syscall.
pub fn wait_one_poll(p: &mut Poller<PollBackend>) -> Vec<Event> {
    let before = counter::snapshot();
    let evs = wait(p);
    assert_only_one_poll(counter::snapshot() - before);
    evs
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
