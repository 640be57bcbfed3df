//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask conformance [--backend NAME] [--cases N] [--json]`: every
//!   hand-written scenario and the property test, on every backend, against
//!   the reference model. Prints a category × backend matrix and a closing
//!   `N passed, M failed` line; exits non-zero if anything failed.
//! - `cargo xtask bench timers [--quick] [--json]`: the timer wheel against
//!   a `BinaryHeap` and a `BTreeMap` (see `bench_timers`). Prints a table
//!   per workload, flatness per structure and the wheel-vs-heap ratio at 1M
//!   pending (or JSON with `--json`); progress goes to stderr.
//! - `cargo xtask bench chain|idle|churn|all [--quick] [--json] [--only
//!   NAMES]`: the seeds' experiments, evmux against raw epoll/poll loops,
//!   mio and polling in the same run (see `bench_suite` and
//!   `BENCHMARKS.md`); CSV and SVG in `target/evmux-bench/`.
//! - `cargo xtask loom`: the loom models of `evmux-interest`.
//! - `cargo xtask fuzz [--seconds N] [--target NAME]`: the cargo-fuzz
//!   targets in `fuzz/` (see `fuzz`); `cargo xtask sanitize`: the test
//!   suite under AddressSanitizer (see `sanitize`).
//! - `cargo xtask loadtest [--backend NAME] [--quick] [--json] [--rounds
//!   N] [--no-pin]`: the example HTTP server under httperf and wrk on every Linux
//!   backend, against a mio server with the same logic (see `loadtest`).
//! - `cargo xtask soak [--backend NAME] [--minutes N] [--json]`: random
//!   churn on ~9,000 socket pairs per backend (see `soak`).
// `deny`, not `forbid`: polling's `Poller::add` is `unsafe` (the source
// must be deleted before it is closed), and the benchmarks allow exactly
// that call, twice, with a SAFETY comment each.
#![deny(unsafe_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use evmux_testkit::conformance::{self, BackendReport};

mod bench_chain;
mod bench_churn;
mod bench_idle;
mod bench_instr;
mod bench_mux;
mod bench_plot;
mod bench_suite;
mod bench_targets;
mod bench_timers;
mod fuzz;
mod json;
mod loadtest;
mod mio_http;
mod sanitize;
mod soak;

