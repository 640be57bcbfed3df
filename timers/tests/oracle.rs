//! Property test: `TimerWheel` against a `BTreeMap<(deadline, seq), id>`
//! oracle.
//!
//! Random sequences of insert / cancel / reset / advance, with time steps
//! and deadlines from 0 ms to far beyond the wheel's range (plus past
//! deadlines and `u64::MAX`), must expire exactly what the oracle expires,
//! at the same advance call, in the same order. `next_deadline()` is
//! checked against the oracle's minimum after every operation.
//!
//! `EVMUX_PROPTEST_CASES` overrides the number of cases (default 10,000).

use std::collections::{BTreeMap, HashMap, HashSet};

use evmux_timers::{TimerKey, TimerWheel, WHEEL_RANGE};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError};

fn cases() -> u32 {
    std::env::var("EVMUX_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(10_000)
}

fn config() -> Config {
    Config {
        // Never write regression files into the source tree.
        failure_persistence: None,
        // ChaCha dominates the run time in unoptimised test builds.
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::with_cases(cases())
    }
}

/// A deadline relative to the wheel's clock at the time of the operation.
#[derive(Debug, Clone)]
enum When {
    /// `now + d`, saturating.
    Ahead(u64),
    /// `now - d`, saturating: a deadline in the past (or `now` itself).
    Past(u64),
    /// `u64::MAX`.
    Max,
}

/// How far an advance goes.
#[derive(Debug, Clone)]
enum Step {
    /// `now + d`, saturating.
    By(u64),
    /// To `next_deadline()` (no-op if there is none).
    ToNextDeadline,
    /// To `next_deadline() - 1`: must never fire anything but due timers.
    JustBefore,
    /// Backwards: must be treated as `now`.
    Back(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Insert(When),
    /// Index (modulo) into every key ever issued, so stale keys are used too.
    Cancel(usize),
    Reset(usize, When),
    Advance(Step),
}

/// The low `bits` bits of `r`: log-uniform when `bits` is uniform, so every
/// level of the wheel is hit about equally often.
fn low_bits(r: u64, bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        r & (u64::MAX >> (64 - bits.min(64)))
    }
}

fn decode_when(sel: u8, bits: u32, r: u64) -> When {
    match sel % 18 {
        0..=11 => When::Ahead(low_bits(r, bits)), // all levels and beyond range
        12..=14 => When::Ahead(r % 200),          // crowded near future: ties
        15 | 16 => When::Past(low_bits(r, bits.min(24))),
        _ => When::Max,
    }
}

fn decode_step(sel: u8, bits: u32, r: u64) -> Step {
    match sel % 14 {
        0..=3 => Step::By(r % 70),
        4..=7 => Step::By(low_bits(r, bits)), // up to ~550 years
        8..=10 => Step::ToNextDeadline,
        11 | 12 => Step::JustBefore,
        _ => Step::Back(1 + r % 999),
    }
}

/// Ops are generated from a flat tuple of integers and decoded: nested
/// `prop_oneof!` value trees make unoptimised test builds several times
/// slower, for the same distribution.
fn op(with_cancel: bool) -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        any::<u8>(),
        0u32..=44,
        any::<u64>(),
        any::<usize>(),
    )
        .prop_map(move |(kind, sel, bits, r, index)| {
            let kind = if with_cancel {
                kind % 13
            } else {
                [0, 9][usize::from(kind % 2)]
            };
            match kind {
                0..=4 => Op::Insert(decode_when(sel, bits, r)),
                5 | 6 => Op::Cancel(index),
                7 | 8 => Op::Reset(index, decode_when(sel, bits, r)),
                _ => Op::Advance(decode_step(sel, bits, r)),
            }
        })
}

fn start() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0..(1u64 << 40),
        // Just before an epoch boundary.
        (1u64..1 << 20).prop_map(|d| 7 * WHEEL_RANGE - d),
        // Near the end of time: deadlines saturate at u64::MAX.
        (1u64 << 30..1 << 46).prop_map(|d| u64::MAX - d),
    ]
}

/// The reference model.
struct Oracle {
    now: u64,
    seq: u64,
    /// Pending timers in expiry order.
    queue: BTreeMap<(u64, u64), usize>,
    /// Timer id → its queue key.
    live: HashMap<usize, (u64, u64)>,
}

impl Oracle {
    fn resolve(&self, w: &When) -> u64 {
        match *w {
            When::Ahead(d) => self.now.saturating_add(d),
            When::Past(d) => self.now.saturating_sub(d),
            When::Max => u64::MAX,
        }
    }

    fn insert(&mut self, id: usize, deadline: u64) {
        let k = (deadline, self.seq);
        self.seq += 1;
        self.queue.insert(k, id);
        self.live.insert(id, k);
    }

    fn remove(&mut self, id: usize) -> bool {
        match self.live.remove(&id) {
            Some(k) => {
                self.queue.remove(&k);
                true
            }
            None => false,
        }
    }

