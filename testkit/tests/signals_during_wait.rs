//! Signals during waits (issue #8, item 2).
//!
//! A second thread sends `SIGUSR2` to the waiting thread with
//! `pthread_kill`, at a high rate, a bounded number of times
//! (`EVMUX_SIGNALS`, default 20,000 per backend). The signal has a no-op
//! handler installed **without `SA_RESTART`**, so every blocking
//! `epoll_wait`, `poll`, `select` or `io_uring_enter` it lands in fails
//! with `EINTR`. Meanwhile the waiting thread, on every backend, round after
//! round until the sender is done:
//! - waits with timeouts of 1, 3 and 7 ms on a poller with nothing ready:
//!   `Ok(0)`, never early (`Instant` elapsed ≥ timeout), and not restarted
//!   from scratch at each signal (elapsed < timeout + 1 s);
//! - waits for a 2 ms timer with no timeout: the timer's event, never early;
//! - waits up to 200 ms for a pipe the sender writes to every 64 signals:
//!   the pipe's event, or nothing and then never early;
//! - runs the hand-written scenarios that block in waits (timers) or use
//!   other threads, and every scenario without signals or processes, and
//!   compares each trace with the model's.
//!
//! No call may fail. Signals are only ever sent to the one thread whose
//! handler is installed and which is alive: the sender is stopped and
//! joined (also when the test panics) before the waiting thread goes on.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use evmux_interest::{Events, Interest, Mode, Poller, Token};
use evmux_sys::counter::{self, SyscallKind};
use evmux_testkit::conformance::{self, MakeBackend};
use evmux_testkit::scenario::{self, Step, compare};
use evmux_testkit::scenarios;
use evmux_testkit::world::{NewKind, RealWorld};

const SIGNAL: libc::c_int = libc::SIGUSR2;

/// Installs the counting handler (no `SA_RESTART`), once per process.
fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        evmux_sys::signal::install_counting_handler(SIGNAL).expect("sigaction");
    });
}

/// The sending thread. Dropping it stops and joins it, so no signal is
/// sent after the waiting thread moved on (or unwound).
struct Sender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Sender {
    /// Starts sending `count` signals to the calling thread, one every
    /// `gap` (busy-waited), writing a byte to `pipe` every 64 signals.
    fn start(count: u64, gap: Duration, pipe: std::os::fd::OwnedFd) -> Sender {
        let target = evmux_sys::signal::ThreadTarget::current();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (s, n, d) = (stop.clone(), sent.clone(), done.clone());
        let handle = std::thread::spawn(move || {
            for i in 0..count {
                if s.load(Ordering::Acquire) {
                    break;
                }
                // `target` is the waiting thread, which joins this thread
                // (Sender::drop) before it can exit; the process has a
                // handler for SIGNAL.
                target.send(SIGNAL).expect("tgkill");
                n.fetch_add(1, Ordering::Relaxed);
                if i % 64 == 63 {
                    let _ = evmux_sys::fd::write(&pipe, b"s");
                }
                let t = Instant::now();
                while t.elapsed() < gap {
                    std::hint::spin_loop();
                }
            }
            d.store(true, Ordering::Release);
        });
        Sender {
            stop,
            sent,
            done,
            handle: Some(handle),
        }
    }

    fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Scenarios the waiting thread replays: none that watches or raises
/// signals (`SIGUSR2` among them) or spawns processes, and none that makes
/// TCP pairs: the real world's loopback `connect`/`accept` is not retried
/// on `EINTR` (test scaffolding, not the library).
fn replayable() -> Vec<scenario::Scenario> {
    scenarios::all()
        .into_iter()
        .filter(|sc| {
            !sc.steps.iter().any(|s| {
                matches!(
                    s,
                    Step::AddSignal(..)
                        | Step::RemoveSignal(_)
                        | Step::Raise(_)
                        | Step::Spawn(_)
                        | Step::AddProcess(..)
                        | Step::AddProcessRaw(..)
                        | Step::RemoveProcess(_)
                        | Step::Open(NewKind::Tcp)
                        | Step::Reuse(_, NewKind::Tcp)
                )
            })
        })
        .collect()
}

/// What one backend's run measured.
#[derive(Debug, Default)]
struct Figures {
    rounds: u64,
    timed_waits: u64,
    wait_calls: u64,
    wait_syscalls: u64,
    timers: u64,
    pipe_events: u64,
    scenarios: u64,
    worst_overshoot: Duration,
}

fn wait_syscalls(d: &counter::Counts) -> u64 {
    [
        SyscallKind::EpollWait,
        SyscallKind::Poll,
        SyscallKind::Select,
        SyscallKind::IoUringEnter,
    ]
    .iter()
    .map(|&k| d.get(k))
    .sum()
}

fn run_backend(name: &str, make: MakeBackend, count: u64) -> Result<Figures, String> {
    let mut fig = Figures::default();
    let scenarios = replayable();
    let models: Vec<_> = scenarios
        .iter()
        .map(|sc| conformance::run_model(&sc.steps))
        .collect();
    let (r, w) = evmux_sys::fd::pipe().map_err(|e| e.to_string())?;
    let sender = Sender::start(count, Duration::from_micros(40), w);
    let mut events = Events::with_capacity(64);
    let mut idle = Poller::new(make().map_err(|e| e.to_string())?);
    let mut piped = Poller::new(make().map_err(|e| e.to_string())?);
    piped
        .declare_interest(r.as_raw_fd(), Token(7), Interest::READABLE, Mode::Level)
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    while fig.rounds == 0 || !sender.done() {
        fig.rounds += 1;
        // Timeouts on a poller with nothing ready.
        for ms in [1u64, 3, 7].repeat(8) {
            let t = Duration::from_millis(ms);
            let before = counter::snapshot();
            let t0 = Instant::now();
            let n = idle
                .get_next_event(&mut events, Some(t))
                .map_err(|e| format!("a {ms} ms wait failed: {e}"))?;
            let took = t0.elapsed();
            fig.wait_syscalls += wait_syscalls(&(counter::snapshot() - before));
            fig.wait_calls += 1;
            fig.timed_waits += 1;
            if n != 0 {
                return Err(format!(
                    "a wait with nothing ready gave {:?}",
                    events.as_slice()
                ));
            }
            if took < t {
                return Err(format!("a {ms} ms wait ended early, after {took:?}"));
            }
            if took > t + Duration::from_secs(1) {
                return Err(format!(
                    "a {ms} ms wait took {took:?}: restarted with the full timeout?"
                ));
            }
            fig.worst_overshoot = fig.worst_overshoot.max(took - t);
        }
        // A timer with no timeout.
        let t0 = Instant::now();
        let start = idle.now();
        idle.add_timer_after(Token(3), Duration::from_millis(2))
            .map_err(|e| e.to_string())?;
        let before = counter::snapshot();
        let n = idle
            .get_next_event(&mut events, None)
            .map_err(|e| format!("the timer's wait failed: {e}"))?;
        fig.wait_syscalls += wait_syscalls(&(counter::snapshot() - before));
        fig.wait_calls += 1;
        let (took, clock) = (t0.elapsed(), idle.now() - start);
        if n != 1 || !events.as_slice()[0].timer || events.as_slice()[0].token != Token(3) {
            return Err(format!("the timer's wait gave {:?}", events.as_slice()));
        }
        if took < Duration::from_millis(2) || clock < Duration::from_millis(2) {
            return Err(format!(
                "a 2 ms timer fired after {took:?} ({clock:?} on the poller's clock)"
            ));
        }
        fig.timers += 1;
        // Readiness that arrives from the sender.
        let t = Duration::from_millis(200);
        let t0 = Instant::now();
        let n = piped
            .get_next_event(&mut events, Some(t))
            .map_err(|e| format!("the pipe's wait failed: {e}"))?;
        let took = t0.elapsed();
        match n {
            0 if took < t => {
                return Err(format!(
                    "a 200 ms wait ended early and empty, after {took:?}"
                ));
            }
            0 => {}
            _ => {
                let ev = events.as_slice()[0];
                if n != 1 || ev.token != Token(7) || !ev.readable {
                    return Err(format!("the pipe's wait gave {:?}", events.as_slice()));
                }
                fig.pipe_events += 1;
                while let Ok(k) = evmux_sys::fd::read(&r, &mut buf) {
                    if k == 0 {
                        break;
                    }
                }
            }
        }
        // The scenarios, against the model.
        for (sc, model) in scenarios.iter().zip(&models) {
            let _serial = conformance::serial();
            let mut poller = Poller::new(make().map_err(|e| e.to_string())?);
            let mut world = RealWorld::new();
            let real = scenario::run(&sc.steps, &mut world, &mut poller);
            compare(&sc.steps, model, &real)
                .map_err(|d| format!("scenario {} ({}): {d}", sc.name, sc.category))?;
            fig.scenarios += 1;
            if sender.done() && fig.rounds > 1 {
                break;
            }
        }
    }
    let sent = sender.sent.load(Ordering::Relaxed);
    drop(sender);
    eprintln!(
        "{name}: {sent} signals sent in {} rounds; {} timed waits (worst overshoot {:?}), \
         {} timers, {} pipe events, {} scenario runs; {} timeout and timer waits took {} \
         wait syscalls (the difference: waits resumed after EINTR)",
        fig.rounds,
        fig.timed_waits,
        fig.worst_overshoot,
        fig.timers,
        fig.pipe_events,
        fig.scenarios,
        fig.wait_calls,
        fig.wait_syscalls,
    );
    Ok(fig)
}

fn signal_count() -> u64 {
    std::env::var("EVMUX_SIGNALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn signals_during_waits_on_every_backend() {
    install_handler();
    let count = signal_count();
    let specs = conformance::backends_from_env().expect("EVMUX_BACKEND names a backend");
    let handled_before = evmux_sys::signal::deliveries(SIGNAL);
    let mut ran = 0;
    for spec in specs {
        let Ok(make) = spec.make else {
            eprintln!("{}: not available here, skipped", spec.name);
            continue;
        };
        let started = Instant::now();
        let fig =
            run_backend(spec.name, make, count).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        eprintln!("{}: {:.1?}", spec.name, started.elapsed());
        assert!(fig.scenarios > 0 && fig.timers > 0);
        ran += 1;
    }
    let handled = evmux_sys::signal::deliveries(SIGNAL) - handled_before;
    eprintln!("{handled} signal deliveries handled over {ran} backends");
    assert!(ran == 0 || handled > 0, "no signal was delivered");
}
