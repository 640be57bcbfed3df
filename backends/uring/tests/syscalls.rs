//! What a wait costs: one io_uring_enter for a whole batch of changes, and
//! one io_uring_enter (and nothing else) per wait for level registrations
//! that stay ready; the paths that cost more (a batch larger than the
//! submission queue, CQ overflow). What a `forget` costs: one io_uring_enter
//! if a poll of the registration is armed, nothing otherwise. Also: the
//! backend moving between threads.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use common::{drain, poller, tokens, wait, wait_cap, wait_counted, wait_for};
use evmux_interest::{Events, Interest, Mode, Poller, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;
use evmux_uring::UringBackend;

fn pairs(n: usize) -> Vec<(OwnedFd, OwnedFd)> {
    (0..n).map(|_| fd::socketpair_stream().unwrap()).collect()
}

/// One `get_next_event` with a zero timeout and room for `cap` events; the
/// number of events and the io_uring_enter calls it made.
fn counted(p: &mut Poller<UringBackend>, cap: usize) -> (usize, u64) {
    let mut evs = Events::with_capacity(cap);
    let before = counter::get(SyscallKind::IoUringEnter);
    let n = p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    (n, counter::get(SyscallKind::IoUringEnter) - before)
}

fn batch_of(n: usize) {
    let mut p = poller();
    let socks = pairs(n);
    // n additions, nothing ready: one enter, and no re-check.
    for (i, (a, _)) in socks.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    let before = counter::snapshot();
    let (got, enters) = counted(&mut p, 64);
    let delta = counter::snapshot() - before;
    assert_eq!((got, enters), (0, 1), "adds, n = {n}");
    assert_eq!(delta.get(SyscallKind::Poll), 0, "{delta:?}");
    assert_eq!(delta.total(), 1, "{delta:?}");
    assert_eq!(p.backend().armed_polls(), n as u64);
    // n modifications (a cancel and an add each: 2n SQEs), everything
    // writable: one enter, and nothing else; all n reported by it. Their
    // one-shot polls completed with the report.
    for (i, (a, _)) in socks.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::WRITABLE, Mode::Level)
            .unwrap();
    }
    let before = counter::snapshot();
    let (got, enters) = counted(&mut p, 1000);
    assert_eq!((got, enters), (n, 1), "modifications, n = {n}");
    assert_eq!((counter::snapshot() - before).total(), 1);
    assert_eq!(p.backend().armed_polls(), 0);
    // n pending changes again (back to readable: one add each, nothing to
    // cancel), then n removals of armed registrations: each forget cancels
    // its poll at once, one enter each (and nothing else), and leaves
    // nothing for the wait.
    for (i, (a, _)) in socks.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    let (got, enters) = counted(&mut p, 64);
    assert_eq!((got, enters), (0, 1), "modifications back, n = {n}");
    assert_eq!(p.backend().armed_polls(), n as u64);
    for i in 0..n {
        let before = counter::snapshot();
        p.forget(Token(i)).unwrap();
        let delta = counter::snapshot() - before;
        assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "forget, n = {n}");
        assert_eq!(delta.total(), 1, "{delta:?}");
    }
    assert_eq!(p.backend().armed_polls(), 0);
    assert_eq!(p.backend().registrations(), 0);
    let stats = p.backend().quirk_stats();
    assert_eq!((stats.forgotten_now, stats.forget_deferred), (n as u64, 0));
    let (got, enters) = counted(&mut p, 64);
    assert_eq!((got, enters), (0, 1), "after removals, n = {n}");
    // n additions and n forgets before any wait: nothing reached the
    // kernel, so the forgets cost nothing and the wait one enter.
    for (i, (a, _)) in socks.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    let before = counter::snapshot();
    for i in 0..n {
        p.forget(Token(i)).unwrap();
    }
    assert_eq!((counter::snapshot() - before).total(), 0);
    let (got, enters) = counted(&mut p, 64);
    assert_eq!((got, enters), (0, 1), "cancelled out, n = {n}");
    assert_eq!(p.backend().armed_polls(), 0);
}

#[test]
fn one_change_is_one_enter() {
    batch_of(1);
}

#[test]
fn ten_changes_are_one_enter() {
    batch_of(10);
}

