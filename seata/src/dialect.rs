//! What differs between Seata peers on the same wire format: the SDK version gates (spec §6.1),
//! the exception-code numbering (§5.2), and seata-go's one-byte failure messages (P1).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::enums::{BranchType, GlobalStatus, TransactionExceptionCode};
use crate::error::BodyError;

/// A Seata SDK version as registration messages carry it, compared the way Java's
/// `Version.convertVersion` does: up to four dotted parts, `-suffix` ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SdkVersion(u64);

impl SdkVersion {
    /// Builds a version from its first three parts.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self(major * 1_000_000 + minor * 10_000 + patch * 100)
    }

    /// Parses a version string; `None` when it is blank or has more than four parts.
    /// A part that is not a number counts as 0, as in Java.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() > 4 {
            return None;
        }
        let mut value = 0u64;
        for (index, part) in parts.iter().enumerate() {
            let numeric = part.split('-').next().unwrap_or_default();
            let number: u64 = numeric.parse().unwrap_or(0);
            value = value.saturating_add(number.saturating_mul(100u64.pow(3 - index as u32)));
        }
        Some(Self(value))
    }

    /// The numeric value Java compares.
    pub const fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SdkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{}.{}.{}",
            v / 1_000_000,
            v / 10_000 % 100,
            v / 100 % 100
        )?;
        match v % 100 {
            0 => Ok(()),
            build => write!(f, ".{build}"),
        }
    }
}

/// The four numberings of `TransactionExceptionCode` that Seata releases have used (spec §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExceptionCodeNumbering {
    /// Java 1.0–1.4: codes 0–18.
    #[serde(rename = "1.0")]
    V1_0,
    /// Java 1.5–1.6 and seata-go: 19 = LockKeyConflictFailFast.
    #[serde(rename = "1.5")]
    V1_5,
    /// Java 1.7–1.8: adds TransactionTimeout, CommitHeuristic, Broken (20–22).
    #[serde(rename = "1.7")]
    V1_7,
    /// Java 2.0 and later: NotRaftLeader inserted at 19, the rest shifted by one.
    #[serde(rename = "2.0")]
    V2_0,
}

use TransactionExceptionCode as Tec;

/// Codes 0–18, the same in every release.
const COMMON: [Tec; 19] = [
    Tec::Unknown,
    Tec::BeginFailed,
    Tec::LockKeyConflict,
    Tec::Io,
    Tec::BranchRollbackFailedRetriable,
    Tec::BranchRollbackFailedUnretriable,
    Tec::BranchRegisterFailed,
    Tec::BranchReportFailed,
    Tec::LockableCheckFailed,
    Tec::BranchTransactionNotExist,
    Tec::GlobalTransactionNotExist,
    Tec::GlobalTransactionNotActive,
    Tec::GlobalTransactionStatusInvalid,
    Tec::FailedToSendBranchCommitRequest,
    Tec::FailedToSendBranchRollbackRequest,
    Tec::FailedToAddBranch,
    Tec::FailedLockGlobalTranscation,
    Tec::FailedWriteSession,
    Tec::FailedStore,
];

impl ExceptionCodeNumbering {
    /// The numbering a Java client of this version decodes.
    pub fn for_java(version: SdkVersion) -> Self {
        if version >= SdkVersion::new(2, 0, 0) {
            Self::V2_0
        } else if version >= SdkVersion::new(1, 7, 0) {
            Self::V1_7
        } else if version >= SdkVersion::new(1, 5, 0) {
            Self::V1_5
        } else {
            Self::V1_0
        }
    }

