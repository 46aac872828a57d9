//! Resources for the operator's unit tests.

use serde_json::{Value, json};
use txmesh_crds::TransactionCoordinator;

/// `payments/tc` as the API server would hand it over: `metadata` over the name and
/// namespace, `spec` over a minimal spec (the image).
pub(crate) fn coordinator(metadata: Value, spec: Value) -> TransactionCoordinator {
    let merged = |mut base: Value, over: Value| {
        if let (Some(base), Some(over)) = (base.as_object_mut(), over.as_object()) {
            base.extend(over.clone());
        }
        base
    };
    serde_json::from_value(json!({
        "apiVersion": "txmesh.io/v1alpha1",
        "kind": "TransactionCoordinator",
        "metadata": merged(json!({"name": "tc", "namespace": "payments"}), metadata),
        "spec": merged(json!({"image": "txmesh/txmesh:0.1.0"}), spec),
    }))
    .expect("valid resource")
}
