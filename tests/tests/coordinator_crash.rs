//! kill -9 the coordinator at random moments under a concurrent workload and restart it on
//! the same data directory, several times: nothing acknowledged is lost (see
//! [`txmesh_e2e::Workload::verify`]).

use std::time::Duration;

use tempfile::TempDir;
use txmesh_e2e::{CoordinatorProcess, Workload};

const KILLS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_outcomes_survive_kill_9() {
    let dir = TempDir::new().expect("temp dir");
    let mut coordinator = CoordinatorProcess::start(dir.path());
    let workload = Workload::new(vec![coordinator.seata_addr().to_string()]);
    let running = workload.start(12);
    for kill in 0..KILLS {
        // Pseudo-random moments, different each kill, without a randomness dependency.
        let pause = 300 + (kill * 7_919 + u64::from(std::process::id())) % 900;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        coordinator.kill9();
        tokio::time::sleep(Duration::from_millis(50)).await;
        coordinator.restart();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let report = workload.verify().await;
    assert!(report.transactions >= 20, "the workload ran: {report:?}");
    assert!(
        report.decided < report.transactions,
        "some transactions were cut off by a kill: {report:?}"
    );
}
