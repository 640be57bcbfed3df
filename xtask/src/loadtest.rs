//! `cargo xtask loadtest [--backend NAME] [--quick] [--json] [--rounds N]`:
//! the example HTTP server (`net/examples/http_server.rs`) under httperf and
//! wrk, on every Linux backend, against a mio server with the same logic
//! (`mio_http`), measured in the same run.
//!
//! Method:
//!
//! - every server is a child process on 127.0.0.1 (port 0, the address read
//!   from its `listening on` line), one thread, idle timeout 60 s (so that
//!   the idle connections outlive a run); all of them are started first and
//!   killed at the end (or when this process returns early);
//! - the servers: the example on each backend in edge mode (its default;
//!   it stops reading at a short read, which `evmux_net::TcpStream::read`
//!   re-arms: one `recv` per request), and two mio baselines (`mio_http`):
//!   `mio`, which reads until `WouldBlock` as mio's docs require of an
//!   edge-triggered source (one more `recv` per request, answered
//!   `EAGAIN`), and `mio-short-read`, which stops at a short read as tokio
//!   does on Unix, relying on epoll behaviour that mio does not promise
//!   (tokio-rs/mio#1611): the same syscalls as the evmux server. The
//!   acceptance ratio is against `mio`; the other is printed beside it;
//! - with two CPUs or more (and `taskset`), the servers are pinned to the
//!   last CPU and httperf and wrk to the others, so that a server is not
//!   preempted by the client thread it just woke (`--no-pin`: not);
//! - **httperf**, a fixed-rate sweep as in seed 001: `--rate R` new
//!   connections per second, `--num-calls 5` keep-alive requests on each,
//!   `--num-conns R × T`, `--timeout 5`; the rates are interleaved (one rate
//!   on every server, then the next). Reply rate = replies / test duration;
//!   errors = httperf's error total + non-2xx replies; p50 and p99 are of
//!   the connection lifetime (connect + 5 requests), from httperf's 1 ms
//!   histogram (httperf reports no per-request percentiles);
//! - **wrk**, fixed durations: `wrk -t2 -cN -dT --timeout 2s --latency` at
//!   100 and 1000 connections, and at 100 connections beside 5000 idle
//!   keep-alive connections, which this process opens (each served one
//!   request first), holds during the run and checks afterwards (still
//!   open, not closed by the server). Errors = socket errors + non-2xx.
//!   Rounds: every round runs each configuration on every server in turn,
//!   in an order rotated by one per round (so the two runs a ratio pairs
//!   are seconds apart); reported figures are medians over rounds (errors
//!   are summed);
//!   then extra rounds run evmux-epoll, mio and mio-short-read (at 100 and
//!   at 1000 connections), in an order that changes every round, for the
//!   ratios;
//! - **comparisons** (evmux-epoll / each mio baseline; with / without the idle
//!   connections) pair the two runs of each round (seconds apart, so both
//!   saw about the same background load) and report the median of the
//!   per-round ratios, beside the medians of each side; each run also
//!   records the server's CPU time (`/proc/PID/task/*/schedstat`), so that
//!   requests per server CPU-second, which depends much less on the share
//!   of the CPUs the server was given, is reported too;
//! - select cannot watch descriptors ≥ `FD_SETSIZE` (1024): its 1000- and
//!   5000-connection runs are not run (n/a, with the reason).
//!
//! Every run is bounded in count (connections, requests) and in time (a
//! deadline per tool run, then the tool is killed).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::json::Json;

/// The Linux backends of the example server, in report order.
pub const LINUX_BACKENDS: &[&str] = &["epoll", "poll", "select", "uring", "superpoll"];

/// Idle connections held open during the idle test.
const IDLE: usize = 5000;
/// The wrk connection counts.
const WRK_CONNS: [u32; 2] = [100, 1000];
/// The connection count of the idle test and the ratio.
const ACTIVE: u32 = 100;
/// Requests per httperf connection.
const CALLS: u32 = 5;
/// The servers' idle timeout: longer than any run.
const SERVER_IDLE_MS: u64 = 60_000;
/// select's limit.
const FD_SETSIZE: u32 = 1024;
/// The pause between two runs (closes settle).
const PAUSE: Duration = Duration::from_millis(300);

/// Options of `cargo xtask loadtest`.
#[derive(Debug, Clone)]
pub struct LoadtestOpts {
    /// Only this evmux backend (mio is always measured).
    pub backend: Option<String>,
    /// The reduced run.
    pub quick: bool,
    /// Print JSON on stdout.
    pub json: bool,
    /// wrk rounds (default 5, `--quick` 1).
    pub rounds: Option<usize>,
    /// Do not pin the servers and the load generators to separate CPUs.
    pub no_pin: bool,
}

/// CPU pinning: the server on one CPU, the load generators on the others
/// (with `taskset`), so that the server is not preempted by the client it
/// just woke (on a small machine that interplay dominates the variance).
#[derive(Debug, Clone)]
struct Pin {
    /// `taskset -c` list for the servers.
    server: String,
    /// `taskset -c` list for httperf and wrk.
    load: String,
}

impl Pin {
    /// The CPUs this process may use (`Cpus_allowed_list`), split into the
    /// last one (servers) and the rest (load), if there are two or more
    /// and `taskset` is installed.
    fn detect() -> Option<Pin> {
        find_in_path("taskset")?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
            .trim();
        let mut cpus = Vec::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((a, b)) => cpus.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
                None => cpus.push(part.parse::<u32>().ok()?),
            }
        }
        let (last, rest) = cpus.split_last()?;
        if rest.is_empty() {
            return None;
        }
        Some(Pin {
            server: last.to_string(),
            load: rest
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        })
    }

    /// `program` under `taskset -c cpus` (or as is without pinning).
    fn command(pin: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match pin {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

/// What is run.
#[derive(Debug, Clone)]
struct Plan {
    rates: Vec<u32>,
    httperf_secs: u32,
    wrk_secs: u32,
    rounds: usize,
    /// Extra evmux-epoll/mio alternations at 100 and 1000 connections.
    ratio_rounds: usize,
}

impl Plan {
    fn new(quick: bool, rounds: Option<usize>) -> Plan {
        if quick {
            Plan {
                rates: vec![500, 2000],
                httperf_secs: 2,
                wrk_secs: 3,
                rounds: rounds.unwrap_or(1),
                ratio_rounds: 2,
            }
        } else {
            Plan {
                rates: vec![500, 1000, 2000, 4000],
                httperf_secs: 4,
                wrk_secs: 10,
                rounds: rounds.unwrap_or(5),
                ratio_rounds: 4,
            }
        }
    }
}

/// A server under test.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `evmux`, `mio` or `mio-short-read`.
    server: &'static str,
    /// The evmux backend; `epoll` for mio (what mio uses on Linux).
    backend: String,
}

impl Target {
    fn label(&self) -> String {
        if self.is_mio() {
            self.server.to_string()
        } else {
            format!("evmux-{}", self.backend)
        }
    }

    /// One of the mio baselines.
    fn is_mio(&self) -> bool {
        self.server.starts_with("mio")
    }

    fn is_select(&self) -> bool {
        self.server == "evmux" && self.backend == "select"
    }
}

/// The tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tool {
    Httperf,
    Wrk,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Httperf => "httperf",
            Tool::Wrk => "wrk",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    round: usize,
    requests_per_s: f64,
    requests: u64,
    errors: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    duration_s: f64,
    /// httperf: mean reply time (ms).
    reply_ms: Option<f64>,
    /// httperf: the most concurrent connections.
    concurrent: Option<u64>,
    /// httperf: errors of the client itself (`fd-unavail`: httperf cannot
    /// open more than `FD_SETSIZE` descriptors; `addrunavail`, `ftab-full`),
    /// included in `errors`.
    client_errors: Option<u64>,
    /// Idle test: idle connections still open after the run.
    idle_alive: Option<usize>,
    /// CPU time the server process used during the run (all threads,
    /// from `/proc/PID/task/*/schedstat`).
    server_cpu_s: Option<f64>,
}

