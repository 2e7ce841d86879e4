//! One peer of a data-parallel run: what the training loop asks of the other peers.
//!
//! A sum over all peers is burn-collective's local all-reduce over this node's peers, then,
//! with several nodes, the sum over nodes by local peer 0 ([`super::link::Link`]) and a
//! local broadcast of the result. Every step makes one such operation for all gradients
//! (flattened into one vector in model order) and, on logged steps, one for the loss.
//!
//! Invariants:
//! - every method that talks to the other peers is called by all of them, in the same order;
//! - a failed operation is an error of kind `Parallel` (a consequence: the root cause is
//!   usually another peer's error), never a panic;
//! - a peer that fails resets this process's collective ([`Peer::abort`]), which wakes the
//!   local peers waiting on it with an error instead of leaving them blocked.

use std::sync::{Arc, Mutex};

use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorPrimitive};
use burn_collective::{
    CollectiveConfig, CollectiveError, PeerId, ReduceOperation, all_reduce, broadcast,
    finish_collective, register, reset_collective,
};

use super::Beats;
use super::link::Link;
use crate::exec::device::DeviceChoice;
use crate::exec::error::{ErrorKind, ExecError};
use crate::exec::io::data::Batch;
use crate::exec::network::model::{Gpt2, param_to_vec};

pub struct Peer {
    /// Index among this node's peers (burn-collective's `PeerId`).
    pub index: usize,
    pub device: DeviceChoice,
    /// Index among all peers of all nodes; rank 0 is the leader.
    pub rank: usize,
    /// Number of peers over all nodes.
    pub world: usize,
    /// Number of peers on this node.
    local: usize,
    config: CollectiveConfig,
    /// This node's links to the other nodes (used by local peer 0 only).
    link: Option<Arc<Mutex<Link>>>,
    beats: Arc<Beats>,
}

fn collective_error(what: &str, e: CollectiveError) -> ExecError {
    ExecError::new(
        ErrorKind::Parallel,
        format!("{what} failed between the peers: {e:?}"),
    )
    .with_help(
        "another peer failed or left the run; its error is reported first when known. The \
         last checkpoint is kept: continue with `progc run --resume DIR`",
    )
}

