//! Body compression (spec §5.7): gzip, zlib ("deflater") and zstd; the other Seata compressors
//! are a typed "unsupported" error.

use std::borrow::Cow;
use std::io::{Read, Write};

use crate::enums::Compressor;
use crate::error::{BodyError, EncodeError};

/// Inflates `data`, refusing to produce more than `limit` bytes (a decompression bomb stops
/// at the limit instead of exhausting memory).
pub fn decompress(
    compressor: Compressor,
    data: &[u8],
    limit: usize,
) -> Result<Cow<'_, [u8]>, BodyError> {
    let failed = |e: std::io::Error| BodyError::Decompress {
        compressor,
        reason: e.to_string(),
    };
    let reader: Box<dyn Read + '_> = match compressor {
        Compressor::None => return Ok(Cow::Borrowed(data)),
        Compressor::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
        Compressor::Deflater => Box::new(flate2::read::ZlibDecoder::new(data)),
        Compressor::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(failed)?)
        }
        other => return Err(BodyError::UnsupportedCompressor(other)),
    };
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(failed)?;
    if out.len() > limit {
        return Err(BodyError::DecompressedTooLarge(limit));
    }
    Ok(Cow::Owned(out))
}

/// Compresses `data` with the stream format the Java compressor module uses.
pub fn compress(compressor: Compressor, data: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let failed = |e: std::io::Error| EncodeError::Compress(e.to_string());
    match compressor {
        Compressor::None => Ok(data.to_vec()),
        Compressor::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compressor::Deflater => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compressor::Zstd => zstd::bulk::compress(data, 3).map_err(failed),
        other => Err(EncodeError::UnsupportedCompressor(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_compressors_round_trip() {
        let data = b"xid=192.168.0.2:8091:2000042948 ".repeat(50);
        for c in [
            Compressor::None,
            Compressor::Gzip,
            Compressor::Deflater,
            Compressor::Zstd,
        ] {
            let packed = compress(c, &data).expect("compresses");
            if c != Compressor::None {
                assert!(
                    packed.len() < data.len() / 4,
                    "{c} should shrink repetitive data"
                );
            }
            assert_eq!(
                decompress(c, &packed, 1 << 20).expect("inflates").as_ref(),
                &data[..]
            );
        }
    }

    #[test]
    fn unsupported_and_corrupt_inputs_are_typed_errors() {
        assert!(matches!(
            compress(Compressor::Lz4, b"x"),
            Err(EncodeError::UnsupportedCompressor(Compressor::Lz4))
        ));
        assert_eq!(
            decompress(Compressor::SevenZ, b"x", 10).map(|_| ()),
            Err(BodyError::UnsupportedCompressor(Compressor::SevenZ))
        );
        assert!(matches!(
            decompress(Compressor::Gzip, b"not gzip", 10),
            Err(BodyError::Decompress { .. })
        ));
        assert!(matches!(
            decompress(Compressor::Zstd, b"\x28\xb5\x2f\xfd junk", 10),
            Err(BodyError::Decompress { .. })
        ));
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let bomb = compress(Compressor::Gzip, &vec![0u8; 10 << 20]).expect("compresses");
        assert!(bomb.len() < 64 << 10);
        assert_eq!(
            decompress(Compressor::Gzip, &bomb, 1 << 20).map(|_| ()),
            Err(BodyError::DecompressedTooLarge(1 << 20))
        );
    }
}
