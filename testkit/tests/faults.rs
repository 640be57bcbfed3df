//! Fault injection through the `evmux_sys::fault` seam, on every backend,
//! with the model as oracle (issue #8, item 1).
//!
//! A case is a random scenario (the conformance generator's, plus wake-ups
//! and short blocking waits) and a random *fault profile*: one to four rules
//! "fail calls of this kind with this errno, with this probability", over
//! the syscall kinds the backend goes through in a wait (`epoll_ctl`,
//! `epoll_wait`, `poll`, `select`, `io_uring_enter`, `fstat`, the waker's
//! eventfd `read`) and the errnos `EINTR`, `EAGAIN`, `ENOMEM`, `EMFILE`,
//! `EBADF`. The profile is installed (re-seeded) around every wait, and,
//! when the case says so, around every `forget` (io_uring cancels inside
//! `forget`); world operations never fail.
//!
//! `EINTR` is injected where a kernel can give it: into a wait that blocks
//! (a timeout, and nothing ready). A kernel never interrupts a call that has
//! something to report, nor `epoll_wait` with a zero timeout; injecting it
//! there tests nothing a program meets (`EVMUX_FAULT_EINTR=anywhere` does
//! it anyway; `an_interrupted_zero_timeout_wait_looks_again` pins the
//! driver's answer down).
//!
//! The scenario runs in lockstep on the model (simulated descriptors, no
//! faults) and on the backend (real descriptors, faults). How the two are
//! compared, wait by wait:
//! - **`EINTR` is invisible.** `get_next_event` never returns
//!   `Interrupted`, and a blocking wait that returns nothing lasted at least
//!   its timeout (the remaining time was kept across the retries).
//! - **A failed wait is an `Err` with the injected errno.** The program
//!   calls `get_next_event` again (up to three more times with faults, then
//!   once without, which must succeed); the events of the call that
//!   succeeds must be what the model's one wait gave.
//! - **A refused change is an error event for the right token.** An error
//!   event the model does not have must carry an injected errno, in a wait
//!   where faults were injected, for a live token. That token's readiness
//!   in this wait is not compared (the change did not apply); the program
//!   then declares the token again, on both sides, as a program would.
//!   Every error event of the model (`EBADF` for a closed descriptor) must
//!   be in the backend's stream too (its errno may be an injected one).
//! - **Everything else is equal**: every other token's event, field by
//!   field, including the waker's.
//! - **No registration is lost.** After every wait the poller's table
//!   (`registrations()`) equals the model's. At the end, with faults
//!   cleared, every live token is declared again level-triggered for both
//!   directions and one wait must give exactly the model's events: a
//!   registration the kernel lost, or kept under a stale state, shows up
//!   there. Then every token is forgotten and a wait must be empty.
//!
//! The eleven bugs this test found (in the driver, epoll, superpoll and
//! uring) are fixed; the deterministic reproducers at the end of this file
//! keep them fixed. Every test here holds the scenario lock
//! (`conformance::serial()`) while it has descriptors open: a case that
//! closes a descriptor and declares it again expects the model's `EBADF`,
//! which a number reused by another test's thread would take away.
//!
//! Settings: `EVMUX_FAULT_CASES` (cases per backend, default 256);
//! `EVMUX_BACKEND` (one backend); `EVMUX_FAULT_SEED` (the proptest seed,
//! random per run and printed with a failure); `EVMUX_FAULT_KINDS=epoll_ctl,
//! poll,…` (only these kinds, for triage); `EVMUX_FAULT_EINTR=anywhere`. The
//! figures (faults injected, failed waits, refused changes) go to stderr.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io;
use std::time::{Duration, Instant};

use evmux_interest::{Backend, Error, Event, Events, Interest, Mode, Poller, Token, Waker};
use evmux_sys::counter::SyscallKind;
use evmux_sys::fault::{self, FaultPlan};
use evmux_testkit::conformance::{self, MakeBackend};
use evmux_testkit::model::{ModelBackend, SharedSim};
use evmux_testkit::scenario::{Step, to_rust};
use evmux_testkit::strategy::{Seed, realize, seeds};
use evmux_testkit::world::{Handle, IoOutcome, RealWorld, World};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

const EINTR: i32 = libc::EINTR;
const ERRNOS: [i32; 5] = [
    libc::EINTR,
    libc::EAGAIN,
    libc::ENOMEM,
    libc::EMFILE,
    libc::EBADF,
];

/// The waker's token (the generator uses tokens 0..6).
const WAKER: usize = 90;

/// The syscall kinds a backend goes through during a wait (and, for uring,
/// during `forget`).
fn kinds(backend: &str) -> &'static [SyscallKind] {
    use SyscallKind as K;
    match backend {
        "epoll" => &[K::EpollCtl, K::EpollWait, K::Fstat, K::EventfdRead],
        "poll" => &[K::Poll, K::EventfdRead],
        "select" => &[K::Select, K::Poll, K::EventfdRead],
        "uring" => &[K::IoUringEnter, K::Poll, K::EventfdRead],
        "superpoll" => &[K::Poll, K::EpollCtl, K::EpollWait, K::Fstat, K::EventfdRead],
        _ => &[K::Poll, K::EventfdRead],
    }
}

/// One rule of a fault profile.
#[derive(Clone, Copy, Debug)]
struct Rule {
    kind: SyscallKind,
    errno: i32,
    per_mille: u32,
}

/// The faults of one case.
#[derive(Clone, Debug)]
struct Profile {
    seed: u64,
    rules: Vec<Rule>,
    /// Also inject around `forget`.
    on_forget: bool,
}

impl Profile {
    /// The plan of one call; `eintr`: include the `EINTR` rules.
    fn plan(&self, salt: u64, eintr: bool) -> FaultPlan {
        let mut p = FaultPlan::new(
            self.seed
                .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .max(1),
        );
        for r in self.rules.iter().filter(|r| eintr || r.errno != EINTR) {
            p = p.fail(r.kind, r.errno, r.per_mille);
        }
        p
    }

