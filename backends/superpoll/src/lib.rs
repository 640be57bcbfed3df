//! The superpoll backend for evmux: busy descriptors in a `poll(2)` array,
//! idle ones in an `epoll(7)` set, one wait for both.
//!
//! `poll(2)` costs O(registered) per wait but nothing per change; `epoll(7)`
//! costs O(ready) per wait but a syscall per change, and each ready event
//! costs it more kernel work than a `pollfd` entry costs `poll(2)` (epoll
//! re-polls the file to queue a level-triggered item again, and copies the
//! event out; when readiness comes and goes, each new readiness also runs
//! epoll's wake-up callback in the writer, and the emptied item is
//! re-polled once more at the next wait). Which is cheaper depends on the
//! *active/total ratio* (ATR), or per descriptor on its probability of
//! being ready at a wait: on this project's reference machine (Linux 6.18,
//! x86_64) a `pollfd` entry costs ~60 ns per wait whether ready or not. An
//! epoll event of a descriptor that *stays* ready costs ~110 ns, which puts
//! the break-even at an ATR of ~0.6 (the 0.6 of Zed Shaw's "superpoll"
//! article); one whose readiness *moves* (read empty when reported, made
//! ready again by a send, as in the chain benchmark and most servers) costs
//! ~4–5 entries, and the break-even falls to ~0.2 (see
//! [Defaults](#defaults)). This backend keeps each descriptor in the half
//! that suits it: the *hot* half is a `pollfd` array scanned at every wait,
//! the *cold* half is an epoll set whose own descriptor sits in that array
//! with `POLLIN`. One `poll(2)` waits on everything; only when the epoll
//! descriptor polls readable does the wait add one `epoll_wait(2)` with a
//! zero timeout to collect the cold readiness. When every registration is
//! cold (and there is no waker), the wait is a plain `epoll_wait(2)`.
//!
//! ```
//! use std::os::fd::AsRawFd;
//! use std::time::Duration;
//!
//! use evmux_interest::{Events, Interest, Mode, Poller, Token};
//! use evmux_superpoll::SuperpollBackend;
//!
//! let (r, w) = evmux_sys::fd::pipe()?;
//! let mut poller = Poller::new(SuperpollBackend::new()?);
//! poller.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)?;
//! evmux_sys::fd::write(&w, b"x")?;
//! let mut events = Events::with_capacity(16);
//! poller.get_next_event(&mut events, Some(Duration::from_secs(1)))?;
//! assert_eq!(events.as_slice()[0].token, Token(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Migration policy
//!
//! Every registration carries an *activity score*: an exponential moving
//! average, over waits, of "was reported ready at this wait", with a
//! half-life of [`SuperpollConfig::half_life`] waits. It estimates the
//! probability that the descriptor is ready at a wait, which is directly
//! comparable with the break-even ATR (a descriptor reported once every
//! `k` waits settles near `1/k`). For a cold descriptor, each
//! `epoll_ctl` that a change of the driver costs it counts as half a ready
//! report (a change is a syscall in the cold half and free in the hot
//! one). Counted as a whole report, it made a connection that flips its
//! interest at a low rate (the churn benchmark: a request every ~20 waits,
//! two reports and two flips each) score ~0.29 at its peaks cold, above
//! the promotion threshold, and ~0.1 on average hot, below the demotion
//! one, so it went round between the halves for good; with half, it
//! settles cold, which measured better there (the epoll half alone: 0.97×
//! raw epoll against 0.82× going round, the array alone ~0.7×). Scores are
//! updated lazily (decayed by the number of waits since the last update),
//! so an idle descriptor costs no work at all per wait.
//!
//! - New registrations start hot, with the score of a just-promoted
//!   descriptor ([`promote_above`](SuperpollConfig::promote_above)): a
//!   brand-new descriptor is likely to be active, and adding it to the
//!   array costs nothing. One that stays idle decays below
//!   [`demote_below`](SuperpollConfig::demote_below) after
//!   `half_life * log2(promote_above / demote_below)` waits.
//! - Every [`interval`](SuperpollConfig::interval) waits (by default at
//!   every wait) the backend evaluates, moving at most
//!   [`max_moves`](SuperpollConfig::max_moves) descriptors:
//!   - a cold descriptor whose score rose above
//!     [`promote_above`](SuperpollConfig::promote_above) at a report since
//!     the last evaluation is *promoted* (`EPOLL_CTL_DEL`, appended to the
//!     array);
//!   - a hot descriptor whose score decayed below
//!     [`demote_below`](SuperpollConfig::demote_below) is *demoted*
//!     (`EPOLL_CTL_ADD`, removed from the array). Demotion candidates are
//!     found by a scan of the array, resumed where the previous one ended,
//!     that goes round the whole array every `half_life / 2` waits (an
//!     eighth of it per wait by default: a score loses at most 29% in that
//!     time). Only entries that went through a wait since the batch last
//!     changed them, and that are neither disabled nor pinned, are demoted.
//!
//!   Evaluating at every wait spreads a large migration evenly over the
//!   waits (at most `max_moves` `epoll_ctl` calls in any one), and every
//!   wait of a migration under way moves something.
//! - Hysteresis: the two thresholds straddle the break-even closely, so
//!   that the steady-state placement follows it; a descriptor that moved
//!   stays put for [`min_stay`](SuperpollConfig::min_stay) waits, and
//!   `max_moves` bounds the `epoll_ctl` calls of any one wait, which
//!   together bound what descriptors hovering around the break-even can
//!   cost.
//! - The set rule of the seed article: each half also tracks its load, the
//!   cost of its traffic in the *other* mechanism relative to its cost where
//!   it is, as a moving average over waits. With `B` =
//!   [`break_even`](SuperpollConfig::break_even) and `E` =
//!   [`epoll_wait_cost`](SuperpollConfig::epoll_wait_cost) (the fixed cost
//!   of the extra `epoll_wait`, in `pollfd` entries):
//!   - cold load = `(ready_cold / B + E * woke) / cold`: above 1, the epoll
//!     set as a whole would be cheaper polled ("epoll loses at a high ATR").
//!     The promotion threshold then drops to `B`;
//!   - hot load = `(ready_hot / B + E * any_ready_hot) / hot`: below 1, the
//!     array as a whole would be cheaper in epoll ("poll loses at a low
//!     ATR"). The demotion threshold then rises to `B`, unless the cold
//!     half is under pressure at the same time (the halves never trade
//!     descriptors in both directions at once).
//!
//!   With `E = 0` this is exactly the seed's rule (ATR against `B`); the
//!   `E` term accounts for the syscall a busy cold half adds to every wait.
//! - Descriptors epoll refuses (`EPERM`: regular files, which `poll(2)`
//!   reports `IN|OUT` natively) are pinned in the array when a demotion is
//!   attempted.
//! - Parked registrations: when the driver stops watching a registration
//!   without forgetting it (a fired oneshot, an edge registration with every
//!   direction disarmed), the backend keeps its score and half, out of
//!   both kernel sets; when the same registration is watched again it
//!   returns to its half (a cold one is promoted on the way if its score
//!   calls for it: that move is free, as nothing is in the epoll set). A
//!   parked record whose descriptor number is registered under a new key is
//!   replaced; records idle for long are swept once they outnumber the live
//!   registrations.
//!
//! ### Defaults
//!
//! [`SuperpollConfig::default`] comes from `examples/breakeven.rs` (raw
//! `poll` against raw `epoll_wait` on 1000 socketpairs, interleaved,
//! medians over rounds; run it on the target machine to retune). Its first
//! table holds readiness still (the same descriptors ready at every wait):
//! a `pollfd` entry ~60 ns, an epoll ready event ~110 ns, an empty
//! `epoll_wait` ~120 ns (`E` ≈ 2 entries), `epoll_ctl` ~220 ns (~4
//! entries), crossing at ATR 0.56–0.60. That is the price of a descriptor
//! that stays ready, which a score rarely describes: a descriptor that is
//! read empty when reported is made ready again by a write, and in an
//! epoll set every such write runs epoll's wake-up callback (in the
//! writer, on the program's own time when it writes to itself, as the chain
//! benchmark does), and the emptied item is re-polled once more at the next
//! wait. `examples/backends.rs` re-draws readiness before every wait but
//! does not time that I/O, and finds ~0.5. The example's last table moves
//! readiness the chain benchmark's way, I/O timed and identical in both
//! loops: an epoll event then costs ~4–5 `pollfd` entries, and the
//! crossing falls to a ready probability of 0.21 at 1000 descriptors (at
//! 9000, where an entry costs more, the two stay within ±2% of each other
//! from 0.15 to 0.3 and part from 0.35, and cross first at 0.14). The chain
//! benchmark, through the driver, agrees: a pair ready once every 5 waits
//! (its ATR 0.3) costs less in the array at 1000 and at 9000 pairs, one
//! ready once every 11 waits (ATR 0.1) less in epoll. Once every 6 waits
//! (ATR 0.2) is a tie across sizes, ~10% in epoll's favour at 1000 pairs
//! and as much in the array's at 9000; splitting them, the busiest fifth
//! left in a sparse array (whose entries, by the profile, each cost more
//! than a dense array's), was worse than either (1.1–1.3× the better raw
//! loop). That busiest fifth is the chain's own shape: at ATR 0.2 each
//! of the 200 tokens goes 5 pairs on in a round of 6 waits, so 200 pairs
//! are ready twice a round (0.33 a wait) and 800 once (0.17). Any
//! per-descriptor break-even between the two splits the set (0.23 did,
//! with the band of ±0.04 and with one of ½× to 2×), and the split
//! measured 1.05–1.08× raw epoll at 1000 pairs, no better than the whole
//! array (BENCHMARKS.md, "superpoll"). At its ATR 0.5,
//! where half of the pairs are ready once every 3 waits, moving those to
//! epoll (as a break-even of 0.55 does) cost ~10% more CPU time than
//! keeping everything in the array.
//!
//! Hence `break_even` 0.18 and a band of ±0.04 around it, `demote_below`
//! 0.14 and `promote_above` 0.22: at its edges a move pays for its
//! `epoll_ctl` within about `min_stay` waits, and the score of a periodic
//! descriptor swings by less than the band (ready once every 10 waits:
//! 0.08–0.12, below it; every 6: 0.15–0.18, inside; every 3: 0.31–0.35,
//! above). A descriptor ready at random (Bernoulli) near the break-even has
//! a score deviation of ~0.06 and crosses the band now and then; near the
//! break-even either half costs about the same, and `min_stay` 32 (two
//! half-lives) with `max_moves` 32 per evaluation (at most ~8 µs of
//! `epoll_ctl` in a wait) bound what that churn costs. `interval` 1: 9000
//! new descriptors that belong in epoll are all there after ~300 waits. An
//! idle new descriptor is demoted after 11–18 waits (5–12 while the array
//! is under pressure).
//!
//! ## Syscalls per wait
//! - One `poll(2)`, always, unless the array holds nothing but the epoll
//!   descriptor (every registration cold, no waker): then one
//!   `epoll_wait(2)` with the wait's timeout instead, and nothing else.
//! - Plus one `epoll_wait(2)` (timeout zero) when a cold descriptor is
//!   ready and there is room left in `max_events`.
//! - Plus one eventfd `read(2)` when the waker fired.
//! - Changes: none for a hot registration; one `epoll_ctl` for a cold one
//!   (`MOD`, or `DEL` when the driver stops watching it, `ADD` when it
//!   watches it again). A forgotten cold registration's `DEL` is made in
//!   `forget`, not in the batch.
//! - Migrations, at most `max_moves` per evaluation: one `epoll_ctl` each.
//!
//! ## Portability notes
//! - Linux (and Android) only.
//! - Both halves are level-triggered (no `EPOLLET`): this backend reports
//!   [`Capabilities::native_edge`] and [`Capabilities::native_oneshot`] as
//!   false, so the driver only ever sends [`Trigger::Level`] watches and
//!   emulates edge and oneshot by changing the watch. Because both halves
//!   report the readiness a descriptor has *at the time of the wait*, a
//!   descriptor that moves between the halves (always between waits, after
//!   the batch is applied and before `poll(2)`) reports exactly what it
//!   would have reported in either: migrations do not change the stream. A
//!   descriptor is never in both halves.
//! - The `pollfd` array is kept incrementally (append, `swap_remove`,
//!   rewrite in place), never rebuilt. Position 0 is the epoll descriptor
//!   (its `fd` is -1, skipped by the kernel, while the cold half is empty);
//!   position 1 is the waker once it exists.
//! - Readable interest is `POLLIN | POLLRDHUP` (`EPOLLIN | EPOLLRDHUP`),
//!   writable is `POLLOUT` (`EPOLLOUT`); the bit values are the same in
//!   both mechanisms, and readiness is limited to [`Ready::reportable`] of
//!   the watched interest.
//! - Closed descriptors, as in the poll and epoll backends: a change of
//!   this call's batch that meets a closed descriptor is refused with
//!   `EBADF` (epoll says so at `EPOLL_CTL_ADD`/`MOD`; in the array, a
//!   `POLLNVAL` on an entry the batch added or changed, where freshness
//!   lasts until a wait completes, so the driver's retry after `EINTR`
//!   still rejects) and leaves nothing behind. A descriptor closed under an
//!   older registration that was never forgotten is silent: epoll drops it
//!   with the last reference to the file; in the array the entry is
//!   disabled in place until the driver changes or removes it. A
//!   `EPOLL_CTL_DEL` refused with `EBADF`/`ENOENT` means the descriptor is
//!   gone already and is not an error.
//! - A change of a cold registration that epoll refuses for another reason
//!   (`ENOMEM`, `ENOSPC`, …) is an error event and leaves the old watch in
//!   the epoll set, as the epoll backend does (the driver takes a refused
//!   change's old watch as the kernel's). A promotion whose
//!   `EPOLL_CTL_DEL` is refused so is put off to a later evaluation, so
//!   that no entry is left in the epoll set behind a hot registration.
//! - `forget` of a cold registration removes it from the epoll set at once
//!   ([`Backend::forget_now`], one `EPOLL_CTL_DEL`), while the program
//!   still holds the descriptor, so "forget, then close" leaves nothing
//!   behind even when the file is `dup`ed elsewhere; when that `DEL` fails
//!   for another reason than a closed descriptor, the next batch tries
//!   again. `forget` of a hot registration makes no syscall.
//! - As with epoll, a cold descriptor closed while registered but `dup`ed
//!   elsewhere stays in the epoll set (epoll drops an entry only with the
//!   file's last reference); once the registration is gone its reports
//!   carry a tag (slot index and a per-`ADD` nonce) that no longer matches
//!   and are dropped. Such a stale entry keeps the epoll descriptor
//!   readable while its file is ready, so waits do not block then. As with
//!   poll, a hot descriptor closed and its number reused without forgetting
//!   the registration is watched under the old registration.
//! - `max_events`: at most that many entries per call, at most one per key.
//!   If more hot entries are ready than fit, the array scan resumes where
//!   the previous one stopped (round-robin); cold readiness beyond the room
//!   stays ready in the kernel (both halves are level-triggered).
//!   `epoll_wait` is asked for the room plus a few places for stale entries
//!   (below), more when they fill it, and is called again (a bounded number
//!   of times) while they crowd out live reports. When a call is full, the halves take turns going first, so
//!   neither starves the other.
//! - The waker is an `eventfd(2)` in the array, created at the first
//!   [`Backend::waker`] call; wakes coalesce.
//! - A wait interrupted by a signal returns `ErrorKind::Interrupted`; the
//!   batch was applied already. When the batch produced a rejection, the
//!   wait does not block.
//! - Descriptor limits: none beyond `RLIMIT_NOFILE` and epoll's
//!   `max_user_watches`; [`Capabilities::max_fd`] is `None`. A demotion that
//!   epoll refuses for any reason other than a closed descriptor pins the
//!   descriptor in the array. An `EBADF` counts as "closed" only when the
//!   number is indeed closed (`fcntl(F_GETFD)`); otherwise the demotion is
//!   abandoned and the descriptor stays hot, unchanged.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg(any(target_os = "linux", target_os = "android"))]

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evmux_interest::{
    Backend, Capabilities, Change, Interest, Key, Output, RawEvent, Ready, Rejection, Trigger, Wake,
};
use evmux_sys::epoll::{Epoll, EpollEvent, flags};
use evmux_sys::eventfd::Notifier;
use evmux_sys::poll::{POLLIN, POLLNVAL, POLLOUT, POLLRDHUP, PollFd, poll};

