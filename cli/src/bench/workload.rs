//! The transactions a benchmark worker runs, driven as a Java TM and its RMs drive them:
//! begin on the TM connection, branches registered on the RM connection (the one phase two
//! is then sent to), commit on the TM connection.

use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;
use txmesh_seata::client::{ClientError, SeataClient, ServerRequestHandler};
use txmesh_seata::message::{
    BranchEndRequest, BranchEndResponse, BranchRegisterRequest, GlobalBeginRequest,
    GlobalEndRequest, TxResult,
};
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus, Message, TransactionExceptionCode};

/// What each benchmark transaction does between begin and commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// No branches: begin + commit.
    Empty,
    /// Two TCC branches whose RMs confirm at once.
    Tcc,
    /// Two AT branches, each locking a random row among `--rows`.
    At,
}

/// The TCC resources, one branch on each.
const TCC_RESOURCES: [&str; 2] = ["bench-debit", "bench-credit"];
/// The AT resource (a JDBC URL for a Java RM); its rows are `account:<n>`.
const AT_RESOURCE: &str = "jdbc:bench";
/// The transaction timeout sent at begin (Java's default).
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;
/// How a Java RM retries a branch whose rows are locked (`client.rm.lock.retryInterval` and
/// `retryTimes`): after the first try, up to this many more, this far apart.
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(10);
const LOCK_RETRY_TIMES: u32 = 30;

impl Workload {
    /// The resources the RM connections register for.
    pub fn resources(self) -> Vec<String> {
        match self {
            Workload::Empty => Vec::new(),
            Workload::Tcc => TCC_RESOURCES.map(String::from).to_vec(),
            Workload::At => vec![AT_RESOURCE.to_owned()],
        }
    }

    /// The branches of one transaction; AT rows are drawn from `0..rows`.
    fn branches(self, rows: u64, random: &mut SplitMix64) -> Vec<Branch> {
        match self {
            Workload::Empty => Vec::new(),
            Workload::Tcc => TCC_RESOURCES
                .into_iter()
                .map(|resource| Branch {
                    branch_type: BranchType::Tcc,
                    resource,
                    lock_key: String::new(),
                })
                .collect(),
            Workload::At => (0..2)
                .map(|_| Branch {
                    branch_type: BranchType::At,
                    resource: AT_RESOURCE,
                    lock_key: format!("account:{}", random.below(rows)),
                })
                .collect(),
        }
    }

    fn transaction_name(self) -> &'static str {
        match self {
            Workload::Empty => "bench-empty",
            Workload::Tcc => "bench-tcc",
            Workload::At => "bench-at",
        }
    }
}

struct Branch {
    branch_type: BranchType,
    resource: &'static str,
    lock_key: String,
}

/// How one transaction ended, and how often its branches met locked rows on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The end.
    pub end: End,
    /// `LockKeyConflict` answers received (each retry counts).
    pub lock_conflicts: u32,
}

/// How one transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The commit answer said `Committed`.
    Committed,
    /// Rolled back because a branch's rows stayed locked through every retry, or the
    /// coordinator refused to let it wait (a deadlock).
    RolledBack,
    /// Something else happened; the text names the step and the cause.
    Failed(String),
}

/// One worker's connections and its row picker.
pub struct Worker {
    /// Begins and ends transactions.
    pub tm: SeataClient,
    /// Registers branches (for the empty workload, which registers none, the TM connection).
    pub rm: SeataClient,
    /// The workload.
    pub workload: Workload,
    /// How many rows the AT workload draws from.
    pub rows: u64,
    /// Draws the AT rows.
    pub random: SplitMix64,
}

impl Worker {
    /// Runs one transaction to its end.
    pub async fn run_transaction(&mut self) -> Outcome {
        self.run_recording_xid(&mut None).await
    }

    /// Runs one transaction to its end, leaving its XID in `xid` once begun.
    pub async fn run_recording_xid(&mut self, xid: &mut Option<String>) -> Outcome {
        let mut lock_conflicts = 0;
        let end = self
            .transaction(&mut lock_conflicts, xid)
            .await
            .unwrap_or_else(End::Failed);
        Outcome {
            end,
            lock_conflicts,
        }
    }

    async fn transaction(
        &mut self,
        lock_conflicts: &mut u32,
        xid: &mut Option<String>,
    ) -> Result<End, String> {
        let xid = &*xid.insert(self.begin().await?);
        for branch in self.workload.branches(self.rows, &mut self.random) {
            if !self.register(xid, &branch, lock_conflicts).await? {
                return match self.end(Message::GlobalRollbackRequest, xid).await {
                    Ok(GlobalStatus::Rollbacked) => Ok(End::RolledBack),
                    Ok(status) => Err(format!("rollback ended {status}")),
                    Err(e) => Err(format!("rollback: {e}")),
                };
            }
        }
        match self.end(Message::GlobalCommitRequest, xid).await {
            Ok(GlobalStatus::Committed) => Ok(End::Committed),
            Ok(status) => Err(format!("commit ended {status}")),
            Err(e) => Err(format!("commit: {e}")),
        }
    }

    async fn begin(&self) -> Result<String, String> {
        let request = GlobalBeginRequest {
            timeout: TRANSACTION_TIMEOUT_MS,
            transaction_name: self.workload.transaction_name().into(),
        };
        match self.tm.call(Message::GlobalBeginRequest(request)).await {
            Ok(Message::GlobalBeginResponse(r)) if r.result.is_success() => Ok(r.xid),
            Ok(Message::GlobalBeginResponse(r)) => Err(format!("begin: {}", failure(&r.result))),
            Ok(other) => Err(format!("begin: unexpected {}", other.type_name())),
            Err(e) => Err(format!("begin: {}", client_failure(&e))),
        }
    }

