//! The reconciler against a mocked API server (tower-test, as in kube-rs controller-rs): each
//! test scripts the requests it expects, in order, answers them, and checks that nothing else
//! was asked.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::*;

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const STATEFUL_SET: &str = "/apis/apps/v1/namespaces/payments/statefulsets/tc";

fn context() -> (Arc<Context>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    let ctx = Context::new(
        client,
        recorder,
        BuildConfig::default(),
        Arc::new(Metrics::default()),
    );
    (Arc::new(ctx), handle)
}

/// A resource as the API server would hand it over, with `spec` over a minimal spec.
fn coordinator(spec: Value, finalizers: &[&str]) -> TransactionCoordinator {
    let mut full = json!({"image": "txmesh/txmesh:0.1.0"});
    if let (Some(full), Some(spec)) = (full.as_object_mut(), spec.as_object()) {
        full.extend(spec.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "txmesh.io/v1alpha1",
        "kind": "TransactionCoordinator",
        "metadata": {
            "name": "tc",
            "namespace": "payments",
            "uid": "0b6d3c3e-6f1e-4c55-9d3a-1f2a3b4c5d6e",
            "generation": 1,
            "resourceVersion": "100",
            "finalizers": finalizers,
        },
        "spec": full,
    }))
    .expect("valid resource")
}

/// The next request, which must be `method` on `path` (the query string aside); returns its
/// JSON body (null when empty) and the means to answer it.
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
) -> (Value, mock::SendResponse<Response<Body>>) {
    let (request, send) = handle
        .next_request()
        .await
        .unwrap_or_else(|| panic!("expected {method} {path}, but the reconciler stopped"));
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

fn respond(send: mock::SendResponse<Response<Body>>, code: StatusCode, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("JSON");
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(bytes))
            .expect("response"),
    );
}

fn not_found(send: mock::SendResponse<Response<Body>>) {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "not found", "reason": "NotFound", "code": 404,
    });
    respond(send, StatusCode::NOT_FOUND, &status);
}

/// Answers a server-side apply with the applied object.
async fn expect_apply(handle: &mut ApiHandle, path: &str) -> Value {
    let (body, send) = expect(handle, Method::PATCH, path).await;
    respond(send, StatusCode::OK, &body);
    body
}

/// Answers an Event creation; returns the Event.
async fn expect_event(handle: &mut ApiHandle) -> Value {
    let (body, send) = expect(
        handle,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/payments/events",
    )
    .await;
    respond(send, StatusCode::CREATED, &body);
    body
}

/// Answers the status patch with the resource carrying that status; returns the status.
async fn expect_status(handle: &mut ApiHandle, tc: &TransactionCoordinator) -> Value {
    let (body, send) = expect(
        handle,
        Method::PATCH,
        "/apis/txmesh.io/v1alpha1/namespaces/payments/transactioncoordinators/tc/status",
    )
    .await;
    let mut object = serde_json::to_value(tc).expect("JSON");
    object["status"] = body["status"].clone();
    respond(send, StatusCode::OK, &object);
    body["status"].clone()
}

