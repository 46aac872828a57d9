//! The coordinators' admin API (docs/admin-api.md) as the operator uses it: the group's view
//! (`GET /api/v1/cluster`, open) and the membership changes (Bearer admin token, leader only).
//! One HTTP/1.1 request per connection: calls are rare, and a pooled connection to a pod that
//! has since been replaced would only add failure modes.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;

/// How long a read of the group's view may take (a follower asks every member, 500 ms each).
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /api/v1/cluster`: the group as the answering node sees it (the fields used here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// The node that answered.
    pub node_id: u64,
    /// Its Raft state: `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// Where the leader's admin API is.
    pub leader_admin_address: Option<String>,
    /// A membership change is under way (or the membership is joint).
    #[serde(default)]
    pub change_in_progress: bool,
    /// The answering node's last log index.
    #[serde(default)]
    pub last_log_index: Option<u64>,
    /// Every member.
    pub members: Vec<MemberView>,
}

impl ClusterView {
    /// Whether the answering node leads: only then are `caughtUp` known.
    pub fn is_leaders(&self) -> bool {
        self.state == "leader" && self.leader_id == Some(self.node_id)
    }
}

/// One member in a [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// Its node id (pod ordinal + 1).
    pub id: u64,
    /// Its Raft address.
    pub address: String,
    /// `leader`, `follower` or `learner`.
    pub role: Role,
    /// The last log index the leader knows it holds; only the leader knows (else null).
    #[serde(default)]
    pub match_index: Option<u64>,
    /// Within the caught-up lag of the leader's log; only the leader knows (else null).
    pub caught_up: Option<bool>,
    /// It answered the node answering just now.
    pub reachable: bool,
}

/// A member's part in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The voter that leads.
    Leader,
    /// Another voter.
    Follower,
    /// Replicated to, not voting.
    Learner,
}

/// One membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `POST /api/v1/cluster/learners`.
    AddLearner {
        /// Node id.
        id: u64,
        /// Raft address, as in the peers.
        address: String,
    },
    /// `POST /api/v1/cluster/voters/{id}/promote`.
    Promote(u64),
    /// `POST /api/v1/cluster/leader`.
    TransferLeadership(u64),
    /// `DELETE /api/v1/cluster/members/{id}`.
    Remove(u64),
}

impl Change {
    fn request(&self) -> (Method, String, Option<serde_json::Value>) {
        match self {
            Change::AddLearner { id, address } => (
                Method::POST,
                "/api/v1/cluster/learners".into(),
                Some(json!({"id": id, "address": address})),
            ),
            Change::Promote(id) => (
                Method::POST,
                format!("/api/v1/cluster/voters/{id}/promote"),
                None,
            ),
            Change::TransferLeadership(id) => (
                Method::POST,
                "/api/v1/cluster/leader".into(),
                Some(json!({"id": id})),
            ),
            Change::Remove(id) => (
                Method::DELETE,
                format!("/api/v1/cluster/members/{id}"),
                None,
            ),
        }
    }
}

/// Why an admin call gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No connection, or the exchange broke off.
    #[error("{address}: {why}")]
    Unreachable {
        /// Where the call went.
        address: String,
        /// What failed.
        why: String,
    },
    /// No answer in time.
    #[error("{address}: no answer within {timeout:?}")]
    Timeout {
        /// Where the call went.
        address: String,
        /// The limit.
        timeout: Duration,
    },
    /// The coordinator refused (`{"error", "code", "leaderAdminAddress"}`).
    #[error("{address} refused ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        /// Where the call went.
        address: String,
        /// The HTTP status.
        status: StatusCode,
        /// The refusal's kind (`NotCaughtUp`, `WouldLoseQuorum`, `Busy`, ...).
        code: Option<String>,
        /// What the coordinator said.
        message: String,
        /// Where the leader is, for `NotLeader`.
        leader_admin_address: Option<String>,
    },
    /// A 200 whose body is not what the API documents.
    #[error("{address}: unexpected answer: {why}")]
    Unexpected {
        /// Where the call went.
        address: String,
        /// What did not parse.
        why: String,
    },
    /// None of the addresses was given (a group without pods).
    #[error("no coordinator to ask")]
    NoAddress,
}

impl AdminError {
    /// The refusal's code, if the coordinator refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            AdminError::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Refusal {
    error: String,
    code: Option<String>,
    leader_admin_address: Option<String>,
}

