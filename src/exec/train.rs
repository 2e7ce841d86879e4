//! The training loop: runs a compiled `RunPlan` on the chosen device, with growth, evaluation,
//! metrics, checkpoints and resume.
//!
//! Invariants:
//! - the LR at global step `s` is `peak * lr_factor(schedule, s, total)`, whatever the depth:
//!   nothing restarts at a growth;
//! - a growth at `tau` happens when step `tau` starts; the checkpoint written just before it
//!   (`checkpoints/step-<tau>.safetensors`) holds the old depth, and resuming from it regrows
//!   identically (growth randomness is keyed by (run seed, tau));
//! - resume is bit-identical: model values, ParamIds, optimizer state, data cursor and step
//!   are restored exactly, and evaluation, logging and checkpointing never change the
//!   training state;
//! - metrics row `s` holds the mean training loss of the batches of the steps since the
//!   previous row, step `s` included (each before its update; with `log_every` 1, step `s`'s
//!   own), and the LR used by step `s`. Its `val_loss`, when present, is measured after step
//!   `s`'s update (every `eval_every` steps, right before a growth and at the end), except on
//!   the first row of a grown segment, where it is measured right after the growth, before the
//!   update (the growth spike);
//! - a non-finite training loss stops the run with `Diverged`; the last checkpoint written
//!   before it stays as it was.
//!
//! Output directory: `run.json` (the `RunPlan`), `metrics.jsonl`, `summary.json`, `loss.png`,
//! `loss.svg`, `checkpoints/latest.safetensors` and `checkpoints/step-<N>.safetensors` at segment boundaries.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::{
    Checkpoint, KEEP_RECENT, Timing, latest_path, prune_recent, recent_path, run_hash, step_path,
};
use super::data::{Batch, BatchCursor, Corpus, load_corpus, validation_batches, write_atomic};
use super::device::{BackendTask, DeviceChoice, dispatch};
use super::error::{ErrorKind, ExecError};
use super::grow::grow;
use super::io::lock::{DirLock, lock_dir};
use super::kernels::{Kernels, TrainBackend};
use super::metrics::{
    MetricRow, MetricsWriter, PeerThroughput, SegmentTiming, Summary, read_metrics,
};
use super::model::Gpt2;
use super::optim::Optimizer;
use super::parallel::{self, Peer, Topology, model_digest};
use super::plot::plot_losses;
use super::precision::Precision;
use super::rng::splitmix64;
use crate::plan::flops::Flops;
use crate::plan::ir::RunPlan;
use crate::plan::schedule::lr_factor;
use crate::plan::spec::{GrowthSpec, InitSpec, ModelSpec, OptStatePolicy, RunSpec};

/// How the loop trades exactness of its logs for speed; neither changes what is trained in f32.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tuning {
    /// Matmul precision (bf16 keeps f32 master weights and optimizer state).
    pub precision: Precision,
    /// Read the training loss back to the host, and write a metrics row, every this many steps
    /// (`None`: the device's default, [`default_log_every`]). Rows at evaluations, around
    /// growths and at the last step are always written.
    pub log_every: Option<u64>,
}

/// Every step on the CPU, where reading a scalar costs nothing; every 25 steps on a GPU, where
/// each read makes the host wait for the queue to drain.
pub fn default_log_every(device_name: &str) -> u64 {
    if device_name.starts_with("cuda") || device_name.starts_with("wgpu") {
        25
    } else {
        1
    }
}

pub struct RunOptions {
    pub device: DeviceChoice,
    pub out_dir: PathBuf,
    pub progress: bool,
    /// Stop cleanly once this many global steps are done (a checkpoint is written).
    pub stop_after: Option<u64>,
    /// Extra steps at which to keep a `checkpoints/step-<N>.safetensors` (where other runs of an
    /// experiment branch off this one), besides the ones before each growth.
    pub checkpoint_at: Vec<u64>,
    pub tuning: Tuning,
    /// Data parallel: train on these peers instead of `device` (see [`super::parallel`]).
    pub parallel: Option<Topology>,
}

/// Trains `plan` from scratch into `opts.out_dir`.
pub fn run(plan: &RunPlan, opts: &RunOptions) -> Result<Summary, ExecError> {
    let dir = &opts.out_dir;
    // A bad corpus, or a batch that does not split over the peers, is an error before
    // anything is written to the run directory.
    if let Some(topo) = &opts.parallel {
        topo.check_batch(plan.spec.batch.sequences)?;
    }
    let corpus = open_corpus(&plan.spec)?;
    let _lock = take_lock(dir, opts.parallel.as_ref())?;
    std::fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
    let json = serde_json::to_string_pretty(plan).map_err(|e| {
        ExecError::new(
            ErrorKind::Internal,
            format!("cannot serialize the run plan: {e}"),
        )
    })?;
    let path = dir.join("run.json");
    write_atomic(&path, json.as_bytes()).map_err(|e| ExecError::io("write", &path, e))?;
    launch(plan, corpus, dir, opts, None)
}

