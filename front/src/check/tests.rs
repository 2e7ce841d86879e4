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
    let (_, map, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &sets);
    render(&outside_std(&map, diags))
}

/// Drops the diagnostics located in std files (std's own, deliberate warnings).
fn outside_std(map: &crate::diagnostic::SourceMap, diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags
        .into_iter()
        .filter(|d| !map.get(d.span.file).name.starts_with("std/"))
        .collect()
}

fn codes(src: &str) -> Vec<String> {
    let (_, map, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &[]);
    outside_std(&map, diags)
        .iter()
        .map(|d| d.code.to_string())
        .collect()
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

/// A scratch directory under the system temp dir, removed when the test ends.
fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("progc-{tag}-"))
        .tempdir()
        .expect("temp dir")
}

/// Loads and checks the file at `path`, which must load cleanly and check without errors, and
/// returns its run `name`.
fn checked_run(path: &std::path::Path, name: &str) -> RunSpec {
    let (program, load_diags) = crate::syntax::load_program(path, &[]).expect("load");
    assert!(load_diags.is_empty(), "{load_diags:?}");
    let (spec, diags) = super::check(&program);
    assert!(!has_errors(&diags), "{}", render(&diags));
    spec.runs.into_iter().find(|r| r.name == name).expect(name)
}

#[track_caller]
fn expect(src: &str, want: &str) {
    let got = check(src);
    assert_eq!(got.trim(), want.trim(), "\n--- got ---\n{got}\n");
}

#[test]
fn a_file_is_warned_about_its_own_code_not_its_imports() {
    let clean = "import \"std/paper.prog\"\nrecipe mine = mid_fixed { seed = 4 }\n";
    let (program, _) = crate::syntax::load_source("t.prog", clean, &[]);
    let (_, diags) = super::check(&program);
    assert!(diags.len() >= 18, "std's own warnings: {}", diags.len());
    let shown = super::quiet_imports(&program, diags);
    assert!(shown.is_empty(), "{}", render(&shown));

    // The user's own warning stays, and so do errors wherever they are.
    let late = "import \"std/paper.prog\"\n\
                recipe mine = mid_base { start depth 0; grow at 95% to depth 6 }\n";
    let (program, _) = crate::syntax::load_source("t.prog", late, &[]);
    let (_, diags) = super::check(&program);
    let shown = super::quiet_imports(&program, diags);
    let codes: Vec<String> = shown.iter().map(|d| d.code.to_string()).collect();
    assert!(codes.contains(&"P0401".to_string()), "{codes:?}");
    assert!(shown.iter().all(|d| d.span.file == program.modules[0].file));
}

