//! Data-parallel training through the `progc` binary (each run is its own process, because
//! burn-collective's local server is one per process and backend):
//! - 2 CPU peers follow the 1-device loss trajectory over a run with a growth (0 -> 2);
//! - a run stopped on 2 peers resumes on 1 and ends where the uninterrupted run ends;
//! - 2 processes joined through node 0 on 127.0.0.1 match too;
//! - a node that dies stops the other with an error within the peer timeout;
//! - a batch that does not split over the peers is an error before anything is written;
//! - Ctrl-C stops the peers after the same step, checkpointed, and the run resumes.
//!
//! Tolerance: the peers average two half-batch gradients where one device takes the mean over
//! the whole batch, so the sums run in another order; the losses then agree to float rounding,
//! which AdamW carries forward. Every logged training and validation loss must agree within
//! `TOL` = 1e-5 nats over the 40 steps (measured: at most 4.8e-7, in all three comparisons).

#[path = "../src/testing.rs"]
mod testing;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use testing::scratch;

use progc::exec::io::metrics::{MetricRow, Summary, read_metrics};

const TOL: f64 = 1e-5;

/// A toy corpus and a recipe with a growth at step 30 of 40, 4 sequences per batch.
fn recipe(dir: &Path, sequences: usize) -> PathBuf {
    let words = [
        "the", "model", "grows", "deep", "after", "a", "shallow", "start",
    ];
    let mut x: u64 = 99;
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
          steps = 40
          batch = {sequences} x 16
          optimizer = adamw(lr: 3e-3)
          schedule = wsd(warmup: 4, decay: 8)
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

fn progc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_progc"));
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&str]) -> Output {
    progc().args(args).output().expect("the progc binary runs")
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

/// `progc run RECIPE --no-progress --out OUT` and `extra`, which must succeed.
fn train(recipe: &Path, out: &Path, extra: &[&str]) -> Vec<MetricRow> {
    let mut args = vec!["run", path(recipe), "--no-progress", "--out", path(out)];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{}", text(&o));
    read_metrics(&out.join("metrics.jsonl")).expect("metrics")
}

/// Every row of `a` and `b` at the same step with the same losses, within `TOL`.
fn assert_same_trajectory(a: &[MetricRow], b: &[MetricRow]) {
    assert_eq!(a.len(), b.len(), "row counts");
    assert!(a.len() >= 40, "a row per step: {}", a.len());
    let mut worst = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        assert_eq!((x.step, x.depth), (y.step, y.depth));
        worst = worst.max((x.train_loss - y.train_loss).abs());
        match (x.val_loss, y.val_loss) {
            (Some(u), Some(v)) => worst = worst.max((u - v).abs()),
            (None, None) => {}
            other => panic!("step {}: validation rows differ: {other:?}", x.step),
        }
    }
    eprintln!("largest loss difference: {worst:.2e} nats (tolerance {TOL:.0e})");
    assert!(worst < TOL, "trajectories differ by {worst}");
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn node(recipe: &Path, out: &Path, rank: u32, port: u16, timeout: &str) -> Child {
    let orchestrator = format!("127.0.0.1:{port}");
    progc()
        .args(["run", path(recipe), "--no-progress", "--out", path(out)])
        .args(["--devices", "cpu:1", "--nodes", "2", "--node-rank"])
        .arg(rank.to_string())
        .args(["--orchestrator", &orchestrator, "--peer-timeout", timeout])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the progc binary starts")
}

/// Waits for `child` at most `limit`; kills it and fails when it takes longer.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let o = child.wait_with_output().expect("output");
    panic!(
        "{what} still running after {limit:?} (it hangs)\n{}",
        text(&o)
    );
}

#[test]
fn two_cpu_peers_follow_the_one_device_trajectory_across_a_growth() {
    let tmp = scratch("two");
    let dir = tmp.path();
    let r = recipe(dir, 4);
    let one = train(&r, &dir.join("one"), &["--device", "cpu"]);
    let two = train(&r, &dir.join("two"), &["--devices", "cpu:2"]);
    assert_same_trajectory(&one, &two);
    let s = Summary::read(&dir.join("two/summary.json")).expect("summary");
    assert_eq!(s.peers.len(), 2, "{s:?}");
    assert!(s.peers.iter().all(|p| p.tok_per_s > 0.0), "{:?}", s.peers);
    assert_eq!(s.device, "cpu x 2");
    assert!(dir.join("two/checkpoints/latest.safetensors").exists());
}

