//! Property tests: every message and frame the wire can represent survives encode → decode →
//! encode unchanged (in the current dialect, in seata-go's and in every exception-code
//! numbering), and the stream codec frames any prefix or split of valid bytes correctly.
//!
//! The generators only produce values the wire can represent. The normalisations it imposes,
//! and so what the generators avoid, are:
//! - a successful `TxResult` carries no `msg` (generated as "");
//! - `RegisterResponse` has no result header in version-1 frames (`result_code` None, `msg` "")
//!   and always one in version 2 (`result_code` Some, `msg` only when Failed);
//! - a `MergedWarpMessage` with no messages cannot carry an (empty) id list: nothing follows the
//!   count, which reads back as "no ids", so ids are generated with at least one message;
//! - `str16` strings are capped at 32767 UTF-8 bytes (generated strings stay short; see
//!   `str16_fields_are_capped_at_32767_bytes_on_a_char_boundary` for the cap itself).

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;
use tokio_util::codec::Decoder;
use txmesh_seata::message::*;
use txmesh_seata::wire::{STR16_MAX, truncate_utf8};
use txmesh_seata::*;

use TransactionExceptionCode as Tec;

/// Moderate case counts keep the suite fast in debug builds; failures are not persisted to
/// files (the test directory is not ours to write to).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One strategy per listed variant, each equally likely.
macro_rules! variants {
    ($($strategy:expr => $variant:ident),+ $(,)?) => {
        Union::new(vec![$(($strategy).prop_map(Message::$variant).boxed()),+]).boxed()
    };
}

// ---------------------------------------------------------------------------------------------
// Primitive generators
// ---------------------------------------------------------------------------------------------

/// Characters of every UTF-8 width, NUL and boundary code points.
const SPECIAL_CHARS: &[char] = &[
    'é',
    'ß',
    'ø',
    '中',
    '文',
    '€',
    '😀',
    '\0',
    '\n',
    '\u{7f}',
    '\u{80}',
    '\u{7ff}',
    '\u{800}',
    '\u{ffff}',
    '\u{10000}',
    '\u{10ffff}',
];

fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        1 => select(SPECIAL_CHARS),
        1 => any::<char>(),
    ]
}

/// A string of `chars` characters (so up to 4 × that many bytes), possibly empty.
fn text_of(chars: Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), chars).prop_map(String::from_iter)
}

/// A short string: well below the `str16` cap.
fn text() -> impl Strategy<Value = String> {
    text_of(0..41)
}

/// Any value of `T`, with its edge values drawn often.
fn int<T: Arbitrary + Clone + Debug + 'static>(edges: &'static [T]) -> impl Strategy<Value = T> {
    prop_oneof![1 => select(edges), 3 => any::<T>()]
}

fn int16() -> impl Strategy<Value = i16> {
    int(&[i16::MIN, i16::MAX, -1, 0, 7])
}

fn int32() -> impl Strategy<Value = i32> {
    int(&[i32::MIN, i32::MAX, -1, 0, 1])
}

fn int64() -> impl Strategy<Value = i64> {
    int(&[i64::MIN, i64::MAX, -1, 0, 1])
}

// ---------------------------------------------------------------------------------------------
// Message generators
// ---------------------------------------------------------------------------------------------

fn tx_result_with(msg: impl Strategy<Value = String>) -> impl Strategy<Value = TxResult> {
    (select(ResultCode::ALL), msg, select(Tec::ALL)).prop_map(
        |(result_code, msg, exception_code)| {
            TxResult {
                result_code,
                // The wire carries a msg only after Failed.
                msg: if result_code == ResultCode::Failed {
                    msg
                } else {
                    String::new()
                },
                exception_code,
            }
        },
    )
}

fn tx_result() -> impl Strategy<Value = TxResult> {
    tx_result_with(text())
}

fn global_begin_request() -> impl Strategy<Value = GlobalBeginRequest> {
    (int32(), text()).prop_map(|(timeout, transaction_name)| GlobalBeginRequest {
        timeout,
        transaction_name,
    })
}

fn global_begin_response() -> impl Strategy<Value = GlobalBeginResponse> {
    (tx_result(), text(), text()).prop_map(|(result, xid, extra_data)| GlobalBeginResponse {
        result,
        xid,
        extra_data,
    })
}

