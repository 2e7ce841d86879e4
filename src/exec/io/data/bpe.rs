//! `bpe(N)`: a byte-level BPE that progc trains on the training part of a text corpus, and the
//! corpus it tokenizes.
//!
//! Invariants:
//! - the tokenizer never sees validation text: the text is split before training, by the rule
//!   of the token split applied to its bytes ([`split_text`]: `val_blocks` equal blocks, the
//!   last `val_fraction` of each held out, every cut moved forward to a character boundary);
//!   the tokenizer is trained on the heads, and heads and tails are tokenized apart (the
//!   training region is the heads' tokens, the validation region the tails');
//! - it is GPT-2's kind of BPE: bytes in GPT-2's printable alphabet, pre-tokenized by GPT-2's
//!   pattern without a prefix space, all 256 bytes in the vocabulary from the start (any text
//!   encodes), `<|endoftext|>` as id 0, and N tokens in all (fewer when the text runs out of
//!   pairs to merge, which is said on stderr);
//! - training is deterministic: the same text and size give the same tokenizer.json, byte for
//!   byte (the `tokenizers` trainer merges the most frequent pair, ties going to the lowest
//!   pair of ids, ids that follow the sorted alphabet, and writes vocabulary and merges in id
//!   order);
//! - it is trained once per (corpus content, size, split): cached beside the token cache as
//!   `<file>.bpe<N>-val<F>-blocks<B>.<hash>.tokenizer.json`, written atomically, while the
//!   corpus file is locked, so that another process loading the same corpus waits and then
//!   reads the cache. Its tokens are cached under the same tag (`.train`, `.val`), keyed by the
//!   text and the tokenizer together.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::text::{CacheOutcome, cache_file_name, cached_tokens, remove_stale_caches, xxh3};
use super::tokenizer::{HfTokenizer, as_utf8, gpt2_split_points};
use super::{Corpus, held_out, write_atomic};
use crate::exec::error::{ErrorKind, ExecError};
use crate::plan::spec::DataSpec;

/// The one special token, id 0.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Training text fed to the trainer per piece (pieces are pre-tokenized in parallel).
const PIECE_BYTES: usize = 1 << 20;
/// Below this much training text, training takes about a second: no progress bar.
const PROGRESS_MIN_BYTES: usize = 8 << 20;

/// Where a text's training and validation parts are: byte ranges, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextSplit {
    pub train: Vec<Range<usize>>,
    pub val: Vec<Range<usize>>,
}

/// `at`, moved forward to a character boundary of `text`.
fn boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// The split of `Corpus::from_tokens_in_blocks`, on bytes: `blocks` equal blocks (no more than
/// the held-out part can give 2 bytes each), the last `val_fraction` of each held out; block
/// edges and cuts moved forward to character boundaries. Errors when either part would hold
/// fewer than 2 bytes.
pub fn split_text(
    text: &str,
    val_fraction: f64,
    blocks: u64,
    source: &Path,
) -> Result<TextSplit, ExecError> {
    let n = text.len();
    let n_val = held_out(n, "bytes", val_fraction, source)?;
    let blocks = (blocks.max(1) as usize).min(n_val / 2).max(1);
    let mut split = TextSplit {
        train: Vec::with_capacity(blocks),
        val: Vec::with_capacity(blocks),
    };
    for b in 0..blocks {
        let (start, end) = (b * n / blocks, (b + 1) * n / blocks);
        let cut = end - ((end - start) as f64 * val_fraction).round() as usize;
        let (start, cut, end) = (
            boundary(text, start),
            boundary(text, cut),
            boundary(text, end),
        );
        split.train.push(start..cut);
        split.val.push(cut..end);
    }
    Ok(split)
}

