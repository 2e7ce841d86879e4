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

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::checkpoint::{Checkpoint, latest_at_most, latest_path, run_hash, step_path};
use crate::exec::io::data::write_atomic;
use crate::exec::io::metrics::{MetricsWriter, Summary, read_metrics};
use crate::exec::io::report::{ExperimentReport, write_report};
use crate::exec::jobs::train::{self, RunOptions};
use crate::plan::ir::{Plan, RunPlan};

/// One stretch of actual training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub run: String,
    pub from: u64,
    pub to: u64,
}

/// Steps `[0, s)` that runs `a` and `b` of `plan` share (the end of their last common node).
pub fn shared_steps(plan: &Plan, a: &RunPlan, b: &RunPlan) -> u64 {
    a.nodes
        .iter()
        .zip(&b.nodes)
        .take_while(|(x, y)| x == y)
        .last()
        .map_or(0, |(n, _)| plan.graph[*n].segment.end_step)
}

fn io<'a>(action: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ExecError + 'a {
    move |e| ExecError::io(action, path, e)
}

/// Writes the plan to `dir/experiment.json` after checking that the one there, if any, is of
/// the same experiment: the same runs with the same recipes, seeds, reference and frontier.
/// How the runs share prefixes may differ (a newer progc may find more to share): the new plan
/// replaces the old, which is safe because each run directory is checked against its own recipe
/// and a donor gives only checkpoints at or before what the runs share.
fn claim_dir(dir: &Path, plan: &Plan) -> Result<(), ExecError> {
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let path = dir.join("experiment.json");
    let json = serde_json::to_string_pretty(plan).map_err(|e| {
        ExecError::new(
            ErrorKind::Internal,
            format!("cannot serialize the plan: {e}"),
        )
    })?;
    let elsewhere = "choose another --out directory, or delete that one to start afresh";
    match fs::read_to_string(&path) {
        Ok(existing) if existing == json => return Ok(()),
        Ok(existing) => {
            let theirs: Plan = serde_json::from_str(&existing).map_err(|e| {
                ExecError::new(
                    ErrorKind::Checkpoint,
                    format!(
                        "{} is damaged or from an incompatible progc: {e}",
                        path.display()
                    ),
                )
                .with_help(elsewhere)
            })?;
            let same = theirs.experiment == plan.experiment
                && theirs.reference == plan.reference
                && theirs.seeds == plan.seeds
                && theirs.frontier == plan.frontier
                && theirs
                    .runs
                    .iter()
                    .map(|r| &r.spec)
                    .eq(plan.runs.iter().map(|r| &r.spec));
            if !same {
                return Err(ExecError::new(
                    ErrorKind::Checkpoint,
                    format!(
                        "{} holds a different experiment (or the recipe changed)",
                        dir.display()
                    ),
                )
                .with_help(elsewhere));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ExecError::io("read", &path, e)),
    }
    write_atomic(&path, json.as_bytes()).map_err(io("write", &path))
}

/// Reads `dir/experiment.json`.
pub fn read_plan(dir: &Path) -> Result<Plan, ExecError> {
    let path = dir.join("experiment.json");
    let text = fs::read_to_string(&path).map_err(|e| {
        ExecError::io("read", &path, e)
            .with_help("point at the output directory of `progc run FILE --experiment NAME`")
    })?;
    serde_json::from_str(&text).map_err(|e| {
        ExecError::new(
            ErrorKind::Checkpoint,
            format!("{} is damaged: {e}", path.display()),
        )
    })
}

/// Checks that `dir`, when it holds a run already, holds `rp`: the recipe in its `run.json`
/// is the plan's (compared as values, so a file from an older progc that lacks a field added
/// since with its default still matches).
fn check_run_dir(dir: &Path, rp: &RunPlan) -> Result<(), ExecError> {
    let path = dir.join("run.json");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ExecError::io("read", &path, e)),
    };
    let name = &rp.spec.name;
    let move_it = "move that directory out of the experiment (or delete it) and run again; \
                   only a finished or interrupted run of this very recipe may be copied in";
    let theirs: RunPlan = serde_json::from_str(&text).map_err(|e| {
        ExecError::new(
            ErrorKind::Checkpoint,
            format!("{} is damaged or not a progc run: {e}", path.display()),
        )
        .with_help(move_it)
    })?;
    if theirs.spec == rp.spec {
        return Ok(());
    }
    // Name the first setting that differs, to tell a stale copy from a wrong one.
    let fields = |s| match serde_json::to_value(s) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => Default::default(),
    };
    let (a, b) = (fields(&theirs.spec), fields(&rp.spec));
    let mut keys: Vec<&String> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    keys.sort_by_key(|k| *k == "name");
    let differs = keys
        .first()
        .map_or_else(String::new, |k| format!(" (`{k}` differs)"));
    Err(ExecError::new(
        ErrorKind::Checkpoint,
        format!(
            "{} holds a run of another recipe than `{name}`{differs}",
            dir.display()
        ),
    )
    .with_help(move_it))
}

fn log_trained(dir: &Path, t: &Trained) -> Result<(), ExecError> {
    let path = dir.join("trained.jsonl");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io("open", &path))?;
    let line = serde_json::to_string(t).unwrap_or_default();
    writeln!(f, "{line}").map_err(io("write", &path))
}

