//! The waker: cross-thread wake-ups and coalescing.

mod common;

use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use common::{poller, tokens, wait, wait_counted};
use evmux_interest::{Events, Interest, Mode, Token};
use evmux_sys::counter::SyscallKind;
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
            // Before or during the wait: either way the wait returns.
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
fn many_wakes_give_one_event_and_cost_no_poll_check() {
    let mut p = poller();
    let waker = p.waker(WAKER).unwrap();
    // The eventfd is in the read bitmap from creation on.
    assert!(p.backend().nfds() > 0);
    for round in 0..3 {
        let w = waker.clone();
        thread::spawn(move || {
            for _ in 0..100 {
                w.wake().unwrap();
            }
        })
        .join()
        .unwrap();
        let (evs, d) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [WAKER], "round {round}");
        // One select and one drain; the waker needs no readiness check.
        assert_eq!(d.get(SyscallKind::Select), 1, "{d:?}");
        assert_eq!(d.get(SyscallKind::EventfdRead), 1, "{d:?}");
        assert_eq!(d.total(), 2, "{d:?}");
        let (evs, d) = wait_counted(&mut p);
        assert!(evs.is_empty());
        assert_eq!(d.total(), 1, "{d:?}");
    }
}

#[test]
fn waker_and_readiness_in_one_wait_with_little_room() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let waker = p.waker(WAKER).unwrap();
    fd::write(&w, b"x").unwrap();
    waker.wake().unwrap();
    let (evs, d) = wait_counted(&mut p);
    assert_eq!(tokens(&evs), [Token(1), WAKER]);
    assert_eq!(
        (
            d.get(SyscallKind::Select),
            d.get(SyscallKind::Poll),
            d.get(SyscallKind::EventfdRead)
        ),
        (1, 1, 1),
        "{d:?}"
    );
    // Capacity 1: the wake is reported once, the pipe by a later call.
    waker.wake().unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.extend(tokens(&common::wait_cap(&mut p, 1)));
    }
    seen.sort();
    assert_eq!(seen, [Token(1), WAKER]);
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    // The same handle for a new token.
    let again = p.waker(Token(2000)).unwrap();
    again.wake().unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1), Token(2000)]);
}