#[test]
fn a_run_stopped_on_two_peers_resumes_on_one() {
    let tmp = scratch("resume");
    let dir = tmp.path();
    let r = recipe(dir, 4);
    let one = train(&r, &dir.join("one"), &["--device", "cpu"]);
    let out = dir.join("mixed");
    train(&r, &out, &["--devices", "cpu:2", "--stop-after", "20"]);
    let o = run(&[
        "run",
        "--resume",
        path(&out),
        "--no-progress",
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mixed = read_metrics(&out.join("metrics.jsonl")).expect("metrics");
    assert_same_trajectory(&one, &mixed);
}

#[test]
fn two_processes_on_loopback_match_one_device() {
    let tmp = scratch("nodes");
    let dir = tmp.path();
    let r = recipe(dir, 4);
    let one = train(&r, &dir.join("one"), &["--device", "cpu"]);
    let port = free_port();
    let n0 = node(&r, &dir.join("node0"), 0, port, "60");
    std::thread::sleep(Duration::from_millis(500));
    let n1 = node(&r, &dir.join("node1"), 1, port, "60");
    let o1 = wait_bounded(n1, Duration::from_secs(240), "node 1");
    let o0 = wait_bounded(n0, Duration::from_secs(60), "node 0");
    assert_eq!(o0.status.code(), Some(0), "node 0:\n{}", text(&o0));
    assert_eq!(o1.status.code(), Some(0), "node 1:\n{}", text(&o1));
    let rows = read_metrics(&dir.join("node0/metrics.jsonl")).expect("node 0 metrics");
    assert_same_trajectory(&one, &rows);
    // Only node 0 writes the run.
    assert!(!dir.join("node1/metrics.jsonl").exists());
    assert!(!dir.join("node1/checkpoints").exists());
}

#[test]
fn a_dead_node_stops_the_other_with_an_error_not_a_hang() {
    let tmp = scratch("dead");
    let dir = tmp.path();
    // A longer run, so that node 1 dies in the middle of it.
    let r = recipe(dir, 4);
    let src = std::fs::read_to_string(&r).expect("recipe");
    std::fs::write(&r, src.replace("steps = 40", "steps = 4000")).expect("recipe");
    let port = free_port();
    let n0 = node(&r, &dir.join("node0"), 0, port, "10");
    std::thread::sleep(Duration::from_millis(500));
    let mut n1 = node(&r, &dir.join("node1"), 1, port, "10");
    let metrics = dir.join("node0/metrics.jsonl");
    let t0 = Instant::now();
    let mut n0 = Some(n0);
    while read_metrics(&metrics).map_or(0, |m| m.len()) < 5 {
        let early = n0
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .is_some();
        if early || t0.elapsed() > Duration::from_secs(180) {
            let _ = n1.kill();
            let o = wait_bounded(n0.take().expect("node 0"), Duration::from_secs(5), "node 0");
            panic!("the nodes never trained:\n{}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let n0 = n0.take().expect("node 0");
    n1.kill().expect("kill node 1");
    let _ = n1.wait();
    let killed = Instant::now();
    let o0 = wait_bounded(n0, Duration::from_secs(60), "node 0 after node 1 died");
    let t = text(&o0);
    assert_ne!(o0.status.code(), Some(0), "{t}");
    assert!(
        t.contains("node 1 left the run") || t.contains("no peer finished a training step"),
        "{t}"
    );
    assert!(
        t.contains("--resume"),
        "the error says how to continue: {t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    eprintln!(
        "node 0 stopped {:.1} s after node 1 died: {}",
        killed.elapsed().as_secs_f64(),
        t.lines().find(|l| l.contains("error")).unwrap_or("")
    );
}

#[test]
fn an_uneven_batch_is_an_error_before_anything_is_written() {
    let tmp = scratch("uneven");
    let dir = tmp.path();
    let r = recipe(dir, 3);
    let out = dir.join("out");
    let o = run(&["run", path(&r), "--devices", "cpu:2", "--out", path(&out)]);
    let t = text(&o);
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("does not divide over 2 peers"), "{t}");
    assert!(
        t.contains("batch=2x"),
        "the help gives a batch that works: {t}"
    );
    assert!(!out.exists(), "nothing written");
    for (args, want) in [
        (vec!["--devices", "cpu:0"], "at least 1"),
        (vec!["--devices", "cpu,cuda:0"], "one kind"),
        (
            vec![
                "--devices",
                "cpu:2",
                "--nodes",
                "2",
                "--node-rank",
                "2",
                "--orchestrator",
                "127.0.0.1:1",
            ],
            "out of range",
        ),
        (
            vec![
                "--devices",
                "cpu:2",
                "--nodes",
                "2",
                "--node-rank",
                "0",
                "--orchestrator",
                "localhost",
            ],
            "HOST:PORT",
        ),
    ] {
        let mut a = vec!["run", path(&r), "--out", path(&out)];
        a.extend(args);
        let o = run(&a);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {t}");
        assert!(t.contains(want), "{a:?}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
}

/// Ctrl-C in a data-parallel run: the peers agree on one step, the leader checkpoints it, the
/// command exits with 130, and resuming on one device follows the uninterrupted trajectory.
#[test]
fn peers_stop_together_on_a_signal_and_resume() {
    let tmp = scratch("signal");
    let dir = tmp.path();
    let src = recipe(dir, 4);
    // Long enough to be interrupted (the growth at 30 stays; 100,000 steps in all).
    let long = std::fs::read_to_string(&src)
        .expect("recipe")
        .replace("steps = 40", "steps = 100000");
    std::fs::write(&src, long).expect("recipe");
    let out = dir.join("stopped");
    let child = progc()
        .args(["run", path(&src), "--no-progress", "--out", path(&out)])
        .args(["--devices", "cpu:2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let rows = |d: &Path| read_metrics(&d.join("metrics.jsonl")).unwrap_or_default();
    let t0 = Instant::now();
    while rows(&out).len() < 60 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no rows");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let o = wait_bounded(child, Duration::from_secs(60), "the stopped run");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(130), "{t}");
    let stopped = rows(&out);
    let n = stopped.last().expect("rows").step + 1;
    assert!(t.contains(&format!("stopped at step {n} of 100000")), "{t}");
    let steps: Vec<u64> = stopped.iter().map(|r| r.step).collect();
    assert_eq!(steps, (0..n).collect::<Vec<u64>>());
    // Resumed on one device for 10 more steps: the same rows as a run never stopped.
    let stop = (n + 10).to_string();
    let o = run(&[
        "run",
        "--resume",
        path(&out),
        "--no-progress",
        "--stop-after",
        &stop,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let whole = train(&src, &dir.join("whole"), &["--stop-after", &stop]);
    assert_same_trajectory(&rows(&out), &whole);
}
