//! Recipes: inheritance, `--set` overrides, and resolution of every statement into a `RunSpec`.
//!
//! Semantics (docs/language.md, "Recipes"): a derived recipe takes its parent's statements; an
//! assignment overrides the parent's (`steps` and `tokens` are one slot, the run length);
//! `start depth` overrides; any `grow` or `no growth` in a body replaces all inherited growths;
//! `--set` overrides come last. Problems in a body are reported for that recipe's own body
//! only; a missing required statement only for a recipe without a parent (its children lack it
//! for the same reason).

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::plan::spec::{BatchSpec, RunSpec};
use crate::syntax::ast::{Field, Ident, Item, Stmt, Value, ValueKind};

use super::Checker;
use super::component::Component;
use super::env::{Def, DefKind};
use super::fields::unknown_key;
use super::model::Model;
use super::rules::GrowthDraft;
use super::value;

pub const RECIPE_KEYS: &[&str] = &[
    "model",
    "data",
    "steps",
    "tokens",
    "batch",
    "optimizer",
    "schedule",
    "seed",
    "eval_every",
    "eval_batches",
    "checkpoint_every",
];
const REQUIRED: &[&str] = &["model", "data", "steps", "batch", "optimizer", "schedule"];

/// The slot an assignment fills: `tokens` and `steps` both set the run length.
fn slot(key: &str) -> &str {
    if key == "tokens" { "steps" } else { key }
}

pub struct Growth<'p> {
    pub at: &'p Value,
    pub to: &'p Value,
    pub options: &'p [Field],
    pub span: Span,
}

/// The statements in force for one recipe after inheritance and overrides.
#[derive(Default)]
struct Effective<'p> {
    assigns: Vec<(&'p Ident, &'p Value)>,
    start: Option<&'p Value>,
    growths: Vec<Growth<'p>>,
}

impl<'p> Effective<'p> {
    fn set(&mut self, key: &'p Ident, v: &'p Value) {
        match self
            .assigns
            .iter_mut()
            .find(|(k, _)| slot(&k.name) == slot(&key.name))
        {
            Some(e) => *e = (key, v),
            None => self.assigns.push((key, v)),
        }
    }
    fn get(&self, s: &str) -> Option<(&'p Ident, &'p Value)> {
        self.assigns
            .iter()
            .find(|(k, _)| slot(&k.name) == s)
            .copied()
    }
}

impl<'p> Checker<'p> {
    /// P0104 for `--set` keys that are not recipe statements; reported once, in `<--set>`.
    pub fn check_override_keys(&mut self) {
        for (key, _) in &self.program.overrides {
            if !RECIPE_KEYS.contains(&key.name.as_str()) {
                unknown_key(key, RECIPE_KEYS, "an override", &mut self.d);
            }
        }
    }

