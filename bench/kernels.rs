//! Kernel checks and hardware floors on one device (the GPU check of `src/exec/network/kernels/`).
//!
//! 1. Correctness: the fused head cross-entropy (loss, d hidden, d embedding) against its
//!    float64 reference, in f32 and bf16, as relative errors `||out - ref|| / ||ref||`.
//! 2. Attention and LayerNorm, forward + backward: the backend's kernels (progc's CubeCL kernels
//!    on CUDA and wgpu, the CPU kernels on the CPU) next to the composition of tensor ops they
//!    replace, in ms per call, with the relative difference between the two.
//! 3. Floors: the measured matmul rate (GPT-2 small's MLP shape, f32 and bf16) and the
//!    measured memory bandwidth, and what they imply for one GPT-2 small training step
//!    (batch 8 x 1024): FLOPs / rate, and the AdamW update's bytes / bandwidth.
//!
//! Run: `cargo bench --bench kernels -- [auto|cpu|cuda|wgpu]` (default auto). Prints figures; it
//! is not a timed test. Exits non-zero when a relative error is over its bound.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, FloatDType, Int, Tensor, TensorData, TensorPrimitive};
use progc::exec::network::kernels::{AttnShape, Kernels, TrainBackend, compose};

use progc::exec::ExecError;
use progc::exec::device::{BackendTask, DeviceChoice, Placed, dispatch};
use progc::exec::network::kernels::head_ce::reference::{head_ce, rel_err, uniform};
use progc::exec::network::kernels::head_ce::{head_ce_loss, head_ce_train};
use progc::exec::network::precision::Precision;
use progc::plan::flops::{Flops, param_counts};
use progc::plan::spec::RunSpec;

/// Bounds on the relative error: f32 allows TF32 tensor-core matmuls (10-bit mantissa).
const BOUND_F32: f64 = 2e-3;
const BOUND_BF16: f64 = 2e-2;

fn tensor<B: Backend>(xs: &[f64], shape: [usize; 2], dev: &B::Device) -> Tensor<B, 2> {
    let v: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), dev)
}

fn to_f64<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    let t = t.cast(FloatDType::F32);
    t.into_data()
        .to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Relative errors of (loss, eval loss, dh, dW) for one shape and chunking.
fn check_head<B: TrainBackend>(dev: &B::Device, p: Precision) -> [f64; 4] {
    let (n, d, v, chunk) = (300, 64, 1000, 128);
    let (h, w) = (uniform(n * d, 3), uniform(v * d, 4));
    let t: Vec<usize> = (0..n).map(|i| (i * 7919 + 11) % v).collect();
    let (loss_ref, dh_ref, dw_ref) = head_ce(&h, &w, &t, d);
    let ti: Vec<i64> = t.iter().map(|&x| x as i64).collect();
    let targets = || Tensor::<B, 1, Int>::from_data(TensorData::new(ti.clone(), [n]), dev);
    let ht = tensor::<B>(&h, [n, d], dev).require_grad();
    let wt = tensor::<B>(&w, [v, d], dev).require_grad();
    let out = head_ce_train(ht.clone(), wt.clone(), targets(), chunk, p);
    let grads = out.surrogate.backward();
    let loss = out.loss.into_scalar().elem::<f64>();
    let eval = head_ce_loss(
        tensor::<B::InnerBackend>(&h, [n, d], dev),
        tensor::<B::InnerBackend>(&w, [v, d], dev),
        targets().inner(),
        chunk,
        p,
    )
    .into_scalar()
    .elem::<f64>();
    [
        (loss - loss_ref).abs() / loss_ref,
        (eval - loss_ref).abs() / loss_ref,
        rel_err(&to_f64(ht.grad(&grads).unwrap()), &dh_ref),
        rel_err(&to_f64(wt.grad(&grads).unwrap()), &dw_ref),
    ]
}

/// Seconds per call of `f`, median of `reps` after two warm-up calls, synced each time.
fn time<B: Backend>(dev: &B::Device, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut ts = Vec::new();
    for i in 0..reps + 2 {
        let t0 = Instant::now();
        f();
        let _ = B::sync(dev);
        if i >= 2 {
            ts.push(t0.elapsed().as_secs_f64());
        }
    }
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

type Prim<B> = burn::tensor::ops::FloatTensor<B>;

fn prim<B: Backend>(xs: &[f64], shape: [usize; 2], dev: &B::Device) -> Prim<B> {
    tensor::<B>(xs, shape, dev).into_primitive().tensor()
}

fn values<B: Backend>(p: Prim<B>) -> Vec<f64> {
    to_f64(Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(p)))
}

