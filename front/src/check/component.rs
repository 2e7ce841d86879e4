//! Data, schedules and optimizers: named (`schedule wsd_paper = wsd(...)`, checked once) or
//! written inline in a recipe, plus the growth `init` values.
//!
//! Invariant: a schedule is kept as a `SchedDraft` (times unresolved) until the run length is
//! known; everything else is fully resolved here.

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::plan::spec::{
    AdamWSpec, CopyLayout, DataFormat, DataFunc, DataSpec, DecayShape, InitFunc, InitSpec,
    LrMultipliers, MuonSpec, OptimizerFunc, OptimizerSpec, ScheduleFunc, ScheduleSpec, Tokenizer,
};
use crate::syntax::ast::{Ident, Value, ValueKind};

use super::Checker;
use super::env::DefKind;
use super::fields::{Bound, bind_args};
use super::value::{self, Sink, Time, TimeKind, fmt_num};

// The function names are the spec enums' (`plan::spec`): a new variant there needs an arm here.
pub const DATA_FUNCS: &[&str] = DataFunc::NAMES;
pub const SCHEDULE_FUNCS: &[&str] = ScheduleFunc::NAMES;
pub const OPTIMIZER_FUNCS: &[&str] = OptimizerFunc::NAMES;
pub const INIT_OPTIONS: &[&str] = InitFunc::NAMES;

/// The functions that build a value of kind `kind`.
pub fn functions_of(kind: DefKind) -> &'static [&'static str] {
    match kind {
        DefKind::Data => DATA_FUNCS,
        DefKind::Schedule => SCHEDULE_FUNCS,
        DefKind::Optimizer => OPTIMIZER_FUNCS,
        _ => &[],
    }
}

/// What kind a known function builds.
pub fn kind_of_function(name: &str) -> Option<DefKind> {
    [DefKind::Data, DefKind::Schedule, DefKind::Optimizer]
        .into_iter()
        .find(|k| functions_of(*k).contains(&name))
}

/// A schedule with its times not yet in steps.
#[derive(Clone, Copy, Debug)]
pub enum SchedDraft {
    Wsd {
        warmup: Time,
        decay: Time,
        shape: DecayShape,
        floor: f64,
    },
    Cosine {
        warmup: Time,
        floor: f64,
    },
    Constant {
        warmup: Time,
    },
}

#[derive(Clone, Debug)]
pub enum Component {
    Data(DataSpec),
    Schedule(SchedDraft),
    Optimizer(OptimizerSpec),
}

impl<'p> Checker<'p> {
    /// A named data, schedule or optimizer definition, checked once.
    pub fn named_component(&mut self, name: &'p Ident, kind: DefKind) -> Option<Component> {
        if let Some(c) = self.comps.get(&name.name) {
            return c.clone();
        }
        if self.in_progress.contains(&name.name) {
            let mut names = self.in_progress.clone();
            names.push(name.name.clone());
            let def = self.env.get(&name.name)?;
            self.d.push(
                Diagnostic::new(
                    Code::P0109,
                    def.name.span,
                    format!("`{}` is defined in terms of itself", name.name),
                )
                .with_label(names.join(" -> "))
                .with_help("give one of them a value of its own"),
            );
            return None;
        }
        let def = self.env.get(&name.name)?;
        let crate::syntax::ast::Item::Let { value, .. } = def.item else {
            return None;
        };
        self.in_progress.push(name.name.clone());
        let before = self.error_count();
        let result = self.component_value(value, kind, Some(&name.name));
        let result = if self.error_count() > before {
            None
        } else {
            result
        };
        self.in_progress.pop();
        self.comps.insert(name.name.clone(), result.clone());
        result
    }

