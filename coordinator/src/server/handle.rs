//! A handle on one client connection, through which the coordinator sends its own requests
//! (BranchCommit, BranchRollback, UndoLogDelete) and waits for the answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use txmesh_seata::correlation::Correlation;
use txmesh_seata::{BodyError, Dialect, Frame, Message};

/// Why a request to a resource manager got no usable answer. Every case is retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// No live connection serves the resource.
    #[error("no connected resource manager serves {0}")]
    NoConnection(String),
    /// The resource manager did not answer in time (seata-go answers failures with silence).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection closed before the answer came.
    #[error("the connection closed")]
    Closed,
    /// The request could not be encoded for this peer.
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// The answer could not be decoded.
    #[error("undecodable answer: {0}")]
    Undecodable(BodyError),
}

/// What the connection tasks and the handles share.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) outbound: mpsc::Sender<Bytes>,
    pub(crate) correlation: Correlation<DispatchError>,
    pub(crate) dialect: RwLock<Dialect>,
    pub(crate) max_frame_len: usize,
    next_id: AtomicI32,
}

impl Shared {
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        outbound: mpsc::Sender<Bytes>,
        max_frame_len: usize,
    ) -> Self {
        Self {
            id,
            peer,
            outbound,
            correlation: Correlation::default(),
            dialect: RwLock::new(Dialect::CURRENT),
            max_frame_len,
            next_id: AtomicI32::new(1),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        *self
            .dialect
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_dialect(&self, dialect: Dialect) {
        *self
            .dialect
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = dialect;
    }

    /// Encodes a frame in this peer's dialect.
    pub(crate) fn encode(&self, frame: &Frame) -> Result<Bytes, txmesh_seata::EncodeError> {
        let mut buf = BytesMut::with_capacity(128);
        frame.encode(&self.dialect(), self.max_frame_len, &mut buf)?;
        Ok(buf.freeze())
    }

    /// The coordinator's own request ids: positive and wrapping, like Java's.
    fn next_id(&self) -> i32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
            if id != 0 {
                return id;
            }
        }
    }
}

/// A cheap, cloneable handle on one connection.
#[derive(Clone)]
pub struct ConnHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ConnHandle {
    /// The connection's id, unique in this process.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.outbound.is_closed()
    }

    /// Sends a request and waits at most `timeout` for its answer.
    pub async fn request(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, DispatchError> {
        let id = self.shared.next_id();
        let bytes = self
            .shared
            .encode(&Frame::request(id, message))
            .map_err(|e| DispatchError::Encode(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        self.shared.correlation.insert(id, reply);
        if self.shared.outbound.send(bytes).await.is_err() {
            self.shared.correlation.remove(id);
            return Err(DispatchError::Closed);
        }
        let result = tokio::time::timeout(timeout, answer).await;
        self.shared.correlation.remove(id);
        match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(DispatchError::Closed),
            Err(_) => Err(DispatchError::Timeout(timeout)),
        }
    }

    /// Sends a oneway request (UndoLogDelete), which gets no answer.
    pub async fn notify(&self, message: Message) -> Result<(), DispatchError> {
        let frame = Frame::oneway(self.shared.next_id(), message);
        let bytes = self
            .shared
            .encode(&frame)
            .map_err(|e| DispatchError::Encode(e.to_string()))?;
        self.shared
            .outbound
            .send(bytes)
            .await
            .map_err(|_| DispatchError::Closed)
    }
}
