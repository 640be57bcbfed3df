//! The basic event stream through the driver on real descriptors, under
//! every policy: everything hot, idle descriptors cold at once, constant
//! churn, and the defaults. Whatever half a descriptor is in, the stream is
//! the same.

mod common;

use std::collections::BTreeSet;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{
    cold_eager, configs, drain, fill, hot_only, poller, tokens, wait, wait_cap, wait_counted,
};
use evmux_interest::{Backend, Capabilities, Events, Interest, Mode, Token};
use evmux_superpoll::{SuperpollBackend, SuperpollConfig, SuperpollStats};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;

const EBADF: i32 = 9;

#[test]
fn name_capabilities_clock_and_stats() {
    let before = counter::snapshot();
    let b = SuperpollBackend::new().unwrap();
    let delta = counter::snapshot() - before;
    // One epoll instance; the waker's eventfd only when asked for.
    assert_eq!(delta.get(SyscallKind::EpollCreate), 1, "{delta:?}");
    assert_eq!(delta.total(), 1, "{delta:?}");
    assert_eq!(b.name(), "superpoll");
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
    assert_eq!(b.stats(), SuperpollStats::default());
    assert_eq!(b.config(), &SuperpollConfig::default());
}

#[test]
fn level_readable_pipe_until_drained() {
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        // Idle for a while: under `cold_eager` it moves to the epoll set.
        for _ in 0..5 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        fd::write(&w, b"hello").unwrap();
        for _ in 0..5 {
            let evs = wait(&mut p);
            assert_eq!(evs.len(), 1, "{name}: {evs:?}");
            let ev = evs[0];
            assert_eq!(ev.token, Token(1));
            assert!(
                ev.readable && !ev.writable && !ev.read_closed && !ev.error,
                "{name}"
            );
        }
        assert_eq!(drain(&r), 5);
        assert!(wait(&mut p).is_empty(), "{name}");
        let s = p.backend().stats();
        assert_eq!(s.hot + s.cold, 1, "{name}: {s:?}");
        if name == "cold_eager" {
            assert!(s.demotions >= 1, "{s:?}");
        }
    }
}

#[test]
fn writable_socketpair_until_full() {
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (a, b) = fd::socketpair_stream().unwrap();
        p.declare_interest(a.as_raw_fd(), Token(7), Interest::BOTH, Mode::Level)
            .unwrap();
        for _ in 0..3 {
            let evs = wait(&mut p);
            assert_eq!(evs.len(), 1, "{name}: {evs:?}");
            assert!(evs[0].writable && !evs[0].readable && !evs[0].write_closed);
        }
        fill(&a);
        for _ in 0..4 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        // Space again: writable from whichever half it is in now.
        drain(&b);
        let evs = wait(&mut p);
        assert!(evs.len() == 1 && evs[0].writable, "{name}: {evs:?}");
    }
}

#[test]
fn interest_changes_in_both_halves() {
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (a, b) = fd::socketpair_stream().unwrap();
        fd::write(&b, b"x").unwrap();
        p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        for round in 0..6 {
            p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
                .unwrap();
            let evs = wait(&mut p);
            assert!(evs[0].readable && !evs[0].writable, "{name} {round}");
            p.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
                .unwrap();
            let evs = wait(&mut p);
            assert!(!evs[0].readable && evs[0].writable, "{name} {round}");
            p.declare_interest(a.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
                .unwrap();
            let evs = wait(&mut p);
            assert!(evs[0].readable && evs[0].writable, "{name} {round}");
        }
        // Readable only, drained, filled: nothing, in whichever half.
        drain(&a);
        fill(&a);
        p.declare_interest(a.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
            .unwrap();
        for _ in 0..4 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        let s = p.backend().stats();
        assert_eq!(s.hot + s.cold, 1, "{name}: {s:?}");
    }
}

#[test]
fn edge_reported_once_then_again_after_would_block() {
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
            .unwrap();
        for round in 0..10 {
            // Idle waits let the policy move it.
            for _ in 0..3 {
                assert!(wait(&mut p).is_empty(), "{name} {round}");
            }
            fd::write(&w, b"abc").unwrap();
            let evs = wait(&mut p);
            assert_eq!(tokens(&evs), [Token(1)], "{name} {round}");
            assert!(evs[0].readable);
            // Reported once: still readable, but silent.
            for _ in 0..3 {
                assert!(wait(&mut p).is_empty(), "{name} {round}");
            }
            // A would_block while data is still there: reported again.
            p.would_block(Token(1), Interest::READABLE).unwrap();
            assert_eq!(tokens(&wait(&mut p)), [Token(1)], "{name} {round}");
            drain(&r);
            p.would_block(Token(1), Interest::READABLE).unwrap();
        }
        // Between waits the registration is parked or in one half, never
        // in both.
        let s = p.backend().stats();
        assert!(s.hot + s.cold <= 1, "{name}: {s:?}");
    }
}