    /// A value of kind `kind`: a reference to a definition or a call. `name` names a data
    /// definition (inline data is named after its path).
    pub fn component_value(
        &mut self,
        v: &'p Value,
        kind: DefKind,
        name: Option<&str>,
    ) -> Option<Component> {
        match &v.kind {
            ValueKind::Ref(n, overrides) => {
                let def = self.lookup(n, kind)?;
                if let Some(fields) = overrides {
                    let span = fields.first().map(|f| f.key.span).unwrap_or(n.span);
                    self.d.push(
                        Diagnostic::new(
                            Code::P0201,
                            span,
                            format!(
                                "only models take an override block, `{}` is {}",
                                n.name,
                                kind.article()
                            ),
                        )
                        .with_label("not a model")
                        .with_help(format!(
                            "define a new {} with the values you want",
                            kind.noun()
                        )),
                    );
                    return None;
                }
                self.named_component(def.name, kind)
            }
            ValueKind::Call(f, args) => {
                let wanted = functions_of(kind);
                if !wanted.contains(&f.name.as_str()) {
                    self.not_a_function(f, kind);
                    return None;
                }
                let d = &mut self.d;
                let called = f.name.as_str();
                if let Some(func) = DataFunc::from_name(called) {
                    match func {
                        DataFunc::Text => {
                            let b = bind_args(f, args, &["path", "tokenizer", "val", "split"], d);
                            self.text(f, &b, name).map(Component::Data)
                        }
                        DataFunc::Tokens => {
                            let b = bind_args(f, args, &["path", "val", "format", "tokenizer"], d);
                            self.tokens(f, &b, name).map(Component::Data)
                        }
                    }
                } else if let Some(func) = ScheduleFunc::from_name(called) {
                    schedule(func, f, args, d).map(Component::Schedule)
                } else {
                    let func = OptimizerFunc::from_name(called)?;
                    self.optimizer_call(func, f, args).map(Component::Optimizer)
                }
            }
            _ => {
                value::mismatch(v, kind.article(), &mut self.d);
                None
            }
        }
    }

    fn text(&mut self, f: &Ident, b: &Bound<'p>, name: Option<&str>) -> Option<DataSpec> {
        let tokenizer = match b.get("tokenizer") {
            Some(v) => self.tokenizer(v, true),
            None => Some(Tokenizer::Gpt2),
        };
        let d = &mut self.d;
        let path = match b.get("path") {
            Some(v) => value::string(v, d),
            None => {
                d.push(
                    Diagnostic::new(Code::P0107, f.span, "`text(...)` has no `path`")
                        .with_label("`path` missing")
                        .with_help("give the corpus file: `text(\"data/emma.txt\")`"),
                );
                None
            }
        };
        let val = match b.get("val") {
            Some(v) => val_fraction(v, d),
            None => Some(0.1),
        };
        let val_blocks = match b.get("split") {
            Some(v) => val_split(v, d),
            None => Some(1),
        };
        let path = path?.to_string();
        Some(DataSpec {
            name: name.map(str::to_string).unwrap_or_else(|| path.clone()),
            resolved_path: self.program.resolve_path(f.span.file, &path),
            path,
            tokenizer: tokenizer?,
            val_fraction: val?,
            val_blocks: val_blocks?,
            format: DataFormat::Text,
            shards: vec![],
            val_shards: vec![],
        })
    }

