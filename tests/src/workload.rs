//! A transaction workload that keeps running while coordinators are killed, and the checks
//! that nothing it was told has been lost: every acknowledged transaction is still known and
//! ends as it was acknowledged, every branch got the matching phase two, no row stays locked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use txmesh_seata::client::{ClientConfig, NoResources, ServerRequestHandler};
use txmesh_seata::message::*;
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus, Message};

use crate::{Peer, Role};

/// Rows the AT branches lock, so transactions contend.
const ROWS: u64 = 16;
/// Short, so transactions left open by a kill end by timeout during the test.
const TX_TIMEOUT_MS: i32 = 2_000;
/// How long every transaction may take to end after the workload stops.
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

/// Acknowledges phase two at once behind a fence, as a TCC participant does: the
/// coordinator delivers at least once (again after a failover if the acknowledgement was not
/// replicated), the fence lets each branch's phase two reach the app logic once.
#[derive(Default)]
struct Rm {
    /// Every phase-two call, per branch.
    delivered: Mutex<HashMap<i64, Vec<&'static str>>>,
    /// What the app logic applied, per branch, past the fence.
    applied: Mutex<HashMap<i64, Vec<&'static str>>>,
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
        let mut applied = self.applied.lock().expect("lock");
        let done = applied.entry(request.branch_id).or_default();
        // The fence: a branch already finished this way is acknowledged without the app logic.
        if !done.contains(&kind) {
            done.push(kind);
        }
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

/// The workload's clients and what they were told.
pub struct Workload {
    tm: Peer<NoResources>,
    rm: Peer<Rm>,
    rm_handler: Arc<Rm>,
    ledger: Ledger,
}

/// Counts from [`Workload::verify`], for scenario-specific checks.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Transactions whose begin was acknowledged.
    pub transactions: usize,
    /// Of those, how many got a commit or rollback answer.
    pub decided: usize,
    /// How many ended committed.
    pub committed: usize,
    /// Branch registrations acknowledged.
    pub branches: usize,
    /// Phase-two calls delivered again for a finished branch and stopped by the fence.
    pub redelivered: usize,
}

/// Workers running transactions until stopped.
pub struct Running {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the workers and waits for them.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            tokio::time::timeout(SETTLE_BOUND, worker)
                .await
                .expect("workers stop")
                .expect("worker ran");
        }
    }
}

fn is_final(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::Committed | GlobalStatus::Rollbacked | GlobalStatus::TimeoutRollbacked
    )
}

