//! The golden vectors of seata-protocol.md §7, produced by Seata's own Java codec: each must
//! decode to the fields the spec states and re-encode to exactly the same bytes.

use txmesh_seata::message::*;
use txmesh_seata::*;

const XID: &str = "192.168.0.2:8091:2000042948";
const RESOURCE: &str = "jdbc:mysql://127.0.0.1:3306/db";
const BRANCH_ID: i64 = 2000042950;

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

fn req(id: i32, m: Message) -> Frame {
    frame(1, FrameType::Request, id, Some(m))
}

fn resp(id: i32, m: Message) -> Frame {
    frame(1, FrameType::Response, id, Some(m))
}

fn ok() -> TxResult {
    TxResult::success()
}

fn end_req(xid: &str) -> GlobalEndRequest {
    GlobalEndRequest {
        xid: xid.into(),
        extra_data: String::new(),
    }
}

fn end_resp(result: TxResult, status: GlobalStatus) -> GlobalEndResponse {
    GlobalEndResponse {
        result,
        global_status: status,
    }
}

fn identity(version: &str) -> RegisterRequest {
    RegisterRequest {
        version: version.into(),
        application_id: "app".into(),
        transaction_service_group: "default_tx_group".into(),
        extra_data: String::new(),
    }
}

fn register_rm(version: &str) -> RegisterRmRequest {
    RegisterRmRequest {
        identity: identity(version),
        resource_ids: RESOURCE.into(),
    }
}

fn at_branch() -> BranchRegisterRequest {
    BranchRegisterRequest {
        xid: XID.into(),
        branch_type: BranchType::At,
        resource_id: RESOURCE.into(),
        lock_key: "account_tbl:1".into(),
        application_data: String::new(),
    }
}

fn registered(ok: bool, version: &str) -> RegisterResponse {
    RegisterResponse::new(ok, version)
}

fn registered_v2(code: ResultCode, msg: &str, ok: bool) -> RegisterResponse {
    RegisterResponse {
        result_code: Some(code),
        msg: msg.into(),
        identified: ok,
        version: "2.7.0".into(),
    }
}

fn branch_end(branch_type: BranchType, resource: &str, data: &str) -> BranchEndRequest {
    BranchEndRequest {
        xid: XID.into(),
        branch_id: BRANCH_ID,
        branch_type,
        resource_id: resource.into(),
        application_data: data.into(),
    }
}

fn branch_done(status: BranchStatus) -> BranchEndResponse {
    BranchEndResponse {
        result: ok(),
        xid: XID.into(),
        branch_id: BRANCH_ID,
        branch_status: status,
    }
}

fn begin(name: &str) -> GlobalBeginRequest {
    GlobalBeginRequest {
        timeout: 60000,
        transaction_name: name.into(),
    }
}

fn begun(xid: &str) -> Message {
    Message::GlobalBeginResponse(GlobalBeginResponse {
        result: ok(),
        xid: xid.into(),
        extra_data: String::new(),
    })
}

