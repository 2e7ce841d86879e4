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
//! `loss.svg`, `checkpoints/latest.safetensors` and `checkpoints/step-<N>.safetensors` at segment
//! boundaries, and `tokenizer.json` for a run whose tokenizer is one (a file, or `bpe(N)`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use crate::exec::device::parallel::{self, Peer, Topology};
use crate::exec::device::{BackendTask, Bf16, DeviceChoice, Placed, dispatch, place};
use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::checkpoint::{Checkpoint, Timing, latest_path, run_hash};
use crate::exec::io::data::{Batch, BatchCursor, Corpus, load_corpus, validation_batches};
use crate::exec::io::lock::{DirLock, lock_dir};
use crate::exec::io::metrics::{MetricRow, Summary, read_metrics};
use crate::exec::io::plot::plot_losses;
use crate::exec::io::run_dir::RunDir;
use crate::exec::network::grow::{grow_with_policy, param_rules};
use crate::exec::network::kernels::{Kernels, TrainBackend};
use crate::exec::network::model::Gpt2;
use crate::exec::network::optim::Optimizer;
use crate::exec::network::precision::Precision;
use crate::exec::network::rng::splitmix64;
use crate::plan::ir::RunPlan;
use crate::plan::schedule::lr_factor;
use crate::plan::spec::RunSpec;

mod checkpoints;
mod observe;
mod replicas;

use checkpoints::CheckpointPolicy;
use observe::{Cadence, Clock, Observer};
use replicas::{Replicas, Solo};

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
pub fn default_log_every(on: Placed) -> u64 {
    if on.is_gpu() { 25 } else { 1 }
}

/// How to run a plan: the one options type of `progc run`, for a single run and for an
/// experiment (whose `out_dir` is the experiment's folder).
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub device: DeviceChoice,
    pub out_dir: PathBuf,
    pub progress: bool,
    /// Stop cleanly once this many global steps are done (a checkpoint is written).
    pub stop_after: Option<u64>,
    /// Extra steps at which to keep a `checkpoints/step-<N>.safetensors` (where other runs of an
    /// experiment branch off this one), besides the ones before each growth. An experiment
    /// sets it for each of its runs.
    pub checkpoint_at: Vec<u64>,
    pub tuning: Tuning,
    /// Data parallel: train on these peers instead of `device` (see [`crate::exec::device::parallel`]).
    pub parallel: Option<Topology>,
}

/// Trains `plan` from scratch into `opts.out_dir` ([`prepare`], then [`Start::run`]).
pub fn run(plan: &RunPlan, opts: &RunOptions) -> Result<Summary, ExecError> {
    prepare(plan, opts)?.run(opts)
}

/// A run whose start has been checked: everything that can fail before training (the peers'
/// batch split, the corpus, the device) has passed, and nothing is written yet.
pub struct Start<'a> {
    plan: &'a RunPlan,
    corpus: Corpus,
}

/// Checks what a run needs before its directory is claimed, so a failed start leaves nothing
/// behind.
pub fn prepare<'a>(plan: &'a RunPlan, opts: &RunOptions) -> Result<Start<'a>, ExecError> {
    if let Some(topo) = &opts.parallel {
        topo.check_batch(plan.spec.batch.sequences)?;
    }
    let corpus = open_corpus(&plan.spec, opts.progress)?;
    match &opts.parallel {
        Some(topo) => topo
            .devices
            .iter()
            .try_for_each(|d| place(*d).map(|_| ()))?,
        None => place(opts.device).map(|_| ())?,
    }
    Ok(Start { plan, corpus })
}

impl Start<'_> {
    /// Claims `opts.out_dir` (refused when it holds a run already, see [`RunDir::claim`]) and
    /// trains.
    pub fn run(self, opts: &RunOptions) -> Result<Summary, ExecError> {
        let dir = RunDir::new(&opts.out_dir);
        let _lock = dir.claim(self.plan, writes(opts.parallel.as_ref()))?;
        keep_tokenizer(&dir, &self.corpus)?;
        launch(self.plan, self.corpus, opts, None)
    }
}

