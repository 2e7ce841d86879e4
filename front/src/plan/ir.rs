//! The stage plan: a petgraph DAG of training segments (nodes) and transitions (edges).
//!
//! Invariants (established by `plan::compile`):
//! - a `Segment` has one depth and a half-open step range `[start_step, end_step)`, non-empty;
//! - each run's `segments` tile `[0, total_steps)` in order, split exactly at its growth steps;
//! - each run's `nodes` is a path in `graph` whose node ranges tile `[0, total_steps)`; nodes
//!   may be finer than segments where runs of an experiment branch apart;
//! - a node lists every run that trains it; a node listed by several runs is trained once
//!   (identical model, data order, seed, optimizer, batch and LR values up to its end);
//! - edges go forward in steps: `Grow` where the depth changes, `Continue` where it does not.

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use super::flops::{Flops, ParamCounts};
use super::spec::{GrowthSpec, RunSpec};

/// A stretch of training at one depth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub depth: usize,
    pub start_step: u64,
    /// Exclusive.
    pub end_step: u64,
    pub start_tokens: u64,
    pub end_tokens: u64,
    /// LR at `start_step` and at the segment's last step `end_step - 1`.
    pub lr_start: f64,
    pub lr_end: f64,
    pub params: ParamCounts,
    /// Exact training FLOPs per token at this depth.
    pub flops_per_token: f64,
    /// FLOPs of the whole segment in all conventions.
    pub flops: Flops,
}

impl Segment {
    pub fn steps(&self) -> u64 {
        self.end_step - self.start_step
    }
}

/// What happens between two consecutive nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    /// Same depth: training simply goes on (a split where runs branch apart).
    Continue,
    /// Depth expansion before the next node's first step.
    Grow(GrowthSpec),
}

/// A node of the stage graph: one segment trained by one or more runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageNode {
    pub segment: Segment,
    /// Names of the runs that pass through this node (trained once for all of them).
    pub runs: Vec<String>,
}

pub type StageGraph = DiGraph<StageNode, Transition>;

/// One run's view of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    pub spec: RunSpec,
    /// Depth-constant segments, split at growths.
    pub segments: Vec<Segment>,
    /// The run's path through `Plan::graph`.
    pub nodes: Vec<NodeIndex>,
    /// Total FLOPs of this run.
    pub flops: Flops,
    /// FLOPs of a fixed full-depth run of the same length (same tokens).
    pub fixed_flops: Flops,
    /// `flops / fixed_flops` per convention: the projected cost; `1 - ratio` is the saving.
    pub ratio: Flops,
    /// In an experiment with `seeds`: the recipe and seed this run trains (its name is
    /// [`replica_name`]`(recipe, seed)`). `None` otherwise: the run is its recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<Replica>,
}

/// One seed of one recipe, in an experiment with `seeds`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub recipe: String,
    pub seed: u64,
}

/// The run name of `recipe` trained with `seed` in a seeded experiment (also its directory).
pub fn replica_name(recipe: &str, seed: u64) -> String {
    format!("{recipe}@seed{seed}")
}

impl RunPlan {
    /// The recipe this run trains (its own name outside a seeded experiment).
    pub fn recipe(&self) -> &str {
        self.replica.as_ref().map_or(&self.spec.name, |r| &r.recipe)
    }

    /// The index in `segments` of the segment that trains `step`.
    pub fn segment_index(&self, step: u64) -> usize {
        let last = self.segments.len().saturating_sub(1);
        self.segments
            .iter()
            .position(|g| step < g.end_step)
            .unwrap_or(last)
    }

    /// The growth that happens as `step` starts, if any.
    pub fn growth_at(&self, step: u64) -> Option<&GrowthSpec> {
        self.spec.growths.iter().find(|g| g.at_step == step)
    }

    /// Training FLOPs of the first `steps` steps, in every convention (`flops` at the end).
    pub fn flops_until(&self, steps: u64) -> Flops {
        let tps = self.spec.batch.tokens_per_step();
        let depth_steps = self.segments.iter().filter(|g| g.start_step < steps);
        depth_steps.fold(Flops::default(), |total, g| {
            let tokens = (g.end_step.min(steps) - g.start_step) * tps;
            total + Flops::of(&self.spec.model, g.depth, tokens)
        })
    }

    /// FLOPs of the first `steps` steps of the same run at full depth throughout.
    pub fn fixed_flops_until(&self, steps: u64) -> Flops {
        let tokens = steps * self.spec.batch.tokens_per_step();
        Flops::of(&self.spec.model, self.spec.model.depth, tokens)
    }
}

/// What training shared prefixes once saves, over an experiment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sharing {
    /// Steps summed over all runs as if each were trained alone.
    pub steps_separate: u64,
    /// Steps actually trained (each node once).
    pub steps_trained: u64,
    pub flops_separate: Flops,
    pub flops_trained: Flops,
}

/// A compiled plan: one run, or every run of one experiment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The experiment this plan is for, when it is one.
    pub experiment: Option<String>,
    /// The reference run of the experiment.
    pub reference: Option<String>,
    pub runs: Vec<RunPlan>,
    pub graph: StageGraph,
    pub sharing: Sharing,
    /// The experiment's seeds (empty: one run per recipe, each with its own seed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    /// The experiment's frontier recipes (the reference at other lengths), planned after its
    /// runs at each seed; empty: no frontier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<String>,
}

impl Plan {
    pub fn run(&self, name: &str) -> Option<&RunPlan> {
        self.runs.iter().find(|r| r.spec.name == name)
    }

    /// Whether `run` is a frontier point (not one of the runs being compared).
    pub fn is_frontier(&self, run: &RunPlan) -> bool {
        self.frontier.iter().any(|f| f == run.recipe())
    }

    /// The reference run that `run` is compared with: the reference recipe at the same seed.
    pub fn reference_of(&self, run: &RunPlan) -> Option<&RunPlan> {
        let reference = self.reference.as_deref()?;
        if self.seeds.is_empty() {
            return self.run(reference);
        }
        self.runs
            .iter()
            .find(|r| r.recipe() == reference && r.spec.seed == run.spec.seed)
    }
}
