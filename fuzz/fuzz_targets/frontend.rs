//! Fuzz target: load + check + plan + fmt of one in-memory file (imports reach the embedded
//! std library).
//!
//! Properties (a panic is a finding):
//! - nothing panics, and every diagnostic renders;
//! - every diagnostic span lies inside its file, on char boundaries;
//! - every checked recipe compiles to a plan that serializes;
//! - a file that parses formats, the formatter's self-check (comments kept, output parses,
//!   idempotent) holds, and the formatted text checks to the same diagnostics codes and the
//!   same plans (JSON).
#![no_main]

use progc_front::{check, diagnostic, plan, syntax};

use libfuzzer_sys::fuzz_target;

use diagnostic::{Diagnostic, FileId, render::render};
use syntax::fmt::{FmtError, format_source};

fn plans(text: &str) -> (Vec<String>, Vec<&'static str>) {
    let (program, mut diags) = syntax::load_source("fuzz.prog", text, &[]);
    let (spec, more) = check::check(&program);
    diags.extend(more);
    for d in &diags {
        let _ = render(d, &program.sources, false);
        for span in std::iter::once(d.span).chain(d.labels.iter().map(|l| l.span)) {
            let file = &program.sources.get(span.file).text;
            assert!(
                span.start <= span.end && span.end <= file.len(),
                "span {span:?}"
            );
            assert!(file.is_char_boundary(span.start) && file.is_char_boundary(span.end));
        }
    }
    let plans = spec
        .runs
        .iter()
        .map(|r| plan::render::render_json(&plan::compile_run(r)))
        .collect();
    (
        plans,
        diags.iter().map(|d: &Diagnostic| d.code.name()).collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    let text = match syntax::load::decode(data.to_vec()) {
        Ok(text) => text,
        Err((text, at)) => {
            let mut map = diagnostic::SourceMap::new();
            let id = map.add("fuzz.prog", text.clone());
            let _ = render(&syntax::load::not_utf8(id, &text, at), &map, false);
            return;
        }
    };
    let before = plans(&text);
    match format_source(FileId(0), &text) {
        Ok(formatted) => {
            let after = plans(&formatted);
            assert_eq!(
                before, after,
                "formatting changed the meaning of:\n{text}\n--\n{formatted}"
            );
        }
        Err(FmtError::Syntax(_)) => {}
        Err(FmtError::Internal(msg)) => panic!("fmt self-check failed: {msg}\n{text}"),
    }
});
