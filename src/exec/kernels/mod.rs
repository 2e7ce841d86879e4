//! Fused kernels of the executor, written over burn's tensor API so that the same code runs on
//! every backend (flex on the CPU, cubecl on CUDA). Each one has a plain float64 reference in
//! its tests, and `bench/kernels.rs` checks it against that reference on whatever device it
//! is given (the GPU check).

pub mod head_ce;
