//! The wgpu backend against the CPU backend, through the `progc` binary, on the machine's first
//! wgpu adapter (Mesa's lavapipe in CI, which runs Vulkan compute on the CPU):
//! - 50 steps with a growth (0 -> 2 at step 30): every logged training and validation loss on
//!   wgpu matches the CPU run within `TOL`, with `--log-every 1`;
//! - `--log-every 5` writes the rows it promises and ends at the same losses;
//! - a run stopped on the CPU resumes on wgpu, and one stopped on wgpu resumes on the CPU,
//!   each ending on the uninterrupted CPU trajectory.
//!
//! Tolerance: both backends compute in f32, but the wgpu kernels (fused elementwise chains,
//! autotuned matmuls, tree reductions) sum in other orders than the CPU kernels, and AdamW
//! carries each rounding difference forward. Measured on lavapipe (llvmpipe, LLVM 15, 2 cores):
//! the largest difference over the 50 steps was 4.8e-7 nats; `TOL` = 1e-4 nats leaves a
//! margin of 200x for other adapters and drivers while still catching a wrong kernel (a
//! mis-scaled softmax or a dropped gradient moves the loss by 1e-2 or more within 50 steps).
//! Each test prints its figure (`--nocapture`).
//!
//! A machine without a wgpu adapter skips these tests and says so on stderr, uncaptured; with
//! `PROGC_REQUIRE_WGPU` set (as `.ci/run` does) it fails them instead.

#[path = "../src/testing.rs"]
mod testing;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testing::scratch;

use progc::exec::device::wgpu_adapters;
use progc::exec::io::metrics::{MetricRow, Summary, read_metrics};

const TOL: f64 = 1e-4;
const STEPS: u64 = 50;

/// Whether there is an adapter to test on; when not, says so where the test output shows it.
fn have_wgpu(test: &str) -> bool {
    let adapters = wgpu_adapters();
    if adapters.is_empty() {
        // CI sets it: there, a skipped GPU path is a failure, not a pass.
        assert!(
            std::env::var_os("PROGC_REQUIRE_WGPU").is_none(),
            "{test}: PROGC_REQUIRE_WGPU is set but this machine has no wgpu adapter (on \
             Debian: apt-get install mesa-vulkan-drivers)"
        );
        // Straight to the process's stderr: libtest captures `eprintln!`, not this.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no wgpu adapter on this machine (on Debian: \
             apt-get install mesa-vulkan-drivers)"
        );
        return false;
    }
    let _ = writeln!(std::io::stderr(), "{test}: on wgpu:0 = {}", adapters[0]);
    true
}

/// A toy corpus and a recipe with a growth at step 30 of 50.
fn recipe(dir: &Path) -> PathBuf {
    let words = [
        "the", "model", "grows", "deep", "after", "a", "shallow", "start",
    ];
    let mut x: u64 = 7;
    let mut text = String::new();
    while text.len() < 6000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(words[((x >> 33) % words.len() as u64) as usize]);
        text.push(if x.is_multiple_of(7) { '\n' } else { ' ' });
    }
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, text).expect("corpus");
    let src = format!(
        r#"
        model toy {{ width: 32, heads: 2, depth: 2, context: 16 }}
        recipe toy_grow {{
          model = toy
          data = text("{}", tokenizer: bytes, val: 10%)
          steps = {STEPS}
          batch = 4 x 16
          optimizer = adamw(lr: 3e-3)
          schedule = wsd(warmup: 4, decay: 10)
          eval_every = 10
          start depth 0
          grow at 30 to depth 2
        }}
        "#,
        corpus.display()
    );
    let path = dir.join("grow.prog");
    std::fs::write(&path, src).expect("recipe");
    path
}

