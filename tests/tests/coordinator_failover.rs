//! A three-node group on loopback: the leader is killed with SIGKILL under a concurrent
//! workload, several times, and restarted as a follower. Writes move to the new leader and
//! nothing acknowledged is lost (see [`txmesh_e2e::Workload::verify`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use txmesh_e2e::CoordinatorProcess;
use txmesh_e2e::Workload;
use txmesh_seata::client::{ClientConfig, NoResources, SeataClient};
use txmesh_seata::message::GlobalEndRequest;
use txmesh_seata::{Message, TransactionExceptionCode};

const KILLS: u64 = 4;
const ELECTION_BOUND: Duration = Duration::from_secs(15);

/// The node that serves transaction requests: every node accepts a registration, but
/// followers answer requests with NotRaftLeader.
async fn leader(nodes: &[CoordinatorProcess]) -> usize {
    let deadline = Instant::now() + ELECTION_BOUND;
    loop {
        for (index, node) in nodes.iter().enumerate() {
            let addr = node.seata_addr().to_string();
            if let Ok(client) =
                SeataClient::connect(&addr, ClientConfig::default(), Arc::new(NoResources)).await
                && client.register_tm().await.is_ok()
            {
                let leads = serves_requests(&client).await;
                client.close();
                if leads {
                    return index;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader within {ELECTION_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_nothing_acknowledged() {
    let dir = TempDir::new().expect("temp dir");
    let mut nodes = CoordinatorProcess::cluster(dir.path(), 3);
    let addrs = nodes.iter().map(|n| n.seata_addr().to_string()).collect();
    leader(&nodes).await;
    let workload = Workload::new(addrs);
    let running = workload.start(12);
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let current = leader(&nodes).await;
        nodes[current].kill9();
        let next = leader(&nodes).await;
        assert_ne!(next, current, "a new leader is elected");
        nodes[current].restart();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    running.stop().await;
    let report = workload.verify().await;
    assert!(report.transactions >= 20, "the workload ran: {report:?}");
}

/// Whether a status query is answered other than with NotRaftLeader.
async fn serves_requests(client: &SeataClient) -> bool {
    let probe = GlobalEndRequest {
        xid: "127.0.0.1:1:1".into(),
        extra_data: String::new(),
    };
    match client.call(Message::GlobalStatusRequest(probe)).await {
        Ok(Message::GlobalStatusResponse(r)) => {
            r.result.is_success()
                || r.result.exception_code != TransactionExceptionCode::NotRaftLeader
        }
        _ => false,
    }
}
