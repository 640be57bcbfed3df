//! `idle`: a fixed 100 active pairs beside 0, 1k, 4k and 9k idle ones
//! (Banga et al.: a stateful interface costs the same whatever the number
//! of idle descriptors).
//!
//! All `100 + K` read ends are registered; the active ones are spread
//! evenly among them. Before a round each active pair gets one byte
//! (untimed); then every wait reports exactly the 100 active pairs, and the
//! handler reads each byte and forwards it to the next active pair, so the
//! next wait sees the same 100. A round is a fixed number of waits; the
//! figure is the round time per wait. The slope is a least-squares fit of
//! the per-wait medians against K, per 1000 idle descriptors, reported
//! also as a percentage of the cost at K = 0.

use std::os::fd::OwnedFd;

use anyhow::{Result, bail};

use crate::bench_mux::{
    self, Handler, Pairs, Roster, Samples, Subject, Target, Warmup, num, read1, round_to, send1,
};
use crate::json::Json;

/// Active pairs.
pub const ACTIVE: usize = 100;

/// The sweep.
#[derive(Debug, Clone)]
pub struct IdleOpts {
    /// Idle pair counts.
    pub idles: Vec<usize>,
    /// Waits per round.
    pub waits: u64,
    /// Blocks (one turn per subject each).
    pub blocks: usize,
    /// Timed rounds per turn.
    pub rounds_per_turn: usize,
}

impl IdleOpts {
    /// The sweep.
    pub fn full() -> IdleOpts {
        IdleOpts {
            idles: vec![0, 1000, 4000, 9000],
            waits: 100,
            blocks: 4,
            rounds_per_turn: 5,
        }
    }

    /// Fewer rounds.
    pub fn quick() -> IdleOpts {
        IdleOpts {
            idles: vec![0, 1000, 4000, 9000],
            waits: 50,
            blocks: 3,
            rounds_per_turn: 5,
        }
    }
}

/// One subject at one idle count.
#[derive(Debug, Clone)]
pub struct IdlePoint {
    /// Who.
    pub subject: Subject,
    /// Idle pairs.
    pub idle: usize,
    /// Timings (per round of `waits` waits).
    pub samples: Samples,
    /// Waits per round.
    pub waits: u64,
}

impl IdlePoint {
    /// Median microseconds per wait.
    pub fn us_per_wait(&self) -> f64 {
        self.samples.median() / self.waits as f64
    }
}

/// Everything `idle` measured.
#[derive(Debug, Clone, Default)]
pub struct IdleReport {
    /// Per subject and idle count.
    pub points: Vec<IdlePoint>,
    /// `(subject, idle, reason)`.
    pub unavailable: Vec<(&'static str, usize, String)>,
}

/// A subject's fit.
#[derive(Debug, Clone)]
pub struct Slope {
    /// Who.
    pub subject: &'static str,
    /// Median µs per wait at the smallest idle count.
    pub base_us: f64,
    /// Least-squares slope, µs per wait per 1000 idle descriptors.
    pub slope_us_per_1k: f64,
    /// `(idle, us per wait)`.
    pub points: Vec<(usize, f64)>,
}

impl Slope {
    /// The slope as a percentage of the base cost.
    pub fn pct(&self) -> f64 {
        100.0 * self.slope_us_per_1k / self.base_us
    }
}

struct Ring<'a> {
    r: &'a [OwnedFd],
    w: &'a [OwnedFd],
    next: &'a [u32],
    waits: u64,
    failures: u64,
}

impl Handler for Ring<'_> {
    #[inline(always)]
    fn readable(&mut self, idx: usize) {
        match read1(&self.r[idx]) {
            Ok(1) => {
                if !send1(&self.w[self.next[idx] as usize]) {
                    self.failures += 1;
                }
            }
            _ => self.failures += 1,
        }
    }

    #[inline(always)]
    fn readable_drain(&mut self, idx: usize) {
        loop {
            match read1(&self.r[idx]) {
                Ok(1) => {
                    if !send1(&self.w[self.next[idx] as usize]) {
                        self.failures += 1;
                    }
                }
                Err(std::io::ErrorKind::WouldBlock) => break,
                _ => {
                    self.failures += 1;
                    break;
                }
            }
        }
    }

    #[inline(always)]
    fn done(&self, waits: u64) -> bool {
        waits >= self.waits
    }
}

