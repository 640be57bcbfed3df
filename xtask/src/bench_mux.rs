//! `cargo xtask bench chain|idle|churn|all`: the seeds' experiments, evmux
//! side by side with raw syscall loops, mio and polling, in the same run.
//!
//! This module holds what the three benchmarks share:
//!
//! - the *subjects* ([`Subject`]): `raw-epoll` and `raw-poll` (loops written
//!   directly on `evmux-sys`: the floor), every evmux backend that exists
//!   here (through `evmux-backends`, as a program would pick one), `mio`
//!   (edge-triggered, registered once) and `polling` (oneshot, re-armed
//!   after every event, as its documentation says to use it);
//! - one set of socket pairs ([`Pairs`]) that every subject uses in turn,
//!   registering and deregistering around its turn, so that all subjects
//!   see the very same descriptors (and no idle subject's kernel
//!   registration makes another subject's writes more expensive: an fd in
//!   two epoll sets wakes both on every write);
//! - the read-side loop of each subject ([`Mux::run`]), generic over what to
//!   do with a readable descriptor ([`Handler`]), so that the compiler
//!   produces one tight loop per subject and workload;
//! - the turn structure ([`turn`]): register, warm up, time rounds,
//!   deregister;
//! - statistics, output paths, CSV and the progress bar.
//!
//! The benchmarks themselves are in `bench_chain.rs`, `bench_idle.rs` and
//! `bench_churn.rs`; the charts in `bench_plot.rs`; the methodology is
//! written up in `BENCHMARKS.md` at the root.

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use evmux_backends::{AnyBackend, BackendKind, PollerExt};
use evmux_interest::{Events, Interest, Mode, Poller, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_sys::epoll::{Epoll, EpollEvent, flags as epf};
use evmux_sys::fd;
use evmux_sys::poll::{self as spoll, PollFd};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::json::Json;

/// A zero timeout: libevent's `EVLOOP_ONCE | EVLOOP_NONBLOCK`.
pub const ZERO: Option<Duration> = Some(Duration::ZERO);

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// `epoll_wait` on an epoll set registered once, level-triggered.
    RawEpoll,
    /// `poll(2)` over a persistent `pollfd` array.
    RawPoll,
    /// An evmux `Poller` over a backend (level-triggered registrations).
    Evmux(BackendKind),
    /// mio 1.x: registered once, edge-triggered (mio's only mode).
    Mio,
    /// polling 3.x: oneshot, re-armed with `modify` after each event.
    Polling,
}

impl Subject {
    /// The name used in the CSV files and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Subject::RawEpoll => "raw-epoll",
            Subject::RawPoll => "raw-poll",
            Subject::Evmux(k) => match k {
                BackendKind::Epoll => "evmux-epoll",
                BackendKind::Poll => "evmux-poll",
                BackendKind::Select => "evmux-select",
                BackendKind::Uring => "evmux-uring",
                BackendKind::Superpoll => "evmux-superpoll",
                BackendKind::Kqueue => "evmux-kqueue",
                BackendKind::Auto => "evmux-auto",
            },
            Subject::Mio => "mio",
            Subject::Polling => "polling",
        }
    }
}

/// The subjects available in this process, and why the others are not.
#[derive(Debug, Clone)]
pub struct Roster {
    /// Usable subjects, raw loops first.
    pub subjects: Vec<Subject>,
    /// `(name, reason)` for every evmux backend that cannot run here.
    pub unavailable: Vec<(&'static str, String)>,
}

impl Roster {
    /// Probes every evmux backend once (io_uring may be refused by the
    /// kernel at run time).
    pub fn probe() -> Roster {
        let mut subjects = vec![Subject::RawEpoll, Subject::RawPoll];
        let mut unavailable = Vec::new();
        for kind in BackendKind::CONCRETE {
            let s = Subject::Evmux(kind);
            if let Some(why) = kind.unavailable_reason() {
                unavailable.push((s.name(), why.to_string()));
                continue;
            }
            match evmux_backends::new_backend(kind) {
                Ok(b) => {
                    drop(b);
                    subjects.push(s);
                }
                Err(e) => unavailable.push((s.name(), e.to_string())),
            }
        }
        subjects.push(Subject::Mio);
        subjects.push(Subject::Polling);
        Roster {
            subjects,
            unavailable,
        }
    }

