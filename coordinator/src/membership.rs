//! Raft membership for the operator: a status view of the group, and changes made by the
//! leader one at a time — add a learner, promote it once caught up, remove a member, transfer
//! leadership — each refused with a typed reason when it would be unsafe. Also what readiness
//! and Seata's metadata endpoints need: every member's endpoints, and whether this node has
//! caught up with its leader.
//!
//! Membership entries carry only Raft addresses (openraft's `BasicNode`). A member's admin and
//! Seata endpoints are asked of it directly (`Describe` on the Raft port) and remembered, so a
//! member that is down is still listed with its last known endpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::{BasicNode, ChangeMembers, ServerState};
use serde::Serialize;
use txmesh_api::raft::v1::{DescribeRequest, ElectRequest, NodeDescription};

use crate::address::{AddressError, check_host_port};
use crate::announced::Announcer;
use crate::config::CoordinatorConfig;
use crate::health::NotServing;
use crate::node::Node;
use crate::raft::{
    Advertised, NodeId, PeerNetwork, Raft, RaftMetrics, TypeConfig, describe, quorum_index,
};

/// How long a peer has to answer `Describe`.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a membership change has to commit.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest wait for a transferred leadership to settle.
const MIN_TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

/// A member's part in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The voter that leads.
    Leader,
    /// Any other voter.
    Follower,
    /// Replicated to, but not voting.
    Learner,
}

/// The group as one node sees it (`GET /api/v1/cluster`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The node answering.
    pub node_id: NodeId,
    /// Its Raft state: leader, follower, candidate, learner or shutdown; a leader no quorum
    /// has answered for too long (cut off from its group) is `leader-without-quorum`.
    pub state: String,
    /// Why the answering node cannot serve, when its Raft core or storage failed.
    pub fault: Option<String>,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader_id: Option<NodeId>,
    /// Where the leader's admin API is: membership changes go there.
    pub leader_admin_address: Option<String>,
    /// The leader's commit index (highest index stored on a quorum), as the leader reports it.
    pub committed_index: Option<u64>,
    /// The last index applied on the answering node.
    pub applied_index: Option<u64>,
    /// The last index in the answering node's log.
    pub last_log_index: Option<u64>,
    /// Most entries a member may lag and count as caught up.
    pub caught_up_lag: u64,
    /// Whether a membership change is being made (on the leader) or not yet final.
    pub change_in_progress: bool,
    /// Every member, by id.
    pub members: Vec<MemberStatus>,
}

/// One member.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Its node id.
    pub id: NodeId,
    /// Its Raft address, as in the membership.
    pub address: String,
    /// Its admin HTTP endpoint; unknown until it has answered once.
    pub admin_address: Option<String>,
    /// Its Seata RPC endpoint; unknown until it has answered once.
    pub seata_address: Option<String>,
    /// The coordinator version it runs; unknown until it has answered once.
    pub version: Option<String>,
    /// The Seata server version it announces to clients; unknown until it has answered once.
    pub seata_version: Option<String>,
    /// Leader, follower or learner.
    pub role: Role,
    /// The last index known to be replicated to it: only the leader knows.
    pub match_index: Option<u64>,
    /// Whether it lags the leader's log by at most the allowed lag: only the leader knows.
    pub caught_up: Option<bool>,
    /// Whether it answered the node answering just now.
    pub reachable: bool,
}

