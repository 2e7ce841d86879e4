//! Depth growth, in one room: turns a depth-`from` model into a depth-`to` model ([`grow`],
//! with each init), applies the growth's optimizer-state policy ([`grow_with_policy`]), and
//! derives the rules a step applies to the blocks each growth added ([`param_rules`]). A new
//! init is an arm of [`fresh_init`] here (or a layout of [`copy_source`]), plus its checker arm.
//!
//! Invariants:
//! - embeddings, `ln_f` and every old block keep their values and their ParamIds (so their
//!   optimizer state stays attached under `Keep`);
//! - `Copy` layouts: the FIRST occurrence (lowest block index) of each source block is the
//!   original block itself (same ParamIds); every further occurrence is a detached copy with
//!   fresh ParamIds (keyed by the growth seed and its position, so every replica of a
//!   data-parallel run agrees), listed in `copied_from` as `(new id, source id)` parameter
//!   by parameter, so the copies train independently;
//! - non-copy inits add `to - from` fresh blocks after (`Top`) or before (`Bottom`) the old ones;
//! - `Zero`: every linear weight and bias of a new block is zero, LayerNorm gains stay 1 and
//!   biases 0: both residual branches then output exactly zero, so the model's function is
//!   unchanged (with residual scaling `None`; `1/sqrt(L)` and `1/L` rescale the old branches
//!   when L changes). Gains are kept at 1 so the LayerNorms are ordinary once the zero weights
//!   start moving;
//! - `ZeroOut`: standard random init, but the attention-out and MLP-out projections (weights
//!   and biases) are zero: function-preserving as well;
//! - random values are keyed by `(seed, grow.blocks.<final index>.<param>)`; the caller derives
//!   `seed` from (run seed, growth step), so a resumed run regrows identically.

use std::collections::HashSet;

use burn::module::ParamId;
use burn::tensor::backend::Backend;

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::network::kernels::TrainBackend;
use crate::exec::network::model::{Block, Gpt2, InitKind, Role, out_std, standard_init};
use crate::exec::network::optim::{Optimizer, ParamRules};
use crate::plan::spec::{
    CopyLayout, GrowthSpec, InitSpec, ModelSpec, OptStatePolicy, Placement, RunSpec,
};

/// The result of a growth.
pub struct Grown<B: Backend> {
    pub model: Gpt2<B>,
    /// Every ParamId the growth created (fresh blocks and extra copies).
    pub new_ids: Vec<ParamId>,
    /// `(new, source)` for every parameter of every extra copy.
    pub copied_from: Vec<(ParamId, ParamId)>,
}

/// Which source block sits at position `i` of the grown stack.
pub fn copy_source(layout: CopyLayout, i: usize, from: usize, to: usize) -> usize {
    match layout {
        CopyLayout::Stack => i % from,
        CopyLayout::Interleave => i * from / to,
        CopyLayout::Last => i.min(from - 1),
    }
}

/// Which growth added each block of the model after `growths` (index into `growths`; `None`:
/// a block of the start depth, or the original a copy was taken from). Mirrors the layout
/// [`grow`] builds, so a resumed run can tell the new blocks apart without a record of them.
pub fn block_origins(start_depth: usize, growths: &[GrowthSpec]) -> Vec<Option<usize>> {
    let mut origins = vec![None; start_depth];
    for (gi, g) in growths.iter().enumerate() {
        let (from, to) = (g.from_depth, g.to_depth);
        origins = if let InitSpec::Copy { layout } = g.init {
            let mut used = vec![false; from];
            (0..to)
                .map(|i| {
                    let s = copy_source(layout, i, from, to);
                    if std::mem::replace(&mut used[s], true) {
                        Some(gi)
                    } else {
                        origins[s]
                    }
                })
                .collect()
        } else {
            let fresh = std::iter::repeat_n(Some(gi), to.saturating_sub(from));
            match g.placement {
                Placement::Top => origins.into_iter().chain(fresh).collect(),
                Placement::Bottom => fresh.chain(origins).collect(),
            }
        };
    }
    origins
}

