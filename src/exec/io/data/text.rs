//! Text corpora: GPT-2 BPE and byte tokenization, and the on-disk token cache.
//!
//! Invariants:
//! - the token cache is only trusted when its header names the same tokenizer, the same
//!   content hash and the same token count, and the payload checksum matches; otherwise it is
//!   rebuilt. Cache files are written atomically (temp file + rename), so a crash never leaves a
//!   half-written cache under the final name;
//! - GPT-2 encoding in parallel chunks gives exactly the ids of encoding the whole text.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Corpus, DATA_HELP, write_atomic};
use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::hf_tokenizer::gpt2_token_bytes;
use crate::plan::spec::{DataSpec, Tokenizer};

// ---------------------------------------------------------------------------------------------
// Tokenizers

/// The GPT-2 BPE (r50k_base), built once per process. The error is kept so every caller gets a
/// clear message instead of a panic.
pub(super) fn gpt2_bpe() -> Result<&'static tiktoken_rs::CoreBPE, ExecError> {
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

/// Text of `ids` (invalid UTF-8, e.g. half a character, becomes U+FFFD).
pub fn decode_lossy(tokenizer: Tokenizer, ids: &[u32]) -> Result<String, ExecError> {
    let bytes: Vec<u8> = match tokenizer {
        Tokenizer::Bytes => ids.iter().map(|&t| t.min(255) as u8).collect(),
        Tokenizer::Gpt2 => {
            let table = gpt2_token_bytes()?;
            ids.iter()
                .flat_map(|&t| table.get(t as usize).cloned().unwrap_or_default())
                .collect()
        }
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Places where the text can be cut without changing the GPT-2 tokens: between an ASCII letter
/// and a space that starts another ASCII word. The pre-tokenizer's pieces never span such a
/// point (a letter run ends at the space, ` word` starts there) and its pattern has no
/// look-behind, so encoding the parts separately gives the same ids as encoding the whole.
pub(super) fn gpt2_split_points(text: &str, target_chunk: usize) -> Vec<usize> {
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

/// `bytes` as text for the GPT-2 tokenizer; `offset` is where they start in `path` (for the
/// message).
pub(super) fn as_utf8<'a>(
    bytes: &'a [u8],
    path: &Path,
    offset: usize,
) -> Result<&'a str, ExecError> {
    std::str::from_utf8(bytes).map_err(|e| {
        ExecError::new(
            ErrorKind::Data,
            format!(
                "corpus {} is not valid UTF-8 (at byte {}), which the gpt2 tokenizer needs",
                path.display(),
                offset + e.valid_up_to()
            ),
        )
        .with_help(
            "convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or use \
             `tokenizer bytes`, which takes any bytes",
        )
    })
}

/// Tokenizes the raw bytes of a corpus file (`path` only for messages).
fn tokenize_file(tokenizer: Tokenizer, bytes: &[u8], path: &Path) -> Result<Vec<u32>, ExecError> {
    match tokenizer {
        Tokenizer::Bytes => Ok(bytes.iter().map(|&b| u32::from(b)).collect()),
        Tokenizer::Gpt2 => encode_text(Tokenizer::Gpt2, as_utf8(bytes, path, 0)?),
    }
}

// ---------------------------------------------------------------------------------------------
// Hashing (xxh3-64: a cache key and a corruption check, not a cryptographic hash)

fn xxh3(bytes: &[u8]) -> u64 {
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
    out.extend_from_slice(&xxh3(&payload).to_le_bytes());
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

/// What `load_corpus` does for text: reads the text at `spec.resolved_path`, tokenizes it once and caches the tokens next to the
/// corpus as `<file>.<tokenizer>.<hash>.tokens` (u16 little-endian when the vocabulary fits,
/// else u32; a 48-byte header with the content hash, count and a payload checksum). A stale or
/// corrupt cache is rebuilt; an unwritable directory falls back to `~/.cache/progc/tokens/`,
/// then to no cache. The last `val_fraction` of the tokens is the validation region.
///
/// The cache directories are tried in order; the outcome says what happened to the cache.
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
    let hash = xxh3(&bytes);
    let hash_hex = format!("{hash:016x}");
    let vocab = spec.tokenizer.vocab();
    let name = cache_file_name(&source, spec.tokenizer, &hash_hex);

    let mut cached = None;
    for dir in cache_dirs {
        let path = dir.join(&name);
        if let Ok(data) = fs::read(&path)
            && let Some(tokens) = decode_cache(&data, vocab, hash)
        {
            cached = Some((tokens, path));
            break;
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
    let corpus = Corpus::from_tokens_in_blocks(
        tokens,
        vocab,
        spec.val_fraction,
        spec.val_blocks,
        source,
        hash_hex,
    )?;
    Ok((corpus, outcome))
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
        let tmp = scratch("cache");
        let dir = tmp.path();
        let file = dir.join("tiny.txt");
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        fs::write(&file, &text).unwrap();
        let s = spec(&file, Tokenizer::Gpt2, 0.25);
        let dirs = vec![dir.to_path_buf()];

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
            (c1.train.to_vec(), c1.val.to_vec(), &c1.content_hash),
            (c2.train.to_vec(), c2.val.to_vec(), &c2.content_hash)
        );

        // Flip one payload byte: the checksum catches it and the cache is rebuilt.
        let mut bytes = fs::read(&cache).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5a;
        fs::write(&cache, &bytes).unwrap();
        let (c3, o3) = load_corpus_with_cache(&s, &dirs).unwrap();
        assert_eq!(o3, CacheOutcome::Written(cache.clone()));
        assert_eq!(c3.train.to_vec(), c1.train.to_vec());
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
        let (_, o) = load_corpus_with_cache(&s, &[blocker.clone(), second.clone()]).unwrap();
        let CacheOutcome::Written(p) = o else {
            panic!("{o:?}")
        };
        assert!(p.starts_with(&second));
        let (c, o) = load_corpus_with_cache(&s, &[blocker.join("sub")]).unwrap();
        assert_eq!(o, CacheOutcome::Uncached);
        assert_eq!((c.train.len(), c.val.len()), (90, 10));
    }

    #[test]
    fn clear_errors_for_missing_non_utf8_and_tiny_files() {
        let tmp = scratch("errors");
        let dir = tmp.path();
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

        let e = load_corpus_with_cache(&spec(dir, Tokenizer::Bytes, 0.1), &[])
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
        let (c, _) = load_corpus_with_cache(&spec(&path, Tokenizer::Bytes, 0.05), &[]).unwrap();
        let n = c.train.len() + c.val.len();
        assert!((800_000..1_000_000).contains(&n), "{n}");
        assert_eq!(c.vocab, 256);
        assert_eq!(
            decode_tokens(Tokenizer::Bytes, &c.train.to_vec()[..13]).unwrap(),
            "[Emma by Jane"
        );
    }
}