/// The directory's writer lock, taken by the process that writes the run: every process of
/// a single-node run, node 0 of several (the others write nothing).
pub(crate) fn take_lock(
    dir: &Path,
    parallel: Option<&Topology>,
) -> Result<Option<DirLock>, ExecError> {
    let writes = parallel.is_none_or(|t| t.nodes.as_ref().is_none_or(|n| n.rank == 0));
    if writes {
        lock_dir(dir).map(Some)
    } else {
        Ok(None)
    }
}

/// Continues the run in `dir` from `dir/checkpoints/latest.safetensors` (`opts.out_dir` is ignored).
pub fn resume(dir: &Path, opts: &RunOptions) -> Result<Summary, ExecError> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ExecError::io("read", &path, e)
            .with_help("point --resume at the output directory of an earlier `progc run`")
    })?;
    let plan: RunPlan = serde_json::from_str(&text).map_err(|e| {
        ExecError::new(
            ErrorKind::Checkpoint,
            format!("{} is damaged: {e}", path.display()),
        )
        .with_help("start the run afresh")
    })?;
    // Before the checkpoint is read: a writer still running would move it on.
    let _lock = take_lock(dir, opts.parallel.as_ref())?;
    let ck_path = latest_path(dir);
    let ck = Checkpoint::read(&ck_path)?;
    ck.check_run(&plan.spec, &ck_path)?;
    if let Some(topo) = &opts.parallel {
        topo.check_batch(plan.spec.batch.sequences)?;
    }
    let corpus = open_corpus(&plan.spec)?;
    launch(&plan, corpus, dir, opts, Some(ck))
}

/// Trains on `opts.device`, or on every peer of `opts.parallel`; the summary is the leader's,
/// with each local peer's throughput.
fn launch(
    plan: &RunPlan,
    corpus: Corpus,
    dir: &Path,
    opts: &RunOptions,
    resume: Option<Checkpoint>,
) -> Result<Summary, ExecError> {
    let Some(topo) = &opts.parallel else {
        let job = Job {
            plan,
            corpus: &corpus,
            dir,
            progress: opts.progress,
            stop_after: opts.stop_after,
            checkpoint_at: &opts.checkpoint_at,
            tuning: opts.tuning,
            resume,
            peer: None,
        };
        return dispatch(opts.device, true, job);
    };
    let shared = std::sync::Arc::new((
        plan.clone(),
        corpus,
        dir.to_path_buf(),
        opts.checkpoint_at.clone(),
        resume,
    ));
    let (progress, stop_after, tuning) = (opts.progress, opts.stop_after, opts.tuning);
    let summaries = parallel::launch(topo, move |peer| {
        let (plan, corpus, dir, checkpoint_at, resume) = &*shared;
        let job = Job {
            plan,
            corpus,
            dir,
            progress: progress && peer.leader(),
            stop_after,
            checkpoint_at,
            tuning,
            resume: resume.clone(),
            peer: Some(&peer),
        };
        dispatch(peer.device, peer.leader(), job)
    })?;
    let mut summary = summaries[0].clone();
    summary.peers = summaries.iter().flat_map(|s| s.peers.clone()).collect();
    summary.device = describe(topo);
    if topo.nodes.as_ref().is_none_or(|n| n.rank == 0) {
        summary.write(&dir.join("summary.json"))?;
    }
    Ok(summary)
}

/// `cpu x 2`, or `cuda:0, cuda:1 on each of 2 nodes`.
fn describe(topo: &Topology) -> String {
    let names: Vec<String> = topo.devices.iter().map(|d| d.to_string()).collect();
    let local = if names.iter().all(|n| *n == names[0]) && names.len() > 1 {
        format!("{} x {}", names[0], names.len())
    } else {
        names.join(", ")
    };
    match &topo.nodes {
        Some(n) => format!("{local} on each of {} nodes", n.count),
        None => local,
    }
}

/// Seed of the model init, the data order and each growth, all derived from the run seed.
fn derive_seed(seed: u64, salt: u64) -> u64 {
    let mut s = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    splitmix64(&mut s)
}
const SALT_MODEL: u64 = 1;
const SALT_DATA: u64 = 2;
/// Growth at step `tau` uses salt `SALT_GROW + tau`.
const SALT_GROW: u64 = 1 << 40;

fn segment_at(spec: &RunSpec, step: u64) -> usize {
    spec.growths.iter().filter(|g| g.at_step <= step).count()
}

/// Training FLOPs of the first `steps` steps (all conventions).
fn flops_until(spec: &RunSpec, steps: u64) -> Flops {
    let tps = spec.batch.tokens_per_step();
    let mut bounds: Vec<(u64, usize)> = vec![(0, spec.start_depth)];
    bounds.extend(spec.growths.iter().map(|g| (g.at_step, g.to_depth)));
    let mut total = Flops::default();
    for (i, &(start, depth)) in bounds.iter().enumerate() {
        let end = bounds
            .get(i + 1)
            .map_or(spec.total_steps, |b| b.0)
            .min(steps);
        if end > start {
            total = total.add(Flops::of(&spec.model, depth, (end - start) * tps));
        }
    }
    total
}

