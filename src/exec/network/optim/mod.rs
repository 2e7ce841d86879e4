//! Optimizers: our own driver over burn modules, with one file per optimizer ([`adamw`],
//! [`muon`]), each an implementation of [`Method`].
//!
//! We do not use burn's `OptimizerAdaptor` because progc must own every parameter's state: at a
//! depth growth it keeps, resets or copies moments per parameter, and a resumed run must be
//! bit-identical to one that never stopped.
//!
//! Invariants:
//! - State is keyed by `ParamId` and lives on `B::InnerBackend`: a step counter and the named
//!   slots the method keeps for that parameter ([`Method::slots`]: `m, v` for AdamW, `m` for
//!   Muon's matrices), each flattened to rank 1, with the parameter's shape. A state whose shape
//!   or slots no longer match its parameter is dropped and restarted (never a panic).
//! - Every parameter has its own step counter, so parameters created at a growth get their own
//!   bias correction.
//! - A parameter without a gradient is returned untouched and gets no state.
//! - `step` is deterministic given (state, params, grads, lr): `save` -> `load` resumes exactly.
//! - Host syncs in `step`: none, except one scalar read of the global gradient norm when
//!   clipping is on (or `set_report_norm(true)`); otherwise `step` returns a norm of `0.0`.
//! - What a step knows of each parameter beyond its tensor, its group and an extra LR
//!   multiplier (a growth's `lr_mult`), comes in one [`ParamRules`] per step and is not saved:
//!   the training loop derives it from the model and the recipe.
//!
//! A new optimizer is a file here implementing [`Method`], an arm in [`Methods`], and its
//! `OptimizerSpec` variant with the checker's arm in the front end; checkpoints store its slots
//! as `optim/<ParamId>/<slot>` with no change to their format.

mod adamw;
mod muon;

pub use muon::{muon_scale, newton_schulz};

use std::collections::{HashMap, HashSet};

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::network::kernels::{Kernels, TrainBackend};
use crate::plan::spec::OptimizerSpec;

/// Which parameter group a tensor belongs to; decides weight decay, Muon vs AdamW, and the
/// per-group LR multiplier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParamGroup {
    /// Token and position embeddings (the token embedding is also the tied head).
    Embed,
    /// 2-D weight matrices inside blocks (attention and MLP).
    Hidden,
    /// LayerNorm gains and biases.
    Norm,
    /// Biases of linear layers.
    Bias,
}

impl ParamGroup {
    pub const ALL: [ParamGroup; 4] = [
        ParamGroup::Embed,
        ParamGroup::Hidden,
        ParamGroup::Norm,
        ParamGroup::Bias,
    ];
}

/// Added to the global norm before dividing, as in the clipping rule `c / (norm + 1e-6)`.
const CLIP_EPS: f64 = 1e-6;

/// What one update of one parameter is given besides its tensors.
#[derive(Clone, Copy, Debug)]
pub struct Update<'a> {
    /// The scheduled learning rate of the main group (peak x schedule factor).
    pub lr: f64,
    /// The group's multiplier times the growth's (`lr_mult`) for this parameter.
    pub mult: f64,
    pub group: ParamGroup,
    /// The parameter's shape (the tensors are flattened).
    pub dims: &'a [usize],
    /// This update's number for this parameter, from 1.
    pub step: u64,
}

/// One optimizer: the state it keeps per parameter and how it updates one.
pub trait Method {
    /// Its name in the language (`adamw`), recorded in checkpoints.
    fn name(&self) -> &'static str;
    /// The global gradient-norm bound, if any: every gradient is scaled by it before `update`.
    fn clip(&self) -> Option<f64>;
    /// The LR multiplier of a parameter group.
    fn group_mult(&self, group: ParamGroup) -> f64;
    /// The names of the state slots of a parameter of `group` with `rank` dimensions, each
    /// the parameter's size, zero before its first update.
    fn slots(&self, group: ParamGroup, rank: usize) -> &'static [&'static str];
    /// One update of the flattened parameter `p` with gradient `g`; `slots` in [`Self::slots`]
    /// order, returned updated.
    fn update<B: Kernels>(
        &self,
        u: &Update<'_>,
        p: Tensor<B, 1>,
        g: Tensor<B, 1>,
        slots: Vec<Tensor<B, 1>>,
    ) -> (Tensor<B, 1>, Vec<Tensor<B, 1>>);
}

/// Every optimizer progc has, chosen from the recipe's spec.
#[derive(Clone, Copy, Debug)]
enum Methods {
    Adamw(adamw::AdamW),
    Muon(muon::Muon),
}

