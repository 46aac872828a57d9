//! Branch messages (spec §4.5): register, report, lock query, phase two, undo-log delete.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::{Body, BodyContext, TxResult};
use crate::dialect::MsgLength;
use crate::enums::{BranchStatus, BranchType};
use crate::error::BodyError;
use crate::wire::{Reader, put_str16, put_str32};

/// BranchRegisterRequest (11) and GlobalLockQueryRequest (21), which share one layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchRegisterRequest {
    /// The global transaction.
    pub xid: String,
    /// The branch's mode.
    pub branch_type: BranchType,
    /// The resource (a JDBC URL, a TCC action name…).
    pub resource_id: String,
    /// AT row locks, `table:pk1,pk2;table2:pk`.
    pub lock_key: String,
    /// Opaque data for phase two (JSON in practice).
    pub application_data: String,
}

impl Body for BranchRegisterRequest {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            xid: r.str16("xid")?,
            branch_type: BranchType::from_code(r.u8("branchType")?)?,
            resource_id: r.str16("resourceId")?,
            lock_key: r.str32("lockKey")?,
            application_data: r.str32("applicationData")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, _: &BodyContext) -> Result<(), BodyError> {
        put_str16(dst, &self.xid);
        dst.put_u8(self.branch_type.code());
        put_str16(dst, &self.resource_id);
        put_str32(dst, &self.lock_key);
        put_str32(dst, &self.application_data);
        Ok(())
    }
}

/// BranchRegisterResponse (12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchRegisterResponse {
    /// Outcome; a lock conflict is `LockKeyConflict`.
    #[serde(flatten)]
    pub result: TxResult,
    /// The new branch id (0 on failure).
    pub branch_id: i64,
}

impl Body for BranchRegisterResponse {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            result: TxResult::read_with(r, ctx, MsgLength::I16)?,
            branch_id: r.i64("branchId")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        self.result.write_with(dst, ctx, MsgLength::I16);
        dst.put_i64(self.branch_id);
        Ok(())
    }
}

/// BranchReportRequest (13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchReportRequest {
    /// The global transaction.
    pub xid: String,
    /// The branch.
    pub branch_id: i64,
    /// Its phase-one outcome.
    pub status: BranchStatus,
    /// The resource.
    pub resource_id: String,
    /// Opaque data for phase two.
    pub application_data: String,
    /// The branch's mode (always AT from Java clients before 2.7.0).
    pub branch_type: BranchType,
}

impl Body for BranchReportRequest {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            xid: r.str16("xid")?,
            branch_id: r.i64("branchId")?,
            status: BranchStatus::from_code(r.u8("status")?)?,
            resource_id: r.str16("resourceId")?,
            application_data: r.str32("applicationData")?,
            branch_type: BranchType::from_code(r.u8("branchType")?)?,
        })
    }

    fn write(&self, dst: &mut BytesMut, _: &BodyContext) -> Result<(), BodyError> {
        put_str16(dst, &self.xid);
        dst.put_i64(self.branch_id);
        dst.put_u8(self.status.code());
        put_str16(dst, &self.resource_id);
        put_str32(dst, &self.application_data);
        dst.put_u8(self.branch_type.code());
        Ok(())
    }
}

/// GlobalLockQueryResponse (22).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalLockQueryResponse {
    /// Outcome (seata-go writes a failed `msg` with a one-byte length).
    #[serde(flatten)]
    pub result: TxResult,
    /// Whether every queried lock is free (two bytes on the wire).
    pub lockable: bool,
}

impl Body for GlobalLockQueryResponse {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        let result = TxResult::read(r, ctx)?;
        let lockable = match r.i16("lockable")? {
            0 => false,
            1 => true,
            other => {
                return Err(BodyError::UnknownEnum {
                    kind: "lockable",
                    value: other.into(),
                });
            }
        };
        Ok(Self { result, lockable })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        self.result.write(dst, ctx)?;
        dst.put_i16(i16::from(self.lockable));
        Ok(())
    }
}

/// BranchCommitRequest (3) and BranchRollbackRequest (5), TC → RM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchEndRequest {
    /// The global transaction (never empty: Java RMs stop decoding at an empty one).
    pub xid: String,
    /// The branch.
    pub branch_id: i64,
    /// The branch's mode, written in what the peer can decode.
    pub branch_type: BranchType,
    /// The resource (never empty: Java RMs then skip applicationData).
    pub resource_id: String,
    /// The data registered with the branch.
    pub application_data: String,
}

impl Body for BranchEndRequest {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            xid: r.str16("xid")?,
            branch_id: r.i64("branchId")?,
            branch_type: BranchType::from_code(r.u8("branchType")?)?,
            resource_id: r.str16("resourceId")?,
            application_data: r.str32("applicationData")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        put_str16(dst, &self.xid);
        dst.put_i64(self.branch_id);
        dst.put_u8(ctx.dialect.clamp_branch_type(self.branch_type).code());
        put_str16(dst, &self.resource_id);
        put_str32(dst, &self.application_data);
        Ok(())
    }
}

/// BranchCommitResponse (4) and BranchRollbackResponse (6), RM → TC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchEndResponse {
    /// Outcome (seata-go writes a failed `msg` with a one-byte length).
    #[serde(flatten)]
    pub result: TxResult,
    /// The global transaction.
    pub xid: String,
    /// The branch.
    pub branch_id: i64,
    /// The branch's status after phase two.
    pub branch_status: BranchStatus,
}

impl Body for BranchEndResponse {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            result: TxResult::read(r, ctx)?,
            xid: r.str16("xid")?,
            branch_id: r.i64("branchId")?,
            branch_status: BranchStatus::from_code(r.u8("branchStatus")?)?,
        })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        self.result.write(dst, ctx)?;
        put_str16(dst, &self.xid);
        dst.put_i64(self.branch_id);
        dst.put_u8(self.branch_status.code());
        Ok(())
    }
}

/// UndoLogDeleteRequest (111), TC → RM, never answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoLogDeleteRequest {
    /// Always AT.
    pub branch_type: BranchType,
    /// The resource whose undo log to trim.
    pub resource_id: String,
    /// Keep rows younger than this many days (Seata's default is 7).
    pub save_days: i16,
}

impl Body for UndoLogDeleteRequest {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            branch_type: BranchType::from_code(r.u8("branchType")?)?,
            resource_id: r.str16("resourceId")?,
            save_days: r.i16("saveDays")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, _: &BodyContext) -> Result<(), BodyError> {
        dst.put_u8(self.branch_type.code());
        put_str16(dst, &self.resource_id);
        dst.put_i16(self.save_days);
        Ok(())
    }
}
