//! Golden tests of the sidecar injector: each pod in `tests/fixtures/pods/` comes out of an
//! admission review as the pod in `tests/golden/pods/` (the patch applied), and every one of
//! those is a valid Kubernetes 1.30 Pod.
//!
//! After an intended change, regenerate the golden files with
//! `TXMESH_BLESS=1 cargo test -p txmesh-operator --test injection` and review the diff.

mod common;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};
use txmesh_operator::inject::{InjectorConfig, Route, review};

fn dir(name: &str) -> PathBuf {
    common::tests_dir().join(name).join("pods")
}

/// The fixture names, sorted.
fn fixtures() -> Vec<String> {
    common::yaml_names(&dir("fixtures"))
}

fn config() -> InjectorConfig {
    InjectorConfig {
        sidecar_image: "txmesh/txmesh:0.1.0".into(),
        native_sidecar: true,
        resources: serde_json::from_value(json!({
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        }))
        .expect("resources"),
        default_coordinator: Some("txmesh/tc".into()),
    }
}

/// The fixture's pod as it is admitted into namespace `shop`, as YAML.
fn inject(fixture: &str) -> String {
    let text =
        std::fs::read_to_string(dir("fixtures").join(format!("{fixture}.yaml"))).expect("fixture");
    let mut pod: Value = serde_yaml::from_str(&text).expect("fixture parses");
    let admission: AdmissionReview<Pod> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e911857d-c318-11e8-bbad-025000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
        },
    }))
    .expect("AdmissionReview");
    let request: AdmissionRequest<Pod> = admission.try_into().expect("a request");
    let response = review(Route::Pod, &request, &config());
    assert!(response.allowed, "{fixture} refused: {:?}", response.result);
    let bytes = response.patch.expect("a patch");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
    json_patch::patch(&mut pod, &patch).expect("the patch applies");
    format!(
        "# Injected from tests/fixtures/pods/{fixture}.yaml; regenerate with\n\
         # TXMESH_BLESS=1 cargo test -p txmesh-operator --test injection\n---\n{}",
        serde_yaml::to_string(&pod).expect("YAML")
    )
}

#[test]
fn fixture_pods_come_out_as_the_golden_pods() {
    common::check_golden(&fixtures(), &dir("golden"), "injection", inject);
}

/// The golden pods have a fixture each, and nothing else.
#[test]
fn every_golden_pod_has_a_fixture() {
    assert_eq!(common::yaml_names(&dir("golden")), fixtures());
}

#[test]
fn injected_pods_are_valid_kubernetes_pods() {
    let files: Vec<PathBuf> = fixtures()
        .iter()
        .map(|fixture| dir("golden").join(format!("{fixture}.yaml")))
        .collect();
    common::validate(&files, &[]);
}
