//! Pure build functions: from a `TransactionCoordinator` to the objects that run it. No client,
//! no clock, no randomness — the same resource always gives the same objects, which the golden
//! tests pin down and the reconciler server-side applies.

mod config;
mod services;
mod statefulset;
mod validate;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};
use txmesh_crds::TransactionCoordinator;

pub use config::CONFIG_FILE;
pub use services::service_monitor_resource;
pub use statefulset::{CONFIG_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION, template_hash};
pub use validate::{SpecError, validate};

/// Port of the Raft peer gRPC service.
pub const RAFT_PORT: i32 = 9091;
/// Port of the admin HTTP service: probes, metrics, membership API, Seata 2.x discovery.
pub const HTTP_PORT: i32 = 7091;
/// Key of the admin token in its Secret.
pub const ADMIN_TOKEN_KEY: &str = "admin-token";

/// Settings of the cluster the objects are built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    /// The cluster's DNS domain (`cluster.local` unless the cluster says otherwise).
    pub cluster_domain: String,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// Why no objects could be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec is invalid: the user has to change it.
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    /// The resource lacks metadata the API server always sets (namespace, uid).
    #[error("the TransactionCoordinator has no {0} (was it read from the API server?)")]
    MissingMetadata(&'static str),
    /// The coordinator configuration did not serialize.
    #[error("cannot render the coordinator configuration: {0}")]
    Config(#[from] toml::ser::Error),
    /// The pod template did not serialize (for its hash).
    #[error("cannot hash the pod template: {0}")]
    Template(#[source] serde_json::Error),
}

/// Everything a `TransactionCoordinator` runs on, except the admin token Secret (see
/// [`admin_token_secret`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The coordinator configuration (TOML) and the Seata client settings.
    pub config_map: ConfigMap,
    /// The headless Service that gives each pod its DNS name, for Raft peers and scraping.
    pub peer_service: Service,
    /// The Service clients connect to.
    pub client_service: Service,
    /// The coordinators.
    pub stateful_set: StatefulSet,
    /// At most one coordinator voluntarily down at a time, unless disabled.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    /// The Prometheus Operator ServiceMonitor, when asked for.
    pub service_monitor: Option<DynamicObject>,
}

/// How many pods the StatefulSet runs, and from which ordinal on they are updated to the
/// current pod template. The membership steps move these one pod at a time; only a new group
/// starts with every pod at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pods {
    /// The StatefulSet's replicas.
    pub replicas: i32,
    /// Its `updateStrategy.rollingUpdate.partition`: pods with a lower ordinal keep their
    /// template.
    pub partition: i32,
}

impl Pods {
    /// A new group: every coordinator the spec asks for, founded together from the peers.
    pub fn initial(tc: &TransactionCoordinator) -> Self {
        Self {
            replicas: tc.spec.replicas,
            partition: 0,
        }
    }
}

/// Builds the objects of a valid resource read from the API server, running `pods`.
pub fn desired(
    tc: &TransactionCoordinator,
    build: &BuildConfig,
    pods: Pods,
) -> Result<Desired, BuildError> {
    validate::validate(tc)?;
    let target = Target::new(tc, build)?;
    let config_map = config::config_map(&target, pods.replicas)?;
    Ok(Desired {
        stateful_set: statefulset::stateful_set(&target, pods)?,
        config_map,
        peer_service: services::peer_service(&target),
        client_service: services::client_service(&target),
        pod_disruption_budget: tc
            .spec
            .pdb
            .enabled
            .then(|| services::pod_disruption_budget(&target)),
        service_monitor: tc
            .spec
            .metrics
            .service_monitor
            .enabled
            .then(|| services::service_monitor(&target)),
    })
}

