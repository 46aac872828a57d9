//! The injector's decision on whole admission requests: the patch applied to the pod, the
//! pods left alone, and the refusals.

use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};

use super::*;

fn config() -> InjectorConfig {
    InjectorConfig {
        sidecar_image: "txmesh/txmesh:0.1.0".into(),
        native_sidecar: true,
        resources: ResourceRequirements::default(),
        default_coordinator: None,
    }
}

/// The injector's settings with a default coordinator, so that bare pods are injectable: what
/// the webhook and the watchdog tests serve with.
pub(super) fn serving_config() -> std::sync::Arc<InjectorConfig> {
    std::sync::Arc::new(InjectorConfig {
        default_coordinator: Some("txmesh/tc".into()),
        ..config()
    })
}

/// An AdmissionReview of `operation` on `pod` in namespace `shop`, as the API server sends it.
pub(super) fn review_json(operation: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "name": "",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": false,
        },
    })
}

fn request(operation: &str, pod: &Value) -> AdmissionRequest<Pod> {
    let review: AdmissionReview<Pod> =
        serde_json::from_value(review_json(operation, pod)).expect("AdmissionReview");
    review.try_into().expect("a request")
}

fn orders(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "orders-7d9f-",
            "labels": {"app.kubernetes.io/name": "orders"},
            "annotations": annotations,
        },
        "spec": {
            "initContainers": [{"name": "migrate", "image": "orders:1"}],
            "containers": [
                {"name": "app", "image": "orders:1", "env": [{"name": "LOG", "value": "info"}]},
                {"name": "metrics", "image": "exporter:1"},
            ],
            "volumes": [{"name": "config", "configMap": {"name": "orders"}}],
        },
    })
}

/// The pod after the response's patch.
fn patched(pod: &Value, response: &AdmissionResponse) -> Value {
    assert!(response.allowed, "refused: {:?}", response.result);
    let mut pod = pod.clone();
    if let Some(bytes) = &response.patch {
        let patch: json_patch::Patch = serde_json::from_slice(bytes).expect("a JSON patch");
        json_patch::patch(&mut pod, &patch).expect("the patch applies");
    }
    pod
}

fn names(containers: &Value) -> Vec<&str> {
    containers
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|var| var["name"] == name)?["value"]
        .as_str()
}

#[test]
fn a_pod_that_asks_gets_a_native_sidecar_before_its_own_init_containers() {
    let pod = orders(json!({"txmesh.io/inject": "true", "txmesh.io/coordinator": "tc"}));
    let response = review(Route::Pod, &request("CREATE", &pod), &config());
    let pod = patched(&pod, &response);
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["txmesh-sidecar", "migrate"]
    );
    assert_eq!(names(&pod["spec"]["containers"]), ["app", "metrics"]);
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(env(sidecar, "TXMESH_COORDINATOR_SERVICE"), Some("shop/tc"));
    assert_eq!(env(sidecar, "TXMESH_APPLICATION_ID"), Some("orders"));
    // Every other container, the init container included, learns where the sidecar is.
    let endpoint = Some("http://127.0.0.1:50051");
    assert_eq!(
        env(&pod["spec"]["initContainers"][1], "TXMESH_GRPC_ENDPOINT"),
        endpoint
    );
    assert_eq!(
        env(&pod["spec"]["containers"][0], "TXMESH_GRPC_ENDPOINT"),
        endpoint
    );
    assert_eq!(env(&pod["spec"]["containers"][0], "LOG"), Some("info"));
    assert_eq!(
        env(&pod["spec"]["containers"][1], "TXMESH_GRPC_ENDPOINT"),
        endpoint
    );
    assert_eq!(
        names(&pod["spec"]["volumes"]),
        ["config", "txmesh-sidecar-data", "txmesh-sidecar-token"]
    );
    assert_eq!(pod["metadata"]["labels"]["txmesh.io/sidecar"], "injected");
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"],
        "orders"
    );
}

#[test]
fn an_ordinary_sidecar_container_is_appended_when_native_sidecars_are_off() {
    let pod = json!({
        "metadata": {"name": "orders", "annotations": {
            "txmesh.io/inject": "true", "txmesh.io/coordinator": "tc",
            "txmesh.io/application-id": "orders", "txmesh.io/native-sidecar": "false",
        }},
        "spec": {"containers": [{"name": "app", "image": "orders:1"}]},
    });
    let response = review(Route::Pod, &request("CREATE", &pod), &config());
    let pod = patched(&pod, &response);
    assert_eq!(names(&pod["spec"]["containers"]), ["app", "txmesh-sidecar"]);
    assert_eq!(pod["spec"].get("initContainers"), None);
    assert_eq!(pod["spec"]["containers"][1].get("restartPolicy"), None);
    assert_eq!(
        names(&pod["spec"]["volumes"]),
        ["txmesh-sidecar-data", "txmesh-sidecar-token"]
    );
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"txmesh.io/sidecar": "injected"})
    );
}

#[test]
fn a_container_that_sets_its_own_endpoint_keeps_it() {
    let mut pod = orders(json!({"txmesh.io/inject": "true", "txmesh.io/coordinator": "tc"}));
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "TXMESH_GRPC_ENDPOINT", "value": "unix:/run/txmesh.sock"}]);
    let response = review(Route::Pod, &request("CREATE", &pod), &config());
    let pod = patched(&pod, &response);
    assert_eq!(
        env(&pod["spec"]["containers"][0], "TXMESH_GRPC_ENDPOINT"),
        Some("unix:/run/txmesh.sock")
    );
}

#[test]
fn pods_that_do_not_ask_or_have_it_already_or_are_not_created_are_left_alone() {
    let silent = orders(json!({}));
    let declines = orders(json!({"txmesh.io/inject": "false"}));
    let asks = orders(json!({"txmesh.io/inject": "true", "txmesh.io/coordinator": "tc"}));
    let injected = patched(
        &asks,
        &review(Route::Pod, &request("CREATE", &asks), &config()),
    );
    let cases = [
        (Route::Pod, "CREATE", &silent),
        (Route::Namespace, "CREATE", &declines),
        (Route::Pod, "UPDATE", &asks),
        // Reinvoked after another webhook changed the pod: no second sidecar.
        (Route::Pod, "CREATE", &injected),
        (Route::Namespace, "CREATE", &injected),
    ];
    for (route, operation, pod) in cases {
        let response = review(route, &request(operation, pod), &config());
        assert!(response.allowed);
        assert_eq!(response.patch, None, "{route:?} {operation}");
    }
}

#[test]
fn in_a_labelled_namespace_every_pod_gets_one() {
    let pod = orders(json!({"txmesh.io/coordinator": "tc"}));
    let response = review(Route::Namespace, &request("CREATE", &pod), &config());
    let pod = patched(&pod, &response);
    assert_eq!(names(&pod["spec"]["initContainers"])[0], "txmesh-sidecar");
}

#[test]
fn a_pod_with_a_bad_annotation_is_refused_with_the_reason() {
    let pod = orders(
        json!({"txmesh.io/inject": "true", "txmesh.io/coordinator": "tc", "txmesh.io/grpc-port": "http"}),
    );
    let response = review(Route::Pod, &request("CREATE", &pod), &config());
    assert!(!response.allowed);
    assert_eq!(response.patch, None);
    assert_eq!(
        response.result.message,
        "txmesh sidecar injection: txmesh.io/grpc-port: \"http\" is not a port (1-65535)"
    );
}
