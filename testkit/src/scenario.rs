//! Scenarios: a small language of steps, run against the model and against
//! real descriptors on every backend, producing comparable traces.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use evmux_interest::{Backend, Error, Event, Events, Interest, Mode, Poller, Token};

use crate::world::{DrainOutcome, Handle, IoOutcome, NewKind, World};

/// One step of a scenario. Handles name descriptors in creation order
/// (`Open(Pipe)` creates the read end, then the write end; `Open(Pair)`
/// both ends of a socketpair; `Reuse` creates new descriptors, the first at
/// the reused one's number).
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// Creates descriptors.
    Open(NewKind),
    /// Replaces handle's descriptor (closing it) by new ones, the first with
    /// the same number.
    Reuse(Handle, NewKind),
    /// `declare_interest(fd of handle, Token(token), interest, mode)`.
    Declare {
        /// The descriptor.
        h: Handle,
        /// The token.
        token: usize,
        /// The interest.
        interest: Interest,
        /// The mode.
        mode: Mode,
    },
    /// `declare_interest` with a raw number (for bad input: negative).
    DeclareRaw {
        /// The number.
        fd: i32,
        /// The token.
        token: usize,
    },
    /// `forget(Token(token))`.
    Forget(usize),
    /// `track_readiness(Token(token))`. Scenarios that use it keep the
    /// program's side of that contract: the tracked descriptor is only
    /// drained and filled (until `WouldBlock`), never read or written in
    /// part.
    Track(usize),
    /// One write of n bytes. `WouldBlock` re-arms the writer's edge interest.
    Write(Handle, usize),
    /// One read of up to n bytes. `WouldBlock` re-arms readable.
    Read(Handle, usize),
    /// Writes until `WouldBlock` (then re-arms writable).
    Fill(Handle),
    /// Reads until `WouldBlock` (then re-arms readable), EOF or an error.
    Drain(Handle),
    /// `shutdown(SHUT_WR)`.
    ShutdownWrite(Handle),
    /// `close`.
    Close(Handle),
    /// `get_next_event` with a zero timeout.
    Wait,
    /// `add_timer_after(Token(token), ms milliseconds)`.
    AddTimer(usize, u64),
    /// `add_timer(Token(token), ms milliseconds)`: an absolute deadline on
    /// the poller's clock, which starts near zero when the backend is made
    /// (so two timers can share a deadline exactly).
    AddTimerAt(usize, u64),
    /// `cancel_timer(Token(token))`.
    CancelTimer(usize),
    /// `Registry::declare_interest`, called from another thread (joined
    /// before the next step).
    ThreadDeclare {
        /// The descriptor.
        h: Handle,
        /// The token.
        token: usize,
        /// The interest.
        interest: Interest,
        /// The mode.
        mode: Mode,
    },
    /// `Registry::forget(Token(token))`, called from another thread.
    ThreadForget(usize),
    /// `add_user(Token(token))`; the runner keeps the trigger.
    AddUser(usize),
    /// `trigger()` of the user event `token` (kept by the runner).
    Trigger(usize),
    /// `remove_user(Token(token))`.
    RemoveUser(usize),
    /// `add_signal(Token(token), signal)`.
    AddSignal(usize, i32),
    /// `remove_signal(Token(token))`.
    RemoveSignal(usize),
    /// Sends the signal to this thread (only while a source watches it).
    Raise(i32),
    /// Starts a child that exits at once with this code; children are
    /// numbered from 0 in spawn order.
    Spawn(i32),
    /// `add_process(Token(token), pid of child)`.
    AddProcess(usize, usize),
    /// `add_process(Token(token), pid)` with a raw pid (bad input).
    AddProcessRaw(usize, i32),
    /// `remove_process(Token(token))`.
    RemoveProcess(usize),
    /// `get_next_event` with a timeout of `ms` milliseconds. The model's
    /// clock is virtual; on real backends timer scenarios space their
    /// deadlines widely (tens of milliseconds) so that scheduling noise
    /// cannot reorder them.
    WaitFor(u64),
}

fn interest_src(i: Interest) -> &'static str {
    match (i.is_readable(), i.is_writable()) {
        (true, true) => "BOTH",
        (true, false) => "R",
        _ => "W",
    }
}

