//! GPT-2 as a burn `Module`, at any depth (0 included).
//!
//! Invariants:
//! - every parameter is a rank-2 `Param<Tensor<B, 2>>`; vectors (biases, LayerNorm gains) are
//!   stored as `[1, n]` rows so one code path handles naming, copying and checkpointing;
//! - linear weights are `[d_in, d_out]` (`y = x W + b`);
//! - the LM head is tied to the token embedding: `logits = ln_f(x) wte^T`;
//! - each parameter has a stable name (`wte.weight`, `blocks.3.attn.qkv.weight`, ...) listed by
//!   [`Gpt2::named_params`] in a fixed order;
//! - initial values come from a host RNG keyed by `(seed, name)`, never from the backend's
//!   global RNG, so the same seed gives the same model on every backend and thread (tests run
//!   in parallel; burn's seeded RNG is one global).

use std::collections::HashMap;

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::exec::network::kernels::head_ce::{HeadLoss, chunk_rows, head_ce_loss, head_ce_train};
use crate::exec::network::kernels::{self, AttnShape, Kernels, TrainBackend};
use crate::exec::network::optim::ParamGroup;
use crate::exec::network::precision::Precision;
use crate::plan::spec::{ModelSpec, ResidualScaling};

/// How a parameter is initialized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitKind {
    /// Normal with this std.
    Normal(f64),
    /// All zeros (biases, LayerNorm biases, zeroed projections).
    Zeros,
    /// All ones (LayerNorm gains).
    Ones,
}

/// Role of a block parameter, for init and grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Input weights (`qkv`, `fc`).
    Weight,
    /// Output projections (`attn.out`, `mlp.proj`): scaled-down init.
    OutWeight,
    /// Bias of an input linear.
    Bias,
    /// Bias of an output projection.
    OutBias,
    LnGain,
    LnBias,
}

/// Standard init of a block parameter: weights `std`, output projections `out_std`.
pub fn standard_init(role: Role, std: f64, out_std: f64) -> InitKind {
    match role {
        Role::Weight => InitKind::Normal(std),
        Role::OutWeight => InitKind::Normal(out_std),
        Role::Bias | Role::OutBias | Role::LnBias => InitKind::Zeros,
        Role::LnGain => InitKind::Ones,
    }
}

/// Std of output projections in a model of `depth` blocks (nanoGPT: `std / sqrt(2 L)`).
/// `depth` is the depth of the model the block is created in (the target of a growth).
pub fn out_std(std: f64, depth: usize) -> f64 {
    std / (2.0 * depth.max(1) as f64).sqrt()
}

