//! An async Seata client connection: registration, request/response correlation with
//! per-request timeouts, heartbeats when write-idle, optional merged batching, and a handler
//! for the requests the server initiates. Reconnecting is the owner's job: [`SeataClient::closed`]
//! tells it promptly when the connection is gone.

mod handler;
mod pending;
mod reader;
mod writer;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::{TcpStream, lookup_host};
use tokio::sync::{mpsc, oneshot, watch};

pub use handler::{NoResources, ServerRequestHandler};

use crate::dialect::{Dialect, ExceptionCodeNumbering, SdkVersion};
use crate::error::{BodyError, EncodeError};
use crate::frame::{DEFAULT_MAX_FRAME_LEN, Frame};
use crate::message::{Message, RegisterRequest, RegisterResponse, RegisterRmRequest};
use pending::Pending;

/// Merging of concurrent requests into MergedWarpMessage frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Flush as soon as this many requests wait.
    pub max_messages: usize,
    /// Flush at the latest this long after the first waiting request.
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_messages: 32,
            max_wait: Duration::from_millis(1),
        }
    }
}

/// How a client connection behaves; the defaults are Seata's.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Application id sent at registration.
    pub application_id: String,
    /// Transaction service group ("vgroup") sent at registration.
    pub transaction_service_group: String,
    /// SDK version advertised at registration. At least 2.3.0 tells the server this client
    /// takes one answer per merged sub-request, and the 2.x exception-code numbering.
    pub sdk_version: String,
    /// How long to wait for the TCP connection.
    pub connect_timeout: Duration,
    /// How long a request waits for its answer (Java's TM default is 30 s).
    pub request_timeout: Duration,
    /// Send a ping after this long without writing (Java: 5 s).
    pub heartbeat_interval: Duration,
    /// Give the connection up after this long without reading anything (Java: 15 s).
    pub read_idle_timeout: Duration,
    /// Merge concurrent transaction requests; `None` sends each on its own.
    pub batch: Option<BatchConfig>,
    /// Longest frame accepted or sent.
    pub max_frame_len: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            application_id: "txmesh".into(),
            transaction_service_group: "default_tx_group".into(),
            sdk_version: "2.5.0".into(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            read_idle_timeout: Duration::from_secs(15),
            batch: None,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The server closed the socket.
    PeerClosed,
    /// Nothing was read for this long.
    ReadIdle(Duration),
    /// The socket failed.
    Io(String),
    /// The server sent bytes that are not Seata frames.
    Framing(String),
    /// The owner closed it.
    Closed,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("the server closed the connection"),
            CloseReason::ReadIdle(d) => write!(f, "nothing received for {d:?}"),
            CloseReason::Io(e) => write!(f, "i/o error: {e}"),
            CloseReason::Framing(e) => write!(f, "protocol error: {e}"),
            CloseReason::Closed => f.write_str("closed by its owner"),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address tried.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// No answer within the timeout; the request may or may not have been executed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection ended before the answer came; the request may or may not have been executed.
    #[error("connection lost: {0}")]
    ConnectionClosed(CloseReason),
    /// The request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
    /// The answer could not be decoded.
    #[error("undecodable answer: {0}")]
    Body(#[from] BodyError),
    /// The answer is of the wrong type.
    #[error("expected {expected}, got {got}")]
    UnexpectedAnswer {
        /// The answer type expected.
        expected: &'static str,
        /// The answer type received.
        got: &'static str,
    },
    /// The server refused the registration.
    #[error("registration refused by the server{}", if .0.is_empty() { String::new() } else { format!(": {}", .0) })]
    RegistrationRefused(String),
}

impl ClientError {
    /// Whether trying again (possibly on another connection) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Timeout(_)
                | ClientError::ConnectionClosed(_)
        )
    }
}

/// What the writer task is asked to send.
pub(crate) enum Outbound {
    /// An encoded frame, written as is.
    Frame(Bytes),
    /// A request that may be merged with others.
    Batchable { id: i32, message: Message },
}