fn int_tensor<B: Backend>(xs: &[u32], shape: [usize; 2], device: &B::Device) -> Tensor<B, 2, Int> {
    let data: Vec<i32> = xs.iter().map(|&x| x as i32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn batch_tensors<B: Backend>(
    b: &Batch,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let shape = [b.sequences, b.context];
    (
        int_tensor(&b.inputs, shape, device),
        int_tensor(&b.targets, shape, device),
    )
}

/// Mean loss over the fixed validation batches, without autodiff.
fn evaluate<B: TrainBackend>(
    model: &Gpt2<B>,
    val: &[Batch],
    device: &B::Device,
    precision: Precision,
) -> f64 {
    validation_loss(&model.valid(), val, device, precision)
}

/// Mean of the per-batch losses over `val` (NaN when there is none). The training loop's
/// evaluation and `progc export`'s recorded loss both come from here, so they agree.
pub fn validation_loss<B: Kernels>(
    model: &Gpt2<B>,
    val: &[Batch],
    device: &B::Device,
    precision: Precision,
) -> f64 {
    if val.is_empty() {
        return f64::NAN;
    }
    let losses = validation_losses(model, val, device, precision);
    losses.iter().sum::<f64>() / losses.len() as f64
}

/// The mean token loss of each validation batch, in order (their mean is
/// [`validation_loss`]; their spread is the evaluation's sampling noise).
pub fn validation_losses<B: Kernels>(
    model: &Gpt2<B>,
    val: &[Batch],
    device: &B::Device,
    precision: Precision,
) -> Vec<f64> {
    val.iter()
        .map(|b| {
            let (x, y) = batch_tensors::<B>(b, device);
            model.eval_loss(x, y, precision).into_scalar().elem::<f64>()
        })
        .collect()
}

struct Job<'a> {
    plan: &'a RunPlan,
    corpus: &'a Corpus,
    dir: &'a Path,
    progress: bool,
    stop_after: Option<u64>,
    checkpoint_at: &'a [u64],
    tuning: Tuning,
    resume: Option<Checkpoint>,
    /// This thread's peer in a data-parallel run.
    peer: Option<&'a Peer>,
}

/// Everything the loop mutates.
struct State<B: TrainBackend> {
    model: Gpt2<B>,
    opt: Optimizer<B>,
    cursor: BatchCursor,
    timing: Timing,
}

impl BackendTask for Job<'_> {
    type Output = Summary;

    fn run<B: TrainBackend>(self, device: B::Device, name: &str) -> Result<Summary, ExecError> {
        let Some(peer) = self.peer else {
            return self.train::<B>(device, name);
        };
        peer.register::<B::InnerBackend>(&device)?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.train::<B>(device, name)
        }))
        .unwrap_or_else(|p| Err(super::device::panic_error(p.as_ref())));
        match &result {
            Ok(_) => peer.finish::<B::InnerBackend>()?,
            // Wake the local peers waiting on this one, with an error of their own.
            Err(_) => peer.abort::<B::InnerBackend>(),
        }
        result
    }
}

