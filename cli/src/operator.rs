//! `txmesh operator`: the Kubernetes operator for TransactionCoordinator resources. It talks to
//! the API server with the in-cluster service account, or the local kubeconfig outside a
//! cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args};
use k8s_openapi::api::core::v1::ResourceRequirements;
use txmesh_operator::build::BuildConfig;
use txmesh_operator::inject::certs::service_names;
use txmesh_operator::inject::publish::CertSource;
use txmesh_operator::{InjectorSetup, LeaderElection, OperatorConfig};

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

    #[command(flatten)]
    injector: InjectorArgs,
}

/// The sidecar injector webhook's options.
#[derive(Debug, Args)]
#[command(next_help_heading = "Sidecar injector")]
struct InjectorArgs {
    /// Serve the sidecar injector (a mutating admission webhook, HTTPS) on this address; no
    /// webhook when unset. Paths: `/inject/pod` (pods annotated `txmesh.io/inject: "true"`)
    /// and `/inject/namespace` (every pod of a namespace labelled
    /// `txmesh.io/injection=enabled`).
    #[arg(long, env = "TXMESH_WEBHOOK_ADDR")]
    webhook_addr: Option<SocketAddr>,

    /// The webhook's Service as `namespace/name`: the serving certificate is made for its
    /// names, and its Secret kept in its namespace.
    #[arg(long, env = "TXMESH_WEBHOOK_SERVICE", value_name = "NAMESPACE/NAME")]
    webhook_service: Option<String>,

    /// The MutatingWebhookConfiguration whose caBundles the operator fills with its CA.
    #[arg(long, env = "TXMESH_WEBHOOK_CONFIG")]
    webhook_config: Option<String>,

    /// The Secret where the operator keeps the webhook's CA and certificate (made when
    /// missing, renewed 30 days before it expires; shared by every replica).
    #[arg(long, env = "TXMESH_WEBHOOK_SECRET")]
    webhook_secret: Option<String>,

    /// Serve `tls.crt` and `tls.key` from this directory instead (cert-manager), rereading
    /// them when they change; the operator then makes and patches nothing.
    #[arg(long, env = "TXMESH_WEBHOOK_CERT_DIR", conflicts_with_all = ["webhook_config", "webhook_secret"])]
    webhook_cert_dir: Option<PathBuf>,

    /// The injected sidecar's image (a pod may choose another with `txmesh.io/sidecar-image`).
    #[arg(long, env = "TXMESH_SIDECAR_IMAGE")]
    sidecar_image: Option<String>,

    /// Inject native sidecars (init containers that keep running: started before the
    /// application, stopped after it); `auto`: when the API server is 1.29 or newer.
    #[arg(long, env = "TXMESH_NATIVE_SIDECAR", value_enum, default_value_t = NativeSidecar::Auto)]
    native_sidecar: NativeSidecar,

    /// The sidecar's resources as a JSON ResourceRequirements, e.g.
    /// `{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"memory":"256Mi"}}`; pods may
    /// override each with `txmesh.io/sidecar-{cpu,memory}-{request,limit}`.
    #[arg(long, env = "TXMESH_SIDECAR_RESOURCES", value_name = "JSON")]
    sidecar_resources: Option<String>,

    /// The TransactionCoordinator (`namespace/name`) of pods without a
    /// `txmesh.io/coordinator` annotation [default: such pods are refused].
    #[arg(
        long,
        env = "TXMESH_DEFAULT_COORDINATOR",
        value_name = "NAMESPACE/NAME"
    )]
    default_coordinator: Option<String>,

    /// Every this many seconds, the Lease holder looks for pods that asked for the sidecar
    /// but started without it (created while no injector answered) and evicts them, so that
    /// their controller creates them again with it; 0: never. Needs pods list and
    /// pods/eviction create cluster-wide, and namespaces list.
    #[arg(long, env = "TXMESH_INJECTION_WATCHDOG_SECS", default_value_t = 0)]
    injection_watchdog_secs: u64,

    /// At most this many evictions per watchdog sweep (PodDisruptionBudgets are respected).
    #[arg(
        long,
        env = "TXMESH_INJECTION_WATCHDOG_MAX_EVICTIONS",
        default_value_t = 20
    )]
    injection_watchdog_max_evictions: usize,
}

/// When injected sidecars are native sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NativeSidecar {
    /// When the API server supports them (1.29 and later).
    Auto,
    /// Always.
    True,
    /// Never: an ordinary container.
    False,
}

impl InjectorArgs {
    /// The webhook's setup, if it is on; an error names the flag that is missing or wrong.
    fn setup(self, cluster_domain: &str) -> anyhow::Result<Option<InjectorSetup>> {
        let Some(addr) = self.webhook_addr else {
            return Ok(None);
        };
        let sidecar_image = self
            .sidecar_image
            .context("--webhook-addr needs --sidecar-image")?;
        let certs = match self.webhook_cert_dir {
            Some(dir) => CertSource::Files(dir),
            None => {
                let service = self
                    .webhook_service
                    .context("--webhook-addr needs --webhook-cert-dir, or --webhook-service, --webhook-config and --webhook-secret")?;
                let (namespace, name) = service
                    .split_once('/')
                    .context("--webhook-service must be namespace/name")?;
                CertSource::Managed {
                    namespace: namespace.to_owned(),
                    secret: self
                        .webhook_secret
                        .context("--webhook-service needs --webhook-secret")?,
                    webhook_config: self
                        .webhook_config
                        .context("--webhook-service needs --webhook-config")?,
                    dns_names: service_names(namespace, name, cluster_domain),
                }
            }
        };
        let resources = match self.sidecar_resources {
            Some(json) => serde_json::from_str(&json).with_context(|| {
                format!("--sidecar-resources is not a ResourceRequirements: {json}")
            })?,
            None => ResourceRequirements::default(),
        };
        if let Some(coordinator) = &self.default_coordinator {
            anyhow::ensure!(
                coordinator
                    .split_once('/')
                    .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty()),
                "--default-coordinator must be namespace/name, not {coordinator:?}"
            );
        }
        Ok(Some(InjectorSetup {
            addr,
            certs,
            sidecar_image,
            native_sidecar: match self.native_sidecar {
                NativeSidecar::Auto => None,
                NativeSidecar::True => Some(true),
                NativeSidecar::False => Some(false),
            },
            resources,
            default_coordinator: self.default_coordinator,
            watchdog_interval: (self.injection_watchdog_secs > 0)
                .then(|| Duration::from_secs(self.injection_watchdog_secs)),
            watchdog_max_evictions: self.injection_watchdog_max_evictions,
        }))
    }
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
        let injector = self.injector.setup(&self.cluster_domain)?;
        let config = OperatorConfig {
            namespace: self.namespace,
            build: BuildConfig {
                cluster_domain: self.cluster_domain,
            },
            instance: self.instance,
            http_addr: self.http_addr,
            leader_election,
            stall_window: Duration::from_secs(self.catch_up_stall_secs),
            injector,
        };
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        runtime.block_on(async {
            txmesh_operator::run(config, crate::signals::terminated())
                .await
                .context("operator failed")
        })
    }
}
