//! `txmesh-operator`: the Kubernetes operator that runs `TransactionCoordinator` resources as
//! Raft groups of coordinators.
//!
//! [`build`] turns a resource into the objects that run it (pure functions, pinned by golden
//! tests and validated against the Kubernetes schemas); [`controller`] reconciles: read →
//! validate → decide the next membership step ([`membership`], through the coordinators'
//! admin API: [`admin`]) → build → server-side apply → status ([`status`]), with a finalizer
//! and Events. The process serves `/healthz`, `/readyz` and `/metrics` ([`server`]) and
//! reconciles only while it holds the leader Lease ([`lease`]).

pub mod admin;
pub mod build;
pub mod catch_up;
pub mod controller;
#[cfg(test)]
mod fixtures;
pub mod inject;
pub mod lease;
pub mod membership;
pub mod metrics;
#[cfg(test)]
mod mock_api;
pub mod server;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    /// Watch only this namespace; all namespaces when unset.
    pub namespace: Option<String>,
    /// Settings of the cluster the objects are built for.
    pub build: BuildConfig,
    /// Who reports the Events and holds the Lease (the operator pod's name); the operator's
    /// name (Events) and a random identity (Lease) when unset.
    pub instance: Option<String>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_addr: SocketAddr,
    /// Leader election; `None` when this is the only replica.
    pub leader_election: Option<LeaderElection>,
    /// How long a reachable learner's log may stand still before its join is reported as
    /// blocked ([`catch_up`]).
    pub stall_window: Duration,
    /// The sidecar injector webhook; `None` serves none.
    pub injector: Option<InjectorSetup>,
}

/// The sidecar injector webhook ([`inject`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InjectorSetup {
    /// Where its HTTPS server listens.
    pub addr: SocketAddr,
    /// Where its certificate comes from.
    pub certs: inject::publish::CertSource,
    /// The sidecar's image.
    pub sidecar_image: String,
    /// Native sidecars: `None` for when the API server supports them (1.29 and later).
    pub native_sidecar: Option<bool>,
    /// The sidecar's resources.
    pub resources: k8s_openapi::api::core::v1::ResourceRequirements,
    /// The TransactionCoordinator (`namespace/name`) of pods that name none.
    pub default_coordinator: Option<String>,
    /// How often the Lease holder sweeps for pods that started without their sidecar
    /// ([`inject::watchdog`]); `None`: never.
    pub watchdog_interval: Option<Duration>,
    /// At most this many evictions per sweep.
    pub watchdog_max_evictions: usize,
}

/// The leader Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// The Lease's name.
    pub lease_name: String,
    /// Its namespace; the client's default namespace (the pod's own in a cluster) when unset.
    pub lease_namespace: Option<String>,
    /// How long the Lease holds without renewal.
    pub lease_duration: Duration,
    /// How often it is renewed.
    pub renew_every: Duration,
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
    /// The HTTP address could not be bound.
    #[error("cannot serve HTTP on {addr}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The injector webhook cannot serve.
    #[error(transparent)]
    Webhook(#[from] inject::webhook::WebhookError),
    /// Another replica may have taken the Lease: this one stopped reconciling.
    #[error("lost the leader Lease {0}")]
    LostLeadership(String),
}

