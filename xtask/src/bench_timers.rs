//! Timer benchmark: `evmux_timers::TimerWheel` against a `BinaryHeap` with
//! lazy (tombstone) cancellation and a `BTreeMap` keyed by
//! `(deadline, seq)`.
//!
//! # Setup (untimed)
//!
//! Each structure is pre-filled with `pending` timers, all carrying a `u64`
//! payload:
//!
//! - `near = pending - pending / 64` timers with deadlines evenly spaced
//!   over `(0, SPAN]` ms, `SPAN = 2^20` ms (about 17.5 minutes): timer `j`
//!   has deadline `near_deadline(j) = (j + 1) * SPAN / near`. They are
//!   inserted in deadline order, as timeouts of the form `now + constant`
//!   are in practice.
//! - `pending / 64` *far* timers, interleaved with them, at
//!   `2^40 + random(2^40)` ms: beyond the wheel's range (its overflow list),
//!   at the back of the heap and the tree. The run never reaches them.
//!
//! # Workloads (timed; one "op" each)
//!
//! - `insert_cancel`: insert a timer at `now + 1 + random(2^16)` ms and
//!   cancel it again. The clock does not move.
//! - `insert_expire`: a steady state in which every insert is matched by one
//!   expiry on average, so the number pending stays at `pending`. Op `i`
//!   inserts near timer `near + i` with deadline `near_deadline(near + i)`
//!   (= `now + SPAN`, continuing the pre-fill's even spacing), then advances
//!   the clock to `near_deadline(i)` and expires everything due. Because
//!   the spacing is `SPAN / near` ms, there are about `pending / 2^20`
//!   expiries per ms when `pending > 2^20` (several per advance), and the
//!   clock jumps by about `2^20 / pending` ms per op when `pending < 2^20`:
//!   both extremes are exercised, and every structure does exactly the same
//!   inserts and expiries (checked by comparing payload checksums).
//!
//! `insert_cancel` runs first on the pre-filled structure, then
//! `insert_expire` (the heap first drops the tombstones `insert_cancel` left
//! behind, untimed, so that both workloads start from the same state).
//!
//! # Whole periods
//!
//! Both workloads have periodic costs that are large but rare, and a timed
//! window that covers only part of a period would leave them out (or count
//! them more than once) depending on where it ends. So each window runs at
//! least `ops` ops, rounded up to a whole number of periods (see
//! [`timed_ops`]); every structure runs exactly the same ops:
//!
//! - `insert_cancel`: the heap compacts its tombstones every
//!   `pending + HEAP_SLACK + 1` ops (an O(pending) rebuild), so the window
//!   is a whole number of such cycles.
//! - `insert_expire`: the window is a whole number of *spans* of `near` ops,
//!   in which the clock moves by exactly `SPAN` and every pending near timer
//!   is replaced once. Cost varies a lot within a span: the wheel cascades
//!   a level-3 slot (a quarter of all timers) every `2^18` ms, and the heap
//!   pays more at the start of a span than at its end. The pre-filled wheel
//!   is already in its steady state (where a timer sits depends only on its
//!   deadline and the clock), so a whole span from it does exactly the
//!   steady state's cascading work. At 10M pending a span is ~10M ops.
//!
//! # Rounds
//!
//! Every round builds and measures the wheel, the heap and the tree in turn
//! (so slow drift of the machine affects all three alike), freeing each
//! before building the next; which of them goes first rotates from round to
//! round. Each round goes through every pending count, so a noisy stretch
//! does not land on all rounds of one pending count. The reported
//! `ns_per_op` is the median over rounds, with the minimum and maximum
//! alongside.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::hint::black_box;
use std::time::Instant;

use evmux_timers::{TimerKey, TimerWheel};

/// The pre-filled near deadlines are spread over `(0, SPAN]` ms.
const SPAN: u64 = 1 << 20;
/// `insert_cancel` deadlines are `now + 1 ..= now + 1 + NEAR_MASK` ms.
const NEAR_MASK: u64 = (1 << 16) - 1;
/// Far timers are at `FAR + random(FAR)` ms: never reached by a run.
const FAR: u64 = 1 << 40;
/// The heap compacts when its tombstones outnumber its live timers by more
/// than this.
const HEAP_SLACK: usize = 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct TimerBenchOpts {
    /// The numbers of pending timers to measure at.
    pub pendings: Vec<usize>,
    /// Timed operations per workload, structure and round, at least: rounded
    /// up to whole periods of the workload (see [`timed_ops`]).
    pub ops: usize,
    /// Rounds; the median is reported.
    pub rounds: usize,
}