impl Methods {
    fn of(spec: &OptimizerSpec) -> Methods {
        match *spec {
            OptimizerSpec::Adamw(a) => Methods::Adamw(adamw::AdamW(a)),
            OptimizerSpec::Muon(m) => Methods::Muon(muon::Muon(m)),
        }
    }
}

/// Forwards each call to the method the spec names.
macro_rules! each_method {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            Methods::Adamw($m) => $e,
            Methods::Muon($m) => $e,
        }
    };
}

impl Method for Methods {
    fn name(&self) -> &'static str {
        each_method!(self, m => m.name())
    }
    fn clip(&self) -> Option<f64> {
        each_method!(self, m => m.clip())
    }
    fn group_mult(&self, group: ParamGroup) -> f64 {
        each_method!(self, m => m.group_mult(group))
    }
    fn slots(&self, group: ParamGroup, rank: usize) -> &'static [&'static str] {
        each_method!(self, m => m.slots(group, rank))
    }
    fn update<B: Kernels>(
        &self,
        u: &Update<'_>,
        p: Tensor<B, 1>,
        g: Tensor<B, 1>,
        slots: Vec<Tensor<B, 1>>,
    ) -> (Tensor<B, 1>, Vec<Tensor<B, 1>>) {
        each_method!(self, m => m.update(u, p, g, slots))
    }
}

/// One parameter's state, for tests and checks.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamStateView {
    /// Updates applied to this parameter so far.
    pub step: u64,
    /// Each slot's values, flattened row-major, in the method's order.
    pub slots: Vec<(String, Vec<f32>)>,
}

impl ParamStateView {
    pub fn slot(&self, name: &str) -> Option<&Vec<f32>> {
        self.slots.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// One slot of a parameter's saved state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedSlot {
    pub name: String,
    pub data: Vec<f32>,
}

/// One parameter's saved state; `id` is `ParamId::val()`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedParamState {
    pub id: u64,
    pub step: u64,
    pub shape: Vec<usize>,
    pub slots: Vec<SavedSlot>,
}

impl SavedParamState {
    pub fn slot_names(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.name.as_str()).collect()
    }
}

/// Exact snapshot of all optimizer state, sorted by id. Checkpoints store the slots as
/// safetensors tensors (exact for every bit pattern) and the rest as JSON (see
/// `exec::checkpoint`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// The method's name ([`Method::name`]).
    pub kind: String,
    pub params: Vec<SavedParamState>,
}

fn corrupt(msg: impl Into<String>) -> ExecError {
    ExecError::new(ErrorKind::Checkpoint, msg).with_help(
        "the checkpoint's optimizer state is damaged or from another run; \
         resume from an earlier checkpoint or start the run afresh",
    )
}

/// Live state of one parameter.
#[derive(Clone, Debug)]
struct ParamState<B: Backend> {
    step: u64,
    shape: Vec<usize>,
    names: &'static [&'static str],
    slots: Vec<Tensor<B, 1>>,
}

/// What a step applies to each parameter besides the optimizer's own settings.
#[derive(Clone, Debug, Default)]
pub struct ParamRules {
    /// Decides weight decay, Muon vs AdamW and the group's LR multiplier. A parameter missing
    /// here is grouped by rank: rank >= 2 is `Hidden`, rank 1 is `Bias` (no decay).
    pub groups: HashMap<ParamId, ParamGroup>,
    /// Multiplies the group's rate (absent: 1): the blocks a growth with `lr_mult` added.
    pub lr_mults: HashMap<ParamId, f64>,
}

impl From<HashMap<ParamId, ParamGroup>> for ParamRules {
    fn from(groups: HashMap<ParamId, ParamGroup>) -> Self {
        ParamRules {
            groups,
            lr_mults: HashMap::new(),
        }
    }
}

/// The optimizer the recipe names, over every parameter's state. See the module doc.
pub struct Optimizer<B: TrainBackend> {
    spec: OptimizerSpec,
    method: Methods,
    states: HashMap<ParamId, ParamState<B::InnerBackend>>,
    report_norm: bool,
}

impl<B: TrainBackend> Optimizer<B> {
    pub fn new(spec: &OptimizerSpec) -> Self {
        Optimizer {
            spec: *spec,
            method: Methods::of(spec),
            states: HashMap::new(),
            report_norm: false,
        }
    }

    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// Also compute the global gradient norm when not clipping (costs one host sync per step).
    pub fn set_report_norm(&mut self, on: bool) {
        self.report_norm = on;
    }

