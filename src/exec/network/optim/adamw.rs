//! AdamW: decoupled weight decay, bias correction from each parameter's own step counter, one
//! fused pass per parameter ([`Kernels::adamw`]). Slots `m` (first moment) and `v` (second).

use burn::tensor::Tensor;

use super::{Method, ParamGroup, Update};
use crate::exec::network::kernels::{AdamWStep, Kernels, float, prim};
use crate::plan::spec::{AdamWSpec, LrMultipliers};

pub const SLOTS: &[&str] = &["m", "v"];

#[derive(Clone, Copy, Debug)]
pub struct AdamW(pub AdamWSpec);

/// The LR multiplier of `group` (biases follow the hidden matrices).
pub fn group_mult(mult: &LrMultipliers, group: ParamGroup) -> f64 {
    match group {
        ParamGroup::Embed => mult.embed,
        ParamGroup::Hidden | ParamGroup::Bias => mult.hidden,
        ParamGroup::Norm => mult.norm,
    }
}

/// One AdamW update at rate `lr`; embeddings and hidden matrices decay, norms and biases do not.
pub fn update<B: Kernels>(
    a: &AdamWSpec,
    lr: f64,
    group: ParamGroup,
    step: u64,
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    slots: Vec<Tensor<B, 1>>,
) -> (Tensor<B, 1>, Vec<Tensor<B, 1>>) {
    let decay = matches!(group, ParamGroup::Embed | ParamGroup::Hidden);
    let [m, v]: [Tensor<B, 1>; 2] = slots
        .try_into()
        .unwrap_or_else(|_| unreachable!("the driver passes AdamW's two slots"));
    let h = AdamWStep {
        lr,
        beta1: a.beta1,
        beta2: a.beta2,
        eps: a.eps,
        decay: if decay { lr * a.weight_decay } else { 0.0 },
        bc1: 1.0 - a.beta1.powf(step as f64),
        bc2: 1.0 - a.beta2.powf(step as f64),
    };
    let (p, m, v) = B::adamw(prim(p), prim(g), prim(m), prim(v), h);
    (float(p), vec![float(m), float(v)])
}

impl Method for AdamW {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn clip(&self) -> Option<f64> {
        self.0.clip
    }

    fn group_mult(&self, group: ParamGroup) -> f64 {
        group_mult(&self.0.lr_mult, group)
    }

    fn slots(&self, _: ParamGroup, _: usize) -> &'static [&'static str] {
        SLOTS
    }

    fn update<B: Kernels>(
        &self,
        u: &Update<'_>,
        p: Tensor<B, 1>,
        g: Tensor<B, 1>,
        slots: Vec<Tensor<B, 1>>,
    ) -> (Tensor<B, 1>, Vec<Tensor<B, 1>>) {
        update(&self.0, u.lr * u.mult, u.group, u.step, p, g, slots)
    }
}
