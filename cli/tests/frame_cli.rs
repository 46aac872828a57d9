//! `txmesh frame decode|encode`, run as a binary: every valid frame survives `decode | encode`
//! byte for byte, and malformed input fails with exit code 2 and one line on stderr.

mod common;

use std::io::Write;

use bytes::BytesMut;
use serde_json::{Value, json};
use txmesh_seata::message::*;
use txmesh_seata::*;

use common::txmesh_with_input;

const XID: &str = "192.168.0.2:8091:2000042948";

/// Every hex vector of seata-protocol.md §7, written as the spec writes them.
const SPEC_VECTORS: &[&str] = &[
    // 7.1
    "da da 01 00000010 0010 03 01 00 00000001",
    "da da 01 00000010 0010 04 01 00 00000001",
    "dada0200000010001003010000000001",
    // 7.2–7.4
    "dada010000003200100001000000000200650005322e322e300003617070001064656661756c745f74785f67726f75700000",
    "dada010000001a0010010100000000020066010005322e322e30",
    "dada010000001a0010010100000000030068000005322e322e30",
    "dada010000005400100001000000000300670005322e322e300003617070001064656661756c745f74785f67726f757000000000001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f6462",
    // 7.5–7.6
    "dada010000001f00100001000000000500010000ea600007746573742d7478",
    "dada010000001800100001000000001800010000ea600000",
    "dada010000003300100101000000000500020100001b3139322e3136382e302e323a383039313a323030303034323934380000",
    "dada010000001e00100101000000000500020000046f6f70730100000000",
    // 7.7–7.9
    "dada0100000065001000010000000006000b001b3139322e3136382e302e323a383039313a3230303030343239343800001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f64620000000d6163636f756e745f74626c3a3100000000",
    "dada010000001c001001010000000006000c01000000000077363bc6",
    "dada010000005c0010000100000000640003001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc600001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f646200000000",
    "dada010000003a00100101000000006400040100001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc605",
    "dada010000004e0010000100000000650005001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc6010009746363416374696f6e000000077b226b223a317d",
    "dada010000003a00100101000000006500060100001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc608",
    // 7.10–7.13
    "dada0100000034001002010000000016003b0000001e000200010000ea60000161000f0005783a313a3200000000001400000015",
    "dada010000002a001001010000000016003c000000140002000201000005783a313a3300000010010001",
    "dada010000003200100101000000001600790000001c0002000201000005783a313a33000000100100010000001400000015",
    "dada010000002100160001000000001700016b000176000f0005783a313a320000",
    // 7.14
    "dada020000001b001001010000000002006601010005322e372e30",
    "dada010000001a0010010100000000020066010005322e372e30",
    "dada020000002e0010010100000000020066000011544d20636865636b41757468206661696c000005322e372e30",
    "dada020000001b001001010000000003006801010005322e372e30",
    "dada020000005400100201000000000900690005322e372e300003617070001064656661756c745f74785f67726f757000000000001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f6462",
    "dada020000001a001001010000000009006a010005322e372e30",
    // 7.15
    "dada010000005d001000010000000007000d001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc603001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f64620000000000",
    "dada0100000014001001010000000007000e0100",
    "dada01000000310010000100000000080007001b3139322e3136382e302e323a383039313a323030303034323934380000",
    "dada01000000150010010100000000080008010009",
    "dada01000000310010000100000000090009001b3139322e3136382e302e323a383039313a323030303034323934380000",
    "dada0100000015001001010000000009000a01000b",
    "dada010000003100100001000000000a000f001b3139322e3136382e302e323a383039313a323030303034323934380000",
    "dada010000001800100101000000000a0010000001780a0f",
    "dada010000003200100001000000000b0011001b3139322e3136382e302e323a383039313a32303030303432393438000009",
    "dada010000001500100101000000000b0012010009",
    "dada010000006500100001000000000c0015001b3139322e3136382e302e323a383039313a3230303030343239343800001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f64620000000d6163636f756e745f74626c3a3100000000",
    "dada010000001600100101000000000c001601000001",
    "dada0100000035001002010000000066006f00001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f64620007",
];

// ---- running the binary ----

