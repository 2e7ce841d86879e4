//! The fused operations as plain compositions of burn tensor ops: the trait's defaults (every
//! backend without its own kernels runs these), and the "plain ops" side of the model-level
//! test of the fused path.
//!
//! Invariants:
//! - each function computes exactly what its [`Kernels`](super::Kernels) method documents,
//!   forward and backward written out by hand (no autodiff inside), so a backend can run them
//!   on its inner tensors;
//! - numerics follow the flex kernels: f32, max-shifted softmax, LayerNorm with the biased
//!   variance and `eps = 1e-5`.

use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Bool, Int, Tensor};

use super::{AdamWStep, AttnShape, float, prim};

pub const LN_EPS: f64 = 1e-5;

/// `[n, 3d]` -> q, k, v as `[b, h, t, hd]`.
fn split_heads<B: Backend>(qkv: Tensor<B, 2>, s: AttnShape) -> [Tensor<B, 4>; 3] {
    let (d, hd) = (s.width, s.head_dim());
    [0, 1, 2].map(|i| {
        qkv.clone()
            .narrow(1, i * d, d)
            .reshape([s.batch, s.seq, s.heads, hd])
            .swap_dims(1, 2)
    })
}

/// `[b, h, t, hd]` -> `[n, d]`.
fn merge_heads<B: Backend>(x: Tensor<B, 4>, s: AttnShape) -> Tensor<B, 2> {
    x.swap_dims(1, 2).reshape([s.batch * s.seq, s.width])
}

/// Scaled scores with the future masked to -inf: `[b, h, t, t]`.
fn scores<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, s: AttnShape) -> Tensor<B, 4> {
    let sc = q
        .clone()
        .matmul(k.clone().swap_dims(2, 3))
        .mul_scalar(s.scale());
    // burn's `tril_mask` is true above the diagonal: the future, which is masked.
    let future = Tensor::<B, 2, Bool>::tril_mask([s.seq, s.seq], 0, &sc.device());
    sc.mask_fill(future.unsqueeze::<4>(), f32::NEG_INFINITY)
}

pub fn attention_forward<B: Backend>(
    qkv: FloatTensor<B>,
    s: AttnShape,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let [q, k, v] = split_heads(float::<B, 2>(qkv), s);
    let sc = scores(&q, &k, s);
    let m = sc.clone().max_dim(3);
    let e = (sc - m.clone()).exp();
    let l = e.clone().sum_dim(3);
    let out = (e / l.clone()).matmul(v);
    let lse = (m + l.log()).reshape([s.batch * s.heads, s.seq]);
    (prim(merge_heads(out, s)), prim(lse))
}

pub fn attention_backward<B: Backend>(
    qkv: FloatTensor<B>,
    out: FloatTensor<B>,
    lse: FloatTensor<B>,
    dout: FloatTensor<B>,
    s: AttnShape,
) -> FloatTensor<B> {
    let [q, k, v] = split_heads(float::<B, 2>(qkv), s);
    let split = |t: FloatTensor<B>| {
        float::<B, 2>(t)
            .reshape([s.batch, s.seq, s.heads, s.head_dim()])
            .swap_dims(1, 2)
    };
    let (o, d_o) = (split(out), split(dout));
    let lse = float::<B, 2>(lse).reshape([s.batch, s.heads, s.seq, 1]);
    let p = (scores(&q, &k, s) - lse).exp();
    let dv = p.clone().swap_dims(2, 3).matmul(d_o.clone());
    let dp = d_o.clone().matmul(v.swap_dims(2, 3));
    let delta = (d_o * o).sum_dim(3);
    let ds = (p * (dp - delta)).mul_scalar(s.scale());
    let dq = ds.clone().matmul(k);
    let dk = ds.swap_dims(2, 3).matmul(q);
    prim(Tensor::cat(
        vec![merge_heads(dq, s), merge_heads(dk, s), merge_heads(dv, s)],
        1,
    ))
}

pub fn layer_norm_forward<B: Backend>(
    x: FloatTensor<B>,
    g: FloatTensor<B>,
    b: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let x = float::<B, 2>(x);
    let mean = x.clone().mean_dim(1);
    let xc = x - mean.clone();
    let var = xc.clone().powi_scalar(2).mean_dim(1);
    let rstd = var.add_scalar(LN_EPS).sqrt().recip();
    let y = xc * rstd.clone() * float::<B, 2>(g) + float::<B, 2>(b);
    (prim(y), prim(Tensor::cat(vec![mean, rstd], 1)))
}

