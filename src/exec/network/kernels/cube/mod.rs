//! `Kernels` for burn's CubeCL backends (CUDA and wgpu): the first GPU kernels of the fused-ops
//! seam, written once in CubeCL and compiled per runtime (NVRTC for CUDA, WGSL or SPIR-V for
//! wgpu).
//!
//! - [`attention`]: causal self-attention forward and backward, without the `[B, H, T, T]`
//!   score tensor that burn-autodiff's attention fallback materializes;
//! - [`layer_norm`]: LayerNorm forward and backward;
//! - [`fusion`]: the same kernels behind burn's fusion backend (what `--device cuda` and
//!   `--device wgpu` run), each as one custom operation of the fusion stream.
//!
//! Invariants:
//! - the kernels take contiguous f32 only: a strided f32 operand is made contiguous first, and
//!   any other float type (bf16 on CUDA) goes through the composition, as on the CPU;
//! - every kernel is checked against the float64 references of the CPU kernels' tests, for its
//!   outputs and every gradient, on a wgpu adapter (lavapipe in CI);
//! - a device's first use runs [`self_check`]: a kernel that fails to compile on an adapter
//!   panics on the device's thread and leaves its output unwritten, which would train on
//!   garbage without a word; after a failed check every op takes the composition;
//! - everything else (GELU, linear, the head, AdamW) is still the composition, which burn's
//!   fusion and autotune handle well enough until a GPU measures otherwise.

pub mod attention;
pub mod fusion;
pub mod layer_norm;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::{AttnShape, Kernels, compose, float, prim};

/// Set by a failed [`self_check`]: from then on every op takes the composition.
static OFF: AtomicBool = AtomicBool::new(false);

/// The operands, contiguous, when every one is f32 and the kernels passed their check; `None`
/// sends the caller to the composition.
fn f32s<R: CubeRuntime, const N: usize>(ts: &[CubeTensor<R>; N]) -> Option<[CubeTensor<R>; N]> {
    if OFF.load(Ordering::Relaxed) {
        return None;
    }
    ts.iter()
        .all(|t| t.dtype == DType::F32)
        .then(|| ts.clone().map(into_contiguous))
}

/// Runs every kernel once on `device` (through `B`, the backend training uses) against the
/// composition, on small shapes. On a difference, or a panic, the kernels are switched off for
/// the process and the reason is returned, for the caller to warn with.
pub fn self_check<B: Kernels>(device: &B::Device) -> Result<(), String> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check::<B>(device)))
        .unwrap_or_else(|p| Err(crate::exec::error::panic_message(p.as_ref())));
    if result.is_err() {
        OFF.store(true, Ordering::Relaxed);
    }
    result
}

fn check<B: Kernels>(device: &B::Device) -> Result<(), String> {
    let s = AttnShape {
        batch: 1,
        seq: 7,
        heads: 2,
        width: 8,
    };
    let (n, d) = (s.seq, s.width);
    let t = |k: usize, shape: [usize; 2]| {
        let v: Vec<f32> = (0..shape[0] * shape[1])
            .map(|i| ((i * k + 3) % 19) as f32 / 9.5 - 1.0)
            .collect();
        prim(Tensor::<B, 2>::from_data(TensorData::new(v, shape), device))
    };
    let (qkv, dout, x, g, b) = (
        t(7, [n, 3 * d]),
        t(5, [n, d]),
        t(11, [n, d]),
        t(3, [1, d]),
        t(13, [1, d]),
    );
    let kernel = {
        let (o, l) = B::attention_forward(qkv.clone(), s);
        let dq = B::attention_backward(qkv.clone(), o.clone(), l.clone(), dout.clone(), s);
        let (y, st) = B::layer_norm_forward(x.clone(), g.clone(), b.clone());
        let (dx, dg, db) = B::layer_norm_backward(x.clone(), g.clone(), st.clone(), dout.clone());
        [o, l, dq, y, st, dx, dg, db]
    };
    let composed = {
        let (o, l) = compose::attention_forward::<B>(qkv.clone(), s);
        let dq = compose::attention_backward::<B>(qkv, o.clone(), l.clone(), dout.clone(), s);
        let (y, st) = compose::layer_norm_forward::<B>(x.clone(), g.clone(), b);
        let (dx, dg, db) = compose::layer_norm_backward::<B>(x, g, st.clone(), dout);
        [o, l, dq, y, st, dx, dg, db]
    };
    let names = [
        "attention output",
        "log-sum-exp",
        "attention gradient",
        "LayerNorm output",
        "LayerNorm statistics",
        "LayerNorm dx",
        "LayerNorm dg",
        "LayerNorm db",
    ];
    for ((k, c), name) in kernel.into_iter().zip(composed).zip(names) {
        let read = |p| {
            float::<B, 2>(p)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default()
        };
        let (k, c) = (read(k), read(c));
        let scale = c.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = k
            .iter()
            .zip(&c)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        if k.len() != c.len() || !(worst <= 1e-3 * scale) {
            return Err(format!(
                "the {name} differs from the composition by {worst:e}"
            ));
        }
    }
    Ok(())
}

