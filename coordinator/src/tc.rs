//! The transaction coordinator's answers to TM and RM requests (seata-tc-semantics.md §1–§3):
//! each request becomes a replicated command or a read of the applied state, and each outcome
//! becomes the Seata answer, with Seata's status and exception codes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use txmesh_seata::message::*;
use txmesh_seata::{GlobalStatus, Message, TransactionExceptionCode as Code};

use crate::drivers::PhaseTwo;
use crate::lock_wait::{LockWaits, Registration};
use crate::node::{Node, ProposeError};
use crate::state::{Command, Outcome, Rejection, branch_row_keys};

/// Who is asking: taken from the connection's registration, as Seata does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The registered application.
    pub application_id: String,
    /// The registered transaction service group.
    pub transaction_service_group: String,
    /// `applicationId:ip:port` of the connection, recorded on branches for phase-two routing.
    pub client_id: String,
}

/// Answers transaction requests.
pub struct Tc {
    node: Arc<Node>,
    phase_two: Arc<PhaseTwo>,
    lock_waits: LockWaits,
    xid_address: String,
}

/// Milliseconds since the Unix epoch: the leader's clock, stamped into commands.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The transaction id at the end of an XID (`ip:port:id`), as Seata parses it.
pub fn tx_id_of(xid: &str) -> Option<u64> {
    xid.rsplit(':').next()?.parse().ok()
}

impl Tc {
    /// A coordinator writing XIDs as `xid_address:tx_id`, whose branch registrations wait at
    /// most `lock_wait` for rows another transaction holds.
    pub fn new(
        node: Arc<Node>,
        phase_two: Arc<PhaseTwo>,
        xid_address: String,
        lock_wait: Duration,
    ) -> Self {
        let lock_waits = LockWaits::new(lock_wait, node.metrics.clone());
        Self {
            node,
            phase_two,
            lock_waits,
            xid_address,
        }
    }

    /// The answer to a transaction request; `None` for messages that are not one. Only a
    /// leader a quorum follows serves them: others answer `NotRaftLeader`, which clients
    /// follow.
    pub async fn handle(&self, caller: &Caller, request: Message) -> Option<Message> {
        if let Some(refusal) = self.node.not_serving() {
            let result = TxResult::failure(refusal.code(), refusal.to_string());
            return failure_answer(&request, result);
        }
        Some(match request {
            Message::GlobalBeginRequest(r) => {
                Message::GlobalBeginResponse(self.begin(caller, r).await)
            }
            Message::GlobalCommitRequest(r) => {
                Message::GlobalCommitResponse(self.commit(&r.xid).await)
            }
            Message::GlobalRollbackRequest(r) => {
                Message::GlobalRollbackResponse(self.rollback(&r.xid).await)
            }
            Message::GlobalStatusRequest(r) => Message::GlobalStatusResponse(self.status(&r.xid)),
            Message::GlobalReportRequest(r) => Message::GlobalReportResponse(self.report(r).await),
            Message::BranchRegisterRequest(r) => {
                Message::BranchRegisterResponse(self.register(caller, r).await)
            }
            Message::BranchReportRequest(r) => {
                Message::BranchReportResponse(self.branch_report(r).await)
            }
            Message::GlobalLockQueryRequest(r) => {
                Message::GlobalLockQueryResponse(self.lock_query(&r))
            }
            _ => return None,
        })
    }

    async fn begin(&self, caller: &Caller, request: GlobalBeginRequest) -> GlobalBeginResponse {
        let command = Command::Begin {
            address: self.xid_address.clone(),
            application_id: caller.application_id.clone(),
            transaction_service_group: caller.transaction_service_group.clone(),
            name: request.transaction_name,
            // Seata does not validate it either: a non-positive timeout expires at once.
            timeout_ms: request.timeout.max(0) as u64,
            now_ms: now_ms(),
        };
        let (result, xid) = match self.node.propose(command).await {
            Ok(Outcome::Begun { xid, .. }) => (TxResult::success(), xid),
            Ok(other) => (unexpected(&other), String::new()),
            Err(error) => (propose_failure(&error, Code::BeginFailed), String::new()),
        };
        GlobalBeginResponse {
            result,
            xid,
            extra_data: String::new(),
        }
    }

