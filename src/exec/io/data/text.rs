//! Text corpora: reading the text, tokenizing it once (`tokenizer.rs`; `bpe.rs` for a
//! `bpe(N)` trained on it), and the on-disk token cache.
//!
//! Invariants:
//! - the token cache is only trusted when its header names the same vocabulary, the same key
//!   (the content hash of the text; for a trained BPE, of the text and the tokenizer together)
//!   and the same token count, and the payload checksum matches; otherwise it is rebuilt. Its
//!   name says which tokenizer wrote it (`<file>.<tag>.<hash>.tokens`, the tag `gpt2`, `bytes`,
//!   `tokenizer-<hash of the file>`, or the BPE's size and split). Cache files are written
//!   atomically (temp file + rename), so a crash never leaves a half-written cache under the
//!   final name;
//! - with `gpt2`, `bytes` or a tokenizer.json the whole text is tokenized and the split is made
//!   on the tokens (`Corpus::from_tokens_in_blocks`); `bpe(N)` splits the text first (`bpe.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use super::tokenizer::TextTokenizer;
use super::{Corpus, DATA_HELP, bpe, write_atomic};
use crate::exec::error::{ErrorKind, ExecError};
use crate::plan::spec::{DataSpec, Tokenizer};

// ---------------------------------------------------------------------------------------------
// Hashing (xxh3-64: a cache key and a corruption check, not a cryptographic hash)

pub(super) fn xxh3(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The hash that names a corpus's contents (16 hex digits).
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:016x}", xxh3(bytes))
}

// ---------------------------------------------------------------------------------------------
// Token cache

const CACHE_MAGIC: &[u8; 8] = b"PROGCTOK";
/// Version 2: xxh3 hashes (version 1 used FNV-1a, so its caches are rebuilt).
const CACHE_VERSION: u32 = 2;
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

