//! `cargo xtask fuzz [--seconds N] [--target NAME]`: runs the cargo-fuzz
//! targets in `fuzz/` one after another, each for N seconds, and prints one
//! summary line per target and `N passed, M failed`.
//!
//! Needs the nightly toolchain and `cargo-fuzz`; when either is missing it
//! says how to install it and fails. Everything libFuzzer prints goes to
//! `target/fuzz-logs/<target>.log`; new inputs go to `fuzz/corpus/<target>`
//! and crashing ones to `fuzz/artifacts/<target>` (both git-ignored).

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::Flags;

/// The fuzz targets, in the order they run.
pub const TARGETS: &[&str] = &["interest_ops", "timer_wheel", "http_parser"];

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;

/// libFuzzer's per-input time limit, in seconds: an input that runs longer
/// (a hang) is a failure.
const INPUT_TIMEOUT: u64 = 60;

/// What one target's run gave.
#[derive(Debug, Default)]
struct Summary {
    /// Inputs executed.
    runs: u64,
    /// Edges covered (`cov`).
    cov: u64,
    /// Features (`ft`).
    features: u64,
    /// Inputs in the corpus at the end, and their total size.
    corpus: Option<(u64, String)>,
    /// Executions per second.
    exec_per_sec: u64,
    /// Peak RSS, MB.
    rss_mb: u64,
    /// The crashing input libFuzzer saved, if any.
    artifact: Option<String>,
}

