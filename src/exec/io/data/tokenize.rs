//! `progc tokenize`: text files in, token shards out (nanoGPT `train.bin`/`val.bin`, or llm.c
//! shards `train_000000.bin`, ... with their 1024-byte header); or, with `--train-bpe N`, a
//! byte-level BPE tokenizer.json trained on the text (`bpe.rs`).
//!
//! Invariants:
//! - the output is the concatenation of the inputs in the order given, each followed by one
//!   end-of-text token (`<|endoftext|>` = 50256 for gpt2; byte 0 for bytes, which has no
//!   special id; a tokenizer.json's own, and nothing when it has none: the inputs are then
//!   concatenated with no separator, which is said); with `--val F`, the last fraction F of the
//!   input *bytes* (cut at a character boundary) goes to the validation files instead, and a
//!   trained BPE is trained on the rest only;
//! - the tokens equal the tokenizer's encoding of each input (`TextTokenizer::encode`): GPT-2
//!   text is encoded in parallel chunks cut where its pre-tokenizer cannot join across
//!   (see `tokenizer::gpt2_split_points`);
//! - ids are written as `u16` when the vocabulary fits (nanoGPT, and llm.c version 1), else as
//!   `u32` (llm.c version 7; nanoGPT's format has no room for them, which is an error up front);
//! - nothing is overwritten: an output that already exists is an error before any work, and
//!   each shard (and a trained tokenizer) is written to a temp file and renamed when complete,
//!   so a failure leaves no half-written file under a final name.

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::bpe::train_bpe;
use super::shards::{LLMC_HEADER_BYTES, LLMC_MAGIC_U16, LLMC_MAGIC_U32};
use super::tokenizer::{HfTokenizer, TextTokenizer, as_utf8, gpt2_bpe, gpt2_split_points};
use super::write_atomic;
use crate::exec::error::{ErrorKind, ExecError};
use crate::plan::spec::{BPE_MAX_VOCAB, BPE_MIN_VOCAB, DataFormat, Tokenizer};

/// GPT-2's `<|endoftext|>`.
pub const GPT2_EOT: u32 = 50256;
/// Text encoded per parallel task.
const CHUNK_BYTES: usize = 1 << 20;
/// Input read per round (then encoded on all cores and written).
const ROUND_BYTES: usize = 64 << 20;

pub struct TokenizeOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// `Nanogpt` or `Llmc`.
    pub format: DataFormat,
    /// `Gpt2`, `Bytes` or a `File` (not `Bpe`: train one first, [`write_bpe`]).
    pub tokenizer: Tokenizer,
    /// Fraction of the input bytes (the tail) written to the validation files; 0 for none.
    pub val_fraction: f64,
    /// Tokens per llm.c shard.
    pub shard_tokens: usize,
    pub progress: bool,
}

/// One written file and its token count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub tokens: u64,
}

#[derive(Clone, Debug, Default)]
pub struct TokenizeSummary {
    pub train: Vec<Written>,
    pub val: Vec<Written>,
    /// Bytes per token id in the shards: 2 or 4.
    pub width: usize,
    /// The id written after each input; `None`: the inputs were concatenated with no
    /// separator (a tokenizer.json without an end-of-text token).
    pub separator: Option<u32>,
}

fn data_error(message: String, help: &str) -> ExecError {
    ExecError::new(ErrorKind::Data, message).with_help(help)
}

/// The id appended after each input file: the end-of-text token, or byte 0 for bytes.
pub fn separator(tokenizer: &Tokenizer) -> Option<u32> {
    match tokenizer {
        Tokenizer::Bytes => Some(0),
        t => t.end_of_text(),
    }
}

/// Writes token files of one split (train or val), starting a new llm.c shard every
/// `shard_tokens` tokens.
struct SplitWriter {
    dir: PathBuf,
    split: &'static str,
    format: DataFormat,
    /// Bytes per id: 2 or 4 (llm.c only).
    width: usize,
    shard_tokens: usize,
    open: Option<(PathBuf, PathBuf, BufWriter<File>, u64)>,
    done: Vec<Written>,
}

impl SplitWriter {
    fn new(
        dir: &Path,
        split: &'static str,
        format: DataFormat,
        width: usize,
        shard_tokens: usize,
    ) -> Self {
        SplitWriter {
            dir: dir.to_path_buf(),
            split,
            format,
            width,
            shard_tokens: shard_tokens.max(1),
            open: None,
            done: Vec::new(),
        }
    }

