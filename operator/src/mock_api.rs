//! A mocked Kubernetes API server for the operator's unit tests (tower-test, as in kube-rs
//! controller-rs): a test scripts the requests it expects, in order, and answers each.

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

/// The test's end of the mocked API server.
pub(crate) type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// The means to answer one request.
pub(crate) type Answer = mock::SendResponse<Response<Body>>;

/// A client whose every request arrives at the returned handle.
pub(crate) fn client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// The next request, which must be `method` on `path` (the query string aside); returns its
/// JSON body (null when empty) and the means to answer it.
pub(crate) async fn expect(handle: &mut ApiHandle, method: Method, path: &str) -> (Value, Answer) {
    let (request, send) = handle
        .next_request()
        .await
        .unwrap_or_else(|| panic!("expected {method} {path}, but the client stopped"));
    assert_eq!(
        (request.method(), request.uri().path()),
        (&method, path),
        "unexpected request"
    );
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    let body = match bytes.is_empty() {
        true => Value::Null,
        false => serde_json::from_slice(&bytes).expect("JSON request body"),
    };
    (body, send)
}

/// Answers with `code` and `body`.
pub(crate) fn respond(send: Answer, code: StatusCode, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("JSON");
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(bytes))
            .expect("response"),
    );
}

/// Answers with a `Status` failure, as the API server does.
pub(crate) fn fail(send: Answer, code: StatusCode, reason: &str, message: &str) {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    respond(send, code, &status);
}

/// Answers 404 Not Found.
pub(crate) fn not_found(send: Answer) {
    fail(send, StatusCode::NOT_FOUND, "NotFound", "not found");
}

/// Once the client is gone, no request may be left unanswered.
pub(crate) async fn expect_no_more(mut handle: ApiHandle) {
    if let Some((request, _)) = handle.next_request().await {
        panic!("unexpected {} {}", request.method(), request.uri());
    }
}
