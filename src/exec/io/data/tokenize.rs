//! `progc tokenize`: text files in, token shards out (nanoGPT `train.bin`/`val.bin`, or llm.c
//! shards `train_000000.bin`, ... with their 1024-byte header).
//!
//! Invariants:
//! - the output is the concatenation of the inputs in the order given, each followed by one
//!   end-of-text token (`<|endoftext|>` = 50256 for gpt2; byte 0 for bytes, which has no
//!   special id); with `--val F`, the last fraction F of the input *bytes* (cut at a character
//!   boundary) goes to the validation files instead;
//! - the tokens equal `encode_text` of each input: text is encoded in parallel chunks cut where
//!   the GPT-2 pre-tokenizer cannot join across (see `text::gpt2_split_points`);
//! - nothing is overwritten: an output that already exists is an error before any work, and
//!   each shard is written to a temp file and renamed when complete, so a failure leaves no
//!   half-written shard under a final name.

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::shards::{LLMC_HEADER_BYTES, LLMC_MAGIC_U16};
use super::text::{as_utf8, gpt2_bpe, gpt2_split_points};
use crate::exec::error::{ErrorKind, ExecError};
use crate::plan::spec::{DataFormat, Tokenizer};

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
}

fn data_error(message: String, help: &str) -> ExecError {
    ExecError::new(ErrorKind::Data, message).with_help(help)
}

/// The end-of-text id appended after each input file.
pub fn end_of_text(tokenizer: Tokenizer) -> u32 {
    match tokenizer {
        Tokenizer::Gpt2 => GPT2_EOT,
        Tokenizer::Bytes => 0,
    }
}

/// Writes token files of one split (train or val), starting a new llm.c shard every
/// `shard_tokens` tokens.
struct SplitWriter {
    dir: PathBuf,
    split: &'static str,
    format: DataFormat,
    shard_tokens: usize,
    open: Option<(PathBuf, PathBuf, BufWriter<File>, u64)>,
    done: Vec<Written>,
}

impl SplitWriter {
    fn new(dir: &Path, split: &'static str, format: DataFormat, shard_tokens: usize) -> Self {
        SplitWriter {
            dir: dir.to_path_buf(),
            split,
            format,
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
            let bytes: Vec<u8> = now.iter().flat_map(|&t| (t as u16).to_le_bytes()).collect();
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
            header[0] = LLMC_MAGIC_U16;
            header[1] = 1;
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
    tokenizer: Tokenizer,
    parts: &[(&[u8], &Path, usize)],
) -> Result<Vec<Vec<u32>>, ExecError> {
    match tokenizer {
        Tokenizer::Bytes => Ok(parts
            .iter()
            .map(|(b, _, _)| b.iter().map(|&x| u32::from(x)).collect())
            .collect()),
        Tokenizer::Gpt2 => {
            let bpe = gpt2_bpe()?;
            let mut chunks: Vec<(usize, &str)> = Vec::new();
            for (i, (bytes, path, offset)) in parts.iter().enumerate() {
                let text = as_utf8(bytes, path, *offset)?;
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
    }
}

/// Tokenizes `opts.inputs` into shards in `opts.out`.
pub fn tokenize(opts: &TokenizeOptions) -> Result<TokenizeSummary, ExecError> {
    if opts.inputs.is_empty() {
        return Err(data_error(
            "no input files".into(),
            "name one or more text files",
        ));
    }
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(data_error(
            format!("--val {} is not a fraction below 100%", opts.val_fraction),
            "write e.g. `--val 1%` or `--val 0.01`",
        ));
    }
    let mut sizes = Vec::with_capacity(opts.inputs.len());
    for p in &opts.inputs {
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
    fs::create_dir_all(&opts.out).map_err(|e| ExecError::io("create directory", &opts.out, e))?;
    let mut train = SplitWriter::new(&opts.out, "train", opts.format, opts.shard_tokens);
    let mut val = SplitWriter::new(&opts.out, "val", opts.format, opts.shard_tokens);
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
    let result = write_all(opts, &sizes, &mut train, &mut val, &bar);
    bar.finish_and_clear();
    if let Err(e) = result {
        train.abandon();
        val.abandon();
        return Err(e);
    }
    Ok(TokenizeSummary {
        train: train.done,
        val: val.done,
    })
}

fn write_all(
    opts: &TokenizeOptions,
    sizes: &[usize],
    train: &mut SplitWriter,
    val: &mut SplitWriter,
    bar: &ProgressBar,
) -> Result<(), ExecError> {
    let write_err = |e: std::io::Error| ExecError::io("write shards in", &opts.out, e);
    let eot = end_of_text(opts.tokenizer);
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
                let (mut s, e) = (p.start.min(data.len()), p.end.min(data.len()));
                // A validation cut inside a character moves to the character's end.
                while p.start > 0 && s < e && (data[s] & 0xC0) == 0x80 {
                    s += 1;
                }
                let e = if p.last {
                    data.len()
                } else {
                    next_boundary(data, e)
                };
                (&data[s..e], opts.inputs[p.file].as_path(), s)
            })
            .collect();
        let encoded = encode_parts(opts.tokenizer, &parts)?;
        for (p, tokens) in round.iter().zip(encoded) {
            let w = if p.val { &mut *val } else { &mut *train };
            w.push(&tokens).map_err(write_err)?;
            if p.last {
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
    use crate::exec::io::data::{encode_text, load_corpus};
    use crate::plan::spec::DataSpec;
    use crate::testing::scratch;

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
            want.extend(encode_text(Tokenizer::Gpt2, t).unwrap());
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
            let c = load_corpus(&spec).unwrap();
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
}
