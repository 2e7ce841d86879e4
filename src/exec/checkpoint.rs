//! Training checkpoints in progc's own binary format.
//!
//! Layout (all integers little-endian):
//! `b"PROGCKPT"` | version `u32` | header length `u64` | JSON header | parameter blob (raw f32,
//! parameters back to back in header order) | optimizer state ([`OptimizerState::to_bytes`]) |
//! FNV-1a 64 checksum `u64` of every preceding byte.
//!
//! Invariants:
//! - a file is written atomically (temp file in the same directory, fsync, rename), so a crash
//!   leaves either the old checkpoint or the new one under the final name;
//! - reading never panics: bad magic, unknown version, truncation, a checksum mismatch, an
//!   inconsistent header, or a run-hash mismatch are `ExecError`s of kind `Checkpoint`;
//! - `step` is the number of optimizer steps completed (the next global step to train); a
//!   boundary checkpoint at a growth step `tau` has `step == tau` and the *old* depth (growth
//!   happens when step `tau` starts);
//! - parameters are stored by stable name with their `ParamId`, and restored with those exact
//!   ids, so the optimizer state (keyed by id) lines up after loading.

use std::path::Path;

use burn::module::ParamId;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::data::{BatchCursor, write_atomic};
use super::error::{ErrorKind, ExecError};
use super::metrics::SegmentTiming;
use super::model::{Gpt2, param_to_vec};
use super::optim::OptimizerState;
use crate::plan::spec::{ModelSpec, RunSpec};

const MAGIC: &[u8; 8] = b"PROGCKPT";
const VERSION: u32 = 1;

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

#[derive(Serialize, Deserialize)]
struct Header {
    run_hash: String,
    step: u64,
    segment: usize,
    depth: usize,
    params: Vec<ParamEntry>,
    optimizer_bytes: u64,
    cursor: BatchCursor,
    timing: Timing,
}

/// FNV-1a 64 over `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Identity of a recipe: FNV-1a 64 of its `RunSpec` JSON, as 16 hex digits.
pub fn run_hash(spec: &RunSpec) -> String {
    // Serializing plain data to a String cannot fail.
    let json = serde_json::to_string(spec).unwrap_or_default();
    format!("{:016x}", fnv1a64(json.as_bytes()))
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> ExecError {
    ExecError::new(
        ErrorKind::Checkpoint,
        format!("checkpoint {} is unreadable: {what}", path.display()),
    )
    .with_help("it is truncated or corrupt; resume from an older `checkpoints/step-<N>.ckpt` or start the run afresh")
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
        let opt = self.optimizer.to_bytes();
        let header = Header {
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
            optimizer_bytes: opt.len() as u64,
            cursor: self.cursor.clone(),
            timing: self.timing.clone(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| {
            ExecError::new(
                ErrorKind::Internal,
                format!("cannot serialize a checkpoint header: {e}"),
            )
        })?;
        let floats: usize = self.params.iter().map(|p| p.data.len()).sum();
        let mut out = Vec::with_capacity(28 + json.len() + floats * 4 + opt.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for p in &self.params {
            for x in &p.data {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.extend_from_slice(&opt);
        let sum = fnv1a64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
        }
        write_atomic(path, &out).map_err(|e| ExecError::io("write checkpoint", path, e))
    }

    /// Reads and verifies a checkpoint (magic, version, checksum, header consistency). Use
    /// [`Checkpoint::check_run`] to make sure it belongs to the recipe at hand.
    pub fn read(path: &Path) -> Result<Checkpoint, ExecError> {
        let bytes = std::fs::read(path).map_err(|e| {
            ExecError::new(
                ErrorKind::Checkpoint,
                format!("cannot read checkpoint {}: {e}", path.display()),
            )
            .with_help("check the run directory; a run writes checkpoints/latest.ckpt")
        })?;
        Self::decode(&bytes).map_err(|what| corrupt(path, what))
    }

    fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err("not a progc checkpoint (bad magic)".into());
        }
        if bytes.len() < 28 {
            return Err("truncated header".into());
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let stored = u64::from_le_bytes(tail.try_into().map_err(|_| "truncated")?);
        let version = u32::from_le_bytes(body[8..12].try_into().map_err(|_| "truncated")?);
        if version != VERSION {
            return Err(format!(
                "format version {version}, this progc reads version {VERSION}"
            ));
        }
        if fnv1a64(body) != stored {
            return Err("checksum mismatch (truncated or corrupted)".into());
        }
        let hlen = u64::from_le_bytes(body[12..20].try_into().map_err(|_| "truncated")?);
        let hend = 20usize
            .checked_add(usize::try_from(hlen).map_err(|_| "bad header length")?)
            .filter(|&e| e <= body.len())
            .ok_or("header length past the end of the file")?;
        let header: Header =
            serde_json::from_slice(&body[20..hend]).map_err(|e| format!("damaged header: {e}"))?;
        let mut pos = hend;
        let mut params = Vec::with_capacity(header.params.len());
        for e in header.params {
            let n = e.shape[0]
                .checked_mul(e.shape[1])
                .ok_or("absurd parameter shape")?;
            let end = n
                .checked_mul(4)
                .and_then(|b| b.checked_add(pos))
                .filter(|&end| end <= body.len())
                .ok_or_else(|| format!("parameter `{}` runs past the end of the file", e.name))?;
            let data = body[pos..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            pos = end;
            params.push(SavedParam {
                name: e.name,
                id: e.id,
                shape: e.shape,
                data,
            });
        }
        let olen = usize::try_from(header.optimizer_bytes).map_err(|_| "bad optimizer length")?;
        if pos.checked_add(olen) != Some(body.len()) {
            return Err("section lengths do not add up to the file size".into());
        }
        let optimizer = OptimizerState::from_bytes(&body[pos..]).map_err(|e| e.message)?;
        Ok(Checkpoint {
            run_hash: header.run_hash,
            step: header.step,
            segment: header.segment,
            depth: header.depth,
            params,
            optimizer,
            cursor: header.cursor,
            timing: header.timing,
        })
    }
}

fn mismatch(what: String) -> ExecError {
    ExecError::new(
        ErrorKind::Checkpoint,
        format!("checkpoint does not fit the recipe's model: {what}"),
    )
    .with_help("resume with the recipe that wrote the checkpoint")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::model::tests::{TB, tiny_spec};
    use crate::exec::optim::Optimizer;
    use crate::plan::spec::*;

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
        }
    }

    fn temp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("progc-ckpt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
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
        let dir = temp("rt");
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
        let dir = temp("bad");
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
        // A checkpoint of another shape cannot be loaded into this model.
        let mut wide = spec.model.clone();
        wide.width = 64;
        assert!(ck.restore_model::<TB>(&wide, &Default::default()).is_err());
    }
}