    /// Only the subjects whose names are in `only` (all when empty).
    pub fn filter(&mut self, only: &[String]) -> Result<()> {
        if only.is_empty() {
            return Ok(());
        }
        for o in only {
            if !self.subjects.iter().any(|s| s.name() == o) {
                let names: Vec<_> = self.subjects.iter().map(|s| s.name()).collect();
                bail!("unknown subject `{o}`; valid here: {}", names.join(", "));
            }
        }
        self.subjects.retain(|s| only.iter().any(|o| o == s.name()));
        Ok(())
    }
}

/// Raises the soft descriptor limit to the hard one and returns it.
pub fn raise_nofile() -> Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        setrlimit(Resource::Nofile, raised).context("raising RLIMIT_NOFILE to the hard limit")?;
    }
    let now = getrlimit(Resource::Nofile);
    Ok(now.current.unwrap_or(u64::MAX))
}

/// `n` connected, non-blocking Unix stream socket pairs. The read ends
/// (`r`) hold the lowest descriptor numbers, in order, so that select's
/// `FD_SETSIZE` (1024) limit bites as late as possible; the write ends (`w`)
/// sit above them.
#[derive(Debug)]
pub struct Pairs {
    /// The ends the subjects watch.
    pub r: Vec<OwnedFd>,
    /// The ends the workload writes to.
    pub w: Vec<OwnedFd>,
}

impl Pairs {
    /// Makes `n` pairs.
    pub fn new(n: usize, nofile: u64) -> Result<Pairs> {
        let high = n + 64;
        if (high + n + 64) as u64 > nofile {
            bail!(
                "{n} socket pairs need about {} descriptors; RLIMIT_NOFILE is {nofile}",
                high + n + 64
            );
        }
        let mut r = Vec::with_capacity(n);
        let mut w = Vec::with_capacity(n);
        for _ in 0..n {
            let (a, b) = fd::socketpair_stream().context("socketpair")?;
            // Move the write end above every read end; its old number is
            // the next pair's read end.
            let b_high =
                rustix::io::fcntl_dupfd_cloexec(&b, high as RawFd).context("F_DUPFD_CLOEXEC")?;
            drop(b);
            r.push(a);
            w.push(b_high);
        }
        Ok(Pairs { r, w })
    }
}

/// What a subject's loop does with a descriptor reported readable.
pub trait Handler {
    /// Level-triggered subjects: one read (the libevent shape).
    fn readable(&mut self, idx: usize);
    /// Edge-triggered subjects: read until `WouldBlock`, as they must.
    fn readable_drain(&mut self, idx: usize);
    /// Whether the round is over, after `waits` waits.
    fn done(&self, waits: u64) -> bool;
}

