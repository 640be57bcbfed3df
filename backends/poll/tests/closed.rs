//! Closed and reused descriptor numbers (POLLNVAL), and EINTR.
//!
//! Descriptor numbers are process-wide and these tests depend on which
//! numbers are free, so they run one at a time (a lock) in their own test
//! binary.

mod common;

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{drain, poller, tokens, wait, wait_one_poll};
use evmux_interest::{Events, Interest, Mode, Token};
use evmux_sys::counter::SyscallKind;
use evmux_sys::fault::{self, FaultPlan};
use evmux_sys::fd;

const EBADF: i32 = 9;
const EINTR: i32 = 4;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A descriptor number that is not open (and, with the lock held, will not
/// be opened by anyone else).
fn closed_number() -> RawFd {
    let (r, w) = fd::pipe().unwrap();
    let n = r.as_raw_fd();
    drop(r);
    drop(w);
    assert!(!fd::is_open_raw(n));
    n
}

#[test]
fn declaring_a_closed_number_is_rejected_with_ebadf_and_the_batch_still_applies() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    let closed = closed_number();
    fd::write(&w, b"x").unwrap();
    fd::write(&w2, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(closed, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait_one_poll(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2), Token(3)], "{evs:?}");
    let err = evs[1];
    assert!(err.error && !err.readable && !err.writable);
    assert_eq!(err.errno, Some(EBADF));
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(EBADF));
    assert!(evs[0].readable && evs[2].readable && !evs[0].error && !evs[2].error);
    // The refused entry left the array; the registration is silent.
    assert_eq!(p.backend().entries(), 2);
    for _ in 0..3 {
        assert_eq!(tokens(&wait_one_poll(&mut p)), [Token(1), Token(3)]);
    }
    // Declaring it again retries, and is refused again.
    p.declare_interest(closed, Token(2), Interest::BOTH, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    let err = evs.iter().find(|e| e.token == Token(2)).unwrap();
    assert_eq!(err.errno, Some(EBADF));
    assert_eq!(p.backend().entries(), 2);
    // Forgetting a refused registration works and costs nothing.
    p.forget(Token(2)).unwrap();
    assert_eq!(tokens(&wait_one_poll(&mut p)), [Token(1), Token(3)]);
    assert_eq!(p.backend().entries(), 2);
    drop((r, w, r2, w2));
}

#[test]
fn rejected_when_a_change_meets_a_descriptor_closed_since_registration() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    fd::write(&w2, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    let n = r.as_raw_fd();
    drop(r);
    drop(w);
    // Closed under its registration: silent.
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    assert_eq!(p.backend().disabled_entries(), 1);
    // A change for it (Some -> Some) is refused as EPOLL_CTL_MOD would be.
    p.declare_interest(n, Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    let evs = wait_one_poll(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2)]);
    assert_eq!(evs[0].errno, Some(EBADF));
    assert!(evs[1].readable);
    assert_eq!(p.backend().entries(), 1);
    assert_eq!(p.backend().disabled_entries(), 0);
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    p.forget(Token(1)).unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    drop((r2, w2));
}

#[test]
fn closed_without_forget_is_silent_then_forget_works() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].readable);
    let n = r.as_raw_fd();
    drop(r);
    drop(w);
    for _ in 0..3 {
        // No error event, no readiness: silent.
        assert!(wait_one_poll(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 1);
        assert_eq!(p.backend().disabled_entries(), 1);
    }
    // A blocking wait does not spin on the closed number: with nothing
    // else watched it times out.
    let mut evs = Events::with_capacity(8);
    assert_eq!(
        p.get_next_event(&mut evs, Some(Duration::from_millis(1)))
            .unwrap(),
        0
    );
    p.forget(Token(1)).unwrap();
    assert!(wait_one_poll(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 0);
    // The number can be declared again, for a new descriptor.
    let (r, w) = fd::pipe().unwrap();
    assert_eq!(r.as_raw_fd(), n);
    p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"x").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
}

