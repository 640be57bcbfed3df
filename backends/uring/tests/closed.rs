//! Closed and reused descriptor numbers, EINTR, and io_uring being refused.
//!
//! Descriptor numbers are process-wide and these tests depend on which
//! numbers are free, so they run one at a time (a lock) in their own test
//! binary.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{drain, poller, tokens, wait, wait_counted, wait_one_enter};
use evmux_interest::{Events, Interest, Mode, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fault::{self, FaultPlan};
use evmux_sys::fd;
use evmux_uring::{Unavailable, UringBackend};

const EBADF: i32 = 9;
const EINTR: i32 = 4;
const EPERM: i32 = 1;
const ENOSYS: i32 = 38;
/// A number nothing in this process opens.
const CLOSED: RawFd = 19_999;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_closed_number_is_rejected_with_ebadf_and_the_batch_still_applies() {
    let _g = serial();
    assert!(!fd::is_open_raw(CLOSED));
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    fd::write(&w2, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(CLOSED, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait_one_enter(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2), Token(3)], "{evs:?}");
    let err = evs[1];
    assert!(err.error && !err.readable && !err.writable);
    assert_eq!(err.errno, Some(EBADF));
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(EBADF));
    assert!(evs[0].readable && evs[2].readable && !evs[0].error && !evs[2].error);
    assert_eq!(p.backend().registrations(), 2);
    for _ in 0..3 {
        assert_eq!(tokens(&wait_one_enter(&mut p)), [Token(1), Token(3)]);
    }
    // Declaring it again retries, and is refused again.
    p.declare_interest(CLOSED, Token(2), Interest::BOTH, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    let err = evs.iter().find(|e| e.token == Token(2)).unwrap();
    assert_eq!(err.errno, Some(EBADF));
    p.forget(Token(2)).unwrap();
    assert_eq!(tokens(&wait_one_enter(&mut p)), [Token(1), Token(3)]);
    assert_eq!(p.backend().registrations(), 2);
    drop((r, w, r2, w2));
}

#[test]
fn a_rejection_does_not_let_the_wait_block() {
    let _g = serial();
    let mut p = poller();
    let (r, _w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(CLOSED, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    let mut evs = Events::with_capacity(8);
    // Nothing else is ready: only the refusal can end this wait.
    let n = p.get_next_event(&mut evs, None).unwrap();
    assert_eq!(n, 1);
    assert_eq!(evs.as_slice()[0].errno, Some(EBADF));
}

#[test]
fn closed_without_forget_after_a_successful_wait_is_silent() {
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
    // The hang-up of the writer side reaches the poll (it still holds the
    // file) but the re-check sees a closed number: silence.
    drop(w);
    for _ in 0..3 {
        assert!(wait_one_enter(&mut p).is_empty());
    }
    // A blocking wait does not spin on it.
    let mut evs = Events::with_capacity(8);
    let (n_evs, delta) = {
        let before = evmux_sys::counter::snapshot();
        let got = p
            .get_next_event(&mut evs, Some(Duration::from_millis(2)))
            .unwrap();
        (got, evmux_sys::counter::snapshot() - before)
    };
    assert_eq!(n_evs, 0);
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
    p.forget(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().registrations(), 0);
    assert_eq!(p.backend().armed_polls(), 0);
    // The number can be declared again, for a new descriptor.
    let (r, w) = fd::pipe().unwrap();
    assert_eq!(r.as_raw_fd(), n);
    p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"x").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
}

#[test]
fn a_change_meeting_a_descriptor_closed_since_registration_is_rejected() {
    // As EPOLL_CTL_MOD would be: the new POLL_ADD looks the number up.
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
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    p.declare_interest(n, Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    let evs = wait_one_enter(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2)]);
    assert_eq!(evs[0].errno, Some(EBADF));
    assert!(evs[1].readable);
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    p.forget(Token(1)).unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    // Token 2 was just reported: its one-shot poll completed, and the next
    // wait arms a new one. Nothing else is armed.
    assert_eq!(p.backend().armed_polls(), 0);
    assert_eq!(p.backend().registrations(), 1);
    drop((r2, w2));
}

/// Registration 1 on a pipe with pending data; forget it and put another,
/// empty pipe's read end at the same number; declare it as 2.
fn reuse(separate_waits: bool) {
    let mut p = poller();
    let (r1, w1) = fd::pipe().unwrap();
    fd::write(&w1, b"old").unwrap();
    let n = r1.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    // Reported: its one-shot poll completed, so nothing holds the file and
    // the forget costs nothing.
    let before = counter::snapshot();
    p.forget(Token(1)).unwrap();
    assert_eq!((counter::snapshot() - before).total(), 0);
    if separate_waits {
        assert!(wait_one_enter(&mut p).is_empty());
        assert_eq!(p.backend().registrations(), 0);
    }
    let (r2, w2) = fd::pipe().unwrap();
    // dup3: the number never becomes free; pipe 1 loses its reader.
    let r2_at_n = fd::dup_onto(r2.as_fd(), r1).unwrap();
    assert_eq!(r2_at_n.as_raw_fd(), n);
    drop(r2);
    drop(w1);
    p.declare_interest(n, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    // Pipe 2 is empty: nothing for anyone (the old poll, cancelled in this
    // batch, would have said readable).
    assert!(wait_one_enter(&mut p).is_empty());
    assert_eq!(p.backend().registrations(), 1);
    fd::write(&w2, b"new").unwrap();
    for _ in 0..3 {
        let evs = wait_one_enter(&mut p);
        assert_eq!(tokens(&evs), [Token(2)]);
        assert!(evs[0].readable && !evs[0].read_closed);
    }
    drain(&r2_at_n);
    assert!(wait(&mut p).is_empty());
    // Not ready: its poll is armed.
    assert_eq!(p.backend().armed_polls(), 1);
    drop(w2);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(2)]);
    assert!(evs[0].read_closed);
}

