//! Coordinators from Seata 2.x's metadata endpoint (`--coordinators-metadata host:7091,...`),
//! as Seata's raft-mode clients find them: ask any coordinator's HTTP port for
//! `GET /metadata/v1/cluster?group=<group>` and use the transaction (Seata RPC) endpoint of
//! every voter, the leader first. Asked again every discovery interval, so members that join,
//! leave or move are followed without a restart.

use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::DiscoveryError;

/// How long one coordinator may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of an answer read (a cluster view is a few hundred bytes per node).
const MAX_ANSWER: u64 = 1 << 20;

/// `GET /metadata/v1/cluster`, the fields used here.
#[derive(Debug, Deserialize)]
struct ClusterView {
    nodes: Vec<NodeView>,
}

#[derive(Debug, Deserialize)]
struct NodeView {
    transaction: HostPort,
    role: String,
}

#[derive(Debug, Deserialize)]
struct HostPort {
    host: String,
    port: u16,
}

/// The Seata endpoints the first coordinator of `addresses` that answers lists for `group`.
pub async fn read(addresses: &[String], group: &str) -> Result<Vec<String>, DiscoveryError> {
    let mut last_error = DiscoveryError::Empty;
    for address in addresses {
        match ask(address, group).await {
            Ok(entries) => return Ok(entries),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

async fn ask(address: &str, group: &str) -> Result<Vec<String>, DiscoveryError> {
    let failed = |why: String| DiscoveryError::Metadata {
        address: address.to_owned(),
        why,
    };
    let answer = tokio::time::timeout(ASK_TIMEOUT, get(address, group))
        .await
        .map_err(|_| failed(format!("no answer within {ASK_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    let (status, body) = split_response(&answer).ok_or_else(|| failed("not HTTP".into()))?;
    if status != 200 {
        return Err(failed(format!("answered HTTP {status}")));
    }
    let view: ClusterView =
        serde_json::from_str(body).map_err(|e| failed(format!("unexpected cluster view: {e}")))?;
    Ok(transaction_entries(view))
}

async fn get(address: &str, group: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!(
        "GET /metadata/v1/cluster?group={group} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The status code and body of a whole HTTP/1.1 answer.
fn split_response(answer: &str) -> Option<(u16, &str)> {
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body))
}

/// Voters' transaction endpoints, the leader first; learners do not serve clients.
fn transaction_entries(view: ClusterView) -> Vec<String> {
    let mut voters: Vec<NodeView> = view
        .nodes
        .into_iter()
        .filter(|node| !node.role.eq_ignore_ascii_case("LEARNER"))
        .collect();
    voters.sort_by_key(|node| !node.role.eq_ignore_ascii_case("LEADER"));
    voters
        .into_iter()
        .map(|node| format!("{}:{}", node.transaction.host, node.transaction.port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view in the shape the coordinators (and Seata 2.x servers) answer.
    const VIEW: &str = r#"{
        "nodes": [
            {"control": {"host": "tc-0.tc", "port": 7091}, "transaction": {"host": "tc-0.tc", "port": 8091},
             "internal": {"host": "tc-0.tc", "port": 9091}, "group": "default", "role": "FOLLOWER",
             "version": "0.1.0", "metadata": {}},
            {"control": {"host": "tc-1.tc", "port": 7091}, "transaction": {"host": "tc-1.tc", "port": 8091},
             "internal": {"host": "tc-1.tc", "port": 9091}, "group": "default", "role": "LEADER",
             "version": "0.1.0", "metadata": {}},
            {"control": {"host": "tc-3.tc", "port": 7091}, "transaction": {"host": "tc-3.tc", "port": 8091},
             "internal": {"host": "tc-3.tc", "port": 9091}, "group": "default", "role": "LEARNER",
             "version": "0.1.0", "metadata": {}}
        ],
        "storeMode": "raft",
        "term": 3
    }"#;

    #[test]
    fn voters_are_listed_leader_first() {
        let view: ClusterView = serde_json::from_str(VIEW).expect("the documented shape");
        assert_eq!(transaction_entries(view), ["tc-1.tc:8091", "tc-0.tc:8091"]);
    }

    #[test]
    fn answers_split_into_status_and_body() {
        let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(split_response(answer), Some((404, "{}")));
        assert_eq!(split_response("garbage"), None);
    }

    #[tokio::test]
    async fn no_answering_coordinator_is_an_error_naming_the_last_one() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let address = closed.local_addr().expect("bound").to_string();
        drop(closed);
        let error = read(std::slice::from_ref(&address), "default")
            .await
            .expect_err("nobody answers");
        assert!(error.to_string().contains(&address), "{error}");
    }
}