use bench_timers::{TimerBenchOpts, TimerResult};
use json::Json;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  conformance [--backend NAME] [--cases N] [--json]
      Run every scenario and N property-test cases (default 256, or
      EVMUX_PROPTEST_CASES) on every backend, or only NAME, against the model.
  bench timers [--quick] [--json]
      Benchmark the timer wheel against a BinaryHeap (lazy cancel) and a
      BTreeMap: insert+cancel and insert+expire at 1k, 100k, 1M and 10M
      pending (--quick: 1k, 100k and 1M, fewer ops and rounds; seconds
      instead of minutes). Run it in release mode (`cargo xtask` does).
  bench chain|idle|churn|all [--quick] [--json] [--only NAME,NAME] [--blocks N]
        [--rounds N] [--ns N,N] [--atrs A,A]
      The seeds' experiments: raw-epoll and raw-poll loops (the floor),
      every evmux backend, mio and polling, interleaved in one run.
      chain: libevent's bench.c over N in {1000, 9000} pairs and active/total
      ratios 0.01..1.0; idle: 100 active pairs beside 0..9000 idle ones;
      churn: seed 001's read/write state machine on 1000 connections.
      Writes target/evmux-bench/<name>.csv and .svg; --json prints
      {\"chain\":[…],\"churn\":[…],\"idle\":[…]}. --quick: N = 1000, a few
      ratios, fewer rounds (under 2 minutes for `all`). --blocks N: N
      interleaved turns of every subject per point instead of the default
      (chain: 40 at N = 1000, 12 at 9000; idle 4, churn 4; --quick 3);
      --rounds N: chain's timed rounds per turn (default 3; --quick 5);
      --ns 1000,9000 and --atrs 0.1,0.2: chain at only these points.
      Release only.
  bench targets [FILE ...] [--json]
      Issue #5's chain targets judged over several runs: for each point the
      median, over the runs, of each run's own ratio (superpoll: to that
      run's better raw loop). Reads every run `bench chain` kept in
      target/evmux-bench/runs/, or the chain.csv files named.
  bench instr [--quick] [--json]
      User-space instructions per chain round under valgrind's callgrind
      (raw loops, evmux backends, mio, polling; N = 1000): the overhead
      comparison that wall-clock noise cannot resolve.
  loom
      Run the loom models of the cross-thread handles (waker, user
      triggers, registry) with RUSTFLAGS=\"--cfg loom\", in release, in
      target/loom. Prints `N passed, M failed`.
  loadtest [--backend NAME] [--quick] [--json] [--rounds N] [--no-pin]
      The example HTTP server (built in release) under httperf (fixed-rate
      sweep) and wrk (100 and 1000 connections; 100 beside 5000 idle ones)
      on every Linux backend, or only NAME, and a mio server with the same
      logic, interleaved; prints reply rates, errors, p50/p99, the
      evmux-epoll/mio ratio and the idle change. Servers are pinned to
      one CPU, httperf and wrk to the others (taskset; --no-pin: not).
      Needs httperf and wrk.
      --json prints {\"loadtest\":[…],…}. --quick: under 2 minutes.
  soak [--backend NAME] [--minutes N] [--json]
      Every backend, or only NAME, N minutes each (default 1): ~9,000
      socket pairs (select: what fits below FD_SETSIZE) under random
      declare/forget/close/reopen/write/read/timer churn. Prints events,
      errors, open descriptors and VmRSS at start and end; --json prints
      {\"soak\":[{\"backend\":…,\"minutes\":N,\"events\":N,\"errors\":0,…},…]}.
      Fails on any error or a descriptor count that changed.
  fuzz [--seconds N] [--target NAME]
      Build the cargo-fuzz targets in fuzz/ (interest_ops, timer_wheel,
      http_parser) and run each, or only NAME, for N seconds (default 60)
      with `cargo +nightly fuzz run`; prints runs, coverage and corpus per
      target and `N passed, M failed`. Needs nightly and cargo-fuzz (says
      how to install them when missing). See RELIABILITY.md.
  sanitize [--no-build-std]
      The workspace's lib and integration tests under AddressSanitizer
      (nightly, -Zsanitizer=address, -Zbuild-std when rust-src is there),
      in target/asan. Prints `N passed, M failed`. See RELIABILITY.md.

EVMUX_BACKEND=NAME restricts `conformance` to NAME when --backend is not
given.
";

/// Benchmarks `cargo xtask bench` knows.
const BENCHES: &[&str] = &[
    "timers", "chain", "idle", "churn", "all", "targets", "instr",
];

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "conformance" => conformance_cmd(&rest),
        "bench" => bench_cmd(&rest),
        "loom" => loom_cmd(&rest),
        "fuzz" => fuzz::cmd(&rest),
        "sanitize" => sanitize::cmd(&rest),
        "loadtest" => loadtest_cmd(&rest),
        "soak" => soak::soak_cmd(&rest),
        "__mio-http-server" => {
            mio_http::serve_cmd(&rest)?;
            Ok(ExitCode::SUCCESS)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

/// A tiny flag parser: `--name value` and `--flag`.
struct Flags<'a> {
    args: &'a [String],
    used: Vec<bool>,
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> Flags<'a> {
        Flags {
            args,
            used: vec![false; args.len()],
        }
    }

    fn flag(&mut self, name: &str) -> bool {
        let mut found = false;
        for (i, a) in self.args.iter().enumerate() {
            if a == name {
                self.used[i] = true;
                found = true;
            }
        }
        found
    }

    fn value(&mut self, name: &str) -> Result<Option<&'a str>> {
        let mut v = None;
        for i in 0..self.args.len() {
            if self.args[i] == name {
                let Some(val) = self.args.get(i + 1) else {
                    bail!("{name} needs a value");
                };
                self.used[i] = true;
                self.used[i + 1] = true;
                v = Some(val.as_str());
            }
        }
        Ok(v)
    }

    /// The arguments not used so far that are not flags (file names),
    /// marked used.
    fn rest(&mut self) -> Vec<&'a str> {
        let mut out = Vec::new();
        for (i, a) in self.args.iter().enumerate() {
            if !self.used[i] && !a.starts_with("--") {
                self.used[i] = true;
                out.push(a.as_str());
            }
        }
        out
    }

    fn finish(self) -> Result<()> {
        if let Some((a, _)) = self.args.iter().zip(&self.used).find(|(_, u)| !**u) {
            bail!("unexpected argument `{a}`\n{USAGE}");
        }
        Ok(())
    }
}

