//! The waker: cross-thread wake-ups, coalescing, and no lost wake-ups.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::{poller, tokens, wait, wait_cap};
use evmux_interest::{Events, Interest, Mode, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;

const WAKER: Token = Token(1000);

#[test]
fn a_wake_from_another_thread_ends_a_blocking_wait() {
    let mut p = poller();
    let (r, _w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let waker = p.waker(WAKER).unwrap();
    for _ in 0..3 {
        let w = waker.clone();
        let t = thread::spawn(move || {
            // Whether the wake lands before or during the wait does not
            // matter: either way the wait below returns.
            thread::sleep(Duration::from_millis(20));
            w.wake().unwrap();
        });
        let mut evs = Events::with_capacity(8);
        let n = p.get_next_event(&mut evs, None).unwrap();
        t.join().unwrap();
        assert_eq!(n, 1);
        let ev = evs.as_slice()[0];
        assert_eq!(ev.token, WAKER);
        assert!(ev.readable && !ev.writable && !ev.error);
    }
    // Collected: nothing left.
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 1);
}

#[test]
fn many_wakes_coalesce_into_one_event_and_one_write() {
    let mut p = poller();
    let waker = p.waker(WAKER).unwrap();
    for round in 0..3 {
        let w = waker.clone();
        let delta = thread::spawn(move || {
            let before = counter::snapshot();
            for _ in 0..100 {
                w.wake().unwrap();
            }
            counter::snapshot() - before
        })
        .join()
        .unwrap();
        assert_eq!(delta.get(SyscallKind::EventfdWrite), 1, "{delta:?}");
        assert_eq!(delta.total(), 1, "{delta:?}");
        let before = counter::snapshot();
        let evs = wait(&mut p);
        let d = counter::snapshot() - before;
        assert_eq!(tokens(&evs), [WAKER], "round {round}");
        // One poll, one drain.
        assert_eq!(d.get(SyscallKind::Poll), 1, "{d:?}");
        assert_eq!(d.get(SyscallKind::EventfdRead), 1, "{d:?}");
        assert_eq!(d.total(), 2, "{d:?}");
        assert!(wait(&mut p).is_empty());
    }
}

#[test]
fn waker_handles_are_the_same_mechanism() {
    let mut p = poller();
    let a = p.waker(WAKER).unwrap();
    let before = counter::snapshot();
    let b = p.waker(Token(2000)).unwrap();
    assert_eq!((counter::snapshot() - before).get(SyscallKind::Eventfd), 0);
    a.wake().unwrap();
    b.wake().unwrap();
    // Reported once, under the newest token.
    assert_eq!(tokens(&wait(&mut p)), [Token(2000)]);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn waker_created_after_registrations_keeps_them_intact() {
    let mut p = poller();
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| fd::pipe().unwrap()).collect();
    for (i, (r, w)) in pipes.iter().enumerate() {
        p.declare_interest(r.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
        fd::write(w, b"x").unwrap();
    }
    assert_eq!(tokens(&wait(&mut p)), [Token(0), Token(1), Token(2)]);
    let waker = p.waker(WAKER).unwrap();
    assert_eq!(p.backend().entries(), 3);
    waker.wake().unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(0), Token(1), Token(2), WAKER]);
    // The registration the waker displaced can still be removed and changed.
    p.forget(Token(0)).unwrap();
    p.declare_interest(
        pipes[1].0.as_raw_fd(),
        Token(1),
        Interest::WRITABLE,
        Mode::Level,
    )
    .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    assert_eq!(p.backend().entries(), 2);
    p.forget(Token(2)).unwrap();
    p.forget(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 0);
    waker.wake().unwrap();
    assert_eq!(tokens(&wait(&mut p)), [WAKER]);
}

#[test]
fn waker_and_readiness_share_max_events_and_nothing_is_lost() {
    let mut p = poller();
    let (a, _b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Oneshot)
        .unwrap();
    p.waker(WAKER).unwrap().wake().unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let evs = wait_cap(&mut p, 1);
        seen.extend(tokens(&evs));
    }
    seen.sort();
    assert_eq!(seen, [Token(1), WAKER]);
}

#[test]
fn no_wake_is_lost_under_contention() {
    // A thread hammers the waker while the poller collects; every wait
    // blocks until woken. A lost wake-up (a wake that no wait reports)
    // would leave the last wait without an event; the generous timeout only
    // keeps such a failure from hanging the test run.
    const WAKES: usize = 20_000;
    let mut p = poller();
    let waker = p.waker(WAKER).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let t = {
        let done = done.clone();
        thread::spawn(move || {
            for i in 1..=WAKES {
                done.store(i, Ordering::SeqCst);
                waker.wake().unwrap();
            }
        })
    };
    let mut evs = Events::with_capacity(8);
    let mut collections = 0;
    loop {
        let n = p
            .get_next_event(&mut evs, Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(n, 1, "a wake-up was lost after {collections} collections");
        assert_eq!(evs.as_slice()[0].token, WAKER);
        collections += 1;
        // Every wake that happened before this collection is covered by it.
        if done.load(Ordering::SeqCst) == WAKES {
            break;
        }
    }
    t.join().unwrap();
    assert!(collections >= 1);
}
