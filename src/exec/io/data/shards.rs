//! Pre-tokenized shards, memory-mapped: nanoGPT `.bin` files (headerless little-endian `u16`
//! ids) and llm.c shards (a header of 256 little-endian `i32`: magic, version, token count;
//! then `u16` ids for magic 20240520 version 1, or `u32` ids for magic 20240801 version 7).
//!
//! Invariants:
//! - a `ShardSet` exists only for files that passed every check when opened: non-empty, a
//!   whole number of tokens, a valid header whose count matches the file size, and every id
//!   below the tokenizer's vocabulary; each failure names the file and, where one applies, the
//!   byte offset;
//! - the set is one stream: each shard's tokens follow the previous shard's, in the order of
//!   the recipe's list, with each glob's matches sorted by path;
//! - tokens are read through the map and never copied whole, and the pages a window touched
//!   are released right after it is copied (`MADV_DONTNEED`). The vocabulary scan uses plain
//!   positioned reads into a small buffer, so opening an 18 GB shard does not leave it
//!   resident in this process (mapped pages that were read count as resident memory);
//! - the files must not change while a run reads them (the usual contract of a memory map).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Advice, Mmap, UncheckedAdvice};
use rayon::prelude::*;

use super::tokenizer::HfTokenizer;
use super::{Corpus, Region, held_out};
use crate::exec::error::{ErrorKind, ExecError};
use crate::plan::spec::{DataFormat, DataSpec, Tokenizer};

/// Bytes of an llm.c header: 256 `i32`.
pub const LLMC_HEADER_BYTES: usize = 256 * 4;
/// llm.c magic for `u16` tokens (version 1).
pub const LLMC_MAGIC_U16: i32 = 20240520;
/// llm.c magic for `u32` tokens (version 7).
pub const LLMC_MAGIC_U32: i32 = 20240801;
/// Bytes per read of the vocabulary scan.
const SCAN_CHUNK: usize = 4 << 20;

struct Shard {
    path: PathBuf,
    map: Mmap,
    /// Header bytes before the first token.
    offset: usize,
    /// Bytes per token: 2 or 4.
    width: usize,
    /// Tokens.
    len: usize,
}

/// Shards that form one token stream.
pub struct ShardSet {
    shards: Vec<Shard>,
    /// Stream index of each shard's first token.
    starts: Vec<usize>,
    total: usize,
}

fn data_error(message: String, help: &str) -> ExecError {
    ExecError::new(ErrorKind::Data, message).with_help(help)
}

const WRITE_HELP: &str = "write shards with `progc tokenize TEXT... --out DIR`, or check the file";

impl ShardSet {
    /// Opens and checks every file that `patterns` name (paths or globs), in order.
    pub fn open(
        patterns: &[String],
        format: DataFormat,
        vocab: usize,
        tokenizer: &str,
    ) -> Result<ShardSet, ExecError> {
        let mut paths = Vec::new();
        for p in patterns {
            paths.extend(expand(p)?);
        }
        let shards: Vec<Shard> = paths
            .par_iter()
            .map(|p| open_shard(p, format, vocab, tokenizer))
            .collect::<Result<_, _>>()?;
        let mut starts = Vec::with_capacity(shards.len());
        let mut total = 0usize;
        for s in &shards {
            starts.push(total);
            total += s.len;
        }
        Ok(ShardSet {
            shards,
            starts,
            total,
        })
    }

