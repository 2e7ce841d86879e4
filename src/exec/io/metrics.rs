//! Training metrics (one JSON object per line, `metrics.jsonl`) and the end-of-run summary.
//!
//! Invariants:
//! - every row is flushed as soon as it is written, so a crash loses at most the row being
//!   written; a torn last line (no trailing newline and not valid JSON) is ignored when reading;
//! - non-finite floats are written as `null` (JSON has no NaN) and read back as NaN, so a
//!   diverged run's metrics stay readable;
//! - `MetricsWriter::resume` rewrites the file atomically with only the rows before the resume
//!   step, so a resumed run never holds duplicate or stale steps; the TensorBoard event file
//!   beside it is rewritten from the same rows, and then gets every row the file gets.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::data::write_atomic;
use crate::exec::io::events::EventWriter;
use crate::plan::flops::Flops;
use crate::plan::spec::GrowthSpec;

/// Reads `null` (how serde_json writes NaN and infinities) back as NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// Global optimizer step (0-based) this row was measured after.
    pub step: u64,
    /// Tokens trained on so far.
    pub tokens: u64,
    /// Training FLOPs so far (exact convention).
    #[serde(deserialize_with = "f64_or_nan")]
    pub flops: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    #[serde(deserialize_with = "f64_or_nan")]
    pub lr: f64,
    pub depth: usize,
    pub segment: usize,
    #[serde(deserialize_with = "f64_or_nan")]
    pub tok_per_s: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub wall_s: f64,
}

/// Appends metric rows to a JSON-lines file, flushing each row, and the same rows to the
/// directory's TensorBoard event file (`io/events.rs`).
pub struct MetricsWriter {
    out: BufWriter<fs::File>,
    path: PathBuf,
    events: EventWriter,
}

/// The directory a metrics file is in, where its event file goes too.
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn open_append(path: &Path) -> Result<fs::File, ExecError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
    }
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ExecError::io("open metrics file", path, e))
}

impl MetricsWriter {
    /// Starts a fresh metrics file (an existing one is truncated); `growths` are noted in the
    /// event file.
    pub fn create(path: &Path, growths: &[GrowthSpec]) -> Result<Self, ExecError> {
        let file = open_append(path)?;
        file.set_len(0)
            .map_err(|e| ExecError::io("truncate metrics file", path, e))?;
        Ok(MetricsWriter {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
            events: EventWriter::create(dir_of(path), &[], growths)?,
        })
    }

    /// For resume: keeps only rows with `step < from_step`, then appends. A missing file is
    /// created.
    pub fn resume(path: &Path, from_step: u64, growths: &[GrowthSpec]) -> Result<Self, ExecError> {
        if !path.exists() {
            return Self::create(path, growths);
        }
        let kept: Vec<MetricRow> = read_metrics(path)?
            .into_iter()
            .filter(|r| r.step < from_step)
            .collect();
        let mut text = String::new();
        for row in &kept {
            text.push_str(&row_line(row)?);
        }
        write_atomic(path, text.as_bytes()).map_err(|e| ExecError::io("rewrite", path, e))?;
        Ok(MetricsWriter {
            out: BufWriter::new(open_append(path)?),
            path: path.to_path_buf(),
            events: EventWriter::create(dir_of(path), &kept, growths)?,
        })
    }

    pub fn write(&mut self, row: &MetricRow) -> Result<(), ExecError> {
        let line = row_line(row)?;
        self.out
            .write_all(line.as_bytes())
            .and_then(|_| self.out.flush())
            .map_err(|e| ExecError::io("write metrics to", &self.path, e))?;
        self.events.row(row)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn row_line(row: &MetricRow) -> Result<String, ExecError> {
    let mut s = serde_json::to_string(row).map_err(|e| {
        ExecError::new(
            ErrorKind::Internal,
            format!("cannot serialize a metric row: {e}"),
        )
    })?;
    s.push('\n');
    Ok(s)
}

/// All rows of a metrics file, in file order.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>, ExecError> {
    let text = fs::read_to_string(path).map_err(|e| ExecError::io("read metrics file", path, e))?;
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricRow>(line) {
            Ok(row) => rows.push(row),
            // A crash in the middle of a write leaves a partial last line: drop it.
            Err(_) if torn_tail && i + 1 == lines.len() => {}
            Err(e) => {
                return Err(ExecError::new(
                    ErrorKind::Io,
                    format!("metrics file {} line {}: {e}", path.display(), i + 1),
                )
                .with_help("the file is damaged; delete it or restart the run from scratch"));
            }
        }
    }
    Ok(rows)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentTiming {
    pub index: usize,
    pub depth: usize,
    pub start_step: u64,
    pub end_step: u64,
    pub wall_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run: String,
    pub device: String,
    /// Matmul precision the run trained with (older summaries: f32).
    #[serde(default)]
    pub precision: crate::exec::network::precision::Precision,
    /// Why the run trained in another precision than it was asked for (bf16 on a CPU without
    /// a bf16 instruction trains f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_note: Option<String>,
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_train_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_val_loss: f64,
    pub total_steps: u64,
    pub total_tokens: u64,
    pub flops: Flops,
    /// FLOPs of the fixed full-depth run of the same length.
    pub fixed_flops: Flops,
    /// `flops / fixed_flops`, per convention.
    pub ratio: Flops,
    pub growth_steps: Vec<u64>,
    pub wall_s: f64,
    /// Warm-up / JIT-compile time (first step of each new shape), apart from training time.
    pub warmup_s: f64,
    pub train_s: f64,
    pub segments: Vec<SegmentTiming>,
    /// Data-parallel runs: each local peer's own throughput.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerThroughput>,
}

/// One peer's throughput over its session: the tokens of its share of the batches per second
/// of training (warm-up steps excluded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerThroughput {
    pub rank: usize,
    pub device: String,
    pub tok_per_s: f64,
}

