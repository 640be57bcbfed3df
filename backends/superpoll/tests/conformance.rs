//! The testkit's conformance suite (every hand-written scenario and the
//! random ones, against the reference model) on superpoll, under policies
//! that keep descriptors hot, move them to epoll at once, and move them
//! back and forth constantly.

mod common;

use std::io;

use evmux_interest::Backend;
use evmux_superpoll::{SuperpollBackend, SuperpollConfig};
use evmux_testkit::conformance::{self, MakeBackend};

fn make_default() -> io::Result<Box<dyn Backend>> {
    Ok(Box::new(SuperpollBackend::new()?))
}

fn make_cold_eager() -> io::Result<Box<dyn Backend>> {
    Ok(Box::new(SuperpollBackend::with_config(
        common::cold_eager(),
    )?))
}

fn make_churn() -> io::Result<Box<dyn Backend>> {
    Ok(Box::new(SuperpollBackend::with_config(common::churn())?))
}

fn make_busy_stay_hot() -> io::Result<Box<dyn Backend>> {
    Ok(Box::new(SuperpollBackend::with_config(
        common::busy_stay_hot(),
    )?))
}

fn make_small_batches() -> io::Result<Box<dyn Backend>> {
    Ok(Box::new(SuperpollBackend::with_config(SuperpollConfig {
        interval: 2,
        max_moves: 1,
        ..common::churn()
    })?))
}

const MAKERS: [(&str, MakeBackend); 5] = [
    ("default", make_default),
    ("cold_eager", make_cold_eager),
    ("churn", make_churn),
    ("busy_stay_hot", make_busy_stay_hot),
    ("small_batches", make_small_batches),
];

#[test]
fn hand_written_scenarios_conform_under_every_policy() {
    let mut failures = Vec::new();
    for (name, make) in MAKERS {
        for sc in evmux_testkit::scenarios::all() {
            if let Err(f) = conformance::check(&sc.steps, make) {
                failures.push(format!("{name}: {} ({}): {f}", sc.name, sc.category));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn random_scenarios_conform_under_every_policy() {
    let cases = conformance::proptest_cases(128);
    for (name, make) in MAKERS {
        let (run, failure) = conformance::property(make, cases);
        assert!(failure.is_none(), "{name}: {}", failure.unwrap());
        assert_eq!(run, cases);
    }
}
