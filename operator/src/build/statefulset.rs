//! The StatefulSet: one pod and one volume per coordinator.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{VOLUME_DIR, coordinator_toml};
use super::{ADMIN_TOKEN_KEY, BuildError, CONFIG_FILE, HTTP_PORT, Pods, RAFT_PORT, Target};

/// Annotation on the pod template: a hash of the configuration without the peers, so a
/// tuning change rolls the pods and a replica change does not.
pub const CONFIG_HASH_ANNOTATION: &str = "txmesh.io/config-hash";

/// Annotation on the StatefulSet: a hash of the pod template it was last given. When the
/// template about to be applied hashes differently, a rollout starts with every pod held back
/// (the partition at the replica count) and the membership steps move it one pod at a time.
pub const TEMPLATE_HASH_ANNOTATION: &str = "txmesh.io/template-hash";

const CONFIG_DIR: &str = "/etc/txmesh";
const ADMIN_TOKEN_DIR: &str = "/var/run/secrets/txmesh";
/// The non-root user and group the coordinator runs as (the distroless `nonroot` ids).
const USER_ID: i64 = 65532;

/// The hash of the pod template a resource's StatefulSet gets (hex).
pub fn template_hash(
    tc: &txmesh_crds::TransactionCoordinator,
    build: &super::BuildConfig,
) -> Result<String, BuildError> {
    hash_of(&pod_template(&Target::new(tc, build)?)?)
}

fn hash_of(template: &PodTemplateSpec) -> Result<String, BuildError> {
    let json = serde_json::to_vec(template).map_err(BuildError::Template)?;
    Ok(format!("{:016x}", fnv1a(&json)))
}

pub(super) fn stateful_set(target: &Target, pods: Pods) -> Result<StatefulSet, BuildError> {
    let spec = &target.tc.spec;
    let template = pod_template(target)?;
    let mut metadata = target.metadata(target.name.clone());
    metadata.annotations = Some(BTreeMap::from([(
        TEMPLATE_HASH_ANNOTATION.into(),
        hash_of(&template)?,
    )]));

    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(target.selector_labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    spec.storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };

    Ok(StatefulSet {
        metadata,
        spec: StatefulSetSpec {
            replicas: Some(pods.replicas),
            service_name: Some(target.peer_service_name()),
            // All pods at once: with OrderedReady the first pod would wait for readiness,
            // which needs a leader, which needs a majority of the pods.
            pod_management_policy: Some("Parallel".into()),
            // The operator moves the partition: one pod at a time, never the leader.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(pods.partition),
                    ..RollingUpdateStatefulSetStrategy::default()
                }),
            }),
            selector: LabelSelector {
                match_labels: Some(target.selector_labels()),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(spec.storage.retention.as_str().into()),
                    // A removed member's log is no longer the group's; a member added later
                    // starts empty and catches up from the leader.
                    when_scaled: Some("Delete".into()),
                },
            ),
            volume_claim_templates: Some(vec![claim]),
            template,
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

fn pod_template(target: &Target) -> Result<PodTemplateSpec, BuildError> {
    let spec = &target.tc.spec;
    let config_hash = fnv1a(coordinator_toml(target, 0)?.as_bytes());
    // The user's pod labels and annotations first: the operator's own win on a clash.
    let mut pod_labels = spec.pod.labels.clone();
    pod_labels.extend(target.labels());
    let mut pod_annotations = spec.pod.annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), format!("{config_hash:016x}"));
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(pod_annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(target)),
    })
}

