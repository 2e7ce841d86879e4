//! Between nodes: node 0 is the hub, every other node holds one websocket channel to it
//! (burn-communication's websocket transport). A sum over nodes sends each node's vector to
//! the hub, which adds them in rank order and sends the one result back to every node.
//!
//! Why not burn-collective's multi-node mode: in burn-collective 0.21.0 the node sync that
//! ends every global operation (`SyncService::sync`) clears a copy of its list of synced
//! peers instead of the list, so no operation after the first ever completes (measured: two
//! nodes on loopback hang in the second all-reduce). The local (one-process) collective is
//! not affected and is used within a node.
//!
//! Invariants:
//! - every node receives the same bytes, summed in the same order, so replicas stay
//!   bit-identical;
//! - the channels are ordered, so operations need no ids and no barrier: the k-th sum of every
//!   node is one operation;
//! - every wait is bounded by the peer timeout, and a closed channel is an error at once
//!   (`recv` is never called again after an error).

use std::time::Duration;

use burn_communication::websocket::{WsClient, WsServer};
use burn_communication::{Address, CommunicationChannel, Message, ProtocolClient, ProtocolServer};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use super::Nodes;
use crate::exec::error::{ErrorKind, ExecError};

/// This node's end of the links.
pub struct Link {
    runtime: Runtime,
    timeout: Duration,
    role: Role,
}

enum Role {
    /// Node 0: one channel per other node, in rank order (index 0 is node 1).
    Hub(Vec<<WsServer as ProtocolServer>::Channel>),
    Spoke(<WsClient as ProtocolClient>::Channel),
}

const ROUTE: &str = "progc-nodes";

fn link_error(msg: String) -> ExecError {
    ExecError::new(ErrorKind::Parallel, msg).with_help(
        "check that every node runs the same command with its own `--node-rank` and can reach \
         `--orchestrator` (node 0's address); the last checkpoint is kept, so continue with \
         `progc run --resume DIR`",
    )
}

fn port_of(host_port: &str) -> Result<u16, ExecError> {
    host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| link_error(format!("`{host_port}` is not HOST:PORT")))
}

fn bytes_of(v: &[f32]) -> Message {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Message::new(out.into())
}

