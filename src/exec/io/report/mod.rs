//! Experiment reports: each run of an experiment against its reference run, built from the
//! finished run directories (`summary.json` + `metrics.jsonl`), written as markdown, JSON and
//! plots of validation loss against steps and against FLOPs.
//!
//! Definitions (also printed under the table):
//! - gap: `(val - val_ref) / val_ref` of the final validation losses;
//! - spike: validation loss right after a growth minus right before it (the evaluations at the
//!   old depth and at the new depth around the growth step);
//! - rise: the highest validation loss after a growth (until the next growth) minus the last one
//!   before it, with the steps until an evaluation is back below that level ("back after"):
//!   the loss can keep rising for hundreds of steps after a growth whose immediate spike is
//!   small;
//! - t_mix: steps from the last growth to the first evaluation whose validation loss is within
//!   0.5% of the reference's at the same step (reference linearly interpolated between its
//!   evaluations); "not mixed" when no evaluation gets there.
//!
//! With `seeds`, every figure above is per seed, each run against the reference at the same
//! seed, and `seeds.rs` adds, per recipe, the spread of the final validation loss over seeds
//! and the paired gap to the reference with its 95% interval (`stats.rs`), and the ordering of
//! the recipes by mean final loss, each step of it with its paired interval. An interval that
//! covers 0 is marked "within noise".
//!
//! Invariants: results are read in plan order, one directory per plan run (`dir/<run>`), and
//! paired figures pair runs by seed, never by position.

pub mod frontier;
mod seeds;
pub mod stats;

pub use frontier::Speedup;
pub use seeds::{Ordering, RecipeStats};

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::exec::error::ExecError;
use crate::exec::io::data::write_atomic;
use crate::exec::io::metrics::{MetricRow, Summary, read_metrics};
use crate::exec::io::plot::{Figure, Series, plot_figure};
use crate::exec::io::run_dir::{ExperimentDir, RunDir};
use crate::plan::flops::Flops;
use crate::plan::ir::{Plan, Replica, Sharing};
use crate::plan::render::human;

/// Relative tolerance of "mixed": within 0.5% of the reference.
pub const MIX_TOLERANCE: f64 = 0.005;

/// One finished run, as read back from its directory.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub summary: Summary,
    pub rows: Vec<MetricRow>,
}

impl RunResult {
    pub fn read(dir: &RunDir) -> Result<RunResult, ExecError> {
        Ok(RunResult {
            summary: dir.read_summary()?,
            rows: read_metrics(&dir.metrics_file())?,
        })
    }

