//! Causal self-attention on the CPU, forward and backward, flash-style: parallel over
//! (batch x head) with rayon, a block of query rows at a time, straight from the packed
//! `qkv [n, 3d]` rows and into the `[n, d]` output (no head split or transposed copies).
//!
//! Invariants:
//! - the forward keeps only the output and the log-sum-exp of each score row; the score block
//!   of `ROWS` queries against the keys they can see is scratch of one task, so no
//!   `[B, H, T, T]` tensor ever exists;
//! - the backward recomputes each block's probabilities from `q`, `k` and the log-sum-exp, and
//!   uses `delta_i = dO_i . O_i` (equal to `sum_j P_ij dP_ij`);
//! - every (batch, head) task writes disjoint columns of disjoint rows of its outputs, so the
//!   tasks share the output buffers without locks; results do not depend on the thread count;
//! - the products go through `gemm` on strided views of the packed rows, one thread per task.

use rayon::prelude::*;

use super::AttnShape;
use super::layer_norm::sum;
use super::product::{Threads, product};
use super::simd::{exp, simd_fn};

/// Query rows per block: the scratch is `ROWS x seq` scores (256 KB at context 1024).
const ROWS: usize = 64;

/// A raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: every task writes a disjoint set of elements (the module's invariants).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// One task's product, on its own thread.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    mnk: [usize; 3],
    dst: *mut f32,
    dst_rs: usize,
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
            mnk,
            dst,
            dst_rs,
            acc,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            beta,
            Threads::One,
        )
    }
}

/// Forward: `out [n, d]` and `lse [batch * heads, seq]` from `qkv [n, 3d]`.
pub fn forward(qkv: &[f32], s: AttnShape, out: &mut [f32], lse: &mut [f32]) {
    let (t, d, hd) = (s.seq, s.width, s.head_dim());
    assert_eq!(qkv.len(), s.batch * t * 3 * d);
    assert_eq!(out.len(), s.batch * t * d);
    assert_eq!(lse.len(), s.batch * s.heads * t);
    let out_ptr = Shared(out.as_mut_ptr());
    let scale = s.scale();
    lse.par_chunks_mut(t).enumerate().for_each(|(bh, lse)| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let base = b * t * 3 * d + h * hd; // q of row 0 of this (batch, head)
        let q = qkv[base..].as_ptr();
        let k = qkv[base + d..].as_ptr();
        let v = qkv[base + 2 * d..].as_ptr();
        let o = out_ptr;
        let mut p = vec![0f32; ROWS.min(t) * t];
        for r0 in (0..t).step_by(ROWS) {
            let r1 = (r0 + ROWS).min(t);
            let br = r1 - r0;
            let p = &mut p[..br * r1];
            // SAFETY: q rows r0..r1 and k rows 0..r1 lie inside qkv; p is br x r1.
            unsafe {
                gemm(
                    [br, r1, hd],
                    p.as_mut_ptr(),
                    r1,
                    false,
                    q.add(r0 * 3 * d),
                    (3 * d, 1),
                    k,
                    (1, 3 * d),
                    scale,
                );
            }
            softmax_rows(p, r0, &mut lse[r0..r1]);
            // SAFETY: out rows r0..r1 of this batch, columns h*hd.., belong to this task.
            unsafe {
                gemm(
                    [br, hd, r1],
                    o.0.add((b * t + r0) * d + h * hd),
                    d,
                    false,
                    p.as_ptr(),
                    (r1, 1),
                    v,
                    (3 * d, 1),
                    1.0,
                );
            }
        }
    });
}

