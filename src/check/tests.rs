//! Data-driven tests: each source is checked and its diagnostics rendered compactly, one per
//! line, as `CODE message [help]`.

use super::check_source;
use crate::diagnostic::{Diagnostic, has_errors};
use crate::plan::spec::*;

const PRELUDE: &str = "import \"std/paper.prog\"\n";

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| match &d.help {
            Some(h) => format!("{} {} [{}]", d.code, d.message, h),
            None => format!("{} {}", d.code, d.message),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Diagnostics of `src` (after the std prelude), compactly.
fn check(src: &str) -> String {
    check_with(src, &[])
}

fn check_with(src: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let (_, _, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &sets);
    render(&diags)
}

fn codes(src: &str) -> Vec<String> {
    let (_, _, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &[]);
    diags.iter().map(|d| d.code.to_string()).collect()
}

fn run(src: &str, name: &str, sets: &[&str]) -> RunSpec {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let (spec, _, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &sets);
    assert!(!has_errors(&diags), "{}", render(&diags));
    spec.runs
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no run {name}"))
}

#[track_caller]
fn expect(src: &str, want: &str) {
    let got = check(src);
    assert_eq!(got.trim(), want.trim(), "\n--- got ---\n{got}\n");
}

#[test]
fn std_library_checks_without_errors() {
    let (spec, _, diags) = check_source("t.prog", "import \"std/paper.prog\"", &[]);
    assert!(!has_errors(&diags), "{}", render(&diags));
    assert!(spec.runs.len() == 58, "{}", spec.runs.len());
    assert_eq!(spec.experiments.len(), 12);
    // The warnings std deliberately triggers (multi-stage, zero init, copy(last), late growth).
    let warned: std::collections::BTreeSet<String> =
        diags.iter().map(|d| d.code.to_string()).collect();
    for code in ["P0401", "P0402", "P0403", "P0404", "P0405"] {
        assert!(warned.contains(code), "{code} missing: {warned:?}");
    }
}

#[test]
fn codes_fire_where_they_should() {
    let cases: &[(&str, &str)] = &[
        (
            "P0102",
            "model gpt2_tiny { width: 4, heads: 1, depth: 1, context: 8 }",
        ),
        ("P0103", "recipe r = tiny_base { model = gpt2_smal }"),
        ("P0103", "recipe r = tiny_bas { }"),
        ("P0104", "model m = gpt2 { vocab: 50257 }"),
        (
            "P0104",
            "recipe r = tiny_base { grow at 80% to depth 6 { placment: top }; start depth 0 }",
        ),
        ("P0104", "optimizer o = adamw(lr: 1e-3, beta: (0.9, 0.95))"),
        (
            "P0104",
            "experiment ex { runs: [tiny_fixed], reference: tiny_fixed, seeds: 3 }",
        ),
        ("P0105", "schedule s = wsdd(warmup: 2%)"),
        (
            "P0105",
            "recipe r = tiny_base { model = gpt2_tiny(depth: 4) }",
        ),
        (
            "P0106",
            "recipe r = tiny_base { start depth 0; grow at 480 stesp to depth 6 }",
        ),
        ("P0107", "model m { width: 64, heads: 4, context: 64 }"),
        ("P0107", "recipe r { model = gpt2_tiny }"),
        ("P0107", "optimizer o = adamw(betas: (0.9, 0.95))"),
        ("P0108", "recipe r = tiny_base { seed = 1; seed = 2 }"),
        (
            "P0108",
            "recipe r = tiny_base { steps = 100; tokens = 204800 tokens }",
        ),
        ("P0108", "model m = gpt2 { heads: 12, heads: 4 }"),
        ("P0109", "model a = b { }\nmodel b = a { }"),
        (
            "P0109",
            "recipe a = c { }\nrecipe b = a { }\nrecipe c = b { }",
        ),
        (
            "P0110",
            "recipe r = tiny_base { start depth 0; grow at 80% to depth 6 { placement: middle } }",
        ),
        ("P0110", "data d = text(\"x.txt\", tokenizer: utf8)"),
        ("P0110", "model m = gpt2 { residual: half }"),
        (
            "P0201",
            "data books = text(\"x.txt\")\nrecipe r = tiny_base { model = books }",
        ),
        ("P0201", "recipe r = tiny_base { seed = \"zero\" }"),
        ("P0201", "recipe r = tiny_base { steps = 100.5 }"),
        ("P0202", "optimizer o = adamw(lr: 10 tokens)"),
        ("P0202", "recipe r = tiny_base { seed = 50% }"),
        ("P0202", "recipe r = tiny_base { batch = 64 tokens }"),
        ("P0203", "optimizer o = adamw(lr: -1)"),
        ("P0203", "data d = text(\"x.txt\", val: 0)"),
        ("P0203", "optimizer o = adamw(lr: 1, betas: (0.9, 1.0))"),
        ("P0203", "recipe r = tiny_base { steps = 0 }"),
        (
            "P0203",
            "recipe r = tiny_base { schedule = wsd(warmup: 50%, decay: 60%) }",
        ),
        ("P0203", "model m = gpt2 { width: 0 }"),
        ("P0203", "schedule s = wsd(floor: 150%)"),
        ("P0204", "model m = gpt2 { width: 100 }"),
        ("P0205", "recipe r = tiny_base { batch = 16 x 256 }"),
        (
            "P0301",
            "recipe r = tiny_base { start depth 0; grow at 80% to depth 2; grow at 50% to depth 6 }",
        ),
        (
            "P0302",
            "recipe r = tiny_base { start depth 0; grow at 0 to depth 6 }",
        ),
        (
            "P0302",
            "recipe r = tiny_base { start depth 0; grow at 600 to depth 6 }",
        ),
        (
            "P0303",
            "recipe r = tiny_base { start depth 2; grow at 50% to depth 2; grow at 80% to depth 6 }",
        ),
        ("P0303", "recipe r = tiny_base { start depth 8 }"),
        (
            "P0304",
            "recipe r = tiny_base { start depth 0; grow at 80% to depth 6 { init: copy(stack) } }",
        ),
        (
            "P0305",
            "recipe r = tiny_base { start depth 0; grow at 80% to depth 4 }",
        ),
        ("P0305", "recipe r = tiny_base { start depth 1 }"),
        (
            "P0306",
            "experiment ex { runs: [tiny_fixed, tiny_one_copy], reference: tiny_zero_random }",
        ),
        ("P0306", "experiment ex { runs: [], reference: tiny_fixed }"),
        (
            "P0306",
            "experiment ex { runs: [tiny_fixed, tiny_fixed], reference: tiny_fixed }",
        ),
        (
            "P0103",
            "experiment ex { runs: [tiny_fixed, gpt2_tiny], reference: tiny_fixed }",
        ),
        (
            "P0307",
            "recipe r = tiny_base { start depth 1; grow at 80% to depth 6 { optimizer_state: copy } }",
        ),
        (
            "P0401",
            "recipe r = tiny_base { start depth 0; grow at 95% to depth 6 }",
        ),
        (
            "P0402",
            "recipe r = tiny_base { start depth 0; grow at 85% to depth 6 }",
        ),
        (
            "P0403",
            "recipe r = tiny_base { start depth 0; grow at 40% to depth 3; grow at 70% to depth 6 }",
        ),
        (
            "P0404",
            "recipe r = tiny_base { start depth 1; grow at 80% to depth 6 { init: zero_out } }",
        ),
        (
            "P0405",
            "recipe r = tiny_base { start depth 3; grow at 80% to depth 6 { init: copy(last) } }",
        ),
        ("P0406", "recipe r = tiny_base { tokens = 1M tokens }"),
    ];
    let (_, _, std_diags) = check_source("t.prog", PRELUDE, &[]);
    let std_count = std_diags.len();
    for (code, src) in cases {
        let (_, _, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &[]);
        // Only what the snippet adds (std's own warnings stay the same).
        let added: Vec<&Diagnostic> = diags
            .iter()
            .filter(|d| d.span.file.0 == 0 || !std_diags.contains(d))
            .collect();
        assert!(diags.len() >= std_count, "{src}");
        if std::env::var("SHOWCASES").is_ok() {
            println!("== {code} {src}");
            let map = check_source("t.prog", &format!("{PRELUDE}{src}"), &[]).1;
            for d in &added {
                println!("{}", crate::diagnostic::render::render(d, &map, false));
            }
        }
        let errors: Vec<String> = added
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.code.to_string())
            .collect();
        let ok = if code.starts_with("P04") {
            errors.is_empty() && added.iter().any(|d| d.code.to_string() == *code)
        } else {
            errors == [code.to_string()]
        };
        assert!(
            ok,
            "{code} expected alone for `{src}`, got:\n{}",
            render(&added.into_iter().cloned().collect::<Vec<_>>())
        );
    }
}

#[test]
fn zz_show() {
    let src = std::env::var("SHOW").unwrap_or_default();
    if src.is_empty() {
        return;
    }
    let text = std::fs::read_to_string(&src).unwrap();
    let (_, map, diags) = check_source("t.prog", &text, &[]);
    for d in &diags {
        println!("{}", crate::diagnostic::render::render(d, &map, false));
    }
}