fn float<B: Backend>(t: Tensor<B, 1>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn tensor<B: Backend>(p: B::FloatTensorPrimitive) -> Tensor<B, 1> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

impl Peer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        index: usize,
        device: DeviceChoice,
        rank: usize,
        world: usize,
        local: usize,
        config: CollectiveConfig,
        link: Option<Arc<Mutex<Link>>>,
        beats: Arc<Beats>,
    ) -> Self {
        Peer {
            index,
            device,
            rank,
            world,
            local,
            config,
            link,
            beats,
        }
    }

    /// The peer that evaluates and writes.
    pub fn leader(&self) -> bool {
        self.rank == 0
    }

    fn id(&self) -> PeerId {
        PeerId::from(self.index as u32)
    }

    /// Joins this node's collective; `B` is the backend the tensors are reduced on (the
    /// inner one under autodiff).
    pub fn register<B: Backend>(&self, device: &B::Device) -> Result<(), ExecError> {
        if self.local == 1 {
            return Ok(());
        }
        register::<B>(self.id(), device.clone(), self.config.clone())
            .map_err(|e| collective_error("joining the collective", e))
    }

    /// Leaves the collective after the last step.
    pub fn finish<B: Backend>(&self) -> Result<(), ExecError> {
        if self.local == 1 {
            return Ok(());
        }
        finish_collective::<B>(self.id()).map_err(|e| collective_error("leaving the collective", e))
    }

    /// After a failure: forget every pending operation, so local peers blocked on this one
    /// get an error.
    pub fn abort<B: Backend>(&self) {
        if self.local > 1 {
            reset_collective::<B>();
        }
    }

    /// This peer finished a step (the launcher's watchdog reads it).
    pub fn beat(&self) {
        self.beats.beat(self.index);
    }

    /// This peer's rows of the global batch.
    pub fn share(&self, batch: Batch) -> Batch {
        let rows = batch.sequences / self.world;
        let n = rows * batch.context;
        let range = self.rank * n..(self.rank + 1) * n;
        Batch {
            inputs: batch.inputs[range.clone()].to_vec(),
            targets: batch.targets[range].to_vec(),
            sequences: rows,
            context: batch.context,
        }
    }

    /// Element-wise sum of `t` over every peer of every node.
    fn sum<B: Backend>(&self, t: Tensor<B, 1>, what: &str) -> Result<Tensor<B, 1>, ExecError> {
        let device = t.device();
        let mut t = t;
        if self.local > 1 {
            let p = all_reduce::<B>(self.id(), float(t), ReduceOperation::Sum)
                .map_err(|e| collective_error(what, e))?;
            t = tensor(p);
        }
        let Some(link) = &self.link else {
            return Ok(t);
        };
        let from_node = if self.index == 0 {
            let v: Vec<f32> = t.into_data().to_vec().map_err(|e| {
                ExecError::new(
                    ErrorKind::Internal,
                    format!("{what}: unreadable tensor: {e:?}"),
                )
            })?;
            let total = link.lock().unwrap_or_else(|e| e.into_inner()).sum(v)?;
            Some(Tensor::<B, 1>::from_floats(total.as_slice(), &device))
        } else {
            None
        };
        if self.local == 1 {
            return from_node.ok_or_else(|| {
                ExecError::new(ErrorKind::Internal, "a lone peer is not local peer 0")
            });
        }
        let p = broadcast::<B>(self.id(), from_node.map(float))
            .map_err(|e| collective_error(what, e))?;
        Ok(tensor(p))
    }

    /// The mean over all peers of `t` (one element), and whether any peer raised `flag` (a
    /// stop signal): one operation, so every peer reads the same answer and all of them stop
    /// after the same step.
    pub fn mean_and_any<B: Backend>(
        &self,
        t: Tensor<B, 1>,
        flag: bool,
    ) -> Result<(f64, bool), ExecError> {
        let f = Tensor::<B, 1>::from_floats([if flag { 1.0 } else { 0.0 }], &t.device());
        let sum = self.sum(Tensor::cat(vec![t, f], 0), "averaging the loss")?;
        let v: Vec<f64> = sum.into_data().iter::<f64>().collect();
        Ok((v[0] / self.world as f64, v[1] > 0.0))
    }

    /// The mean over all peers of every gradient of `model`'s parameters: one operation on
    /// all of them, flattened in model order (the same on every peer).
    pub fn mean_grads<B: AutodiffBackend>(
        &self,
        mut grads: GradientsParams,
        model: &Gpt2<B>,
    ) -> Result<GradientsParams, ExecError> {
        let params: Vec<_> = model
            .named_params()
            .into_iter()
            .map(|(_, p)| (p.id, p.val().dims()))
            .collect();
        let mut parts = Vec::with_capacity(params.len());
        let mut present = Vec::with_capacity(params.len());
        let mut device = None;
        for &(id, [r, c]) in &params {
            let g = grads.remove::<B::InnerBackend, 2>(id);
            present.push(g.is_some());
            let flat = match g {
                Some(g) => {
                    device.get_or_insert_with(|| g.device());
                    g.reshape([r * c])
                }
                None => {
                    let d = device.clone().unwrap_or_default();
                    Tensor::zeros([r * c], &d)
                }
            };
            parts.push(flat);
        }
        if parts.is_empty() {
            return Ok(grads);
        }
        let flat = Tensor::cat(parts, 0);
        let mean = self.sum(flat, "averaging the gradients")? / self.world as f64;
        let mut at = 0;
        for (&(id, [r, c]), has) in params.iter().zip(present) {
            let n = r * c;
            if has {
                grads.register::<B::InnerBackend, 2>(
                    id,
                    mean.clone().slice(at..at + n).reshape([r, c]),
                );
            }
            at += n;
        }
        Ok(grads)
    }

    /// Checks that every peer holds the same replica (`digest`, see [`model_digest`]) of the
    /// same run (`run`), and that the peer counts agree: an error naming what differs.
    pub fn agree<B: Backend>(
        &self,
        when: &str,
        run: u64,
        digest: u64,
        device: &B::Device,
    ) -> Result<(), ExecError> {
        // Bytes and their squares, summed over the peers: the sums are `world` times this
        // peer's values for every peer exactly when all peers hold the same bytes (equal sums
        // of x and x^2 force equality). Every sum is an integer below 2^24: exact in f32.
        let local = self.local as f32;
        let mut v = vec![1.0, local];
        for x in [run, digest] {
            let bytes = x.to_le_bytes().map(f32::from);
            v.extend(bytes);
            v.extend(bytes.map(|b| b * b));
        }
        let t = Tensor::<B, 1>::from_floats(v.as_slice(), device);
        let sum = self.sum(t, "comparing the replicas")?;
        let sum: Vec<f32> = sum.into_data().to_vec().unwrap_or_default();
        let w = self.world as f32;
        let differs = |range: std::ops::Range<usize>| {
            range
                .into_iter()
                .any(|i| sum.get(i).copied() != Some(w * v[i]))
        };
        let fail = |msg: String, help: &str| {
            Err(ExecError::new(ErrorKind::Parallel, msg).with_help(help.to_string()))
        };
        if differs(0..2) {
            return fail(
                format!(
                    "the nodes disagree on the number of peers: this node expects {} ({} per \
                     node)",
                    self.world, local
                ),
                "give every node the same `--devices` (the same number of peers) and the same \
                 `--nodes`",
            );
        }
        if differs(2..18) {
            return fail(
                "the peers run different recipes".into(),
                "start every node with the same recipe file, `--run`/`--set` and seed",
            );
        }
        if differs(18..34) {
            return fail(
                format!("the replicas differ {when}"),
                "this is a bug in progc: replicas are built from the run seed alone",
            );
        }
        Ok(())
    }
}

/// xxh3-64 over every parameter's name, ParamId and values, in model order.
pub fn model_digest<B: Backend>(model: &Gpt2<B>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (name, p) in model.named_params() {
        h.update(name.as_bytes());
        h.update(&p.id.val().to_le_bytes());
        for x in param_to_vec(p) {
            h.update(&x.to_le_bytes());
        }
    }
    h.digest()
}
