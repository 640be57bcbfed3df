//! Descriptor reuse at scale (issue #8, item 5): on every backend, a
//! bounded number of cycles of *forget, close, reopen at the same number,
//! declare*, with events in flight, and not one event with a stale token.
//!
//! 32 Unix socket pairs; the program watches one end of each for reading.
//! A cycle picks a pair (xorshift, fixed seed) and:
//! 1. writes a byte into the peer, so the watched file is readable and the
//!    kernel has a report for the old registration in flight (epoll's
//!    ready list, io_uring's completion queue);
//! 2. forgets the old token;
//! 3. closes the watched file and opens a new pair whose first end takes
//!    the same number (`dup3` over it, which closes the old file: atomic,
//!    so that test threads opening descriptors cannot take the number);
//! 4. declares the number again under a new, never used token, in a random
//!    mode (level, edge, oneshot), and writes a byte into the new peer half
//!    of the time.
//!
//! Every 1 to 8 cycles (random), a zero-timeout wait. Its events must be
//! exactly the pairs holding unread bytes: an event whose token is not live
//! is **stale**; an event for a live token whose file holds nothing is
//! **spurious** (an old file's readiness under the new token); a pair with
//! bytes and no event is **missing**. Each reported pair is drained (and
//! re-armed: `would_block` for edge, a declaration for oneshot).
//!
//! Cycles: `EVMUX_REUSE_CYCLES`, default 1,000,000 in release builds and
//! 100,000 in debug builds (run the full count with
//! `cargo test --release -p evmux-testkit --test fd_reuse_scale`).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use evmux_interest::{Backend, Events, Interest, Mode, Poller, Token};
use evmux_sys::fd as sysfd;
use evmux_testkit::conformance;

const PAIRS: usize = 32;

struct Pair {
    /// The watched end (its number never changes).
    watched: OwnedFd,
    peer: OwnedFd,
    token: Token,
    mode: Mode,
    /// Bytes written into the peer and not read yet.
    unread: usize,
}

#[derive(Debug, Default)]
struct Tally {
    cycles: u64,
    waits: u64,
    events: u64,
    stale: u64,
    spurious: u64,
    missing: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn mode_of(x: u64) -> Mode {
    match x % 3 {
        0 => Mode::Level,
        1 => Mode::Edge,
        _ => Mode::Oneshot,
    }
}

fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 256];
    loop {
        match sysfd::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn write_one(fd: &OwnedFd) {
    let n = sysfd::send(fd, b"x").expect("send");
    assert_eq!(n, 1);
}

fn cycles() -> u64 {
    std::env::var("EVMUX_REUSE_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            100_000
        } else {
            1_000_000
        })
}

