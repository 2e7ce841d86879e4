//! The CubeCL kernels behind burn's fusion backend: `Fusion<B>` records each fused op as one
//! custom operation of its stream, which runs `B`'s kernel when the stream executes.
//!
//! Invariants:
//! - a custom operation declares every input and output tensor, so fusion orders it against
//!   the operations around it and frees its inputs like any other;
//! - only f32 goes through a custom operation; other float types take the composition at the
//!   fusion level, where burn still fuses their elementwise chains.

use std::fmt;

use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};

use super::super::{AttnShape, Kernels, compose};

/// One custom operation: `run` over the inner backend's tensors.
struct Custom<B: FusionBackend, const I: usize, const O: usize> {
    desc: CustomOpIr,
    #[allow(clippy::type_complexity)]
    run: Box<dyn Fn([FloatTensor<B>; I]) -> [FloatTensor<B>; O] + Send + Sync>,
}

impl<B: FusionBackend, const I: usize, const O: usize> fmt::Debug for Custom<B, I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Custom").field("id", &self.desc.id).finish()
    }
}

impl<B: FusionBackend, const I: usize, const O: usize> Operation<B::FusionRuntime>
    for Custom<B, I, O>
{
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let (ins, outs) = self.desc.as_fixed::<I, O>();
        let ins = ins.each_ref().map(|t| handles.get_float_tensor::<B>(t));
        for (ir, t) in outs.iter().zip((self.run)(ins)) {
            handles.register_float_tensor::<B>(&ir.id, t);
        }
    }
}

type T<B> = FusionTensor<<B as FusionBackend>::FusionRuntime>;

/// Records `run` on the stream of `inputs`, with f32 outputs of the given shapes.
fn custom<B: FusionBackend, const I: usize, const O: usize>(
    name: &'static str,
    inputs: [T<B>; I],
    outputs: [Shape; O],
    run: impl Fn([FloatTensor<B>; I]) -> [FloatTensor<B>; O] + Send + Sync + 'static,
) -> [T<B>; O] {
    let client = inputs[0].client.clone();
    let streams = OperationStreams::with_inputs(inputs.iter());
    let outs = outputs.map(|s| TensorIr::uninit(client.create_empty_handle(), s, DType::F32));
    let ins = inputs.map(|t| t.into_ir());
    let desc = CustomOpIr::new(name, &ins, &outs);
    let op = Custom::<B, I, O> {
        desc: desc.clone(),
        run: Box::new(run),
    };
    match client
        .register(streams, OperationIr::Custom(desc), op)
        .try_into()
    {
        Ok(out) => out,
        Err(v) => unreachable!("fusion returned {} tensors for {O} outputs", v.len()),
    }
}

fn all_f32<R: FusionRuntime>(ts: &[&FusionTensor<R>]) -> bool {
    ts.iter().all(|t| t.dtype == DType::F32)
}

impl<B: FusionBackend + Kernels> Kernels for Fusion<B> {
    fn attention_forward(
        qkv: FloatTensor<Self>,
        s: AttnShape,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !all_f32(&[&qkv]) {
            return compose::attention_forward::<Self>(qkv, s);
        }
        let n = s.batch * s.seq;
        let shapes = [
            Shape::new([n, s.width]),
            Shape::new([s.batch * s.heads, s.seq]),
        ];
        let [out, lse] = custom::<B, 1, 2>("progc.attention_forward", [qkv], shapes, move |[x]| {
            let (out, lse) = B::attention_forward(x, s);
            [out, lse]
        });
        (out, lse)
    }

    fn attention_backward(
        qkv: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        s: AttnShape,
    ) -> FloatTensor<Self> {
        if !all_f32(&[&qkv, &out, &lse, &dout]) {
            return compose::attention_backward::<Self>(qkv, out, lse, dout, s);
        }
        let shape = qkv.shape.clone();
        let [dqkv] = custom::<B, 4, 1>(
            "progc.attention_backward",
            [qkv, out, lse, dout],
            [shape],
            move |[x, o, l, g]| [B::attention_backward(x, o, l, g, s)],
        );
        dqkv
    }

    fn layer_norm_forward(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !all_f32(&[&x, &g, &b]) {
            return compose::layer_norm_forward::<Self>(x, g, b);
        }
        let shapes = [x.shape.clone(), Shape::new([x.shape[0], 2])];
        let [y, stats] = custom::<B, 3, 2>(
            "progc.layer_norm_forward",
            [x, g, b],
            shapes,
            |[x, g, b]| {
                let (y, stats) = B::layer_norm_forward(x, g, b);
                [y, stats]
            },
        );
        (y, stats)
    }

    fn layer_norm_backward(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !all_f32(&[&x, &g, &stats, &dy]) {
            return compose::layer_norm_backward::<Self>(x, g, stats, dy);
        }
        let shapes = [x.shape.clone(), g.shape.clone(), g.shape.clone()];
        let [dx, dg, db] = custom::<B, 4, 3>(
            "progc.layer_norm_backward",
            [x, g, stats, dy],
            shapes,
            |[x, g, stats, dy]| {
                let (dx, dg, db) = B::layer_norm_backward(x, g, stats, dy);
                [dx, dg, db]
            },
        );
        (dx, dg, db)
    }
}
