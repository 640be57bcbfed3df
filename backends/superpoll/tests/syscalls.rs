//! What a wait and a change cost, counted with `evmux_sys::counter`.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::{
    assert_only_one_poll, busy_stay_hot, cold_eager, drain, hot_only, poller, tokens, wait,
    wait_counted,
};
use evmux_interest::{Interest, Mode, Token};
use evmux_superpoll::SuperpollConfig;
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;

fn pairs(n: usize) -> Vec<(OwnedFd, OwnedFd)> {
    (0..n).map(|_| fd::socketpair_stream().unwrap()).collect()
}

#[test]
fn a_wait_with_only_hot_descriptors_is_one_poll() {
    for cfg in [hot_only(), SuperpollConfig::default()] {
        let mut p = poller(cfg);
        let ps = pairs(8);
        for (i, (a, _)) in ps.iter().enumerate() {
            p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
                .unwrap();
        }
        // Half of them ready, the others idle; few enough waits that the
        // default policy demotes nobody: a new registration starts at
        // `promote_above`, and an idle one decays below `demote_below` after
        // `half_life * log2(promote_above / demote_below)` waits (10.4 with
        // the defaults; the busy half keeps the array out of pressure).
        let d = SuperpollConfig::default();
        let waits = (f64::from(d.half_life) * (d.promote_above / d.demote_below).log2()) as usize;
        assert!(waits >= 8, "{waits}");
        for (_, b) in &ps[..4] {
            fd::write(b, b"x").unwrap();
        }
        for _ in 0..waits {
            let (evs, delta) = wait_counted(&mut p);
            assert_eq!(tokens(&evs), (0..4).map(Token).collect::<Vec<_>>());
            assert_only_one_poll(delta);
        }
        assert_eq!(p.backend().stats().cold, 0);
    }
}

#[test]
fn a_change_to_a_hot_descriptor_costs_no_epoll_ctl() {
    let mut p = poller(hot_only());
    let (a, b) = fd::socketpair_stream().unwrap();
    fd::write(&b, b"x").unwrap();
    let fd = a.as_raw_fd();
    p.declare_interest(fd, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_only_one_poll(wait_counted(&mut p).1);
    for mode in [Mode::Level, Mode::Edge, Mode::Oneshot] {
        for interest in [Interest::WRITABLE, Interest::BOTH, Interest::READABLE] {
            p.declare_interest(fd, Token(1), interest, mode).unwrap();
            let (evs, delta) = wait_counted(&mut p);
            assert_eq!(tokens(&evs), [Token(1)], "{mode:?} {interest:?}");
            assert_only_one_poll(delta);
        }
        // Edge and oneshot narrow the watch after the report: free too.
        let (_, delta) = wait_counted(&mut p);
        assert_only_one_poll(delta);
    }
    assert_eq!(p.backend().stats().cold, 0);
}

#[test]
fn cold_descriptors_cost_an_epoll_wait_only_when_ready() {
    let mut p = poller(cold_eager());
    let ps = pairs(6);
    for (i, (a, _)) in ps.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    assert!(wait(&mut p).is_empty());
    // The second call demotes all six: one EPOLL_CTL_ADD each. The array is
    // left with nothing but the epoll descriptor: the wait is a plain
    // epoll_wait(2).
    let (evs, delta) = wait_counted(&mut p);
    assert!(evs.is_empty());
    assert_eq!(delta.get(SyscallKind::EpollCtl), 6, "{delta:?}");
    assert_eq!(delta.get(SyscallKind::EpollWait), 1, "{delta:?}");
    assert_eq!(delta.total(), 7, "{delta:?}");
    assert_eq!(p.backend().stats().cold, 6);
    let only_epoll_wait = |delta: counter::Counts| {
        assert_eq!(delta.get(SyscallKind::EpollWait), 1, "{delta:?}");
        assert_eq!(delta.total(), 1, "{delta:?}");
    };
    // Idle or ready, one epoll_wait(2) and nothing else.
    for _ in 0..5 {
        let (evs, delta) = wait_counted(&mut p);
        assert!(evs.is_empty());
        only_epoll_wait(delta);
    }
    fd::write(&ps[1].1, b"x").unwrap();
    fd::write(&ps[4].1, b"x").unwrap();
    for _ in 0..5 {
        let (evs, delta) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [Token(1), Token(4)]);
        only_epoll_wait(delta);
    }
    // A change to a cold descriptor: one EPOLL_CTL_MOD.
    p.declare_interest(ps[2].0.as_raw_fd(), Token(2), Interest::BOTH, Mode::Level)
        .unwrap();
    let (evs, delta) = wait_counted(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2), Token(4)]);
    assert_eq!(delta.get(SyscallKind::EpollCtl), 1, "{delta:?}");
    assert_eq!(delta.get(SyscallKind::EpollWait), 1, "{delta:?}");
    assert_eq!(delta.total(), 2, "{delta:?}");
    // With something in the array (the waker's eventfd), the wait is a
    // poll(2), plus an epoll_wait(2) only when the cold half is ready.
    let _waker = p.waker(Token(99)).unwrap();
    drain(&ps[1].0);
    drain(&ps[4].0);
    p.declare_interest(
        ps[2].0.as_raw_fd(),
        Token(2),
        Interest::READABLE,
        Mode::Level,
    )
    .unwrap();
    assert!(wait(&mut p).is_empty());
    for _ in 0..5 {
        let (evs, delta) = wait_counted(&mut p);
        assert!(evs.is_empty());
        assert_only_one_poll(delta);
    }
    fd::write(&ps[1].1, b"x").unwrap();
    fd::write(&ps[4].1, b"x").unwrap();
    for _ in 0..5 {
        let (evs, delta) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [Token(1), Token(4)]);
        assert_eq!(delta.get(SyscallKind::Poll), 1, "{delta:?}");
        assert_eq!(delta.get(SyscallKind::EpollWait), 1, "{delta:?}");
        assert_eq!(delta.total(), 2, "{delta:?}");
    }
    drain(&ps[1].0);
    drain(&ps[4].0);
}

#[test]
fn a_full_call_leaves_cold_readiness_in_the_kernel_without_an_epoll_wait() {
    // The hot half fills the room: the cold half is not asked this time,
    // and goes first next time.
    let mut p = poller(busy_stay_hot());
    let ps = pairs(4);
    for (i, (a, _)) in ps.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    // Pairs 0 and 1 are busy from the start (stay hot); 2 and 3 go cold.
    fd::write(&ps[0].1, b"x").unwrap();
    fd::write(&ps[1].1, b"x").unwrap();
    for _ in 0..3 {
        assert_eq!(tokens(&wait(&mut p)), [Token(0), Token(1)]);
    }
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold), (2, 2), "{s:?}");
    fd::write(&ps[2].1, b"x").unwrap();
    fd::write(&ps[3].1, b"x").unwrap();
    let before = counter::snapshot();
    let mut first = common::wait_cap(&mut p, 2);
    assert_only_one_poll(counter::snapshot() - before);
    assert_eq!(tokens(&first), [Token(0), Token(1)]);
    let before = counter::snapshot();
    let mut second = common::wait_cap(&mut p, 2);
    let delta = counter::snapshot() - before;
    assert_eq!(delta.get(SyscallKind::EpollWait), 1, "{delta:?}");
    assert_eq!(tokens(&second), [Token(2), Token(3)]);
    first.append(&mut second);
    let mut got = tokens(&first);
    got.sort();
    assert_eq!(got, (0..4).map(Token).collect::<Vec<_>>());
}
