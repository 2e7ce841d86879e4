//! Experiments: `runs` names recipes (P0103 otherwise), listed once each, non-empty, and the
//! `reference` is one of them (P0306). `seeds` is optional: a count `N >= 1` (seeds `0..N`) or
//! a non-empty list of distinct integers `>= 0` (P0201 / P0203 / P0306 otherwise).
//! `frontier` is optional: recipes that are not runs, each the reference but for its length
//! (P0306 otherwise). P0407 warns about a frontier point that shares less than half of its
//! steps with the reference (a warmup given as a fraction of the run, say), and about one whose
//! length is already measured, which is left out.

use crate::diagnostic::{Code, Diagnostic};
use crate::plan::compile::shared_prefix;
use crate::plan::spec::{ExperimentSpec, GrowthSpec, RunSpec, ScheduleSpec};
use crate::syntax::ast::{Ident, Item, Value, ValueKind};

use super::Checker;
use super::env::{Def, DefKind};
use super::fields::bind_fields;
use super::value;

/// The fields of an experiment (also the LSP's completions).
pub const EXPERIMENT_FIELDS: [&str; 4] = ["runs", "reference", "seeds", "frontier"];

/// More seeds than this is almost certainly a typo (`seeds: 50` instead of `seeds: 5`).
const MAX_SEEDS: u64 = 1000;

impl<'p> Checker<'p> {
    /// Checks an experiment; `resolved` holds the recipes that produced a `RunSpec`.
    pub fn check_experiment(
        &mut self,
        def: Def<'p>,
        resolved: &[RunSpec],
    ) -> Option<ExperimentSpec> {
        let Item::Experiment { name, fields } = def.item else {
            return None;
        };
        let before = self.d.iter().filter(|d| d.is_error()).count();
        let b = bind_fields(
            fields,
            &EXPERIMENT_FIELDS,
            &format!("experiment `{}`", name.name),
            &mut self.d,
        );
        let missing: Vec<String> = ["runs", "reference"]
            .into_iter()
            .filter(|r| b.get(r).is_none())
            .map(|r| format!("`{r}`"))
            .collect();
        if !missing.is_empty() {
            let list = super::recipe::and_list(&missing);
            self.d.push(
                Diagnostic::new(
                    Code::P0107,
                    name.span,
                    format!("experiment `{}` has no {list}", name.name),
                )
                .with_label(format!("{list} missing"))
                .with_help(
                    "list the recipes to compare and the one they are compared with: `runs: [fixed, grown], reference: fixed`",
                ),
            );
        }
        let runs = b.get("runs").and_then(|v| self.run_list(v, "runs"));
        let reference = b.get("reference").and_then(|v| match &v.kind {
            ValueKind::Ref(n, None) => Some(n),
            _ => {
                value::mismatch(v, "a run name", &mut self.d);
                None
            }
        });
        if let (Some((runs, list)), Some(r)) = (&runs, reference)
            && !runs.iter().any(|n| n.name == r.name)
        {
            let mut diag = Diagnostic::new(
                Code::P0306,
                r.span,
                format!("the reference `{}` is not one of the runs", r.name),
            )
            .with_label("not in `runs`")
            .with_secondary(list.span, "the runs");
            diag = diag.with_help(
                super::suggest::did_you_mean(&r.name, runs.iter().map(|n| n.name.as_str()))
                    .unwrap_or_else(|| format!("add `{}` to `runs`", r.name)),
            );
            self.d.push(diag);
        }
        let seeds = match b.get("seeds") {
            Some(v) => self.seed_list(v),
            None => Some(Vec::new()),
        };
        let frontier = match b.get("frontier") {
            Some(v) => self.run_list(v, "frontier").map(|(names, _)| names),
            None => Some(Vec::new()),
        };
        if let (Some(frontier), Some((runs, _))) = (&frontier, &runs) {
            for f in frontier {
                if let Some(r) = runs.iter().find(|r| r.name == f.name) {
                    self.d.push(
                        Diagnostic::new(
                            Code::P0306,
                            f.span,
                            format!("`{}` is both a run and a frontier point", f.name),
                        )
                        .with_label("also in `runs`")
                        .with_secondary(r.span, "listed as a run here")
                        .with_help(
                            "the reference is already the frontier's longest point; list shorter \
                             copies of it in `frontier` and the runs to compare in `runs`",
                        ),
                    );
                }
            }
        }
        let errors = self.d.iter().filter(|d| d.is_error()).count() > before;
        let (runs, _) = runs?;
        let reference = reference?;
        let seeds = seeds?;
        let frontier = frontier?;
        let spec_of = |n: &str| resolved.iter().find(|r| r.name == n);
        if errors
            || !runs
                .iter()
                .chain(&frontier)
                .all(|r| spec_of(&r.name).is_some())
        {
            return None;
        }
        let reference_spec = spec_of(&reference.name)?;
        let mut lengths = vec![(reference_spec.total_steps, reference)];
        let mut ok = true;
        let mut points = Vec::new();
        for f in &frontier {
            let spec = spec_of(&f.name)?;
            ok &= self.frontier_point(f, spec, reference, reference_spec, !seeds.is_empty());
            // A warning, not an error: `--set steps=N` gives every recipe one length, and the
            // rest of the file must still run.
            if let Some((_, same)) = lengths.iter().find(|(t, _)| *t == spec.total_steps) {
                self.d.push(
                    Diagnostic::new(
                        Code::P0407,
                        f.span,
                        format!(
                            "frontier point `{}` has the same length as `{}` ({} steps): left \
                             out of the frontier",
                            f.name, same.name, spec.total_steps
                        ),
                    )
                    .with_label("a length already measured")
                    .with_help(
                        "each frontier point is one more length of the reference: 1/4 and 1/2 of \
                         its steps, for example",
                    ),
                );
                continue;
            }
            lengths.push((spec.total_steps, f));
            points.push(f.name.clone());
        }
        ok.then(|| ExperimentSpec {
            name: name.name.clone(),
            runs: runs.iter().map(|r| r.name.clone()).collect(),
            reference: reference.name.clone(),
            seeds,
            frontier: points,
        })
    }