#[test]
fn a_thousand_changes_are_one_enter() {
    batch_of(1000);
}

/// The syscalls `forget(token)` makes.
fn forget_counted(p: &mut Poller<UringBackend>, token: usize) -> evmux_sys::counter::Counts {
    let before = counter::snapshot();
    p.forget(Token(token)).unwrap();
    counter::snapshot() - before
}

#[test]
fn forget_costs_one_enter_if_the_registration_was_armed() {
    let mut p = poller();
    let (a, _b) = fd::socketpair_stream().unwrap();
    let (r, w) = fd::pipe().unwrap();
    let file = fd::open_tmp_regular_file().unwrap();
    let (s, _peer) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Edge)
        .unwrap();
    p.declare_interest(file.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(s.as_raw_fd(), Token(4), Interest::BOTH, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(3), Token(4)]);
    assert_eq!(
        p.backend().armed_polls(),
        2,
        "the reported registrations' one-shot polls completed"
    );
    // Armed: one enter, nothing else.
    let delta = forget_counted(&mut p, 1);
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
    assert_eq!(delta.total(), 1, "{delta:?}");
    // A regular file, a reported socket: no poll armed, nothing to cancel.
    for t in [3, 4] {
        let delta = forget_counted(&mut p, t);
        assert_eq!(delta.total(), 0, "{delta:?}");
    }
    // An edge registration whose poll fired since the last wait: its
    // completion is reaped by the forget, and nothing is left to cancel.
    fd::write(&w, b"x").unwrap();
    let delta = forget_counted(&mut p, 2);
    assert_eq!(delta.total(), 0, "{delta:?}");
    assert_eq!(p.backend().armed_polls(), 0);
    assert_eq!(p.backend().registrations(), 0);
    // The wait after: one enter, no change left.
    let before = counter::snapshot();
    assert!(wait(&mut p).is_empty());
    let delta = counter::snapshot() - before;
    assert_eq!(delta.total(), 1, "{delta:?}");
    let stats = p.backend().quirk_stats();
    assert_eq!((stats.forgotten_now, stats.forget_deferred), (1, 0));
}

/// `n` pipes with unread data, `n` writable socket ends and a regular file,
/// all level: every wait reports all of them and costs one io_uring_enter,
/// and nothing else, however many waits; drained ones are not reported
/// again, still at one syscall per wait.
fn level_stays_ready(n: usize) {
    let mut p = poller();
    let pipes: Vec<_> = (0..n).map(|_| fd::pipe().unwrap()).collect();
    let socks = pairs(n);
    let file = fd::open_tmp_regular_file().unwrap();
    for (i, (r, w)) in pipes.iter().enumerate() {
        fd::write(w, b"hello").unwrap();
        p.declare_interest(r.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    for (i, (a, _)) in socks.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(n + i), Interest::WRITABLE, Mode::Level)
            .unwrap();
    }
    p.declare_interest(file.as_raw_fd(), Token(2 * n), Interest::BOTH, Mode::Level)
        .unwrap();
    let all: Vec<Token> = (0..=2 * n).map(Token).collect();
    let cap = 2 * n + 8;
    let one_wait = |p: &mut Poller<UringBackend>| {
        let before = counter::snapshot();
        let evs = wait_cap(p, cap);
        (evs, counter::snapshot() - before)
    };
    for i in 0..8 {
        let (evs, delta) = one_wait(&mut p);
        assert_eq!(tokens(&evs), all, "wait {i}, n = {n}");
        assert!(evs[..n].iter().all(|e| e.readable && !e.writable));
        assert!(evs[n..2 * n].iter().all(|e| e.writable && !e.readable));
        assert_eq!(
            delta.get(SyscallKind::IoUringEnter),
            1,
            "wait {i}: {delta:?}"
        );
        assert_eq!(delta.total(), 1, "wait {i}, n = {n}: {delta:?}");
    }
    // Drained after a report: not reported again (its re-arm finds the pipe
    // empty and stays armed), and the others still are, at one syscall.
    for (r, _) in &pipes {
        drain(r);
    }
    for i in 0..3 {
        let (evs, delta) = one_wait(&mut p);
        assert_eq!(tokens(&evs), all[n..], "drained, wait {i}, n = {n}");
        assert_eq!(delta.total(), 1, "drained, wait {i}: {delta:?}");
    }
    assert_eq!(p.backend().armed_polls(), n as u64);
    // Data that comes and goes between two waits (its completion is posted
    // before the wait, then read): re-checked in the wait's own enter, not
    // reported.
    for (r, w) in &pipes {
        fd::write(w, b"x").unwrap();
        drain(r);
    }
    let (evs, delta) = one_wait(&mut p);
    assert_eq!(tokens(&evs), all[n..], "n = {n}");
    assert_eq!(delta.total(), 1, "{delta:?}");
    let stats = p.backend().quirk_stats();
    assert_eq!(stats.filtered, n as u64, "{stats:?}");
    // Data that comes and stays: reported at every wait again.
    for (_, w) in &pipes {
        fd::write(w, b"y").unwrap();
    }
    for i in 0..3 {
        let (evs, delta) = one_wait(&mut p);
        assert_eq!(tokens(&evs), all, "refilled, wait {i}, n = {n}");
        assert_eq!(delta.total(), 1, "refilled, wait {i}: {delta:?}");
    }
    // Everything quiet: a blocking wait blocks, in one enter.
    for (r, _) in &pipes {
        drain(r);
    }
    for (i, _) in socks.iter().enumerate() {
        p.declare_interest(
            socks[i].0.as_raw_fd(),
            Token(n + i),
            Interest::READABLE,
            Mode::Level,
        )
        .unwrap();
    }
    p.forget(Token(2 * n)).unwrap();
    let before = counter::snapshot();
    assert!(wait_for(&mut p, Some(Duration::from_millis(5))).is_empty());
    let delta = counter::snapshot() - before;
    assert_eq!(delta.total(), 1, "{delta:?}");
}

