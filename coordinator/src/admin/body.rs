//! Request bodies bounded before handlers see them: a declared length over the limit is
//! refused at once (no byte of it is waited for), a body without one is read up to the limit
//! and no longer than [`BODY_TIMEOUT`]. Every admin body is a small JSON object or form, so
//! the limit is small.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;

/// Largest request body the admin API reads.
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a body has to arrive once the headers have.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Middleware: reads the body within the limits, then hands the request on.
pub(super) async fn bounded(request: Request, next: Next) -> Result<Response, ApiError> {
    // hyper has refused a Content-Length that is not a number already.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large(&format!("declares {declared} bytes")));
    }
    let (parts, body) = request.into_parts();
    let limited = Request::from_parts(parts.clone(), body);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(limited, &())).await {
        Err(_) => {
            let message = format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            );
            return Err(
                ApiError::new(StatusCode::REQUEST_TIMEOUT, message).with_code("BodyTimeout")
            );
        }
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(too_large("is longer"));
        }
        Ok(Err(rejection)) => return Err(ApiError::bad_request(rejection.body_text())),
        Ok(Ok(bytes)) => bytes,
    };
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

fn too_large(what: &str) -> ApiError {
    let message =
        format!("the request body {what}; the admin API reads at most {MAX_BODY_BYTES} bytes");
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).with_code("BodyTooLarge")
}
