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

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::data::write_atomic;
use super::error::ExecError;
use super::metrics::{MetricRow, Summary, read_metrics};
use super::plot::{Figure, Series, plot_figure};
use crate::plan::flops::Flops;
use crate::plan::ir::{Plan, Sharing};
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
    pub fn read(dir: &Path) -> Result<RunResult, ExecError> {
        Ok(RunResult {
            summary: Summary::read(&dir.join("summary.json"))?,
            rows: read_metrics(&dir.join("metrics.jsonl"))?,
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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    pub experiment: String,
    pub reference: String,
    pub device: String,
    pub runs: Vec<RunReport>,
    pub sharing: Sharing,
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

/// Builds the report of `plan` (an experiment) from its runs' results, in plan order.
pub fn build_report(plan: &Plan, results: &[RunResult]) -> Result<ExperimentReport, ExecError> {
    let reference = plan.reference.clone().unwrap_or_default();
    let find = |name: &str| results.iter().find(|r| r.summary.run == name);
    let Some(ref_run) = find(&reference) else {
        return Err(ExecError::new(
            super::error::ErrorKind::Io,
            format!("the reference run `{reference}` has no finished result"),
        )
        .with_help("finish the experiment first: progc run FILE --experiment NAME"));
    };
    let ref_points = ref_run.val_points();
    let mut runs = Vec::new();
    for rp in &plan.runs {
        let Some(res) = find(&rp.spec.name) else {
            continue;
        };
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
            run: s.run.clone(),
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
        });
    }
    Ok(ExperimentReport {
        experiment: plan.experiment.clone().unwrap_or_default(),
        reference,
        device: ref_run.summary.device.clone(),
        runs,
        sharing: plan.sharing,
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
    out.push_str(
        "| run | final val loss | gap | FLOPs (exact) | FLOPs/ref exact | 6N emb | 6N non-emb | \
         wall s | wall/ref | growth at | spike | rise (back after) | t_mix |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
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
        out.push_str(&format!(
            "| {} | {:.4} | {} | {} | {:.3} | {:.3} | {:.3} | {:.1} | {:.2} | {} | {} | {} | {} |\n",
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
        ));
    }
    let s = &r.sharing;
    out.push_str(&format!(
        "\nShared prefixes: {} steps trained instead of {} ({} exact FLOPs instead of {}, {:.1}% \
         saved by sharing).\n",
        s.steps_trained,
        s.steps_separate,
        human(s.flops_trained.exact),
        human(s.flops_separate.exact),
        100.0 * (1.0 - s.flops_trained.ratio(s.flops_separate).exact),
    ));
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

/// Validation loss of every run against steps and against exact FLOPs, growths ringed.
fn plots(dir: &Path, r: &ExperimentReport, results: &[RunResult]) -> Result<(), ExecError> {
    for (x_name, by_flops) in [("step", false), ("training FLOPs (exact)", true)] {
        let mut figure = Figure {
            title: format!("{}: validation loss", r.experiment),
            x_label: x_name.to_string(),
            y_label: "val loss".into(),
            marker_name: "growth".into(),
            ..Figure::default()
        };
        for run in &r.runs {
            let Some(res) = results.iter().find(|x| x.summary.run == run.run) else {
                continue;
            };
            let x = |row: &MetricRow| if by_flops { row.flops } else { row.step as f64 };
            let points: Vec<(f64, f64)> = res
                .rows
                .iter()
                .filter_map(|row| row.val_loss.map(|v| (x(row), v)))
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
            figure.series.push(Series {
                name: run.run.clone(),
                points,
                dots: true,
                marks,
            });
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
    let results = plan
        .runs
        .iter()
        .map(|rp| RunResult::read(&dir.join(&rp.spec.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let report = build_report(plan, &results)?;
    let md = dir.join("report.md");
    write_atomic(&md, to_markdown(&report).as_bytes())
        .map_err(|e| ExecError::io("write", &md, e))?;
    let json = dir.join("report.json");
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

    #[test]
    fn spike_is_after_minus_before_across_depths() {
        let p = pts(&[(9, 3.0, 0), (19, 2.5, 0), (19, 3.4, 6), (29, 2.4, 6)]);
        let s = spike(&p, 20, 0, 6).expect("both sides evaluated");
        assert!((s - 0.9).abs() < 1e-12);
    }
}
