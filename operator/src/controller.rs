//! The reconciler: read → validate → build → server-side apply → status, behind a finalizer,
//! with an Event for each lifecycle action.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use txmesh_crds::TransactionCoordinator;
use txmesh_crds::v1alpha1::Phase;

use crate::build::{
    self, ADMIN_TOKEN_KEY, BuildConfig, BuildError, Desired, service_monitor_resource,
};
use crate::status::{self, Outcome};

/// The field manager of everything the operator applies, and the finalizer's prefix.
pub const MANAGER: &str = "txmesh-operator";
/// The finalizer on every TransactionCoordinator.
pub const FINALIZER: &str = "txmesh.io/coordinator";

/// How often a settled group is looked at again, and a changing one.
const SETTLED_REQUEUE: Duration = Duration::from_secs(300);
const PROGRESS_REQUEUE: Duration = Duration::from_secs(10);
/// Back-off after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(30);

/// Why a reconcile failed (and is retried after a back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
    /// The objects could not be built for a reason other than the spec.
    #[error(transparent)]
    Build(BuildError),
    /// The operating system gave no randomness for a new admin token.
    #[error("cannot generate the admin token: {0}")]
    Random(getrandom::Error),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Cluster settings for the build functions.
    pub build: BuildConfig,
}

/// Reconciles one TransactionCoordinator.
pub async fn reconcile(
    tc: Arc<TransactionCoordinator>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = tc
        .namespace()
        .ok_or(Error::Build(BuildError::MissingMetadata("namespace")))?;
    let api: Api<TransactionCoordinator> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, tc, |event| async {
        match event {
            finalizer::Event::Apply(tc) => apply(&tc, &ctx, &api).await,
            finalizer::Event::Cleanup(tc) => cleanup(&tc, &ctx).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

/// After a failure: try again after a back-off, never at once.
pub fn error_policy(_tc: Arc<TransactionCoordinator>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

async fn apply(
    tc: &TransactionCoordinator,
    ctx: &Context,
    api: &Api<TransactionCoordinator>,
) -> Result<Action, Error> {
    if tc.spec.paused {
        if tc.status.as_ref().and_then(|s| s.phase) != Some(Phase::Paused) {
            publish(
                ctx,
                tc,
                EventType::Normal,
                "Paused",
                "Pause",
                "spec.paused is set: no changes are made".into(),
            )
            .await?;
        }
        patch_status(api, tc, &Outcome::Paused).await?;
        return Ok(Action::requeue(SETTLED_REQUEUE));
    }
    let desired = match build::desired(tc, &ctx.build) {
        Ok(desired) => desired,
        Err(BuildError::InvalidSpec(error)) => {
            let message = error.to_string();
            publish(
                ctx,
                tc,
                EventType::Warning,
                "InvalidSpec",
                "Validate",
                message.clone(),
            )
            .await?;
            patch_status(api, tc, &Outcome::InvalidSpec(message)).await?;
            // Only a spec change can help: wait for it rather than retry.
            return Ok(Action::await_change());
        }
        Err(error) => return Err(Error::Build(error)),
    };
    let stateful_set = match apply_objects(tc, ctx, desired).await {
        Ok(stateful_set) => stateful_set,
        Err(error) => {
            let message = error.to_string();
            publish(
                ctx,
                tc,
                EventType::Warning,
                "ApplyFailed",
                "Apply",
                message.clone(),
            )
            .await?;
            patch_status(api, tc, &Outcome::ApplyFailed(message)).await?;
            return Err(error);
        }
    };
    if status::is_new_generation(tc) {
        let (reason, note) = match tc.status {
            None => ("Created", "Created"),
            Some(_) => ("Applied", "Applied"),
        };
        let note = format!(
            "{note} generation {}: {} coordinators of {}",
            tc.metadata.generation.unwrap_or(0),
            tc.spec.replicas,
            tc.spec.image
        );
        publish(ctx, tc, EventType::Normal, reason, "Apply", note).await?;
    }
    let outcome = Outcome::Applied {
        stateful_set: &stateful_set,
        client_endpoint: build::client_endpoint(tc, &ctx.build).map_err(Error::Build)?,
        selector: build::pod_selector(tc).map_err(Error::Build)?,
    };
    let status = patch_status(api, tc, &outcome).await?;
    Ok(match status.phase {
        Some(Phase::Available) => Action::requeue(SETTLED_REQUEUE),
        _ => Action::requeue(PROGRESS_REQUEUE),
    })
}

/// Server-side applies every object; returns the StatefulSet as applied.
async fn apply_objects(
    tc: &TransactionCoordinator,
    ctx: &Context,
    desired: Desired,
) -> Result<StatefulSet, Error> {
    let namespace = desired
        .stateful_set
        .namespace()
        .ok_or(Error::Build(BuildError::MissingMetadata("namespace")))?;
    let client = &ctx.client;
    let secret = build::admin_token_secret(tc, &admin_token(client, tc, &namespace).await?)
        .map_err(Error::Build)?;
    apply_object(
        &Api::<Secret>::namespaced(client.clone(), &namespace),
        &secret,
    )
    .await?;
    apply_object(
        &Api::<ConfigMap>::namespaced(client.clone(), &namespace),
        &desired.config_map,
    )
    .await?;
    let services = Api::<Service>::namespaced(client.clone(), &namespace);
    apply_object(&services, &desired.peer_service).await?;
    apply_object(&services, &desired.client_service).await?;
    let stateful_set = apply_object(
        &Api::<StatefulSet>::namespaced(client.clone(), &namespace),
        &desired.stateful_set,
    )
    .await?;
    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace);
    match &desired.pod_disruption_budget {
        Some(pdb) => {
            apply_object(&pdbs, pdb).await?;
        }
        None => delete_if_present(&pdbs, &tc.name_any()).await?,
    }
    let monitors = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &namespace,
        &service_monitor_resource(),
    );
    match &desired.service_monitor {
        Some(monitor) => {
            apply_object(&monitors, monitor).await?;
        }
        None => delete_if_present(&monitors, &tc.name_any()).await?,
    }
    Ok(stateful_set)
}

/// The admin token already in the Secret, or a new random one (32 bytes, hex).
async fn admin_token(
    client: &Client,
    tc: &TransactionCoordinator,
    namespace: &str,
) -> Result<String, Error> {
    let name = build::admin_token_secret_name(tc);
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let existing = secrets
        .get_opt(&name)
        .await
        .map_err(kube_error(format!("read Secret {name}")))?
        .and_then(|secret| secret.data?.remove(ADMIN_TOKEN_KEY))
        .and_then(|token| String::from_utf8(token.0).ok())
        .filter(|token| !token.is_empty());
    if let Some(token) = existing {
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(hex::encode(bytes))
}

async fn apply_object<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = object.name_any();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(kube_error(format!("apply {} {name}", kind::<K>())))
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        // Not allowed to delete it: then the operator was not allowed to create it either
        // (a ServiceMonitor without the chart's optional RBAC), so none of its own exists.
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        Err(source) => Err(Error::Kube {
            action: format!("delete {name}"),
            source,
        }),
    }
}

/// The Rust type of an object (its kind, for typed ones), for messages.
fn kind<K>() -> &'static str {
    let name = std::any::type_name::<K>();
    name.rsplit("::").next().unwrap_or(name)
}

