//! The waker: an eventfd watched by a multishot poll.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{poller, tokens, wait, wait_cap, wait_counted, wait_for};
use evmux_interest::{Interest, Mode, Token};
use evmux_sys::counter::SyscallKind;
use evmux_sys::fd;

#[test]
fn many_wakes_from_another_thread_give_one_event() {
    let mut p = poller();
    let waker = p.waker(Token(100)).unwrap();
    // Arms the waker's poll.
    assert!(wait(&mut p).is_empty());
    let w = waker.clone();
    std::thread::spawn(move || {
        for _ in 0..1000 {
            w.wake().unwrap();
        }
    })
    .join()
    .unwrap();
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(100)]);
    assert!(evs[0].readable && !evs[0].writable && !evs[0].error);
    // Drained: no more events, and no spinning (a blocking wait is one
    // enter, and no read of the eventfd).
    for _ in 0..3 {
        let (evs, delta) = wait_counted(&mut p);
        assert!(evs.is_empty());
        assert_eq!(delta.get(SyscallKind::EventfdRead), 0, "{delta:?}");
    }
    let before = evmux_sys::counter::snapshot();
    assert!(wait_for(&mut p, Some(Duration::from_millis(2))).is_empty());
    let delta = evmux_sys::counter::snapshot() - before;
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
    // Wakes again later: reported again, once.
    waker.wake().unwrap();
    waker.wake().unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(100)]);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn a_wake_before_the_first_wait_is_reported() {
    let mut p = poller();
    let waker = p.waker(Token(7)).unwrap();
    waker.wake().unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(7)]);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn a_blocked_wait_is_woken_from_another_thread() {
    let mut p = poller();
    let waker = p.waker(Token(1)).unwrap();
    let (r, _w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    let t = std::thread::spawn(move || {
        b.wait();
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..10 {
            waker.wake().unwrap();
        }
    });
    barrier.wait();
    let evs = wait_for(&mut p, None);
    t.join().unwrap();
    assert_eq!(tokens(&evs), [Token(1)]);
    // Wakes that raced with the collection may give one more event (they
    // came after the eventfd was drained); after that, silence.
    let evs = wait_for(&mut p, Some(Duration::from_millis(1)));
    assert!(evs.is_empty() || tokens(&evs) == [Token(1)], "{evs:?}");
    let evs = wait_for(&mut p, Some(Duration::from_millis(1)));
    assert!(evs.is_empty(), "{evs:?}");
}

#[test]
fn a_wake_that_does_not_fit_is_reported_by_the_next_wait() {
    let mut p = poller();
    let waker = p.waker(Token(9)).unwrap();
    let f = fd::open_tmp_regular_file().unwrap();
    p.declare_interest(f.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    waker.wake().unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let evs = wait_cap(&mut p, 1);
        assert_eq!(evs.len(), 1);
        seen.extend(tokens(&evs));
    }
    seen.sort();
    assert_eq!(seen, [Token(1), Token(9)]);
    // The regular file stays ready; the wake was reported once.
    for _ in 0..3 {
        assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    }
}
