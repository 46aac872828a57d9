//! Framing over a byte stream: a `tokio_util::codec` decoder that yields [`RawFrame`]s and an
//! encoder for [`Frame`]s, following the decoder algorithm of spec §2.8.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::dialect::Dialect;
use crate::enums::FrameType;
use crate::error::{EncodeError, FrameError};
use crate::frame::{DEFAULT_MAX_FRAME_LEN, Frame, HEADER_LEN, HeadMap, MAGIC, RawFrame};

/// The Seata frame codec for one connection.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_len: usize,
    dialect: Dialect,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame_len`, encoding in the current dialect.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len,
            dialect: Dialect::CURRENT,
        }
    }

    /// The frame limit.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Changes the frame limit, for the frames not yet decoded: a server keeps it small until
    /// its peer has registered.
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.max_frame_len = max_frame_len;
    }

    /// The length the frame at the front of `src` declares, once its length field is there.
    /// The decoder never allocates it: the buffer grows only as bytes arrive.
    pub fn declared_len(src: &[u8]) -> Option<usize> {
        claimed_len(src)
    }

    /// Sets the dialect frames are encoded in (learned when the peer registers).
    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.dialect = dialect;
    }
}

impl Decoder for FrameCodec {
    type Item = RawFrame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, FrameError> {
        decode_raw(src, self.max_frame_len)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = EncodeError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        frame.encode(&self.dialect, self.max_frame_len, dst)
    }
}

/// The full length a buffer's header claims, once 7 bytes are there.
pub(crate) fn claimed_len(src: &[u8]) -> Option<usize> {
    src.get(3..7)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Takes one frame off the front of `src` when it is all there. Validates the magic as soon
/// as two bytes arrive and the length before buffering, so garbage fails fast and a huge
/// claimed length is refused without allocating it.
pub(crate) fn decode_raw(
    src: &mut BytesMut,
    max_frame_len: usize,
) -> Result<Option<RawFrame>, FrameError> {
    if src.len() >= 2 && src[..2] != MAGIC {
        return Err(FrameError::BadMagic {
            found: [src[0], src[1]],
            hint: diagnose(&src[..src.len().min(8)]),
        });
    }
    let Some(full) = claimed_len(src) else {
        return Ok(None);
    };
    let version = src[2];
    if version == 0 {
        return Err(FrameError::UnsupportedVersion(version));
    }
    if full < HEADER_LEN {
        return Err(FrameError::TooShort(full as u32));
    }
    if full > max_frame_len {
        return Err(FrameError::TooLong {
            length: full as u32,
            max: max_frame_len,
        });
    }
    if src.len() < full {
        return Ok(None);
    }
    let frame = src.split_to(full).freeze();
    // Java reads the head length as a signed i16: beyond 32767 no Java peer can parse it.
    let head_len = usize::from(u16::from_be_bytes([frame[7], frame[8]]));
    if !(HEADER_LEN..=full.min(i16::MAX as usize)).contains(&head_len) {
        return Err(FrameError::BadHeadLength {
            head: head_len as u16,
            full: full as u32,
        });
    }
    let frame_type =
        FrameType::from_code(frame[9]).map_err(|_| FrameError::UnknownFrameType(frame[9]))?;
    let head_map = parse_head_map(&frame[HEADER_LEN..head_len])?;
    let mut id = &frame[12..16];
    Ok(Some(RawFrame {
        version,
        frame_type,
        codec: frame[10],
        compressor: frame[11],
        request_id: id.get_i32(),
        head_map,
        body: frame.slice(head_len..),
    }))
}

fn parse_head_map(mut area: &[u8]) -> Result<HeadMap, FrameError> {
    let mut map = HeadMap::new();
    while !area.is_empty() {
        let key = head_string(&mut area)?;
        let value = head_string(&mut area)?;
        map.push((key, value));
    }
    Ok(map)
}

fn head_string(area: &mut &[u8]) -> Result<Option<String>, FrameError> {
    if area.len() < 2 {
        return Err(FrameError::HeadMap("an entry runs past the head length"));
    }
    let len = area.get_i16();
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| FrameError::HeadMap("negative string length"))?;
    if area.len() < len {
        return Err(FrameError::HeadMap("an entry runs past the head length"));
    }
    let (text, rest) = area.split_at(len);
    *area = rest;
    std::str::from_utf8(text)
        .map(|s| Some(s.to_owned()))
        .map_err(|_| FrameError::HeadMap("a string is not valid UTF-8"))
}

/// What a peer that does not start with `0xDADA` seems to be speaking (spec P12). The magic is
/// checked after two bytes, so a pattern matches when the bytes seen so far begin it.
fn diagnose(start: &[u8]) -> &'static str {
    const HTTP_METHODS: [&[u8]; 7] = [
        b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC",
    ];
    let begins = |pattern: &[u8]| pattern.starts_with(&start[..start.len().min(pattern.len())]);
    if begins(b"HTTP") {
        return "; the peer answered in HTTP: this is not a Seata RPC port (the console is 7091, RPC 8091)";
    }
    if begins(b"PRI ") {
        return "; the peer opened HTTP/2 (gRPC): point it at the gRPC port, not Seata RPC";
    }
    if HTTP_METHODS.iter().any(|method| begins(method)) {
        return "; the peer sent an HTTP request to the Seata RPC port (the console/metrics port is 7091)";
    }
    if begins(&[0x16, 0x03]) {
        return "; the peer started a TLS handshake, but Seata RPC is plain TCP";
    }
    ""
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use super::{FrameCodec, diagnose};
    use crate::error::FrameError;

    /// The header of a frame declaring `len` bytes.
    fn header(len: u32) -> BytesMut {
        let mut buf = BytesMut::from(&[0xda, 0xda, 1][..]);
        buf.extend_from_slice(&len.to_be_bytes());
        buf
    }

    #[test]
    fn a_declared_length_is_refused_or_waited_for_without_allocating_it() {
        let mut codec = FrameCodec::new(64 * 1024);
        let mut big = header(8 * 1024 * 1024 - 1);
        assert!(matches!(
            codec.decode(&mut big),
            Err(FrameError::TooLong { max: 65_536, .. })
        ));
        let mut within = header(60 * 1024);
        let capacity = within.capacity();
        assert!(matches!(codec.decode(&mut within), Ok(None)));
        assert_eq!(within.capacity(), capacity, "nothing reserved up front");
        assert_eq!(FrameCodec::declared_len(&within), Some(60 * 1024));
        codec.set_max_frame_len(8 * 1024 * 1024);
        assert!(matches!(codec.decode(&mut big), Ok(None)));
    }

    #[test]
    fn two_bytes_are_enough_to_recognise_http_and_tls() {
        assert!(diagnose(b"HT").contains("answered in HTTP"));
        assert!(diagnose(b"GE").contains("HTTP request"));
        assert!(diagnose(b"PRI * HT").contains("HTTP/2"));
        assert!(diagnose(&[0x16, 0x03, 0x01]).contains("TLS"));
        assert_eq!(diagnose(b"\x00\x01"), "");
    }
}