    /// A frontier recipe must be the reference but for its length (run length, schedule in
    /// steps, evaluation and checkpoint cadence, growth steps; the seed too when the
    /// experiment sets the seeds): P0306 otherwise. P0407 when it shares less than half of its
    /// steps with the reference, so that training it costs nearly a whole run.
    fn frontier_point(
        &mut self,
        f: &Ident,
        spec: &RunSpec,
        reference: &Ident,
        reference_spec: &RunSpec,
        seeded: bool,
    ) -> bool {
        let r = reference_spec;
        let differs: Vec<&str> = [
            ("model", spec.model != r.model),
            ("data", spec.data != r.data),
            ("batch", spec.batch != r.batch),
            ("optimizer", spec.optimizer != r.optimizer),
            ("schedule", !same_kind(&spec.schedule, &r.schedule)),
            ("seed", !seeded && spec.seed != r.seed),
            ("start depth", spec.start_depth != r.start_depth),
            ("growths", !same_growths(&spec.growths, &r.growths)),
            ("eval_batches", spec.eval_batches != r.eval_batches),
        ]
        .into_iter()
        .filter_map(|(what, differs)| differs.then_some(what))
        .collect();
        if !differs.is_empty() {
            let list: Vec<String> = differs.iter().map(|w| format!("`{w}`")).collect();
            self.d.push(
                Diagnostic::new(
                    Code::P0306,
                    f.span,
                    format!(
                        "frontier point `{}` differs from the reference `{}` in more than its \
                         length: {}",
                        f.name,
                        reference.name,
                        super::recipe::and_list(&list)
                    ),
                )
                .with_label("not the reference at another length")
                .with_secondary(reference.span, "the reference")
                .with_help(format!(
                    "derive it from the reference and change only its length: `recipe {}_half = \
                     {} {{ steps = ... }}`",
                    reference.name, reference.name
                )),
            );
            return false;
        }
        let mut shared_spec = spec.clone();
        shared_spec.seed = r.seed;
        let shared = shared_prefix(&shared_spec, r);
        if 2 * shared < spec.total_steps {
            self.d.push(
                Diagnostic::new(
                    Code::P0407,
                    f.span,
                    format!(
                        "frontier point `{}` shares {shared} of its {} steps with the reference",
                        f.name, spec.total_steps
                    ),
                )
                .with_label("trained almost from scratch")
                .with_secondary(reference.span, "the reference")
                .with_help(
                    "a schedule whose warmup is a fraction of the run warms up for a different \
                     number of steps at each length; give the warmup in steps (`warmup: 100`) \
                     so that the lengths share their stable phase and only the decays are \
                     trained apart",
                ),
            );
        }
        true
    }

