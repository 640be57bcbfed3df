//! The driver of `cargo xtask bench chain|idle|churn|all`: runs the
//! chosen benchmarks, writes `target/evmux-bench/*.csv` and `*.svg`, and
//! prints a report (or the JSON summary with `--json`). Progress goes to
//! stderr, so that stdout carries nothing but the report.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::bench_chain::{self, ChainOpts, ChainReport};
use crate::bench_churn::{self, ChurnOpts, ChurnReport, ChurnSubject};
use crate::bench_idle::{self, IdleOpts, IdleReport};
use crate::bench_mux::{self, Roster, Target};
use crate::bench_plot;
use crate::json::Json;

/// Options common to the three benchmarks.
#[derive(Debug, Clone, Default)]
pub struct SuiteOpts {
    /// The reduced sweep.
    pub quick: bool,
    /// Print the JSON summary instead of tables.
    pub json: bool,
    /// Only these subjects (names as in the report); all when empty.
    pub only: Vec<String>,
    /// Blocks (interleaved turns of every subject) per point, overriding
    /// each benchmark's default: more blocks, less drift in the medians.
    pub blocks: Option<usize>,
    /// chain: timed rounds per turn, overriding the default.
    pub rounds_per_turn: Option<usize>,
    /// chain: only these pair counts (default: the sweep's).
    pub ns: Vec<usize>,
    /// chain: only these active/total ratios (default: the sweep's).
    pub atrs: Vec<f64>,
}

/// Runs `which` (`chain`, `idle`, `churn` or `all`).
pub fn run(which: &str, o: &SuiteOpts) -> Result<bool> {
    let (chain, idle, churn) = match which {
        "chain" => (true, false, false),
        "idle" => (false, true, false),
        "churn" => (false, false, true),
        "all" => (true, true, true),
        other => bail!("unknown benchmark `{other}`"),
    };
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: debug build; timings are meaningless (use `cargo xtask`, which builds in release mode)"
        );
    }
    if evmux_sys::fault::ENABLED {
        eprintln!("warning: evmux-sys was built with fault-injection; every syscall pays a check");
    }
    evmux_sys::signal::ignore_sigpipe()?;
    let nofile = bench_mux::raise_nofile()?;
    let mut roster = Roster::probe();
    roster.filter(&o.only)?;
    let started = Instant::now();

    let mut chain_opts = if o.quick {
        ChainOpts::quick()
    } else {
        ChainOpts::full()
    };
    let mut idle_opts = if o.quick {
        IdleOpts::quick()
    } else {
        IdleOpts::full()
    };
    let mut churn_opts = if o.quick {
        ChurnOpts::quick()
    } else {
        ChurnOpts::full()
    };
    if !o.ns.is_empty() {
        chain_opts.ns.clone_from(&o.ns);
    }
    if !o.atrs.is_empty() {
        chain_opts.atrs.clone_from(&o.atrs);
    }
    if let Some(r) = o.rounds_per_turn {
        chain_opts.rounds_per_turn = r;
    }
    if let Some(b) = o.blocks {
        chain_opts.blocks = b;
        chain_opts.blocks_small = b;
        idle_opts.blocks = b;
        churn_opts.blocks = b;
    }
    let k = roster.subjects.len() as u64;
    let mut len = 0;
    if chain {
        len += chain_opts.turns() as u64 * k;
    }
    if idle {
        len += (idle_opts.idles.len() * idle_opts.blocks) as u64 * k;
    }
    if churn {
        let programs = ChurnSubject::all(&roster);
        len += (churn_opts.blocks * programs.len()) as u64;
        len += programs.iter().filter(|p| !p.counter_sees_it()).count() as u64;
    }
    let pb = bench_mux::progress(len, "bench");
    let hidden = pb.is_hidden();
    let mut done = 0u64;
    let mut tick = |msg: String| {
        done += 1;
        // Without a terminal the bar is hidden: a line every 5% instead.
        if hidden && done.is_multiple_of((len / 20).max(1)) {
            eprintln!("bench: {done}/{len} {msg}");
        }
        pb.set_message(msg);
        pb.inc(1);
    };

    let chain_r = if chain {
        Some(bench_chain::run(&chain_opts, &roster, nofile, &mut tick)?)
    } else {
        None
    };
    let idle_r = if idle {
        Some(bench_idle::run(&idle_opts, &roster, nofile, &mut tick)?)
    } else {
        None
    };
    let churn_r = if churn {
        Some(bench_churn::run(&churn_opts, &roster, nofile, &mut tick)?)
    } else {
        None
    };
    pb.finish_and_clear();
    let elapsed = started.elapsed();

    let mut files = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let dir = bench_mux::out_dir()?;
    if let Some(r) = &chain_r {
        files.push(r.write_csv()?);
        for n in r.ns() {
            let path = dir.join(format!("chain-n{n}.svg"));
            files.push(bench_plot::lines(
                &path,
                &format!(
                    "chain, N = {n}: dispatch time relative to raw epoll (median of {} rounds)",
                    r.rounds_at(n)
                ),
                "active/total ratio",
                "time / raw-epoll time",
                &r.curves(n),
                (0.0, 1.0),
                1.0,
            )?);
        }
        targets.extend(r.targets());
    }
    if let Some(r) = &idle_r {
        files.push(r.write_csv()?);
        let series: Vec<(String, Vec<(f64, f64)>)> = r
            .slopes()
            .iter()
            .map(|s| {
                (
                    format!("{} ({:+.2}%/1k)", s.subject, s.pct()),
                    s.points.iter().map(|&(k, us)| (k as f64, us)).collect(),
                )
            })
            .collect();
        let max_idle = r.points.iter().map(|p| p.idle).max().unwrap_or(1) as f64;
        files.push(bench_plot::lines(
            &dir.join("idle.svg"),
            &format!(
                "idle: {} active + K idle pairs, µs per wait (slope per 1k idle as % of base)",
                bench_idle::ACTIVE
            ),
            "idle descriptors K",
            "µs per wait",
            &series,
            (0.0, max_idle),
            0.0,
        )?);
        targets.extend(r.targets());
    }
    if let Some(r) = &churn_r {
        files.push(r.write_csv()?);
        files.push(bench_plot::bars(
            &dir.join("churn.svg"),
            &format!(
                "churn: {} connections, {} in flight: requests served per second (median)",
                bench_churn::CONNS,
                bench_churn::IN_FLIGHT
            ),
            "requests per second",
            &r.bars(),
        )?);
        targets.extend(r.targets());
    }

    let unavailable = unavailable_json(&roster, chain_r.as_ref(), idle_r.as_ref());
    if o.json {
        let j = Json::obj([
            (
                "chain",
                chain_r
                    .as_ref()
                    .map_or(Json::Arr(vec![]), ChainReport::to_json),
            ),
            (
                "churn",
                churn_r
                    .as_ref()
                    .map_or(Json::Arr(vec![]), ChurnReport::to_json),
            ),
            (
                "idle",
                idle_r
                    .as_ref()
                    .map_or(Json::Arr(vec![]), IdleReport::to_json),
            ),
            ("unavailable", unavailable),
            (
                "targets",
                Json::Arr(targets.iter().map(Target::to_json).collect()),
            ),
            ("quick", Json::Bool(o.quick)),
            ("machine", Json::Str(bench_mux::machine())),
            ("seconds", bench_mux::round_to(elapsed.as_secs_f64(), 1)),
        ]);
        println!("{}", j.render());
    } else {
        println!(
            "evmux bench {which}{} on {}; release build: {}",
            if o.quick { " --quick" } else { "" },
            bench_mux::machine(),
            !cfg!(debug_assertions)
        );
        println!();
        if let Some(r) = &chain_r {
            r.print();
        }
        if let Some(r) = &idle_r {
            r.print();
        }
        if let Some(r) = &churn_r {
            r.print();
        }
        for (name, why) in &roster.unavailable {
            println!("{name}: not available ({why})");
        }
        if !targets.is_empty() {
            println!("\ntargets (issue #5):");
            for t in &targets {
                println!("{}", t.line());
            }
        }
        println!("\nwrote:");
        for f in &files {
            println!("  {}", f.display());
        }
        println!("\ntook {:.0} s", elapsed.as_secs_f64());
    }
    eprintln!("bench {which}: {:.0} s", elapsed.as_secs_f64());
    Ok(true)
}