pub fn layer_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    g: FloatTensor<B>,
    stats: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (x, dy) = (float::<B, 2>(x), float::<B, 2>(dy));
    let stats = float::<B, 2>(stats);
    let mean = stats.clone().narrow(1, 0, 1);
    let rstd = stats.narrow(1, 1, 1);
    let xhat = (x - mean) * rstd.clone();
    let dg = (dy.clone() * xhat.clone()).sum_dim(0);
    let db = dy.clone().sum_dim(0);
    let dxhat = dy * float::<B, 2>(g);
    let a = dxhat.clone().mean_dim(1);
    let c = (dxhat.clone() * xhat.clone()).mean_dim(1);
    let dx = (dxhat - a - xhat * c) * rstd;
    (prim(dx), prim(dg), prim(db))
}

pub fn gelu_erf<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    prim(gelu(float::<B, 2>(x)))
}

/// `r + s (x w + b)`, or `x w + b` without a residual.
pub fn linear<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    b: FloatTensor<B>,
    residual: Option<(FloatTensor<B>, f64)>,
) -> FloatTensor<B> {
    let y = float::<B, 2>(x).matmul(float::<B, 2>(w)) + float::<B, 2>(b);
    prim(match residual {
        Some((r, s)) => float::<B, 2>(r) + y.mul_scalar(s),
        None => y,
    })
}

pub fn linear_backward<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    dy: FloatTensor<B>,
    s: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let dy = float::<B, 2>(dy).mul_scalar(s);
    let dx = dy.clone().matmul(float::<B, 2>(w).transpose());
    let dw = float::<B, 2>(x).transpose().matmul(dy.clone());
    (prim(dx), prim(dw), prim(dy.sum_dim(0)))
}

pub fn embed<B: Backend>(
    wte: FloatTensor<B>,
    wpe: FloatTensor<B>,
    tokens: IntTensor<B>,
) -> FloatTensor<B> {
    let tokens = Tensor::<B, 2, Int>::from_primitive(tokens);
    let [b, t] = tokens.dims();
    let (wte, wpe) = (float::<B, 2>(wte), float::<B, 2>(wpe));
    let d = wte.dims()[1];
    let x = burn::tensor::module::embedding(wte, tokens) + wpe.narrow(0, 0, t).unsqueeze::<3>();
    prim(x.reshape([b * t, d]))
}

pub fn embed_backward<B: Backend>(
    tokens: IntTensor<B>,
    dx: FloatTensor<B>,
    vocab: usize,
    context: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let tokens = Tensor::<B, 2, Int>::from_primitive(tokens);
    let [b, t] = tokens.dims();
    let dx = float::<B, 2>(dx);
    let (d, device) = (dx.dims()[1], dx.device());
    let dwte = Tensor::<B, 2>::zeros([vocab, d], &device).select_assign(
        0,
        tokens.reshape([b * t]),
        dx.clone(),
        burn::tensor::IndexingUpdateOp::Add,
    );
    let mut dwpe = dx.reshape([b, t, d]).sum_dim(0).reshape([t, d]);
    if t < context {
        dwpe = Tensor::cat(vec![dwpe, Tensor::zeros([context - t, d], &device)], 0);
    }
    (prim(dwte), prim(dwpe))
}

/// The fused head's pass as tensor ops (see [`head_ce`](super::head_ce)).
#[allow(clippy::type_complexity)]
pub fn head_ce_pass<B: Backend>(
    h: FloatTensor<B>,
    w: FloatTensor<B>,
    targets: IntTensor<B>,
    chunk_rows: usize,
    grads: bool,
) -> (FloatTensor<B>, Option<(FloatTensor<B>, FloatTensor<B>)>) {
    let t = Tensor::<B, 1, Int>::from_primitive(targets);
    let (loss, g) = super::head_ce::pass_tensors(
        float(h),
        float(w),
        t,
        chunk_rows,
        grads,
        crate::exec::network::precision::Precision::F32,
    );
    (prim(loss), g.map(|(dh, dw)| (prim(dh), prim(dw))))
}

/// PyTorch's form: `p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`, decay decoupled.
pub fn adamw<B: Backend>(
    p: FloatTensor<B>,
    g: FloatTensor<B>,
    m: FloatTensor<B>,
    v: FloatTensor<B>,
    h: AdamWStep,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (p, g) = (float::<B, 1>(p), float::<B, 1>(g));
    let m = float::<B, 1>(m).mul_scalar(h.beta1) + g.clone().mul_scalar(1.0 - h.beta1);
    let v = float::<B, 1>(v).mul_scalar(h.beta2) + g.square().mul_scalar(1.0 - h.beta2);
    let denom = v
        .clone()
        .sqrt()
        .mul_scalar(1.0 / h.bc2.sqrt())
        .add_scalar(h.eps);
    let upd = m.clone().div(denom).mul_scalar(h.lr / h.bc1);
    let p = if h.decay != 0.0 {
        p.mul_scalar(1.0 - h.decay)
    } else {
        p
    };
    (prim(p - upd), prim(m), prim(v))
}

