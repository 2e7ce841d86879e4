//! `progc sample`: text from a run's checkpoint.

use std::path::PathBuf;

use clap::Args;

use super::run::note_writer;
use super::{Ctx, Outcome};
use crate::exec::device::DeviceChoice;
use crate::exec::jobs::sample::{SampleOptions, sample};

/// Generate text from a run's checkpoint: prints the prompt and its continuation.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The run directory (holds run.json and checkpoints/).
    run_dir: PathBuf,
    /// Text to continue (default: start of text).
    #[arg(long, default_value = "")]
    prompt: String,
    /// New tokens to generate.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f64,
    /// Sample only among the K most likely tokens.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu", help = DeviceChoice::help(), value_parser = super::run::device)]
    device: DeviceChoice,
    /// Sample from this checkpoint instead of the run's latest.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
}

impl SampleArgs {
    pub fn run(self, _: &Ctx) -> Outcome {
        let opts = SampleOptions {
            tokens: self.tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            seed: self.seed,
        };
        opts.validate()?;
        note_writer(&self.run_dir);
        let s = sample(
            self.run_dir,
            self.checkpoint,
            self.prompt,
            opts,
            self.device,
        )?;
        println!("{}{}", s.prompt, s.continuation);
        eprintln!("progc: sampled from step {}", s.step);
        Ok(())
    }
}
