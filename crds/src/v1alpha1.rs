//! `txmesh.io/v1alpha1`: the first served and stored version.
//!
//! Doc comments on the fields become the schema's descriptions (`kubectl explain`); defaults
//! given with `#[serde(default = …)]` become schema defaults the API server fills in. The
//! tuning defaults are the coordinator's own (a test in txmesh-operator keeps them equal).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The coordinator group asked for: a Raft group run as a StatefulSet, which Seata clients and
/// txmesh sidecars use as their transaction coordinator (TC).
// Each `printcolumn(...)` names its `type_`: the lint takes them for one repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "txmesh.io",
    version = "v1alpha1",
    kind = "TransactionCoordinator",
    namespaced,
    status = "TransactionCoordinatorStatus",
    derive = "PartialEq",
    shortname = "tc",
    category = "txmesh",
    doc = "A group of txmesh transaction coordinators: a Raft group run as a StatefulSet.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Coordinators asked for"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Coordinators that are members and caught up"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.leader",
        description = "The pod that leads the Raft group"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Available, Progressing, Degraded or Paused"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TransactionCoordinatorSpec {
    /// Number of coordinators, all Raft voters. Odd, so that every member counts towards
    /// fault tolerance: 3 survive one failure, 5 survive two.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9))]
    #[x_kube(validation = Rule::new("self % 2 == 1").message(
        "replicas must be odd (1, 3, 5, 7 or 9): an even-sized Raft group survives no more failures than the odd size below it"
    ))]
    pub replicas: i32,

    /// The txmesh container image, for example `txmesh/txmesh:0.1.0`.
    #[schemars(length(min = 1))]
    pub image: String,

    /// When the kubelet pulls the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets holding credentials for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// CPU and memory requests and limits of the coordinator container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// The volume each coordinator keeps its Raft log and snapshots on.
    #[serde(default)]
    pub storage: StorageSpec,

    /// The Seata side: the port clients connect to and the transaction groups they use.
    #[serde(default)]
    pub seata: SeataSpec,

    /// Raft tuning.
    #[serde(default)]
    pub raft: RaftSpec,

    /// Phase-two retry and recovery tuning.
    #[serde(default)]
    pub recovery: RecoverySpec,

    /// Defaults for transactions whose clients do not say otherwise.
    #[serde(default)]
    pub transactions: TransactionDefaults,

    /// Where the coordinator pods run and what extra metadata they carry.
    #[serde(default)]
    pub pod: PodSpec,

    /// The PodDisruptionBudget that keeps voluntary disruptions to one coordinator at a time.
    #[serde(default)]
    pub pdb: PdbSpec,

    /// Metrics scraping.
    #[serde(default)]
    pub metrics: MetricsSpec,

    /// Stop changing the coordinators: the operator keeps reporting status but applies no
    /// spec change and makes no membership change until this is false again.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    3
}

/// When the kubelet pulls the image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// On every pod start.
    Always,
    /// Only when the node does not have the image.
    IfNotPresent,
    /// Never: the image must be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The persistent volume of each coordinator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
).message("storageClassName is immutable: the coordinators' volumes were provisioned with it"))]
pub struct StorageSpec {
    /// Size of each coordinator's volume.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,

    /// StorageClass of the volumes; the cluster's default class when unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// What happens to the volumes when the TransactionCoordinator is deleted: `Retain`
    /// keeps them (and the transactions on them), `Delete` removes them. Volumes of
    /// coordinators removed by scaling down are always deleted: their log is no longer part
    /// of the group.
    #[serde(default)]
    pub retention: VolumeRetention,
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            retention: VolumeRetention::default(),
        }
    }
}

/// Whether volumes outlive their TransactionCoordinator.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VolumeRetention {
    /// Keep the volumes.
    #[default]
    Retain,
    /// Delete the volumes.
    Delete,
}

impl VolumeRetention {
    /// The StatefulSet's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "Retain",
            Self::Delete => "Delete",
        }
    }
}

