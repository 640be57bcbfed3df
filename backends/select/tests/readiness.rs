//! Readiness through the driver on real descriptors: level, emulated edge
//! and oneshot, hang-ups, regular files, `max_events`, the incremental
//! bitmaps, syscall counts, and equality with the poll backend's stream.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use common::{drain, fill, poll_poller, poller, tokens, wait, wait_cap, wait_counted, wait_steady};
use evmux_interest::{Backend, Capabilities, Event, Events, Interest, Mode, Ready, Token};
use evmux_select::{FD_SETSIZE, SelectBackend};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::fd;
use evmux_sys::poll::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, PollFd, poll};

#[test]
fn name_capabilities_and_clock() {
    let b = SelectBackend::new().unwrap();
    assert_eq!(b.name(), "select");
    assert_eq!(
        b.capabilities(),
        Capabilities {
            native_edge: false,
            native_oneshot: false,
            cheap_changes: true,
            max_fd: Some(1023),
        }
    );
    assert_eq!(FD_SETSIZE, 1024);
    let t0 = b.now();
    assert!(b.now() >= t0);
    assert_eq!((b.entries(), b.nfds()), (0, 0));
    // Creating the backend opens no descriptor.
    let before = counter::snapshot();
    let _b = SelectBackend::new().unwrap();
    assert_eq!((counter::snapshot() - before).total(), 0);
}

#[test]
fn level_readable_pipe_until_drained() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    assert!(wait_steady(&mut p).is_empty());
    fd::write(&w, b"hello").unwrap();
    for _ in 0..3 {
        let evs = wait_steady(&mut p);
        assert_eq!(evs.len(), 1, "{evs:?}");
        let ev = evs[0];
        assert_eq!(ev.token, Token(1));
        assert!(ev.readable && !ev.writable && !ev.read_closed && !ev.error);
    }
    assert_eq!(drain(&r), 5);
    assert!(wait_steady(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 1);
}

#[test]
fn level_writable_socketpair_until_full() {
    let mut p = poller();
    let (a, _b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(7), Interest::BOTH, Mode::Level)
        .unwrap();
    let evs = wait(&mut p);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert!(evs[0].writable && !evs[0].readable && !evs[0].write_closed);
    let evs = wait_steady(&mut p);
    assert!(evs[0].writable);
    fill(&a);
    assert!(wait_steady(&mut p).is_empty());
}

#[test]
fn interest_changes_are_bitmap_writes_without_syscalls() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    let n = a.as_raw_fd();
    fd::write(&b, b"x").unwrap();
    for (interest, readable, writable) in [
        (Interest::READABLE, true, false),
        (Interest::WRITABLE, false, true),
        (Interest::BOTH, true, true),
    ] {
        p.declare_interest(n, Token(1), interest, Mode::Level)
            .unwrap();
        // A zero timeout: no check before the wait, so the change itself
        // costs nothing.
        let evs = wait_steady(&mut p);
        assert_eq!(evs.len(), 1);
        assert_eq!((evs[0].readable, evs[0].writable), (readable, writable));
        // Every watch is in the read bitmap (for a write-only one, that is
        // the hang-up probe); the write bitmap follows the interest.
        let (r, w) = p.backend().masters();
        assert_eq!((r.contains(n), w.contains(n)), (true, writable));
    }
    assert_eq!(p.backend().entries(), 1);
}

#[test]
fn nfds_follows_the_highest_registration() {
    let mut p = poller();
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..4).map(|_| fd::pipe().unwrap()).collect();
    let mut nums: Vec<RawFd> = pipes.iter().map(|(r, _)| r.as_raw_fd()).collect();
    nums.sort();
    for (i, &n) in nums.iter().enumerate() {
        p.declare_interest(n, Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
    }
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().nfds(), nums[3] + 1);
    p.forget(Token(3)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().nfds(), nums[2] + 1);
    p.forget(Token(0)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!(p.backend().nfds(), nums[2] + 1);
    p.forget(Token(2)).unwrap();
    p.forget(Token(1)).unwrap();
    assert!(wait(&mut p).is_empty());
    assert_eq!((p.backend().nfds(), p.backend().entries()), (0, 0));
    let (r, w) = p.backend().masters();
    assert!(r.is_empty() && w.is_empty());
}

