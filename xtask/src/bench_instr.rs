//! `bench instr`: user-space instructions per chain round, counted by
//! valgrind's callgrind, for the comparisons whose margin (5%) is smaller
//! than the wall-clock noise of a shared machine.
//!
//! Each subject runs `bench __chain-one` twice under callgrind, with `R`
//! and `2R` timed rounds after the same set-up and warm-up; the difference
//! of the two totals divided by `R` is the cost of one round, set-up and
//! start-up excluded. Callgrind counts the instructions of the process in
//! user space only: the kernel's work is not in the figure. Every subject
//! here makes the same system calls per round as its raw counterpart (one
//! `epoll_wait` or `poll` per wait, one `read` and one `send` per event),
//! except where noted in the report, so the difference is the library's
//! own work.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench_mux::{self, Roster, num};
use crate::json::Json;

/// One measurement.
#[derive(Debug, Clone)]
pub struct Instr {
    /// Subject name.
    pub subject: &'static str,
    /// Pairs.
    pub n: usize,
    /// Active/total ratio.
    pub atr: f64,
    /// Instructions per round (user space).
    pub per_round: f64,
    /// Events (reads) per round: `A + W`.
    pub events: f64,
}

fn collected(subject: &str, n: usize, atr: f64, rounds: usize) -> Result<u64> {
    let exe = std::env::current_exe()?;
    let out = bench_mux::out_dir()?.join(format!(".callgrind-{subject}-{n}-{atr}-{rounds}"));
    let o = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args([
            "bench",
            "__chain-one",
            subject,
            &n.to_string(),
            &atr.to_string(),
            &rounds.to_string(),
        ])
        .output()
        .context("running valgrind (is it installed?)")?;
    let _ = std::fs::remove_file(&out);
    if !o.status.success() {
        bail!(
            "valgrind on {subject} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("Collected :"))
        .context("no `Collected :` line from callgrind")?;
    let v = line
        .rsplit(':')
        .next()
        .unwrap_or("")
        .trim()
        .replace(',', "");
    v.parse::<u64>()
        .with_context(|| format!("parsing `{line}`"))
}

/// Runs the comparison.
pub fn run(quick: bool, json: bool, roster: &Roster) -> Result<()> {
    let n = 1000;
    let atrs: &[f64] = if quick {
        &[0.01, 0.5]
    } else {
        &[0.01, 0.1, 0.5, 1.0]
    };
    let rounds = 3;
    let names = [
        "raw-epoll",
        "evmux-epoll",
        "raw-poll",
        "evmux-poll",
        "evmux-superpoll",
        "evmux-uring",
        "mio",
        "polling",
    ];
    let subjects: Vec<&'static str> = names
        .iter()
        .copied()
        .filter(|s| roster.subjects.iter().any(|x| x.name() == *s))
        .collect();
    let pb = bench_mux::progress((subjects.len() * atrs.len() * 2) as u64, "instr");
    let mut rows = Vec::new();
    for &atr in atrs {
        for &s in &subjects {
            pb.set_message(format!("{s} atr={atr}"));
            let a = collected(s, n, atr, rounds)?;
            pb.inc(1);
            let b = collected(s, n, atr, 2 * rounds)?;
            pb.inc(1);
            let active = ((atr * n as f64).round() as usize).clamp(1, n);
            rows.push(Instr {
                subject: s,
                n,
                atr,
                per_round: (b as f64 - a as f64) / rounds as f64,
                events: (active + n) as f64,
            });
        }
    }
    pb.finish_and_clear();
    let base = |atr: f64, name: &str| {
        rows.iter()
            .find(|r| r.atr == atr && r.subject == name)
            .map_or(f64::NAN, |r| r.per_round)
    };
    let csv: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.subject.to_string(),
                r.n.to_string(),
                format!("{}", r.atr),
                num(r.per_round, 0),
                num(r.per_round / r.events, 1),
                num(r.per_round / base(r.atr, "raw-epoll"), 4),
                num(r.per_round / base(r.atr, "raw-poll"), 4),
            ]
        })
        .collect();
    let path = bench_mux::write_csv(
        "instr.csv",
        &[
            "subject",
            "n",
            "atr",
            "user_instructions_per_round",
            "per_event",
            "ratio_to_raw_epoll",
            "ratio_to_raw_poll",
        ],
        &csv,
    )?;
    if json {
        let arr = rows
            .iter()
            .map(|r| {
                Json::obj([
                    ("subject", Json::Str(r.subject.into())),
                    ("n", Json::Int(r.n as i64)),
                    ("atr", Json::Num(r.atr)),
                    (
                        "user_instructions_per_round",
                        bench_mux::round_to(r.per_round, 0),
                    ),
                    ("per_event", bench_mux::round_to(r.per_round / r.events, 1)),
                    (
                        "ratio_to_raw_epoll",
                        bench_mux::round_to(r.per_round / base(r.atr, "raw-epoll"), 4),
                    ),
                ])
            })
            .collect();
        println!("{}", Json::obj([("instr", Json::Arr(arr))]).render());
        return Ok(());
    }
    println!(
        "instr: user-space instructions per chain round (callgrind), n={n}; per event = per read of A + W"
    );
    println!(
        "{:<16} {:>6} {:>14} {:>10} {:>10} {:>10}",
        "subject", "atr", "instr/round", "per event", "vs epoll", "vs poll"
    );
    for r in &rows {
        println!(
            "{:<16} {:>6} {:>14.0} {:>10.1} {:>10.4} {:>10.4}",
            r.subject,
            r.atr,
            r.per_round,
            r.per_round / r.events,
            r.per_round / base(r.atr, "raw-epoll"),
            r.per_round / base(r.atr, "raw-poll")
        );
    }
    println!("\nwrote {}", path.display());
    Ok(())
}
