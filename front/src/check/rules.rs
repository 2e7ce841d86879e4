//! Growths and the method rules: growth times strictly increase (P0301) and lie inside the run
//! (P0302), each growth deepens the model (P0303), copies need a trained block (P0304), the run
//! ends at the model's depth (P0305), optimizer-state copy needs copied blocks (P0307); and the
//! warnings that cite the paper (P0401-P0405).
//!
//! Invariant: `method_rules` returns growths only when every rule holds, so the result meets
//! the growth invariants of `plan::spec`.

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::plan::schedule::{decay_start, lr_mass_after};
use crate::plan::spec::{
    CopyLayout, GrowthSpec, InitSpec, OptStatePolicy, Placement, ScheduleSpec,
};

use super::Checker;
use super::fields::bind_fields;
use super::model::Model;
use super::recipe::Growth;
use super::value::{self, Sink, Time, TimeKind};

/// Share of the LR mass that should remain after the last growth (the paper: WSD at 0.8T).
pub const MIN_LR_MASS: f64 = 0.16;

/// A growth with its values read but its time not yet in steps.
pub struct GrowthDraft {
    pub at: Time,
    pub to: usize,
    pub to_span: Span,
    pub init: InitSpec,
    pub init_span: Option<Span>,
    pub placement: Placement,
    pub state: OptStatePolicy,
    pub state_span: Option<Span>,
    pub lr_mult: f64,
    /// The `grow` keyword.
    pub span: Span,
}

/// The options a `grow` statement takes, in the order the docs list them.
pub const GROWTH_OPTIONS: [&str; 4] = ["init", "placement", "optimizer_state", "lr_mult"];

impl<'p> Checker<'p> {
    pub fn growth_draft(&mut self, g: &Growth<'p>, model_std: f64) -> Option<GrowthDraft> {
        let at = value::time(g.at, "growth time", &mut self.d);
        let to = value::integer_in(g.to, "depth", 0, super::model::MAX_DEPTH, &mut self.d);
        let opts = bind_fields(g.options, &GROWTH_OPTIONS, "growth options", &mut self.d);
        let init = match opts.get("init") {
            Some(v) => self.init_value(v, model_std),
            None => Some(InitSpec::Random { std: model_std }),
        };
        let d = &mut self.d;
        let placement = match opts.get("placement") {
            Some(v) => value::named(v, "placement", d),
            None => Some(Placement::Top),
        };
        // 1 is the default: the new blocks train at the run's rates.
        let lr_mult = match opts.get("lr_mult") {
            Some(v) => value::non_negative(v, "lr_mult", false, d),
            None => Some(1.0),
        };
        let state = match opts.get("optimizer_state") {
            Some(v) => value::named(v, "optimizer_state", d),
            None => Some(OptStatePolicy::Keep),
        };
        Some(GrowthDraft {
            at: at?,
            to: to? as usize,
            to_span: g.to.span,
            init: init?,
            init_span: opts.get("init").map(|v| v.span),
            placement: placement?,
            state: state?,
            lr_mult: lr_mult?,
            state_span: opts.get("optimizer_state").map(|v| v.span),
            span: g.span,
        })
    }
}

/// What the method rules know of a recipe besides its growths. A broken model, batch or
/// schedule is `None`: the rules that need it are skipped (its cause is already reported), the
/// others still run.
pub struct RunFrame<'a> {
    /// The file of the recipe (where a diagnostic about an inherited statement is shown).
    pub home: crate::diagnostic::FileId,
    pub total: u64,
    /// Tokens per step.
    pub tps: Option<u64>,
    /// The start depth and where it was written (`None`: the default, the model's depth).
    pub start: (usize, Option<Span>),
    pub model: Option<&'a Model>,
    pub schedule: Option<&'a ScheduleSpec>,
}

/// Applies the method rules to a recipe's growths: their times (P0301, P0302), depths (P0303,
/// P0305), inits (P0304, P0307) and the paper's warnings (P0401-P0405).
pub fn method_rules(
    d: &mut Sink,
    frame: &RunFrame<'_>,
    drafts: Vec<GrowthDraft>,
) -> Option<Vec<GrowthSpec>> {
    let mut ok = frame.model.is_some() && frame.schedule.is_some() && frame.tps.is_some();
    let start_fits = frame.start_fits(d);
    ok &= start_fits;
    let decay_from = frame.schedule.and_then(|s| decay_start(s, frame.total));
    let mut growths = Vec::new();
    let mut depth = frame.start.0;
    let mut prev: Option<(u64, Span)> = None;
    let mut last_valid_at: Option<u64> = None;
    for (i, g) in drafts.iter().enumerate() {
        let at = match (g.at.kind, frame.tps) {
            (TimeKind::Tokens(_), None) => {
                // In tokens, but the batch is unknown: nothing to check this growth's time by.
                depth = depth.max(g.to);
                continue;
            }
            (_, tps) => g.at.steps(frame.total, tps.unwrap_or(1), d),
        };
        let inside = frame.growth_inside(g, at, d);
        ok &= inside;
        ok &= growth_follows(g, at, prev, d);
        ok &= grows_deeper(g, depth, start_fits, d);
        let from = depth;
        ok &= init_rules(g, from, d);
        paper_warnings(g, i, at, inside.then_some(decay_from).flatten(), d);
        if inside {
            last_valid_at = Some(at);
        }
        prev = Some((at, g.at.span));
        growths.push(GrowthSpec {
            at_step: at,
            from_depth: from,
            to_depth: g.to,
            init: g.init,
            placement: g.placement,
            optimizer_state: g.state,
            lr_mult: g.lr_mult,
        });
        depth = depth.max(g.to);
    }
    if start_fits {
        ok &= frame.ends_at_full_depth(depth, &drafts, d);
    }
    if !ok {
        return None;
    }
    if let (Some(at), Some(last)) = (last_valid_at, drafts.last()) {
        frame.lr_mass_warning(at, last, d);
    }
    Some(growths)
}