fn pod_spec(target: &Target) -> PodSpec {
    let spec = &target.tc.spec;
    let topology_spread_constraints = spec
        .pod
        .topology_spread_constraints
        .iter()
        .cloned()
        .map(|mut constraint| {
            constraint
                .label_selector
                .get_or_insert_with(|| label_selector(target));
            constraint
        })
        .collect::<Vec<_>>();
    PodSpec {
        containers: vec![container(target)],
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: target.config_map_name(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "admin-token".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(target.admin_token_secret_name()),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            // The root filesystem is read-only.
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        // Coordinators never call the Kubernetes API.
        automount_service_account_token: Some(false),
        // Service links would put variables such as TXMESH_PEERS_PORT into the environment,
        // where the coordinator reads its TXMESH_* settings.
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(USER_ID),
            run_as_group: Some(USER_ID),
            fs_group: Some(USER_ID),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        termination_grace_period_seconds: Some(termination_grace_seconds(target)),
        affinity: Some(
            spec.pod
                .affinity
                .clone()
                .unwrap_or_else(|| spread_over_nodes(target)),
        ),
        node_selector: (!spec.pod.node_selector.is_empty()).then(|| spec.pod.node_selector.clone()),
        tolerations: (!spec.pod.tolerations.is_empty()).then(|| spec.pod.tolerations.clone()),
        topology_spread_constraints: (!topology_spread_constraints.is_empty())
            .then_some(topology_spread_constraints),
        priority_class_name: spec.pod.priority_class_name.clone(),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty())
            .then(|| spec.image_pull_secrets.clone()),
        ..PodSpec::default()
    }
}

fn container(target: &Target) -> Container {
    let spec = &target.tc.spec;
    let http_get = |path: &str| HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::String("http".into()),
        ..HTTPGetAction::default()
    };
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    Container {
        name: "coordinator".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|policy| policy.as_str().into()),
        command: Some(vec!["txmesh".into()]),
        args: Some(vec![
            "coordinator".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
            "--node-id-from-hostname".into(),
            "--admin-token-file".into(),
            format!("{ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}"),
            "--log-format".into(),
            "json".into(),
        ]),
        env: Some(vec![
            EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
            // The pod's own fully qualified name goes into XIDs and the Seata 2.x metadata, so
            // clients in any namespace can resolve it.
            EnvVar {
                name: "TXMESH_ADVERTISE_HOST".into(),
                value: Some(format!("$(POD_NAME).{}", target.peer_domain())),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![
            port("seata", spec.seata.port),
            port("raft", RAFT_PORT),
            port("http", HTTP_PORT),
        ]),
        // Opening RocksDB and replaying the log may take a while on a big volume.
        startup_probe: Some(Probe {
            http_get: Some(http_get("/healthz")),
            period_seconds: Some(2),
            failure_threshold: Some(150),
            ..Probe::default()
        }),
        // Never tied to elections: a node waiting out one must not be restarted. It fails only
        // once the Raft core stopped for good (a full volume is waited out, not restarted).
        liveness_probe: Some(Probe {
            http_get: Some(http_get("/healthz")),
            period_seconds: Some(10),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        // Ready = running, a member of the group, caught up with the leader, and not a leader
        // cut off from its quorum.
        readiness_probe: Some(Probe {
            http_get: Some(http_get("/readyz")),
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(2),
            ..Probe::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("data", VOLUME_DIR, false),
            mount("config", CONFIG_DIR, true),
            mount("admin-token", ADMIN_TOKEN_DIR, true),
            mount("tmp", "/tmp", false),
        ]),
        ..Container::default()
    }
}

fn label_selector(target: &Target) -> LabelSelector {
    LabelSelector {
        match_labels: Some(target.selector_labels()),
        ..LabelSelector::default()
    }
}

/// Coordinators prefer different nodes. Preferred, not required: a small cluster still runs
/// the whole group.
fn spread_over_nodes(target: &Target) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(label_selector(target)),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// Long enough for a leader to hand off leadership (a transfer settles within
/// `max(5 s, 10 × election timeout max)`) and for the phase two it is sending to be answered,
/// plus a margin; never under Kubernetes' default 30 s.
fn termination_grace_seconds(target: &Target) -> i64 {
    let spec = &target.tc.spec;
    let transfer = super::leadership_transfer_bound(target.tc).as_millis();
    let transfer_ms = i64::try_from(transfer).unwrap_or(i64::MAX);
    let total_ms = transfer_ms
        .saturating_add(spec.recovery.phase_two_timeout_ms)
        .saturating_add(5_000);
    (total_ms.saturating_add(999) / 1_000).max(30)
}

/// 64-bit FNV-1a: a stable hash (unlike std's `DefaultHasher`, which may change between Rust
/// releases and would then roll every pod on an operator upgrade).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
