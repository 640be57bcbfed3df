//! An armed io_uring poll holds a reference to the *file*, not the number.
//! `forget` therefore cancels the registration's armed poll at once and
//! waits for the cancellation to complete (one `io_uring_enter`), so that
//! `forget` then `close` closes the file right away, as with epoll and
//! poll(2): the peer of a socket reads end of file, and a writer to a pipe
//! whose reader was forgotten and closed gets `EPIPE`, before any further
//! wait. A registration reported at the last wait (or whose poll fired
//! since) has no poll armed: its one-shot poll completed, and the forget
//! costs nothing.
//!
//! Closing *without* `forget` still leaves the file open until the
//! registration is forgotten (SEMANTICS.md leaves that case unspecified);
//! that is pinned down here too. See the crate docs, "Descriptors closed
//! while registered".
#![cfg(target_os = "linux")]

mod common;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use common::{drain, poller, tokens, wait};
use evmux_interest::{Interest, Mode, Poller, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fault::{self, FaultPlan};
use evmux_sys::fd;
use evmux_uring::UringBackend;

const MODES: [Mode; 3] = [Mode::Level, Mode::Edge, Mode::Oneshot];

fn read_one(fd: &OwnedFd) -> io::Result<usize> {
    let mut buf = [0u8; 16];
    fd::read(fd, &mut buf)
}

/// `forget(token)`, asserting that it cancelled an armed poll at once with
/// exactly one `io_uring_enter` (and no `poll(2)`: a reaped wake-up of the
/// waker costs the `read(2)` of its eventfd, as in any wait).
fn forget_armed(p: &mut Poller<UringBackend>, token: usize) {
    let stats = p.backend().quirk_stats();
    let before = counter::snapshot();
    p.forget(Token(token)).unwrap();
    let delta = counter::snapshot() - before;
    assert_eq!(delta.get(SyscallKind::IoUringEnter), 1, "{delta:?}");
    assert_eq!(delta.get(SyscallKind::Poll), 0, "{delta:?}");
    let after = p.backend().quirk_stats();
    assert_eq!(after.forgotten_now, stats.forgotten_now + 1, "{after:?}");
    assert_eq!(after.forget_deferred, stats.forget_deferred, "{after:?}");
}

/// `forget(token)` of a registration with no poll armed (reported at the
/// last wait, or fired since): no syscall at all.
fn forget_unarmed(p: &mut Poller<UringBackend>, token: usize) {
    let stats = p.backend().quirk_stats();
    let regs = p.backend().registrations();
    let before = counter::snapshot();
    p.forget(Token(token)).unwrap();
    let delta = counter::snapshot() - before;
    assert_eq!(delta.total(), 0, "{delta:?}");
    let after = p.backend().quirk_stats();
    assert_eq!(after.forgotten_now, stats.forgotten_now, "{after:?}");
    assert_eq!(after.forget_deferred, stats.forget_deferred, "{after:?}");
    assert_eq!(p.backend().registrations(), regs - 1);
}

fn eof_now(peer: &OwnedFd) {
    assert_eq!(read_one(peer).unwrap(), 0, "the peer sees end of file");
}

fn epipe_now(writer: &OwnedFd) {
    evmux_sys::signal::ignore_sigpipe().unwrap();
    let err = fd::write(writer, b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
}

#[test]
fn a_forgotten_and_closed_socket_is_closed_at_once() {
    for mode in MODES {
        for interest in [Interest::READABLE, Interest::WRITABLE, Interest::BOTH] {
            let mut p = poller();
            let (a, b) = fd::socketpair_stream().unwrap();
            p.declare_interest(a.as_raw_fd(), Token(1), interest, mode)
                .unwrap();
            // Armed, or (if writable) reported, and then its one-shot poll
            // has completed.
            let reported = !wait(&mut p).is_empty();
            assert_eq!(reported, interest.is_writable(), "{mode:?} {interest:?}");
            assert_eq!(
                p.backend().armed_polls(),
                u64::from(!reported),
                "{mode:?} {interest:?}"
            );
            if reported {
                forget_unarmed(&mut p, 1);
            } else {
                forget_armed(&mut p, 1);
            }
            assert_eq!(p.backend().armed_polls(), 0);
            assert_eq!(p.backend().registrations(), 0);
            drop(a);
            eof_now(&b);
            assert!(wait(&mut p).is_empty(), "{mode:?} {interest:?}");
        }
    }
}

#[test]
fn a_forgotten_and_closed_pipe_reader_gives_epipe_at_once() {
    for mode in MODES {
        let mut p = poller();
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, mode)
            .unwrap();
        assert!(wait(&mut p).is_empty());
        forget_armed(&mut p, 1);
        drop(r);
        epipe_now(&w);
        assert!(wait(&mut p).is_empty(), "{mode:?}");
    }
}

#[test]
fn a_forgotten_and_closed_pipe_writer_gives_eof_at_once() {
    for mode in MODES {
        let mut p = poller();
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(w.as_raw_fd(), Token(1), Interest::WRITABLE, mode)
            .unwrap();
        assert_eq!(tokens(&wait(&mut p)), [Token(1)], "{mode:?}");
        forget_unarmed(&mut p, 1);
        drop(w);
        eof_now(&r);
        assert!(wait(&mut p).is_empty(), "{mode:?}");
    }
}

#[test]
fn a_registration_forgotten_with_unreaped_readiness_drops_it() {
    // The forgotten registration's own readiness CQE sits in the completion
    // queue when it is forgotten: discarded, never an event. Its one-shot
    // poll has completed with it, so nothing is left to cancel: the forget
    // reaps the completion queue and makes no syscall.
    for mode in MODES {
        let mut p = poller();
        let (a, b) = fd::socketpair_stream().unwrap();
        p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, mode)
            .unwrap();
        assert!(wait(&mut p).is_empty());
        // The poll's wake-up runs as task work of this thread when the write
        // returns: a CQE is posted and nobody reaps it before the forget.
        // (Reading the byte back keeps the close an orderly one: unread
        // data would make it a reset.)
        fd::write(&b, b"x").unwrap();
        assert_eq!(drain(&a), 1);
        assert!(p.backend_mut().unreaped_completions() >= 1);
        assert_eq!(p.backend().armed_polls(), 1);
        forget_unarmed(&mut p, 1);
        assert_eq!(p.backend_mut().unreaped_completions(), 0);
        assert_eq!(p.backend().armed_polls(), 0);
        drop(a);
        eof_now(&b);
        for _ in 0..2 {
            assert!(wait(&mut p).is_empty(), "{mode:?}");
        }
    }
}

