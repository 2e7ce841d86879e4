//! Data parallelism: one recipe trained by several peers, threads on this machine (one per
//! device) and, with several nodes, processes on other machines, each holding a replica and
//! taking an equal share of every global batch. Within a node the peers reduce with
//! burn-collective's local all-reduce; between nodes through [`link`] (websockets).
//!
//! Invariants:
//! - the recipe means the same on any number of peers: the global batch is the recipe's
//!   `batch`, drawn by the same cursor as on one device; peer `r` of `W` trains on its rows
//!   `[r B/W, (r+1) B/W)`, and gradients are averaged over the peers (all-reduce `Mean`), so
//!   the averaged gradient is the one-device gradient up to float rounding;
//! - replicas are identical by construction (values and ParamIds are keyed by the run seed
//!   and the growth step) and that is checked: a digest of every ParamId and value, with the
//!   run's hash and the peer counts, is compared over all peers at the start and after every
//!   growth ([`Peer::agree`]);
//! - optimizer state is replicated, not sharded: every peer steps its own copy with the same
//!   averaged gradients and the same learning rate;
//! - every collective call happens on every peer, in the same order, under conditions that do
//!   not depend on the peer: the loop never branches on "am I the leader" around one;
//! - the leader (rank 0) alone evaluates, writes metrics, checkpoints and the summary; nothing
//!   written records the peer count, so a run resumes on any number of peers;
//! - no wait is unbounded: the first peer to fail stops the run with its error, and when no
//!   peer finishes a step for `peer_timeout` the run stops with a timeout error.

mod link;
mod peer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn_collective::CollectiveConfig;

pub use peer::{Peer, model_digest};

use crate::exec::device::{DeviceChoice, Kind};
use crate::exec::error::{ErrorKind, ExecError};

/// The peers of a data-parallel run, as seen from this node.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// This node's devices, one peer each (all of one kind).
    pub devices: Vec<DeviceChoice>,
    /// Several machines: this node's place among them.
    pub nodes: Option<Nodes>,
    /// How long every peer may go without finishing a step before the run stops.
    pub peer_timeout: Duration,
}

/// A multi-node run: every node runs the same command with its own rank.
#[derive(Clone, Debug, PartialEq)]
pub struct Nodes {
    pub count: u32,
    pub rank: u32,
    /// `HOST:PORT` of node 0, which listens on that port for the other nodes.
    pub orchestrator: String,
}

pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(300);

impl Topology {
    /// All peers of the run, over every node (every node has as many devices as this one).
    pub fn world(&self) -> usize {
        self.devices.len() * self.nodes.as_ref().map_or(1, |n| n.count as usize)
    }

    /// Global rank of this node's first peer.
    fn first_rank(&self) -> usize {
        self.devices.len() * self.nodes.as_ref().map_or(0, |n| n.rank as usize)
    }

    /// An error before anything starts when the global batch does not split evenly.
    pub fn check_batch(&self, sequences: usize) -> Result<(), ExecError> {
        let w = self.world();
        if sequences.is_multiple_of(w) {
            return Ok(());
        }
        let lower = (sequences / w).max(1) * w;
        Err(ExecError::new(
            ErrorKind::Parallel,
            format!("a batch of {sequences} sequences does not divide over {w} peers"),
        )
        .with_help(format!(
            "the recipe's batch is the global batch, split evenly over the peers: use a \
             number of peers that divides {sequences}, or `--set batch={lower}x...` \
             (a multiple of {w})"
        )))
    }

    /// This node's local collective (the nodes are joined by [`link`], not by it).
    fn config(&self) -> CollectiveConfig {
        CollectiveConfig::default().with_num_devices(self.devices.len())
    }
}

/// Parses `--devices`: `cpu:N` (N peers on the CPU) or a comma-separated list such as
/// `cuda:0,cuda:1` or `wgpu:0,wgpu:1` (one peer per device).
pub fn parse_devices(s: &str) -> Result<Vec<DeviceChoice>, String> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(n) = s.strip_prefix(&format!("{}:", Kind::Cpu.name())) {
        return match n.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(vec![DeviceChoice::Cpu; n]),
            _ => Err(format!(
                "`cpu:{n}`: the number of CPU peers must be a whole number of at least 1"
            )),
        };
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let d: DeviceChoice = part.parse()?;
        if d == DeviceChoice::Auto {
            return Err("`auto` cannot be a peer: name each device".into());
        }
        if out.contains(&d) && d != DeviceChoice::Cpu {
            return Err(format!("`{d}` is listed twice: each device holds one peer"));
        }
        out.push(d);
    }
    let kind = |d: &DeviceChoice| std::mem::discriminant(d);
    if out.iter().any(|d| kind(d) != kind(&out[0])) {
        return Err(
            "peers must all be of one kind: all `cpu`, all `cuda:N` or all `wgpu:N`".into(),
        );
    }
    Ok(out)
}

/// Last progress of each local peer, in milliseconds since the launch.
pub(crate) struct Beats {
    clock: Instant,
    last: Vec<AtomicU64>,
}

