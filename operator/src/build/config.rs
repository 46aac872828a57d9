//! The ConfigMap: the coordinators' TOML configuration, peers included (a ConfigMap change
//! does not restart pods, so scaling does not roll the group), and the settings a Seata client
//! needs to use this group.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;

use super::{BuildError, HTTP_PORT, RAFT_PORT, Target};

/// Key of the coordinator configuration in the ConfigMap.
pub const CONFIG_FILE: &str = "coordinator.toml";
/// Key of the Seata client settings in the ConfigMap.
const CLIENT_FILE: &str = "seata-client.properties";
/// Where the volume is mounted.
pub(super) const VOLUME_DIR: &str = "/var/lib/txmesh";
/// Where the coordinator keeps its Raft log and snapshots: a directory of its own on the
/// volume (whose root may hold a file system's `lost+found`).
const DATA_DIR: &str = "/var/lib/txmesh/data";

/// The coordinator's TOML file (txmesh-coordinator's `CoordinatorConfig`, kebab-case).
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct CoordinatorToml<'a> {
    data_dir: &'a str,
    seata_addr: String,
    raft_addr: String,
    http_addr: String,
    server: ServerToml,
    recovery: RecoveryToml,
    locks: LocksToml,
    raft: RaftToml<'a>,
    peers: Vec<PeerToml>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ServerToml {
    read_idle_timeout_ms: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RecoveryToml {
    phase_two_timeout_ms: i64,
    retry_initial_ms: i64,
    retry_max_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_commit_retry_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_rollback_retry_ms: Option<i64>,
    undo_log_delete_period_ms: i64,
    undo_log_save_days: i32,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct LocksToml {
    wait_ms: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RaftToml<'a> {
    heartbeat_ms: i64,
    election_timeout_min_ms: i64,
    election_timeout_max_ms: i64,
    snapshot_every_entries: i64,
    group: &'a str,
    caught_up_lag: i64,
}

#[derive(Serialize)]
struct PeerToml {
    id: i32,
    addr: String,
}

/// The coordinator configuration, with the peers of `replicas` pods (none: `0`).
///
/// The peers only matter to a pod with an empty volume: the lowest id (pod 0) founds the group
/// with them, any other waits to be contacted. Pod 0 is in every list and is never removed,
/// so a pod added by scaling up never founds a group of its own: it joins as a learner.
pub(super) fn coordinator_toml(target: &Target, replicas: i32) -> Result<String, BuildError> {
    let spec = &target.tc.spec;
    let peers = (0..replicas)
        // Node ids are ordinal + 1 (`--node-id-from-hostname`).
        .map(|ordinal| PeerToml {
            id: ordinal + 1,
            addr: target.raft_address(ordinal),
        })
        .collect();
    let config = CoordinatorToml {
        data_dir: DATA_DIR,
        seata_addr: format!("0.0.0.0:{}", spec.seata.port),
        raft_addr: format!("0.0.0.0:{RAFT_PORT}"),
        http_addr: format!("0.0.0.0:{HTTP_PORT}"),
        server: ServerToml {
            read_idle_timeout_ms: spec.seata.read_idle_timeout_ms,
        },
        recovery: RecoveryToml {
            phase_two_timeout_ms: spec.recovery.phase_two_timeout_ms,
            retry_initial_ms: spec.recovery.retry_initial_ms,
            retry_max_ms: spec.recovery.retry_max_ms,
            max_commit_retry_ms: spec.transactions.max_commit_retry_ms,
            max_rollback_retry_ms: spec.transactions.max_rollback_retry_ms,
            undo_log_delete_period_ms: spec.transactions.undo_log_delete_period_ms,
            undo_log_save_days: spec.transactions.undo_log_save_days,
        },
        locks: LocksToml {
            wait_ms: spec.transactions.lock_wait_ms,
        },
        raft: RaftToml {
            heartbeat_ms: spec.raft.heartbeat_ms,
            election_timeout_min_ms: spec.raft.election_timeout_min_ms,
            election_timeout_max_ms: spec.raft.election_timeout_max_ms,
            snapshot_every_entries: spec.raft.snapshot_every_entries,
            group: &spec.seata.group,
            caught_up_lag: spec.raft.caught_up_lag,
        },
        peers,
    };
    Ok(toml::to_string(&config)?)
}

/// Seata client settings for the raft registry: every coordinator's admin endpoint, and each
/// transaction service group mapped to this group.
fn client_properties(target: &Target, replicas: i32) -> String {
    let spec = &target.tc.spec;
    let servers: Vec<String> = (0..replicas)
        .map(|ordinal| target.admin_address(ordinal))
        .collect();
    let mut text = format!(
        "registry.type=raft\nregistry.raft.serverAddr={}\n",
        servers.join(",")
    );
    for group in &spec.seata.service_groups {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "service.vgroupMapping.{group}={}", spec.seata.group);
    }
    text
}

/// The ConfigMap for a StatefulSet of `replicas` pods.
pub(super) fn config_map(target: &Target, replicas: i32) -> Result<ConfigMap, BuildError> {
    Ok(ConfigMap {
        metadata: target.metadata(target.config_map_name()),
        data: Some(BTreeMap::from([
            (CONFIG_FILE.to_owned(), coordinator_toml(target, replicas)?),
            (CLIENT_FILE.to_owned(), client_properties(target, replicas)),
        ])),
        ..ConfigMap::default()
    })
}
