//! Loading a program: the entry file, its imports (transitively), the embedded std library, and
//! `--set` overrides, each as a file of one `SourceMap`.
//!
//! Invariants:
//! - the only IO in the front end is reading source files here, and the tokenizer.json files
//!   that recipes name (`check/tokenizer.rs`, for their vocabulary size);
//! - an import resolves relative to the importing file's directory first, then to the std
//!   library embedded in the binary (so an installed `progc` works anywhere);
//! - each file is loaded once: a std file reached from disk (identical text) and from the
//!   embedded copy counts as one, so import cycles and diamonds are harmless;
//! - a file that is not UTF-8 is a diagnostic (P0002) at its first invalid byte, not an IO
//!   error; it contributes an empty module, so nothing else is reported against garbled text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ast::{Ident, Item, Module, Value};
use super::parse::{parse, parse_set};
use crate::diagnostic::Span;
use crate::diagnostic::{Code, Diagnostic, FileId, SourceMap};

/// The std library, embedded at build time.
pub struct StdLib;

const STD_FILES: &[(&str, &str)] = &[
    ("gpt2.prog", include_str!("../../../std/gpt2.prog")),
    (
        "schedules.prog",
        include_str!("../../../std/schedules.prog"),
    ),
    ("paper.prog", include_str!("../../../std/paper.prog")),
];

impl StdLib {
    /// Text of `std/NAME` (`NAME` with or without the `std/` prefix).
    pub fn get(name: &str) -> Option<&'static str> {
        let name = name.strip_prefix("std/").unwrap_or(name);
        STD_FILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// Every std file as `(std/NAME, text)`.
    pub fn files() -> impl Iterator<Item = (String, &'static str)> {
        STD_FILES.iter().map(|(n, t)| (format!("std/{n}"), *t))
    }
}

/// A loaded program: every module reachable from the entry, in load order (entry first).
#[derive(Clone, Debug)]
pub struct Program {
    pub sources: SourceMap,
    pub modules: Vec<Module>,
    /// `--set key=value` overrides, in order; applied to every recipe that is resolved.
    pub overrides: Vec<(Ident, Value)>,
    /// Directory that relative paths written in a file resolve against: the file's own
    /// directory for disk files (the folder above `std/` for a library file there); absent
    /// (the working directory) for std and in-memory files.
    pub base_dirs: HashMap<FileId, PathBuf>,
}

impl Program {
    /// `path` as written in `file`, resolved against that file's base directory.
    pub fn resolve_path(&self, file: FileId, path: &str) -> String {
        match self.base_dirs.get(&file) {
            Some(dir) if !Path::new(path).is_absolute() && !dir.as_os_str().is_empty() => {
                dir.join(path).display().to_string()
            }
            _ => path.to_string(),
        }
    }
}

/// Where a loaded file lives, for resolving its imports.
#[derive(Clone, Debug)]
enum Origin {
    Disk(PathBuf),
    Std,
    Memory,
}

struct Loader {
    program: Program,
    diags: Vec<Diagnostic>,
    seen: HashMap<String, ()>,
}

/// Loads `entry` from disk. Only failing to read the entry file itself is an IO error; every
/// other problem (missing import, syntax) is a diagnostic.
pub fn load_program(entry: &Path, sets: &[String]) -> std::io::Result<(Program, Vec<Diagnostic>)> {
    let bytes = std::fs::read(entry)?;
    let name = entry.display().to_string();
    let origin = Origin::Disk(entry.to_path_buf());
    Ok(load_with(name, decode(bytes), origin, sets))
}

/// A file's bytes as text: `Ok` when they are UTF-8, else the text with each invalid sequence
/// replaced by U+FFFD and the byte offset of the first one (the same offset in both, since
/// the text before it is unchanged).
pub fn decode(bytes: Vec<u8>) -> Result<String, (String, usize)> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) => {
            let at = err.utf8_error().valid_up_to();
            Err((String::from_utf8_lossy(err.as_bytes()).into_owned(), at))
        }
    }
}

/// The P0002 diagnostic for a file that is not UTF-8, at the replacement character that stands
/// for its first invalid byte.
pub fn not_utf8(file: FileId, text: &str, at: usize) -> Diagnostic {
    let end = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
    Diagnostic::new(
        Code::P0002,
        Span::new(file, at, end),
        format!("file is not valid UTF-8: invalid byte sequence at byte offset {at}"),
    )
    .with_label("not UTF-8")
    .with_help(
        "recipes must be UTF-8 text; save the file as UTF-8 (or remove the stray bytes, e.g. \
         from a Latin-1 or UTF-16 editor)",
    )
}

/// Loads an entry file that lives at `path` but whose text is given (an editor's unsaved
/// buffer): imports resolve exactly as for `load_program`.
pub fn load_text(path: &Path, text: &str, sets: &[String]) -> (Program, Vec<Diagnostic>) {
    let name = path.display().to_string();
    let origin = Origin::Disk(path.to_path_buf());
    load_with(name, Ok(text.to_string()), origin, sets)
}

/// Loads an in-memory entry file (tests, fuzzing); imports resolve against the std library.
pub fn load_source(name: &str, text: &str, sets: &[String]) -> (Program, Vec<Diagnostic>) {
    load_with(name.to_string(), Ok(text.to_string()), Origin::Memory, sets)
}

