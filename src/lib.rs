//! progc: compiles progressive-depth training recipes (`.prog`) into stage plans and runs them.
//!
//! The pipeline, one module per stage:
//! `syntax` (parse, AST with spans) -> `check` (names, types, units, method rules; produces
//! `plan::spec`) -> `plan` (petgraph IR, FLOPs, serde) -> `exec` (burn, files, the GPU) -> `cli`.
//! Everything before `exec` is pure: no IO beyond reading sources, no burn. `lsp` is the
//! language server, built on the front end and `plan` only.

pub mod check;
pub mod cli;
pub mod diagnostic;
pub mod exec;
pub mod lsp;
pub mod plan;
pub mod syntax;
