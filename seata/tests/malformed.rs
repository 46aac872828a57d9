//! Malformed input, one test per class: each must fail with its exact typed error (FrameError
//! for broken framing, BodyError for a broken body, DecodeError for one-shot decoding), never
//! panic, and never cost more than the frame it arrived in. Encoding errors are typed too.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};
use txmesh_seata::message::*;
use txmesh_seata::*;

/// The request id of every hand-built frame.
const ID: i32 = 7;

/// A 16-byte header with every field as given.
fn header(
    version: u8,
    full: u32,
    head: u16,
    frame_type: u8,
    codec: u8,
    compressor: u8,
    id: i32,
) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.push(version);
    bytes.extend(full.to_be_bytes());
    bytes.extend(head.to_be_bytes());
    bytes.extend([frame_type, codec, compressor]);
    bytes.extend(id.to_be_bytes());
    bytes
}

/// A version-1 frame whose lengths match its head area and body.
fn frame_bytes(
    frame_type: u8,
    codec: u8,
    compressor: u8,
    head_area: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let head = 16 + head_area.len();
    let full = head + body.len();
    let head = u16::try_from(head).expect("head fits");
    let full = u32::try_from(full).expect("frame fits");
    [
        header(1, full, head, frame_type, codec, compressor, ID),
        head_area.to_vec(),
        body.to_vec(),
    ]
    .concat()
}

/// A SEATA, uncompressed request frame around `body`.
fn request_bytes(body: &[u8]) -> Vec<u8> {
    frame_bytes(0, 1, 0, &[], body)
}

/// A frame with an empty head map and the given head length field (which may lie).
fn with_head_length(head: u16, full: u32) -> Vec<u8> {
    let mut bytes = header(1, full, head, 0, 1, 0, ID);
    bytes.resize(full as usize, 0);
    bytes
}

/// What `codec` says about `bytes`, and what it left buffered.
fn feed(codec: &mut FrameCodec, bytes: &[u8]) -> (Result<Option<RawFrame>, FrameError>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let result = codec.decode(&mut buf);
    (result, buf)
}

/// The framing error a fresh default codec reports for `bytes`.
fn frame_error(bytes: &[u8]) -> FrameError {
    feed(&mut FrameCodec::default(), bytes)
        .0
        .expect_err("the framing is refused")
}

/// The body error of a frame whose framing is intact.
fn frame_body_error(frame: &[u8]) -> BodyError {
    RawFrame::parse(frame, DEFAULT_MAX_FRAME_LEN)
        .expect("the framing is intact")
        .message(&Dialect::CURRENT)
        .expect_err("the body is refused")
}

/// The error of decoding `body` as a version-1 body in the current dialect.
fn body_error(body: &[u8]) -> BodyError {
    body_error_in(body, &BodyContext::default())
}

fn body_error_in(body: &[u8], ctx: &BodyContext) -> BodyError {
    Message::decode(body, ctx).expect_err("the body is refused")
}

/// The plain body of a valid message.
fn body_of(message: &Message) -> Vec<u8> {
    let mut body = BytesMut::new();
    message
        .encode(&mut body, &BodyContext::default())
        .expect("encodes");
    body.to_vec()
}

/// Builds a body field by field, in wire order.
struct Wire(Vec<u8>);

impl Wire {
    /// A body that starts with `type_code`.
    fn new(type_code: i16) -> Self {
        Self(type_code.to_be_bytes().to_vec())
    }

    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    fn i16(mut self, v: i16) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }

    fn i32(mut self, v: i32) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }

    fn i64(mut self, v: i64) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }

    fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }

    fn str16(self, s: &[u8]) -> Self {
        let len = i16::try_from(s.len()).expect("short string");
        self.i16(len).bytes(s)
    }

    fn str32(self, s: &[u8]) -> Self {
        let len = i32::try_from(s.len()).expect("short string");
        self.i32(len).bytes(s)
    }

    fn build(self) -> Vec<u8> {
        self.0
    }
}

/// A batch body (59, 60 or 121): innerLength, count, the items, then the ids.
fn batch(type_code: i16, items: &[Vec<u8>], ids: &[i32]) -> Vec<u8> {
    let count = i16::try_from(items.len()).expect("few items");
    let mut inner = Wire(count.to_be_bytes().to_vec());
    for item in items {
        inner = inner.bytes(item);
    }
    for id in ids {
        inner = inner.i32(*id);
    }
    let inner = inner.build();
    Wire::new(type_code)
        .i32(i32::try_from(inner.len()).expect("small batch"))
        .bytes(&inner)
        .build()
}