impl<R, F, I, BT> Kernels for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn attention_forward(
        qkv: FloatTensor<Self>,
        s: AttnShape,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match f32s(&[qkv.clone()]) {
            Some([qkv]) => attention::forward(qkv, s),
            None => compose::attention_forward::<Self>(qkv, s),
        }
    }

    fn attention_backward(
        qkv: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        s: AttnShape,
    ) -> FloatTensor<Self> {
        match f32s(&[qkv.clone(), out.clone(), lse.clone(), dout.clone()]) {
            Some([qkv, out, lse, dout]) => attention::backward(qkv, out, lse, dout, s),
            None => compose::attention_backward::<Self>(qkv, out, lse, dout, s),
        }
    }

    fn layer_norm_forward(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match f32s(&[x.clone(), g.clone(), b.clone()]) {
            Some([x, g, b]) => layer_norm::forward(x, g, b),
            None => compose::layer_norm_forward::<Self>(x, g, b),
        }
    }

    fn layer_norm_backward(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match f32s(&[x.clone(), g.clone(), stats.clone(), dy.clone()]) {
            Some([x, g, stats, dy]) => layer_norm::backward::<R, F, I, BT>(x, g, stats, dy),
            None => compose::layer_norm_backward::<Self>(x, g, stats, dy),
        }
    }
}

