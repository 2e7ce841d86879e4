//! Tokenizers behind one type, [`TextTokenizer`]: GPT-2's BPE (tiktoken-rs `r50k_base`), bytes,
//! and Hugging Face `tokenizer.json` files, through the `tokenizers` crate: a file a recipe
//! names, or the byte-level BPE that `bpe(N)` trains (`bpe.rs`).
//!
//! Invariants:
//! - GPT-2 encoding in parallel chunks gives exactly the ids of encoding the whole text: its cut
//!   points ([`gpt2_split_points`]) never fall inside a pre-token;
//! - a tokenizer.json encodes without post-processing (nothing such as a BOS is added), in
//!   parallel chunks cut at the same points, each cut kept only if encoding the text around it
//!   in one piece gives the ids of encoding its two sides apart (a normalizer that prepends to
//!   every text fails that, and its text is encoded whole): the ids are those of the whole text;
//! - a loaded tokenizer.json has the size the checker reads from it (largest id + 1,
//!   `TokenizerFile::from_json`), which the `tokenizers` crate's own vocabulary must agree
//!   with: the model has a row for every id the tokenizer can produce;
//! - a tokenizer.json that a recipe names by path is the file the recipe was checked with
//!   (same content hash), or loading fails: the tokens of a run never change under it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::hf_tokenizer::gpt2_token_bytes;
use crate::plan::spec::{Tokenizer, TokenizerFile};

/// The copy of its tokenizer.json that a run directory keeps (bpe(N) and file tokenizers).
pub const RUN_TOKENIZER: &str = "tokenizer.json";
/// Text encoded per parallel task.
const CHUNK_BYTES: usize = 1 << 20;
/// Bytes on each side of a cut that the cut's check encodes.
const PROBE_BYTES: usize = 256;

// ---------------------------------------------------------------------------------------------
// GPT-2

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

/// The bytes of every GPT-2 token, by id, built once per process.
fn gpt2_table() -> Result<&'static [Vec<u8>], ExecError> {
    static TABLE: OnceLock<Result<Vec<Vec<u8>>, ExecError>> = OnceLock::new();
    TABLE
        .get_or_init(gpt2_token_bytes)
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
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

/// `text` cut at `cuts` (byte offsets, increasing).
fn pieces<'t>(text: &'t str, cuts: &[usize]) -> Vec<&'t str> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(text.len());
    bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// GPT-2 encoding of a large text on all cores, in chunks of about `target_chunk` bytes.
pub(super) fn encode_gpt2_parallel(text: &str, target_chunk: usize) -> Result<Vec<u32>, ExecError> {
    let bpe = gpt2_bpe()?;
    let chunks = pieces(text, &gpt2_split_points(text, target_chunk.max(1)));
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

/// `bytes` as text for a tokenizer that needs it (`name` says which); `offset` is where they
/// start in `path` (for the message).
pub(super) fn as_utf8<'a>(
    bytes: &'a [u8],
    path: &Path,
    offset: usize,
    name: &str,
) -> Result<&'a str, ExecError> {
    std::str::from_utf8(bytes).map_err(|e| {
        ExecError::new(
            ErrorKind::Data,
            format!(
                "corpus {} is not valid UTF-8 (at byte {}), which the {name} tokenizer needs",
                path.display(),
                offset + e.valid_up_to()
            ),
        )
        .with_help(
            "convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or use \
             `tokenizer: bytes`, which takes any bytes",
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Hugging Face tokenizer.json

/// A loaded tokenizer.json and what progc needs of it.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    /// The file's bytes, as read (a run directory and an export keep them).
    json: Vec<u8>,
    /// Size, end of text and content hash, as the checker computes them.
    summary: TokenizerFile,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HfTokenizer(vocab {}, hash {})",
            self.summary.vocab, self.summary.hash
        )
    }
}

const FILE_HELP: &str = "a tokenizer.json as Hugging Face models ship it (`tokenizers` 0.13 or \
                         later), or one `progc tokenize --train-bpe N` wrote";

impl HfTokenizer {
    /// From the bytes of a tokenizer.json; `shown` names it in messages.
    pub fn from_json(json: Vec<u8>, shown: &str) -> Result<HfTokenizer, ExecError> {
        let summary = TokenizerFile::from_json(shown, shown, &json).map_err(|why| {
            ExecError::new(
                ErrorKind::Data,
                format!("tokenizer {shown} cannot be used: {why}"),
            )
            .with_help(FILE_HELP)
        })?;
        let inner = tokenizers::Tokenizer::from_bytes(&json).map_err(|e| {
            ExecError::new(
                ErrorKind::Data,
                format!("the tokenizers library cannot load {shown}: {e}"),
            )
            .with_help(FILE_HELP)
        })?;
        let loaded = inner
            .get_vocab(true)
            .into_values()
            .max()
            .map_or(0, |m| m as usize + 1);
        if loaded != summary.vocab {
            return Err(ExecError::new(
                ErrorKind::Data,
                format!(
                    "tokenizer {shown} has ids up to {} in its JSON, but the tokenizers library \
                     loads ids up to {}",
                    summary.vocab - 1,
                    loaded.saturating_sub(1)
                ),
            )
            .with_help(FILE_HELP));
        }
        Ok(HfTokenizer {
            inner,
            json,
            summary,
        })
    }

