//! Stage plans: the resolved recipe (`spec`) compiled into a petgraph DAG of training segments
//! and growth transitions (`ir`), with parameter counts and FLOPs (`flops`) and the LR rule
//! (`schedule`). Pure: no IO, no burn.

pub mod compile;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod flops;
pub mod ir;
pub mod render;
pub mod schedule;
pub mod spec;

pub use compile::{compile_experiment, compile_run};
pub use ir::{Plan, RunPlan, Segment, StageGraph, StageNode, Transition};
