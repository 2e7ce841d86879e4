//! `progc sample`: text from a run's checkpoint, to see what the model learned.
//!
//! Invariants:
//! - the continuation depends only on (model, prompt ids, options, seed): each token draws
//!   one `f64` from progc's own [`Rng`] (none when greedy), softmax is computed on the host in
//!   f64, and ties go to the lowest id;
//! - temperature 0, or top-k 1, is greedy: the argmax of the last position's logits;
//! - the model sees at most its last `context` tokens (a sliding window, no KV cache);
//! - text is encoded and decoded by the run's own tokenizer (for a tokenizer.json, the copy in
//!   the run directory); an empty prompt starts from its end-of-text token, or from a newline
//!   when it has none (bytes).

use burn::tensor::{Int, Tensor, TensorData};

use crate::exec::device::{BackendTask, DeviceChoice, Placed, dispatch};
use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::checkpoint::load_run;
use crate::exec::io::data::TextTokenizer;
use crate::exec::network::kernels::{Kernels, TrainBackend};
use crate::exec::network::model::Gpt2;
use crate::exec::network::rng::Rng;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// New tokens to generate (at least 1).
    pub tokens: usize,
    /// 0 is greedy; otherwise logits are divided by it.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    pub seed: u64,
}

impl SampleOptions {
    pub fn validate(&self) -> Result<(), ExecError> {
        let bad =
            |m: String, h: &str| Err(ExecError::new(ErrorKind::Usage, m).with_help(h.to_string()));
        if self.tokens == 0 {
            return bad(
                "--tokens must be at least 1".into(),
                "ask for e.g. `--tokens 200`",
            );
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(
                format!(
                    "temperature {} is not a finite number >= 0",
                    self.temperature
                ),
                "use `--temperature 0` for greedy decoding, or e.g. 0.8",
            );
        }
        if self.top_k == Some(0) {
            return bad(
                "--top-k 0 keeps no token".into(),
                "use `--top-k 1` (greedy) or more, or leave it out to keep every token",
            );
        }
        Ok(())
    }

    fn greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == Some(1)
    }
}

