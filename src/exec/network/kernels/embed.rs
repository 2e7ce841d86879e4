//! Token plus position embedding on the CPU: `x [b t, d] = wte[tokens] + wpe[position]`,
//! forward and backward, written row by row (the broadcast add over the batch took a strided
//! slow path in the tensor version).
//!
//! Invariants:
//! - tokens are checked against the vocabulary by the caller;
//! - the backward's scatter-add into `dwte` runs over rows in order and `dwpe` sums the batch
//!   in order: results do not depend on the thread count.

use rayon::prelude::*;

/// `x [n, d]` for `tokens [n]` (`n = batch * seq`, sequence-major rows).
pub fn forward(wte: &[f32], wpe: &[f32], tokens: &[usize], seq: usize, d: usize) -> Vec<f32> {
    let mut x = vec![0f32; tokens.len() * d];
    x.par_chunks_mut(d)
        .zip(tokens.par_iter())
        .enumerate()
        .for_each(|(i, (row, &tok))| {
            let (te, pe) = (
                &wte[tok * d..(tok + 1) * d],
                &wpe[(i % seq) * d..(i % seq + 1) * d],
            );
            for ((o, a), b) in row.iter_mut().zip(te).zip(pe) {
                *o = a + b;
            }
        });
    x
}

/// `(dwte [vocab, d], dwpe [context, d])` from `dx [n, d]`.
pub fn backward(
    dx: &[f32],
    tokens: &[usize],
    seq: usize,
    d: usize,
    vocab: usize,
    context: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut dwte = vec![0f32; vocab * d];
    for (row, &tok) in dx.chunks_exact(d).zip(tokens) {
        for (o, g) in dwte[tok * d..(tok + 1) * d].iter_mut().zip(row) {
            *o += g;
        }
    }
    let mut dwpe = vec![0f32; context * d];
    let batch = tokens.len() / seq;
    dwpe[..seq * d]
        .par_chunks_mut(d)
        .enumerate()
        .for_each(|(p, out)| {
            for b in 0..batch {
                let row = &dx[(b * seq + p) * d..(b * seq + p + 1) * d];
                out.iter_mut().zip(row).for_each(|(o, g)| *o += g);
            }
        });
    (dwte, dwpe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::network::kernels::attention::tests::{rel, values};

    #[test]
    fn matches_the_float64_reference() {
        let (vocab, context, d, batch, seq) = (11, 9, 6, 3, 7);
        let wte = values(vocab * d, 41, 1.0);
        let wpe = values(context * d, 42, 1.0);
        let dx = values(batch * seq * d, 43, 1.0);
        let tokens: Vec<usize> = (0..batch * seq).map(|i| (i * 5 + 2) % vocab).collect();
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let x = forward(&f(&wte), &f(&wpe), &tokens, seq, d);
        let (dwte, dwpe) = backward(&f(&dx), &tokens, seq, d, vocab, context);
        let (mut rx, mut rte, mut rpe) = (vec![], vec![0.0; vocab * d], vec![0.0; context * d]);
        for (i, &t) in tokens.iter().enumerate() {
            for c in 0..d {
                rx.push(wte[t * d + c] + wpe[(i % seq) * d + c]);
                rte[t * d + c] += dx[i * d + c];
                rpe[(i % seq) * d + c] += dx[i * d + c];
            }
        }
        let e = [rel(&x, &rx), rel(&dwte, &rte), rel(&dwpe, &rpe)];
        assert!(e.iter().all(|&e| e < 1e-6), "x, dwte, dwpe errors {e:?}");
    }
}