/// Why a membership call was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Changes are made by the leader only.
    #[error("node {node} is not the leader; {}", leader_hint(*.leader_id, .leader_admin_address.as_deref()))]
    NotLeader {
        /// The node asked.
        node: NodeId,
        /// The leader it knows of.
        leader_id: Option<NodeId>,
        /// The leader's admin endpoint, when known.
        leader_admin_address: Option<String>,
    },
    /// Another change is being made.
    #[error("another membership change is in progress; retry when it is done")]
    Busy,
    /// No member has this id.
    #[error("node {0} is not a member")]
    UnknownMember(NodeId),
    /// The address is not `host:port`.
    #[error(transparent)]
    InvalidAddress(#[from] AddressError),
    /// Node ids start at 1.
    #[error("0 is not a node id: node ids start at 1")]
    InvalidNodeId,
    /// The id is a member already, at another address.
    #[error(
        "node {id} is already a member at {current}; remove it before adding it at {requested}"
    )]
    MemberElsewhere {
        /// The node.
        id: NodeId,
        /// Its address in the membership.
        current: String,
        /// The address asked for.
        requested: String,
    },
    /// Another member has the address.
    #[error("address {address} belongs to member {owner}")]
    AddressTaken {
        /// The address.
        address: String,
        /// The member that has it.
        owner: NodeId,
    },
    /// The member lags too far behind.
    #[error("node {id} is not caught up: it has index {}, the leader {last} (allowed lag {lag})", .matched.map_or("none".to_owned(), |m| m.to_string()))]
    NotCaughtUp {
        /// The node.
        id: NodeId,
        /// The last index replicated to it.
        matched: Option<u64>,
        /// The leader's last index.
        last: u64,
        /// The lag allowed.
        lag: u64,
    },
    /// The member did not answer.
    #[error("node {0} does not answer")]
    Unreachable(NodeId),
    /// The change would leave too few healthy voters to commit anything.
    #[error(
        "the change would lose quorum: of the voters {voters:?} after it, only {healthy:?} are reachable and caught up, and {needed} are needed"
    )]
    WouldLoseQuorum {
        /// The voters after the change.
        voters: BTreeSet<NodeId>,
        /// Those of them reachable and caught up.
        healthy: BTreeSet<NodeId>,
        /// A majority of `voters`.
        needed: usize,
    },
    /// The leader cannot remove itself.
    #[error("node {0} is the leader: transfer leadership to another voter before removing it")]
    RemovingLeader(NodeId),
    /// Leadership can go to a voter only.
    #[error("node {0} is a learner: promote it before transferring leadership to it")]
    NotAVoter(NodeId),
    /// The target declined to campaign.
    #[error("node {id} will not campaign: {reason}")]
    TransferRefused {
        /// The target.
        id: NodeId,
        /// Its reason.
        reason: String,
    },
    /// Another node won the election the transfer started.
    #[error("leadership went to node {leader} instead of node {target}; ask the new leader again")]
    TransferWentElsewhere {
        /// The node asked for.
        target: NodeId,
        /// The node that leads.
        leader: NodeId,
    },
    /// No outcome in time; the change may still complete.
    #[error("no outcome within {0:?}; the change may still complete: check the cluster status")]
    Timeout(Duration),
    /// Raft failed.
    #[error("raft: {0}")]
    Raft(String),
}

fn leader_hint(id: Option<NodeId>, admin: Option<&str>) -> String {
    match (id, admin) {
        (Some(id), Some(admin)) => format!("the leader is node {id}, admin API at {admin}"),
        (Some(id), None) => format!("the leader is node {id}"),
        (None, _) => "no leader is known".to_owned(),
    }
}

/// Why this node is not ready (`/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// Its Raft core or storage failed, or it leads without a quorum.
    #[error(transparent)]
    NotServing(NotServing),
    /// The node is not in the group's membership (as far as its log goes).
    #[error("node {0} is not a member of the group")]
    NotAMember(NodeId),
    /// No leader is known.
    #[error("no leader is known")]
    NoLeader,
    /// The leader did not report its commit index.
    #[error("leader {0} did not report its commit index")]
    LeaderSilent(NodeId),
    /// The node lags too far behind.
    #[error(
        "applied index {applied} is behind the leader's commit index {committed} by more than {lag}"
    )]
    Behind {
        /// This node's applied index.
        applied: u64,
        /// The leader's commit index.
        committed: u64,
        /// The lag allowed.
        lag: u64,
    },
}

/// What the answering node learnt of a member just now.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// Its description: fresh, or the last one it gave at the same address.
    description: Option<NodeDescription>,
    reachable: bool,
}

/// A member's last description, and the Raft address it was given at.
struct Known {
    address: String,
    description: NodeDescription,
}

/// Membership status and changes over one node.
pub struct Membership {
    node: Arc<Node>,
    advertised: Advertised,
    group: String,
    lag: u64,
    transfer_timeout: Duration,
    peers: PeerNetwork,
    known: Mutex<HashMap<NodeId, Known>>,
    changing: tokio::sync::Mutex<()>,
    announcer: Announcer,
}

