//! Partitions made by the kernel: a three-node group in network namespaces of its own
//! ([`NetworkLab`], which needs root, as CI has) under load. The leader's link to the group is
//! cut; it stops saying it is ready within twice the election timeout, the majority carries
//! on, and after healing it catches up. Then the new leader is made deaf (it sends, but hears
//! nothing back): the same. In the end every node has applied the same log and agrees on every
//! transaction.

use std::time::{Duration, Instant};

use tempfile::TempDir;
use txmesh_e2e::{NetworkLab, Workload, http_get};

/// Transactions decided between steps, so that every step happens under load.
const BETWEEN_STEPS: usize = 20;
/// Twice the coordinators' default longest election timeout.
const NOT_READY_WITHIN: Duration = Duration::from_millis(800);
const BOUND: Duration = Duration::from_secs(30);

/// Waits until node `id` stops answering `/readyz` with 200; how long that took since `since`.
async fn until_not_ready(lab: &NetworkLab, id: u64, since: Instant) -> (Duration, String) {
    let addr = lab.http_addr(id);
    loop {
        let answer = tokio::task::spawn_blocking(move || http_get(addr, "/readyz"))
            .await
            .expect("probe ran");
        if let Some((status, body)) = answer
            && status != 200
        {
            return (since.elapsed(), format!("{status} {body}"));
        }
        assert!(
            since.elapsed() < BOUND,
            "node {id} still says it is ready {BOUND:?} after it was cut off"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_stops_saying_it_is_ready_and_the_group_converges_after_healing() {
    let dir = TempDir::new().expect("temp dir");
    let lab = NetworkLab::start(dir.path(), 3);
    let views = lab.views();
    let workload = Workload::new((1..=3).map(|id| lab.seata_addr(id).to_string()).collect());
    let running = workload.start(8);
    workload.until_progress(BETWEEN_STEPS).await;

    let leader = views.leader_where(|_| true).await;
    let cut = Instant::now();
    lab.isolate(leader);
    let (took, answer) = until_not_ready(&lab, leader, cut).await;
    eprintln!("node {leader} cut off; /readyz after {took:?}: {answer}");
    assert!(
        took < NOT_READY_WITHIN,
        "node {leader} said it was ready for {took:?} after it was cut off"
    );
    let successor = views.leader_where(|id| id != leader).await;
    workload.until_progress(BETWEEN_STEPS).await;
    eprintln!("node {successor} leads the majority; the workload carries on");
    lab.heal();
    views.until_ready(leader).await;
    eprintln!("healed; node {leader} caught up");

    let deaf = views.leader_where(|_| true).await;
    let muted = Instant::now();
    lab.deafen(deaf);
    let (took, answer) = until_not_ready(&lab, deaf, muted).await;
    eprintln!("node {deaf} deaf; /readyz after {took:?}: {answer}");
    let successor = views.leader_where(|id| id != deaf).await;
    workload.until_progress(BETWEEN_STEPS).await;
    eprintln!("node {successor} leads while node {deaf} cannot hear");
    lab.heal();

    workload.until_progress(BETWEEN_STEPS).await;
    running.stop().await;
    let report = workload.verify().await;
    let applied = views.until_converged().await;
    let xids = workload.xids();
    views.assert_agree_on(&xids).await;
    eprintln!(
        "converged at index {applied}; {} transactions agree; {report:?}",
        xids.len()
    );
}
