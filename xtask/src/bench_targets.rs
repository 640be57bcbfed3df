//! `bench targets`: issue #5's chain targets judged over several saved
//! runs instead of one.
//!
//! On a shared machine a single run's point moves by ±5–15% between runs
//! at the same code (BENCHMARKS.md, "chain"), so one run's worst point is
//! mostly the worst noise. Every `bench chain` run keeps its CSV under
//! `target/evmux-bench/runs/`; this reads those (or the files named) and,
//! for each point, takes the target's ratio in every run (subject median
//! over base median, within that run) and then the **median over the
//! runs**. For superpoll, each run's ratio is to the better raw loop *of
//! that run*, so the choice of base is not made on the pooled figures.
//! The verdicts and their wording follow the one-run check of
//! `ChainReport::targets`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::bench_chain::CHAIN_TARGETS;
use crate::bench_mux::{Target, median, out_dir, round_to};
use crate::json::Json;

/// A point of the sweep: pairs and the active/total ratio (as printed in
/// the CSV, so that equal ratios compare equal).
type Point = (usize, String);

/// One saved run: the median µs of every (subject, point).
#[derive(Debug)]
pub struct Run {
    path: PathBuf,
    medians: BTreeMap<(String, Point), f64>,
}

impl Run {
    /// Reads a `chain.csv` as `bench chain` writes it.
    ///
    /// # Errors
    /// The file cannot be read, lacks a needed column, or has a malformed
    /// row.
    pub fn read(path: &Path) -> Result<Run> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Run::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Run> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .with_context(|| format!("{}: empty file", path.display()))?
            .split(',')
            .collect();
        let col = |name: &str| {
            header.iter().position(|h| *h == name).with_context(|| {
                format!(
                    "{}: no `{name}` column (not a chain.csv of `bench chain`?)",
                    path.display()
                )
            })
        };
        let (cs, cn, ca, cm) = (col("subject")?, col("n")?, col("atr")?, col("median_us")?);
        let mut medians = BTreeMap::new();
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            let field = |c: usize| {
                f.get(c)
                    .copied()
                    .with_context(|| format!("{}: line {}: too few fields", path.display(), i + 2))
            };
            let n: usize = field(cn)?
                .parse()
                .with_context(|| format!("{}: line {}: bad `n`", path.display(), i + 2))?;
            let atr = field(ca)?.to_string();
            // An empty median is a subject that could not run (n/a).
            let Ok(m) = field(cm)?.parse::<f64>() else {
                continue;
            };
            medians.insert((field(cs)?.to_string(), (n, atr)), m);
        }
        Ok(Run {
            path: path.to_path_buf(),
            medians,
        })
    }

    fn get(&self, subject: &str, p: &Point) -> Option<f64> {
        self.medians.get(&(subject.to_string(), p.clone())).copied()
    }

    /// This run's ratio of `subject` to the better of `bases` at `p`.
    fn ratio(&self, subject: &str, bases: &[&str], p: &Point) -> Option<f64> {
        let s = self.get(subject, p)?;
        let base = bases
            .iter()
            .filter_map(|b| self.get(b, p))
            .fold(f64::INFINITY, f64::min);
        base.is_finite().then(|| s / base)
    }
}

/// A target's figures at one point.
#[derive(Debug, Clone)]
pub struct PointFigure {
    /// The point.
    pub n: usize,
    /// Its active/total ratio, as written in the CSV.
    pub atr: String,
    /// The ratio in each run that has the point.
    pub per_run: Vec<f64>,
    /// Their median.
    pub median: f64,
}

/// A target judged over the runs.
#[derive(Debug)]
pub struct Judged {
    /// The verdict, as the one-run check words it.
    pub target: Target,
    /// Every point, in sweep order.
    pub points: Vec<PointFigure>,
}

