//! The certificate keeper against a mocked API server.

use http::{Method, StatusCode};
use k8s_openapi::jiff::SignedDuration;
use serde_json::{Value, json};

use super::*;
use crate::inject::certs::service_names;
use crate::mock_api::{self, expect, fail, not_found, respond};

const NAMESPACE: &str = "txmesh-system";
const NAME: &str = "txmesh-webhook";
const SECRETS: &str = "/api/v1/namespaces/txmesh-system/secrets";
const SECRET: &str = "/api/v1/namespaces/txmesh-system/secrets/txmesh-webhook";
const CONFIG: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/txmesh-sidecar-injector";

fn names() -> Vec<String> {
    service_names(NAMESPACE, "txmesh-webhook", "cluster.local")
}

/// One pass of the keeper against the API server `server` plays (it gets the mocked API and
/// hands it back with what it saw): the bundle to publish, whether a certificate is served,
/// and what the server saw. Afterwards no request may be left.
async fn pass<T, F>(server: impl FnOnce(mock_api::ApiHandle) -> F) -> (Option<String>, bool, T)
where
    F: Future<Output = (mock_api::ApiHandle, T)>,
{
    let (client, handle) = mock_api::client();
    let secrets = Api::namespaced(client, NAMESPACE);
    let cert = ServingCert::default();
    let dns_names = names();
    let (bundle, (handle, seen)) = tokio::join!(
        managed_pass(&secrets, NAME, NAMESPACE, &dns_names, &cert),
        server(handle)
    );
    drop(secrets);
    mock_api::expect_no_more(handle).await;
    (bundle.expect("no error"), cert.is_set(), seen)
}

/// A stored Secret holding `set`, at resourceVersion 7.
fn stored(set: &CertSet) -> Value {
    let mut secret = serde_json::to_value(set.to_secret(NAME, NAMESPACE)).expect("JSON");
    secret["metadata"]["resourceVersion"] = json!("7");
    secret
}

fn decoded(secret: &Value, key: &str) -> String {
    let bytes: ByteString = serde_json::from_value(secret["data"][key].clone()).expect("base64");
    String::from_utf8(bytes.0).expect("PEM")
}

/// A set made `days_ago` days ago.
fn made(days_ago: i64, names: &[String]) -> CertSet {
    let then = Timestamp::now() - SignedDuration::from_hours(24 * days_ago);
    CertSet::generate(names, then, None).expect("generated")
}

#[tokio::test]
async fn a_missing_secret_is_made_and_its_certificate_served() {
    let (bundle, served, secret) = pass(|mut handle| async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET).await;
        not_found(send);
        let (secret, send) = expect(&mut handle, Method::POST, SECRETS).await;
        assert_eq!(secret["type"], "kubernetes.io/tls");
        assert_eq!(
            secret["metadata"]["annotations"]["txmesh.io/dns-names"],
            "txmesh-webhook.txmesh-system.svc,txmesh-webhook.txmesh-system.svc.cluster.local"
        );
        respond(send, StatusCode::CREATED, &secret);
        (handle, secret)
    })
    .await;
    assert_eq!(bundle, Some(decoded(&secret, "ca.crt")), "a new CA alone");
    assert!(served);
}

#[tokio::test]
async fn a_current_secret_is_served_as_it_is() {
    let set = made(10, &names());
    let stored = stored(&set);
    let (bundle, served, ()) = pass(|mut handle| async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET).await;
        respond(send, StatusCode::OK, &stored);
        (handle, ())
    })
    .await;
    assert_eq!(bundle, Some(set.bundle));
    assert!(served);
}

#[tokio::test]
async fn a_set_due_for_renewal_is_replaced_at_the_version_read_and_its_ca_stays_trusted() {
    // 70 of 90 days gone: within the last 30.
    let old = made(70, &names());
    let stored = stored(&old);
    let (bundle, served, secret) = pass(|mut handle| async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET).await;
        respond(send, StatusCode::OK, &stored);
        let (secret, send) = expect(&mut handle, Method::PUT, SECRET).await;
        assert_eq!(secret["metadata"]["resourceVersion"], "7");
        respond(send, StatusCode::OK, &secret);
        (handle, secret)
    })
    .await;
    let new_ca = decoded(&secret, "ca.crt");
    assert_ne!(new_ca, old.ca);
    assert_eq!(
        bundle,
        Some(format!("{new_ca}{}", old.ca)),
        "the new CA, then the old one"
    );
    assert!(served);
}

#[tokio::test]
async fn a_set_for_other_names_is_replaced() {
    let other = made(1, &service_names(NAMESPACE, "old-webhook", "cluster.local"));
    let stored = stored(&other);
    let (bundle, _, secret) = pass(|mut handle| async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET).await;
        respond(send, StatusCode::OK, &stored);
        let (secret, send) = expect(&mut handle, Method::PUT, SECRET).await;
        respond(send, StatusCode::OK, &secret);
        (handle, secret)
    })
    .await;
    assert_eq!(
        bundle,
        Some(format!("{}{}", decoded(&secret, "ca.crt"), other.ca))
    );
}

#[tokio::test]
async fn losing_the_renewal_to_another_replica_serves_its_set_later() {
    let (bundle, served, ()) = pass(|mut handle| async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET).await;
        not_found(send);
        let (_, send) = expect(&mut handle, Method::POST, SECRETS).await;
        let message = "secrets \"txmesh-webhook\" already exists";
        fail(send, StatusCode::CONFLICT, "AlreadyExists", message);
        (handle, ())
    })
    .await;
    assert_eq!(bundle, None);
    assert!(!served);
}

#[tokio::test]
async fn the_ca_bundle_is_written_into_each_webhook_that_lacks_it() {
    let (client, mut handle) = mock_api::client();
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client);
    let bundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let encoded = serde_json::to_value(ByteString(bundle.as_bytes().to_vec())).expect("JSON");
    let config = |first: Value, second: Value| {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "txmesh-sidecar-injector"},
            "webhooks": [
                {"name": "pods.inject.txmesh.io", "clientConfig": {"caBundle": first},
                 "sideEffects": "None", "admissionReviewVersions": ["v1"]},
                {"name": "namespaces.inject.txmesh.io", "clientConfig": {"caBundle": second},
                 "sideEffects": "None", "admissionReviewVersions": ["v1"]},
            ],
        })
    };
    let server = async {
        // Reset by a helm upgrade: the second lacks it.
        let (_, send) = expect(&mut handle, Method::GET, CONFIG).await;
        respond(send, StatusCode::OK, &config(encoded.clone(), json!("")));
        let (patch, send) = expect(&mut handle, Method::PATCH, CONFIG).await;
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/webhooks/1/name", "value": "namespaces.inject.txmesh.io"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": encoded},
            ])
        );
        respond(
            send,
            StatusCode::OK,
            &config(encoded.clone(), encoded.clone()),
        );
        // Both have it: nothing to write.
        let (_, send) = expect(&mut handle, Method::GET, CONFIG).await;
        respond(
            send,
            StatusCode::OK,
            &config(encoded.clone(), encoded.clone()),
        );
    };
    let publishing = async {
        let first = publish_ca_bundle(&configs, "txmesh-sidecar-injector", bundle).await;
        let second = publish_ca_bundle(&configs, "txmesh-sidecar-injector", bundle).await;
        (first.expect("no error"), second.expect("no error"))
    };
    let (published, ()) = tokio::join!(publishing, server);
    assert_eq!(published, (true, false));
    drop(configs);
    mock_api::expect_no_more(handle).await;
}
