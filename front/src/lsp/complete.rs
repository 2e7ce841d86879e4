//! Completion: option values after `KEY:` and inside `copy(`, field names by enclosing
//! block, known names after `model =`, `schedule =`, `runs:` and the like.
//!
//! Invariant: it reads the buffer's text around the cursor, not the tree, so it works in a
//! file that does not parse yet.

use lsp_types::{CompletionItem, CompletionItemKind};

use crate::check::{
    EXPERIMENT_FIELDS, GROWTH_OPTIONS, INIT_OPTIONS, MODEL_FIELDS, OPTIMIZER_FUNCS, RECIPE_KEYS,
    SCHEDULE_FUNCS, SPLIT_OPTIONS,
};
use crate::plan::spec::{
    CopyLayout, DataFormat, DecayShape, OptStatePolicy, Placement, ResidualScaling, Tokenizer,
};
use crate::syntax::Program;
use crate::syntax::ast::Item;

use super::position::is_ident;

/// Values each option field accepts, from the lists the checker checks against.
fn option_values(key: &str) -> Vec<String> {
    let names = |ns: &[&str]| ns.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    match key {
        "init" => {
            let mut v = names(INIT_OPTIONS);
            v.push("random(std: 0.02)".into());
            v.extend(CopyLayout::NAMES.iter().map(|l| format!("copy({l})")));
            v
        }
        "placement" => names(Placement::NAMES),
        "optimizer_state" => names(OptStatePolicy::NAMES),
        "residual" => names(ResidualScaling::NAMES),
        "shape" => names(DecayShape::NAMES),
        "tokenizer" => Tokenizer::FORMS
            .iter()
            .map(|(_, c)| c.to_string())
            .collect(),
        "format" => names(&DataFormat::SHARD_NAMES),
        "split" => {
            let mut v = names(SPLIT_OPTIONS);
            v.push("spread(blocks: 100)".into());
            v
        }
        "clip" => names(&["none"]),
        "nesterov" => names(&["true", "false"]),
        _ => Vec::new(),
    }
}

fn item(label: &str, kind: CompletionItemKind, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail: (!detail.is_empty()).then(|| detail.to_string()),
        ..CompletionItem::default()
    }
}

/// Names defined by items of one keyword (`model`, `data`, ..., `recipe`).
fn names_of(p: &Program, keyword: &str) -> Vec<CompletionItem> {
    p.modules
        .iter()
        .flat_map(|m| m.items.iter())
        .filter(|i| match i {
            Item::Model { .. } => keyword == "model",
            Item::Let { kind, .. } => kind.keyword() == keyword,
            Item::Recipe { .. } => keyword == "recipe",
            Item::Experiment { .. } => keyword == "experiment",
            Item::Import { .. } => false,
        })
        .filter_map(|i| i.name())
        .map(|n| item(&n.name, CompletionItemKind::REFERENCE, keyword))
        .collect()
}