const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EIO: i32 = 5;
const EBADF: i32 = 9;
const EEXIST: i32 = 17;

/// Marks the reserved positions (epoll descriptor, waker) in the array's
/// metadata.
const RESERVED: u32 = u32::MAX;

/// How many powers of the decay factor are tabulated.
const POWERS: usize = 64;

/// Parked records are swept when there are more than this many and they
/// outnumber the live registrations.
const PARKED_SLACK: usize = 64;

/// The inner `epoll_wait` asks for this many reports beyond the room for
/// the cold registrations, for stale entries (see `collect_cold`).
const STALE_SLACK: usize = 4;

/// How many times one wait calls `epoll_wait` again when stale entries
/// filled its buffer.
const STALE_RETRIES: usize = 8;

/// The demotion scan goes round the array this many times per half-life of
/// the scores (see `scan_len`).
const SCAN_PER_HALF_LIFE: usize = 2;

/// Tuning of the migration policy; see the crate documentation.
///
/// Scores are in `0.0..=1.0` (the estimated probability that a descriptor
/// is ready at a wait). Under the set rule a half's threshold moves to
/// `break_even`, so thresholds outside `0.0..=1.0` alone do not stop
/// migration; `max_moves = 0` does (everything stays in the array).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct SuperpollConfig {
    /// A cold descriptor whose activity score is above this at a report is
    /// promoted to the `poll(2)` array; also the score new registrations
    /// start with. Default 0.22.
    pub promote_above: f64,
    /// A hot descriptor whose activity score decayed below this is demoted
    /// to the epoll set. Default 0.14.
    pub demote_below: f64,
    /// Evaluate migrations every this many waits (at least 1). Default 1.
    pub interval: u32,
    /// Move at most this many descriptors per evaluation. Default 32.
    pub max_moves: usize,
    /// Half-life of the activity score, in waits (at least 1). Default 16.
    pub half_life: u32,
    /// A descriptor that moved is not moved again for this many waits.
    /// Default 32.
    pub min_stay: u32,
    /// The active/total ratio at which poll and epoll cost the same per
    /// wait (`pollfd` entry cost / epoll ready-event cost, readiness moving
    /// as described in the crate docs); the set rule's reference, and the
    /// threshold a half under pressure moves to. Must lie between
    /// `demote_below` and `promote_above`. Default 0.18.
    pub break_even: f64,
    /// The fixed cost of the extra `epoll_wait(2)` of a wait whose cold half
    /// is ready, in `pollfd` entries. Default 2.0.
    pub epoll_wait_cost: f64,
}

