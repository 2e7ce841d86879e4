//! `progc tokenize`: token shards from text files, or (`--train-bpe N`) a byte-level BPE
//! tokenizer.json trained on them.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{Ctx, Outcome, usage};
use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::data::tokenize::{
    TokenizeOptions, TrainBpeOptions, Written, tokenize, write_bpe,
};
use crate::plan::spec::{DataFormat, END_OF_TEXT_TOKENS, Tokenizer, TokenizerFile};

/// Write token shards from text files (nanoGPT `train.bin`/`val.bin`, or llm.c shards), or train
/// a byte-level BPE on them and write its tokenizer.json (`--train-bpe N`).
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Text files, concatenated in this order (each followed by an end-of-text token).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder for the shards (created; existing shards are never overwritten); with
    /// `--train-bpe`, the tokenizer.json file to write (never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// nanogpt | llmc.
    #[arg(long, default_value = "nanogpt", value_parser = shard_format)]
    format: DataFormat,
    /// gpt2 | bytes | a tokenizer.json file.
    #[arg(long, default_value = "gpt2")]
    tokenizer: String,
    /// Train a byte-level BPE of N tokens on the text (less its `--val` tail) and write its
    /// tokenizer.json to `--out`, instead of writing shards.
    #[arg(long, value_name = "N", conflicts_with_all = ["tokenizer", "format", "shard_tokens"])]
    train_bpe: Option<usize>,
    /// Write the last fraction of the input bytes to validation files (with `--train-bpe`:
    /// leave it out of training): `1%` or `0.01`.
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

/// `--tokenizer`: a built-in name, or the path of a tokenizer.json, read as the checker reads
/// one a recipe names.
fn tokenizer(s: &str) -> Result<Tokenizer, ExecError> {
    if let Some(t) = Tokenizer::from_name(s) {
        return Ok(t);
    }
    if s.starts_with("bpe") && !Path::new(s).exists() {
        return Err(ExecError::new(
            ErrorKind::Usage,
            format!("--tokenizer {s}: a bpe(N) must be trained before it writes shards"),
        )
        .with_help(
            "train it with `progc tokenize TEXT... --train-bpe N --out tokenizer.json`, then \
             pass `--tokenizer tokenizer.json`",
        ));
    }
    let bytes = std::fs::read(s).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file".to_string()
        } else {
            e.to_string()
        };
        ExecError::new(
            ErrorKind::Usage,
            format!(
                "--tokenizer `{s}` is neither {} nor a tokenizer.json that can be read ({what})",
                Tokenizer::NAMES.join(" nor ")
            ),
        )
        .with_help("name a built-in tokenizer, or the path of a Hugging Face tokenizer.json")
    })?;
    let f = TokenizerFile::from_json(s, s, &bytes).map_err(|why| {
        ExecError::new(
            ErrorKind::Data,
            format!("tokenizer {s} cannot be used: {why}"),
        )
        .with_help("name a Hugging Face tokenizer.json")
    })?;
    Ok(Tokenizer::File(f))
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
        if let Some(size) = self.train_bpe {
            return self.train(size, val_fraction);
        }
        let out = self.out.clone();
        let opts = TokenizeOptions {
            inputs: self.inputs,
            out: self.out,
            format: self.format,
            tokenizer: tokenizer(&self.tokenizer)?,
            val_fraction,
            shard_tokens: self.shard_tokens as usize,
            progress: !self.no_progress,
        };
        let s = tokenize(&opts)?;
        for w in s.train.iter().chain(&s.val) {
            println!(
                "wrote {} ({} tokens, u{})",
                w.path.display(),
                w.tokens,
                8 * s.width
            );
        }
        if s.separator.is_none() {
            eprintln!(
                "note: {} has no end-of-text token (none of {}): the input files are \
                 concatenated with no separator",
                opts.tokenizer,
                END_OF_TEXT_TOKENS.join(", ")
            );
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

    /// `--train-bpe N`.
    fn train(self, size: usize, val_fraction: f64) -> Outcome {
        let files = self.inputs.len();
        let opts = TrainBpeOptions {
            inputs: self.inputs,
            out: self.out,
            size,
            val_fraction,
            progress: !self.no_progress,
        };
        let (t, trained) = write_bpe(&opts)?;
        let left_out = if val_fraction > 0.0 {
            format!(", the last {}% left out", val_fraction * 100.0)
        } else {
            String::new()
        };
        println!(
            "wrote {}: a byte-level BPE of {} tokens, trained on {:.1} MB of text from {files} \
             file(s){left_out}",
            opts.out.display(),
            t.vocab(),
            trained as f64 / 1e6,
        );
        let out = opts.out.display();
        println!(
            "use it in a recipe (paths resolve against the recipe's folder):\n  data d = \
             text(\"corpus.txt\", tokenizer: \"{out}\")\nor write shards with it:\n  progc \
             tokenize TEXT... --tokenizer {out} --out DIR"
        );
        Ok(())
    }
}