impl Membership {
    /// Membership of `node`, which serves at the endpoints `config` advertises. Starts
    /// following its leader for Seata clients ([`Announcer`]), so it runs in a Tokio runtime.
    pub fn new(node: Arc<Node>, config: &CoordinatorConfig) -> Self {
        let election = Duration::from_millis(config.raft.election_timeout_max_ms);
        let announcer = Announcer::start(&node.raft);
        Self {
            node,
            advertised: Advertised {
                admin: config.admin_address(),
                seata: config.xid_address(),
                seata_version: config.server.version.clone(),
            },
            group: config.raft.group.clone(),
            lag: config.raft.caught_up_lag,
            transfer_timeout: (election * 10).max(MIN_TRANSFER_TIMEOUT),
            peers: PeerNetwork::default(),
            known: Mutex::new(HashMap::new()),
            changing: tokio::sync::Mutex::new(()),
            announcer,
        }
    }

    /// The group's name (Seata's raft group).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// This node's endpoints.
    pub fn advertised(&self) -> &Advertised {
        &self.advertised
    }

    fn metrics(&self) -> RaftMetrics {
        self.node.raft.metrics().borrow().clone()
    }

    /// The group as this node sees it, every member asked how it is.
    pub async fn status(&self) -> ClusterStatus {
        self.status_within(PROBE_TIMEOUT).await
    }

    /// Like [`Membership::status`], each member given `probe` to answer: a member that does
    /// not answer in time counts as unreachable.
    pub async fn status_within(&self, probe: Duration) -> ClusterStatus {
        let metrics = self.metrics();
        let seen = self.probe_all(&metrics, probe).await;
        self.view(&metrics, &seen)
    }

    /// Adds `id` at Raft address `address` as a learner; returns at once, while it catches up.
    /// Already being a member at that address is success, with nothing changed (`false`).
    pub async fn add_learner(&self, id: NodeId, address: &str) -> Result<bool, MembershipError> {
        check_node_id(id)?;
        check_host_port(address)?;
        let (_change, metrics) = self.begin_change().await?;
        let membership = metrics.membership_config.membership();
        if let Some(node) = membership.get_node(&id) {
            return match node.addr == address {
                true => Ok(false),
                false => Err(MembershipError::MemberElsewhere {
                    id,
                    current: node.addr.clone(),
                    requested: address.to_owned(),
                }),
            };
        }
        if let Some((owner, _)) = membership.nodes().find(|(_, node)| node.addr == address) {
            return Err(MembershipError::AddressTaken {
                address: address.to_owned(),
                owner: *owner,
            });
        }
        let added = self
            .node
            .raft
            .add_learner(id, BasicNode::new(address), false);
        self.committed(added).await?;
        tracing::info!(id, address, "membership: learner added");
        Ok(true)
    }

