//! LayerNorm on the CPU over the rows of `x [n, d]`: one pass forward (statistics, then the
//! normalized row), one pass backward (the row's two reductions, then `dx`), parallel over
//! blocks of rows.
//!
//! Invariants:
//! - the forward saves `(mean, 1 / sqrt(var + eps))` per row, the biased variance, as
//!   [`compose`](super::compose) does;
//! - the gain and bias gradients are summed per block of `ROWS` rows, then over blocks in
//!   order: the result does not depend on the thread count.

use rayon::prelude::*;

use super::attention::dot;
use super::compose::LN_EPS;
use super::simd::simd_fn;

const ROWS: usize = 32;

/// Sum in eight lanes (vectorizes, fixed order).
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = a.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y = (x - mean) rstd * g + b` and `stats [n, 2]`.
pub fn forward(x: &[f32], g: &[f32], b: &[f32], y: &mut [f32], stats: &mut [f32]) {
    let d = g.len();
    let n = x.len() / d;
    assert!(b.len() == d && x.len() == n * d && y.len() == x.len() && stats.len() == 2 * n);
    y.par_chunks_mut(ROWS * d)
        .zip(stats.par_chunks_mut(ROWS * 2))
        .zip(x.par_chunks(ROWS * d))
        .for_each(|((y, st), x)| forward_rows(x, g, b, y, st));
}

simd_fn! {
    fn forward_rows(x: &[f32], g: &[f32], b: &[f32], y: &mut [f32], st: &mut [f32]) {
        let d = g.len();
        for ((yr, xr), sr) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(st.chunks_exact_mut(2)) {
            let mean = sum(xr) / d as f32;
            let mut acc = [0f32; 8];
            let c = xr.chunks_exact(8);
            let tail: f32 = c.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
            for v in c {
                for l in 0..8 {
                    acc[l] += (v[l] - mean) * (v[l] - mean);
                }
            }
            let var = (acc.iter().sum::<f32>() + tail) / d as f32;
            let rstd = 1.0 / (var + LN_EPS as f32).sqrt();
            for (((o, &v), &gi), &bi) in yr.iter_mut().zip(xr).zip(g).zip(b) {
                *o = (v - mean) * rstd * gi + bi;
            }
            sr[0] = mean;
            sr[1] = rstd;
        }
    }
}

/// `dx`, `dg`, `db` from `x`, `g`, the forward's statistics and `dy`.
pub fn backward(
    x: &[f32],
    g: &[f32],
    stats: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
) {
    let d = g.len();
    let n = x.len() / d;
    assert!(x.len() == n * d && dy.len() == x.len() && dx.len() == x.len() && stats.len() == 2 * n);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS * d)
        .zip(x.par_chunks(ROWS * d))
        .zip(dy.par_chunks(ROWS * d))
        .zip(stats.par_chunks(ROWS * 2))
        .map(|(((dx, x), dy), st)| {
            let (mut pg, mut pb) = (vec![0f32; d], vec![0f32; d]);
            backward_rows(x, g, st, dy, dx, &mut pg, &mut pb);
            (pg, pb)
        })
        .collect();
    dg.fill(0.0);
    db.fill(0.0);
    for (pg, pb) in &partials {
        dg.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
}

simd_fn! {
    /// One block of rows; adds the block's gain and bias gradients into `pg`, `pb`.
    fn backward_rows(
        x: &[f32],
        g: &[f32],
        st: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        pg: &mut [f32],
        pb: &mut [f32],
    ) {
        let d = g.len();
        let mut xhat = vec![0f32; d];
        let mut dxhat = vec![0f32; d];
        for (((dxr, xr), dyr), sr) in dx
            .chunks_exact_mut(d)
            .zip(x.chunks_exact(d))
            .zip(dy.chunks_exact(d))
            .zip(st.chunks_exact(2))
        {
            let (mean, rstd) = (sr[0], sr[1]);
            for j in 0..d {
                xhat[j] = (xr[j] - mean) * rstd;
                dxhat[j] = dyr[j] * g[j];
                pg[j] += dyr[j] * xhat[j];
                pb[j] += dyr[j];
            }
            let a = sum(&dxhat) / d as f32;
            let c = dot(&dxhat, &xhat) / d as f32;
            for j in 0..d {
                dxr[j] = (dxhat[j] - a - xhat[j] * c) * rstd;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::exec::network::kernels::attention::tests::{rel, values};

    /// Float64 LayerNorm: output and the three gradients of `sum(y * dy)`.
    pub fn reference(x: &[f64], g: &[f64], b: &[f64], dy: &[f64]) -> [Vec<f64>; 4] {
        let d = g.len();
        let (mut y, mut dx, mut dg, mut db) = (vec![], vec![], vec![0.0; d], vec![0.0; d]);
        for (xr, dyr) in x.chunks(d).zip(dy.chunks(d)) {
            let mean = xr.iter().sum::<f64>() / d as f64;
            let var = xr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + LN_EPS).sqrt();
            let xhat: Vec<f64> = xr.iter().map(|v| (v - mean) * rstd).collect();
            let dxhat: Vec<f64> = dyr.iter().zip(g).map(|(a, b)| a * b).collect();
            let a = dxhat.iter().sum::<f64>() / d as f64;
            let c = dxhat.iter().zip(&xhat).map(|(p, q)| p * q).sum::<f64>() / d as f64;
            for j in 0..d {
                y.push(xhat[j] * g[j] + b[j]);
                dx.push((dxhat[j] - a - xhat[j] * c) * rstd);
                dg[j] += dyr[j] * xhat[j];
                db[j] += dyr[j];
            }
        }
        [y, dx, dg, db]
    }

    #[test]
    fn matches_the_float64_reference() {
        for (n, d) in [(5, 16), (77, 130), (1, 3)] {
            let x: Vec<f64> = values(n * d, 5, 3.0).iter().map(|v| v + 0.7).collect();
            let g: Vec<f64> = values(d, 6, 0.5).iter().map(|v| v + 1.0).collect();
            let b = values(d, 7, 0.3);
            let dy = values(n * d, 8, 1.0);
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (mut y, mut st) = (vec![0.0; n * d], vec![0.0; 2 * n]);
            forward(&f(&x), &f(&g), &f(&b), &mut y, &mut st);
            let (mut dx, mut dg, mut db) = (vec![0.0; n * d], vec![9.0; d], vec![9.0; d]);
            backward(&f(&x), &f(&g), &st, &f(&dy), &mut dx, &mut dg, &mut db);
            let [ry, rdx, rdg, rdb] = reference(&x, &g, &b, &dy);
            let e = [rel(&y, &ry), rel(&dx, &rdx), rel(&dg, &rdg), rel(&db, &rdb)];
            assert!(
                e.iter().all(|&e| e < 1e-5),
                "[{n}, {d}]: y, dx, dg, db errors {e:?}"
            );
        }
    }
}
