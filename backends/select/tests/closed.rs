//! Closed and reused descriptor numbers (EBADF, and closed numbers above
//! the descriptor table's size, which select(2) silently skips), and EINTR.
//!
//! Descriptor numbers are process-wide and these tests depend on which
//! numbers are free, so they run one at a time (a lock) in their own test
//! binary, which never opens many descriptors: its descriptor table stays
//! small (see `fd_table_size`).

mod common;

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use common::{drain, poller, tokens, wait, wait_counted, wait_steady};
use evmux_interest::{Events, Interest, Mode, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fault::{self, FaultPlan};
use evmux_sys::fd;

const EBADF: i32 = 9;
const EINTR: i32 = 4;

/// A number nothing in this test binary opens: far above the few dozen
/// descriptors the tests use, below `FD_SETSIZE`.
const NEVER_OPENED: RawFd = 1000;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A descriptor number that is not open, inside the descriptor table (so
/// select(2) answers EBADF for it), and, with the lock held, will not be
/// opened by anyone else.
fn closed_number() -> RawFd {
    let (r, w) = fd::pipe().unwrap();
    let n = r.as_raw_fd();
    drop(r);
    drop(w);
    assert!(!fd::is_open_raw(n));
    n
}

/// `FDSize` from `/proc/self/status`: the size of the descriptor table.
fn fd_table_size() -> RawFd {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
    line["FDSize:".len()..].trim().parse().unwrap()
}

#[test]
fn declaring_a_closed_number_is_rejected_with_ebadf_and_the_batch_still_applies() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    let closed = closed_number();
    assert!(closed < fd_table_size());
    fd::write(&w, b"x").unwrap();
    fd::write(&w2, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(closed, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    let (evs, d) = wait_counted(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2), Token(3)], "{evs:?}");
    let err = evs[1];
    assert!(err.error && !err.readable && !err.writable);
    assert_eq!(err.errno, Some(EBADF));
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(EBADF));
    assert!(evs[0].readable && evs[2].readable && !evs[0].error && !evs[2].error);
    // select failed with EBADF, one poll found the culprit, select again,
    // and the readiness check.
    assert_eq!(d.get(SyscallKind::Select), 2, "{d:?}");
    assert_eq!(d.get(SyscallKind::Poll), 2, "{d:?}");
    assert_eq!(d.total(), 4, "{d:?}");
    // The refused entry left the bitmaps; the registration is silent.
    assert_eq!(p.backend().entries(), 2);
    assert!(!p.backend().masters().0.contains(closed));
    for _ in 0..3 {
        assert_eq!(tokens(&wait_steady(&mut p)), [Token(1), Token(3)]);
    }
    // Declaring it again retries, and is refused again.
    p.declare_interest(closed, Token(2), Interest::BOTH, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    let err = evs.iter().find(|e| e.token == Token(2)).unwrap();
    assert_eq!(err.errno, Some(EBADF));
    assert_eq!(p.backend().entries(), 2);
    // Forgetting a refused registration works and costs nothing.
    p.forget(Token(2)).unwrap();
    assert_eq!(tokens(&wait_steady(&mut p)), [Token(1), Token(3)]);
    assert_eq!(p.backend().entries(), 2);
}

#[test]
fn a_closed_number_above_the_descriptor_table_is_rejected_too() {
    // select(2) neither fails nor reports for it (the kernel lowers nfds to
    // the table size); the readiness check finds POLLNVAL.
    let _g = serial();
    assert!(
        fd_table_size() <= NEVER_OPENED,
        "this binary keeps its descriptor table small"
    );
    assert!(!fd::is_open_raw(NEVER_OPENED));
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(NEVER_OPENED, Token(2), Interest::WRITABLE, Mode::Level)
        .unwrap();
    let (evs, d) = wait_counted(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2)], "{evs:?}");
    assert!(evs[0].readable);
    assert_eq!(evs[1].errno, Some(EBADF));
    assert_eq!(
        (d.get(SyscallKind::Select), d.get(SyscallKind::Poll)),
        (1, 1),
        "{d:?}"
    );
    assert_eq!(p.backend().entries(), 1);
    assert_eq!(p.backend().nfds(), r.as_raw_fd() + 1);
    assert_eq!(tokens(&wait_steady(&mut p)), [Token(1)]);
}

