//! Snapshots of the compiled plan (text and JSON) of every recipe and experiment in the std
//! library and the examples, plus the paper's compute figures.

mod root;

use std::path::Path;

use progc_front::check::check;
use progc_front::diagnostic::has_errors;
use progc_front::plan::render::{render_json, render_text};
use progc_front::plan::spec::ProgramSpec;
use progc_front::plan::{compile_experiment, compile_run};
use progc_front::syntax::load_program;

fn load(path: &str) -> ProgramSpec {
    let (program, mut diags) = load_program(Path::new(path), &[]).expect("readable");
    let (spec, more) = check(&program);
    diags.extend(more);
    assert!(!has_errors(&diags), "{path} has errors: {diags:#?}");
    spec
}

/// Snapshot names must be unique per (file, recipe).
fn snapshot_all(path: &str, prefix: &str) {
    let spec = load(path);
    let entry_runs: Vec<_> = spec.runs.iter().collect();
    assert!(!entry_runs.is_empty(), "{path} defines no runs");
    for run in entry_runs {
        let plan = compile_run(run);
        insta::assert_snapshot!(format!("{prefix}__{}__text", run.name), render_text(&plan));
        insta::assert_snapshot!(format!("{prefix}__{}__json", run.name), render_json(&plan));
    }
    for exp in &spec.experiments {
        let plan = compile_experiment(exp, &spec.runs);
        insta::assert_snapshot!(
            format!("{prefix}__exp_{}__text", exp.name),
            render_text(&plan)
        );
    }
}

#[test]
fn example_tiny() {
    root::enter();
    snapshot_all("examples/tiny.prog", "examples_tiny");
}

#[test]
fn example_gpt2_small() {
    root::enter();
    snapshot_all("examples/gpt2_small.prog", "examples_gpt2_small");
}

#[test]
fn std_paper() {
    root::enter();
    snapshot_all("std/paper.prog", "std_paper");
}

#[test]
fn gpt2_small_at_point_eight_matches_the_papers_compute() {
    root::enter();
    // GPT-2 124M grown 0 -> 12 at 0.8T: ~0.45 of the fixed run's FLOPs with embeddings
    // counted, ~0.20 without.
    let spec = load("std/paper.prog");
    let run = spec
        .runs
        .iter()
        .find(|r| r.name == "gpu_zero_random")
        .expect("gpu_zero_random");
    let plan = compile_run(run);
    let r = plan.runs[0].ratio;
    assert!(
        (r.six_n_embedding - 0.45).abs() < 0.01,
        "{}",
        r.six_n_embedding
    );
    assert!(
        (r.six_n_non_embedding - 0.20).abs() < 0.005,
        "{}",
        r.six_n_non_embedding
    );
    let text = render_text(&plan);
    assert!(text.contains("6N, embeddings counted"), "{text}");
}

#[test]
fn a_tau_sweep_trains_the_zero_layer_prefix_once() {
    root::enter();
    let spec = load("std/paper.prog");
    let exp = spec
        .experiments
        .iter()
        .find(|e| e.name == "e5")
        .expect("e5");
    let plan = compile_experiment(exp, &spec.runs);
    assert!(plan.sharing.steps_trained < plan.sharing.steps_separate);
    // At each of its 3 seeds, the three 0-layer runs (tau 0.5, 0.7, 0.8) share [0, 0.5T), and
    // no node is shared across seeds.
    assert_eq!(plan.seeds, vec![0, 1, 2]);
    let first_nodes: Vec<_> = plan
        .seeds
        .iter()
        .map(|&seed| {
            let src0: Vec<_> = plan
                .runs
                .iter()
                .filter(|r| r.recipe().starts_with("tiny_src0_") && r.spec.seed == seed)
                .collect();
            assert_eq!(src0.len(), 3);
            assert_eq!(src0[0].nodes[0], src0[1].nodes[0]);
            assert_eq!(src0[1].nodes[0], src0[2].nodes[0]);
            src0[0].nodes[0]
        })
        .collect();
    assert!(first_nodes[0] != first_nodes[1] && first_nodes[1] != first_nodes[2]);
}