/// Trains a byte-level BPE of `size` tokens on `texts` (see the module invariants), showing
/// the `tokenizers` crate's progress bars on stderr when `progress`.
pub fn train_bpe(texts: &[&str], size: usize, progress: bool) -> Result<HfTokenizer, ExecError> {
    let failed = |e: tokenizers::Error| {
        ExecError::new(
            ErrorKind::Internal,
            format!("training a bpe({size}) tokenizer failed: {e}"),
        )
    };
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(size)
        .show_progress(progress)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(byte_level))
        .with_decoder(Some(byte_level));
    // Cut where GPT-2's pattern, the pre-tokenizer's, cannot join: the same words are counted.
    let pieces: Vec<&str> = texts
        .iter()
        .flat_map(|t| {
            let mut bounds = vec![0];
            bounds.extend(gpt2_split_points(t, PIECE_BYTES));
            bounds.push(t.len());
            bounds
                .windows(2)
                .map(|w| &t[w[0]..w[1]])
                .collect::<Vec<&str>>()
        })
        .collect();
    tokenizer
        .train(&mut trainer, pieces.into_iter())
        .map_err(failed)?;
    let json = tokenizer.to_string(true).map_err(failed)?;
    let t = HfTokenizer::from_json(json.into_bytes(), &format!("bpe({size})"))?;
    if t.vocab() < size {
        eprintln!(
            "note: the training text has pairs for only {} of the bpe({size}) tokens; ids {} to \
             {} are never used",
            t.vocab(),
            t.vocab(),
            size - 1
        );
    }
    Ok(t)
}

/// Whether `t` can be the tokenizer of `bpe(size)`.
fn fits(t: &HfTokenizer, size: usize) -> bool {
    t.vocab() <= size && t.end_of_text() == Some(0) && t.token(0).as_deref() == Some(END_OF_TEXT)
}

/// `bpe<N>-val<F>-blocks<B>`: what the tokenizer and its tokens depend on besides the text.
fn tag(size: usize, spec: &DataSpec) -> String {
    format!(
        "bpe{size}-val{}-blocks{}",
        spec.val_fraction, spec.val_blocks
    )
}

/// The tokenizer of `source` under `tag`: the first valid cache in `dirs`, or `train`ed and
/// written to the first directory that takes it.
fn cached_tokenizer(
    source: &Path,
    tag: &str,
    hash_hex: &str,
    size: usize,
    dirs: &[PathBuf],
    train: impl FnOnce() -> Result<HfTokenizer, ExecError>,
) -> Result<(Arc<HfTokenizer>, CacheOutcome), ExecError> {
    let name = cache_file_name(source, tag, hash_hex, ".tokenizer.json");
    for dir in dirs {
        let path = dir.join(&name);
        if let Ok(json) = fs::read(&path)
            && let Ok(t) = HfTokenizer::from_json(json, &path.display().to_string())
            && fits(&t, size)
        {
            return Ok((Arc::new(t), CacheOutcome::Hit(path)));
        }
    }
    let t = Arc::new(train()?);
    for dir in dirs {
        let path = dir.join(&name);
        if fs::create_dir_all(dir).is_ok() && write_atomic(&path, t.json()).is_ok() {
            remove_stale_caches(dir, source, tag, ".tokenizer.json", &name);
            return Ok((t, CacheOutcome::Written(path)));
        }
    }
    Ok((t, CacheOutcome::Uncached))
}