#[test]
fn edge_reported_once_then_again_after_would_block() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"abc").unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    for round in 0..10 {
        let evs = wait_steady(&mut p);
        assert_eq!(tokens(&evs), [Token(1)], "round {round}");
        assert!(evs[0].readable);
        // Fully disarmed: the driver stops watching.
        assert!(wait_steady(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 0);
        // Not drained yet: would_block re-arms, and readiness that is
        // still there is reported again.
        p.would_block(Token(1), Interest::READABLE).unwrap();
        assert_eq!(tokens(&wait_steady(&mut p)), [Token(1)]);
        drain(&r);
        p.would_block(Token(1), Interest::READABLE).unwrap();
        assert!(wait_steady(&mut p).is_empty());
        assert!(wait_steady(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 1);
        fd::write(&w, b"abc").unwrap();
    }
}

#[test]
fn edge_both_directions_report_separately() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::BOTH, Mode::Edge)
        .unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].writable && !evs[0].readable);
    // Writable disarmed: only the read direction is watched now.
    assert!(wait_steady(&mut p).is_empty());
    let (r, w) = p.backend().masters();
    assert!(r.contains(a.as_raw_fd()) && !w.contains(a.as_raw_fd()));
    fd::write(&b, b"x").unwrap();
    let evs = wait_steady(&mut p);
    assert!(evs.len() == 1 && evs[0].readable && !evs[0].writable);
    assert!(wait_steady(&mut p).is_empty());
    assert_eq!(p.backend().entries(), 0);
    p.would_block(Token(1), Interest::WRITABLE).unwrap();
    let evs = wait(&mut p);
    assert!(evs.len() == 1 && evs[0].writable && !evs[0].readable);
}

#[test]
fn oneshot_reports_once_until_declared_again() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"x").unwrap();
    for _ in 0..5 {
        p.declare_interest(r.as_raw_fd(), Token(3), Interest::READABLE, Mode::Oneshot)
            .unwrap();
        let evs = wait_steady(&mut p);
        assert_eq!(tokens(&evs), [Token(3)]);
        assert!(evs[0].readable);
        assert!(wait_steady(&mut p).is_empty());
        assert!(wait_steady(&mut p).is_empty());
        assert_eq!(p.backend().entries(), 0);
    }
}

#[test]
fn pipe_hang_up_is_read_closed() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::write(&w, b"abc").unwrap();
    drop(w);
    for _ in 0..2 {
        let evs = wait_steady(&mut p);
        assert_eq!(evs.len(), 1);
        assert!(evs[0].readable && evs[0].read_closed && !evs[0].writable && !evs[0].error);
    }
    drain(&r);
    // Level: the hang-up stays.
    let evs = wait_steady(&mut p);
    assert!(evs.len() == 1 && evs[0].read_closed);
}

#[test]
fn socket_peer_shutdown_is_read_closed() {
    let mut p = poller();
    let (a, b) = fd::socketpair_stream().unwrap();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(wait(&mut p).is_empty());
    fd::shutdown(&b, Shutdown::Write).unwrap();
    let evs = wait_steady(&mut p);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].readable && evs[0].read_closed && !evs[0].error && !evs[0].writable);
}

/// Declares `fd` under `Token(1)` with `interest` (level) on a fresh
/// select poller and a fresh poll poller, waits once on each; the events.
fn both(fd: RawFd, interest: Interest) -> (Vec<Event>, Vec<Event>) {
    let mut s = poller();
    let mut p = poll_poller();
    s.declare_interest(fd, Token(1), interest, Mode::Level)
        .unwrap();
    p.declare_interest(fd, Token(1), interest, Mode::Level)
        .unwrap();
    (wait(&mut s), wait(&mut p))
}

