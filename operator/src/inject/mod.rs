//! The sidecar injector: a mutating admission webhook that gives opted-in pods the txmesh
//! sidecar. Pods annotated `txmesh.io/inject: "true"` come through [`Route::Pod`]; every pod
//! in a namespace labelled `txmesh.io/injection=enabled` comes through [`Route::Namespace`]
//! (and may opt out with `"false"`). [`review`] decides (pure); [`webhook`] serves it over
//! HTTPS with a certificate that [`certs`] makes, rotates and publishes in the webhook
//! configuration's caBundle.

pub mod annotations;
pub mod certs;
pub mod patch;
pub mod publish;
pub mod tls;
pub mod watchdog;
pub mod webhook;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

/// Which webhook a pod came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A namespace without the injection label: only pods that ask get the sidecar.
    Pod,
    /// A namespace labelled `txmesh.io/injection=enabled`: every pod but those that opt out.
    Namespace,
}

/// What every injected sidecar starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectorConfig {
    /// The sidecar's image.
    pub sidecar_image: String,
    /// Native sidecars (Kubernetes 1.29 and later), unless a pod says otherwise.
    pub native_sidecar: bool,
    /// The sidecar's resources, unless a pod says otherwise.
    pub resources: ResourceRequirements,
    /// The TransactionCoordinator (`namespace/name`) of pods that name none.
    pub default_coordinator: Option<String>,
}

/// The sidecar a pod in `namespace` that came through `route` gets: `None` when it asked for
/// none, an error when it asked but an annotation is unusable (the webhook refuses it).
pub fn sidecar_settings(
    route: Route,
    pod: &Pod,
    namespace: &str,
    config: &InjectorConfig,
) -> Result<Option<annotations::Settings>, annotations::AnnotationError> {
    let wanted = annotations::wants_sidecar(route, pod)?;
    wanted
        .then(|| annotations::settings(pod, namespace, config))
        .transpose()
}

/// The answer to one admission request: the pod unchanged, the pod with its sidecar, or a
/// refusal naming the annotation that is wrong.
pub fn review(
    route: Route,
    request: &AdmissionRequest<Pod>,
    config: &InjectorConfig,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(pod) = &request.object else {
        return response;
    };
    if request.operation != Operation::Create || patch::has_sidecar(pod) {
        // Reinvocation after another webhook, or a pod made with its sidecar: done already.
        return response;
    }
    let namespace = request.namespace.as_deref().unwrap_or("default");
    let settings = sidecar_settings(route, pod, namespace, config);
    let pod_name = pod
        .metadata
        .name
        .as_deref()
        .or(pod.metadata.generate_name.as_deref())
        .unwrap_or_default();
    match settings {
        Ok(None) => response,
        Ok(Some(settings)) => {
            let ops = patch::sidecar_patch(pod, &settings);
            tracing::info!(namespace, pod = pod_name, coordinator = ?settings.coordinator, native = settings.native, "injecting the sidecar");
            match response.clone().with_patch(json_patch::Patch(ops)) {
                Ok(patched) => patched,
                Err(error) => response.deny(format!("txmesh injector: {error}")),
            }
        }
        Err(error) => {
            tracing::warn!(namespace, pod = pod_name, %error, "refusing a pod that asks for the sidecar");
            response.deny(format!("txmesh sidecar injection: {error}"))
        }
    }
}

#[cfg(test)]
mod tests;