impl Sample {
    /// Requests answered per second of server CPU time: what the server
    /// needs per request, whatever share of the CPUs it was given.
    fn requests_per_cpu_s(&self) -> Option<f64> {
        self.server_cpu_s
            .filter(|&c| c > 0.0)
            .map(|c| self.requests as f64 / c)
    }

    /// The server's CPU time over the run's duration, in percent of one
    /// CPU: well below 100 for a one-thread server, the load generator
    /// (not the server) set the pace, and requests/s say more about it
    /// than about the server.
    fn server_busy_pct(&self) -> Option<f64> {
        self.server_cpu_s
            .filter(|_| self.duration_s > 0.0)
            .map(|c| 100.0 * c / self.duration_s)
    }
}

/// What identifies a row of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    target: usize,
    tool: Tool,
    /// wrk: concurrent connections; httperf: connections opened.
    connections: u32,
    idle: u32,
    /// httperf: new connections per second.
    rate: u32,
}

/// A run that was not made, and why.
#[derive(Debug, Clone)]
struct NotRun {
    key: Key,
    reason: String,
}

/// Everything measured.
#[derive(Debug, Default)]
struct Results {
    rows: BTreeMap<Key, Vec<Sample>>,
    not_run: Vec<NotRun>,
    /// Servers that failed (crashed, or did not start where they should).
    problems: Vec<String>,
}

impl Results {
    fn add(&mut self, key: Key, s: Sample) {
        self.rows.entry(key).or_default().push(s);
    }

    fn skip(&mut self, key: Key, reason: impl Into<String>) {
        if !self.not_run.iter().any(|n| n.key == key) {
            self.not_run.push(NotRun {
                key,
                reason: reason.into(),
            });
        }
    }
}

