//! `txmesh operator`: the Kubernetes operator for TransactionCoordinator resources. It talks to
//! the API server with the in-cluster service account, or the local kubeconfig outside a
//! cluster.

use anyhow::Context;
use clap::Args;
use txmesh_operator::OperatorConfig;
use txmesh_operator::build::BuildConfig;

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

    /// Name reported as the source of Events: the operator pod's name [default: the
    /// operator's name].
    #[arg(long, env = "TXMESH_POD_NAME")]
    instance: Option<String>,
}

impl OperatorArgs {
    /// Runs the operator until SIGINT or SIGTERM.
    pub fn run(self) -> anyhow::Result<()> {
        let config = OperatorConfig {
            namespace: self.namespace,
            build: BuildConfig {
                cluster_domain: self.cluster_domain,
            },
            instance: self.instance,
        };
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        runtime.block_on(async {
            txmesh_operator::run(config, crate::signals::terminated())
                .await
                .context("operator failed")
        })
    }
}
