//! TensorBoard event files: every metrics row of a run, as scalars that `tensorboard --logdir`
//! (and W&B's `sync_tensorboard`) read.
//!
//! Format: TensorFlow's TFRecord framing (length, masked CRC-32C of the length, the record,
//! masked CRC-32C of the record) around `tensorflow.Event` protobuf messages, encoded with
//! `prost`. The messages are declared here, with only the fields progc writes: the crates that
//! ship the generated schema (`tboard`) generate it at build time with `protoc`, which a fresh
//! machine does not have, and the README's build must work there.
//!
//! Tags (the step axis is the global step):
//! - `loss/train`, `loss/val`, `lr`, `model/depth`, `data/tokens`, `perf/tok_per_s`,
//!   `compute/flops_exact` (cumulative training FLOPs, exact convention);
//! - `growth`: a text note at each growth (depths, init, placement, optimizer state), for the
//!   text plugin;
//! - `by_mflops/loss_train`, `by_mflops/loss_val`: the same losses with cumulative exact
//!   MFLOPs as the step, so runs compare at equal compute (MFLOPs, not GFLOPs: a 0-layer
//!   GPT-2 tiny step is 0.2 GFLOPs, and an int64 step holds 9.2e24 FLOPs in MFLOPs).
//!
//! Invariants:
//! - the event file holds exactly the rows of `metrics.jsonl`, in order: it is rewritten from
//!   those rows whenever the metrics file is (start, resume), so a resumed run never shows a
//!   step twice;
//! - records are buffered and flushed at evaluation rows, every [`FLUSH_EVERY`] rows and when
//!   the writer is dropped: the cost per row is a few small writes into memory.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::exec::error::ExecError;
use crate::exec::io::metrics::MetricRow;
use crate::plan::render::growth_text;
use crate::plan::spec::GrowthSpec;

/// Rows between flushes when no evaluation comes first.
pub const FLUSH_EVERY: usize = 200;

/// What a scalar's step counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// The global step.
    Step,
    /// Cumulative training MFLOPs, to compare runs at equal compute.
    Mflops,
}

/// One TensorBoard scalar: its tag, the `metrics.jsonl` field it shows, and that field's value.
pub struct Scalar {
    pub tag: &'static str,
    pub field: &'static str,
    pub axis: Axis,
    pub value: fn(&MetricRow) -> f64,
}

/// Every scalar a metrics row writes: the one list of TensorBoard tags. The README and
/// `scripts/check-tensorboard.py` are checked against it (tests below).
pub const SCALARS: [Scalar; 9] = [
    Scalar {
        tag: "loss/train",
        field: "train_loss",
        axis: Axis::Step,
        value: |r| r.train_loss,
    },
    Scalar {
        tag: "loss/val",
        field: "val_loss",
        axis: Axis::Step,
        value: val,
    },
    Scalar {
        tag: "lr",
        field: "lr",
        axis: Axis::Step,
        value: |r| r.lr,
    },
    Scalar {
        tag: "model/depth",
        field: "depth",
        axis: Axis::Step,
        value: |r| r.depth as f64,
    },
    Scalar {
        tag: "data/tokens",
        field: "tokens",
        axis: Axis::Step,
        value: |r| r.tokens as f64,
    },
    Scalar {
        tag: "perf/tok_per_s",
        field: "tok_per_s",
        axis: Axis::Step,
        value: |r| r.tok_per_s,
    },
    Scalar {
        tag: "compute/flops_exact",
        field: "flops",
        axis: Axis::Step,
        value: |r| r.flops,
    },
    Scalar {
        tag: "by_mflops/loss_train",
        field: "train_loss",
        axis: Axis::Mflops,
        value: |r| r.train_loss,
    },
    Scalar {
        tag: "by_mflops/loss_val",
        field: "val_loss",
        axis: Axis::Mflops,
        value: val,
    },
];

fn val(r: &MetricRow) -> f64 {
    r.val_loss.unwrap_or(f64::NAN)
}

/// `tensorflow.Event`, the fields progc writes.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a `simple_value` (a scalar), or a string `tensor` with the text
/// plugin's metadata (the growth notes).
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// `tensorflow.SummaryMetadata`: which TensorBoard plugin shows the value.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorflow.TensorProto` holding strings (a scalar: no shape dimensions).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShape {}

