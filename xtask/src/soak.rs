//! `cargo xtask soak [--backend NAME] [--minutes N] [--json]`: every backend
//! (or NAME) under random churn for N minutes each (default 1; fractions
//! allowed), with about 9,000 Unix socket pairs (select: as many as fit
//! below `FD_SETSIZE`).
//!
//! The churn, one operation at a time from a seeded xorshift: write a few
//! bytes into a pair; read a pair; wait (zero or 1 ms timeout) and handle
//! what it reports (drain readable pairs, re-arm edge with `would_block`,
//! re-enable oneshot by declaring again, check timers); declare a pair
//! again in another mode; forget a pair (declared again later); forget,
//! close and reopen a pair (a new socket pair, a new token); set a timer
//! (0–50 ms) or cancel one.
//!
//! Counted as **errors**: a failing call, an error event, an event whose
//! token is not live (stale), a readable event for a pair with nothing
//! unread (spurious), a pair left unreported with data by a wait that had
//! room (missing), a timer that fires early or twice.
//!
//! Measured: events processed, errors, the open-descriptor count before the
//! set-up and after the tear-down (`/proc/self/fd`), and `VmRSS` after a
//! warm-up (a tenth of the run, at most 3 minutes, and until every pair
//! was reopened twice on average, at most half the run: every structure
//! has reached its steady size), at half time (`rss_half_kb`, in the JSON) and
//! at the end of the churn, before the tear-down.
//! The soft `RLIMIT_NOFILE` is raised to the hard limit first.
//!
//! Exits non-zero if any backend had errors or ended with another
//! descriptor count than it started with.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use evmux_interest::{Backend, Events, Interest, Mode, Poller, Token};
use evmux_sys::fd as sysfd;
use evmux_testkit::conformance::{self, BackendSpec};

use crate::Flags;
use crate::json::Json;

/// Socket pairs per backend (two descriptors each; the hard limit on the
/// reference machine is 20,000 per process).
const PAIRS: usize = 9_000;
/// Timer tokens live above every pair token.
const TIMER_BASE: usize = 1 << 40;
/// Timers pending at most.
const MAX_TIMERS: usize = 512;

/// One backend's soak.
#[derive(Debug, Clone)]
pub struct SoakResult {
    backend: &'static str,
    minutes: f64,
    pairs: usize,
    ops: u64,
    waits: u64,
    events: u64,
    timers_fired: u64,
    reopened: u64,
    errors: u64,
    first_errors: Vec<String>,
    fd_start: usize,
    fd_end: usize,
    rss_start_kb: u64,
    rss_half_kb: u64,
    rss_end_kb: u64,
}

impl SoakResult {
    fn ok(&self) -> bool {
        self.errors == 0 && self.fd_start == self.fd_end
    }

    fn growth(&self) -> f64 {
        if self.rss_start_kb == 0 {
            return 0.0;
        }
        (self.rss_end_kb as f64 - self.rss_start_kb as f64) / self.rss_start_kb as f64 * 100.0
    }

    fn to_json(&self) -> Json {
        Json::obj([
            ("backend", Json::Str(self.backend.to_string())),
            ("minutes", Json::Num(self.minutes)),
            ("events", Json::Int(self.events as i64)),
            ("errors", Json::Int(self.errors as i64)),
            ("fd_start", Json::Int(self.fd_start as i64)),
            ("fd_end", Json::Int(self.fd_end as i64)),
            ("rss_start_kb", Json::Int(self.rss_start_kb as i64)),
            ("rss_end_kb", Json::Int(self.rss_end_kb as i64)),
            ("rss_half_kb", Json::Int(self.rss_half_kb as i64)),
            ("pairs", Json::Int(self.pairs as i64)),
            ("ops", Json::Int(self.ops as i64)),
            ("waits", Json::Int(self.waits as i64)),
            ("timers_fired", Json::Int(self.timers_fired as i64)),
            ("reopened", Json::Int(self.reopened as i64)),
        ])
    }
}

/// Open descriptors of this process (`/proc/self/fd`, less the one the
/// listing itself holds).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// `VmRSS` in KiB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises the soft descriptor limit to the hard one.
fn raise_nofile() -> Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let hard = lim.maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    )
    .context("raising RLIMIT_NOFILE")?;
    Ok(hard.unwrap_or(u64::MAX))
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

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mode_of(x: u64) -> Mode {
    match x % 3 {
        0 => Mode::Level,
        1 => Mode::Edge,
        _ => Mode::Oneshot,
    }
}

struct Pair {
    a: OwnedFd,
    b: OwnedFd,
    /// `None`: not declared (forgotten).
    token: Option<Token>,
    mode: Mode,
    /// Bytes written into `b`, not read from `a`.
    unread: usize,
}

