//! Files that leave or enter a run: checkpoints (safetensors + JSON metadata).
//!
//! Invariant: every writer here is atomic (temp file in the same directory, fsync, rename), and
//! every reader returns an `ExecError` for a foreign, damaged or old file, never a panic.

pub mod checkpoint;
