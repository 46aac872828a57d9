//! Typed errors. Framing errors are fatal for a connection (the next frame boundary is lost);
//! body errors concern one frame only, whose bytes were already consumed whole.

use crate::enums::{Compressor, Serializer};

/// The stream is not a valid sequence of Seata frames; the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first two bytes are not `0xDADA`.
    #[error("not a Seata frame: magic {found:02x?}, expected [da, da]{hint}")]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
        /// A diagnosis of what the peer seems to be speaking instead (may be empty).
        hint: &'static str,
    },
    /// Protocol version byte 0 (pre-0.7.1 clients) uses another framing entirely.
    #[error(
        "unsupported Seata protocol version {0} (0 is the pre-0.7.1 layout; 1 and 2 are supported)"
    )]
    UnsupportedVersion(u8),
    /// `full length` is below the 16-byte header.
    #[error("frame length {0} is shorter than the 16-byte header")]
    TooShort(u32),
    /// `full length` exceeds the configured maximum.
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    TooLong {
        /// The length the frame claims.
        length: u32,
        /// The configured limit.
        max: usize,
    },
    /// `head length` is outside `16..=full length`.
    #[error("head length {head} is invalid for a frame of {full} bytes")]
    BadHeadLength {
        /// The head length field.
        head: u16,
        /// The full length field.
        full: u32,
    },
    /// The head map does not fill its area exactly, or holds invalid UTF-8.
    #[error("malformed head map: {0}")]
    HeadMap(&'static str),
    /// Byte 9 is not one of the five frame types.
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// The underlying socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The body of one frame cannot be decoded; the framing is intact and the connection can go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A non-heartbeat frame without a body.
    #[error("frame has an empty body")]
    EmptyBody,
    /// The codec byte names no serializer Seata knows.
    #[error("unknown serializer code {0}")]
    UnknownSerializer(u8),
    /// A known serializer other than SEATA.
    #[error("serializer {0} is not supported (only SEATA)")]
    UnsupportedSerializer(Serializer),
    /// The compressor byte names no compressor Seata knows.
    #[error("unknown compressor code {0}")]
    UnknownCompressor(u8),
    /// A known compressor this implementation does not provide.
    #[error("compressor {0} is not supported (none, gzip, deflater and zstd are)")]
    UnsupportedCompressor(Compressor),
    /// The compressed stream is corrupt.
    #[error("{compressor} decompression failed: {reason}")]
    Decompress {
        /// The compressor of the frame.
        compressor: Compressor,
        /// What the decompressor reported.
        reason: String,
    },
    /// The body inflates beyond the frame size limit.
    #[error("decompressed body exceeds {0} bytes")]
    DecompressedTooLarge(usize),
    /// The type code names no message.
    #[error("unknown message type code {0}")]
    UnknownTypeCode(i16),
    /// A field runs past the end of the body.
    #[error("truncated body: {field} needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A negative length or count prefix.
    #[error("negative length {value} for {field}")]
    NegativeLength {
        /// The field being read.
        field: &'static str,
        /// The value read.
        value: i64,
    },
    /// A string field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// An enum byte outside the table of its type.
    #[error("invalid {kind} value {value}")]
    UnknownEnum {
        /// The enum type.
        kind: &'static str,
        /// The value read.
        value: i64,
    },
    /// Bytes left over after the last field.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// A batch inside a batch.
    #[error("message type {0} cannot be nested inside a batch")]
    NestedBatch(i16),
    /// A batch with more messages than its 16-bit count or 32-bit length can say.
    #[error("batch too large: {0}")]
    BatchTooLarge(usize),
    /// A batch whose id list does not match its message list.
    #[error("batch has {messages} messages but {ids} ids")]
    BatchIdsMismatch {
        /// Number of messages.
        messages: usize,
        /// Number of ids.
        ids: usize,
    },
}

/// A frame cannot be encoded as asked.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A non-heartbeat frame must carry a message, a heartbeat must not.
    #[error("{0}")]
    BodyMismatch(&'static str),
    /// Only the SEATA serializer can encode a body.
    #[error("serializer {0} is not supported (only SEATA)")]
    UnsupportedSerializer(Serializer),
    /// The compressor is not available.
    #[error("compressor {0} is not supported (none, gzip, deflater and zstd are)")]
    UnsupportedCompressor(Compressor),
    /// The head map does not fit the signed 16-bit head length Java reads.
    #[error("the head map makes a head of {0} bytes; at most 32767 fit the head length field")]
    HeadMapTooLong(usize),
    /// The encoded frame is larger than the limit.
    #[error("encoded frame of {length} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The encoded length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The message is inconsistent (for example a batch whose ids do not match).
    #[error(transparent)]
    Invalid(#[from] BodyError),
    /// Compression failed.
    #[error("compression failed: {0}")]
    Compress(String),
    /// Writing to the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Either kind of decoding failure, for one-shot decoding of a whole frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The framing is broken.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The body is broken.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The input ends before the frame does.
    #[error("incomplete frame: {needed} bytes needed, {available} given")]
    Incomplete {
        /// Bytes the frame needs (at least).
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// Bytes follow the frame.
    #[error("{0} bytes follow the frame")]
    TrailingBytes(usize),
}