impl Beats {
    fn new(n: usize) -> Self {
        Beats {
            clock: Instant::now(),
            last: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    pub(crate) fn beat(&self, index: usize) {
        let ms = self.clock.elapsed().as_millis() as u64;
        self.last[index].store(ms, Ordering::Relaxed);
    }
    /// Time since any local peer last made progress.
    fn quiet_for(&self) -> Duration {
        let newest = self
            .last
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        self.clock
            .elapsed()
            .saturating_sub(Duration::from_millis(newest))
    }
}

/// Runs `work` once per local peer, each on its own thread, and returns their results in peer
/// order. The first failure ends the launch: an error of the peer itself is returned at once;
/// an error of a collective operation (a consequence, kind `Parallel`) only after a short
/// grace period in which the root cause may still arrive.
pub fn launch<T: Send + 'static>(
    topo: &Topology,
    work: impl Fn(Peer) -> Result<T, ExecError> + Send + Sync + 'static,
) -> Result<Vec<T>, ExecError> {
    // Joining the other nodes blocks until all are there (bounded by the peer timeout).
    let link = match &topo.nodes {
        Some(nodes) => Some(Arc::new(Mutex::new(link::Link::connect(
            nodes,
            topo.peer_timeout,
        )?))),
        None => None,
    };
    let n = topo.devices.len();
    let work = Arc::new(work);
    let beats = Arc::new(Beats::new(n));
    let (tx, rx) = channel();
    for (index, &device) in topo.devices.iter().enumerate() {
        let peer = Peer::new(
            index,
            device,
            topo.first_rank() + index,
            topo.world(),
            n,
            topo.config(),
            (index == 0).then(|| link.clone()).flatten(),
            beats.clone(),
        );
        let (tx, work) = (tx.clone(), work.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("peer-{index}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(peer)))
                    .unwrap_or_else(|p| Err(crate::exec::device::panic_error(p.as_ref())));
                let _ = tx.send((index, result));
            });
        if let Err(e) = spawned {
            return Err(ExecError::new(
                ErrorKind::Resource,
                format!("cannot start a thread for peer {index}: {e}"),
            ));
        }
    }
    drop(tx);

    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut done = 0;
    let mut consequence: Option<(ExecError, Instant)> = None;
    while done < n {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((i, Ok(v))) => {
                out[i] = Some(v);
                done += 1;
            }
            Ok((i, Err(e))) if e.kind != ErrorKind::Parallel => {
                return Err(prefixed(i, topo, e));
            }
            Ok((i, Err(e))) => {
                done += 1;
                consequence.get_or_insert((prefixed(i, topo, e), Instant::now()));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some((_, since)) = &consequence
            && (since.elapsed() > Duration::from_secs(2) || done == n)
        {
            break;
        }
        let quiet = beats.quiet_for();
        if quiet > topo.peer_timeout {
            return Err(ExecError::new(
                ErrorKind::Parallel,
                format!(
                    "no peer finished a training step for {:.0} s: a peer (or node) stopped \
                     answering",
                    quiet.as_secs_f64()
                ),
            )
            .with_help(
                "check that every node is running and reachable; the last checkpoint is \
                 kept, so continue with `progc run --resume DIR` (on any number of peers), \
                 or allow more time with `--peer-timeout SECONDS`",
            ));
        }
    }
    if let Some((e, _)) = consequence {
        return Err(e);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| {
                ExecError::new(
                    ErrorKind::Internal,
                    format!("peer {i} ended without a result"),
                )
            })
        })
        .collect()
}

fn prefixed(index: usize, topo: &Topology, mut e: ExecError) -> ExecError {
    let node = topo
        .nodes
        .as_ref()
        .map_or(String::new(), |n| format!(" of node {}", n.rank));
    e.message = format!(
        "peer {index} ({}){node}: {}",
        topo.devices[index], e.message
    );
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_lists() {
        assert_eq!(parse_devices("cpu:2"), Ok(vec![DeviceChoice::Cpu; 2]));
        assert_eq!(
            parse_devices("cuda:0,cuda:1"),
            Ok(vec![DeviceChoice::Cuda(0), DeviceChoice::Cuda(1)])
        );
        assert_eq!(parse_devices("cpu,cpu"), Ok(vec![DeviceChoice::Cpu; 2]));
        for bad in [
            "cpu:0",
            "cpu:x",
            "cuda:0,cuda:0",
            "cpu,cuda:1",
            "auto",
            "tpu",
            "",
        ] {
            assert!(parse_devices(bad).is_err(), "{bad}");
        }
    }

    fn topo(devices: usize, nodes: Option<u32>) -> Topology {
        Topology {
            devices: vec![DeviceChoice::Cpu; devices],
            nodes: nodes.map(|count| Nodes {
                count,
                rank: count - 1,
                orchestrator: "127.0.0.1:4100".into(),
            }),
            peer_timeout: DEFAULT_PEER_TIMEOUT,
        }
    }

    #[test]
    fn world_and_ranks_count_every_node() {
        let t = topo(2, Some(3));
        assert_eq!((t.world(), t.first_rank()), (6, 4));
        assert_eq!((topo(2, None).world(), topo(2, None).first_rank()), (2, 0));
    }

    #[test]
    fn an_uneven_batch_is_an_error_with_a_fix() {
        assert!(topo(2, None).check_batch(8).is_ok());
        let e = topo(3, None).check_batch(8).unwrap_err();
        assert!(
            e.message.contains("8 sequences") && e.message.contains("3 peers"),
            "{e}"
        );
        assert!(e.help.unwrap().contains("batch=6x"));
    }

    #[test]
    fn the_first_root_error_wins_over_its_consequences() {
        let t = topo(2, None);
        let r = launch(&t, |peer: Peer| -> Result<(), ExecError> {
            if peer.index == 1 {
                std::thread::sleep(Duration::from_millis(50));
                Err(ExecError::new(ErrorKind::Data, "the corpus went away"))
            } else {
                Err(ExecError::new(ErrorKind::Parallel, "all-reduce failed"))
            }
        });
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Data, "{e}");
        assert!(e.message.starts_with("peer 1 (cpu): "), "{e}");
    }

    #[test]
    fn a_silent_peer_is_a_timeout_not_a_hang() {
        let mut t = topo(1, None);
        t.peer_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let e = launch(&t, |_peer: Peer| -> Result<(), ExecError> {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Parallel);
        assert!(e.message.contains("no peer finished"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
