//! The linear layer on the CPU with its neighbours fused: `y = r + s (x W + b)`, the bias add
//! and (for the two output projections of a block) the residual add and the residual scale
//! folded into the matrix product, forward and backward.
//!
//! Invariants:
//! - the output is written once: its rows are initialized to `r + s b` (or `b`), and the
//!   product is accumulated onto them by `gemm`, so neither the bias nor the residual costs a
//!   pass of its own;
//! - the backward reads `W` and `x` through transposed strides (no transposed copies), and the
//!   residual's gradient is `dy` itself (the caller passes it on without a kernel);
//! - the bias gradient sums whole columns in row order, so results do not depend on the
//!   thread count; the products use all cores (`gemm` over rayon) above a size threshold.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::product::{Threads, product};

/// `dst [m, n] (=|+=) beta * lhs [m, k] @ rhs [k, n]` on all cores; `dst` is `[m, n]`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    acc: bool,
    lhs: *const f32,
    lhs_strides: (usize, usize),
    rhs: *const f32,
    rhs_strides: (usize, usize),
    beta: f32,
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
            beta,
            Threads::Auto,
        )
    }
}

/// A vector of `len` f32, every element written by `fill` (through the pointer) before use.
///
/// # Safety
/// `fill` must write all `len` elements.
unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller's promise: all `len` elements are initialized.
    unsafe { v.set_len(len) };
    v
}

/// `y [n, m] = r + s (x [n, k] W [k, m] + b [m])`, or `x W + b` without a residual.
pub fn forward(x: &[f32], w: &[f32], b: &[f32], residual: Option<(&[f32], f32)>) -> Vec<f32> {
    let m = b.len();
    let k = w.len() / m;
    let n = x.len() / k;
    assert!(w.len() == k * m && x.len() == n * k);
    let s = residual.map_or(1.0, |(_, s)| s);
    let init = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(m)
            .enumerate()
            .for_each(|(i, row)| match residual {
                Some((r, s)) => {
                    let r = &r[i * m..(i + 1) * m];
                    for ((o, &ri), &bi) in row.iter_mut().zip(r).zip(b) {
                        o.write(ri + s * bi);
                    }
                }
                None => {
                    for (o, &bi) in row.iter_mut().zip(b) {
                        o.write(bi);
                    }
                }
            })
    };
    if let Some((r, _)) = residual {
        assert_eq!(r.len(), n * m);
    }
    // SAFETY: `init` writes every row of the `n x m` output.
    let mut y = unsafe { written(n * m, init) };
    // SAFETY: x is [n, k], w is [k, m], y is [n, m] and initialized.
    unsafe {
        gemm(
            [n, m, k],
            y.as_mut_ptr(),
            true,
            x.as_ptr(),
            (k, 1),
            w.as_ptr(),
            (m, 1),
            s,
        );
    }
    y
}

/// Gradients of `y = r + s (x W + b)`: `(dx, dW, db)`, each scaled by `s`.
pub fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    s: f32,
    m: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let k = w.len() / m;
    let n = x.len() / k;
    assert!(w.len() == k * m && x.len() == n * k && dy.len() == n * m);
    // SAFETY (both products): the destinations are written whole (`acc` false); the operands
    // are x [n, k], W [k, m] read as W^T [m, k], dy [n, m], x read as x^T [k, n].
    let dx = unsafe {
        written(n * k, |dx| {
            gemm(
                [n, k, m],
                dx.as_mut_ptr().cast(),
                false,
                dy.as_ptr(),
                (m, 1),
                w.as_ptr(),
                (1, m),
                s,
            )
        })
    };
    let dw = unsafe {
        written(k * m, |dw| {
            gemm(
                [k, m, n],
                dw.as_mut_ptr().cast(),
                false,
                x.as_ptr(),
                (1, k),
                dy.as_ptr(),
                (m, 1),
                s,
            )
        })
    };
    (dx, dw, column_sums(dy, m, s))
}

/// `s * sum_rows(dy)` for `dy [n, m]`, parallel over blocks of columns.
fn column_sums(dy: &[f32], m: usize, s: f32) -> Vec<f32> {
    const COLS: usize = 64;
    let mut db = vec![0f32; m];
    db.par_chunks_mut(COLS).enumerate().for_each(|(c, out)| {
        let (c0, len) = (c * COLS, out.len());
        for row in dy.chunks_exact(m) {
            for (o, &v) in out.iter_mut().zip(&row[c0..c0 + len]) {
                *o += v;
            }
        }
        out.iter_mut().for_each(|o| *o *= s);
    });
    db
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::network::kernels::attention::tests::{rel, values};

    #[test]
    fn matches_the_float64_reference() {
        // Below and above the threshold for threads, with and without a residual.
        for (n, k, m) in [(7, 5, 3), (300, 200, 190)] {
            let x = values(n * k, 31, 1.0);
            let w = values(k * m, 32, 0.5);
            let b = values(m, 33, 0.2);
            let r = values(n * m, 34, 1.0);
            let dy = values(n * m, 35, 1.0);
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            for res in [None, Some(0.5)] {
                let s = res.unwrap_or(1.0);
                let rf = f(&r);
                let y = forward(&f(&x), &f(&w), &f(&b), res.map(|s| (&rf[..], s as f32)));
                let (dx, dw, db) = backward(&f(&x), &f(&w), &f(&dy), s as f32, m);
                let (mut ry, mut rdx, mut rdw, mut rdb) = (
                    vec![0.0; n * m],
                    vec![0.0; n * k],
                    vec![0.0; k * m],
                    vec![0.0; m],
                );
                for i in 0..n {
                    for j in 0..m {
                        let xw: f64 = (0..k).map(|c| x[i * k + c] * w[c * m + j]).sum();
                        let base = if res.is_some() { r[i * m + j] } else { 0.0 };
                        ry[i * m + j] = base + s * (xw + b[j]);
                        rdb[j] += s * dy[i * m + j];
                    }
                    for c in 0..k {
                        rdx[i * k + c] =
                            s * (0..m).map(|j| dy[i * m + j] * w[c * m + j]).sum::<f64>();
                    }
                }
                for c in 0..k {
                    for j in 0..m {
                        rdw[c * m + j] =
                            s * (0..n).map(|i| x[i * k + c] * dy[i * m + j]).sum::<f64>();
                    }
                }
                let e = [rel(&y, &ry), rel(&dx, &rdx), rel(&dw, &rdw), rel(&db, &rdb)];
                assert!(
                    e.iter().all(|&e| e < 1e-5),
                    "[{n}, {k}, {m}] {res:?}: {e:?}"
                );
            }
        }
    }
}
