//! The command line: `progc check | plan | run | report | fmt | lsp | explain`.
//!
//! Exit codes: 0 clean (warnings allowed unless `--deny-warnings`), 2 for recipe errors and
//! other user-input mistakes (bad flags, unknown names), 1 for IO, training and internal
//! failures. Nothing here touches burn; `run` hands a compiled plan to `exec`.

mod args;
mod commands;
mod report;

use clap::Parser;

pub use args::Cli;

/// Runs the CLI on the process arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { 2 } else { 0 };
        }
    };
    commands::dispatch(cli)
}
