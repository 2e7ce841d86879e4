//! Bounded, deterministic property tests of the front end (loader + parser + checker).
//!
//! Properties, for every input:
//! - nothing panics (loading, checking, rendering every diagnostic);
//! - every span (primary and secondary) lies inside its file and on char boundaries;
//! - a file that parses formats (`fmt_properties`): idempotently, to the same plans;
//! - a program without errors resolves: one `RunSpec` per recipe and one `ExperimentSpec` per
//!   experiment, and every `RunSpec` satisfies the invariants `plan::spec` documents.
//!
//! The PRNG is a fixed-seed SplitMix64, so every run tests the same inputs; a failure prints
//! the case number and the source that caused it.

mod root;

use progc_front::diagnostic::{Diagnostic, FileId, Span, has_errors, render::render};
use progc_front::plan::compile_run;
use progc_front::plan::render::render_json;
use progc_front::plan::spec::{InitSpec, ProgramSpec};
use progc_front::syntax::ast::Item;
use progc_front::syntax::fmt::{FmtError, format_source};
use progc_front::syntax::{Program, load_source};

/// SplitMix64: tiny, fast, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn token(&mut self) -> &'static str {
        TOKENS[self.below(TOKENS.len())]
    }
}

/// Pieces of the language (and of near misses) that random inputs are made from.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "{", "}", "(", ")", "[", "]", "=", ":", ",", ";", "x", "%", "\"", "\n", " ", "\t", "//",
    "/*", "*/", "\\", "-", ".", "import", "model", "data", "schedule", "optimizer", "recipe",
    "experiment", "start", "depth", "grow", "at", "to", "no", "growth", "steps", "tokens",
    "step", "token", "batch", "seed", "init", "placement", "optimizer_state", "runs",
    "reference", "width", "heads", "context", "residual", "copy", "stack", "last",
    "interleave", "random", "zero", "zero_out", "keep", "reset", "top", "bottom", "none",
    "wsd", "cosine", "constant", "adamw", "muon", "text", "lr", "warmup", "decay", "floor",
    "val", "tokenizer", "bytes", "gpt2", "gpt2_tiny", "wsd_paper", "adamw_tiny", "emma",
    "\"std/gpt2.prog\"", "\"std/schedules.prog\"", "\"data/emma.txt\"", "0", "1", "2", "6",
    "12", "80%", "100%", "0%", "-1", "6e-4", "1e308", "1e999", "20k", "1.2M", "1B", "1T",
    "0.5", "18446744073709551616", "16 x 128", "é", "日本", "\u{1F600}", "\u{0}", "\r\n",
];

/// Numbers and times, ordinary and extreme, for structured recipes.
#[rustfmt::skip]
const NUMBERS: &[&str] = &[
    "0", "1", "2", "4", "6", "8", "128", "600", "-1", "0.5", "1e999", "-1e999", "1e-300",
    "18446744073709551616", "1B", "80%", "0%", "100%", "150%", "-20%", "50%", "700 steps",
    "1M tokens", "3 tokens", "2048 tokens", "12 stpes", "\"6\"", "(1, 2)", "[6]", "gpt2_tiny",
];

