//! `Kernels` for the flex CPU backend: unwraps `FlexTensor`s into f32 slices, runs the
//! kernels, wraps the results.
//!
//! Invariants:
//! - a tensor that is not f32, or whose storage is not one contiguous run, goes through the
//!   composition instead (bf16 operands, odd views): never a wrong read;
//! - outputs are fresh contiguous tensors, except AdamW, which updates `p`, `m` and `v` in
//!   place when their storage is not shared (copy-on-write otherwise).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};

use burn::tensor::ops::{FloatTensor, IntTensor};

use super::{
    AdamWStep, AttnShape, Kernels, adamw as adamw_kernel, attention, compose,
    embed as embed_kernel, gelu as gelu_kernel, head as head_kernel, layer_norm,
    linear as linear_kernel,
};

type T = FlexTensor;

/// The tensor's f32 elements in order, when they are one contiguous run.
fn f32s(t: &T) -> Option<&[f32]> {
    if t.dtype() != DType::F32 {
        return None;
    }
    t.as_slice::<f32>()
}

fn tensor(data: Vec<f32>, shape: Vec<usize>) -> T {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn dims(t: &T) -> Vec<usize> {
    t.layout().shape().to_vec()
}

pub fn attention_forward(qkv: T, s: AttnShape) -> (T, T) {
    let Some(x) = f32s(&qkv) else {
        return compose::attention_forward::<Flex>(qkv, s);
    };
    let n = s.batch * s.seq;
    let mut out = vec![0f32; n * s.width];
    let mut lse = vec![0f32; s.batch * s.heads * s.seq];
    attention::forward(x, s, &mut out, &mut lse);
    (
        tensor(out, vec![n, s.width]),
        tensor(lse, vec![s.batch * s.heads, s.seq]),
    )
}

pub fn attention_backward(qkv: T, out: T, lse: T, dout: T, s: AttnShape) -> T {
    let dout = dout.to_contiguous();
    match (f32s(&qkv), f32s(&out), f32s(&lse), f32s(&dout)) {
        (Some(x), Some(o), Some(l), Some(g)) => {
            let mut dqkv = vec![0f32; x.len()];
            attention::backward(x, o, l, g, s, &mut dqkv);
            tensor(dqkv, dims(&qkv))
        }
        _ => compose::attention_backward::<Flex>(qkv, out, lse, dout, s),
    }
}

pub fn layer_norm_forward(x: T, g: T, b: T) -> (T, T) {
    match (f32s(&x), f32s(&g), f32s(&b)) {
        (Some(xs), Some(gs), Some(bs)) => {
            let n = xs.len() / gs.len();
            let (mut y, mut stats) = (vec![0f32; xs.len()], vec![0f32; 2 * n]);
            layer_norm::forward(xs, gs, bs, &mut y, &mut stats);
            (tensor(y, dims(&x)), tensor(stats, vec![n, 2]))
        }
        _ => compose::layer_norm_forward::<Flex>(x, g, b),
    }
}

pub fn layer_norm_backward(x: T, g: T, stats: T, dy: T) -> (T, T, T) {
    let dy = dy.to_contiguous();
    match (f32s(&x), f32s(&g), f32s(&stats), f32s(&dy)) {
        (Some(xs), Some(gs), Some(st), Some(dys)) => {
            let d = gs.len();
            let (mut dx, mut dg, mut db) = (vec![0f32; xs.len()], vec![0f32; d], vec![0f32; d]);
            layer_norm::backward(xs, gs, st, dys, &mut dx, &mut dg, &mut db);
            (
                tensor(dx, dims(&x)),
                tensor(dg, dims(&g)),
                tensor(db, dims(&g)),
            )
        }
        _ => compose::layer_norm_backward::<Flex>(x, g, stats, dy),
    }
}

pub fn gelu(x: T) -> T {
    match f32s(&x) {
        Some(xs) => {
            let mut y = vec![0f32; xs.len()];
            gelu_kernel::forward(xs, &mut y);
            tensor(y, dims(&x))
        }
        None => compose::gelu_erf::<Flex>(x),
    }
}

pub fn gelu_backward(x: T, dy: T) -> T {
    let dy = dy.to_contiguous();
    match (f32s(&x), f32s(&dy)) {
        (Some(xs), Some(dys)) => {
            let mut dx = vec![0f32; xs.len()];
            gelu_kernel::backward(xs, dys, &mut dx);
            tensor(dx, dims(&x))
        }
        _ => <Flex as burn::tensor::ops::ActivationOps<Flex>>::gelu_backward(x, dy),
    }
}

pub fn linear(x: T, w: T, b: T, residual: Option<(T, f64)>) -> T {
    let r = residual.as_ref().map(|(r, s)| (f32s(r), *s as f32));
    match (f32s(&x), f32s(&w), f32s(&b), r) {
        (Some(xs), Some(ws), Some(bs), None) => {
            let n = dims(&x)[0];
            tensor(linear_kernel::forward(xs, ws, bs, None), vec![n, bs.len()])
        }
        (Some(xs), Some(ws), Some(bs), Some((Some(rs), s))) => {
            let n = dims(&x)[0];
            tensor(
                linear_kernel::forward(xs, ws, bs, Some((rs, s))),
                vec![n, bs.len()],
            )
        }
        _ => compose::linear::<Flex>(x, w, b, residual),
    }
}

pub fn linear_backward(x: T, w: T, dy: T, s: f64) -> (T, T, T) {
    let dy = dy.to_contiguous();
    match (f32s(&x), f32s(&w), f32s(&dy)) {
        (Some(xs), Some(ws), Some(dys)) => {
            let (n, k, m) = (dims(&x)[0], dims(&w)[0], dims(&w)[1]);
            let (dx, dw, db) = linear_kernel::backward(xs, ws, dys, s as f32, m);
            (
                tensor(dx, vec![n, k]),
                tensor(dw, vec![k, m]),
                tensor(db, vec![1, m]),
            )
        }
        _ => compose::linear_backward::<Flex>(x, w, dy, s),
    }
}

/// Token ids as indices; `None` when one is negative or not below `vocab`.
fn indices(t: &T, vocab: usize) -> Option<Vec<usize>> {
    let ids = t
        .clone()
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .ok()?;
    ids.into_iter()
        .map(|x| usize::try_from(x).ok().filter(|&x| x < vocab))
        .collect()
}

pub fn embed(wte: T, wpe: T, tokens: T) -> T {
    let (vocab, d) = (dims(&wte)[0], dims(&wte)[1]);
    let [b, t] = [dims(&tokens)[0], dims(&tokens)[1]];
    match (f32s(&wte), f32s(&wpe), indices(&tokens, vocab)) {
        (Some(te), Some(pe), Some(ids)) if t <= dims(&wpe)[0] => {
            tensor(embed_kernel::forward(te, pe, &ids, t, d), vec![b * t, d])
        }
        _ => compose::embed::<Flex>(wte, wpe, tokens),
    }
}

pub fn embed_backward(tokens: T, dx: T, vocab: usize, context: usize) -> (T, T) {
    let dx = dx.to_contiguous();
    let t = dims(&tokens)[1];
    let d = dims(&dx)[1];
    match (f32s(&dx), indices(&tokens, vocab)) {
        (Some(g), Some(ids)) if t <= context => {
            let (dte, dpe) = embed_kernel::backward(g, &ids, t, d, vocab, context);
            (tensor(dte, vec![vocab, d]), tensor(dpe, vec![context, d]))
        }
        _ => compose::embed_backward::<Flex>(tokens, dx, vocab, context),
    }
}

#[allow(clippy::type_complexity)]
pub fn head_ce_pass(h: T, w: T, targets: T, chunk_rows: usize, grads: bool) -> (T, Option<(T, T)>) {
    let vocab = dims(&w)[0];
    let t = indices(&targets, vocab).unwrap_or_default();
    let (n, d) = (dims(&h)[0], dims(&h)[1]);
    let in_range = t.len() == n;
    match (f32s(&h), f32s(&w)) {
        (Some(hs), Some(ws)) if in_range && n > 0 => {
            let (loss, g) = head_kernel::pass(hs, ws, &t, d, chunk_rows, grads);
            (
                tensor(vec![loss], vec![1]),
                g.map(|(dh, dw)| (tensor(dh, vec![n, d]), tensor(dw, vec![vocab, d]))),
            )
        }
        _ => compose::head_ce_pass::<Flex>(h, w, targets, chunk_rows, grads),
    }
}

pub fn adamw(p: T, g: T, m: T, v: T, h: AdamWStep) -> (T, T, T) {
    let g = g.to_contiguous();
    let (mut p, mut m, mut v) = (p.to_contiguous(), m.to_contiguous(), v.to_contiguous());
    let all_f32 = [&p, &g, &m, &v].iter().all(|t| t.dtype() == DType::F32);
    let Some(gs) = f32s(&g).filter(|_| all_f32) else {
        return compose::adamw::<Flex>(p, g, m, v, h);
    };
    adamw_kernel::step(
        p.storage_mut::<f32>(),
        gs,
        m.storage_mut::<f32>(),
        v.storage_mut::<f32>(),
        h,
    );
    (p, m, v)
}

impl Kernels for Flex {
    fn attention_forward(
        qkv: FloatTensor<Self>,
        s: AttnShape,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        attention_forward(qkv, s)
    }
    fn attention_backward(
        qkv: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        s: AttnShape,
    ) -> FloatTensor<Self> {
        attention_backward(qkv, out, lse, dout, s)
    }
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        layer_norm_forward(x, g, b)
    }
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        layer_norm_backward(x, g, stats, dy)
    }
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu(x)
    }
    fn gelu_erf_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_backward(x, dy)
    }
    fn linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        linear(x, w, b, None)
    }
    fn linear_residual(
        r: FloatTensor<Self>,
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        s: f64,
    ) -> FloatTensor<Self> {
        linear(x, w, b, Some((r, s)))
    }
    fn linear_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        s: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        linear_backward(x, w, dy, s)
    }
    fn embed(
        wte: FloatTensor<Self>,
        wpe: FloatTensor<Self>,
        tokens: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        embed(wte, wpe, tokens)
    }
    fn embed_backward(
        tokens: IntTensor<Self>,
        dx: FloatTensor<Self>,
        vocab: usize,
        context: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        embed_backward(tokens, dx, vocab, context)
    }
    fn head_ce_pass(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: IntTensor<Self>,
        chunk_rows: usize,
        grads: bool,
    ) -> (
        FloatTensor<Self>,
        Option<(FloatTensor<Self>, FloatTensor<Self>)>,
    ) {
        head_ce_pass(h, w, targets, chunk_rows, grads)
    }
    fn adamw(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        h: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        adamw(p, g, m, v, h)
    }
}
