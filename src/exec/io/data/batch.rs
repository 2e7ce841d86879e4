//! Batches: random training windows drawn by a resumable cursor, and the fixed validation set.
//!
//! Invariants:
//! - training batches depend only on the cursor state (seed and batches drawn so far), the
//!   batch shape and the training region; validation batches only on the validation region and
//!   the batch shape;
//! - a window is `context + 1` consecutive tokens of one region (wrapping around a region
//!   shorter than a window); `targets` are the inputs shifted left by one.

use serde::{Deserialize, Serialize};

use super::{Corpus, Region};
use crate::exec::network::rng::Rng;
use crate::plan::spec::BatchSpec;

/// Row-major `[sequences, context]`; `targets` are the inputs shifted left by one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub sequences: usize,
    pub context: usize,
}

impl Batch {
    fn with_capacity(batch: BatchSpec) -> Batch {
        let n = batch.sequences * batch.context;
        Batch {
            inputs: Vec::with_capacity(n),
            targets: Vec::with_capacity(n),
            sequences: batch.sequences,
            context: batch.context,
        }
    }

    /// Appends the window of `context + 1` tokens of `region` starting at `start`, wrapping
    /// around the region's end. An empty region gives zeros (never reached through
    /// `load_corpus`, which guarantees at least 2 tokens).
    fn push_window(&mut self, region: &Region, start: usize) {
        let mut window = Vec::with_capacity(self.context + 1);
        region.push_cyclic(start, self.context + 1, &mut window);
        self.inputs.extend_from_slice(&window[..self.context]);
        self.targets.extend_from_slice(&window[1..]);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCursor {
    pub rng: Rng,
    /// Batches drawn so far.
    pub drawn: u64,
}

impl BatchCursor {
    pub fn new(seed: u64) -> Self {
        BatchCursor {
            rng: Rng::new(seed),
            drawn: 0,
        }
    }

    /// Random windows of `context + 1` tokens from the train region, start positions uniform
    /// over every full window; deterministic in (seed, drawn) for a given batch shape and
    /// training region. A region shorter than a window is sampled cyclically.
    pub fn next_train(&mut self, corpus: &Corpus, batch: BatchSpec) -> Batch {
        let region = &corpus.train;
        let mut out = Batch::with_capacity(batch);
        let starts = if region.len() > batch.context {
            region.len() - batch.context
        } else {
            region.len()
        };
        for _ in 0..batch.sequences {
            let start = self.rng.below(starts as u64) as usize;
            out.push_window(region, start);
        }
        self.drawn += 1;
        out
    }
}

/// A fixed validation set: `n` batches of non-overlapping windows of `context + 1` tokens,
/// spread evenly over the whole validation region. The same for every run on the same corpus
/// and batch shape.
///
/// Small regions: when the region holds fewer than `n * sequences` windows, fewer batches are
/// returned (as many full batches as fit); when it holds fewer windows than one batch, a single
/// batch repeats the available windows; when it is shorter than one window, that batch's windows
/// wrap around the region (see `Corpus::check_fits`, which rejects that case).
pub fn validation_batches(corpus: &Corpus, batch: BatchSpec, n: usize) -> Vec<Batch> {
    let region = &corpus.val;
    let window = batch.context + 1;
    if n == 0 || batch.sequences == 0 {
        return Vec::new();
    }
    let available = region.len() / window;
    if available < batch.sequences {
        let mut b = Batch::with_capacity(batch);
        for i in 0..batch.sequences {
            let start = if available == 0 {
                0
            } else {
                (i % available) * window
            };
            b.push_window(region, start);
        }
        return vec![b];
    }
    let batches = n.min(available / batch.sequences);
    let wanted = batches * batch.sequences;
    (0..batches)
        .map(|k| {
            let mut b = Batch::with_capacity(batch);
            for r in 0..batch.sequences {
                // Window index spread over [0, available): strictly increasing since
                // wanted <= available, so windows never overlap.
                let i = k * batch.sequences + r;
                let w = (i as u128 * available as u128 / wanted as u128) as usize;
                b.push_window(region, w * window);
            }
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_corpus(n: u32, val: f64) -> Corpus {
        Corpus::from_tokens((0..n).collect(), n as usize, val, "toy".into(), "0".into()).unwrap()
    }

    #[test]
    fn train_batches_are_deterministic_and_targets_are_shifted_inputs() {
        let corpus = toy_corpus(1000, 0.1);
        let b = BatchSpec {
            sequences: 4,
            context: 16,
        };
        let mut c1 = BatchCursor::new(5);
        let mut c2 = BatchCursor::new(5);
        let x1: Vec<Batch> = (0..3).map(|_| c1.next_train(&corpus, b)).collect();
        let x2: Vec<Batch> = (0..3).map(|_| c2.next_train(&corpus, b)).collect();
        assert_eq!(x1, x2);
        assert_eq!(c1.drawn, 3);
        assert_ne!(x1[0], x1[1]);
        assert_ne!(x1[0], BatchCursor::new(6).next_train(&corpus, b));
        // A cursor restored mid-stream continues identically.
        let mut restored: BatchCursor =
            serde_json::from_str(&serde_json::to_string(&c1).unwrap()).unwrap();
        assert_eq!(restored.next_train(&corpus, b), c2.next_train(&corpus, b));
        for batch in &x1 {
            assert_eq!(batch.inputs.len(), 64);
            for row in 0..4 {
                let inp = &batch.inputs[row * 16..(row + 1) * 16];
                let tgt = &batch.targets[row * 16..(row + 1) * 16];
                // Toy tokens are 0..1000 in order, so a window is consecutive ids.
                assert_eq!(&inp[1..], &tgt[..15]);
                assert_eq!(tgt[15], inp[15] + 1);
                assert!(tgt[15] < 900, "window left the train region");
            }
        }
    }

    #[test]
    fn validation_set_is_fixed_non_overlapping_and_in_the_val_region() {
        let corpus = toy_corpus(1000, 0.2);
        let b = BatchSpec {
            sequences: 3,
            context: 7,
        };
        let v1 = validation_batches(&corpus, b, 4);
        assert_eq!(v1, validation_batches(&corpus, b, 4));
        assert_eq!(v1.len(), 4);
        let mut starts: Vec<u32> = v1
            .iter()
            .flat_map(|x| x.inputs.chunks(7).map(|r| r[0]))
            .collect();
        assert!(starts.iter().all(|&s| s >= 800));
        assert!(starts.windows(2).all(|w| w[1] >= w[0] + 8), "{starts:?}");
        assert_eq!(v1[0].targets[..6], v1[0].inputs[1..7]);
        // Windows spread over the region: the last one is near its end.
        starts.sort();
        assert!(*starts.last().unwrap() > 950, "{starts:?}");
        // Small region: fewer batches (200 tokens hold 25 windows = 8 batches of 3).
        assert_eq!(validation_batches(&corpus, b, 100).len(), 8);
        // Region smaller than one batch: one batch of repeated windows.
        let small = toy_corpus(100, 0.2);
        let v = validation_batches(
            &small,
            BatchSpec {
                sequences: 4,
                context: 9,
            },
            3,
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].inputs[..9], v[0].inputs[18..27]);
    }
}