async fn patch_status(
    api: &Api<TransactionCoordinator>,
    tc: &TransactionCoordinator,
    outcome: &Outcome<'_>,
) -> Result<txmesh_crds::TransactionCoordinatorStatus, Error> {
    let status = status::status(tc, outcome, &Time(Timestamp::now()));
    let patch = json!({
        "apiVersion": TransactionCoordinator::api_version(&()),
        "kind": TransactionCoordinator::kind(&()),
        "status": status,
    });
    api.patch_status(
        &tc.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kube_error("update the status"))?;
    Ok(status)
}

async fn publish(
    ctx: &Context,
    tc: &TransactionCoordinator,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) -> Result<(), Error> {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    ctx.recorder
        .publish(&event, &tc.object_ref(&()))
        .await
        .map_err(kube_error(format!("publish the {reason} Event")))
}

/// On deletion: the owned objects go with the resource (owner references); the volumes stay
/// or go per `spec.storage.retention`.
async fn cleanup(tc: &TransactionCoordinator, ctx: &Context) -> Result<Action, Error> {
    publish(
        ctx,
        tc,
        EventType::Normal,
        "Deleting",
        "Delete",
        format!(
            "Deleting the coordinator group; volumes: {}",
            tc.spec.storage.retention.as_str()
        ),
    )
    .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