fn progc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_progc"))
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("the progc binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn ok(args: &[&str]) -> String {
    let o = progc(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{}", text(&o));
    text(&o)
}

/// `progc run RECIPE --no-progress --out OUT` and `extra`: its metrics.
fn train(recipe: &Path, out: &Path, extra: &[&str]) -> Vec<MetricRow> {
    let mut args = vec!["run", path(recipe), "--no-progress", "--out", path(out)];
    args.extend_from_slice(extra);
    ok(&args);
    read_metrics(&out.join("metrics.jsonl")).expect("metrics")
}

/// The largest loss difference between rows of the same step; every row of `b` must have its
/// step in `a`.
fn worst_difference(a: &[MetricRow], b: &[MetricRow]) -> f64 {
    let mut worst = 0.0f64;
    for y in b {
        let x = a
            .iter()
            .find(|x| x.step == y.step)
            .unwrap_or_else(|| panic!("step {} is missing from the reference", y.step));
        assert_eq!(x.depth, y.depth, "depth at step {}", y.step);
        worst = worst.max((x.train_loss - y.train_loss).abs());
        match (x.val_loss, y.val_loss) {
            (Some(u), Some(v)) => worst = worst.max((u - v).abs()),
            (None, None) => {}
            other => panic!("step {}: validation rows differ: {other:?}", y.step),
        }
    }
    worst
}

#[test]
fn wgpu_follows_the_cpu_trajectory_across_a_growth() {
    if !have_wgpu("wgpu_follows_the_cpu_trajectory_across_a_growth") {
        return;
    }
    let tmp = scratch("parity");
    let dir = tmp.path();
    let r = recipe(dir);
    let every = ["--log-every", "1"];
    let cpu = train(
        &r,
        &dir.join("cpu"),
        &[&["--device", "cpu"][..], &every].concat(),
    );
    let gpu = train(
        &r,
        &dir.join("wgpu"),
        &[&["--device", "wgpu"][..], &every].concat(),
    );
    assert_eq!(gpu.len() as u64, STEPS, "a row per step");
    assert_eq!(
        gpu.iter().map(|r| r.step).collect::<Vec<_>>(),
        cpu.iter().map(|r| r.step).collect::<Vec<_>>()
    );
    assert!(
        gpu.iter().any(|r| r.depth == 0) && gpu.last().unwrap().depth == 2,
        "the growth ran"
    );
    let worst = worst_difference(&cpu, &gpu);
    eprintln!(
        "wgpu vs cpu, {STEPS} steps: largest loss difference {worst:.2e} nats (tolerance {TOL:.0e})"
    );
    assert!(worst < TOL, "wgpu and cpu differ by {worst} nats");
    let s = Summary::read(&dir.join("wgpu/summary.json")).expect("summary");
    assert_eq!(s.device, "wgpu:0");

    // Fewer reads from the device: a row after every 5th step (steps count from 0), at
    // evaluations, right after the growth and at the end, with the same final losses.
    let sparse = train(
        &r,
        &dir.join("sparse"),
        &["--device", "wgpu", "--log-every", "5"],
    );
    assert!(sparse.len() < gpu.len() / 2, "{} rows", sparse.len());
    for row in &sparse {
        let promised = (row.step + 1) % 5 == 0 || row.val_loss.is_some() || row.step + 1 == STEPS;
        let after_growth = row.step == 30;
        assert!(
            promised || after_growth,
            "unexpected row at step {}",
            row.step
        );
    }
    let (a, b) = (gpu.last().unwrap(), sparse.last().unwrap());
    assert_eq!(a.step, b.step);
    let d = (a.val_loss.unwrap() - b.val_loss.unwrap()).abs();
    assert!(
        d < TOL,
        "the final validation loss moved by {d} with --log-every 5"
    );
}

#[test]
fn checkpoints_move_between_cpu_and_wgpu() {
    if !have_wgpu("checkpoints_move_between_cpu_and_wgpu") {
        return;
    }
    let tmp = scratch("resume");
    let dir = tmp.path();
    let r = recipe(dir);
    let every = ["--log-every", "1"];
    let reference = train(
        &r,
        &dir.join("cpu"),
        &[&["--device", "cpu"][..], &every].concat(),
    );
    for (first, then) in [("cpu", "wgpu"), ("wgpu", "cpu")] {
        let out = dir.join(format!("{first}-then-{then}"));
        let before = [&["--device", first, "--stop-after", "20"][..], &every].concat();
        train(&r, &out, &before);
        let t = ok(&[
            "run",
            "--resume",
            path(&out),
            "--no-progress",
            "--device",
            then,
            "--log-every",
            "1",
        ]);
        let rows = read_metrics(&out.join("metrics.jsonl")).expect("metrics");
        assert_eq!(rows.last().map(|r| r.step), Some(STEPS - 1), "{t}");
        let worst = worst_difference(&reference, &rows);
        eprintln!("{first} -> {then} at step 20: largest loss difference {worst:.2e} nats");
        assert!(
            worst < TOL,
            "{first} -> {then}: differs from the cpu run by {worst} nats"
        );
    }
}

#[test]
fn bf16_on_wgpu_is_a_clear_error() {
    if !have_wgpu("bf16_on_wgpu_is_a_clear_error") {
        return;
    }
    let tmp = scratch("bf16");
    let dir = tmp.path();
    let r = recipe(dir);
    let out = dir.join("run");
    let o = progc(&[
        "run",
        path(&r),
        "--no-progress",
        "--out",
        path(&out),
        "--device",
        "wgpu",
        "--precision",
        "bf16",
    ]);
    let t = text(&o);
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("bf16") && t.contains("--precision f32"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}
