//! Global transaction messages (spec §4.5): begin, commit, rollback, status, report.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::{Body, BodyContext, TxResult};
use crate::dialect::MsgLength;
use crate::enums::GlobalStatus;
use crate::error::BodyError;
use crate::wire::{Reader, put_str16};

/// GlobalBeginRequest (1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalBeginRequest {
    /// Timeout in milliseconds (Java's default is 60000).
    pub timeout: i32,
    /// The transaction's name, for humans.
    pub transaction_name: String,
}

impl Body for GlobalBeginRequest {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            timeout: r.i32("timeout")?,
            transaction_name: r.str16("transactionName")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, _: &BodyContext) -> Result<(), BodyError> {
        dst.put_i32(self.timeout);
        put_str16(dst, &self.transaction_name);
        Ok(())
    }
}

/// GlobalBeginResponse (2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalBeginResponse {
    /// Outcome.
    #[serde(flatten)]
    pub result: TxResult,
    /// The new XID, `ip:port:transactionId` (empty on failure).
    pub xid: String,
    /// Free text.
    pub extra_data: String,
}

impl Body for GlobalBeginResponse {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            result: TxResult::read_with(r, ctx, MsgLength::I16)?,
            xid: r.str16("xid")?,
            extra_data: r.str16("extraData")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        self.result.write_with(dst, ctx, MsgLength::I16);
        put_str16(dst, &self.xid);
        put_str16(dst, &self.extra_data);
        Ok(())
    }
}

/// GlobalCommitRequest (7), GlobalRollbackRequest (9) and GlobalStatusRequest (15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalEndRequest {
    /// The transaction.
    pub xid: String,
    /// Free text.
    pub extra_data: String,
}

impl Body for GlobalEndRequest {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            xid: r.str16("xid")?,
            extra_data: r.str16("extraData")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, _: &BodyContext) -> Result<(), BodyError> {
        put_str16(dst, &self.xid);
        put_str16(dst, &self.extra_data);
        Ok(())
    }
}

/// GlobalReportRequest (17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalReportRequest {
    /// The transaction.
    pub xid: String,
    /// Free text.
    pub extra_data: String,
    /// The reported status; `None` travels as −1.
    pub global_status: Option<GlobalStatus>,
}

impl Body for GlobalReportRequest {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        let xid = r.str16("xid")?;
        let extra_data = r.str16("extraData")?;
        let global_status = match r.u8("globalStatus")? {
            0xFF => None,
            code => Some(GlobalStatus::from_code(code)?),
        };
        Ok(Self {
            xid,
            extra_data,
            global_status,
        })
    }

    fn write(&self, dst: &mut BytesMut, _: &BodyContext) -> Result<(), BodyError> {
        put_str16(dst, &self.xid);
        put_str16(dst, &self.extra_data);
        dst.put_u8(self.global_status.map_or(0xFF, GlobalStatus::code));
        Ok(())
    }
}

/// GlobalCommitResponse (8), GlobalRollbackResponse (10), GlobalStatusResponse (16) and
/// GlobalReportResponse (18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalEndResponse {
    /// Outcome.
    #[serde(flatten)]
    pub result: TxResult,
    /// The transaction's status, written in what the peer can decode.
    pub global_status: GlobalStatus,
}

impl Body for GlobalEndResponse {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            result: TxResult::read_with(r, ctx, MsgLength::I16)?,
            global_status: GlobalStatus::from_code(r.u8("globalStatus")?)?,
        })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        self.result.write_with(dst, ctx, MsgLength::I16);
        dst.put_u8(ctx.dialect.clamp_global_status(self.global_status).code());
        Ok(())
    }
}
