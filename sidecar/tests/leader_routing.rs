//! Leader following over the wire: an in-process sidecar linked to two scripted coordinators
//! that, like txmesh's Raft nodes, both accept registrations but only the leader serves
//! requests. Not-leader answers move a request to the other link without closing any, the
//! sidecar keeps sending to the node that served last, and a change of leader is followed
//! on the links already open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use txmesh_api::participant::Sidecar as App;
use txmesh_seata::message::{GlobalBeginResponse, MergeResultMessage, RegisterResponse, TxResult};
use txmesh_seata::{Dialect, Frame, FrameCodec, FrameType, Message, TransactionExceptionCode};
use txmesh_sidecar::{CoordinatorSource, Sidecar, SidecarConfig};

const BOUND: Duration = Duration::from_secs(20);

/// A scripted coordinator node: registers everyone; answers GlobalBegin with an XID of its
/// own while it leads, with NotRaftLeader otherwise.
struct Node {
    addr: String,
    leading: AtomicBool,
    connections: AtomicUsize,
    begins: AtomicUsize,
}

impl Node {
    async fn start(leading: bool) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let node = Arc::new(Self {
            addr: listener.local_addr().expect("addr").to_string(),
            leading: AtomicBool::new(leading),
            connections: AtomicUsize::new(0),
            begins: AtomicUsize::new(0),
        });
        let serving = node.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                serving.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serving.clone().serve(socket));
            }
        });
        node
    }

    async fn serve(self: Arc<Self>, socket: tokio::net::TcpStream) {
        let mut frames = Framed::new(socket, FrameCodec::new(1 << 20));
        while let Some(Ok(frame)) = frames.next().await {
            let id = frame.request_id;
            let answer = match frame.message(&Dialect::CURRENT) {
                _ if frame.frame_type == FrameType::HeartbeatRequest => Frame::pong(id),
                Ok(Some(Message::MergedWarpMessage(merged))) => {
                    let msgs = merged.msgs.into_iter().map(|m| self.answer(m)).collect();
                    let merged = Message::MergeResultMessage(MergeResultMessage { msgs });
                    Frame::response(id, merged)
                }
                Ok(Some(message)) => Frame::response(id, self.answer(message)),
                _ => continue,
            };
            if frames.send(answer).await.is_err() {
                return;
            }
        }
    }

    fn answer(&self, request: Message) -> Message {
        match request {
            Message::RegisterTmRequest(_) => {
                Message::RegisterTmResponse(RegisterResponse::new(true, "2.5.0"))
            }
            Message::RegisterRmRequest(_) => {
                Message::RegisterRmResponse(RegisterResponse::new(true, "2.5.0"))
            }
            Message::GlobalBeginRequest(_) => {
                let n = self.begins.fetch_add(1, Ordering::SeqCst);
                Message::GlobalBeginResponse(match self.leading.load(Ordering::SeqCst) {
                    true => GlobalBeginResponse {
                        result: TxResult::success(),
                        xid: format!("{}:{n}", self.addr),
                        extra_data: String::new(),
                    },
                    false => GlobalBeginResponse {
                        result: TxResult::failure(
                            TransactionExceptionCode::NotRaftLeader,
                            "not the leader",
                        ),
                        xid: String::new(),
                        extra_data: String::new(),
                    },
                })
            }
            other => panic!("not scripted: {other:?}"),
        }
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.connections.load(Ordering::SeqCst),
            self.begins.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_leader_over_links_that_stay_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (Node::start(false).await, Node::start(true).await);
    let config = SidecarConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        coordinators: CoordinatorSource::Static(vec![a.addr.clone(), b.addr.clone()]),
        data_dir: dir.path().to_path_buf(),
        shutdown_grace: Duration::ZERO,
        ..SidecarConfig::default()
    };
    let sidecar = Sidecar::start(config).await.expect("the sidecar starts");
    assert!(sidecar.wait_ready(BOUND).await, "registered upstream");
    // Both links register: the follower accepts too.
    let both = async {
        while a.counts().0 == 0 || b.counts().0 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(BOUND, both)
        .await
        .expect("both linked");
    let app = App::new(format!("http://{}", sidecar.grpc_addr())).expect("endpoint");
    let begin = || async {
        tokio::time::timeout(BOUND, app.begin("transfer", Duration::from_secs(60)))
            .await
            .expect("answered in time")
            .expect("begun")
    };

    assert!(begin().await.starts_with(&b.addr), "the leader began it");
    let a_refused = a.counts().1;
    for _ in 0..5 {
        assert!(begin().await.starts_with(&b.addr), "the leader began it");
    }
    let b_before = b.counts();
    assert_eq!(
        a.counts().1,
        a_refused,
        "once the leader is known, begins go to it"
    );
    assert_eq!(b_before.1, 6);

    a.leading.store(true, Ordering::SeqCst);
    b.leading.store(false, Ordering::SeqCst);
    for _ in 0..5 {
        assert!(
            begin().await.starts_with(&a.addr),
            "the new leader began it"
        );
    }
    assert_eq!(b.counts().1, b_before.1 + 1, "one refusal moves everything");
    assert_eq!(
        (a.counts().0, b.counts().0),
        (1, 1),
        "no link was closed and reopened"
    );
    sidecar.stop().await;
}
