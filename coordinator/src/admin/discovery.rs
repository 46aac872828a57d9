//! What Seata 2.x raft-mode clients (`registry.type=raft`) call to find the leader, in the
//! shapes they parse: `POST /api/v1/auth/login`, `GET /metadata/v1/cluster` and the
//! `POST /metadata/v1/watch` long poll.
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
    /// The member as Seata lists it; None while its endpoints are unknown.
    fn of(member: &MemberStatus, group: &str) -> Option<Self> {
        let role = match member.role {
            Role::Leader => "LEADER",
            Role::Follower => "FOLLOWER",
            Role::Learner => "LEARNER",
        };
        Some(Self {
            control: Endpoint::parse(member.admin_address.as_deref()?)?,
            transaction: Endpoint::parse(member.seata_address.as_deref()?)?,
            internal: Endpoint::parse(&member.address)?,
            group: group.to_owned(),
            role,
            version: member.version.clone()?,
            metadata: HashMap::new(),
        })
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

/// `GET /metadata/v1/cluster?group=`: every member whose endpoints are known, with its role,
/// and the current term.
pub(super) async fn cluster(
    State(admin): State<Arc<Admin>>,
    uri: Uri,
) -> Result<Json<Metadata>, ApiError> {
    let filter: GroupFilter = query(&uri)?;
    check_group(&admin, filter.group.as_deref())?;
    let status = admin.membership.status().await;
    let group = admin.membership.group();
    let nodes = status
        .members
        .iter()
        .filter_map(|member| SeataNode::of(member, group))
        .collect();
    Ok(Json(Metadata {
        nodes,
        store_mode: "raft",
        term: status.term,
    }))
}

/// `POST /metadata/v1/watch` with form fields `<group>=<term>` and `timeout` (ms, default
/// 28000): 200 as soon as the term is past the client's or the membership changes, 304 when
/// the timeout passes first. Bodies are empty, as in Seata.
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
        .changed_since(term, timeout.min(MAX_WATCH))
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