/// Backward: `dqkv [n, 3d]` from the forward's inputs, output, log-sum-exp and `dout [n, d]`.
pub fn backward(
    qkv: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    s: AttnShape,
    dqkv: &mut [f32],
) {
    let (t, d, hd) = (s.seq, s.width, s.head_dim());
    assert_eq!(qkv.len(), s.batch * t * 3 * d);
    assert_eq!(dqkv.len(), qkv.len());
    assert_eq!(out.len(), s.batch * t * d);
    assert_eq!(dout.len(), out.len());
    assert_eq!(lse.len(), s.batch * s.heads * t);
    dqkv.fill(0.0); // dk and dv accumulate over row blocks
    let dptr = Shared(dqkv.as_mut_ptr());
    let scale = s.scale();
    (0..s.batch * s.heads).into_par_iter().for_each(|bh| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let base = b * t * 3 * d + h * hd;
        let obase = b * t * d + h * hd;
        let q = qkv[base..].as_ptr();
        let k = qkv[base + d..].as_ptr();
        let v = qkv[base + 2 * d..].as_ptr();
        let lse = &lse[bh * t..(bh + 1) * t];
        let dq = dptr;
        let mut p = vec![0f32; ROWS.min(t) * t];
        let mut ds = vec![0f32; ROWS.min(t) * t];
        let mut delta = [0f32; ROWS];
        for r0 in (0..t).step_by(ROWS) {
            let r1 = (r0 + ROWS).min(t);
            let br = r1 - r0;
            let (p, ds) = (&mut p[..br * r1], &mut ds[..br * r1]);
            deltas(
                &dout[obase + r0 * d..],
                &out[obase + r0 * d..],
                d,
                hd,
                &mut delta[..br],
            );
            // SAFETY (all gemm calls below): every strided extent lies inside qkv, dout or
            // this task's scratch, and the dqkv columns written belong to this (batch, head).
            unsafe {
                gemm(
                    [br, r1, hd],
                    p.as_mut_ptr(),
                    r1,
                    false,
                    q.add(r0 * 3 * d),
                    (3 * d, 1),
                    k,
                    (1, 3 * d),
                    scale,
                );
                gemm(
                    [br, r1, hd],
                    ds.as_mut_ptr(),
                    r1,
                    false,
                    dout[obase + r0 * d..].as_ptr(),
                    (d, 1),
                    v,
                    (1, 3 * d),
                    1.0,
                );
            }
            softmax_grad_rows(p, ds, r0, &lse[r0..r1], &delta[..br]);
            unsafe {
                // dV[0..r1] += P^T dO
                gemm(
                    [r1, hd, br],
                    dq.0.add(base + 2 * d),
                    3 * d,
                    true,
                    p.as_ptr(),
                    (1, r1),
                    dout[obase + r0 * d..].as_ptr(),
                    (d, 1),
                    1.0,
                );
                // dQ[r0..r1] = scale dS K
                gemm(
                    [br, hd, r1],
                    dq.0.add(base + r0 * 3 * d),
                    3 * d,
                    false,
                    ds.as_ptr(),
                    (r1, 1),
                    k,
                    (3 * d, 1),
                    scale,
                );
                // dK[0..r1] += scale dS^T Q
                gemm(
                    [r1, hd, br],
                    dq.0.add(base + d),
                    3 * d,
                    true,
                    ds.as_ptr(),
                    (1, r1),
                    q.add(r0 * 3 * d),
                    (3 * d, 1),
                    scale,
                );
            }
        }
    });
}

simd_fn! {
    /// Rows `r0..` of a score block (each `p.len() / lse.len()` long) -> probabilities in
    /// place (zero past the diagonal), with each row's log-sum-exp.
    fn softmax_rows(p: &mut [f32], r0: usize, lse: &mut [f32]) {
        let r1 = p.len() / lse.len();
        for (ii, row) in p.chunks_exact_mut(r1).enumerate() {
            let (seen, future) = row.split_at_mut(r0 + ii + 1);
            let m = max(seen);
            seen.iter_mut().for_each(|x| *x = exp(*x - m));
            let l = sum(seen);
            let inv = 1.0 / l;
            seen.iter_mut().for_each(|x| *x *= inv);
            future.iter_mut().for_each(|x| *x = 0.0);
            lse[ii] = m + l.ln();
        }
    }
}

simd_fn! {
    /// `delta_i = dO_i . O_i` for the rows of a block (`d` apart, `hd` long).
    fn deltas(dout: &[f32], out: &[f32], d: usize, hd: usize, delta: &mut [f32]) {
        for (ii, dl) in delta.iter_mut().enumerate() {
            *dl = dot(&dout[ii * d..ii * d + hd], &out[ii * d..ii * d + hd]);
        }
    }
}

simd_fn! {
    /// Scores -> probabilities `P = exp(S - lse)` in `p`, and `dP` -> `dS = P (dP - delta)`
    /// in `ds`, zero past the diagonal.
    fn softmax_grad_rows(p: &mut [f32], ds: &mut [f32], r0: usize, lse: &[f32], delta: &[f32]) {
        let r1 = p.len() / lse.len();
        for (ii, (prow, dsrow)) in p.chunks_exact_mut(r1).zip(ds.chunks_exact_mut(r1)).enumerate() {
            let i = r0 + ii;
            let (l, dl) = (lse[ii], delta[ii]);
            for (pj, dsj) in prow[..=i].iter_mut().zip(&mut dsrow[..=i]) {
                *pj = exp(*pj - l);
                *dsj = *pj * (*dsj - dl);
            }
            prow[i + 1..].iter_mut().for_each(|x| *x = 0.0);
            dsrow[i + 1..].iter_mut().for_each(|x| *x = 0.0);
        }
    }
}

/// Maximum in eight lanes (vectorizes).
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let c = a.chunks_exact(8);
    let tail = c
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for x in c {
        for l in 0..8 {
            acc[l] = if x[l] > acc[l] { x[l] } else { acc[l] };
        }
    }
    acc.iter().fold(tail, |m, &x| m.max(x))
}