/// The kernels against the float64 references of the CPU kernels' tests, on the first wgpu
/// adapter (lavapipe in CI): on the bare CubeCL backend, and through fusion's custom operations
/// (what training runs).
#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use std::io::Write;

    use burn::backend::Wgpu;
    use burn::backend::wgpu::{WgpuDevice, WgpuRuntime};
    use burn::tensor::backend::Backend;
    use burn::tensor::{Tensor, TensorData};

    use super::super::attention::tests::{reference as attention_reference, rel, values};
    use super::super::layer_norm::tests::reference as layer_norm_reference;
    use super::super::{AttnShape, Kernels, float, prim};
    use super::CubeBackend;

    type Bare = CubeBackend<WgpuRuntime, f32, i32, u32>;

    fn device() -> Option<WgpuDevice> {
        let d = crate::exec::device::first_wgpu_device();
        assert!(
            d.is_some() || std::env::var_os("PROGC_REQUIRE_WGPU").is_none(),
            "PROGC_REQUIRE_WGPU is set but there is no wgpu adapter: the CubeCL kernels would \
             go untested (install mesa-vulkan-drivers)"
        );
        if d.is_none() {
            // Not captured by the test harness: a skip is visible in the test output.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: no wgpu adapter (install mesa-vulkan-drivers); CubeCL kernels untested"
            );
        }
        d
    }

    fn upload<B: Backend>(
        v: &[f64],
        shape: [usize; 2],
        device: &B::Device,
    ) -> B::FloatTensorPrimitive {
        let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        prim(Tensor::<B, 2>::from_data(TensorData::new(v, shape), device))
    }

    fn download<B: Backend>(t: B::FloatTensorPrimitive) -> Vec<f32> {
        float::<B, 2>(t)
            .into_data()
            .to_vec::<f32>()
            .expect("f32 tensor")
    }

    fn attention_matches<B: Kernels>(device: &B::Device, s: AttnShape) {
        let n = s.batch * s.seq;
        let qkv = values(n * 3 * s.width, 1, 2.0);
        let dout = values(n * s.width, 2, 1.0);
        let (ro, rl, rd) = attention_reference(&qkv, &dout, s);
        let x = upload::<B>(&qkv, [n, 3 * s.width], device);
        let (out, lse) = B::attention_forward(x.clone(), s);
        let g = upload::<B>(&dout, [n, s.width], device);
        let dqkv = B::attention_backward(x, out.clone(), lse.clone(), g, s);
        let (out, lse, dqkv) = (download::<B>(out), download::<B>(lse), download::<B>(dqkv));
        let (eo, el, ed) = (rel(&out, &ro), rel(&lse, &rl), rel(&dqkv, &rd));
        assert!(
            eo < 1e-5 && el < 1e-6 && ed < 1e-5,
            "{s:?}: out {eo:e} lse {el:e} dqkv {ed:e}"
        );
    }

    fn layer_norm_matches<B: Kernels>(device: &B::Device, n: usize, d: usize) {
        let x: Vec<f64> = values(n * d, 5, 3.0).iter().map(|v| v + 0.7).collect();
        let g: Vec<f64> = values(d, 6, 0.5).iter().map(|v| v + 1.0).collect();
        let b = values(d, 7, 0.3);
        let dy = values(n * d, 8, 1.0);
        let xt = upload::<B>(&x, [n, d], device);
        let gt = upload::<B>(&g, [1, d], device);
        let (y, stats) =
            B::layer_norm_forward(xt.clone(), gt.clone(), upload::<B>(&b, [1, d], device));
        let (dx, dg, db) = B::layer_norm_backward(xt, gt, stats, upload::<B>(&dy, [n, d], device));
        let [ry, rdx, rdg, rdb] = layer_norm_reference(&x, &g, &b, &dy);
        let e = [
            rel(&download::<B>(y), &ry),
            rel(&download::<B>(dx), &rdx),
            rel(&download::<B>(dg), &rdg),
            rel(&download::<B>(db), &rdb),
        ];
        assert!(
            e.iter().all(|&e| e < 1e-5),
            "[{n}, {d}]: y, dx, dg, db errors {e:?}"
        );
    }

    /// One block and several with a ragged last one, one head, odd head sizes, and GPT-2's head
    /// size 64 (fewer rows per cube).
    const ATTENTION: [AttnShape; 4] = [
        AttnShape {
            batch: 2,
            seq: 16,
            heads: 2,
            width: 16,
        },
        AttnShape {
            batch: 1,
            seq: 150,
            heads: 3,
            width: 24,
        },
        AttnShape {
            batch: 3,
            seq: 7,
            heads: 1,
            width: 5,
        },
        AttnShape {
            batch: 1,
            seq: 40,
            heads: 2,
            width: 128,
        },
    ];

    /// Rows shorter and longer than a cube, a ragged gradient block, and more rows than one
    /// axis of the grid holds.
    const LAYER_NORM: [(usize, usize); 4] = [(5, 16), (77, 130), (1, 3), (4100, 8)];

    #[test]
    fn cubecl_attention_matches_the_float64_reference() {
        let Some(device) = device() else { return };
        for s in ATTENTION {
            attention_matches::<Bare>(&device, s);
            attention_matches::<Wgpu>(&device, s);
        }
    }

    /// The check every device runs on first use passes on this one (and so leaves the kernels
    /// on for the other tests).
    #[test]
    fn the_self_check_passes_through_fusion() {
        let Some(device) = device() else { return };
        assert_eq!(super::self_check::<Wgpu>(&device), Ok(()));
        assert!(!super::OFF.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[test]
    fn cubecl_layer_norm_matches_the_float64_reference() {
        let Some(device) = device() else { return };
        for (n, d) in LAYER_NORM {
            layer_norm_matches::<Bare>(&device, n, d);
            layer_norm_matches::<Wgpu>(&device, n, d);
        }
    }
}
