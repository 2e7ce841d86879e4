//! progc: compiles progressive-depth training recipes (`.prog`) into stage plans and runs them.
//!
//! The front end (`syntax` -> `check` -> `plan`, `diagnostic`, `lsp`) is its own crate,
//! `progc-front` (`front/`), re-exported here under the same names; it cannot reach burn or the
//! file system's outputs. This crate adds what needs them: `exec` (burn, files, the GPU) and
//! `cli`.

pub use progc_front::{check, diagnostic, lsp, plan, syntax};

pub mod cli;
pub mod exec;
#[cfg(test)]
mod testing;
