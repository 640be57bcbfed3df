//! `evmux_timers::TimerWheel` against a `BTreeMap<(deadline, seq), id>`
//! oracle.
//!
//! The input decodes into a start time and a sequence of insert, cancel,
//! reset, advance (whole or stopped early), lookup and clone operations,
//! with deadlines from the past to far beyond the wheel's range and
//! `u64::MAX`. The wheel must expire exactly what the oracle expires, at
//! the same advance, in the same order: deadline order, FIFO among equal
//! deadlines, a reset counting as a fresh insertion, deadlines in the past
//! firing on the next advance. `next_deadline` is never later than the
//! earliest deadline, exact unless a cancel or reset happened since the
//! wheel was last empty, and otherwise still later than `now` when nothing
//! is due. (The same rules as `timers/tests/oracle.rs`.)
#![no_main]

use std::collections::{BTreeMap, HashMap, HashSet};

use evmux_timers::{TimerKey, TimerWheel, WHEEL_RANGE};
use libfuzzer_sys::fuzz_target;

/// Operations per input.
const MAX_OPS: usize = 512;

/// Reads the input front to back; zeros once it is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        let mut r = 0u64;
        for _ in 0..8 {
            r = r << 8 | u64::from(self.u8());
        }
        r
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The low `bits` bits of `r` (so that every level is hit about equally).
fn low_bits(r: u64, bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        r & (u64::MAX >> (64 - bits.min(64)))
    }
}

/// A deadline relative to the clock at the time of the operation.
fn deadline(b: &mut Bytes<'_>, now: u64) -> u64 {
    let sel = b.u8();
    let bits = u32::from(b.u8() % 45);
    match sel % 18 {
        0..=11 => now.saturating_add(low_bits(b.u64(), bits)),
        // The crowded near future: ties.
        12..=14 => now.saturating_add(u64::from(b.u8() % 200)),
        // The past (or now itself).
        15 | 16 => now.saturating_sub(low_bits(b.u64(), bits.min(24))),
        _ => u64::MAX,
    }
}

fn start(b: &mut Bytes<'_>) -> u64 {
    match b.u8() % 4 {
        0 => 0,
        1 => b.u64() % (1 << 40),
        // Just before an epoch boundary.
        2 => 7 * WHEEL_RANGE - (1 + b.u64() % (1 << 20)),
        // Near the end of time: deadlines saturate at u64::MAX.
        _ => u64::MAX - ((1 << 30) + b.u64() % ((1 << 46) - (1 << 30))),
    }
}

/// The reference model.
#[derive(Default)]
struct Oracle {
    now: u64,
    seq: u64,
    /// Pending timers in expiry order.
    queue: BTreeMap<(u64, u64), usize>,
    /// Timer id → its queue key.
    live: HashMap<usize, (u64, u64)>,
}

impl Oracle {
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

    /// Pops up to `max` timers due by `to`, as `(id, deadline)`. If `max`
    /// were taken, the iterator was never asked past the last of them, so
    /// the clock stays at its deadline (or where it was, if none was
    /// taken); otherwise the iterator ran out and the clock reaches `to`.
    fn advance(&mut self, to: u64, max: usize) -> Vec<(usize, u64)> {
        let to = self.now.max(to);
        let mut out = Vec::new();
        while out.len() < max {
            let Some(entry) = self.queue.first_entry() else {
                break;
            };
            if entry.key().0 > to {
                break;
            }
            let d = entry.key().0;
            let id = entry.remove();
            self.live.remove(&id);
            out.push((id, d));
        }
        if out.len() == max {
            if let Some(&(_, d)) = out.last() {
                self.now = self.now.max(d);
            }
        } else {
            self.now = to;
        }
        out
    }

