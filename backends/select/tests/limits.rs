//! `FD_SETSIZE`: descriptors numbered 1024 and above are refused when they
//! are declared.

mod common;

use std::io;
use std::os::fd::AsRawFd;

use common::{poller, tokens, wait, wait_steady};
use evmux_interest::{Error, Interest, Mode, Token};
use evmux_select::FD_SETSIZE;
use evmux_sys::fd;

fn assert_refused(err: Error, fd: i32, token: Token) {
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(err.token(), token);
    assert_eq!(
        err,
        Error::FdTooLarge {
            token,
            fd,
            limit: 1024,
            backend: "select",
        }
    );
    let msg = err.to_string();
    assert!(msg.contains(&fd.to_string()), "{msg}");
    assert!(msg.contains("1024"), "{msg}");
    assert!(msg.contains("select"), "{msg}");
    let io_err = io::Error::from(err);
    assert_eq!(io_err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn numbers_from_fd_setsize_up_are_refused_and_nothing_is_registered() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    for n in [FD_SETSIZE, FD_SETSIZE + 1, 19_999, i32::MAX] {
        let err = p
            .declare_interest(n, Token(2), Interest::READABLE, Mode::Level)
            .unwrap_err();
        assert_refused(err, n, Token(2));
    }
    // The largest number select can watch is accepted (it is closed, so
    // the wait refuses it with EBADF, which is another matter).
    p.declare_interest(FD_SETSIZE - 1, Token(3), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(p.len(), 2);
    fd::write(&w, b"x").unwrap();
    let evs = wait(&mut p);
    assert_eq!(tokens(&evs), [Token(1), Token(3)]);
    assert_eq!(evs[1].errno, Some(9));
    // Nothing of the refused declarations reached the backend.
    assert_eq!(p.backend().entries(), 1);
    assert_eq!(p.backend().nfds(), r.as_raw_fd() + 1);
    assert_eq!(tokens(&wait_steady(&mut p)), [Token(1)]);
}

#[test]
fn a_real_descriptor_numbered_above_fd_setsize_is_refused() {
    let (r, w) = fd::pipe().unwrap();
    let high = rustix::io::fcntl_dupfd_cloexec(&r, 1100).unwrap();
    assert!(high.as_raw_fd() >= 1100);
    assert!(fd::is_open_raw(high.as_raw_fd()));
    fd::write(&w, b"x").unwrap();
    let mut p = poller();
    let err = p
        .declare_interest(high.as_raw_fd(), Token(7), Interest::READABLE, Mode::Level)
        .unwrap_err();
    assert_refused(err, high.as_raw_fd(), Token(7));
    assert_eq!(p.len(), 0);
    assert!(p.registrations().next().is_none());
    assert!(wait_steady(&mut p).is_empty());
    assert_eq!((p.backend().entries(), p.backend().nfds()), (0, 0));
    // The same file under a low number works.
    p.declare_interest(r.as_raw_fd(), Token(7), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(7)]);
}