    /// AT-only transactions are answered `Committed` at the decision; others after their
    /// synchronous phase two, or with the retrying status it ended in.
    async fn commit(&self, xid: &str) -> GlobalEndResponse {
        let Some(tx_id) = tx_id_of(xid) else {
            return malformed_xid(xid);
        };
        let status = match self
            .node
            .propose(Command::Commit {
                tx_id,
                now_ms: now_ms(),
            })
            .await
        {
            Ok(Outcome::Status(status)) => status,
            Ok(other) => return self.end_failure(tx_id, unexpected(&other)),
            Err(error) => {
                return self.end_failure(tx_id, propose_failure(&error, Code::FailedStore));
            }
        };
        let status = match status {
            GlobalStatus::Committing => self.phase_two.first_pass(tx_id).await,
            GlobalStatus::AsyncCommitting | GlobalStatus::TimeoutRollbacking => {
                self.phase_two.start(tx_id);
                status
            }
            other => other,
        };
        ended(status_for_commit(status))
    }

    /// Rollback runs phase two in the TM's request, as Seata does.
    async fn rollback(&self, xid: &str) -> GlobalEndResponse {
        let Some(tx_id) = tx_id_of(xid) else {
            return malformed_xid(xid);
        };
        match self.node.propose(Command::Rollback { tx_id }).await {
            Ok(Outcome::Status(GlobalStatus::Rollbacking)) => {
                ended(self.phase_two.first_pass(tx_id).await)
            }
            Ok(Outcome::Status(status)) => ended(status),
            Ok(other) => self.end_failure(tx_id, unexpected(&other)),
            Err(error) => self.end_failure(tx_id, propose_failure(&error, Code::FailedStore)),
        }
    }

    fn status(&self, xid: &str) -> GlobalEndResponse {
        let Some(tx_id) = tx_id_of(xid) else {
            return malformed_xid(xid);
        };
        ended(self.node.status(tx_id))
    }

    async fn report(&self, request: GlobalReportRequest) -> GlobalEndResponse {
        let Some(tx_id) = tx_id_of(&request.xid) else {
            return malformed_xid(&request.xid);
        };
        let Some(status) = request.global_status else {
            return ended(self.node.status(tx_id));
        };
        // Only a saga's engine decides its outcome; any other transaction is decided by its
        // TM's commit or rollback and phase two, so a report only learns its status, as in
        // Seata. Checked before the log, so no entry is written for it.
        let decided_elsewhere = {
            let applied = self.node.state.read();
            let session = applied.tx.session(tx_id).filter(|s| !s.is_saga());
            session.map(|session| session.status)
        };
        if let Some(status) = decided_elsewhere {
            return ended(status);
        }
        match self.node.propose(Command::Report { tx_id, status }).await {
            Ok(Outcome::Status(status)) => ended(status),
            Ok(other) => self.end_failure(tx_id, unexpected(&other)),
            Err(error) => self.end_failure(tx_id, propose_failure(&error, Code::FailedStore)),
        }
    }

    async fn register(
        &self,
        caller: &Caller,
        request: BranchRegisterRequest,
    ) -> BranchRegisterResponse {
        let refused = |result| BranchRegisterResponse {
            result,
            branch_id: 0,
        };
        let Some(tx_id) = tx_id_of(&request.xid) else {
            return refused(not_exist(&request.xid));
        };
        let keys = branch_row_keys(request.branch_type, &request.resource_id, &request.lock_key);
        let registration = Registration {
            tx_id,
            branch_type: request.branch_type,
            keys: &keys,
            application_data: &request.application_data,
        };
        let claim = match self.lock_waits.admit(&self.node.state, &registration).await {
            Ok(claim) => claim,
            Err(rejection) => return refused(rejected(rejection)),
        };
        let command = Command::RegisterBranch {
            tx_id,
            branch_type: request.branch_type,
            resource_id: request.resource_id,
            lock_key: request.lock_key,
            application_data: request.application_data,
            client_id: caller.client_id.clone(),
        };
        match self.node.propose(command).await {
            // Ids stay below 2^63 for the first 2^47 log entries.
            Ok(Outcome::Registered { branch_id }) => {
                claim.taken();
                BranchRegisterResponse {
                    result: TxResult::success(),
                    branch_id: branch_id as i64,
                }
            }
            Ok(Outcome::Rejected(rejection)) => refused(rejected(rejection)),
            Ok(other) => refused(unexpected(&other)),
            Err(error) => refused(propose_failure(&error, Code::BranchRegisterFailed)),
        }
    }

    async fn branch_report(&self, request: BranchReportRequest) -> TxResult {
        let Some(tx_id) = tx_id_of(&request.xid) else {
            return not_exist(&request.xid);
        };
        let command = Command::ReportBranch {
            tx_id,
            // A negative id names no branch, and becomes one that does not exist.
            branch_id: request.branch_id as u64,
            status: request.status,
            application_data: request.application_data,
        };
        match self.node.propose(command).await {
            Ok(Outcome::Status(_)) => TxResult::success(),
            Ok(Outcome::Rejected(rejection)) => rejected(rejection),
            Ok(other) => unexpected(&other),
            Err(error) => propose_failure(&error, Code::BranchReportFailed),
        }
    }

