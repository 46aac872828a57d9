//! The JSON patch (RFC 6902) that gives a pod its sidecar: the sidecar container (a native
//! sidecar — an init container that keeps running, started before the application and
//! stopped after it — or an ordinary container), its volumes, the application containers'
//! `TXMESH_GRPC_ENDPOINT`, and a label saying it was done. Pure: golden-tested from fixtures.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, ContainerPort, DownwardAPIProjection,
    DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvVar, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, Pod, Probe, ProjectedVolumeSource, SeccompProfile, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::Value;

use super::annotations::Settings;

/// The injected container's name; a pod that has one is not patched again.
pub const SIDECAR_NAME: &str = "txmesh-sidecar";
/// The variable that tells application containers where the sidecar is.
pub const GRPC_ENDPOINT_ENV: &str = "TXMESH_GRPC_ENDPOINT";
/// The label on injected pods.
pub const INJECTED_LABEL: &str = "txmesh.io/sidecar";

/// The fence's volume: an emptyDir, so it survives sidecar restarts.
const DATA_VOLUME: &str = "txmesh-sidecar-data";
const DATA_PATH: &str = "/var/lib/txmesh";
/// The sidecar's own service account token (for EndpointSlice discovery), mounted where
/// Kubernetes clients look. Its own volume, because the ServiceAccount admission plugin has
/// already run when the webhook adds the container, and because the pod may not automount.
const TOKEN_VOLUME: &str = "txmesh-sidecar-token";
const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Token lifetime: the kubelet refreshes it; 3607 s is what the kubelet gives bound tokens.
const TOKEN_SECONDS: i64 = 3607;
/// The sidecar runs as the image's non-root user.
const SIDECAR_UID: i64 = 65532;

/// Whether the pod already has the sidecar.
pub fn has_sidecar(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let init = spec.init_containers.iter().flatten();
    init.chain(&spec.containers).any(|c| c.name == SIDECAR_NAME)
}

/// The operations that give `pod` its sidecar with `settings`.
pub fn sidecar_patch(pod: &Pod, settings: &Settings) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    // The application's containers learn the endpoint. Before the sidecar is inserted, so
    // that the indexes are the pod's own.
    let endpoint = EnvVar {
        name: GRPC_ENDPOINT_ENV.into(),
        value: Some(format!("http://127.0.0.1:{}", settings.grpc_port)),
        value_from: None,
    };
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (list, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            let index = index.to_string();
            let env = container.env.as_deref().unwrap_or_default();
            if env.iter().any(|var| var.name == GRPC_ENDPOINT_ENV) {
                continue; // The application chose its own.
            }
            let (path, value) = match container.env {
                None => (vec!["spec", list, &index, "env"], json(&[&endpoint])),
                Some(_) => (vec!["spec", list, &index, "env", "-"], json(&endpoint)),
            };
            ops.push(add(&path, value));
        }
    }
    match spec.volumes {
        None => ops.push(add(&["spec", "volumes"], json(&volumes()))),
        Some(_) => ops.extend(
            volumes()
                .iter()
                .map(|v| add(&["spec", "volumes", "-"], json(v))),
        ),
    }
    let sidecar = container(settings);
    ops.push(match (settings.native, &spec.init_containers) {
        // First, so that the application's own init containers can use it too.
        (true, Some(_)) => add(&["spec", "initContainers", "0"], json(&sidecar)),
        (true, None) => add(&["spec", "initContainers"], json(&[sidecar])),
        (false, _) => add(&["spec", "containers", "-"], json(&sidecar)),
    });
    let label = Value::String("injected".into());
    ops.push(match &pod.metadata.labels {
        None => add(
            &["metadata", "labels"],
            json(&BTreeMap::from([(INJECTED_LABEL, label)])),
        ),
        Some(_) => add(&["metadata", "labels", INJECTED_LABEL], label),
    });
    ops
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

fn json(value: &impl Serialize) -> Value {
    // Kubernetes types always serialize.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn volumes() -> [Volume; 2] {
    let data = Volume {
        name: DATA_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let token = ServiceAccountTokenProjection {
        path: "token".into(),
        expiration_seconds: Some(TOKEN_SECONDS),
        ..ServiceAccountTokenProjection::default()
    };
    let ca = ConfigMapProjection {
        name: "kube-root-ca.crt".into(),
        items: Some(vec![KeyToPath {
            key: "ca.crt".into(),
            path: "ca.crt".into(),
            ..KeyToPath::default()
        }]),
        optional: None,
    };
    let namespace = DownwardAPIProjection {
        items: Some(vec![DownwardAPIVolumeFile {
            path: "namespace".into(),
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: "metadata.namespace".into(),
            }),
            ..DownwardAPIVolumeFile::default()
        }]),
    };
    let token = Volume {
        name: TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(token),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ca),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(namespace),
                    ..VolumeProjection::default()
                },
            ]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    };
    [data, token]
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn container(settings: &Settings) -> Container {
    let (namespace, service) = &settings.coordinator;
    let mut vars = vec![
        env(
            "TXMESH_GRPC_ADDR",
            format!("127.0.0.1:{}", settings.grpc_port),
        ),
        // Every address: the kubelet probes it on the pod's IP.
        env(
            "TXMESH_HTTP_ADDR",
            format!("0.0.0.0:{}", settings.http_port),
        ),
        env(
            "TXMESH_COORDINATOR_SERVICE",
            format!("{namespace}/{service}"),
        ),
        env("TXMESH_APPLICATION_ID", settings.application_id.clone()),
        env(
            "TXMESH_TRANSACTION_SERVICE_GROUP",
            settings.service_group.clone(),
        ),
        env("TXMESH_DATA_DIR", DATA_PATH),
        env("TXMESH_LOG_FORMAT", "json"),
    ];
    if let Some(level) = &settings.log_level {
        vars.push(env("TXMESH_LOG", level.clone()));
    }
    if let Some(grace) = &settings.shutdown_grace {
        vars.push(env("TXMESH_SHUTDOWN_GRACE", grace.clone()));
    }
    let probe = |path: &str, period, failures| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("txmesh-http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(settings.image.clone()),
        args: Some(vec!["sidecar".into()]),
        env: Some(vars),
        ports: Some(vec![ContainerPort {
            name: Some("txmesh-http".into()),
            container_port: i32::from(settings.http_port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // A native sidecar's startup probe holds the application back until it serves.
        startup_probe: Some(probe("/healthz", 1, 60)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        // Ready once registered with a coordinator for the application's resources.
        readiness_probe: Some(probe("/readyz", 5, 3)),
        restart_policy: settings.native.then(|| "Always".into()),
        resources: Some(settings.resources.clone()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SIDECAR_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_PATH.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: TOKEN_VOLUME.into(),
                mount_path: TOKEN_PATH.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}
