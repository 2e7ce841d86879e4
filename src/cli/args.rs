//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exec::precision::Precision;

#[derive(Debug, Parser)]
#[command(
    name = "progc",
    version,
    about = "Compile and run progressive depth training recipes (zero/one-layer GPT-2 growth)",
    after_help = "Examples:\n  progc check examples/tiny.prog\n  progc plan examples/tiny.prog\n  \
                  progc run examples/tiny.prog\n  progc explain P0402"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to color diagnostics.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and type-check recipe files, reporting every problem at once.
    Check {
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
    },
    /// Compile a recipe into its stage plan: segments, growth transitions, FLOPs and saving.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        select: Select,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        #[command(flatten)]
        sets: SetArgs,
    },
    /// Train a recipe's plan with burn (CPU by default, CUDA when asked or available).
    Run {
        /// The recipe file; not needed with `--resume`.
        #[arg(required_unless_present = "resume")]
        file: Option<PathBuf>,
        /// Which recipe of the file to run (needed when it defines several).
        #[arg(long, conflicts_with = "experiment")]
        run: Option<String>,
        /// Run every run of this experiment, training shared prefixes once; re-running the
        /// same command continues an interrupted experiment.
        #[arg(long)]
        experiment: Option<String>,
        /// auto | cpu | cuda | cuda:N. `auto` uses CUDA when it is usable, else the CPU.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Run directory (default: runs/<recipe>, never overwriting an existing one; for an
        /// experiment runs/<experiment>, continued when it holds the same experiment).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue a stopped run from its latest checkpoint.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["file", "run", "experiment", "out", "set"])]
        resume: Option<PathBuf>,
        /// Stop cleanly after this global step (a checkpoint is written; resume later).
        #[arg(long, value_name = "STEP")]
        stop_after: Option<u64>,
        /// Hide the progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Matmul precision: f32 | bf16 (bf16 keeps f32 master weights and optimizer state).
        #[arg(long, default_value = "f32")]
        precision: Precision,
        /// Read the training loss back (one metrics row) every N steps; default 1 on the CPU,
        /// 25 on CUDA, where every read waits for the GPU.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        log_every: Option<u64>,
        #[command(flatten)]
        peers: PeerArgs,
        #[command(flatten)]
        sets: SetArgs,
    },
    /// Rebuild an experiment's report (markdown, JSON, plots) from its finished run directories.
    Report {
        /// The experiment's output directory (holds experiment.json).
        dir: PathBuf,
    },
    /// Write token shards from text files: nanoGPT `train.bin`/`val.bin`, or llm.c shards.
    Tokenize {
        /// Text files, concatenated in this order (each followed by an end-of-text token).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (created; existing shards are never overwritten).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = ShardFormat::Nanogpt)]
        format: ShardFormat,
        #[arg(long, value_enum, default_value_t = TokenizerArg::Gpt2)]
        tokenizer: TokenizerArg,
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
    },
    /// Write a run's checkpoint as a model other tools load (`--to hf`: a transformers
    /// GPT2LMHeadModel folder with its tokenizer files).
    Export {
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
    },
    /// Generate text from a run's checkpoint: prints the prompt and its continuation.
    Sample {
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
        /// auto | cpu | cuda | cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Sample from this checkpoint instead of the run's latest.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Rewrite recipe files in the canonical layout (comments kept, meaning unchanged).
    Fmt {
        /// Recipe files (`.prog`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing: list the files that are not formatted and exit 1 if there are any.
        #[arg(long)]
        check: bool,
    },
    /// Run the language server on stdin and stdout (diagnostics, hover, definition,
    /// completion, formatting), for editors.
    Lsp,
    /// Explain a diagnostic code in detail (`progc explain P0402`), or list all codes.
    Explain {
        /// A code such as P0402; omit to list every code.
        code: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Override a recipe statement, checked like the file itself: `--set steps=2000`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Select {
    /// Plan only this recipe.
    #[arg(long, conflicts_with = "experiment")]
    pub run: Option<String>,
    /// Plan this experiment: its runs in one graph, sharing identical prefixes.
    #[arg(long)]
    pub experiment: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Dot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShardFormat {
    Nanogpt,
    Llmc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenizerArg {
    Gpt2,
    Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Data-parallel training: peers on this machine, and several machines.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Train data-parallel on these devices, one peer each: `cpu:N` (N peers on the CPU) or a
    /// list such as `cuda:0,cuda:1`. The recipe's batch is the global batch, split evenly.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub devices: Option<String>,
    /// Number of machines (nodes) in the run; every node runs the same command.
    #[arg(long, value_name = "N", requires_all = ["node_rank", "orchestrator"],
          value_parser = clap::value_parser!(u32).range(1..))]
    pub nodes: Option<u32>,
    /// This node's index, 0..N; node 0 coordinates the nodes and writes the run.
    #[arg(long, value_name = "R", requires = "nodes")]
    pub node_rank: Option<u32>,
    /// HOST:PORT of node 0, which listens on PORT for the other nodes.
    #[arg(long, value_name = "HOST:PORT", requires = "nodes")]
    pub orchestrator: Option<String>,
    /// Stop with an error when no peer finishes a step for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub peer_timeout: u64,
}