/// How the parameters of a fresh block are drawn, by role, for an init that makes fresh blocks
/// (`None` for copies, which [`grow`] takes from the trained blocks). `to` is the depth after
/// the growth (output projections use `std / sqrt(2 to)`).
pub fn fresh_init(init: InitSpec, to: usize) -> Option<Box<dyn Fn(Role) -> InitKind>> {
    Some(match init {
        InitSpec::Random { std } => {
            let ostd = out_std(std, to);
            Box::new(move |r| standard_init(r, std, ostd))
        }
        InitSpec::Zero => Box::new(|r| match r {
            Role::LnGain => InitKind::Ones,
            _ => InitKind::Zeros,
        }),
        InitSpec::ZeroOut { std } => Box::new(move |r| match r {
            Role::OutWeight | Role::OutBias => InitKind::Zeros,
            r => standard_init(r, std, 0.0),
        }),
        InitSpec::Copy { .. } => return None,
    })
}

pub fn grow<B: Backend>(
    model: Gpt2<B>,
    g: &GrowthSpec,
    spec: &ModelSpec,
    seed: u64,
    device: &B::Device,
) -> Result<Grown<B>, ExecError> {
    let (from, to) = (g.from_depth, g.to_depth);
    if model.depth() != from || to <= from {
        return Err(ExecError::new(
            ErrorKind::Internal,
            format!(
                "growth {from} -> {to} applied to a model of depth {}",
                model.depth()
            ),
        ));
    }
    let mut new_ids = Vec::new();
    let mut copied_from = Vec::new();
    let Gpt2 {
        wte,
        wpe,
        blocks: old,
        lnf_g,
        lnf_b,
        heads,
        residual,
    } = model;

    let blocks = if let InitSpec::Copy { layout } = g.init {
        if from == 0 {
            return Err(ExecError::new(
                ErrorKind::Internal,
                "copy growth from a 0-layer model",
            ));
        }
        let mut used = vec![false; from];
        let mut out = Vec::with_capacity(to);
        for i in 0..to {
            let s = copy_source(layout, i, from, to);
            if used[s] {
                let dup = old[s].duplicate(seed, &format!("grow.copies.{i}"));
                for (n, o) in dup.param_ids().into_iter().zip(old[s].param_ids()) {
                    new_ids.push(n);
                    copied_from.push((n, o));
                }
                out.push(dup);
            } else {
                used[s] = true;
                out.push(old[s].clone());
            }
        }
        out
    } else {
        let Some(init) = fresh_init(g.init, to) else {
            unreachable!("copies are handled above")
        };
        let k = to - from;
        let offset = match g.placement {
            Placement::Top => from,
            Placement::Bottom => 0,
        };
        let fresh: Vec<Block<B>> = (0..k)
            .map(|j| {
                let key = format!("grow.blocks.{}", offset + j);
                Block::init(spec, seed, &key, device, &init)
            })
            .collect();
        for b in &fresh {
            new_ids.extend(b.param_ids());
        }
        match g.placement {
            Placement::Top => old.into_iter().chain(fresh).collect(),
            Placement::Bottom => fresh.into_iter().chain(old).collect(),
        }
    };
    let model = Gpt2 {
        wte,
        wpe,
        blocks,
        lnf_g,
        lnf_b,
        heads,
        residual,
    };
    Ok(Grown {
        model,
        new_ids,
        copied_from,
    })
}

/// Grows `model` by `g` and applies `g`'s optimizer-state policy: `Keep` keeps the moments of
/// surviving parameters, `Reset` clears all, `Copy` gives every extra copy its source's moments
/// (for non-copy inits `Copy` acts as `Keep`). State of ids no longer in the model is dropped.
pub fn grow_with_policy<B: TrainBackend>(
    model: Gpt2<B>,
    opt: &mut Optimizer<B>,
    g: &GrowthSpec,
    spec: &ModelSpec,
    seed: u64,
    device: &B::Device,
) -> Result<Gpt2<B>, ExecError> {
    let grown = grow(model, g, spec, seed, device)?;
    match g.optimizer_state {
        OptStatePolicy::Reset => opt.reset(),
        OptStatePolicy::Copy if matches!(g.init, InitSpec::Copy { .. }) => {
            opt.copy_state(&grown.copied_from)
        }
        OptStatePolicy::Keep | OptStatePolicy::Copy => {}
    }
    let ids: HashSet<_> = grown.model.param_ids().into_iter().collect();
    opt.retain(&ids);
    Ok(grown.model)
}

