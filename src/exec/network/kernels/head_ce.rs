//! Fused cross-entropy over the tied head: `mean_i -log softmax(h_i W^T)[t_i]` and its gradients
//! with respect to the hidden states `h [n, d]` and the embedding `W [V, d]`, computed a chunk
//! of rows at a time.
//!
//! Invariants:
//! - the full `[n, V]` logits never exist: at most `chunk` rows of logits are alive at once
//!   (for GPT-2's 50,257-token vocabulary, 1,335 rows, 268 MB in f32, instead of 1.65 GB for a
//!   batch of 8 x 1024);
//! - forward and backward are one pass: each chunk's logits give both its loss terms and its
//!   gradient, so the head costs what the unfused head costs (one matmul forward, two
//!   backward) and nothing is recomputed;
//! - training returns a *surrogate* `sum(h * dh) + sum(W * dW)` with `dh`, `dW` detached: its
//!   gradient with respect to `h` and `W` is exactly the cross-entropy's, so autodiff carries
//!   it back through the rest of the model. Its value means nothing; the loss is returned
//!   separately;
//! - the max, exp, sum and log run in f32 whatever `Precision` the matmuls use.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

use super::{Kernels, TrainBackend, float, prim};
use crate::exec::network::precision::Precision;

/// Upper bound on the logits elements alive at once (2^26 f32 = 268 MB).
pub const CHUNK_ELEMS: usize = 1 << 26;

/// Rows per chunk for a vocabulary of `vocab` entries.
pub fn chunk_rows(rows: usize, vocab: usize) -> usize {
    (CHUNK_ELEMS / vocab.max(1)).clamp(1, rows.max(1))
}

/// The loss on the inner (non-autodiff) backend, and the surrogate on the autodiff one.
pub struct HeadLoss<B: AutodiffBackend> {
    pub loss: Tensor<B::InnerBackend, 1>,
    pub surrogate: Tensor<B, 1>,
}

/// One chunk: the sum of its loss terms and, when asked, its gradient contributions.
fn chunk<B: Backend>(
    h: Tensor<B, 2>,
    w_t: Tensor<B, 2>,
    w: &Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    grad_scale: Option<f64>,
    precision: Precision,
) -> (Tensor<B, 1>, Option<(Tensor<B, 2>, Tensor<B, 2>)>) {
    let logits = precision.matmul_prepared(h.clone(), w_t);
    let [rows, _] = logits.dims();
    let z = logits.clone() - logits.max_dim(1); // shifted: every row's max is 0
    let e = z.clone().exp();
    let s = e.clone().sum_dim(1); // [rows, 1], >= 1
    let picked = z.gather(1, targets.clone());
    let loss_sum = (s.clone().log() - picked).sum();
    let grads = grad_scale.map(|k| {
        // d loss / d logits = (softmax - onehot) / n
        let minus_one = Tensor::<B, 2>::full([rows, 1], -1.0, &h.device());
        let g = (e / s)
            .scatter(1, targets, minus_one, IndexingUpdateOp::Add)
            .mul_scalar(k);
        let dh = precision.matmul(g.clone(), w.clone());
        let dw = precision.matmul(g.transpose(), h);
        (dh, dw)
    });
    (loss_sum, grads)
}

/// The whole pass: through the backend's own kernel in f32 ([`Kernels::head_ce_pass`]), as
/// tensor ops with bf16 matmuls.
fn pass<B: Kernels>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk_rows: usize,
    grads: bool,
    precision: Precision,
) -> (Tensor<B, 1>, Option<(Tensor<B, 2>, Tensor<B, 2>)>) {
    match precision {
        Precision::F32 => {
            let (loss, g) = B::head_ce_pass(
                prim(h),
                prim(w),
                targets.into_primitive(),
                chunk_rows,
                grads,
            );
            (float(loss), g.map(|(dh, dw)| (float(dh), float(dw))))
        }
        Precision::Bf16 => pass_tensors(h, w, targets, chunk_rows, grads, precision),
    }
}

/// The whole pass over `h [n, d]` a chunk at a time, as tensor ops: the mean loss, and with
/// `grads` the gradients `(dh [n, d], dW [V, d])` of that mean.
pub fn pass_tensors<B: Backend>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk_rows: usize,
    grads: bool,
    precision: Precision,
) -> (Tensor<B, 1>, Option<(Tensor<B, 2>, Tensor<B, 2>)>) {
    let [n, _] = h.dims();
    let t = targets.reshape([n, 1]);
    let w_t = precision.operand(w.clone().transpose());
    let k = 1.0 / n as f64;
    let (mut loss, mut dhs, mut dw) = (None::<Tensor<B, 1>>, Vec::new(), None::<Tensor<B, 2>>);
    for start in (0..n).step_by(chunk_rows.max(1)) {
        let len = chunk_rows.min(n - start);
        let (l, g) = chunk(
            h.clone().narrow(0, start, len),
            w_t.clone(),
            &w,
            t.clone().narrow(0, start, len),
            grads.then_some(k),
            precision,
        );
        loss = Some(match loss {
            Some(acc) => acc + l,
            None => l,
        });
        if let Some((dh, dw_c)) = g {
            dhs.push(dh);
            dw = Some(match dw {
                Some(acc) => acc + dw_c,
                None => dw_c,
            });
        }
    }
    let loss = loss.expect("at least one row").mul_scalar(k);
    (loss, dw.map(|dw| (Tensor::cat(dhs, 0), dw)))
}