/// Runs the sweep.
pub fn run(
    opts: &IdleOpts,
    roster: &Roster,
    nofile: u64,
    tick: &mut dyn FnMut(String),
) -> Result<IdleReport> {
    let max_idle = opts.idles.iter().copied().max().unwrap_or(0);
    let pairs = Pairs::new(ACTIVE + max_idle, nofile)?;
    let mut report = IdleReport::default();
    let mut gone: Vec<(Subject, usize)> = Vec::new();
    // Per idle count: the registered set, the active ring, the samples.
    struct Point {
        idle: usize,
        m: usize,
        active: Vec<usize>,
        next: Vec<u32>,
        samples: Vec<Samples>,
    }
    let mut points: Vec<Point> = opts
        .idles
        .iter()
        .map(|&idle| {
            let m = ACTIVE + idle;
            let active: Vec<usize> = (0..ACTIVE).map(|j| j * m / ACTIVE).collect();
            let mut next = vec![u32::MAX; m];
            for (j, &i) in active.iter().enumerate() {
                next[i] = active[(j + 1) % ACTIVE] as u32;
            }
            Point {
                idle,
                m,
                active,
                next,
                samples: vec![Samples::default(); roster.subjects.len()],
            }
        })
        .collect();
    let order: Vec<(usize, Subject)> = roster.subjects.iter().copied().enumerate().collect();
    // Blocks outermost, then every idle count, then every subject: slow
    // drift of the machine lands on all idle counts alike, so it cannot
    // pass for a slope.
    for block in 0..opts.blocks {
        for pt in &mut points {
            let (idle, m) = (pt.idle, pt.m);
            let mut warm = Warmup::for_size(m);
            warm.max_waits += opts.waits;
            for (si, subject) in bench_mux::rotated(&order, block) {
                if gone.contains(&(subject, idle)) {
                    continue;
                }
                let (active, next) = (&pt.active, &pt.next);
                let round = || {
                    let mut failures = 0;
                    for &i in active {
                        if !send1(&pairs.w[i]) {
                            failures += 1;
                        }
                    }
                    Ring {
                        r: &pairs.r,
                        w: &pairs.w,
                        next,
                        waits: opts.waits,
                        failures,
                    }
                };
                let finish = |h: Ring<'_>| {
                    let mut left = 0;
                    for &i in active {
                        left += bench_mux::drain(&pairs.r[i]);
                    }
                    if h.failures != 0 || left != ACTIVE {
                        bail!(
                            "idle {}: idle={idle}: {} failures, {left} bytes left instead of {ACTIVE}",
                            subject.name(),
                            h.failures
                        );
                    }
                    Ok(())
                };
                let res = bench_mux::turn(
                    subject,
                    &pairs,
                    m,
                    opts.rounds_per_turn,
                    warm,
                    &mut pt.samples[si],
                    round,
                    finish,
                )?;
                if let Err(why) = res {
                    report.unavailable.push((subject.name(), idle, why));
                    gone.push((subject, idle));
                }
                tick(format!("idle {idle} {}", subject.name()));
            }
        }
    }
    for pt in points {
        for (si, s) in pt.samples.into_iter().enumerate() {
            if s.us.is_empty() {
                continue;
            }
            report.points.push(IdlePoint {
                subject: roster.subjects[si],
                idle: pt.idle,
                samples: s,
                waits: opts.waits,
            });
        }
    }
    Ok(report)
}