    fn errnos(&self) -> BTreeSet<i32> {
        self.rules.iter().map(|r| r.errno).collect()
    }
}

/// What a case is made of, as proptest generates it.
type RawCase = (Vec<Seed>, Vec<(u8, u8, u16)>, u64, Vec<u8>, bool);

fn raw_cases() -> impl Strategy<Value = RawCase> {
    (
        seeds(48),
        proptest::collection::vec((any::<u8>(), any::<u8>(), 0u16..1000), 1..=4),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..12),
        any::<bool>(),
    )
}

/// One action of a fault case: a scenario step, or a wake-up.
#[derive(Clone, Debug)]
enum Act {
    Step(Step),
    Wake,
}

fn build(backend: &str, raw: &RawCase) -> (Vec<Act>, Profile) {
    let (seeds, rules, seed, extras, on_forget) = raw;
    let ks = kinds(backend);
    // EVMUX_FAULT_KINDS=epoll_ctl,poll,…: only these kinds (for triage).
    let only: Option<Vec<SyscallKind>> = std::env::var("EVMUX_FAULT_KINDS").ok().map(|v| {
        ks.iter()
            .copied()
            .filter(|k| v.split(',').any(|n| n == k.name()))
            .collect()
    });
    let ks = match &only {
        Some(v) if !v.is_empty() => v.as_slice(),
        _ => ks,
    };
    let rules = rules
        .iter()
        .map(|&(k, e, p)| {
            // EINTR weighs 40%, every other errno 15%.
            let errno = match e % 20 {
                0..=7 => EINTR,
                x => ERRNOS[1 + usize::from((x - 8) / 3)],
            };
            // Bounded so that a retried wait ends: EINTR at most 50%, the
            // others at most 30%.
            let cap = if errno == EINTR { 500 } else { 300 };
            Rule {
                kind: ks[usize::from(k) % ks.len()],
                errno,
                per_mille: u32::from(p) * cap / 1000,
            }
        })
        .collect();
    let steps = realize(seeds);
    let mut acts = Vec::with_capacity(steps.len() + extras.len());
    let mut extra = extras.iter().copied();
    let last = steps.len() - 1;
    for (i, s) in steps.into_iter().enumerate() {
        if s == Step::Wait && i != last {
            match extra.next() {
                Some(x) if x % 4 == 0 => {
                    acts.push(Act::Step(Step::WaitFor(1 + u64::from(x / 4 % 2))));
                    continue;
                }
                Some(x) if x % 4 == 1 => acts.push(Act::Wake),
                _ => {}
            }
        }
        acts.push(Act::Step(s));
    }
    (
        acts,
        Profile {
            seed: *seed,
            rules,
            on_forget: *on_forget,
        },
    )
}

/// Figures over all cases of one backend.
#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    waits: u64,
    faulted_waits: u64,
    injected: u64,
    injected_in_forget: u64,
    failed_calls: u64,
    clean_retries: u64,
    refused_changes: u64,
    blocking_waits_checked: u64,
    eintr_waits: u64,
    messages: BTreeMap<String, u64>,
}

fn error_name(e: &Error) -> String {
    let s = format!("{e:?}");
    s.split([' ', '{', '(']).next().unwrap_or("").to_string()
}

struct Run<'a> {
    backend: &'static str,
    profile: &'a Profile,
    stats: &'a mut Stats,
    sim: SharedSim,
    model: Poller<ModelBackend>,
    model_waker: Waker,
    world: RealWorld,
    real: Poller<Box<dyn Backend>>,
    real_waker: Waker,
    /// As the scenario runner: the live token of a handle, for `would_block`.
    tokens: HashMap<Handle, usize>,
    handle_of: HashMap<usize, Handle>,
    /// Live tokens and how they were last declared.
    decl: BTreeMap<usize, (Handle, Interest, Mode)>,
    salt: u64,
    log: String,
}