fn global_end_request() -> impl Strategy<Value = GlobalEndRequest> {
    (text(), text()).prop_map(|(xid, extra_data)| GlobalEndRequest { xid, extra_data })
}

fn global_end_response() -> impl Strategy<Value = GlobalEndResponse> {
    (tx_result(), select(GlobalStatus::ALL)).prop_map(|(result, global_status)| GlobalEndResponse {
        result,
        global_status,
    })
}

fn global_report_request() -> impl Strategy<Value = GlobalReportRequest> {
    (text(), text(), prop::option::of(select(GlobalStatus::ALL))).prop_map(
        |(xid, extra_data, global_status)| GlobalReportRequest {
            xid,
            extra_data,
            global_status,
        },
    )
}

fn branch_register_request() -> impl Strategy<Value = BranchRegisterRequest> {
    (text(), select(BranchType::ALL), text(), text(), text()).prop_map(
        |(xid, branch_type, resource_id, lock_key, application_data)| BranchRegisterRequest {
            xid,
            branch_type,
            resource_id,
            lock_key,
            application_data,
        },
    )
}

fn branch_register_response() -> impl Strategy<Value = BranchRegisterResponse> {
    (tx_result(), int64())
        .prop_map(|(result, branch_id)| BranchRegisterResponse { result, branch_id })
}

fn branch_report_request() -> impl Strategy<Value = BranchReportRequest> {
    (
        text(),
        int64(),
        select(BranchStatus::ALL),
        text(),
        text(),
        select(BranchType::ALL),
    )
        .prop_map(
            |(xid, branch_id, status, resource_id, application_data, branch_type)| {
                BranchReportRequest {
                    xid,
                    branch_id,
                    status,
                    resource_id,
                    application_data,
                    branch_type,
                }
            },
        )
}

fn branch_end_request() -> impl Strategy<Value = BranchEndRequest> {
    (text(), int64(), select(BranchType::ALL), text(), text()).prop_map(
        |(xid, branch_id, branch_type, resource_id, application_data)| BranchEndRequest {
            xid,
            branch_id,
            branch_type,
            resource_id,
            application_data,
        },
    )
}

fn branch_end_response(
    result: impl Strategy<Value = TxResult>,
) -> impl Strategy<Value = BranchEndResponse> {
    (result, text(), int64(), select(BranchStatus::ALL)).prop_map(
        |(result, xid, branch_id, branch_status)| BranchEndResponse {
            result,
            xid,
            branch_id,
            branch_status,
        },
    )
}

fn global_lock_query_response(
    result: impl Strategy<Value = TxResult>,
) -> impl Strategy<Value = GlobalLockQueryResponse> {
    (result, any::<bool>())
        .prop_map(|(result, lockable)| GlobalLockQueryResponse { result, lockable })
}

/// The four answers whose failure msg seata-go frames with a one-byte length (types 4, 6, 14
/// and 22, spec P1), each equally likely, with failure messages drawn from `msg`.
fn short_msg_answer<S: Strategy<Value = String> + 'static>(
    msg: fn() -> S,
) -> BoxedStrategy<Message> {
    variants![
        branch_end_response(tx_result_with(msg())) => BranchCommitResponse,
        branch_end_response(tx_result_with(msg())) => BranchRollbackResponse,
        tx_result_with(msg()) => BranchReportResponse,
        global_lock_query_response(tx_result_with(msg())) => GlobalLockQueryResponse,
    ]
}

/// The result header of one of the four short-msg answers.
fn short_msg_result(message: &mut Message) -> Option<&mut TxResult> {
    match message {
        Message::BranchCommitResponse(m) | Message::BranchRollbackResponse(m) => {
            Some(&mut m.result)
        }
        Message::BranchReportResponse(result) => Some(result),
        Message::GlobalLockQueryResponse(m) => Some(&mut m.result),
        _ => None,
    }
}

fn register_request() -> impl Strategy<Value = RegisterRequest> {
    (text(), text(), text(), text()).prop_map(
        |(version, application_id, transaction_service_group, extra_data)| RegisterRequest {
            version,
            application_id,
            transaction_service_group,
            extra_data,
        },
    )
}

fn register_rm_request() -> impl Strategy<Value = RegisterRmRequest> {
    (register_request(), text()).prop_map(|(identity, resource_ids)| RegisterRmRequest {
        identity,
        resource_ids,
    })
}

