//! `progc plan`: compile a recipe into its stage plan and print it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::recipe::{Select, SetArgs, checked, print_warnings_for, select_plans};
use super::{Ctx, Outcome, print};
use crate::plan::render::{render_dot, render_json, render_text};

/// Compile a recipe into its stage plan: segments, growth transitions, FLOPs and saving.
#[derive(Debug, Args)]
pub struct PlanArgs {
    file: PathBuf,
    #[command(flatten)]
    select: Select,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    #[command(flatten)]
    sets: SetArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
    Dot,
}

impl PlanArgs {
    pub fn run(self, ctx: &Ctx) -> Outcome {
        let c = checked(&self.file, &self.sets.set, ctx.color)?;
        let experiment = self
            .select
            .experiment
            .as_ref()
            .and_then(|n| c.spec.experiments.iter().find(|e| &e.name == n));
        match (&self.select.run, experiment) {
            (Some(run), _) => print_warnings_for(&c, &[run.as_str()], ctx.color),
            (None, Some(exp)) => {
                let runs: Vec<&str> = exp.runs.iter().map(String::as_str).collect();
                print_warnings_for(&c, &runs, ctx.color);
            }
            (None, None) => print::diagnostics(&c.diags, &c.program.sources, ctx.color),
        }
        let plans = select_plans(&c, &self.select, ctx.color)?;
        let out = match self.format {
            PlanFormat::Text => plans.iter().map(render_text).collect::<Vec<_>>().join("\n"),
            PlanFormat::Dot => plans.iter().map(render_dot).collect::<Vec<_>>().join("\n"),
            PlanFormat::Json if plans.len() == 1 => render_json(&plans[0]),
            PlanFormat::Json => {
                let items: Vec<serde_json::Value> = plans
                    .iter()
                    .filter_map(|p| serde_json::to_value(p).ok())
                    .collect();
                serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
            }
        };
        println!("{}", out.trim_end());
        Ok(())
    }
}
