//! `txmesh bench coordinator` as a binary: a short TCC run against the child coordinator it
//! starts commits transactions without errors and leaves no coordinator process behind.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Startup (leader election), one second of load and shutdown take a few seconds even in a
/// debug build on a busy machine; beyond this the run is stuck.
const BOUND: Duration = Duration::from_secs(120);

#[test]
fn a_short_tcc_run_commits_and_reaps_its_coordinator() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_txmesh"))
        .args([
            "bench",
            "coordinator",
            "--workload",
            "tcc",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--connections",
            "1",
            "--concurrency",
            "4",
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("txmesh starts");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the benchmark did not finish within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("stdout");
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");

    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
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