/// Stdout of a run that must succeed.
fn succeed(args: &[&str], stdin: &str) -> String {
    let output = txmesh_with_input(args, stdin);
    assert!(
        output.status.success(),
        "txmesh {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// `txmesh frame decode [options] HEX`, parsed.
fn decode_with(options: &[&str], hex: &str) -> Value {
    let args = [&["frame", "decode"], options, &[hex]].concat();
    let out = succeed(&args, "");
    assert_eq!(out.lines().count(), 1, "one line of JSON: {out}");
    serde_json::from_str(&out).expect("decode prints JSON")
}

fn decode(hex: &str) -> Value {
    decode_with(&[], hex)
}

/// `txmesh frame encode`, its hex without the newline.
fn encode(json: &str) -> String {
    let out = succeed(&["frame", "encode"], json);
    out.strip_suffix('\n')
        .expect("encode ends its line")
        .to_owned()
}

/// Asserts `decode | encode` gives back the frame; returns the decoded JSON.
fn assert_round_trip_with(options: &[&str], hex: &str) -> Value {
    let json = decode_with(options, hex);
    let expected: String = hex.split_whitespace().collect();
    assert_eq!(encode(&json.to_string()), expected, "JSON was {json}");
    json
}

fn assert_round_trip(hex: &str) -> Value {
    assert_round_trip_with(&[], hex)
}

/// Asserts a run fails with exit code 2 and one `error:` line on stderr that mentions `expected`.
fn assert_fails(args: &[&str], stdin: &str, expected: &str) {
    let output = txmesh_with_input(args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains(expected),
        "{stderr:?} should mention {expected:?}"
    );
}

fn assert_decode_fails(hex: &str, expected: &str) {
    assert_fails(&["frame", "decode", hex], "", expected);
}

// ---- building frames ----

fn frame(version: u8, frame_type: FrameType, id: i32, body: Option<Message>) -> Frame {
    Frame {
        version,
        frame_type,
        codec: Serializer::Seata,
        compressor: Compressor::None,
        request_id: id,
        head_map: HeadMap::new(),
        body,
    }
}

fn to_hex(frame: &Frame, dialect: &Dialect) -> String {
    hex::encode(frame.to_bytes(dialect).expect("the frame encodes"))
}

/// A frame with the given body bytes, its header written by hand.
fn frame_with_body(frame_type: FrameType, compressor: Compressor, id: i32, body: &[u8]) -> String {
    let mut bytes = vec![0xda, 0xda, 1];
    bytes.extend((16 + body.len() as u32).to_be_bytes());
    bytes.extend(16u16.to_be_bytes());
    bytes.extend([
        frame_type.code(),
        Serializer::Seata.code(),
        compressor.code(),
    ]);
    bytes.extend(id.to_be_bytes());
    bytes.extend(body);
    hex::encode(bytes)
}

fn plain_body(message: &Message) -> Vec<u8> {
    let mut body = BytesMut::new();
    message
        .encode(&mut body, &BodyContext::default())
        .expect("the message encodes");
    body.to_vec()
}

fn global_begin(name: &str) -> Message {
    Message::GlobalBeginRequest(GlobalBeginRequest {
        timeout: 60_000,
        transaction_name: name.into(),
    })
}

fn branch_commit_failed(msg: &str) -> Message {
    Message::BranchCommitResponse(BranchEndResponse {
        result: TxResult::failure(TransactionExceptionCode::BranchTransactionNotExist, msg),
        xid: XID.into(),
        branch_id: 2000042950,
        branch_status: BranchStatus::PhaseTwoCommitFailedUnretryable,
    })
}

/// A compressor other than txmesh's own.
type Compress = fn(&[u8]) -> Vec<u8>;

/// gzip with the header Java's `GZIPOutputStream` writes (OS byte 0; flate2 writes 255).
fn java_gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .operating_system(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip compresses");
    encoder.finish().expect("gzip finishes")
}

/// zlib at another level than txmesh uses.
fn best_zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("zlib compresses");
    encoder.finish().expect("zlib finishes")
}

/// zstd streamed (no content size in the frame header), at another level than txmesh uses.
fn streamed_zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 19).expect("zstd compresses")
}

// ---- round trips ----

#[test]
fn every_spec_vector_round_trips() {
    for vector in SPEC_VECTORS {
        assert_round_trip(vector);
    }
}