fn si(x: f64) -> String {
    let a = x.abs();
    let (v, unit) = if a >= 1e18 {
        (x / 1e18, "E")
    } else if a >= 1e15 {
        (x / 1e15, "P")
    } else if a >= 1e12 {
        (x / 1e12, "T")
    } else if a >= 1e9 {
        (x / 1e9, "G")
    } else if a >= 1e6 {
        (x / 1e6, "M")
    } else if a >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    format!("{v:.3}{unit}")
}

impl Summary {
    /// The human summary printed at the end of a run.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        let precision = match self.precision {
            crate::exec::network::precision::Precision::F32 => String::new(),
            p => format!(" ({} matmuls)", p.name()),
        };
        line(format!("run {} on {}{precision}", self.run, self.device));
        // A run stopped before its first evaluation has no validation loss yet.
        let loss = |x: f64| {
            if x.is_finite() {
                format!("{x:.4}")
            } else {
                "-".to_string()
            }
        };
        line(format!(
            "  final loss      train {}   val {}",
            loss(self.final_train_loss),
            loss(self.final_val_loss)
        ));
        line(format!(
            "  trained         {} steps, {} tokens",
            self.total_steps,
            si(self.total_tokens as f64)
        ));
        let growth = if self.growth_steps.is_empty() {
            "none (fixed depth)".to_string()
        } else {
            self.growth_steps
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(format!("  growth at step  {growth}"));
        line("  FLOPs                      this run    fixed depth   ratio".into());
        let rows = [
            (
                "exact",
                self.flops.exact,
                self.fixed_flops.exact,
                self.ratio.exact,
            ),
            (
                "6N, embeddings counted",
                self.flops.six_n_embedding,
                self.fixed_flops.six_n_embedding,
                self.ratio.six_n_embedding,
            ),
            (
                "6N, non-embedding",
                self.flops.six_n_non_embedding,
                self.fixed_flops.six_n_non_embedding,
                self.ratio.six_n_non_embedding,
            ),
        ];
        for (name, a, b, r) in rows {
            line(format!(
                "    {name:<22} {:>11} {:>13}   {r:.3}",
                si(a),
                si(b)
            ));
        }
        line(format!(
            "  wall time       {:.1} s (warm-up/compile {:.1} s, training {:.1} s)",
            self.wall_s, self.warmup_s, self.train_s
        ));
        for seg in &self.segments {
            line(format!(
                "    segment {}  depth {:>3}  steps {:>7}..{:<7} {:>9.1} s",
                seg.index, seg.depth, seg.start_step, seg.end_step, seg.wall_s
            ));
        }
        if !self.peers.is_empty() {
            let global: f64 = self.peers.iter().map(|p| p.tok_per_s).sum();
            line(format!(
                "  throughput      {} tok/s over this node's {} peers",
                si(global),
                self.peers.len()
            ));
            for p in &self.peers {
                line(format!(
                    "    peer {:<3} {:<8} {:>9} tok/s",
                    p.rank,
                    p.device,
                    si(p.tok_per_s)
                ));
            }
        }
        s
    }

    pub fn write(&self, path: &Path) -> Result<(), ExecError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| {
            ExecError::new(
                ErrorKind::Internal,
                format!("cannot serialize the summary: {e}"),
            )
        })?;
        write_atomic(path, format!("{json}\n").as_bytes())
            .map_err(|e| ExecError::io("write summary", path, e))
    }

    pub fn read(path: &Path) -> Result<Self, ExecError> {
        let text = fs::read_to_string(path).map_err(|e| ExecError::io("read summary", path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            ExecError::new(
                ErrorKind::Io,
                format!("summary {} is damaged: {e}", path.display()),
            )
            .with_help("re-run the recipe to regenerate it")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scratch;

    fn row(step: u64) -> MetricRow {
        MetricRow {
            step,
            tokens: step * 64,
            flops: step as f64 * 1e9,
            train_loss: 5.0 - step as f64 * 0.01,
            val_loss: step.is_multiple_of(10).then_some(4.5),
            lr: 1e-3,
            depth: if step < 8 { 0 } else { 2 },
            segment: usize::from(step >= 8),
            tok_per_s: 1000.0,
            wall_s: step as f64 * 0.1,
        }
    }

    #[test]
    fn write_read_and_resume_truncates_later_rows() {
        let tmp = scratch("resume");
        let dir = tmp.path();
        let path = dir.join("sub/metrics.jsonl");
        let mut w = MetricsWriter::create(&path, &[]).unwrap();
        for s in 0..12 {
            w.write(&row(s)).unwrap();
        }
        drop(w);
        assert_eq!(
            read_metrics(&path).unwrap(),
            (0..12).map(row).collect::<Vec<_>>()
        );

        // Resume from step 7: rows 7.. are dropped, new rows append after row 6.
        let mut w = MetricsWriter::resume(&path, 7, &[]).unwrap();
        let steps: Vec<u64> = read_metrics(&path)
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, (0..7).collect::<Vec<_>>());
        w.write(&row(7)).unwrap();
        let rows = read_metrics(&path).unwrap();
        assert_eq!(rows.len(), 8);
        assert_eq!(rows[7], row(7));

        // create truncates.
        MetricsWriter::create(&path, &[]).unwrap();
        assert!(read_metrics(&path).unwrap().is_empty());
    }

    #[test]
    fn nan_round_trips_and_a_torn_last_line_is_ignored() {
        let tmp = scratch("torn");
        let dir = tmp.path();
        let path = dir.join("m.jsonl");
        let mut w = MetricsWriter::create(&path, &[]).unwrap();
        let mut bad = row(3);
        bad.train_loss = f64::NAN;
        w.write(&row(2)).unwrap();
        w.write(&bad).unwrap();
        drop(w);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("{\"step\":4,\"tok");
        fs::write(&path, &text).unwrap();
        let rows = read_metrics(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[1].train_loss.is_nan());
        // A damaged line in the middle is an error, not silently skipped.
        fs::write(&path, "{\"step\":1}\n{}\n").unwrap();
        let e = read_metrics(&path).err().unwrap();
        assert!(e.message.contains("line 1"), "{e}");
    }

    #[test]
    fn summary_round_trips_and_reads_as_text() {
        let tmp = scratch("summary");
        let dir = tmp.path();
        let f = Flops {
            exact: 2e15,
            six_n_embedding: 1.8e15,
            six_n_non_embedding: 1e15,
        };
        let fixed = Flops {
            exact: 4e15,
            six_n_embedding: 3e15,
            six_n_non_embedding: 2.5e15,
        };
        let s = Summary {
            run: "zero_to_12".into(),
            device: "cpu".into(),
            precision: Default::default(),
            precision_note: None,
            final_train_loss: 3.25,
            final_val_loss: 3.5,
            total_steps: 1000,
            total_tokens: 1_024_000,
            flops: f,
            fixed_flops: fixed,
            ratio: f.ratio(fixed),
            growth_steps: vec![800],
            wall_s: 12.5,
            warmup_s: 2.0,
            train_s: 10.5,
            segments: vec![
                SegmentTiming {
                    index: 0,
                    depth: 0,
                    start_step: 0,
                    end_step: 800,
                    wall_s: 4.0,
                },
                SegmentTiming {
                    index: 1,
                    depth: 12,
                    start_step: 800,
                    end_step: 1000,
                    wall_s: 6.5,
                },
            ],
            peers: vec![
                PeerThroughput {
                    rank: 0,
                    device: "cpu".into(),
                    tok_per_s: 3000.0,
                },
                PeerThroughput {
                    rank: 1,
                    device: "cpu".into(),
                    tok_per_s: 2500.0,
                },
            ],
        };
        let path = dir.join("summary.json");
        s.write(&path).unwrap();
        assert_eq!(Summary::read(&path).unwrap(), s);
        let text = s.to_text();
        assert!(
            text.contains("5.500k tok/s over this node's 2 peers"),
            "{text}"
        );
        assert!(text.contains("zero_to_12"), "{text}");
        assert!(text.contains("800"), "{text}");
        assert!(text.contains("0.500"), "{text}");
        assert!(text.contains("6N, non-embedding"), "{text}");
        fs::write(&path, "{").unwrap();
        assert!(Summary::read(&path).is_err());
    }
}