/// Whether this process writes the run: every process of a single-node run, node 0 of
/// several (the others write nothing).
fn writes(parallel: Option<&Topology>) -> bool {
    parallel.is_none_or(|t| t.nodes.as_ref().is_none_or(|n| n.rank == 0))
}

/// The directory's writer lock, taken by the process that writes the run (see [`writes`]).
pub(crate) fn take_lock(
    dir: &Path,
    parallel: Option<&Topology>,
) -> Result<Option<DirLock>, ExecError> {
    if writes(parallel) {
        lock_dir(dir).map(Some)
    } else {
        Ok(None)
    }
}

/// Continues the run in `dir` from its latest checkpoint (`opts.out_dir` is ignored).
pub fn resume(dir: &Path, opts: &RunOptions) -> Result<Summary, ExecError> {
    let opts = &RunOptions {
        out_dir: dir.to_path_buf(),
        ..opts.clone()
    };
    let plan = RunDir::new(dir).read_plan().map_err(|e| {
        e.with_help("point --resume at the output directory of an earlier `progc run`")
    })?;
    // Before the checkpoint is read: a writer still running would move it on.
    let _lock = take_lock(dir, opts.parallel.as_ref())?;
    let ck_path = latest_path(dir);
    let ck = Checkpoint::read(&ck_path)?;
    ck.check_run(&plan.spec, &ck_path)?;
    if let Some(topo) = &opts.parallel {
        topo.check_batch(plan.spec.batch.sequences)?;
    }
    let corpus = open_corpus(&plan.spec, opts.progress)?;
    keep_tokenizer(&RunDir::new(dir), &corpus)?;
    launch(&plan, corpus, opts, Some(ck))
}

/// Writes the corpus's tokenizer.json into the run directory (`sample` and `export` read it
/// there, whatever happens to the cache or the file the recipe names); a copy already there
/// must be the same tokenizer, or the run would continue on other tokens.
fn keep_tokenizer(dir: &RunDir, corpus: &Corpus) -> Result<(), ExecError> {
    match &corpus.tokenizer {
        Some(t) => dir.keep_tokenizer(t.json(), &corpus.source),
        None => Ok(()),
    }
}

/// Trains on `opts.device`, or on every peer of `opts.parallel`; the summary is the leader's,
/// with each local peer's throughput.
fn launch(
    plan: &RunPlan,
    corpus: Corpus,
    opts: &RunOptions,
    resume: Option<Checkpoint>,
) -> Result<Summary, ExecError> {
    let dir = &opts.out_dir;
    let Some(topo) = &opts.parallel else {
        let job = Job {
            plan,
            corpus: &corpus,
            opts,
            resume,
            peer: None,
        };
        return dispatch(opts.device, true, job);
    };
    let shared = std::sync::Arc::new((plan.clone(), corpus, opts.clone(), resume));
    let summaries = parallel::launch(topo, move |peer| {
        let (plan, corpus, opts, resume) = &*shared;
        let job = Job {
            plan,
            corpus,
            opts,
            resume: resume.clone(),
            peer: Some(&peer),
        };
        dispatch(peer.device, peer.leader(), job)
    })?;
    let mut summary = summaries[0].clone();
    summary.peers = summaries.iter().flat_map(|s| s.peers.clone()).collect();
    summary.device = describe(topo);
    if writes(Some(topo)) {
        RunDir::new(dir).write_summary(&summary)?;
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

/// One run on one device: what a backend's thread trains.
struct Job<'a> {
    plan: &'a RunPlan,
    corpus: &'a Corpus,
    opts: &'a RunOptions,
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

impl<B: TrainBackend> State<B> {
    /// A fresh model at the start depth, or the checkpoint's state; and the first step.
    fn begin(
        spec: &RunSpec,
        resume: Option<Checkpoint>,
        device: &B::Device,
    ) -> Result<(State<B>, u64), ExecError> {
        Ok(match resume {
            None => {
                let seed = derive_seed(spec.seed, SALT_MODEL);
                let st = State {
                    model: Gpt2::<B>::new(&spec.model, spec.start_depth, seed, device),
                    opt: Optimizer::<B>::new(&spec.optimizer),
                    cursor: BatchCursor::new(derive_seed(spec.seed, SALT_DATA)),
                    timing: Timing::default(),
                };
                (st, 0)
            }
            Some(ck) => {
                let model = ck.restore_model::<B>(&spec.model, device)?;
                let opt = Optimizer::<B>::load(&spec.optimizer, ck.optimizer, device)?;
                let st = State {
                    model,
                    opt,
                    cursor: ck.cursor,
                    timing: ck.timing,
                };
                (st, ck.step)
            }
        })
    }

    fn checkpoint(&self, spec: &RunSpec, done: u64, segment: usize) -> Checkpoint {
        Checkpoint::capture(
            spec,
            done,
            segment,
            &self.model,
            self.opt.save(),
            self.cursor.clone(),
            self.timing.clone(),
        )
    }
}

/// Training losses since the last metrics row, summed on the device: read back only when a
/// row is written, so the host never waits for the device in between.
struct LossWindow<B: TrainBackend>(Option<(Tensor<B::InnerBackend, 1>, u64)>);

impl BackendTask for Job<'_> {
    type Output = Summary;

    fn run<B: TrainBackend>(self, device: B::Device, on: Placed) -> Result<Summary, ExecError> {
        let Some(peer) = self.peer else {
            return self.train::<B, _>(&Solo, device, on);
        };
        peer.register::<B::InnerBackend>(&device)?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.train::<B, _>(peer, device, on)
        }))
        .unwrap_or_else(|p| Err(crate::exec::device::panic_error(p.as_ref())));
        match &result {
            Ok(_) => peer.finish::<B::InnerBackend>()?,
            // Wake the local peers waiting on this one, with an error of their own.
            Err(_) => peer.abort::<B::InnerBackend>(),
        }
        result
    }
}

