//! The run directory and the experiment directory: every file in them named once, and each
//! one that is read back parsed in one place.
//!
//! A run directory (`progc run`, or one run of an experiment) holds:
//! - `run.json`: the run's plan ([`RunPlan`]), written before the first step;
//! - `metrics.jsonl`, `summary.json`, `loss.png`, `loss.svg`, `events.out.tfevents.*`;
//! - `checkpoints/` (named by [`crate::exec::io::checkpoint`]), `writer.lock`.
//!
//! An experiment directory holds `experiment.json` (the [`Plan`]), `trained.jsonl` (what was
//! actually computed), `report.md`, `report.json`, the report's plots and one run directory
//! per run of the plan, named after it.
//!
//! Invariants:
//! - a directory is claimed (created, locked, its plan written) only by [`RunDir::claim`] and
//!   [`ExperimentDir::claim`]; neither replaces what another run or experiment left there;
//! - `run.json` and `experiment.json` are parsed only by [`RunDir::read_plan`] and
//!   [`ExperimentDir::read_plan`], which turn a missing or damaged file into an `ExecError`
//!   with what to do.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::data::{RUN_TOKENIZER, write_atomic};
use crate::exec::io::lock::{DirLock, lock_dir};
use crate::exec::io::metrics::Summary;
use crate::plan::ir::{Plan, RunPlan};

/// A run directory (see the module docs for its files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub const PLAN: &'static str = "run.json";
    pub const SUMMARY: &'static str = "summary.json";
    pub const METRICS: &'static str = "metrics.jsonl";
    pub const LOSS_PNG: &'static str = "loss.png";
    pub const LOSS_SVG: &'static str = "loss.svg";
    pub const CHECKPOINTS: &'static str = "checkpoints";
    /// The run's own copy of its tokenizer, for a tokenizer.json file or a trained `bpe(N)`.
    pub const TOKENIZER: &'static str = RUN_TOKENIZER;

    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn plan_file(&self) -> PathBuf {
        self.root.join(Self::PLAN)
    }

    pub fn summary_file(&self) -> PathBuf {
        self.root.join(Self::SUMMARY)
    }

    pub fn metrics_file(&self) -> PathBuf {
        self.root.join(Self::METRICS)
    }

    /// The loss plot, as PNG and SVG.
    pub fn loss_plots(&self) -> (PathBuf, PathBuf) {
        (
            self.root.join(Self::LOSS_PNG),
            self.root.join(Self::LOSS_SVG),
        )
    }

    pub fn tokenizer_file(&self) -> PathBuf {
        self.root.join(Self::TOKENIZER)
    }

    /// Writes `json` as the run's tokenizer, or checks that the copy already there is the same
    /// (a run must not continue on other tokens). `source` is the corpus, for the message.
    pub fn keep_tokenizer(&self, json: &[u8], source: &Path) -> Result<(), ExecError> {
        let path = self.tokenizer_file();
        match fs::read(&path) {
            Ok(kept) if kept == json => Ok(()),
            Ok(_) => Err(ExecError::new(
                ErrorKind::Data,
                format!(
                    "{} is not the tokenizer the corpus {} now gives",
                    path.display(),
                    source.display()
                ),
            )
            .with_help(
                "the run started with the tokenizer in its directory; the tokenizer file or the \
                 corpus has changed since: restore it, or start a new run",
            )),
            Err(_) => write_atomic(&path, json).map_err(|e| ExecError::io("write", &path, e)),
        }
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(Self::CHECKPOINTS)
    }

    /// Whether a run was ever started here (its plan is written before its first step).
    pub fn holds_run(&self) -> bool {
        self.plan_file().exists()
    }

    /// Takes the directory for a new run of `plan`: creates it, takes its writer lock and
    /// writes `run.json`. Refuses a directory that already holds a run, whichever, so that
    /// nothing a run wrote is ever overwritten by another (`--resume` continues a run).
    /// `lock: false` for the processes of a multi-node run that write nothing.
    pub fn claim(&self, plan: &RunPlan, lock: bool) -> Result<Option<DirLock>, ExecError> {
        fs::create_dir_all(&self.root)
            .map_err(|e| ExecError::io("create directory", &self.root, e))?;
        let held = if lock {
            Some(lock_dir(&self.root)?)
        } else {
            None
        };
        if self.holds_run() {
            let what = self.read_plan().map_or_else(
                |_| "a run".to_string(),
                |p| format!("run `{}`", p.spec.name),
            );
            return Err(ExecError::new(
                ErrorKind::Usage,
                format!("{} already holds {what}", self.root.display()),
            )
            .with_help(format!(
                "continue it with `progc run --resume {}`, or choose another --out directory \
                 (without --out, each run gets a fresh one under runs/)",
                self.root.display()
            )));
        }
        self.write_plan(plan)?;
        Ok(held)
    }

    pub fn write_plan(&self, plan: &RunPlan) -> Result<(), ExecError> {
        let json = serde_json::to_string_pretty(plan).map_err(|e| {
            ExecError::new(
                ErrorKind::Internal,
                format!("cannot serialize the run plan: {e}"),
            )
        })?;
        let path = self.plan_file();
        write_atomic(&path, json.as_bytes()).map_err(|e| ExecError::io("write", &path, e))
    }

    /// The run's plan, from `run.json`.
    pub fn read_plan(&self) -> Result<RunPlan, ExecError> {
        let path = self.plan_file();
        if !self.root.is_dir() {
            return Err(ExecError::new(
                ErrorKind::Io,
                format!("run directory {} does not exist", self.root.display()),
            )
            .with_help("point at the output directory of a `progc run` (it holds run.json)"));
        }
        let text = fs::read_to_string(&path).map_err(|e| {
            ExecError::io("read", &path, e)
                .with_help("point at the output directory of a `progc run` (it holds run.json)")
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ExecError::new(
                ErrorKind::Checkpoint,
                format!("{} is damaged or not a progc run: {e}", path.display()),
            )
            .with_help("start the run afresh in another directory")
        })
    }

    pub fn read_summary(&self) -> Result<Summary, ExecError> {
        Summary::read(&self.summary_file())
    }

    pub fn write_summary(&self, summary: &Summary) -> Result<(), ExecError> {
        summary.write(&self.summary_file())
    }

    /// Whether the run here trained all `total_steps` steps.
    pub fn finished(&self, total_steps: u64) -> bool {
        self.read_summary()
            .is_ok_and(|s| s.total_steps == total_steps)
    }

    /// Creates the directory and its `checkpoints/`.
    pub fn create(&self) -> Result<(), ExecError> {
        let dir = self.checkpoints();
        fs::create_dir_all(&dir).map_err(|e| ExecError::io("create directory", &dir, e))
    }

    /// Checks that this directory, when it holds a run already, holds `rp`: the recipe in its
    /// `run.json` is the plan's (compared as values, so a file from an older progc that lacks
    /// a field added since with its default still matches).
    pub fn check_holds(&self, rp: &RunPlan) -> Result<(), ExecError> {
        if !self.holds_run() {
            return Ok(());
        }
        let name = &rp.spec.name;
        let move_it = "move that directory out of the experiment (or delete it) and run again; \
                       only a finished or interrupted run of this very recipe may be copied in";
        let theirs = self.read_plan().map_err(|e| e.with_help(move_it))?;
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
                self.root.display()
            ),
        )
        .with_help(move_it))
    }
}

