//! Kill anywhere: a run killed with SIGKILL at many points (both segments, around the growth,
//! during checkpoint writes) and resumed after each kill ends with the metrics and the final
//! checkpoint of the uninterrupted run, bit for bit (wall-clock fields aside).

#[path = "../src/testing.rs"]
mod testing;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testing::scratch;

const STEPS: u64 = 400;
const GROWTH: u64 = 200;
/// Kill points, by the last metrics row seen: every segment, around the growth, and at the
/// rows that precede a checkpoint write (every 10 steps, rows 9, 19, ...).
const KILL_AFTER_ROW: [u64; 12] = [15, 59, 99, 149, 189, 198, 199, 200, 209, 259, 319, 389];

fn progc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_progc"));
    c.env("NO_COLOR", "1");
    c
}

fn rows(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Every field of each row but the wall-clock ones.
fn comparable(dir: &Path) -> Vec<String> {
    rows(dir)
        .into_iter()
        .map(|mut r| {
            let o = r.as_object_mut().expect("a row is an object");
            o.remove("wall_s");
            o.remove("tok_per_s");
            serde_json::to_string(o).expect("json")
        })
        .collect()
}

/// The tensors of a checkpoint (parameters and optimizer moments), by name; the JSON metadata
/// holds wall-clock timings and is left out.
fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("checkpoint");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    out.sort();
    out
}

fn recipe(dir: &Path) -> PathBuf {
    let corpus = std::fs::canonicalize("data/emma.txt").expect("shipped corpus");
    let path = dir.join("r.prog");
    std::fs::write(
        &path,
        format!(
            "import \"std/gpt2.prog\"\nrecipe r {{\n model = gpt2_tiny {{ depth: 2 }}\n \
             data = text({:?}, tokenizer: bytes, val: 10%)\n steps = {STEPS}\n \
             batch = 2 x 128\n optimizer = adamw(lr: 1e-3)\n \
             schedule = wsd(warmup: 10, decay: 20%, shape: linear, floor: 0)\n \
             eval_every = 50\n checkpoint_every = 10\n start depth 0\n \
             grow at {GROWTH} to depth 2\n}}\n",
            corpus.to_str().expect("utf-8 path")
        ),
    )
    .expect("recipe");
    path
}

#[test]
fn killed_anywhere_and_resumed_ends_bit_identical() {
    let tmp = scratch("kill");
    let dir = tmp.path();
    let r = recipe(dir);
    let r = r.to_str().expect("utf-8 path");
    let base = ["--device", "cpu", "--no-progress"];

    let whole = dir.join("whole");
    let o = progc()
        .args(["run", r, "--out", whole.to_str().expect("utf-8")])
        .args(base)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let killed = dir.join("killed");
    let k = killed.to_str().expect("utf-8");
    let mut kills = 0;
    for (i, &row) in KILL_AFTER_ROW.iter().enumerate() {
        let mut c = progc();
        if i == 0 {
            c.args(["run", r, "--out", k]);
        } else {
            c.args(["run", "--resume", k]);
        }
        let mut child = c
            .args(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts");
        let t0 = Instant::now();
        loop {
            if rows(&killed)
                .last()
                .and_then(|r| r["step"].as_u64())
                .is_some_and(|s| s >= row)
            {
                child.kill().expect("SIGKILL");
                kills += 1;
                break;
            }
            if child.try_wait().expect("wait").is_some() {
                panic!("the run ended before row {row}");
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "no row {row}");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.wait().expect("reaped");
    }
    let o = progc()
        .args(["run", "--resume", k])
        .args(base)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(kills, KILL_AFTER_ROW.len());

    let (a, b) = (comparable(&whole), comparable(&killed));
    assert_eq!(a.len(), b.len(), "one row per step, none twice");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    let latest = |d: &Path| d.join("checkpoints").join("latest.safetensors");
    let (ta, tb) = (tensors(&latest(&whole)), tensors(&latest(&killed)));
    assert!(!ta.is_empty());
    assert_eq!(ta.len(), tb.len());
    for ((na, da), (nb, db)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(da == db, "tensor {na} differs");
    }
    println!(
        "kill anywhere: {kills} SIGKILLs at rows {KILL_AFTER_ROW:?}, all resumed, bit-identical"
    );
}
