//! Experiments end to end on a toy corpus: shared prefixes are trained once, an interrupted
//! experiment resumes without retraining, and the report agrees with the runs' summaries.

#[path = "../src/testing.rs"]
mod testing;

use std::path::{Path, PathBuf};
use testing::scratch;

use progc::check::check_source;
use progc::diagnostic::has_errors;
use progc::exec::device::DeviceChoice;
use progc::exec::io::metrics::{Summary, read_metrics};
use progc::exec::jobs::experiment::{read_trained, run_experiment};
use progc::exec::jobs::train::{self, RunOptions};
use progc::plan::{Plan, compile_experiment, compile_run};

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

/// A toy model, its corpus and a recipe `early` (0 layers, grown to 2 at step 10 of 20),
/// followed by `rest`.
fn toy_source(corpus: &Path, rest: &str) -> String {
    format!(
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
        {rest}
        "#,
        corpus.display()
    )
}

/// The plan of the first experiment of `toy_source(corpus, rest)`.
fn toy_experiment(corpus: &Path, rest: &str) -> Plan {
    let (spec, _, diags) = check_source("toy.prog", &toy_source(corpus, rest), &[]);
    assert!(!has_errors(&diags), "{diags:#?}");
    compile_experiment(&spec.experiments[0], &spec.runs)
}

/// Four runs that share their 0-layer prefix up to step 10 (the first, second and fourth grow
/// there; the fourth scales its residual branches, which is inert before the growth).
fn toy_plan(corpus: &Path) -> Plan {
    toy_experiment(
        corpus,
        "recipe early_zero = early { grow at 10 to depth 2 { init: zero } }
        recipe late = early { grow at 15 to depth 2 }
        model toy_scaled = toy { residual: inv_sqrt_depth }
        recipe scaled = early { model = toy_scaled }
        experiment toy_exp { runs: [early, early_zero, late, scaled], reference: early }",
    )
}

fn opts(dir: &Path, stop_after: Option<u64>) -> RunOptions {
    RunOptions {
        device: DeviceChoice::Cpu,
        out_dir: dir.to_path_buf(),
        progress: false,
        stop_after,
        checkpoint_at: Vec::new(),
        tuning: Default::default(),
        parallel: None,
    }
}

#[test]
fn shared_prefix_is_trained_once_and_resumes_without_retraining() {
    let tmp = scratch("shared");
    let dir = tmp.path();
    let corpus = write_corpus(dir);
    let plan = toy_plan(&corpus);
    assert_eq!(
        (plan.sharing.steps_separate, plan.sharing.steps_trained),
        (80, 50)
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
    for run in ["late", "early_zero", "scaled"] {
        assert!(
            trained.iter().any(|t| t.run == run && t.from == 10),
            "{trained:?}"
        );
    }

    // Both runs have the same metrics on the shared prefix, and every step is present.
    let early = read_metrics(&out.join("early/metrics.jsonl")).expect("early metrics");
    let late = read_metrics(&out.join("late/metrics.jsonl")).expect("late metrics");
    // Compared as JSON: the first row's tok/s is NaN (no timed step yet), and NaN != NaN.
    let prefix = |rows: &[progc::exec::io::metrics::MetricRow]| -> Vec<String> {
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
    for name in ["late", "scaled"] {
        let alone = dir.join(format!("{name}-alone"));
        let plan_alone = compile_run(&plan.run(name).expect("run").spec);
        let alone_summary =
            train::run(&plan_alone.runs[0], &opts(&alone, None)).expect("independent run");
        let shared = Summary::read(&out.join(name).join("summary.json")).expect("summary");
        assert_eq!(
            alone_summary.final_val_loss, shared.final_val_loss,
            "{name}"
        );
        assert_eq!(
            alone_summary.final_train_loss, shared.final_train_loss,
            "{name}"
        );
    }
    let late_summary = Summary::read(&out.join("late/summary.json")).expect("late summary");

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
}

/// The stretches of training an experiment logged, as `(run, from, to)`.
fn stretches(dir: &Path) -> Vec<(String, u64, u64)> {
    read_trained(dir)
        .expect("log")
        .into_iter()
        .map(|t| (t.run, t.from, t.to))
        .collect()
}

/// Copies a run directory into another experiment's folder (made if missing), as a user would
/// with `cp -r`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("a run dir inside an experiment"))
        .expect("experiment dir");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        copied.success(),
        "cp -r {} {}",
        from.display(),
        to.display()
    );
}

