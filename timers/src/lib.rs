//! A hierarchical timing wheel with O(1) insert, cancel and reset.
//!
//! `evmux-timers` is *sans-io*: it never reads a clock. The caller passes the
//! current time to [`TimerWheel::advance`] and gets back every timer whose
//! deadline has been reached. It has no dependencies and can be used on its
//! own.
//!
//! # Time
//!
//! Deadlines and `now` are plain `u64` **milliseconds since an epoch the
//! caller chooses**; resolution is 1 ms. A typical event loop takes a
//! [`std::time::Instant`] when it starts and converts:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use evmux_timers::TimerWheel;
//!
//! let start = Instant::now();
//! // Round `now` down and deadlines up, so that a timer never fires before
//! // its real deadline.
//! let now_ms = |at: Instant| at.duration_since(start).as_millis() as u64;
//! let deadline_ms = |at: Instant| {
//!     let d = at.duration_since(start);
//!     d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0)
//! };
//!
//! let mut wheel = TimerWheel::new(); // its clock starts at 0 = `start`
//! let key = wheel.insert(deadline_ms(start + Duration::from_millis(1500)), "retry");
//! assert_eq!(wheel.next_deadline(), Some(1500));
//!
//! // ... poll with a timeout of `next_deadline - now` ...
//! let fired: Vec<_> = wheel.advance(now_ms(start) + 1500).collect();
//! assert_eq!(fired, vec![(key, "retry")]);
//! ```
//!
//! The wheel's own clock ([`TimerWheel::now`]) starts at 0 (or at the value
//! given to [`TimerWheel::with_start`]) and moves forward only in
//! [`TimerWheel::advance`]. Time never goes backwards: an `advance` to an
//! earlier time than the wheel's clock is treated as an advance to the
//! wheel's clock.
//!
//! # Guarantees
//!
//! - **Never early, never late.** A timer with deadline `d` is yielded by the
//!   first `advance(now)` with `now >= d`, and never by an earlier one: the
//!   worst-case lateness relative to `advance` calls is **0 ms**. (Lateness
//!   relative to real time is therefore only how late the caller calls
//!   `advance`, plus the rounding of its own time conversion.)
//! - **Deadlines in the past.** A deadline `<= now()` is accepted; the timer
//!   fires on the next `advance`.
//! - **Order.** One `advance` call yields timers in deadline order; timers
//!   with equal deadlines come out in insertion order (FIFO). A
//!   [`reset`](TimerWheel::reset) counts as a fresh insertion, even when the
//!   deadline does not change. This is exactly the order of a
//!   `BTreeMap<(deadline, insertion_sequence), _>`, against which the crate
//!   is property-tested.
//! - **Stale keys are harmless.** A [`TimerKey`] carries a slab index and a
//!   generation. Once its timer has fired or been cancelled, the key cancels,
//!   resets and finds nothing, even after the slab slot has been reused by
//!   another timer. (The generation is 32 bits: a key could only alias again
//!   after 2³² reuses of one slot.) Keys are not tied to a particular wheel;
//!   using a key with a wheel that did not issue it is a logic error (it may
//!   act on an unrelated timer, but never causes memory unsafety).
//!
//! # Structure
//!
//! A hierarchical **cascading** wheel in the style of tokio's: 6 levels of 64
//! slots. A slot at level `L` spans `64^L` ms, so level 0 has 1 ms slots and
//! level 5 has slots of `2^30` ms; the wheel spans [`WHEEL_RANGE`] `= 2^36`
//! ms (about 795 days). A timer is stored at the level of the highest bit in
//! which its deadline differs from the wheel's clock, so a level only ever
//! holds deadlines inside the clock's current block of that level and no
//! slot ever wraps around. When the clock reaches the start of an occupied
//! slot at level `L > 0`, the slot is *cascaded*: its timers move down to
//! finer levels, down to the 1 ms slots of level 0, from which they fire:
//! deadlines are never rounded, which is what makes the wheel exact. Each
//! timer moves between levels at most 5 times. One shortcut: when a coarse
//! slot holding a single timer comes due during an `advance` that also
//! covers that timer's deadline, the timer is by then the earliest one
//! pending, so it is yielded directly instead of cascading level by level
//! (this keeps sparse wheels as fast as full ones).
//!
//! Deadlines outside the clock's current `2^36`-ms-aligned epoch (that is,
//! at most [`WHEEL_RANGE`] ms ahead, and possibly less near an epoch
//! boundary) wait in an **overflow list**. When the clock reaches the epoch
//! of the earliest of them, the list is walked once and every timer that now
//! fits moves into the wheel; the others stay. A walk costs O(timers in the
//! overflow list) and happens at most once per epoch that holds an overflow
//! deadline (plus once after the bound described under
//! [`next_deadline`](#next_deadline) went stale). Any `u64` deadline works,
//! up to `u64::MAX`.
//!
//! Timers that are already due when they are inserted (deadline `<= now()`)
//! go to a **due list** that the next `advance` drains first.
//!
//! Timers live in a slab (a `Vec` of entries with a free list) and are
//! linked into their slot's list by index (an intrusive doubly linked
//! list), so insert, cancel and reset are O(1) and do not allocate once
//! the slab has grown. Each level keeps a 64-bit occupancy bitmap, so
//! finding the next occupied slot is a `trailing_zeros` per level. An entry
//! is 24 bytes plus an `Option<T>` (40 bytes for an 8-byte `T`).
//!
//! # `next_deadline`
//!
//! [`TimerWheel::next_deadline`] is exact in normal operation: each slot
//! remembers the earliest deadline put into it since it was last empty.
//! The one exception: if the earliest timer of a coarse slot (level ≥ 1, or
//! the overflow list) is cancelled or reset while other timers remain in the
//! slot, the slot's remembered minimum is not recomputed (that would cost
//! O(timers in the slot)), and `next_deadline` may return that stale, earlier
//! value. It is still never later than the true earliest deadline (no missed
//! wake-up) and always later than `now()` when nothing is due (no busy loop).
//! An `advance` to that time yields nothing but cascades the slot, after
//! which `next_deadline` reports a strictly later time; so each such
//! cancellation costs at most one spurious wake-up.
//!
//! # Example
//!
//! ```
//! use evmux_timers::TimerWheel;
//!
//! let mut wheel = TimerWheel::new();
//! let a = wheel.insert(30, "a");
//! let b = wheel.insert(10, "b");
//! let c = wheel.insert(10, "c");
//! assert_eq!(wheel.cancel(a), Some("a"));
//! assert_eq!(wheel.cancel(a), None); // stale key
//! assert!(wheel.reset(b, 20));
//!
//! assert_eq!(wheel.next_deadline(), Some(10));
//! assert_eq!(wheel.advance(9).count(), 0); // never early
//! let fired: Vec<_> = wheel.advance(25).collect();
//! assert_eq!(fired, vec![(c, "c"), (b, "b")]); // deadline order
//! assert!(wheel.is_empty());
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::iter::FusedIterator;

