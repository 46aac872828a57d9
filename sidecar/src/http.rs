//! Health and metrics over HTTP (port 7092): `/healthz` (the process serves), `/readyz`
//! (registered with a coordinator for every resource the application serves) and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::phase_two::PhaseTwoHandler;
use crate::upstream::Upstream;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read.
pub struct Probes {
    upstream: Upstream<PhaseTwoHandler>,
    registry: Registry,
}

impl Probes {
    /// Probes over `upstream`, exposing `registry`.
    pub fn new(upstream: Upstream<PhaseTwoHandler>, registry: Registry) -> Self {
        Self { upstream, registry }
    }
}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, probes: Probes, mut stop: watch::Receiver<bool>) {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(probes));
    let stopped = async move { crate::until_stopped(&mut stop).await };
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(%error, "the HTTP server stopped");
    }
}

async fn ready(State(probes): State<Arc<Probes>>) -> Response {
    match probes.upstream.is_ready() {
        true => (StatusCode::OK, "ready\n").into_response(),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not registered with a coordinator for every served resource\n",
        )
            .into_response(),
    }
}

async fn metrics(State(probes): State<Arc<Probes>>) -> Response {
    let mut body = String::new();
    match encode(&mut body, &probes.registry) {
        Ok(()) => ([(CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}
