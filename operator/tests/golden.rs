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
    let mut names: Vec<String> = std::fs::read_dir(dir("fixtures"))
        .expect("tests/fixtures")
        .map(|entry| entry.expect("directory entry").file_name())
        .filter_map(|name| name.to_str()?.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures");
    names
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
    let bless = std::env::var_os("TXMESH_BLESS").is_some();
    let mut stale = Vec::new();
    for fixture in fixtures() {
        let built = build(&fixture);
        let path = dir("golden").join(format!("{fixture}.yaml"));
        if bless {
            std::fs::write(&path, &built).expect("write golden file");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(built.as_str()) {
            stale.push(fixture);
        }
    }
    assert!(
        stale.is_empty(),
        "built objects differ from tests/golden for {stale:?}; if the change is intended, run\n  \
         TXMESH_BLESS=1 cargo test -p txmesh-operator --test golden\nand review the diff"
    );
}

/// The golden files have a golden file for each fixture and nothing else.
#[test]
fn every_golden_file_has_a_fixture() {
    let mut golden: Vec<String> = std::fs::read_dir(dir("golden"))
        .expect("tests/golden")
        .filter_map(|entry| {
            let name = entry.expect("directory entry").file_name();
            name.to_str()?.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    golden.sort();
    assert_eq!(golden, fixtures());
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
