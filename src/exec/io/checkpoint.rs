//! Training checkpoints: a safetensors file whose tensors are the parameters and the optimizer
//! moments, and whose metadata holds everything else as JSON.
//!
//! Layout of `checkpoints/<name>.safetensors`:
//! - tensors `model/<param name>` (f32, the parameter's shape) and `optim/<ParamId>/<slot>`
//!   (f32, flattened) for each slot the optimizer keeps for that parameter (`m`, `v` for AdamW;
//!   `m` alone for Muon-updated matrices);
//! - metadata `progc_checkpoint` = the format version, `progc` = the JSON [`Meta`] (run hash,
//!   step, segment, depth, ParamIds, optimizer kind and per-parameter step counters, data
//!   cursor with its RNG state, timing), and `checksum` = xxh3-64 (hex) of the `progc` JSON
//!   followed by the whole tensor data section.
//!
//! Invariants:
//! - a file is written atomically (temp file in the same directory, fsync, rename), so a crash
//!   leaves either the old checkpoint or the new one under the final name;
//! - reading never panics: a foreign file, an old progc binary checkpoint, an unknown version,
//!   truncation, a checksum mismatch, an inconsistent header, or a run-hash mismatch are
//!   `ExecError`s of kind `Checkpoint`;
//! - `step` is the number of optimizer steps completed (the next global step to train); a
//!   boundary checkpoint at a growth step `tau` has `step == tau` and the *old* depth (growth
//!   happens when step `tau` starts);
//! - parameters are stored by stable name with their `ParamId`, and restored with those exact
//!   ids, so the optimizer state (keyed by id) lines up after loading; f32 bit patterns are
//!   stored as they are, so a resume is bit-identical.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::data::{BatchCursor, write_atomic};
use crate::exec::io::metrics::SegmentTiming;
use crate::exec::io::run_dir::RunDir;
use crate::exec::network::model::{Gpt2, param_to_vec};
use crate::exec::network::optim::{OptimizerState, SavedParamState, SavedSlot};
use crate::plan::ir::RunPlan;
use crate::plan::spec::{ModelSpec, RunSpec};

/// Format version in the `progc_checkpoint` metadata key.
const VERSION: u32 = 2;
/// The first bytes of the binary format that progc wrote before version 2.
const OLD_MAGIC: &[u8; 8] = b"PROGCKPT";
/// File name extension of checkpoints.
pub const EXT: &str = "safetensors";
/// How many periodic checkpoints `checkpoints/recent/` keeps.
pub const KEEP_RECENT: usize = 3;

/// `RUN_DIR/checkpoints/latest.safetensors`: the newest checkpoint of a run.
pub fn latest_path(run_dir: &Path) -> PathBuf {
    RunDir::new(run_dir)
        .checkpoints()
        .join(format!("latest.{EXT}"))
}

/// `RUN_DIR/checkpoints/step-<N>.safetensors`: a kept checkpoint (before a growth, or asked for
/// by an experiment whose runs share this prefix).
pub fn step_path(run_dir: &Path, step: u64) -> PathBuf {
    RunDir::new(run_dir)
        .checkpoints()
        .join(format!("step-{step}.{EXT}"))
}

/// `RUN_DIR/checkpoints/recent/step-<N>.safetensors`: a periodic checkpoint, of which only the
/// newest [`KEEP_RECENT`] are kept.
pub fn recent_path(run_dir: &Path, step: u64) -> PathBuf {
    recent_dir(run_dir).join(format!("step-{step}.{EXT}"))
}

fn recent_dir(run_dir: &Path) -> PathBuf {
    RunDir::new(run_dir).checkpoints().join("recent")
}

/// The checkpoints `step-<N>.safetensors` in `dir`, by step number.
fn step_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut steps: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name
                .strip_prefix("step-")?
                .strip_suffix(&format!(".{EXT}"))?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    steps.sort();
    steps
}