impl Default for SuperpollConfig {
    /// The defaults measured with `examples/breakeven.rs` on the reference
    /// machine: break-even ATR 0.18 (readiness that moves), a hysteresis
    /// band of ±0.04 around it, `epoll_wait` worth 2 `pollfd` entries,
    /// evaluated at every wait.
    fn default() -> SuperpollConfig {
        SuperpollConfig {
            promote_above: 0.22,
            demote_below: 0.14,
            interval: 1,
            max_moves: 32,
            half_life: 16,
            min_stay: 32,
            break_even: 0.18,
            epoll_wait_cost: 2.0,
        }
    }
}

impl SuperpollConfig {
    fn validate(&self) -> io::Result<()> {
        let finite = [
            self.promote_above,
            self.demote_below,
            self.break_even,
            self.epoll_wait_cost,
        ]
        .iter()
        .all(|x| x.is_finite());
        let ok = finite
            && self.interval >= 1
            && self.half_life >= 1
            && self.demote_below <= self.break_even
            && self.break_even <= self.promote_above
            && self.break_even > 0.0
            && self.epoll_wait_cost >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid SuperpollConfig: {self:?}"),
            ))
        }
    }
}

/// Counters for tests and benchmarks; see [`SuperpollBackend::stats`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SuperpollStats {
    /// Registrations in the `poll(2)` array (disabled ones included).
    pub hot: usize,
    /// Registrations in the epoll set.
    pub cold: usize,
    /// Moves from the epoll set to the array, since creation.
    pub promotions: u64,
    /// Moves from the array to the epoll set, since creation.
    pub demotions: u64,
}

/// How much of a ready report an `epoll_ctl` of a cold registration counts
/// for in its score (see "Migration policy").
const CHANGE_WEIGHT: f64 = 0.5;

/// Descriptor number → record: the driver's dense map (small numbers index
/// an array; a hash table that could double under steady churn is only the
/// fallback for large ones).
type FdMap = evmux_interest::DenseMap<RawFd, u32>;

/// Where a registration is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Place {
    /// In the array, at this position.
    Hot(u32),
    /// In the epoll set, at this position of the cold list.
    Cold(u32),
    /// Watched by neither half (the driver's watch is `None`), remembering
    /// the half it left.
    Parked { cold: bool },
    /// A free record.
    Free,
}

/// One registration (or parked record).
#[derive(Copy, Clone, Debug)]
struct Reg {
    key: Key,
    fd: RawFd,
    interest: Interest,
    place: Place,
    /// Hot only: closed under its registration, `pollfd.fd` is -1.
    disabled: bool,
    /// epoll refused it: never demoted.
    pinned: bool,
    /// In the promotion queue.
    queued: bool,
    /// The epoch whose batch last added or changed it.
    changed: u64,
    /// Tag of the current epoll registration (with the record index).
    nonce: u32,
    /// Activity score as of `scored_at`.
    score: f64,
    scored_at: u64,
    /// Not moved before this epoch.
    settled_at: u64,
    /// `epoch + 1` of the last wait whose epoll half reported it (0:
    /// never): at most one event per key when `epoll_wait` is called again.
    reported: u64,
}

impl Reg {
    /// Adds `weight` of a report to the score at `epoch`; a cold record
    /// rising above `break_even` joins the promotion `queue`.
    #[inline(always)]
    fn score_report(
        &mut self,
        idx: u32,
        weight: f64,
        decay: &Decay,
        epoch: u64,
        break_even: f64,
        queue: &mut Vec<(u32, u32)>,
    ) {
        let faded = self.score * decay.over(epoch.saturating_sub(self.scored_at));
        self.score = (faded + weight * decay.gain).min(1.0);
        self.scored_at = epoch;
        if matches!(self.place, Place::Cold(_)) && !self.queued && self.score > break_even {
            self.queued = true;
            queue.push((idx, self.nonce));
        }
    }
}

/// The parts of the backend that [`SuperpollBackend::collect_hot`]'s scan
/// works on.
struct HotScan<'a> {
    fds: &'a mut [PollFd],
    hot: &'a [u32],
    regs: &'a mut [Reg],
    queue: &'a mut Vec<(u32, u32)>,
    rotor: &'a mut usize,
    decay: &'a Decay,
    epoch: u64,
    break_even: f64,
    first: usize,
}

/// How scores fade: by `factor` per wait, its powers in two tables.
#[derive(Clone, Debug)]
struct Decay {
    /// `2^(-1/half_life)`.
    factor: f64,
    /// `1 - factor`: what one report adds to a score.
    gain: f64,
    /// `factor^k` for `k < POWERS`.
    lo: [f64; POWERS],
    /// `factor^(POWERS * k)` for `k < POWERS`: with `lo`, any gap below
    /// `POWERS²` waits in two loads and a multiply.
    hi: [f64; POWERS],
}

