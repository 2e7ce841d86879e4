//! Spec builders for tests: of the plan here, and of the executor (which enables them with
//! this crate's `fixtures` feature, as a dev-dependency only).

use super::spec::{
    AdamWSpec, BatchSpec, DataFormat, DataSpec, DecayShape, GrowthSpec, InitSpec, ModelSpec,
    OptStatePolicy, OptimizerSpec, Placement, ResidualScaling, RunSpec, ScheduleSpec, Tokenizer,
};

pub fn model(width: usize, heads: usize, depth: usize, context: usize, vocab: usize) -> ModelSpec {
    ModelSpec {
        name: if width == 768 {
            "gpt2_small".into()
        } else {
            "tiny".into()
        },
        width,
        heads,
        depth,
        context,
        vocab,
        mlp_ratio: 4,
        init_std: 0.02,
        residual: ResidualScaling::None,
    }
}

pub fn gpt2_small() -> ModelSpec {
    model(768, 12, 12, 1024, 50257)
}

pub fn tiny() -> ModelSpec {
    model(64, 4, 2, 32, 256)
}

pub fn wsd(warmup: u64, decay: u64) -> ScheduleSpec {
    ScheduleSpec::Wsd {
        warmup_steps: warmup,
        decay_steps: decay,
        shape: DecayShape::Linear,
        floor: 0.0,
    }
}

pub fn grow(at: u64, from: usize, to: usize) -> GrowthSpec {
    GrowthSpec {
        at_step: at,
        from_depth: from,
        to_depth: to,
        init: InitSpec::Random { std: 0.02 },
        placement: Placement::Top,
        optimizer_state: OptStatePolicy::Keep,
        lr_mult: 1.0,
    }
}

/// A run of `model` starting at `start_depth`, 4 sequences per step, AdamW at 6e-4.
pub fn run(
    name: &str,
    model: ModelSpec,
    start_depth: usize,
    growths: Vec<GrowthSpec>,
    total_steps: u64,
    schedule: ScheduleSpec,
) -> RunSpec {
    let tokenizer = if model.vocab == 256 {
        Tokenizer::Bytes
    } else {
        Tokenizer::Gpt2
    };
    RunSpec {
        name: name.into(),
        batch: BatchSpec {
            sequences: 4,
            context: model.context,
        },
        model,
        data: DataSpec {
            name: "text".into(),
            path: "data/text.txt".into(),
            resolved_path: "data/text.txt".into(),
            tokenizer,
            val_fraction: 0.01,
            val_blocks: 1,
            format: DataFormat::Text,
            shards: vec![],
            val_shards: vec![],
        },
        total_steps,
        optimizer: OptimizerSpec::Adamw(AdamWSpec {
            weight_decay: 0.1,
            ..AdamWSpec::with_lr(6e-4)
        }),
        schedule,
        seed: 1,
        start_depth,
        growths,
        eval_every: 100,
        eval_batches: 2,
        checkpoint_every: 0,
        checkpoint_clock_s: None,
    }
}

/// 0 -> full depth of `m` at `tau`, WSD 2% / 10%.
pub fn zero_to_full(name: &str, m: ModelSpec, tau: u64, total: u64) -> RunSpec {
    let d = m.depth;
    run(
        name,
        m,
        0,
        vec![grow(tau, 0, d)],
        total,
        wsd(total / 50, total / 10),
    )
}
