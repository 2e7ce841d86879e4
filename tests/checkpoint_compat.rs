//! Checkpoints written by an earlier release still load, and resume to exactly what that
//! release computed.
//!
//! `tests/fixtures/checkpoint_7b1c496/` was made once with the release binary of `7b1c496`
//! (before optimizer state slots had names): `run/` is `recipe.prog` (Muon with its AdamW, a
//! 1 -> 2 copy growth at step 4) stopped at step 6 (`--stop-after 6`), and
//! `expected_metrics.jsonl` is the same recipe trained to its end in one go by that binary.

#[path = "../src/testing.rs"]
mod testing;

use std::path::Path;
use std::process::Command;

use progc::exec::io::checkpoint::{Checkpoint, latest_path};
use testing::scratch;

const FIXTURE: &str = "tests/fixtures/checkpoint_7b1c496";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A metrics row without its wall-clock fields.
fn values(line: &str) -> serde_json::Value {
    let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
    let obj = row.as_object_mut().unwrap();
    obj.remove("tok_per_s");
    obj.remove("wall_s");
    row
}

#[test]
fn an_old_checkpoint_reads_with_named_slots() {
    let ck = Checkpoint::read(&latest_path(&Path::new(FIXTURE).join("run"))).expect("reads");
    assert_eq!((ck.step, ck.depth), (6, 2));
    assert_eq!(ck.optimizer.kind, "muon");
    let lists: std::collections::BTreeSet<Vec<&str>> =
        ck.optimizer.params.iter().map(|p| p.slot_names()).collect();
    // Muon's matrices keep a momentum; its AdamW side keeps both moments.
    assert_eq!(lists, [vec!["m"], vec!["m", "v"]].into_iter().collect());
}

#[test]
fn an_old_checkpoint_resumes_to_what_its_release_computed() {
    let tmp = scratch("compat");
    let dir = tmp.path().join("run");
    copy_dir(&Path::new(FIXTURE).join("run"), &dir);
    let out = Command::new(env!("CARGO_BIN_EXE_progc"))
        .args(["run", "--resume"])
        .arg(&dir)
        .args(["--device", "cpu", "--no-progress"])
        .env("NO_COLOR", "1")
        .output()
        .expect("the progc binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let want = std::fs::read_to_string(Path::new(FIXTURE).join("expected_metrics.jsonl")).unwrap();
    let got: Vec<_> = got.lines().map(values).collect();
    let want: Vec<_> = want.lines().map(values).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "the resumed run differs from the release's own");
    }
}
