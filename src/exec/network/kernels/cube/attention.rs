//! Causal self-attention as CubeCL kernels (CUDA and wgpu alike), forward and backward, straight
//! from the packed `qkv [n, 3d]` rows, like the CPU kernel ([`super::super::attention`]).
//!
//! Invariants:
//! - one unit owns one query row (forward, `dq`) or one key row (`dk`, `dv`): it alone writes
//!   that row's slice of the output, so there are no atomics and the result does not depend on
//!   the launch geometry;
//! - the forward keeps only the output and the log-sum-exp of each score row (an online
//!   softmax over the keys a row can see): no `[B, H, T, T]` tensor ever exists;
//! - the backward recomputes each probability from `q`, `k` and the log-sum-exp and uses
//!   `delta_i = dO_i . O_i`; the first kernel writes `delta` for the second, which runs after it
//!   on the same stream;
//! - a unit's row of `q` (or `k`, `v`) and its running sums are local arrays of the head size
//!   (a compile-time constant, so the loops over it unroll and the arrays can stay in
//!   registers): no shared memory, so no limit from the 16 KB a wgpu adapter may offer.

use burn::tensor::{DType, Shape};
use burn_cubecl::CubeRuntime;
// The `#[cube]` macros name the crate `cubecl`.
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::super::AttnShape;

/// Rows (units) per cube.
const ROWS: usize = 64;

/// Forward: unit `u` of cube `(x, y)` is query row `x * rows + u` of (batch, head) `y`.
#[cube(launch)]
fn forward_kernel<F: Float>(
    qkv: &Tensor<F>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<F>,
    seq: u32,
    heads: u32,
    width: u32,
    #[comptime] rows: u32,
    #[comptime] head_dim: u32,
    #[define(F)] _dtype: StorageType,
) {
    let hd = head_dim as usize;
    let t = seq as usize;
    let d = width as usize;
    let u = UNIT_POS_X as usize;
    let bh = CUBE_POS_Y as usize;
    let i = CUBE_POS_X as usize * rows as usize + u;
    let mut acc = Array::<F>::new(hd);
    let mut qs = Array::<F>::new(hd);
    if i >= t {
        terminate!();
    }
    let b = bh / heads as usize;
    let h = bh % heads as usize;
    let scale = F::new(1.0) / F::sqrt(F::cast_from(head_dim));
    let qi = (b * t + i) * 3 * d + h * hd;
    #[unroll]
    for c in 0..hd {
        qs[c] = qkv[qi + c] * scale;
        acc[c] = F::new(0.0);
    }
    // Online softmax: `m` the running maximum, `l` the running sum of `exp(s - m)`.
    let mut m = F::new(-1.0e30);
    let mut l = F::new(0.0);
    for j in 0..i + 1 {
        let kj = (b * t + j) * 3 * d + d + h * hd;
        let mut s = F::new(0.0);
        #[unroll]
        for c in 0..hd {
            s += qs[c] * qkv[kj + c];
        }
        let mut m_new = m;
        if s > m {
            m_new = s;
        }
        let corr = F::exp(m - m_new);
        let p = F::exp(s - m_new);
        l = l * corr + p;
        #[unroll]
        for c in 0..hd {
            acc[c] = acc[c] * corr + p * qkv[kj + d + c];
        }
        m = m_new;
    }
    let oi = (b * t + i) * d + h * hd;
    let inv = F::new(1.0) / l;
    #[unroll]
    for c in 0..hd {
        out[oi + c] = acc[c] * inv;
    }
    lse[bh * t + i] = m + F::ln(l);
}

/// Backward, query side: `dq` of row `i`, and `delta_i = dO_i . O_i` for the key side.
#[cube(launch)]
fn backward_q_kernel<F: Float>(
    qkv: &Tensor<F>,
    out: &Tensor<F>,
    lse: &Tensor<F>,
    dout: &Tensor<F>,
    dqkv: &mut Tensor<F>,
    delta: &mut Tensor<F>,
    seq: u32,
    heads: u32,
    width: u32,
    #[comptime] rows: u32,
    #[comptime] head_dim: u32,
    #[define(F)] _dtype: StorageType,
) {
    let hd = head_dim as usize;
    let t = seq as usize;
    let d = width as usize;
    let u = UNIT_POS_X as usize;
    let bh = CUBE_POS_Y as usize;
    let i = CUBE_POS_X as usize * rows as usize + u;
    let mut acc = Array::<F>::new(hd);
    let mut qs = Array::<F>::new(hd);
    let mut gs = Array::<F>::new(hd);
    if i >= t {
        terminate!();
    }
    let b = bh / heads as usize;
    let h = bh % heads as usize;
    let scale = F::new(1.0) / F::sqrt(F::cast_from(head_dim));
    let qi = (b * t + i) * 3 * d + h * hd;
    let oi = (b * t + i) * d + h * hd;
    let mut dl = F::new(0.0);
    #[unroll]
    for c in 0..hd {
        qs[c] = qkv[qi + c] * scale;
        gs[c] = dout[oi + c];
        acc[c] = F::new(0.0);
        dl += dout[oi + c] * out[oi + c];
    }
    let li = lse[bh * t + i];
    for j in 0..i + 1 {
        let kj = (b * t + j) * 3 * d + d + h * hd;
        let mut s = F::new(0.0);
        let mut dp = F::new(0.0);
        #[unroll]
        for c in 0..hd {
            s += qs[c] * qkv[kj + c];
            dp += gs[c] * qkv[kj + d + c];
        }
        let ds = F::exp(s - li) * (dp - dl);
        #[unroll]
        for c in 0..hd {
            acc[c] += ds * qkv[kj + c];
        }
    }
    #[unroll]
    for c in 0..hd {
        dqkv[qi + c] = acc[c] * scale;
    }
    delta[bh * t + i] = dl;
}