impl<'a> Run<'a> {
    fn new(
        backend: &'static str,
        make: MakeBackend,
        profile: &'a Profile,
        stats: &'a mut Stats,
    ) -> io::Result<Run<'a>> {
        let sim = SharedSim::new();
        let mut model = Poller::new(ModelBackend::new(sim.clone()));
        let model_waker = model.waker(Token(WAKER))?;
        let mut real = Poller::new(make()?);
        let real_waker = real.waker(Token(WAKER))?;
        Ok(Run {
            backend,
            profile,
            stats,
            sim,
            model,
            model_waker,
            world: RealWorld::new(),
            real,
            real_waker,
            tokens: HashMap::new(),
            handle_of: HashMap::new(),
            decl: BTreeMap::new(),
            salt: 0,
            log: String::new(),
        })
    }

    fn fail(&self, i: usize, act: &Act, what: String) -> String {
        format!(
            "{}: action {i} ({act:?}): {what}\nlog of the faulted calls:\n{}",
            self.backend, self.log
        )
    }

    fn would_block(&mut self, h: Handle, i: Interest) {
        if let Some(&t) = self.tokens.get(&h) {
            self.model
                .would_block(Token(t), i)
                .expect("the runner tracks live tokens");
            self.real
                .would_block(Token(t), i)
                .expect("the runner tracks live tokens");
        }
    }

    fn declare(
        &mut self,
        h: Handle,
        token: usize,
        interest: Interest,
        mode: Mode,
    ) -> Result<(), String> {
        let m = self
            .model
            .declare_interest(self.sim.raw_fd(h), Token(token), interest, mode)
            .map_err(|e| error_name(&e));
        let r = self
            .real
            .declare_interest(self.world.raw_fd(h), Token(token), interest, mode)
            .map_err(|e| error_name(&e));
        if m != r {
            return Err(format!("declare: model {m:?}, backend {r:?}"));
        }
        if r.is_ok() {
            if let Some(old) = self.handle_of.insert(token, h)
                && old != h
            {
                self.tokens.remove(&old);
            }
            self.tokens.insert(h, token);
            self.decl.insert(token, (h, interest, mode));
        }
        Ok(())
    }

    fn forget(&mut self, token: usize) -> Result<(), String> {
        let m = self.model.forget(Token(token)).map_err(|e| error_name(&e));
        let r = if self.profile.on_forget {
            self.salt += 1;
            fault::install(self.profile.plan(self.salt, eintr_anywhere()));
            let r = self.real.forget(Token(token));
            let n = fault::injected();
            fault::clear();
            self.stats.injected += n;
            self.stats.injected_in_forget += n;
            if n > 0 {
                let _ = writeln!(self.log, "  forget({token}): {n} fault(s) injected");
            }
            r
        } else {
            self.real.forget(Token(token))
        }
        .map_err(|e| error_name(&e));
        if m != r {
            return Err(format!("forget: model {m:?}, backend {r:?}"));
        }
        if r.is_ok() {
            if let Some(h) = self.handle_of.remove(&token)
                && self.tokens.get(&h) == Some(&token)
            {
                self.tokens.remove(&h);
            }
            self.decl.remove(&token);
        }
        Ok(())
    }

    /// One wait on both sides; returns the tokens whose change a fault
    /// refused (already declared again on both sides).
    fn wait(&mut self, timeout: Duration, faults: bool) -> Result<(), String> {
        self.stats.waits += 1;
        let mut mev = Events::with_capacity(256);
        self.model
            .get_next_event(&mut mev, Some(timeout))
            .map_err(|e| format!("the model's wait failed: {e}"))?;
        let mut m = mev.as_slice().to_vec();
        m.sort();

        // EINTR where a kernel can give it: a wait that blocks, because
        // nothing is ready (unless EVMUX_FAULT_EINTR=anywhere).
        let eintr = eintr_anywhere() || (!timeout.is_zero() && m.is_empty());
        let mut rev = Events::with_capacity(256);
        let mut injected = 0;
        let mut attempts = 0;
        let elapsed = loop {
            attempts += 1;
            let faulted = faults && attempts <= 4;
            if faulted {
                self.salt += 1;
                fault::install(self.profile.plan(self.salt, eintr));
            } else if faults {
                self.stats.clean_retries += 1;
            }
            let t0 = Instant::now();
            let res = self.real.get_next_event(&mut rev, Some(timeout));
            let elapsed = t0.elapsed();
            if faulted {
                let n = fault::injected();
                fault::clear();
                injected += n;
            }
            match res {
                Ok(_) => break elapsed,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    return Err(format!("EINTR surfaced from get_next_event: {e}"));
                }
                Err(e) if faulted => {
                    self.stats.failed_calls += 1;
                    let msg = e.to_string();
                    let _ = writeln!(self.log, "  wait attempt {attempts}: Err({msg})");
                    let errno_ok = e
                        .raw_os_error()
                        .is_some_and(|n| self.profile.errnos().contains(&n));
                    if !errno_ok || msg.is_empty() {
                        return Err(format!(
                            "a failed wait says {msg:?} ({:?}), which is no injected errno",
                            e.raw_os_error()
                        ));
                    }
                    *self.stats.messages.entry(msg).or_default() += 1;
                }
                Err(e) => return Err(format!("a wait without faults failed: {e}")),
            }
        };
        self.stats.injected += injected;
        if injected > 0 {
            self.stats.faulted_waits += 1;
            if eintr && self.profile.rules.iter().any(|r| r.errno == EINTR) {
                self.stats.eintr_waits += 1;
            }
        }
        let mut r = rev.as_slice().to_vec();
        r.sort();
        let _ = writeln!(
            self.log,
            "  wait({timeout:?}): {injected} fault(s), {attempts} call(s): model {m:?}, backend {r:?}"
        );
        if !timeout.is_zero() && r.is_empty() {
            self.stats.blocking_waits_checked += 1;
            if elapsed < timeout {
                return Err(format!(
                    "a wait of {timeout:?} returned nothing after {elapsed:?}"
                ));
            }
        }

        // Compare, token by token.
        let by_token = |v: &[Event]| -> Result<BTreeMap<usize, Event>, String> {
            let mut map = BTreeMap::new();
            for ev in v {
                if map.insert(ev.token.0, *ev).is_some() {
                    return Err(format!(
                        "two events for token {} in one wait: {v:?}",
                        ev.token.0
                    ));
                }
            }
            Ok(map)
        };
        let mm = by_token(&m)?;
        let rm = by_token(&r)?;
        // A refusal in a wait with faults may carry the injected errno or
        // the one of the call the fault made fail (epoll: `EPERM` when the
        // `fstat` that tells a regular file failed).
        let injected_errno = |e: Option<i32>| injected > 0 && e.is_some();
        let mut refused = BTreeSet::new();
        for (&t, re) in rm.iter().filter(|(_, e)| e.errno.is_some()) {
            match mm.get(&t) {
                Some(me) if me.errno.is_some() => {
                    if me.errno != re.errno && !injected_errno(re.errno) {
                        return Err(format!("error event {re:?} where the model has {me:?}"));
                    }
                }
                _ => {
                    if !injected_errno(re.errno) || !self.decl.contains_key(&t) {
                        return Err(format!(
                            "error event {re:?} that no fault explains (model: {:?})",
                            mm.get(&t)
                        ));
                    }
                    refused.insert(t);
                }
            }
        }
        for (&t, me) in mm.iter().filter(|(_, e)| e.errno.is_some()) {
            if rm.get(&t).is_none_or(|re| re.errno.is_none()) {
                return Err(format!(
                    "the model's error event {me:?} is missing (backend: {:?})",
                    rm.get(&t)
                ));
            }
        }
        let tokens: BTreeSet<usize> = mm.keys().chain(rm.keys()).copied().collect();
        for t in tokens.difference(&refused) {
            let (me, re) = (mm.get(t), rm.get(t));
            let same = match (me, re) {
                // Both refused: the errno may differ (checked above).
                (Some(a), Some(b)) if a.errno.is_some() && b.errno.is_some() => true,
                _ => me == re,
            };
            if !same {
                return Err(format!(
                    "token {t}: model {me:?}, backend {re:?}\n  model:   {m:?}\n  backend: {r:?}"
                ));
            }
        }
        // The program declares a refused registration again.
        self.stats.refused_changes += refused.len() as u64;
        for t in refused {
            let (h, i, mode) = self.decl[&t];
            self.declare(h, t, i, mode)?;
        }
        self.same_tables()
    }

    fn same_tables(&self) -> Result<(), String> {
        let table = |regs: Vec<evmux_interest::Registration>, fd_of: &dyn Fn(Handle) -> i32| {
            let mut v = Vec::new();
            for r in regs {
                let h = self.handle_of.get(&r.token.0).copied();
                let fd_ok = h.is_some_and(|h| fd_of(h) == r.fd);
                v.push((r.token.0, r.readable, r.writable, r.mode, fd_ok));
            }
            v.sort();
            v
        };
        let m = table(self.model.registrations().collect(), &|h| {
            self.sim.raw_fd(h)
        });
        let r = table(self.real.registrations().collect(), &|h| {
            self.world.raw_fd(h)
        });
        if m != r {
            return Err(format!(
                "registration tables differ: model {m:?}, backend {r:?}"
            ));
        }
        Ok(())
    }

    fn act(&mut self, act: &Act) -> Result<(), String> {
        let step = match act {
            Act::Wake => {
                self.model_waker.wake().map_err(|e| e.to_string())?;
                self.real_waker.wake().map_err(|e| e.to_string())?;
                return Ok(());
            }
            Act::Step(s) => s,
        };
        macro_rules! both {
            ($($call:tt)*) => {{
                let m = self.sim.$($call)*;
                let r = self.world.$($call)*;
                if m != r {
                    return Err(format!("world: model {m:?}, backend {r:?}"));
                }
                r
            }};
        }
        match *step {
            Step::Open(k) => {
                both!(open(k));
            }
            Step::Reuse(h, k) => {
                both!(reuse(h, k));
            }
            Step::Declare {
                h,
                token,
                interest,
                mode,
            } => self.declare(h, token, interest, mode)?,
            Step::Forget(t) => self.forget(t)?,
            Step::Write(h, n) => {
                if both!(write(h, n)) == IoOutcome::WouldBlock {
                    self.would_block(h, Interest::WRITABLE);
                }
            }
            Step::Read(h, n) => {
                if both!(read(h, n)) == IoOutcome::WouldBlock {
                    self.would_block(h, Interest::READABLE);
                }
            }
            Step::Fill(h) => {
                if both!(fill(h)) == IoOutcome::Done(0) {
                    self.would_block(h, Interest::WRITABLE);
                }
            }
            Step::Drain(h) => {
                if both!(drain(h)).end == IoOutcome::WouldBlock {
                    self.would_block(h, Interest::READABLE);
                }
            }
            Step::ShutdownWrite(h) => {
                let _ = both!(shutdown_write(h));
            }
            Step::Close(h) => {
                let _ = both!(close(h));
            }
            Step::Wait => self.wait(Duration::ZERO, true)?,
            Step::WaitFor(ms) => self.wait(Duration::from_millis(ms), true)?,
            ref other => return Err(format!("the fault runner has no {other:?}")),
        }
        Ok(())
    }

    /// With faults cleared: every live token declared again as level, both
    /// directions, must report exactly what the model reports; then, every
    /// token forgotten, nothing.
    fn finish(&mut self) -> Result<(), String> {
        let live: Vec<(usize, Handle)> = self.decl.iter().map(|(&t, &(h, _, _))| (t, h)).collect();
        for &(t, h) in &live {
            self.declare(h, t, Interest::BOTH, Mode::Level)?;
        }
        self.wait(Duration::ZERO, false)?;
        for &(t, _) in &live {
            self.forget(t)?;
        }
        self.wait(Duration::ZERO, false)
    }
}