/// The Seata protocol side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeataSpec {
    /// Port Seata clients and sidecars connect to.
    #[serde(default = "default_seata_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// The Raft group's name, which clients ask for in `/metadata/v1/cluster?group=`.
    #[serde(default = "default_group")]
    #[schemars(length(min = 1))]
    pub group: String,

    /// Transaction service groups served here: each maps to `group`
    /// (`service.vgroupMapping.<service group>=<group>` in the client configuration the
    /// operator publishes).
    #[serde(default = "default_service_groups")]
    pub service_groups: Vec<String>,

    /// Close a client connection after this long without inbound bytes (Seata: 15 s).
    #[serde(default = "default_read_idle_timeout_ms")]
    #[schemars(range(min = 1))]
    pub read_idle_timeout_ms: i64,
}

fn default_seata_port() -> i32 {
    8091
}

fn default_group() -> String {
    "default".into()
}

fn default_service_groups() -> Vec<String> {
    vec!["default_tx_group".into()]
}

fn default_read_idle_timeout_ms() -> i64 {
    15_000
}

impl Default for SeataSpec {
    fn default() -> Self {
        Self {
            port: default_seata_port(),
            group: default_group(),
            service_groups: default_service_groups(),
            read_idle_timeout_ms: default_read_idle_timeout_ms(),
        }
    }
}

/// Raft tuning.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaftSpec {
    /// Leader heartbeat period.
    #[serde(default = "default_heartbeat_ms")]
    #[schemars(range(min = 1))]
    pub heartbeat_ms: i64,

    /// Election timeout, lower bound.
    #[serde(default = "default_election_timeout_min_ms")]
    #[schemars(range(min = 1))]
    pub election_timeout_min_ms: i64,

    /// Election timeout, upper bound; also the leader lease. A dead leader is replaced after
    /// about `max + [min, max]`.
    #[serde(default = "default_election_timeout_max_ms")]
    #[schemars(range(min = 1))]
    pub election_timeout_max_ms: i64,

    /// Take a snapshot and compact the log after this many entries.
    #[serde(default = "default_snapshot_every_entries")]
    #[schemars(range(min = 1))]
    pub snapshot_every_entries: i64,

    /// A member is caught up when at most this many entries behind: it may then be promoted,
    /// take over leadership, and report ready.
    #[serde(default = "default_caught_up_lag")]
    #[schemars(range(min = 0))]
    pub caught_up_lag: i64,
}

fn default_heartbeat_ms() -> i64 {
    50
}

fn default_election_timeout_min_ms() -> i64 {
    200
}

fn default_election_timeout_max_ms() -> i64 {
    400
}

fn default_snapshot_every_entries() -> i64 {
    20_000
}

fn default_caught_up_lag() -> i64 {
    100
}

impl Default for RaftSpec {
    fn default() -> Self {
        Self {
            heartbeat_ms: default_heartbeat_ms(),
            election_timeout_min_ms: default_election_timeout_min_ms(),
            election_timeout_max_ms: default_election_timeout_max_ms(),
            snapshot_every_entries: default_snapshot_every_entries(),
            caught_up_lag: default_caught_up_lag(),
        }
    }
}

/// Phase two and recovery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverySpec {
    /// How long a participant has to answer a phase-two commit or rollback (Seata: 15 s).
    #[serde(default = "default_phase_two_timeout_ms")]
    #[schemars(range(min = 1))]
    pub phase_two_timeout_ms: i64,

    /// First retry delay after a retryable phase-two failure.
    #[serde(default = "default_retry_initial_ms")]
    #[schemars(range(min = 1))]
    pub retry_initial_ms: i64,

    /// Longest retry delay: the delay doubles up to this.
    #[serde(default = "default_retry_max_ms")]
    #[schemars(range(min = 1))]
    pub retry_max_ms: i64,
}

fn default_phase_two_timeout_ms() -> i64 {
    15_000
}

fn default_retry_initial_ms() -> i64 {
    1_000
}

fn default_retry_max_ms() -> i64 {
    60_000
}

impl Default for RecoverySpec {
    fn default() -> Self {
        Self {
            phase_two_timeout_ms: default_phase_two_timeout_ms(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
        }
    }
}

/// Transaction defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionDefaults {
    /// Stop retrying a commit this long after the transaction began; unset: never give up
    /// (Seata's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_commit_retry_ms: Option<i64>,

