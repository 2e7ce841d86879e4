//! `Kernels` for `Autodiff<B>`: each fused forward op is one node of the autodiff graph whose
//! backward step calls `B`'s fused backward kernel.
//!
//! Invariants:
//! - a node keeps exactly what its backward kernel reads (inputs, and for attention the output
//!   and its log-sum-exp), as inner-backend tensors (flex clones share storage);
//! - a gradient is computed and registered only for parents that require one;
//! - the AdamW update runs on the inner backend and is never called on `Autodiff` tensors; its
//!   default composition is left in place for completeness.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::ops::{FloatTensor, IntTensor};

use super::{AttnShape, Kernels};

#[derive(Debug)]
struct AttentionBackward;

impl<B: Kernels> Backward<B, 1> for AttentionBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, AttnShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (qkv, out, lse, s) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dout| {
            B::attention_backward(qkv, out, lse, dout, s)
        });
    }
}

#[derive(Debug)]
struct LayerNormBackward;

impl<B: Kernels> Backward<B, 3> for LayerNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, g, stats) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, dg, db) = B::layer_norm_backward(x, g, stats, dy);
        register::<B, 3>(grads, ops.parents.map(|p| p.map(|n| n.id)), [dx, dg, db]);
    }
}

#[derive(Debug)]
struct GeluBackward;

impl<B: Kernels> Backward<B, 1> for GeluBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            B::gelu_erf_backward(x, dy)
        });
    }
}

#[derive(Debug)]
struct EmbedBackward;

impl<B: Kernels> Backward<B, 2> for EmbedBackward {
    type State = (IntTensor<B>, usize, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (tokens, vocab, context) = ops.state;
        let dx = grads.consume::<B>(&ops.node);
        let (dwte, dwpe) = B::embed_backward(tokens, dx, vocab, context);
        register::<B, 2>(grads, ops.parents.map(|p| p.map(|n| n.id)), [dwte, dwpe]);
    }
}

#[derive(Debug)]
struct LinearBackward;

impl<B: Kernels> Backward<B, 3> for LinearBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, dw, db) = B::linear_backward(x, w, dy, 1.0);
        register::<B, 3>(grads, ops.parents.map(|p| p.map(|n| n.id)), [dx, dw, db]);
    }
}

#[derive(Debug)]
struct LinearResidualBackward;

impl<B: Kernels> Backward<B, 4> for LinearResidualBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, s) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, dw, db) = B::linear_backward(x, w, dy.clone(), s);
        register::<B, 4>(
            grads,
            ops.parents.map(|p| p.map(|n| n.id)),
            [dy, dx, dw, db],
        );
    }
}

/// Registers each gradient whose parent requires one.
fn register<B: Kernels, const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [FloatTensor<B>; N],
) {
    for (parent, grad) in parents.into_iter().zip(values) {
        if let Some(id) = parent {
            grads.register::<B>(id, grad);
        }
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn embed(
        wte: FloatTensor<Self>,
        wpe: FloatTensor<Self>,
        tokens: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        use burn::tensor::TensorMetadata;
        let (vocab, context) = (wte.shape()[0], wpe.shape()[0]);
        match EmbedBackward
            .prepare::<C>([wte.node.clone(), wpe.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = B::embed(wte.primitive, wpe.primitive, tokens.clone());
                prep.finish((tokens, vocab, context), x)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::embed(wte.primitive, wpe.primitive, tokens)),
        }
    }

    fn linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node.clone(), w.node.clone(), b.node.clone()];
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y =
                    <B as Kernels>::linear(x.primitive.clone(), w.primitive.clone(), b.primitive);
                prep.finish((x.primitive, w.primitive), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as Kernels>::linear(
                x.primitive,
                w.primitive,
                b.primitive,
            )),
        }
    }

    fn linear_residual(
        r: FloatTensor<Self>,
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        s: f64,
    ) -> FloatTensor<Self> {
        let nodes = [
            r.node.clone(),
            x.node.clone(),
            w.node.clone(),
            b.node.clone(),
        ];
        match LinearResidualBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::linear_residual(
                    r.primitive,
                    x.primitive.clone(),
                    w.primitive.clone(),
                    b.primitive,
                    s,
                );
                prep.finish((x.primitive, w.primitive, s), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::linear_residual(
                r.primitive,
                x.primitive,
                w.primitive,
                b.primitive,
                s,
            )),
        }
    }

    fn attention(qkv: FloatTensor<Self>, s: AttnShape) -> FloatTensor<Self> {
        match AttentionBackward
            .prepare::<C>([qkv.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, lse) = B::attention_forward(qkv.primitive.clone(), s);
                prep.finish((qkv.primitive, out.clone(), lse, s), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::attention_forward(qkv.primitive, s).0),
        }
    }

    fn layer_norm(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node.clone(), g.node.clone(), b.node.clone()];
        match LayerNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, stats) =
                    B::layer_norm_forward(x.primitive.clone(), g.primitive.clone(), b.primitive);
                prep.finish((x.primitive, g.primitive, stats), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::layer_norm_forward(x.primitive, g.primitive, b.primitive).0)
            }
        }
    }

    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::gelu_erf(x.primitive.clone());
                prep.finish(x.primitive, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_erf(x.primitive)),
        }
    }
}
