//! The frame (spec §2): a 16-byte header, an optional head map, and a body.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::compress::{compress, decompress};
use crate::dialect::{Dialect, MsgLength};
use crate::enums::{Compressor, FrameType, Serializer};
use crate::error::{BodyError, DecodeError, EncodeError};
use crate::message::{BodyContext, Message};

/// The two bytes every frame starts with.
pub const MAGIC: [u8; 2] = [0xDA, 0xDA];
/// Length of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Java's fixed frame limit, the default here (8 MiB).
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;
/// The protocol version every txmesh peer sends.
pub const PROTOCOL_VERSION: u8 = 1;

/// Head-map entries in wire order; `None` is Java's null (length −1).
pub type HeadMap = Vec<(Option<String>, Option<String>)>;

/// A frame whose header and head map are parsed and whose body is still as on the wire.
/// Body problems surface only when the body is decoded, so one bad body costs one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Protocol version byte (1, or 2 from Java 2.7 clients).
    pub version: u8,
    /// Byte 9.
    pub frame_type: FrameType,
    /// Byte 10, the serializer code, checked when the body is decoded.
    pub codec: u8,
    /// Byte 11, the compressor code, checked when the body is decoded.
    pub compressor: u8,
    /// The sender's request id.
    pub request_id: i32,
    /// The head map.
    pub head_map: HeadMap,
    /// The body bytes as they arrived (possibly compressed; empty for heartbeats).
    pub body: Bytes,
}

impl RawFrame {
    /// Parses one whole frame from `input`, which must hold exactly one frame.
    pub fn parse(input: &[u8], max_frame_len: usize) -> Result<Self, DecodeError> {
        let mut buf = BytesMut::from(input);
        match crate::codec::decode_raw(&mut buf, max_frame_len)? {
            Some(frame) if buf.is_empty() => Ok(frame),
            Some(_) => Err(DecodeError::TrailingBytes(buf.len())),
            None => Err(DecodeError::Incomplete {
                needed: crate::codec::claimed_len(input)
                    .unwrap_or(HEADER_LEN)
                    .max(input.len() + 1),
                available: input.len(),
            }),
        }
    }

    /// The serializer and compressor of a body frame, checked.
    pub fn body_format(&self) -> Result<(Serializer, Compressor), BodyError> {
        let serializer = Serializer::from_code(self.codec)
            .map_err(|_| BodyError::UnknownSerializer(self.codec))?;
        if serializer != Serializer::Seata {
            return Err(BodyError::UnsupportedSerializer(serializer));
        }
        let compressor = Compressor::from_code(self.compressor)
            .map_err(|_| BodyError::UnknownCompressor(self.compressor))?;
        Ok((serializer, compressor))
    }

    /// Decodes the body; `None` for heartbeats, whose body (if any) is ignored as Java does.
    pub fn message(&self, dialect: &Dialect) -> Result<Option<Message>, BodyError> {
        self.message_any_msg_length(dialect)
            .map(|m| m.map(|(message, _)| message))
    }

    /// Like [`RawFrame::message`], also accepting seata-go's short failure messages when the
    /// dialect's layout does not fit, and telling which layout was used.
    pub fn message_any_msg_length(
        &self,
        dialect: &Dialect,
    ) -> Result<Option<(Message, MsgLength)>, BodyError> {
        if self.frame_type.is_heartbeat() {
            return Ok(None);
        }
        if self.body.is_empty() {
            return Err(BodyError::EmptyBody);
        }
        let (_, compressor) = self.body_format()?;
        let plain = decompress(compressor, &self.body, DEFAULT_MAX_FRAME_LEN)?;
        let ctx = BodyContext {
            protocol_version: self.version,
            dialect: *dialect,
        };
        Message::decode_any_msg_length(&plain, &ctx).map(Some)
    }

    /// Decodes the body into a whole [`Frame`].
    pub fn into_frame(self, dialect: &Dialect) -> Result<Frame, BodyError> {
        let body = self.message(dialect)?;
        let (codec, compressor) = match body {
            Some(_) => self.body_format()?,
            None => (
                Serializer::from_code(self.codec)
                    .map_err(|_| BodyError::UnknownSerializer(self.codec))?,
                Compressor::from_code(self.compressor)
                    .map_err(|_| BodyError::UnknownCompressor(self.compressor))?,
            ),
        };
        Ok(Frame {
            version: self.version,
            frame_type: self.frame_type,
            codec,
            compressor,
            request_id: self.request_id,
            head_map: self.head_map,
            body,
        })
    }
}