/// Every stretch of training recorded in `dir/trained.jsonl`.
pub fn read_trained(dir: &Path) -> Result<Vec<Trained>, ExecError> {
    let path = dir.join("trained.jsonl");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ExecError::io("read", &path, e)),
    }
}

fn finished(dir: &Path, rp: &RunPlan) -> bool {
    Summary::read(&dir.join("summary.json")).is_ok_and(|s| s.total_steps == rp.spec.total_steps)
}

/// Starts `rp` in `dir` from `donor`'s checkpoint at step `t` (its latest at or before the end
/// of their shared prefix), with the donor's metrics before `t`: `[0, t)` is not retrained.
fn seed_from(
    donor: &Path,
    t: u64,
    ck_path: &Path,
    dir: &Path,
    rp: &RunPlan,
) -> Result<(), ExecError> {
    let mut ck = Checkpoint::read(ck_path)?;
    ck.run_hash = run_hash(&rp.spec);
    fs::create_dir_all(dir.join("checkpoints")).map_err(io("create directory", dir))?;
    ck.write(&latest_path(dir))?;
    // This run can in turn be the donor of `[0, t)` for later runs.
    ck.write(&step_path(dir, t))?;
    let mut metrics = MetricsWriter::create(&dir.join("metrics.jsonl"), &rp.spec.growths)?;
    for row in read_metrics(&donor.join("metrics.jsonl"))?
        .iter()
        .filter(|r| r.step < t)
    {
        metrics.write(row)?;
    }
    let json = serde_json::to_string_pretty(rp).unwrap_or_default();
    let path = dir.join("run.json");
    write_atomic(&path, json.as_bytes()).map_err(io("write", &path))?;
    Ok(())
}

/// Runs (or continues) every run of `plan`, then writes the report. `Ok(None)` when it stopped
/// early at `stop_after`.
pub fn run_experiment(
    plan: &Plan,
    opts: &RunOptions,
) -> Result<Option<ExperimentReport>, ExecError> {
    let root = &opts.out_dir;
    // Every run's corpus is checked before the experiment folder is touched.
    let mut checked = Vec::new();
    for rp in &plan.runs {
        if !checked.contains(&(&rp.spec.data, rp.spec.batch)) {
            train::open_corpus(&rp.spec, opts.progress)?;
            checked.push((&rp.spec.data, rp.spec.batch));
        }
    }
    let _lock = train::take_lock(root, opts.parallel.as_ref())?;
    claim_dir(root, plan)?;
    for rp in &plan.runs {
        check_run_dir(&root.join(&rp.spec.name), rp)?;
    }
    for (i, rp) in plan.runs.iter().enumerate() {
        let name = &rp.spec.name;
        let dir = root.join(name);
        if finished(&dir, rp) {
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
                    let donor = root.join(&d.spec.name);
                    let (t, path) = latest_at_most(&donor, shared_steps(plan, d, rp))?;
                    Some((t, path, donor, &d.spec.name))
                })
                .fold(None, |best: Option<(u64, _, _, _)>, c| match best {
                    Some(b) if b.0 >= c.0 => Some(b),
                    _ => Some(c),
                });
            if let Some((t, path, donor, donor_name)) = best {
                seed_from(&donor, t, &path, &dir, rp)?;
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
        log_trained(
            root,
            &Trained {
                run: name.clone(),
                from,
                to: summary.total_steps,
            },
        )?;
        if summary.total_steps < rp.spec.total_steps {
            return Ok(None); // stopped early on request
        }
    }
    write_report(root, plan).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile_experiment;
    use crate::plan::fixtures::{tiny, zero_to_full};
    use crate::plan::spec::{ExperimentSpec, RunSpec};
    use crate::testing::scratch;

    fn experiment(runs: &[RunSpec]) -> Plan {
        let exp = ExperimentSpec {
            name: "e".into(),
            runs: runs.iter().map(|r| r.name.clone()).collect(),
            reference: runs[0].name.clone(),
            seeds: vec![],
            frontier: vec![],
        };
        compile_experiment(&exp, runs)
    }

    #[test]
    fn a_dir_takes_a_new_plan_of_its_experiment_but_refuses_a_changed_recipe() {
        let tmp = scratch("claim");
        let dir = tmp.path();
        let runs = [
            zero_to_full("a", tiny(), 80, 100),
            zero_to_full("b", tiny(), 60, 100),
        ];
        let plan = experiment(&runs);
        claim_dir(dir, &plan).unwrap();
        claim_dir(dir, &plan).unwrap();

        // Planned by a progc that shared less: the same experiment, so the new plan replaces it.
        let path = dir.join("experiment.json");
        let mut older = plan.clone();
        older.sharing.steps_trained = older.sharing.steps_separate;
        std::fs::write(&path, serde_json::to_string_pretty(&older).unwrap()).unwrap();
        claim_dir(dir, &plan).unwrap();
        let now: Plan = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(now.sharing, plan.sharing);

        // Another seed for `b` is another recipe: refused, and the file is left alone.
        let mut changed = runs.clone();
        changed[1].seed += 1;
        let e = claim_dir(dir, &experiment(&changed)).unwrap_err();
        assert!(e.message.contains("different experiment"), "{e}");
        assert!(e.help.is_some());
        let kept: Plan = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(kept.runs[1].spec, runs[1]);

        std::fs::write(&path, "{").unwrap();
        let e = claim_dir(dir, &plan).unwrap_err();
        assert!(e.message.contains("damaged"), "{e}");
    }
}