fn run_case(
    label: &'static str,
    name: &'static str,
    make: MakeBackend,
    raw: &RawCase,
    stats: &mut Stats,
) -> Result<(), String> {
    let (acts, profile) = build(name, raw);
    let _serial = conformance::serial();
    stats.cases += 1;
    let mut run = Run::new(label, make, &profile, stats).map_err(|e| format!("set-up: {e}"))?;
    for (i, act) in acts.iter().enumerate() {
        if let Err(what) = run.act(act) {
            return Err(run.fail(i, act, what));
        }
    }
    let end = Act::Step(Step::Wait);
    if let Err(what) = run.finish() {
        return Err(run.fail(
            acts.len(),
            &end,
            format!("at the end, without faults: {what}"),
        ));
    }
    Ok(())
}

fn describe(name: &str, raw: &RawCase) -> String {
    let (acts, profile) = build(name, raw);
    let steps: Vec<Step> = acts
        .iter()
        .filter_map(|a| match a {
            Act::Step(s) => Some(s.clone()),
            Act::Wake => None,
        })
        .collect();
    let wakes: Vec<usize> = acts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| matches!(a, Act::Wake).then_some(i))
        .collect();
    format!(
        "profile: {profile:?}\nwake-ups before actions {wakes:?}\nsteps: {}",
        to_rust(&steps)
    )
}

/// `EVMUX_FAULT_EINTR=anywhere`: inject `EINTR` into every call, not only
/// into waits that block (see the module docs).
fn eintr_anywhere() -> bool {
    std::env::var("EVMUX_FAULT_EINTR").is_ok_and(|v| v == "anywhere")
}