/// The text corpus of a `bpe(size)` data source (`bytes`: the file at `source`, whose content
/// hash is `hash_hex`); the outcomes of the tokenizer's cache, then of the training and
/// validation tokens'.
pub(super) fn load_corpus(
    spec: &DataSpec,
    size: usize,
    source: PathBuf,
    bytes: &[u8],
    hash_hex: &str,
    dirs: &[PathBuf],
    progress: bool,
) -> Result<(Corpus, Vec<CacheOutcome>), ExecError> {
    let text = as_utf8(bytes, &source, 0, &format!("bpe({size})"))?;
    let split = split_text(text, spec.val_fraction, spec.val_blocks, &source)?;
    let tag = tag(size, spec);
    // Advisory, and only while this load lasts: a second process waits here, then reads the
    // caches. Where the file system cannot lock, each process trains (the same tokenizer).
    let lock = fs::File::open(&source).ok().filter(|f| f.lock().is_ok());
    let (tokenizer, trained) = cached_tokenizer(&source, &tag, hash_hex, size, dirs, || {
        let heads: Vec<&str> = split.train.iter().map(|r| &text[r.clone()]).collect();
        let n: usize = heads.iter().map(|h| h.len()).sum();
        let started = Instant::now();
        let t = train_bpe(&heads, size, progress && n >= PROGRESS_MIN_BYTES)?;
        if progress {
            eprintln!(
                "data: trained bpe({size}) on the {:.1} MB of training text of {} in {:.1} s",
                n as f64 / 1e6,
                source.display(),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(t)
    })?;
    let mut keyed = hash_hex.as_bytes().to_vec();
    keyed.extend_from_slice(tokenizer.json());
    let key = xxh3(&keyed);
    let encode = |parts: &[Range<usize>]| -> Result<Vec<u32>, ExecError> {
        let encoded: Vec<Vec<u32>> = parts
            .par_iter()
            .map(|r| tokenizer.encode(&text[r.clone()]))
            .collect::<Result<_, _>>()?;
        Ok(encoded.concat())
    };
    let (train, train_cache) = cached_tokens(
        &source,
        &format!("{tag}.train"),
        hash_hex,
        key,
        size,
        dirs,
        || encode(&split.train),
    )?;
    let (val, val_cache) = cached_tokens(
        &source,
        &format!("{tag}.val"),
        hash_hex,
        key,
        size,
        dirs,
        || encode(&split.val),
    )?;
    drop(lock);
    let mut corpus = Corpus::from_regions(train, val, size, source, hash_hex.to_string())?;
    corpus.tokenizer = Some(tokenizer);
    Ok((corpus, vec![trained, train_cache, val_cache]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::io::data::load_corpus_with_cache;
    use crate::plan::spec::{DataFormat, Tokenizer};
    use crate::testing::scratch;

    fn emma(bytes: usize) -> String {
        let text = fs::read_to_string("data/emma.txt").unwrap();
        text[..boundary(&text, bytes)].to_string()
    }

    fn spec(path: &Path, size: usize, val: f64, blocks: u64) -> DataSpec {
        DataSpec {
            name: "t".into(),
            path: path.display().to_string(),
            resolved_path: path.display().to_string(),
            tokenizer: Tokenizer::Bpe(size),
            val_fraction: val,
            val_blocks: blocks,
            format: DataFormat::Text,
            shards: vec![],
            val_shards: vec![],
        }
    }

    #[test]
    fn training_is_deterministic_byte_for_byte() {
        let text = emma(200_000);
        let a = train_bpe(&[&text], 400, false).unwrap();
        let b = train_bpe(&[&text], 400, false).unwrap();
        assert_eq!(a.json(), b.json());
        assert_eq!(a.vocab(), 400);
        assert!(fits(&a, 400));
        // It encodes any text, and decodes it back.
        let s = "Emma — naïve café, 日本語 \u{1}\t<|endoftext|>";
        assert_eq!(a.decode(&a.encode(s).unwrap()).unwrap(), s);
    }

    #[test]
    fn the_split_cuts_blocks_at_character_boundaries_and_tiles_the_text() {
        let text = "aé".repeat(500); // 1500 bytes, a 2-byte character every 3 bytes
        let s = split_text(&text, 0.1, 4, Path::new("t")).unwrap();
        assert_eq!((s.train.len(), s.val.len()), (4, 4));
        let mut at = 0;
        for (t, v) in s.train.iter().zip(&s.val) {
            assert_eq!((t.start, t.end), (at, v.start));
            assert!(text.is_char_boundary(t.start) && text.is_char_boundary(v.start));
            let share = v.len() as f64 / (v.end - t.start) as f64;
            assert!((share - 0.1).abs() < 0.01, "{share}");
            at = v.end;
        }
        assert_eq!(at, text.len());
        // One block is the tail, as for tokens.
        let tail = split_text(&text, 0.1, 1, Path::new("t")).unwrap();
        assert_eq!((tail.val.len(), tail.val[0].clone()), (1, 1350..1500));
        let e = split_text("abc", 0.1, 1, Path::new("t")).unwrap_err();
        assert!(e.message.contains("3 bytes"), "{e}");
    }

    /// A word that only the validation text has, and has many times over, must not become a
    /// token; in the training text, it does (so the test can fail).
    #[test]
    fn the_tokenizer_never_sees_the_validation_text() {
        let tmp = scratch("bpe-val");
        let dir = tmp.path();
        let word = " Zqxjvwk";
        let mut text = emma(150_000);
        text.push_str(&word.repeat(2000));
        let path = dir.join("corpus.txt");
        fs::write(&path, &text).unwrap();
        let (c, _) = load_corpus_with_cache(&spec(&path, 512, 0.1, 1), &[], false).unwrap();
        let t = c.tokenizer.unwrap();
        assert!(t.encode(word).unwrap().len() > 2, "{:?}", t.encode(word));
        let seen = train_bpe(&[&text], 512, false).unwrap();
        assert_eq!(seen.encode(word).unwrap().len(), 1);
        // The regions are the heads' and the tails' tokens.
        let tail = &text[text.len() - (text.len() as f64 * 0.1).round() as usize..];
        assert_eq!(c.val.to_vec(), t.encode(tail).unwrap());
    }

    /// Two loads of the same corpus at once (two threads, each with its own lock on the
    /// corpus, as two processes would have): one trains, the other waits and reads the cache.
    #[test]
    fn concurrent_loads_train_once() {
        let tmp = scratch("bpe-concurrent");
        let dir = tmp.path();
        let path = dir.join("emma.txt");
        fs::write(&path, emma(300_000)).unwrap();
        let s = spec(&path, 400, 0.1, 1);
        let dirs = vec![dir.to_path_buf()];
        let outcomes: Vec<Vec<CacheOutcome>> = std::thread::scope(|scope| {
            let loads: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| load_corpus_with_cache(&s, &dirs, false).unwrap().1))
                .collect();
            loads.into_iter().map(|l| l.join().unwrap()).collect()
        });
        let trained = outcomes
            .iter()
            .filter(|o| matches!(o[0], CacheOutcome::Written(_)))
            .count();
        let read = outcomes
            .iter()
            .filter(|o| o.iter().all(|c| matches!(c, CacheOutcome::Hit(_))))
            .count();
        assert_eq!((trained, read), (1, 1), "{outcomes:?}");
    }

    #[test]
    fn tokenizer_and_tokens_are_cached_and_reused() {
        let tmp = scratch("bpe-cache");
        let dir = tmp.path();
        let path = dir.join("emma.txt");
        fs::write(&path, emma(100_000)).unwrap();
        let s = spec(&path, 300, 0.1, 5);
        let dirs = vec![dir.to_path_buf()];
        let (c1, o1) = load_corpus_with_cache(&s, &dirs, false).unwrap();
        assert!(
            o1.iter().all(|o| matches!(o, CacheOutcome::Written(_))),
            "{o1:?}"
        );
        let CacheOutcome::Written(tok_cache) = &o1[0] else {
            unreachable!()
        };
        let name = tok_cache.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("emma.txt.bpe300-val0.1-blocks5.")
                && name.ends_with(".tokenizer.json"),
            "{name}"
        );
        let (c2, o2) = load_corpus_with_cache(&s, &dirs, false).unwrap();
        assert!(
            o2.iter().all(|o| matches!(o, CacheOutcome::Hit(_))),
            "{o2:?}"
        );
        assert_eq!(c1.train.to_vec(), c2.train.to_vec());
        assert_eq!(c1.val.to_vec(), c2.val.to_vec());
        let (t1, t2) = (c1.tokenizer.unwrap(), c2.tokenizer.unwrap());
        assert_eq!(t1.json(), t2.json());
        assert_eq!(c1.vocab, 300);
        // A damaged tokenizer cache is trained again, to the same tokenizer.
        fs::write(tok_cache, b"{").unwrap();
        let (c3, o3) = load_corpus_with_cache(&s, &dirs, false).unwrap();
        assert!(matches!(o3[0], CacheOutcome::Written(_)), "{o3:?}");
        assert_eq!(c3.tokenizer.unwrap().json(), t1.json());
        assert_eq!(c3.train.to_vec(), c1.train.to_vec());
    }
}
