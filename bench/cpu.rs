//! CPU throughput: training tok/s of GPT-2 tiny (width 128, 4 heads, context 128, bytes) at
//! each depth on burn's flex backend, through the reference head (full logits, autodiff) and
//! the fused chunked head that training uses, side by side with the same model in PyTorch on
//! the CPU (`bench/torch_gpt2.py`; skipped with a message where torch is absent). A last pair
//! of rows uses GPT-2's 50,257-token vocabulary at depth 0, where the head is all the work.
//!
//! Run: `cargo bench --bench cpu` (optionally `-- STEPS`, default 10 timed steps per depth).

use std::process::Command;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};

use progc::exec::network::model::Gpt2;
use progc::exec::network::optim::{Optimizer, ParamRules};
use progc::exec::network::precision::Precision;
use progc::plan::spec::{AdamWSpec, ModelSpec, OptimizerSpec, ResidualScaling};

type B = Autodiff<Flex>;

const DEPTHS: [usize; 5] = [0, 1, 2, 4, 6];
const BATCH: usize = 8;

fn spec(depth: usize, vocab: usize) -> ModelSpec {
    ModelSpec {
        name: "gpt2_tiny".into(),
        width: 128,
        heads: 4,
        depth,
        context: 128,
        vocab,
        mlp_ratio: 4,
        init_std: 0.02,
        residual: ResidualScaling::None,
    }
}

/// Timed training steps per second (forward, backward, AdamW) at `depth`, in tokens.
fn burn_tok_per_s(depth: usize, vocab: usize, fused: bool, steps: usize) -> f64 {
    let device = Default::default();
    let m = spec(depth, vocab);
    let mut model = Gpt2::<B>::new(&m, depth, 0, &device);
    let mut opt = Optimizer::<B>::new(&OptimizerSpec::Adamw(AdamWSpec::with_lr(1e-3)));
    let groups = ParamRules::from(model.param_groups());
    let tokens: Vec<i32> = (0..BATCH * m.context)
        .map(|i| ((i * 7919) % m.vocab) as i32)
        .collect();
    let batch = || {
        Tensor::<B, 2, Int>::from_data(TensorData::new(tokens.clone(), [BATCH, m.context]), &device)
    };
    let mut step = |model: Gpt2<B>| {
        let loss = if fused {
            model.train_loss(batch(), batch(), Precision::F32).surrogate
        } else {
            model.loss(batch(), batch())
        };
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        opt.step(model, grads, 1e-3, &groups).0
    };
    model = step(model); // warm-up
    let t = Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    let _ = model.param_ids(); // keep the model alive to the end
    (steps * BATCH * m.context) as f64 / t.elapsed().as_secs_f64()
}

/// PyTorch's figure for the same model, or why there is none.
fn torch_tok_per_s(depth: usize, steps: usize) -> Result<f64, String> {
    let out = Command::new("python3")
        .args([
            "bench/torch_gpt2.py",
            "--device",
            "cpu",
            "--depth",
            &depth.to_string(),
        ])
        .args([
            "--width",
            "128",
            "--heads",
            "4",
            "--context",
            "128",
            "--vocab",
            "256",
        ])
        .args(["--batch", &BATCH.to_string(), "--steps", &steps.to_string()])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("").trim();
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|_| format!("{} {}", line, String::from_utf8_lossy(&out.stderr).trim()))?;
    value["tok_per_s"]
        .as_f64()
        .ok_or_else(|| format!("no tok_per_s in {line}"))
}

fn main() {
    let steps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    println!("GPT-2 tiny (width 128, 4 heads, context 128), batch {BATCH} x 128, AdamW, fp32, CPU");
    println!(
        "{:>5}  {:>6}  {:>16}  {:>16}  {:>7}  {:>12}  {:>12}",
        "depth",
        "vocab",
        "reference tok/s",
        "fused tok/s",
        "fused/ref",
        "torch tok/s",
        "fused/torch"
    );
    let mut torch_note = None;
    let rows = DEPTHS.iter().map(|&d| (d, 256)).chain([(0, 50257)]);
    for (depth, vocab) in rows {
        let reference = burn_tok_per_s(depth, vocab, false, steps);
        let fused = burn_tok_per_s(depth, vocab, true, steps);
        let torch = if vocab == 256 {
            torch_tok_per_s(depth, steps)
        } else {
            Err("-".into())
        };
        let (theirs, ratio) = match torch {
            Ok(t) => (format!("{t:.0}"), format!("{:.2}", fused / t)),
            Err(why) => {
                if vocab == 256 {
                    torch_note.get_or_insert(why);
                }
                ("-".into(), "-".into())
            }
        };
        println!(
            "{depth:>5}  {vocab:>6}  {reference:>16.0}  {fused:>16.0}  {:>9.2}  {theirs:>12}  {ratio:>12}",
            fused / reference
        );
    }
    if let Some(why) = torch_note {
        println!("torch column skipped: {why}");
    }
}
