//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask conformance [--backend NAME] [--cases N] [--json]`: every
//!   hand-written scenario and the property test, on every backend, against
//!   the reference model. Prints a category × backend matrix and a closing
//!   `N passed, M failed` line; exits non-zero if anything failed.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use evmux_testkit::conformance::{self, BackendReport};

mod json;

use json::Json;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  conformance [--backend NAME] [--cases N] [--json]
      Run every scenario and N property-test cases (default 256, or
      EVMUX_PROPTEST_CASES) on every backend, or only NAME, against the model.
";

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
        None => all,
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