/// Runs the controller until `shutdown` completes; reconciles in flight finish first.
pub async fn run(
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    // One shutdown signal, awaited in several places.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };

    let probes = Arc::new(server::Probes::default());
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| Error::Http {
            addr: config.http_addr,
            source,
        })?;
    let app = server::router(probes.clone());
    let serving = stopped();
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(serving);
        if let Err(error) = served.await {
            tracing::warn!(%error, "the HTTP endpoints stopped");
        }
    });

    let client = Client::try_default().await.map_err(Error::Client)?;
    let coordinators: Api<TransactionCoordinator> = api(&client, &config.namespace);
    coordinators
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|error| match &error {
            kube::Error::Api(status) if status.is_not_found() => Error::CrdMissing(error),
            _ => Error::Unreachable(error),
        })?;
    let mut injector_config = None;
    if let Some(setup) = config.injector.clone() {
        // Every replica serves the webhook, the Lease holder or not.
        let (cert, injector) = start_injector(&client, setup, &stopped).await?;
        injector_config = Some(injector);
        // Ready (so in the webhook Service) once there is a certificate to serve.
        while !cert.is_set() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = stopped() => return Ok(()),
            }
        }
    }
    probes.set_ready();

    let elector = config.leader_election.as_ref().map(|election| {
        let holder = config.instance.clone().unwrap_or_else(random_identity);
        Arc::new(lease::Elector::new(
            client.clone(),
            lease::LeaseConfig {
                name: election.lease_name.clone(),
                namespace: election
                    .lease_namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_owned()),
                holder,
                duration: election.lease_duration,
                renew: election.renew_every,
            },
        ))
    });
    if let Some(elector) = &elector {
        let lease = elector.config();
        tracing::info!(lease = %lease.name, namespace = %lease.namespace, holder = %lease.holder, "waiting for the leader Lease");
        tokio::select! {
            () = elector.acquire() => {}
            () = stopped() => return Ok(()),
        }
        tracing::info!("holding the leader Lease");
    }
    probes.metrics.set_leader(true);

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: config.instance.clone(),
        },
    );
    let watchdog = config.injector.as_ref().and_then(|setup| {
        let interval = setup.watchdog_interval?;
        let injector = injector_config.clone()?;
        // The operator's own namespace (the pod's, in a cluster), like the webhooks.
        let own = client.default_namespace().to_owned();
        let excluded = inject::watchdog::SYSTEM_NAMESPACES
            .iter()
            .map(|n| (*n).to_owned());
        let watchdog = inject::watchdog::WatchdogConfig {
            interval,
            max_evictions: setup.watchdog_max_evictions,
            excluded: excluded.chain([own]).collect(),
            injector,
        };
        let sweeping = inject::watchdog::run(client.clone(), recorder.clone(), watchdog, stopped());
        Some(tokio::spawn(sweeping))
    });
    let context = Arc::new(
        Context::new(
            client.clone(),
            recorder,
            config.build.clone(),
            probes.metrics.clone(),
        )
        .with_stall_window(config.stall_window),
    );
    // Only the objects this operator made: no cache of every Secret in the cluster.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=txmesh-operator");
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The controller wants a shutdown trigger that is also Sync; a channel makes one.
    let (halt, halted) = tokio::sync::oneshot::channel::<()>();
    {
        let lost = lost.clone();
        let stopped = stopped();
        let elector = elector.clone();
        tokio::spawn(async move {
            match elector {
                Some(elector) => tokio::select! {
                    () = elector.keep() => lost.store(true, std::sync::atomic::Ordering::Relaxed),
                    () = stopped => {}
                },
                None => stopped.await,
            }
            let _ = halt.send(());
        });
    }
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
            let _ = halted.await;
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => tracing::debug!(%object.name, ?action, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile failed"),
            }
        })
        .await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    probes.metrics.set_leader(false);
    if let Some(elector) = &elector {
        if lost.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::LostLeadership(elector.config().name.clone()));
        }
        elector.release().await;
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// Starts the injector webhook and the task that keeps its certificate; the certificate and
/// the injector's settings.
async fn start_injector<S, F>(
    client: &Client,
    setup: InjectorSetup,
    stopped: &S,
) -> Result<(Arc<inject::tls::ServingCert>, Arc<inject::InjectorConfig>), Error>
where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let native_sidecar = match setup.native_sidecar {
        Some(native) => native,
        None => supports_native_sidecars(client).await,
    };
    let injector = inject::InjectorConfig {
        sidecar_image: setup.sidecar_image,
        native_sidecar,
        resources: setup.resources,
        default_coordinator: setup.default_coordinator,
    };
    tracing::info!(native_sidecar, image = %injector.sidecar_image, "sidecar injector configured");
    let cert = Arc::new(inject::tls::ServingCert::default());
    let listener = tokio::net::TcpListener::bind(setup.addr)
        .await
        .map_err(|source| inject::webhook::WebhookError::Bind {
            addr: setup.addr,
            source,
        })?;
    let injector = Arc::new(injector);
    let router = inject::webhook::router(injector.clone());
    let serving = inject::webhook::serve(listener, router, cert.clone(), stopped());
    tokio::spawn(async move {
        if let Err(error) = serving.await {
            tracing::error!(%error, "the injector webhook stopped");
        }
    });
    tokio::spawn(inject::publish::keep(
        client.clone(),
        setup.certs,
        cert.clone(),
        stopped(),
    ));
    Ok((cert, injector))
}

/// Whether the API server runs native sidecars (init containers with `restartPolicy:
/// Always`): on by default from Kubernetes 1.29. When it cannot tell, not.
async fn supports_native_sidecars(client: &Client) -> bool {
    match client.apiserver_version().await {
        Ok(info) => {
            let number = |s: &str| s.trim_end_matches('+').parse::<u32>().ok();
            match (number(&info.major), number(&info.minor)) {
                (Some(major), Some(minor)) => (major, minor) >= (1, 29),
                _ => false,
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the API server's version: ordinary sidecar containers");
            false
        }
    }
}

/// A Lease identity when no pod name is given: random, so two replicas never share one.
fn random_identity() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the time still tells two processes apart.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_le_bytes();
    }
    format!("txmesh-operator-{}", hex::encode(bytes))
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
