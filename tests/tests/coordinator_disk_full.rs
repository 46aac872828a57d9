//! A coordinator whose data volume fills up under load (a tmpfs of its own, filled by the test):
//! clients are told its storage is full instead of being sent to another leader, its probes
//! and metadata say so, and once space is freed it restarts itself and serves again, with
//! every acknowledged transaction as it was acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use txmesh_e2e::{CoordinatorProcess, SmallVolume, Workload, http_get};
use txmesh_seata::client::{ClientConfig, NoResources, SeataClient};
use txmesh_seata::message::GlobalBeginRequest;
use txmesh_seata::{Message, TransactionExceptionCode as Code};

/// The volume's size: room for the store and a few seconds of load.
const VOLUME_MIB: u64 = 64;
/// How long each step may take.
const BOUND: Duration = Duration::from_secs(30);

/// Waits until `path` on the coordinator answers `status` with a body containing `text`.
async fn until_answer(node: &CoordinatorProcess, path: &str, status: u16, text: &str) -> String {
    let deadline = Instant::now() + BOUND;
    loop {
        let answer = http_get(node.http_addr(), path);
        if let Some((got, body)) = &answer
            && *got == status
            && body.contains(text)
        {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not answer {status} with {text:?} within {BOUND:?}; last: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_the_node_resumes_once_space_is_freed() {
    let volume = SmallVolume::mount(VOLUME_MIB);
    let data_dir = volume.path().join("node-1");
    let mut node =
        CoordinatorProcess::start_with_config(&data_dir, "[storage]\nresume-free-mb = 16\n");
    let pid = node.pid();
    let workload = Workload::new(vec![node.seata_addr().to_string()]);
    let running = workload.start(4);
    workload.until_progress(20).await;

    let filler = volume.fill();
    let not_ready = until_answer(&node, "/readyz", 503, "storage is full").await;
    eprintln!("volume full; /readyz: {not_ready}");
    until_answer(&node, "/healthz", 200, "ok").await;
    until_answer(&node, "/metadata/v1/cluster", 503, "storage is full").await;
    let metrics = until_answer(&node, "/metrics", 200, "data_volume_available_bytes").await;
    assert!(
        metrics.contains("txmesh_coordinator_raft_running 0"),
        "the metrics say the Raft core stopped"
    );

    let config = ClientConfig {
        application_id: "disk-full-tm".into(),
        ..ClientConfig::default()
    };
    let tm = SeataClient::connect(
        &node.seata_addr().to_string(),
        config,
        Arc::new(NoResources),
    )
    .await
    .expect("the coordinator still takes connections");
    tm.register_tm().await.expect("and registrations");
    let begin = Message::GlobalBeginRequest(GlobalBeginRequest {
        timeout: 60_000,
        transaction_name: "disk-full".into(),
    });
    let answer = tm.call(begin).await.expect("answered");
    let result = answer.tx_result().expect("a transaction answer").clone();
    assert_eq!(result.exception_code, Code::FailedStore, "{answer:?}");
    assert!(result.msg.contains("storage is full"), "{}", result.msg);
    tm.close();

    std::fs::remove_file(&filler).expect("free the space");
    until_answer(&node, "/readyz", 200, "ok").await;
    assert_eq!(node.pid(), pid, "it restarted itself, in place");
    assert!(node.is_running(), "the same process serves again");
    workload.until_progress(20).await;
    running.stop().await;
    let report = workload.verify().await;
    eprintln!("served again after space was freed; {report:?}");
    node.terminate();
}
