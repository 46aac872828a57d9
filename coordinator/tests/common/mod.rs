//! What the coordinator's integration tests share: bounded waits, a loopback configuration,
//! a raw HTTP/1.1 client for the admin API, and the Seata TM and RM calls.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use txmesh_coordinator::CoordinatorConfig;
use txmesh_seata::client::SeataClient;
use txmesh_seata::message::{
    BranchRegisterRequest, BranchRegisterResponse, GlobalBeginRequest, GlobalEndRequest,
    GlobalEndResponse,
};
use txmesh_seata::{BranchType, GlobalStatus, Message};

/// Upper bound for anything a test waits for.
pub const BOUND: Duration = Duration::from_secs(10);

/// Runs `future`, failing the test if it takes longer than [`BOUND`].
pub async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("test step took too long")
}

/// A node of its own in `dir`, listening on loopback ports the system picks.
pub fn loopback_config(dir: &TempDir) -> CoordinatorConfig {
    CoordinatorConfig {
        data_dir: dir.path().to_path_buf(),
        seata_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        raft_addr: "127.0.0.1:0".parse().expect("addr"),
        ..CoordinatorConfig::default()
    }
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "not JSON ({}): {}",
            self.content_type,
            self.body
        );
        serde_json::from_str(&self.body).expect("valid JSON")
    }

    /// The JSON error message, checking the status first.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        self.json()["error"]
            .as_str()
            .expect("an error message")
            .to_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The value of the sample `name` (with its labels, as exposed) in a metrics exposition.
pub fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// A request body and its media type.
pub struct Body<'a> {
    pub content_type: &'a str,
    pub text: String,
}

impl Body<'_> {
    pub fn json(value: Value) -> Self {
        Body {
            content_type: "application/json",
            text: value.to_string(),
        }
    }

    pub fn form(text: &str) -> Self {
        Body {
            content_type: "application/x-www-form-urlencoded",
            text: text.to_owned(),
        }
    }
}

/// One HTTP/1.1 request without a body on a fresh connection.
pub async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Reply {
    send(addr, method, path, token, None).await
}

/// One HTTP/1.1 request on a fresh connection, read until the server closes it.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Body<'_>>,
) -> Reply {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let (content_type, text) = match &body {
        Some(body) => (
            format!("Content-Type: {}\r\n", body.content_type),
            body.text.as_str(),
        ),
        None => (String::new(), ""),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{authorization}{content_type}Content-Length: {}\r\n\r\n{text}",
        text.len()
    );
    exchange(addr, request.as_bytes()).await
}

/// Writes `request` as given on a fresh connection; the answer, read until the server closes
/// the connection.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = bounded(TcpStream::connect(addr)).await.expect("connects");
    // A server may answer before it has read all of a request (a body it refuses) and close
    // the connection under the write: its answer is still there to read.
    let written = stream.write_all(request).await;
    let mut raw = Vec::new();
    let read = bounded(stream.read_to_end(&mut raw)).await;
    assert!(
        !raw.is_empty() || (written.is_ok() && read.is_ok()),
        "no answer: {written:?} {read:?}"
    );
    let raw = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
        .collect();
    let reply = Reply {
        status,
        content_type: String::new(),
        headers,
        body: body.to_owned(),
    };
    assert_eq!(
        reply.header("transfer-encoding"),
        None,
        "bodies have a length"
    );
    Reply {
        content_type: reply.header("content-type").unwrap_or_default().to_owned(),
        ..reply
    }
}

/// Begins a global transaction with `timeout_ms`; returns its XID.
pub async fn begin(tm: &SeataClient, timeout_ms: i32) -> String {
    begin_named(tm, "transfer", timeout_ms).await
}

/// Begins a global transaction called `name` with `timeout_ms`; returns its XID.
pub async fn begin_named(tm: &SeataClient, name: &str, timeout_ms: i32) -> String {
    let request = GlobalBeginRequest {
        timeout: timeout_ms,
        transaction_name: name.into(),
    };
    match tm
        .call(Message::GlobalBeginRequest(request))
        .await
        .expect("answered")
    {
        Message::GlobalBeginResponse(r) if r.result.is_success() => r.xid,
        other => panic!("begin failed: {other:?}"),
    }
}

/// Registers a branch; the coordinator's answer, whatever it is.
pub async fn register(
    rm: &SeataClient,
    xid: &str,
    branch_type: BranchType,
    resource: &str,
    lock_key: &str,
) -> BranchRegisterResponse {
    let request = BranchRegisterRequest {
        xid: xid.into(),
        branch_type,
        resource_id: resource.into(),
        lock_key: lock_key.into(),
        application_data: String::new(),
    };
    match rm
        .call(Message::BranchRegisterRequest(request))
        .await
        .expect("answered")
    {
        Message::BranchRegisterResponse(r) => r,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Registers a branch that must be accepted; its id.
pub async fn branch(
    rm: &SeataClient,
    xid: &str,
    branch_type: BranchType,
    resource: &str,
    lock_key: &str,
) -> i64 {
    let answer = register(rm, xid, branch_type, resource, lock_key).await;
    assert!(
        answer.result.is_success(),
        "registration failed: {answer:?}"
    );
    answer.branch_id
}

/// A commit, rollback or status request for `xid`.
pub fn end_request(xid: &str) -> GlobalEndRequest {
    GlobalEndRequest {
        xid: xid.into(),
        extra_data: String::new(),
    }
}

/// Sends a commit, rollback or status request; the answer.
pub async fn end(tm: &SeataClient, request: Message) -> GlobalEndResponse {
    match tm.call(request).await.expect("answered") {
        Message::GlobalCommitResponse(r)
        | Message::GlobalRollbackResponse(r)
        | Message::GlobalStatusResponse(r) => r,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Commits `xid`; the status answered.
pub async fn commit(tm: &SeataClient, xid: &str) -> GlobalStatus {
    end(tm, Message::GlobalCommitRequest(end_request(xid)))
        .await
        .global_status
}

/// Rolls `xid` back; the status answered.
pub async fn rollback(tm: &SeataClient, xid: &str) -> GlobalStatus {
    end(tm, Message::GlobalRollbackRequest(end_request(xid)))
        .await
        .global_status
}

/// Asks for `xid`'s status.
pub async fn status(tm: &SeataClient, xid: &str) -> GlobalStatus {
    end(tm, Message::GlobalStatusRequest(end_request(xid)))
        .await
        .global_status
}
