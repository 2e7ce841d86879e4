//! `progc export`: a run's checkpoint as a model other tools load.

use std::path::PathBuf;

use clap::Args;

use super::run::note_writer;
use super::{Ctx, Outcome};
use crate::exec::io::export::{ExportFormat, ExportOptions};
use crate::exec::jobs::export::export;

/// Write a run's checkpoint as a model other tools load (`--to hf`: a transformers
/// GPT2LMHeadModel folder with its tokenizer files).
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory (holds run.json and checkpoints/).
    run_dir: PathBuf,
    /// Target format: hf.
    #[arg(long, value_name = "FORMAT")]
    to: String,
    /// Output folder (must be new or empty; `--force` replaces an earlier export).
    out_dir: PathBuf,
    /// Export this checkpoint instead of the run's latest.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Replace an earlier export in OUT_DIR.
    #[arg(long)]
    force: bool,
    /// Skip progc_eval.json (progc's validation loss and windows; needs the run's corpus).
    #[arg(long)]
    no_eval: bool,
}

impl ExportArgs {
    pub fn run(self, _: &Ctx) -> Outcome {
        note_writer(&self.run_dir);
        let opts = ExportOptions {
            format: ExportFormat::parse(&self.to)?,
            out_dir: self.out_dir,
            checkpoint: self.checkpoint,
            force: self.force,
            eval: !self.no_eval,
        };
        let r = export(&self.run_dir, &opts)?;
        println!(
            "exported step {} (depth {}) of {} to {}",
            r.step,
            r.depth,
            r.checkpoint.display(),
            r.out_dir.display()
        );
        if let Some((loss, windows)) = r.val {
            println!("progc val loss {loss:.6} on {windows} windows (progc_eval.json)");
        }
        Ok(())
    }
}
