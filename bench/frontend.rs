//! Front-end speed: load, check and plan every std and example file, repeatedly, and print the
//! time per pass (target: under 100 ms for the whole std library on a 2-core machine).
//!
//! Run: `cargo bench --bench frontend`

use std::path::Path;
use std::time::Instant;

use progc::check::check;
use progc::plan::{compile_experiment, compile_run};
use progc::syntax::load_program;

const FILES: &[&str] = &[
    "std/gpt2.prog",
    "std/schedules.prog",
    "std/paper.prog",
    "examples/tiny.prog",
    "examples/gpt2_small.prog",
];

/// One pass: every file loaded, checked, and every run and experiment planned.
fn pass() -> (usize, usize) {
    let (mut runs, mut experiments) = (0, 0);
    for f in FILES {
        let (program, _) = load_program(Path::new(f), &[]).expect("std and examples are readable");
        let (spec, diags) = check(&program);
        assert!(!progc::diagnostic::has_errors(&diags), "{f} has errors");
        for r in &spec.runs {
            std::hint::black_box(compile_run(r));
            runs += 1;
        }
        for e in &spec.experiments {
            std::hint::black_box(compile_experiment(e, &spec.runs));
            experiments += 1;
        }
    }
    (runs, experiments)
}

fn main() {
    let (runs, experiments) = pass(); // warm the file cache
    let n = 20;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(pass());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[n / 2];
    println!(
        "front end: {} files, {runs} runs planned, {experiments} experiments planned per pass",
        FILES.len()
    );
    println!(
        "  median {median:.1} ms per pass, min {:.1} ms, max {:.1} ms ({n} passes)",
        times[0],
        times[n - 1]
    );
    println!(
        "  target < 100 ms: {}",
        if median < 100.0 { "met" } else { "NOT met" }
    );
}
