//! Commands (what the leader proposes; each is one Raft log entry) and their outcomes.
//! Commands carry every input the state machine needs, including the leader's clock, so
//! applying them is deterministic on every node.

use serde::{Deserialize, Serialize};
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus, TransactionExceptionCode};

/// A change to the coordinator's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Open a global transaction.
    Begin {
        /// `host:port` that prefixes the XID.
        address: String,
        /// The TM's application.
        application_id: String,
        /// The TM's transaction service group.
        transaction_service_group: String,
        /// The transaction's name.
        name: String,
        /// Timeout in milliseconds.
        timeout_ms: u64,
        /// Leader clock.
        now_ms: u64,
    },
    /// Add a branch (AT branches also take their row locks).
    RegisterBranch {
        /// The global transaction.
        tx_id: u64,
        /// Mode.
        branch_type: BranchType,
        /// The resource.
        resource_id: String,
        /// AT lock key.
        lock_key: String,
        /// Phase-two data.
        application_data: String,
        /// `applicationId:ip:port` of the registering connection.
        client_id: String,
    },
    /// Record a branch's phase-one outcome.
    ReportBranch {
        /// The global transaction.
        tx_id: u64,
        /// The branch.
        branch_id: u64,
        /// Reported status.
        status: BranchStatus,
        /// Replaces the branch's data.
        application_data: String,
    },
    /// The TM asks to commit.
    Commit {
        /// The global transaction.
        tx_id: u64,
        /// Leader clock, to refuse a commit after the deadline.
        now_ms: u64,
    },
    /// The TM asks to roll back.
    Rollback {
        /// The global transaction.
        tx_id: u64,
    },
    /// The timeout driver found the deadline passed.
    Timeout {
        /// The global transaction.
        tx_id: u64,
        /// Leader clock.
        now_ms: u64,
    },
    /// Phase two of some branches ended (done, or failed for good), in the order they ended:
    /// one pass over a transaction records all its branches in one entry.
    BranchesDone {
        /// The global transaction.
        tx_id: u64,
        /// Each branch and its final phase-two status.
        results: Vec<(u64, BranchStatus)>,
    },
    /// Phase two met a retryable failure: the transaction goes to its *Retrying status.
    Retrying {
        /// The global transaction.
        tx_id: u64,
    },
    /// Phase-two retries exceeded the configured time: *RetryTimeout, kept for an operator.
    GiveUp {
        /// The global transaction.
        tx_id: u64,
    },
    /// The TM reports a status (Saga).
    Report {
        /// The global transaction.
        tx_id: u64,
        /// The reported status.
        status: GlobalStatus,
    },
    /// An operator restarts phase two of a stuck or failed transaction.
    Resume {
        /// The global transaction.
        tx_id: u64,
        /// Commit (true) or roll back (false).
        commit: bool,
        /// Leader clock.
        now_ms: u64,
    },
}

impl Command {
    /// Whether applying it may free a row lock or turn a lock holder to rollback: what a
    /// registration waiting on a lock looks at again. Beginning, registering and phase-one
    /// reports do neither.
    pub fn may_release_locks(&self) -> bool {
        !matches!(
            self,
            Command::Begin { .. } | Command::RegisterBranch { .. } | Command::ReportBranch { .. }
        )
    }
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A transaction began.
    Begun {
        /// Its id.
        tx_id: u64,
        /// Its XID.
        xid: String,
    },
    /// A branch registered.
    Registered {
        /// Its id.
        branch_id: u64,
    },
    /// The transaction's status after the command.
    Status(GlobalStatus),
    /// The command was refused.
    Rejected(Rejection),
}

/// Why a command was refused, in Seata's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The exception code clients act on.
    pub code: TransactionExceptionCode,
    /// A message for humans.
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(code: TransactionExceptionCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
