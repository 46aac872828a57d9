//! The bearer-token check for calls that change state. Without a configured token such calls
//! are refused: the admin API is never open for writes by default.

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};

use super::error::ApiError;

/// Passes when `headers` carry `Authorization: Bearer <expected>`.
pub(super) fn authorize(expected: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "mutating admin calls are disabled: start the coordinator with --admin-token-file",
        ));
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(token) if same_secret(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call needs the admin token as `Authorization: Bearer <token>`",
        )),
    }
}

/// Compares every byte instead of stopping at the first difference, so the time taken does
/// not tell how much of a guess was right.
pub(super) fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0, |difference, (a, b)| difference | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn bearer(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn only_the_configured_token_passes() {
        assert!(authorize(Some("s3cret"), &bearer("Bearer s3cret")).is_ok());
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3CRET",
            "s3cret",
            "Basic s3cret",
        ] {
            let error = authorize(Some("s3cret"), &bearer(wrong)).expect_err(wrong);
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED, "{wrong}");
        }
        let missing = authorize(Some("s3cret"), &HeaderMap::new()).expect_err("no header");
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn without_a_configured_token_everything_is_refused() {
        let error = authorize(None, &bearer("Bearer anything")).expect_err("refused");
        assert_eq!(error.status(), StatusCode::FORBIDDEN);
    }
}
