//! What the loop reports about itself: metrics rows, the progress bar and the clock, and when
//! (the [`Cadence`] of evaluations and rows). Adding a metrics sink means adding it to
//! [`Observer::row`]; evaluating or logging at other steps means changing [`Cadence`].
//!
//! Invariants:
//! - nothing here touches the model, the optimizer or the data: observing never changes what
//!   is trained;
//! - only the leader writes rows (the other replicas have no writer);
//! - time is split into warm-up (the first step of a freshly built model, and growths) and
//!   training; `tok/s` counts training time only.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::exec::error::ExecError;
use crate::exec::io::checkpoint::Timing;
use crate::exec::io::metrics::{MetricRow, MetricsWriter, SegmentTiming};
use crate::plan::ir::RunPlan;
use crate::plan::spec::GrowthSpec;

/// When the loop evaluates and writes a metrics row.
pub struct Cadence<'a> {
    pub plan: &'a RunPlan,
    /// A row every this many steps (at least 1).
    pub log_every: u64,
    /// The last step of this session (`--stop-after`, else the run's end).
    pub end: u64,
}

impl Cadence<'_> {
    /// Whether the validation loss is measured after step `s`: every `eval_every` steps, at
    /// the run's end, and right before a growth.
    pub fn eval_due(&self, s: u64) -> bool {
        let spec = &self.plan.spec;
        (spec.eval_every > 0 && (s + 1).is_multiple_of(spec.eval_every))
            || s + 1 == spec.total_steps
            || self.plan.growth_at(s + 1).is_some()
    }

    /// Whether step `s` ends with a metrics row (and so a read of the loss): every
    /// `log_every` steps, at evaluations, growths (`grew`) and the session's last step, and
    /// when a stop signal must be shared with the other replicas (`stop`).
    pub fn row_due(&self, s: u64, grew: bool, stop: bool) -> bool {
        (s + 1).is_multiple_of(self.log_every)
            || self.eval_due(s)
            || grew
            || s + 1 == self.end
            || stop
    }
}

/// The metrics file and the progress bar.
pub struct Observer {
    metrics: Option<MetricsWriter>,
    bar: ProgressBar,
}

impl Observer {
    /// Opens `metrics.jsonl` (created at step 0, truncated to `start` on a resume) when
    /// `leader`, and the bar when `progress`.
    pub fn open(
        path: &Path,
        growths: &[GrowthSpec],
        leader: bool,
        start: u64,
        total: u64,
        progress: bool,
    ) -> Result<Observer, ExecError> {
        let metrics = match (leader, start) {
            (false, _) => None,
            (true, 0) => Some(MetricsWriter::create(path, growths)?),
            (true, _) => Some(MetricsWriter::resume(path, start, growths)?),
        };
        let bar = if progress {
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
        Ok(Observer { metrics, bar })
    }

    pub fn grew(&self, step: u64, g: &GrowthSpec, val_loss: f64) {
        self.bar.println(format!(
            "step {step}: grew depth {} -> {} ({:?}), val loss {val_loss:.4}",
            g.from_depth, g.to_depth, g.init
        ));
    }

    /// One metrics row, to every sink.
    pub fn row(&mut self, row: &MetricRow) -> Result<(), ExecError> {
        if let Some(m) = &mut self.metrics {
            m.write(row)?;
        }
        self.bar.set_message(format!(
            "seg {} depth {} loss {:.4} lr {:.2e} {:.0} tok/s",
            row.segment, row.depth, row.train_loss, row.lr, row.tok_per_s
        ));
        Ok(())
    }

    pub fn stepped(&self, done: u64) {
        self.bar.set_position(done);
    }

    pub fn failed(&self) {
        self.bar.abandon();
    }

    pub fn finished(&self) {
        self.bar.finish_and_clear();
    }
}

/// Wall-clock accounting of one session of the loop, into the run's `Timing` (which a
/// checkpoint carries over to the next session).
pub struct Clock {
    started: Instant,
    /// `Timing::wall_s` and `train_s` when this session started.
    wall0: f64,
    train0: f64,
    /// The next step is the first of a freshly built model: it counts as warm-up.
    fresh: bool,
    /// Training steps of this session, and those since the last row with their seconds.
    timed_steps: u64,
    since_row: (u64, f64),
    segment_clock: Instant,
}

impl Clock {
    pub fn start(timing: &Timing) -> Clock {
        Clock {
            started: Instant::now(),
            wall0: timing.wall_s,
            train0: timing.train_s,
            fresh: true,
            timed_steps: 0,
            since_row: (0, 0.0),
            segment_clock: Instant::now(),
        }
    }

    /// Seconds since the run first started, over all sessions.
    pub fn wall(&self) -> f64 {
        self.wall0 + self.started.elapsed().as_secs_f64()
    }

    /// A growth took `since(t0)`; the next step compiles and warms up the new model.
    pub fn grew(&mut self, timing: &mut Timing, t0: Instant) {
        timing.warmup_s += t0.elapsed().as_secs_f64();
        self.fresh = true;
    }

    /// Opens the timing of `segment` when `step` is its first in this run.
    pub fn enter(&mut self, timing: &mut Timing, segment: usize, depth: usize, step: u64) {
        if timing.segments.last().map(|t| t.index) != Some(segment) {
            timing.segments.push(SegmentTiming {
                index: segment,
                depth,
                start_step: step,
                end_step: step,
                wall_s: 0.0,
            });
            self.segment_clock = Instant::now();
        }
    }

    /// One optimizer step took `dt` seconds.
    pub fn stepped(&mut self, timing: &mut Timing, dt: f64) {
        if self.fresh {
            timing.warmup_s += dt;
            self.fresh = false;
        } else {
            timing.train_s += dt;
            self.timed_steps += 1;
            self.since_row.0 += 1;
            self.since_row.1 += dt;
        }
    }

    /// Training tokens per second since the previous row (NaN when none was timed).
    pub fn row_throughput(&mut self, tokens_per_step: u64) -> f64 {
        let (steps, secs) = std::mem::take(&mut self.since_row);
        if secs > 0.0 {
            (steps * tokens_per_step) as f64 / secs
        } else {
            f64::NAN
        }
    }

    /// Closes step `done - 1` in the current segment's timing.
    pub fn step_done(&mut self, timing: &mut Timing, done: u64) {
        if let Some(t) = timing.segments.last_mut() {
            t.end_step = done;
            t.wall_s += self.segment_clock.elapsed().as_secs_f64();
            self.segment_clock = Instant::now();
        }
    }

    /// Training steps and seconds of this session (for a replica's throughput).
    pub fn session(&self, timing: &Timing) -> (u64, f64) {
        (self.timed_steps, timing.train_s - self.train0)
    }
}