/// State shared by the handles and the connection's tasks.
pub(crate) struct Shared {
    config: ClientConfig,
    next_id: AtomicI32,
    /// MergedWarpMessage frames written, and the requests they carried.
    merged_frames: AtomicU64,
    merged_requests: AtomicU64,
    pending: Pending,
    dialect: RwLock<Dialect>,
    closed: watch::Sender<Option<CloseReason>>,
}

impl Shared {
    /// Request ids are positive and wrap, as Java draws them.
    fn next_id(&self) -> i32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
            if id != 0 {
                return id;
            }
        }
    }

    fn dialect(&self) -> Dialect {
        *self
            .dialect
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close_reason(&self) -> Option<CloseReason> {
        self.closed.borrow().clone()
    }

    /// Marks the connection dead (first reason wins) and fails every waiting request.
    pub(crate) fn close(&self, reason: CloseReason) {
        let first = self.closed.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason.clone());
            true
        });
        if first {
            match &reason {
                CloseReason::Closed => tracing::debug!("seata connection closed"),
                other => tracing::warn!(reason = %other, "seata connection lost"),
            }
        }
        let reason = self.close_reason().unwrap_or(reason);
        self.pending
            .fail_everything(|| ClientError::ConnectionClosed(reason.clone()));
    }

    fn encode(&self, frame: &Frame) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(128);
        frame.encode(&self.dialect(), self.config.max_frame_len, &mut buf)?;
        Ok(buf.freeze())
    }
}

/// One connection to a Seata server. Clones share the connection; when the last clone is
/// dropped the connection closes.
#[derive(Clone)]
pub struct SeataClient {
    shared: Arc<Shared>,
    outbound: mpsc::Sender<Outbound>,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
}

impl fmt::Debug for SeataClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeataClient")
            .field("peer", &self.peer_addr)
            .field("closed", &self.close_reason())
            .finish()
    }
}

/// Capacity of the queue in front of the writer: enough to absorb bursts, small enough that
/// a stalled socket pushes back on callers.
const OUTBOUND_QUEUE: usize = 1024;

impl SeataClient {
    /// Connects to `addr` (`host:port`) and starts the connection's tasks. Register with
    /// [`SeataClient::register_tm`] / [`SeataClient::register_rm`] before other requests.
    pub async fn connect<H: ServerRequestHandler>(
        addr: &str,
        config: ClientConfig,
        handler: Arc<H>,
    ) -> Result<Self, ClientError> {
        let failed = |reason: String| ClientError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let stream = tokio::time::timeout(config.connect_timeout, Self::open(addr))
            .await
            .map_err(|_| failed(format!("timed out after {:?}", config.connect_timeout)))?
            .map_err(|e| failed(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| failed(e.to_string()))?;
        let local_addr = stream.local_addr().map_err(|e| failed(e.to_string()))?;
        let peer_addr = stream.peer_addr().map_err(|e| failed(e.to_string()))?;
        let (read_half, write_half) = stream.into_split();

        let (closed, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            next_id: AtomicI32::new(1),
            merged_frames: AtomicU64::new(0),
            merged_requests: AtomicU64::new(0),
            pending: Pending::default(),
            dialect: RwLock::new(Dialect::CURRENT),
            closed,
            config,
        });
        let (outbound, queue) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(writer::run(write_half, queue, shared.clone()));
        tokio::spawn(reader::run(
            read_half,
            shared.clone(),
            outbound.downgrade(),
            handler,
        ));
        Ok(Self {
            shared,
            outbound,
            local_addr,
            peer_addr,
        })
    }