#[test]
fn socket_peer_close_on_a_write_only_registration_equals_poll() {
    let (a, b) = fd::socketpair_stream().unwrap();
    fill(&a);
    let (s, p) = both(a.as_raw_fd(), Interest::WRITABLE);
    assert!(s.is_empty() && p.is_empty());
    drop(b);
    let (s, p) = both(a.as_raw_fd(), Interest::WRITABLE);
    assert_eq!(s, p);
    // OUT|HUP|ERR: the peer's close freed the send buffer, and (it had
    // unread data) left ECONNRESET pending; the hang-up qualifies the
    // reported direction.
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].writable && s[0].write_closed && s[0].error && !s[0].readable);
    // Without the error: a peer that closes with nothing unread.
    let (a2, b2) = fd::socketpair_stream().unwrap();
    drop(b2);
    let (s, p) = both(a2.as_raw_fd(), Interest::WRITABLE);
    assert_eq!(s, p);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].writable && s[0].write_closed && !s[0].error && !s[0].readable);
    // The same through one long-lived pair of pollers, level and edge.
    for mode in [Mode::Level, Mode::Edge, Mode::Oneshot] {
        let mut sp = poller();
        let mut pp = poll_poller();
        for interest in [Interest::WRITABLE, Interest::BOTH, Interest::READABLE] {
            sp.declare_interest(a.as_raw_fd(), Token(2), interest, mode)
                .unwrap();
            pp.declare_interest(a.as_raw_fd(), Token(2), interest, mode)
                .unwrap();
            for _ in 0..2 {
                assert_eq!(wait(&mut sp), wait(&mut pp), "{mode:?} {interest:?}");
            }
        }
    }
}

/// The full `poll(2)` mask of `fd` (`IN|OUT|RDHUP` asked), as [`Ready`].
fn full_mask(fd: RawFd) -> Ready {
    let mut fds = [PollFd::new(fd, POLLIN | POLLOUT | POLLRDHUP)];
    poll(&mut fds, Some(Duration::ZERO)).unwrap();
    Ready(u32::from(fds[0].revents as u16))
}

/// A write-only watch on `HUP` without `OUT` or `ERR`: what the write
/// bitmap cannot see, caught by the read-bitmap probe.
fn is_write_only_hang_up(interest: Interest, mask: Ready) -> bool {
    interest == Interest::WRITABLE
        && mask.contains(Ready::HUP)
        && !mask.intersects(Ready::OUT | Ready::ERR)
}

/// Compares the two backends on `fd` for every interest; returns how many
/// comparisons had events, and how many were write-only hang-ups.
fn compare(label: &str, fd: RawFd) -> (usize, usize) {
    let mask = full_mask(fd);
    let (mut nonempty, mut hang_ups) = (0, 0);
    for interest in [Interest::READABLE, Interest::WRITABLE, Interest::BOTH] {
        let (s, p) = both(fd, interest);
        assert_eq!(s, p, "{label} {interest:?} mask {mask:?}");
        if is_write_only_hang_up(interest, mask) {
            assert_eq!(s.len(), 1, "{label} {interest:?} {mask:?}: {s:?}");
            assert!(s[0].writable && s[0].write_closed && !s[0].readable);
            hang_ups += 1;
        }
        if !s.is_empty() {
            nonempty += 1;
        }
    }
    (nonempty, hang_ups)
}

