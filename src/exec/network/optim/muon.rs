//! Muon on the 2-D hidden matrices (EMA momentum, nesterov optional, Newton-Schulz
//! orthogonalization, a shape scale, decoupled decay; slot `m`), AdamW on the embeddings,
//! norms and biases (slots `m`, `v`), its rate following the same schedule.
//!
//! Invariant: Muon's scale `sqrt(max(1, fan_out / fan_in))` assumes burn's `Linear` layout,
//! where a weight is `[fan_in, fan_out]` (rows = inputs); see [`muon_scale`].

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Method, ParamGroup, Update, adamw};
use crate::exec::network::kernels::Kernels;
use crate::plan::spec::MuonSpec;

/// Quintic Newton-Schulz coefficients (Keller Jordan's Muon).
const NS_COEFFS: (f64, f64, f64) = (3.4445, -4.7750, 2.0315);
/// Added to the Frobenius norm before Newton-Schulz normalization.
const NS_EPS: f64 = 1e-7;

const SLOTS: &[&str] = &["m"];

#[derive(Clone, Copy, Debug)]
pub struct Muon(pub MuonSpec);

impl Muon {
    /// Whether Muon itself (not its AdamW) updates a parameter of `group` and `rank`.
    fn orthogonalizes(group: ParamGroup, rank: usize) -> bool {
        group == ParamGroup::Hidden && rank == 2
    }

    /// The AdamW side's rate at scheduled rate `lr`: its own peak, scaled by `lr / peak`.
    pub fn adam_rate(&self, lr: f64) -> f64 {
        let m = &self.0;
        let factor = if m.lr != 0.0 { lr / m.lr } else { 0.0 };
        m.adam.lr * factor
    }
}

impl Method for Muon {
    fn name(&self) -> &'static str {
        "muon"
    }

    /// The embedded AdamW's bound, which scales every gradient, Muon's included.
    fn clip(&self) -> Option<f64> {
        self.0.adam.clip
    }

    fn group_mult(&self, group: ParamGroup) -> f64 {
        adamw::group_mult(&self.0.adam.lr_mult, group)
    }

    fn slots(&self, group: ParamGroup, rank: usize) -> &'static [&'static str] {
        if Self::orthogonalizes(group, rank) {
            SLOTS
        } else {
            adamw::SLOTS
        }
    }

    fn update<B: Kernels>(
        &self,
        u: &Update<'_>,
        p: Tensor<B, 1>,
        g: Tensor<B, 1>,
        slots: Vec<Tensor<B, 1>>,
    ) -> (Tensor<B, 1>, Vec<Tensor<B, 1>>) {
        if !Self::orthogonalizes(u.group, u.dims.len()) {
            let lr = self.adam_rate(u.lr) * u.mult;
            return adamw::update(&self.0.adam, lr, u.group, u.step, p, g, slots);
        }
        let [m]: [Tensor<B, 1>; 1] = slots
            .try_into()
            .unwrap_or_else(|_| unreachable!("the driver passes Muon's one slot"));
        let shape = [u.dims[0], u.dims[u.dims.len() - 1]];
        let (p, m) = update(&self.0, u.lr * u.mult, shape, p, g, m);
        (p, vec![m])
    }
}

/// Muon on a flattened `[rows, cols]` matrix: EMA momentum (nesterov optional), Newton-Schulz
/// orthogonalization, shape scale, decoupled decay.
fn update<B: Backend>(
    mu: &MuonSpec,
    lr: f64,
    [rows, cols]: [usize; 2],
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    m: Tensor<B, 1>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let beta = mu.momentum;
    let m = m.mul_scalar(beta) + g.clone().mul_scalar(1.0 - beta);
    let u = if mu.nesterov {
        g.mul_scalar(1.0 - beta) + m.clone().mul_scalar(beta)
    } else {
        m.clone()
    };
    let o = newton_schulz(u.reshape([rows, cols]), mu.ns_steps).reshape([rows * cols]);
    let p = if mu.weight_decay != 0.0 {
        p.mul_scalar(1.0 - lr * mu.weight_decay)
    } else {
        p
    };
    let p = p - o.mul_scalar(lr * muon_scale(rows, cols));
    (p, m)
}

/// Muon's shape factor `sqrt(max(1, fan_out / fan_in))` for a weight stored as burn's `Linear`
/// does it: `[fan_in, fan_out]` = `[rows, cols]` (PyTorch's `[out, in]` transposed).
pub fn muon_scale(rows: usize, cols: usize) -> f64 {
    (cols as f64 / rows as f64).max(1.0).sqrt()
}

/// Approximate orthogonalization `G -> U V^T` by `steps` quintic Newton-Schulz iterations on
/// `G / ||G||_F` (computed on the short side). Singular values land near 1 (about 0.7..1.2),
/// not exactly on it: the coefficients trade accuracy for speed.
pub fn newton_schulz<B: Backend>(g: Tensor<B, 2>, steps: usize) -> Tensor<B, 2> {
    let (a, b, c) = NS_COEFFS;
    let [rows, cols] = g.dims();
    let tall = rows > cols;
    let x = if tall { g.transpose() } else { g };
    let shape = x.dims();
    let norm = x.clone().square().sum().sqrt().add_scalar(NS_EPS);
    let mut x = x / norm.reshape([1, 1]).expand(shape);
    for _ in 0..steps {
        let gram = x.clone().matmul(x.clone().transpose());
        let poly = gram.clone().mul_scalar(b) + gram.clone().matmul(gram).mul_scalar(c);
        x = x.clone().mul_scalar(a) + poly.matmul(x);
    }
    if tall { x.transpose() } else { x }
}
