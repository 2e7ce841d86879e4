//! The `tokenizer:` value of `text(...)` and `tokens(...)`: a built-in name (`gpt2`, `bytes`),
//! `bpe(N)`, or the path of a Hugging Face `tokenizer.json`.
//!
//! Invariants:
//! - a path resolves like a data path (against the declaring file's directory) and the file is
//!   read here, so that the vocabulary (and with it the model) is known before anything runs: a
//!   missing, unreadable or malformed file is P0112 at the string;
//! - a file's summary is remembered per (path, length, modification time), so the language
//!   server does not re-read a large tokenizer on every keystroke, and a changed file is read
//!   again;
//! - `bpe(N)` is only accepted where there is text to train it on (`text(...)`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use crate::diagnostic::{Code, Diagnostic};
use crate::plan::spec::{BPE_MAX_VOCAB, BPE_MIN_VOCAB, Tokenizer, TokenizerFile};
use crate::syntax::ast::{Value, ValueKind};

/// The tokenizer that is a call, `bpe(N)`, spelled once (the checker, the editor grammar).
pub const BPE_FUNC: &str = "bpe";
/// The tokenizer forms that are calls (the built-in names are [`Tokenizer::NAMES`]).
pub const TOKENIZER_FUNCS: &[&str] = &[BPE_FUNC];

use super::Checker;
use super::fields::bind_args;
use super::suggest::did_you_mean;
use super::value::{self, Sink};

/// What a tokenizer file gives: its summary, or why it cannot be used (the message and the
/// label at the string).
type Summary = Result<TokenizerFile, (String, &'static str)>;

/// Files read so far: (resolved path) -> (length, modification time, what was read).
type Memo = HashMap<PathBuf, (u64, Option<SystemTime>, Summary)>;

fn memo() -> &'static Mutex<Memo> {
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// Reads and summarizes the tokenizer file at `resolved` (written `path` in the recipe).
fn read_file(path: &str, resolved: &str) -> Summary {
    let key = PathBuf::from(resolved);
    let meta = match std::fs::metadata(&key) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            return Err((
                format!("tokenizer `{resolved}` is not a file"),
                "not a file",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err((
                format!("tokenizer file `{resolved}` does not exist"),
                "no such file",
            ));
        }
        Err(e) => {
            return Err((
                format!("cannot read tokenizer file `{resolved}`: {}", e.kind()),
                "cannot be read",
            ));
        }
    };
    let (len, modified) = (meta.len(), meta.modified().ok());
    let mut memo = memo().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((l, m, summary)) = memo.get(&key)
        && *l == len
        && *m == modified
        && modified.is_some()
    {
        return summary.clone().map(|f| TokenizerFile {
            path: path.to_string(),
            ..f
        });
    }
    let summary: Summary = match std::fs::read(&key) {
        Ok(bytes) => TokenizerFile::from_json(path, resolved, &bytes).map_err(|why| {
            (
                format!("tokenizer file `{resolved}` cannot be used: {why}"),
                "not a tokenizer.json",
            )
        }),
        Err(e) => Err((
            format!("cannot read tokenizer file `{resolved}`: {}", e.kind()),
            "cannot be read",
        )),
    };
    memo.insert(key, (len, modified, summary.clone()));
    summary
}

const FILE_HELP: &str = "a path resolves against the recipe's folder; a Hugging Face model ships \
                         its tokenizer.json, and `progc tokenize TEXT --train-bpe 4096 --out \
                         tokenizer.json` trains one";

impl<'p> Checker<'p> {
    /// A `tokenizer:` value; `text` says whether it belongs to `text(...)` (where `bpe(N)` is
    /// allowed) or to `tokens(...)`.
    pub(super) fn tokenizer(&mut self, v: &'p Value, text: bool) -> Option<Tokenizer> {
        match &v.kind {
            ValueKind::Str(path) => {
                let resolved = self.program.resolve_path(v.span.file, path);
                match read_file(path, &resolved) {
                    Ok(f) => Some(Tokenizer::File(f)),
                    Err((message, label)) => {
                        self.d.push(
                            Diagnostic::new(Code::P0112, v.span, message)
                                .with_label(label)
                                .with_help(FILE_HELP),
                        );
                        None
                    }
                }
            }
            ValueKind::Call(f, args) if f.name == BPE_FUNC => {
                let d = &mut self.d;
                let b = bind_args(f, args, &["size"], d);
                let Some(n) = b.get("size") else {
                    d.push(
                        Diagnostic::new(Code::P0107, f.span, "`bpe(...)` has no size")
                            .with_label("`size` missing")
                            .with_help("give the vocabulary size: `bpe(4096)`"),
                    );
                    return None;
                };
                let size = bpe_size(n, d)?;
                if !text {
                    d.push(
                        Diagnostic::new(
                            Code::P0201,
                            v.span,
                            "`bpe(N)` trains a tokenizer on text, but `tokens(...)` shards are \
                             already tokenized",
                        )
                        .with_label("not for shards")
                        .with_help(
                            "name the tokenizer that wrote the shards: `gpt2`, `bytes` or its \
                             tokenizer.json (`progc tokenize --train-bpe N` writes one)",
                        ),
                    );
                    return None;
                }
                Some(Tokenizer::Bpe(size))
            }
            ValueKind::Ref(n, None) => {
                if let Some(t) = Tokenizer::from_name(&n.name) {
                    return Some(t);
                }
                let forms = Tokenizer::forms_text();
                let help = if n.name == BPE_FUNC {
                    "`bpe` needs its vocabulary size: `bpe(4096)`".to_string()
                } else {
                    did_you_mean(&n.name, Tokenizer::NAMES)
                        .unwrap_or_else(|| format!("`tokenizer` is {forms}"))
                };
                self.d.push(
                    Diagnostic::new(
                        Code::P0110,
                        n.span,
                        format!("unknown `tokenizer` value `{}`", n.name),
                    )
                    .with_label(format!("expected {forms}"))
                    .with_help(help),
                );
                None
            }
            _ => {
                value::mismatch(
                    v,
                    &format!("a tokenizer: {}", Tokenizer::forms_text()),
                    &mut self.d,
                );
                None
            }
        }
    }
}

/// The `N` of `bpe(N)`: an integer in `BPE_MIN_VOCAB..=BPE_MAX_VOCAB`.
fn bpe_size(n: &Value, d: &mut Sink) -> Option<usize> {
    let size = value::integer(n, "size", 0, d)?;
    if !(BPE_MIN_VOCAB as u64..=BPE_MAX_VOCAB as u64).contains(&size) {
        let message = if size < BPE_MIN_VOCAB as u64 {
            format!(
                "`bpe({size})` is too small: a byte-level BPE has the 256 bytes and \
                 `<|endoftext|>`, so at least {BPE_MIN_VOCAB} tokens"
            )
        } else {
            format!("`bpe({size})` is too large: at most {BPE_MAX_VOCAB} tokens")
        };
        value::out_of_range(
            n.span,
            message,
            Some("a few thousand tokens suit a small model: `bpe(4096)`"),
            d,
        );
        return None;
    }
    Some(size as usize)
}
