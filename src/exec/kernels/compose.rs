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
    let future = Tensor::<B, 2, Bool>::triu_mask([s.seq, s.seq], 1, &sc.device());
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

pub fn embed<B: Backend>(wte: FloatTensor<B>, wpe: FloatTensor<B>, tokens: IntTensor<B>) -> FloatTensor<B> {
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
        crate::exec::precision::Precision::F32,
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
