//! Where a name or an import leads: the defining item, and the URI an editor can open for
//! it (the buffer, a file on disk, or a cached copy of an embedded std file).

use std::path::{Path, PathBuf};

use lsp_types::Url;

use crate::diagnostic::FileId;
use crate::syntax::ast::Item;
use crate::syntax::{Program, StdLib};

/// The item that defines `name`, the entry file's first.
pub(super) fn find_def<'p>(program: &'p Program, name: &str) -> Option<&'p Item> {
    program
        .modules
        .iter()
        .flat_map(|m| m.items.iter())
        .find(|i| i.name().is_some_and(|n| n.name == name))
}

/// The URI to open for a loaded file: the buffer itself, the file on disk, or the cached copy
/// of a std file.
pub(super) fn file_uri(program: &Program, file: FileId, entry: &Url) -> Option<Url> {
    if file == FileId(0) {
        return Some(entry.clone());
    }
    let name = &program.sources.get(file).name;
    if let Some(std_name) = name.strip_prefix("std/") {
        return std_copy(std_name);
    }
    let path = std::fs::canonicalize(name).ok()?;
    Url::from_file_path(path).ok()
}

/// Where `import "path"` in the buffer `entry` leads.
pub(super) fn import_target(entry: &Url, path: &str) -> Option<Url> {
    if let Ok(file) = entry.to_file_path() {
        let candidate = file.parent().unwrap_or(Path::new("")).join(path);
        if candidate.is_file() {
            return Url::from_file_path(std::fs::canonicalize(candidate).ok()?).ok();
        }
    }
    let base = Path::new(path).file_name()?.to_str()?;
    std_copy(base)
}

/// A read-only copy of the embedded `std/NAME`, written to the cache directory.
fn std_copy(name: &str) -> Option<Url> {
    let text = StdLib::get(name)?;
    let dir = match std::env::var_os("PROGC_CACHE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/progc"),
    }
    .join("std");
    let path = dir.join(name);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(&path, text).ok()?;
    }
    Url::from_file_path(std::fs::canonicalize(path).ok()?).ok()
}
