//! Experiments end to end on a toy corpus: shared prefixes are trained once, an interrupted
//! experiment resumes without retraining, and the report agrees with the runs' summaries.

use std::path::{Path, PathBuf};

use progc::check::check_source;
use progc::diagnostic::has_errors;
use progc::exec::device::DeviceChoice;
use progc::exec::experiment::{ExperimentOptions, read_trained, run_experiment};
use progc::exec::metrics::{Summary, read_metrics};
use progc::exec::train::{self, RunOptions};
use progc::plan::{Plan, compile_experiment, compile_run};

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("progc-exp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Sentences of a few words in random order: more than bigram structure, deterministic.
fn write_corpus(dir: &Path) -> PathBuf {
    let words = [
        "the", "model", "grows", "deep", "after", "a", "shallow", "start", "then",
    ];
    let mut x: u64 = 12345;
    let mut text = String::new();
    while text.len() < 8000 {
        for i in 0..(3 + x % 5) {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if i > 0 {
                text.push(' ');
            }
            text.push_str(words[((x >> 33) % words.len() as u64) as usize]);
        }
        text.push_str(".\n");
    }
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).expect("corpus");
    path
}

/// Three runs that share their 0-layer prefix up to step 10 (the first two grow there).
fn toy_plan(corpus: &Path) -> Plan {
    let src = format!(
        r#"
        model toy {{ width: 32, heads: 2, depth: 2, context: 16 }}
        data d = text("{}", tokenizer: bytes, val: 10%)
        recipe early {{
          model = toy
          data = d
          steps = 20
          batch = 4 x 16
          optimizer = adamw(lr: 3e-3)
          schedule = wsd(warmup: 2, decay: 4)
          seed = 3
          eval_every = 5
          start depth 0
          grow at 10 to depth 2
        }}
        recipe early_zero = early {{ grow at 10 to depth 2 {{ init: zero }} }}
        recipe late = early {{ grow at 15 to depth 2 }}
        experiment toy_exp {{ runs: [early, early_zero, late], reference: early }}
        "#,
        corpus.display()
    );
    let (spec, _, diags) = check_source("toy.prog", &src, &[]);
    assert!(!has_errors(&diags), "{diags:#?}");
    compile_experiment(&spec.experiments[0], &spec.runs)
}

fn opts(dir: &Path, stop_after: Option<u64>) -> ExperimentOptions {
    ExperimentOptions {
        device: DeviceChoice::Cpu,
        out_dir: dir.to_path_buf(),
        progress: false,
        stop_after,
        tuning: Default::default(),
    }
}

#[test]
fn shared_prefix_is_trained_once_and_resumes_without_retraining() {
    let dir = temp("shared");
    let corpus = write_corpus(&dir);
    let plan = toy_plan(&corpus);
    assert_eq!(
        (plan.sharing.steps_separate, plan.sharing.steps_trained),
        (60, 40)
    );
    let out = dir.join("exp");

    // Interrupted in the middle of the first run ...
    let stopped = run_experiment(&plan, &opts(&out, Some(13))).expect("first part");
    assert!(stopped.is_none(), "stopped early");
    // ... and continued by the same call without the stop.
    let report = run_experiment(&plan, &opts(&out, None))
        .expect("rest")
        .expect("finished");

    // Exactly the plan's steps were trained: 0..13 and 13..20 of `early`, 10..20 of the others.
    let trained = read_trained(&out).expect("log");
    let steps: u64 = trained.iter().map(|t| t.to - t.from).sum();
    assert_eq!(steps, plan.sharing.steps_trained, "{trained:?}");
    for run in ["late", "early_zero"] {
        assert!(
            trained.iter().any(|t| t.run == run && t.from == 10),
            "{trained:?}"
        );
    }

    // Both runs have the same metrics on the shared prefix, and every step is present.
    let early = read_metrics(&out.join("early/metrics.jsonl")).expect("early metrics");
    let late = read_metrics(&out.join("late/metrics.jsonl")).expect("late metrics");
    // Compared as JSON: the first row's tok/s is NaN (no timed step yet), and NaN != NaN.
    let prefix = |rows: &[progc::exec::metrics::MetricRow]| -> Vec<String> {
        rows.iter()
            .filter(|r| r.step < 10)
            .map(|r| serde_json::to_string(r).expect("row"))
            .collect()
    };
    assert_eq!(prefix(&early), prefix(&late));
    assert_eq!(
        late.iter().map(|r| r.step).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );

    // A run started from the shared checkpoint ends exactly where an independent run ends.
    let alone = dir.join("late-alone");
    let late_plan = compile_run(&plan.run("late").expect("late").spec);
    let ro = RunOptions {
        device: DeviceChoice::Cpu,
        out_dir: alone.clone(),
        progress: false,
        stop_after: None,
        checkpoint_at: Vec::new(),
        tuning: Default::default(),
    };
    let alone_summary = train::run(&late_plan.runs[0], &ro).expect("independent run");
    let late_summary = Summary::read(&out.join("late/summary.json")).expect("late summary");
    assert_eq!(alone_summary.final_val_loss, late_summary.final_val_loss);
    assert_eq!(
        alone_summary.final_train_loss,
        late_summary.final_train_loss
    );

    // The report's numbers are the summaries'.
    for run in &report.runs {
        let s = Summary::read(&out.join(&run.run).join("summary.json")).expect("summary");
        assert_eq!(run.final_val_loss, s.final_val_loss);
        assert_eq!(run.flops, s.flops);
        assert_eq!(run.growth_steps, s.growth_steps);
    }
    let reference = Summary::read(&out.join("early/summary.json")).expect("ref");
    let gap = report
        .runs
        .iter()
        .find(|r| r.run == "late")
        .expect("late")
        .gap;
    assert!((gap - (late_summary.final_val_loss / reference.final_val_loss - 1.0)).abs() < 1e-12);
    assert_eq!(report.runs[0].gap, 0.0);
    assert!(out.join("report.md").exists() && out.join("val_vs_flops.png").exists());

    // Running it again trains nothing.
    let before = read_trained(&out).expect("log").len();
    run_experiment(&plan, &opts(&out, None)).expect("again");
    assert_eq!(read_trained(&out).expect("log").len(), before);
    let _ = std::fs::remove_dir_all(&dir);
}
