//! The training corpus: one token stream, from a text file that progc tokenizes (`text.rs`,
//! with the tokenizers of `tokenizer.rs` and the `bpe(N)` that `bpe.rs` trains) or from
//! memory-mapped token shards (`shards.rs`), split into a training and a validation region;
//! batches drawn from them (`batch.rs`); and the shard and tokenizer writers of
//! `progc tokenize` (`tokenize.rs`).
//!
//! Invariants:
//! - a `Corpus` from `load_corpus` has at least 2 tokens in each region (one input and its
//!   target) and every token id is below `vocab`; with a held-out fraction, `val` is the last
//!   `val_fraction` of the stream (rounded to whole tokens), or of each of `val_blocks` equal
//!   blocks of it, concatenated in order (text only). Under `bpe(N)` the same rule cuts the
//!   text's bytes instead, before the tokenizer is trained on the training part;
//! - a corpus whose tokenizer is a tokenizer.json (a file, or a trained `bpe(N)`) carries it,
//!   so that a run directory can keep a copy;
//! - a region never copies its stream: shards stay memory-mapped and only the windows a batch
//!   reads are paged in, so a corpus larger than memory trains in a few hundred MB;
//! - training batches depend only on the cursor state (seed and batches drawn so far), the
//!   batch shape and the training region; validation batches only on the validation region and
//!   the batch shape;
//! - windows never panic on a small region: when a region is shorter than one window the
//!   windows wrap around it (cyclically); `check_fits` reports that as an error up front.

mod batch;
mod bpe;
mod shards;
mod text;
pub mod tokenize;
pub mod tokenizer;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use batch::{Batch, BatchCursor, validation_batches};
pub use bpe::{split_text, train_bpe};
pub use shards::{LLMC_HEADER_BYTES, LLMC_MAGIC_U16, LLMC_MAGIC_U32, ShardSet};
pub use text::{CacheOutcome, content_hash, default_cache_dirs, load_corpus_with_cache};
pub use tokenizer::{HfTokenizer, RUN_TOKENIZER, TextTokenizer};

use crate::exec::error::{ErrorKind, ExecError};
use crate::plan::spec::{BatchSpec, DataFormat, DataSpec};

/// Where the data-file help points users.
const DATA_HELP: &str = "the small bundled corpus is data/emma.txt; build the large one with \
                         `scripts/fetch-corpus.sh` (see data/README.md)";

/// The whole token stream a region is a part of.
#[derive(Clone)]
enum Stream {
    Memory(Arc<[u32]>),
    Shards(Arc<ShardSet>),
}

impl Stream {
    /// Appends tokens `[at, at + n)`; the caller keeps the range inside the stream.
    fn copy(&self, at: usize, n: usize, out: &mut Vec<u32>) {
        match self {
            Stream::Memory(t) => out.extend_from_slice(&t[at..at + n]),
            Stream::Shards(s) => s.copy(at, n, out),
        }
    }
}

/// A contiguous part of a token stream (the training or the validation region).
#[derive(Clone)]
pub struct Region {
    stream: Stream,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.stream {
            Stream::Memory(_) => "memory",
            Stream::Shards(_) => "shards",
        };
        write!(f, "Region({kind}, {}..+{})", self.start, self.len)
    }
}

impl Region {
    pub fn from_vec(tokens: Vec<u32>) -> Region {
        let len = tokens.len();
        Region {
            stream: Stream::Memory(tokens.into()),
            start: 0,
            len,
        }
    }

    fn of_shards(set: Arc<ShardSet>, start: usize, len: usize) -> Region {
        Region {
            stream: Stream::Shards(set),
            start,
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the `n` tokens from position `at`, wrapping around the region's end; an empty
    /// region gives zeros.
    pub fn push_cyclic(&self, at: usize, n: usize, out: &mut Vec<u32>) {
        if self.len == 0 {
            out.extend(std::iter::repeat_n(0, n));
            return;
        }
        let (mut at, mut left) = (at % self.len, n);
        while left > 0 {
            let take = left.min(self.len - at);
            self.stream.copy(self.start + at, take, out);
            left -= take;
            at = 0;
        }
    }

    /// Every token of the region (for tests and small corpora).
    pub fn to_vec(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len);
        self.push_cyclic(0, self.len, &mut out);
        out
    }
}

#[derive(Clone, Debug)]
pub struct Corpus {
    pub train: Region,
    pub val: Region,
    pub vocab: usize,
    /// The file (or first shard) the corpus comes from, for messages.
    pub source: PathBuf,
    pub content_hash: String,
    /// The tokenizer.json of a file or `bpe(N)` tokenizer (none for `gpt2` and `bytes`).
    pub tokenizer: Option<Arc<HfTokenizer>>,
}

impl Corpus {
    /// Splits an already tokenized stream: the last `val_fraction` of it is the validation
    /// region. Errors when either region would hold fewer than 2 tokens.
    pub fn from_tokens(
        tokens: Vec<u32>,
        vocab: usize,
        val_fraction: f64,
        source: PathBuf,
        content_hash: String,
    ) -> Result<Corpus, ExecError> {
        Corpus::from_tokens_in_blocks(tokens, vocab, val_fraction, 1, source, content_hash)
    }

