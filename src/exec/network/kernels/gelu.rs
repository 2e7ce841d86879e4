//! GELU on the CPU, exact erf form, vectorized and parallel, forward and backward. The bias
//! before it is already added by the linear kernel's output pass.
//!
//! Invariants:
//! - the activation is the exact `x Phi(x)` (burn's `gelu`), not the tanh approximation; the
//!   CDF comes from [`simd::phi_cdf`](super::simd::phi_cdf), within 2e-6 relative for `x >= -4`;
//! - elements are independent: results do not depend on chunking or thread count.

use rayon::prelude::*;

use super::simd::{gelu_and_grad, phi_cdf, simd_fn};

/// Elements per parallel task.
const ELEMS: usize = 1 << 14;

/// `y = gelu(x)`.
pub fn forward(x: &[f32], y: &mut [f32]) {
    assert_eq!(y.len(), x.len());
    y.par_chunks_mut(ELEMS)
        .zip(x.par_chunks(ELEMS))
        .for_each(|(y, x)| forward_chunk(x, y));
}

/// `dx = dy * gelu'(x)`.
pub fn backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(dy.len() == x.len() && dx.len() == x.len());
    dx.par_chunks_mut(ELEMS)
        .zip(x.par_chunks(ELEMS))
        .zip(dy.par_chunks(ELEMS))
        .for_each(|((dx, x), dy)| backward_chunk(x, dy, dx));
}

simd_fn! {
    fn forward_chunk(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v * phi_cdf(v);
        }
    }
}

simd_fn! {
    fn backward_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
            *o = g * gelu_and_grad(v).1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::network::kernels::attention::tests::{rel, values};

    #[test]
    fn matches_the_float64_reference() {
        let n = 40_003; // several tasks and a ragged tail
        let x = values(n, 11, 6.0);
        let dy = values(n, 13, 1.0);
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let mut y = vec![0.0; n];
        forward(&f(&x), &mut y);
        let mut dx = vec![0.0; n];
        backward(&f(&x), &f(&dy), &mut dx);
        let (mut ry, mut rdx) = (vec![], vec![]);
        for (&z, &g) in x.iter().zip(&dy) {
            let cdf = 0.5 * libm::erfc(-z / std::f64::consts::SQRT_2);
            let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
            ry.push(z * cdf);
            rdx.push(g * (cdf + z * pdf));
        }
        let e = [rel(&y, &ry), rel(&dx, &rdx)];
        assert!(e.iter().all(|&e| e < 1e-6), "y, dx errors {e:?}");
    }
}
