//! Peer transport over tonic gRPC. One lazily connected channel per peer address is shared by
//! every client of that peer (HTTP/2 multiplexes concurrent rounds on it); a dropped
//! connection is re-established, with the peer's DNS name resolved again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, Snapshot, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use txmesh_api::raft::v1::raft_client::RaftClient;
use txmesh_api::raft::v1::{RaftPayload, SnapshotChunk};

use super::{NodeId, TypeConfig};

/// Snapshot data per streamed chunk.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// How long to wait for a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Connects to peers.
#[derive(Debug, Clone, Default)]
pub struct PeerNetwork {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

/// A connection to one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
}

impl PeerNetwork {
    /// A client of the peer at `addr`, on the channel shared with every other caller.
    pub(crate) fn client(&self, addr: &str) -> Result<RaftClient<Channel>, String> {
        self.channel(addr).map(RaftClient::new)
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("invalid peer address {addr:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            client: self.client(&node.addr),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, NetworkError> {
    postcard::to_stdvec(value).map_err(|e| NetworkError::new(&e))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, NetworkError> {
    postcard::from_bytes(bytes).map_err(|e| NetworkError::new(&e))
}

/// An unavailable peer makes openraft back off; anything else is a network error.
fn transport_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, BasicNode, E> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            RPCError::Unreachable(Unreachable::new(&AnyError::error(status.message())))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl PeerClient {
    fn client(&self) -> Result<RaftClient<Channel>, Unreachable> {
        self.client
            .clone()
            .map_err(|reason| Unreachable::new(&AnyError::error(reason)))
    }

    /// One unary round: the request serialized, the peer's `Result` deserialized.
    async fn round<Req, Resp, E, F, Fut>(
        &self,
        rpc: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, tonic::Request<RaftPayload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let client = self.client().map_err(RPCError::Unreachable)?;
        let mut request = tonic::Request::new(RaftPayload {
            data: encode(rpc).map_err(RPCError::Network)?,
        });
        request.set_timeout(option.hard_ttl());
        let reply = call(client, request).await.map_err(transport_error)?;
        let result: Result<Resp, E> =
            decode(&reply.into_inner().data).map_err(RPCError::Network)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.round(&rpc, &option, |mut client, request| async move {
            client.append_entries(request).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.round(&rpc, &option, |mut client, request| async move {
            client.vote(request).await
        })
        .await
    }

    /// Snapshots go whole through [`RaftNetwork::full_snapshot`]; openraft never calls this
    /// chunk-by-chunk variant when that one is provided.
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let reason = AnyError::error("snapshots are streamed whole (full_snapshot)");
        Err(RPCError::Network(NetworkError::new(&reason)))
    }

    /// Streams the snapshot in chunks on one gRPC call: metadata first, then the data in order.
    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let mut client = self.client()?;
        let meta = encode(&(vote, &snapshot.meta))?;
        let data = snapshot.snapshot.into_inner();
        let mut chunks: Vec<SnapshotChunk> = data
            .chunks(SNAPSHOT_CHUNK)
            .map(|piece| SnapshotChunk {
                meta: Vec::new(),
                data: piece.to_vec(),
            })
            .collect();
        match chunks.first_mut() {
            Some(first) => first.meta = meta,
            None => chunks.push(SnapshotChunk {
                meta,
                data: Vec::new(),
            }),
        }
        let reply = tokio::select! {
            reply = client.install_snapshot(stream::iter(chunks)) => reply,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable => {
                StreamingError::Unreachable(Unreachable::new(&AnyError::error(status.message())))
            }
            _ => StreamingError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            decode(&reply.into_inner().data)?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}
