//! Exercises the public API from outside the crate.

use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

#[test]
fn real_syscall_counts_are_per_thread() {
    counter::reset();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"abc").unwrap();
    assert_eq!(counter::get(SyscallKind::Pipe), 1);
    assert_eq!(counter::get(SyscallKind::Write), 1);

    let theirs = std::thread::spawn(|| {
        let start = counter::snapshot();
        let (r, w) = fd::pipe().unwrap();
        for _ in 0..3 {
            fd::write(&w, b"x").unwrap();
        }
        let mut buf = [0u8; 8];
        fd::read(&r, &mut buf).unwrap();
        (start.total(), counter::snapshot())
    })
    .join()
    .unwrap();
    assert_eq!(theirs.0, 0, "a new thread starts at zero");
    assert_eq!(theirs.1.get(SyscallKind::Pipe), 1);
    assert_eq!(theirs.1.get(SyscallKind::Write), 3);
    assert_eq!(theirs.1.get(SyscallKind::Read), 1);
    assert_eq!(theirs.1.total(), 5);

    // Ours are untouched by the other thread.
    assert_eq!(counter::get(SyscallKind::Write), 1);
    assert_eq!(counter::get(SyscallKind::Read), 0);
    let mut buf = [0u8; 8];
    assert_eq!(fd::read(&r, &mut buf).unwrap(), 3);
    // Failing syscalls are counted too.
    assert!(fd::read(&r, &mut buf).is_err());
    assert_eq!(counter::get(SyscallKind::Read), 2);
    assert_eq!(counter::snapshot().total(), 4);
}

#[test]
fn poll_and_epoll_agree_on_socketpair() {
    use evmux_sys::epoll::{Epoll, flags};
    use evmux_sys::poll::{POLLIN, POLLOUT, PollFd, poll};

    let (a, b) = fd::socketpair_stream().unwrap();
    let ep = Epoll::new().unwrap();
    ep.add(a.as_fd(), flags::EPOLLIN, 42).unwrap();
    let mut events = Vec::with_capacity(4);
    let mut fds = [PollFd::new(a.as_raw_fd(), POLLIN | POLLOUT)];

    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
    assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 1);
    assert_eq!(fds[0].revents, POLLOUT);

    assert_eq!(fd::send(&b, b"ping").unwrap(), 4);
    assert_eq!(ep.wait(&mut events, None).unwrap(), 1);
    assert_eq!((events[0].events(), events[0].data()), (flags::EPOLLIN, 42));
    assert_eq!(poll(&mut fds, None).unwrap(), 1);
    assert_eq!(fds[0].revents, POLLIN | POLLOUT);
}

#[test]
fn eventfd_wakes_epoll() {
    use evmux_sys::epoll::{Epoll, flags};
    use evmux_sys::eventfd::EventFd;

    let efd = EventFd::new(true).unwrap();
    let ep = Epoll::new().unwrap();
    ep.add(efd.as_fd(), flags::EPOLLIN | flags::EPOLLET, 1)
        .unwrap();
    let mut events = Vec::with_capacity(1);
    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
    efd.write(1).unwrap();
    assert_eq!(
        ep.wait(&mut events, Some(Duration::from_secs(10))).unwrap(),
        1
    );
    assert_eq!(efd.read().unwrap(), 1);
}

#[cfg(feature = "fault-injection")]
#[test]
fn tmpfile_falls_back_when_o_tmpfile_unsupported() {
    use evmux_sys::fault::{self, FaultPlan};

    // Fail the O_TMPFILE open as a file system without support would.
    fault::install(FaultPlan::new(5).fail_nth(SyscallKind::Other, 1, libc::EOPNOTSUPP));
    let before = counter::get(SyscallKind::Other);
    let f = fd::open_tmp_regular_file().unwrap();
    fault::clear();
    assert_eq!(fault::injected(), 1);
    // open(O_CREAT|O_EXCL) + unlink were made; the faulted call was not.
    assert_eq!(counter::get(SyscallKind::Other), before + 2);
    assert!(fd::is_regular_file(&f).unwrap());
    assert_eq!(fd::write(&f, b"ok").unwrap(), 2);
}

#[cfg(feature = "fault-injection")]
#[test]
fn faulted_dup_onto_closes_target() {
    use evmux_sys::fault::{self, FaultPlan};

    let (r1, w1) = fd::pipe().unwrap();
    let (_r2, w2) = fd::pipe().unwrap();
    fault::install(FaultPlan::new(5).fail(SyscallKind::Dup, libc::EINTR, 1000));
    let err = fd::dup_onto(w2.as_fd(), w1).unwrap_err();
    fault::clear();
    assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
    let mut buf = [0u8; 1];
    assert_eq!(fd::read(&r1, &mut buf).unwrap(), 0, "target was closed");
}
