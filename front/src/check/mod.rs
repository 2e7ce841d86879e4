//! The checker: resolves names, inheritance, types, units and times of a loaded program, applies
//! `--set` overrides, enforces the method rules, and produces the fully resolved
//! `plan::spec::ProgramSpec`.
//!
//! Invariants:
//! - analysis never stops at the first error: every definition is checked once, used or not, and
//!   every recipe and experiment is resolved on its own;
//! - one root cause, one diagnostic: a definition that failed yields `None` silently to its
//!   users, and exact duplicates (an inherited statement checked again for a child) are removed;
//! - a `RunSpec` is produced only for a recipe that raised no error, and it satisfies every
//!   invariant listed in `plan::spec`; an `ExperimentSpec` only when all its runs resolved;
//! - diagnostics come out sorted by (file, span start, code).

mod component;
mod env;
mod experiment;
mod fields;
mod model;
mod recipe;
mod rules;
pub mod suggest;
mod tokenizer;
mod value;

// The language's vocabulary, for editors (completion in `lsp`).
pub use component::{INIT_OPTIONS, OPTIMIZER_FUNCS, SCHEDULE_FUNCS, SPLIT_OPTIONS};
pub use experiment::EXPERIMENT_FIELDS;
pub use model::MODEL_FIELDS;
pub use recipe::RECIPE_KEYS;
pub use rules::GROWTH_OPTIONS;
pub use tokenizer::TOKENIZER_FUNCS;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::diagnostic::{Code, Diagnostic, Severity, SourceMap};
use crate::plan::spec::ProgramSpec;
use crate::syntax::ast::Ident;
use crate::syntax::{Program, load_source};

use component::Component;
use env::{Def, DefKind, Env};
use model::Model;
use value::Sink;

/// The diagnostics a user of `program` is shown: every error, and the warnings located in the
/// entry file or the command line's overrides. Warnings in imported files are dropped, as
/// rustc does not lint a crate's dependencies: the std library's deliberate ablations warn
/// when `std/paper.prog` itself is checked, not in every file that imports it.
pub fn quiet_imports(program: &Program, diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let imported: Vec<_> = program.modules.iter().skip(1).map(|m| m.file).collect();
    diags
        .into_iter()
        .filter(|d| d.severity == Severity::Error || !imported.contains(&d.span.file))
        .collect()
}

/// Checks a whole loaded program: every recipe and experiment in every module (imports
/// included), `--set` overrides applied to every recipe. Reports every problem in one pass.
pub fn check(program: &Program) -> (ProgramSpec, Vec<Diagnostic>) {
    let mut d = Vec::new();
    let env = Env::build(program, &mut d);
    let mut c = Checker {
        program,
        env,
        d,
        models: HashMap::new(),
        comps: HashMap::new(),
        in_progress: Vec::new(),
    };
    c.check_override_keys();
    let mut spec = ProgramSpec::default();
    let defs: Vec<Def> = c.env.all().collect();
    for def in &defs {
        match def.kind {
            DefKind::Model => {
                c.named_model(def.name);
            }
            DefKind::Data | DefKind::Schedule | DefKind::Optimizer => {
                c.named_component(def.name, def.kind);
            }
            DefKind::Recipe => {
                if let Some(run) = c.check_recipe(*def) {
                    spec.runs.push(run);
                }
            }
            DefKind::Experiment => {}
        }
    }
    for def in &defs {
        if def.kind == DefKind::Experiment
            && let Some(exp) = c.check_experiment(*def, &spec.runs)
        {
            spec.experiments.push(exp);
        }
    }
    (spec, finish(c.d))
}

/// Convenience for tests: load_source + check.
pub fn check_source(
    name: &str,
    text: &str,
    sets: &[String],
) -> (ProgramSpec, SourceMap, Vec<Diagnostic>) {
    let (program, mut diags) = load_source(name, text, sets);
    let (spec, more) = check(&program);
    diags.extend(more);
    (spec, program.sources, finish(diags))
}

/// Sorts by (file, start, code) and drops exact duplicates.
fn finish(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by(|a, b| {
        (a.span.file, a.span.start, a.code, a.span.end, &a.message).cmp(&(
            b.span.file,
            b.span.start,
            b.code,
            b.span.end,
            &b.message,
        ))
    });
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len());
    for diag in diags {
        // Equal diagnostics sort next to each other (same key), so only the tail group matters.
        let dup = out.iter().rev().take_while(|o| {
            (o.span.file, o.span.start, o.code, o.span.end, &o.message)
                == (
                    diag.span.file,
                    diag.span.start,
                    diag.code,
                    diag.span.end,
                    &diag.message,
                )
        });
        if dup.into_iter().any(|o| *o == diag) {
            continue;
        }
        out.push(diag);
    }
    out
}

/// State of one checking pass.
pub(crate) struct Checker<'p> {
    pub program: &'p Program,
    pub env: Env<'p>,
    pub d: Sink,
    /// Named models, checked once (`None`: it had errors, already reported).
    models: HashMap<String, Option<Model>>,
    /// Named data, schedules and optimizers, checked once.
    comps: HashMap<String, Option<Component>>,
    /// Names being resolved right now (alias cycles such as `schedule a = b; schedule b = a`).
    in_progress: Vec<String>,
}

