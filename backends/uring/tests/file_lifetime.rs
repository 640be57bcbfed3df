//! A known difference from epoll and poll(2): an armed io_uring poll holds
//! a reference to the *file*. Closing a registered descriptor therefore
//! does not close the file until the backend cancels the poll, which is at
//! the first wait after `forget` (the backend hears of a `forget` only
//! then). Until that wait the peer of a closed socket sees no end of file,
//! and a writer to a pipe whose reader was closed gets no `EPIPE`.
//!
//! This pins the behaviour down (see the crate docs, "Descriptors closed
//! while registered"); the conformance test leaves such scenarios out.
#![cfg(target_os = "linux")]

mod common;

use std::io;
use std::os::fd::AsRawFd;

use common::{poller, wait};
use evmux_interest::{Interest, Mode, Token};
use evmux_sys::fd;

fn read_one(fd: &std::os::fd::OwnedFd) -> io::Result<usize> {
    let mut buf = [0u8; 16];
    fd::read(fd, &mut buf)
}

#[test]
fn a_forgotten_and_closed_socket_stays_open_until_the_next_wait() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    p.forget(Token(1)).unwrap();
    drop(a);
    // epoll and poll(2) would give end of file here.
    assert_eq!(read_one(&b).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    // The wait cancels the poll, which releases the file.
    assert!(wait(&mut p).is_empty());
    assert_eq!(read_one(&b).unwrap(), 0);
}

#[test]
fn a_descriptor_never_waited_for_is_not_held() {
    // Declared and forgotten between two waits: nothing reached the kernel.
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.forget(Token(1)).unwrap();
    drop(a);
    assert_eq!(read_one(&b).unwrap(), 0);
    assert!(wait(&mut p).is_empty());
}
