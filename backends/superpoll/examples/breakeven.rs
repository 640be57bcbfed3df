//! Measures where poll(2) and epoll(7) break even on this machine, for the
//! defaults of `SuperpollConfig`.
//!
//! ```text
//! cargo run --release -p evmux-superpoll --example breakeven [N] [ROUNDS]
//! ```
//!
//! N socketpairs (default 1000); for each active/total ratio, A of them have
//! one byte pending (level readiness, so every wait reports the same A).
//! Each round times a batch of `poll(all N, 0)` calls and a batch of
//! `epoll_wait(all N registered, 0)` calls, the order alternating by round;
//! the figure per ratio is the median per-call time over the rounds. Also
//! measured: the fixed costs (an `epoll_wait` finding nothing, a `poll` of
//! one descriptor), `epoll_ctl(MOD)`, and the superpoll wait shape (a poll
//! of the hot half plus the epoll descriptor, then an `epoll_wait` of the
//! cold half).
//!
//! That first curve holds readiness still: an epoll ready event costs one
//! re-check of the item and a copy. The last table moves it, as the chain
//! benchmark (libevent's `bench.c`) and most servers do: A tokens, evenly
//! spaced, each wait reads one byte from every reported pair and sends it
//! on to the next pair. The I/O is the same in both loops and is timed
//! with them, so the difference is the mechanism's, and it now includes
//! what epoll pays for a moving readiness: the wake-up callback that each
//! send runs for an item in an epoll set, and the re-check that finds the
//! emptied item no longer ready at the next wait. Every pair is ready once
//! every 1/ratio waits, so the crossing is the break-even of a descriptor's
//! ready probability, the quantity superpoll's scores estimate.
#![forbid(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use evmux_sys::epoll::{Epoll, EpollEvent, flags};
use evmux_sys::fd;
use evmux_sys::poll::{POLLIN, POLLRDHUP, PollFd, poll};

const ZERO: Option<Duration> = Some(Duration::ZERO);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn quartiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 4], v[v.len() * 3 / 4])
}

