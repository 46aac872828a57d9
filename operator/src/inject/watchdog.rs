//! The injection watchdog. A pod that asked for the sidecar but was created while no injector
//! answered the `Ignore` webhook runs without it; a periodic sweep finds such pods and evicts
//! them, so that their controller creates them again, through the webhook this time.
//! Evictions respect PodDisruptionBudgets and are capped per sweep; a pod without a controller
//! only gets a Warning Event, as nothing would create it again.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, EvictParams, ListParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};

use super::patch::has_sidecar;
use super::{InjectorConfig, Route, sidecar_settings};

/// The namespace label that opts every pod in, or (`disabled`) keeps the injector out.
pub const INJECTION_LABEL: &str = "txmesh.io/injection";
/// Namespaces the webhook never sees, besides the operator's own.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
/// Pods per list request.
const PAGE: u32 = 500;

/// How the watchdog sweeps.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogConfig {
    /// Time between sweeps.
    pub interval: Duration,
    /// At most this many evictions per sweep.
    pub max_evictions: usize,
    /// Namespaces the webhook excludes (the system ones and the operator's).
    pub excluded: BTreeSet<String>,
    /// The injector's settings: a pod it would refuse is not evicted.
    pub injector: Arc<InjectorConfig>,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Pods looked at.
    pub pods: usize,
    /// Pods evicted (`namespace/name`).
    pub evicted: Vec<String>,
    /// Pods without the sidecar left for a later sweep: a PodDisruptionBudget refused, or
    /// the cap was reached.
    pub deferred: Vec<String>,
    /// Pods without the sidecar and without a controller: reported only.
    pub reported: Vec<String>,
}

/// Whether `pod` asked for the sidecar and runs without it. `labelled`: the namespaces
/// labelled `txmesh.io/injection=enabled`; `excluded`: those the webhook never sees.
pub fn lacks_sidecar(
    pod: &Pod,
    labelled: &BTreeSet<String>,
    excluded: &BTreeSet<String>,
    injector: &InjectorConfig,
) -> bool {
    let namespace = pod.namespace().unwrap_or_default();
    let operators = pod
        .labels()
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        == Some("txmesh-operator");
    if excluded.contains(&namespace)
        || operators
        || pod.metadata.deletion_timestamp.is_some()
        || has_sidecar(pod)
    {
        return false;
    }
    let route = match labelled.contains(&namespace) {
        true => Route::Namespace,
        false => Route::Pod,
    };
    // A pod the injector would refuse is better left running: evicted, it would not come back.
    matches!(
        sidecar_settings(route, pod, &namespace, injector),
        Ok(Some(_))
    )
}

/// Sweeps until `stopped` completes.
pub async fn run(
    client: Client,
    recorder: Recorder,
    config: WatchdogConfig,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    loop {
        match sweep(&client, &recorder, &config).await {
            Ok(swept)
                if swept.evicted.is_empty()
                    && swept.deferred.is_empty()
                    && swept.reported.is_empty() =>
            {
                tracing::debug!(pods = swept.pods, "no pod lacks its sidecar");
            }
            Ok(swept) => tracing::warn!(
                pods = swept.pods,
                evicted = ?swept.evicted,
                deferred = ?swept.deferred,
                reported = ?swept.reported,
                "pods started without their sidecar"
            ),
            Err(error) => tracing::warn!(%error, "the injection watchdog could not sweep"),
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            () = &mut stopped => return,
        }
    }
}

/// One sweep over every pod.
pub async fn sweep(
    client: &Client,
    recorder: &Recorder,
    config: &WatchdogConfig,
) -> Result<Swept, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut labelled = BTreeSet::new();
    let mut excluded = config.excluded.clone();
    for namespace in namespaces
        .list(&ListParams::default().labels(INJECTION_LABEL))
        .await?
    {
        match namespace.labels().get(INJECTION_LABEL).map(String::as_str) {
            Some("enabled") => labelled.insert(namespace.name_any()),
            Some("disabled") => excluded.insert(namespace.name_any()),
            _ => false,
        };
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let mut swept = Swept::default();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = pods.list(&params).await?;
        swept.pods += page.items.len();
        for pod in page
            .items
            .iter()
            .filter(|p| lacks_sidecar(p, &labelled, &excluded, &config.injector))
        {
            act(client, recorder, config, pod, &mut swept).await?;
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(swept),
        }
    }
}

/// Evicts `pod`, or reports it.
async fn act(
    client: &Client,
    recorder: &Recorder,
    config: &WatchdogConfig,
    pod: &Pod,
    swept: &mut Swept,
) -> Result<(), kube::Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = format!("{namespace}/{}", pod.name_any());
    let controlled = pod
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true));
    if !controlled {
        let note = "started without the txmesh sidecar it asked for (no injector answered); \
                    it has no controller to create it again: delete and recreate it";
        publish(recorder, pod, note).await?;
        swept.reported.push(name);
        return Ok(());
    }
    if swept.evicted.len() >= config.max_evictions {
        swept.deferred.push(name);
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    match api.evict(&pod.name_any(), &EvictParams::default()).await {
        Ok(_) => {
            let note = "started without the txmesh sidecar it asked for (no injector answered): \
                        evicted, so that its controller creates it again with the sidecar";
            publish(recorder, pod, note).await?;
            swept.evicted.push(name);
        }
        // A PodDisruptionBudget allows no disruption now: a later sweep.
        Err(kube::Error::Api(status)) if status.code == 429 => swept.deferred.push(name),
        // Gone meanwhile.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(error),
    }
    Ok(())
}

async fn publish(recorder: &Recorder, pod: &Pod, note: &str) -> Result<(), kube::Error> {
    let event = Event {
        type_: EventType::Warning,
        reason: "SidecarMissing".into(),
        note: Some(note.into()),
        action: "Inject".into(),
        secondary: None,
    };
    recorder.publish(&event, &pod.object_ref(&())).await
}

#[cfg(test)]
mod tests;