    /// The final name of shard `k`.
    fn name(&self, k: usize) -> PathBuf {
        match self.format {
            DataFormat::Llmc => self.dir.join(format!("{}_{k:06}.bin", self.split)),
            _ => self.dir.join(format!("{}.bin", self.split)),
        }
    }

    fn push(&mut self, tokens: &[u32]) -> std::io::Result<()> {
        let mut rest = tokens;
        while !rest.is_empty() {
            if self.open.is_none() {
                let path = self.name(self.done.len());
                let tmp = self.dir.join(format!(
                    ".{}.tmp-{}",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    std::process::id()
                ));
                let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
                if self.format == DataFormat::Llmc {
                    w.write_all(&[0u8; LLMC_HEADER_BYTES])?;
                }
                self.open = Some((path, tmp, w, 0));
            }
            let Some((_, _, w, n)) = self.open.as_mut() else {
                break;
            };
            let room = match self.format {
                DataFormat::Llmc => self.shard_tokens - *n as usize,
                _ => rest.len(),
            };
            let (now, later) = rest.split_at(room.min(rest.len()));
            let bytes: Vec<u8> = if self.width == 2 {
                now.iter().flat_map(|&t| (t as u16).to_le_bytes()).collect()
            } else {
                now.iter().flat_map(|&t| t.to_le_bytes()).collect()
            };
            w.write_all(&bytes)?;
            *n += now.len() as u64;
            rest = later;
            if self.format == DataFormat::Llmc && *n as usize >= self.shard_tokens {
                self.close()?;
            }
        }
        Ok(())
    }

    /// Finishes the open shard: header (llm.c), fsync, rename to its final name.
    fn close(&mut self) -> std::io::Result<()> {
        let Some((path, tmp, w, n)) = self.open.take() else {
            return Ok(());
        };
        let mut f = w.into_inner().map_err(|e| e.into_error())?;
        if self.format == DataFormat::Llmc {
            let mut header = [0i32; 256];
            (header[0], header[1]) = if self.width == 2 {
                (LLMC_MAGIC_U16, 1)
            } else {
                (LLMC_MAGIC_U32, 7)
            };
            header[2] = i32::try_from(n).unwrap_or(i32::MAX);
            let bytes: Vec<u8> = header.iter().flat_map(|x| x.to_le_bytes()).collect();
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&bytes)?;
        }
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        self.done.push(Written { path, tokens: n });
        Ok(())
    }

    fn abandon(&mut self) {
        if let Some((_, tmp, _, _)) = self.open.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// A part of one input file bound for one split.
struct Piece {
    file: usize,
    start: usize,
    end: usize,
    val: bool,
    /// The file ends with this piece: an end-of-text token follows it.
    last: bool,
}

/// Splits the inputs at the byte where the validation tail begins.
fn pieces(sizes: &[usize], val_fraction: f64) -> Vec<Piece> {
    let total: usize = sizes.iter().sum();
    let cut = total - ((total as f64) * val_fraction).round() as usize;
    let mut out = Vec::new();
    let mut at = 0;
    for (file, &size) in sizes.iter().enumerate() {
        let (a, b) = (at, at + size);
        if cut > a && cut < b {
            out.push(Piece {
                file,
                start: 0,
                end: cut - a,
                val: false,
                last: false,
            });
            out.push(Piece {
                file,
                start: cut - a,
                end: size,
                val: true,
                last: true,
            });
        } else {
            out.push(Piece {
                file,
                start: 0,
                end: size,
                val: a >= cut && size > 0,
                last: true,
            });
        }
        at = b;
    }
    out
}

/// Encodes the byte ranges `parts` on all cores; `paths[i]` names part `i` in messages.
fn encode_parts(
    tokenizer: &TextTokenizer,
    parts: &[(&[u8], &Path, usize)],
) -> Result<Vec<Vec<u32>>, ExecError> {
    match tokenizer {
        TextTokenizer::Bytes => Ok(parts
            .iter()
            .map(|(b, _, _)| b.iter().map(|&x| u32::from(x)).collect())
            .collect()),
        TextTokenizer::Gpt2 => {
            let bpe = gpt2_bpe()?;
            let mut chunks: Vec<(usize, &str)> = Vec::new();
            for (i, (bytes, path, offset)) in parts.iter().enumerate() {
                let text = as_utf8(bytes, path, *offset, "gpt2")?;
                let mut bounds = vec![0];
                bounds.extend(gpt2_split_points(text, CHUNK_BYTES));
                bounds.push(text.len());
                chunks.extend(bounds.windows(2).map(|w| (i, &text[w[0]..w[1]])));
            }
            let encoded: Vec<(usize, Vec<u32>)> = chunks
                .par_iter()
                .map(|&(i, c)| (i, bpe.encode_ordinary(c)))
                .collect();
            let mut out = vec![Vec::new(); parts.len()];
            for (i, t) in encoded {
                out[i].extend(t);
            }
            Ok(out)
        }
        // Each part is encoded on all cores by the tokenizer itself.
        TextTokenizer::Hf(t) => parts
            .iter()
            .map(|(bytes, path, offset)| t.encode(as_utf8(bytes, path, *offset, "tokenizer.json")?))
            .collect(),
    }
}

/// The size of each input file; errors for a path that is not a readable file.
fn input_sizes(inputs: &[PathBuf]) -> Result<Vec<usize>, ExecError> {
    if inputs.is_empty() {
        return Err(data_error(
            "no input files".into(),
            "name one or more text files",
        ));
    }
    let mut sizes = Vec::with_capacity(inputs.len());
    for p in inputs {
        let meta = fs::metadata(p).map_err(|e| {
            data_error(
                format!("cannot read {}: {e}", p.display()),
                "check the path",
            )
        })?;
        if !meta.is_file() {
            return Err(data_error(
                format!("{} is not a file", p.display()),
                "name text files (a shell glob such as `data/*.txt` lists a folder's files)",
            ));
        }
        sizes.push(meta.len() as usize);
    }
    Ok(sizes)
}

fn check_val_fraction(val_fraction: f64) -> Result<(), ExecError> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(data_error(
            format!("--val {val_fraction} is not a fraction below 100%"),
            "write e.g. `--val 1%` or `--val 0.01`",
        ));
    }
    Ok(())
}

