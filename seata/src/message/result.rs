//! The result header every response opens with (spec §4.2).

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::{Body, BodyContext};
use crate::dialect::MsgLength;
use crate::enums::{ResultCode, TransactionExceptionCode};
use crate::error::BodyError;
use crate::wire::{Reader, put_str8, put_str16};

/// `resultCode`, the failure `msg` (on the wire only when failed) and the exception code.
/// Alone, it is the whole of a BranchReportResponse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxResult {
    /// Success or failure.
    pub result_code: ResultCode,
    /// Why it failed; not sent on success.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub msg: String,
    /// The failure's class; `Unknown` on success.
    pub exception_code: TransactionExceptionCode,
}

impl TxResult {
    /// A success.
    pub fn success() -> Self {
        Self {
            result_code: ResultCode::Success,
            msg: String::new(),
            exception_code: TransactionExceptionCode::Unknown,
        }
    }

    /// A failure with its class and reason.
    pub fn failure(exception_code: TransactionExceptionCode, msg: impl Into<String>) -> Self {
        Self {
            result_code: ResultCode::Failed,
            msg: msg.into(),
            exception_code,
        }
    }

    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        self.result_code == ResultCode::Success
    }

    /// Reads the header with a two-byte `msg` length.
    pub(crate) fn read_with(
        r: &mut Reader<'_>,
        ctx: &BodyContext,
        msg_length: MsgLength,
    ) -> Result<Self, BodyError> {
        let (result_code, msg) = read_result_code(r, msg_length)?;
        let exception_code = ctx
            .dialect
            .exception_codes
            .decode(r.u8("transactionExceptionCode")?)?;
        Ok(Self {
            result_code,
            msg,
            exception_code,
        })
    }

    pub(crate) fn write_with(&self, dst: &mut BytesMut, ctx: &BodyContext, msg_length: MsgLength) {
        write_result_code(dst, self.result_code, &self.msg, msg_length);
        dst.put_u8(ctx.dialect.exception_codes.encode(self.exception_code));
    }
}

impl Body for TxResult {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        Self::read_with(r, ctx, ctx.dialect.branch_msg_length)
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        self.write_with(dst, ctx, ctx.dialect.branch_msg_length);
        Ok(())
    }
}

/// `resultCode` and, when it is `Failed`, the `msg` that follows it.
pub(crate) fn read_result_code(
    r: &mut Reader<'_>,
    msg_length: MsgLength,
) -> Result<(ResultCode, String), BodyError> {
    let code = ResultCode::from_code(r.u8("resultCode")?)?;
    let msg = match (code, msg_length) {
        (ResultCode::Success, _) => String::new(),
        (ResultCode::Failed, MsgLength::I16) => r.str16("msg")?,
        (ResultCode::Failed, MsgLength::U8) => r.str8("msg")?,
    };
    Ok((code, msg))
}

pub(crate) fn write_result_code(
    dst: &mut BytesMut,
    code: ResultCode,
    msg: &str,
    msg_length: MsgLength,
) {
    dst.put_u8(code.code());
    match (code, msg_length) {
        (ResultCode::Success, _) => {}
        (ResultCode::Failed, MsgLength::I16) => put_str16(dst, msg),
        (ResultCode::Failed, MsgLength::U8) => put_str8(dst, msg),
    }
}