/// A registration response as a frame of `version` can carry it (spec §4.4).
fn register_response(version: u8) -> impl Strategy<Value = RegisterResponse> {
    (select(ResultCode::ALL), text(), any::<bool>(), text()).prop_map(
        move |(code, msg, identified, server_version)| match version {
            1 => RegisterResponse::new(identified, server_version),
            _ => RegisterResponse {
                result_code: Some(code),
                msg: if code == ResultCode::Failed {
                    msg
                } else {
                    String::new()
                },
                identified,
                version: server_version,
            },
        },
    )
}

fn unregister_rm_response() -> impl Strategy<Value = UnregisterRmResponse> {
    (any::<bool>(), text()).prop_map(|(identified, version)| UnregisterRmResponse {
        identified,
        version,
    })
}

fn undo_log_delete_request() -> impl Strategy<Value = UndoLogDeleteRequest> {
    (select(BranchType::ALL), text(), int16()).prop_map(|(branch_type, resource_id, save_days)| {
        UndoLogDeleteRequest {
            branch_type,
            resource_id,
            save_days,
        }
    })
}

/// Every message that is not a batch, as a frame of protocol `version` can carry it, each
/// variant equally likely.
fn single_message(version: u8) -> BoxedStrategy<Message> {
    let others = variants![
        global_begin_request() => GlobalBeginRequest,
        global_begin_response() => GlobalBeginResponse,
        branch_end_request() => BranchCommitRequest,
        branch_end_request() => BranchRollbackRequest,
        global_end_request() => GlobalCommitRequest,
        global_end_response() => GlobalCommitResponse,
        global_end_request() => GlobalRollbackRequest,
        global_end_response() => GlobalRollbackResponse,
        branch_register_request() => BranchRegisterRequest,
        branch_register_response() => BranchRegisterResponse,
        branch_report_request() => BranchReportRequest,
        global_end_request() => GlobalStatusRequest,
        global_end_response() => GlobalStatusResponse,
        global_report_request() => GlobalReportRequest,
        global_end_response() => GlobalReportResponse,
        branch_register_request() => GlobalLockQueryRequest,
        register_request() => RegisterTmRequest,
        register_response(version) => RegisterTmResponse,
        register_rm_request() => RegisterRmRequest,
        register_response(version) => RegisterRmResponse,
        register_rm_request() => UnregisterRmRequest,
        unregister_rm_response() => UnregisterRmResponse,
        undo_log_delete_request() => UndoLogDeleteRequest,
    ];
    Union::new_weighted(vec![(23, others), (4, short_msg_answer(text))]).boxed()
}

/// Up to three non-batch messages, each paired with a request id.
fn with_ids(version: u8, count: Range<usize>) -> impl Strategy<Value = (Vec<Message>, Vec<i32>)> {
    prop::collection::vec((single_message(version), int32()), count)
        .prop_map(|pairs| pairs.into_iter().unzip())
}

/// The four batch shapes: MergedWarpMessage with and without msgIds, MergeResultMessage and
/// BatchResultMessage, all holding non-batch messages.
fn batch_message(version: u8) -> BoxedStrategy<Message> {
    let msgs = move || prop::collection::vec(single_message(version), 0..4);
    Union::new(vec![
        msgs()
            .prop_map(|msgs| {
                Message::MergedWarpMessage(MergedWarpMessage {
                    msgs,
                    msg_ids: None,
                })
            })
            .boxed(),
        with_ids(version, 1..4)
            .prop_map(|(msgs, ids)| {
                Message::MergedWarpMessage(MergedWarpMessage {
                    msgs,
                    msg_ids: Some(ids),
                })
            })
            .boxed(),
        msgs()
            .prop_map(|msgs| Message::MergeResultMessage(MergeResultMessage { msgs }))
            .boxed(),
        with_ids(version, 0..4)
            .prop_map(|(result_messages, msg_ids)| {
                Message::BatchResultMessage(BatchResultMessage {
                    result_messages,
                    msg_ids,
                })
            })
            .boxed(),
    ])
    .boxed()
}

/// Any of the 30 messages, each variant about equally likely.
fn message(version: u8) -> impl Strategy<Value = Message> {
    prop_oneof![27 => single_message(version), 4 => batch_message(version)]
}

// ---------------------------------------------------------------------------------------------
// Frame generators
// ---------------------------------------------------------------------------------------------

