//! Interest-set operation sequences: the model against real backends.
//!
//! The input is cut into 4-byte seeds, which the testkit's scenario
//! realizer (`evmux_testkit::strategy::realize`, the same one the property
//! test uses) turns into a valid step sequence: open pipes, socketpairs and
//! files, declare, re-declare and forget interest in every mode, read,
//! write, fill, drain, shut down, close, reuse descriptor numbers, and wait
//! with a zero timeout. The sequence runs on the reference model and on
//! epoll and poll; any difference in the event stream is a crash, reported
//! with the first divergent step.
#![no_main]

use evmux_testkit::conformance::{self, BackendSpec, MakeBackend};
use evmux_testkit::scenario::to_rust;
use evmux_testkit::strategy::{Seed, realize};
use libfuzzer_sys::fuzz_target;

/// Seeds per input, as in the property test (`seeds(64)`), with some room.
const MAX_SEEDS: usize = 128;

/// The backends each input runs on.
const BACKENDS: &[&str] = &["epoll", "poll"];

fn makers() -> &'static [(&'static str, MakeBackend)] {
    static MAKERS: std::sync::OnceLock<Vec<(&'static str, MakeBackend)>> =
        std::sync::OnceLock::new();
    MAKERS.get_or_init(|| {
        conformance::backends()
            .into_iter()
            .filter(|b: &BackendSpec| BACKENDS.contains(&b.name))
            .map(|b| {
                let make = b
                    .make
                    .unwrap_or_else(|why| panic!("backend {} unavailable: {why}", b.name));
                (b.name, make)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let seeds: Vec<Seed> = data
        .chunks_exact(4)
        .take(MAX_SEEDS)
        .map(|c| (c[0], c[1], c[2], c[3]))
        .collect();
    if seeds.is_empty() {
        return;
    }
    let steps = realize(&seeds);
    for &(name, make) in makers() {
        if let Err(f) = conformance::check(&steps, make) {
            panic!(
                "{name} diverged from the model: {f}\nscenario (paste into testkit/src/scenarios.rs):\n{}",
                to_rust(&steps)
            );
        }
    }
});
