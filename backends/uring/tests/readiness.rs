//! Readiness through the driver: level, edge and oneshot (emulated by the
//! driver), hang-ups, regular files, interest changes, capacity, blocking
//! waits.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{drain, fill, poller, tokens, wait, wait_cap, wait_counted, wait_for, wait_one_enter};
use evmux_interest::{Backend, Interest, Mode, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;
use evmux_uring::UringBackend;

const GUARD: Option<Duration> = Some(Duration::from_secs(10));

#[test]
fn name_and_capabilities() {
    let b = UringBackend::new().unwrap();
    assert_eq!(b.name(), "uring");
    let caps = b.capabilities();
    assert!(!caps.native_edge && !caps.native_oneshot && !caps.cheap_changes);
    assert_eq!(caps.max_fd, None);
    assert!(evmux_uring::is_supported());
    assert!(b.sq_entries() >= 4096 && b.cq_entries() >= 2 * b.sq_entries());
}

#[test]
fn level_readable_is_reported_at_every_wait_until_drained() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"hello").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    for _ in 0..4 {
        let evs = wait_one_enter(&mut p);
        assert_eq!(tokens(&evs), [Token(1)]);
        assert!(evs[0].readable && !evs[0].writable && !evs[0].read_closed);
    }
    drain(&r);
    assert!(wait_one_enter(&mut p).is_empty());
    // The poll armed by that wait is still armed: new data is reported.
    assert_eq!(p.backend().armed_polls(), 1);
    fd::write(&w, b"again").unwrap();
    assert_eq!(tokens(&wait_one_enter(&mut p)), [Token(1)]);
    assert_eq!(tokens(&wait_one_enter(&mut p)), [Token(1)]);
    drain(&r);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn a_stale_wake_up_does_not_reach_the_stream() {
    // Data arrives and is read before the wait: the kernel posts a CQE
    // saying POLLIN (its mask was stashed at wake-up) on the way back from
    // the write, before the read. The wait takes it for a hint and re-arms
    // the registration in its own enter; the new poll finds the pipe empty
    // and stays armed. One syscall, nothing reported.
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let (evs, delta) = wait_counted(&mut p);
    assert!(evs.is_empty());
    assert_eq!(delta.total(), 1, "{delta:?}");
    fd::write(&w, b"x").unwrap();
    drain(&r);
    assert_eq!(p.backend_mut().unreaped_completions(), 1);
    let (evs, delta) = wait_counted(&mut p);
    assert!(evs.is_empty(), "{evs:?}");
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
    assert_eq!(delta.get(SyscallKind::Poll), 0, "{delta:?}");
    assert_eq!(delta.total(), 1, "{delta:?}");
    let stats = p.backend().quirk_stats();
    assert_eq!((stats.rechecked, stats.filtered), (1, 1), "{stats:?}");
    assert_eq!(p.backend().armed_polls(), 1);
    // And it is not reported later either.
    let (evs, delta) = wait_counted(&mut p);
    assert!(evs.is_empty());
    assert_eq!(delta.total(), 1, "{delta:?}");
    // A hint whose data is still there is reported by the same enter that
    // re-checks it.
    fd::write(&w, b"y").unwrap();
    let (evs, delta) = wait_counted(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    assert_eq!(delta.total(), 1, "{delta:?}");
    let stats = p.backend().quirk_stats();
    assert_eq!((stats.rechecked, stats.filtered), (2, 1), "{stats:?}");
}

#[test]
fn a_write_only_watch_on_a_half_closed_socket_does_not_spin() {
    // io_uring adds POLLRDHUP to every poll: on a socket whose peer shut its
    // write side, a write-only one-shot poll completes at once with
    // POLLRDHUP alone while the socket is not writable. The backend then
    // arms a multishot poll instead, which does not complete again until
    // the socket becomes writable.
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    fill(&a);
    fd::shutdown(&b, std::net::Shutdown::Write).unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    // The switch: the one-shot poll's completion, then the multishot
    // poll's arming completion, neither reportable.
    for _ in 0..2 {
        assert!(wait(&mut p).is_empty());
    }
    assert_eq!(p.backend().quirk_stats().multishot, 1);
    assert_eq!(p.backend().armed_polls(), 1);
    for _ in 0..3 {
        let (evs, delta) = wait_counted(&mut p);
        assert!(evs.is_empty(), "{evs:?}");
        assert_eq!(delta.total(), 1, "{delta:?}");
    }
    let before = counter::snapshot();
    assert!(wait_for(&mut p, Some(Duration::from_millis(5))).is_empty());
    let delta = counter::snapshot() - before;
    assert_eq!(delta.total(), 1, "a blocking wait blocks: {delta:?}");
    // Writable again: reported at every wait while writable (the
    // multishot poll is re-checked by a new one in each wait's enter).
    drain(&b);
    for _ in 0..3 {
        let (evs, delta) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [Token(1)]);
        assert!(evs[0].writable && !evs[0].readable && !evs[0].write_closed);
        assert_eq!(delta.total(), 1, "{delta:?}");
    }
    fill(&a);
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty());
    }
    assert_eq!(p.backend().armed_polls(), 1);
    // A change of watch goes back to one-shot polls.
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    for _ in 0..2 {
        let (evs, delta) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [Token(1)]);
        assert!(evs[0].readable && evs[0].read_closed && !evs[0].writable);
        assert_eq!(delta.total(), 1, "{delta:?}");
    }
    assert_eq!(p.backend().quirk_stats().multishot, 1);
}

