//! The client against a small in-test Seata server on loopback: registration, heartbeats,
//! correlation of out-of-order answers, timeouts, merged batches answered in each of the three
//! styles, server-initiated requests, and prompt reporting of a dead connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use txmesh_seata::client::{
    BatchConfig, ClientConfig, ClientError, CloseReason, NoResources, SeataClient,
    ServerRequestHandler,
};
use txmesh_seata::message::*;
use txmesh_seata::*;

/// Upper bound for anything a test waits for; tests finish far sooner when they pass.
const BOUND: Duration = Duration::from_secs(5);

struct Server {
    listener: TcpListener,
}

struct Conn {
    framed: Framed<TcpStream, FrameCodec>,
}

impl Server {
    async fn start() -> Self {
        Self {
            listener: TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback"),
        }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().expect("local addr").to_string()
    }

    async fn accept(&self) -> Conn {
        let (stream, _) = bounded(self.listener.accept()).await.expect("accept");
        Conn {
            framed: Framed::new(stream, FrameCodec::default()),
        }
    }
}

impl Conn {
    async fn recv(&mut self) -> RawFrame {
        bounded(self.framed.next())
            .await
            .expect("a frame")
            .expect("valid frame")
    }

    /// The next frame that is not a ping (pings may come at any time).
    async fn recv_request(&mut self) -> (i32, Message) {
        loop {
            let frame = self.recv().await;
            if frame.frame_type == FrameType::HeartbeatRequest {
                continue;
            }
            let message = frame
                .message(&Dialect::CURRENT)
                .expect("decodes")
                .expect("has a body");
            return (frame.request_id, message);
        }
    }

    async fn send(&mut self, frame: Frame) {
        bounded(self.framed.send(frame)).await.expect("send");
    }

    async fn answer(&mut self, id: i32, message: Message) {
        self.send(Frame::response(id, message)).await;
    }
}

async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("test step took too long")
}

fn status_request(xid: &str) -> Message {
    Message::GlobalStatusRequest(GlobalEndRequest {
        xid: xid.into(),
        extra_data: String::new(),
    })
}

fn status_answer(status: GlobalStatus) -> Message {
    Message::GlobalStatusResponse(GlobalEndResponse {
        result: TxResult::success(),
        global_status: status,
    })
}

/// The status each test xid maps to, so every answer is tied to its request.
fn status_for(xid: &str) -> GlobalStatus {
    match xid {
        "a" => GlobalStatus::Begin,
        "b" => GlobalStatus::Committed,
        "c" => GlobalStatus::Rollbacked,
        _ => GlobalStatus::Finished,
    }
}

fn xid_of(message: &Message) -> String {
    match message {
        Message::GlobalStatusRequest(r) => r.xid.clone(),
        other => panic!("expected a GlobalStatusRequest, got {}", other.type_name()),
    }
}

fn status_of(answer: Result<Message, ClientError>) -> GlobalStatus {
    match answer.expect("answered") {
        Message::GlobalStatusResponse(r) => r.global_status,
        other => panic!("expected a GlobalStatusResponse, got {}", other.type_name()),
    }
}

async fn connect(server: &Server, config: ClientConfig) -> (SeataClient, Conn) {
    let client = SeataClient::connect(&server.addr(), config, Arc::new(NoResources))
        .await
        .expect("connects");
    let conn = server.accept().await;
    (client, conn)
}

fn batching(max_messages: usize) -> ClientConfig {
    ClientConfig {
        batch: Some(BatchConfig {
            max_messages,
            max_wait: Duration::from_secs(2),
        }),
        ..ClientConfig::default()
    }
}

/// Starts one status call per xid, concurrently.
fn spawn_status_calls(
    client: &SeataClient,
    xids: &[&str],
) -> Vec<tokio::task::JoinHandle<Result<Message, ClientError>>> {
    xids.iter()
        .map(|xid| {
            let client = client.clone();
            let request = status_request(xid);
            tokio::spawn(async move { client.call(request).await })
        })
        .collect()
}

async fn assert_statuses(
    calls: Vec<tokio::task::JoinHandle<Result<Message, ClientError>>>,
    xids: &[&str],
) {
    for (call, xid) in calls.into_iter().zip(xids) {
        assert_eq!(
            status_of(bounded(call).await.expect("task")),
            status_for(xid),
            "xid {xid}"
        );
    }
}

