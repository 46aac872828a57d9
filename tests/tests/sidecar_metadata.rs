//! A sidecar that finds the coordinators as Seata 2.x raft-mode clients do: from the
//! `/metadata/v1/cluster` view of their HTTP ports. It serves transactions against a 3-node
//! group, and keeps serving them after the leader is killed.

use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use txmesh_api::participant::Sidecar;
use txmesh_api::reason::is_retryable;
use txmesh_api::v1::GlobalStatus;
use txmesh_e2e::{CoordinatorProcess, Coordinators, SidecarProcess, http_get};

/// An election, the sidecar's next read of the view and its reconnects fit well inside this.
const BOUND: Duration = Duration::from_secs(30);

/// The node that says it leads, among those running.
fn leader(nodes: &[CoordinatorProcess], running: &[bool]) -> Option<usize> {
    (0..nodes.len()).filter(|&i| running[i]).find(|&i| {
        http_get(nodes[i].http_addr(), "/api/v1/cluster")
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .is_some_and(|view| view["state"] == "leader")
    })
}

/// Begins and commits empty transactions until `count` have committed, retrying what the
/// sidecar calls retryable (an election in progress) until the bound.
async fn commit_transactions(sidecar: &Sidecar, count: usize) {
    let deadline = Instant::now() + BOUND;
    let mut committed = 0;
    while committed < count {
        let attempt = async {
            let xid = sidecar.begin("metadata", Duration::from_secs(30)).await?;
            sidecar.commit(&xid).await
        };
        match attempt.await {
            Ok(status) => {
                assert_eq!(status, GlobalStatus::Committed);
                committed += 1;
            }
            Err(status) if is_retryable(&status) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("a transaction failed: {status}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_view_leads_the_sidecar_to_the_leader_across_a_failover() {
    let dir = TempDir::new().expect("temp dir");
    let mut nodes = CoordinatorProcess::cluster(dir.path(), 3);
    let mut running = vec![true; nodes.len()];
    let http: Vec<_> = nodes.iter().map(CoordinatorProcess::http_addr).collect();
    let mut sidecar = SidecarProcess::start(
        &dir.path().join("sidecar"),
        "metadata-app",
        Coordinators::Metadata(http),
        false,
    );
    sidecar.wait_ready();
    let client = Sidecar::new(sidecar.endpoint()).expect("endpoint");
    commit_transactions(&client, 10).await;

    let deadline = Instant::now() + BOUND;
    let killed = loop {
        if let Some(index) = leader(&nodes, &running) {
            break index;
        }
        assert!(Instant::now() < deadline, "no leader within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    nodes[killed].kill9();
    running[killed] = false;
    commit_transactions(&client, 10).await;
    let deadline = Instant::now() + BOUND;
    while leader(&nodes, &running).is_none() {
        assert!(Instant::now() < deadline, "no new leader within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