    /// Cuts the stream into `blocks` blocks of (nearly) equal length and holds out the last
    /// `val_fraction` of each: the validation region is the tails one after another, the
    /// training region the heads. With one block this is the plain tail split. Spreading the
    /// held-out part samples every region of a corpus that is a concatenation of documents,
    /// whose tail alone would be one author's. Errors when either region would hold fewer than
    /// 2 tokens.
    pub fn from_tokens_in_blocks(
        tokens: Vec<u32>,
        vocab: usize,
        val_fraction: f64,
        blocks: u64,
        source: PathBuf,
        content_hash: String,
    ) -> Result<Corpus, ExecError> {
        let n = tokens.len();
        let n_val = held_out(n, "tokens", val_fraction, &source)?;
        let blocks = (blocks.max(1) as usize).min(n_val / 2).max(1);
        if blocks == 1 {
            let mut train = tokens;
            let val = train.split_off(n - n_val);
            return Ok(Corpus {
                train: Region::from_vec(train),
                val: Region::from_vec(val),
                vocab,
                source,
                content_hash,
                tokenizer: None,
            });
        }
        let mut train = Vec::with_capacity(n - n_val);
        let mut val = Vec::with_capacity(n_val + blocks);
        for b in 0..blocks {
            let (start, end) = (b * n / blocks, (b + 1) * n / blocks);
            let cut = end - ((end - start) as f64 * val_fraction).round() as usize;
            train.extend_from_slice(&tokens[start..cut]);
            val.extend_from_slice(&tokens[cut..end]);
        }
        Ok(Corpus {
            train: Region::from_vec(train),
            val: Region::from_vec(val),
            vocab,
            source,
            content_hash,
            tokenizer: None,
        })
    }

    /// A corpus whose regions were tokenized apart (`bpe(N)`, split on the text). Errors when
    /// either holds fewer than 2 tokens.
    pub fn from_regions(
        train: Vec<u32>,
        val: Vec<u32>,
        vocab: usize,
        source: PathBuf,
        content_hash: String,
    ) -> Result<Corpus, ExecError> {
        if train.len() < 2 || val.len() < 2 {
            return Err(ExecError::new(
                ErrorKind::Data,
                format!(
                    "corpus {} is too small: its training and validation text give {} and {} tokens, and each needs at least 2",
                    source.display(),
                    train.len(),
                    val.len()
                ),
            )
            .with_help(format!("use more data or a larger `val`; {DATA_HELP}")));
        }
        Ok(Corpus {
            train: Region::from_vec(train),
            val: Region::from_vec(val),
            vocab,
            source,
            content_hash,
            tokenizer: None,
        })
    }

    /// Checks that each region holds at least one window of `context + 1` tokens and the
    /// training region one batch of them. Call it before training: the batch functions wrap
    /// around a too-small region instead of failing.
    pub fn check_fits(&self, batch: BatchSpec) -> Result<(), ExecError> {
        let window = batch.context + 1;
        let mut problems = Vec::new();
        if self.train.len() < window {
            problems.push(format!(
                "the training region has {} tokens",
                self.train.len()
            ));
        }
        if self.val.len() < window {
            problems.push(format!(
                "the validation region has {} tokens",
                self.val.len()
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(ExecError::new(
            ErrorKind::Data,
            format!(
                "corpus {} is too small for context {}: {} (each needs at least {window})",
                self.source.display(),
                batch.context,
                problems.join(" and ")
            ),
        )
        .with_help(
            "use a shorter context, a larger validation fraction, or more data (for text, \
             the small bundled corpus is data/emma.txt; see data/README.md)",
        ))
    }
}

/// How many of `n` tokens (or bytes: `unit`) a held-out fraction takes; errors unless both
/// parts keep 2.
fn held_out(n: usize, unit: &str, val_fraction: f64, source: &Path) -> Result<usize, ExecError> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(ExecError::new(
            ErrorKind::Data,
            format!("validation fraction {val_fraction} is not in (0, 1)"),
        )
        .with_help("write a fraction such as `val: 5%` in the data declaration"));
    }
    let n_val = ((n as f64) * val_fraction).round() as usize;
    if n_val < 2 || n - n_val.min(n) < 2 {
        return Err(ExecError::new(
            ErrorKind::Data,
            format!(
                "corpus {} is too small: {n} {unit} cannot be split into a training and a \
                 validation region (val fraction {val_fraction})",
                source.display()
            ),
        )
        .with_help(format!("use more data; {DATA_HELP}")));
    }
    Ok(n_val)
}

/// Loads the corpus a recipe names: text is tokenized (and cached, see `text.rs`), shards are
/// memory-mapped and checked (see `shards.rs`). `progress` shows the training of a `bpe(N)`
/// tokenizer, the one step that can take a while.
pub fn load_corpus(spec: &DataSpec, progress: bool) -> Result<Corpus, ExecError> {
    match spec.format {
        DataFormat::Text => {
            let dirs = default_cache_dirs(Path::new(&spec.resolved_path));
            load_corpus_with_cache(spec, &dirs, progress).map(|(c, _)| c)
        }
        DataFormat::Nanogpt | DataFormat::Llmc => shards::load(spec),
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