    /// The codes from 19 on, in ordinal order.
    fn tail(self) -> &'static [Tec] {
        match self {
            Self::V1_0 => &[],
            Self::V1_5 => &[Tec::LockKeyConflictFailFast],
            Self::V1_7 => &[
                Tec::LockKeyConflictFailFast,
                Tec::TransactionTimeout,
                Tec::CommitHeuristic,
                Tec::Broken,
            ],
            Self::V2_0 => &[
                Tec::NotRaftLeader,
                Tec::LockKeyConflictFailFast,
                Tec::TransactionTimeout,
                Tec::CommitHeuristic,
                Tec::Broken,
            ],
        }
    }

    /// The code a wire byte stands for in this numbering.
    pub fn decode(self, byte: u8) -> Result<Tec, BodyError> {
        let index = usize::from(byte);
        let code = match index.checked_sub(COMMON.len()) {
            None => Some(COMMON[index]),
            Some(tail_index) => self.tail().get(tail_index).copied(),
        };
        code.ok_or(BodyError::UnknownEnum {
            kind: Tec::KIND,
            value: byte.into(),
        })
    }

    /// The byte for `code`; a code this numbering lacks is first replaced by its nearest
    /// meaning that the peer understands (see [`ExceptionCodeNumbering::clamp`]).
    pub fn encode(self, code: Tec) -> u8 {
        let code = self.clamp(code);
        let position = COMMON
            .iter()
            .chain(self.tail())
            .position(|c| *c == code)
            .unwrap_or(0);
        position as u8
    }

    /// The nearest code this numbering has: a peer that cannot decode a code drops the whole
    /// frame (spec P3), so an approximate meaning is better than none.
    pub fn clamp(self, code: Tec) -> Tec {
        let known = COMMON.contains(&code) || self.tail().contains(&code);
        if known {
            return code;
        }
        match code {
            // Before 1.5 there was no fail-fast variant: the plain conflict makes clients retry.
            Tec::LockKeyConflictFailFast => Tec::LockKeyConflict,
            // 1.x clients know no Raft: a transient I/O failure is what they can act on.
            Tec::NotRaftLeader => Tec::Io,
            Tec::TransactionTimeout => Tec::GlobalTransactionNotActive,
            _ => Tec::Unknown,
        }
    }
}

/// How a peer expects the `msg` of failed BranchCommit/BranchRollback/BranchReport/
/// GlobalLockQuery responses to be prefixed (spec P1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MsgLength {
    /// A two-byte length, as Java writes it.
    #[default]
    #[serde(rename = "i16")]
    I16,
    /// A one-byte length, as seata-go writes it.
    #[serde(rename = "u8")]
    U8,
}

/// Everything that decides how one peer's bodies are written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dialect {
    /// The exception-code numbering the peer uses.
    pub exception_codes: ExceptionCodeNumbering,
    /// The `msg` length prefix of the four affected branch responses.
    pub branch_msg_length: MsgLength,
    /// The highest `GlobalStatus` code the peer can decode.
    pub max_global_status: GlobalStatus,
    /// The highest `BranchType` the peer can decode.
    pub max_branch_type: BranchType,
}

impl Default for Dialect {
    fn default() -> Self {
        Self::CURRENT
    }
}

impl Dialect {
    /// Java 2.4 and later: every code this crate knows.
    pub const CURRENT: Dialect = Dialect {
        exception_codes: ExceptionCodeNumbering::V2_0,
        branch_msg_length: MsgLength::I16,
        max_global_status: GlobalStatus::StopRollbackOrRollbackRetry,
        max_branch_type: BranchType::SagaAnnotation,
    };

    /// seata-go (every release): the 1.5 numbering, one-byte failure messages, global status
    /// up to `Finished`, and no `SAGA_ANNOTATION`.
    pub const SEATA_GO: Dialect = Dialect {
        exception_codes: ExceptionCodeNumbering::V1_5,
        branch_msg_length: MsgLength::U8,
        max_global_status: GlobalStatus::Finished,
        max_branch_type: BranchType::Xa,
    };

    /// A Java client of the given SDK version.
    pub fn java(version: SdkVersion) -> Self {
        let at_least = |major, minor| version >= SdkVersion::new(major, minor, 0);
        Self {
            exception_codes: ExceptionCodeNumbering::for_java(version),
            branch_msg_length: MsgLength::I16,
            max_global_status: if at_least(2, 4) {
                GlobalStatus::StopRollbackOrRollbackRetry
            } else if at_least(1, 5) {
                GlobalStatus::RollbackRetryTimeout
            } else {
                GlobalStatus::Finished
            },
            max_branch_type: if at_least(2, 3) {
                BranchType::SagaAnnotation
            } else if at_least(1, 2) {
                BranchType::Xa
            } else {
                BranchType::Saga
            },
        }
    }