/// Deletes periodic checkpoints beyond the newest `keep` (by step number). Errors are ignored:
/// an extra old file costs disk space, never correctness.
pub fn prune_recent(run_dir: &Path, keep: usize) {
    let steps = step_files(&recent_dir(run_dir));
    let n = steps.len();
    for (_, path) in steps.into_iter().take(n.saturating_sub(keep)) {
        let _ = std::fs::remove_file(path);
    }
}

/// The run's latest checkpoint, kept or periodic, at a step in `1..=max`.
pub fn latest_at_most(run_dir: &Path, max: u64) -> Option<(u64, PathBuf)> {
    let mut all = step_files(&RunDir::new(run_dir).checkpoints());
    all.extend(step_files(&recent_dir(run_dir)));
    all.into_iter()
        .filter(|&(s, _)| s > 0 && s <= max)
        .max_by_key(|&(s, _)| s)
}

/// One stored parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedParam {
    pub name: String,
    pub id: u64,
    pub shape: [usize; 2],
    pub data: Vec<f32>,
}

/// Wall-clock bookkeeping carried across a resume (not needed for exactness).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub wall_s: f64,
    pub warmup_s: f64,
    pub train_s: f64,
    pub segments: Vec<SegmentTiming>,
    /// Last measured losses (for a summary after a resume with nothing left to train).
    pub last_train_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// [`run_hash`] of the recipe that wrote it.
    pub run_hash: String,
    /// Optimizer steps completed.
    pub step: u64,
    pub segment: usize,
    pub depth: usize,
    pub params: Vec<SavedParam>,
    pub optimizer: OptimizerState,
    pub cursor: BatchCursor,
    pub timing: Timing,
}

#[derive(Serialize, Deserialize)]
struct ParamEntry {
    name: String,
    id: u64,
    shape: [usize; 2],
}

/// One parameter's optimizer state without its slots (those are tensors).
#[derive(Serialize, Deserialize)]
struct StateEntry {
    id: u64,
    step: u64,
    shape: Vec<usize>,
    /// The slots `m, v` (true) or `m` (false), AdamW's and Muon's: how checkpoints named them
    /// before slots had names, still written so, so that their files do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    second_moment: Option<bool>,
    /// Any other list of slots, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slots: Option<Vec<String>>,
}

impl StateEntry {
    fn slot_names(&self) -> Result<Vec<String>, String> {
        match (&self.slots, self.second_moment) {
            (Some(names), _) => Ok(names.clone()),
            (None, Some(true)) => Ok(vec!["m".into(), "v".into()]),
            (None, Some(false)) => Ok(vec!["m".into()]),
            (None, None) => Err(format!(
                "the optimizer state of parameter {} names no slots",
                self.id
            )),
        }
    }
}

/// Everything but the tensors, as the `progc` metadata JSON.
#[derive(Serialize, Deserialize)]
struct Meta {
    run_hash: String,
    step: u64,
    segment: usize,
    depth: usize,
    params: Vec<ParamEntry>,
    optimizer: String,
    states: Vec<StateEntry>,
    cursor: BatchCursor,
    timing: Timing,
}

/// xxh3-64 of `bytes`, as 16 hex digits.
pub fn hash_hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Identity of a recipe: xxh3-64 of its `RunSpec` JSON, as 16 hex digits.
pub fn run_hash(spec: &RunSpec) -> String {
    // Serializing plain data to a String cannot fail.
    let json = serde_json::to_string(spec).unwrap_or_default();
    hash_hex(json.as_bytes())
}