fn cases() -> u32 {
    std::env::var("EVMUX_FAULT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

fn fault_property(name: &'static str) {
    fault_property_with(name, name, None);
}

/// The property test on backend `name` (made by `make`, or as the
/// conformance suite makes it), reported as `label`.
fn fault_property_with(label: &'static str, name: &'static str, make: Option<MakeBackend>) {
    const { assert!(fault::ENABLED, "evmux-sys is built without fault-injection") };
    let specs = conformance::backends_from_env().expect("EVMUX_BACKEND names a backend");
    let Some(spec) = specs.into_iter().find(|s| s.name == name) else {
        eprintln!("{label}: not selected by EVMUX_BACKEND, skipped");
        return;
    };
    let make = match (make, spec.make) {
        (Some(make), Ok(_)) => make,
        (None, Ok(make)) => make,
        (_, Err(why)) => {
            eprintln!("{label}: not available here ({why}), skipped");
            return;
        }
    };
    let cases = cases();
    // Random per run unless EVMUX_FAULT_SEED fixes it; printed on failure.
    let seed = std::env::var("EVMUX_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        });
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let mut stats = Stats::default();
    let started = Instant::now();
    let result = {
        let stats = std::cell::RefCell::new(&mut stats);
        runner.run(&raw_cases(), |raw| {
            run_case(label, name, make, &raw, *stats.borrow_mut()).map_err(TestCaseError::fail)
        })
    };
    let took = started.elapsed();
    eprintln!(
        "{label}: {} case runs (incl. shrinking) in {took:.1?}: {} waits, {} with faults, \
         {} faults injected ({} in forget), {} failed get_next_event calls, \
         {} clean retries, {} refused changes (error events), {} blocking waits timed, \
         {} faulted waits with EINTR armed",
        stats.cases,
        stats.waits,
        stats.faulted_waits,
        stats.injected,
        stats.injected_in_forget,
        stats.failed_calls,
        stats.clean_retries,
        stats.refused_changes,
        stats.blocking_waits_checked,
        stats.eintr_waits,
    );
    for (msg, n) in &stats.messages {
        eprintln!("{label}:   get_next_event error {n}x: {msg}");
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, minimal)) => panic!(
            "{why}\nminimal case (EVMUX_FAULT_SEED={seed} reproduces the run):\n{}",
            describe(name, &minimal)
        ),
        Err(TestError::Abort(why)) => panic!("{label}: aborted: {why}"),
    }
    assert!(stats.injected > 0, "{label}: no fault was injected");
}

#[test]
fn faults_epoll() {
    fault_property("epoll");
}

#[test]
fn faults_poll() {
    fault_property("poll");
}

#[test]
fn faults_select() {
    fault_property("select");
}

#[test]
fn faults_uring() {
    fault_property("uring");
}

#[test]
fn faults_superpoll() {
    fault_property("superpoll");
}

/// Superpoll's policy that demotes every registration (but those the batch
/// just changed) to its epoll half at every wait, and never promotes.
fn cold_eager() -> evmux_superpoll::SuperpollConfig {
    evmux_superpoll::SuperpollConfig {
        promote_above: 1.0,
        demote_below: 1.0,
        break_even: 1.0,
        interval: 1,
        max_moves: usize::MAX,
        half_life: 1,
        min_stay: 0,
        epoll_wait_cost: 0.0,
    }
}

/// Superpoll demoting every registration to its epoll half at every wait:
/// `epoll_ctl` and the inner `epoll_wait` at every step.
#[test]
fn faults_superpoll_cold() {
    fn make() -> io::Result<Box<dyn Backend>> {
        Ok(Box::new(evmux_superpoll::SuperpollBackend::with_config(
            cold_eager(),
        )?))
    }
    fault_property_with("superpoll(cold)", "superpoll", Some(make));
}

/// A superpoll policy that moves descriptors both ways as fast as it can:
/// promoted at the first reports, demoted after a few idle waits.
fn churn_eager() -> evmux_superpoll::SuperpollConfig {
    evmux_superpoll::SuperpollConfig {
        promote_above: 0.6,
        demote_below: 0.3,
        break_even: 0.5,
        interval: 1,
        max_moves: usize::MAX,
        half_life: 1,
        min_stay: 0,
        epoll_wait_cost: 0.0,
    }
}

/// Superpoll moving descriptors both ways as fast as its policy allows.
#[test]
fn faults_superpoll_churn() {
    fn make() -> io::Result<Box<dyn Backend>> {
        Ok(Box::new(evmux_superpoll::SuperpollBackend::with_config(
            churn_eager(),
        )?))
    }
    fault_property_with("superpoll(churn)", "superpoll", Some(make));
}

// ----- Deterministic reproducers of what the property test found ---------
//
// Each bug is fixed; each test asserts the fixed behaviour.

fn backend(kind: evmux_backends::BackendKind) -> Option<Poller<evmux_backends::AnyBackend>> {
    match evmux_backends::new_backend(kind) {
        Ok(b) => Some(Poller::new(b)),
        Err(e) => {
            eprintln!("{kind:?} unavailable: {e}");
            None
        }
    }
}

/// Driver: a wait whose remaining time is zero ends at an `EINTR` without
/// having looked (`Ok(0)` although a registration is ready). Every backend
/// (shown on poll). A kernel gives `EINTR` for a zero-timeout `poll(2)` or
/// `select(2)` only when nothing was ready, so real programs do not see
/// it; but an `EINTR` from any *internal* call of a backend, or one that
/// lands just as a positive timeout runs out, ends the call the same way.
#[test]
fn an_interrupted_zero_timeout_wait_looks_again() {
    let _serial = conformance::serial();
    let Some(mut p) = backend(evmux_backends::BackendKind::Poll) else {
        return;
    };
    let (r, w) = evmux_sys::fd::pipe().unwrap();
    evmux_sys::fd::write(&w, b"x").unwrap();
    use std::os::fd::AsRawFd;
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let mut events = Events::with_capacity(8);
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::Poll, 1, libc::EINTR));
    let n = p.get_next_event(&mut events, Some(Duration::ZERO));
    fault::clear();
    assert_eq!(
        n.unwrap(),
        1,
        "an interrupted zero-timeout wait must look again"
    );
}