    /// Tokens in the whole stream.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The shard files, in stream order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|s| s.path.as_path())
    }

    /// Appends tokens `[at, at + n)` of the stream, across shard boundaries.
    pub(super) fn copy(&self, mut at: usize, n: usize, out: &mut Vec<u32>) {
        let mut k = self.starts.partition_point(|&s| s <= at).saturating_sub(1);
        let mut left = n;
        while left > 0 && k < self.shards.len() {
            let sh = &self.shards[k];
            let i = at - self.starts[k];
            let take = left.min(sh.len - i);
            let (from, to) = (sh.offset + i * sh.width, sh.offset + (i + take) * sh.width);
            let bytes = &sh.map[from..to];
            if sh.width == 2 {
                out.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]))),
                );
            } else {
                out.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            // Give the pages back: touched pages of a map count as this process's memory, and
            // a fault maps more than the window (measured: 250 MB resident after 100 steps of
            // batch 2 over a 2.2 GB shard).
            // SAFETY: a read-only file map; DONTNEED only unmaps these pages from this process,
            // and a later read faults the same bytes back in from the file. Nothing borrows
            // them past this point: they were copied into `out` above.
            let _ = unsafe {
                sh.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, from, to - from)
            };
            left -= take;
            at += take;
            k += 1;
        }
    }
}

/// The files a pattern names: a glob's matches sorted by path (none is an error), or the path
/// itself.
fn expand(pattern: &str) -> Result<Vec<PathBuf>, ExecError> {
    if !pattern.contains(['*', '?', '[']) {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let matches = glob::glob(pattern).map_err(|e| {
        data_error(
            format!("`{pattern}` is not a valid glob pattern: {e}"),
            "use `*` for any run of characters, e.g. \"data/fineweb_train_*.bin\"",
        )
    })?;
    let mut paths: Vec<PathBuf> = matches
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    if paths.is_empty() {
        return Err(data_error(
            format!("`{pattern}` matches no file"),
            "paths resolve against the recipe's directory; check the pattern, or write shards \
             with `progc tokenize TEXT... --out DIR`",
        ));
    }
    paths.sort();
    Ok(paths)
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Opens one shard: layout checks, then the vocabulary scan, then the map.
fn open_shard(
    path: &Path,
    format: DataFormat,
    vocab: usize,
    tokenizer: &str,
) -> Result<Shard, ExecError> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            data_error(
                format!("shard {shown} not found"),
                "paths resolve against the recipe's directory; write shards with \
                 `progc tokenize TEXT... --out DIR`",
            )
        } else {
            data_error(
                format!("cannot read shard {shown}: {e}"),
                "check the path and its permissions",
            )
        }
    })?;
    let io = |e: std::io::Error| {
        data_error(
            format!("cannot read shard {shown}: {e}"),
            "check the path and its permissions",
        )
    };
    let bytes = usize::try_from(file.metadata().map_err(io)?.len()).unwrap_or(usize::MAX);
    if bytes == 0 {
        return Err(data_error(format!("shard {shown} is empty"), WRITE_HELP));
    }
    let mut head = vec![0u8; bytes.min(LLMC_HEADER_BYTES)];
    file.read_exact_at(&mut head, 0).map_err(io)?;
    let llmc_magic =
        head.len() >= 8 && [LLMC_MAGIC_U16, LLMC_MAGIC_U32].contains(&i32_at(&head, 0));
    let (offset, width) = match format {
        DataFormat::Llmc => llmc_layout(&head, bytes, path)?,
        _ => {
            if llmc_magic && bytes >= LLMC_HEADER_BYTES {
                return Err(data_error(
                    format!(
                        "shard {shown} starts with an llm.c header (magic {} at byte offset 0) \
                         but the data source says `format: nanogpt`",
                        i32_at(&head, 0)
                    ),
                    "write `format: llmc` in the `tokens(...)` declaration",
                ));
            }
            if bytes % 2 != 0 {
                return Err(data_error(
                    format!(
                        "shard {shown} has an odd byte length ({bytes} bytes): its last token is \
                         cut at byte offset {}",
                        bytes - 1
                    ),
                    "a nanoGPT shard is a whole number of u16 tokens; the file is truncated or \
                     not a token file",
                ));
            }
            (0, 2)
        }
    };
    let len = (bytes - offset) / width;
    if let Some((at, id)) = scan_vocab(&file, offset, len, width, vocab).map_err(io)? {
        return Err(data_error(
            format!(
                "shard {shown} holds token id {id} at byte offset {at}, but the `{tokenizer}` \
                 tokenizer has {vocab} ids"
            ),
            "the shard was written with another tokenizer: set `tokenizer:` to the one that \
             wrote it, or re-tokenize with `progc tokenize`",
        ));
    }
    // SAFETY: the map is read-only and progc never writes to shards; a file changed by another
    // process while a run reads it is outside the contract written at the top of this module.
    let map = unsafe { Mmap::map(&file) }.map_err(io)?;
    // Batches read short windows at random places: read-ahead would only page in waste.
    let _ = map.advise(Advice::Random);
    Ok(Shard {
        path: path.to_path_buf(),
        map,
        offset,
        width,
        len,
    })
}

