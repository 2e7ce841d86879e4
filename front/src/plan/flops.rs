//! Parameter counts and training FLOPs of a depth-`l` GPT-2.
//!
//! Three figures, each labelled wherever it is printed:
//! - `exact`: per-token training FLOPs `6 (l (12 d^2 + 13 d) + V d) + 12 l d n_ctx`
//!   (matmuls forward + backward, the tied head included, attention scores included);
//! - `6N, embeddings counted`: `6 * N * tokens` with N all parameters (token and position
//!   embeddings included, the tied head counted once): the paper's convention for its 39M /
//!   46M / 124M figures;
//! - `6N, non-embedding`: the same with N the transformer-block parameters only.

use serde::{Deserialize, Serialize};

use super::spec::ModelSpec;

/// Parameters of one pre-LN block: attention (4 d^2 + 4 d), MLP (8 d^2 + 5 d), two LayerNorms
/// (4 d) = 12 d^2 + 13 d (with the standard MLP ratio of 4).
pub fn block_params(m: &ModelSpec) -> u64 {
    let d = m.width as u64;
    let h = (m.mlp_ratio * m.width) as u64;
    let attn = 4 * d * d + 4 * d;
    let mlp = 2 * d * h + h + d;
    attn + mlp + 4 * d
}

/// Token + position embeddings (the head is tied to the token embedding).
pub fn embedding_params(m: &ModelSpec) -> u64 {
    ((m.vocab + m.context) * m.width) as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Everything, embeddings and the final LayerNorm included.
    pub total: u64,
    /// Transformer blocks only.
    pub non_embedding: u64,
}

pub fn param_counts(m: &ModelSpec, depth: usize) -> ParamCounts {
    let blocks = depth as u64 * block_params(m);
    let final_ln = 2 * m.width as u64;
    ParamCounts {
        total: blocks + embedding_params(m) + final_ln,
        non_embedding: blocks,
    }
}

/// Exact training FLOPs per token at `depth` (see the module doc).
pub fn exact_flops_per_token(m: &ModelSpec, depth: usize) -> f64 {
    let (l, d, v, n) = (
        depth as f64,
        m.width as f64,
        m.vocab as f64,
        m.context as f64,
    );
    let r = m.mlp_ratio as f64;
    // 12 d^2 + 13 d generalizes to (4 + 2r) d^2 + (9 + r) d for an MLP ratio r.
    let per_block = (4.0 + 2.0 * r) * d * d + (9.0 + r) * d;
    6.0 * (l * per_block + v * d) + 12.0 * l * d * n
}

/// FLOPs of training `tokens` tokens at `depth`, in all three conventions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flops {
    pub exact: f64,
    pub six_n_embedding: f64,
    pub six_n_non_embedding: f64,
}

impl std::ops::Add for Flops {
    type Output = Flops;

    fn add(self, o: Flops) -> Flops {
        Flops {
            exact: self.exact + o.exact,
            six_n_embedding: self.six_n_embedding + o.six_n_embedding,
            six_n_non_embedding: self.six_n_non_embedding + o.six_n_non_embedding,
        }
    }
}

impl Flops {
    pub fn of(m: &ModelSpec, depth: usize, tokens: u64) -> Flops {
        let p = param_counts(m, depth);
        let t = tokens as f64;
        Flops {
            exact: exact_flops_per_token(m, depth) * t,
            six_n_embedding: 6.0 * p.total as f64 * t,
            six_n_non_embedding: 6.0 * p.non_embedding as f64 * t,
        }
    }

    /// Component-wise ratio `self / base` (0 where the base is 0).
    pub fn ratio(self, base: Flops) -> Flops {
        let r = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Flops {
            exact: r(self.exact, base.exact),
            six_n_embedding: r(self.six_n_embedding, base.six_n_embedding),
            six_n_non_embedding: r(self.six_n_non_embedding, base.six_n_non_embedding),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::ResidualScaling;

    fn gpt2_small() -> ModelSpec {
        ModelSpec {
            name: "gpt2_small".into(),
            width: 768,
            heads: 12,
            depth: 12,
            context: 1024,
            vocab: 50257,
            mlp_ratio: 4,
            init_std: 0.02,
            residual: ResidualScaling::None,
        }
    }

    #[test]
    fn gpt2_small_parameter_counts_match_the_paper() {
        let m = gpt2_small();
        let m0 = param_counts(&m, 0).total as f64 / 1e6;
        let m1 = param_counts(&m, 1).total as f64 / 1e6;
        let m12 = param_counts(&m, 12).total as f64 / 1e6;
        assert!((m0 - 39.4).abs() < 0.1, "{m0}");
        assert!((m1 - 46.5).abs() < 0.1, "{m1}");
        assert!((m12 - 124.4).abs() < 0.1, "{m12}");
    }

    #[test]
    fn exact_flops_formula_reduces_to_the_papers_for_ratio_4() {
        let m = gpt2_small();
        let (l, d, v, n) = (12.0, 768.0, 50257.0, 1024.0);
        let want = 6.0 * (l * (12.0 * d * d + 13.0 * d) + v * d) + 12.0 * l * d * n;
        assert_eq!(exact_flops_per_token(&m, 12), want);
    }
}
