//! Readiness through the driver on real descriptors: level, emulated edge
//! and oneshot, hang-ups, regular files, `max_events`, and the incremental
//! `pollfd` array.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};

use common::{assert_only_one_poll, drain, fill, poller, tokens, wait, wait_cap, wait_one_poll};
use evmux_interest::{Backend, Capabilities, Interest, Mode, Token};
use evmux_poll::PollBackend;
use evmux_sys::counter;
use evmux_sys::fd;

#[test]
fn name_capabilities_and_clock() {
    let b = PollBackend::new().unwrap();
    assert_eq!(b.name(), "poll");
    assert_eq!(
        b.capabilities(),
        Capabilities {
            native_edge: false,
            native_oneshot: false,
            cheap_changes: true,
            max_fd: None,
        }
    );
    let t0 = b.now();
    assert!(b.now() >= t0);
    assert_eq!(b.entries(), 0);
    // Creating the backend opens no descriptor.
    let before = counter::snapshot();
    let _b = PollBackend::new().unwrap();
    assert_eq!((counter::snapshot() - before).total(), 0);
}

#[test]
fn level_readable_pipe_until_drained() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"hello").unwrap();
    for _ in 0..3 {
        let evs = wait(&mut p);
        assert_eq!(evs.len(), 1, "{evs:?}");
        let ev = evs[0];
        assert_eq!(ev.token, Token(1));
        assert!(ev.readable && !ev.writable && !ev.read_closed && !ev.error);
    }
    assert_eq!(drain(&r), 5);
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 1);
}

#[test]
fn writable_socketpair_immediately() {
    let mut p = poller();
    let (a, _b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(7), Interest::BOTH, Mode::Level)
        .unwrap();
    let evs = wait_one_poll(&mut p);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert!(evs[0].writable && !evs[0].readable && !evs[0].write_closed);
    // Full: no longer writable.
    fill(&a);
    p.declare_interest(a.as_raw_fd(), Token(7), Interest::WRITABLE, Mode::Level)
        .unwrap();
    assert!(wait_one_poll(&mut p).is_empty());
}

#[test]
fn interest_change_is_rewritten_in_place_without_syscalls() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    fd::write(&b, b"x").unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait_one_poll(&mut p);
    assert!(evs[0].readable && !evs[0].writable);
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    let evs = wait_one_poll(&mut p);
    assert!(!evs[0].readable && evs[0].writable);
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    let evs = wait_one_poll(&mut p);
    assert!(evs[0].readable && evs[0].writable);
    assert_eq!(p.backend().entries(), 1);
}

#[test]
fn edge_with_a_direction_left_armed_keeps_its_entry() {
    // A pipe's read end is never writable, so the writable direction stays
    // armed and the driver rewrites the entry in place: the array keeps
    // exactly one entry through reports and re-arms.
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::BOTH, Mode::Edge)
        .unwrap();
    assert!(wait_one_poll(&mut p).is_empty());
    for round in 0..20 {
        fd::write(&w, b"abc").unwrap();
        let evs = wait_one_poll(&mut p);
        assert_eq!(evs.len(), 1, "round {round}: {evs:?}");
        assert!(evs[0].readable && !evs[0].writable);
        assert_eq!(p.backend().entries(), 1);
        // Reported once: still readable, but silent.
        assert!(wait_one_poll(&mut p).is_empty());
        assert!(wait_one_poll(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 1);
        drain(&r);
        p.would_block(Token(1), Interest::READABLE).unwrap();
        assert!(wait_one_poll(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 1);
    }
}

#[test]
fn edge_reported_once_then_again_after_would_block() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"abc").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    for round in 0..20 {
        let evs = wait_one_poll(&mut p);
        assert_eq!(tokens(&evs), [Token(1)], "round {round}");
        assert!(evs[0].readable);
        assert!(p.backend().entries() <= 1);
        // Fully disarmed: the driver stops watching; still no syscall but
        // the one poll.
        assert!(wait_one_poll(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 0);
        // Not drained yet: a would_block re-arms, and level readiness that
        // is still there is reported again.
        p.would_block(Token(1), Interest::READABLE).unwrap();
        let evs = wait_one_poll(&mut p);
        assert_eq!(tokens(&evs), [Token(1)]);
        assert_eq!(p.backend().entries(), 1);
        // Drain, re-arm, nothing to report until the next write.
        drain(&r);
        p.would_block(Token(1), Interest::READABLE).unwrap();
        assert!(wait_one_poll(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 1);
        assert!(wait_one_poll(&mut p).is_empty());
        fd::write(&w, b"abc").unwrap();
    }
    // Never grew: one registration, at most one entry.
    assert_eq!(p.backend().entries(), 1);
    assert_eq!(p.backend().disabled_entries(), 0);
}

#[test]
fn oneshot_reports_once_until_declared_again() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    for _ in 0..5 {
        p.declare_interest(r.as_raw_fd(), Token(3), Interest::READABLE, Mode::Oneshot)
            .unwrap();
        let evs = wait_one_poll(&mut p);
        assert_eq!(tokens(&evs), [Token(3)]);
        assert!(evs[0].readable);
        assert!(wait_one_poll(&mut p).is_empty());
        assert!(wait_one_poll(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 0);
    }
    drop(r);
}

#[test]
fn hang_up_when_the_write_end_closes() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    drop(w);
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].readable && evs[0].read_closed && !evs[0].writable && !evs[0].error);
    // Level: the hang-up stays.
    assert_eq!(wait(&mut p).len(), 1);
}

