//! Fused kernels of the executor: one trait, [`Kernels`], with one implementation per backend
//! (burn's backend-extension pattern). The model calls the trait and never knows which
//! implementation runs.
//!
//! - The trait's default methods are the plain composition of burn tensor ops
//!   ([`compose`]); every backend gets them for free.
//! - The CubeCL backends (CUDA, wgpu) override attention and LayerNorm with CubeCL kernels
//!   (`cube`), behind burn's fusion backend as custom operations.
//! - The CPU backend (flex) overrides them with hand-written kernels over raw f32 slices,
//!   parallel over the cores with rayon ([`embed`], [`attention`], [`layer_norm`], [`gelu`],
//!   [`linear`], [`head`], [`adamw`]).
//! - `Autodiff<B>` overrides the forward ops with a custom backward that calls `B`'s fused
//!   backward kernels ([`autodiff`]), so autodiff never records the dozens of small ops the
//!   composition is made of.
//!
//! Invariants:
//! - every kernel has a float64 reference in its tests, checked for its outputs and for every
//!   gradient, on small shapes, with relative-error bounds;
//! - a kernel given anything but contiguous f32 (bf16 operands, strided views) falls back to
//!   the composition, so correctness never depends on the layout a caller happens to pass;
//! - attention never materializes the `[B, H, T, T]` score tensor in training: the forward
//!   keeps only the output and one log-sum-exp per row, the backward recomputes the scores a
//!   block of rows at a time.
//!
//! `head_ce` is the fused head over burn's tensor API (every backend, and bf16); [`head`] is
//! its CPU kernel.

pub mod adamw;
pub mod attention;
mod autodiff;
pub mod compose;
#[cfg(feature = "cube")]
pub mod cube;
pub mod embed;
mod flex;
pub mod gelu;
pub mod head;
pub mod head_ce;
pub mod layer_norm;
pub mod linear;
mod product;
mod simd;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// Geometry of causal self-attention over a packed `qkv [batch * seq, 3 * width]` tensor: rows
/// are tokens (sequence-major within a batch row), columns are `q | k | v`, each split into
/// `heads` slices of `width / heads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub width: usize,
}

impl AttnShape {
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
    /// Softmax scale `1 / sqrt(head_dim)`.
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }
}

/// AdamW hyperparameters of one update, with the step's bias corrections folded in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// `lr * weight_decay` when the parameter decays, else 0.
    pub decay: f64,
    /// `1 - beta1^t` and `1 - beta2^t` for this parameter's step `t`.
    pub bc1: f64,
    pub bc2: f64,
}

/// The fused operations of the executor. Defaults are the composition of tensor ops.
pub trait Kernels: Backend {
    /// Causal self-attention: `qkv [n, 3d]` -> `[n, d]` (heads concatenated), with the
    /// log-sum-exp of every score row `[batch * heads, seq]` for the backward pass.
    fn attention_forward(
        qkv: FloatTensor<Self>,
        s: AttnShape,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        compose::attention_forward::<Self>(qkv, s)
    }

    /// Gradient of [`Kernels::attention_forward`] with respect to `qkv`, from its inputs, its
    /// output, its log-sum-exp and the output's gradient.
    fn attention_backward(
        qkv: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        s: AttnShape,
    ) -> FloatTensor<Self> {
        compose::attention_backward::<Self>(qkv, out, lse, dout, s)
    }

    /// What the model calls; `Autodiff` records one node for it.
    fn attention(qkv: FloatTensor<Self>, s: AttnShape) -> FloatTensor<Self> {
        Self::attention_forward(qkv, s).0
    }