/// A block's parameters, declared once, in their fixed order: field, stable name, shape (in
/// terms of the width `d` and the MLP width `hidden`) and role. The struct, [`block_layout`],
/// [`Block::from_params`] and [`Block::params`] are generated from this one list, so they
/// cannot disagree on the order that names, checkpoints and copies rely on.
macro_rules! block_params {
    ($d:ident, $hidden:ident; $($field:ident: $name:literal => $hf:literal [$rows:expr, $cols:expr] $role:ident,)*) => {
        /// One pre-LN transformer block.
        #[derive(Module, Debug)]
        pub struct Block<B: Backend> {
            $(pub $field: Param<Tensor<B, 2>>,)*
        }

        /// The number of parameters of a block.
        pub const BLOCK_PARAMS: usize = [$($name),*].len();

        /// The parameters of a block in their fixed order: name, shape, role.
        pub fn block_layout($d: usize, $hidden: usize) -> [(&'static str, [usize; 2], Role); BLOCK_PARAMS] {
            [$(($name, [$rows, $cols], Role::$role)),*]
        }

        /// Each block parameter's name and its name in transformers' GPT-2 (`transformer.h.N.`
        /// + it), in [`block_layout`] order.
        pub const BLOCK_HF_NAMES: [(&str, &str); BLOCK_PARAMS] = [$(($name, $hf)),*];

        impl<B: Backend> Block<B> {
            /// Builds a block from its parameters in [`block_layout`] order.
            pub fn from_params(p: [Param<Tensor<B, 2>>; BLOCK_PARAMS]) -> Self {
                let [$($field),*] = p;
                Block { $($field),* }
            }

            /// The parameters in [`block_layout`] order.
            pub fn params(&self) -> [&Param<Tensor<B, 2>>; BLOCK_PARAMS] {
                [$(&self.$field),*]
            }
        }
    };
}

block_params! { d, hidden;
    ln1_g:  "ln1.weight"      => "ln_1.weight"        [1, d]          LnGain,
    ln1_b:  "ln1.bias"        => "ln_1.bias"          [1, d]          LnBias,
    qkv_w:  "attn.qkv.weight" => "attn.c_attn.weight" [d, 3 * d]      Weight,
    qkv_b:  "attn.qkv.bias"   => "attn.c_attn.bias"   [1, 3 * d]      Bias,
    out_w:  "attn.out.weight" => "attn.c_proj.weight" [d, d]          OutWeight,
    out_b:  "attn.out.bias"   => "attn.c_proj.bias"   [1, d]          OutBias,
    ln2_g:  "ln2.weight"      => "ln_2.weight"        [1, d]          LnGain,
    ln2_b:  "ln2.bias"        => "ln_2.bias"          [1, d]          LnBias,
    fc_w:   "mlp.fc.weight"   => "mlp.c_fc.weight"    [d, hidden]     Weight,
    fc_b:   "mlp.fc.bias"     => "mlp.c_fc.bias"      [1, hidden]     Bias,
    proj_w: "mlp.proj.weight" => "mlp.c_proj.weight"  [hidden, d]     OutWeight,
    proj_b: "mlp.proj.bias"   => "mlp.c_proj.bias"    [1, d]          OutBias,
}

impl<B: Backend> Block<B> {
    pub fn param_ids(&self) -> Vec<ParamId> {
        self.params().iter().map(|p| p.id).collect()
    }

    /// A fresh block: each parameter from `init(role)`, values keyed by `(seed, key.name)`.
    pub fn init(
        spec: &ModelSpec,
        seed: u64,
        key: &str,
        device: &B::Device,
        mut init: impl FnMut(Role) -> InitKind,
    ) -> Self {
        let layout = block_layout(spec.width, spec.mlp_ratio * spec.width);
        let params = layout.map(|(name, shape, role)| {
            let key = format!("{key}.{name}");
            let data = host_init(init(role), shape, seed, &key);
            new_param(param_id(seed, &key), data, shape, device)
        });
        Block::from_params(params)
    }

    /// A copy with its own fresh ParamIds (keyed by `(seed, key)`), detached from the
    /// source's graph.
    pub fn duplicate(&self, seed: u64, key: &str) -> Self {
        let names = block_layout(1, 1).map(|(name, _, _)| name);
        let mut i = 0;
        Block::from_params(self.params().map(|p| {
            let id = param_id(seed, &format!("{key}.{}", names[i]));
            i += 1;
            Param::initialized(id, p.val().detach().require_grad())
        }))
    }
}

impl<B: Kernels> Block<B> {
    /// `x [n, d]` -> `x + s * attn(ln1 x)` -> `+ s * mlp(ln2 x)`, through the fused kernels.
    /// With bf16 matmuls the linear layers go through [`Precision::matmul`] instead.
    fn forward(&self, x: Tensor<B, 2>, shape: AttnShape, s: f64, p: Precision) -> Tensor<B, 2> {
        let h = layer_norm(x.clone(), &self.ln1_g, &self.ln1_b);
        let qkv = linear(p, h, &self.qkv_w, &self.qkv_b);
        let y = kernels::attention(qkv, shape);
        let x = residual(p, x, y, &self.out_w, &self.out_b, s);
        let h = layer_norm(x.clone(), &self.ln2_g, &self.ln2_b);
        let h = kernels::gelu(linear(p, h, &self.fc_w, &self.fc_b));
        residual(p, x, h, &self.proj_w, &self.proj_b, s)
    }
}

/// `x W + b`.
fn linear<B: Kernels>(
    p: Precision,
    x: Tensor<B, 2>,
    w: &Param<Tensor<B, 2>>,
    b: &Param<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    match p {
        Precision::F32 => kernels::linear(x, w.val(), b.val()),
        Precision::Bf16 => p.matmul(x, w.val()) + b.val(),
    }
}

/// `r + s (x W + b)`: an output projection and the residual add around it.
fn residual<B: Kernels>(
    p: Precision,
    r: Tensor<B, 2>,
    x: Tensor<B, 2>,
    w: &Param<Tensor<B, 2>>,
    b: &Param<Tensor<B, 2>>,
    s: f64,
) -> Tensor<B, 2> {
    match p {
        Precision::F32 => kernels::linear_residual(r, x, w.val(), b.val(), s),
        Precision::Bf16 => r + scale(p.matmul(x, w.val()) + b.val(), s),
    }
}

fn scale<B: Backend>(t: Tensor<B, 2>, s: f64) -> Tensor<B, 2> {
    if s == 1.0 { t } else { t.mul_scalar(s) }
}

fn layer_norm<B: Kernels>(
    x: Tensor<B, 2>,
    g: &Param<Tensor<B, 2>>,
    b: &Param<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    kernels::layer_norm(x, g.val(), b.val())
}

/// GPT-2 with a tied head.
#[derive(Module, Debug)]
pub struct Gpt2<B: Backend> {
    pub wte: Param<Tensor<B, 2>>,
    pub wpe: Param<Tensor<B, 2>>,
    pub blocks: Vec<Block<B>>,
    pub lnf_g: Param<Tensor<B, 2>>,
    pub lnf_b: Param<Tensor<B, 2>>,
    pub heads: usize,
    #[module(skip)]
    pub residual: ResidualScaling,
}

impl<B: Backend> Gpt2<B> {
    /// A freshly initialized model with `depth` blocks; values depend only on
    /// `(seed, parameter name)`. Output projections use `init_std / sqrt(2 depth)`.
    pub fn new(spec: &ModelSpec, depth: usize, seed: u64, device: &B::Device) -> Self {
        let (v, c, d) = (spec.vocab, spec.context, spec.width);
        let std = spec.init_std;
        let emb = |name: &str, rows: usize| {
            new_param(
                param_id(seed, name),
                host_init(InitKind::Normal(std), [rows, d], seed, name),
                [rows, d],
                device,
            )
        };
        let (wte, wpe) = (emb("wte.weight", v), emb("wpe.weight", c));
        let ostd = out_std(std, depth);
        let blocks = (0..depth)
            .map(|i| {
                Block::init(spec, seed, &format!("blocks.{i}"), device, |r| {
                    standard_init(r, std, ostd)
                })
            })
            .collect();
        // Keyed by the names `named_params` gives them. Checkpoints written before this keyed
        // `ln_f.g` / `ln_f.b`: they still load, since a checkpoint's ids are restored as stored.
        let lnf_g = new_param(param_id(seed, "ln_f.weight"), vec![1.0; d], [1, d], device);
        let lnf_b = new_param(param_id(seed, "ln_f.bias"), vec![0.0; d], [1, d], device);
        Gpt2 {
            wte,
            wpe,
            blocks,
            lnf_g,
            lnf_b,
            heads: spec.heads,
            residual: spec.residual,
        }
    }

    /// Builds a model from named parameters (checkpoint loading): `get(name, shape)` returns
    /// the id and data of each parameter, in [`Gpt2::named_params`] order.
    pub fn from_named<E>(
        spec: &ModelSpec,
        depth: usize,
        device: &B::Device,
        mut get: impl FnMut(&str, [usize; 2]) -> Result<(ParamId, Vec<f32>), E>,
    ) -> Result<Self, E> {
        let (v, c, d) = (spec.vocab, spec.context, spec.width);
        let mut take = |name: &str, shape: [usize; 2]| -> Result<Param<Tensor<B, 2>>, E> {
            let (id, data) = get(name, shape)?;
            Ok(new_param(id, data, shape, device))
        };
        let wte = take("wte.weight", [v, d])?;
        let wpe = take("wpe.weight", [c, d])?;
        let layout = block_layout(d, spec.mlp_ratio * d);
        let mut blocks = Vec::with_capacity(depth);
        for i in 0..depth {
            let mut ps = Vec::with_capacity(BLOCK_PARAMS);
            for (name, shape, _) in layout {
                ps.push(take(&format!("blocks.{i}.{name}"), shape)?);
            }
            let arr: [Param<Tensor<B, 2>>; BLOCK_PARAMS] =
                ps.try_into().unwrap_or_else(|_| unreachable!());
            blocks.push(Block::from_params(arr));
        }
        let lnf_g = take("ln_f.weight", [1, d])?;
        let lnf_b = take("ln_f.bias", [1, d])?;
        Ok(Gpt2 {
            wte,
            wpe,
            blocks,
            lnf_g,
            lnf_b,
            heads: spec.heads,
            residual: spec.residual,
        })
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Every parameter with its stable name, in a fixed order (embeddings, blocks, ln_f).
    pub fn named_params(&self) -> Vec<(String, &Param<Tensor<B, 2>>)> {
        let mut out = vec![
            ("wte.weight".to_string(), &self.wte),
            ("wpe.weight".to_string(), &self.wpe),
        ];
        if let Some(first) = self.blocks.first() {
            let d = first.qkv_w.val().dims()[0];
            let h = first.fc_w.val().dims()[1];
            let layout = block_layout(d, h);
            for (i, b) in self.blocks.iter().enumerate() {
                for ((name, _, _), p) in layout.iter().zip(b.params()) {
                    out.push((format!("blocks.{i}.{name}"), p));
                }
            }
        }
        out.push(("ln_f.weight".to_string(), &self.lnf_g));
        out.push(("ln_f.bias".to_string(), &self.lnf_b));
        out
    }

    /// ParamIds of each block, block by block (for growth bookkeeping).
    pub fn block_param_ids(&self) -> Vec<Vec<ParamId>> {
        self.blocks.iter().map(Block::param_ids).collect()
    }

    /// Every ParamId of the model.
    pub fn param_ids(&self) -> Vec<ParamId> {
        self.named_params().iter().map(|(_, p)| p.id).collect()
    }

    /// The optimizer group of every parameter.
    pub fn param_groups(&self) -> HashMap<ParamId, ParamGroup> {
        let mut g = HashMap::new();
        g.insert(self.wte.id, ParamGroup::Embed);
        g.insert(self.wpe.id, ParamGroup::Embed);
        g.insert(self.lnf_g.id, ParamGroup::Norm);
        g.insert(self.lnf_b.id, ParamGroup::Norm);
        for b in &self.blocks {
            for (p, (_, _, role)) in b.params().iter().zip(block_layout(1, 1)) {
                let group = match role {
                    Role::Weight | Role::OutWeight => ParamGroup::Hidden,
                    Role::Bias | Role::OutBias => ParamGroup::Bias,
                    Role::LnGain | Role::LnBias => ParamGroup::Norm,
                };
                g.insert(p.id, group);
            }
        }
        g
    }

    /// Residual-branch scale at the current depth.
    pub fn residual_scale(&self) -> f64 {
        let l = self.depth().max(1) as f64;
        match self.residual {
            ResidualScaling::None => 1.0,
            ResidualScaling::InvSqrtDepth => 1.0 / l.sqrt(),
            ResidualScaling::InvDepth => 1.0 / l,
        }
    }
}

impl<B: Kernels> Gpt2<B> {
    /// Final hidden states `[b * t, d]` after `ln_f`.
    fn hidden(&self, tokens: Tensor<B, 2, Int>, p: Precision) -> (Tensor<B, 2>, usize, usize) {
        let [b, t] = tokens.dims();
        let d = self.wte.val().dims()[1];
        let mut x = kernels::embed(self.wte.val(), self.wpe.val(), tokens);
        let s = self.residual_scale();
        let shape = AttnShape {
            batch: b,
            seq: t,
            heads: self.heads,
            width: d,
        };
        for block in &self.blocks {
            x = block.forward(x, shape, s, p);
        }
        (layer_norm(x, &self.lnf_g, &self.lnf_b), b, t)
    }

    fn logits_2d(&self, tokens: Tensor<B, 2, Int>) -> (Tensor<B, 2>, usize, usize) {
        let (h, b, t) = self.hidden(tokens, Precision::F32);
        (h.matmul(self.wte.val().transpose()), b, t)
    }

    /// Logits `[b, t, vocab]` for tokens `[b, t]` (`t <= context`).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let (logits, b, t) = self.logits_2d(tokens);
        let v = logits.dims()[1];
        logits.reshape([b, t, v])
    }

    /// Mean next-token cross-entropy (nats) of `targets [b, t]` given `inputs [b, t]`, through
    /// the full logits and autodiff: the plain reference the fused head is tested against.
    pub fn loss(&self, inputs: Tensor<B, 2, Int>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let (logits, b, t) = self.logits_2d(inputs);
        let logp = log_softmax(logits, 1);
        let picked = logp.gather(1, targets.reshape([b * t, 1]));
        picked.mean().neg()
    }

    /// The same loss through the fused, chunked head (evaluation: no gradients).
    pub fn eval_loss(
        &self,
        inputs: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        p: Precision,
    ) -> Tensor<B, 1> {
        let (h, w, targets, rows) = self.head_inputs(inputs, targets, p);
        head_ce_loss(h, w, targets, rows, p)
    }

    /// What the fused head reads: hidden states `[b t, d]`, the tied embedding, the flattened
    /// targets, and the rows per chunk.
    fn head_inputs(
        &self,
        inputs: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        p: Precision,
    ) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 1, Int>, usize) {
        let (h, b, t) = self.hidden(inputs, p);
        let w = self.wte.val();
        let rows = chunk_rows(b * t, w.dims()[0]);
        (h, w, targets.reshape([b * t]), rows)
    }
}

