//! The front end of progc: a `.prog` file in, checked specs and stage plans out.
//!
//! The pipeline, one module per stage:
//! `syntax` (the pest grammar in `grammar/prog.pest`, an AST with spans, the formatter) ->
//! `check` (names, types, units, method rules; produces `plan::spec`) -> `plan` (petgraph IR,
//! FLOPs, serde), with `diagnostic` beside them and `lsp`, the language server, on top (feature `lsp`).
//!
//! Invariants:
//! - pure: no IO beyond reading sources and the tokenizer.json files they name (and the
//!   language server's stdio); no burn, cubecl, wgpu, tokio or `tokenizers` in this crate's
//!   dependency tree, so the boundary is the compiler's to keep;
//! - every user mistake is a `Diagnostic` with a code from `diagnostic::CODES`; nothing here
//!   panics on any input (fuzzed: `fuzz/`).

pub mod check;
pub mod diagnostic;
#[cfg(feature = "lsp")]
pub mod lsp;
pub mod plan;
pub mod syntax;