    /// Makes learner `id` a voter, once it is caught up. A voter already is success, with
    /// nothing changed.
    pub async fn promote(&self, id: NodeId) -> Result<bool, MembershipError> {
        check_node_id(id)?;
        let (_change, metrics) = self.begin_change().await?;
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(MembershipError::UnknownMember(id));
        }
        let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            return Ok(false);
        }
        self.require_caught_up(&metrics, id)?;
        let seen = self.probe_all(&metrics, PROBE_TIMEOUT).await;
        voters.insert(id);
        self.require_quorum(&metrics, &seen, &voters)?;
        let promoted = self
            .node
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true);
        self.committed(promoted).await?;
        tracing::info!(id, "membership: learner promoted to voter");
        Ok(true)
    }

    /// Removes member `id`, voter or learner. Refuses to remove the leader, and to remove a
    /// voter when the voters left would not have a reachable, caught-up majority.
    pub async fn remove(&self, id: NodeId) -> Result<bool, MembershipError> {
        check_node_id(id)?;
        let (_change, metrics) = self.begin_change().await?;
        if id == metrics.id {
            return Err(MembershipError::RemovingLeader(id));
        }
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(MembershipError::UnknownMember(id));
        }
        let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = match voters.remove(&id) {
            true => {
                let seen = self.probe_all(&metrics, PROBE_TIMEOUT).await;
                self.require_quorum(&metrics, &seen, &voters)?;
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            }
            false => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
        };
        let removed = self.node.raft.change_membership(change, false);
        self.committed(removed).await?;
        tracing::info!(id, "membership: member removed");
        Ok(true)
    }

    /// Hands leadership to voter `target`: it must be reachable and caught up. This node stops
    /// campaigning, asks the target to campaign, and waits until a leader is known again. This
    /// node leading already is success, with nothing changed.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<bool, MembershipError> {
        check_node_id(target)?;
        let (_change, metrics) = self.begin_change().await?;
        if target == metrics.id {
            return Ok(false);
        }
        let membership = metrics.membership_config.membership();
        let node = membership
            .get_node(&target)
            .ok_or(MembershipError::UnknownMember(target))?;
        if !membership.voter_ids().any(|id| id == target) {
            return Err(MembershipError::NotAVoter(target));
        }
        self.require_caught_up(&metrics, target)?;
        let mut client = self
            .peers
            .client(&node.addr)
            .map_err(|_| MembershipError::Unreachable(target))?;
        // Until a leader is known again, this node must not win the election back.
        let _paused = PausedElections::new(&self.node.raft);
        let request = ElectRequest {
            term: metrics.current_term,
            leader_id: metrics.id,
        };
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, client.elect(request)).await {
            Ok(Ok(answer)) => answer.into_inner(),
            Ok(Err(_)) | Err(_) => return Err(MembershipError::Unreachable(target)),
        };
        if !answer.started {
            return Err(MembershipError::TransferRefused {
                id: target,
                reason: answer.refusal,
            });
        }
        let mut roles = self.node.raft.metrics();
        let leader = tokio::time::timeout(
            self.transfer_timeout,
            roles.wait_for(|m| m.current_leader.is_some_and(|leader| leader != metrics.id)),
        )
        .await
        .map_err(|_| MembershipError::Timeout(self.transfer_timeout))?
        .map_err(|_| MembershipError::Raft("raft has stopped".to_owned()))?
        .current_leader;
        match leader {
            Some(leader) if leader == target => {
                tracing::info!(from = metrics.id, to = target, "leadership transferred");
                Ok(true)
            }
            Some(leader) => Err(MembershipError::TransferWentElsewhere { target, leader }),
            None => Err(MembershipError::Raft(
                "no leader after the transfer".to_owned(),
            )),
        }
    }

    /// Whether this node runs, is a member, a leader is known (itself only with a quorum behind
    /// it), and this node has applied all but at most the allowed lag of what the leader has
    /// committed.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        if let Some(failing) = self.node.failing() {
            return Err(NotReady::NotServing(failing));
        }
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&metrics.id).is_none() {
            return Err(NotReady::NotAMember(metrics.id));
        }
        let leader = metrics.current_leader.ok_or(NotReady::NoLeader)?;
        if leader == metrics.id {
            return Ok(());
        }
        let address = membership
            .get_node(&leader)
            .map(|node| node.addr.clone())
            .ok_or(NotReady::LeaderSilent(leader))?;
        let seen = self.probe(leader, &address, PROBE_TIMEOUT).await;
        let committed = match (seen.reachable, seen.description) {
            (true, Some(description)) => description.committed_index,
            _ => None,
        }
        .ok_or(NotReady::LeaderSilent(leader))?;
        let applied = metrics.last_applied.map_or(0, |log_id| log_id.index);
        match applied.saturating_add(self.lag) >= committed {
            true => Ok(()),
            false => Err(NotReady::Behind {
                applied,
                committed,
                lag: self.lag,
            }),
        }
    }

    /// The leader as Seata clients are told of it.
    pub fn announcer(&self) -> &Announcer {
        &self.announcer
    }

    /// Takes the one-change-at-a-time lock, on the leader, outside a joint configuration.
    async fn begin_change(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, RaftMetrics), MembershipError> {
        let change = self
            .changing
            .try_lock()
            .map_err(|_| MembershipError::Busy)?;
        let metrics = self.metrics();
        if metrics.state != ServerState::Leader {
            return Err(self.not_leader(&metrics, metrics.current_leader).await);
        }
        if metrics
            .membership_config
            .membership()
            .get_joint_config()
            .len()
            > 1
        {
            return Err(MembershipError::Busy);
        }
        Ok((change, metrics))
    }

    async fn not_leader(&self, metrics: &RaftMetrics, leader: Option<NodeId>) -> MembershipError {
        let address = leader.and_then(|id| {
            let membership = metrics.membership_config.membership();
            membership.get_node(&id).map(|node| (id, node.addr.clone()))
        });
        let leader_admin_address = match address {
            Some((id, address)) => self
                .probe(id, &address, PROBE_TIMEOUT)
                .await
                .description
                .map(|description| description.admin_address),
            None => None,
        };
        MembershipError::NotLeader {
            node: metrics.id,
            leader_id: leader,
            leader_admin_address,
        }
    }

    fn require_caught_up(&self, metrics: &RaftMetrics, id: NodeId) -> Result<(), MembershipError> {
        let matched = match_index(metrics, id);
        let last = metrics.last_log_index.unwrap_or(0);
        match self.caught_up(metrics, matched) {
            true => Ok(()),
            false => Err(MembershipError::NotCaughtUp {
                id,
                matched,
                last,
                lag: self.lag,
            }),
        }
    }

    /// Refuses voters of which fewer than a majority are reachable and caught up.
    fn require_quorum(
        &self,
        metrics: &RaftMetrics,
        seen: &BTreeMap<NodeId, Seen>,
        voters: &BTreeSet<NodeId>,
    ) -> Result<(), MembershipError> {
        let healthy: BTreeSet<NodeId> = voters
            .iter()
            .copied()
            .filter(|id| {
                *id == metrics.id
                    || (seen.get(id).is_some_and(|seen| seen.reachable)
                        && self.caught_up(metrics, match_index(metrics, *id)))
            })
            .collect();
        let needed = voters.len() / 2 + 1;
        match healthy.len() >= needed {
            true => Ok(()),
            false => Err(MembershipError::WouldLoseQuorum {
                voters: voters.clone(),
                healthy,
                needed,
            }),
        }
    }

    fn caught_up(&self, metrics: &RaftMetrics, matched: Option<u64>) -> bool {
        let last = metrics.last_log_index.unwrap_or(0);
        matched.is_some_and(|matched| matched.saturating_add(self.lag) >= last)
    }

    /// Waits, bounded, for a membership write to commit.
    async fn committed(
        &self,
        write: impl Future<
            Output = Result<
                ClientWriteResponse<TypeConfig>,
                RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
            >,
        >,
    ) -> Result<(), MembershipError> {
        let error = match tokio::time::timeout(CHANGE_TIMEOUT, write).await {
            Err(_) => return Err(MembershipError::Timeout(CHANGE_TIMEOUT)),
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => error,
        };
        Err(match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                self.not_leader(&self.metrics(), forward.leader_id).await
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            )) => MembershipError::Busy,
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::LearnerNotFound(missing),
            )) => MembershipError::UnknownMember(missing.node_id),
            other => MembershipError::Raft(other.to_string()),
        })
    }

    /// Asks every member, at once, how it is.
    async fn probe_all(&self, metrics: &RaftMetrics, timeout: Duration) -> BTreeMap<NodeId, Seen> {
        let members: Vec<(NodeId, String)> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        let probes = members
            .iter()
            .map(|(id, address)| async move { (*id, self.probe(*id, address, timeout).await) });
        join_all(probes).await.into_iter().collect()
    }

    /// Asks member `id` at `address` how it is; remembers the answer.
    async fn probe(&self, id: NodeId, address: &str, timeout: Duration) -> Seen {
        if id == self.node.id {
            return Seen {
                description: Some(describe(&self.node.raft, &self.advertised)),
                reachable: true,
            };
        }
        let answer = match self.peers.client(address) {
            Ok(mut client) => {
                tokio::time::timeout(timeout, client.describe(DescribeRequest {})).await
            }
            Err(_) => return Seen::default(),
        };
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        match answer {
            // An answer from another node at that address is no answer from `id`.
            Ok(Ok(description)) if description.get_ref().id == id => {
                let description = description.into_inner();
                known.insert(
                    id,
                    Known {
                        address: address.to_owned(),
                        description: description.clone(),
                    },
                );
                Seen {
                    description: Some(description),
                    reachable: true,
                }
            }
            _ => Seen {
                description: known
                    .get(&id)
                    .filter(|known| known.address == address)
                    .map(|known| known.description.clone()),
                reachable: false,
            },
        }
    }

    fn view(&self, metrics: &RaftMetrics, seen: &BTreeMap<NodeId, Seen>) -> ClusterStatus {
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let description = |id: &NodeId| seen.get(id).and_then(|seen| seen.description.as_ref());
        let leader = metrics.current_leader.and_then(|id| description(&id));
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = match_index(metrics, *id);
                let role = match (metrics.current_leader == Some(*id), voters.contains(id)) {
                    (true, _) => Role::Leader,
                    (false, true) => Role::Follower,
                    (false, false) => Role::Learner,
                };
                MemberStatus {
                    id: *id,
                    address: node.addr.clone(),
                    admin_address: description(id).map(|d| d.admin_address.clone()),
                    seata_address: description(id).map(|d| d.seata_address.clone()),
                    version: description(id).map(|d| d.version.clone()),
                    seata_version: description(id).map(|d| d.seata_version.clone()),
                    role,
                    match_index: matched,
                    caught_up: metrics
                        .replication
                        .is_some()
                        .then(|| self.caught_up(metrics, matched)),
                    reachable: seen.get(id).is_some_and(|seen| seen.reachable),
                }
            })
            .collect();
        ClusterStatus {
            node_id: metrics.id,
            state: match self.node.quorum_lost(metrics) {
                Some(_) => "leader-without-quorum".to_owned(),
                None => format!("{:?}", metrics.state).to_lowercase(),
            },
            fault: self.node.fault().map(|fault| fault.to_string()),
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            leader_admin_address: leader.map(|d| d.admin_address.clone()),
            committed_index: quorum_index(metrics).or(leader.and_then(|d| d.committed_index)),
            applied_index: metrics.last_applied.map(|log_id| log_id.index),
            last_log_index: metrics.last_log_index,
            caught_up_lag: self.lag,
            change_in_progress: self.changing.try_lock().is_err()
                || membership.get_joint_config().len() > 1,
            members,
        }
    }
}