impl Decay {
    fn new(half_life: u32) -> Decay {
        let factor = 0.5f64.powf(1.0 / f64::from(half_life));
        let mut lo = [1.0; POWERS];
        for k in 1..POWERS {
            lo[k] = lo[k - 1] * factor;
        }
        let step = factor.powi(POWERS as i32);
        let mut hi = [1.0; POWERS];
        for k in 1..POWERS {
            hi[k] = hi[k - 1] * step;
        }
        Decay {
            factor,
            gain: 1.0 - factor,
            lo,
            hi,
        }
    }

    /// `factor^waits`: from the tables below `POWERS²` waits (a descriptor
    /// reported once per chain round at ATR 0.01 comes back after ~100
    /// waits; `powi` there cost ~45 instructions a report).
    #[inline(always)]
    fn over(&self, waits: u64) -> f64 {
        const P: u64 = POWERS as u64;
        if waits < P {
            self.lo[waits as usize]
        } else if waits < P * P {
            self.lo[(waits % P) as usize] * self.hi[(waits / P) as usize]
        } else {
            self.factor.powi(i32::try_from(waits).unwrap_or(i32::MAX))
        }
    }
}

/// The superpoll backend. See the crate documentation.
pub struct SuperpollBackend {
    cfg: SuperpollConfig,
    /// How scores fade between reports.
    decay: Decay,
    epoll: Epoll,
    /// The array handed to `poll(2)`: position 0 is the epoll descriptor,
    /// position 1 the waker once it exists.
    fds: Vec<PollFd>,
    /// Record index per array position ([`RESERVED`] for 0 and the waker).
    hot: Vec<u32>,
    /// Record indices of the cold half.
    cold: Vec<u32>,
    regs: Vec<Reg>,
    free: Vec<u32>,
    by_fd: FdMap,
    parked: usize,
    waker: Option<Arc<SuperpollWaker>>,
    /// The first array position holding a registration.
    first: usize,
    /// Counts completed waits.
    epoch: u64,
    next_eval: u64,
    /// When parked records are next swept (every half-life).
    next_sweep: u64,
    /// Round-robin start of the collecting scan (relative to `first`).
    rotor: usize,
    /// Where the next demotion scan starts (relative to `first`).
    demote_rotor: usize,
    /// When a call is full, which half goes first next time.
    cold_first: bool,
    doomed: Vec<usize>,
    buf: Vec<EpollEvent>,
    /// Cold records whose score rose above `break_even` since the last
    /// evaluation: (record index, nonce).
    queue: Vec<(u32, u32)>,
    next_nonce: u32,
    /// Extra room asked of the inner `epoll_wait` for entries the backend
    /// no longer knows of (see [`STALE_SLACK`]); grows when they fill it.
    stale_slack: usize,
    hot_load: f64,
    cold_load: f64,
    promotions: u64,
    demotions: u64,
    start: Instant,
    /// Signal and process sources ([`Backend::open_source`]).
    #[cfg(target_os = "linux")]
    sources: evmux_sys::source::Sources,
}

impl fmt::Debug for SuperpollBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuperpollBackend")
            .field("stats", &self.stats())
            .field("parked", &self.parked)
            .field("waker", &self.waker.is_some())
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn poll_events(interest: Interest) -> i16 {
    let mut events = 0;
    if interest.is_readable() {
        events |= POLLIN | POLLRDHUP;
    }
    if interest.is_writable() {
        events |= POLLOUT;
    }
    events
}

fn epoll_events(interest: Interest) -> u32 {
    let mut f = 0;
    if interest.is_readable() {
        f |= flags::EPOLLIN | flags::EPOLLRDHUP;
    }
    if interest.is_writable() {
        f |= flags::EPOLLOUT;
    }
    f
}

/// `revents` as a [`Ready`] mask (`POLLNVAL` is handled before).
fn ready_from_revents(revents: i16) -> Ready {
    Ready::from_linux(u32::from(revents.cast_unsigned()))
}

/// epoll's bits have `poll(2)`'s values on Linux, which [`Ready`] uses.
fn ready_from_epoll(bits: u32) -> Ready {
    Ready::from_linux(bits)
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(EIO)
}

fn tag(idx: u32, nonce: u32) -> u64 {
    (u64::from(nonce) << 32) | u64::from(idx)
}

impl SuperpollBackend {
    /// A new backend with the default policy ([`SuperpollConfig::default`]).
    ///
    /// # Errors
    /// As [`with_config`](Self::with_config).
    pub fn new() -> io::Result<SuperpollBackend> {
        SuperpollBackend::with_config(SuperpollConfig::default())
    }

    /// A new backend with the given policy. Creates the epoll instance
    /// (`epoll_create1(EPOLL_CLOEXEC)`); the waker's eventfd is created at
    /// the first [`Backend::waker`] call.
    ///
    /// # Errors
    /// `InvalidInput` for a config that is not finite, has `interval` or
    /// `half_life` zero, or does not satisfy
    /// `demote_below <= break_even <= promote_above` with `break_even > 0`
    /// and `epoll_wait_cost >= 0`; `EMFILE`/`ENFILE`/`ENOMEM` from
    /// `epoll_create1`.
    pub fn with_config(cfg: SuperpollConfig) -> io::Result<SuperpollBackend> {
        cfg.validate()?;
        let epoll = Epoll::new()?;
        Ok(SuperpollBackend {
            cfg,
            decay: Decay::new(cfg.half_life),
            epoll,
            // The epoll descriptor is enabled while the cold half is not
            // empty.
            fds: vec![PollFd {
                fd: -1,
                events: POLLIN,
                revents: 0,
            }],
            hot: vec![RESERVED],
            cold: Vec::new(),
            regs: Vec::new(),
            free: Vec::new(),
            by_fd: FdMap::default(),
            parked: 0,
            waker: None,
            first: 1,
            epoch: 0,
            next_eval: u64::from(cfg.interval),
            next_sweep: u64::from(cfg.half_life),
            rotor: 0,
            demote_rotor: 0,
            cold_first: false,
            doomed: Vec::new(),
            buf: Vec::with_capacity(64),
            queue: Vec::new(),
            next_nonce: 0,
            stale_slack: STALE_SLACK,
            hot_load: 1.0,
            cold_load: 0.0,
            promotions: 0,
            demotions: 0,
            start: Instant::now(),
            #[cfg(target_os = "linux")]
            sources: evmux_sys::source::Sources::default(),
        })
    }

    /// The policy in use.
    pub fn config(&self) -> &SuperpollConfig {
        &self.cfg
    }

    /// Sizes of the halves and migration counts. For tests and benchmarks.
    #[doc(hidden)]
    pub fn stats(&self) -> SuperpollStats {
        SuperpollStats {
            hot: self.fds.len() - self.first,
            cold: self.cold.len(),
            promotions: self.promotions,
            demotions: self.demotions,
        }
    }

    /// How many registrations are parked (watched by neither half). For
    /// tests.
    #[doc(hidden)]
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// How many array entries are disabled (closed under their
    /// registration). For tests.
    #[doc(hidden)]
    pub fn disabled_entries(&self) -> usize {
        self.fds[self.first..].iter().filter(|p| p.fd < 0).count()
    }

    /// Whether the registration of `fd` is in the array (`Some(true)`), in
    /// the epoll set (`Some(false)`), or neither. For tests.
    #[doc(hidden)]
    pub fn is_hot(&self, fd: RawFd) -> Option<bool> {
        let idx = *self.by_fd.get(&fd)?;
        match self.regs[idx as usize].place {
            Place::Hot(_) => Some(true),
            Place::Cold(_) => Some(false),
            Place::Parked { .. } | Place::Free => None,
        }
    }

    // ----- scores -------------------------------------------------------