#[derive(Deserialize)]
struct Changed {
    changed: bool,
}

/// Calls one group's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    token: String,
    change_timeout: Duration,
    route: Option<SocketAddr>,
}

impl AdminClient {
    /// A client with the group's admin token; a change may take `change_timeout` (a
    /// leadership transfer settles within `max(5 s, 10 × election timeout max)`).
    pub fn new(token: String, change_timeout: Duration) -> Self {
        Self {
            token,
            change_timeout,
            route: None,
        }
    }

    /// Connects to `route` whatever the address: a test double stands in for every pod and
    /// tells them apart by the `Host` header.
    #[cfg(test)]
    pub(crate) fn routed(self, route: Option<SocketAddr>) -> Self {
        Self { route, ..self }
    }

    /// The group's view from the first of `addresses` that answers; when that node does not
    /// lead, the leader's own view (which alone knows who is caught up), else the follower's.
    pub async fn view(&self, addresses: &[String]) -> Result<ClusterView, AdminError> {
        let mut last = AdminError::NoAddress;
        for address in addresses {
            match self.view_of(address).await {
                Ok(view) => return Ok(self.leaders_view(view).await),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn leaders_view(&self, view: ClusterView) -> ClusterView {
        match (&view.leader_admin_address, view.is_leaders()) {
            (Some(leader), false) => match self.view_of(leader).await {
                Ok(leaders) if leaders.is_leaders() => leaders,
                _ => view,
            },
            _ => view,
        }
    }

    async fn view_of(&self, address: &str) -> Result<ClusterView, AdminError> {
        let body = self
            .call(address, Method::GET, "/api/v1/cluster", None, READ_TIMEOUT)
            .await?;
        serde_json::from_slice(&body).map_err(|e| AdminError::Unexpected {
            address: address.into(),
            why: e.to_string(),
        })
    }

    /// Makes `change` on the leader at `leader`; a follower's 421 is followed once to the
    /// leader it names. Returns whether anything changed (a repeated call changes nothing).
    pub async fn change(&self, leader: &str, change: &Change) -> Result<bool, AdminError> {
        match self.change_at(leader, change).await {
            Err(AdminError::Refused {
                status: StatusCode::MISDIRECTED_REQUEST,
                leader_admin_address: Some(actual),
                ..
            }) if actual != leader => self.change_at(&actual, change).await,
            answer => answer,
        }
    }

    async fn change_at(&self, address: &str, change: &Change) -> Result<bool, AdminError> {
        let (method, path, body) = change.request();
        let answer = self
            .call(address, method, &path, body, self.change_timeout)
            .await?;
        let changed: Changed =
            serde_json::from_slice(&answer).map_err(|e| AdminError::Unexpected {
                address: address.into(),
                why: e.to_string(),
            })?;
        Ok(changed.changed)
    }

    /// One request; the body of a 2xx answer, else the refusal.
    async fn call(
        &self,
        address: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<Bytes, AdminError> {
        let exchange = self.exchange(address, method, path, body);
        let (status, answer) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| AdminError::Timeout {
                address: address.into(),
                timeout,
            })?
            .map_err(|why| AdminError::Unreachable {
                address: address.into(),
                why,
            })?;
        if status.is_success() {
            return Ok(answer);
        }
        let refusal: Option<Refusal> = serde_json::from_slice(&answer).ok();
        Err(AdminError::Refused {
            address: address.into(),
            status,
            code: refusal.as_ref().and_then(|r| r.code.clone()),
            message: match &refusal {
                Some(refusal) => refusal.error.clone(),
                None => String::from_utf8_lossy(&answer).into_owned(),
            },
            leader_admin_address: refusal.and_then(|r| r.leader_admin_address),
        })
    }

    async fn exchange(
        &self,
        address: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), String> {
        let stream = match self.route {
            Some(route) => TcpStream::connect(route).await,
            None => TcpStream::connect(address).await,
        }
        .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        // Drives the connection; it ends when the sender is dropped.
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, address);
        // Reads are open: the token goes only with changes.
        if method != Method::GET {
            request = request.header(AUTHORIZATION, format!("Bearer {}", self.token));
        }
        let bytes = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, answer))
    }
}

#[cfg(test)]
pub(crate) mod double;
#[cfg(test)]
mod tests;