/// One subject's registrations of `r[..m]`, readable.
// Unboxed on purpose: one `Mux` exists at a time, and the measured loop
// should not chase a pointer that the raw loops do not.
#[allow(clippy::large_enum_variant)]
pub enum Mux {
    /// See [`Subject::RawEpoll`].
    RawEpoll {
        /// The epoll set.
        ep: Epoll,
        /// `epoll_wait`'s output, capacity `m`.
        buf: Vec<EpollEvent>,
    },
    /// See [`Subject::RawPoll`].
    RawPoll {
        /// The array.
        fds: Vec<PollFd>,
    },
    /// See [`Subject::Evmux`].
    Evmux {
        /// The driver.
        poller: Poller<AnyBackend>,
        /// Its output, capacity `m`.
        events: Events,
        /// Tokens `0..m` are registered.
        m: usize,
    },
    /// See [`Subject::Mio`].
    Mio {
        /// The poll instance.
        poll: mio::Poll,
        /// Its output, capacity `m`.
        events: mio::Events,
    },
    /// See [`Subject::Polling`].
    Polling {
        /// The poller.
        poller: polling::Poller,
        /// Its output, capacity `m`.
        events: polling::Events,
        /// Registered descriptors, deleted before they may be closed.
        m: usize,
    },
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mux::RawEpoll { .. } => "Mux::RawEpoll",
            Mux::RawPoll { .. } => "Mux::RawPoll",
            Mux::Evmux { .. } => "Mux::Evmux",
            Mux::Mio { .. } => "Mux::Mio",
            Mux::Polling { .. } => "Mux::Polling",
        })
    }
}

/// Registers `fd` with polling (oneshot, readable, key `key`).
#[allow(unsafe_code)]
fn polling_add(poller: &polling::Poller, fd: RawFd, key: usize) -> io::Result<()> {
    // SAFETY: polling's contract for `add` is that the source is deleted
    // from the poller before it is closed. The descriptors belong to a
    // `Pairs` that outlives every `Mux`, and `Mux::close` deletes each one
    // before the `Mux` (and with it the poller) goes away; a `Mux` dropped
    // early (an error) closes the epoll set, which drops the registrations
    // with it.
    unsafe { poller.add(fd, polling::Event::readable(key)) }
}

impl Mux {
    /// Registers `r[..m]` readable with `subject`, then makes one
    /// non-blocking wait so that every registration has reached the kernel
    /// (libevent's bench.c does the same `event_loop(EVLOOP_ONCE |
    /// EVLOOP_NONBLOCK)` after `event_add`). `Ok(Err(reason))` when the
    /// subject cannot watch these descriptors (select above `FD_SETSIZE`).
    pub fn open(subject: Subject, r: &[OwnedFd], m: usize) -> Result<Result<Mux, String>> {
        let cap = m.max(1);
        let mut mux = match subject {
            Subject::RawEpoll => {
                let ep = Epoll::new()?;
                for (i, f) in r[..m].iter().enumerate() {
                    ep.add_raw(f.as_raw_fd(), epf::EPOLLIN, i as u64)?;
                }
                Mux::RawEpoll {
                    ep,
                    buf: Vec::with_capacity(cap),
                }
            }
            Subject::RawPoll => Mux::RawPoll {
                fds: r[..m]
                    .iter()
                    .map(|f| PollFd::new(f.as_raw_fd(), spoll::POLLIN))
                    .collect(),
            },
            Subject::Evmux(kind) => {
                let mut poller = Poller::with_backend(kind)?;
                for (i, f) in r[..m].iter().enumerate() {
                    if let Err(e) = poller.declare_interest(
                        f.as_raw_fd(),
                        Token(i),
                        Interest::READABLE,
                        Mode::Level,
                    ) {
                        return Ok(Err(e.to_string()));
                    }
                }
                Mux::Evmux {
                    poller,
                    events: Events::with_capacity(cap),
                    m,
                }
            }
            Subject::Mio => {
                let poll = mio::Poll::new()?;
                for (i, f) in r[..m].iter().enumerate() {
                    poll.registry().register(
                        &mut mio::unix::SourceFd(&f.as_raw_fd()),
                        mio::Token(i),
                        mio::Interest::READABLE,
                    )?;
                }
                Mux::Mio {
                    poll,
                    events: mio::Events::with_capacity(cap),
                }
            }
            Subject::Polling => {
                let poller = polling::Poller::new()?;
                for (i, f) in r[..m].iter().enumerate() {
                    polling_add(&poller, f.as_raw_fd(), i)?;
                }
                Mux::Polling {
                    poller,
                    events: polling::Events::with_capacity(
                        std::num::NonZeroUsize::new(cap).expect("cap >= 1"),
                    ),
                    m,
                }
            }
        };
        mux.prime()?;
        Ok(Ok(mux))
    }