    /// The score of `r` decayed to the current epoch.
    #[inline(always)]
    fn score_now(&self, r: &Reg) -> f64 {
        r.score * self.decay.over(self.epoch.saturating_sub(r.scored_at))
    }

    /// Records activity of record `idx` at the current epoch.
    #[inline(always)]
    fn bump(&mut self, idx: u32) {
        self.bump_by(idx, 1.0);
    }

    /// Records an `epoll_ctl` that a change of the driver cost cold record
    /// `idx`, as [`CHANGE_WEIGHT`] of a report.
    fn bump_change(&mut self, idx: u32) {
        self.bump_by(idx, CHANGE_WEIGHT);
    }

    /// Records `weight` of a report's activity of record `idx`.
    #[inline(always)]
    fn bump_by(&mut self, idx: u32, weight: f64) {
        let r = &mut self.regs[idx as usize];
        let (epoch, break_even) = (self.epoch, self.cfg.break_even);
        r.score_report(idx, weight, &self.decay, epoch, break_even, &mut self.queue);
    }

    fn promote_threshold(&self) -> f64 {
        if self.cold_pressure() {
            self.cfg.break_even
        } else {
            self.cfg.promote_above
        }
    }

    fn cold_pressure(&self) -> bool {
        !self.cold.is_empty() && self.cold_load > 1.0
    }

    fn hot_pressure(&self) -> bool {
        self.fds.len() > self.first && self.hot_load < 1.0 && !self.cold_pressure()
    }

    // ----- records and the two halves -----------------------------------

