//! `progc export --to hf`, what it writes: a run's checkpoint as a transformers folder, with
//! progc's own validation loss beside it, and the run's tokenizer: GPT-2's files derived from
//! progc's own ranks, the run's tokenizer.json as it is (file and `bpe(N)` tokenizers), or a
//! note (bytes). The job that computes the tensors and the loss is `jobs::export`.

use std::path::{Path, PathBuf};

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::checkpoint::LoadedRun;
use crate::exec::io::data::{Batch, TextTokenizer};
use crate::exec::io::{hf, hf_tokenizer};

/// What `progc export` can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// A transformers `GPT2LMHeadModel` folder.
    Hf,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Result<ExportFormat, ExecError> {
        match s {
            "hf" | "huggingface" | "transformers" => Ok(ExportFormat::Hf),
            _ => Err(
                ExecError::new(ErrorKind::Usage, format!("unknown export format `{s}`"))
                    .with_help("use `--to hf` (a transformers GPT2LMHeadModel folder)"),
            ),
        }
    }
}

pub struct ExportOptions {
    pub format: ExportFormat,
    pub out_dir: PathBuf,
    pub checkpoint: Option<PathBuf>,
    /// Replace an earlier export at `out_dir`.
    pub force: bool,
    /// Write `progc_eval.json` (needs the run's corpus).
    pub eval: bool,
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub out_dir: PathBuf,
    pub checkpoint: PathBuf,
    pub step: u64,
    pub depth: usize,
    /// progc's validation loss and the number of windows, when `progc_eval.json` was written.
    pub val: Option<(f64, usize)>,
}

/// The marker file of an export (provenance; also what `--force` looks for).
const MARKER: &str = "progc_export.json";

/// Each batch as its windows of `context + 1` tokens (inputs, then the last target).
fn windows(val: &[Batch]) -> Vec<Vec<Vec<u32>>> {
    val.iter()
        .map(|b| {
            (0..b.sequences)
                .map(|i| {
                    let row = &b.inputs[i * b.context..(i + 1) * b.context];
                    let mut w = row.to_vec();
                    w.push(b.targets[(i + 1) * b.context - 1]);
                    w
                })
                .collect()
        })
        .collect()
}

/// A text and progc's ids for it, for checking another implementation of the tokenizer: the
/// first validation window's text and a fixed string with digits, punctuation, runs of spaces
/// and non-ASCII; and that window's ids and progc's decoding of them.
fn tokenizer_sample(
    tokenizer: &TextTokenizer,
    val: &[Batch],
) -> Result<serde_json::Value, ExecError> {
    let first = val
        .first()
        .map(|b| &b.inputs[..b.context])
        .unwrap_or_default();
    let window = tokenizer.decode_lossy(first)?;
    let text = format!(
        "{window}\n\nHello world! It's 2024: naïve café, 日本語 — ok?  Two  spaces,\ttab;\n   end "
    );
    let ids = tokenizer.encode(&text)?;
    Ok(serde_json::json!({
        "text": text,
        "ids": ids,
        "window_ids": first,
        "window_text": window,
    }))
}

/// Checks that `out` may be written (see the module invariants).
pub fn check_out_dir(out: &Path, force: bool) -> Result<(), ExecError> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(ExecError::new(
            ErrorKind::Io,
            format!("{} exists and is not a directory", out.display()),
        )
        .with_help("choose another OUT_DIR"));
    }
    let empty = std::fs::read_dir(out)
        .map_err(|e| ExecError::io("read", out, e))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    if !out.join(MARKER).is_file() {
        return Err(ExecError::new(
            ErrorKind::Io,
            format!("{} is not empty and holds no earlier export", out.display()),
        )
        .with_help("choose a new or empty OUT_DIR (`--force` only replaces an earlier export)"));
    }
    if !force {
        return Err(ExecError::new(
            ErrorKind::Io,
            format!("{} already holds an export", out.display()),
        )
        .with_help("pass `--force` to replace it, or choose another OUT_DIR"));
    }
    Ok(())
}