struct Soak<B: Backend> {
    poller: Poller<B>,
    pairs: Vec<Pair>,
    by_token: HashMap<Token, usize>,
    next_token: usize,
    timers: HashMap<Token, Duration>,
    next_timer: usize,
    rng: Rng,
    events: Events,
    r: SoakResult,
    buf: Vec<u8>,
    /// Scratch of `wait`, kept so that the harness allocates nothing per
    /// wait.
    list: Vec<evmux_interest::Event>,
    reported: Vec<usize>,
    seen: Vec<bool>,
}

impl<B: Backend> Soak<B> {
    fn error(&mut self, what: String) {
        self.r.errors += 1;
        if self.r.first_errors.len() < 10 {
            self.r.first_errors.push(what);
        }
    }

    fn declare(&mut self, i: usize, mode: Mode) {
        let token = match self.pairs[i].token {
            Some(t) => t,
            None => {
                let t = Token(self.next_token);
                self.next_token += 1;
                t
            }
        };
        let fd = self.pairs[i].a.as_raw_fd();
        match self
            .poller
            .declare_interest(fd, token, Interest::READABLE, mode)
        {
            Ok(()) => {
                self.pairs[i].token = Some(token);
                self.pairs[i].mode = mode;
                self.by_token.insert(token, i);
            }
            Err(e) => self.error(format!("declare {token:?}: {e}")),
        }
    }

    fn forget(&mut self, i: usize) {
        if let Some(t) = self.pairs[i].token.take() {
            self.by_token.remove(&t);
            if let Err(e) = self.poller.forget(t) {
                self.error(format!("forget {t:?}: {e}"));
            }
        }
    }

    fn read_all(&mut self, i: usize) {
        loop {
            match sysfd::read(&self.pairs[i].a, &mut self.buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.error(format!("read: {e}"));
                    break;
                }
            }
        }
        self.pairs[i].unread = 0;
        // The program saw WouldBlock: an edge registration may report again.
        if let (Some(t), Mode::Edge) = (self.pairs[i].token, self.pairs[i].mode)
            && let Err(e) = self.poller.would_block(t, Interest::READABLE)
        {
            self.error(format!("would_block {t:?}: {e}"));
        }
    }

    fn write(&mut self, i: usize, n: usize) {
        let data = [0x5a_u8; 64];
        match sysfd::send(&self.pairs[i].b, &data[..n]) {
            Ok(k) => self.pairs[i].unread += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => self.error(format!("send: {e}")),
        }
    }

    fn reopen(&mut self, i: usize) -> Result<()> {
        self.forget(i);
        let (a, b) = sysfd::socketpair_stream().context("socketpair")?;
        // Dropping the old pair closes it; the new one may take its numbers.
        self.pairs[i].a = a;
        self.pairs[i].b = b;
        self.pairs[i].unread = 0;
        self.r.reopened += 1;
        let mode = mode_of(self.rng.next());
        self.declare(i, mode);
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) {
        self.r.waits += 1;
        if let Err(e) = self.poller.get_next_event(&mut self.events, Some(timeout)) {
            self.error(format!("get_next_event: {e}"));
            return;
        }
        let full = self.events.len() == self.events.capacity();
        let now = self.poller.now();
        let mut list = std::mem::take(&mut self.list);
        list.clear();
        list.extend(self.events.iter().copied());
        let mut reported = std::mem::take(&mut self.reported);
        reported.clear();
        for &ev in &list {
            self.r.events += 1;
            if ev.errno.is_some() {
                self.error(format!("error event {ev:?}"));
                continue;
            }
            if ev.timer {
                match self.timers.remove(&ev.token) {
                    None => self.error(format!("timer event for no pending timer: {ev:?}")),
                    Some(deadline) if now < deadline => self.error(format!(
                        "timer {:?} early: {now:?} < {deadline:?}",
                        ev.token
                    )),
                    Some(_) => self.r.timers_fired += 1,
                }
                continue;
            }
            let Some(&i) = self.by_token.get(&ev.token) else {
                self.error(format!("stale token: {ev:?}"));
                continue;
            };
            if !ev.readable || self.pairs[i].unread == 0 {
                self.error(format!("spurious: {ev:?}, {} unread", self.pairs[i].unread));
                continue;
            }
            reported.push(i);
        }
        let mut seen = std::mem::take(&mut self.seen);
        seen.clear();
        seen.resize(self.pairs.len(), false);
        for &i in &reported {
            seen[i] = true;
        }
        for &i in &reported {
            self.read_all(i);
            if self.pairs[i].mode == Mode::Oneshot {
                self.declare(i, Mode::Oneshot);
            }
        }
        if !full {
            // Every declared pair holding data must have been reported
            // (after each report the program drained and re-armed it).
            let missing = self
                .pairs
                .iter()
                .enumerate()
                .filter(|(i, p)| p.token.is_some() && p.unread > 0 && !seen[*i])
                .count();
            if missing > 0 {
                self.error(format!("{missing} pairs with data not reported"));
            }
        }
        self.list = list;
        self.reported = reported;
        self.seen = seen;
    }

    fn timer_op(&mut self) {
        if self.timers.len() >= MAX_TIMERS || (self.rng.next() & 1 == 0 && !self.timers.is_empty())
        {
            // Cancel some pending timer.
            let Some(&t) = self.timers.keys().next() else {
                return;
            };
            self.timers.remove(&t);
            if let Err(e) = self.poller.cancel_timer(t) {
                self.error(format!("cancel_timer {t:?}: {e}"));
            }
            return;
        }
        let t = Token(TIMER_BASE + self.next_timer);
        self.next_timer += 1;
        let delay = Duration::from_millis(self.rng.next() % 51);
        let deadline = self.poller.now() + delay;
        match self.poller.add_timer_after(t, delay) {
            Ok(()) => {
                self.timers.insert(t, deadline);
            }
            Err(e) => self.error(format!("add_timer_after {t:?}: {e}")),
        }
    }

    /// One random operation.
    fn op(&mut self) -> Result<()> {
        self.r.ops += 1;
        let n = self.pairs.len();
        let i = self.rng.below(n);
        match self.rng.next() % 100 {
            0..=39 => {
                let k = 1 + self.rng.below(64);
                self.write(i, k);
            }
            40..=49 => {
                // A read the program makes on its own.
                if self.pairs[i].unread > 0 {
                    self.read_all(i);
                }
            }
            50..=69 => {
                let t = if self.rng.next().is_multiple_of(64) {
                    Duration::from_millis(1)
                } else {
                    Duration::ZERO
                };
                self.wait(t);
            }
            70..=79 => {
                let mode = mode_of(self.rng.next());
                self.declare(i, mode);
            }
            80..=84 => {
                if self.pairs[i].token.is_some() {
                    self.forget(i);
                } else {
                    let mode = mode_of(self.rng.next());
                    self.declare(i, mode);
                }
            }
            85..=89 => self.reopen(i)?,
            _ => self.timer_op(),
        }
        Ok(())
    }
}

