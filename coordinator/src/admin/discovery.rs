//! What Seata 2.x raft-mode clients (`registry.type=raft`) call to find the leader, in the
//! shapes they parse: `POST /api/v1/auth/login`, `GET /metadata/v1/cluster` and the
//! `POST /metadata/v1/watch` long poll.
//!
//! Both metadata endpoints speak of the announced leader only ([`crate::announced`]): an
//! answer never carries a term without its leader, and a long poll ends only once a newer
//! term's leader is known. A node that cannot serve (its storage failed, or it leads without
//! a quorum) answers 503 rather than name itself, and members that do not answer are left
//! out, so a client connects to nodes that can serve.
//!
//! The metadata is readable without logging in: it names endpoints only, and clients
//! configured without a user name never log in. The login still checks the console account,
//! so a client configured with wrong credentials fails as it would against Seata; the token it
//! returns is opaque and not checked afterwards.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Admin;
use super::auth::same_secret;
use super::error::ApiError;
use super::params::{form, json, query};
use crate::membership::{MemberStatus, Role};

/// Seata's default long-poll timeout (`timeout` of the watch form).
const DEFAULT_WATCH: Duration = Duration::from_millis(28_000);
/// The longest long poll a client may ask for.
const MAX_WATCH: Duration = Duration::from_secs(60);
/// How long a metadata request waits for a first leader before it is answered 503: within the
/// 1 s Seata's clients give it.
const LEADER_WAIT: Duration = Duration::from_millis(800);
/// How long each member has to answer a metadata request's probe. One that takes longer (a
/// paused or cut-off node) is left out of the answer, which must reach a client that gives
/// it 1 s, right when it needs it most: after a failover.
const MEMBER_PROBE: Duration = Duration::from_millis(200);

/// The login body (Seata's `User`).
#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// Seata's `SingleResult`: `code` is a string, "200" on success.
#[derive(Serialize)]
struct LoginResult {
    code: &'static str,
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    success: bool,
}

/// `POST /api/v1/auth/login` `{"username": .., "password": ..}`: on success `data` holds
/// `Bearer <token>` (also in the `Authorization` header), as Seata's console answers.
pub(super) async fn login(
    State(admin): State<Arc<Admin>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let credentials: Credentials = json(&body)?;
    let account = &admin.console;
    let valid = same_secret(credentials.username.as_bytes(), account.username.as_bytes())
        & same_secret(credentials.password.as_bytes(), account.password.as_bytes());
    if !valid {
        tracing::info!(username = %credentials.username, "console login refused");
        let refused = LoginResult {
            code: "401",
            message: "Login failed",
            data: None,
            success: false,
        };
        return Ok((StatusCode::UNAUTHORIZED, Json(refused)).into_response());
    }
    let bearer = format!("Bearer {}", fresh_token());
    let result = LoginResult {
        code: "200",
        message: "success",
        data: Some(bearer.clone()),
        success: true,
    };
    Ok(([(AUTHORIZATION, bearer)], Json(result)).into_response())
}

/// 128 unpredictable bits, in hex.
fn fresh_token() -> String {
    let first = RandomState::new().hash_one(SystemTime::now());
    let second = RandomState::new().hash_one(first);
    format!("{first:016x}{second:016x}")
}

/// `GET /metadata/v1/cluster` filter.
#[derive(Deserialize)]
struct GroupFilter {
    group: Option<String>,
}

/// Seata's `MetadataResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Metadata {
    nodes: Vec<SeataNode>,
    store_mode: &'static str,
    term: u64,
}

/// Seata's `Node`, with only the fields every 2.x client version can read back (their object
/// mapper fails on properties it does not know).
#[derive(Serialize)]
pub(super) struct SeataNode {
    /// The admin HTTP endpoint.
    control: Endpoint,
    /// The Seata RPC endpoint.
    transaction: Endpoint,
    /// The Raft endpoint.
    internal: Endpoint,
    group: String,
    role: &'static str,
    version: String,
    metadata: HashMap<String, String>,
}