#[tokio::test]
async fn registers_as_tm_with_version_and_extra_data() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, ClientConfig::default()).await;
    let registration = tokio::spawn({
        let client = client.clone();
        async move { client.register_tm().await }
    });
    let frame = conn.recv().await;
    assert_eq!(frame.frame_type, FrameType::Request);
    assert_eq!(frame.version, 1, "clients send protocol version 1");
    let Some(Message::RegisterTmRequest(request)) =
        frame.message(&Dialect::CURRENT).expect("decodes")
    else {
        panic!("expected RegisterTMRequest first");
    };
    assert_eq!(request.version, "2.5.0");
    assert_eq!(request.extra("vgroup"), Some("default_tx_group"));
    assert_eq!(request.extra("ip"), Some("127.0.0.1"));
    conn.answer(
        frame.request_id,
        Message::RegisterTmResponse(RegisterResponse::new(true, "2.7.0")),
    )
    .await;
    let response = bounded(registration)
        .await
        .expect("task")
        .expect("registered");
    assert!(response.identified);
}

#[tokio::test]
async fn a_refused_registration_is_an_error() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, ClientConfig::default()).await;
    let registration = tokio::spawn({
        let client = client.clone();
        async move { client.register_rm(&["jdbc:mysql://db".to_owned()]).await }
    });
    let (id, request) = conn.recv_request().await;
    let Message::RegisterRmRequest(request) = request else {
        panic!("expected RegisterRMRequest")
    };
    assert_eq!(request.resources().collect::<Vec<_>>(), ["jdbc:mysql://db"]);
    conn.answer(
        id,
        Message::RegisterRmResponse(RegisterResponse::new(false, "2.2.0")),
    )
    .await;
    let result = bounded(registration).await.expect("task");
    assert!(
        matches!(result, Err(ClientError::RegistrationRefused(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn pings_when_write_idle() {
    let server = Server::start().await;
    let config = ClientConfig {
        heartbeat_interval: Duration::from_millis(50),
        ..ClientConfig::default()
    };
    let (client, mut conn) = connect(&server, config).await;
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let frame = conn.recv().await;
        assert_eq!(frame.frame_type, FrameType::HeartbeatRequest);
        assert!(frame.body.is_empty(), "pings carry no body");
        conn.send(Frame::pong(frame.request_id)).await;
        ids.push(frame.request_id);
    }
    assert!(
        ids.windows(2).all(|w| w[0] != w[1]),
        "each ping has its own id: {ids:?}"
    );
    assert_eq!(
        client.close_reason(),
        None,
        "answered pings keep the connection up"
    );
}

#[tokio::test]
async fn answers_out_of_order_reach_their_requests() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, ClientConfig::default()).await;
    let xids = ["a", "b", "c"];
    let calls = spawn_status_calls(&client, &xids);
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(conn.recv_request().await);
    }
    for (id, request) in received.into_iter().rev() {
        conn.answer(id, status_answer(status_for(&xid_of(&request))))
            .await;
    }
    assert_statuses(calls, &xids).await;
}

#[tokio::test]
async fn a_request_times_out_and_its_late_answer_is_ignored() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, ClientConfig::default()).await;
    let first = client
        .call_with_timeout(status_request("a"), Duration::from_millis(100))
        .await;
    assert!(matches!(first, Err(ClientError::Timeout(_))), "{first:?}");
    let (late_id, _) = conn.recv_request().await;

    let second = tokio::spawn({
        let client = client.clone();
        async move { client.call(status_request("b")).await }
    });
    let (id, request) = conn.recv_request().await;
    assert_ne!(id, late_id);
    conn.answer(late_id, status_answer(GlobalStatus::Begin))
        .await;
    conn.answer(id, status_answer(status_for(&xid_of(&request))))
        .await;
    assert_eq!(
        status_of(bounded(second).await.expect("task")),
        GlobalStatus::Committed
    );
}