    /// Read committed for AT (`@GlobalLock`, `SELECT … FOR UPDATE`): free or ours. An empty or
    /// unparsable XID (outside a global transaction) owns nothing, so any holder blocks it.
    fn lock_query(&self, request: &BranchRegisterRequest) -> GlobalLockQueryResponse {
        let tx_id = tx_id_of(&request.xid);
        let lockable = self.node.state.read().tx.lockable(
            tx_id,
            request.branch_type,
            &request.resource_id,
            &request.lock_key,
        );
        GlobalLockQueryResponse {
            result: TxResult::success(),
            lockable,
        }
    }

    /// Seata's failed end-responses still carry the transaction's real status.
    fn end_failure(&self, tx_id: u64, result: TxResult) -> GlobalEndResponse {
        GlobalEndResponse {
            result,
            global_status: self.node.status(tx_id),
        }
    }
}

/// A failed answer of the type that matches `request`, for requests that cannot be served.
pub fn failure_answer(request: &Message, failure: TxResult) -> Option<Message> {
    let result = || failure.clone();
    let ended = || GlobalEndResponse {
        result: result(),
        global_status: GlobalStatus::UnKnown,
    };
    Some(match request {
        Message::GlobalBeginRequest(_) => Message::GlobalBeginResponse(GlobalBeginResponse {
            result: result(),
            xid: String::new(),
            extra_data: String::new(),
        }),
        Message::GlobalCommitRequest(_) => Message::GlobalCommitResponse(ended()),
        Message::GlobalRollbackRequest(_) => Message::GlobalRollbackResponse(ended()),
        Message::GlobalStatusRequest(_) => Message::GlobalStatusResponse(ended()),
        Message::GlobalReportRequest(_) => Message::GlobalReportResponse(ended()),
        Message::BranchRegisterRequest(_) => {
            Message::BranchRegisterResponse(BranchRegisterResponse {
                result: result(),
                branch_id: 0,
            })
        }
        Message::BranchReportRequest(_) => Message::BranchReportResponse(result()),
        Message::GlobalLockQueryRequest(_) => {
            Message::GlobalLockQueryResponse(GlobalLockQueryResponse {
                result: result(),
                lockable: false,
            })
        }
        _ => return None,
    })
}

fn ended(global_status: GlobalStatus) -> GlobalEndResponse {
    GlobalEndResponse {
        result: TxResult::success(),
        global_status,
    }
}

/// The TM is told `Committed` once an AT-only commit is decided (seata-tc-semantics.md §1.4).
fn status_for_commit(status: GlobalStatus) -> GlobalStatus {
    match status {
        GlobalStatus::AsyncCommitting => GlobalStatus::Committed,
        other => other,
    }
}

fn malformed_xid(xid: &str) -> GlobalEndResponse {
    GlobalEndResponse {
        result: not_exist(xid),
        global_status: GlobalStatus::Finished,
    }
}

fn not_exist(xid: &str) -> TxResult {
    TxResult::failure(
        Code::GlobalTransactionNotExist,
        format!("malformed or unknown XID {xid:?}"),
    )
}

fn rejected(rejection: Rejection) -> TxResult {
    TxResult::failure(rejection.code, rejection.message)
}

fn propose_failure(error: &ProposeError, otherwise: Code) -> TxResult {
    let code = match error {
        ProposeError::NotLeader { .. } => Code::NotRaftLeader,
        _ => otherwise,
    };
    TxResult::failure(code, error.to_string())
}

/// An outcome of the wrong kind would be a bug; the client still gets a clear failure.
fn unexpected(outcome: &Outcome) -> TxResult {
    tracing::error!(?outcome, "unexpected outcome");
    TxResult::failure(
        Code::Unknown,
        format!("internal error: unexpected outcome {outcome:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_parse_like_seata() {
        assert_eq!(tx_id_of("10.0.0.1:8091:42"), Some(42));
        assert_eq!(tx_id_of("tc-0.tc.ns.svc:8091:7"), Some(7));
        assert_eq!(tx_id_of("[::1]:8091:9"), Some(9));
        assert_eq!(tx_id_of("42"), Some(42));
        assert_eq!(tx_id_of(""), None);
        assert_eq!(tx_id_of("10.0.0.1:8091:-1"), None);
        assert_eq!(tx_id_of("10.0.0.1:8091:x"), None);
    }
}