/// The compressors this crate can apply to a body.
const BODY_COMPRESSORS: &[Compressor] = &[
    Compressor::None,
    Compressor::Gzip,
    Compressor::Deflater,
    Compressor::Zstd,
];

fn head_map() -> impl Strategy<Value = HeadMap> {
    prop::collection::vec((prop::option::of(text()), prop::option::of(text())), 0..3)
}

/// Any frame the current dialect can carry: heartbeats without a body (and any known codec
/// and compressor byte, which nothing reads), other frames with a SEATA body in any supported
/// compression.
fn frame() -> impl Strategy<Value = Frame> {
    (1u8..=2, select(FrameType::ALL)).prop_flat_map(|(version, frame_type)| {
        let (codecs, compressors, body): (&'static [Serializer], _, BoxedStrategy<_>) =
            if frame_type.is_heartbeat() {
                (Serializer::ALL, Compressor::ALL, Just(None).boxed())
            } else {
                (
                    &[Serializer::Seata][..],
                    BODY_COMPRESSORS,
                    message(version).prop_map(Some).boxed(),
                )
            };
        (
            select(codecs),
            select(compressors),
            int32(),
            head_map(),
            body,
        )
            .prop_map(
                move |(codec, compressor, request_id, head_map, body)| Frame {
                    version,
                    frame_type,
                    codec,
                    compressor,
                    request_id,
                    head_map,
                    body,
                },
            )
    })
}

fn encode(frame: &Frame) -> Bytes {
    frame
        .to_bytes(&Dialect::CURRENT)
        .expect("a representable frame encodes")
}

/// `numbering` round-trips what it knows, both as bytes and inside a frame, and maps every
/// other code to its nearest known meaning.
fn check_numbering(
    numbering: ExceptionCodeNumbering,
    code: Tec,
    byte: u8,
) -> Result<(), TestCaseError> {
    let clamped = numbering.clamp(code);
    prop_assert_eq!(numbering.decode(numbering.encode(code)), Ok(clamped));
    prop_assert_eq!(numbering.clamp(clamped), clamped, "clamping is idempotent");
    if let Ok(known) = numbering.decode(byte) {
        prop_assert_eq!(known, numbering.clamp(known), "a decoded code is known");
        prop_assert_eq!(numbering.encode(known), byte, "decoding is injective");
    }

    let dialect = Dialect {
        exception_codes: numbering,
        ..Dialect::CURRENT
    };
    let with_code = |exception_code| {
        Frame::response(
            1,
            Message::BranchRegisterResponse(BranchRegisterResponse {
                result: TxResult::failure(exception_code, "refused"),
                branch_id: 0,
            }),
        )
    };
    let bytes = with_code(code).to_bytes(&dialect).expect("encodes");
    let decoded = Frame::decode(&bytes, &dialect).expect("decodes");
    prop_assert_eq!(decoded, with_code(clamped));
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_frame_round_trips(frame in frame()) {
        let bytes = encode(&frame);
        let decoded = Frame::decode(&bytes, &Dialect::CURRENT).expect("its bytes decode");
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(encode(&decoded), bytes, "re-encoding gives the same bytes");
    }

    #[test]
    fn every_message_round_trips_in_both_protocol_versions(
        (protocol_version, message) in (1u8..=2).prop_flat_map(|v| (Just(v), message(v))),
    ) {
        let ctx = BodyContext { protocol_version, dialect: Dialect::CURRENT };
        let mut body = BytesMut::new();
        message.encode(&mut body, &ctx).expect("encodes");
        prop_assert_eq!(&body[..2], &message.type_code().to_be_bytes()[..]);
        prop_assert_eq!(Message::decode(&body, &ctx).expect("decodes"), message);
    }

    #[test]
    fn seata_go_round_trips_short_failure_msgs(
        message in short_msg_answer(|| text_of(0..61).prop_map(|s| truncate_utf8(&s, 127).to_owned())),
        request_id in int32(),
    ) {
        let go = Dialect::SEATA_GO;
        let frame = Frame::response(request_id, message);
        let bytes = frame.to_bytes(&go).expect("encodes");
        let mut expected = frame.clone();
        let result = expected.body.as_mut().and_then(short_msg_result).expect("a short-msg answer");
        if result.result_code == ResultCode::Failed {
            // type code, resultCode 0, then a one-byte length.
            prop_assert_eq!(bytes[18], 0);
            prop_assert_eq!(usize::from(bytes[19]), result.msg.len());
        }
        result.exception_code = go.exception_codes.clamp(result.exception_code);

        let decoded = Frame::decode(&bytes, &go).expect("decodes");
        prop_assert_eq!(&decoded, &expected);
        prop_assert_eq!(decoded.to_bytes(&go).expect("re-encodes"), bytes);
    }

    #[test]
    fn seata_go_cuts_long_failure_msgs_to_127_bytes_on_a_char_boundary(
        message in short_msg_answer(text),
        long_msg in text_of(128..200),
    ) {
        let go = Dialect::SEATA_GO;
        let mut frame = Frame::response(1, message);
        let result = frame.body.as_mut().and_then(short_msg_result).expect("a short-msg answer");
        // Only a failure carries the msg.
        result.result_code = ResultCode::Failed;
        let cut = truncate_utf8(&long_msg, 127).to_owned();
        result.msg = long_msg;
        let bytes = frame.to_bytes(&go).expect("encodes");
        prop_assert_eq!(usize::from(bytes[19]), cut.len());

        let mut decoded = Frame::decode(&bytes, &go).expect("decodes");
        let back = decoded.body.as_mut().and_then(short_msg_result).expect("a short-msg answer");
        prop_assert_eq!(&back.msg, &cut);
        prop_assert!(cut.len() <= 127 && cut.len() > 123, "cut only as far as a char boundary needs");
    }

    #[test]
    fn numbering_1_0_round_trips_the_codes_it_knows(code in select(Tec::ALL), byte in any::<u8>()) {
        check_numbering(ExceptionCodeNumbering::V1_0, code, byte)?;
    }

    #[test]
    fn numbering_1_5_round_trips_the_codes_it_knows(code in select(Tec::ALL), byte in any::<u8>()) {
        check_numbering(ExceptionCodeNumbering::V1_5, code, byte)?;
    }

    #[test]
    fn numbering_1_7_round_trips_the_codes_it_knows(code in select(Tec::ALL), byte in any::<u8>()) {
        check_numbering(ExceptionCodeNumbering::V1_7, code, byte)?;
    }

    #[test]
    fn numbering_2_0_round_trips_the_codes_it_knows(code in select(Tec::ALL), byte in any::<u8>()) {
        check_numbering(ExceptionCodeNumbering::V2_0, code, byte)?;
    }

    #[test]
    fn every_truncation_of_a_frame_needs_more_bytes(frame in frame(), cut in any::<Index>()) {
        let bytes = encode(&frame);
        // Byte by byte through one codec: every proper prefix is "need more" and stays buffered.
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for (fed, byte) in bytes.iter().enumerate() {
            let step = codec.decode(&mut buf);
            prop_assert!(matches!(step, Ok(None)), "prefix of {} bytes: {:?}", fed, step);
            prop_assert_eq!(buf.len(), fed, "nothing consumed");
            buf.extend_from_slice(&[*byte]);
        }
        let raw = codec.decode(&mut buf).expect("frames").expect("complete");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(raw.into_frame(&Dialect::CURRENT).expect("decodes"), frame);

        // One prefix in a fresh buffer, as a one-shot parse.
        let n = cut.index(bytes.len());
        let mut fresh = BytesMut::from(&bytes[..n]);
        let step = FrameCodec::default().decode(&mut fresh);
        prop_assert!(matches!(step, Ok(None)), "fresh prefix of {} bytes: {:?}", n, step);
        let parsed = RawFrame::parse(&bytes[..n], DEFAULT_MAX_FRAME_LEN);
        let incomplete = matches!(
            parsed,
            Err(DecodeError::Incomplete { needed, available })
                if available == n && needed > n && (n < 7 || needed == bytes.len())
        );
        prop_assert!(incomplete, "parse of {} bytes: {:?}", n, parsed);
    }

    #[test]
    fn a_stream_split_anywhere_reassembles_into_the_same_frames(
        frames in prop::collection::vec(frame(), 1..4),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let encoded: Vec<Bytes> = frames.iter().map(encode).collect();
        let stream = encoded.concat();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.extend([0, stream.len()]);
        points.sort_unstable();
        points.dedup();

        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in points.windows(2) {
            buf.extend_from_slice(&stream[chunk[0]..chunk[1]]);
            while let Some(raw) = codec.decode(&mut buf).expect("a valid stream frames") {
                got.push(raw);
            }
        }
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        let expected: Vec<RawFrame> = encoded
            .iter()
            .map(|b| RawFrame::parse(b, DEFAULT_MAX_FRAME_LEN).expect("frames"))
            .collect();
        prop_assert_eq!(&got, &expected);
        let decoded: Vec<Frame> = got
            .into_iter()
            .map(|raw| raw.into_frame(&Dialect::CURRENT).expect("decodes"))
            .collect();
        prop_assert_eq!(decoded, frames);
    }
}

/// Draws `count` values from `strategy` with a fixed seed.
fn sample<S: Strategy>(strategy: &S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("generates").current())
        .collect()
}

