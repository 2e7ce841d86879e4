//! progc's GPT-2 as a transformers `GPT2LMHeadModel` (`model.safetensors` + `config.json`), and
//! back ([`from_hf`]).
//!
//! What was compared (src/exec/network/model.rs and the kernels against transformers' `modeling_gpt2`):
//! - the same pre-LN block: `x + attn(ln_1 x)`, then `x + mlp(ln_2 x)`, and `ln_f` before the
//!   head; LayerNorm with the biased variance and eps 1e-5 (`kernels::compose::LN_EPS`);
//! - input = token embedding + learned position embedding; no dropout anywhere in progc, so
//!   every `*_pdrop` is 0;
//! - `c_attn` is one `[d, 3d]` Conv1D whose output is `[q | k | v]`, each split into heads as
//!   `[heads, d / heads]` — progc's `qkv` layout; causal softmax attention scaled by
//!   `1 / sqrt(head_dim)` (transformers' `scale_attn_weights`, no per-layer scaling);
//! - GELU is the exact erf form (transformers' `gelu`; `gelu_new` is the tanh approximation);
//! - the head is tied to `wte` and has no bias, as `lm_head`; `lm_head.weight` is not written
//!   (transformers ties it on load and does not save it either);
//! - Conv1D stores weights `[in, out]`, progc's layout, so matrices are copied as they are;
//!   progc's `[1, n]` rows (biases, LayerNorm parameters) become 1-D `[n]`;
//! - the one difference: progc's residual scaling `r + s (x W + b)` (`Gpt2::residual_scale`,
//!   `s` fixed by the exported depth). transformers adds `x W + b`, so `s` is folded into the
//!   output projections (`attn.c_proj`, `mlp.c_proj`): `W' = s W`, `b' = s b`. That is the same
//!   function; in f32 it differs from progc's forward by rounding only. An import
//!   ([`from_hf`]) therefore has `residual: none`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::network::model::{BLOCK_HF_NAMES, Gpt2, Role, block_layout, param_to_vec};
use crate::plan::spec::{ModelSpec, ResidualScaling, Tokenizer};

/// progc's LayerNorm eps (the kernels' `LN_EPS`), written as `layer_norm_epsilon`.
const LN_EPS: f64 = 1e-5;

/// The transformers name of a progc parameter, and whether the residual scale is folded into
/// it. `None` for a name progc does not have.
pub fn hf_name(name: &str) -> Option<(String, bool)> {
    match name {
        "wte.weight" | "wpe.weight" | "ln_f.weight" | "ln_f.bias" => {
            return Some((format!("transformer.{name}"), false));
        }
        _ => {}
    }
    let rest = name.strip_prefix("blocks.")?;
    let (i, field) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    // The residual scale is folded into the output projections.
    let (hf, role) = BLOCK_HF_NAMES
        .iter()
        .zip(block_layout(1, 1))
        .find(|((ours, _), _)| *ours == field)
        .map(|((_, hf), (_, _, role))| (*hf, role))?;
    let folded = matches!(role, Role::OutWeight | Role::OutBias);
    Some((format!("transformer.h.{i}.{hf}"), folded))
}

/// One exported tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct HfTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Every parameter of `model` under its transformers name and shape, the residual scale folded
/// into the output projections.
pub fn hf_tensors<B: Backend>(model: &Gpt2<B>) -> Result<Vec<HfTensor>, ExecError> {
    let s = model.residual_scale();
    model
        .named_params()
        .into_iter()
        .map(|(name, p)| {
            let (hf, folded) = hf_name(&name).ok_or_else(|| {
                ExecError::new(
                    ErrorKind::Internal,
                    format!("parameter `{name}` has no GPT-2 name"),
                )
            })?;
            let [rows, cols] = p.val().dims();
            let mut data = param_to_vec(p);
            if folded && s != 1.0 {
                for x in &mut data {
                    *x = (*x as f64 * s) as f32;
                }
            }
            // `[1, n]` rows are 1-D in transformers; matrices (embeddings, weights) stay 2-D.
            let shape = if hf.ends_with("bias") || is_ln(&hf) {
                vec![rows * cols]
            } else {
                vec![rows, cols]
            };
            Ok(HfTensor {
                name: hf,
                shape,
                data,
            })
        })
        .collect()
}

/// LayerNorm parameters (`ln_1`, `ln_2`, `ln_f`): 1-D, weight included.
fn is_ln(hf: &str) -> bool {
    [".ln_1.", ".ln_2.", ".ln_f."]
        .iter()
        .any(|p| hf.contains(p))
}