/// Completions at `offset`: option values after `copy(` or `KEY:`/`KEY =`, field names at the
/// start of a line inside a block, known names elsewhere.
pub(super) fn completions(p: &Program, text: &str, offset: usize) -> Vec<CompletionItem> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..offset];
    let partial_start = before
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_ident(c))
        .last()
        .map_or(before.len(), |(i, _)| i);
    let head = before[..partial_start].trim_end();
    let value = CompletionItemKind::ENUM_MEMBER;
    if head.ends_with("copy(") {
        return CopyLayout::NAMES
            .iter()
            .map(|v| item(v, value, "copy layout"))
            .collect();
    }
    if let Some(key_part) = head.strip_suffix(':').or_else(|| head.strip_suffix('=')) {
        let key: String = key_part
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| is_ident(*c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let mut out: Vec<CompletionItem> = option_values(&key)
            .iter()
            .map(|v| item(v, value, &key))
            .collect();
        let funcs = |fs: &[&str], out: &mut Vec<CompletionItem>| {
            out.extend(
                fs.iter()
                    .map(|f| item(&format!("{f}()"), CompletionItemKind::FUNCTION, "")),
            )
        };
        match key.as_str() {
            "model" => out.extend(names_of(p, "model")),
            "data" => {
                out.extend(names_of(p, "data"));
                funcs(&["text"], &mut out);
            }
            "schedule" => {
                out.extend(names_of(p, "schedule"));
                funcs(SCHEDULE_FUNCS, &mut out);
            }
            "optimizer" | "adam" => {
                out.extend(names_of(p, "optimizer"));
                funcs(OPTIMIZER_FUNCS, &mut out);
            }
            "runs" | "reference" | "frontier" => out.extend(names_of(p, "recipe")),
            _ => {}
        }
        if key_part.trim_end().ends_with(|c: char| is_ident(c)) && !out.is_empty() {
            return out;
        }
        if head.ends_with('=') && head.split_whitespace().count() >= 2 {
            // `recipe NAME =` or `model NAME =`: a parent.
            let kw = head.split_whitespace().next().unwrap_or("");
            return names_of(p, kw);
        }
        return out;
    }
    if head.is_empty() {
        let field = CompletionItemKind::FIELD;
        return match enclosing_block(text, line_start) {
            Block::Top => ["import", "model", "data", "schedule", "optimizer", "recipe"]
                .iter()
                .chain(["experiment"].iter())
                .map(|k| item(k, CompletionItemKind::KEYWORD, ""))
                .collect(),
            Block::Recipe => RECIPE_KEYS
                .iter()
                .map(|k| item(k, field, "recipe statement"))
                .chain(
                    ["start depth", "grow at", "no growth"]
                        .iter()
                        .map(|k| item(k, CompletionItemKind::KEYWORD, "")),
                )
                .collect(),
            Block::Model => MODEL_FIELDS
                .iter()
                .map(|k| item(k, field, "model field"))
                .collect(),
            Block::Grow => GROWTH_OPTIONS
                .iter()
                .map(|k| item(k, field, "growth option"))
                .collect(),
            Block::Experiment => EXPERIMENT_FIELDS
                .iter()
                .map(|k| item(k, field, "experiment field"))
                .collect(),
        };
    }
    Vec::new()
}

enum Block {
    Top,
    Recipe,
    Model,
    Grow,
    Experiment,
}

/// The kind of the innermost `{` still open at `offset` (comments and strings are not
/// skipped: good enough for completion).
fn enclosing_block(text: &str, offset: usize) -> Block {
    let mut depth = 0usize;
    for (i, c) in text[..offset].char_indices().rev() {
        match c {
            '}' => depth += 1,
            '{' if depth > 0 => depth -= 1,
            '{' => {
                let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
                let line = text[line_start..i].trim_start();
                return if line.contains("grow ") {
                    Block::Grow
                } else if line.starts_with("recipe") && !line.contains('{') {
                    Block::Recipe
                } else if line.starts_with("experiment") {
                    Block::Experiment
                } else {
                    Block::Model
                };
            }
            _ => {}
        }
    }
    Block::Top
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::load_source;

    #[test]
    fn completes_copy_layouts_and_model_fields() {
        let text = "model m { width: 32 }\nmodel n {\n  wi\n}\nrecipe r {\n  model = m\n  grow at 1 to depth 2 { init: copy(";
        let (p, _) = load_source("t.prog", text, &[]);
        let labels = |items: Vec<CompletionItem>| -> Vec<String> {
            items.into_iter().map(|i| i.label).collect()
        };
        let at_copy = labels(completions(&p, text, text.len()));
        assert_eq!(at_copy, ["stack", "interleave", "last"]);
        let in_model = labels(completions(&p, text, text.find("  wi\n").unwrap() + 4));
        assert!(in_model.contains(&"width".to_string()), "{in_model:?}");
        let after_model = labels(completions(&p, text, text.find("model = ").unwrap() + 8));
        assert!(after_model.contains(&"m".to_string()), "{after_model:?}");
    }
}