/// Bytes per id for `vocab` ids in `format`; nanoGPT's format only holds `u16`.
fn id_width(vocab: usize, format: DataFormat, tokenizer: &Tokenizer) -> Result<usize, ExecError> {
    if vocab <= 1 << 16 {
        return Ok(2);
    }
    if format == DataFormat::Llmc {
        return Ok(4);
    }
    Err(data_error(
        format!(
            "the {tokenizer} tokenizer has {vocab} ids, more than nanoGPT's u16 shards can hold (65536)"
        ),
        "write llm.c shards, which hold u32 ids: `--format llmc`",
    ))
}

/// Tokenizes `opts.inputs` into shards in `opts.out`.
pub fn tokenize(opts: &TokenizeOptions) -> Result<TokenizeSummary, ExecError> {
    let sizes = input_sizes(&opts.inputs)?;
    check_val_fraction(opts.val_fraction)?;
    let tokenizer = match &opts.tokenizer {
        Tokenizer::Bpe(n) => {
            return Err(data_error(
                format!("bpe({n}) must be trained before it can write shards"),
                "train it with `progc tokenize TEXT... --train-bpe N --out tokenizer.json`, then pass `--tokenizer tokenizer.json`",
            ));
        }
        t => TextTokenizer::of(t)?,
    };
    let width = id_width(tokenizer.vocab(), opts.format, &opts.tokenizer)?;
    fs::create_dir_all(&opts.out).map_err(|e| ExecError::io("create directory", &opts.out, e))?;
    let mut train = SplitWriter::new(&opts.out, "train", opts.format, width, opts.shard_tokens);
    let mut val = SplitWriter::new(&opts.out, "val", opts.format, width, opts.shard_tokens);
    for first in [train.name(0), val.name(0)] {
        if first.exists() {
            return Err(data_error(
                format!("{} already exists", first.display()),
                "choose another --out folder, or remove the old shards first",
            ));
        }
    }
    let total: usize = sizes.iter().sum();
    let bar = if opts.progress {
        let style = ProgressStyle::with_template(
            "{spinner} tokenizing {bytes}/{total_bytes} [{elapsed_precise}] {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::new(total as u64).with_style(style)
    } else {
        ProgressBar::hidden()
    };
    let separator = separator(&opts.tokenizer);
    let result = write_all(
        opts, &tokenizer, separator, &sizes, &mut train, &mut val, &bar,
    );
    bar.finish_and_clear();
    if let Err(e) = result {
        train.abandon();
        val.abandon();
        return Err(e);
    }
    Ok(TokenizeSummary {
        train: train.done,
        val: val.done,
        width,
        separator,
    })
}

/// `progc tokenize --train-bpe`: what to train and where to write it.
pub struct TrainBpeOptions {
    pub inputs: Vec<PathBuf>,
    /// The tokenizer.json to write (never overwritten).
    pub out: PathBuf,
    pub size: usize,
    /// The tail of the input bytes to leave out of training (as `--val` leaves it out of the
    /// training shards); 0 for none.
    pub val_fraction: f64,
    pub progress: bool,
}

/// Trains a byte-level BPE on the inputs (less their `--val` tail) and writes its
/// tokenizer.json; returns it and the bytes of text it was trained on.
pub fn write_bpe(opts: &TrainBpeOptions) -> Result<(HfTokenizer, usize), ExecError> {
    if !(BPE_MIN_VOCAB..=BPE_MAX_VOCAB).contains(&opts.size) {
        return Err(ExecError::new(
            ErrorKind::Usage,
            format!(
                "--train-bpe {} is out of range: a byte-level BPE has the 256 bytes and <|endoftext|>, so {BPE_MIN_VOCAB} to {BPE_MAX_VOCAB} tokens",
                opts.size
            ),
        )
        .with_help("a few thousand tokens suit a small model: `--train-bpe 4096`"));
    }
    let sizes = input_sizes(&opts.inputs)?;
    check_val_fraction(opts.val_fraction)?;
    if opts.out.exists() {
        return Err(data_error(
            format!("{} already exists", opts.out.display()),
            "choose another --out file, or remove the old one first",
        ));
    }
    let mut texts: Vec<Vec<u8>> = Vec::new();
    for p in pieces(&sizes, opts.val_fraction).iter().filter(|p| !p.val) {
        let path = &opts.inputs[p.file];
        let data = fs::read(path).map_err(|e| {
            data_error(
                format!("cannot read {}: {e}", path.display()),
                "check the path",
            )
        })?;
        let r = piece_range(p, &data);
        as_utf8(
            &data[r.clone()],
            path,
            r.start,
            &format!("bpe({})", opts.size),
        )?;
        texts.push(data[r].to_vec());
    }
    // Checked above: every piece is UTF-8.
    let strs: Vec<&str> = texts
        .iter()
        .map(|t| std::str::from_utf8(t).unwrap_or_default())
        .collect();
    let tokenizer = train_bpe(&strs, opts.size, opts.progress)?;
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
    }
    write_atomic(&opts.out, tokenizer.json()).map_err(|e| ExecError::io("write", &opts.out, e))?;
    Ok((tokenizer, texts.iter().map(Vec::len).sum()))
}

