//! Optimizers (being written).

use serde::{Deserialize, Serialize};

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