    /// A status the peer can decode: newer statuses become the older one closest in meaning.
    pub fn clamp_global_status(&self, status: GlobalStatus) -> GlobalStatus {
        use GlobalStatus as G;
        if status <= self.max_global_status {
            return status;
        }
        let older = match status {
            G::CommitRetryTimeout => G::CommitFailed,
            G::RollbackRetryTimeout => G::RollbackFailed,
            G::Deleting => G::Finished,
            G::StopCommitOrCommitRetry => G::CommitRetrying,
            G::StopRollbackOrRollbackRetry => G::RollbackRetrying,
            _ => G::UnKnown,
        };
        self.clamp_global_status(older)
    }

    /// A branch type the peer can decode.
    pub fn clamp_branch_type(&self, branch_type: BranchType) -> BranchType {
        match branch_type {
            t if t <= self.max_branch_type => t,
            BranchType::SagaAnnotation => BranchType::Saga,
            _ => BranchType::At,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_like_java() {
        let v = |s| SdkVersion::parse(s).expect("parses");
        assert_eq!(v("1.5.0").value(), 1_050_000);
        assert_eq!(v("2.3.0").value(), 2_030_000);
        assert_eq!(v("2.7.0-SNAPSHOT"), v("2.7.0"));
        assert_eq!(v("1.x.2").value(), 1_000_200);
        assert!(v("1.10.0") > v("1.9.9"));
        assert_eq!(SdkVersion::parse("  "), None);
        assert_eq!(SdkVersion::parse("1.2.3.4.5"), None);
        assert_eq!(v("1.5.2").to_string(), "1.5.2");
    }

    #[test]
    fn exception_codes_follow_each_numbering() {
        use ExceptionCodeNumbering::*;
        assert_eq!(V2_0.encode(Tec::NotRaftLeader), 19);
        assert_eq!(V2_0.encode(Tec::LockKeyConflictFailFast), 20);
        assert_eq!(V1_5.encode(Tec::LockKeyConflictFailFast), 19);
        assert_eq!(V1_7.encode(Tec::LockKeyConflictFailFast), 19);
        assert_eq!(V1_0.encode(Tec::LockKeyConflictFailFast), 2);
        assert_eq!(V1_7.encode(Tec::Broken), 22);
        assert_eq!(V2_0.encode(Tec::Broken), 23);
        assert_eq!(V1_5.encode(Tec::NotRaftLeader), 3, "1.x gets IO instead");
        assert_eq!(V2_0.decode(19), Ok(Tec::NotRaftLeader));
        assert_eq!(V1_7.decode(19), Ok(Tec::LockKeyConflictFailFast));
        assert_eq!(V1_7.decode(20), Ok(Tec::TransactionTimeout));
        assert_eq!(V1_0.decode(18), Ok(Tec::FailedStore));
        assert!(V1_0.decode(19).is_err());
        assert!(V2_0.decode(24).is_err());
        assert!(V1_5.decode(255).is_err());
        for numbering in [V1_0, V1_5, V1_7, V2_0] {
            for code in Tec::ALL {
                let byte = numbering.encode(*code);
                assert_eq!(numbering.decode(byte), Ok(numbering.clamp(*code)));
            }
        }
    }

    #[test]
    fn java_dialect_gates_statuses_and_types() {
        let d = Dialect::java(SdkVersion::new(1, 4, 2));
        assert_eq!(d.exception_codes, ExceptionCodeNumbering::V1_0);
        assert_eq!(
            d.clamp_global_status(GlobalStatus::RollbackRetryTimeout),
            GlobalStatus::RollbackFailed
        );
        assert_eq!(
            d.clamp_global_status(GlobalStatus::StopCommitOrCommitRetry),
            GlobalStatus::CommitRetrying
        );
        assert_eq!(
            d.clamp_branch_type(BranchType::SagaAnnotation),
            BranchType::Saga
        );
        let d = Dialect::java(SdkVersion::new(2, 2, 0));
        assert_eq!(
            d.clamp_global_status(GlobalStatus::Deleting),
            GlobalStatus::Finished
        );
        assert_eq!(
            d.clamp_global_status(GlobalStatus::CommitRetryTimeout),
            GlobalStatus::CommitRetryTimeout
        );
        assert_eq!(Dialect::java(SdkVersion::new(2, 7, 0)), Dialect::CURRENT);
    }
}
