//! Models: inheritance (`model a = b { ... }`), override blocks where a model is used
//! (`gpt2_small { context: 256 }`), field types, defaults and the shape rules (P0204).
//!
//! Invariant: a `Model` satisfies every size rule of `plan::spec` (positive sizes, heads divide
//! the width) and remembers where its depth and context were written, for labels.

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::plan::spec::{ModelSpec, ResidualScaling};
use crate::syntax::ast::{Ident, Value, ValueKind};

use super::env::DefKind;
use super::fields::{Bound, bind_fields};
use super::value::{self, Sink};
use super::{Checker, Def};

/// The models' size bounds (docs/language.md, "Bounds").
pub const MAX_WIDTH: u64 = 65_536;
pub const MAX_HEADS: u64 = 1_024;
pub const MAX_DEPTH: u64 = 1_024;
pub const MAX_CONTEXT: u64 = 1 << 20;
pub const MAX_MLP_RATIO: u64 = 64;

pub const MODEL_FIELDS: &[&str] = &[
    "width",
    "heads",
    "depth",
    "context",
    "mlp_ratio",
    "init_std",
    "residual",
];
const REQUIRED: &[&str] = &["width", "heads", "depth", "context"];

#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub width: usize,
    pub heads: usize,
    pub depth: usize,
    pub context: usize,
    pub mlp_ratio: usize,
    pub init_std: f64,
    pub residual: ResidualScaling,
    pub depth_span: Span,
    pub context_span: Span,
}

impl Model {
    pub fn spec(&self, vocab: usize) -> ModelSpec {
        ModelSpec {
            name: self.name.clone(),
            width: self.width,
            heads: self.heads,
            depth: self.depth,
            context: self.context,
            vocab,
            mlp_ratio: self.mlp_ratio,
            init_std: self.init_std,
            residual: self.residual,
        }
    }
}

/// Merged fields: later writers (children, overrides) replace earlier ones.
type Merged<'p> = Vec<(&'static str, &'p Ident, &'p Value)>;

fn merge<'p>(into: &mut Merged<'p>, bound: Bound<'p>) {
    for (k, key, v) in bound.entries {
        match into.iter_mut().find(|(e, _, _)| *e == k) {
            Some(slot) => *slot = (k, key, v),
            None => into.push((k, key, v)),
        }
    }
}

