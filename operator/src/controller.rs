//! The reconciler: validate → read (StatefulSet, pods, the group's view) → decide the one
//! next membership step → build → server-side apply → the step's membership call → status,
//! behind a finalizer, with an Event for each lifecycle action and each step.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use txmesh_crds::TransactionCoordinator;
use txmesh_crds::v1alpha1::Phase;

use crate::admin::{AdminClient, AdminError, Change, ClusterView};
use crate::build::{
    self, ADMIN_TOKEN_KEY, BuildConfig, BuildError, Desired, service_monitor_resource,
};
use crate::catch_up::{CatchUpWatch, DEFAULT_STALL_WINDOW};
use crate::membership::{self, Call, Observed, PodState, Report, SetState};
use crate::metrics::Metrics;
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
    /// The pods' names do not say their ordinals (not this operator's StatefulSet).
    #[error("pod {0} has no ordinal")]
    PodOrdinal(String),
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
    /// Counts and times reconciles.
    pub metrics: Arc<Metrics>,
    /// Which learners have stopped catching up.
    pub catch_up: CatchUpWatch,
    /// Where a test double of the coordinators listens.
    #[cfg(test)]
    admin_route: Option<std::net::SocketAddr>,
}

impl Context {
    /// The context of a reconciler that talks to the API server with `client`.
    pub fn new(
        client: Client,
        recorder: Recorder,
        build: BuildConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            recorder,
            build,
            metrics,
            catch_up: CatchUpWatch::new(DEFAULT_STALL_WINDOW),
            #[cfg(test)]
            admin_route: None,
        }
    }

    /// Calls a learner stalled after `window` without progress (default
    /// [`DEFAULT_STALL_WINDOW`]).
    pub fn with_stall_window(mut self, window: Duration) -> Self {
        self.catch_up = CatchUpWatch::new(window);
        self
    }

    /// A client of a group's admin API with its token.
    fn admin(&self, tc: &TransactionCoordinator, token: String) -> AdminClient {
        // A change commits within 10 s; a transfer settles within its bound.
        let timeout = build::leadership_transfer_bound(tc).max(Duration::from_secs(10))
            + Duration::from_secs(5);
        let client = AdminClient::new(token, timeout);
        #[cfg(test)]
        let client = client.routed(self.admin_route);
        client
    }
}