    /// Number of parameters with state.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// One update. `lr` is the scheduled LR of the main group (peak * schedule factor); group
    /// multipliers and `rules`' per-parameter ones are applied inside.
    /// Returns the updated module and the global gradient L2 norm before clipping (`0.0` when
    /// neither clipping nor `set_report_norm` asks for it: that avoids a host sync).
    pub fn step<M: AutodiffModule<B>>(
        &mut self,
        model: M,
        grads: GradientsParams,
        lr: f64,
        rules: &ParamRules,
    ) -> (M, f64) {
        let (model, norm) = self.step_deferred(model, grads, lr, rules);
        (model, norm.map_or(0.0, |n| n.into_scalar().elem::<f64>()))
    }

    /// `step` without reading the norm back: it stays on the device, so a training step does
    /// not wait for the GPU unless the caller reads it.
    pub fn step_deferred<M: AutodiffModule<B>>(
        &mut self,
        model: M,
        mut grads: GradientsParams,
        lr: f64,
        rules: &ParamRules,
    ) -> (M, Option<Tensor<B::InnerBackend, 1>>) {
        let clip = self.method.clip();
        let norm = if clip.is_some() || self.report_norm {
            let mut v = NormVisitor::<B> {
                grads: &grads,
                sum: None,
            };
            model.visit(&mut v);
            v.sum.map(|s| s.sqrt())
        } else {
            None
        };
        // The clip factor stays on the device; only the returned norm is read back.
        let scale = match (clip, &norm) {
            (Some(c), Some(n)) => Some(
                n.clone()
                    .add_scalar(CLIP_EPS)
                    .recip()
                    .mul_scalar(c)
                    .clamp_max(1.0),
            ),
            _ => None,
        };
        let mut mapper = UpdateMapper::<B> {
            method: self.method,
            lr,
            states: &mut self.states,
            grads: &mut grads,
            scale,
            rules,
        };
        let model = model.map(&mut mapper);
        (model, norm)
    }

    /// Forget every parameter's state (policy `reset`).
    pub fn reset(&mut self) {
        self.states.clear();
    }

    /// Drop the state of every parameter not in `ids` (used after growth so stale ids vanish).
    pub fn retain(&mut self, ids: &HashSet<ParamId>) {
        self.states.retain(|id, _| ids.contains(id));
    }

    /// Policy `copy`: each `(new, source)` pair gives `new` a copy of `source`'s state (slots
    /// and step counter); sources without state are skipped. Sources are read before any pair
    /// is written, so the result does not depend on the order of the pairs.
    pub fn copy_state(&mut self, pairs: &[(ParamId, ParamId)]) {
        let copies: Vec<_> = pairs
            .iter()
            .filter_map(|(new, src)| self.states.get(src).map(|s| (*new, s.clone())))
            .collect();
        self.states.extend(copies);
    }

    /// Step counter and flattened slots of one parameter (reads the device).
    pub fn state_of(&self, id: ParamId) -> Option<ParamStateView> {
        self.states.get(&id).map(|s| ParamStateView {
            step: s.step,
            slots: s
                .names
                .iter()
                .zip(&s.slots)
                .map(|(n, t)| (n.to_string(), to_f32s(t)))
                .collect(),
        })
    }

    /// Exact snapshot of all state, sorted by parameter id (reads the device).
    pub fn save(&self) -> OptimizerState {
        let mut params: Vec<SavedParamState> = self
            .states
            .iter()
            .map(|(id, s)| SavedParamState {
                id: id.val(),
                step: s.step,
                shape: s.shape.clone(),
                slots: s
                    .names
                    .iter()
                    .zip(&s.slots)
                    .map(|(n, t)| SavedSlot {
                        name: n.to_string(),
                        data: to_f32s(t),
                    })
                    .collect(),
            })
            .collect();
        params.sort_by_key(|p| p.id);
        OptimizerState {
            kind: self.method.name().to_string(),
            params,
        }
    }