/// Fills a fresh temporary sibling of `out` with `fill`, then renames it to `out` (replacing
/// what [`check_out_dir`] allowed). On any error the temporary folder is removed.
fn write_dir_atomically(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<(), ExecError>,
) -> Result<(), ExecError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| ExecError::io("create directory", &parent, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.progc-tmp-{pid}"));
    let old = parent.join(format!(".{name}.progc-old-{pid}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| ExecError::io("create directory", &tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let replacing = out.exists();
    if replacing && let Err(e) = std::fs::rename(out, &old) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(ExecError::io("move aside", out, e));
    }
    if let Err(e) = std::fs::rename(&tmp, out) {
        if replacing {
            let _ = std::fs::rename(&old, out);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(ExecError::io("rename into", out, e));
    }
    if replacing {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), ExecError> {
    // Serializing a json Value cannot fail.
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|e| ExecError::io("write", path, e))
}

fn write_text(path: &Path, text: &str) -> Result<(), ExecError> {
    std::fs::write(path, text).map_err(|e| ExecError::io("write", path, e))
}

/// The tokenizer files for transformers: GPT-2's, the run's tokenizer.json with its
/// configuration, or a note (bytes).
fn write_tokenizer(dir: &Path, tokenizer: &TextTokenizer, context: usize) -> Result<(), ExecError> {
    match tokenizer {
        TextTokenizer::Gpt2 => {
            let tokens = hf_tokenizer::gpt2_token_bytes()?;
            let merges = hf_tokenizer::derive_merges(&tokens)?;
            write_text(&dir.join("vocab.json"), &hf_tokenizer::vocab_json(&tokens))?;
            write_text(
                &dir.join("merges.txt"),
                &hf_tokenizer::merges_txt(&tokens, &merges),
            )?;
            let (config, special) = hf_tokenizer::tokenizer_config(context);
            write_json(&dir.join("tokenizer_config.json"), &config)?;
            write_json(&dir.join("special_tokens_map.json"), &special)
        }
        TextTokenizer::Hf(t) => {
            let path = dir.join("tokenizer.json");
            std::fs::write(&path, t.json()).map_err(|e| ExecError::io("write", &path, e))?;
            let eot = t.end_of_text().and_then(|id| t.token(id));
            let (config, special) = hf_tokenizer::fast_tokenizer_config(context, eot.as_deref());
            write_json(&dir.join("tokenizer_config.json"), &config)?;
            write_json(&dir.join("special_tokens_map.json"), &special)
        }
        TextTokenizer::Bytes => write_text(
            &dir.join("TOKENIZER.md"),
            "# Tokenizer: bytes\n\nThis model was trained by progc on raw bytes: token id `i` \
             (0..=255) is the byte `i` of the UTF-8 text, and there are no other tokens (no \
             end-of-text). There is no transformers tokenizer to load; encode with \
             `list(text.encode(\"utf-8\"))` and decode with `bytes(ids).decode(\"utf-8\", \
             errors=\"replace\")`.\n",
        ),
    }
}

/// What the export job computed for [`write_export`]: the model's tensors under transformers'
/// names and, with `eval`, progc's own validation losses and the batches they are over.
pub struct Exported {
    pub depth: usize,
    pub residual_scale: f64,
    pub tensors: Vec<hf::HfTensor>,
    /// The mean loss, each batch's loss, and the batches.
    pub val: Option<(f64, Vec<f64>, Vec<Batch>)>,
}

/// Writes the export of `run` (from `run_dir`) into `opts.out_dir`, atomically: the files
/// transformers loads, the provenance marker and, with an evaluation, `progc_eval.json`.
pub fn write_export(
    run_dir: &Path,
    run: &LoadedRun,
    opts: &ExportOptions,
    tokenizer: &TextTokenizer,
    e: Exported,
) -> Result<ExportReport, ExecError> {
    let spec = &run.plan.spec;
    let ExportFormat::Hf = opts.format;
    let depth = e.depth;
    write_dir_atomically(&opts.out_dir, |dir| {
        hf::write_safetensors(&dir.join("model.safetensors"), &e.tensors)?;
        write_json(
            &dir.join("config.json"),
            &hf::hf_config(&spec.model, depth, &spec.data.tokenizer),
        )?;
        write_tokenizer(dir, tokenizer, spec.model.context)?;
        let provenance = serde_json::json!({
            "run": spec.name,
            "run_dir": run_dir.display().to_string(),
            "checkpoint": run.checkpoint_path.display().to_string(),
            "step": run.checkpoint.step,
            "depth": depth,
            "run_hash": run.checkpoint.run_hash,
            "tokenizer": spec.data.tokenizer.to_string(),
            "residual": spec.model.residual,
            "residual_scale_folded": e.residual_scale,
        });
        write_json(&dir.join(MARKER), &provenance)?;
        if let Some((loss, losses, batches)) = &e.val {
            let mut eval = serde_json::json!({
                "val_loss": loss,
                "batch_losses": losses,
                "precision": "f32",
                "device": "cpu",
                "averaging": "mean over batches of the mean token loss in each batch",
                "step": run.checkpoint.step,
                "sequences": spec.batch.sequences,
                "context": spec.batch.context,
                "batches": windows(batches),
            });
            if !matches!(tokenizer, TextTokenizer::Bytes) {
                eval["tokenizer_sample"] = tokenizer_sample(tokenizer, batches)?;
            }
            write_json(&dir.join("progc_eval.json"), &eval)?;
        }
        Ok(())
    })?;
    Ok(ExportReport {
        out_dir: opts.out_dir.clone(),
        checkpoint: run.checkpoint_path.clone(),
        step: run.checkpoint.step,
        depth,
        val: e
            .val
            .map(|(l, _, b)| (l, b.iter().map(|b| b.sequences).sum())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::io::checkpoint::load_run;
    use crate::exec::jobs::train::validation_loss;
    use crate::exec::network::model::tests::tiny_spec;
    use crate::exec::network::model::{Gpt2, param_to_vec};
    use crate::exec::network::precision::Precision;
    use crate::plan::spec::{ModelSpec, ResidualScaling, Tokenizer};
    use crate::testing::scratch;
    use burn::backend::Flex;

    /// Two validation batches of a fixed token pattern.
    fn batches(vocab: u32, context: usize) -> Vec<Batch> {
        (0..2)
            .map(|k| {
                let seq: Vec<u32> = (0..3 * (context + 1))
                    .map(|i| (i as u32 * 7 + k * 13 + i as u32 / 5) % vocab)
                    .collect();
                let mut b = Batch {
                    inputs: vec![],
                    targets: vec![],
                    sequences: 3,
                    context,
                };
                for w in seq.chunks(context + 1) {
                    b.inputs.extend(&w[..context]);
                    b.targets.extend(&w[1..]);
                }
                b
            })
            .collect()
    }

    fn export_and_import(residual: ResidualScaling, depth: usize, tag: &str) -> (f64, f64, f64) {
        let spec = ModelSpec {
            residual,
            init_std: 0.2, // large enough that the residual branches matter
            ..tiny_spec(depth)
        };
        let dev = Default::default();
        let m = Gpt2::<Flex>::new(&spec, depth, 3, &dev);
        let val = batches(spec.vocab as u32, spec.context);
        let progc = validation_loss(&m, &val, &dev, Precision::F32);
        let tmp = scratch(tag);
        let dir = tmp.path().join("hf");
        write_dir_atomically(&dir, |d| {
            hf::write_safetensors(&d.join("model.safetensors"), &hf::hf_tensors(&m)?)?;
            write_json(
                &d.join("config.json"),
                &hf::hf_config(&spec, depth, &Tokenizer::Bytes),
            )
        })
        .unwrap();
        let (back, back_spec) = hf::from_hf::<Flex>(&dir, &dev).unwrap();
        assert_eq!(back_spec.residual, ResidualScaling::None);
        assert_eq!((back_spec.width, back_spec.depth), (spec.width, depth));
        let imported = validation_loss(&back, &val, &dev, Precision::F32);
        // The same weights without the folding: what a plain copy would give.
        let unfolded = Gpt2 {
            residual: ResidualScaling::None,
            ..m
        };
        let plain = validation_loss(&unfolded, &val, &dev, Precision::F32);
        (progc, imported, plain)
    }

    #[test]
    fn export_then_import_gives_the_same_eval_loss() {
        let (progc, imported, _) = export_and_import(ResidualScaling::None, 2, "none");
        assert_eq!(progc.to_bits(), imported.to_bits(), "{progc} vs {imported}");
    }

    #[test]
    fn residual_scaling_is_folded_into_the_output_projections() {
        for (r, tag) in [
            (ResidualScaling::InvSqrtDepth, "sqrt"),
            (ResidualScaling::InvDepth, "inv"),
        ] {
            let (progc, imported, plain) = export_and_import(r, 3, tag);
            let rel = (progc - imported).abs() / progc;
            assert!(rel < 1e-6, "{r:?}: {progc} vs {imported} ({rel})");
            // The check can fail: ignoring the scale changes the loss.
            assert!(
                (progc - plain).abs() / progc > 1e-3,
                "{r:?}: scaling makes no difference ({progc} vs {plain})"
            );
        }
    }

    #[test]
    fn exported_tensors_have_gpt2_names_and_shapes() {
        let spec = tiny_spec(1);
        let m = Gpt2::<Flex>::new(&spec, 1, 1, &Default::default());
        let ts = hf::hf_tensors(&m).unwrap();
        let shape = |n: &str| ts.iter().find(|t| t.name == n).map(|t| t.shape.clone());
        assert_eq!(shape("transformer.wte.weight"), Some(vec![64, 32]));
        assert_eq!(shape("transformer.wpe.weight"), Some(vec![16, 32]));
        assert_eq!(
            shape("transformer.h.0.attn.c_attn.weight"),
            Some(vec![32, 96])
        );
        assert_eq!(shape("transformer.h.0.attn.c_attn.bias"), Some(vec![96]));
        assert_eq!(
            shape("transformer.h.0.mlp.c_fc.weight"),
            Some(vec![32, 128])
        );
        assert_eq!(
            shape("transformer.h.0.mlp.c_proj.weight"),
            Some(vec![128, 32])
        );
        assert_eq!(shape("transformer.h.0.ln_1.weight"), Some(vec![32]));
        assert_eq!(shape("transformer.ln_f.bias"), Some(vec![32]));
        assert_eq!(ts.len(), 2 + 12 + 2);
        assert!(ts.iter().all(|t| !t.name.starts_with("lm_head")));
        let wte = ts
            .iter()
            .find(|t| t.name == "transformer.wte.weight")
            .unwrap();
        assert_eq!(wte.data, param_to_vec(&m.wte));
    }

    #[test]
    fn a_failed_export_leaves_nothing_and_an_export_is_only_replaced_with_force() {
        let tmp = scratch("atomic");
        let dir = tmp.path();
        let out = dir.join("out");
        let failed = write_dir_atomically(&out, |d| {
            write_text(&d.join("half"), "x")?;
            Err(ExecError::new(ErrorKind::Io, "boom"))
        });
        assert!(failed.is_err());
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "no temp left");
        write_dir_atomically(&out, |d| write_text(&d.join(MARKER), "{}")).unwrap();
        assert!(check_out_dir(&out, false).is_err());
        assert!(check_out_dir(&out, true).is_ok());
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        assert!(check_out_dir(&other, true).is_ok(), "empty is fine");
        write_text(&other.join("run.json"), "{}").unwrap();
        let e = check_out_dir(&other, true).unwrap_err();
        assert!(e.message.contains("no earlier export"), "{e}");
    }

    #[test]
    fn unknown_formats_and_missing_runs_are_errors() {
        assert!(ExportFormat::parse("onnx").unwrap_err().help.is_some());
        let e = load_run(Path::new("/no/such/run"), None).err().unwrap();
        assert!(e.message.contains("does not exist"), "{e}");
        let tmp = scratch("norun");
        let dir = tmp.path();
        let e = load_run(dir, None).err().unwrap();
        assert!(e.message.contains("run.json"), "{e}");
    }
}
