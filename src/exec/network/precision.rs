//! Compute precision of the matmuls: f32, or bf16 with f32 master weights ("autocast").
//!
//! Invariants:
//! - parameters, optimizer state, gradients as the optimizer sees them, layer norms, softmaxes
//!   and losses stay f32 in both modes; only matmul operands are rounded to bf16, and their
//!   products come back as f32;
//! - `F32` is the identity: no cast is recorded, so f32 runs are bit-identical to runs made
//!   before this option existed.

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// An operand as the matmul reads it.
    pub fn operand<B: Backend, const D: usize>(self, t: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::F32 => t,
            Precision::Bf16 => t.cast(FloatDType::BF16),
        }
    }

    /// `a @ b` in this precision, returned as f32.
    pub fn matmul<B: Backend, const D: usize>(
        self,
        a: Tensor<B, D>,
        b: Tensor<B, D>,
    ) -> Tensor<B, D> {
        self.matmul_prepared(a, self.operand(b))
    }

    /// `a @ b` where `b` is already an operand (cast once, reused across chunks).
    pub fn matmul_prepared<B: Backend, const D: usize>(
        self,
        a: Tensor<B, D>,
        b: Tensor<B, D>,
    ) -> Tensor<B, D> {
        match self {
            Precision::F32 => a.matmul(b),
            Precision::Bf16 => self.operand(a).matmul(b).cast(FloatDType::F32),
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision `{other}`: use `f32` or `bf16`")),
        }
    }
}
