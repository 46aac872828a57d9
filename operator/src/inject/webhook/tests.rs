//! The webhook over real TLS on loopback: certificates from [`CertSet`], a rustls client
//! that trusts only the CA bundle, AdmissionReviews in and out.

use http_body_util::{BodyExt, Full};
use k8s_openapi::jiff::Timestamp;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;

use super::*;
use crate::inject::certs::CertSet;
use crate::inject::tests::{review_json, serving_config};

const SERVICE: &str = "txmesh-webhook.txmesh-system.svc";

/// The webhook serving `set` on a loopback port; its address and the served certificate.
async fn start(set: &CertSet) -> (SocketAddr, Arc<ServingCert>) {
    let cert = Arc::new(ServingCert::default());
    cert.set(&set.cert, &set.key).expect("certificate");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let serving = serve(
        listener,
        router(serving_config()),
        cert.clone(),
        std::future::pending(),
    );
    tokio::spawn(serving);
    (addr, cert)
}

/// POSTs `body` to `path` over TLS, trusting only the CAs in `bundle`; the status and body.
async fn post(
    addr: SocketAddr,
    bundle: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(ca.expect("PEM")).expect("a CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(SERVICE).expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::post(path)
        .header("host", SERVICE)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, bytes.to_bytes().to_vec()))
}

fn admission_review() -> Vec<u8> {
    let pod = json!({
        "metadata": {"generateName": "orders-", "labels": {"app": "orders"}},
        "spec": {"containers": [{"name": "app", "image": "orders:1"}]},
    });
    serde_json::to_vec(&review_json("CREATE", &pod)).expect("JSON")
}

fn generate() -> CertSet {
    CertSet::generate(&[SERVICE.to_owned()], Timestamp::now(), None).expect("certificates")
}

#[tokio::test]
async fn a_labelled_namespaces_pod_gets_a_patch_over_tls() {
    let set = generate();
    let (addr, _) = start(&set).await;
    let (status, body) = post(addr, &set.bundle, "/inject/namespace", admission_review())
        .await
        .expect("TLS with the CA bundle");
    assert_eq!(status, StatusCode::OK);
    let review: Value = serde_json::from_slice(&body).expect("JSON");
    let response = &review["response"];
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    // kube writes the patch's bytes as a JSON array (Go's []byte decodes from either form).
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).expect("patch bytes");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
    let added = serde_json::to_value(&patch).expect("JSON");
    assert!(
        added
            .as_array()
            .expect("operations")
            .iter()
            .any(|op| op["path"] == "/spec/initContainers"
                && op["value"][0]["name"] == "txmesh-sidecar"),
        "{added}"
    );

    // The same pod through the other webhook did not ask: no patch.
    let (_, body) = post(addr, &set.bundle, "/inject/pod", admission_review())
        .await
        .expect("TLS");
    let review: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"].get("patch"), None);
}

#[tokio::test]
async fn a_body_that_is_not_an_admission_review_is_a_400_and_the_server_goes_on() {
    let set = generate();
    let (addr, _) = start(&set).await;
    let (status, body) = post(addr, &set.bundle, "/inject/pod", b"{\"kind\":".to_vec())
        .await
        .expect("TLS");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = String::from_utf8(body).expect("text");
    assert!(
        message.starts_with("not an AdmissionReview of a Pod: "),
        "{message}"
    );
    let (status, _) = post(addr, &set.bundle, "/inject/pod", admission_review())
        .await
        .expect("TLS");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn clients_trust_it_only_through_its_ca_and_a_renewed_certificate_is_served_at_once() {
    let set = generate();
    let (addr, cert) = start(&set).await;
    let stranger = generate();
    let refused = post(addr, &stranger.ca, "/inject/pod", admission_review()).await;
    assert!(refused.is_err(), "a client trusting another CA connected");

    // Renewed: the new bundle holds both CAs, so clients trust old and new alike.
    let renewed = CertSet::generate(&[SERVICE.to_owned()], Timestamp::now(), Some(&set))
        .expect("certificates");
    assert!(cert.set(&renewed.cert, &renewed.key).expect("certificate"));
    post(addr, &renewed.ca, "/inject/pod", admission_review())
        .await
        .expect("the new certificate is served");
    post(addr, &renewed.bundle, "/inject/pod", admission_review())
        .await
        .expect("the bundle trusts it");
    let stale = post(addr, &set.ca, "/inject/pod", admission_review()).await;
    assert!(stale.is_err(), "the old certificate is still served");
}