fn soak_one(spec: &BackendSpec, minutes: f64, seed: u64) -> Result<SoakResult> {
    let make = match spec.make {
        Ok(make) => make,
        Err(why) => bail!("{} is not available here: {why}", spec.name),
    };
    let fd_start = open_fds();
    let fd_start_time = Instant::now();
    let mut r = SoakResult {
        backend: spec.name,
        minutes,
        pairs: 0,
        ops: 0,
        waits: 0,
        events: 0,
        timers_fired: 0,
        reopened: 0,
        errors: 0,
        first_errors: Vec::new(),
        fd_start,
        fd_end: 0,
        rss_start_kb: 0,
        rss_half_kb: 0,
        rss_end_kb: 0,
    };
    {
        let poller = Poller::new(make().with_context(|| format!("making {}", spec.name))?);
        // select watches numbers below FD_SETSIZE only: as many pairs as fit.
        let pairs = if spec.name == "select" {
            (1024usize.saturating_sub(fd_start + 16)) / 2
        } else {
            PAIRS
        };
        let mut s = Soak {
            poller,
            pairs: Vec::with_capacity(pairs),
            // Twice the room: a hash table more than half full doubles
            // once its tombstones (from the churn: one token removed,
            // another added) use up the rest, however steady its length —
            // a step in RSS long after the warm-up.
            by_token: HashMap::with_capacity(2 * pairs),
            next_token: 0,
            timers: HashMap::with_capacity(2 * MAX_TIMERS),
            next_timer: 0,
            rng: Rng(seed | 1),
            events: Events::with_capacity(1024),
            r,
            buf: vec![0; 4096],
            list: Vec::with_capacity(1024),
            reported: Vec::with_capacity(1024),
            seen: Vec::with_capacity(pairs),
        };
        for i in 0..pairs {
            let (a, b) = sysfd::socketpair_stream()
                .with_context(|| format!("socket pair {i} of {pairs}"))?;
            s.pairs.push(Pair {
                a,
                b,
                token: None,
                mode: Mode::Level,
                unread: 0,
            });
            let mode = mode_of(s.rng.next());
            s.declare(i, mode);
        }
        s.r.pairs = pairs;
        let setup = fd_start_time.elapsed();
        let total = Duration::from_secs_f64(minutes * 60.0);
        // RSS is compared from after a warm-up: a tenth of the run (at most
        // 3 minutes), and until every pair was reopened twice over on
        // average (capped at half the run). New tokens count up, so the
        // driver's token table only reaches its steady shape once the live
        // tokens have all left the range the set-up used (they move from
        // its array to its hash map, which then holds them all); a backend
        // as slow as poll over 9,000 pairs takes minutes to get there.
        let warmup = (total / 10).min(Duration::from_secs(180));
        let warm_reopens = 2 * pairs as u64;
        let start = Instant::now();
        let mut warm = false;
        let mut last_report = Instant::now();
        loop {
            for _ in 0..256 {
                s.op()?;
            }
            let t = start.elapsed();
            if !warm && t >= warmup && (s.r.reopened >= warm_reopens || t >= total / 2) {
                warm = true;
                s.r.rss_start_kb = rss_kb();
            }
            if s.r.rss_half_kb == 0 && t >= total / 2 {
                s.r.rss_half_kb = rss_kb();
            }
            if t >= total {
                break;
            }
            if last_report.elapsed() >= Duration::from_secs(20) {
                last_report = Instant::now();
                eprintln!(
                    "soak {}: {:.0}s, {} events, {} errors, VmRSS {} kB",
                    spec.name,
                    t.as_secs_f64(),
                    s.r.events,
                    s.r.errors,
                    rss_kb()
                );
            }
        }
        // Collect what is still due (data and timers), then tear down.
        for _ in 0..64 {
            s.wait(Duration::from_millis(1));
        }
        s.r.rss_end_kb = rss_kb();
        if !warm {
            s.r.rss_start_kb = s.r.rss_end_kb;
        }
        for i in 0..s.pairs.len() {
            s.forget(i);
        }
        for t in s.timers.keys().copied().collect::<Vec<_>>() {
            let _ = s.poller.cancel_timer(t);
        }
        s.wait(Duration::ZERO);
        r = s.r;
        let teardown = Instant::now();
        drop(s.poller);
        drop(s.pairs);
        eprintln!(
            "soak {}: set-up {setup:.1?}, tear-down {:.1?}",
            spec.name,
            teardown.elapsed()
        );
    }
    r.fd_end = open_fds();
    Ok(r)
}