fn load_with(
    name: String,
    text: Result<String, (String, usize)>,
    origin: Origin,
    sets: &[String],
) -> (Program, Vec<Diagnostic>) {
    let mut loader = Loader {
        program: Program {
            sources: SourceMap::new(),
            modules: Vec::new(),
            overrides: Vec::new(),
            base_dirs: HashMap::new(),
        },
        diags: Vec::new(),
        seen: HashMap::new(),
    };
    let key = file_key(&origin, &name, text.as_ref().unwrap_or_else(|(t, _)| t));
    loader.seen.insert(key.clone(), ());
    loader.add_file(key, name, text, origin);
    for (i, set) in sets.iter().enumerate() {
        let label = if sets.len() == 1 {
            "<--set>".to_string()
        } else {
            format!("<--set #{}>", i + 1)
        };
        let file = loader.program.sources.add(label, set.clone());
        match parse_set(file, set) {
            Ok(pair) => loader.program.overrides.push(pair),
            Err(d) => loader.diags.push(d),
        }
    }
    (loader.program, loader.diags)
}

impl Loader {
    fn add_file(
        &mut self,
        key: String,
        name: String,
        text: Result<String, (String, usize)>,
        origin: Origin,
    ) {
        // A disk copy of a std file is shown and resolved as the std file.
        let is_std = key.starts_with("std/");
        let name = if is_std { key } else { name };
        let text = match text {
            Ok(text) => text,
            Err((text, at)) => {
                let file = self.program.sources.add(name, text.clone());
                self.diags.push(not_utf8(file, &text, at));
                self.program.modules.push(Module {
                    file,
                    items: Vec::new(),
                });
                return;
            }
        };
        let file = self.program.sources.add(name, text.clone());
        if let (Origin::Disk(p), false) = (&origin, is_std) {
            self.program.base_dirs.insert(file, base_dir(p));
        }
        let (module, diags) = parse(file, &text);
        self.diags.extend(diags);
        let imports: Vec<(String, crate::diagnostic::Span)> = module
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Import { path, span } => Some((path.clone(), *span)),
                _ => None,
            })
            .collect();
        self.program.modules.push(module);
        for (path, span) in imports {
            self.import(&origin, &path, span);
        }
    }

    fn import(&mut self, from: &Origin, path: &str, span: crate::diagnostic::Span) {
        let mut tried = Vec::new();
        // 1. Relative to the importing file (disk files only).
        if let Origin::Disk(p) = from {
            let candidate = p.parent().unwrap_or(Path::new("")).join(path);
            tried.push(candidate.display().to_string());
            if let Ok(bytes) = std::fs::read(&candidate) {
                let name = candidate.display().to_string();
                let origin = Origin::Disk(candidate);
                return self.add_once(name, decode(bytes), origin);
            }
        }
        // 2. The std library (also what relative imports inside std files reach).
        let std_name = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(path);
        let in_std = path.starts_with("std/") || matches!(from, Origin::Std) || !path.contains('/');
        if in_std {
            tried.push(format!("std/{std_name} (built in)"));
            if let Some(text) = StdLib::get(std_name) {
                return self.add_once(format!("std/{std_name}"), Ok(text.to_string()), Origin::Std);
            }
        }
        let known: Vec<String> = StdLib::files().map(|(n, _)| n).collect();
        self.diags.push(
            Diagnostic::new(Code::P0101, span, format!("cannot find import `{path}`"))
                .with_label("not found")
                .with_help(format!(
                    "looked at {}; the std library has {}",
                    tried.join(", "),
                    known.join(", ")
                )),
        );
    }

    fn add_once(&mut self, name: String, text: Result<String, (String, usize)>, origin: Origin) {
        let key = file_key(&origin, &name, text.as_ref().unwrap_or_else(|(t, _)| t));
        if self.seen.insert(key.clone(), ()).is_none() {
            self.add_file(key, name, text, origin);
        }
    }
}

/// The directory a disk file's relative paths resolve against: its own, except for a library
/// file in a `std/` folder (`std/paper.prog`, edited since the build or not), whose paths are
/// written from the folder holding `std/`, as the embedded copy's are read from the working
/// directory. Without this, editing `std/paper.prog` would move its corpus to `std/data/...`.
fn base_dir(p: &Path) -> PathBuf {
    let dir = p.parent().unwrap_or(Path::new(""));
    let in_std_folder = dir.file_name().is_some_and(|n| n == "std");
    let is_library_file = p
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| StdLib::get(n).is_some());
    if in_std_folder && is_library_file {
        dir.parent().unwrap_or(Path::new("")).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Identity of a file for de-duplication: a disk copy of a std file is the std file.
fn file_key(origin: &Origin, name: &str, text: &str) -> String {
    let base = Path::new(name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(name);
    if StdLib::get(base) == Some(text) {
        return format!("std/{base}");
    }
    match origin {
        Origin::Disk(p) => std::fs::canonicalize(p)
            .map(|c| c.display().to_string())
            .unwrap_or_else(|_| name.to_string()),
        Origin::Std => format!("std/{base}"),
        Origin::Memory => format!("<memory>/{name}"),
    }
}
