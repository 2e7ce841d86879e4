//! The executor: trains a compiled plan with burn. The only part of progc that touches burn,
//! files and the GPU. It consumes `plan` types, never the AST.
//!
//! Four rooms, one question each:
//! - [`network`]: what is trained, and its math: the GPT-2 model, the fused kernels, the
//!   optimizers, depth growth, precision and the seeded RNG;
//! - [`device`]: where it runs: the device choice, backend dispatch, probes of CUDA and wgpu,
//!   and data parallelism over devices and nodes;
//! - [`jobs`]: what a command runs: the training loop, experiments, sampling, stop signals;
//! - [`io`]: what goes in and out: corpora and batches, checkpoints, metrics, reports and plots,
//!   the export, the run-directory lock, event files.
//!
//! Invariants:
//! - `network` knows nothing of files, devices or commands: it is generic over the backend and
//!   reads no file; `io` never trains; `jobs` is where they meet;
//! - every failure a user can cause is an [`ExecError`] with what to do, never a panic.

pub mod device;
pub mod error;
pub mod io;
pub mod jobs;
pub mod network;

pub use error::ExecError;
