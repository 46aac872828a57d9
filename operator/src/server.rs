//! The operator process's HTTP endpoints: `/healthz` (the process serves), `/readyz` (it has
//! reached the API server and found the CRD; standby replicas waiting for the Lease are
//! ready too) and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints report.
#[derive(Debug, Default)]
pub struct Probes {
    ready: AtomicBool,
    /// The metrics `/metrics` serves.
    pub metrics: Arc<Metrics>,
}

impl Probes {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}

/// The router of the endpoints.
pub fn router(probes: Arc<Probes>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

async fn readyz(State(probes): State<Arc<Probes>>) -> Response {
    match probes.ready.load(Ordering::Relaxed) {
        true => "ok".into_response(),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the API server yet",
        )
            .into_response(),
    }
}

async fn metrics(State(probes): State<Arc<Probes>>) -> Response {
    ([(CONTENT_TYPE, OPENMETRICS)], probes.metrics.encode()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let request = http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let probes = Arc::new(Probes::default());
        let router = router(probes.clone());
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&router, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        probes.set_ready();
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
        let started = probes.metrics.reconcile_started();
        probes.metrics.reconcile_finished(started, true);
        let (status, text) = get(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("txmesh_operator_reconciles_total 1"),
            "{text}"
        );
    }
}