/// Judges the chain targets over `runs`.
pub fn judge(runs: &[Run]) -> Vec<Judged> {
    let mut points: Vec<Point> = runs
        .iter()
        .flat_map(|r| r.medians.keys().map(|(_, p)| p.clone()))
        .collect();
    points.sort_by(|a, b| {
        let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
        a.0.cmp(&b.0).then(num(&a.1).total_cmp(&num(&b.1)))
    });
    points.dedup();
    CHAIN_TARGETS
        .iter()
        .map(|&(name, subject, bases)| {
            let figures: Vec<PointFigure> = points
                .iter()
                .filter_map(|p| {
                    let per_run: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.ratio(subject, bases, p))
                        .collect();
                    (!per_run.is_empty()).then(|| PointFigure {
                        n: p.0,
                        atr: p.1.clone(),
                        median: median(&per_run),
                        per_run,
                    })
                })
                .collect();
            let worst = figures.iter().max_by(|a, b| a.median.total_cmp(&b.median));
            let over = figures.iter().filter(|f| f.median > 1.05).count();
            let against = bases.join(", ");
            let target = match worst {
                None => Target {
                    name: name.into(),
                    met: None,
                    detail: format!("{subject} not measured in any run"),
                },
                Some(w) => Target {
                    name: name.into(),
                    met: Some(w.median <= 1.05),
                    detail: format!(
                        "median over {} run{}: worst {:.3}x min of {against} (n={}, atr={}); {over} of {} points above 1.05",
                        runs.len(),
                        if runs.len() == 1 { "" } else { "s" },
                        w.median,
                        w.n,
                        w.atr,
                        figures.len()
                    ),
                },
            };
            Judged {
                target,
                points: figures,
            }
        })
        .collect()
}