#[test]
fn a_level_registration_that_stays_ready_costs_one_syscall_per_wait() {
    level_stays_ready(1);
}

#[test]
fn a_hundred_level_registrations_that_stay_ready_cost_one_syscall_per_wait() {
    level_stays_ready(100);
}

#[test]
fn forget_from_another_thread_leaves_the_removal_to_the_next_wait() {
    // The armed poll's completion runs on the thread that armed it, which
    // is blocked (in join): the forget cannot complete the cancellation
    // and does not try; the next wait removes the registration.
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    let p = std::thread::spawn(move || {
        let mut p = p;
        // Let the first thread reach its join.
        std::thread::sleep(Duration::from_millis(20));
        let delta = forget_counted(&mut p, 1);
        assert_eq!(delta.total(), 0, "{delta:?}");
        assert_eq!(p.backend().quirk_stats().forget_deferred, 1);
        fd::write(&w, b"x").unwrap();
        assert!(wait(&mut p).is_empty());
        assert_eq!(p.backend().registrations(), 1);
        // Token 2 was armed before the move too, and its old poll was
        // cancelled by the move: that poll completes only when the first
        // thread runs its task work, which wakes it in its join (the kernel
        // restarts the join) but may not have run yet. Then the forget is
        // deferred as well, without waiting (no enter). If the first thread
        // did run it, the forget is immediate: one enter.
        let stats = p.backend().quirk_stats();
        let delta = forget_counted(&mut p, 2);
        let after = p.backend().quirk_stats();
        match delta.get(SyscallKind::IoUringEnter) {
            0 => assert_eq!(after.forget_deferred, stats.forget_deferred + 1),
            1 => assert_eq!(after.forgotten_now, stats.forgotten_now + 1),
            n => panic!("{n} enters: {delta:?}"),
        }
        assert!(wait(&mut p).is_empty());
        assert_eq!(p.backend().registrations(), 0);
        drop(w2);
        p
    })
    .join()
    .unwrap();
    let mut p = p;
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 0);
    drop(r2);
    // Reported from this thread again (the writer is gone: end of file):
    // its one-shot poll completed, and the forget costs nothing.
    p.declare_interest(r.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(3)]);
    let delta = forget_counted(&mut p, 3);
    assert_eq!(delta.total(), 0, "{delta:?}");
    // Armed from this thread again: the forget is immediate.
    let (r3, _w3) = fd::pipe().unwrap();
    p.declare_interest(r3.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 1);
    let stats = p.backend().quirk_stats();
    let delta = forget_counted(&mut p, 3);
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
    let after = p.backend().quirk_stats();
    assert_eq!(after.forgotten_now, stats.forgotten_now + 1);
}

