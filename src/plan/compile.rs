//! Lowers resolved runs into stage plans. (Being written.)

use super::ir::Plan;
use super::spec::{ExperimentSpec, RunSpec};

/// The plan of one run on its own.
pub fn compile_run(_spec: &RunSpec) -> Plan {
    todo!("plan::compile_run")
}

/// The plan of an experiment: its runs, in the experiment's order, sharing identical prefixes.
pub fn compile_experiment(_exp: &ExperimentSpec, _runs: &[RunSpec]) -> Plan {
    todo!("plan::compile_experiment")
}