/// The saved runs: `target/evmux-bench/runs/chain-*.csv`, oldest first.
///
/// # Errors
/// The directory cannot be listed.
pub fn saved_runs() -> Result<Vec<PathBuf>> {
    let dir = out_dir()?.join("runs");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("chain-") && f.ends_with(".csv"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// `bench targets [FILE ...] [--json]`.
///
/// # Errors
/// No run to judge, or a file that cannot be read.
pub fn cmd(files: &[PathBuf], json: bool) -> Result<()> {
    let files = if files.is_empty() {
        saved_runs()?
    } else {
        files.to_vec()
    };
    if files.is_empty() {
        bail!(
            "no saved chain runs in {}: run `cargo xtask bench chain` (each run keeps its CSV there), or name chain.csv files",
            out_dir()?.join("runs").display()
        );
    }
    let runs = files
        .iter()
        .map(|f| Run::read(f))
        .collect::<Result<Vec<_>>>()?;
    let judged = judge(&runs);
    if json {
        let out = Json::obj([
            (
                "runs",
                Json::Arr(
                    runs.iter()
                        .map(|r| Json::Str(r.path.display().to_string()))
                        .collect(),
                ),
            ),
            (
                "targets",
                Json::Arr(
                    judged
                        .iter()
                        .map(|j| {
                            let Json::Obj(mut fields) = j.target.to_json() else {
                                unreachable!("a target is a JSON object")
                            };
                            fields.push((
                                "points".into(),
                                Json::Arr(
                                    j.points
                                        .iter()
                                        .map(|p| {
                                            Json::obj([
                                                ("n", Json::Num(p.n as f64)),
                                                (
                                                    "atr",
                                                    Json::Num(p.atr.parse().unwrap_or(f64::NAN)),
                                                ),
                                                ("median_ratio", round_to(p.median, 4)),
                                                (
                                                    "ratios",
                                                    Json::Arr(
                                                        p.per_run
                                                            .iter()
                                                            .map(|&r| round_to(r, 4))
                                                            .collect(),
                                                    ),
                                                ),
                                            ])
                                        })
                                        .collect(),
                                ),
                            ));
                            Json::Obj(fields)
                        })
                        .collect(),
                ),
            ),
        ]);
        println!("{}", out.render());
        return Ok(());
    }
    println!("chain targets over {} run(s):", runs.len());
    for r in &runs {
        println!("  {}", r.path.display());
    }
    for j in &judged {
        println!();
        println!("{}", j.target.line());
        println!("  {:>5} {:>5}  {:>7}  per run", "n", "atr", "median");
        for p in &j.points {
            let each: Vec<String> = p.per_run.iter().map(|r| format!("{r:.3}")).collect();
            let mark = if p.median > 1.05 { " *" } else { "" };
            println!(
                "  {:>5} {:>5}  {:>7.3}  {}{mark}",
                p.n,
                p.atr,
                p.median,
                each.join(" ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rows: &[(&str, usize, &str, &str)]) -> Run {
        let mut text = String::from("subject,n,atr,median_us,ratio_to_raw_epoll\n");
        for (s, n, a, m) in rows {
            text.push_str(&format!("{s},{n},{a},{m},1\n"));
        }
        Run::parse(Path::new("test.csv"), &text).expect("parses")
    }

    fn point<'a>(j: &'a Judged, n: usize, atr: &str) -> &'a PointFigure {
        j.points
            .iter()
            .find(|p| p.n == n && p.atr == atr)
            .expect("point present")
    }

    #[test]
    fn each_point_is_the_median_of_the_runs_ratios() {
        let runs = [
            run(&[
                ("raw-epoll", 1000, "0.1", "100"),
                ("evmux-epoll", 1000, "0.1", "110"),
            ]),
            run(&[
                ("raw-epoll", 1000, "0.1", "100"),
                ("evmux-epoll", 1000, "0.1", "102"),
            ]),
            run(&[
                ("raw-epoll", 1000, "0.1", "200"),
                ("evmux-epoll", 1000, "0.1", "206"),
            ]),
        ];
        let judged = judge(&runs);
        let epoll = &judged[0];
        let p = point(epoll, 1000, "0.1");
        assert_eq!(p.per_run.len(), 3);
        assert!((p.median - 1.03).abs() < 1e-9, "median {}", p.median);
        // One run's 1.10 does not decide the verdict; the median does.
        assert_eq!(epoll.target.met, Some(true));
        assert!(
            epoll.target.detail.contains("0 of 1 points"),
            "{}",
            epoll.target.detail
        );
    }

    #[test]
    fn superpoll_is_judged_against_the_better_raw_loop_of_each_run() {
        // Run 1: raw-poll is the better loop; run 2: raw-epoll is.
        let runs = [
            run(&[
                ("raw-epoll", 1000, "0.2", "100"),
                ("raw-poll", 1000, "0.2", "90"),
                ("evmux-superpoll", 1000, "0.2", "99"),
            ]),
            run(&[
                ("raw-epoll", 1000, "0.2", "100"),
                ("raw-poll", 1000, "0.2", "120"),
                ("evmux-superpoll", 1000, "0.2", "104"),
            ]),
        ];
        let judged = judge(&runs);
        let sp = &judged[2];
        let p = point(sp, 1000, "0.2");
        assert!((p.per_run[0] - 1.1).abs() < 1e-9, "{:?}", p.per_run);
        assert!((p.per_run[1] - 1.04).abs() < 1e-9, "{:?}", p.per_run);
        assert!((p.median - 1.07).abs() < 1e-9);
        assert_eq!(sp.target.met, Some(false));
        assert!(
            sp.target.detail.contains("(n=1000, atr=0.2)"),
            "{}",
            sp.target.detail
        );
    }

    #[test]
    fn a_point_missing_from_some_runs_uses_the_runs_that_have_it() {
        let runs = [
            run(&[
                ("raw-poll", 9000, "0.5", "100"),
                ("evmux-poll", 9000, "0.5", "120"),
            ]),
            run(&[
                ("raw-poll", 1000, "0.5", "100"),
                ("evmux-poll", 1000, "0.5", "101"),
            ]),
        ];
        let judged = judge(&runs);
        let poll = &judged[1];
        assert_eq!(point(poll, 9000, "0.5").per_run.len(), 1);
        assert_eq!(point(poll, 1000, "0.5").per_run.len(), 1);
        // Sweep order: N first, then the ratio.
        assert_eq!(poll.points[0].n, 1000);
        assert_eq!(poll.target.met, Some(false));
        // A subject no run measured is not judged.
        assert_eq!(judged[2].target.met, None);
    }

    #[test]
    fn an_unavailable_subject_is_skipped_and_a_bad_file_is_named() {
        let r = run(&[
            ("evmux-select", 9000, "0.1", ""),
            ("raw-epoll", 9000, "0.1", "5"),
        ]);
        assert_eq!(r.medians.len(), 1);
        let err = Run::parse(Path::new("bad.csv"), "subject,n\nx,1\n").unwrap_err();
        assert!(
            err.to_string().contains("bad.csv") && err.to_string().contains("atr"),
            "{err}"
        );
        let err = Run::parse(
            Path::new("bad.csv"),
            "subject,n,atr,median_us\nx,lots,0.1,5\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