impl Job<'_> {
    /// The training loop. For each step: grow if the plan says so, take one optimizer step,
    /// observe it, maybe checkpoint.
    fn train<B: TrainBackend, R: Replicas>(
        self,
        replicas: &R,
        device: B::Device,
        on: Placed,
    ) -> Result<Summary, ExecError> {
        let name = &on.to_string();
        let (plan, opts) = (self.plan, self.opts);
        let dir = opts.out_dir.as_path();
        let (precision, precision_note) = run_precision(opts.tuning.precision, on)?;
        let spec = &plan.spec;
        let val = validation_batches(self.corpus, spec.batch, spec.eval_batches);
        let (mut st, start) = State::<B>::begin(spec, self.resume, &device)?;
        let leader = replicas.leader();
        let run_id = u64::from_str_radix(&run_hash(spec), 16).unwrap_or(0);
        replicas.agree("at the start", run_id, &st.model, &device)?;

        let total = spec.total_steps;
        let end = opts.stop_after.map_or(total, |k| k.clamp(start, total));
        let tps = spec.batch.tokens_per_step();
        let log_every = opts
            .tuning
            .log_every
            .unwrap_or_else(|| default_log_every(on))
            .max(1);
        let metrics_path = RunDir::new(dir).metrics_file();
        let mut observer = Observer::open(
            &metrics_path,
            &spec.growths,
            leader,
            start,
            total,
            opts.progress && leader,
        )?;
        let cadence = Cadence {
            plan,
            log_every,
            end,
        };
        let mut clock = Clock::start(&st.timing);
        let mut checkpoints = CheckpointPolicy::new(dir, plan, &opts.checkpoint_at);
        let mut rules = param_rules(&st.model, spec);
        let mut window = LossWindow::<B>(None);
        let mut stopped_at = None;

        for s in start..end {
            // Grow, if the plan says so, and measure the spike right after.
            let mut spike = None;
            if let Some(g) = plan.growth_at(s) {
                let t0 = Instant::now();
                let seed = derive_seed(spec.seed, SALT_GROW + s);
                st.model = grow_with_policy(st.model, &mut st.opt, g, &spec.model, seed, &device)?;
                rules = param_rules(&st.model, spec);
                replicas.agree(
                    &format!("after the growth at step {s}"),
                    run_id,
                    &st.model,
                    &device,
                )?;
                let v = if leader {
                    evaluate(&st.model, &val, &device, precision)
                } else {
                    f64::NAN
                };
                observer.grew(s, g, v);
                clock.grew(&mut st.timing, t0);
                spike = Some(v);
            }
            let segment = plan.segment_index(s);
            clock.enter(&mut st.timing, segment, st.model.depth(), s);

            // One optimizer step. The loss is read back only for a metrics row (data-parallel
            // peers agree on a stop signal through the next row's all-reduce).
            let local_stop = crate::exec::jobs::stop::requested().is_some();
            let eval_due = cadence.eval_due(s);
            let row_due = cadence.row_due(s, spike.is_some(), replicas.stops_alone() && local_stop);
            let lr = spec.optimizer.peak_lr() * lr_factor(&spec.schedule, s, total);
            let t0 = Instant::now();
            let batch = replicas.share(st.cursor.next_train(self.corpus, spec.batch));
            let (x, y) = batch_tensors::<B>(&batch, &device);
            let out = st.model.train_loss(x, y, precision);
            window.0 = Some(match window.0.take() {
                Some((sum, k)) => (sum + out.loss, k + 1),
                None => (out.loss, 1),
            });
            let grads = GradientsParams::from_grads(out.surrogate.backward(), &st.model);
            let grads = replicas.mean_grads(grads, &st.model)?;
            let (model, _) = st.opt.step_deferred(st.model, grads, lr, &rules);
            // Read only now, with the whole step queued, so the device is never left idle
            // waiting for the host between the forward and the backward pass.
            let (train_loss, signalled) = match window.0.take() {
                Some((sum, k)) if row_due => {
                    let (sum, stop) = replicas.read_loss::<B>(sum, local_stop)?;
                    (Some(sum / k as f64), stop)
                }
                kept => {
                    window.0 = kept;
                    (None, false)
                }
            };
            st.model = model;
            clock.stepped(&mut st.timing, t0.elapsed().as_secs_f64());

            // Observe it.
            if let Some(tl) = train_loss {
                let val_loss = match spike {
                    Some(v) => Some(v),
                    None if eval_due && leader => {
                        Some(evaluate(&st.model, &val, &device, precision))
                    }
                    None => None,
                };
                let row = MetricRow {
                    step: s,
                    tokens: (s + 1) * tps,
                    flops: plan.flops_until(s + 1).exact,
                    train_loss: tl,
                    val_loss,
                    lr,
                    depth: st.model.depth(),
                    segment,
                    tok_per_s: clock.row_throughput(tps),
                    wall_s: clock.wall(),
                };
                observer.row(&row)?;
                st.timing.last_train_loss = Some(tl);
                if val_loss.is_some() {
                    st.timing.last_val_loss = val_loss;
                }
                if !tl.is_finite() {
                    observer.failed();
                    return Err(diverged(s, segment, st.model.depth(), tl, log_every, dir));
                }
            }
            observer.stepped(s + 1);
            replicas.beat();
            clock.step_done(&mut st.timing, s + 1);

            // Maybe checkpoint.
            let session_end = s + 1 == total || s + 1 == end || signalled;
            if leader && let Some(due) = checkpoints.due(s + 1, session_end) {
                st.timing.wall_s = clock.wall();
                checkpoints.write(&st.checkpoint(spec, s + 1, segment), &due)?;
            }
            if signalled {
                stopped_at = Some(s + 1);
                break;
            }
        }
        let end = stopped_at.unwrap_or(end);
        observer.finished();
        // Identical averaged gradients must have kept the replicas identical.
        replicas.agree("at the end", run_id, &st.model, &device)?;
        st.timing.wall_s = clock.wall();
        let (timed_steps, timed_s) = clock.session(&st.timing);
        let summary = Summary {
            peers: replicas.throughput(name, timed_steps, tps, timed_s),
            precision_note,
            ..summarize(plan, end, name, precision, &st.timing)
        };
        if leader {
            finish(dir, plan, &summary, replicas.stops_alone(), &metrics_path)?;
        }
        Ok(summary)
    }
}

