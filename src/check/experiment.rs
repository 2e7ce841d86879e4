//! Experiments: `runs` names recipes (P0103 otherwise), listed once each, non-empty, and the
//! `reference` is one of them (P0306). `seeds` is optional: a count `N >= 1` (seeds `0..N`) or
//! a non-empty list of distinct integers `>= 0` (P0201 / P0203 / P0306 otherwise).

use std::collections::HashSet;

use crate::diagnostic::{Code, Diagnostic};
use crate::plan::spec::ExperimentSpec;
use crate::syntax::ast::{Ident, Item, Value, ValueKind};

use super::Checker;
use super::env::{Def, DefKind};
use super::fields::bind_fields;
use super::value;

/// More seeds than this is almost certainly a typo (`seeds: 50` instead of `seeds: 5`).
const MAX_SEEDS: u64 = 1000;

impl<'p> Checker<'p> {
    /// Checks an experiment; `resolved` holds the recipes that produced a `RunSpec`.
    pub fn check_experiment(
        &mut self,
        def: Def<'p>,
        resolved: &HashSet<String>,
    ) -> Option<ExperimentSpec> {
        let Item::Experiment { name, fields } = def.item else {
            return None;
        };
        let before = self.d.iter().filter(|d| d.is_error()).count();
        let b = bind_fields(
            fields,
            &["runs", "reference", "seeds"],
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
        let runs = b.get("runs").and_then(|v| self.run_list(v));
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
        let errors = self.d.iter().filter(|d| d.is_error()).count() > before;
        let (runs, _) = runs?;
        let reference = reference?;
        let seeds = seeds?;
        if errors || !runs.iter().all(|r| resolved.contains(&r.name)) {
            return None;
        }
        Some(ExperimentSpec {
            name: name.name.clone(),
            runs: runs.iter().map(|r| r.name.clone()).collect(),
            reference: reference.name.clone(),
            seeds,
        })
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

    fn run_list(&mut self, v: &'p Value) -> Option<(Vec<&'p Ident>, &'p Value)> {
        let ValueKind::List(items) = &v.kind else {
            value::mismatch(v, "a list of recipes", &mut self.d);
            return None;
        };
        if items.is_empty() {
            self.empty_list(
                v,
                "run",
                "list the recipes to compare: `runs: [fixed, grown]`",
            );
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