/// xxh3-64 over the metadata JSON and every tensor (name, then bytes) in name order, so it
/// does not depend on how safetensors lays the tensors out.
fn checksum<'a>(meta_json: &str, tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by_key(|(name, _)| *name);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(meta_json.as_bytes());
    for (name, bytes) in sorted {
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    format!("{:016x}", h.digest())
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> ExecError {
    ExecError::new(
        ErrorKind::Checkpoint,
        format!("checkpoint {} is unreadable: {what}", path.display()),
    )
    .with_help(
        "it is truncated or corrupt; resume from an older checkpoint (`checkpoints/step-<N>.safetensors` \
         or `checkpoints/recent/`) or start the run afresh",
    )
}

fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s_of(view: &TensorView<'_>) -> Result<Vec<f32>, String> {
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "a tensor has dtype {:?}, checkpoints hold f32",
            view.dtype()
        ));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl Checkpoint {
    /// Snapshot of a model (host copies of every parameter with its name and id).
    pub fn capture<B: Backend>(
        spec: &RunSpec,
        step: u64,
        segment: usize,
        model: &Gpt2<B>,
        optimizer: OptimizerState,
        cursor: BatchCursor,
        timing: Timing,
    ) -> Checkpoint {
        let params = model
            .named_params()
            .into_iter()
            .map(|(name, p)| {
                let dims = p.val().dims();
                SavedParam {
                    name,
                    id: p.id.val(),
                    shape: dims,
                    data: param_to_vec(p),
                }
            })
            .collect();
        Checkpoint {
            run_hash: run_hash(spec),
            step,
            segment,
            depth: model.depth(),
            params,
            optimizer,
            cursor,
            timing,
        }
    }

    /// Error unless this checkpoint was written for `spec`.
    pub fn check_run(&self, spec: &RunSpec, path: &Path) -> Result<(), ExecError> {
        let want = run_hash(spec);
        if self.run_hash != want {
            return Err(ExecError::new(
                ErrorKind::Checkpoint,
                format!(
                    "checkpoint {} belongs to another recipe (run hash {} but `{}` hashes to {want})",
                    path.display(),
                    self.run_hash,
                    spec.name
                ),
            )
            .with_help("resume with the exact recipe that wrote it, or start a fresh run in another output directory"));
        }
        Ok(())
    }

    /// Rebuilds the model at the stored depth with the stored values and ParamIds.
    pub fn restore_model<B: Backend>(
        &self,
        spec: &ModelSpec,
        device: &B::Device,
    ) -> Result<Gpt2<B>, ExecError> {
        let mut by_name: std::collections::HashMap<&str, &SavedParam> =
            self.params.iter().map(|p| (p.name.as_str(), p)).collect();
        let model = Gpt2::from_named(spec, self.depth, device, |name, shape| {
            let p = by_name
                .remove(name)
                .ok_or_else(|| mismatch(format!("it lacks parameter `{name}` for this model")))?;
            if p.shape != shape {
                return Err(mismatch(format!(
                    "parameter `{name}` has shape {:?}, the model needs {shape:?}",
                    p.shape
                )));
            }
            Ok((ParamId::from(p.id), p.data.clone()))
        })?;
        if let Some(extra) = by_name.keys().next() {
            return Err(mismatch(format!(
                "it holds parameter `{extra}` the model does not have"
            )));
        }
        Ok(model)
    }

    /// Writes the checkpoint atomically to `path` (creating its directory).
    pub fn write(&self, path: &Path) -> Result<(), ExecError> {
        let internal = |what: String| ExecError::new(ErrorKind::Internal, what);
        let meta = Meta {
            run_hash: self.run_hash.clone(),
            step: self.step,
            segment: self.segment,
            depth: self.depth,
            params: self
                .params
                .iter()
                .map(|p| ParamEntry {
                    name: p.name.clone(),
                    id: p.id,
                    shape: p.shape,
                })
                .collect(),
            optimizer: self.optimizer.kind.clone(),
            states: self
                .optimizer
                .params
                .iter()
                .map(|p| {
                    let names = p.slot_names();
                    let legacy = match names.as_slice() {
                        ["m", "v"] => Some(true),
                        ["m"] => Some(false),
                        _ => None,
                    };
                    StateEntry {
                        id: p.id,
                        step: p.step,
                        shape: p.shape.clone(),
                        second_moment: legacy,
                        slots: legacy
                            .is_none()
                            .then(|| names.iter().map(|n| n.to_string()).collect()),
                    }
                })
                .collect(),
            cursor: self.cursor.clone(),
            timing: self.timing.clone(),
        };
        let meta_json = serde_json::to_string(&meta)
            .map_err(|e| internal(format!("cannot serialize a checkpoint header: {e}")))?;

        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for p in &self.params {
            owned.push((
                format!("model/{}", p.name),
                p.shape.to_vec(),
                f32_bytes(&p.data),
            ));
        }
        for p in &self.optimizer.params {
            for slot in &p.slots {
                owned.push((
                    format!("optim/{}/{}", p.id, slot.name),
                    vec![slot.data.len()],
                    f32_bytes(&slot.data),
                ));
            }
        }
        let views = owned
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| internal(format!("tensor `{name}` does not fit its shape: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sum = checksum(
            &meta_json,
            owned.iter().map(|(n, _, b)| (n.as_str(), b.as_slice())),
        );
        let info = HashMap::from([
            ("progc_checkpoint".to_string(), VERSION.to_string()),
            ("progc".to_string(), meta_json),
            ("checksum".to_string(), sum),
        ]);
        let bytes = safetensors::serialize(views, Some(info))
            .map_err(|e| internal(format!("cannot serialize a checkpoint: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
        }
        write_atomic(path, &bytes).map_err(|e| ExecError::io("write checkpoint", path, e))
    }

    /// Reads and verifies a checkpoint (format, version, checksum, consistency). Use
    /// [`Checkpoint::check_run`] to make sure it belongs to the recipe at hand.
    pub fn read(path: &Path) -> Result<Checkpoint, ExecError> {
        let bytes = std::fs::read(path).map_err(|e| {
            let mut err = ExecError::new(
                ErrorKind::Checkpoint,
                format!("cannot read checkpoint {}: {e}", path.display()),
            )
            .with_help("check the run directory; a run writes checkpoints/latest.safetensors");
            if e.kind() == std::io::ErrorKind::NotFound
                && let Some(old) = old_format_sibling(path)
            {
                err = old_format(&old);
            }
            err
        })?;
        if bytes.starts_with(OLD_MAGIC) {
            return Err(old_format(path));
        }
        Self::decode(&bytes).map_err(|what| corrupt(path, what))
    }

    fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| format!("bad header ({e})"))?;
        let info = header
            .metadata()
            .as_ref()
            .ok_or("a safetensors file without progc metadata (not a progc checkpoint)")?;
        let version = info
            .get("progc_checkpoint")
            .ok_or("a safetensors file without progc metadata (not a progc checkpoint)")?;
        if version != &VERSION.to_string() {
            return Err(format!(
                "checkpoint format version {version}, this progc reads version {VERSION}"
            ));
        }
        let meta_json = info.get("progc").ok_or("the `progc` metadata is missing")?;
        let stored = info.get("checksum").ok_or("the checksum is missing")?;
        let names = st.names();
        let mut views = Vec::with_capacity(names.len());
        for name in names {
            let v = st
                .tensor(name)
                .map_err(|e| format!("tensor `{name}`: {e}"))?;
            views.push((name, v.data()));
        }
        if &checksum(meta_json, views) != stored {
            return Err("checksum mismatch (truncated or corrupted)".into());
        }
        let meta: Meta =
            serde_json::from_str(meta_json).map_err(|e| format!("damaged metadata: {e}"))?;
        let tensor = |name: &str| {
            st.tensor(name)
                .map_err(|_| format!("tensor `{name}` is missing"))
        };
        let mut params = Vec::with_capacity(meta.params.len());
        for e in meta.params {
            let view = tensor(&format!("model/{}", e.name))?;
            if view.shape() != e.shape {
                return Err(format!(
                    "parameter `{}` has shape {:?}, its entry says {:?}",
                    e.name,
                    view.shape(),
                    e.shape
                ));
            }
            params.push(SavedParam {
                data: f32s_of(&view)?,
                name: e.name,
                id: e.id,
                shape: e.shape,
            });
        }
        let mut states = Vec::with_capacity(meta.states.len());
        for e in meta.states {
            let mut slots = Vec::new();
            for name in e.slot_names()? {
                let data = f32s_of(&tensor(&format!("optim/{}/{name}", e.id))?)?;
                slots.push(SavedSlot { name, data });
            }
            states.push(SavedParamState {
                id: e.id,
                step: e.step,
                shape: e.shape,
                slots,
            });
        }
        Ok(Checkpoint {
            run_hash: meta.run_hash,
            step: meta.step,
            segment: meta.segment,
            depth: meta.depth,
            params,
            optimizer: OptimizerState {
                kind: meta.optimizer,
                params: states,
            },
            cursor: meta.cursor,
            timing: meta.timing,
        })
    }
}

/// For a missing `x.safetensors`: the `x.ckpt` that an older progc wrote in its place.
fn old_format_sibling(path: &Path) -> Option<PathBuf> {
    let old = path.with_extension("ckpt");
    (path.extension()? == EXT && old.is_file()).then_some(old)
}

fn old_format(path: &Path) -> ExecError {
    ExecError::new(
        ErrorKind::Checkpoint,
        format!(
            "checkpoint {} is in the binary format of progc before version 2, which this progc \
             no longer reads",
            path.display()
        ),
    )
    .with_help(
        "finish or export that run with the progc that wrote it (commit 621735f or earlier), or \
         start it afresh with this one; checkpoints are now safetensors files with JSON metadata",
    )
}

fn mismatch(what: String) -> ExecError {
    ExecError::new(
        ErrorKind::Checkpoint,
        format!("checkpoint does not fit the recipe's model: {what}"),
    )
    .with_help("resume with the recipe that wrote the checkpoint")
}

/// A run's plan and one of its checkpoints, verified to belong to it.
pub struct LoadedRun {
    pub plan: RunPlan,
    pub checkpoint_path: PathBuf,
    pub checkpoint: Checkpoint,
}

/// Reads `run_dir/run.json` and `checkpoint` (default: the latest).
pub fn load_run(run_dir: &Path, checkpoint: Option<&Path>) -> Result<LoadedRun, ExecError> {
    let plan = RunDir::new(run_dir).read_plan()?;
    let checkpoint_path = match checkpoint {
        Some(p) => p.to_path_buf(),
        None => latest_path(run_dir),
    };
    if !checkpoint_path.is_file() {
        return Err(ExecError::new(
            ErrorKind::Checkpoint,
            format!("no checkpoint at {}", checkpoint_path.display()),
        )
        .with_help(
            "the run has not written one yet (train it with `progc run`), or name one with \
             `--checkpoint FILE` (see RUN_DIR/checkpoints/)",
        ));
    }
    let ck = Checkpoint::read(&checkpoint_path)?;
    ck.check_run(&plan.spec, &checkpoint_path)?;
    Ok(LoadedRun {
        plan,
        checkpoint_path,
        checkpoint: ck,
    })
}

impl LoadedRun {
    pub fn model<B: Backend>(&self, device: &B::Device) -> Result<Gpt2<B>, ExecError> {
        self.checkpoint
            .restore_model::<B>(&self.plan.spec.model, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::network::model::tests::{TB, tiny_spec};
    use crate::exec::network::optim::Optimizer;
    use crate::plan::spec::*;
    use crate::testing::scratch;

    pub fn tiny_run() -> RunSpec {
        RunSpec {
            name: "t".into(),
            model: tiny_spec(2),
            data: DataSpec {
                name: "d".into(),
                path: "x.txt".into(),
                resolved_path: "x.txt".into(),
                tokenizer: Tokenizer::Bytes,
                val_fraction: 0.1,
                val_blocks: 1,
                format: DataFormat::Text,
                shards: vec![],
                val_shards: vec![],
            },
            batch: BatchSpec {
                sequences: 2,
                context: 16,
            },
            total_steps: 10,
            optimizer: OptimizerSpec::Adamw(AdamWSpec::with_lr(1e-3)),
            schedule: ScheduleSpec::Constant { warmup_steps: 0 },
            seed: 1,
            start_depth: 2,
            growths: vec![],
            eval_every: 5,
            eval_batches: 1,
            checkpoint_every: 0,
            checkpoint_clock_s: None,
        }
    }

    fn sample() -> (RunSpec, Checkpoint, Gpt2<TB>) {
        let spec = tiny_run();
        let m = Gpt2::<TB>::new(&spec.model, 2, 4, &Default::default());
        let opt = Optimizer::<TB>::new(&spec.optimizer);
        let ck = Checkpoint::capture(
            &spec,
            3,
            0,
            &m,
            opt.save(),
            BatchCursor::new(5),
            Timing::default(),
        );
        (spec, ck, m)
    }

    #[test]
    fn round_trip_restores_values_and_ids() {
        let tmp = scratch("rt");
        let dir = tmp.path();
        let (spec, ck, m) = sample();
        let path = dir.join("a.ckpt");
        ck.write(&path).unwrap();
        let back = Checkpoint::read(&path).unwrap();
        assert_eq!(back, ck);
        back.check_run(&spec, &path).unwrap();
        let m2 = back
            .restore_model::<TB>(&spec.model, &Default::default())
            .unwrap();
        for ((n1, p1), (n2, p2)) in m.named_params().iter().zip(m2.named_params()) {
            assert_eq!((n1, p1.id), (&n2, p2.id));
            assert_eq!(param_to_vec(p1), param_to_vec(p2));
        }
    }

    #[test]
    fn corrupt_truncated_and_foreign_checkpoints_are_errors() {
        let tmp = scratch("bad");
        let dir = tmp.path();
        let (spec, ck, _) = sample();
        let path = dir.join("a.ckpt");
        ck.write(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let bad = dir.join("b.ckpt");
        // Flip one byte anywhere: header, blob, optimizer or checksum.
        for at in [9, 30, good.len() / 2, good.len() - 20, good.len() - 1] {
            let mut b = good.clone();
            b[at] ^= 0x40;
            std::fs::write(&bad, &b).unwrap();
            let e = Checkpoint::read(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Checkpoint, "byte {at}: {e}");
        }
        for len in [0, 5, 27, 100, good.len() - 1] {
            std::fs::write(&bad, &good[..len]).unwrap();
            let e = Checkpoint::read(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Checkpoint, "len {len}: {e}");
        }
        let e = Checkpoint::read(&dir.join("missing.ckpt")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Checkpoint);
        let mut other = spec.clone();
        other.seed = 2;
        let e = Checkpoint::read(&path)
            .unwrap()
            .check_run(&other, &path)
            .unwrap_err();
        assert!(e.message.contains("another recipe"), "{e}");
        // A safetensors file that progc did not write.
        let foreign = safetensors::serialize(
            [(
                "w",
                TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap(),
            )],
            None,
        )
        .unwrap();
        std::fs::write(&bad, foreign).unwrap();
        let e = Checkpoint::read(&bad).unwrap_err();
        assert!(e.message.contains("not a progc checkpoint"), "{e}");
        // A checkpoint of another shape cannot be loaded into this model.
        let mut wide = spec.model.clone();
        wide.width = 64;
        assert!(ck.restore_model::<TB>(&wide, &Default::default()).is_err());
    }

    /// Corrupted checkpoints, thousands of them: every read is an error naming the file, never
    /// a panic (the checksum catches what the format does not).
    #[test]
    fn corrupted_checkpoints_never_panic() {
        let tmp = scratch("fuzz");
        let dir = tmp.path();
        let (_, ck, _) = sample();
        let path = dir.join("a.ckpt");
        ck.write(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let bad = dir.join("b.ckpt");
        let mut state = 11u64;
        let mut rand =
            |n: usize| (crate::exec::network::rng::splitmix64(&mut state) % n as u64) as usize;
        // The safetensors header: an 8-byte length, then JSON.
        let header = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        for i in 0..2000 {
            let mut b = good.clone();
            match i % 5 {
                0 => {
                    let at = rand(header);
                    b[at] = rand(256) as u8;
                }
                1 => {
                    let at = rand(b.len());
                    b[at] ^= 1 << rand(8);
                }
                2 => b.truncate(rand(b.len())),
                // The header length from anywhere in the u64 range.
                3 => {
                    let v = rand(usize::MAX) as u64 >> rand(64);
                    b[..8].copy_from_slice(&v.to_le_bytes());
                }
                // A span of the file copied over another (shuffled offsets in the JSON).
                _ => {
                    let (from, to, n) = (rand(b.len()), rand(header), 1 + rand(16));
                    let n = n.min(b.len() - from).min(b.len() - to);
                    let chunk = b[from..from + n].to_vec();
                    b[to..to + n].copy_from_slice(&chunk);
                }
            }
            if b == good {
                continue;
            }
            std::fs::write(&bad, &b).unwrap();
            let e = Checkpoint::read(&bad).expect_err("a corrupted checkpoint");
            assert_eq!(e.kind, ErrorKind::Checkpoint, "{e}");
            assert!(e.message.contains("b.ckpt"), "{e}");
        }
    }

    #[test]
    fn the_file_is_plain_safetensors_with_json_metadata() {
        let tmp = scratch("st");
        let dir = tmp.path();
        let (_, ck, m) = sample();
        let path = dir.join("a.safetensors");
        ck.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let wte = st.tensor("model/wte.weight").unwrap();
        assert_eq!(wte.dtype(), Dtype::F32);
        assert_eq!(wte.shape(), m.wte.val().dims());
        assert_eq!(f32s_of(&wte).unwrap(), param_to_vec(&m.wte));
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let info = header.metadata().as_ref().unwrap();
        let meta: serde_json::Value = serde_json::from_str(&info["progc"]).unwrap();
        assert_eq!(meta["step"], 3);
        assert_eq!(meta["cursor"]["drawn"], 0);
        assert_eq!(info["progc_checkpoint"], "2");
    }

    #[test]
    fn an_old_binary_checkpoint_says_what_to_do() {
        let tmp = scratch("old");
        let dir = tmp.path();
        let run = dir.join("run");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        let old = run.join("checkpoints/latest.ckpt");
        std::fs::write(&old, b"PROGCKPT\x01\0\0\0 and the rest").unwrap();
        for e in [
            Checkpoint::read(&old).unwrap_err(),
            // Resuming looks for latest.safetensors and finds only the old file beside it.
            Checkpoint::read(&latest_path(&run)).unwrap_err(),
        ] {
            assert_eq!(e.kind, ErrorKind::Checkpoint);
            assert!(e.message.contains("latest.ckpt"), "{e}");
            assert!(e.message.contains("before version 2"), "{e}");
            assert!(
                e.help.as_deref().unwrap().contains("start it afresh"),
                "{e}"
            );
        }
    }

    #[test]
    fn pruning_keeps_the_newest_periodic_checkpoints() {
        let tmp = scratch("prune");
        let dir = tmp.path();
        let (_, ck, _) = sample();
        for step in [10, 200, 30, 40] {
            ck.write(&recent_path(dir, step)).unwrap();
        }
        prune_recent(dir, 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.join("checkpoints/recent"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["step-200.safetensors", "step-40.safetensors"]);
    }
}
