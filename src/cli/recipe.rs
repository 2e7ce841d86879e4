//! Reading a recipe file for a command: load, check, print what concerns the user, and pick
//! the recipes or the experiment the command names.

use std::path::Path;

use clap::Args;

use super::print;
use super::{Exit, Failure, usage};
use crate::check::{check, quiet_imports, suggest::did_you_mean};
use crate::diagnostic::{Code, Diagnostic, FileId, SourceMap, Span, has_errors};
use crate::exec::ExecError;
use crate::plan::spec::{ProgramSpec, RunSpec};
use crate::plan::{Plan, compile_experiment, compile_run};
use crate::syntax::ast::Item;
use crate::syntax::{Program, load_program};

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Override a recipe statement, checked like the file itself: `--set steps=2000`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Select {
    /// Plan only this recipe.
    #[arg(long, conflicts_with = "experiment")]
    pub run: Option<String>,
    /// Plan this experiment: its runs in one graph, sharing identical prefixes.
    #[arg(long)]
    pub experiment: Option<String>,
}

/// A file read and checked.
pub struct Checked {
    pub program: Program,
    pub spec: ProgramSpec,
    /// Its diagnostics (warnings only, from [`checked`]).
    pub diags: Vec<Diagnostic>,
}

/// Loads and checks one file; an error only when it cannot be read. Warnings located in
/// imported files are left out ([`quiet_imports`]).
pub fn load_and_check(file: &Path, sets: &[String]) -> Result<Checked, ExecError> {
    let (program, mut diags) = load_program(file, sets).map_err(|e| {
        ExecError::io("read", file, e)
            .with_help("check the path; recipe files usually end in `.prog`")
    })?;
    let (spec, more) = check(&program);
    diags.extend(more);
    let diags = quiet_imports(&program, diags);
    Ok(Checked {
        program,
        spec,
        diags,
    })
}

/// Loads and checks `file`; its errors are printed and end the command.
pub fn checked(file: &Path, sets: &[String], color: bool) -> Result<Checked, Failure> {
    let c = load_and_check(file, sets)?;
    if has_errors(&c.diags) {
        print::diagnostics(&c.diags, &c.program.sources, color);
        return Err(Failure::Reported(Exit::Usage));
    }
    Ok(c)
}

/// Names of the recipes defined in the entry file itself, in order.
pub fn entry_recipes(program: &Program) -> Vec<String> {
    program.modules.first().map_or_else(Vec::new, |m| {
        m.items
            .iter()
            .filter_map(|i| match i {
                Item::Recipe { name, .. } => Some(name.name.clone()),
                _ => None,
            })
            .collect()
    })
}

/// A P0111 diagnostic for a `--run` / `--experiment` name that does not exist, printed.
fn unknown_selection(flag: &str, name: &str, known: &[String], what: &str, color: bool) -> Failure {
    let mut map = SourceMap::new();
    let text = format!("{flag} {name}");
    let file = map.add("<command line>", text.clone());
    let span = Span::new(file, flag.len() + 1, text.len());
    let mut diag = Diagnostic::new(Code::P0111, span, format!("no {what} named `{name}`"))
        .with_label(format!("not a {what} of this program"));
    diag = match did_you_mean(name, known.iter().map(String::as_str)) {
        Some(s) => diag.with_help(s),
        None if known.is_empty() => diag.with_help(format!("this program defines no {what}")),
        None => diag.with_help(format!("the program defines: {}", known.join(", "))),
    };
    print::diagnostics(&[diag], &map, color);
    Failure::Reported(Exit::Usage)
}

/// The plans `select` names: one experiment, one recipe, or every recipe of the entry file.
pub fn select_plans(c: &Checked, select: &Select, color: bool) -> Result<Vec<Plan>, Failure> {
    let spec = &c.spec;
    if let Some(name) = &select.experiment {
        let Some(exp) = spec.experiments.iter().find(|e| &e.name == name) else {
            let known: Vec<String> = spec.experiments.iter().map(|e| e.name.clone()).collect();
            return Err(unknown_selection(
                "--experiment",
                name,
                &known,
                "experiment",
                color,
            ));
        };
        return Ok(vec![compile_experiment(exp, &spec.runs)]);
    }
    if let Some(name) = &select.run {
        return find_run(spec, name, color).map(|r| vec![compile_run(r)]);
    }
    let names = entry_recipes(&c.program);
    if names.is_empty() {
        return Err(usage(
            format!(
                "{} defines no recipe",
                c.program.sources.get(FileId(0)).name
            ),
            "plan a recipe from an imported file with --run NAME, or an experiment with \
             --experiment NAME",
        ));
    }
    Ok(names
        .iter()
        .filter_map(|n| spec.runs.iter().find(|r| &r.name == n))
        .map(compile_run)
        .collect())
}

pub fn find_run<'a>(
    spec: &'a ProgramSpec,
    name: &str,
    color: bool,
) -> Result<&'a RunSpec, Failure> {
    spec.runs.iter().find(|r| r.name == name).ok_or_else(|| {
        let known: Vec<String> = spec.runs.iter().map(|r| r.name.clone()).collect();
        unknown_selection("--run", name, &known, "recipe", color)
    })
}

/// Prints the warnings that concern `runs` (their recipes and the recipes they derive from);
/// the others are only counted, so running one recipe of a large file stays readable.
pub fn print_warnings_for(c: &Checked, runs: &[&str], color: bool) {
    let program = &c.program;
    /// A recipe's extent: from its name to the next item's name in the same file.
    struct Extent {
        name: String,
        parent: Option<String>,
        file: FileId,
        start: usize,
        end: usize,
    }
    let mut extents: Vec<Extent> = Vec::new();
    for m in &program.modules {
        for (i, item) in m.items.iter().enumerate() {
            if let Item::Recipe { name, parent, .. } = item {
                let end = m.items[i + 1..]
                    .iter()
                    .find_map(|i| i.name())
                    .map_or(usize::MAX, |n| n.span.start);
                extents.push(Extent {
                    name: name.name.clone(),
                    parent: parent.as_ref().map(|p| p.name.clone()),
                    file: m.file,
                    start: name.span.start,
                    end,
                });
            }
        }
    }
    let mut wanted: Vec<String> = runs.iter().map(|r| r.to_string()).collect();
    let mut i = 0;
    while i < wanted.len() {
        let parent = extents
            .iter()
            .find(|e| e.name == wanted[i])
            .and_then(|e| e.parent.clone());
        if let Some(p) = parent.filter(|p| !wanted.contains(p)) {
            wanted.push(p);
        }
        i += 1;
    }
    let (shown, hidden): (Vec<Diagnostic>, Vec<Diagnostic>) =
        c.diags.iter().cloned().partition(|d| {
            extents.iter().any(|e| {
                wanted.contains(&e.name)
                    && d.span.file == e.file
                    && d.span.start >= e.start
                    && d.span.start < e.end
            })
        });
    print::diagnostics(&shown, &program.sources, color);
    if !hidden.is_empty() {
        eprintln!(
            "progc: {} more warning{} in other definitions (`progc check {}` shows them)",
            hidden.len(),
            if hidden.len() == 1 { "" } else { "s" },
            program.sources.get(FileId(0)).name
        );
    }
}