    /// A new record, parked (in neither half) until the caller places it.
    fn alloc(&mut self, key: Key, fd: RawFd, interest: Interest) -> u32 {
        let reg = Reg {
            key,
            fd,
            interest,
            place: Place::Parked { cold: false },
            disabled: false,
            pinned: false,
            queued: false,
            changed: self.epoch,
            nonce: 0,
            score: self.cfg.promote_above.clamp(0.0, 1.0),
            scored_at: self.epoch,
            settled_at: 0,
            reported: 0,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.regs[idx as usize] = reg;
                idx
            }
            None => {
                let idx = u32::try_from(self.regs.len()).expect("more than 2^32 registrations");
                self.regs.push(reg);
                idx
            }
        };
        self.by_fd.insert(fd, idx);
        self.parked += 1;
        idx
    }

    /// Frees a record that is in neither kernel set.
    fn release(&mut self, idx: u32) {
        let r = &mut self.regs[idx as usize];
        debug_assert!(!matches!(r.place, Place::Hot(_) | Place::Cold(_)));
        if matches!(r.place, Place::Parked { .. }) {
            self.parked -= 1;
        }
        r.place = Place::Free;
        r.queued = false;
        let fd = r.fd;
        if self.by_fd.get(&fd) == Some(&idx) {
            self.by_fd.remove(&fd);
        }
        self.free.push(idx);
    }

    /// Appends record `idx` (in neither set) to the array.
    fn add_hot(&mut self, idx: u32) {
        let pos = self.fds.len();
        let r = &mut self.regs[idx as usize];
        if matches!(r.place, Place::Parked { .. }) {
            self.parked -= 1;
        }
        r.place = Place::Hot(u32::try_from(pos).expect("array too large"));
        r.disabled = false;
        self.fds.push(PollFd {
            fd: r.fd,
            events: poll_events(r.interest),
            revents: 0,
        });
        self.hot.push(idx);
    }

    /// Takes the entry at array position `pos` out of the array in O(1);
    /// its record is left without a place (the caller gives it one).
    fn remove_hot(&mut self, pos: usize) -> u32 {
        debug_assert!(pos >= self.first);
        let idx = self.hot.swap_remove(pos);
        self.fds.swap_remove(pos);
        if let Some(&moved) = self.hot.get(pos) {
            self.regs[moved as usize].place = Place::Hot(pos as u32);
        }
        idx
    }

    /// Registers record `idx` (in neither set) with epoll. On failure the
    /// record is unchanged.
    fn add_cold(&mut self, idx: u32) -> Result<(), i32> {
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        let r = self.regs[idx as usize];
        let data = tag(idx, nonce);
        let events = epoll_events(r.interest);
        match self.epoll.add_raw(r.fd, events, data) {
            Ok(()) => {}
            // A registration for this file and number that the backend no
            // longer knows of: take it over.
            Err(e) if e.raw_os_error() == Some(EEXIST) => self
                .epoll
                .modify_raw(r.fd, events, data)
                .map_err(|e| errno(&e))?,
            Err(e) => return Err(errno(&e)),
        }
        let cpos = u32::try_from(self.cold.len()).expect("cold set too large");
        self.cold.push(idx);
        let r = &mut self.regs[idx as usize];
        if matches!(r.place, Place::Parked { .. }) {
            self.parked -= 1;
        }
        r.place = Place::Cold(cpos);
        r.nonce = nonce;
        r.queued = false;
        r.disabled = false;
        Ok(())
    }

    /// Takes record `idx` out of the epoll set (`EPOLL_CTL_DEL`, unless
    /// `in_kernel` is false; a closed descriptor has left already) and the
    /// cold list.
    fn remove_cold(&mut self, idx: u32, in_kernel: bool) {
        let Place::Cold(cpos) = self.regs[idx as usize].place else {
            unreachable!("remove_cold of a record that is not cold");
        };
        if in_kernel {
            let _ = self.epoll.delete_raw(self.regs[idx as usize].fd);
        }
        let cpos = cpos as usize;
        self.cold.swap_remove(cpos);
        if let Some(&moved) = self.cold.get(cpos) {
            self.regs[moved as usize].place = Place::Cold(cpos as u32);
        }
        self.regs[idx as usize].queued = false;
    }

    /// Takes record `idx` out of whichever kernel set holds it; the record
    /// is left parked in the half it left.
    fn unwatch(&mut self, idx: u32) {
        match self.regs[idx as usize].place {
            Place::Hot(pos) => {
                self.remove_hot(pos as usize);
                self.regs[idx as usize].place = Place::Parked { cold: false };
                self.parked += 1;
            }
            Place::Cold(_) => {
                self.remove_cold(idx, true);
                self.regs[idx as usize].place = Place::Parked { cold: true };
                self.parked += 1;
            }
            Place::Parked { .. } | Place::Free => {}
        }
    }

    // ----- the batch ----------------------------------------------------

    fn reject(&mut self, idx: u32, errno: i32, out: &mut Output) {
        out.rejected.push(Rejection {
            key: self.regs[idx as usize].key,
            errno,
        });
        self.release(idx);
    }

    fn apply(&mut self, c: &Change, out: &mut Output) {
        let existing = self.by_fd.get(&c.fd).copied();
        let Some(watch) = c.new else {
            // A removal, or a registration the driver stopped watching. No
            // record (or another key's): it was refused earlier.
            if let Some(idx) = existing
                && self.regs[idx as usize].key == c.key
            {
                if matches!(self.regs[idx as usize].place, Place::Cold(_)) {
                    // The EPOLL_CTL_DEL is activity of a cold descriptor.
                    self.bump_change(idx);
                }
                self.unwatch(idx);
            }
            return;
        };
        debug_assert_eq!(
            watch.trigger,
            Trigger::Level,
            "the driver sent a trigger superpoll does not have"
        );
        let idx = match existing {
            Some(idx) if self.regs[idx as usize].key == c.key => idx,
            other => {
                // A record for this number under another key: a parked
                // record of a forgotten registration, or one the driver
                // gave up on. Replace it.
                if let Some(old) = other {
                    self.unwatch(old);
                    self.release(old);
                }
                let idx = self.alloc(c.key, c.fd, watch.interest);
                self.add_hot(idx);
                return;
            }
        };
        let epoch = self.epoch;
        let r = &mut self.regs[idx as usize];
        let before = r.interest;
        r.interest = watch.interest;
        r.changed = epoch;
        match r.place {
            Place::Hot(pos) => {
                // A free rewrite, which also re-enables a disabled entry.
                r.disabled = false;
                self.fds[pos as usize] = PollFd {
                    fd: c.fd,
                    events: poll_events(watch.interest),
                    revents: 0,
                };
            }
            Place::Cold(_) => {
                let data = tag(idx, r.nonce);
                self.bump_change(idx);
                if let Err(e) = self
                    .epoll
                    .modify_raw(c.fd, epoll_events(watch.interest), data)
                {
                    let e = errno(&e);
                    // EBADF/ENOENT: closed (and maybe reused), nothing of
                    // ours is left in the set; the record goes too. An
                    // EBADF for a number that is open is not about it.
                    let gone = e == ENOENT || (e == EBADF && !evmux_sys::fd::is_open_raw(c.fd));
                    if gone {
                        self.remove_cold(idx, false);
                        self.regs[idx as usize].place = Place::Parked { cold: true };
                        self.parked += 1;
                        self.reject(idx, e, out);
                    } else {
                        // Any other reason: epoll keeps the old watch, and
                        // so does the record (the driver counts on it: it
                        // takes a refused change's old watch as the
                        // kernel's, and re-declaring that watch sends
                        // nothing).
                        self.regs[idx as usize].interest = before;
                        out.rejected.push(Rejection {
                            key: c.key,
                            errno: e,
                        });
                    }
                }
            }
            Place::Parked { cold } => {
                let promote = cold && {
                    let now = self.score_now(&self.regs[idx as usize]);
                    now > self.promote_threshold()
                };
                if cold && !promote {
                    // Back to the epoll set: an EPOLL_CTL_ADD.
                    self.bump_change(idx);
                    match self.add_cold(idx) {
                        Ok(()) => {}
                        Err(EPERM) => {
                            self.regs[idx as usize].pinned = true;
                            self.add_hot(idx);
                        }
                        Err(e) => self.reject(idx, e, out),
                    }
                } else {
                    if promote {
                        self.promotions += 1;
                        self.regs[idx as usize].settled_at =
                            epoch.saturating_add(u64::from(self.cfg.min_stay));
                    }
                    self.add_hot(idx);
                }
            }
            Place::Free => unreachable!("a free record in the descriptor map"),
        }
    }

    // ----- migration ----------------------------------------------------

    fn evaluate(&mut self) {
        let mut budget = self.cfg.max_moves;
        let epoch = self.epoch;
        // Promotions: the queue holds cold records that rose above the
        // break-even at a report since the last evaluation.
        let threshold = self.promote_threshold();
        let mut queue = std::mem::take(&mut self.queue);
        let mut keep = 0;
        for i in 0..queue.len() {
            let (idx, nonce) = queue[i];
            let r = self.regs[idx as usize];
            if !matches!(r.place, Place::Cold(_)) || r.nonce != nonce {
                continue; // stale: the record moved or was reused
            }
            let recent = epoch.saturating_sub(r.scored_at) <= u64::from(self.cfg.interval);
            if !recent || r.score <= threshold || epoch < r.settled_at {
                self.regs[idx as usize].queued = false;
                continue;
            }
            if budget == 0 {
                queue[keep] = (idx, nonce);
                keep += 1;
                continue;
            }
            budget -= 1;
            // A DEL refused for another reason than a closed descriptor
            // would leave the entry in the epoll set under the record's
            // tag: the promotion waits for a later evaluation.
            if let Err(e) = self.epoll.delete_raw(r.fd)
                && !matches!(e.raw_os_error(), Some(EBADF | ENOENT))
            {
                self.regs[idx as usize].queued = false;
                continue;
            }
            self.remove_cold(idx, false);
            self.regs[idx as usize].place = Place::Parked { cold: true };
            self.parked += 1;
            self.add_hot(idx);
            self.regs[idx as usize].settled_at = epoch.saturating_add(u64::from(self.cfg.min_stay));
            self.promotions += 1;
        }
        queue.truncate(keep);
        // Anything pushed meanwhile (nothing is) goes after the kept ones.
        queue.append(&mut self.queue);
        self.queue = queue;

        // Demotions: scan the array from where the last scan ended.
        let threshold = if self.hot_pressure() {
            self.cfg.break_even
        } else {
            self.cfg.demote_below
        };
        let len = self.fds.len() - self.first;
        if budget == 0 || len == 0 || threshold <= 0.0 {
            return;
        }
        let mut pos = self.first + self.demote_rotor % len;
        for _ in 0..self.scan_len(len) {
            if budget == 0 {
                break;
            }
            if pos >= self.fds.len() {
                pos = self.first;
                if pos >= self.fds.len() {
                    break;
                }
            }
            let idx = self.hot[pos];
            let r = &self.regs[idx as usize];
            let eligible = !r.pinned
                && !r.disabled
                && r.changed != epoch
                && epoch >= r.settled_at
                && self.score_now(r) < threshold;
            let fd = r.fd;
            if eligible {
                match self.add_cold(idx) {
                    Ok(()) => {
                        // add_cold gave the record its cold place; take the
                        // entry out of the array without touching it.
                        let moved = self.hot.swap_remove(pos);
                        debug_assert_eq!(moved, idx);
                        self.fds.swap_remove(pos);
                        if let Some(&other) = self.hot.get(pos) {
                            self.regs[other as usize].place = Place::Hot(pos as u32);
                        }
                        self.regs[idx as usize].settled_at =
                            epoch.saturating_add(u64::from(self.cfg.min_stay));
                        self.demotions += 1;
                        budget -= 1;
                        // The entry moved into `pos` is examined next.
                        continue;
                    }
                    Err(EBADF) if evmux_sys::fd::is_open_raw(fd) => {
                        // The number is open: the EBADF is not about it
                        // (it can name the epoll descriptor). Abort the
                        // demotion: the entry stays hot, as it was, and a
                        // later evaluation may try again.
                    }
                    Err(EBADF) => {
                        // Closed under its registration: silent, as poll's
                        // POLLNVAL for an entry that is not fresh.
                        self.fds[pos].fd = -1;
                        self.regs[idx as usize].disabled = true;
                    }
                    // EPERM (a regular file), ENOSPC (max_user_watches), …
                    Err(_) => self.regs[idx as usize].pinned = true,
                }
            }
            pos += 1;
        }
        self.demote_rotor = pos.saturating_sub(self.first);
    }

    /// How many array entries one evaluation examines for demotion: enough
    /// that the scan goes round the whole array every `half_life /`
    /// [`SCAN_PER_HALF_LIFE`] waits (8 by default), in which a score loses
    /// at most 29% of its value. With the default `interval` of 1 that is
    /// an eighth of the array per wait: the work of a whole scan every 8
    /// waits, spread evenly.
    fn scan_len(&self, len: usize) -> usize {
        let period = (self.cfg.half_life as usize / SCAN_PER_HALF_LIFE).max(1);
        len.saturating_mul(self.cfg.interval as usize)
            .div_ceil(period)
            .min(len)
    }

    /// Drops parked records idle for long, once they outnumber the live
    /// registrations.
    fn sweep_parked(&mut self) {
        let live = self.fds.len() - self.first + self.cold.len();
        if self.parked <= PARKED_SLACK || self.parked <= live {
            return;
        }
        let age = 4 * u64::from(self.cfg.half_life);
        for idx in 0..self.regs.len() as u32 {
            let r = &self.regs[idx as usize];
            if matches!(r.place, Place::Parked { .. })
                && self.epoch.saturating_sub(r.scored_at) > age
            {
                self.release(idx);
            }
        }
    }

    // ----- the wait -----------------------------------------------------

    fn update_load(load: &mut f64, decay: f64, sample: f64) {
        *load = *load * decay + sample * (1.0 - decay);
    }

    /// Turns the `revents` of a wait that found `ready` entries into `out`.
    fn collect(&mut self, mut ready: usize, out: &mut Output, max_events: usize) -> io::Result<()> {
        let hot_len = self.fds.len() - self.first;
        let cold_len = self.cold.len();
        let mut result = Ok(());
        let woke = self.fds[0].revents != 0;
        if woke {
            ready -= 1;
        }
        if let Some(w) = &self.waker
            && self.fds[1].revents != 0
        {
            ready -= 1;
            result = w.notifier.drain().map(drop);
            out.events.push(RawEvent {
                key: Key::WAKER,
                ready: Ready::IN,
            });
        }
        let mut cold_hits = 0;
        let cold_first = self.cold_first;
        if woke && cold_first {
            match self.collect_cold(out, max_events, Some(Duration::ZERO)) {
                Ok(n) => cold_hits = n,
                Err(e) => result = result.and(Err(e)),
            }
        }
        let hot_hits = self.collect_hot(ready, out, max_events);
        if woke && !cold_first {
            match self.collect_cold(out, max_events, Some(Duration::ZERO)) {
                Ok(n) => cold_hits = n,
                Err(e) => result = result.and(Err(e)),
            }
        }
        if out.events.len() >= max_events {
            self.cold_first = !self.cold_first;
        }
        // The loads of the two halves (see the crate docs).
        let (b, e, q) = (
            self.cfg.break_even,
            self.cfg.epoll_wait_cost,
            self.decay.factor,
        );
        if hot_len > 0 {
            let fixed = if hot_hits > 0 { e } else { 0.0 };
            let sample = (hot_hits as f64 / b + fixed) / hot_len as f64;
            Self::update_load(&mut self.hot_load, q, sample);
        } else {
            self.hot_load = 1.0;
        }
        self.update_cold_load(cold_len, cold_hits, woke);
        result
    }

    /// The cold half's load after a wait at which `hits` of its `cold_len`
    /// registrations were reported (`woke`: its `epoll_wait` was called).
    fn update_cold_load(&mut self, cold_len: usize, hits: usize, woke: bool) {
        let (b, e, q) = (
            self.cfg.break_even,
            self.cfg.epoll_wait_cost,
            self.decay.factor,
        );
        if cold_len > 0 {
            let fixed = if woke { e } else { 0.0 };
            let sample = (hits as f64 / b + fixed) / cold_len as f64;
            Self::update_load(&mut self.cold_load, q, sample);
        } else {
            self.cold_load = 0.0;
        }
    }

    /// A wait with nothing in the array but the epoll descriptor (no hot
    /// registration, no waker): `epoll_wait` waits itself, one syscall
    /// where a `poll(2)` of the epoll descriptor would be followed by it.
    /// As in the `poll(2)` path, a failure of the wait (`EINTR`) returns
    /// before the epoch advances.
    fn wait_cold_only(
        &mut self,
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let cold_len = self.cold.len();
        let hits = self.collect_cold(out, max_events, timeout)?;
        self.hot_load = 1.0;
        // Counted as the `poll(2)` path counts it, so that the set rule
        // does not depend on which path the wait took.
        self.update_cold_load(cold_len, hits, hits > 0);
        self.epoch = self.epoch.wrapping_add(1);
        Ok(())
    }

    /// One ready array entry of [`Self::collect_hot`]: its report,
    /// refusal or closing. Returns 1 when it counts as a hit for the
    /// scores. Takes the backend's parts (split borrows), so that the scan
    /// keeps them in registers across the entries.
    #[inline(always)]
    fn collect_one(
        p: &mut HotScan<'_>,
        pos: usize,
        out: &mut Output,
        max_events: usize,
        doomed: &mut Vec<usize>,
    ) -> usize {
        let entry = &mut p.fds[pos];
        let revents = entry.revents;
        let idx = p.hot[pos];
        let r = &mut p.regs[idx as usize];
        if revents & POLLNVAL != 0 {
            if r.changed == p.epoch {
                // Refused, as EPOLL_CTL_ADD/MOD would refuse it.
                out.rejected.push(Rejection {
                    key: r.key,
                    errno: EBADF,
                });
                doomed.push(pos);
            } else {
                // Closed under its registration: silent until a change for
                // its key arrives or it is removed.
                r.disabled = true;
                entry.fd = -1;
            }
            return 0;
        }
        let bits = ready_from_revents(revents) & Ready::reportable(r.interest);
        if bits.is_empty() {
            return 0;
        }
        r.score_report(idx, 1.0, p.decay, p.epoch, p.break_even, p.queue);
        // Past the limit, the scan goes on: for POLLNVAL, and for the
        // scores.
        if out.events.len() < max_events {
            out.events.push(RawEvent {
                key: r.key,
                ready: bits,
            });
            *p.rotor = pos - p.first + 1;
        }
        1
    }

    /// The array's registrations; returns how many were ready.
    fn collect_hot(&mut self, mut ready: usize, out: &mut Output, max_events: usize) -> usize {
        let len = self.fds.len() - self.first;
        if ready == 0 || len == 0 {
            return 0;
        }
        let room = max_events.saturating_sub(out.events.len());
        let start = if ready > room { self.rotor % len } else { 0 };
        let mut doomed = std::mem::take(&mut self.doomed);
        let mut hits = 0;
        let first = self.first;
        let mut p = HotScan {
            fds: &mut self.fds,
            hot: &self.hot,
            regs: &mut self.regs,
            queue: &mut self.queue,
            rotor: &mut self.rotor,
            decay: &self.decay,
            epoch: self.epoch,
            break_even: self.cfg.break_even,
            first,
        };
        // From the rotor to the end, then from the start to the rotor; the
        // inner `position` skips the quiet entries, most of a large array.
        'scan: for (lo, hi) in [(start, len), (0, start)] {
            let mut rel = lo;
            while rel < hi {
                let Some(skip) = p.fds[first + rel..first + hi]
                    .iter()
                    .position(|e| e.revents != 0)
                else {
                    break;
                };
                rel += skip;
                ready -= 1;
                hits += Self::collect_one(&mut p, first + rel, out, max_events, &mut doomed);
                if ready == 0 {
                    break 'scan;
                }
                rel += 1;
            }
        }
        // Highest position first: an entry that `swap_remove` moves comes
        // from the tail, above every position still to remove.
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for &pos in &doomed {
            let idx = self.remove_hot(pos);
            self.regs[idx as usize].place = Place::Parked { cold: false };
            self.parked += 1;
            self.release(idx);
        }
        doomed.clear();
        self.doomed = doomed;
        hits
    }

    /// The epoll set's readiness, at most the room left; returns how many
    /// registrations were ready.
    ///
    /// The kernel may hold entries the backend no longer knows of (an
    /// `EPOLL_CTL_DEL` that failed, a descriptor closed while `dup`ed
    /// elsewhere after its registration was dropped): their reports carry a
    /// stale tag and are dropped. So that they cannot take the place of live
    /// reports, `epoll_wait` is asked for [`STALE_SLACK`] (growing) more
    /// than the room, and called again (up to [`STALE_RETRIES`] times) while
    /// its buffer comes back full with fewer live reports than the room.
    /// Both halves are level-triggered: a report read but not delivered
    /// (past the room, or a repeat) stays ready in the kernel.
    ///
    /// The first `epoll_wait` waits up to `timeout` (zero when the array's
    /// `poll(2)` has waited already), the others do not wait.
    fn collect_cold(
        &mut self,
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let room = max_events
            .saturating_sub(out.events.len())
            .min(self.cold.len());
        if room == 0 {
            // Stays queued in the kernel for the next call.
            return Ok(0);
        }
        let seen = self.epoch.wrapping_add(1);
        let mut hits = 0;
        for attempt in 0..=STALE_RETRIES {
            let ask = room.saturating_add(self.stale_slack);
            if self.buf.capacity() < ask {
                self.buf.clear();
                self.buf.reserve(ask);
            }
            let wait_for = if attempt == 0 {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            let n = match self.epoll.wait_max(&mut self.buf, ask, wait_for) {
                Ok(n) => n,
                // A later call of this wait failing: what was collected
                // stands (the rest stays ready in the kernel).
                Err(_) if attempt > 0 => break,
                Err(e) => return Err(e),
            };
            let mut stale = 0;
            // Split borrows: the loop reads `buf` and writes the records,
            // the queue and `out`, with nothing re-fetched through `self`.
            let (regs, queue, decay) = (&mut self.regs, &mut self.queue, &self.decay);
            let (epoch, break_even) = (self.epoch, self.cfg.break_even);
            out.events.reserve(n.min(room - hits));
            for ev in &self.buf[..n] {
                let data = ev.data();
                let (idx, nonce) = (data as u32, (data >> 32) as u32);
                let Some(r) = regs.get_mut(idx as usize) else {
                    stale += 1;
                    continue;
                };
                if r.nonce != nonce || !matches!(r.place, Place::Cold(_)) {
                    // A stale registration (a dup of a descriptor closed
                    // while cold, a failed EPOLL_CTL_DEL): not ours any
                    // more.
                    stale += 1;
                    continue;
                }
                if r.reported == seen || hits >= room {
                    continue;
                }
                let bits = ready_from_epoll(ev.events()) & Ready::reportable(r.interest);
                if bits.is_empty() {
                    continue;
                }
                r.reported = seen;
                hits += 1;
                r.score_report(idx, 1.0, decay, epoch, break_even, queue);
                out.events.push(RawEvent {
                    key: r.key,
                    ready: bits,
                });
            }
            if n < ask || hits >= room || stale == 0 {
                break;
            }
            // Stale entries filled the buffer: ask for more next time.
            self.stale_slack = self.stale_slack.saturating_mul(2).min(1 << 16);
        }
        Ok(hits)
    }
}

