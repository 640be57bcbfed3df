//! Every hand-written scenario and the property test, on every backend
//! available here, against the model. `cargo xtask conformance` runs the
//! same with a matrix report; this keeps `cargo test` honest on its own.

use evmux_testkit::conformance::{self, BackendSpec};

/// The available backends, or only the one `EVMUX_BACKEND` names.
fn available() -> Vec<(&'static str, conformance::MakeBackend)> {
    conformance::backends_from_env()
        .expect("EVMUX_BACKEND names a backend")
        .into_iter()
        .filter_map(|BackendSpec { name, make }| make.ok().map(|m| (name, m)))
        .collect()
}

#[test]
fn every_backend_is_listed_and_the_linux_ones_are_available() {
    let all = conformance::backends();
    let names: Vec<_> = all.iter().map(|b| b.name).collect();
    assert_eq!(
        names,
        ["epoll", "poll", "select", "uring", "superpoll", "kqueue"]
    );
    if cfg!(target_os = "linux") {
        for b in &all {
            match b.name {
                "kqueue" => assert!(b.make.is_err(), "kqueue cannot be available on Linux"),
                name => assert!(b.make.is_ok(), "{name} should be available on Linux"),
            }
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
