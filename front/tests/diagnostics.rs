//! Diagnostics end to end: every code in the catalogue has a fixture (`tests/fixtures/<CODE>.prog`,
//! or `<CODE>.args` for the CLI-only P0111) that produces it, an explanation in
//! `docs/codes/<CODE>.md`, and a snapshot of its rendering under `front/tests/snapshots/`.
//!
//! Fixtures are loaded by a path relative to the crate root (cargo runs integration tests
//! there), so the file names inside the rendered snapshots are the same on every machine.

mod root;

use std::path::Path;

use progc_front::diagnostic::{CODES, Diagnostic, SourceMap, has_errors, render::render};
use progc_front::plan::spec::ProgramSpec;
use progc_front::syntax::{Program, load_program, load_source};

/// Codes that only the command line produces; their fixture is `<CODE>.args`.
const CLI_CODES: &[&str] = &["P0111"];

/// Loads and checks a file from disk: the loader's diagnostics, then the checker's.
fn check_file(path: &str) -> (Program, ProgramSpec, Vec<Diagnostic>) {
    let (program, mut diags) =
        load_program(Path::new(path), &[]).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let (spec, more) = progc_front::check::check(&program);
    diags.extend(more);
    (program, spec, diags)
}

fn check_text(text: &str) -> (Program, ProgramSpec, Vec<Diagnostic>) {
    let (program, mut diags) = load_source("test.prog", text, &[]);
    let (spec, more) = progc_front::check::check(&program);
    diags.extend(more);
    (program, spec, diags)
}

fn render_all(diags: &[Diagnostic], map: &SourceMap) -> String {
    diags
        .iter()
        .map(|d| render(d, map, false))
        .collect::<Vec<_>>()
        .join("\n")
}

fn codes_of(diags: &[Diagnostic]) -> Vec<&'static str> {
    diags.iter().map(|d| d.code.name()).collect()
}

/// Checks `tests/fixtures/<code>.prog`, asserts that `code` is among its diagnostics and
/// snapshots the rendering of all of them.
fn snapshot_fixture(code: &str) {
    let path = format!("tests/fixtures/{code}.prog");
    let (program, _, diags) = check_file(&path);
    let rendered = render_all(&diags, &program.sources);
    assert!(
        diags.iter().any(|d| d.code.name() == code),
        "{path} should produce {code}, got {:?}:\n{rendered}",
        codes_of(&diags)
    );
    insta::assert_snapshot!(code, rendered);
}

macro_rules! fixtures {
    ($($code:ident),* $(,)?) => {
        /// Every code with a `.prog` fixture, i.e. every code but the CLI ones.
        const FIXTURE_CODES: &[&str] = &[$(stringify!($code)),*];
        $(
            #[test]
            #[allow(non_snake_case)]
            fn $code() {
                root::enter();
                snapshot_fixture(stringify!($code));
            }
        )*
    };
}

fixtures!(
    P0001, P0002, P0101, P0102, P0103, P0104, P0105, P0106, P0107, P0108, P0109, P0110, P0112,
    P0201, P0202, P0203, P0204, P0205, P0301, P0302, P0303, P0304, P0305, P0306, P0307, P0401,
    P0402, P0403, P0404, P0405, P0406, P0407,
);

#[test]
fn every_code_has_a_fixture_a_test_and_a_doc() {
    root::enter();
    for info in CODES {
        let code = info.name;
        if CLI_CODES.contains(&code) {
            let path = format!("tests/fixtures/{code}.args");
            let args = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{code} is a CLI code and needs {path}: {e}"));
            assert_eq!(args.trim().lines().count(), 1, "{path} must be one line");
            // The file it names must exist, so the args fail for the reason they are meant to.
            let file = args.split_whitespace().find(|a| a.ends_with(".prog"));
            assert!(
                file.is_some_and(|f| Path::new(f).exists()),
                "{path} must name an existing .prog file"
            );
        } else {
            let path = format!("tests/fixtures/{code}.prog");
            assert!(Path::new(&path).exists(), "{code} has no fixture {path}");
            assert!(
                FIXTURE_CODES.contains(&code),
                "{code} has a fixture but no test in fixtures!(...)"
            );
        }
        let heading = format!("# {code}: {}\n", info.title);
        assert!(
            info.explain.starts_with(&heading),
            "docs/codes/{code}.md must start with `{}`",
            heading.trim_end()
        );
        assert!(
            !info.explain.contains("TODO"),
            "docs/codes/{code}.md is still a placeholder"
        );
        let lines = info.explain.lines().count();
        assert!(
            (15..=40).contains(&lines),
            "docs/codes/{code}.md has {lines} lines (15-40 wanted)"
        );
        assert!(
            info.explain.contains("```"),
            "docs/codes/{code}.md needs an example"
        );
    }
    // No stray fixtures for codes that do not exist.
    for code in FIXTURE_CODES {
        assert!(
            CODES.iter().any(|c| c.name == *code),
            "{code} is not a code"
        );
    }
}

