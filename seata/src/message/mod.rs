//! Message bodies under the SEATA codec (spec §3–§4): a 16-bit type code, then the fields of
//! that message in wire order.

mod batch;
mod branch;
mod global;
mod register;
mod result;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

pub use batch::{BatchResultMessage, MergeResultMessage, MergedWarpMessage};
pub use branch::{
    BranchEndRequest, BranchEndResponse, BranchRegisterRequest, BranchRegisterResponse,
    BranchReportRequest, GlobalLockQueryResponse, UndoLogDeleteRequest,
};
pub use global::{
    GlobalBeginRequest, GlobalBeginResponse, GlobalEndRequest, GlobalEndResponse,
    GlobalReportRequest,
};
pub use register::{RegisterRequest, RegisterResponse, RegisterRmRequest, UnregisterRmResponse};
pub use result::TxResult;

use crate::dialect::{Dialect, MsgLength};
use crate::error::BodyError;
use crate::wire::Reader;

/// What a body's layout depends on besides its own bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyContext {
    /// The frame's protocol version byte: registration responses differ in version 2.
    pub protocol_version: u8,
    /// The peer's numbering and quirks.
    pub dialect: Dialect,
}

impl BodyContext {
    /// Protocol version 1 with the given dialect.
    pub const fn v1(dialect: Dialect) -> Self {
        Self {
            protocol_version: 1,
            dialect,
        }
    }

    fn with_msg_length(self, branch_msg_length: MsgLength) -> Self {
        Self {
            dialect: Dialect {
                branch_msg_length,
                ..self.dialect
            },
            ..self
        }
    }
}

impl Default for BodyContext {
    fn default() -> Self {
        Self::v1(Dialect::CURRENT)
    }
}

/// One message body type: how its payload (after the type code) is read and written.
pub(crate) trait Body: Sized {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError>;
    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError>;
}