impl<B: TrainBackend> Gpt2<B> {
    /// Training loss through the fused head: the loss value, and the surrogate to call
    /// `backward` on (see `kernels::head_ce`).
    pub fn train_loss(
        &self,
        inputs: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        p: Precision,
    ) -> HeadLoss<B> {
        let (h, w, targets, rows) = self.head_inputs(inputs, targets, p);
        head_ce_train(h, w, targets, rows, p)
    }
}

/// A parameter tensor from host data, tracked by autodiff when `B` is an autodiff backend.
pub fn new_param<B: Backend>(
    id: ParamId,
    data: Vec<f32>,
    shape: [usize; 2],
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    let t = Tensor::<B, 2>::from_data(TensorData::new(data, shape), device).require_grad();
    Param::initialized(id, t)
}

/// Host values of an init: a normal stream keyed by `(seed, key)`.
pub fn host_init(kind: InitKind, shape: [usize; 2], seed: u64, key: &str) -> Vec<f32> {
    let n = shape[0] * shape[1];
    match kind {
        InitKind::Zeros => vec![0.0; n],
        InitKind::Ones => vec![1.0; n],
        InitKind::Normal(std) => {
            let mut rng = SplitMix(fnv1a(seed, key.as_bytes()));
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                // Box-Muller: two normals per pair of uniforms in (0, 1].
                let u1 = rng.unit();
                let u2 = rng.unit();
                let r = (-2.0 * u1.ln()).sqrt();
                let a = std::f64::consts::TAU * u2;
                out.push((r * a.cos() * std) as f32);
                if out.len() < n {
                    out.push((r * a.sin() * std) as f32);
                }
            }
            out
        }
    }
}