/// One row of section 2: ms per call of the kernel and of the composition, their ratio, and the
/// relative difference of their results.
fn side_by_side<B: Backend>(
    dev: &B::Device,
    what: &str,
    kernel: impl Fn() -> Vec<Prim<B>>,
    composed: impl Fn() -> Vec<Prim<B>>,
) {
    let tk = time::<B>(dev, 5, || drop(kernel()));
    let tc = time::<B>(dev, 5, || drop(composed()));
    let (a, b): (Vec<f64>, Vec<f64>) = (
        kernel().into_iter().flat_map(values::<B>).collect(),
        composed().into_iter().flat_map(values::<B>).collect(),
    );
    println!(
        "  {what:<44} kernel {:8.2} ms  composition {:8.2} ms  ({:5.2}x)  difference {:.1e}",
        1e3 * tk,
        1e3 * tc,
        tc / tk,
        rel_err(&a, &b)
    );
}

/// Section 2: attention and LayerNorm forward + backward, at GPT-2 small's shapes on a GPU.
fn attention_and_layer_norm<B: Kernels>(dev: &B::Device, heavy: bool) {
    let s = if heavy {
        AttnShape {
            batch: 8,
            seq: 1024,
            heads: 12,
            width: 768,
        }
    } else {
        AttnShape {
            batch: 2,
            seq: 256,
            heads: 4,
            width: 128,
        }
    };
    let n = s.batch * s.seq;
    let qkv = prim::<B>(&uniform(n * 3 * s.width, 5), [n, 3 * s.width], dev);
    let dout = prim::<B>(&uniform(n * s.width, 6), [n, s.width], dev);
    println!("attention and LayerNorm, forward + backward: kernel vs composition");
    side_by_side::<B>(
        dev,
        &format!(
            "attention {}x{} tokens, {} heads, width {}",
            s.batch, s.seq, s.heads, s.width
        ),
        || {
            let (o, l) = B::attention_forward(qkv.clone(), s);
            vec![
                B::attention_backward(qkv.clone(), o.clone(), l, dout.clone(), s),
                o,
            ]
        },
        || {
            let (o, l) = compose::attention_forward::<B>(qkv.clone(), s);
            vec![
                compose::attention_backward::<B>(qkv.clone(), o.clone(), l, dout.clone(), s),
                o,
            ]
        },
    );
    let x = prim::<B>(&uniform(n * s.width, 7), [n, s.width], dev);
    let g = prim::<B>(&uniform(s.width, 8), [1, s.width], dev);
    let b = prim::<B>(&uniform(s.width, 9), [1, s.width], dev);
    side_by_side::<B>(
        dev,
        &format!("LayerNorm [{n}, {}]", s.width),
        || {
            let (y, st) = B::layer_norm_forward(x.clone(), g.clone(), b.clone());
            let (dx, dg, db) = B::layer_norm_backward(x.clone(), g.clone(), st, dout.clone());
            vec![y, dx, dg, db]
        },
        || {
            let (y, st) = compose::layer_norm_forward::<B>(x.clone(), g.clone(), b.clone());
            let (dx, dg, db) =
                compose::layer_norm_backward::<B>(x.clone(), g.clone(), st, dout.clone());
            vec![y, dx, dg, db]
        },
    );
}

/// FLOP/s of `[m, k] x [k, n]` in precision `p`.
fn matmul_rate<B: Backend>(dev: &B::Device, m: usize, k: usize, n: usize, p: Precision) -> f64 {
    let a = p.operand(Tensor::<B, 2>::ones([m, k], dev));
    let b = p.operand(Tensor::<B, 2>::ones([k, n], dev));
    let s = time::<B>(dev, 5, || {
        let _ = a.clone().matmul(b.clone());
    });
    2.0 * (m * k * n) as f64 / s
}

/// Bytes/s of `y = x * 1.0001 + 1` over `elems` f32 values (one read, one write).
fn bandwidth<B: Backend>(dev: &B::Device, elems: usize) -> f64 {
    let x = Tensor::<B, 1>::ones([elems], dev);
    let s = time::<B>(dev, 5, || {
        let _ = x.clone().mul_scalar(1.0001).add_scalar(1.0);
    });
    (2 * 4 * elems) as f64 / s
}

