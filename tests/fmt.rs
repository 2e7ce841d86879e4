//! `progc fmt`: snapshots of formatted fixtures (`tests/fmt/*.prog`), and, over every shipped
//! recipe (`std/`, `examples/`) and the fixtures, the promises: the output is a fixed point,
//! keeps every comment, and checks to the same diagnostics and the same plans (JSON) as the
//! input. The fuzz corpus's valid inputs get the same checks in `front/tests/fuzz.rs`. Also the
//! command itself: `--check`, rewriting, files that do not parse or are not UTF-8.

#[path = "../src/testing.rs"]
mod testing;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use progc::diagnostic::FileId;
use progc::plan::render::render_json;
use progc::plan::{compile_experiment, compile_run};
use progc::syntax::fmt::{FmtError, format_source};
use progc::syntax::{load_program, load_source};
use testing::scratch;

fn fmt(text: &str) -> String {
    match format_source(FileId(0), text) {
        Ok(out) => out,
        Err(e) => panic!("cannot format: {e:?}\n{text}"),
    }
}

/// Every plan of a program (each run, then each experiment) as JSON, and its diagnostic codes.
fn meaning(path: &Path, text: &str) -> (Vec<String>, Vec<String>) {
    // In memory (imports reach the std library), so a std file and its formatted text load
    // alike: on disk, a copy identical to the embedded one counts as the std file itself.
    let (program, mut diags) = load_source(&path.display().to_string(), text, &[]);
    let (spec, more) = progc::check::check(&program);
    diags.extend(more);
    let mut plans: Vec<String> = spec
        .runs
        .iter()
        .map(|r| render_json(&compile_run(r)))
        .collect();
    plans.extend(
        spec.experiments
            .iter()
            .map(|e| render_json(&compile_experiment(e, &spec.runs))),
    );
    (plans, diags.iter().map(|d| d.code.name().into()).collect())
}

fn comments(text: &str) -> Vec<String> {
    // Good enough for these files: no `//` inside their strings.
    text.lines()
        .filter_map(|l| l.find("//").map(|i| l[i..].trim_end().to_string()))
        .collect()
}

fn shipped() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["std", "examples", "tests/fixtures", "tests/fmt"] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "prog") {
                files.push(p.display().to_string());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn snapshots_of_formatted_fixtures() {
    for name in ["messy", "comments", "long"] {
        let text = std::fs::read_to_string(format!("tests/fmt/{name}.prog")).unwrap();
        insta::assert_snapshot!(format!("fmt_{name}"), fmt(&text));
    }
}

#[test]
fn std_and_examples_are_formatted() {
    for dir in ["std", "examples"] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let text = std::fs::read_to_string(&p).unwrap();
            assert_eq!(
                fmt(&text),
                text,
                "{} is not formatted: run `progc fmt {}`",
                p.display(),
                p.display()
            );
        }
    }
}

#[test]
fn formatting_is_idempotent_and_keeps_meaning_and_comments() {
    let mut formatted = 0;
    for file in shipped() {
        let path = Path::new(&file);
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // P0002.prog is not UTF-8 on purpose
        };
        let out = match format_source(FileId(0), &text) {
            Ok(out) => out,
            // Fixtures of syntax errors do not format; everything else must.
            Err(FmtError::Syntax(_)) if file.contains("P0001") => continue,
            Err(e) => panic!("{file}: {e:?}"),
        };
        formatted += 1;
        assert_eq!(fmt(&out), out, "{file}: not idempotent");
        assert_eq!(comments(&out), comments(&text), "{file}: comments changed");
        assert_eq!(
            meaning(path, &out),
            meaning(path, &text),
            "{file}: formatting changed the plans or diagnostics"
        );
    }
    assert!(formatted >= 35, "only {formatted} files formatted");
}

#[test]
fn the_shipped_plans_are_nonempty() {
    // The plan comparison above means something only if plans exist.
    let (plans, _) = meaning(
        Path::new("std/paper.prog"),
        &std::fs::read_to_string("std/paper.prog").unwrap(),
    );
    assert!(plans.len() > 20, "{}", plans.len());
    let (program, diags) = load_program(Path::new("examples/tiny.prog"), &[]).unwrap();
    assert!(diags.is_empty());
    assert!(!program.modules.is_empty());
}

fn progc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_progc"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("runs progc")
}

/// Writes `bytes` to `dir/name`.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn cli_check_lists_unformatted_files_and_fmt_rewrites_them() {
    let tmp = scratch("fmt");
    let messy = b"recipe r = b {start depth 0}\n";
    let p = write(tmp.path(), "messy.prog", messy);
    let ps = p.to_str().unwrap();
    let ok = write(tmp.path(), "ok.prog", b"recipe r = b { start depth 0 }\n");
    let oks = ok.to_str().unwrap();

    let out = progc(&["fmt", "--check", ps, oks]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ps);
    assert_eq!(std::fs::read(&p).unwrap(), messy, "--check must not write");

    let out = progc(&["fmt", ps]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "recipe r = b { start depth 0 }\n"
    );
    assert_eq!(progc(&["fmt", "--check", ps]).status.code(), Some(0));
}

#[test]
fn cli_fmt_leaves_broken_files_alone() {
    let tmp = scratch("fmt");
    let broken = b"recipe r {\n  grow at 80% depth 6\n}\n";
    let p = write(tmp.path(), "broken.prog", broken);
    let out = progc(&["fmt", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("P0001"));
    assert_eq!(std::fs::read(&p).unwrap(), broken);

    let latin1 = b"// caf\xe9\nrecipe r = b { }\n";
    let q = write(tmp.path(), "latin1.prog", latin1);
    let out = progc(&["fmt", q.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("P0002"));
    assert_eq!(std::fs::read(&q).unwrap(), latin1);
}

#[test]
fn cli_check_reports_non_utf8_as_p0002_with_the_offset() {
    let tmp = scratch("fmt");
    let p = write(tmp.path(), "bad.prog", b"recipe ok = b { }\n// \xff\xfe\n");
    let out = progc(&["check", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("P0002"), "{err}");
    assert!(err.contains("byte offset 21"), "{err}");
    assert!(err.contains("save the file as UTF-8"), "{err}");
    assert!(!err.contains("cannot read"), "{err}");
}
