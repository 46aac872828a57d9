//! The injector's HTTPS endpoint: `POST /inject/pod` and `POST /inject/namespace` (one per
//! webhook of the configuration, see [`Route`]) take an AdmissionReview and answer one.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::tls::{ServingCert, TlsError};
use super::{InjectorConfig, Route, review};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the webhook cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The address could not be bound.
    #[error("cannot serve the injector webhook on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The webhook's routes.
pub fn router(config: Arc<InjectorConfig>) -> Router {
    Router::new()
        .route("/inject/pod", post(|s, b| inject(Route::Pod, s, b)))
        .route(
            "/inject/namespace",
            post(|s, b| inject(Route::Namespace, s, b)),
        )
        .with_state(config)
}

async fn inject(route: Route, State(config): State<Arc<InjectorConfig>>, body: Bytes) -> Response {
    let admission: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(admission) => admission,
        Err(error) => {
            tracing::warn!(%error, "the injector got a request that is not an AdmissionReview");
            let message = format!("not an AdmissionReview of a Pod: {error}");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let request: Result<AdmissionRequest<Pod>, _> = admission.try_into();
    let response = match request {
        Ok(request) => review(route, &request, &config),
        Err(error) => {
            tracing::warn!(%error, "the injector got an AdmissionReview without a request");
            AdmissionResponse::invalid(error)
        }
    };
    axum::Json(response.into_review()).into_response()
}

/// Serves `router` over TLS with `cert` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cert: Arc<ServingCert>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    let acceptor = TlsAcceptor::from(Arc::new(cert.server_config()?));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the sidecar injector webhook");
    }
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pass, and try again shortly.
                    tracing::warn!(%error, "the injector webhook cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "webhook connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests;
