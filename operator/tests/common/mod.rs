//! What the golden tests share: where their files are, and the schema check.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version objects must be valid for: the oldest the operator supports.
const KUBERNETES_VERSION: &str = "1.30.0";

/// `operator/tests`.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// The names of the `*.yaml` files in `dir`, without the extension, sorted.
pub fn yaml_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").file_name())
        .filter_map(|name| name.to_str()?.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Compares `render(fixture)` with `golden/<fixture>.yaml` for every fixture, or writes the
/// golden files when `TXMESH_BLESS` is set; `test` is the test target that blesses them.
pub fn check_golden(
    fixtures: &[String],
    golden: &Path,
    test: &str,
    render: impl Fn(&str) -> String,
) {
    assert!(!fixtures.is_empty(), "no fixtures");
    let bless = std::env::var_os("TXMESH_BLESS").is_some();
    let mut stale = Vec::new();
    for fixture in fixtures {
        let rendered = render(fixture);
        let path = golden.join(format!("{fixture}.yaml"));
        if bless {
            std::fs::write(&path, &rendered).expect("write golden file");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(rendered.as_str()) {
            stale.push(fixture);
        }
    }
    assert!(
        stale.is_empty(),
        "output differs from {} for {stale:?}; if the change is intended, run\n  \
         TXMESH_BLESS=1 cargo test -p txmesh-operator --test {test}\nand review the diff",
        golden.display()
    );
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