fn unavailable_json(
    roster: &Roster,
    chain: Option<&ChainReport>,
    idle: Option<&IdleReport>,
) -> Json {
    let mut v = Vec::new();
    for (name, why) in &roster.unavailable {
        v.push(Json::obj([
            ("bench", Json::Str("all".into())),
            ("subject", Json::Str((*name).into())),
            ("reason", Json::Str(why.clone())),
        ]));
    }
    if let Some(c) = chain {
        for (name, n, why) in &c.unavailable {
            v.push(Json::obj([
                ("bench", Json::Str("chain".into())),
                ("subject", Json::Str((*name).into())),
                ("n", Json::Int(*n as i64)),
                ("reason", Json::Str(why.clone())),
            ]));
        }
    }
    if let Some(i) = idle {
        for (name, k, why) in &i.unavailable {
            v.push(Json::obj([
                ("bench", Json::Str("idle".into())),
                ("subject", Json::Str((*name).into())),
                ("idle", Json::Int(*k as i64)),
                ("reason", Json::Str(why.clone())),
            ]));
        }
    }
    Json::Arr(v)
}

/// `bench __churn-count ID N` (run under strace by `churn`).
pub fn churn_count(args: &[String]) -> Result<()> {
    let [id, n] = args else {
        bail!("usage: bench __churn-count SUBJECT/MODE REQUESTS");
    };
    let n: u64 = n.parse()?;
    evmux_sys::signal::ignore_sigpipe()?;
    let nofile = bench_mux::raise_nofile()?;
    let roster = Roster::probe();
    bench_churn::count_cmd(id, n, &roster, nofile)
}

/// `bench __chain-one SUBJECT N ATR ROUNDS` (run under callgrind by
/// `bench instr`).
pub fn chain_one(args: &[String]) -> Result<()> {
    bench_mux::disable_cpu_clock();
    evmux_sys::signal::ignore_sigpipe()?;
    let nofile = bench_mux::raise_nofile()?;
    let roster = Roster::probe();
    bench_chain::one_cmd(args, &roster, nofile)
}

/// `bench instr [--quick] [--json]`.
pub fn instr(quick: bool, json: bool) -> Result<()> {
    let roster = Roster::probe();
    crate::bench_instr::run(quick, json, &roster)
}
