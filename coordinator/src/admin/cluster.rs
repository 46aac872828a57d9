//! The membership API the operator drives: the group's status (readable without the token:
//! it shows topology only, as Seata's metadata endpoint does), and changes made one at a time
//! on the leader with the admin token. A follower refuses changes with 421 and names the
//! leader's admin address; it does not redirect, because HTTP clients drop the
//! `Authorization` header when a redirect leaves the origin.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::Admin;
use super::auth::authorize;
use super::error::ApiError;
use super::params::{MemberId, json};
use crate::membership::{ClusterStatus, MembershipError};
use crate::raft::NodeId;

/// The answer to a change: whether anything changed (asking for what already is, is not an
/// error), and the group after it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Changed {
    changed: bool,
    cluster: ClusterStatus,
}

/// `POST /api/v1/cluster/learners` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLearner {
    id: NodeId,
    /// Its Raft address, `host:port`.
    address: String,
}

/// `POST /api/v1/cluster/leader` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLeader {
    id: NodeId,
}

/// `GET /api/v1/cluster`
pub(super) async fn status(State(admin): State<Arc<Admin>>) -> Json<ClusterStatus> {
    Json(admin.membership.status().await)
}

/// `POST /api/v1/cluster/learners` `{"id": 4, "address": "host:9091"}`
pub(super) async fn add_learner(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Changed>, ApiError> {
    authorize(admin.token.as_deref(), &headers)?;
    let learner: NewLearner = json(&body)?;
    let added = admin
        .membership
        .add_learner(learner.id, &learner.address)
        .await;
    answer(&admin, "add learner", learner.id, added).await
}

/// `POST /api/v1/cluster/voters/{id}/promote`
pub(super) async fn promote(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    MemberId(id): MemberId,
) -> Result<Json<Changed>, ApiError> {
    authorize(admin.token.as_deref(), &headers)?;
    let promoted = admin.membership.promote(id).await;
    answer(&admin, "promote", id, promoted).await
}

/// `DELETE /api/v1/cluster/members/{id}`
pub(super) async fn remove(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    MemberId(id): MemberId,
) -> Result<Json<Changed>, ApiError> {
    authorize(admin.token.as_deref(), &headers)?;
    let removed = admin.membership.remove(id).await;
    answer(&admin, "remove", id, removed).await
}

/// `POST /api/v1/cluster/leader` `{"id": 2}`
pub(super) async fn transfer(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Changed>, ApiError> {
    authorize(admin.token.as_deref(), &headers)?;
    let leader: NewLeader = json(&body)?;
    let transferred = admin.membership.transfer_leadership(leader.id).await;
    answer(&admin, "transfer leadership", leader.id, transferred).await
}

/// Logs the call (an audit line, whatever the outcome) and answers it.
async fn answer(
    admin: &Admin,
    action: &'static str,
    id: NodeId,
    outcome: Result<bool, MembershipError>,
) -> Result<Json<Changed>, ApiError> {
    match outcome {
        Ok(changed) => {
            tracing::info!(action, id, changed, "admin: membership call");
            let cluster = admin.membership.status().await;
            Ok(Json(Changed { changed, cluster }))
        }
        Err(error) => {
            tracing::info!(action, id, reason = %error, "admin: membership call refused");
            Err(refusal(error))
        }
    }
}

/// The HTTP answer for a refused or failed change.
fn refusal(error: MembershipError) -> ApiError {
    use MembershipError as E;
    let (status, code) = match &error {
        E::NotLeader {
            leader_id: Some(_), ..
        } => (StatusCode::MISDIRECTED_REQUEST, "NotLeader"),
        E::NotLeader { .. } => (StatusCode::SERVICE_UNAVAILABLE, "NotLeader"),
        E::Busy => (StatusCode::CONFLICT, "Busy"),
        E::UnknownMember(_) => (StatusCode::NOT_FOUND, "UnknownMember"),
        E::InvalidAddress(_) => (StatusCode::BAD_REQUEST, "InvalidAddress"),
        E::InvalidNodeId => (StatusCode::BAD_REQUEST, "InvalidNodeId"),
        E::MemberElsewhere { .. } => (StatusCode::CONFLICT, "MemberElsewhere"),
        E::AddressTaken { .. } => (StatusCode::CONFLICT, "AddressTaken"),
        E::NotCaughtUp { .. } => (StatusCode::CONFLICT, "NotCaughtUp"),
        E::Unreachable(_) => (StatusCode::CONFLICT, "Unreachable"),
        E::WouldLoseQuorum { .. } => (StatusCode::CONFLICT, "WouldLoseQuorum"),
        E::RemovingLeader(_) => (StatusCode::CONFLICT, "RemovingLeader"),
        E::NotAVoter(_) => (StatusCode::CONFLICT, "NotAVoter"),
        E::TransferRefused { .. } => (StatusCode::CONFLICT, "TransferRefused"),
        E::TransferWentElsewhere { .. } => (StatusCode::CONFLICT, "TransferWentElsewhere"),
        E::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
        E::Raft(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Raft"),
    };
    let refused = ApiError::new(status, error.to_string()).with_code(code);
    match error {
        E::NotLeader {
            leader_id,
            leader_admin_address,
            ..
        } => refused.with_leader(leader_id, leader_admin_address),
        E::TransferWentElsewhere { leader, .. } => refused.with_leader(Some(leader), None),
        _ => refused,
    }
}