    async fn open(addr: &str) -> std::io::Result<TcpStream> {
        let mut last_error = None;
        for candidate in lookup_host(addr).await? {
            match TcpStream::connect(candidate).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("the name resolved to no address")))
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Why the connection ended, or `None` while it is up.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.close_reason()
    }

    /// How many MergedWarpMessage frames this connection has written, and how many requests
    /// they carried (their ratio is the mean batch size).
    pub fn merged(&self) -> (u64, u64) {
        (
            self.shared.merged_frames.load(Ordering::Relaxed),
            self.shared.merged_requests.load(Ordering::Relaxed),
        )
    }

    /// Resolves as soon as the connection is gone, with the reason.
    pub async fn closed(&self) -> CloseReason {
        let mut watch = self.shared.closed.subscribe();
        match watch.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(CloseReason::Closed),
            Err(_) => CloseReason::Closed,
        }
    }

    /// Closes the connection; waiting requests fail with [`ClientError::ConnectionClosed`].
    pub fn close(&self) {
        self.shared.close(CloseReason::Closed);
    }

    /// Registers this connection as a transaction manager.
    pub async fn register_tm(&self) -> Result<RegisterResponse, ClientError> {
        let config = &self.shared.config;
        let mut identity = self.identity();
        identity.extra_data = format!(
            "vgroup={}\nip={}\n",
            config.transaction_service_group,
            self.local_addr.ip()
        );
        let answer = self.call(Message::RegisterTmRequest(identity)).await?;
        match answer {
            Message::RegisterTmResponse(response) => self.accept_registration(response),
            other => Err(unexpected("RegisterTMResponse", &other)),
        }
    }

    /// Registers this connection as a resource manager for `resource_ids` (may be repeated to
    /// add resources).
    pub async fn register_rm(
        &self,
        resource_ids: &[String],
    ) -> Result<RegisterResponse, ClientError> {
        let request = RegisterRmRequest {
            identity: self.identity(),
            resource_ids: resource_ids.join(","),
        };
        match self.call(Message::RegisterRmRequest(request)).await? {
            Message::RegisterRmResponse(response) => self.accept_registration(response),
            other => Err(unexpected("RegisterRMResponse", &other)),
        }
    }

    fn identity(&self) -> RegisterRequest {
        let config = &self.shared.config;
        RegisterRequest {
            version: config.sdk_version.clone(),
            application_id: config.application_id.clone(),
            transaction_service_group: config.transaction_service_group.clone(),
            extra_data: String::new(),
        }
    }

    /// A Java server answers in its own exception-code numbering, which its version tells.
    fn accept_registration(
        &self,
        response: RegisterResponse,
    ) -> Result<RegisterResponse, ClientError> {
        if !response.identified {
            return Err(ClientError::RegistrationRefused(response.msg));
        }
        if let Some(version) = SdkVersion::parse(&response.version) {
            let mut dialect = self
                .shared
                .dialect
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            dialect.exception_codes = ExceptionCodeNumbering::for_java(version);
        }
        Ok(response)
    }

    /// Sends a request and waits for its answer for the configured request timeout.
    pub async fn call(&self, message: Message) -> Result<Message, ClientError> {
        self.call_with_timeout(message, self.shared.config.request_timeout)
            .await
    }

    /// Sends a request and waits at most `timeout` for its answer.
    pub async fn call_with_timeout(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let id = self.shared.next_id();
        let (reply, answer) = oneshot::channel();
        let guard = PendingGuard {
            shared: &self.shared,
            id,
        };
        self.shared.pending.insert(id, reply);
        // Checked after inserting: a close that drained the table before our insert has
        // already published its reason.
        if let Some(reason) = self.shared.close_reason() {
            return Err(ClientError::ConnectionClosed(reason));
        }
        let outbound = if self.shared.config.batch.is_some() && is_mergeable(&message) {
            Outbound::Batchable { id, message }
        } else {
            Outbound::Frame(self.shared.encode(&Frame::request(id, message))?)
        };
        self.send(outbound).await?;
        let result = match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(ClientError::Timeout(timeout)),
        };
        drop(guard);
        result
    }

    async fn send(&self, outbound: Outbound) -> Result<(), ClientError> {
        self.outbound
            .send(outbound)
            .await
            .map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> ClientError {
        ClientError::ConnectionClosed(self.close_reason().unwrap_or(CloseReason::Closed))
    }
}

/// Forgets a request whose caller stopped waiting (timeout or cancellation), so a late
/// answer finds no one and the table does not grow.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.remove(self.id);
    }
}

/// The requests a Java client would merge: every transaction request to the coordinator.
fn is_mergeable(message: &Message) -> bool {
    matches!(message.type_code(), 1 | 7 | 9 | 11 | 13 | 15 | 17 | 21)
}

fn unexpected(expected: &'static str, got: &Message) -> ClientError {
    ClientError::UnexpectedAnswer {
        expected,
        got: got.type_name(),
    }
}
