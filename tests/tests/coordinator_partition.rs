//! A partition that isolates the leader of a three-node group under load: its Raft traffic
//! goes through proxies in the test, which cut it off from the other two. The isolated node
//! acknowledges nothing new and, once its lease is over, turns clients away; the majority
//! elects a leader and carries on, and once healed every node applies the same log and
//! reports the same outcome for every transaction.

use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use txmesh_e2e::{Group, Workload};
use txmesh_seata::client::{ClientConfig, NoResources, SeataClient};
use txmesh_seata::message::GlobalBeginRequest;
use txmesh_seata::{Message, TransactionExceptionCode as Code};

/// Transactions decided between steps, so that every step happens under load.
const BETWEEN_STEPS: usize = 20;
/// Begins sent to the isolated leader.
const BEGINS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_acknowledges_nothing_and_the_majority_carries_on() {
    let dir = TempDir::new().expect("temp dir");
    let group = Group::start_partitionable(dir.path(), 3).await;
    let workload = Workload::new(group.seata_addrs());
    let running = workload.start(8);
    workload.until_progress(BETWEEN_STEPS).await;

    let isolated = group.leader().await;
    let config = ClientConfig {
        application_id: "e2e-isolated-tm".into(),
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    };
    let addr = group.node(isolated).seata_addr().to_string();
    let tm = SeataClient::connect(&addr, config, Arc::new(NoResources))
        .await
        .expect("connect to the leader");
    tm.register_tm().await.expect("registered");
    group.isolate(isolated);
    let mut begins = tokio::task::JoinSet::new();
    for _ in 0..BEGINS {
        let begin = Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout: 60_000,
            transaction_name: "isolated".into(),
        });
        let tm = tm.clone();
        begins.spawn(async move { tm.call(begin).await });
    }
    for answer in begins.join_all().await {
        let acknowledged =
            matches!(&answer, Ok(Message::GlobalBeginResponse(r)) if r.result.is_success());
        assert!(
            !acknowledged,
            "the isolated node acknowledged a begin: {answer:?}"
        );
    }

    let successor = group.leader_other_than(isolated).await;
    // By now no quorum has answered the cut-off leader for longer than its lease: it turns
    // clients away at once, so they go to the new leader instead of waiting out a timeout.
    let begin = Message::GlobalBeginRequest(GlobalBeginRequest {
        timeout: 60_000,
        transaction_name: "isolated".into(),
    });
    let answer = tm.call(begin).await;
    assert!(
        matches!(&answer, Ok(Message::GlobalBeginResponse(r))
            if r.result.exception_code == Code::NotRaftLeader),
        "the cut-off leader still takes requests: {answer:?}"
    );
    tm.close();
    workload.until_progress(BETWEEN_STEPS).await;
    eprintln!("node {isolated} cut off; node {successor} leads; the workload carries on");

    group.heal();
    workload.until_progress(BETWEEN_STEPS).await;
    running.stop().await;
    let report = workload.verify().await;
    let applied = group.until_converged().await;
    let xids = workload.xids();
    group.assert_agree_on(&xids).await;
    eprintln!(
        "converged at index {applied}; {} statuses agree; {report:?}",
        xids.len()
    );
}
