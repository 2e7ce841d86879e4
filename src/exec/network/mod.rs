//! The network and its math: what is trained, independent of where and why.
//!
//! - [`model`]: GPT-2 at any depth as a burn module, with its parameter names;
//! - [`kernels`]: the fused forward and backward kernels, one trait with one implementation
//!   per backend;
//! - [`optim`]: AdamW and Muon, owning every parameter's state;
//! - [`grow`]: a depth-`L` model into a deeper one, with each init;
//! - [`precision`]: f32, or bf16 matmuls with f32 master weights;
//! - [`rng`]: the host RNG that keys every random value by seed and name.
//!
//! Invariants:
//! - nothing here reads or writes files, picks a device or prints: code is generic over the
//!   backend `B`, and the same seed gives the same values on every backend;
//! - each kernel's forward and backward sit side by side with a float64 reference check.

pub mod grow;
pub mod kernels;
pub mod model;
pub mod optim;
pub mod precision;
pub mod rng;
