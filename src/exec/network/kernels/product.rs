//! The one matrix product of the CPU kernels: `gemm` on strided row-major views.
//!
//! Invariants:
//! - operands are described by `(row stride, column stride)`, so transposes are free;
//! - `Threads::Auto` uses all cores (rayon) from flex's own size threshold on, `Threads::One`
//!   keeps a product on the calling thread (tasks that are already parallel, e.g. attention's
//!   per-head work).

#[derive(Clone, Copy)]
pub enum Threads {
    One,
    Auto,
}

/// Below this many multiply-adds a product runs on one thread (flex's threshold).
const PARALLEL_MACS: usize = 192 * 192 * 192;

/// `dst [m, n] (=|+=) beta * lhs [m, k] @ rhs [k, n]`, `dst` rows `dst_rs` apart.
///
/// # Safety
/// Every strided extent must lie inside a live buffer; with `acc`, `dst` must be initialized.
#[allow(clippy::too_many_arguments)]
pub unsafe fn product(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    dst_rs: usize,
    acc: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    beta: f32,
    threads: Threads,
) {
    let parallelism = match threads {
        Threads::Auto if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS => {
            gemm::Parallelism::Rayon(0)
        }
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the caller's promise.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            acc,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}