/// The Secret holding the coordinators' admin token. The token is made by the caller (and
/// kept across reconciles): building stays deterministic.
pub fn admin_token_secret(tc: &TransactionCoordinator, token: &str) -> Result<Secret, BuildError> {
    let build = BuildConfig::default();
    let target = Target::new(tc, &build)?;
    Ok(Secret {
        metadata: target.metadata(target.admin_token_secret_name()),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            ADMIN_TOKEN_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}

/// The name of the Secret holding a resource's admin token.
pub fn admin_token_secret_name(tc: &TransactionCoordinator) -> String {
    format!("{}-admin-token", tc.name_any())
}

/// What every build function needs to know about the resource.
struct Target<'a> {
    tc: &'a TransactionCoordinator,
    name: String,
    namespace: String,
    owner: OwnerReference,
    cluster_domain: &'a str,
}

impl<'a> Target<'a> {
    fn new(tc: &'a TransactionCoordinator, build: &'a BuildConfig) -> Result<Self, BuildError> {
        let mut owner = tc
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingMetadata("uid"))?;
        // Foreground deletion of the resource waits for its objects.
        owner.block_owner_deletion = Some(true);
        Ok(Self {
            tc,
            name: tc.name_any(),
            namespace: tc
                .namespace()
                .ok_or(BuildError::MissingMetadata("namespace"))?,
            owner,
            cluster_domain: &build.cluster_domain,
        })
    }

    /// Labels that select this group's pods (Kubernetes recommended labels).
    fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "txmesh".into()),
            ("app.kubernetes.io/component".into(), "coordinator".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
        ])
    }

    /// Labels of every object built here.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/part-of".into(), "txmesh".into());
        labels.insert(
            "app.kubernetes.io/managed-by".into(),
            "txmesh-operator".into(),
        );
        labels
    }

    /// Metadata of an object named `name`, labelled and owned by the resource.
    fn metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }

    fn peer_service_name(&self) -> String {
        format!("{}-peers", self.name)
    }

    fn admin_token_secret_name(&self) -> String {
        admin_token_secret_name(self.tc)
    }

    /// The fully qualified DNS name of the pod with `ordinal`.
    fn pod_host(&self, ordinal: i32) -> String {
        format!("{}.{}", pod_name(self.tc, ordinal), self.peer_domain())
    }

    /// `host:port` of the pod's Raft service.
    fn raft_address(&self, ordinal: i32) -> String {
        format!("{}:{RAFT_PORT}", self.pod_host(ordinal))
    }

    /// `host:port` of the pod's admin API.
    fn admin_address(&self, ordinal: i32) -> String {
        format!("{}:{HTTP_PORT}", self.pod_host(ordinal))
    }

    /// The headless Service's domain, under which every pod has its name.
    fn peer_domain(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.peer_service_name(),
            self.namespace,
            self.cluster_domain
        )
    }

    /// `host:port` of the client Service's Seata port, fully qualified.
    fn client_endpoint(&self) -> String {
        format!(
            "{}.{}.svc.{}:{}",
            self.name, self.namespace, self.cluster_domain, self.tc.spec.seata.port
        )
    }
}

/// The Seata client endpoint (`host:port`, fully qualified) of a resource, for its status.
pub fn client_endpoint(
    tc: &TransactionCoordinator,
    build: &BuildConfig,
) -> Result<String, BuildError> {
    Ok(Target::new(tc, build)?.client_endpoint())
}

/// The Raft address (`host:port`, fully qualified) of the pod with `ordinal`: the address its
/// membership entry has, in the peers and when it joins as a learner.
pub fn raft_address(
    tc: &TransactionCoordinator,
    build: &BuildConfig,
    ordinal: i32,
) -> Result<String, BuildError> {
    Ok(Target::new(tc, build)?.raft_address(ordinal))
}

/// The admin API addresses to read the group's view from: the client Service (ready pods),
/// then each of `replicas` pods by name (also when none is ready).
pub fn admin_addresses(
    tc: &TransactionCoordinator,
    build: &BuildConfig,
    replicas: i32,
) -> Result<Vec<String>, BuildError> {
    let target = Target::new(tc, build)?;
    let service = format!(
        "{}.{}.svc.{}:{HTTP_PORT}",
        target.name, target.namespace, target.cluster_domain
    );
    let pods = (0..replicas).map(|ordinal| target.admin_address(ordinal));
    Ok(std::iter::once(service).chain(pods).collect())
}

/// How long a leadership transfer may take to settle on the coordinator:
/// `max(5 s, 10 × election timeout max)`.
pub fn leadership_transfer_bound(tc: &TransactionCoordinator) -> std::time::Duration {
    let millis = tc
        .spec
        .raft
        .election_timeout_max_ms
        .saturating_mul(10)
        .max(5_000);
    std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// The name of the pod with `ordinal`.
pub fn pod_name(tc: &TransactionCoordinator, ordinal: i32) -> String {
    format!("{}-{ordinal}", tc.name_any())
}

/// The label selector of a resource's pods, as the scale subresource wants it.
pub fn pod_selector(tc: &TransactionCoordinator) -> Result<String, BuildError> {
    let build = BuildConfig::default();
    let labels = Target::new(tc, &build)?.selector_labels();
    Ok(labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(","))
}