/// One stretch of actual training, a line of `trained.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub run: String,
    pub from: u64,
    pub to: u64,
}

/// An experiment directory (see the module docs for its files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExperimentDir {
    root: PathBuf,
}

impl ExperimentDir {
    pub const PLAN: &'static str = "experiment.json";
    pub const TRAINED: &'static str = "trained.jsonl";
    pub const REPORT_MD: &'static str = "report.md";
    pub const REPORT_JSON: &'static str = "report.json";

    pub fn new(root: impl Into<PathBuf>) -> ExperimentDir {
        ExperimentDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn plan_file(&self) -> PathBuf {
        self.root.join(Self::PLAN)
    }

    pub fn report_md(&self) -> PathBuf {
        self.root.join(Self::REPORT_MD)
    }

    pub fn report_json(&self) -> PathBuf {
        self.root.join(Self::REPORT_JSON)
    }

    /// The directory of the plan's run `name`.
    pub fn run(&self, name: &str) -> RunDir {
        RunDir::new(self.root.join(name))
    }

    /// Takes the directory for `plan`: creates it, takes its writer lock, and writes
    /// `experiment.json` after checking that the one there, if any, is of the same experiment:
    /// the same runs with the same recipes, seeds, reference and frontier. How the runs share
    /// prefixes may differ (a newer progc may find more to share): the new plan replaces the
    /// old, which is safe because each run directory is checked against its own recipe and a
    /// donor gives only checkpoints at or before what the runs share.
    pub fn claim(&self, plan: &Plan, lock: bool) -> Result<Option<DirLock>, ExecError> {
        let dir = &self.root;
        fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
        let held = if lock { Some(lock_dir(dir)?) } else { None };
        let path = self.plan_file();
        let json = serde_json::to_string_pretty(plan).map_err(|e| {
            ExecError::new(
                ErrorKind::Internal,
                format!("cannot serialize the plan: {e}"),
            )
        })?;
        let elsewhere = "choose another --out directory, or delete that one to start afresh";
        match fs::read_to_string(&path) {
            Ok(existing) if existing == json => return Ok(held),
            Ok(_) => {
                let theirs = self.read_plan().map_err(|e| e.with_help(elsewhere))?;
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
        write_atomic(&path, json.as_bytes()).map_err(|e| ExecError::io("write", &path, e))?;
        Ok(held)
    }

    /// The experiment's plan, from `experiment.json`.
    pub fn read_plan(&self) -> Result<Plan, ExecError> {
        let path = self.plan_file();
        let text = fs::read_to_string(&path).map_err(|e| {
            ExecError::io("read", &path, e)
                .with_help("point at the output directory of `progc run FILE --experiment NAME`")
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ExecError::new(
                ErrorKind::Checkpoint,
                format!(
                    "{} is damaged or from an incompatible progc: {e}",
                    path.display()
                ),
            )
        })
    }

    /// Appends a stretch of training to `trained.jsonl`.
    pub fn log_trained(&self, t: &Trained) -> Result<(), ExecError> {
        let path = self.root.join(Self::TRAINED);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ExecError::io("open", &path, e))?;
        let line = serde_json::to_string(t).unwrap_or_default();
        writeln!(f, "{line}").map_err(|e| ExecError::io("write", &path, e))
    }

    /// Every stretch of training recorded in `trained.jsonl`.
    pub fn read_trained(&self) -> Result<Vec<Trained>, ExecError> {
        let path = self.root.join(Self::TRAINED);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ExecError::io("read", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{tiny, zero_to_full};
    use crate::plan::spec::{ExperimentSpec, RunSpec};
    use crate::plan::{compile_experiment, compile_run};
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
        let dir = ExperimentDir::new(tmp.path());
        let runs = [
            zero_to_full("a", tiny(), 80, 100),
            zero_to_full("b", tiny(), 60, 100),
        ];
        let plan = experiment(&runs);
        dir.claim(&plan, false).unwrap();
        dir.claim(&plan, true).unwrap();

        // Planned by a progc that shared less: the same experiment, so the new plan replaces it.
        let path = dir.plan_file();
        let mut older = plan.clone();
        older.sharing.steps_trained = older.sharing.steps_separate;
        fs::write(&path, serde_json::to_string_pretty(&older).unwrap()).unwrap();
        dir.claim(&plan, false).unwrap();
        assert_eq!(dir.read_plan().unwrap().sharing, plan.sharing);

        // Another seed for `b` is another recipe: refused, and the file is left alone.
        let mut changed = runs.clone();
        changed[1].seed += 1;
        let e = dir.claim(&experiment(&changed), false).unwrap_err();
        assert!(e.message.contains("different experiment"), "{e}");
        assert!(e.help.is_some());
        assert_eq!(dir.read_plan().unwrap().runs[1].spec, runs[1]);

        fs::write(&path, "{").unwrap();
        let e = dir.claim(&plan, false).unwrap_err();
        assert!(e.message.contains("damaged"), "{e}");
    }

    #[test]
    fn a_run_dir_is_claimed_once_and_never_by_another_run() {
        let tmp = scratch("claim-run");
        let dir = RunDir::new(tmp.path().join("r"));
        let a = compile_run(&zero_to_full("a", tiny(), 80, 100));
        let b = compile_run(&zero_to_full("b", tiny(), 60, 100));
        let lock = dir.claim(&a.runs[0], true).unwrap();
        assert!(lock.is_some() && dir.holds_run());
        drop(lock);
        for other in [&a.runs[0], &b.runs[0]] {
            let e = dir.claim(other, true).unwrap_err();
            assert!(e.message.contains("already holds run `a`"), "{e}");
            assert!(e.help.as_deref().unwrap_or("").contains("--resume"), "{e}");
        }
        assert_eq!(dir.read_plan().unwrap().spec.name, "a");
        dir.check_holds(&a.runs[0]).unwrap();
        let e = dir.check_holds(&b.runs[0]).unwrap_err();
        assert!(e.message.contains("another recipe than `b`"), "{e}");
    }
}