    /// The statements in force, and whether an ancestor's own body has an error (reported
    /// with the ancestor; the recipe then fails silently).
    fn effective(&mut self, def: Def<'p>, chain: &[Def<'p>]) -> (Effective<'p>, bool) {
        let mut eff = Effective::default();
        let mut inherited_error = false;
        for r in chain {
            let Item::Recipe { body, .. } = r.item else {
                continue;
            };
            let own = r.name.name == def.name.name;
            let mut sink = Vec::new();
            let mut seen: Vec<&Ident> = Vec::new();
            let mut start_seen: Option<Span> = None;
            let mut replaces_growths = false;
            let mut growths = Vec::new();
            for stmt in body {
                match stmt {
                    Stmt::Assign { key, value } => {
                        if !RECIPE_KEYS.contains(&key.name.as_str()) {
                            unknown_key(
                                key,
                                RECIPE_KEYS,
                                &format!("recipe `{}`", r.name.name),
                                &mut sink,
                            );
                            continue;
                        }
                        if let Some(first) = seen.iter().find(|k| slot(&k.name) == slot(&key.name))
                        {
                            let message = if first.name == key.name {
                                format!("`{}` is set more than once", key.name)
                            } else {
                                "`steps` and `tokens` both set the run length".to_string()
                            };
                            sink.push(
                                Diagnostic::new(Code::P0108, key.span, message)
                                    .with_label("set again here")
                                    .with_secondary(first.span, "first set here")
                                    .with_help("remove one of them"),
                            );
                            continue;
                        }
                        seen.push(key);
                        eff.set(key, value);
                    }
                    Stmt::Start { depth, span } => {
                        if let Some(first) = start_seen {
                            sink.push(
                                Diagnostic::new(
                                    Code::P0108,
                                    *span,
                                    "`start depth` is set more than once",
                                )
                                .with_label("set again here")
                                .with_secondary(first, "first set here")
                                .with_help("remove one of them"),
                            );
                            continue;
                        }
                        start_seen = Some(*span);
                        eff.start = Some(depth);
                    }
                    Stmt::Grow {
                        at,
                        to,
                        options,
                        span,
                    } => {
                        replaces_growths = true;
                        growths.push(Growth {
                            at,
                            to,
                            options,
                            span: *span,
                        });
                    }
                    Stmt::NoGrowth { .. } => replaces_growths = true,
                }
            }
            if replaces_growths {
                eff.growths = growths;
            }
            if own {
                self.d.extend(sink);
            } else {
                inherited_error |= sink.iter().any(|d| d.is_error());
            }
        }
        for (key, v) in &self.program.overrides {
            if RECIPE_KEYS.contains(&key.name.as_str()) {
                eff.set(key, v);
            }
        }
        (eff, inherited_error)
    }

    /// Resolves one recipe; `None` if it (or anything it uses) has an error.
    pub fn check_recipe(&mut self, def: Def<'p>) -> Option<RunSpec> {
        let chain = self.chain(def)?;
        let has_parent = chain.len() > 1;
        let errors_before = self.error_count();
        let (eff, inherited_error) = self.effective(def, &chain);
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|r| eff.get(r).is_none())
            .collect();
        let complete = missing.is_empty();
        if !complete && !has_parent {
            let names: Vec<String> = missing
                .iter()
                .map(|r| {
                    if *r == "steps" {
                        "`steps` (or `tokens`)".to_string()
                    } else {
                        format!("`{r}`")
                    }
                })
                .collect();
            let examples: Vec<String> = missing
                .iter()
                .map(|r| format!("`{}`", example(r)))
                .collect();
            self.d.push(
                Diagnostic::new(
                    Code::P0107,
                    def.name.span,
                    format!("recipe `{}` has no {}", def.name.name, and_list(&names)),
                )
                .with_label(format!("{} missing", and_list(&names)))
                .with_help(format!("add {}", and_list(&examples))),
            );
        }
        let model = eff.get("model").and_then(|(_, v)| self.model_value(v));
        let data =
            eff.get("data").and_then(
                |(_, v)| match self.component_value(v, DefKind::Data, None) {
                    Some(Component::Data(d)) => Some(d),
                    _ => None,
                },
            );
        let batch = eff
            .get("batch")
            .and_then(|(_, v)| self.batch(v, model.as_ref(), def.name.span.file));
        let tps = batch.map(|b| b.tokens_per_step());
        let total = eff
            .get("steps")
            .and_then(|(k, v)| self.run_length(k, v, tps));
        let optimizer = eff.get("optimizer").and_then(|(_, v)| {
            match self.component_value(v, DefKind::Optimizer, None) {
                Some(Component::Optimizer(o)) => Some(o),
                _ => None,
            }
        });
        let sched_draft = eff.get("schedule").and_then(|(_, v)| {
            match self.component_value(v, DefKind::Schedule, None) {
                Some(Component::Schedule(s)) => Some((s, v.span)),
                _ => None,
            }
        });
        let schedule = match (sched_draft, total, tps) {
            (Some((s, span)), Some(total), Some(tps)) => s.resolve(total, tps, span, &mut self.d),
            _ => None,
        };
        let d = &mut self.d;
        let seed = eff
            .get("seed")
            .map_or(Some(0), |(_, v)| value::integer(v, "seed", 0, d));
        let eval_batches = eff.get("eval_batches").map_or(Some(4), |(_, v)| {
            value::integer(v, "eval_batches", 1, d).map(|x| x as usize)
        });
        // Times resolve only once the run length and batch are known (no cascade otherwise).
        let eval_every = match eff.get("eval_every") {
            None => total.map(|t| (t / 20).max(1)),
            Some((_, v)) => value::time(v, "eval_every", d).and_then(|t| {
                let s = t.steps(total?, tps?, d);
                if s == 0 {
                    value::out_of_range(
                        v.span,
                        "`eval_every` must be at least 1 step".into(),
                        None,
                        d,
                    );
                    None
                } else {
                    Some(s)
                }
            }),
        };
        // Every 5% of the run: a crash loses at most that much, at 20 writes per run. A
        // wall-clock time (`30 min`) replaces the default clock bound and keeps this.
        let default_every = total.map(|t| (t / 20).max(1));
        let (checkpoint_every, checkpoint_clock_s) = match eff.get("checkpoint_every") {
            None => (default_every, Some(None)),
            Some((_, v)) => match value::clock_seconds(v, "checkpoint_every", d) {
                None => (default_every, None),
                Some(Some(seconds)) => (default_every, Some(Some(seconds))),
                Some(None) => (
                    value::time(v, "checkpoint_every", d)
                        .and_then(|t| Some(t.steps(total?, tps?, d))),
                    Some(None),
                ),
            },
        };
        let start = match eff.start {
            None => model.as_ref().map(|m| (m.depth, None)),
            Some(v) => value::integer_in(v, "start depth", 0, super::model::MAX_DEPTH, d)
                .map(|s| (s as usize, Some(v.span))),
        };
        let model_std = model.as_ref().map_or(0.02, |m| m.init_std);
        let drafts: Vec<Option<GrowthDraft>> = eff
            .growths
            .iter()
            .map(|g| self.growth_draft(g, model_std))
            .collect();
        let drafts: Option<Vec<GrowthDraft>> = drafts.into_iter().collect();
        // The method rules run whenever the run length, start depth and growths are known,
        // even if the model, batch or schedule is broken: every problem in one pass.
        let growths = match (total, start, drafts) {
            (Some(total), Some(start), Some(drafts)) => {
                let frame = super::rules::RunFrame {
                    home: def.name.span.file,
                    total,
                    tps,
                    start,
                    model: model.as_ref(),
                    schedule: schedule.as_ref(),
                };
                super::rules::method_rules(&mut self.d, &frame, drafts)
            }
            _ => None,
        };
        let (model, data, batch, total, optimizer, schedule) =
            (model?, data?, batch?, total?, optimizer?, schedule?);
        let (seed, eval_batches, eval_every, checkpoint_every, start, growths) = (
            seed?,
            eval_batches?,
            eval_every?,
            checkpoint_every?,
            start?,
            growths?,
        );
        let checkpoint_clock_s = checkpoint_clock_s?;
        if !complete || inherited_error || self.error_count() > errors_before {
            return None;
        }
        Some(RunSpec {
            name: def.name.name.clone(),
            model: model.spec(data.tokenizer.vocab()),
            data,
            batch,
            total_steps: total,
            optimizer,
            schedule,
            seed,
            start_depth: start.0,
            growths,
            eval_every,
            eval_batches,
            checkpoint_every,
            checkpoint_clock_s,
        })
    }

    pub(super) fn error_count(&self) -> usize {
        self.d.iter().filter(|d| d.is_error()).count()
    }

    /// `batch = S x C` or `batch = S`; C must equal the model's context (P0205).
    fn batch(
        &mut self,
        v: &'p Value,
        model: Option<&Model>,
        home: crate::diagnostic::FileId,
    ) -> Option<BatchSpec> {
        let d = &mut self.d;
        let (seq, ctx) = match &v.kind {
            ValueKind::Product(a, b) => {
                let s = value::integer_in(a, "batch sequences", 1, 1 << 20, d);
                let c = value::integer_in(b, "batch context", 1, 1 << 20, d)
                    .map(|c| (c as usize, b.span));
                (s?, Some(c?))
            }
            ValueKind::Number(_) => (value::integer_in(v, "batch", 1, 1 << 20, d)?, None),
            _ => {
                value::mismatch(v, "a batch (`sequences x context`)", d);
                return None;
            }
        };
        // Keeps `tokens_per_step` (sequences x context) far from overflow.
        const MAX_TOKENS_PER_STEP: u64 = 1 << 40;
        let too_big = |c: u64| seq.checked_mul(c).is_none_or(|t| t > MAX_TOKENS_PER_STEP);
        if let Some((c, _)) = ctx
            && too_big(c as u64)
        {
            value::out_of_range(
                v.span,
                format!("a batch of {seq} x {c} tokens is too large"),
                None,
                d,
            );
            return None;
        }
        let model = model?;
        if ctx.is_none() && too_big(model.context as u64) {
            value::out_of_range(
                v.span,
                format!("a batch of {seq} sequences is too large"),
                None,
                d,
            );
            return None;
        }
        let context = match ctx {
            Some((c, span)) if c != model.context => {
                d.push(super::rehome(
                    Diagnostic::new(
                        Code::P0205,
                        span,
                        format!(
                            "the batch's context {c} differs from the model's context {}",
                            model.context
                        ),
                    )
                    .with_label(format!("sequences of {c} tokens"))
                    .with_secondary(
                        model.context_span,
                        format!("the model's context is {}", model.context),
                    )
                    .with_help(format!(
                        "write `batch = {seq} x {}` or change the model's context",
                        model.context
                    )),
                    home,
                ));
                return None;
            }
            Some((c, _)) => c,
            None => model.context,
        };
        Some(BatchSpec {
            sequences: seq as usize,
            context,
        })
    }

    /// `steps = N` (or `N steps`) or `tokens = N tokens`, in steps.
    fn run_length(&mut self, key: &Ident, v: &'p Value, tps: Option<u64>) -> Option<u64> {
        let d = &mut self.d;
        let steps = if key.name == "steps" {
            match &v.kind {
                ValueKind::Number(_) => value::integer(v, "steps", 0, d)?,
                ValueKind::Quantity(_, u)
                    if value::unit(u, &mut Vec::new()) == Some(value::Unit::Steps) =>
                {
                    match value::time(v, "steps", d)?.kind {
                        value::TimeKind::Steps(s) => s,
                        _ => return None,
                    }
                }
                _ => {
                    value::mismatch(v, "a number of steps", d);
                    if matches!(&v.kind, ValueKind::Quantity(_, u) if u.name.starts_with("token"))
                        && let Some(last) = d.last_mut()
                    {
                        last.help =
                            Some("to give the run length in tokens write `tokens = ...`".into());
                    }
                    return None;
                }
            }
        } else {
            let tokens = match &v.kind {
                ValueKind::Number(n) => n.value,
                ValueKind::Quantity(n, u)
                    if value::unit(u, &mut Vec::new()) == Some(value::Unit::Tokens) =>
                {
                    n.value
                }
                _ => {
                    value::mismatch(v, "a number of tokens", d);
                    return None;
                }
            };
            if tokens < 0.0 {
                value::out_of_range(v.span, "`tokens` cannot be negative".into(), None, d);
                return None;
            }
            value::tokens_to_steps(tokens, tps?, v.span, d)
        };
        if steps == 0 {
            d.push(
                Diagnostic::new(Code::P0203, v.span, "a run of 0 steps")
                    .with_label("no training step")
                    .with_help("the run needs at least one step"),
            );
            return None;
        }
        Some(steps)
    }
}

fn example(req: &str) -> String {
    match req {
        "model" => "model = gpt2_tiny".into(),
        "data" => "data = text(\"data/emma.txt\")".into(),
        "steps" => "steps = 1000".into(),
        "batch" => "batch = 16 x 128".into(),
        "optimizer" => "optimizer = adamw(lr: 6e-4)".into(),
        "schedule" => "schedule = wsd(warmup: 2%, decay: 10%)".into(),
        other => format!("{other} = ..."),
    }
}

/// "a, b and c".
pub fn and_list(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}