#[test]
fn the_generators_cover_every_variant_and_frame_feature() {
    let all_codes: BTreeSet<i16> = (i16::MIN..=i16::MAX)
        .filter(|c| Message::name_of(*c).is_some())
        .collect();
    assert_eq!(all_codes.len(), 30, "30 message types");

    let mut codes = BTreeSet::new();
    let mut inner_codes = BTreeSet::new();
    let mut features = BTreeSet::new();
    for frame in sample(&frame(), 3000) {
        features.insert(format!("type {:?}", frame.frame_type));
        features.insert(format!("version {}", frame.version));
        features.insert(format!("compressor {}", frame.compressor));
        for (key, value) in &frame.head_map {
            features.insert(format!("null key {}", key.is_none()));
            features.insert(format!("null value {}", value.is_none()));
        }
        let Some(message) = frame.body else { continue };
        codes.insert(message.type_code());
        match &message {
            Message::MergedWarpMessage(m) => {
                features.insert(format!("msgIds {}", m.msg_ids.is_some()));
                inner_codes.extend(m.msgs.iter().map(Message::type_code));
            }
            Message::MergeResultMessage(m) => {
                inner_codes.extend(m.msgs.iter().map(Message::type_code));
            }
            Message::BatchResultMessage(m) => {
                inner_codes.extend(m.result_messages.iter().map(Message::type_code));
            }
            Message::RegisterTmResponse(r) | Message::RegisterRmResponse(r) => {
                features.insert(format!("v{} result {:?}", frame.version, r.result_code));
            }
            _ => {}
        }
    }
    assert_eq!(codes, all_codes, "every message type");
    let singles: BTreeSet<i16> = all_codes
        .iter()
        .copied()
        .filter(|c| ![59, 60, 121].contains(c))
        .collect();
    assert_eq!(inner_codes, singles, "every non-batch type inside batches");
    for feature in [
        "type Request",
        "type Response",
        "type Oneway",
        "type HeartbeatRequest",
        "type HeartbeatResponse",
        "version 1",
        "version 2",
        "compressor NONE",
        "compressor GZIP",
        "compressor DEFLATER",
        "compressor ZSTD",
        "null key true",
        "null key false",
        "null value true",
        "null value false",
        "msgIds true",
        "msgIds false",
        "v1 result None",
        "v2 result Some(Success)",
        "v2 result Some(Failed)",
    ] {
        assert!(features.contains(feature), "never generated: {feature}");
    }
}