#[test]
fn a_rejection_does_not_block_the_wait() {
    let _g = serial();
    for above_table in [false, true] {
        let mut p = poller();
        let (r, _w) = fd::pipe().unwrap();
        // A watchdog wakes the wait should it block; its event must not be
        // what ends the wait. (Its eventfd is opened before the closed
        // number is chosen, so it cannot take that number.)
        let waker = p.waker(Token(99)).unwrap();
        let closed = if above_table {
            NEVER_OPENED
        } else {
            closed_number()
        };
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        p.declare_interest(closed, Token(2), Interest::READABLE, Mode::Level)
            .unwrap();
        let watchdog = thread::spawn(move || {
            thread::sleep(Duration::from_secs(30));
            let _ = waker.wake();
        });
        let before = counter::snapshot();
        let mut evs = Events::with_capacity(8);
        let n = p.get_next_event(&mut evs, None).unwrap();
        let d = counter::snapshot() - before;
        assert_eq!(n, 1, "{closed}: {:?}", evs.as_slice());
        assert_eq!(evs.as_slice()[0].token, Token(2));
        assert_eq!(evs.as_slice()[0].errno, Some(EBADF));
        // The fresh entries were checked before the wait.
        assert_eq!(d.get(SyscallKind::Poll), 1, "{d:?}");
        assert_eq!(d.get(SyscallKind::Select), 1, "{d:?}");
        drop(watchdog); // detached: never joined
    }
}

#[test]
fn closed_without_forget_is_silent_and_the_wait_does_not_fail() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].readable);
    let n = r.as_raw_fd();
    drop(r);
    drop(w);
    // The first wait meets EBADF, finds the closed number and disables it.
    let (evs, d) = wait_counted(&mut p);
    assert!(evs.is_empty(), "{evs:?}");
    assert_eq!(
        (d.get(SyscallKind::Select), d.get(SyscallKind::Poll)),
        (2, 1),
        "{d:?}"
    );
    assert_eq!(p.backend().entries(), 2);
    assert_eq!(p.backend().disabled_entries(), 1);
    for _ in 0..3 {
        // No error event, no readiness, one select.
        assert!(wait_steady(&mut p).is_empty());
    }
    fd::write(&w2, b"x").unwrap();
    assert_eq!(tokens(&wait_steady(&mut p)), [Token(2)]);
    drain(&r2);
    // A blocking wait does not spin on the closed number: it times out.
    let mut evs = Events::with_capacity(8);
    assert_eq!(
        p.get_next_event(&mut evs, Some(Duration::from_millis(1)))
            .unwrap(),
        0
    );
    p.forget(Token(1)).unwrap();
    assert!(wait_steady(&mut p).is_empty());
    assert_eq!(
        (p.backend().entries(), p.backend().disabled_entries()),
        (1, 0)
    );
    // The number can be declared again, for a new descriptor.
    let (r, w) = fd::pipe().unwrap();
    assert_eq!(r.as_raw_fd(), n);
    p.declare_interest(n, Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"x").unwrap();
    assert_eq!(tokens(&wait_steady(&mut p)), [Token(3)]);
}

#[test]
fn a_change_meeting_a_number_closed_since_registration_is_rejected() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    fd::write(&w2, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(r2.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    let n = r.as_raw_fd();
    drop(r);
    drop(w);
    // Closed under its registration: silent.
    assert_eq!(tokens(&wait(&mut p)), [Token(2)]);
    assert_eq!(p.backend().disabled_entries(), 1);
    // A change for it (Some -> Some) is refused as EPOLL_CTL_MOD would be.
    p.declare_interest(n, Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(2)]);
    assert_eq!(evs[0].errno, Some(EBADF));
    assert!(evs[1].readable);
    assert_eq!(
        (p.backend().entries(), p.backend().disabled_entries()),
        (1, 0)
    );
    assert_eq!(tokens(&wait_steady(&mut p)), [Token(2)]);
    p.forget(Token(1)).unwrap();
    assert_eq!(tokens(&wait_steady(&mut p)), [Token(2)]);
}