fn floats_of(m: &Message, len: usize, from: &str) -> Result<Vec<f32>, ExecError> {
    if m.data.len() != len * 4 {
        return Err(link_error(format!(
            "{from} sent {} bytes where {} were expected: the nodes run different recipes or \
             progc versions",
            m.data.len(),
            len * 4
        )));
    }
    Ok(m.data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl Link {
    /// Connects this node to the others: node 0 listens on the `--orchestrator` port and waits
    /// for every other node; the others connect to it (retrying until `timeout`).
    pub fn connect(nodes: &Nodes, timeout: Duration) -> Result<Link, ExecError> {
        // burn-communication's server installs an INFO-level log printer unless a subscriber
        // is already set: progc reports the errors that matter itself.
        let _ =
            tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| link_error(format!("cannot start the network runtime: {e}")))?;
        let port = port_of(&nodes.orchestrator)?;
        let role = if nodes.rank == 0 {
            // WsServer binds every interface; probe that once so a busy port is our error.
            drop(
                std::net::TcpListener::bind(("0.0.0.0", port))
                    .map_err(|e| link_error(format!("cannot listen on port {port}: {e}")))?,
            );
            let (tx, mut rx) = mpsc::channel(nodes.count as usize);
            let server = WsServer::new(port).route(ROUTE, move |channel| async move {
                let _ = tx.send(channel).await;
            });
            runtime.spawn(server.serve(std::future::pending()));
            let mut joined: Vec<(u32, _)> = Vec::new();
            runtime.block_on(async {
                while joined.len() + 1 < nodes.count as usize {
                    let waiting = nodes.count as usize - 1 - joined.len();
                    let mut ch = tokio::time::timeout(timeout, rx.recv())
                        .await
                        .map_err(|_| {
                            link_error(format!(
                                "{waiting} node(s) did not join within {} s",
                                timeout.as_secs()
                            ))
                        })?
                        .ok_or_else(|| link_error("the node server stopped".into()))?;
                    let hello = tokio::time::timeout(timeout, ch.recv()).await;
                    let rank = match hello {
                        Ok(Ok(Some(m))) if m.data.len() == 4 => {
                            u32::from_le_bytes([m.data[0], m.data[1], m.data[2], m.data[3]])
                        }
                        _ => continue, // not a progc node, or it left: wait for the next
                    };
                    if rank == 0 || rank >= nodes.count || joined.iter().any(|(r, _)| *r == rank) {
                        return Err(link_error(format!(
                            "a node joined as rank {rank}: ranks must be 1..{} and distinct",
                            nodes.count - 1
                        )));
                    }
                    joined.push((rank, ch));
                }
                Ok::<(), ExecError>(())
            })?;
            joined.sort_by_key(|(r, _)| *r);
            Role::Hub(joined.into_iter().map(|(_, c)| c).collect())
        } else {
            let address: Address = format!("ws://{}", nodes.orchestrator)
                .parse()
                .map_err(|e: String| link_error(e))?;
            let started = std::time::Instant::now();
            let mut channel = loop {
                if let Some(c) = runtime.block_on(WsClient::connect(address.clone(), ROUTE)) {
                    break c;
                }
                if started.elapsed() > timeout {
                    return Err(link_error(format!(
                        "cannot reach node 0 at {} within {} s",
                        nodes.orchestrator,
                        timeout.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            let hello = Message::new(nodes.rank.to_le_bytes().to_vec().into());
            runtime
                .block_on(channel.send(hello))
                .map_err(|e| link_error(format!("cannot greet node 0: {e:?}")))?;
            Role::Spoke(channel)
        };
        Ok(Link {
            runtime,
            timeout,
            role,
        })
    }

    /// The element-wise sum of `v` over all nodes.
    pub fn sum(&mut self, v: Vec<f32>) -> Result<Vec<f32>, ExecError> {
        let timeout = self.timeout;
        let len = v.len();
        let silent = |who: &str| {
            link_error(format!(
                "{who} sent nothing for {} s: it stopped answering",
                timeout.as_secs()
            ))
        };
        match &mut self.role {
            Role::Hub(spokes) => self.runtime.block_on(async {
                let mut total = v;
                for (i, ch) in spokes.iter_mut().enumerate() {
                    let who = format!("node {}", i + 1);
                    let m = match tokio::time::timeout(timeout, ch.recv()).await {
                        Err(_) => return Err(silent(&who)),
                        Ok(Ok(Some(m))) => m,
                        Ok(Ok(None)) => return Err(link_error(format!("{who} left the run"))),
                        Ok(Err(e)) => {
                            return Err(link_error(format!("{who} left the run ({e:?})")));
                        }
                    };
                    for (t, x) in total.iter_mut().zip(floats_of(&m, len, &who)?) {
                        *t += x;
                    }
                }
                let out = bytes_of(&total);
                for (i, ch) in spokes.iter_mut().enumerate() {
                    ch.send(Message::new(out.data.clone()))
                        .await
                        .map_err(|e| link_error(format!("node {} left the run ({e:?})", i + 1)))?;
                }
                Ok(total)
            }),
            Role::Spoke(ch) => self.runtime.block_on(async {
                ch.send(bytes_of(&v))
                    .await
                    .map_err(|e| link_error(format!("node 0 left the run ({e:?})")))?;
                match tokio::time::timeout(timeout, ch.recv()).await {
                    Err(_) => Err(silent("node 0")),
                    Ok(Ok(Some(m))) => floats_of(&m, len, "node 0"),
                    Ok(Ok(None)) => Err(link_error("node 0 left the run".into())),
                    Ok(Err(e)) => Err(link_error(format!("node 0 left the run ({e:?})"))),
                }
            }),
        }
    }
}