    /// Reads and loads the tokenizer.json at `path`.
    pub fn open(path: &Path) -> Result<HfTokenizer, ExecError> {
        let json = std::fs::read(path).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                format!("tokenizer file {} does not exist", path.display())
            } else {
                format!("cannot read tokenizer file {}: {e}", path.display())
            };
            ExecError::new(ErrorKind::Data, what).with_help(FILE_HELP)
        })?;
        HfTokenizer::from_json(json, &path.display().to_string())
    }

    /// The tokenizer.json a recipe names, which must still be the file it was checked with.
    pub fn for_recipe(f: &TokenizerFile) -> Result<HfTokenizer, ExecError> {
        let t = HfTokenizer::open(Path::new(&f.resolved_path))?;
        t.check_is(f, &f.resolved_path)?;
        Ok(t)
    }

    /// Errors unless this is the file `f` describes (by content hash).
    fn check_is(&self, f: &TokenizerFile, shown: &str) -> Result<(), ExecError> {
        if self.summary.hash == f.hash {
            return Ok(());
        }
        Err(ExecError::new(
            ErrorKind::Data,
            format!(
                "tokenizer {shown} is not the file the recipe was checked with (content hash {}, \
                 the recipe's is {})",
                self.summary.hash, f.hash
            ),
        )
        .with_help(
            "a run's tokens must not change under it: restore the file (a run directory keeps \
             a copy, tokenizer.json), or start a new run, which checks the recipe again",
        ))
    }

    /// Largest id + 1.
    pub fn vocab(&self) -> usize {
        self.summary.vocab
    }

    pub fn end_of_text(&self) -> Option<u32> {
        self.summary.end_of_text
    }

    /// xxh3-64 of the JSON, 16 hex digits.
    pub fn hash(&self) -> &str {
        &self.summary.hash
    }

    /// The JSON, as read or as trained.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The token with id `id`, as the tokenizer writes it (`<|endoftext|>`).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    fn encode_one(&self, text: &str) -> Result<Vec<u32>, ExecError> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ExecError::new(ErrorKind::Data, format!("cannot tokenize: {e}")))
    }

    /// Whether cutting `text` at `at` leaves its ids unchanged, checked on the text around it.
    fn cut_is_clean(&self, text: &str, at: usize) -> Result<bool, ExecError> {
        let mut from = at.saturating_sub(PROBE_BYTES);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        let mut to = (at + PROBE_BYTES).min(text.len());
        while !text.is_char_boundary(to) {
            to -= 1;
        }
        let mut apart = self.encode_one(&text[from..at])?;
        apart.extend(self.encode_one(&text[at..to])?);
        Ok(self.encode_one(&text[from..to])? == apart)
    }

    /// The ids of `text` (see the module invariants).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ExecError> {
        let mut cuts = Vec::new();
        for at in gpt2_split_points(text, CHUNK_BYTES) {
            if self.cut_is_clean(text, at)? {
                cuts.push(at);
            }
        }
        let parts: Vec<Vec<u32>> = pieces(text, &cuts)
            .par_iter()
            .map(|p| self.encode_one(p))
            .collect::<Result<_, _>>()?;
        Ok(parts.concat())
    }

    /// Text of `ids` through the tokenizer's decoder (special tokens included).
    pub fn decode(&self, ids: &[u32]) -> Result<String, ExecError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| ExecError::new(ErrorKind::Data, format!("cannot decode tokens: {e}")))
    }
}

// ---------------------------------------------------------------------------------------------
// One type for all

/// A tokenizer ready to encode and decode.
#[derive(Clone, Debug)]
pub enum TextTokenizer {
    Gpt2,
    Bytes,
    Hf(Arc<HfTokenizer>),
}

impl TextTokenizer {
    /// The tokenizer a data source names. A `bpe(N)` is trained on its corpus
    /// (`bpe::load_corpus`) or read from a run directory ([`TextTokenizer::for_run`]).
    pub fn of(spec: &Tokenizer) -> Result<TextTokenizer, ExecError> {
        match spec {
            Tokenizer::Gpt2 => Ok(TextTokenizer::Gpt2),
            Tokenizer::Bytes => Ok(TextTokenizer::Bytes),
            Tokenizer::File(f) => Ok(TextTokenizer::Hf(Arc::new(HfTokenizer::for_recipe(f)?))),
            Tokenizer::Bpe(n) => Err(ExecError::new(
                ErrorKind::Internal,
                format!("bpe({n}) has no tokenizer before it is trained on its corpus"),
            )),
        }
    }