impl Workload {
    /// A workload against the coordinators at `addrs` (it follows the leader among them).
    pub fn new(addrs: Vec<String>) -> Arc<Self> {
        let config = |app: &str| ClientConfig {
            application_id: app.into(),
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        let rm_handler = Arc::new(Rm::default());
        let resources = vec!["e2e-tcc".to_owned(), "e2e-at".to_owned()];
        Arc::new(Self {
            tm: Peer::new(
                addrs.clone(),
                Role::Tm,
                config("e2e-tm"),
                Arc::new(NoResources),
            ),
            rm: Peer::new(
                addrs,
                Role::Rm(resources),
                config("e2e-rm"),
                rm_handler.clone(),
            ),
            rm_handler,
            ledger: Ledger::default(),
        })
    }

    /// Transactions whose commit or rollback has been answered so far.
    pub fn decided(&self) -> usize {
        let transactions = self.ledger.transactions.lock().expect("lock");
        transactions.values().filter(|d| d.is_some()).count()
    }

    /// Every transaction whose begin was acknowledged.
    pub fn xids(&self) -> Vec<String> {
        let transactions = self.ledger.transactions.lock().expect("lock");
        transactions.keys().cloned().collect()
    }

    /// Waits until `more` transactions beyond those decided now are decided: the coordinators
    /// serve writes.
    pub async fn until_progress(&self, more: usize) {
        let target = self.decided() + more;
        let deadline = Instant::now() + SETTLE_BOUND;
        while self.decided() < target {
            assert!(
                Instant::now() < deadline,
                "the workload made no progress within {SETTLE_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `workers` concurrent transaction loops.
    pub fn start(self: &Arc<Self>, workers: u64) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|worker| {
                let (workload, stop) = (self.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut round = worker;
                    while !stop.load(Ordering::Relaxed) {
                        workload.transaction(round).await;
                        round += workers;
                    }
                })
            })
            .collect();
        Running { stop, workers }
    }

    /// One call; `None` when it was not answered (connection lost, not the leader).
    async fn call(&self, to_rm: bool, request: Message) -> Option<Message> {
        match to_rm {
            true => self.rm.call(request).await,
            false => self.tm.call(request).await,
        }
    }

    /// One transaction: begin, up to two branches, then commit or roll back. Any step may
    /// fail because of a kill; only what was answered counts.
    async fn transaction(&self, round: u64) {
        let begin = GlobalBeginRequest {
            timeout: TX_TIMEOUT_MS,
            transaction_name: "e2e".into(),
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
            (BranchType::Tcc, "e2e-tcc", String::new()),
            (
                BranchType::At,
                "e2e-at",
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
            if let Some(Message::BranchRegisterResponse(r)) = self
                .call(true, Message::BranchRegisterRequest(request))
                .await
                && r.result.is_success()
            {
                self.ledger
                    .branches
                    .lock()
                    .expect("lock")
                    .insert(r.branch_id, xid.clone());
            }
        }
        let end = GlobalEndRequest {
            xid: xid.clone(),
            extra_data: String::new(),
        };
        let (request, asked) = match round % 5 {
            0 => (Message::GlobalRollbackRequest(end), Decision::Rollback),
            _ => (Message::GlobalCommitRequest(end), Decision::Commit),
        };
        let status = match self.call(false, request).await {
            Some(Message::GlobalCommitResponse(r) | Message::GlobalRollbackResponse(r))
                if r.result.is_success() =>
            {
                r.global_status
            }
            _ => return,
        };
        // A commit past the deadline is refused with a timeout status: a rollback, told.
        let told = match status {
            GlobalStatus::Committed | GlobalStatus::CommitRetrying | GlobalStatus::Committing => {
                Decision::Commit
            }
            _ => Decision::Rollback,
        };
        assert!(
            asked == told || told == Decision::Rollback,
            "{xid}: asked {asked:?}, told {status}"
        );
        self.ledger
            .transactions
            .lock()
            .expect("lock")
            .insert(xid, Some(told));
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
            resource_id: "e2e-at".into(),
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

    /// Waits for every transaction to end and checks it against what was acknowledged.
    pub async fn verify(&self) -> Report {
        let transactions: Vec<(String, Option<Decision>)> = self
            .ledger
            .transactions
            .lock()
            .expect("lock")
            .iter()
            .map(|(x, d)| (x.clone(), *d))
            .collect();
        let deadline = Instant::now() + SETTLE_BOUND;
        let mut outcomes = HashMap::new();
        for (xid, decision) in &transactions {
            let status = loop {
                let status = self.status(xid).await;
                if let Some(status) = status.filter(|s| is_final(*s)) {
                    break status;
                }
                assert!(
                    Instant::now() < deadline,
                    "{xid} did not end: last status {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            match decision {
                Some(Decision::Commit) => assert_eq!(status, GlobalStatus::Committed, "{xid}"),
                Some(Decision::Rollback) => assert_ne!(status, GlobalStatus::Committed, "{xid}"),
                None => {}
            }
            outcomes.insert(xid.clone(), status);
        }
        let branches = self.ledger.branches.lock().expect("lock").clone();
        let delivered = self.rm_handler.delivered.lock().expect("lock").clone();
        let applied = self.rm_handler.applied.lock().expect("lock").clone();
        for (branch_id, xid) in &branches {
            let expected = if outcomes[xid] == GlobalStatus::Committed {
                "commit"
            } else {
                "rollback"
            };
            let got = delivered.get(branch_id).cloned().unwrap_or_default();
            assert!(
                got.iter().all(|kind| *kind == expected),
                "branch {branch_id} of {xid} ({:?}) got {got:?}",
                outcomes[xid]
            );
            assert_eq!(
                applied.get(branch_id).map(Vec::as_slice),
                Some(&[expected][..]),
                "branch {branch_id} of {xid}: phase two reaches the app logic once"
            );
        }
        for row in 0..ROWS {
            assert_eq!(
                self.lockable(row).await,
                Some(true),
                "row {row} is still locked after every transaction ended"
            );
        }
        let report = Report {
            transactions: transactions.len(),
            decided: transactions.iter().filter(|(_, d)| d.is_some()).count(),
            committed: outcomes
                .values()
                .filter(|s| **s == GlobalStatus::Committed)
                .count(),
            branches: branches.len(),
            redelivered: delivered.values().map(Vec::len).sum::<usize>()
                - applied.values().map(Vec::len).sum::<usize>(),
        };
        eprintln!("{report:?}");
        assert!(
            report.committed > 0 && report.committed < report.transactions,
            "both outcomes occur: {report:?}"
        );
        report
    }
}
