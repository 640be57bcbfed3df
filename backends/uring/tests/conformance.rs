//! The testkit's scenarios, run on this backend and on the reference model
//! (which implements SEMANTICS.md), step by step: the hand-written ones, and
//! random ones, unfiltered.
//!
//! Random scenarios close and replace declared descriptors too: `forget`
//! cancels the registration's polls at once, so a descriptor closed after
//! `forget` closes its file as with epoll and poll(2), and its peer sees end
//! of file / `EPIPE` in step with the model (`tests/file_lifetime.rs`). A
//! descriptor closed *without* `forget` would stay open while registered,
//! but the testkit's generator performs no operation on any descriptor
//! while such a registration exists (SEMANTICS.md leaves that unspecified).
#![cfg(target_os = "linux")]

use std::io;

use evmux_interest::Backend;
use evmux_sys::counter::SyscallKind;
use evmux_sys::fault::{self, FaultPlan};
use evmux_testkit::conformance;
use evmux_testkit::scenario::Step;
use evmux_testkit::strategy::{realize, seeds};
use evmux_uring::UringBackend;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn make() -> io::Result<Box<dyn Backend>> {
    let b = UringBackend::new()?;
    assert_eq!(
        b.setup_level(),
        2,
        "this kernel has SUBMIT_ALL and COOP_TASKRUN"
    );
    Ok(Box::new(b))
}

/// A backend set up as on Linux < 5.18: the first two `io_uring_setup`
/// attempts (with `SUBMIT_ALL|COOP_TASKRUN`, then `SUBMIT_ALL`) are refused
/// with `EINVAL`, so the ring has neither flag and cancels one poll per SQE
/// (no `IORING_ASYNC_CANCEL_ALL`).
fn make_legacy() -> io::Result<Box<dyn Backend>> {
    fault::install(
        FaultPlan::new(1)
            .fail_nth(SyscallKind::IoUringSetup, 1, EINVAL)
            .fail_nth(SyscallKind::IoUringSetup, 2, EINVAL),
    );
    let b = UringBackend::new();
    fault::clear();
    let b = b?;
    assert_eq!(b.setup_level(), 0);
    Ok(Box::new(b))
}

const EINVAL: i32 = 22;

fn hand_written(make: conformance::MakeBackend) {
    let mut failures = Vec::new();
    let all = evmux_testkit::scenarios::all();
    assert!(!all.is_empty());
    for sc in all {
        if let Err(f) = conformance::check(&sc.steps, make) {
            failures.push(format!("{} ({}): {f}", sc.name, sc.category));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hand_written_scenarios_conform() {
    hand_written(make);
}

#[test]
fn hand_written_scenarios_conform_without_the_5_19_set_up_flags() {
    hand_written(make_legacy);
}

fn random(make: conformance::MakeBackend, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let checked = std::cell::Cell::new(0u32);
    let closing = std::cell::Cell::new(0u32);
    let result = runner.run(&seeds(64), |s| {
        let steps = realize(&s);
        checked.set(checked.get() + 1);
        if closes_a_declared_descriptor(&steps) {
            closing.set(closing.get() + 1);
        }
        conformance::check(&steps, make).map_err(|f| {
            TestCaseError::fail(format!("{f}\n{}", evmux_testkit::scenario::to_rust(&steps)))
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(checked.get(), cases);
    // The case the old filter left out is exercised.
    assert!(
        cases < 64 || closing.get() > 0,
        "no scenario closed a declared descriptor"
    );
}

/// Whether a step closes (or replaces) a descriptor that was declared
/// before it: the scenarios this test used to leave out.
fn closes_a_declared_descriptor(steps: &[Step]) -> bool {
    let mut declared = Vec::new();
    for s in steps {
        match s {
            Step::Declare { h, .. } => declared.push(*h),
            Step::Close(h) | Step::Reuse(h, _) if declared.contains(h) => return true,
            _ => {}
        }
    }
    false
}

#[test]
fn random_scenarios_conform() {
    random(make, conformance::proptest_cases(256).max(256));
}

#[test]
fn random_scenarios_conform_without_the_5_19_set_up_flags() {
    random(make_legacy, conformance::proptest_cases(256).max(256));
}
