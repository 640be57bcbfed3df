//! Every hand-written scenario and the property test, on every backend
//! available here, against the model. `cargo xtask conformance` runs the
//! same with a matrix report; this keeps `cargo test` honest on its own.

use evmux_testkit::conformance::{self, BackendSpec};

fn available() -> Vec<(&'static str, conformance::MakeBackend)> {
    conformance::backends()
        .into_iter()
        .filter_map(|BackendSpec { name, make }| make.ok().map(|m| (name, m)))
        .collect()
}

#[test]
fn linux_backends_are_available() {
    if cfg!(target_os = "linux") {
        let names: Vec<_> = available().iter().map(|(n, _)| *n).collect();
        for want in ["epoll", "poll"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }
}

#[test]
fn hand_written_scenarios_conform_on_every_backend() {
    let mut failures = Vec::new();
    for (name, make) in available() {
        for sc in evmux_testkit::scenarios::all() {
            if let Err(f) = conformance::check(&sc.steps, make) {
                failures.push(format!("{name}: {} ({}): {f}", sc.name, sc.category));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn random_scenarios_conform_on_every_backend() {
    let cases = conformance::proptest_cases(256);
    for (name, make) in available() {
        let (run, failure) = conformance::property(make, cases);
        assert!(failure.is_none(), "{name}: {}", failure.unwrap());
        assert_eq!(run, cases);
    }
}