    /// Registers a branch, retrying while its rows are locked; `false` if they stayed locked
    /// or the coordinator said to stop trying.
    async fn register(
        &self,
        xid: &str,
        branch: &Branch,
        lock_conflicts: &mut u32,
    ) -> Result<bool, String> {
        for attempt in 0..=LOCK_RETRY_TIMES {
            if attempt > 0 {
                tokio::time::sleep(LOCK_RETRY_INTERVAL).await;
            }
            let request = BranchRegisterRequest {
                xid: xid.into(),
                branch_type: branch.branch_type,
                resource_id: branch.resource.into(),
                lock_key: branch.lock_key.clone(),
                application_data: String::new(),
            };
            let answer = match self.rm.call(Message::BranchRegisterRequest(request)).await {
                Ok(Message::BranchRegisterResponse(r)) => r.result,
                Ok(other) => return Err(format!("register: unexpected {}", other.type_name())),
                Err(e) => return Err(format!("register: {}", client_failure(&e))),
            };
            if answer.is_success() {
                return Ok(true);
            }
            match answer.exception_code {
                TransactionExceptionCode::LockKeyConflict => *lock_conflicts += 1,
                // A Java RM stops retrying at once (a holder rolling back, or a deadlock).
                TransactionExceptionCode::LockKeyConflictFailFast => {
                    *lock_conflicts += 1;
                    return Ok(false);
                }
                _ => return Err(format!("register: {}", failure(&answer))),
            }
        }
        Ok(false)
    }

    /// Sends a commit or rollback and returns the status answered.
    async fn end(
        &self,
        request: fn(GlobalEndRequest) -> Message,
        xid: &str,
    ) -> Result<GlobalStatus, String> {
        let request = request(GlobalEndRequest {
            xid: xid.into(),
            extra_data: String::new(),
        });
        let response = match self.tm.call(request).await {
            Ok(Message::GlobalCommitResponse(r) | Message::GlobalRollbackResponse(r)) => r,
            Ok(other) => return Err(format!("unexpected {}", other.type_name())),
            Err(e) => return Err(client_failure(&e).to_owned()),
        };
        if response.result.is_success() {
            Ok(response.global_status)
        } else {
            Err(failure(&response.result))
        }
    }
}

/// A failed answer by its exception code (the message varies per transaction).
fn failure(result: &TxResult) -> String {
    result.exception_code.to_string()
}

/// A client error by its kind, without the per-request details.
pub fn client_failure(error: &ClientError) -> &'static str {
    match error {
        ClientError::Connect { .. } => "cannot connect",
        ClientError::Timeout(_) => "timeout",
        ClientError::ConnectionClosed(_) => "connection lost",
        ClientError::Encode(_) => "cannot encode",
        ClientError::Body(_) => "undecodable answer",
        ClientError::UnexpectedAnswer { .. } => "unexpected answer",
        ClientError::RegistrationRefused(_) => "registration refused",
    }
}

/// A resource manager whose confirm and cancel are no-ops: it acknowledges phase two at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstantPhaseTwo;

impl InstantPhaseTwo {
    fn done(request: BranchEndRequest, status: BranchStatus) -> BranchEndResponse {
        BranchEndResponse {
            result: TxResult::success(),
            xid: request.xid,
            branch_id: request.branch_id,
            branch_status: status,
        }
    }
}

impl ServerRequestHandler for InstantPhaseTwo {
    async fn branch_commit(&self, request: BranchEndRequest) -> BranchEndResponse {
        Self::done(request, BranchStatus::PhaseTwoCommitted)
    }

    async fn branch_rollback(&self, request: BranchEndRequest) -> BranchEndResponse {
        Self::done(request, BranchStatus::PhaseTwoRollbacked)
    }
}

/// A small, fast pseudo-random generator (SplitMix64): row picks need speed and spread, not
/// cryptographic quality.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` ≥ 1; the modulo bias is negligible for row counts).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcc_has_two_branches_on_the_registered_resources() {
        let branches = Workload::Tcc.branches(1, &mut SplitMix64::new(1));
        let resources: Vec<String> = branches.iter().map(|b| b.resource.to_owned()).collect();
        assert_eq!(resources, Workload::Tcc.resources());
        assert!(branches.iter().all(|b| b.branch_type == BranchType::Tcc));
        assert!(branches.iter().all(|b| b.lock_key.is_empty()));
    }

    #[test]
    fn at_locks_rows_among_the_configured_count() {
        let mut random = SplitMix64::new(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            for branch in Workload::At.branches(10, &mut random) {
                assert_eq!(branch.branch_type, BranchType::At);
                assert_eq!(branch.resource, AT_RESOURCE);
                seen.insert(branch.lock_key);
            }
        }
        let expected: std::collections::BTreeSet<String> =
            (0..10).map(|n| format!("account:{n}")).collect();
        assert_eq!(seen, expected, "every row and only those");
    }

    #[test]
    fn one_row_is_a_hot_row() {
        let branches = Workload::At.branches(1, &mut SplitMix64::new(3));
        assert!(branches.iter().all(|b| b.lock_key == "account:0"));
    }

    #[test]
    fn empty_has_no_branches_and_no_resources() {
        assert!(
            Workload::Empty
                .branches(1, &mut SplitMix64::new(1))
                .is_empty()
        );
        assert!(Workload::Empty.resources().is_empty());
    }
}