    fn min(&self) -> Option<u64> {
        self.queue.keys().next().map(|k| k.0)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let start = start(&mut b);
    let mut wheel: TimerWheel<usize> = TimerWheel::with_start(start);
    let mut oracle = Oracle {
        now: start,
        ..Oracle::default()
    };
    let mut keys: Vec<TimerKey> = Vec::new();
    let mut issued: HashSet<TimerKey> = HashSet::new();
    // Whether `next_deadline` must be exact: no cancel or reset succeeded
    // since the wheel was last empty.
    let mut exact = true;

    for n in 0..MAX_OPS {
        if b.is_empty() {
            break;
        }
        let kind = b.u8();
        match kind % 16 {
            0..=4 => {
                let d = deadline(&mut b, oracle.now);
                let id = keys.len();
                let key = wheel.insert(d, id);
                assert!(issued.insert(key), "op {n}: key {key:?} issued twice");
                keys.push(key);
                oracle.insert(id, d);
            }
            5 | 6 => {
                let i = usize::from(b.u8()) << 8 | usize::from(b.u8());
                if keys.is_empty() {
                    continue;
                }
                let id = i % keys.len();
                let got = wheel.cancel(keys[id]);
                let expected = oracle.remove(id).then_some(id);
                assert_eq!(got, expected, "op {n}: cancel");
                exact &= got.is_none();
            }
            7 | 8 => {
                let i = usize::from(b.u8()) << 8 | usize::from(b.u8());
                let d = deadline(&mut b, oracle.now);
                if keys.is_empty() {
                    continue;
                }
                let id = i % keys.len();
                let got = wheel.reset(keys[id], d);
                let expected = oracle.remove(id);
                if expected {
                    oracle.insert(id, d);
                }
                assert_eq!(got, expected, "op {n}: reset");
                exact &= !got;
            }
            9..=13 => {
                let sel = b.u8();
                let now = oracle.now;
                let nd = wheel.next_deadline();
                let to = match sel % 14 {
                    0..=3 => now.saturating_add(u64::from(b.u8() % 70)),
                    4..=7 => {
                        let bits = u32::from(b.u8() % 45);
                        now.saturating_add(low_bits(b.u64(), bits))
                    }
                    8..=10 => nd.unwrap_or(now),
                    // Just before the next deadline: nothing but due timers.
                    11 | 12 => nd.map_or(now, |d| d.saturating_sub(1)),
                    // Backwards: treated as now.
                    _ => now.saturating_sub(1 + u64::from(b.u8()) % 999),
                };
                // Kind 13 stops consuming the iterator after a few timers.
                let max = if kind % 16 == 13 {
                    usize::from(b.u8() % 4)
                } else {
                    usize::MAX
                };
                let mut got: Vec<(TimerKey, usize)> = Vec::new();
                {
                    let mut it = wheel.advance(to);
                    while got.len() < max {
                        match it.next() {
                            Some(x) => got.push(x),
                            None => break,
                        }
                    }
                }
                let expected = oracle.advance(to, max);
                let got_ids: Vec<usize> = got.iter().map(|&(_, id)| id).collect();
                let expected_ids: Vec<usize> = expected.iter().map(|&(id, _)| id).collect();
                assert_eq!(got_ids, expected_ids, "op {n}: advance to {to} (max {max})");
                for &(key, id) in &got {
                    assert_eq!(key, keys[id], "op {n}: yielded key");
                }
                assert_eq!(
                    wheel.now(),
                    oracle.now,
                    "op {n}: clock after advance to {to}"
                );
                if max == usize::MAX
                    && sel % 14 >= 8
                    && sel % 14 <= 10
                    && let Some(d) = nd
                    && got.is_empty()
                {
                    // Advancing to a reported deadline fires something or
                    // moves the reported deadline strictly forward.
                    assert!(
                        wheel.next_deadline().is_none_or(|e| e > d),
                        "op {n}: next_deadline stuck at {d}"
                    );
                }
            }
            14 => {
                // Lookups with any key ever issued, live or stale.
                let i = usize::from(b.u8()) << 8 | usize::from(b.u8());
                if keys.is_empty() {
                    continue;
                }
                let id = i % keys.len();
                let key = keys[id];
                let d = oracle.live.get(&id).map(|k| k.0);
                assert_eq!(wheel.deadline(key), d, "op {n}: deadline");
                assert_eq!(wheel.contains(key), d.is_some(), "op {n}: contains");
                assert_eq!(wheel.get(key).copied(), d.map(|_| id), "op {n}: get");
                assert_eq!(
                    wheel.get_mut(key).map(|v| *v),
                    d.map(|_| id),
                    "op {n}: get_mut"
                );
            }
            _ => {
                // Carry on with a clone (and a reservation).
                let mut c = wheel.clone();
                c.reserve(usize::from(b.u8()));
                wheel = c;
            }
        }

        assert_eq!(wheel.len(), oracle.live.len(), "op {n}: len");
        assert_eq!(wheel.is_empty(), oracle.live.is_empty(), "op {n}: is_empty");
        if oracle.live.is_empty() {
            exact = true;
        }
        let now = oracle.now;
        match (wheel.next_deadline(), oracle.min()) {
            (None, None) => {}
            (Some(nd), Some(min)) => {
                assert!(nd <= min, "op {n}: next_deadline {nd} > earliest {min}");
                // Exact when nothing was cancelled, when timers are due, and
                // when the earliest timer is in the current 64 ms block;
                // otherwise still later than now.
                if exact || min <= now || min >> 6 == now >> 6 {
                    assert_eq!(nd, min, "op {n}: next_deadline not exact");
                } else {
                    assert!(
                        nd > now,
                        "op {n}: next_deadline {nd} <= now {now}, nothing due"
                    );
                }
            }
            (nd, min) => panic!("op {n}: next_deadline {nd:?}, oracle min {min:?}"),
        }
    }

    // Every key, live or stale, answers lookups like the oracle.
    for (id, &key) in keys.iter().enumerate() {
        let d = oracle.live.get(&id).map(|k| k.0);
        assert_eq!(wheel.deadline(key), d, "final deadline of timer {id}");
        assert_eq!(
            wheel.get(key).copied(),
            d.map(|_| id),
            "final get of timer {id}"
        );
    }
    // Finally everything fires, in oracle order.
    let got: Vec<usize> = wheel.advance(u64::MAX).map(|(_, id)| id).collect();
    let expected: Vec<usize> = oracle
        .advance(u64::MAX, usize::MAX)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, expected, "final advance");
    assert!(wheel.is_empty());
});