/// `cargo xtask loadtest …`.
pub fn run(opts: &LoadtestOpts) -> Result<ExitCode> {
    let missing: Vec<&str> = ["httperf", "wrk"]
        .into_iter()
        .filter(|t| find_in_path(t).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "loadtest needs httperf and wrk; missing: {}.\n\
             Install them with your package manager, e.g. on Debian or Ubuntu:\n\
             \n    sudo apt-get install -y httperf wrk\n\n\
             (Fedora: `sudo dnf install httperf wrk`; macOS: `brew install httperf wrk`.)",
            missing.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    let backends: Vec<&str> = match &opts.backend {
        None => LINUX_BACKENDS.to_vec(),
        Some(b) if LINUX_BACKENDS.contains(&b.as_str()) => vec![b.as_str()],
        Some(b) => bail!(
            "unknown backend `{b}`; valid names: {}",
            LINUX_BACKENDS.join(", ")
        ),
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build of xtask; the mio baseline is slowed (use `cargo xtask`)");
    }
    let plan = Plan::new(opts.quick, opts.rounds);
    let pin = if opts.no_pin { None } else { Pin::detect() };
    let nofile = raise_nofile()?;
    let example = build_example()?;
    let started = Instant::now();
    let log = |msg: &str| eprintln!("[{:>4}s] {msg}", started.elapsed().as_secs());

    // evmux-epoll first, then mio beside it, then the rest.
    let mut targets: Vec<Target> = Vec::new();
    for b in &backends {
        targets.push(Target {
            server: "evmux",
            backend: (*b).to_string(),
        });
        if *b == "epoll" {
            targets.extend(mio_targets());
        }
    }
    if !backends.contains(&"epoll") {
        targets.extend(mio_targets());
    }

    let mut results = Results::default();
    let mut servers: Vec<Option<ServerProc>> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        match ServerProc::start(t, &example, pin.as_ref().map(|p| p.server.as_str())) {
            Ok(s) => {
                log(&format!("{} listening on {}", t.label(), s.addr));
                servers.push(Some(s));
            }
            Err(e) => {
                log(&format!("{}: could not start: {e:#}", t.label()));
                servers.push(None);
                // io_uring may be missing or forbidden (old kernels,
                // seccomp): that backend is then reported as not measured.
                if !(t.server == "evmux" && t.backend == "uring") {
                    results
                        .problems
                        .push(format!("{} did not start: {e:#}", t.label()));
                }
                let key = Key {
                    target: i,
                    tool: Tool::Wrk,
                    connections: 0,
                    idle: 0,
                    rate: 0,
                };
                results.skip(key, format!("server did not start: {e:#}"));
            }
        }
    }

    match &pin {
        Some(p) => log(&format!(
            "servers pinned to CPU {}, httperf and wrk to CPU {}",
            p.server, p.load
        )),
        None => log("no CPU pinning"),
    }
    let ctx = Ctx {
        load_cpus: pin.as_ref().map(|p| p.load.as_str()),
        plan: &plan,
        targets: &targets,
        nofile,
        log: &log,
    };
    // httperf: one rate on every server, then the next.
    for (ri, &rate) in plan.rates.iter().enumerate() {
        for i in rotated(targets.len(), ri) {
            ctx.httperf(&mut servers, i, rate, &mut results);
        }
    }
    // wrk rounds: each configuration on every server in turn, so that the
    // runs a ratio pairs are seconds apart.
    for round in 0..plan.rounds {
        for (conns, idle) in [(ACTIVE, 0), (ACTIVE, IDLE), (WRK_CONNS[1], 0)] {
            for i in rotated(targets.len(), round) {
                ctx.wrk(&mut servers, i, round, conns, idle, &mut results);
            }
        }
    }
    // Extra alternations for the ratio.
    let epoll = targets
        .iter()
        .position(|t| t.server == "evmux" && t.backend == "epoll");
    let mio = targets.iter().position(|t| t.server == "mio");
    let short = targets.iter().position(|t| t.server == "mio-short-read");
    if let (Some(e), Some(m), Some(s)) = (epoll, mio, short) {
        // Each of the three first, in the middle and last in turn, and
        // evmux-epoll after mio as often as before it.
        const ORDERS: [[usize; 3]; 6] = [
            [1, 0, 2],
            [0, 2, 1],
            [2, 1, 0],
            [0, 1, 2],
            [1, 2, 0],
            [2, 0, 1],
        ];
        let who = [e, m, s];
        for k in 0..plan.ratio_rounds {
            let round = plan.rounds + k;
            for &conns in &WRK_CONNS {
                for j in ORDERS[k % ORDERS.len()] {
                    ctx.wrk(&mut servers, who[j], round, conns, 0, &mut results);
                }
            }
        }
    }
    for (i, s) in servers.iter_mut().enumerate() {
        if let Some(s) = s.as_mut() {
            if let Some(why) = s.exited() {
                results
                    .problems
                    .push(format!("{}: {why}", targets[i].label()));
            }
            s.stop();
        }
    }
    log("done");

    let report = Report::new(&targets, &results, &plan, opts.quick, pin.clone());
    if opts.json {
        // The table goes to stderr with the progress lines: a long run
        // need not be repeated to read it.
        eprint!("{}", report.text());
        println!("{}", report.to_json().render());
    } else {
        print!("{}", report.text());
    }
    // Errors at the low rate and servers that died are failures; the
    // performance criteria are reported, not enforced (they depend on the
    // machine and its load).
    Ok(if report.low_rate_ok() && results.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The mio baselines: mio as its docs ask (reading until `WouldBlock`),
/// and with tokio's short-read rule (`mio_http::MioConfig::short_read`).
fn mio_targets() -> [Target; 2] {
    ["mio", "mio-short-read"].map(|server| Target {
        server,
        backend: "epoll".to_string(),
    })
}

/// `0..n` starting at `k % n`.
fn rotated(n: usize, k: usize) -> Vec<usize> {
    (0..n).map(|i| (i + k) % n.max(1)).collect()
}

/// The run's fixed context.
struct Ctx<'a> {
    /// `taskset -c` list for the load generators.
    load_cpus: Option<&'a str>,
    plan: &'a Plan,
    targets: &'a [Target],
    nofile: u64,
    log: &'a dyn Fn(&str),
}

impl Ctx<'_> {
    /// Checks the server is up; records why not.
    fn alive<'s>(
        &self,
        servers: &'s mut [Option<ServerProc>],
        i: usize,
        key: Key,
        results: &mut Results,
    ) -> Option<&'s mut ServerProc> {
        match servers[i].as_mut() {
            None => {
                results.skip(key, "server not running");
                None
            }
            Some(s) => match s.exited() {
                Some(why) => {
                    (self.log)(&format!("{}: {why}", self.targets[i].label()));
                    results
                        .problems
                        .push(format!("{}: {why}", self.targets[i].label()));
                    results.skip(key, why);
                    servers[i] = None;
                    None
                }
                None => servers[i].as_mut(),
            },
        }
    }

    fn httperf(
        &self,
        servers: &mut [Option<ServerProc>],
        i: usize,
        rate: u32,
        results: &mut Results,
    ) {
        let num_conns = rate * self.plan.httperf_secs;
        let key = Key {
            target: i,
            tool: Tool::Httperf,
            connections: num_conns,
            idle: 0,
            rate,
        };
        let Some(srv) = self.alive(servers, i, key, results) else {
            return;
        };
        let addr = srv.addr;
        let cpu0 = srv.cpu_time();
        let label = self.targets[i].label();
        let res = run_httperf(
            self.load_cpus,
            addr,
            rate,
            num_conns,
            self.plan.httperf_secs,
        );
        let cpu = cpu_delta(cpu0, srv.cpu_time());
        match res {
            Ok(mut s) => {
                s.server_cpu_s = cpu;
                (self.log)(&format!(
                    "httperf {label:<16} rate {rate:>5}/s: {:>9.1} replies/s, {} errors, p50 {} p99 {}",
                    s.requests_per_s,
                    s.errors,
                    ms(s.p50_ms),
                    ms(s.p99_ms)
                ));
                results.add(key, s);
            }
            Err(e) => {
                (self.log)(&format!("httperf {label} rate {rate}: {e:#}"));
                results.skip(key, format!("httperf failed: {e:#}"));
            }
        }
        thread::sleep(PAUSE);
    }

    fn wrk(
        &self,
        servers: &mut [Option<ServerProc>],
        i: usize,
        round: usize,
        conns: u32,
        idle: usize,
        results: &mut Results,
    ) {
        let key = Key {
            target: i,
            tool: Tool::Wrk,
            connections: conns,
            idle: idle as u32,
            rate: 0,
        };
        let target = &self.targets[i];
        if target.is_select() && (conns >= FD_SETSIZE || idle > 0) {
            results.skip(
                key,
                format!(
                    "select cannot watch descriptors >= FD_SETSIZE ({FD_SETSIZE}): \
                     {} connections need numbers above it, which the server refuses \
                     (it closes those connections)",
                    conns as usize + idle
                ),
            );
            return;
        }
        if idle > 0 && self.nofile < (2 * idle + 512) as u64 {
            results.skip(
                key,
                format!(
                    "RLIMIT_NOFILE is {}: too low to hold {idle} idle connections",
                    self.nofile
                ),
            );
            return;
        }
        let Some(srv) = self.alive(servers, i, key, results) else {
            return;
        };
        let addr = srv.addr;
        let label = target.label();
        let held = if idle > 0 {
            match open_idle(addr, idle) {
                Ok(h) => Some(h),
                Err(e) => {
                    (self.log)(&format!("{label}: opening {idle} idle connections: {e:#}"));
                    results.skip(key, format!("opening the idle connections failed: {e:#}"));
                    return;
                }
            }
        } else {
            None
        };
        let cpu0 = srv.cpu_time();
        let res = run_wrk(self.load_cpus, addr, conns, self.plan.wrk_secs);
        let cpu = cpu_delta(cpu0, srv.cpu_time());
        match res {
            Ok(mut s) => {
                s.round = round;
                s.server_cpu_s = cpu;
                if let Some(h) = &held {
                    s.idle_alive = Some(count_alive(h));
                }
                (self.log)(&format!(
                    "wrk     {label:<16} c{conns:<4} idle {idle:>4} round {round}: {:>9.1} req/s, {} errors, p50 {} p99 {}, {} req/CPU-s{}",
                    s.requests_per_s,
                    s.errors,
                    ms(s.p50_ms),
                    ms(s.p99_ms),
                    s.requests_per_cpu_s()
                        .map_or("-".into(), |x| format!("{x:.0}")),
                    s.idle_alive
                        .map(|a| format!(", {a}/{idle} idle still open"))
                        .unwrap_or_default()
                ));
                results.add(key, s);
            }
            Err(e) => {
                (self.log)(&format!("wrk {label} c{conns}: {e:#}"));
                results.skip(key, format!("wrk failed: {e:#}"));
            }
        }
        drop(held);
        thread::sleep(PAUSE);
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.2}ms"),
        Some(v) => format!("{v:.1}ms"),
        None => "-".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Processes.

/// `name` in `PATH`, if it is there and executable.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft
/// limit now in force (children inherit it).
fn raise_nofile() -> Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        )
        .context("raising RLIMIT_NOFILE to the hard limit")?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// Builds the example server in release mode; returns its path.
fn build_example() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!(
        "building the example server (cargo build --release -p evmux-net --example http_server) …"
    );
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "evmux-net",
            "--example",
            "http_server",
        ])
        .current_dir(&root)
        .stdout(Stdio::null())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the example server failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"));
    let exe = target.join("release/examples/http_server");
    if !exe.is_file() {
        bail!("{} was not built", exe.display());
    }
    Ok(exe)
}

