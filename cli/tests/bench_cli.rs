//! `txmesh bench` as a binary: short runs against the coordinators (and the sidecar) they
//! start commit transactions without errors and leave no child process behind.

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Startup (leader election), a second or two of load and shutdown take a few seconds even in
/// a debug build on a busy machine; beyond this the run is stuck.
const BOUND: Duration = Duration::from_secs(120);

fn bench_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--duration", "1"]);
    run_json(&all)
}

/// `txmesh bench <args> --warmup 0 --json`, which must succeed.
fn run_json(args: &[&str]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend(["--warmup", "0", "--json"]);
    let run = common::txmesh(&all, BOUND);
    assert!(
        run.status.success(),
        "exit {}; stderr:\n{}",
        run.status,
        run.stderr
    );
    serde_json::from_str(&run.stdout).expect("one JSON object")
}

/// A report's checks: something committed, nothing failed, the coordinator's CPU measured and
/// its process gone.
fn assert_clean_run(report: &Value) {
    assert_eq!(report["workload"], "tcc");
    assert!(
        report["committed"].as_u64().expect("committed") > 0,
        "{report}"
    );
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().expect("p99") > 0.0);
    assert!(
        report["coordinator_cpu_ms_per_tx"].as_f64().is_some(),
        "{report}"
    );
    let pid = report["coordinator_pid"].as_u64().expect("the child's pid");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the child coordinator {pid} is still there"
    );
}

#[test]
fn a_short_tcc_run_commits_and_reaps_its_coordinator() {
    let report = bench_json(&[
        "coordinator",
        "--workload",
        "tcc",
        "--connections",
        "1",
        "--concurrency",
        "4",
    ]);
    assert_clean_run(&report);
}

#[test]
fn the_sidecar_bench_runs_both_paths_and_measures_the_sidecar() {
    let report = bench_json(&["sidecar", "--concurrency", "4"]);
    assert_clean_run(&report["direct"]);
    assert_clean_run(&report["via_sidecar"]);
    assert!(
        report["via_sidecar"]["sidecar_cpu_ms_per_tx"]
            .as_f64()
            .is_some(),
        "{report}"
    );
    assert!(
        report["direct"]["sidecar_cpu_ms_per_tx"].is_null(),
        "{report}"
    );
    assert!(report["added_ms"]["p50"].as_f64().is_some(), "{report}");
}

#[test]
fn failover_mode_kills_leaders_and_loses_no_acknowledged_commit() {
    let report = run_json(&[
        "coordinator",
        "--nodes",
        "3",
        "--kill-leader-every",
        "2",
        "--duration",
        "5",
        "--connections",
        "2",
        "--concurrency",
        "8",
    ]);
    let failover = &report["failover"];
    let kills = failover["kills"].as_array().expect("kills");
    assert!(!kills.is_empty(), "{report}");
    for kill in kills {
        assert!((1..=3).contains(&kill["node"].as_u64().expect("node")));
        assert!(kill["election_ms"].as_f64().expect("election") > 0.0);
    }
    let commits = failover["acknowledged_commits"].as_u64().expect("checked");
    assert!(commits > 0, "{report}");
    assert_eq!(failover["lost_acknowledged"], 0, "{report}");
    assert!(failover["gap_ms"]["max"].as_f64().is_some(), "{report}");
}
