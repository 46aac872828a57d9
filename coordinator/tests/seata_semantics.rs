//! The coordinator over TCP, driven by the txmesh-seata client as TMs and RMs would drive it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    BOUND, begin, begin_named, bounded, branch, commit, end, end_request, http, loopback_config,
    register, rollback, status,
};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use txmesh_coordinator::config::{LockTuning, RecoveryTuning};
use txmesh_coordinator::{Coordinator, CoordinatorConfig};
use txmesh_seata::client::{
    BatchConfig, ClientConfig, NoResources, SeataClient, ServerRequestHandler,
};
use txmesh_seata::message::*;
use txmesh_seata::{
    BranchStatus, BranchType, GlobalStatus, Message, TransactionExceptionCode as Code,
};

struct Harness {
    dir: TempDir,
    coordinator: Coordinator,
}

fn config(dir: &TempDir) -> CoordinatorConfig {
    config_with(dir, LockTuning::default())
}

fn config_with(dir: &TempDir, locks: LockTuning) -> CoordinatorConfig {
    CoordinatorConfig {
        locks,
        recovery: RecoveryTuning {
            retry_initial_ms: 50,
            retry_max_ms: 200,
            phase_two_timeout_ms: 2_000,
            ..RecoveryTuning::default()
        },
        ..loopback_config(dir)
    }
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(LockTuning::default()).await
    }

    async fn start_with(locks: LockTuning) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let coordinator = bounded(Coordinator::start(config_with(&dir, locks)))
            .await
            .expect("starts");
        assert!(coordinator.wait_until_leading(BOUND).await, "leads");
        Self { dir, coordinator }
    }

    /// Stops and starts again on the same data directory (and a new port).
    async fn restart(self) -> Self {
        let Harness { dir, coordinator } = self;
        coordinator.stop().await;
        let coordinator = bounded(Coordinator::start(config(&dir)))
            .await
            .expect("restarts");
        assert!(coordinator.wait_until_leading(BOUND).await, "leads");
        Self { dir, coordinator }
    }

    fn addr(&self) -> String {
        self.coordinator.seata_addr().to_string()
    }

    async fn tm(&self) -> SeataClient {
        self.tm_with(ClientConfig {
            application_id: "shop".into(),
            ..ClientConfig::default()
        })
        .await
    }

    async fn tm_with(&self, config: ClientConfig) -> SeataClient {
        let client = SeataClient::connect(&self.addr(), config, Arc::new(NoResources))
            .await
            .expect("connects");
        client.register_tm().await.expect("registers");
        client
    }

    async fn rm(&self, resources: &[&str], handler: Arc<Rm>) -> SeataClient {
        let config = ClientConfig {
            application_id: "stock".into(),
            ..ClientConfig::default()
        };
        let client = SeataClient::connect(&self.addr(), config, handler)
            .await
            .expect("connects");
        let resources: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
        client.register_rm(&resources).await.expect("registers");
        client
    }
}

/// A resource manager that records phase two and fails a set number of times first.
#[derive(Default)]
struct Rm {
    seen: Option<mpsc::UnboundedSender<(&'static str, i64)>>,
    retryable_failures: AtomicUsize,
}

impl Rm {
    fn recording() -> (Arc<Self>, mpsc::UnboundedReceiver<(&'static str, i64)>) {
        let (seen, receiver) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                seen: Some(seen),
                ..Self::default()
            }),
            receiver,
        )
    }

    fn failing(times: usize) -> (Arc<Self>, mpsc::UnboundedReceiver<(&'static str, i64)>) {
        let (rm, receiver) = Self::recording();
        rm.retryable_failures.store(times, Ordering::SeqCst);
        (rm, receiver)
    }

    fn answer(
        &self,
        kind: &'static str,
        request: BranchEndRequest,
        done: BranchStatus,
        retry: BranchStatus,
    ) -> BranchEndResponse {
        let fail = self
            .retryable_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !fail && let Some(seen) = &self.seen {
            let _ = seen.send((kind, request.branch_id));
        }
        BranchEndResponse {
            result: TxResult::success(),
            xid: request.xid,
            branch_id: request.branch_id,
            branch_status: if fail { retry } else { done },
        }
    }
}

