//! Closed descriptors in both halves, and EINTR.
//!
//! These tests close registered descriptors and depend on which numbers are
//! free, so they run one at a time (a lock) in their own test binary.

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{cold_eager, hot_only, poller, tokens, wait, wait_counted};
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
fn closed_while_cold_without_forget_is_silent_then_forget_works() {
    let _g = serial();
    let mut p = poller(cold_eager());
    let (r, w) = fd::pipe().unwrap();
    let n = r.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty());
    }
    assert_eq!(p.backend().is_hot(n), Some(false));
    drop(r);
    drop(w);
    for _ in 0..3 {
        // epoll dropped it with the file: no event, one poll(2).
        let (evs, delta) = wait_counted(&mut p);
        assert!(evs.is_empty());
        assert_eq!(delta.total(), 1, "{delta:?}");
    }
    // A blocking wait does not spin: with nothing else watched it times
    // out.
    let mut evs = Events::with_capacity(8);
    assert_eq!(
        p.get_next_event(&mut evs, Some(Duration::from_millis(1)))
            .unwrap(),
        0
    );
    p.forget(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty());
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold), (0, 0), "{s:?}");
    // The number can be declared again, for a new descriptor.
    let (r, w) = fd::pipe().unwrap();
    assert_eq!(r.as_raw_fd(), n);
    p.declare_interest(n, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"x").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
}

#[test]
fn closed_while_hot_without_forget_is_disabled_silently() {
    let _g = serial();
    let mut p = poller(hot_only());
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    let n = r.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    drop(r);
    drop(w);
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty());
        assert_eq!(p.backend().disabled_entries(), 1);
    }
    p.forget(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().stats().hot, 0);
    assert_eq!(p.backend().disabled_entries(), 0);
}

#[test]
fn a_change_meeting_a_closed_descriptor_is_rejected_in_either_half() {
    let _g = serial();
    for (name, cfg) in [("hot_only", hot_only()), ("cold_eager", cold_eager())] {
        let mut p = poller(cfg);
        let (r, w) = fd::pipe().unwrap();
        let (r2, w2) = fd::pipe().unwrap();
        fd::write(&w2, b"x").unwrap();
        let n = r.as_raw_fd();
        p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        p.declare_interest(r2.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
            .unwrap();
        for _ in 0..3 {
            assert_eq!(tokens(&wait(&mut p)), [Token(2)], "{name}");
        }
        let cold = name == "cold_eager";
        assert_eq!(p.backend().is_hot(n), Some(!cold), "{name}");
        drop(r);
        drop(w);
        assert_eq!(tokens(&wait(&mut p)), [Token(2)], "{name}");
        // A change for it is refused: EPOLL_CTL_MOD says EBADF (cold),
        // POLLNVAL on a fresh entry (hot).
        p.declare_interest(n, Token(1), Interest::BOTH, Mode::Level)
            .unwrap();
        let (evs, delta) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [Token(1), Token(2)], "{name}");
        assert_eq!(evs[0].errno, Some(EBADF), "{name}");
        assert!(evs[0].error && !evs[0].readable && !evs[0].writable);
        assert!(evs[1].readable);
        // Cold: the one EPOLL_CTL_MOD, and no EPOLL_CTL_DEL after it.
        assert_eq!(
            delta.get(SyscallKind::EpollCtl),
            u64::from(cold),
            "{name}: {delta:?}"
        );
        // Nothing left behind.
        let s = p.backend().stats();
        assert_eq!(s.hot + s.cold, 1, "{name}: {s:?}");
        assert_eq!(p.backend().disabled_entries(), 0, "{name}");
        for _ in 0..3 {
            assert_eq!(tokens(&wait(&mut p)), [Token(2)], "{name}");
        }
        p.forget(Token(1)).unwrap();
        assert_eq!(tokens(&wait(&mut p)), [Token(2)], "{name}");
    }
}

#[test]
fn a_parked_cold_registration_whose_descriptor_closed_is_rejected_when_rearmed() {
    let _g = serial();
    let mut p = poller(cold_eager());
    let (r, w) = fd::pipe().unwrap();
    let n = r.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Oneshot)
        .unwrap();
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty());
    }
    assert_eq!(p.backend().is_hot(n), Some(false));
    fd::write(&w, b"x").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    // Fired: the next batch stops watching it (EPOLL_CTL_DEL), parked.
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().parked(), 1);
    drop(r);
    drop(w);
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Oneshot)
        .unwrap();
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    assert_eq!(evs[0].errno, Some(EBADF));
    assert_eq!(p.backend().parked(), 0);
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold), (0, 0), "{s:?}");
    assert!(wait(&mut p).is_empty());
    p.forget(Token(1)).unwrap();
}

