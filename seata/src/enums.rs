//! The enumerations that travel as one byte (spec §2.2, §5), each with its explicit code.
//! JSON shows them by their Seata names and accepts either the name or the number.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer as SerdeSerializer};

use crate::error::BodyError;

/// Names, Display and serde for an enum whose variants carry Seata's names.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $wire_name:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// What this enum is called in error messages.
            pub const KIND: &'static str = $kind;

            /// The name Seata gives this value.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $wire_name),+ }
            }

            /// The value with this Seata name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($wire_name => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Serde by Seata name in human-readable formats (JSON) and by one-byte code in binary ones
/// (the Raft log), where names would waste space and `deserialize_any` is unavailable.
macro_rules! serde_by_code {
    ($name:ident, $code:expr, $from_code:expr) => {
        impl Serialize for $name {
            fn serialize<S: SerdeSerializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(self.name())
                } else {
                    let code: fn($name) -> u8 = $code;
                    s.serialize_u8(code(*self))
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let from_code: fn(u8) -> Option<$name> = $from_code;
                let visitor = CodeOrName::new(from_code, $name::from_name);
                if d.is_human_readable() {
                    d.deserialize_any(visitor)
                } else {
                    d.deserialize_u8(visitor)
                }
            }
        }
    };
}

/// [`named_enum!`] plus a fixed one-byte code per value, decodable from JSON by name or code.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $wire_name:literal),+ $(,)? }) => {
        named_enum!($(#[$meta])* $name, $kind, { $($(#[$vmeta])* $variant => $wire_name),+ });

        impl $name {
            /// The byte that stands for this value on the wire.
            pub const fn code(self) -> u8 {
                match self { $($name::$variant => $code),+ }
            }

            /// The value a wire byte stands for; unknown bytes are a typed error.
            pub fn from_code(code: u8) -> Result<Self, BodyError> {
                match code {
                    $($code => Ok($name::$variant),)+
                    other => Err(BodyError::UnknownEnum { kind: $kind, value: other.into() }),
                }
            }
        }

        serde_by_code!($name, $name::code, |c| $name::from_code(c).ok());
    };
}

/// Visits a JSON number (the wire code) or string (the Seata name).
struct CodeOrName<T> {
    by_code: fn(u8) -> Option<T>,
    by_name: fn(&str) -> Option<T>,
}

impl<T> CodeOrName<T> {
    fn new(by_code: fn(u8) -> Option<T>, by_name: fn(&str) -> Option<T>) -> Self {
        Self { by_code, by_name }
    }
}

