//! `progc explain`: the long explanation of a diagnostic code, or the list of codes.

use clap::Args;

use super::{Ctx, Outcome, usage};
use crate::check::suggest::did_you_mean;
use crate::diagnostic::{CODES, Code, Severity};

/// Explain a diagnostic code in detail (`progc explain P0402`), or list all codes.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A code such as P0402; omit to list every code.
    code: Option<String>,
}

impl ExplainArgs {
    pub fn run(self, _: &Ctx) -> Outcome {
        let Some(code) = self.code else {
            println!("Diagnostic codes (progc explain CODE for details):\n");
            for c in CODES {
                let sev = match c.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                println!("  {}  {:<8} {}", c.name, sev, c.title);
            }
            return Ok(());
        };
        let Some(c) = Code::parse(&code) else {
            let names = CODES.iter().map(|c| c.name);
            let help = match did_you_mean(&code.to_uppercase(), names) {
                Some(s) => format!("{s} (`progc explain` lists every code)"),
                None => "codes look like P0402; `progc explain` lists every code".into(),
            };
            return Err(usage(format!("no diagnostic code `{code}`"), help));
        };
        println!("{}", c.info().explain.trim_end());
        Ok(())
    }
}