    /// `seeds: N` as `0..N`, or `seeds: [a, b, ...]` as written.
    fn seed_list(&mut self, v: &'p Value) -> Option<Vec<u64>> {
        let items = match &v.kind {
            ValueKind::Number(_) => {
                let n = value::integer(v, "seeds", 1, &mut self.d)?;
                if n > MAX_SEEDS {
                    value::out_of_range(
                        v.span,
                        format!("`seeds` must be at most {MAX_SEEDS}, found {n}"),
                        Some("each seed trains every run once more; list the seeds you need"),
                        &mut self.d,
                    );
                    return None;
                }
                return Some((0..n).collect());
            }
            ValueKind::List(items) => items,
            _ => {
                value::mismatch(v, "a seed count or a list of seeds", &mut self.d);
                return None;
            }
        };
        if items.is_empty() {
            self.empty_list(
                v,
                "seed",
                "list the seeds, `seeds: [0, 1, 2]`, or give a count, `seeds: 3`",
            );
            return None;
        }
        let mut seeds: Vec<(u64, &Value)> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(s) = value::integer(item, "seed", 0, &mut self.d) else {
                ok = false;
                continue;
            };
            if let Some((_, first)) = seeds.iter().find(|(f, _)| *f == s) {
                self.d.push(
                    Diagnostic::new(Code::P0306, item.span, format!("seed {s} is listed twice"))
                        .with_label("listed again here")
                        .with_secondary(first.span, "first listed here")
                        .with_help(
                            "list each seed once: a repeated seed trains the same run again",
                        ),
                );
                ok = false;
                continue;
            }
            seeds.push((s, item));
        }
        ok.then(|| seeds.into_iter().map(|(s, _)| s).collect())
    }

    /// P0306 for an empty `runs` or `seeds` list.
    fn empty_list(&mut self, v: &Value, what: &str, help: &str) {
        self.d.push(
            Diagnostic::new(
                Code::P0306,
                v.span,
                format!("an experiment needs at least one {what}"),
            )
            .with_label(format!("no {what}s"))
            .with_help(help),
        );
    }

    /// The recipe names of `runs` or `frontier`, each listed once.
    fn run_list(&mut self, v: &'p Value, field: &str) -> Option<(Vec<&'p Ident>, &'p Value)> {
        let ValueKind::List(items) = &v.kind else {
            value::mismatch(v, "a list of recipes", &mut self.d);
            return None;
        };
        if items.is_empty() {
            let (what, help) = if field == "frontier" {
                (
                    "frontier point",
                    "list the reference at shorter lengths, `frontier: [fixed_quarter, \
                     fixed_half]`, or leave `frontier` out",
                )
            } else {
                ("run", "list the recipes to compare: `runs: [fixed, grown]`")
            };
            self.empty_list(v, what, help);
            return None;
        }
        let mut names: Vec<&Ident> = Vec::new();
        let mut ok = true;
        for item in items {
            let ValueKind::Ref(n, None) = &item.kind else {
                value::mismatch(item, "a recipe name", &mut self.d);
                ok = false;
                continue;
            };
            if let Some(first) = names.iter().find(|f| f.name == n.name) {
                self.d.push(
                    Diagnostic::new(
                        Code::P0306,
                        n.span,
                        format!("run `{}` is listed twice", n.name),
                    )
                    .with_label("listed again here")
                    .with_secondary(first.span, "first listed here")
                    .with_help("list each run once"),
                );
                ok = false;
                continue;
            }
            match self.env.get(&n.name) {
                Some(d) if d.kind == DefKind::Recipe => {}
                Some(d) => {
                    self.d.push(
                        Diagnostic::new(
                            Code::P0103,
                            n.span,
                            format!("`{}` is {}, not a recipe", n.name, d.kind.article()),
                        )
                        .with_label("not a recipe")
                        .with_secondary(d.name.span, format!("`{}` is defined here", n.name)),
                    );
                    ok = false;
                }
                None => {
                    self.unknown_name(n, DefKind::Recipe);
                    ok = false;
                }
            }
            names.push(n);
        }
        ok.then_some((names, v))
    }
}

/// Schedules of the same rule and shape; their step counts may differ with the length.
fn same_kind(a: &ScheduleSpec, b: &ScheduleSpec) -> bool {
    use ScheduleSpec::*;
    match (a, b) {
        (
            Wsd {
                shape: sa,
                floor: fa,
                ..
            },
            Wsd {
                shape: sb,
                floor: fb,
                ..
            },
        ) => sa == sb && fa == fb,
        (Cosine { floor: fa, .. }, Cosine { floor: fb, .. }) => fa == fb,
        (Constant { .. }, Constant { .. }) => true,
        _ => false,
    }
}

/// The same growths but for their steps.
fn same_growths(a: &[GrowthSpec], b: &[GrowthSpec]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| GrowthSpec { at_step: 0, ..*x } == GrowthSpec { at_step: 0, ..*y })
}
