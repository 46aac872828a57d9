//! Reading transactions: a filtered, paged listing (oldest first), and one in detail.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use txmesh_seata::GlobalStatus;

use super::Admin;
use super::error::ApiError;
use super::params::{Page, Xid, query};
use super::views::{BranchView, TransactionPage, TransactionView, XidStatus};

/// Filters of the listing.
#[derive(Deserialize)]
struct Filter {
    /// A Seata status name, such as `CommitRetrying`.
    status: Option<String>,
    /// The beginning TM's application.
    application: Option<String>,
}

/// `GET /api/v1/transactions?status=&application=&offset=&limit=`
pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    uri: Uri,
) -> Result<Json<TransactionPage>, ApiError> {
    let filter: Filter = query(&uri)?;
    let page = Page::of(&uri)?;
    let status = filter.status.as_deref().map(status_named).transpose()?;
    let application = filter.application.as_deref();
    let state = admin.node.state.read();
    let matching = state.tx.sessions().filter(|session| {
        status.is_none_or(|status| session.status == status)
            && application.is_none_or(|application| session.application_id == application)
    });
    let (total, sessions) = page.select(matching);
    let transactions = sessions
        .into_iter()
        .map(|session| TransactionView::of(session, session.branches.len()))
        .collect();
    Ok(Json(TransactionPage {
        total,
        transactions,
    }))
}

/// `GET /api/v1/transactions/{xid}`: a live transaction in full, or a finished one's final
/// status while it is remembered.
pub(super) async fn detail(
    State(admin): State<Arc<Admin>>,
    xid: Xid,
) -> Result<Response, ApiError> {
    let tx_id = xid.tx_id()?;
    let state = admin.node.state.read();
    if let Some(session) = state.tx.session(tx_id) {
        let branches: Vec<BranchView> = session.branches.iter().map(BranchView::from).collect();
        return Ok(Json(TransactionView::of(session, branches)).into_response());
    }
    match state.tx.status(tx_id) {
        Some(status) => Ok(Json(XidStatus { xid: xid.0, status }).into_response()),
        None => Err(ApiError::not_found(format!(
            "no transaction {:?} is live or recently finished",
            xid.0
        ))),
    }
}

fn status_named(name: &str) -> Result<GlobalStatus, ApiError> {
    GlobalStatus::from_name(name).ok_or_else(|| {
        let valid: Vec<&str> = GlobalStatus::ALL.iter().map(|s| s.name()).collect();
        ApiError::bad_request(format!(
            "unknown status {name:?}; valid statuses: {}",
            valid.join(", ")
        ))
    })
}