#[test]
fn stream_equals_poll_across_descriptor_states() {
    let mut seen_masks = BTreeSet::new();
    let mut nonempty = 0;
    let mut hang_ups = 0;
    let mut check = |label: &str, fd: RawFd| {
        seen_masks.insert(full_mask(fd).0);
        let (n, h) = compare(label, fd);
        nonempty += n;
        hang_ups += h;
    };

    // Pipes.
    let (r, w) = fd::pipe().unwrap();
    check("pipe empty, read end", r.as_raw_fd());
    check("pipe empty, write end", w.as_raw_fd());
    fd::write(&w, b"abc").unwrap();
    check("pipe data, read end", r.as_raw_fd());
    fill(&w);
    check("pipe full, write end", w.as_raw_fd());
    drop(r);
    check("pipe full, reader closed", w.as_raw_fd());
    let (r, w) = fd::pipe().unwrap();
    drop(r);
    check("pipe reader closed", w.as_raw_fd());
    let (r, w) = fd::pipe().unwrap();
    fd::write(&w, b"abc").unwrap();
    drop(w);
    check("pipe writer closed, data", r.as_raw_fd());
    drain(&r);
    check("pipe writer closed, drained", r.as_raw_fd());

    // Unix stream socket pairs.
    let (a, b) = fd::socketpair_stream().unwrap();
    check("pair idle", a.as_raw_fd());
    fd::write(&b, b"xyz").unwrap();
    check("pair data", a.as_raw_fd());
    fd::shutdown(&b, Shutdown::Write).unwrap();
    check("pair peer shut write, data", a.as_raw_fd());
    drain(&a);
    check("pair peer shut write, drained", a.as_raw_fd());
    check("pair the peer, own write shut", b.as_raw_fd());
    fd::shutdown(&a, Shutdown::Write).unwrap();
    check("pair both shut", a.as_raw_fd());
    let (a, b) = fd::socketpair_stream().unwrap();
    drop(b);
    check("pair peer closed", a.as_raw_fd());
    let (a, b) = fd::socketpair_stream().unwrap();
    fd::write(&a, b"unread").unwrap();
    drop(b);
    check(
        "pair peer closed with unread data (ECONNRESET)",
        a.as_raw_fd(),
    );
    let (a, b) = fd::socketpair_stream().unwrap();
    fill(&a);
    check("pair full", a.as_raw_fd());
    fd::shutdown(&a, Shutdown::Write).unwrap();
    fd::shutdown(&b, Shutdown::Write).unwrap();
    check("pair full, both shut", a.as_raw_fd());

    // A regular file.
    let file = fd::open_tmp_regular_file().unwrap();
    check("regular file", file.as_raw_fd());

    // The comparisons were not vacuous: hang-ups, errors and full buffers
    // were all there.
    assert!(nonempty >= 25, "{nonempty}");
    for bits in [POLLHUP, POLLERR, POLLRDHUP] {
        assert!(
            seen_masks.iter().any(|m| m & bits as u32 != 0),
            "{bits:#x} in {seen_masks:?}"
        );
    }
    // The states select's write bitmap cannot see were met, and agreed.
    assert_eq!(
        hang_ups, 3,
        "pipe writer closed (twice), full pair shut both ways"
    );
}

#[test]
fn regular_file_is_readable_and_writable() {
    let mut p = poller();
    let file = fd::open_tmp_regular_file().unwrap();
    p.declare_interest(file.as_raw_fd(), Token(5), Interest::BOTH, Mode::Level)
        .unwrap();
    for _ in 0..3 {
        let evs = wait_steady(&mut p);
        assert_eq!(evs.len(), 1);
        let ev = evs[0];
        assert!(ev.readable && ev.writable && !ev.read_closed && !ev.write_closed && !ev.error);
    }
    p.declare_interest(file.as_raw_fd(), Token(5), Interest::READABLE, Mode::Edge)
        .unwrap();
    let evs = wait_steady(&mut p);
    assert!(evs.len() == 1 && evs[0].readable && !evs[0].writable);
    assert!(wait_steady(&mut p).is_empty());
}

