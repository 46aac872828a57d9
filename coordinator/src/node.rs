//! One coordinator node: the store, the Raft instance, and the proposer that turns concurrent
//! commands into shared log entries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::ClientWriteError;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::{Semaphore, mpsc, oneshot};
use txmesh_seata::GlobalStatus;

use crate::config::{CoordinatorConfig, RaftTuning};
use crate::health::{self, Fault, NotServing, Volume};
use crate::metrics::Metrics;
use crate::raft::{MAX_PROPOSAL, NodeId, PeerNetwork, Proposal, Raft, RaftMetrics};
use crate::state::{Command, Outcome};
use crate::store::{self, SharedState};

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store does not open.
    #[error(transparent)]
    Store(#[from] store::OpenError),
    /// openraft refused the configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a command was not applied. Only [`ProposeError::NotLeader`] is certain not to have
/// been applied; the others may or may not have been.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader.
    #[error("not the leader{}", .leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
    /// Raft failed.
    #[error("raft failed: {0}")]
    Raft(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Stopped,
}

/// A running node.
pub struct Node {
    /// This node's id.
    pub id: NodeId,
    /// The Raft instance.
    pub raft: Raft,
    /// The applied state, for reads.
    pub state: Arc<SharedState>,
    /// What this node records for Prometheus.
    pub metrics: Arc<Metrics>,
    proposals: mpsc::Sender<Pending>,
    /// How long a leader may go without a quorum's acknowledgement and still serve.
    quorum_lease: Duration,
    /// The file system holding the store.
    volume: Volume,
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// Log entries in flight at once. While one is being written, synced and applied, new
/// commands queue up and go out together in the next entry: batching adapts to the load.
/// One is best: openraft 0.9's core awaits each append's fsync before taking the next, so a
/// second entry in flight cannot share the fsync and only splits the batch
/// (`txmesh bench coordinator`, empty workload: 8 in flight 8,100 tx/s, 2: 22,000, 1: 32,500).
const ENTRIES_IN_FLIGHT: usize = 1;

impl Node {
    /// Opens the store, starts Raft and, on a fresh data directory of a single-voter group,
    /// initializes the group with this node.
    pub async fn start(config: &CoordinatorConfig) -> Result<Arc<Self>, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Raft(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let metrics = Arc::new(Metrics::default());
        let (log, machine) = store::open(&config.data_dir, &metrics)?;
        let state = machine.state();
        let tuning = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: "txmesh".into(),
            heartbeat_interval: tuning.heartbeat_ms,
            election_timeout_min: tuning.election_timeout_min_ms,
            election_timeout_max: tuning.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_every_entries),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            PeerNetwork::default(),
            log,
            machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let voters = config.voters();
        let lowest = voters.iter().map(|p| p.id).min();
        // Exactly one node initializes a new group; a restarted node already is initialized.
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if lowest == Some(config.node_id) && !initialized {
            let members: BTreeMap<NodeId, BasicNode> = voters
                .into_iter()
                .map(|p| (p.id, BasicNode::new(p.addr)))
                .collect();
            raft.initialize(members)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        }
        let (proposals, queue) = mpsc::channel(64 * 1024);
        let max_commands = tuning.max_commands_per_entry.clamp(1, MAX_PROPOSAL);
        tokio::spawn(propose_loop(raft.clone(), queue, max_commands));
        Ok(Arc::new(Self {
            id: config.node_id,
            raft,
            state,
            metrics,
            proposals,
            quorum_lease: quorum_lease(tuning),
            volume: Volume::new(&config.data_dir),
        }))
    }

    /// Replicates `command` and returns its outcome once it is committed and applied.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        let proposed = Instant::now();
        let (reply, outcome) = oneshot::channel();
        self.proposals
            .send(Pending { command, reply })
            .await
            .map_err(|_| ProposeError::Stopped)?;
        let outcome = outcome.await.map_err(|_| ProposeError::Stopped)?;
        if outcome.is_ok() {
            self.metrics.observe_apply(proposed.elapsed());
        }
        outcome
    }

    /// A transaction's status as applied here (`Finished` when unknown).
    pub fn status(&self, tx_id: u64) -> GlobalStatus {
        self.state.read().tx.status_or_finished(tx_id)
    }

    /// Whether this node leads the group now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Why this node must not serve transaction requests now, if it must not: its Raft core
    /// or storage failed, it does not lead, or it leads but no quorum has acknowledged it for
    /// longer than a follower waits before it elects another leader. A leader cut off from
    /// its group keeps its role until it hears of a newer term; answering `NotRaftLeader`
    /// sends its clients to the new leader at once, instead of letting them wait out their
    /// timeouts on writes that cannot commit here.
    pub fn not_serving(&self) -> Option<NotServing> {
        let metrics = self.raft.metrics().borrow().clone();
        if let Some(failing) = self.failing_with(&metrics) {
            return Some(failing);
        }
        (metrics.state != ServerState::Leader).then(|| NotServing::NotLeader {
            node: self.id,
            leader: self.leader_description(),
        })
    }

    /// Why this node must not serve whatever its role: its Raft core or storage failed, or it
    /// leads without a quorum. Such a node is not ready and names no leader to Seata clients.
    pub fn failing(&self) -> Option<NotServing> {
        self.failing_with(&self.raft.metrics().borrow())
    }

    fn failing_with(&self, metrics: &RaftMetrics) -> Option<NotServing> {
        match health::fault(metrics, &self.volume) {
            Some(fault) => Some(fault.into()),
            None => self.quorum_lost(metrics),
        }
    }

    /// Why this node cannot serve until something changes, if so: its Raft core stopped.
    pub fn fault(&self) -> Option<Fault> {
        health::fault(&self.raft.metrics().borrow(), &self.volume)
    }

    /// Waits until the Raft core stops; the fault it stopped with.
    pub async fn faulted(&self) -> Fault {
        let mut metrics = self.raft.metrics();
        // The sender lives as long as the core's metrics task; gone means the core is gone.
        let _ = metrics.wait_for(|m| m.running_state.is_err()).await;
        self.fault()
            .unwrap_or_else(|| Fault::RaftStopped("the Raft core is gone".to_owned()))
    }

    /// Whether a leader with these metrics has lost its quorum (a follower has none to lose).
    pub fn quorum_lost(&self, metrics: &RaftMetrics) -> Option<NotServing> {
        health::quorum_lost(metrics, self.quorum_lease)
    }

    /// The file system holding the store.
    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// Who leads the group, for messages: "the leader is node 2 (raft 10.0.0.2:9091)".
    pub fn leader_description(&self) -> String {
        let metrics = self.raft.metrics().borrow().clone();
        let Some(leader) = metrics.current_leader else {
            return "no leader is elected yet".to_owned();
        };
        match metrics.membership_config.membership().get_node(&leader) {
            Some(node) => format!("the leader is node {leader} (raft {})", node.addr),
            None => format!("the leader is node {leader}"),
        }
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft did not shut down cleanly");
        }
    }
}

