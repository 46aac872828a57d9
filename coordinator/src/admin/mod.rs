//! The admin HTTP API (port 7091): liveness and readiness probes, Prometheus metrics, JSON over
//! transactions and locks, the membership API, and the endpoints Seata 2.x clients use to
//! find the leader. Reads are open; calls that change state need the configured bearer token,
//! and are refused when none is configured.

mod auth;
mod body;
mod cluster;
mod discovery;
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
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ConsoleAccount, CoordinatorConfig};
use crate::drivers::PhaseTwo;
use crate::membership::Membership;
use crate::node::Node;

/// What the handlers share.
pub struct Admin {
    node: Arc<Node>,
    phase_two: Arc<PhaseTwo>,
    membership: Arc<Membership>,
    /// The bearer token for mutating calls; none refuses them all.
    token: Option<String>,
    /// The account Seata clients log in with.
    console: ConsoleAccount,
    registry: Registry,
}

impl Admin {
    /// The API over `node`, resuming phase two through `phase_two` and changing membership
    /// through `membership`, with the token and console account of `config`.
    pub fn new(
        node: Arc<Node>,
        phase_two: Arc<PhaseTwo>,
        membership: Arc<Membership>,
        config: &CoordinatorConfig,
    ) -> Self {
        let mut registry = node.metrics.registry(node.state.clone());
        registry.register_collector(Box::new(scrape::HealthGauges::new(node.clone())));
        Self {
            node,
            phase_two,
            membership,
            token: config.admin_token.clone(),
            console: config.console.clone(),
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
        .route("/api/v1/cluster", get(cluster::status))
        .route("/api/v1/cluster/learners", post(cluster::add_learner))
        .route(
            "/api/v1/cluster/voters/{id}/promote",
            post(cluster::promote),
        )
        .route("/api/v1/cluster/members/{id}", delete(cluster::remove))
        .route("/api/v1/cluster/leader", post(cluster::transfer))
        .route("/api/v1/auth/login", post(discovery::login))
        .route("/metadata/v1/cluster", get(discovery::cluster))
        .route("/metadata/v1/watch", post(discovery::watch))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(middleware::from_fn(body::bounded))
        // The limit `body::bounded` reads bodies with (the outer layer runs first).
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .with_state(admin)
}
