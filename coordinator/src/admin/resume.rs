//! The operator's hand on a stuck transaction: send it through phase two again, committing or
//! rolling back (a `Begin` one is decided now). Needs the admin token; every call is logged.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use txmesh_seata::{GlobalStatus, TransactionExceptionCode as Code};

use super::Admin;
use super::auth::authorize;
use super::error::ApiError;
use super::params::Xid;
use super::views::XidStatus;
use crate::node::ProposeError;
use crate::state::{Command, Outcome, phase_two_direction};
use crate::tc::now_ms;

/// `POST /api/v1/transactions/{xid}/commit`
pub(super) async fn commit(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    xid: Xid,
) -> Response {
    audited(&admin, &headers, xid, true).await
}

/// `POST /api/v1/transactions/{xid}/rollback`
pub(super) async fn rollback(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    xid: Xid,
) -> Response {
    audited(&admin, &headers, xid, false).await
}

/// Resumes and writes the audit line, whatever the outcome.
async fn audited(admin: &Admin, headers: &HeaderMap, xid: Xid, commit: bool) -> Response {
    let action = if commit { "commit" } else { "rollback" };
    match resume(admin, headers, &xid, commit).await {
        Ok(status) => {
            tracing::info!(xid = %xid.0, action, %status, "admin: transaction resumed");
            Json(XidStatus { xid: xid.0, status }).into_response()
        }
        Err(error) => {
            tracing::info!(
                xid = %xid.0,
                action,
                http_status = error.status().as_u16(),
                reason = error.message(),
                "admin: resume refused"
            );
            error.into_response()
        }
    }
}

async fn resume(
    admin: &Admin,
    headers: &HeaderMap,
    xid: &Xid,
    commit: bool,
) -> Result<GlobalStatus, ApiError> {
    authorize(admin.token.as_deref(), headers)?;
    let tx_id = xid.tx_id()?;
    let command = Command::Resume {
        tx_id,
        commit,
        now_ms: now_ms(),
    };
    match admin.node.propose(command).await {
        Ok(Outcome::Status(status)) => {
            // The command only changes the status: the driver does the work.
            if phase_two_direction(status).is_some() {
                drop(admin.phase_two.start(tx_id));
            }
            Ok(status)
        }
        Ok(Outcome::Rejected(rejection)) => {
            let status = match rejection.code {
                Code::GlobalTransactionNotExist => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            Err(ApiError::new(status, rejection.message).with_code(rejection.code.name()))
        }
        Ok(other) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: unexpected outcome {other:?}"),
        )),
        Err(error) => {
            // Only the leader decides; its address is in the message when known.
            let status = match error {
                ProposeError::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
                ProposeError::Raft(_) | ProposeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            };
            Err(ApiError::new(status, error.to_string()))
        }
    }
}
