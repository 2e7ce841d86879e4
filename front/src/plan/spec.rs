//! The checked, fully resolved recipe: what the checker produces and the planner consumes.
//!
//! Invariants (established by `check`, relied on by `plan` and `exec`):
//! - every time is already in steps, every size is positive, `heads` divides `width`;
//! - `growths` are strictly increasing in `at_step`, each inside `(0, total_steps)`, and each
//!   grows the depth (`from_depth < to_depth`); the last `to_depth` equals `model.depth`;
//! - `copy` init only appears with `from_depth >= 1`;
//! - `batch.context == model.context`, and `model.vocab` is the tokenizer's vocabulary;
//! - `Tokenizer::Bpe(n)` has `BPE_MIN_VOCAB <= n <= BPE_MAX_VOCAB` and only appears in text
//!   data; a `Tokenizer::File` holds what the checker read from the file (its size, end of
//!   text and content hash).
//!
//! These types are plain data (serde), shared by `plan` and `exec`, and carry no spans.

use serde::{Deserialize, Serialize};

/// An option of the language with a fixed set of values (`placement: top`), each named once.
/// The checker accepts exactly `NAMES`, the language server completes them, the renderer and
/// serde print them: one list, so they cannot drift apart. (`named_enum!` also gives each type
/// inherent `NAMES`, `name` and `from_name`, usable without importing this trait.)
pub trait Named: Copy + Sized + 'static {
    /// Their names in `.prog` files and in JSON, in declaration order.
    const NAMES: &'static [&'static str];
    fn name(self) -> &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

/// Declares a fieldless option enum with its names (`Variant = "name"`), deriving serde with
/// the same names, `Named` and `Display`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident { $( $(#[$vmeta:meta])* $variant:ident = $name:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $ty { $( $(#[$vmeta])* #[serde(rename = $name)] $variant ),+ }

        impl $ty {
            pub const NAMES: &'static [&'static str] = &[$($name),+];
            pub const fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some($ty::$variant),)+ _ => None }
            }
        }

        impl Named for $ty {
            const NAMES: &'static [&'static str] = $ty::NAMES;
            fn name(self) -> &'static str {
                $ty::name(self)
            }
            fn from_name(name: &str) -> Option<Self> {
                $ty::from_name(name)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// How the residual branch of each block is scaled.
    pub enum ResidualScaling {
        /// Plain residual: `x + f(x)`.
        None = "none",
        /// `x + f(x) / sqrt(L)` with `L` the current depth.
        InvSqrtDepth = "inv_sqrt_depth",
        /// `x + f(x) / L` with `L` the current depth.
        InvDepth = "inv_depth",
    }
}

/// A GPT-2 shaped model at its full (target) depth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Name of the model declaration it came from (`gpt2_small`).
    pub name: String,
    /// Embedding width `d`.
    pub width: usize,
    pub heads: usize,
    /// Full depth (number of transformer blocks) at the end of the run.
    pub depth: usize,
    /// Context length `n_ctx` (also the number of learned positions).
    pub context: usize,
    /// Vocabulary size; always the tokenizer's.
    pub vocab: usize,
    /// MLP hidden width is `mlp_ratio * width`.
    pub mlp_ratio: usize,
    /// Std of the normal init of weight matrices and embeddings (nanoGPT: 0.02). Output
    /// projections use `init_std / sqrt(2 * depth)`.
    pub init_std: f64,
    pub residual: ResidualScaling,
}

/// How a data source's text becomes token ids: a built-in tokenizer, a byte-level BPE that
/// progc trains on the corpus (`bpe(N)`), or a Hugging Face `tokenizer.json`. Serde writes the
/// built-in ones as their names (`"gpt2"`), so recipes written before the others existed
/// serialize, and hash, as they did; `{"bpe": 4096}` and `{"file": {...}}` otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// GPT-2 BPE (`r50k_base`), 50257 tokens.
    Gpt2,
    /// One token per byte, 256 tokens.
    Bytes,
    /// A byte-level BPE of this many tokens in all (the 256 bytes, `<|endoftext|>`, and the
    /// merges), trained by progc on the training part of a text corpus
    /// (`BPE_MIN_VOCAB..=BPE_MAX_VOCAB`).
    Bpe(usize),
    /// A Hugging Face `tokenizer.json`, read by the checker.
    File(TokenizerFile),
}