#[test]
fn the_generators_produce_every_enum_value_and_non_ascii_text() {
    let results = sample(&tx_result(), 2000);
    let codes: BTreeSet<Tec> = results.iter().map(|r| r.exception_code).collect();
    assert_eq!(codes.len(), Tec::ALL.len());
    assert!(
        results
            .iter()
            .any(|r| r.msg.is_empty() && r.result_code == ResultCode::Failed)
    );
    assert!(results.iter().any(|r| !r.msg.is_ascii()));

    let reports = sample(&branch_report_request(), 2000);
    let statuses: BTreeSet<BranchStatus> = reports.iter().map(|r| r.status).collect();
    let types: BTreeSet<BranchType> = reports.iter().map(|r| r.branch_type).collect();
    assert_eq!(statuses.len(), BranchStatus::ALL.len());
    assert_eq!(types.len(), BranchType::ALL.len());
    assert!(reports.iter().any(|r| r.branch_id == i64::MIN));
    assert!(reports.iter().any(|r| r.branch_id == i64::MAX));

    let ends = sample(&global_end_response(), 2000);
    let statuses: BTreeSet<GlobalStatus> = ends.iter().map(|r| r.global_status).collect();
    assert_eq!(statuses.len(), GlobalStatus::ALL.len());
}

#[test]
fn str16_fields_are_capped_at_32767_bytes_on_a_char_boundary() {
    let begin = |name: String| {
        Frame::request(
            1,
            Message::GlobalBeginRequest(GlobalBeginRequest {
                timeout: 60_000,
                transaction_name: name,
            }),
        )
    };
    let name_after_round_trip = |name: &str| {
        let bytes = encode(&begin(name.to_owned()));
        match Frame::decode(&bytes, &Dialect::CURRENT)
            .expect("decodes")
            .body
        {
            Some(Message::GlobalBeginRequest(m)) => m.transaction_name,
            other => panic!("unexpected body {other:?}"),
        }
    };

    let exact = "a".repeat(STR16_MAX);
    assert_eq!(name_after_round_trip(&exact), exact, "32767 bytes fit");
    let over = "a".repeat(STR16_MAX + 1);
    assert_eq!(name_after_round_trip(&over), exact, "one byte over is cut");
    // 40 000 bytes of two-byte characters: cut to 32766 bytes, the last whole character.
    let wide = "é".repeat(20_000);
    assert_eq!(name_after_round_trip(&wide), "é".repeat(16_383));
    // A four-byte character straddling the cap is dropped whole.
    let straddling = format!("{}😀tail", "a".repeat(STR16_MAX - 2));
    assert_eq!(
        name_after_round_trip(&straddling),
        "a".repeat(STR16_MAX - 2)
    );

    // str32 fields are not capped at 32767.
    let lock_key = "k".repeat(100_000);
    let register = Frame::request(
        2,
        Message::BranchRegisterRequest(BranchRegisterRequest {
            xid: "x:1:2".into(),
            branch_type: BranchType::At,
            resource_id: "r".into(),
            lock_key,
            application_data: "é".repeat(40_000),
        }),
    );
    let bytes = encode(&register);
    assert_eq!(
        Frame::decode(&bytes, &Dialect::CURRENT).expect("decodes"),
        register
    );
}