/// Host copy of a parameter's values.
pub fn param_to_vec<B: Backend>(p: &Param<Tensor<B, 2>>) -> Vec<f32> {
    p.val()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_else(|e| unreachable!("f32 data after convert: {e:?}"))
}

/// The ParamId of a new parameter: a hash of `(seed, key)`, like its values, so that every
/// replica of a data-parallel run (in any process) names its parameters alike.
pub fn param_id(seed: u64, key: &str) -> ParamId {
    const SALT: u64 = 0x5041_5241_4d49_4400; // "PARAMID"
    let mut x = fnv1a(seed ^ SALT, key.as_bytes());
    ParamId::from(crate::exec::network::rng::splitmix64(&mut x))
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::exec::network::optim::ParamGroup;
    use burn::backend::{Autodiff, Flex};

    pub type TB = Autodiff<Flex>;

    pub fn tiny_spec(depth: usize) -> ModelSpec {
        ModelSpec {
            name: "tiny".into(),
            width: 32,
            heads: 2,
            depth,
            context: 16,
            vocab: 64,
            mlp_ratio: 4,
            init_std: 0.02,
            residual: ResidualScaling::None,
        }
    }

    pub fn toks(rows: &[Vec<i64>]) -> Tensor<TB, 2, Int> {
        let (b, t) = (rows.len(), rows[0].len());
        let flat: Vec<i64> = rows.concat();
        Tensor::from_data(TensorData::new(flat, [b, t]), &Default::default())
    }

    pub fn logits_vec(m: &Gpt2<TB>, rows: &[Vec<i64>]) -> (Vec<f32>, usize) {
        let l = m.forward(toks(rows));
        let v = l.dims()[2];
        (l.into_data().into_vec::<f32>().unwrap(), v)
    }

    #[test]
    fn zero_layer_logits_depend_only_on_the_current_token_and_position() {
        let spec = tiny_spec(0);
        let m = Gpt2::<TB>::new(&spec, 0, 7, &Default::default());
        assert_eq!(m.depth(), 0);
        let a: Vec<i64> = (0..16).map(|i| (i * 5 % 64) as i64).collect();
        let mut b = a.iter().map(|x| (x + 11) % 64).collect::<Vec<_>>();
        b[6] = a[6]; // same token at position 6 only
        let (la, v) = logits_vec(&m, &[a.clone()]);
        let (lb, _) = logits_vec(&m, &[b]);
        assert_eq!(la[6 * v..7 * v], lb[6 * v..7 * v]);
        assert_ne!(la[5 * v..6 * v], lb[5 * v..6 * v]);
        // The same token at another position gives different logits (position embedding).
        let mut c = a.clone();
        c[7] = a[6];
        let (lc, _) = logits_vec(&m, &[c]);
        assert_ne!(la[6 * v..7 * v], lc[7 * v..8 * v]);
    }

    #[test]
    fn attention_is_causal() {
        let spec = tiny_spec(2);
        let m = Gpt2::<TB>::new(&spec, 2, 3, &Default::default());
        let a: Vec<i64> = (0..16).map(|i| (i * 7 % 64) as i64).collect();
        let mut b = a.clone();
        b[10] = (a[10] + 1) % 64;
        let (la, v) = logits_vec(&m, &[a]);
        let (lb, _) = logits_vec(&m, &[b]);
        assert_eq!(
            la[..10 * v],
            lb[..10 * v],
            "positions before 10 must not see token 10"
        );
        assert_ne!(la[10 * v..11 * v], lb[10 * v..11 * v]);
        assert_ne!(la[15 * v..], lb[15 * v..], "later positions do see it");
    }

    /// Every parameter's gradient, by name, as f64.
    fn grads_by_name(
        m: &Gpt2<TB>,
        grads: &<TB as burn::tensor::backend::AutodiffBackend>::Gradients,
    ) -> Vec<(String, Vec<f64>)> {
        m.named_params()
            .into_iter()
            .map(|(name, p)| {
                let g = p
                    .val()
                    .grad(grads)
                    .expect("every parameter gets a gradient");
                let v = g.into_data().to_vec::<f32>().unwrap();
                (name, v.into_iter().map(f64::from).collect())
            })
            .collect()
    }

    /// The block stack as plain burn tensor ops (burn's own attention, LayerNorm and GELU as
    /// formulas), with the plain head: what the fused path must reproduce.
    fn plain_loss(
        m: &Gpt2<TB>,
        inputs: Tensor<TB, 2, Int>,
        targets: Tensor<TB, 2, Int>,
    ) -> Tensor<TB, 1> {
        use burn::tensor::activation::gelu;
        use burn::tensor::module::{attention, embedding};
        use burn::tensor::ops::AttentionModuleOptions;
        let ln = |x: Tensor<TB, 2>, g: &Param<Tensor<TB, 2>>, b: &Param<Tensor<TB, 2>>| {
            let xc = x.clone() - x.mean_dim(1);
            let var = xc.clone().powi_scalar(2).mean_dim(1);
            xc.div(var.add_scalar(1e-5).sqrt()) * g.val() + b.val()
        };
        let [b, t] = inputs.dims();
        let d = m.wte.val().dims()[1];
        let (heads, hd) = (m.heads, d / m.heads);
        let pos = m.wpe.val().narrow(0, 0, t).unsqueeze::<3>();
        let mut x = (embedding(m.wte.val(), inputs) + pos).reshape([b * t, d]);
        for blk in &m.blocks {
            let qkv =
                ln(x.clone(), &blk.ln1_g, &blk.ln1_b).matmul(blk.qkv_w.val()) + blk.qkv_b.val();
            let split = |i: usize| {
                qkv.clone()
                    .narrow(1, i * d, d)
                    .reshape([b, t, heads, hd])
                    .swap_dims(1, 2)
            };
            let opts = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: true,
            };
            let y = attention(split(0), split(1), split(2), None, None, opts);
            let y = y.swap_dims(1, 2).reshape([b * t, d]);
            x = x + y.matmul(blk.out_w.val()) + blk.out_b.val();
            let h =
                gelu(ln(x.clone(), &blk.ln2_g, &blk.ln2_b).matmul(blk.fc_w.val()) + blk.fc_b.val());
            x = x + h.matmul(blk.proj_w.val()) + blk.proj_b.val();
        }
        let h = ln(x, &m.lnf_g, &m.lnf_b);
        let logp = log_softmax(h.matmul(m.wte.val().transpose()), 1);
        logp.gather(1, targets.reshape([b * t, 1])).mean().neg()
    }

    #[test]
    fn one_training_step_through_the_kernels_matches_plain_tensor_ops() {
        use crate::exec::network::kernels::head_ce::reference::rel_err;
        use crate::exec::network::optim::{Optimizer, ParamRules};
        use crate::plan::spec::{AdamWSpec, OptimizerSpec};
        let spec = ModelSpec {
            context: 24,
            ..tiny_spec(2)
        };
        let m = Gpt2::<TB>::new(&spec, 2, 5, &Default::default());
        let rows: Vec<Vec<i64>> = (0..3)
            .map(|r| (0..24).map(|i| ((i * 11 + r * 7) % 64) as i64).collect())
            .collect();
        let next: Vec<Vec<i64>> = rows
            .iter()
            .map(|r| r.iter().map(|t| (t * 3 + 1) % 64).collect())
            .collect();
        let plain = plain_loss(&m, toks(&rows), toks(&next));
        let plain_value = plain.clone().into_scalar() as f64;
        let plain_grads = grads_by_name(&m, &plain.backward());
        let fused = m.train_loss(toks(&rows), toks(&next), Precision::F32);
        let value = fused.loss.into_scalar() as f64;
        let raw = fused.surrogate.backward();
        let grads = grads_by_name(&m, &raw);
        assert!(
            (value - plain_value).abs() < 1e-5 * plain_value,
            "{value} vs {plain_value}"
        );
        for ((name, g), (_, r)) in grads.iter().zip(&plain_grads) {
            let e = rel_err(g, r);
            assert!(e < 1e-4, "{name}: relative gradient error {e}");
        }
        // The fused AdamW step against the first AdamW step in float64 from the plain
        // gradients: p (1 - lr wd) - lr g / (|g| + eps). A large eps keeps the update a smooth
        // function of g, so gradients that agree to 1e-4 give updates that agree as well.
        let (lr, wd, eps) = (1e-2, 0.1, 1e-3);
        let adam = AdamWSpec {
            weight_decay: wd,
            eps,
            ..AdamWSpec::with_lr(lr)
        };
        let mut opt = Optimizer::<TB>::new(&OptimizerSpec::Adamw(adam));
        let groups = m.param_groups();
        let before: Vec<(Vec<f32>, bool)> = m
            .named_params()
            .iter()
            .map(|(_, p)| {
                let decays = matches!(groups[&p.id], ParamGroup::Embed | ParamGroup::Hidden);
                (param_to_vec(p), decays)
            })
            .collect();
        let gp = burn::optim::GradientsParams::from_grads(raw, &m);
        let (stepped, _) = opt.step(m, gp, lr, &ParamRules::from(groups.clone()));
        for (((name, p), (p0, decays)), (_, g)) in
            stepped.named_params().iter().zip(&before).zip(&plain_grads)
        {
            let keep = if *decays { 1.0 - lr * wd } else { 1.0 };
            let want: Vec<f64> = p0
                .iter()
                .zip(g)
                .map(|(&p, &g)| p as f64 * keep - lr * g / (g.abs() + eps))
                .collect();
            let e = rel_err(
                &param_to_vec(p)
                    .iter()
                    .map(|&x| x as f64)
                    .collect::<Vec<_>>(),
                &want,
            );
            assert!(e < 1e-5, "{name}: relative error after the step {e}");
        }
    }

    #[test]
    fn the_fused_head_gives_the_reference_loss_and_gradients() {
        use crate::exec::network::kernels::head_ce::reference::rel_err;
        let spec = tiny_spec(2);
        let m = Gpt2::<TB>::new(&spec, 2, 11, &Default::default());
        let rows: Vec<Vec<i64>> = (0..3)
            .map(|r| (0..16).map(|i| ((i * 13 + r * 5) % 64) as i64).collect())
            .collect();
        let x = || toks(&rows);
        let y = || {
            toks(
                &rows
                    .iter()
                    .map(|r| r.iter().map(|t| (t + 1) % 64).collect())
                    .collect::<Vec<_>>(),
            )
        };
        let reference = m.loss(x(), y());
        let ref_loss = reference.clone().into_scalar() as f64;
        let ref_grads = grads_by_name(&m, &reference.backward());
        let fused = m.train_loss(x(), y(), Precision::F32);
        let loss = fused.loss.into_scalar() as f64;
        let grads = grads_by_name(&m, &fused.surrogate.backward());
        assert!(
            (loss - ref_loss).abs() < 1e-5 * ref_loss,
            "{loss} vs {ref_loss}"
        );
        for ((name, g), (_, r)) in grads.iter().zip(&ref_grads) {
            let e = rel_err(g, r);
            assert!(e < 1e-4, "{name}: relative gradient error {e}");
        }
        let eval = burn::module::AutodiffModule::valid(&m)
            .eval_loss(x().inner(), y().inner(), Precision::F32)
            .into_scalar() as f64;
        assert!(
            (eval - ref_loss).abs() < 1e-5 * ref_loss,
            "{eval} vs {ref_loss}"
        );
        // bf16 matmuls: the same loss to bf16 accuracy.
        let bf = m.train_loss(x(), y(), Precision::Bf16).loss.into_scalar() as f64;
        assert!(
            (bf - ref_loss).abs() < 1e-2 * ref_loss,
            "bf16 {bf} vs {ref_loss}"
        );
    }

    #[test]
    fn init_is_deterministic_and_loss_is_near_uniform() {
        let spec = tiny_spec(2);
        let dev = Default::default();
        let m1 = Gpt2::<TB>::new(&spec, 2, 9, &dev);
        let m2 = Gpt2::<TB>::new(&spec, 2, 9, &dev);
        for ((n1, p1), (n2, p2)) in m1.named_params().iter().zip(m2.named_params()) {
            assert_eq!(n1, &n2);
            assert_eq!(param_to_vec(p1), param_to_vec(p2), "{n1}");
            // ParamIds are keyed by (seed, name) like the values: replicas name them alike.
            assert_eq!(p1.id, p2.id, "{n1}");
        }
        let ids: std::collections::HashSet<_> = m1.param_ids().into_iter().collect();
        assert_eq!(ids.len(), m1.named_params().len(), "ids are distinct");
        let other = Gpt2::<TB>::new(&spec, 2, 10, &dev);
        assert!(other.param_ids().iter().all(|id| !ids.contains(id)));
        assert_eq!(m1.named_params().len(), 2 + 2 * 12 + 2);
        assert_eq!(m1.param_groups().len(), m1.named_params().len());
        let out = param_to_vec(&m1.blocks[0].out_w);
        let sd = (out.iter().map(|x| x * x).sum::<f32>() / out.len() as f32).sqrt();
        assert!((sd - 0.01).abs() < 0.002, "out-proj std {sd}");
        let x = toks(&[(0..16).collect()]);
        let y = toks(&[(1..17).collect()]);
        let loss = m1.loss(x, y).into_scalar();
        assert!((loss - (64f32).ln()).abs() < 0.1, "loss {loss}");
    }
}