#[test]
fn decoded_json_carries_the_frame_and_body_fields() {
    let json = decode(SPEC_VECTORS[3]);
    assert_eq!(json["fullLength"], 50);
    assert_eq!(json["headLength"], 16);
    assert_eq!(json["version"], 1);
    assert_eq!(json["frameType"], "Request");
    assert_eq!(json["codec"], "SEATA");
    assert_eq!(json["compressor"], "NONE");
    assert_eq!(json["requestId"], 2);
    assert_eq!(json["headMap"], json!([]));
    assert_eq!(json["typeCode"], 101);
    let body = &json["body"];
    assert_eq!(body["type"], "RegisterTMRequest");
    assert_eq!(body["version"], "2.2.0");
    assert_eq!(body["applicationId"], "app");
    assert_eq!(body["transactionServiceGroup"], "default_tx_group");
    assert_eq!(body["extraData"], "");
    for absent in ["msgLength", "exceptionCodes", "wireBody"] {
        assert!(
            json.get(absent).is_none(),
            "{absent} is only there when needed"
        );
    }
}

#[test]
fn merged_warp_message_decodes_to_the_documented_shape() {
    let vector = "dada0100000034001002010000000016003b0000001e000200010000ea60000161000f0005783a313a3200000000001400000015";
    assert_eq!(
        decode(vector),
        json!({
            "fullLength": 52,
            "headLength": 16,
            "version": 1,
            "frameType": "Oneway",
            "codec": "SEATA",
            "compressor": "NONE",
            "requestId": 22,
            "headMap": [],
            "body": {
                "type": "MergedWarpMessage",
                "msgs": [
                    {"type": "GlobalBeginRequest", "timeout": 60000, "transactionName": "a"},
                    {"type": "GlobalStatusRequest", "xid": "x:1:2", "extraData": ""}
                ],
                "msgIds": [20, 21]
            },
            "typeCode": 59
        })
    );
}

#[test]
fn compressed_frames_round_trip() {
    let message = global_begin(&"compress me ".repeat(20));
    for compressor in [Compressor::Gzip, Compressor::Deflater, Compressor::Zstd] {
        let mut frame = Frame::request(5, message.clone());
        frame.compressor = compressor;
        let json = assert_round_trip(&to_hex(&frame, &Dialect::CURRENT));
        assert_eq!(json["compressor"], compressor.name());
        assert_eq!(json["body"]["transactionName"], "compress me ".repeat(20));
    }
}

#[test]
fn bodies_compressed_by_other_implementations_keep_their_exact_bytes() {
    let plain = plain_body(&global_begin(&"java ".repeat(30)));
    let foreign: [(Compressor, Compress); 3] = [
        (Compressor::Gzip, java_gzip),
        (Compressor::Deflater, best_zlib),
        (Compressor::Zstd, streamed_zstd),
    ];
    for (compressor, compress) in foreign {
        let body = compress(&plain);
        let ours = compress::compress(compressor, &plain).expect("compresses");
        assert_ne!(
            body, ours,
            "{compressor}: the test needs bytes txmesh would not write"
        );
        let json = assert_round_trip(&frame_with_body(FrameType::Request, compressor, 9, &body));
        assert_eq!(json["wireBody"], hex::encode(&body));
    }
}

#[test]
fn an_edited_compressed_body_is_compressed_afresh() {
    let body = java_gzip(&plain_body(&global_begin("before")));
    let mut json = decode(&frame_with_body(
        FrameType::Request,
        Compressor::Gzip,
        9,
        &body,
    ));
    json["body"]["transactionName"] = json!("after");

    let bytes = hex::decode(encode(&json.to_string())).expect("encode prints hex");
    let frame = Frame::decode(&bytes, &Dialect::CURRENT).expect("the output is a frame");
    assert_eq!(frame.compressor, Compressor::Gzip);
    assert_eq!(frame.body, Some(global_begin("after")));
}

#[test]
fn head_maps_with_nulls_and_non_ascii_strings_round_trip() {
    let mut frame = Frame::request(-7, global_begin("事务-ü"));
    frame.head_map = vec![
        (Some("trace-ü".into()), Some("事务".into())),
        (Some("k".into()), None),
        (None, Some("v".into())),
        (Some(String::new()), Some(String::new())),
    ];
    let json = assert_round_trip(&to_hex(&frame, &Dialect::CURRENT));
    assert_eq!(
        json["headMap"],
        json!([["trace-ü", "事务"], ["k", null], [null, "v"], ["", ""]])
    );
    assert_eq!(json["body"]["transactionName"], "事务-ü");
    assert_eq!(json["requestId"], -7);
}