fn conformance_cmd(args: &[String]) -> Result<ExitCode> {
    let mut flags = Flags::new(args);
    let json = flags.flag("--json");
    let backend = flags.value("--backend")?;
    let cases = match flags.value("--cases")? {
        Some(n) => n.parse::<u32>().context("--cases takes a whole number")?,
        None => conformance::proptest_cases(256),
    };
    flags.finish()?;

    let all = conformance::backends();
    let chosen: Vec<_> = match backend {
        None => conformance::backends_from_env()?,
        Some(name) => {
            let names: Vec<_> = all.iter().map(|b| b.name).collect();
            let Some(b) = all.into_iter().find(|b| b.name == name) else {
                bail!(
                    "unknown backend `{name}`; valid names: {}",
                    names.join(", ")
                );
            };
            vec![b]
        }
    };

    let mut reports = Vec::new();
    for spec in &chosen {
        if !json {
            eprintln!("conformance: {} …", spec.name);
        }
        reports.push(conformance::conformance(spec, cases));
    }

    let passed: usize = reports
        .iter()
        .map(|r| {
            r.scenarios_passed
                + (r.proptest_cases - r.proptest_failed.min(r.proptest_cases)) as usize
        })
        .sum();
    let failed: usize = reports
        .iter()
        .map(|r| r.scenarios_failed + r.proptest_failed as usize)
        .sum();

    if json {
        println!("{}", to_json(&reports).render());
    } else {
        print_matrix(&reports);
        for r in &reports {
            for f in &r.failures {
                println!("\nFAILED {f}");
            }
        }
        println!("\n{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_matrix(reports: &[BackendReport]) {
    let cats: BTreeSet<&str> = reports
        .iter()
        .flat_map(|r| r.categories.keys().copied())
        .collect();
    let width = cats.iter().map(|c| c.len()).max().unwrap_or(8).max(8);
    print!("{:width$}", "category");
    for r in reports {
        print!("  {:>12}", r.name);
    }
    println!();
    for cat in &cats {
        print!("{cat:width$}");
        for r in reports {
            let cell = if !r.available {
                "n/a".to_string()
            } else {
                match r.categories.get(cat) {
                    Some(t) if *cat == "proptest" => {
                        if t.failed == 0 {
                            format!("{} cases", r.proptest_cases)
                        } else {
                            "FAILED".to_string()
                        }
                    }
                    Some(t) if t.failed == 0 => format!("{}/{} ok", t.passed, t.passed),
                    Some(t) => format!("{}/{} FAIL", t.passed, t.passed + t.failed),
                    None => "-".to_string(),
                }
            };
            print!("  {cell:>12}");
        }
        println!();
    }
    for r in reports.iter().filter(|r| !r.available) {
        println!(
            "{}: not available on this OS ({})",
            r.name,
            r.unavailable_reason.unwrap_or("unknown reason")
        );
    }
}

fn to_json(reports: &[BackendReport]) -> Json {
    let backends = reports
        .iter()
        .map(|r| {
            let mut pairs = vec![
                ("name", Json::Str(r.name.to_string())),
                ("available", Json::Bool(r.available)),
                ("scenarios_passed", Json::Int(r.scenarios_passed as i64)),
                ("scenarios_failed", Json::Int(r.scenarios_failed as i64)),
                ("proptest_cases", Json::Int(i64::from(r.proptest_cases))),
                ("proptest_failed", Json::Int(i64::from(r.proptest_failed))),
                (
                    "categories",
                    Json::obj(r.categories.iter().map(|(k, t)| {
                        (
                            k.to_string(),
                            Json::obj([
                                ("passed", Json::Int(t.passed as i64)),
                                ("failed", Json::Int(t.failed as i64)),
                            ]),
                        )
                    })),
                ),
            ];
            if let Some(why) = r.unavailable_reason {
                pairs.push(("unavailable_reason", Json::Str(why.to_string())));
            }
            pairs.push((
                "failures",
                Json::Arr(r.failures.iter().map(|f| Json::Str(f.clone())).collect()),
            ));
            Json::obj(pairs)
        })
        .collect();
    Json::obj([("backends", Json::Arr(backends))])
}

fn loadtest_cmd(args: &[String]) -> Result<ExitCode> {
    let mut flags = Flags::new(args);
    let json = flags.flag("--json");
    let quick = flags.flag("--quick");
    let backend = flags.value("--backend")?.map(str::to_string);
    let no_pin = flags.flag("--no-pin");
    let rounds = match flags.value("--rounds")? {
        Some(n) => Some(
            n.parse::<usize>()
                .context("--rounds takes a whole number")?,
        ),
        None => None,
    };
    flags.finish()?;
    loadtest::run(&loadtest::LoadtestOpts {
        backend,
        quick,
        json,
        rounds,
        no_pin,
    })
}

fn bench_cmd(args: &[String]) -> Result<ExitCode> {
    let Some((which, rest)) = args.split_first() else {
        bail!(
            "`bench` needs a benchmark name; valid names: {}\n{USAGE}",
            BENCHES.join(", ")
        );
    };
    match which.as_str() {
        "timers" => bench_timers_cmd(rest),
        "chain" | "idle" | "churn" | "all" => bench_suite_cmd(which, rest),
        "instr" => {
            let mut flags = Flags::new(rest);
            let (json, quick) = (flags.flag("--json"), flags.flag("--quick"));
            flags.finish()?;
            bench_suite::instr(quick, json)?;
            Ok(ExitCode::SUCCESS)
        }
        "targets" => {
            let mut flags = Flags::new(rest);
            let json = flags.flag("--json");
            let files = flags.rest();
            flags.finish()?;
            bench_targets::cmd(&files.iter().map(PathBuf::from).collect::<Vec<_>>(), json)?;
            Ok(ExitCode::SUCCESS)
        }
        "__churn-count" => {
            bench_suite::churn_count(rest)?;
            Ok(ExitCode::SUCCESS)
        }
        "__chain-one" => {
            bench_suite::chain_one(rest)?;
            Ok(ExitCode::SUCCESS)
        }
        other => bail!(
            "unknown benchmark `{other}`; valid names: {}\n{USAGE}",
            BENCHES.join(", ")
        ),
    }
}

fn bench_suite_cmd(which: &str, args: &[String]) -> Result<ExitCode> {
    let mut flags = Flags::new(args);
    let json = flags.flag("--json");
    let quick = flags.flag("--quick");
    let only = flags
        .value("--only")?
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let blocks = count(flags.value("--blocks")?, "--blocks")?;
    let rounds_per_turn = count(flags.value("--rounds")?, "--rounds")?;
    let ns = list::<usize>(flags.value("--ns")?, "--ns", |n| {
        (1..=MAX_PAIRS).contains(n)
    })?;
    let atrs = list::<f64>(flags.value("--atrs")?, "--atrs", |a| *a > 0.0 && *a <= 1.0)?;
    flags.finish()?;
    bench_suite::run(
        which,
        &bench_suite::SuiteOpts {
            quick,
            json,
            only,
            blocks,
            rounds_per_turn,
            ns,
            atrs,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The most pairs `--ns` accepts: two descriptors each under the
/// 20,000-descriptor hard limit, with room for the poller's own.
const MAX_PAIRS: usize = 9500;

/// Parses an optional `flag` value that must be a whole number above 0.
fn count(v: Option<&str>, flag: &str) -> Result<Option<usize>> {
    v.map(|v| match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} takes a whole number above 0, not `{v}`"),
    })
    .transpose()
}

/// Parses a comma-separated `flag` value; every item must pass `ok`.
fn list<T: std::str::FromStr>(
    v: Option<&str>,
    flag: &str,
    ok: impl Fn(&T) -> bool,
) -> Result<Vec<T>> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    v.split(',')
        .map(|item| match item.trim().parse::<T>() {
            Ok(x) if ok(&x) => Ok(x),
            _ => bail!("{flag}: `{item}` is out of range or not a number"),
        })
        .collect()
}

/// The pending count the wheel-vs-heap ratio is reported at.
const HEAD_TO_HEAD_PENDING: usize = 1_000_000;

fn bench_timers_cmd(args: &[String]) -> Result<ExitCode> {
    let mut flags = Flags::new(args);
    let json = flags.flag("--json");
    let quick = flags.flag("--quick");
    flags.finish()?;

    let opts = if quick {
        TimerBenchOpts::quick()
    } else {
        TimerBenchOpts::full()
    };
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: debug build; timings are meaningless (use `cargo xtask`, which builds in release mode)"
        );
    }
    let results = bench_timers::run(&opts, &mut |line| eprintln!("{line}"));
    let report = TimerReport::new(&results);

    if json {
        println!("{}", report.to_json().render());
    } else {
        report.print(&opts);
    }
    Ok(ExitCode::SUCCESS)
}