    /// Rebuilds an optimizer from [`Optimizer::save`]'s snapshot, on `device`.
    pub fn load(
        spec: &OptimizerSpec,
        state: OptimizerState,
        device: &B::Device,
    ) -> Result<Self, ExecError> {
        let mut opt = Self::new(spec);
        let want = opt.method.name();
        if state.kind != want {
            return Err(ExecError::new(
                ErrorKind::Checkpoint,
                format!(
                    "the checkpoint's optimizer state is for {} but the recipe uses {want}",
                    state.kind
                ),
            )
            .with_help("resume with the recipe that wrote the checkpoint, or start afresh"));
        }
        // Every slot list this method keeps for some parameter.
        let lists: Vec<&'static [&'static str]> = ParamGroup::ALL
            .iter()
            .flat_map(|g| [1, 2].map(|rank| opt.method.slots(*g, rank)))
            .collect();
        for p in state.params {
            let n: usize = p.shape.iter().product();
            let names = p.slot_names();
            let Some(&known) = lists.iter().find(|l| **l == names.as_slice()) else {
                return Err(corrupt(format!(
                    "{want} state of parameter {} has slots {names:?}, not one of {lists:?}",
                    p.id
                )));
            };
            if let Some(s) = p.slots.iter().find(|s| s.data.len() != n) {
                return Err(corrupt(format!(
                    "optimizer state `{}` of parameter {} has {} values for shape {:?}",
                    s.name,
                    p.id,
                    s.data.len(),
                    p.shape
                )));
            }
            let id = ParamId::from(p.id);
            let st = ParamState {
                step: p.step,
                shape: p.shape,
                names: known,
                slots: p
                    .slots
                    .into_iter()
                    .map(|s| from_f32s::<B::InnerBackend>(s.data, device))
                    .collect(),
            };
            if opt.states.insert(id, st).is_some() {
                return Err(corrupt(format!("parameter {} appears twice", p.id)));
            }
        }
        Ok(opt)
    }
}

fn to_f32s<B: Backend>(t: &Tensor<B, 1>) -> Vec<f32> {
    // State tensors are always float rank 1 and converted to f32, so this cannot fail.
    t.to_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 state tensor")
}

fn from_f32s<B: Backend>(xs: Vec<f32>, device: &B::Device) -> Tensor<B, 1> {
    let n = xs.len();
    Tensor::from_data(TensorData::new(xs, [n]), device)
}

/// Sums squared gradients of the module's parameters (on the device).
struct NormVisitor<'a, B: TrainBackend> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: TrainBackend> ModuleVisitor<B> for NormVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

/// Applies one update to every parameter that has a gradient.
struct UpdateMapper<'a, B: TrainBackend> {
    method: Methods,
    lr: f64,
    states: &'a mut HashMap<ParamId, ParamState<B::InnerBackend>>,
    grads: &'a mut GradientsParams,
    /// Global clip factor `min(1, c / (norm + eps))`, shape `[1]`.
    scale: Option<Tensor<B::InnerBackend, 1>>,
    rules: &'a ParamRules,
}

