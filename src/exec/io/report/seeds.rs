//! The over-seeds part of a report: per recipe, the spread of the final validation loss and
//! the paired gap to the reference; the ordering of the recipes by mean final loss.
//!
//! Invariants:
//! - a recipe's figures are in the order of `plan.seeds`, and a paired figure uses only the
//!   seeds at which both recipes have a finite final loss (a diverged seed shows as NaN in the
//!   per-seed lists and removes that seed from the pairs, which the `n` of the interval says);
//! - an ordering step compares neighbours in the sorted order, the higher mean minus the lower,
//!   so "within noise" on a step means those two recipes cannot be told apart.

use serde::{Deserialize, Serialize};

use super::RunReport;
use super::stats::{Interval, Spread, mean_interval, paired_interval, spread};
use crate::plan::ir::Plan;

/// One recipe of a seeded experiment, over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipeStats {
    pub recipe: String,
    pub seeds: Vec<u64>,
    /// Final validation loss per seed.
    pub final_val_loss: Vec<f64>,
    /// Their spread (`None` when a seed diverged).
    pub spread: Option<Spread>,
    /// Final validation loss minus the reference's, per seed, in nats.
    pub gap_nats: Vec<f64>,
    /// The paired gap to the reference (nats) with its 95% interval; `None` for the reference
    /// itself and with fewer than two paired seeds.
    pub gap: Option<Interval>,
    /// Mean over seeds of the relative gap `(val - val_ref) / val_ref`.
    pub gap_relative_mean: f64,
    /// t_mix per seed (`None`: not mixed, or no growth).
    pub t_mix: Vec<Option<u64>>,
    /// Speedup at matched loss in exact FLOPs per seed (`None`: above the frontier, no
    /// frontier, or a frontier point); empty without a frontier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speedup_per_seed: Vec<Option<f64>>,
    /// Geometric mean of the per-seed speedups that exist, with the 95% interval of their mean
    /// logarithm, exponentiated (`low`/`high` equal the mean with one seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup: Option<Interval>,
    /// Some seed's speedup is a lower bound (the run ended below the frontier).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub speedup_bound: bool,
}

/// The geometric mean of ratios with the interval of their mean log, exponentiated; a single
/// figure is its own mean and interval.
fn ratio_interval(xs: &[f64]) -> Option<Interval> {
    let logs: Vec<f64> = xs.iter().map(|x| x.ln()).collect();
    let i = match mean_interval(&logs) {
        Some(i) => i,
        None if logs.len() == 1 && logs[0].is_finite() => Interval {
            n: 1,
            mean: logs[0],
            low: logs[0],
            high: logs[0],
        },
        None => return None,
    };
    Some(Interval {
        n: i.n,
        mean: i.mean.exp(),
        low: i.low.exp(),
        high: i.high.exp(),
    })
}

/// One step of the ordering: `higher` has the higher mean final loss than `lower`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ordering {
    pub lower: String,
    pub higher: String,
    /// `higher - lower`, paired by seed, with its 95% interval.
    pub difference: Option<Interval>,
}

/// Finite pairs `(a, b)` of two per-seed lists.
fn pairs(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .unzip()
}