/// What the checker read from a `tokenizer.json`. The content hash makes a changed file a
/// different recipe (another run hash, no shared prefix with runs of the old one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerFile {
    /// Path as written in the recipe.
    pub path: String,
    /// Path resolved against the directory of the file that declared it, like data paths.
    pub resolved_path: String,
    /// Largest token id + 1, over the model's vocabulary and the added tokens.
    pub vocab: usize,
    /// The id of the first of [`END_OF_TEXT_TOKENS`] the file has (added tokens searched
    /// first); `None` when it has none of them.
    pub end_of_text: Option<u32>,
    /// xxh3-64 of the file's bytes, 16 hex digits.
    pub hash: String,
}

/// Names of the end-of-text token in common tokenizers, in the order they are looked for
/// (GPT-2 and most byte-level BPEs, Llama 3, SentencePiece models, Gemma).
pub const END_OF_TEXT_TOKENS: [&str; 4] = ["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"];

/// The smallest `bpe(N)`: the 256 bytes and `<|endoftext|>`, no merge yet.
pub const BPE_MIN_VOCAB: usize = 257;
/// The largest `bpe(N)`: beyond any tokenizer in use (GPT-4o has 200k), and beyond what a
/// corpus a recipe trains on can fill with merges.
pub const BPE_MAX_VOCAB: usize = 1 << 20;

impl Tokenizer {
    /// The built-in tokenizers, by name.
    pub const NAMES: [&'static str; 2] = ["gpt2", "bytes"];

    /// Every form of a `tokenizer:` value, as messages describe it and as the language server
    /// completes it: one list, so the two cannot drift apart.
    pub const FORMS: [(&'static str, &'static str); 4] = [
        ("`gpt2`", "gpt2"),
        ("`bytes`", "bytes"),
        ("`bpe(N)`", "bpe(4096)"),
        ("a path to a tokenizer.json", "\"tokenizer.json\""),
    ];

    /// A built-in tokenizer by name.
    pub fn from_name(name: &str) -> Option<Tokenizer> {
        match name {
            "gpt2" => Some(Tokenizer::Gpt2),
            "bytes" => Some(Tokenizer::Bytes),
            _ => None,
        }
    }

    /// Every form, for messages: "`gpt2`, `bytes`, `bpe(N)` or a path to a tokenizer.json".
    pub fn forms_text() -> String {
        let shown: Vec<&str> = Tokenizer::FORMS.iter().map(|(s, _)| *s).collect();
        let (last, rest) = shown.split_last().expect("FORMS is not empty");
        format!("{} or {last}", rest.join(", "))
    }

    pub fn vocab(&self) -> usize {
        match self {
            Tokenizer::Gpt2 => 50257,
            Tokenizer::Bytes => 256,
            Tokenizer::Bpe(n) => *n,
            Tokenizer::File(f) => f.vocab,
        }
    }

    /// The id of the end-of-text token, where the tokenizer has one. A trained `bpe(N)` has
    /// `<|endoftext|>` first: its trainer numbers its special tokens before the bytes.
    pub fn end_of_text(&self) -> Option<u32> {
        match self {
            Tokenizer::Gpt2 => Some(50256),
            Tokenizer::Bytes => None,
            Tokenizer::Bpe(_) => Some(0),
            Tokenizer::File(f) => f.end_of_text,
        }
    }

    /// A short name for file names and messages: `gpt2`, `bytes`, `bpe4096`, or `tokenizer-`
    /// and the file's hash.
    pub fn tag(&self) -> String {
        match self {
            Tokenizer::Gpt2 | Tokenizer::Bytes => self.to_string(),
            Tokenizer::Bpe(n) => format!("bpe{n}"),
            Tokenizer::File(f) => format!("tokenizer-{}", f.hash),
        }
    }
}

/// As written in a recipe: `gpt2`, `bpe(4096)`, `"path/tokenizer.json"`.
impl std::fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::Gpt2 => f.write_str("gpt2"),
            Tokenizer::Bytes => f.write_str("bytes"),
            Tokenizer::Bpe(n) => write!(f, "bpe({n})"),
            Tokenizer::File(t) => write!(f, "{:?}", t.path),
        }
    }
}