#[test]
fn level_writable_follows_buffer_space() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(w.as_raw_fd(), Token(2), Interest::WRITABLE, Mode::Level)
        .unwrap();
    for _ in 0..3 {
        let evs = wait_one_enter(&mut p);
        assert_eq!(tokens(&evs), [Token(2)]);
        assert!(evs[0].writable && !evs[0].readable && !evs[0].write_closed);
    }
    fill(&w);
    assert!(wait(&mut p).is_empty());
    drain(&r);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(2)]);
    assert!(evs[0].writable);
}

#[test]
fn edge_is_reported_once_until_would_block() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"a").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    // Disarmed: still readable, not reported; more data is not reported
    // either until the program saw WouldBlock.
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"b").unwrap();
    assert!(wait(&mut p).is_empty());
    drain(&r);
    p.would_block(Token(1), Interest::READABLE).unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"c").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    assert!(wait(&mut p).is_empty());
    // Declaring again re-arms: still-ready data is reported.
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn edge_directions_are_disarmed_separately() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::BOTH, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    assert!(evs[0].writable && !evs[0].readable);
    assert!(wait(&mut p).is_empty());
    fd::write(&b, b"x").unwrap();
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    assert!(evs[0].readable && !evs[0].writable);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn oneshot_fires_once_until_declared_again() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Oneshot)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty());
    }
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Oneshot)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    assert!(wait(&mut p).is_empty());
    drain(&r);
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Oneshot)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"y").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn pipe_hang_up_reaches_both_ends() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"last").unwrap();
    drop(w);
    for _ in 0..2 {
        let evs = wait(&mut p);
        assert_eq!(tokens(&evs), [Token(1)]);
        assert!(evs[0].readable && evs[0].read_closed && !evs[0].error);
    }
    drain(&r);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    assert!(evs[0].readable && evs[0].read_closed);

    // The write end of a pipe whose reader is gone: an error (EPIPE).
    let (r2, w2) = fd::pipe().unwrap();
    p.declare_interest(w2.as_raw_fd(), Token(2), Interest::WRITABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1), Token(2)]);
    fill(&w2);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    drop(r2);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2)]);
    assert!(evs[1].writable && evs[1].write_closed && evs[1].error);
}

#[test]
fn socket_peer_shutdown_and_close() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::shutdown(&b, std::net::Shutdown::Write).unwrap();
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    assert!(evs[0].readable && evs[0].read_closed && !evs[0].writable);
    // Writable interest now: the peer still reads, so writes succeed.
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs[0].readable && evs[0].read_closed && evs[0].writable && !evs[0].write_closed);
    drop(b);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    assert!(evs[0].readable && evs[0].read_closed && evs[0].writable && evs[0].write_closed);
}

#[test]
fn a_regular_file_is_always_ready() {
    let mut p = poller();
    let f = fd::open_tmp_regular_file().unwrap();
    assert!(fd::is_regular_file(&f).unwrap());
    p.declare_interest(f.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    for _ in 0..4 {
        let evs = wait_one_enter(&mut p);
        assert_eq!(tokens(&evs), [Token(1)]);
        assert!(evs[0].readable && evs[0].writable && !evs[0].error);
        assert!(!evs[0].read_closed && !evs[0].write_closed);
    }
    // Its one-shot poll completes at once (no wait queue), and each wait
    // arms a new one in its own enter: one SQE per wait, no syscall more.
    assert_eq!(p.backend().armed_polls(), 0);
    let stats = p.backend().quirk_stats();
    assert_eq!((stats.ended, stats.rearmed), (0, 3), "{stats:?}");
    let (evs, delta) = wait_counted(&mut p);
    assert_eq!(tokens(&evs), [Token(1)]);
    assert_eq!(delta.total(), 1, "{delta:?}");
    // Edge: once; oneshot: once per declaration.
    p.declare_interest(f.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].readable && !evs[0].writable);
    assert!(wait(&mut p).is_empty());
    p.declare_interest(f.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Oneshot)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].writable && !evs[0].readable);
    assert!(wait(&mut p).is_empty());
    // A blocking wait does not block on it.
    p.declare_interest(f.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait_for(&mut p, None)), [Token(1)]);
    p.forget(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty());
}