/// Refuses node id 0: openraft takes any u64, but txmesh ids start at 1 (a StatefulSet's pod
/// `-0` is node 1), so a 0 is a caller's mistake, not a member to add.
fn check_node_id(id: NodeId) -> Result<(), MembershipError> {
    match id {
        0 => Err(MembershipError::InvalidNodeId),
        _ => Ok(()),
    }
}

/// On the leader, the last index replicated to `id` (its own last index for itself); None
/// elsewhere, or before anything has been replicated to it.
fn match_index(metrics: &RaftMetrics, id: NodeId) -> Option<u64> {
    let replication = metrics.replication.as_ref()?;
    match id == metrics.id {
        true => metrics.last_log_index,
        false => replication
            .get(&id)
            .and_then(|log_id| log_id.map(|log_id| log_id.index)),
    }
}

/// Keeps this node from campaigning while it exists.
struct PausedElections<'a>(&'a Raft);

impl<'a> PausedElections<'a> {
    fn new(raft: &'a Raft) -> Self {
        raft.runtime_config().elect(false);
        Self(raft)
    }
}

impl Drop for PausedElections<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().elect(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_change_at_a_time() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = CoordinatorConfig {
            data_dir: dir.path().to_path_buf(),
            raft_addr: "127.0.0.1:0".parse().expect("addr"),
            ..CoordinatorConfig::default()
        };
        let node = Node::start(&config).await.expect("starts");
        node.raft
            .wait(Some(Duration::from_secs(10)))
            .state(ServerState::Leader, "leads")
            .await
            .expect("leads");
        let membership = Membership::new(node.clone(), &config);
        let change = membership.changing.lock().await;
        assert_eq!(
            membership.add_learner(2, "127.0.0.1:1").await,
            Err(MembershipError::Busy)
        );
        assert!(membership.status().await.change_in_progress);
        drop(change);
        assert_eq!(membership.promote(1).await, Ok(false), "a voter already");
        assert!(!membership.status().await.change_in_progress);
        node.shutdown().await;
    }
}
