//! The command line: one file per command, each with its own arguments (clap derive) and a
//! `run` that returns `Outcome`.
//!
//! Invariants:
//! - exit codes: 0 clean (warnings allowed unless `--deny-warnings`), 2 for recipe errors and
//!   other user-input mistakes (bad flags, unknown names: `ErrorKind::Usage`), 1 for IO,
//!   training and internal failures, 130/143 for a run stopped by SIGINT/SIGTERM with its
//!   step saved;
//! - every error reaches the user through one printer: recipe errors as diagnostics
//!   (`print::diagnostics`), everything else as an `ExecError` (`print::error`), in one style
//!   (`error: ...` then `  help: ...`);
//! - nothing here touches burn; `run` hands a compiled plan to `exec`.

mod check;
mod explain;
mod export;
mod fmt;
mod lsp;
mod plan;
mod print;
mod recipe;
mod report;
mod run;
mod sample;
mod tokenize;

use clap::{Parser, Subcommand, ValueEnum};

use crate::exec::ExecError;
use crate::exec::error::ErrorKind;
use crate::exec::jobs::stop::Signal;

#[derive(Debug, Parser)]
#[command(
    name = "progc",
    version,
    about = "Compile and run progressive depth training recipes (zero/one-layer GPT-2 growth)",
    after_help = "Examples:\n  progc check examples/tiny.prog\n  progc plan examples/tiny.prog\n  \
                  progc run examples/tiny.prog\n  progc explain P0402"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to color diagnostics.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Check(check::CheckArgs),
    Plan(plan::PlanArgs),
    Run(run::RunArgs),
    Report(report::ReportArgs),
    Tokenize(tokenize::TokenizeArgs),
    Export(export::ExportArgs),
    Sample(sample::SampleArgs),
    Fmt(fmt::FmtArgs),
    Lsp(lsp::LspArgs),
    Explain(explain::ExplainArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// How a command ends when it does not simply succeed.
#[derive(Debug)]
pub enum Failure {
    /// Not yet told to the user: printed by `print::error`.
    Error(ExecError),
    /// Already told (recipe diagnostics, or one error per file of a multi-file command).
    Reported(Exit),
    /// A stop signal ended a run after saving its step (the command said how to go on).
    Stopped(Signal),
}

/// The exit codes of failures already reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Failed,
    Usage,
}

impl From<ExecError> for Failure {
    fn from(e: ExecError) -> Failure {
        Failure::Error(e)
    }
}

pub type Outcome = Result<(), Failure>;

/// A mistake in the command line, with what to do instead.
pub fn usage(message: impl Into<String>, help: impl Into<String>) -> Failure {
    Failure::Error(ExecError::new(ErrorKind::Usage, message).with_help(help))
}

/// What every command may need besides its arguments.
pub struct Ctx {
    /// Color the diagnostics on stderr.
    pub color: bool,
}

/// Runs the CLI on the process arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { 2 } else { 0 };
        }
    };
    let ctx = Ctx {
        color: print::use_color(cli.color),
    };
    let outcome = match cli.command {
        Command::Check(a) => a.run(&ctx),
        Command::Plan(a) => a.run(&ctx),
        Command::Run(a) => a.run(&ctx),
        Command::Report(a) => a.run(&ctx),
        Command::Tokenize(a) => a.run(&ctx),
        Command::Export(a) => a.run(&ctx),
        Command::Sample(a) => a.run(&ctx),
        Command::Fmt(a) => a.run(&ctx),
        Command::Lsp(a) => a.run(&ctx),
        Command::Explain(a) => a.run(&ctx),
    };
    match outcome {
        Ok(()) => 0,
        Err(Failure::Error(e)) => {
            print::error(&e);
            if e.kind == ErrorKind::Usage { 2 } else { 1 }
        }
        Err(Failure::Reported(Exit::Failed)) => 1,
        Err(Failure::Reported(Exit::Usage)) => 2,
        Err(Failure::Stopped(signal)) => signal.exit_code(),
    }
}