impl<B: TrainBackend> ModuleMapper<B> for UpdateMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let p = tensor.inner();
        let device = p.device();
        let mut g = grad.to_device(&device).reshape([n]);
        if let Some(s) = &self.scale {
            g = g * s.clone().expand([n]);
        }
        let group = self.rules.groups.get(&id).copied().unwrap_or(if D >= 2 {
            ParamGroup::Hidden
        } else {
            ParamGroup::Bias
        });
        let names = self.method.slots(group, D);
        // A state whose shape or slots no longer fit (e.g. a resized parameter) restarts.
        let (step, slots) = match self
            .states
            .remove(&id)
            .filter(|s| s.shape == dims && s.names == names)
        {
            Some(s) => (s.step + 1, s.slots),
            None => (1, names.iter().map(|_| g.zeros_like()).collect()),
        };
        let mult =
            self.method.group_mult(group) * self.rules.lr_mults.get(&id).copied().unwrap_or(1.0);
        let u = Update {
            lr: self.lr,
            mult,
            group,
            dims: &dims,
            step,
        };
        let (p, slots) = self.method.update(&u, p.reshape([n]), g, slots);
        self.states.insert(
            id,
            ParamState {
                step,
                shape: dims.to_vec(),
                names,
                slots,
            },
        );
        let mut t = Tensor::from_inner(p.reshape(dims));
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};

    use crate::plan::spec::{AdamWSpec, LrMultipliers, MuonSpec};

    type TB = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Toy<B: Backend> {
        w: Param<Tensor<B, 2>>,
        g: Param<Tensor<B, 1>>,
    }

    #[derive(Module, Debug)]
    struct Net<B: Backend> {
        lin: Linear<B>,
        gain: Param<Tensor<B, 1>>,
    }

    fn dev() -> burn::tensor::Device<TB> {
        Default::default()
    }

    fn toy(w: [[f32; 2]; 2], g: [f32; 2]) -> Toy<TB> {
        Toy {
            w: Param::from_tensor(Tensor::from_floats(w, &dev())),
            g: Param::from_tensor(Tensor::from_floats(g, &dev())),
        }
    }

    /// Grads of `sum(w * x) + sum(g * y)` are exactly `x` and `y`; `y = None` leaves `g` out.
    fn toy_grads(model: &Toy<TB>, x: [[f32; 2]; 2], y: Option<[f32; 2]>) -> GradientsParams {
        let mut loss = (model.w.val() * Tensor::from_floats(x, &dev())).sum();
        if let Some(y) = y {
            loss = loss + (model.g.val() * Tensor::from_floats(y, &dev())).sum();
        }
        GradientsParams::from_grads(loss.backward(), model)
    }

    fn vals<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    fn adam(lr: f64, wd: f64, clip: Option<f64>) -> AdamWSpec {
        AdamWSpec {
            lr,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: wd,
            clip,
            lr_mult: LrMultipliers {
                embed: 1.0,
                hidden: 1.0,
                norm: 0.5,
            },
        }
    }

    fn toy_groups(m: &Toy<TB>) -> ParamRules {
        HashMap::from([(m.w.id, ParamGroup::Hidden), (m.g.id, ParamGroup::Norm)]).into()
    }

    /// Reference AdamW step in f64 (PyTorch's formula), on plain slices.
    #[allow(clippy::too_many_arguments)]
    fn adamw_ref(
        a: &AdamWSpec,
        lr: f64,
        decay: bool,
        t: i32,
        p: &mut [f64],
        m: &mut [f64],
        v: &mut [f64],
        g: &[f64],
    ) {
        for i in 0..p.len() {
            m[i] = a.beta1 * m[i] + (1.0 - a.beta1) * g[i];
            v[i] = a.beta2 * v[i] + (1.0 - a.beta2) * g[i] * g[i];
            let mh = m[i] / (1.0 - a.beta1.powi(t));
            let vh = v[i] / (1.0 - a.beta2.powi(t));
            if decay {
                p[i] *= 1.0 - lr * a.weight_decay;
            }
            p[i] -= lr * mh / (vh.sqrt() + a.eps);
        }
    }

    fn close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() <= tol, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn adamw_two_steps_match_hand_computation() {
        let spec = adam(0.1, 0.1, None);
        let mut opt = Optimizer::<TB>::new(&OptimizerSpec::Adamw(spec));
        let model = toy([[1.0, -2.0], [0.5, 3.0]], [1.0, -1.0]);
        let groups = toy_groups(&model);
        let xs = [[[0.1, -0.2], [0.3, 0.4]], [[-0.3, 0.1], [0.2, -0.4]]];
        let ys = [[0.5, -0.5], [0.2, 0.1]];

        let grads = toy_grads(&model, xs[0], Some(ys[0]));
        let (model, norm) = opt.step(model, grads, 0.1, &groups);
        assert_eq!(norm, 0.0, "no clip: norm is not computed");
        // Step 1 by hand: the bias-corrected update is lr * sign(grad); w decays, g does not and
        // gets half the LR (norm multiplier 0.5).
        close(&vals(model.w.val()), &[0.89, -1.88, 0.395, 2.87], 1e-5);
        close(&vals(model.g.val()), &[0.95, -0.95], 1e-5);

        let grads = toy_grads(&model, xs[1], Some(ys[1]));
        let (model, _) = opt.step(model, grads, 0.1, &groups);

        let (mut pw, mut mw, mut vw) = (vec![1.0, -2.0, 0.5, 3.0], vec![0.0; 4], vec![0.0; 4]);
        let (mut pg, mut mg, mut vg) = (vec![1.0, -1.0], vec![0.0; 2], vec![0.0; 2]);
        for t in 0..2 {
            let x: Vec<f64> = xs[t].iter().flatten().map(|&v| v as f64).collect();
            let y: Vec<f64> = ys[t].iter().map(|&v| v as f64).collect();
            adamw_ref(
                &spec,
                0.1,
                true,
                t as i32 + 1,
                &mut pw,
                &mut mw,
                &mut vw,
                &x,
            );
            adamw_ref(
                &spec,
                0.05,
                false,
                t as i32 + 1,
                &mut pg,
                &mut mg,
                &mut vg,
                &y,
            );
        }
        close(&vals(model.w.val()), &pw, 1e-5);
        close(&vals(model.g.val()), &pg, 1e-5);
        let sw = opt.state_of(model.w.id).unwrap();
        assert_eq!(sw.step, 2);
        close(sw.slot("m").unwrap(), &mw, 1e-6);
        close(sw.slot("v").unwrap(), &vw, 1e-7);
        assert!(model.w.val().is_require_grad() && model.g.val().is_require_grad());
    }

    #[test]
    fn missing_grads_leave_params_alone_and_counters_are_per_param() {
        let mut opt = Optimizer::<TB>::new(&OptimizerSpec::Adamw(adam(0.1, 0.1, None)));
        let model = toy([[1.0, -2.0], [0.5, 3.0]], [1.0, -1.0]);
        let groups = toy_groups(&model);
        let grads = toy_grads(&model, [[0.1, 0.2], [0.3, 0.4]], None);
        let (model, _) = opt.step(model, grads, 0.1, &groups);
        assert_eq!(vals(model.g.val()), vec![1.0, -1.0]);
        assert!(opt.state_of(model.g.id).is_none());
        let grads = toy_grads(&model, [[0.1, 0.2], [0.3, 0.4]], Some([1.0, 1.0]));
        let (model, _) = opt.step(model, grads, 0.1, &groups);
        assert_eq!(opt.state_of(model.w.id).unwrap().step, 2);
        // g's first update is bias-corrected as a step 1: exactly lr * 0.5 * sign(grad).
        assert_eq!(opt.state_of(model.g.id).unwrap().step, 1);
        close(&vals(model.g.val()), &[0.95, -1.05], 1e-6);
    }

    #[test]
    fn clipping_scales_grads_and_reports_the_norm() {
        let x = [[3.0, 0.0], [0.0, 4.0]];
        let y = [12.0, 0.0];
        let want_norm = 13.0; // sqrt(9 + 16 + 144)
        let mut opt = Optimizer::<TB>::new(&OptimizerSpec::Adamw(adam(0.1, 0.0, Some(1.3))));
        let model = toy([[0.0; 2]; 2], [0.0; 2]);
        let groups = toy_groups(&model);
        let (model, norm) = opt.step(model.clone(), toy_grads(&model, x, Some(y)), 0.1, &groups);
        assert!((norm - want_norm).abs() < 1e-4, "norm {norm}");
        let s = 1.3 / (13.0 + 1e-6);
        let m = opt.state_of(model.g.id).unwrap().slot("m").unwrap().clone();
        close(&m, &[0.1 * 12.0 * s, 0.0], 1e-6);
        close(
            opt.state_of(model.w.id).unwrap().slot("m").unwrap(),
            &[0.3 * s, 0.0, 0.0, 0.4 * s],
            1e-6,
        );

        // A clip above the norm changes nothing.
        let mut opt = Optimizer::<TB>::new(&OptimizerSpec::Adamw(adam(0.1, 0.0, Some(100.0))));
        let (_, norm) = opt.step(model.clone(), toy_grads(&model, x, Some(y)), 0.1, &groups);
        assert!((norm - want_norm).abs() < 1e-4);
        close(
            opt.state_of(model.g.id).unwrap().slot("m").unwrap(),
            &[1.2, 0.0],
            1e-6,
        );

        // Without a clip the norm is only computed on request.
        let mut opt = Optimizer::<TB>::new(&OptimizerSpec::Adamw(adam(0.1, 0.0, None)));
        opt.set_report_norm(true);
        let (_, norm) = opt.step(model.clone(), toy_grads(&model, x, Some(y)), 0.1, &groups);
        assert!((norm - want_norm).abs() < 1e-4);
        close(
            opt.state_of(model.g.id).unwrap().slot("m").unwrap(),
            &[1.2, 0.0],
            1e-6,
        );
    }

    #[test]
    fn reset_retain_and_copy_state() {
        let mut opt = Optimizer::<TB>::new(&OptimizerSpec::Adamw(adam(0.1, 0.1, None)));
        let model = toy([[1.0, -2.0], [0.5, 3.0]], [1.0, -1.0]);
        let groups = toy_groups(&model);
        let (w, g) = (model.w.id, model.g.id);
        let grads = toy_grads(&model, [[0.1, 0.2], [0.3, 0.4]], Some([1.0, 2.0]));
        let (model, _) = opt.step(model, grads, 0.1, &groups);
        assert_eq!(opt.len(), 2);

        let (fresh, orphan) = (ParamId::new(), ParamId::new());
        opt.copy_state(&[(fresh, w), (ParamId::new(), orphan)]);
        assert_eq!(opt.state_of(fresh), opt.state_of(w));
        assert_eq!(opt.len(), 3, "a source without state is skipped");
        // The copy is independent: stepping w does not move fresh's state.
        let grads = toy_grads(&model, [[1.0, 1.0], [1.0, 1.0]], Some([1.0, 2.0]));
        let before = opt.state_of(fresh);
        let _ = opt.step(model, grads, 0.1, &groups);
        assert_eq!(opt.state_of(fresh), before);
        assert_eq!(opt.state_of(w).unwrap().step, 2);
        assert_eq!(opt.state_of(fresh).unwrap().step, 1);

        opt.retain(&HashSet::from([w, fresh]));
        assert!(opt.state_of(g).is_none());
        assert!(opt.state_of(w).is_some() && opt.state_of(fresh).is_some());
        opt.reset();
        assert!(opt.is_empty() && opt.state_of(w).is_none());
    }

    fn net() -> Net<TB> {
        let n = Net {
            lin: LinearConfig::new(3, 4).init(&dev()),
            gain: Param::from_tensor(Tensor::from_floats([1.0, 0.5, -0.5, 2.0], &dev())),
        };
        // burn initializes `Linear` lazily and a clone of an uninitialized param re-draws it:
        // read every value once so that clones share them.
        let _ = net_bits(&n);
        n
    }

    fn net_groups(n: &Net<TB>) -> ParamRules {
        HashMap::from([
            (n.lin.weight.id, ParamGroup::Hidden),
            (n.lin.bias.as_ref().unwrap().id, ParamGroup::Bias),
            (n.gain.id, ParamGroup::Norm),
        ])
        .into()
    }

    fn net_step(opt: &mut Optimizer<TB>, n: Net<TB>, t: usize) -> Net<TB> {
        let groups = net_groups(&n);
        let x = Tensor::<TB, 2>::from_floats(
            [[1.0, -0.5 * t as f32, 0.3], [0.2, 0.7, -1.0 + t as f32]],
            &dev(),
        );
        let out = n.lin.forward(x) * n.gain.val().reshape([1, 4]);
        let loss = (out - 0.5).square().sum();
        let grads = GradientsParams::from_grads(loss.backward(), &n);
        opt.step(n, grads, 0.01 * (1.0 + t as f64), &groups).0
    }

    fn net_bits(n: &Net<TB>) -> Vec<u32> {
        let mut v = vals(n.lin.weight.val());
        v.extend(vals(n.lin.bias.as_ref().unwrap().val()));
        v.extend(vals(n.gain.val()));
        v.into_iter().map(f32::to_bits).collect()
    }

    fn muon_spec() -> OptimizerSpec {
        OptimizerSpec::Muon(MuonSpec {
            lr: 0.02,
            momentum: 0.95,
            nesterov: true,
            ns_steps: 5,
            weight_decay: 0.01,
            adam: adam(0.001, 0.01, Some(1.0)),
        })
    }

    #[test]
    fn save_load_resume_is_bit_identical() {
        for spec in [
            OptimizerSpec::Adamw(adam(0.01, 0.1, Some(0.5))),
            muon_spec(),
        ] {
            let start = net();
            let mut straight = Optimizer::<TB>::new(&spec);
            let mut a = start.clone();
            for t in 0..3 {
                a = net_step(&mut straight, a, t);
            }

            let mut first = Optimizer::<TB>::new(&spec);
            let b = net_step(&mut first, start, 0);
            let saved = first.save();
            assert_eq!(saved.params.len(), 3);
            // Muon updates the weight matrix (no second moment); AdamW keeps one everywhere.
            let is_muon = matches!(spec, OptimizerSpec::Muon(_));
            assert_eq!(
                saved
                    .params
                    .iter()
                    .filter(|p| p.slot_names() == ["m"])
                    .count(),
                is_muon as usize
            );
            let json = serde_json::to_string(&saved).unwrap();
            let state: OptimizerState = serde_json::from_str(&json).unwrap();
            assert_eq!(state, saved);
            let mut resumed = Optimizer::<TB>::load(&spec, state, &dev()).unwrap();
            let mut b = b;
            for t in 1..3 {
                b = net_step(&mut resumed, b, t);
            }
            assert_eq!(net_bits(&a), net_bits(&b), "{spec:?}");
            assert_eq!(straight.save(), resumed.save());
        }
    }

    #[test]
    fn load_rejects_foreign_or_damaged_state() {
        let spec = OptimizerSpec::Adamw(adam(0.01, 0.1, None));
        let mut opt = Optimizer::<TB>::new(&spec);
        let _ = net_step(&mut opt, net(), 0);
        let saved = opt.save();
        let err = Optimizer::<TB>::load(&muon_spec(), saved.clone(), &dev())
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Checkpoint);
        let mut bad = saved.clone();
        bad.params[0].slots[0].data.pop();
        assert!(Optimizer::<TB>::load(&spec, bad, &dev()).is_err());
        let mut bad = saved.clone();
        bad.params[1].slots.pop();
        assert!(Optimizer::<TB>::load(&spec, bad, &dev()).is_err());
        let mut dup = saved.clone();
        dup.params.push(dup.params[0].clone());
        assert!(Optimizer::<TB>::load(&spec, dup, &dev()).is_err());
    }

    /// Eigenvalues of a small symmetric matrix by cyclic Jacobi rotations.
    #[allow(clippy::needless_range_loop)]
    fn sym_eigs(mut a: Vec<Vec<f64>>) -> Vec<f64> {
        let n = a.len();
        for _ in 0..500 {
            let (mut p, mut q, mut big) = (0, 1, 0.0);
            for i in 0..n {
                for j in i + 1..n {
                    if a[i][j].abs() > big {
                        (p, q, big) = (i, j, a[i][j].abs());
                    }
                }
            }
            if big < 1e-13 {
                break;
            }
            let th = 0.5 * (2.0 * a[p][q]).atan2(a[q][q] - a[p][p]);
            let (c, s) = (th.cos(), th.sin());
            for row in a.iter_mut() {
                let (x, y) = (row[p], row[q]);
                row[p] = c * x - s * y;
                row[q] = s * x + c * y;
            }
            for k in 0..n {
                let (x, y) = (a[p][k], a[q][k]);
                a[p][k] = c * x - s * y;
                a[q][k] = s * x + c * y;
            }
        }
        (0..n).map(|i| a[i][i]).collect()
    }

    #[test]
    fn newton_schulz_singular_values_near_one() {
        let d = Default::default();
        for (r, c) in [(4, 6), (6, 4), (5, 5)] {
            // Deterministic, badly conditioned input (scaled so the norm matters).
            let data: Vec<f32> = (0..r * c)
                .map(|k| ((k * 7 % 11) as f32 - 5.0) * (1.0 + (k % c) as f32) * 3.0)
                .collect();
            let g = Tensor::<Flex, 2>::from_data(TensorData::new(data, [r, c]), &d);
            let x = newton_schulz(g, 5);
            assert_eq!(x.dims(), [r, c]);
            let k = r.min(c);
            let x = vals(x);
            let gram: Vec<Vec<f64>> = (0..k)
                .map(|i| {
                    (0..k)
                        .map(|j| {
                            let l = r.max(c);
                            // Gram matrix on the short side.
                            (0..l)
                                .map(|t| {
                                    let (a, b) = if r <= c {
                                        (x[i * c + t], x[j * c + t])
                                    } else {
                                        (x[t * c + i], x[t * c + j])
                                    };
                                    a as f64 * b as f64
                                })
                                .sum()
                        })
                        .collect()
                })
                .collect();
            for e in sym_eigs(gram) {
                let s = e.max(0.0).sqrt();
                assert!((0.6..=1.25).contains(&s), "{r}x{c}: singular value {s}");
            }
        }
    }

    #[test]
    fn muon_step_decreases_a_quadratic() {
        let spec = muon_spec();
        let mut opt = Optimizer::<TB>::new(&spec);
        let target = Tensor::<TB, 2>::from_floats(
            [
                [1.0, -0.5, 0.2],
                [0.3, 0.8, -1.0],
                [-0.7, 0.1, 0.4],
                [0.5, 0.5, -0.2],
            ],
            &dev(),
        );
        let mut m = Toy {
            w: Param::from_tensor(Tensor::zeros([4, 3], &dev())),
            g: Param::from_tensor(Tensor::from_floats([1.0, 1.0], &dev())),
        };
        let groups = ParamRules::from(HashMap::from([
            (m.w.id, ParamGroup::Hidden),
            (m.g.id, ParamGroup::Norm),
        ]));
        let loss_of = |m: &Toy<TB>| {
            (m.w.val() - target.clone()).square().sum() + (m.g.val() - 2.0).square().sum()
        };
        let first = loss_of(&m).into_scalar();
        let mut prev = first;
        for _ in 0..5 {
            let grads = GradientsParams::from_grads(loss_of(&m).backward(), &m);
            m = opt.step(m, grads, 0.05, &groups).0;
            let now = loss_of(&m).into_scalar();
            assert!(now < prev, "loss went {prev} -> {now}");
            prev = now;
        }
        assert!(prev < 0.85 * first, "{first} -> {prev}");
        let sw = opt.state_of(m.w.id).unwrap();
        assert!(sw.slot("v").is_none() && sw.step == 5);
        assert!(opt.state_of(m.g.id).unwrap().slot("v").is_some());
    }

    #[test]
    fn muon_side_adam_lr_follows_the_schedule() {
        let OptimizerSpec::Muon(spec) = muon_spec() else {
            unreachable!()
        };
        assert!((muon::Muon(spec).adam_rate(0.01) - 0.0005).abs() < 1e-12);
        assert_eq!(muon_scale(3, 12), 2.0);
        assert_eq!(muon_scale(12, 3), 1.0);
    }
}
