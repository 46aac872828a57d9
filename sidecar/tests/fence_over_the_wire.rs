//! The TCC fence seen from both ends: an in-process sidecar between a scripted coordinator
//! (a bare Seata server that sends BranchCommit/BranchRollback when told, as often as told)
//! and an application served through `txmesh_api::participant`. Duplicated deliveries —
//! sequential, concurrent, and after a sidecar restart — reach the application once; a
//! rollback without a try is acknowledged without calling it and blocks a late register.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::Framed;
use txmesh_api::participant::{Answer, Branch, Participant, Sidecar as App, TryError};
use txmesh_api::reason::Reason;
use txmesh_api::v1::{FenceState, GetFenceRequest, PhaseTwoAction};
use txmesh_seata::message::{
    BranchEndRequest, BranchRegisterResponse, MergeResultMessage, RegisterResponse, TxResult,
};
use txmesh_seata::{BranchStatus, BranchType, Dialect, Frame, FrameCodec, FrameType, Message};
use txmesh_sidecar::{CoordinatorSource, Sidecar, SidecarConfig};

const RESOURCE: &str = "accounts";
const XID: &str = "127.0.0.1:8091:1";
const BOUND: Duration = Duration::from_secs(20);

/// Where the scripted coordinator sends its requests: a frame, and where its answer goes.
type Requests = mpsc::Sender<(Frame, oneshot::Sender<Message>)>;

/// A scripted coordinator: registers everyone, numbers branches, and sends phase two on the
/// latest connection that registered the resource.
struct ScriptedTc {
    addr: String,
    rm: watch::Receiver<Option<Requests>>,
    next_id: AtomicI32,
}

impl ScriptedTc {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (rm_tx, rm) = watch::channel(None);
        let rm_tx = Arc::new(rm_tx);
        let branch_ids = Arc::new(AtomicI64::new(10));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, rm_tx.clone(), branch_ids.clone()));
            }
        });
        Self {
            addr,
            rm,
            next_id: AtomicI32::new(1),
        }
    }

    /// Sends a phase-two request and waits for the branch status answered.
    async fn phase_two(&self, rollback: bool, branch_id: i64) -> BranchStatus {
        let request = BranchEndRequest {
            xid: XID.into(),
            branch_id,
            branch_type: BranchType::Tcc,
            resource_id: RESOURCE.into(),
            application_data: "{}".into(),
        };
        let message = match rollback {
            true => Message::BranchRollbackRequest(request),
            false => Message::BranchCommitRequest(request),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut rm = self.rm.clone();
        let conn = rm
            .wait_for(Option::is_some)
            .await
            .expect("the TC runs")
            .clone()
            .expect("registered");
        let (reply, answer) = oneshot::channel();
        conn.send((Frame::request(id, message), reply))
            .await
            .expect("the connection is open");
        match tokio::time::timeout(BOUND, answer).await {
            Ok(Ok(Message::BranchCommitResponse(r) | Message::BranchRollbackResponse(r))) => {
                r.branch_status
            }
            other => panic!("no phase-two answer: {other:?}"),
        }
    }

    /// Follows which connection phase two goes to (a new one registers after a restart).
    fn registrations(&self) -> watch::Receiver<Option<Requests>> {
        self.rm.clone()
    }
}

type Waiting = Arc<Mutex<HashMap<i32, oneshot::Sender<Message>>>>;

async fn serve(
    socket: tokio::net::TcpStream,
    rm: Arc<watch::Sender<Option<Requests>>>,
    branch_ids: Arc<AtomicI64>,
) {
    let (mut sink, mut frames) = Framed::new(socket, FrameCodec::new(1 << 20)).split();
    let (out, mut outbound) = mpsc::channel::<Frame>(64);
    tokio::spawn(async move {
        while let Some(frame) = outbound.recv().await {
            if sink.send(frame).await.is_err() {
                return;
            }
        }
    });
    let waiting: Waiting = Arc::default();
    let (requests, mut to_send) = mpsc::channel::<(Frame, oneshot::Sender<Message>)>(64);
    let forwarder = {
        let (out, waiting) = (out.clone(), waiting.clone());
        tokio::spawn(async move {
            while let Some((frame, reply)) = to_send.recv().await {
                waiting
                    .lock()
                    .expect("lock")
                    .insert(frame.request_id, reply);
                if out.send(frame).await.is_err() {
                    return;
                }
            }
        })
    };
    while let Some(Ok(frame)) = frames.next().await {
        let id = frame.request_id;
        let Ok(Some(message)) = frame.message(&Dialect::CURRENT) else {
            if frame.frame_type == FrameType::HeartbeatRequest {
                let _ = out.send(Frame::pong(id)).await;
            }
            continue;
        };
        if frame.frame_type == FrameType::Response {
            if let Some(reply) = waiting.lock().expect("lock").remove(&id) {
                let _ = reply.send(message);
            }
            continue;
        }
        if let Message::RegisterRmRequest(r) = &message
            && r.resources().any(|res| res == RESOURCE)
        {
            rm.send_replace(Some(requests.clone()));
        }
        let answer = match message {
            Message::MergedWarpMessage(merged) => {
                let msgs = merged
                    .msgs
                    .into_iter()
                    .filter_map(|m| answer(m, &branch_ids))
                    .collect();
                Some(Message::MergeResultMessage(MergeResultMessage { msgs }))
            }
            other => answer(other, &branch_ids),
        };
        if let Some(answer) = answer {
            let _ = out.send(Frame::response(id, answer)).await;
        }
    }
    forwarder.abort();
}