/// Writes `tensors` as a safetensors file with `format: pt` (what transformers expects).
pub fn write_safetensors(path: &Path, tensors: &[HfTensor]) -> Result<(), ExecError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let internal = |e: safetensors::SafeTensorError| {
        ExecError::new(
            ErrorKind::Internal,
            format!("cannot build {}: {e}", path.display()),
        )
    };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            Ok((
                t.name.clone(),
                TensorView::new(Dtype::F32, t.shape.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(internal)?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let out = safetensors::serialize(views, Some(meta)).map_err(internal)?;
    std::fs::write(path, out).map_err(|e| ExecError::io("write", path, e))
}

/// transformers' `config.json` for a GPT-2 of `depth` blocks shaped like `spec`.
pub fn hf_config(spec: &ModelSpec, depth: usize, tokenizer: &Tokenizer) -> serde_json::Value {
    // Begin and end of text are both the end-of-text token, as in GPT-2 (none for bytes).
    let eot = tokenizer.end_of_text();
    let (bos, eos) = (eot, eot);
    serde_json::json!({
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": spec.vocab,
        "n_positions": spec.context,
        "n_ctx": spec.context,
        "n_embd": spec.width,
        "n_layer": depth,
        "n_head": spec.heads,
        "n_inner": spec.mlp_ratio * spec.width,
        "activation_function": "gelu",
        "layer_norm_epsilon": LN_EPS,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "summary_first_dropout": 0.0,
        "initializer_range": spec.init_std,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "tie_word_embeddings": true,
        "use_cache": true,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
        "progc_residual_scaling": spec.residual,
        "progc_residual_scale_folded": depth_scale(spec.residual, depth),
    })
}

/// The residual scale of a model of `depth` blocks (as `Gpt2::residual_scale`).
fn depth_scale(r: ResidualScaling, depth: usize) -> f64 {
    let l = depth.max(1) as f64;
    match r {
        ResidualScaling::None => 1.0,
        ResidualScaling::InvSqrtDepth => 1.0 / l.sqrt(),
        ResidualScaling::InvDepth => 1.0 / l,
    }
}

fn bad_export(dir: &Path, what: impl std::fmt::Display) -> ExecError {
    ExecError::new(
        ErrorKind::Checkpoint,
        format!(
            "{} is not a GPT-2 export progc can read: {what}",
            dir.display()
        ),
    )
    .with_help("point at a folder written by `progc export RUN_DIR --to hf OUT_DIR`")
}

/// Reads a transformers GPT-2 folder (`config.json` + `model.safetensors`, f32) into progc's
/// model. The spec has `residual: none` (the scale is already in the weights). Tensors the
/// model does not use are an error, except a `lm_head.weight` equal to `wte`.
pub fn from_hf<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Gpt2<B>, ModelSpec), ExecError> {
    let cfg_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&cfg_path).map_err(|e| ExecError::io("read", &cfg_path, e))?;
    let cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad_export(dir, format!("config.json: {e}")))?;
    let num = |key: &str| -> Result<usize, ExecError> {
        cfg[key]
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| bad_export(dir, format!("config.json lacks `{key}`")))
    };
    let (width, heads, depth) = (num("n_embd")?, num("n_head")?, num("n_layer")?);
    let (context, vocab) = (num("n_positions")?, num("vocab_size")?);
    let inner = cfg["n_inner"].as_u64().map_or(4 * width, |n| n as usize);
    if cfg["activation_function"] != "gelu" {
        return Err(bad_export(
            dir,
            format!(
                "activation {} is not exact GELU",
                cfg["activation_function"]
            ),
        ));
    }
    if cfg["layer_norm_epsilon"].as_f64() != Some(LN_EPS) {
        return Err(bad_export(dir, "layer_norm_epsilon is not 1e-5"));
    }
    if width == 0 || heads == 0 || width % heads != 0 || !inner.is_multiple_of(width) {
        return Err(bad_export(
            dir,
            "n_embd, n_head and n_inner do not fit progc's model",
        ));
    }
    let spec = ModelSpec {
        name: "hf".into(),
        width,
        heads,
        depth,
        context,
        vocab,
        mlp_ratio: inner / width,
        init_std: cfg["initializer_range"].as_f64().unwrap_or(0.02),
        residual: ResidualScaling::None,
    };
    let st_path = dir.join("model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| ExecError::io("read", &st_path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad_export(dir, format!("model.safetensors: {e}")))?;
    let mut unused: HashSet<String> = st.names().into_iter().map(String::from).collect();
    let read = |hf: &str, n: usize| -> Result<Vec<f32>, ExecError> {
        let t = st
            .tensor(hf)
            .map_err(|_| bad_export(dir, format!("it lacks tensor `{hf}`")))?;
        if t.dtype() != Dtype::F32 || t.shape().iter().product::<usize>() != n {
            return Err(bad_export(
                dir,
                format!(
                    "tensor `{hf}` is {:?} {:?}, progc needs {n} f32 values",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let model = Gpt2::from_named(&spec, depth, device, |name, shape| {
        let (hf, _) = hf_name(name).ok_or_else(|| {
            ExecError::new(ErrorKind::Internal, format!("no GPT-2 name for `{name}`"))
        })?;
        unused.remove(&hf);
        Ok((ParamId::new(), read(&hf, shape[0] * shape[1])?))
    })?;
    if unused.remove("lm_head.weight") {
        let head = read("lm_head.weight", vocab * width)?;
        if head != read("transformer.wte.weight", vocab * width)? {
            return Err(bad_export(dir, "lm_head.weight is not tied to wte"));
        }
    }
    if let Some(extra) = unused.iter().next() {
        return Err(bad_export(
            dir,
            format!("tensor `{extra}` is not part of GPT-2"),
        ));
    }
    Ok((model, spec))
}