impl TimerBenchOpts {
    /// 1k, 100k, 1M and 10M pending; at least 1M ops; 7 rounds (about two
    /// minutes in release mode, mostly the heap and the tree at 10M
    /// pending, where whole periods are ~10M ops; about 1 GB peak memory,
    /// at 10M pending).
    pub fn full() -> Self {
        TimerBenchOpts {
            pendings: vec![1_000, 100_000, 1_000_000, 10_000_000],
            ops: 1_000_000,
            rounds: 7,
        }
    }

    /// 1k, 100k and 1M pending; at least 200k ops; 5 rounds (10 to 20
    /// seconds in release mode).
    pub fn quick() -> Self {
        TimerBenchOpts {
            pendings: vec![1_000, 100_000, 1_000_000],
            ops: 200_000,
            rounds: 5,
        }
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct TimerResult {
    /// `"wheel"`, `"binary_heap"` or `"btree_map"`.
    pub structure: &'static str,
    /// `"insert_cancel"` or `"insert_expire"`.
    pub workload: &'static str,
    /// Timers pending while measuring.
    pub pending: usize,
    /// Timed ops per round (`opts.ops` rounded up to whole periods).
    pub ops: usize,
    /// Median over rounds, in ns per op.
    pub ns_per_op: f64,
    /// Fastest round, in ns per op.
    pub min_ns: f64,
    /// Slowest round, in ns per op.
    pub max_ns: f64,
}

const STRUCTURES: [&str; 3] = ["wheel", "binary_heap", "btree_map"];
const WORKLOADS: [&str; 2] = ["insert_cancel", "insert_expire"];

/// The numbers of timed ops `[insert_cancel, insert_expire]` at `pending`
/// timers when at least `ops` are asked for: rounded up to whole periods
/// (see the module docs).
pub fn timed_ops(pending: usize, ops: usize) -> [usize; 2] {
    let pending = pending.max(2);
    let ops = ops.max(1);
    let near = pending - pending / 64;
    [
        ops.next_multiple_of(pending + HEAP_SLACK + 1),
        ops.next_multiple_of(near),
    ]
}

/// Runs every workload on every structure at every pending count.
/// `progress` receives one line per pending count and round.
pub fn run(opts: &TimerBenchOpts, progress: &mut dyn FnMut(&str)) -> Vec<TimerResult> {
    let rounds = opts.rounds.max(1);
    let pendings: Vec<usize> = opts.pendings.iter().map(|&p| p.max(2)).collect();
    // samples[pending][structure][workload] = ns per op, one per round.
    let mut samples: Vec<[[Vec<f64>; 2]; 3]> = vec![Default::default(); pendings.len()];
    // Rounds are the outer loop, so that a stretch of noise (another
    // process, frequency changes) hits every pending count alike instead of
    // all rounds of one, which would skew the flatness ratios.
    for round in 0..rounds {
        let seed = 0x9E37_79B9_7F4A_7C15 ^ (round as u64 + 1);
        for (&pending, samples) in pendings.iter().zip(&mut samples) {
            let ops = timed_ops(pending, opts.ops);
            // Interleaved: each round measures all three, and which goes
            // first rotates, so neither drift nor the allocator state left
            // by the previous subject favours one structure.
            let mut outcomes: [Option<Outcome>; 3] = [None, None, None];
            for k in 0..3 {
                let s = (round + k) % 3;
                outcomes[s] = Some(match s {
                    0 => measure::<WheelTimers>(pending, ops, seed),
                    1 => measure::<HeapTimers>(pending, ops, seed),
                    _ => measure::<BTreeTimers>(pending, ops, seed),
                });
            }
            let outcomes = outcomes.map(|o| o.expect("every structure was measured"));
            // All three must have done exactly the same work.
            for o in &outcomes[1..] {
                assert_eq!(
                    o.checksums, outcomes[0].checksums,
                    "timer structures disagree (pending {pending}, round {round})"
                );
            }
            for (per_workload, o) in samples.iter_mut().zip(&outcomes) {
                for (v, &ns) in per_workload.iter_mut().zip(&o.ns) {
                    v.push(ns);
                }
            }
            progress(&format!(
                "timers: round {}/{rounds} pending {pending}: insert_cancel {:.1}/{:.1}/{:.1} ns, \
                 insert_expire {:.1}/{:.1}/{:.1} ns (wheel/binary_heap/btree_map)",
                round + 1,
                outcomes[0].ns[0],
                outcomes[1].ns[0],
                outcomes[2].ns[0],
                outcomes[0].ns[1],
                outcomes[1].ns[1],
                outcomes[2].ns[1],
            ));
        }
    }
    let mut results = Vec::new();
    for (&pending, samples) in pendings.iter().zip(&mut samples) {
        let ops = timed_ops(pending, opts.ops);
        for (w, &workload) in WORKLOADS.iter().enumerate() {
            for (s, &structure) in STRUCTURES.iter().enumerate() {
                let v = &mut samples[s][w];
                v.sort_by(f64::total_cmp);
                results.push(TimerResult {
                    structure,
                    workload,
                    pending,
                    ops: ops[w],
                    ns_per_op: median(v),
                    min_ns: v[0],
                    max_ns: v[v.len() - 1],
                });
            }
        }
    }
    results
}

/// Median of a sorted, non-empty slice.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The result of one structure in one round.
struct Outcome {
    /// ns per op: `[insert_cancel, insert_expire]`.
    ns: [f64; 2],
    /// Payload checksums of both workloads, for cross-checking.
    checksums: [u64; 2],
}

/// A tiny deterministic xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Deadline of near timer `j` when there are `near` of them (see the module
/// docs).
#[inline]
fn near_deadline(j: usize, near: usize) -> u64 {
    (j as u64 + 1) * SPAN / near as u64
}

/// Builds one structure, runs both workloads on it (`ops` =
/// `[insert_cancel, insert_expire]` ops, from [`timed_ops`]) and frees it.
fn measure<S: Timers>(pending: usize, ops: [usize; 2], seed: u64) -> Outcome {
    let far_count = pending / 64;
    let near = pending - far_count;
    let mut timers = S::with_capacity(pending + pending / 8 + 64);
    let mut rng = XorShift::new(seed);

    // Pre-fill, in deadline order, with a far timer after every 63 near ones.
    let mut far_left = far_count;
    for j in 0..near {
        timers.insert(near_deadline(j, near), j as u64);
        if far_left > 0 && j % 63 == 62 {
            timers.insert(FAR + (rng.next() & (FAR - 1)), u64::MAX);
            far_left -= 1;
        }
    }
    for _ in 0..far_left {
        timers.insert(FAR + (rng.next() & (FAR - 1)), u64::MAX);
    }

    // insert_cancel: the clock stays at 0.
    let mut sum = 0u64;
    let start = Instant::now();
    for i in 0..ops[0] {
        let deadline = 1 + (rng.next() & NEAR_MASK);
        let handle = timers.insert(black_box(deadline), i as u64);
        sum = sum.wrapping_add(timers.cancel(black_box(handle)));
    }
    let insert_cancel = start.elapsed();
    let cancel_sum = black_box(sum);

    timers.settle();

    // insert_expire: one insert and, on average, one expiry per op.
    let mut sum = 0u64;
    let start = Instant::now();
    for i in 0..ops[1] {
        let j = near + i;
        timers.insert(black_box(near_deadline(j, near)), j as u64);
        sum = sum.wrapping_add(timers.expire(black_box(near_deadline(i, near))));
    }
    let insert_expire = start.elapsed();
    let expire_sum = black_box(sum);

    drop(timers);
    Outcome {
        ns: [
            insert_cancel.as_nanos() as f64 / ops[0] as f64,
            insert_expire.as_nanos() as f64 / ops[1] as f64,
        ],
        checksums: [cancel_sum, expire_sum],
    }
}

/// The operations the workloads need.
trait Timers {
    type Handle: Copy;
    fn with_capacity(capacity: usize) -> Self;
    fn insert(&mut self, deadline: u64, value: u64) -> Self::Handle;
    /// Cancels a pending timer and returns its payload.
    fn cancel(&mut self, handle: Self::Handle) -> u64;
    /// Expires every timer with deadline `<= now`; returns the wrapping sum
    /// of (payload + 1) over them.
    fn expire(&mut self, now: u64) -> u64;
    /// Untimed cleanup between workloads.
    fn settle(&mut self) {}
}

struct WheelTimers(TimerWheel<u64>);

impl Timers for WheelTimers {
    type Handle = TimerKey;

    fn with_capacity(capacity: usize) -> Self {
        let mut wheel = TimerWheel::new();
        wheel.reserve(capacity);
        WheelTimers(wheel)
    }

    #[inline]
    fn insert(&mut self, deadline: u64, value: u64) -> TimerKey {
        self.0.insert(deadline, value)
    }

    #[inline]
    fn cancel(&mut self, handle: TimerKey) -> u64 {
        self.0.cancel(handle).expect("timer is pending")
    }

    #[inline]
    fn expire(&mut self, now: u64) -> u64 {
        self.0
            .advance(now)
            .fold(0u64, |acc, (_, v)| acc.wrapping_add(v.wrapping_add(1)))
    }
}

/// A heap entry; the `BinaryHeap` is a max-heap, so the order is reversed
/// to pop the earliest `(deadline, seq)` first.
struct HeapEntry {
    deadline: u64,
    seq: u64,
    slot: u32,
    generation: u32,
}

impl PartialEq for HeapEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl Eq for HeapEntry {}

impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeapEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// Payload slab entry of the heap; a cancelled or expired timer bumps the
/// generation, which turns its heap entry into a tombstone.
struct HeapSlot {
    generation: u32,
    value: u64,
}

/// `BinaryHeap` with lazy cancellation: cancel bumps the slot's generation
/// (O(1)); tombstones are skipped when they reach the top, and the heap is
/// compacted when tombstones outnumber live timers.
struct HeapTimers {
    heap: BinaryHeap<HeapEntry>,
    slots: Vec<HeapSlot>,
    free: Vec<u32>,
    seq: u64,
    live: usize,
    tombstones: usize,
}

impl HeapTimers {
    fn release(&mut self, slot: u32) -> u64 {
        let s = &mut self.slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        s.value
    }

    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap
            .retain(|e| slots[e.slot as usize].generation == e.generation);
        self.tombstones = 0;
    }
}

impl Timers for HeapTimers {
    type Handle = (u32, u32);