/// epoll: a regular file declared edge (or oneshot) is kept ready in user
/// space; its report is taken (`pending = false`) *before* `epoll_wait`,
/// and when `epoll_wait` then fails the report is gone for good: the retry
/// and every later wait are silent until the file is declared again.
#[test]
fn epoll_failed_wait_keeps_a_file_edge_report() {
    let _serial = conformance::serial();
    let Some(mut p) = backend(evmux_backends::BackendKind::Epoll) else {
        return;
    };
    let f = evmux_sys::fd::open_tmp_regular_file().unwrap();
    use std::os::fd::AsRawFd;
    p.declare_interest(f.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    let mut events = Events::with_capacity(8);
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollWait, 1, libc::ENOMEM));
    let err = p
        .get_next_event(&mut events, Some(Duration::ZERO))
        .unwrap_err();
    fault::clear();
    assert_eq!(err.raw_os_error(), Some(libc::ENOMEM));
    let n = p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    assert_eq!(n, 1, "the file's edge report must survive a failed wait");
}

/// epoll: when the waker's eventfd is among the reports of an
/// `epoll_wait`, a failing drain (`notifier.drain()?` inside the loop over
/// the reports) returns at once: every report of that `epoll_wait` is
/// dropped (with `EINTR`: every report after the waker's). The kernel has
/// consumed them, so edge and oneshot readiness is lost for good.
#[test]
fn epoll_waker_drain_error_keeps_edge_events() {
    let _serial = conformance::serial();
    let Some(mut p) = backend(evmux_backends::BackendKind::Epoll) else {
        return;
    };
    let waker = p.waker(Token(90)).unwrap();
    let (_r, w) = evmux_sys::fd::pipe().unwrap();
    use std::os::fd::AsRawFd;
    p.declare_interest(w.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Edge)
        .unwrap();
    waker.wake().unwrap();
    let mut events = Events::with_capacity(8);
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EventfdRead, 1, libc::ENOMEM));
    let first = p.get_next_event(&mut events, Some(Duration::ZERO));
    fault::clear();
    let mut seen: Vec<Event> = match first {
        Ok(_) => events.as_slice().to_vec(),
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
            Vec::new()
        }
    };
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    seen.extend(events.iter().copied());
    assert!(
        seen.iter().any(|e| e.token == Token(1) && e.writable),
        "the pipe's edge report was lost: {seen:?}"
    );
}

/// epoll: a modification the kernel refuses leaves the old registration in
/// the epoll set (under the old key); if the program then forgets the
/// token instead of declaring it again, nothing removes it (the driver
/// thinks the kernel holds nothing). A level-ready descriptor then makes
/// every `epoll_wait` return at once with a report the driver drops, and
/// a blocking wait spins until its timeout.
#[test]
fn epoll_refused_mod_then_forget_does_not_spin() {
    let _serial = conformance::serial();
    let Some(mut p) = backend(evmux_backends::BackendKind::Epoll) else {
        return;
    };
    let (r, w) = evmux_sys::fd::pipe().unwrap();
    evmux_sys::fd::write(&w, b"x").unwrap();
    use std::os::fd::AsRawFd;
    let mut events = Events::with_capacity(8);
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap(),
        1
    );
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollCtl, 1, libc::ENOMEM));
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    fault::clear();
    assert_eq!(events.as_slice()[0].errno, Some(libc::ENOMEM));
    p.forget(Token(1)).unwrap();
    let before = evmux_sys::counter::get(SyscallKind::EpollWait);
    let t0 = Instant::now();
    assert_eq!(
        p.get_next_event(&mut events, Some(Duration::from_millis(50)))
            .unwrap(),
        0
    );
    let waits = evmux_sys::counter::get(SyscallKind::EpollWait) - before;
    eprintln!(
        "a 50 ms wait took {:?} and {waits} epoll_wait calls",
        t0.elapsed()
    );
    assert!(
        waits <= 3,
        "{waits} epoll_wait calls in one 50 ms wait: a busy loop"
    );
}

/// Driver (on epoll): a re-declared edge registration whose `MOD` the
/// kernel refuses keeps its old watch in the kernel, whose edge was
/// reported already. The driver took the old watch as the kernel's, so
/// declaring the same watch again sent nothing, and the writable pipe
/// stayed silent where a declare re-arms (found by `faults_epoll`; the
/// model reports it writable again).
#[test]
fn epoll_refused_rearm_then_same_declare_rearms() {
    let _serial = conformance::serial();
    let Some(mut p) = backend(evmux_backends::BackendKind::Epoll) else {
        return;
    };
    let (_r, w) = evmux_sys::fd::pipe().unwrap();
    use std::os::fd::AsRawFd;
    let mut events = Events::with_capacity(8);
    let writable = |events: &Events| events.iter().any(|e| e.token == Token(1) && e.writable);
    p.declare_interest(w.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Edge)
        .unwrap();
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    assert!(writable(&events), "first report: {:?}", events.as_slice());
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    assert!(!writable(&events), "edge: reported once");
    p.declare_interest(w.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Edge)
        .unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollCtl, 1, libc::EAGAIN));
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    fault::clear();
    assert!(
        events
            .iter()
            .any(|e| e.token == Token(1) && e.errno == Some(libc::EAGAIN)),
        "the refused re-arm is an error event: {:?}",
        events.as_slice()
    );
    p.declare_interest(w.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Edge)
        .unwrap();
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    assert!(
        writable(&events),
        "declared again after the refusal: the writable pipe is silent: {:?}",
        events.as_slice()
    );
}

