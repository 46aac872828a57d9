//! The pod annotations the injector reads, parsed into what the sidecar gets. A bad value is
//! a typed error naming the annotation: the pod is refused with it, rather than started with
//! a sidecar that cannot work.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{InjectorConfig, Route};

/// `"true"` injects (pods outside labelled namespaces); `"false"` opts out (pods in them).
pub const INJECT: &str = "txmesh.io/inject";
/// The TransactionCoordinator: `name` in the pod's namespace, or `namespace/name`.
pub const COORDINATOR: &str = "txmesh.io/coordinator";
/// The Seata application id (phase two is routed by it).
pub const APPLICATION_ID: &str = "txmesh.io/application-id";
/// The Seata transaction service group.
pub const SERVICE_GROUP: &str = "txmesh.io/service-group";
/// `"true"`/`"false"`: a native sidecar (an init container that keeps running).
pub const NATIVE_SIDECAR: &str = "txmesh.io/native-sidecar";
/// The sidecar's image.
pub const SIDECAR_IMAGE: &str = "txmesh.io/sidecar-image";
/// The sidecar's CPU request.
pub const CPU_REQUEST: &str = "txmesh.io/sidecar-cpu-request";
/// The sidecar's CPU limit.
pub const CPU_LIMIT: &str = "txmesh.io/sidecar-cpu-limit";
/// The sidecar's memory request.
pub const MEMORY_REQUEST: &str = "txmesh.io/sidecar-memory-request";
/// The sidecar's memory limit.
pub const MEMORY_LIMIT: &str = "txmesh.io/sidecar-memory-limit";
/// The sidecar's log filter (`info`, `debug,txmesh_seata=trace`).
pub const LOG_LEVEL: &str = "txmesh.io/log-level";
/// The loopback port of the sidecar's gRPC API.
pub const GRPC_PORT: &str = "txmesh.io/grpc-port";
/// The port of the sidecar's health and metrics endpoints.
pub const HTTP_PORT: &str = "txmesh.io/http-port";
/// How long phase two keeps reaching the application after SIGTERM (`10s`).
pub const SHUTDOWN_GRACE: &str = "txmesh.io/shutdown-grace";

/// The service group Seata clients use unless told otherwise.
pub const DEFAULT_SERVICE_GROUP: &str = "default_tx_group";
/// The sidecar's default gRPC port.
pub const DEFAULT_GRPC_PORT: u16 = 50051;
/// The sidecar's default HTTP port.
pub const DEFAULT_HTTP_PORT: u16 = 7092;