/// A whole frame, ready to encode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    /// Protocol version byte; txmesh always sends [`PROTOCOL_VERSION`].
    pub version: u8,
    /// Byte 9.
    pub frame_type: FrameType,
    /// The serializer (SEATA for every body txmesh writes).
    pub codec: Serializer,
    /// How the body is compressed.
    pub compressor: Compressor,
    /// The request id (the request's own, in a response).
    pub request_id: i32,
    /// Head-map entries (normally none).
    #[serde(default)]
    pub head_map: HeadMap,
    /// The message; `None` for heartbeats.
    pub body: Option<Message>,
}

impl Frame {
    fn plain(frame_type: FrameType, request_id: i32, body: Option<Message>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            frame_type,
            codec: Serializer::Seata,
            compressor: Compressor::None,
            request_id,
            head_map: HeadMap::new(),
            body,
        }
    }

    /// A request that expects an answer.
    pub fn request(request_id: i32, message: Message) -> Self {
        Self::plain(FrameType::Request, request_id, Some(message))
    }

    /// A request flagged oneway (MergedWarpMessage, UndoLogDeleteRequest).
    pub fn oneway(request_id: i32, message: Message) -> Self {
        Self::plain(FrameType::Oneway, request_id, Some(message))
    }

    /// The answer to request `request_id`.
    pub fn response(request_id: i32, message: Message) -> Self {
        Self::plain(FrameType::Response, request_id, Some(message))
    }

    /// A ping.
    pub fn ping(request_id: i32) -> Self {
        Self::plain(FrameType::HeartbeatRequest, request_id, None)
    }

    /// The pong for ping `request_id`.
    pub fn pong(request_id: i32) -> Self {
        Self::plain(FrameType::HeartbeatResponse, request_id, None)
    }

    /// Appends the encoded frame to `dst`; on error `dst` is left as it was.
    pub fn encode(
        &self,
        dialect: &Dialect,
        max_frame_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let start = dst.len();
        let result = self.encode_unchecked(dialect, max_frame_len, dst, start);
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    /// Encodes into a fresh buffer with the default frame limit.
    pub fn to_bytes(&self, dialect: &Dialect) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(64);
        self.encode(dialect, DEFAULT_MAX_FRAME_LEN, &mut buf)?;
        Ok(buf.freeze())
    }

    fn encode_unchecked(
        &self,
        dialect: &Dialect,
        max_frame_len: usize,
        dst: &mut BytesMut,
        start: usize,
    ) -> Result<(), EncodeError> {
        match (&self.body, self.frame_type.is_heartbeat()) {
            (Some(_), true) => {
                return Err(EncodeError::BodyMismatch(
                    "a heartbeat frame carries no body",
                ));
            }
            (None, false) => {
                return Err(EncodeError::BodyMismatch(
                    "a non-heartbeat frame needs a body",
                ));
            }
            _ => {}
        }
        dst.put_slice(&MAGIC);
        dst.put_u8(self.version);
        dst.put_u32(0); // full length, patched below
        dst.put_u16(0); // head length, patched below
        dst.put_u8(self.frame_type.code());
        dst.put_u8(self.codec.code());
        dst.put_u8(self.compressor.code());
        dst.put_i32(self.request_id);
        for (key, value) in &self.head_map {
            put_head_string(dst, key.as_deref());
            put_head_string(dst, value.as_deref());
        }
        // Java reads the head length as a signed i16.
        let head_len = dst.len() - start;
        let head_len =
            i16::try_from(head_len).map_err(|_| EncodeError::HeadMapTooLong(head_len))?;
        if let Some(message) = &self.body {
            if self.codec != Serializer::Seata {
                return Err(EncodeError::UnsupportedSerializer(self.codec));
            }
            let ctx = BodyContext {
                protocol_version: self.version,
                dialect: *dialect,
            };
            if self.compressor == Compressor::None {
                message.encode(dst, &ctx)?;
            } else {
                let mut plain = BytesMut::new();
                message.encode(&mut plain, &ctx)?;
                dst.put_slice(&compress(self.compressor, &plain)?);
            }
        }
        let full = dst.len() - start;
        if full > max_frame_len {
            return Err(EncodeError::TooLong {
                length: full,
                max: max_frame_len,
            });
        }
        dst[start + 3..start + 7].copy_from_slice(&(full as u32).to_be_bytes());
        dst[start + 7..start + 9].copy_from_slice(&head_len.to_be_bytes());
        Ok(())
    }
}

/// A head-map string: `i16` length, −1 for null (spec §2.3).
fn put_head_string(dst: &mut BytesMut, s: Option<&str>) {
    match s {
        None => dst.put_i16(-1),
        Some(s) => crate::wire::put_str16(dst, s),
    }
}

impl Frame {
    /// Decodes exactly one whole frame from `input` (used on captures and in tests).
    pub fn decode(input: &[u8], dialect: &Dialect) -> Result<Self, DecodeError> {
        Ok(RawFrame::parse(input, DEFAULT_MAX_FRAME_LEN)?.into_frame(dialect)?)
    }
}