/// Without any fault: "forget, then close" of a descriptor whose file is
/// also open elsewhere (a `dup`, a forked child, a descriptor sent over a
/// socket). The removal waits for the next batch; by then the number is
/// closed, so `EPOLL_CTL_DEL` fails with `EBADF`, and the registration
/// stays in the epoll set as long as the file is open (epoll keys it by
/// file *and* number). Its reports carry a stale key, which the driver
/// drops, so a level-ready file makes every later blocking wait spin. Same
/// in superpoll's epoll half while it holds any other registration (its
/// epoll descriptor stays readable in the `poll(2)` array).
fn forget_close_dup_spins<B: Backend>(mut p: Poller<B>) {
    let (r, w) = evmux_sys::fd::pipe().unwrap();
    let _dup = evmux_sys::fd::dup(&r).unwrap();
    use std::os::fd::AsRawFd;
    let mut events = Events::with_capacity(8);
    p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    // Another idle registration, so that superpoll's epoll half stays in use.
    let (idle, _idle_w) = evmux_sys::fd::pipe().unwrap();
    p.declare_interest(idle.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    // A few idle waits (superpoll moves them to its epoll half), then data.
    for _ in 0..4 {
        assert_eq!(
            p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap(),
            0
        );
    }
    evmux_sys::fd::write(&w, b"x").unwrap();
    assert_eq!(
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap(),
        1
    );
    p.forget(Token(1)).unwrap();
    drop(r);
    let before = evmux_sys::counter::snapshot();
    let t0 = Instant::now();
    assert_eq!(
        p.get_next_event(&mut events, Some(Duration::from_millis(50)))
            .unwrap(),
        0
    );
    let calls = (evmux_sys::counter::snapshot() - before).total();
    eprintln!(
        "{}: a 50 ms wait took {:?} and {calls} syscalls",
        p.backend_name(),
        t0.elapsed()
    );
    assert!(
        calls <= 6,
        "{calls} syscalls in one 50 ms wait: a busy loop"
    );
}

#[test]
fn epoll_forget_close_dup_does_not_spin() {
    let _serial = conformance::serial();
    let Some(p) = backend(evmux_backends::BackendKind::Epoll) else {
        return;
    };
    forget_close_dup_spins(p);
}

#[test]
fn superpoll_cold_forget_close_dup_does_not_spin() {
    let _serial = conformance::serial();
    let b = evmux_superpoll::SuperpollBackend::with_config(cold_eager()).unwrap();
    forget_close_dup_spins(Poller::new(b));
}

/// superpoll: demoting a registration to the epoll half is an
/// `EPOLL_CTL_ADD`; when it fails with `EBADF` the backend checks whether
/// the number is closed. Here it is open (the error is injected; `EBADF`
/// from `epoll_ctl` can also name the epoll descriptor): the demotion is
/// abandoned and the registration keeps reporting from the array.
#[test]
fn superpoll_demotion_ebadf_keeps_open_descriptor_reporting() {
    let _serial = conformance::serial();
    let b = evmux_superpoll::SuperpollBackend::with_config(cold_eager()).unwrap();
    let mut p = Poller::new(b);
    let (_r, w) = evmux_sys::fd::pipe().unwrap();
    use std::os::fd::AsRawFd;
    p.declare_interest(w.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    let mut events = Events::with_capacity(8);
    assert_eq!(
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap(),
        1
    );
    // The next wait demotes it: its EPOLL_CTL_ADD fails.
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollCtl, 1, libc::EBADF));
    let n = p.get_next_event(&mut events, Some(Duration::ZERO));
    fault::clear();
    let mut seen = events.as_slice().to_vec();
    if n.is_err() {
        seen.clear();
    }
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    seen.extend(events.iter().copied());
    assert!(
        seen.iter()
            .any(|e| e.token == Token(1) && (e.writable || e.errno.is_some())),
        "the writable pipe went silent without an error event: {seen:?}"
    );
    // The stream does not change: every wait reports it, without error.
    for _ in 0..4 {
        assert_eq!(
            p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap(),
            1
        );
        let e = events.as_slice()[0];
        assert!(
            e.token == Token(1) && e.writable && e.errno.is_none(),
            "{e:?}"
        );
    }
}

/// Every epoll instance of this process that watches descriptor number
/// `fd` (from `/proc/self/fdinfo`: an epoll descriptor lists one `tfd:`
/// line per watched descriptor).
fn epoll_sets_watching(fd: i32) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        n += text
            .lines()
            .filter(|l| {
                l.strip_prefix("tfd:")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|t| t.parse::<i32>().ok())
                    == Some(fd)
            })
            .count();
    }
    n
}

/// superpoll: a promotion (epoll half → array) whose `EPOLL_CTL_DEL` is
/// refused would leave the entry in the epoll set under a tag the record
/// still has; the promotion is put off instead, the registration keeps
/// reporting from the epoll half once per wait, and a later evaluation
/// moves it, leaving nothing in the epoll set.
#[test]
fn superpoll_refused_promotion_del_keeps_one_place() {
    let _serial = conformance::serial();
    let b = evmux_superpoll::SuperpollBackend::with_config(churn_eager()).unwrap();
    let mut p = Poller::new(b);
    use std::os::fd::AsRawFd;
    let (r, w) = evmux_sys::fd::pipe().unwrap();
    let fd = r.as_raw_fd();
    p.declare_interest(fd, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let mut events = Events::with_capacity(8);
    let mut idle = 0;
    while p.backend().is_hot(fd) != Some(false) {
        assert_eq!(
            p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap(),
            0
        );
        idle += 1;
        assert!(idle < 50, "an idle registration was never demoted");
    }
    assert_eq!(epoll_sets_watching(fd), 1, "demoted: in the epoll set");
    evmux_sys::fd::write(&w, b"x").unwrap();
    let once = |events: &Events| {
        assert_eq!(events.len(), 1, "{:?}", events.as_slice());
        let e = events.as_slice()[0];
        assert!(e.token == Token(1) && e.readable, "{e:?}");
    };
    // Reported from the epoll half; the report queues a promotion.
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    once(&events);
    let promotions = p.backend().stats().promotions;
    // The next evaluation promotes it: its EPOLL_CTL_DEL is refused.
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollCtl, 1, libc::EAGAIN));
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    let injected = fault::injected();
    fault::clear();
    assert_eq!(injected, 1, "the promotion's DEL was attempted");
    once(&events);
    assert_eq!(p.backend().is_hot(fd), Some(false), "promotion put off");
    assert_eq!(p.backend().stats().promotions, promotions);
    assert_eq!(epoll_sets_watching(fd), 1);
    let mut waits = 0;
    while p.backend().is_hot(fd) != Some(true) {
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
        once(&events);
        waits += 1;
        assert!(waits < 10, "the promotion was never made again");
    }
    assert_eq!(p.backend().stats().promotions, promotions + 1);
    assert_eq!(
        epoll_sets_watching(fd),
        0,
        "promoted: nothing left in the epoll set"
    );
    for _ in 0..3 {
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
        once(&events);
    }
}