/// A pod annotation the injector cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// Not `"true"` or `"false"`.
    #[error("{key}: {value:?} is not \"true\" or \"false\"")]
    NotABool {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// Not a port number.
    #[error("{key}: {value:?} is not a port (1-65535)")]
    NotAPort {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// Not a Kubernetes quantity.
    #[error("{key}: {value:?} is not a quantity (e.g. 100m, 128Mi)")]
    NotAQuantity {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// Not a duration the sidecar reads.
    #[error("{key}: {value:?} is not a duration (e.g. 500ms, 10s, 2m)")]
    NotADuration {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// Characters a log filter never has.
    #[error("{key}: {value:?} is not a log level or filter (e.g. info, debug,txmesh_seata=trace)")]
    NotALogFilter {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// The sidecar's two ports are the same.
    #[error("{GRPC_PORT} and {HTTP_PORT} are both {0}")]
    PortClash(u16),
    /// Not `name` or `namespace/name`.
    #[error("{COORDINATOR}: {0:?} is not a TransactionCoordinator name or namespace/name")]
    BadCoordinator(String),
    /// No coordinator named, and no default.
    #[error(
        "no TransactionCoordinator: annotate the pod with {COORDINATOR} (the injector has no default coordinator)"
    )]
    NoCoordinator,
    /// Nothing to take the application id from.
    #[error(
        "no application id: annotate the pod with {APPLICATION_ID} or label it app.kubernetes.io/name"
    )]
    NoApplicationId,
    /// A value that cannot be an argument of the sidecar (empty, or with a line break).
    #[error("{key}: {value:?} is empty or spans lines")]
    Unusable {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

/// What the sidecar of one pod gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The coordinators' client Service: `(namespace, name)`.
    pub coordinator: (String, String),
    /// The Seata application id.
    pub application_id: String,
    /// The Seata transaction service group.
    pub service_group: String,
    /// A native sidecar (else an ordinary container).
    pub native: bool,
    /// The sidecar's image.
    pub image: String,
    /// Its resources.
    pub resources: ResourceRequirements,
    /// Its log filter, when not the default.
    pub log_level: Option<String>,
    /// The loopback gRPC port.
    pub grpc_port: u16,
    /// The health and metrics port.
    pub http_port: u16,
    /// Its shutdown grace, when not the default.
    pub shutdown_grace: Option<String>,
}

/// Whether a pod that came through `route` gets a sidecar.
pub fn wants_sidecar(route: Route, pod: &Pod) -> Result<bool, AnnotationError> {
    let inject = flag(annotations(pod), INJECT)?;
    Ok(match route {
        Route::Pod => inject == Some(true),
        Route::Namespace => inject != Some(false),
    })
}

/// The sidecar settings of `pod` (in `namespace`), over the injector's defaults.
pub fn settings(
    pod: &Pod,
    namespace: &str,
    config: &InjectorConfig,
) -> Result<Settings, AnnotationError> {
    let annotations = annotations(pod);
    let get = |key| annotations.get(key).map(String::as_str);
    let coordinator = match get(COORDINATOR).or(config.default_coordinator.as_deref()) {
        Some(value) => coordinator(value, namespace)?,
        None => return Err(AnnotationError::NoCoordinator),
    };
    let labels = pod.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    let application_id = get(APPLICATION_ID)
        .or_else(|| label("app.kubernetes.io/name"))
        .or_else(|| label("app"))
        .ok_or(AnnotationError::NoApplicationId)?;
    let grpc_port = port(annotations, GRPC_PORT)?.unwrap_or(DEFAULT_GRPC_PORT);
    let http_port = port(annotations, HTTP_PORT)?.unwrap_or(DEFAULT_HTTP_PORT);
    if grpc_port == http_port {
        return Err(AnnotationError::PortClash(grpc_port));
    }
    let log_level = match get(LOG_LEVEL) {
        Some(value) if is_log_filter(value) => Some(value.to_owned()),
        Some(value) => {
            return Err(AnnotationError::NotALogFilter {
                key: LOG_LEVEL,
                value: value.into(),
            });
        }
        None => None,
    };
    let shutdown_grace = match get(SHUTDOWN_GRACE) {
        Some(value) if is_duration(value) => Some(value.to_owned()),
        Some(value) => {
            return Err(AnnotationError::NotADuration {
                key: SHUTDOWN_GRACE,
                value: value.into(),
            });
        }
        None => None,
    };
    Ok(Settings {
        coordinator,
        application_id: usable(APPLICATION_ID, application_id)?,
        service_group: usable(
            SERVICE_GROUP,
            get(SERVICE_GROUP).unwrap_or(DEFAULT_SERVICE_GROUP),
        )?,
        native: flag(annotations, NATIVE_SIDECAR)?.unwrap_or(config.native_sidecar),
        image: usable(
            SIDECAR_IMAGE,
            get(SIDECAR_IMAGE).unwrap_or(&config.sidecar_image),
        )?,
        resources: resources(annotations, &config.resources)?,
        log_level,
        grpc_port,
        http_port,
        shutdown_grace,
    })
}

fn annotations(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.annotations.as_ref().unwrap_or(&EMPTY)
}

fn flag(
    annotations: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Option<bool>, AnnotationError> {
    match annotations.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(value) => Err(AnnotationError::NotABool {
            key,
            value: value.into(),
        }),
    }
}

fn port(
    annotations: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Option<u16>, AnnotationError> {
    let Some(value) = annotations.get(key) else {
        return Ok(None);
    };
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(Some(port)),
        _ => Err(AnnotationError::NotAPort {
            key,
            value: value.clone(),
        }),
    }
}

/// `name` or `namespace/name`, each a DNS label.
fn coordinator(value: &str, namespace: &str) -> Result<(String, String), AnnotationError> {
    let (ns, name) = value.split_once('/').unwrap_or((namespace, value));
    match is_dns_label(ns) && is_dns_label(name) {
        true => Ok((ns.to_owned(), name.to_owned())),
        false => Err(AnnotationError::BadCoordinator(value.to_owned())),
    }
}

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

fn usable(key: &'static str, value: &str) -> Result<String, AnnotationError> {
    match value.trim().is_empty() || value.contains(['\n', '\r']) {
        true => Err(AnnotationError::Unusable {
            key,
            value: value.into(),
        }),
        false => Ok(value.to_owned()),
    }
}

/// `tracing` filter directives: levels, targets, `=`, `,`.
fn is_log_filter(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_=,:.-".contains(&b))
}

/// What the sidecar's duration flags read: a number and a unit.
fn is_duration(value: &str) -> bool {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(&value[digits..], "ms" | "s" | "m" | "h")
}

/// A Kubernetes quantity in its usual forms: `250m`, `0.5`, `128Mi`, `1G`, `1e3`.
fn is_quantity(value: &str) -> bool {
    let number = value
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (digits, suffix) = value.split_at(number);
    let numeric = !digits.is_empty() && digits != "." && digits.matches('.').count() <= 1;
    let exponent = suffix.strip_prefix(['e', 'E']).is_some_and(|e| {
        !e.is_empty()
            && e.trim_start_matches(['+', '-'])
                .bytes()
                .all(|b| b.is_ascii_digit())
    });
    let unit = matches!(
        suffix,
        "" | "m"
            | "n"
            | "u"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
            | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
    );
    numeric && (unit || exponent)
}

/// The injector's resources, with any of the four annotations over them.
fn resources(
    annotations: &BTreeMap<String, String>,
    defaults: &ResourceRequirements,
) -> Result<ResourceRequirements, AnnotationError> {
    let mut resources = defaults.clone();
    for (key, limit, resource) in [
        (CPU_REQUEST, false, "cpu"),
        (CPU_LIMIT, true, "cpu"),
        (MEMORY_REQUEST, false, "memory"),
        (MEMORY_LIMIT, true, "memory"),
    ] {
        let Some(value) = annotations.get(key) else {
            continue;
        };
        if !is_quantity(value) {
            return Err(AnnotationError::NotAQuantity {
                key,
                value: value.clone(),
            });
        }
        let map = match limit {
            true => &mut resources.limits,
            false => &mut resources.requests,
        };
        map.get_or_insert_with(BTreeMap::new)
            .insert(resource.to_owned(), Quantity(value.clone()));
    }
    Ok(resources)
}

#[cfg(test)]
mod tests;
