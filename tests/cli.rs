//! The `progc` binary as a user meets it: exit codes, messages for every kind of mistake, and
//! no panics.

#[path = "../src/testing.rs"]
mod testing;

use std::process::{Command, Output};

use tempfile::TempDir;
use testing::scratch;

fn progc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_progc"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the progc binary runs")
}

/// `progc run RECIPE --device DEVICE --no-progress --out OUT`.
fn run_recipe(recipe: &str, device: &str, out: &str) -> Output {
    progc(&[
        "run",
        recipe,
        "--device",
        device,
        "--no-progress",
        "--out",
        out,
    ])
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_no_panic(o: &Output) {
    let t = text(o);
    assert!(!t.contains("panicked"), "panic:\n{t}");
}

#[test]
fn p0111_fixture_unknown_run_is_a_coded_diagnostic() {
    let args = std::fs::read_to_string("tests/fixtures/P0111.args").expect("args fixture");
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = progc(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("P0111") && t.contains("no_such_run"), "{t}");
    insta::assert_snapshot!("cli_P0111", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_exit_codes() {
    let ok = progc(&["check", "examples/tiny.prog", "examples/gpt2_small.prog"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let bad = progc(&["check", "tests/fixtures/P0204.prog"]);
    assert_eq!(bad.status.code(), Some(2));
    let warn = progc(&["check", "tests/fixtures/P0403.prog"]);
    assert_eq!(warn.status.code(), Some(0), "warnings alone pass");
    let denied = progc(&["check", "--deny-warnings", "tests/fixtures/P0403.prog"]);
    assert_eq!(
        denied.status.code(),
        Some(2),
        "--deny-warnings fails on warnings"
    );
    let missing = progc(&["check", "no/such/file.prog"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("cannot read no/such/file.prog"),
        "{}",
        text(&missing)
    );
}

/// A file is warned about its own code: importing the std library (whose deliberate ablations
/// warn) adds no warnings, and `check std/paper.prog` itself still shows them.
#[test]
fn imported_files_warnings_stay_quiet() {
    let tmp = scratch("cli-quiet-imports");
    let std_dir = std::fs::canonicalize("std").expect("std library");
    let mine = tmp.path().join("mine.prog");
    std::fs::write(
        &mine,
        format!(
            "import {:?}\nrecipe mine = mid_fixed {{ seed = 4 }}\n",
            std_dir.join("paper.prog").to_str().expect("utf-8 path")
        ),
    )
    .expect("recipe");
    let clean = progc(&[
        "check",
        "--deny-warnings",
        mine.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(!text(&clean).contains("Warning"), "{}", text(&clean));
    let std_itself = progc(&["check", "--deny-warnings", "std/paper.prog"]);
    assert_eq!(std_itself.status.code(), Some(2), "{}", text(&std_itself));
    assert!(
        text(&std_itself).contains("Warning"),
        "{}",
        text(&std_itself)
    );
}

#[test]
fn check_json_has_the_documented_fields() {
    let out = progc(&["check", "--format", "json", "tests/fixtures/P0204.prog"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    let d = &v.as_array().expect("array")[0];
    for key in [
        "code", "severity", "message", "file", "line", "column", "labels", "help",
    ] {
        assert!(d.get(key).is_some(), "missing {key} in {d}");
    }
    assert_eq!(d["code"], "P0204");
    assert_eq!(d["severity"], "error");
}

#[test]
fn set_overrides_are_checked_like_the_file() {
    let out = progc(&["plan", "examples/tiny.prog", "--set", "steps=3000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("3000 steps"), "{}", text(&out));
    let typo = progc(&["plan", "examples/tiny.prog", "--set", "stpes=3000"]);
    assert_eq!(typo.status.code(), Some(2));
    let t = text(&typo);
    assert!(
        t.contains("P0104") && t.contains("<--set>") && t.contains("did you mean `steps`?"),
        "{t}"
    );
    let garbage = progc(&["plan", "examples/tiny.prog", "--set", "steps"]);
    assert_eq!(garbage.status.code(), Some(2));
    assert!(text(&garbage).contains("P0001"), "{}", text(&garbage));
}

#[test]
fn plan_formats() {
    for format in ["text", "json", "dot"] {
        let out = progc(&["plan", "examples/tiny.prog", "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{format}: {}", text(&out));
    }
    let exp = progc(&["plan", "std/paper.prog", "--experiment", "e1"]);
    assert_eq!(exp.status.code(), Some(0), "{}", text(&exp));
    assert!(text(&exp).contains("sharing:"), "{}", text(&exp));
    // The BPE pilot plans without its corpus (the tokenizer is trained when it runs).
    let bpe = progc(&["plan", "std/paper.prog", "--experiment", "bpe_pilot"]);
    assert_eq!(bpe.status.code(), Some(0), "{}", text(&bpe));
    assert!(
        text(&bpe).contains("4096 tokens (bpe(4096)); embeddings 541k = 31.2% of 1.73M params"),
        "{}",
        text(&bpe)
    );
}

/// `progc tokenize` with a tokenizer.json, and `--train-bpe`: deterministic across processes,
/// and every mistake a clear error.
#[test]
fn tokenize_trains_a_bpe_and_writes_shards_with_it() {
    let tmp = scratch("cli-bpe");
    let dir = tmp.path();
    let emma = std::fs::read("data/emma.txt").expect("shipped corpus");
    let a = dir.join("a.txt");
    std::fs::write(&a, &emma[..80_000]).expect("a");
    let p = |name: &str| dir.join(name).to_str().expect("path").to_string();
    let train = |out: &str, size: &str| {
        progc(&[
            "tokenize",
            &p("a.txt"),
            "--train-bpe",
            size,
            "--out",
            out,
            "--val",
            "10%",
            "--no-progress",
        ])
    };
    let first = train(&p("one.json"), "300");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(
        text(&first).contains("a byte-level BPE of 300 tokens"),
        "{}",
        text(&first)
    );
    let second = train(&p("two.json"), "300");
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let one = std::fs::read(p("one.json")).expect("one");
    assert_eq!(
        one,
        std::fs::read(p("two.json")).expect("two"),
        "deterministic"
    );
    // Never overwritten; sizes out of range and conflicting flags are usage errors.
    let again = train(&p("one.json"), "300");
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    for size in ["100", "0"] {
        let small = train(&p("small.json"), size);
        assert_eq!(small.status.code(), Some(2), "{}", text(&small));
        assert!(text(&small).contains("out of range"), "{}", text(&small));
    }
    let both = progc(&[
        "tokenize",
        &p("a.txt"),
        "--train-bpe",
        "300",
        "--tokenizer",
        "gpt2",
        "--out",
        &p("x"),
    ]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));

    // Shards with the trained tokenizer: u16, its end of text after the file.
    let shards = progc(&[
        "tokenize",
        &p("a.txt"),
        "--tokenizer",
        &p("one.json"),
        "--out",
        &p("shards"),
        "--val",
        "10%",
        "--no-progress",
    ]);
    assert_eq!(shards.status.code(), Some(0), "{}", text(&shards));
    assert!(text(&shards).contains("u16"), "{}", text(&shards));
    assert!(
        text(&shards).contains(&format!("tokenizer: \"{}\"", p("one.json"))),
        "{}",
        text(&shards)
    );
    for (tokenizer, code, says) in [
        (p("missing.json"), 2, "neither gpt2 nor bytes"),
        ("bpe(300)".to_string(), 2, "must be trained"),
        (p("a.txt"), 1, "cannot be used"),
    ] {
        let o = progc(&[
            "tokenize",
            &p("a.txt"),
            "--tokenizer",
            &tokenizer,
            "--out",
            &p("bad"),
        ]);
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
        assert!(
            text(&o).contains(says) && text(&o).contains("help:"),
            "{}",
            text(&o)
        );
        assert_no_panic(&o);
    }

    // A recipe naming a tokenizer file that is not there is P0112 at the string.
    let r = dir.join("r.prog");
    std::fs::write(
        &r,
        "import \"std/paper.prog\"\ndata d = text(\"a.txt\", tokenizer: \"nope.json\")\n\
         recipe r = tiny_base { data = d }\n",
    )
    .expect("recipe");
    let check = progc(&["check", r.to_str().expect("path")]);
    assert_eq!(check.status.code(), Some(2), "{}", text(&check));
    assert!(
        text(&check).contains("P0112") && text(&check).contains("nope.json"),
        "{}",
        text(&check)
    );
}

#[test]
fn explain_every_code_and_reject_unknown_ones() {
    let list = progc(&["explain"]);
    assert_eq!(list.status.code(), Some(0));
    for c in progc::diagnostic::CODES {
        assert!(
            text(&list).contains(c.name),
            "{} missing from the list",
            c.name
        );
    }
    let one = progc(&["explain", "p0402"]);
    assert_eq!(one.status.code(), Some(0));
    assert!(text(&one).starts_with("# P0402"), "{}", text(&one));
    let bad = progc(&["explain", "P0999"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("no diagnostic code `P0999`"),
        "{}",
        text(&bad)
    );
}

#[test]
fn run_mistakes_are_clear_errors() {
    let tmp = scratch("cli");
    let dir = tmp.path();
    let out_dir = dir.join("out");
    let out_dir = out_dir.to_str().expect("utf-8 temp path");

    // A device that does not exist, and CUDA on a machine without one.
    let bad_device = progc(&[
        "run",
        "examples/tiny.prog",
        "--device",
        "tpu",
        "--out",
        out_dir,
    ]);
    assert_eq!(bad_device.status.code(), Some(2), "{}", text(&bad_device));
    assert_no_panic(&bad_device);
    let cuda = run_recipe("examples/tiny.prog", "cuda", out_dir);
    assert_no_panic(&cuda);
    if cuda.status.code() != Some(0) {
        assert_eq!(cuda.status.code(), Some(1), "{}", text(&cuda));
        assert!(text(&cuda).contains("--device cpu"), "{}", text(&cuda));
    }

    // A corpus that is not there.
    let recipe = dir.join("r.prog");
    std::fs::write(
        &recipe,
        "import \"std/gpt2.prog\"\nrecipe r {\n model = gpt2_tiny { depth: 1 }\n \
         data = text(\"missing.txt\", tokenizer: bytes)\n steps = 10\n batch = 2 x 128\n \
         optimizer = adamw(lr: 1e-3)\n schedule = constant(warmup: 0)\n}\n",
    )
    .expect("recipe");
    let missing = run_recipe(recipe.to_str().expect("path"), "cpu", out_dir);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("missing.txt"), "{}", text(&missing));
    assert_no_panic(&missing);

    // Resuming something that is not a run directory.
    let resume = progc(&["run", "--resume", dir.to_str().expect("path")]);
    assert_eq!(resume.status.code(), Some(1), "{}", text(&resume));
    assert!(text(&resume).contains("help:"), "{}", text(&resume));

    // A file with several recipes needs --run.
    let many = progc(&["run", "examples/gpt2_small.prog", "--out", out_dir]);
    assert_eq!(many.status.code(), Some(2));
    assert!(text(&many).contains("--run NAME"), "{}", text(&many));
}

#[test]
fn bf16_and_sparse_logging_run_and_are_recorded() {
    let tmp = scratch("cli-bf16");
    let dir = tmp.path();
    let corpus = std::fs::canonicalize("data/emma.txt").expect("shipped corpus");
    let recipe = dir.join("r.prog");
    std::fs::write(
        &recipe,
        format!(
            "import \"std/gpt2.prog\"\nrecipe r {{\n model = gpt2_tiny {{ depth: 1 }}\n \
             data = text({:?}, tokenizer: bytes, val: 10%)\n steps = 20\n batch = 2 x 128\n \
             optimizer = adamw(lr: 1e-3)\n schedule = constant(warmup: 0)\n eval_every = 10\n}}\n",
            corpus.to_str().expect("utf-8 path")
        ),
    )
    .expect("recipe");
    let out_dir = dir.join("out");
    let out = out_dir.to_str().expect("utf-8 path");
    let r = recipe.to_str().expect("utf-8 path");
    let zero = progc(&["run", r, "--log-every", "0", "--out", out]);
    assert_eq!(zero.status.code(), Some(2), "{}", text(&zero));
    assert_no_panic(&zero);

    let run = progc(&[
        "run",
        r,
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--log-every",
        "4",
        "--no-progress",
        "--out",
        out,
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).expect("metrics");
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json row")["step"]
                .as_u64()
                .expect("step")
        })
        .collect();
    // Every 4th step, plus the evaluations after steps 9 and 19 (the last).
    assert_eq!(steps, vec![3, 7, 9, 11, 15, 19], "{metrics}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("summary.json")).expect("summary"),
    )
    .expect("summary json");
    let loss = summary["final_val_loss"]
        .as_f64()
        .expect("a finite val loss");
    assert!(loss > 0.0 && loss < 6.0, "{loss}");
    if progc::exec::device::cpu_has_bf16_dot() {
        assert_eq!(summary["precision"], "bf16");
        assert!(summary.get("precision_note").is_none(), "{summary}");
        return;
    }
    // Without a bf16 instruction the matmuls stay f32, and the header and the summary say so:
    // the losses are an f32 run's, to the bit.
    assert_eq!(summary["precision"], "f32");
    let note = summary["precision_note"].as_str().expect("a note");
    assert!(note.contains("bf16 falls back to f32 matmuls"), "{note}");
    assert!(text(&run).contains(note), "{}", text(&run));
    let f32_dir = dir.join("f32");
    let f32_out = f32_dir.to_str().expect("utf-8 path");
    let plain = progc(&[
        "run",
        r,
        "--device",
        "cpu",
        "--log-every",
        "4",
        "--no-progress",
        "--out",
        f32_out,
    ]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain));
    let losses = |d: &std::path::Path| -> Vec<(Option<f64>, Option<f64>)> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json row");
                (v["train_loss"].as_f64(), v["val_loss"].as_f64())
            })
            .collect()
    };
    assert_eq!(losses(&out_dir), losses(&f32_dir));
}

#[test]
fn tokenized_shards_train_in_both_formats_and_bad_shards_write_nothing() {
    let tmp = scratch("cli-shards");
    let dir = tmp.path();
    // Two text files cut from the shipped corpus.
    let emma = std::fs::read("data/emma.txt").expect("shipped corpus");
    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    std::fs::write(&a, &emma[..60_000]).expect("a");
    std::fs::write(&b, &emma[60_000..100_000]).expect("b");
    let recipe = |data: &str| {
        format!(
            "import \"std/gpt2.prog\"\nrecipe r {{\n model = gpt2_tiny {{ depth: 2 }}\n \
             data = {data}\n steps = 6\n batch = 2 x 128\n optimizer = adamw(lr: 1e-3)\n \
             schedule = constant(warmup: 0)\n start depth 1\n grow at 3 to depth 2 {{ init: copy(last) }}\n}}\n"
        )
    };
    for (format, train, val) in [
        ("nanogpt", "nanogpt/train.bin", "\"nanogpt/val.bin\""),
        ("llmc", "llmc/train_*.bin", "\"llmc/val_*.bin\""),
    ] {
        let out = dir.join(format);
        let t = progc(&[
            "tokenize",
            a.to_str().expect("path"),
            b.to_str().expect("path"),
            "--out",
            out.to_str().expect("path"),
            "--format",
            format,
            "--tokenizer",
            "bytes",
            "--val",
            "10%",
            "--shard-tokens",
            "40000",
            "--no-progress",
        ]);
        assert_eq!(t.status.code(), Some(0), "{}", text(&t));
        assert!(text(&t).contains("tokens("), "{}", text(&t));
        let r = dir.join(format!("{format}.prog"));
        let data = format!("tokens(\"{train}\", val: {val}, format: {format}, tokenizer: bytes)");
        std::fs::write(&r, recipe(&data)).expect("recipe");
        let run_dir = dir.join(format!("run-{format}"));
        let run = run_recipe(
            r.to_str().expect("path"),
            "cpu",
            run_dir.to_str().expect("path"),
        );
        assert_eq!(run.status.code(), Some(0), "{}", text(&run));
        assert!(run_dir.join("checkpoints/latest.safetensors").is_file());
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join("summary.json")).expect("summary"),
        )
        .expect("summary json");
        assert_eq!(summary["total_steps"], 6, "{summary}");
    }

    // A shard with a token id past the vocabulary: exit 1, the file and offset named, and no
    // run directory written.
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, [1u8, 0, 2, 0, 0, 1]).expect("bad shard");
    let r = dir.join("bad.prog");
    std::fs::write(&r, recipe("tokens(\"bad.bin\", tokenizer: bytes)")).expect("recipe");
    let run_dir = dir.join("run-bad");
    let run = run_recipe(
        r.to_str().expect("path"),
        "cpu",
        run_dir.to_str().expect("path"),
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("bad.bin") && text(&run).contains("byte offset 4"),
        "{}",
        text(&run)
    );
    assert!(
        !run_dir.exists(),
        "a bad shard must not create the run directory"
    );
    assert_no_panic(&run);
}

/// A small recipe in its own temp folder: 1 layer, `steps` steps of 2 x 128 bytes of Emma,
/// a checkpoint every 20 steps.
fn small_recipe(tag: &str, steps: u64) -> (TempDir, std::path::PathBuf) {
    let tmp = scratch(&format!("cli-{tag}"));
    let dir = tmp.path();
    let corpus = std::fs::canonicalize("data/emma.txt").expect("shipped corpus");
    let recipe = dir.join("r.prog");
    std::fs::write(
        &recipe,
        format!(
            "import \"std/gpt2.prog\"\nrecipe r {{\n model = gpt2_tiny {{ depth: 1 }}\n \
             data = text({:?}, tokenizer: bytes, val: 10%)\n steps = {steps}\n batch = 2 x 128\n \
             optimizer = adamw(lr: 1e-3)\n schedule = constant(warmup: 0)\n eval_every = 50\n \
             checkpoint_every = 20\n}}\n",
            corpus.to_str().expect("utf-8 path")
        ),
    )
    .expect("recipe");
    (tmp, recipe)
}

fn metric_steps(dir: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_u64())
        .collect()
}

#[test]
fn one_writer_per_run_directory() {
    let (tmp, recipe) = small_recipe("lock", 100_000);
    let dir = tmp.path();
    let r = recipe.to_str().expect("utf-8 path");
    let out_dir = dir.join("out");
    let out = out_dir.to_str().expect("utf-8 path");
    let mut first = Command::new(env!("CARGO_BIN_EXE_progc"))
        .args(["run", r, "--device", "cpu", "--no-progress", "--out", out])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the progc binary starts");
    // Until it has written a checkpoint (step 20) and some rows after it.
    let t0 = std::time::Instant::now();
    while metric_steps(&out_dir).len() < 40 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "the first run wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let run_json = std::fs::read(out_dir.join("run.json")).expect("run.json");
    let pid = first.id().to_string();
    for args in [
        vec!["run", r, "--device", "cpu", "--no-progress", "--out", out],
        vec!["run", "--resume", out, "--device", "cpu", "--no-progress"],
    ] {
        let o = progc(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert_no_panic(&o);
        assert!(
            t.contains(&format!("is being written by process {pid} on ")) && t.contains("started"),
            "{t}"
        );
        assert!(t.contains(&format!("progc run --resume {out}")), "{t}");
    }
    assert_eq!(
        std::fs::read(out_dir.join("run.json")).expect("run.json"),
        run_json
    );
    // kill -9: the OS drops the lock with the process; resume works at once.
    first.kill().expect("kill");
    first.wait().expect("reaped");
    let done = *metric_steps(&out_dir).last().expect("rows");
    let stop = (done + 30).to_string();
    let o = progc(&[
        "run",
        "--resume",
        out,
        "--device",
        "cpu",
        "--no-progress",
        "--stop-after",
        &stop,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let steps = metric_steps(&out_dir);
    let mut unique = steps.clone();
    unique.dedup();
    assert_eq!(unique, steps, "no step written twice");
    assert_eq!(
        *steps.last().expect("rows"),
        done + 29,
        "stopped after step {stop}"
    );
}

#[test]
fn runs_started_together_get_their_own_default_directories() {
    let (tmp, recipe) = small_recipe("fresh", 10);
    let dir = tmp.path();
    let r = recipe.to_str().expect("utf-8 path");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_progc"))
            .args(["run", r, "--device", "cpu", "--no-progress"])
            .current_dir(dir)
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(start);
        let b = s.spawn(start);
        (
            a.join().expect("thread").expect("runs"),
            b.join().expect("thread").expect("runs"),
        )
    });
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    for d in ["runs/r", "runs/r-2"] {
        let steps = metric_steps(&dir.join(d));
        assert_eq!(steps.len(), 10, "{d}: {steps:?}");
    }
}

/// Starts a long run of `recipe` into `out`, waits for `rows` metric rows, sends `signal`
/// (`INT` or `TERM`) and returns its exit code and stderr.
fn stop_with(recipe: &str, out: &std::path::Path, resume: bool, signal: &str) -> (i32, String) {
    let mut args = vec!["run"];
    let out_s = out.to_str().expect("utf-8 path");
    if resume {
        args.extend(["--resume", out_s]);
    } else {
        args.extend([recipe, "--out", out_s]);
    }
    args.extend(["--device", "cpu", "--no-progress"]);
    let before = metric_steps(out).len();
    let child = Command::new(env!("CARGO_BIN_EXE_progc"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the progc binary starts");
    let t0 = std::time::Instant::now();
    while metric_steps(out).len() < before + 30 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "the run wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let o = child.wait_with_output().expect("exits");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn stop_signals_save_the_step_and_resume_bit_identically() {
    let (tmp, recipe) = small_recipe("signal", 100_000);
    let dir = tmp.path();
    let r = recipe.to_str().expect("utf-8 path");
    let out = dir.join("out");
    let out_s = out.to_str().expect("utf-8 path");
    let (code, err) = stop_with(r, &out, false, "INT");
    assert_eq!(code, 130, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let steps = metric_steps(&out);
    let n = steps.last().expect("rows") + 1;
    assert!(
        err.contains(&format!(
            "SIGINT received: stopped at step {n} of 100000; resume with: progc run --resume {out_s}"
        )),
        "{err}"
    );
    // The step it stopped at is checkpointed: resuming starts there (SIGTERM this time).
    let (code, err) = stop_with(r, &out, true, "TERM");
    assert_eq!(code, 143, "{err}");
    assert!(err.contains("SIGTERM received: stopped at step"), "{err}");
    let steps = metric_steps(&out);
    let expected: Vec<u64> = (0..steps.len() as u64).collect();
    assert_eq!(steps, expected, "every step once, none lost");
    // The same steps trained without interruption give the same losses, bit for bit.
    let m = steps.len() as u64;
    let reference = dir.join("reference");
    let o = progc(&[
        "run",
        r,
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        reference.to_str().expect("utf-8 path"),
        "--stop-after",
        &m.to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let losses = |d: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("row");
                format!("{} {} {}", v["step"], v["train_loss"], v["val_loss"])
            })
            .collect()
    };
    assert_eq!(losses(&out), losses(&reference));
}

#[test]
fn a_wall_clock_bound_writes_checkpoints_between_the_step_ones() {
    let (tmp, recipe) = small_recipe("clock", 100_000);
    let dir = tmp.path();
    // The recipe checkpoints every 20 steps; a 1 s clock with the step cadence at 5% (5,000
    // steps, never reached here) leaves only the clock's checkpoints in recent/.
    let src = std::fs::read_to_string(&recipe)
        .expect("recipe")
        .replace("checkpoint_every = 20", "checkpoint_every = 1 s");
    std::fs::write(&recipe, src).expect("recipe");
    let out = dir.join("out");
    let o = progc(&[
        "run",
        recipe.to_str().expect("utf-8 path"),
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        out.to_str().expect("utf-8 path"),
        "--stop-after",
        "600",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let recent: Vec<u64> = std::fs::read_dir(out.join("checkpoints/recent"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("step-")?
                        .strip_suffix(".safetensors")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(metric_steps(&out).len(), 600);
    let rows = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let last: serde_json::Value =
        serde_json::from_str(rows.lines().last().expect("rows")).expect("row");
    let seconds = last["wall_s"].as_f64().expect("wall_s");
    eprintln!("{seconds:.1} s of training, clock checkpoints at steps {recent:?}");
    // A checkpoint per second of training (the last 3 are kept), none on a 5,000-step beat.
    if seconds >= 2.5 {
        assert!(
            !recent.is_empty(),
            "{seconds} s of training, no clock checkpoint"
        );
    }
    assert!(
        recent.iter().all(|s| s % 5000 != 0 && *s < 1500),
        "{recent:?}"
    );
}

/// The TensorBoard event file beside `metrics.jsonl` holds the same rows, once each, after a
/// stop and a resume.
#[test]
fn tensorboard_events_match_the_metrics_across_a_resume() {
    use progc::exec::io::events::{event_files, read_events};
    let (tmp, recipe) = small_recipe("tb", 60);
    let dir = tmp.path();
    // With a growth 0 -> 1 at step 40, noted as text.
    let src = std::fs::read_to_string(&recipe).expect("recipe").replace(
        "checkpoint_every = 20\n",
        "checkpoint_every = 20\n start depth 0\n grow at 40 to depth 1\n",
    );
    std::fs::write(&recipe, src).expect("recipe");
    let out = dir.join("out");
    let (r, o) = (
        recipe.to_str().expect("utf-8 path"),
        out.to_str().expect("utf-8 path"),
    );
    let first = progc(&[
        "run",
        r,
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        o,
        "--stop-after",
        "30",
    ]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let done = progc(&["run", "--resume", o, "--device", "cpu", "--no-progress"]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    let files = event_files(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    let events = read_events(&files[0]).expect("a valid event file");
    assert_eq!(
        events.texts,
        vec![(
            "growth".to_string(),
            40,
            "grow 0 -> 1 at step 40: init random(std 0.02), placement top, optimizer state keep"
                .to_string()
        )]
    );
    let scalars = events.scalars;
    let series = |tag: &str| -> Vec<(i64, f32)> {
        scalars
            .iter()
            .filter(|(t, _, _)| t == tag)
            .map(|(_, s, v)| (*s, *v))
            .collect()
    };
    let rows = progc::exec::io::metrics::read_metrics(&out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(rows.len(), 60);
    let expect =
        |f: &dyn Fn(&progc::exec::io::metrics::MetricRow) -> Option<f64>| -> Vec<(i64, f32)> {
            rows.iter()
                .filter_map(|r| f(r).map(|v| (r.step as i64, v as f32)))
                .collect()
        };
    assert_eq!(series("loss/train"), expect(&|r| Some(r.train_loss)));
    assert_eq!(series("loss/val"), expect(&|r| r.val_loss));
    assert_eq!(series("lr"), expect(&|r| Some(r.lr)));
    assert_eq!(series("model/depth"), expect(&|r| Some(r.depth as f64)));
    assert_eq!(series("compute/flops_exact"), expect(&|r| Some(r.flops)));
    let by_flops: Vec<i64> = series("by_mflops/loss_train").iter().map(|p| p.0).collect();
    let want: Vec<i64> = rows
        .iter()
        .map(|r| (r.flops / 1e6).round() as i64)
        .collect();
    assert_eq!(by_flops, want);
    assert!(
        by_flops.windows(2).all(|w| w[0] < w[1]),
        "one point per MFLOP step"
    );
}