/// Tokens 2 and 3 (a socket and a pipe) and the waker (99) become ready
/// after the last wait, so their CQEs are unreaped when token 1 is
/// forgotten; they must be reported by the next wait as if nothing had
/// happened, and only as often as their mode says.
fn others_pending(mode: Mode) {
    let mut p = poller();
    let waker = p.waker(Token(99)).unwrap();
    let (a, peer_a) = fd::socketpair_stream().unwrap();
    let (s, peer_s) = fd::socketpair_stream().unwrap();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, mode)
        .unwrap();
    p.declare_interest(s.as_raw_fd(), Token(2), Interest::READABLE, mode)
        .unwrap();
    p.declare_interest(r.as_raw_fd(), Token(3), Interest::READABLE, mode)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 4, "three and the waker");
    fd::write(&peer_s, b"x").unwrap();
    fd::write(&w, b"x").unwrap();
    waker.wake().unwrap();
    // Their CQEs are posted (this thread ran the polls' completion work on
    // its way back from the writes) and not reaped.
    assert!(p.backend_mut().unreaped_completions() >= 3);
    forget_armed(&mut p, 1);
    assert_eq!(p.backend_mut().unreaped_completions(), 0);
    drop(a);
    eof_now(&peer_a);
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(2), Token(3), Token(99)], "{mode:?}");
    assert!(evs[0].readable && evs[1].readable);
    match mode {
        Mode::Level => {
            // Still ready: reported again, the wake-up not.
            assert_eq!(tokens(&wait(&mut p)), [Token(2), Token(3)]);
            drain(&s);
            drain(&r);
            assert!(wait(&mut p).is_empty());
            // Still watched: armed once each, and the waker.
            assert_eq!(p.backend().armed_polls(), 3);
        }
        Mode::Edge => {
            for _ in 0..2 {
                assert!(wait(&mut p).is_empty());
            }
            drain(&s);
            drain(&r);
            p.would_block(Token(2), Interest::READABLE).unwrap();
            p.would_block(Token(3), Interest::READABLE).unwrap();
            assert!(wait(&mut p).is_empty());
        }
        Mode::Oneshot => {
            for _ in 0..2 {
                assert!(wait(&mut p).is_empty());
            }
            drain(&s);
            drain(&r);
            for (t, n) in [(2, s.as_raw_fd()), (3, r.as_raw_fd())] {
                p.declare_interest(n, Token(t), Interest::READABLE, mode)
                    .unwrap();
            }
            assert!(wait(&mut p).is_empty());
        }
    }
    fd::write(&peer_s, b"y").unwrap();
    fd::write(&w, b"y").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2), Token(3)], "{mode:?}");
    let again: &[Token] = match mode {
        Mode::Level => &[Token(2), Token(3)],
        Mode::Edge | Mode::Oneshot => &[],
    };
    assert_eq!(tokens(&wait(&mut p)), again, "{mode:?}");
}