impl TokenizerFile {
    /// Reads what a recipe needs from the text of a Hugging Face `tokenizer.json`: the
    /// vocabulary size and the end-of-text id. The model's vocabulary is an object of token ->
    /// id (BPE, WordPiece, WordLevel) or an array of `[token, score]` whose index is the id
    /// (Unigram); `added_tokens` is an array of `{id, content}`. The error says what is wrong,
    /// for a diagnostic or an error message.
    pub fn from_json(path: &str, resolved_path: &str, bytes: &[u8]) -> Result<Self, String> {
        let root: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("it is not JSON: {e}"))?;
        let vocab = root
            .get("model")
            .and_then(|m| m.get("vocab"))
            .ok_or("it has no `model.vocab`, so it is not a Hugging Face tokenizer.json")?;
        let id = |v: &serde_json::Value, what: &str| -> Result<u32, String> {
            v.as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| format!("{what} has id {v}, not an integer in 0..2^32"))
        };
        let mut model: Vec<(&str, u32)> = Vec::new();
        match vocab {
            serde_json::Value::Object(tokens) => {
                for (token, v) in tokens {
                    model.push((token, id(v, &format!("token {token:?}"))?));
                }
            }
            serde_json::Value::Array(pieces) => {
                for (i, p) in pieces.iter().enumerate() {
                    let token = p.get(0).and_then(|t| t.as_str()).ok_or_else(|| {
                        format!("`model.vocab` entry {i} is not a `[token, score]` pair")
                    })?;
                    model.push((token, i as u32));
                }
            }
            _ => return Err("its `model.vocab` is neither an object nor an array".into()),
        }
        let mut added: Vec<(&str, u32)> = Vec::new();
        if let Some(list) = root.get("added_tokens").filter(|a| !a.is_null()) {
            let list = list
                .as_array()
                .ok_or("its `added_tokens` is not an array")?;
            for (i, t) in list.iter().enumerate() {
                let content = t.get("content").and_then(|c| c.as_str());
                let (Some(content), Some(v)) = (content, t.get("id")) else {
                    return Err(format!("`added_tokens` entry {i} lacks `id` or `content`"));
                };
                added.push((content, id(v, &format!("added token {content:?}"))?));
            }
        }
        let max = model.iter().chain(&added).map(|&(_, i)| i).max();
        let vocab = max.ok_or("its vocabulary is empty")? as usize + 1;
        let end_of_text = [&added, &model].into_iter().find_map(|list| {
            END_OF_TEXT_TOKENS
                .iter()
                .find_map(|eot| list.iter().find(|(t, _)| t == eot).map(|&(_, i)| i))
        });
        Ok(TokenizerFile {
            path: path.to_string(),
            resolved_path: resolved_path.to_string(),
            vocab,
            end_of_text,
            hash: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes)),
        })
    }
}

named_enum! {
    /// The language's data functions: `text(...)` and `tokens(...)`.
    pub enum DataFunc {
        Text = "text",
        Tokens = "tokens",
    }
}

named_enum! {
    /// How a data source's files hold their tokens.
    #[derive(Default)]
    pub enum DataFormat {
        /// A text file that progc tokenizes itself (`text(...)`).
        #[default]
        Text = "text",
        /// Headerless little-endian `u16` token ids (nanoGPT's `prepare.py`).
        Nanogpt = "nanogpt",
        /// llm.c shards: a 256 x `i32` header (magic, version, token count), then `u16` tokens
        /// (magic 20240520, version 1) or `u32` tokens (magic 20240801, version 7).
        Llmc = "llmc",
    }
}

