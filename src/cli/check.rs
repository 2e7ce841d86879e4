//! `progc check`: parse and type-check recipe files, reporting every problem at once.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::recipe::{SetArgs, load_and_check};
use super::{Ctx, Exit, Failure, Outcome, print};
use crate::diagnostic::render;

/// Parse and type-check recipe files, reporting every problem at once.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Recipe files (`.prog`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output format of the diagnostics.
    #[arg(long, value_enum, default_value_t = DiagFormat::Text)]
    format: DiagFormat,
    /// Exit with an error when there are warnings.
    #[arg(long)]
    deny_warnings: bool,
    #[command(flatten)]
    sets: SetArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DiagFormat {
    Text,
    Json,
}

impl CheckArgs {
    pub fn run(self, ctx: &Ctx) -> Outcome {
        let mut worst: Option<Exit> = None;
        let mut json_items: Vec<serde_json::Value> = Vec::new();
        let (mut errors, mut warnings) = (0, 0);
        for file in &self.files {
            let c = match load_and_check(file, &self.sets.set) {
                Ok(c) => c,
                Err(e) => {
                    print::error(&e);
                    worst = worst.max(Some(Exit::Failed));
                    continue;
                }
            };
            let (e, w) = print::count(&c.diags);
            errors += e;
            warnings += w;
            match self.format {
                DiagFormat::Text => {
                    for d in &c.diags {
                        eprint!("{}", render::render(d, &c.program.sources, ctx.color));
                    }
                }
                DiagFormat::Json => {
                    let text = render::to_json(&c.diags, &c.program.sources);
                    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&text) {
                        json_items.extend(items);
                    }
                }
            }
        }
        match self.format {
            DiagFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&json_items).unwrap_or_else(|_| "[]".into())
            ),
            DiagFormat::Text => {
                if errors + warnings > 0 {
                    eprintln!("{}", print::count_line(errors, warnings));
                } else if worst.is_none() {
                    let n = self.files.len();
                    eprintln!(
                        "progc: {n} file{} checked, no problems",
                        if n == 1 { "" } else { "s" }
                    );
                }
            }
        }
        if errors > 0 || (self.deny_warnings && warnings > 0) {
            worst = worst.max(Some(Exit::Usage));
        }
        worst.map_or(Ok(()), |e| Err(Failure::Reported(e)))
    }
}