    fn val_points(&self) -> Vec<(u64, f64, usize)> {
        self.rows
            .iter()
            .filter_map(|r| {
                r.val_loss
                    .filter(|v| v.is_finite())
                    .map(|v| (r.step, v, r.depth))
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run: String,
    /// The recipe and seed of this run, in an experiment with `seeds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<Replica>,
    pub final_val_loss: f64,
    /// Relative gap of the final validation loss to the reference run's.
    pub gap: f64,
    pub flops: Flops,
    /// FLOPs relative to the reference run, per convention.
    pub flops_vs_reference: Flops,
    /// FLOPs relative to a fixed full-depth run of the same length, per convention.
    pub flops_vs_fixed: Flops,
    pub wall_s: f64,
    pub wall_vs_reference: f64,
    pub growth_steps: Vec<u64>,
    /// Validation-loss jump at each growth (`None` where an evaluation is missing).
    pub spikes: Vec<Option<f64>>,
    /// At each growth: the highest validation loss after it minus the last before it, and the
    /// steps from the growth until an evaluation is below that last value again (`None`: never).
    #[serde(default)]
    pub rises: Vec<Option<(f64, Option<u64>)>>,
    /// Steps after the last growth until within 0.5% of the reference (`None`: not mixed, or
    /// no growth).
    pub t_mix: Option<u64>,
    /// Whether this run is a frontier point (the reference recipe at another length).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frontier: bool,
    /// The reference's compute to reach this run's final loss over this run's compute, read
    /// from the frontier at this run's seed (`frontier.rs`). `None`: no frontier, or the run
    /// ended above the frontier's highest loss (`above_frontier`).
    #[serde(default)]
    pub speedup_at_matched_loss: Option<Speedup>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub above_frontier: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    pub experiment: String,
    pub reference: String,
    pub device: String,
    pub runs: Vec<RunReport>,
    pub sharing: Sharing,
    /// The experiment's seeds (empty: one run per recipe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    /// Per recipe, over the seeds (with `seeds` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipes: Vec<RecipeStats>,
    /// Recipes from the lowest mean final validation loss to the highest, each step with its
    /// paired difference (with `seeds` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orderings: Vec<Ordering>,
    /// The frontier recipes (the reference at other lengths); empty: no speedup is reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<String>,
}

/// Validation loss of `points` at `step`, linearly interpolated (clamped at the ends).
fn value_at(points: &[(u64, f64, usize)], step: u64) -> Option<f64> {
    let after = points.iter().position(|p| p.0 >= step)?;
    let (s1, v1, _) = points[after];
    if s1 == step || after == 0 {
        return Some(v1);
    }
    let (s0, v0, _) = points[after - 1];
    let t = (step - s0) as f64 / (s1 - s0) as f64;
    Some(v0 + t * (v1 - v0))
}

/// The jump of the validation loss across the growth at `step` (old depth -> new depth).
fn spike(points: &[(u64, f64, usize)], step: u64, from: usize, to: usize) -> Option<f64> {
    let before = points.iter().rev().find(|p| p.2 == from && p.0 < step)?;
    let after = points.iter().find(|p| p.2 == to && p.0 + 1 >= step)?;
    Some(after.1 - before.1)
}

/// Rise after the growth at `step` (see the module docs); `next` is the next growth, if any.
fn rise(
    points: &[(u64, f64, usize)],
    step: u64,
    from: usize,
    to: usize,
    next: Option<u64>,
) -> Option<(f64, Option<u64>)> {
    let before = points.iter().rev().find(|p| p.2 == from && p.0 < step)?;
    let after: Vec<_> = points
        .iter()
        .filter(|p| p.2 == to && p.0 + 1 >= step && next.is_none_or(|n| p.0 < n))
        .collect();
    // The first highest evaluation, and from there the first one below the pre-growth value.
    let peak_at =
        after
            .iter()
            .enumerate()
            .fold(None, |best: Option<usize>, (i, p)| match best {
                Some(b) if after[b].1 >= p.1 => Some(b),
                _ => Some(i),
            })?;
    let peak = after[peak_at].1;
    let back = after[peak_at..]
        .iter()
        .find(|p| p.1 < before.1)
        // Row `s` is evaluated after `s + 1` steps, except the growth row itself (after `s`).
        .map(|p| {
            if p.0 == step {
                0
            } else {
                (p.0 + 1).saturating_sub(step)
            }
        });
    Some((peak - before.1, back))
}

fn t_mix(run: &RunResult, reference: &[(u64, f64, usize)]) -> Option<u64> {
    let last = *run.summary.growth_steps.last()?;
    run.val_points()
        .iter()
        .filter(|p| p.0 >= last)
        .find_map(|p| {
            let r = value_at(reference, p.0)?;
            (p.1 <= r * (1.0 + MIX_TOLERANCE)).then(|| p.0 - last)
        })
}

/// Builds the report of `plan` (an experiment) from its runs' results, `results[i]` being
/// the result of `plan.runs[i]`. Each run is compared with the reference at its seed.
pub fn build_report(plan: &Plan, results: &[RunResult]) -> Result<ExperimentReport, ExecError> {
    let reference = plan.reference.clone().unwrap_or_default();
    let no_reference = |name: &str| {
        ExecError::new(
            crate::exec::error::ErrorKind::Io,
            format!("the reference run `{name}` has no finished result"),
        )
        .with_help("finish the experiment first: progc run FILE --experiment NAME")
    };
    let result_of = |name: &str| {
        plan.runs
            .iter()
            .position(|r| r.spec.name == name)
            .and_then(|i| results.get(i))
    };
    let point = |res: &RunResult| frontier::Point {
        steps: res.summary.total_steps,
        flops: res.summary.flops,
        wall_s: res.summary.wall_s,
        loss: res.summary.final_val_loss,
    };
    // The frontier at `seed`: the reference and every frontier recipe at that seed.
    let frontier_at = |seed: u64| -> Vec<frontier::Point> {
        plan.runs
            .iter()
            .zip(results)
            .filter(|(rp, _)| {
                (rp.recipe() == reference || plan.is_frontier(rp))
                    && (plan.seeds.is_empty() || rp.spec.seed == seed)
            })
            .map(|(_, res)| point(res))
            .collect()
    };
    let mut runs = Vec::new();
    let mut device = String::new();
    for (rp, res) in plan.runs.iter().zip(results) {
        let ref_name = plan
            .reference_of(rp)
            .map_or(reference.clone(), |r| r.spec.name.clone());
        let ref_run = result_of(&ref_name).ok_or_else(|| no_reference(&ref_name))?;
        if device.is_empty() {
            device = ref_run.summary.device.clone();
        }
        let ref_points = ref_run.val_points();
        let s = &res.summary;
        let points = res.val_points();
        let spikes = rp
            .spec
            .growths
            .iter()
            .map(|g| spike(&points, g.at_step, g.from_depth, g.to_depth))
            .collect();
        let growths = &rp.spec.growths;
        let rises = growths
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let next = growths.get(i + 1).map(|n| n.at_step);
                rise(&points, g.at_step, g.from_depth, g.to_depth, next)
            })
            .collect();
        runs.push(RunReport {
            run: rp.spec.name.clone(),
            replica: rp.replica.clone(),
            final_val_loss: s.final_val_loss,
            gap: (s.final_val_loss - ref_run.summary.final_val_loss)
                / ref_run.summary.final_val_loss,
            flops: s.flops,
            flops_vs_reference: s.flops.ratio(ref_run.summary.flops),
            flops_vs_fixed: s.ratio,
            wall_s: s.wall_s,
            wall_vs_reference: if ref_run.summary.wall_s > 0.0 {
                s.wall_s / ref_run.summary.wall_s
            } else {
                0.0
            },
            growth_steps: s.growth_steps.clone(),
            spikes,
            rises,
            t_mix: t_mix(res, &ref_points),
            frontier: plan.is_frontier(rp),
            speedup_at_matched_loss: None,
            above_frontier: false,
        });
        let run = runs.last_mut().expect("just pushed");
        if !plan.frontier.is_empty() && !run.frontier {
            match frontier::matched(&frontier_at(rp.spec.seed), &point(res)) {
                frontier::Matched::Speedup(x) => run.speedup_at_matched_loss = Some(x),
                frontier::Matched::Above => run.above_frontier = true,
                frontier::Matched::Undefined => {}
            }
        }
    }
    if runs.is_empty() {
        return Err(no_reference(&reference));
    }
    let (recipes, orderings) = seeds::over_seeds(plan, &runs);
    Ok(ExperimentReport {
        experiment: plan.experiment.clone().unwrap_or_default(),
        reference,
        device,
        runs,
        sharing: plan.sharing,
        seeds: plan.seeds.clone(),
        recipes,
        orderings,
        frontier: plan.frontier.clone(),
    })
}

fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

/// The report as a markdown document.
pub fn to_markdown(r: &ExperimentReport) -> String {
    let mut out = format!(
        "# Experiment `{}`\n\nReference run: `{}`. Device: {}.\n\n",
        r.experiment, r.reference, r.device
    );
    if !r.recipes.is_empty() {
        out.push_str(&seeds::markdown(r));
        out.push_str("## Per seed\n\nEach run against the reference at the same seed.\n\n");
    }
    out.push_str(
        "| run | final val loss | gap | FLOPs (exact) | FLOPs/ref exact | 6N emb | 6N non-emb | \
         wall s | wall/ref | growth at | spike | rise (back after) | t_mix | speedup at matched \
         loss (exact / 6N / wall) |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for run in &r.runs {
        let growth = if run.growth_steps.is_empty() {
            "-".to_string()
        } else {
            run.growth_steps
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let spikes = if run.spikes.is_empty() {
            "-".to_string()
        } else {
            run.spikes
                .iter()
                .map(|s| s.map_or("n/a".to_string(), |v| format!("{v:+.3}")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rises = if run.rises.is_empty() {
            "-".to_string()
        } else {
            run.rises
                .iter()
                .map(|r| match r {
                    None => "n/a".to_string(),
                    Some((v, Some(b))) => format!("{v:+.3} ({b} steps)"),
                    Some((v, None)) => format!("{v:+.3} (not back)"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mix = match (run.growth_steps.is_empty(), run.t_mix) {
            (true, _) => "-".to_string(),
            (false, Some(t)) => format!("{t} steps"),
            (false, None) => "not mixed".to_string(),
        };
        let speedup = match (
            &run.speedup_at_matched_loss,
            run.frontier,
            run.above_frontier,
        ) {
            (_, true, _) => "frontier".to_string(),
            (_, _, true) => "above the frontier".to_string(),
            (Some(x), _, _) => {
                let b = if x.bound { ">= " } else { "" };
                format!(
                    "{b}{:.2}x / {b}{:.2}x / {b}{:.2}x",
                    x.exact, x.six_n_embedding, x.wall
                )
            }
            (None, _, _) => "-".to_string(),
        };
        out.push_str(&format!(
            "| {} | {:.4} | {} | {} | {:.3} | {:.3} | {:.3} | {:.1} | {:.2} | {} | {} | {} | {} | {} |\n",
            run.run,
            run.final_val_loss,
            pct(run.gap),
            human(run.flops.exact),
            run.flops_vs_reference.exact,
            run.flops_vs_reference.six_n_embedding,
            run.flops_vs_reference.six_n_non_embedding,
            run.wall_s,
            run.wall_vs_reference,
            growth,
            spikes,
            rises,
            mix,
            speedup,
        ));
    }
    let s = &r.sharing;
    out.push_str(&format!(
        "\nShared prefixes, as planned: {} steps to train instead of {} ({} exact FLOPs instead \
         of {}, {:.1}% saved by sharing). What this folder trained, runs copied in aside, is \
         logged in `trained.jsonl`.\n",
        s.steps_trained,
        s.steps_separate,
        human(s.flops_trained.exact),
        human(s.flops_separate.exact),
        100.0 * (1.0 - s.flops_trained.ratio(s.flops_separate).exact),
    ));
    out.push_str(&frontier_note(r));
    out.push_str(
        "\ngap: relative difference of the final validation loss to the reference. FLOPs/ref: \
         compute relative to the reference run in three conventions (exact with attention and \
         head; 6N with embeddings counted; 6N non-embedding). spike: validation loss just after \
         a growth minus just before. rise: the highest validation loss after a growth minus the \
         last before it, and the steps until the loss is back below that. t_mix: steps from the last growth to the first evaluation \
         within 0.5% of the reference at the same step.\n\n\
         ![validation loss against steps](val_vs_step.svg)\n\n\
         ![validation loss against FLOPs](val_vs_flops.svg)\n",
    );
    out
}

/// What the speedup column means, or how to get one.
fn frontier_note(r: &ExperimentReport) -> String {
    if r.frontier.is_empty() {
        return format!(
            "\nNo speedup at matched loss: this experiment has no frontier. Add `frontier: \
             [{0}_quarter, {0}_half]`, the reference trained to 1/4 and 1/2 of its steps with \
             the warmup in steps (docs/language.md, Experiments).\n",
            r.reference
        );
    }
    let names: Vec<String> = r.frontier.iter().map(|f| format!("`{f}`")).collect();
    format!(
        "\nSpeedup at matched loss: the compute the reference recipe needs to reach a run's final \
         validation loss, over the compute the run used, in exact FLOPs, 6N FLOPs with \
         embeddings and wall-clock seconds. The reference's need is read from its frontier, \
         `{}` and {}, each trained to its own length with its own decay, log-linear in compute \
         between the two points around the run's loss; \">=\": the run ended below the whole \
         frontier, so the figure is a lower bound; \"above the frontier\": the run ended above \
         its shortest point, which is never extrapolated. Over seeds: the geometric mean, with \
         the 95% interval of the mean log.\n",
        r.reference,
        names.join(", ")
    )
}

/// One run's validation curve `(step, x, val)` and its growth rings `(x, val)`.
fn curve(
    run: &RunReport,
    res: &RunResult,
    by_flops: bool,
) -> (Vec<(u64, f64, f64)>, Vec<(f64, f64)>) {
    let x = |row: &MetricRow| if by_flops { row.flops } else { row.step as f64 };
    let points = res
        .rows
        .iter()
        .filter_map(|row| row.val_loss.map(|v| (row.step, x(row), v)))
        .collect();
    let marks = run
        .growth_steps
        .iter()
        .filter_map(|&g| {
            res.rows
                .iter()
                .find(|row| row.step + 1 >= g && row.val_loss.is_some())
                .and_then(|row| row.val_loss.map(|v| (x(row), v)))
        })
        .collect();
    (points, marks)
}

/// Validation loss of every run against steps and against exact FLOPs, growths ringed. With
/// seeds: one curve per recipe, the mean over seeds at each evaluation, shaded from the lowest
/// to the highest seed.
fn plots(dir: &Path, r: &ExperimentReport, results: &[RunResult]) -> Result<(), ExecError> {
    for (x_name, by_flops) in [("step", false), ("training FLOPs (exact)", true)] {
        let mut figure = Figure {
            title: format!("{}: validation loss", r.experiment),
            x_label: x_name.to_string(),
            y_label: "val loss".into(),
            marker_name: "growth".into(),
            ..Figure::default()
        };
        let curves: Vec<_> = r
            .runs
            .iter()
            .zip(results)
            .map(|(run, res)| curve(run, res, by_flops))
            .collect();
        if r.recipes.is_empty() {
            for (run, (points, marks)) in r.runs.iter().zip(curves) {
                figure.series.push(Series {
                    name: run.run.clone(),
                    points: points.iter().map(|&(_, x, v)| (x, v)).collect(),
                    dots: true,
                    marks,
                    band: Vec::new(),
                });
            }
        } else {
            for stats in &r.recipes {
                let members: Vec<usize> = (0..r.runs.len())
                    .filter(|&i| {
                        r.runs[i]
                            .replica
                            .as_ref()
                            .is_some_and(|p| p.recipe == stats.recipe)
                    })
                    .collect();
                let Some(&first) = members.first() else {
                    continue;
                };
                // Evaluations every seed has (same recipe: same steps and FLOPs).
                let mut band = Vec::new();
                for &(step, x, _) in &curves[first].0 {
                    let vals: Vec<f64> = members
                        .iter()
                        .filter_map(|&i| curves[i].0.iter().find(|p| p.0 == step).map(|p| p.2))
                        .collect();
                    if vals.len() == members.len() && vals.iter().all(|v| v.is_finite()) {
                        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        band.push((step, x, mean, lo, hi));
                    }
                }
                let marks = r.runs[first]
                    .growth_steps
                    .iter()
                    .filter_map(|&g| band.iter().find(|p| p.0 + 1 >= g).map(|p| (p.1, p.2)))
                    .collect();
                figure.series.push(Series {
                    name: format!("{} (mean of {})", stats.recipe, members.len()),
                    points: band.iter().map(|p| (p.1, p.2)).collect(),
                    dots: true,
                    marks,
                    band: band.iter().map(|p| (p.1, p.3, p.4)).collect(),
                });
            }
        }
        let stem = if by_flops {
            "val_vs_flops"
        } else {
            "val_vs_step"
        };
        plot_figure(
            &figure,
            &dir.join(format!("{stem}.png")),
            &dir.join(format!("{stem}.svg")),
        )?;
    }
    Ok(())
}

/// Reads every run directory `dir/<run>` of `plan`, builds the report, and writes
/// `report.md`, `report.json` and the plots into `dir`.
pub fn write_report(dir: &Path, plan: &Plan) -> Result<ExperimentReport, ExecError> {
    let exp = ExperimentDir::new(dir);
    let results = plan
        .runs
        .iter()
        .map(|rp| RunResult::read(&exp.run(&rp.spec.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let report = build_report(plan, &results)?;
    let md = exp.report_md();
    write_atomic(&md, to_markdown(&report).as_bytes())
        .map_err(|e| ExecError::io("write", &md, e))?;
    let json = exp.report_json();
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    write_atomic(&json, text.as_bytes()).map_err(|e| ExecError::io("write", &json, e))?;
    plots(dir, &report, &results)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(u64, f64, usize)]) -> Vec<(u64, f64, usize)> {
        v.to_vec()
    }

    #[test]
    fn interpolates_between_evaluations() {
        let p = pts(&[(0, 4.0, 6), (10, 2.0, 6)]);
        assert_eq!(value_at(&p, 5), Some(3.0));
        assert_eq!(value_at(&p, 10), Some(2.0));
        assert_eq!(value_at(&p, 11), None);
    }

    #[test]
    fn rise_is_the_peak_after_growth_and_the_steps_until_back() {
        // Grown at 20 from 2.5: up to 3.1 by step 39, back below 2.5 at step 59.
        let p = pts(&[
            (19, 2.5, 0),
            (19, 2.6, 6),
            (29, 2.9, 6),
            (39, 3.1, 6),
            (49, 2.7, 6),
            (59, 2.4, 6),
            (69, 2.2, 6),
        ]);
        let (r, back) = rise(&p, 20, 0, 6, None).expect("evaluated");
        assert!((r - 0.6).abs() < 1e-12, "{r}");
        assert_eq!(back, Some(40));
        // Already lower on the growth row: back after 0 steps.
        let q = pts(&[(19, 2.5, 2), (20, 2.4, 6), (29, 2.3, 6)]);
        assert_eq!(rise(&q, 20, 2, 6, None), Some((2.4 - 2.5, Some(0))));
        // Below at first, then above: "back" is counted from the peak, not from the dip.
        let r = pts(&[
            (19, 2.5, 2),
            (20, 2.4, 6),
            (29, 2.7, 6),
            (39, 2.6, 6),
            (49, 2.45, 6),
        ]);
        let (v, back) = rise(&r, 20, 2, 6, None).expect("evaluated");
        assert!((v - 0.2).abs() < 1e-12, "{v}");
        assert_eq!(back, Some(30));
        // A later growth bounds the window, and a loss that never comes back says so.
        let (r, back) = rise(&p, 20, 0, 6, Some(45)).expect("evaluated");
        assert!((r - 0.6).abs() < 1e-12);
        assert_eq!(back, None);
    }

    /// A finished run of `rp` ending at `final_val`, evaluated at steps 9 and 19.
    fn result(rp: &crate::plan::ir::RunPlan, final_val: f64) -> RunResult {
        let row = |step: u64, v: f64| MetricRow {
            step,
            tokens: step * 128,
            flops: step as f64 * 1e9,
            train_loss: v,
            val_loss: Some(v),
            lr: 1e-3,
            depth: 2,
            segment: 0,
            tok_per_s: 1e4,
            wall_s: step as f64,
        };
        RunResult {
            summary: Summary {
                run: rp.spec.name.clone(),
                device: "cpu".into(),
                precision: Default::default(),
                precision_note: None,
                final_train_loss: final_val,
                final_val_loss: final_val,
                total_steps: rp.spec.total_steps,
                total_tokens: 0,
                flops: rp.flops,
                fixed_flops: rp.fixed_flops,
                ratio: rp.ratio,
                growth_steps: vec![],
                wall_s: 1.0,
                warmup_s: 0.0,
                train_s: 1.0,
                segments: vec![],
                peers: vec![],
            },
            rows: vec![row(9, final_val + 1.0), row(19, final_val)],
        }
    }

    #[test]
    fn seeded_report_pairs_each_run_with_the_reference_at_its_seed() {
        use crate::plan::compile::compile_experiment;
        use crate::plan::fixtures::{run, tiny};
        use crate::plan::spec::{ExperimentSpec, ScheduleSpec};
        let flat = ScheduleSpec::Constant { warmup_steps: 0 };
        let runs = [
            run("a", tiny(), 2, vec![], 20, flat),
            run("b", tiny(), 1, vec![], 20, flat),
            run("c", tiny(), 0, vec![], 20, flat),
        ];
        let exp = ExperimentSpec {
            name: "ex".into(),
            runs: vec!["a".into(), "b".into(), "c".into()],
            reference: "a".into(),
            seeds: vec![0, 1, 2],
            frontier: vec![],
        };
        let plan = compile_experiment(&exp, &runs);
        // Per seed: a = 1.0, 1.5, 2.0; b = a + 0.19, 0.20, 0.21 (a clear, paired 0.2); c = a
        // plus -0.03, +0.04, 0 (a swing of both signs). Seed effects (0.5) dwarf both gaps.
        let finals = |recipe: &str, seed: u64| {
            let a = 1.0 + 0.5 * seed as f64;
            a + match recipe {
                "a" => 0.0,
                "b" => [0.19, 0.2, 0.21][seed as usize],
                _ => [-0.03, 0.04, 0.0][seed as usize],
            }
        };
        let results: Vec<RunResult> = plan
            .runs
            .iter()
            .map(|rp| result(rp, finals(rp.recipe(), rp.spec.seed)))
            .collect();
        let report = build_report(&plan, &results).expect("every run finished");
        assert_eq!(report.seeds, vec![0, 1, 2]);
        assert_eq!(report.runs.len(), 9);
        // Per-seed gaps are against the same seed's reference.
        let b1 = report
            .runs
            .iter()
            .find(|r| r.run == "b@seed1")
            .expect("b@seed1");
        assert!((b1.gap - 0.2 / 1.5).abs() < 1e-9, "{}", b1.gap);
        let stats = |name: &str| {
            report
                .recipes
                .iter()
                .find(|s| s.recipe == name)
                .expect(name)
        };
        let a = stats("a");
        assert_eq!(a.final_val_loss, vec![1.0, 1.5, 2.0]);
        let sa = a.spread.as_ref().expect("finite");
        assert!((sa.mean - 1.5).abs() < 1e-12 && (sa.sd.expect("n = 3") - 0.5).abs() < 1e-12);
        assert_eq!(a.gap, None, "the reference has no gap to itself");
        let gb = stats("b").gap.clone().expect("three paired seeds");
        let half = 4.302_652_7 * 0.01 / 3f64.sqrt();
        assert!((gb.mean - 0.2).abs() < 1e-9);
        assert!((gb.low - (0.2 - half)).abs() < 1e-6 && !gb.within_noise());
        let gc = stats("c").gap.clone().expect("three paired seeds");
        assert!(gc.within_noise(), "{gc:?}");
        // Ordering by mean: a (1.5) < c (1.5033) < b (1.7); c - a within noise, b - c not.
        let order: Vec<(&str, &str, bool)> = report
            .orderings
            .iter()
            .map(|o| {
                let d = o.difference.as_ref().expect("paired");
                (o.lower.as_str(), o.higher.as_str(), d.within_noise())
            })
            .collect();
        assert_eq!(order, [("a", "c", true), ("c", "b", false)]);
        let md = to_markdown(&report);
        assert!(md.contains("## Over 3 seeds (0, 1, 2)"), "{md}");
        assert!(
            md.contains("| b | 1.7000 | 0.5100 | 1.1900 | 2.2100 | +0.2000 ["),
            "{md}"
        );
        assert!(md.contains("3. `b`: +0.1967 ["), "{md}");
        assert!(
            md.contains("2. `c`: +0.0033 [") && md.contains("] within noise\n3."),
            "{md}"
        );
        assert!(md.contains("| b@seed2 |"), "{md}");
        // A diverged seed is not averaged away.
        let mut broken = results.clone();
        broken[4].summary.final_val_loss = f64::NAN;
        let r = build_report(&plan, &broken).expect("report");
        let b = r.recipes.iter().find(|s| s.recipe == "b").expect("b");
        assert_eq!(b.spread, None);
        assert_eq!(b.gap.as_ref().map(|g| g.n), Some(2));
        assert!(to_markdown(&r).contains("| b | diverged |"));
    }

    #[test]
    fn frontier_gives_each_run_its_speedup_at_matched_loss() {
        use crate::plan::compile::compile_experiment;
        use crate::plan::fixtures::{run, tiny, wsd};
        use crate::plan::spec::ExperimentSpec;
        // The reference `a` at 20 steps, its frontier at 5 and 10 steps: warmup in steps, so
        // the three share their stable phase. `b` grows 0 -> 2; `c` and `d` are fixed copies.
        let grown = vec![crate::plan::fixtures::grow(10, 0, 2)];
        let runs = [
            run("a", tiny(), 2, vec![], 20, wsd(2, 2)),
            run("b", tiny(), 0, grown, 20, wsd(2, 2)),
            run("c", tiny(), 2, vec![], 20, wsd(2, 2)),
            run("d", tiny(), 2, vec![], 20, wsd(2, 2)),
            run("a_q", tiny(), 2, vec![], 5, wsd(2, 1)),
            run("a_h", tiny(), 2, vec![], 10, wsd(2, 1)),
        ];
        let exp = |seeds: Vec<u64>| ExperimentSpec {
            name: "ex".into(),
            runs: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            reference: "a".into(),
            seeds,
            frontier: vec!["a_q".into(), "a_h".into()],
        };
        // Frontier: 5 steps -> 1.5, 10 -> 1.2, 20 -> 1.0. b ends halfway between the last two
        // (1.1), c below the whole frontier (0.9), d above it (2.0).
        let finals = |recipe: &str| match recipe {
            "a" => 1.0,
            "b" => 1.1,
            "c" => 0.9,
            "d" => 2.0,
            "a_q" => 1.5,
            _ => 1.2,
        };
        for seeds in [vec![], vec![0, 1]] {
            let plan = compile_experiment(&exp(seeds.clone()), &runs);
            assert_eq!(plan.runs.len(), 6 * seeds.len().max(1));
            let results: Vec<RunResult> = plan
                .runs
                .iter()
                .map(|rp| result(rp, finals(rp.recipe())))
                .collect();
            let report = build_report(&plan, &results).expect("every run finished");
            let by = |recipe: &str| {
                report
                    .runs
                    .iter()
                    .zip(&plan.runs)
                    .find(|(_, rp)| rp.recipe() == recipe)
                    .expect(recipe)
            };
            let flops = |recipe: &str| by(recipe).1.flops;
            let (b, b_plan) = by("b");
            let x = b.speedup_at_matched_loss.expect("b is inside the frontier");
            let at = (flops("a_h").exact * flops("a").exact).sqrt();
            assert!((x.exact - at / b_plan.flops.exact).abs() < 1e-9, "{x:?}");
            assert!(x.exact > 1.0 && !x.bound);
            let at6 = (flops("a_h").six_n_embedding * flops("a").six_n_embedding).sqrt();
            assert!((x.six_n_embedding - at6 / b_plan.flops.six_n_embedding).abs() < 1e-9);
            // Every run took 1 s: the reference's time at that loss is 1 s too.
            assert!((x.wall - 1.0).abs() < 1e-12);
            let c = by("c").0.speedup_at_matched_loss.expect("a bound");
            assert!(c.bound && (c.exact - 1.0).abs() < 1e-12, "{c:?}");
            assert!(by("d").0.above_frontier && by("d").0.speedup_at_matched_loss.is_none());
            assert!(by("a_q").0.frontier && by("a_q").0.speedup_at_matched_loss.is_none());
            // The reference lies on its own frontier.
            let a = by("a").0.speedup_at_matched_loss.expect("on the frontier");
            assert!((a.exact - 1.0).abs() < 1e-12 && !a.bound);
            let md = to_markdown(&report);
            assert!(md.contains("| frontier |"), "{md}");
            assert!(md.contains("above the frontier"), "{md}");
            assert!(md.contains(">= 1.00x / >= 1.00x / >= 1.00x"), "{md}");
            assert!(md.contains("Speedup at matched loss: the compute"), "{md}");
            let json = serde_json::to_value(&report).expect("json");
            let first = &json["runs"][1]["speedup_at_matched_loss"];
            assert_eq!(first["bound"], false, "{first}");
            assert!(first["wall"].is_number() && first["six_n_non_embedding"].is_number());
            if !seeds.is_empty() {
                let stats = report.recipes.iter().find(|s| s.recipe == "b").expect("b");
                let s = stats.speedup.clone().expect("two seeds");
                assert_eq!(s.n, 2);
                assert!((s.mean - x.exact).abs() < 1e-9 && (s.low - s.mean).abs() < 1e-9);
                let d = report.recipes.iter().find(|s| s.recipe == "d").expect("d");
                assert_eq!(d.speedup_per_seed, vec![None, None]);
                assert!(md.contains(&format!("| {:.2}x [", x.exact)), "{md}");
            }
        }
        // Without a frontier: no figure, and one line that says how to add one.
        let plain = compile_experiment(
            &ExperimentSpec {
                frontier: vec![],
                ..exp(vec![])
            },
            &runs,
        );
        let results: Vec<RunResult> = plain.runs.iter().map(|rp| result(rp, 1.0)).collect();
        let report = build_report(&plain, &results).expect("report");
        assert!(
            report
                .runs
                .iter()
                .all(|r| r.speedup_at_matched_loss.is_none())
        );
        assert!(to_markdown(&report).contains("No speedup at matched loss: this experiment has no frontier. Add `frontier: [a_quarter, a_half]`"));
    }

    #[test]
    fn spike_is_after_minus_before_across_depths() {
        let p = pts(&[(9, 3.0, 0), (19, 2.5, 0), (19, 3.4, 6), (29, 2.4, 6)]);
        let s = spike(&p, 20, 0, 6).expect("both sides evaluated");
        assert!((s - 0.9).abs() < 1e-12);
    }
}