impl ServerRequestHandler for Rm {
    async fn branch_commit(&self, request: BranchEndRequest) -> BranchEndResponse {
        self.answer(
            "commit",
            request,
            BranchStatus::PhaseTwoCommitted,
            BranchStatus::PhaseTwoCommitFailedRetryable,
        )
    }

    async fn branch_rollback(&self, request: BranchEndRequest) -> BranchEndResponse {
        self.answer(
            "rollback",
            request,
            BranchStatus::PhaseTwoRollbacked,
            BranchStatus::PhaseTwoRollbackFailedRetryable,
        )
    }
}

/// Polls the status until it is `wanted`.
async fn until_status(tm: &SeataClient, xid: &str, wanted: GlobalStatus) {
    bounded(async {
        while status(tm, xid).await != wanted {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn next(seen: &mut mpsc::UnboundedReceiver<(&'static str, i64)>) -> (&'static str, i64) {
    bounded(seen.recv()).await.expect("phase two arrives")
}

#[tokio::test]
async fn tcc_commit_runs_phase_two_in_registration_order_before_answering() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, mut seen) = Rm::recording();
    let rm = harness.rm(&["debit", "credit"], handler).await;
    let xid = begin(&tm, 60_000).await;
    assert!(
        xid.starts_with(&format!(
            "127.0.0.1:{}:",
            harness.coordinator.seata_addr().port()
        )),
        "{xid}"
    );
    let b1 = branch(&rm, &xid, BranchType::Tcc, "debit", "").await;
    let b2 = branch(&rm, &xid, BranchType::Tcc, "credit", "").await;
    assert_eq!(commit(&tm, &xid).await, GlobalStatus::Committed);
    assert_eq!(next(&mut seen).await, ("commit", b1));
    assert_eq!(next(&mut seen).await, ("commit", b2));
    assert_eq!(
        status(&tm, &xid).await,
        GlobalStatus::Committed,
        "the outcome stays known"
    );
}

#[tokio::test]
async fn tcc_rollback_goes_in_reverse_order() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, mut seen) = Rm::recording();
    let rm = harness.rm(&["debit", "credit"], handler).await;
    let xid = begin(&tm, 60_000).await;
    let b1 = branch(&rm, &xid, BranchType::Tcc, "debit", "").await;
    let b2 = branch(&rm, &xid, BranchType::Tcc, "credit", "").await;
    assert_eq!(rollback(&tm, &xid).await, GlobalStatus::Rollbacked);
    assert_eq!(next(&mut seen).await, ("rollback", b2));
    assert_eq!(next(&mut seen).await, ("rollback", b1));
    let late = register(&rm, &xid, BranchType::Tcc, "debit", "").await;
    assert_eq!(
        late.result.exception_code,
        Code::GlobalTransactionNotExist,
        "no branch joins an ended transaction"
    );
}

#[tokio::test]
async fn an_at_commit_is_answered_at_once_and_frees_its_rows() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, mut seen) = Rm::recording();
    let rm = harness.rm(&["jdbc:db"], handler).await;
    let first = begin(&tm, 60_000).await;
    let b1 = branch(&rm, &first, BranchType::At, "jdbc:db", "account:1").await;
    assert_eq!(commit(&tm, &first).await, GlobalStatus::Committed);
    let second = begin(&tm, 60_000).await;
    branch(&rm, &second, BranchType::At, "jdbc:db", "account:1").await;
    assert_eq!(
        next(&mut seen).await,
        ("commit", b1),
        "AT branches commit in the background"
    );
}

/// Sends a GlobalReport of `reported` for `xid`; the status answered.
async fn report(tm: &SeataClient, xid: &str, reported: GlobalStatus) -> GlobalStatus {
    let request = GlobalReportRequest {
        xid: xid.into(),
        extra_data: String::new(),
        global_status: Some(reported),
    };
    match tm
        .call(Message::GlobalReportRequest(request))
        .await
        .expect("answered")
    {
        Message::GlobalReportResponse(r) if r.result.is_success() => r.global_status,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test]
async fn a_report_decides_a_saga_only() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, mut seen) = Rm::recording();
    let rm = harness.rm(&["jdbc:db"], handler).await;

    let at = begin(&tm, 60_000).await;
    let b1 = branch(&rm, &at, BranchType::At, "jdbc:db", "account:1").await;
    assert_eq!(
        report(&tm, &at, GlobalStatus::Committed).await,
        GlobalStatus::Begin,
        "a report on an AT transaction only learns its status"
    );
    assert_eq!(status(&tm, &at).await, GlobalStatus::Begin);
    let other = begin(&tm, 60_000).await;
    let conflict = register(&rm, &other, BranchType::At, "jdbc:db", "account:1").await;
    assert_eq!(
        conflict.result.exception_code,
        Code::LockKeyConflict,
        "the row is still held: {conflict:?}"
    );
    assert_eq!(commit(&tm, &at).await, GlobalStatus::Committed);
    assert_eq!(
        next(&mut seen).await,
        ("commit", b1),
        "phase two still runs"
    );

    let saga = begin_named(&tm, "$Saga_order", 60_000).await;
    assert_eq!(
        report(&tm, &saga, GlobalStatus::Committed).await,
        GlobalStatus::Committed,
        "a saga's engine decides its outcome"
    );
    assert_eq!(status(&tm, &saga).await, GlobalStatus::Committed);
}