/// The next token from one position's logits.
pub fn pick(logits: &[f32], opts: &SampleOptions, rng: &mut Rng) -> u32 {
    if opts.greedy() {
        return argmax(logits);
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    if let Some(k) = opts.top_k.filter(|&k| k < logits.len()) {
        // Highest logit first, ties by id: the kept set is well defined.
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        order.truncate(k);
        order.sort_unstable();
    }
    let t = opts.temperature;
    let max = order
        .iter()
        .map(|&i| logits[i] as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.next_f64() * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    // Rounding left `u` past the last weight: the last kept token.
    order.last().map_or(0, |&i| i as u32)
}

/// The lowest id with the highest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Logits of the last position for `window` (at most `context` tokens).
pub fn last_logits<B: Kernels>(model: &Gpt2<B>, window: &[u32], device: &B::Device) -> Vec<f32> {
    let data: Vec<i32> = window.iter().map(|&t| t as i32).collect();
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(data, [1, window.len()]), device);
    let logits = model.forward(x);
    let [_, t, v] = logits.dims();
    logits
        .narrow(1, t - 1, 1)
        .reshape([v])
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

/// `opts.tokens` new tokens after `prompt` (which must be non-empty and in the vocabulary).
pub fn generate<B: Kernels>(
    model: &Gpt2<B>,
    context: usize,
    prompt: &[u32],
    opts: &SampleOptions,
    device: &B::Device,
) -> Vec<u32> {
    let mut rng = Rng::new(opts.seed);
    let mut all = prompt.to_vec();
    for _ in 0..opts.tokens {
        let start = all.len().saturating_sub(context);
        let logits = last_logits(model, &all[start..], device);
        all.push(pick(&logits, opts, &mut rng));
    }
    all.split_off(prompt.len())
}

/// What `progc sample` prints.
pub struct Sampled {
    pub prompt: String,
    pub continuation: String,
    pub step: u64,
}

struct SampleJob {
    run_dir: PathBuf,
    checkpoint: Option<PathBuf>,
    prompt: String,
    opts: SampleOptions,
}

impl BackendTask for SampleJob {
    type Output = Sampled;

    fn run<B: TrainBackend>(self, device: B::Device, _: Placed) -> Result<Sampled, ExecError> {
        let run = load_run(&self.run_dir, self.checkpoint.as_deref())?;
        let spec = &run.plan.spec;
        let tokenizer = TextTokenizer::for_run(&self.run_dir, &spec.data.tokenizer)?;
        let model = run.model::<B::InnerBackend>(&device)?;
        let mut ids = tokenizer.encode(&self.prompt)?;
        if ids.is_empty() {
            ids = match tokenizer.end_of_text() {
                Some(eot) => vec![eot],
                None => tokenizer.encode("\n")?,
            };
        }
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= spec.model.vocab) {
            return Err(ExecError::new(
                ErrorKind::Data,
                format!(
                    "the prompt encodes to token {bad}, outside the model's vocabulary of {}",
                    spec.model.vocab
                ),
            )
            .with_help("use a prompt the run's tokenizer can encode"));
        }
        let new = generate(&model, spec.model.context, &ids, &self.opts, &device);
        Ok(Sampled {
            prompt: self.prompt,
            continuation: tokenizer.decode_lossy(&new)?,
            step: run.checkpoint.step,
        })
    }
}

/// `progc sample RUN_DIR`: the continuation of `prompt` from the run's checkpoint.
pub fn sample(
    run_dir: PathBuf,
    checkpoint: Option<PathBuf>,
    prompt: String,
    opts: SampleOptions,
    device: DeviceChoice,
) -> Result<Sampled, ExecError> {
    opts.validate()?;
    let job = SampleJob {
        run_dir,
        checkpoint,
        prompt,
        opts,
    };
    dispatch(device, false, job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::network::model::tests::tiny_spec;
    use burn::backend::Flex;

    fn model() -> (Gpt2<Flex>, usize) {
        let spec = crate::plan::spec::ModelSpec {
            init_std: 0.5, // peaked logits, so greedy and sampling differ
            ..tiny_spec(1)
        };
        (Gpt2::new(&spec, 1, 4, &Default::default()), spec.context)
    }

    fn opts(temperature: f64, top_k: Option<usize>, seed: u64) -> SampleOptions {
        SampleOptions {
            tokens: 24,
            temperature,
            top_k,
            seed,
        }
    }

    #[test]
    fn sampling_is_deterministic_per_seed() {
        let (m, c) = model();
        let dev = Default::default();
        let a = generate(&m, c, &[1, 2, 3], &opts(1.0, None, 7), &dev);
        let b = generate(&m, c, &[1, 2, 3], &opts(1.0, None, 7), &dev);
        let other = generate(&m, c, &[1, 2, 3], &opts(1.0, None, 8), &dev);
        assert_eq!(a.len(), 24);
        assert_eq!(a, b);
        assert_ne!(a, other, "another seed gives another continuation");
        // Longer than the context: the window slides.
        assert!(3 + a.len() > c);
    }

    #[test]
    fn greedy_is_the_argmax_and_top_k_1_is_greedy() {
        let (m, c) = model();
        let dev = Default::default();
        let greedy = generate(&m, c, &[5], &opts(0.0, None, 1), &dev);
        let mut window = vec![5u32];
        for &t in &greedy {
            let logits = last_logits(&m, &window[window.len().saturating_sub(c)..], &dev);
            let best = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i as u32)
                .unwrap();
            assert_eq!(t, best);
            window.push(t);
        }
        let top1 = generate(&m, c, &[5], &opts(1.3, Some(1), 99), &dev);
        assert_eq!(top1, greedy);
    }

    #[test]
    fn top_k_only_draws_the_k_most_likely() {
        let logits = [0.0f32, 3.0, 1.0, 2.9, -1.0];
        let mut rng = Rng::new(3);
        let o = opts(5.0, Some(2), 0);
        let drawn: std::collections::HashSet<u32> =
            (0..200).map(|_| pick(&logits, &o, &mut rng)).collect();
        assert_eq!(drawn, [1, 3].into_iter().collect());
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(opts(-0.1, None, 0).validate().is_err());
        assert!(opts(f64::NAN, None, 0).validate().is_err());
        assert!(opts(1.0, Some(0), 0).validate().is_err());
        let zero = SampleOptions {
            tokens: 0,
            ..opts(1.0, None, 0)
        };
        assert!(zero.validate().unwrap_err().help.is_some());
        assert!(opts(0.0, Some(3), 0).validate().is_ok());
    }
}
