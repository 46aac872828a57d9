//! What the client does with requests the server initiates (phase two, undo-log trimming).

use std::future::Future;

use crate::enums::{BranchStatus, TransactionExceptionCode};
use crate::message::{BranchEndRequest, BranchEndResponse, TxResult, UndoLogDeleteRequest};

/// Answers the server's BranchCommit/BranchRollback requests and takes its UndoLogDelete
/// notices. Each request runs in its own task, so a slow answer never stalls the connection.
pub trait ServerRequestHandler: Send + Sync + 'static {
    /// Phase two: commit the branch.
    fn branch_commit(
        &self,
        request: BranchEndRequest,
    ) -> impl Future<Output = BranchEndResponse> + Send;

    /// Phase two: roll the branch back.
    fn branch_rollback(
        &self,
        request: BranchEndRequest,
    ) -> impl Future<Output = BranchEndResponse> + Send;

    /// Trim undo-log rows older than `save_days` (never answered on the wire).
    fn undo_log_delete(&self, request: UndoLogDeleteRequest) -> impl Future<Output = ()> + Send {
        tracing::debug!(resource = %request.resource_id, "undo-log delete ignored");
        async {}
    }
}

/// For connections that serve no resources (a TM): phase-two requests are answered as
/// retryable failures, so the coordinator routes them to a real resource manager.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResources;

impl NoResources {
    fn refuse(request: BranchEndRequest, status: BranchStatus) -> BranchEndResponse {
        BranchEndResponse {
            result: TxResult::failure(
                TransactionExceptionCode::BranchTransactionNotExist,
                "this connection serves no resources",
            ),
            xid: request.xid,
            branch_id: request.branch_id,
            branch_status: status,
        }
    }
}

impl ServerRequestHandler for NoResources {
    async fn branch_commit(&self, request: BranchEndRequest) -> BranchEndResponse {
        Self::refuse(request, BranchStatus::PhaseTwoCommitFailedRetryable)
    }

    async fn branch_rollback(&self, request: BranchEndRequest) -> BranchEndResponse {
        Self::refuse(request, BranchStatus::PhaseTwoRollbackFailedRetryable)
    }
}