#[test]
fn readiness_of_others_pending_at_a_forget_is_delivered_once_level() {
    others_pending(Mode::Level);
}

#[test]
fn readiness_of_others_pending_at_a_forget_is_delivered_once_edge() {
    others_pending(Mode::Edge);
}

#[test]
fn readiness_of_others_pending_at_a_forget_is_delivered_once_oneshot() {
    others_pending(Mode::Oneshot);
}

#[test]
fn forget_with_a_pending_change_cancels_the_armed_poll() {
    // The kernel was told READABLE; the program asked for WRITABLE since,
    // which did not reach the kernel yet. The armed poll is still cancelled.
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    forget_armed(&mut p, 1);
    drop(a);
    eof_now(&b);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn a_descriptor_never_waited_for_is_not_held_and_forget_costs_nothing() {
    // Declared and forgotten between two waits: nothing reached the kernel.
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let before = counter::snapshot();
    p.forget(Token(1)).unwrap();
    assert_eq!((counter::snapshot() - before).total(), 0);
    drop(a);
    eof_now(&b);
    assert!(wait(&mut p).is_empty());
}

#[test]
fn closed_without_forget_the_file_stays_open_until_forget() {
    // Unspecified by SEMANTICS.md; this is what io_uring does: the poll
    // keeps the file open (like a dup'ed file in an epoll set), silently,
    // until the registration is forgotten, which closes it at once.
    for mode in MODES {
        let mut p = poller();
        let (a, b) = fd::socketpair_stream().unwrap();
        p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, mode)
            .unwrap();
        assert!(wait(&mut p).is_empty());
        drop(a);
        assert_eq!(read_one(&b).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        for _ in 0..2 {
            assert!(wait(&mut p).is_empty(), "{mode:?}");
        }
        assert_eq!(read_one(&b).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        forget_armed(&mut p, 1);
        eof_now(&b);
        assert!(wait(&mut p).is_empty());
    }
}

#[test]
fn many_forgets_in_a_row_each_close_at_once() {
    let mut p = poller();
    let pairs: Vec<_> = (0..64).map(|_| fd::socketpair_stream().unwrap()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::BOTH, Mode::Edge)
            .unwrap();
    }
    assert_eq!(wait(&mut p).len(), 64);
    // All reported (writable): no poll left armed, each forget is free.
    assert_eq!(p.backend().armed_polls(), 0);
    for i in 0..pairs.len() {
        forget_unarmed(&mut p, i);
    }
    for (a, b) in pairs {
        drop(a);
        eof_now(&b);
    }
    // Not reported (nothing to read): each forget cancels an armed poll.
    let pairs: Vec<_> = (0..64).map(|_| fd::socketpair_stream().unwrap()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Edge)
            .unwrap();
    }
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 64);
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        forget_armed(&mut p, i);
        drop(a);
        eof_now(&b);
    }
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), 0);
    assert_eq!(p.backend().registrations(), 0);
}

