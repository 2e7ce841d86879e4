//! `progc export --to hf`: loads a run's checkpoint on the CPU, computes what the export needs
//! (the tensors under transformers' names and, unless `--no-eval`, progc's own validation loss)
//! and hands it to `io::export`, which writes the folder.

use std::path::Path;

use crate::exec::device::{BackendTask, DeviceChoice, Placed, dispatch};
use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::checkpoint::{LoadedRun, load_run};
use crate::exec::io::data::{Corpus, TextTokenizer, load_corpus, validation_batches};
use crate::exec::io::export::{ExportOptions, ExportReport, Exported, check_out_dir, write_export};
use crate::exec::io::hf;
use crate::exec::io::run_dir::RunDir;
use crate::exec::jobs::train::validation_losses;
use crate::exec::network::kernels::TrainBackend;
use crate::exec::network::precision::Precision;

/// `progc export RUN_DIR --to hf OUT_DIR`.
pub fn export(run_dir: &Path, opts: &ExportOptions) -> Result<ExportReport, ExecError> {
    check_out_dir(&opts.out_dir, opts.force)?;
    let run = load_run(run_dir, opts.checkpoint.as_deref())?;
    let tokenizer = TextTokenizer::for_run(run_dir, &run.plan.spec.data.tokenizer)?;
    // The evaluation is f32 on the CPU, as `progc_eval.json` says.
    let exported = dispatch(
        DeviceChoice::Cpu,
        false,
        Compute {
            run: &run,
            run_dir,
            tokenizer: &tokenizer,
            eval: opts.eval,
        },
    )?;
    write_export(run_dir, &run, opts, &tokenizer, exported)
}

struct Compute<'a> {
    run: &'a LoadedRun,
    run_dir: &'a Path,
    tokenizer: &'a TextTokenizer,
    eval: bool,
}

/// A bpe(N) is trained again when its cache is gone: the corpus must still give the run's.
fn check_same_tokenizer(
    corpus: &Corpus,
    run: &TextTokenizer,
    run_dir: &Path,
) -> Result<(), ExecError> {
    if let (Some(theirs), Some(ours)) = (&corpus.tokenizer, run.hf())
        && theirs.json() != ours.json()
    {
        return Err(ExecError::new(
            ErrorKind::Data,
            format!(
                "the corpus {} now gives another tokenizer than the run's {}",
                corpus.source.display(),
                RunDir::new(run_dir).tokenizer_file().display()
            ),
        )
        .with_help(
            "the corpus has changed since the run; pass `--no-eval` to export without \
             progc_eval.json",
        ));
    }
    Ok(())
}

impl BackendTask for Compute<'_> {
    type Output = Exported;

    fn run<B: TrainBackend>(self, device: B::Device, _: Placed) -> Result<Exported, ExecError> {
        let spec = &self.run.plan.spec;
        let model = self.run.model::<B::InnerBackend>(&device)?;
        let val = if self.eval {
            let corpus = load_corpus(&spec.data, true).map_err(|e| {
                let help = "run the export from the directory the run was started in, or pass \
                            `--no-eval` to skip progc_eval.json";
                ExecError {
                    help: Some(help.into()),
                    ..e
                }
            })?;
            check_same_tokenizer(&corpus, self.tokenizer, self.run_dir)?;
            let batches = validation_batches(&corpus, spec.batch, spec.eval_batches);
            let losses = validation_losses(&model, &batches, &device, Precision::F32);
            let loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
            Some((loss, losses, batches))
        } else {
            None
        };
        Ok(Exported {
            depth: model.depth(),
            residual_scale: model.residual_scale(),
            tensors: hf::hf_tensors(&model)?,
            val,
        })
    }
}
