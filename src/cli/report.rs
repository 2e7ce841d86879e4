//! `progc report`: rebuild an experiment's report from its run directories.

use std::path::PathBuf;

use clap::Args;

use super::{Ctx, Outcome};
use crate::exec::io::report::{to_markdown, write_report};
use crate::exec::io::run_dir::ExperimentDir;
use crate::exec::jobs::experiment::read_plan;

/// Rebuild an experiment's report (markdown, JSON, plots) from its finished run directories.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The experiment's output directory (holds experiment.json).
    dir: PathBuf,
}

impl ReportArgs {
    pub fn run(self, _: &Ctx) -> Outcome {
        let report = read_plan(&self.dir).and_then(|plan| write_report(&self.dir, &plan))?;
        println!("{}", to_markdown(&report));
        eprintln!(
            "progc: report written to {}",
            ExperimentDir::new(&self.dir).report_md().display()
        );
        Ok(())
    }
}