impl fmt::Debug for Step {
    /// Prints the step as the Rust expression that builds it, so a shrunk
    /// property-test failure can be pasted into the hand-written list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Open(k) => write!(f, "Open({k:?})"),
            Step::Reuse(h, k) => write!(f, "Reuse({h}, {k:?})"),
            Step::Declare {
                h,
                token,
                interest,
                mode,
            } => write!(
                f,
                "decl({h}, {token}, {}, {mode:?})",
                interest_src(*interest)
            ),
            Step::DeclareRaw { fd, token } => {
                write!(f, "DeclareRaw {{ fd: {fd}, token: {token} }}")
            }
            Step::Forget(t) => write!(f, "Forget({t})"),
            Step::Track(t) => write!(f, "Track({t})"),
            Step::Write(h, n) => write!(f, "Write({h}, {n})"),
            Step::Read(h, n) => write!(f, "Read({h}, {n})"),
            Step::Fill(h) => write!(f, "Fill({h})"),
            Step::Drain(h) => write!(f, "Drain({h})"),
            Step::ShutdownWrite(h) => write!(f, "ShutdownWrite({h})"),
            Step::Close(h) => write!(f, "Close({h})"),
            Step::Wait => write!(f, "Wait"),
            Step::AddTimer(t, ms) => write!(f, "AddTimer({t}, {ms})"),
            Step::AddTimerAt(t, ms) => write!(f, "AddTimerAt({t}, {ms})"),
            Step::CancelTimer(t) => write!(f, "CancelTimer({t})"),
            Step::WaitFor(ms) => write!(f, "WaitFor({ms})"),
            Step::ThreadDeclare {
                h,
                token,
                interest,
                mode,
            } => write!(
                f,
                "ThreadDeclare {{ h: {h}, token: {token}, interest: {}, mode: {mode:?} }}",
                interest_src(*interest)
            ),
            Step::ThreadForget(t) => write!(f, "ThreadForget({t})"),
            Step::AddUser(t) => write!(f, "AddUser({t})"),
            Step::Trigger(t) => write!(f, "Trigger({t})"),
            Step::RemoveUser(t) => write!(f, "RemoveUser({t})"),
            Step::AddSignal(t, sig) => write!(f, "AddSignal({t}, {sig})"),
            Step::RemoveSignal(t) => write!(f, "RemoveSignal({t})"),
            Step::Raise(sig) => write!(f, "Raise({sig})"),
            Step::Spawn(code) => write!(f, "Spawn({code})"),
            Step::AddProcess(t, c) => write!(f, "AddProcess({t}, {c})"),
            Step::AddProcessRaw(t, pid) => write!(f, "AddProcessRaw({t}, {pid})"),
            Step::RemoveProcess(t) => write!(f, "RemoveProcess({t})"),
        }
    }
}

/// Shorthand for [`Step::Declare`], as printed by `Step`'s `Debug`.
pub fn decl(h: Handle, token: usize, interest: Interest, mode: Mode) -> Step {
    Step::Declare {
        h,
        token,
        interest,
        mode,
    }
}

/// Readable interest (for scenario text).
pub const R: Interest = Interest::READABLE;
/// Writable interest (for scenario text).
pub const W: Interest = Interest::WRITABLE;
/// Both directions (for scenario text).
pub const BOTH: Interest = Interest::BOTH;

/// A hand-written scenario: a name, a category and its steps.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// A unique name.
    pub name: &'static str,
    /// The category it counts under in the conformance matrix.
    pub category: &'static str,
    /// The steps.
    pub steps: Vec<Step>,
}

/// What one step produced. Two runs conform when their outcomes are equal
/// step by step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handles created.
    Opened(Vec<Handle>),
    /// A declare or forget: `Ok`, or the error's variant name.
    Call(Result<(), String>),
    /// A read or write.
    Io(IoOutcome),
    /// A drain.
    Drain(DrainOutcome),
    /// A shutdown or close.
    Unit(Result<(), i32>),
    /// The events of a wait, sorted by token (order within one wait is
    /// unspecified).
    Events(Vec<Event>),
    /// The wait itself failed.
    WaitFailed(String),
}

/// An `io::Error` as its kind's name (`AlreadyExists`, `InvalidInput`, …).
fn io_error_name(e: &std::io::Error) -> String {
    format!("{:?}", e.kind())
}