impl<T> Visitor<'_> for CodeOrName<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Seata enum name or its numeric code")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        u8::try_from(v)
            .ok()
            .and_then(self.by_code)
            .ok_or_else(|| E::custom(format!("unknown code {v}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("unknown code {v}")))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.by_name)(v).ok_or_else(|| E::custom(format!("unknown name {v:?}")))
    }
}

wire_enum!(
    /// Byte 9 of the frame header (spec §2.2).
    FrameType, "frame type", {
        /// A request that expects a response.
        Request = 0 => "Request",
        /// A response to a request with the same id.
        Response = 1 => "Response",
        /// A request flagged as needing no RPC-level answer (Seata still answers most, P4).
        Oneway = 2 => "Oneway",
        /// Ping.
        HeartbeatRequest = 3 => "HeartbeatRequest",
        /// Pong.
        HeartbeatResponse = 4 => "HeartbeatResponse",
    }
);

impl FrameType {
    /// Heartbeat frames carry no body.
    pub const fn is_heartbeat(self) -> bool {
        matches!(
            self,
            FrameType::HeartbeatRequest | FrameType::HeartbeatResponse
        )
    }
}

wire_enum!(
    /// Byte 10 of the frame header: the serializer of the body (spec §5.6).
    Serializer, "serializer", {
        /// Seata's own binary codec, the only one implemented.
        Seata = 1 => "SEATA",
        /// Protocol buffers.
        Protobuf = 2 => "PROTOBUF",
        /// Kryo.
        Kryo = 4 => "KRYO",
        /// FST (removed in Seata 2.0).
        Fst = 8 => "FST",
        /// Hessian.
        Hessian = 22 => "HESSIAN",
        /// Jackson.
        Jackson = 50 => "JACKSON",
        /// Fastjson2.
        Fastjson2 = 100 => "FASTJSON2",
        /// gRPC transport serializer.
        Grpc = 40 => "GRPC",
        /// Fury.
        Fury = 86 => "FURY",
        /// Fory.
        Fory = 87 => "FORY",
    }
);

wire_enum!(
    /// Byte 11 of the frame header: how the body is compressed (spec §5.7).
    Compressor, "compressor", {
        /// Not compressed.
        None = 0 => "NONE",
        /// gzip (RFC 1952).
        Gzip = 1 => "GZIP",
        /// A zip archive with one entry.
        Zip = 2 => "ZIP",
        /// 7z.
        SevenZ = 3 => "SEVENZ",
        /// bzip2.
        Bzip2 = 4 => "BZIP2",
        /// lz4-java block stream.
        Lz4 = 5 => "LZ4",
        /// zlib (RFC 1950), `java.util.zip.Deflater` defaults.
        Deflater = 6 => "DEFLATER",
        /// A standard zstd frame.
        Zstd = 7 => "ZSTD",
    }
);

wire_enum!(
    /// Outcome of a request (spec §5.1).
    ResultCode, "result code", {
        /// The request failed; a message follows on the wire.
        Failed = 0 => "Failed",
        /// The request succeeded.
        Success = 1 => "Success",
    }
);

wire_enum!(
    /// Status of a global transaction (spec §5.3).
    GlobalStatus, "global status", {
        /// Not known (the TM's local status before begin).
        UnKnown = 0 => "UnKnown",
        /// Open: accepts branch registrations.
        Begin = 1 => "Begin",
        /// Phase two commit in progress.
        Committing = 2 => "Committing",
        /// Phase two commit waits for a retry.
        CommitRetrying = 3 => "CommitRetrying",
        /// Phase two rollback in progress.
        Rollbacking = 4 => "Rollbacking",
        /// Phase two rollback waits for a retry.
        RollbackRetrying = 5 => "RollbackRetrying",
        /// Rolling back because the transaction timed out.
        TimeoutRollbacking = 6 => "TimeoutRollbacking",
        /// Timed-out rollback waits for a retry.
        TimeoutRollbackRetrying = 7 => "TimeoutRollbackRetrying",
        /// Committed as far as the TM knows; AT branches finish in the background.
        AsyncCommitting = 8 => "AsyncCommitting",
        /// Every branch committed.
        Committed = 9 => "Committed",
        /// A branch failed to commit for good.
        CommitFailed = 10 => "CommitFailed",
        /// Every branch rolled back.
        Rollbacked = 11 => "Rollbacked",
        /// A branch failed to roll back for good.
        RollbackFailed = 12 => "RollbackFailed",
        /// Rolled back after a timeout.
        TimeoutRollbacked = 13 => "TimeoutRollbacked",
        /// A timed-out rollback failed for good.
        TimeoutRollbackFailed = 14 => "TimeoutRollbackFailed",
        /// Ended; also the answer for an unknown XID.
        Finished = 15 => "Finished",
        /// Commit retries exceeded their time limit (1.5.0+).
        CommitRetryTimeout = 16 => "CommitRetryTimeout",
        /// Rollback retries exceeded their time limit (1.5.0+).
        RollbackRetryTimeout = 17 => "RollbackRetryTimeout",
        /// Being deleted by an operator (2.4.0+).
        Deleting = 18 => "Deleting",
        /// Commit retries stopped by an operator (2.4.0+).
        StopCommitOrCommitRetry = 19 => "StopCommitOrCommitRetry",
        /// Rollback retries stopped by an operator (2.4.0+).
        StopRollbackOrRollbackRetry = 20 => "StopRollbackOrRollbackRetry",
    }
);

wire_enum!(
    /// Status of a branch (spec §5.4).
    BranchStatus, "branch status", {
        /// Not known.
        Unknown = 0 => "Unknown",
        /// Registered with the TC.
        Registered = 1 => "Registered",
        /// Phase one finished.
        PhaseOneDone = 2 => "PhaseOne_Done",
        /// Phase one failed.
        PhaseOneFailed = 3 => "PhaseOne_Failed",
        /// Phase one timed out.
        PhaseOneTimeout = 4 => "PhaseOne_Timeout",
        /// Committed in phase two.
        PhaseTwoCommitted = 5 => "PhaseTwo_Committed",
        /// Commit failed; try again.
        PhaseTwoCommitFailedRetryable = 6 => "PhaseTwo_CommitFailed_Retryable",
        /// Commit failed for good.
        PhaseTwoCommitFailedUnretryable = 7 => "PhaseTwo_CommitFailed_Unretryable",
        /// Rolled back in phase two.
        PhaseTwoRollbacked = 8 => "PhaseTwo_Rollbacked",
        /// Rollback failed; try again.
        PhaseTwoRollbackFailedRetryable = 9 => "PhaseTwo_RollbackFailed_Retryable",
        /// Rollback failed for good.
        PhaseTwoRollbackFailedUnretryable = 10 => "PhaseTwo_RollbackFailed_Unretryable",
        /// XA commit: the resource manager does not know the branch; retryable (1.5.0+).
        PhaseTwoCommitFailedXaerNotaRetryable = 11 => "PhaseTwo_CommitFailed_XAER_NOTA_Retryable",
        /// XA rollback: the resource manager does not know the branch; retryable (1.5.0+).
        PhaseTwoRollbackFailedXaerNotaRetryable = 12 => "PhaseTwo_RollbackFailed_XAER_NOTA_Retryable",
        /// XA branch that only read (2.2.0+).
        PhaseOneRdonly = 13 => "PhaseOne_RDONLY",
        /// Retries stopped by an operator (2.4.0+).
        StopRetry = 14 => "STOP_RETRY",
        /// Phase one failed in preparation; skipped by phase two like `PhaseOne_Failed`
        /// (later 2.x).
        PhaseOnePrepareFailed = 15 => "PhaseOne_PrepareFailed",
    }
);

wire_enum!(
    /// Transaction mode of a branch (spec §5.5).
    BranchType, "branch type", {
        /// Automatic (undo log) mode.
        At = 0 => "AT",
        /// Try-Confirm-Cancel.
        Tcc = 1 => "TCC",
        /// Saga state machine.
        Saga = 2 => "SAGA",
        /// XA (1.2.0+).
        Xa = 3 => "XA",
        /// Annotation-driven Saga (2.3.0+).
        SagaAnnotation = 4 => "SAGA_ANNOTATION",
    }
);

named_enum!(
    /// Why a transaction request failed (spec §5.2). The byte that carries it depends on the
    /// peer's Seata version: see [`crate::ExceptionCodeNumbering`].
    TransactionExceptionCode, "transaction exception code", {
        /// No error, or an unclassified one.
        Unknown => "Unknown",
        /// Begin failed.
        BeginFailed => "BeginFailed",
        /// A row lock is held by another global transaction.
        LockKeyConflict => "LockKeyConflict",
        /// An I/O failure.
        Io => "IO",
        /// A branch rollback failed; retryable.
        BranchRollbackFailedRetriable => "BranchRollbackFailed_Retriable",
        /// A branch rollback failed for good.
        BranchRollbackFailedUnretriable => "BranchRollbackFailed_Unretriable",
        /// Branch registration failed.
        BranchRegisterFailed => "BranchRegisterFailed",
        /// Branch report failed.
        BranchReportFailed => "BranchReportFailed",
        /// The lock check failed.
        LockableCheckFailed => "LockableCheckFailed",
        /// No such branch.
        BranchTransactionNotExist => "BranchTransactionNotExist",
        /// No such global transaction.
        GlobalTransactionNotExist => "GlobalTransactionNotExist",
        /// The global transaction no longer accepts this request.
        GlobalTransactionNotActive => "GlobalTransactionNotActive",
        /// The global transaction is in a status that forbids this request.
        GlobalTransactionStatusInvalid => "GlobalTransactionStatusInvalid",
        /// Sending BranchCommit failed.
        FailedToSendBranchCommitRequest => "FailedToSendBranchCommitRequest",
        /// Sending BranchRollback failed.
        FailedToSendBranchRollbackRequest => "FailedToSendBranchRollbackRequest",
        /// Adding the branch failed.
        FailedToAddBranch => "FailedToAddBranch",
        /// Locking the global session failed (Seata's spelling kept).
        FailedLockGlobalTranscation => "FailedLockGlobalTranscation",
        /// Writing the session failed.
        FailedWriteSession => "FailedWriteSession",
        /// The store failed.
        FailedStore => "FailedStore",
        /// This node is not the Raft leader (2.0.0+).
        NotRaftLeader => "NotRaftLeader",
        /// The lock holder is rolling back: fail fast instead of retrying (1.5.0+).
        LockKeyConflictFailFast => "LockKeyConflictFailFast",
        /// The transaction timed out (1.7.0+).
        TransactionTimeout => "TransactionTimeout",
        /// Commit outcome is heuristic (1.7.0+).
        CommitHeuristic => "CommitHeuristic",
        /// The transaction is broken (1.7.0+).
        Broken => "Broken",
    }
);

// Its compact code is the current (2.x) numbering, which is also its declaration order.
serde_by_code!(
    TransactionExceptionCode,
    |c| crate::ExceptionCodeNumbering::V2_0.encode(c),
    |c| crate::ExceptionCodeNumbering::V2_0.decode(c).ok()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_errors() {
        for s in GlobalStatus::ALL {
            assert_eq!(GlobalStatus::from_code(s.code()), Ok(*s));
        }
        assert_eq!(GlobalStatus::ALL.len(), 21);
        assert_eq!(BranchStatus::ALL.len(), 16);
        assert_eq!(
            BranchType::from_code(5),
            Err(BodyError::UnknownEnum {
                kind: "branch type",
                value: 5
            })
        );
        assert_eq!(Serializer::from_code(0x16), Ok(Serializer::Hessian));
        assert!(FrameType::from_code(5).is_err());
    }

    #[test]
    fn json_accepts_names_and_codes() {
        let by_name: BranchStatus = serde_json::from_str("\"PhaseTwo_Committed\"").expect("name");
        let by_code: BranchStatus = serde_json::from_str("5").expect("code");
        assert_eq!(by_name, BranchStatus::PhaseTwoCommitted);
        assert_eq!(by_code, by_name);
        assert_eq!(
            serde_json::to_string(&by_name).expect("json"),
            "\"PhaseTwo_Committed\""
        );
        assert!(serde_json::from_str::<BranchStatus>("\"Nope\"").is_err());
        assert!(serde_json::from_str::<BranchStatus>("300").is_err());
    }
}