impl Backend for SuperpollBackend {
    fn name(&self) -> &'static str {
        "superpoll"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_edge: false,
            native_oneshot: false,
            cheap_changes: true,
            max_fd: None,
        }
    }

    fn submit_and_wait(
        &mut self,
        changes: &[Change],
        out: &mut Output,
        max_events: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        for c in changes {
            self.apply(c, out);
        }
        // Migrations happen here, between the batch and the wait: both
        // halves are level-triggered, so a moved descriptor reports its
        // readiness at the wait from wherever it is.
        if self.epoch >= self.next_eval {
            self.evaluate();
            self.next_eval = self.epoch.saturating_add(u64::from(self.cfg.interval));
        }
        if self.epoch >= self.next_sweep {
            self.sweep_parked();
            self.next_sweep = self.epoch.saturating_add(u64::from(self.cfg.half_life));
        }
        let timeout = if out.rejected.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        if self.fds.len() == 1 && !self.cold.is_empty() {
            return self.wait_cold_only(out, max_events.max(1), timeout);
        }
        self.fds[0].fd = if self.cold.is_empty() {
            -1
        } else {
            self.epoll.as_raw_fd()
        };
        // On EINTR the epoch is not advanced, so the driver's retry still
        // sees this batch's entries as fresh.
        let ready = poll(&mut self.fds, timeout)?;
        let result = self.collect(ready, out, max_events.max(1));
        self.epoch = self.epoch.wrapping_add(1);
        result
    }

    /// A cold registration leaves the epoll set now (`EPOLL_CTL_DEL`), while
    /// the program still holds the descriptor: deferred to the next batch,
    /// the `DEL` would meet a number the program may have closed by then,
    /// and an entry whose file is open elsewhere (a `dup`) would stay in the
    /// set for good. A hot registration leaves the array in the next batch
    /// (free, and nothing of it outlives the descriptor).
    fn forget_now(&mut self, fd: RawFd, key: Key, old: evmux_interest::Watch) -> bool {
        let _ = old;
        let Some(&idx) = self.by_fd.get(&fd) else {
            return false;
        };
        let r = self.regs[idx as usize];
        if r.key != key || !matches!(r.place, Place::Cold(_)) {
            return false;
        }
        if let Err(e) = self.epoll.delete_raw(fd) {
            let e = errno(&e);
            let gone = e == ENOENT || (e == EBADF && !evmux_sys::fd::is_open_raw(fd));
            if !gone {
                // Still in the set: the batch tries again.
                return false;
            }
        }
        // What the batched removal does, without its EPOLL_CTL_DEL: the
        // DEL is activity of a cold descriptor, and the record is parked in
        // the half it left.
        self.bump(idx);
        self.remove_cold(idx, false);
        self.regs[idx as usize].place = Place::Parked { cold: true };
        self.parked += 1;
        true
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        if let Some(w) = &self.waker {
            return Ok(w.clone());
        }
        let notifier = Notifier::new()?;
        let fd = notifier.as_raw_fd();
        let w = Arc::new(SuperpollWaker { notifier });
        // Put the waker at position 1, moving whatever was there to the end.
        self.fds.push(PollFd {
            fd,
            events: POLLIN,
            revents: 0,
        });
        self.hot.push(RESERVED);
        let last = self.fds.len() - 1;
        if last != 1 {
            self.fds.swap(1, last);
            self.hot.swap(1, last);
            let moved = self.hot[last];
            self.regs[moved as usize].place = Place::Hot(last as u32);
        }
        self.first = 2;
        self.waker = Some(w.clone());
        Ok(w)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    evmux_sys::backend_sources!(sources);
}