fn error_name(e: &Error) -> String {
    let s = format!("{e:?}");
    s.split([' ', '{', '(']).next().unwrap_or("").to_string()
}

/// Runs `steps` on `world` with `poller`, returning one outcome per step.
///
/// The runner keeps the program's side of the contract: it calls
/// [`Poller::would_block`] for a handle's live token whenever an operation
/// on it ends in `WouldBlock`.
pub fn run<B: Backend>(
    steps: &[Step],
    world: &mut dyn World,
    poller: &mut Poller<B>,
) -> Vec<Outcome> {
    let mut tokens: HashMap<Handle, usize> = HashMap::new();
    let mut handle_of: HashMap<usize, Handle> = HashMap::new();
    let mut events = Events::with_capacity(256);
    let mut users: HashMap<usize, evmux_interest::UserTrigger> = HashMap::new();
    let mut registry: Option<evmux_interest::Registry> = None;
    let mut trace = Vec::with_capacity(steps.len());
    let would_block =
        |poller: &mut Poller<B>, tokens: &HashMap<Handle, usize>, h: Handle, i: Interest| {
            if let Some(&t) = tokens.get(&h) {
                poller
                    .would_block(Token(t), i)
                    .expect("the runner tracks live tokens");
            }
        };
    for step in steps {
        let outcome = match *step {
            Step::Open(k) => Outcome::Opened(world.open(k)),
            Step::Reuse(h, k) => Outcome::Opened(world.reuse(h, k)),
            Step::Declare {
                h,
                token,
                interest,
                mode,
            } => {
                let r = poller.declare_interest(world.raw_fd(h), Token(token), interest, mode);
                if r.is_ok() {
                    if let Some(old) = handle_of.insert(token, h)
                        && old != h
                    {
                        tokens.remove(&old);
                    }
                    tokens.insert(h, token);
                }
                Outcome::Call(r.map_err(|e| error_name(&e)))
            }
            Step::DeclareRaw { fd, token } => {
                let r = poller.declare_interest(fd, Token(token), Interest::READABLE, Mode::Level);
                Outcome::Call(r.map_err(|e| error_name(&e)))
            }
            Step::Track(token) => Outcome::Call(
                poller
                    .track_readiness(Token(token))
                    .map_err(|e| error_name(&e)),
            ),
            Step::Forget(token) => {
                let r = poller.forget(Token(token));
                if r.is_ok()
                    && let Some(h) = handle_of.remove(&token)
                    && tokens.get(&h) == Some(&token)
                {
                    tokens.remove(&h);
                }
                Outcome::Call(r.map_err(|e| error_name(&e)))
            }
            Step::Write(h, n) => {
                let r = world.write(h, n);
                if r == IoOutcome::WouldBlock {
                    would_block(poller, &tokens, h, Interest::WRITABLE);
                }
                Outcome::Io(r)
            }
            Step::Read(h, n) => {
                let r = world.read(h, n);
                if r == IoOutcome::WouldBlock {
                    would_block(poller, &tokens, h, Interest::READABLE);
                }
                Outcome::Io(r)
            }
            Step::Fill(h) => {
                let r = world.fill(h);
                if r == IoOutcome::Done(0) {
                    would_block(poller, &tokens, h, Interest::WRITABLE);
                }
                Outcome::Io(r)
            }
            Step::Drain(h) => {
                let r = world.drain(h);
                if r.end == IoOutcome::WouldBlock {
                    would_block(poller, &tokens, h, Interest::READABLE);
                }
                Outcome::Drain(r)
            }
            Step::ShutdownWrite(h) => Outcome::Unit(world.shutdown_write(h)),
            Step::Close(h) => Outcome::Unit(world.close(h)),
            Step::AddTimer(token, ms) => Outcome::Call(
                poller
                    .add_timer_after(Token(token), Duration::from_millis(ms))
                    .map_err(|e| error_name(&e)),
            ),
            Step::ThreadDeclare {
                h,
                token,
                interest,
                mode,
            } => {
                let fd = world.raw_fd(h);
                let reg = registry.get_or_insert_with(|| poller.registry().expect("registry"));
                let reg = reg.clone();
                let r = std::thread::spawn(move || {
                    reg.declare_interest(fd, Token(token), interest, mode)
                })
                .join()
                .expect("the registry thread");
                Outcome::Call(r.map_err(|e| io_error_name(&e)))
            }
            Step::ThreadForget(token) => {
                let reg = registry.get_or_insert_with(|| poller.registry().expect("registry"));
                let reg = reg.clone();
                let r = std::thread::spawn(move || reg.forget(Token(token)))
                    .join()
                    .expect("the registry thread");
                Outcome::Call(r.map_err(|e| io_error_name(&e)))
            }
            Step::AddUser(token) => Outcome::Call(match poller.add_user(Token(token)) {
                Ok(u) => {
                    users.insert(token, u);
                    Ok(())
                }
                Err(e) => Err(io_error_name(&e)),
            }),
            Step::Trigger(token) => Outcome::Call(match users.get(&token) {
                Some(u) => u.trigger().map_err(|e| io_error_name(&e)),
                None => Err("NoTrigger".to_string()),
            }),
            Step::RemoveUser(token) => {
                Outcome::Call(poller.remove_user(Token(token)).map_err(|e| error_name(&e)))
            }
            Step::AddSignal(token, sig) => Outcome::Call(
                poller
                    .add_signal(Token(token), sig)
                    .map_err(|e| io_error_name(&e)),
            ),
            Step::RemoveSignal(token) => Outcome::Call(
                poller
                    .remove_signal(Token(token))
                    .map_err(|e| error_name(&e)),
            ),
            Step::Raise(sig) => {
                world.raise(sig);
                Outcome::Unit(Ok(()))
            }
            Step::Spawn(code) => Outcome::Opened(vec![world.spawn(code)]),
            Step::AddProcess(token, child) => Outcome::Call(
                poller
                    .add_process(Token(token), world.pid(child))
                    .map_err(|e| io_error_name(&e)),
            ),
            Step::AddProcessRaw(token, pid) => Outcome::Call(
                poller
                    .add_process(Token(token), pid)
                    .map_err(|e| io_error_name(&e)),
            ),
            Step::RemoveProcess(token) => Outcome::Call(
                poller
                    .remove_process(Token(token))
                    .map_err(|e| error_name(&e)),
            ),
            Step::AddTimerAt(token, ms) => Outcome::Call(
                poller
                    .add_timer(Token(token), Duration::from_millis(ms))
                    .map_err(|e| error_name(&e)),
            ),
            Step::CancelTimer(token) => Outcome::Call(
                poller
                    .cancel_timer(Token(token))
                    .map_err(|e| error_name(&e)),
            ),
            Step::WaitFor(ms) => {
                match poller.get_next_event(&mut events, Some(Duration::from_millis(ms))) {
                    Ok(_) => {
                        let mut v = events.as_slice().to_vec();
                        v.sort();
                        Outcome::Events(v)
                    }
                    Err(e) => Outcome::WaitFailed(e.to_string()),
                }
            }
            Step::Wait => match poller.get_next_event(&mut events, Some(Duration::ZERO)) {
                Ok(_) => {
                    let mut v = events.as_slice().to_vec();
                    v.sort();
                    Outcome::Events(v)
                }
                Err(e) => Outcome::WaitFailed(e.to_string()),
            },
        };
        trace.push(outcome);
    }
    trace
}

/// Where two traces first differ.
#[derive(Clone, Debug)]
pub struct Divergence {
    /// The step index.
    pub step: usize,
    /// The step.
    pub what: Step,
    /// The model's outcome.
    pub model: Outcome,
    /// The backend's outcome.
    pub real: Outcome,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} ({:?}): model gave {:?}, backend gave {:?}",
            self.step, self.what, self.model, self.real
        )
    }
}

/// Compares two traces of the same steps.
pub fn compare(steps: &[Step], model: &[Outcome], real: &[Outcome]) -> Result<(), Divergence> {
    for (i, (m, r)) in model.iter().zip(real).enumerate() {
        if m != r {
            return Err(Divergence {
                step: i,
                what: steps[i].clone(),
                model: m.clone(),
                real: r.clone(),
            });
        }
    }
    Ok(())
}

/// Formats steps as a pasteable Rust `vec![…]`.
pub fn to_rust(steps: &[Step]) -> String {
    let body: Vec<String> = steps.iter().map(|s| format!("    {s:?},")).collect();
    format!("vec![\n{}\n]", body.join("\n"))
}
