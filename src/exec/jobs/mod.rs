//! What a command runs: the training loop of one run, an experiment's runs with their shared
//! prefixes, sampling from a checkpoint, and the stop signals that end a run cleanly.
//!
//! Invariants:
//! - a job reads and writes only through `io` and trains only through `network`; the device
//!   comes from `device::dispatch`, so a job never names a backend;
//! - every job is restartable: a run resumes bit-identically from its latest checkpoint, and an
//!   experiment from its finished and interrupted runs.

pub mod experiment;
pub mod export;
pub mod sample;
pub mod stop;
pub mod train;
