//! The ConfigMap's `coordinator.toml` is read by the coordinator's own parser: every key the
//! operator writes exists, the peers are the pods' fully qualified names, and a resource with
//! default tuning gives the coordinator's default tuning.

use txmesh_coordinator::CoordinatorConfig;
use txmesh_crds::TransactionCoordinator;
use txmesh_operator::build::{BuildConfig, CONFIG_FILE, Pods, desired, raft_address};

fn coordinator_config(resource: &str) -> CoordinatorConfig {
    let tc: TransactionCoordinator = serde_yaml::from_str(resource).expect("resource parses");
    config_for(&tc, Pods::initial(&tc))
}

fn config_for(tc: &TransactionCoordinator, pods: Pods) -> CoordinatorConfig {
    let objects = desired(tc, &BuildConfig::default(), pods).expect("resource builds");
    let data = objects.config_map.data.expect("config map data");
    CoordinatorConfig::from_toml(&data[CONFIG_FILE]).expect("the coordinator accepts it")
}

#[test]
fn default_tuning_is_the_coordinators_default() {
    let config = coordinator_config(
        "metadata: {name: tc, namespace: payments, uid: u1}\nspec: {image: txmesh:1}\n",
    );
    let defaults = CoordinatorConfig::default();
    assert_eq!(config.server, defaults.server);
    assert_eq!(config.recovery, defaults.recovery);
    assert_eq!(config.locks, defaults.locks);
    assert_eq!(config.raft, defaults.raft);
    assert_eq!(config.seata_addr, defaults.seata_addr);
    assert_eq!(config.raft_addr, defaults.raft_addr);
    assert_eq!(config.http_addr, defaults.http_addr);
}

#[test]
fn peers_are_every_pod_by_fully_qualified_name() {
    let config = coordinator_config(
        "metadata: {name: orders, namespace: shop, uid: u1}\n\
         spec: {image: txmesh:1, replicas: 5, seata: {port: 18091, group: orders}}\n",
    );
    let peers: Vec<(u64, &str)> = config
        .peers
        .iter()
        .map(|peer| (peer.id, peer.addr.as_str()))
        .collect();
    assert_eq!(
        peers,
        [
            (1, "orders-0.orders-peers.shop.svc.cluster.local:9091"),
            (2, "orders-1.orders-peers.shop.svc.cluster.local:9091"),
            (3, "orders-2.orders-peers.shop.svc.cluster.local:9091"),
            (4, "orders-3.orders-peers.shop.svc.cluster.local:9091"),
            (5, "orders-4.orders-peers.shop.svc.cluster.local:9091"),
        ]
    );
    assert_eq!(config.seata_addr.port(), 18091);
    assert_eq!(config.raft.group, "orders");
}

#[test]
fn a_pod_added_by_scaling_waits_to_join_and_is_known_by_its_peer_address() {
    let tc: TransactionCoordinator = serde_yaml::from_str(
        "metadata: {name: tc, namespace: payments, uid: u1}\nspec: {image: txmesh:1}\n",
    )
    .expect("resource parses");
    for replicas in 2..=9 {
        let newest = replicas - 1;
        let config = config_for(
            &tc,
            Pods {
                replicas,
                partition: 0,
            },
        );
        // The coordinator founds a group only as the lowest id of its peers: pod 0 is.
        let founder = config.voters().iter().map(|peer| peer.id).min();
        assert_eq!(founder, Some(1), "{replicas} pods");
        // The learner the operator adds has the address the peers give that pod.
        let peer = config.peers.last().expect("peers");
        assert_eq!(peer.id, u64::try_from(newest + 1).expect("id"));
        let address = raft_address(&tc, &BuildConfig::default(), newest).expect("address");
        assert_eq!(peer.addr, address);
    }
}
