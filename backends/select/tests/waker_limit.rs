//! The waker's eventfd must get a number below `FD_SETSIZE`. This binary
//! occupies every lower number, so it has a single test.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::{poller, tokens, wait};
use evmux_interest::{Interest, Mode, Token};
use evmux_select::FD_SETSIZE;
use evmux_sys::fd;

#[test]
fn the_waker_fails_cleanly_when_no_number_below_fd_setsize_is_free() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    // Occupy every free number below FD_SETSIZE (the soft limit is far
    // above it).
    let mut hold: Vec<OwnedFd> = Vec::new();
    loop {
        let d = fd::dup(&w).unwrap();
        if d.as_raw_fd() >= FD_SETSIZE {
            break; // dropped: closes the high number again
        }
        hold.push(d);
    }
    let err = p.waker(Token(99)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("FD_SETSIZE") && msg.contains("1024"), "{msg}");
    // Nothing changed: the poller still works.
    fd::write(&w, b"x").unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1)]);
    // With a low number free again, the waker can be created.
    hold.pop();
    let waker = p.waker(Token(99)).unwrap();
    waker.wake().unwrap();
    assert_eq!(tokens(&wait(&mut p)), [Token(1), Token(99)]);
}
