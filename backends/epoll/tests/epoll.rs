//! epoll backend tests on real descriptors. The conformance suite in
//! `testkit` checks the full stream against the model; these check what is
//! specific to epoll: syscall counts, regular files, the waker, EEXIST.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use evmux_epoll::EpollBackend;
use evmux_interest::{Events, Interest, Mode, Poller, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;

fn poller() -> Poller<EpollBackend> {
    Poller::new(EpollBackend::new().unwrap())
}

fn wait(p: &mut Poller<EpollBackend>) -> Vec<evmux_interest::Event> {
    let mut evs = Events::with_capacity(256);
    p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
    let mut v = evs.as_slice().to_vec();
    v.sort();
    v
}

#[test]
fn read_write_read_flip_between_waits_costs_zero_epoll_ctl() {
    let (a, b) = fd::socketpair_stream().unwrap();
    let mut p = poller();
    let fd = a.as_raw_fd();
    p.declare_interest(fd, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    wait(&mut p);
    for mode in [Mode::Level, Mode::Edge, Mode::Oneshot] {
        p.declare_interest(fd, Token(1), Interest::READABLE, mode)
            .unwrap();
        wait(&mut p);
        let before = counter::get(SyscallKind::EpollCtl);
        for _ in 0..10 {
            p.declare_interest(fd, Token(1), Interest::WRITABLE, mode)
                .unwrap();
            p.declare_interest(fd, Token(1), Interest::READABLE, mode)
                .unwrap();
        }
        fd::write(&b, b"x").unwrap();
        let evs = wait(&mut p);
        // Level: readable reported; edge/oneshot: nothing was disarmed or
        // fired before the flips, so nothing needs a re-check either.
        assert_eq!(
            counter::get(SyscallKind::EpollCtl) - before,
            0,
            "mode {mode:?}"
        );
        assert_eq!(evs.len(), 1, "mode {mode:?}: {evs:?}");
        assert!(evs[0].readable);
        let mut buf = [0u8; 8];
        fd::read(&a, &mut buf).unwrap();
        // Back to a clean state for the next mode.
        p.forget(Token(1)).unwrap();
        wait(&mut p);
        p.declare_interest(fd, Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        wait(&mut p);
    }
}

#[test]
fn n_changes_to_n_fds_reach_the_kernel_before_the_wait_returns() {
    for n in [1usize, 10, 200] {
        let pairs: Vec<_> = (0..n).map(|_| fd::socketpair_stream().unwrap()).collect();
        let mut p = poller();
        for (i, (a, _)) in pairs.iter().enumerate() {
            p.declare_interest(a.as_raw_fd(), Token(i), Interest::WRITABLE, Mode::Level)
                .unwrap();
        }
        let ctl = counter::get(SyscallKind::EpollCtl);
        let waits = counter::get(SyscallKind::EpollWait);
        let evs = wait(&mut p);
        assert_eq!(counter::get(SyscallKind::EpollCtl) - ctl, n as u64);
        assert_eq!(counter::get(SyscallKind::EpollWait) - waits, 1);
        // Every change was in effect for that very wait.
        assert_eq!(evs.len(), n);
    }
}

#[test]
fn regular_files_are_ready_in_user_space() {
    let f = fd::open_tmp_regular_file().unwrap();
    let mut p = poller();
    p.declare_interest(f.as_raw_fd(), Token(3), Interest::BOTH, Mode::Level)
        .unwrap();
    for _ in 0..2 {
        let evs = wait(&mut p);
        assert_eq!(evs.len(), 1);
        assert!(evs[0].readable && evs[0].writable && !evs[0].error);
    }
    assert_eq!(p.backend().user_space_files(), 1);
    // A blocking wait does not block while a file is ready.
    let mut evs = Events::with_capacity(4);
    assert_eq!(p.get_next_event(&mut evs, None).unwrap(), 1);
    p.forget(Token(3)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().user_space_files(), 0);
}

#[test]
fn waker_wakes_a_blocking_wait_from_another_thread() {
    let mut p = poller();
    let w = p.waker(Token(77)).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..5 {
            w.wake().unwrap();
        }
    });
    let mut evs = Events::with_capacity(8);
    let n = p.get_next_event(&mut evs, None).unwrap();
    t.join().unwrap();
    assert_eq!(n, 1);
    assert_eq!(evs.as_slice()[0].token, Token(77));
    // Five wakes, at most two events (the thread may still be waking while
    // the first is collected), and then nothing.
    let _ = wait(&mut p);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn a_closed_descriptor_is_an_error_event_and_the_batch_still_applies() {
    let (r2, w2) = fd::pipe().unwrap();
    // A number far above what this process opens (the lowest free number
    // is always taken first), so no other test can own it meanwhile.
    let closed = 19_999;
    assert!(!fd::is_open_raw(closed));
    let mut p = poller();
    p.declare_interest(closed, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    fd::write(&w2, b"x").unwrap();
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(evs[0].token == Token(1) && evs[0].error && evs[0].errno == Some(9));
    assert!(!evs[0].readable && !evs[0].writable);
    assert!(evs[1].token == Token(2) && evs[1].readable);
    // Silent afterwards; forget works.
    assert!(wait(&mut p).iter().all(|e| e.token != Token(1)));
    p.forget(Token(1)).unwrap();
}

#[test]
fn forget_and_reuse_number_in_one_batch_never_shows_old_token() {
    let (a, b) = fd::socketpair_stream().unwrap();
    let mut p = poller();
    let num = a.as_raw_fd();
    p.declare_interest(num, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    fd::write(&b, b"x").unwrap();
    assert_eq!(wait(&mut p)[0].token, Token(1));
    p.forget(Token(1)).unwrap();
    // Replace the file behind the number while events for it are pending.
    let (r, w) = fd::pipe().unwrap();
    let a2 = fd::dup_onto(r.as_fd(), a).unwrap();
    assert_eq!(a2.as_raw_fd(), num);
    p.declare_interest(num, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    fd::write(&w, b"y").unwrap();
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].token, Token(2));
    drop((b, r));
}

/// The userver state machine of seed 001 with readiness kept in user space:
/// each request flips the interest read → write → read *across* waits, and
/// after registration no flip reaches the kernel.
#[test]
fn tracked_flips_across_waits_cost_zero_epoll_ctl() {
    let (a, b) = fd::socketpair_stream().unwrap();
    let mut p = poller();
    let fd = a.as_raw_fd();
    p.declare_interest(fd, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.track_readiness(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty(), "nothing to read yet");
    let before = counter::get(SyscallKind::EpollCtl);
    let mut buf = [0u8; 64];
    for round in 0..100 {
        // A request arrives: readable.
        fd::write(&b, b"GET").unwrap();
        let evs = wait(&mut p);
        assert_eq!(evs.len(), 1, "round {round}: {evs:?}");
        assert!(evs[0].readable && !evs[0].writable);
        assert_eq!(fd::read(&a, &mut buf).unwrap(), 3);
        assert_eq!(
            fd::read(&a, &mut buf).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        p.would_block(Token(1), Interest::READABLE).unwrap();
        // Reply: interest follows the state.
        p.declare_interest(fd, Token(1), Interest::WRITABLE, Mode::Level)
            .unwrap();
        let evs = wait(&mut p);
        assert_eq!(evs.len(), 1, "round {round}: {evs:?}");
        assert!(evs[0].writable && !evs[0].readable);
        fd::write(&a, b"200").unwrap();
        assert_eq!(fd::read(&b, &mut buf).unwrap(), 3);
        p.declare_interest(fd, Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        assert!(wait(&mut p).is_empty(), "round {round}: no request pending");
    }
    assert_eq!(counter::get(SyscallKind::EpollCtl) - before, 0);
}