#[test]
fn extreme_ids_round_trip() {
    let commit = Message::BranchCommitRequest(BranchEndRequest {
        xid: XID.into(),
        branch_id: i64::MIN,
        branch_type: BranchType::Tcc,
        resource_id: "tccAction".into(),
        application_data: "{\"k\":1}".into(),
    });
    let json = assert_round_trip(&to_hex(
        &Frame::request(i32::MIN, commit),
        &Dialect::CURRENT,
    ));
    assert_eq!(json["requestId"], i32::MIN);
    assert_eq!(json["body"]["branchId"], i64::MIN);

    let registered = Message::BranchRegisterResponse(BranchRegisterResponse {
        result: TxResult::success(),
        branch_id: i64::MAX,
    });
    let json = assert_round_trip(&to_hex(&Frame::response(-1, registered), &Dialect::CURRENT));
    assert_eq!(json["requestId"], -1);
    assert_eq!(json["body"]["branchId"], i64::MAX);
    assert_round_trip(&to_hex(&Frame::pong(i32::MAX), &Dialect::CURRENT));
}

#[test]
fn version_2_registration_responses_round_trip() {
    let refused = RegisterResponse {
        result_code: Some(ResultCode::Failed),
        msg: "RM checkAuth fail".into(),
        identified: false,
        version: "2.7.0".into(),
    };
    let accepted = RegisterResponse::new(true, "2.7.0");
    for message in [
        Message::RegisterRmResponse(refused),
        Message::RegisterTmResponse(accepted),
    ] {
        let json = assert_round_trip(&to_hex(
            &frame(2, FrameType::Response, 3, Some(message)),
            &Dialect::CURRENT,
        ));
        assert_eq!(json["version"], 2);
        assert!(
            json["body"]["resultCode"].is_string(),
            "v2 has a result code"
        );
    }
}

#[test]
fn batches_with_and_without_ids_round_trip() {
    let status = Message::GlobalStatusRequest(GlobalEndRequest {
        xid: XID.into(),
        extra_data: String::new(),
    });
    let pre_1_5 = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![global_begin("a"), status],
        msg_ids: None,
    });
    let json = assert_round_trip(&to_hex(&Frame::oneway(22, pre_1_5), &Dialect::CURRENT));
    assert!(json["body"].get("msgIds").is_none());

    let batch = Message::BatchResultMessage(BatchResultMessage {
        result_messages: vec![Message::BranchReportResponse(TxResult::failure(
            TransactionExceptionCode::Broken,
            "gone",
        ))],
        msg_ids: vec![i32::MAX],
    });
    let json = assert_round_trip(&to_hex(&Frame::response(22, batch), &Dialect::CURRENT));
    assert_eq!(json["body"]["msgIds"], json!([i32::MAX]));
}

#[test]
fn seata_go_short_failure_messages_round_trip() {
    let frame = Frame::response(100, branch_commit_failed("rm failed"));
    let hex = to_hex(&frame, &Dialect::SEATA_GO);
    assert_ne!(hex, to_hex(&frame, &Dialect::CURRENT), "the layouts differ");

    let json = assert_round_trip(&hex);
    assert_eq!(json["msgLength"], "u8");
    assert_eq!(json["body"]["msg"], "rm failed");
    assert_eq!(json["body"]["exceptionCode"], "BranchTransactionNotExist");

    let json = assert_round_trip_with(&["--seata-go"], &hex);
    assert_eq!(json["msgLength"], "u8");
    assert_eq!(json["exceptionCodes"], "1.5");
}

#[test]
fn seata_go_messages_longer_than_txmesh_writes_round_trip() {
    // seata-go's one-byte length allows 255 bytes; txmesh itself writes at most 127.
    let mut body = vec![0x00, 0x04, 0x00, 200];
    body.extend([b'e'; 200]);
    body.push(9); // BranchTransactionNotExist
    body.extend((XID.len() as u16).to_be_bytes());
    body.extend(XID.as_bytes());
    body.extend(2000042950i64.to_be_bytes());
    body.push(BranchStatus::PhaseTwoCommitFailedUnretryable.code());

    let hex = frame_with_body(FrameType::Response, Compressor::None, 100, &body);
    let json = assert_round_trip(&hex);
    assert_eq!(json["body"]["msg"], "e".repeat(200));
}

