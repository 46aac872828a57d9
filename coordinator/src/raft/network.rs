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

/// An unreachable peer makes openraft back off; anything else is a network error.
fn transport_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, BasicNode, E> {
    match is_unreachable(&status) {
        true => RPCError::Unreachable(Unreachable::new(&AnyError::error(status.message()))),
        false => RPCError::Network(NetworkError::new(&status)),
    }
}

/// Whether the call failed to reach the peer at all: unavailable, or a broken connection
/// (reset, closed, refused: tonic reports those as `Unknown` or `Cancelled` with a transport
/// error inside). openraft retries a network error at once but backs off from an unreachable
/// peer, so a cut-off leader does not spin through connection attempts. A late answer is not
/// that: a follower busy with a large append answers after the heartbeat-long deadline, and
/// backing it off for 500 ms would stall every commit that needs it.
fn is_unreachable(status: &tonic::Status) -> bool {
    if is_late(status) {
        return false;
    }
    let transport = std::error::Error::source(status)
        .is_some_and(|source| source.is::<tonic::transport::Error>());
    transport
        || matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Cancelled
        )
}

/// Whether the call ran out of time: the peer's deadline, or tonic's own client-side one
/// (which it reports as `Cancelled` with "Timeout expired").
fn is_late(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = error.source();
    }
    status.code() == tonic::Code::DeadlineExceeded
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
        let reply = reply.map_err(|status| match is_unreachable(&status) {
            true => {
                StreamingError::Unreachable(Unreachable::new(&AnyError::error(status.message())))
            }
            false => StreamingError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            decode(&reply.into_inner().data)?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A peer port that hands each connection to `behave`.
    async fn peer<F, Fut>(behave: F) -> String
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(behave(stream));
            }
        });
        format!("http://{addr}")
    }

    /// A peer port that drops each connection as a partition does: at once, or with a reset
    /// once the request has arrived.
    async fn breaking_peer(reset: bool) -> String {
        peer(move |mut stream| async move {
            if reset {
                // The preface comes first, the request right after it: reset once both are in.
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let more = stream.read(&mut buffer);
                let _ = tokio::time::timeout(Duration::from_millis(50), more).await;
                let _ = stream.set_zero_linger();
            }
            drop(stream);
        })
        .await
    }

    /// A peer port that reads each connection but never answers: a peer too busy to answer
    /// in time.
    async fn silent_peer() -> String {
        peer(|mut stream| async move {
            let mut buffer = [0u8; 4096];
            while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        })
        .await
    }

    #[tokio::test]
    async fn a_late_answer_is_not_an_unreachable_peer() {
        let channel = Endpoint::from_shared(silent_peer().await)
            .expect("uri")
            .connect_lazy();
        let mut request = tonic::Request::new(RaftPayload { data: Vec::new() });
        request.set_timeout(Duration::from_millis(50));
        let late = RaftClient::new(channel)
            .vote(request)
            .await
            .expect_err("no answer in time");
        assert!(is_late(&late), "{late:?}");
        assert!(!is_unreachable(&late), "{late:?}");
    }

    async fn vote_status(reset: bool) -> tonic::Status {
        let channel = Endpoint::from_shared(breaking_peer(reset).await)
            .expect("uri")
            .connect_lazy();
        let request = tonic::Request::new(RaftPayload { data: Vec::new() });
        RaftClient::new(channel)
            .vote(request)
            .await
            .expect_err("the connection breaks")
    }

    #[tokio::test]
    async fn a_broken_connection_is_unreachable_and_a_refusal_by_the_peer_is_not() {
        let closed = vote_status(false).await;
        assert_eq!(closed.code(), tonic::Code::Cancelled, "{closed:?}");
        assert!(is_unreachable(&closed));
        // A reset comes back as Unknown, with the transport error inside.
        let reset = vote_status(true).await;
        assert_eq!(reset.code(), tonic::Code::Unknown, "{reset:?}");
        assert!(is_unreachable(&reset), "{reset:?}");
        assert!(is_unreachable(&tonic::Status::unavailable("down")));
        assert!(!is_unreachable(&tonic::Status::deadline_exceeded("slow")));
        assert!(!is_unreachable(&tonic::Status::internal("the peer failed")));
        assert!(!is_unreachable(&tonic::Status::unknown(
            "the peer's own error"
        )));
    }
}