/// `cargo xtask soak …`.
pub fn soak_cmd(args: &[String]) -> Result<ExitCode> {
    let mut flags = Flags::new(args);
    let json = flags.flag("--json");
    let backend = flags.value("--backend")?;
    let minutes = match flags.value("--minutes")? {
        Some(m) => m
            .parse::<f64>()
            .ok()
            .filter(|m| m.is_finite() && *m > 0.0)
            .context("--minutes takes a positive number")?,
        None => 1.0,
    };
    flags.finish()?;

    let all = conformance::backends();
    let chosen: Vec<BackendSpec> = match backend {
        None => conformance::backends_from_env()?
            .into_iter()
            .filter(|b| b.make.is_ok())
            .collect(),
        Some(name) => {
            let names: Vec<_> = all.iter().map(|b| b.name).collect();
            let Some(b) = all.into_iter().find(|b| b.name == name) else {
                bail!(
                    "unknown backend `{name}`; valid names: {}",
                    names.join(", ")
                );
            };
            vec![b]
        }
    };
    let limit = raise_nofile()?;
    if !json {
        eprintln!(
            "soak: {} backend(s), {minutes} min each, RLIMIT_NOFILE {limit}",
            chosen.len()
        );
    }
    let mut results = Vec::new();
    for (k, spec) in chosen.iter().enumerate() {
        if !json {
            eprintln!("soak: {} …", spec.name);
        }
        let r = soak_one(spec, minutes, 0x50A4_0000 + k as u64)?;
        if !json {
            for e in &r.first_errors {
                eprintln!("soak {}: error: {e}", r.backend);
            }
        }
        results.push(r);
    }
    if json {
        let arr = results.iter().map(SoakResult::to_json).collect();
        println!("{}", Json::obj([("soak", Json::Arr(arr))]).render());
    } else {
        println!(
            "{:<10} {:>7} {:>6} {:>10} {:>12} {:>7} {:>8} {:>6} {:>12} {:>10} {:>7}",
            "backend",
            "minutes",
            "pairs",
            "ops",
            "events",
            "errors",
            "fd_start",
            "fd_end",
            "rss_start_kb",
            "rss_end_kb",
            "growth"
        );
        for r in &results {
            println!(
                "{:<10} {:>7} {:>6} {:>10} {:>12} {:>7} {:>8} {:>6} {:>12} {:>10} {:>6.2}%",
                r.backend,
                r.minutes,
                r.pairs,
                r.ops,
                r.events,
                r.errors,
                r.fd_start,
                r.fd_end,
                r.rss_start_kb,
                r.rss_end_kb,
                r.growth()
            );
        }
    }
    Ok(if results.iter().all(SoakResult::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