#[cfg(test)]
mod tests {
    //! The composition is what CUDA runs: check it against the CPU kernels (themselves
    //! checked against float64) on the same inputs.
    use super::*;
    use crate::exec::network::kernels::Kernels;
    use crate::exec::network::kernels::attention::tests::values;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    fn t(shape: [usize; 2], seed: u64) -> FloatTensor<Flex> {
        let v: Vec<f32> = values(shape[0] * shape[1], seed, 1.0)
            .iter()
            .map(|&x| x as f32)
            .collect();
        prim(Tensor::<Flex, 2>::from_data(
            TensorData::new(v, shape),
            &Default::default(),
        ))
    }

    fn close(a: FloatTensor<Flex>, b: FloatTensor<Flex>, what: &str) {
        let a = float::<Flex, 2>(a).into_data().to_vec::<f32>().unwrap();
        let b = float::<Flex, 2>(b).into_data().to_vec::<f32>().unwrap();
        let num: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f32 = b.iter().map(|y| y * y).sum();
        assert!(
            a.len() == b.len() && (num / den.max(1e-30)).sqrt() < 1e-5,
            "{what}"
        );
    }

    #[test]
    fn the_composition_computes_what_the_cpu_kernels_compute() {
        let s = AttnShape {
            batch: 2,
            seq: 9,
            heads: 2,
            width: 8,
        };
        let (qkv, dout) = (t([18, 24], 1), t([18, 8], 2));
        let (o1, l1) = attention_forward::<Flex>(qkv.clone(), s);
        let (o2, l2) = Flex::attention_forward(qkv.clone(), s);
        close(o1.clone(), o2, "attention out");
        close(l1.clone(), l2, "attention lse");
        let d1 = attention_backward::<Flex>(qkv.clone(), o1.clone(), l1.clone(), dout.clone(), s);
        close(
            d1,
            Flex::attention_backward(qkv, o1, l1, dout, s),
            "attention dqkv",
        );

        let (x, g, b, dy) = (t([5, 8], 3), t([1, 8], 4), t([1, 8], 5), t([5, 8], 6));
        let (y1, st1) = layer_norm_forward::<Flex>(x.clone(), g.clone(), b.clone());
        let (y2, st2) = Flex::layer_norm_forward(x.clone(), g.clone(), b);
        close(y1, y2, "layer norm y");
        close(st1.clone(), st2, "layer norm stats");
        let a = layer_norm_backward::<Flex>(x.clone(), g.clone(), st1.clone(), dy.clone());
        let k = Flex::layer_norm_backward(x.clone(), g, st1, dy.clone());
        close(a.0, k.0, "layer norm dx");
        close(a.1, k.1, "layer norm dg");
        close(a.2, k.2, "layer norm db");

        close(
            gelu_erf::<Flex>(x.clone()),
            Flex::gelu_erf(x.clone()),
            "gelu",
        );
        let (w, bias, r) = (t([8, 6], 7), t([1, 6], 8), t([5, 6], 9));
        close(
            linear::<Flex>(x.clone(), w.clone(), bias.clone(), None),
            Flex::linear(x.clone(), w.clone(), bias.clone()),
            "linear",
        );
        close(
            linear::<Flex>(x.clone(), w.clone(), bias.clone(), Some((r.clone(), 0.5))),
            Flex::linear_residual(r, x.clone(), w.clone(), bias, 0.5),
            "linear with residual",
        );
        let dy6 = t([5, 6], 10);
        let a = linear_backward::<Flex>(x.clone(), w.clone(), dy6.clone(), 0.5);
        let k = Flex::linear_backward(x, w, dy6, 0.5);
        close(a.0, k.0, "linear dx");
        close(a.1, k.1, "linear dw");
        close(a.2, k.2, "linear db");

        let tokens = || {
            let ids: Vec<i64> = (0..6).map(|i| (i * 5 + 1) % 7).collect();
            Tensor::<Flex, 2, Int>::from_data(TensorData::new(ids, [2, 3]), &Default::default())
                .into_primitive()
        };
        let (wte, wpe, dx) = (t([7, 4], 11), t([5, 4], 12), t([6, 4], 13));
        close(
            embed::<Flex>(wte.clone(), wpe.clone(), tokens()),
            Flex::embed(wte, wpe, tokens()),
            "embed",
        );
        let a = embed_backward::<Flex>(tokens(), dx.clone(), 7, 5);
        let k = Flex::embed_backward(tokens(), dx, 7, 5);
        close(a.0, k.0, "embed dwte");
        close(a.1, k.1, "embed dwpe");
    }
}