impl RunFrame<'_> {
    /// P0303: the start depth is at most the model's.
    fn start_fits(&self, d: &mut Sink) -> bool {
        let (start_depth, start_span) = self.start;
        let Some(model) = self.model.filter(|m| start_depth > m.depth) else {
            return true;
        };
        let span = start_span.unwrap_or(model.depth_span);
        d.push(
            Diagnostic::new(
                Code::P0303,
                span,
                format!(
                    "start depth {start_depth} is deeper than the model's depth {}",
                    model.depth
                ),
            )
            .with_label("deeper than the model")
            .with_secondary(
                model.depth_span,
                format!("the model's depth is {}", model.depth),
            )
            .with_help("progressive training starts shallow and grows: start at depth 0 or 1"),
        );
        false
    }

    /// P0302: a growth after step 0 and before the last step.
    fn growth_inside(&self, g: &GrowthDraft, at: u64, d: &mut Sink) -> bool {
        let total = self.total;
        if at == 0 {
            d.push(
                Diagnostic::new(Code::P0302, g.at.span, "a growth at step 0 is pointless")
                    .with_label("the run has not trained yet")
                    .with_help(format!(
                        "start at that depth instead: `start depth {}`",
                        g.to
                    )),
            );
            return false;
        }
        if at >= total {
            d.push(
                Diagnostic::new(
                    Code::P0302,
                    g.at.span,
                    format!("growth at step {at} is outside the run of {total} steps"),
                )
                .with_label(format!("the last step is {}", total - 1))
                .with_help("grow inside the run, e.g. at 80%"),
            );
            return false;
        }
        true
    }

    /// P0305: the run ends at the model's depth.
    fn ends_at_full_depth(&self, depth: usize, drafts: &[GrowthDraft], d: &mut Sink) -> bool {
        let Some(model) = self.model.filter(|m| m.depth != depth) else {
            return true;
        };
        let span = drafts
            .last()
            .map(|g| g.to_span)
            .or(self.start.1)
            .unwrap_or(model.depth_span);
        d.push(super::rehome(
            Diagnostic::new(
                Code::P0305,
                span,
                format!(
                    "the run ends at depth {depth}, but the model's depth is {}",
                    model.depth
                ),
            )
            .with_label(format!("ends at depth {depth}"))
            .with_secondary(
                model.depth_span,
                format!("the model's depth is {}", model.depth),
            )
            .with_help(format!(
                "grow to {} or change the model's depth",
                model.depth
            )),
            self.home,
        ));
        false
    }

    /// P0402: enough of the learning rate is left after the last growth.
    fn lr_mass_warning(&self, at: u64, last: &GrowthDraft, d: &mut Sink) {
        let Some(schedule) = self.schedule else {
            return;
        };
        let mass = mass_after(schedule, at, self.total);
        // Compared at the printed precision: the paper's own setting (WSD 2%/10%, growth at
        // 0.8T, 0.158) is the calibration point and must not warn.
        if (mass * 100.0).round() / 100.0 < MIN_LR_MASS {
            d.push(
                Diagnostic::new(
                    Code::P0402,
                    last.at.span,
                    format!(
                        "only {mass:.2} of the learning-rate mass is left after the growth at step {at}"
                    ),
                )
                .with_label(format!("{mass:.2} of the learning-rate mass follows"))
                .with_help("the paper: WSD growing at 0.8T leaves ~0.16 of the mass and still catches up; under cosine the loss stops catching up once growth is at 0.5T or later: grow earlier"),
            );
        }
    }
}

/// P0301: each growth comes strictly after the previous one.
fn growth_follows(g: &GrowthDraft, at: u64, prev: Option<(u64, Span)>, d: &mut Sink) -> bool {
    let Some((p_at, p_span)) = prev.filter(|(p_at, _)| at <= *p_at) else {
        return true;
    };
    d.push(
        Diagnostic::new(
            Code::P0301,
            g.at.span,
            format!("growth at step {at} does not come after the growth at step {p_at}"),
        )
        .with_label(format!("step {at}"))
        .with_secondary(p_span, format!("earlier growth at step {p_at}"))
        .with_help("list growths in order of time, each strictly after the previous one"),
    );
    false
}

