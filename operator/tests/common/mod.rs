//! What the golden tests share: where their files are, and the schema check.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version objects must be valid for: the oldest the operator supports.
const KUBERNETES_VERSION: &str = "1.30.0";

/// `operator/tests`.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Runs `kubernetes-validate --strict` from the Python environment `make deps` creates
/// (`$TXMESH_VENV`) on `files`, and asserts that every object passed, but those of the
/// `custom` kinds, which it has no schema for; how many of those it skipped. `None` when
/// `TXMESH_VENV` is not set (`make test` sets it).
pub fn validate(files: &[PathBuf], custom: &[&str]) -> Option<usize> {
    let Some(venv) = std::env::var_os("TXMESH_VENV") else {
        eprintln!("TXMESH_VENV is not set: schema validation skipped (`make test` runs it)");
        return None;
    };
    let validator = Path::new(&venv).join("bin").join("kubernetes-validate");
    assert!(
        validator.exists(),
        "{} is missing: run `make deps` to create the Python environment",
        validator.display()
    );
    let output = Command::new(&validator)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!("kubernetes-validate:\n{stdout}{stderr}");
    assert!(output.status.success(), "{report}");
    // It exits 0 even when an object fails: read its verdict on each object instead.
    let documents: usize = files
        .iter()
        .map(|file| std::fs::read_to_string(file).expect("golden file"))
        .map(|text| text.matches("\n---\n").count())
        .sum();
    let skipped = stdout
        .lines()
        .filter(|line| {
            line.starts_with("WARN")
                && custom
                    .iter()
                    .any(|kind| line.contains(&format!("schema for kind {kind}")))
        })
        .count();
    let passed = stdout
        .lines()
        .filter(|line| line.starts_with("INFO") && line.contains(" passed for resource "))
        .count();
    assert_eq!(passed + skipped, documents, "{report}");
    Some(skipped)
}