#[tokio::test]
async fn row_locks_conflict_name_the_holder_reenter_and_release() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, _seen) = Rm::recording();
    let rm = harness.rm(&["jdbc:db"], handler).await;
    let holder = begin(&tm, 60_000).await;
    branch(&rm, &holder, BranchType::At, "jdbc:db", "account:1,2").await;
    branch(&rm, &holder, BranchType::At, "jdbc:db", "account:2,3").await;

    let other = begin(&tm, 60_000).await;
    let conflict = register(&rm, &other, BranchType::At, "jdbc:db", "account:3").await;
    assert_eq!(conflict.result.exception_code, Code::LockKeyConflict);
    assert!(
        conflict.result.msg.contains(&holder),
        "names the holder: {}",
        conflict.result.msg
    );

    let query = |xid: String| {
        let rm = rm.clone();
        async move {
            let request = BranchRegisterRequest {
                xid,
                branch_type: BranchType::At,
                resource_id: "jdbc:db".into(),
                lock_key: "account:1".into(),
                application_data: String::new(),
            };
            match rm
                .call(Message::GlobalLockQueryRequest(request))
                .await
                .expect("answered")
            {
                Message::GlobalLockQueryResponse(r) => r.lockable,
                other => panic!("unexpected answer {other:?}"),
            }
        }
    };
    assert!(!query(other.clone()).await);
    assert!(query(holder.clone()).await);

    assert_eq!(rollback(&tm, &holder).await, GlobalStatus::Rollbacked);
    assert!(query(other.clone()).await, "released by the rollback");
    branch(&rm, &other, BranchType::At, "jdbc:db", "account:3").await;
}