#[test]
fn std_library_checks_without_errors() {
    let (spec, _, diags) = check_source("t.prog", "import \"std/paper.prog\"", &[]);
    assert!(!has_errors(&diags), "{}", render(&diags));
    // 45 tiny recipes (E1-E7 in 8 experiments), 26 mid ones (8 experiments), 5 of the BPE
    // pilot (1 experiment), 20 over-trained ones (2 experiments) and 22 GPU-size ones (8
    // experiments).
    assert_eq!(spec.runs.len(), 125);
    assert_eq!(spec.experiments.len(), 30);
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
            "experiment ex { runs: [tiny_fixed], reference: tiny_fixed, sedes: 3 }",
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
            "P0112",
            "data d = text(\"x.txt\", tokenizer: \"no/such/tokenizer.json\")",
        ),
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
        ("P0203", "data d = text(\"x.txt\", tokenizer: bpe(100))"),
        ("P0203", "data d = text(\"x.txt\", tokenizer: bpe(0))"),
        ("P0203", "data d = text(\"x.txt\", tokenizer: bpe(2000000))"),
        ("P0201", "data d = tokens(\"x.bin\", tokenizer: bpe(4096))"),
        ("P0201", "data d = text(\"x.txt\", tokenizer: bpe(4096.5))"),
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
            "recipe r = tiny_base { start depth 0; grow at 1500 to depth 6 }",
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
            "P0306",
            "experiment ex { runs: [tiny_fixed], reference: tiny_fixed, seeds: [0, 2, 0] }",
        ),
        (
            "P0306",
            "experiment ex { runs: [tiny_fixed], reference: tiny_fixed, seeds: [] }",
        ),
        (
            "P0203",
            "experiment ex { runs: [tiny_fixed], reference: tiny_fixed, seeds: 0 }",
        ),
        (
            "P0203",
            "experiment ex { runs: [tiny_fixed], reference: tiny_fixed, seeds: [1, -2] }",
        ),
        (
            "P0201",
            "experiment ex { runs: [tiny_fixed], reference: tiny_fixed, seeds: \"five\" }",
        ),
        (
            "P0201",
            "experiment ex { runs: [tiny_fixed], reference: tiny_fixed, seeds: [0.5] }",
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
fn analysis_goes_on_after_errors() {
    // Five independent problems in five places: all five are reported, in source order.
    expect(
        r#"
model m = gpt2_tiny { heads: 5 }
data d = text("x.txt", tokenizer: utf8)
optimizer o = adamw(lr: -1)
recipe r = tiny_base { seed = 50%; stpes = 10 }
experiment ex { runs: [tiny_fixed], reference: tiny_zero }
"#,
        "P0204 5 heads do not divide the width 128 [the head size is width / heads: use a number of heads that divides 128, e.g. 4]
P0110 unknown `tokenizer` value `utf8` [`tokenizer` is `gpt2`, `bytes`, `bpe(N)` or a path to a tokenizer.json]
P0203 `lr` must be positive, found -1
P0202 expected an integer, found a percentage
P0104 unknown field `stpes` in recipe `r` [did you mean `steps`?]
P0306 the reference `tiny_zero` is not one of the runs [add `tiny_zero` to `runs`]",
    );
}

#[test]
fn one_root_cause_one_diagnostic() {
    // An unknown parent is reported once, not once per child or per missing field.
    expect(
        "recipe a = nowhere { seed = 1 }\nrecipe b = a { seed = 2 }\nrecipe c = b { }",
        "P0103 cannot find recipe `nowhere`",
    );
    // A broken model is reported at the model, not again in every recipe that uses it.
    expect(
        "model m = gpt2_tiny { heads: 3 }\nrecipe a = tiny_base { model = m }\nrecipe b = a { }",
        "P0204 3 heads do not divide the width 128 [the head size is width / heads: use a number of heads that divides 128, e.g. 4]",
    );
    // An inherited bad statement is reported once, at the parent.
    expect(
        "recipe a = tiny_base { seed = -1 }\nrecipe b = a { }\nrecipe c = a { steps = 1000 }",
        "P0203 `seed` must be at least 0, found -1",
    );
    // A growth's learning-rate multiplier is a number at least 0.
    expect(
        "recipe r = tiny_base { start depth 1; grow at 80% to depth 6 { lr_mult: -2 } }",
        "P0203 `lr_mult` must be at least 0, found -2",
    );
    // Missing fields: reported at the root recipe only.
    assert_eq!(
        codes("recipe base { seed = 1 }\nrecipe a = base { }\nrecipe b = base { }"),
        ["P0107"]
    );
    // A cycle is reported once, whichever member it is found from.
    assert_eq!(
        codes("recipe a = b { }\nrecipe b = a { }\nrecipe c = a { }"),
        ["P0109"]
    );
}

#[test]
fn diagnostics_are_sorted_and_unique() {
    let (_, _, diags) = check_source(
        "t.prog",
        &format!(
            "{PRELUDE}recipe z = tiny_base {{ seed = 1.5 }}\nrecipe a = z {{ }}\nmodel q {{ width: 0 }}"
        ),
        &[],
    );
    let keys: Vec<_> = diags
        .iter()
        .map(|d| (d.span.file, d.span.start, d.code))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    for (i, a) in diags.iter().enumerate() {
        assert!(!diags[i + 1..].contains(a), "duplicate {a:?}");
    }
}

#[test]
fn resolves_a_full_recipe_with_defaults() {
    let r = run(
        r#"
data books = text("data/emma.txt", tokenizer: bytes)
recipe full {
  model     = gpt2_tiny { context: 64, residual: inv_sqrt_depth }
  data      = books
  tokens    = 1024000 tokens
  batch     = 16 x 64
  optimizer = adamw(lr: 1e-3)
  schedule  = wsd(warmup: 10 steps, decay: 10%)
  start depth 1
  grow at 80% to depth 6 { init: copy(interleave), optimizer_state: copy, placement: bottom, lr_mult: 2.5 }
}
"#,
        "full",
        &[],
    );
    assert_eq!(r.total_steps, 1000);
    assert_eq!(
        r.batch,
        BatchSpec {
            sequences: 16,
            context: 64
        }
    );
    assert_eq!(r.model.context, 64);
    assert_eq!(r.model.width, 128);
    assert_eq!(r.model.depth, 6);
    assert_eq!(r.model.vocab, 256);
    assert_eq!(r.model.mlp_ratio, 4);
    assert_eq!(r.model.init_std, 0.02);
    assert_eq!(r.model.residual, ResidualScaling::InvSqrtDepth);
    assert_eq!(r.data.val_fraction, 0.1);
    assert_eq!(r.data.resolved_path, "data/emma.txt");
    assert_eq!(r.data.name, "books");
    assert_eq!(
        r.schedule,
        ScheduleSpec::Wsd {
            warmup_steps: 10,
            decay_steps: 100,
            shape: DecayShape::Linear,
            floor: 0.0
        }
    );
    let OptimizerSpec::Adamw(a) = r.optimizer else {
        panic!("adamw")
    };
    assert_eq!(
        (a.lr, a.beta1, a.beta2, a.eps, a.weight_decay),
        (1e-3, 0.9, 0.95, 1e-8, 0.01)
    );
    assert_eq!(a.clip, None);
    assert_eq!(
        (r.seed, r.eval_every, r.eval_batches, r.checkpoint_every),
        (0, 50, 4, 50)
    );
    assert_eq!(r.start_depth, 1);
    assert_eq!(
        r.growths,
        [GrowthSpec {
            at_step: 800,
            from_depth: 1,
            to_depth: 6,
            init: InitSpec::Copy {
                layout: CopyLayout::Interleave
            },
            placement: Placement::Bottom,
            optimizer_state: OptStatePolicy::Copy,
            lr_mult: 2.5,
        }]
    );
    assert_eq!(r.depth_at(799), 1);
    assert_eq!(r.depth_at(800), 6);
}

#[test]
fn std_recipes_resolve_as_the_paper_says() {
    let r = run("", "tiny_zero_random", &[]);
    assert_eq!((r.total_steps, r.start_depth, r.eval_every), (1500, 0, 100));
    assert_eq!(r.growths.len(), 1);
    assert_eq!(r.growths[0].at_step, 1200);
    assert_eq!(r.growths[0].init, InitSpec::Random { std: 0.02 });
    assert_eq!(r.growths[0].placement, Placement::Top);
    assert_eq!(r.growths[0].optimizer_state, OptStatePolicy::Keep);
    assert_eq!(
        r.schedule,
        ScheduleSpec::Wsd {
            warmup_steps: 30,
            decay_steps: 150,
            shape: DecayShape::Linear,
            floor: 0.0
        }
    );
    // A fixed-depth run: no start depth, no growth.
    let f = run("", "tiny_fixed", &[]);
    assert_eq!((f.start_depth, f.growths.len()), (6, 0));
    // The multi-stage run keeps both growths in order.
    let m = run("", "tiny_multi", &[]);
    let steps: Vec<_> = m
        .growths
        .iter()
        .map(|g| (g.at_step, g.from_depth, g.to_depth))
        .collect();
    assert_eq!(steps, [(600, 0, 2), (1200, 2, 6)]);
    // Muon with its embedded AdamW; the GPU data with the gpt2 tokenizer.
    let g = run(
        "recipe gm = gpu_zero_random { optimizer = muon_paper }",
        "gm",
        &[],
    );
    let OptimizerSpec::Muon(mu) = g.optimizer else {
        panic!("muon")
    };
    assert_eq!(
        (mu.lr, mu.ns_steps, mu.nesterov, mu.adam.lr),
        (0.02, 5, true, 6e-4)
    );
    assert_eq!((g.model.vocab, g.data.val_fraction), (50257, 0.02));
}

#[test]
fn inheritance_replaces_growths_and_assignments() {
    let src = "recipe a = tiny_zero_random { steps = 1000 }\n\
               recipe b = a { no growth; start depth 6 }\n\
               recipe c = a { start depth 1; grow at 50% to depth 6 }";
    let a = run(src, "a", &[]);
    assert_eq!((a.total_steps, a.growths[0].at_step), (1000, 800));
    let b = run(src, "b", &[]);
    assert_eq!((b.start_depth, b.growths.len()), (6, 0));
    let c = run(src, "c", &[]);
    assert_eq!(
        (c.start_depth, c.growths.len(), c.growths[0].at_step),
        (1, 1, 500)
    );
    // `tokens` in a child replaces the parent's `steps` (one slot, the run length).
    let t = run("recipe t = tiny_base { tokens = 2048000 tokens }", "t", &[]);
    assert_eq!(t.total_steps, 2000);
}

#[test]
fn set_overrides_apply_to_every_recipe() {
    let r = run("", "tiny_zero_random", &["steps=2000"]);
    assert_eq!((r.total_steps, r.growths[0].at_step), (2000, 1600));
    let r = run("", "tiny_fixed", &["seed=7"]);
    assert_eq!(r.seed, 7);
    assert_eq!(
        check_with("", &["stpes=1"]),
        "P0104 unknown field `stpes` in an override [did you mean `steps`?]"
    );
    let (_, map, diags) = check_source("t.prog", PRELUDE, &["stpes=1".to_string()]);
    let diags = outside_std(&map, diags);
    assert_eq!(diags.len(), 1);
    assert_eq!(map.get(diags[0].span.file).name, "<--set>");
    assert_eq!(map.slice(diags[0].span), "stpes");
    // A bad value is checked like any statement, with its span in the override.
    let (_, map, diags) = check_source("t.prog", PRELUDE, &["seed=50%".to_string()]);
    let diags = outside_std(&map, diags);
    assert!(
        diags.iter().all(|d| d.code.to_string() == "P0202"),
        "{}",
        render(&diags)
    );
    assert_eq!(diags.len(), 1);
    assert_eq!(map.slice(diags[0].span), "50%");
}

#[test]
fn experiments_resolve_only_with_all_their_runs() {
    let (spec, _, _) = check_source(
        "t.prog",
        &format!(
            "{PRELUDE}recipe bad = tiny_base {{ seed = 1.5 }}\n\
                  experiment good {{ runs: [tiny_fixed, tiny_zero_random], reference: tiny_fixed }}\n\
                  experiment broken {{ runs: [tiny_fixed, bad], reference: tiny_fixed }}"
        ),
        &[],
    );
    let names: Vec<&str> = spec.experiments.iter().map(|e| e.name.as_str()).collect();
    assert!(
        names.contains(&"good") && !names.contains(&"broken"),
        "{names:?}"
    );
    let e1 = spec
        .experiments
        .iter()
        .find(|e| e.name == "e1")
        .expect("e1");
    assert_eq!(e1.reference, "tiny_fixed");
    assert_eq!(e1.runs.len(), 4);
}

#[test]
fn seeds_are_a_count_or_a_list() {
    let seeds = |field: &str| {
        let src = format!(
            "{PRELUDE}experiment ex {{ runs: [tiny_fixed, tiny_zero_random], reference: tiny_fixed{field} }}"
        );
        let (spec, _, diags) = check_source("t.prog", &src, &[]);
        assert!(!has_errors(&diags), "{}", render(&diags));
        let ex = spec
            .experiments
            .iter()
            .find(|e| e.name == "ex")
            .expect("ex");
        ex.seeds.clone()
    };
    assert_eq!(seeds(""), Vec::<u64>::new());
    assert_eq!(seeds(", seeds: 3"), vec![0, 1, 2]);
    assert_eq!(seeds(", seeds: [4, 1, 9]"), vec![4, 1, 9]);
    assert_eq!(seeds(", seeds: 1"), vec![0]);
}

#[test]
fn frontier_points_are_the_reference_at_other_lengths() {
    // A schedule with its warmup in steps: the lengths share their stable phase.
    let base = "schedule w = wsd(warmup: 30, decay: 10%, shape: linear, floor: 0)\n\
                recipe f = tiny_base { schedule = w }\n\
                recipe g = f { start depth 0; grow at 80% to depth 6 }\n";
    let exp = |frontier: &str, extra: &str| {
        check(&format!(
            "{base}{extra}experiment ex {{ runs: [f, g], reference: f, seeds: 2, frontier: {frontier} }}"
        ))
    };
    let quarter = "recipe f_q = f { steps = 375 }\nrecipe f_h = f { steps = 750 }\n";
    assert_eq!(exp("[f_q, f_h]", quarter), "");
    let (spec, _, _) = check_source(
        "t.prog",
        &format!(
            "{PRELUDE}{base}{quarter}experiment ex {{ runs: [f, g], reference: f, frontier: [f_h, f_q] }}"
        ),
        &[],
    );
    let ex = spec
        .experiments
        .iter()
        .find(|e| e.name == "ex")
        .expect("ex");
    assert_eq!(ex.frontier, vec!["f_h".to_string(), "f_q".to_string()]);
    // More than the length differs: named, with the fields.
    let lr = exp(
        "[f_lr]",
        "recipe f_lr = f { steps = 375; optimizer = adamw(lr: 1e-3); eval_batches = 8 }\n",
    );
    assert!(
        lr.starts_with("P0306 frontier point `f_lr` differs from the reference `f` in more than its length: `optimizer` and `eval_batches`"),
        "{lr}"
    );
    // A seed differs only without experiment seeds.
    let seeded = "recipe f_s = f { steps = 375; seed = 4 }\n";
    assert_eq!(exp("[f_s]", seeded), "");
    let unseeded = check(&format!(
        "{base}{seeded}experiment ex {{ runs: [f, g], reference: f, frontier: [f_s] }}"
    ));
    assert!(
        unseeded.contains("more than its length: `seed`"),
        "{unseeded}"
    );
    // The same length twice, a run as a frontier point, an empty list.
    let twice = exp(
        "[f_q, f_q2]",
        "recipe f_q = f { steps = 375 }\nrecipe f_q2 = f { steps = 375 }\n",
    );
    assert!(
        twice.starts_with(
            "P0407 frontier point `f_q2` has the same length as `f_q` (375 steps): left out"
        ),
        "{twice}"
    );
    // `--set steps=N` gives every recipe one length: the frontier empties, nothing breaks.
    let (spec, _, diags) = check_source(
        "t.prog",
        &format!(
            "{PRELUDE}{base}{quarter}experiment ex {{ runs: [f, g], reference: f, frontier: [f_q, f_h] }}"
        ),
        &["steps=500".to_string()],
    );
    assert!(!has_errors(&diags), "{}", render(&diags));
    let ex = spec
        .experiments
        .iter()
        .find(|e| e.name == "ex")
        .expect("ex");
    assert!(ex.frontier.is_empty());
    assert!(exp("[f]", "").contains("P0306 `f` is both a run and a frontier point"));
    assert!(exp("[]", "").contains("P0306 an experiment needs at least one frontier point"));
    assert!(
        exp("[nope]", "").starts_with("P0103"),
        "{}",
        exp("[nope]", "")
    );
    // A warmup given as a fraction of the run shares only the first step or so: P0407.
    let frac = check(
        "recipe r_q = tiny_fixed { steps = 375 }\n\
         experiment ex { runs: [tiny_fixed], reference: tiny_fixed, frontier: [r_q] }",
    );
    assert!(
        frac.starts_with("P0407 frontier point `r_q` shares 0 of its 375 steps with the reference"),
        "{frac}"
    );
}

#[test]
fn text_data_holds_out_a_tail_or_spread_blocks() {
    let blocks = |split: &str| {
        let src = format!(
            "{PRELUDE}data d = text(\"data/emma.txt\", tokenizer: bytes, val: 1%{split})\n\
             recipe r = tiny_base {{ data = d }}"
        );
        let (spec, _, diags) = check_source("t.prog", &src, &[]);
        assert!(!has_errors(&diags), "{}", render(&diags));
        spec.runs
            .iter()
            .find(|r| r.name == "r")
            .expect("r")
            .data
            .val_blocks
    };
    assert_eq!(blocks(""), 1);
    assert_eq!(blocks(", split: tail"), 1);
    assert_eq!(blocks(", split: spread"), 100);
    assert_eq!(blocks(", split: spread(blocks: 250)"), 250);
    assert_eq!(blocks(", split: spread(40)"), 40);
    let bad = |split: &str| {
        check(&format!(
            "data d = text(\"data/emma.txt\", tokenizer: bytes, val: 1%, split: {split})"
        ))
    };
    assert!(
        bad("spread(1)").starts_with("P0203 `blocks` must be at least 2"),
        "{}",
        bad("spread(1)")
    );
    assert!(
        bad("spread(1000000)").contains("at most 100000"),
        "{}",
        bad("spread(1000000)")
    );
    assert!(
        bad("middle").starts_with("P0110 unknown `split` value `middle`"),
        "{}",
        bad("middle")
    );
}

#[test]
fn checkpoints_every_steps_or_every_wall_clock_minutes() {
    let spec_of = |extra: &str| run(&format!("recipe c = tiny_base {{ {extra} }}"), "c", &[]);
    let d = spec_of("");
    assert_eq!((d.checkpoint_every, d.checkpoint_clock_s), (75, None));
    assert_eq!(
        d.checkpoint_clock(),
        Some(std::time::Duration::from_secs(1800))
    );
    let m = spec_of("checkpoint_every = 10 min");
    assert_eq!((m.checkpoint_every, m.checkpoint_clock_s), (75, Some(600)));
    let h = spec_of("checkpoint_every = 2 h");
    assert_eq!(h.checkpoint_clock_s, Some(7200));
    let off = spec_of("checkpoint_every = 0 min");
    assert_eq!(off.checkpoint_clock(), None);
    let steps = spec_of("checkpoint_every = 300");
    assert_eq!(
        (steps.checkpoint_every, steps.checkpoint_clock_s),
        (300, None)
    );
    assert_eq!(
        codes("recipe c = tiny_base { checkpoint_every = 1.5 s }"),
        vec!["P0203"]
    );
    let eval = check("recipe c = tiny_base { eval_every = 10 min }");
    assert!(
        eval.starts_with("P0202 `eval_every` is a training time, not a wall-clock time"),
        "{eval}"
    );
    assert!(check("recipe c = tiny_base { checkpoint_every = 5 minutes }").starts_with("P0106"));
}

#[test]
fn times_in_tokens_and_steps() {
    let r = run(
        "recipe t = tiny_base { start depth 0; grow at 983040 tokens to depth 6 }",
        "t",
        &[],
    );
    assert_eq!(r.growths[0].at_step, 960);
    let r = run(
        "recipe t = tiny_base { start depth 0; grow at 450 steps to depth 6 }",
        "t",
        &[],
    );
    assert_eq!(r.growths[0].at_step, 450);
    // A token budget that is not a whole number of steps is rounded, with a warning.
    assert_eq!(
        check("recipe t = tiny_base { tokens = 1M tokens }"),
        "P0406 1000000 tokens is not a multiple of the batch (1024 tokens per step): rounded to 977 steps [write a multiple of 1024 tokens, e.g. `1000448 tokens` (977 steps), or a number of steps]"
    );
    assert_eq!(
        run("recipe t = tiny_base { tokens = 1M tokens }", "t", &[]).total_steps,
        977
    );
}

#[test]
fn data_paths_resolve_against_the_declaring_file() {
    let tmp = scratch("check");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
    std::fs::write(
        dir.join("sub/data.prog"),
        "data local = text(\"corpus.txt\", tokenizer: bytes)\n",
    )
    .expect("write");
    let main = dir.join("main.prog");
    std::fs::write(
        &main,
        "import \"sub/data.prog\"\nimport \"std/paper.prog\"\nrecipe r = tiny_base { data = local }\n",
    )
    .expect("write");
    let r = checked_run(&main, "r");
    assert_eq!(r.data.path, "corpus.txt");
    assert_eq!(
        r.data.resolved_path,
        dir.join("sub").join("corpus.txt").display().to_string()
    );
}

/// A tokenizer.json resolves like a data path; its size becomes the model's vocabulary, its
/// content hash part of the recipe; a file that cannot be used is P0112 at the string.
#[test]
fn tokenizer_files_set_the_vocabulary_and_bad_ones_are_p0112() {
    let tmp = scratch("check-tok");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
    let tok = dir.join("sub/tok.json");
    let json = |n: usize| {
        let vocab: Vec<String> = (0..n).map(|i| format!("\"t{i}\": {i}")).collect();
        format!(
            "{{\"added_tokens\": [{{\"id\": {n}, \"content\": \"<|endoftext|>\"}}], \
             \"model\": {{\"type\": \"BPE\", \"vocab\": {{{}}}}}}}",
            vocab.join(", ")
        )
    };
    std::fs::write(&tok, json(299)).expect("write");
    std::fs::write(
        dir.join("sub/data.prog"),
        "data local = text(\"corpus.txt\", tokenizer: \"tok.json\")\n\
         data shards = tokens(\"train.bin\", tokenizer: \"tok.json\")\n",
    )
    .expect("write");
    let main = dir.join("main.prog");
    std::fs::write(
        &main,
        "import \"sub/data.prog\"\nimport \"std/paper.prog\"\n\
         recipe r = tiny_base { data = local }\nrecipe s = tiny_base { data = shards }\n",
    )
    .expect("write");
    let r = checked_run(&main, "r");
    let Tokenizer::File(f) = &r.data.tokenizer else {
        panic!("{:?}", r.data.tokenizer)
    };
    assert_eq!(f.path, "tok.json");
    assert_eq!(f.resolved_path, tok.display().to_string());
    assert_eq!((f.vocab, f.end_of_text), (300, Some(299)));
    assert_eq!(r.model.vocab, 300);
    assert_eq!(checked_run(&main, "s").data.tokenizer, r.data.tokenizer);
    // A changed file is read again (another size, another hash).
    std::fs::write(&tok, json(400)).expect("write");
    let r2 = checked_run(&main, "r");
    assert_eq!(r2.model.vocab, 401);
    assert_ne!(r2.data.tokenizer, r.data.tokenizer);

    let bad = |text: Option<&str>| {
        match text {
            Some(t) => std::fs::write(&tok, t).expect("write"),
            None => std::fs::remove_file(&tok).expect("remove"),
        }
        let (program, _) = crate::syntax::load_program(&main, &[]).expect("load");
        let (_, diags) = super::check(&program);
        let d = diags
            .iter()
            .find(|d| d.code.to_string() == "P0112")
            .unwrap_or_else(|| panic!("no P0112: {}", render(&diags)));
        assert_eq!(program.sources.slice(d.span), "\"tok.json\"");
        d.message.clone()
    };
    assert!(bad(Some("{\"model\": {\"vocab\"")).contains("not JSON"));
    assert!(bad(Some("{\"version\": \"1.0\", \"x\": 1}")).contains("no `model.vocab`"));
    let m = bad(None);
    assert!(m.contains("does not exist"), "{m}");
}

/// A library file in a `std/` folder resolves its data paths from the folder above it, edited
/// or not, so editing `std/paper.prog` does not move its corpus; other files there do not.
#[test]
fn an_edited_std_file_resolves_its_data_from_above_std() {
    let tmp = scratch("check-std");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("std")).expect("temp dir");
    let paper = crate::syntax::StdLib::get("paper.prog").expect("std paper");
    let edited = dir.join("std").join("paper.prog");
    std::fs::write(&edited, format!("{paper}\n// edited\n")).expect("write");
    let r = checked_run(&edited, "mid_fixed");
    assert_eq!(r.data.path, "data/big/corpus.txt");
    assert_eq!(
        r.data.resolved_path,
        dir.join("data/big/corpus.txt").display().to_string()
    );
    // Any other file in a folder named `std` is an ordinary recipe file.
    let mine = dir.join("std").join("mine.prog");
    std::fs::write(
        &mine,
        "import \"std/paper.prog\"\ndata local = text(\"corpus.txt\", tokenizer: bytes)\nrecipe r = tiny_base { data = local }\n",
    )
    .expect("write");
    let r = checked_run(&mine, "r");
    assert_eq!(
        r.data.resolved_path,
        dir.join("std").join("corpus.txt").display().to_string()
    );
}