/// Each parameter's group, and the LR multiplier of every parameter in a block that a growth
/// so far added with an `lr_mult` other than 1. Derived from the model and the recipe alone, so
/// a resumed run gets the same rates as one that never stopped.
pub fn param_rules<B: Backend>(model: &Gpt2<B>, spec: &RunSpec) -> ParamRules {
    // Growths strictly deepen the model: the ones done are those it is already as deep as.
    let n = spec
        .growths
        .iter()
        .take_while(|g| g.to_depth <= model.depth())
        .count();
    let done = &spec.growths[..n];
    let origins = block_origins(spec.start_depth, done);
    let lr_mults = model
        .block_param_ids()
        .into_iter()
        .zip(origins)
        .filter_map(|(ids, o)| Some((ids, done[o?].lr_mult)))
        .filter(|&(_, m)| m != 1.0)
        .flat_map(|(ids, m)| ids.into_iter().map(move |id| (id, m)))
        .collect();
    ParamRules {
        groups: model.param_groups(),
        lr_mults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::network::model::param_to_vec;
    use crate::exec::network::model::tests::{TB, logits_vec, tiny_spec};
    use crate::plan::spec::OptStatePolicy;

    fn growth(from: usize, to: usize, init: InitSpec, placement: Placement) -> GrowthSpec {
        GrowthSpec {
            at_step: 10,
            from_depth: from,
            to_depth: to,
            init,
            placement,
            optimizer_state: OptStatePolicy::Keep,
            lr_mult: 1.0,
        }
    }

    fn values(m: &Gpt2<TB>) -> Vec<(String, ParamId, Vec<f32>)> {
        m.named_params()
            .into_iter()
            .map(|(n, p)| (n, p.id, param_to_vec(p)))
            .collect()
    }

    #[test]
    fn copy_layouts_map_positions_to_sources() {
        let map = |l, f, t| (0..t).map(|i| copy_source(l, i, f, t)).collect::<Vec<_>>();
        assert_eq!(map(CopyLayout::Stack, 2, 6), [0, 1, 0, 1, 0, 1]);
        assert_eq!(map(CopyLayout::Interleave, 2, 6), [0, 0, 0, 1, 1, 1]);
        assert_eq!(map(CopyLayout::Last, 2, 5), [0, 1, 1, 1, 1]);
        assert_eq!(map(CopyLayout::Stack, 1, 3), [0, 0, 0]);
    }

    #[test]
    fn random_growth_keeps_old_parameters_and_ids() {
        let spec = tiny_spec(3);
        let dev = Default::default();
        for placement in [Placement::Top, Placement::Bottom] {
            let m = Gpt2::<TB>::new(&spec, 1, 5, &dev);
            let before = values(&m);
            let g = growth(1, 3, InitSpec::Random { std: 0.02 }, placement);
            let grown = grow(m, &g, &spec, 77, &dev).unwrap();
            assert_eq!(grown.model.depth(), 3);
            assert_eq!(grown.new_ids.len(), 24);
            assert!(grown.copied_from.is_empty());
            let after = values(&grown.model);
            let old_pos = if placement == Placement::Top { 0 } else { 2 };
            for (name, id, v) in &before {
                let want = name.replace("blocks.0.", &format!("blocks.{old_pos}."));
                let (_, id2, v2) = after.iter().find(|(n, _, _)| *n == want).unwrap();
                assert_eq!((id, v), (id2, v2), "{name}");
            }
            for id in &grown.new_ids {
                assert!(!before.iter().any(|(_, i, _)| i == id));
            }
        }
    }

    #[test]
    fn copies_equal_their_source_with_fresh_ids() {
        let spec = tiny_spec(4);
        let dev = Default::default();
        let m = Gpt2::<TB>::new(&spec, 2, 5, &dev);
        let src_ids = m.block_param_ids();
        let src: Vec<Vec<Vec<f32>>> = m
            .blocks
            .iter()
            .map(|b| b.params().iter().map(|p| param_to_vec(p)).collect())
            .collect();
        let g = growth(
            2,
            4,
            InitSpec::Copy {
                layout: CopyLayout::Interleave,
            },
            Placement::Top,
        );
        let grown = grow(m, &g, &spec, 1, &dev).unwrap();
        let ids = grown.model.block_param_ids();
        // [a, a, b, b]: positions 0 and 2 are the originals.
        assert_eq!(ids[0], src_ids[0]);
        assert_eq!(ids[2], src_ids[1]);
        for (pos, s) in [(1, 0), (3, 1)] {
            let vals: Vec<Vec<f32>> = grown.model.blocks[pos]
                .params()
                .iter()
                .map(|p| param_to_vec(p))
                .collect();
            assert_eq!(vals, src[s]);
            for id in &ids[pos] {
                assert!(!src_ids.iter().flatten().any(|x| x == id));
            }
        }
        assert_eq!(grown.copied_from.len(), 24);
        assert_eq!(grown.copied_from[0], (ids[1][0], src_ids[0][0]));
        assert_eq!(grown.copied_from[12], (ids[3][0], src_ids[1][0]));
    }

    #[test]
    fn zero_and_zero_out_growth_preserve_the_function() {
        let spec = tiny_spec(3);
        let dev = Default::default();
        let rows = vec![(0..16).map(|i| (i * 3 % 64) as i64).collect::<Vec<_>>()];
        for init in [InitSpec::Zero, InitSpec::ZeroOut { std: 0.02 }] {
            for placement in [Placement::Top, Placement::Bottom] {
                let m = Gpt2::<TB>::new(&spec, 1, 5, &dev);
                let (before, _) = logits_vec(&m, &rows);
                let grown = grow(m, &growth(1, 3, init, placement), &spec, 3, &dev).unwrap();
                let (after, _) = logits_vec(&grown.model, &rows);
                assert_eq!(before, after, "{init:?} {placement:?}");
            }
        }
        // Random growth does change the function (the test above can fail).
        let m = Gpt2::<TB>::new(&spec, 1, 5, &dev);
        let (before, _) = logits_vec(&m, &rows);
        let g = growth(1, 3, InitSpec::Random { std: 0.02 }, Placement::Top);
        let (after, _) = logits_vec(&grow(m, &g, &spec, 3, &dev).unwrap().model, &rows);
        assert_ne!(before, after);
    }

    /// `block_origins` marks exactly the blocks whose ids `grow` reports as new, for every
    /// init and placement, over two growths.
    #[test]
    fn block_origins_match_the_blocks_grow_creates() {
        let spec = tiny_spec(6);
        let dev = Default::default();
        let inits = [
            InitSpec::Random { std: 0.02 },
            InitSpec::Zero,
            InitSpec::Copy {
                layout: CopyLayout::Stack,
            },
            InitSpec::Copy {
                layout: CopyLayout::Interleave,
            },
            InitSpec::Copy {
                layout: CopyLayout::Last,
            },
        ];
        for init in inits {
            for placement in [Placement::Top, Placement::Bottom] {
                let gs = [growth(1, 3, init, placement), growth(3, 6, init, placement)];
                let mut m = Gpt2::<TB>::new(&spec, 1, 5, &dev);
                let mut added: Vec<Vec<ParamId>> = Vec::new();
                for (k, g) in gs.iter().enumerate() {
                    let grown = grow(m, g, &spec, k as u64, &dev).unwrap();
                    added.push(grown.new_ids);
                    m = grown.model;
                    let origins = block_origins(1, &gs[..=k]);
                    assert_eq!(origins.len(), m.depth());
                    for (b, ids) in m.block_param_ids().iter().enumerate() {
                        let by_ids = added.iter().position(|a| a.contains(&ids[0]));
                        assert_eq!(origins[b], by_ids, "{init:?} {placement:?} block {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_depth_is_an_error() {
        let spec = tiny_spec(3);
        let dev = Default::default();
        let m = Gpt2::<TB>::new(&spec, 2, 5, &dev);
        let g = growth(1, 3, InitSpec::Zero, Placement::Top);
        assert!(grow(m, &g, &spec, 3, &dev).is_err());
    }
}