#[tokio::test]
async fn a_registration_waits_for_its_row_and_takes_it_when_the_holder_commits() {
    let harness = Harness::start_with(LockTuning { wait_ms: 5_000 }).await;
    let tm = harness.tm().await;
    let (handler, _seen) = Rm::recording();
    let rm = harness.rm(&["jdbc:db"], handler).await;
    let holder = begin(&tm, 60_000).await;
    branch(&rm, &holder, BranchType::At, "jdbc:db", "account:1").await;

    let waiter = begin(&tm, 60_000).await;
    let waiting = tokio::spawn({
        let (rm, waiter) = (rm.clone(), waiter.clone());
        async move { register(&rm, &waiter, BranchType::At, "jdbc:db", "account:1").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the row is held: the registration waits"
    );
    assert_eq!(commit(&tm, &holder).await, GlobalStatus::Committed);
    let registered = bounded(waiting).await.expect("joins");
    assert!(
        registered.result.is_success() && registered.branch_id > 0,
        "the freed row goes to the waiter: {registered:?}"
    );
}

#[tokio::test]
async fn a_registration_that_would_deadlock_is_told_to_stop_retrying() {
    let harness = Harness::start_with(LockTuning { wait_ms: 5_000 }).await;
    let tm = harness.tm().await;
    let (handler, _seen) = Rm::recording();
    let rm = harness.rm(&["jdbc:db"], handler).await;
    let (first, second) = (begin(&tm, 60_000).await, begin(&tm, 60_000).await);
    branch(&rm, &first, BranchType::At, "jdbc:db", "account:1").await;
    branch(&rm, &second, BranchType::At, "jdbc:db", "account:2").await;

    let first_waits = tokio::spawn({
        let (rm, first) = (rm.clone(), first.clone());
        async move { register(&rm, &first, BranchType::At, "jdbc:db", "account:2").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = bounded(register(
        &rm,
        &second,
        BranchType::At,
        "jdbc:db",
        "account:1",
    ))
    .await;
    assert_eq!(
        refused.result.exception_code,
        Code::LockKeyConflictFailFast,
        "{refused:?}"
    );
    assert!(refused.result.msg.contains("deadlock"), "{refused:?}");
    let metrics = http(harness.coordinator.http_addr(), "GET", "/metrics", None).await;
    for counted in [
        "txmesh_coordinator_lock_waits_total 1",
        "txmesh_coordinator_lock_deadlocks_total 1",
        "txmesh_coordinator_lock_conflicts_total 1",
    ] {
        assert!(
            metrics.body.contains(counted),
            "{counted}: {}",
            metrics.body
        );
    }

    // Its TM rolls back. The survivor's wait ends as the victim starts rolling back (not
    // waited for: a plain conflict, and its client retries), or, if it looks only after the
    // undo, with the row; either way the row is its own afterwards.
    assert_eq!(rollback(&tm, &second).await, GlobalStatus::Rollbacked);
    let waited = bounded(first_waits).await.expect("joins").result;
    assert!(
        waited.is_success() || waited.exception_code == Code::LockKeyConflict,
        "{waited:?}"
    );
    branch(&rm, &first, BranchType::At, "jdbc:db", "account:2").await;
}

#[tokio::test]
async fn a_failed_phase_one_branch_is_skipped_by_the_rollback() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, mut seen) = Rm::recording();
    let rm = harness.rm(&["debit", "credit"], handler).await;
    let xid = begin(&tm, 60_000).await;
    let ok = branch(&rm, &xid, BranchType::Tcc, "debit", "").await;
    let failed = branch(&rm, &xid, BranchType::Tcc, "credit", "").await;
    let report = BranchReportRequest {
        xid: xid.clone(),
        branch_id: failed,
        status: BranchStatus::PhaseOneFailed,
        resource_id: "credit".into(),
        application_data: String::new(),
        branch_type: BranchType::Tcc,
    };
    match rm
        .call(Message::BranchReportRequest(report))
        .await
        .expect("answered")
    {
        Message::BranchReportResponse(r) => assert!(r.is_success(), "{r:?}"),
        other => panic!("unexpected answer {other:?}"),
    }
    assert_eq!(rollback(&tm, &xid).await, GlobalStatus::Rollbacked);
    assert_eq!(next(&mut seen).await, ("rollback", ok));
    assert!(seen.try_recv().is_err(), "the failed branch gets no call");
}

#[tokio::test]
async fn a_retryable_failure_is_retried_until_it_succeeds() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, mut seen) = Rm::failing(2);
    let rm = harness.rm(&["debit"], handler).await;
    let xid = begin(&tm, 60_000).await;
    let b = branch(&rm, &xid, BranchType::Tcc, "debit", "").await;
    assert_eq!(
        commit(&tm, &xid).await,
        GlobalStatus::CommitRetrying,
        "the TM learns phase two is pending"
    );
    assert_eq!(next(&mut seen).await, ("commit", b));
    until_status(&tm, &xid, GlobalStatus::Committed).await;
}

#[tokio::test]
async fn an_rm_that_reconnects_gets_its_branch() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, _) = Rm::recording();
    let rm = harness.rm(&["debit"], handler).await;
    let xid = begin(&tm, 60_000).await;
    let b = branch(&rm, &xid, BranchType::Tcc, "debit", "").await;
    rm.close();
    drop(rm);
    assert_eq!(commit(&tm, &xid).await, GlobalStatus::CommitRetrying);
    let (handler, mut seen) = Rm::recording();
    let _rm = harness.rm(&["debit"], handler).await;
    assert_eq!(next(&mut seen).await, ("commit", b));
    until_status(&tm, &xid, GlobalStatus::Committed).await;
}

#[tokio::test]
async fn a_transaction_past_its_timeout_rolls_back() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, mut seen) = Rm::recording();
    let rm = harness.rm(&["debit"], handler).await;
    let xid = begin(&tm, 200).await;
    let b = branch(&rm, &xid, BranchType::Tcc, "debit", "").await;
    assert_eq!(next(&mut seen).await, ("rollback", b));
    until_status(&tm, &xid, GlobalStatus::TimeoutRollbacked).await;
    assert_eq!(
        commit(&tm, &xid).await,
        GlobalStatus::TimeoutRollbacked,
        "too late to commit"
    );
}

