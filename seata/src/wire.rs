//! Primitive encodings of the SEATA codec (spec §4.1): big-endian integers and
//! length-prefixed UTF-8 strings.

use bytes::{BufMut, BytesMut};

use crate::error::BodyError;

/// Longest `str16` a Java peer decodes correctly: its length prefix is a signed `i16`.
pub const STR16_MAX: usize = i16::MAX as usize;

/// A cursor over a body that never reads past its end and never trusts a length prefix
/// for an allocation before the bytes are there.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], BodyError> {
        let available = self.remaining();
        if n > available {
            return Err(BodyError::Truncated {
                field,
                needed: n,
                available,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BodyError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, BodyError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, BodyError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, BodyError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, BodyError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A one-byte boolean: Java reads `== 1` as true; anything but 0 and 1 is rejected so
    /// that re-encoding reproduces the input.
    pub(crate) fn bool8(&mut self, field: &'static str) -> Result<bool, BodyError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(BodyError::UnknownEnum {
                kind: field,
                value: other.into(),
            }),
        }
    }

    /// A length that must not be negative.
    pub(crate) fn len_i16(&mut self, field: &'static str) -> Result<usize, BodyError> {
        let len = self.i16(field)?;
        usize::try_from(len).map_err(|_| BodyError::NegativeLength {
            field,
            value: len.into(),
        })
    }

    /// A length that must not be negative.
    pub(crate) fn len_i32(&mut self, field: &'static str) -> Result<usize, BodyError> {
        let len = self.i32(field)?;
        usize::try_from(len).map_err(|_| BodyError::NegativeLength {
            field,
            value: len.into(),
        })
    }

    /// A string with an `i16` length (Java writes null and "" alike as length 0).
    pub(crate) fn str16(&mut self, field: &'static str) -> Result<String, BodyError> {
        let len = self.len_i16(field)?;
        self.utf8(len, field)
    }

    /// A string with a one-byte length: the seata-go layout of some failure messages (spec P1).
    pub(crate) fn str8(&mut self, field: &'static str) -> Result<String, BodyError> {
        let len = usize::from(self.u8(field)?);
        self.utf8(len, field)
    }

    /// A string with an `i32` length.
    pub(crate) fn str32(&mut self, field: &'static str) -> Result<String, BodyError> {
        let len = self.len_i32(field)?;
        self.utf8(len, field)
    }

    fn utf8(&mut self, len: usize, field: &'static str) -> Result<String, BodyError> {
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| BodyError::InvalidUtf8 { field })
    }

    /// Fails when bytes are left over: a conforming encoder never writes any.
    pub(crate) fn finish(&self) -> Result<(), BodyError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(BodyError::TrailingBytes(n)),
        }
    }
}

/// Cuts `s` to at most `max` bytes on a UTF-8 character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes a `str16`, capped at [`STR16_MAX`] bytes so a Java peer never reads a negative length.
pub(crate) fn put_str16(dst: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, STR16_MAX);
    dst.put_i16(s.len() as i16);
    dst.put_slice(s.as_bytes());
}

/// Writes a one-byte-length string (seata-go layout), capped at 127 bytes as seata-go reads it
/// into a signed byte on some paths.
pub(crate) fn put_str8(dst: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, i8::MAX as usize);
    dst.put_u8(s.len() as u8);
    dst.put_slice(s.as_bytes());
}

/// Writes a `str32`, capped at `i32::MAX` bytes.
pub(crate) fn put_str32(dst: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, i32::MAX as usize);
    dst.put_i32(s.len() as i32);
    dst.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str16_is_capped_on_a_char_boundary() {
        let long = "é".repeat(20_000); // 40 000 bytes
        let mut buf = BytesMut::new();
        put_str16(&mut buf, &long);
        let len = i16::from_be_bytes([buf[0], buf[1]]);
        assert_eq!(
            len, 32_766,
            "cut below 32767 to stay on a 2-byte character boundary"
        );
        let mut r = Reader::new(&buf);
        let back = r.str16("s").expect("decodes");
        assert_eq!(back.chars().count(), 16_383);
        r.finish().expect("consumed exactly");
    }

    #[test]
    fn negative_lengths_are_typed_errors() {
        let mut r = Reader::new(&[0xff, 0xff]);
        assert_eq!(
            r.str16("xid"),
            Err(BodyError::NegativeLength {
                field: "xid",
                value: -1
            })
        );
        let mut r = Reader::new(&[0x80, 0, 0, 0]);
        assert!(matches!(
            r.str32("lockKey"),
            Err(BodyError::NegativeLength { .. })
        ));
    }

    #[test]
    fn a_huge_claimed_length_fails_without_allocating() {
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff, b'a']);
        assert_eq!(
            r.str32("applicationData"),
            Err(BodyError::Truncated {
                field: "applicationData",
                needed: i32::MAX as usize,
                available: 1
            })
        );
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut r = Reader::new(&[0, 2, 0xc3, 0x28]);
        assert_eq!(r.str16("msg"), Err(BodyError::InvalidUtf8 { field: "msg" }));
    }
}
