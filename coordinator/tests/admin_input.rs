//! Bad input to the admin API: each field of each membership call checked, bodies bounded
//! before they are read. Every refusal is a JSON error naming what is wrong, and nothing
//! changes: the cluster view and the Raft log stay as they were.

mod common;

use std::net::SocketAddr;

use common::{BOUND, Body, Reply, bounded, exchange, http, loopback_config, send};
use serde_json::{Value, json};
use tempfile::TempDir;
use txmesh_coordinator::{Coordinator, CoordinatorConfig};

const TOKEN: &str = "input-token";
/// The admin API's body limit (64 KiB).
const MAX_BODY: usize = 64 * 1024;

/// One bad request and how it must be refused.
struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    status: u16,
    code: Option<&'static str>,
    /// A part of the error message.
    says: &'static str,
}

fn learner(id: Value, address: Value) -> Option<Value> {
    Some(json!({ "id": id, "address": address }))
}

fn learner_at(address: &str) -> Option<Value> {
    learner(json!(4), json!(address))
}

fn cases() -> Vec<Case> {
    let case = |what, method, path, body, status, code, says| Case {
        what,
        method,
        path,
        body,
        status,
        code,
        says,
    };
    let learners = "/api/v1/cluster/learners";
    let bad_address = |what, address: &str, says| {
        case(
            what,
            "POST",
            learners,
            learner_at(address),
            400,
            Some("InvalidAddress"),
            says,
        )
    };
    let long_host = format!("{}.svc:9091", "a.".repeat(130));
    vec![
        case(
            "learner id 0",
            "POST",
            learners,
            learner(json!(0), json!("127.0.0.1:9999")),
            400,
            Some("InvalidNodeId"),
            "node ids start at 1",
        ),
        case(
            "negative learner id",
            "POST",
            learners,
            learner(json!(-1), json!("127.0.0.1:9999")),
            400,
            None,
            "id: invalid value",
        ),
        case(
            "learner id past u64",
            "POST",
            learners,
            Some(
                serde_json::from_str(r#"{"id": 18446744073709551616, "address": "h:1"}"#)
                    .expect("json"),
            ),
            400,
            None,
            "id",
        ),
        case(
            "learner without an address",
            "POST",
            learners,
            Some(json!({ "id": 4 })),
            400,
            None,
            "missing field `address`",
        ),
        case(
            "learner with an unknown field",
            "POST",
            learners,
            Some(json!({ "id": 4, "address": "h:1", "voter": true })),
            400,
            None,
            "unknown field `voter`",
        ),
        case(
            "address not a string",
            "POST",
            learners,
            learner(json!(4), json!(9091)),
            400,
            None,
            "address: invalid type",
        ),
        bad_address("address without a port", "tc-3.tc.ns", "has no :port"),
        bad_address("port 0", "tc-3.tc.ns:0", "no port from 1 to 65535"),
        bad_address(
            "port past 65535",
            "tc-3.tc.ns:65536",
            "no port from 1 to 65535",
        ),
        bad_address(
            "port not a number",
            "tc-3.tc.ns:raft",
            "no port from 1 to 65535",
        ),
        bad_address("empty host", ":9091", "no valid host"),
        bad_address("host with a space", "tc 3:9091", "letters, digits, hyphens"),
        bad_address("label ending in a hyphen", "tc-.ns:9091", "hyphen"),
        bad_address("IPv6 without brackets", "::1:9091", "needs brackets"),
        bad_address(
            "IPv4 out of range",
            "10.0.0.256:9091",
            "not an IPv4 address",
        ),
        bad_address(
            "address over 259 bytes",
            &long_host,
            "bytes long; host:port is at most 259",
        ),
        case(
            "promote node 0",
            "POST",
            "/api/v1/cluster/voters/0/promote",
            None,
            400,
            Some("InvalidNodeId"),
            "node ids start at 1",
        ),
        case(
            "remove node 0",
            "DELETE",
            "/api/v1/cluster/members/0",
            None,
            400,
            Some("InvalidNodeId"),
            "node ids start at 1",
        ),
        case(
            "remove a node id that is no number",
            "DELETE",
            "/api/v1/cluster/members/one",
            None,
            400,
            None,
            "is not a number",
        ),
        case(
            "leadership to node 0",
            "POST",
            "/api/v1/cluster/leader",
            Some(json!({ "id": 0 })),
            400,
            Some("InvalidNodeId"),
            "node ids start at 1",
        ),
    ]
}

/// A coordinator with the admin token, leading its own group.
async fn coordinator(dir: &TempDir) -> Coordinator {
    let config = CoordinatorConfig {
        admin_token: Some(TOKEN.into()),
        ..loopback_config(dir)
    };
    let coordinator = bounded(Coordinator::start(config)).await.expect("starts");
    assert!(coordinator.wait_until_leading(BOUND).await, "leads");
    coordinator
}

/// The cluster view without what moves on its own (nothing does on an idle single node, but
/// the probe flag is about the network, not the membership).
async fn cluster_view(addr: SocketAddr) -> Value {
    let mut view = http(addr, "GET", "/api/v1/cluster", None).await.json();
    for member in view["members"].as_array_mut().expect("members") {
        member
            .as_object_mut()
            .expect("a member")
            .remove("reachable");
    }
    view
}

fn assert_refused(reply: &Reply, what: &str, status: u16, code: Option<&str>, says: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    let body = reply.json();
    let message = body["error"].as_str().expect("an error message");
    assert!(message.contains(says), "{what}: {message:?} lacks {says:?}");
    assert_eq!(body["code"].as_str(), code, "{what}: {}", reply.body);
}

#[tokio::test]
async fn bad_membership_input_is_refused_field_by_field_and_changes_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let coordinator = coordinator(&dir).await;
    let addr = coordinator.http_addr();
    let before = cluster_view(addr).await;
    for case in cases() {
        let reply = send(
            addr,
            case.method,
            case.path,
            Some(TOKEN),
            case.body.map(Body::json),
        )
        .await;
        assert_refused(&reply, case.what, case.status, case.code, case.says);
    }
    assert_eq!(cluster_view(addr).await, before, "the group is as it was");
    coordinator.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_before_they_are_read() {
    let dir = TempDir::new().expect("temp dir");
    let coordinator = coordinator(&dir).await;
    let addr = coordinator.http_addr();
    let before = cluster_view(addr).await;
    let head = |length: &str| {
        format!(
            "POST /api/v1/cluster/learners HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n{length}\r\n"
        )
    };
    // Declared lengths: answered from the headers alone, no byte of the body is sent.
    for declared in [MAX_BODY + 1, 70_050, 99_999_999_999_999] {
        let request = head(&format!("Content-Length: {declared}\r\n"));
        let reply = exchange(addr, request.as_bytes()).await;
        let says = format!("declares {declared} bytes; the admin API reads at most 65536");
        assert_refused(&reply, "declared length", 413, Some("BodyTooLarge"), &says);
    }
    // A 70,000-character address in a chunked body, which declares nothing: read up to the
    // limit, then refused.
    let body = json!({ "id": 4, "address": format!("{}:1", "a".repeat(70_000)) }).to_string();
    let mut request = head("Transfer-Encoding: chunked\r\n");
    for chunk in body.as_bytes().chunks(8 * 1024) {
        request.push_str(&format!("{:x}\r\n", chunk.len()));
        request.push_str(std::str::from_utf8(chunk).expect("ASCII"));
        request.push_str("\r\n");
    }
    request.push_str("0\r\n\r\n");
    let reply = exchange(addr, request.as_bytes()).await;
    assert_refused(
        &reply,
        "chunked body",
        413,
        Some("BodyTooLarge"),
        "at most 65536 bytes",
    );
    // A body at the limit is read, and its content judged.
    let padded = format!(
        r#"{{"id": 0, "address": "h:1"}}{}"#,
        " ".repeat(MAX_BODY - 27)
    );
    assert_eq!(padded.len(), MAX_BODY);
    let reply = exchange(
        addr,
        format!(
            "{}{padded}",
            head(&format!("Content-Length: {MAX_BODY}\r\n"))
        )
        .as_bytes(),
    )
    .await;
    assert_refused(
        &reply,
        "body at the limit",
        400,
        Some("InvalidNodeId"),
        "start at 1",
    );
    assert_eq!(cluster_view(addr).await, before, "the group is as it was");
    coordinator.stop().await;
}