    /// `tokens(paths, val: paths | fraction, format: nanogpt | llmc, tokenizer: gpt2 | bytes |
    /// "tokenizer.json")`: pre-tokenized shards. A path may be a glob; a list of paths forms one
    /// stream in order.
    fn tokens(&mut self, f: &Ident, b: &Bound<'p>, name: Option<&str>) -> Option<DataSpec> {
        let tokenizer = match b.get("tokenizer") {
            Some(v) => self.tokenizer(v, false),
            None => Some(Tokenizer::Gpt2),
        };
        let d = &mut self.d;
        let train = match b.get("path") {
            Some(v) => paths(v, "path", d),
            None => {
                d.push(
                    Diagnostic::new(Code::P0107, f.span, "`tokens(...)` has no `path`")
                        .with_label("`path` missing")
                        .with_help(
                            "give the shard file(s): `tokens(\"data/owt/train.bin\")`, a glob \
                             `tokens(\"data/fineweb_train_*.bin\")` or a list",
                        ),
                );
                None
            }
        };
        let format = match b.get("format") {
            Some(v) => value::option(v, "format", &DataFormat::SHARD_NAMES, d)
                .and_then(DataFormat::from_name),
            None => Some(DataFormat::Nanogpt),
        };
        // `val` is either its own file(s) or a held-out fraction of the stream's tail.
        let (val_paths, val) = match b.get("val") {
            Some(v) if matches!(v.kind, ValueKind::Str(_) | ValueKind::List(_)) => {
                (paths(v, "val", d), Some(0.1))
            }
            Some(v) => (Some(vec![]), val_fraction(v, d)),
            None => (Some(vec![]), Some(0.1)),
        };
        let train = train?;
        let file = f.span.file;
        let resolve = |ps: &[String]| -> Vec<String> {
            ps.iter()
                .map(|p| self.program.resolve_path(file, p))
                .collect()
        };
        let shards = resolve(&train);
        let val_shards = resolve(&val_paths?);
        Some(DataSpec {
            name: name.map(str::to_string).unwrap_or_else(|| train[0].clone()),
            resolved_path: shards[0].clone(),
            path: train[0].clone(),
            tokenizer: tokenizer?,
            val_fraction: val?,
            val_blocks: 1,
            format: format?,
            shards,
            val_shards,
        })
    }

    fn optimizer_call(
        &mut self,
        func: OptimizerFunc,
        f: &'p Ident,
        args: &'p [crate::syntax::ast::Arg],
    ) -> Option<OptimizerSpec> {
        match func {
            OptimizerFunc::Adamw => adamw(f, args, &mut self.d).map(OptimizerSpec::Adamw),
            OptimizerFunc::Muon => self.muon(f, args),
        }
    }

    fn muon(&mut self, f: &'p Ident, args: &'p [crate::syntax::ast::Arg]) -> Option<OptimizerSpec> {
        let d = &mut self.d;
        let b = bind_args(
            f,
            args,
            &[
                "lr",
                "momentum",
                "nesterov",
                "ns_steps",
                "weight_decay",
                "adam",
            ],
            d,
        );
        let lr = lr(f, &b, d);
        let momentum = match b.get("momentum") {
            Some(v) => unit_interval_open(v, "momentum", d),
            None => Some(0.95),
        };
        let nesterov = b
            .get("nesterov")
            .map_or(Some(true), |v| value::boolean(v, "nesterov", d));
        let ns_steps = b.get("ns_steps").map_or(Some(5), |v| {
            value::integer_in(v, "ns_steps", 1, 100, d).map(|x| x as usize)
        });
        let weight_decay = b.get("weight_decay").map_or(Some(0.01), |v| {
            value::non_negative(v, "weight_decay", false, d)
        });
        let adam = match b.get("adam") {
            None => Some(AdamWSpec::with_lr(6e-4)),
            Some(v) => match self.component_value(v, DefKind::Optimizer, None) {
                Some(Component::Optimizer(OptimizerSpec::Adamw(a))) => Some(a),
                Some(_) => {
                    self.d.push(
                        Diagnostic::new(
                            Code::P0201,
                            v.span,
                            "expected an `adamw(...)` optimizer, found a `muon` optimizer",
                        )
                        .with_label("muon's embedded optimizer must be adamw"),
                    );
                    None
                }
                None => None,
            },
        };
        Some(OptimizerSpec::Muon(MuonSpec {
            lr: lr?,
            momentum: momentum?,
            nesterov: nesterov?,
            ns_steps: ns_steps?,
            weight_decay: weight_decay?,
            adam: adam?,
        }))
    }