/// Receives one MergedWarpMessage and returns its outer id, sub-requests and their ids.
async fn recv_merged(conn: &mut Conn) -> (i32, Vec<Message>, Vec<i32>) {
    let frame = loop {
        let frame = conn.recv().await;
        if frame.frame_type != FrameType::HeartbeatRequest {
            break frame;
        }
    };
    assert_eq!(
        frame.frame_type,
        FrameType::Oneway,
        "merged frames are flagged oneway, as Java sends them"
    );
    let Some(Message::MergedWarpMessage(merged)) =
        frame.message(&Dialect::CURRENT).expect("decodes")
    else {
        panic!("expected a MergedWarpMessage");
    };
    let ids = merged.msg_ids.expect("msgIds are sent");
    assert_eq!(ids.len(), merged.msgs.len());
    (frame.request_id, merged.msgs, ids)
}

#[tokio::test]
async fn a_merged_batch_answered_by_a_merge_result() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, batching(3)).await;
    let xids = ["a", "b", "c"];
    let calls = spawn_status_calls(&client, &xids);
    let (outer, msgs, ids) = recv_merged(&mut conn).await;
    assert!(!ids.contains(&outer));
    let answers = msgs
        .iter()
        .map(|m| status_answer(status_for(&xid_of(m))))
        .collect();
    conn.answer(
        outer,
        Message::MergeResultMessage(MergeResultMessage { msgs: answers }),
    )
    .await;
    assert_statuses(calls, &xids).await;
}

#[tokio::test]
async fn a_merged_batch_answered_by_batch_results_in_parts() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, batching(3)).await;
    let xids = ["a", "b", "c"];
    let calls = spawn_status_calls(&client, &xids);
    let (outer, msgs, ids) = recv_merged(&mut conn).await;
    let mut answered: Vec<(i32, Message)> = ids
        .into_iter()
        .zip(&msgs)
        .map(|(id, m)| (id, status_answer(status_for(&xid_of(m)))))
        .collect();
    answered.reverse();
    let rest = answered.split_off(1);
    for part in [answered, rest] {
        let (msg_ids, result_messages) = part.into_iter().unzip();
        conn.answer(
            outer,
            Message::BatchResultMessage(BatchResultMessage {
                result_messages,
                msg_ids,
            }),
        )
        .await;
    }
    assert_statuses(calls, &xids).await;
}

#[tokio::test]
async fn a_merged_batch_answered_one_by_one() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, batching(3)).await;
    let xids = ["a", "b", "c"];
    let calls = spawn_status_calls(&client, &xids);
    let (_, msgs, ids) = recv_merged(&mut conn).await;
    for (id, message) in ids.into_iter().zip(&msgs) {
        conn.answer(id, status_answer(status_for(&xid_of(message))))
            .await;
    }
    assert_statuses(calls, &xids).await;
}

#[tokio::test]
async fn a_lone_batchable_request_is_sent_unmerged_after_the_wait() {
    let server = Server::start().await;
    let config = ClientConfig {
        batch: Some(BatchConfig {
            max_messages: 16,
            max_wait: Duration::from_millis(1),
        }),
        ..ClientConfig::default()
    };
    let (client, mut conn) = connect(&server, config).await;
    let calls = spawn_status_calls(&client, &["b"]);
    let frame = conn.recv().await;
    assert_eq!(frame.frame_type, FrameType::Request);
    let message = frame
        .message(&Dialect::CURRENT)
        .expect("decodes")
        .expect("body");
    conn.answer(
        frame.request_id,
        status_answer(status_for(&xid_of(&message))),
    )
    .await;
    assert_statuses(calls, &["b"]).await;
}

/// Records what the server asked and commits everything.
struct Recorder {
    seen: mpsc::UnboundedSender<Message>,
}

impl ServerRequestHandler for Recorder {
    async fn branch_commit(&self, request: BranchEndRequest) -> BranchEndResponse {
        let _ = self
            .seen
            .send(Message::BranchCommitRequest(request.clone()));
        BranchEndResponse {
            result: TxResult::success(),
            xid: request.xid,
            branch_id: request.branch_id,
            branch_status: BranchStatus::PhaseTwoCommitted,
        }
    }

    async fn branch_rollback(&self, request: BranchEndRequest) -> BranchEndResponse {
        let _ = self
            .seen
            .send(Message::BranchRollbackRequest(request.clone()));
        BranchEndResponse {
            result: TxResult::success(),
            xid: request.xid,
            branch_id: request.branch_id,
            branch_status: BranchStatus::PhaseTwoRollbacked,
        }
    }