/// A syntactically plausible recipe whose values are each either sane or drawn from
/// `NUMBERS`: reaches deep into the checker, and often passes it.
fn random_recipe(rng: &mut Rng) -> String {
    // Each slot is replaced by a random value with a probability of 1/chaos; a quarter
    // of the recipes keep every sane value.
    let chaos = [usize::MAX, 24, 8, 3][rng.below(4)];
    let slots = |rng: &mut Rng, sane: &[&'static str]| -> Vec<&'static str> {
        sane.iter()
            .map(|v| {
                if rng.below(chaos) == 0 {
                    *rng.pick(NUMBERS)
                } else {
                    *v
                }
            })
            .collect()
    };
    let m = slots(rng, &["128", "4", "6", "128"]);
    let sch = slots(rng, &["2%", "10%", "0"]);
    let opt = slots(rng, &["2e-3", "0.9", "0.95"]);
    let run = slots(rng, &["600", "16", "128", "0", "50", "1"]);
    let mut s = format!(
        "import \"std/gpt2.prog\"\nimport \"std/schedules.prog\"\n\
         data emma = text(\"data/emma.txt\", tokenizer: bytes, val: 10%)\n\
         model m = gpt2_tiny {{ width: {}, heads: {}, depth: {}, context: {} }}\n\
         schedule sch = wsd(warmup: {}, decay: {}, floor: {})\n\
         optimizer opt = adamw(lr: {}, betas: ({}, {}))\n\
         recipe r {{\n  model = m\n  data = emma\n  optimizer = opt\n  schedule = sch\n\x20 \
         steps = {}\n  batch = {} x {}\n  seed = {}\n  eval_every = {}\n  start depth {}\n",
        m[0],
        m[1],
        m[2],
        m[3],
        sch[0],
        sch[1],
        sch[2],
        opt[0],
        opt[1],
        opt[2],
        run[0],
        run[1],
        run[2],
        run[3],
        run[4],
        run[5]
    );
    const INITS: &[&str] = &[
        "random",
        "copy(stack)",
        "copy(last)",
        "zero",
        "zero_out",
        "copy",
    ];
    const STATES: &[&str] = &["keep", "reset", "copy"];
    let sane_growths: &[(&'static str, &'static str)] = match rng.below(3) {
        0 => &[("20%", "6")],
        1 => &[("80%", "6")],
        _ => &[("40%", "2"), ("80%", "6")],
    };
    for (at, to) in sane_growths {
        let g = slots(rng, &[at, to]);
        let (init, state) = if rng.below(chaos) == 0 {
            (*rng.pick(INITS), *rng.pick(STATES))
        } else {
            ("copy(stack)", "copy")
        };
        s += &format!(
            "  grow at {} to depth {} {{ init: {init}, optimizer_state: {state} }}\n",
            g[0], g[1]
        );
    }
    s += "}\nrecipe r2 = r { }\n";
    if rng.below(2) == 0 {
        s += "experiment e { runs: [r, r2], reference: r }\n";
    }
    s
}

/// A random string: raw bytes (made valid with `from_utf8_lossy`), grammar tokens, or a
/// recipe with random values.
fn random_source(rng: &mut Rng) -> String {
    match rng.below(5) {
        4 => random_recipe(rng),
        0 => {
            let len = rng.below(200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        1 => {
            // Printable ASCII and a few multi-byte characters.
            let len = rng.below(200);
            (0..len)
                .map(|_| match rng.below(20) {
                    0 => 'é',
                    1 => '\n',
                    2 => '\u{1F600}',
                    _ => (b' ' + rng.below(95) as u8) as char,
                })
                .collect()
        }
        _ => {
            // Token soup, sometimes after real imports so the checker sees std names.
            let mut s = String::new();
            if rng.below(2) == 0 {
                s.push_str("import \"std/gpt2.prog\"\nimport \"std/schedules.prog\"\n");
            }
            for _ in 0..rng.below(80) {
                s.push_str(rng.token());
                if rng.below(3) == 0 {
                    s.push(' ');
                }
            }
            s
        }
    }
}

/// Applies 1 to 4 random edits to `text`, on char boundaries (so the result is valid UTF-8,
/// like any file the loader reads).
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let n = chars.len();
        let at = rng.below(n + 1);
        let max_span = if rng.below(4) == 0 { 200 } else { 8 };
        let span = 1 + rng.below(max_span);
        let end = (at + span).min(n);
        match rng.below(5) {
            // Delete a span.
            0 => {
                chars.drain(at..end);
            }
            // Insert a token.
            1 => {
                let tok: Vec<char> = rng.token().chars().collect();
                chars.splice(at..at, tok);
            }
            // Duplicate a span somewhere else.
            2 => {
                let piece: Vec<char> = chars[at..end].to_vec();
                let to = rng.below(chars.len() + 1);
                chars.splice(to..to, piece);
            }
            // Swap two chars.
            3 if n > 1 => {
                let other = rng.below(n);
                chars.swap(at.min(n - 1), other);
            }
            // Replace a span with a token.
            _ => {
                let tok: Vec<char> = rng.token().chars().collect();
                chars.splice(at..end, tok);
            }
        }
    }
    chars.into_iter().collect()
}

fn span_ok(program: &Program, span: Span) -> Result<(), String> {
    let files = program.sources.files().count();
    if span.file.0 as usize >= files {
        return Err(format!("file {:?} of {files}", span.file));
    }
    let text = &program.sources.get(span.file).text;
    if span.start > span.end || span.end > text.len() {
        return Err(format!(
            "{}..{} in a file of {}",
            span.start,
            span.end,
            text.len()
        ));
    }
    if !text.is_char_boundary(span.start) || !text.is_char_boundary(span.end) {
        return Err(format!(
            "{}..{} not on char boundaries",
            span.start, span.end
        ));
    }
    Ok(())
}

/// What `plan::spec` promises about a checked run.
fn run_invariants(spec: &ProgramSpec) -> Result<(), String> {
    for r in &spec.runs {
        let m = &r.model;
        let fail = |what: &str| Err(format!("run {}: {what}", r.name));
        if m.width == 0 || m.heads == 0 || m.context == 0 || m.mlp_ratio == 0 {
            return fail("a zero size");
        }
        if m.width % m.heads != 0 {
            return fail("heads do not divide width");
        }
        if r.batch.context != m.context || r.batch.sequences == 0 {
            return fail("batch does not match the model");
        }
        if r.total_steps == 0 {
            return fail("zero steps");
        }
        if m.vocab != r.data.tokenizer.vocab() {
            return fail("vocab is not the tokenizer's");
        }
        if !(r.data.val_fraction > 0.0 && r.data.val_fraction < 1.0) {
            return fail("val fraction outside (0, 1)");
        }
        let mut depth = r.start_depth;
        let mut last = 0;
        for g in &r.growths {
            if g.at_step <= last || g.at_step >= r.total_steps {
                return fail("growth time not increasing or outside the run");
            }
            if g.from_depth != depth || g.to_depth <= g.from_depth {
                return fail("growth does not grow from the current depth");
            }
            if matches!(g.init, InitSpec::Copy { .. }) && g.from_depth == 0 {
                return fail("copy from zero layers");
            }
            last = g.at_step;
            depth = g.to_depth;
        }
        if depth != m.depth {
            return fail("final depth is not the model's");
        }
    }
    Ok(())
}

/// Loads and checks `text`, asserting every property; `case` names it in a failure. Returns
/// whether the program resolved at least one run (so callers can see the inputs reach that far).
fn check_properties(case: &str, text: &str) -> bool {
    let outcome = std::panic::catch_unwind(|| {
        let (program, mut diags) = load_source("fuzz.prog", text, &[]);
        let (spec, more) = progc_front::check::check(&program);
        diags.extend(more);
        for d in &diags {
            // Rendering is what users see; it must not panic either.
            let _ = render(d, &program.sources, false);
        }
        (program, spec, diags)
    });
    let (program, spec, diags): (Program, ProgramSpec, Vec<Diagnostic>) = match outcome {
        Ok(v) => v,
        Err(_) => panic!("{case}: panicked on input {text:?}"),
    };
    for d in &diags {
        for span in std::iter::once(d.span).chain(d.labels.iter().map(|l| l.span)) {
            if let Err(e) = span_ok(&program, span) {
                panic!("{case}: {} span {e} on input {text:?}", d.code);
            }
        }
    }
    if !has_errors(&diags) {
        let items = program.modules.iter().flat_map(|m| &m.items);
        let recipes = items
            .clone()
            .filter(|i| matches!(i, Item::Recipe { .. }))
            .count();
        let experiments = items
            .filter(|i| matches!(i, Item::Experiment { .. }))
            .count();
        assert_eq!(
            (spec.runs.len(), spec.experiments.len()),
            (recipes, experiments),
            "{case}: no errors, but not every recipe/experiment resolved, on input {text:?}"
        );
    }
    if let Err(e) = run_invariants(&spec) {
        panic!("{case}: {e} on input {text:?}");
    }
    !spec.runs.is_empty()
}

/// The formatter's promises on one input: a file that parses formats, the output is a fixed
/// point, and it checks to the same diagnostic codes and the same plans (JSON). Returns
/// whether `text` parsed (so callers can see the formatter was exercised).
fn fmt_properties(case: &str, text: &str) -> bool {
    let meaning = |t: &str| {
        let (program, mut diags) = load_source("fuzz.prog", t, &[]);
        let (spec, more) = progc_front::check::check(&program);
        diags.extend(more);
        let plans: Vec<String> = spec
            .runs
            .iter()
            .map(|r| render_json(&compile_run(r)))
            .collect();
        let codes: Vec<&str> = diags.iter().map(|d| d.code.name()).collect();
        (plans, codes)
    };
    let out = match std::panic::catch_unwind(|| format_source(FileId(0), text)) {
        Ok(Ok(out)) => out,
        Ok(Err(FmtError::Syntax(_))) => return false,
        Ok(Err(FmtError::Internal(e))) => panic!("{case}: fmt self-check: {e} on input {text:?}"),
        Err(_) => panic!("{case}: fmt panicked on input {text:?}"),
    };
    match format_source(FileId(0), &out) {
        Ok(again) => assert_eq!(again, out, "{case}: fmt is not idempotent on {text:?}"),
        Err(e) => panic!("{case}: formatted text does not format: {e:?}\n{out}"),
    }
    assert_eq!(
        meaning(&out),
        meaning(text),
        "{case}: fmt changed the meaning of {text:?}, giving {out:?}"
    );
    true
}

#[test]
fn random_inputs_never_panic() {
    root::enter();
    let mut rng = Rng(0x5EED_0001);
    let (mut resolved, mut formatted) = (0, 0);
    for i in 0..2000 {
        let text = random_source(&mut rng);
        resolved += check_properties(&format!("random case {i}"), &text) as usize;
        formatted += fmt_properties(&format!("random case {i}"), &text) as usize;
    }
    assert!(
        formatted >= 100,
        "only {formatted} random inputs parsed and formatted"
    );
    eprintln!("{formatted} of 2000 random inputs parsed and formatted");
    // The structured recipes (a fifth of the cases) must often pass the checker, or the
    // invariants above are never exercised.
    assert!(
        resolved >= 100,
        "only {resolved} random inputs resolved a run"
    );
    eprintln!("{resolved} of 2000 random inputs resolved at least one run");
}

#[test]
fn mutated_recipes_keep_the_properties() {
    root::enter();
    let mut bases: Vec<(String, String)> = ["std/paper.prog", "std/gpt2.prog"]
        .iter()
        .map(|p| (p.to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let mut fixtures: Vec<_> = std::fs::read_dir("tests/fixtures")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "prog"))
        .collect();
    fixtures.sort();
    for p in fixtures {
        // Lossy: the P0002 fixture is not UTF-8 on purpose.
        bases.push((
            p.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
        ));
    }
    // The unmutated bases first: they hold the properties too.
    for (name, text) in &bases {
        check_properties(name, text);
    }
    let mut rng = Rng(0x5EED_0002);
    let (mut resolved, mut formatted) = (0, 0);
    for i in 0..2000 {
        // paper.prog is the largest and richest input: mutate it a quarter of the time.
        let (name, text) = if rng.below(4) == 0 {
            &bases[0]
        } else {
            rng.pick(&bases)
        };
        let mutant = mutate(&mut rng, text);
        resolved += check_properties(&format!("mutation {i} of {name}"), &mutant) as usize;
        formatted += fmt_properties(&format!("mutation {i} of {name}"), &mutant) as usize;
    }
    assert!(
        formatted >= 300,
        "only {formatted} mutants parsed and formatted"
    );
    eprintln!("{formatted} of 2000 mutants parsed and formatted");
    assert!(resolved >= 300, "only {resolved} mutants resolved a run");
    eprintln!("{resolved} of 2000 mutants resolved at least one run");
}
