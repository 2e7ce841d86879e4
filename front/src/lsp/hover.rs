//! Hover text: a recipe's model, steps and plan summary; a model's resolved fields; a
//! schedule's or optimizer's arguments; an experiment's fields.
//!
//! Invariant: values are quoted from the source as written (units and spelling kept); only a
//! recipe's plan summary is computed, and only when the file checks.

use crate::diagnostic::Span;
use crate::plan::compile_run;
use crate::syntax::Program;
use crate::syntax::ast::{Field, Item, ValueKind};

use super::Analysis;
use super::locate::find_def;

/// A value's source text, without the whitespace and line comment that a name's span
/// (`reference = ident ~ fields?`) also covers.
fn source_of(program: &Program, span: Span) -> String {
    let mut text = program.sources.slice(span).trim_end();
    loop {
        let last = text.rsplit('\n').next().unwrap_or("");
        let mut in_str = false;
        let cut = last.char_indices().find(|&(i, c)| {
            in_str ^= c == '"';
            !in_str && last[i..].starts_with("//")
        });
        match cut {
            Some((i, _)) => text = text[..text.len() - last.len() + i].trim_end(),
            None => return text.to_string(),
        }
    }
}

pub(super) fn hover_text(a: &Analysis, item: &Item) -> String {
    let p = &a.program;
    match item {
        Item::Recipe { name, parent, .. } => {
            let mut s = format!("**recipe** `{}`", name.name);
            if let Some(par) = parent {
                s.push_str(&format!(" (from `{}`)", par.name));
            }
            s.push_str("\n\n");
            let Some(run) = a.spec.runs.iter().find(|r| r.name == name.name) else {
                s.push_str("does not check yet: see its diagnostics");
                return s;
            };
            let plan = compile_run(run);
            let m = &run.model;
            s.push_str(&format!(
                "- model `{}`: width {}, heads {}, depth {}, context {}, vocab {}\n",
                m.name, m.width, m.heads, m.depth, m.context, m.vocab
            ));
            s.push_str(&format!(
                "- {} steps of {} x {} tokens, seed {}\n",
                run.total_steps, run.batch.sequences, run.batch.context, run.seed
            ));
            if let Some(rp) = plan.runs.first() {
                s.push_str(&format!("\n**plan**: {} segments\n\n", rp.segments.len()));
                for seg in &rp.segments {
                    s.push_str(&format!(
                        "- depth {}: steps {}..{}\n",
                        seg.depth, seg.start_step, seg.end_step
                    ));
                }
                let r = &rp.ratio;
                s.push_str(&format!(
                    "\nFLOP ratio to fixed depth: {:.3} exact, {:.3} 6N with embeddings, {:.3} 6N \
                     non-embedding\n\nprojected saving: {:.1}% of the fixed run's compute (exact)",
                    r.exact,
                    r.six_n_embedding,
                    r.six_n_non_embedding,
                    (1.0 - r.exact) * 100.0
                ));
            }
            s
        }
        Item::Model { name, .. } => {
            let mut s = format!("**model** `{}`\n\n", name.name);
            for (key, value) in model_fields(p, &name.name) {
                s.push_str(&format!("- {key}: `{value}`\n"));
            }
            s
        }
        Item::Let { kind, name, value } => {
            let mut s = format!(
                "**{}** `{}` = `{}`\n\n",
                kind.keyword(),
                name.name,
                source_of(p, value.span)
            );
            if let ValueKind::Call(f, args) = &value.kind {
                s.push_str(&format!("`{}` with\n\n", f.name));
                for (i, arg) in args.iter().enumerate() {
                    let key = arg
                        .name
                        .as_ref()
                        .map_or(format!("#{}", i + 1), |n| n.name.clone());
                    s.push_str(&format!("- {key}: `{}`\n", source_of(p, arg.value.span)));
                }
            }
            s
        }
        Item::Experiment { name, fields } => {
            let mut s = format!("**experiment** `{}`\n\n", name.name);
            for f in fields {
                s.push_str(&format!(
                    "- {}: `{}`\n",
                    f.key.name,
                    source_of(p, f.value.span)
                ));
            }
            s
        }
        Item::Import { path, .. } => format!("import `{path}`"),
    }
}

/// A model's fields through its `= PARENT` chain, the nearest definition of each winning,
/// in the order the base model lists them.
fn model_fields(p: &Program, name: &str) -> Vec<(String, String)> {
    let mut chain: Vec<&[Field]> = Vec::new();
    let mut current = Some(name.to_string());
    while let Some(n) = current.take() {
        if chain.len() > 32 {
            break; // an inheritance cycle (P0109 reports it)
        }
        match find_def(p, &n) {
            Some(Item::Model { parent, fields, .. }) => {
                chain.push(fields);
                current = parent.as_ref().map(|i| i.name.clone());
            }
            _ => break,
        }
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for fields in chain.iter().rev() {
        for f in *fields {
            let v = source_of(p, f.value.span);
            match out.iter_mut().find(|(k, _)| *k == f.key.name) {
                Some(slot) => slot.1 = v,
                None => out.push((f.key.name.clone(), v)),
            }
        }
    }
    out
}
