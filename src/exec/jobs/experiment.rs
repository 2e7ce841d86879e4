//! Running an experiment: every run of its plan, each shared prefix trained once.
//!
//! Invariants:
//! - runs are trained in plan order; before a run trains, every later run that branches off it
//!   at step `s` (the end of their last shared plan node) gets a checkpoint at `s`, written by
//!   this run (`checkpoints/step-<s>.safetensors`);
//! - a run whose prefix `[0, s)` is shared with another run of the plan starts from that run's
//!   latest checkpoint at a step `t <= s`, kept or periodic (re-stamped with its own recipe
//!   hash: the plan guarantees the state is identical), and a copy of its metrics before `t`,
//!   so `[0, t)` is not retrained; `t = s` whenever the donor trained in this plan, which
//!   checkpoints there. The donor is usually an earlier run; a later one counts too when its
//!   directory already holds that checkpoint (a finished run copied in from another experiment);
//! - a run directory already there must hold that very run (its `run.json` recipe equal to the
//!   plan's), or nothing trains: a directory copied in under the wrong name is neither
//!   continued, nor counted as finished, nor used as a donor;
//! - a finished run (`summary.json` present, all steps done) is never redone, and an
//!   interrupted one resumes from its latest checkpoint: re-running the same command continues
//!   an interrupted experiment;
//! - every stretch of training is logged to `trained.jsonl` (`{run, from, to}`), the record of
//!   what was actually computed.

use std::path::Path;

use crate::exec::device::place;
use crate::exec::error::ExecError;
use crate::exec::io::checkpoint::{Checkpoint, latest_at_most, latest_path, run_hash, step_path};
use crate::exec::io::metrics::{MetricsWriter, read_metrics};
use crate::exec::io::report::{ExperimentReport, write_report};
pub use crate::exec::io::run_dir::Trained;
use crate::exec::io::run_dir::{ExperimentDir, RunDir};
use crate::exec::jobs::train::{self, RunOptions};
use crate::plan::ir::{Plan, RunPlan};

/// Steps `[0, s)` that runs `a` and `b` of `plan` share (the end of their last common node).
pub fn shared_steps(plan: &Plan, a: &RunPlan, b: &RunPlan) -> u64 {
    a.nodes
        .iter()
        .zip(&b.nodes)
        .take_while(|(x, y)| x == y)
        .last()
        .map_or(0, |(n, _)| plan.graph[*n].segment.end_step)
}

/// Reads `dir/experiment.json`.
pub fn read_plan(dir: &Path) -> Result<Plan, ExecError> {
    ExperimentDir::new(dir).read_plan()
}

/// Every stretch of training recorded in `dir/trained.jsonl`.
pub fn read_trained(dir: &Path) -> Result<Vec<Trained>, ExecError> {
    ExperimentDir::new(dir).read_trained()
}

/// Starts `rp` in `dir` from `donor`'s checkpoint at step `t` (its latest at or before the end
/// of their shared prefix), with the donor's metrics before `t`: `[0, t)` is not retrained.
fn seed_from(
    donor: &RunDir,
    t: u64,
    ck_path: &Path,
    dir: &RunDir,
    rp: &RunPlan,
) -> Result<(), ExecError> {
    let mut ck = Checkpoint::read(ck_path)?;
    ck.run_hash = run_hash(&rp.spec);
    dir.create()?;
    ck.write(&latest_path(dir.path()))?;
    // This run can in turn be the donor of `[0, t)` for later runs.
    ck.write(&step_path(dir.path(), t))?;
    let mut metrics = MetricsWriter::create(&dir.metrics_file(), &rp.spec.growths)?;
    for row in read_metrics(&donor.metrics_file())?
        .iter()
        .filter(|r| r.step < t)
    {
        metrics.write(row)?;
    }
    dir.write_plan(rp)
}

/// Runs (or continues) every run of `plan`, then writes the report. `Ok(None)` when it stopped
/// early at `stop_after`.
pub fn run_experiment(
    plan: &Plan,
    opts: &RunOptions,
) -> Result<Option<ExperimentReport>, ExecError> {
    let root = &opts.out_dir;
    // Every run's corpus, and the device, are checked before the experiment folder is touched.
    let mut checked = Vec::new();
    for rp in &plan.runs {
        if !checked.contains(&(&rp.spec.data, rp.spec.batch)) {
            train::open_corpus(&rp.spec, opts.progress)?;
            checked.push((&rp.spec.data, rp.spec.batch));
        }
    }
    match &opts.parallel {
        Some(topo) => topo
            .devices
            .iter()
            .try_for_each(|d| place(*d).map(|_| ()))?,
        None => place(opts.device).map(|_| ())?,
    }
    let exp_dir = ExperimentDir::new(root);
    let writes = opts
        .parallel
        .as_ref()
        .is_none_or(|t| t.nodes.as_ref().is_none_or(|n| n.rank == 0));
    let _lock = exp_dir.claim(plan, writes)?;
    for rp in &plan.runs {
        exp_dir.run(&rp.spec.name).check_holds(rp)?;
    }
    for (i, rp) in plan.runs.iter().enumerate() {
        let name = &rp.spec.name;
        let run_dir = exp_dir.run(name);
        let dir = run_dir.path().to_path_buf();
        if run_dir.finished(rp.spec.total_steps) {
            eprintln!("experiment: `{name}` already finished");
            continue;
        }
        // Steps where later runs branch off this one: checkpoint there.
        let checkpoint_at: Vec<u64> = plan.runs[i + 1..]
            .iter()
            .map(|later| shared_steps(plan, rp, later))
            .filter(|&s| s > 0 && s < rp.spec.total_steps)
            .collect();
        let run_opts = RunOptions {
            out_dir: dir.clone(),
            checkpoint_at,
            ..opts.clone()
        };
        let latest = latest_path(&dir);
        let mut from = 0;
        if !latest.exists() {
            // The latest checkpoint inside a prefix shared with another run (first listed on
            // ties): every step of a shared prefix is the same state, so any of them will do.
            let best = plan
                .runs
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .filter_map(|(_, d)| {
                    let donor = exp_dir.run(&d.spec.name);
                    let (t, path) = latest_at_most(donor.path(), shared_steps(plan, d, rp))?;
                    Some((t, path, donor, &d.spec.name))
                })
                .fold(None, |best: Option<(u64, _, _, _)>, c| match best {
                    Some(b) if b.0 >= c.0 => Some(b),
                    _ => Some(c),
                });
            if let Some((t, path, donor, donor_name)) = best {
                seed_from(&donor, t, &path, &run_dir, rp)?;
                eprintln!(
                    "experiment: `{name}` starts from `{donor_name}` at step {t} (shared prefix)"
                );
            }
        }
        let summary = if latest.exists() {
            from = Checkpoint::read(&latest)?.step;
            train::resume(&dir, &run_opts)?
        } else {
            eprintln!("experiment: training `{name}`");
            train::run(rp, &run_opts)?
        };
        exp_dir.log_trained(&Trained {
            run: name.clone(),
            from,
            to: summary.total_steps,
        })?;
        if summary.total_steps < rp.spec.total_steps {
            return Ok(None); // stopped early on request
        }
    }
    write_report(root, plan).map(Some)
}