/// Structure names as printed in the human table.
fn structure_label(structure: &str) -> &str {
    match structure {
        "wheel" => "TimerWheel",
        "binary_heap" => "BinaryHeap",
        "btree_map" => "BTreeMap",
        other => other,
    }
}

/// `1000` → `1k`, `1000000` → `1M`.
fn pending_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Rounds to 0.01 (ns, or a ratio) for the JSON report.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Flatness of one structure on one workload.
struct Flatness<'a> {
    structure: &'static str,
    workload: &'static str,
    from: &'a TimerResult,
    to: &'a TimerResult,
}

impl Flatness<'_> {
    /// Cost at the largest pending count / cost at the smallest.
    fn ratio(&self) -> f64 {
        self.to.ns_per_op / self.from.ns_per_op
    }
}

/// The benchmark results plus what is derived from them.
struct TimerReport<'a> {
    results: &'a [TimerResult],
    /// Workloads in the order measured.
    workloads: Vec<&'static str>,
    /// Structures in the order measured.
    structures: Vec<&'static str>,
    /// Pending counts, ascending.
    pendings: Vec<usize>,
    flatness: Vec<Flatness<'a>>,
    /// Per workload: heap median / wheel median at 1M pending.
    wheel_vs_heap: Vec<(&'static str, f64)>,
}