/// uring: `forget` cancels the registration's poll with an `io_uring_enter`
/// of its own, so that closing the descriptor right after closes the file
/// (SEMANTICS.md, "Closing a descriptor without forgetting it"). When that
/// enter fails, nothing was consumed and the backend enters again: the
/// file is closed with the descriptor, and the writer of the pipe gets
/// `EPIPE`. `EAGAIN` is the kernel's answer to a passing shortage; an
/// `ENOMEM` (the property test injects it) used to leave the cancel to the
/// next wait, with the file open until then. (Only nine failures in a row
/// fall back to cancelling in the next batch; see the uring crate docs.)
#[test]
fn uring_forget_retries_a_failed_enter_and_closes_the_file() {
    let _serial = conformance::serial();
    for errno in [libc::EAGAIN, libc::ENOMEM, libc::EBADF] {
        let Some(mut p) = backend(evmux_backends::BackendKind::Uring) else {
            return;
        };
        let (r, w) = evmux_sys::fd::pipe().unwrap();
        use std::os::fd::AsRawFd;
        p.declare_interest(r.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        let mut events = Events::with_capacity(8);
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
        let _ = evmux_sys::signal::ignore_sigpipe();
        fault::install(FaultPlan::new(1).fail_nth(SyscallKind::IoUringEnter, 1, errno));
        p.forget(Token(1)).unwrap();
        fault::clear();
        drop(r);
        let err = evmux_sys::fd::write(&w, b"x");
        assert_eq!(
            err.map_err(|e| e.raw_os_error()),
            Err(Some(libc::EPIPE)),
            "errno {errno}: the read end's file is still open after forget and close"
        );
    }
}

/// superpoll: a descriptor forgotten and closed while `dup`ed elsewhere
/// must not leave an entry in the epoll half (`forget` deletes it at once),
/// and an entry the backend no longer knows of (a failed `EPOLL_CTL_DEL`)
/// must not take the place of a live report in the inner `epoll_wait`
/// (asked for more than the cold registrations): a ready level
/// registration of the epoll half is reported at every wait.
#[test]
fn superpoll_stale_epoll_entry_does_not_starve_cold_registrations() {
    let _serial = conformance::serial();
    let b = evmux_superpoll::SuperpollBackend::with_config(cold_eager()).unwrap();
    let mut p = Poller::new(b);
    use std::os::fd::AsRawFd;
    let (ra, wa) = evmux_sys::fd::pipe().unwrap();
    let _dup = evmux_sys::fd::dup(&ra).unwrap();
    let (rb, wb) = evmux_sys::fd::pipe().unwrap();
    p.declare_interest(ra.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    p.declare_interest(rb.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    let mut events = Events::with_capacity(8);
    for _ in 0..4 {
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(
        p.backend().is_hot(rb.as_raw_fd()),
        Some(false),
        "rb is cold"
    );
    evmux_sys::fd::write(&wa, b"x").unwrap();
    evmux_sys::fd::write(&wb, b"x").unwrap();
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    p.forget(Token(1)).unwrap();
    drop(ra);
    let mut missing = 0;
    for _ in 0..10 {
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
        if !events.iter().any(|e| e.token == Token(2)) {
            missing += 1;
        }
    }
    assert_eq!(
        missing, 0,
        "a ready level registration was missing from {missing} of 10 waits"
    );
}

/// superpoll: an `EPOLL_CTL_MOD` of a cold registration refused for another
/// reason than a closed descriptor (here `EAGAIN`) leaves the old watch in
/// the epoll set, as epoll does, and the driver takes the old watch as the
/// kernel's. Superpoll used to delete the entry and drop its record
/// instead; declaring the old watch again then sent no change, and the
/// registration stayed silent for good (found by `faults_superpoll_cold`).
#[test]
fn superpoll_cold_refused_mod_keeps_the_old_watch() {
    let _serial = conformance::serial();
    let b = evmux_superpoll::SuperpollBackend::with_config(cold_eager()).unwrap();
    let mut p = Poller::new(b);
    use std::os::fd::AsRawFd;
    let (r, w) = evmux_sys::fd::pipe().unwrap();
    let mut events = Events::with_capacity(8);
    p.declare_interest(r.as_raw_fd(), Token(4), Interest::BOTH, Mode::Level)
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap(),
            0
        );
    }
    assert_eq!(p.backend().is_hot(r.as_raw_fd()), Some(false), "cold");
    p.declare_interest(r.as_raw_fd(), Token(4), Interest::READABLE, Mode::Edge)
        .unwrap();
    evmux_sys::fd::write(&w, b"x").unwrap();
    fault::install(FaultPlan::new(1).fail_nth(SyscallKind::EpollCtl, 1, libc::EAGAIN));
    p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
    fault::clear();
    let refused: Vec<Event> = events.iter().copied().collect();
    assert!(
        refused
            .iter()
            .any(|e| e.token == Token(4) && e.errno == Some(libc::EAGAIN)),
        "the refused MOD is an error event: {refused:?}"
    );
    // The program declares it again, then goes back to the old watch.
    p.declare_interest(r.as_raw_fd(), Token(4), Interest::READABLE, Mode::Edge)
        .unwrap();
    p.declare_interest(r.as_raw_fd(), Token(4), Interest::BOTH, Mode::Level)
        .unwrap();
    for round in 0..3 {
        p.get_next_event(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(
            events.iter().any(|e| e.token == Token(4) && e.readable),
            "wait {round} after the refusal: the readable pipe is silent: {:?}",
            events.as_slice()
        );
    }
}
