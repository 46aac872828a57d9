//! kill -9 the coordinator at random moments under a concurrent workload and restart it on
//! the same data directory, several times. Afterwards every transaction whose begin was
//! acknowledged is still known and ends in the outcome it was acknowledged with, every branch
//! got the matching phase two, and no row lock outlives its transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use txmesh_e2e::{CoordinatorProcess, Peer, Role};
use txmesh_seata::client::{ClientConfig, NoResources, ServerRequestHandler};
use txmesh_seata::message::*;
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus, Message};

const KILLS: usize = 5;
const WORKERS: usize = 12;
const ROWS: u64 = 16;
/// Short, so transactions left open by a kill end by timeout during the test.
const TX_TIMEOUT_MS: i32 = 2_000;
const SETTLE_BOUND: Duration = Duration::from_secs(40);

/// What the coordinator acknowledged, as the clients saw it.
#[derive(Default)]
struct Ledger {
    /// XID → the end the TM was told (None: begun, never decided in an answer).
    transactions: Mutex<HashMap<String, Option<Decision>>>,
    /// Branch id → its XID.
    branches: Mutex<HashMap<i64, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Commit,
    Rollback,
}

/// Acknowledges phase two at once and remembers what was delivered for each branch.
#[derive(Default)]
struct Rm {
    delivered: Mutex<HashMap<i64, Vec<&'static str>>>,
}

impl Rm {
    fn ack(
        &self,
        kind: &'static str,
        request: BranchEndRequest,
        status: BranchStatus,
    ) -> BranchEndResponse {
        self.delivered
            .lock()
            .expect("lock")
            .entry(request.branch_id)
            .or_default()
            .push(kind);
        BranchEndResponse {
            result: TxResult::success(),
            xid: request.xid,
            branch_id: request.branch_id,
            branch_status: status,
        }
    }
}

impl ServerRequestHandler for Rm {
    async fn branch_commit(&self, request: BranchEndRequest) -> BranchEndResponse {
        self.ack("commit", request, BranchStatus::PhaseTwoCommitted)
    }

    async fn branch_rollback(&self, request: BranchEndRequest) -> BranchEndResponse {
        self.ack("rollback", request, BranchStatus::PhaseTwoRollbacked)
    }
}

struct World {
    tm: Peer<NoResources>,
    rm: Peer<Rm>,
    rm_handler: Arc<Rm>,
    ledger: Ledger,
}