#[test]
fn edge_with_a_direction_left_armed() {
    // A pipe's read end is never writable: the writable direction stays
    // armed and the watch is narrowed, not dropped.
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::BOTH, Mode::Edge)
            .unwrap();
        for round in 0..10 {
            for _ in 0..2 {
                assert!(wait(&mut p).is_empty(), "{name} {round}");
            }
            fd::write(&w, b"abc").unwrap();
            let evs = wait(&mut p);
            assert_eq!(evs.len(), 1, "{name} {round}: {evs:?}");
            assert!(evs[0].readable && !evs[0].writable);
            assert!(wait(&mut p).is_empty(), "{name} {round}");
            drain(&r);
            p.would_block(Token(1), Interest::READABLE).unwrap();
            assert!(wait(&mut p).is_empty(), "{name} {round}");
            let s = p.backend().stats();
            assert_eq!(s.hot + s.cold, 1, "{name}: {s:?}");
        }
    }
}

#[test]
fn oneshot_reports_once_until_declared_again() {
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(3), Interest::READABLE, Mode::Oneshot)
            .unwrap();
        for _ in 0..3 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        fd::write(&w, b"x").unwrap();
        for round in 0..5 {
            let evs = wait(&mut p);
            assert_eq!(tokens(&evs), [Token(3)], "{name} {round}");
            assert!(evs[0].readable);
            for _ in 0..3 {
                assert!(wait(&mut p).is_empty(), "{name} {round}");
            }
            let s = p.backend().stats();
            assert_eq!(s.hot + s.cold, 0, "{name}: {s:?}");
            assert_eq!(p.backend().parked(), 1, "{name}");
            p.declare_interest(r.as_raw_fd(), Token(3), Interest::READABLE, Mode::Oneshot)
                .unwrap();
        }
    }
}

#[test]
fn pipe_hang_up() {
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        for _ in 0..3 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        drop(w);
        for _ in 0..3 {
            let evs = wait(&mut p);
            assert_eq!(evs.len(), 1, "{name}");
            assert!(
                evs[0].readable && evs[0].read_closed && !evs[0].writable && !evs[0].error,
                "{name}: {evs:?}"
            );
        }
    }
}

#[test]
fn socket_peer_shutdown_and_close() {
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (a, b) = fd::socketpair_stream().unwrap();
        let (c, d) = fd::socketpair_stream().unwrap();
        fill(&c);
        p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        p.declare_interest(c.as_raw_fd(), Token(2), Interest::WRITABLE, Mode::Level)
            .unwrap();
        for _ in 0..3 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        fd::shutdown(&b, Shutdown::Write).unwrap();
        let evs = wait(&mut p);
        assert_eq!(tokens(&evs), [Token(1)], "{name}");
        assert!(evs[0].readable && evs[0].read_closed && !evs[0].error && !evs[0].writable);
        // Closing the peer: a hang-up reaches a writable-only registration.
        drop(d);
        let evs = wait(&mut p);
        assert_eq!(tokens(&evs), [Token(1), Token(2)], "{name}");
        assert!(evs[1].writable && evs[1].write_closed && !evs[1].readable);
        drop(b);
        let evs = wait(&mut p);
        assert_eq!(tokens(&evs), [Token(1), Token(2)], "{name}");
        assert!(evs[0].readable && evs[0].read_closed);
    }
}

#[test]
fn regular_file_is_readable_and_writable_and_stays_hot() {
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let file = fd::open_tmp_regular_file().unwrap();
        p.declare_interest(file.as_raw_fd(), Token(5), Interest::BOTH, Mode::Level)
            .unwrap();
        for _ in 0..5 {
            let evs = wait(&mut p);
            assert_eq!(evs.len(), 1, "{name}");
            let ev = evs[0];
            assert!(ev.readable && ev.writable && !ev.read_closed && !ev.write_closed && !ev.error);
        }
        // Edge on a regular file: once per arming.
        p.declare_interest(file.as_raw_fd(), Token(5), Interest::READABLE, Mode::Edge)
            .unwrap();
        let evs = wait(&mut p);
        assert!(
            evs.len() == 1 && evs[0].readable && !evs[0].writable,
            "{name}"
        );
        for _ in 0..3 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        p.would_block(Token(5), Interest::READABLE).unwrap();
        assert_eq!(tokens(&wait(&mut p)), [Token(5)], "{name}");
        let s = p.backend().stats();
        assert_eq!((s.cold, s.demotions), (0, 0), "{name}: {s:?}");
    }
}