#[test]
fn ok_fixture_has_no_diagnostics_and_resolves_every_run() {
    root::enter();
    let (program, spec, diags) = check_file("tests/fixtures/ok.prog");
    assert!(
        diags.is_empty(),
        "ok.prog should be clean:\n{}",
        render_all(&diags, &program.sources)
    );
    let mut names: Vec<&str> = spec.runs.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["fixed", "one_copy", "tiny_base", "zero_to_six"]);
    assert_eq!(spec.experiments.len(), 1);
    let zero = spec.runs.iter().find(|r| r.name == "zero_to_six").unwrap();
    assert_eq!(zero.total_steps, 600);
    assert_eq!(zero.start_depth, 0);
    assert_eq!(zero.growths.len(), 1);
    assert_eq!(zero.growths[0].at_step, 480);
    assert_eq!(zero.growths[0].to_depth, 6);
}

const PRELUDE: &str = r#"
import "std/gpt2.prog"
import "std/schedules.prog"

data emma = text("data/emma.txt", tokenizer: bytes, val: 10%)
"#;

/// The five independent errors of the two tests below, and the text each must point at.
const FIVE_ERRORS: [(&str, &str); 5] = [
    ("P0104", "layers"),
    ("P0106", "stpes"),
    ("P0204", "6"),
    ("P0302", "700"),
    ("P0304", "copy"),
];

/// Asserts that every error of `FIVE_ERRORS` is reported at its own cause, and no run
/// resolves.
fn assert_five_errors(body: &str) {
    let (program, spec, diags) = check_text(&format!("{PRELUDE}{body}"));
    let got = codes_of(&diags);
    let shown = render_all(&diags, &program.sources);
    for (code, what) in FIVE_ERRORS {
        let d = diags.iter().find(|d| d.code.name() == code);
        let d = d.unwrap_or_else(|| panic!("{code} missing; got {got:?}:\n{shown}"));
        // Each points at its own cause, not at the whole recipe.
        let at = program.sources.slice(d.span);
        assert!(
            at.contains(what) && at.len() < 60,
            "{code} should point at `{what}`, points at `{at}`"
        );
    }
    assert!(spec.runs.is_empty(), "recipes with errors yield no run");
}

/// Five independent errors in two recipes (the model and unit errors in one, the growth
/// errors in the other): all reported in one pass.
#[test]
fn analysis_goes_on_after_an_error() {
    root::enter();
    assert_five_errors(
        r#"
recipe broken_model {
  model      = gpt2_tiny { heads: 6, layers: 6 }
  data       = emma
  steps      = 600
  batch      = 16 x 128
  eval_every = 50 stpes
  optimizer  = adamw_tiny
  schedule   = wsd_paper
}
recipe broken_growth {
  model      = gpt2_tiny
  data       = emma
  steps      = 600
  batch      = 16 x 128
  optimizer  = adamw_tiny
  schedule   = wsd_paper
  start depth 0
  grow at 700 to depth 6 { init: copy(stack) }
}
"#,
    );
}

/// The same five errors in ONE recipe. The growth errors do not depend on the broken model
/// (the run length and the start depth are written out), so they must still be reported: a bad
/// field is reported and the rest of the recipe still checked.
#[test]
fn analysis_goes_on_after_an_error_within_a_recipe() {
    root::enter();
    assert_five_errors(
        r#"
recipe broken {
  model      = gpt2_tiny { heads: 6, layers: 6 }
  data       = emma
  steps      = 600
  batch      = 16 x 128
  eval_every = 50 stpes
  optimizer  = adamw_tiny
  schedule   = wsd_paper
  start depth 0
  grow at 700 to depth 6 { init: copy(stack) }
}
"#,
    );
}

/// The std library and the examples are real inputs: no errors (warnings are expected, since
/// some experiments reproduce findings the checker warns about).
#[test]
fn std_and_examples_have_no_errors() {
    root::enter();
    let mut files: Vec<String> = Vec::new();
    for dir in ["std", "examples"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "prog") {
                files.push(p.display().to_string());
            }
        }
    }
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("paper.prog")));
    for file in &files {
        let (program, spec, diags) = check_file(file);
        let errors: Vec<Diagnostic> = diags.iter().filter(|d| d.is_error()).cloned().collect();
        assert!(
            !has_errors(&diags),
            "{file} has errors:\n{}",
            render_all(&errors, &program.sources)
        );
        if file.ends_with("paper.prog") {
            assert!(spec.runs.len() > 50 && spec.experiments.len() >= 7);
        }
    }
}