impl DataFormat {
    /// The formats of token shards, `tokens(..., format: F)`.
    pub const SHARD_NAMES: [&'static str; 2] =
        [DataFormat::Nanogpt.name(), DataFormat::Llmc.name()];

    pub fn is_text(&self) -> bool {
        *self == DataFormat::Text
    }
}

/// A corpus, split into a training region and a validation region: a text file (`text(...)`)
/// or a stream of pre-tokenized shards (`tokens(...)`). The token-shard fields are omitted
/// from JSON for text, so text recipes serialize (and hash) as before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub name: String,
    /// Path as written in the recipe (for shards, the first pattern).
    pub path: String,
    /// Path resolved against the directory of the file that declared it (pure string join).
    pub resolved_path: String,
    pub tokenizer: Tokenizer,
    /// Fraction of tokens held out for validation, in (0, 1): the tail of the stream. Unused
    /// when `val_shards` names validation files. Under `bpe(N)` the split is made on the text
    /// instead, by bytes, so that the tokenizer is trained on the training part only.
    pub val_fraction: f64,
    /// How many equal blocks a text stream is cut into, the last `val_fraction` of each held
    /// out (`split: spread(N)`), so that validation samples the whole corpus; 1 (the
    /// default, omitted from JSON so older recipes hash as before): the stream's tail.
    #[serde(default = "one_block", skip_serializing_if = "is_one_block")]
    pub val_blocks: u64,
    #[serde(default, skip_serializing_if = "DataFormat::is_text")]
    pub format: DataFormat,
    /// Resolved shard paths or glob patterns of the training stream, in order (shards only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<String>,
    /// Resolved validation shard paths or patterns; empty: hold out `val_fraction`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_shards: Vec<String>,
}

/// `sequences x context` tokens per optimizer step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSpec {
    pub sequences: usize,
    pub context: usize,
}

impl BatchSpec {
    pub fn tokens_per_step(&self) -> u64 {
        (self.sequences * self.context) as u64
    }
}

/// Per-group learning-rate multipliers (muP-style). The tied embedding/head is `embed`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrMultipliers {
    pub embed: f64,
    pub hidden: f64,
    pub norm: f64,
}