    /// A growth's `init`: `random`, `random(std: x)`, `copy(stack)`, `zero`, `zero_out(...)`.
    /// Bare `copy` means `copy(stack)`.
    pub fn init_value(&mut self, v: &'p Value, model_std: f64) -> Option<InitSpec> {
        let d = &mut self.d;
        let (f, args): (&Ident, &[crate::syntax::ast::Arg]) = match &v.kind {
            ValueKind::Ref(n, None) => (n, &[]),
            ValueKind::Call(f, args) => {
                if InitFunc::from_name(&f.name).is_none() {
                    let mut diag = Diagnostic::new(
                        Code::P0105,
                        f.span,
                        format!("unknown init function `{}`", f.name),
                    )
                    .with_label("not an init");
                    diag = diag.with_help(
                        super::suggest::did_you_mean(&f.name, INIT_OPTIONS.iter().copied())
                            .unwrap_or_else(|| {
                                format!("`init` is one of {}", super::suggest::one_of(INIT_OPTIONS))
                            }),
                    );
                    d.push(diag);
                    return None;
                }
                (f, args.as_slice())
            }
            _ => {
                value::option(v, "init", INIT_OPTIONS, d)?;
                return None;
            }
        };
        let std_of = |b: &Bound, d: &mut Sink| match b.get("std") {
            Some(v) => value::non_negative(v, "std", true, d),
            None => Some(model_std),
        };
        let Some(func) = InitFunc::from_name(&f.name) else {
            value::option(v, "init", INIT_OPTIONS, d);
            return None;
        };
        match func {
            InitFunc::Random => {
                let b = bind_args(f, args, &["std"], d);
                std_of(&b, d).map(|std| InitSpec::Random { std })
            }
            InitFunc::ZeroOut => {
                let b = bind_args(f, args, &["std"], d);
                std_of(&b, d).map(|std| InitSpec::ZeroOut { std })
            }
            InitFunc::Zero => {
                bind_args(f, args, &[], d);
                Some(InitSpec::Zero)
            }
            InitFunc::Copy => {
                let b = bind_args(f, args, &["layout"], d);
                let layout = match b.get("layout") {
                    Some(v) => value::named(v, "copy layout", d)?,
                    None => CopyLayout::Stack,
                };
                Some(InitSpec::Copy { layout })
            }
        }
    }
}

fn unit_interval_open(v: &Value, what: &str, d: &mut Sink) -> Option<f64> {
    let x = value::number(v, d)?;
    if !(0.0..1.0).contains(&x) {
        value::out_of_range(
            v.span,
            format!("`{what}` must be in [0, 1), found {}", fmt_num(x)),
            None,
            d,
        );
        return None;
    }
    Some(x)
}

fn lr(f: &Ident, b: &Bound, d: &mut Sink) -> Option<f64> {
    match b.get("lr") {
        Some(v) => value::non_negative(v, "lr", true, d),
        None => {
            d.push(
                Diagnostic::new(
                    Code::P0107,
                    f.span,
                    format!("`{}(...)` has no `lr`", f.name),
                )
                .with_label("`lr` missing")
                .with_help(format!(
                    "give the peak learning rate: `{}(lr: 6e-4)`",
                    f.name
                )),
            );
            None
        }
    }
}