fn vectors() -> Vec<(&'static str, &'static str, Frame)> {
    use Message as M;
    vec![
        (
            "7.1 ping",
            "dada0100000010001003010000000001",
            frame(1, FrameType::HeartbeatRequest, 1, None),
        ),
        (
            "7.1 pong",
            "dada0100000010001004010000000001",
            frame(1, FrameType::HeartbeatResponse, 1, None),
        ),
        (
            "7.1 v2 ping",
            "dada0200000010001003010000000001",
            frame(2, FrameType::HeartbeatRequest, 1, None),
        ),
        (
            "7.2 RegisterTMRequest",
            "dada010000003200100001000000000200650005322e322e300003617070001064656661756c745f74785f67726f75700000",
            req(2, M::RegisterTmRequest(identity("2.2.0"))),
        ),
        (
            "7.3 RegisterTMResponse",
            "dada010000001a0010010100000000020066010005322e322e30",
            resp(2, M::RegisterTmResponse(registered(true, "2.2.0"))),
        ),
        (
            "7.3 RegisterRMResponse refused",
            "dada010000001a0010010100000000030068000005322e322e30",
            resp(3, M::RegisterRmResponse(registered(false, "2.2.0"))),
        ),
        (
            "7.4 RegisterRMRequest",
            "dada010000005400100001000000000300670005322e322e300003617070001064656661756c745f74785f67726f757000000000001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f6462",
            req(3, M::RegisterRmRequest(register_rm("2.2.0"))),
        ),
        (
            "7.5 GlobalBeginRequest",
            "dada010000001f00100001000000000500010000ea600007746573742d7478",
            req(5, M::GlobalBeginRequest(begin("test-tx"))),
        ),
        (
            "7.5 GlobalBeginRequest without a name",
            "dada010000001800100001000000001800010000ea600000",
            req(24, M::GlobalBeginRequest(begin(""))),
        ),
        (
            "7.6 GlobalBeginResponse",
            "dada010000003300100101000000000500020100001b3139322e3136382e302e323a383039313a323030303034323934380000",
            resp(5, begun(XID)),
        ),
        (
            "7.6 GlobalBeginResponse failed",
            "dada010000001e00100101000000000500020000046f6f70730100000000",
            resp(
                5,
                M::GlobalBeginResponse(GlobalBeginResponse {
                    result: TxResult::failure(TransactionExceptionCode::BeginFailed, "oops"),
                    xid: String::new(),
                    extra_data: String::new(),
                }),
            ),
        ),
        (
            "7.7 BranchRegisterRequest",
            "dada0100000065001000010000000006000b001b3139322e3136382e302e323a383039313a3230303030343239343800001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f64620000000d6163636f756e745f74626c3a3100000000",
            req(6, M::BranchRegisterRequest(at_branch())),
        ),
        (
            "7.8 BranchRegisterResponse",
            "dada010000001c001001010000000006000c01000000000077363bc6",
            resp(
                6,
                M::BranchRegisterResponse(BranchRegisterResponse {
                    result: ok(),
                    branch_id: BRANCH_ID,
                }),
            ),
        ),
        (
            "7.9 BranchCommitRequest",
            "dada010000005c0010000100000000640003001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc600001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f646200000000",
            req(
                100,
                M::BranchCommitRequest(branch_end(BranchType::At, RESOURCE, "")),
            ),
        ),
        (
            "7.9 BranchCommitResponse",
            "dada010000003a00100101000000006400040100001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc605",
            resp(
                100,
                M::BranchCommitResponse(branch_done(BranchStatus::PhaseTwoCommitted)),
            ),
        ),
        (
            "7.9 TCC BranchRollbackRequest",
            "dada010000004e0010000100000000650005001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc6010009746363416374696f6e000000077b226b223a317d",
            req(
                101,
                M::BranchRollbackRequest(branch_end(BranchType::Tcc, "tccAction", "{\"k\":1}")),
            ),
        ),
        (
            "7.9 BranchRollbackResponse",
            "dada010000003a00100101000000006500060100001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc608",
            resp(
                101,
                M::BranchRollbackResponse(branch_done(BranchStatus::PhaseTwoRollbacked)),
            ),
        ),
        (
            "7.10 MergedWarpMessage",
            "dada0100000034001002010000000016003b0000001e000200010000ea60000161000f0005783a313a3200000000001400000015",
            frame(
                1,
                FrameType::Oneway,
                22,
                Some(M::MergedWarpMessage(MergedWarpMessage {
                    msgs: vec![
                        M::GlobalBeginRequest(begin("a")),
                        M::GlobalStatusRequest(end_req("x:1:2")),
                    ],
                    msg_ids: Some(vec![20, 21]),
                })),
            ),
        ),
        (
            "7.11 MergeResultMessage",
            "dada010000002a001001010000000016003c000000140002000201000005783a313a3300000010010001",
            resp(
                22,
                M::MergeResultMessage(MergeResultMessage {
                    msgs: vec![
                        begun("x:1:3"),
                        M::GlobalStatusResponse(end_resp(ok(), GlobalStatus::Begin)),
                    ],
                }),
            ),
        ),
        (
            "7.12 BatchResultMessage",
            "dada010000003200100101000000001600790000001c0002000201000005783a313a33000000100100010000001400000015",
            resp(
                22,
                M::BatchResultMessage(BatchResultMessage {
                    result_messages: vec![
                        begun("x:1:3"),
                        M::GlobalStatusResponse(end_resp(ok(), GlobalStatus::Begin)),
                    ],
                    msg_ids: vec![20, 21],
                }),
            ),
        ),
        (
            "7.13 head map",
            "dada010000002100160001000000001700016b000176000f0005783a313a320000",
            Frame {
                head_map: vec![(Some("k".into()), Some("v".into()))],
                ..req(23, M::GlobalStatusRequest(end_req("x:1:2")))
            },
        ),
        (
            "7.14 v2 RegisterTMResponse",
            "dada020000001b001001010000000002006601010005322e372e30",
            frame(
                2,
                FrameType::Response,
                2,
                Some(M::RegisterTmResponse(registered_v2(
                    ResultCode::Success,
                    "",
                    true,
                ))),
            ),
        ),
        (
            "7.14 v1 RegisterTMResponse from 2.7",
            "dada010000001a0010010100000000020066010005322e372e30",
            resp(2, M::RegisterTmResponse(registered(true, "2.7.0"))),
        ),
        (
            "7.14 v2 RegisterTMResponse refused",
            "dada020000002e0010010100000000020066000011544d20636865636b41757468206661696c000005322e372e30",
            frame(
                2,
                FrameType::Response,
                2,
                Some(M::RegisterTmResponse(registered_v2(
                    ResultCode::Failed,
                    "TM checkAuth fail",
                    false,
                ))),
            ),
        ),
        (
            "7.14 v2 RegisterRMResponse",
            "dada020000001b001001010000000003006801010005322e372e30",
            frame(
                2,
                FrameType::Response,
                3,
                Some(M::RegisterRmResponse(registered_v2(
                    ResultCode::Success,
                    "",
                    true,
                ))),
            ),
        ),
        (
            "7.14 v2 UnregisterRMRequest",
            "dada020000005400100201000000000900690005322e372e300003617070001064656661756c745f74785f67726f757000000000001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f6462",
            frame(
                2,
                FrameType::Oneway,
                9,
                Some(M::UnregisterRmRequest(register_rm("2.7.0"))),
            ),
        ),
        (
            "7.14 v2 UnregisterRMResponse (v1 body)",
            "dada020000001a001001010000000009006a010005322e372e30",
            frame(
                2,
                FrameType::Response,
                9,
                Some(M::UnregisterRmResponse(UnregisterRmResponse {
                    identified: true,
                    version: "2.7.0".into(),
                })),
            ),
        ),
        (
            "7.15 BranchReportRequest",
            "dada010000005d001000010000000007000d001b3139322e3136382e302e323a383039313a323030303034323934380000000077363bc603001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f64620000000000",
            req(
                7,
                M::BranchReportRequest(BranchReportRequest {
                    xid: XID.into(),
                    branch_id: BRANCH_ID,
                    status: BranchStatus::PhaseOneFailed,
                    resource_id: RESOURCE.into(),
                    application_data: String::new(),
                    branch_type: BranchType::At,
                }),
            ),
        ),
        (
            "7.15 BranchReportResponse",
            "dada0100000014001001010000000007000e0100",
            resp(7, M::BranchReportResponse(ok())),
        ),
        (
            "7.15 GlobalCommitRequest",
            "dada01000000310010000100000000080007001b3139322e3136382e302e323a383039313a323030303034323934380000",
            req(8, M::GlobalCommitRequest(end_req(XID))),
        ),
        (
            "7.15 GlobalCommitResponse",
            "dada01000000150010010100000000080008010009",
            resp(
                8,
                M::GlobalCommitResponse(end_resp(ok(), GlobalStatus::Committed)),
            ),
        ),
        (
            "7.15 GlobalRollbackRequest",
            "dada01000000310010000100000000090009001b3139322e3136382e302e323a383039313a323030303034323934380000",
            req(9, M::GlobalRollbackRequest(end_req(XID))),
        ),
        (
            "7.15 GlobalRollbackResponse",
            "dada0100000015001001010000000009000a01000b",
            resp(
                9,
                M::GlobalRollbackResponse(end_resp(ok(), GlobalStatus::Rollbacked)),
            ),
        ),
        (
            "7.15 GlobalStatusRequest",
            "dada010000003100100001000000000a000f001b3139322e3136382e302e323a383039313a323030303034323934380000",
            req(10, M::GlobalStatusRequest(end_req(XID))),
        ),
        (
            "7.15 GlobalStatusResponse failed",
            "dada010000001800100101000000000a0010000001780a0f",
            resp(
                10,
                M::GlobalStatusResponse(end_resp(
                    TxResult::failure(TransactionExceptionCode::GlobalTransactionNotExist, "x"),
                    GlobalStatus::Finished,
                )),
            ),
        ),
        (
            "7.15 GlobalReportRequest",
            "dada010000003200100001000000000b0011001b3139322e3136382e302e323a383039313a32303030303432393438000009",
            req(
                11,
                M::GlobalReportRequest(GlobalReportRequest {
                    xid: XID.into(),
                    extra_data: String::new(),
                    global_status: Some(GlobalStatus::Committed),
                }),
            ),
        ),
        (
            "7.15 GlobalReportResponse",
            "dada010000001500100101000000000b0012010009",
            resp(
                11,
                M::GlobalReportResponse(end_resp(ok(), GlobalStatus::Committed)),
            ),
        ),
        (
            "7.15 GlobalLockQueryRequest",
            "dada010000006500100001000000000c0015001b3139322e3136382e302e323a383039313a3230303030343239343800001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f64620000000d6163636f756e745f74626c3a3100000000",
            req(12, M::GlobalLockQueryRequest(at_branch())),
        ),
        (
            "7.15 GlobalLockQueryResponse",
            "dada010000001600100101000000000c001601000001",
            resp(
                12,
                M::GlobalLockQueryResponse(GlobalLockQueryResponse {
                    result: ok(),
                    lockable: true,
                }),
            ),
        ),
        (
            "7.15 UndoLogDeleteRequest",
            "dada0100000035001002010000000066006f00001e6a6462633a6d7973716c3a2f2f3132372e302e302e313a333330362f64620007",
            frame(
                1,
                FrameType::Oneway,
                102,
                Some(M::UndoLogDeleteRequest(UndoLogDeleteRequest {
                    branch_type: BranchType::At,
                    resource_id: RESOURCE.into(),
                    save_days: 7,
                })),
            ),
        ),
    ]
}

