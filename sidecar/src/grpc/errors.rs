//! Failures as the application sees them: gRPC statuses with a [`Reason`] it can act on.

use tonic::Status;
use txmesh_api::reason::Reason;
use txmesh_seata::message::TxResult;
use txmesh_seata::{Message, TransactionExceptionCode as Code};

use crate::fence::FenceError;
use crate::upstream::UpstreamError;

/// The coordinator answered with a failure.
pub fn refused(result: &TxResult) -> Status {
    let reason = match result.exception_code {
        Code::GlobalTransactionNotExist | Code::BranchTransactionNotExist => Reason::UnknownXid,
        Code::GlobalTransactionNotActive
        | Code::GlobalTransactionStatusInvalid
        | Code::TransactionTimeout => Reason::NotActive,
        Code::LockKeyConflict => Reason::LockConflict,
        Code::LockKeyConflictFailFast => Reason::LockConflictFailFast,
        Code::NotRaftLeader => Reason::CoordinatorUnavailable,
        _ => Reason::CoordinatorFailed,
    };
    let message = match result.msg.is_empty() {
        true => format!("the coordinator refused: {}", result.exception_code),
        false => format!(
            "the coordinator refused ({}): {}",
            result.exception_code, result.msg
        ),
    };
    reason.status(message)
}

/// No answer came.
pub fn upstream(error: &UpstreamError) -> Status {
    Reason::CoordinatorUnavailable.status(error.to_string())
}

/// The coordinator answered with the wrong message.
pub fn unexpected(answer: &Message) -> Status {
    Reason::CoordinatorFailed.status(format!(
        "the coordinator answered with an unexpected {}",
        answer.type_name()
    ))
}

/// The fence failed.
pub fn fence(error: &FenceError) -> Status {
    tracing::error!(%error, "fence failure");
    Status::internal(format!("the sidecar's TCC fence failed: {error}"))
}

/// A field is missing or malformed.
pub fn invalid(message: impl Into<String>) -> Status {
    Reason::InvalidArgument.status(message)
}

/// Checks an XID: not empty, no NUL (the fence keys on it).
pub fn check_xid(xid: &str) -> Result<&str, Status> {
    if xid.is_empty() {
        return Err(invalid("xid is required"));
    }
    if xid.contains('\0') {
        return Err(invalid("xid must not contain NUL"));
    }
    Ok(xid)
}

#[cfg(test)]
mod tests {
    use tonic::Code as GrpcCode;

    use super::*;

    #[test]
    fn coordinator_failures_map_to_actionable_reasons() {
        let cases = [
            (
                Code::GlobalTransactionNotExist,
                Reason::UnknownXid,
                GrpcCode::NotFound,
            ),
            (
                Code::GlobalTransactionNotActive,
                Reason::NotActive,
                GrpcCode::FailedPrecondition,
            ),
            (
                Code::LockKeyConflict,
                Reason::LockConflict,
                GrpcCode::Aborted,
            ),
            (
                Code::LockKeyConflictFailFast,
                Reason::LockConflictFailFast,
                GrpcCode::Aborted,
            ),
            (
                Code::NotRaftLeader,
                Reason::CoordinatorUnavailable,
                GrpcCode::Unavailable,
            ),
            (
                Code::FailedStore,
                Reason::CoordinatorFailed,
                GrpcCode::Internal,
            ),
        ];
        for (code, reason, grpc) in cases {
            let status = refused(&TxResult::failure(code, "held by 10.0.0.1:8091:5"));
            assert_eq!(Reason::of(&status), Some(reason), "{code}");
            assert_eq!(status.code(), grpc);
            assert!(status.message().contains("held by 10.0.0.1:8091:5"));
        }
        let lost = UpstreamError::NoCoordinator(std::time::Duration::from_secs(3));
        assert!(txmesh_api::reason::is_retryable(&upstream(&lost)));
        assert!(check_xid("").is_err());
        assert!(check_xid("a\0b").is_err());
        assert!(check_xid("10.0.0.1:8091:5").is_ok());
    }
}
