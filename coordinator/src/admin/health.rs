//! Probes: liveness never depends on elections; readiness needs membership and a leader.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::Admin;
use super::error::ApiError;

/// `GET /healthz`: the process serves.
pub(super) async fn live() -> &'static str {
    "ok"
}

/// `GET /readyz`: this node is a member of its group and a leader is known (on a single
/// node: it leads).
pub(super) async fn ready(State(admin): State<Arc<Admin>>) -> Result<&'static str, ApiError> {
    let metrics = admin.node.raft.metrics();
    let metrics = metrics.borrow();
    let unavailable = |reason: String| Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason));
    let membership = metrics.membership_config.membership();
    if membership.get_node(&admin.node.id).is_none() {
        return unavailable(format!(
            "node {} is not a member of the group",
            admin.node.id
        ));
    }
    match metrics.current_leader {
        Some(_) => Ok("ok"),
        None => unavailable("no leader is known".to_owned()),
    }
}