impl<'p> Checker<'p> {
    /// The definition `n` names, which must be of kind `want`: P0103 (unknown, with a
    /// did-you-mean) or P0201 (another kind) otherwise.
    fn lookup(&mut self, n: &Ident, want: DefKind) -> Option<Def<'p>> {
        match self.env.get(&n.name) {
            Some(def) if def.kind == want => Some(def),
            Some(def) => {
                self.d.push(
                    Diagnostic::new(
                        Code::P0201,
                        n.span,
                        format!(
                            "expected {}, found {} `{}`",
                            want.article(),
                            def.kind.noun(),
                            n.name
                        ),
                    )
                    .with_label(format!("this is {}", def.kind.article()))
                    .with_secondary(def.name.span, format!("`{}` is defined here", n.name)),
                );
                None
            }
            None => {
                self.unknown_name(n, want);
                None
            }
        }
    }

    fn unknown_name(&mut self, n: &Ident, want: DefKind) {
        if self.env.is_broken(&n.name) {
            return; // its definition has a syntax error, already reported
        }
        let names = self.env.names_of(want);
        // `schedule = wsd` means the function more likely than a similar name.
        let help = if component::functions_of(want).contains(&n.name.as_str()) {
            Some(format!("`{0}` is a function: call it, `{0}(...)`", n.name))
        } else {
            suggest::did_you_mean(&n.name, names.iter().copied())
        };
        let mut diag = Diagnostic::new(
            Code::P0103,
            n.span,
            format!("cannot find {} `{}`", want.noun(), n.name),
        )
        .with_label(format!("not a known {}", want.noun()));
        if let Some(h) = help {
            diag = diag.with_help(h);
        }
        self.d.push(diag);
    }

    /// The definitions from the root ancestor down to `def`, or `None` when the chain is broken
    /// (unknown parent, a parent of another kind, a cycle): reported here, identically from
    /// every descendant, so de-duplication leaves one diagnostic per root cause.
    fn chain(&mut self, def: Def<'p>) -> Option<Vec<Def<'p>>> {
        let mut path = vec![def];
        let mut cur = def;
        while let Some(pid) = env_parent(cur) {
            let pdef = self.lookup(pid, def.kind)?;
            if let Some(i) = path.iter().position(|p| p.name.name == pdef.name.name) {
                self.report_cycle(&path[i..]);
                return None;
            }
            path.push(pdef);
            cur = pdef;
        }
        path.reverse();
        Some(path)
    }

    /// P0109 once per cycle: the same text whichever member it is found from.
    fn report_cycle(&mut self, members: &[Def<'p>]) {
        // Start from the member written first, following parents.
        let start = members
            .iter()
            .enumerate()
            .min_by_key(|(_, m)| (m.name.span.file, m.name.span.start))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let ordered: Vec<Def> = (0..members.len())
            .map(|k| members[(start + k) % members.len()])
            .collect();
        let mut names: Vec<String> = ordered
            .iter()
            .map(|m| format!("`{}`", m.name.name))
            .collect();
        names.push(names[0].clone());
        let kind = ordered[0].kind.noun();
        let first_parent = env_parent(ordered[0]).expect("a cycle member has a parent");
        let mut diag = Diagnostic::new(
            Code::P0109,
            first_parent.span,
            format!("{kind} inheritance cycle: {}", names.join(" -> ")),
        )
        .with_label(format!(
            "`{}` derives from `{}`",
            ordered[0].name.name, first_parent.name
        ))
        .with_help(format!(
            "one {kind} of the cycle must not derive from another"
        ));
        for m in &ordered[1..] {
            if let Some(p) = env_parent(*m) {
                diag = diag.with_secondary(
                    p.span,
                    format!("`{}` derives from `{}`", m.name.name, p.name),
                );
            }
        }
        self.d.push(diag);
    }
}

/// When a diagnostic's primary span lies in another file than `home` (the recipe being checked)
/// but one of its labels lies in `home`, the labelled span becomes the primary one: the user
/// is shown the line they wrote (a child recipe that changed the model's context), with the
/// inherited line (in a parent, maybe in std) as the label.
pub(crate) fn rehome(mut diag: Diagnostic, home: crate::diagnostic::FileId) -> Diagnostic {
    if diag.span.file == home {
        return diag;
    }
    if let Some(i) = diag.labels.iter().position(|l| l.span.file == home) {
        let label = &mut diag.labels[i];
        std::mem::swap(&mut diag.span, &mut label.span);
        let primary = diag.primary_label.take().unwrap_or_default();
        diag.primary_label = Some(std::mem::replace(&mut label.message, primary));
    }
    diag
}

/// The parent named by a model or recipe definition.
fn env_parent<'p>(def: Def<'p>) -> Option<&'p Ident> {
    match def.item {
        crate::syntax::ast::Item::Model { parent, .. }
        | crate::syntax::ast::Item::Recipe { parent, .. } => parent.as_ref(),
        _ => None,
    }
}