/// The precision the run trains in, and why when it is not the one asked for. A precision the
/// device cannot run is an error before anything trains; bf16 on a CPU without a bf16
/// instruction trains f32 matmuls, and the header and the summary say so.
fn run_precision(asked: Precision, on: Placed) -> Result<(Precision, Option<String>), ExecError> {
    if asked != Precision::Bf16 {
        return Ok((asked, None));
    }
    match on.bf16() {
        Bf16::Rounds => Ok((asked, None)),
        Bf16::FallsBackToF32(why) => {
            let note = format!("bf16 falls back to f32 matmuls on {on}: {why}");
            eprintln!("precision: {note}");
            Ok((Precision::F32, Some(note)))
        }
        Bf16::Refused(why) => Err(ExecError::new(
            ErrorKind::Device,
            format!("bf16 is not supported on {on}: {why}"),
        )
        .with_help("use --precision f32 here (bf16 runs on CUDA)")),
    }
}

/// The summary of the first `end` steps (without the replicas' throughput).
fn summarize(plan: &RunPlan, end: u64, device: &str, precision: Precision, t: &Timing) -> Summary {
    let spec = &plan.spec;
    let flops = plan.flops_until(end);
    let fixed = plan.fixed_flops_until(end);
    Summary {
        run: spec.name.clone(),
        device: device.to_string(),
        precision,
        precision_note: None,
        final_train_loss: t.last_train_loss.unwrap_or(f64::NAN),
        final_val_loss: t.last_val_loss.unwrap_or(f64::NAN),
        total_steps: end,
        total_tokens: end * spec.batch.tokens_per_step(),
        flops,
        fixed_flops: fixed,
        ratio: flops.ratio(fixed),
        growth_steps: spec.growths.iter().map(|g| g.at_step).collect(),
        wall_s: t.wall_s,
        warmup_s: t.warmup_s,
        train_s: t.train_s,
        segments: t.segments.clone(),
        peers: Vec::new(),
    }
}