    /// The tokenizer a run trained with: the built-in ones, or the run directory's copy of its
    /// tokenizer.json (for a file tokenizer, the recipe's file when the copy is missing).
    pub fn for_run(run_dir: &Path, spec: &Tokenizer) -> Result<TextTokenizer, ExecError> {
        if matches!(spec, Tokenizer::Gpt2 | Tokenizer::Bytes) {
            return TextTokenizer::of(spec);
        }
        let copy = run_dir.join(RUN_TOKENIZER);
        if !copy.exists() {
            if let Tokenizer::File(_) = spec {
                return TextTokenizer::of(spec);
            }
            return Err(ExecError::new(
                ErrorKind::Data,
                format!(
                    "{} is missing: the {spec} tokenizer this run trained with",
                    copy.display()
                ),
            )
            .with_help(
                "a run writes it when it starts; copy it from another run on the same data and \
                 recipe (runs/NAME/tokenizer.json), or train the run again",
            ));
        }
        let t = HfTokenizer::open(&copy)?;
        if let Tokenizer::File(f) = spec {
            t.check_is(f, &copy.display().to_string())?;
        }
        Ok(TextTokenizer::Hf(Arc::new(t)))
    }

    /// Largest id + 1 (for a trained `bpe(N)`, at most N).
    pub fn vocab(&self) -> usize {
        match self {
            TextTokenizer::Gpt2 => Tokenizer::Gpt2.vocab(),
            TextTokenizer::Bytes => Tokenizer::Bytes.vocab(),
            TextTokenizer::Hf(t) => t.vocab(),
        }
    }

    pub fn end_of_text(&self) -> Option<u32> {
        match self {
            TextTokenizer::Gpt2 => Tokenizer::Gpt2.end_of_text(),
            TextTokenizer::Bytes => None,
            TextTokenizer::Hf(t) => t.end_of_text(),
        }
    }

    /// The tokenizer.json, for tokenizers that have one.
    pub fn hf(&self) -> Option<&Arc<HfTokenizer>> {
        match self {
            TextTokenizer::Hf(t) => Some(t),
            _ => None,
        }
    }