/// `<file>.<tag>.<hash><suffix>`: a cache of `source` (`suffix` `.tokens`, or
/// `.tokenizer.json` for a trained BPE).
pub(super) fn cache_file_name(source: &Path, tag: &str, hash: &str, suffix: &str) -> String {
    let file = source.file_name().map(|f| f.to_string_lossy().into_owned());
    format!(
        "{}.{tag}.{hash}{suffix}",
        file.unwrap_or_else(|| "corpus".into())
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

fn encode_cache(tokens: &[u32], vocab: usize, key: u64) -> Vec<u8> {
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
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxh3(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The tokens of a cache file, or `None` when it does not match (`vocab`, `key`) or is
/// damaged in any way.
fn decode_cache(bytes: &[u8], vocab: usize, key: u64) -> Option<Vec<u32>> {
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    if bytes.len() < CACHE_HEADER || &bytes[..8] != CACHE_MAGIC || u32_at(8) != CACHE_VERSION {
        return None;
    }
    let width = u32_at(12) as usize;
    if width != token_width(vocab) || u64_at(16) != vocab as u64 || u64_at(24) != key {
        return None;
    }
    let count = usize::try_from(u64_at(32)).ok()?;
    let payload = &bytes[CACHE_HEADER..];
    if payload.len() != count.checked_mul(width)? || xxh3(payload) != u64_at(40) {
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

/// Removes caches of the same corpus file and tag with another content hash (the text
/// changed), so stale caches do not pile up.
pub(super) fn remove_stale_caches(dir: &Path, source: &Path, tag: &str, suffix: &str, keep: &str) {
    let Some(file) = source.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!("{file}.{tag}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(middle) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(suffix))
        else {
            continue;
        };
        if name != keep && middle.len() == 16 && middle.bytes().all(|b| b.is_ascii_hexdigit()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The tokens of `source` under cache name tag `tag`: read from the first valid cache in
/// `dirs`, or made by `tokenize` and written to the first directory that takes them (stale
/// caches of the same tag there removed). `key` is what the cache must have been written for.
pub(super) fn cached_tokens(
    source: &Path,
    tag: &str,
    hash_hex: &str,
    key: u64,
    vocab: usize,
    dirs: &[PathBuf],
    tokenize: impl FnOnce() -> Result<Vec<u32>, ExecError>,
) -> Result<(Vec<u32>, CacheOutcome), ExecError> {
    let name = cache_file_name(source, tag, hash_hex, ".tokens");
    for dir in dirs {
        let path = dir.join(&name);
        if let Ok(data) = fs::read(&path)
            && let Some(tokens) = decode_cache(&data, vocab, key)
        {
            return Ok((tokens, CacheOutcome::Hit(path)));
        }
    }
    let tokens = tokenize()?;
    let data = encode_cache(&tokens, vocab, key);
    for dir in dirs {
        let path = dir.join(&name);
        if fs::create_dir_all(dir).is_ok() && write_atomic(&path, &data).is_ok() {
            remove_stale_caches(dir, source, tag, ".tokens", &name);
            return Ok((tokens, CacheOutcome::Written(path)));
        }
    }
    Ok((tokens, CacheOutcome::Uncached))
}

/// The bytes of the corpus file a text source names.
fn read_corpus(spec: &DataSpec, source: &Path) -> Result<Vec<u8>, ExecError> {
    fs::read(source).map_err(|e| {
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
    })
}

/// What `load_corpus` does for text: reads the text at `spec.resolved_path`, tokenizes it once
/// and caches the tokens next to the corpus as `<file>.<tag>.<hash>.tokens` (u16
/// little-endian when the vocabulary fits, else u32; a 48-byte header with the key, count and
/// a payload checksum). A stale or corrupt cache is rebuilt; an unwritable directory falls back
/// to `~/.cache/progc/tokens/`, then to no cache. Then the validation part is held out (see
/// the module invariants). `progress` shows the training of a `bpe(N)`.
///
/// The cache directories are tried in order; the outcomes say what happened to each cache the
/// load used (the tokens; for `bpe(N)` the tokenizer, then the training and validation tokens).
pub fn load_corpus_with_cache(
    spec: &DataSpec,
    cache_dirs: &[PathBuf],
    progress: bool,
) -> Result<(Corpus, Vec<CacheOutcome>), ExecError> {
    let source = PathBuf::from(&spec.resolved_path);
    let bytes = read_corpus(spec, &source)?;
    let hash = xxh3(&bytes);
    let hash_hex = format!("{hash:016x}");
    if let Tokenizer::Bpe(size) = spec.tokenizer {
        return bpe::load_corpus(spec, size, source, &bytes, &hash_hex, cache_dirs, progress);
    }
    let tokenizer = TextTokenizer::of(&spec.tokenizer)?;
    let vocab = spec.tokenizer.vocab();
    let tag = spec.tokenizer.tag();
    let (tokens, outcome) =
        cached_tokens(&source, &tag, &hash_hex, hash, vocab, cache_dirs, || {
            tokenizer.encode_bytes(&bytes, &source)
        })?;
    let mut corpus = Corpus::from_tokens_in_blocks(
        tokens,
        vocab,
        spec.val_fraction,
        spec.val_blocks,
        source,
        hash_hex,
    )?;
    corpus.tokenizer = tokenizer.hf().cloned();
    Ok((corpus, vec![outcome]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::{BatchSpec, DataFormat};
    use crate::testing::scratch;

    fn spec(path: &Path, tokenizer: Tokenizer, val: f64) -> DataSpec {
        DataSpec {
            name: "t".into(),
            path: path.display().to_string(),
            resolved_path: path.display().to_string(),
            tokenizer,
            val_fraction: val,
            val_blocks: 1,
            format: DataFormat::Text,
            shards: vec![],
            val_shards: vec![],
        }
    }

    fn toy_corpus(n: u32, val: f64) -> Corpus {
        Corpus::from_tokens((0..n).collect(), n as usize, val, "toy".into(), "0".into()).unwrap()
    }

    #[test]
    fn cache_miss_then_hit_then_corrupt_rebuild() {
        let tmp = scratch("cache");
        let dir = tmp.path();
        let file = dir.join("tiny.txt");
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        fs::write(&file, &text).unwrap();
        let s = spec(&file, Tokenizer::Gpt2, 0.25);
        let dirs = vec![dir.to_path_buf()];

        let (c1, o1) = load_corpus_with_cache(&s, &dirs, false).unwrap();
        let [CacheOutcome::Written(cache)] = o1.as_slice() else {
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
            fs::read(cache).unwrap().len(),
            CACHE_HEADER + 2 * (c1.train.len() + c1.val.len())
        );

        let cache = cache.clone();
        let (c2, o2) = load_corpus_with_cache(&s, &dirs, false).unwrap();
        assert_eq!(o2, [CacheOutcome::Hit(cache.clone())]);
        assert_eq!(
            (c1.train.to_vec(), c1.val.to_vec(), &c1.content_hash),
            (c2.train.to_vec(), c2.val.to_vec(), &c2.content_hash)
        );

        // Flip one payload byte: the checksum catches it and the cache is rebuilt.
        let mut bytes = fs::read(&cache).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5a;
        fs::write(&cache, &bytes).unwrap();
        let (c3, o3) = load_corpus_with_cache(&s, &dirs, false).unwrap();
        assert_eq!(o3, [CacheOutcome::Written(cache.clone())]);
        assert_eq!(c3.train.to_vec(), c1.train.to_vec());
        // Truncated header: also rebuilt.
        fs::write(&cache, b"PROGC").unwrap();
        let (_, o4) = load_corpus_with_cache(&s, &dirs, false).unwrap();
        assert_eq!(o4, [CacheOutcome::Written(cache.clone())]);

        // Changed text: a new cache name, the stale one is removed.
        fs::write(&file, format!("{text} And more.")).unwrap();
        let (c5, o5) = load_corpus_with_cache(&s, &dirs, false).unwrap();
        let [CacheOutcome::Written(cache5)] = o5.as_slice() else {
            panic!("{o5:?}")
        };
        assert_ne!(*cache5, cache);
        assert!(!cache.exists());
        assert_ne!(c5.content_hash, c1.content_hash);
    }

    #[test]
    fn unusable_cache_dir_falls_back_to_the_next_then_to_none() {
        let tmp = scratch("fallback");
        let dir = tmp.path();
        let file = dir.join("t.txt");
        fs::write(&file, vec![b'a'; 100]).unwrap();
        // A regular file where a directory is expected cannot hold a cache, even for root.
        let blocker = dir.join("blocker");
        fs::write(&blocker, b"x").unwrap();
        let s = spec(&file, Tokenizer::Bytes, 0.1);
        let second = dir.join("second");
        let (_, o) = load_corpus_with_cache(&s, &[blocker.clone(), second.clone()], false).unwrap();
        let [CacheOutcome::Written(p)] = o.as_slice() else {
            panic!("{o:?}")
        };
        assert!(p.starts_with(&second));
        let (c, o) = load_corpus_with_cache(&s, &[blocker.join("sub")], false).unwrap();
        assert_eq!(o, [CacheOutcome::Uncached]);
        assert_eq!((c.train.len(), c.val.len()), (90, 10));
    }

    #[test]
    fn clear_errors_for_missing_non_utf8_and_tiny_files() {
        let tmp = scratch("errors");
        let dir = tmp.path();
        let missing = dir.join("nope.txt");
        let e = load_corpus_with_cache(&spec(&missing, Tokenizer::Bytes, 0.1), &[], false)
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
        let e = load_corpus_with_cache(&spec(&latin1, Tokenizer::Gpt2, 0.3), &[], false)
            .err()
            .unwrap();
        assert!(
            e.message.contains("UTF-8") && e.message.contains("byte 3"),
            "{e}"
        );
        // The bytes tokenizer takes anything.
        let (c, _) =
            load_corpus_with_cache(&spec(&latin1, Tokenizer::Bytes, 0.3), &[], false).unwrap();
        assert_eq!(c.train.len() + c.val.len(), 12);

        let tiny = dir.join("tiny.txt");
        fs::write(&tiny, b"abc").unwrap();
        let e = load_corpus_with_cache(&spec(&tiny, Tokenizer::Bytes, 0.1), &[], false)
            .err()
            .unwrap();
        assert!(e.message.contains("too small"), "{e}");

        let e = load_corpus_with_cache(&spec(dir, Tokenizer::Bytes, 0.1), &[], false)
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
    }

    #[test]
    fn spread_split_holds_out_the_tail_of_every_block() {
        let tokens: Vec<u32> = (0..1000).collect();
        let c =
            Corpus::from_tokens_in_blocks(tokens.clone(), 1000, 0.1, 4, "toy".into(), "0".into())
                .unwrap();
        let val = c.val.to_vec();
        let train = c.train.to_vec();
        // Blocks [0, 250), [250, 500), ...: 25 held-out tokens at the end of each.
        let expected_val: Vec<u32> = (0..4u32)
            .flat_map(|b| (b * 250 + 225)..(b * 250 + 250))
            .collect();
        assert_eq!(val, expected_val);
        assert_eq!(train.len() + val.len(), 1000);
        // Every token lands in exactly one region, in stream order within each.
        let mut all: Vec<u32> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, tokens);
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        // One block is the plain tail split.
        let tail =
            Corpus::from_tokens_in_blocks(tokens.clone(), 1000, 0.1, 1, "t".into(), "0".into())
                .unwrap();
        assert_eq!(tail.val.to_vec(), (900..1000).collect::<Vec<u32>>());
        // More blocks than the held-out part can split keeps at least 2 tokens per block.
        let many = Corpus::from_tokens_in_blocks(tokens, 1000, 0.01, 1000, "t".into(), "0".into())
            .unwrap();
        assert_eq!(many.val.len(), 10);
    }

    #[test]
    fn emma_loads_with_the_bytes_tokenizer() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/emma.txt");
        let (c, _) =
            load_corpus_with_cache(&spec(&path, Tokenizer::Bytes, 0.05), &[], false).unwrap();
        let n = c.train.len() + c.val.len();
        assert!((800_000..1_000_000).contains(&n), "{n}");
        assert_eq!(c.vocab, 256);
        assert_eq!(
            TextTokenizer::Bytes
                .decode_lossy(&c.train.to_vec()[..13])
                .unwrap(),
            "[Emma by Jane"
        );
    }
}