fn adamw(f: &Ident, args: &[crate::syntax::ast::Arg], d: &mut Sink) -> Option<AdamWSpec> {
    let b = bind_args(
        f,
        args,
        &[
            "lr",
            "betas",
            "eps",
            "weight_decay",
            "clip",
            "embed_lr_mult",
            "hidden_lr_mult",
            "norm_lr_mult",
        ],
        d,
    );
    let lr = lr(f, &b, d);
    let def = AdamWSpec::with_lr(0.0);
    let betas = match b.get("betas") {
        None => Some((def.beta1, def.beta2)),
        Some(v) => match &v.kind {
            ValueKind::Tuple(items) if items.len() == 2 => {
                let b1 = unit_interval_open(&items[0], "beta1", d);
                let b2 = unit_interval_open(&items[1], "beta2", d);
                b1.zip(b2)
            }
            _ => {
                value::mismatch(v, "a pair `(beta1, beta2)`", d);
                None
            }
        },
    };
    let eps = b
        .get("eps")
        .map_or(Some(def.eps), |v| value::non_negative(v, "eps", true, d));
    let weight_decay = b.get("weight_decay").map_or(Some(def.weight_decay), |v| {
        value::non_negative(v, "weight_decay", false, d)
    });
    let clip = match b.get("clip") {
        None => Some(None),
        Some(v) if matches!(&v.kind, ValueKind::Ref(n, None) if n.name == "none") => Some(None),
        Some(v) => match &v.kind {
            ValueKind::Number(_) => value::non_negative(v, "clip", true, d).map(Some),
            _ => {
                value::mismatch(v, "a gradient-norm bound or `none`", d);
                None
            }
        },
    };
    let mut mult = |k: &str| {
        b.get(k)
            .map_or(Some(1.0), |v| value::non_negative(v, k, false, d))
    };
    let (embed, hidden, norm) = (
        mult("embed_lr_mult"),
        mult("hidden_lr_mult"),
        mult("norm_lr_mult"),
    );
    Some(AdamWSpec {
        lr: lr?,
        beta1: betas?.0,
        beta2: betas?.1,
        eps: eps?,
        weight_decay: weight_decay?,
        clip: clip?,
        lr_mult: LrMultipliers {
            embed: embed?,
            hidden: hidden?,
            norm: norm?,
        },
    })
}

fn schedule(
    func: ScheduleFunc,
    f: &Ident,
    args: &[crate::syntax::ast::Arg],
    d: &mut Sink,
) -> Option<SchedDraft> {
    let frac = |x: f64| Time {
        kind: TimeKind::Fraction(x),
        span: f.span,
    };
    let time = |b: &Bound, k: &str, default: Time, d: &mut Sink| match b.get(k) {
        Some(v) => value::time(v, k, d),
        None => Some(default),
    };
    let floor = |b: &Bound, d: &mut Sink| match b.get("floor") {
        Some(v) => value::fraction(v, "floor", d),
        None => Some(0.0),
    };
    match func {
        ScheduleFunc::Wsd => {
            let b = bind_args(f, args, &["warmup", "decay", "shape", "floor"], d);
            let warmup = time(&b, "warmup", frac(0.02), d);
            let decay = time(&b, "decay", frac(0.10), d);
            let shape = match b.get("shape") {
                Some(v) => value::named(v, "shape", d),
                None => Some(DecayShape::Linear),
            };
            let floor = floor(&b, d);
            Some(SchedDraft::Wsd {
                warmup: warmup?,
                decay: decay?,
                shape: shape?,
                floor: floor?,
            })
        }
        ScheduleFunc::Cosine => {
            let b = bind_args(f, args, &["warmup", "floor"], d);
            let warmup = time(&b, "warmup", frac(0.02), d);
            let floor = floor(&b, d);
            Some(SchedDraft::Cosine {
                warmup: warmup?,
                floor: floor?,
            })
        }
        ScheduleFunc::Constant => {
            let b = bind_args(f, args, &["warmup"], d);
            let warmup = time(&b, "warmup", frac(0.0), d);
            Some(SchedDraft::Constant { warmup: warmup? })
        }
    }
}