    fn with_capacity(capacity: usize) -> Self {
        HeapTimers {
            // Room for the tombstones too (at most `live + HEAP_SLACK + 1`),
            // so that, like the wheel's slab, the heap never grows while
            // timed.
            heap: BinaryHeap::with_capacity(2 * capacity + HEAP_SLACK + 1),
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            seq: 0,
            live: 0,
            tombstones: 0,
        }
    }

    #[inline]
    fn insert(&mut self, deadline: u64, value: u64) -> (u32, u32) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].value = value;
                slot
            }
            None => {
                self.slots.push(HeapSlot {
                    generation: 0,
                    value,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.slots[slot as usize].generation;
        self.heap.push(HeapEntry {
            deadline,
            seq: self.seq,
            slot,
            generation,
        });
        self.seq += 1;
        self.live += 1;
        (slot, generation)
    }

    #[inline]
    fn cancel(&mut self, (slot, generation): (u32, u32)) -> u64 {
        assert_eq!(
            self.slots[slot as usize].generation, generation,
            "timer is pending"
        );
        let value = self.release(slot);
        self.tombstones += 1;
        if self.tombstones > self.live + HEAP_SLACK {
            self.compact();
        }
        value
    }

    #[inline]
    fn expire(&mut self, now: u64) -> u64 {
        let mut sum = 0u64;
        while let Some(top) = self.heap.peek() {
            if top.deadline > now {
                break;
            }
            let (slot, generation) = (top.slot, top.generation);
            self.heap.pop();
            if self.slots[slot as usize].generation == generation {
                sum = sum.wrapping_add(self.release(slot).wrapping_add(1));
            } else {
                self.tombstones -= 1;
            }
        }
        sum
    }

    fn settle(&mut self) {
        self.compact();
    }
}

/// `BTreeMap` keyed by `(deadline, seq)`.
struct BTreeTimers {
    map: BTreeMap<(u64, u64), u64>,
    seq: u64,
}

impl Timers for BTreeTimers {
    type Handle = (u64, u64);

    fn with_capacity(_capacity: usize) -> Self {
        BTreeTimers {
            map: BTreeMap::new(),
            seq: 0,
        }
    }

    #[inline]
    fn insert(&mut self, deadline: u64, value: u64) -> (u64, u64) {
        let key = (deadline, self.seq);
        self.seq += 1;
        self.map.insert(key, value);
        key
    }

    #[inline]
    fn cancel(&mut self, key: (u64, u64)) -> u64 {
        self.map.remove(&key).expect("timer is pending")
    }

    #[inline]
    fn expire(&mut self, now: u64) -> u64 {
        let mut sum = 0u64;
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            sum = sum.wrapping_add(entry.remove().wrapping_add(1));
        }
        sum
    }
}