/// Dot product in eight lanes (vectorizes; the lane order is fixed, so results are
/// reproducible).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Float64 reference: output, log-sum-exp and dqkv, by the textbook formulas (the backward
    /// through `sum_j P dP`, not the kernel's `dO . O`).
    pub fn reference(qkv: &[f64], dout: &[f64], s: AttnShape) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (t, d, hd) = (s.seq, s.width, s.head_dim());
        let scale = 1.0 / (hd as f64).sqrt();
        let mut out = vec![0.0; s.batch * t * d];
        let mut lse = vec![0.0; s.batch * s.heads * t];
        let mut dqkv = vec![0.0; qkv.len()];
        for b in 0..s.batch {
            for h in 0..s.heads {
                let at = |i: usize, part: usize, c: usize| {
                    qkv[(b * t + i) * 3 * d + part * d + h * hd + c]
                };
                let mut p = vec![vec![0.0; t]; t];
                for i in 0..t {
                    let sc: Vec<f64> = (0..=i)
                        .map(|j| (0..hd).map(|c| at(i, 0, c) * at(j, 1, c)).sum::<f64>() * scale)
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let l: f64 = sc.iter().map(|x| (x - m).exp()).sum();
                    lse[(b * s.heads + h) * t + i] = m + l.ln();
                    for j in 0..=i {
                        p[i][j] = (sc[j] - m).exp() / l;
                    }
                    for c in 0..hd {
                        out[(b * t + i) * d + h * hd + c] =
                            (0..=i).map(|j| p[i][j] * at(j, 2, c)).sum();
                    }
                }
                let g = |i: usize, c: usize| dout[(b * t + i) * d + h * hd + c];
                for i in 0..t {
                    let dp: Vec<f64> = (0..t)
                        .map(|j| (0..hd).map(|c| g(i, c) * at(j, 2, c)).sum())
                        .collect();
                    let pdp: f64 = (0..t).map(|j| p[i][j] * dp[j]).sum();
                    for j in 0..=i {
                        let dsij = p[i][j] * (dp[j] - pdp) * scale;
                        for c in 0..hd {
                            dqkv[(b * t + i) * 3 * d + h * hd + c] += dsij * at(j, 1, c);
                            dqkv[(b * t + j) * 3 * d + d + h * hd + c] += dsij * at(i, 0, c);
                            dqkv[(b * t + j) * 3 * d + 2 * d + h * hd + c] += p[i][j] * g(i, c);
                        }
                    }
                }
            }
        }
        (out, lse, dqkv)
    }

    /// `|a - b| / |b|` over whole vectors.
    pub fn rel(a: &[f32], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    /// Deterministic values in about [-scale, scale].
    pub fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn check(s: AttnShape) {
        let n = s.batch * s.seq;
        let qkv = values(n * 3 * s.width, 1, 2.0);
        let dout = values(n * s.width, 2, 1.0);
        let (ro, rl, rd) = reference(&qkv, &dout, s);
        let q32: Vec<f32> = qkv.iter().map(|&x| x as f32).collect();
        let d32: Vec<f32> = dout.iter().map(|&x| x as f32).collect();
        let mut out = vec![0.0; n * s.width];
        let mut lse = vec![0.0; s.batch * s.heads * s.seq];
        forward(&q32, s, &mut out, &mut lse);
        let mut dqkv = vec![1.0; q32.len()]; // garbage: the kernel must overwrite it
        backward(&q32, &out, &lse, &d32, s, &mut dqkv);
        let (eo, el, ed) = (rel(&out, &ro), rel(&lse, &rl), rel(&dqkv, &rd));
        assert!(
            eo < 1e-5 && el < 1e-6 && ed < 1e-5,
            "{s:?}: out {eo:e} lse {el:e} dqkv {ed:e}"
        );
    }

    #[test]
    fn matches_the_float64_reference() {
        // One block, several blocks with a ragged last one, one head, odd head sizes.
        check(AttnShape {
            batch: 2,
            seq: 16,
            heads: 2,
            width: 16,
        });
        check(AttnShape {
            batch: 1,
            seq: 150,
            heads: 3,
            width: 24,
        });
        check(AttnShape {
            batch: 3,
            seq: 7,
            heads: 1,
            width: 5,
        });
    }

    #[test]
    fn the_reference_backward_is_the_derivative_of_its_forward() {
        let s = AttnShape {
            batch: 1,
            seq: 5,
            heads: 2,
            width: 4,
        };
        let qkv = values(5 * 12, 3, 1.5);
        let dout = values(5 * 4, 4, 1.0);
        let (_, _, grad) = reference(&qkv, &dout, s);
        let f = |x: &[f64]| -> f64 {
            let (o, _, _) = reference(x, &dout, s);
            o.iter().zip(&dout).map(|(a, b)| a * b).sum()
        };
        for i in [0, 7, 13, 22, 31, 44, 59] {
            let (mut a, mut b) = (qkv.clone(), qkv.clone());
            a[i] += 1e-6;
            b[i] -= 1e-6;
            let fd = (f(&a) - f(&b)) / 2e-6;
            assert!(
                (fd - grad[i]).abs() < 1e-6,
                "element {i}: {fd} vs {}",
                grad[i]
            );
        }
    }
}