#[test]
fn a_finished_run_copied_in_donates_its_prefix_even_when_listed_later() {
    let tmp = scratch("donor");
    let dir = tmp.path();
    let corpus = write_corpus(dir);
    // `early` alone: it keeps its checkpoint at step 10, before its growth.
    let first = toy_experiment(&corpus, "experiment a { runs: [early], reference: early }");
    let a = dir.join("a");
    run_experiment(&first, &opts(&a, None)).expect("a");
    // `late` shares `[0, 10)` with `early`, which this plan lists after it.
    let second = toy_experiment(
        &corpus,
        "recipe late = early { grow at 15 to depth 2 }
        experiment b { runs: [late, early], reference: late }",
    );
    let b = dir.join("b");
    copy_dir(&a.join("early"), &b.join("early"));
    run_experiment(&second, &opts(&b, None))
        .expect("b")
        .expect("finished");
    assert_eq!(stretches(&b), [("late".to_string(), 10, 20)]);
    // A donor without a checkpoint at the end of the shared prefix gives its latest one inside
    // it: `early` stopped at step 7 (periodic checkpoints at 5, 6, 7) starts `late` at 7, and
    // `late` ends bit-identical to the one started at 10; `early` then continues from 7.
    let stopped = dir.join("stopped");
    run_experiment(&first, &opts(&stopped, Some(7))).expect("stopped");
    let d = dir.join("d");
    copy_dir(&stopped.join("early"), &d.join("early"));
    run_experiment(&second, &opts(&d, None))
        .expect("d")
        .expect("finished");
    assert_eq!(
        stretches(&d),
        [("late".to_string(), 7, 20), ("early".to_string(), 7, 20)]
    );
    let final_val = |dir: &Path| {
        Summary::read(&dir.join("late/summary.json"))
            .expect("late summary")
            .final_val_loss
            .to_bits()
    };
    assert_eq!(final_val(&d), final_val(&b));
    // Another recipe's run copied in under `early`'s name (seed 5's) is refused before
    // anything trains: not continued, not counted as finished, not a donor.
    let other = toy_experiment(
        &corpus,
        "experiment s { runs: [early], reference: early, seeds: [5] }",
    );
    let s5 = dir.join("s5");
    run_experiment(&other, &opts(&s5, None)).expect("s5");
    let c = dir.join("c");
    copy_dir(&s5.join("early@seed5"), &c.join("early"));
    let e = run_experiment(&second, &opts(&c, None)).expect_err("foreign run");
    assert!(
        e.message
            .contains("another recipe than `early` (`seed` differs)"),
        "{e}"
    );
    assert!(read_trained(&c).expect("log").is_empty());
    assert!(!c.join("late").exists());
}

#[test]
fn seeds_train_every_run_per_seed_and_report_over_them() {
    let tmp = scratch("seeds");
    let dir = tmp.path();
    let corpus = write_corpus(dir);
    let plan = toy_experiment(
        &corpus,
        "recipe late = early { grow at 15 to depth 2 }
        experiment seeded { runs: [early, late], reference: early, seeds: [0, 5] }",
    );
    let names: Vec<&str> = plan.runs.iter().map(|r| r.spec.name.as_str()).collect();
    assert_eq!(
        names,
        ["early@seed0", "late@seed0", "early@seed5", "late@seed5"]
    );
    // The 0-layer prefix [0, 10) is shared within each seed, never across seeds.
    assert_eq!(
        (plan.sharing.steps_separate, plan.sharing.steps_trained),
        (80, 60)
    );
    let out = dir.join("exp");
    let report = run_experiment(&plan, &opts(&out, None))
        .expect("trained")
        .expect("finished");
    let steps: u64 = read_trained(&out)
        .expect("log")
        .iter()
        .map(|t| t.to - t.from)
        .sum();
    assert_eq!(steps, 60);

    // `early@seed5` is `early` with its seed replaced by 5: the same as a single run of it.
    let alone = dir.join("early-seed5");
    let mut early5 = plan.run("early@seed5").expect("early@seed5").spec.clone();
    assert_eq!(early5.seed, 5);
    early5.name = "early".into();
    let ro = RunOptions {
        device: DeviceChoice::Cpu,
        out_dir: alone,
        progress: false,
        stop_after: None,
        checkpoint_at: Vec::new(),
        tuning: Default::default(),
        parallel: None,
    };
    let single = train::run(&compile_run(&early5).runs[0], &ro).expect("single run");
    let final_of = |name: &str| {
        Summary::read(&out.join(name).join("summary.json"))
            .expect("summary")
            .final_val_loss
    };
    assert_eq!(single.final_val_loss, final_of("early@seed5"));
    // Different seeds train different models.
    assert_ne!(final_of("early@seed0"), final_of("early@seed5"));

    // The report pairs each run with the reference at its seed and summarizes over seeds.
    assert_eq!(report.seeds, vec![0, 5]);
    let late = report
        .recipes
        .iter()
        .find(|r| r.recipe == "late")
        .expect("late over seeds");
    let want = [
        final_of("late@seed0") - final_of("early@seed0"),
        final_of("late@seed5") - final_of("early@seed5"),
    ];
    assert_eq!(late.gap_nats, want);
    let gap = late.gap.as_ref().expect("two paired seeds");
    assert!((gap.mean - (want[0] + want[1]) / 2.0).abs() < 1e-12);
    assert_eq!(report.orderings.len(), 1);
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(
        md.contains("## Over 2 seeds (0, 5)") && md.contains("| late@seed5 |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("val_vs_step.svg")).expect("plot");
    assert!(
        svg.contains("late (mean of 2)"),
        "the plot has one curve per recipe"
    );
}
