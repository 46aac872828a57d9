//! The soak behind `make soak` (ignored by `make test`): a three-node group on loopback whose
//! leader is killed with SIGKILL 20 times under a concurrent workload, each time restarted on
//! its data directory once a successor leads. Nothing acknowledged is lost — no begin, branch
//! registration or decision — every transaction in flight ends as it was acknowledged, and
//! phase two reaches the fenced app logic of each branch exactly once (see
//! [`txmesh_e2e::Workload::verify`]).

use tempfile::TempDir;
use txmesh_e2e::{Group, Workload};

const KILLS: u32 = 20;
/// Transactions decided between kills, so that every kill lands under load.
const BETWEEN_KILLS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of several minutes: run it with `make soak`"]
async fn twenty_leader_kills_lose_nothing_acknowledged() {
    let dir = TempDir::new().expect("temp dir");
    let mut group = Group::start(dir.path(), 3).await;
    let workload = Workload::new(group.seata_addrs());
    let running = workload.start(12);
    for kill in 1..=KILLS {
        workload.until_progress(BETWEEN_KILLS).await;
        let leader = group.leader().await;
        group.node_mut(leader).kill9();
        let successor = group.leader_other_than(leader).await;
        workload.until_progress(1).await;
        group.node_mut(leader).restart();
        group.until_ready(leader).await;
        eprintln!(
            "kill {kill:>2}: node {leader} killed, node {successor} leads, {} decided so far",
            workload.decided()
        );
    }
    workload.until_progress(BETWEEN_KILLS).await;
    running.stop().await;
    let report = workload.verify().await;
    eprintln!("soak: {KILLS} leader kills, {report:?}");
    assert!(
        report.decided < report.transactions,
        "some transactions were cut off by a kill: {report:?}"
    );
}
