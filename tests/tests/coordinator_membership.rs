//! Operations under load on a three-node group, as the operator performs them through the
//! admin API: a rolling restart, and growing to five voters and back. Nothing acknowledged is
//! lost (see [`txmesh_e2e::Workload::verify`]). Catching up from a snapshot is covered by
//! coordinator/tests/cluster.rs.

use tempfile::TempDir;
use txmesh_e2e::{Group, Workload};

/// Transactions decided between steps, so that every step happens under load.
const BETWEEN_STEPS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let mut group = Group::start(dir.path(), 3).await;
    let workload = Workload::new(group.seata_addrs());
    let running = workload.start(8);
    for id in 1..=3 {
        workload.until_progress(BETWEEN_STEPS).await;
        // As the operator does: leadership leaves a node before it restarts.
        group.move_leadership_off(id).await;
        group.node_mut(id).terminate();
        group.node_mut(id).restart();
        group.until_ready(id).await;
    }
    workload.until_progress(BETWEEN_STEPS).await;
    running.stop().await;
    let report = workload.verify().await;
    assert!(report.transactions >= 4 * BETWEEN_STEPS, "{report:?}");
    assert_eq!(group.voters().await, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_to_five_voters_and_back_under_load_loses_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let mut group = Group::start(dir.path(), 3).await;
    group.prepare(4);
    group.prepare(5);
    // The clients know every node, as they would through discovery.
    let workload = Workload::new(group.seata_addrs());
    let running = workload.start(8);
    for id in [4, 5] {
        workload.until_progress(BETWEEN_STEPS).await;
        group.start_node(id);
        group.add_learner(id).await;
        group.promote(id).await;
    }
    assert_eq!(group.voters().await, [1, 2, 3, 4, 5]);
    for id in [5, 4] {
        workload.until_progress(BETWEEN_STEPS).await;
        group.move_leadership_off(id).await;
        group.remove(id).await;
        group.node_mut(id).terminate();
    }
    workload.until_progress(BETWEEN_STEPS).await;
    assert_eq!(group.voters().await, [1, 2, 3]);
    running.stop().await;
    let report = workload.verify().await;
    assert!(report.transactions >= 5 * BETWEEN_STEPS, "{report:?}");
}
