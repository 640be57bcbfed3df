//! Per-wait cost through the driver: the poll, epoll and superpoll backends
//! on the same descriptors.
//!
//! ```text
//! cargo run --release -p evmux-superpoll --example backends [N] [ROUNDS]
//! ```
//!
//! N socketpairs (default 1000), registered readable and level-triggered
//! with each backend. For each workload, a fixed set of descriptors has a
//! byte pending (so every wait reports the same events); each poller first
//! runs 400 warm-up waits (superpoll migrates), then rounds of 100 waits
//! per backend, interleaved and in rotating order; the figure is the median
//! per-wait time over the rounds.
//!
//! A second table re-draws readiness before every wait: descriptor i is
//! ready with probability p_i, independently (Bernoulli), so scores hover
//! around p_i and the policy sees noise. The I/O that sets the state is not
//! timed; each backend's wait on the same state is timed on its own, in
//! rotating order.
#![forbid(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use evmux_epoll::EpollBackend;
use evmux_interest::{Backend, Events, Interest, Mode, Poller, Token};
use evmux_poll::PollBackend;
use evmux_superpoll::SuperpollBackend;
use evmux_sys::fd;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn per_wait<B: Backend>(p: &mut Poller<B>, evs: &mut Events, k: u32, expect: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..k {
        let n = p.get_next_event(evs, Some(Duration::ZERO)).unwrap();
        debug_assert_eq!(n, expect);
        let _ = n;
    }
    t.elapsed().as_nanos() as f64 / f64::from(k)
}

/// Times one wait.
fn one_wait<B: Backend>(p: &mut Poller<B>, evs: &mut Events) -> f64 {
    let t = Instant::now();
    p.get_next_event(evs, Some(Duration::ZERO)).unwrap();
    t.elapsed().as_nanos() as f64
}

struct Xorshift(u64);

impl Xorshift {
    fn per_mille(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 1000
    }
}

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

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1000, |s| s.parse().unwrap());
    let rounds: usize = args.next().map_or(31, |s| s.parse().unwrap());
    let k = 100;
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..n).map(|_| fd::socketpair_stream().unwrap()).collect();
    let order = shuffled(n, 0x5eed);
    let mut active = vec![false; n];
    println!("# N = {n}, median ns per wait over {rounds} rounds of {k} waits");
    println!("active/total\tpoll\tepoll\tsuperpoll\t(hot/cold, moves)");
    for ratio in [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0] {
        let a = ((n as f64) * ratio).round() as usize;
        let mut buf = [0u8; 8];
        for (j, &i) in order.iter().enumerate() {
            let want = j < a;
            if want && !active[i] {
                fd::write(&pairs[i].1, b"x").unwrap();
            } else if !want && active[i] {
                fd::read(&pairs[i].0, &mut buf).unwrap();
            }
            active[i] = want;
        }
        // Fresh pollers per workload, so superpoll adapts from scratch.
        let mut pp = Poller::new(PollBackend::new().unwrap());
        let mut ep = Poller::new(EpollBackend::new().unwrap());
        let mut sp = Poller::new(SuperpollBackend::new().unwrap());
        for (i, (x, _)) in pairs.iter().enumerate() {
            let fd = x.as_raw_fd();
            pp.declare_interest(fd, Token(i), Interest::READABLE, Mode::Level)
                .unwrap();
            ep.declare_interest(fd, Token(i), Interest::READABLE, Mode::Level)
                .unwrap();
            sp.declare_interest(fd, Token(i), Interest::READABLE, Mode::Level)
                .unwrap();
        }
        let mut evs = Events::with_capacity(n + 8);
        per_wait(&mut pp, &mut evs, 400, a);
        per_wait(&mut ep, &mut evs, 400, a);
        per_wait(&mut sp, &mut evs, 400, a);
        let (mut tp, mut te, mut ts) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            for which in 0..3 {
                match (which + round) % 3 {
                    0 => tp.push(per_wait(&mut pp, &mut evs, k, a)),
                    1 => te.push(per_wait(&mut ep, &mut evs, k, a)),
                    _ => ts.push(per_wait(&mut sp, &mut evs, k, a)),
                }
            }
        }
        let s = sp.backend().stats();
        println!(
            "{ratio:.2}\t\t{:.0}\t{:.0}\t{:.0}\t\t({}/{}, +{} -{})",
            median(&mut tp),
            median(&mut te),
            median(&mut ts),
            s.hot,
            s.cold,
            s.promotions,
            s.demotions
        );
    }

    // Bernoulli workloads: (name, per-mille readiness per descriptor).
    println!("# re-drawn before every wait; median ns per wait over {rounds} rounds of 50 waits");
    println!("workload\t\tpoll\tepoll\tsuperpoll\t(hot/cold, moves)");
    let workloads: Vec<(String, Vec<u64>)> = {
        let mut w: Vec<(String, Vec<u64>)> = [100u64, 300, 500, 600, 700, 900]
            .iter()
            .map(|&p| (format!("all p={:.1}", p as f64 / 1000.0), vec![p; n]))
            .collect();
        // A fifth of them busy, the rest mostly idle.
        let mixed: Vec<u64> = (0..n)
            .map(|i| if order[i] < n / 5 { 950 } else { 20 })
            .collect();
        w.push(("20% p=.95, rest .02".to_string(), mixed));
        w
    };
    let mut rng = Xorshift(0x1234_5678_9abc_def1);
    for (name, probs) in &workloads {
        let mut pp = Poller::new(PollBackend::new().unwrap());
        let mut ep = Poller::new(EpollBackend::new().unwrap());
        let mut sp = Poller::new(SuperpollBackend::new().unwrap());
        for (i, (x, _)) in pairs.iter().enumerate() {
            let fd = x.as_raw_fd();
            pp.declare_interest(fd, Token(i), Interest::READABLE, Mode::Level)
                .unwrap();
            ep.declare_interest(fd, Token(i), Interest::READABLE, Mode::Level)
                .unwrap();
            sp.declare_interest(fd, Token(i), Interest::READABLE, Mode::Level)
                .unwrap();
        }
        let mut evs = Events::with_capacity(n + 8);
        let mut buf = [0u8; 8];
        let mut redraw = |active: &mut Vec<bool>| {
            for i in 0..n {
                let want = rng.per_mille() < probs[i];
                if want && !active[i] {
                    fd::write(&pairs[i].1, b"x").unwrap();
                } else if !want && active[i] {
                    fd::read(&pairs[i].0, &mut buf).unwrap();
                }
                active[i] = want;
            }
        };
        for _ in 0..200 {
            redraw(&mut active);
            one_wait(&mut pp, &mut evs);
            one_wait(&mut ep, &mut evs);
            one_wait(&mut sp, &mut evs);
        }
        let (mut tp, mut te, mut ts) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
            for step in 0..50 {
                redraw(&mut active);
                for which in 0..3 {
                    match (which + step + round) % 3 {
                        0 => a += one_wait(&mut pp, &mut evs),
                        1 => b += one_wait(&mut ep, &mut evs),
                        _ => c += one_wait(&mut sp, &mut evs),
                    }
                }
            }
            tp.push(a / 50.0);
            te.push(b / 50.0);
            ts.push(c / 50.0);
        }
        let s = sp.backend().stats();
        println!(
            "{name:<20}\t{:.0}\t{:.0}\t{:.0}\t\t({}/{}, +{} -{})",
            median(&mut tp),
            median(&mut te),
            median(&mut ts),
            s.hot,
            s.cold,
            s.promotions,
            s.demotions
        );
    }
}
