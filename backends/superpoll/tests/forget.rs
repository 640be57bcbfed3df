//! `forget` of a cold registration deletes it from the epoll set at once
//! (`Backend::forget_now`), and stale entries of the epoll set do not crowd
//! out live reports in the inner `epoll_wait`.

mod common;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{cold_eager, poller, tokens, wait, wait_counted};
use evmux_interest::{Events, Interest, Mode, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fault::{self, FaultPlan};
use evmux_sys::fd;

const ENOMEM: i32 = 12;
const EBADF: i32 = 9;

#[test]
fn forget_of_a_cold_registration_deletes_it_now() {
    let mut p = poller(cold_eager());
    let (r, w) = fd::pipe().unwrap();
    let (idle, _idle_w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(idle.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    for _ in 0..3 {
        wait(&mut p);
    }
    assert_eq!(p.backend().is_hot(r.as_raw_fd()), Some(false));
    let before = counter::snapshot();
    p.forget(Token(1)).unwrap();
    let delta = counter::snapshot() - before;
    assert_eq!(delta.get(SyscallKind::EpollCtl), 1, "{delta:?}");
    assert_eq!(delta.total(), 1, "{delta:?}");
    assert_eq!(p.backend().stats().cold, 1);
    // The next wait has nothing left to delete.
    fd::write(&w, b"x").unwrap();
    let (evs, delta) = wait_counted(&mut p);
    assert!(evs.is_empty(), "{evs:?}");
    assert_eq!(delta.get(SyscallKind::EpollCtl), 0, "{delta:?}");
    // The same number declared again works, in either half.
    p.declare_interest(r.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    for _ in 0..3 {
        assert_eq!(tokens(&wait(&mut p)), [Token(3)]);
    }
}

#[test]
fn forget_of_a_hot_registration_costs_nothing() {
    let mut p = poller(common::hot_only());
    let (r, _w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    wait(&mut p);
    let before = counter::snapshot();
    p.forget(Token(1)).unwrap();
    assert_eq!((counter::snapshot() - before).total(), 0);
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().stats().hot, 0);
}

#[test]
fn a_failed_delete_in_forget_is_retried_by_the_batch() {
    for errno in [ENOMEM, EBADF] {
        let mut p = poller(cold_eager());
        let (r, w) = fd::pipe().unwrap();
        let (idle, _idle_w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        p.declare_interest(idle.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
            .unwrap();
        for _ in 0..3 {
            wait(&mut p);
        }
        fd::write(&w, b"x").unwrap();
        fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollCtl, 1, errno));
        p.forget(Token(1)).unwrap();
        fault::clear();
        // Still in the set; the batch deletes it (the number is open).
        assert_eq!(p.backend().stats().cold, 2);
        let (evs, delta) = wait_counted(&mut p);
        assert!(evs.is_empty(), "{evs:?}");
        assert_eq!(delta.get(SyscallKind::EpollCtl), 1, "{delta:?}");
        assert_eq!(p.backend().stats().cold, 1);
        // Nothing stale: a blocking wait blocks.
        let mut events = Events::with_capacity(8);
        let t0 = Instant::now();
        let before = counter::snapshot();
        let n = p
            .get_next_event(&mut events, Some(Duration::from_millis(30)))
            .unwrap();
        assert_eq!(n, 0);
        assert!(t0.elapsed() >= Duration::from_millis(25));
        assert!((counter::snapshot() - before).total() <= 3);
    }
}

#[test]
fn stale_entries_do_not_crowd_out_live_cold_reports() {
    let mut p = poller(cold_eager());
    // Ten ready pipes whose EPOLL_CTL_DEL fails twice (in forget, then in
    // the batch): their entries stay in the epoll set, unknown to the
    // backend, ready at every epoll_wait.
    let stale: Vec<_> = (0..10).map(|_| fd::pipe().unwrap()).collect();
    for (i, (r, w)) in stale.iter().enumerate() {
        fd::write(w, b"x").unwrap();
        p.declare_interest(
            r.as_raw_fd(),
            Token(10 + i),
            Interest::READABLE,
            Mode::Level,
        )
        .unwrap();
    }
    let (live, live_w) = fd::pipe().unwrap();
    p.declare_interest(live.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    fd::write(&live_w, b"x").unwrap();
    for _ in 0..3 {
        wait(&mut p);
    }
    assert_eq!(p.backend().stats().cold, 11);
    fault::install(FaultPlan::new(1).fail(SyscallKind::EpollCtl, ENOMEM, 1000));
    for i in 0..10 {
        p.forget(Token(10 + i)).unwrap();
    }
    let evs = wait(&mut p);
    fault::clear();
    assert_eq!(tokens(&evs), [Token(1)]);
    assert_eq!(p.backend().stats().cold, 1);
    for cap in [1, 2, 256] {
        for _ in 0..5 {
            let evs = common::wait_cap(&mut p, cap);
            assert_eq!(tokens(&evs), [Token(1)], "cap {cap}");
        }
    }
}