/// Per-recipe statistics and the ordering; both empty for an experiment without `seeds`.
pub fn over_seeds(plan: &Plan, runs: &[RunReport]) -> (Vec<RecipeStats>, Vec<Ordering>) {
    if plan.seeds.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut recipes: Vec<String> = Vec::new();
    for rp in &plan.runs {
        if !recipes.iter().any(|r| r == rp.recipe()) {
            recipes.push(rp.recipe().to_string());
        }
    }
    // The report of `recipe` at `seed`, if that run is in the plan.
    let at = |recipe: &str, seed: u64| {
        plan.runs
            .iter()
            .zip(runs)
            .find(|(rp, _)| rp.recipe() == recipe && rp.spec.seed == seed)
            .map(|(_, r)| r)
    };
    let finals = |recipe: &str| -> Vec<f64> {
        plan.seeds
            .iter()
            .map(|&s| at(recipe, s).map_or(f64::NAN, |r| r.final_val_loss))
            .collect()
    };
    let speedups = |recipe: &str| -> Vec<Option<f64>> {
        if plan.frontier.is_empty() {
            return Vec::new();
        }
        plan.seeds
            .iter()
            .map(|&s| {
                at(recipe, s)
                    .and_then(|r| r.speedup_at_matched_loss)
                    .map(|x| x.exact)
            })
            .collect()
    };
    let reference = plan.reference.clone().unwrap_or_default();
    let ref_finals = finals(&reference);
    let stats: Vec<RecipeStats> = recipes
        .iter()
        .map(|recipe| {
            let vals = finals(recipe);
            let (a, b) = pairs(&vals, &ref_finals);
            let gap_nats: Vec<f64> = vals.iter().zip(&ref_finals).map(|(v, r)| v - r).collect();
            let relative: Vec<f64> = a.iter().zip(&b).map(|(v, r)| (v - r) / r).collect();
            RecipeStats {
                recipe: recipe.clone(),
                seeds: plan.seeds.clone(),
                spread: spread(&vals),
                gap: if *recipe == reference {
                    None
                } else {
                    paired_interval(&a, &b)
                },
                gap_relative_mean: relative.iter().sum::<f64>() / relative.len().max(1) as f64,
                gap_nats,
                t_mix: plan
                    .seeds
                    .iter()
                    .map(|&s| at(recipe, s).and_then(|r| r.t_mix))
                    .collect(),
                speedup_per_seed: speedups(recipe),
                speedup: ratio_interval(
                    &speedups(recipe).into_iter().flatten().collect::<Vec<f64>>(),
                ),
                speedup_bound: plan.seeds.iter().any(|&s| {
                    at(recipe, s)
                        .and_then(|r| r.speedup_at_matched_loss)
                        .is_some_and(|x| x.bound)
                }),
                final_val_loss: vals,
            }
        })
        .collect();
    let mean = |s: &RecipeStats| {
        let (v, _) = pairs(&s.final_val_loss, &s.final_val_loss);
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let mut sorted: Vec<&RecipeStats> = stats.iter().collect();
    sorted.sort_by(|x, y| mean(x).total_cmp(&mean(y)));
    let orderings = sorted
        .windows(2)
        .map(|w| {
            let (a, b) = pairs(&w[1].final_val_loss, &w[0].final_val_loss);
            Ordering {
                lower: w[0].recipe.clone(),
                higher: w[1].recipe.clone(),
                difference: paired_interval(&a, &b),
            }
        })
        .collect();
    (stats, orderings)
}

fn interval_text(i: &Option<Interval>) -> String {
    match i {
        None => "-".into(),
        Some(i) => format!(
            "{:+.4} [{:+.4}, {:+.4}]{}",
            i.mean,
            i.low,
            i.high,
            if i.within_noise() {
                " within noise"
            } else {
                ""
            }
        ),
    }
}

/// `1.46x [1.31, 1.62] (3 seeds)`, `>= 2.10x ...` when a seed is a bound, with the seeds that
/// ended above the frontier named.
fn speedup_text(s: &RecipeStats) -> String {
    let above = s.speedup_per_seed.iter().filter(|x| x.is_none()).count();
    let mut text = match &s.speedup {
        None => "above the frontier".to_string(),
        Some(i) => format!(
            "{}{:.2}x [{:.2}, {:.2}] ({} seed{})",
            if s.speedup_bound { ">= " } else { "" },
            i.mean,
            i.low,
            i.high,
            i.n,
            if i.n == 1 { "" } else { "s" }
        ),
    };
    if above > 0 && s.speedup.is_some() {
        text.push_str(&format!("; {above} above the frontier"));
    }
    text
}

/// The over-seeds tables: one row per recipe, then the ordering.
pub fn markdown(r: &super::ExperimentReport) -> String {
    let seeds: Vec<String> = r.seeds.iter().map(u64::to_string).collect();
    let mut out = format!(
        "## Over {} seeds ({})\n\nFinal validation loss over seeds: mean, sample standard \
         deviation, min and max. Gap: the run minus the reference at the same seed, in nats, \
         averaged over seeds, with its 95% interval (Student t, n - 1 degrees of freedom); \
         \"within noise\" where the interval covers 0.\n\n",
        r.seeds.len(),
        seeds.join(", ")
    );
    let with_frontier = !r.frontier.is_empty();
    out.push_str(
        "| run | mean | sd | min | max | gap to reference, nats [95% interval] | gap % (mean) | \
         t_mix per seed |",
    );
    out.push_str(if with_frontier {
        " speedup at matched loss, exact FLOPs [95% interval] |\n|---|---|---|---|---|---|---|---|---|\n"
    } else {
        "\n|---|---|---|---|---|---|---|---|\n"
    });
    for s in &r.recipes {
        let (mean, sd, min, max) = match &s.spread {
            Some(p) => (
                format!("{:.4}", p.mean),
                p.sd.map_or("-".into(), |v| format!("{v:.4}")),
                format!("{:.4}", p.min),
                format!("{:.4}", p.max),
            ),
            None => ("diverged".into(), "-".into(), "-".into(), "-".into()),
        };
        let gap = if s.recipe == r.reference {
            "reference".to_string()
        } else {
            interval_text(&s.gap)
        };
        let grows = r.runs.iter().any(|x| {
            x.replica.as_ref().is_some_and(|p| p.recipe == s.recipe) && !x.growth_steps.is_empty()
        });
        let mix: Vec<String> = s
            .t_mix
            .iter()
            .map(|t| t.map_or("not mixed".into(), |v| v.to_string()))
            .collect();
        let speedup = if !with_frontier {
            String::new()
        } else if r.frontier.contains(&s.recipe) {
            " frontier |".to_string()
        } else {
            format!(" {} |", speedup_text(s))
        };
        out.push_str(&format!(
            "| {} | {mean} | {sd} | {min} | {max} | {gap} | {} | {} |{speedup}\n",
            s.recipe,
            if s.recipe == r.reference {
                "-".to_string()
            } else {
                format!("{:+.2}%", 100.0 * s.gap_relative_mean)
            },
            if grows { mix.join(", ") } else { "-".into() },
        ));
    }
    if !r.orderings.is_empty() {
        out.push_str(
            "\nOrdering by mean final validation loss, lowest first; each step is the next run \
             minus the one before it, paired by seed, with its 95% interval:\n\n",
        );
        for (i, o) in r.orderings.iter().enumerate() {
            if i == 0 {
                out.push_str(&format!("1. `{}`\n", o.lower));
            }
            out.push_str(&format!(
                "{}. `{}`: {}\n",
                i + 2,
                o.higher,
                interval_text(&o.difference)
            ));
        }
    }
    out.push('\n');
    out
}
