//! `progc export` and `progc sample` on a real (tiny) run: the files transformers needs, the
//! eval-loss parity of the exported weights read back into progc, the refusals, and sampling.

#[path = "../src/testing.rs"]
mod testing;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testing::scratch;

use progc::exec::io::data::Batch;
use progc::exec::io::hf::from_hf;
use progc::exec::jobs::train::validation_loss;
use progc::exec::network::precision::Precision;

fn progc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_progc"))
        .args(args)
        .env("NO_COLOR", "1")
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

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A 6-step bytes run that grows from 1 to 2 blocks with `inv_sqrt_depth` residuals.
fn tiny_run(dir: &Path) -> PathBuf {
    let corpus = std::fs::canonicalize("data/emma.txt").expect("bundled corpus");
    let recipe = dir.join("r.prog");
    std::fs::write(
        &recipe,
        format!(
            "import \"std/gpt2.prog\"\nrecipe r {{\n model = gpt2_tiny {{ width: 32, heads: 2, \
             depth: 2, context: 16, residual: inv_sqrt_depth }}\n data = text(\"{}\", \
             tokenizer: bytes, val: 5%)\n steps = 6\n batch = 2 x 16\n eval_every = 3\n \
             eval_batches = 2\n optimizer = adamw(lr: 1e-2)\n schedule = constant(warmup: 0)\n \
             start depth 1\n grow at 3 to depth 2 {{ init: random, placement: top, \
             optimizer_state: keep }}\n}}\n",
            corpus.display()
        ),
    )
    .expect("recipe");
    let run = dir.join("run");
    let out = progc(&[
        "run",
        s(&recipe),
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        s(&run),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    run
}

#[test]
fn export_writes_a_gpt2_folder_with_progcs_loss() {
    let tmp = scratch("export");
    let dir = tmp.path();
    let run = tiny_run(dir);
    let hf = dir.join("hf");

    let out = progc(&["export", s(&run), "--to", "hf", s(&hf)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("exported step 6 (depth 2)"),
        "{}",
        text(&out)
    );
    for f in [
        "model.safetensors",
        "config.json",
        "TOKENIZER.md",
        "progc_eval.json",
    ] {
        assert!(hf.join(f).is_file(), "{f} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "gpt2");
    assert_eq!(cfg["n_layer"], 2);
    assert_eq!(cfg["vocab_size"], 256);
    assert_eq!(cfg["activation_function"], "gelu");
    assert_eq!(cfg["layer_norm_epsilon"], 1e-5);

    // The exported weights, read back into progc, give progc's loss on progc's windows.
    let ev: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("progc_eval.json")).unwrap())
            .unwrap();
    let context = ev["context"].as_u64().unwrap() as usize;
    let batches: Vec<Batch> = ev["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let rows: Vec<Vec<u32>> = serde_json::from_value(b.clone()).unwrap();
            Batch {
                inputs: rows.iter().flat_map(|w| w[..context].to_vec()).collect(),
                targets: rows.iter().flat_map(|w| w[1..].to_vec()).collect(),
                sequences: rows.len(),
                context,
            }
        })
        .collect();
    assert!(!batches.is_empty());
    let dev = Default::default();
    let (model, spec) = from_hf::<burn::backend::Flex>(&hf, &dev).unwrap();
    assert_eq!(spec.depth, 2);
    let progc_loss = ev["val_loss"].as_f64().unwrap();
    // One loss per batch, whose mean is the loss.
    let per_batch: Vec<f64> = serde_json::from_value(ev["batch_losses"].clone()).unwrap();
    assert_eq!(per_batch.len(), batches.len());
    let mean = per_batch.iter().sum::<f64>() / per_batch.len() as f64;
    assert!((mean - progc_loss).abs() < 1e-12, "{mean} vs {progc_loss}");
    let imported = validation_loss(&model, &batches, &dev, Precision::F32);
    let rel = (imported - progc_loss).abs() / progc_loss;
    assert!(rel < 1e-6, "{imported} vs {progc_loss} ({rel})");

    // Refusals: an existing export without --force, a folder that is not an export, an
    // unknown format, a missing run; none of them panics or writes anything.
    let again = progc(&["export", s(&run), "--to", "hf", s(&hf)]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("--force"), "{}", text(&again));
    let forced = progc(&["export", s(&run), "--to", "hf", s(&hf), "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    let onto_run = progc(&["export", s(&run), "--to", "hf", s(&run), "--force"]);
    assert_eq!(onto_run.status.code(), Some(1), "{}", text(&onto_run));
    assert!(
        run.join("run.json").is_file(),
        "the run directory is untouched"
    );
    let onnx = progc(&["export", s(&run), "--to", "onnx", s(&dir.join("x"))]);
    assert_eq!(onnx.status.code(), Some(2), "{}", text(&onnx));
    assert!(
        text(&onnx).contains("unknown export format `onnx`"),
        "{}",
        text(&onnx)
    );
    let missing = progc(&[
        "export",
        s(&dir.join("nope")),
        "--to",
        "hf",
        s(&dir.join("x")),
    ]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("help:"), "{}", text(&missing));
    assert!(!dir.join("x").exists());
    for o in [&again, &onto_run, &onnx, &missing] {
        assert!(!text(o).contains("panicked"), "{}", text(o));
    }

    // An earlier checkpoint: the one before the growth, at depth 1.
    let early = dir.join("early");
    let step3 = run.join("checkpoints").join("step-3.safetensors");
    let out = progc(&[
        "export",
        s(&run),
        "--to",
        "hf",
        s(&early),
        "--checkpoint",
        s(&step3),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("(depth 1)"), "{}", text(&out));

    // Sampling: deterministic per seed, the prompt first, bad flags are errors.
    let a = progc(&[
        "sample",
        s(&run),
        "--prompt",
        "Emma",
        "--tokens",
        "20",
        "--seed",
        "3",
    ]);
    let b = progc(&[
        "sample",
        s(&run),
        "--prompt",
        "Emma",
        "--tokens",
        "20",
        "--seed",
        "3",
    ]);
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(a.stdout, b.stdout);
    assert!(String::from_utf8_lossy(&a.stdout).starts_with("Emma"));
    for bad in [
        &["--temperature", "-1"][..],
        &["--top-k", "0"],
        &["--tokens", "0"],
        &["--device", "tpu"],
    ] {
        let mut args = vec!["sample", s(&run)];
        args.extend_from_slice(bad);
        let o = progc(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", text(&o));
        assert!(text(&o).contains("help:"), "{bad:?}: {}", text(&o));
    }
}

/// A recipe in `dir` on `data/emma.txt` (copied there, so its caches are the test's own) with
/// the given tokenizer: 8 steps of a 2-block model grown from 1 block.
fn tokenizer_recipe(dir: &Path, tokenizer: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    std::fs::copy("data/emma.txt", dir.join("data/emma.txt")).expect("bundled corpus");
    let recipe = dir.join("r.prog");
    std::fs::write(
        &recipe,
        format!(
            "import \"std/gpt2.prog\"\nrecipe r {{\n model = gpt2_tiny {{ width: 32, heads: 2, \
             depth: 2, context: 32 }}\n data = text(\"data/emma.txt\", tokenizer: {tokenizer}, \
             val: 10%)\n steps = 8\n batch = 2 x 32\n eval_every = 4\n eval_batches = 2\n \
             optimizer = adamw(lr: 1e-2)\n schedule = constant(warmup: 0)\n start depth 1\n \
             grow at 4 to depth 2 {{ init: copy(stack) }}\n}}\n"
        ),
    )
    .expect("recipe");
    recipe
}

fn train(recipe: &Path, run: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        s(recipe),
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        s(run),
    ];
    args.extend_from_slice(extra);
    progc(&args)
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("file")).expect("json")
}

/// The recipe: `text("data/emma.txt", tokenizer: bpe(512), val: 10%)` plans, trains,
/// samples readable text and exports with its tokenizer.json, also once its cache is gone
/// (the export's evaluation then trains the BPE again, in another process: it must be the
/// same tokenizer, byte for byte).
#[test]
fn a_bpe_run_trains_samples_and_exports_its_tokenizer() {
    let tmp = scratch("bpe-run");
    let dir = tmp.path();
    let recipe = tokenizer_recipe(dir, "bpe(512)");
    let plan = progc(&["plan", s(&recipe)]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        text(&plan).contains("512 tokens (bpe(512)); embeddings 17.4k = "),
        "{}",
        text(&plan)
    );
    let run = dir.join("run");
    let out = train(&recipe, &run, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let kept = std::fs::read(run.join("tokenizer.json")).expect("the run keeps its tokenizer");
    let caches: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains(".bpe512-val0.1-blocks1."))
        .collect();
    assert_eq!(
        caches.len(),
        3,
        "tokenizer, train and val tokens: {caches:?}"
    );
    let cached = caches
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".tokenizer.json"))
        .expect("the tokenizer cache");
    assert_eq!(std::fs::read(cached).expect("cache"), kept);
    let json: serde_json::Value = serde_json::from_slice(&kept).expect("tokenizer json");
    assert_eq!(
        json["model"]["vocab"].as_object().expect("vocab").len(),
        512
    );

    // Sampling decodes with the run's tokenizer, with or without the cache.
    for p in &caches {
        std::fs::remove_file(p).expect("remove cache");
    }
    let sample = progc(&[
        "sample",
        s(&run),
        "--prompt",
        "Emma was",
        "--tokens",
        "30",
        "--seed",
        "1",
    ]);
    assert_eq!(sample.status.code(), Some(0), "{}", text(&sample));
    let said = String::from_utf8_lossy(&sample.stdout);
    assert!(said.starts_with("Emma was") && said.len() > 30, "{said}");

    let hf = dir.join("hf");
    let out = progc(&["export", s(&run), "--to", "hf", s(&hf)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read(hf.join("tokenizer.json")).expect("exported"),
        kept
    );
    let tc = read_json(&hf.join("tokenizer_config.json"));
    assert_eq!(tc["tokenizer_class"], "PreTrainedTokenizerFast");
    assert_eq!(tc["eos_token"], "<|endoftext|>");
    let cfg = read_json(&hf.join("config.json"));
    assert_eq!(
        (cfg["vocab_size"].as_u64(), cfg["eos_token_id"].as_u64()),
        (Some(512), Some(0))
    );
    let ev = read_json(&hf.join("progc_eval.json"));
    let sample = &ev["tokenizer_sample"];
    assert!(
        sample["ids"].as_array().is_some_and(|a| a.len() > 20),
        "{sample}"
    );
    assert!(
        sample["window_text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{sample}"
    );
    assert_eq!(
        read_json(&hf.join("progc_export.json"))["tokenizer"],
        "bpe(512)"
    );
}

/// A recipe with a tokenizer.json path trains and keeps the file; a run cannot continue once
/// the file has changed under it.
#[test]
fn a_tokenizer_file_run_trains_and_refuses_a_changed_file() {
    let tmp = scratch("file-run");
    let dir = tmp.path();
    let fixture = std::fs::read("tests/fixtures/tokenizer/emma-bpe400.json").expect("fixture");
    std::fs::write(dir.join("tok.json"), &fixture).expect("tokenizer");
    let recipe = tokenizer_recipe(dir, "\"tok.json\"");
    let run = dir.join("run");
    let out = train(&recipe, &run, &["--stop-after", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read(run.join("tokenizer.json")).expect("kept"),
        fixture
    );
    let plan = read_json(&run.join("run.json"));
    assert_eq!(plan["spec"]["model"]["vocab"], 400);
    assert_eq!(
        plan["spec"]["data"]["tokenizer"]["file"]["path"],
        "tok.json"
    );

    // The file changes: the run stops with an error instead of training on other tokens.
    let mut json: serde_json::Value = serde_json::from_slice(&fixture).expect("json");
    json["model"]["merges"]
        .as_array_mut()
        .expect("merges")
        .truncate(10);
    std::fs::write(
        dir.join("tok.json"),
        serde_json::to_vec(&json).expect("json"),
    )
    .expect("write");
    let resumed = progc(&[
        "run",
        "--resume",
        s(&run),
        "--device",
        "cpu",
        "--no-progress",
    ]);
    assert_eq!(resumed.status.code(), Some(1), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("not the file the recipe was checked with"),
        "{}",
        text(&resumed)
    );
    // Sampling still works, from the run's copy.
    let sample = progc(&["sample", s(&run), "--prompt", "Emma", "--tokens", "10"]);
    assert_eq!(sample.status.code(), Some(0), "{}", text(&sample));
    // And the recipe, checked again, is another recipe (the file's hash is part of it).
    let again = train(&recipe, &dir.join("run2"), &["--stop-after", "1"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let plan2 = read_json(&dir.join("run2/run.json"));
    assert_ne!(
        plan2["spec"]["data"]["tokenizer"]["file"]["hash"],
        plan["spec"]["data"]["tokenizer"]["file"]["hash"]
    );
}