#[test]
fn a_reused_number_with_the_old_poll_armed_reports_only_the_new_token() {
    // As `reuse`, but the old registration's poll is armed when it is
    // forgotten (its pipe is empty): the forget cancels it, and its
    // -ECANCELED comes back under a key no longer registered and is
    // dropped. The old pipe becomes readable afterwards, watched by nobody.
    let _g = serial();
    let mut p = poller();
    let (r1, w1) = fd::pipe().unwrap();
    let n = r1.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait_one_enter(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 1);
    let stale = p.backend().quirk_stats().stale;
    let before = counter::snapshot();
    p.forget(Token(1)).unwrap();
    assert_eq!(
        (counter::snapshot() - before).get(SyscallKind::IoUringEnter),
        1
    );
    // The cancelled poll's -ECANCELED: dropped.
    assert!(p.backend().quirk_stats().stale > stale);
    fd::write(&w1, b"old").unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    let r2_at_n = fd::dup_onto(r2.as_fd(), r1).unwrap();
    assert_eq!(r2_at_n.as_raw_fd(), n);
    drop(r2);
    p.declare_interest(n, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait_one_enter(&mut p).is_empty());
    fd::write(&w2, b"new").unwrap();
    let evs = wait_one_enter(&mut p);
    assert_eq!(tokens(&evs), [Token(2)]);
    drop(w1);
}

#[test]
fn a_reused_number_in_the_same_batch_reports_only_the_new_token() {
    let _g = serial();
    reuse(false);
}

#[test]
fn a_reused_number_across_two_waits_reports_only_the_new_token() {
    let _g = serial();
    reuse(true);
}

#[test]
fn an_interrupted_enter_keeps_the_batch_and_still_rejects() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    p.declare_interest(CLOSED, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    // The first io_uring_enter fails with EINTR before reaching the kernel:
    // the SQEs stay in the ring. The driver retries with an empty batch;
    // that enter submits them (once).
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::IoUringEnter, 1, EINTR));
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
    // Applied once: once drained, one poll armed (the backend did not
    // queue the addition again for the retry).
    drain(&r);
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 1);
    assert_eq!(p.backend().registrations(), 1);
}

#[test]
fn an_interrupted_zero_timeout_wait_reports_the_rejection() {
    // The driver looks again after an EINTR even at a zero timeout: the
    // retry submits the POLL_ADD, whose refusal is in the same call.
    let _g = serial();
    let mut p = poller();
    p.declare_interest(CLOSED, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::IoUringEnter, 1, EINTR));
    let mut evs = Events::with_capacity(8);
    let n = p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    fault::clear();
    assert_eq!(n, 1);
    assert_eq!(evs.as_slice()[0].token, Token(1));
    assert_eq!(evs.as_slice()[0].errno, Some(EBADF));
    let (evs, delta) = wait_counted(&mut p);
    assert!(evs.is_empty(), "{evs:?}");
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1);
    assert_eq!(p.backend().registrations(), 0);
}

fn refused(errno: i32) -> std::io::Error {
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::IoUringSetup, 1, errno));
    let err = UringBackend::new().unwrap_err();
    fault::clear();
    err
}

#[test]
fn refused_io_uring_is_a_clear_error() {
    let err = refused(EPERM);
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    let msg = err.to_string();
    assert!(msg.contains("io_uring is unavailable"), "{msg}");
    assert!(
        msg.contains("io_uring_disabled") || msg.contains("EPERM"),
        "{msg}"
    );
    let why = err
        .get_ref()
        .unwrap()
        .downcast_ref::<Unavailable>()
        .unwrap();
    assert_eq!(why.errno(), Some(EPERM));

    let err = refused(ENOSYS);
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    assert!(err.to_string().contains("CONFIG_IO_URING"), "{err}");
    let why = err
        .get_ref()
        .unwrap()
        .downcast_ref::<Unavailable>()
        .unwrap();
    assert_eq!(why.errno(), Some(ENOSYS));
}