/// Nanoseconds per call of `f`, over `k` calls.
fn time_per_call(k: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..k {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(k)
}

/// A deterministic permutation of 0..n (xorshift Fisher-Yates).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

struct Rig {
    pairs: Vec<(OwnedFd, OwnedFd)>,
    /// Which pairs currently have a byte pending.
    active: Vec<bool>,
}

impl Rig {
    fn new(n: usize) -> Rig {
        let pairs = (0..n).map(|_| fd::socketpair_stream().unwrap()).collect();
        Rig {
            pairs,
            active: vec![false; n],
        }
    }

    /// Makes exactly the pairs in `order[..a]` readable.
    fn set_active(&mut self, order: &[usize], a: usize) {
        let mut want = vec![false; self.pairs.len()];
        for &i in &order[..a] {
            want[i] = true;
        }
        let mut buf = [0u8; 16];
        for (i, (&w, is)) in want.iter().zip(self.active.iter_mut()).enumerate() {
            if w && !*is {
                fd::write(&self.pairs[i].1, b"x").unwrap();
            } else if !w && *is {
                fd::read(&self.pairs[i].0, &mut buf).unwrap();
            }
            *is = w;
        }
    }
}

/// Drains every pair, then puts one byte in `a` evenly spaced pairs.
fn place_tokens(pairs: &[(OwnedFd, OwnedFd)], a: usize) {
    let mut buf = [0u8; 64];
    for (r, _) in pairs {
        while let Ok(1..) = fd::read(r, &mut buf) {}
    }
    let n = pairs.len();
    for t in 0..a {
        fd::write(&pairs[t * n / a].1, b"x").unwrap();
    }
}

/// Reads the byte of pair `i` and sends it on to the next pair.
fn forward(pairs: &[(OwnedFd, OwnedFd)], i: usize) {
    let mut b = [0u8; 1];
    let _ = fd::read(&pairs[i].0, &mut b);
    let next = if i + 1 == pairs.len() { 0 } else { i + 1 };
    fd::write(&pairs[next].1, b"x").unwrap();
}

/// The chain shape with moving readiness: ns per wait of `k` waits of a
/// poll loop over every pair, I/O included.
fn chain_poll(pairs: &[(OwnedFd, OwnedFd)], pfds: &mut [PollFd], k: u32) -> f64 {
    time_per_call(k, || {
        let mut left = poll(pfds, ZERO).unwrap();
        for (i, p) in pfds.iter().enumerate() {
            if left == 0 {
                break;
            }
            if p.revents != 0 {
                left -= 1;
                forward(pairs, i);
            }
        }
    })
}

/// As [`chain_poll`], with an epoll set over every pair, created for the
/// run (untimed) so that no epoll item exists while the poll loop runs.
fn chain_epoll(pairs: &[(OwnedFd, OwnedFd)], buf: &mut Vec<EpollEvent>, k: u32) -> f64 {
    let ep = Epoll::new().unwrap();
    for (i, (a, _)) in pairs.iter().enumerate() {
        ep.add(a.as_fd(), flags::EPOLLIN | flags::EPOLLRDHUP, i as u64)
            .unwrap();
    }
    let n = pairs.len();
    time_per_call(k, || {
        let got = ep.wait_max(buf, n, ZERO).unwrap();
        for e in &buf[..got] {
            forward(pairs, e.data() as usize);
        }
    })
}

/// Linear crossing of the two medians: the first ratio at which epoll
/// becomes dearer than poll.
fn crossing(curve: &[(f64, f64, f64)]) -> Option<f64> {
    curve.windows(2).find_map(|w| {
        let (r0, p0, e0) = w[0];
        let (r1, p1, e1) = w[1];
        (e0 <= p0 && e1 > p1).then(|| {
            let d0 = p0 - e0;
            let d1 = e1 - p1;
            r0 + (r1 - r0) * d0 / (d0 + d1)
        })
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1000, |s| s.parse().unwrap());
    let rounds: usize = args.next().map_or(41, |s| s.parse().unwrap());
    let k: u32 = 200;
    let mut rig = Rig::new(n);
    let order = shuffled(n, 0x9e37_79b9);

    // poll array over all N; epoll set over all N.
    let mut pfds: Vec<PollFd> = rig
        .pairs
        .iter()
        .map(|(a, _)| PollFd::new(a.as_raw_fd(), POLLIN | POLLRDHUP))
        .collect();
    let ep = Epoll::new().unwrap();
    for (i, (a, _)) in rig.pairs.iter().enumerate() {
        ep.add(a.as_fd(), flags::EPOLLIN | flags::EPOLLRDHUP, i as u64)
            .unwrap();
    }
    let mut buf: Vec<EpollEvent> = Vec::with_capacity(n);

    println!("# N = {n}, {rounds} rounds x {k} calls, median ns per wait (IQR)");
    println!("ratio\tA\tpoll_ns\t\tepoll_ns\tepoll/poll");
    let ratios = [
        0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    ];
    let mut curve = Vec::new();
    for &r in &ratios {
        let a = ((n as f64) * r).round() as usize;
        rig.set_active(&order, a);
        let mut tp = Vec::with_capacity(rounds);
        let mut te = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let mut do_poll = || {
                time_per_call(k, || {
                    let got = poll(&mut pfds, ZERO).unwrap();
                    debug_assert_eq!(got, a);
                })
            };
            let mut do_epoll = || {
                time_per_call(k, || {
                    let got = ep.wait_max(&mut buf, n, ZERO).unwrap();
                    debug_assert_eq!(got, a);
                })
            };
            if round % 2 == 0 {
                tp.push(do_poll());
                te.push(do_epoll());
            } else {
                te.push(do_epoll());
                tp.push(do_poll());
            }
        }
        let (pq1, pq3) = quartiles(&mut tp);
        let (eq1, eq3) = quartiles(&mut te);
        let (mp, me) = (median(&mut tp), median(&mut te));
        println!(
            "{r:.2}\t{a}\t{mp:.0} ({pq1:.0}-{pq3:.0})\t{me:.0} ({eq1:.0}-{eq3:.0})\t{:.2}",
            me / mp
        );
        curve.push((r, mp, me));
    }
    match crossing(&curve) {
        Some(x) => println!("# break-even active/total ~ {x:.2}"),
        None => println!("# no crossing in the measured range"),
    }

    // Fixed costs and epoll_ctl.
    rig.set_active(&order, 0);
    let single = &rig.pairs[0].0;
    let mut one = [PollFd::new(single.as_raw_fd(), POLLIN | POLLRDHUP)];
    let ep_one = Epoll::new().unwrap();
    ep_one
        .add(single.as_fd(), flags::EPOLLIN | flags::EPOLLRDHUP, 0)
        .unwrap();
    // epoll_ctl is timed on its own instance: flipping EPOLLOUT on a
    // writable socket would leave `ep_one` with a ready item.
    let ep_ctl = Epoll::new().unwrap();
    ep_ctl
        .add(single.as_fd(), flags::EPOLLIN | flags::EPOLLRDHUP, 0)
        .unwrap();
    let (mut t_poll1, mut t_ew0, mut t_ctl, mut t_pollall0) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut flip = false;
    for _ in 0..rounds {
        t_poll1.push(time_per_call(k, || {
            poll(&mut one, ZERO).unwrap();
        }));
        t_ew0.push(time_per_call(k, || {
            ep_one.wait_max(&mut buf, 1, ZERO).unwrap();
        }));
        t_ctl.push(time_per_call(k, || {
            flip = !flip;
            let f = if flip {
                flags::EPOLLIN | flags::EPOLLRDHUP
            } else {
                flags::EPOLLIN | flags::EPOLLRDHUP | flags::EPOLLOUT
            };
            ep_ctl.modify(single.as_fd(), f, 0).unwrap();
        }));
        t_pollall0.push(time_per_call(k, || {
            poll(&mut pfds, ZERO).unwrap();
        }));
    }
    let poll1 = median(&mut t_poll1);
    let ew0 = median(&mut t_ew0);
    let ctl = median(&mut t_ctl);
    let pollall0 = median(&mut t_pollall0);
    let per_entry = (pollall0 - poll1) / (n as f64 - 1.0);
    println!("# poll of 1 idle fd: {poll1:.0} ns");
    println!("# poll of {n} idle fds: {pollall0:.0} ns -> {per_entry:.1} ns per idle entry");
    println!("# epoll_wait, nothing ready: {ew0:.0} ns");
    println!("# epoll_ctl(MOD): {ctl:.0} ns");
    let (_, p_all, e_all) = curve[curve.len() - 1];
    let (_, _, e_none) = curve[0];
    let per_event = (e_all - e_none) / n as f64;
    let per_ready_poll = (p_all - pollall0) / n as f64;
    println!(
        "# epoll per ready event: {per_event:.1} ns; poll extra per ready entry: {per_ready_poll:.1} ns"
    );
    println!(
        "# epoll_wait fixed cost in poll entries (E): {:.1}",
        ew0 / per_entry
    );
    println!(
        "# epoll_ctl in poll entries: {:.1}; in epoll events: {:.1}",
        ctl / per_entry,
        ctl / per_event
    );

    // The superpoll shape at a fixed total: H hot (all active), C = N - H
    // cold of which `ca` active; poll(hot + epoll fd) then epoll_wait if
    // the epoll fd is readable. Compared with plain poll and plain epoll.
    println!("# superpoll shape, N = {n}: hot all active, cold mostly idle");
    println!("hot\tcold_active\tpoll_ns\tepoll_ns\tsuperpoll_ns");
    for &(h, ca) in &[
        (0usize, 0usize),
        (10, 0),
        (50, 0),
        (100, 0),
        (100, 1),
        (100, 10),
        (300, 0),
        (300, 10),
    ] {
        if h + ca > n {
            continue;
        }
        // Active: the first h + ca of `order`; hot = the first h of them.
        rig.set_active(&order, h + ca);
        let hot: Vec<usize> = order[..h].to_vec();
        let cold: Vec<usize> = order[h..].to_vec();
        let sp_ep = Epoll::new().unwrap();
        for &i in &cold {
            sp_ep
                .add(
                    rig.pairs[i].0.as_fd(),
                    flags::EPOLLIN | flags::EPOLLRDHUP,
                    i as u64,
                )
                .unwrap();
        }
        let mut sp_fds: Vec<PollFd> = vec![PollFd::new(sp_ep.as_raw_fd(), POLLIN)];
        sp_fds.extend(
            hot.iter()
                .map(|&i| PollFd::new(rig.pairs[i].0.as_raw_fd(), POLLIN | POLLRDHUP)),
        );
        let (mut tp, mut te, mut ts) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut runs: [(u8, f64); 3] = [(0, 0.0), (1, 0.0), (2, 0.0)];
            runs.rotate_left(round % 3);
            for run in &mut runs {
                run.1 = match run.0 {
                    0 => time_per_call(k, || {
                        poll(&mut pfds, ZERO).unwrap();
                    }),
                    1 => time_per_call(k, || {
                        ep.wait_max(&mut buf, n, ZERO).unwrap();
                    }),
                    _ => time_per_call(k, || {
                        poll(&mut sp_fds, ZERO).unwrap();
                        if sp_fds[0].revents != 0 {
                            sp_ep.wait_max(&mut buf, n, ZERO).unwrap();
                        }
                    }),
                };
            }
            for (which, t) in runs {
                match which {
                    0 => tp.push(t),
                    1 => te.push(t),
                    _ => ts.push(t),
                }
            }
        }
        println!(
            "{h}\t{ca}\t\t{:.0}\t{:.0}\t\t{:.0}",
            median(&mut tp),
            median(&mut te),
            median(&mut ts)
        );
    }

    // Moving readiness: the chain shape (see the top of the file). No other
    // epoll set may watch the pairs now: each send would run its callback.
    drop((ep, ep_one, ep_ctl));
    let k_chain: u32 = 50;
    println!(
        "# moving readiness (chain shape, I/O timed in both), {rounds} rounds x {k_chain} waits, median ns per wait"
    );
    println!("ratio\tA\tpoll_ns\t\tepoll_ns\tepoll/poll");
    let mut curve = Vec::new();
    for &r in &[
        0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0,
    ] {
        let a = ((n as f64) * r).round().max(1.0) as usize;
        let (mut tp, mut te) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
        for round in 0..rounds {
            if round % 2 == 0 {
                place_tokens(&rig.pairs, a);
                tp.push(chain_poll(&rig.pairs, &mut pfds, k_chain));
                place_tokens(&rig.pairs, a);
                te.push(chain_epoll(&rig.pairs, &mut buf, k_chain));
            } else {
                place_tokens(&rig.pairs, a);
                te.push(chain_epoll(&rig.pairs, &mut buf, k_chain));
                place_tokens(&rig.pairs, a);
                tp.push(chain_poll(&rig.pairs, &mut pfds, k_chain));
            }
        }
        let (pq1, pq3) = quartiles(&mut tp);
        let (eq1, eq3) = quartiles(&mut te);
        let (mp, me) = (median(&mut tp), median(&mut te));
        println!(
            "{r:.2}\t{a}\t{mp:.0} ({pq1:.0}-{pq3:.0})\t{me:.0} ({eq1:.0}-{eq3:.0})\t{:.2}",
            me / mp
        );
        curve.push((r, mp, me));
    }
    match crossing(&curve) {
        Some(x) => println!("# break-even ready probability, moving readiness ~ {x:.2}"),
        None => println!("# no crossing in the measured range"),
    }
    place_tokens(&rig.pairs, 0);
}