/// Registration A on a pipe with pending data; forget A and put another,
/// empty pipe's read end at the same number; declare it as B.
fn reuse(separate_waits: bool) {
    let mut p = poller();
    let (r1, w1) = fd::pipe().unwrap();
    fd::write(&w1, b"old").unwrap();
    let n = r1.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    p.forget(Token(1)).unwrap();
    if separate_waits {
        assert!(wait_one_poll(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 0);
    }
    let (r2, w2) = fd::pipe().unwrap();
    // dup3: the number never becomes free; pipe 1 loses its reader.
    let r2_at_n = fd::dup_onto(r2.as_fd(), r1).unwrap();
    assert_eq!(r2_at_n.as_raw_fd(), n);
    drop(r2);
    drop(w1);
    p.declare_interest(n, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    // Pipe 2 is empty: nothing for anyone.
    assert!(wait_one_poll(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 1);
    fd::write(&w2, b"new").unwrap();
    for _ in 0..3 {
        let evs = wait_one_poll(&mut p);
        assert_eq!(tokens(&evs), [Token(2)]);
        assert!(evs[0].readable && !evs[0].read_closed);
    }
    drain(&r2_at_n);
    assert!(wait(&mut p).is_empty());
    drop(w2);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(2)]);
    assert!(evs[0].read_closed);
}

#[test]
fn reused_number_in_the_same_batch_reports_only_the_new_token() {
    let _g = serial();
    reuse(false);
}

#[test]
fn reused_number_across_two_waits_reports_only_the_new_token() {
    let _g = serial();
    reuse(true);
}

#[test]
fn reused_number_after_a_rejection_replaces_the_refused_registration() {
    // The driver sends no removal for a refused registration: a later
    // registration of the same number must not find a stale entry.
    let _g = serial();
    let mut p = poller();
    let closed = closed_number();
    p.declare_interest(closed, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(wait(&mut p)[0].errno, Some(EBADF));
    p.forget(Token(1)).unwrap();
    let (r, w) = fd::pipe().unwrap();
    assert_eq!(r.as_raw_fd(), closed);
    fd::write(&w, b"x").unwrap();
    p.declare_interest(closed, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait_one_poll(&mut p);
    assert_eq!(tokens(&evs), [Token(2)]);
    assert!(evs[0].readable && evs[0].errno.is_none());
    assert_eq!(p.backend().entries(), 1);
}

#[test]
fn interrupted_wait_keeps_the_batch_and_still_rejects() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    let closed = closed_number();
    p.declare_interest(closed, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Poll, 1, EINTR));
    // The first poll fails with EINTR; the driver retries with an empty
    // batch and the remaining time. The changes were applied by the first
    // call, and the closed number is still refused by the retry (a closed
    // number makes poll return at once, so the long timeout never runs).
    let mut evs = Events::with_capacity(8);
    let n = p
        .get_next_event(&mut evs, Some(Duration::from_secs(60)))
        .unwrap();
    let injected = fault::injected();
    fault::clear();
    assert_eq!(injected, 1);
    assert_eq!(n, 2, "{:?}", evs.as_slice());
    let mut evs = evs.as_slice().to_vec();
    evs.sort();
    assert_eq!(evs[0].errno, Some(EBADF));
    assert!(evs[1].readable);
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
}

#[test]
fn interrupted_zero_timeout_wait_reports_the_rejection() {
    // The driver looks again, without blocking, after an interrupted wait
    // even when its time is up: the refusal comes in the same call.
    let _g = serial();
    let mut p = poller();
    let closed = closed_number();
    p.declare_interest(closed, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Poll, 1, EINTR));
    let mut evs = Events::with_capacity(8);
    let n = p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    let injected = fault::injected();
    fault::clear();
    assert_eq!((n, injected), (1, 1));
    assert_eq!(tokens(evs.as_slice()), [Token(1)]);
    assert_eq!(evs.as_slice()[0].errno, Some(EBADF));
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 0);
}