/// Reconciles one TransactionCoordinator.
pub async fn reconcile(
    tc: Arc<TransactionCoordinator>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_started();
    let namespace = tc
        .namespace()
        .ok_or(Error::Build(BuildError::MissingMetadata("namespace")))?;
    let api: Api<TransactionCoordinator> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, tc, |event| async {
        match event {
            finalizer::Event::Apply(tc) => apply(&tc, &ctx, &api).await,
            finalizer::Event::Cleanup(tc) => cleanup(&tc, &ctx).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)));
    ctx.metrics.reconcile_finished(timer, result.is_ok());
    result
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
    if let Err(error) = build::validate(tc) {
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
    let namespace = tc
        .namespace()
        .ok_or(Error::Build(BuildError::MissingMetadata("namespace")))?;
    let seen = observe(tc, ctx, &namespace).await?;
    let template_hash = build::template_hash(tc, &ctx.build).map_err(Error::Build)?;
    let stalled = match &seen.view {
        Some(view) if view.is_leaders() => {
            ctx.catch_up
                .stalled(&group_key(tc), view, std::time::Instant::now())
        }
        _ => BTreeSet::new(),
    };
    let decision = membership::decide(&Observed {
        replicas: tc.spec.replicas,
        name: &tc.name_any(),
        set: seen.set.as_ref(),
        template_hash: &template_hash,
        pods: &seen.pods,
        view: seen.view.as_ref(),
        stalled: &stalled,
    });
    let desired = build::desired(tc, &ctx.build, decision.pods).map_err(Error::Build)?;
    let stateful_set = match apply_objects(tc, ctx, desired, &seen.token).await {
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
    let report = match (decision.change, &seen.view) {
        (Some(call), Some(view)) => {
            let admin = ctx.admin(tc, seen.token.clone());
            membership_call(tc, ctx, &admin, view, call, &decision.report).await?
        }
        _ => decision.report.clone(),
    };
    if decision.resized
        && let Report::Progressing { reason, message } = &report
    {
        publish(ctx, tc, EventType::Normal, reason, "Scale", message.clone()).await?;
    }
    if let Report::Blocked { reason, message } = &report
        && status::is_new_blocker(tc, reason, message)
    {
        publish(
            ctx,
            tc,
            EventType::Warning,
            reason,
            "Membership",
            message.clone(),
        )
        .await?;
    }
    let outcome = Outcome::Applied {
        stateful_set: &stateful_set,
        view: seen.view.as_ref(),
        report: &report,
        client_endpoint: build::client_endpoint(tc, &ctx.build).map_err(Error::Build)?,
        selector: build::pod_selector(tc).map_err(Error::Build)?,
    };
    let status = patch_status(api, tc, &outcome).await?;
    Ok(match status.phase {
        Some(Phase::Available) => Action::requeue(SETTLED_REQUEUE),
        _ => Action::requeue(PROGRESS_REQUEUE),
    })
}

/// What a reconcile reads before deciding.
struct Seen {
    set: Option<SetState>,
    pods: Vec<PodState>,
    view: Option<ClusterView>,
    token: String,
}

/// Reads the StatefulSet, its pods, the admin token and (once the group exists) its view.
async fn observe(
    tc: &TransactionCoordinator,
    ctx: &Context,
    namespace: &str,
) -> Result<Seen, Error> {
    let name = tc.name_any();
    let client = &ctx.client;
    let stateful_set = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .get_opt(&name)
        .await
        .map_err(kube_error(format!("read StatefulSet {name}")))?;
    let token = admin_token(client, tc, namespace).await?;
    let Some(stateful_set) = stateful_set else {
        return Ok(Seen {
            set: None,
            pods: Vec::new(),
            view: None,
            token,
        });
    };
    let set = set_state(&stateful_set);
    let selector = build::pod_selector(tc).map_err(Error::Build)?;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_error(format!("list the pods of {name}")))?
        .items
        .iter()
        .map(|pod| pod_state(&name, pod))
        .collect::<Result<Vec<_>, _>>()?;
    let addresses = build::admin_addresses(tc, &ctx.build, set.replicas).map_err(Error::Build)?;
    let view = match ctx.admin(tc, token.clone()).view(&addresses).await {
        Ok(view) => Some(view),
        Err(error) => {
            tracing::debug!(%error, "no coordinator answered");
            None
        }
    };
    Ok(Seen {
        set: Some(set),
        pods,
        view,
        token,
    })
}

fn set_state(stateful_set: &StatefulSet) -> SetState {
    let spec = &stateful_set.spec;
    let status = stateful_set.status.as_ref();
    // The revision is current only once the controller has seen the latest spec.
    let current = status.and_then(|s| s.observed_generation) == stateful_set.metadata.generation;
    SetState {
        replicas: spec.replicas.unwrap_or(1),
        partition: spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref()?.partition)
            .unwrap_or(0),
        template_hash: stateful_set
            .annotations()
            .get(build::TEMPLATE_HASH_ANNOTATION)
            .cloned(),
        update_revision: status
            .and_then(|s| s.update_revision.clone())
            .filter(|_| current),
    }
}

fn pod_state(set_name: &str, pod: &Pod) -> Result<PodState, Error> {
    let name = pod.name_any();
    let ordinal = name
        .strip_prefix(set_name)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|ordinal| ordinal.parse().ok())
        .ok_or_else(|| Error::PodOrdinal(name.clone()))?;
    let status = pod.status.as_ref();
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let started = status
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|containers| containers.iter().any(|c| c.started == Some(true)));
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
    Ok(PodState {
        ordinal,
        started: started && !terminating,
        ready: ready && !terminating,
        revision: pod.labels().get("controller-revision-hash").cloned(),
        failure: status.and_then(pod_failure),
    })
}