    fn advance(&mut self, to: u64) -> Vec<usize> {
        self.now = self.now.max(to);
        let mut out = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let id = entry.remove();
            self.live.remove(&id);
            out.push(id);
        }
        out
    }

    fn min(&self) -> Option<u64> {
        self.queue.keys().next().map(|k| k.0)
    }
}

fn run(start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut wheel: TimerWheel<usize> = TimerWheel::with_start(start);
    let mut oracle = Oracle {
        now: start,
        seq: 0,
        queue: BTreeMap::new(),
        live: HashMap::new(),
    };
    let mut keys: Vec<TimerKey> = Vec::new();
    let mut issued: HashSet<TimerKey> = HashSet::new();
    // `next_deadline` is exact unless the earliest timer of a coarse slot
    // was cancelled or reset; that can only have happened if a cancel or
    // reset succeeded since the wheel was last empty.
    let mut exact = true;

    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Insert(w) => {
                let deadline = oracle.resolve(w);
                let id = keys.len();
                let key = wheel.insert(deadline, id);
                prop_assert!(issued.insert(key), "op {n}: key {key:?} issued twice");
                keys.push(key);
                oracle.insert(id, deadline);
            }
            Op::Cancel(i) => {
                if keys.is_empty() {
                    continue;
                }
                let id = i % keys.len();
                let got = wheel.cancel(keys[id]);
                let expected = oracle.remove(id).then_some(id);
                prop_assert_eq!(got, expected, "op {}: cancel", n);
                exact &= got.is_none();
            }
            Op::Reset(i, w) => {
                if keys.is_empty() {
                    continue;
                }
                let id = i % keys.len();
                let deadline = oracle.resolve(w);
                let got = wheel.reset(keys[id], deadline);
                let expected = oracle.remove(id);
                if expected {
                    oracle.insert(id, deadline);
                }
                prop_assert_eq!(got, expected, "op {}: reset", n);
                exact &= !got;
            }
            Op::Advance(step) => {
                let now = oracle.now;
                let nd = wheel.next_deadline();
                let to = match *step {
                    Step::By(d) => now.saturating_add(d),
                    Step::ToNextDeadline => nd.unwrap_or(now),
                    Step::JustBefore => nd.map_or(now, |d| d.saturating_sub(1)),
                    Step::Back(d) => now.saturating_sub(d),
                };
                let got: Vec<(TimerKey, usize)> = wheel.advance(to).collect();
                let expected = oracle.advance(to);
                let got_ids: Vec<usize> = got.iter().map(|&(_, id)| id).collect();
                prop_assert_eq!(&got_ids, &expected, "op {}: advance to {}", n, to);
                for &(key, id) in &got {
                    prop_assert_eq!(key, keys[id], "op {}: yielded key", n);
                }
                prop_assert_eq!(wheel.now(), oracle.now);
                // Advancing to a reported deadline either fires something or
                // moves the reported deadline strictly forward.
                if let (Step::ToNextDeadline, Some(d)) = (step, nd)
                    && got.is_empty()
                {
                    prop_assert!(wheel.next_deadline().is_none_or(|e| e > d));
                }
            }
        }

        prop_assert_eq!(wheel.len(), oracle.live.len(), "op {}: len", n);
        prop_assert_eq!(wheel.is_empty(), oracle.live.is_empty());
        if oracle.live.is_empty() {
            exact = true;
        }
        let nd = wheel.next_deadline();
        match (nd, oracle.min()) {
            (None, None) => {}
            (Some(nd), Some(min)) => {
                let now = oracle.now;
                prop_assert!(nd <= min, "op {n}: next_deadline {nd} > earliest {min}");
                // Exact when nothing was cancelled, when timers are due, and
                // when the earliest timer is in the current 64 ms block
                // (level 0); otherwise still later than now.
                if exact || min <= now || min >> 6 == now >> 6 {
                    prop_assert_eq!(nd, min, "op {}: next_deadline not exact", n);
                } else {
                    prop_assert!(
                        nd > now,
                        "op {n}: next_deadline {nd} <= now {now}, nothing due"
                    );
                }
            }
            (nd, min) => prop_assert!(false, "op {n}: next_deadline {nd:?}, oracle min {min:?}"),
        }
    }

    // Every key, live or stale, answers lookups like the oracle.
    for (id, &key) in keys.iter().enumerate() {
        let deadline = oracle.live.get(&id).map(|k| k.0);
        prop_assert_eq!(wheel.deadline(key), deadline);
        prop_assert_eq!(wheel.get(key).copied(), deadline.map(|_| id));
    }
    // Finally everything fires, in oracle order.
    let got: Vec<usize> = wheel.advance(u64::MAX).map(|(_, id)| id).collect();
    prop_assert_eq!(got, oracle.advance(u64::MAX));
    prop_assert!(wheel.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn wheel_matches_btreemap_oracle(
        start in start(),
        ops in prop::collection::vec(op(true), 1..64),
    ) {
        run(start, &ops)?;
    }

    #[test]
    fn next_deadline_is_exact_without_cancellation(
        start in start(),
        ops in prop::collection::vec(op(false), 1..48),
    ) {
        run(start, &ops)?;
    }
}
