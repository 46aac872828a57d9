//! Global and branch sessions as the state machine keeps them.

use serde::{Deserialize, Serialize};
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus};

/// How Seata's saga engine begins the names of its transactions.
pub const SAGA_NAME_PREFIX: &str = "$Saga_";

/// One global transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalSession {
    /// Transaction id: the log index of its Begin.
    pub tx_id: u64,
    /// `host:port:tx_id`.
    pub xid: String,
    /// The beginning TM's application.
    pub application_id: String,
    /// The beginning TM's transaction service group.
    pub transaction_service_group: String,
    /// The transaction's name.
    pub name: String,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
    /// When it began (leader clock, ms since the Unix epoch).
    pub begin_ms: u64,
    /// Current status.
    pub status: GlobalStatus,
    /// Branches in registration order.
    pub branches: Vec<BranchSession>,
}

impl GlobalSession {
    /// When a `Begin` transaction times out.
    pub fn deadline_ms(&self) -> u64 {
        self.begin_ms.saturating_add(self.timeout_ms)
    }

    /// The branch with this id.
    pub fn branch(&self, branch_id: u64) -> Option<&BranchSession> {
        self.branches.iter().find(|b| b.branch_id == branch_id)
    }

    pub(crate) fn branch_mut(&mut self, branch_id: u64) -> Option<&mut BranchSession> {
        self.branches.iter_mut().find(|b| b.branch_id == branch_id)
    }

    /// Whether this is a saga, as Seata decides it: by its first branch's type, or, before any
    /// branch, by the name its state-machine engine gives it.
    pub fn is_saga(&self) -> bool {
        match self.branches.first() {
            Some(first) => first.branch_type == BranchType::Saga,
            None => self.name.starts_with(SAGA_NAME_PREFIX),
        }
    }

    /// Whether phase two can run in the background with the TM already answered: every branch
    /// is AT (or failed in phase one and needs no call).
    pub fn commits_async(&self) -> bool {
        self.branches
            .iter()
            .all(|b| b.branch_type == BranchType::At || b.failed_in_phase_one())
    }
}

/// One branch of a global transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchSession {
    /// Branch id: the log index of its registration.
    pub branch_id: u64,
    /// Mode.
    pub branch_type: BranchType,
    /// The resource.
    pub resource_id: String,
    /// The AT lock key as registered.
    pub lock_key: String,
    /// Data handed back in phase two.
    pub application_data: String,
    /// `applicationId:ip:port` of the registering connection, for phase-two routing.
    pub client_id: String,
    /// Status (registration, report, phase two).
    pub status: BranchStatus,
    /// Row keys this branch owns in the lock table.
    pub locks: Vec<String>,
}

impl BranchSession {
    /// Whether the branch failed in phase one, so phase two skips it without a call.
    pub fn failed_in_phase_one(&self) -> bool {
        matches!(
            self.status,
            BranchStatus::PhaseOneFailed | BranchStatus::PhaseOnePrepareFailed
        )
    }
}

/// Which way phase two goes for a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Commit family.
    Commit,
    /// Rollback family (explicit or timeout).
    Rollback,
}

/// The phase-two direction a status belongs to, if it is a live phase-two status.
pub fn phase_two_direction(status: GlobalStatus) -> Option<Direction> {
    use GlobalStatus as G;
    match status {
        G::Committing | G::CommitRetrying | G::AsyncCommitting => Some(Direction::Commit),
        G::Rollbacking
        | G::RollbackRetrying
        | G::TimeoutRollbacking
        | G::TimeoutRollbackRetrying => Some(Direction::Rollback),
        _ => None,
    }
}

/// Whether a rollback started because of a timeout.
pub fn is_timeout_family(status: GlobalStatus) -> bool {
    use GlobalStatus as G;
    matches!(
        status,
        G::TimeoutRollbacking
            | G::TimeoutRollbackRetrying
            | G::TimeoutRollbacked
            | G::TimeoutRollbackFailed
    )
}
