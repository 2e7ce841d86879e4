//! `progc lsp`: the language server on stdin and stdout.

use clap::Args;

use super::{Ctx, Outcome};
use crate::exec::ExecError;
use crate::exec::error::ErrorKind;

/// Run the language server on stdin and stdout (diagnostics, hover, definition, completion,
/// formatting), for editors.
#[derive(Debug, Args)]
pub struct LspArgs {}

impl LspArgs {
    pub fn run(self, _: &Ctx) -> Outcome {
        crate::lsp::run_stdio().map_err(|err| {
            ExecError::new(ErrorKind::Io, format!("the language server stopped: {err}")).into()
        })
    }
}
