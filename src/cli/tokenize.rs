//! `progc tokenize`: token shards from text files.

use std::path::PathBuf;

use clap::Args;

use super::{Ctx, Outcome, usage};
use crate::exec::io::data::tokenize::{TokenizeOptions, Written, tokenize};
use crate::plan::spec::{DataFormat, Tokenizer};

/// Write token shards from text files: nanoGPT `train.bin`/`val.bin`, or llm.c shards.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Text files, concatenated in this order (each followed by an end-of-text token).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created; existing shards are never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// nanogpt | llmc.
    #[arg(long, default_value = "nanogpt", value_parser = shard_format)]
    format: DataFormat,
    /// gpt2 | bytes.
    #[arg(long, default_value = "gpt2", value_parser = tokenizer)]
    tokenizer: Tokenizer,
    /// Write the last fraction of the input bytes to validation files: `1%` or `0.01`.
    #[arg(long, value_name = "FRACTION")]
    val: Option<String>,
    /// Tokens per llm.c shard (llm.c writes 100M).
    #[arg(long, value_name = "N", default_value_t = 100_000_000,
          value_parser = clap::value_parser!(u64).range(1..i32::MAX as u64))]
    shard_tokens: u64,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// The shard formats, by the names the language uses.
fn shard_format(s: &str) -> Result<DataFormat, String> {
    DataFormat::from_name(s)
        .filter(|f| DataFormat::SHARD_NAMES.contains(&f.name()))
        .ok_or_else(|| format!("expected one of {}", DataFormat::SHARD_NAMES.join(", ")))
}

fn tokenizer(s: &str) -> Result<Tokenizer, String> {
    Tokenizer::from_name(s)
        .ok_or_else(|| format!("expected one of {}", Tokenizer::NAMES.join(", ")))
}

/// `1%` or `0.01`.
fn parse_fraction(s: &str) -> Option<f64> {
    match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|x| x / 100.0),
        None => s.trim().parse().ok(),
    }
    .filter(|x: &f64| x.is_finite())
}

impl TokenizeArgs {
    pub fn run(self, _: &Ctx) -> Outcome {
        let val_fraction = match self.val.as_deref().map(parse_fraction) {
            None => 0.0,
            Some(Some(x)) if (0.0..1.0).contains(&x) => x,
            Some(_) => {
                return Err(usage(
                    format!(
                        "--val `{}` is not a fraction below 100%",
                        self.val.unwrap_or_default()
                    ),
                    "write e.g. `--val 1%` or `--val 0.01`",
                ));
            }
        };
        let out = self.out.clone();
        let opts = TokenizeOptions {
            inputs: self.inputs,
            out: self.out,
            format: self.format,
            tokenizer: self.tokenizer,
            val_fraction,
            shard_tokens: self.shard_tokens as usize,
            progress: !self.no_progress,
        };
        let s = tokenize(&opts)?;
        for w in s.train.iter().chain(&s.val) {
            println!("wrote {} ({} tokens)", w.path.display(), w.tokens);
        }
        let name = |w: &[Written], split: &str| {
            if w.len() > 1 {
                format!("{}/{split}_*.bin", out.display())
            } else {
                w.first()
                    .map(|w| w.path.display().to_string())
                    .unwrap_or_default()
            }
        };
        let val = if s.val.is_empty() {
            "5%".to_string()
        } else {
            format!("\"{}\"", name(&s.val, "val"))
        };
        println!(
            "use it in a recipe (paths resolve against the recipe's folder):\n  data d = \
             tokens(\"{}\", val: {val}, format: {}, tokenizer: {})",
            name(&s.train, "train"),
            opts.format,
            opts.tokenizer
        );
        Ok(())
    }
}
