//! `txmesh operator`: the Kubernetes operator for TransactionCoordinator resources. It talks to
//! the API server with the in-cluster service account, or the local kubeconfig outside a
//! cluster.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args};
use txmesh_operator::build::BuildConfig;
use txmesh_operator::{LeaderElection, OperatorConfig};

/// Options of `txmesh operator`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Watch only this namespace [default: all namespaces].
    #[arg(long, env = "TXMESH_WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// The cluster's DNS domain, in the fully qualified pod names the coordinators use for
    /// their peers and advertise to clients.
    #[arg(long, env = "TXMESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,

    /// This replica's name: the source of its Events and its identity on the leader Lease
    /// (the operator pod's name) [default: the operator's name for Events, a random identity
    /// for the Lease].
    #[arg(long, env = "TXMESH_POD_NAME")]
    instance: Option<String>,

    /// Where `/healthz` (the process serves), `/readyz` (it reached the API server and found
    /// the CRD) and `/metrics` (OpenMetrics: reconciles, failures, durations, leadership) are
    /// served.
    #[arg(
        long,
        env = "TXMESH_OPERATOR_HTTP_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    http_addr: SocketAddr,

    /// Reconcile only while holding the leader Lease, so that replicas stand by instead of
    /// acting twice; `false` for a single replica.
    #[arg(long, env = "TXMESH_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,

    /// Name of the leader Lease (`coordination.k8s.io`).
    #[arg(long, env = "TXMESH_LEASE_NAME", default_value = "txmesh-operator")]
    lease_name: String,

    /// Namespace of the leader Lease [default: the pod's own namespace in a cluster, the
    /// kubeconfig's outside].
    #[arg(long, env = "TXMESH_POD_NAMESPACE")]
    lease_namespace: Option<String>,

    /// Seconds the Lease holds without renewal: how long a standby waits after the leader
    /// died.
    #[arg(long, env = "TXMESH_LEASE_DURATION_SECS", default_value_t = 15)]
    lease_duration_secs: u64,

    /// Seconds between renewals (and between a standby's attempts); under the duration.
    #[arg(long, env = "TXMESH_LEASE_RENEW_SECS", default_value_t = 5)]
    lease_renew_secs: u64,

    /// Seconds a new coordinator's log may stand still, while the leader reaches it, before
    /// its join is reported as blocked (Degraded, `MemberNotCatchingUp`).
    #[arg(
        long,
        env = "TXMESH_CATCH_UP_STALL_SECS",
        default_value_t = txmesh_operator::catch_up::DEFAULT_STALL_WINDOW.as_secs()
    )]
    catch_up_stall_secs: u64,
}

impl OperatorArgs {
    /// Runs the operator until SIGINT or SIGTERM.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.lease_renew_secs > 0 && self.lease_renew_secs < self.lease_duration_secs,
            "--lease-renew-secs must be at least 1 and under --lease-duration-secs"
        );
        anyhow::ensure!(
            self.catch_up_stall_secs > 0,
            "--catch-up-stall-secs must be at least 1"
        );
        let leader_election = self.leader_election.then(|| LeaderElection {
            lease_name: self.lease_name,
            lease_namespace: self.lease_namespace,
            lease_duration: Duration::from_secs(self.lease_duration_secs),
            renew_every: Duration::from_secs(self.lease_renew_secs),
        });
        let config = OperatorConfig {
            namespace: self.namespace,
            build: BuildConfig {
                cluster_domain: self.cluster_domain,
            },
            instance: self.instance,
            http_addr: self.http_addr,
            leader_election,
            stall_window: Duration::from_secs(self.catch_up_stall_secs),
        };
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        runtime.block_on(async {
            txmesh_operator::run(config, crate::signals::terminated())
                .await
                .context("operator failed")
        })
    }
}
