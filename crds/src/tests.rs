use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion;
use kube::CustomResourceExt;
use kube::core::cel::validate_cel_update;
use serde_json::json;

use super::*;

/// The chart's copy of the CRD, relative to this crate.
const CHART_CRD: &str = "../charts/txmesh/crds/transactioncoordinators.yaml";

#[test]
fn the_chart_crd_is_generated_from_the_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CHART_CRD);
    let generated = crd_yaml().expect("renders");
    if std::env::var_os("TXMESH_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the chart's CRD");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with\n  cargo run -p txmesh -- crd > charts/txmesh/crds/transactioncoordinators.yaml\n\
         or\n  TXMESH_BLESS=1 cargo test -p txmesh-crds",
        path.display()
    );
}

fn version() -> CustomResourceDefinitionVersion {
    let crd = TransactionCoordinator::crd();
    assert_eq!(crd.spec.group, GROUP);
    assert_eq!(crd.spec.scope, "Namespaced");
    let [version] = <[_; 1]>::try_from(crd.spec.versions).expect("one version");
    version
}

#[test]
fn kubectl_shows_replicas_ready_leader_status_and_age() {
    let columns = version().additional_printer_columns.expect("columns");
    let columns: Vec<_> = columns
        .iter()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Replicas", ".spec.replicas"),
            ("Ready", ".status.readyReplicas"),
            ("Leader", ".status.leader"),
            ("Status", ".status.phase"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn status_and_scale_subresources_are_served() {
    let subresources = version().subresources.expect("subresources");
    assert!(subresources.status.is_some());
    let scale = subresources.scale.expect("scale");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

#[test]
fn a_minimal_spec_gets_the_documented_defaults() {
    let tc: TransactionCoordinator = serde_json::from_value(json!({
        "apiVersion": "txmesh.io/v1alpha1",
        "kind": "TransactionCoordinator",
        "metadata": {"name": "tc"},
        "spec": {"image": "txmesh/txmesh:0.1.0"},
    }))
    .expect("valid");
    assert_eq!(tc.spec.replicas, 3);
    assert_eq!(tc.spec.storage.size.0, "1Gi");
    assert_eq!(tc.spec.seata.port, 8091);
    assert!(tc.spec.pdb.enabled);
    assert!(!tc.spec.metrics.service_monitor.enabled);
    assert!(!tc.spec.paused);
}

/// A resource with the given spec fields over a minimal one.
fn coordinator(spec: serde_json::Value) -> TransactionCoordinator {
    let mut base = json!({"image": "txmesh/txmesh:0.1.0"});
    if let (Some(base), Some(spec)) = (base.as_object_mut(), spec.as_object()) {
        base.extend(spec.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "txmesh.io/v1alpha1",
        "kind": "TransactionCoordinator",
        "metadata": {"name": "tc", "namespace": "payments"},
        "spec": base,
    }))
    .expect("valid")
}

#[test]
fn replicas_must_be_odd() {
    let old = coordinator(json!({"replicas": 3}));
    for odd in [1, 3, 5, 9] {
        let new = coordinator(json!({"replicas": odd}));
        assert!(validate_cel_update(&new, &old).is_ok(), "{odd}");
    }
    for even in [2, 4] {
        let new = coordinator(json!({"replicas": even}));
        let errors = validate_cel_update(&new, &old).expect_err("even is refused");
        assert!(
            format!("{errors:?}").contains("replicas must be odd"),
            "{errors:?}"
        );
    }
}

#[test]
fn the_storage_class_cannot_change() {
    let fast = json!({"storage": {"size": "1Gi", "storageClassName": "fast"}});
    let slow = json!({"storage": {"size": "1Gi", "storageClassName": "slow"}});
    let default_class = json!({"storage": {"size": "1Gi"}});
    assert!(validate_cel_update(&coordinator(fast.clone()), &coordinator(fast.clone())).is_ok());
    assert!(
        validate_cel_update(
            &coordinator(default_class.clone()),
            &coordinator(default_class.clone())
        )
        .is_ok()
    );
    for (old, new) in [
        (&fast, &slow),
        (&fast, &default_class),
        (&default_class, &fast),
    ] {
        let errors = validate_cel_update(&coordinator(new.clone()), &coordinator(old.clone()))
            .expect_err("a class change is refused");
        assert!(
            format!("{errors:?}").contains("storageClassName is immutable"),
            "{errors:?}"
        );
    }
}