impl SchedDraft {
    /// The schedule for a run of `total` steps; warmup and decay must fit in the run (P0203 at
    /// `used`, where the recipe names the schedule).
    pub fn resolve(&self, total: u64, tps: u64, used: Span, d: &mut Sink) -> Option<ScheduleSpec> {
        let too_long = |what: String, steps: u64, d: &mut Sink| {
            d.push(
                Diagnostic::new(
                    Code::P0203,
                    used,
                    format!("{what} ({steps} steps) is longer than the run ({total} steps)"),
                )
                .with_label("schedule does not fit the run")
                .with_help("shorten the warmup or decay, or lengthen the run"),
            );
            None
        };
        match *self {
            SchedDraft::Wsd {
                warmup,
                decay,
                shape,
                floor,
            } => {
                let w = warmup.steps(total, tps, d);
                let k = decay.steps(total, tps, d);
                if w.saturating_add(k) > total {
                    return too_long("warmup + decay".into(), w.saturating_add(k), d);
                }
                Some(ScheduleSpec::Wsd {
                    warmup_steps: w,
                    decay_steps: k,
                    shape,
                    floor,
                })
            }
            SchedDraft::Cosine { warmup, floor } => {
                let w = warmup.steps(total, tps, d);
                if w > total {
                    return too_long("the warmup".into(), w, d);
                }
                Some(ScheduleSpec::Cosine {
                    warmup_steps: w,
                    floor,
                })
            }
            SchedDraft::Constant { warmup } => {
                let w = warmup.steps(total, tps, d);
                if w > total {
                    return too_long("the warmup".into(), w, d);
                }
                Some(ScheduleSpec::Constant { warmup_steps: w })
            }
        }
    }
}

/// A held-out fraction strictly between 0 and 1.
fn val_fraction(v: &Value, d: &mut Sink) -> Option<f64> {
    value::fraction(v, "val", d).and_then(|x| {
        if x <= 0.0 || x >= 1.0 {
            value::out_of_range(
                v.span,
                format!(
                    "`val` must be strictly between 0 and 100%, found {}",
                    fmt_num(x)
                ),
                Some("the validation set is a held-out tail of the corpus, e.g. `val: 10%`"),
                d,
            );
            None
        } else {
            Some(x)
        }
    })
}

/// Blocks a text stream is cut into before its validation part is held out (`val_blocks`).
const DEFAULT_SPREAD_BLOCKS: u64 = 100;
/// More blocks than this leaves each one too short to hold a validation window.
const MAX_SPREAD_BLOCKS: u64 = 100_000;
/// The named values of `split:` (besides `spread(blocks: N)`).
pub const SPLIT_OPTIONS: &[&str] = &["tail", "spread"];

/// `split: tail` (1 block), `spread` (100 blocks) or `spread(blocks: N)` with `2 <= N`.
fn val_split(v: &Value, d: &mut Sink) -> Option<u64> {
    const HELP: &str = "`split: tail` holds out the end of the corpus; `split: spread(100)` \
                        cuts it into 100 blocks and holds out the end of each";
    let (f, args) = match &v.kind {
        ValueKind::Call(f, args) if f.name == "spread" => (f, args),
        _ => {
            return match value::option(v, "split", SPLIT_OPTIONS, d)? {
                "tail" => Some(1),
                _ => Some(DEFAULT_SPREAD_BLOCKS),
            };
        }
    };
    let b = bind_args(f, args, &["blocks"], d);
    let Some(n) = b.get("blocks") else {
        return Some(DEFAULT_SPREAD_BLOCKS);
    };
    let blocks = value::integer(n, "blocks", 2, d)?;
    if blocks > MAX_SPREAD_BLOCKS {
        value::out_of_range(
            n.span,
            format!("`blocks` must be at most {MAX_SPREAD_BLOCKS}, found {blocks}"),
            Some(HELP),
            d,
        );
        return None;
    }
    Some(blocks)
}

/// A path (or glob) string, or a non-empty list of them.
fn paths(v: &Value, what: &str, d: &mut Sink) -> Option<Vec<String>> {
    match &v.kind {
        ValueKind::Str(s) => Some(vec![s.clone()]),
        ValueKind::List(items) if items.is_empty() => {
            value::out_of_range(
                v.span,
                format!("`{what}` is an empty list"),
                Some("name at least one shard file"),
                d,
            );
            None
        }
        ValueKind::List(items) => {
            let ps: Vec<Option<String>> = items
                .iter()
                .map(|i| value::string(i, d).map(str::to_string))
                .collect();
            ps.into_iter().collect()
        }
        _ => {
            value::mismatch(v, "a path string or a list of them", d);
            None
        }
    }
}
