//! The training corpus: tokenization, the on-disk token cache, and batches.
//!
//! Invariants:
//! - a `Corpus` from `load_corpus` has at least 2 tokens in each region (one input and its
//!   target), every token id is below `vocab`, and `val` is the last `val_fraction` of the
//!   token stream (rounded to whole tokens);
//! - the token cache is only trusted when its header names the same tokenizer, the same
//!   content hash and the same token count, and the payload checksum matches; otherwise it is
//!   rebuilt. Cache files are written atomically (temp file + rename), so a crash never leaves a
//!   half-written cache under the final name;
//! - training batches depend only on the cursor state (seed and batches drawn so far), the
//!   batch shape and the training region; validation batches only on the validation region and
//!   the batch shape.
//! - windows never panic on a small region: when a region is shorter than one window the
//!   windows wrap around it (cyclically); `check_fits` reports that as an error up front.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::error::{ErrorKind, ExecError};
use super::rng::Rng;
use crate::plan::spec::{BatchSpec, DataSpec, Tokenizer};

/// Where the data-file help points users.
const DATA_HELP: &str = "the small bundled corpus is data/emma.txt; build the large one with \
                         `scripts/fetch-corpus.sh` (see data/README.md)";

#[derive(Clone, Debug)]
pub struct Corpus {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub vocab: usize,
    pub source: PathBuf,
    pub content_hash: String,
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
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return Err(ExecError::new(
                ErrorKind::Data,
                format!("validation fraction {val_fraction} is not in (0, 1)"),
            )
            .with_help("write a fraction such as `val 0.05` in the data declaration"));
        }
        let n = tokens.len();
        let n_val = ((n as f64) * val_fraction).round() as usize;
        if n_val < 2 || n - n_val.min(n) < 2 {
            return Err(ExecError::new(
                ErrorKind::Data,
                format!(
                    "corpus {} is too small: {n} tokens cannot be split into a training and a \
                     validation region (val fraction {val_fraction})",
                    source.display()
                ),
            )
            .with_help(format!("use a larger text file; {DATA_HELP}")));
        }
        let mut train = tokens;
        let val = train.split_off(n - n_val);
        Ok(Corpus {
            train,
            val,
            vocab,
            source,
            content_hash,
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
        .with_help(format!(
            "use a shorter context, a larger validation fraction, or a larger corpus; {DATA_HELP}"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizers

/// The GPT-2 BPE (r50k_base), built once per process. The error is kept so every caller gets a
/// clear message instead of a panic.
fn gpt2_bpe() -> Result<&'static tiktoken_rs::CoreBPE, ExecError> {
    static BPE: OnceLock<Result<tiktoken_rs::CoreBPE, String>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::r50k_base().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| {
            ExecError::new(
                ErrorKind::Internal,
                format!("cannot build the GPT-2 tokenizer: {e}"),
            )
        })
}

/// Encodes `text` with `tokenizer` (GPT-2 BPE ignores special tokens: `<|endoftext|>` in the
/// text is ordinary text).
pub fn encode_text(tokenizer: Tokenizer, text: &str) -> Result<Vec<u32>, ExecError> {
    match tokenizer {
        Tokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
        Tokenizer::Gpt2 => encode_gpt2_parallel(text, 1 << 20),
    }
}

/// Decodes tokens back to text (bytes: invalid UTF-8 is replaced with U+FFFD).
pub fn decode_tokens(tokenizer: Tokenizer, tokens: &[u32]) -> Result<String, ExecError> {
    match tokenizer {
        Tokenizer::Bytes => {
            let bytes: Vec<u8> = tokens.iter().map(|&t| t.min(255) as u8).collect();
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        Tokenizer::Gpt2 => gpt2_bpe()?.decode(tokens.to_vec()).map_err(|e| {
            ExecError::new(ErrorKind::Data, format!("cannot decode GPT-2 tokens: {e}"))
        }),
    }
}

/// Places where the text can be cut without changing the GPT-2 tokens: between an ASCII letter
/// and a space that starts another ASCII word. The pre-tokenizer's pieces never span such a
/// point (a letter run ends at the space, ` word` starts there) and its pattern has no
/// look-behind, so encoding the parts separately gives the same ids as encoding the whole.
fn gpt2_split_points(text: &str, target_chunk: usize) -> Vec<usize> {
    let b = text.as_bytes();
    let mut cuts = Vec::new();
    let mut next = target_chunk;
    while next < b.len() {
        let mut i = next;
        while i + 1 < b.len()
            && !(b[i] == b' ' && b[i - 1].is_ascii_alphabetic() && b[i + 1].is_ascii_alphabetic())
        {
            i += 1;
        }
        if i + 1 >= b.len() {
            break;
        }
        cuts.push(i);
        next = i + target_chunk;
    }
    cuts
}

/// GPT-2 encoding of a large text on all cores, in chunks of about `target_chunk` bytes.
fn encode_gpt2_parallel(text: &str, target_chunk: usize) -> Result<Vec<u32>, ExecError> {
    let bpe = gpt2_bpe()?;
    let mut bounds = vec![0];
    bounds.extend(gpt2_split_points(text, target_chunk.max(1)));
    bounds.push(text.len());
    let chunks: Vec<&str> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    if chunks.len() == 1 {
        return Ok(bpe.encode_ordinary(text));
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(chunks.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<u32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = chunks.get(i) else { break };
                        done.push((i, bpe.encode_ordinary(chunk)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if parts.len() != chunks.len() {
        return Err(ExecError::new(
            ErrorKind::Internal,
            "a tokenizer thread panicked",
        ));
    }
    parts.sort_by_key(|(i, _)| *i);
    Ok(parts.into_iter().flat_map(|(_, t)| t).collect())
}

/// Tokenizes the raw bytes of a corpus file (`path` only for messages).
fn tokenize_file(tokenizer: Tokenizer, bytes: &[u8], path: &Path) -> Result<Vec<u32>, ExecError> {
    match tokenizer {
        Tokenizer::Bytes => Ok(bytes.iter().map(|&b| u32::from(b)).collect()),
        Tokenizer::Gpt2 => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                ExecError::new(
                    ErrorKind::Data,
                    format!(
                        "corpus {} is not valid UTF-8 (at byte {}), which the gpt2 tokenizer needs",
                        path.display(),
                        e.valid_up_to()
                    ),
                )
                .with_help(
                    "convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or use \
                     `tokenizer bytes`, which takes any bytes",
                )
            })?;
            encode_text(Tokenizer::Gpt2, text)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hashing (FNV-1a 64: a cache key and a corruption check, not a cryptographic hash)

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash that names a corpus's contents (16 hex digits).
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a64(bytes))
}

// ---------------------------------------------------------------------------------------------
// Token cache

const CACHE_MAGIC: &[u8; 8] = b"PROGCTOK";
const CACHE_VERSION: u32 = 1;
/// magic, version, bytes per token, tokenizer vocab, content hash, token count, checksum.
const CACHE_HEADER: usize = 8 + 4 + 4 + 8 + 8 + 8 + 8;

/// What happened to the token cache during a load (for tests and messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Tokens were read from this valid cache file.
    Hit(PathBuf),
    /// The text was tokenized and the cache written here (a missing, stale or corrupt cache is
    /// replaced).
    Written(PathBuf),
    /// The text was tokenized and no cache could be written anywhere.
    Uncached,
}

fn cache_file_name(source: &Path, tokenizer: Tokenizer, hash: &str) -> String {
    let file = source.file_name().map(|f| f.to_string_lossy().into_owned());
    format!(
        "{}.{}.{hash}.tokens",
        file.unwrap_or_else(|| "corpus".into()),
        tokenizer.name()
    )
}

/// The directories tried for the cache, in order: next to the corpus, then
/// `~/.cache/progc/tokens/`.
pub fn default_cache_dirs(source: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let parent = source.parent().filter(|p| !p.as_os_str().is_empty());
    dirs.push(
        parent
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    );
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dirs.push(PathBuf::from(home).join(".cache/progc/tokens"));
    }
    dirs
}

fn token_width(vocab: usize) -> usize {
    if vocab <= 1 << 16 { 2 } else { 4 }
}

fn encode_cache(tokens: &[u32], vocab: usize, hash: u64) -> Vec<u8> {
    let width = token_width(vocab);
    let mut payload = Vec::with_capacity(tokens.len() * width);
    for &t in tokens {
        if width == 2 {
            payload.extend_from_slice(&(t as u16).to_le_bytes());
        } else {
            payload.extend_from_slice(&t.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(CACHE_HEADER + payload.len());
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(vocab as u64).to_le_bytes());
    out.extend_from_slice(&hash.to_le_bytes());
    out.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a64(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The tokens of a cache file, or `None` when it does not match (`vocab`, `hash`) or is
/// damaged in any way.
fn decode_cache(bytes: &[u8], vocab: usize, hash: u64) -> Option<Vec<u32>> {
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    if bytes.len() < CACHE_HEADER || &bytes[..8] != CACHE_MAGIC || u32_at(8) != CACHE_VERSION {
        return None;
    }
    let width = u32_at(12) as usize;
    if width != token_width(vocab) || u64_at(16) != vocab as u64 || u64_at(24) != hash {
        return None;
    }
    let count = usize::try_from(u64_at(32)).ok()?;
    let payload = &bytes[CACHE_HEADER..];
    if payload.len() != count.checked_mul(width)? || fnv1a64(payload) != u64_at(40) {
        return None;
    }
    let tokens: Vec<u32> = if width == 2 {
        payload
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect()
    } else {
        payload
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    tokens
        .iter()
        .all(|&t| (t as usize) < vocab)
        .then_some(tokens)
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

/// Removes caches of the same corpus file and tokenizer with another content hash (the text
/// changed), so stale caches do not pile up.
fn remove_stale_caches(dir: &Path, source: &Path, tokenizer: Tokenizer, keep: &str) {
    let Some(file) = source.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!("{file}.{}.", tokenizer.name());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(middle) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tokens"))
        else {
            continue;
        };
        if name != keep && middle.len() == 16 && middle.bytes().all(|b| b.is_ascii_hexdigit()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// `load_corpus` with an explicit list of cache directories (tried in order), reporting what
/// happened to the cache.
pub fn load_corpus_with_cache(
    spec: &DataSpec,
    cache_dirs: &[PathBuf],
) -> Result<(Corpus, CacheOutcome), ExecError> {
    let source = PathBuf::from(&spec.resolved_path);
    let bytes = fs::read(&source).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ExecError::new(
                ErrorKind::Data,
                format!(
                    "corpus `{}` not found: looked at {}",
                    spec.name,
                    source.display()
                ),
            )
            .with_help(format!(
                "the path `{}` is resolved against the recipe's directory; {DATA_HELP}",
                spec.path
            ))
        } else {
            ExecError::new(
                ErrorKind::Data,
                format!(
                    "cannot read corpus `{}` at {}: {e}",
                    spec.name,
                    source.display()
                ),
            )
            .with_help("check that the path names a readable text file")
        }
    })?;
    let hash = fnv1a64(&bytes);
    let hash_hex = format!("{hash:016x}");
    let vocab = spec.tokenizer.vocab();
    let name = cache_file_name(&source, spec.tokenizer, &hash_hex);

    let mut cached = None;
    for dir in cache_dirs {
        let path = dir.join(&name);
        if let Ok(data) = fs::read(&path) {
            if let Some(tokens) = decode_cache(&data, vocab, hash) {
                cached = Some((tokens, path));
                break;
            }
        }
    }
    let (tokens, outcome) = match cached {
        Some((tokens, path)) => (tokens, CacheOutcome::Hit(path)),
        None => {
            let tokens = tokenize_file(spec.tokenizer, &bytes, &source)?;
            let data = encode_cache(&tokens, vocab, hash);
            let mut outcome = CacheOutcome::Uncached;
            for dir in cache_dirs {
                let path = dir.join(&name);
                if fs::create_dir_all(dir).is_ok() && write_atomic(&path, &data).is_ok() {
                    remove_stale_caches(dir, &source, spec.tokenizer, &name);
                    outcome = CacheOutcome::Written(path);
                    break;
                }
            }
            (tokens, outcome)
        }
    };
    let corpus = Corpus::from_tokens(tokens, vocab, spec.val_fraction, source, hash_hex)?;
    Ok((corpus, outcome))
}

/// Reads the text at `spec.resolved_path`, tokenizes it once and caches the tokens next to the
/// corpus as `<file>.<tokenizer>.<hash>.tokens` (u16 little-endian when the vocabulary fits,
/// else u32; a 48-byte header with the content hash, count and a payload checksum). A stale or
/// corrupt cache is rebuilt; an unwritable directory falls back to `~/.cache/progc/tokens/`,
/// then to no cache. The last `val_fraction` of the tokens is the validation region.
pub fn load_corpus(spec: &DataSpec) -> Result<Corpus, ExecError> {
    let dirs = default_cache_dirs(Path::new(&spec.resolved_path));
    load_corpus_with_cache(spec, &dirs).map(|(c, _)| c)
}

// ---------------------------------------------------------------------------------------------
// Batches

/// Row-major `[sequences, context]`; `targets` are the inputs shifted left by one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub sequences: usize,
    pub context: usize,
}

impl Batch {
    fn with_capacity(batch: BatchSpec) -> Batch {
        let n = batch.sequences * batch.context;
        Batch {
            inputs: Vec::with_capacity(n),
            targets: Vec::with_capacity(n),
            sequences: batch.sequences,
            context: batch.context,
        }
    }

    /// Appends the window of `context + 1` tokens of `region` starting at `start`, wrapping
    /// around the region's end. An empty region gives zeros (never reached through
    /// `load_corpus`, which guarantees at least 2 tokens).
    fn push_window(&mut self, region: &[u32], start: usize) {
        if region.is_empty() {
            self.inputs.extend(std::iter::repeat_n(0, self.context));
            self.targets.extend(std::iter::repeat_n(0, self.context));
            return;
        }
        let at = |j: usize| region[(start + j) % region.len()];
        self.inputs.extend((0..self.context).map(at));
        self.targets.extend((1..=self.context).map(at));
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCursor {
    pub rng: Rng,
    /// Batches drawn so far.
    pub drawn: u64,
}

impl BatchCursor {
    pub fn new(seed: u64) -> Self {
        BatchCursor {
            rng: Rng::new(seed),
            drawn: 0,
        }
    }

    /// Random windows of `context + 1` tokens from the train region, start positions uniform
    /// over every full window; deterministic in (seed, drawn) for a given batch shape and
    /// training region. A region shorter than a window is sampled cyclically.
    pub fn next_train(&mut self, corpus: &Corpus, batch: BatchSpec) -> Batch {
        let region = &corpus.train;
        let mut out = Batch::with_capacity(batch);
        let starts = if region.len() > batch.context {
            region.len() - batch.context
        } else {
            region.len()
        };
        for _ in 0..batch.sequences {
            let start = self.rng.below(starts as u64) as usize;
            out.push_window(region, start);
        }
        self.drawn += 1;
        out
    }
}

/// A fixed validation set: `n` batches of non-overlapping windows of `context + 1` tokens,
/// spread evenly over the whole validation region. The same for every run on the same corpus
/// and batch shape.
///
/// Small regions: when the region holds fewer than `n * sequences` windows, fewer batches are
/// returned (as many full batches as fit); when it holds fewer windows than one batch, a single
/// batch repeats the available windows; when it is shorter than one window, that batch's windows
/// wrap around the region (see `Corpus::check_fits`, which rejects that case).
pub fn validation_batches(corpus: &Corpus, batch: BatchSpec, n: usize) -> Vec<Batch> {
    let region = &corpus.val;
    let window = batch.context + 1;
    if n == 0 || batch.sequences == 0 {
        return Vec::new();
    }
    let available = region.len() / window;
    if available < batch.sequences {
        let mut b = Batch::with_capacity(batch);
        for i in 0..batch.sequences {
            let start = if available == 0 {
                0
            } else {
                (i % available) * window
            };
            b.push_window(region, start);
        }
        return vec![b];
    }
    let batches = n.min(available / batch.sequences);
    let wanted = batches * batch.sequences;
    (0..batches)
        .map(|k| {
            let mut b = Batch::with_capacity(batch);
            for r in 0..batch.sequences {
                // Window index spread over [0, available): strictly increasing since
                // wanted <= available, so windows never overlap.
                let i = k * batch.sequences + r;
                let w = (i as u128 * available as u128 / wanted as u128) as usize;
                b.push_window(region, w * window);
            }
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty directory under the system temp dir.
    fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "progc-data-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spec(path: &Path, tokenizer: Tokenizer, val: f64) -> DataSpec {
        DataSpec {
            name: "t".into(),
            path: path.display().to_string(),
            resolved_path: path.display().to_string(),
            tokenizer,
            val_fraction: val,
        }
    }

    fn toy_corpus(n: u32, val: f64) -> Corpus {
        Corpus::from_tokens((0..n).collect(), n as usize, val, "toy".into(), "0".into()).unwrap()
    }

    #[test]
    fn bytes_round_trip_is_exact() {
        let text = "Héllo, wörld!\n\t<|endoftext|> ✓";
        let toks = encode_text(Tokenizer::Bytes, text).unwrap();
        assert_eq!(toks.len(), text.len());
        assert!(toks.iter().all(|&t| t < 256));
        assert_eq!(decode_tokens(Tokenizer::Bytes, &toks).unwrap(), text);
    }

    #[test]
    fn gpt2_encodes_known_ids_and_round_trips() {
        assert_eq!(
            encode_text(Tokenizer::Gpt2, "Hello world").unwrap(),
            vec![15496, 995]
        );
        let text = "Emma Woodhouse, handsome, clever, and rich.\n\nShe was 21 years old!";
        let toks = encode_text(Tokenizer::Gpt2, text).unwrap();
        assert!(toks.iter().all(|&t| (t as usize) < 50257));
        assert_eq!(decode_tokens(Tokenizer::Gpt2, &toks).unwrap(), text);
    }

    #[test]
    fn chunked_gpt2_encoding_equals_whole_text_encoding() {
        let text = "It's a truth universally acknowledged, that a single man in possession \
                    of a good fortune, must be in want of a wife.\n\n  However little known the \
                    feelings or views of such a man may be on his first entering a neighbourhood,\
                     this truth is so well fixed in the minds of the surrounding families 123 .";
        let whole = gpt2_bpe().unwrap().encode_ordinary(text);
        for chunk in [1, 7, 20, 64] {
            assert!(!gpt2_split_points(text, chunk).is_empty());
            assert_eq!(
                encode_gpt2_parallel(text, chunk).unwrap(),
                whole,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn cache_miss_then_hit_then_corrupt_rebuild() {
        let dir = temp_dir("cache");
        let file = dir.join("tiny.txt");
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        fs::write(&file, &text).unwrap();
        let s = spec(&file, Tokenizer::Gpt2, 0.25);
        let dirs = vec![dir.clone()];

        let (c1, o1) = load_corpus_with_cache(&s, &dirs).unwrap();
        let CacheOutcome::Written(cache) = o1 else {
            panic!("expected a write, got {o1:?}")
        };
        assert!(
            cache
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("tiny.txt.gpt2.")
        );
        assert_eq!(
            fs::read(&cache).unwrap().len(),
            CACHE_HEADER + 2 * (c1.train.len() + c1.val.len())
        );

        let (c2, o2) = load_corpus_with_cache(&s, &dirs).unwrap();
        assert_eq!(o2, CacheOutcome::Hit(cache.clone()));
        assert_eq!(
            (&c1.train, &c1.val, &c1.content_hash),
            (&c2.train, &c2.val, &c2.content_hash)
        );

        // Flip one payload byte: the checksum catches it and the cache is rebuilt.
        let mut bytes = fs::read(&cache).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5a;
        fs::write(&cache, &bytes).unwrap();
        let (c3, o3) = load_corpus_with_cache(&s, &dirs).unwrap();
        assert_eq!(o3, CacheOutcome::Written(cache.clone()));
        assert_eq!(c3.train, c1.train);
        // Truncated header: also rebuilt.
        fs::write(&cache, b"PROGC").unwrap();
        let (_, o4) = load_corpus_with_cache(&s, &dirs).unwrap();
        assert_eq!(o4, CacheOutcome::Written(cache.clone()));

        // Changed text: a new cache name, the stale one is removed.
        fs::write(&file, format!("{text} And more.")).unwrap();
        let (c5, o5) = load_corpus_with_cache(&s, &dirs).unwrap();
        let CacheOutcome::Written(cache5) = o5 else {
            panic!("{o5:?}")
        };
        assert_ne!(cache5, cache);
        assert!(!cache.exists());
        assert_ne!(c5.content_hash, c1.content_hash);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unusable_cache_dir_falls_back_to_the_next_then_to_none() {
        let dir = temp_dir("fallback");
        let file = dir.join("t.txt");
        fs::write(&file, vec![b'a'; 100]).unwrap();
        // A regular file where a directory is expected cannot hold a cache, even for root.
        let blocker = dir.join("blocker");
        fs::write(&blocker, b"x").unwrap();
        let s = spec(&file, Tokenizer::Bytes, 0.1);
        let second = dir.join("second");
        let (_, o) = load_corpus_with_cache(&s, &[blocker.clone(), second.clone()]).unwrap();
        let CacheOutcome::Written(p) = o else {
            panic!("{o:?}")
        };
        assert!(p.starts_with(&second));
        let (c, o) = load_corpus_with_cache(&s, &[blocker.join("sub")]).unwrap();
        assert_eq!(o, CacheOutcome::Uncached);
        assert_eq!((c.train.len(), c.val.len()), (90, 10));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clear_errors_for_missing_non_utf8_and_tiny_files() {
        let dir = temp_dir("errors");
        let missing = dir.join("nope.txt");
        let e = load_corpus_with_cache(&spec(&missing, Tokenizer::Bytes, 0.1), &[])
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Data);
        assert!(e.message.contains(&missing.display().to_string()), "{e}");
        assert!(
            e.help
                .as_deref()
                .unwrap()
                .contains("scripts/fetch-corpus.sh"),
            "{e}"
        );

        let latin1 = dir.join("latin1.txt");
        fs::write(&latin1, b"caf\xe9 au lait").unwrap();
        let e = load_corpus_with_cache(&spec(&latin1, Tokenizer::Gpt2, 0.3), &[])
            .err()
            .unwrap();
        assert!(
            e.message.contains("UTF-8") && e.message.contains("byte 3"),
            "{e}"
        );
        // The bytes tokenizer takes anything.
        let (c, _) = load_corpus_with_cache(&spec(&latin1, Tokenizer::Bytes, 0.3), &[]).unwrap();
        assert_eq!(c.train.len() + c.val.len(), 12);

        let tiny = dir.join("tiny.txt");
        fs::write(&tiny, b"abc").unwrap();
        let e = load_corpus_with_cache(&spec(&tiny, Tokenizer::Bytes, 0.1), &[])
            .err()
            .unwrap();
        assert!(e.message.contains("too small"), "{e}");

        let e = load_corpus_with_cache(&spec(&dir, Tokenizer::Bytes, 0.1), &[])
            .err()
            .unwrap();
        assert!(e.message.contains("cannot read"), "{e}");

        let c = toy_corpus(100, 0.1);
        assert!(
            c.check_fits(BatchSpec {
                sequences: 2,
                context: 9
            })
            .is_ok()
        );
        let e = c
            .check_fits(BatchSpec {
                sequences: 2,
                context: 10,
            })
            .err()
            .unwrap();
        assert!(e.message.contains("validation region has 10 tokens"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn train_batches_are_deterministic_and_targets_are_shifted_inputs() {
        let corpus = toy_corpus(1000, 0.1);
        let b = BatchSpec {
            sequences: 4,
            context: 16,
        };
        let mut c1 = BatchCursor::new(5);
        let mut c2 = BatchCursor::new(5);
        let x1: Vec<Batch> = (0..3).map(|_| c1.next_train(&corpus, b)).collect();
        let x2: Vec<Batch> = (0..3).map(|_| c2.next_train(&corpus, b)).collect();
        assert_eq!(x1, x2);
        assert_eq!(c1.drawn, 3);
        assert_ne!(x1[0], x1[1]);
        assert_ne!(x1[0], BatchCursor::new(6).next_train(&corpus, b));
        // A cursor restored mid-stream continues identically.
        let mut restored: BatchCursor =
            serde_json::from_str(&serde_json::to_string(&c1).unwrap()).unwrap();
        assert_eq!(restored.next_train(&corpus, b), c2.next_train(&corpus, b));
        for batch in &x1 {
            assert_eq!(batch.inputs.len(), 64);
            for row in 0..4 {
                let inp = &batch.inputs[row * 16..(row + 1) * 16];
                let tgt = &batch.targets[row * 16..(row + 1) * 16];
                // Toy tokens are 0..1000 in order, so a window is consecutive ids.
                assert_eq!(&inp[1..], &tgt[..15]);
                assert_eq!(tgt[15], inp[15] + 1);
                assert!(tgt[15] < 900, "window left the train region");
            }
        }
    }

    #[test]
    fn validation_set_is_fixed_non_overlapping_and_in_the_val_region() {
        let corpus = toy_corpus(1000, 0.2);
        let b = BatchSpec {
            sequences: 3,
            context: 7,
        };
        let v1 = validation_batches(&corpus, b, 4);
        assert_eq!(v1, validation_batches(&corpus, b, 4));
        assert_eq!(v1.len(), 4);
        let mut starts: Vec<u32> = v1
            .iter()
            .flat_map(|x| x.inputs.chunks(7).map(|r| r[0]))
            .collect();
        assert!(starts.iter().all(|&s| s >= 800));
        assert!(starts.windows(2).all(|w| w[1] >= w[0] + 8), "{starts:?}");
        assert_eq!(v1[0].targets[..6], v1[0].inputs[1..7]);
        // Windows spread over the region: the last one is near its end.
        starts.sort();
        assert!(*starts.last().unwrap() > 950, "{starts:?}");
        // Small region: fewer batches (200 tokens hold 25 windows = 8 batches of 3).
        assert_eq!(validation_batches(&corpus, b, 100).len(), 8);
        // Region smaller than one batch: one batch of repeated windows.
        let small = toy_corpus(100, 0.2);
        let v = validation_batches(
            &small,
            BatchSpec {
                sequences: 4,
                context: 9,
            },
            3,
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].inputs[..9], v[0].inputs[18..27]);
    }

    #[test]
    fn emma_loads_with_the_bytes_tokenizer() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/emma.txt");
        let (c, _) = load_corpus_with_cache(&spec(&path, Tokenizer::Bytes, 0.05), &[]).unwrap();
        let n = c.train.len() + c.val.len();
        assert!((800_000..1_000_000).contains(&n), "{n}");
        assert_eq!(c.vocab, 256);
        assert_eq!(
            decode_tokens(Tokenizer::Bytes, &c.train[..13]).unwrap(),
            "[Emma by Jane"
        );
    }
}