    async fn undo_log_delete(&self, request: UndoLogDeleteRequest) {
        let _ = self.seen.send(Message::UndoLogDeleteRequest(request));
    }
}

#[tokio::test]
async fn server_requests_reach_the_handler_and_are_answered_with_their_id() {
    let server = Server::start().await;
    let (seen, mut handled) = mpsc::unbounded_channel();
    let client = SeataClient::connect(
        &server.addr(),
        ClientConfig::default(),
        Arc::new(Recorder { seen }),
    )
    .await
    .expect("connects");
    let mut conn = server.accept().await;
    let commit = BranchEndRequest {
        xid: "10.0.0.1:8091:7".into(),
        branch_id: 42,
        branch_type: BranchType::Tcc,
        resource_id: "transfer".into(),
        application_data: "{\"amount\":5}".into(),
    };
    let undo = UndoLogDeleteRequest {
        branch_type: BranchType::At,
        resource_id: "db".into(),
        save_days: 7,
    };
    conn.send(Frame::oneway(
        5,
        Message::UndoLogDeleteRequest(undo.clone()),
    ))
    .await;
    conn.send(Frame::request(
        77,
        Message::BranchCommitRequest(commit.clone()),
    ))
    .await;

    let answer = loop {
        let frame = conn.recv().await;
        if frame.frame_type != FrameType::HeartbeatRequest {
            break frame;
        }
    };
    assert_eq!(
        (answer.frame_type, answer.request_id),
        (FrameType::Response, 77)
    );
    let Some(Message::BranchCommitResponse(response)) =
        answer.message(&Dialect::CURRENT).expect("decodes")
    else {
        panic!("expected a BranchCommitResponse");
    };
    assert_eq!(
        (response.branch_id, response.branch_status),
        (42, BranchStatus::PhaseTwoCommitted)
    );

    let mut seen = vec![
        bounded(handled.recv()).await.expect("one"),
        bounded(handled.recv()).await.expect("two"),
    ];
    seen.sort_by_key(Message::type_code);
    assert_eq!(
        seen,
        [
            Message::BranchCommitRequest(commit),
            Message::UndoLogDeleteRequest(undo)
        ]
    );
    drop(client);
}

#[tokio::test]
async fn a_dead_connection_fails_waiting_requests_at_once() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, ClientConfig::default()).await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.call(status_request("a")).await }
    });
    conn.recv_request().await;
    drop(conn);
    let result = bounded(waiting).await.expect("task");
    assert!(
        matches!(
            result,
            Err(ClientError::ConnectionClosed(CloseReason::PeerClosed))
        ),
        "{result:?}"
    );
    assert_eq!(bounded(client.closed()).await, CloseReason::PeerClosed);
    let after = client.call(status_request("b")).await;
    assert!(matches!(&after, Err(e) if e.is_retryable()), "{after:?}");
}

#[tokio::test]
async fn silence_beyond_the_read_idle_timeout_closes_the_connection() {
    let server = Server::start().await;
    let config = ClientConfig {
        read_idle_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let (client, _conn) = connect(&server, config).await;
    assert_eq!(
        bounded(client.closed()).await,
        CloseReason::ReadIdle(Duration::from_millis(200))
    );
}

#[tokio::test]
async fn garbage_from_the_server_is_a_framing_close() {
    let server = Server::start().await;
    let (client, conn) = connect(&server, ClientConfig::default()).await;
    let mut stream = conn.framed.into_inner();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"HTTP/1.1 400 Bad Request\r\n\r\n")
        .await
        .expect("write");
    let reason = bounded(client.closed()).await;
    let CloseReason::Framing(text) = reason else {
        panic!("expected a framing close, got {reason:?}")
    };
    assert!(text.contains("HTTP"), "{text}");
}

#[tokio::test]
async fn dropping_every_handle_closes_the_socket() {
    let server = Server::start().await;
    let (client, mut conn) = connect(&server, ClientConfig::default()).await;
    drop(client);
    assert!(
        bounded(conn.framed.next()).await.is_none(),
        "the server sees end of stream"
    );
}
