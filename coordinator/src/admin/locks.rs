//! Reading the row-lock table, filtered by resource and paged in row-key order.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use serde::Deserialize;

use super::Admin;
use super::error::ApiError;
use super::params::{Page, query};
use super::views::{LockPage, LockView};

/// Filters of the listing.
#[derive(Deserialize)]
struct Filter {
    /// Only rows of this resource (the AT data source's resource id).
    resource: Option<String>,
}

/// `GET /api/v1/locks?resource=&offset=&limit=`
pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    uri: Uri,
) -> Result<Json<LockPage>, ApiError> {
    let filter: Filter = query(&uri)?;
    let page = Page::of(&uri)?;
    // Row keys are `resourceId^^^table^^^pk`.
    let prefix = filter.resource.map(|resource| format!("{resource}^^^"));
    let state = admin.node.state.read();
    let mut rows: Vec<_> = state
        .tx
        .locks()
        .iter()
        .filter(|(key, _)| {
            prefix
                .as_deref()
                .is_none_or(|prefix| key.starts_with(prefix))
        })
        .collect();
    // The table is a hash map: sorting gives pages a stable order.
    rows.sort_unstable_by_key(|(key, _)| *key);
    let (total, rows) = page.select(rows.into_iter());
    let locks = rows
        .into_iter()
        .map(|(key, owner)| LockView::of(key, owner, state.tx.session(owner.tx_id)))
        .collect();
    Ok(Json(LockPage { total, locks }))
}