/// Drains the queue into entries of up to `max_commands` commands, keeping up to
/// [`ENTRIES_IN_FLIGHT`] entries in flight.
async fn propose_loop(raft: Raft, mut queue: mpsc::Receiver<Pending>, max_commands: usize) {
    let in_flight = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_commands {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<Command>, Vec<_>) =
            batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        let receiver = match raft.client_write_ff(Proposal(commands)).await {
            Ok(receiver) => receiver,
            Err(fatal) => {
                let error = ProposeError::Raft(fatal.to_string());
                replies
                    .into_iter()
                    .for_each(|reply| drop(reply.send(Err(error.clone()))));
                continue;
            }
        };
        tokio::spawn(async move {
            let _permit = permit;
            let result = match receiver.await {
                Ok(Ok(response)) => Ok(response.data.0),
                Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                    Err(ProposeError::NotLeader {
                        leader: forward.leader_node.map(|node| node.addr),
                    })
                }
                Ok(Err(other)) => Err(ProposeError::Raft(other.to_string())),
                Err(_) => Err(ProposeError::Stopped),
            };
            match result {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(error) => replies
                    .into_iter()
                    .for_each(|reply| drop(reply.send(Err(error.clone())))),
            }
        });
    }
}

/// The longest plus the shortest election timeout: a follower that last heard from its leader
/// campaigns after the longest (openraft's leader lease) plus its own timeout, so by then a
/// cut-off leader's followers may be electing another, and it stops serving before a
/// successor can.
fn quorum_lease(tuning: &RaftTuning) -> Duration {
    Duration::from_millis(tuning.election_timeout_max_ms + tuning.election_timeout_min_ms)
}