fn commit_request(xid: &str) -> Message {
    Message::GlobalCommitRequest(GlobalEndRequest {
        xid: xid.into(),
        extra_data: String::new(),
    })
}

/// A GlobalBeginRequest body (type 1) with a raw transactionName field.
fn begin_with_name(name_field: &[u8]) -> Vec<u8> {
    Wire::new(1).i32(60_000).bytes(name_field).build()
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_magic_fails_as_soon_as_two_bytes_arrive() {
    let (result, buf) = feed(&mut FrameCodec::default(), &[0x00, 0x01]);
    assert!(
        matches!(
            result,
            Err(FrameError::BadMagic {
                found: [0x00, 0x01],
                hint: ""
            })
        ),
        "{result:?}"
    );
    assert_eq!(buf.len(), 2);
    // One byte is not enough to judge.
    let (result, _) = feed(&mut FrameCodec::default(), &[0x00]);
    assert!(matches!(result, Ok(None)), "{result:?}");
    // The magic is checked before anything else, whatever follows.
    let bytes = [&[0xDA, 0xDB][..], &header(1, 16, 16, 3, 1, 0, 1)[2..]].concat();
    assert!(matches!(
        frame_error(&bytes),
        FrameError::BadMagic {
            found: [0xDA, 0xDB],
            ..
        }
    ));
}

#[test]
fn bad_magic_diagnoses_http_and_tls_peers() {
    let cases: [(&[u8], [u8; 2], &str); 5] = [
        (
            b"GET / HTTP/1.1\r\nHost: tc\r\n\r\n",
            *b"GE",
            "sent an HTTP request",
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", *b"HT", "answered in HTTP"),
        (
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01],
            [0x16, 0x03],
            "TLS handshake",
        ),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", *b"PR", "HTTP/2"),
        (b"POST /metrics", *b"PO", "sent an HTTP request"),
    ];
    for (input, expected_found, expected_hint) in cases {
        let error = frame_error(input);
        let FrameError::BadMagic { found, hint } = &error else {
            panic!("{input:?}: {error:?}");
        };
        assert_eq!(*found, expected_found);
        assert!(hint.contains(expected_hint), "{input:?}: hint {hint:?}");
        assert!(
            error.to_string().ends_with(hint),
            "the hint is in the message"
        );
    }
}

#[test]
fn version_zero_is_the_pre_0_7_1_layout() {
    let error = frame_error(&header(0, 16, 16, 3, 1, 0, 1));
    assert!(
        matches!(error, FrameError::UnsupportedVersion(0)),
        "{error:?}"
    );
    // Decided from the 7-byte prefix.
    let (result, _) = feed(
        &mut FrameCodec::default(),
        &header(0, 16, 16, 3, 1, 0, 1)[..7],
    );
    assert!(
        matches!(result, Err(FrameError::UnsupportedVersion(0))),
        "{result:?}"
    );
}

#[test]
fn full_length_below_the_header_is_refused() {
    for full in [0u32, 7, 15] {
        let error = frame_error(&header(1, full, 16, 3, 1, 0, 1));
        assert!(
            matches!(error, FrameError::TooShort(n) if n == full),
            "{full}: {error:?}"
        );
    }
}

#[test]
fn full_length_above_the_limit_is_refused_from_the_header_alone() {
    for claimed in [8 * 1024 * 1024, u32::MAX, 1025] {
        let mut codec = FrameCodec::new(1024);
        let prefix = &header(1, claimed, 16, 0, 1, 0, 1)[..7];
        let (result, buf) = feed(&mut codec, prefix);
        assert!(
            matches!(result, Err(FrameError::TooLong { length, max: 1024 }) if length == claimed),
            "{claimed}: {result:?}"
        );
        assert_eq!(buf.len(), 7, "decided on the 7-byte prefix");
        assert!(
            buf.capacity() < 1024,
            "the claimed length was not allocated"
        );
    }
    // The limit itself is allowed: the codec waits for the rest.
    let (result, _) = feed(&mut FrameCodec::new(1024), &header(1, 1024, 16, 0, 1, 0, 1));
    assert!(matches!(result, Ok(None)), "{result:?}");
    // The default limit is Java's 8 MiB.
    let error = frame_error(&header(1, 8 * 1024 * 1024 + 1, 16, 0, 1, 0, 1)[..7]);
    assert!(
        matches!(
            error,
            FrameError::TooLong {
                length: 8_388_609,
                max: DEFAULT_MAX_FRAME_LEN
            }
        ),
        "{error:?}"
    );
}

#[test]
fn head_length_outside_the_frame_is_refused() {
    // 40000 fits the frame but not Java's signed 16-bit head length.
    let cases = [
        (0u16, 20u32),
        (15, 20),
        (21, 20),
        (40, 32),
        (u16::MAX, 16),
        (40_000, 40_016),
    ];
    for (head, full) in cases {
        let error = frame_error(&with_head_length(head, full));
        assert!(
            matches!(error, FrameError::BadHeadLength { head: h, full: f } if h == head && f == full),
            "head {head}, full {full}: {error:?}"
        );
    }
}

#[test]
fn a_head_map_entry_running_past_the_head_area_is_refused() {
    let areas: [&[u8]; 4] = [
        &[0x00],                               // half a length
        &[0x00, 0x05, b'a', b'b'],             // key of 5 bytes, 2 there
        &[0x00, 0x00, 0x00],                   // key "", half a value length
        &[0x00, 0x01, b'k', 0x00, 0x02, b'v'], // value of 2 bytes, 1 there
    ];
    for area in areas {
        let bytes = frame_bytes(3, 1, 0, area, &[]);
        let error = frame_error(&bytes);
        assert!(
            matches!(
                error,
                FrameError::HeadMap("an entry runs past the head length")
            ),
            "{area:?}: {error:?}"
        );
    }
}

#[test]
fn a_negative_head_string_length_other_than_minus_one_is_refused() {
    for length in [-2i16, i16::MIN] {
        let area = [&length.to_be_bytes()[..], &[0xFF, 0xFF]].concat();
        let error = frame_error(&frame_bytes(3, 1, 0, &area, &[]));
        assert!(
            matches!(error, FrameError::HeadMap("negative string length")),
            "{length}: {error:?}"
        );
    }
    // −1 is Java's null, in keys and values alike.
    let raw = RawFrame::parse(
        &frame_bytes(3, 1, 0, &[0xFF; 4], &[]),
        DEFAULT_MAX_FRAME_LEN,
    )
    .expect("null key and value are valid");
    assert_eq!(raw.head_map, vec![(None, None)]);
}

#[test]
fn invalid_utf8_in_the_head_map_is_refused() {
    let area = [0x00, 0x01, b'k', 0x00, 0x02, 0xC3, 0x28];
    let error = frame_error(&frame_bytes(3, 1, 0, &area, &[]));
    assert!(
        matches!(error, FrameError::HeadMap("a string is not valid UTF-8")),
        "{error:?}"
    );
}

#[test]
fn an_unknown_frame_type_is_refused() {
    for frame_type in [5u8, 6, 255] {
        let error = frame_error(&frame_bytes(
            frame_type,
            1,
            0,
            &[],
            &body_of(&commit_request("x")),
        ));
        assert!(
            matches!(error, FrameError::UnknownFrameType(t) if t == frame_type),
            "{frame_type}: {error:?}"
        );
    }
}

#[test]
fn trailing_bytes_after_a_frame_are_refused_by_one_shot_parsing() {
    let ping = Frame::ping(1).to_bytes(&Dialect::CURRENT).expect("encodes");
    let mut extra = ping.to_vec();
    extra.extend([0xDA, 0xDA, 0x01]);
    let error = RawFrame::parse(&extra, DEFAULT_MAX_FRAME_LEN).expect_err("refused");
    assert!(matches!(error, DecodeError::TrailingBytes(3)), "{error:?}");
    let error = Frame::decode(&extra, &Dialect::CURRENT).expect_err("refused");
    assert!(matches!(error, DecodeError::TrailingBytes(3)), "{error:?}");
    // And too little is Incomplete, with what the header claims.
    let error = RawFrame::parse(&ping[..10], DEFAULT_MAX_FRAME_LEN).expect_err("refused");
    assert!(
        matches!(
            error,
            DecodeError::Incomplete {
                needed: 16,
                available: 10
            }
        ),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Body format: serializer, compressor, emptiness
// ---------------------------------------------------------------------------------------------

#[test]
fn an_empty_body_on_a_non_heartbeat_frame_is_refused() {
    for frame_type in [0u8, 1, 2] {
        let bytes = frame_bytes(frame_type, 1, 0, &[], &[]);
        assert_eq!(
            frame_body_error(&bytes),
            BodyError::EmptyBody,
            "type {frame_type}"
        );
    }
}

#[test]
fn a_heartbeat_with_a_body_is_accepted_and_the_body_ignored() {
    // Java drops heartbeat bodies, and ignores their codec and compressor bytes.
    for (codec, compressor) in [(1u8, 0u8), (3, 9), (2, 5)] {
        let bytes = frame_bytes(3, codec, compressor, &[], b"\x03\xE7garbage");
        let raw = RawFrame::parse(&bytes, DEFAULT_MAX_FRAME_LEN).expect("frames");
        assert_eq!(&raw.body[..], b"\x03\xE7garbage");
        assert_eq!(
            raw.message(&Dialect::CURRENT),
            Ok(None),
            "codec {codec}, compressor {compressor}"
        );
    }
    let pong = frame_bytes(4, 1, 0, &[], &body_of(&commit_request("x")));
    assert_eq!(
        Frame::decode(&pong, &Dialect::CURRENT).expect("decodes"),
        Frame::pong(ID)
    );
}

#[test]
fn unknown_and_unsupported_serializers_are_refused() {
    let body = body_of(&commit_request("x"));
    for code in [0u8, 3, 255] {
        assert_eq!(
            frame_body_error(&frame_bytes(0, code, 0, &[], &body)),
            BodyError::UnknownSerializer(code)
        );
    }
    for serializer in [Serializer::Protobuf, Serializer::Hessian, Serializer::Kryo] {
        assert_eq!(
            frame_body_error(&frame_bytes(0, serializer.code(), 0, &[], &body)),
            BodyError::UnsupportedSerializer(serializer)
        );
    }
}

#[test]
fn unknown_and_unsupported_compressors_are_refused() {
    let body = body_of(&commit_request("x"));
    for code in [8u8, 9, 255] {
        assert_eq!(
            frame_body_error(&frame_bytes(0, 1, code, &[], &body)),
            BodyError::UnknownCompressor(code)
        );
    }
    for compressor in [
        Compressor::Lz4,
        Compressor::Zip,
        Compressor::SevenZ,
        Compressor::Bzip2,
    ] {
        assert_eq!(
            frame_body_error(&frame_bytes(0, 1, compressor.code(), &[], &body)),
            BodyError::UnsupportedCompressor(compressor)
        );
    }
}

#[test]
fn corrupt_compressed_bodies_are_refused() {
    let body = body_of(&commit_request("192.168.0.2:8091:2000042948"));
    let gzip = compress::compress(Compressor::Gzip, &body).expect("compresses");
    let corrupt: [(Compressor, Vec<u8>); 4] = [
        (Compressor::Gzip, b"not gzip at all".to_vec()),
        (Compressor::Gzip, gzip[..gzip.len() - 12].to_vec()), // cut inside the stream
        (Compressor::Deflater, vec![0x78, 0x9C, 0xFF, 0xFF, 0xFF]),
        (Compressor::Zstd, b"\x28\xb5\x2f\xfd junk".to_vec()),
    ];
    for (compressor, wire) in corrupt {
        let error = frame_body_error(&frame_bytes(0, 1, compressor.code(), &[], &wire));
        assert!(
            matches!(&error, BodyError::Decompress { compressor: c, reason } if *c == compressor && !reason.is_empty()),
            "{compressor}: {error:?}"
        );
    }
}

#[test]
fn a_decompression_bomb_stops_at_the_frame_limit() {
    let zeros = vec![0u8; 16 * 1024 * 1024];
    let bomb = compress::compress(Compressor::Gzip, &zeros).expect("compresses");
    let bytes = frame_bytes(0, 1, Compressor::Gzip.code(), &[], &bomb);
    assert!(bytes.len() < 64 * 1024, "the bomb itself is small");
    assert_eq!(
        frame_body_error(&bytes),
        BodyError::DecompressedTooLarge(DEFAULT_MAX_FRAME_LEN)
    );
}

// ---------------------------------------------------------------------------------------------
// Message bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_type_codes_are_refused() {
    // 120 is Java's internal heartbeat message, never on the wire; 0 and −1 are internal too.
    for code in [999i16, 120, 0, -1, 19, 20, 107, i16::MIN] {
        let body = Wire::new(code).bytes(&[0; 8]).build();
        assert_eq!(body_error(&body), BodyError::UnknownTypeCode(code));
        assert_eq!(
            frame_body_error(&request_bytes(&body)),
            BodyError::UnknownTypeCode(code)
        );
    }
}

#[test]
fn a_body_truncated_inside_each_field_kind_is_refused() {
    let truncated = |field, needed, available| BodyError::Truncated {
        field,
        needed,
        available,
    };
    let cases = [
        // The type code itself.
        (vec![0x00], truncated("type code", 2, 1)),
        // i32: GlobalBeginRequest.timeout.
        (Wire::new(1).i16(0).build(), truncated("timeout", 4, 2)),
        // i16: UndoLogDeleteRequest.saveDays.
        (
            Wire::new(111).u8(0).str16(b"r").u8(7).build(),
            truncated("saveDays", 2, 1),
        ),
        // i64: BranchReportRequest.branchId.
        (
            Wire::new(13).str16(b"x").bytes(&[0; 3]).build(),
            truncated("branchId", 8, 3),
        ),
        // u8: GlobalReportRequest.globalStatus.
        (
            Wire::new(17).str16(b"x").str16(b"").build(),
            truncated("globalStatus", 1, 0),
        ),
        // str16 length: GlobalBeginRequest.transactionName.
        (begin_with_name(&[0x00]), truncated("transactionName", 2, 1)),
        // str16 bytes.
        (
            begin_with_name(&[0x00, 0x05, b'a', b'b']),
            truncated("transactionName", 5, 2),
        ),
        // str32 length: BranchRegisterRequest.lockKey.
        (
            Wire::new(11).str16(b"x").u8(0).str16(b"r").i16(0).build(),
            truncated("lockKey", 4, 2),
        ),
        // str32 bytes.
        (
            Wire::new(11)
                .str16(b"x")
                .u8(0)
                .str16(b"r")
                .i32(9)
                .bytes(b"t:1")
                .build(),
            truncated("lockKey", 9, 3),
        ),
        // A huge str32 claim is refused without allocating it.
        (
            Wire::new(11)
                .str16(b"x")
                .u8(0)
                .str16(b"r")
                .i32(i32::MAX)
                .build(),
            truncated("lockKey", i32::MAX as usize, 0),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(body_error(&body), expected, "{body:02x?}");
        assert_eq!(
            frame_body_error(&request_bytes(&body)),
            expected,
            "in a frame"
        );
    }
}

#[test]
fn every_prefix_of_a_valid_body_is_a_truncation() {
    let messages = [
        Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout: 60_000,
            transaction_name: "tx-é".into(),
        }),
        Message::BranchRegisterRequest(BranchRegisterRequest {
            xid: "x:1:2".into(),
            branch_type: BranchType::Tcc,
            resource_id: "r".into(),
            lock_key: "t:1".into(),
            application_data: "{}".into(),
        }),
        Message::BranchCommitResponse(BranchEndResponse {
            result: TxResult::failure(TransactionExceptionCode::Io, "db down"),
            xid: "x:1:2".into(),
            branch_id: -1,
            branch_status: BranchStatus::PhaseTwoCommitFailedRetryable,
        }),
        Message::GlobalLockQueryResponse(GlobalLockQueryResponse {
            result: TxResult::success(),
            lockable: true,
        }),
        Message::RegisterRmRequest(RegisterRmRequest {
            identity: RegisterRequest {
                version: "2.2.0".into(),
                application_id: "app".into(),
                transaction_service_group: "g".into(),
                extra_data: String::new(),
            },
            resource_ids: "a,b".into(),
        }),
        Message::MergedWarpMessage(MergedWarpMessage {
            msgs: vec![commit_request("x:1:2"), commit_request("x:1:3")],
            msg_ids: Some(vec![1, 2]),
        }),
        Message::UndoLogDeleteRequest(UndoLogDeleteRequest {
            branch_type: BranchType::At,
            resource_id: "r".into(),
            save_days: 7,
        }),
    ];
    for message in &messages {
        let body = body_of(message);
        assert_eq!(
            Message::decode(&body, &BodyContext::default()).as_ref(),
            Ok(message)
        );
        for cut in 0..body.len() {
            let error = body_error(&body[..cut]);
            assert!(
                matches!(error, BodyError::Truncated { .. }),
                "{} cut at {cut}: {error:?}",
                message.type_name()
            );
        }
    }
}

#[test]
fn negative_string_lengths_are_refused() {
    for length in [-1i16, i16::MIN] {
        assert_eq!(
            body_error(&begin_with_name(&length.to_be_bytes())),
            BodyError::NegativeLength {
                field: "transactionName",
                value: length.into(),
            }
        );
    }
    for length in [-1i32, i32::MIN] {
        let body = Wire::new(11)
            .str16(b"x")
            .u8(0)
            .str16(b"r")
            .i32(length)
            .bytes(b"t:1")
            .build();
        assert_eq!(
            body_error(&body),
            BodyError::NegativeLength {
                field: "lockKey",
                value: length.into(),
            }
        );
    }
}

#[test]
fn invalid_utf8_in_a_body_string_is_refused() {
    let invalid: [&[u8]; 5] = [
        &[0xC3, 0x28],       // bad continuation
        &[0x80],             // lone continuation
        &[0xC0, 0x80],       // overlong NUL
        &[0xED, 0xA0, 0x80], // surrogate
        &[b'a', 0xF0, 0x9F], // cut four-byte sequence
    ];
    for bytes in invalid {
        let body = Wire::new(1).i32(1).str16(bytes).build();
        assert_eq!(
            body_error(&body),
            BodyError::InvalidUtf8 {
                field: "transactionName"
            },
            "{bytes:02x?}"
        );
    }
    let body = Wire::new(11)
        .str16(b"x")
        .u8(0)
        .str16(b"r")
        .str32(b"t:1")
        .str32(&[0xFF])
        .build();
    assert_eq!(
        body_error(&body),
        BodyError::InvalidUtf8 {
            field: "applicationData"
        }
    );
}

#[test]
fn unknown_enum_values_are_refused() {
    let unknown = |kind, value| BodyError::UnknownEnum { kind, value };
    let global_end_response = |result: u8, exception: u8, status: u8| {
        Wire::new(8).u8(result).u8(exception).u8(status).build()
    };
    let cases = [
        // BranchRegisterRequest.branchType.
        (
            Wire::new(11)
                .str16(b"x")
                .u8(9)
                .str16(b"r")
                .str32(b"")
                .str32(b"")
                .build(),
            unknown("branch type", 9),
        ),
        // BranchReportRequest.status.
        (
            Wire::new(13)
                .str16(b"x")
                .i64(1)
                .u8(16)
                .str16(b"r")
                .str32(b"")
                .u8(0)
                .build(),
            unknown("branch status", 16),
        ),
        // GlobalCommitResponse.globalStatus.
        (global_end_response(1, 0, 21), unknown("global status", 21)),
        // resultCode.
        (global_end_response(2, 0, 9), unknown("result code", 2)),
        // transactionExceptionCode beyond numbering 2.0.
        (
            global_end_response(1, 24, 9),
            unknown("transaction exception code", 24),
        ),
        // GlobalReportRequest.globalStatus (0xFF is null, 21 is unknown).
        (
            Wire::new(17).str16(b"x").str16(b"").u8(21).build(),
            unknown("global status", 21),
        ),
        // bool8 and bool16 accept only 0 and 1.
        (
            Wire::new(102).u8(2).str16(b"2.2.0").build(),
            unknown("identified", 2),
        ),
        (
            Wire::new(22).u8(1).u8(0).i16(2).build(),
            unknown("lockable", 2),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(body_error(&body), expected, "{body:02x?}");
        assert_eq!(
            frame_body_error(&request_bytes(&body)),
            expected,
            "in a frame"
        );
    }
    // Code 19 exists from numbering 1.5 on, not in 1.0–1.4.
    let old = BodyContext::v1(Dialect::java(SdkVersion::new(1, 4, 2)));
    let failed = Wire::new(8).u8(0).str16(b"").u8(19).u8(9).build();
    assert_eq!(
        body_error_in(&failed, &old),
        unknown("transaction exception code", 19)
    );
    assert!(Message::decode(&failed, &BodyContext::default()).is_ok());
}

#[test]
fn trailing_bytes_after_a_message_are_refused() {
    let mut body = body_of(&commit_request("x:1:2"));
    body.extend([0x00, 0x01, 0x02]);
    assert_eq!(body_error(&body), BodyError::TrailingBytes(3));
    assert_eq!(
        frame_body_error(&request_bytes(&body)),
        BodyError::TrailingBytes(3)
    );
    // Inside a MergeResultMessage's inner area too.
    let item = body_of(&commit_request("x"));
    let inner = Wire(1i16.to_be_bytes().to_vec())
        .bytes(&item)
        .u8(0xAB)
        .build();
    let merge = Wire::new(60)
        .i32(i32::try_from(inner.len()).expect("small"))
        .bytes(&inner)
        .build();
    assert_eq!(body_error(&merge), BodyError::TrailingBytes(1));
}

// ---------------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------------

#[test]
fn nested_batches_are_refused() {
    let item = body_of(&commit_request("x"));
    let inner_merged = batch(59, std::slice::from_ref(&item), &[1]);
    for outer in [59i16, 60, 121] {
        let ids: &[i32] = if outer == 60 { &[] } else { &[1, 2] };
        let body = batch(outer, &[item.clone(), inner_merged.clone()], ids);
        assert_eq!(
            body_error(&body),
            BodyError::NestedBatch(59),
            "inside {outer}"
        );
    }
    for nested in [60i16, 121] {
        let body = batch(59, &[Wire::new(nested).i32(2).i16(0).build()], &[1]);
        assert_eq!(body_error(&body), BodyError::NestedBatch(nested));
    }
}

#[test]
fn batch_ids_of_the_wrong_count_are_refused() {
    let item = body_of(&commit_request("x"));
    let two = [item.clone(), item.clone()];
    let cases = [
        (batch(59, &two, &[1]), 2, 1),
        (batch(59, &two, &[1, 2, 3]), 2, 3),
        (batch(121, &two, &[]), 2, 0),
        (batch(121, &two, &[1]), 2, 1),
        (batch(121, &[], &[1]), 0, 1),
    ];
    for (body, messages, ids) in cases {
        assert_eq!(
            body_error(&body),
            BodyError::BatchIdsMismatch { messages, ids },
            "{body:02x?}"
        );
    }
}

#[test]
fn a_batch_inner_length_beyond_the_body_is_refused() {
    let item = body_of(&commit_request("x"));
    let mut body = batch(59, &[item], &[1]);
    let available = body.len() - 6;
    body[2..6].copy_from_slice(&1000i32.to_be_bytes());
    assert_eq!(
        body_error(&body),
        BodyError::Truncated {
            field: "batch",
            needed: 1000,
            available,
        }
    );
    body[2..6].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        body_error(&body),
        BodyError::NegativeLength {
            field: "innerLength",
            value: -1,
        }
    );
}

#[test]
fn a_negative_batch_count_is_refused() {
    for outer in [59i16, 60, 121] {
        let body = Wire::new(outer).i32(2).i16(-1).build();
        assert_eq!(
            body_error(&body),
            BodyError::NegativeLength {
                field: "batch count",
                value: -1,
            },
            "{outer}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery and encoding
// ---------------------------------------------------------------------------------------------

#[test]
fn the_codec_keeps_framing_after_a_body_error() {
    let bad = request_bytes(&Wire::new(999).i32(0).build());
    let good_message = commit_request("x:1:2");
    let good = request_bytes(&body_of(&good_message));
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&[bad, good][..].concat()[..]);

    let first = codec.decode(&mut buf).expect("frames").expect("whole");
    let second = codec.decode(&mut buf).expect("frames").expect("whole");
    assert!(buf.is_empty());
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    assert_eq!(
        first.message(&Dialect::CURRENT),
        Err(BodyError::UnknownTypeCode(999))
    );
    assert_eq!(second.message(&Dialect::CURRENT), Ok(Some(good_message)));
}

/// Encodes `frame` after earlier output and returns the error, checking the output is intact.
fn encode_error(frame: &Frame, max: usize) -> EncodeError {
    let mut dst = BytesMut::from(&b"earlier frame"[..]);
    let error = frame
        .encode(&Dialect::CURRENT, max, &mut dst)
        .expect_err("refused");
    assert_eq!(&dst[..], b"earlier frame", "dst unchanged after {error:?}");
    error
}

#[test]
fn encoding_errors_are_typed_and_leave_the_buffer_unchanged() {
    let commit = commit_request("x:1:2");
    let error = encode_error(
        &Frame {
            body: Some(commit.clone()),
            ..Frame::ping(1)
        },
        DEFAULT_MAX_FRAME_LEN,
    );
    assert!(matches!(error, EncodeError::BodyMismatch(_)), "{error:?}");

    let error = encode_error(
        &Frame {
            body: None,
            ..Frame::request(1, commit.clone())
        },
        DEFAULT_MAX_FRAME_LEN,
    );
    assert!(matches!(error, EncodeError::BodyMismatch(_)), "{error:?}");

    let error = encode_error(
        &Frame {
            codec: Serializer::Hessian,
            ..Frame::request(1, commit.clone())
        },
        DEFAULT_MAX_FRAME_LEN,
    );
    assert!(
        matches!(
            error,
            EncodeError::UnsupportedSerializer(Serializer::Hessian)
        ),
        "{error:?}"
    );

    let error = encode_error(
        &Frame {
            compressor: Compressor::Lz4,
            ..Frame::request(1, commit.clone())
        },
        DEFAULT_MAX_FRAME_LEN,
    );
    assert!(
        matches!(error, EncodeError::UnsupportedCompressor(Compressor::Lz4)),
        "{error:?}"
    );

    // 16 header + 2 type code + 7 xid + 2 extraData = 27 bytes.
    let error = encode_error(&Frame::request(1, commit.clone()), 26);
    assert!(
        matches!(
            error,
            EncodeError::TooLong {
                length: 27,
                max: 26
            }
        ),
        "{error:?}"
    );

    let nested = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![Message::MergeResultMessage(MergeResultMessage {
            msgs: vec![],
        })],
        msg_ids: None,
    });
    let error = encode_error(&Frame::oneway(1, nested), DEFAULT_MAX_FRAME_LEN);
    assert!(
        matches!(error, EncodeError::Invalid(BodyError::NestedBatch(60))),
        "{error:?}"
    );

    let mismatched = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![commit.clone()],
        msg_ids: Some(vec![1, 2]),
    });
    let error = encode_error(&Frame::oneway(1, mismatched), DEFAULT_MAX_FRAME_LEN);
    assert!(
        matches!(
            error,
            EncodeError::Invalid(BodyError::BatchIdsMismatch {
                messages: 1,
                ids: 2
            })
        ),
        "{error:?}"
    );

    // The codec applies its own limit, and also leaves the buffer alone.
    let mut dst = BytesMut::from(&b"earlier"[..]);
    let error = FrameCodec::new(20)
        .encode(Frame::request(1, commit), &mut dst)
        .expect_err("refused");
    assert!(
        matches!(
            error,
            EncodeError::TooLong {
                length: 27,
                max: 20
            }
        ),
        "{error:?}"
    );
    assert_eq!(&dst[..], b"earlier");
}

/// BUG (spec §2.1): the head length is an `i16` on the wire and Java reads it with
/// `readShort()`, so a head longer than 32767 bytes reads back negative there: Java then skips
/// the head map and computes a body longer than the frame. The encoder only refuses heads
/// beyond `u16::MAX`, and writes this 40 020-byte head as `9c 54` (−25 516 for Java).
#[test]
fn a_head_length_beyond_i16_max_is_refused_when_encoding() {
    let key = "k".repeat(20_000);
    let frame = Frame {
        head_map: vec![(Some(key.clone()), Some(key))],
        ..Frame::ping(1)
    };
    let mut dst = BytesMut::new();
    let result = frame.encode(&Dialect::CURRENT, DEFAULT_MAX_FRAME_LEN, &mut dst);
    let written = dst.get(7..9).map(|b| i16::from_be_bytes([b[0], b[1]]));
    assert!(
        matches!(result, Err(EncodeError::HeadMapTooLong(40_020))),
        "encoded a head length Java reads as {written:?}: {result:?}"
    );
    assert!(dst.is_empty());
}
