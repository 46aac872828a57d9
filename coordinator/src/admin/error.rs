//! Failed admin calls as JSON: `{"error": message}`, plus a code naming the refusal (Seata's
//! exception code for a transaction command, the error kind for a membership call) and, when
//! the call belongs on the leader, where the leader is.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A failed admin call.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<&'static str>,
    leader: Option<Leader>,
}

/// Where the leader is, as far as the answering node knows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Leader {
    leader_id: Option<u64>,
    leader_admin_address: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    leader: Option<&'a Leader>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
            leader: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Names the Seata exception code behind the refusal.
    pub(super) fn with_code(self, code: &'static str) -> Self {
        Self {
            code: Some(code),
            ..self
        }
    }

    /// Names the leader the call should go to.
    pub(super) fn with_leader(
        self,
        leader_id: Option<u64>,
        leader_admin_address: Option<String>,
    ) -> Self {
        let leader = Leader {
            leader_id,
            leader_admin_address,
        };
        Self {
            leader: Some(leader),
            ..self
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        self.status
    }

    pub(super) fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            code: self.code,
            leader: self.leader.as_ref(),
        };
        (self.status, Json(body)).into_response()
    }
}

/// The answer for a path no route matches.
pub(super) async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// The answer for a known path with the wrong method.
pub(super) async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method",
    )
}