#[test]
fn syscalls_per_wait() {
    let mut p = poller();
    let (r, w) = fd::pipe().unwrap();
    let (a, _b) = fd::socketpair_stream().unwrap();
    fill(&a);
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(a.as_raw_fd(), Token(2), Interest::BOTH, Mode::Level)
        .unwrap();
    // Applying a batch with a zero timeout costs nothing more.
    let (evs, d) = wait_counted(&mut p);
    assert!(evs.is_empty());
    assert_eq!((d.get(SyscallKind::Select), d.total()), (1, 1), "{d:?}");
    // Nothing ready: one select.
    for _ in 0..3 {
        let (evs, d) = wait_counted(&mut p);
        assert!(evs.is_empty());
        assert_eq!((d.get(SyscallKind::Select), d.total()), (1, 1), "{d:?}");
    }
    // Readiness: one select and one poll, however many are ready.
    fd::write(&w, b"x").unwrap();
    drain(&_b);
    for _ in 0..3 {
        let (evs, d) = wait_counted(&mut p);
        assert_eq!(tokens(&evs), [Token(1), Token(2)]);
        assert_eq!(d.get(SyscallKind::Select), 1, "{d:?}");
        assert_eq!(d.get(SyscallKind::Poll), 1, "{d:?}");
        assert_eq!(d.total(), 2, "{d:?}");
    }
    // A wait that may block, with a batch: one poll checks the fresh
    // entries first (a closed number must not block the wait).
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::BOTH, Mode::Level)
        .unwrap();
    let before = counter::snapshot();
    let mut evs = Events::with_capacity(8);
    let n = p
        .get_next_event(&mut evs, Some(Duration::from_secs(30)))
        .unwrap();
    let d = counter::snapshot() - before;
    assert_eq!(n, 2);
    assert_eq!(d.get(SyscallKind::Select), 1, "{d:?}");
    assert_eq!(d.get(SyscallKind::Poll), 2, "{d:?}");
    assert_eq!(d.total(), 3, "{d:?}");
    // Without a batch, a blocking wait costs the same as a zero one.
    let before = counter::snapshot();
    p.get_next_event(&mut evs, Some(Duration::from_secs(30)))
        .unwrap();
    let d = counter::snapshot() - before;
    assert_eq!(
        (d.get(SyscallKind::Select), d.get(SyscallKind::Poll)),
        (1, 1),
        "{d:?}"
    );
    assert_eq!(d.total(), 2, "{d:?}");
}

#[test]
fn select_false_positives_are_filtered_by_the_check() {
    // A read watch on a socket with only a pending error would be in the
    // read set (ERR is in POLLIN_SET); the check reports the exact mask.
    let (a, b) = fd::socketpair_stream().unwrap();
    fd::write(&a, b"unread").unwrap();
    drop(b);
    let mut p = poller();
    p.declare_interest(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait_steady(&mut p);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].readable && evs[0].read_closed && evs[0].error && !evs[0].writable);
}

#[test]
fn max_events_round_robin_reports_everyone() {
    const N: usize = 8;
    const CAP: usize = 3;
    let mut p = poller();
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..N).map(|_| fd::socketpair_stream().unwrap()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::WRITABLE, Mode::Level)
            .unwrap();
    }
    let all: BTreeSet<Token> = (0..N).map(Token).collect();
    let mut seen = BTreeSet::new();
    for _ in 0..N.div_ceil(CAP) {
        let evs = wait_cap(&mut p, CAP);
        assert_eq!(evs.len(), CAP);
        seen.extend(tokens(&evs));
    }
    assert_eq!(seen, all);
    let mut count: BTreeMap<Token, usize> = BTreeMap::new();
    for _ in 0..N * 4 {
        let evs = wait_cap(&mut p, CAP);
        assert_eq!(evs.len(), CAP);
        for t in tokens(&evs) {
            *count.entry(t).or_default() += 1;
        }
    }
    assert_eq!(count.keys().copied().collect::<BTreeSet<_>>(), all);
    let min = count.values().min().unwrap();
    let max = count.values().max().unwrap();
    assert!(max - min <= 1, "{count:?}");
}

#[test]
fn max_events_with_oneshot_loses_nothing() {
    const N: usize = 7;
    let mut p = poller();
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..N).map(|_| fd::socketpair_stream().unwrap()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        p.declare_interest(a.as_raw_fd(), Token(i), Interest::WRITABLE, Mode::Oneshot)
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..N {
        seen.extend(tokens(&wait_cap(&mut p, 2)));
    }
    seen.sort();
    assert_eq!(seen, (0..N).map(Token).collect::<Vec<_>>());
    assert_eq!(p.backend().entries(), 0);
}