/// P0303: each growth adds blocks (reported only when the start depth itself fits).
fn grows_deeper(g: &GrowthDraft, depth: usize, start_fits: bool, d: &mut Sink) -> bool {
    if g.to > depth {
        return true;
    }
    if start_fits {
        d.push(
            Diagnostic::new(
                Code::P0303,
                g.to_span,
                format!(
                    "growth to depth {} does not increase the depth (already {depth})",
                    g.to
                ),
            )
            .with_label(format!("already at depth {depth}"))
            .with_help("each growth must add blocks: grow to a depth greater than the current one"),
        );
    }
    false
}

/// The init's rules: copies need a source (P0304) and `copy` state needs copies (P0307); the
/// paper's findings on `copy(last)` (P0405) and zero init (P0404) warn.
fn init_rules(g: &GrowthDraft, from: usize, d: &mut Sink) -> bool {
    let mut ok = true;
    if let InitSpec::Copy { layout } = g.init {
        let init_span = g.init_span.unwrap_or(g.span);
        if from == 0 {
            d.push(
                Diagnostic::new(
                    Code::P0304,
                    init_span,
                    "cannot copy blocks from a 0-layer model",
                )
                .with_label("nothing to copy")
                .with_help("use `init: random`, or `start depth 1` to have a block to copy"),
            );
            ok = false;
        } else if layout == CopyLayout::Last && from >= 2 {
            d.push(
                Diagnostic::new(
                    Code::P0405,
                    init_span,
                    format!("`copy(last)` from a {from}-layer model copies only its last block"),
                )
                .with_label("only the last block is copied")
                .with_help("the paper found copying only the last layer clearly worse: copy all layers with `copy(stack)` or `copy(interleave)`"),
            );
        }
    }
    if matches!(g.init, InitSpec::Zero | InitSpec::ZeroOut { .. }) {
        d.push(
            Diagnostic::new(
                Code::P0404,
                g.init_span.unwrap_or(g.span),
                "zero-initialized new layers receive dead gradients",
            )
            .with_label("function-preserving, but the new layers barely learn")
            .with_help("the paper discards zero init: it preserves the function but starves the new layers of gradient; use `random` or `copy`"),
        );
    }
    if g.state == OptStatePolicy::Copy && !matches!(g.init, InitSpec::Copy { .. }) {
        let mut diag = Diagnostic::new(
            Code::P0307,
            g.state_span.unwrap_or(g.span),
            "`optimizer_state: copy` needs blocks that are copies",
        )
        .with_label("no source block to copy moments from")
        .with_help("use `init: copy(stack)` with it, or `optimizer_state: keep`");
        if let Some(s) = g.init_span {
            diag = diag.with_secondary(s, "these blocks are not copies");
        }
        d.push(diag);
        ok = false;
    }
    ok
}

/// The paper's findings on the `i`-th growth: more than one growth (P0403), a growth inside the
/// decay phase that starts at `decay_from` (P0401).
fn paper_warnings(g: &GrowthDraft, i: usize, at: u64, decay_from: Option<u64>, d: &mut Sink) {
    if i >= 1 {
        d.push(
            Diagnostic::new(Code::P0403, g.span, "more than one growth")
                .with_label(format!("growth number {}", i + 1))
                .with_help("the paper found a single growth 0 -> L at least as good as multi-stage growth, at lower cost"),
        );
    }
    if let Some(ds) = decay_from.filter(|ds| at >= *ds) {
        d.push(
            Diagnostic::new(
                Code::P0401,
                g.at.span,
                format!("growth at step {at} is inside the decay phase, which starts at step {ds}"),
            )
            .with_label("the learning rate is already decaying")
            .with_help("grow in the stable phase (the paper grows at 80% with a 10% decay)"),
        );
    }
}

/// `lr_mass_after`, on a proportionally shortened run when the run is very long (the sum is
/// O(total)); the share changes by far less than the warning's precision.
fn mass_after(schedule: &ScheduleSpec, at: u64, total: u64) -> f64 {
    const MAX: u64 = 200_000;
    if total <= MAX {
        return lr_mass_after(schedule, at, total);
    }
    let k = total as f64 / MAX as f64;
    let sc = |x: u64| (x as f64 / k).round() as u64;
    let scaled = match *schedule {
        ScheduleSpec::Wsd {
            warmup_steps,
            decay_steps,
            shape,
            floor,
        } => ScheduleSpec::Wsd {
            warmup_steps: sc(warmup_steps),
            decay_steps: sc(decay_steps),
            shape,
            floor,
        },
        ScheduleSpec::Cosine {
            warmup_steps,
            floor,
        } => ScheduleSpec::Cosine {
            warmup_steps: sc(warmup_steps),
            floor,
        },
        ScheduleSpec::Constant { warmup_steps } => ScheduleSpec::Constant {
            warmup_steps: sc(warmup_steps),
        },
    };
    lr_mass_after(&scaled, sc(at), MAX)
}