impl World {
    fn new(addr: String) -> Self {
        let config = |app: &str| ClientConfig {
            application_id: app.into(),
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        let rm_handler = Arc::new(Rm::default());
        let resources = vec!["crash-tcc".to_owned(), "crash-at".to_owned()];
        Self {
            tm: Peer::new(
                addr.clone(),
                Role::Tm,
                config("crash-tm"),
                Arc::new(NoResources),
            ),
            rm: Peer::new(
                addr,
                Role::Rm(resources),
                config("crash-rm"),
                rm_handler.clone(),
            ),
            rm_handler,
            ledger: Ledger::default(),
        }
    }

    async fn call(&self, peer_is_rm: bool, request: Message) -> Option<Message> {
        let client = match peer_is_rm {
            true => self.rm.client().await.ok()?,
            false => self.tm.client().await.ok()?,
        };
        client.call(request).await.ok()
    }

    /// One transaction: begin, up to two branches, then commit or roll back. Any step may
    /// fail because of a kill; only what was answered counts.
    async fn transaction(&self, round: u64) {
        let begin = GlobalBeginRequest {
            timeout: TX_TIMEOUT_MS,
            transaction_name: "crash".into(),
        };
        let Some(Message::GlobalBeginResponse(begun)) =
            self.call(false, Message::GlobalBeginRequest(begin)).await
        else {
            return;
        };
        if !begun.result.is_success() {
            return;
        }
        let xid = begun.xid;
        self.ledger
            .transactions
            .lock()
            .expect("lock")
            .insert(xid.clone(), None);
        let branches = [
            (BranchType::Tcc, "crash-tcc", String::new()),
            (
                BranchType::At,
                "crash-at",
                format!("account:{}", round % ROWS),
            ),
        ];
        for (branch_type, resource, lock_key) in branches {
            let request = BranchRegisterRequest {
                xid: xid.clone(),
                branch_type,
                resource_id: resource.into(),
                lock_key,
                application_data: String::new(),
            };
            match self
                .call(true, Message::BranchRegisterRequest(request))
                .await
            {
                Some(Message::BranchRegisterResponse(r)) if r.result.is_success() => {
                    self.ledger
                        .branches
                        .lock()
                        .expect("lock")
                        .insert(r.branch_id, xid.clone());
                }
                _ => {}
            }
        }
        let end = GlobalEndRequest {
            xid: xid.clone(),
            extra_data: String::new(),
        };
        let (request, decision) = match round % 5 {
            0 => (Message::GlobalRollbackRequest(end), Decision::Rollback),
            _ => (Message::GlobalCommitRequest(end), Decision::Commit),
        };
        let answered = match self.call(false, request).await {
            Some(Message::GlobalCommitResponse(r)) | Some(Message::GlobalRollbackResponse(r))
                if r.result.is_success() =>
            {
                Some(r.global_status)
            }
            _ => None,
        };
        if let Some(status) = answered {
            // A commit past the deadline is refused with a timeout status: a rollback, told.
            let told = match status {
                GlobalStatus::Committed
                | GlobalStatus::CommitRetrying
                | GlobalStatus::Committing => Decision::Commit,
                _ => Decision::Rollback,
            };
            assert!(
                decision == told || told == Decision::Rollback,
                "{xid}: asked {decision:?}, told {status}"
            );
            self.ledger
                .transactions
                .lock()
                .expect("lock")
                .insert(xid, Some(told));
        }
    }

    async fn status(&self, xid: &str) -> Option<GlobalStatus> {
        let request = GlobalEndRequest {
            xid: xid.into(),
            extra_data: String::new(),
        };
        match self
            .call(false, Message::GlobalStatusRequest(request))
            .await?
        {
            Message::GlobalStatusResponse(r) if r.result.is_success() => Some(r.global_status),
            _ => None,
        }
    }

    async fn lockable(&self, row: u64) -> Option<bool> {
        let request = BranchRegisterRequest {
            xid: String::new(),
            branch_type: BranchType::At,
            resource_id: "crash-at".into(),
            lock_key: format!("account:{row}"),
            application_data: String::new(),
        };
        match self
            .call(true, Message::GlobalLockQueryRequest(request))
            .await?
        {
            Message::GlobalLockQueryResponse(r) => Some(r.lockable),
            _ => None,
        }
    }
}

fn is_final(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::Committed | GlobalStatus::Rollbacked | GlobalStatus::TimeoutRollbacked
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_outcomes_survive_kill_9() {
    let dir = TempDir::new().expect("temp dir");
    let mut coordinator = CoordinatorProcess::start(dir.path());
    let world = Arc::new(World::new(coordinator.seata_addr().to_string()));
    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..WORKERS as u64)
        .map(|worker| {
            let (world, running) = (world.clone(), running.clone());
            tokio::spawn(async move {
                let mut round = worker;
                while running.load(Ordering::Relaxed) {
                    world.transaction(round).await;
                    round += WORKERS as u64;
                }
            })
        })
        .collect();

    for kill in 0..KILLS {
        // Pseudo-random moments, different each kill, without a randomness dependency.
        let pause = 300 + (kill as u64 * 7_919 + std::process::id() as u64) % 900;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        coordinator.kill9();
        tokio::time::sleep(Duration::from_millis(50)).await;
        coordinator.restart();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        tokio::time::timeout(SETTLE_BOUND, worker)
            .await
            .expect("workers stop")
            .expect("worker ran");
    }

    let transactions: Vec<(String, Option<Decision>)> = world
        .ledger
        .transactions
        .lock()
        .expect("lock")
        .iter()
        .map(|(x, d)| (x.clone(), *d))
        .collect();
    assert!(
        transactions.len() >= 20,
        "the workload ran: {} transactions",
        transactions.len()
    );
    let deadline = Instant::now() + SETTLE_BOUND;
    let mut outcomes = HashMap::new();
    for (xid, decision) in &transactions {
        let status = loop {
            let status = world.status(xid).await;
            if let Some(status) = status.filter(|s| is_final(*s)) {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{xid} did not end: last status {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_ne!(
            status,
            GlobalStatus::Finished,
            "{xid} was acknowledged but is forgotten"
        );
        match decision {
            Some(Decision::Commit) => assert_eq!(status, GlobalStatus::Committed, "{xid}"),
            Some(Decision::Rollback) => assert_ne!(status, GlobalStatus::Committed, "{xid}"),
            None => {}
        }
        outcomes.insert(xid.clone(), status);
    }

    let committed = outcomes
        .values()
        .filter(|s| **s == GlobalStatus::Committed)
        .count();
    let decided = transactions.iter().filter(|(_, d)| d.is_some()).count();
    let branches = world.ledger.branches.lock().expect("lock").len();
    eprintln!(
        "{} transactions, {decided} decided in an answer, {committed} committed, {branches} branches",
        transactions.len()
    );
    assert!(
        committed > 0 && committed < outcomes.len(),
        "both outcomes occur"
    );
    assert!(
        decided < transactions.len(),
        "some transactions were cut off by a kill before their answer"
    );

    let delivered = world.rm_handler.delivered.lock().expect("lock").clone();
    for (branch_id, xid) in world.ledger.branches.lock().expect("lock").iter() {
        let expected = match outcomes[xid] {
            GlobalStatus::Committed => "commit",
            _ => "rollback",
        };
        let got = delivered.get(branch_id).cloned().unwrap_or_default();
        assert!(
            got.contains(&expected),
            "branch {branch_id} of {xid} ({:?}) got {got:?}",
            outcomes[xid]
        );
        assert!(
            got.iter().all(|kind| *kind == expected),
            "branch {branch_id} got both directions: {got:?}"
        );
    }

    for row in 0..ROWS {
        assert_eq!(
            world.lockable(row).await,
            Some(true),
            "row {row} is still locked after every transaction ended"
        );
    }
}