    /// Stop retrying a rollback this long after the transaction began; unset: never give up
    /// (Seata's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_rollback_retry_ms: Option<i64>,

    /// AT mode: undo-log rows younger than this many days are kept.
    #[serde(default = "default_undo_log_save_days")]
    #[schemars(range(min = 1, max = 32767))]
    pub undo_log_save_days: i32,

    /// AT mode: how often participants are told to trim their undo logs.
    #[serde(default = "default_undo_log_delete_period_ms")]
    #[schemars(range(min = 1))]
    pub undo_log_delete_period_ms: i64,

    /// AT mode: how long a branch registration whose rows another transaction holds waits
    /// for them before it is answered LockKeyConflict; 0 answers at once, as Seata does. It
    /// adds to each of the client's lock retries.
    #[serde(default = "default_lock_wait_ms")]
    #[schemars(range(min = 0, max = 60000))]
    pub lock_wait_ms: i64,
}

fn default_lock_wait_ms() -> i64 {
    10
}

fn default_undo_log_save_days() -> i32 {
    7
}

fn default_undo_log_delete_period_ms() -> i64 {
    86_400_000
}

impl Default for TransactionDefaults {
    fn default() -> Self {
        Self {
            max_commit_retry_ms: None,
            max_rollback_retry_ms: None,
            undo_log_save_days: default_undo_log_save_days(),
            undo_log_delete_period_ms: default_undo_log_delete_period_ms(),
            lock_wait_ms: default_lock_wait_ms(),
        }
    }
}

/// Pod placement and metadata.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Nodes the pods may run on, by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity rules. Unset: coordinators prefer different nodes (pod anti-affinity on
    /// `kubernetes.io/hostname`), so one node failure costs at most one member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the pods spread over zones or nodes; the label selector may be left out, it
    /// defaults to this group's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Extra labels on the pods (the operator's own labels win on a clash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The PodDisruptionBudget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create a PodDisruptionBudget allowing one coordinator down at a time.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

impl Default for PdbSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Metrics scraping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// A Prometheus Operator ServiceMonitor for the coordinators' `/metrics`.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

/// A Prometheus Operator ServiceMonitor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create it (needs the `monitoring.coreos.com` CRDs in the cluster).
    #[serde(default)]
    pub enabled: bool,

    /// Scrape interval, a Prometheus duration.
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: String,

    /// Extra labels, for the Prometheus instance's `serviceMonitorSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_scrape_interval() -> String {
    "30s".into()
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: default_scrape_interval(),
            labels: BTreeMap::new(),
        }
    }
}

/// What the operator last saw of the group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransactionCoordinatorStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Summary for `kubectl get`: the most telling condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// `Available`, `Progressing` and `Degraded`, each with a reason and a message saying
    /// what the operator is doing or what blocks it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Coordinator pods that exist (the StatefulSet's replicas).
    #[serde(default)]
    pub replicas: i32,

    /// Coordinator pods that are ready: members of the group and caught up.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The pod that leads the Raft group, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,

    /// The Raft members as the leader reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub members: Vec<Member>,

    /// Where Seata clients connect: `host:port` of the client Service (fully qualified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_endpoint: Option<String>,
}

/// One-word summary of the status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// The objects are being created or changed, or members are joining or leaving.
    Progressing,
    /// Every coordinator is a caught-up member and a leader is known.
    Available,
    /// Something needs attention: the conditions say what.
    Degraded,
    /// `spec.paused` is set.
    Paused,
}

/// One Raft member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Its pod.
    pub name: String,
    /// Its Raft node id (pod ordinal + 1).
    pub id: i64,
    /// Its role.
    pub role: MemberRole,
    /// Within the caught-up lag of the leader's log.
    pub caught_up: bool,
}

/// A member's role.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MemberRole {
    /// The voter that leads.
    Leader,
    /// Another voter.
    Follower,
    /// A non-voting member catching up.
    Learner,
}