/// `tensorflow.DataType.DT_STRING`.
const DT_STRING: i32 = 7;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// TFRecord's masked CRC-32C.
fn masked_crc(bytes: &[u8]) -> u32 {
    let c = CRC32C.checksum(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One record in TFRecord framing.
fn record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

/// The events of one run directory.
pub struct EventWriter {
    out: BufWriter<fs::File>,
    path: PathBuf,
    since_flush: usize,
    /// Growth notes not written yet: (first step at the new depth, text), in step order.
    growths: Vec<(u64, String)>,
}

/// The event files of `dir` (TensorBoard's naming: `events.out.tfevents.*`).
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("events.out.tfevents."))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

impl EventWriter {
    /// Replaces `dir`'s event files with one holding `rows` (the metrics kept so far), ready
    /// for more; `growths` are the run's growths, each noted as text (tag `growth`) at the first
    /// row at its new depth.
    pub fn create(
        dir: &Path,
        rows: &[MetricRow],
        growths: &[GrowthSpec],
    ) -> Result<EventWriter, ExecError> {
        for old in event_files(dir) {
            fs::remove_file(&old).map_err(|e| ExecError::io("remove", &old, e))?;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let path = dir.join(format!(
            "events.out.tfevents.{now:010}.{host}.{}.progc",
            std::process::id()
        ));
        let file = fs::File::create(&path).map_err(|e| ExecError::io("create", &path, e))?;
        let mut w = EventWriter {
            out: BufWriter::new(file),
            path,
            since_flush: 0,
            growths: growths
                .iter()
                .map(|g| (g.at_step, growth_text(g)))
                .collect(),
        };
        w.event(0, What::FileVersion("brain.Event:2".into()))?;
        for row in rows {
            w.row(row)?;
        }
        w.flush()?;
        Ok(w)
    }

    fn event(&mut self, step: i64, what: What) -> Result<(), ExecError> {
        let wall_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let event = Event {
            wall_time,
            step,
            what: Some(what),
        };
        self.out
            .write_all(&record(&event.encode_to_vec()))
            .map_err(|e| ExecError::io("write events to", &self.path, e))
    }

    fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<(), ExecError> {
        // A missing value (no evaluation at this row) is NaN: no event.
        let value = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(tag, v)| SummaryValue {
                tag: tag.to_string(),
                simple_value: Some(*v as f32),
                ..SummaryValue::default()
            })
            .collect();
        self.event(step, What::Summary(Summary { value }))
    }

    /// A text note for TensorBoard's text plugin.
    fn text(&mut self, step: i64, tag: &str, text: &str) -> Result<(), ExecError> {
        let value = SummaryValue {
            tag: tag.to_string(),
            tensor: Some(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShape {}),
                string_val: vec![text.as_bytes().to_vec()],
            }),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "text".into(),
                    content: Vec::new(),
                }),
            }),
            ..SummaryValue::default()
        };
        self.event(step, What::Summary(Summary { value: vec![value] }))
    }

    /// One metrics row: its scalars at the global step, and its losses at its MFLOPs.
    pub fn row(&mut self, row: &MetricRow) -> Result<(), ExecError> {
        let step = row.step as i64;
        while self.growths.first().is_some_and(|(at, _)| row.step >= *at) {
            let (_, note) = self.growths.remove(0);
            self.text(step, "growth", &note)?;
        }
        let mflops = (row.flops / 1e6).round() as i64;
        for axis in [Axis::Step, Axis::Mflops] {
            let at = if axis == Axis::Step { step } else { mflops };
            let values: Vec<(&str, f64)> = SCALARS
                .iter()
                .filter(|s| s.axis == axis)
                .map(|s| (s.tag, (s.value)(row)))
                .collect();
            self.scalars(at, &values)?;
        }
        self.since_flush += 1;
        if row.val_loss.is_some() || self.since_flush >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), ExecError> {
        self.since_flush = 0;
        self.out
            .flush()
            .map_err(|e| ExecError::io("write events to", &self.path, e))
    }
}

/// What an event file holds: scalars `(tag, step, value)` and text notes `(tag, step, text)`,
/// each in file order.
#[derive(Debug, Default)]
pub struct Events {
    pub scalars: Vec<(String, i64, f32)>,
    pub texts: Vec<(String, i64, String)>,
}