/// Backward, key side: `dk` and `dv` of key row `j`, from every query row `i >= j`.
#[cube(launch)]
fn backward_kv_kernel<F: Float>(
    qkv: &Tensor<F>,
    lse: &Tensor<F>,
    dout: &Tensor<F>,
    delta: &Tensor<F>,
    dqkv: &mut Tensor<F>,
    seq: u32,
    heads: u32,
    width: u32,
    #[comptime] rows: u32,
    #[comptime] head_dim: u32,
    #[define(F)] _dtype: StorageType,
) {
    let hd = head_dim as usize;
    let t = seq as usize;
    let d = width as usize;
    let u = UNIT_POS_X as usize;
    let bh = CUBE_POS_Y as usize;
    let j = CUBE_POS_X as usize * rows as usize + u;
    let mut dk = Array::<F>::new(hd);
    let mut dv = Array::<F>::new(hd);
    let mut ks = Array::<F>::new(hd);
    let mut vs = Array::<F>::new(hd);
    if j >= t {
        terminate!();
    }
    let b = bh / heads as usize;
    let h = bh % heads as usize;
    let scale = F::new(1.0) / F::sqrt(F::cast_from(head_dim));
    let kj = (b * t + j) * 3 * d + d + h * hd;
    #[unroll]
    for c in 0..hd {
        dk[c] = F::new(0.0);
        dv[c] = F::new(0.0);
        ks[c] = qkv[kj + c];
        vs[c] = qkv[kj + d + c];
    }
    for i in j..t {
        let qi = (b * t + i) * 3 * d + h * hd;
        let oi = (b * t + i) * d + h * hd;
        let mut s = F::new(0.0);
        let mut dp = F::new(0.0);
        #[unroll]
        for c in 0..hd {
            s += qkv[qi + c] * ks[c];
            dp += dout[oi + c] * vs[c];
        }
        let p = F::exp(s * scale - lse[bh * t + i]);
        let ds = p * (dp - delta[bh * t + i]) * scale;
        #[unroll]
        for c in 0..hd {
            dk[c] += ds * qkv[qi + c];
            dv[c] += p * dout[oi + c];
        }
    }
    #[unroll]
    for c in 0..hd {
        dqkv[kj + c] = dk[c];
        dqkv[kj + d + c] = dv[c];
    }
}

/// Cubes `(row blocks, batch x heads)` and units per cube.
fn geometry(s: AttnShape) -> (CubeCount, CubeDim, u32) {
    let rows = ROWS;
    let blocks = s.seq.div_ceil(rows);
    (
        CubeCount::Static(blocks as u32, (s.batch * s.heads) as u32, 1),
        CubeDim::new_1d(rows as u32),
        rows as u32,
    )
}

/// `(out [n, d], lse [batch * heads, seq])` of contiguous f32 `qkv [n, 3d]`.
pub fn forward<R: CubeRuntime>(qkv: CubeTensor<R>, s: AttnShape) -> (CubeTensor<R>, CubeTensor<R>) {
    let (client, device) = (qkv.client.clone(), qkv.device.clone());
    let n = s.batch * s.seq;
    let empty = |shape: [usize; 2]| {
        empty_device_contiguous_dtype(
            client.clone(),
            device.clone(),
            Shape::new(shape),
            DType::F32,
        )
    };
    let out = empty([n, s.width]);
    let lse = empty([s.batch * s.heads, s.seq]);
    let (count, dim, rows) = geometry(s);
    forward_kernel::launch::<R>(
        &client,
        count,
        dim,
        qkv.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        s.seq as u32,
        s.heads as u32,
        s.width as u32,
        rows,
        s.head_dim() as u32,
        DType::F32.into(),
    );
    (out, lse)
}

/// `dqkv [n, 3d]` from the forward's inputs and outputs and `dout [n, d]`, all contiguous f32.
pub fn backward<R: CubeRuntime>(
    qkv: CubeTensor<R>,
    out: CubeTensor<R>,
    lse: CubeTensor<R>,
    dout: CubeTensor<R>,
    s: AttnShape,
) -> CubeTensor<R> {
    let (client, device) = (qkv.client.clone(), qkv.device.clone());
    let n = s.batch * s.seq;
    let empty = |shape: [usize; 2]| {
        empty_device_contiguous_dtype(
            client.clone(),
            device.clone(),
            Shape::new(shape),
            DType::F32,
        )
    };
    let dqkv = empty([n, 3 * s.width]);
    let delta = empty([s.batch * s.heads, s.seq]);
    let (count, dim, rows) = geometry(s);
    backward_q_kernel::launch::<R>(
        &client,
        count.clone(),
        dim,
        qkv.clone().into_tensor_arg(),
        out.into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        dout.clone().into_tensor_arg(),
        dqkv.clone().into_tensor_arg(),
        delta.clone().into_tensor_arg(),
        s.seq as u32,
        s.heads as u32,
        s.width as u32,
        rows,
        s.head_dim() as u32,
        DType::F32.into(),
    );
    backward_kv_kernel::launch::<R>(
        &client,
        count,
        dim,
        qkv.into_tensor_arg(),
        lse.into_tensor_arg(),
        dout.into_tensor_arg(),
        delta.into_tensor_arg(),
        dqkv.clone().into_tensor_arg(),
        s.seq as u32,
        s.heads as u32,
        s.width as u32,
        rows,
        s.head_dim() as u32,
        DType::F32.into(),
    );
    dqkv
}
