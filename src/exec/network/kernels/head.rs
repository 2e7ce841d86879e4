//! The fused cross-entropy head (see [`head_ce`](super::head_ce)) on the CPU: a chunk of rows
//! at a time, logits by `gemm` over all cores, then one parallel pass per row that turns them
//! into the loss term and, in place, the gradient of the logits.
//!
//! Invariants:
//! - the same chunking as the tensor version: at most `chunk_rows x V` logits alive;
//! - the loss is summed per row, then over rows in order, and `dW` accumulates chunk after
//!   chunk: results do not depend on the thread count;
//! - targets are checked against the vocabulary by the caller (an out-of-range target goes
//!   through the composition instead of being read past the row).

use rayon::prelude::*;

use super::attention::max;
use super::layer_norm::sum;
use super::product::{Threads, product};
use super::simd::{exp, simd_fn};

/// `dst [m, n] (=|+=) lhs [m, k] @ rhs [k, n]` on all cores; `dst` is `[m, n]`.
unsafe fn gemm(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    acc: bool,
    lhs: *const f32,
    lhs_strides: (usize, usize),
    rhs: *const f32,
    rhs_strides: (usize, usize),
) {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        product(
            [m, n, k],
            dst,
            n,
            acc,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            1.0,
            Threads::Auto,
        )
    }
}

/// Mean loss of `targets` under logits `h [n, d] W^T` (`W [V, d]`), and with `grads` the
/// gradients `(dh [n, d], dW [V, d])` of that mean.
pub fn pass(
    h: &[f32],
    w: &[f32],
    targets: &[usize],
    d: usize,
    chunk_rows: usize,
    grads: bool,
) -> (f32, Option<(Vec<f32>, Vec<f32>)>) {
    let n = targets.len();
    let v = w.len() / d;
    assert!(h.len() == n * d && w.len() == v * d && n > 0);
    let k = 1.0 / n as f32;
    let chunk = chunk_rows.clamp(1, n);
    let mut logits = vec![0f32; chunk * v];
    let mut row_loss = vec![0f32; n];
    let (mut dh, mut dw) = if grads {
        (vec![0f32; n * d], vec![0f32; v * d])
    } else {
        (Vec::new(), Vec::new())
    };
    for r0 in (0..n).step_by(chunk) {
        let len = chunk.min(n - r0);
        let z = &mut logits[..len * v];
        let hc = &h[r0 * d..(r0 + len) * d];
        // SAFETY: hc is [len, d]; W read as W^T [d, V]; z is [len, V].
        unsafe {
            gemm(
                [len, v, d],
                z.as_mut_ptr(),
                false,
                hc.as_ptr(),
                (d, 1),
                w.as_ptr(),
                (1, d),
            )
        };
        z.par_chunks_mut(v)
            .zip(row_loss[r0..r0 + len].par_iter_mut())
            .zip(targets[r0..r0 + len].par_iter())
            .for_each(|((row, loss), &t)| *loss = row_terms(row, t, grads, k));
        if grads {
            // SAFETY: z is [len, V] (now d loss / d logits); dh rows r0.. are [len, d].
            unsafe {
                gemm(
                    [len, d, v],
                    dh[r0 * d..].as_mut_ptr(),
                    false,
                    z.as_ptr(),
                    (v, 1),
                    w.as_ptr(),
                    (d, 1),
                );
                gemm(
                    [v, d, len],
                    dw.as_mut_ptr(),
                    r0 > 0,
                    z.as_ptr(),
                    (1, v),
                    hc.as_ptr(),
                    (d, 1),
                );
            }
        }
    }
    let loss = row_loss.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    (loss as f32, grads.then_some((dh, dw)))
}

simd_fn! {
    /// One row of logits -> its loss term `log sum exp - z_t`; with `grads`, the row becomes
    /// `k (softmax - onehot(t))`.
    fn row_terms(row: &mut [f32], t: usize, grads: bool, k: f32) -> f32 {
        let m = max(row);
        let zt = row[t] - m;
        row.iter_mut().for_each(|x| *x = exp(*x - m));
        let s = sum(row);
        if grads {
            let inv = k / s;
            row.iter_mut().for_each(|x| *x *= inv);
            row[t] -= k;
        }
        s.ln() - zt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::network::kernels::attention::tests::rel;
    use crate::exec::network::kernels::head_ce::reference::{head_ce, uniform};

    #[test]
    fn matches_the_float64_reference() {
        let (n, d, v) = (37, 12, 50);
        let h = uniform(n * d, 1);
        let w = uniform(v * d, 2);
        let t: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % v).collect();
        let (rl, rdh, rdw) = head_ce(&h, &w, &t, d);
        let f = |x: &[f64]| x.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        for chunk in [n, 10, 1] {
            let (loss, g) = pass(&f(&h), &f(&w), &t, d, chunk, true);
            let (dh, dw) = g.expect("gradients were asked for");
            let e = [
                ((loss as f64 - rl) / rl).abs(),
                rel(&dh, &rdh),
                rel(&dw, &rdw),
            ];
            assert!(
                e.iter().all(|&e| e < 1e-5),
                "chunk {chunk}: loss, dh, dw errors {e:?}"
            );
            let (eval, none) = pass(&f(&h), &f(&w), &t, d, chunk, false);
            assert!(none.is_none() && (eval - loss).abs() < 1e-6);
        }
    }
}