/// Reads an event file, checking the framing and both CRCs of every record.
pub fn read_events(path: &Path) -> Result<Events, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut at = 0;
    let mut out = Events::default();
    while at < bytes.len() {
        let take = |from: usize, n: usize| {
            bytes
                .get(from..from + n)
                .ok_or_else(|| format!("record at byte {at} is cut short"))
        };
        let len_bytes = take(at, 8)?;
        let crc = u32::from_le_bytes(take(at + 8, 4)?.try_into().unwrap_or_default());
        if crc != masked_crc(len_bytes) {
            return Err(format!("length CRC mismatch at byte {at}"));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default()) as usize;
        let payload = take(at + 12, len)?;
        let crc = u32::from_le_bytes(take(at + 12 + len, 4)?.try_into().unwrap_or_default());
        if crc != masked_crc(payload) {
            return Err(format!("record CRC mismatch at byte {at}"));
        }
        let event = Event::decode(payload).map_err(|e| format!("event at byte {at}: {e}"))?;
        if let Some(What::Summary(s)) = event.what {
            for v in s.value {
                if let Some(x) = v.simple_value {
                    out.scalars.push((v.tag, event.step, x));
                } else if let Some(t) = v.tensor {
                    for text in t.string_val {
                        let text = String::from_utf8_lossy(&text).into_owned();
                        out.texts.push((v.tag.clone(), event.step, text));
                    }
                }
            }
        }
        at += 16 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backticked `a/b` tags in `text` (and `lr`, the one tag without a slash).
    fn tags_in(text: &str) -> Vec<String> {
        let mut out: Vec<String> = text
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.contains('/') && !t.contains(' ') || *t == "lr")
            .map(String::from)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn ours(axis: Option<Axis>) -> Vec<String> {
        let mut v: Vec<String> = SCALARS
            .iter()
            .filter(|s| axis.is_none_or(|a| s.axis == a))
            .map(|s| s.tag.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn each_tag_shows_the_metrics_field_it_names() {
        let row = MetricRow {
            step: 7,
            tokens: 11,
            flops: 13.0,
            train_loss: 2.5,
            val_loss: Some(2.25),
            lr: 0.125,
            depth: 3,
            segment: 1,
            tok_per_s: 17.0,
            wall_s: 19.0,
        };
        let json = serde_json::to_value(&row).unwrap();
        for s in &SCALARS {
            assert_eq!(json[s.field].as_f64(), Some((s.value)(&row)), "{}", s.tag);
        }
    }

    #[test]
    fn the_readme_lists_every_tag() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("- **TensorBoard**")
            .expect("a TensorBoard paragraph");
        let para = &readme[start..];
        let para = &para[..para.find("\n- ").unwrap_or(para.len())];
        assert_eq!(tags_in(para), ours(None));
    }

    #[test]
    fn the_python_checker_checks_every_tag_against_its_field() {
        let script = include_str!("../../../scripts/check-tensorboard.py");
        for (table, axis) in [("TAGS = {", Axis::Step), ("MFLOPS_TAGS = {", Axis::Mflops)] {
            let start = script.find(table).expect(table) + table.len();
            let body = &script[start..start + script[start..].find('}').unwrap()];
            let mut pairs: Vec<(String, String)> = body
                .lines()
                .filter_map(|l| {
                    let parts: Vec<&str> = l.split('"').collect();
                    (parts.len() >= 4).then(|| (parts[1].to_string(), parts[3].to_string()))
                })
                .collect();
            pairs.sort();
            let mut want: Vec<(String, String)> = SCALARS
                .iter()
                .filter(|s| s.axis == axis)
                .map(|s| (s.tag.to_string(), s.field.to_string()))
                .collect();
            want.sort();
            assert_eq!(pairs, want, "{table}");
            assert_eq!(pairs.len(), ours(Some(axis)).len());
        }
    }

    #[test]
    fn masked_crc_matches_tensorflow() {
        // CRC-32C of "123456789" is 0xe3069283 (the standard check value).
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
        let c = 0xe306_9283u32;
        assert_eq!(
            masked_crc(b"123456789"),
            c.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }
}