/// A server child process, killed when dropped.
#[derive(Debug)]
struct ServerProc {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl ServerProc {
    fn start(t: &Target, example: &Path, cpus: Option<&str>) -> Result<ServerProc> {
        let idle = SERVER_IDLE_MS.to_string();
        let mut cmd = if t.is_mio() {
            // This very binary, even if a build replaced the file since
            // it started (the target directory may be shared).
            let me = Path::new("/proc/self/exe");
            let exe = if me.exists() {
                me.to_path_buf()
            } else {
                std::env::current_exe().context("the xtask binary")?
            };
            // (Pinned once it is up: under a `taskset` wrapper,
            // `/proc/self/exe` would be taskset.)
            let mut c = Command::new(exe);
            c.args(["__mio-http-server", "--idle-timeout-ms", &idle]);
            if t.server == "mio-short-read" {
                c.args(["--short-read", "on"]);
            }
            c
        } else {
            let mut c = Pin::command(cpus, example);
            c.args([
                "--backend",
                &t.backend,
                "--mode",
                "edge",
                "--threads",
                "1",
                "--idle-timeout-ms",
                &idle,
            ]);
            c
        };
        cmd.args(["--addr", "127.0.0.1", "--port", "0"])
            .env_remove("EVMUX_BACKEND")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning the server")?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let err_text = Arc::new(Mutex::new(String::new()));
        let sink = err_text.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                if s.len() < 4096 {
                    s.push_str(&line);
                }
                line.clear();
            }
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let mut proc = ServerProc {
            child,
            addr: "127.0.0.1:0".parse().expect("an address"),
            stderr: err_text,
        };
        let first = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                thread::sleep(Duration::from_millis(100));
                let why = proc
                    .exited()
                    .unwrap_or_else(|| "no `listening on` line".into());
                bail!("{why}");
            }
        };
        proc.addr =
            parse_listening(&first).with_context(|| format!("unexpected first line {first:?}"))?;
        if let (Some(cpus), true) = (cpus, t.is_mio()) {
            // One thread: pinning it now pins the whole server.
            let status = Command::new("taskset")
                .args(["-p", "-c", cpus, &proc.child.id().to_string()])
                .stdout(Stdio::null())
                .status()
                .context("taskset -p")?;
            if !status.success() {
                bail!("taskset -p -c {cpus} failed ({status})");
            }
        }
        Ok(proc)
    }

    /// `Some(why)` if the process has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => {
                let err = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
                Some(format!("server exited ({status}): {}", err.trim()))
            }
            Err(e) => Some(format!("server state unknown: {e}")),
        }
    }

    /// CPU time used so far by every thread of the process.
    fn cpu_time(&self) -> Option<Duration> {
        let dir = format!("/proc/{}/task", self.child.id());
        let mut total = 0u64;
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path().join("schedstat");
            let text = std::fs::read_to_string(path).ok()?;
            total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(Duration::from_nanos(total))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cpu_delta(before: Option<Duration>, after: Option<Duration>) -> Option<f64> {
    Some(after?.checked_sub(before?)?.as_secs_f64())
}

/// The address in `listening on http://ADDR/ …`.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.split("http://").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

/// Runs `cmd`, killing it after `limit`; returns (success, stdout,
/// stderr).
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<(bool, String, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    match status {
        None => bail!("killed after {limit:?} (time bound)"),
        Some(st) => Ok((st.success(), out, err)),
    }
}

// ---------------------------------------------------------------------------
// The tools.

fn run_httperf(
    cpus: Option<&str>,
    addr: SocketAddr,
    rate: u32,
    num_conns: u32,
    secs: u32,
) -> Result<Sample> {
    let mut cmd = Pin::command(cpus, "httperf");
    // No `--hog`: with it httperf binds every local port itself, which
    // TIME_WAIT sockets of earlier runs block, and it spins looking for a
    // free one; the kernel's own choice reuses them on loopback.
    cmd.args([
        "-v",
        "-v",
        "--server",
        &addr.ip().to_string(),
        "--port",
        &addr.port().to_string(),
        "--uri",
        "/",
        "--rate",
        &rate.to_string(),
        "--num-conns",
        &num_conns.to_string(),
        "--num-calls",
        &CALLS.to_string(),
        "--timeout",
        "5",
    ]);
    let (ok, out, err) = run_bounded(&mut cmd, Duration::from_secs(u64::from(secs) + 30))?;
    if !ok {
        bail!("httperf failed: {}", err.trim());
    }
    parse_httperf(&out).with_context(|| format!("parsing httperf output:\n{out}"))
}

fn run_wrk(cpus: Option<&str>, addr: SocketAddr, conns: u32, secs: u32) -> Result<Sample> {
    let mut cmd = Pin::command(cpus, "wrk");
    cmd.args([
        "-t2",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--timeout",
        "2s",
        "--latency",
        &format!("http://{addr}/"),
    ]);
    let (ok, out, err) = run_bounded(&mut cmd, Duration::from_secs(u64::from(secs) + 20))?;
    if !ok {
        bail!("wrk failed: {}", err.trim());
    }
    parse_wrk(&out).with_context(|| format!("parsing wrk output:\n{out}"))
}

/// The numbers after `label` in `line`, e.g. `Errors: total 3` → 3.
fn field(line: &str, label: &str) -> Option<f64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace()
        .next()?
        .trim_end_matches([',', 's'])
        .parse()
        .ok()
}

fn parse_httperf(out: &str) -> Result<Sample> {
    let mut s = Sample::default();
    let mut replies = None;
    let mut errors = None;
    let mut non2xx = 0u64;
    let mut hist: Vec<(f64, u64)> = Vec::new();
    let mut in_hist = false;
    let mut median = None;
    for line in out.lines() {
        if line.starts_with("Connection lifetime histogram") {
            in_hist = true;
            continue;
        }
        if in_hist {
            let t = line.trim();
            if t.is_empty() {
                in_hist = false;
            } else if t != ":" {
                let mut it = t.split_whitespace();
                if let (Some(b), Some(n)) = (it.next(), it.next())
                    && let (Ok(b), Ok(n)) = (b.parse::<f64>(), n.parse::<u64>())
                {
                    hist.push((b, n));
                }
            }
            continue;
        }
        if line.starts_with("Total: connections") {
            let r = field(line, "replies").context("replies")?;
            // Counted as requests: the requests answered.
            s.requests = r as u64;
            replies = Some(r);
            s.duration_s = field(line, "test-duration").context("test-duration")?;
        } else if line.starts_with("Errors: total") {
            errors = Some(field(line, "total").context("errors")? as u64);
        } else if line.starts_with("Errors: fd-unavail") {
            s.client_errors = Some(
                ["fd-unavail", "addrunavail", "ftab-full"]
                    .iter()
                    .map(|l| field(line, l).unwrap_or(0.0) as u64)
                    .sum(),
            );
        } else if line.starts_with("Reply status:") {
            for class in ["1xx=", "3xx=", "4xx=", "5xx="] {
                non2xx += field(line, class).unwrap_or(0.0) as u64;
            }
        } else if line.starts_with("Reply time [ms]:") {
            s.reply_ms = field(line, "response");
        } else if line.starts_with("Connection time [ms]: min") {
            median = field(line, "median");
        } else if line.starts_with("Connection rate:") {
            s.concurrent = line
                .split("<=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok());
        }
    }
    let replies = replies.context("no `Total:` line")?;
    s.errors = errors.context("no `Errors: total` line")? + non2xx;
    if s.duration_s > 0.0 {
        s.requests_per_s = replies / s.duration_s;
    }
    s.p50_ms = percentile_hist(&hist, 0.50).or(median);
    s.p99_ms = percentile_hist(&hist, 0.99);
    Ok(s)
}

/// The bin (its centre, as httperf prints it) holding quantile `q`.
fn percentile_hist(hist: &[(f64, u64)], q: f64) -> Option<f64> {
    let total: u64 = hist.iter().map(|h| h.1).sum();
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil().max(1.0) as u64;
    let mut acc = 0;
    for &(b, n) in hist {
        acc += n;
        if acc >= want {
            return Some(b);
        }
    }
    hist.last().map(|h| h.0)
}

/// `693.00us`, `2.60ms`, `1.02s`, `1.50m` → ms.
fn wrk_time_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * scale)
}

