//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use evmux_interest::{Backend, Event, Events, Poller, Token};
use evmux_poll::PollBackend;
use evmux_select::SelectBackend;
use evmux_sys::counter::{self, Counts, SyscallKind};

/// A poller over a fresh select backend.
pub fn poller() -> Poller<SelectBackend> {
    Poller::new(SelectBackend::new().expect("SelectBackend::new"))
}

/// A poller over a fresh poll backend, the reference for the stream.
pub fn poll_poller() -> Poller<PollBackend> {
    Poller::new(PollBackend::new().expect("PollBackend::new"))
}

/// One non-blocking wait with room for 64 events; the events, sorted.
pub fn wait<B: Backend>(p: &mut Poller<B>) -> Vec<Event> {
    wait_cap(p, 64)
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

/// `wait`, with the syscalls it made.
pub fn wait_counted<B: Backend>(p: &mut Poller<B>) -> (Vec<Event>, Counts) {
    let before = counter::snapshot();
    let evs = wait(p);
    (evs, counter::snapshot() - before)
}

/// `wait`, asserting the steady-state cost: exactly one `select` when
/// nothing is reported, one `select` and one `poll` (the exactness check)
/// when something is.
pub fn wait_steady(p: &mut Poller<SelectBackend>) -> Vec<Event> {
    let (evs, d) = wait_counted(p);
    assert_eq!(d.get(SyscallKind::Select), 1, "{d:?}");
    if evs.is_empty() {
        assert_eq!(d.total(), 1, "{d:?}");
    } else {
        assert_eq!(d.get(SyscallKind::Poll), 1, "{d:?}");
        assert_eq!(d.total(), 2, "{d:?}");
    }
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