/// The leader's last writes: `summary.json` (a data-parallel one is written by `launch`, with
/// every peer's throughput) and the loss plot.
fn finish(
    dir: &Path,
    plan: &RunPlan,
    summary: &Summary,
    solo: bool,
    metrics_path: &Path,
) -> Result<(), ExecError> {
    let run_dir = RunDir::new(dir);
    if solo {
        run_dir.write_summary(summary)?;
    }
    let rows = read_metrics(metrics_path)?;
    let title = format!("{} ({} steps)", plan.spec.name, plan.spec.total_steps);
    let (png, svg) = run_dir.loss_plots();
    if let Err(e) = plot_losses(&rows, &summary.growth_steps, &title, &png, &svg) {
        eprintln!("warning: no loss plot: {e}");
    }
    Ok(())
}

/// Loads the run's corpus and checks that it fits the batch and the model's vocabulary.
/// `progress` shows the training of a `bpe(N)` tokenizer.
pub(crate) fn open_corpus(spec: &RunSpec, progress: bool) -> Result<Corpus, ExecError> {
    let corpus = load_corpus(&spec.data, progress)?;
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
    use crate::exec::network::model::param_to_vec;
    use crate::exec::network::model::tests::{TB, toks};
    use crate::exec::network::optim::ParamRules;
    use crate::plan::spec::*;
    use crate::testing::scratch;

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
            lr_mult: 1.0,
        }
    }

    /// The compiled plan of `spec`: the loop reads its segments, growths and FLOPs.
    fn plan(spec: RunSpec) -> RunPlan {
        crate::plan::compile_run(&spec).runs.remove(0)
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
        let tmp = scratch("lr");
        let dir = tmp.path();
        let g = growth(
            8,
            0,
            2,
            InitSpec::Random { std: 0.02 },
            OptStatePolicy::Keep,
        );
        let sp = spec(write_corpus(dir), 12, 0, vec![g]);
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
        let tmp = scratch("resume");
        let dir = tmp.path();
        let g = growth(
            15,
            1,
            3,
            InitSpec::Copy {
                layout: CopyLayout::Stack,
            },
            OptStatePolicy::Copy,
        );
        let p = plan(spec(write_corpus(dir), 30, 1, vec![g]));
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

    /// A growth's `lr_mult` reaches the new blocks only, survives a resume, and leaves the run
    /// hash of a recipe without it unchanged.
    #[test]
    fn new_blocks_lr_mult_scales_only_them_and_survives_resume() {
        let tmp = scratch("lr_mult");
        let dir = tmp.path();
        let corpus = write_corpus(dir);
        let grown = |m: f64| {
            let g = GrowthSpec {
                lr_mult: m,
                ..growth(
                    8,
                    1,
                    3,
                    InitSpec::Random { std: 0.02 },
                    OptStatePolicy::Keep,
                )
            };
            plan(spec(corpus.clone(), 16, 1, vec![g]))
        };
        let blocks = |d: &Path, b: &str| -> Vec<(String, Vec<f32>)> {
            let mut ps = final_params(d);
            ps.retain(|(n, _)| n.starts_with(b));
            assert!(!ps.is_empty(), "{b}");
            ps
        };
        // lr_mult 0 freezes the new blocks at their init: after one step at depth 3 and after
        // eight they are the same, while the old block and the embeddings move.
        let frozen = grown(0.0);
        let (f9, f16) = (dir.join("f9"), dir.join("f16"));
        run(&frozen, &opts(&f9, Some(9))).unwrap();
        run(&frozen, &opts(&f16, None)).unwrap();
        for b in ["blocks.1.", "blocks.2."] {
            assert_eq!(blocks(&f9, b), blocks(&f16, b), "{b}");
        }
        assert_ne!(blocks(&f9, "blocks.0."), blocks(&f16, "blocks.0."));
        assert_ne!(blocks(&f9, "wte"), blocks(&f16, "wte"));
        // lr_mult 3: stopped after the growth and resumed, bit-identical to one session; and
        // its new blocks end elsewhere than at lr_mult 1.
        let fast = grown(3.0);
        let (a, b, one) = (dir.join("a"), dir.join("b"), dir.join("one"));
        run(&fast, &opts(&a, None)).unwrap();
        run(&fast, &opts(&b, Some(11))).unwrap();
        resume(&b, &opts(&b, None)).unwrap();
        assert_eq!(final_params(&a), final_params(&b));
        run(&grown(1.0), &opts(&one, None)).unwrap();
        assert_ne!(blocks(&a, "blocks.1."), blocks(&one, "blocks.1."));
        // 1 is not written, so recipes without the option keep their run hash.
        let spec1 = grown(1.0).spec;
        let g1 = serde_json::to_string(&spec1.growths[0]).unwrap();
        assert!(!g1.contains("lr_mult"), "{g1}");
        let g3 = serde_json::to_string(&fast.spec.growths[0]).unwrap();
        assert!(g3.contains("\"lr_mult\":3.0"), "{g3}");
        let json = serde_json::to_string(&spec1).unwrap();
        let back: RunSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.growths[0].lr_mult, 1.0);
    }

    #[test]
    fn training_on_emma_lowers_the_validation_loss() {
        let tmp = scratch("emma");
        let dir = tmp.path();
        let emma = format!("{}/data/emma.txt", env!("CARGO_MANIFEST_DIR"));
        let mut sp = spec(emma, 40, 1, vec![]);
        sp.eval_every = 10;
        sp.batch.sequences = 8;
        sp.optimizer = OptimizerSpec::Adamw(AdamWSpec {
            weight_decay: 0.0,
            ..AdamWSpec::with_lr(3e-3)
        });
        let summary = run(&plan(sp), &opts(dir, None)).unwrap();
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
        let tmp = scratch("nan");
        let dir = tmp.path();
        let mut sp = spec(write_corpus(dir), 10, 1, vec![]);
        sp.schedule = ScheduleSpec::Constant { warmup_steps: 0 };
        sp.optimizer = OptimizerSpec::Adamw(AdamWSpec {
            weight_decay: 0.0,
            ..AdamWSpec::with_lr(f64::INFINITY)
        });
        let e = run(&plan(sp), &opts(dir, None)).unwrap_err();
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
            let rules = ParamRules::from(model.param_groups());
            model = opt.step(model, grads, 1e-2, &rules).0;
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
        let rules = ParamRules::from(m.param_groups());
        let m = opt.step(m, grads, 1e-2, &rules).0;
        let (a, b) = (vals(&m, 0), vals(&m, 1));
        // Every weight matrix of the copy moved differently from its source.
        for k in [2, 4, 8, 10] {
            assert_ne!(a[k], b[k], "param {k}");
        }
    }
}