/// `cargo xtask fuzz`.
pub fn cmd(args: &[String]) -> Result<ExitCode> {
    let mut flags = Flags::new(args);
    let seconds = match flags.value("--seconds")? {
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .context("--seconds takes a whole number of seconds, at least 1")?,
        None => DEFAULT_SECONDS,
    };
    let only = flags.value("--target")?;
    flags.finish()?;
    let targets: Vec<&str> = match only {
        None => TARGETS.to_vec(),
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => bail!(
            "unknown fuzz target `{name}`; valid names: {}",
            TARGETS.join(", ")
        ),
    };

    if let Err(why) = preflight() {
        eprintln!("{why}");
        return Ok(ExitCode::from(2));
    }

    let root = crate::sanitize::workspace_root()?;
    let fuzz_dir = root.join("fuzz");
    let logs = root.join("target").join("fuzz-logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    // One build for every target, so that build time does not eat into a
    // target's seconds and a build error is reported as such.
    eprintln!("fuzz: building the targets (cargo +nightly fuzz build) …");
    let started = Instant::now();
    let status = nightly_cargo(&root)
        .args(["fuzz", "build"])
        .stdout(Stdio::null())
        .status()
        .context("running cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    eprintln!("fuzz: built in {:.0?}", started.elapsed());

    let (mut passed, mut failed) = (0usize, 0usize);
    let mut lines = Vec::new();
    for target in &targets {
        eprintln!("fuzz: {target} for {seconds} s …");
        let corpus = fuzz_dir.join("corpus").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let log_path = logs.join(format!("{target}.log"));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = nightly_cargo(&root);
        command.args(["fuzz", "run", target]).arg(&corpus);
        // Hand-written seeds, read but never written to.
        let seeds = fuzz_dir.join("seeds").join(target);
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command.args([
            "--".to_string(),
            format!("-max_total_time={seconds}"),
            format!("-timeout={INPUT_TIMEOUT}"),
            "-print_final_stats=1".to_string(),
        ]);
        let dict = fuzz_dir.join("dicts").join(format!("{target}.dict"));
        if dict.is_file() {
            command.arg(format!("-dict={}", dict.display()));
        }
        let started = Instant::now();
        let status = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running cargo +nightly fuzz run {target}"))?;
        let elapsed = started.elapsed().as_secs();
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let summary = parse_log(&text);
        let line = summary_line(target, &summary, elapsed, status.success());
        println!("{line}");
        lines.push(line);
        if status.success() {
            passed += 1;
        } else {
            failed += 1;
            println!("  log: {}", log_path.display());
            for l in failure_excerpt(&text) {
                println!("  | {l}");
            }
        }
    }
    if targets.len() > 1 {
        println!();
        for line in &lines {
            println!("{line}");
        }
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo +nightly …` in `root`, without the environment the outer
/// (stable) cargo set for `cargo xtask`.
pub fn nightly_cargo(root: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root)
        .arg("+nightly")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    c
}

/// Whether `cargo +nightly` works, as a message saying how to install it
/// when it does not.
pub fn check_nightly() -> Result<(), String> {
    let ok = Command::new("cargo")
        .args(["+nightly", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(
            "error: the nightly toolchain is missing (`cargo +nightly --version` failed).\n\
             Install it with:\n    rustup toolchain install nightly"
                .to_string(),
        )
    }
}

/// Checks for nightly and cargo-fuzz.
fn preflight() -> Result<(), String> {
    check_nightly()?;
    let fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !fuzz {
        return Err(
            "error: cargo-fuzz is missing (`cargo +nightly fuzz --version` failed).\n\
             Install it with:\n    cargo install cargo-fuzz --locked"
                .to_string(),
        );
    }
    Ok(())
}

/// The number after `key` in a libFuzzer status line (`cov: 123`).
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Reads the figures out of libFuzzer's output.
fn parse_log(text: &str) -> Summary {
    let mut s = Summary::default();
    for line in text.lines() {
        // Status lines: `#42000	DONE   cov: 2685 ft: 7157 corp: 584/11952b …`.
        if let Some(rest) = line.strip_prefix('#')
            && let Some(runs) = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
            && line.contains("cov: ")
        {
            s.runs = s.runs.max(runs);
            s.cov = field(line, "cov:").unwrap_or(s.cov);
            s.features = field(line, "ft:").unwrap_or(s.features);
            if let Some(i) = line.find("corp: ") {
                let corp = line[i + 6..].split_whitespace().next().unwrap_or("");
                if let Some((n, size)) = corp.split_once('/')
                    && let Ok(n) = n.parse()
                {
                    s.corpus = Some((n, size.to_string()));
                }
            }
            if let Some(rss) = field(line, "rss:") {
                s.rss_mb = s.rss_mb.max(rss);
            }
        } else if let Some(n) = field(line, "stat::number_of_executed_units:") {
            s.runs = s.runs.max(n);
        } else if let Some(n) = field(line, "stat::average_exec_per_sec:") {
            s.exec_per_sec = n;
        } else if let Some(n) = field(line, "stat::peak_rss_mb:") {
            s.rss_mb = s.rss_mb.max(n);
        } else if let Some(i) = line.find("Test unit written to ") {
            s.artifact = Some(line[i + "Test unit written to ".len()..].trim().to_string());
        }
    }
    s
}

fn summary_line(target: &str, s: &Summary, elapsed: u64, ok: bool) -> String {
    let corpus = match &s.corpus {
        Some((n, size)) => format!("corpus {n} ({size})"),
        None => "corpus ?".to_string(),
    };
    let verdict = if ok {
        "ok".to_string()
    } else {
        match &s.artifact {
            Some(a) => format!("FAILED (crash saved to {a})"),
            None => "FAILED".to_string(),
        }
    };
    format!(
        "{target:<13} {runs:>10} runs  {rate:>6}/s  cov {cov:>5}  ft {ft:>6}  {corpus}  rss {rss} MB  {elapsed} s  {verdict}",
        runs = s.runs,
        rate = s.exec_per_sec,
        cov = s.cov,
        ft = s.features,
        rss = s.rss_mb,
    )
}

/// The lines of a failed run worth showing: the panic or sanitizer report
/// and what follows, or the end of the log.
fn failure_excerpt(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("# Uses:")).collect();
    let start = lines
        .iter()
        .position(|l| {
            l.contains("panicked at")
                || l.contains("ERROR: AddressSanitizer")
                || l.contains("ERROR: libFuzzer")
                || l.contains("error[E")
        })
        .unwrap_or(lines.len().saturating_sub(30));
    lines[start..].iter().take(60).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_figures() {
        let log = "\
INFO: Seed: 1
#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb
#42000\tDONE   cov: 2685 ft: 7157 corp: 584/11952b lim: 38 exec/s: 1354 rss: 358Mb
Done 42000 runs in 31 second(s)
stat::number_of_executed_units: 42000
stat::average_exec_per_sec:     1354
stat::new_units_added:          659
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              360
";
        let s = parse_log(log);
        assert_eq!(s.runs, 42000);
        assert_eq!(s.cov, 2685);
        assert_eq!(s.features, 7157);
        assert_eq!(s.corpus, Some((584, "11952b".to_string())));
        assert_eq!(s.exec_per_sec, 1354);
        assert_eq!(s.rss_mb, 360);
        assert_eq!(s.artifact, None);
    }

    #[test]
    fn finds_the_crash_artifact() {
        let log = "\
#100\tNEW    cov: 5 ft: 5 corp: 2/2b lim: 4 exec/s: 0 rss: 30Mb L: 1/1 MS: 1 ChangeBit-
thread '<unnamed>' panicked at fuzz_targets/x.rs:1:1:
boom
==1== ERROR: libFuzzer: deadly signal
artifact_prefix='/w/fuzz/artifacts/x/'; Test unit written to /w/fuzz/artifacts/x/crash-abc
";
        let s = parse_log(log);
        assert_eq!(s.runs, 100);
        assert_eq!(s.artifact.as_deref(), Some("/w/fuzz/artifacts/x/crash-abc"));
        assert_eq!(
            failure_excerpt(log)[0],
            "thread '<unnamed>' panicked at fuzz_targets/x.rs:1:1:"
        );
    }
}
