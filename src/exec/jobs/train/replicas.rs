//! What the training loop asks of the other replicas of the model: nothing in a solo run,
//! collectives between the peers of a data-parallel one. The loop is written once, against
//! this trait.
//!
//! Invariants:
//! - every method is called by all replicas at the same steps, in the same order (the loop's
//!   conditions for them depend only on the plan and the step, never on one replica's state);
//! - `Solo` never changes a value: a solo run computes exactly what it did before the trait.

use burn::optim::GradientsParams;
use burn::tensor::{ElementConversion, Tensor};

use crate::exec::device::parallel::{Peer, model_digest};
use crate::exec::error::ExecError;
use crate::exec::io::data::Batch;
use crate::exec::io::metrics::PeerThroughput;
use crate::exec::network::kernels::TrainBackend;
use crate::exec::network::model::Gpt2;

pub trait Replicas {
    /// Whether this replica evaluates, writes metrics and checkpoints.
    fn leader(&self) -> bool;
    /// Whether a stop signal ends the run at the step it arrives in (a solo run), rather than
    /// at the next step whose loss the peers average (so that they stop together).
    fn stops_alone(&self) -> bool;
    /// This replica's share of the global batch.
    fn share(&self, batch: Batch) -> Batch;
    /// The gradients averaged over the replicas.
    fn mean_grads<B: TrainBackend>(
        &self,
        grads: GradientsParams,
        model: &Gpt2<B>,
    ) -> Result<GradientsParams, ExecError>;
    /// Reads the summed training loss back, averaged over the replicas, and whether any
    /// replica was asked to stop.
    fn read_loss<B: TrainBackend>(
        &self,
        sum: Tensor<B::InnerBackend, 1>,
        stop: bool,
    ) -> Result<(f64, bool), ExecError>;
    /// Fails unless every replica holds the same model (`when` names the moment).
    fn agree<B: TrainBackend>(
        &self,
        when: &str,
        run: u64,
        model: &Gpt2<B>,
        device: &B::Device,
    ) -> Result<(), ExecError>;
    /// A step is done (the data-parallel watchdog's heartbeat).
    fn beat(&self);
    /// This replica's throughput over `steps` steps of `tokens_per_step` in `seconds`, for the
    /// summary (solo runs report none).
    fn throughput(
        &self,
        device: &str,
        steps: u64,
        tokens_per_step: u64,
        seconds: f64,
    ) -> Vec<PeerThroughput>;
}

/// A run on one device.
pub struct Solo;

impl Replicas for Solo {
    fn leader(&self) -> bool {
        true
    }
    fn stops_alone(&self) -> bool {
        true
    }
    fn share(&self, batch: Batch) -> Batch {
        batch
    }
    fn mean_grads<B: TrainBackend>(
        &self,
        grads: GradientsParams,
        _: &Gpt2<B>,
    ) -> Result<GradientsParams, ExecError> {
        Ok(grads)
    }
    fn read_loss<B: TrainBackend>(
        &self,
        sum: Tensor<B::InnerBackend, 1>,
        stop: bool,
    ) -> Result<(f64, bool), ExecError> {
        Ok((sum.into_scalar().elem::<f64>(), stop))
    }
    fn agree<B: TrainBackend>(
        &self,
        _: &str,
        _: u64,
        _: &Gpt2<B>,
        _: &B::Device,
    ) -> Result<(), ExecError> {
        Ok(())
    }
    fn beat(&self) {}
    fn throughput(&self, _: &str, _: u64, _: u64, _: f64) -> Vec<PeerThroughput> {
        Vec::new()
    }
}

impl Replicas for Peer {
    fn leader(&self) -> bool {
        Peer::leader(self)
    }
    fn stops_alone(&self) -> bool {
        false
    }
    fn share(&self, batch: Batch) -> Batch {
        Peer::share(self, batch)
    }
    fn mean_grads<B: TrainBackend>(
        &self,
        grads: GradientsParams,
        model: &Gpt2<B>,
    ) -> Result<GradientsParams, ExecError> {
        Peer::mean_grads::<B>(self, grads, model)
    }
    fn read_loss<B: TrainBackend>(
        &self,
        sum: Tensor<B::InnerBackend, 1>,
        stop: bool,
    ) -> Result<(f64, bool), ExecError> {
        self.mean_and_any(sum, stop)
    }
    fn agree<B: TrainBackend>(
        &self,
        when: &str,
        run: u64,
        model: &Gpt2<B>,
        device: &B::Device,
    ) -> Result<(), ExecError> {
        Peer::agree::<B::InnerBackend>(self, when, run, model_digest(model), device)
    }
    fn beat(&self) {
        Peer::beat(self)
    }
    fn throughput(
        &self,
        device: &str,
        steps: u64,
        tokens_per_step: u64,
        seconds: f64,
    ) -> Vec<PeerThroughput> {
        let tokens = (steps * tokens_per_step) as f64 / self.world as f64;
        vec![PeerThroughput {
            rank: self.rank,
            device: device.to_string(),
            tok_per_s: tokens / seconds,
        }]
    }
}