#[test]
fn hang_up_reaches_a_writable_only_registration() {
    // POLLHUP is reported whatever was asked for.
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    fill(&a);
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    drop(b);
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert!(evs[0].writable && evs[0].write_closed && !evs[0].readable);
}

#[test]
fn peer_shutdown_is_read_closed() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::shutdown(&b, Shutdown::Write).unwrap();
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].readable && evs[0].read_closed && !evs[0].error && !evs[0].writable);
}

#[test]
fn regular_file_is_readable_and_writable() {
    let mut p = poller();
    let file = fd::open_tmp_regular_file().unwrap();
    p.declare_interest(file.as_raw_fd(), Token(5), Interest::BOTH, Mode::Level)
        .unwrap();
    for _ in 0..3 {
        let evs = wait_one_poll(&mut p);
        assert_eq!(evs.len(), 1);
        let ev = evs[0];
        assert!(ev.readable && ev.writable && !ev.read_closed && !ev.write_closed && !ev.error);
    }
    // Edge on a regular file: once per arming.
    p.declare_interest(file.as_raw_fd(), Token(5), Interest::READABLE, Mode::Edge)
        .unwrap();
    let evs = wait_one_poll(&mut p);
    assert!(evs.len() == 1 && evs[0].readable && !evs[0].writable);
    assert!(wait_one_poll(&mut p).is_empty());
}

#[test]
fn removal_moves_the_last_entry_and_keeps_its_identity() {
    let mut p = poller();
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..5).map(|_| fd::pipe().unwrap()).collect();
    for (i, (r, _)) in pipes.iter().enumerate() {
        p.declare_interest(r.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 5);
    // Forgetting the second moves the last into its place.
    p.forget(Token(1)).unwrap();
    for (_, w) in &pipes {
        fd::write(w, b"x").unwrap();
    }
    let evs = wait_one_poll(&mut p);
    assert_eq!(tokens(&evs), [Token(0), Token(2), Token(3), Token(4)]);
    assert_eq!(p.backend().entries(), 4);
    // The moved entry can be changed and removed by its number.
    p.declare_interest(
        pipes[4].0.as_raw_fd(),
        Token(4),
        Interest::WRITABLE,
        Mode::Level,
    )
    .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(0), Token(2), Token(3)]);
    p.forget(Token(4)).unwrap();
    p.forget(Token(0)).unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2), Token(3)]);
    assert_eq!(p.backend().entries(), 2);
    // And declared again.
    p.declare_interest(
        pipes[1].0.as_raw_fd(),
        Token(1),
        Interest::READABLE,
        Mode::Level,
    )
    .unwrap();
    p.declare_interest(
        pipes[4].0.as_raw_fd(),
        Token(4),
        Interest::READABLE,
        Mode::Level,
    )
    .unwrap();
    assert_eq!(
        tokens(&wait(&mut p)),
        [Token(1), Token(2), Token(3), Token(4)]
    );
    assert_eq!(p.backend().entries(), 4);
}

#[test]
fn max_events_round_robin_reports_everyone() {
    const N: usize = 8;
    const CAP: usize = 3;
    let mut p = poller();
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..N).map(|_| fd::socketpair_stream().unwrap()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::WRITABLE, Mode::Level)
            .unwrap();
    }
    let all: BTreeSet<Token> = (0..N).map(Token).collect();
    // Every ready registration within ceil(N / CAP) calls.
    let mut seen = BTreeSet::new();
    for _ in 0..N.div_ceil(CAP) {
        let evs = wait_cap(&mut p, CAP);
        assert_eq!(evs.len(), CAP);
        seen.extend(tokens(&evs));
    }
    assert_eq!(seen, all);
    // And fairly over many calls.
    let mut count: BTreeMap<Token, usize> = BTreeMap::new();
    for _ in 0..N * 4 {
        let before = counter::snapshot();
        let evs = wait_cap(&mut p, CAP);
        assert_only_one_poll(counter::snapshot() - before);
        assert_eq!(evs.len(), CAP);
        for t in tokens(&evs) {
            *count.entry(t).or_default() += 1;
        }
    }
    assert_eq!(count.keys().copied().collect::<BTreeSet<_>>(), all);
    let min = count.values().min().unwrap();
    let max = count.values().max().unwrap();
    assert!(max - min <= 1, "{count:?}");
}

#[test]
fn max_events_with_oneshot_loses_nothing() {
    // Oneshot registrations that do not fit are not disarmed: they come
    // with the next calls.
    const N: usize = 7;
    let mut p = poller();
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..N).map(|_| fd::socketpair_stream().unwrap()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::WRITABLE, Mode::Oneshot)
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..N {
        seen.extend(tokens(&wait_cap(&mut p, 2)));
    }
    seen.sort();
    assert_eq!(seen, (0..N).map(Token).collect::<Vec<_>>());
    assert_eq!(p.backend().entries(), 0);
}