    fn prime(&mut self) -> io::Result<()> {
        match self {
            Mux::RawEpoll { ep, buf } => {
                ep.wait(buf, ZERO)?;
            }
            Mux::RawPoll { fds } => {
                spoll::poll(fds, ZERO)?;
            }
            Mux::Evmux { poller, events, .. } => {
                poller.get_next_event(events, ZERO)?;
            }
            Mux::Mio { poll, events } => poll.poll(events, ZERO)?,
            Mux::Polling { poller, events, .. } => {
                events.clear();
                poller.wait(events, ZERO)?;
            }
        }
        Ok(())
    }

    /// Runs `h` to completion: wait (non-blocking), hand every readable
    /// descriptor to `h`, until `h` is done. Returns the number of waits.
    #[inline(never)]
    pub fn run<H: Handler>(&mut self, h: &mut H, r: &[OwnedFd]) -> io::Result<u64> {
        let mut waits = 0u64;
        match self {
            Mux::RawEpoll { ep, buf } => {
                while !h.done(waits) {
                    ep.wait(buf, ZERO)?;
                    waits += 1;
                    for e in buf.iter() {
                        h.readable(e.data() as usize);
                    }
                }
            }
            Mux::RawPoll { fds } => {
                while !h.done(waits) {
                    let mut left = spoll::poll(fds, ZERO)?;
                    waits += 1;
                    for (i, p) in fds.iter().enumerate() {
                        if left == 0 {
                            break;
                        }
                        if p.revents != 0 {
                            left -= 1;
                            h.readable(i);
                        }
                    }
                }
            }
            Mux::Evmux { poller, events, .. } => {
                while !h.done(waits) {
                    poller.get_next_event(events, ZERO)?;
                    waits += 1;
                    for ev in events.iter() {
                        if ev.readable {
                            h.readable(ev.token.0);
                        }
                    }
                }
            }
            Mux::Mio { poll, events } => {
                while !h.done(waits) {
                    poll.poll(events, ZERO)?;
                    waits += 1;
                    for ev in events.iter() {
                        h.readable_drain(ev.token().0);
                    }
                }
            }
            Mux::Polling { poller, events, .. } => {
                while !h.done(waits) {
                    events.clear();
                    poller.wait(events, ZERO)?;
                    waits += 1;
                    for ev in events.iter() {
                        h.readable(ev.key);
                        poller.modify(&r[ev.key], polling::Event::readable(ev.key))?;
                    }
                }
            }
        }
        Ok(waits)
    }

    /// Deregisters everything (untimed) and drops the instance.
    pub fn close(self, r: &[OwnedFd]) -> Result<()> {
        match self {
            Mux::Evmux {
                mut poller,
                mut events,
                m,
            } => {
                for i in 0..m {
                    poller.forget(Token(i))?;
                }
                // Hand the removals to the kernel before the next subject
                // starts writing (io_uring cancels at `forget` already).
                poller.get_next_event(&mut events, ZERO)?;
            }
            Mux::Polling { poller, m, .. } => {
                for f in &r[..m] {
                    poller.delete(f)?;
                }
            }
            // Closing the epoll set drops every registration with it.
            Mux::RawEpoll { .. } | Mux::RawPoll { .. } | Mux::Mio { .. } => {}
        }
        Ok(())
    }
}

/// Reads one byte from `f`; `Some(n)` bytes, `None` for `WouldBlock`.
#[inline(always)]
pub fn read1(f: &OwnedFd) -> Result<usize, io::ErrorKind> {
    let mut b = [0u8; 1];
    fd::read(f, &mut b).map_err(|e| e.kind())
}

/// Sends one byte on `f`.
#[inline(always)]
pub fn send1(f: &OwnedFd) -> bool {
    matches!(fd::send(f, b"e"), Ok(1))
}

