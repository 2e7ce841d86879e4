//! LayerNorm as CubeCL kernels over the rows of `x [n, d]`, forward and backward.
//!
//! Invariants:
//! - one cube per row for the row-wise passes (the forward, `dx`): its units stride over the
//!   row's columns and reduce in shared memory, in a fixed tree order;
//! - the forward saves `(mean, 1 / sqrt(var + eps))` per row, the biased variance, as the
//!   composition and the CPU kernel do;
//! - the gain and bias gradients are summed per block of `BLOCK_ROWS` rows by one unit per
//!   column, then over the blocks by a tensor sum: no atomics, and the order is fixed;
//! - rows are spread over a 2-D grid of cubes, so any row count fits the per-axis launch limit.

use burn::tensor::{DType, Shape};
// The `#[cube]` macros name the crate `cubecl`.
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::super::compose::LN_EPS;
use super::super::{float, prim};

/// Units per cube of the row-wise kernels (a power of two: the reduction halves it).
const THREADS: u32 = 64;
/// Rows per block of the gain and bias gradients.
const BLOCK_ROWS: usize = 64;
/// Cubes along x of the row grid (well below every runtime's per-axis limit).
const GRID_X: usize = 4096;

/// Sum of `red[0..units]` into `red[0]`, every unit of the cube taking part.
#[cube]
fn reduce<F: Float>(red: &mut SharedMemory<F>) {
    let u = UNIT_POS_X;
    // From the runtime cube size: a comptime value cannot be a loop variable.
    let mut half = CUBE_DIM_X / 2;
    while half > 0 {
        if u < half {
            let other = red[(u + half) as usize];
            red[u as usize] += other;
        }
        sync_cube();
        half /= 2;
    }
}

#[cube(launch)]
fn forward_kernel<F: Float>(
    x: &Tensor<F>,
    g: &Tensor<F>,
    b: &Tensor<F>,
    y: &mut Tensor<F>,
    stats: &mut Tensor<F>,
    rows: u32,
    cols: u32,
    eps: f32,
    #[comptime] threads: u32,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    let mut red = SharedMemory::<F>::new(threads as usize);
    if row >= rows {
        terminate!();
    }
    let u = UNIT_POS_X as usize;
    let d = cols as usize;
    let base = row as usize * d;
    let mut part = F::new(0.0);
    let mut c = u;
    while c < d {
        part += x[base + c];
        c += threads as usize;
    }
    red[u] = part;
    sync_cube();
    reduce::<F>(&mut red);
    let mean = red[0] / F::cast_from(cols);
    sync_cube();
    let mut part = F::new(0.0);
    let mut c = u;
    while c < d {
        let v = x[base + c] - mean;
        part += v * v;
        c += threads as usize;
    }
    red[u] = part;
    sync_cube();
    reduce::<F>(&mut red);
    let rstd = F::new(1.0) / F::sqrt(red[0] / F::cast_from(cols) + F::cast_from(eps));
    let mut c = u;
    while c < d {
        y[base + c] = (x[base + c] - mean) * rstd * g[c] + b[c];
        c += threads as usize;
    }
    if u == 0 {
        stats[2 * row as usize] = mean;
        stats[2 * row as usize + 1] = rstd;
    }
}

/// `dx` of one row: `(dy g - mean(dy g) - xhat mean(dy g xhat)) rstd`.
#[cube(launch)]
fn backward_x_kernel<F: Float>(
    x: &Tensor<F>,
    g: &Tensor<F>,
    stats: &Tensor<F>,
    dy: &Tensor<F>,
    dx: &mut Tensor<F>,
    rows: u32,
    cols: u32,
    #[comptime] threads: u32,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    let mut red_a = SharedMemory::<F>::new(threads as usize);
    let mut red_c = SharedMemory::<F>::new(threads as usize);
    if row >= rows {
        terminate!();
    }
    let u = UNIT_POS_X as usize;
    let d = cols as usize;
    let base = row as usize * d;
    let mean = stats[2 * row as usize];
    let rstd = stats[2 * row as usize + 1];
    let mut pa = F::new(0.0);
    let mut pc = F::new(0.0);
    let mut c = u;
    while c < d {
        let dxhat = dy[base + c] * g[c];
        pa += dxhat;
        pc += dxhat * (x[base + c] - mean) * rstd;
        c += threads as usize;
    }
    red_a[u] = pa;
    red_c[u] = pc;
    sync_cube();
    reduce::<F>(&mut red_a);
    reduce::<F>(&mut red_c);
    let a = red_a[0] / F::cast_from(cols);
    let cm = red_c[0] / F::cast_from(cols);
    let mut c = u;
    while c < d {
        let xhat = (x[base + c] - mean) * rstd;
        dx[base + c] = (dy[base + c] * g[c] - a - xhat * cm) * rstd;
        c += threads as usize;
    }
}