/// After the reconcile, no further request may come.
async fn expect_no_more(ctx: Arc<Context>, mut handle: ApiHandle) {
    drop(ctx);
    if let Some((request, _)) = handle.next_request().await {
        panic!("unexpected {} {}", request.method(), request.uri());
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn a_new_resource_gets_the_finalizer_before_anything_else() {
    let (ctx, mut handle) = context();
    let tc = coordinator(json!({}), &[]);
    let server = async {
        let (patch, send) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/txmesh.io/v1alpha1/namespaces/payments/transactioncoordinators/tc",
        )
        .await;
        assert_eq!(patch[1]["op"], "add");
        assert_eq!(patch[1]["value"], json!([FINALIZER]));
        respond(
            send,
            StatusCode::OK,
            &serde_json::to_value(coordinator(json!({}), &[FINALIZER])).expect("JSON"),
        );
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc), ctx.clone()), server);
    assert_eq!(action.expect("reconciled"), Action::await_change());
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn create_applies_every_object_then_reports_progress() {
    let (ctx, mut handle) = context();
    let tc = coordinator(json!({}), &[FINALIZER]);
    let server = async {
        let ns = "/api/v1/namespaces/payments";
        let (_, send) = expect(&mut handle, Method::GET, STATEFUL_SET).await;
        not_found(send);
        let (_, send) = expect(
            &mut handle,
            Method::GET,
            &format!("{ns}/secrets/tc-admin-token"),
        )
        .await;
        not_found(send);
        let secret = expect_apply(&mut handle, &format!("{ns}/secrets/tc-admin-token")).await;
        let token = secret["data"]["admin-token"].as_str().expect("token");
        // 32 random bytes as hex, base64-encoded: 88 characters.
        assert_eq!(token.len(), 88, "{token}");
        expect_apply(&mut handle, &format!("{ns}/configmaps/tc-config")).await;
        let peers = expect_apply(&mut handle, &format!("{ns}/services/tc-peers")).await;
        assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
        expect_apply(&mut handle, &format!("{ns}/services/tc")).await;
        let sts = expect_apply(
            &mut handle,
            "/apis/apps/v1/namespaces/payments/statefulsets/tc",
        )
        .await;
        assert_eq!(sts["spec"]["replicas"], 3);
        expect_apply(
            &mut handle,
            "/apis/policy/v1/namespaces/payments/poddisruptionbudgets/tc",
        )
        .await;
        // No ServiceMonitor asked for: one left from an earlier spec would be deleted.
        let (_, send) = expect(
            &mut handle,
            Method::DELETE,
            "/apis/monitoring.coreos.com/v1/namespaces/payments/servicemonitors/tc",
        )
        .await;
        not_found(send);
        let event = expect_event(&mut handle).await;
        assert_eq!(
            (&event["type"], &event["reason"]),
            (&json!("Normal"), &json!("Created"))
        );
        let status = expect_status(&mut handle, &tc).await;
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(status["phase"], "Progressing");
        assert_eq!(condition(&status, "Progressing")["reason"], "Creating");
        assert_eq!(condition(&status, "Available")["status"], "False");
        assert_eq!(condition(&status, "Degraded")["status"], "False");
        assert_eq!(
            status["clientEndpoint"],
            "tc.payments.svc.cluster.local:8091"
        );
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    assert_eq!(
        action.expect("reconciled"),
        Action::requeue(PROGRESS_REQUEUE)
    );
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_with_a_warning_and_waits_for_a_change() {
    let (ctx, mut handle) = context();
    // Even replicas get past an API server whose CRD lacks the CEL rule.
    let tc = coordinator(json!({"replicas": 4}), &[FINALIZER]);
    let server = async {
        let event = expect_event(&mut handle).await;
        assert_eq!(
            (&event["type"], &event["reason"]),
            (&json!("Warning"), &json!("InvalidSpec"))
        );
        let note = event["note"].as_str().expect("note");
        assert!(note.contains("replicas must be odd"), "{note}");
        let status = expect_status(&mut handle, &tc).await;
        assert_eq!(status["phase"], "Degraded");
        let degraded = condition(&status, "Degraded");
        assert_eq!(
            (&degraded["status"], &degraded["reason"]),
            (&json!("True"), &json!("InvalidSpec"))
        );
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    // No requeue at all: the next reconcile comes from the user's next change.
    assert_eq!(action.expect("reconciled"), Action::await_change());
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn deletion_announces_itself_and_releases_the_finalizer() {
    let (ctx, mut handle) = context();
    let mut tc = coordinator(json!({}), &[FINALIZER]);
    tc.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let server = async {
        let event = expect_event(&mut handle).await;
        assert_eq!(event["reason"], "Deleting");
        let (patch, send) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/txmesh.io/v1alpha1/namespaces/payments/transactioncoordinators/tc",
        )
        .await;
        assert_eq!(
            patch[1],
            json!({"op": "remove", "path": "/metadata/finalizers/0"})
        );
        respond(
            send,
            StatusCode::OK,
            &serde_json::to_value(coordinator(json!({}), &[])).expect("JSON"),
        );
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc), ctx.clone()), server);
    assert_eq!(action.expect("reconciled"), Action::await_change());
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn an_update_keeps_the_admin_token_and_announces_the_new_generation() {
    let (ctx, mut handle) = context();
    let mut tc = coordinator(json!({"image": "txmesh/txmesh:0.2.0"}), &[FINALIZER]);
    tc.metadata.generation = Some(2);
    tc.status = Some(txmesh_crds::TransactionCoordinatorStatus {
        observed_generation: Some(1),
        ..Default::default()
    });
    let server = async {
        let ns = "/api/v1/namespaces/payments";
        let (_, send) = expect(&mut handle, Method::GET, STATEFUL_SET).await;
        not_found(send);
        let (_, send) = expect(
            &mut handle,
            Method::GET,
            &format!("{ns}/secrets/tc-admin-token"),
        )
        .await;
        let existing = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tc-admin-token", "namespace": "payments"},
            "data": {"admin-token": "a2VwdC10b2tlbg=="},
        });
        respond(send, StatusCode::OK, &existing);
        let secret = expect_apply(&mut handle, &format!("{ns}/secrets/tc-admin-token")).await;
        assert_eq!(
            secret["data"]["admin-token"], "a2VwdC10b2tlbg==",
            "the token is kept"
        );
        expect_apply(&mut handle, &format!("{ns}/configmaps/tc-config")).await;
        expect_apply(&mut handle, &format!("{ns}/services/tc-peers")).await;
        expect_apply(&mut handle, &format!("{ns}/services/tc")).await;
        let sts = expect_apply(
            &mut handle,
            "/apis/apps/v1/namespaces/payments/statefulsets/tc",
        )
        .await;
        assert_eq!(
            sts["spec"]["template"]["spec"]["containers"][0]["image"],
            "txmesh/txmesh:0.2.0"
        );
        expect_apply(
            &mut handle,
            "/apis/policy/v1/namespaces/payments/poddisruptionbudgets/tc",
        )
        .await;
        let (_, send) = expect(
            &mut handle,
            Method::DELETE,
            "/apis/monitoring.coreos.com/v1/namespaces/payments/servicemonitors/tc",
        )
        .await;
        // Without RBAC for ServiceMonitors the operator never made one: nothing to delete.
        let forbidden = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "forbidden", "reason": "Forbidden", "code": 403,
        });
        respond(send, StatusCode::FORBIDDEN, &forbidden);
        let event = expect_event(&mut handle).await;
        assert_eq!(event["reason"], "Applied");
        let note = event["note"].as_str().expect("note");
        assert!(
            note.contains("generation 2") && note.contains("txmesh/txmesh:0.2.0"),
            "{note}"
        );
        let status = expect_status(&mut handle, &tc).await;
        assert_eq!(status["observedGeneration"], 2);
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    assert_eq!(
        action.expect("reconciled"),
        Action::requeue(PROGRESS_REQUEUE)
    );
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn a_paused_resource_changes_nothing_but_its_status() {
    let (ctx, mut handle) = context();
    let tc = coordinator(json!({"paused": true, "replicas": 5}), &[FINALIZER]);
    let server = async {
        let event = expect_event(&mut handle).await;
        assert_eq!(event["reason"], "Paused");
        let status = expect_status(&mut handle, &tc).await;
        assert_eq!(status["phase"], "Paused");
        assert_eq!(condition(&status, "Progressing")["reason"], "Paused");
    };
    let (action, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    assert_eq!(
        action.expect("reconciled"),
        Action::requeue(SETTLED_REQUEUE)
    );
    expect_no_more(ctx, handle).await;
}

#[tokio::test]
async fn a_refused_apply_is_degraded_with_a_warning_and_backs_off() {
    let (ctx, mut handle) = context();
    let tc = coordinator(json!({}), &[FINALIZER]);
    let server = async {
        let ns = "/api/v1/namespaces/payments";
        let (_, send) = expect(&mut handle, Method::GET, STATEFUL_SET).await;
        not_found(send);
        let (_, send) = expect(
            &mut handle,
            Method::GET,
            &format!("{ns}/secrets/tc-admin-token"),
        )
        .await;
        not_found(send);
        expect_apply(&mut handle, &format!("{ns}/secrets/tc-admin-token")).await;
        expect_apply(&mut handle, &format!("{ns}/configmaps/tc-config")).await;
        expect_apply(&mut handle, &format!("{ns}/services/tc-peers")).await;
        expect_apply(&mut handle, &format!("{ns}/services/tc")).await;
        let (_, send) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/apps/v1/namespaces/payments/statefulsets/tc",
        )
        .await;
        let refusal = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "StatefulSet.apps \"tc\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            "reason": "Invalid", "code": 422,
        });
        respond(send, StatusCode::UNPROCESSABLE_ENTITY, &refusal);
        let event = expect_event(&mut handle).await;
        assert_eq!(
            (&event["type"], &event["reason"]),
            (&json!("Warning"), &json!("ApplyFailed"))
        );
        let status = expect_status(&mut handle, &tc).await;
        let degraded = condition(&status, "Degraded");
        assert_eq!(degraded["reason"], "ApplyFailed");
        let message = degraded["message"].as_str().expect("message");
        assert!(message.starts_with("apply StatefulSet tc: "), "{message}");
        assert!(message.contains("Forbidden"), "{message}");
    };
    let (result, ()) = tokio::join!(reconcile(Arc::new(tc.clone()), ctx.clone()), server);
    let error = result.expect_err("the failure is returned");
    assert_eq!(
        error_policy(Arc::new(tc), &error, ctx.clone()),
        Action::requeue(ERROR_REQUEUE)
    );
    expect_no_more(ctx, handle).await;
}