/// `(header bytes, bytes per token)` of an llm.c shard, after checking its header.
fn llmc_layout(head: &[u8], bytes: usize, path: &Path) -> Result<(usize, usize), ExecError> {
    let shown = path.display();
    if bytes < LLMC_HEADER_BYTES {
        return Err(data_error(
            format!(
                "shard {shown} is {bytes} bytes, shorter than the {LLMC_HEADER_BYTES}-byte llm.c header"
            ),
            "the file is truncated; or, for a headerless nanoGPT .bin, write `format: nanogpt`",
        ));
    }
    let (magic, version, count) = (i32_at(head, 0), i32_at(head, 4), i32_at(head, 8));
    let width = match (magic, version) {
        (LLMC_MAGIC_U16, 1) => 2,
        (LLMC_MAGIC_U32, 7) => 4,
        (LLMC_MAGIC_U16 | LLMC_MAGIC_U32, v) => {
            return Err(data_error(
                format!(
                    "shard {shown} has llm.c version {v} at byte offset 4, but magic {magic} \
                     goes with version {}",
                    if magic == LLMC_MAGIC_U16 { 1 } else { 7 }
                ),
                "the header is damaged, or the shard comes from an llm.c version progc does not \
                 read (magic 20240520 with version 1, or 20240801 with version 7)",
            ));
        }
        _ => {
            return Err(data_error(
                format!(
                    "shard {shown} has magic {magic} at byte offset 0, not an llm.c magic \
                     ({LLMC_MAGIC_U16} for u16 tokens, {LLMC_MAGIC_U32} for u32)"
                ),
                "for a headerless nanoGPT .bin, write `format: nanogpt`",
            ));
        }
    };
    let payload = bytes - LLMC_HEADER_BYTES;
    if count < 0 || (count as usize).checked_mul(width) != Some(payload) {
        return Err(data_error(
            format!(
                "shard {shown} says it holds {count} tokens (header, byte offset 8), but its \
                 {payload} bytes after the header hold {} tokens{}",
                payload / width,
                if !payload.is_multiple_of(width) {
                    " and a cut one"
                } else {
                    ""
                }
            ),
            "the file is truncated or its header is damaged: write it again",
        ));
    }
    if count == 0 {
        return Err(data_error(
            format!("shard {shown} holds no tokens"),
            WRITE_HELP,
        ));
    }
    Ok((LLMC_HEADER_BYTES, width))
}

/// The first token id `>= vocab` as `(byte offset, id)`, reading the file in parallel chunks.
fn scan_vocab(
    file: &File,
    offset: usize,
    len: usize,
    width: usize,
    vocab: usize,
) -> std::io::Result<Option<(usize, u32)>> {
    let per_chunk = SCAN_CHUNK / width;
    let chunks = len.div_ceil(per_chunk);
    let found = (0..chunks)
        .into_par_iter()
        .map(|k| -> std::io::Result<Option<(usize, u32)>> {
            let first = k * per_chunk;
            let n = per_chunk.min(len - first);
            let mut buf = vec![0u8; n * width];
            let at = offset + first * width;
            file.read_exact_at(&mut buf, at as u64)?;
            let bad = if width == 2 {
                buf.chunks_exact(2)
                    .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                    .position(|t| t as usize >= vocab)
            } else {
                buf.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .position(|t| t as usize >= vocab)
            };
            Ok(bad.map(|i| {
                let c = &buf[i * width..(i + 1) * width];
                let id = if width == 2 {
                    u32::from(u16::from_le_bytes([c[0], c[1]]))
                } else {
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                };
                (at + i * width, id)
            }))
        })
        .find_first(|r| !matches!(r, Ok(None)));
    found.unwrap_or(Ok(None))
}

