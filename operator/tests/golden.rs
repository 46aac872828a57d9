//! Golden tests of the build functions: each `tests/fixtures/<name>.yaml` resource builds the
//! objects in `tests/golden/<name>.yaml`, and every one of those objects is valid against the
//! Kubernetes 1.30 schemas.
//!
//! After an intended change, regenerate the golden files with
//! `TXMESH_BLESS=1 cargo test -p txmesh-operator --test golden` and review the diff.

mod common;

use std::path::PathBuf;

use serde::Serialize;
use txmesh_crds::TransactionCoordinator;
use txmesh_operator::build::{BuildConfig, Pods, admin_token_secret, desired};

fn dir(name: &str) -> PathBuf {
    common::tests_dir().join(name)
}

/// The fixture names, sorted.
fn fixtures() -> Vec<String> {
    common::yaml_names(&dir("fixtures"))
}

fn document(object: &impl Serialize) -> String {
    format!(
        "---\n{}",
        serde_yaml::to_string(object).expect("objects serialize")
    )
}

/// Every object built from the fixture, as one YAML stream.
fn build(fixture: &str) -> String {
    let path = dir("fixtures").join(format!("{fixture}.yaml"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let tc: TransactionCoordinator = serde_yaml::from_str(&text).expect("fixture parses");
    let objects =
        desired(&tc, &BuildConfig::default(), Pods::initial(&tc)).expect("fixture builds");
    let mut out = format!(
        "# Built from tests/fixtures/{fixture}.yaml; regenerate with\n\
         # TXMESH_BLESS=1 cargo test -p txmesh-operator --test golden\n"
    );
    out += &document(&admin_token_secret(&tc, "golden-admin-token").expect("secret builds"));
    out += &document(&objects.config_map);
    out += &document(&objects.peer_service);
    out += &document(&objects.client_service);
    out += &document(&objects.stateful_set);
    if let Some(pdb) = &objects.pod_disruption_budget {
        out += &document(pdb);
    }
    if let Some(monitor) = &objects.service_monitor {
        out += &document(monitor);
    }
    out
}

#[test]
fn fixtures_build_the_golden_objects() {
    common::check_golden(&fixtures(), &dir("golden"), "golden", build);
}

/// The golden files have a golden file for each fixture and nothing else.
#[test]
fn every_golden_file_has_a_fixture() {
    assert_eq!(common::yaml_names(&dir("golden")), fixtures());
}

/// Every built object passes `kubernetes-validate --strict` (the ServiceMonitor, a custom
/// kind, is skipped, and some fixture must build one).
#[test]
fn golden_objects_are_valid_kubernetes_objects() {
    let files: Vec<PathBuf> = fixtures()
        .iter()
        .map(|fixture| dir("golden").join(format!("{fixture}.yaml")))
        .collect();
    if let Some(skipped) = common::validate(&files, &["ServiceMonitor"]) {
        assert!(skipped > 0, "no fixture builds a ServiceMonitor");
    }
}
