//! When the loop writes a checkpoint, and which files it goes to.
//!
//! Invariants:
//! - `latest` is written at every checkpoint: before each growth, at the steps where other
//!   runs of an experiment branch off (both also kept as `step-<N>`), every
//!   `checkpoint_every` steps and whenever the clock bound has passed (both also kept as one
//!   of the `KEEP_RECENT` most recent), at the last step, and at a stop;
//! - only the leader writes; every write is atomic (`Checkpoint::write`).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::exec::error::ExecError;
use crate::exec::io::checkpoint::Checkpoint;
use crate::exec::io::checkpoint::{KEEP_RECENT, latest_path, prune_recent, recent_path, step_path};
use crate::plan::ir::RunPlan;

pub struct CheckpointPolicy<'a> {
    dir: &'a Path,
    every: u64,
    clock: Option<Duration>,
    last: Instant,
    /// Steps kept as `step-<N>`: growths and branch points.
    keep: Vec<u64>,
}

/// What to write after a step.
pub struct Due {
    /// Also keep it as `step-<N>`.
    pub keep: bool,
    /// Also keep it among the most recent.
    pub recent: bool,
}

impl<'a> CheckpointPolicy<'a> {
    pub fn new(dir: &'a Path, plan: &RunPlan, branch_points: &[u64]) -> CheckpointPolicy<'a> {
        let mut keep: Vec<u64> = plan.spec.growths.iter().map(|g| g.at_step).collect();
        keep.extend_from_slice(branch_points);
        CheckpointPolicy {
            dir,
            every: plan.spec.checkpoint_every,
            clock: plan.spec.checkpoint_clock(),
            last: Instant::now(),
            keep,
        }
    }

    /// Whether the state after `done` steps is written; `last` is the last step of the
    /// session (the run's end, a `--stop-after` or a stop signal).
    pub fn due(&self, done: u64, last: bool) -> Option<Due> {
        let on_clock = self.clock.is_some_and(|b| self.last.elapsed() >= b);
        let recent = on_clock || (self.every > 0 && done.is_multiple_of(self.every));
        let keep = self.keep.contains(&done);
        (keep || recent || last).then_some(Due { keep, recent })
    }

    pub fn write(&mut self, ck: &Checkpoint, due: &Due) -> Result<(), ExecError> {
        self.last = Instant::now();
        ck.write(&latest_path(self.dir))?;
        if due.keep {
            ck.write(&step_path(self.dir, ck.step))?;
        }
        if due.recent {
            ck.write(&recent_path(self.dir, ck.step))?;
            prune_recent(self.dir, KEEP_RECENT);
        }
        Ok(())
    }
}