/// The recipe `bench/gpu.sh` trains (GPT-2 small from the std library, batch 8 x 1024), so the
/// floors are those of the very run measured next to them.
fn bench_full() -> RunSpec {
    let path = std::path::Path::new("bench/gpu.prog");
    let (program, _) = progc::syntax::load_program(path, &[]).expect("bench/gpu.prog is readable");
    let (spec, diags) = progc::check::check(&program);
    assert!(
        !progc::diagnostic::has_errors(&diags),
        "bench/gpu.prog has errors"
    );
    spec.runs
        .into_iter()
        .find(|r| r.name == "bench_full")
        .expect("bench/gpu.prog defines bench_full")
}

struct Bench {
    heavy: bool,
}

impl BackendTask for Bench {
    type Output = bool;

    fn run<B: TrainBackend>(self, dev: B::Device, on: Placed) -> Result<bool, ExecError> {
        let wgpu = matches!(on, Placed::Wgpu(_));
        println!(
            "fused head cross-entropy vs float64 reference (300 rows, d 64, V 1000, chunks of 128)"
        );
        println!(
            "{:>9}  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}",
            "precision", "loss", "eval", "d hidden", "d embed", "bound"
        );
        let mut ok = true;
        // wgpu has no bf16.
        let precisions: &[(Precision, f64)] = if wgpu {
            &[(Precision::F32, BOUND_F32)]
        } else {
            &[(Precision::F32, BOUND_F32), (Precision::Bf16, BOUND_BF16)]
        };
        for &(p, bound) in precisions {
            let e = check_head::<B>(&dev, p);
            let pass = e.iter().all(|&x| x < bound);
            ok &= pass;
            println!(
                "{:>9}  {:>10.2e}  {:>10.2e}  {:>10.2e}  {:>10.2e}  {:>8.0e} {}",
                p.name(),
                e[0],
                e[1],
                e[2],
                e[3],
                bound,
                if pass { "ok" } else { "FAIL" }
            );
        }

        attention_and_layer_norm::<B::InnerBackend>(&dev, self.heavy);

        // Floors for GPT-2 small, batch 8 x 1024: shapes of its MLP up-projection.
        let (rows, width) = if self.heavy {
            (8 * 1024, 768)
        } else {
            (1024, 256)
        };
        let elems = if self.heavy { 1 << 28 } else { 1 << 22 };
        let r32 = matmul_rate::<B::InnerBackend>(&dev, rows, width, 4 * width, Precision::F32);
        let r16 = if wgpu {
            f64::NAN
        } else {
            matmul_rate::<B::InnerBackend>(&dev, rows, width, 4 * width, Precision::Bf16)
        };
        let bw = bandwidth::<B::InnerBackend>(&dev, elems);
        println!(
            "measured: matmul [{rows}x{width}]x[{width}x{}] f32 {:.3} TFLOP/s, bf16 {:.3} TFLOP/s; bandwidth {:.0} GB/s ({} MB read+write)",
            4 * width,
            r32 / 1e12,
            r16 / 1e12,
            bw / 1e9,
            (8 * elems) >> 20
        );
        let run = bench_full();
        let (small, tokens) = (&run.model, run.batch.tokens_per_step());
        println!(
            "GPT-2 small, batch 8 x 1024, floors per training step (FLOPs at the measured matmul rate; AdamW's 7 f32 streams over the parameters at the measured bandwidth):"
        );
        for depth in [12, 0] {
            let f = Flops::of(small, depth, tokens).exact;
            let params = param_counts(small, depth).total as f64;
            let adam_bytes = 7.0 * 4.0 * params;
            for (p, rate) in [("f32", r32), ("bf16", r16)] {
                if rate.is_nan() {
                    continue; // not measured (no bf16 on wgpu)
                }
                let s = f / rate + adam_bytes / bw;
                println!(
                    "  depth {depth:>2} {p:>4}: {:.2} TFLOP -> {:6.2} ms compute + {:5.2} ms update = {:6.2} ms, at most {:9.0} tok/s",
                    f / 1e12,
                    1e3 * f / rate,
                    1e3 * adam_bytes / bw,
                    1e3 * s,
                    tokens as f64 / s
                );
            }
        }
        Ok(ok)
    }
}

fn main() {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let choice = match arg.as_deref().unwrap_or("auto").parse::<DeviceChoice>() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // Full-size shapes only where a GPU runs them; the CPU and software adapters (lavapipe)
    // get small ones.
    let heavy = match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::Wgpu(n) => !progc::exec::device::wgpu_adapters()
            .get(n)
            .is_some_and(|a| a.is_software()),
        _ => true,
    };
    match dispatch(choice, true, Bench { heavy }) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