/// Seata's `Node.Endpoint`.
#[derive(Serialize)]
struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    fn parse(address: &str) -> Option<Self> {
        let (host, port) = address.rsplit_once(':')?;
        Some(Self {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }
}

impl SeataNode {
    /// The member as Seata lists it, `leader` being the announced leader; None while its
    /// endpoints are unknown.
    fn of(member: &MemberStatus, group: &str, leader: u64) -> Option<Self> {
        let role = match (member.id == leader, member.role) {
            (true, _) => "LEADER",
            (false, Role::Learner) => "LEARNER",
            (false, Role::Leader | Role::Follower) => "FOLLOWER",
        };
        Some(Self {
            control: Endpoint::parse(member.admin_address.as_deref()?)?,
            transaction: Endpoint::parse(member.seata_address.as_deref()?)?,
            internal: Endpoint::parse(&member.address)?,
            group: group.to_owned(),
            role,
            version: member.seata_version.clone()?,
            metadata: HashMap::new(),
        })
    }

    fn is_leader(&self) -> bool {
        self.role == "LEADER"
    }
}

/// Refuses any group but this one (a blank group means this one, as in Seata).
fn check_group(admin: &Admin, group: Option<&str>) -> Result<(), ApiError> {
    let ours = admin.membership.group();
    match group.map(str::trim) {
        None | Some("") => Ok(()),
        Some(group) if group == ours => Ok(()),
        Some(group) => {
            tracing::warn!(group, ours, "Seata metadata asked for another group");
            Err(ApiError::not_found(format!(
                "no raft group {group:?} here; this coordinator's group is {ours:?} (map the transaction group to it with service.vgroupMapping)"
            )))
        }
    }
}

/// `GET /metadata/v1/cluster?group=`: the announced term, its leader first, then every other
/// member that answers, with their roles. 503 from a node that cannot serve, or while no
/// leader was ever known here.
pub(super) async fn cluster(
    State(admin): State<Arc<Admin>>,
    uri: Uri,
) -> Result<Json<Metadata>, ApiError> {
    let filter: GroupFilter = query(&uri)?;
    check_group(&admin, filter.group.as_deref())?;
    if let Some(failing) = admin.node.failing() {
        return Err(unavailable(failing.to_string()));
    }
    let announced = admin
        .membership
        .announcer()
        .first(LEADER_WAIT)
        .await
        .ok_or_else(|| unavailable("no leader is known yet".to_owned()))?;
    let status = admin.membership.status_within(MEMBER_PROBE).await;
    let group = admin.membership.group();
    let mut nodes: Vec<SeataNode> = status
        .members
        .iter()
        .filter(|member| member.reachable || member.id == announced.leader)
        .filter_map(|member| SeataNode::of(member, group, announced.leader))
        .collect();
    nodes.sort_by_key(|node| !node.is_leader());
    if !nodes.first().is_some_and(SeataNode::is_leader) {
        return Err(unavailable(format!(
            "the endpoints of leader {} are not known here yet",
            announced.leader
        )));
    }
    Ok(Json(Metadata {
        nodes,
        store_mode: "raft",
        term: announced.term,
    }))
}

fn unavailable(message: String) -> ApiError {
    tracing::debug!(%message, "Seata metadata refused");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// `POST /metadata/v1/watch` with form fields `<group>=<term>` and `timeout` (ms, default
/// 28000): 200 as soon as a term past the client's is announced with its leader, or the
/// members change; 304 when the timeout passes first. Bodies are empty, as in Seata.
pub(super) async fn watch(
    State(admin): State<Arc<Admin>>,
    uri: Uri,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let mut fields = form(&uri, &body)?;
    let timeout = match fields.remove("timeout") {
        Some(ms) => ms
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| ApiError::bad_request(format!("timeout {ms:?} is not milliseconds")))?,
        None => DEFAULT_WATCH,
    };
    let group = admin.membership.group();
    let Some(term) = fields.remove(group) else {
        let asked = fields.keys().next().map(String::as_str);
        check_group(&admin, asked)?;
        return Err(ApiError::bad_request(format!(
            "the form has no term for group {group:?}: send {group}=<term>"
        )));
    };
    let term = term
        .parse()
        .map_err(|_| ApiError::bad_request(format!("term {term:?} is not a number")))?;
    match admin
        .membership
        .announcer()
        .past(term, timeout.min(MAX_WATCH))
        .await
    {
        true => Ok(StatusCode::OK),
        false => Ok(StatusCode::NOT_MODIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_at_the_last_colon() {
        let endpoint = Endpoint::parse("tc-0.tc.ns.svc:8091").expect("valid");
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port),
            ("tc-0.tc.ns.svc", 8091)
        );
        assert!(Endpoint::parse("no-port").is_none());
        assert!(Endpoint::parse("host:http").is_none());
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(fresh_token(), fresh_token());
        assert_eq!(fresh_token().len(), 32);
    }
}