/// Reads everything pending on `f` (untimed clean-up); returns the bytes.
pub fn drain(f: &OwnedFd) -> usize {
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while let Ok(k @ 1..) = fd::read(f, &mut buf) {
        n += k;
    }
    n
}

static CPU_CLOCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the thread CPU clock off (under valgrind, whose memory layout
/// rustix's vDSO lookup does not survive); [`thread_cpu`] is then zero and
/// no round counts as disturbed.
pub fn disable_cpu_clock() {
    CPU_CLOCK.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// The calling thread's CPU time (user + system).
pub fn thread_cpu() -> Duration {
    if !CPU_CLOCK.load(std::sync::atomic::Ordering::Relaxed) {
        return Duration::ZERO;
    }
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Whether a round's wall-clock time shows that the thread was off the CPU
/// for part of it (preempted by another process on this shared machine).
/// The measured loops never block, so wall ≈ CPU time when undisturbed.
pub fn disturbed(wall: Duration, cpu: Duration) -> bool {
    !cpu.is_zero() && wall > cpu.mul_f64(1.03) + Duration::from_micros(30)
}

/// Attempts per timed round: a disturbed round is run again, at most this
/// many times in all; the last attempt counts whatever happened.
pub const ATTEMPTS: u32 = 2;

/// One subject's timings at one point.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Per timed round, wall-clock microseconds.
    pub us: Vec<f64>,
    /// Per timed round, the thread's CPU microseconds.
    pub cpu_us: Vec<f64>,
    /// Rounds run again because the thread was preempted.
    pub retried: u64,
    /// Per timed round, waits.
    pub waits: Vec<u64>,
    /// Untimed warm-up waits per turn (the largest).
    pub warm_waits: u64,
    /// Per turn, the median wall-clock microseconds of its rounds: turn
    /// `i` of every subject at a point ran in the same block, seconds
    /// apart, which is what [`paired_ratio`] pairs.
    pub turn_us: Vec<f64>,
}

impl Samples {
    /// The median round time.
    pub fn median(&self) -> f64 {
        median(&self.us)
    }

    /// The median round CPU time.
    pub fn cpu_median(&self) -> f64 {
        median(&self.cpu_us)
    }
}

/// The median (mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let k = s.len();
    if k % 2 == 1 {
        s[k / 2]
    } else {
        (s[k / 2 - 1] + s[k / 2]) / 2.0
    }
}

/// The median over turns of `a`'s turn median divided by `b`'s in the
/// same block: drift slower than a block (seconds) cancels in each pair,
/// where a ratio of the two overall medians keeps what drift puts between
/// them. NaN without a common turn.
pub fn paired_ratio(a: &Samples, b: &Samples) -> f64 {
    let r: Vec<f64> = a
        .turn_us
        .iter()
        .zip(&b.turn_us)
        .map(|(x, y)| x / y)
        .filter(|r| r.is_finite())
        .collect();
    median(&r)
}

/// Minimum and maximum.
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// How a turn warms up.
#[derive(Debug, Clone, Copy)]
pub struct Warmup {
    /// At least this many untimed rounds.
    pub min_rounds: u32,
    /// Keep warming up while the last round made `epoll_ctl` calls (a
    /// superpoll migration), up to this many waits in all.
    pub max_waits: u64,
    /// A backend that adapts (superpoll) warms up for at least this many
    /// waits before "a round without `epoll_ctl`" may end the warm-up: its
    /// descriptors start hot and a score needs some half-lives (16 waits
    /// each) to fall below the demotion threshold.
    pub adaptive_min_waits: u64,
}

impl Warmup {
    /// The default rule for `m` registered descriptors.
    pub fn for_size(m: usize) -> Warmup {
        Warmup {
            min_rounds: 1,
            max_waits: (m / 6 + 256) as u64,
            adaptive_min_waits: 96,
        }
    }
}

/// One subject's turn: register `r[..m]`, warm up, run `rounds` timed
/// rounds, deregister. `round` prepares one round (untimed: initial
/// writes) and returns its handler; `finish` checks and cleans up after
/// the round (untimed). `Ok(Err(reason))` if the subject cannot run.
#[allow(clippy::too_many_arguments)]
pub fn turn<H: Handler>(
    subject: Subject,
    pairs: &Pairs,
    m: usize,
    rounds: usize,
    warm: Warmup,
    samples: &mut Samples,
    mut round: impl FnMut() -> H,
    mut finish: impl FnMut(H) -> Result<()>,
) -> Result<Result<(), String>> {
    let mut mux = match Mux::open(subject, &pairs.r, m)? {
        Ok(mux) => mux,
        Err(why) => return Ok(Err(why)),
    };
    let mut warm_waits = 0u64;
    let mut warm_rounds = 0u32;
    let min_waits = if subject == Subject::Evmux(BackendKind::Superpoll) {
        warm.adaptive_min_waits
    } else {
        0
    };
    loop {
        let ctl0 = counter::get(SyscallKind::EpollCtl);
        let mut h = round();
        warm_waits += mux.run(&mut h, &pairs.r)?;
        finish(h)?;
        warm_rounds += 1;
        let migrating = counter::get(SyscallKind::EpollCtl) != ctl0;
        let settled = !migrating && warm_waits >= min_waits;
        if warm_rounds >= warm.min_rounds && (settled || warm_waits >= warm.max_waits + min_waits) {
            break;
        }
    }
    samples.warm_waits = samples.warm_waits.max(warm_waits);
    let first = samples.us.len();
    for _ in 0..rounds {
        for attempt in 1..=ATTEMPTS {
            let mut h = round();
            let c0 = thread_cpu();
            let t0 = Instant::now();
            let waits = mux.run(&mut h, &pairs.r)?;
            let dt = t0.elapsed();
            let dc = thread_cpu().saturating_sub(c0);
            finish(h)?;
            if attempt < ATTEMPTS && disturbed(dt, dc) {
                samples.retried += 1;
                continue;
            }
            samples.us.push(dt.as_secs_f64() * 1e6);
            samples.cpu_us.push(dc.as_secs_f64() * 1e6);
            samples.waits.push(waits);
            break;
        }
    }
    samples.turn_us.push(median(&samples.us[first..]));
    mux.close(&pairs.r)?;
    Ok(Ok(()))
}

/// `target/evmux-bench` (or `$CARGO_TARGET_DIR/evmux-bench`), created.
pub fn out_dir() -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask lives in the workspace")?
            .join("target"),
    };
    let dir = target.join("evmux-bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Writes a CSV file (fields are plain: no quoting needed).
pub fn write_csv(name: &str, header: &[&str], rows: &[Vec<String>]) -> Result<PathBuf> {
    let path = out_dir()?.join(name);
    let mut s = header.join(",");
    s.push('\n');
    for r in rows {
        s.push_str(&r.join(","));
        s.push('\n');
    }
    std::fs::write(&path, s).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A number for a CSV cell or a table.
pub fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        String::new()
    }
}