impl Job<'_> {
    fn train<B: TrainBackend>(self, device: B::Device, name: &str) -> Result<Summary, ExecError> {
        let started = Instant::now();
        if self.tuning.precision == Precision::Bf16 && name.starts_with("wgpu") {
            // cubecl's wgpu runtime compiles to WGSL, which has f16 but no bf16.
            return Err(ExecError::new(
                ErrorKind::Device,
                format!("bf16 is not supported on {name}: wgpu's shading language has no bf16"),
            )
            .with_help("use --precision f32 on wgpu (bf16 runs on CUDA)"));
        }
        let spec = &self.plan.spec;
        let corpus = self.corpus;
        let val = validation_batches(corpus, spec.batch, spec.eval_batches);
        let (mut st, start) = match self.resume {
            None => {
                let seed = derive_seed(spec.seed, SALT_MODEL);
                let st = State {
                    model: Gpt2::<B>::new(&spec.model, spec.start_depth, seed, &device),
                    opt: Optimizer::<B>::new(&spec.optimizer),
                    cursor: BatchCursor::new(derive_seed(spec.seed, SALT_DATA)),
                    timing: Timing::default(),
                };
                (st, 0)
            }
            Some(ck) => {
                let model = ck.restore_model::<B>(&spec.model, &device)?;
                let opt = Optimizer::<B>::load(&spec.optimizer, ck.optimizer, &device)?;
                (
                    State {
                        model,
                        opt,
                        cursor: ck.cursor,
                        timing: ck.timing,
                    },
                    ck.step,
                )
            }
        };
        // In a data-parallel run only the leader evaluates and writes; every collective call
        // below runs on all peers under the same conditions.
        let peer = self.peer;
        let leader = peer.is_none_or(Peer::leader);
        let run_id = u64::from_str_radix(&run_hash(spec), 16).unwrap_or(0);
        if let Some(p) = peer {
            p.agree::<B::InnerBackend>("at the start", run_id, model_digest(&st.model), &device)?;
        }
        let metrics_path = self.dir.join("metrics.jsonl");
        let mut metrics = match (leader, start) {
            (false, _) => None,
            (true, 0) => Some(MetricsWriter::create(&metrics_path, &spec.growths)?),
            (true, _) => Some(MetricsWriter::resume(&metrics_path, start, &spec.growths)?),
        };
        let train_s0 = st.timing.train_s;
        let mut timed_steps = 0u64; // steps of this session outside warm-up
        let total = spec.total_steps;
        let end = self.stop_after.map_or(total, |k| k.clamp(start, total));
        let bar = if self.progress {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} ETA {eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_position(start);
            bar
        } else {
            ProgressBar::hidden()
        };
        let wall0 = st.timing.wall_s;
        let mut groups = st.model.param_groups();
        let mut fresh_build = true; // the next step is the first of a (re)built model: warm-up
        let tps = spec.batch.tokens_per_step();
        let mut since_log = (0u64, 0.0f64); // steps and seconds since the last logged row
        let precision = self.tuning.precision;
        let log_every = self
            .tuning
            .log_every
            .unwrap_or_else(|| default_log_every(name))
            .max(1);
        // Training losses since the last row, summed on the device (read only at a row).
        let mut window: Option<(Tensor<B::InnerBackend, 1>, u64)> = None;
        let mut seg_clock = Instant::now();
        let mut stopped_at = None;
        let clock_bound = spec.checkpoint_clock();
        let mut last_checkpoint = Instant::now();

        for s in start..end {
            let segment = segment_at(spec, s);
            let mut post_growth_val = None;
            if let Some(g) = spec.growths.iter().find(|g| g.at_step == s) {
                let t0 = Instant::now();
                let seed = derive_seed(spec.seed, SALT_GROW + s);
                st.model = grow_with_policy(st.model, &mut st.opt, g, &spec.model, seed, &device)?;
                groups = st.model.param_groups();
                fresh_build = true;
                if let Some(p) = peer {
                    let when = format!("after the growth at step {s}");
                    p.agree::<B::InnerBackend>(&when, run_id, model_digest(&st.model), &device)?;
                }
                let v = if leader {
                    evaluate(&st.model, &val, &device, precision)
                } else {
                    f64::NAN
                };
                post_growth_val = Some(v);
                bar.println(format!(
                    "step {s}: grew depth {} -> {} ({:?}), val loss {v:.4}",
                    g.from_depth, g.to_depth, g.init
                ));
                st.timing.warmup_s += t0.elapsed().as_secs_f64();
            }
            if st.timing.segments.last().map(|t| t.index) != Some(segment) {
                st.timing.segments.push(SegmentTiming {
                    index: segment,
                    depth: st.model.depth(),
                    start_step: s,
                    end_step: s,
                    wall_s: 0.0,
                });
                seg_clock = Instant::now();
            }

            // One optimizer step.
            let t0 = Instant::now();
            let lr = spec.optimizer.peak_lr() * lr_factor(&spec.schedule, s, total);
            let batch = st.cursor.next_train(&corpus, spec.batch);
            let batch = match peer {
                Some(p) => p.share(batch),
                None => batch,
            };
            let (x, y) = batch_tensors::<B>(&batch, &device);
            let out = st.model.train_loss(x, y, precision);
            let last = s + 1 == total;
            // A stop signal ends the run after this step, with a metrics row and a checkpoint
            // for it. Data-parallel peers agree on the step through the loss all-reduce of the
            // next logged step, so they all stop after the same one (see `stop.rs`).
            let local_stop = super::stop::requested().is_some();
            let growth_next = spec.growths.iter().any(|g| g.at_step == s + 1);
            let need_eval =
                (spec.eval_every > 0 && (s + 1) % spec.eval_every == 0) || last || growth_next;
            let log = (s + 1) % log_every == 0
                || need_eval
                || post_growth_val.is_some()
                || s + 1 == end
                || (peer.is_none() && local_stop);
            window = Some(match window.take() {
                Some((sum, k)) => (sum + out.loss, k + 1),
                None => (out.loss, 1),
            });
            let grads = GradientsParams::from_grads(out.surrogate.backward(), &st.model);
            let grads = match peer {
                Some(p) => p.mean_grads::<B>(grads, &st.model)?,
                None => grads,
            };
            let (model, _) = st.opt.step_deferred(st.model, grads, lr, &groups);
            // Read only now, with the whole step queued, so the device is never left idle
            // waiting for the host between the forward and the backward pass.
            let (train_loss, signalled) = match window.take() {
                Some((sum, k)) if log => {
                    let (sum, stop) = match peer {
                        Some(p) => p.mean_and_any(sum, local_stop)?,
                        None => (sum.into_scalar().elem::<f64>(), local_stop),
                    };
                    (Some(sum / k as f64), stop)
                }
                kept => {
                    window = kept;
                    (None, false)
                }
            };
            st.model = model;
            let dt = t0.elapsed().as_secs_f64();
            if fresh_build {
                st.timing.warmup_s += dt;
                fresh_build = false;
            } else {
                st.timing.train_s += dt;
                timed_steps += 1;
                since_log.0 += 1;
                since_log.1 += dt;
            }

            if let Some(tl) = train_loss {
                let val_loss = match post_growth_val {
                    Some(v) => Some(v),
                    None if need_eval && leader => {
                        Some(evaluate(&st.model, &val, &device, precision))
                    }
                    None => None,
                };
                let wall = wall0 + started.elapsed().as_secs_f64();
                let tok_per_s = if since_log.1 > 0.0 {
                    (since_log.0 * tps) as f64 / since_log.1
                } else {
                    f64::NAN
                };
                since_log = (0, 0.0);
                let row = MetricRow {
                    step: s,
                    tokens: (s + 1) * tps,
                    flops: flops_until(spec, s + 1).exact,
                    train_loss: tl,
                    val_loss,
                    lr,
                    depth: st.model.depth(),
                    segment,
                    tok_per_s,
                    wall_s: wall,
                };
                if let Some(m) = &mut metrics {
                    m.write(&row)?;
                }
                st.timing.last_train_loss = Some(tl);
                if val_loss.is_some() {
                    st.timing.last_val_loss = val_loss;
                }
                if !tl.is_finite() {
                    bar.abandon();
                    return Err(diverged(
                        s,
                        segment,
                        st.model.depth(),
                        tl,
                        log_every,
                        self.dir,
                    ));
                }
                bar.set_message(format!(
                    "seg {segment} depth {} loss {tl:.4} lr {lr:.2e} {tok_per_s:.0} tok/s",
                    st.model.depth()
                ));
            }
            bar.set_position(s + 1);
            if let Some(p) = peer {
                p.beat();
            }
            if let Some(t) = st.timing.segments.last_mut() {
                t.end_step = s + 1;
                t.wall_s += seg_clock.elapsed().as_secs_f64();
                seg_clock = Instant::now();
            }

            // Checkpoints: before a growth (kept), periodically (every N steps, or when the
            // clock bound has passed since the last one), at the end and at a stop.
            let on_clock = clock_bound.is_some_and(|b| last_checkpoint.elapsed() >= b);
            let periodic =
                on_clock || (spec.checkpoint_every > 0 && (s + 1) % spec.checkpoint_every == 0);
            let keep = growth_next || self.checkpoint_at.contains(&(s + 1));
            if leader && (keep || periodic || last || s + 1 == end || signalled) {
                last_checkpoint = Instant::now();
                st.timing.wall_s = wall0 + started.elapsed().as_secs_f64();
                let ck = Checkpoint::capture(
                    spec,
                    s + 1,
                    segment,
                    &st.model,
                    st.opt.save(),
                    st.cursor.clone(),
                    st.timing.clone(),
                );
                ck.write(&latest_path(self.dir))?;
                if keep {
                    ck.write(&step_path(self.dir, s + 1))?;
                }
                if periodic {
                    ck.write(&recent_path(self.dir, s + 1))?;
                    prune_recent(self.dir, KEEP_RECENT);
                }
            }
            if signalled {
                stopped_at = Some(s + 1);
                break;
            }
        }
        let end = stopped_at.unwrap_or(end);
        bar.finish_and_clear();
        if let Some(p) = peer {
            // Identical averaged gradients must have kept the replicas identical.
            p.agree::<B::InnerBackend>("at the end", run_id, model_digest(&st.model), &device)?;
        }

        st.timing.wall_s = wall0 + started.elapsed().as_secs_f64();
        let flops = flops_until(spec, end);
        let fixed = Flops::of(&spec.model, spec.model.depth, end * tps);
        let summary = Summary {
            run: spec.name.clone(),
            device: name.to_string(),
            precision,
            final_train_loss: st.timing.last_train_loss.unwrap_or(f64::NAN),
            final_val_loss: st.timing.last_val_loss.unwrap_or(f64::NAN),
            total_steps: end,
            total_tokens: end * tps,
            flops,
            fixed_flops: fixed,
            ratio: flops.ratio(fixed),
            growth_steps: spec.growths.iter().map(|g| g.at_step).collect(),
            wall_s: st.timing.wall_s,
            warmup_s: st.timing.warmup_s,
            train_s: st.timing.train_s,
            segments: st.timing.segments.clone(),
            peers: peer.map_or_else(Vec::new, |p| {
                let tokens = (timed_steps * tps) as f64 / p.world as f64;
                vec![PeerThroughput {
                    rank: p.rank,
                    device: name.to_string(),
                    tok_per_s: tokens / (st.timing.train_s - train_s0),
                }]
            }),
        };
        if !leader {
            return Ok(summary);
        }
        // A data-parallel summary is written by `launch`, with every peer's throughput.
        if peer.is_none() {
            summary.write(&self.dir.join("summary.json"))?;
        }
        let rows = read_metrics(&metrics_path)?;
        let title = format!("{} ({} steps)", spec.name, total);
        if let Err(e) = plot_losses(
            &rows,
            &summary.growth_steps,
            &title,
            &self.dir.join("loss.png"),
            &self.dir.join("loss.svg"),
        ) {
            eprintln!("warning: no loss plot: {e}");
        }
        Ok(summary)
    }
}

