//! Probes. Liveness fails only when the node cannot come back by itself (its Raft core stopped
//! for a reason other than a full disk), so the kubelet restarts it; readiness means "serving,
//! a member, and caught up", and is never given by a failed node or a leader without a quorum.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::Admin;
use super::error::ApiError;

/// `GET /healthz`: the process serves, or waits for space it will resume on.
pub(super) async fn live(State(admin): State<Arc<Admin>>) -> Result<&'static str, ApiError> {
    match admin.node.fault() {
        Some(fault) if !fault.recoverable() => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            fault.to_string(),
        )),
        _ => Ok("ok"),
    }
}

/// `GET /readyz`: this node runs, is a member of its group, a leader is known (itself only
/// with a quorum behind it), and this node has applied what the leader has committed, up to
/// the allowed lag.
pub(super) async fn ready(State(admin): State<Arc<Admin>>) -> Result<&'static str, ApiError> {
    match admin.membership.readiness().await {
        Ok(()) => Ok("ok"),
        Err(not_ready) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            not_ready.to_string(),
        )),
    }
}
