//! `progc fmt`: rewrite recipe files in the canonical layout.

use std::path::PathBuf;

use clap::Args;

use super::{Ctx, Exit, Failure, Outcome, print};
use crate::diagnostic::SourceMap;
use crate::exec::ExecError;
use crate::exec::error::ErrorKind;
use crate::syntax::fmt::{FmtError, format_source};
use crate::syntax::load::{decode, not_utf8};

/// Rewrite recipe files in the canonical layout (comments kept, meaning unchanged).
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Recipe files (`.prog`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Change nothing: list the files that are not formatted and exit 1 if there are any.
    #[arg(long)]
    check: bool,
}

impl FmtArgs {
    /// Each file is rewritten in place (or, with `--check`, listed when it would change). A
    /// file that does not parse is reported and left untouched. Exit 2 for such files, else 1
    /// for IO failures or (with `--check`) unformatted files, else 0.
    pub fn run(self, ctx: &Ctx) -> Outcome {
        let mut worst: Option<Exit> = None;
        let fail = |e: ExecError, worst: &mut Option<Exit>| {
            print::error(&e);
            *worst = (*worst).max(Some(Exit::Failed));
        };
        for file in &self.files {
            let bytes = match std::fs::read(file) {
                Ok(b) => b,
                Err(err) => {
                    let e = ExecError::io("read", file, err)
                        .with_help("check the path; recipe files usually end in `.prog`");
                    fail(e, &mut worst);
                    continue;
                }
            };
            let mut map = SourceMap::new();
            let text = match decode(bytes) {
                Ok(text) => text,
                Err((text, at)) => {
                    let id = map.add(file.display().to_string(), text.clone());
                    print::diagnostics(&[not_utf8(id, &text, at)], &map, ctx.color);
                    worst = Some(Exit::Usage);
                    continue;
                }
            };
            let id = map.add(file.display().to_string(), text.clone());
            match format_source(id, &text) {
                Ok(out) if out == text => {}
                Ok(_) if self.check => {
                    println!("{}", file.display());
                    worst = worst.max(Some(Exit::Failed));
                }
                Ok(out) => match std::fs::write(file, out) {
                    Ok(()) => eprintln!("formatted {}", file.display()),
                    Err(err) => fail(ExecError::io("write", file, err), &mut worst),
                },
                Err(FmtError::Syntax(diags)) => {
                    print::diagnostics(&diags, &map, ctx.color);
                    worst = Some(Exit::Usage);
                }
                Err(FmtError::Internal(msg)) => {
                    let e = ExecError::new(
                        ErrorKind::Internal,
                        format!("cannot format {}: {msg}", file.display()),
                    )
                    .with_help("this is a bug in progc fmt; the file is left as it was");
                    fail(e, &mut worst);
                }
            }
        }
        worst.map_or(Ok(()), |e| Err(Failure::Reported(e)))
    }
}