impl Default for LrMultipliers {
    fn default() -> Self {
        LrMultipliers {
            embed: 1.0,
            hidden: 1.0,
            norm: 1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWSpec {
    /// Peak learning rate (the schedule multiplies it).
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay, applied to 2-D weights only (nanoGPT grouping).
    pub weight_decay: f64,
    /// Global gradient-norm clip; `None` = no clipping.
    pub clip: Option<f64>,
    pub lr_mult: LrMultipliers,
}

impl AdamWSpec {
    /// `adamw(lr: LR)` with every other field at its default: betas (0.9, 0.95), eps 1e-8,
    /// weight decay 0.01, no clipping, no LR multipliers. The checker fills missing fields
    /// from here.
    pub fn with_lr(lr: f64) -> AdamWSpec {
        AdamWSpec {
            lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
            clip: None,
            lr_mult: LrMultipliers::default(),
        }
    }
}

/// Muon on 2-D hidden weights (Newton-Schulz orthogonalized momentum); AdamW (`adam`) on the
/// embeddings, norms and biases.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MuonSpec {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub ns_steps: usize,
    pub weight_decay: f64,
    pub adam: AdamWSpec,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerSpec {
    Adamw(AdamWSpec),
    Muon(MuonSpec),
}

named_enum! {
    /// The language's optimizer functions (`adamw(...)`, `muon(...)`), one per
    /// [`OptimizerSpec`] variant: the checker's names come from here.
    pub enum OptimizerFunc {
        Adamw = "adamw",
        Muon = "muon",
    }
}

impl OptimizerSpec {
    pub fn func(&self) -> OptimizerFunc {
        match self {
            OptimizerSpec::Adamw(_) => OptimizerFunc::Adamw,
            OptimizerSpec::Muon(_) => OptimizerFunc::Muon,
        }
    }

    /// The peak learning rate of the main parameter group.
    pub fn peak_lr(&self) -> f64 {
        match self {
            OptimizerSpec::Adamw(a) => a.lr,
            OptimizerSpec::Muon(m) => m.lr,
        }
    }
}

named_enum! {
    pub enum DecayShape {
        Linear = "linear",
        Cosine = "cosine",
        Sqrt = "sqrt",
    }
}

/// Learning-rate rule as a function of the global step; all lengths already in steps.
/// The LR at step `s` is `peak_lr * factor(s)` (see `plan::schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleSpec {
    /// Warmup-stable-decay: linear warmup, constant, then the last `decay_steps` decay to
    /// `floor` (a fraction of the peak).
    Wsd {
        warmup_steps: u64,
        decay_steps: u64,
        shape: DecayShape,
        floor: f64,
    },
    /// Linear warmup, then cosine from the peak to `floor` at the last step.
    Cosine { warmup_steps: u64, floor: f64 },
    /// Linear warmup, then constant.
    Constant { warmup_steps: u64 },
}

named_enum! {
    /// The language's schedule functions, one per [`ScheduleSpec`] variant.
    pub enum ScheduleFunc {
        Wsd = "wsd",
        Cosine = "cosine",
        Constant = "constant",
    }
}

impl ScheduleSpec {
    pub fn func(&self) -> ScheduleFunc {
        match self {
            ScheduleSpec::Wsd { .. } => ScheduleFunc::Wsd,
            ScheduleSpec::Cosine { .. } => ScheduleFunc::Cosine,
            ScheduleSpec::Constant { .. } => ScheduleFunc::Constant,
        }
    }
}

named_enum! {
    pub enum CopyLayout {
        /// Repeat the whole trained stack: [a, b, a, b, ...].
        Stack = "stack",
        /// Repeat each trained block in place: [a, a, ..., b, b, ...].
        Interleave = "interleave",
        /// Every new block copies the last trained block.
        Last = "last",
    }
}

/// How the blocks added by a growth are initialized.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InitSpec {
    /// Fresh normal init; `std` for weights, output projections `std / sqrt(2 * new_depth)`.
    Random { std: f64 },
    /// Copies of trained blocks (fresh parameter identities).
    Copy { layout: CopyLayout },
    /// Whole new blocks output zero: all their weights zero (function-preserving).
    Zero,
    /// Random init, but the attention and MLP output projections zeroed (function-preserving).
    ZeroOut { std: f64 },
}

named_enum! {
    /// The language's init functions (`init: random(std: x)`), one per [`InitSpec`] variant.
    pub enum InitFunc {
        Random = "random",
        Copy = "copy",
        Zero = "zero",
        ZeroOut = "zero_out",
    }
}

/// As the plan shows it: `random(std 0.02)`, `copy(stack)`, `zero`, `zero_out(std 0.02)`.
impl std::fmt::Display for InitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.func().name();
        match *self {
            InitSpec::Random { std } | InitSpec::ZeroOut { std } => write!(f, "{name}(std {std})"),
            InitSpec::Copy { layout } => write!(f, "{name}({layout})"),
            InitSpec::Zero => f.write_str(name),
        }
    }
}

impl InitSpec {
    pub fn func(&self) -> InitFunc {
        match self {
            InitSpec::Random { .. } => InitFunc::Random,
            InitSpec::Copy { .. } => InitFunc::Copy,
            InitSpec::Zero => InitFunc::Zero,
            InitSpec::ZeroOut { .. } => InitFunc::ZeroOut,
        }
    }
}

named_enum! {
    /// Where new blocks go when they are not copies (copies follow their layout).
    pub enum Placement {
        /// After the trained blocks (next to the output).
        Top = "top",
        /// Before the trained blocks (next to the embeddings).
        Bottom = "bottom",
    }
}

named_enum! {
    /// What happens to the optimizer state at a growth.
    pub enum OptStatePolicy {
        /// Old parameters keep their moments and step counters; new ones start fresh.
        Keep = "keep",
        /// Every parameter's state starts fresh.
        Reset = "reset",
        /// New blocks take the moments of the block they were copied from (old ones keep theirs).
        Copy = "copy",
    }
}

/// One depth expansion at a given global step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrowthSpec {
    /// The first step trained at the new depth.
    pub at_step: u64,
    pub from_depth: usize,
    pub to_depth: usize,
    pub init: InitSpec,
    pub placement: Placement,
    pub optimizer_state: OptStatePolicy,
    /// Multiplies the learning rate of the blocks this growth adds, for the rest of the run.
    /// Left out of the JSON when 1, so the run hash of a recipe without it is unchanged.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub lr_mult: f64,
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