fn parse_wrk(out: &str) -> Result<Sample> {
    let mut s = Sample::default();
    let mut rps = None;
    let mut in_dist = false;
    for line in out.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        }
        if in_dist {
            if let Some(v) = t.strip_prefix("50%") {
                s.p50_ms = wrk_time_ms(v.trim());
                continue;
            }
            if let Some(v) = t.strip_prefix("99%") {
                s.p99_ms = wrk_time_ms(v.trim());
                continue;
            }
            if t.starts_with("75%") || t.starts_with("90%") {
                continue;
            }
            in_dist = false;
        }
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if t.starts_with("Socket errors:") {
            for label in ["connect", "read", "write", "timeout"] {
                s.errors += field(t, label).unwrap_or(0.0) as u64;
            }
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            s.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if t.contains(" requests in ") {
            s.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            s.duration_s = t
                .split(" requests in ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(wrk_time_ms)
                .map_or(0.0, |ms| ms / 1e3);
        }
    }
    s.requests_per_s = rps.context("no `Requests/sec:` line")?;
    Ok(s)
}

// ---------------------------------------------------------------------------
// Idle connections.

const IDLE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Opens `n` keep-alive connections to `addr`, each served one request
/// (so each is a real keep-alive connection between requests), in batches.
fn open_idle(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch = (n - all.len()).min(256);
        let mut b = Vec::with_capacity(batch);
        for _ in 0..batch {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connect #{}", all.len() + b.len()))?;
            let _ = s.set_nodelay(true);
            b.push(s);
        }
        for s in &mut b {
            s.write_all(IDLE_REQUEST).context("sending a request")?;
        }
        for s in &mut b {
            read_response(s)?;
        }
        all.extend(b);
    }
    Ok(all)
}

/// Reads one `200` response.
fn read_response(s: &mut TcpStream) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            if !head.starts_with("HTTP/1.1 200") {
                bail!("unexpected response {head:?}");
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(());
            }
        }
        let n = s.read(&mut chunk).context("reading a response")?;
        if n == 0 {
            bail!("connection closed before the response");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How many of `conns` the server has not closed.
fn count_alive(conns: &[TcpStream]) -> usize {
    let mut buf = [0u8; 64];
    conns
        .iter()
        .filter(|s| {
            if s.set_nonblocking(true).is_err() {
                return false;
            }
            match (&mut &**s).read(&mut buf) {
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                Ok(0) => false,
                Ok(_) => true,
            }
        })
        .count()
}

// ---------------------------------------------------------------------------
// The report.

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A row: medians over its samples.
#[derive(Debug, Clone)]
struct Row {
    key: Key,
    requests_per_s: f64,
    errors: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    requests_per_cpu_s: Option<f64>,
    /// Median [`Sample::server_busy_pct`].
    server_busy_pct: Option<f64>,
    samples: Vec<Sample>,
}

impl Row {
    fn new(key: Key, samples: &[Sample]) -> Row {
        let pick = |f: &dyn Fn(&Sample) -> Option<f64>| {
            let mut v: Vec<f64> = samples.iter().filter_map(f).collect();
            median(&mut v)
        };
        Row {
            key,
            requests_per_s: pick(&|s| Some(s.requests_per_s)).unwrap_or(0.0),
            errors: samples.iter().map(|s| s.errors).sum(),
            p50_ms: pick(&|s| s.p50_ms),
            p99_ms: pick(&|s| s.p99_ms),
            requests_per_cpu_s: pick(&|s| s.requests_per_cpu_s()),
            server_busy_pct: pick(&|s| s.server_busy_pct()),
            samples: samples.to_vec(),
        }
    }
}

/// A derived comparison of two rows, `a / b`, over the rounds in which
/// both were measured (each pair a few seconds apart, so that both saw
/// about the same background load).
#[derive(Debug, Clone)]
struct Compare {
    target: usize,
    connections: u32,
    /// Median requests/s of `a` over the paired rounds.
    a: f64,
    /// Median requests/s of `b` over the paired rounds.
    b: f64,
    /// Per paired round: `a / b` of requests/s.
    per_round: Vec<f64>,
    /// Per paired round: `a / b` of requests per server CPU-second.
    per_round_cpu: Vec<f64>,
}

impl Compare {
    fn new(target: usize, connections: u32, a: &Row, b: &Row) -> Option<Compare> {
        let pairs: Vec<(&Sample, &Sample)> = a
            .samples
            .iter()
            .filter_map(|x| {
                b.samples
                    .iter()
                    .find(|y| y.round == x.round)
                    .map(|y| (x, y))
            })
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let mut av: Vec<f64> = pairs.iter().map(|p| p.0.requests_per_s).collect();
        let mut bv: Vec<f64> = pairs.iter().map(|p| p.1.requests_per_s).collect();
        Some(Compare {
            target,
            connections,
            a: median(&mut av)?,
            b: median(&mut bv)?,
            per_round: pairs
                .iter()
                .map(|(x, y)| x.requests_per_s / y.requests_per_s)
                .collect(),
            per_round_cpu: pairs
                .iter()
                .filter_map(|(x, y)| Some(x.requests_per_cpu_s()? / y.requests_per_cpu_s()?))
                .collect(),
        })
    }

    /// The median of the per-round ratios (the headline figure).
    fn ratio(&self) -> f64 {
        median(&mut self.per_round.clone()).unwrap_or(f64::NAN)
    }

    /// The median of the per-round ratios of requests per CPU-second.
    fn cpu_ratio(&self) -> Option<f64> {
        median(&mut self.per_round_cpu.clone())
    }
}

struct Report<'a> {
    targets: &'a [Target],
    plan: &'a Plan,
    quick: bool,
    pin: Option<Pin>,
    rows: Vec<Row>,
    not_run: Vec<NotRun>,
    problems: Vec<String>,
    /// evmux-epoll / mio at 100 and 1000 connections.
    ratios: Vec<Compare>,
    /// evmux-epoll / mio-short-read at 100 and 1000 connections.
    short_ratios: Vec<Compare>,
    /// with idle / without, per target.
    idle: Vec<Compare>,
}