    /// LayerNorm over the last dimension of `x [n, d]` with gain and bias `[1, d]`: the output
    /// and the per-row statistics `[n, 2]` (mean, 1 / std) for the backward pass.
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        compose::layer_norm_forward::<Self>(x, g, b)
    }

    /// Gradients `(dx, dg, db)` of [`Kernels::layer_norm_forward`].
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        compose::layer_norm_backward::<Self>(x, g, stats, dy)
    }

    fn layer_norm(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::layer_norm_forward(x, g, b).0
    }

    /// GELU, exact erf form (burn's `gelu`).
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        compose::gelu_erf::<Self>(x)
    }

    /// Gradient of [`Kernels::gelu_erf`] with respect to `x`.
    fn gelu_erf_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, dy)
    }

    /// `x [n, k] @ w [k, m] + b [1, m]`.
    fn linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        compose::linear::<Self>(x, w, b, None)
    }

    /// `r + s (x w + b)`: an output projection with the residual add and scale fused in.
    fn linear_residual(
        r: FloatTensor<Self>,
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        s: f64,
    ) -> FloatTensor<Self> {
        compose::linear::<Self>(x, w, b, Some((r, s)))
    }

    /// Gradients `(dx, dw, db)` of `s (x w + b)` (the residual's gradient is `dy` itself).
    fn linear_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        s: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        compose::linear_backward::<Self>(x, w, dy, s)
    }

    /// Token plus position embedding: `x [b t, d]` for `tokens [b, t]`, `wte [V, d]`,
    /// `wpe [context, d]`.
    fn embed(
        wte: FloatTensor<Self>,
        wpe: FloatTensor<Self>,
        tokens: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        compose::embed::<Self>(wte, wpe, tokens)
    }

    /// Gradients `(dwte [V, d], dwpe [context, d])` of [`Kernels::embed`].
    fn embed_backward(
        tokens: IntTensor<Self>,
        dx: FloatTensor<Self>,
        vocab: usize,
        context: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        compose::embed_backward::<Self>(tokens, dx, vocab, context)
    }

    /// The fused head's whole pass (see [`head_ce`]) in f32: the mean cross-entropy `[1]` of
    /// `targets [n]` under logits `h [n, d] w^T`, and with `grads` its gradients `(dh, dw)`.
    #[allow(clippy::type_complexity)]
    fn head_ce_pass(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: IntTensor<Self>,
        chunk_rows: usize,
        grads: bool,
    ) -> (
        FloatTensor<Self>,
        Option<(FloatTensor<Self>, FloatTensor<Self>)>,
    ) {
        compose::head_ce_pass::<Self>(h, w, targets, chunk_rows, grads)
    }

    /// One AdamW update of a flattened parameter: `(p, m, v)` after the step.
    fn adamw(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        h: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        compose::adamw::<Self>(p, g, m, v, h)
    }
}

/// A backend the trainer runs on: autodiff over an inner backend, both with the kernels.
pub trait TrainBackend: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<B> TrainBackend for B
where
    B: AutodiffBackend + Kernels,
    B::InnerBackend: Kernels,
{
}

// The flex CPU backend: `flex.rs`, the CPU kernels behind it.

// CUDA and wgpu (`Fusion<CubeBackend<..>>`): the CubeCL kernels of `cube`, where written, and
// the composition for the rest.

/// Tensor-level wrappers the model calls.
pub fn attention<B: Kernels>(qkv: Tensor<B, 2>, s: AttnShape) -> Tensor<B, 2> {
    float(<B as Kernels>::attention(prim(qkv), s))
}

pub fn layer_norm<B: Kernels>(x: Tensor<B, 2>, g: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    float(<B as Kernels>::layer_norm(prim(x), prim(g), prim(b)))
}

pub fn linear<B: Kernels>(x: Tensor<B, 2>, w: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    float(<B as Kernels>::linear(prim(x), prim(w), prim(b)))
}

pub fn linear_residual<B: Kernels>(
    r: Tensor<B, 2>,
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    b: Tensor<B, 2>,
    s: f64,
) -> Tensor<B, 2> {
    float(B::linear_residual(prim(r), prim(x), prim(w), prim(b), s))
}

pub fn embed<B: Kernels>(
    wte: Tensor<B, 2>,
    wpe: Tensor<B, 2>,
    tokens: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    float(B::embed(prim(wte), prim(wpe), tokens.into_primitive()))
}

pub fn gelu<B: Kernels>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    float(B::gelu_erf(prim(x)))
}

pub(crate) fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

pub(crate) fn float<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}
