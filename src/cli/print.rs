//! Printing diagnostics and errors for people (stderr) and tools (JSON on stdout).

use std::io::IsTerminal;

use super::ColorChoice;
use crate::diagnostic::{Diagnostic, Severity, SourceMap, render};
use crate::exec::ExecError;

/// Whether stderr output gets ANSI colors.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
        }
    }
}

/// Renders every diagnostic to stderr, then a count line when there is anything to count.
pub fn diagnostics(diags: &[Diagnostic], map: &SourceMap, color: bool) {
    for d in diags {
        eprint!("{}", render::render(d, map, color));
    }
    let (errors, warnings) = count(diags);
    if errors + warnings > 0 {
        eprintln!("{}", count_line(errors, warnings));
    }
}

pub fn count(diags: &[Diagnostic]) -> (usize, usize) {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (errors, diags.len() - errors)
}

pub fn count_line(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, w) => format!("progc: {}", plural(w, "warning")),
        (e, 0) => format!("progc: {}", plural(e, "error")),
        (e, w) => format!("progc: {} and {}", plural(e, "error"), plural(w, "warning")),
    }
}

/// An IO, device or training failure: `error: ...` plus the help line.
pub fn error(err: &ExecError) {
    eprintln!("error: {}", err.message);
    if let Some(help) = &err.help {
        eprintln!("  help: {help}");
    }
}