/// log2 of the number of slots per level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels.
const LEVELS: usize = 6;
/// log2 of the wheel's span in ms.
const RANGE_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// Number of slot lists in the wheel proper; list ids below this are
/// `level * SLOTS + slot`.
const WHEEL_LISTS: usize = LEVELS * SLOTS;
/// List id of the overflow list (deadlines outside the current epoch).
const OVERFLOW: usize = WHEEL_LISTS;
/// List id of the due list (deadlines `<= elapsed`).
const DUE: usize = WHEEL_LISTS + 1;
/// Number of lists.
const LIST_COUNT: usize = WHEEL_LISTS + 2;
/// `Entry::list` of a vacant slab entry.
const VACANT: u16 = u16::MAX;
/// The null link.
const NIL: u32 = u32::MAX;

/// The span of the wheel proper, in ms: `2^36` ms, about 795 days.
///
/// Deadlines that are not in the same `WHEEL_RANGE`-aligned epoch as the
/// wheel's clock wait in an overflow list until the clock enters their epoch;
/// they still fire exactly on time.
pub const WHEEL_RANGE: u64 = 1 << RANGE_BITS;

/// A handle to a timer in a [`TimerWheel`].
///
/// It is a slab index plus a generation: once the timer has fired or been
/// cancelled the key is *stale*, and [`TimerWheel::cancel`],
/// [`TimerWheel::reset`] and the lookup methods ignore it, even after the
/// slab slot is reused by a new timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// One slab entry: a timer, or a vacant slot on the free list.
#[derive(Clone)]
struct Entry<T> {
    /// Absolute deadline in ms.
    deadline: u64,
    /// Next entry in the list (or in the free list when vacant).
    next: u32,
    /// Previous entry in the list.
    prev: u32,
    /// Bumped every time the entry is vacated.
    generation: u32,
    /// The id of the list the entry is linked into, or `VACANT`.
    list: u16,
    /// The payload; `None` exactly when vacant.
    value: Option<T>,
}