#[test]
fn a_descriptor_epoll_refuses_is_pinned_in_the_array() {
    // An idle pipe is about to be demoted when a regular file takes its
    // number (closing a registered descriptor is outside the contract; this
    // only exercises the backend's EPERM path): the demotion's
    // EPOLL_CTL_ADD is refused and the entry stays in the array for good.
    let mut p = poller(cold_eager());
    let (r, _w) = fd::pipe().unwrap();
    let n = r.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    let file = fd::open_tmp_regular_file().unwrap();
    let file_at_n = fd::dup_onto(file.as_fd(), r).unwrap();
    assert_eq!(file_at_n.as_raw_fd(), n);
    for _ in 0..5 {
        assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    }
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold, s.demotions), (1, 0, 0), "{s:?}");
    p.forget(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().stats().hot, 0);
}

#[test]
fn a_closed_number_is_rejected_with_ebadf_and_the_batch_still_applies() {
    const CLOSED: i32 = 19_999;
    assert!(!fd::is_open_raw(CLOSED));
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
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
        let evs = wait(&mut p);
        assert_eq!(
            tokens(&evs),
            [Token(1), Token(2), Token(3)],
            "{name}: {evs:?}"
        );
        let err = evs[1];
        assert!(err.error && !err.readable && !err.writable);
        assert_eq!(err.errno, Some(EBADF));
        assert!(evs[0].readable && evs[2].readable && !evs[0].error && !evs[2].error);
        // The refused registration left nothing behind; it is silent.
        assert_eq!(p.backend().stats().hot + p.backend().stats().cold, 2);
        for _ in 0..3 {
            assert_eq!(tokens(&wait(&mut p)), [Token(1), Token(3)], "{name}");
        }
        // Declaring it again retries, and is refused again.
        p.declare_interest(CLOSED, Token(2), Interest::BOTH, Mode::Edge)
            .unwrap();
        let evs = wait(&mut p);
        assert_eq!(tokens(&evs), [Token(1), Token(2), Token(3)], "{name}");
        assert_eq!(evs[1].errno, Some(EBADF));
        p.forget(Token(2)).unwrap();
        assert_eq!(tokens(&wait(&mut p)), [Token(1), Token(3)], "{name}");
        drop((r, w, r2, w2));
    }
}

#[test]
fn a_rejection_makes_the_wait_non_blocking() {
    // Nothing else is ready: the wait returns the error event at once
    // instead of sleeping for the timeout.
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        p.declare_interest(19_999, Token(2), Interest::READABLE, Mode::Level)
            .unwrap();
        let mut evs = Events::with_capacity(8);
        let n = p
            .get_next_event(&mut evs, Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(n, 1, "{name}");
        assert_eq!(evs.as_slice()[0].errno, Some(EBADF));
    }
}

/// Registration 1 on a pipe with pending data; forget it and put another,
/// empty pipe's read end at the same number; declare it as 2.
fn reuse(cfg: SuperpollConfig, separate_waits: bool, name: &str) {
    let mut p = poller(cfg);
    let (r1, w1) = fd::pipe().unwrap();
    let n = r1.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    // Idle first (so the policy may move it), then ready.
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty(), "{name}");
    }
    fd::write(&w1, b"old").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)], "{name}");
    p.forget(Token(1)).unwrap();
    if separate_waits {
        assert!(wait(&mut p).is_empty(), "{name}");
        let s = p.backend().stats();
        assert_eq!(s.hot + s.cold, 0, "{name}");
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
    for _ in 0..3 {
        assert!(wait(&mut p).is_empty(), "{name}");
    }
    fd::write(&w2, b"new").unwrap();
    for _ in 0..3 {
        let evs = wait(&mut p);
        assert_eq!(tokens(&evs), [Token(2)], "{name}");
        assert!(evs[0].readable && !evs[0].read_closed);
    }
    drain(&r2_at_n);
    assert!(wait(&mut p).is_empty(), "{name}");
    drop(w2);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(2)], "{name}");
    assert!(evs[0].read_closed);
}

#[test]
fn reused_number_in_one_batch_reports_only_the_new_token() {
    for (name, cfg) in configs() {
        reuse(cfg, false, name);
    }
}

#[test]
fn reused_number_across_waits_reports_only_the_new_token() {
    for (name, cfg) in configs() {
        reuse(cfg, true, name);
    }
}

