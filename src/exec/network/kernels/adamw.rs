//! AdamW on the CPU: one pass over each parameter, in place, chunked over the cores.
//!
//! Invariants:
//! - the same arithmetic as [`compose::adamw`](super::compose::adamw), element by element,
//!   with the scalars rounded to f32 once (as burn's scalar ops do);
//! - elements are independent, so the result does not depend on chunking or thread count.

use rayon::prelude::*;

use super::AdamWStep;
use super::simd::simd_fn;

const ELEMS: usize = 1 << 14;

/// Updates `p`, `m`, `v` in place with gradient `g`.
pub fn step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWStep) {
    assert!(g.len() == p.len() && m.len() == p.len() && v.len() == p.len());
    let k = Consts::of(h);
    p.par_chunks_mut(ELEMS)
        .zip(g.par_chunks(ELEMS))
        .zip(m.par_chunks_mut(ELEMS))
        .zip(v.par_chunks_mut(ELEMS))
        .for_each(|(((p, g), m), v)| chunk(p, g, m, v, k));
}

/// The step's scalars in f32.
#[derive(Clone, Copy)]
struct Consts {
    b1: f32,
    b2: f32,
    c1: f32,
    c2: f32,
    inv_sqrt_bc2: f32,
    eps: f32,
    rate: f32,
    keep: f32,
}

impl Consts {
    fn of(h: AdamWStep) -> Self {
        Consts {
            b1: h.beta1 as f32,
            b2: h.beta2 as f32,
            c1: (1.0 - h.beta1) as f32,
            c2: (1.0 - h.beta2) as f32,
            inv_sqrt_bc2: (1.0 / h.bc2.sqrt()) as f32,
            eps: h.eps as f32,
            rate: (h.lr / h.bc1) as f32,
            keep: (1.0 - h.decay) as f32,
        }
    }
}

simd_fn! {
    fn chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: Consts) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = *m * k.b1 + g * k.c1;
            *v = *v * k.b2 + g * g * k.c2;
            let upd = *m / (v.sqrt() * k.inv_sqrt_bc2 + k.eps) * k.rate;
            *p = *p * k.keep - upd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::network::kernels::attention::tests::{rel, values};

    #[test]
    fn matches_the_float64_reference() {
        let n = 40_000; // several chunks
        let p0 = values(n, 21, 0.1);
        let g = values(n, 22, 0.01);
        let m0 = values(n, 23, 0.003);
        let v0: Vec<f64> = values(n, 24, 1e-4).iter().map(|x| x.abs()).collect();
        for decay in [0.0, 2e-5] {
            let h = AdamWStep {
                lr: 2e-3,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                decay,
                bc1: 1.0 - 0.9f64.powi(3),
                bc2: 1.0 - 0.95f64.powi(3),
            };
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (mut p, mut m, mut v) = (f(&p0), f(&m0), f(&v0));
            step(&mut p, &f(&g), &mut m, &mut v, h);
            let (mut rp, mut rm, mut rv) = (vec![], vec![], vec![]);
            for i in 0..n {
                let mi = 0.9 * m0[i] + 0.1 * g[i];
                let vi = 0.95 * v0[i] + 0.05 * g[i] * g[i];
                let upd = h.lr / h.bc1 * mi / (vi.sqrt() / h.bc2.sqrt() + h.eps);
                rp.push(p0[i] * (1.0 - decay) - upd);
                rm.push(mi);
                rv.push(vi);
            }
            let e = [rel(&p, &rp), rel(&m, &rm), rel(&v, &rv)];
            assert!(
                e.iter().all(|&e| e < 1e-6),
                "decay {decay}: p, m, v errors {e:?}"
            );
        }
    }
}
