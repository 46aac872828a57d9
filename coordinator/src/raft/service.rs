//! The server side of the peer transport: gRPC calls handed to the local Raft instance, and
//! the two calls the coordinator adds: `Describe` (endpoints and log position) and `Elect`
//! (campaign now, for leadership transfer).

use std::io::Cursor;

use futures_util::StreamExt;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, Snapshot, SnapshotMeta, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status, Streaming};
use txmesh_api::raft::v1::raft_server::Raft as RaftRpc;
use txmesh_api::raft::v1::{
    DescribeRequest, ElectRequest, ElectResponse, NodeDescription, RaftPayload, SnapshotChunk,
};

use super::{Advertised, NodeId, Raft, RaftMetrics, TypeConfig};

/// Serves this node's Raft to its peers.
pub struct RaftService {
    raft: Raft,
    advertised: Advertised,
}

impl RaftService {
    /// A service for `raft`, describing this node with `advertised`.
    pub fn new(raft: Raft, advertised: Advertised) -> Self {
        Self { raft, advertised }
    }
}

/// This node as `Describe` answers: its endpoints and where its log stands.
pub fn describe(raft: &Raft, advertised: &Advertised) -> NodeDescription {
    let metrics = raft.metrics().borrow().clone();
    NodeDescription {
        id: metrics.id,
        admin_address: advertised.admin.clone(),
        seata_address: advertised.seata.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        seata_version: advertised.seata_version.clone(),
        term: metrics.current_term,
        leader_id: metrics.current_leader,
        last_log_index: metrics.last_log_index,
        applied_index: metrics.last_applied.map(|log_id| log_id.index),
        committed_index: quorum_index(&metrics),
    }
}

/// On a leader, the highest index stored on a majority of the voters, which is what is
/// committed once the leader's first entry of its term is. None on any other node. (In a
/// joint configuration the voters of both halves count as one set: an estimate.)
pub fn quorum_index(metrics: &RaftMetrics) -> Option<u64> {
    let replication = metrics.replication.as_ref()?;
    let mut matched: Vec<u64> = metrics
        .membership_config
        .membership()
        .voter_ids()
        .map(|id| match id == metrics.id {
            true => metrics.last_log_index.unwrap_or(0),
            false => replication
                .get(&id)
                .and_then(|log_id| log_id.map(|log_id| log_id.index))
                .unwrap_or(0),
        })
        .collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(matched.len() / 2).copied()
}

/// Why this node will not campaign for the leader that asked, if it will not.
fn elect_refusal(metrics: &RaftMetrics, request: &ElectRequest) -> Option<String> {
    if metrics.current_term != request.term {
        return Some(format!(
            "node {} is in term {}, not {}",
            metrics.id, metrics.current_term, request.term
        ));
    }
    if metrics.current_leader != Some(request.leader_id) {
        return Some(format!(
            "node {} does not follow node {}",
            metrics.id, request.leader_id
        ));
    }
    let voter = metrics
        .membership_config
        .membership()
        .voter_ids()
        .any(|id| id == metrics.id);
    (!voter).then(|| format!("node {} is not a voter", metrics.id))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(bytes)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let data = postcard::to_stdvec(value)
        .map_err(|e| Status::internal(format!("cannot encode the reply: {e}")))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.into_inner().data)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&request.into_inner().data)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftPayload>, Status> {
        let mut chunks = request.into_inner();
        let first = chunks
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote<NodeId>, SnapshotMeta<NodeId, BasicNode>) = decode(&first.meta)?;
        let mut data = first.data;
        while let Some(chunk) = chunks.next().await {
            data.extend_from_slice(&chunk?.data);
        }
        let snapshot = Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        };
        reply(&self.raft.install_full_snapshot(vote, snapshot).await)
    }

    async fn describe(
        &self,
        _request: Request<DescribeRequest>,
    ) -> Result<Response<NodeDescription>, Status> {
        Ok(Response::new(describe(&self.raft, &self.advertised)))
    }

    async fn elect(
        &self,
        request: Request<ElectRequest>,
    ) -> Result<Response<ElectResponse>, Status> {
        let request = request.into_inner();
        let metrics = self.raft.metrics().borrow().clone();
        if let Some(refusal) = elect_refusal(&metrics, &request) {
            tracing::info!(%refusal, "leadership transfer refused");
            return Ok(Response::new(ElectResponse {
                started: false,
                refusal,
            }));
        }
        tracing::info!(
            from = request.leader_id,
            term = request.term,
            "leadership transfer: campaigning"
        );
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|fatal| Status::unavailable(format!("raft has stopped: {fatal}")))?;
        Ok(Response::new(ElectResponse {
            started: true,
            refusal: String::new(),
        }))
    }
}