/// Grows `model` by `g` and applies `g`'s optimizer-state policy: `Keep` keeps the moments of
/// surviving parameters, `Reset` clears all, `Copy` gives every extra copy its source's moments
/// (for non-copy inits `Copy` acts as `Keep`). State of ids no longer in the model is dropped.
pub fn grow_with_policy<B: TrainBackend>(
    model: Gpt2<B>,
    opt: &mut Optimizer<B>,
    g: &GrowthSpec,
    spec: &ModelSpec,
    seed: u64,
    device: &B::Device,
) -> Result<Gpt2<B>, ExecError> {
    let grown = grow(model, g, spec, seed, device)?;
    match g.optimizer_state {
        OptStatePolicy::Reset => opt.reset(),
        OptStatePolicy::Copy if matches!(g.init, InitSpec::Copy { .. }) => {
            opt.copy_state(&grown.copied_from)
        }
        OptStatePolicy::Keep | OptStatePolicy::Copy => {}
    }
    let ids: HashSet<_> = grown.model.param_ids().into_iter().collect();
    opt.retain(&ids);
    Ok(grown.model)
}

/// Loads the run's corpus and checks that it fits the batch and the model's vocabulary.
pub(crate) fn open_corpus(spec: &RunSpec) -> Result<Corpus, ExecError> {
    let corpus = load_corpus(&spec.data)?;
    check_corpus(&corpus, spec)?;
    Ok(corpus)
}