    /// The ids of `text` (GPT-2's BPE treats `<|endoftext|>` in the text as ordinary text; a
    /// tokenizer.json matches its added tokens, as transformers does).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ExecError> {
        match self {
            TextTokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
            TextTokenizer::Gpt2 => encode_gpt2_parallel(text, CHUNK_BYTES),
            TextTokenizer::Hf(t) => t.encode(text),
        }
    }

    /// The ids of a file's bytes (`path` only for messages): any bytes for the byte tokenizer,
    /// UTF-8 text for the others.
    pub fn encode_bytes(&self, bytes: &[u8], path: &Path) -> Result<Vec<u32>, ExecError> {
        match self {
            TextTokenizer::Bytes => Ok(bytes.iter().map(|&b| u32::from(b)).collect()),
            TextTokenizer::Gpt2 => self.encode(as_utf8(bytes, path, 0, "gpt2")?),
            TextTokenizer::Hf(_) => self.encode(as_utf8(bytes, path, 0, "tokenizer.json")?),
        }
    }

    /// Text of `ids`; invalid UTF-8 (half a character, a stray byte) becomes U+FFFD.
    pub fn decode_lossy(&self, ids: &[u32]) -> Result<String, ExecError> {
        let bytes: Vec<u8> = match self {
            TextTokenizer::Bytes => ids.iter().map(|&t| t.min(255) as u8).collect(),
            TextTokenizer::Gpt2 => {
                let table = gpt2_table()?;
                ids.iter()
                    .flat_map(|&t| table.get(t as usize).cloned().unwrap_or_default())
                    .collect()
            }
            TextTokenizer::Hf(t) => return t.decode(ids),
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture tokenizer: a 400-token byte-level BPE trained on the start of Emma by
    /// Hugging Face's Python `tokenizers`; `IDS` holds a paragraph and the ids Python encodes it
    /// to (`scripts/tokenizer-fixture.py` wrote both, and checks the ids again).
    const FIXTURE: &str = "tests/fixtures/tokenizer/emma-bpe400.json";
    const IDS: &str = "tests/fixtures/tokenizer/emma-bpe400.ids.json";

    #[test]
    fn bytes_round_trip_is_exact() {
        let text = "Héllo, wörld!\n\t<|endoftext|> ✓";
        let toks = TextTokenizer::Bytes.encode(text).unwrap();
        assert_eq!(toks.len(), text.len());
        assert!(toks.iter().all(|&t| t < 256));
        assert_eq!(TextTokenizer::Bytes.decode_lossy(&toks).unwrap(), text);
    }

    #[test]
    fn gpt2_encodes_known_ids_and_round_trips() {
        let gpt2 = TextTokenizer::Gpt2;
        assert_eq!(gpt2.encode("Hello world").unwrap(), vec![15496, 995]);
        let text = "Emma Woodhouse, handsome, clever, and rich.\n\nShe was 21 years old!";
        let toks = gpt2.encode(text).unwrap();
        assert!(toks.iter().all(|&t| (t as usize) < 50257));
        assert_eq!(gpt2.decode_lossy(&toks).unwrap(), text);
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

    /// progc encodes the fixture paragraph to the ids Python's `tokenizers` gives it with the
    /// same tokenizer.json, and decodes them back.
    #[test]
    fn a_python_tokenizer_json_gives_pythons_ids() {
        let t = HfTokenizer::open(Path::new(FIXTURE)).unwrap();
        assert_eq!(t.vocab(), 400);
        assert_eq!(t.end_of_text(), Some(0));
        let want: serde_json::Value = serde_json::from_slice(&std::fs::read(IDS).unwrap()).unwrap();
        let text = want["text"].as_str().unwrap();
        let python: Vec<u32> = serde_json::from_value(want["ids"].clone()).unwrap();
        assert!(python.len() > 100 && python.contains(&0), "{python:?}");
        let ids = TextTokenizer::Hf(Arc::new(t)).encode(text).unwrap();
        assert_eq!(ids, python);
        let t = HfTokenizer::open(Path::new(FIXTURE)).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), text);
    }

    /// Chunking is invisible: a long text gives the ids of encoding it in one call, whether
    /// its cuts are clean (a byte-level BPE) or not (a normalizer that prepends to every text,
    /// which makes every cut unclean).
    #[test]
    fn chunked_encoding_equals_one_call() {
        let text = "Emma Woodhouse, handsome, clever, and rich, with a comfortable home. "
            .repeat(CHUNK_BYTES / 40);
        let t = HfTokenizer::open(Path::new(FIXTURE)).unwrap();
        assert!(!gpt2_split_points(&text, CHUNK_BYTES).is_empty());
        assert_eq!(t.encode(&text).unwrap(), t.encode_one(&text).unwrap());
        let mut json: serde_json::Value = serde_json::from_slice(t.json()).unwrap();
        json["normalizer"] = serde_json::json!({"type": "Prepend", "prepend": "X"});
        let prepending =
            HfTokenizer::from_json(serde_json::to_vec(&json).unwrap(), "prepend").unwrap();
        let at = gpt2_split_points(&text, CHUNK_BYTES)[0];
        assert!(!prepending.cut_is_clean(&text, at).unwrap());
        assert_eq!(
            prepending.encode(&text).unwrap(),
            prepending.encode_one(&text).unwrap()
        );
    }

    #[test]
    fn bad_tokenizer_files_are_clear_errors() {
        let tmp = crate::testing::scratch("badtok");
        let dir = tmp.path();
        let e = HfTokenizer::open(&dir.join("none.json")).unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
        let corrupt = dir.join("corrupt.json");
        std::fs::write(&corrupt, "{\"model\": {\"vocab\": {\"a\": 0").unwrap();
        let e = HfTokenizer::open(&corrupt).unwrap_err();
        assert!(e.message.contains("not JSON") && e.help.is_some(), "{e}");
        // Valid for the checker's summary, but not a tokenizer the library can load.
        let odd = dir.join("odd.json");
        std::fs::write(
            &odd,
            "{\"model\": {\"type\": \"Nonesuch\", \"vocab\": {\"a\": 0}}}",
        )
        .unwrap();
        let e = HfTokenizer::open(&odd).unwrap_err();
        assert!(e.message.contains("cannot load"), "{e}");
        // A file that changed since the recipe was checked.
        let fixture = std::fs::read(FIXTURE).unwrap();
        let f =
            TokenizerFile::from_json("t.json", FIXTURE, b"{\"model\": {\"vocab\": {\"a\": 0}}}")
                .unwrap();
        let e = HfTokenizer::for_recipe(&f).unwrap_err();
        assert!(
            e.message
                .contains("not the file the recipe was checked with"),
            "{e}"
        );
        let f = TokenizerFile::from_json("t.json", FIXTURE, &fixture).unwrap();
        assert!(HfTokenizer::for_recipe(&f).is_ok());
    }
}