#[test]
fn every_spec_vector_decodes_to_its_fields() {
    for (name, hex_text, expected) in vectors() {
        let bytes = hex::decode(hex_text).expect("valid hex");
        let decoded =
            Frame::decode(&bytes, &Dialect::CURRENT).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
    }
}

#[test]
fn every_spec_vector_re_encodes_to_the_same_bytes() {
    for (name, hex_text, expected) in vectors() {
        let encoded = expected
            .to_bytes(&Dialect::CURRENT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(hex::encode(&encoded), hex_text, "{name}");
    }
}

#[test]
fn a_failed_seata_go_branch_commit_response_uses_one_byte_msg_lengths() {
    // seata-go's layout (spec P1): 00 | len:u8 | msg | excCode | xid | branchId | status.
    let go = BranchEndResponse {
        result: TxResult::failure(
            TransactionExceptionCode::BranchRollbackFailedRetriable,
            "db down",
        ),
        xid: XID.into(),
        branch_id: BRANCH_ID,
        branch_status: BranchStatus::PhaseTwoCommitFailedRetryable,
    };
    let frame = resp(100, Message::BranchCommitResponse(go));
    let bytes = frame.to_bytes(&Dialect::SEATA_GO).expect("encodes");
    assert_eq!(
        &bytes[16..22],
        &[0x00, 0x04, 0x00, 0x07, b'd', b'b'],
        "type 4, Failed, u8 length 7"
    );

    // A TC that does not yet know the peer is seata-go still reads it, and learns the layout.
    let raw = RawFrame::parse(&bytes, DEFAULT_MAX_FRAME_LEN).expect("frames");
    let (message, layout) = raw
        .message_any_msg_length(&Dialect::CURRENT)
        .expect("decodes")
        .expect("has a body");
    assert_eq!(layout, MsgLength::U8);
    assert_eq!(Some(message), frame.body);

    // Strictly in the Java layout the same bytes are not a valid message.
    assert!(Message::decode(&raw.body, &BodyContext::v1(Dialect::CURRENT)).is_err());
}