/// The kubelet's reasons for a container that will not run until its spec or its image
/// changes.
const STUCK_REASONS: [&str; 7] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why a pod's container is stuck: `Reason: message`.
fn pod_failure(status: &PodStatus) -> Option<String> {
    let containers = status.init_container_statuses.iter().flatten();
    let mut containers = containers.chain(status.container_statuses.iter().flatten());
    containers.find_map(|container| {
        let waiting = container.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        STUCK_REASONS
            .contains(&reason)
            .then(|| match &waiting.message {
                Some(message) => format!("{reason}: {message}"),
                None => reason.to_owned(),
            })
    })
}

/// Makes a membership change on the leader, with an Event; a refusal becomes what to report.
async fn membership_call(
    tc: &TransactionCoordinator,
    ctx: &Context,
    admin: &AdminClient,
    view: &ClusterView,
    call: Call,
    planned: &Report,
) -> Result<Report, Error> {
    let (change, action) = match call {
        Call::AddLearner(ordinal) => (
            Change::AddLearner {
                id: membership::node_id(ordinal),
                address: build::raft_address(tc, &ctx.build, ordinal).map_err(Error::Build)?,
            },
            "AddLearner",
        ),
        Call::Promote(ordinal) => (Change::Promote(membership::node_id(ordinal)), "Promote"),
        Call::TransferLeadership(ordinal) => (
            Change::TransferLeadership(membership::node_id(ordinal)),
            "TransferLeadership",
        ),
        Call::Remove(ordinal) => (Change::Remove(membership::node_id(ordinal)), "RemoveMember"),
    };
    let (reason, message) = match planned {
        Report::Progressing { reason, message } => (*reason, message.clone()),
        _ => ("Membership", format!("{change:?}")),
    };
    let leader = view
        .leader_admin_address
        .clone()
        .or_else(|| {
            let ordinal = i32::try_from(view.leader_id?.checked_sub(1)?).ok()?;
            let addresses = build::admin_addresses(tc, &ctx.build, ordinal + 1).ok()?;
            addresses.last().cloned()
        })
        .unwrap_or_default();
    match admin.change(&leader, &change).await {
        Ok(_) => {
            publish(ctx, tc, EventType::Normal, reason, action, message.clone()).await?;
            Ok(Report::Progressing { reason, message })
        }
        Err(error) => {
            tracing::info!(%error, ?change, "membership change not made");
            Ok(refused(reason, &message, &error))
        }
    }
}

/// What to report when a membership change was not made: a retry for what passes by itself
/// (another change under way, a learner still catching up, an election), a blocker otherwise.
fn refused(reason: &'static str, message: &str, error: &AdminError) -> Report {
    match error.code() {
        Some("Busy" | "NotCaughtUp" | "NotLeader" | "Timeout" | "TransferWentElsewhere") => {
            Report::Progressing {
                reason,
                message: format!("{message}: not yet ({error}); retrying"),
            }
        }
        Some("WouldLoseQuorum") => Report::Blocked {
            reason: "QuorumAtRisk",
            message: format!("{message}: refused ({error})"),
        },
        _ => Report::Blocked {
            reason: "MembershipChangeFailed",
            message: format!("{message}: {error}"),
        },
    }
}

/// Server-side applies every object; returns the StatefulSet as applied.
async fn apply_objects(
    tc: &TransactionCoordinator,
    ctx: &Context,
    desired: Desired,
    token: &str,
) -> Result<StatefulSet, Error> {
    let namespace = desired
        .stateful_set
        .namespace()
        .ok_or(Error::Build(BuildError::MissingMetadata("namespace")))?;
    let client = &ctx.client;
    let secret = build::admin_token_secret(tc, token).map_err(Error::Build)?;
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
    ctx.catch_up.forget(&group_key(tc));
    Ok(Action::await_change())
}

/// Tells groups apart across deletions and re-creations under the same name.
fn group_key(tc: &TransactionCoordinator) -> String {
    tc.uid()
        .unwrap_or_else(|| format!("{}/{}", tc.namespace().unwrap_or_default(), tc.name_any()))
}

#[cfg(test)]
mod tests;