/// Rounds for the JSON.
pub fn round_to(x: f64, decimals: i32) -> Json {
    let p = 10f64.powi(decimals);
    Json::Num((x * p).round() / p)
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>6} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
    {
        pb.set_style(style);
    }
    pb.set_prefix(what.to_string());
    pb
}

/// The subjects in the order of block `b`: rotated, so that no subject is
/// always first after another subject's teardown.
pub fn rotated<T: Copy>(v: &[T], b: usize) -> Vec<T> {
    let k = if v.is_empty() { 0 } else { b % v.len() };
    v[k..].iter().chain(v[..k].iter()).copied().collect()
}

/// A short description of this machine for the reports.
pub fn machine() -> String {
    let mut s = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|x| x.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".into());
    let _ = write!(s, "{cpu}, {cores} cores, Linux {kernel}");
    s
}

/// A target of issue #5, checked against this run's figures.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is promised, e.g. `evmux-epoll <= 1.05x raw-epoll (chain)`.
    pub name: String,
    /// `None` when it could not be checked in this run.
    pub met: Option<bool>,
    /// The figure that decides it (the worst case), in words.
    pub detail: String,
}

impl Target {
    /// As a JSON object.
    pub fn to_json(&self) -> Json {
        Json::obj([
            ("target", Json::Str(self.name.clone())),
            (
                "met",
                match self.met {
                    Some(b) => Json::Bool(b),
                    None => Json::Str("not checked".into()),
                },
            ),
            ("detail", Json::Str(self.detail.clone())),
        ])
    }

