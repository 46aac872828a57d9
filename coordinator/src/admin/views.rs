//! What the API answers, in camelCase JSON; statuses and branch types by their Seata names.

use serde::Serialize;
use txmesh_seata::{BranchStatus, BranchType, GlobalStatus};

use crate::state::{BranchSession, GlobalSession, LockOwner};

/// A live transaction; `B` is its branch count in listings, its branches in the detail.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TransactionView<B> {
    xid: String,
    tx_id: u64,
    status: GlobalStatus,
    application_id: String,
    transaction_service_group: String,
    name: String,
    /// Milliseconds since the Unix epoch.
    begin_time: u64,
    timeout_ms: u64,
    branches: B,
}

impl<B> TransactionView<B> {
    pub(super) fn of(session: &GlobalSession, branches: B) -> Self {
        Self {
            xid: session.xid.clone(),
            tx_id: session.tx_id,
            status: session.status,
            application_id: session.application_id.clone(),
            transaction_service_group: session.transaction_service_group.clone(),
            name: session.name.clone(),
            begin_time: session.begin_ms,
            timeout_ms: session.timeout_ms,
            branches,
        }
    }
}

/// One branch, with the row keys it holds.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BranchView {
    branch_id: u64,
    branch_type: BranchType,
    resource_id: String,
    status: BranchStatus,
    client_id: String,
    lock_key: String,
    application_data: String,
    locks: Vec<String>,
}

impl From<&BranchSession> for BranchView {
    fn from(branch: &BranchSession) -> Self {
        Self {
            branch_id: branch.branch_id,
            branch_type: branch.branch_type,
            resource_id: branch.resource_id.clone(),
            status: branch.status,
            client_id: branch.client_id.clone(),
            lock_key: branch.lock_key.clone(),
            application_data: branch.application_data.clone(),
            locks: branch.locks.clone(),
        }
    }
}

/// A page of transactions.
#[derive(Serialize)]
pub(super) struct TransactionPage {
    pub(super) total: usize,
    pub(super) transactions: Vec<TransactionView<usize>>,
}

/// A transaction's status alone: a finished one, or the answer to an operator's call.
#[derive(Serialize)]
pub(super) struct XidStatus {
    pub(super) xid: String,
    pub(super) status: GlobalStatus,
}

/// One locked row and who holds it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LockView {
    row_key: String,
    /// The holder's XID; none if its session is gone (locks go with it, so never expected).
    xid: Option<String>,
    tx_id: u64,
    branch_id: u64,
}

impl LockView {
    pub(super) fn of(row_key: &str, owner: LockOwner, holder: Option<&GlobalSession>) -> Self {
        Self {
            row_key: row_key.to_owned(),
            xid: holder.map(|session| session.xid.clone()),
            tx_id: owner.tx_id,
            branch_id: owner.branch_id,
        }
    }
}

/// A page of locks.
#[derive(Serialize)]
pub(super) struct LockPage {
    pub(super) total: usize,
    pub(super) locks: Vec<LockView>,
}