#[test]
fn a_batch_larger_than_the_submission_queue_is_submitted_in_chunks() {
    let mut p = Poller::new(UringBackend::with_ring_sizes(4, 8).unwrap());
    assert_eq!(p.backend().sq_entries(), 4);
    let socks = pairs(10);
    for (i, (a, _)) in socks.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    let (got, enters) = counted(&mut p, 64);
    assert_eq!(got, 0);
    // Ten SQEs through a four-entry queue: two full queues submitted on
    // the way, then the waiting enter.
    assert_eq!(enters, 3);
    assert_eq!(p.backend().armed_polls(), 10);
    for (_, b) in &socks {
        fd::write(b, b"x").unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        seen.extend(tokens(&wait(&mut p)));
    }
    assert_eq!(seen.len(), 10);
}

#[test]
fn cq_overflow_is_flushed_and_nothing_is_lost() {
    // 24 polls that are ready when armed, through a CQ of 16 entries: the
    // kernel keeps the extra CQEs aside (IORING_SQ_CQ_OVERFLOW), and the
    // backend flushes them (one more io_uring_enter) within the same wait.
    let mut p = Poller::new(UringBackend::with_ring_sizes(8, 8).unwrap());
    assert!(p.backend().cq_entries() <= 16);
    let mut pipes = Vec::new();
    for i in 0..24 {
        let (r, w) = fd::pipe().unwrap();
        fd::write(&w, b"x").unwrap();
        p.declare_interest(r.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
        pipes.push((r, w));
    }
    let all: Vec<Token> = (0..24).map(Token).collect();
    // Every registration is reported by the very wait that armed it, and
    // by the next ones (level: each wait re-arms all 24, which complete at
    // once and overflow the CQ again).
    for _ in 0..3 {
        assert_eq!(tokens(&wait_cap(&mut p, 64)), all);
    }
    let stats = p.backend().quirk_stats();
    assert!(stats.overflow_flushes >= 3, "{stats:?}");
    for (r, _) in &pipes {
        drain(r);
    }
    assert!(wait(&mut p).is_empty());
    // Every poll is armed again, none twice.
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 24);
    // Their wake-ups overflow the CQ too (posted before the wait, so
    // re-checked in it): nothing is lost.
    for (_, w) in &pipes {
        fd::write(w, b"y").unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.extend(tokens(&wait_cap(&mut p, 64)));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), all);
}

#[test]
fn moving_the_backend_to_another_thread_re_arms_its_polls_there() {
    // A poll's completion work runs on the thread that submitted it; after
    // a move the backend re-arms everything from the new thread, so a
    // zero-timeout wait there sees readiness at once.
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let waker = p.waker(Token(99)).unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    let (p, r, w) = std::thread::spawn(move || {
        let mut p = p;
        fd::write(&w, b"x").unwrap();
        let (evs, delta) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [Token(1)]);
        assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
        drain(&r);
        assert!(wait(&mut p).is_empty());
        (p, r, w)
    })
    .join()
    .unwrap();
    // Back on the first thread, whose old polls were cancelled; the
    // thread that armed the current ones has exited.
    let mut p = p;
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"y").unwrap();
    waker.wake().unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1), Token(99)]);
    drain(&r);
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"z").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    drain(&r);
    // The cancelled polls of the exited thread end through the kernel's
    // fallback work, asynchronously; their -ECANCELED reaches nobody and
    // re-arms nothing. Wait (boundedly) until they are all accounted for.
    for _ in 0..1000 {
        if p.backend().armed_polls() == 2 {
            break;
        }
        let mut evs = Events::with_capacity(8);
        p.get_next_event(&mut evs, Some(Duration::from_millis(5)))
            .unwrap();
        assert!(evs.is_empty(), "{:?}", evs.as_slice());
    }
    assert_eq!(p.backend().armed_polls(), 2);
}