    /// One line for the text report.
    pub fn line(&self) -> String {
        let verdict = match self.met {
            Some(true) => "met   ",
            Some(false) => "MISSED",
            None => "n/a   ",
        };
        format!("  {verdict} {}: {}", self.name, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_rotation() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(rotated(&[1, 2, 3], 1), vec![2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 3), vec![1, 2, 3]);
    }

    #[test]
    fn paired_ratio_compares_within_blocks() {
        let turns = |v: &[f64]| Samples {
            turn_us: v.to_vec(),
            us: v.to_vec(),
            ..Samples::default()
        };
        // The machine is twice as slow in the last three blocks; `a` costs
        // 10% more than `b` in most blocks, 0% and 20% in two. The overall
        // medians both land on a slow block and say 1.0; the pairs say 1.1.
        let b = turns(&[1.0, 1.0, 2.0, 2.0, 2.0]);
        let a = turns(&[1.1, 1.1, 2.2, 2.0, 2.4]);
        assert!((median(&a.us) / median(&b.us) - 1.0).abs() < 1e-9);
        assert!((paired_ratio(&a, &b) - 1.1).abs() < 1e-9);
        // Only blocks both ran are paired.
        assert!((paired_ratio(&turns(&[1.1, 1.1]), &b) - 1.1).abs() < 1e-9);
        assert!(paired_ratio(&turns(&[]), &b).is_nan());
    }

    #[test]
    fn pairs_put_read_ends_low() {
        let nofile = raise_nofile().unwrap();
        let p = Pairs::new(8, nofile).unwrap();
        let max_r = p.r.iter().map(|f| f.as_raw_fd()).max().unwrap();
        let min_w = p.w.iter().map(|f| f.as_raw_fd()).min().unwrap();
        assert!(max_r < min_w);
        assert!(send1(&p.w[3]));
        assert_eq!(read1(&p.r[3]), Ok(1));
        assert_eq!(read1(&p.r[3]), Err(io::ErrorKind::WouldBlock));
    }

    #[test]
    fn every_subject_runs_a_small_chain_round() {
        struct One<'a> {
            r: &'a [OwnedFd],
            got: usize,
        }
        impl Handler for One<'_> {
            fn readable(&mut self, idx: usize) {
                if read1(&self.r[idx]) == Ok(1) {
                    self.got += 1;
                }
            }
            fn readable_drain(&mut self, idx: usize) {
                while read1(&self.r[idx]) == Ok(1) {
                    self.got += 1;
                }
            }
            fn done(&self, waits: u64) -> bool {
                self.got == 4 || waits > 1000
            }
        }
        let nofile = raise_nofile().unwrap();
        let p = Pairs::new(16, nofile).unwrap();
        for s in Roster::probe().subjects {
            let mut mux = Mux::open(s, &p.r, 16).unwrap().unwrap();
            for i in [0, 5, 10, 15] {
                assert!(send1(&p.w[i]));
            }
            let mut h = One { r: &p.r, got: 0 };
            mux.run(&mut h, &p.r).unwrap();
            assert_eq!(h.got, 4, "{}", s.name());
            mux.close(&p.r).unwrap();
        }
    }
}
