//! The conformance runner: every scenario and the property test, on one
//! backend, against the model.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Mutex, MutexGuard};

use evmux_backends::{BackendKind, UnknownBackend, new_backend};
use evmux_interest::{Backend, Poller};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use crate::model::{ModelBackend, SharedSim};
use crate::scenario::{Divergence, Outcome, Step, compare, run, to_rust};
use crate::strategy::{realize, seeds};
use crate::world::RealWorld;

/// A way to make a fresh backend, boxed so that backends of different
/// types sit in one list.
pub type MakeBackend = fn() -> io::Result<Box<dyn Backend>>;

/// A backend the conformance suite knows.
#[derive(Clone, Copy)]
pub struct BackendSpec {
    /// Its name (`epoll`, `poll`, …).
    pub name: &'static str,
    /// How to make one, or why it is not available on this OS.
    pub make: Result<MakeBackend, &'static str>,
}

impl fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendSpec")
            .field("name", &self.name)
            .field("available", &self.make.is_ok())
            .finish()
    }
}

macro_rules! makers {
    ($($fn_name:ident => $kind:ident),* $(,)?) => {
        $(
            fn $fn_name() -> io::Result<Box<dyn Backend>> {
                let b: Box<dyn Backend> = new_backend(BackendKind::$kind)?;
                Ok(b)
            }
        )*
        fn maker(kind: BackendKind) -> MakeBackend {
            match kind {
                $(BackendKind::$kind => $fn_name,)*
                BackendKind::Auto => unreachable!("Auto is not a concrete backend"),
            }
        }
    };
}

makers! {
    make_epoll => Epoll,
    make_poll => Poll,
    make_select => Select,
    make_uring => Uring,
    make_superpoll => Superpoll,
    make_kqueue => Kqueue,
}

/// Every backend, available or not on this OS, in a fixed order: epoll,
/// poll, select, uring, superpoll, kqueue.
pub fn backends() -> Vec<BackendSpec> {
    BackendKind::CONCRETE
        .into_iter()
        .map(|kind| BackendSpec {
            name: kind.name(),
            make: match kind.unavailable_reason() {
                None => Ok(maker(kind)),
                Some(why) => Err(why),
            },
        })
        .collect()
}

/// The backends to run: all of them, or only the one `EVMUX_BACKEND`
/// names (so that the test suite run under `EVMUX_BACKEND=poll` exercises
/// poll).
///
/// # Errors
/// For an `EVMUX_BACKEND` that names no backend (the message lists the
/// valid names).
pub fn backends_from_env() -> Result<Vec<BackendSpec>, UnknownBackend> {
    let all = backends();
    Ok(match BackendKind::from_env()? {
        None | Some(BackendKind::Auto) => all,
        Some(kind) => all.into_iter().filter(|b| b.name == kind.name()).collect(),
    })
}

/// Serialises scenario runs within a process. Scenarios on real
/// descriptors rely on the kernel handing out the lowest free descriptor
/// number, which another thread opening files at the same time would
/// disturb.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `steps` on the model.
pub fn run_model(steps: &[Step]) -> Vec<Outcome> {
    let sim = SharedSim::new();
    let mut poller = Poller::new(ModelBackend::new(sim.clone()));
    let mut world = sim;
    run(steps, &mut world, &mut poller)
}

/// Runs `steps` on real descriptors with a fresh backend from `make`.
///
/// # Errors
/// If the backend or a descriptor cannot be created.
pub fn run_real(steps: &[Step], make: MakeBackend) -> io::Result<Vec<Outcome>> {
    let mut poller = Poller::new(make()?);
    let mut world = RealWorld::new();
    Ok(run(steps, &mut world, &mut poller))
}

/// Why a scenario failed on a backend.
#[derive(Debug)]
pub enum Failure {
    /// The backend's trace differs from the model's.
    Diverged(Divergence),
    /// The backend could not be set up.
    Io(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Diverged(d) => d.fmt(f),
            Failure::Io(e) => write!(f, "setting up the backend failed: {e}"),
        }
    }
}

/// Runs `steps` on the model and on a backend from `make`, and compares.
///
/// # Errors
/// The first divergence, or a set-up failure.
pub fn check(steps: &[Step], make: MakeBackend) -> Result<(), Failure> {
    let _serial = serial();
    let model = run_model(steps);
    let real = run_real(steps, make).map_err(Failure::Io)?;
    compare(steps, &model, &real).map_err(Failure::Diverged)
}

/// Passed/failed counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
}

/// The conformance result of one backend.
#[derive(Clone, Debug, Default)]
pub struct BackendReport {
    /// The backend's name.
    pub name: &'static str,
    /// Whether it exists on this OS.
    pub available: bool,
    /// Why not, when it does not.
    pub unavailable_reason: Option<&'static str>,
    /// Hand-written scenarios passed.
    pub scenarios_passed: usize,
    /// Hand-written scenarios failed.
    pub scenarios_failed: usize,
    /// Property-test cases run.
    pub proptest_cases: u32,
    /// Property-test failures (the runner stops at the first, shrunk).
    pub proptest_failed: u32,
    /// Per category, hand-written scenarios and (as `proptest`) the
    /// property test.
    pub categories: BTreeMap<&'static str, Tally>,
    /// Human-readable failure reports.
    pub failures: Vec<String>,
}

/// The number of property-test cases: `EVMUX_PROPTEST_CASES`, else
/// `default`.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("EVMUX_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs every hand-written scenario and `cases` property-test cases on
/// `spec`.
pub fn conformance(spec: &BackendSpec, cases: u32) -> BackendReport {
    let mut report = BackendReport {
        name: spec.name,
        ..BackendReport::default()
    };
    let make = match spec.make {
        Ok(make) => make,
        Err(why) => {
            report.unavailable_reason = Some(why);
            return report;
        }
    };
    report.available = true;
    for sc in crate::scenarios::all() {
        let tally = report.categories.entry(sc.category).or_default();
        match check(&sc.steps, make) {
            Ok(()) => {
                tally.passed += 1;
                report.scenarios_passed += 1;
            }
            Err(f) => {
                tally.failed += 1;
                report.scenarios_failed += 1;
                report.failures.push(format!(
                    "{}: scenario {} ({}): {f}",
                    spec.name, sc.name, sc.category
                ));
            }
        }
    }
    if cases > 0 {
        let (run, failure) = property(make, cases);
        report.proptest_cases = run;
        let tally = report.categories.entry("proptest").or_default();
        match failure {
            None => tally.passed += 1,
            Some(msg) => {
                tally.failed += 1;
                report.proptest_failed = 1;
                report
                    .failures
                    .push(format!("{}: property test: {msg}", spec.name));
            }
        }
    }
    report
}

/// Runs the property test; returns the cases run and the shrunk failure.
pub fn property(make: MakeBackend, cases: u32) -> (u32, Option<String>) {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let count = std::cell::Cell::new(0u32);
    let result = runner.run(&seeds(64), |s| {
        count.set(count.get() + 1);
        let steps = realize(&s);
        check(&steps, make).map_err(|f| TestCaseError::fail(f.to_string()))
    });
    match result {
        Ok(()) => (cases, None),
        Err(TestError::Fail(why, minimal)) => {
            let steps = realize(&minimal);
            (
                count.get().min(cases),
                Some(format!(
                    "{why}\nminimal scenario (paste into testkit/src/scenarios.rs):\n{}",
                    to_rust(&steps)
                )),
            )
        }
        Err(TestError::Abort(why)) => (count.get().min(cases), Some(format!("aborted: {why}"))),
    }
}