impl<'a> TimerReport<'a> {
    fn new(results: &'a [TimerResult]) -> Self {
        fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
            if !v.contains(&x) {
                v.push(x);
            }
        }
        let mut workloads = Vec::new();
        let mut structures = Vec::new();
        let mut pendings = Vec::new();
        for r in results {
            push_unique(&mut workloads, r.workload);
            push_unique(&mut structures, r.structure);
            push_unique(&mut pendings, r.pending);
        }
        pendings.sort_unstable();
        let find = |structure: &str, workload: &str, pending: usize| {
            results.iter().find(|r| {
                r.structure == structure && r.workload == workload && r.pending == pending
            })
        };

        let mut flatness = Vec::new();
        if let (Some(&lo), Some(&hi)) = (pendings.first(), pendings.last())
            && lo != hi
        {
            for &structure in &structures {
                for &workload in &workloads {
                    if let (Some(from), Some(to)) =
                        (find(structure, workload, lo), find(structure, workload, hi))
                    {
                        flatness.push(Flatness {
                            structure,
                            workload,
                            from,
                            to,
                        });
                    }
                }
            }
        }

        let wheel_vs_heap = workloads
            .iter()
            .filter_map(|&workload| {
                let wheel = find("wheel", workload, HEAD_TO_HEAD_PENDING)?;
                let heap = find("binary_heap", workload, HEAD_TO_HEAD_PENDING)?;
                Some((workload, heap.ns_per_op / wheel.ns_per_op))
            })
            .collect();

