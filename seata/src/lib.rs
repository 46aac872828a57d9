//! The Seata RPC wire protocol, byte for byte as Seata's Java and Go peers speak it: frames
//! (protocol versions 1 and 2), every message of the SEATA codec, the per-version differences
//! between peers, a `tokio_util` codec, and an async client.
//!
//! Layering: [`wire`] primitives → [`message`] bodies → [`frame`] header and head map →
//! [`codec`] stream framing → [`client`] connections.

pub mod client;
pub mod codec;
pub mod compress;
pub mod correlation;
pub mod dialect;
pub mod enums;
pub mod error;
pub mod frame;
pub mod message;
pub mod wire;

pub use codec::FrameCodec;
pub use dialect::{Dialect, ExceptionCodeNumbering, MsgLength, SdkVersion};
pub use enums::{
    BranchStatus, BranchType, Compressor, FrameType, GlobalStatus, ResultCode, Serializer,
    TransactionExceptionCode,
};
pub use error::{BodyError, DecodeError, EncodeError, FrameError};
pub use frame::{DEFAULT_MAX_FRAME_LEN, Frame, HeadMap, MAGIC, PROTOCOL_VERSION, RawFrame};
pub use message::{BodyContext, Message};