/// The bytes of `data` (the whole file) that piece `p` covers: a validation cut inside a
/// character moves to the character's end.
fn piece_range(p: &Piece, data: &[u8]) -> std::ops::Range<usize> {
    let (mut s, e) = (p.start.min(data.len()), p.end.min(data.len()));
    while p.start > 0 && s < e && (data[s] & 0xC0) == 0x80 {
        s += 1;
    }
    let e = if p.last {
        data.len()
    } else {
        next_boundary(data, e)
    };
    s..e
}

fn write_all(
    opts: &TokenizeOptions,
    tokenizer: &TextTokenizer,
    separator: Option<u32>,
    sizes: &[usize],
    train: &mut SplitWriter,
    val: &mut SplitWriter,
    bar: &ProgressBar,
) -> Result<(), ExecError> {
    let write_err = |e: std::io::Error| ExecError::io("write shards in", &opts.out, e);
    let all = pieces(sizes, opts.val_fraction);
    let mut round: Vec<&Piece> = Vec::new();
    let mut loaded: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        // A round: pieces until ROUND_BYTES of input (at least one), read then encoded at once.
        round.clear();
        let mut bytes = 0;
        while i < all.len() && (round.is_empty() || bytes < ROUND_BYTES) {
            bytes += all[i].end - all[i].start;
            round.push(&all[i]);
            i += 1;
        }
        loaded.retain(|(f, _)| round.iter().any(|p| p.file == *f));
        for p in &round {
            if !loaded.iter().any(|(f, _)| *f == p.file) {
                let path = &opts.inputs[p.file];
                let data = fs::read(path).map_err(|e| {
                    data_error(
                        format!("cannot read {}: {e}", path.display()),
                        "check the path",
                    )
                })?;
                loaded.push((p.file, data));
            }
        }
        let text_of = |f: usize| &loaded.iter().find(|(g, _)| *g == f).expect("loaded").1;
        let parts: Vec<(&[u8], &Path, usize)> = round
            .iter()
            .map(|p| {
                let data = text_of(p.file);
                let r = piece_range(p, data);
                (&data[r.clone()], opts.inputs[p.file].as_path(), r.start)
            })
            .collect();
        let encoded = encode_parts(tokenizer, &parts)?;
        for (p, tokens) in round.iter().zip(encoded) {
            let w = if p.val { &mut *val } else { &mut *train };
            w.push(&tokens).map_err(write_err)?;
            if p.last
                && let Some(eot) = separator
            {
                w.push(&[eot]).map_err(write_err)?;
            }
            bar.inc((p.end - p.start) as u64);
        }
    }
    train.close().map_err(write_err)?;
    val.close().map_err(write_err)?;
    Ok(())
}

