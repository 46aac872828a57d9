//! The admin HTTP API (port 7091): liveness and readiness probes, Prometheus metrics, and JSON
//! over transactions and locks. Reads are open; calls that change state need the configured
//! bearer token, and are refused when none is configured.

mod auth;
mod error;
mod health;
mod locks;
mod params;
mod resume;
mod scrape;
mod transactions;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::drivers::PhaseTwo;
use crate::node::Node;

/// What the handlers share.
pub struct Admin {
    node: Arc<Node>,
    phase_two: Arc<PhaseTwo>,
    /// The bearer token for mutating calls; none refuses them all.
    token: Option<String>,
    registry: Registry,
}

impl Admin {
    /// The API over `node`, resuming phase two through `phase_two`.
    pub fn new(node: Arc<Node>, phase_two: Arc<PhaseTwo>, token: Option<String>) -> Self {
        let registry = node.metrics.registry(node.state.clone());
        Self {
            node,
            phase_two,
            token,
            registry,
        }
    }
}

/// Serves the API on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, admin: Admin, mut shutdown: watch::Receiver<bool>) {
    tokio::select! {
        result = axum::serve(listener, router(Arc::new(admin))) => {
            if let Err(error) = result {
                tracing::error!(%error, "the admin API stopped");
            }
        }
        _ = crate::stopped(&mut shutdown) => {}
    }
}

fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(scrape::metrics))
        .route("/api/v1/transactions", get(transactions::list))
        .route("/api/v1/transactions/{xid}", get(transactions::detail))
        .route("/api/v1/transactions/{xid}/commit", post(resume::commit))
        .route(
            "/api/v1/transactions/{xid}/rollback",
            post(resume::rollback),
        )
        .route("/api/v1/locks", get(locks::list))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .with_state(admin)
}