fn check_corpus(corpus: &Corpus, spec: &RunSpec) -> Result<(), ExecError> {
    corpus.check_fits(spec.batch)?;
    if corpus.vocab > spec.model.vocab {
        return Err(ExecError::new(
            ErrorKind::Data,
            format!(
                "the corpus uses {} token ids but the model's vocabulary has {}",
                corpus.vocab, spec.model.vocab
            ),
        )
        .with_help("the model's vocab must be the tokenizer's; recompile the recipe"));
    }
    Ok(())
}

fn diverged(
    step: u64,
    segment: usize,
    depth: usize,
    loss: f64,
    log_every: u64,
    dir: &Path,
) -> ExecError {
    let when = if log_every > 1 {
        format!("by step {step} (the loss is read every {log_every} steps)")
    } else {
        format!("at step {step}")
    };
    ExecError::new(
        ErrorKind::Diverged,
        format!("training diverged {when} (segment {segment}, depth {depth}): loss is {loss}"),
    )
    .with_help(format!(
        "lower the peak learning rate or add gradient clipping; the last good checkpoint is {}",
        latest_path(dir).display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::model::param_to_vec;
    use crate::exec::model::tests::{TB, toks};
    use crate::plan::spec::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("progc-train-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A small text with more than bigram structure (repeated words in shuffled sentences).
    fn write_corpus(dir: &Path) -> String {
        let words = [
            "the", "model", "grows", "deep", "after", "training", "a", "shallow", "net",
        ];
        let mut state = 7u64;
        let mut text = String::new();
        while text.len() < 6000 {
            let n = 3 + (splitmix64(&mut state) % 6) as usize;
            for i in 0..n {
                let w = words[(splitmix64(&mut state) % words.len() as u64) as usize];
                text.push_str(if i == 0 { "" } else { " " });
                text.push_str(w);
            }
            text.push_str(".\n");
        }
        let path = dir.join("corpus.txt");
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn spec(corpus: String, total: u64, start: usize, growths: Vec<GrowthSpec>) -> RunSpec {
        let depth = growths.last().map_or(start, |g| g.to_depth);
        RunSpec {
            name: "tiny".into(),
            model: ModelSpec {
                name: "tiny".into(),
                width: 32,
                heads: 2,
                depth,
                context: 16,
                vocab: 256,
                mlp_ratio: 4,
                init_std: 0.02,
                residual: ResidualScaling::None,
            },
            data: DataSpec {
                name: "c".into(),
                path: corpus.clone(),
                resolved_path: corpus,
                tokenizer: Tokenizer::Bytes,
                val_fraction: 0.1,
                val_blocks: 1,
                format: DataFormat::Text,
                shards: vec![],
                val_shards: vec![],
            },
            batch: BatchSpec {
                sequences: 4,
                context: 16,
            },
            total_steps: total,
            optimizer: OptimizerSpec::Adamw(AdamWSpec {
                clip: Some(1.0),
                ..AdamWSpec::with_lr(3e-3)
            }),
            schedule: ScheduleSpec::Wsd {
                warmup_steps: 3,
                decay_steps: total / 5,
                shape: DecayShape::Linear,
                floor: 0.0,
            },
            seed: 11,
            start_depth: start,
            growths,
            eval_every: 5,
            eval_batches: 2,
            checkpoint_every: 7,
            checkpoint_clock_s: None,
        }
    }

    fn growth(at: u64, from: usize, to: usize, init: InitSpec, pol: OptStatePolicy) -> GrowthSpec {
        GrowthSpec {
            at_step: at,
            from_depth: from,
            to_depth: to,
            init,
            placement: Placement::Top,
            optimizer_state: pol,
        }
    }

    /// A RunPlan around `spec` (`plan::compile` is another module's job; the loop only needs
    /// the spec).
    fn plan(spec: RunSpec) -> RunPlan {
        let flops = flops_until(&spec, spec.total_steps);
        let fixed = Flops::of(&spec.model, spec.model.depth, spec.total_steps * 64);
        RunPlan {
            spec,
            segments: vec![],
            nodes: vec![],
            flops,
            fixed_flops: fixed,
            ratio: flops.ratio(fixed),
            replica: None,
        }
    }

    fn opts(dir: &Path, stop_after: Option<u64>) -> RunOptions {
        RunOptions {
            device: DeviceChoice::Cpu,
            out_dir: dir.to_path_buf(),
            progress: false,
            stop_after,
            checkpoint_at: Vec::new(),
            tuning: Tuning::default(),
            parallel: None,
        }
    }

    fn final_params(dir: &Path) -> Vec<(String, Vec<f32>)> {
        let ck = Checkpoint::read(&latest_path(dir)).unwrap();
        ck.params.into_iter().map(|p| (p.name, p.data)).collect()
    }

    #[test]
    fn lr_is_a_function_of_the_global_step_across_growth() {
        let dir = temp("lr");
        let g = growth(
            8,
            0,
            2,
            InitSpec::Random { std: 0.02 },
            OptStatePolicy::Keep,
        );
        let sp = spec(write_corpus(&dir), 12, 0, vec![g]);
        let summary = run(&plan(sp.clone()), &opts(&dir.join("out"), None)).unwrap();
        assert_eq!(summary.total_steps, 12);
        assert_eq!(summary.growth_steps, vec![8]);
        let rows = read_metrics(&dir.join("out/metrics.jsonl")).unwrap();
        assert_eq!(rows.len(), 12);
        for r in &rows {
            let want = 3e-3 * lr_factor(&sp.schedule, r.step, 12);
            assert_eq!(r.lr, want, "step {}", r.step);
            assert_eq!(r.depth, if r.step < 8 { 0 } else { 2 });
            assert_eq!(r.segment, usize::from(r.step >= 8));
        }
        // tau - 1 and tau use consecutive schedule values: no restart, no re-warmup.
        assert_eq!(rows[7].lr, 3e-3 * lr_factor(&sp.schedule, 7, 12));
        assert_eq!(rows[8].lr, 3e-3 * lr_factor(&sp.schedule, 8, 12));
        assert_eq!(rows[8].lr, 3e-3, "stable phase");
        // Evaluated right before and right after the growth, and at the end.
        assert!(rows[7].val_loss.is_some() && rows[8].val_loss.is_some());
        assert!(rows[11].val_loss.is_some());
        for f in [
            "run.json",
            "summary.json",
            "loss.png",
            "loss.svg",
            "checkpoints/step-8.safetensors",
        ] {
            assert!(dir.join("out").join(f).exists(), "{f}");
        }
        let ck = Checkpoint::read(&dir.join("out/checkpoints/step-8.safetensors")).unwrap();
        assert_eq!((ck.step, ck.depth, ck.segment), (8, 0, 0));
    }

    #[test]
    fn stop_and_resume_is_bit_identical() {
        let dir = temp("resume");
        let g = growth(
            15,
            1,
            3,
            InitSpec::Copy {
                layout: CopyLayout::Stack,
            },
            OptStatePolicy::Copy,
        );
        let p = plan(spec(write_corpus(&dir), 30, 1, vec![g]));
        let a = run(&p, &opts(&dir.join("a"), None)).unwrap();
        // Stop exactly at the growth boundary, resume, stop mid-segment, resume to the end.
        let b = dir.join("b");
        let s1 = run(&p, &opts(&b, Some(15))).unwrap();
        assert_eq!(s1.total_steps, 15);
        assert_eq!(Checkpoint::read(&latest_path(&b)).unwrap().depth, 1);
        let s2 = resume(&b, &opts(&b, Some(22))).unwrap();
        assert_eq!(s2.total_steps, 22);
        let s3 = resume(&b, &opts(&b, None)).unwrap();
        assert_eq!(s3.total_steps, 30);
        assert_eq!(a.final_train_loss.to_bits(), s3.final_train_loss.to_bits());
        assert_eq!(a.final_val_loss.to_bits(), s3.final_val_loss.to_bits());
        assert_eq!(final_params(&dir.join("a")), final_params(&b));
        let ra = read_metrics(&dir.join("a/metrics.jsonl")).unwrap();
        let rb = read_metrics(&b.join("metrics.jsonl")).unwrap();
        let losses = |r: &[MetricRow]| {
            r.iter()
                .map(|x| (x.step, x.train_loss.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(losses(&ra), losses(&rb));
        assert!(a.final_val_loss.is_finite());
    }

    #[test]
    fn training_on_emma_lowers_the_validation_loss() {
        let dir = temp("emma");
        let emma = format!("{}/data/emma.txt", env!("CARGO_MANIFEST_DIR"));
        let mut sp = spec(emma, 40, 1, vec![]);
        sp.eval_every = 10;
        sp.batch.sequences = 8;
        sp.optimizer = OptimizerSpec::Adamw(AdamWSpec {
            weight_decay: 0.0,
            ..AdamWSpec::with_lr(3e-3)
        });
        let summary = run(&plan(sp), &opts(&dir, None)).unwrap();
        let rows = read_metrics(&dir.join("metrics.jsonl")).unwrap();
        let vals: Vec<f64> = rows.iter().filter_map(|r| r.val_loss).collect();
        assert_eq!(vals.len(), 4, "{vals:?}");
        let uniform = (256f64).ln();
        assert!(vals[0] < uniform, "{vals:?}");
        assert!(summary.final_val_loss < vals[0] - 0.2, "{vals:?}");
        assert!(summary.final_val_loss < uniform - 1.0, "{vals:?}");
    }

    #[test]
    fn divergence_is_an_error_naming_the_step() {
        let dir = temp("nan");
        let mut sp = spec(write_corpus(&dir), 10, 1, vec![]);
        sp.schedule = ScheduleSpec::Constant { warmup_steps: 0 };
        sp.optimizer = OptimizerSpec::Adamw(AdamWSpec {
            weight_decay: 0.0,
            ..AdamWSpec::with_lr(f64::INFINITY)
        });
        let e = run(&plan(sp), &opts(&dir, None)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Diverged, "{e}");
        assert!(e.message.contains("step 1 (segment 0, depth 1)"), "{e}");
    }

    /// A model with optimizer state after two steps on fixed tokens.
    fn trained(depth: usize) -> (Gpt2<TB>, Optimizer<TB>, ModelSpec) {
        let mut ms = spec(String::new(), 10, depth, vec![]).model;
        ms.vocab = 64;
        let sp = spec(String::new(), 10, depth, vec![]);
        let mut model = Gpt2::<TB>::new(&ms, depth, 3, &Default::default());
        let mut opt = Optimizer::<TB>::new(&sp.optimizer);
        for k in 0..2i64 {
            let x = toks(&[(0..16).map(|i| (i * 3 + k) % 64).collect()]);
            let y = toks(&[(0..16).map(|i| (i * 3 + k + 1) % 64).collect()]);
            let grads = GradientsParams::from_grads(model.loss(x, y).backward(), &model);
            let groups = model.param_groups();
            model = opt.step(model, grads, 1e-2, &groups).0;
        }
        (model, opt, ms)
    }

    #[test]
    fn growth_policies_keep_reset_or_copy_optimizer_state() {
        let dev = Default::default();
        let init = InitSpec::Copy {
            layout: CopyLayout::Stack,
        };
        for pol in [
            OptStatePolicy::Keep,
            OptStatePolicy::Reset,
            OptStatePolicy::Copy,
        ] {
            let (model, mut opt, ms) = trained(1);
            let old: Vec<_> = model
                .named_params()
                .iter()
                .map(|(n, p)| (n.clone(), p.id, param_to_vec(p)))
                .collect();
            let src = model.block_param_ids()[0].clone();
            let before: Vec<_> = src.iter().map(|id| opt.state_of(*id).unwrap()).collect();
            let g = growth(2, 1, 3, init, pol);
            let m = grow_with_policy(model, &mut opt, &g, &ms, 5, &dev).unwrap();
            let ids = m.block_param_ids();
            // Old parameters keep values and ids.
            let now: Vec<_> = m
                .named_params()
                .iter()
                .map(|(n, p)| (n.clone(), p.id, param_to_vec(p)))
                .collect();
            for o in &old {
                assert!(now.contains(o), "{} changed", o.0);
            }
            assert_eq!(ids[0], src);
            for (k, id) in src.iter().enumerate() {
                let st = opt.state_of(*id);
                match pol {
                    OptStatePolicy::Reset => assert!(st.is_none()),
                    _ => assert_eq!(st.as_ref(), Some(&before[k]), "{pol:?}"),
                }
                for copy in [&ids[1], &ids[2]] {
                    let st = opt.state_of(copy[k]);
                    match pol {
                        OptStatePolicy::Copy => assert_eq!(st.as_ref(), Some(&before[k])),
                        _ => assert!(st.is_none(), "{pol:?}"),
                    }
                }
            }
            if pol == OptStatePolicy::Keep {
                assert!(opt.state_of(m.wte.id).is_some());
            }
        }
    }

    #[test]
    fn copied_blocks_train_independently() {
        let dev = Default::default();
        let (model, mut opt, ms) = trained(1);
        let g = growth(
            2,
            1,
            2,
            InitSpec::Copy {
                layout: CopyLayout::Stack,
            },
            OptStatePolicy::Copy,
        );
        let m = grow_with_policy(model, &mut opt, &g, &ms, 5, &dev).unwrap();
        let vals = |m: &Gpt2<TB>, b: usize| -> Vec<Vec<f32>> {
            m.blocks[b]
                .params()
                .iter()
                .map(|p| param_to_vec(p))
                .collect()
        };
        assert_eq!(vals(&m, 0), vals(&m, 1));
        let x = toks(&[(0..16).map(|i| (i * 5) % 64).collect()]);
        let y = toks(&[(0..16).map(|i| (i * 5 + 1) % 64).collect()]);
        let grads = GradientsParams::from_grads(m.loss(x, y).backward(), &m);
        let groups = m.param_groups();
        let m = opt.step(m, grads, 1e-2, &groups).0;
        let (a, b) = (vals(&m, 0), vals(&m, 1));
        // Every weight matrix of the copy moved differently from its source.
        for k in [2, 4, 8, 10] {
            assert_ne!(a[k], b[k], "param {k}");
        }
    }
}