/// The corpus of a `tokens(...)` data source (with its tokenizer.json, when it names one).
pub(super) fn load(spec: &DataSpec) -> Result<Corpus, ExecError> {
    let vocab = spec.tokenizer.vocab();
    let tok = &spec.tokenizer.to_string();
    let tokenizer = match &spec.tokenizer {
        Tokenizer::File(f) => Some(Arc::new(HfTokenizer::for_recipe(f)?)),
        _ => None,
    };
    let train = Arc::new(ShardSet::open(&spec.shards, spec.format, vocab, tok)?);
    let source = train
        .paths()
        .next()
        .map_or_else(|| PathBuf::from(&spec.resolved_path), Path::to_path_buf);
    let (train_region, val_region, val_set) = if spec.val_shards.is_empty() {
        let n = train.len();
        let n_val = held_out(n, "tokens", spec.val_fraction, &source)?;
        (
            Region::of_shards(train.clone(), 0, n - n_val),
            Region::of_shards(train.clone(), n - n_val, n_val),
            None,
        )
    } else {
        let val = Arc::new(ShardSet::open(&spec.val_shards, spec.format, vocab, tok)?);
        (
            Region::of_shards(train.clone(), 0, train.len()),
            Region::of_shards(val.clone(), 0, val.len()),
            Some(val),
        )
    };
    // Identity of the stream without reading it: every file's path and size, in order.
    let mut id = String::new();
    for s in train
        .shards
        .iter()
        .chain(val_set.iter().flat_map(|v| v.shards.iter()))
    {
        id.push_str(&format!("{}:{};", s.path.display(), s.map.len()));
    }
    Ok(Corpus {
        train: train_region,
        val: val_region,
        vocab,
        source,
        content_hash: super::content_hash(id.as_bytes()),
        tokenizer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::BatchSpec;
    use crate::testing::scratch;

    fn nanogpt(path: &Path, tokens: &[u16]) {
        let b: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        std::fs::write(path, b).unwrap();
    }

    fn llmc(path: &Path, magic: i32, version: i32, count: i32, payload: &[u8]) {
        let mut h = vec![0i32; 256];
        (h[0], h[1], h[2]) = (magic, version, count);
        let mut b: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
        b.extend_from_slice(payload);
        std::fs::write(path, b).unwrap();
    }

    fn spec(format: DataFormat, shards: &[&Path], val: &[&Path]) -> DataSpec {
        let s = |ps: &[&Path]| ps.iter().map(|p| p.display().to_string()).collect();
        DataSpec {
            name: "t".into(),
            path: shards[0].display().to_string(),
            resolved_path: shards[0].display().to_string(),
            tokenizer: Tokenizer::Bytes,
            val_fraction: 0.25,
            val_blocks: 1,
            format,
            shards: s(shards),
            val_shards: s(val),
        }
    }

    fn err(spec: &DataSpec) -> ExecError {
        load(spec).expect_err("an error")
    }

    #[test]
    fn nanogpt_and_llmc_shards_form_one_stream_across_files() {
        let tmp = scratch("shards");
        let dir = tmp.path();
        let (a, b) = (dir.join("s_000.bin"), dir.join("s_001.bin"));
        nanogpt(&a, &(0..60).collect::<Vec<u16>>());
        nanogpt(&b, &(60..100).collect::<Vec<u16>>());
        let glob = dir.join("s_*.bin");
        let c = load(&spec(DataFormat::Nanogpt, &[&glob], &[])).unwrap();
        // The last 25% of the 100-token stream is the validation region.
        assert_eq!(c.train.to_vec(), (0..75).collect::<Vec<u32>>());
        assert_eq!(c.val.to_vec(), (75..100).collect::<Vec<u32>>());
        // A window across the shard boundary, and one wrapping around the region's end.
        let mut w = Vec::new();
        c.train.push_cyclic(57, 6, &mut w);
        assert_eq!(w, [57, 58, 59, 60, 61, 62]);
        w.clear();
        c.train.push_cyclic(73, 4, &mut w);
        assert_eq!(w, [73, 74, 0, 1]);

        // llm.c u16 and u32 shards with their own validation file.
        let (l16, l32) = (dir.join("l16.bin"), dir.join("l32.bin"));
        let p16: Vec<u8> = (0..50u16).flat_map(|t| t.to_le_bytes()).collect();
        llmc(&l16, LLMC_MAGIC_U16, 1, 50, &p16);
        let p32: Vec<u8> = (200..230u32).flat_map(|t| t.to_le_bytes()).collect();
        llmc(&l32, LLMC_MAGIC_U32, 7, 30, &p32);
        let c = load(&spec(DataFormat::Llmc, &[&l16], &[&l32])).unwrap();
        assert_eq!(c.train.to_vec(), (0..50).collect::<Vec<u32>>());
        assert_eq!(c.val.to_vec(), (200..230).collect::<Vec<u32>>());
        assert!(
            c.check_fits(BatchSpec {
                sequences: 2,
                context: 29
            })
            .is_ok()
        );
        // Data shorter than one window.
        let e = c
            .check_fits(BatchSpec {
                sequences: 2,
                context: 30,
            })
            .unwrap_err();
        assert!(e.message.contains("validation region has 30 tokens"), "{e}");
    }

    #[test]
    fn every_bad_file_names_the_file_and_the_offset() {
        let tmp = scratch("badshards");
        let dir = tmp.path();
        let p = dir.join("x.bin");
        let nano = spec(DataFormat::Nanogpt, &[&p], &[]);
        let llm = spec(DataFormat::Llmc, &[&p], &[]);
        let shown = p.display().to_string();
        let check = |s: &DataSpec, want: &[&str]| {
            let e = err(s);
            assert_eq!(e.kind, ErrorKind::Data);
            assert!(e.message.contains(&shown), "{e}");
            for w in want {
                assert!(e.message.contains(w), "want {w:?} in: {e}");
            }
            assert!(e.help.is_some(), "{e}");
        };

        std::fs::write(&p, [1u8, 0, 2, 0, 3]).unwrap();
        check(&nano, &["odd byte length", "byte offset 4"]);
        std::fs::write(&p, []).unwrap();
        check(&nano, &["is empty"]);
        check(&llm, &["is empty"]);
        let e = err(&spec(DataFormat::Nanogpt, &[&dir.join("nope.bin")], &[]));
        assert!(
            e.message.contains("nope.bin") && e.message.contains("not found"),
            "{e}"
        );
        // Token 300 is past the bytes tokenizer's 256 ids: the 3rd token, byte offset 4.
        nanogpt(&p, &[1, 2, 300, 4]);
        check(&nano, &["token id 300", "byte offset 4", "256 ids"]);
        // llm.c: wrong magic, wrong version, count against size, short header, bad id.
        llmc(&p, 12345, 1, 2, &[0, 0, 1, 0]);
        check(&llm, &["magic 12345", "byte offset 0"]);
        llmc(&p, LLMC_MAGIC_U16, 7, 2, &[0, 0, 1, 0]);
        check(&llm, &["version 7", "byte offset 4"]);
        llmc(&p, LLMC_MAGIC_U16, 1, 3, &[0, 0, 1, 0]);
        check(&llm, &["3 tokens", "byte offset 8", "hold 2 tokens"]);
        llmc(&p, LLMC_MAGIC_U16, 1, 0, &[]);
        check(&llm, &["no tokens"]);
        llmc(&p, LLMC_MAGIC_U16, 1, 2, &[0, 0, 0, 1]);
        check(&llm, &["token id 256", "byte offset 1026"]);
        std::fs::write(&p, [0u8; 100]).unwrap();
        check(&llm, &["shorter than the 1024-byte"]);
        // An llm.c shard read as nanoGPT says which format to write.
        llmc(&p, LLMC_MAGIC_U16, 1, 2, &[0, 0, 1, 0]);
        let e = err(&nano);
        assert!(e.help.unwrap().contains("format: llmc"));
        // A glob that matches nothing names the pattern.
        let g = dir.join("none_*.bin");
        let e = err(&spec(DataFormat::Nanogpt, &[&g], &[]));
        assert!(
            e.message.contains("matches no file") && e.message.contains("none_*"),
            "{e}"
        );
    }

    /// Corrupted shards, thousands of them: every outcome is a corpus or an error, never a
    /// panic, and a corpus only comes from bytes that are a valid shard.
    #[test]
    fn corrupted_shards_never_panic() {
        let tmp = scratch("fuzz");
        let dir = tmp.path();
        let good = dir.join("good.bin");
        let payload: Vec<u8> = (0..600u16).flat_map(|t| (t % 256).to_le_bytes()).collect();
        llmc(&good, LLMC_MAGIC_U16, 1, 600, &payload);
        let bytes = std::fs::read(&good).unwrap();
        let bad = dir.join("bad.bin");
        let mut state = 7u64;
        let mut rand =
            |n: usize| (crate::exec::network::rng::splitmix64(&mut state) % n as u64) as usize;
        let (mut loaded, mut refused) = (0, 0);
        for i in 0..3000 {
            let mut b = bytes.clone();
            match i % 4 {
                // One byte anywhere in the header (magic, version, count) or the tokens.
                0 => {
                    let at = if i % 8 == 0 { rand(12) } else { rand(b.len()) };
                    b[at] = rand(256) as u8;
                }
                // Truncated anywhere.
                1 => b.truncate(rand(b.len())),
                // A header count or version from anywhere in the i32 range.
                2 => {
                    let field = 4 * (1 + rand(2));
                    let v = rand(usize::MAX) as i32;
                    b[field..field + 4].copy_from_slice(&v.to_le_bytes());
                }
                // Extra bytes appended (odd or even).
                _ => b.extend((0..1 + rand(5)).map(|_| rand(256) as u8)),
            }
            std::fs::write(&bad, &b).unwrap();
            for format in [DataFormat::Llmc, DataFormat::Nanogpt] {
                match load(&spec(format, &[&bad], &[])) {
                    Ok(c) => {
                        loaded += 1;
                        assert!(c.train.to_vec().iter().all(|&t| t < 256));
                    }
                    Err(e) => {
                        refused += 1;
                        assert!(e.message.contains("bad.bin"), "{e}");
                    }
                }
            }
        }
        assert!(
            loaded > 0 && refused > 0,
            "{loaded} loaded, {refused} refused"
        );
    }

    #[test]
    fn the_vocabulary_scan_finds_the_first_bad_id_past_the_first_chunk() {
        let tmp = scratch("scan");
        let dir = tmp.path();
        let p = dir.join("big.bin");
        let n = 3 * SCAN_CHUNK / 2 + 7;
        let mut t: Vec<u16> = (0..n).map(|i| (i % 256) as u16).collect();
        t[n - 3] = 999;
        t[SCAN_CHUNK / 2 + 5] = 1000;
        nanogpt(&p, &t);
        let e = err(&spec(DataFormat::Nanogpt, &[&p], &[]));
        let want = format!("token id 1000 at byte offset {}", 2 * (SCAN_CHUNK / 2 + 5));
        assert!(e.message.contains(&want), "{e}");
    }
}