#[test]
fn reused_number_in_the_same_batch_reports_only_the_new_token() {
    let _g = serial();
    let mut p = poller();
    let (r1, w1) = fd::pipe().unwrap();
    fd::write(&w1, b"old").unwrap();
    let n = r1.as_raw_fd();
    p.declare_interest(n, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    p.forget(Token(1)).unwrap();
    let (r2, w2) = fd::pipe().unwrap();
    // dup3: the number never becomes free; pipe 1 loses its reader.
    let r2_at_n = fd::dup_onto(r2.as_fd(), r1).unwrap();
    assert_eq!(r2_at_n.as_raw_fd(), n);
    drop(r2);
    drop(w1);
    p.declare_interest(n, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 1);
    fd::write(&w2, b"new").unwrap();
    let evs = wait_steady(&mut p);
    assert_eq!(tokens(&evs), [Token(2)]);
    assert!(evs[0].readable && !evs[0].read_closed);
}

#[test]
fn reused_number_after_a_rejection_replaces_the_refused_registration() {
    let _g = serial();
    let mut p = poller();
    let closed = closed_number();
    p.declare_interest(closed, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(wait(&mut p)[0].errno, Some(EBADF));
    p.forget(Token(1)).unwrap();
    let (r, w) = fd::pipe().unwrap();
    assert_eq!(r.as_raw_fd(), closed);
    fd::write(&w, b"x").unwrap();
    p.declare_interest(closed, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait_steady(&mut p);
    assert_eq!(tokens(&evs), [Token(2)]);
    assert!(evs[0].readable && evs[0].errno.is_none());
    assert_eq!(p.backend().entries(), 1);
}

#[test]
fn interrupted_zero_timeout_wait_reports_the_rejection() {
    // The driver looks again, without blocking, after an interrupted wait
    // even when its time is up: the refusal and the readiness come in the
    // same call.
    let _g = serial();
    for above_table in [false, true] {
        let mut p = poller();
        let (r, w) = fd::pipe().unwrap();
        let closed = if above_table {
            NEVER_OPENED
        } else {
            closed_number()
        };
        fd::write(&w, b"x").unwrap();
        p.declare_interest(closed, Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
            .unwrap();
        fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Select, 1, EINTR));
        let mut evs = Events::with_capacity(8);
        let n = p.get_next_event(&mut evs, Some(Duration::ZERO)).unwrap();
        let injected = fault::injected();
        fault::clear();
        assert_eq!((n, injected), (2, 1), "{closed}");
        let mut evs = evs.as_slice().to_vec();
        evs.sort();
        assert_eq!(tokens(&evs), [Token(1), Token(2)], "{closed}");
        assert_eq!(evs[0].errno, Some(EBADF));
        assert!(evs[1].readable);
        assert_eq!(p.backend().entries(), 1);
    }
}

#[test]
fn interrupted_blocking_wait_keeps_the_batch() {
    let _g = serial();
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    // The driver resumes after EINTR with an empty batch and the time left.
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Select, 1, EINTR));
    let mut evs = Events::with_capacity(8);
    let n = p
        .get_next_event(&mut evs, Some(Duration::from_secs(60)))
        .unwrap();
    let injected = fault::injected();
    fault::clear();
    assert_eq!((n, injected), (1, 1));
    assert_eq!(evs.as_slice()[0].token, Token(2));
}

#[test]
fn an_ebadf_no_registration_explains_is_returned() {
    let _g = serial();
    let mut p = poller();
    let (r, _w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Select, 1, EBADF));
    let mut evs = Events::with_capacity(8);
    let err = p
        .get_next_event(&mut evs, Some(Duration::ZERO))
        .unwrap_err();
    fault::clear();
    assert_eq!(err.raw_os_error(), Some(EBADF));
    // Nothing was disabled.
    assert_eq!(
        (p.backend().entries(), p.backend().disabled_entries()),
        (1, 0)
    );
    assert!(wait_steady(&mut p).is_empty());
}