/// Head and tail of one intrusive list.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// A hierarchical timing wheel holding timers with payloads of type `T`.
///
/// See the [crate documentation](crate) for the time representation, the
/// structure and the guarantees.
#[derive(Clone)]
pub struct TimerWheel<T> {
    /// The slab.
    entries: Vec<Entry<T>>,
    /// Head of the free list of vacant entries (linked through `next`).
    free_head: u32,
    /// Number of live timers.
    len: usize,
    /// The wheel's clock: every timer in a wheel slot or the overflow list
    /// has a deadline `> elapsed`, every timer on the due list `<= elapsed`.
    elapsed: u64,
    /// Per level, bit `s` is set iff slot `s` of that level is non-empty.
    occupied: [u64; LEVELS],
    /// All lists: wheel slots, then `OVERFLOW`, then `DUE`.
    lists: [List; LIST_COUNT],
    /// For every wheel slot and the overflow list: a lower bound on the
    /// deadlines in it (the minimum deadline put into it since it was last
    /// empty); `u64::MAX` when empty.
    lower: [u64; OVERFLOW + 1],
    /// Whether the due list is sorted by deadline (stably, so ties stay in
    /// insertion order).
    due_sorted: bool,
    /// Reused buffer for sorting the due list.
    scratch: Vec<u32>,
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now", &self.elapsed)
            .field("len", &self.len)
            .field("next_deadline", &self.next_deadline())
            .finish_non_exhaustive()
    }
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose clock reads 0.
    pub fn new() -> Self {
        Self::with_start(0)
    }

    /// Creates an empty wheel whose clock reads `now` (ms since the caller's
    /// epoch).
    pub fn with_start(now: u64) -> Self {
        TimerWheel {
            entries: Vec::new(),
            free_head: NIL,
            len: 0,
            elapsed: now,
            occupied: [0; LEVELS],
            lists: [EMPTY; LIST_COUNT],
            lower: [u64::MAX; OVERFLOW + 1],
            due_sorted: true,
            scratch: Vec::new(),
        }
    }

    /// Reserves slab space for at least `additional` more timers, so that
    /// the next `additional` inserts do not allocate.
    pub fn reserve(&mut self, additional: usize) {
        let vacant = self.entries.len() - self.len;
        self.entries.reserve(additional.saturating_sub(vacant));
    }

    /// The wheel's clock: the latest time it has been advanced to (or the
    /// start time), in ms.
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    /// The number of pending timers (including due ones not yet yielded).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a timer that fires at `deadline` (ms) and returns its key. O(1).
    ///
    /// A deadline `<= now()` is due: the timer fires on the next
    /// [`advance`](Self::advance). Allocates only when the slab grows.
    ///
    /// # Panics
    ///
    /// If `u32::MAX` timers are already pending.
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.next;
            entry.value = Some(value);
            index
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("TimerWheel holds at most u32::MAX timers");
            self.entries.push(Entry {
                deadline,
                next: NIL,
                prev: NIL,
                generation: 0,
                list: VACANT,
                value: Some(value),
            });
            index
        };
        self.len += 1;
        self.place(index, deadline);
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Removes the timer `key` and returns its payload, or `None` if the key
    /// is stale (the timer already fired or was cancelled). O(1).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let index = self.live(key)?;
        self.unlink(index);
        Some(self.release(index))
    }

    /// Moves the timer `key` to a new `deadline` (earlier or later). O(1).
    ///
    /// Returns `false`, and changes nothing, if the key is stale. For tie
    /// ordering a reset counts as a fresh insertion: the timer fires after
    /// every other timer with the same deadline that is pending at the time
    /// of the reset, even if `deadline` is unchanged.
    pub fn reset(&mut self, key: TimerKey, deadline: u64) -> bool {
        let Some(index) = self.live(key) else {
            return false;
        };
        self.unlink(index);
        self.place(index as u32, deadline);
        true
    }

    /// Whether `key` refers to a pending timer.
    pub fn contains(&self, key: TimerKey) -> bool {
        self.live(key).is_some()
    }

    /// The deadline of the pending timer `key`, or `None` if it is stale.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        self.live(key).map(|i| self.entries[i].deadline)
    }

    /// The payload of the pending timer `key`, or `None` if it is stale.
    pub fn get(&self, key: TimerKey) -> Option<&T> {
        self.live(key).and_then(|i| self.entries[i].value.as_ref())
    }

    /// The payload of the pending timer `key`, mutably, or `None` if it is
    /// stale.
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        let index = self.live(key)?;
        self.entries[index].value.as_mut()
    }

    /// The earliest time at which [`advance`](Self::advance) will yield a
    /// timer, or `None` if no timer is pending.
    ///
    /// Never later than the earliest pending deadline, so sleeping until it
    /// never misses a timer. A value `<= now()` means timers are already due.
    /// It is exactly the earliest deadline except in the case described in
    /// the [crate documentation](crate#next_deadline) (a cancelled or reset
    /// earliest timer in a coarse slot), where it may be an earlier value
    /// that is still later than `now()`.
    ///
    /// Cost: a scan of at most 6 bitmaps, except when timers with deadlines
    /// in the past were inserted out of deadline order since the last
    /// `advance`; then it also scans those due timers (which the next
    /// `advance` yields anyway).
    pub fn next_deadline(&self) -> Option<u64> {
        let head = self.lists[DUE].head;
        if head != NIL {
            if self.due_sorted {
                return Some(self.entries[head as usize].deadline);
            }
            let mut min = u64::MAX;
            let mut i = head;
            while i != NIL {
                let entry = &self.entries[i as usize];
                min = min.min(entry.deadline);
                i = entry.next;
            }
            return Some(min);
        }
        for (level, &bits) in self.occupied.iter().enumerate() {
            if bits != 0 {
                return Some(self.lower[level * SLOTS + bits.trailing_zeros() as usize]);
            }
        }
        if self.lists[OVERFLOW].head != NIL {
            return Some(self.lower[OVERFLOW]);
        }
        None
    }

    /// Advances the wheel's clock to `now` (ms) and returns an iterator over
    /// every timer whose deadline is `<= now`, as `(key, payload)` pairs in
    /// deadline order (FIFO among equal deadlines).
    ///
    /// The work happens as the iterator is consumed; the clock reaches `now`
    /// when it returns `None`. If the iterator is dropped early, the clock
    /// stays at the deadline of the last yielded timer and the remaining due
    /// timers are yielded first by the next `advance`. A `now` earlier than
    /// [`now()`](Self::now) is treated as `now()`.
    ///
    /// Does not allocate, except to sort timers that were inserted with
    /// past deadlines out of deadline order (into a buffer the wheel keeps).
    pub fn advance(&mut self, now: u64) -> Expired<'_, T> {
        if !self.due_sorted {
            self.sort_due();
        }
        let now = now.max(self.elapsed);
        Expired { wheel: self, now }
    }

    /// Like [`advance`](Self::advance), but appends the expired timers to
    /// `out`, and returns how many were appended.
    pub fn advance_into(&mut self, now: u64, out: &mut Vec<(TimerKey, T)>) -> usize {
        let before = out.len();
        out.extend(self.advance(now));
        out.len() - before
    }

    /// The slab index of `key` if it refers to a live timer.
    #[inline]
    fn live(&self, key: TimerKey) -> Option<usize> {
        let index = key.index as usize;
        match self.entries.get(index) {
            Some(e) if e.generation == key.generation && e.list != VACANT => Some(index),
            _ => None,
        }
    }

    /// Links the (unlinked) entry `index` at the tail of the list its
    /// `deadline` belongs to, relative to the current clock.
    #[inline]
    fn place(&mut self, index: u32, deadline: u64) {
        let elapsed = self.elapsed;
        let list = if deadline <= elapsed {
            let tail = self.lists[DUE].tail;
            if tail == NIL {
                self.due_sorted = true;
            } else if self.entries[tail as usize].deadline > deadline {
                self.due_sorted = false;
            }
            DUE
        } else {
            // The highest bit in which the deadline differs from the clock
            // picks the level; the deadline's digit at that level, which is
            // greater than the clock's, picks the slot.
            let bit = 63 - (elapsed ^ deadline).leading_zeros();
            let level = (bit / SLOT_BITS) as usize;
            let list = if level < LEVELS {
                let slot = (deadline >> (level as u32 * SLOT_BITS)) as usize & (SLOTS - 1);
                self.occupied[level] |= 1 << slot;
                level * SLOTS + slot
            } else {
                OVERFLOW
            };
            let lower = &mut self.lower[list];
            if deadline < *lower {
                *lower = deadline;
            }
            list
        };
        let tail = self.lists[list].tail;
        let entry = &mut self.entries[index as usize];
        entry.deadline = deadline;
        entry.list = list as u16;
        entry.prev = tail;
        entry.next = NIL;
        if tail == NIL {
            self.lists[list].head = index;
        } else {
            self.entries[tail as usize].next = index;
        }
        self.lists[list].tail = index;
    }

    /// Unlinks the live entry `index` from its list, keeping the bitmaps and
    /// bounds of an emptied list up to date.
    #[inline]
    fn unlink(&mut self, index: usize) {
        let entry = &self.entries[index];
        let (prev, next, list) = (entry.prev, entry.next, entry.list as usize);
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if self.lists[list].head == NIL {
            if list < WHEEL_LISTS {
                self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
                self.lower[list] = u64::MAX;
            } else if list == OVERFLOW {
                self.lower[OVERFLOW] = u64::MAX;
            } else {
                self.due_sorted = true;
            }
        }
    }

    /// Vacates the (unlinked) entry `index` and returns its payload.
    #[inline]
    fn release(&mut self, index: usize) -> T {
        let entry = &mut self.entries[index];
        let Some(value) = entry.value.take() else {
            unreachable!("a live timer always has a payload");
        };
        entry.generation = entry.generation.wrapping_add(1);
        entry.list = VACANT;
        entry.next = self.free_head;
        self.free_head = index as u32;
        self.len -= 1;
        value
    }

    /// The next list to process and the time at which to process it: the
    /// first occupied slot of the lowest occupied level (at its start time),
    /// else the overflow list (at the start of the epoch of its lower bound).
    #[inline]
    fn next_expiration(&self) -> Option<(usize, u64)> {
        for (level, &bits) in self.occupied.iter().enumerate() {
            if bits != 0 {
                let slot = bits.trailing_zeros();
                let shift = level as u32 * SLOT_BITS;
                let block = !((1u64 << (shift + SLOT_BITS)) - 1);
                let start = (self.elapsed & block) | (u64::from(slot) << shift);
                return Some((level * SLOTS + slot as usize, start));
            }
        }
        if self.lists[OVERFLOW].head != NIL {
            return Some((OVERFLOW, self.lower[OVERFLOW] & !(WHEEL_RANGE - 1)));
        }
        None
    }

    /// Sets the clock to `start` and processes `list` during an advance to
    /// `now`: a level-0 slot becomes the due list; any other list is
    /// re-placed entry by entry, in order (so FIFO order among equal
    /// deadlines is kept).
    ///
    /// `list` is the next list by `next_expiration`, so every finer level
    /// and the due list are empty, and every other timer is later than all
    /// of `list`'s. Hence a lone timer in `list` that is due by `now` is the
    /// earliest timer: the clock jumps straight to its deadline (which only
    /// changes clock bits below `list`'s level, so every other timer stays
    /// correctly placed) and it becomes due without cascading level by level.
    fn process(&mut self, list: usize, start: u64, now: u64) {
        debug_assert!(start >= self.elapsed);
        debug_assert!(self.lists[DUE].head == NIL);
        self.elapsed = start;
        let List { head, tail } = std::mem::replace(&mut self.lists[list], EMPTY);
        debug_assert!(head != NIL);
        if list < WHEEL_LISTS {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        }
        self.lower[list] = u64::MAX;
        if head == tail && list >= SLOTS {
            let entry = &mut self.entries[head as usize];
            if entry.deadline <= now {
                self.elapsed = entry.deadline;
                entry.list = DUE as u16;
                self.lists[DUE] = List { head, tail };
                self.due_sorted = true;
                return;
            }
        }
        if list < SLOTS {
            // Level 0: every entry's deadline is exactly `start`.
            let mut i = head;
            while i != NIL {
                let entry = &mut self.entries[i as usize];
                entry.list = DUE as u16;
                i = entry.next;
            }
            self.lists[DUE] = List { head, tail };
            self.due_sorted = true;
        } else {
            let mut i = head;
            while i != NIL {
                let entry = &self.entries[i as usize];
                let (next, deadline) = (entry.next, entry.deadline);
                self.place(i, deadline);
                i = next;
            }
        }
    }

    /// Stably sorts the due list by deadline.
    fn sort_due(&mut self) {
        let mut order = std::mem::take(&mut self.scratch);
        order.clear();
        let mut i = self.lists[DUE].head;
        while i != NIL {
            order.push(i);
            i = self.entries[i as usize].next;
        }
        let entries = &self.entries;
        order.sort_by_key(|&i| entries[i as usize].deadline);
        let mut prev = NIL;
        for &i in &order {
            let entry = &mut self.entries[i as usize];
            entry.prev = prev;
            entry.next = NIL;
            if prev != NIL {
                self.entries[prev as usize].next = i;
            }
            prev = i;
        }
        self.lists[DUE] = List {
            head: order.first().copied().unwrap_or(NIL),
            tail: prev,
        };
        self.scratch = order;
        self.due_sorted = true;
    }

    /// Unlinks the head of the (sorted) due list and vacates it.
    #[inline]
    fn pop_due(&mut self, head: u32) -> (TimerKey, T) {
        let index = head as usize;
        let next = self.entries[index].next;
        self.lists[DUE].head = next;
        if next == NIL {
            self.lists[DUE].tail = NIL;
        } else {
            self.entries[next as usize].prev = NIL;
        }
        let generation = self.entries[index].generation;
        let value = self.release(index);
        (
            TimerKey {
                index: head,
                generation,
            },
            value,
        )
    }

    /// Checks every internal invariant; panics on a violation.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut seen = 0usize;
        for list in 0..LIST_COUNT {
            let List { head, tail } = self.lists[list];
            let mut prev = NIL;
            let mut i = head;
            let mut min = u64::MAX;
            let mut last_deadline = 0;
            while i != NIL {
                let e = &self.entries[i as usize];
                assert_eq!(e.list as usize, list);
                assert_eq!(e.prev, prev);
                assert!(e.value.is_some());
                min = min.min(e.deadline);
                if list < WHEEL_LISTS {
                    let (level, slot) = (list / SLOTS, list % SLOTS);
                    assert!(e.deadline > self.elapsed);
                    let bit = 63 - (self.elapsed ^ e.deadline).leading_zeros();
                    assert_eq!((bit / SLOT_BITS) as usize, level);
                    let shift = level as u32 * SLOT_BITS;
                    assert_eq!((e.deadline >> shift) as usize & (SLOTS - 1), slot);
                    assert!(slot > (self.elapsed >> shift) as usize & (SLOTS - 1));
                } else if list == OVERFLOW {
                    assert!(e.deadline > self.elapsed);
                    assert!((self.elapsed ^ e.deadline) >= WHEEL_RANGE);
                } else {
                    assert!(e.deadline <= self.elapsed);
                    if self.due_sorted {
                        assert!(e.deadline >= last_deadline);
                    }
                    last_deadline = e.deadline;
                }
                seen += 1;
                prev = i;
                i = e.next;
            }
            assert_eq!(tail, prev);
            if list < WHEEL_LISTS {
                let bit = self.occupied[list / SLOTS] >> (list % SLOTS) & 1;
                assert_eq!(bit == 1, head != NIL);
            }
            if list <= OVERFLOW {
                assert!(self.lower[list] <= min);
                if head == NIL {
                    assert_eq!(self.lower[list], u64::MAX);
                } else if list < WHEEL_LISTS {
                    // The bound stays inside the slot's span.
                    let shift = (list / SLOTS) as u32 * SLOT_BITS;
                    assert_eq!(self.lower[list] >> shift, min >> shift);
                } else {
                    assert!(self.lower[list] & !(WHEEL_RANGE - 1) > self.elapsed);
                }
            }
        }
        assert_eq!(seen, self.len);
        let mut vacant = 0;
        let mut i = self.free_head;
        while i != NIL {
            let e = &self.entries[i as usize];
            assert_eq!(e.list, VACANT);
            assert!(e.value.is_none());
            vacant += 1;
            i = e.next;
        }
        assert_eq!(vacant + self.len, self.entries.len());
    }
}