/// Mean cross-entropy of `targets [n]` under logits `h W^T`, a chunk at a time (no gradients).
pub fn head_ce_loss<B: Kernels>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk_rows: usize,
    precision: Precision,
) -> Tensor<B, 1> {
    pass(h, w, targets, chunk_rows, false, precision).0
}

/// Training form: the mean loss and a surrogate whose gradient is the loss's (see the module
/// invariants). `h` and `w` are tracked tensors of the model; `targets [n]`.
pub fn head_ce_train<B: TrainBackend>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk_rows: usize,
    precision: Precision,
) -> HeadLoss<B> {
    let (hi, wi) = (h.clone().inner(), w.clone().inner());
    let (loss, grads) = pass(hi, wi, targets.inner(), chunk_rows, true, precision);
    let (dh, dw) = grads.expect("gradients were asked for");
    let surrogate = (h * Tensor::from_inner(dh)).sum() + (w * Tensor::from_inner(dw)).sum();
    HeadLoss { loss, surrogate }
}

/// The plain float64 reference the fused head is checked against (tests, `bench/kernels.rs`).
pub mod reference {
    //! Loss, `dh [n*d]` and `dW [V*d]`, row-major, with no chunking and no tensors.
    pub fn head_ce(h: &[f64], w: &[f64], t: &[usize], d: usize) -> (f64, Vec<f64>, Vec<f64>) {
        let n = t.len();
        let v = w.len() / d;
        let (mut loss, mut dh, mut dw) = (0.0, vec![0.0; n * d], vec![0.0; v * d]);
        for i in 0..n {
            let hi = &h[i * d..(i + 1) * d];
            let logits: Vec<f64> = (0..v)
                .map(|j| (0..d).map(|k| hi[k] * w[j * d + k]).sum())
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = logits.iter().map(|x| (x - m).exp()).sum();
            loss += s.ln() + m - logits[t[i]];
            for j in 0..v {
                let g = ((logits[j] - m).exp() / s - f64::from(j == t[i])) / n as f64;
                for k in 0..d {
                    dh[i * d + k] += g * w[j * d + k];
                    dw[j * d + k] += g * hi[k];
                }
            }
        }
        (loss / n as f64, dh, dw)
    }

    /// `n` values uniform in [-1, 1) from `seed` (test inputs).
    pub fn uniform(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                let r = crate::exec::network::rng::splitmix64(&mut x);
                ((r >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// `||a - b|| / ||b||`.
    pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den.max(f64::MIN_POSITIVE)).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{head_ce, rel_err, uniform};
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{ElementConversion, TensorData};

    type TB = Autodiff<Flex>;

    fn tensor<B: Backend>(xs: &[f64], shape: [usize; 2]) -> Tensor<B, 2> {
        let v: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn to_f64<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    fn case(n: usize, d: usize, v: usize, chunk: usize, precision: Precision) -> [f64; 4] {
        let (h, w) = (uniform(n * d, 1), uniform(v * d, 2));
        let t: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % v).collect();
        let (loss_ref, dh_ref, dw_ref) = head_ce(&h, &w, &t, d);
        let targets = || {
            let ti: Vec<i64> = t.iter().map(|&x| x as i64).collect();
            Tensor::<TB, 1, Int>::from_data(TensorData::new(ti, [n]), &Default::default())
        };
        let ht = tensor::<TB>(&h, [n, d]).require_grad();
        let wt = tensor::<TB>(&w, [v, d]).require_grad();
        let out = head_ce_train(ht.clone(), wt.clone(), targets(), chunk, precision);
        let grads = out.surrogate.backward();
        let dh = to_f64(ht.grad(&grads).unwrap());
        let dw = to_f64(wt.grad(&grads).unwrap());
        let loss = out.loss.into_scalar().elem::<f64>();
        let eval = head_ce_loss(
            tensor::<Flex>(&h, [n, d]),
            tensor::<Flex>(&w, [v, d]),
            targets().inner(),
            chunk,
            precision,
        )
        .into_scalar()
        .elem::<f64>();
        [
            (loss - loss_ref).abs() / loss_ref,
            (eval - loss_ref).abs() / loss_ref,
            rel_err(&dh, &dh_ref),
            rel_err(&dw, &dw_ref),
        ]
    }

    #[test]
    fn matches_the_f64_reference_for_every_chunking() {
        // Chunks that divide the rows, that leave a remainder, of one row, and of all rows.
        for chunk in [1, 3, 4, 10, 64] {
            let errs = case(10, 8, 13, chunk, Precision::F32);
            for e in errs {
                assert!(e < 1e-5, "chunk {chunk}: relative errors {errs:?}");
            }
        }
    }

    #[test]
    fn bf16_matmuls_stay_close_to_the_reference() {
        // bf16 keeps 8 mantissa bits: relative error ~ 2^-8 per operand.
        let errs = case(24, 32, 50, 7, Precision::Bf16);
        for e in errs {
            assert!(e < 2e-2, "relative errors {errs:?}");
        }
        assert!(
            errs.iter().any(|&e| e > 1e-6),
            "bf16 should round: {errs:?}"
        );
    }

    #[test]
    fn chunks_bound_the_logits_in_memory() {
        assert_eq!(chunk_rows(8192, 50257), CHUNK_ELEMS / 50257);
        assert!(chunk_rows(8192, 50257) * 50257 <= CHUNK_ELEMS);
        assert_eq!(
            chunk_rows(1024, 256),
            1024,
            "small vocabularies take the batch in one chunk"
        );
        assert_eq!(chunk_rows(5, 1 << 30), 1);
    }
}