        TimerReport {
            results,
            workloads,
            structures,
            pendings,
            flatness,
            wheel_vs_heap,
        }
    }

    fn print(&self, opts: &TimerBenchOpts) {
        let find = |structure: &str, workload: &str, pending: usize| {
            self.results.iter().find(|r| {
                r.structure == structure && r.workload == workload && r.pending == pending
            })
        };
        let name_width = self
            .structures
            .iter()
            .map(|s| structure_label(s).len())
            .max()
            .unwrap_or(0)
            .max("structure".len());
        let cells: Vec<Vec<Vec<String>>> = self
            .workloads
            .iter()
            .map(|&w| {
                self.structures
                    .iter()
                    .map(|&s| {
                        self.pendings
                            .iter()
                            .map(|&p| match find(s, w, p) {
                                Some(r) => {
                                    format!("{:.1} ({:.1}–{:.1})", r.ns_per_op, r.min_ns, r.max_ns)
                                }
                                None => "-".to_string(),
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let cell_width = cells
            .iter()
            .flatten()
            .flatten()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
            .max(12);

        for (w, &workload) in self.workloads.iter().enumerate() {
            if w > 0 {
                println!();
            }
            println!("{workload}: median ns/op (min–max over rounds)");
            print!("{:name_width$}", "structure");
            for &p in &self.pendings {
                print!("  {:>cell_width$}", format!("{} pending", pending_label(p)));
            }
            println!();
            for (s, &structure) in self.structures.iter().enumerate() {
                print!("{:name_width$}", structure_label(structure));
                for cell in &cells[w][s] {
                    // `{:>width$}` counts chars, and `–` is one.
                    print!("  {cell:>cell_width$}");
                }
                println!();
            }
        }

        if let (Some(&lo), Some(&hi)) = (self.pendings.first(), self.pendings.last())
            && !self.flatness.is_empty()
        {
            println!(
                "\nflatness (median ns/op at {} pending / at {} pending; 1.00 = flat):",
                pending_label(hi),
                pending_label(lo)
            );
            for &structure in &self.structures {
                let parts: Vec<String> = self
                    .flatness
                    .iter()
                    .filter(|f| f.structure == structure)
                    .map(|f| {
                        format!(
                            "{} {:.2} ({:.1} → {:.1} ns)",
                            f.workload,
                            f.ratio(),
                            f.from.ns_per_op,
                            f.to.ns_per_op
                        )
                    })
                    .collect();
                println!(
                    "  {:name_width$}  {}",
                    structure_label(structure),
                    parts.join(", ")
                );
            }
        }

        println!();
        for &(workload, ratio) in &self.wheel_vs_heap {
            let note = if ratio < 1.0 {
                " (wheel is slower)"
            } else {
                ""
            };
            println!(
                "wheel vs BinaryHeap at {} pending: {workload} {ratio:.2}x faster{note}",
                pending_label(HEAD_TO_HEAD_PENDING)
            );
        }
        if self.wheel_vs_heap.is_empty() {
            println!(
                "wheel vs BinaryHeap: not measured at {} pending",
                pending_label(HEAD_TO_HEAD_PENDING)
            );
        }

        let ops_range = |w: &str| {
            let ops = self
                .results
                .iter()
                .filter(|r| r.workload == w)
                .map(|r| r.ops);
            (ops.clone().min().unwrap_or(0), ops.max().unwrap_or(0))
        };
        let ops_note: Vec<String> = self
            .workloads
            .iter()
            .map(|&w| {
                let (lo, hi) = ops_range(w);
                format!("{w} {lo}–{hi}")
            })
            .collect();
        println!(
            "\nmeasured: median of {} rounds; per round, structure and pending count at least {} \
             timed ops, rounded up to whole periods of the workload ({} ops; see \
             xtask/src/bench_timers.rs); {} build; subjects interleaved (each round goes through \
             every pending count and at each builds and measures every structure in turn, \
             rotating which goes first); pre-fill untimed.",
            opts.rounds,
            opts.ops,
            ops_note.join(", "),
            if cfg!(debug_assertions) {
                "DEBUG (timings meaningless)"
            } else {
                "release"
            },
        );
    }

    fn to_json(&self) -> Json {
        let timers = self
            .results
            .iter()
            .map(|r| {
                Json::obj([
                    ("structure", Json::Str(r.structure.to_string())),
                    ("workload", Json::Str(r.workload.to_string())),
                    ("pending", Json::Int(r.pending as i64)),
                    ("ops", Json::Int(r.ops as i64)),
                    ("ns_per_op", Json::Num(round2(r.ns_per_op))),
                    ("min_ns", Json::Num(round2(r.min_ns))),
                    ("max_ns", Json::Num(round2(r.max_ns))),
                ])
            })
            .collect();
        let flatness = self
            .flatness
            .iter()
            .map(|f| {
                Json::obj([
                    ("structure", Json::Str(f.structure.to_string())),
                    ("workload", Json::Str(f.workload.to_string())),
                    ("ratio", Json::Num(round2(f.ratio()))),
                ])
            })
            .collect();
        let wheel_vs_heap = self
            .wheel_vs_heap
            .iter()
            .map(|&(workload, ratio)| {
                Json::obj([
                    ("workload", Json::Str(workload.to_string())),
                    ("ratio", Json::Num(round2(ratio))),
                ])
            })
            .collect();
        Json::obj([
            ("timers", Json::Arr(timers)),
            ("flatness", Json::Arr(flatness)),
            ("wheel_vs_heap_1m", Json::Arr(wheel_vs_heap)),
        ])
    }
}

fn loom_cmd(args: &[String]) -> Result<ExitCode> {
    Flags::new(args).finish()?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    rustflags.push_str("--cfg loom");
    eprintln!("loom: building and running the models (release, target/loom) …");
    let out = std::process::Command::new(cargo)
        .current_dir(root)
        .env("RUSTFLAGS", rustflags)
        .args([
            "test",
            "--release",
            "--locked",
            "-p",
            "evmux-interest",
            "--test",
            "loom",
            "--target-dir",
            "target/loom",
            "--",
            "--test-threads=1",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test for the loom models")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    let (mut passed, mut failed) = (0usize, 0usize);
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let part = part
                    .trim()
                    .trim_start_matches("ok. ")
                    .trim_start_matches("FAILED. ");
                if let Some(n) = part.strip_suffix(" passed") {
                    passed += n.trim().parse::<usize>().unwrap_or(0);
                } else if let Some(n) = part.strip_suffix(" failed") {
                    failed += n.trim().parse::<usize>().unwrap_or(0);
                }
            }
        }
    }
    if !out.status.success() && failed == 0 {
        bail!("the loom build or run failed ({})", out.status);
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