impl<'a> Report<'a> {
    fn new(
        targets: &'a [Target],
        results: &Results,
        plan: &'a Plan,
        quick: bool,
        pin: Option<Pin>,
    ) -> Report<'a> {
        let rows: Vec<Row> = results.rows.iter().map(|(k, s)| Row::new(*k, s)).collect();
        let find = |target: usize, conns: u32, idle: u32| {
            rows.iter().find(|r| {
                r.key.target == target
                    && r.key.tool == Tool::Wrk
                    && r.key.connections == conns
                    && r.key.idle == idle
            })
        };
        let mut ratios = Vec::new();
        let epoll = targets
            .iter()
            .position(|t| t.server == "evmux" && t.backend == "epoll");
        let mut short_ratios = Vec::new();
        let baseline = |name: &str| targets.iter().position(|t| t.server == name);
        for (mio, out) in [
            (baseline("mio"), &mut ratios),
            (baseline("mio-short-read"), &mut short_ratios),
        ] {
            if let (Some(e), Some(m)) = (epoll, mio) {
                for conns in WRK_CONNS {
                    if let (Some(a), Some(b)) = (find(e, conns, 0), find(m, conns, 0)) {
                        out.extend(Compare::new(e, conns, a, b));
                    }
                }
            }
        }
        let mut idle = Vec::new();
        for t in 0..targets.len() {
            if let (Some(with), Some(without)) = (find(t, ACTIVE, IDLE as u32), find(t, ACTIVE, 0))
            {
                idle.extend(Compare::new(t, ACTIVE, with, without));
            }
        }
        Report {
            targets,
            plan,
            quick,
            pin,
            rows,
            not_run: results.not_run.clone(),
            problems: results.problems.clone(),
            ratios,
            short_ratios,
            idle,
        }
    }

    fn low_rate(&self) -> Option<u32> {
        self.plan.rates.iter().copied().min()
    }

    /// Every evmux server measured at the low httperf rate, with its error
    /// count; `None` errors when it was not measured.
    fn low_rate_errors(&self) -> Vec<(usize, Option<u64>)> {
        let Some(low) = self.low_rate() else {
            return Vec::new();
        };
        (0..self.targets.len())
            .filter(|&t| self.targets[t].server == "evmux")
            .map(|t| {
                let e = self
                    .rows
                    .iter()
                    .find(|r| r.key.target == t && r.key.tool == Tool::Httperf && r.key.rate == low)
                    .map(|r| r.errors);
                (t, e)
            })
            .collect()
    }

    /// Every evmux server measured at the low rate had no error (and one
    /// was measured at least).
    fn low_rate_ok(&self) -> bool {
        let errs = self.low_rate_errors();
        errs.iter().any(|(_, e)| e.is_some()) && errs.iter().all(|(_, e)| e.unwrap_or(0) == 0)
    }

    fn ratio_ok(&self) -> Option<bool> {
        all_at_least_one(&self.ratios)
    }

    fn short_ratio_ok(&self) -> Option<bool> {
        all_at_least_one(&self.short_ratios)
    }

    /// Idle drop ≤ 10% on epoll, uring and superpoll (those measured).
    fn idle_ok(&self) -> Option<bool> {
        let judged: Vec<&Compare> = self
            .idle
            .iter()
            .filter(|c| {
                let t = &self.targets[c.target];
                t.server == "evmux" && ["epoll", "uring", "superpoll"].contains(&t.backend.as_str())
            })
            .collect();
        (!judged.is_empty()).then(|| judged.iter().all(|c| c.ratio() >= 0.90))
    }

    fn text(&self) -> String {
        let mut o = String::new();
        let p = self.plan;
        let _ = writeln!(
            o,
            "\nloadtest{}: servers on 127.0.0.1, one thread each; {}; this machine has {} CPUs, \
             maybe shared with other jobs: figures are noisy.",
            if self.quick { " --quick" } else { "" },
            match &self.pin {
                Some(p) => format!(
                    "servers pinned to CPU {}, httperf and wrk to CPU {}",
                    p.server, p.load
                ),
                None => "no CPU pinning".to_string(),
            },
            thread::available_parallelism().map_or(0, |n| n.get())
        );
        let _ = writeln!(
            o,
            "\nhttperf: fixed rate, {CALLS} keep-alive requests per connection, {} s per rate; \
             p50/p99 = connection lifetime (connect + {CALLS} requests), 1 ms histogram bins; \
             `client` = the errors that are httperf's own (fd-unavail: it cannot hold more \
             than 1024 descriptors; addrunavail; ftab-full), counted in `errors` too",
            p.httperf_secs
        );
        let _ = writeln!(
            o,
            "{:<16} {:>7} {:>7} {:>11} {:>7} {:>7} {:>9} {:>9} {:>10}",
            "server", "conn/s", "conns", "replies/s", "errors", "client", "p50", "p99", "reply avg"
        );
        for r in self.rows.iter().filter(|r| r.key.tool == Tool::Httperf) {
            let s = &r.samples[0];
            let _ = writeln!(
                o,
                "{:<16} {:>7} {:>7} {:>11.1} {:>7} {:>7} {:>9} {:>9} {:>10}",
                self.targets[r.key.target].label(),
                r.key.rate,
                r.key.connections,
                r.requests_per_s,
                r.errors,
                s.client_errors.map_or("-".into(), |e| e.to_string()),
                ms(r.p50_ms),
                ms(r.p99_ms),
                ms(s.reply_ms)
            );
        }
        let _ = writeln!(
            o,
            "\nwrk: -t2, {} s per run, {} round(s) (+{} evmux-epoll/mio/mio-short-read \
             alternations at {} connections); medians over rounds, errors summed",
            p.wrk_secs,
            p.rounds,
            p.ratio_rounds,
            WRK_CONNS.map(|c| c.to_string()).join(" and ")
        );
        let _ = writeln!(
            o,
            "{:<16} {:>6} {:>6} {:>11} {:>7} {:>9} {:>9} {:>10} {:>5} {:>4}",
            "server", "conns", "idle", "req/s", "errors", "p50", "p99", "req/CPU-s", "busy", "runs"
        );
        for (t, target) in self.targets.iter().enumerate() {
            for (conns, idle) in [(ACTIVE, 0), (ACTIVE, IDLE as u32), (1000, 0)] {
                let row = self.rows.iter().find(|r| {
                    r.key.target == t
                        && r.key.tool == Tool::Wrk
                        && r.key.connections == conns
                        && r.key.idle == idle
                });
                match row {
                    Some(r) => {
                        let _ = writeln!(
                            o,
                            "{:<16} {:>6} {:>6} {:>11.1} {:>7} {:>9} {:>9} {:>10} {:>5} {:>4}",
                            target.label(),
                            conns,
                            idle,
                            r.requests_per_s,
                            r.errors,
                            ms(r.p50_ms),
                            ms(r.p99_ms),
                            r.requests_per_cpu_s
                                .map_or("-".into(), |x| format!("{x:.0}")),
                            r.server_busy_pct.map_or("-".into(), |x| format!("{x:.0}%")),
                            r.samples.len()
                        );
                    }
                    None => {
                        let why = self
                            .not_run
                            .iter()
                            .find(|n| {
                                n.key.target == t
                                    && ((n.key.tool == Tool::Wrk
                                        && n.key.connections == conns
                                        && n.key.idle == idle)
                                        || n.key.connections == 0)
                            })
                            .map_or("not measured", |n| n.reason.as_str());
                        let _ = writeln!(
                            o,
                            "{:<16} {:>6} {:>6} {:>11}   {why}",
                            target.label(),
                            conns,
                            idle,
                            "n/a"
                        );
                    }
                }
            }
        }
        let _ = writeln!(o);
        for (name, c) in self
            .ratios
            .iter()
            .map(|c| ("mio", c))
            .chain(self.short_ratios.iter().map(|c| ("mio-short-read", c)))
        {
            let _ = writeln!(
                o,
                "evmux-epoll / {name} requests/s, wrk {} connections: {:.3}× (median of {} rounds: {}; \
                 medians {:.0} vs {:.0} req/s); per server CPU-second: {}",
                c.connections,
                c.ratio(),
                c.per_round.len(),
                list(&c.per_round, |x| format!("{x:.3}")),
                c.a,
                c.b,
                c.cpu_ratio().map_or("-".into(), |x| format!("{x:.3}×"))
            );
        }
        for conns in WRK_CONNS {
            let busy: Vec<String> = self
                .targets
                .iter()
                .enumerate()
                .filter(|(_, t)| t.server != "evmux" || t.backend == "epoll")
                .filter_map(|(t, target)| {
                    let r = self.rows.iter().find(|r| {
                        r.key.target == t
                            && r.key.tool == Tool::Wrk
                            && r.key.connections == conns
                            && r.key.idle == 0
                    })?;
                    Some(format!("{} {:.0}%", target.label(), r.server_busy_pct?))
                })
                .collect();
            if !busy.is_empty() {
                let _ = writeln!(
                    o,
                    "server CPU use, wrk {conns} connections (of one CPU; well below 100%: \
                     wrk set the pace, and requests/s compare the servers less than \
                     requests per CPU-second do): {}",
                    busy.join(", ")
                );
            }
        }
        for c in &self.idle {
            let _ = writeln!(
                o,
                "{} with {IDLE} idle connections: {:+.1}% requests/s (median of {} rounds: {}; \
                 medians {:.0} → {:.0}); per server CPU-second: {}",
                self.targets[c.target].label(),
                (c.ratio() - 1.0) * 100.0,
                c.per_round.len(),
                list(&c.per_round, |x| format!("{:+.1}%", (x - 1.0) * 100.0)),
                c.b,
                c.a,
                c.cpu_ratio()
                    .map_or("-".into(), |x| format!("{:+.1}%", (x - 1.0) * 100.0))
            );
        }
        for p in &self.problems {
            let _ = writeln!(o, "\nPROBLEM: {p}");
        }
        let _ = writeln!(o, "\nacceptance:");
        let low = self.low_rate().unwrap_or(0);
        let errs: Vec<String> = self
            .low_rate_errors()
            .iter()
            .map(|(t, e)| {
                format!(
                    "{} {}",
                    self.targets[*t].backend,
                    e.map_or("n/a".to_string(), |e| e.to_string())
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "  zero errors at the low rate ({low}/s) on every Linux backend: {} ({})",
            verdict(Some(self.low_rate_ok())),
            errs.join(", ")
        );
        for (what, ok, ratios) in [
            (
                "evmux-epoll >= 1.0x mio requests/s",
                self.ratio_ok(),
                &self.ratios,
            ),
            (
                "(reference, mio outside its documented contract) evmux-epoll >= 1.0x \
                 mio-short-read requests/s",
                self.short_ratio_ok(),
                &self.short_ratios,
            ),
        ] {
            let _ = writeln!(
                o,
                "  {what}: {} ({})",
                verdict(ok),
                ratios
                    .iter()
                    .map(|c| format!("{:.3}x at {} conns", c.ratio(), c.connections))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            o,
            "  idle drop <= 10% on epoll, uring, superpoll: {} ({})",
            verdict(self.idle_ok()),
            self.idle
                .iter()
                .filter(|c| {
                    let t = &self.targets[c.target];
                    t.server == "evmux"
                        && ["epoll", "uring", "superpoll"].contains(&t.backend.as_str())
                })
                .map(|c| format!(
                    "{} {:+.1}%",
                    self.targets[c.target].label(),
                    (c.ratio() - 1.0) * 100.0
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        o
    }

    fn to_json(&self) -> Json {
        let num = |v: Option<f64>| v.map_or(Json::Num(f64::NAN), |x| Json::Num(round3(x)));
        let entries = self
            .rows
            .iter()
            .map(|r| {
                let t = &self.targets[r.key.target];
                let mut pairs = vec![
                    ("server", Json::Str(t.server.to_string())),
                    ("backend", Json::Str(t.backend.clone())),
                    ("tool", Json::Str(r.key.tool.name().to_string())),
                    ("connections", Json::Int(i64::from(r.key.connections))),
                    ("requests_per_s", Json::Num(round3(r.requests_per_s))),
                    ("errors", Json::Int(r.errors as i64)),
                    ("p99_ms", num(r.p99_ms)),
                    ("p50_ms", num(r.p50_ms)),
                    ("idle_connections", Json::Int(i64::from(r.key.idle))),
                    ("runs", Json::Int(r.samples.len() as i64)),
                    ("requests_per_cpu_s", num(r.requests_per_cpu_s)),
                    ("server_busy_pct", num(r.server_busy_pct)),
                    (
                        "samples_requests_per_s",
                        Json::Arr(
                            r.samples
                                .iter()
                                .map(|s| Json::Num(round3(s.requests_per_s)))
                                .collect(),
                        ),
                    ),
                ];
                match r.key.tool {
                    Tool::Httperf => {
                        let s = &r.samples[0];
                        pairs.push(("rate_conn_per_s", Json::Int(i64::from(r.key.rate))));
                        pairs.push(("calls_per_connection", Json::Int(i64::from(CALLS))));
                        pairs.push(("latency", Json::Str("connection_lifetime".into())));
                        pairs.push(("reply_ms_avg", num(s.reply_ms)));
                        pairs.push((
                            "client_errors",
                            s.client_errors
                                .map_or(Json::Num(f64::NAN), |e| Json::Int(e as i64)),
                        ));
                        pairs.push(("duration_s", Json::Num(round3(s.duration_s))));
                    }
                    Tool::Wrk => {
                        pairs.push(("latency", Json::Str("request".into())));
                        pairs.push(("duration_s", Json::Int(i64::from(self.plan.wrk_secs))));
                        if r.key.idle > 0 {
                            let alive = r.samples.iter().filter_map(|s| s.idle_alive).min();
                            pairs.push((
                                "idle_still_open_min",
                                alive.map_or(Json::Num(f64::NAN), |a| Json::Int(a as i64)),
                            ));
                        }
                    }
                }
                Json::obj(pairs)
            })
            .collect();
        let not_run = self
            .not_run
            .iter()
            .map(|n| {
                let t = &self.targets[n.key.target];
                Json::obj([
                    ("server", Json::Str(t.server.to_string())),
                    ("backend", Json::Str(t.backend.clone())),
                    ("tool", Json::Str(n.key.tool.name().to_string())),
                    ("connections", Json::Int(i64::from(n.key.connections))),
                    ("idle_connections", Json::Int(i64::from(n.key.idle))),
                    ("reason", Json::Str(n.reason.clone())),
                ])
            })
            .collect();
        let ratio_json = |c: &Compare, baseline_key: &'static str| {
            Json::obj([
                ("connections", Json::Int(i64::from(c.connections))),
                ("ratio", Json::Num(round3(c.ratio()))),
                ("evmux_epoll_requests_per_s", Json::Num(round3(c.a))),
                (baseline_key, Json::Num(round3(c.b))),
                (
                    "per_round",
                    Json::Arr(c.per_round.iter().map(|x| Json::Num(round3(*x))).collect()),
                ),
                (
                    "ratio_per_cpu_s",
                    c.cpu_ratio()
                        .map_or(Json::Num(f64::NAN), |x| Json::Num(round3(x))),
                ),
            ])
        };
        let ratios = self
            .ratios
            .iter()
            .map(|c| ratio_json(c, "mio_requests_per_s"))
            .collect();
        let short_ratios = self
            .short_ratios
            .iter()
            .map(|c| ratio_json(c, "mio_short_read_requests_per_s"))
            .collect();
        let idle = self
            .idle
            .iter()
            .map(|c| {
                let t = &self.targets[c.target];
                Json::obj([
                    ("server", Json::Str(t.server.to_string())),
                    ("backend", Json::Str(t.backend.clone())),
                    ("idle_connections", Json::Int(IDLE as i64)),
                    ("requests_per_s_without", Json::Num(round3(c.b))),
                    ("requests_per_s_with", Json::Num(round3(c.a))),
                    ("change_pct", Json::Num(round3((c.ratio() - 1.0) * 100.0))),
                    (
                        "change_per_cpu_s_pct",
                        c.cpu_ratio().map_or(Json::Num(f64::NAN), |x| {
                            Json::Num(round3((x - 1.0) * 100.0))
                        }),
                    ),
                    (
                        "per_round_change_pct",
                        Json::Arr(
                            c.per_round
                                .iter()
                                .map(|x| Json::Num(round3((x - 1.0) * 100.0)))
                                .collect(),
                        ),
                    ),
                ])
            })
            .collect();
        let opt_bool = |b: Option<bool>| b.map_or(Json::Num(f64::NAN), Json::Bool);
        Json::obj([
            ("loadtest", Json::Arr(entries)),
            ("not_run", Json::Arr(not_run)),
            (
                "problems",
                Json::Arr(self.problems.iter().map(|p| Json::Str(p.clone())).collect()),
            ),
            ("evmux_epoll_over_mio", Json::Arr(ratios)),
            ("evmux_epoll_over_mio_short_read", Json::Arr(short_ratios)),
            ("idle_change", Json::Arr(idle)),
            (
                "acceptance",
                Json::obj([
                    ("low_rate_zero_errors", Json::Bool(self.low_rate_ok())),
                    ("epoll_ge_mio", opt_bool(self.ratio_ok())),
                    ("epoll_ge_mio_short_read", opt_bool(self.short_ratio_ok())),
                    ("idle_drop_le_10pct", opt_bool(self.idle_ok())),
                ]),
            ),
            (
                "method",
                Json::obj([
                    ("quick", Json::Bool(self.quick)),
                    ("server_threads", Json::Int(1)),
                    (
                        "httperf_rates",
                        Json::Arr(
                            self.plan
                                .rates
                                .iter()
                                .map(|r| Json::Int(i64::from(*r)))
                                .collect(),
                        ),
                    ),
                    (
                        "httperf_seconds",
                        Json::Int(i64::from(self.plan.httperf_secs)),
                    ),
                    ("wrk_seconds", Json::Int(i64::from(self.plan.wrk_secs))),
                    ("wrk_threads", Json::Int(2)),
                    (
                        "server_cpus",
                        self.pin.as_ref().map_or(Json::Str("unpinned".into()), |p| {
                            Json::Str(p.server.clone())
                        }),
                    ),
                    (
                        "load_cpus",
                        self.pin
                            .as_ref()
                            .map_or(Json::Str("unpinned".into()), |p| Json::Str(p.load.clone())),
                    ),
                    ("rounds", Json::Int(self.plan.rounds as i64)),
                    ("ratio_rounds", Json::Int(self.plan.ratio_rounds as i64)),
                    (
                        "cpus",
                        Json::Int(thread::available_parallelism().map_or(0, |n| n.get()) as i64),
                    ),
                ]),
            ),
        ])
    }
}

/// Every ratio ≥ 1 (`None` if there is none).
fn all_at_least_one(v: &[Compare]) -> Option<bool> {
    (!v.is_empty()).then(|| v.iter().all(|c| c.ratio() >= 1.0))
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

fn list(v: &[f64], f: impl Fn(f64) -> String) -> String {
    v.iter().map(|&x| f(x)).collect::<Vec<_>>().join(", ")
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 3s test @ http://127.0.0.1:18080/
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.73ms    1.93ms  15.27ms   85.67%
    Req/Sec    37.21k    11.07k   67.72k    71.67%
  Latency Distribution
     50%  693.00us
     75%    2.60ms
     90%    4.39ms
     99%    1.03s
  223221 requests in 3.02s, 16.18MB read
  Socket errors: connect 1, read 2, write 0, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  73828.85
Transfer/sec:      5.35MB
";

    const HTTPERF: &str = "httperf --verbose --hog --timeout=5 --client=0/1 --server=127.0.0.1 --port=18080 --uri=/ --rate=1000 --send-buffer=4096 --recv-buffer=16384 --num-conns=1000 --num-calls=5
httperf: maximum number of open descriptors = 1024
Maximum connect burst length: 17

Connection lifetime histogram (time in ms):
             0.5 578
             1.5 46
             2.5 356
             :
            48.5 20

Total: connections 1000 requests 5000 replies 4990 test-duration 1.003 s

Connection rate: 997.4 conn/s (1.0 ms/conn, <=61 concurrent connections)
Connection time [ms]: min 0.1 avg 4.6 max 48.6 median 0.5 stddev 8.4
Connection time [ms]: connect 0.1
Connection length [replies/conn]: 5.000

Request rate: 4987.0 req/s (0.2 ms/req)
Reply rate [replies/s]: min 0.0 avg 0.0 max 0.0 stddev 0.0 (0 samples)
Reply time [ms]: response 0.9 transfer 0.0
Reply status: 1xx=0 2xx=4988 3xx=0 4xx=1 5xx=1

Errors: total 2 client-timo 2 socket-timo 0 connrefused 0 connreset 0
Errors: fd-unavail 1 addrunavail 0 ftab-full 0 other 0
";

    #[test]
    fn server_cpu_per_request_and_busy_share() {
        let s = Sample {
            requests: 1_000,
            duration_s: 4.0,
            server_cpu_s: Some(3.0),
            ..Sample::default()
        };
        assert_eq!(s.server_busy_pct(), Some(75.0));
        assert!((s.requests_per_cpu_s().unwrap() - 1000.0 / 3.0).abs() < 1e-9);
        // Unknown CPU time, or no duration: nothing is claimed.
        let unknown = Sample {
            server_cpu_s: None,
            ..s.clone()
        };
        assert_eq!(unknown.server_busy_pct(), None);
        let no_time = Sample {
            duration_s: 0.0,
            ..s
        };
        assert_eq!(no_time.server_busy_pct(), None);
    }

    #[test]
    fn parses_wrk() {
        let s = parse_wrk(WRK).unwrap();
        assert_eq!(s.requests_per_s, 73828.85);
        assert_eq!(s.errors, 1 + 2 + 4 + 5);
        assert_eq!(s.requests, 223221);
        assert!((s.duration_s - 3.02).abs() < 1e-9);
        assert!((s.p50_ms.unwrap() - 0.693).abs() < 1e-9);
        assert!((s.p99_ms.unwrap() - 1030.0).abs() < 1e-9);
    }

    #[test]
    fn parses_httperf() {
        let s = parse_httperf(HTTPERF).unwrap();
        assert!((s.requests_per_s - 4990.0 / 1.003).abs() < 1e-6);
        assert_eq!(s.errors, 2 + 2);
        assert_eq!(s.requests, 4990);
        assert_eq!(s.p50_ms, Some(0.5));
        // 1000 lifetimes: the 990th is in the 48.5 bin.
        assert_eq!(s.p99_ms, Some(48.5));
        assert_eq!(s.reply_ms, Some(0.9));
        assert_eq!(s.concurrent, Some(61));
        assert_eq!(s.client_errors, Some(1));
    }

    #[test]
    fn parses_the_listening_line() {
        assert_eq!(
            parse_listening("listening on http://127.0.0.1:4321/ with 1 thread(s), backend epoll"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(parse_listening("nothing"), None);
    }

    #[test]
    fn medians_and_rotation() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(rotated(3, 1), vec![1, 2, 0]);
    }
}