#[test]
fn the_documented_wire_normalisations_hold() {
    let round_trip =
        |frame: &Frame| Frame::decode(&encode(frame), &Dialect::CURRENT).expect("decodes");
    let body = |frame: Frame| frame.body.expect("a body");

    // A success carries no msg.
    let success_with_msg = TxResult {
        msg: "dropped".into(),
        ..TxResult::success()
    };
    assert_eq!(
        body(round_trip(&Frame::response(
            1,
            Message::BranchReportResponse(success_with_msg)
        ))),
        Message::BranchReportResponse(TxResult::success())
    );

    // Version 1 registration responses have no result header.
    let v2_response = RegisterResponse {
        result_code: Some(ResultCode::Failed),
        msg: "refused".into(),
        identified: false,
        version: "2.7.0".into(),
    };
    assert_eq!(
        body(round_trip(&Frame::response(
            2,
            Message::RegisterTmResponse(v2_response.clone())
        ))),
        Message::RegisterTmResponse(RegisterResponse::new(false, "2.7.0"))
    );
    // Version 2 writes one; without a code, the code follows `identified`.
    let v2 = |message: Message| Frame {
        version: 2,
        ..Frame::response(2, message)
    };
    assert_eq!(
        body(round_trip(&v2(Message::RegisterRmResponse(
            RegisterResponse::new(true, "2.7.0")
        )))),
        Message::RegisterRmResponse(RegisterResponse {
            result_code: Some(ResultCode::Success),
            ..RegisterResponse::new(true, "2.7.0")
        })
    );
    assert_eq!(
        body(round_trip(&v2(Message::RegisterTmResponse(
            v2_response.clone()
        )))),
        Message::RegisterTmResponse(v2_response)
    );

    // A merged request with no messages cannot tell an empty id list from none.
    let empty = |msg_ids| {
        Frame::oneway(
            3,
            Message::MergedWarpMessage(MergedWarpMessage {
                msgs: vec![],
                msg_ids,
            }),
        )
    };
    assert_eq!(round_trip(&empty(Some(vec![]))), empty(None));
    assert_eq!(encode(&empty(Some(vec![]))), encode(&empty(None)));
}