#[test]
fn inherited_problems_point_at_the_users_line() {
    // The child changed the model: the error is shown at the child's change, with the
    // inherited batch (in std) as the label.
    for (src, code, at) in [
        (
            "recipe c = tiny_base { model = gpt2_tiny { context: 64 } }",
            "P0205",
            "64",
        ),
        (
            "recipe c = tiny_zero_random { model = gpt2_tiny { depth: 8 } }",
            "P0305",
            "8",
        ),
    ] {
        let (_, map, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &[]);
        let diags = outside_std(&map, diags);
        assert_eq!(diags.len(), 1, "{}", render(&diags));
        assert_eq!(diags[0].code.to_string(), code);
        assert_eq!(map.slice(diags[0].span), at);
        assert!(
            map.get(diags[0].labels[0].span.file)
                .name
                .starts_with("std/")
        );
    }
}

#[test]
fn errors_propagate_silently_to_users() {
    let src = "model m = gpt2_tiny { vocab: 1 }\n\
               model m2 = m { }\n\
               optimizer o = adamw(lr: 1e-3, betaz: (0.9, 0.9))\n\
               recipe a = tiny_base { model = m }\n\
               recipe b = tiny_base { model = m2 }\n\
               recipe c = tiny_base { optimizer = o }\n\
               recipe p = tiny_base { stpes = 5 }\n\
               recipe q = p { }\n\
               recipe ok = tiny_base { seed = 3 }";
    let (spec, map, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &[]);
    let mine: Vec<String> = outside_std(&map, diags)
        .iter()
        .map(|d| d.code.to_string())
        .collect();
    assert_eq!(mine, ["P0104", "P0104", "P0104"]);
    let names: Vec<&str> = spec.runs.iter().map(|r| r.name.as_str()).collect();
    for bad in ["a", "b", "c", "p", "q"] {
        assert!(!names.contains(&bad), "{bad} should not resolve");
    }
    assert!(names.contains(&"ok"));
}

#[test]
fn a_definition_with_a_syntax_error_is_not_also_unknown() {
    let src = "recipe a = tiny_base { steps = }\nrecipe b = a { seed = 1 }\n\
               experiment ex { runs: [a, b], reference: a }";
    let (spec, map, diags) = check_source("t.prog", &format!("{PRELUDE}{src}"), &[]);
    let codes: Vec<String> = outside_std(&map, diags)
        .iter()
        .map(|d| d.code.to_string())
        .collect();
    assert_eq!(codes, ["P0001"]);
    assert!(spec.runs.iter().all(|r| r.name != "b"));
    assert!(spec.experiments.iter().all(|e| e.name != "ex"));
}