#[test]
fn interest_changes_reach_the_kernel() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    let evs = wait_one_enter(&mut p);
    assert!(evs.len() == 1 && evs[0].writable && !evs[0].readable);
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait_one_enter(&mut p).is_empty());
    // The replaced polls' -ECANCELED reached nobody; one poll is armed.
    assert_eq!(p.backend().armed_polls(), 1);
    fd::write(&b, b"x").unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].readable && !evs[0].writable);
    // read → write → read between two waits: no change reaches the kernel.
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait_one_enter(&mut p);
    assert!(evs.len() == 1 && evs[0].readable);
    // Reported: its one-shot poll completed; the next wait arms a new one.
    assert_eq!(p.backend().armed_polls(), 0);
    drain(&a);
    assert!(wait_one_enter(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 1);
}

#[test]
fn readiness_beyond_capacity_is_returned_later_without_starvation() {
    let mut p = poller();
    let mut ends = Vec::new();
    for t in 0..5 {
        let (r, w) = fd::pipe().unwrap();
        fd::write(&w, b"x").unwrap();
        p.declare_interest(r.as_raw_fd(), Token(t), Interest::READABLE, Mode::Level)
            .unwrap();
        ends.push((r, w));
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let evs = wait_cap(&mut p, 2);
        assert_eq!(evs.len(), 2);
        seen.extend(tokens(&evs));
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    // Oneshot reports that do not fit are not lost either.
    let mut p = poller();
    for (t, (r, _)) in ends.iter().enumerate() {
        p.declare_interest(r.as_raw_fd(), Token(t), Interest::READABLE, Mode::Oneshot)
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.extend(tokens(&wait_cap(&mut p, 2)));
    }
    seen.sort();
    assert_eq!(seen, (0..5).map(Token).collect::<Vec<_>>());
}

#[test]
fn a_blocking_wait_returns_when_data_arrives() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        fd::write(&w, b"x").unwrap();
        w
    });
    let before = counter::get(SyscallKind::IoUringEnter);
    let evs = wait_for(&mut p, GUARD);
    assert_eq!(tokens(&evs), [Token(1)]);
    // The add and the wait were one syscall; the write's CQE ended it.
    assert_eq!(counter::get(SyscallKind::IoUringEnter) - before, 1);
    let _w = writer.join().unwrap();
}

#[test]
fn a_blocking_wait_that_removes_polls_is_one_enter() {
    // The -ECANCELED completions of the removed polls do not end the wait:
    // the enter asks for one completion more per cancel.
    let mut p = poller();
    let (r1, _w1) = fd::pipe().unwrap();
    let (a, _b) = fd::socketpair_stream().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    p.declare_interest(r1.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(a.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    p.forget(Token(1)).unwrap();
    // A modification is a cancel and an add.
    p.declare_interest(a.as_raw_fd(), Token(2), Interest::READABLE, Mode::Edge)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        fd::write(&w2, b"x").unwrap();
        w2
    });
    let before = counter::snapshot();
    let evs = wait_for(&mut p, GUARD);
    let delta = counter::snapshot() - before;
    assert_eq!(tokens(&evs), [Token(3)]);
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
    let _w2 = writer.join().unwrap();
    // Token 2's poll; token 3's completed with its report.
    assert_eq!(p.backend().armed_polls(), 1);
}

#[test]
fn a_timed_wait_with_nothing_ready_returns_nothing() {
    let mut p = poller();
    let (r, _w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let before = counter::get(SyscallKind::IoUringEnter);
    assert!(wait_for(&mut p, Some(Duration::from_millis(5))).is_empty());
    // The timeout travels with the submitting enter (EXT_ARG): no busy
    // loop, no separate timer SQE.
    assert_eq!(counter::get(SyscallKind::IoUringEnter) - before, 1);
}