/// `at`, moved forward to the end of the UTF-8 character it falls in.
fn next_boundary(data: &[u8], mut at: usize) -> usize {
    while at < data.len() && (data[at] & 0xC0) == 0x80 {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::io::data::{ShardSet, load_corpus};
    use crate::plan::spec::{DataSpec, TokenizerFile};
    use crate::testing::scratch;

    /// The fixture tokenizer.json (see `tokenizer.rs`).
    const FIXTURE: &str = "tests/fixtures/tokenizer/emma-bpe400.json";

    /// A tokenizer file as the checker describes it, at `path`.
    fn file_tokenizer(path: &Path) -> Tokenizer {
        let shown = path.display().to_string();
        let f = TokenizerFile::from_json(&shown, &shown, &fs::read(path).unwrap()).unwrap();
        Tokenizer::File(f)
    }

    /// The fixture with its JSON edited by `edit`, written to `dir/name`.
    fn edited_fixture(
        dir: &Path,
        name: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> PathBuf {
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(FIXTURE).unwrap()).unwrap();
        edit(&mut json);
        let path = dir.join(name);
        fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        path
    }

    fn opts(inputs: Vec<PathBuf>, out: &Path, format: DataFormat, val: f64) -> TokenizeOptions {
        TokenizeOptions {
            inputs,
            out: out.to_path_buf(),
            format,
            tokenizer: Tokenizer::Gpt2,
            val_fraction: val,
            shard_tokens: 7,
            progress: false,
        }
    }

    #[test]
    fn shards_hold_each_file_then_end_of_text_and_load_back() {
        let tmp = scratch("tokenize");
        let dir = tmp.path();
        let texts = [
            "Emma Woodhouse, handsome, clever, and rich.",
            "She was born in Highbury — ô!",
        ];
        let inputs: Vec<PathBuf> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p = dir.join(format!("in{i}.txt"));
                fs::write(&p, t).unwrap();
                p
            })
            .collect();
        let mut want = Vec::new();
        for t in texts {
            want.extend(TextTokenizer::Gpt2.encode(t).unwrap());
            want.push(GPT2_EOT);
        }
        for format in [DataFormat::Nanogpt, DataFormat::Llmc] {
            let out = dir.join(format.name());
            let s = tokenize(&opts(inputs.clone(), &out, format, 0.0)).unwrap();
            assert!(s.val.is_empty());
            let n: u64 = s.train.iter().map(|w| w.tokens).sum();
            assert_eq!(n as usize, want.len());
            if format == DataFormat::Llmc {
                // 7 tokens per shard.
                assert_eq!(s.train.len(), want.len().div_ceil(7));
            }
            let spec = DataSpec {
                name: "t".into(),
                path: String::new(),
                resolved_path: String::new(),
                tokenizer: Tokenizer::Gpt2,
                val_fraction: 0.1,
                val_blocks: 1,
                format,
                shards: vec![out.join("train*.bin").display().to_string()],
                val_shards: vec![],
            };
            let c = load_corpus(&spec, false).unwrap();
            let mut got = c.train.to_vec();
            got.extend(c.val.to_vec());
            assert_eq!(got, want, "{format:?}");
            // Nothing is overwritten.
            let e = tokenize(&opts(inputs.clone(), &out, format, 0.0)).unwrap_err();
            assert!(e.message.contains("already exists"), "{e}");
        }
    }

    #[test]
    fn the_validation_tail_is_cut_by_bytes_at_a_character_boundary() {
        let tmp = scratch("tokval");
        let dir = tmp.path();
        let p = dir.join("a.txt");
        // 17 bytes ('é' is two); the last 20% starts at byte 14, inside the first 'é'.
        fs::write(&p, "abcdefghijklméé").unwrap();
        let mut o = opts(vec![p.clone()], &dir.join("o"), DataFormat::Nanogpt, 0.2);
        o.tokenizer = Tokenizer::Bytes;
        let s = tokenize(&o).unwrap();
        let read = |w: &Written| fs::read(&w.path).unwrap();
        let train: Vec<u8> = read(&s.train[0]).chunks(2).map(|c| c[0]).collect();
        let val: Vec<u8> = read(&s.val[0]).chunks(2).map(|c| c[0]).collect();
        assert_eq!(train, "abcdefghijklmé".as_bytes());
        let mut want_val = "é".as_bytes().to_vec();
        want_val.push(0);
        assert_eq!(val, want_val);
    }

    #[test]
    fn parallel_chunks_give_the_tokens_of_the_whole_text() {
        let tmp = scratch("tokchunks");
        let dir = tmp.path();
        let p = dir.join("big.txt");
        let text = "It is a truth universally acknowledged, that a single man. ".repeat(40_000);
        fs::write(&p, &text).unwrap();
        let s = tokenize(&opts(vec![p], &dir.join("o"), DataFormat::Nanogpt, 0.0)).unwrap();
        let bytes = fs::read(&s.train[0].path).unwrap();
        let got: Vec<u32> = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        let mut want = gpt2_bpe().unwrap().encode_ordinary(&text);
        want.push(GPT2_EOT);
        assert_eq!(got, want);
    }

    /// A tokenizer.json writes its own ids, u16 while they fit; past 65536 ids only llm.c's
    /// u32 shards hold them, which load back, and nanoGPT's format is an error up front.
    #[test]
    fn tokenizer_files_write_u16_or_u32_shards() {
        let tmp = scratch("tokhf");
        let dir = tmp.path();
        let input = dir.join("in.txt");
        let text = "Emma Woodhouse, handsome, clever <|big|> and rich.";
        fs::write(&input, text).unwrap();
        let small = file_tokenizer(Path::new(FIXTURE));
        let mut o = opts(
            vec![input.clone()],
            &dir.join("small"),
            DataFormat::Nanogpt,
            0.0,
        );
        o.tokenizer = small.clone();
        let s = tokenize(&o).unwrap();
        assert_eq!((s.width, s.separator), (2, Some(0)));
        let hf = TextTokenizer::of(&small).unwrap();
        let mut want = hf.encode(text).unwrap();
        want.push(0);
        let got: Vec<u32> = fs::read(&s.train[0].path)
            .unwrap()
            .chunks(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        assert_eq!(got, want);

        // Added tokens whose ids the library would number otherwise: an error, not a model
        // too small for the ids the tokenizer gives.
        let odd = edited_fixture(dir, "odd.json", |j| {
            j["added_tokens"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({
                    "id": 70000, "content": "<|big|>", "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true
                }));
        });
        let e = HfTokenizer::open(&odd).unwrap_err();
        assert!(e.message.contains("ids up to 70000 in its JSON"), "{e}");

        // A word-level vocabulary of 70000 words: "Emma" is the last one.
        let mut vocab: serde_json::Map<String, serde_json::Value> = (0..69_998)
            .map(|i| (format!("w{i}"), serde_json::json!(i)))
            .collect();
        vocab.insert("<unk>".into(), serde_json::json!(69_998));
        vocab.insert("Emma".into(), serde_json::json!(69_999));
        let big_path = edited_fixture(dir, "big.json", |j| {
            j["added_tokens"] = serde_json::json!([]);
            j["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"});
            j["decoder"] = serde_json::Value::Null;
            j["model"] =
                serde_json::json!({"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"});
        });
        let big = file_tokenizer(&big_path);
        assert_eq!(big.vocab(), 70000);
        let mut o = opts(
            vec![input.clone()],
            &dir.join("big-nanogpt"),
            DataFormat::Nanogpt,
            0.0,
        );
        o.tokenizer = big.clone();
        let e = tokenize(&o).unwrap_err();
        assert!(e.message.contains("70000 ids") && e.help.unwrap().contains("llmc"));
        let out = dir.join("big-llmc");
        let mut o = opts(vec![input], &out, DataFormat::Llmc, 0.0);
        o.tokenizer = big;
        o.shard_tokens = 1000;
        let s = tokenize(&o).unwrap();
        assert_eq!((s.width, s.separator), (4, None));
        let set = ShardSet::open(
            &[s.train[0].path.display().to_string()],
            DataFormat::Llmc,
            70000,
            "big",
        )
        .unwrap();
        let mut ids = Vec::new();
        set.copy(0, set.len(), &mut ids);
        assert_eq!(ids[0], 69_999, "{ids:?}");
        assert!(ids[1..].iter().all(|&i| i == 69_998), "{ids:?}");
        // The same shard is too wide for the fixture's 400 ids: an error naming the id.
        let e = ShardSet::open(
            &[s.train[0].path.display().to_string()],
            DataFormat::Llmc,
            400,
            "emma-bpe400",
        )
        .err()
        .unwrap();
        assert!(e.message.contains("token id 69999"), "{e}");
    }

    /// Without an end-of-text token the inputs are concatenated with no separator.
    #[test]
    fn a_tokenizer_without_end_of_text_writes_no_separator() {
        let tmp = scratch("tokeot");
        let dir = tmp.path();
        let path = edited_fixture(dir, "noeot.json", |j| {
            j["added_tokens"] = serde_json::json!([]);
            j["model"]["vocab"]
                .as_object_mut()
                .unwrap()
                .remove("<|endoftext|>");
        });
        let t = file_tokenizer(&path);
        assert_eq!(t.end_of_text(), None);
        let inputs: Vec<PathBuf> = ["one", "two"]
            .iter()
            .map(|n| {
                let p = dir.join(format!("{n}.txt"));
                fs::write(&p, format!("{n} words")).unwrap();
                p
            })
            .collect();
        let mut o = opts(inputs, &dir.join("o"), DataFormat::Nanogpt, 0.0);
        o.tokenizer = t.clone();
        let s = tokenize(&o).unwrap();
        assert_eq!(s.separator, None);
        let hf = TextTokenizer::of(&t).unwrap();
        let mut want = hf.encode("one words").unwrap();
        want.extend(hf.encode("two words").unwrap());
        assert_eq!(s.train[0].tokens as usize, want.len());
    }

    #[test]
    fn train_bpe_writes_a_tokenizer_trained_without_the_val_tail() {
        let tmp = scratch("trainbpe");
        let dir = tmp.path();
        let input = dir.join("in.txt");
        let emma = fs::read_to_string("data/emma.txt").unwrap();
        let word = " Zqxjvwk";
        fs::write(&input, format!("{}{}", &emma[..100_000], word.repeat(1500))).unwrap();
        let out = dir.join("tok/bpe.json");
        let mut o = TrainBpeOptions {
            inputs: vec![input.clone()],
            out: out.clone(),
            size: 300,
            val_fraction: 0.15,
            progress: false,
        };
        let (t, n) = write_bpe(&o).unwrap();
        assert_eq!(
            n,
            100_000 + 1500 * 8 - (112_000.0f64 * 0.15).round() as usize
        );
        assert_eq!(fs::read(&out).unwrap(), t.json());
        assert!(t.encode(word).unwrap().len() > 1);
        let e = write_bpe(&o).unwrap_err();
        assert!(e.message.contains("already exists"), "{e}");
        // Loaded back as a file tokenizer, it writes shards.
        let mut s = opts(vec![input], &dir.join("shards"), DataFormat::Nanogpt, 0.15);
        s.tokenizer = file_tokenizer(&out);
        assert!(!tokenize(&s).unwrap().val.is_empty());
        for size in [0, 100, 256, BPE_MAX_VOCAB + 1] {
            o.size = size;
            o.out = dir.join(format!("{size}.json"));
            let e = write_bpe(&o).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Usage, "{e}");
            assert!(e.message.contains("out of range"), "{e}");
        }
    }
}