fn answer(request: Message, branch_ids: &AtomicI64) -> Option<Message> {
    Some(match request {
        Message::RegisterTmRequest(_) => {
            Message::RegisterTmResponse(RegisterResponse::new(true, "2.5.0"))
        }
        Message::RegisterRmRequest(_) => {
            Message::RegisterRmResponse(RegisterResponse::new(true, "2.5.0"))
        }
        Message::BranchRegisterRequest(_) => {
            Message::BranchRegisterResponse(BranchRegisterResponse {
                result: TxResult::success(),
                branch_id: branch_ids.fetch_add(1, Ordering::Relaxed),
            })
        }
        _ => return None,
    })
}

/// An application that counts the phase-two calls per branch.
#[derive(Default)]
struct Counting {
    calls: Mutex<HashMap<i64, usize>>,
}

impl Counting {
    fn calls(&self, branch_id: i64) -> usize {
        self.calls
            .lock()
            .expect("lock")
            .get(&branch_id)
            .copied()
            .unwrap_or(0)
    }

    fn count(&self, action: &PhaseTwoAction) -> Answer {
        *self
            .calls
            .lock()
            .expect("lock")
            .entry(action.branch_id)
            .or_default() += 1;
        Answer::Done
    }
}

impl Participant for Counting {
    type Error = String;

    fn resource_ids(&self) -> Vec<String> {
        vec![RESOURCE.into()]
    }

    async fn r#try(&self, _: &Branch) -> Result<(), String> {
        Ok(())
    }

    async fn confirm(&self, action: &PhaseTwoAction) -> Answer {
        self.count(action)
    }

    async fn cancel(&self, action: &PhaseTwoAction) -> Answer {
        self.count(action)
    }
}

async fn start_sidecar(tc: &ScriptedTc, data_dir: &std::path::Path) -> Sidecar {
    let config = SidecarConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        coordinators: CoordinatorSource::Static(vec![tc.addr.clone()]),
        data_dir: data_dir.to_path_buf(),
        shutdown_grace: Duration::ZERO,
        ..SidecarConfig::default()
    };
    Sidecar::start(config).await.expect("the sidecar starts")
}

async fn app_on(
    sidecar: &Sidecar,
    counting: &Arc<Counting>,
) -> (App, txmesh_api::participant::Serving) {
    let app = App::new(format!("http://{}", sidecar.grpc_addr())).expect("endpoint");
    let serving = app.serve(counting.clone());
    serving.connected().await;
    assert!(sidecar.wait_ready(BOUND).await, "registered upstream");
    (app, serving)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_phase_two_reaches_the_application_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tc = ScriptedTc::start().await;
    let counting = Arc::new(Counting::default());
    let sidecar = start_sidecar(&tc, dir.path()).await;
    let (app, serving) = app_on(&sidecar, &counting).await;

    let first = app
        .try_branch(&*counting, XID, RESOURCE, "{}")
        .await
        .expect("registered and tried");
    let second = app
        .try_branch(&*counting, XID, RESOURCE, "{}")
        .await
        .expect("registered and tried");

    for _ in 0..3 {
        assert_eq!(
            tc.phase_two(false, first.branch_id).await,
            BranchStatus::PhaseTwoCommitted
        );
    }
    assert_eq!(counting.calls(first.branch_id), 1, "sequential duplicates");

    let tc = Arc::new(tc);
    let concurrent: Vec<_> = (0..6)
        .map(|_| {
            let tc = tc.clone();
            tokio::spawn(async move { tc.phase_two(false, second.branch_id).await })
        })
        .collect();
    for delivery in concurrent {
        assert_eq!(
            delivery.await.expect("joins"),
            BranchStatus::PhaseTwoCommitted
        );
    }
    assert_eq!(counting.calls(second.branch_id), 1, "concurrent duplicates");

    // A restart keeps the fence: the coordinator's redelivery is answered from it. The
    // application disconnects first, so no connection keeps the old sidecar's fence open.
    drop((app, serving));
    let mut registered = tc.registrations();
    sidecar.stop().await;
    registered.borrow_and_update();
    let sidecar = start_sidecar(&tc, dir.path()).await;
    let (_app, _serving) = app_on(&sidecar, &counting).await;
    registered.changed().await.expect("the TC runs");
    assert_eq!(
        tc.phase_two(false, first.branch_id).await,
        BranchStatus::PhaseTwoCommitted
    );
    assert_eq!(counting.calls(first.branch_id), 1, "after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_without_a_try_is_empty_and_blocks_a_late_register() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tc = ScriptedTc::start().await;
    let counting = Arc::new(Counting::default());
    let sidecar = start_sidecar(&tc, dir.path()).await;
    let (app, _serving) = app_on(&sidecar, &counting).await;

    assert_eq!(
        tc.phase_two(true, 99).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(
        tc.phase_two(true, 99).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(counting.calls(99), 0, "the application is not called");

    match app.try_branch(&*counting, XID, RESOURCE, "{}").await {
        Err(TryError::Register(status)) => {
            assert_eq!(
                Reason::of(&status),
                Some(Reason::AlreadyCancelled),
                "{status}"
            );
        }
        other => panic!("a late register must be refused: {other:?}"),
    }
    let fence = app
        .participant()
        .get_fence(GetFenceRequest { xid: XID.into() })
        .await
        .expect("answers")
        .into_inner();
    assert_eq!(fence.records.len(), 1);
    assert_eq!(fence.records[0].branch_id, 99);
    assert_eq!(fence.records[0].state(), FenceState::EmptyRollback);
}