/// Least-squares slope of `y` against `x`.
fn fit(pts: &[(f64, f64)]) -> f64 {
    let k = pts.len() as f64;
    if pts.len() < 2 {
        return f64::NAN;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / k;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / k;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    sxy / sxx
}

impl IdleReport {
    /// Subject names in roster order.
    pub fn subjects(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = Vec::new();
        for p in &self.points {
            if !v.contains(&p.subject.name()) {
                v.push(p.subject.name());
            }
        }
        v
    }

    /// The fit per subject.
    pub fn slopes(&self) -> Vec<Slope> {
        self.subjects()
            .into_iter()
            .map(|name| {
                let mut points: Vec<(usize, f64)> = self
                    .points
                    .iter()
                    .filter(|p| p.subject.name() == name)
                    .map(|p| (p.idle, p.us_per_wait()))
                    .collect();
                points.sort_by_key(|p| p.0);
                let xy: Vec<(f64, f64)> = points
                    .iter()
                    .map(|&(k, us)| (k as f64 / 1000.0, us))
                    .collect();
                Slope {
                    subject: name,
                    base_us: points.first().map_or(f64::NAN, |p| p.1),
                    slope_us_per_1k: fit(&xy),
                    points,
                }
            })
            .filter(|s| s.points.len() >= 2)
            .collect()
    }

    /// Writes `idle.csv`.
    pub fn write_csv(&self) -> Result<std::path::PathBuf> {
        let slopes = self.slopes();
        let rows: Vec<Vec<String>> = self
            .points
            .iter()
            .map(|p| {
                let s = slopes.iter().find(|s| s.subject == p.subject.name());
                let (lo, hi) = bench_mux::min_max(&p.samples.us);
                vec![
                    p.subject.name().to_string(),
                    ACTIVE.to_string(),
                    p.idle.to_string(),
                    p.samples.us.len().to_string(),
                    p.waits.to_string(),
                    num(p.us_per_wait(), 3),
                    num(lo / p.waits as f64, 3),
                    num(hi / p.waits as f64, 3),
                    p.samples.warm_waits.to_string(),
                    num(s.map_or(f64::NAN, |s| s.slope_us_per_1k), 4),
                    num(s.map_or(f64::NAN, |s| s.pct()), 2),
                    num(bench_mux::median(&p.samples.cpu_us) / p.waits as f64, 3),
                    p.samples.retried.to_string(),
                ]
            })
            .collect();
        bench_mux::write_csv(
            "idle.csv",
            &[
                "subject",
                "active",
                "idle",
                "rounds",
                "waits_per_round",
                "median_us_per_wait",
                "min_us_per_wait",
                "max_us_per_wait",
                "warmup_waits",
                "slope_us_per_1k",
                "slope_pct_of_base_per_1k",
                "cpu_median_us_per_wait",
                "preempted_rounds_rerun",
            ],
            &rows,
        )
    }

    /// The `idle` array of the JSON summary: one object per subject.
    pub fn to_json(&self) -> Json {
        Json::Arr(
            self.slopes()
                .iter()
                .map(|s| {
                    Json::obj([
                        ("subject", Json::Str(s.subject.into())),
                        ("active", Json::Int(ACTIVE as i64)),
                        ("base_us_per_wait", round_to(s.base_us, 3)),
                        ("slope_us_per_1k", round_to(s.slope_us_per_1k, 4)),
                        ("slope_pct_of_base_per_1k", round_to(s.pct(), 2)),
                        (
                            "points",
                            Json::Arr(
                                s.points
                                    .iter()
                                    .map(|&(idle, us)| {
                                        Json::obj([
                                            ("idle", Json::Int(idle as i64)),
                                            ("us_per_wait", round_to(us, 3)),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect(),
        )
    }

    /// The idle target of issue #5.
    pub fn targets(&self) -> Vec<Target> {
        let slopes = self.slopes();
        let mut worst: Option<(f64, &str)> = None;
        let mut details = Vec::new();
        for s in &slopes {
            if matches!(s.subject, "evmux-epoll" | "evmux-uring" | "evmux-superpoll") {
                let p = s.pct();
                details.push(format!("{} {p:+.2}%", s.subject));
                if worst.is_none_or(|w| p > w.0) {
                    worst = Some((p, s.subject));
                }
            }
        }
        vec![Target {
            name: "idle: slope per 1k idle <= 2% of base for evmux epoll, uring, superpoll".into(),
            met: worst.map(|w| w.0 <= 2.0),
            detail: if details.is_empty() {
                "not measured".into()
            } else {
                details.join(", ")
            },
        }]
    }

    /// The text report.
    pub fn print(&self) {
        let slopes = self.slopes();
        let mut idles: Vec<usize> = self.points.iter().map(|p| p.idle).collect();
        idles.sort_unstable();
        idles.dedup();
        println!(
            "idle: {ACTIVE} active pairs + K idle; median µs per wait (each wait reports the {ACTIVE} and moves their bytes on)"
        );
        print!("{:<16}", "subject");
        for k in &idles {
            print!(" {:>9}", format!("K={k}"));
        }
        println!(" {:>12} {:>10}", "slope µs/1k", "% of base");
        for s in &slopes {
            print!("{:<16}", s.subject);
            for k in &idles {
                let cell = s
                    .points
                    .iter()
                    .find(|p| p.0 == *k)
                    .map_or("n/a".to_string(), |p| format!("{:.2}", p.1));
                print!(" {cell:>9}");
            }
            println!(" {:>12.3} {:>9.2}%", s.slope_us_per_1k, s.pct());
        }
        for (s, k, why) in &self.unavailable {
            println!("  {s}: n/a at K={k} ({why})");
        }
        println!();
    }
}
