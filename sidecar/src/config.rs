//! The sidecar's settings; `txmesh sidecar` fills them from flags and `TXMESH_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use txmesh_seata::client::{BatchConfig, ClientConfig};

/// Where the coordinators' addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorSource {
    /// A fixed list of `host:port` entries.
    Static(Vec<String>),
    /// A file of `host:port` entries (separated by commas, spaces or lines; `#` comments),
    /// read again every [`SidecarConfig::discovery_interval`], so a list can change without a
    /// restart.
    File(PathBuf),
    /// Coordinators' HTTP addresses (`host:port`, 7091): their `/metadata/v1/cluster` view
    /// lists the Seata endpoints, as Seata 2.x raft-mode clients read it.
    Metadata {
        /// HTTP addresses to ask, in turn.
        addresses: Vec<String>,
        /// The Raft group (Seata's cluster name) to ask about.
        group: String,
    },
    /// The ready endpoints of a Kubernetes Service's EndpointSlices, followed with a watch.
    Service {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
    },
}

/// Everything the sidecar needs to run.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// The application's gRPC listen address (loopback by default: only the app may call).
    pub grpc_addr: SocketAddr,
    /// An optional unix socket serving the same API.
    pub grpc_uds: Option<PathBuf>,
    /// Health and metrics.
    pub http_addr: SocketAddr,
    /// The coordinators.
    pub coordinators: CoordinatorSource,
    /// How often names are resolved again (and a coordinator file reread).
    pub discovery_interval: Duration,
    /// Directory of the TCC fence (RocksDB).
    pub data_dir: PathBuf,
    /// Application id sent at registration; the coordinator routes phase two by it.
    pub application_id: String,
    /// Seata transaction service group.
    pub transaction_service_group: String,
    /// Merge concurrent upstream requests; `None` sends each alone.
    pub batch: Option<BatchConfig>,
    /// How long an upstream request waits for its answer.
    pub request_timeout: Duration,
    /// How long a call waits for a registered coordinator connection before failing.
    pub ready_wait: Duration,
    /// First reconnect delay; it doubles (with jitter) up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// How long the application gets to answer a Confirm/Cancel before the coordinator is
    /// told to retry (keep it under the coordinator's phase-two timeout, 15 s by default).
    pub phase_two_timeout: Duration,
    /// After SIGTERM, how long phase two keeps being delivered.
    pub shutdown_grace: Duration,
    /// Finished fence records older than this are deleted.
    pub fence_retention: Duration,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            grpc_uds: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7092)),
            coordinators: CoordinatorSource::Static(vec!["127.0.0.1:8091".into()]),
            discovery_interval: Duration::from_secs(5),
            data_dir: PathBuf::from("txmesh-sidecar-data"),
            application_id: "txmesh-app".into(),
            transaction_service_group: "default_tx_group".into(),
            batch: Some(BatchConfig::default()),
            request_timeout: Duration::from_secs(30),
            ready_wait: Duration::from_secs(3),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            phase_two_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            fence_retention: Duration::from_secs(24 * 3600),
        }
    }
}

impl SidecarConfig {
    /// The Seata client settings of each upstream connection.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            application_id: self.application_id.clone(),
            transaction_service_group: self.transaction_service_group.clone(),
            request_timeout: self.request_timeout,
            batch: self.batch,
            ..ClientConfig::default()
        }
    }
}