/// One fully resolved run: everything `exec` needs to train it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub name: String,
    pub model: ModelSpec,
    pub data: DataSpec,
    pub batch: BatchSpec,
    pub total_steps: u64,
    pub optimizer: OptimizerSpec,
    pub schedule: ScheduleSpec,
    pub seed: u64,
    pub start_depth: usize,
    pub growths: Vec<GrowthSpec>,
    /// Evaluate on the fixed validation set every this many steps (and at the end).
    pub eval_every: u64,
    /// Number of validation batches per evaluation.
    pub eval_batches: usize,
    /// Write a checkpoint every this many steps (also at every segment boundary); 0 = only at
    /// boundaries.
    pub checkpoint_every: u64,
    /// Also write one when this many seconds of training have passed since the last
    /// (`checkpoint_every = 30 min`); 0 = no clock bound. `None`: the default,
    /// [`DEFAULT_CHECKPOINT_CLOCK_S`] (omitted from JSON, so older recipes hash as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_clock_s: Option<u64>,
}

/// The default wall-clock bound between checkpoints: a preempted or crashed run loses at most
/// this much training, however long its steps are.
pub const DEFAULT_CHECKPOINT_CLOCK_S: u64 = 30 * 60;

fn one_block() -> u64 {
    1
}

fn is_one_block(n: &u64) -> bool {
    *n == 1
}

impl RunSpec {
    /// The clock bound between checkpoints, if any.
    pub fn checkpoint_clock(&self) -> Option<std::time::Duration> {
        match self
            .checkpoint_clock_s
            .unwrap_or(DEFAULT_CHECKPOINT_CLOCK_S)
        {
            0 => None,
            s => Some(std::time::Duration::from_secs(s)),
        }
    }

    /// Depth in force at `step`.
    pub fn depth_at(&self, step: u64) -> usize {
        self.growths
            .iter()
            .rev()
            .find(|g| g.at_step <= step)
            .map(|g| g.to_depth)
            .unwrap_or(self.start_depth)
    }
}

/// A named group of runs compared against a reference run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub name: String,
    /// Run (recipe) names, in the order written.
    pub runs: Vec<String>,
    pub reference: String,
    /// `seeds: N` (seeds `0..N`) or `seeds: [a, b, ...]`, distinct, in the order written. Each
    /// run is then trained once per seed, which replaces the recipe's own `seed` (init, data
    /// order and growth randomness). Empty: each run once, with its recipe's seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    /// Recipes identical to the reference but for their length, trained with the runs (at
    /// every seed): with the reference they give final loss against compute, the frontier that
    /// each run's speedup at matched loss is read from. Empty: no speedup is reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<String>,
}