/// Partial gain and bias gradients `[blocks, d]`: unit `(column, block)` sums its column over
/// the block's rows.
#[cube(launch)]
fn backward_gb_kernel<F: Float>(
    x: &Tensor<F>,
    stats: &Tensor<F>,
    dy: &Tensor<F>,
    dg: &mut Tensor<F>,
    db: &mut Tensor<F>,
    rows: u32,
    cols: u32,
    #[comptime] block_rows: u32,
    #[define(F)] _dtype: StorageType,
) {
    let col = ABSOLUTE_POS_X as usize;
    let block = CUBE_POS_Y as usize;
    let d = cols as usize;
    if col >= d {
        terminate!();
    }
    let r0 = block * block_rows as usize;
    let mut r1 = r0 + block_rows as usize;
    if r1 > rows as usize {
        r1 = rows as usize;
    }
    let mut sg = F::new(0.0);
    let mut sb = F::new(0.0);
    for r in r0..r1 {
        let xhat = (x[r * d + col] - stats[2 * r]) * stats[2 * r + 1];
        sg += dy[r * d + col] * xhat;
        sb += dy[r * d + col];
    }
    dg[block * d + col] = sg;
    db[block * d + col] = sb;
}

/// A grid of at least `rows` cubes.
fn row_grid(rows: usize) -> CubeCount {
    let x = rows.clamp(1, GRID_X);
    CubeCount::Static(x as u32, rows.div_ceil(x).max(1) as u32, 1)
}

fn dims<R: CubeRuntime>(t: &CubeTensor<R>) -> [usize; 2] {
    let s = t.meta.shape();
    [s[0], s[1]]
}

fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: [usize; 2]) -> CubeTensor<R> {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        Shape::new(shape),
        DType::F32,
    )
}

/// `(y [n, d], stats [n, 2])` of contiguous f32 `x [n, d]`, `g`, `b [1, d]`.
pub fn forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    g: CubeTensor<R>,
    b: CubeTensor<R>,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let [n, d] = dims(&x);
    let (y, stats) = (empty(&x, [n, d]), empty(&x, [n, 2]));
    forward_kernel::launch::<R>(
        &x.client.clone(),
        row_grid(n),
        CubeDim::new_1d(THREADS),
        x.into_tensor_arg(),
        g.into_tensor_arg(),
        b.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        stats.clone().into_tensor_arg(),
        n as u32,
        d as u32,
        LN_EPS as f32,
        THREADS,
        DType::F32.into(),
    );
    (y, stats)
}

/// `(dx [n, d], dg [1, d], db [1, d])`, all operands contiguous f32.
pub fn backward<R, F, I, BT>(
    x: CubeTensor<R>,
    g: CubeTensor<R>,
    stats: CubeTensor<R>,
    dy: CubeTensor<R>,
) -> (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>)
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let [n, d] = dims(&x);
    let client = x.client.clone();
    let dx = empty(&x, [n, d]);
    backward_x_kernel::launch::<R>(
        &client,
        row_grid(n),
        CubeDim::new_1d(THREADS),
        x.clone().into_tensor_arg(),
        g.into_tensor_arg(),
        stats.clone().into_tensor_arg(),
        dy.clone().into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        n as u32,
        d as u32,
        THREADS,
        DType::F32.into(),
    );
    let blocks = n.div_ceil(BLOCK_ROWS).max(1);
    let (pg, pb) = (empty(&x, [blocks, d]), empty(&x, [blocks, d]));
    backward_gb_kernel::launch::<R>(
        &client,
        CubeCount::Static(d.div_ceil(THREADS as usize) as u32, blocks as u32, 1),
        CubeDim::new_1d(THREADS),
        x.into_tensor_arg(),
        stats.into_tensor_arg(),
        dy.into_tensor_arg(),
        pg.clone().into_tensor_arg(),
        pb.clone().into_tensor_arg(),
        n as u32,
        d as u32,
        BLOCK_ROWS as u32,
        DType::F32.into(),
    );
    type B<R, F, I, BT> = CubeBackend<R, F, I, BT>;
    let sum = |t: CubeTensor<R>| prim(float::<B<R, F, I, BT>, 2>(t).sum_dim(0));
    (dx, sum(pg), sum(pb))
}
