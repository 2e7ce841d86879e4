//! Binding `key: value` fields and call arguments to known names: unknown keys are P0104 (with
//! a did-you-mean), a key given twice is P0108 (labelling the first). Bound entries keep only
//! the first occurrence of each key.

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::syntax::ast::{Arg, Field, Ident, Value};

use super::suggest::{did_you_mean, one_of};
use super::value::Sink;

/// Known keys bound to their values, in the order written.
pub struct Bound<'v> {
    pub entries: Vec<(&'static str, &'v Ident, &'v Value)>,
}

impl<'v> Bound<'v> {
    pub fn get(&self, key: &str) -> Option<&'v Value> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }
}

pub fn unknown_key(key: &Ident, known: &[&'static str], context: &str, d: &mut Sink) {
    let help = did_you_mean(&key.name, known.iter().copied())
        .unwrap_or_else(|| format!("{context} takes {}", one_of(known)));
    let mut diag = Diagnostic::new(
        Code::P0104,
        key.span,
        format!("unknown field `{}` in {context}", key.name),
    )
    .with_label("unknown field")
    .with_help(help);
    if key.name == "vocab" {
        diag = diag
            .with_help("the vocabulary is not a model field: it is always the data's tokenizer's");
    }
    d.push(diag);
}

fn duplicate(key: &Ident, first: Span, d: &mut Sink) {
    d.push(
        Diagnostic::new(
            Code::P0108,
            key.span,
            format!("`{}` is given more than once", key.name),
        )
        .with_label("given again here")
        .with_secondary(first, "first given here")
        .with_help("remove one of them"),
    );
}

/// Binds `{ key: value }` fields; `context` names the owner for messages ("model `gpt2`").
pub fn bind_fields<'v>(
    fields: &'v [Field],
    known: &[&'static str],
    context: &str,
    d: &mut Sink,
) -> Bound<'v> {
    let mut entries: Vec<(&'static str, &'v Ident, &'v Value)> = Vec::new();
    for f in fields {
        let Some(k) = known.iter().find(|k| **k == f.key.name) else {
            unknown_key(&f.key, known, context, d);
            continue;
        };
        if let Some((_, first, _)) = entries.iter().find(|(e, _, _)| e == k) {
            duplicate(&f.key, first.span, d);
            continue;
        }
        entries.push((k, &f.key, &f.value));
    }
    Bound { entries }
}

/// Binds a call's arguments to `params` (positional ones in order, then named ones).
pub fn bind_args<'v>(
    func: &'v Ident,
    args: &'v [Arg],
    params: &[&'static str],
    d: &mut Sink,
) -> Bound<'v> {
    let context = format!("`{}(...)`", func.name);
    let mut entries: Vec<(&'static str, &'v Ident, &'v Value)> = Vec::new();
    let mut position = 0;
    for a in args {
        let (k, key_ident) = match &a.name {
            Some(name) => match params.iter().find(|p| **p == name.name) {
                Some(k) => (*k, name),
                None => {
                    unknown_key(name, params, &context, d);
                    continue;
                }
            },
            None => {
                let Some(k) = params.get(position) else {
                    let takes = match params.len() {
                        0 => "no arguments".to_string(),
                        1 => "1 argument".to_string(),
                        n => format!("{n} arguments"),
                    };
                    d.push(
                        Diagnostic::new(
                            Code::P0104,
                            a.value.span,
                            format!("too many arguments to `{}`", func.name),
                        )
                        .with_label("unexpected argument")
                        .with_help(format!("`{}` takes {takes}", func.name)),
                    );
                    continue;
                };
                position += 1;
                (*k, func)
            }
        };
        if let Some((_, first, first_v)) = entries.iter().find(|(e, _, _)| *e == k) {
            let first_span = if std::ptr::eq(*first, func) {
                first_v.span
            } else {
                first.span
            };
            let key = Ident {
                name: k.to_string(),
                span: a.name.as_ref().map(|n| n.span).unwrap_or(a.value.span),
            };
            duplicate(&key, first_span, d);
            continue;
        }
        entries.push((k, key_ident, &a.value));
    }
    Bound { entries }
}
