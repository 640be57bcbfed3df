//! `cargo xtask sanitize`: the workspace's unit and integration tests under
//! AddressSanitizer (and LeakSanitizer, which ASan enables on Linux).
//!
//! Runs, in `target/asan`:
//!
//! ```text
//! RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
//!   cargo +nightly test -Zbuild-std --target <host> --workspace --lib --tests
//! ```
//!
//! `-Zbuild-std` rebuilds the standard library instrumented, so that memory
//! the standard library touches is checked too; it needs nightly's
//! `rust-src` component, which the command installs when it is missing and
//! goes without (saying so) when it cannot. The few tests that cannot run
//! under ASan are skipped, each with its reason in [`SKIPPED`] (see
//! `RELIABILITY.md`). Prints `N passed, M failed`; exits non-zero on a
//! failed test or any sanitizer report.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::Flags;
use crate::fuzz::{check_nightly, nightly_cargo};

/// Tests not run under ASan: (test binary's crate, test name filter, why).
/// Filters are passed to every test binary as `--skip`, so they are
/// written to match nothing else in the workspace.
pub const SKIPPED: &[(&str, &str, &str)] = &[];

/// Crates left out entirely: (crate, why).
pub const EXCLUDED: &[(&str, &str)] = &[];

/// LeakSanitizer suppressions: (pattern, why). Written to
/// `target/asan/lsan.supp` and passed in `LSAN_OPTIONS`.
pub const LEAKS_ALLOWED: &[(&str, &str)] = &[(
    "evmux_net::http::tests::",
    "the parser's unit tests `Box::leak` their buffers on purpose, to get \
     'static borrows (net/src/http/mod.rs, mod tests)",
)];

/// Sanitizer flags, for rustc and rustdoc.
const FLAGS: &str = "-Zsanitizer=address";

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?
        .to_path_buf())
}

/// `cargo xtask sanitize [--no-build-std]`.
pub fn cmd(args: &[String]) -> Result<ExitCode> {
    let mut flags = Flags::new(args);
    let no_build_std = flags.flag("--no-build-std");
    flags.finish()?;

    if let Err(why) = check_nightly() {
        eprintln!("{why}");
        return Ok(ExitCode::from(2));
    }
    let root = workspace_root()?;
    let host = nightly_host()?;
    let build_std = !no_build_std && ensure_rust_src();
    if !build_std && !no_build_std {
        eprintln!(
            "sanitize: warning: nightly's rust-src component is missing and could not be \
             installed (`rustup component add rust-src --toolchain nightly`); running without \
             -Zbuild-std (the standard library is then not instrumented)"
        );
    }

    let asan_dir = root.join("target").join("asan");
    std::fs::create_dir_all(&asan_dir)
        .with_context(|| format!("creating {}", asan_dir.display()))?;
    let supp = asan_dir.join("lsan.supp");
    let mut text = String::new();
    for (pattern, why) in LEAKS_ALLOWED {
        text.push_str(&format!("# {why}\nleak:{pattern}\n"));
    }
    std::fs::write(&supp, text).with_context(|| format!("writing {}", supp.display()))?;
    let mut lsan = std::env::var("LSAN_OPTIONS").unwrap_or_default();
    if !lsan.is_empty() {
        lsan.push(':');
    }
    lsan.push_str(&format!(
        "suppressions={}:print_suppressions=0",
        supp.display()
    ));

    let mut command = nightly_cargo(&root);
    command
        .env("RUSTFLAGS", FLAGS)
        .env("RUSTDOCFLAGS", FLAGS)
        .env("LSAN_OPTIONS", lsan)
        .arg("test");
    if build_std {
        command.arg("-Zbuild-std");
    }
    command.args([
        "--target",
        &host,
        "--workspace",
        "--lib",
        "--tests",
        "--target-dir",
        "target/asan",
        "--no-fail-fast",
    ]);
    for (krate, _) in EXCLUDED {
        command.args(["--exclude", krate]);
    }
    command.arg("--");
    for (_, filter, _) in SKIPPED {
        command.args(["--skip", filter]);
    }
    eprintln!(
        "sanitize: cargo +nightly test{} --target {host} --workspace --lib --tests \
         (RUSTFLAGS={FLAGS}, target/asan; {} crate(s) excluded, {} test filter(s) skipped; \
         see RELIABILITY.md) …",
        if build_std { " -Zbuild-std" } else { "" },
        EXCLUDED.len(),
        SKIPPED.len(),
    );
    let started = Instant::now();
    let (status, stdout, stderr) = run_teed(&mut command)?;
    let elapsed = started.elapsed().as_secs();

    let (mut passed, mut failed, mut ignored) = (0usize, 0usize, 0usize);
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let part = part
                    .trim()
                    .trim_start_matches("ok. ")
                    .trim_start_matches("FAILED. ");
                let count = |suffix: &str| {
                    part.strip_suffix(suffix)
                        .and_then(|n| n.trim().parse::<usize>().ok())
                };
                if let Some(n) = count(" passed") {
                    passed += n;
                } else if let Some(n) = count(" failed") {
                    failed += n;
                } else if let Some(n) = count(" ignored") {
                    ignored += n;
                }
            }
        }
    }
    let reports = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains("ERROR: AddressSanitizer") || l.contains("ERROR: LeakSanitizer"))
        .count();
    // A binary that ASan aborted prints no `test result:` line.
    let crashed = stderr
        .lines()
        .filter(|l| l.starts_with("error: test failed"))
        .count();

    println!(
        "\nsanitize: {} in {elapsed} s; {ignored} ignored; {reports} sanitizer report(s)",
        if status.success() {
            "cargo test succeeded"
        } else {
            "cargo test FAILED"
        }
    );
    if !status.success() && passed == 0 && failed == 0 {
        bail!("the ASan build failed ({status}); see the output above");
    }
    let failed = failed.max(crashed).max(reports);
    println!("\n{passed} passed, {failed} failed");
    Ok(
        if status.success() && failed == 0 && reports == 0 && passed > 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Nightly's host triple (`rustc +nightly -vV`).
fn nightly_host() -> Result<String> {
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("running rustc +nightly -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc +nightly -vV printed no host")
}

/// Whether nightly has `rust-src` (needed by `-Zbuild-std`), installing it
/// if it is missing.
fn ensure_rust_src() -> bool {
    let installed = || {
        Command::new("rustup")
            .args(["component", "list", "--installed", "--toolchain", "nightly"])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim().starts_with("rust-src"))
            })
    };
    if installed() {
        return true;
    }
    eprintln!("sanitize: installing nightly's rust-src (for -Zbuild-std) …");
    let _ = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", "nightly"])
        .status();
    installed()
}

/// Runs `command`, copying its stdout and stderr through as they come, and
/// returns its status and both texts.
fn run_teed(command: &mut Command) -> Result<(std::process::ExitStatus, String, String)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo +nightly test")?;
    fn pump<R: Read + Send + 'static, W: Write + 'static>(
        mut from: R,
        to: fn() -> W,
    ) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = to().write_all(&buf[..n]);
                all.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&all).into_owned()
        })
    }
    let out = pump(child.stdout.take().context("stdout")?, std::io::stdout);
    let err = pump(child.stderr.take().context("stderr")?, std::io::stderr);
    let status = child.wait()?;
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    Ok((status, out, err))
}