/// Everything a checked program defines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramSpec {
    pub runs: Vec<RunSpec>,
    pub experiments: Vec<ExperimentSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name round-trips through `from_name`, and serde writes the same name (so recipe
    /// hashes and JSON plans keep the language's spelling).
    fn names_agree<T: Named + Serialize + std::fmt::Debug + PartialEq>() {
        for &n in T::NAMES {
            let v = T::from_name(n).unwrap_or_else(|| panic!("{n} does not parse"));
            assert_eq!(v.name(), n);
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{n}\""));
        }
        assert_eq!(T::from_name("no_such_value"), None);
    }

    #[test]
    fn every_option_has_one_spelling() {
        names_agree::<ResidualScaling>();
        names_agree::<DataFormat>();
        names_agree::<DecayShape>();
        names_agree::<CopyLayout>();
        names_agree::<Placement>();
        names_agree::<OptStatePolicy>();
        names_agree::<OptimizerFunc>();
        names_agree::<ScheduleFunc>();
        names_agree::<InitFunc>();
        names_agree::<DataFunc>();
    }

    /// A function's name is the `kind` tag its spec is written with in JSON (run hashes).
    #[test]
    fn function_names_are_the_specs_tags() {
        let tag = |v: serde_json::Value| v["kind"].as_str().unwrap().to_string();
        let adamw = OptimizerSpec::Adamw(AdamWSpec::with_lr(1e-3));
        assert_eq!(
            tag(serde_json::to_value(adamw).unwrap()),
            adamw.func().name()
        );
        for init in [
            InitSpec::Random { std: 0.02 },
            InitSpec::Copy {
                layout: CopyLayout::Stack,
            },
            InitSpec::Zero,
            InitSpec::ZeroOut { std: 0.02 },
        ] {
            assert_eq!(tag(serde_json::to_value(init).unwrap()), init.func().name());
        }
        for sched in [
            ScheduleSpec::Wsd {
                warmup_steps: 1,
                decay_steps: 1,
                shape: DecayShape::Linear,
                floor: 0.0,
            },
            ScheduleSpec::Cosine {
                warmup_steps: 1,
                floor: 0.0,
            },
            ScheduleSpec::Constant { warmup_steps: 1 },
        ] {
            assert_eq!(
                tag(serde_json::to_value(sched).unwrap()),
                sched.func().name()
            );
        }
    }

    /// Built-in tokenizers serialize as their names (old run.json files read, old recipes hash
    /// as before); the others as tagged objects; all read back.
    #[test]
    fn tokenizers_serialize_as_before_and_round_trip() {
        for n in Tokenizer::NAMES {
            let t = Tokenizer::from_name(n).unwrap();
            assert_eq!(t.to_string(), n);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{n}\""));
        }
        assert_eq!(Tokenizer::from_name("bpe"), None);
        let file = Tokenizer::File(TokenizerFile {
            path: "tok.json".into(),
            resolved_path: "dir/tok.json".into(),
            vocab: 300,
            end_of_text: None,
            hash: "00ff".into(),
        });
        for (t, json) in [
            (Tokenizer::Bpe(4096), r#"{"bpe":4096}"#),
            (
                file,
                r#"{"file":{"path":"tok.json","resolved_path":"dir/tok.json","vocab":300,"end_of_text":null,"hash":"00ff"}}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&t).unwrap(), json);
            assert_eq!(serde_json::from_str::<Tokenizer>(json).unwrap(), t);
        }
        assert_eq!(
            Tokenizer::forms_text(),
            "`gpt2`, `bytes`, `bpe(N)` or a path to a tokenizer.json"
        );
    }

    #[test]
    fn a_tokenizer_json_gives_its_size_and_end_of_text() {
        let bpe = br#"{"added_tokens": [{"id": 5, "content": "</s>", "special": true}],
                       "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "<|endoftext|>": 7}}}"#;
        let f = TokenizerFile::from_json("t.json", "t.json", bpe).unwrap();
        // Ids 0..=7; an added end-of-text comes before one in the model's vocabulary.
        assert_eq!((f.vocab, f.end_of_text), (8, Some(5)));
        assert_eq!(f.hash.len(), 16);
        let unigram = br#"{"model": {"type": "Unigram", "vocab": [["<unk>", 0.0], ["<eos>", 0.0], ["x", -1.5]]}}"#;
        let f = TokenizerFile::from_json("u.json", "u.json", unigram).unwrap();
        assert_eq!((f.vocab, f.end_of_text), (3, Some(1)));
        let none = br#"{"model": {"vocab": {"a": 0, "b": 1}}, "added_tokens": []}"#;
        let f = TokenizerFile::from_json("n.json", "n.json", none).unwrap();
        assert_eq!((f.vocab, f.end_of_text), (2, None));
        for (bad, says) in [
            (&b"{\"model\": "[..], "not JSON"),
            (b"{\"version\": \"1.0\"}", "no `model.vocab`"),
            (b"{\"model\": {\"vocab\": {}}}", "empty"),
            (b"{\"model\": {\"vocab\": {\"a\": -1}}}", "not an integer"),
            (b"{\"model\": {\"vocab\": 3}}", "neither an object"),
            (
                b"{\"model\": {\"vocab\": [[\"a\", 0]]}, \"added_tokens\": [{\"id\": 1}]}",
                "lacks",
            ),
        ] {
            let e = TokenizerFile::from_json("b.json", "b.json", bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
