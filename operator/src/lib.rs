//! `txmesh-operator`: the Kubernetes operator that runs `TransactionCoordinator` resources as
//! Raft groups of coordinators.
//!
//! [`build`] turns a resource into the objects that run it (pure functions, pinned by golden
//! tests and validated against the Kubernetes schemas); [`controller`] reconciles: read →
//! validate → build → server-side apply → status ([`status`]), with a finalizer and Events.

pub mod admin;
pub mod build;
pub mod controller;
pub mod membership;
pub mod metrics;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use txmesh_crds::TransactionCoordinator;

use crate::build::BuildConfig;
use crate::controller::{Context, MANAGER, error_policy, reconcile};

/// What `run` needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorConfig {
    /// Watch only this namespace; all namespaces when unset.
    pub namespace: Option<String>,
    /// Settings of the cluster the objects are built for.
    pub build: BuildConfig,
    /// Who reports the Events (the operator pod's name); the operator's name when unset.
    pub instance: Option<String>,
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable Kubernetes configuration (in-cluster or kubeconfig).
    // The source is not repeated here: `{:#}` prints the chain.
    #[error("cannot configure a Kubernetes client")]
    Client(#[source] kube::Error),
    /// The API server did not answer the first request.
    #[error("cannot list TransactionCoordinators")]
    Unreachable(#[source] kube::Error),
    /// The TransactionCoordinator CRD is not served.
    #[error(
        "cannot list TransactionCoordinators (is the CRD installed? `txmesh crd | kubectl apply -f -`)"
    )]
    CrdMissing(#[source] kube::Error),
}

/// Runs the controller until `shutdown` completes; reconciles in flight finish first.
pub async fn run(
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::Client)?;
    let coordinators: Api<TransactionCoordinator> = api(&client, &config.namespace);
    coordinators
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|error| match &error {
            kube::Error::Api(status) if status.is_not_found() => Error::CrdMissing(error),
            _ => Error::Unreachable(error),
        })?;

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: config.instance.clone(),
        },
    );
    let metrics = Arc::new(metrics::Metrics::default());
    let context = Arc::new(Context::new(
        client.clone(),
        recorder,
        config.build.clone(),
        metrics,
    ));
    // Only the objects this operator made: no cache of every Secret in the cluster.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=txmesh-operator");
    // The controller wants a shutdown trigger that is also Sync; a channel makes one.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(());
    });
    tracing::info!(namespace = ?config.namespace, "operator started");
    Controller::new(coordinators, watcher::Config::default())
        .owns(
            api::<StatefulSet>(&client, &config.namespace),
            owned.clone(),
        )
        .owns(api::<ConfigMap>(&client, &config.namespace), owned.clone())
        .owns(api::<Service>(&client, &config.namespace), owned.clone())
        .owns(api::<Secret>(&client, &config.namespace), owned.clone())
        .owns(
            api::<PodDisruptionBudget>(&client, &config.namespace),
            owned,
        )
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => tracing::debug!(%object.name, ?action, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile failed"),
            }
        })
        .await;
    tracing::info!("operator stopped");
    Ok(())
}

/// An API of `K` in `namespace`, or in all namespaces.
fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}