#[test]
fn without_the_5_19_set_up_flags_too() {
    // No COOP_TASKRUN (the completion work is signalled) and no
    // IORING_ASYNC_CANCEL_ALL (one cancel per poll): the first two
    // io_uring_setup attempts are refused with EINVAL, as on Linux < 5.18.
    const EINVAL: i32 = 22;
    fault::install(
        FaultPlan::new(1)
            .fail_nth(SyscallKind::IoUringSetup, 1, EINVAL)
            .fail_nth(SyscallKind::IoUringSetup, 2, EINVAL),
    );
    let b = UringBackend::new();
    fault::clear();
    let b = b.unwrap();
    assert_eq!(b.setup_level(), 0);
    let mut p = Poller::new(b);
    for mode in MODES {
        let (a, b) = fd::socketpair_stream().unwrap();
        let (r, w) = fd::pipe().unwrap();
        let (s, peer_s) = fd::socketpair_stream().unwrap();
        p.declare_interest(a.as_raw_fd(), Token(1), Interest::BOTH, mode)
            .unwrap();
        p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, mode)
            .unwrap();
        p.declare_interest(s.as_raw_fd(), Token(3), Interest::READABLE, mode)
            .unwrap();
        assert_eq!(tokens(&wait(&mut p)), [Token(1)], "{mode:?}");
        fd::write(&peer_s, b"x").unwrap();
        // Reported: nothing armed.
        forget_unarmed(&mut p, 1);
        drop(a);
        eof_now(&b);
        forget_armed(&mut p, 2);
        drop(r);
        epipe_now(&w);
        assert_eq!(tokens(&wait(&mut p)), [Token(3)], "{mode:?}");
        p.forget(Token(3)).unwrap();
        assert!(wait(&mut p).is_empty());
        assert_eq!(p.backend().armed_polls(), 0);
    }
}

#[test]
fn a_forget_whose_enter_fails_transiently_enters_again() {
    // A failed enter consumed nothing: forget reaps and enters again,
    // whatever the errno, and the file is closed with the descriptor.
    for errno in [
        libc::EINTR,
        libc::EAGAIN,
        libc::EBUSY,
        libc::ENOMEM,
        libc::EBADF,
    ] {
        let mut p = poller();
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        assert!(wait(&mut p).is_empty());
        let stats = p.backend().quirk_stats();
        let before = counter::snapshot();
        fault::install(
            FaultPlan::new(1)
                .fail_nth(SyscallKind::IoUringEnter, 1, errno)
                .fail_nth(SyscallKind::IoUringEnter, 2, errno),
        );
        p.forget(Token(1)).unwrap();
        let injected = fault::injected();
        fault::clear();
        // Failed calls are not counted: two injected, then one that works.
        let delta = counter::snapshot() - before;
        assert_eq!(injected, 2, "{errno}");
        assert_eq!(
            delta.get(SyscallKind::IoUringEnter),
            1,
            "{errno}: {delta:?}"
        );
        let after = p.backend().quirk_stats();
        assert_eq!(after.forgotten_now, stats.forgotten_now + 1, "{after:?}");
        assert_eq!(after.forget_deferred, stats.forget_deferred, "{after:?}");
        drop(r);
        epipe_now(&w);
        assert!(wait(&mut p).is_empty(), "{errno}");
    }
}

#[test]
fn a_forget_whose_enter_keeps_failing_falls_back_to_the_next_wait() {
    // A persistent error (the enter failing nine times in a row, whatever
    // the errno): the cancel goes with the next wait, and the file stays
    // open until then.
    for errno in [libc::ENOMEM, libc::EAGAIN] {
        let mut p = poller();
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        assert!(wait(&mut p).is_empty());
        let stats = p.backend().quirk_stats();
        fault::install(FaultPlan::new(1).fail(SyscallKind::IoUringEnter, errno, 1000));
        p.forget(Token(1)).unwrap();
        let injected = fault::injected();
        fault::clear();
        assert_eq!(injected, 9, "{errno}");
        let after = p.backend().quirk_stats();
        assert_eq!(
            after.forget_deferred,
            stats.forget_deferred + 1,
            "{after:?}"
        );
        drop(r);
        evmux_sys::signal::ignore_sigpipe().unwrap();
        assert!(
            fd::write(&w, b"x").is_ok(),
            "the file is open until the wait"
        );
        assert!(wait(&mut p).is_empty(), "{errno}");
        epipe_now(&w);
    }
}