/// The iterator returned by [`TimerWheel::advance`]: yields every timer
/// whose deadline is `<= now`, in deadline order, FIFO among equal
/// deadlines.
///
/// Dropping it early leaves the remaining due timers in the wheel; see
/// [`TimerWheel::advance`].
#[must_use = "the wheel only advances as the iterator is consumed"]
pub struct Expired<'a, T> {
    wheel: &'a mut TimerWheel<T>,
    now: u64,
}

impl<T> fmt::Debug for Expired<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expired")
            .field("now", &self.now)
            .field("wheel", &self.wheel)
            .finish()
    }
}

impl<T> Iterator for Expired<'_, T> {
    type Item = (TimerKey, T);

    #[inline]
    fn next(&mut self) -> Option<(TimerKey, T)> {
        let wheel = &mut *self.wheel;
        loop {
            let head = wheel.lists[DUE].head;
            if head != NIL {
                return Some(wheel.pop_due(head));
            }
            match wheel.next_expiration() {
                Some((list, start)) if start <= self.now => wheel.process(list, start, self.now),
                _ => {
                    wheel.elapsed = self.now;
                    return None;
                }
            }
        }
    }
}

impl<T> FusedIterator for Expired<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// Log-uniform in `0..2^max_bits`.
        fn spread(&mut self, max_bits: u32) -> u64 {
            let bits = (self.next() % u64::from(max_bits + 1)) as u32;
            if bits == 0 {
                0
            } else {
                self.next() & (u64::MAX >> (64 - bits))
            }
        }
    }

    #[test]
    fn entry_is_small() {
        assert_eq!(std::mem::size_of::<Entry<()>>(), 24);
        assert_eq!(std::mem::size_of::<Entry<u64>>(), 40);
        assert_eq!(std::mem::size_of::<Entry<std::num::NonZeroU64>>(), 32);
    }

    #[test]
    fn invariants_hold_under_random_operations() {
        for seed in 1..=40u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let start = match seed % 4 {
                0 => 0,
                1 => rng.next() >> 1,
                2 => u64::MAX - (1 << 40),
                _ => WHEEL_RANGE - 5_000,
            };
            let mut wheel = TimerWheel::with_start(start);
            let mut keys = Vec::new();
            for _ in 0..2_000 {
                let now = wheel.now();
                match rng.next() % 10 {
                    0..=3 => {
                        let deadline = if rng.next().is_multiple_of(8) {
                            now.saturating_sub(rng.spread(20))
                        } else {
                            now.saturating_add(rng.spread(44))
                        };
                        keys.push(wheel.insert(deadline, ()));
                    }
                    4 | 5 if !keys.is_empty() => {
                        let k = keys[(rng.next() % keys.len() as u64) as usize];
                        wheel.cancel(k);
                    }
                    6 if !keys.is_empty() => {
                        let k = keys[(rng.next() % keys.len() as u64) as usize];
                        wheel.reset(k, now.saturating_add(rng.spread(44)));
                    }
                    _ => {
                        let to = match rng.next() % 3 {
                            0 => wheel.next_deadline().unwrap_or(now),
                            _ => now.saturating_add(rng.spread(40)),
                        };
                        let take = (rng.next() % 4) as usize;
                        let mut it = wheel.advance(to);
                        if take == 0 {
                            // Drop the iterator early now and then.
                            let _ = it.next();
                        } else {
                            it.for_each(drop);
                        }
                    }
                }
                wheel.check_invariants();
            }
        }
    }
}