#[test]
fn a_demotion_meeting_a_closed_descriptor_disables_it_silently() {
    let _g = serial();
    let mut p = poller(cold_eager());
    let (r, w) = fd::pipe().unwrap();
    let n = r.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    // Fresh at the first wait: not demoted yet.
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().is_hot(n), Some(true));
    drop(r);
    drop(w);
    // The next call tries to demote it: EPOLL_CTL_ADD says EBADF, and the
    // entry is disabled as poll's POLLNVAL would disable it.
    let (evs, delta) = wait_counted(&mut p);
    assert!(evs.is_empty());
    assert_eq!(delta.get(SyscallKind::EpollCtl), 1, "{delta:?}");
    assert_eq!(p.backend().disabled_entries(), 1);
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold, s.demotions), (1, 0, 0), "{s:?}");
    // Not retried: disabled entries are not demotion candidates.
    let (_, delta) = wait_counted(&mut p);
    assert_eq!(delta.total(), 1, "{delta:?}");
    p.forget(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().stats().hot, 0);
}

#[test]
fn reused_number_after_a_rejection_replaces_the_refused_registration() {
    let _g = serial();
    let mut p = poller(cold_eager());
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
    for _ in 0..3 {
        let evs = wait(&mut p);
        assert_eq!(tokens(&evs), [Token(2)]);
        assert!(evs[0].readable && evs[0].errno.is_none());
    }
    let s = p.backend().stats();
    assert_eq!(s.hot + s.cold, 1, "{s:?}");
}

#[test]
fn interrupted_wait_keeps_the_batch_and_still_rejects() {
    let _g = serial();
    let mut p = poller(cold_eager());
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    let closed = closed_number();
    p.declare_interest(closed, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Poll, 1, EINTR));
    // The first poll fails with EINTR; the driver retries with an empty
    // batch. The entry is still fresh for the retry, so the closed number
    // is still refused (and POLLNVAL makes poll return at once).
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
fn interrupted_wait_reports_a_cold_rejection() {
    let _g = serial();
    let mut p = poller(cold_eager());
    let (r, w) = fd::pipe().unwrap();
    let n = r.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty());
    }
    assert_eq!(p.backend().is_hot(n), Some(false));
    drop(r);
    p.declare_interest(n, Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Poll, 1, EINTR));
    let mut evs = Events::with_capacity(8);
    let got = p
        .get_next_event(&mut evs, Some(Duration::from_secs(60)))
        .unwrap();
    fault::clear();
    assert_eq!(got, 1);
    assert_eq!(evs.as_slice()[0].errno, Some(EBADF));
    assert!(wait(&mut p).is_empty());
    drop(w);
}

#[test]
fn interrupted_zero_timeout_wait_reports_the_rejection() {
    // The driver looks again after an EINTR even at a zero timeout; the
    // entry the batch added is still fresh at that retry, so its POLLNVAL
    // is the rejection, in the same call.
    let _g = serial();
    let mut p = poller(cold_eager());
    let closed = closed_number();
    p.declare_interest(closed, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Poll, 1, EINTR));
    let mut evs = Events::with_capacity(8);
    let n = p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    fault::clear();
    assert_eq!(n, 1);
    assert_eq!(evs.as_slice()[0].token, Token(1));
    assert_eq!(evs.as_slice()[0].errno, Some(EBADF));
    assert!(wait(&mut p).is_empty());
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold), (0, 0), "{s:?}");
}

#[test]
fn interrupted_cold_only_wait_keeps_the_batch_and_still_rejects() {
    // Every registration cold and no waker: the wait is a plain
    // epoll_wait(2). When it fails with EINTR the batch stands: its
    // rejection is reported by that call (as in the poll(2) path), the
    // readiness by the next one.
    let _g = serial();
    let mut p = poller(cold_eager());
    let (r1, w1) = fd::pipe().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    let n2 = r2.as_raw_fd();
    p.declare_interest(r1.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(n2, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty());
    }
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold), (0, 2), "{s:?}");
    fd::write(&w1, b"x").unwrap();
    drop(r2);
    p.declare_interest(n2, Token(2), Interest::BOTH, Mode::Level)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollWait, 1, EINTR));
    let mut evs = Events::with_capacity(8);
    let n = p
        .get_next_event(&mut evs, Some(Duration::from_secs(60)))
        .unwrap();
    let injected = fault::injected();
    fault::clear();
    assert_eq!((injected, n), (1, 1));
    assert_eq!(evs.as_slice()[0].token, Token(2));
    assert_eq!(evs.as_slice()[0].errno, Some(EBADF));
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    // A blocking wait interrupted without a rejection: retried, and it
    // reports the readiness.
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollWait, 1, EINTR));
    let n = p
        .get_next_event(&mut Events::with_capacity(8), Some(Duration::from_secs(60)))
        .unwrap();
    let injected = fault::injected();
    fault::clear();
    assert_eq!((injected, n), (1, 1));
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold), (0, 1), "{s:?}");
    drop(w2);
}
