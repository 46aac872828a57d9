//! Probes: liveness never depends on elections; readiness means "member and caught up".

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::Admin;
use super::error::ApiError;

/// `GET /healthz`: the process serves.
pub(super) async fn live() -> &'static str {
    "ok"
}

/// `GET /readyz`: this node is a member of its group, a leader is known, and this node has
/// applied what the leader has committed, up to the allowed lag (a leader is ready as such).
pub(super) async fn ready(State(admin): State<Arc<Admin>>) -> Result<&'static str, ApiError> {
    match admin.membership.readiness().await {
        Ok(()) => Ok("ok"),
        Err(not_ready) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            not_ready.to_string(),
        )),
    }
}