macro_rules! messages {
    ($($(#[$doc:meta])* $variant:ident($ty:ty) = $code:literal => $name:literal),+ $(,)?) => {
        /// Every message that can travel in a frame body, tagged in JSON by its Seata class name.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum Message {
            $($(#[$doc])* #[serde(rename = $name)] $variant($ty)),+
        }

        impl Message {
            /// The 16-bit type code that opens the body.
            pub const fn type_code(&self) -> i16 {
                match self { $(Message::$variant(_) => $code),+ }
            }

            /// The Seata class name of this message.
            pub const fn type_name(&self) -> &'static str {
                match self { $(Message::$variant(_) => $name),+ }
            }

            /// The Seata class name for a type code.
            pub fn name_of(code: i16) -> Option<&'static str> {
                match code { $($code => Some($name),)+ _ => None }
            }

            fn read_payload(code: i16, r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
                match code {
                    $($code => Ok(Message::$variant(<$ty as Body>::read(r, ctx)?)),)+
                    other => Err(BodyError::UnknownTypeCode(other)),
                }
            }

            fn write_payload(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
                match self { $(Message::$variant(m) => m.write(dst, ctx)),+ }
            }
        }
    };
}

messages! {
    /// TM → TC: open a global transaction.
    GlobalBeginRequest(GlobalBeginRequest) = 1 => "GlobalBeginRequest",
    /// TC → TM: the new XID.
    GlobalBeginResponse(GlobalBeginResponse) = 2 => "GlobalBeginResponse",
    /// TC → RM: commit a branch.
    BranchCommitRequest(BranchEndRequest) = 3 => "BranchCommitRequest",
    /// RM → TC: outcome of a branch commit.
    BranchCommitResponse(BranchEndResponse) = 4 => "BranchCommitResponse",
    /// TC → RM: roll a branch back.
    BranchRollbackRequest(BranchEndRequest) = 5 => "BranchRollbackRequest",
    /// RM → TC: outcome of a branch rollback.
    BranchRollbackResponse(BranchEndResponse) = 6 => "BranchRollbackResponse",
    /// TM → TC: commit a global transaction.
    GlobalCommitRequest(GlobalEndRequest) = 7 => "GlobalCommitRequest",
    /// TC → TM: status after the commit request.
    GlobalCommitResponse(GlobalEndResponse) = 8 => "GlobalCommitResponse",
    /// TM → TC: roll a global transaction back.
    GlobalRollbackRequest(GlobalEndRequest) = 9 => "GlobalRollbackRequest",
    /// TC → TM: status after the rollback request.
    GlobalRollbackResponse(GlobalEndResponse) = 10 => "GlobalRollbackResponse",
    /// RM → TC: join a global transaction as a branch.
    BranchRegisterRequest(BranchRegisterRequest) = 11 => "BranchRegisterRequest",
    /// TC → RM: the new branch id.
    BranchRegisterResponse(BranchRegisterResponse) = 12 => "BranchRegisterResponse",
    /// RM → TC: phase-one outcome of a branch.
    BranchReportRequest(BranchReportRequest) = 13 => "BranchReportRequest",
    /// TC → RM: report acknowledged.
    BranchReportResponse(TxResult) = 14 => "BranchReportResponse",
    /// TM → TC: ask for a global transaction's status.
    GlobalStatusRequest(GlobalEndRequest) = 15 => "GlobalStatusRequest",
    /// TC → TM: the status.
    GlobalStatusResponse(GlobalEndResponse) = 16 => "GlobalStatusResponse",
    /// TM → TC: report a status (Saga).
    GlobalReportRequest(GlobalReportRequest) = 17 => "GlobalReportRequest",
    /// TC → TM: the status after the report.
    GlobalReportResponse(GlobalEndResponse) = 18 => "GlobalReportResponse",
    /// RM → TC: would these row locks be free?
    GlobalLockQueryRequest(BranchRegisterRequest) = 21 => "GlobalLockQueryRequest",
    /// TC → RM: whether they are.
    GlobalLockQueryResponse(GlobalLockQueryResponse) = 22 => "GlobalLockQueryResponse",
    /// TM/RM → TC: several requests in one frame.
    MergedWarpMessage(MergedWarpMessage) = 59 => "MergedWarpMessage",
    /// TC → TM/RM: all answers to a merged request, in order.
    MergeResultMessage(MergeResultMessage) = 60 => "MergeResultMessage",
    /// TM → TC: register a transaction manager.
    RegisterTmRequest(RegisterRequest) = 101 => "RegisterTMRequest",
    /// TC → TM: registration outcome.
    RegisterTmResponse(RegisterResponse) = 102 => "RegisterTMResponse",
    /// RM → TC: register a resource manager and its resources.
    RegisterRmRequest(RegisterRmRequest) = 103 => "RegisterRMRequest",
    /// TC → RM: registration outcome.
    RegisterRmResponse(RegisterResponse) = 104 => "RegisterRMResponse",
    /// RM → TC: withdraw resources (2.7.0+).
    UnregisterRmRequest(RegisterRmRequest) = 105 => "UnregisterRMRequest",
    /// TC → RM: unregistration outcome (always the version-1 layout).
    UnregisterRmResponse(UnregisterRmResponse) = 106 => "UnregisterRMResponse",
    /// TC → RM: delete old undo-log rows (no answer).
    UndoLogDeleteRequest(UndoLogDeleteRequest) = 111 => "UndoLogDeleteRequest",
    /// TC → TM/RM: some answers to a merged request, by id (1.5.0+).
    BatchResultMessage(BatchResultMessage) = 121 => "BatchResultMessage",
}

/// Type codes whose failed answers seata-go prefixes with a one-byte length (spec P1).
const SHORT_MSG_TYPES: [i16; 4] = [4, 6, 14, 22];

impl Message {
    /// Decodes a plain (decompressed) body: type code and payload, exactly consumed.
    pub fn decode(body: &[u8], ctx: &BodyContext) -> Result<Self, BodyError> {
        let mut r = Reader::new(body);
        let message = Self::read(&mut r, ctx)?;
        r.finish()?;
        Ok(message)
    }

    /// Like [`Message::decode`], but when one of seata-go's four short-`msg` answers fails to
    /// decode in the dialect's layout, tries the other layout (spec P1). Returns the layout
    /// that consumed the body exactly.
    pub fn decode_any_msg_length(
        body: &[u8],
        ctx: &BodyContext,
    ) -> Result<(Self, MsgLength), BodyError> {
        let first = ctx.dialect.branch_msg_length;
        match Self::decode(body, ctx) {
            Ok(message) => Ok((message, first)),
            Err(error) => {
                let code = body.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
                if !code.is_some_and(|c| SHORT_MSG_TYPES.contains(&c)) {
                    return Err(error);
                }
                let other = match first {
                    MsgLength::I16 => MsgLength::U8,
                    MsgLength::U8 => MsgLength::I16,
                };
                Self::decode(body, &ctx.with_msg_length(other))
                    .map(|message| (message, other))
                    .map_err(|_| error)
            }
        }
    }

    /// Appends the plain body (type code and payload).
    pub fn encode(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        dst.put_i16(self.type_code());
        self.write_payload(dst, ctx)
    }

    /// The result header of a coordinator's answer to a TM or RM request (begin, commit,
    /// rollback, status, report, branch register/report, lock query); `None` for any other
    /// message.
    pub fn tx_result(&self) -> Option<&TxResult> {
        Some(match self {
            Message::GlobalBeginResponse(r) => &r.result,
            Message::GlobalCommitResponse(r)
            | Message::GlobalRollbackResponse(r)
            | Message::GlobalStatusResponse(r)
            | Message::GlobalReportResponse(r) => &r.result,
            Message::BranchRegisterResponse(r) => &r.result,
            Message::BranchReportResponse(r) => r,
            Message::GlobalLockQueryResponse(r) => &r.result,
            _ => return None,
        })
    }

    /// Whether this message is a batch of other messages.
    pub const fn is_batch(&self) -> bool {
        matches!(
            self,
            Message::MergedWarpMessage(_)
                | Message::MergeResultMessage(_)
                | Message::BatchResultMessage(_)
        )
    }

    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        let code = r.i16("type code")?;
        Self::read_payload(code, r, ctx)
    }
}
