//! Request input as typed values, with bad input answered as a JSON error: the XID or node id
//! in the path, query-string filters, paging, JSON bodies and form fields.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::tc::tx_id_of;

/// Most items one page holds.
const MAX_LIMIT: usize = 1_000;
/// Items per page when the caller does not say.
const DEFAULT_LIMIT: usize = 100;

/// The XID named in the path, as given.
pub(super) struct Xid(pub(super) String);

impl Xid {
    /// The transaction id it ends with.
    pub(super) fn tx_id(&self) -> Result<u64, ApiError> {
        tx_id_of(&self.0).ok_or_else(|| {
            ApiError::bad_request(format!("malformed XID {:?}: expected host:port:id", self.0))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Xid {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(xid) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Ok(Self(xid))
    }
}

/// The node id named in the path.
pub(super) struct MemberId(pub(super) u64);

impl<S: Send + Sync> FromRequestParts<S> for MemberId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        id.parse()
            .map(Self)
            .map_err(|_| ApiError::bad_request(format!("node id {id:?} is not a number")))
    }
}

/// A JSON request body as `T`.
pub(super) fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    Json::from_bytes(body)
        .map(|Json(value)| value)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

/// The fields of a form sent in the query string, the urlencoded body, or both (as Spring's
/// `@RequestParam` reads them; a body field wins).
pub(super) fn form(uri: &Uri, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let mut fields: HashMap<String, String> = query(uri)?;
    if !body.is_empty() {
        let body = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the form body is not UTF-8"))?;
        let as_query: Uri = format!("/?{body}")
            .parse()
            .map_err(|_| ApiError::bad_request("the form body is not urlencoded"))?;
        fields.extend(query::<HashMap<String, String>>(&as_query)?);
    }
    Ok(fields)
}

/// The query string of `uri` as `T`.
pub(super) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::try_from_uri(uri)
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

/// `offset` and `limit` from a query string.
#[derive(Debug, Deserialize)]
pub(super) struct Page {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    DEFAULT_LIMIT
}

impl Page {
    /// The page a query string asks for.
    pub(super) fn of(uri: &Uri) -> Result<Self, ApiError> {
        let page: Self = query(uri)?;
        if page.limit > MAX_LIMIT {
            let message = format!("limit {} is above the maximum of {MAX_LIMIT}", page.limit);
            return Err(ApiError::bad_request(message));
        }
        Ok(page)
    }

    /// How many `items` there are, and the ones on this page.
    pub(super) fn select<T>(&self, items: impl Iterator<Item = T>) -> (usize, Vec<T>) {
        let mut total = 0;
        let mut selected = Vec::new();
        for item in items {
            if total >= self.offset && selected.len() < self.limit {
                selected.push(item);
            }
            total += 1;
        }
        (total, selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(query: &str) -> Result<Page, ApiError> {
        Page::of(&format!("/x?{query}").parse().expect("uri"))
    }

    #[test]
    fn pages_count_everything_and_keep_their_slice() {
        let page = page("offset=2&limit=3").expect("valid");
        assert_eq!(page.select(0..10), (10, vec![2, 3, 4]));
        assert_eq!(page.select(0..3), (3, vec![2]));
        assert_eq!(page.select(0..1), (1, vec![]));
    }

    #[test]
    fn form_fields_come_from_the_query_and_the_body() {
        let uri: Uri = "/watch?default=3&timeout=100".parse().expect("uri");
        let fields = form(&uri, b"timeout=2000&other+group=%37").expect("valid");
        assert_eq!(fields["default"], "3");
        assert_eq!(fields["timeout"], "2000");
        assert_eq!(fields["other group"], "7");
        assert!(form(&uri, b"a b").is_err());
    }

    #[test]
    fn limits_default_and_are_bounded() {
        let defaults = page("").expect("valid");
        assert_eq!(defaults.select(0..500).1.len(), DEFAULT_LIMIT);
        assert!(page("limit=1000").is_ok());
        assert!(page("limit=1001").is_err());
        assert!(page("limit=-1").is_err());
        assert!(page("offset=x").is_err());
    }
}