fn run<B: Backend>(poller: &mut Poller<B>, cycles: u64, seed: u64) -> Tally {
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut next_token = 0usize;
    let mut live: HashMap<Token, usize> = HashMap::new();
    let mut pairs: Vec<Pair> = Vec::with_capacity(PAIRS);
    for i in 0..PAIRS {
        let (a, b) = sysfd::socketpair_stream().expect("socketpair");
        let token = Token(next_token);
        next_token += 1;
        let mode = mode_of(rng.next());
        poller
            .declare_interest(a.as_raw_fd(), token, Interest::READABLE, mode)
            .expect("declare");
        live.insert(token, i);
        pairs.push(Pair {
            watched: a,
            peer: b,
            token,
            mode,
            unread: 0,
        });
    }
    // A small buffer leaves readiness queued in the kernel (and in the
    // driver's overflow queue) across the next cycles: events in flight.
    let mut big = Events::with_capacity(2 * PAIRS);
    let mut small = Events::with_capacity(4);
    let mut until_wait = 1 + rng.below(8);
    let mut wait = |poller: &mut Poller<B>,
                    pairs: &mut [Pair],
                    live: &HashMap<Token, usize>,
                    tally: &mut Tally,
                    use_small: bool| {
        let events = if use_small { &mut small } else { &mut big };
        poller
            .get_next_event(events, Some(Duration::ZERO))
            .expect("wait");
        let full = events.len() == events.capacity();
        tally.waits += 1;
        let mut reported = [false; PAIRS];
        for ev in events.iter() {
            tally.events += 1;
            let Some(&i) = live.get(&ev.token) else {
                tally.stale += 1;
                continue;
            };
            if !ev.readable || pairs[i].unread == 0 {
                tally.spurious += 1;
                continue;
            }
            reported[i] = true;
        }
        for (i, p) in pairs.iter_mut().enumerate() {
            if p.unread > 0 && !reported[i] && !full {
                tally.missing += 1;
            }
            if reported[i] {
                drain(&p.watched);
                p.unread = 0;
                match p.mode {
                    Mode::Level => {}
                    Mode::Edge => poller
                        .would_block(p.token, Interest::READABLE)
                        .expect("would_block"),
                    Mode::Oneshot => poller
                        .declare_interest(
                            p.watched.as_raw_fd(),
                            p.token,
                            Interest::READABLE,
                            p.mode,
                        )
                        .expect("re-declare"),
                }
            }
        }
    };
    for _ in 0..cycles {
        let i = rng.below(PAIRS as u64) as usize;
        let r = rng.next();
        let p = &mut pairs[i];
        // 1. An event in flight for the old registration.
        write_one(&p.peer);
        // 2. Forget.
        poller.forget(p.token).expect("forget");
        live.remove(&p.token);
        // 3. Close and reopen at the same number.
        let number: RawFd = p.watched.as_raw_fd();
        let (na, nb) = sysfd::socketpair_stream().expect("socketpair");
        let old = std::mem::replace(&mut p.watched, na);
        let reused = sysfd::dup_onto(p.watched.as_fd(), old).expect("dup3");
        assert_eq!(reused.as_raw_fd(), number);
        p.watched = reused; // drops the temporary number of the new end
        p.peer = nb;
        p.unread = 0;
        // 4. Declare under a new token.
        p.token = Token(next_token);
        next_token += 1;
        p.mode = mode_of(r);
        poller
            .declare_interest(number, p.token, Interest::READABLE, p.mode)
            .expect("declare");
        live.insert(p.token, i);
        if r & 8 != 0 {
            write_one(&p.peer);
            p.unread = 1;
        }
        tally.cycles += 1;
        until_wait -= 1;
        if until_wait == 0 {
            until_wait = 1 + rng.below(8);
            let use_small = rng.below(4) == 0;
            wait(poller, &mut pairs, &live, &mut tally, use_small);
        }
    }
    // Until everything was reported.
    for _ in 0..PAIRS {
        wait(poller, &mut pairs, &live, &mut tally, false);
    }
    tally
}

fn reuse_at_scale(name: &str) {
    let specs = conformance::backends_from_env().expect("EVMUX_BACKEND names a backend");
    let Some(spec) = specs.into_iter().find(|s| s.name == name) else {
        eprintln!("{name}: not selected by EVMUX_BACKEND, skipped");
        return;
    };
    let Ok(make) = spec.make else {
        eprintln!("{name}: not available here, skipped");
        return;
    };
    let mut poller = Poller::new(make().expect("backend"));
    let n = cycles();
    let t0 = Instant::now();
    let seed = name
        .bytes()
        .fold(0x5EED_F00D_u64, |h, b| h.rotate_left(7) ^ u64::from(b));
    let tally = run(&mut poller, n, seed);
    let took = t0.elapsed();
    eprintln!(
        "{name}: {} cycles, {} waits, {} events in {took:.2?} ({:.2} µs/cycle); \
         stale {}, spurious {}, missing {}",
        tally.cycles,
        tally.waits,
        tally.events,
        took.as_secs_f64() * 1e6 / tally.cycles.max(1) as f64,
        tally.stale,
        tally.spurious,
        tally.missing,
    );
    assert_eq!(tally.cycles, n);
    assert_eq!(tally.stale, 0, "{name}: events with a stale token");
    assert_eq!(
        tally.spurious, 0,
        "{name}: readiness of a closed file under a new token"
    );
    assert_eq!(tally.missing, 0, "{name}: readable pairs not reported");
}

#[test]
fn fd_reuse_epoll() {
    reuse_at_scale("epoll");
}

#[test]
fn fd_reuse_poll() {
    reuse_at_scale("poll");
}

#[test]
fn fd_reuse_select() {
    reuse_at_scale("select");
}

#[test]
fn fd_reuse_uring() {
    reuse_at_scale("uring");
}

#[test]
fn fd_reuse_superpoll() {
    reuse_at_scale("superpoll");
}