impl<'p> Checker<'p> {
    /// The fields of a named model with its ancestors' merged in; `None` when its chain is
    /// broken (reported by `chain`). Unknown or repeated keys are reported for the model's own
    /// block only: each ancestor's block is reported when that ancestor is checked.
    fn model_fields(&mut self, def: Def<'p>) -> Option<Merged<'p>> {
        let chain = self.chain(def)?;
        let mut merged = Merged::new();
        for m in chain {
            let crate::syntax::ast::Item::Model { fields, .. } = m.item else {
                continue;
            };
            let context = format!("model `{}`", m.name.name);
            let mut sink = Sink::new();
            let bound = bind_fields(fields, MODEL_FIELDS, &context, &mut sink);
            if m.name.name == def.name.name {
                self.d.extend(sink);
            }
            merge(&mut merged, bound);
        }
        Some(merged)
    }

    /// A named model, checked once.
    pub fn named_model(&mut self, name: &'p Ident) -> Option<Model> {
        if let Some(m) = self.models.get(&name.name) {
            return m.clone();
        }
        self.models.insert(name.name.clone(), None);
        let def = self.env.get(&name.name)?;
        let has_parent = matches!(
            def.item,
            crate::syntax::ast::Item::Model {
                parent: Some(_),
                ..
            }
        );
        let before = self.error_count();
        let result = self.model_fields(def).and_then(|merged| {
            self.typed_model(&def.name.name, def.name.span, &merged, !has_parent)
        });
        // Any error in its own block, or a parent that failed, fails the model (silently for
        // its users: the cause is already reported).
        let mut result = if self.error_count() > before {
            None
        } else {
            result
        };
        if let (
            Some(_),
            crate::syntax::ast::Item::Model {
                parent: Some(p), ..
            },
        ) = (&result, def.item)
            && self.named_model(p).is_none()
        {
            result = None;
        }
        self.models.insert(name.name.clone(), result.clone());
        result
    }

    /// A model where one is used: `gpt2_small` or `gpt2_small { context: 256 }`.
    pub fn model_value(&mut self, v: &'p Value) -> Option<Model> {
        match &v.kind {
            ValueKind::Ref(n, overrides) => {
                let def = self.lookup(n, DefKind::Model)?;
                let base = self.named_model(def.name)?;
                let Some(overrides) = overrides else {
                    return Some(base);
                };
                let mut merged = self.model_fields(def)?;
                let bound = bind_fields(
                    overrides,
                    MODEL_FIELDS,
                    &format!("the overrides of `{}`", n.name),
                    &mut self.d,
                );
                merge(&mut merged, bound);
                let before = self.error_count();
                let model = self.typed_model(&base.name, n.span, &merged, false);
                if self.error_count() > before {
                    None
                } else {
                    model
                }
            }
            ValueKind::Call(f, _) => {
                self.not_a_function(f, DefKind::Model);
                None
            }
            _ => {
                value::mismatch(v, "a model", &mut self.d);
                None
            }
        }
    }

    /// P0105 for `name(...)` where `name` is not a function of this kind.
    pub fn not_a_function(&mut self, f: &Ident, want: DefKind) {
        if let Some(other) = super::component::kind_of_function(&f.name) {
            // A real function, of another kind: a type mismatch.
            let funcs = super::component::functions_of(want);
            let help = if funcs.is_empty() {
                format!("write {} by name", want.article())
            } else {
                format!(
                    "{} functions are {}",
                    want.noun(),
                    super::suggest::one_of(funcs)
                )
            };
            self.d.push(
                Diagnostic::new(
                    Code::P0201,
                    f.span,
                    format!(
                        "expected {}, found a call to `{}` ({})",
                        want.article(),
                        f.name,
                        other.article()
                    ),
                )
                .with_label(format!("this makes {}", other.article()))
                .with_help(help),
            );
            return;
        }
        let def = self.env.get(&f.name);
        let what = match def {
            Some(def) => format!("`{}` is {}, not a function", f.name, def.kind.article()),
            None => format!("unknown function `{}`", f.name),
        };
        let mut diag = Diagnostic::new(Code::P0105, f.span, what).with_label("not a function");
        let funcs = super::component::functions_of(want);
        let help = match def {
            Some(def) if def.kind == DefKind::Model && want == DefKind::Model => Some(format!(
                "to change a model's fields write `{} {{ field: value }}`",
                f.name
            )),
            Some(def) if def.kind == want => Some(format!(
                "refer to it by name, without arguments: `{}`",
                f.name
            )),
            _ => super::suggest::did_you_mean(&f.name, funcs.iter().copied()).or_else(|| {
                (!funcs.is_empty()).then(|| {
                    format!(
                        "{} functions are {}",
                        want.noun(),
                        super::suggest::one_of(funcs)
                    )
                })
            }),
        };
        if let Some(h) = help {
            diag = diag.with_help(h);
        }
        self.d.push(diag);
    }

    /// Types, defaults and shape rules of merged model fields.
    fn typed_model(
        &mut self,
        name: &str,
        name_span: Span,
        merged: &Merged<'p>,
        report_missing: bool,
    ) -> Option<Model> {
        let get = |k: &str| merged.iter().find(|(e, _, _)| *e == k).map(|(_, _, v)| *v);
        let missing: Vec<String> = REQUIRED
            .iter()
            .filter(|r| get(r).is_none())
            .map(|r| format!("`{r}`"))
            .collect();
        let mut ok = missing.is_empty();
        if !ok && report_missing {
            let list = super::recipe::and_list(&missing);
            self.d.push(
                Diagnostic::new(Code::P0107, name_span, format!("model `{name}` has no {list}"))
                    .with_label(format!("{list} missing"))
                    .with_help(format!(
                        "a model needs `width`, `heads`, `depth` and `context`, or derive it from one: `model {name} = gpt2 {{ ... }}`"
                    )),
            );
        }
        let d = &mut self.d;
        // Upper bounds far above any GPT-2 (GPT-3 175B: width 12288, 96 layers, 96 heads) keep
        // a typo from reaching the allocator.
        let size = |k: &str, min: u64, max: u64, d: &mut Sink| -> Option<usize> {
            get(k).and_then(|v| value::integer_in(v, k, min, max, d).map(|x| x as usize))
        };
        let width = size("width", 1, MAX_WIDTH, d);
        let heads = size("heads", 1, MAX_HEADS, d);
        let depth = size("depth", 0, MAX_DEPTH, d);
        let context = size("context", 1, MAX_CONTEXT, d);
        let mlp_ratio = match get("mlp_ratio") {
            Some(_) => size("mlp_ratio", 1, MAX_MLP_RATIO, d),
            None => Some(4),
        };
        let init_std = match get("init_std") {
            Some(v) => value::non_negative(v, "init_std", true, d),
            None => Some(0.02),
        };
        let residual = match get("residual") {
            Some(v) => value::named(v, "residual", d),
            None => Some(ResidualScaling::None),
        };
        if let (Some(w), Some(h)) = (width, heads)
            && w % h != 0
        {
            let (wv, hv) = (get("width").expect("read"), get("heads").expect("read"));
            // Bounded search: only used for the help line.
            let near: Vec<String> = (1..=w.min(100_000))
                .filter(|k| w % k == 0)
                .min_by_key(|k| (k.abs_diff(h), std::cmp::Reverse(*k)))
                .map(|k| k.to_string())
                .into_iter()
                .collect();
            // Point at the value written where this model is defined (a parent's value is
            // only context), preferring the heads.
            let here = |v: &Value| v.span.file == name_span.file;
            let (primary, secondary, plabel, slabel) = if here(hv) || !here(wv) {
                (
                    hv.span,
                    wv.span,
                    format!("{h} heads"),
                    format!("the width is {w}"),
                )
            } else {
                (
                    wv.span,
                    hv.span,
                    format!("the width is {w}"),
                    format!("{h} heads"),
                )
            };
            d.push(
                Diagnostic::new(
                    Code::P0204,
                    primary,
                    format!("{h} heads do not divide the width {w}"),
                )
                .with_label(plabel)
                .with_secondary(secondary, slabel)
                .with_help(match near.first() {
                    Some(k) => format!(
                        "the head size is width / heads: use a number of heads that divides {w}, e.g. {k}"
                    ),
                    None => format!(
                        "the head size is width / heads: use a number of heads that divides {w}"
                    ),
                }),
            );
            ok = false;
        }
        let (width, heads, depth, context, mlp_ratio, init_std, residual) = (
            width?, heads?, depth?, context?, mlp_ratio?, init_std?, residual?,
        );
        if !ok {
            return None;
        }
        Some(Model {
            name: name.to_string(),
            width,
            heads,
            depth,
            context,
            mlp_ratio,
            init_std,
            residual,
            depth_span: get("depth").map(|v| v.span).unwrap_or(name_span),
            context_span: get("context").map(|v| v.span).unwrap_or(name_span),
        })
    }
}