#[tokio::test]
async fn merged_requests_are_answered_in_order() {
    let harness = Harness::start().await;
    let config = ClientConfig {
        application_id: "shop".into(),
        batch: Some(BatchConfig {
            max_messages: 8,
            max_wait: Duration::from_millis(20),
        }),
        ..ClientConfig::default()
    };
    let tm = harness.tm_with(config).await;
    let begins: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn({
                let tm = tm.clone();
                async move { begin(&tm, 60_000).await }
            })
        })
        .collect();
    let mut xids = Vec::new();
    for handle in begins {
        xids.push(bounded(handle).await.expect("task"));
    }
    xids.sort();
    xids.dedup();
    assert_eq!(xids.len(), 8, "every merged begin got its own XID");
    for xid in &xids {
        assert_eq!(status(&tm, xid).await, GlobalStatus::Begin);
    }
}

#[tokio::test]
async fn unknown_xids_are_finished_and_malformed_ones_are_errors() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    assert_eq!(
        status(&tm, "127.0.0.1:8091:123456789").await,
        GlobalStatus::Finished
    );
    assert_eq!(
        commit(&tm, "127.0.0.1:8091:123456789").await,
        GlobalStatus::Finished
    );
    let malformed = end(&tm, Message::GlobalCommitRequest(end_request("not-an-xid"))).await;
    assert_eq!(
        malformed.result.exception_code,
        Code::GlobalTransactionNotExist
    );
}

#[tokio::test]
async fn garbage_on_one_connection_disturbs_no_other() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let mut garbage = tokio::net::TcpStream::connect(harness.addr())
        .await
        .expect("connects");
    garbage
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let mut bad_body = tokio::net::TcpStream::connect(harness.addr())
        .await
        .expect("connects");
    bad_body.write_all(&hex_frame()).await.expect("writes");
    let xid = begin(&tm, 60_000).await;
    assert_eq!(commit(&tm, &xid).await, GlobalStatus::Committed);
}

/// A well-framed request with an unknown type code (999).
fn hex_frame() -> Vec<u8> {
    vec![
        0xda, 0xda, 1, 0, 0, 0, 18, 0, 16, 0, 1, 0, 0, 0, 0, 7, 0x03, 0xe7,
    ]
}

#[tokio::test]
async fn requests_before_registration_are_refused_with_a_reason() {
    let harness = Harness::start().await;
    let unregistered = SeataClient::connect(
        &harness.addr(),
        ClientConfig::default(),
        Arc::new(NoResources),
    )
    .await
    .expect("connects");
    let request = GlobalBeginRequest {
        timeout: 60_000,
        transaction_name: "x".into(),
    };
    match unregistered
        .call(Message::GlobalBeginRequest(request))
        .await
        .expect("answered")
    {
        Message::GlobalBeginResponse(r) => {
            assert!(!r.result.is_success());
            assert!(r.result.msg.contains("register"), "{}", r.result.msg);
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test]
async fn decisions_and_pending_phase_two_survive_a_restart() {
    let harness = Harness::start().await;
    let tm = harness.tm().await;
    let (handler, _) = Rm::recording();
    let rm = harness.rm(&["debit"], handler).await;
    let committed = begin(&tm, 60_000).await;
    assert_eq!(commit(&tm, &committed).await, GlobalStatus::Committed);
    let open = begin(&tm, 60_000).await;
    let pending = begin(&tm, 60_000).await;
    let b = branch(&rm, &pending, BranchType::Tcc, "debit", "").await;
    rm.close();
    assert_eq!(commit(&tm, &pending).await, GlobalStatus::CommitRetrying);

    let harness = harness.restart().await;
    let tm = harness.tm().await;
    assert_eq!(status(&tm, &committed).await, GlobalStatus::Committed);
    assert_eq!(
        status(&tm, &open).await,
        GlobalStatus::Begin,
        "a live transaction is not rolled back by a restart"
    );
    let (handler, mut seen) = Rm::recording();
    let _rm = harness.rm(&["debit"], handler).await;
    assert_eq!(
        next(&mut seen).await,
        ("commit", b),
        "the decision resumes after the restart"
    );
    until_status(&tm, &pending, GlobalStatus::Committed).await;
}