#[test]
fn the_exception_code_numbering_is_kept_for_encoding() {
    let failed = Message::GlobalBeginResponse(GlobalBeginResponse {
        result: TxResult::failure(TransactionExceptionCode::LockKeyConflictFailFast, "busy"),
        xid: String::new(),
        extra_data: String::new(),
    });
    let java_1_7 = Dialect {
        exception_codes: ExceptionCodeNumbering::V1_7,
        ..Dialect::CURRENT
    };
    let hex = to_hex(&Frame::response(5, failed), &java_1_7);

    let json = assert_round_trip_with(&["--numbering", "1.7"], &hex);
    assert_eq!(json["exceptionCodes"], "1.7");
    assert_eq!(json["body"]["exceptionCode"], "LockKeyConflictFailFast");

    let json = assert_round_trip(&hex);
    assert!(json.get("exceptionCodes").is_none());
    assert_eq!(json["body"]["exceptionCode"], "NotRaftLeader", "19 in 2.0");

    assert_fails(
        &["frame", "decode", "--numbering", "1.0", &hex],
        "",
        "invalid transaction exception code value 19",
    );
}

#[test]
fn heartbeats_round_trip_with_the_bytes_receivers_ignore() {
    let json = assert_round_trip(&frame_with_body(
        FrameType::HeartbeatRequest,
        Compressor::Gzip,
        1,
        &[0xff, 0x00],
    ));
    assert_eq!(json["body"], Value::Null);
    assert_eq!(json["wireBody"], "ff00");
}

#[test]
fn hex_is_read_from_stdin_with_prefixes_and_separators() {
    let out = succeed(
        &["frame", "decode", "-"],
        " 0xda:da:01:00 00 00 10\n00 10 0x03 01 00 00:00:00:01\n",
    );
    assert_eq!(encode(&out), "dada0100000010001003010000000001");
}

#[test]
fn pretty_json_round_trips() {
    let vector = SPEC_VECTORS[17];
    let out = succeed(&["frame", "decode", "--pretty", vector], "");
    assert!(out.lines().count() > 10, "indented: {out}");
    assert_eq!(encode(&out), vector);
}

// ---- malformed input ----

#[test]
fn an_http_request_is_refused_with_a_diagnosis() {
    assert_decode_fails(
        &hex::encode("GET / HTTP/1.1\r\nHost: tc\r\n\r\n"),
        "not a Seata frame: magic [47, 45], expected [da, da]; the peer sent an HTTP request",
    );
}

#[test]
fn truncated_frames_and_trailing_bytes_are_refused() {
    let vector = SPEC_VECTORS[3];
    assert_decode_fails(
        &vector[..vector.len() - 2],
        "incomplete frame: 50 bytes needed, 49",
    );
    assert_decode_fails(&vector[..10], "incomplete frame");
    assert_decode_fails("", "incomplete frame");
    assert_decode_fails(&format!("{vector}00"), "1 bytes follow the frame");
}

#[test]
fn invalid_hex_is_refused() {
    assert_decode_fails("dada0", "invalid hex: Odd number of digits");
    assert_decode_fails("dadazz", "invalid hex: Invalid character 'z'");
}

#[test]
fn unknown_type_codes_are_refused() {
    // 7.5 with the type code 0x0001 replaced by 0x03e7.
    let vector = "dada010000001f001000010000000005 03e7 0000ea600007746573742d7478";
    assert_decode_fails(&vector.replace(' ', ""), "unknown message type code 999");
}

#[test]
fn invalid_json_is_refused_by_encode() {
    let encode_fails = |json: &str, expected| assert_fails(&["frame", "encode"], json, expected);
    encode_fails("{not json", "invalid JSON");
    encode_fails("{\"version\": 1}", "invalid frame JSON: missing field");

    let mut json = decode(SPEC_VECTORS[7]);
    json["body"]["timeOut"] = json!(5);
    encode_fails(
        &json.to_string(),
        "unknown fields in frame JSON: body.timeOut",
    );

    let mut json = decode(SPEC_VECTORS[0]);
    json["requestID"] = json!(5);
    encode_fails(&json.to_string(), "unknown fields in frame JSON: requestID");

    json = decode(SPEC_VECTORS[0]);
    json["body"] = json!({"type": "GlobalBeginRequest", "timeout": 1, "transactionName": ""});
    encode_fails(&json.to_string(), "a heartbeat frame carries no body");
}
