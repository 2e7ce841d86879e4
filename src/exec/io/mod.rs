//! What goes in and out of a run:
//! - [`data`]: corpora, tokenizers, token shards, the batch cursor and validation batches;
//! - [`checkpoint`]: safetensors + JSON metadata, and finding and loading a run's checkpoint;
//! - [`metrics`]: `metrics.jsonl` rows and `summary.json`;
//! - [`report`], [`plot`]: an experiment's report (gaps, seeds, frontier) and its SVG/PNG plots;
//! - [`export`], [`hf`], [`hf_tokenizer`]: `progc export --to hf`;
//! - [`run_dir`]: the run and experiment directories, each of their files named and parsed once;
//! - [`lock`]: the one-writer lock of a run directory; [`events`]: TensorBoard event files.
//!
//! Invariants:
//! - every writer here is atomic (temp file or folder, then rename), and every reader returns
//!   an `ExecError` for a foreign, damaged or old file, never a panic;
//! - checkpoints are only read through `Checkpoint::read` + `check_run` + `restore_model`, and
//!   the run's latest checkpoint is named in one place, [`checkpoint::latest_path`];
//! - an export is written into a temporary sibling of `OUT_DIR` and renamed into place only
//!   when every file is complete: a failure leaves no partial folder under `OUT_DIR`;
//! - an existing `OUT_DIR` is only replaced when it is empty, or, with `--force`, when it holds
//!   an earlier export (`progc_export.json`); any other folder is refused even with `--force`,
//!   so a typo cannot delete a run directory;
//! - `progc_eval.json` holds progc's own validation loss of the exported checkpoint (the run's
//!   `validation_batches`, averaged per batch as the training loop's evaluation does, f32 on
//!   the CPU), each batch's own loss (whose spread is the evaluation's noise) and those
//!   batches' token windows, so a check outside progc
//!   (`scripts/check-hf-export.py`) can recompute it.

pub mod checkpoint;
pub mod data;
pub mod events;
pub mod export;
pub mod hf;
pub mod hf_tokenizer;
pub mod lock;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod run_dir;