#[test]
fn a_wake_from_another_thread_ends_a_blocking_wait() {
    const WAKER: Token = Token(1000);
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let (r, _w) = fd::pipe().unwrap();
        let (r2, _w2) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        // Some idle waits first, so that a cold half may exist.
        for _ in 0..3 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        let waker = p.waker(WAKER).unwrap();
        p.declare_interest(r2.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
            .unwrap();
        for _ in 0..3 {
            let w = waker.clone();
            let t = thread::spawn(move || {
                // Whether the wake lands before or during the wait does not
                // matter: either way the wait below returns.
                thread::sleep(Duration::from_millis(10));
                w.wake().unwrap();
            });
            let mut evs = Events::with_capacity(8);
            let n = p.get_next_event(&mut evs, None).unwrap();
            t.join().unwrap();
            assert_eq!(n, 1, "{name}");
            let ev = evs.as_slice()[0];
            assert_eq!(ev.token, WAKER);
            assert!(ev.readable && !ev.writable && !ev.error);
        }
        // Collected: nothing left; many wakes coalesce into one event.
        assert!(wait(&mut p).is_empty(), "{name}");
        for _ in 0..50 {
            waker.wake().unwrap();
        }
        let (evs, delta) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [WAKER], "{name}");
        assert_eq!(delta.get(SyscallKind::EventfdRead), 1, "{delta:?}");
        assert!(wait(&mut p).is_empty(), "{name}");
        let s = p.backend().stats();
        assert_eq!(s.hot + s.cold, 2, "{name}: {s:?}");
    }
}

#[test]
fn wakes_racing_a_collecting_poller_are_never_lost() {
    const WAKER: Token = Token(1000);
    const WAKES: usize = 2000;
    let mut p = poller(cold_eager());
    let waker = p.waker(WAKER).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let t = {
        let done = done.clone();
        thread::spawn(move || {
            for _ in 0..WAKES {
                waker.wake().unwrap();
            }
            done.store(true, Ordering::SeqCst);
            waker.wake().unwrap();
        })
    };
    let mut evs = Events::with_capacity(8);
    loop {
        let n = p
            .get_next_event(&mut evs, Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(n, 1, "a wake-up was lost");
        assert_eq!(evs.as_slice()[0].token, WAKER);
        // Not done after this collection: the final wake is still to come,
        // and the next wait must see it.
        if done.load(Ordering::SeqCst) {
            break;
        }
    }
    t.join().unwrap();
}

#[test]
fn max_events_reports_everyone_from_both_halves() {
    const N: usize = 12;
    const CAP: usize = 5;
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let pairs: Vec<(OwnedFd, OwnedFd)> =
            (0..N).map(|_| fd::socketpair_stream().unwrap()).collect();
        for (i, (a, _)) in pairs.iter().enumerate() {
            p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
                .unwrap();
        }
        for _ in 0..3 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        // Half of them become busy (and stay hot under busy_stay_hot), the
        // other half become ready only now (in the epoll set under
        // busy_stay_hot and cold_eager).
        for (a, b) in &pairs[..N / 2] {
            fd::write(b, b"x").unwrap();
            let _ = a;
        }
        for _ in 0..3 {
            let _ = wait(&mut p);
        }
        for (_, b) in &pairs[N / 2..] {
            fd::write(b, b"x").unwrap();
        }
        let all: BTreeSet<Token> = (0..N).map(Token).collect();
        let mut seen = BTreeSet::new();
        let mut count = vec![0usize; N];
        for _ in 0..N * 4 {
            let evs = wait_cap(&mut p, CAP);
            assert_eq!(evs.len(), CAP, "{name}");
            for t in tokens(&evs) {
                seen.insert(t);
                count[t.0] += 1;
            }
        }
        assert_eq!(seen, all, "{name}");
        // Fair enough: nobody starves.
        let min = count.iter().min().unwrap();
        assert!(*min >= 4, "{name}: {count:?}");
    }
}

#[test]
fn max_events_with_oneshot_loses_nothing() {
    const N: usize = 9;
    for (name, cfg) in configs() {
        let mut p = poller(cfg);
        let pairs: Vec<(OwnedFd, OwnedFd)> =
            (0..N).map(|_| fd::socketpair_stream().unwrap()).collect();
        for (i, (a, _)) in pairs.iter().enumerate() {
            p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Oneshot)
                .unwrap();
        }
        for _ in 0..3 {
            assert!(wait(&mut p).is_empty(), "{name}");
        }
        for (_, b) in &pairs {
            fd::write(b, b"x").unwrap();
        }
        let mut seen = Vec::new();
        for _ in 0..N {
            seen.extend(tokens(&wait_cap(&mut p, 2)));
        }
        seen.sort();
        assert_eq!(seen, (0..N).map(Token).collect::<Vec<_>>(), "{name}");
    }
}

#[test]
fn a_hot_only_policy_never_touches_epoll() {
    let mut p = poller(hot_only());
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    for _ in 0..50 {
        assert!(wait(&mut p).is_empty());
    }
    fd::write(&b, b"x").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    let s = p.backend().stats();
    assert_eq!((s.hot, s.cold, s.demotions, s.promotions), (1, 0, 0, 0));
}