/// Wakes a [`SuperpollBackend`] through an eventfd in its `pollfd` array.
#[derive(Debug)]
struct SuperpollWaker {
    notifier: Notifier,
}

impl Wake for SuperpollWaker {
    fn wake(&self) -> io::Result<()> {
        self.notifier.notify()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evmux_sys::poll::{POLLERR, POLLHUP, POLLPRI};

    #[test]
    fn bits_match_between_the_halves() {
        for i in [Interest::READABLE, Interest::WRITABLE, Interest::BOTH] {
            assert_eq!(poll_events(i) as u16 as u32, epoll_events(i));
        }
        let all = POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDHUP;
        assert_eq!(ready_from_revents(all), ready_from_epoll(all as u16 as u32));
    }

    #[test]
    fn decay_tables_agree_with_powi() {
        for half_life in [1, 16, 1000] {
            let b = SuperpollBackend::with_config(SuperpollConfig {
                half_life,
                ..SuperpollConfig::default()
            })
            .unwrap();
            for waits in [0, 1, 63, 64, 65, 101, 1000, 4095, 4096, 100_000] {
                let want = b.decay.factor.powi(waits as i32);
                let got = b.decay.over(waits);
                assert!(
                    (got - want).abs() <= want * 1e-12,
                    "half-life {half_life}, {waits} waits: {got} vs {want}"
                );
            }
            // Half the score after a half-life.
            let h = u64::from(half_life);
            assert!((b.decay.over(h) - 0.5).abs() < 1e-12);
            assert!((b.decay.over(2 * h) - 0.25).abs() < 1e-12);
        }
    }

    #[test]
    fn config_validation() {
        assert!(SuperpollConfig::default().validate().is_ok());
        let bad = [
            SuperpollConfig {
                interval: 0,
                ..SuperpollConfig::default()
            },
            SuperpollConfig {
                half_life: 0,
                ..SuperpollConfig::default()
            },
            SuperpollConfig {
                demote_below: 0.9,
                ..SuperpollConfig::default()
            },
            SuperpollConfig {
                break_even: f64::NAN,
                ..SuperpollConfig::default()
            },
        ];
        for cfg in bad {
            let err = SuperpollBackend::with_config(cfg).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn scores_decay_lazily_and_stay_in_range() {
        let mut b = SuperpollBackend::new().unwrap();
        let idx = b.alloc(Key::new(0, 0), 1000, Interest::READABLE);
        for _ in 0..200 {
            b.bump(idx);
            b.bump(idx);
            b.epoch += 1;
        }
        let r = b.regs[idx as usize];
        assert!(r.score <= 1.0 && r.score > 0.99, "{}", r.score);
        b.epoch = r.scored_at + u64::from(b.cfg.half_life);
        let half = b.score_now(&b.regs[idx as usize]);
        assert!((half - r.score / 2.0).abs() < 1e-9, "{half}");
    }
}
