//! The error reasons of `txmesh.v1` (see the head of `transactions.proto`): a gRPC status
//! carries one in its `txmesh-reason` metadata entry, and `txmesh-retryable` says whether
//! repeating the same call may succeed.

use std::fmt;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key naming the [`Reason`].
pub const REASON_KEY: &str = "txmesh-reason";
/// Metadata key saying whether the call may be repeated (`"true"` or `"false"`).
pub const RETRYABLE_KEY: &str = "txmesh-retryable";

/// Why a call failed, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The coordinator does not know the transaction.
    UnknownXid,
    /// The transaction no longer accepts this call.
    NotActive,
    /// A row is locked by another transaction (the message names it).
    LockConflict,
    /// The lock holder is rolling back: do not wait.
    LockConflictFailFast,
    /// A field is missing or malformed.
    InvalidArgument,
    /// No coordinator answered in time.
    CoordinatorUnavailable,
    /// The coordinator answered that it could not do it.
    CoordinatorFailed,
    /// The sidecar is stopping.
    ShuttingDown,
    /// This participant already rolled the transaction back here: a late try must not run.
    AlreadyCancelled,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 9] = [
        Reason::UnknownXid,
        Reason::NotActive,
        Reason::LockConflict,
        Reason::LockConflictFailFast,
        Reason::InvalidArgument,
        Reason::CoordinatorUnavailable,
        Reason::CoordinatorFailed,
        Reason::ShuttingDown,
        Reason::AlreadyCancelled,
    ];

    /// The name carried in `txmesh-reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownXid => "UNKNOWN_XID",
            Reason::NotActive => "NOT_ACTIVE",
            Reason::LockConflict => "LOCK_CONFLICT",
            Reason::LockConflictFailFast => "LOCK_CONFLICT_FAIL_FAST",
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::CoordinatorUnavailable => "COORDINATOR_UNAVAILABLE",
            Reason::CoordinatorFailed => "COORDINATOR_FAILED",
            Reason::ShuttingDown => "SHUTTING_DOWN",
            Reason::AlreadyCancelled => "ALREADY_CANCELLED",
        }
    }

    /// The reason with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The gRPC code that goes with it.
    pub const fn code(self) -> Code {
        match self {
            Reason::UnknownXid => Code::NotFound,
            Reason::NotActive | Reason::AlreadyCancelled => Code::FailedPrecondition,
            Reason::LockConflict | Reason::LockConflictFailFast => Code::Aborted,
            Reason::InvalidArgument => Code::InvalidArgument,
            Reason::CoordinatorUnavailable | Reason::ShuttingDown => Code::Unavailable,
            Reason::CoordinatorFailed => Code::Internal,
        }
    }

    /// Whether repeating the same call may succeed.
    pub const fn retryable(self) -> bool {
        matches!(
            self,
            Reason::LockConflict | Reason::CoordinatorUnavailable | Reason::ShuttingDown
        )
    }

    /// A status with this reason, its code, and `message`.
    pub fn status(self, message: impl Into<String>) -> Status {
        let mut status = Status::new(self.code(), message);
        let metadata = status.metadata_mut();
        metadata.insert(REASON_KEY, MetadataValue::from_static(self.as_str()));
        let retryable = if self.retryable() { "true" } else { "false" };
        metadata.insert(RETRYABLE_KEY, MetadataValue::from_static(retryable));
        status
    }

    /// The reason a status carries, if it carries one.
    pub fn of(status: &Status) -> Option<Self> {
        let value = status.metadata().get(REASON_KEY)?.to_str().ok()?;
        Self::from_name(value)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether repeating the call that failed with `status` may succeed: what `txmesh-retryable`
/// says, else whether the code is `UNAVAILABLE` (a transport failure before any answer).
pub fn is_retryable(status: &Status) -> bool {
    match status.metadata().get(RETRYABLE_KEY).map(|v| v.to_str()) {
        Some(Ok(value)) => value == "true",
        _ => status.code() == Code::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_a_status() {
        for reason in Reason::ALL {
            let status = reason.status("why");
            assert_eq!(Reason::of(&status), Some(reason));
            assert_eq!(status.code(), reason.code());
            assert_eq!(is_retryable(&status), reason.retryable());
        }
        assert_eq!(Reason::of(&Status::internal("plain")), None);
        assert!(is_retryable(&Status::unavailable("no route")));
        assert!(!is_retryable(&Status::internal("plain")));
    }
}
