//! A poller made and first waited on by one thread, then moved to another
//! and driven there, leaves the first thread alone.
//!
//! io_uring runs a poll's completion work on the thread that submitted the
//! poll and wakes that thread for it (`TIF_NOTIFY_SIGNAL`, even with
//! `COOP_TASKRUN`), which makes a blocking call the kernel does not restart
//! (a socket read with `SO_RCVTIMEO`) fail with `EINTR`. The first wait on
//! the new thread therefore moves every armed poll there: it cancels it and
//! arms it again within its own single `io_uring_enter` (crate docs,
//! "Threads"). Without that, each poll armed by the first thread interrupts
//! it when its descriptor becomes ready (16 `EINTR`s here).
//!
//! The move itself is task work for the first thread (the cancelled polls'
//! final completions run there; the kernel cannot hand them over), so that
//! thread is notified once, at the move. Here it takes that notification in
//! a call the kernel restarts (a read without timeout, waiting for "moved"),
//! and the test then asserts that nothing at all reaches it while the new
//! thread runs 2000 rounds: no `EINTR` from its `SO_RCVTIMEO` read. It also
//! asserts that every round's readiness was reported by the round's one
//! wait (none lost), and that every wait after the move, the moving one
//! included, was exactly one `io_uring_enter` and no other syscall.
#![cfg(target_os = "linux")]

mod common;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use common::{drain, poller, tokens, wait, wait_for};
use evmux_interest::{Interest, Mode, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;
use evmux_uring::QuirkStats;

const PIPES: usize = 16;
const ROUNDS: usize = 2000;
const WAKER: Token = Token(1000);
/// A bound for waits that should return at once; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(10);

/// What the new thread saw.
#[derive(Debug, Default)]
struct Seen {
    /// The moving wait's events and syscalls (`IoUringEnter`, total).
    move_events: usize,
    move_syscalls: (u64, u64),
    /// The backend's counters right after the move.
    stats: QuirkStats,
    /// The first round whose wait did not report exactly its pipe, and
    /// what it reported.
    lost: Option<(usize, Vec<Token>)>,
    /// Rounds run.
    rounds: usize,
    /// Waits after the move that were not exactly one `io_uring_enter`
    /// and nothing else: (round, `IoUringEnter`, total).
    costly: Vec<(usize, u64, u64)>,
    /// The waker's event arrived, from a wake by the first thread.
    woken: bool,
}

#[test]
fn a_moved_poller_does_not_interrupt_the_thread_that_made_it() {
    let mut p = poller();
    let waker = p.waker(WAKER).unwrap();
    let mut pipes: Vec<(OwnedFd, OwnedFd)> = Vec::new();
    for i in 0..PIPES {
        let (r, w) = fd::pipe().unwrap();
        p.declare_interest(r.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
        pipes.push((r, w));
    }
    // Armed by this thread: the 16 polls and the waker's.
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().armed_polls(), PIPES as u64 + 1);

    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let runner = thread::spawn(move || {
        let mut theirs = theirs;
        let mut seen = Seen::default();
        // The move: the first wait here cancels the polls and arms them
        // again from this thread, all in its one enter.
        let before = counter::snapshot();
        let evs = wait(&mut p);
        let delta = counter::snapshot() - before;
        seen.move_events = evs.len();
        seen.move_syscalls = (delta.get(SyscallKind::IoUringEnter), delta.total());
        seen.stats = p.backend().quirk_stats();
        // Once the first thread has read this, it has run the move's task
        // work: that was queued by the enter above.
        theirs.write_all(b"m").unwrap();
        let mut ack = [0u8; 1];
        theirs.read_exact(&mut ack).unwrap();
        for round in 0..ROUNDS {
            let k = round % PIPES;
            let (r, w) = &pipes[k];
            fd::write(w, b"x").unwrap();
            let before = counter::snapshot();
            let evs = wait_for(&mut p, Some(PATIENCE));
            let delta = counter::snapshot() - before;
            let (enters, total) = (delta.get(SyscallKind::IoUringEnter), delta.total());
            if (enters, total) != (1, 1) {
                seen.costly.push((round, enters, total));
            }
            assert_eq!(drain(r), 1);
            seen.rounds += 1;
            if tokens(&evs) != [Token(k)] {
                seen.lost = Some((round, tokens(&evs)));
                break;
            }
        }
        theirs.write_all(b"d").unwrap();
        // The first thread wakes the moved waker's poll.
        let evs = wait_for(&mut p, Some(PATIENCE));
        seen.woken = tokens(&evs) == [WAKER];
        (seen, p)
    });

    // A read without timeout: should the move's notification come while it
    // blocks, the kernel restarts it.
    let mut msg = [0u8; 1];
    mine.read_exact(&mut msg).unwrap();
    assert_eq!(&msg, b"m");
    // From here on, a read the kernel does not restart: any task work for
    // this thread fails it with EINTR.
    mine.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    mine.write_all(b"a").unwrap();
    let mut eintr = 0;
    loop {
        match mine.read(&mut msg) {
            Ok(1) => break,
            Ok(n) => panic!("the other thread hung up ({n})"),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => eintr += 1,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(&msg, b"d");
    waker.wake().unwrap();
    let (seen, p) = runner.join().unwrap();

    assert_eq!(
        eintr, 0,
        "the thread that made the poller was interrupted; {seen:?}"
    );
    assert_eq!(seen.move_events, 0, "{seen:?}");
    assert_eq!(seen.move_syscalls, (1, 1), "the moving wait: {seen:?}");
    assert_eq!(seen.stats.moves, 1, "{seen:?}");
    assert_eq!(seen.stats.rehomed, PIPES as u64 + 1, "{seen:?}");
    assert_eq!(seen.lost, None, "readiness lost: {seen:?}");
    assert_eq!(seen.rounds, ROUNDS);
    assert!(seen.costly.is_empty(), "waits costing more: {seen:?}");
    assert!(seen.woken, "{seen:?}");
    // Moved once only: the rounds all ran on one thread.
    assert_eq!(p.backend().quirk_stats().moves, 1);
}
